//! Warm hits from the page cache: `get_bytes` of entries that are only on disk, against
//! - the floor measured in the same run: open + read + close of the same entry file, blake3
//!   checksum, inflate, on the calling thread (no blocking-pool hop, no breaker, no index);
//! - the synchronous store path: the same read plus `answercache::warm::format::decode` (the
//!   library's own verify + bounded inflate), to split the gap into "async hop" and "decode";
//! - `cacache::read` (tokio runtime) of the same keys and values;
//! - a foyer hybrid cache's disk tier (`storage().load`, which reads the block device file and
//!   does not promote), counting the entries foyer actually found.
//!
//! answercache runs with a hot budget of 1 byte, so nothing is ever promoted and every get reads
//! the file; a second variant with a one-entry hot tier shows the cost of promotion. The page
//! cache is warm after the first read of each file (the entries were just written).
//!
//! Run: `cargo bench --bench warm -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::warm::format::{self, Limits};
use answercache::warm::layout::{key_hash, Layout};
use answercache::{Durability, TieredCache};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, Load,
};
use workload::Kind;

/// Entries per size.
const N: usize = 1000;
/// Length of the pre-drawn access sequence (cycled).
const SEQ: usize = 1 << 14;

/// A warm-only answercache: a 1-byte hot budget admits nothing, so every get reads the disk.
async fn open_warm_only(dir: &std::path::Path) -> TieredCache {
    TieredCache::builder(dir)
        .min_free_bytes(0)
        .hot_capacity_bytes(1)
        .durability(Durability::NoSync)
        .build()
        .await
        .unwrap()
}

/// The floor: what any verified, compressed disk cache must do per hit, and nothing else.
fn floor_read(path: &std::path::Path, key: &[u8]) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let mut file = Vec::with_capacity(len);
    f.read_to_end(&mut file).unwrap();
    drop(f);
    let le_u32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap()) as usize;
    let le_u64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap()) as usize;
    let key_len = le_u32(&file[12..16]);
    let raw_len = le_u64(&file[40..48]);
    let key_end = format::HEADER_LEN + key_len;
    let mut h = blake3::Hasher::new();
    h.update(&file[..format::CHECKSUM_OFFSET]);
    h.update(&file[format::HEADER_LEN..key_end]);
    h.update(&file[key_end..]);
    assert_eq!(
        h.finalize().as_bytes(),
        &file[format::CHECKSUM_OFFSET..format::HEADER_LEN]
    );
    assert_eq!(&file[format::HEADER_LEN..key_end], key);
    // One-shot inflate into a buffer of exactly the declared length (zlib's gzip mode checks
    // the gzip header, CRC-32 and length, as any reader of a gzip member must).
    let mut out = Vec::with_capacity(raw_len);
    let mut d = flate2::Decompress::new_gzip(15);
    let status = d
        .decompress_vec(&file[key_end..], &mut out, flate2::FlushDecompress::Finish)
        .unwrap();
    assert_eq!(status, flate2::Status::StreamEnd);
    assert_eq!(out.len(), raw_len);
    out
}

async fn open_foyer(dir: &std::path::Path, bytes: usize) -> HybridCache<Vec<u8>, Vec<u8>> {
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(bytes.max(64 << 20) * 2)
        .build()
        .unwrap();
    HybridCacheBuilder::new()
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(16)
        .storage()
        .with_engine_config(BlockEngineConfig::new(device))
        .build()
        .await
        .unwrap()
}

fn bench_warm(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("warm_hit");
    group.throughput(Throughput::Elements(1));
    let limits = Limits::default();
    for &size in &workload::SIZES {
        let keys = workload::keys(N, 10 + size as u64);
        let values = workload::values(Kind::ChatJson, size, N, 2);
        let seq = workload::zipf_sequence(N, SEQ, 9);
        let label = workload::size_label(size);

        // answercache, warm only.
        let dir = workload::bench_dir("warm");
        let cache = rt.block_on(async {
            let cache = open_warm_only(dir.path()).await;
            workload::fill(&cache, &keys, &values).await;
            cache
        });
        let layout = Layout::new(cache.root());
        let paths: Vec<PathBuf> = keys
            .iter()
            .map(|k| layout.entry_path(&key_hash(k)))
            .collect();

        // cacache, same keys and values.
        let cacache_dir = workload::bench_dir("warm-cacache");
        let cacache_keys: Vec<String> = keys
            .iter()
            .map(|k| String::from_utf8(k.clone()).unwrap())
            .collect();
        rt.block_on(async {
            for (k, v) in cacache_keys.iter().zip(&values) {
                cacache::write(cacache_dir.path(), k, &v[..]).await.unwrap();
            }
        });

        // foyer, same keys and values, written to its disk tier on insertion.
        let foyer_dir = workload::bench_dir("warm-foyer");
        let foyer = rt.block_on(async {
            let hybrid = open_foyer(foyer_dir.path(), N * size * 2).await;
            for (k, v) in keys.iter().zip(&values) {
                hybrid.insert(k.clone(), v.to_vec());
                // Let the flusher keep up: foyer drops entries when its queue is full, and
                // this bench is about hits, not about retention (see benches/retention.rs).
                hybrid.storage().wait().await;
            }
            hybrid.storage().wait().await;
            hybrid
        });

        group.bench_function(BenchmarkId::new("answercache", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &keys[seq[i % SEQ]];
                        black_box(cache.get_bytes(k).await.unwrap().unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("floor_read_blake3_inflate", &label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let j = seq[i % SEQ];
                    black_box(floor_read(&paths[j], &keys[j]));
                }
                start.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("sync_read_format_decode", &label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let j = seq[i % SEQ];
                    let file = std::fs::read(&paths[j]).unwrap();
                    black_box(format::decode(&file, &keys[j], &limits).unwrap());
                }
                start.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("cacache_read", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &cacache_keys[seq[i % SEQ]];
                        black_box(cacache::read(cacache_dir.path(), k).await.unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        let (found, missed) = (AtomicU64::new(0), AtomicU64::new(0));
        group.bench_function(BenchmarkId::new("foyer_disk_load", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &keys[seq[i % SEQ]];
                        match foyer.storage().load(k).await.unwrap() {
                            Load::Entry { value, .. } => {
                                found.fetch_add(1, Ordering::Relaxed);
                                black_box(value);
                            }
                            Load::Piece { piece, .. } => {
                                // Served from the in-flight keeper, not the disk.
                                missed.fetch_add(1, Ordering::Relaxed);
                                black_box(piece);
                            }
                            _ => {
                                missed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    start.elapsed()
                })
            })
        });
        let s = cache.stats();
        println!(
            "warm_hit/{label}: answercache hot_hits={} warm_hits={} misses={} | foyer disk hits={} not-from-disk={}",
            s.hot_hits,
            s.warm_hits,
            s.misses,
            found.load(Ordering::Relaxed),
            missed.load(Ordering::Relaxed)
        );
        assert_eq!(s.misses, 0);
        rt.block_on(async {
            cache.close().await.unwrap();
            foyer.close().await.unwrap();
        });
    }
    group.finish();
}

/// Warm hit with promotion: a one-entry hot tier, so each warm hit is promoted into the hot tier
/// (evicting the previous one). Same 4 KiB entries.
/// What a step of the inline read costs: `ExactInflater` (the inflater of every warm read)
/// run over the same 64 KiB chat-JSON values (gzip level 3, the default above one allocation
/// unit) in one step, and in steps of 32 and 16 KiB of value (no yield between them: the
/// inflater's own cost). Each step after the first copies its output into zlib's 32 KiB window;
/// `INLINE_STEP_BYTES` was chosen from this (BENCHMARKS.md, "Session 16").
fn bench_inflate_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("inflate_steps");
    group.throughput(Throughput::Elements(1));
    let size = 64 * 1024;
    let values = workload::values(Kind::ChatJson, size, 32, 5);
    let members: Vec<Vec<u8>> = values
        .iter()
        .map(|v| format::deflate(v, answercache::defaults::DEFAULT_COMPRESSION_LEVEL).unwrap())
        .collect();
    for (label, step) in [
        ("one_step", usize::MAX),
        ("32KiB_steps", 32 << 10),
        ("16KiB_steps", 16 << 10),
    ] {
        group.bench_function(BenchmarkId::new(label, "64KiB"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % members.len();
                let mut inflater =
                    format::ExactInflater::<Arc<[u8]>>::new(values[i].len() as u64).unwrap();
                while !inflater.step(&members[i], step).unwrap() {}
                black_box(inflater.into_value())
            })
        });
    }
    group.finish();
}

fn bench_warm_promote(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("warm_hit_promote");
    group.throughput(Throughput::Elements(1));
    let size = 4 << 10;
    let keys = workload::keys(N, 20);
    let values = workload::values(Kind::ChatJson, size, N, 3);
    let seq = workload::zipf_sequence(N, SEQ, 10);
    let dir = workload::bench_dir("warm-promote");
    let cache = rt.block_on(async {
        let cache = TieredCache::builder(dir.path())
            .min_free_bytes(0)
            .hot_capacity_entries(1)
            .durability(Durability::NoSync)
            .build()
            .await
            .unwrap();
        workload::fill(&cache, &keys, &values).await;
        cache
    });
    group.bench_function(BenchmarkId::new("answercache_promote", "4KiB"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let k = &keys[seq[i % SEQ]];
                    black_box(cache.get_bytes(k).await.unwrap().unwrap());
                }
                start.elapsed()
            })
        })
    });
    let s = cache.stats();
    println!(
        "warm_hit_promote/4KiB: hot_hits={} warm_hits={} (promotions = warm hits)",
        s.hot_hits, s.warm_hits
    );
    rt.block_on(cache.close()).unwrap();
    group.finish();
}

/// The orders the three contenders of a paired round read the same key in: all six, in turn,
/// so that each one follows each other one equally often. Whichever reads a file second finds
/// it (and the allocator's last buffer) in the CPU cache: measured here, 15-20% faster at 4-16
/// KiB. A rotation of one order (session 15 and before: floor after answercache in two rounds
/// of three, never the other way) counted that against answercache.
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// Warm hits, *paired*: for each access of the Zipf sequence, one answercache `get_bytes`, one
/// floor read and one `cacache::read` of the same key, in each of the six orders in turn
/// ([`ORDERS`]: each contender goes first a third of the time, and before and after each other
/// one equally often, so all see the same page cache and CPU state). Prints medians and means
/// per size; ratios are answercache time / contender time. The last column splits the floor
/// ratio by turn (answercache before the floor in the round, and after it): the gap between the
/// two is what reading second is worth.
fn paired_warm(_: &mut Criterion) {
    let rt = workload::runtime();
    let accesses: usize = std::env::var("ANSWERCACHE_BENCH_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    println!(
        "warm_hit_paired: {accesses} triples per size, in all six orders in turn; {}",
        workload::machine()
    );
    println!("| size | answercache median | floor median | cacache median | vs floor (median) | vs cacache (median) | answercache mean | floor mean | cacache mean | read on the caller's thread | vs floor, answercache read first / second |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &workload::SIZES {
        let keys = workload::keys(N, 30 + size as u64);
        let values: Vec<Arc<[u8]>> = workload::values(Kind::ChatJson, size, N, 4);
        let seq = workload::zipf_sequence(N, SEQ, 11);
        let dir = workload::bench_dir("warm-paired");
        let cacache_dir = workload::bench_dir("warm-paired-cacache");
        let cacache_keys: Vec<String> = keys
            .iter()
            .map(|k| String::from_utf8(k.clone()).unwrap())
            .collect();
        let mut times: [Vec<Duration>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        // [answercache read before the floor, after it][answercache, floor]
        let mut by_turn: [[Vec<Duration>; 2]; 2] = Default::default();
        let mut inline = (0, 0);
        rt.block_on(async {
            let cache = open_warm_only(dir.path()).await;
            workload::fill(&cache, &keys, &values).await;
            for (k, v) in cacache_keys.iter().zip(&values) {
                cacache::write(cacache_dir.path(), k, &v[..]).await.unwrap();
            }
            let layout = Layout::new(cache.root());
            let paths: Vec<PathBuf> = keys
                .iter()
                .map(|k| layout.entry_path(&key_hash(k)))
                .collect();
            // One untimed round so every file is in the page cache.
            for j in 0..N {
                black_box(cache.get_bytes(&keys[j]).await.unwrap().unwrap());
                black_box(
                    cacache::read(cacache_dir.path(), &cacache_keys[j])
                        .await
                        .unwrap(),
                );
            }
            for a in 0..accesses {
                let j = seq[a % SEQ];
                let order = ORDERS[a % ORDERS.len()];
                let cache_first =
                    order.iter().position(|&w| w == 0) < order.iter().position(|&w| w == 1);
                for which in order {
                    let t = Instant::now();
                    match which {
                        0 => {
                            black_box(cache.get_bytes(&keys[j]).await.unwrap().unwrap());
                        }
                        1 => {
                            black_box(floor_read(&paths[j], &keys[j]));
                        }
                        _ => {
                            black_box(
                                cacache::read(cacache_dir.path(), &cacache_keys[j])
                                    .await
                                    .unwrap(),
                            );
                        }
                    }
                    let took = t.elapsed();
                    times[which].push(took);
                    if which < 2 {
                        by_turn[usize::from(!cache_first)][which].push(took);
                    }
                }
            }
            let s = cache.stats();
            assert_eq!(s.misses, 0);
            inline = (s.inline_reads, s.warm_hits);
            cache.close().await.unwrap();
        });
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
        let means: Vec<Duration> = times.iter().map(|v| mean(v)).collect();
        let medians: Vec<Duration> = times
            .iter_mut()
            .map(|v| {
                v.sort_unstable();
                v[v.len() / 2]
            })
            .collect();
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let median = |v: &mut Vec<Duration>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let [[a_first, f_second], [a_second, f_first]] = &mut by_turn;
        let turn_ratios = (
            ratio(median(a_first), median(f_second)),
            ratio(median(a_second), median(f_first)),
        );
        println!(
            "| {} | {:.1?} | {:.1?} | {:.1?} | {:.2}x | {:.2}x | {:.1?} | {:.1?} | {:.1?} | {} of {} | {:.2}x / {:.2}x |",
            workload::size_label(size),
            medians[0],
            medians[1],
            medians[2],
            ratio(medians[0], medians[1]),
            ratio(medians[0], medians[2]),
            means[0],
            means[1],
            means[2],
            inline.0,
            inline.1,
            turn_ratios.0,
            turn_ratios.1,
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = paired_warm, bench_warm, bench_warm_promote, bench_inflate_steps
}
criterion_main!(benches);
