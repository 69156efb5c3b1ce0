//! The source of every answer, and the counters that agree with it: 50 identical concurrent
//! requests are one load and 49 joined, then hot; after a restart warm, then hot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::{Encoding, Source};

use crate::support::*;

const CALLERS: usize = 50;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reply {
    text: String,
    tokens: u64,
}

fn reply() -> Reply {
    Reply {
        text: "HTTP semantics, independent of the wire.".into(),
        tokens: 120,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_identical_requests_are_one_load_and_forty_nine_joined() {
    let mut f = TestCache::new().await;
    let controls = Controls::new().cost(10);
    let arrived = Arc::new(AtomicUsize::new(0));
    let all_arrived = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let cache = f.cache.clone();
            let controls = controls.clone();
            let (arrived, all_arrived, calls, start) = (
                arrived.clone(),
                all_arrived.clone(),
                calls.clone(),
                start.clone(),
            );
            tokio::spawn(async move {
                start.wait().await;
                if arrived.fetch_add(1, Ordering::SeqCst) + 1 == CALLERS {
                    all_arrived.notify_one();
                }
                cache
                    .get_or_insert_answer("summarize RFC 9110", &controls, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // The model answers only once every caller has asked (and had time
                        // to find the cache empty and wait for this load).
                        if arrived.load(Ordering::SeqCst) < CALLERS {
                            all_arrived.notified().await;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, std::io::Error>(reply())
                    })
                    .await
            })
        })
        .collect();
    let mut sources = Vec::new();
    for t in tasks {
        let answer = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every caller is answered")
            .unwrap()
            .unwrap();
        assert_eq!(answer.value, reply());
        assert_eq!(answer.encoding, Encoding::Json);
        sources.push(answer.source);
    }
    let loaded = sources.iter().filter(|s| **s == Source::Loaded).count();
    let joined = sources.iter().filter(|s| **s == Source::Joined).count();
    assert_eq!((loaded, joined), (1, CALLERS - 1), "sources: {sources:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = f.stats();
    assert_eq!(
        (
            s.loader_calls,
            s.misses,
            s.joined,
            s.hot_hits,
            s.warm_hits,
            s.bypasses
        ),
        (1, 1, 49, 0, 0, 0)
    );
    assert_eq!(
        s.cost_saved,
        49 * 10,
        "every joined caller saved the load's cost"
    );
    assert_eq!(s.decode_misses, 0);
    assert_eq!(f.loads_in_flight(), 0);

    let hot = f
        .get_or_insert_answer("summarize RFC 9110", &controls, must_not_load::<Reply>)
        .await
        .unwrap();
    assert_eq!(
        (hot.value, hot.source, hot.encoding),
        (reply(), Source::Hot, Encoding::Json)
    );
    assert_eq!(hot.source.x_cache(), "HIT");
    let s = f.stats();
    assert_eq!(
        (s.hot_hits, s.misses, s.joined, s.loader_calls),
        (1, 1, 49, 1)
    );
    assert_eq!(s.cost_saved, 50 * 10);

    f.reopen().await;
    let warm = f
        .get_or_insert_answer("summarize RFC 9110", &controls, must_not_load::<Reply>)
        .await
        .unwrap();
    assert_eq!((warm.value, warm.source), (reply(), Source::Warm));
    let hot = f
        .get_or_insert_answer("summarize RFC 9110", &controls, must_not_load::<Reply>)
        .await
        .unwrap();
    assert_eq!((hot.value, hot.source), (reply(), Source::Hot));
    let s = f.stats();
    assert_eq!(
        (
            s.warm_hits,
            s.hot_hits,
            s.misses,
            s.joined,
            s.loader_calls,
            s.cost_saved
        ),
        (1, 1, 0, 0, 0, 20)
    );
}

#[tokio::test]
async fn plain_gets_report_hot_warm_and_their_encoding() {
    let mut f = TestCache::with(|b| b.hot_capacity_entries(1)).await;
    f.set("a", &reply()).await.unwrap();
    f.set("b", &reply()).await.unwrap(); // evicts "a" from the hot tier
    f.flush().await.unwrap(); // "a" is on disk, not in the write queue
    let a = f.get_answer::<Reply>("a").await.unwrap().unwrap();
    assert_eq!(
        (a.value, a.source, a.encoding),
        (reply(), Source::Warm, Encoding::Json)
    );
    let a = f.get_answer::<Reply>("a").await.unwrap().unwrap();
    assert_eq!(a.source, Source::Hot);
    let b = f.get_bytes_answer("b").await.unwrap().unwrap();
    assert_eq!(b.source, Source::Warm, "\"a\" took the only hot slot");
    assert_eq!(&b.value[..], &serde_json::to_vec(&reply()).unwrap()[..]);
    assert_eq!(b.encoding, Encoding::Json);
    assert_eq!(f.get_answer::<Reply>("absent").await.unwrap(), None);
    let s = f.stats();
    assert_eq!((s.warm_hits, s.hot_hits, s.misses), (2, 1, 1));
    f.reopen().await;
    let b = f.get_answer::<Reply>("b").await.unwrap().unwrap();
    assert_eq!((b.source, b.source.x_cache()), (Source::Warm, "HIT"));
}
