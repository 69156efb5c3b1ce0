//! A get dropped between two steps (aborted after n yields, or a `timeout` of a few ns):
//! nothing is left half done. Later reads give exactly the value, the file stays, no error or
//! corruption is counted, a completed get counts one warm hit, a dropped one nothing, and the
//! index stays equal to the disk.

use std::time::Duration;

use answercache::TieredCache;

use super::*;

async fn cancel_rounds(cache: &TieredCache, root: &std::path::Path, tag: &str) {
    let cases = [
        (format!("{tag}:noise"), long_noise(56 << 10, 120 << 10, 3)),
        (format!("{tag}:text"), text(1 << 20, 4)),
    ];
    for (key, value) in &cases {
        park(cache, key, value).await;
        let path = v2_path(root, key.as_bytes());
        for n in 0..12u32 {
            evict_hot(cache).await;
            let s0 = cache.stats();
            let completed = if n % 2 == 0 {
                let (c, k) = (cache.clone(), key.clone());
                let task = tokio::spawn(async move { c.get_bytes(&k).await.unwrap() });
                for _ in 0..n / 2 {
                    tokio::task::yield_now().await;
                }
                task.abort();
                match task.await {
                    Ok(got) => {
                        assert!(got.as_deref() == Some(&value[..]), "{key}: wrong");
                        1
                    }
                    Err(e) => {
                        assert!(e.is_cancelled(), "{key}: {e}");
                        0
                    }
                }
            } else {
                let t = Duration::from_nanos(u64::from(n) * 50);
                match tokio::time::timeout(t, cache.get_bytes(key)).await {
                    Ok(got) => {
                        assert!(got.unwrap().as_deref() == Some(&value[..]), "{key}: wrong");
                        1
                    }
                    Err(_) => 0,
                }
            };
            let s1 = cache.stats();
            assert_eq!(
                (s1.warm_hits - s0.warm_hits, s1.misses - s0.misses),
                (completed, 0),
                "{key}, round {n}"
            );
            assert!(path.exists(), "{key}: the file went");
        }
        evict_hot(cache).await;
        let got = cache.get_bytes(key).await.unwrap();
        assert!(got.as_deref() == Some(&value[..]), "{key}: after the drops");
        cache.set_bytes(key, b"newer").await.unwrap();
        assert_eq!(
            cache.get_bytes(key).await.unwrap().as_deref(),
            Some(&b"newer"[..])
        );
    }
    cache.flush().await.unwrap();
    let s = cache.stats();
    assert_eq!(
        (s.disk_errors, s.corrupted),
        (0, 0),
        "{:?}",
        s.disk_errors_by_kind
    );
    assert!(
        s.inline_reads <= s.warm_hits,
        "{} > {}",
        s.inline_reads,
        s.warm_hits
    );
    index_matches_disk(cache, root).unwrap();
}

#[test]
fn dropped_gets_leave_the_cache_consistent_multi_thread() {
    mt(2).block_on(async {
        let cache = open().await;
        cancel_rounds(&cache, cache.root(), "mt").await;
    });
}

#[test]
fn dropped_gets_leave_the_cache_consistent_current_thread() {
    ct().block_on(async {
        let cache = open().await;
        cancel_rounds(&cache, cache.root(), "ct").await;
    });
}

#[test]
fn dropped_gets_leave_the_cache_consistent_local_set() {
    let rt = ct();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let cache = open().await;
        cancel_rounds(&cache, cache.root(), "local").await;
    });
}
