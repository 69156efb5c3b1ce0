//! [`TestDir`] and [`TestCache`]: the fixture tests build caches with.
//!
//! Every test of a cache needs the same few things: a fresh directory that goes away with the
//! test, settings that a test machine's nearly full disk cannot upset (`min_free_bytes(0)`),
//! often a fault-injecting file system or a clock the test moves by hand, and a way to
//! restart the cache on the same directory and settings. Written once here, so that a test
//! says only what its scenario is about:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use answercache::testing::{Fault, FsOp, Rule, TestDir};
//!
//! let mut t = TestDir::new()
//!     .fault_fs()
//!     .manual_clock(1_735_689_600_000)
//!     .open_cache(|b| b.hot_capacity_entries(2))
//!     .await;
//! t.set_bytes("k", b"v".to_vec()).await?;
//! t.reopen().await; // close (every write lands), open again: a restart
//! t.fs().add_rule(Rule::new(Fault::Errno(5)).ops(&[FsOp::ReadFile]));
//! t.advance(Duration::from_secs(60));
//! assert_eq!(t.get_bytes("k").await?, None); // the read failed: a miss, not an error
//! # Ok::<(), answercache::Error>(())
//! # }).unwrap();
//! ```
//!
//! [`TestDir`] is the directory with what every cache opened on it shares (the file system,
//! the clock); tests of several instances on one directory open them from it with
//! [`TestDir::open`]. [`TestCache`] is one cache opened on a `TestDir`, with its settings, for
//! tests of one cache across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use super::fault::FaultFs;
use super::real::portable_fs_selected;
use crate::{Builder, Fs, ManualClock, StdFs, TieredCache};

/// A builder for a cache under `root` with the settings every test cache starts from:
/// `min_free_bytes(0)`, so that a nearly full disk on the test machine cannot refuse writes;
/// on [`StdFs::portable`] after [`use_portable_fs`](super::use_portable_fs).
pub fn builder(root: impl Into<PathBuf>) -> Builder {
    let builder = TieredCache::builder(root).min_free_bytes(0);
    if portable_fs_selected() {
        builder.fs(Arc::new(StdFs::portable()))
    } else {
        builder
    }
}

/// The `Debug` text of the file system `cache` runs on (`"StdFs { mode: Portable }"`, a
/// decorator's own): which one a test really exercised.
pub fn fs_in_use(cache: &TieredCache) -> String {
    format!("{:?}", cache.tiers.fs())
}

/// Polls `cond` every 5 ms until it holds or `limit` has passed; returns whether it held.
/// The limit is real time and the pause is tokio's, so that it ends on a paused clock too
/// (where each pause moves the clock instead of waiting): background work that runs on
/// threads, such as blocking disk calls, gets real time to finish.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Copies the tree `from` into `to` (created if missing): a prepared cache directory to start
/// several runs from, a crash image to open.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// The names of the temp files under the cache root `root`: every file in `<root>/tmp/`, and
/// every name in a fan-out directory `<root>/v2/ab/` that ends in `.tmp` (an entry being
/// written beside its place, see FORMAT.md, "Layout"), as paths relative to `root`, sorted.
/// Missing directories hold none. For tests that assert nothing is left behind.
pub fn temp_files(root: &Path) -> Vec<String> {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir).map_or_else(
            |_| Vec::new(),
            |d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            },
        )
    };
    let mut out: Vec<String> = names(&root.join("tmp"))
        .into_iter()
        .map(|n| format!("tmp/{n}"))
        .collect();
    for fan_out in names(&root.join("v2")) {
        for n in names(&root.join("v2").join(&fan_out)) {
            if n.ends_with(".tmp") {
                out.push(format!("v2/{fan_out}/{n}"));
            }
        }
    }
    out.sort();
    out
}

/// A temporary cache directory, removed when dropped, and the file system and clock every
/// cache opened on it through [`TestDir::builder`] shares.
#[derive(Debug)]
pub struct TestDir {
    dir: TempDir,
    /// The cache root: the temporary directory, or a directory in it ([`TestDir::subdir`]).
    root: PathBuf,
    /// The file system caches are opened with, if not the real one.
    fs: Option<Arc<dyn Fs>>,
    /// The same file system, when it is the one [`TestDir::fault_fs`] installed.
    fault_fs: Option<ReleasedOnDrop>,
    clock: Option<ManualClock>,
}

/// A [`TestDir`]'s fault fs, whose rules are cleared when the directory goes, which releases
/// every call hung in it: a failing test with hung blocking calls then fails, instead of
/// deadlocking the runtime's shutdown on them.
#[derive(Debug)]
struct ReleasedOnDrop(Arc<FaultFs>);

impl Drop for ReleasedOnDrop {
    fn drop(&mut self) {
        self.0.clear_rules();
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

#[expect(
    clippy::expect_used,
    reason = "a test fixture: a failure to set up or open is the test's failure, with its cause"
)]
impl TestDir {
    /// A fresh, empty temporary directory; the real file system, the default clock.
    pub fn new() -> Self {
        TestDir::in_tempdir(tempfile::tempdir().expect("create a temporary directory"))
    }

    /// `dir`, prepared by the test (planted files, say), as the cache root.
    pub fn in_tempdir(dir: TempDir) -> Self {
        TestDir {
            root: dir.path().to_owned(),
            dir,
            fs: None,
            fault_fs: None,
            clock: None,
        }
    }

    /// The cache root becomes the directory `name` in the temporary directory (created), by
    /// its canonical path, leaving room beside it (for crash images, a second root, ...).
    pub fn subdir(mut self, name: &str) -> Self {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(&root).expect("create the cache root");
        self.root = std::fs::canonicalize(&root).expect("canonicalize the cache root");
        self
    }

    /// Caches are opened on a [`FaultFs`] over the real file system, with no rules yet; the
    /// test adds them through [`TestDir::fs`]. When the directory goes, the rules go too, so
    /// that calls hung by [`Fault::Hang`](super::Fault::Hang) do not outlive a failed test.
    pub fn fault_fs(mut self) -> Self {
        let fs = Arc::new(FaultFs::std());
        self.fs = Some(fs.clone());
        self.fault_fs = Some(ReleasedOnDrop(fs));
        self
    }

    /// Caches are opened on `fs` (a [`CrashFs`](super::CrashFs), a decorator written for one
    /// test); the test keeps its own handle to it.
    pub fn with_fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = Some(fs);
        self.fault_fs = None;
        self
    }

    /// Caches read a [`ManualClock`] starting at `start_ms` (unix milliseconds), shared by
    /// every cache opened on this directory; the test moves it with [`ManualClock::advance`].
    pub fn manual_clock(mut self, start_ms: u64) -> Self {
        self.clock = Some(ManualClock::new(start_ms));
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The temporary directory (the root's parent with [`TestDir::subdir`], else the root).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The fault-injecting file system. Panics unless set up with [`TestDir::fault_fs`].
    pub fn fs(&self) -> &Arc<FaultFs> {
        &self
            .fault_fs
            .as_ref()
            .expect("a TestDir set up with .fault_fs()")
            .0
    }

    /// The manual clock. Panics unless set up with [`TestDir::manual_clock`].
    pub fn clock(&self) -> &ManualClock {
        self.clock
            .as_ref()
            .expect("a TestDir set up with .manual_clock(..)")
    }

    /// A builder for the root with the test settings of [`builder`] and this directory's file
    /// system and clock.
    pub fn builder(&self) -> Builder {
        let mut b = builder(&self.root);
        if let Some(fs) = &self.fs {
            b = b.fs(fs.clone());
        }
        if let Some(clock) = &self.clock {
            b = b.clock(Arc::new(clock.clone()));
        }
        b
    }

    /// Opens a cache with `builder`: one more instance on this directory.
    pub async fn open(&self, builder: Builder) -> TieredCache {
        builder.build().await.expect("open the cache")
    }

    /// Opens the cache of a [`TestCache`] with [`TestDir::builder`] as `edit` leaves it.
    pub async fn open_cache(self, edit: impl FnOnce(Builder) -> Builder) -> TestCache {
        let settings = edit(self.builder());
        let cache = self.open(settings.clone()).await;
        TestCache {
            cache,
            settings,
            dir: self,
        }
    }

    /// Gives the temporary directory back, with whatever the test left in it.
    pub fn into_tempdir(self) -> TempDir {
        self.dir
    }
}

/// A cache on a [`TestDir`] with the settings it was opened with, which it can be reopened
/// with: `TestDir::new().open_cache(|b| b.hot_capacity_entries(2)).await`. Derefs to the
/// cache.
#[derive(Debug)]
pub struct TestCache {
    /// The cache under test (also reachable through `Deref`); replaced by the reopens.
    pub cache: TieredCache,
    settings: Builder,
    dir: TestDir,
}

impl std::ops::Deref for TestCache {
    type Target = TieredCache;
    fn deref(&self) -> &TieredCache {
        &self.cache
    }
}

#[expect(
    clippy::expect_used,
    reason = "a test fixture: a failure to close or reopen is the test's failure, with its cause"
)]
impl TestCache {
    /// A cache with the test settings of [`builder`] on a fresh directory.
    pub async fn new() -> TestCache {
        TestDir::new().open_cache(|b| b).await
    }

    /// Like [`TestCache::new`], with `edit`'s settings.
    pub async fn with(edit: impl FnOnce(Builder) -> Builder) -> TestCache {
        TestDir::new().open_cache(edit).await
    }

    /// The directory, its file system and clock.
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        self.dir.root()
    }

    /// The fault-injecting file system (see [`TestDir::fs`]).
    pub fn fs(&self) -> &Arc<FaultFs> {
        self.dir.fs()
    }

    /// The manual clock (see [`TestDir::clock`]).
    pub fn clock(&self) -> &ManualClock {
        self.dir.clock()
    }

    /// Moves the manual clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock().advance(by);
    }

    /// The settings the cache was (last) opened with.
    pub fn settings(&self) -> Builder {
        self.settings.clone()
    }

    /// Closes the cache (asserting that every write landed) and opens a new one on the same
    /// directory with the same settings: a process restart. Counters start again from 0.
    pub async fn reopen(&mut self) {
        self.reopen_with(|b| b).await;
    }

    /// Like [`TestCache::reopen`], with the settings edited (another codec, another size).
    pub async fn reopen_with(&mut self, edit: impl FnOnce(Builder) -> Builder) {
        self.cache.close().await.expect("close drains every write");
        self.settings = edit(self.settings.clone());
        self.reopen_after_close().await;
    }

    /// Opens a new cache on the same directory and settings after the test closed the old
    /// one itself.
    pub async fn reopen_after_close(&mut self) {
        self.cache = self.dir.open(self.settings.clone()).await;
    }

    /// A process that dies without `close`: the old cache is dropped only once a new one,
    /// opened with [`TestDir::builder`] as `edit` leaves it, is open (what the old one had
    /// queued may or may not land: the test waits for what it needs first).
    pub async fn restart_without_close(&mut self, edit: impl FnOnce(Builder) -> Builder) {
        self.settings = edit(self.dir.builder());
        let fresh = self.dir.open(self.settings.clone()).await;
        drop(std::mem::replace(&mut self.cache, fresh));
    }

    /// A second, independent cache on the same directory and settings (the first stays
    /// open): another instance in the same process.
    pub async fn open_another(&self) -> TieredCache {
        self.dir.open(self.settings.clone()).await
    }

    /// Gives the directory back (the test closed the cache), to open other caches on it.
    pub fn into_dir(self) -> TestDir {
        self.dir
    }
}

/// The disk errors of kind `kind` (`"io"`, `"no-space"`, ... as `Stats::disk_errors_by_kind`
/// names them) `cache` has counted; 0 for a kind never seen.
pub fn disk_errors(cache: &TieredCache, kind: &str) -> u64 {
    cache
        .stats()
        .disk_errors_by_kind
        .get(kind)
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Fs;
    use crate::testing::{Fault, FsOp, Rule};

    #[test]
    fn a_dropped_test_dir_releases_the_calls_hung_in_its_fault_fs() {
        let t = TestDir::new().fault_fs();
        t.fs()
            .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::ReadDir]));
        let (fs, root) = (t.fs().clone(), t.root().to_owned());
        let hung = std::thread::spawn(move || fs.read_dir(&root).map(|v| v.len()));
        while t.fs().faults_injected() == 0 {
            std::thread::yield_now();
        }
        assert!(!hung.is_finished());
        drop(t);
        // Released: the call ends (in an error: the directory went with the TestDir).
        assert!(hung.join().unwrap().is_err());
    }

    #[tokio::test]
    async fn reopen_keeps_the_directory_and_the_settings() {
        let mut t = TestDir::new()
            .subdir("cache")
            .manual_clock(1_000_000)
            .open_cache(|b| b.hot_capacity_entries(3))
            .await;
        assert!(t.root().ends_with("cache") && t.root().starts_with(t.dir().path()));
        t.set_bytes("k", b"v".to_vec()).await.unwrap();
        t.reopen().await;
        assert_eq!(t.stats().hot_capacity_entries, 3);
        assert_eq!(t.get_bytes("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(t.stats().warm_hits, 1);
        t.close().await.unwrap();
    }
}
