//! Background tasks stop on `close` and when the last handle is dropped: no task leaks.

use crate::support::*;

/// Tokio tasks of one open cache: writer, watchdog, maintenance, compactor and resilience, each under
/// its supervisor; with the `metrics` feature, the metrics publisher too.
const CACHE_TASKS: usize = if cfg!(feature = "metrics") { 12 } else { 10 };

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn tasks_stop_on_close() {
    let before = alive();
    let t = dir();
    let cache = open(&t, |b| b).await;
    assert_eq!(alive(), before + CACHE_TASKS);
    cache.set("k", &1).await.unwrap();
    cache.close().await.unwrap();
    settle().await;
    assert_eq!(alive(), before);
    assert!(matches!(
        cache.get::<i32>("k").await,
        Err(answercache::Error::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn tasks_stop_when_the_last_handle_is_dropped_and_queued_writes_land() {
    let before = alive();
    let t = dir();
    let cache = open(&t, |b| {
        b.write_policy(answercache::WritePolicy::WriteBehind)
    })
    .await;
    let clone = cache.clone();
    for i in 0..50 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    drop(cache);
    settle().await;
    assert_eq!(alive(), before + CACHE_TASKS, "a clone is still alive");
    drop(clone);
    for _ in 0..10 {
        settle().await;
    }
    assert_eq!(alive(), before);
    let reopened = open(&t, |b| b).await;
    for i in 0..50 {
        assert_eq!(reopened.get::<i32>(format!("k{i}")).await.unwrap(), Some(i));
    }
}

/// A recovery probe that is still running when `close` stops the writer passes afterwards:
/// its write-back finds the queue shut instead of waiting forever for a writer that is gone.
/// (Found by `random_faults::one_in_128`, which hung in `close` about once in 20 runs.)
#[tokio::test(start_paused = true)]
async fn close_during_a_recovery_probe_returns() {
    use answercache::testing::{Fault, FsOp, Rule};
    use answercache::{Error, Mode};
    use std::time::Duration;

    let before = alive();
    let t = dir();
    let cache = open(&t, |b| {
        b.failure_threshold(1_000)
            .memory_only_after(5)
            .recovery_interval(Duration::from_secs(300))
    })
    .await;
    fail(&t, &[FsOp::WriteNew], EIO);
    for i in 0..8 {
        not_persisted(cache.set(format!("k{i}"), &i).await);
    }
    assert_eq!(cache.mode(), Mode::MemoryOnly);
    // The disk is healthy again, but the probe's first call (its write: the fixture sets
    // `min_free_bytes(0)`, so there is no free-space check) stalls.
    t.fs().clear_rules();
    let writes = t.fs().calls(FsOp::WriteNew);
    t.fs()
        .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]).times(1));
    tokio::time::advance(Duration::from_secs(300)).await;
    spin_until(|| t.fs().calls(FsOp::WriteNew) == writes + 1).await;
    assert_eq!(cache.stats().probes_run, 1);

    let closing = tokio::spawn({
        let cache = cache.clone();
        async move { cache.close().await }
    });
    // The writer and the maintenance task stop; the resilience task (and its supervisor) is
    // inside the probe; the third task is `closing`.
    spin_until(|| alive() == before + 3).await;
    t.fs().release_hangs();
    let closed = tokio::time::timeout(Duration::from_secs(3600), closing)
        .await
        .expect("close returned")
        .unwrap();
    match closed {
        Err(Error::NotPersisted { failed, .. }) => assert_eq!(failed, 8),
        other => panic!("close: {other:?}"),
    }
    let s = cache.stats();
    assert_eq!((s.probes_run, s.probes_ok), (1, 1));
    assert_eq!(s.mode, Mode::Tiered);
    assert_eq!(s.written_back, 0, "the writer was gone: nothing was queued");
    settle().await;
    assert_eq!(alive(), before);
}

/// Regression (issue 11, bug 6): `health_interval(Duration::MAX)` means "never": the
/// resilience task must not die adding it to the clock, since the same task runs the recovery
/// probe that brings the disk back after an outage.
#[tokio::test(start_paused = true)]
async fn a_health_interval_of_duration_max_still_recovers() {
    use answercache::testing::FsOp;
    use answercache::Mode;
    use std::time::Duration;

    let t = dir();
    let cache = open(&t, |b| {
        b.health_interval(Duration::MAX)
            .failure_threshold(1)
            .memory_only_after(1)
            .recovery_interval(Duration::from_secs(1))
    })
    .await;
    fail(&t, &[FsOp::WriteNew], EIO);
    let _ = cache.set("k", &1).await;
    assert_eq!(cache.mode(), Mode::MemoryOnly);
    t.fs().clear_rules();
    tokio::time::sleep(Duration::from_secs(2)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    assert_eq!(cache.stats().probes_ok, 1);
    cache.close().await.unwrap();
    let reopened = open(&t, |b| b).await;
    assert_eq!(reopened.get::<i32>("k").await.unwrap(), Some(1));
}
