//! The agent features end to end, through the public API, on a real temporary directory:
//! single-flight loading under hundreds of concurrent callers, loader errors, panics and
//! cancellations that must never wedge a key, stale-if-error; request keys pinned to golden
//! values and sensitive to every output-affecting field; namespaces whose O(1) invalidation
//! holds in both tiers and across a reopen, and predicate-based removal; the per-call
//! controls (`no_store`, `no_cache`, TTL override, `cacheable`) and the exact cost saved.
//! Timing runs on tokio's paused clock: nothing here sleeps for real.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test must fail loudly on any unexpected error"
)]

mod controls;
mod namespaces;
mod request_keys;
mod savings;
mod single_flight;
mod support;
mod types;
mod value_regressions;
