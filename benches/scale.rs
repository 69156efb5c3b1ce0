//! Scale: warm-hit latency and `open` time with 1,000, 100,000 (and optionally 1,000,000)
//! entries on disk. The cost per get must stay flat and `open` must not grow with the entry
//! count (the index scan runs in the background after `open` returns; its duration is printed
//! separately, it is not part of `open`). Warm-hit latency is a criterion bench; `open` time and
//! scan time are printed (`scale/<N>: open ...`), 10 opens each.
//!
//! The fixture is written directly in the entry format (`answercache::warm::format::encode`, the
//! same bytes the cache writes) by two threads, 1 KiB chat-completion values, and kept between
//! runs under `$ANSWERCACHE_BENCH_DIR` (default: the system temp dir) as
//! `answercache-bench-scale-<N>/` with a `complete` marker, because 1M files take minutes to make.
//!
//! - `ANSWERCACHE_BENCH_SCALE=1000,100000` (default) picks the sizes; add `1000000` (or set
//!   `ANSWERCACHE_BENCH_SCALE_1M=1`) for the million-entry point: about 4 GiB of 4 KiB blocks and
//!   several minutes to build on a 2-core machine.
//! - Gets draw keys uniformly over all N entries (a Zipf draw would keep touching a few hot
//!   files and hide the directory-lookup cost that grows with N). The hot budget is 1 byte, so
//!   every get reads its file.
//!
//! Run: `cargo bench --bench scale -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use answercache::warm::format::{self, EntryMeta};
use answercache::warm::layout::{key_hash, Layout};
use answercache::TieredCache;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use workload::Kind;

const SEQ: usize = 1 << 16;
/// Opens timed per size.
const OPENS: usize = 10;
const VALUE_SIZE: usize = 1 << 10;
/// Distinct values the fixture cycles through (the keys are all distinct).
const VALUE_POOL: usize = 64;

fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = std::env::var("ANSWERCACHE_BENCH_SCALE")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000]);
    if std::env::var_os("ANSWERCACHE_BENCH_SCALE_1M").is_some() && !v.contains(&1_000_000) {
        v.push(1_000_000);
    }
    v
}

fn fixture_dir(n: usize) -> PathBuf {
    std::env::var_os("ANSWERCACHE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("answercache-bench-scale-{n}"))
}

/// Writes (or reuses) a cache directory holding `n` entries; returns its canonical root.
fn fixture(n: usize) -> PathBuf {
    let root = fixture_dir(n);
    let marker = root.join("complete");
    if marker.exists() {
        return root.canonicalize().unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let started = Instant::now();
    let values: Vec<Vec<u8>> = (0..VALUE_POOL as u64)
        .map(|i| workload::value(Kind::ChatJson, VALUE_SIZE, 900 + i))
        .collect();
    let now = answercache::clock::system_now_ms();
    let threads = 2;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (root, values) = (&root, &values);
            s.spawn(move || {
                let layout = Layout::new(root);
                let mut dirs = std::collections::HashSet::new();
                for i in (t..n).step_by(threads) {
                    let key = workload::key(i as u64);
                    let hash = key_hash(key.as_bytes());
                    let meta = EntryMeta {
                        created_ms: now,
                        expires_ms: 0,
                        cost: 0,
                        encoding: Default::default(),
                    };
                    let file =
                        format::encode(key.as_bytes(), &values[i % VALUE_POOL], meta, 3).unwrap();
                    let dir = layout.entry_dir(&hash);
                    if dirs.insert(dir.clone()) {
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(&dir)
                            .unwrap();
                    }
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(layout.entry_path(&hash))
                        .unwrap();
                    f.write_all(&file).unwrap();
                }
            });
        }
    });
    std::fs::write(&marker, n.to_string()).unwrap();
    println!(
        "scale: fixture of {n} entries written in {:.1?} at {}",
        started.elapsed(),
        root.display()
    );
    root
}

async fn open(root: &Path) -> TieredCache {
    TieredCache::builder(root)
        .min_free_bytes(0)
        .hot_capacity_bytes(1)
        // Never let the startup scan evict part of the fixture.
        .warm_capacity_bytes(1 << 40)
        .build()
        .await
        .unwrap()
}

fn bench_scale(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("scale");
    for n in sizes() {
        let root = fixture(n);
        let label = n.to_string();

        // How long the background scan takes to index everything (printed, not benchmarked).
        let (cache, scan) = rt.block_on(async {
            let cache = open(&root).await;
            let start = Instant::now();
            while !cache.stats().warm_index_complete {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (cache, start.elapsed())
        });
        let s = cache.stats();
        println!(
            "scale/{n}: background index scan took {scan:.1?} (warm_entries={}, warm_bytes={})",
            s.warm_entries, s.warm_bytes
        );
        assert_eq!(s.warm_entries, n as u64);

        let seq = workload::uniform_sequence(n, SEQ, 13);
        let keys: Vec<Vec<u8>> = {
            let mut distinct: Vec<usize> = seq.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let mut keys = vec![Vec::new(); n];
            for i in distinct {
                keys[i] = workload::key(i as u64).into_bytes();
            }
            keys
        };
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("warm_get_bytes", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        black_box(cache.get_bytes(&keys[seq[i % SEQ]]).await.unwrap().unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(cache.close()).unwrap();

        // `open` alone, OPENS times, by hand: criterion plans iteration counts from the timed
        // part only, and the untimed `close` waits for the background scan (seconds at 1M).
        let mut opens: Vec<Duration> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..OPENS {
                let start = Instant::now();
                let cache = open(&root).await;
                v.push(start.elapsed());
                cache.close().await.unwrap();
            }
            v
        });
        opens.sort_unstable();
        println!(
            "scale/{n}: open (build().await) min {:.2?} median {:.2?} max {:.2?} over {OPENS} opens",
            opens[0],
            opens[OPENS / 2],
            opens[OPENS - 1]
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = bench_scale
}
criterion_main!(benches);
