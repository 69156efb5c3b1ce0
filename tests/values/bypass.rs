//! Full bypass (`no_cache` + `no_store`): every caller runs its own loader, nothing is read,
//! stored or shared, and a bypass never joins a normal load of the same key in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::{Encoding, Source};

use crate::support::*;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bypasses_each_run_their_own_loader_and_store_nothing() {
    let mut f = TestCache::new().await;
    let bypass: Controls<String> = Controls::new().no_cache().no_store();
    let calls = Arc::new(AtomicUsize::new(0));
    // Every loader waits for all five to be running: if any call joined another's load
    // instead of running its own, the barrier would never open.
    let together = Arc::new(tokio::sync::Barrier::new(5));
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let (cache, bypass, calls, together) = (
                f.cache.clone(),
                bypass.clone(),
                calls.clone(),
                together.clone(),
            );
            tokio::spawn(async move {
                cache
                    .get_or_insert_answer("sampled, temperature 1.0", &bypass, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        together.wait().await;
                        Ok::<_, std::io::Error>(format!("sample {i}"))
                    })
                    .await
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        let a = tokio::time::timeout(T, t)
            .await
            .expect("no bypass waits for another caller's load")
            .unwrap()
            .unwrap();
        assert_eq!((a.source, a.encoding), (Source::Loaded, Encoding::Json));
        got.push(a.value);
    }
    assert_eq!(
        got,
        (0..5).map(|i| format!("sample {i}")).collect::<Vec<_>>(),
        "each caller got its own loader's value"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let s = f.stats();
    assert_eq!(
        (
            s.bypasses,
            s.loader_calls,
            s.joined,
            s.misses,
            s.sets,
            s.hot_hits,
            s.warm_hits
        ),
        (5, 5, 0, 0, 0, 0, 0)
    );
    assert_eq!(
        f.get::<String>("sampled, temperature 1.0").await.unwrap(),
        None
    );
    assert_eq!(f.stats().misses, 1, "the get's own miss");
    f.reopen().await;
    assert_eq!(
        f.get::<String>("sampled, temperature 1.0").await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bypass_neither_reads_a_stored_value_nor_joins_a_load_in_flight() {
    let f = TestCache::new().await;
    let bypass: Controls<String> = Controls::new().no_cache().no_store();

    // A stored value is not read.
    f.set("k", &"stored".to_string()).await.unwrap();
    let a = f
        .get_or_insert_answer("k", &bypass, || async {
            Ok::<_, std::io::Error>("fresh".to_string())
        })
        .await
        .unwrap();
    assert_eq!((a.value.as_str(), a.source), ("fresh", Source::Loaded));
    assert_eq!(
        f.get::<String>("k").await.unwrap().as_deref(),
        Some("stored")
    );

    // A normal load of "q" is in flight, held until released.
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let normal = {
        let (cache, release, started) = (f.cache.clone(), release.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_answer("q", &Controls::new(), || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, std::io::Error>("shared answer".to_string())
                })
                .await
        })
    };
    tokio::time::timeout(T, started.notified()).await.unwrap();
    assert_eq!(f.loads_in_flight(), 1);

    // The bypass runs its own loader at once, while the normal load is still in flight.
    let a = tokio::time::timeout(
        T,
        f.get_or_insert_answer("q", &bypass, || async {
            Ok::<_, std::io::Error>("private answer".to_string())
        }),
    )
    .await
    .expect("a bypass does not wait for the load in flight")
    .unwrap();
    assert_eq!(
        (a.value.as_str(), a.source),
        ("private answer", Source::Loaded)
    );
    assert_eq!(f.loads_in_flight(), 1, "the normal load is still in flight");

    release.notify_one();
    let n = tokio::time::timeout(T, normal)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.value.as_str(), n.source),
        ("shared answer", Source::Loaded)
    );
    assert_eq!(
        f.get::<String>("q").await.unwrap().as_deref(),
        Some("shared answer"),
        "the bypass's value was not stored over it"
    );
    let s = f.stats();
    assert_eq!(
        (
            s.bypasses,
            s.loader_calls,
            s.joined,
            s.misses,
            s.hot_hits,
            s.sets
        ),
        (2, 3, 0, 1, 2, 2)
    );
}
