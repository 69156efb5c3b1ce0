//! What the resilience machinery costs.
//!
//! - Breaker overhead. The public API has no switch that bypasses the breaker, so the bench
//!   measures, in the same run, (a) the full warm-hit `get_bytes` and write-through `set_bytes`
//!   (the breaker in place: admit before the disk call, report after it) and (b) exactly the
//!   breaker work each disk call adds, in isolation: the mode check, a `Mutex<CircuitBreaker>`
//!   lock + `Instant::now` + `try_acquire`, then a second lock + `Instant::now` + `on_success`
//!   (what `degraded::Resilience::{admit, report}` do). Overhead = (b) / ((a) - (b)). Hot hits
//!   never reach the breaker (0 by construction).
//! - Memory-only mode: hot hit, miss and `set_bytes` while degraded (every disk call fails, so
//!   the cache went memory-only at open), against the same operations on a healthy tiered cache.
//!
//! Run: `cargo bench --bench resilience -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::testing::{Fault, FaultFs, Rule};
use answercache::{BreakerConfig, CircuitBreaker, Durability, Mode, TieredCache, WritePolicy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use workload::Kind;

const N: usize = 1000;
const SEQ: usize = 1 << 14;
const BURST: u64 = 256;

fn bench_breaker_overhead(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("breaker_overhead");
    group.throughput(Throughput::Elements(1));
    let size = 4 << 10;
    let keys = workload::keys(N, 50);
    let values = workload::values(Kind::ChatJson, size, N, 6);
    let seq = workload::zipf_sequence(N, SEQ, 11);

    // Warm hits (1-byte hot budget: every get reads the disk).
    let dir = workload::bench_dir("res-warm");
    let cache = rt.block_on(async {
        let cache = TieredCache::builder(dir.path())
            .min_free_bytes(0)
            .hot_capacity_bytes(1)
            .durability(Durability::NoSync)
            .build()
            .await
            .unwrap();
        workload::fill(&cache, &keys, &values).await;
        cache
    });
    group.bench_function(BenchmarkId::new("warm_get_bytes", "4KiB"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    black_box(cache.get_bytes(&keys[seq[i % SEQ]]).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(cache.close()).unwrap();

    // Write-through sets, no fsync (the cheapest disk write, so the largest relative overhead).
    let dir = workload::bench_dir("res-wt");
    let cache = rt.block_on(async {
        TieredCache::builder(dir.path())
            .min_free_bytes(0)
            .write_policy(WritePolicy::WriteThrough)
            .durability(Durability::NoSync)
            .build()
            .await
            .unwrap()
    });
    let mut next = 0usize;
    group.bench_function(BenchmarkId::new("write_through_nosync_set", "4KiB"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let i = next % N;
                    next += 1;
                    cache.set_bytes(&keys[i], &values[i]).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(cache.close()).unwrap();

    // The breaker's own work per disk call, as `Resilience::admit` + `report` do it.
    let breaker = Mutex::new(CircuitBreaker::new(BreakerConfig::default()));
    let mode = AtomicU8::new(0);
    group.bench_function(BenchmarkId::new("breaker_admit_report", "per_call"), |b| {
        b.iter(|| {
            if mode.load(Ordering::SeqCst) != 0 {
                return;
            }
            let (permit, t) = breaker.lock().unwrap().try_acquire(Instant::now());
            black_box(t);
            let permit = permit.unwrap();
            black_box(breaker.lock().unwrap().on_success(permit, Instant::now()));
        })
    });
    group.finish();
}

async fn open_tiered(dir: &Path) -> TieredCache {
    TieredCache::builder(dir)
        .min_free_bytes(0)
        .durability(Durability::NoSync)
        .build()
        .await
        .unwrap()
}

/// A cache whose every disk call fails with EIO: memory-only from the first error on, with
/// recovery probes far away.
async fn open_degraded(dir: &Path) -> TieredCache {
    let fs = Arc::new(FaultFs::std());
    fs.add_rule(Rule::new(Fault::Errno(5)));
    let cache = TieredCache::builder(dir)
        .min_free_bytes(0)
        .fs(fs)
        .memory_only_after(1)
        .recovery_interval(Duration::from_secs(3600))
        .health_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    // The failed open already counted; a miss makes sure if it did not.
    let _ = cache.get_bytes(b"warm-up").await;
    assert_eq!(cache.mode(), Mode::MemoryOnly);
    cache
}

fn bench_memory_only(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("memory_only");
    group.throughput(Throughput::Elements(1));
    let size = 4 << 10;
    let keys = workload::keys(N, 60);
    let absent = workload::keys(N, 61);
    let values = workload::values(Kind::ChatJson, size, N, 7);
    let seq = workload::zipf_sequence(N, SEQ, 12);
    for degraded in [false, true] {
        let name = if degraded { "memory_only" } else { "tiered" };
        let dir = workload::bench_dir("res-mode");
        let cache = rt.block_on(async {
            let cache = if degraded {
                open_degraded(dir.path()).await
            } else {
                open_tiered(dir.path()).await
            };
            for (k, v) in keys.iter().zip(&values) {
                cache.set_bytes(k, v).await.unwrap();
            }
            if !degraded {
                cache.flush().await.unwrap();
            }
            cache
        });
        group.bench_function(BenchmarkId::new("hot_get_bytes", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        black_box(cache.get_bytes(&keys[seq[i % SEQ]]).await.unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("miss_get_bytes", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let v = cache.get_bytes(&absent[i % N]).await.unwrap();
                        assert!(v.is_none());
                    }
                    start.elapsed()
                })
            })
        });
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("set_bytes", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let burst = left.min(BURST);
                        let start = Instant::now();
                        for _ in 0..burst {
                            let i = next % N;
                            next += 1;
                            cache.set_bytes(&keys[i], &values[i]).await.unwrap();
                        }
                        total += start.elapsed();
                        left -= burst;
                        if !degraded {
                            cache.flush().await.unwrap();
                        }
                    }
                    total
                })
            })
        });
        let s = cache.stats();
        println!(
            "memory_only/{name}: mode={:?} hot_hits={} misses={} sets={} dirty={} lost_writes={}",
            s.mode, s.hot_hits, s.misses, s.sets, s.dirty_entries, s.lost_writes
        );
        rt.block_on(async {
            let _ = cache.close().await;
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_breaker_overhead, bench_memory_only
}
criterion_main!(benches);
