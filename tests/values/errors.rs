//! Typed loader errors: every caller sharing a failed load gets `Error::Loader` carrying the
//! loader's own error (the same one, downcastable to its type); nothing is stored and the next
//! call loads again. `String` and `&'static str` errors keep their text; a panicking loader
//! fails its waiters with an error that says it panicked.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::{Error, Source};

use crate::support::*;

const SEC: Duration = Duration::from_secs(1);

/// An upstream 429.
#[derive(Debug)]
struct RateLimited {
    retry_after_s: u64,
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited, retry after {} s", self.retry_after_s)
    }
}

impl std::error::Error for RateLimited {}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reply {
    text: String,
}

/// `n` concurrent callers of `key`, whose loaders think for a second (paused clock) and then
/// return `result()`; returns every caller's result and how many loaders ran.
async fn concurrent<E>(
    f: &TestCache,
    key: &'static str,
    n: usize,
    result: fn() -> Result<Reply, E>,
) -> (Vec<answercache::Result<answercache::Answer<Reply>>>, usize)
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (cache, calls) = (f.cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_answer(key, &Controls::new(), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(SEC).await;
                        result()
                    })
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    (results, calls.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn every_waiter_of_a_rate_limited_load_can_read_its_retry_after() {
    let mut f = TestCache::new().await;
    let (results, calls) = concurrent(&f, "q", 20, || {
        Err::<Reply, _>(RateLimited { retry_after_s: 37 })
    })
    .await;
    assert_eq!(calls, 1, "one load for all twenty callers");
    let mut shared: Option<*const RateLimited> = None;
    for r in &results {
        let err = r.as_ref().unwrap_err();
        assert!(matches!(err, Error::Loader(e) if !e.is_panic()), "{err:?}");
        let rl = err
            .loader_error::<RateLimited>()
            .expect("the loader's own error");
        assert_eq!(rl.retry_after_s, 37);
        assert_eq!(
            err.to_string(),
            "loader failed: rate limited, retry after 37 s"
        );
        // The very same error, not a copy: every waiter shares the load's outcome.
        let p: *const RateLimited = rl;
        assert_eq!(*shared.get_or_insert(p), p);
        // It is not some other type.
        assert!(err.loader_error::<std::io::Error>().is_none());
        match err {
            Error::Loader(e) => assert_eq!(
                e.downcast_ref::<RateLimited>().map(|r| r.retry_after_s),
                Some(37)
            ),
            other => panic!("expected Error::Loader, got {other:?}"),
        }
    }
    let s = f.stats();
    assert_eq!(
        (s.loader_calls, s.misses, s.joined, s.sets, s.hot_hits),
        (1, 1, 19, 0, 0)
    );
    assert_eq!(f.loads_in_flight(), 0);
    assert_eq!(
        f.get::<Reply>("q").await.unwrap(),
        None,
        "an error is never stored"
    );

    // The next call loads again, and its value is stored.
    let a = f
        .get_or_insert_answer("q", &Controls::new(), || async {
            Ok::<_, RateLimited>(Reply { text: "ok".into() })
        })
        .await
        .unwrap();
    assert_eq!((a.value.text.as_str(), a.source), ("ok", Source::Loaded));
    assert_eq!(f.stats().loader_calls, 2);
    f.reopen().await;
    assert_eq!(
        f.get::<Reply>("q").await.unwrap(),
        Some(Reply { text: "ok".into() })
    );
}

#[tokio::test(start_paused = true)]
async fn string_and_str_errors_keep_their_text_for_every_waiter() {
    let f = TestCache::new().await;
    let (results, calls) = concurrent(&f, "s", 5, || {
        Err::<Reply, String>(format!("upstream said {}: {}", 503, "overloaded"))
    })
    .await;
    assert_eq!(calls, 1);
    for r in &results {
        match r {
            Err(Error::Loader(e)) => {
                assert_eq!(e.to_string(), "upstream said 503: overloaded");
                assert_eq!(e.get_ref().to_string(), "upstream said 503: overloaded");
                assert!(!e.is_panic());
            }
            other => panic!("expected Error::Loader, got {other:?}"),
        }
    }
    let (results, calls) = concurrent(&f, "t", 5, || {
        Err::<Reply, &'static str>("model refused: context too long")
    })
    .await;
    assert_eq!(calls, 1);
    for r in &results {
        let err = r.as_ref().unwrap_err();
        assert_eq!(
            err.to_string(),
            "loader failed: model refused: context too long"
        );
        match err {
            Error::Loader(e) => assert_eq!(e.to_string(), "model refused: context too long"),
            other => panic!("expected Error::Loader, got {other:?}"),
        }
    }
    // A boxed error keeps its concrete type.
    let err = f
        .get_or_insert_with("u", || async {
            Err::<Reply, Box<dyn std::error::Error + Send + Sync>>(Box::new(RateLimited {
                retry_after_s: 2,
            }))
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.loader_error::<RateLimited>().map(|e| e.retry_after_s),
        Some(2)
    );
    let s = f.stats();
    assert_eq!((s.loader_calls, s.misses, s.joined, s.sets), (3, 3, 8, 0));
    for key in ["s", "t", "u"] {
        assert_eq!(f.get::<Reply>(key).await.unwrap(), None, "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_loader_fails_its_waiters_with_a_panic_error() {
    let f = TestCache::new().await;
    let leader = {
        let cache = f.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_answer("p", &Controls::new(), || async {
                    tokio::time::sleep(SEC).await;
                    if std::hint::black_box(true) {
                        panic!("the model client had a bug");
                    }
                    Ok::<_, String>(Reply {
                        text: "never".into(),
                    })
                })
                .await
        })
    };
    while f.loads_in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let waiter_calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let (cache, calls) = (f.cache.clone(), waiter_calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_answer("p", &Controls::new(), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, String>(Reply {
                            text: "waiter".into(),
                        })
                    })
                    .await
            })
        })
        .collect();
    assert!(
        leader.await.unwrap_err().is_panic(),
        "the leader's own task panics"
    );
    for w in waiters {
        match w.await.unwrap() {
            Err(Error::Loader(e)) => {
                assert!(e.is_panic(), "{e}");
                assert_eq!(e.to_string(), "loader panicked");
            }
            other => panic!("expected a panic error, got {other:?}"),
        }
    }
    assert_eq!(waiter_calls.load(Ordering::SeqCst), 0, "no waiter retried");
    assert_eq!(f.loads_in_flight(), 0, "the key is not wedged");
    let s = f.stats();
    assert_eq!((s.loader_calls, s.misses, s.joined, s.sets), (1, 1, 10, 0));

    let a = f
        .get_or_insert_answer("p", &Controls::new(), || async {
            Ok::<_, String>(Reply {
                text: "fixed".into(),
            })
        })
        .await
        .unwrap();
    assert_eq!((a.value.text.as_str(), a.source), ("fixed", Source::Loaded));
    assert_eq!(f.stats().loader_calls, 2);
}

#[tokio::test]
async fn a_bypass_loader_error_is_typed_too() {
    let f = TestCache::new().await;
    let err = f
        .get_or_insert_answer(
            "q",
            &Controls::<Reply>::new().no_cache().no_store(),
            || async { Err::<Reply, _>(RateLimited { retry_after_s: 5 }) },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.loader_error::<RateLimited>().map(|e| e.retry_after_s),
        Some(5)
    );
    assert!(matches!(&err, Error::Loader(e) if !e.is_panic()));
    let s = f.stats();
    assert_eq!(
        (s.bypasses, s.loader_calls, s.misses, s.joined, s.sets),
        (1, 1, 0, 0, 0)
    );
}
