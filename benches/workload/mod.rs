//! The shared, deterministic workload of every bench: LLM-like responses and request-hash keys,
//! with skewed (Zipf) access. No network, no downloaded data: everything comes from a seeded
//! generator, so two runs (and two machines) measure the same bytes.
//!
//! - Values: OpenAI-style chat-completion JSON and plain markdown text from
//!   [`answercache::workload`] (English-like prose over a Zipf-distributed vocabulary, lists,
//!   headings and fenced code blocks), at exactly 1, 4, 16 or 64 KiB. Their gzip ratio is
//!   close to real model output (about 2-2.7x at 4-64 KiB), which matters: the warm tier
//!   compresses.
//! - Keys: `<model>:<64 hex chars>` like the request hashes an agent backend derives from the
//!   canonical request.
//! - Access: Zipf (s = 1.0) over the key set, pre-drawn so that sampling is not measured.
//!
//! This file holds what is particular to the benches (sizes, keys, pre-drawn access
//! sequences, directories, the runtime); the generator itself is the library's. It lives in a
//! folder so that cargo does not take it for a bench target; included by each bench file with
//! `#[path = "workload/mod.rs"] mod workload;`. Each bench uses a subset, hence the `dead_code`
//! allowance.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use answercache::workload::{self, MODELS};
pub use answercache::workload::{ChatCompletion, Rng, Zipf};
use answercache::TieredCache;

/// Value sizes of the issue: 1, 4, 16 and 64 KiB.
pub const SIZES: [usize; 4] = [1 << 10, 4 << 10, 16 << 10, 64 << 10];

/// A human label for a size: "1KiB", "4KiB", ...
pub fn size_label(size: usize) -> String {
    format!("{}KiB", size >> 10)
}

/// `len` Zipf(s = 1.0) draws over `0..n`, shuffled so that the hottest keys are not the first
/// ones generated (rank `r` maps to a fixed random key index).
pub fn zipf_sequence(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let zipf = Zipf::new(n, 1.0);
    let mut perm: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut perm);
    (0..len).map(|_| perm[zipf.sample(&mut rng)]).collect()
}

/// `len` uniform draws over `0..n`.
pub fn uniform_sequence(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.below(n)).collect()
}

/// The cache key of request `i`: `<model>:<blake3 hex of a request-like string>`, ~90 bytes.
pub fn key(i: u64) -> String {
    let model = MODELS[(i % MODELS.len() as u64) as usize];
    let request = format!(
        "{{\"model\":\"{model}\",\"temperature\":0,\"messages\":[{{\"role\":\"user\",\"content\":\"question #{i}\"}}]}}"
    );
    format!("{model}:{}", blake3::hash(request.as_bytes()).to_hex())
}

/// `n` keys as owned byte vectors (what the benches look up).
pub fn keys(n: usize, salt: u64) -> Vec<Vec<u8>> {
    (0..n as u64)
        .map(|i| key(i.wrapping_add(salt.wrapping_mul(1_000_003))).into_bytes())
        .collect()
}

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OpenAI-style `chat.completion` JSON body.
    ChatJson,
    /// Plain markdown text (prose, lists, code blocks).
    Text,
}

impl Kind {
    /// Both kinds.
    pub const ALL: [Kind; 2] = [Kind::ChatJson, Kind::Text];

    /// "json" or "text".
    pub fn label(self) -> &'static str {
        match self {
            Kind::ChatJson => "json",
            Kind::Text => "text",
        }
    }
}

/// Value `seed` of `kind`, exactly `size` bytes, ASCII.
pub fn value(kind: Kind, size: usize, seed: u64) -> Vec<u8> {
    match kind {
        Kind::Text => workload::markdown(&mut Rng::stream(seed, kind as u64), size).into_bytes(),
        Kind::ChatJson => workload::chat_json(&chat_completion(size, seed), size),
    }
}

/// `n` values of `kind` and `size` (seeds `salt*n .. salt*n + n`), shared as `Arc<[u8]>`.
pub fn values(kind: Kind, size: usize, n: usize, salt: u64) -> Vec<Arc<[u8]>> {
    (0..n as u64)
        .map(|i| Arc::from(value(kind, size, salt.wrapping_mul(n as u64) + i)))
        .collect()
}

/// A typed completion whose JSON is about `size` bytes, drawn from `seed` (for the typed
/// `get`/`set` benches: serde, bincode on disk).
pub fn chat_completion(size: usize, seed: u64) -> ChatCompletion {
    workload::chat_completion(&mut Rng::stream(seed, Kind::ChatJson as u64), size)
}

/// Sets `values` under `keys` and waits until every write is on disk: the starting point of
/// the read benches.
pub async fn fill(cache: &TieredCache, keys: &[Vec<u8>], values: &[Arc<[u8]>]) {
    for (k, v) in keys.iter().zip(values) {
        cache
            .set_bytes(k, v)
            .await
            .unwrap_or_else(|e| panic!("fill: set_bytes: {e}"));
    }
    cache
        .flush()
        .await
        .unwrap_or_else(|e| panic!("fill: flush: {e}"));
}

/// A fresh directory for a bench: under `$ANSWERCACHE_BENCH_DIR` if set (to put the warm tier on
/// a particular disk), else under the system temp dir. Removed when dropped.
pub fn bench_dir(name: &str) -> tempfile::TempDir {
    let base = std::env::var_os("ANSWERCACHE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let _ = std::fs::create_dir_all(&base);
    tempfile::Builder::new()
        .prefix(&format!("answercache-bench-{name}-"))
        .tempdir_in(base)
        .unwrap_or_else(|e| panic!("cannot create a bench directory: {e}"))
}

/// The runtime every bench drives its futures on: multi-threaded, 2 workers (the CI machine has
/// 2 cores), with the blocking pool the warm tier uses.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}

/// A one-line description of the file system the bench directories go on (see [`bench_dir`]):
/// its type, mount point and device, and for ext4 whether it has a journal. On ext4 without a
/// journal, creating a file skips every inode of its block group deleted in the last minute
/// (the kernel's `recently_deleted`), so a write loop's cost grows with the churn of the last
/// minutes, unequally for contenders whose directories lie in different block groups: the
/// write benches are meant for a fresh, journaled file system (`benches/fresh_ext4.sh`).
pub fn disk() -> String {
    let base = std::env::var_os("ANSWERCACHE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    // The longest mount point that is a prefix of the base directory.
    let Some((dev, point, fstype)) = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, point, _)| base.starts_with(point))
        .max_by_key(|(_, point, _)| point.len())
    else {
        return format!("{}: file system unknown", base.display());
    };
    let journal = if fstype == "ext4" {
        let name = dev.rsplit('/').next().unwrap_or(dev);
        match std::fs::read_to_string(format!("/sys/fs/ext4/{name}/journal_task")) {
            Ok(t) if t.trim() == "<none>" => ", no journal",
            Ok(_) => ", journaled",
            Err(_) => "",
        }
    } else {
        ""
    };
    format!("{} on {point} ({fstype} on {dev}{journal})", base.display())
}

/// A one-line description of the machine for printed reports: cores, CPU model, load.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, load average {load}")
}
