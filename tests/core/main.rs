//! Core behaviour of the tiered cache, end to end, through the public API only: a memory LRU
//! hot tier in front of a gzip disk warm tier, on a real temporary directory. Each module
//! guards one area (round trips, persistence across restarts, a model-based random test,
//! budgets under churn, expiry on both tiers, hostile input and orphan files); `support`
//! holds the fixture that lets the tests read like the scenarios they check.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test must fail loudly on any unexpected error"
)]

mod beside_r29;
mod bounds;
mod caller_writes;
mod chained;
mod closer;
mod compact_r27;
mod compact_r28;
mod compaction;
mod hostile;
mod inline_reads;
mod layout;
mod model;
mod persistence;
mod promises;
mod review_r30;
mod review_r31;
mod review_r32;
mod review_r33;
mod review_r34;
mod review_r35;
mod review_r36;
mod review_r37;
mod review_r39;
mod review_r40;
mod roundtrip;
mod second_look;
mod settings;
mod settle;
mod settle_r24;
mod space_r25;
mod space_r26;
mod support;
mod ttl;
