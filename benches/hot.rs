//! Hot hits: `get_bytes` and typed `get` on entries held by the memory tier, against a raw
//! `Mutex<lru::LruCache>` get (the floor for a locked LRU) and `moka::future::Cache::get`, on the
//! same keys, values and Zipf access sequence, in the same run.
//!
//! Every contender runs inside one `block_on` per sample, so the executor's entry cost is not
//! measured, only the lookups. The warm tier is on (write-behind, NoSync to populate quickly)
//! but every key is hot, so no get touches the disk.
//!
//! Run: `cargo bench --bench hot -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::{Durability, TieredCache};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lru::LruCache;
use workload::{ChatCompletion, Kind};

/// The floor: one lock around one `lru::LruCache`.
type RawLru = Mutex<LruCache<Box<[u8]>, Arc<[u8]>>>;

/// Length of the pre-drawn access sequence (cycled).
const SEQ: usize = 1 << 16;

/// Key count for a value size: 10,000 keys, capped at 128 MiB of values per contender.
fn key_count(size: usize) -> usize {
    (128usize << 20).div_ceil(size).min(10_000)
}

async fn open_hot(dir: &std::path::Path) -> TieredCache {
    open_hot_with(dir, answercache::Codec::Json).await
}

async fn open_hot_with(dir: &std::path::Path, codec: answercache::Codec) -> TieredCache {
    TieredCache::builder(dir)
        .codec(codec)
        .min_free_bytes(0)
        .hot_capacity_bytes(2 << 30)
        .hot_capacity_entries(1 << 20)
        .durability(Durability::NoSync)
        .build()
        .await
        .unwrap()
}

fn bench_get_bytes(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("hot_get_bytes");
    group.throughput(Throughput::Elements(1));
    for &size in &workload::SIZES {
        let n = key_count(size);
        let keys = workload::keys(n, size as u64);
        let values = workload::values(Kind::ChatJson, size, n, 1);
        let seq = workload::zipf_sequence(n, SEQ, 7);
        let dir = workload::bench_dir("hot");
        let cache = rt.block_on(async {
            let cache = open_hot(dir.path()).await;
            workload::fill(&cache, &keys, &values).await;
            cache
        });
        let raw: RawLru = Mutex::new(LruCache::new(NonZeroUsize::new(n).unwrap()));
        for (k, v) in keys.iter().zip(&values) {
            raw.lock()
                .unwrap()
                .put(k.clone().into_boxed_slice(), v.clone());
        }
        let moka: moka::future::Cache<Box<[u8]>, Arc<[u8]>> = moka::future::Cache::new(n as u64);
        rt.block_on(async {
            for (k, v) in keys.iter().zip(&values) {
                moka.insert(k.clone().into_boxed_slice(), v.clone()).await;
            }
            moka.run_pending_tasks().await;
        });
        let label = workload::size_label(size);

        group.bench_function(BenchmarkId::new("answercache", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &keys[seq[i % SEQ]];
                        black_box(cache.get_bytes(k).await.unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("raw_mutex_lru", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k: &[u8] = &keys[seq[i % SEQ]];
                        black_box(raw.lock().unwrap().get(k).cloned());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("moka", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k: &[u8] = &keys[seq[i % SEQ]];
                        black_box(moka.get(k).await);
                    }
                    start.elapsed()
                })
            })
        });
        let stats = cache.stats();
        assert_eq!(
            stats.warm_hits + stats.misses,
            0,
            "every get must be a hot hit"
        );
        rt.block_on(cache.close()).unwrap();
    }
    group.finish();
}

/// Typed get with the bincode codec (`benches/codec.rs` compares the codecs): answercache decodes
/// bincode on every hit. Compared with the same raw LRU get plus the same bincode decode (what answercache must do at least), and with moka holding the
/// decoded struct behind an `Arc` (what a moka user would cache: no decode at all).
fn bench_get_typed(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("hot_get_typed");
    group.throughput(Throughput::Elements(1));
    for size in [4 << 10, 64 << 10] {
        let n = key_count(size);
        let keys = workload::keys(n, 100 + size as u64);
        let typed: Vec<ChatCompletion> = (0..n as u64)
            .map(|i| workload::chat_completion(size, i))
            .collect();
        let encoded: Vec<Arc<[u8]>> = typed
            .iter()
            .map(|v| {
                bincode::serde::encode_to_vec(v, bincode::config::standard())
                    .unwrap()
                    .into()
            })
            .collect();
        let seq = workload::zipf_sequence(n, SEQ, 8);
        let dir = workload::bench_dir("hot-typed");
        let cache = rt.block_on(async {
            let cache = open_hot_with(dir.path(), answercache::Codec::Bincode).await;
            for (k, v) in keys.iter().zip(&typed) {
                cache.set(k, v).await.unwrap();
            }
            cache.flush().await.unwrap();
            cache
        });
        let raw: RawLru = Mutex::new(LruCache::new(NonZeroUsize::new(n).unwrap()));
        for (k, v) in keys.iter().zip(&encoded) {
            raw.lock()
                .unwrap()
                .put(k.clone().into_boxed_slice(), v.clone());
        }
        let moka: moka::future::Cache<Box<[u8]>, Arc<ChatCompletion>> =
            moka::future::Cache::new(n as u64);
        rt.block_on(async {
            for (k, v) in keys.iter().zip(&typed) {
                moka.insert(k.clone().into_boxed_slice(), Arc::new(v.clone()))
                    .await;
            }
            moka.run_pending_tasks().await;
        });
        let label = workload::size_label(size);
        group.bench_function(BenchmarkId::new("answercache", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &keys[seq[i % SEQ]];
                        let v: Option<ChatCompletion> = cache.get(k).await.unwrap();
                        black_box(v);
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("raw_mutex_lru_plus_decode", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k: &[u8] = &keys[seq[i % SEQ]];
                        let bytes = raw.lock().unwrap().get(k).cloned().unwrap();
                        let (v, _): (ChatCompletion, usize) =
                            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                                .unwrap();
                        black_box(v);
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("moka_arc_struct", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k: &[u8] = &keys[seq[i % SEQ]];
                        black_box(moka.get(k).await);
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(cache.close()).unwrap();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_get_bytes, bench_get_typed
}
criterion_main!(benches);
