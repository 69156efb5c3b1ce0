//! The real-server harness of the shared tier (SHARED_TIER.md §12, §13).
//!
//! - [`server`]: [`RedisServer`], a throwaway Redis or Valkey per test, and its faults.
//! - [`proxy`]: [`FaultProxy`], an in-process TCP proxy injecting latency, blackholes, resets
//!   and bandwidth limits.
//! - [`logs`]: [`LogCapture`], the log events of one test.
//! - [`report`]: the §12 [`Row`] and the [`Tally`] a scenario's traffic keeps.
//! - [`alloc`]: the largest allocation a thread makes (T9's "no allocation over bounds").
//! - `cache` (with the shared tier): replicas, the breaker watch, key layout, values.

#![allow(dead_code, reason = "a harness: each test uses part of it")]

pub mod alloc;
pub mod cache;
pub mod logs;
pub mod proxy;
pub mod report;
pub mod server;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use logs::LogCapture;
pub use proxy::{Cut, FaultProxy};
pub use report::{ms3, percentile, Outcome, Row, Tally};
#[allow(unused_imports, reason = "for the scenario modules")]
pub use server::{Flavor, RedisServer, ServerOptions};

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`): there a missing
/// server fails the shared tests instead of skipping them.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Runs `f` on a fresh 2-worker runtime whose threads (and this one) report to `logs`.
pub fn run<F: Future>(logs: &LogCapture, f: F) -> F::Output {
    let _guard = logs.attach_current_thread();
    let rt = logs.runtime();
    let out = rt.block_on(f);
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}

/// Polls `cond` every millisecond until it holds or `limit` passed; returns how long it took
/// (`None`: it never held).
pub async fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// [`poll_until`] with an async condition, polled every `every`.
pub async fn poll_until_async<Fut: Future<Output = bool>>(
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> Fut,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`RedisServer::restart`] off the async threads.
pub async fn restart_async(server: &Arc<RedisServer>) {
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .expect("restart");
}

/// [`RedisServer::sigstop`] off the async threads.
pub async fn sigstop_async(server: &Arc<RedisServer>) {
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.sigstop())
        .await
        .expect("sigstop");
}

/// [`RedisServer::sigcont`] off the async threads.
pub async fn sigcont_async(server: &Arc<RedisServer>) {
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.sigcont())
        .await
        .expect("sigcont");
}

/// A value that names its key, a sequence number and its length, padded to `len` bytes with
/// bytes derived from that header: a reader can tell a torn or truncated value, or another
/// key's, from the real one.
pub fn value(key: &str, seq: u64, len: usize) -> Vec<u8> {
    let header = format!("{key}|{seq}|{len}|");
    let mut v = header.clone().into_bytes();
    let mut padding = vec![0u8; len.saturating_sub(v.len())];
    blake3::Hasher::new()
        .update(header.as_bytes())
        .finalize_xof()
        .fill(&mut padding);
    v.extend_from_slice(&padding);
    v
}

/// The sequence number of a value made by [`value`] for `key`, or what is wrong with it.
pub fn check_value(key: &str, bytes: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    let mut parts = text.splitn(4, '|');
    let (Some(k), Some(s), Some(l)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("no header in {} bytes", bytes.len()));
    };
    if k != key {
        return Err(format!("value of key {k:?} returned for {key:?}"));
    }
    let (Ok(seq), Ok(len)) = (s.parse::<u64>(), l.parse::<usize>()) else {
        return Err(format!("bad header for {key:?}"));
    };
    if len != bytes.len() || value(key, seq, len) != bytes {
        return Err(format!("torn value for {key:?} (seq {seq})"));
    }
    Ok(seq)
}

/// The `RwLock` timing-sensitive tests take for writing (alone) and every other test for
/// reading: a latency measurement never shares the 2 cores with another scenario.
pub fn timing_lock() -> &'static std::sync::RwLock<()> {
    static LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());
    &LOCK
}

/// Held by ordinary tests (any number at once).
pub fn shared_slot() -> std::sync::RwLockReadGuard<'static, ()> {
    timing_lock()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by a timing-sensitive test (alone).
pub fn exclusive_slot() -> std::sync::RwLockWriteGuard<'static, ()> {
    timing_lock()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
