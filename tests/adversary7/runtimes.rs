//! Large warm entries read from every kind of tokio context. A file over 64 KiB
//! (`STEPPED_FILE_MAX`; 64 KiB of noise) is read on the caller's thread and verified and
//! inflated on the blocking pool; a file of 16-64 KiB (40 KiB of noise, padded with zeros to
//! 100 KiB of value) is verified on the
//! caller's thread and inflated there in steps with a `yield_now` between them (no
//! `block_in_place`, which panics in some of these contexts). Every read must be a hit of
//! exactly the planted value, with no disk error counted (a caught panic is counted as one,
//! and aborts a `panic = "abort"` build).

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{TestCache, TestDir};
use tokio::runtime::{Builder as RtBuilder, Runtime};

use crate::support::*;

const VALUE_LEN: usize = 64 << 10;

fn mt(workers: usize) -> Runtime {
    RtBuilder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn ct() -> Runtime {
    RtBuilder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cache (built on `rt`) whose hot tier holds one entry, with `n` large entries planted
/// after its scan: keys `big:0..n`, values `noise(VALUE_LEN, i)`. These tests are about which
/// thread inflates, not about timeouts: `io_timeout` is far above what a queue of reads on a
/// one-thread blocking pool of a loaded machine can take (256 debug-build inflates behind each
/// other took over the 5 s default in a clean-clone CI run with helpers building beside it).
fn cache_with_large_entries(rt: &Runtime, n: u64) -> TestCache {
    rt.block_on(async {
        let cache = TestDir::new()
            .open_cache(|b| {
                b.hot_capacity_entries(1)
                    .memory_only_after(1000)
                    .io_timeout(Duration::from_secs(100))
            })
            .await;
        scanned(&cache).await;
        for i in 0..n {
            let key = format!("big:{i}");
            let file = entry_file(key.as_bytes(), &noise(VALUE_LEN, i), now_ms() - 1000, 0);
            assert!(file.len() > 16 << 10);
            plant(&v2_path(cache.root(), key.as_bytes()), &file);
        }
        cache
    })
}

fn check(cache: &TestCache, i: u64, got: Option<Arc<[u8]>>) {
    assert_eq!(
        got.as_deref().map(<[u8]>::len),
        Some(VALUE_LEN),
        "big:{i}: {:?}",
        cache.stats().disk_errors_by_kind
    );
    assert!(
        *got.unwrap() == *noise(VALUE_LEN, i),
        "big:{i}: wrong bytes"
    );
}

fn no_disk_errors(cache: &TestCache) {
    let s = cache.stats();
    assert_eq!(
        (s.disk_errors, s.corrupted, s.warm_hits),
        (0, 0, s.warm_hits),
        "{:?}",
        s.disk_errors_by_kind
    );
}

/// The reference: on a worker of a multi-thread runtime, and in its `block_on`, a large entry
/// is read already in memory and inflated on the blocking pool (the lead removed the
/// `block_in_place` path these tests broke: it is not counted inline).
#[test]
fn multi_thread_worker_reads_large_entries_on_the_pool() {
    let rt = mt(2);
    let cache = cache_with_large_entries(&rt, 2);
    rt.block_on(async {
        let before = cache.stats().inline_reads;
        let c = cache.cache.clone();
        let got = tokio::spawn(async move { c.get_bytes("big:0").await.unwrap() })
            .await
            .unwrap();
        check(&cache, 0, got);
        check(&cache, 1, cache.get_bytes("big:1").await.unwrap());
        assert_eq!(cache.stats().inline_reads, before);
        assert_eq!(cache.stats().warm_hits, 2);
    });
    no_disk_errors(&cache);
}

/// A current-thread runtime's `block_on` that entered a multi-thread runtime's handle
/// (`Handle::enter`, e.g. to spawn onto it): `Handle::try_current()` reports the multi-thread
/// flavor, but the thread is inside a current-thread runtime, where `block_in_place` panics.
#[test]
fn current_thread_block_on_with_a_multi_thread_handle_entered() {
    let rt = mt(2);
    let cache = cache_with_large_entries(&rt, 1);
    let local = ct();
    let handle = rt.handle().clone();
    let got = local.block_on(async {
        let _entered = handle.enter();
        cache.get_bytes("big:0").await.unwrap()
    });
    check(&cache, 0, got);
    no_disk_errors(&cache);
}

/// A `LocalSet` driven by a current-thread runtime: handed to the pool.
#[test]
fn local_set_on_a_current_thread_runtime() {
    let rt = mt(2);
    let cache = cache_with_large_entries(&rt, 2);
    let local_rt = ct();
    let set = tokio::task::LocalSet::new();
    let c = cache.cache.clone();
    let got = set.block_on(&local_rt, async move {
        let c2 = c.clone();
        let a = tokio::task::spawn_local(async move { c2.get_bytes("big:0").await.unwrap() })
            .await
            .unwrap();
        (a, c.get_bytes("big:1").await.unwrap())
    });
    check(&cache, 0, got.0);
    check(&cache, 1, got.1);
    no_disk_errors(&cache);
}

/// A `LocalSet` driven by a multi-thread runtime's `block_on`, and one inside a worker task.
#[test]
fn local_set_on_a_multi_thread_runtime() {
    let rt = mt(2);
    let cache = cache_with_large_entries(&rt, 3);
    let set = tokio::task::LocalSet::new();
    let c = cache.cache.clone();
    let got = rt.block_on(set.run_until(async move {
        let c2 = c.clone();
        let a = tokio::task::spawn_local(async move { c2.get_bytes("big:0").await.unwrap() })
            .await
            .unwrap();
        (a, c.get_bytes("big:1").await.unwrap())
    }));
    check(&cache, 0, got.0);
    check(&cache, 1, got.1);
    let c = cache.cache.clone();
    // A LocalSet driven by `Handle::block_on` on a thread outside the runtime.
    let h = rt.handle().clone();
    let got = std::thread::spawn(move || {
        let set = tokio::task::LocalSet::new();
        h.block_on(set.run_until(async move { c.get_bytes("big:2").await.unwrap() }))
    })
    .join()
    .unwrap();
    check(&cache, 2, got);
    no_disk_errors(&cache);
}

/// `Handle::block_on` from inside `spawn_blocking`, from a plain thread, and from inside the
/// user's own `block_in_place`.
#[test]
fn block_on_from_blocking_contexts() {
    let rt = mt(2);
    let cache = cache_with_large_entries(&rt, 3);
    let c = cache.cache.clone();
    let got = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(c.get_bytes("big:0"))
        })
        .await
        .unwrap()
        .unwrap()
    });
    check(&cache, 0, got);
    let c = cache.cache.clone();
    let h = rt.handle().clone();
    let got = std::thread::spawn(move || h.block_on(c.get_bytes("big:1")).unwrap())
        .join()
        .unwrap();
    check(&cache, 1, got);
    let c = cache.cache.clone();
    let got = rt.block_on(async move {
        tokio::spawn(async move {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(c.get_bytes("big:2"))
            })
        })
        .await
        .unwrap()
        .unwrap()
    });
    check(&cache, 2, got);
    no_disk_errors(&cache);
}

/// 256 concurrent large reads on a one-worker runtime (and its blocking pool limited to
/// one thread): all complete, exactly, within the time limit.
#[test]
fn many_large_reads_on_a_one_worker_runtime() {
    let rt = RtBuilder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = cache_with_large_entries(&rt, 16);
    let c = Arc::new(cache.cache.clone());
    let results = rt.block_on(async move {
        let mut tasks = Vec::new();
        for t in 0..256u64 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let i = t % 16;
                (i, c.get_bytes(&format!("big:{i}")).await.unwrap())
            }));
        }
        tokio::time::timeout(Duration::from_secs(120), async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .await
        .expect("256 large reads on one worker did not finish in 120 s")
    });
    assert_eq!(results.len(), 256);
    for (i, got) in results {
        check(&cache, i, got);
    }
    no_disk_errors(&cache);
}

/// The runtime is shut down while large reads are in flight: no panic, and every file is
/// still there, whole, for a cache on a fresh runtime.
#[test]
fn runtime_shutdown_during_large_reads() {
    let rt = mt(1);
    let cache = cache_with_large_entries(&rt, 8);
    let c = cache.cache.clone();
    rt.block_on(async {
        for t in 0..64u64 {
            let c = c.clone();
            tokio::spawn(async move {
                let _ = c.get_bytes(&format!("big:{}", t % 8)).await;
            });
        }
        tokio::task::yield_now().await;
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    let root = cache.root().to_owned();
    drop(c);
    for i in 0..8u64 {
        let key = format!("big:{i}");
        let bytes = std::fs::read(v2_path(&root, key.as_bytes())).unwrap();
        let d =
            answercache::warm::format::decode(&bytes, key.as_bytes(), &Default::default()).unwrap();
        assert!(d.value == noise(VALUE_LEN, i));
    }
    drop(cache);
    let rt2 = mt(2);
    let cache = cache_with_large_entries(&rt2, 1);
    let got = rt2.block_on(cache.get_bytes("big:0")).unwrap();
    check(&cache, 0, got);
}

const STEPPED_LEN: usize = 40 << 10;

/// `noise(STEPPED_LEN, i)` padded with zeros to 100 KiB: a file of ~40 KiB whose value takes
/// two 64 KiB steps (noise alone took two 32 KiB steps when this test was written).
fn stepped_value(i: u64) -> Vec<u8> {
    let mut v = noise(STEPPED_LEN, i);
    v.resize(100 << 10, 0);
    v
}

/// Like `cache_with_large_entries`, with `n` entries of 16-64 KiB of file (keys `mid:0..n`,
/// values `stepped_value(i)`): inflated in steps on the reading task.
fn cache_with_stepped_entries(rt: &Runtime, n: u64) -> TestCache {
    rt.block_on(async {
        let cache = TestDir::new()
            .open_cache(|b| {
                b.hot_capacity_entries(1)
                    .memory_only_after(1000)
                    .io_timeout(Duration::from_secs(100))
            })
            .await;
        scanned(&cache).await;
        for i in 0..n {
            let key = format!("mid:{i}");
            let file = entry_file(key.as_bytes(), &stepped_value(i), now_ms() - 1000, 0);
            assert!(file.len() > 32 << 10 && file.len() <= 64 << 10);
            plant(&v2_path(cache.root(), key.as_bytes()), &file);
        }
        cache
    })
}

fn check_stepped(got: Option<Arc<[u8]>>, i: u64) {
    assert!(
        got.as_deref() == Some(&stepped_value(i)[..]),
        "mid:{i}: not the planted value"
    );
}

/// Entries inflated in steps on the task, from a multi-thread worker, its `block_on`, a
/// current-thread runtime, a `LocalSet` on each, and `Handle::block_on` inside
/// `spawn_blocking`: hits of the planted bytes, counted inline when the page cache had them.
#[test]
fn stepped_inflate_in_every_context() {
    let rt = mt(2);
    let cache = cache_with_stepped_entries(&rt, 6);
    let c = cache.cache.clone();
    let got = rt.block_on(async move {
        tokio::spawn(async move { c.get_bytes("mid:0").await.unwrap() })
            .await
            .unwrap()
    });
    check_stepped(got, 0);
    check_stepped(rt.block_on(cache.get_bytes("mid:1")).unwrap(), 1);
    let local = ct();
    check_stepped(local.block_on(cache.get_bytes("mid:2")).unwrap(), 2);
    let set = tokio::task::LocalSet::new();
    let c = cache.cache.clone();
    let got = set.block_on(&local, async move {
        tokio::task::spawn_local(async move { c.get_bytes("mid:3").await.unwrap() })
            .await
            .unwrap()
    });
    check_stepped(got, 3);
    let set = tokio::task::LocalSet::new();
    let c = cache.cache.clone();
    check_stepped(
        rt.block_on(set.run_until(async move { c.get_bytes("mid:4").await.unwrap() })),
        4,
    );
    let c = cache.cache.clone();
    let got = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(c.get_bytes("mid:5"))
        })
        .await
        .unwrap()
        .unwrap()
    });
    check_stepped(got, 5);
    assert_eq!(cache.stats().warm_hits, 6);
    no_disk_errors(&cache);
}
