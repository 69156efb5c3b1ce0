//! The shared tier (feature `redis`) next to the local tiers: what a hit costs when the answer
//! is only in Redis, and what a miss costs when the shared tier is asked too, against a warm
//! hit and a hot hit of the same keys and values, **in the same run**, over a throwaway Redis
//! (or Valkey) on a unix socket.
//!
//! Contenders, each a `get_bytes` of the same key `j` (absent keys for the misses):
//! - **hot hit**: a replica whose hot tier holds every key;
//! - **warm hit**: a replica with a 1-byte hot budget (nothing is promoted): every get reads
//!   its entry file (page cache warm), verifies and inflates it; Redis is not asked;
//! - **shared hit**: a *fresh* replica (empty hot and warm tiers, its own directory) reading
//!   each key once: hot miss, warm miss (index lookup), `GET` on Redis, verify, inflate,
//!   promote to hot and queue the warm write. A replica is replaced (untimed) once it has read
//!   every key, so every timed get is a first read;
//! - **shared miss**: the fresh replica asked for a key nobody set: hot, warm and a `GET`
//!   that answers nil;
//! - **local miss**: a replica without a shared tier asked for the same absent key: the
//!   shared miss minus this is the shared tier's overhead on a miss.
//!
//! Every replica has the same shared settings (one server, one prefix per size, default
//! 200 ms timeout) except the local-miss one. Values: seeded LLM-like markdown text from
//! `answercache::workload` at exactly 1, 4, 16 and 64 KiB; keys `<model>:<blake3 hex>`.
//!
//! `paired_shared` (printed first) rotates the five contenders per access, so that CPU and
//! scheduler swings hit them alike, and prints medians, p99s and ratios; the criterion groups
//! after it measure each contender alone. Without a `redis-server` / `valkey-server` on
//! `PATH` (or `ANSWERCACHE_REDIS_SERVER`) the bench prints why and exits 0.
//!
//! `shared_write_cpu` (printed before them) measures the other side: process CPU per `set`
//! until it is on disk and on the server, against a replica without a shared tier (with
//! encode once, the value is compressed once for both). `ANSWERCACHE_BENCH_WRITES_ONLY=1`
//! stops after it.
//!
//! Run: `cargo bench --features redis --bench shared -- --warm-up-time 1 --measurement-time 2`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::{BreakerState, Durability, SharedConfig, TieredCache};
use criterion::{BenchmarkId, Criterion, Throughput};
use workload::Kind;

/// Keys per size (each set once, read as shared hits once per fresh replica).
const N: usize = 500;
/// Fresh replicas per size in the paired loop: `N * ROUNDS` samples per contender.
const ROUNDS: usize = 4;

// ---- the throwaway server ----

/// A `redis-server` (or `valkey-server`) on a unix socket in a temporary directory, no
/// persistence; killed on drop.
struct Server {
    child: Child,
    version: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// `ANSWERCACHE_REDIS_SERVER`, else `redis-server`, else `valkey-server` on `PATH`.
    fn find() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("ANSWERCACHE_REDIS_SERVER").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        ["redis-server", "valkey-server"]
            .iter()
            .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
            .find(|p| p.is_file())
    }

    fn start(bin: &Path) -> Server {
        let out = Command::new(bin).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dir = tempfile::Builder::new()
            .prefix("answercache-bench-redis-")
            .tempdir()
            .unwrap();
        let child = Command::new(bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(dir.path().join("r.sock"))
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            version,
            dir,
        };
        let start = Instant::now();
        while !server.ping() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("r.sock")
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    fn ping(&self) -> bool {
        let attempt = || -> std::io::Result<bool> {
            let mut s = UnixStream::connect(self.socket())?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
            let mut reply = [0u8; 7];
            s.read_exact(&mut reply)?;
            Ok(&reply == b"+PONG\r\n")
        };
        attempt().unwrap_or(false)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the replicas ----

/// The replicas' shared settings: the defaults (200 ms timeout), no namespace sync, and a
/// write queue that holds a whole fill (`N` values of 64 KiB; the default 8 MiB queue drops
/// what a fill sets faster than the server takes it, which a bench of reads must not lose).
fn shared_config(url: &str, prefix: &str) -> SharedConfig {
    SharedConfig::redis(url)
        .unwrap()
        .prefix(prefix)
        .namespace_sync_interval(Duration::ZERO)
        .write_queue_bytes(64 << 20)
}

/// A replica: a cache and its own directory.
struct Replica {
    cache: TieredCache,
    // Removed after the cache is closed (field order).
    _dir: tempfile::TempDir,
}

async fn replica(shared: Option<&SharedConfig>, hot_bytes: usize) -> Replica {
    let dir = workload::bench_dir("shared");
    let mut b = TieredCache::builder(dir.path())
        .min_free_bytes(0)
        .hot_capacity_bytes(hot_bytes)
        .durability(Durability::NoSync);
    if let Some(cfg) = shared {
        b = b.shared(cfg.clone());
    }
    let cache = b.build().await.unwrap();
    if shared.is_some() {
        let start = Instant::now();
        while cache.shared_state() != Some(BreakerState::Closed) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the shared tier never closed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Replica { cache, _dir: dir }
}

/// A fresh reader: hot and warm tiers empty, room in the hot tier for every key.
async fn fresh(cfg: &SharedConfig) -> Replica {
    replica(Some(cfg), 1 << 30).await
}

async fn retire(r: Replica) {
    r.cache.close().await.unwrap();
}

/// Waits until the `N` shared writes of a fill are on the server: `set` and `flush` queue
/// them and never wait for them.
async fn shared_writes_landed(cache: &TieredCache) {
    let start = Instant::now();
    loop {
        let s = cache.stats();
        if s.shared_writes_ok >= N as u64 && s.shared_queue_entries == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "shared writes did not land: ok={} dropped={} failed={}",
            s.shared_writes_ok,
            s.shared_writes_dropped,
            s.shared_writes_failed
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The fixture of one size: every replica but the fresh readers, filled.
struct Fixture {
    cfg: SharedConfig,
    keys: Vec<Vec<u8>>,
    absent: Vec<Vec<u8>>,
    values: Vec<Arc<[u8]>>,
    /// Every key on disk only (1-byte hot budget); also the writer of the shared entries.
    warm: Replica,
    /// Every key in memory.
    hot: Replica,
    /// No shared tier.
    local: Replica,
}

impl Fixture {
    async fn new(url: &str, size: usize) -> Fixture {
        let cfg = shared_config(url, &format!("bench-{}", workload::size_label(size)));
        let keys = workload::keys(N, 40 + size as u64);
        let absent = workload::keys(N, 50 + size as u64);
        let values = workload::values(Kind::Text, size, N, 5);
        let warm = replica(Some(&cfg), 1).await;
        workload::fill(&warm.cache, &keys, &values).await;
        shared_writes_landed(&warm.cache).await;
        let hot = replica(Some(&cfg), 1 << 30).await;
        workload::fill(&hot.cache, &keys, &values).await;
        shared_writes_landed(&hot.cache).await;
        let local = replica(None, 1 << 30).await;
        Fixture {
            cfg,
            keys,
            absent,
            values,
            warm,
            hot,
            local,
        }
    }

    async fn close(self) {
        for r in [self.warm, self.hot, self.local] {
            retire(r).await;
        }
    }
}

// ---- paired ----

/// p50, mean and p99 of a sample.
struct Summary {
    p50: Duration,
    mean: Duration,
    p99: Duration,
}

fn summary(v: &mut [Duration]) -> Summary {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Summary {
        p50: at(0.5),
        mean: v.iter().sum::<Duration>() / v.len() as u32,
        p99: at(0.99),
    }
}

const CONTENDERS: [&str; 5] = [
    "hot hit",
    "warm hit",
    "shared hit",
    "shared miss",
    "local miss",
];

fn paired_shared(server: &Server) {
    let rt = workload::runtime();
    println!(
        "shared_paired: {N} keys x {ROUNDS} fresh replicas per size, 5 contenders rotating per access; then {N} shared hits back to back on one more fresh replica; {}; {}",
        server.version,
        workload::machine()
    );
    let mut rows: Vec<(usize, Vec<Summary>, Summary)> = Vec::new();
    for &size in &workload::SIZES {
        let mut times: [Vec<Duration>; 5] = Default::default();
        let mut back_to_back = Vec::with_capacity(N);
        rt.block_on(async {
            let fx = Fixture::new(&server.url(), size).await;
            // An untimed pass: every entry file in the page cache, every value checked.
            for (j, k) in fx.keys.iter().enumerate() {
                assert_eq!(
                    fx.warm.cache.get_bytes(k).await.unwrap().unwrap(),
                    fx.values[j]
                );
                assert_eq!(
                    fx.hot.cache.get_bytes(k).await.unwrap().unwrap(),
                    fx.values[j]
                );
            }
            let (w0, h0) = (fx.warm.cache.stats(), fx.hot.cache.stats());
            let mut order: Vec<usize> = (0..N).collect();
            let mut rng = workload::Rng::new(17 + size as u64);
            let mut shared_hits = 0;
            for round in 0..ROUNDS {
                let reader = fresh(&fx.cfg).await;
                rng.shuffle(&mut order);
                for (a, &j) in order.iter().enumerate() {
                    let k = &fx.keys[j];
                    let absent = &fx.absent[j];
                    for c in 0..5 {
                        let which = (a + round + c) % 5;
                        let t = Instant::now();
                        let got = match which {
                            0 => fx.hot.cache.get_bytes(k).await.unwrap(),
                            1 => fx.warm.cache.get_bytes(k).await.unwrap(),
                            2 => reader.cache.get_bytes(k).await.unwrap(),
                            3 => reader.cache.get_bytes(absent).await.unwrap(),
                            _ => fx.local.cache.get_bytes(absent).await.unwrap(),
                        };
                        times[which].push(t.elapsed());
                        match which {
                            0..=2 => assert_eq!(got.as_deref(), Some(&fx.values[j][..])),
                            _ => assert!(got.is_none()),
                        }
                    }
                }
                let s = reader.cache.stats();
                assert_eq!(
                    (s.shared_hits, s.shared_misses, s.hot_hits, s.warm_hits),
                    (N as u64, N as u64, 0, 0),
                    "every read of the fresh replica went to Redis"
                );
                shared_hits += s.shared_hits;
                retire(reader).await;
            }
            let (w1, h1) = (fx.warm.cache.stats(), fx.hot.cache.stats());
            assert_eq!(w1.warm_hits - w0.warm_hits, (N * ROUNDS) as u64);
            assert_eq!(
                w1.shared_hits + w1.shared_misses,
                0,
                "warm hits never ask Redis"
            );
            assert_eq!(h1.hot_hits - h0.hot_hits, (N * ROUNDS) as u64);
            assert_eq!(shared_hits, (N * ROUNDS) as u64);
            // Back to back: what the criterion group measures (each hit's promotion and warm
            // write compete with the next hit instead of with other contenders).
            let reader = fresh(&fx.cfg).await;
            rng.shuffle(&mut order);
            for &j in &order {
                let t = Instant::now();
                let got = reader.cache.get_bytes(&fx.keys[j]).await.unwrap();
                back_to_back.push(t.elapsed());
                assert_eq!(got.as_deref(), Some(&fx.values[j][..]));
            }
            assert_eq!(reader.cache.stats().shared_hits, N as u64);
            retire(reader).await;
            fx.close().await;
        });
        let sums = times.iter_mut().map(|v| summary(v)).collect();
        rows.push((size, sums, summary(&mut back_to_back)));
    }
    println!("\np50 of each contender, paired:");
    println!("| size | hot hit | warm hit | shared hit | shared miss | local miss | shared hit / warm hit | shared hit / hot hit | shared miss - local miss |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (size, s, _) in &rows {
        let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "| {} | {:.1?} | {:.1?} | {:.1?} | {:.1?} | {:.1?} | {:.2}x | {:.0}x | {:.1?} |",
            workload::size_label(*size),
            s[0].p50,
            s[1].p50,
            s[2].p50,
            s[3].p50,
            s[4].p50,
            r(s[2].p50, s[1].p50),
            r(s[2].p50, s[0].p50),
            s[3].p50.saturating_sub(s[4].p50),
        );
    }
    println!(
        "\nmean / p99 of each contender, paired; then shared hits back to back (p50 / mean / p99):"
    );
    println!(
        "| size | {} | shared hit back to back |",
        CONTENDERS.join(" | ")
    );
    println!("|---|---|---|---|---|---|---|");
    for (size, s, b) in &rows {
        let cells: Vec<String> = s
            .iter()
            .map(|x| format!("{:.1?} / {:.1?}", x.mean, x.p99))
            .collect();
        println!(
            "| {} | {} | {:.1?} / {:.1?} / {:.1?} |",
            workload::size_label(*size),
            cells.join(" | "),
            b.p50,
            b.mean,
            b.p99
        );
    }
    println!();
}

// ---- criterion, each contender alone ----

fn bench_shared(c: &mut Criterion, server: &Server) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("shared");
    group.throughput(Throughput::Elements(1));
    for &size in &workload::SIZES {
        let label = workload::size_label(size);
        let fx = rt.block_on(Fixture::new(&server.url(), size));
        let seq = workload::zipf_sequence(N, 1 << 14, 12);
        group.bench_function(BenchmarkId::new("hot_hit", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &fx.keys[seq[i % seq.len()]];
                        black_box(fx.hot.cache.get_bytes(k).await.unwrap().unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("warm_hit", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &fx.keys[seq[i % seq.len()]];
                        black_box(fx.warm.cache.get_bytes(k).await.unwrap().unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("shared_hit", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    // First reads only: a fresh replica (untimed) every N gets.
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    while done < iters as usize {
                        let reader = fresh(&fx.cfg).await;
                        let batch = (iters as usize - done).min(N);
                        let start = Instant::now();
                        for j in 0..batch {
                            black_box(reader.cache.get_bytes(&fx.keys[j]).await.unwrap().unwrap());
                        }
                        total += start.elapsed();
                        assert_eq!(reader.cache.stats().shared_hits, batch as u64);
                        retire(reader).await;
                        done += batch;
                    }
                    total
                })
            })
        });
        let reader = rt.block_on(fresh(&fx.cfg));
        group.bench_function(BenchmarkId::new("shared_miss", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &fx.absent[i % N];
                        assert!(reader.cache.get_bytes(k).await.unwrap().is_none());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("local_miss", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &fx.absent[i % N];
                        assert!(fx.local.cache.get_bytes(k).await.unwrap().is_none());
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(async {
            assert_eq!(reader.cache.stats().shared_hits, 0);
            retire(reader).await;
            fx.close().await;
        });
    }
    group.finish();
}

// ---- writes: CPU per set ----

/// This process's CPU time so far (user + system, every thread), from `/proc/self/stat`
/// (clock ticks, 100 per second on Linux).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    Duration::from_millis((f[0] + f[1]) * 10)
}

/// Keys per timed fill of `write_cpu`.
const WRITES: usize = 300;

/// CPU per `set` (write-behind, no fsync) until the value is on disk, and with a shared tier
/// also on the server: a replica with a shared tier against one without, alternately
/// (`ROUNDS` fresh pairs per size), each filling `WRITES` new keys, flushing, and (shared)
/// waiting until every shared write landed. With encode once the shared tier adds its round
/// trips, not a second compression of each value.
fn write_cpu(server: &Server) {
    let rt = workload::runtime();
    println!(
        "shared_write_cpu: {WRITES} sets per fill, {ROUNDS} rounds alternating the two replicas per size; process CPU (user+sys, 10 ms ticks); {}",
        workload::machine()
    );
    println!(
        "| size | disk only: CPU per set | disk + shared: CPU per set | ratio | shared writes ok |"
    );
    println!("|---|---|---|---|---|");
    for &size in &workload::SIZES {
        let cfg = shared_config(
            &server.url(),
            &format!("bench-w-{}", workload::size_label(size)),
        );
        let values = workload::values(Kind::Text, size, WRITES, 7);
        let (mut local, mut shared) = (Vec::new(), Vec::new());
        let mut landed = 0;
        for round in 0..ROUNDS {
            let keys = workload::keys(WRITES, 70 + (size + round) as u64);
            for with_shared in [false, true] {
                rt.block_on(async {
                    let r = replica(with_shared.then_some(&cfg), 1 << 30).await;
                    let start = process_cpu();
                    workload::fill(&r.cache, &keys, &values).await;
                    if with_shared {
                        let t = Instant::now();
                        loop {
                            let s = r.cache.stats();
                            if s.shared_writes_ok + s.shared_writes_dropped + s.shared_writes_failed
                                >= WRITES as u64
                            {
                                landed += s.shared_writes_ok;
                                break;
                            }
                            assert!(t.elapsed() < Duration::from_secs(60), "writes never landed");
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    let cpu = process_cpu() - start;
                    assert_eq!(r.cache.stats().writes_ok, WRITES as u64);
                    if with_shared {
                        shared.push(cpu);
                    } else {
                        local.push(cpu);
                    }
                    retire(r).await;
                });
            }
        }
        let per = |v: &[Duration]| v.iter().sum::<Duration>() / (v.len() * WRITES) as u32;
        let (l, s) = (per(&local), per(&shared));
        println!(
            "| {} | {:.1} µs | {:.1} µs | {:.2}x | {}/{} |",
            workload::size_label(size),
            l.as_secs_f64() * 1e6,
            s.as_secs_f64() * 1e6,
            s.as_secs_f64() / l.as_secs_f64(),
            landed,
            WRITES * ROUNDS
        );
    }
}

fn main() {
    let Some(bin) = Server::find() else {
        println!(
            "shared bench: SKIPPED: no redis-server or valkey-server on PATH (apt-get install redis-server, or set ANSWERCACHE_REDIS_SERVER)"
        );
        return;
    };
    let server = Server::start(&bin);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    write_cpu(&server);
    if std::env::var_os("ANSWERCACHE_BENCH_WRITES_ONLY").is_some() {
        return;
    }
    paired_shared(&server);
    bench_shared(&mut c, &server);
    c.final_summary();
}
