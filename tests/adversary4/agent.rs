//! The agent features over the split state (`AgentState` now held by the handle, namespace
//! generations in `agent::generation`, flights in `agent::flights`): concurrent resolution of
//! request keys in a fresh namespace, single-flight loading, a health check's write-back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::FsOp;
use answercache::{RequestKey, Source};

use crate::support::*;

/// Sixteen tasks resolve request keys of a namespace nobody has used yet, at once: one
/// generation is drawn and recorded (one record `set`), every key lands in it, and a restart
/// resolves them to the same stored keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_use_of_a_namespace_draws_one_generation() {
    let env = Env::new();
    let b = env.builder().hot_shards(16);
    let cache = env.open(b.clone()).await;
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let rk = RequestKey::new("fresh", &serde_json::json!({ "q": i })).unwrap();
            cache.set(&rk, &i).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    cache.flush().await.unwrap();
    let s = cache.stats();
    assert_eq!((s.sets, s.hot_entries, s.writes_ok), (17, 17, 17));
    let ns = cache.namespace("fresh").unwrap();
    let g = ns.generation().await.unwrap();
    for i in 0..16u32 {
        let rk = RequestKey::new("fresh", &serde_json::json!({ "q": i })).unwrap();
        assert_eq!(ns.get::<u32>(&rk).await.unwrap(), Some(i));
    }
    cache.close().await.unwrap();
    let cache = env.open(b).await;
    let ns = cache.namespace("fresh").unwrap();
    assert_eq!(ns.generation().await.unwrap(), g);
    for i in 0..16u32 {
        let rk = RequestKey::new("fresh", &serde_json::json!({ "q": i })).unwrap();
        let a = cache.get_answer::<u32>(&rk).await.unwrap().unwrap();
        assert_eq!((a.value, a.source), (i, Source::Warm));
    }
    let s = cache.stats();
    assert_eq!((s.warm_hits, s.misses, s.sets), (16, 0, 0));
    cache.close().await.unwrap();
}

/// Single flight across clones of the handle and a namespace handle: one loader call, every
/// other caller joined, the exact counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_across_clones() {
    let env = Env::new();
    let cache = env.open(env.builder()).await;
    let calls = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_insert_answer("shared", &answercache::Controls::new(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, String>(42u32)
                })
                .await
                .unwrap()
        }));
    }
    spin_until(|| cache.loads_in_flight() == 1 && calls.load(Ordering::SeqCst) == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.notify_one();
    let mut sources = std::collections::BTreeMap::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.value, 42);
        *sources.entry(format!("{:?}", a.source)).or_insert(0) += 1;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        sources,
        [("Joined".to_owned(), 11), ("Loaded".to_owned(), 1)]
            .into_iter()
            .collect()
    );
    let s = cache.stats();
    assert_eq!((s.loader_calls, s.joined, s.misses, s.sets), (1, 11, 1, 1));
    assert_eq!(cache.loads_in_flight(), 0);
    cache.close().await.unwrap();
}

/// A passing health check (tiered, breaker closed) writes back an entry whose write failed:
/// counted once, on disk after it.
#[tokio::test(start_paused = true)]
async fn a_health_check_writes_back_a_failed_write() {
    let env = Env::new();
    let cache = env
        .open(env.builder().health_interval(Duration::from_secs(60)))
        .await;
    env.fail(&[FsOp::WriteNew], EIO);
    cache.set("k", &1).await.unwrap();
    spin_until(|| cache.stats().writes_failed == 1).await;
    env.fs.clear_rules();
    let s = cache.stats();
    assert_eq!(
        (s.dirty_entries, s.health_checks, s.written_back),
        (1, 0, 0)
    );
    assert!(!env.has_file("k"));
    tokio::time::sleep(Duration::from_secs(61)).await;
    spin_until(|| cache.stats().writes_ok == 1).await;
    let s = cache.stats();
    assert_eq!(
        (
            s.dirty_entries,
            s.health_checks,
            s.written_back,
            s.writes_failed,
            s.writes_ok
        ),
        (0, 1, 1, 1, 1)
    );
    assert!(env.has_file("k"));
    cache.close().await.unwrap();
}
