//! Deterministic tests of the compaction of entries written stored (`warm::store::compact`):
//! what is in place afterwards, what the budget charges, and that a compaction never puts an
//! older file in place of a newer one, never resurrects a removed, evicted or cleared entry,
//! and never loses a durable one at a power cut. Concurrent steps are injected at the
//! compaction's own temp-file write (an `Fs` wrapper), between its check and its rename.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Compacted, BACKLOG_MAX};
use crate::fs::{DirEntryInfo, FileRead, Fs, StdFs};
use crate::testing::CrashFs;
use crate::warm::format::{self, EntryMeta, Limits};
use crate::warm::layout::{self, KeyHash, Layout};
use crate::warm::store::{ReadOutcome, StoreConfig, WarmStore, WriteOutcome};
use crate::warm::store_fixture::store_config;

const NOW: u64 = 1_700_000_000_000;

fn config(sync: bool) -> StoreConfig {
    StoreConfig {
        limits: Limits {
            max_key_bytes: 1024,
            max_entry_bytes: 1 << 24,
        },
        space_wait: crate::warm::space::SPACE_WAIT_MAX,
        ..store_config(sync)
    }
}

use crate::warm::store_fixture::open_store as open_with;

fn meta(expires_ms: u64) -> EntryMeta {
    EntryMeta {
        created_ms: NOW - 10,
        expires_ms,
        cost: 7,
        ..EntryMeta::default()
    }
}

/// LLM-like text of `n` bytes (compresses about 3:1 at level 3), varied by `seed`.
fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "the", "model", "answer", "returns", "a", "token", "stream", "of", "JSON", "with",
        "content", "and", "tool", "calls", "for", "each", "request", "cached", "by", "key",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(words[(x >> 33) as usize % words.len()].as_bytes());
        out.push(if (x >> 20).is_multiple_of(11) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(n);
    out
}

/// Incompressible bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new()
        .update(b"compact-noise")
        .finalize_xof()
        .fill(&mut out);
    out
}

fn on_disk(root: &Path, hash: &KeyHash) -> Option<Vec<u8>> {
    std::fs::read(Layout::new(root).entry_path(hash)).ok()
}

fn value_of(store: &WarmStore, fs: &dyn Fs, key: &[u8]) -> Option<Vec<u8>> {
    match store.read(fs, key, &layout::key_hash(key), NOW).unwrap() {
        ReadOutcome::Hit(d) => Some(d.value),
        ReadOutcome::Miss => None,
        other => panic!("expected a hit or a miss, got {other:?}"),
    }
}

/// Temp files in `tmp/` and beside the entries (`v2/ab/.<…>.tmp`).
fn temp_files(root: &Path) -> usize {
    crate::testing::temp_files(root).len()
}

fn written(out: WriteOutcome) -> u64 {
    match out {
        WriteOutcome::Written { len } => len,
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn a_large_entry_is_written_stored_and_compacted_in_place_with_its_value_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config(true));
    let (key, value) = (b"chat:1".to_vec(), text(64 << 10, 1));
    let hash = layout::key_hash(&key);
    let stored_len = written(
        store
            .write(&fs, &key, &hash, &value, meta(NOW + 60_000))
            .unwrap(),
    );
    // Stored: header, key, the value and 5 bytes per 64 KiB stored block, gzip framing.
    let expect_stored = format::HEADER_LEN as u64 + 6 + (64 << 10) + 2 * 5 + 18;
    assert_eq!(stored_len, expect_stored);
    assert_eq!(
        on_disk(dir.path(), &hash).unwrap().len() as u64,
        expect_stored
    );
    assert_eq!(store.backlog().len(), 1);
    assert_eq!(store.usage().1, expect_stored);
    assert_eq!(value_of(&store, &fs, &key).unwrap(), value);
    // Nothing counted as written until the compaction ends.
    assert_eq!((counters.bytes_in.get(), counters.bytes_out.get()), (0, 0));

    let want = format::encode(&key, &value, meta(NOW + 60_000), 3).unwrap();
    assert_eq!(
        store.compact_next(&fs, NOW).unwrap(),
        Compacted::Done {
            stored: expect_stored,
            compressed: want.len() as u64
        }
    );
    assert_eq!(on_disk(dir.path(), &hash).unwrap(), want);
    assert_eq!(store.usage(), (1, want.len() as u64, false));
    assert_eq!(store.backlog().len(), 0);
    assert_eq!(temp_files(dir.path()), 0);
    let read = store.read(&fs, &key, &hash, NOW).unwrap();
    let ReadOutcome::Hit(d) = read else {
        panic!("{read:?}")
    };
    assert_eq!((d.value, d.meta), (value.clone(), meta(NOW + 60_000)));
    assert_eq!(
        (
            counters.bytes_in.get(),
            counters.bytes_out.get(),
            counters.entries_compacted.get()
        ),
        (64 << 10, want.len() as u64, 1)
    );
    assert_eq!(store.compact_next(&fs, NOW).unwrap(), Compacted::Idle);
}

#[test]
fn an_entry_that_fits_one_allocation_unit_stored_is_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config(true));
    let value = text(1000, 2);
    let hash = layout::key_hash(b"small");
    let len = written(store.write(&fs, b"small", &hash, &value, meta(0)).unwrap());
    assert_eq!(
        len,
        format::encode(b"small", &value, meta(0), 0).unwrap().len() as u64
    );
    assert_eq!(store.backlog().len(), 0);
    assert_eq!(counters.bytes_out.get(), len);
}

#[test]
fn with_compaction_off_or_level_zero_large_entries_are_written_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let value = text(20_000, 3);
    let hash = layout::key_hash(b"k");
    for (compact_later, level) in [(false, 3), (true, 0)] {
        let root = dir.path().join(format!("{compact_later}-{level}"));
        let (store, _) = open_with(
            &fs,
            &root,
            StoreConfig {
                compact_later,
                compression_level: level,
                ..config(true)
            },
        );
        let len = written(store.write(&fs, b"k", &hash, &value, meta(0)).unwrap());
        let want = format::encode(b"k", &value, meta(0), level).unwrap();
        assert_eq!(len, want.len() as u64, "{compact_later} {level}");
        assert_eq!(store.backlog().len(), 0);
    }
}

#[test]
fn an_incompressible_entry_stays_stored() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config(true));
    let value = noise(64 << 10);
    let hash = layout::key_hash(b"noise");
    let len = written(store.write(&fs, b"noise", &hash, &value, meta(0)).unwrap());
    assert_eq!(store.compact_next(&fs, NOW).unwrap(), Compacted::NoGain);
    assert_eq!(on_disk(dir.path(), &hash).unwrap().len() as u64, len);
    assert_eq!(temp_files(dir.path()), 0);
    assert_eq!(counters.bytes_out.get(), len);
    assert_eq!(value_of(&store, &fs, b"noise").unwrap(), value);
}

#[test]
fn an_overwrite_before_the_compaction_is_never_replaced_by_the_older_value() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, _) = open_with(&fs, dir.path(), config(true));
    let hash = layout::key_hash(b"k");
    let (v1, v2) = (text(30_000, 1), text(30_000, 2));
    store.write(&fs, b"k", &hash, &v1, meta(0)).unwrap();
    store.write(&fs, b"k", &hash, &v2, meta(0)).unwrap();
    assert_eq!(store.backlog().len(), 2);
    assert_eq!(store.compact_next(&fs, NOW).unwrap(), Compacted::Superseded);
    assert_eq!(value_of(&store, &fs, b"k").unwrap(), v2);
    assert!(matches!(
        store.compact_next(&fs, NOW).unwrap(),
        Compacted::Done { .. }
    ));
    assert_eq!(value_of(&store, &fs, b"k").unwrap(), v2);
    assert_eq!(temp_files(dir.path()), 0);
}

#[test]
fn a_removed_or_expired_entry_is_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, _) = open_with(&fs, dir.path(), config(true));
    let (gone, old) = (layout::key_hash(b"gone"), layout::key_hash(b"old"));
    store
        .write(&fs, b"gone", &gone, &text(20_000, 4), meta(0))
        .unwrap();
    store
        .write(&fs, b"old", &old, &text(20_000, 5), meta(NOW))
        .unwrap();
    assert!(store.remove(&fs, &gone).unwrap());
    assert_eq!(store.compact_next(&fs, NOW).unwrap(), Compacted::Superseded);
    assert_eq!(on_disk(dir.path(), &gone), None);
    let before = on_disk(dir.path(), &old).unwrap();
    assert_eq!(store.compact_next(&fs, NOW).unwrap(), Compacted::Superseded);
    assert_eq!(on_disk(dir.path(), &old).unwrap(), before);
    assert_eq!(temp_files(dir.path()), 0);
}

type Step = Box<dyn FnOnce() + Send>;

/// An `Fs` over the real one that runs a step once: before the next `write_new` (the
/// compaction's temp file: after it read and judged the stored file, before it takes the key's
/// lock and renames), or right after the next `rename` that succeeds (the compaction's: before
/// it charges the index). Shared with `warm::compact_r27_tests`.
pub(crate) struct StepFs {
    inner: StdFs,
    before_write: Mutex<Option<Step>>,
    after_rename: Mutex<Option<Step>>,
}

impl StepFs {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(StepFs {
            inner: StdFs::new(),
            before_write: Mutex::new(None),
            after_rename: Mutex::new(None),
        })
    }

    pub(crate) fn before_next_write(&self, f: impl FnOnce() + Send + 'static) {
        *self.before_write.lock().unwrap() = Some(Box::new(f));
    }

    pub(crate) fn after_next_rename(&self, f: impl FnOnce() + Send + 'static) {
        *self.after_rename.lock().unwrap() = Some(Box::new(f));
    }
}

impl std::fmt::Debug for StepFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepFs")
    }
}

impl Fs for StepFs {
    fn read_file(&self, path: &Path, max: u64) -> io::Result<FileRead> {
        self.inner.read_file(path, max)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        let step = self.before_write.lock().unwrap().take();
        if let Some(step) = step {
            step();
        }
        self.inner.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        let step = self.after_rename.lock().unwrap().take();
        if let Some(step) = step {
            step();
        }
        Ok(())
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.inner.read_dir(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.inner.available_space(path)
    }
}

/// Writes v1 of `key` stored through `fs`, runs `step(store)` between the compaction's
/// judgment and its rename, and returns what the compaction did.
fn race(
    fs: &Arc<StepFs>,
    root: &Path,
    cfg: StoreConfig,
    key: &'static [u8],
    v1: &[u8],
    step: impl FnOnce(&WarmStore, &dyn Fs) + Send + 'static,
) -> (Arc<WarmStore>, Compacted) {
    let (store, _) = open_with(&**fs, root, cfg);
    let store = Arc::new(store);
    let hash = layout::key_hash(key);
    store.write(&**fs, key, &hash, v1, meta(0)).unwrap();
    assert_eq!(store.backlog().len(), 1);
    let (s2, fs2) = (store.clone(), fs.clone());
    fs.before_next_write(move || step(&s2, &*fs2));
    let done = store.compact_next(&**fs, NOW).unwrap();
    (store, done)
}

#[test]
fn an_overwrite_during_the_compaction_wins() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StepFs::new();
    let v2 = text(40_000, 9);
    let v2c = v2.clone();
    let (store, done) = race(
        &fs,
        dir.path(),
        config(true),
        b"k",
        &text(40_000, 8),
        move |s, fs| {
            s.write(fs, b"k", &layout::key_hash(b"k"), &v2c, meta(0))
                .unwrap();
        },
    );
    assert_eq!(done, Compacted::Superseded);
    assert_eq!(value_of(&store, &*fs, b"k").unwrap(), v2);
    assert_eq!(temp_files(dir.path()), 0);
    // v2 is queued in turn and compacts.
    assert!(matches!(
        store.compact_next(&*fs, NOW).unwrap(),
        Compacted::Done { .. }
    ));
    assert_eq!(value_of(&store, &*fs, b"k").unwrap(), v2);
}

#[test]
fn another_processs_overwrite_during_the_compaction_wins() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StepFs::new();
    let v2 = text(40_000, 11);
    let (root, v2c) = (dir.path().to_owned(), v2.clone());
    // A second store on the same directory: another process, whose write this store's index
    // never sees.
    let (store, done) = race(
        &fs,
        dir.path(),
        config(true),
        b"k",
        &text(40_000, 10),
        move |_, _| {
            let other_fs = StdFs::new();
            let (other, _) = open_with(&other_fs, &root, config(true));
            other
                .write(&other_fs, b"k", &layout::key_hash(b"k"), &v2c, meta(0))
                .unwrap();
        },
    );
    assert_eq!(done, Compacted::Superseded);
    assert_eq!(value_of(&store, &*fs, b"k").unwrap(), v2);
    assert_eq!(temp_files(dir.path()), 0);
}

#[test]
fn a_removal_during_the_compaction_is_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StepFs::new();
    let (store, done) = race(
        &fs,
        dir.path(),
        config(true),
        b"k",
        &text(40_000, 12),
        |s, fs| {
            assert!(s.remove(fs, &layout::key_hash(b"k")).unwrap());
        },
    );
    assert_eq!(done, Compacted::Superseded);
    assert_eq!(on_disk(dir.path(), &layout::key_hash(b"k")), None);
    assert_eq!(value_of(&store, &*fs, b"k"), None);
    assert_eq!(temp_files(dir.path()), 0);
}

#[test]
fn a_clear_during_the_compaction_is_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StepFs::new();
    let (store, done) = race(
        &fs,
        dir.path(),
        config(true),
        b"k",
        &text(40_000, 13),
        |s, fs| {
            s.clear(fs).unwrap();
        },
    );
    assert_eq!(done, Compacted::Superseded);
    assert_eq!(on_disk(dir.path(), &layout::key_hash(b"k")), None);
    assert_eq!(store.usage().0, 0);
    assert_eq!(temp_files(dir.path()), 0);
}

#[test]
fn an_eviction_during_the_compaction_is_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StepFs::new();
    // An 80 KiB budget; 9 KB entries (stored, at most an eighth of it) charge 12 KiB and a
    // directory entry each, plus their fan-out directories: eight more writes evict the first.
    let cfg = StoreConfig {
        capacity_bytes: 80 << 10,
        ..config(true)
    };
    let (store, done) = race(
        &fs,
        dir.path(),
        cfg,
        b"k",
        &text(9_000, 14),
        move |s, fs| {
            for i in 0..8u8 {
                let key = [b'o', i];
                s.write(
                    fs,
                    &key,
                    &layout::key_hash(&key),
                    &text(9_000, 30 + u64::from(i)),
                    meta(0),
                )
                .unwrap();
            }
        },
    );
    assert_eq!(done, Compacted::Superseded);
    assert_eq!(on_disk(dir.path(), &layout::key_hash(b"k")), None);
    assert_eq!(value_of(&store, &*fs, b"k"), None);
    // The index counts exactly the entry files left.
    let files: usize = std::fs::read_dir(dir.path().join("v2"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(store.usage().0 as usize, files);
    assert!(files < 8, "{files}");
    assert_eq!(temp_files(dir.path()), 0);
}

#[test]
fn a_stored_entry_larger_than_the_budget_is_written_compressed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let value = text(64 << 10, 16);
    let want = format::encode(b"k", &value, meta(0), 3).unwrap();
    // The compressed file fits (with the unit the budget adds), the stored one would not.
    let cfg = StoreConfig {
        capacity_bytes: 48 << 10,
        ..config(true)
    };
    let (store, _) = open_with(&fs, dir.path(), cfg);
    let len = written(
        store
            .write(&fs, b"k", &layout::key_hash(b"k"), &value, meta(0))
            .unwrap(),
    );
    assert_eq!(len, want.len() as u64);
    assert_eq!(store.backlog().len(), 0);
    assert_eq!(value_of(&store, &fs, b"k").unwrap(), value);
}

#[test]
fn the_backlog_is_bounded_and_an_entry_past_it_stays_stored() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config(false));
    let hash = layout::key_hash(b"k");
    let value = text(10_000, 17);
    for _ in 0..BACKLOG_MAX {
        assert!(store.backlog().push(super::Waiting {
            hash,
            tag: 1,
            value_len: 0,
            stored_len: 0,
            tries: 0,
        }));
    }
    let len = written(store.write(&fs, b"k", &hash, &value, meta(0)).unwrap());
    assert_eq!(store.backlog().len(), BACKLOG_MAX);
    // Not queued: counted as written now, stored.
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (10_000, len)
    );
}

/// A power cut at every call of a compaction leaves the value whole: stored or compressed.
#[test]
fn a_power_cut_at_any_step_of_a_compaction_keeps_the_durable_value() {
    let value = text(30_000, 18);
    let hash = layout::key_hash(b"k");
    let (mut cut_before_done, mut done_at) = (0, None);
    for k in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let fs = CrashFs::new(dir.path().join("root")).unwrap();
        let root = fs.root().to_owned();
        let (store, _) = open_with(&fs, &root, config(true));
        store.write(&fs, b"k", &hash, &value, meta(0)).unwrap();
        fs.power_off_after(fs.calls() + k);
        let done = store.compact_next(&fs, NOW);
        if matches!(done, Ok(Compacted::Done { .. })) {
            done_at.get_or_insert(k);
        } else {
            cut_before_done += 1;
        }
        let image = dir.path().join("image");
        fs.crash(&image).unwrap();
        drop(store);
        let (after, counters) = open_with(&StdFs::new(), &image, config(true));
        assert_eq!(
            value_of(&after, &StdFs::new(), b"k").unwrap(),
            value,
            "k={k}"
        );
        let corrupted: u64 = counters.corrupted.iter().map(|c| c.get()).sum();
        assert_eq!(corrupted, 0, "k={k}");
    }
    // The sweep covered cuts before the compaction finished and runs where it finished.
    assert!(cut_before_done > 0);
    assert!(done_at.is_some());
}

/// The compressed file is fsynced before it replaces the stored one: once a later sync of its
/// directory makes the rename durable, a power cut finds it whole. With file fsyncs dropped
/// (a disk that lies), the same steps find it torn: the test would notice a missing fsync.
#[test]
fn the_compressed_file_is_durable_before_its_rename_can_be() {
    let value = text(30_000, 19);
    let hash = layout::key_hash(b"k");
    for lying in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let fs = CrashFs::new(dir.path().join("root")).unwrap();
        let root = fs.root().to_owned();
        let (store, _) = open_with(&fs, &root, config(true));
        store.write(&fs, b"k", &hash, &value, meta(0)).unwrap();
        fs.drop_file_syncs(lying);
        assert!(matches!(
            store.compact_next(&fs, NOW).unwrap(),
            Compacted::Done { .. }
        ));
        fs.sync_dir(&Layout::new(&root).entry_dir(&hash)).unwrap();
        let image = dir.path().join("image");
        fs.crash(&image).unwrap();
        drop(store);
        let (after, counters) = open_with(&StdFs::new(), &image, config(true));
        let got = after.read(&StdFs::new(), b"k", &hash, NOW).unwrap();
        let corrupted: u64 = counters.corrupted.iter().map(|c| c.get()).sum();
        if lying {
            assert!(matches!(got, ReadOutcome::Corrupt), "{got:?}");
            assert_eq!(corrupted, 1);
        } else {
            let ReadOutcome::Hit(d) = got else {
                panic!("{got:?}")
            };
            assert_eq!((d.value, corrupted), (value.clone(), 0));
        }
    }
}

/// The compactor stops waiting for idle moments once the stored bytes waiting pass an eighth
/// of the warm budget, and waits again once they no longer do.
#[test]
fn the_backlog_presses_past_an_eighth_of_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let cfg = StoreConfig {
        capacity_bytes: 1 << 20,
        ..config(false)
    };
    let (store, _) = open_with(&fs, dir.path(), cfg);
    let value = text(40_000, 20);
    let stored = format::encode(b"k0", &value, meta(0), 0).unwrap().len() as u64;
    // 131,072 bytes is an eighth: three stored entries (40,113 bytes each) are less, four
    // are more.
    assert_eq!(stored, 40_113);
    for i in 0..4u8 {
        assert!(!store.compaction_pressing(), "{i}");
        let key = [b'k', b'0' + i];
        store
            .write(&fs, &key, &layout::key_hash(&key), &value, meta(0))
            .unwrap();
        assert_eq!(store.backlog().bytes(), stored * u64::from(i + 1));
    }
    assert!(store.compaction_pressing());
    assert!(matches!(
        store.compact_next(&fs, NOW).unwrap(),
        Compacted::Done { .. }
    ));
    assert_eq!(store.backlog().bytes(), stored * 3);
    assert!(!store.compaction_pressing());
}
