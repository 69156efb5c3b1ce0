//! r31: adversarial tests of `Stats::inline_read_fallbacks` (c242d9f) through the public API,
//! and of the shared harness's `StateWatch::recovery` (68815f7).
//!
//! The promise under test (its doc in `src/stats.rs`): a warm-tier read that tried the page
//! cache on the calling thread and went on to the blocking pool because the page cache could
//! not answer without blocking is counted once in `inline_read_fallbacks`; such a read is
//! still answered, and counted in `warm_hits` or `misses` as its result says. A file read
//! inline that turns out corrupt, expired, too large to inflate on the worker, or not a regular
//! file is no fallback. Every get here is exactly one of {inline read, fallback, neither}.
//!
//! Tests that count page-cache reads on the real file system hold `no_mounts_async` (a mount
//! anywhere makes `RESOLVE_CACHED` answer EAGAIN). Findings are `#[ignore]`d with their id;
//! see `REVIEW_R31_FINDINGS.md`.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use answercache::fs::{DirEntryInfo, FileRead, StdFs};
use answercache::testing::{real_fs, FaultFs};
use answercache::workload::Rng;
use answercache::{Fs, Stats};

use crate::support::{hex_of, no_mounts_async, open, Gate, OnDisk, TestCache};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// What moved between two snapshots: (inline reads, fallbacks, warm hits, misses).
fn moved(before: &Stats, after: &Stats) -> (u64, u64, u64, u64) {
    (
        after.inline_reads - before.inline_reads,
        after.inline_read_fallbacks - before.inline_read_fallbacks,
        after.warm_hits - before.warm_hits,
        after.misses - before.misses,
    )
}

/// Waits (30 s at most) for the startup scan: after it, nothing of the cache reads an entry
/// file behind the test's back.
async fn scanned(h: &TestCache) {
    assert!(
        answercache::testing::wait_until(Duration::from_secs(30), || h.stats().warm_index_complete)
            .await,
        "startup scan"
    );
}

/// Drops the file's pages from the page cache, until `fincore` reports none resident (as
/// `inline_reads::evict_from_page_cache`).
fn evict_from_page_cache(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    for _ in 0..100 {
        rustix::fs::fadvise(f.as_fd(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
        if resident_bytes(path) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the kernel kept {} in the page cache", path.display());
}

fn resident_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "fincore failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The fan-out directory name of `key` (`v2/<ab>`).
fn fan_out(key: &str) -> String {
    hex_of(key.as_bytes())[..2].to_owned()
}

/// The fan-out directories under `v2/`, listed (a listing creates no dentry for a name that
/// is not there, unlike a `stat`).
fn fan_outs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The real file system, except that the page cache never answers: `nowait_reads` says yes
/// and every `read_file_nowait` answers `Ok(None)` ("would block"), so every read of the
/// cache is a fallback. Records the thread of every nowait read and of every blocking read of
/// an entry file (under `v2/`); a blocking read of an entry whose name holds `pause` waits
/// at `gate` (once the read is done) until the test opens it.
#[derive(Debug)]
struct NoPageCache {
    inner: StdFs,
    nowait_threads: Mutex<Vec<ThreadId>>,
    entry_read_threads: Mutex<Vec<ThreadId>>,
    entry_reads_done: AtomicU64,
    pause: Option<(String, Arc<Gate>)>,
}

impl NoPageCache {
    fn new(pause: Option<(String, Arc<Gate>)>) -> NoPageCache {
        NoPageCache {
            inner: real_fs(),
            nowait_threads: Mutex::default(),
            entry_read_threads: Mutex::default(),
            entry_reads_done: AtomicU64::new(0),
            pause,
        }
    }

    fn is_entry(path: &Path) -> bool {
        path.components().any(|c| c.as_os_str() == "v2")
    }
}

impl Fs for NoPageCache {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        if !Self::is_entry(path) {
            return self.inner.read_file(path, max_len);
        }
        self.entry_read_threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        let r = self.inner.read_file(path, max_len);
        if let Some((name, gate)) = &self.pause {
            if path.to_string_lossy().contains(name.as_str()) {
                gate.wait_here();
            }
        }
        self.entry_reads_done.fetch_add(1, Ordering::SeqCst);
        r
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        self.inner.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
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
    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner.total_space(path)
    }
    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner.block_size(path)
    }
    fn nowait_reads(&self, _root: &Path) -> bool {
        true
    }
    fn read_file_nowait(&self, _path: &Path, _max_len: u64) -> io::Result<Option<FileRead>> {
        self.nowait_threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------
// A fallback reaches the blocking pool, is answered, and is counted once
// ---------------------------------------------------------------------------------------

/// On a current-thread runtime every step of a get that runs on the caller's thread runs on
/// the test's thread: each nowait attempt is made there, and each fallback's blocking read
/// of the entry runs on another thread (the blocking pool), with the exact value answered.
/// 5 hits and 1 miss: 6 fallbacks, 0 inline reads, 5 warm hits, 1 miss.
#[tokio::test(flavor = "current_thread")]
async fn every_fallback_is_read_on_the_blocking_pool_and_answered_exactly() {
    let fs = Arc::new(NoPageCache::new(None));
    let h = open(|b| b.hot_capacity_bytes(1).fs(fs.clone())).await;
    for i in 0..5 {
        h.set(format!("k{i}"), &format!("value {i}")).await.unwrap();
    }
    h.flush().await.unwrap();
    scanned(&h).await;
    let before = h.stats();
    fs.nowait_threads.lock().unwrap().clear();
    fs.entry_read_threads.lock().unwrap().clear();
    let me = std::thread::current().id();
    for i in 0..5 {
        assert_eq!(
            h.get::<String>(format!("k{i}")).await.unwrap(),
            Some(format!("value {i}"))
        );
    }
    assert_eq!(h.get::<String>("never-set").await.unwrap(), None);
    assert_eq!(moved(&before, &h.stats()), (0, 6, 5, 1));
    let nowait = fs.nowait_threads.lock().unwrap().clone();
    assert_eq!(
        nowait,
        vec![me; 6],
        "every nowait attempt on the caller's thread"
    );
    let blocking = fs.entry_read_threads.lock().unwrap().clone();
    assert_eq!(blocking.len(), 6, "one blocking read per fallback");
    assert_eq!(
        blocking.iter().filter(|&&t| t == me).count(),
        0,
        "no blocking read on the caller's thread"
    );
}

/// 16 concurrent gets of one key whose every page-cache attempt falls back: 16 fallbacks,
/// 16 warm hits with the exact value, no inline read: none counted twice, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fallbacks_of_one_key_count_once_each() {
    let fs = Arc::new(NoPageCache::new(None));
    let h = open(|b| b.hot_capacity_bytes(1).fs(fs.clone())).await;
    h.set("one", &"the one value".to_owned()).await.unwrap();
    h.flush().await.unwrap();
    scanned(&h).await;
    let before = h.stats();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let c = h.cache.clone();
            tokio::spawn(async move { c.get::<String>("one").await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().as_deref(), Some("the one value"));
    }
    assert_eq!(moved(&before, &h.stats()), (0, 16, 16, 0));
}

/// The same on the real page cache: 8 concurrent gets of a key evicted from the page cache.
/// Which of them fall back depends on when the first blocking read brings the page back;
/// each is exactly one of the two (the sum is exact), and at least the first falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_of_an_evicted_key_are_each_inline_or_a_fallback() {
    let _no_mounts = no_mounts_async().await;
    let h = open(|b| b.hot_capacity_bytes(1).compress_in_background(false)).await;
    let value = "evicted ".repeat(100);
    h.set("ev", &value).await.unwrap();
    h.flush().await.unwrap();
    scanned(&h).await;
    evict_from_page_cache(&h.entry_path("ev"));
    let before = h.stats();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = h.cache.clone();
            tokio::spawn(async move { c.get::<String>("ev").await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().as_ref(), Some(&value));
    }
    let (inline, fallbacks, hits, misses) = moved(&before, &h.stats());
    assert_eq!((inline + fallbacks, hits, misses), (8, 8, 0));
    assert!(fallbacks >= 1, "the first read found the page evicted");
}

// ---------------------------------------------------------------------------------------
// A get dropped while its fallback read is on the blocking pool
// ---------------------------------------------------------------------------------------

/// Opens a cache on [`NoPageCache`] whose blocking read of `slow` pauses, drops a get of
/// `slow` (a 200 ms `timeout`) while its read waits, lets the read finish, and returns the
/// stats before the get and after the read is done (plus 100 ms).
async fn dropped_fallback() -> (TestCache, Arc<NoPageCache>, Stats, Stats) {
    let gate = Arc::new(Gate::default());
    let fs = Arc::new(NoPageCache::new(Some((hex_of(b"slow"), gate.clone()))));
    let h = open(|b| {
        b.hot_capacity_bytes(1)
            .io_timeout(Duration::from_secs(60))
            .fs(fs.clone())
    })
    .await;
    h.set("slow", &"slow value".to_owned()).await.unwrap();
    h.flush().await.unwrap();
    scanned(&h).await;
    let before = h.stats();
    let got = tokio::time::timeout(Duration::from_millis(200), h.get::<String>("slow")).await;
    assert!(got.is_err(), "the get was dropped: {got:?}");
    let g = gate.clone();
    tokio::task::spawn_blocking(move || g.wait_for_caller())
        .await
        .unwrap();
    // The read waits at the gate: its one fallback counted, nothing else.
    assert_eq!(moved(&before, &h.stats()), (0, 1, 0, 0));
    gate.open();
    let f = fs.clone();
    assert!(
        answercache::testing::wait_until(Duration::from_secs(10), || {
            f.entry_reads_done.load(Ordering::SeqCst) == 1
        })
        .await,
        "the paused read finished"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = h.stats();
    (h, fs, before, after)
}

/// A get dropped while its fallback read runs on the blocking pool counts that fallback once:
/// the read finishing afterwards counts nothing more (no second fallback, no inline read),
/// and the next get of the key counts its own fallback and its hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_dropped_during_its_fallback_read_counts_that_fallback_once() {
    let (h, fs, before, after) = dropped_fallback().await;
    assert_eq!(moved(&before, &after), (0, 1, 0, 0));
    assert_eq!(fs.entry_reads_done.load(Ordering::SeqCst), 1);
    assert_eq!(
        h.get::<String>("slow").await.unwrap().as_deref(),
        Some("slow value")
    );
    assert_eq!(moved(&before, &h.stats()), (0, 2, 1, 0));
}

/// F1 (a): the doc said a fallback "is answered, as any, and counted in `warm_hits` or
/// `misses` as its result says". A dropped get's fallback is counted and its read runs to
/// the end, but it is counted in neither. Fixed in the doc (a get dropped meanwhile is
/// counted among the fallbacks only); this test, found ignored, asserts that since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_gets_fallback_is_counted_as_a_fallback_only() {
    let (_h, _fs, before, after) = dropped_fallback().await;
    let (inline, fallbacks, hits, misses) = moved(&before, &after);
    assert_eq!((inline, fallbacks, hits + misses), (0, 1, 0));
}

/// F1 (b): a namespace's first use reads its generation record from the warm tier (a name
/// never looked up: the page cache cannot answer, a fallback) and counts no hit and no miss.
/// Fixed in the doc (the cache's own lookups count among the fallbacks only); found
/// ignored, asserts that since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_generation_read_that_falls_back_is_counted_as_a_fallback_only() {
    let _no_mounts = no_mounts_async().await;
    let h = open(|b| b.hot_capacity_bytes(1).compress_in_background(false)).await;
    scanned(&h).await;
    let before = h.stats();
    let ns = h.namespace("r31").unwrap();
    ns.generation().await.unwrap();
    let (inline, fallbacks, hits, misses) = moved(&before, &h.stats());
    assert_eq!((inline, fallbacks, hits + misses), (0, 1, 0));
}

// ---------------------------------------------------------------------------------------
// Missing names, on the real page cache
// ---------------------------------------------------------------------------------------

/// A name never looked up is not in the kernel's name cache, whether its fan-out directory
/// exists or not: the first get falls back (one fallback, one miss). The blocking read's
/// lookup leaves a negative dentry: the second get is a miss answered on the calling thread,
/// counted as neither an inline read nor a fallback. A fan-out directory the test looked up
/// (a `stat`) before any get is a negative dentry already: its first get is neither too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_name_falls_back_once_then_misses_inline_uncounted() {
    let _no_mounts = no_mounts_async().await;
    let h = open(|b| b.hot_capacity_bytes(1).compress_in_background(false)).await;
    h.set("present", &1).await.unwrap();
    h.flush().await.unwrap();
    scanned(&h).await;
    let dirs = fan_outs(h.root());
    assert!(dirs.contains(&fan_out("present")), "{dirs:?}");
    let same = (0..)
        .map(|i| format!("same{i}"))
        .find(|k| fan_out(k) == fan_out("present"))
        .unwrap();
    let (absent, looked_up) = {
        let mut names = (0..)
            .map(|i| format!("absent{i}"))
            .filter(|k| !dirs.contains(&fan_out(k)));
        let a = names.next().unwrap();
        let b = names.find(|k| fan_out(k) != fan_out(&a)).unwrap();
        (a, b)
    };
    // The fan-out directory of `looked_up` is looked up (and found missing) by the test.
    let looked_dir = h.root().join("v2").join(fan_out(&looked_up));
    assert!(!looked_dir.exists());

    for (key, first) in [
        (&same, (0, 1, 0, 1)),
        (&absent, (0, 1, 0, 1)),
        (&looked_up, (0, 0, 0, 1)),
    ] {
        let before = h.stats();
        assert_eq!(h.get::<i32>(key.as_str()).await.unwrap(), None);
        assert_eq!(moved(&before, &h.stats()), first, "{key}: first get");
        let before = h.stats();
        assert_eq!(h.get::<i32>(key.as_str()).await.unwrap(), None);
        assert_eq!(
            moved(&before, &h.stats()),
            (0, 0, 0, 1),
            "{key}: second get"
        );
    }
    assert_eq!(fan_outs(h.root()), dirs, "a miss makes no directory");
}

// ---------------------------------------------------------------------------------------
// What sits at the entry path, on the real page cache
// ---------------------------------------------------------------------------------------

/// A directory, a FIFO and a symlink (to another key's valid entry) at a key's entry path,
/// and a file longer than the largest valid entry: each is answered on the calling thread
/// without reading (`NotRegular`, `TooLarge`), and is neither an inline read nor a
/// fallback; the blocking path quarantines it, and the get is one miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_a_readable_entry_is_neither_inline_nor_a_fallback() {
    let _no_mounts = no_mounts_async().await;
    let h = open(|b| {
        b.hot_capacity_bytes(1)
            .max_entry_bytes(4096)
            .compress_in_background(false)
    })
    .await;
    h.set("anchor", &"anchor value".to_owned()).await.unwrap();
    h.flush().await.unwrap();
    scanned(&h).await;
    let plant_dir = |key: &str| -> PathBuf {
        let p = h.entry_path(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    let dir = plant_dir("as-dir");
    std::fs::create_dir(&dir).unwrap();
    let fifo = plant_dir("as-fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let link = plant_dir("as-link");
    std::os::unix::fs::symlink(h.entry_path("anchor"), &link).unwrap();
    let big = plant_dir("oversize");
    // Sparse: its length alone is over the largest valid entry of 4 KiB.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();

    for key in ["as-dir", "as-fifo", "as-link", "oversize"] {
        let before = h.stats();
        assert_eq!(h.get::<String>(key).await.unwrap(), None, "{key}");
        assert_eq!(moved(&before, &h.stats()), (0, 0, 0, 1), "{key}");
    }
    let s = h.stats();
    assert_eq!(s.corrupted_by_reason.get("not-a-regular-file"), Some(&3));
    assert_eq!(s.corrupted_by_reason.get("oversize"), Some(&1));
    // The anchor is still served, inline (its page is cached).
    let before = h.stats();
    assert_eq!(
        h.get::<String>("anchor").await.unwrap().as_deref(),
        Some("anchor value")
    );
    assert_eq!(moved(&before, &h.stats()), (1, 0, 1, 0));
}

// ---------------------------------------------------------------------------------------
// A file out of the page cache is a fallback whatever it turns out to hold
// ---------------------------------------------------------------------------------------

/// Every read whose file is out of the page cache is one fallback, whatever the blocking
/// path then finds: a small valid entry (a hit; read again, now cached: inline), a file over
/// 64 KiB (a hit), a corrupt entry (a miss, quarantined) and an expired one (a miss,
/// deleted). In the page cache, the corrupt and expired ones would be neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_out_of_the_page_cache_is_one_fallback_whatever_the_file_holds() {
    let _no_mounts = no_mounts_async().await;
    let h = open(|b| b.hot_capacity_bytes(1).compress_in_background(false)).await;
    let mut rng = Rng::new(31);
    let big = rng.bytes(64 * 1024);
    let small = "small value ".repeat(50);
    h.set("small", &small).await.unwrap();
    h.set_bytes("big", &big).await.unwrap();
    h.set("corrupt", &"to be corrupted".to_owned())
        .await
        .unwrap();
    h.set_with_ttl("short", "ten seconds", Duration::from_secs(10))
        .await
        .unwrap();
    h.flush().await.unwrap();
    scanned(&h).await;
    assert!(std::fs::metadata(h.entry_path("big")).unwrap().len() > 64 * 1024);
    // Corrupted in place (same inode), written back to the device, then evicted.
    {
        use std::io::Write;
        let path = h.entry_path("corrupt");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(&bytes).unwrap();
        f.sync_all().unwrap();
    }
    for key in ["small", "big", "corrupt", "short"] {
        evict_from_page_cache(&h.entry_path(key));
    }

    let before = h.stats();
    assert_eq!(h.get::<String>("small").await.unwrap(), Some(small.clone()));
    assert_eq!(moved(&before, &h.stats()), (0, 1, 1, 0), "small, evicted");
    let before = h.stats();
    assert_eq!(h.get::<String>("small").await.unwrap(), Some(small));
    assert_eq!(
        moved(&before, &h.stats()),
        (1, 0, 1, 0),
        "small, cached again"
    );

    let before = h.stats();
    assert_eq!(h.get_bytes("big").await.unwrap().as_deref(), Some(&big[..]));
    assert_eq!(moved(&before, &h.stats()), (0, 1, 1, 0), "big, evicted");

    let before = h.stats();
    assert_eq!(h.get::<String>("corrupt").await.unwrap(), None);
    let s = h.stats();
    assert_eq!(moved(&before, &s), (0, 1, 0, 1), "corrupt, evicted");
    assert_eq!(s.corrupted_by_reason.get("checksum"), Some(&1));

    h.advance(Duration::from_secs(11));
    let before = h.stats();
    assert_eq!(h.get::<String>("short").await.unwrap(), None);
    let s = h.stats();
    assert_eq!(moved(&before, &s), (0, 1, 0, 1), "expired, evicted");
    assert_eq!(s.warm_expirations - before.warm_expirations, 1);
    assert!(!h.on_disk("short"));
}

/// F3: `inline_reads::page_cache_hits_finish_inline_and_everything_else_takes_the_timed_path`
/// evicted `small0` once the startup scan was complete and asserted exactly one fallback for
/// its next read. Its values (`markdown(4096)`) are written stored and compressed in the
/// background (the default) 50 ms after the last write: the compactor reads the file and
/// renames a fresh one into place, back in the page cache, and on a loaded runner that could
/// fall between the eviction and the read (the read was then inline; shown by this test as
/// first written, with the compaction waited for after the eviction). Fixed in that test: it
/// waits for the compaction backlog to drain before it evicts. This test, found ignored,
/// asserts the fixed order since: compacted first, evicted, then exactly one fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_after_the_compaction_is_one_fallback() {
    let _no_mounts = no_mounts_async().await;
    let h = open(|b| b.hot_capacity_bytes(1)).await;
    let mut rng = Rng::new(7);
    let value = answercache::workload::markdown(&mut rng, 4096);
    h.set("small0", &value).await.unwrap();
    h.flush().await.unwrap();
    scanned(&h).await;
    assert!(
        answercache::testing::wait_until(Duration::from_secs(10), || {
            let s = h.stats();
            s.warm_compactions == 1 && s.warm_compaction_backlog == 0
        })
        .await,
        "the compaction"
    );
    let path = h.entry_path("small0");
    evict_from_page_cache(&path);
    let before = h.stats();
    assert_eq!(h.get::<String>("small0").await.unwrap(), Some(value));
    assert_eq!(moved(&before, &h.stats()), (0, 1, 1, 0));
    assert_eq!(
        h.stats().warm_compactions,
        1,
        "no compaction after the eviction"
    );
}

// ---------------------------------------------------------------------------------------
// No page-cache attempt: never a fallback
// ---------------------------------------------------------------------------------------

/// Reads that never try the page cache are never fallbacks: with `page_cache_reads(false)`
/// and on a fault-injecting `Fs` (which keeps nowait reads off), an evicted entry's hit and
/// a never-looked-up name's miss count no inline read and no fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_cache_attempt_is_never_a_fallback() {
    let off = open(|b| b.hot_capacity_bytes(1).page_cache_reads(false)).await;
    let faulty = open(|b| b.hot_capacity_bytes(1).fs(Arc::new(FaultFs::std()))).await;
    for h in [&off, &faulty] {
        h.set("k", &"v".to_owned()).await.unwrap();
        h.flush().await.unwrap();
        scanned(h).await;
        evict_from_page_cache(&h.entry_path("k"));
        let before = h.stats();
        assert_eq!(h.get::<String>("k").await.unwrap().as_deref(), Some("v"));
        assert_eq!(h.get::<String>("never-looked-up").await.unwrap(), None);
        assert_eq!(moved(&before, &h.stats()), (0, 0, 1, 1));
        assert_eq!(h.stats().inline_read_fallbacks, 0);
    }
}

// ---------------------------------------------------------------------------------------
// `StateWatch::recovery` (tests/shared/support/cache.rs), on the in-memory shared server
// ---------------------------------------------------------------------------------------

#[cfg(feature = "redis")]
#[allow(
    dead_code,
    reason = "the shared harness's module, compiled here for its StateWatch only"
)]
#[path = "../shared/support/cache.rs"]
mod shared_cache;

/// Stand-ins for what `tests/shared/support/cache.rs` takes from its parent module (only
/// `poll_until` is the real one's copy; the rest serve the traffic code no test here runs).
#[cfg(feature = "redis")]
#[allow(dead_code, reason = "see the module doc")]
mod stand_ins {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// As `tests/shared/support::poll_until`.
    pub(crate) async fn poll_until(
        limit: Duration,
        mut cond: impl FnMut() -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if cond() {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Outcome {
        Hit,
        Miss,
        Wrong,
        Error,
    }

    #[derive(Debug, Default)]
    pub(crate) struct Tally {
        total: AtomicU64,
    }

    pub(crate) struct Row;

    impl Tally {
        pub(crate) fn record(&self, _outcome: Outcome, _latency: Duration, _threshold: Duration) {
            self.total.fetch_add(1, Ordering::Relaxed);
        }
        pub(crate) fn total(&self) -> u64 {
            self.total.load(Ordering::Relaxed)
        }
        pub(crate) fn row(&self, _test: &str) -> Row {
            Row
        }
    }

    pub(crate) fn value(key: &str, seq: u64, len: usize) -> Vec<u8> {
        format!("{key}|{seq}|{len}|").into_bytes()
    }

    pub(crate) fn check_value(key: &str, bytes: &[u8]) -> Result<u64, String> {
        Err(format!("{key}: {} bytes not checked here", bytes.len()))
    }
}

#[cfg(feature = "redis")]
use stand_ins::{check_value, poll_until, value, Outcome, Row, Tally};

#[cfg(feature = "redis")]
mod recovery {
    use std::time::{Duration, Instant};

    use answercache::testing::{MemoryShared, SharedFault};
    use answercache::BreakerState;

    use super::shared_cache::StateWatch;
    use crate::support::{open, TestCache};

    /// How long the shared breaker stays open before its probe.
    const OPEN: Duration = Duration::from_millis(400);

    async fn cache(server: &MemoryShared) -> TestCache {
        let cfg = server
            .config()
            .prefix("r31")
            .timeout(Duration::from_millis(200))
            .failure_threshold(1)
            .open_timeout(OPEN)
            .max_open_timeout(OPEN)
            .namespace_sync_interval(Duration::ZERO);
        let h = open(|b| b.hot_capacity_bytes(1).shared(cfg)).await;
        assert!(
            super::poll_until(Duration::from_secs(5), || h.shared_state()
                == Some(BreakerState::Closed))
            .await
            .is_some(),
            "the shared breaker closes at start"
        );
        h
    }

    /// Waits (5 s at most) until the watch's last record is `state`.
    async fn seen(watch: &StateWatch, state: BreakerState) {
        let ok = super::poll_until(Duration::from_secs(5), || {
            watch.seen().last().and_then(|s| s.state) == Some(state)
        })
        .await;
        assert!(ok.is_some(), "{state:?} never seen: {}", watch.timeline());
    }

    /// Fails every server call until the breaker is seen Open (gets of absent keys fail).
    async fn outage(server: &MemoryShared, h: &TestCache, watch: &StateWatch, n: &mut u32) {
        server.fail(None, SharedFault::Io, None);
        // A get of an absent key goes to the server and fails: the breaker opens.
        *n += 1;
        assert_eq!(h.get_bytes(format!("absent{n}")).await.unwrap(), None);
        let ok = super::poll_until(Duration::from_secs(5), || {
            h.shared_state() == Some(BreakerState::Open)
        })
        .await;
        assert!(ok.is_some(), "{}", watch.timeline());
        seen(watch, BreakerState::Open).await;
    }

    /// The first `Closed` seen at or after `t`, measured from `t`: the recovery the scenario
    /// had, by the watch's own record.
    fn closed_after(watch: &StateWatch, t: Instant) -> Duration {
        watch
            .first(BreakerState::Closed, t)
            .unwrap_or_else(|| panic!("no Closed after the heal: {}", watch.timeline()))
            .at
            - t
    }

    /// One outage, healed; the heal's instant taken before the breaker closed: the recovery
    /// is the close's distance from it. Taken again after the close (a test task that woke
    /// late): zero, as documented.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovery_of_one_outage_is_measured_from_the_heal() {
        let server = MemoryShared::new();
        let h = cache(&server).await;
        let watch = StateWatch::start(&h);
        let mut n = 0;
        outage(&server, &h, &watch, &mut n).await;
        let t_heal = Instant::now();
        server.heal();
        seen(&watch, BreakerState::Closed).await;
        let late = Instant::now();
        assert_eq!(
            watch.recovery(t_heal, t_heal),
            Some(closed_after(&watch, t_heal)),
            "{}",
            watch.timeline()
        );
        assert_eq!(watch.recovery(t_heal, late), Some(Duration::ZERO));
    }

    /// Two outages: the recovery of the second, asked with the second's fault instant, is
    /// not the first's close.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovery_of_a_later_outage_ignores_an_earlier_close() {
        let server = MemoryShared::new();
        let h = cache(&server).await;
        let watch = StateWatch::start(&h);
        let mut n = 0;
        outage(&server, &h, &watch, &mut n).await;
        server.heal();
        seen(&watch, BreakerState::Closed).await;
        outage(&server, &h, &watch, &mut n).await;
        let t_heal = Instant::now();
        server.heal();
        seen(&watch, BreakerState::Closed).await;
        assert_eq!(
            watch.recovery(t_heal, t_heal),
            Some(closed_after(&watch, t_heal)),
            "{}",
            watch.timeline()
        );
    }

    /// F2: a fault that flaps (the server answers once between two failures, as a slow or
    /// lossy link may) closes the breaker before the heal, then opens it again; the heal comes
    /// 50 ms after the second Open and the breaker closes only at its next probe, ~350 ms
    /// after the heal. `recovery(fault, heal)`, as first written, took the close *before* the
    /// heal and reported zero, so a slow recovery read as an instant one (t04 asserts
    /// `recovery <= limit`). Fixed: `recovery(heal_began, healed)` searches from an instant
    /// taken before the heal; this test, found ignored, runs since.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovery_of_a_flapping_outage_is_the_close_after_the_heal() {
        let server = MemoryShared::new();
        let h = cache(&server).await;
        let watch = StateWatch::start(&h);
        let mut n = 0;
        outage(&server, &h, &watch, &mut n).await;
        // The server answers the probe: Closed, mid-outage.
        server.heal();
        seen(&watch, BreakerState::Closed).await;
        // ... and fails again.
        outage(&server, &h, &watch, &mut n).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t_heal = Instant::now();
        server.heal();
        seen(&watch, BreakerState::Closed).await;
        let real = closed_after(&watch, t_heal);
        assert!(real >= Duration::from_millis(100), "{}", watch.timeline());
        assert_eq!(
            watch.recovery(t_heal, t_heal),
            Some(real),
            "{}",
            watch.timeline()
        );
    }
}
