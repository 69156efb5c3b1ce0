//! Real faults: a full disk, a read-only disk, a file-size limit, `kill -9`, power loss, an
//! error-point sweep, two processes sharing one directory, and chaos.
//!
//! Where the fault can be real it is: tmpfs mounts in a private mount namespace (the test
//! re-executes its own binary under `unshare -m`), `RLIMIT_FSIZE` set by a shell wrapper,
//! `SIGKILL` sent to a child process. Where it cannot (power loss, an error at the Nth call),
//! the fault-injecting file systems of `answercache::testing` stand in. Each harness prints one
//! `RELIABILITY <name> key=value ...` line; RELIABILITY.md is built from them:
//! `cargo test --all-features --test faults -- --nocapture 2>&1 | grep ^RELIABILITY`.
//! `ANSWERCACHE_LONG=1` runs more cycles, seeds and operations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harnesses: a panic is a test failure with its location"
)]

mod chaos;
mod disk_full;
mod error_sweep;
mod fiu;
mod fiu_closedir;
mod fsize;
mod kill9;
mod power_loss;
mod read_only;
mod shared_dir;
mod small_volume;
mod support;
