//! The fixture every core test builds on: a cache in a fresh temporary directory, with a
//! manual clock, configured in the language of the scenario
//! (`TestCache::new().hot_entries(2).build().await`), that can be closed and reopened on the
//! same directory and settings. Plus what the tests need to look at the disk directly (the
//! entry path of a key, a walk of the whole tree), realistic values, and a tiny seeded PRNG
//! so that random scenarios replay exactly.

#![allow(dead_code)] // each test module uses its own part of the fixture

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiercache::fs::{DirEntryInfo, FileRead, StdFs};
use tiercache::testing::FaultFs;
use tiercache::{Builder, Durability, Fs, ManualClock, Stats, TieredCache, WritePolicy};

/// Builds a cache for a test; every setting not named keeps the library default, except
/// `min_free_bytes`, which is 0 so that a nearly full disk on the test machine cannot refuse
/// writes, and the clock, which is a [`ManualClock`] starting at the real wall time (so that
/// file modification times and the clock agree, which the temp-file sweep relies on).
pub struct TestCache {
    dir: Option<tempfile::TempDir>,
    builder_edits: Vec<Box<dyn FnOnce(Builder) -> Builder>>,
    clock: ManualClock,
}

impl TestCache {
    /// A cache in a fresh, empty temporary directory.
    pub fn new() -> Self {
        TestCache {
            dir: None,
            builder_edits: Vec::new(),
            clock: ManualClock::new(tiercache::clock::system_now_ms()),
        }
    }

    /// A cache in `dir` (prepared by the test, e.g. with planted files).
    pub fn in_dir(dir: tempfile::TempDir) -> Self {
        TestCache {
            dir: Some(dir),
            ..TestCache::new()
        }
    }

    fn edit(mut self, f: impl FnOnce(Builder) -> Builder + 'static) -> Self {
        self.builder_edits.push(Box::new(f));
        self
    }

    /// Hot-tier byte budget.
    pub fn hot_bytes(self, n: usize) -> Self {
        self.edit(move |b| b.hot_capacity_bytes(n))
    }

    /// Hot-tier entry budget.
    pub fn hot_entries(self, n: usize) -> Self {
        self.edit(move |b| b.hot_capacity_entries(n))
    }

    /// Hot-tier shard count.
    pub fn hot_shards(self, n: usize) -> Self {
        self.edit(move |b| b.hot_shards(n))
    }

    /// Warm-tier byte budget.
    pub fn warm_bytes(self, n: u64) -> Self {
        self.edit(move |b| b.warm_capacity_bytes(n))
    }

    /// Largest encoded value.
    pub fn max_entry_bytes(self, n: usize) -> Self {
        self.edit(move |b| b.max_entry_bytes(n))
    }

    /// Longest key.
    pub fn max_key_bytes(self, n: usize) -> Self {
        self.edit(move |b| b.max_key_bytes(n))
    }

    /// Bytes the write-behind queue holds before `set` waits.
    pub fn write_queue_bytes(self, n: usize) -> Self {
        self.edit(move |b| b.write_queue_bytes(n))
    }

    /// Expiry of entries set without a TTL.
    pub fn default_ttl(self, ttl: Duration) -> Self {
        self.edit(move |b| b.default_ttl(ttl))
    }

    /// Interval of the sweep of expired entry files.
    pub fn sweep_interval(self, every: Duration) -> Self {
        self.edit(move |b| b.sweep_interval(every))
    }

    /// Bound on one disk call.
    pub fn io_timeout(self, t: Duration) -> Self {
        self.edit(move |b| b.io_timeout(t))
    }

    /// Concurrent disk writes.
    pub fn write_concurrency(self, n: usize) -> Self {
        self.edit(move |b| b.write_concurrency(n))
    }

    /// Any other builder setting.
    pub fn with(self, f: impl FnOnce(Builder) -> Builder + 'static) -> Self {
        self.edit(f)
    }

    /// `set` returns once the write reached the disk.
    pub fn write_through(self) -> Self {
        self.edit(|b| b.write_policy(WritePolicy::WriteThrough))
    }

    /// Page-cache reads on the calling thread on (the default) or off.
    pub fn page_cache_reads(self, on: bool) -> Self {
        self.edit(move |b| b.page_cache_reads(on))
    }

    /// No fsync: for scenarios about bounds and logic, not power loss.
    pub fn no_sync(self) -> Self {
        self.edit(|b| b.durability(Durability::NoSync))
    }

    /// A fault-injecting file system.
    pub fn fs(self, fs: Arc<FaultFs>) -> Self {
        self.edit(move |b| b.fs(fs))
    }

    /// Any file system (a decorator written for one test).
    pub fn fs_dyn(self, fs: Arc<dyn Fs>) -> Self {
        self.edit(move |b| b.fs(fs))
    }

    /// Opens the cache.
    pub async fn build(self) -> Harness {
        let dir = match self.dir {
            Some(d) => d,
            None => tempfile::tempdir().expect("create a temporary directory"),
        };
        let mut builder = TieredCache::builder(dir.path())
            .min_free_bytes(0)
            .clock(Arc::new(self.clock.clone()));
        for edit in self.builder_edits {
            builder = edit(builder);
        }
        let cache = builder.clone().build().await.expect("open the cache");
        Harness {
            cache,
            builder,
            clock: self.clock,
            dir,
        }
    }
}

/// An open cache, its directory, its settings and its clock.
pub struct Harness {
    /// The cache under test (also reachable through `Deref`).
    pub cache: TieredCache,
    builder: Builder,
    /// The clock the cache reads; clones share the time.
    pub clock: ManualClock,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Harness {
    type Target = TieredCache;
    fn deref(&self) -> &TieredCache {
        &self.cache
    }
}

impl Harness {
    /// The cache directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Closes the cache (asserting every write landed) and opens a new one on the same
    /// directory with the same settings: a process restart.
    pub async fn reopen(&mut self) {
        self.cache.close().await.expect("close drains every write");
        self.cache = self
            .builder
            .clone()
            .build()
            .await
            .expect("reopen the cache");
    }

    /// Opens a new cache on the same directory and settings after the test closed the old
    /// one itself.
    pub async fn reopen_after_close(&mut self) {
        self.cache = self
            .builder
            .clone()
            .build()
            .await
            .expect("reopen the cache");
    }

    /// Opens a second, independent cache on the same directory and settings (the first stays
    /// open): another instance in the same process.
    pub async fn open_another(&self) -> TieredCache {
        self.builder
            .clone()
            .build()
            .await
            .expect("open a second instance")
    }

    /// Gives the directory back (the test closed the cache), to open another cache on it
    /// with other settings.
    pub fn into_dir(self) -> tempfile::TempDir {
        self.dir
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Where the entry file of `key` must be: `<root>/v1/ab/cd/<64 hex of blake3(key)>`,
    /// computed here independently of the library's own path code.
    pub fn entry_path(&self, key: impl AsRef<[u8]>) -> PathBuf {
        entry_path(self.root(), key)
    }

    /// Does the entry file of `key` exist?
    pub fn on_disk(&self, key: impl AsRef<[u8]>) -> bool {
        self.entry_path(key).exists()
    }

    /// Every file (not directory) under the root, relative to it, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        walk(self.root())
            .into_iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(p, _)| p)
            .collect()
    }

    /// Names of the entry files under `v1/`.
    pub fn entry_names(&self) -> BTreeSet<String> {
        self.files()
            .into_iter()
            .filter(|p| p.starts_with("v1"))
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Total length of the entry files under `v1/`.
    pub fn entry_bytes_on_disk(&self) -> u64 {
        self.files()
            .into_iter()
            .filter(|p| p.starts_with("v1"))
            .map(|p| {
                std::fs::metadata(self.root().join(p))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Names of the files in `<root>/tmp/`.
    pub fn temp_names(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.root().join("tmp"))
            .expect("list tmp/")
            .map(|e| {
                e.expect("tmp/ entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

/// Where the entry file of `key` must be under `root`.
pub fn entry_path(root: &Path, key: impl AsRef<[u8]>) -> PathBuf {
    let h = hex_of(key.as_ref());
    root.join("v1").join(&h[0..2]).join(&h[2..4]).join(&h)
}

/// Lowercase hex of blake3(key).
pub fn hex_of(key: &[u8]) -> String {
    blake3::hash(key)
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every path under `root` (relative to it, symlinks not followed), with whether it is a
/// directory, sorted.
pub fn walk(root: &Path) -> Vec<(PathBuf, bool)> {
    fn go(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) {
        for e in std::fs::read_dir(root.join(rel)).expect("list a directory") {
            let e = e.expect("directory entry");
            let rel = rel.join(e.file_name());
            let is_dir = e.file_type().expect("file type").is_dir();
            out.push((rel.clone(), is_dir));
            if is_dir {
                go(root, &rel, out);
            }
        }
    }
    let mut out = Vec::new();
    go(root, Path::new(""), &mut out);
    out.sort();
    out
}

/// The counters that move between two snapshots: what one phase of a test did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reads {
    pub hot_hits: u64,
    pub warm_hits: u64,
    pub queue_hits: u64,
    pub misses: u64,
}

impl Reads {
    /// The reads counted in `after` but not in `before`.
    pub fn between(before: &Stats, after: &Stats) -> Reads {
        Reads {
            hot_hits: after.hot_hits - before.hot_hits,
            warm_hits: after.warm_hits - before.warm_hits,
            queue_hits: after.queue_hits - before.queue_hits,
            misses: after.misses - before.misses,
        }
    }
}

/// A realistic cached value: an LLM answer with its tool calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub model: String,
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub finish_reason: FinishReason,
    pub tool_calls: Vec<ToolCall>,
    pub latency_ms: Option<u64>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments_json: String,
}

const WORDS: &[&str] = &[
    "the", "cache", "answer", "model", "token", "request", "because", "disk", "memory", "agent",
    "response", "latency", "tool", "function", "returns", "value", "prompt", "context", "a", "of",
    "and", "to", "in", "is", "that", "for", "with", "as", "on", "which",
];

/// LLM-like text of exactly `len` bytes (compressible, like real answers).
pub fn prose(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        if !s.is_empty() {
            s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s.truncate(len);
    s
}

/// An answer whose text is about `text_len` bytes, with `tools` tool calls.
pub fn answer(rng: &mut Rng, text_len: usize, tools: usize) -> Answer {
    Answer {
        model: "gpt-4o-2024-08-06".into(),
        text: prose(rng, text_len),
        prompt_tokens: rng.below(4000) as u32,
        completion_tokens: (text_len / 4) as u32,
        finish_reason: if tools > 0 {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        },
        tool_calls: (0..tools)
            .map(|i| ToolCall {
                id: format!("call_{i}_{:08x}", rng.next_u64() as u32),
                name: ["search_web", "read_file", "run_sql"][i % 3].into(),
                arguments_json: format!(r#"{{"query":"{}","limit":{}}}"#, prose(rng, 24), i + 5),
            })
            .collect(),
        latency_ms: Some(rng.below(30_000)),
    }
}

/// splitmix64: a tiny, seeded, deterministic PRNG, so random scenarios replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

#[test]
fn splitmix64_matches_the_reference_sequence() {
    // First outputs of splitmix64 seeded with 1234567 (from the reference C implementation).
    let mut r = Rng::new(1234567);
    assert_eq!(r.next_u64(), 6457827717110365317);
    assert_eq!(r.next_u64(), 3203168211198807973);
}

/// A gate that a blocking fs call waits at until the test opens it.
#[derive(Debug, Default)]
pub struct Gate {
    /// (a call is waiting, the gate is open)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Gate {
    pub fn wait_here(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 = true;
        self.cv.notify_all();
        while !st.1 {
            st = self.cv.wait(st).unwrap();
        }
    }

    pub fn wait_for_caller(&self) {
        let mut st = self.state.lock().unwrap();
        while !st.0 {
            st = self.cv.wait(st).unwrap();
        }
    }

    pub fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// The real file system, except that a read of `target` returns only once the gate opens:
/// the file was read whole, and the reader is slow to act on it.
#[derive(Debug)]
pub struct PauseAfterRead {
    pub target: PathBuf,
    pub gate: Arc<Gate>,
}

impl Fs for PauseAfterRead {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        let r = StdFs.read_file(path, max_len);
        if path == self.target {
            self.gate.wait_here();
        }
        r
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        StdFs.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        StdFs.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFs.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        StdFs.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        StdFs.available_space(path)
    }
}
