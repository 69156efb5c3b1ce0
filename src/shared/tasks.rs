//! The shared tier's background tasks, each handed only the tier: the drain task (sends the
//! write queue in pipelined batches) and the probe task (the breaker's timer: a `PING` at
//! start and whenever the breaker turns half-open). The namespace sync task works on the
//! agent's namespaces and lives with them (`agent/shared_sync.rs`).

use std::sync::Arc;

use tokio::sync::watch;

use super::tier::SharedTier;
use crate::breaker::BreakerState;

/// Sends queued writes until shutdown. `close` drains the queue itself (`flush`) before it
/// signals shutdown, so nothing is left behind here.
pub(crate) async fn drain_task(tier: Arc<SharedTier>, mut shutdown: watch::Receiver<bool>) {
    loop {
        while tier.send_batch(false).await {
            if *shutdown.borrow() {
                return;
            }
        }
        // Removals kept after a failed `DEL` are sent again at their time, written or not.
        let deferred = tier.dels_deferred_until();
        tokio::select! {
            _ = tier.queue.ready.notified() => {}
            _ = async {
                match deferred {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Probes at start (closing the breaker the tier starts with) and on every half-open.
pub(crate) async fn probe_task(tier: Arc<SharedTier>, mut shutdown: watch::Receiver<bool>) {
    let mut at_start = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match tier.state() {
            BreakerState::HalfOpen => {
                tier.probe(false).await;
                continue;
            }
            BreakerState::Open if at_start => {
                at_start = false;
                if tier.probe(true).await {
                    continue;
                }
            }
            _ => {}
        }
        let deadline = tier.next_deadline();
        tokio::select! {
            _ = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = tier.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
