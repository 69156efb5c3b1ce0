//! Supervised background tasks: a panic is counted and the task restarted, and the
//! restarted task still gets the shutdown signal (close returns, drop stops it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::{Clock, ManualClock};

use crate::support::*;

/// A manual clock that panics once when armed: the next caller of `now_ms` panics.
#[derive(Debug)]
struct PanickyClock {
    inner: ManualClock,
    armed: AtomicBool,
}

impl Clock for PanickyClock {
    fn now_ms(&self) -> u64 {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("adversary4: armed clock");
        }
        self.inner.now_ms()
    }
}

/// Tokio tasks of one open cache: writer, watchdog, maintenance, compactor and resilience, each a
/// supervisor and its task; with the `metrics` feature (issue 13) a sixth pair publishes the
/// metrics.
const CACHE_TASKS: usize = if cfg!(feature = "metrics") { 12 } else { 10 };

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// The maintenance task panics (its clock does) in the middle of its sweep loop: counted
/// once, restarted, and the restarted task sweeps expired files and stops on `close`.
#[tokio::test(start_paused = true)]
async fn a_panicking_maintenance_task_is_restarted_and_still_stops() {
    let before = alive();
    let env = Env::new();
    let clock = Arc::new(PanickyClock {
        inner: ManualClock::new(T0),
        armed: AtomicBool::new(false),
    });
    let b = env
        .builder()
        .clock(clock.clone())
        .sweep_interval(Duration::from_secs(10));
    let cache = env.open(b.clone()).await;
    assert_eq!(alive(), before + CACHE_TASKS);
    cache
        .set_with_ttl("short", &1, Duration::from_secs(1))
        .await
        .unwrap();
    cache.set("long", &2).await.unwrap();
    cache.flush().await.unwrap();
    assert_eq!(env.entry_files().len(), 2);
    // Only the maintenance task reads the clock while the test sleeps.
    clock.armed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10_200)).await;
    settle().await;
    let s = cache.stats();
    assert_eq!((s.task_panics, s.warm_expirations), (1, 0));
    assert_eq!(alive(), before + CACHE_TASKS, "the task was restarted");
    // The restarted task sweeps: the short entry expires on disk.
    clock.inner.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(11)).await;
    spin_until(|| cache.stats().warm_expirations == 1).await;
    let s = cache.stats();
    assert_eq!(
        (s.task_panics, s.warm_expirations, env.entry_files().len()),
        (1, 1, 1)
    );
    let closed = tokio::time::timeout(Duration::from_secs(60), cache.close()).await;
    assert!(
        matches!(closed, Ok(Ok(()))),
        "close after a restart: {closed:?}"
    );
    settle().await;
    assert_eq!(alive(), before);
}

/// A restarted maintenance task also stops when the last handle is dropped without close.
#[tokio::test(start_paused = true)]
async fn a_restarted_task_stops_when_the_last_handle_drops() {
    let before = alive();
    let env = Env::new();
    let clock = Arc::new(PanickyClock {
        inner: ManualClock::new(T0),
        armed: AtomicBool::new(false),
    });
    let b = env
        .builder()
        .clock(clock.clone())
        .sweep_interval(Duration::from_secs(10));
    let cache = env.open(b).await;
    clock.armed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10_200)).await;
    settle().await;
    assert_eq!(cache.stats().task_panics, 1);
    drop(cache);
    for _ in 0..10 {
        settle().await;
    }
    assert_eq!(alive(), before);
}
