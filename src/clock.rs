//! Wall-clock time for expiry.
//!
//! Persisted times (creation, expiry) are wall-clock unix milliseconds so that another process,
//! or this one after a restart, can interpret them. The default clock derives wall time from
//! `tokio::time::Instant` (a wall-clock base taken once, plus monotonic elapsed time), so tests
//! on tokio's paused clock move expiry forward with `tokio::time::advance`, and a wall-clock
//! jump in the middle of a run does not expire everything at once.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in unix milliseconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the unix epoch.
    fn now_ms(&self) -> u64;
}

/// The default clock: the wall-clock time at creation plus `tokio::time` elapsed time.
#[derive(Debug)]
pub struct TokioClock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Reads the wall clock now. Must be called inside a tokio runtime when the runtime's clock
    /// is paused, so that `start` is taken from that clock.
    pub fn new() -> Self {
        TokioClock {
            base_ms: system_now_ms(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

/// The current wall-clock time in unix milliseconds (0 if the system clock is before 1970).
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A clock that moves only when told to; clones share the same time. Useful for tests that
/// reopen a cache and need expiry to be exact across the reopen.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to an absolute time.
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Sleeps for `d`, or forever when `d` is too large to add to the clock (`Duration::MAX`
/// means "never"; tokio's own `sleep` would wake after about 30 years).
pub(crate) async fn sleep_or_never(d: Duration) {
    match tokio::time::Instant::now().checked_add(d) {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
