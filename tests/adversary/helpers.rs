//! Shared fixtures: scenario directories and per-instance builders (over the crate's
//! `TestDir`), self-checking values, a hookable `Fs`, errno constants.

#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use answercache::fs::{DirEntryInfo, FileRead, StdFs};
pub use answercache::testing::wait_until;
use answercache::testing::{self, FaultFs, TestDir};
use answercache::warm::layout::{hex, key_hash, Layout};
pub use answercache::workload::Rng;
use answercache::{Builder, Durability, Fs, ManualClock, Mode, TieredCache, WritePolicy};

pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;
pub const EROFS: i32 = 30;
pub const EACCES: i32 = 13;
pub const EFBIG: i32 = 27;

/// A fixed, realistic wall time (2025-01-01) so scenarios replay exactly.
pub const T0: u64 = 1_735_689_600_000;

/// The directory of a scenario, its cache root (`cache` in the temporary directory, by its
/// canonical path) and its clock (a manual one at [`T0`]); instances with clocks of their own
/// are opened with [`builder`].
pub fn scenario() -> (TestDir, PathBuf, ManualClock) {
    let dir = TestDir::new().subdir("cache").manual_clock(T0);
    let (root, clock) = (dir.root().to_owned(), dir.clock().clone());
    (dir, root, clock)
}

/// A builder for `root` with the test settings and `clock` (each instance of a scenario may
/// have its own).
pub fn builder(root: &Path, clock: &ManualClock) -> Builder {
    testing::builder(root).clock(Arc::new(clock.clone()))
}

/// A plain reader over a directory: a fresh instance with default settings and the real fs.
pub async fn fresh(root: &Path, clock: &ManualClock) -> TieredCache {
    builder(root, clock)
        .build()
        .await
        .expect("open a fresh reader")
}

/// Settings under which one failed disk call sends the cache memory-only at once, and a
/// healthy disk brings it back within tens of milliseconds.
pub fn sick(b: Builder, fs: &Arc<FaultFs>) -> Builder {
    b.fs(fs.clone())
        .failure_threshold(1)
        .memory_only_after(1)
        .open_timeout(Duration::from_millis(10))
        .recovery_interval(Duration::from_millis(20))
        .health_interval(Duration::from_millis(20))
        .io_timeout(Duration::from_secs(2))
}

pub fn write_through(b: Builder) -> Builder {
    b.write_policy(WritePolicy::WriteThrough)
        .durability(Durability::Fsync)
}

/// Where the entry file of `key` is (the library's layout; tests/core pins the layout itself).
pub fn entry_path(root: &Path, key: impl AsRef<[u8]>) -> PathBuf {
    Layout::new(root).entry_path(&key_hash(key.as_ref()))
}

/// The hex name of `key`'s entry file.
pub fn hex_of(key: &[u8]) -> String {
    hex(&key_hash(key))
}

/// Temp files: files under `<root>/tmp`, and entry temp files in `<root>/v2/ab/`.
pub fn temp_files(root: &Path) -> usize {
    answercache::testing::temp_files(root).len()
}

/// Waits until the cache is tiered with a closed breaker and `flush` returns Ok.
pub async fn settle(cache: &TieredCache, limit: Duration) -> answercache::Result<()> {
    let start = Instant::now();
    loop {
        let healthy = cache.mode() == Mode::Tiered
            && cache.breaker_state() == answercache::BreakerState::Closed;
        let r = if healthy { cache.flush().await } else { Ok(()) };
        if healthy && r.is_ok() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return if healthy { r } else { cache.flush().await };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A value that names its key and a sequence number, padded to `len` bytes with
/// pseudo-random (poorly compressible) bytes derived from both: a torn or foreign value
/// cannot pass `check_value`.
pub fn value_for(key: &[u8], seq: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{}#{seq}|", hex_of(key)).into_bytes();
    let mut rng =
        Rng::new(seq ^ u64::from_le_bytes(blake3::hash(key).as_bytes()[..8].try_into().unwrap()));
    while v.len() < len {
        v.push((rng.next_u64() & 0xff) as u8);
    }
    v
}

/// Parses a value made by `value_for` for `key`, returning its sequence number; `Err` for
/// a value that is torn or belongs to another key.
pub fn check_value(key: &[u8], v: &[u8]) -> Result<u64, String> {
    let prefix = format!("{}#", hex_of(key));
    let s = v
        .iter()
        .position(|b| *b == b'|')
        .ok_or_else(|| format!("no header in a {}-byte value", v.len()))?;
    let head = std::str::from_utf8(&v[..s]).map_err(|_| "header not utf-8".to_string())?;
    let seq: u64 = head
        .strip_prefix(&prefix)
        .ok_or_else(|| format!("value of another key: {head}"))?
        .parse()
        .map_err(|_| format!("bad seq in {head}"))?;
    let want = value_for(key, seq, v.len());
    if want != v {
        return Err(format!("torn value for seq {seq} ({} bytes)", v.len()));
    }
    Ok(seq)
}

/// A gate a hooked fs call stops at: the test learns that the call got there (`reached`) and
/// lets it go on (`open`).
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<(bool, bool)>, // (reached, open)
    cv: Condvar,
}

impl Gate {
    fn arrive_and_wait(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 = true;
        self.cv.notify_all();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !st.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break; // never hang the test binary
            }
            st = self.cv.wait_timeout(st, left).unwrap().0;
        }
    }
    /// Blocks (a blocking-pool-safe poll from async code) until a call reached the gate.
    pub async fn reached(&self, limit: Duration) -> bool {
        wait_until(limit, || self.state.lock().unwrap().0).await
    }
    pub fn reached_now(&self) -> bool {
        self.state.lock().unwrap().0
    }
    pub fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// Where a hook stops a call.
#[derive(Debug, Clone)]
pub enum Hook {
    /// After `read_file` of this path returned.
    AfterRead(PathBuf),
    /// After a `rename` whose source is this path (a file taken out of the way) returned.
    AfterRenameFrom(PathBuf),
    /// Fail the next `rename_noreplace` whose target is this path with EIO (once).
    FailNoReplaceTo(PathBuf),
    /// Before `remove_file` of this path.
    BeforeRemove(PathBuf),
}

/// A real-fs decorator that stops chosen calls at a `Gate`, so a test can put another
/// instance's (or task's) operation exactly between two steps of the library.
#[derive(Debug)]
pub struct HookFs {
    inner: StdFs,
    hooks: Mutex<Vec<(Hook, Arc<Gate>)>>,
}

impl HookFs {
    pub fn new() -> Arc<Self> {
        Arc::new(HookFs {
            inner: StdFs::new(),
            hooks: Mutex::new(Vec::new()),
        })
    }
    /// Arms a one-shot hook; returns its gate (for `FailNoReplaceTo`, the gate is unused).
    pub fn arm(&self, hook: Hook) -> Arc<Gate> {
        let g = Arc::new(Gate::default());
        self.hooks.lock().unwrap().push((hook, g.clone()));
        g
    }
    fn take(&self, f: impl Fn(&Hook) -> bool) -> Option<(Hook, Arc<Gate>)> {
        let mut h = self.hooks.lock().unwrap();
        let i = h.iter().position(|(k, _)| f(k))?;
        Some(h.remove(i))
    }
}

impl Fs for HookFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        let r = self.inner.read_file(path, max_len);
        if let Some((_, g)) = self.take(|h| matches!(h, Hook::AfterRead(p) if p == path)) {
            g.arrive_and_wait();
        }
        r
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        self.inner.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let r = self.inner.rename(from, to);
        if let Some((_, g)) = self.take(|h| matches!(h, Hook::AfterRenameFrom(p) if p == from)) {
            g.arrive_and_wait();
        }
        r
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self
            .take(|h| matches!(h, Hook::FailNoReplaceTo(p) if p == to))
            .is_some()
        {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Some((_, g)) = self.take(|h| matches!(h, Hook::BeforeRemove(p) if p == path)) {
            g.arrive_and_wait();
        }
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.inner.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.inner.available_space(path)
    }
}

/// Reads `key` as raw bytes through a fresh instance (a restart), closing it afterwards.
pub async fn read_after_restart(root: &Path, clock: &ManualClock, key: &[u8]) -> Option<Vec<u8>> {
    let c = fresh(root, clock).await;
    let v = c.get_bytes(key).await.unwrap().map(|v| v.to_vec());
    c.close().await.unwrap();
    v
}

pub fn short(v: &Option<Vec<u8>>) -> String {
    match v {
        None => "None".into(),
        Some(b) => String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned(),
    }
}
