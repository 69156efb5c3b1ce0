//! Namespaces: invalidating one hides every entry of it at once, whether the entry sits in
//! the hot tier or only on disk, leaves other namespaces and plain keys alone, and still
//! holds after a reopen (the generation is persisted); without an invalidation entries
//! survive a reopen. `invalidate_if` removes exactly the matching keys from both tiers, for
//! good, and never the namespace records.

use answercache::agent::RequestKey;
use answercache::Error;

use crate::support::*;

/// Sets `n` entries `k0..k(n-1)` in the namespace and flushes them to disk.
async fn fill(ns: &answercache::agent::Namespace, n: usize) {
    for i in 0..n {
        ns.set(format!("k{i}"), &format!("answer {i}"))
            .await
            .unwrap();
    }
    ns.cache().flush().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn invalidation_hides_entries_in_both_tiers_and_nothing_else() {
    // Four hot entries in one exact LRU: most of the namespace lives on disk only.
    let f = TestCache::with(|b| b.hot_capacity_entries(4).hot_shards(1)).await;
    let support = f.namespace("support").unwrap();
    let billing = f.namespace("billing").unwrap();
    fill(&support, 10).await;
    billing.set("k0", &"billing answer").await.unwrap();
    f.set("k0", &"plain answer").await.unwrap();
    f.flush().await.unwrap();
    // 10 + 1 + 1 entries and 2 namespace records.
    assert_eq!(files_on_disk(&f), 14);

    // Before: the oldest entry comes from disk, the newest from memory.
    let s0 = f.stats();
    assert_eq!(
        support.get::<String>("k0").await.unwrap().as_deref(),
        Some("answer 0")
    );
    let s1 = f.stats();
    assert_eq!(
        (s1.warm_hits - s0.warm_hits, s1.hot_hits - s0.hot_hits),
        (1, 0)
    );
    assert_eq!(
        support.get::<String>("k0").await.unwrap().as_deref(),
        Some("answer 0")
    );
    let s2 = f.stats();
    assert_eq!(
        (s2.warm_hits - s1.warm_hits, s2.hot_hits - s1.hot_hits),
        (0, 1)
    );

    let before = support.generation().await.unwrap();
    let after = support.invalidate().await.unwrap();
    assert_ne!(before, after);
    assert_eq!(support.generation().await.unwrap(), after);

    let s3 = f.stats();
    for i in 0..10 {
        assert_eq!(
            support.get::<String>(format!("k{i}")).await.unwrap(),
            None,
            "k{i}"
        );
    }
    let s4 = f.stats();
    assert_eq!(
        (
            s4.hot_hits - s3.hot_hits,
            s4.warm_hits - s3.warm_hits,
            s4.misses - s3.misses
        ),
        (0, 0, 10)
    );
    // Other namespaces and plain keys are untouched.
    assert_eq!(
        billing.get::<String>("k0").await.unwrap().as_deref(),
        Some("billing answer")
    );
    assert_eq!(
        f.get::<String>("k0").await.unwrap().as_deref(),
        Some("plain answer")
    );
    // A load after the invalidation calls the loader again.
    let got: String = support
        .get_or_insert_with("k0", || async { Ok::<_, ModelDown>("fresh".to_owned()) })
        .await
        .unwrap();
    assert_eq!(got, "fresh");
}

#[tokio::test(start_paused = true)]
async fn invalidation_holds_after_reopen_and_entries_survive_without_one() {
    let mut f = TestCache::new().await;
    let ns = f.namespace("support").unwrap();
    fill(&ns, 3).await;
    let g0 = ns.generation().await.unwrap();

    // Without an invalidation, the generation and the entries survive a restart.
    f.reopen().await;
    let ns = f.namespace("support").unwrap();
    assert_eq!(ns.generation().await.unwrap(), g0);
    assert_eq!(
        ns.get::<String>("k2").await.unwrap().as_deref(),
        Some("answer 2")
    );
    // Read back from disk: the entry (the namespace record, read once per open cache, is not
    // counted).
    assert_eq!((f.stats().warm_hits, f.stats().misses), (1, 0));

    let g1 = ns.invalidate().await.unwrap();
    ns.set("new", &"after the invalidation").await.unwrap();
    f.reopen().await;

    let ns = f.namespace("support").unwrap();
    assert_eq!(ns.generation().await.unwrap(), g1);
    for i in 0..3 {
        assert_eq!(
            ns.get::<String>(format!("k{i}")).await.unwrap(),
            None,
            "k{i}"
        );
    }
    assert_eq!(
        ns.get::<String>("new").await.unwrap().as_deref(),
        Some("after the invalidation")
    );
}

#[tokio::test(start_paused = true)]
async fn request_keys_in_a_namespace_are_loaded_once_and_invalidated_together() {
    let mut f = TestCache::new().await;
    let chat = f.namespace("chat").unwrap();
    let key = chat
        .request_key_builder()
        .model("m")
        .message("user", "hi")
        .build()
        .unwrap();
    assert_eq!(
        key,
        RequestKey::builder("chat")
            .model("m")
            .message("user", "hi")
            .build()
            .unwrap()
    );
    for _ in 0..3 {
        let a = chat
            .get_or_insert_with(&key, || async { ok(answer("hello", 2)) })
            .await
            .unwrap();
        assert_eq!(a, answer("hello", 2));
    }
    assert_eq!(f.stats().loader_calls, 1);

    f.reopen().await;
    let chat = f.namespace("chat").unwrap();
    let a = chat
        .get_or_insert_with(&key, || async { ok(answer("not called", 0)) })
        .await
        .unwrap();
    assert_eq!(a, answer("hello", 2));
    let s = f.stats();
    // The answer, from disk (the namespace record is read too, but not counted: the hits and
    // misses in `Stats` are the caller's).
    assert_eq!((s.loader_calls, s.warm_hits, s.misses), (0, 1, 0));

    chat.invalidate().await.unwrap();
    let a = chat
        .get_or_insert_with(&key, || async { ok(answer("reloaded", 2)) })
        .await
        .unwrap();
    assert_eq!(a, answer("reloaded", 2));
    assert_eq!(f.stats().loader_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn invalidate_if_removes_exactly_the_matching_keys_from_both_tiers() {
    let mut f = TestCache::with(|b| b.hot_capacity_entries(2).hot_shards(1)).await;
    let docs = f.namespace("docs").unwrap();
    for k in [
        "doc:42:summary",
        "doc:42:title",
        "doc:7:summary",
        "doc:420:title",
    ] {
        docs.set(k, &format!("{k} text")).await.unwrap();
    }
    for k in ["tool:weather:paris", "tool:weather:lyon", "prompt:greeting"] {
        f.set(k, &format!("{k} text")).await.unwrap();
    }
    f.flush().await.unwrap();
    assert_eq!(files_on_disk(&f), 8); // 7 entries and the namespace record

    // Matched by the key given to the namespace, in hot and on disk alike.
    assert_eq!(
        docs.invalidate_if(|k| k.starts_with(b"doc:42:"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        f.invalidate_if(|k| k.starts_with(b"tool:")).await.unwrap(),
        2
    );
    f.flush().await.unwrap();
    assert_eq!(files_on_disk(&f), 4);
    assert_eq!(f.stats().removes, 4);

    f.reopen().await;
    let docs = f.namespace("docs").unwrap();
    for (k, present) in [
        ("doc:42:summary", false),
        ("doc:42:title", false),
        ("doc:7:summary", true),
        ("doc:420:title", true),
    ] {
        assert_eq!(
            docs.get::<String>(k).await.unwrap().is_some(),
            present,
            "{k}"
        );
    }
    for (k, present) in [
        ("tool:weather:paris", false),
        ("tool:weather:lyon", false),
        ("prompt:greeting", true),
    ] {
        assert_eq!(f.get::<String>(k).await.unwrap().is_some(), present, "{k}");
    }

    // Everything goes, except the namespace record: the generation survives.
    let g = docs.generation().await.unwrap();
    assert_eq!(f.invalidate_if(|_| true).await.unwrap(), 3);
    f.reopen().await;
    assert_eq!(files_on_disk(&f), 1);
    assert_eq!(f.namespace("docs").unwrap().generation().await.unwrap(), g);
}

#[tokio::test(start_paused = true)]
async fn namespace_names_are_validated() {
    let f = TestCache::new().await;
    for bad in ["", "two words", "a:b", "é"] {
        assert!(matches!(f.namespace(bad), Err(Error::Config(_))), "{bad:?}");
    }
    for good in ["support-bot", "tenant_42/chat", "v1.2"] {
        assert_eq!(f.namespace(good).unwrap().name(), good);
    }
}
