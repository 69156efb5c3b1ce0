//! Tests of how the warm store encodes an entry: stored (gzip level 0) when the stored entry
//! file fits in one allocation unit of the file system, compressed at the configured level
//! otherwise (`WarmStore::encode`). The unit is the one the warm index learnt from
//! `Fs::block_size` when the store prepared its directories.
//!
//! What a gzip member says about how it was made: its XFL byte (offset 8) is 4 for levels 0
//! and 1, 2 for level 9, 0 otherwise (flate2's `GzBuilder`), and bits 1-2 of its first deflate
//! byte (offset 10) are the first block's type, `00` for a stored block.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::fs::{DirEntryInfo, FileRead, Fs, StdFs};
use crate::stats::Counters;

use super::format::{self, EntryMeta, Limits, HEADER_LEN};
use super::layout::{self, Layout};
use super::quarantine::QuarantineLimits;
use super::store::{ReadOutcome, StoreConfig, WarmStore, WriteOutcome};

const NOW: u64 = 1_700_000_000_000;
/// The longest key the test stores accept.
const MAX_KEY: usize = 4096;
/// The longest value the test stores accept.
const MAX_VALUE: usize = 2 << 20;

/// `StdFs` that reports `unit` as the file system's allocation unit (`None`: unknown).
#[derive(Debug)]
struct UnitFs {
    unit: Option<u64>,
    inner: StdFs,
}

impl UnitFs {
    fn new(unit: Option<u64>) -> UnitFs {
        UnitFs {
            unit,
            inner: StdFs::new(),
        }
    }
}

impl Fs for UnitFs {
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
    fn block_size(&self, _: &Path) -> io::Result<Option<u64>> {
        Ok(self.unit)
    }
}

/// A store under a fresh temp directory whose file system reports `unit`, compressing at
/// `level`.
struct Env {
    _dir: tempfile::TempDir,
    fs: UnitFs,
    store: WarmStore,
    layout: Layout,
}

fn open(unit: Option<u64>, level: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        limits: Limits {
            max_key_bytes: MAX_KEY,
            max_entry_bytes: MAX_VALUE,
        },
        compression_level: level,
        sync: false,
        capacity_bytes: 1 << 40,
        min_free_bytes: Some(0),
        quarantine: QuarantineLimits {
            max_files: 100,
            max_bytes: 1 << 30,
        },
        page_cache_reads: false,
        space_wait: crate::warm::space::SPACE_WAIT_MAX,
        compact_later: false,
    };
    let fs = UnitFs::new(unit);
    let store = WarmStore::new(dir.path(), cfg, Arc::new(Counters::default()));
    store.prepare_dirs(&fs).unwrap();
    Env {
        layout: Layout::new(dir.path()),
        _dir: dir,
        fs,
        store,
    }
}

fn meta() -> EntryMeta {
    EntryMeta {
        created_ms: NOW - 10,
        expires_ms: NOW + 60_000,
        cost: 7,
        ..EntryMeta::default()
    }
}

impl Env {
    /// Writes `value` under `key` through the store's write path, checks that it reads back
    /// whole with its meta, and returns the entry file's bytes.
    fn put(&self, key: &[u8], value: &[u8]) -> Vec<u8> {
        let hash = layout::key_hash(key);
        let out = self
            .store
            .write(&self.fs, key, &hash, value, meta())
            .unwrap();
        let file = std::fs::read(self.layout.entry_path(&hash)).unwrap();
        assert_eq!(
            out,
            WriteOutcome::Written {
                len: file.len() as u64
            }
        );
        match self.store.read(&self.fs, key, &hash, NOW).unwrap() {
            ReadOutcome::Hit(d) => {
                assert!(d.value == value, "the value did not read back whole");
                assert_eq!(d.meta, meta());
            }
            other => panic!("expected a hit, got {other:?}"),
        }
        file
    }
}

/// The length of the entry file of `key` and a value of `n` bytes held in one stored block:
/// header, key, then the gzip member (10-byte header, 5-byte block header, the bytes, 8-byte
/// trailer).
fn stored_len(key: &[u8], n: usize) -> usize {
    HEADER_LEN + key.len() + 10 + 5 + n + 8
}

/// The longest value whose stored entry file under `key` fits in `unit` bytes.
fn fits(key: &[u8], unit: usize) -> usize {
    unit - stored_len(key, 0)
}

/// (XFL, type of the first deflate block) of an entry file's gzip member.
fn gzip_kind(file: &[u8], key: &[u8]) -> (u8, u8) {
    let member = &file[HEADER_LEN + key.len()..];
    (member[8], (member[10] >> 1) & 0b11)
}

/// The block type of a stored block.
const STORED: u8 = 0b00;
/// XFL of levels 0 and 1 ("fastest").
const XFL_FASTEST: u8 = 4;
/// XFL of level 9 ("best").
const XFL_BEST: u8 = 2;

/// `n` bytes of text that compresses well.
fn prose(n: usize) -> Vec<u8> {
    b"The capital of France is Paris; its river is the Seine. "
        .iter()
        .cycle()
        .take(n)
        .copied()
        .collect()
}

/// The stored file holds the value's bytes verbatim after the block header.
fn assert_stored(file: &[u8], key: &[u8], value: &[u8]) {
    assert_eq!(file.len(), stored_len(key, value.len()));
    assert_eq!(gzip_kind(file, key), (XFL_FASTEST, STORED));
    let data = HEADER_LEN + key.len() + 10 + 5;
    assert!(&file[data..data + value.len()] == value);
    assert_eq!(file, format::encode(key, value, meta(), 0).unwrap());
}

/// The file is what `format::encode` makes at `level`, and not a stored block.
fn assert_compressed(file: &[u8], key: &[u8], value: &[u8], level: u32) {
    assert_eq!(file, format::encode(key, value, meta(), level).unwrap());
    assert_ne!(gzip_kind(file, key).1, STORED, "level {level}");
    assert!(file.len() < stored_len(key, value.len()));
}

#[test]
fn a_stored_file_of_exactly_one_unit_is_stored_one_byte_more_is_compressed() {
    for level in [1, 3, 6, 9] {
        let env = open(Some(4096), level);
        let key = b"boundary";
        let n = fits(key, 4096);
        assert_eq!(n, 3977);

        let value = prose(n);
        let file = env.put(key, &value);
        assert_eq!(file.len(), 4096, "level {level}");
        assert_stored(&file, key, &value);

        let value = prose(n + 1);
        let file = env.put(key, &value);
        assert_compressed(&file, key, &value, level);
        let xfl = match level {
            1 => XFL_FASTEST,
            9 => XFL_BEST,
            _ => 0,
        };
        assert_eq!(gzip_kind(&file, key).0, xfl, "level {level}");
    }
}

/// The configured level is the one used above the unit, not the default: level 9's file
/// differs from level 3's, and is the one written.
#[test]
fn above_the_unit_the_configured_level_is_used() {
    let key = b"above";
    let value = prose(20_000);
    let l3 = format::encode(key, &value, meta(), 3).unwrap();
    let l9 = format::encode(key, &value, meta(), 9).unwrap();
    assert_ne!(l3, l9);
    let file = open(Some(4096), 9).put(key, &value);
    assert_eq!(file.len(), l9.len());
    assert_compressed(&file, key, &value, 9);
    assert_eq!(gzip_kind(&file, key).0, XFL_BEST);
    let file = open(Some(4096), 3).put(key, &value);
    assert_eq!(file.len(), l3.len());
    assert_compressed(&file, key, &value, 3);
}

/// Compressing saves nothing the budget can see below one unit, however well the value
/// compresses: 1,000 repeated bytes are stored (1,112 B) where level 9 makes 118 B.
#[test]
fn a_compressible_value_that_fits_is_stored() {
    let env = open(Some(4096), 9);
    let key = b"k";
    let value = vec![b'a'; 1000];
    let file = env.put(key, &value);
    assert_eq!(file.len(), 1112);
    assert_stored(&file, key, &value);
    assert_eq!(format::encode(key, &value, meta(), 9).unwrap().len(), 118);
    // The empty value too.
    let file = env.put(b"empty", b"");
    assert_stored(&file, b"empty", b"");
}

/// With `compression_level(0)` every entry is stored, one unit or many, and reads back.
#[test]
fn level_0_configured_stores_every_entry() {
    let env = open(Some(4096), 0);
    let key = b"zero";
    for n in [0, 100, fits(key, 4096), fits(key, 4096) + 1, 20_000] {
        let value = prose(n);
        let file = env.put(key, &value);
        assert_stored(&file, key, &value);
    }
    // A large value takes several stored blocks: still level 0 throughout.
    let value = prose(300_000);
    let file = env.put(key, &value);
    assert_eq!(file, format::encode(key, &value, meta(), 0).unwrap());
    assert_eq!(gzip_kind(&file, key), (XFL_FASTEST, STORED));
    assert!(file.len() > stored_len(key, value.len()));
}

/// The unit is what the file system reports, as the index clamps it (512 B ..= 1 MiB), and
/// 4 KiB when it reports nothing; a file is stored only up to 4 KiB however large the unit
/// (`STORED_MAX_BYTES`: the next test).
#[test]
fn the_unit_is_the_file_systems_clamped_or_4_kib_when_unknown() {
    let key = b"unit";
    for (reported, limit) in [
        (None, 4096),
        (Some(512), 512),
        (Some(0), 512),
        (Some(1), 512),
        (Some(2048), 2048),
        (Some(4096), 4096),
        (Some(8192), 4096),
        (Some(32768), 4096),
    ] {
        let env = open(reported, 3);
        let n = fits(key, limit);
        let value = prose(n);
        let file = env.put(key, &value);
        assert_eq!(file.len(), limit, "{reported:?}");
        assert_stored(&file, key, &value);
        let value = prose(n + 1);
        let file = env.put(key, &value);
        assert_compressed(&file, key, &value, 3);
    }
}

/// Under a unit larger than 4 KiB (NFS reports 1 MiB and allocates far less) nothing over
/// 4 KiB is stored: there compressing does save real bytes, page cache and, with the shared
/// tier, network. A stored member has one 5-byte block header per 65,535 bytes (laid out by
/// `format::stored_member`; flate2, which fed zlib-rs through a 32 KiB buffer, added one from
/// 32 KiB on): the cap keeps every file stored under it to one block.
#[test]
fn under_a_large_unit_nothing_over_4_kib_is_stored() {
    let key = b"large";
    assert_eq!(
        format::encode(key, &prose(32_767), meta(), 0)
            .unwrap()
            .len(),
        stored_len(key, 32_767)
    );
    assert_eq!(
        format::encode(key, &prose(65_535), meta(), 0)
            .unwrap()
            .len(),
        stored_len(key, 65_535)
    );
    assert_eq!(
        format::encode(key, &prose(65_536), meta(), 0)
            .unwrap()
            .len(),
        stored_len(key, 65_536) + 5
    );
    for reported in [Some(65_536), Some(1 << 20), Some(u64::MAX)] {
        let env = open(reported, 3);
        let n = fits(key, 4096);
        let value = prose(n);
        let file = env.put(key, &value);
        assert_eq!(file.len(), 4096, "{reported:?}");
        assert_stored(&file, key, &value);
        for m in [n + 1, 8192, 65_000, fits(key, 1 << 20)] {
            let value = prose(m);
            let file = env.put(key, &value);
            assert_compressed(&file, key, &value, 3);
        }
    }
    // And the largest value the store accepts is compressed under the largest unit.
    let env = open(Some(u64::MAX), 3);
    let value = prose(MAX_VALUE);
    let file = env.put(key, &value);
    assert_compressed(&file, key, &value, 3);
}

/// A key alone can fill the unit: then even an empty value is compressed, without overflow or
/// panic, under any unit.
#[test]
fn a_key_longer_than_the_unit_leaves_every_value_compressed() {
    let key = vec![b'k'; MAX_KEY];
    let env = open(Some(512), 6);
    for n in [0, 1, 100] {
        let value = prose(n);
        let file = env.put(&key, &value);
        assert_compressed(&file, &key, &value, 6);
    }
    // Under a larger unit too: the stored file (4096 + 88 + 23 + 100 bytes) is over 4 KiB.
    let env = open(Some(8192), 6);
    let value = prose(100);
    let file = env.put(&key, &value);
    assert_compressed(&file, &key, &value, 6);
}
