//! The shared tier's orchestration (features `redis` + `test-util`), against the in-memory
//! fault-injecting server (`testing::MemoryShared`) on tokio's paused clock: the read path
//! and its verification, the write queue and its drops, the breaker and its probe, OOM,
//! namespaces across replicas, and the stats. No server is needed; the real-server suite is
//! `tests/shared`.

#![cfg(all(feature = "redis", feature = "test-util"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod breaker;
mod lease;
#[cfg(feature = "metrics")]
mod metrics;
mod namespaces;
mod reads;
mod restarts;
mod support;
mod writes;
