//! The shared tier (Redis / Valkey) against real servers: SHARED_TIER.md §12 and §13.
//!
//! - `harness`: self-tests of the harness itself, against a raw Redis through the `redis`
//!   crate: the server starts on a socket and on TCP, `kill -9` and restart come back empty,
//!   `SIGSTOP` makes a client time out, the fault proxy adds the latency it is told, its
//!   blackhole times out, its reset breaks the connection.
//! - `t01_sharing` … `t15_valkey`: the scenarios of §12's table (T1-T15) against the shared
//!   tier, each printing its figures (`SHARED …` lines). They are compiled with
//!   `--cfg answercache_shared_impl` until the tier is merged.
//!
//! A machine without a server prints `SKIPPED: no redis-server (apt-get install
//! redis-server)` and passes; under `CI=true` that is a failure (`.ci/run` installs one).
//! `ANSWERCACHE_REDIS_SERVER=/path/to/redis-server` picks a binary.
//!
//! `cargo test --all-features --test shared -- --nocapture 2>&1 | grep ^SHARED`

#![cfg(feature = "redis")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harnesses: a panic is a test failure with its location"
)]

mod support;

#[global_allocator]
static ALLOCATOR: support::alloc::Tracking = support::alloc::Tracking;

mod harness;

#[cfg(answercache_shared_impl)]
mod t01_sharing;
#[cfg(answercache_shared_impl)]
mod t02_agent;
#[cfg(answercache_shared_impl)]
mod t03_latency;
#[cfg(answercache_shared_impl)]
mod t04_kill;
#[cfg(answercache_shared_impl)]
mod t05_sigstop;
#[cfg(answercache_shared_impl)]
mod t06_slow;
#[cfg(answercache_shared_impl)]
mod t07_oom;
#[cfg(answercache_shared_impl)]
mod t08_auth;
#[cfg(answercache_shared_impl)]
mod t09_hostile;
#[cfg(answercache_shared_impl)]
mod t10_proxy;
#[cfg(answercache_shared_impl)]
mod t11_namespaces;
#[cfg(answercache_shared_impl)]
mod t12_single_flight;
#[cfg(answercache_shared_impl)]
mod t13_write_queue;
#[cfg(answercache_shared_impl)]
mod t14_startup;
#[cfg(answercache_shared_impl)]
mod t15_valkey;
