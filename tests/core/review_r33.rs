//! Review r33 of "a write-through caller's job completes on the blocking thread that ran it"
//! (main 2633310 over 1486f99): adversarial tests of the direct jobs (`Writer::start_direct`,
//! `RunDirect`, the watchdog) against the promises of write-through `set`, `clear`, `flush`,
//! the breaker and the counters. Findings: `REVIEW_R33_FINDINGS.md`.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule};
use answercache::{BreakerState, Error, WritePolicy};

use crate::support::*;

/// F1. A caller-run write hangs on the disk past `io_timeout`: the set returns NotPersisted
/// and the watchdog gives up on it, but the blocking call keeps the clear gate's read guard
/// until the disk answers. `clear` ("a write that timed out is not waited for") then waits
/// for the hung disk forever (the writer-task path, `run_job`, drops its guard at the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn r33_clear_is_not_held_by_a_timed_out_caller_write() {
    let cache = write_through(Duration::from_millis(300), 4).await;
    cache.set_bytes("old", b"v".to_vec()).await.unwrap();
    hang_entry_writes(&cache);
    let set = tokio::time::timeout(PATIENCE, cache.set_bytes("k", b"hung".to_vec())).await;
    assert!(
        matches!(set, Ok(Err(Error::NotPersisted { failed: 1, .. }))),
        "{set:?}"
    );
    let cleared = tokio::time::timeout(PATIENCE, cache.clear()).await;
    release(&cache);
    assert!(matches!(cleared, Ok(Ok(()))), "clear: {cleared:?}");
    assert_eq!(cache.get_bytes("old").await.unwrap(), None);
}

/// Guard: same hung caller-run write (only that one hangs: `times(1)`), then a `clear`, and
/// a set of another key made meanwhile: the clear does not wait for the write given up at
/// io_timeout (F1) and completes while the disk still hangs; the other set lands; when the
/// hung write lands late, the writer deletes it (made before the clear): gone from memory,
/// from disk and after a restart, while the other key stays. (Session 23: the first form of
/// this test released the hang with `clear_rules` before the clear began; review r34.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r33_a_set_behind_a_clear_waiting_on_a_hung_caller_write_returns() {
    let mut cache = write_through(Duration::from_millis(300), 4).await;
    let before = cache.fs().calls(FsOp::WriteNew);
    cache.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::WriteNew])
            .path_contains("v2")
            .times(1),
    );
    let set = tokio::time::timeout(PATIENCE, cache.set_bytes("k", b"hung".to_vec())).await;
    assert!(
        matches!(set, Ok(Err(Error::NotPersisted { failed: 1, .. }))),
        "{set:?}"
    );
    let cleared = tokio::time::timeout(PATIENCE, cache.clear()).await;
    assert!(matches!(cleared, Ok(Ok(()))), "clear: {cleared:?}");
    let other = tokio::time::timeout(PATIENCE, cache.set_bytes("other", b"x".to_vec())).await;
    assert!(matches!(other, Ok(Ok(()))), "{other:?}");
    // The hung write, the clear's fence file, the other key's write.
    assert_eq!(cache.fs().calls(FsOp::WriteNew), before + 3);
    cache.fs().release_hangs();
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 2).await);
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    assert_eq!(cache.get_bytes("k").await.unwrap(), None);
    assert!(!cache.on_disk("k"));
    assert!(cache.on_disk("other"));
    cache.reopen().await;
    assert_eq!(cache.get_bytes("k").await.unwrap(), None);
    assert_eq!(
        cache.get_bytes("other").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );
}

/// Guard: a caller-run write that timed out is reported to the breaker once (as a timeout),
/// not again when it later returns; a second timeout opens a breaker whose threshold is 2.
/// Counters exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r33_a_timed_out_caller_write_is_reported_to_the_breaker_once() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
                .write_concurrency(4)
                .failure_threshold(2)
        })
        .await;
    hang_entry_writes(&cache);
    let set = cache.set_bytes("a", b"1".to_vec()).await;
    assert!(
        matches!(set, Err(Error::NotPersisted { failed: 1, .. })),
        "{set:?}"
    );
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    release(&cache);
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 1).await);
    let s = cache.stats();
    assert_eq!(
        (
            s.disk_errors,
            s.writes_ok,
            s.writes_failed,
            s.lost_writes,
            s.breaker_opens
        ),
        (1, 1, 0, 0, 0)
    );
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    // The late success was not reported either (it would have reset the count): one more
    // timeout opens the breaker.
    hang_entry_writes(&cache);
    let set = cache.set_bytes("b", b"2".to_vec()).await;
    assert!(
        matches!(set, Err(Error::NotPersisted { failed: 1, .. })),
        "{set:?}"
    );
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    release(&cache);
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 2).await);
    let s = cache.stats();
    assert_eq!(
        (
            s.disk_errors,
            s.writes_ok,
            s.writes_failed,
            s.lost_writes,
            s.breaker_opens
        ),
        (2, 2, 0, 0, 1)
    );
}

/// Guard: every write slot held by a hung caller-run write: further sets (of other keys and
/// of a hung key) still return NotPersisted within about io_timeout; once the disk answers
/// the latest value of each key lands, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r33_sets_return_when_every_slot_is_held_by_a_hung_write() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
                .write_concurrency(2)
                .failure_threshold(100)
                .memory_only_after(100)
        })
        .await;
    hang_entry_writes(&cache);
    let (a, b) = tokio::join!(
        cache.set_bytes("a", b"a1".to_vec()),
        cache.set_bytes("b", b"b1".to_vec())
    );
    assert!(
        matches!(a, Err(Error::NotPersisted { failed: 1, .. })),
        "{a:?}"
    );
    assert!(
        matches!(b, Err(Error::NotPersisted { failed: 1, .. })),
        "{b:?}"
    );
    for (k, v) in [("a", "a2"), ("c", "c1"), ("d", "d1")] {
        let r = tokio::time::timeout(PATIENCE, cache.set_bytes(k, v.as_bytes().to_vec())).await;
        assert!(
            matches!(r, Ok(Err(Error::NotPersisted { failed: 1, .. }))),
            "{k}: {r:?}"
        );
    }
    assert_eq!(
        cache.get_bytes("a").await.unwrap().as_deref(),
        Some(&b"a2"[..])
    );
    release(&cache);
    let c = cache.cache.clone();
    let landed = wait_until(PATIENCE, || c.stats().writes_ok >= 5).await;
    assert!(landed, "{:?}", c.stats());
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    let s = cache.stats();
    assert_eq!((s.writes_failed, s.lost_writes, s.task_panics), (0, 0, 0));
    cache.reopen().await;
    for (k, v) in [("a", "a2"), ("b", "b1"), ("c", "c1"), ("d", "d1")] {
        assert_eq!(
            cache.get_bytes(k).await.unwrap().as_deref(),
            Some(v.as_bytes()),
            "{k}"
        );
    }
}

/// Guard: the cache dropped without close while caller-run writes hang, then the runtime
/// shuts down: the sets return, no panic; the disk released afterwards.
#[test]
fn r33_dropped_cache_and_runtime_with_hung_caller_writes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = rt.block_on(write_through(Duration::from_secs(60), 3));
    let fs = cache.fs().clone();
    hang_entry_writes(&cache);
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = Arc::new(cache);
    let sets: Vec<_> = (0..3)
        .map(|i| {
            let cache = cache.clone();
            other.spawn(async move { cache.set_bytes(format!("k{i}"), b"v".to_vec()).await })
        })
        .collect();
    let reached = other.block_on(wait_until(PATIENCE, || fs.calls(FsOp::WriteNew) >= 3));
    assert!(reached);
    drop(cache);
    rt.shutdown_background();
    for s in sets {
        let r = other
            .block_on(async { tokio::time::timeout(PATIENCE, s).await })
            .expect("a set never returned")
            .expect("a set panicked");
        assert!(
            matches!(r, Err(Error::NotPersisted { failed: 1, .. })),
            "{r:?}"
        );
    }
    fs.clear_rules();
    fs.release_hangs();
}
