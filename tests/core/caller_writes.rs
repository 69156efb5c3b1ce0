//! A write-through `set` or `remove` runs its own disk write on the caller's task when a write
//! slot is free (issue 14: two thread wake-ups fewer per call). What must not change with it:
//! a job once started is completed even when its caller is dropped (or its key stays in
//! flight and `flush` waits forever), `write_concurrency` bounds the writes calling the disk,
//! whoever runs them, and `close` waits for them.

use std::time::Duration;

use answercache::testing::{disk_errors, wait_until, Fault, FsOp, Rule};
use answercache::WritePolicy;

use crate::support::*;

/// Long enough that no disk call here reaches it: the hangs are released by the test.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A write-through set dropped while its own write hangs: the write still completes once
/// the disk answers (flush Ok, the entry clean and on disk, found by a restart), instead of
/// leaving its key in flight forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_write_through_set_still_completes_its_write() {
    let mut cache = write_through(IO_TIMEOUT, 4).await;
    let before = cache.fs().calls(FsOp::WriteNew);
    hang_entry_writes(&cache);
    let set = tokio::time::timeout(
        Duration::from_millis(300),
        cache.set_bytes("k", b"the answer".to_vec()),
    )
    .await;
    assert!(
        set.is_err(),
        "the set returned while its write hung: {set:?}"
    );
    entry_writes_reach(&cache, before + 1).await;
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(
        matches!(flushed, Ok(Ok(()))),
        "flush after the dropped set: {flushed:?}"
    );
    let stats = cache.stats();
    assert_eq!(stats.writes_ok, 1);
    assert_eq!(stats.writes_failed, 0);
    assert!(cache.on_disk("k"));
    cache.reopen().await;
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"the answer"[..])
    );
}

/// The same for a write-through remove: the delete completes, a restart finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_write_through_remove_still_completes_its_delete() {
    let mut cache = write_through(IO_TIMEOUT, 4).await;
    cache.set_bytes("k", b"old".to_vec()).await.unwrap();
    assert!(cache.on_disk("k"));
    let before = cache.fs().calls(FsOp::RemoveFile);
    cache.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::RemoveFile])
            .path_contains("v2"),
    );
    let removed = tokio::time::timeout(Duration::from_millis(300), cache.remove("k")).await;
    assert!(
        removed.is_err(),
        "the remove returned while its delete hung: {removed:?}"
    );
    let fs = cache.fs().clone();
    assert!(wait_until(PATIENCE, || fs.calls(FsOp::RemoveFile) > before).await);
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(
        matches!(flushed, Ok(Ok(()))),
        "flush after the dropped remove: {flushed:?}"
    );
    assert!(!cache.on_disk("k"));
    cache.reopen().await;
    assert_eq!(cache.get_bytes("k").await.unwrap(), None);
}

/// With `write_concurrency(1)`, a second write-through set (another key) does not call the
/// disk while the first one's write hangs, whoever runs it; both land once released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_concurrency_bounds_writes_run_by_their_callers() {
    let cache = std::sync::Arc::new(write_through(IO_TIMEOUT, 1).await);
    let before = cache.fs().calls(FsOp::WriteNew);
    hang_entry_writes(&cache);
    let first = tokio::spawn({
        let cache = cache.clone();
        async move { cache.set_bytes("a", b"first".to_vec()).await }
    });
    entry_writes_reach(&cache, before + 1).await;
    let second = tokio::spawn({
        let cache = cache.clone();
        async move { cache.set_bytes("b", b"second".to_vec()).await }
    });
    // The second set is committed (its value served from memory) but waits for the slot.
    let c2 = cache.clone();
    assert!(wait_until(PATIENCE, || c2.stats().sets == 2).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cache.fs().calls(FsOp::WriteNew),
        before + 1,
        "a second write called the disk with write_concurrency(1)"
    );
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(cache.fs().calls(FsOp::WriteNew), before + 2);
    assert_eq!(cache.stats().writes_ok, 2);
    assert!(cache.on_disk("a") && cache.on_disk("b"));
}

/// `close` while a write-through set's own write hangs waits for it: the set is Ok, close is
/// Ok, and the next process finds the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_a_write_its_caller_runs() {
    let cache = std::sync::Arc::new(write_through(IO_TIMEOUT, 4).await);
    let before = cache.fs().calls(FsOp::WriteNew);
    hang_entry_writes(&cache);
    let set = tokio::spawn({
        let cache = cache.clone();
        async move { cache.set_bytes("k", b"v".to_vec()).await }
    });
    entry_writes_reach(&cache, before + 1).await;
    let close = tokio::spawn({
        let cache = cache.clone();
        async move { cache.close().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!close.is_finished(), "close returned while a write hung");
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    set.await.unwrap().unwrap();
    close.await.unwrap().unwrap();
    assert!(cache.on_disk("k"));
    let dir = std::sync::Arc::try_unwrap(cache).unwrap().into_dir();
    let reopened = dir.open(dir.builder()).await;
    assert_eq!(
        reopened.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

/// Write-through sets from a current-thread runtime (`#[tokio::test]`'s default), many keys
/// and rewrites of one key interleaved from concurrent tasks: every set is Ok, every key's
/// newest value is on disk after a restart, and every write is counted once.
#[tokio::test]
async fn concurrent_write_through_sets_on_a_current_thread_runtime_land_exactly() {
    let mut cache = write_through(IO_TIMEOUT, 2).await;
    let c = std::sync::Arc::new(cache.cache.clone());
    let mut tasks = Vec::new();
    for t in 0..4u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                c.set_bytes(format!("key-{t}-{i}"), format!("{t}/{i}").into_bytes())
                    .await
                    .unwrap();
                c.set_bytes("shared", format!("{t}/{i}").into_bytes())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(c);
    let stats = cache.stats();
    assert_eq!(stats.sets, 200);
    assert_eq!(stats.writes_failed, 0);
    // A set of "shared" whose job was superseded by a newer one in the queue lands with it:
    // between 101 (each distinct key once, "shared" at least once) and 200 writes.
    assert!(
        (101..=200).contains(&stats.writes_ok),
        "writes_ok {}",
        stats.writes_ok
    );
    let last_shared = cache.get_bytes("shared").await.unwrap().unwrap();
    cache.reopen().await;
    for t in 0..4u32 {
        for i in 0..25u32 {
            assert_eq!(
                cache
                    .get_bytes(format!("key-{t}-{i}"))
                    .await
                    .unwrap()
                    .as_deref(),
                Some(format!("{t}/{i}").as_bytes())
            );
        }
    }
    assert_eq!(
        cache.get_bytes("shared").await.unwrap().as_deref(),
        Some(&last_shared[..])
    );
}

/// A write-through set awaited on another runtime, one without timers (the cache's disk calls
/// are bounded by timers): the write runs inside the cache's runtime, the set is Ok and the
/// value on disk; and a write-through remove likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_calls_from_a_runtime_without_timers_run_on_the_caches_runtime() {
    let mut cache = write_through(IO_TIMEOUT, 4).await;
    let other = cache.cache.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _ = tx.send(rt.block_on(async {
            let set = other.set_bytes("k", b"from elsewhere".to_vec()).await;
            other.set_bytes("gone", b"x".to_vec()).await.unwrap();
            let removed = other.remove("gone").await;
            (set, removed)
        }));
    });
    let (set, removed) = tokio::task::spawn_blocking(move || rx.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .expect("the calls from a runtime without timers never returned");
    assert!(set.is_ok(), "{set:?}");
    assert_eq!(removed.ok(), Some(true));
    assert_eq!(cache.stats().writes_ok, 3);
    assert!(cache.on_disk("k") && !cache.on_disk("gone"));
    cache.reopen().await;
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"from elsewhere"[..])
    );
    assert_eq!(cache.get_bytes("gone").await.unwrap(), None);
}

/// A write-through set future polled once (its write started) and then held, never polled
/// again, on a disk that hangs: the watchdog gives up on the write at `io_timeout`, so
/// `flush` reports it (NotPersisted, 1) instead of waiting for the held future or the disk;
/// once the disk answers, the write lands and the held future, polled at last, is told the
/// truth of its moment (not written: the watchdog had given up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_set_future_on_a_hung_disk_is_given_up_at_io_timeout() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
        })
        .await;
    let before = cache.fs().calls(FsOp::WriteNew);
    hang_entry_writes(&cache);
    let mut held = Box::pin(cache.set_bytes("k", b"v".to_vec()));
    let first = futures_poll_once(held.as_mut()).await;
    assert!(first.is_pending());
    entry_writes_reach(&cache, before + 1).await;
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(
        matches!(
            flushed,
            Ok(Err(answercache::Error::NotPersisted { failed: 1, .. }))
        ),
        "{flushed:?}"
    );
    assert_eq!(disk_errors(&cache, "timeout"), 1);
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 1).await);
    let r = held.await;
    assert!(
        matches!(r, Err(answercache::Error::NotPersisted { .. })),
        "{r:?}"
    );
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    assert!(cache.on_disk("k"));
}

/// Polls `f` once.
async fn futures_poll_once<F: std::future::Future>(
    mut f: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await
}

/// A write the watchdog gave up on (its free-space check hung past `io_timeout`) that then
/// returns with the store's own refusal (no space: a refusal no fs call returned) is counted
/// once, as the timeout: not also as a `no-space` error, as `run_job` never judges a call its
/// gate stopped waiting for. Its write is counted failed once it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_given_up_at_io_timeout_is_not_judged_again_when_it_returns() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
                .min_free_bytes(1 << 20)
                .failure_threshold(100)
                .memory_only_after(1000)
        })
        .await;
    let (timeouts, no_space) = (
        disk_errors(&cache, "timeout"),
        disk_errors(&cache, "no-space"),
    );
    cache.fs().set_available_space(Some(0));
    cache
        .fs()
        .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::AvailableSpace]).times(1));
    let set = tokio::time::timeout(PATIENCE, cache.set_bytes("k", b"v".to_vec())).await;
    assert!(
        matches!(
            set,
            Ok(Err(answercache::Error::NotPersisted { failed: 1, .. }))
        ),
        "{set:?}"
    );
    assert_eq!(disk_errors(&cache, "timeout") - timeouts, 1);
    cache.fs().release_hangs();
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_failed == 1).await);
    assert_eq!(
        (
            disk_errors(&cache, "timeout") - timeouts,
            disk_errors(&cache, "no-space") - no_space
        ),
        (1, 0)
    );
    assert_eq!(cache.stats().writes_ok, 0);
    assert!(!cache.on_disk("k"));
}

/// While the clear fence on disk cannot be read (its file fails with EIO), a write-through
/// set does not start its own write: like every write, it waits for the fence to be known
/// (an entry's creation time must not fall before a clear this process has not seen), so it
/// is NotPersisted and nothing reaches the disk; once the fence reads again, the next set
/// lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caller_write_starts_while_the_fence_is_unknown() {
    let settings = |b: answercache::Builder| {
        b.write_policy(WritePolicy::WriteThrough)
            .io_timeout(IO_TIMEOUT)
            .failure_threshold(1000)
            .memory_only_after(1000)
    };
    let mut cache = dir().fault_fs().open_cache(settings).await;
    cache.set_bytes("old", b"v".to_vec()).await.unwrap();
    cache.clear().await.unwrap();
    cache.cache.close().await.unwrap();
    cache.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence"),
    );
    cache.reopen_after_close().await;
    let set = cache.set_bytes("k", b"v".to_vec()).await;
    assert!(
        matches!(set, Err(answercache::Error::NotPersisted { failed: 1, .. })),
        "{set:?}"
    );
    assert_eq!(cache.stats().writes_ok, 0);
    assert!(!cache.on_disk("k"));
    cache.fs().clear_rules();
    cache.set_bytes("k2", b"w".to_vec()).await.unwrap();
    assert_eq!(cache.stats().writes_ok, 1);
    assert!(cache.on_disk("k2"));
}
