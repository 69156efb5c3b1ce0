//! Resilience: the circuit breaker in front of every disk call, memory-only mode with a
//! doubled budget, the recovery probe and the health check, driven on tokio's paused clock
//! over a fault-injecting file system. Each lesson from LiteLLM's breaker has its test here:
//! errors the API hides are still seen by the breaker (`breaker::hidden_errors_still_open_it`),
//! a hung disk cannot hang callers (`timeouts::hung_read_returns_within_io_timeout`), and an
//! open breaker logs one event per transition, not per request (the `events` test binary).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure with its location"
)]

mod breaker;
mod clear_fence;
mod lost_writes;
mod memory_only;
mod outage_model;
mod random_faults;
mod support;
mod tasks;
mod timeouts;
