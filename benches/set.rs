//! `set` costs:
//! - write-behind latency: how long `set_bytes` takes to return while the write queue has room
//!   (sets are timed in bursts of at most [`BURST`]; the queue is drained, untimed, between
//!   bursts), against `foyer::HybridCache::insert` (also returns before the disk write);
//! - write-through throughput, durable (`Durability::Fsync`) and not (`NoSync`), one `set` at a
//!   time, against the raw loop a program would write itself on the same disk: create a temp
//!   file, write the value, (fdatasync,) rename it into a two-level fan-out directory, (fsync the
//!   directory); and against `cacache::write` (which never fsyncs: compare it with NoSync).
//!
//! Keys cycle over [`KEYS`] per size, so files are replaced, never accumulated. Write-through
//! is measured in steady state: an untimed first pass writes every key once, so the two-level
//! fan-out directories exist (the first write into a new directory also fsyncs its parents:
//! two more directory fsyncs, by design) and every timed write replaces a file, for answercache
//! and the raw loop alike.
//!
//! Run: `cargo bench --bench set -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::{Durability, TieredCache, WritePolicy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy,
};
use workload::Kind;

/// Distinct keys per size (cycled).
const KEYS: usize = 1024;
/// Longest burst of write-behind sets timed before the queue is drained.
const BURST: u64 = 256;

async fn open(dir: &Path, policy: WritePolicy, durability: Durability) -> TieredCache {
    open_compressing(dir, policy, durability, true).await
}

/// [`open`] with `compress_in_background` as given (`false`: every entry compressed before
/// its write, the behaviour before session 19).
async fn open_compressing(
    dir: &Path,
    policy: WritePolicy,
    durability: Durability,
    in_background: bool,
) -> TieredCache {
    TieredCache::builder(dir)
        .min_free_bytes(0)
        .write_policy(policy)
        .durability(durability)
        .compress_in_background(in_background)
        .build()
        .await
        .unwrap()
}

/// Waits (untimed) until `cache` compressed every entry it wrote stored; returns how long
/// that took.
async fn compacted(cache: &TieredCache) -> Duration {
    let t = Instant::now();
    while cache.stats().warm_compaction_backlog > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}

/// The raw loop: temp file + write (+ fdatasync) + rename (+ directory fsync), no cache logic,
/// no compression, no checksum.
struct RawWriter {
    tmp: PathBuf,
    dest: Vec<PathBuf>,
    n: u64,
    /// Replace a file by exchanging it with the new one, then delete it (as answercache does
    /// without fsync; see [`paired_drain`]).
    exchange: bool,
}

impl RawWriter {
    fn new(root: &Path, keys: &[Vec<u8>]) -> Self {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let dest = keys
            .iter()
            .map(|k| {
                let hex = blake3::hash(k).to_hex().to_string();
                let dir = root.join("v2").join(&hex[..2]);
                std::fs::create_dir_all(&dir).unwrap();
                dir.join(hex)
            })
            .collect();
        RawWriter {
            tmp,
            dest,
            n: 0,
            exchange: false,
        }
    }

    fn write(&mut self, i: usize, value: &[u8], sync: bool) {
        self.n += 1;
        let tmp = self.tmp.join(format!("{}.tmp", self.n));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .unwrap();
        f.write_all(value).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
        drop(f);
        let dest = &self.dest[i];
        if self.exchange {
            match rustix::fs::renameat_with(
                rustix::fs::CWD,
                &tmp,
                rustix::fs::CWD,
                dest,
                rustix::fs::RenameFlags::EXCHANGE,
            ) {
                // `tmp` names the replaced file now.
                Ok(()) => std::fs::remove_file(&tmp).unwrap(),
                // Nothing to replace (the first round).
                Err(_) => std::fs::rename(&tmp, dest).unwrap(),
            }
            return;
        }
        std::fs::rename(&tmp, dest).unwrap();
        if sync {
            if let Some(dir) = dest.parent() {
                std::fs::File::open(dir).unwrap().sync_all().unwrap();
            }
        }
    }
}

/// `a[j] / b[j]` for each pair `j` (times measured next to each other), as "median [first
/// quartile-third quartile]": the ratio of times, so above 1 is slower than `b`.
fn paired_ratios(a: &[Duration], b: &[Duration]) -> String {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
        .collect();
    r.sort_unstable_by(f64::total_cmp);
    let at = |q: usize| r[(r.len() - 1) * q / 4];
    format!("{:.2}x [{:.2}-{:.2}]", at(2), at(1), at(3))
}

/// One raw write (see [`RawWriter`]) through the blocking pool, timed from the hand-off to the
/// wake-up after it: the writer moves to the blocking thread and back, as the value does.
async fn through_pool(
    mut w: RawWriter,
    i: usize,
    value: Arc<[u8]>,
    sync: bool,
) -> (RawWriter, Duration) {
    let t = Instant::now();
    let w = tokio::task::spawn_blocking(move || {
        w.write(i, &value, sync);
        w
    })
    .await
    .unwrap();
    (w, t.elapsed())
}

async fn open_foyer(dir: &Path) -> HybridCache<Vec<u8>, Vec<u8>> {
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(512 << 20)
        .build()
        .unwrap();
    HybridCacheBuilder::new()
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(64)
        .storage()
        .with_engine_config(BlockEngineConfig::new(device))
        .build()
        .await
        .unwrap()
}

fn bench_write_behind(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("set_write_behind");
    group.throughput(Throughput::Elements(1));
    for size in [1 << 10, 4 << 10, 64 << 10] {
        let keys = workload::keys(KEYS, 30 + size as u64);
        let values = workload::values(Kind::ChatJson, size, KEYS, 4);
        let label = workload::size_label(size);
        let dir = workload::bench_dir("set-wb");
        let cache = rt.block_on(open(
            dir.path(),
            WritePolicy::WriteBehind,
            Durability::NoSync,
        ));
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("answercache_nosync", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let burst = left.min(BURST);
                        let start = Instant::now();
                        for _ in 0..burst {
                            let i = next % KEYS;
                            next += 1;
                            cache.set_bytes(&keys[i], &values[i]).await.unwrap();
                        }
                        total += start.elapsed();
                        left -= burst;
                        cache.flush().await.unwrap();
                    }
                    total
                })
            })
        });
        rt.block_on(cache.close()).unwrap();

        let foyer_dir = workload::bench_dir("set-foyer");
        let foyer = rt.block_on(open_foyer(foyer_dir.path()));
        let owned: Vec<(Vec<u8>, Vec<u8>)> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect();
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("foyer_insert", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let burst = left.min(BURST);
                        // foyer takes owned key and value: the copy out of the caller's
                        // bytes is timed, as answercache's copy into its `Arc<[u8]>` is.
                        let start = Instant::now();
                        for _ in 0..burst {
                            let i = next % KEYS;
                            next += 1;
                            let (k, v) = &owned[i];
                            std::hint::black_box(foyer.insert(k.clone(), v.clone()));
                        }
                        total += start.elapsed();
                        left -= burst;
                        foyer.storage().wait().await;
                    }
                    total
                })
            })
        });
        rt.block_on(foyer.close()).unwrap();
    }
    group.finish();
}

fn bench_write_through(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("set_write_through");
    group.throughput(Throughput::Elements(1));
    for size in [4 << 10, 64 << 10] {
        let keys = workload::keys(KEYS, 40 + size as u64);
        let values: Vec<Arc<[u8]>> = workload::values(Kind::ChatJson, size, KEYS, 5);
        let label = workload::size_label(size);
        for (durability, sync, name) in [
            (Durability::Fsync, true, "fsync"),
            (Durability::NoSync, false, "nosync"),
        ] {
            let dir = workload::bench_dir("set-wt");
            let cache = rt.block_on(async {
                let cache = open(dir.path(), WritePolicy::WriteThrough, durability).await;
                // Steady state: one untimed pass writes every key once, so the fan-out
                // directories exist (a write into a new one also fsyncs its parents) and each
                // timed write replaces a file, as in the raw loop below.
                for (k, v) in keys.iter().zip(&values) {
                    cache.set_bytes(k, v).await.unwrap();
                }
                cache
            });
            let mut next = 0usize;
            group.bench_function(
                BenchmarkId::new(format!("answercache_{name}"), &label),
                |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let i = next % KEYS;
                                next += 1;
                                cache.set_bytes(&keys[i], &values[i]).await.unwrap();
                            }
                            start.elapsed()
                        })
                    })
                },
            );
            let s = cache.stats();
            assert_eq!(s.writes_failed, 0);
            rt.block_on(cache.close()).unwrap();

            let raw_dir = workload::bench_dir("set-raw");
            let mut raw = RawWriter::new(raw_dir.path(), &keys);
            for (i, v) in values.iter().enumerate() {
                raw.write(i, v, sync);
            }
            let mut next = 0usize;
            group.bench_function(BenchmarkId::new(format!("raw_loop_{name}"), &label), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let i = next % KEYS;
                        next += 1;
                        raw.write(i, &values[i], sync);
                    }
                    start.elapsed()
                })
            });
        }
        let cacache_dir = workload::bench_dir("set-cacache");
        let cacache_keys: Vec<String> = keys
            .iter()
            .map(|k| String::from_utf8(k.clone()).unwrap())
            .collect();
        rt.block_on(async {
            for (k, v) in cacache_keys.iter().zip(&values) {
                cacache::write(cacache_dir.path(), k, &v[..]).await.unwrap();
            }
        });
        let mut next = 0usize;
        let mut buf = vec![0u8; size];
        group.bench_function(BenchmarkId::new("cacache_write_nosync", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let i = next % KEYS;
                        next += 1;
                        // cacache is content-addressed: a value it already holds is not
                        // written again. Stamp each write so that every one writes content.
                        buf.copy_from_slice(&values[i]);
                        buf[..8].copy_from_slice(&(next as u64).to_le_bytes());
                        cacache::write(cacache_dir.path(), &cacache_keys[i], &buf)
                            .await
                            .unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// Where a row's timed calls are awaited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// On the runtime's `block_on` thread (the bench's main thread, not a worker): every
    /// task the cache wakes to serve the call needs a worker woken, and the caller needs
    /// its thread woken back.
    BlockOn,
    /// In a task on a worker thread, as a service's request handler awaits them: tasks the
    /// call wakes run on the same worker.
    Worker,
}

impl Caller {
    fn label(self) -> &'static str {
        match self {
            Caller::BlockOn => "block_on",
            Caller::Worker => "worker task",
        }
    }
}

/// The times of one row of [`paired_write_through`], in pair order.
#[derive(Default)]
struct PairTimes {
    ours: Vec<Duration>,
    raw: Vec<Duration>,
    hop: Vec<Duration>,
    eager: Vec<Duration>,
    enc: Vec<Duration>,
}

/// One row of [`paired_write_through`]: opens the two caches in `dir` and `eager_dir`, writes
/// every key once (untimed) with each contender, then times `pairs` alternating pairs.
#[allow(clippy::too_many_arguments)]
async fn paired_row(
    dir: PathBuf,
    eager_dir: PathBuf,
    mut raw: RawWriter,
    mut hop: RawWriter,
    keys: Arc<Vec<Vec<u8>>>,
    values: Arc<Vec<Arc<[u8]>>>,
    durability: Durability,
    sync: bool,
    pairs: usize,
) -> PairTimes {
    let mut t = PairTimes::default();
    let cache = open(&dir, WritePolicy::WriteThrough, durability).await;
    let eager = open_compressing(&eager_dir, WritePolicy::WriteThrough, durability, false).await;
    for (i, (k, v)) in keys.iter().zip(values.iter()).enumerate() {
        cache.set_bytes(k, v).await.unwrap();
        eager.set_bytes(k, v).await.unwrap();
        raw.write(i, v, sync);
        hop = through_pool(hop, i, v.clone(), sync).await.0;
    }
    compacted(&cache).await;
    for j in 0..pairs {
        let i = j % KEYS;
        // ABBA order: whichever goes second may pay for the journal commit of the first, so
        // each goes first half of the time.
        if j % 2 == 1 {
            let s = Instant::now();
            raw.write(i, &values[i], sync);
            t.raw.push(s.elapsed());
            let (w, took) = through_pool(hop, i, values[i].clone(), sync).await;
            hop = w;
            t.hop.push(took);
        }
        let s = Instant::now();
        cache.set_bytes(&keys[i], &values[i]).await.unwrap();
        t.ours.push(s.elapsed());
        let s = Instant::now();
        eager.set_bytes(&keys[i], &values[i]).await.unwrap();
        t.eager.push(s.elapsed());
        if j % 2 == 0 {
            let (w, took) = through_pool(hop, i, values[i].clone(), sync).await;
            hop = w;
            t.hop.push(took);
            let s = Instant::now();
            raw.write(i, &values[i], sync);
            t.raw.push(s.elapsed());
        }
        let s = Instant::now();
        std::hint::black_box(
            answercache::warm::format::encode(
                &keys[i],
                &values[i],
                answercache::warm::format::EntryMeta::default(),
                answercache::defaults::DEFAULT_COMPRESSION_LEVEL,
            )
            .unwrap(),
        );
        t.enc.push(s.elapsed());
    }
    cache.close().await.unwrap();
    eager.close().await.unwrap();
    t
}

/// Write-through against the raw loop, *paired*: one answercache `set` and one raw write, in
/// alternation (ABBA order), so that both see the same disk (fsync latency on a shared disk swings by 10x
/// within seconds, which makes back-to-back criterion runs of the two incomparable). Also
/// times `format::encode` (gzip level 3 + blake3), the CPU work the raw loop does not do, and,
/// in the same rounds, a second cache with `compress_in_background(false)` (compressed before
/// its write). Printed as medians and means; the ratio is raw time / answercache time (=
/// answercache throughput relative to the raw loop). The default cache compresses in the
/// background: under this loop's writes, which never pause, one entry a second.
///
/// A third contender, in the same rounds: the raw loop run through `spawn_blocking` from the
/// same async context, on its own directory: what any async API pays for a blocking file
/// write (the hand-off to a blocking thread and the wake-up after it), with no cache logic.
fn paired_write_through(_: &mut Criterion) {
    let rt = workload::runtime();
    let pairs: usize = std::env::var("ANSWERCACHE_BENCH_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
        .max(1);
    println!(
        "set_write_through_paired: {pairs} alternating pairs per row; {}; {}",
        workload::machine(),
        workload::disk()
    );
    println!("| size | durability | caller | answercache median | raw loop median | answercache mean | raw loop mean | throughput ratio (median) | encode (gzip+blake3) median | compressing before the write: median, ratio | raw loop via spawn_blocking: median, answercache's throughput ratio to it | per-pair time ratio answercache / raw loop: median [quartiles] | per-pair time ratio answercache / raw via spawn_blocking |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for size in [4 << 10, 64 << 10] {
        let keys = Arc::new(workload::keys(KEYS, 45 + size as u64));
        let values: Arc<Vec<Arc<[u8]>>> =
            Arc::new(workload::values(Kind::ChatJson, size, KEYS, 11));
        for (durability, sync, name) in [
            (Durability::Fsync, true, "fsync"),
            (Durability::NoSync, false, "nosync"),
        ] {
            for caller in [Caller::BlockOn, Caller::Worker] {
                let dir = workload::bench_dir("set-paired");
                let eager_dir = workload::bench_dir("set-paired-eager");
                let raw_dir = workload::bench_dir("set-paired-raw");
                let hop_dir = workload::bench_dir("set-paired-raw-hop");
                let row = paired_row(
                    dir.path().to_owned(),
                    eager_dir.path().to_owned(),
                    RawWriter::new(raw_dir.path(), &keys),
                    RawWriter::new(hop_dir.path(), &keys),
                    keys.clone(),
                    values.clone(),
                    durability,
                    sync,
                    pairs,
                );
                let mut t = match caller {
                    Caller::BlockOn => rt.block_on(row),
                    Caller::Worker => rt.block_on(async { tokio::spawn(row).await.unwrap() }),
                };
                let median = |v: &mut Vec<Duration>| {
                    v.sort_unstable();
                    v[v.len() / 2]
                };
                let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
                // The paired statistic: each pair's two writes ran next to each other, so the
                // disk's swings (seconds long) cancel in their ratio, not in a ratio of
                // medians.
                let (pr, pq) = (
                    paired_ratios(&t.ours, &t.raw),
                    paired_ratios(&t.ours, &t.hop),
                );
                let (mo, mt) = (mean(&t.ours), mean(&t.raw));
                let (o, r, e) = (median(&mut t.ours), median(&mut t.raw), median(&mut t.enc));
                let g = median(&mut t.eager);
                let h = median(&mut t.hop);
                println!(
                    "| {} | {name} | {} | {o:.1?} | {r:.1?} | {mo:.1?} | {mt:.1?} | {:.2}x | {e:.1?} | {g:.1?}, {:.2}x | {h:.1?}, {:.2}x | {pr} | {pq} |",
                    workload::size_label(size),
                    caller.label(),
                    r.as_secs_f64() / o.as_secs_f64(),
                    r.as_secs_f64() / g.as_secs_f64(),
                    h.as_secs_f64() / o.as_secs_f64()
                );
            }
        }
    }
}

/// Write-behind drain throughput, *paired*: rounds alternate (ABAB...) between answercache
/// (`set_bytes` of a batch, write-behind, NoSync, then `flush`: the time until the batch is on
/// disk) and the raw no-sync loop writing the same values (uncompressed), and the raw loop
/// writing values already encoded by `format::encode` (the same bytes answercache writes, with
/// the encoding timed in: the floor for a compressing cache), and a second cache with
/// `compress_in_background(false)`. Printed as entries per second (median over rounds), and
/// each round's ratio (median and quartiles over rounds). The default cache compresses the
/// batch in the background after its `flush`: each round waits (untimed) for that before the
/// next contender runs, so that it never runs beside another contender, and prints how long it
/// took (the deferred cost). Every contender starts after a `sync` (untimed), and every other
/// round runs them in reverse order (before session 21 the order was fixed, with answercache
/// first, and no `sync`: it could leave its writeback to the raw loop after it).
///
/// The last contender is the raw loop replacing each file by an exchange
/// (`renameat2(RENAME_EXCHANGE)`) and deleting the older file after, as answercache does
/// without fsync since session 26 (ext4's `auto_da_alloc` starts writing a file back inside a
/// rename over an existing one, not inside an exchange): the same loop without that one
/// write-back, printed beside the target's floor so that the gain is not read as the cache's
/// own.
fn paired_drain(_: &mut Criterion) {
    let rt = workload::runtime();
    let rounds: usize = std::env::var("ANSWERCACHE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    const BATCH: usize = 512;
    println!(
        "set_drain_paired: {rounds} rounds of {BATCH} entries per contender; {}; {}",
        workload::machine(),
        workload::disk()
    );
    println!("| size | answercache drain | raw loop (no compression) | raw loop + encode | answercache / raw | answercache / (raw + encode) | then compressed in the background, per batch | compressing before the write: drain, / raw | per-round throughput ratio answercache / raw: median [quartiles] | raw loop replacing by exchange, then deleting; per-round ratio answercache / it |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for size in [4 << 10, 64 << 10] {
        let keys = workload::keys(BATCH, 77 + size as u64);
        let values: Vec<Arc<[u8]>> = workload::values(Kind::ChatJson, size, BATCH, 13);
        let dir = workload::bench_dir("set-drain");
        let eager_dir = workload::bench_dir("set-drain-eager");
        let raw_dir = workload::bench_dir("set-drain-raw");
        let raw_enc_dir = workload::bench_dir("set-drain-raw-enc");
        let raw_exchange_dir = workload::bench_dir("set-drain-raw-exchange");
        let mut raw = RawWriter::new(raw_dir.path(), &keys);
        let mut raw_enc = RawWriter::new(raw_enc_dir.path(), &keys);
        let mut raw_exchange = RawWriter {
            exchange: true,
            ..RawWriter::new(raw_exchange_dir.path(), &keys)
        };
        let (mut ours, mut theirs, mut theirs_enc) = (Vec::new(), Vec::new(), Vec::new());
        let mut theirs_exchange = Vec::new();
        let (mut later, mut eager_times) = (Vec::new(), Vec::new());
        rt.block_on(async {
            let drain_cache = |dir: &Path, in_background: bool| {
                TieredCache::builder(dir)
                    .min_free_bytes(0)
                    .hot_capacity_bytes(1 << 30)
                    .write_queue_bytes(1 << 30)
                    .durability(Durability::NoSync)
                    .compress_in_background(in_background)
                    .build()
            };
            let cache = drain_cache(dir.path(), true).await.unwrap();
            let eager = drain_cache(eager_dir.path(), false).await.unwrap();
            for round in 0..rounds + 1 {
                // Round 0 is a warm-up: every file and directory exists afterwards.
                let (mut a, mut l, mut g, mut b, mut c, mut u) = Default::default();
                // Every other round in reverse order, so that no contender always runs right
                // after the same other one, and each starts with no dirty pages left by the
                // one before (`sync`, untimed): a no-sync write's cost depends on the
                // writeback it finds.
                let order: [u8; 5] = if round % 2 == 0 {
                    [0, 1, 2, 3, 4]
                } else {
                    [4, 3, 2, 1, 0]
                };
                for who in order {
                    rustix::fs::sync();
                    let t = Instant::now();
                    match who {
                        0 => {
                            for (k, v) in keys.iter().zip(&values) {
                                cache.set_bytes(k, v).await.unwrap();
                            }
                            cache.flush().await.unwrap();
                            a = t.elapsed();
                            l = compacted(&cache).await;
                        }
                        1 => {
                            for (k, v) in keys.iter().zip(&values) {
                                eager.set_bytes(k, v).await.unwrap();
                            }
                            eager.flush().await.unwrap();
                            g = t.elapsed();
                        }
                        2 => {
                            for (i, v) in values.iter().enumerate() {
                                raw.write(i, v, false);
                            }
                            b = t.elapsed();
                        }
                        4 => {
                            for (i, v) in values.iter().enumerate() {
                                raw_exchange.write(i, v, false);
                            }
                            u = t.elapsed();
                        }
                        _ => {
                            for (i, (k, v)) in keys.iter().zip(&values).enumerate() {
                                let file = answercache::warm::format::encode(
                                    k,
                                    v,
                                    answercache::warm::format::EntryMeta::default(),
                                    answercache::defaults::DEFAULT_COMPRESSION_LEVEL,
                                )
                                .unwrap();
                                raw_enc.write(i, &file, false);
                            }
                            c = t.elapsed();
                        }
                    }
                }
                if round > 0 {
                    ours.push(a);
                    theirs.push(b);
                    theirs_enc.push(c);
                    theirs_exchange.push(u);
                    later.push(l);
                    eager_times.push(g);
                }
            }
            cache.close().await.unwrap();
            eager.close().await.unwrap();
        });
        // Each round's ratio (its contenders ran within seconds of each other): the raw
        // loop's time over answercache's, so above 1 is answercache draining faster.
        let per_round = paired_ratios(&theirs, &ours);
        let per_round_exchange = paired_ratios(&theirs_exchange, &ours);
        let per_sec = |v: &mut Vec<Duration>| {
            v.sort_unstable();
            BATCH as f64 / v[v.len() / 2].as_secs_f64()
        };
        let (o, t, te, g) = (
            per_sec(&mut ours),
            per_sec(&mut theirs),
            per_sec(&mut theirs_enc),
            per_sec(&mut eager_times),
        );
        let tu = per_sec(&mut theirs_exchange);
        later.sort_unstable();
        println!(
            "| {} | {o:.0}/s | {t:.0}/s | {te:.0}/s | {:.2}x | {:.2}x | {:.0?} | {g:.0}/s, {:.2}x | {per_round} | {tu:.0}/s, {per_round_exchange} |",
            workload::size_label(size),
            o / t,
            o / te,
            later[later.len() / 2],
            g / t
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = paired_drain, paired_write_through, bench_write_behind, bench_write_through
}
criterion_main!(benches);
