//! Single-flight loading: one loader per key however many callers miss at once; its error
//! reaches every waiter and is never cached; a panicking or cancelled leader never wedges
//! the key; stale-if-error serves the expired answer through a whole outage, within its grace
//! and no longer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::Error;

use crate::support::*;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn two_hundred_concurrent_callers_share_one_loader() {
    let f = TestCache::new().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, calls) = (f.cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("what is 6 x 7?", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(2 * SEC).await; // the model thinks
                        ok(answer("42", 7))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), answer("42", 7));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = f.stats();
    // One load (the only miss); the other 199 were answered by it.
    assert_eq!(
        (s.loader_calls, s.misses, s.joined, s.hot_hits, s.sets),
        (1, 1, 199, 0, 1)
    );
    assert_eq!(f.loads_in_flight(), 0);

    // The value is cached: the next caller does not load.
    let again: Answer = f
        .get_or_insert_with("what is 6 x 7?", || async { ok(answer("other", 1)) })
        .await
        .unwrap();
    assert_eq!(again, answer("42", 7));
    let s = f.stats();
    assert_eq!((s.loader_calls, s.hot_hits), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_loader_error_reaches_every_waiter_and_is_not_cached() {
    let f = TestCache::new().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, calls) = (f.cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("q", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(SEC).await;
                        Err::<Answer, _>(ModelDown("503 from upstream"))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            Err(Error::Loader(e)) => {
                assert_eq!(e.to_string(), "model down: 503 from upstream");
                assert_eq!(
                    e.downcast_ref::<ModelDown>().map(|m| m.0),
                    Some("503 from upstream")
                );
            }
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.stats().sets, 0, "an error is never stored");
    assert_eq!(f.get::<Answer>("q").await.unwrap(), None);

    // The next call loads again, and its value is cached.
    let got = f
        .get_or_insert_with("q", || async { ok(answer("back up", 3)) })
        .await
        .unwrap();
    assert_eq!(got, answer("back up", 3));
    assert_eq!(f.stats().loader_calls, 2);
    assert_eq!(
        f.get::<Answer>("q").await.unwrap(),
        Some(answer("back up", 3))
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_loader_fails_its_waiters_and_the_next_call_loads_again() {
    let f = TestCache::new().await;
    let (go, gate) = tokio::sync::oneshot::channel::<()>();
    let cache = f.cache.clone();
    let leader = tokio::spawn(async move {
        cache
            .get_or_insert_with("q", || async move {
                let _ = gate.await;
                if calls_panic() {
                    panic!("the model client had a bug");
                }
                ok(answer("never", 0))
            })
            .await
    });
    settle().await;
    assert_eq!(f.loads_in_flight(), 1);
    let waiter_calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let (cache, calls) = (f.cache.clone(), waiter_calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("q", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        ok(answer("from a waiter", 1))
                    })
                    .await
            })
        })
        .collect();
    settle().await;
    go.send(()).unwrap();

    assert!(leader.await.unwrap_err().is_panic());
    for w in waiters {
        match w.await.unwrap() {
            Err(Error::Loader(e)) => {
                assert_eq!(e.to_string(), "loader panicked");
                assert!(e.is_panic());
            }
            other => panic!("expected a loader error, got {other:?}"),
        }
    }
    assert_eq!(waiter_calls.load(Ordering::SeqCst), 0);
    assert_eq!(f.loads_in_flight(), 0, "the key is not wedged");

    let got = f
        .get_or_insert_with("q", || async { ok(answer("fine now", 2)) })
        .await
        .unwrap();
    assert_eq!(got, answer("fine now", 2));
    assert_eq!(f.stats().loader_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_hands_the_load_to_a_waiter() {
    let f = TestCache::new().await;
    let cache = f.cache.clone();
    let leader = tokio::spawn(async move {
        cache
            .get_or_insert_with("q", std::future::pending::<Result<Answer, ModelDown>>)
            .await
    });
    settle().await;
    let waiter_calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let (cache, calls) = (f.cache.clone(), waiter_calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("q", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(SEC).await;
                        ok(answer("from a waiter", 1))
                    })
                    .await
            })
        })
        .collect();
    settle().await;
    leader.abort(); // the client hung up
    assert!(leader.await.unwrap_err().is_cancelled());

    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), answer("from a waiter", 1));
    }
    assert_eq!(
        waiter_calls.load(Ordering::SeqCst),
        1,
        "one waiter took over the load for all"
    );
    let s = f.stats();
    assert_eq!((s.loader_calls, s.sets), (2, 1));
    assert_eq!(f.loads_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_does_not_wedge_the_key() {
    let f = TestCache::new().await;
    let timed_out = tokio::time::timeout(
        SEC,
        f.get_or_insert_with("q", std::future::pending::<Result<Answer, ModelDown>>),
    )
    .await;
    assert!(timed_out.is_err());
    assert_eq!(f.loads_in_flight(), 0);

    let got = f
        .get_or_insert_with("q", || async { ok(answer("loaded again", 1)) })
        .await
        .unwrap();
    assert_eq!(got, answer("loaded again", 1));
    assert_eq!(f.stats().loader_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_expired_answer_through_an_outage_within_its_grace() {
    let f = TestCache::new().await;
    let fresh = Controls::new().ttl(10 * SEC);
    let stale_ok = Controls::new().ttl(10 * SEC).stale_if_error(60 * SEC);
    let first = f
        .get_or_insert_with_controls("q", &fresh, || async { ok(answer("v1", 5)) })
        .await
        .unwrap();
    assert_eq!(first, answer("v1", 5));

    tokio::time::advance(10 * SEC).await; // expired now
    let down = || async { Err::<Answer, _>(ModelDown("timeout")) };
    // Every call of the outage gets the stale answer, the concurrent ones included.
    let got = f
        .get_or_insert_with_controls("q", &stale_ok, down)
        .await
        .unwrap();
    assert_eq!(got, answer("v1", 5));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, controls) = (f.cache.clone(), stale_ok.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with_controls("q", &controls, || async {
                        tokio::time::sleep(SEC).await;
                        Err::<Answer, _>(ModelDown("timeout"))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), answer("v1", 5));
    }
    let s = f.stats();
    // The 20 concurrent calls: one led the (failing) load, 19 joined it; all served stale.
    assert_eq!(
        (s.stale_served, s.loader_calls, s.misses, s.joined),
        (21, 3, 3, 19)
    );

    // Without stale_if_error the caller sees the error.
    let err = f.get_or_insert_with("q", down).await.unwrap_err();
    assert!(
        matches!(err, Error::Loader(ref m) if m.to_string() == "model down: timeout"),
        "{err}"
    );

    // That call dropped the expired entry (from both tiers); load again, let it expire.
    f.get_or_insert_with_controls("q", &fresh, || async { ok(answer("v2", 5)) })
        .await
        .unwrap();
    tokio::time::advance(10 * SEC + 60 * SEC - Duration::from_millis(1)).await;
    let got = f
        .get_or_insert_with_controls("q", &stale_ok, down)
        .await
        .unwrap();
    assert_eq!(got, answer("v2", 5), "1 ms before the grace ends");
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = f
        .get_or_insert_with_controls("q", &stale_ok, down)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Loader(_)), "past the grace: {err}");
    assert_eq!(f.stats().stale_served, 22);
}

fn calls_panic() -> bool {
    true
}

#[tokio::test(start_paused = true)]
async fn an_oversized_key_fails_before_the_loader_runs() {
    let f = TestCache::with(|b| b.max_key_bytes(16)).await;
    let err = f
        .get_or_insert_with_controls(
            "a key of thirty-two bytes, over!",
            &Controls::new().no_cache(),
            || async { ok(answer("never", 0)) },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len: 32, max: 16 }),
        "{err}"
    );
    assert_eq!(f.stats().loader_calls, 0);
}

/// Write-through on a disk that refuses every write: the loaded answer still reaches the
/// caller (and is served from memory), a namespace still works, and `invalidate_if` removes
/// in memory and reports what did not reach the disk. Only `flush` and the write-through
/// `set` itself report `NotPersisted`.
#[tokio::test(start_paused = true)]
async fn a_refused_write_through_store_never_costs_the_caller_its_answer() {
    use answercache::testing::{Fault, FaultFs, FsOp, Rule};
    use std::sync::Arc as StdArc;
    let fs = StdArc::new(FaultFs::std());
    let f = TestCache::with({
        let fs = fs.clone();
        move |b| {
            b.fs(fs)
                .write_policy(answercache::WritePolicy::WriteThrough)
                .failure_threshold(1_000)
                .memory_only_after(1_000)
        }
    })
    .await;
    fs.add_rule(Rule::new(Fault::Errno(5)).ops(&[FsOp::WriteNew, FsOp::RemoveFile]));
    let got: Answer = f
        .get_or_insert_with("q", || async { ok(answer("42", 7)) })
        .await
        .unwrap();
    assert_eq!(got, answer("42", 7));
    let again: Answer = f
        .get_or_insert_with("q", || async { ok(answer("other", 1)) })
        .await
        .unwrap();
    assert_eq!(again, answer("42", 7), "served from memory");
    assert_eq!(f.stats().loader_calls, 1);

    let ns = f.namespace("tools").unwrap();
    ns.set("a", &1).await.unwrap_err();
    assert_eq!(ns.get::<i32>("a").await.unwrap(), Some(1));

    match f.invalidate_if(|k| k == b"q").await {
        Err(Error::NotPersisted { failed: 1, .. }) => {}
        other => panic!("invalidate_if returned {other:?}"),
    }
    assert_eq!(f.get::<Answer>("q").await.unwrap(), None);
    assert!(matches!(f.flush().await, Err(Error::NotPersisted { .. })));
}
