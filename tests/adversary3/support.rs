//! Fixtures: the crate's [`TestCache`] under a `cache` directory (closed and reopened, or
//! dropped without a close, on the same directory); files planted with any format version,
//! flags and bytes; the counters that the values promises are stated in.

#![allow(dead_code)] // each module uses its own part

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::warm::format::{assemble, deflate, EntryMeta, FLAG_GZIP};
use answercache::warm::layout::{hex, key_hash};
pub use answercache::workload::Rng;
use answercache::{Builder, Encoding, Mode, Stats, TieredCache};
use serde::Serialize;

pub use crate::helpers::{entry_path, sick, wait_until, EACCES, EIO, T0};
pub use answercache::testing::{TestCache, TestDir};

/// A directory for these tests: the cache root is `cache` in a temporary directory, by its
/// canonical path.
pub fn dir() -> TestDir {
    TestDir::new().subdir("cache")
}

/// A cache with the test settings on a fresh [`dir`].
pub async fn open() -> TestCache {
    open_with(|b| b).await
}

/// A cache on a fresh [`dir`] with the settings `edit` leaves.
pub async fn open_with(edit: impl FnOnce(Builder) -> Builder) -> TestCache {
    dir().open_cache(edit).await
}

/// A second, independent instance on `f`'s directory (another process), with the test
/// settings as `edit` leaves them.
pub async fn second(f: &TestCache, edit: impl FnOnce(Builder) -> Builder) -> TieredCache {
    f.dir().open(edit(f.dir().builder())).await
}

/// The hit/miss counters the promises are stated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub hot: u64,
    pub warm: u64,
    pub queue: u64,
    pub misses: u64,
    pub decode_misses: u64,
    pub joined: u64,
    pub bypasses: u64,
    pub loader_calls: u64,
    pub cost_saved: u64,
}

pub fn counts(s: &Stats) -> Counts {
    Counts {
        hot: s.hot_hits,
        warm: s.warm_hits,
        queue: s.queue_hits,
        misses: s.misses,
        decode_misses: s.decode_misses,
        joined: s.joined,
        bypasses: s.bypasses,
        loader_calls: s.loader_calls,
        cost_saved: s.cost_saved,
    }
}

/// The first 16 hex digits of the key's hash: part of its entry file's name and of its temp
/// files' names (for `Rule::path_contains`).
pub fn hash16(key: &[u8]) -> String {
    hex(&key_hash(key))[..16].to_owned()
}

/// Writes a complete, checksum-valid entry file for `key` holding `value` (gzip), with the
/// given format version and flags, as if another process (or an older version) wrote it.
pub fn plant(root: &Path, key: &[u8], value: &[u8], version: u16, flags: u16, cost: u64) {
    let meta = EntryMeta {
        created_ms: now_ms(),
        expires_ms: 0,
        cost,
        encoding: Encoding::Raw, // the flags below are what the file says
    };
    let file = assemble(
        key,
        value.len() as u64,
        &deflate(value, 6).unwrap(),
        meta,
        version,
        flags,
    );
    let path = entry_path(root, key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, file).unwrap();
}

/// A version-1 file (no encoding recorded: "unrecorded").
pub fn plant_v1(root: &Path, key: &[u8], value: &[u8], cost: u64) {
    plant(root, key, value, 1, FLAG_GZIP, cost);
}

/// A version-2 file recording encoding code `code` (0 raw, 1 JSON, 2 bincode, 3 reserved).
pub fn plant_v2(root: &Path, key: &[u8], value: &[u8], code: u16, cost: u64) {
    plant(root, key, value, 2, FLAG_GZIP | (code << 1), cost);
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// bincode 2, standard configuration: what `Codec::Bincode` (and every typed value of a
/// version-1 file) holds.
pub fn bincode_of<V: Serialize + ?Sized>(v: &V) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
}

pub async fn wait_mode(cache: &TieredCache, mode: Mode) -> bool {
    wait_until(Duration::from_secs(10), || cache.mode() == mode).await
}

/// Any finite f64 bit pattern.
pub fn finite_f64(r: &mut Rng) -> f64 {
    loop {
        let f = f64::from_bits(r.next_u64());
        if f.is_finite() {
            return f;
        }
    }
}

/// Any finite f32 bit pattern.
pub fn finite_f32(r: &mut Rng) -> f32 {
    loop {
        let f = f32::from_bits((r.next_u64() >> 11) as u32);
        if f.is_finite() {
            return f;
        }
    }
}

/// A real file system that can stop the next `write_new` of a path containing a given text:
/// the test learns the call got there (`reached`), does what it needs meanwhile, then lets
/// the call fail with `errno` (`fail`). Every other call goes straight through.
#[derive(Debug, Default)]
pub struct GateFs {
    armed: std::sync::Mutex<Option<String>>,
    /// (reached, released)
    state: std::sync::Mutex<(bool, bool)>,
    cv: std::sync::Condvar,
    errno: std::sync::atomic::AtomicI32,
}

impl GateFs {
    pub fn new() -> Arc<GateFs> {
        Arc::new(GateFs::default())
    }

    /// Stops the next `write_new` whose path contains `text`; it fails with `errno` once
    /// released.
    pub fn arm(&self, text: &str, errno: i32) {
        self.errno.store(errno, std::sync::atomic::Ordering::SeqCst);
        *self.armed.lock().unwrap() = Some(text.to_owned());
    }

    pub async fn reached(&self, limit: Duration) -> bool {
        wait_until(limit, || self.state.lock().unwrap().0).await
    }

    pub fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }

    fn stop_here(&self, path: &Path) -> bool {
        let mut armed = self.armed.lock().unwrap();
        let hit = armed
            .as_ref()
            .is_some_and(|t| path.to_string_lossy().contains(t.as_str()));
        if hit {
            *armed = None;
        }
        hit
    }
}

impl answercache::Fs for GateFs {
    fn read_file(&self, path: &Path, max_len: u64) -> std::io::Result<answercache::fs::FileRead> {
        answercache::StdFs::new().read_file(path, max_len)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> std::io::Result<answercache::fs::FileRead> {
        answercache::StdFs::new().read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
        if self.stop_here(path) {
            let mut st = self.state.lock().unwrap();
            st.0 = true;
            self.cv.notify_all();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !st.1 && Instant::now() < deadline {
                st = self
                    .cv
                    .wait_timeout(st, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
            return Err(std::io::Error::from_raw_os_error(
                self.errno.load(std::sync::atomic::Ordering::SeqCst),
            ));
        }
        answercache::StdFs::new().write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        answercache::StdFs::new().rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        answercache::StdFs::new().rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        answercache::StdFs::new().remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        answercache::StdFs::new().remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        answercache::StdFs::new().create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        answercache::StdFs::new().sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<answercache::fs::DirEntryInfo>> {
        answercache::StdFs::new().read_dir(path)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        answercache::StdFs::new().available_space(path)
    }
}
