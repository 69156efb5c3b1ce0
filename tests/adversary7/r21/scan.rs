//! A stepped read that runs before the startup scan has indexed the directory (a restart on
//! a large cache: `open` returns before the scan, and gets are served meanwhile). A file
//! system wrapper (`StdFs` underneath, page-cache reads on) holds the scan's listing of
//! `v2/` until the test releases it, so the index is deterministically incomplete while a
//! get stops between two 64 KiB steps and the key is removed or rewritten, flushed.
//!
//! Once the scan is done, the index must equal the disk, as it must after the same
//! operations on a complete index (../stepped/FINDINGS.md, P1).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::Poll;

use answercache::fs::{DirEntryInfo, FileRead};
use answercache::{Fs, StdFs};

use super::*;

#[derive(Debug, Default)]
struct HoldScan {
    inner: StdFs,
    held: Mutex<bool>,
    released: Condvar,
    /// Reads of this path skip the page cache, and `read_file` of it, once it has the bytes,
    /// waits while `parked` before returning them (`read_done` set meanwhile).
    pool_only: Mutex<Option<std::path::PathBuf>>,
    parked: Mutex<bool>,
    unparked: Condvar,
    read_done: AtomicBool,
}

impl HoldScan {
    fn hold(&self, yes: bool) {
        *self.held.lock().unwrap() = yes;
        self.released.notify_all();
    }
    fn park_reads_of(&self, path: Option<std::path::PathBuf>) {
        *self.parked.lock().unwrap() = path.is_some();
        *self.pool_only.lock().unwrap() = path;
        self.unparked.notify_all();
    }
    fn is_pool_only(&self, path: &Path) -> bool {
        self.pool_only.lock().unwrap().as_deref() == Some(path)
    }
}

impl Fs for HoldScan {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        let read = self.inner.read_file(path, max_len);
        if self.is_pool_only(path) {
            self.read_done.store(true, Ordering::SeqCst);
            let mut parked = self.parked.lock().unwrap();
            while *parked {
                parked = self.unparked.wait(parked).unwrap();
            }
        }
        read
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
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        if path.components().any(|c| c.as_os_str() == "v2") {
            let mut held = self.held.lock().unwrap();
            while *held {
                held = self.released.wait(held).unwrap();
            }
        }
        self.inner.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.inner.available_space(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner.total_space(path)
    }
    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner.block_size(path)
    }
    fn nowait_reads(&self, root: &Path) -> bool {
        self.inner.nowait_reads(root)
    }
    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        if self.is_pool_only(path) {
            return Ok(None);
        }
        self.inner.read_file_nowait(path, max_len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Remove,
    /// A `remove` flushed while a blocking-pool read of the key (the page cache skipped)
    /// holds the file's bytes, before it decodes them.
    RemovePool,
    /// A `set` then a `remove`, flushed.
    SetRemove,
    Set,
    Nothing,
}

/// `key` (128 KiB + 1 of text, a few other keys beside it) written by a first run; a restart
/// whose scan is held; a get of `key` stopped after its first step; `op` on the key,
/// flushed; the get finished; the scan released. The index against the disk.
async fn round(op: Op) -> Result<(), String> {
    let fs = Arc::new(HoldScan::default());
    let mut cache = TestDir::new()
        .with_fs(fs.clone())
        .open_cache(|b| {
            b.hot_capacity_entries(1)
                .memory_only_after(1000)
                .io_timeout(Duration::from_secs(100))
                // These tests read the compressed files a `set` writes (stepped inline
                // reads); with background compression a fresh file is stored first.
                .compress_in_background(false)
        })
        .await;
    scanned(&cache).await;
    let root = cache.root().to_owned();
    let old = text(2 * STEP + 1, 101);
    let new = noise(20_000, 102);
    for i in 0..4 {
        cache
            .set_bytes(format!("other:{i}"), &text(1000, i)[..])
            .await
            .unwrap();
    }
    park(&cache, "key", &old).await;
    fs.hold(true);
    cache.reopen().await;
    if cache.stats().warm_index_complete {
        fs.hold(false);
        return Err(format!("{op:?}: the scan was not held"));
    }
    if op == Op::RemovePool {
        fs.park_reads_of(Some(v2_path(&root, b"key")));
        let c = cache.cache.clone();
        let task = tokio::spawn(async move { c.get_bytes("key").await.unwrap() });
        let read = answercache::testing::wait_until(Duration::from_secs(60), || {
            fs.read_done.load(Ordering::SeqCst)
        })
        .await;
        if !read {
            fs.park_reads_of(None);
            fs.hold(false);
            return Err(format!("{op:?}: the pool read did not come"));
        }
        cache.remove("key").await.unwrap();
        cache.flush().await.unwrap();
        fs.park_reads_of(None);
        let got = task.await.unwrap();
        if got.as_deref() != Some(&old[..]) && got.is_some() {
            fs.hold(false);
            return Err(format!(
                "{op:?}: the get answered {:?} bytes",
                got.map(|g| g.len())
            ));
        }
        fs.hold(false);
        scanned(&cache).await;
        cache.flush().await.unwrap();
        let index = index_matches_disk(&cache, &root);
        let from_hot = cache.get_bytes("key").await.unwrap();
        evict_hot(&cache).await;
        let from_disk = cache.get_bytes("key").await.unwrap();
        if from_hot.is_some() || from_disk.is_some() {
            return Err(format!("{op:?}: later gets answered the removed value"));
        }
        return index.map_err(|e| format!("{op:?}: after the scan: {e}"));
    }
    let mut fut = Box::pin(cache.get_bytes("key"));
    if poll_once(&mut fut).is_ready() {
        fs.hold(false);
        return Err(format!("{op:?}: not a stepped read"));
    }
    let want: Option<&[u8]> = match op {
        Op::Remove => {
            cache.remove("key").await.unwrap();
            None
        }
        Op::Set => {
            cache.set_bytes("key", &new[..]).await.unwrap();
            Some(&new[..])
        }
        Op::SetRemove => {
            cache.set_bytes("key", &new[..]).await.unwrap();
            cache.flush().await.unwrap();
            cache.remove("key").await.unwrap();
            None
        }
        Op::Nothing => Some(&old[..]),
        Op::RemovePool => unreachable!(),
    };
    cache.flush().await.unwrap();
    let got = loop {
        match poll_once(&mut fut) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    };
    drop(fut);
    if got.as_deref() != Some(&old[..]) && got.as_deref() != want {
        fs.hold(false);
        return Err(format!(
            "{op:?}: the get answered {:?} bytes",
            got.map(|g| g.len())
        ));
    }
    let inline = cache.stats().inline_reads;
    fs.hold(false);
    scanned(&cache).await;
    cache.flush().await.unwrap();
    let index = index_matches_disk(&cache, &root);
    // The key's state, from memory and then from the disk.
    let from_hot = cache.get_bytes("key").await.unwrap();
    evict_hot(&cache).await;
    let from_disk = cache.get_bytes("key").await.unwrap();
    if from_hot.as_deref() != want || from_disk.as_deref() != want {
        return Err(format!(
            "{op:?}: later gets answered {:?} / {:?} bytes",
            from_hot.map(|g| g.len()),
            from_disk.map(|g| g.len())
        ));
    }
    if inline != 1 {
        return Err(format!("{op:?}: {inline} inline reads, not 1"));
    }
    index.map_err(|e| format!("{op:?}: after the scan: {e}"))
}

/// Nothing happens to the key during the steps (a guard: the stepped hit indexes the file
/// before the scan, the scan keeps it, the index equals the disk).
#[test]
fn a_stepped_hit_before_the_scan() {
    ct().block_on(async { round(Op::Nothing).await.unwrap() });
}

/// A `set` flushed during the steps (a guard: the writer's entry is newer, the read leaves
/// it alone).
#[test]
fn a_set_during_a_stepped_read_before_the_scan() {
    ct().block_on(async { round(Op::Set).await.unwrap() });
}

/// A `remove` flushed during the steps, before the scan: the read's touch finds no entry,
/// as before its first step, and re-adds the file it read, which is gone (FINDINGS.md, V2).
#[test]
fn a_remove_during_a_stepped_read_before_the_scan() {
    ct().block_on(async { round(Op::Remove).await.unwrap() });
}

/// V2 on the blocking-pool path, made deterministic by the wrapper: the page cache skipped,
/// the pool's `read_file` holds the file's bytes while `remove` + `flush` run, then decodes
/// them and touches the index. The same `touch_unless_changed` re-adds the removed file.
#[test]
fn a_remove_during_a_blocking_pool_read_before_the_scan() {
    ct().block_on(async { round(Op::RemovePool).await.unwrap() });
}

/// A `set` flushed, then a `remove`, during the steps: the entry the writer made is gone
/// again, and the read re-adds the old file (V2).
#[test]
fn a_set_then_remove_during_a_stepped_read_before_the_scan() {
    ct().block_on(async { round(Op::SetRemove).await.unwrap() });
}
