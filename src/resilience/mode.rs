//! The resilience state behind the disk gate: the breaker, the sliding window of device
//! errors, and the mode (tiered or memory-only, with the hot budget doubled). Pure state,
//! no tasks: [`super::recovery`] drives its timers.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit, Transition};
use crate::fs::IoErrorKind;
use crate::hot::HotTier;
use crate::log;
use crate::stats::{Counters, Mode};

const TIERED: u8 = 0;
const MEMORY_ONLY: u8 = 1;

struct State {
    breaker: CircuitBreaker,
    /// Times of recent device errors, oldest first; pruned to `error_window`.
    errors: VecDeque<Instant>,
    /// When memory-only mode was entered (set on entry, cleared on recovery).
    memory_only_since: Option<Instant>,
}

/// The shared resilience state.
pub(crate) struct Resilience {
    state: Mutex<State>,
    mode: AtomicU8,
    memory_only_after: usize,
    error_window: Duration,
    hot: Arc<HotTier>,
    base_budget: (usize, usize),
    counters: Arc<Counters>,
    /// Wakes the resilience task: the breaker opened (a new deadline) or the mode changed.
    pub(crate) wake: Notify,
}

impl std::fmt::Debug for Resilience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilience")
            .field("mode", &self.mode())
            .field("breaker", &self.breaker_state())
            .finish()
    }
}

/// Proof that the breaker admitted a disk call; report its outcome through
/// [`Resilience::report`]. Dropped unreported (the caller's future was dropped), it frees its
/// half-open slot. `R` holds the resilience state: borrowed for a call its caller waits for,
/// owned ([`OwnedAdmission`]) for one whose outcome is reported from wherever it ends (the
/// blocking thread that ran it, or the watchdog that gave up waiting: `Writer::start_direct`).
pub(crate) struct Admission<R: Deref<Target = Resilience>> {
    res: R,
    permit: Option<Permit>,
}

/// An [`Admission`] that owns its hold on the resilience state.
pub(crate) type OwnedAdmission = Admission<Arc<Resilience>>;

impl<R: Deref<Target = Resilience>> Admission<R> {
    /// Reports the outcome: `None` = success, `Some(kind)` = a device failure.
    pub(crate) fn report(mut self, failure: Option<IoErrorKind>) {
        if let Some(p) = self.permit.take() {
            self.res.report(p, failure);
        }
    }
}

impl<R: Deref<Target = Resilience>> Drop for Admission<R> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.res.lock().breaker.on_abandoned(p);
        }
    }
}

impl Resilience {
    pub(crate) fn new(
        breaker: BreakerConfig,
        memory_only_after: u32,
        error_window: Duration,
        hot: Arc<HotTier>,
        counters: Arc<Counters>,
    ) -> Self {
        let base_budget = (hot.max_bytes(), hot.max_entries());
        Resilience {
            state: Mutex::new(State {
                breaker: CircuitBreaker::new(breaker),
                errors: VecDeque::new(),
                memory_only_since: None,
            }),
            mode: AtomicU8::new(TIERED),
            memory_only_after: memory_only_after.max(1) as usize,
            error_window,
            hot,
            base_budget,
            counters,
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The current mode.
    pub(crate) fn mode(&self) -> Mode {
        if self.mode.load(Ordering::SeqCst) == MEMORY_ONLY {
            Mode::MemoryOnly
        } else {
            Mode::Tiered
        }
    }

    /// The breaker's state.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.lock().breaker.state()
    }

    /// When the current memory-only stretch began (`None` while tiered).
    pub(crate) fn memory_only_since(&self) -> Option<Instant> {
        self.lock().memory_only_since
    }

    /// Time spent memory-only so far, including the current stretch.
    pub(crate) fn memory_only_ms(&self) -> u64 {
        let current = self
            .lock()
            .memory_only_since
            .map_or(0, |t| t.elapsed().as_millis() as u64);
        self.counters.memory_only_ms.get() + current
    }

    fn record(&self, t: Option<Transition>) {
        if let Some(t) = t {
            self.counters.breaker_transitions.inc();
            if t.to == BreakerState::Open {
                self.counters.breaker_opens.inc();
            }
            self.wake.notify_one();
        }
    }

    /// Asks to make a disk call: refused while memory-only or when the breaker rejects it.
    pub(crate) fn admit(&self) -> Option<Admission<&Resilience>> {
        self.try_admit().map(|p| Admission {
            res: self,
            permit: Some(p),
        })
    }

    /// [`Resilience::admit`], with an admission that owns its hold on `self`.
    pub(crate) fn admit_owned(self: &Arc<Self>) -> Option<OwnedAdmission> {
        self.try_admit().map(|p| Admission {
            res: self.clone(),
            permit: Some(p),
        })
    }

    fn try_admit(&self) -> Option<Permit> {
        if self.mode() == Mode::MemoryOnly {
            return None;
        }
        let now = Instant::now().into_std();
        let (result, t) = self.lock().breaker.try_acquire(now);
        self.record(t);
        match result {
            Ok(p) => Some(p),
            Err(_) => {
                self.counters.breaker_rejections.inc();
                None
            }
        }
    }

    fn report(&self, permit: Permit, failure: Option<IoErrorKind>) {
        let now = Instant::now();
        let mut st = self.lock();
        let Some(_kind) = failure else {
            let t = st.breaker.on_success(permit, now.into_std());
            drop(st);
            self.record(t);
            return;
        };
        let t = st.breaker.on_failure(permit, now.into_std());
        st.errors.push_back(now);
        while st
            .errors
            .front()
            .is_some_and(|&e| now.duration_since(e) >= self.error_window)
        {
            st.errors.pop_front();
        }
        let enter = self.mode() == Mode::Tiered && st.errors.len() >= self.memory_only_after;
        if enter {
            let errors = st.errors.len();
            st.errors.clear();
            st.memory_only_since = Some(now);
            let t2 = st.breaker.trip(now.into_std());
            self.mode.store(MEMORY_ONLY, Ordering::SeqCst);
            drop(st);
            self.record(t);
            self.record(t2);
            self.counters.memory_only_entries.inc();
            let (bytes, entries) = self.base_budget;
            // Growing the budget evicts nothing.
            self.hot
                .set_budget(bytes.saturating_mul(2), entries.saturating_mul(2));
            warn!(
                target: log::DEGRADED,
                errors,
                window_ms = u64::try_from(self.error_window.as_millis()).unwrap_or(u64::MAX),
                hot_capacity_bytes = bytes.saturating_mul(2),
                hot_capacity_entries = entries.saturating_mul(2),
                "disk abandoned: switched to memory-only mode with a doubled hot budget"
            );
            self.wake.notify_one();
        } else {
            drop(st);
            self.record(t);
        }
    }

    /// Leaves memory-only mode after a passing probe: breaker Closed, window cleared. The
    /// caller writes dirty entries back and then calls [`Resilience::restore_budget`].
    pub(crate) fn recover(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        let t = st.breaker.reset(now.into_std());
        st.errors.clear();
        if let Some(since) = st.memory_only_since.take() {
            self.counters
                .memory_only_ms
                .add(now.duration_since(since).as_millis() as u64);
        }
        self.mode.store(TIERED, Ordering::SeqCst);
        drop(st);
        self.record(t);
        info!(target: log::DEGRADED, "disk recovered: back to tiered mode");
    }

    /// The normal hot budget, after write-back. Returns what no longer fits.
    pub(crate) fn restore_budget(&self) -> Vec<crate::hot::Evicted> {
        let (bytes, entries) = self.base_budget;
        self.hot.set_budget(bytes, entries)
    }

    /// Applies the breaker's timer (Open → HalfOpen) and returns its next deadline.
    pub(crate) fn poll_breaker(&self) -> Option<Instant> {
        let mut st = self.lock();
        let t = st.breaker.poll(Instant::now().into_std());
        let next = st.breaker.next_deadline().map(Instant::from_std);
        drop(st);
        self.record(t);
        next
    }
}
