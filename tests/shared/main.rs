//! The shared tier (Redis / Valkey) against real servers: SHARED_TIER.md §12 and §13.
//!
//! - `harness`: self-tests of the harness itself, against a raw Redis through the `redis`
//!   crate: the server starts on a socket and on TCP, `kill -9` and restart come back empty,
//!   `SIGSTOP` makes a client time out, the fault proxy adds the latency it is told, its
//!   blackhole times out, its reset breaks the connection.
//! - `t01_sharing` … `t15_valkey`: the scenarios of §12's table (T1-T15) against the shared
//!   tier, each printing its figures (`SHARED …` lines).
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

mod r38;
mod t01_sharing;
mod t02_agent;
mod t03_latency;
mod t04_kill;
mod t05_sigstop;
mod t06_slow;
mod t07_oom;
mod t08_auth;
mod t09_hostile;
mod t10_proxy;
mod t11_namespaces;
mod t12_single_flight;
mod t13_write_queue;
mod t14_startup;
mod t15_valkey;
