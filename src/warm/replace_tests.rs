//! A write over a key's existing entry without fsync (`Durability::NoSync`) *exchanges* the
//! new file with the older one (`Fs::rename_exchange`), then deletes the older one, now at
//! the temp path: renamed over an existing file, ext4 (with its default `auto_da_alloc`)
//! starts writing the new file's data back inside the `rename` call, a write-back the caller
//! waits for that a no-sync write never asked for (BENCHMARKS.md, "Session 26"); an exchange
//! does not. With fsync the data is already on disk and the rename replaces the old file as
//! before.
//!
//! What these tests pin: the exchange happens for an indexed key under no-sync only; the path
//! never lacks an entry (the first form deleted the older file before a rename: r39, F1); a
//! failed deletion of the older file never fails the write nor is served; a failed exchange
//! changes nothing; a file system without exchange gets the plain rename.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;

use crate::fs::{Fs, StdFs};
use crate::testing::CrashFs;
use crate::testing::{Fault, FaultFs, FsOp, Rule};
use crate::warm::format::{EntryMeta, Limits};
use crate::warm::layout::{self, KeyHash};
use crate::warm::store::{ReadOutcome, StoreConfig, WarmStore, WriteOutcome};
use crate::warm::store_fixture::{open_store, store_config};

const NOW: u64 = 1_700_000_000_000;
const EIO: i32 = 5;

fn config(sync: bool) -> StoreConfig {
    StoreConfig {
        limits: Limits {
            max_key_bytes: 1024,
            max_entry_bytes: 1 << 20,
        },
        compact_later: false,
        ..store_config(sync)
    }
}

fn write(
    store: &WarmStore,
    fs: &dyn Fs,
    key: &[u8],
    value: &[u8],
) -> std::io::Result<WriteOutcome> {
    let hash = layout::key_hash(key);
    store.write(fs, key, &hash, value, EntryMeta::default())
}

fn read_value(store: &WarmStore, fs: &dyn Fs, key: &[u8]) -> Option<Vec<u8>> {
    match store.read(fs, key, &layout::key_hash(key), NOW).unwrap() {
        ReadOutcome::Hit(d) => Some(d.value),
        ReadOutcome::Miss => None,
        other => panic!("expected a hit or a miss, got {other:?}"),
    }
}

/// A store on `root` through `fs`, opened as the cache opens it: no `v1/` directory, so no
/// migration is pending and a write deletes no previous layout's file of its key.
fn open(fs: &dyn Fs, root: &Path, sync: bool) -> WarmStore {
    let (store, _) = open_store(fs, root, config(sync));
    assert_eq!(store.legacy_dirs(fs).unwrap(), None);
    store
}

fn entry_file(root: &Path, hash: &KeyHash) -> std::path::PathBuf {
    crate::warm::layout::Layout::new(root).entry_path(hash)
}

/// `(remove_file, rename)` calls made by one overwrite of an indexed key.
fn calls_of_an_overwrite(sync: bool) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let store = open(&fs, dir.path(), sync);
    write(&store, &fs, b"k", b"first answer").unwrap();
    let (removes, renames) = (fs.calls(FsOp::RemoveFile), fs.calls(FsOp::Rename));
    write(&store, &fs, b"k", b"second answer").unwrap();
    assert_eq!(
        read_value(&store, &fs, b"k").as_deref(),
        Some(&b"second answer"[..])
    );
    (
        fs.calls(FsOp::RemoveFile) - removes,
        fs.calls(FsOp::Rename) - renames,
    )
}

/// The temp files (`.<hex16>.<pid>.<instance>.<n>.tmp`) in the fan-out directory of `hash`.
fn temp_files(root: &Path, hash: &KeyHash) -> Vec<std::path::PathBuf> {
    let dir = entry_file(root, hash).parent().unwrap().to_owned();
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_no_sync_overwrite_exchanges_then_deletes_the_older_file() {
    // One exchange (counted as a rename of the entry path) and one deletion: of the older
    // file, at the temp path; nothing is left beside the entry.
    assert_eq!(calls_of_an_overwrite(false), (1, 1));
    let dir = tempfile::tempdir().unwrap();
    let store = open(&StdFs::new(), dir.path(), false);
    let hash = layout::key_hash(b"k");
    write(&store, &StdFs::new(), b"k", b"first answer").unwrap();
    write(&store, &StdFs::new(), b"k", b"second answer").unwrap();
    assert_eq!(
        temp_files(dir.path(), &hash),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn an_fsync_overwrite_renames_over_the_old_file() {
    assert_eq!(calls_of_an_overwrite(true), (0, 1));
}

#[test]
fn a_first_write_of_a_key_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let store = open(&fs, dir.path(), false);
    write(&store, &fs, b"other", b"x").unwrap();
    let (removes, renames) = (fs.calls(FsOp::RemoveFile), fs.calls(FsOp::Rename));
    write(&store, &fs, b"fresh", b"first answer").unwrap();
    assert_eq!(fs.calls(FsOp::RemoveFile) - removes, 0);
    assert_eq!(fs.calls(FsOp::Rename) - renames, 1);
    assert_eq!(
        read_value(&store, &fs, b"fresh").as_deref(),
        Some(&b"first answer"[..])
    );
}

#[test]
fn a_failed_deletion_of_the_older_file_does_not_fail_the_write_and_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let store = open(&fs, dir.path(), false);
    let hash = layout::key_hash(b"k");
    write(&store, &fs, b"k", b"first answer").unwrap();
    let first = std::fs::read(entry_file(dir.path(), &hash)).unwrap();
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .path_ends_with(".tmp")
            .times(1),
    );
    let out = write(&store, &fs, b"k", b"second answer").unwrap();
    assert_eq!(fs.faults_injected(), 1);
    let on_disk = std::fs::read(entry_file(dir.path(), &hash)).unwrap();
    assert_eq!(
        out,
        WriteOutcome::Written {
            len: on_disk.len() as u64
        }
    );
    assert_eq!(
        read_value(&store, &StdFs::new(), b"k").as_deref(),
        Some(&b"second answer"[..])
    );
    // The older file stays at its temp name (deleted by a later retry, or swept at the next
    // start), never at the entry path.
    let left = temp_files(dir.path(), &hash);
    assert_eq!(left.len(), 1);
    assert_eq!(std::fs::read(&left[0]).unwrap(), first);
    // Until it is deleted, overwrites rename over the older file (which frees it), so that
    // undeletable older files cannot pile up beside the budget (r40, F3).
    let (removes, renames) = (fs.calls(FsOp::RemoveFile), fs.calls(FsOp::Rename));
    write(&store, &fs, b"k", b"third answer").unwrap();
    assert_eq!(fs.calls(FsOp::RemoveFile) - removes, 0);
    assert_eq!(fs.calls(FsOp::Rename) - renames, 1);
    assert_eq!(temp_files(dir.path(), &hash), left);
    // A probe deletes the leftover; the exchange is used again.
    store.retry_leftovers(&fs);
    assert_eq!(
        temp_files(dir.path(), &hash),
        Vec::<std::path::PathBuf>::new()
    );
    let removes = fs.calls(FsOp::RemoveFile);
    write(&store, &fs, b"k", b"fourth answer").unwrap();
    assert_eq!(fs.calls(FsOp::RemoveFile) - removes, 1);
    assert_eq!(
        read_value(&store, &fs, b"k").as_deref(),
        Some(&b"fourth answer"[..])
    );
}

#[test]
fn a_failed_exchange_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let store = open(&fs, dir.path(), false);
    let hash = layout::key_hash(b"k");
    write(&store, &fs, b"k", b"first answer").unwrap();
    let first = std::fs::read(entry_file(dir.path(), &hash)).unwrap();
    fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::Rename]).times(1));
    let err = write(&store, &fs, b"k", b"second answer").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO));
    assert_eq!(std::fs::read(entry_file(dir.path(), &hash)).unwrap(), first);
    assert_eq!(
        temp_files(dir.path(), &hash),
        Vec::<std::path::PathBuf>::new()
    );
    write(&store, &fs, b"k", b"third answer").unwrap();
    assert_eq!(
        read_value(&store, &fs, b"k").as_deref(),
        Some(&b"third answer"[..])
    );
}

#[test]
fn a_file_system_without_exchange_gets_the_plain_rename() {
    // `CrashFs` keeps the trait's default: `Unsupported`.
    let dir = tempfile::tempdir().unwrap();
    let fs = CrashFs::new(dir.path()).unwrap();
    let root = fs.root().to_owned();
    let store = open(&fs, &root, false);
    let hash = layout::key_hash(b"k");
    for answer in [&b"first answer"[..], b"second answer", b"third answer"] {
        write(&store, &fs, b"k", answer).unwrap();
        assert_eq!(read_value(&store, &fs, b"k").as_deref(), Some(answer));
    }
    assert_eq!(temp_files(&root, &hash), Vec::<std::path::PathBuf>::new());
}
