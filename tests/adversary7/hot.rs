//! The hot tier's slab map (one hash per operation) under concurrency and odd sizes, through
//! the public API, against a model of what each acknowledged operation implies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use answercache::testing::TestDir;
use answercache::WritePolicy;

use crate::support::*;

/// The value of writer `w`'s `n`-th write of key `k`: its length varies wildly (0 to 48 KiB)
/// and it names itself.
fn value(k: u64, n: u64) -> Vec<u8> {
    let len = match n % 5 {
        0 => 0,
        1 => 1,
        2 => 100,
        3 => 9_000,
        _ => 48 << 10,
    };
    let mut v = format!("{k}:{n};").into_bytes();
    if len == 0 {
        return Vec::new();
    }
    v.resize(len.max(v.len()), b'x');
    v
}

/// Parses the `n` back out of a value of key `k` (`None` for the empty value).
fn n_of(k: u64, v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let s = std::str::from_utf8(&v[..v.iter().position(|&b| b == b';').unwrap()]).unwrap();
    let (kk, n) = s.split_once(':').unwrap();
    assert_eq!(kk.parse::<u64>().unwrap(), k, "another key's value");
    let n = n.parse().unwrap();
    assert!(*v == *value(k, n), "torn value of {k}:{n}");
    Some(n)
}

/// 8 writers, each the only writer of its 16 keys, set/remove/get in a loop on a tiny hot
/// tier (32 entries, 256 KiB: dirty entries are evicted into the write-behind queue all the
/// time) while 8 readers read every key: a writer's own get right after its acknowledged set
/// or remove sees exactly it (no clear runs); readers never see a torn value, another key's
/// value, or a value older than one they saw before, except after a remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_and_readers_on_a_tiny_hot_tier_agree_with_the_model() {
    let cache = TestDir::new()
        .open_cache(|b| {
            b.hot_capacity_entries(32)
                .hot_capacity_bytes(256 << 10)
                .hot_shards(4)
                .write_policy(WritePolicy::WriteBehind)
                .memory_only_after(1000)
        })
        .await;
    let c = Arc::new(cache.cache.clone());
    // Per key: the last acknowledged n (u64::MAX: removed).
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..128).map(|_| AtomicU64::new(u64::MAX)).collect());
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let c = c.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut errs = Vec::new();
            for n in 1..=150u64 {
                let k = w * 16 + (n * 7) % 16;
                let key = format!("hot:{k}");
                if n % 11 == 0 {
                    c.remove(key.as_str()).await.unwrap();
                    acked[k as usize].store(u64::MAX, Ordering::SeqCst);
                    let got = c.get_bytes(key.as_str()).await.unwrap();
                    if got.is_some() {
                        errs.push(format!("{key}: removed, got {:?}", got.map(|v| v.len())));
                    }
                } else {
                    let v = value(k, n);
                    c.set_bytes(key.as_str(), &v).await.unwrap();
                    acked[k as usize].store(n, Ordering::SeqCst);
                    let got = c.get_bytes(key.as_str()).await.unwrap();
                    if got.as_deref() != Some(&v[..]) {
                        errs.push(format!(
                            "{key}: set #{n} ({} bytes), got {:?}",
                            v.len(),
                            got.map(|g| (g.len(), g.get(..12).map(|b| b.to_vec())))
                        ));
                    }
                }
            }
            errs
        }));
    }
    for r in 0..8u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut errs = Vec::new();
            let mut seen = vec![0u64; 128];
            for round in 0..40u64 {
                for k in 0..128u64 {
                    let k = (k + r * 16 + round) % 128;
                    if let Some(v) = c.get_bytes(format!("hot:{k}").as_str()).await.unwrap() {
                        if let Some(n) = n_of(k, &v) {
                            // A remove in between may let an older value reappear only if
                            // it was set again; writers never reuse an n.
                            if n < seen[k as usize] && (seen[k as usize] - n) > 0 {
                                let removed_between = (n..seen[k as usize]).any(|m| m % 11 == 0);
                                if !removed_between {
                                    errs.push(format!(
                                        "reader {r}: hot:{k} went back from {} to {n}",
                                        seen[k as usize]
                                    ));
                                }
                            }
                            seen[k as usize] = n;
                        }
                    }
                }
            }
            errs
        }));
    }
    let mut errs = Vec::new();
    for t in tasks {
        errs.extend(t.await.unwrap());
    }
    assert!(errs.is_empty(), "{errs:#?}");
    // After a flush, every key reads back as its last acknowledged operation, from any tier.
    cache.flush().await.unwrap();
    for k in 0..128u64 {
        let got = cache.get_bytes(format!("hot:{k}").as_str()).await.unwrap();
        match acked[k as usize].load(Ordering::SeqCst) {
            u64::MAX => assert!(got.is_none(), "hot:{k} removed, got a value"),
            n => assert_eq!(got.as_deref(), Some(&value(k, n)[..]), "hot:{k} #{n}"),
        }
    }
    let s = cache.stats();
    assert!(s.hot_entries <= 32 && s.hot_bytes <= 256 << 10, "{s:?}");
    assert_eq!((s.lost_writes, s.corrupted, s.disk_errors), (0, 0, 0));
}

/// Concurrent clears among sets: a set acknowledged after a clear returned is never lost to
/// it, and nothing set before a clear returned is read after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clear_races_sets_on_a_tiny_hot_tier() {
    let cache = TestDir::new()
        .open_cache(|b| {
            b.hot_capacity_entries(8)
                .hot_shards(2)
                .write_policy(WritePolicy::WriteBehind)
                .memory_only_after(1000)
        })
        .await;
    let c = Arc::new(cache.cache.clone());
    // Clears completed so far, and started so far.
    let started = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let (c, started, finished) = (c.clone(), started.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let mut errs = Vec::new();
            for n in 1..=200u64 {
                let k = w * 4 + n % 4;
                let key = format!("clr:{k}");
                let v = value(k, n);
                let before = (
                    started.load(Ordering::SeqCst),
                    finished.load(Ordering::SeqCst),
                );
                c.set_bytes(key.as_str(), &v).await.unwrap();
                let got = c.get_bytes(key.as_str()).await.unwrap();
                let after = (
                    started.load(Ordering::SeqCst),
                    finished.load(Ordering::SeqCst),
                );
                let quiet = before == after && before.0 == before.1;
                match got {
                    Some(g) if *g == *v => {}
                    None if !quiet => {}
                    other => errs.push(format!(
                        "{key} #{n}: got {:?} (clears {before:?} -> {after:?})",
                        other.map(|g| g.len())
                    )),
                }
            }
            errs
        }));
    }
    {
        let (c, started, finished) = (c.clone(), started.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                started.fetch_add(1, Ordering::SeqCst);
                c.clear().await.unwrap();
                finished.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            Vec::new()
        }));
    }
    let mut errs = Vec::new();
    for t in tasks {
        errs.extend(t.await.unwrap());
    }
    assert!(errs.is_empty(), "{errs:#?}");
    // A final clear, then nothing is readable from any tier, after a restart too.
    cache.clear().await.unwrap();
    cache.flush().await.unwrap();
    for k in 0..24u64 {
        assert!(cache
            .get_bytes(format!("clr:{k}").as_str())
            .await
            .unwrap()
            .is_none());
    }
}

/// Zero-length keys and values, the longest key and one byte more, a value larger than the
/// whole hot budget, on a one-entry hot tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degenerate_keys_and_values() {
    let cache = TestDir::new()
        .open_cache(|b| {
            b.hot_capacity_entries(1)
                .hot_capacity_bytes(4096)
                .max_key_bytes(1024)
                .write_policy(WritePolicy::WriteBehind)
        })
        .await;
    cache.set_bytes("", b"empty key").await.unwrap();
    cache.set_bytes("empty value", b"").await.unwrap();
    let long = "k".repeat(1024);
    cache
        .set_bytes(long.as_str(), b"longest key")
        .await
        .unwrap();
    let too_long = "k".repeat(1025);
    assert!(cache.set_bytes(too_long.as_str(), b"x").await.is_err());
    let big = noise(100 << 10, 3);
    cache
        .set_bytes("bigger than the hot tier", &big)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            cache.get_bytes("").await.unwrap().as_deref(),
            Some(&b"empty key"[..])
        );
        assert_eq!(
            cache.get_bytes("empty value").await.unwrap().as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            cache.get_bytes(long.as_str()).await.unwrap().as_deref(),
            Some(&b"longest key"[..])
        );
        assert!(cache.get_bytes(too_long.as_str()).await.is_err());
        assert_eq!(
            cache
                .get_bytes("bigger than the hot tier")
                .await
                .unwrap()
                .as_deref(),
            Some(&big[..])
        );
        cache.flush().await.unwrap();
    }
    // (`remove` says whether memory held the key: with a one-entry hot tier, not asserted.)
    cache.remove("").await.unwrap();
    cache.remove("empty value").await.unwrap();
    assert_eq!(cache.get_bytes("").await.unwrap(), None);
    assert_eq!(cache.get_bytes("empty value").await.unwrap(), None);
    cache.flush().await.unwrap();
    assert_eq!(cache.get_bytes("").await.unwrap(), None);
    assert_eq!(cache.get_bytes("empty value").await.unwrap(), None);
    let s = cache.stats();
    assert!(s.hot_entries <= 1 && s.hot_bytes <= 4096, "{s:?}");
}
