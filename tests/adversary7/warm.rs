//! The compact warm index through the public API on a real directory: what the scan indexes,
//! LRU eviction order, eviction against another instance's newer file, and the sweep at the
//! 48-bit expiry boundaries.

use std::time::Duration;

use answercache::testing::{wait_until, TestDir};
use answercache::{Durability, WritePolicy};

use crate::support::*;

fn through(b: answercache::Builder) -> answercache::Builder {
    b.write_policy(WritePolicy::WriteThrough)
        .durability(Durability::NoSync)
        .memory_only_after(1000)
        .hot_capacity_entries(1)
}

/// Valid entry files named for their key but sitting in another fan-out directory
/// (`v2/00/<hex>` for keys whose hex does not start with `00`) are not at any entry path: no
/// read ever finds them. The scan must not index them as entries (the index would count 64
/// entries and 2.5 MiB that are not where it deletes from, evict "them" by deleting nothing,
/// and leave the files, uncounted, forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misplaced_entry_files_are_not_indexed() {
    let t = tempfile::tempdir().unwrap();
    let mut planted = 0u64;
    for i in 0..200u32 {
        let key = format!("misplaced:{i}");
        let hex = hex_of(key.as_bytes());
        if hex.starts_with("00") {
            continue;
        }
        let file = entry_file(
            key.as_bytes(),
            &noise(40 << 10, u64::from(i)),
            now_ms() - 60_000,
            0,
        );
        plant(&t.path().join("v2").join("00").join(&hex), &file);
        planted += 1;
        if planted == 64 {
            break;
        }
    }
    let cache = TestDir::in_tempdir(t)
        .open_cache(|b| through(b).warm_capacity_bytes(1 << 20))
        .await;
    scanned(&cache).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = cache.stats();
    // None of them is at its entry path: the reads are misses.
    assert_eq!(cache.get_bytes("misplaced:1").await.unwrap(), None);
    assert_eq!(
        (s.warm_entries, s.warm_bytes, s.warm_evictions),
        (0, 0, 0),
        "the scan indexed {planted} files that sit at no entry path: {s:?}"
    );
}

/// Least recently used first: key 0 is read (from the warm tier) after every set, so it is
/// never the victim; the survivors among the others are exactly the most recent ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_follows_recency_exactly() {
    let cache = TestDir::new()
        .open_cache(|b| through(b).warm_capacity_bytes(256 << 10))
        .await;
    scanned(&cache).await;
    let root = cache.root().to_owned();
    cache.set_bytes("lru:0", b"kept by reads").await.unwrap();
    for i in 1..=80u32 {
        cache
            .set_bytes(format!("lru:{i}").as_str(), noise(3000, u64::from(i)))
            .await
            .unwrap();
        assert_eq!(
            cache.get_bytes("lru:0").await.unwrap().as_deref(),
            Some(&b"kept by reads"[..]),
            "after set {i}"
        );
    }
    let s = cache.stats();
    assert!(s.warm_evictions > 0, "{s:?}");
    let alive: Vec<bool> = (1..=80u32)
        .map(|i| v2_path(&root, format!("lru:{i}").as_bytes()).exists())
        .collect();
    let first_alive = alive.iter().position(|a| *a).unwrap();
    assert!(
        alive[first_alive..].iter().all(|a| *a) && alive[..first_alive].iter().all(|a| !*a),
        "survivors are not a suffix of the recency order: {alive:?}"
    );
    assert!(v2_path(&root, b"lru:0").exists());
    assert_eq!(s.warm_entries, 1 + (80 - first_alive) as u64);
    assert_eq!(s.warm_entries, v2_files(&root).len() as u64);
    assert!(s.warm_disk_bytes <= 256 << 10, "{s:?}");
}

/// Instance A indexed `victim`; instance B (same directory) writes a newer `victim`; A's
/// eviction of its least recently used entry must not delete B's newer file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_spares_another_instances_newer_file() {
    let dir = TestDir::new();
    let b_builder = through(dir.builder());
    let a = dir
        .open_cache(|b| through(b).warm_capacity_bytes(128 << 10))
        .await;
    scanned(&a).await;
    let root = a.root().to_owned();
    a.set_bytes("victim", b"A's old value").await.unwrap();
    let b = b_builder.build().await.unwrap();
    b.set_bytes("victim", b"B's newer value").await.unwrap();
    b.close().await.unwrap();
    // Fillers until A's first eviction: its least recently used entry is `victim`, whose file
    // is now B's; A must spare it (and re-index it) and evict `filler:0` instead.
    let mut i = 0u32;
    while a.stats().warm_evictions == 0 {
        a.set_bytes(format!("filler:{i}").as_str(), noise(3000, u64::from(i)))
            .await
            .unwrap();
        i += 1;
        assert!(i < 200, "no eviction");
    }
    assert_eq!(a.stats().warm_evictions, 1);
    assert!(
        !v2_path(&root, b"filler:0").exists(),
        "filler:0 was the next least recent"
    );
    let path = v2_path(&root, b"victim");
    let bytes = std::fs::read(&path).expect("B's newer file was deleted by A's eviction");
    let d = answercache::warm::format::decode(&bytes, b"victim", &Default::default()).unwrap();
    assert_eq!(d.value, b"B's newer value");
}

/// Entries whose expiries sit around 2^48 ms (the index's 48-bit field, its codes and side
/// map): each is swept exactly when the clock reaches it, not a millisecond before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_at_the_48_bit_expiry_boundaries() {
    let start = now_ms();
    let cache = TestDir::new()
        .manual_clock(start)
        .open_cache(|b| through(b).sweep_interval(Duration::from_millis(20)))
        .await;
    scanned(&cache).await;
    let root = cache.root().to_owned();
    let top = 1u64 << 48;
    let targets = [top - 5, top - 4, top - 3, top - 2, top - 1, top, top + 1];
    for (i, &e) in targets.iter().enumerate() {
        cache
            .set_bytes_with_ttl(
                format!("exp:{i}").as_str(),
                format!("expires at {e}"),
                Duration::from_millis(e - start),
            )
            .await
            .unwrap();
    }
    cache.set_bytes("never", b"no expiry").await.unwrap();
    let alive = || -> Vec<bool> {
        (0..targets.len())
            .map(|i| v2_path(&root, format!("exp:{i}").as_bytes()).exists())
            .collect()
    };
    assert_eq!(alive(), vec![true; targets.len()]);
    for (step, &e) in targets.iter().enumerate() {
        // One millisecond before: nothing more swept.
        cache.clock().set(e - 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let want: Vec<bool> = targets.iter().map(|&x| x > e - 1).collect();
        assert_eq!(alive(), want, "at {e} - 1 (step {step})");
        cache.clock().set(e);
        let want: Vec<bool> = targets.iter().map(|&x| x > e).collect();
        let ok = wait_until(Duration::from_secs(10), || alive() == want).await;
        assert!(ok, "at {e} (step {step}): {:?}, want {want:?}", alive());
    }
    assert!(v2_path(&root, b"never").exists());
    assert_eq!(cache.stats().warm_expirations, targets.len() as u64);
}
