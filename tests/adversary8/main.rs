//! Adversary 8: attacks on the shared tier's promises (SHARED_TIER.md §1, §4-§8, §11).
#![cfg(feature = "redis")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure with its location"
)]

#[path = "../shared/support/mod.rs"]
#[allow(unused_imports, reason = "the shared harness, used in part")]
mod support;

#[global_allocator]
static ALLOCATOR: support::alloc::Tracking = support::alloc::Tracking;

mod fixture;
mod util;

mod faults;
mod ordering;
mod single_flight;
mod stale;
mod values;
