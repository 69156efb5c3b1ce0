//! Background tasks that survive their own bugs.
//!
//! Why: each background task carries a promise (the writer drains the queue, the resilience
//! task runs the recovery probe, the maintenance task sweeps). A panic that silently ended one
//! would break that promise for the rest of the process — an outage never recovered, a
//! `flush` that waits forever — with nothing in `stats` to say so. A supervised task that
//! panics is counted (`Stats::task_panics`), logged once per panic at error level, and started
//! again after a short pause, so a panic that repeats cannot spin a core.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::stats::Counters;

/// Pause before a panicked task is started again.
const RESTART_PAUSE: Duration = Duration::from_millis(100);

/// Spawns `make()` and starts it again each time it panics, until it returns normally (each
/// task watches the cache's shutdown itself, so a restarted task still drains and stops).
pub(crate) fn spawn_supervised<F, Fut>(
    name: &'static str,
    counters: Arc<Counters>,
    make: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(make()).await {
                Err(e) if e.is_panic() => {
                    counters.task_panics.inc();
                    tracing::error!(task = name, "background task panicked; restarting it");
                    tokio::time::sleep(RESTART_PAUSE).await;
                }
                _ => return,
            }
        }
    })
}
