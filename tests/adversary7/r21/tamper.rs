//! The inline read's bytes differ from what the blocking pool then finds at the path: a file
//! System wrapper (`StdFs` underneath, page-cache reads on) substitutes other bytes for the
//! next `read_file_nowait` of one key, as if the page cache held another version of the file
//! than the one at the path when the pool reads it (a rename in between, a torn read).
//!
//! Whatever the inline read judged (a bomb at its second 64 KiB step, a checksum mismatch, an
//! expired entry, a newer format version, another key's file), the pool reads the path again
//! and acts on what is there *then*: a good file is served exactly, never deleted,
//! quarantined or counted as corrupt for the bytes the inline read saw. And a good file seen
//! inline is served even when the path now holds a bad one, which the next read quarantines.

use std::io;
use std::sync::Mutex;

use answercache::fs::{DirEntryInfo, FileRead};
use answercache::warm::format::{deflate, encode};
use answercache::{Fs, StdFs};

use super::*;

#[derive(Debug, Default)]
struct Substitute {
    inner: StdFs,
    /// The next nowait read of a path ending in `.0` answers `.1` instead.
    next: Mutex<Option<(String, Vec<u8>)>>,
    used: Mutex<u32>,
}

impl Substitute {
    fn arm(&self, root: &Path, key: &str, bytes: Vec<u8>) {
        let p = v2_path(root, key.as_bytes());
        *self.next.lock().unwrap() = Some((p.to_string_lossy().into_owned(), bytes));
    }
    fn used(&self) -> u32 {
        *self.used.lock().unwrap()
    }
}

impl Fs for Substitute {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.inner.read_file(path, max_len)
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
        let mut next = self.next.lock().unwrap();
        if next
            .as_ref()
            .is_some_and(|(p, _)| path.to_string_lossy() == p.as_str())
        {
            let (_, bytes) = next.take().unwrap();
            *self.used.lock().unwrap() += 1;
            return Ok(Some(FileRead::Data(bytes)));
        }
        drop(next);
        self.inner.read_file_nowait(path, max_len)
    }
}

async fn open_substitute() -> (TestCache, Arc<Substitute>) {
    let fs = Arc::new(Substitute::default());
    let cache = TestDir::new()
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
    (cache, fs)
}

async fn substitutions() {
    let (cache, fs) = open_substitute().await;
    let root = cache.root().to_owned();
    let good = text(2 * STEP + 1, 71);
    let n = good.len() as u64;
    let mut wrong = Vec::new();
    // The inline read sees `seen(key)`; the path holds the good file, written by the cache.
    type Seen = Box<dyn Fn(&str) -> Vec<u8>>;
    let cases: Vec<(&str, Seen)> = vec![
        (
            "a bomb at the second step",
            Box::new(move |k| {
                resealed(
                    k,
                    n - 1,
                    &deflate(&text(2 * STEP + 1, 71), 6).unwrap(),
                    now_ms(),
                )
            }),
        ),
        (
            "one byte short at the second step",
            Box::new(move |k| {
                resealed(
                    k,
                    n + 1,
                    &deflate(&text(2 * STEP + 1, 71), 6).unwrap(),
                    now_ms(),
                )
            }),
        ),
        (
            "a payload bit flipped (checksum)",
            Box::new(|k| {
                let mut f = encode(
                    k.as_bytes(),
                    &text(2 * STEP + 1, 71),
                    meta(now_ms() - 1000, 0),
                    6,
                )
                .unwrap();
                let l = f.len();
                f[l - 20] ^= 1;
                f
            }),
        ),
        (
            "expired",
            Box::new(|k| {
                entry_file(
                    k.as_bytes(),
                    &text(2 * STEP + 1, 71),
                    now_ms() - 5000,
                    now_ms() - 1000,
                )
            }),
        ),
        (
            "a newer format version",
            Box::new(|k| {
                let mut f = entry_file(k.as_bytes(), &text(2 * STEP + 1, 71), now_ms() - 1000, 0);
                f[8..10].copy_from_slice(&3u16.to_le_bytes());
                answercache::warm::format::reseal(&mut f);
                f
            }),
        ),
        (
            "another key's file",
            Box::new(|k| {
                entry_file(
                    format!("{k}:other").as_bytes(),
                    &text(2 * STEP + 1, 72),
                    now_ms() - 1000,
                    0,
                )
            }),
        ),
        ("one byte", Box::new(|_| vec![b'T'])),
    ];
    for (i, (name, seen)) in cases.iter().enumerate() {
        let key = format!("sub:{i}");
        park(&cache, &key, &good).await;
        let file = std::fs::read(v2_path(&root, key.as_bytes())).unwrap();
        fs.arm(&root, &key, seen(&key));
        let used = fs.used();
        let s0 = cache.stats();
        let got = cache.get_bytes(&key).await.unwrap();
        let s1 = cache.stats();
        let m = moved(&s0, &s1);
        if got.as_deref() != Some(&good[..])
            || m != POOL_HIT
            || fs.used() != used + 1
            || !file_is(&root, &key, &file)
            || s1.warm_expirations != s0.warm_expirations
            || s1.newer_version_skipped != s0.newer_version_skipped
        {
            wrong.push(format!(
                "{name}: got {:?}, moved {m:?}, substituted {}, file intact {}, reasons {:?}",
                got.map(|g| g.len()),
                fs.used() - used,
                file_is(&root, &key, &file),
                s1.corrupted_by_reason
            ));
        }
        evict_hot(&cache).await;
        // Read again, nothing substituted: a stepped hit of the same file.
        let s0 = cache.stats();
        let got = cache.get_bytes(&key).await.unwrap();
        if got.as_deref() != Some(&good[..]) || moved(&s0, &cache.stats()) != STEPPED_HIT {
            wrong.push(format!(
                "{name}: the next read: {:?}",
                moved(&s0, &cache.stats())
            ));
        }
        evict_hot(&cache).await;
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // The other way round: the inline read sees the good file, the path holds a bomb (its
    // fault at the second step). The get serves the good value it verified (a stepped hit);
    // the next read judges the path: a miss, counted once, quarantined.
    let key = "sub:reverse";
    park(&cache, key, &good).await;
    let good_file = std::fs::read(v2_path(&root, key.as_bytes())).unwrap();
    let bomb = resealed(key, n - 1, &deflate(&good, 6).unwrap(), now_ms());
    plant(&v2_path(&root, key.as_bytes()), &bomb);
    fs.arm(&root, key, good_file);
    let s0 = cache.stats();
    let got = cache.get_bytes(key).await.unwrap();
    assert!(got.as_deref() == Some(&good[..]));
    assert_eq!(moved(&s0, &cache.stats()), STEPPED_HIT);
    evict_hot(&cache).await;
    let s1 = cache.stats();
    assert_eq!(cache.get_bytes(key).await.unwrap(), None);
    let s2 = cache.stats();
    assert_eq!(moved(&s1, &s2), CORRUPT_MISS);
    assert_eq!(reason_count(&s2, "bomb"), 1);
    assert!(!v2_path(&root, key.as_bytes()).exists());
    assert_eq!(
        (s2.corrupted, s2.quarantined_files, s2.disk_errors),
        (1, 1, 0)
    );
    cache.flush().await.unwrap();
    index_matches_disk(&cache, &root).unwrap();
}

#[test]
fn the_pool_judges_the_path_not_the_inline_bytes_multi_thread() {
    mt(2).block_on(substitutions());
}

#[test]
fn the_pool_judges_the_path_not_the_inline_bytes_current_thread() {
    ct().block_on(substitutions());
}
