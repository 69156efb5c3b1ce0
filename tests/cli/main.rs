//! The `tiercache` binary as an operator and a newcomer use it (issue 8): every test runs the
//! built binary through `std::process::Command`, one process per command, on a temporary
//! cache directory, and reads what it prints and its exit status.
//!
//! - `entries`: `set` then `get` in two separate processes returns the bytes unchanged; misses,
//!   expired entries and removals exit 1; a missing directory or a bad argument exits 2 with
//!   the path and the cause.
//! - `verify`: planted corrupt files are each reported with their reason and exit status 1;
//!   `--repair` moves them to the quarantine and the next `verify` exits 0; `quarantine
//!   list|show|clear` then see exactly those files.
//! - `json`: `--json` output parses and carries the same numbers as the human tables.
//! - `demo`: the demo finishes with exit 0, and its final table reports at least one breaker
//!   opening, one recovery and one quarantined file (the `--json` document agrees).
//!
//! The binary exists only with the `cli` feature (`cargo test --all-features`).

#![cfg(feature = "cli")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking on the unexpected"
)]

mod demo;
mod entries;
mod json;
mod support;
mod verify;
