//! What every core test builds on: the crate's [`TestCache`] on a directory whose caches read
//! a manual clock (`open(|b| b.hot_capacity_entries(2)).await`), what the tests need to look
//! at the disk directly (the entry path of a key, a walk of the whole tree, independent of
//! the library's own path code), realistic values (an LLM answer with tool calls, from
//! `answercache::workload`), and file systems that stop a call at a gate.

#![allow(dead_code)] // each test module uses its own part of the fixture

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use answercache::fs::{DirEntryInfo, FileRead};
use answercache::testing::real_fs;
pub use answercache::testing::{TestCache, TestDir};
use answercache::workload::{markdown, Rng};
use answercache::{Builder, Fs, Stats};
use serde::{Deserialize, Serialize};

/// A directory for a core test: caches opened on it read a manual clock starting at the real
/// wall time (so that file modification times and the clock agree, which the temp-file sweep
/// relies on).
pub fn dir() -> TestDir {
    TestDir::new().manual_clock(answercache::clock::system_now_ms())
}

/// Like [`dir`], on a directory the test prepared (planted files, say).
pub fn dir_in(prepared: tempfile::TempDir) -> TestDir {
    TestDir::in_tempdir(prepared).manual_clock(answercache::clock::system_now_ms())
}

/// A cache on a fresh [`dir`], with every setting `edit` does not name at the test default.
pub async fn open(edit: impl FnOnce(Builder) -> Builder) -> TestCache {
    dir().open_cache(edit).await
}

/// What core tests look at on the disk, computed here independently of the library's own
/// path code.
pub trait OnDisk {
    /// The cache directory.
    fn dir_root(&self) -> &Path;

    /// Where the entry file of `key` must be: `<root>/v2/ab/<64 hex of blake3(key)>`.
    fn entry_path(&self, key: impl AsRef<[u8]>) -> PathBuf {
        entry_path(self.dir_root(), key)
    }

    /// Does the entry file of `key` exist?
    fn on_disk(&self, key: impl AsRef<[u8]>) -> bool {
        self.entry_path(key).exists()
    }

    /// Every file (not directory) under the root, relative to it, sorted.
    fn files(&self) -> Vec<PathBuf> {
        walk(self.dir_root())
            .into_iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(p, _)| p)
            .collect()
    }

    /// Names of the entry files under `v2/`.
    fn entry_names(&self) -> BTreeSet<String> {
        self.files()
            .into_iter()
            .filter(|p| p.starts_with("v2"))
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Total length of the entry files under `v2/`.
    fn entry_bytes_on_disk(&self) -> u64 {
        self.files()
            .into_iter()
            .filter(|p| p.starts_with("v2"))
            .map(|p| {
                std::fs::metadata(self.dir_root().join(p))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The temp files under the root, as paths relative to it: every file in `tmp/`
    /// (`tmp/<name>`), and the temp files of entries being written in the fan-out
    /// directories (`v2/ab/<name>`; see `answercache::testing::temp_files`).
    fn temp_names(&self) -> BTreeSet<String> {
        answercache::testing::temp_files(self.dir_root())
            .into_iter()
            .collect()
    }
}

impl OnDisk for TestCache {
    fn dir_root(&self) -> &Path {
        self.root()
    }
}

/// Where the entry file of `key` must be under `root`.
pub fn entry_path(root: &Path, key: impl AsRef<[u8]>) -> PathBuf {
    let h = hex_of(key.as_ref());
    root.join("v2").join(&h[0..2]).join(&h)
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
        // A live cache removes fan-out directories it emptied (`rmdir`): one that vanished
        // between being listed and being read holds nothing.
        let listing = match std::fs::read_dir(root.join(rel)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            listing => listing.expect("list a directory"),
        };
        for e in listing {
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

/// An answer whose text is about `text_len` bytes, with `tools` tool calls.
pub fn answer(rng: &mut Rng, text_len: usize, tools: usize) -> Answer {
    Answer {
        model: "gpt-4o-2024-08-06".into(),
        text: markdown(rng, text_len),
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
                arguments_json: format!(r#"{{"query":"{}","limit":{}}}"#, markdown(rng, 24), i + 5),
            })
            .collect(),
        latency_ms: Some(rng.below(30_000) as u64),
    }
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

/// The real file system (the fixtures', [`real_fs`]) with two hooks: `after_read` runs after
/// every `read_file` (with its path), `before_write` before every `write_new`. The test file
/// systems that only watch or hold a call are built on it ([`pause_after_read`],
/// `chained::ThreadsOfWrites`).
pub struct Hooked {
    pub after_read: Box<dyn Fn(&Path) + Send + Sync>,
    pub before_write: Box<dyn Fn(&Path) + Send + Sync>,
}

impl Default for Hooked {
    fn default() -> Self {
        Hooked {
            after_read: Box::new(|_| {}),
            before_write: Box::new(|_| {}),
        }
    }
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooked")
    }
}

impl Fs for Hooked {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        let r = real_fs().read_file(path, max_len);
        (self.after_read)(path);
        r
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        real_fs().read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        (self.before_write)(path);
        real_fs().write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        real_fs().rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        real_fs().rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        real_fs().remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        real_fs().remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        real_fs().create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        real_fs().sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        real_fs().read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        real_fs().available_space(path)
    }
}

/// The real file system, except that a read of `target` returns only once the gate opens:
/// the file was read whole, and the reader is slow to act on it.
pub fn pause_after_read(target: PathBuf, gate: Arc<Gate>) -> Hooked {
    Hooked {
        after_read: Box::new(move |path| {
            if path == target {
                gate.wait_here();
            }
        }),
        ..Hooked::default()
    }
}

/// Mounts and exact counts of inline reads, kept apart. An inline read opens its file with
/// `RESOLVE_CACHED`, and the kernel answers EAGAIN to a cached path walk that sees the
/// system-wide mount sequence change under it: a page-cache read racing any `mount`,
/// `umount` or new mount namespace anywhere falls back to the blocking path (correct, but
/// not inline). Measured: with a shell making and dropping tmpfs mounts in a loop beside it,
/// `closer::a_lone_hit_after_idle_is_closed_by_itself` saw 2 of 200 reads fall back (CI run
/// of stop 25, where `settle`'s and `closer`'s ext4 children mounted beside it). A test that
/// asserts how many reads were inline holds [`no_mounts`]; one that mounts (or makes a mount
/// namespace) holds [`mounting`], alone.
static MOUNTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test (outside a runtime) that counts inline reads exactly: no test of this
/// binary mounts meanwhile. See [`MOUNTS`].
pub(crate) fn no_mounts() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MOUNTS.blocking_read()
}

/// [`no_mounts`] for a test already on a runtime.
pub(crate) async fn no_mounts_async() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MOUNTS.read().await
}

/// Held by a test (outside a runtime) that mounts or makes a mount namespace, alone. See
/// [`MOUNTS`].
pub(crate) fn mounting() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MOUNTS.blocking_write()
}

// ---------------------------------------------------------------------------------------
// Write-through caller writes (`caller_writes`, reviews r32-r34): a cache on a `FaultFs` and
// the faults they put on its entry writes.
// ---------------------------------------------------------------------------------------

/// How long a test waits for something that must happen (a hang detector, not a speed bound).
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// A write-through cache on a fresh [`dir`] with a fault-injecting file system.
pub async fn write_through(io_timeout: std::time::Duration, concurrency: usize) -> TestCache {
    dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(answercache::WritePolicy::WriteThrough)
                .io_timeout(io_timeout)
                .write_concurrency(concurrency)
        })
        .await
}

/// Hangs every entry write (`write_new` under `v2/`) until released.
pub fn hang_entry_writes(cache: &TestCache) {
    cache.fs().add_rule(
        answercache::testing::Rule::new(answercache::testing::Fault::Hang)
            .ops(&[answercache::testing::FsOp::WriteNew])
            .path_contains("v2"),
    );
}

/// Hangs the next entry write only (`clear_rules` would release it: see `release`).
pub fn hang_one_entry_write(cache: &TestCache) {
    cache.fs().add_rule(
        answercache::testing::Rule::new(answercache::testing::Fault::Hang)
            .ops(&[answercache::testing::FsOp::WriteNew])
            .path_contains("v2")
            .times(1),
    );
}

/// Removes every fault rule and lets every hung call go.
pub fn release(cache: &TestCache) {
    cache.fs().clear_rules();
    cache.fs().release_hangs();
}

/// Waits until `n` entry writes reached the file system.
pub async fn entry_writes_reach(cache: &TestCache, n: u64) {
    use answercache::testing::FsOp;
    let fs = cache.fs().clone();
    let reached =
        answercache::testing::wait_until(PATIENCE, || fs.calls(FsOp::WriteNew) >= n).await;
    assert!(
        reached,
        "{n} entry writes never reached the file system ({} did)",
        cache.fs().calls(FsOp::WriteNew)
    );
}
