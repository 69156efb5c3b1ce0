//! Hot-hit throughput with 1, 2, 4, 8 and 16 threads, each looking up keys of the same Zipf
//! sequence (from its own offset) in one shared cache: answercache `get_bytes`, a raw
//! `Mutex<lru::LruCache>` (one lock, the contention worst case) and moka.
//!
//! Each thread drives its lookups on its own current-thread tokio runtime; criterion's time per
//! element is wall time / total lookups, so "elements/s" is the aggregate throughput. On 2
//! cores this shows contention; on a machine with 16 cores it shows scaling.
//!
//! `ANSWERCACHE_BENCH_THREADS=1,16` picks the thread counts (default: 1,2,4,8,16).
//!
//! Run: `cargo bench --bench threads -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use answercache::{Durability, TieredCache};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lru::LruCache;
use workload::Kind;

/// The floor: one lock around one `lru::LruCache`.
type RawLru = Mutex<LruCache<Box<[u8]>, Arc<[u8]>>>;

const N: usize = 10_000;
const SEQ: usize = 1 << 16;

fn thread_counts() -> Vec<usize> {
    std::env::var("ANSWERCACHE_BENCH_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16])
}

/// Runs `iters` lookups split over `threads` threads; returns the wall time from the moment all
/// threads are ready until the last one finishes.
fn run_threads<F, Fut>(threads: usize, iters: u64, op: F) -> Duration
where
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = ()>,
{
    let barrier = Barrier::new(threads + 1);
    let per = (iters as usize).div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let offset = t * (SEQ / threads.max(1));
                    barrier.wait();
                    rt.block_on(async {
                        for i in 0..per {
                            op(offset + i).await;
                        }
                    });
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

fn bench_threads(c: &mut Criterion) {
    let rt = workload::runtime();
    let size = 4 << 10;
    let keys = workload::keys(N, 70);
    let values = workload::values(Kind::ChatJson, size, N, 8);
    let seq = workload::zipf_sequence(N, SEQ, 14);
    let dir = workload::bench_dir("threads");
    let cache = rt.block_on(async {
        let cache = TieredCache::builder(dir.path())
            .min_free_bytes(0)
            .hot_capacity_bytes(1 << 30)
            .durability(Durability::NoSync)
            .build()
            .await
            .unwrap();
        workload::fill(&cache, &keys, &values).await;
        cache
    });
    let raw: RawLru = Mutex::new(LruCache::new(NonZeroUsize::new(N).unwrap()));
    for (k, v) in keys.iter().zip(&values) {
        raw.lock()
            .unwrap()
            .put(k.clone().into_boxed_slice(), v.clone());
    }
    let moka: moka::future::Cache<Box<[u8]>, Arc<[u8]>> = moka::future::Cache::new(N as u64);
    rt.block_on(async {
        for (k, v) in keys.iter().zip(&values) {
            moka.insert(k.clone().into_boxed_slice(), v.clone()).await;
        }
        moka.run_pending_tasks().await;
    });

    let mut group = c.benchmark_group("threads_hot_get");
    group.throughput(Throughput::Elements(1));
    for t in thread_counts() {
        group.bench_function(BenchmarkId::new("answercache", t), |b| {
            b.iter_custom(|iters| {
                run_threads(t, iters, |i| {
                    let k = &keys[seq[i % SEQ]];
                    let cache = &cache;
                    async move {
                        black_box(cache.get_bytes(k).await.unwrap());
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("raw_mutex_lru", t), |b| {
            b.iter_custom(|iters| {
                run_threads(t, iters, |i| {
                    let k: &[u8] = &keys[seq[i % SEQ]];
                    black_box(raw.lock().unwrap().get(k).cloned());
                    async {}
                })
            })
        });
        group.bench_function(BenchmarkId::new("moka", t), |b| {
            b.iter_custom(|iters| {
                run_threads(t, iters, |i| {
                    let k: &[u8] = &keys[seq[i % SEQ]];
                    let moka = &moka;
                    async move {
                        black_box(moka.get(k).await);
                    }
                })
            })
        });
    }
    group.finish();
    let s = cache.stats();
    assert_eq!(s.warm_hits + s.misses, 0);
    rt.block_on(cache.close()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_threads
}
criterion_main!(benches);
