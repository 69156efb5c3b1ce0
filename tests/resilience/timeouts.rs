//! An unreachable backend with no timeout hung every request in LiteLLM. Here a disk call
//! that hangs (a stalled network mount) returns within `io_timeout` and counts as a failure.

use std::time::Duration;

use answercache::testing::{Fault, FsOp, Rule};
use answercache::BreakerState;

use crate::support::*;

async fn finish_within<T>(
    task: tokio::task::JoinHandle<T>,
    step: Duration,
    limit: Duration,
) -> (T, Duration) {
    let start = tokio::time::Instant::now();
    while !task.is_finished() {
        assert!(start.elapsed() <= limit, "still running after {limit:?}");
        tokio::time::advance(step).await;
        spin().await;
    }
    (task.await.unwrap(), start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn hung_read_returns_within_io_timeout() {
    let t = dir();
    let io_timeout = Duration::from_millis(500);
    let cache = open(&t, |b| b.io_timeout(io_timeout).failure_threshold(1)).await;
    cache.set("k", &"v").await.unwrap();
    t.fs()
        .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::ReadFile]));
    // Not in hot: force a disk read.
    let reads = t.fs().calls(FsOp::ReadFile);
    let c = cache.clone();
    let task = tokio::spawn(async move { c.get::<String>("never-set").await });
    // The read is in its hang before the clock moves (blocking threads start in real time).
    spin_until(|| t.fs().calls(FsOp::ReadFile) == reads + 1).await;
    let (got, elapsed) =
        finish_within(task, Duration::from_millis(10), Duration::from_secs(2)).await;
    assert_eq!(got.unwrap(), None);
    assert!(
        elapsed >= io_timeout && elapsed <= io_timeout + Duration::from_millis(20),
        "{elapsed:?}"
    );
    assert_eq!(errors(&cache, "timeout"), 1);
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    // The hot value is still served while the disk hangs.
    assert_eq!(cache.get::<String>("k").await.unwrap(), Some("v".into()));
    t.fs().release_hangs();
}

#[tokio::test(start_paused = true)]
async fn hung_write_through_set_returns_and_keeps_the_value() {
    let t = dir();
    let io_timeout = Duration::from_millis(200);
    let cache = open(&t, |b| b.io_timeout(io_timeout)).await;
    t.fs()
        .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
    let writes = t.fs().calls(FsOp::WriteNew);
    let c = cache.clone();
    let task = tokio::spawn(async move { c.set("k", &"value").await });
    // The write is in its hang before the clock moves (blocking threads start in real time).
    spin_until(|| t.fs().calls(FsOp::WriteNew) == writes + 1).await;
    let (got, elapsed) =
        finish_within(task, Duration::from_millis(10), Duration::from_secs(2)).await;
    // Not known to be durable: reported, and the value is still served.
    not_persisted(got);
    assert!(
        elapsed <= 2 * io_timeout + Duration::from_millis(20),
        "{elapsed:?}"
    );
    assert_eq!(errors(&cache, "timeout"), 1);
    assert_eq!(
        cache.get::<String>("k").await.unwrap(),
        Some("value".into())
    );
    // Release it and drop the rule, so that no later write hangs while `settle` sleeps.
    t.fs().clear_rules();
    settle().await;
}

/// A write whose disk call hangs forever must not hang `flush` or `clear` either, also with a
/// newer write of the same key queued behind it; if the hung write lands after the clear, the
/// clear still wins, in this process and after a restart.
#[tokio::test(start_paused = true)]
async fn hung_write_hangs_neither_flush_nor_clear_and_the_clear_wins() {
    let t = dir();
    let io_timeout = Duration::from_millis(200);
    let cache = open(&t, |b| {
        b.io_timeout(io_timeout)
            .write_policy(answercache::WritePolicy::WriteBehind)
    })
    .await;
    t.fs()
        .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]).times(1));
    cache.set("k", &"old").await.unwrap();
    spin_until(|| t.fs().calls(FsOp::WriteNew) == 1).await;
    // Past io_timeout: the write is stuck.
    tokio::time::advance(io_timeout + Duration::from_millis(10)).await;
    spin().await;
    assert_eq!(errors(&cache, "timeout"), 1);
    // A newer value of the key waits behind the stuck write.
    cache.set("k", &"new").await.unwrap();
    // Neither needs the clock to move: they do not wait for the stuck write. (Bounded in
    // real time: a hang fails the test instead of hanging it.)
    let c = cache.clone();
    let flushing = tokio::spawn(async move { c.flush().await });
    spin_until(|| flushing.is_finished()).await;
    // Not on disk, and said so: the key's writes are held up by the stuck one.
    match flushing.await.unwrap() {
        Err(answercache::Error::NotPersisted { failed, .. }) => assert_eq!(failed, 1),
        other => panic!("flush: {other:?}"),
    }
    let c = cache.clone();
    let clearing = tokio::spawn(async move { c.clear().await });
    spin_until(|| clearing.is_finished()).await;
    clearing.await.unwrap().unwrap();
    assert_eq!(cache.get::<String>("k").await.unwrap(), None);
    // The disk comes back: the old write lands, after the clear. It is deleted, not served.
    t.fs().release_hangs();
    spin_until(|| cache.stats().write_queue_depth == 0).await;
    assert_eq!(cache.stats().writes_ok, 1);
    assert_eq!(cache.get::<String>("k").await.unwrap(), None);
    cache.close().await.unwrap();
    let reopened = open(&t, |b| b).await;
    assert_eq!(reopened.get::<String>("k").await.unwrap(), None);
    assert_eq!(reopened.stats().warm_entries, 0);
}
