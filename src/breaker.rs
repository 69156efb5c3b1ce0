//! The disk circuit breaker: a pure, synchronous three-state machine.
//!
//! Every warm-tier call asks [`CircuitBreaker::try_acquire`] for a [`Permit`], runs, and reports
//! back with [`CircuitBreaker::on_success`], [`CircuitBreaker::on_failure`] or
//! [`CircuitBreaker::on_abandoned`]. After `failure_threshold` consecutive failures the breaker
//! opens and rejects disk calls, so a dying disk costs the cache one fast rejection per call
//! instead of one `io_timeout` wait per call. The breaker owns no clock, no task and no lock:
//! time comes in as `now`, and the async layer decides when to call it. That keeps every rule
//! below testable with exact instants.
//!
//! # Why `Open` → `HalfOpen` on a timer, not on traffic
//!
//! Many breakers (resilience4j's default, for one) leave Open lazily: the first call that
//! arrives after the wait is over flips the state. That needs traffic, and the cache does not
//! promise any: in memory-only mode no disk call is made at all, so a lazy breaker would stay
//! Open for ever and `breaker_state()` would report a state the breaker is no longer in. Here
//! [`CircuitBreaker::next_deadline`] tells the orchestrator when to call
//! [`CircuitBreaker::poll`], which makes the move with no traffic. `try_acquire` polls first as
//! well, so a timer that fires late never rejects a call that is already due.
//!
//! # Why epochs
//!
//! Outcomes arrive asynchronously and late: a read admitted while Closed may time out after
//! the breaker has opened and gone `HalfOpen`. Counting that failure would reopen the breaker on
//! evidence older than the probe, and a late success would close it without any probe having
//! passed. So every transition starts a new epoch, each [`Permit`] carries the epoch it was
//! admitted in, and an outcome from an earlier epoch is *stale*: dropped for state and counted
//! in [`CircuitBreaker::stale_results`].
//!
//! # Why an exponential open timeout with a cap
//!
//! A disk that stays broken (full, remounted read-only, unplugged) would otherwise be probed
//! every `open_timeout` for ever, each probe paying an I/O timeout and a log line. Each failed
//! probe doubles the timeout, so the cost of a long outage falls geometrically; the cap
//! (`max_open_timeout`) bounds how long a disk that has come back waits before it is used
//! again. A successful close resets the timeout to its base: the next outage is a new episode
//! and deserves a fast first retry.
//!
//! # Observability
//!
//! Each transition emits exactly one `tracing` event (`warn` when entering Open, `info`
//! otherwise) with the fields `from`, `to` and, when entering Open, `open_timeout_ms`. Calls
//! themselves emit nothing: a breaker rejecting thousands of calls a second must not flood the
//! log.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Default for [`BreakerConfig::failure_threshold`]: 3 consecutive failures open the breaker.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Default for [`BreakerConfig::open_timeout`]: 30 seconds.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for [`BreakerConfig::max_open_timeout`]: 10 minutes.
pub const DEFAULT_MAX_OPEN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Default for [`BreakerConfig::half_open_max`]: 1 probe at a time.
pub const DEFAULT_HALF_OPEN_MAX: u32 = 1;

/// The state of a [`CircuitBreaker`].
///
/// Displays and serializes as `"closed"`, `"open"` and `"half-open"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls are admitted; consecutive failures are counted.
    Closed,
    /// Calls are rejected until the open timeout has passed.
    Open,
    /// A bounded number of probe calls are admitted to decide between Closed and Open.
    HalfOpen,
}

impl BreakerState {
    /// The lower-case name used by `Display` and serde: `"closed"`, `"open"`, `"half-open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Configuration of a [`CircuitBreaker`]. `Default` uses the `DEFAULT_*` constants.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures (while Closed) that open the breaker. Default
    /// [`DEFAULT_FAILURE_THRESHOLD`]. `0` is treated as `1`: a breaker that is open before any
    /// failure would never admit a call.
    pub failure_threshold: u32,
    /// Base duration of the Open state; the first opening after Closed uses it. Default
    /// [`DEFAULT_OPEN_TIMEOUT`]. `Duration::ZERO` makes the breaker `HalfOpen` at the next poll.
    pub open_timeout: Duration,
    /// Cap for the exponential growth of the open timeout after failed probes. Default
    /// [`DEFAULT_MAX_OPEN_TIMEOUT`]. A cap below `open_timeout` never shortens the base: the
    /// effective cap is the larger of the two.
    pub max_open_timeout: Duration,
    /// Probe calls admitted at a time while `HalfOpen`, and probe successes needed to close.
    /// Default [`DEFAULT_HALF_OPEN_MAX`]. `0` is treated as `1`: `HalfOpen` with no probe could
    /// never leave.
    pub half_open_max: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            max_open_timeout: DEFAULT_MAX_OPEN_TIMEOUT,
            half_open_max: DEFAULT_HALF_OPEN_MAX,
        }
    }
}

impl BreakerConfig {
    /// `failure_threshold`, with 0 read as 1.
    fn threshold(&self) -> u32 {
        self.failure_threshold.max(1)
    }

    /// `half_open_max`, with 0 read as 1.
    fn probes(&self) -> u32 {
        self.half_open_max.max(1)
    }

    /// The growth cap, never below the base.
    fn cap(&self) -> Duration {
        self.max_open_timeout.max(self.open_timeout)
    }
}

/// Proof that a call was admitted, to be handed back with its outcome.
///
/// Report each permit exactly once: with `on_success`, `on_failure` or `on_abandoned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The breaker epoch the call was admitted in.
    epoch: u64,
    /// Admitted while `HalfOpen`, so it holds one of the `half_open_max` probe slots.
    probe: bool,
}

impl Permit {
    /// The epoch this permit was admitted in; an outcome reported after a later transition is
    /// stale.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the call was admitted as a `HalfOpen` probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// Returned by [`CircuitBreaker::try_acquire`] when a call is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state that rejected the call: `Open`, or `HalfOpen` with every probe slot taken.
    pub state: BreakerState,
    /// When Open, the instant the breaker becomes `HalfOpen` (`None` if that instant is too far
    /// away to represent). When `HalfOpen`, `None`: the next chance depends on the probes in
    /// flight, not on the clock.
    pub retry_at: Option<Instant>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is {}: call not admitted", self.state)
    }
}

impl std::error::Error for Rejected {}

/// A state change made by a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before the change.
    pub from: BreakerState,
    /// State after the change.
    pub to: BreakerState,
    /// The `now` the change was made at.
    pub at: Instant,
    /// `Some(timeout)` when `to` is Open: how long it stays Open. `None` otherwise.
    pub open_timeout: Option<Duration>,
}

/// The state together with the data that only exists in that state, so that entering a state
/// always starts it fresh.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open {
        /// When `poll` moves to `HalfOpen`. `None` when `now + timeout` overflows `Instant`:
        /// such a timeout is read as "until `reset`".
        until: Option<Instant>,
    },
    HalfOpen {
        /// Probes admitted in this epoch and not yet reported or abandoned.
        in_flight: u32,
        /// Probe successes recorded in this epoch.
        successes: u32,
    },
}

/// A three-state circuit breaker (`Closed`, `Open`, `HalfOpen`) driven by explicit `now` instants.
///
/// See the [module documentation](self) for the reasoning behind its rules.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    phase: Phase,
    /// Incremented by every transition; permits from earlier epochs are stale.
    epoch: u64,
    /// Failures in a row that counted for state; cleared by a counted success and by `reset`.
    consecutive_failures: u32,
    /// The timeout of the current or latest opening: the base while Closed, doubled (up to the
    /// cap) by each failed probe, back to the base on close and on `reset`.
    open_timeout: Duration,
    rejected: u64,
    transitions: u64,
    stale_results: u64,
    /// Whether each transition emits its tracing event here. Off for a breaker whose owner
    /// logs the transitions itself, under its own target and words (the shared tier's).
    log_transitions: bool,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(BreakerConfig::default())
    }
}

impl CircuitBreaker {
    /// A breaker in the Closed state, at epoch 0.
    pub fn new(config: BreakerConfig) -> Self {
        let open_timeout = config.open_timeout;
        CircuitBreaker {
            config,
            phase: Phase::Closed,
            epoch: 0,
            consecutive_failures: 0,
            open_timeout,
            rejected: 0,
            transitions: 0,
            stale_results: 0,
            log_transitions: true,
        }
    }

    /// This breaker without its own tracing event per transition: the owner logs each
    /// [`Transition`] it is handed (the shared tier does, under `answercache::shared`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn without_logging(mut self) -> Self {
        self.log_transitions = false;
        self
    }

    /// The configuration as given to [`CircuitBreaker::new`] (zeros are not rewritten).
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state. Does not poll: call [`CircuitBreaker::poll`] first for an up-to-date
    /// answer.
    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a disk call. First applies [`CircuitBreaker::poll`]. Closed: admitted.
    /// Open: rejected (counted). `HalfOpen`: admitted while fewer than `half_open_max` probes are
    /// in flight in this epoch, else rejected (counted).
    ///
    /// The transition returned is the one `poll` may have made.
    pub fn try_acquire(&mut self, now: Instant) -> (Result<Permit, Rejected>, Option<Transition>) {
        let transition = self.poll(now);
        let probes = self.config.probes();
        let epoch = self.epoch;
        let result = match &mut self.phase {
            Phase::Closed => Ok(Permit {
                epoch,
                probe: false,
            }),
            Phase::Open { until } => {
                self.rejected += 1;
                Err(Rejected {
                    state: BreakerState::Open,
                    retry_at: *until,
                })
            }
            Phase::HalfOpen { in_flight, .. } if *in_flight < probes => {
                *in_flight += 1;
                Ok(Permit { epoch, probe: true })
            }
            Phase::HalfOpen { .. } => {
                self.rejected += 1;
                Err(Rejected {
                    state: BreakerState::HalfOpen,
                    retry_at: None,
                })
            }
        };
        (result, transition)
    }

    /// Reports that an admitted call succeeded.
    ///
    /// Stale permits are counted and ignored. Closed: consecutive failures go back to 0.
    /// `HalfOpen`: once `half_open_max` probe successes are recorded in this epoch, the breaker
    /// closes with consecutive failures 0 and the open timeout back to its base.
    pub fn on_success(&mut self, permit: Permit, now: Instant) -> Option<Transition> {
        if !self.accept(permit) {
            return None;
        }
        self.consecutive_failures = 0;
        match self.phase {
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                let successes = successes.saturating_add(1);
                if successes >= self.config.probes() {
                    self.open_timeout = self.config.open_timeout;
                    Some(self.enter(Phase::Closed, now))
                } else {
                    self.phase = Phase::HalfOpen {
                        in_flight: in_flight.saturating_sub(1),
                        successes,
                    };
                    None
                }
            }
            Phase::Closed | Phase::Open { .. } => None,
        }
    }

    /// Reports that an admitted call failed.
    ///
    /// Stale permits are counted and ignored. Closed: one more consecutive failure; reaching
    /// `failure_threshold` opens the breaker with the current open timeout. `HalfOpen`: the open
    /// timeout doubles (saturating, capped at `max_open_timeout`) and the breaker opens with it.
    pub fn on_failure(&mut self, permit: Permit, now: Instant) -> Option<Transition> {
        if !self.accept(permit) {
            return None;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.phase {
            Phase::Closed if self.consecutive_failures >= self.config.threshold() => {
                Some(self.open(now))
            }
            Phase::HalfOpen { .. } => {
                self.open_timeout = self.open_timeout.saturating_mul(2).min(self.config.cap());
                Some(self.open(now))
            }
            Phase::Closed | Phase::Open { .. } => None,
        }
    }

    /// Records that an admitted call ended without an outcome (its future was dropped, say).
    ///
    /// Frees the `HalfOpen` probe slot it held in the current epoch, counting neither success nor
    /// failure. Permits from earlier epochs, and Closed permits, change nothing; an abandoned
    /// call is not a result, so it is not counted in `stale_results` either.
    pub fn on_abandoned(&mut self, permit: Permit) {
        if permit.epoch != self.epoch || !permit.probe {
            return;
        }
        if let Phase::HalfOpen { in_flight, .. } = &mut self.phase {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// The timer hook: if Open and `now` has reached the open deadline, moves to `HalfOpen` and
    /// returns the transition; otherwise does nothing and returns `None`. Idempotent.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        match self.phase {
            Phase::Open { until: Some(until) } if now >= until => Some(self.enter(
                Phase::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
                now,
            )),
            _ => None,
        }
    }

    /// When Open, the instant the timer should call [`CircuitBreaker::poll`]; otherwise `None`.
    ///
    /// Also `None` when Open with a timeout too long to add to the instant it opened at (only
    /// reachable with an enormous configured timeout): such a breaker stays Open until
    /// [`CircuitBreaker::reset`].
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open { until } => until,
            Phase::Closed | Phase::HalfOpen { .. } => None,
        }
    }

    /// The open timeout of the current or latest opening: the base while Closed, grown by
    /// failed probes. A threshold opening or [`CircuitBreaker::trip`] uses it as is; a failed
    /// probe doubles it (up to the cap) first.
    pub fn current_open_timeout(&self) -> Duration {
        self.open_timeout
    }

    /// Forces Closed, clears consecutive failures and puts the open timeout back to its base
    /// (used when an external recovery probe succeeds). Returns the transition if the state
    /// changed; when already Closed the counts are still cleared but the epoch is kept, so
    /// calls in flight stay current.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.open_timeout = self.config.open_timeout;
        match self.phase {
            Phase::Closed => None,
            Phase::Open { .. } | Phase::HalfOpen { .. } => Some(self.enter(Phase::Closed, now)),
        }
    }

    /// Forces Open now with the current open timeout, not doubled (used when the cache enters
    /// memory-only mode). Returns the transition if the state changed; when already Open
    /// nothing changes, the deadline included, and it returns `None`.
    pub fn trip(&mut self, now: Instant) -> Option<Transition> {
        match self.phase {
            Phase::Open { .. } => None,
            Phase::Closed | Phase::HalfOpen { .. } => Some(self.open(now)),
        }
    }

    /// Failures in a row that counted for state (probe failures included); cleared by a counted
    /// success and by [`CircuitBreaker::reset`].
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Total calls rejected by [`CircuitBreaker::try_acquire`].
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Total transitions made.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// Total outcomes ignored as stale: from an earlier epoch, or a probe outcome with no probe
    /// in flight (a permit reported twice).
    pub fn stale_results(&self) -> u64 {
        self.stale_results
    }

    /// Whether an outcome for `permit` may change state; counts it as stale when not.
    fn accept(&mut self, permit: Permit) -> bool {
        let current = permit.epoch == self.epoch
            && match self.phase {
                Phase::Closed => !permit.probe,
                // A probe outcome with nothing in flight is a permit reported twice; letting
                // it count could close the breaker on a single real success.
                Phase::HalfOpen { in_flight, .. } => permit.probe && in_flight > 0,
                // Open admits nothing and entering it starts a new epoch, so no permit of
                // this epoch exists.
                Phase::Open { .. } => false,
            };
        if !current {
            self.stale_results += 1;
        }
        current
    }

    /// Enters Open with the current open timeout.
    fn open(&mut self, now: Instant) -> Transition {
        let until = now.checked_add(self.open_timeout);
        self.enter(Phase::Open { until }, now)
    }

    /// Makes a transition: new epoch, one count, one tracing event.
    fn enter(&mut self, phase: Phase, now: Instant) -> Transition {
        let from = self.state();
        self.phase = phase;
        // Wrapping, not panicking: 2^64 transitions never happen, and if they did only
        // permits that old could be mistaken for current.
        self.epoch = self.epoch.wrapping_add(1);
        self.transitions += 1;
        let to = self.state();
        let transition = Transition {
            from,
            to,
            at: now,
            open_timeout: (to == BreakerState::Open).then_some(self.open_timeout),
        };
        let open_timeout_ms = transition
            .open_timeout
            .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        if !self.log_transitions {
        } else if to == BreakerState::Open {
            tracing::warn!(from = %from, to = %to, open_timeout_ms, "disk circuit breaker opened");
        } else {
            tracing::info!(from = %from, to = %to, open_timeout_ms, "disk circuit breaker state changed");
        }
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn config(threshold: u32, half_open_max: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: threshold,
            half_open_max,
            ..BreakerConfig::default()
        }
    }

    fn admit(b: &mut CircuitBreaker, now: Instant) -> Permit {
        b.try_acquire(now).0.expect("call should be admitted")
    }

    /// Fails `n` admitted calls; returns the transition of the last one.
    fn fail_n(b: &mut CircuitBreaker, n: u32, now: Instant) -> Option<Transition> {
        let mut last = None;
        for _ in 0..n {
            let p = admit(b, now);
            last = b.on_failure(p, now);
        }
        last
    }

    /// A breaker (threshold 1, given probes) opened at `t0`, then moved to `HalfOpen` at
    /// `t0 + 30 s`.
    fn half_open(half_open_max: u32, t0: Instant) -> (CircuitBreaker, Instant) {
        let mut b = CircuitBreaker::new(config(1, half_open_max));
        fail_n(&mut b, 1, t0);
        let t = t0 + DEFAULT_OPEN_TIMEOUT;
        assert!(b.poll(t).is_some());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        (b, t)
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let c = BreakerConfig::default();
        assert_eq!(c.failure_threshold, 3);
        assert_eq!(c.open_timeout, Duration::from_secs(30));
        assert_eq!(c.max_open_timeout, Duration::from_secs(600));
        assert_eq!(c.half_open_max, 1);
        let b = CircuitBreaker::default();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.current_open_timeout(), Duration::from_secs(30));
        assert_eq!(b.next_deadline(), None);
        assert_eq!(
            (b.rejected(), b.transitions(), b.stale_results()),
            (0, 0, 0)
        );
    }

    #[test]
    fn opens_after_exactly_k_consecutive_failures() {
        for k in [1u32, 3, 5] {
            let t0 = Instant::now();
            let mut b = CircuitBreaker::new(config(k, 1));
            assert_eq!(fail_n(&mut b, k - 1, t0), None, "k = {k}");
            assert_eq!(b.state(), BreakerState::Closed, "k = {k}");
            assert_eq!(b.consecutive_failures(), k - 1, "k = {k}");
            let t = fail_n(&mut b, 1, t0);
            assert_eq!(
                t,
                Some(Transition {
                    from: BreakerState::Closed,
                    to: BreakerState::Open,
                    at: t0,
                    open_timeout: Some(DEFAULT_OPEN_TIMEOUT),
                }),
                "k = {k}"
            );
            assert_eq!(b.state(), BreakerState::Open, "k = {k}");
            assert_eq!(b.consecutive_failures(), k, "k = {k}");
            assert_eq!(b.transitions(), 1, "k = {k}");
        }
    }

    #[test]
    fn success_between_failures_resets_the_count() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(3, 1));
        fail_n(&mut b, 2, t0);
        assert_eq!(b.consecutive_failures(), 2);
        let p = admit(&mut b, t0);
        assert_eq!(b.on_success(p, t0), None);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(fail_n(&mut b, 2, t0), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 2);
        assert!(fail_n(&mut b, 1, t0).is_some());
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn zero_threshold_and_zero_half_open_max_act_as_one() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(0, 0));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(admit(&mut b, t0).epoch(), 0);
        assert!(fail_n(&mut b, 1, t0).is_some());
        assert_eq!(b.state(), BreakerState::Open);
        let t = t0 + DEFAULT_OPEN_TIMEOUT;
        let p = admit(&mut b, t);
        assert!(p.is_probe());
        assert_eq!(
            b.try_acquire(t).0.map(|_| ()).unwrap_err().state,
            BreakerState::HalfOpen
        );
        assert!(b.on_success(p, t).is_some());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.config().failure_threshold, 0, "config is kept as given");
    }

    #[test]
    fn every_call_while_open_is_rejected_and_counted() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(1, 1));
        fail_n(&mut b, 1, t0);
        for i in 1..=10u64 {
            let now = t0 + Duration::from_secs(i);
            let (r, t) = b.try_acquire(now);
            assert_eq!(t, None);
            assert_eq!(
                r,
                Err(Rejected {
                    state: BreakerState::Open,
                    retry_at: Some(t0 + DEFAULT_OPEN_TIMEOUT),
                })
            );
            assert_eq!(b.rejected(), i);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.transitions(), 1);
    }

    #[test]
    fn half_open_exactly_at_the_timeout_by_poll_with_no_traffic() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(1, 1));
        fail_n(&mut b, 1, t0);
        let deadline = t0 + 30 * SEC;
        assert_eq!(b.next_deadline(), Some(deadline));

        assert_eq!(b.poll(deadline - MS), None);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.next_deadline(), Some(deadline));

        let t = b.poll(deadline);
        assert_eq!(
            t,
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen,
                at: deadline,
                open_timeout: None,
            })
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.next_deadline(), None);
        // Idempotent: a second (or late) timer tick changes nothing.
        assert_eq!(b.poll(deadline), None);
        assert_eq!(b.poll(deadline + 60 * SEC), None);
        assert_eq!(b.transitions(), 2);
        assert_eq!(b.rejected(), 0);
    }

    #[test]
    fn try_acquire_applies_a_due_poll_and_returns_its_transition() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(1, 1));
        fail_n(&mut b, 1, t0);
        let (r, t) = b.try_acquire(t0 + 30 * SEC - MS);
        assert!(r.is_err());
        assert_eq!(t, None);
        let (r, t) = b.try_acquire(t0 + 30 * SEC);
        let p = r.expect("first call at the deadline is the probe");
        assert!(p.is_probe());
        assert_eq!(p.epoch(), 2);
        assert_eq!(
            t.map(|t| (t.from, t.to)),
            Some((BreakerState::Open, BreakerState::HalfOpen))
        );
    }

    #[test]
    fn half_open_admits_exactly_half_open_max() {
        for max in [1u32, 3] {
            let t0 = Instant::now();
            let (mut b, t) = half_open(max, t0);
            for _ in 0..max {
                assert!(admit(&mut b, t).is_probe(), "max = {max}");
            }
            for i in 1..=5u64 {
                assert_eq!(
                    b.try_acquire(t).0,
                    Err(Rejected {
                        state: BreakerState::HalfOpen,
                        retry_at: None,
                    }),
                    "max = {max}"
                );
                assert_eq!(b.rejected(), i, "max = {max}");
            }
            assert_eq!(b.state(), BreakerState::HalfOpen);
        }
    }

    #[test]
    fn abandoned_probe_frees_its_slot_without_an_outcome() {
        let t0 = Instant::now();
        let (mut b, t) = half_open(1, t0);
        let p = admit(&mut b, t);
        assert!(b.try_acquire(t).0.is_err());
        b.on_abandoned(p);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.consecutive_failures(), 1);
        assert_eq!(b.stale_results(), 0);
        let p2 = admit(&mut b, t);
        assert!(p2.is_probe());
        // Abandoning a permit twice (or a stale one) cannot free a slot held by another probe.
        b.on_abandoned(p);
        b.on_abandoned(p2);
        b.on_abandoned(p2);
        let p3 = admit(&mut b, t);
        assert!(b.try_acquire(t).0.is_err());
        assert_eq!(
            b.on_success(p3, t).map(|t| t.to),
            Some(BreakerState::Closed)
        );
    }

    #[test]
    fn abandoned_closed_or_stale_permits_change_nothing() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(1, 1));
        let stale = admit(&mut b, t0);
        fail_n(&mut b, 1, t0);
        b.poll(t0 + 30 * SEC);
        let p = admit(&mut b, t0 + 30 * SEC);
        b.on_abandoned(stale);
        assert!(
            b.try_acquire(t0 + 30 * SEC).0.is_err(),
            "slot still held by p"
        );
        assert!(b.on_success(p, t0 + 30 * SEC).is_some());
        assert_eq!(b.stale_results(), 0);
    }

    #[test]
    fn probe_success_closes_and_resets_count_and_timeout() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(1, 1));
        fail_n(&mut b, 1, t0);
        // Grow the timeout with two failed probes: 30 -> 60 -> 120 s.
        let mut now = t0;
        for _ in 0..2 {
            now += b.current_open_timeout();
            let p = admit(&mut b, now);
            b.on_failure(p, now);
        }
        assert_eq!(b.current_open_timeout(), 120 * SEC);
        assert_eq!(b.consecutive_failures(), 3);
        now += 120 * SEC;
        let p = admit(&mut b, now);
        assert_eq!(
            b.on_success(p, now),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed,
                at: now,
                open_timeout: None,
            })
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.current_open_timeout(), 30 * SEC);
        // The next opening starts from the base again.
        let t = fail_n(&mut b, 1, now);
        assert_eq!(t.and_then(|t| t.open_timeout), Some(30 * SEC));
    }

    #[test]
    fn closing_needs_half_open_max_successes() {
        let t0 = Instant::now();
        let (mut b, t) = half_open(3, t0);
        let p: Vec<Permit> = (0..3).map(|_| admit(&mut b, t)).collect();
        assert_eq!(b.on_success(p[0], t), None);
        assert_eq!(b.on_success(p[1], t), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The two reported probes freed their slots.
        let extra = admit(&mut b, t);
        let _extra2 = admit(&mut b, t);
        assert!(b.try_acquire(t).0.is_err());
        assert_eq!(
            b.on_success(p[2], t).map(|t| t.to),
            Some(BreakerState::Closed)
        );
        assert_eq!(b.transitions(), 3);
        // Probes still in flight from the HalfOpen epoch are now stale.
        assert_eq!(b.on_failure(extra, t), None);
        assert_eq!(b.stale_results(), 1);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn one_failed_probe_reopens_even_after_successes() {
        let t0 = Instant::now();
        let (mut b, t) = half_open(3, t0);
        let p: Vec<Permit> = (0..3).map(|_| admit(&mut b, t)).collect();
        assert_eq!(b.on_success(p[0], t), None);
        assert_eq!(
            b.on_failure(p[1], t).and_then(|t| t.open_timeout),
            Some(60 * SEC)
        );
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.on_success(p[2], t), None);
        assert_eq!(b.stale_results(), 1);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failed_probes_double_the_timeout_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(3, 1));
        let first = fail_n(&mut b, 3, t0).and_then(|t| t.open_timeout);
        let mut seen = vec![first.expect("threshold opening")];
        let mut now = t0;
        for _ in 0..6 {
            now += b.current_open_timeout();
            let p = admit(&mut b, now);
            let t = b.on_failure(p, now).expect("failed probe reopens");
            assert_eq!(
                (t.from, t.to, t.at),
                (BreakerState::HalfOpen, BreakerState::Open, now)
            );
            let timeout = t.open_timeout.expect("to Open carries its timeout");
            assert_eq!(b.current_open_timeout(), timeout);
            assert_eq!(b.next_deadline(), Some(now + timeout));
            seen.push(timeout);
        }
        let expected: Vec<Duration> = [30, 60, 120, 240, 480, 600, 600]
            .into_iter()
            .map(Duration::from_secs)
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(b.transitions(), 13);
    }

    #[test]
    fn cap_below_base_never_shortens_the_base() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            open_timeout: 60 * SEC,
            max_open_timeout: 10 * SEC,
            half_open_max: 1,
        });
        fail_n(&mut b, 1, t0);
        assert_eq!(b.current_open_timeout(), 60 * SEC);
        let now = t0 + 60 * SEC;
        let p = admit(&mut b, now);
        assert_eq!(
            b.on_failure(p, now).and_then(|t| t.open_timeout),
            Some(60 * SEC)
        );
    }

    #[test]
    fn doubling_saturates_and_unrepresentable_deadlines_stay_open() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            open_timeout: Duration::MAX,
            max_open_timeout: Duration::MAX,
            half_open_max: 1,
        });
        let t = fail_n(&mut b, 1, t0);
        assert_eq!(t.and_then(|t| t.open_timeout), Some(Duration::MAX));
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.poll(t0 + 1_000_000 * SEC), None);
        let r = b.try_acquire(t0).0;
        assert_eq!(
            r,
            Err(Rejected {
                state: BreakerState::Open,
                retry_at: None,
            })
        );
        assert!(b.reset(t0).is_some());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_open_timeout_is_half_open_at_the_next_poll() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            open_timeout: Duration::ZERO,
            ..BreakerConfig::default()
        });
        fail_n(&mut b, 1, t0);
        assert_eq!(b.next_deadline(), Some(t0));
        let (r, t) = b.try_acquire(t0);
        assert!(r.is_ok());
        assert_eq!(t.map(|t| t.to), Some(BreakerState::HalfOpen));
    }

    #[test]
    fn stale_permits_do_not_change_state_and_are_counted() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(2, 1));
        let slow_a = admit(&mut b, t0);
        let slow_b = admit(&mut b, t0);
        assert_eq!(slow_a.epoch(), 0);
        assert!(!slow_a.is_probe());
        fail_n(&mut b, 2, t0);
        assert_eq!(b.state(), BreakerState::Open);

        // Late outcomes from before the opening: ignored while Open...
        assert_eq!(b.on_failure(slow_a, t0), None);
        assert_eq!(b.stale_results(), 1);
        assert_eq!(b.next_deadline(), Some(t0 + 30 * SEC));

        // ...and while HalfOpen: a late success does not close the breaker.
        let t = t0 + 30 * SEC;
        let probe = admit(&mut b, t);
        assert_eq!(b.on_success(slow_b, t), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.stale_results(), 2);

        // A probe from a previous HalfOpen epoch is stale after a reopening.
        assert!(b.on_failure(probe, t).is_some());
        let t2 = t + 60 * SEC;
        let probe2 = admit(&mut b, t2);
        assert_eq!(b.on_success(probe, t2), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.stale_results(), 3);
        assert!(b.on_success(probe2, t2).is_some());
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.transitions(), 5);
    }

    #[test]
    fn a_probe_reported_twice_counts_once() {
        let t0 = Instant::now();
        let (mut b, t) = half_open(2, t0);
        let p = admit(&mut b, t);
        assert_eq!(b.on_success(p, t), None);
        assert_eq!(
            b.on_success(p, t),
            None,
            "duplicate must not close the breaker"
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.stale_results(), 1);
        assert_eq!(b.on_failure(p, t), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.stale_results(), 2);
    }

    #[test]
    fn reset_closes_and_clears() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(1, 1));
        // From Closed: no transition, but the count is cleared and permits stay current.
        let mut b3 = CircuitBreaker::new(config(3, 1));
        fail_n(&mut b3, 2, t0);
        let p = admit(&mut b3, t0);
        assert_eq!(b3.reset(t0), None);
        assert_eq!(b3.consecutive_failures(), 0);
        assert_eq!(b3.transitions(), 0);
        assert_eq!(b3.on_failure(p, t0), None);
        assert_eq!(b3.consecutive_failures(), 1);
        assert_eq!(b3.stale_results(), 0);

        // From Open with a grown timeout.
        fail_n(&mut b, 1, t0);
        let t = t0 + 30 * SEC;
        let p = admit(&mut b, t);
        b.on_failure(p, t);
        assert_eq!(b.current_open_timeout(), 60 * SEC);
        let at = t + SEC;
        assert_eq!(
            b.reset(at),
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::Closed,
                at,
                open_timeout: None,
            })
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.current_open_timeout(), 30 * SEC);
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.transitions(), 4);

        // From HalfOpen: the probe in flight becomes stale.
        let (mut h, t) = half_open(1, t0);
        let probe = admit(&mut h, t);
        assert_eq!(
            h.reset(t).map(|t| (t.from, t.to)),
            Some((BreakerState::HalfOpen, BreakerState::Closed))
        );
        assert_eq!(h.on_failure(probe, t), None);
        assert_eq!(h.stale_results(), 1);
        assert_eq!(h.transitions(), 3);
    }

    #[test]
    fn trip_opens_with_the_current_timeout() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(3, 1));
        let p = admit(&mut b, t0);
        assert_eq!(
            b.trip(t0),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open,
                at: t0,
                open_timeout: Some(30 * SEC),
            })
        );
        assert_eq!(b.next_deadline(), Some(t0 + 30 * SEC));
        // Already Open: nothing restarts.
        assert_eq!(b.trip(t0 + 10 * SEC), None);
        assert_eq!(b.next_deadline(), Some(t0 + 30 * SEC));
        assert_eq!(b.transitions(), 1);
        // The permit from before the trip is stale.
        assert_eq!(b.on_success(p, t0), None);
        assert_eq!(b.stale_results(), 1);

        // From HalfOpen after a failed probe: current timeout (60 s), not doubled again.
        let t = t0 + 30 * SEC;
        let probe = admit(&mut b, t);
        b.on_failure(probe, t);
        let t = t + 60 * SEC;
        assert!(b.poll(t).is_some());
        assert_eq!(
            b.trip(t),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open,
                at: t,
                open_timeout: Some(60 * SEC),
            })
        );
        assert_eq!(b.current_open_timeout(), 60 * SEC);
        assert_eq!(b.transitions(), 5);
    }

    #[test]
    fn sixty_four_callers_racing_in_half_open() {
        for max in [1u32, 3] {
            let t0 = Instant::now();
            let (mut b, t) = half_open(max, t0);
            // All 64 callers ask before any reports back.
            let results: Vec<_> = (0..64).map(|_| b.try_acquire(t).0).collect();
            let admitted: Vec<Permit> = results.iter().filter_map(|r| r.ok()).collect();
            assert_eq!(admitted.len(), max as usize, "max = {max}");
            assert!(admitted.iter().all(|p| p.is_probe() && p.epoch() == 2));
            // The admitted ones are the first `max` callers, in order.
            assert!(results[..max as usize].iter().all(Result::is_ok));
            assert_eq!(b.rejected(), 64 - u64::from(max), "max = {max}");
            let mut last = None;
            for p in admitted {
                last = b.on_success(p, t);
            }
            assert_eq!(last.map(|t| t.to), Some(BreakerState::Closed));
            assert_eq!(b.transitions(), 3);
        }
    }

    /// A seeded random walk: invariants that must hold after every operation.
    #[test]
    fn random_operations_keep_the_invariants() {
        let mut seed: u64 = 0x5eed_cafe;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        let t0 = Instant::now();
        let cfg = BreakerConfig {
            failure_threshold: 2,
            open_timeout: 10 * SEC,
            max_open_timeout: 45 * SEC,
            half_open_max: 2,
        };
        let mut b = CircuitBreaker::new(cfg.clone());
        let mut now = t0;
        let mut permits: Vec<Permit> = Vec::new();
        let mut returned = 0u64;
        for _ in 0..20_000 {
            now += Duration::from_millis(next() % 3_000);
            let before = b.state();
            let t = match next() % 7 {
                0 | 1 => {
                    let (r, t) = b.try_acquire(now);
                    permits.extend(r.ok());
                    t
                }
                2 | 3 if !permits.is_empty() => {
                    let p = permits.swap_remove(next() as usize % permits.len());
                    b.on_success(p, now)
                }
                4 if !permits.is_empty() => {
                    let p = permits.swap_remove(next() as usize % permits.len());
                    b.on_failure(p, now)
                }
                5 if !permits.is_empty() => {
                    let p = permits.swap_remove(next() as usize % permits.len());
                    b.on_abandoned(p);
                    None
                }
                _ => b.poll(now),
            };
            if let Some(t) = t {
                returned += 1;
                assert_ne!(t.from, t.to);
                assert_eq!(t.from, before);
                assert_eq!(t.to, b.state());
                assert_eq!(t.open_timeout.is_some(), t.to == BreakerState::Open);
            }
            assert_eq!(b.transitions(), returned);
            assert_eq!(b.next_deadline().is_some(), b.state() == BreakerState::Open);
            let timeout = b.current_open_timeout();
            assert!(timeout >= cfg.open_timeout && timeout <= cfg.max_open_timeout);
            let in_flight_probes = permits
                .iter()
                .filter(|p| p.is_probe() && p.epoch() == b.epoch)
                .count();
            assert!(in_flight_probes <= 2, "{in_flight_probes} probes in flight");
            if b.state() == BreakerState::Closed {
                assert_eq!(timeout, cfg.open_timeout);
            }
        }
        assert!(
            b.transitions() > 100,
            "the walk should exercise every state"
        );
    }

    #[test]
    fn state_names_display_and_deserialize() {
        use serde::de::value::{Error, StrDeserializer};
        for (state, name) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half-open"),
        ] {
            assert_eq!(state.to_string(), name);
            let parsed = BreakerState::deserialize(StrDeserializer::<Error>::new(name));
            assert_eq!(parsed, Ok(state));
        }
        let r = Rejected {
            state: BreakerState::Open,
            retry_at: None,
        };
        assert_eq!(r.to_string(), "circuit breaker is open: call not admitted");
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn pin<T: Send + Sync + 'static>() {}
        pin::<CircuitBreaker>();
        pin::<BreakerConfig>();
        pin::<BreakerState>();
        pin::<Permit>();
        pin::<Rejected>();
        pin::<Transition>();
    }
}
