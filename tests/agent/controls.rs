//! Per-call controls, each with its exact outcome: `no_store` returns the answer and keeps
//! nothing; `no_cache` skips the lookup and replaces the entry; a TTL override expires the
//! entry at exactly that age, `no_expiry` never; `cacheable` keeps refusals and truncated
//! answers out of the cache while still returning them to every concurrent caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;

use crate::support::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn no_store_returns_the_answer_and_keeps_nothing() {
    let f = TestCache::new().await;
    let c = Controls::new().no_store();
    for i in 1..=2 {
        let a = f
            .get_or_insert_with_controls("q", &c, || async { ok(answer("private", 9)) })
            .await
            .unwrap();
        assert_eq!(a, answer("private", 9));
        assert_eq!(
            f.stats().loader_calls,
            i,
            "nothing cached, so it loads each time"
        );
    }
    f.flush().await.unwrap();
    assert_eq!(f.stats().sets, 0);
    assert_eq!(files_on_disk(&f), 0);
    assert_eq!(f.get::<Answer>("q").await.unwrap(), None);

    // An entry already there is left as it is.
    f.set("q", &answer("cached", 1)).await.unwrap();
    let a = f
        .get_or_insert_with_controls("q", &c.clone().no_cache(), || async {
            ok(answer("private", 9))
        })
        .await
        .unwrap();
    assert_eq!(a, answer("private", 9));
    assert_eq!(
        f.get::<Answer>("q").await.unwrap(),
        Some(answer("cached", 1))
    );
}

#[tokio::test(start_paused = true)]
async fn no_cache_skips_the_lookup_and_refreshes_the_entry() {
    let mut f = TestCache::new().await;
    f.get_or_insert_with("q", || async { ok(answer("old", 1)) })
        .await
        .unwrap();
    let s = f.stats();
    assert_eq!((s.misses, s.loader_calls, s.sets), (1, 1, 1));

    let a = f
        .get_or_insert_with_controls("q", &Controls::new().no_cache(), || async {
            ok(answer("new", 1))
        })
        .await
        .unwrap();
    assert_eq!(a, answer("new", 1));
    let s = f.stats();
    assert_eq!(
        (s.misses, s.hot_hits, s.loader_calls, s.sets),
        (2, 0, 2, 2),
        "no lookup, one load (a miss: the caller ran its loader), one store"
    );
    assert_eq!(f.get::<Answer>("q").await.unwrap(), Some(answer("new", 1)));
    f.reopen().await;
    assert_eq!(f.get::<Answer>("q").await.unwrap(), Some(answer("new", 1)));
}

#[tokio::test(start_paused = true)]
async fn ttl_override_and_no_expiry_replace_the_default_ttl() {
    let f = TestCache::with(|b| b.default_ttl(HOUR)).await;
    let load = |text: &'static str| move || async move { ok(answer(text, 1)) };
    f.get_or_insert_with_controls("short", &Controls::new().ttl(10 * SEC), load("short"))
        .await
        .unwrap();
    f.get_or_insert_with_controls("forever", &Controls::new().no_expiry(), load("forever"))
        .await
        .unwrap();
    f.get_or_insert_with("default", load("default"))
        .await
        .unwrap();

    tokio::time::advance(10 * SEC - MS).await;
    assert!(f.get::<Answer>("short").await.unwrap().is_some(), "9.999 s");
    tokio::time::advance(MS).await;
    assert_eq!(f.get::<Answer>("short").await.unwrap(), None, "10 s");
    assert!(f.get::<Answer>("default").await.unwrap().is_some());

    tokio::time::advance(HOUR - 10 * SEC).await;
    assert_eq!(f.get::<Answer>("default").await.unwrap(), None, "1 h");
    tokio::time::advance(100 * HOUR).await;
    assert_eq!(
        f.get::<Answer>("forever").await.unwrap(),
        Some(answer("forever", 1))
    );
}

#[tokio::test(start_paused = true)]
async fn cacheable_keeps_refusals_and_truncated_answers_out() {
    let f = TestCache::new().await;
    let c = Controls::new().cacheable(|a: &Answer| a.finish_reason == "stop");
    let truncated = Answer {
        text: "The answer is".into(),
        finish_reason: "length".into(),
        tokens: 256,
    };

    // Five concurrent callers all get the truncated answer from one load; nothing is kept.
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (cache, c, calls, t) =
                (f.cache.clone(), c.clone(), calls.clone(), truncated.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with_controls("q", &c, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(SEC).await;
                        ok(t)
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), truncated);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.stats().sets, 0);
    assert_eq!(f.get::<Answer>("q").await.unwrap(), None);

    // The next call loads again; a complete answer is kept.
    let a = f
        .get_or_insert_with_controls("q", &c, || async { ok(answer("The answer is 42.", 6)) })
        .await
        .unwrap();
    assert_eq!(a, answer("The answer is 42.", 6));
    let a = f
        .get_or_insert_with_controls("q", &c, || async { ok(answer("not called", 0)) })
        .await
        .unwrap();
    assert_eq!(a, answer("The answer is 42.", 6));
    let s = f.stats();
    assert_eq!((s.loader_calls, s.sets, s.hot_hits), (2, 1, 1));

    // The same controls on a plain set.
    assert!(!f.set_with_controls("t", &truncated, &c).await.unwrap());
    assert!(f
        .set_with_controls("ok", &answer("yes", 1), &c)
        .await
        .unwrap());
    assert_eq!(f.get::<Answer>("t").await.unwrap(), None);
    assert_eq!(f.get::<Answer>("ok").await.unwrap(), Some(answer("yes", 1)));
}
