//! The compactor task: compresses the entries the warm tier wrote stored (see
//! `warm::store::compact`) one at a time, when no entry write has been in flight for
//! [`COMPACT_IDLE`] (then back to back while none begins), so that its encode and its write
//! do not compete with the writes callers wait for. A write in flight counts however long
//! its sync takes: on a busy disk a sync outlasts the idle wait, and counting only writes
//! begun (before session 24) compacted beside nearly every write there. Under writes that
//! never pause it still compacts one entry per
//! [`COMPACT_IDLE`] × [`COMPACT_MAX_DEFERRALS`] (1 s), so the backlog is worked off however
//! slowly; and without waiting once the entries waiting take more than an eighth of the warm
//! budget (`WarmStore::compaction_pressing`), so that the budget keeps holding about as many
//! entries as it would compressed. It uses the writer (a `clear` waits for a compaction in
//! flight as for a write), the disk gate (`DiskGate::run_optional`: only while tiered with
//! the breaker closed, bounded by `io_timeout`, reporting nothing to the breaker; a failed
//! compaction pauses them for [`COMPACT_BACKOFF`]) and the clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::warm::store::Backlog;
use crate::writer::Writer;

/// How long no entry write must have begun before the next compaction.
pub(crate) const COMPACT_IDLE: Duration = Duration::from_millis(50);

/// The most [`COMPACT_IDLE`] waits one compaction is put off by writes that do not pause.
pub(crate) const COMPACT_MAX_DEFERRALS: u32 = 20;

/// How long compactions pause after one failed (the entry stays queued and stored).
pub(crate) const COMPACT_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until shutdown (see the module docs).
pub(crate) async fn compactor_task(writer: Arc<Writer>, mut shutdown: watch::Receiver<bool>) {
    let gate = writer.p.gate.clone();
    let store = gate.store.clone();
    // The entry writes' activity when the last compaction ended: none since (and none in
    // flight), and the next one follows at once (a backlog is worked off back to back while
    // nothing writes).
    let mut quiet_since = None;
    loop {
        if store.backlog().len() == 0 {
            tokio::select! {
                _ = store.backlog().wanted() => {}
                _ = shutdown.changed() => return,
            }
        }
        tokio::select! {
            _ = turn(store.backlog(), || store.compaction_pressing(), quiet_since) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if store.backlog().len() == 0 {
            // Woken by a push the last compactions already took: no disk call for nothing.
            continue;
        }
        let now = writer.p.clock.now_ms();
        let clear = tokio::select! {
            guard = writer.hold_off_clear() => guard,
            _ = shutdown.changed() => return,
        };
        // Not raced with the shutdown: `close` waits for a compaction in flight (at most
        // `io_timeout`), so that none lands under the next instance opened on the directory.
        let outcome = gate
            .run_optional(move |fs, store| store.compact_next(fs, now))
            .await;
        drop(clear);
        match outcome {
            Some(Ok(_)) => quiet_since = Some(store.backlog().activity()),
            // Memory-only, or the breaker not closed: looked at again after a pause (the
            // entries wait, stored and valid).
            None => {
                quiet_since = None;
                tokio::select! {
                    _ = tokio::time::sleep(COMPACT_IDLE) => {}
                    _ = shutdown.changed() => return,
                }
            }
            Some(Err(e)) => {
                // The entry stays queued and stored; the disk gets a rest from optional work.
                tracing::debug!(error = %e, "a compaction failed; compactions pause");
                quiet_since = None;
                tokio::select! {
                    _ = tokio::time::sleep(COMPACT_BACKOFF) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Resolves when the next compaction may run: at once when no entry write has been in flight
/// since the last compaction ended (`quiet_since`, the activity counted then) or the backlog
/// presses; otherwise after a [`COMPACT_IDLE`] in which no write was in flight, or after
/// [`COMPACT_MAX_DEFERRALS`] + 1 waits each of which saw one.
pub(crate) async fn turn(backlog: &Backlog, pressing: impl Fn() -> bool, quiet_since: Option<u64>) {
    let mut deferrals = 0;
    loop {
        let seen = backlog.activity();
        if (quiet_since == Some(seen) && backlog.idle_since(seen)) || pressing() {
            return;
        }
        tokio::time::sleep(COMPACT_IDLE).await;
        if backlog.idle_since(seen) || deferrals >= COMPACT_MAX_DEFERRALS {
            return;
        }
        deferrals += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{turn, COMPACT_IDLE};
    use crate::warm::store::Backlog;

    /// How long `turn` takes (paused clock) while an entry write begins every `every` (none
    /// when `None`).
    async fn waited(every: Option<Duration>, quiet_since: Option<u64>, pressing: bool) -> Duration {
        let backlog = Arc::new(Backlog::default());
        let done = Arc::new(AtomicBool::new(false));
        if let Some(every) = every {
            let (b, d) = (backlog.clone(), done.clone());
            tokio::spawn(async move {
                while !d.load(Ordering::Relaxed) {
                    tokio::time::sleep(every).await;
                    drop(b.note_write());
                }
            });
        }
        let start = Instant::now();
        turn(&backlog, || pressing, quiet_since).await;
        done.store(true, Ordering::Relaxed);
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_disk_is_waited_for_once() {
        assert_eq!(waited(None, None, false).await, COMPACT_IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn no_write_since_the_last_compaction_means_no_wait() {
        assert_eq!(waited(None, Some(0), false).await, Duration::ZERO);
        // A write since: the idle wait again.
        assert_eq!(waited(None, Some(7), false).await, COMPACT_IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_every_30_ms_put_it_off_for_21_waits() {
        // Every 50 ms window sees a write: 20 deferrals, then the 21st wait ends the turn.
        assert_eq!(
            waited(Some(Duration::from_millis(30)), None, false).await,
            Duration::from_millis(1050)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn writes_every_120_ms_leave_a_quiet_window() {
        // Writes at 120, 240, ...: the windows 0-50 and 50-100 see none.
        assert_eq!(
            waited(Some(Duration::from_millis(120)), None, false).await,
            COMPACT_IDLE
        );
        // Writes at 40, 80, 120, ...: never a quiet 50 ms window.
        assert_eq!(
            waited(Some(Duration::from_millis(40)), None, false).await,
            Duration::from_millis(1050)
        );
    }

    /// How long `turn` takes (paused clock) while one entry write is in flight from the start
    /// for `held`, nothing else writing.
    async fn waited_beside(held: Duration, quiet_since: Option<u64>) -> Duration {
        let backlog = Arc::new(Backlog::default());
        let (begun, has_begun) = tokio::sync::oneshot::channel();
        let b = backlog.clone();
        // The guard borrows the backlog: held in a task that owns a clone of it.
        tokio::spawn(async move {
            let guard = b.note_write();
            let _ = begun.send(());
            tokio::time::sleep(held).await;
            drop(guard);
        });
        has_begun.await.unwrap();
        let start = Instant::now();
        turn(&backlog, || false, quiet_since).await;
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_in_flight_puts_it_off_until_an_idle_window_after_it() {
        // In flight until 180 ms: the windows to 50, 100, 150 and 200 each saw it (the last
        // its end); 200-250 is idle.
        assert_eq!(
            waited_beside(Duration::from_millis(180), None).await,
            Duration::from_millis(250)
        );
        // Even when no write began since the last compaction: one in flight is not quiet.
        assert_eq!(
            waited_beside(Duration::from_millis(180), Some(1)).await,
            Duration::from_millis(250)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_in_flight_for_ever_puts_it_off_for_21_waits() {
        assert_eq!(
            waited_beside(Duration::from_secs(3600), None).await,
            Duration::from_millis(1050)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pressing_backlog_is_not_put_off() {
        assert_eq!(
            waited(Some(Duration::from_millis(30)), None, true).await,
            Duration::ZERO
        );
    }
}
