//! Adversary 6: tries to break the promises of issue 13 ("Production fit") with real faults,
//! restarts, concurrency and hostile directories. See FINDINGS.md for what fails and why.
//!
//! - `migrate`: the move of a layout-1 directory (`v1/ab/cd`) into layout 2 (`v2/ab`).
//! - `budget`: a warm budget `du` agrees with, and `Stats::warm_disk_bytes` against the files
//!   actually there.
//! - `setup`: `build()` failing loudly on configuration mistakes, degrading on device trouble;
//!   `min_free_bytes` on small volumes (real tmpfs mounts in a private mount namespace).
//! - `dropped`: the warning when the last handle drops without `close`.
//! - `metrics` (feature `metrics`): every `Stats` figure through the facade.
//! - `cli` (feature `cli`): the operator commands.
//! - `package`: what `cargo package` ships.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod budget;
#[cfg(feature = "cli")]
mod cli;
mod dropped;
mod judged;
#[cfg(feature = "metrics")]
mod metrics;
mod migrate;
mod mounts;
mod package;
mod setup;
mod support;
