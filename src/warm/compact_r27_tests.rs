//! r27: adversarial unit tests of the compaction of entries written stored
//! (`warm::store::compact`): steps injected *after* the compaction's rename, before it
//! recharges the index (the existing tests inject before its lock); exact allocation-unit
//! boundaries; overwrites with identical bytes; the free-space fallback. See
//! `tests/core/COMPACT_R27_FINDINGS.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::fs::{Fs, StdFs};
use crate::testing::FaultFs;
use crate::warm::format::{self, EntryMeta};
use crate::warm::layout::{self, KeyHash, Layout};
use crate::warm::store::{ReadOutcome, StepFs, StoreConfig, WarmStore, WriteOutcome};
use crate::warm::store_fixture::store_config;

const NOW: u64 = 1_700_000_000_000;

fn config() -> StoreConfig {
    store_config(true)
}

use crate::warm::store_fixture::open_store as open_with;

fn meta() -> EntryMeta {
    EntryMeta {
        created_ms: NOW - 10,
        expires_ms: 0,
        cost: 3,
        ..EntryMeta::default()
    }
}

/// Chat-like text of `n` bytes, varied by `seed` (compresses well at level 3).
fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "assistant",
        "user",
        "the",
        "function",
        "call",
        "returned",
        "an",
        "error",
        "so",
        "we",
        "retry",
        "with",
        "backoff",
        "and",
        "log",
        "it",
        "{\"role\":",
        "\"content\":",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(n);
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

/// What a compaction step did, by name (`Compacted` is private to `warm::store`).
fn outcome(store: &WarmStore, fs: &dyn Fs) -> String {
    let done = format!("{:?}", store.compact_next(fs, NOW).unwrap());
    done.split_whitespace().next().unwrap().to_owned()
}

/// R27-F6. A reader that reads the key between the compaction's rename and its recharge
/// (readers take no key lock: nothing orders them with the compaction) reads the compressed
/// file and records it in the index (`touch_unless_changed`: the index entry is still the one
/// it noted, the stored file's). The compaction's `recharge(hash, stored tag, ..)` then finds
/// the compressed tag, concludes "evicted or cleared meanwhile" and deletes the entry file:
/// the durable value is gone from disk, and the index still charges it (a phantom).
#[test]
fn a_read_between_the_rename_and_the_recharge_does_not_delete_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StepFs::new();
    let (store, _) = open_with(&*fs, dir.path(), config());
    let store = Arc::new(store);
    let (key, value) = (b"chat:42".to_vec(), text(48_000, 1));
    let hash = layout::key_hash(&key);
    store.write(&*fs, &key, &hash, &value, meta()).unwrap();
    let read_in_window = Arc::new(Mutex::new(None));
    {
        let (s, fs2, key, seen) = (
            store.clone(),
            fs.clone(),
            key.clone(),
            read_in_window.clone(),
        );
        fs.after_next_rename(move || {
            *seen.lock().unwrap() = Some(value_of(&s, &*fs2, &key));
        });
    }
    assert_eq!(outcome(&store, &*fs), "Done");
    // The read in the window was a hit of the exact value (the compressed file).
    assert_eq!(
        read_in_window.lock().unwrap().take(),
        Some(Some(value.clone()))
    );
    let want = format::encode(&key, &value, meta(), 3).unwrap();
    let file = on_disk(dir.path(), &hash);
    println!(
        "after the compaction: file {:?} bytes, index {:?}",
        file.as_ref().map(Vec::len),
        store.usage()
    );
    assert_eq!(file.as_ref().map(Vec::len), Some(want.len()));
    assert!(
        file.as_deref() == Some(&want[..]),
        "not the compressed file"
    );
    assert_eq!(store.usage(), (1, want.len() as u64, false));
    assert!(value_of(&store, &*fs, &key) == Some(value), "not served");
    assert_eq!(temp_files(dir.path()), 0);
}

/// Guard: a read of the stored file *before* the rename (its bytes, noted tag the stored
/// one) does not undo the recharge: the index charges the compressed file afterwards.
#[test]
fn a_read_before_the_rename_leaves_the_compressed_charge() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, _) = open_with(&fs, dir.path(), config());
    let (key, value) = (b"k".to_vec(), text(30_000, 2));
    let hash = layout::key_hash(&key);
    store.write(&fs, &key, &hash, &value, meta()).unwrap();
    assert_eq!(value_of(&store, &fs, &key), Some(value.clone()));
    assert_eq!(outcome(&store, &fs), "Done");
    assert_eq!(value_of(&store, &fs, &key), Some(value.clone()));
    let want = format::encode(&key, &value, meta(), 3).unwrap();
    assert_eq!(on_disk(dir.path(), &hash).unwrap(), want);
    assert_eq!(store.usage(), (1, want.len() as u64, false));
}

/// A stored file of exactly one allocation unit (4096 bytes: header 88, key 1, value 3984,
/// gzip 23) is an entry like any other, never queued; one byte more is queued and compacted.
/// The file system's unit is 4096 here (the test's temp directory).
#[test]
fn the_allocation_unit_boundary_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config());
    let (at, over) = (text(3984, 3), text(3985, 4));
    let len = written(
        store
            .write(&fs, b"a", &layout::key_hash(b"a"), &at, meta())
            .unwrap(),
    );
    assert_eq!(len, 4096);
    assert_eq!(store.backlog().len(), 0);
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (3984, 4096)
    );
    let len = written(
        store
            .write(&fs, b"b", &layout::key_hash(b"b"), &over, meta())
            .unwrap(),
    );
    assert_eq!(len, 4097);
    assert_eq!(store.backlog().len(), 1);
    // 4097 bytes take two units stored; compressed they take one: compacted.
    assert_eq!(outcome(&store, &fs), "Done");
    let want = format::encode(b"b", &over, meta(), 3).unwrap();
    assert_eq!(on_disk(dir.path(), &layout::key_hash(b"b")).unwrap(), want);
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (3984 + 3985, 4096 + want.len() as u64)
    );
    assert_eq!(value_of(&store, &fs, b"a"), Some(at));
    assert_eq!(value_of(&store, &fs, b"b"), Some(over));
}

/// The same bytes written twice (same value and times: the same file, the same tag): the
/// first waiting entry compacts it, the second finds the compressed file and is superseded;
/// both writes are counted once each; one compaction.
#[test]
fn an_identical_overwrite_is_compacted_once_and_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config());
    let value = text(20_000, 5);
    let hash = layout::key_hash(b"same");
    let l1 = written(store.write(&fs, b"same", &hash, &value, meta()).unwrap());
    let l2 = written(store.write(&fs, b"same", &hash, &value, meta()).unwrap());
    assert_eq!(l1, l2);
    assert_eq!(store.backlog().len(), 2);
    assert_eq!(outcome(&store, &fs), "Done");
    assert_eq!(outcome(&store, &fs), "Superseded");
    let want = format::encode(b"same", &value, meta(), 3).unwrap();
    assert_eq!(on_disk(dir.path(), &hash).unwrap(), want);
    assert_eq!(store.usage(), (1, want.len() as u64, false));
    assert_eq!(
        (
            counters.bytes_in.get(),
            counters.bytes_out.get(),
            counters.entries_compacted.get()
        ),
        (2 * 20_000, want.len() as u64 + l2, 1)
    );
    assert_eq!(value_of(&store, &fs, b"same"), Some(value));
}

/// A key of the longest length allowed with an empty value: its stored file is over one unit
/// (the key is never compressed), so it is queued; compressed it gains nothing: left stored,
/// counted once, served exactly.
#[test]
fn a_maximal_key_with_an_empty_value_is_left_stored() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config());
    let key = vec![b'k'; 16 << 10];
    let hash = layout::key_hash(&key);
    let len = written(store.write(&fs, &key, &hash, b"", meta()).unwrap());
    assert_eq!(len, 88 + (16 << 10) + 23);
    assert_eq!(store.backlog().len(), 1);
    assert_eq!(outcome(&store, &fs), "NoGain");
    assert_eq!(on_disk(dir.path(), &hash).unwrap().len() as u64, len);
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (0, len)
    );
    assert_eq!(value_of(&store, &fs, &key), Some(Vec::new()));
    assert_eq!(temp_files(dir.path()), 0);
}

/// The free-space floor (1 MiB) with room for the compressed file but not the stored one
/// (`FaultFs::set_available_space`): the write falls back to compressing at once (nothing
/// queued, counted at once); with room for neither, it is refused and leaves no temp file.
#[test]
fn near_the_floor_a_value_that_fits_compressed_is_written_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let cfg = StoreConfig {
        min_free_bytes: Some(1 << 20),
        ..config()
    };
    let (store, counters) = open_with(&fs, dir.path(), cfg);
    let value = text(200_000, 6);
    let hash = layout::key_hash(b"near");
    let want = format::encode(b"near", &value, meta(), 3).unwrap();
    let units = |n: usize| (n as u64).div_ceil(4096) * 4096;
    // Room above the floor for the compressed file and one unit more (the check's margin).
    fs.set_available_space(Some((1 << 20) + units(want.len()) + 4096));
    let len = written(store.write(&fs, b"near", &hash, &value, meta()).unwrap());
    assert_eq!(len, want.len() as u64);
    assert_eq!(store.backlog().len(), 0);
    assert_eq!(on_disk(dir.path(), &hash).unwrap(), want);
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (200_000, want.len() as u64)
    );
    // Room for neither: refused, nothing left behind, the older file kept.
    fs.set_available_space(Some((1 << 20) + 4096));
    let other = text(200_000, 7);
    assert!(store.write(&fs, b"near", &hash, &other, meta()).is_err());
    assert_eq!(on_disk(dir.path(), &hash).unwrap(), want);
    assert_eq!(temp_files(dir.path()), 0);
    assert_eq!(store.backlog().len(), 0);
}

/// R27-F6 without an injected step: two reader threads read one key in a loop while this
/// thread writes it stored and compacts it, 500 times (no idle wait at this level). Every
/// compaction that ends `Done` must leave the file at the path; counts the ones that did not.
/// Observed on the 2-core review machine: 820 and 1055 of 3000 lost the file (the readers'
/// index-lock traffic makes the compaction wait for the lock between its rename and its
/// recharge, so the window is wide under read load).
#[test]
fn a_reader_thread_racing_compactions_never_loses_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(StdFs::new());
    let (store, _) = open_with(
        &*fs,
        dir.path(),
        StoreConfig {
            sync: false,
            ..config()
        },
    );
    let store = Arc::new(store);
    let key = b"hot".to_vec();
    let hash = layout::key_hash(&key);
    let value = text(6_000, 9);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, fs, key, stop) = (store.clone(), fs.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = store.read(&*fs, &key, &layout::key_hash(&key), NOW);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut lost = 0;
    let mut done = 0;
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..500u64 {
        let m = EntryMeta {
            created_ms: NOW - 100_000 + i,
            ..meta()
        };
        store.write(&*fs, &key, &hash, &value, m).unwrap();
        let o = outcome(&store, &*fs);
        *seen.entry(o.clone()).or_insert(0u64) += 1;
        if o == "Done" {
            done += 1;
            if on_disk(dir.path(), &hash).is_none() {
                lost += 1;
            }
        }
    }
    println!("outcomes {seen:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    println!("{done} compactions, {lost} lost the entry file, {reads} reads");
    assert_eq!(lost, 0);
}
