//! Adversary 4: tries to break the promise of commit d455f98 ("Named parts instead of one
//! shared Inner"): no behaviour change at all. Every test here documents the behaviour of the
//! code before that commit (2694034) and passes there; a test that fails on the new code is a
//! finding (see FINDINGS.md).
//!
//! - `golden`: scripted scenarios on tokio's paused clock and a manual wall clock whose whole
//!   transcript (every return value and error text, every `Stats` snapshot, the files on disk,
//!   restarts) was recorded on 2694034 (`ADV4_BLESS=1` rewrites it) and must not change.
//! - `ordering`: the ordering guarantees under real concurrency (multi-thread runtimes, many
//!   tasks, slow disks): clear vs writes in flight, flush vs recovery write-back, eviction of
//!   dirty entries vs writer completion, write-through acknowledgements, drop without close.
//! - `tasks`: supervised background tasks (a panic is counted and the task restarted, with
//!   its shutdown signal) and the fence loaded before reads and writes.
//! - `surface`: what the handle shows of itself (`Debug`, size) and `invalidate_if`'s
//!   interleaving of the predicate with the disk scan.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod golden;
mod logs;
mod ordering;
mod support;
mod surface;
mod tasks;
