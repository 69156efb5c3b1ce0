//! Fixtures: a cache over a fault-injecting fs on a temp dir, with a manual wall clock and
//! every timer set explicitly; a transcript recorder whose output is compared with a golden
//! file recorded on the old code.

#![allow(dead_code)] // each module uses its own part

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::warm::layout::{hex, key_hash, Layout};
use answercache::{Builder, ManualClock, TieredCache, WritePolicy};

pub const EIO: i32 = 5;
pub const DAY: Duration = Duration::from_secs(24 * 3600);
/// A fixed, realistic wall time (2025-01-01).
pub const T0: u64 = 1_735_689_600_000;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub fs: Arc<FaultFs>,
    pub clock: Arc<ManualClock>,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        std::fs::create_dir_all(&root).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        Env {
            dir,
            root,
            fs: Arc::new(FaultFs::std()),
            clock: Arc::new(ManualClock::new(T0)),
        }
    }

    /// Deterministic settings: no health check, sweep or recovery probe unless a test asks
    /// for one; one write at a time; one hot shard (the shard hasher is seeded at random, so
    /// with more shards which entry an eviction picks changes from run to run).
    pub fn builder(&self) -> Builder {
        TieredCache::builder(&self.root)
            .fs(self.fs.clone())
            .clock(self.clock.clone())
            .min_free_bytes(0)
            .health_interval(DAY)
            .sweep_interval(DAY)
            .recovery_interval(DAY)
            .memory_only_after(1_000)
            .failure_threshold(1_000)
            .write_concurrency(1)
            .hot_shards(1)
            .io_timeout(Duration::from_secs(5))
    }

    pub fn write_through(&self) -> Builder {
        self.builder().write_policy(WritePolicy::WriteThrough)
    }

    /// Opens and waits for the startup scan, so its disk calls cannot interleave with a test.
    pub async fn open(&self, b: Builder) -> TieredCache {
        let cache = b.build().await.unwrap();
        spin_until(|| cache.stats().warm_index_complete).await;
        cache
    }

    pub fn fail(&self, ops: &[FsOp], errno: i32) {
        self.fs.add_rule(Rule::new(Fault::Errno(errno)).ops(ops));
    }

    /// The entry files on disk, as `ab/cd/<hex>` paths relative to `<root>/v1`, sorted.
    pub fn entry_files(&self) -> Vec<String> {
        let entries = Layout::new(&self.root).entries_dir().to_owned();
        let mut out = Vec::new();
        walk(&entries, &entries, &mut out);
        out.sort();
        out
    }

    /// Whether the entry file of `key` exists.
    pub fn has_file(&self, key: &str) -> bool {
        Layout::new(&self.root)
            .entry_path(&key_hash(key.as_bytes()))
            .exists()
    }

    /// The fan-out directory (`ab`) of `key`.
    pub fn top_dir(key: &str) -> String {
        hex(&key_hash(key.as_bytes()))[..2].to_owned()
    }

    /// `s` with the root replaced by `<root>`.
    pub fn norm(&self, s: &str) -> String {
        s.replace(&self.root.display().to_string(), "<root>")
            .replace(&self.dir.path().display().to_string(), "<tmp>")
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

/// Yields until `cond` holds; bounded in real time (blocking-pool threads run in real time
/// whatever tokio's clock does).
pub async fn spin_until(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 20 s"
        );
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Lets background tasks and blocking calls run without moving the paused clock far.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A recorder of everything a scenario observes, compared at the end with
/// `golden/<name>.txt` (recorded on the old code; `ADV4_BLESS=1` records it again).
pub struct Transcript<'e> {
    env: &'e Env,
    name: &'static str,
    text: String,
}

impl<'e> Transcript<'e> {
    pub fn new(env: &'e Env, name: &'static str) -> Self {
        Transcript {
            env,
            name,
            text: String::new(),
        }
    }

    pub fn line(&mut self, what: &str, value: impl std::fmt::Debug) {
        let v = self.env.norm(&format!("{value:?}"));
        writeln!(self.text, "{what}: {v}").unwrap();
    }

    /// The whole `Stats`, one field a line.
    pub fn stats(&mut self, what: &str, cache: &TieredCache) {
        self.stats_masked(what, cache, &[]);
    }

    /// The `Stats`, one field a line, but `masked` fields (that depend on random values, such
    /// as the length of a namespace's generation number) are not recorded.
    pub fn stats_masked(&mut self, what: &str, cache: &TieredCache, masked: &[&str]) {
        let v = serde_json::to_value(cache.stats()).unwrap();
        writeln!(self.text, "{what}: stats").unwrap();
        for (k, v) in v.as_object().unwrap() {
            if masked.contains(&k.as_str()) {
                writeln!(self.text, "    {k} = (masked)").unwrap();
                continue;
            }
            let v = self.env.norm(&v.to_string());
            writeln!(self.text, "    {k} = {v}").unwrap();
        }
        writeln!(
            self.text,
            "    (mode() = {:?}, breaker_state() = {:?})",
            cache.mode(),
            cache.breaker_state()
        )
        .unwrap();
    }

    pub fn files(&mut self, what: &str) {
        let files = self.env.entry_files();
        writeln!(self.text, "{what}: {} entry files", files.len()).unwrap();
        for f in files {
            writeln!(self.text, "    {f}").unwrap();
        }
    }

    pub fn finish(self) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/adversary4/golden")
            .join(format!("{}.txt", self.name));
        if std::env::var_os("ADV4_BLESS").is_some() {
            std::fs::write(&path, &self.text).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("golden {} missing: {e}", path.display()));
        if expected != self.text {
            let mut report = String::new();
            let (e, a): (Vec<_>, Vec<_>) =
                (expected.lines().collect(), self.text.lines().collect());
            for i in 0..e.len().max(a.len()) {
                let (x, y) = (e.get(i).copied(), a.get(i).copied());
                if x != y {
                    writeln!(report, "line {}:\n  old: {x:?}\n  new: {y:?}", i + 1).unwrap();
                }
            }
            panic!(
                "transcript {} differs from the one recorded on the old code:\n{report}\n--- full new transcript ---\n{}",
                self.name, self.text
            );
        }
    }
}
