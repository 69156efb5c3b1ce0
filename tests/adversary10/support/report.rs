//! The row every fault test reports (SHARED_TIER.md §12), and the tally its traffic keeps.
//!
//! `cargo test --all-features --test shared -- --nocapture 2>&1 | grep ^SHARED` lists them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One fault test's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// `T4 kill-9`, ...
    pub test: String,
    /// Requests answered (a value or a clean miss: no error).
    pub answered: u64,
    /// Requests made.
    pub total: u64,
    /// Errors returned to callers (must be 0).
    pub caller_errors: u64,
    /// Values that were not the value of their key (must be 0).
    pub wrong_answers: u64,
    /// Gets that paid a timeout (took at least the shared timeout) before the breaker opened.
    pub timeout_gets: u64,
    /// The largest latency of one get.
    pub max_added_latency: Duration,
    /// From the fault to the breaker's Open.
    pub fault_to_open: Option<Duration>,
    /// From the end of the fault to the breaker's Closed.
    pub recovery_to_closed: Option<Duration>,
    /// Shared writes dropped (`Stats::shared_writes_dropped`).
    pub writes_dropped: u64,
    /// The crate's log events at INFO and above.
    pub log_lines: u64,
    /// Breaker transitions in the same span (what the log lines are bounded by).
    pub transitions: u64,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1e3),
    )
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SHARED {} answered={}/{} caller_errors={} wrong_answers={} timeout_gets={} \
             max_get_ms={:.1} fault_to_open_ms={} recovery_to_closed_ms={} writes_dropped={} \
             log_lines={} transitions={}",
            self.test.replace(' ', "_"),
            self.answered,
            self.total,
            self.caller_errors,
            self.wrong_answers,
            self.timeout_gets,
            self.max_added_latency.as_secs_f64() * 1e3,
            ms(self.fault_to_open),
            ms(self.recovery_to_closed),
            self.writes_dropped,
            self.log_lines,
            self.transitions,
        )
    }
}

impl Row {
    /// Prints the row on a line of its own.
    pub fn print(&self) {
        println!("\n{self}");
    }

    /// The criteria every fault test shares: 0 errors to callers, 0 wrong answers, every
    /// request answered, log lines ≤ transitions + 1.
    #[track_caller]
    pub fn check_standard(&self) {
        assert_eq!(self.caller_errors, 0, "errors returned to callers: {self}");
        assert_eq!(self.wrong_answers, 0, "wrong answers: {self}");
        assert_eq!(self.answered, self.total, "unanswered requests: {self}");
        assert!(
            self.log_lines <= self.transitions + 1,
            "more log lines than transitions + 1: {self}"
        );
    }
}

/// What a scenario's traffic saw, shared by its tasks.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests made.
    pub total: AtomicU64,
    /// Requests that returned without an error.
    pub answered: AtomicU64,
    /// Requests that returned an error.
    pub errors: AtomicU64,
    /// Values that failed their check.
    pub wrong: AtomicU64,
    /// Hits (a value returned).
    pub hits: AtomicU64,
    /// Requests that took at least the timeout threshold.
    pub slow: AtomicU64,
    /// The largest latency, in microseconds.
    pub max_us: AtomicU64,
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A value that is the key's.
    Hit,
    /// No value.
    Miss,
    /// A value that is not the key's (a wrong answer).
    Wrong,
    /// An error returned to the caller.
    Error,
}

impl Tally {
    /// Records one request that took `latency`; `slow` when `latency >= threshold`.
    pub fn record(&self, outcome: Outcome, latency: Duration, threshold: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Error => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Wrong => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                self.wrong.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Hit => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Miss => {
                self.answered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if latency >= threshold {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
        self.max_us
            .fetch_max(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// The row's traffic figures (the rest is the scenario's to fill).
    pub fn row(&self, test: &str) -> Row {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Row {
            test: test.to_owned(),
            answered: get(&self.answered),
            total: get(&self.total),
            caller_errors: get(&self.errors),
            wrong_answers: get(&self.wrong),
            timeout_gets: get(&self.slow),
            max_added_latency: Duration::from_micros(get(&self.max_us)),
            ..Row::default()
        }
    }

    /// Hits so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Requests so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Percentile `p` (0-100) of `samples` (sorted here), nearest rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Milliseconds with 3 decimals.
pub fn ms3(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}
