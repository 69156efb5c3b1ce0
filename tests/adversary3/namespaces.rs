//! "A RequestKey belongs to its namespace wherever used": `cache.set(&rk)` and
//! `cache.namespace(ns).set(&rk)` are one entry; `namespace(ns).invalidate()` drops it for
//! every handle, across close/reopen and crashes ("an invalidation that returned `Ok` holds
//! after a crash"); a request key used with another namespace's handle is `Error::Config`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::{Error, RequestKey, Source, TieredCache};

use crate::support::*;

fn refund_key(ns: &answercache::Namespace, q: &str) -> RequestKey {
    ns.request_key_builder()
        .model("gpt-4o-mini")
        .message("system", "You are the support bot of ACME.")
        .message("user", q)
        .param("temperature", &0.0)
        .build()
        .unwrap()
}

/// The record of namespace `name` (see src/agent/namespace.rs).
fn record_key(name: &str) -> Vec<u8> {
    [&b"\0tiercache:nsgen:"[..], name.as_bytes()].concat()
}

/// The support bot's refund policy changed: `invalidate` must drop the old answers. The new
/// generation's write is slow and then fails (EACCES), and meanwhile ordinary traffic pushes
/// the record out of the hot tier. `invalidate` then finds no dirty copy in memory and
/// returns `Ok`, though the new generation never reached the disk: after a crash the old
/// generation is read back and the old policy is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalidate_returns_ok_though_the_new_generation_never_reached_the_disk() {
    let fs = GateFs::new();
    let fs2 = fs.clone();
    let mut f = open_with(move |b| b.fs(fs2).hot_capacity_entries(4).hot_shards(1)).await;
    let ns = f.namespace("support").unwrap();
    let rk = refund_key(&ns, "What is the refund policy?");
    ns.set(&rk, &"Refunds within 90 days.").await.unwrap();
    f.flush().await.unwrap();

    fs.arm(&hash16(&record_key("support")), EACCES);
    let ns2 = ns.clone();
    let invalidation = tokio::spawn(async move { ns2.invalidate().await });
    assert!(
        fs.reached(Duration::from_secs(10)).await,
        "control: the record write never started"
    );
    // Traffic while the write is slow: the record leaves the hot tier.
    for i in 0..16 {
        f.set(format!("traffic-{i}"), &i).await.unwrap();
    }
    fs.release();
    let result = invalidation.await.unwrap();

    // A crash, then a process on the same directory (the disk is fine now).
    f.restart_without_close(|b| b).await;
    let ns = f.namespace("support").unwrap();
    let served: Option<String> = ns.get(&rk).await.unwrap();
    assert!(
        matches!(result, Err(Error::NotPersisted { .. })) || served.is_none(),
        "invalidate returned {result:?}, yet after a crash the invalidated answer {served:?} \
         is served again"
    );
}

/// The same without any race: a hot tier too small for the record (here: none at all, a
/// disk-only cache), and the record's write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_returns_ok_when_a_record_outside_the_hot_tier_fails_to_write() {
    let fs = GateFs::new();
    let fs2 = fs.clone();
    let mut f = open_with(move |b| b.fs(fs2).hot_capacity_bytes(0)).await;
    let ns = f.namespace("support").unwrap();
    let rk = refund_key(&ns, "What is the refund policy?");
    ns.set(&rk, &"Refunds within 90 days.").await.unwrap();
    f.flush().await.unwrap();
    fs.arm(&hash16(&record_key("support")), EACCES);
    fs.release(); // fail at once
    let result = ns.invalidate().await;
    f.restart_without_close(|b| b).await;
    let ns = f.namespace("support").unwrap();
    let served: Option<String> = ns.get(&rk).await.unwrap();
    assert!(
        matches!(result, Err(Error::NotPersisted { .. })) || served.is_none(),
        "invalidate returned {result:?}, yet after a crash the invalidated answer {served:?} \
         is served again"
    );
}

/// Every method of a namespace handle refuses a request key of another namespace with
/// `Error::Config`, before touching anything; the cache's own methods store it in its own
/// namespace, the same entry as its handle's.
#[tokio::test]
async fn a_request_key_is_one_entry_everywhere_and_foreign_to_other_handles() {
    let f = open().await;
    let chat = f.namespace("chat").unwrap();
    let support = f.namespace("support").unwrap();
    let rk = refund_key(&chat, "hello?");
    f.set(&rk, &"via cache").await.unwrap();
    assert_eq!(
        chat.get::<String>(&rk).await.unwrap().as_deref(),
        Some("via cache")
    );
    chat.set(&rk, &"via handle").await.unwrap();
    assert_eq!(
        f.get::<String>(&rk).await.unwrap().as_deref(),
        Some("via handle")
    );
    assert_eq!(
        f.cache
            .namespace("chat")
            .unwrap()
            .get::<String>(&rk)
            .await
            .unwrap()
            .as_deref(),
        Some("via handle")
    );
    // The plain key of the same text is another entry.
    assert_eq!(f.get::<String>(rk.as_str()).await.unwrap(), None);

    let sets = f.stats().sets;
    let config = |r: Result<(), Error>| matches!(r, Err(Error::Config(_)));
    assert!(config(support.get::<String>(&rk).await.map(drop)));
    assert!(config(support.get_answer::<String>(&rk).await.map(drop)));
    assert!(config(support.get_bytes(&rk).await.map(drop)));
    assert!(config(support.set(&rk, &"x").await));
    assert!(config(support.set_bytes(&rk, b"x").await));
    assert!(config(
        support
            .set_with_controls(&rk, &"x".to_owned(), &Controls::new())
            .await
            .map(drop)
    ));
    assert!(config(support.remove(&rk).await.map(drop)));
    assert!(config(
        support
            .get_or_insert_with(&rk, || async { Ok::<_, std::io::Error>("x".to_owned()) })
            .await
            .map(drop)
    ));
    assert!(config(
        support
            .get_or_insert_bytes(&rk, &Controls::new(), || async {
                Ok::<_, std::io::Error>(b"x".to_vec())
            })
            .await
            .map(drop)
    ));
    assert!(config(support.key(&rk).await.map(drop)));
    assert_eq!(f.stats().sets, sets, "a refused call stored something");
    assert_eq!(
        f.get::<String>(&rk).await.unwrap().as_deref(),
        Some("via handle")
    );
    assert_eq!(f.loads_in_flight(), 0);
}

/// Invalidation racing writers and loaders of request keys, on a multi-thread runtime. Values
/// stored before the invalidation began ("pre") must never be served by an operation that
/// starts after it returned: not by this process, not after a crash, not by a second
/// instance opened afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn invalidation_racing_sets_and_loads_never_serves_a_pre_value_afterwards() {
    let mut f = open_with(|b| b.hot_capacity_entries(64).hot_shards(4)).await;
    let ns = f.namespace("chat").unwrap();
    let keys: Vec<RequestKey> = (0..40)
        .map(|i| refund_key(&ns, &format!("question {i}")))
        .collect();
    for (i, rk) in keys.iter().enumerate() {
        // Half through the cache, half through the handle.
        if i % 2 == 0 {
            f.set(rk, &format!("pre {i}")).await.unwrap();
        } else {
            ns.set(rk, &format!("pre {i}")).await.unwrap();
        }
    }
    f.flush().await.unwrap();
    // Some on disk only.
    for i in 0..200 {
        f.set(format!("filler {i}"), &i).await.unwrap();
    }

    let done = Arc::new(AtomicBool::new(false));
    let invalidated = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let (cache, ns, keys) = (f.cache.clone(), ns.clone(), keys.clone());
        let (done, invalidated, bad) = (done.clone(), invalidated.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !done.load(Ordering::SeqCst) {
                n += 1;
                let rk = &keys[(n * 7 + t) % keys.len()];
                let after = invalidated.load(Ordering::SeqCst);
                let got: Option<String> = match n % 4 {
                    0 => cache.get(rk).await.unwrap(),
                    1 => ns.get(rk).await.unwrap(),
                    2 => Some(
                        cache
                            .get_or_insert_with(rk, || async {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                Ok::<_, std::io::Error>(format!("during {t}"))
                            })
                            .await
                            .unwrap(),
                    ),
                    _ => {
                        ns.set(rk, &format!("during {t}")).await.unwrap();
                        None
                    }
                };
                if after && got.as_deref().is_some_and(|v| v.starts_with("pre")) {
                    bad.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    ns.invalidate().await.unwrap();
    invalidated.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "pre values served after invalidate"
    );
    for rk in &keys {
        let v: Option<String> = f.get(rk).await.unwrap();
        assert!(!v.is_some_and(|v| v.starts_with("pre")));
    }

    // A second instance opened now, and a crash.
    let other = second(&f, |b| b).await;
    let other_ns = other.namespace("chat").unwrap();
    for rk in &keys {
        let a: Option<String> = other.get(rk).await.unwrap();
        let b: Option<String> = other_ns.get(rk).await.unwrap();
        assert!(!a.is_some_and(|v| v.starts_with("pre")), "second instance");
        assert!(!b.is_some_and(|v| v.starts_with("pre")), "second instance");
    }
    other.close().await.unwrap();
    f.restart_without_close(|b| b).await;
    for rk in &keys {
        let a: Option<String> = f.get(rk).await.unwrap();
        assert!(!a.is_some_and(|v| v.starts_with("pre")), "after a crash");
    }
}

/// A second instance that used the namespace before another process invalidated it keeps
/// its generation until `refresh` (documented), and then drops the entries; its own stores
/// before the refresh are not read back after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_sees_an_invalidation_after_refresh() {
    let f = open().await;
    let ns = f.namespace("chat").unwrap();
    let rk = refund_key(&ns, "q");
    ns.set(&rk, &"old").await.unwrap();
    f.flush().await.unwrap();
    let other: TieredCache = second(&f, |b| b).await;
    let other_ns = other.namespace("chat").unwrap();
    assert_eq!(
        other.get::<String>(&rk).await.unwrap().as_deref(),
        Some("old")
    );
    let g = ns.invalidate().await.unwrap();
    assert_eq!(other_ns.refresh().await.unwrap(), g);
    assert_eq!(other.get::<String>(&rk).await.unwrap(), None);
    assert_eq!(other_ns.get::<String>(&rk).await.unwrap(), None);
    // A load in the other instance now lands in the new generation, which this one shares.
    let loaded = other
        .get_or_insert_answer(&rk, &Controls::new(), || async {
            Ok::<_, std::io::Error>("new".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(loaded.source, Source::Loaded);
    other.flush().await.unwrap();
    assert_eq!(f.get::<String>(&rk).await.unwrap().as_deref(), Some("new"));
    other.close().await.unwrap();
}
