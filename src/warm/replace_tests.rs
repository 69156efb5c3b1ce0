//! A write over a key's existing entry without fsync (`Durability::NoSync`) deletes the old
//! file before it renames the new one into place: renamed over an existing file, ext4 (with
//! its default `auto_da_alloc`) starts writing the new file's data back inside the `rename`
//! call, which is a write-back the caller waits for that a no-sync write never asked for
//! (BENCHMARKS.md, "Session 26"). With fsync the data is already on disk and the rename
//! replaces the old file as before: a crash then leaves the old entry or the new one, never
//! neither.
//!
//! What these tests pin: the deletion happens for an indexed key under no-sync only; it is
//! never a reason for the write to fail; and a rename that fails after it leaves no file of
//! the key (the old value is not served as if the write had never been asked for).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;

use crate::fs::{Fs, StdFs};
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

#[test]
fn a_no_sync_overwrite_deletes_the_old_file_then_renames() {
    assert_eq!(calls_of_an_overwrite(false), (1, 1));
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
    let removes = fs.calls(FsOp::RemoveFile);
    write(&store, &fs, b"fresh", b"first answer").unwrap();
    assert_eq!(fs.calls(FsOp::RemoveFile) - removes, 0);
    assert_eq!(
        read_value(&store, &fs, b"fresh").as_deref(),
        Some(&b"first answer"[..])
    );
}

#[test]
fn a_failed_deletion_of_the_old_file_does_not_fail_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let store = open(&fs, dir.path(), false);
    let hash = layout::key_hash(b"k");
    write(&store, &fs, b"k", b"first answer").unwrap();
    let name = entry_file(dir.path(), &hash);
    let name = name.file_name().unwrap().to_str().unwrap().to_owned();
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .path_ends_with(name)
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
}

#[test]
fn a_rename_failing_after_the_deletion_leaves_no_file_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let store = open(&fs, dir.path(), false);
    let hash = layout::key_hash(b"k");
    write(&store, &fs, b"k", b"first answer").unwrap();
    fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::Rename]).times(1));
    let err = write(&store, &fs, b"k", b"second answer").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO));
    assert!(
        !entry_file(dir.path(), &hash).exists(),
        "the superseded entry is gone"
    );
    assert_eq!(read_value(&store, &StdFs::new(), b"k"), None);
    // The index forgot it at that miss: a fresh write is a first write again.
    let removes = fs.calls(FsOp::RemoveFile);
    write(&store, &fs, b"k", b"third answer").unwrap();
    assert_eq!(fs.calls(FsOp::RemoveFile) - removes, 0);
    assert_eq!(
        read_value(&store, &fs, b"k").as_deref(),
        Some(&b"third answer"[..])
    );
}
