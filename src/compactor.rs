//! The compactor task: compresses the entries the warm tier wrote stored (see
//! `warm::store::compact`) one at a time, when no entry write has begun for
//! [`COMPACT_IDLE`], so that its encode and its write do not compete with the writes callers
//! wait for. Under writes that never pause it still compacts one entry per
//! [`COMPACT_IDLE`] × [`COMPACT_MAX_DEFERRALS`] (1 s), so the backlog is worked off however
//! slowly. It uses the writer (a `clear` waits for a compaction in flight as for a write),
//! the disk gate (breaker and timeout as for any disk call) and the clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::writer::Writer;

/// How long no entry write must have begun before the next compaction.
pub(crate) const COMPACT_IDLE: Duration = Duration::from_millis(50);

/// The most [`COMPACT_IDLE`] waits one compaction is put off by writes that do not pause.
pub(crate) const COMPACT_MAX_DEFERRALS: u32 = 20;

/// Runs until shutdown (see the module docs).
pub(crate) async fn compactor_task(writer: Arc<Writer>, mut shutdown: watch::Receiver<bool>) {
    let gate = writer.p.gate.clone();
    let store = gate.store.clone();
    loop {
        if store.backlog().len() == 0 {
            tokio::select! {
                _ = store.backlog().wanted() => {}
                _ = shutdown.changed() => return,
            }
        }
        let mut deferrals = 0;
        loop {
            let seen = store.backlog().writes();
            tokio::select! {
                _ = tokio::time::sleep(COMPACT_IDLE) => {}
                _ = shutdown.changed() => return,
            }
            if store.backlog().writes() == seen || deferrals >= COMPACT_MAX_DEFERRALS {
                break;
            }
            deferrals += 1;
        }
        if *shutdown.borrow() {
            return;
        }
        if !gate.in_use() || gate.breaker_state() != crate::breaker::BreakerState::Closed {
            // Memory-only, or the breaker not closed: the entries wait (stored, valid) until
            // the disk is back. A compaction never takes a half-open breaker's trial call
            // from a caller's write, nor counts as a rejection.
            continue;
        }
        let now = writer.p.clock.now_ms();
        let clear = writer.hold_off_clear().await;
        tokio::select! {
            outcome = gate.run(move |fs, store| store.compact_next(fs, now)) => {
                gate.note("compaction", &outcome);
            }
            _ = shutdown.changed() => return,
        }
        drop(clear);
    }
}
