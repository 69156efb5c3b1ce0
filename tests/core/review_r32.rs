//! Review r32 of "a write-through caller runs its own write job" (main 1486f99, 5d27c6a):
//! adversarial tests of what the change must keep. A job once claimed by a caller lives in
//! the caller's future (`Driven`); these tests attack what callers may do with that future
//! (panic beside it, hold it without polling it, cancel it at every point, race `close`),
//! and check the state a restart finds. Findings: `REVIEW_R32_FINDINGS.md`.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule};
use answercache::{Error, WritePolicy};

use crate::support::*;

/// Long enough that no disk call here reaches it: hangs are released by the test.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Delays every entry write, rename and delete under `v2/` by `by`.
fn delay_entry_calls(cache: &TestCache, by: Duration) {
    cache.fs().add_rule(
        Rule::new(Fault::Delay(by))
            .ops(&[FsOp::WriteNew, FsOp::Rename, FsOp::RemoveFile])
            .path_contains("v2"),
    );
}

/// F1. A write-through set whose caller's task panics elsewhere (another branch of a
/// `join!`) while the set's own write is on the disk: tokio drops the task's future while
/// the thread unwinds, `Drop for Driven` sees `thread::panicking()` and drops the job
/// instead of handing it to a task. Its key stays in flight forever: `flush` (and so
/// `close`) never returns. Before the change the writer task owned the job and a panicking
/// caller only dropped its receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn r32_a_set_whose_caller_panics_beside_it_still_completes() {
    let cache = Arc::new(write_through(IO_TIMEOUT, 4).await);
    let before = cache.fs().calls(FsOp::WriteNew);
    hang_entry_writes(&cache);
    let (go, panic_now) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let cache = cache.clone();
        async move {
            let set = cache.set_bytes("k", b"the answer".to_vec());
            let bug = async move {
                let _ = panic_now.await;
                panic!("a bug in the caller's other branch");
            };
            let (_set, ()) = tokio::join!(set, bug);
        }
    });
    entry_writes_reach(&cache, before + 1).await;
    go.send(()).unwrap();
    let joined = task.await;
    assert!(joined.unwrap_err().is_panic());
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(
        matches!(flushed, Ok(Ok(()))),
        "flush after the caller panicked: {flushed:?}"
    );
    let stats = cache.stats();
    assert_eq!((stats.writes_ok, stats.writes_failed), (1, 0));
    assert!(cache.on_disk("k"));
}

/// F1, second face: after such a panic a later write-through set of the same key queues
/// behind the abandoned job and never returns, though the disk answers at once (no
/// io_timeout bounds it: nothing is calling the disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn r32_a_later_set_of_the_key_returns_after_a_caller_panicked() {
    let cache = Arc::new(write_through(IO_TIMEOUT, 4).await);
    let before = cache.fs().calls(FsOp::WriteNew);
    hang_entry_writes(&cache);
    let (go, panic_now) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let cache = cache.clone();
        async move {
            let set = cache.set_bytes("k", b"first".to_vec());
            let bug = async move {
                let _ = panic_now.await;
                panic!("a bug in the caller's other branch");
            };
            let (_set, ()) = tokio::join!(set, bug);
        }
    });
    entry_writes_reach(&cache, before + 1).await;
    go.send(()).unwrap();
    assert!(task.await.unwrap_err().is_panic());
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    let again = tokio::time::timeout(PATIENCE, cache.set_bytes("k", b"second".to_vec())).await;
    assert!(
        matches!(again, Ok(Ok(()))),
        "a later write-through set of the key: {again:?}"
    );
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
}

/// F2. A write-through set future polled until its own write is on the disk, then held
/// without being polled (a `select!` against a short timer, the future kept for later: the
/// caller goes on with other work). The job lives in that future: when the disk answers,
/// nobody completes it. With `write_concurrency(1)` it also keeps the only write slot, so
/// every other write stalls: a write-through set of another key (on a disk that answers in
/// 20 ms) and `flush` wait as long as the caller holds the future. Before the change the
/// writer task ran the job whatever the caller did with its receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn r32_a_held_unpolled_set_future_stalls_no_other_write() {
    let cache = write_through(IO_TIMEOUT, 1).await;
    let before = cache.fs().calls(FsOp::WriteNew);
    delay_entry_calls(&cache, Duration::from_millis(200));
    let held = cache.set_bytes("held", b"v".to_vec());
    tokio::pin!(held);
    tokio::select! {
        biased;
        r = &mut held => panic!("the set returned before its delayed write: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    assert_eq!(cache.fs().calls(FsOp::WriteNew), before + 1);
    cache.fs().clear_rules();
    delay_entry_calls(&cache, Duration::from_millis(20));
    // The caller goes on with other work; the held write's disk call returns in 150 ms.
    let (other, flushed) = tokio::join!(
        tokio::time::timeout(PATIENCE, cache.set_bytes("other", b"w".to_vec())),
        async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tokio::time::timeout(PATIENCE, cache.flush()).await
        }
    );
    assert!(
        matches!(other, Ok(Ok(()))),
        "a write-through set of another key while a set future is held: {other:?}"
    );
    assert!(
        matches!(flushed, Ok(Ok(()))),
        "flush while a set future is held: {flushed:?}"
    );
    // The held future, polled at last, learns its write landed.
    assert!(matches!(held.await, Ok(())));
}

/// F2 with the default `write_concurrency`: the held future still owns its job, so `flush`
/// (which waits for "held", set before it) never returns while it is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn r32_flush_does_not_wait_for_a_held_unpolled_set_future() {
    let cache = write_through(IO_TIMEOUT, 4).await;
    let before = cache.fs().calls(FsOp::WriteNew);
    delay_entry_calls(&cache, Duration::from_millis(200));
    let held = cache.set_bytes("held", b"v".to_vec());
    tokio::pin!(held);
    tokio::select! {
        biased;
        r = &mut held => panic!("the set returned before its delayed write: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    assert_eq!(cache.fs().calls(FsOp::WriteNew), before + 1);
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(
        matches!(flushed, Ok(Ok(()))),
        "flush while a set future is held: {flushed:?}"
    );
    assert!(cache.on_disk("held"));
    assert!(matches!(held.await, Ok(())));
}

/// Guard: write-through sets and removes of one key, each cut by a timeout of 0..19 ms while
/// every entry call takes 15 ms, with a second key written beside them: every job a dropped
/// caller started still completes (flush Ok), nothing fails or is lost, memory and a restart
/// both hold exactly the last committed operation of each key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r32_cancelled_at_every_point_the_newest_operation_wins_everywhere() {
    let mut cache = write_through(IO_TIMEOUT, 2).await;
    delay_entry_calls(&cache, Duration::from_millis(15));
    let mut last: Option<Vec<u8>> = None;
    let mut last_side: Option<Vec<u8>> = None;
    let (mut sets, mut removes) = (0u64, 0u64);
    for i in 0..60u64 {
        let cut = Duration::from_millis(i % 20);
        let s0 = cache.stats();
        if i % 5 == 4 {
            let _ = tokio::time::timeout(cut, cache.remove("k")).await;
            if cache.stats().removes > s0.removes {
                removes += 1;
                last = None;
            }
        } else {
            let v = format!("value {i}").into_bytes();
            let _ = tokio::time::timeout(cut, cache.set_bytes("k", v.clone())).await;
            if cache.stats().sets > s0.sets {
                sets += 1;
                last = Some(v);
            }
        }
        if i % 3 == 0 {
            let s1 = cache.stats();
            let v = format!("side {i}").into_bytes();
            let _ = tokio::time::timeout(cut / 2, cache.set_bytes("side", v.clone())).await;
            if cache.stats().sets > s1.sets {
                sets += 1;
                last_side = Some(v);
            }
        }
    }
    cache.fs().clear_rules();
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    let stats = cache.stats();
    assert_eq!((stats.sets, stats.removes), (sets, removes));
    assert_eq!(
        (stats.writes_failed, stats.lost_writes, stats.task_panics),
        (0, 0, 0)
    );
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        last.as_deref()
    );
    assert_eq!(
        cache.get_bytes("side").await.unwrap().as_deref(),
        last_side.as_deref()
    );
    assert_eq!(cache.on_disk("k"), last.is_some());
    cache.reopen().await;
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        last.as_deref()
    );
    assert_eq!(
        cache.get_bytes("side").await.unwrap().as_deref(),
        last_side.as_deref()
    );
}

/// Guard: write-through sets of distinct keys from 6 tasks racing `close`, with slow entry
/// writes: every set is Ok (and then its value is found after a restart), or Closed or
/// NotPersisted; close is Ok; each Ok set is exactly one landed write, a NotPersisted one none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r32_write_through_sets_racing_close_are_ok_only_when_durable() {
    let cache = Arc::new(write_through(IO_TIMEOUT, 2).await);
    delay_entry_calls(&cache, Duration::from_millis(3));
    let mut tasks = Vec::new();
    for t in 0..6u32 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut not_persisted) = (Vec::new(), 0u64);
            for i in 0..200u32 {
                let key = format!("t{t}-{i}");
                match cache.set_bytes(&key, key.clone().into_bytes()).await {
                    Ok(()) => ok.push(key),
                    Err(Error::Closed) => break,
                    Err(Error::NotPersisted { .. }) => {
                        not_persisted += 1;
                        break;
                    }
                    Err(e) => panic!("{key}: {e:?}"),
                }
            }
            (ok, not_persisted)
        }));
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let closed = tokio::time::timeout(PATIENCE, cache.close()).await;
    assert!(matches!(closed, Ok(Ok(()))), "{closed:?}");
    let (mut ok, mut not_persisted) = (Vec::new(), 0);
    for t in tasks {
        let (o, n) = t.await.unwrap();
        ok.extend(o);
        not_persisted += n;
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.writes_ok, stats.writes_failed, stats.sets),
        (ok.len() as u64, 0, ok.len() as u64 + not_persisted)
    );
    cache.fs().clear_rules();
    let dir = Arc::try_unwrap(cache).unwrap().into_dir();
    let reopened = dir.open(dir.builder()).await;
    for key in &ok {
        assert_eq!(
            reopened.get_bytes(key.as_str()).await.unwrap().as_deref(),
            Some(key.as_bytes()),
            "{key} was acknowledged but is not on disk"
        );
    }
}

/// Guard: `write_concurrency(1)`, 4 tasks of write-through sets and removes over 3 shared
/// keys and a `clear` and `flush` from the side: no deadlock between the writer task and
/// the callers (everything returns), every call is Ok, and a restart finds exactly what
/// memory held after the last flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r32_one_slot_mixed_traffic_with_clear_neither_deadlocks_nor_diverges() {
    let mut cache = write_through(IO_TIMEOUT, 1).await;
    delay_entry_calls(&cache, Duration::from_millis(1));
    let c = Arc::new(cache.cache.clone());
    let mut tasks = Vec::new();
    for t in 0..4u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40u32 {
                let key = format!("k{}", (t + i) % 3);
                if (t + i) % 4 == 0 {
                    c.remove(key.as_str()).await.unwrap();
                } else {
                    c.set_bytes(key.as_str(), format!("{t}/{i}").into_bytes())
                        .await
                        .unwrap();
                }
            }
        }));
    }
    let side = tokio::spawn({
        let c = c.clone();
        async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(15)).await;
                c.clear().await.unwrap();
                c.flush().await.unwrap();
            }
        }
    });
    let all = tokio::time::timeout(PATIENCE, async {
        for t in tasks {
            t.await.unwrap();
        }
        side.await.unwrap();
    })
    .await;
    assert!(all.is_ok(), "a call never returned");
    drop(c);
    cache.fs().clear_rules();
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    let mut in_memory = Vec::new();
    for k in 0..3 {
        in_memory.push(cache.get_bytes(format!("k{k}")).await.unwrap());
    }
    assert_eq!(
        (cache.stats().writes_failed, cache.stats().lost_writes),
        (0, 0)
    );
    cache.reopen().await;
    for (k, want) in in_memory.iter().enumerate() {
        assert_eq!(
            cache.get_bytes(format!("k{k}")).await.unwrap().as_deref(),
            want.as_deref(),
            "k{k} after a restart"
        );
    }
}

/// Guard: a write-through set polled by an executor that is not tokio at all (a plain
/// `block_on` on a std thread) claims its job and runs it inside the cache's runtime: Ok,
/// on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r32_a_set_from_a_non_tokio_executor_is_durable() {
    let cache = write_through(IO_TIMEOUT, 4).await;
    let other = cache.cache.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = block_on(other.set_bytes("k", b"from a plain thread".to_vec()));
        let _ = tx.send(r);
    });
    let set = tokio::task::spawn_blocking(move || rx.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .expect("the set from a plain executor never returned");
    assert!(set.is_ok(), "{set:?}");
    assert_eq!(cache.stats().writes_ok, 1);
    assert!(cache.on_disk("k"));
}

/// A minimal executor: polls `fut` on this thread, parking between wake-ups.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// F3 (also before the change). The cache's runtime shuts down while a write-through set awaited on another
/// runtime runs its own write on a hung disk: the set must still return (NotPersisted:
/// nothing bounds a hung call once the runtime is gone, but the caller must not hang), with
/// no panic.
#[test]

fn r32_a_set_awaited_elsewhere_returns_when_the_caches_runtime_shuts_down() {
    let a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = Arc::new(a.block_on(write_through(IO_TIMEOUT, 4)));
    let before = cache.fs().calls(FsOp::WriteNew);
    hang_entry_writes(&cache);
    let b = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let set = b.spawn({
        let cache = cache.clone();
        async move { cache.set_bytes("k", b"v".to_vec()).await }
    });
    b.block_on(entry_writes_reach(&cache, before + 1));
    a.shutdown_background();
    let r = b.block_on(async { tokio::time::timeout(PATIENCE, set).await });
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    let r = r.expect("the set never returned after the cache's runtime shut down");
    let r = r.expect("the set panicked");
    assert!(matches!(r, Err(Error::NotPersisted { .. })), "{r:?}");
}

/// Guard: a caller-run write whose disk call outlives `io_timeout` (300 ms): the set returns
/// NotPersisted, the value is served from memory meanwhile, `flush` reports the one stuck
/// write instead of waiting for it; once the disk answers, the blocking call completes the
/// job (counted once as landed), `flush` is Ok and a restart finds the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r32_a_caller_run_write_past_io_timeout_completes_when_the_disk_answers() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
                .write_concurrency(1)
        })
        .await;
    hang_entry_writes(&cache);
    let set = tokio::time::timeout(PATIENCE, cache.set_bytes("k", b"slow".to_vec())).await;
    assert!(
        matches!(set, Ok(Err(Error::NotPersisted { failed: 1, .. }))),
        "{set:?}"
    );
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"slow"[..])
    );
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(
        matches!(flushed, Ok(Err(Error::NotPersisted { failed: 1, .. }))),
        "{flushed:?}"
    );
    assert_eq!(cache.stats().writes_ok, 0);
    cache.fs().clear_rules();
    cache.fs().release_hangs();
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 1).await);
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    let stats = cache.stats();
    assert_eq!(
        (stats.writes_ok, stats.writes_failed, stats.lost_writes),
        (1, 0, 0)
    );
    cache.reopen().await;
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"slow"[..])
    );
}
