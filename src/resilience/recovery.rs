//! Recovery: the timers of resilience. While memory-only, a recovery probe every
//! `recovery_interval` (write, fsync, read back, verify and delete a probe file, outside the
//! breaker); when it passes, tiered mode, write-back of the dirty entries, and the hot budget
//! back to normal. While tiered, the breaker's Open → HalfOpen timer and a health check every
//! `health_interval` through the breaker, so a sick disk opens it without waiting for traffic
//! and a passing check writes back entries whose earlier write failed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::breaker::BreakerState;
use crate::disk::DiskOutcome;
use crate::log;
use crate::stats::Mode;
use crate::writer::Writer;

/// What recovery uses: the writer (and through it the gate, the queue and the counters),
/// and its two intervals.
pub(crate) struct Recovery {
    writer: Arc<Writer>,
    health_interval: Duration,
    recovery_interval: Duration,
}

impl Recovery {
    /// Recovery through `writer`.
    pub(crate) fn new(
        writer: Arc<Writer>,
        health_interval: Duration,
        recovery_interval: Duration,
    ) -> Self {
        Recovery {
            writer,
            health_interval,
            recovery_interval,
        }
    }

    /// While memory-only: free-space check, write, fsync, read back, verify and delete a probe
    /// file. On success: tiered mode, breaker closed, dirty entries written back, then the hot
    /// budget back to normal (what no longer fits is on disk by then). Returns whether the disk
    /// is back.
    #[tracing::instrument(
        target = "answercache::cache",
        level = "debug",
        name = "recovery_probe",
        skip_all
    )]
    pub(crate) async fn recovery_probe(&self) -> bool {
        self.writer.p.counters.probes_run.inc();
        let outcome = self
            .writer
            .p
            .gate
            .run_unchecked(|fs, store| store.probe(fs))
            .await;
        self.writer.p.gate.note("recovery probe", &outcome);
        if !matches!(
            outcome,
            DiskOutcome::Done {
                value: Ok(()),
                device_failure: None
            }
        ) {
            debug!(target: log::CACHE, "recovery probe failed; staying memory-only");
            return false;
        }
        self.writer.p.counters.probes_ok.inc();
        let gate = self.writer.write_back_lock().await;
        self.writer.p.gate.res.recover();
        let upto_before = self.writer.p.queue.seq();
        let queued = self.writer.write_back_gated().await;
        drop(gate);
        if queued > 0 {
            let upto = self.writer.p.queue.seq().max(upto_before);
            self.writer.p.queue.wait(Some(upto)).await;
        }
        self.writer.p.queue.locked(|view| {
            let evicted = self.writer.p.gate.res.restore_budget();
            self.writer.on_evicted(view, evicted);
        });
        true
    }

    /// While tiered: the same probe through the breaker, so a sick disk opens it (and a
    /// half-open breaker gets its probe call without waiting for traffic). A passing check
    /// also writes back entries whose earlier write failed.
    #[tracing::instrument(
        target = "answercache::cache",
        level = "debug",
        name = "health_check",
        skip_all
    )]
    pub(crate) async fn health_check(&self) {
        if self.writer.p.gate.breaker_state() == BreakerState::Open {
            return;
        }
        self.writer.p.counters.health_checks.inc();
        let outcome = self.writer.p.gate.run(|fs, store| store.probe(fs)).await;
        self.writer.p.gate.note("health check", &outcome);
        if matches!(
            outcome,
            DiskOutcome::Done {
                value: Ok(()),
                device_failure: None
            }
        ) {
            self.writer.write_back().await;
        }
    }
}

/// Drives time-based resilience: the breaker's Open → HalfOpen timer and the health check
/// while tiered; the recovery probe (and, when it passes, write-back and budget restore) while
/// memory-only. Stops on shutdown.
pub(crate) async fn recovery_task(rec: Arc<Recovery>, mut shutdown: watch::Receiver<bool>) {
    let health = rec.health_interval;
    // `None`: never (an interval too large to add to the clock, e.g. `Duration::MAX`).
    let after = |d: Duration| Instant::now().checked_add(d);
    let mut next_health = after(health);
    // The last recovery probe of the current memory-only stretch.
    let mut last_probe: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let res = &rec.writer.p.gate.res;
        if res.mode() == Mode::MemoryOnly {
            // A probe every `recovery_interval`, the first one counted from the instant the
            // cache went memory-only, not from when this task saw it: the write whose error
            // switched the mode is completed on a blocking thread, and its caller may run
            // (and a test may move a paused clock) before this task is scheduled.
            let base = match (last_probe, res.memory_only_since()) {
                (Some(p), _) => p,
                (None, Some(since)) => since,
                (None, None) => Instant::now(),
            };
            let probe_at = base.checked_add(rec.recovery_interval);
            tokio::select! {
                _ = async {
                    match probe_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = shutdown.changed() => return,
            }
            if rec.recovery_probe().await {
                last_probe = None;
                next_health = after(health);
            } else {
                last_probe = Some(Instant::now());
            }
            continue;
        }
        last_probe = None;
        let deadline = res.poll_breaker();
        let wake_at = match (deadline, next_health) {
            (Some(d), Some(h)) => Some(d.min(h)),
            (d, h) => d.or(h),
        };
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = res.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        if next_health.is_some_and(|t| Instant::now() >= t) {
            next_health = after(health);
            rec.health_check().await;
        }
    }
}
