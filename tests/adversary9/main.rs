//! Adversary 9: attacks on the namespace promise of the shared tier (README "Shared tier" and
//! "Namespaces", FORMAT.md "Pending-namespace markers", SHARED_TIER.md section 7): an `Ok`
//! from `Namespace::invalidate()` holds on this replica for good and reaches the others
//! within the sync interval plus the timeout, through closes, crashes, restarts, power cuts,
//! failing disks, hostile marker files, server restores and flushes, and racing syncs.
//!
//! Most tests run against the in-memory stand-in (`testing::MemoryShared`) on tokio's paused
//! clock, for determinism; `real` runs a throwaway `redis-server` per test (skipped when none
//! is installed, a failure under `CI=true`). Tests that expose a defect are `#[ignore]`d with
//! their finding; FINDINGS.md lists them.

#![cfg(all(feature = "redis", feature = "test-util"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure with its location"
)]

#[path = "../shared/support/mod.rs"]
#[allow(
    unused_imports,
    reason = "the real-server harness of tests/shared, used in part"
)]
mod support;

#[global_allocator]
static ALLOCATOR: support::alloc::Tracking = support::alloc::Tracking;

mod mem;

mod disk;
mod hostile;
mod many;
mod races;
mod real;
mod restarts;
