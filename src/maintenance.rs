//! The maintenance task: merges the startup scan into the warm index, then sweeps expired
//! entry files every `sweep_interval` (retrying the scan if it failed). It uses the disk gate
//! and a clock, nothing else.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{sleep_or_never, Clock};
use crate::disk::DiskGate;

/// Runs until shutdown (see the module docs).
pub(crate) async fn maintenance_task(
    gate: Arc<DiskGate>,
    clock: Arc<dyn Clock>,
    sweep_interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = sleep_or_never(sweep_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
        first = false;
        if *shutdown.borrow() {
            return;
        }
        if !gate.in_use() {
            continue;
        }
        let scanned = gate.store.usage().2;
        let now = clock.now_ms();
        let walk = gate.run_long(move |fs, store| {
            if scanned {
                store.sweep_expired(fs, now)
            } else {
                store.scan(fs, now)
            }
        });
        tokio::select! {
            outcome = walk => gate.note(if scanned { "sweep" } else { "scan" }, &outcome),
            _ = shutdown.changed() => {
                gate.store.begin_close();
                return;
            }
        }
    }
}
