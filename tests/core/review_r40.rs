//! Review r40 of 4bd2dea (a no-sync overwrite *exchanges* the new file with the older one,
//! `renameat2(RENAME_EXCHANGE)`, then deletes the older one at the temp path) and 25227d0
//! (`LinuxFs::remove_dir_all` is a rustix `remove_tree`: symlinks not followed, depth bound
//! 64). Adversarial tests through the public API, on real directories:
//!
//! - the older file left at its temp name when its deletion fails: never served by this
//!   instance, by another instance opened meanwhile, after a `remove`, after a restart without
//!   `close`; swept at the next clean start;
//! - a directory, a symlink (to an outside file and to an outside directory) or a FIFO planted
//!   at an indexed key's entry path before its overwrite: the exchange swaps whatever is there
//!   to the temp path; nothing outside the cache directory may be deleted or written, the new
//!   answer is served (also after a restart), and `clear` leaves no entry;
//! - a file system without exchange (an `Fs` that keeps the trait's default, `Unsupported`):
//!   overwrites correct, no disk error counted, nothing left beside the entries;
//! - `clear` over fan-out directories holding hostile trees: a symlink as a fan-out directory,
//!   symlink loops, a planted tree deeper than `remove_tree`'s bound of 64.
//!
//! Findings: `REVIEW_R40_FINDINGS.md`.

use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use answercache::fs::{DirEntryInfo, FileRead};
use answercache::testing::{disk_errors, real_fs, temp_files, Fault, FsOp, Rule};
use answercache::{Durability, Fs, WritePolicy};

use crate::support::*;

const EIO: i32 = 5;

/// No-sync, write-behind: every overwrite of an indexed key goes through the exchange.
fn no_sync(b: answercache::Builder) -> answercache::Builder {
    b.durability(Durability::NoSync)
        .write_policy(WritePolicy::WriteBehind)
        .failure_threshold(1000)
}

async fn value(cache: &answercache::TieredCache, key: &str) -> Option<Vec<u8>> {
    cache.get_bytes(key).await.unwrap().map(|v| v.to_vec())
}

async fn set_flushed(cache: &answercache::TieredCache, key: &str, v: &[u8]) {
    cache.set_bytes(key, v.to_vec()).await.unwrap();
    cache.flush().await.unwrap();
}

/// The names of the entry files (64 hex) anywhere under `<root>/v2`.
fn entry_files(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|(p, is_dir)| {
            !is_dir
                && p.starts_with("v2")
                && p.file_name().is_some_and(|n| {
                    n.len() == 64 && n.to_string_lossy().bytes().all(|c| c.is_ascii_hexdigit())
                })
        })
        .map(|(p, _)| p)
        .collect()
}

/// Every name (files, directories, links) below `dir`, relative to it, sorted; no link is
/// followed.
fn tree(dir: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                go(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

/// `n` keys whose entry files share the fan-out directory of `first`.
fn keys_sharing_a_fan_out(first: &str, n: usize) -> Vec<String> {
    let fan = hex_of(first.as_bytes())[..2].to_owned();
    let mut keys = vec![first.to_owned()];
    let mut i = 0u64;
    while keys.len() < n {
        let k = format!("{first}/{i}");
        if hex_of(k.as_bytes())[..2] == fan {
            keys.push(k);
        }
        i += 1;
    }
    keys
}

// ---------------------------------------------------------------------------------------
// The older file at its temp name when its deletion fails.
// ---------------------------------------------------------------------------------------

/// The overwrite's deletion of the older file (now at the temp path) fails with EIO, always:
/// the older answer sits, valid and complete, under a temp name beside the entry. It must
/// never be served: not by this instance, not by a second instance whose start-up scan meets
/// it while its writer lives, not after the key is removed, not after a restart without
/// `close` (the writer's instance is still alive then); a clean restart sweeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_file_left_at_its_temp_name_is_never_served_and_swept_at_a_clean_start() {
    let mut cache = dir().fault_fs().open_cache(no_sync).await;
    set_flushed(&cache, "k", b"first answer").await;
    let first = std::fs::read(cache.entry_path("k")).unwrap();
    cache.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .path_ends_with(".tmp"),
    );
    set_flushed(&cache, "k", b"second answer").await;
    let left = temp_files(cache.root());
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(std::fs::read(cache.root().join(&left[0])).unwrap(), first);
    assert_eq!(
        value(&cache, "k").await.as_deref(),
        Some(&b"second answer"[..])
    );

    // Another instance, opened while the leftover's writer lives.
    let other = cache.open_another().await;
    assert_eq!(
        value(&other, "k").await.as_deref(),
        Some(&b"second answer"[..])
    );
    other.close().await.unwrap();

    // Removed: the older file under its temp name must not come back anywhere.
    assert!(cache.remove("k").await.unwrap());
    cache.flush().await.unwrap();
    assert_eq!(value(&cache, "k").await, None);
    let other = cache.open_another().await;
    assert_eq!(value(&other, "k").await, None);
    other.close().await.unwrap();
    assert_eq!(entry_files(cache.root()), Vec::<PathBuf>::new());

    // A restart without close: the dropped instance's leftover is still there (its writer
    // was alive at the scan), never served.
    cache.fs().clear_rules();
    cache.restart_without_close(no_sync).await;
    assert_eq!(value(&cache, "k").await, None);

    // A clean restart once the writer is gone sweeps its leftover. The instance dropped
    // without `close` ends a moment after the drop (its background tasks see it), not at
    // once: a restart before that finds its writer alive and leaves the file (1 run in about
    // 6 did), so restarts are retried until one sweeps, for at most 5 s.
    let mut swept = false;
    for _ in 0..50 {
        cache.reopen().await;
        assert_eq!(value(&cache, "k").await, None);
        if temp_files(cache.root()).is_empty() {
            swept = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        swept,
        "the leftover of an instance dropped 5 s ago is never swept: {:?}",
        temp_files(cache.root())
    );
    assert_eq!(entry_files(cache.root()), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------------------
// Something planted at an indexed key's entry path before its overwrite.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Plant {
    /// A directory holding a file and a symlink to the outside directory.
    Dir,
    /// A symlink to a file outside the cache directory.
    LinkToFile,
    /// A symlink to a directory outside the cache directory.
    LinkToDir,
    /// A FIFO.
    Fifo,
}

/// A key's entry exists and is indexed; a co-tenant replaces it with `plant`; the no-sync
/// overwrite exchanges the new file with whatever is there. Nothing outside the cache
/// directory is touched, the new answer is served now and after a restart, and `clear` leaves
/// no entry file.
async fn overwrite_over(plant: Plant) {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"not the cache's").unwrap();
    std::fs::create_dir(outside.path().join("sub")).unwrap();
    std::fs::write(outside.path().join("sub/also"), b"not the cache's either").unwrap();
    let before = tree(outside.path());

    let mut cache = dir().open_cache(no_sync).await;
    set_flushed(&cache, "k", b"first answer").await;
    let path = cache.entry_path("k");
    std::fs::remove_file(&path).unwrap();
    match plant {
        Plant::Dir => {
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("inside"), b"planted").unwrap();
            symlink(outside.path(), path.join("out")).unwrap();
        }
        Plant::LinkToFile => symlink(outside.path().join("precious"), &path).unwrap(),
        Plant::LinkToDir => symlink(outside.path(), &path).unwrap(),
        Plant::Fifo => rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap(),
    }
    // The write is acknowledged or not; either way nothing outside changes and no wrong
    // answer is served.
    let _ = cache.set_bytes("k", b"second answer".to_vec()).await;
    let _ = cache.flush().await;
    assert_eq!(tree(outside.path()), before, "{plant:?}");
    assert_eq!(
        std::fs::read(outside.path().join("precious")).unwrap(),
        b"not the cache's"
    );
    assert_eq!(
        std::fs::read(outside.path().join("sub/also")).unwrap(),
        b"not the cache's either"
    );
    let got = value(&cache, "k").await;
    assert_eq!(got.as_deref(), Some(&b"second answer"[..]), "{plant:?}");
    // The entry path holds the new regular file.
    assert!(
        std::fs::symlink_metadata(&path).unwrap().is_file(),
        "{plant:?}"
    );

    cache.reopen().await;
    assert_eq!(
        value(&cache, "k").await.as_deref(),
        Some(&b"second answer"[..]),
        "{plant:?}"
    );
    cache.clear().await.unwrap();
    assert_eq!(
        entry_files(cache.root()),
        Vec::<PathBuf>::new(),
        "{plant:?}"
    );
    assert_eq!(value(&cache, "k").await, None);
    cache.reopen().await;
    assert_eq!(value(&cache, "k").await, None);
    assert_eq!(tree(outside.path()), before, "{plant:?}");
    assert_eq!(
        std::fs::read(outside.path().join("precious")).unwrap(),
        b"not the cache's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_over_a_planted_directory_deletes_nothing_outside() {
    overwrite_over(Plant::Dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_over_a_planted_symlink_to_a_file_deletes_nothing_outside() {
    overwrite_over(Plant::LinkToFile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_over_a_planted_symlink_to_a_directory_deletes_nothing_outside() {
    overwrite_over(Plant::LinkToDir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_over_a_planted_fifo_serves_the_new_answer() {
    overwrite_over(Plant::Fifo).await;
}

// ---------------------------------------------------------------------------------------
// A file system without exchange.
// ---------------------------------------------------------------------------------------

/// The real file system, less `rename_exchange` (the trait's default: `Unsupported`).
#[derive(Debug)]
struct NoExchange;

impl Fs for NoExchange {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        real_fs().read_file(path, max_len)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        real_fs().read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
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
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        real_fs().remove_dir(path)
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
    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        real_fs().total_space(path)
    }
    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        real_fs().block_size(path)
    }
}

/// Overwrites of several keys, each flushed, on a file system without exchange: every answer
/// is the last one set, now and after a restart; no disk error is counted (the first
/// `Unsupported` is an answer, not a failure), nothing is left beside the entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_system_without_exchange_overwrites_exactly_and_counts_no_error() {
    let mut cache = dir()
        .with_fs(Arc::new(NoExchange))
        .open_cache(no_sync)
        .await;
    for round in 0..4 {
        for k in ["a", "b", "c"] {
            set_flushed(&cache, k, format!("{k} answer {round}").as_bytes()).await;
        }
        for k in ["a", "b", "c"] {
            assert_eq!(
                value(&cache, k).await,
                Some(format!("{k} answer {round}").into_bytes())
            );
        }
    }
    assert_eq!(cache.stats().disk_errors, 0);
    assert_eq!(disk_errors(&cache, "other"), 0);
    assert_eq!(temp_files(cache.root()), Vec::<String>::new());
    assert_eq!(entry_files(cache.root()).len(), 3);
    cache.reopen().await;
    for k in ["a", "b", "c"] {
        assert_eq!(
            value(&cache, k).await,
            Some(format!("{k} answer 3").into_bytes())
        );
    }
    assert_eq!(cache.stats().disk_errors, 0);
}

// ---------------------------------------------------------------------------------------
// `clear` over hostile trees (remove_tree).
// ---------------------------------------------------------------------------------------

/// A symlink planted as a fan-out directory (`v2/ab -> outside`, holding a file named like an
/// entry of `ab`), and, inside a real fan-out directory, a symlink loop and a link up to the
/// root: `clear` deletes no outside file, follows no link, and leaves no entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_follows_no_planted_link_out_of_a_fan_out_directory() {
    let outside = tempfile::tempdir().unwrap();
    let mut cache = dir().open_cache(no_sync).await;
    for k in ["a", "b", "c", "d"] {
        set_flushed(&cache, k, format!("{k} answer").as_bytes()).await;
    }
    // A fan-out name no key above uses, as a symlink to the outside directory.
    let used: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| hex_of(k.as_bytes())[..2].to_owned())
        .collect();
    let free = (0u8..=255)
        .map(|b| format!("{b:02x}"))
        .find(|f| !used.contains(f))
        .unwrap();
    let victim_name = format!("{free}{}", "0".repeat(62));
    std::fs::write(outside.path().join(&victim_name), b"outside").unwrap();
    std::fs::create_dir(outside.path().join("d")).unwrap();
    std::fs::write(outside.path().join("d/f"), b"outside too").unwrap();
    symlink(outside.path(), cache.root().join("v2").join(&free)).unwrap();
    // Inside the fan-out directory of "a": a loop, a link up, a link out.
    let fan_a = cache.entry_path("a").parent().unwrap().to_owned();
    std::fs::create_dir(fan_a.join("trap")).unwrap();
    symlink(".", fan_a.join("trap/loop")).unwrap();
    symlink("../../..", fan_a.join("trap/up")).unwrap();
    symlink(outside.path(), fan_a.join("trap/out")).unwrap();
    symlink(outside.path().join("d/f"), fan_a.join("out_file")).unwrap();
    let before = tree(outside.path());

    cache.clear().await.unwrap();
    assert_eq!(tree(outside.path()), before);
    assert_eq!(
        std::fs::read(outside.path().join(&victim_name)).unwrap(),
        b"outside"
    );
    assert_eq!(
        std::fs::read(outside.path().join("d/f")).unwrap(),
        b"outside too"
    );
    assert_eq!(entry_files(cache.root()), Vec::<PathBuf>::new());
    assert!(!fan_a.exists());
    for k in ["a", "b", "c", "d"] {
        assert_eq!(value(&cache, k).await, None);
    }
    cache.reopen().await;
    for k in ["a", "b", "c", "d"] {
        assert_eq!(value(&cache, k).await, None);
    }
    assert_eq!(tree(outside.path()), before);
}

/// A tree 70 directories deep planted in the fan-out directory of eight keys: `clear`
/// (which deletes the fan-out directories) must delete every entry file and count no disk
/// error. `std::fs::remove_dir_all` removed any depth; `remove_tree` stops at 64 with an
/// `Other` error, at the planted tree, leaving the entries listed after it and counting a
/// device failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_removes_every_entry_beside_a_planted_tree_deeper_than_64() {
    let cache = dir().open_cache(no_sync).await;
    let keys = keys_sharing_a_fan_out("deep", 8);
    for k in &keys {
        set_flushed(&cache, k, format!("{k} answer").as_bytes()).await;
    }
    let fan = cache.entry_path(&keys[0]).parent().unwrap().to_owned();
    let mut deep = fan.join("planted");
    for _ in 0..70 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("leaf"), b"x").unwrap();
    let errors_before = cache.stats().disk_errors;

    cache.clear().await.unwrap();
    assert_eq!(entry_files(cache.root()), Vec::<PathBuf>::new());
    assert_eq!(cache.stats().disk_errors - errors_before, 0);
    assert_eq!(disk_errors(&cache, "other"), 0);
    for k in &keys {
        assert_eq!(value(&cache, k).await, None);
    }
}

/// The quarantine is bounded in files (DESIGN.md). A directory 70 deep planted at an indexed
/// key's entry path is quarantined (not a regular file) first; five corrupted entries follow,
/// under `quarantine_limits(2, ..)`: the oldest quarantined files are deleted, the planted
/// tree first, and two stay. `remove_tree` stops at depth 64: the planted tree cannot be
/// deleted, and the bound is never enforced again (each quarantine adds one more file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quarantine_stays_bounded_past_a_planted_tree_deeper_than_64() {
    let mut cache = dir()
        .open_cache(|b| no_sync(b).quarantine_limits(2, u64::MAX))
        .await;
    let keys: Vec<String> = (0..6).map(|i| format!("q{i}")).collect();
    for k in &keys {
        set_flushed(
            &cache,
            k,
            format!("{k} answer, long enough to corrupt").as_bytes(),
        )
        .await;
    }
    cache.reopen().await;
    // The planted tree, at the entry path of q0 (indexed by the scan as a file).
    let p0 = cache.entry_path(&keys[0]);
    std::fs::remove_file(&p0).unwrap();
    let mut deep = p0.clone();
    for _ in 0..70 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    assert_eq!(value(&cache, &keys[0]).await, None);
    assert!(!p0.exists(), "the planted tree was quarantined");
    for k in &keys[1..] {
        cache.advance(std::time::Duration::from_secs(1));
        let p = cache.entry_path(k);
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(value(&cache, k).await, None);
    }
    let mut quarantined: Vec<String> = std::fs::read_dir(cache.root().join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".why"))
        .collect();
    quarantined.sort();
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert_eq!(disk_errors(&cache, "other"), 0);
}

/// The warm budget bounds what the disk really spends (DESIGN.md, "Sharing, capacity"). Each
/// no-sync overwrite now leaves the key's older file, whole, at a temp name until it is
/// deleted; when those deletions fail (EIO on every `.tmp` unlink, under a breaker set to
/// tolerate it), the older files pile up beside the entries, uncounted: 40 overwrites of one
/// 8 KiB answer under a 64 KiB budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_files_left_by_failed_deletions_stay_within_the_warm_budget() {
    const BUDGET: u64 = 64 << 10;
    let cache = dir()
        .fault_fs()
        .open_cache(|b| {
            no_sync(b)
                .memory_only_after(100_000)
                .warm_capacity_bytes(BUDGET)
        })
        .await;
    let mut rng = answercache::workload::Rng::new(40);
    let answer = |rng: &mut answercache::workload::Rng| -> Vec<u8> {
        (0..8 << 10).map(|_| rng.next_u64() as u8).collect()
    };
    set_flushed(&cache, "big", &answer(&mut rng)).await;
    cache.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .path_ends_with(".tmp"),
    );
    let mut last = Vec::new();
    for _ in 0..40 {
        last = answer(&mut rng);
        set_flushed(&cache, "big", &last).await;
    }
    assert_eq!(value(&cache, "big").await, Some(last));
    let on_disk: u64 = walk(cache.root())
        .into_iter()
        .filter(|(p, is_dir)| !is_dir && p.starts_with("v2"))
        .map(|(p, _)| std::fs::metadata(cache.root().join(p)).unwrap().len())
        .sum();
    assert!(on_disk <= BUDGET, "{on_disk} bytes of files under v2/");
}
