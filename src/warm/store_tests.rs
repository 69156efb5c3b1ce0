//! Synchronous tests of the warm store's read paths (`read`, `read_inline`,
//! `read_prefetched`) over real temp directories, through `StdFs` and the fault-injecting
//! file systems of `crate::testing`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{Fs, StdFs};
use crate::stats::Counters;
use crate::testing::{CrashFs, Fault, FaultFs, FsOp, Rule};

use super::format::{self, Corruption, Decoded, EntryMeta, Limits, HEADER_LEN};
use super::layout::{self, KeyHash, Layout};
use super::quarantine::{self, QuarantineLimits, SIDECAR_SUFFIX};
use super::store::{
    InlineRead, Prefetched, ReadOutcome, SteppedRead, StoreConfig, WarmStore, WriteOutcome,
    INLINE_STEP_BYTES, RENAME_ATTEMPTS, STEPPED_FILE_MAX, STEPPED_VALUE_MAX,
};

const NOW: u64 = 1_700_000_000_000;

fn config(sync: bool, page_cache_reads: bool) -> StoreConfig {
    StoreConfig {
        limits: Limits {
            max_key_bytes: 1024,
            max_entry_bytes: 1 << 20,
        },
        compression_level: 6,
        sync,
        capacity_bytes: 1 << 30,
        min_free_bytes: Some(0),
        quarantine: QuarantineLimits {
            max_files: 100,
            max_bytes: 1 << 30,
        },
        page_cache_reads,
        space_wait: crate::warm::space::SPACE_WAIT_MAX,
        compact_later: false,
    }
}

struct Env {
    store: WarmStore,
    counters: Arc<Counters>,
    layout: Layout,
}

fn open_with(fs: &dyn Fs, root: &Path, cfg: StoreConfig) -> Env {
    let counters = Arc::new(Counters::default());
    let store = WarmStore::new(root, cfg, counters.clone());
    store.prepare_dirs(fs).unwrap();
    store.detect_nowait_reads(fs);
    Env {
        store,
        counters,
        layout: Layout::new(root),
    }
}

fn open(root: &Path) -> Env {
    open_with(&StdFs::new(), root, config(false, true))
}

fn meta(expires_ms: u64) -> EntryMeta {
    EntryMeta {
        created_ms: NOW - 10,
        expires_ms,
        cost: 42,
        ..EntryMeta::default()
    }
}

/// Pseudo-random (incompressible) bytes.
/// A value longer than one inflate step whose entry file is still read inline (at most
/// [`STEPPED_FILE_MAX`]): 40 KiB of noise, then 40 KiB of zeros.
fn stepped_value() -> Vec<u8> {
    let mut value = noise(40 * 1024);
    value.resize(80 * 1024, 0);
    value
}

fn noise(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new()
        .update(b"noise")
        .finalize_xof()
        .fill(&mut out);
    out
}

impl Env {
    fn path(&self, hash: &KeyHash) -> PathBuf {
        self.layout.entry_path(hash)
    }

    /// Writes through the store's own write path; returns the file's bytes.
    fn put(&self, fs: &dyn Fs, key: &[u8], value: &[u8], m: EntryMeta) -> Vec<u8> {
        let hash = layout::key_hash(key);
        let out = self.store.write(fs, key, &hash, value, m).unwrap();
        let file = std::fs::read(self.path(&hash)).unwrap();
        assert_eq!(
            out,
            WriteOutcome::Written {
                len: file.len() as u64
            }
        );
        file
    }

    fn corrupted(&self, reason: Corruption) -> u64 {
        self.counters.corrupted[reason.index()].get()
    }

    fn corrupted_total(&self) -> u64 {
        self.counters.corrupted.iter().map(|c| c.get()).sum()
    }

    /// (quarantined file names, sidecar names), sorted.
    fn quarantine_dir(&self) -> (Vec<String>, Vec<String>) {
        let mut files = Vec::new();
        let mut sides = Vec::new();
        for e in std::fs::read_dir(self.layout.quarantine_dir()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(SIDECAR_SUFFIX) {
                sides.push(name);
            } else {
                files.push(name);
            }
        }
        files.sort();
        sides.sort();
        (files, sides)
    }

    /// Reads `key` at `NOW` (an I/O error fails the test).
    fn read(&self, fs: &dyn Fs, key: &[u8]) -> ReadOutcome {
        self.store
            .read(fs, key, &layout::key_hash(key), NOW)
            .unwrap()
    }

    /// No temp file in `tmp/` and none beside an entry (`v2/ab/.<…>.tmp`).
    fn tmp_is_empty(&self) -> bool {
        crate::testing::temp_files(self.layout.root()).is_empty()
    }
}

fn hit(outcome: ReadOutcome) -> Decoded {
    match outcome {
        ReadOutcome::Hit(d) => d,
        other => panic!("expected a hit, got {other:?}"),
    }
}

fn expect_break(flow: ControlFlow<std::io::Result<InlineRead>, Option<Prefetched>>) -> InlineRead {
    match flow {
        ControlFlow::Break(r) => r.unwrap(),
        ControlFlow::Continue(c) => {
            panic!(
                "expected Break, got Continue({:?})",
                c.map(|v| v.data().len())
            )
        }
    }
}

/// The value and meta of an inline hit.
fn inline_hit(read: InlineRead) -> (Vec<u8>, EntryMeta) {
    match read {
        InlineRead::Hit { meta, value } => (value.to_vec(), meta),
        other => panic!("expected an inline hit, got {other:?}"),
    }
}

fn expect_continue(
    flow: ControlFlow<std::io::Result<InlineRead>, Option<Prefetched>>,
) -> Option<Prefetched> {
    match flow {
        ControlFlow::Continue(c) => c,
        ControlFlow::Break(r) => panic!("expected Continue, got Break({r:?})"),
    }
}

/// Whether the temp directory's file system lets `read_inline` try the page cache at all
/// (ext4/xfs/btrfs with `RESOLVE_CACHED`); the inline-hit tests need it.
fn nowait_here(root: &Path) -> bool {
    let yes = StdFs::new().nowait_reads(root);
    if !yes {
        eprintln!(
            "page-cache reads unsupported under {}: skipped",
            root.display()
        );
    }
    yes
}

// ---------------------------------------------------------------- healthy hits

#[test]
fn read_hits_a_written_entry_with_its_value_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"alpha";
    let hash = layout::key_hash(key);
    let m = meta(NOW + 60_000);
    let file = env.put(&StdFs::new(), key, b"the value", m);
    assert_eq!(env.store.usage(), (1, file.len() as u64, false));

    let d = hit(env.read(&StdFs::new(), key));
    assert_eq!(d.value, b"the value");
    assert_eq!(d.meta, m);
    assert_eq!(d.meta.created_ms, NOW - 10);
    assert_eq!(d.meta.expires_ms, NOW + 60_000);
    assert_eq!(d.meta.cost, 42);
    // The file stays; nothing counted as corrupt or expired; the blocking path is not inline.
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
    assert_eq!(env.corrupted_total(), 0);
    assert_eq!(env.counters.warm_expirations.get(), 0);
    assert_eq!(env.counters.inline_reads.get(), 0);
    assert_eq!(env.counters.bytes_in.get(), 9);
    assert_eq!(env.counters.bytes_out.get(), file.len() as u64);
    assert_eq!(env.store.usage(), (1, file.len() as u64, false));
}

#[test]
fn read_inline_hits_a_small_entry_in_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    if !nowait_here(dir.path()) {
        return;
    }
    let env = open(dir.path());
    let key = b"inline";
    let hash = layout::key_hash(key);
    let m = meta(0);
    let file = env.put(&StdFs::new(), key, b"small value", m);
    assert!(file.len() <= STEPPED_FILE_MAX);
    // Warm the dentry and page caches (the write did, a blocking read makes sure).
    hit(env.read(&StdFs::new(), key));

    let (value, got) = inline_hit(expect_break(env.store.read_inline(
        &StdFs::new(),
        key,
        &hash,
        NOW,
    )));
    assert_eq!(value, b"small value");
    assert_eq!(got, m);
    assert_eq!(env.counters.inline_reads.get(), 1);
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
    assert_eq!(env.store.usage(), (1, file.len() as u64, false));
}

#[test]
fn read_inline_verifies_a_longer_entry_and_hands_it_over_to_be_inflated_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    if !nowait_here(dir.path()) {
        return;
    }
    let env = open(dir.path());
    let key = b"longer";
    let hash = layout::key_hash(key);
    let value = stepped_value();
    let m = meta(NOW + 1);
    let file = env.put(&StdFs::new(), key, &value, m);
    assert!(file.len() <= STEPPED_FILE_MAX && value.len() > INLINE_STEP_BYTES);
    hit(env.read(&StdFs::new(), key));

    let mut inflating = match expect_break(env.store.read_inline(&StdFs::new(), key, &hash, NOW)) {
        InlineRead::Inflate(i) => i,
        other => panic!("expected a verified entry to inflate, got {other:?}"),
    };
    assert_eq!(inflating.meta(), &m);
    assert_eq!(inflating.file(), &file[..]);
    assert_eq!(env.counters.inline_reads.get(), 0);
    // One step was taken by `read_inline`.
    let mut steps = 1;
    loop {
        steps += 1;
        if inflating.step(INLINE_STEP_BYTES).unwrap() {
            break;
        }
    }
    assert_eq!(steps, value.len().div_ceil(INLINE_STEP_BYTES));
    let (got_meta, got) = env.store.stepped_hit(&hash, *inflating);
    assert_eq!(&got[..], &value[..]);
    assert_eq!(got_meta, m);
    assert_eq!(env.counters.inline_reads.get(), 1);
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
}

/// A write of the key between the steps of a stepped read owns the index entry: the read's
/// hit must not record its older file's length and tag over the newer one's
/// (tests/adversary7/stepped/FINDINGS.md, P1). Without a write, the hit is recorded.
#[test]
fn a_stepped_hit_leaves_the_index_entry_of_a_file_written_during_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    if !nowait_here(dir.path()) {
        return;
    }
    let env = open(dir.path());
    let key = b"rewritten";
    let hash = layout::key_hash(key);
    let fs = StdFs::new();
    let value = stepped_value();
    let old = env.put(&fs, key, &value, meta(NOW + 1));
    let inflate = |env: &Env| match expect_break(env.store.read_inline(&fs, key, &hash, NOW)) {
        InlineRead::Inflate(i) => i,
        other => panic!("expected a verified entry to inflate, got {other:?}"),
    };
    let finish = |env: &Env, mut read: Box<SteppedRead>| {
        while !read.step(INLINE_STEP_BYTES).unwrap() {}
        env.store.stepped_hit(&hash, *read)
    };

    // Nothing written meanwhile: recorded (same file, same length).
    let read = inflate(&env);
    let (_, got) = finish(&env, read);
    assert_eq!(&got[..], &value[..]);
    assert_eq!(env.store.usage(), (1, old.len() as u64, false));

    // A newer file written and indexed meanwhile: the older file's hit is still an answer,
    // but the index keeps the newer file's length.
    let read = inflate(&env);
    let new = env.put(&fs, key, b"newer", meta(NOW + 2));
    assert_ne!(new.len(), old.len());
    let (_, got) = finish(&env, read);
    assert_eq!(&got[..], &value[..]);
    assert_eq!(env.store.usage(), (1, new.len() as u64, false));
    assert_eq!(env.counters.inline_reads.get(), 2);
}

/// `StdFs` that runs a hook once, right after its first read of a path whose name contains
/// `name` (found or not, blocking or from the page cache): a write of the key between a
/// read's file read and its index update, with no timing involved.
struct AfterReadFs<'a> {
    inner: StdFs,
    name: String,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send + 'a>>>,
}

impl std::fmt::Debug for AfterReadFs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfterReadFs")
            .field("name", &self.name)
            .finish()
    }
}

impl<'a> AfterReadFs<'a> {
    fn new(hash: &KeyHash, hook: impl FnOnce() + Send + 'a) -> Self {
        AfterReadFs {
            inner: StdFs::new(),
            name: layout::hex(hash),
            hook: std::sync::Mutex::new(Some(Box::new(hook))),
        }
    }

    fn after<T>(&self, path: &Path, read: T) -> T {
        if path.to_string_lossy().contains(&self.name) {
            if let Some(hook) = self.hook.lock().unwrap().take() {
                hook();
            }
        }
        read
    }

    fn fired(&self) -> bool {
        self.hook.lock().unwrap().is_none()
    }
}

impl Fs for AfterReadFs<'_> {
    fn read_file(&self, path: &Path, max_len: u64) -> std::io::Result<crate::fs::FileRead> {
        self.after(path, self.inner.read_file(path, max_len))
    }
    fn read_prefix(&self, path: &Path, n: usize) -> std::io::Result<crate::fs::FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
        self.inner.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<crate::fs::DirEntryInfo>> {
        self.inner.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.available_space(path)
    }
    fn nowait_reads(&self, root: &Path) -> bool {
        self.inner.nowait_reads(root)
    }
    fn read_file_nowait(
        &self,
        path: &Path,
        max_len: u64,
    ) -> std::io::Result<Option<crate::fs::FileRead>> {
        self.after(path, self.inner.read_file_nowait(path, max_len))
    }
}

/// A write of the key after a blocking-pool read has read the file and before it records
/// its hit (the inflate of a 2-8 MiB value is that long): the hit of the older file is an
/// answer, but must not record its length and tag over the newer file's entry
/// (tests/adversary7/stepped/FINDINGS.md, P1 on the blocking-pool path).
#[test]
fn a_blocking_read_hit_leaves_the_index_entry_of_a_file_written_after_its_read() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"rewritten";
    let hash = layout::key_hash(key);
    let value = noise(96 * 1024);
    let old = env.put(&StdFs::new(), key, &value, meta(NOW + 1));
    let mut new = Vec::new();
    let fs = AfterReadFs::new(&hash, || {
        new = env.put(&StdFs::new(), key, b"newer", meta(NOW + 2));
    });
    let d = hit(env.read(&fs, key));
    assert!(fs.fired());
    drop(fs);
    assert_eq!(d.value, value);
    assert_ne!(new.len(), old.len());
    assert_eq!(env.store.usage(), (1, new.len() as u64, false));
    // Nothing written meanwhile: the hit is recorded (the newer file's, re-read).
    assert_eq!(hit(env.read(&StdFs::new(), key)).value, b"newer");
    assert_eq!(env.store.usage(), (1, new.len() as u64, false));
}

/// The same for the bytes `read_inline` read and handed to the blocking pool (a file over
/// `STEPPED_FILE_MAX`): a newer file written and indexed in between keeps its entry.
#[test]
fn a_prefetched_hit_leaves_the_index_entry_of_a_file_written_after_its_read() {
    let dir = tempfile::tempdir().unwrap();
    if !nowait_here(dir.path()) {
        return;
    }
    let env = open(dir.path());
    let key = b"rewritten";
    let hash = layout::key_hash(key);
    let fs = StdFs::new();
    let value = noise(96 * 1024);
    let old = env.put(&fs, key, &value, meta(NOW + 1));
    assert!(old.len() > STEPPED_FILE_MAX);
    let prefetch =
        || expect_continue(env.store.read_inline(&fs, key, &hash, NOW)).expect("the bytes read");

    // Nothing written meanwhile: recorded.
    let read = prefetch();
    let d = hit(env
        .store
        .read_prefetched(&fs, key, &hash, read, NOW)
        .unwrap());
    assert_eq!(d.value, value);
    assert_eq!(env.store.usage(), (1, old.len() as u64, false));

    // A newer file written and indexed after the read.
    let read = prefetch();
    let new = env.put(&fs, key, b"newer", meta(NOW + 2));
    let d = hit(env
        .store
        .read_prefetched(&fs, key, &hash, read, NOW)
        .unwrap());
    assert_eq!(d.value, value);
    assert_eq!(env.store.usage(), (1, new.len() as u64, false));
}

/// A read that finds no file must not drop the index entry of a file written (renamed into
/// place and indexed) after it looked: on the blocking path and on the page-cache path.
#[test]
fn a_miss_leaves_the_index_entry_of_a_file_written_after_its_read() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"appears";
    let hash = layout::key_hash(key);
    let mut new = Vec::new();
    let fs = AfterReadFs::new(&hash, || {
        new = env.put(&StdFs::new(), key, b"newer", meta(NOW + 2));
    });
    assert!(matches!(env.read(&fs, key), ReadOutcome::Miss));
    assert!(fs.fired());
    drop(fs);
    assert_eq!(env.store.usage(), (1, new.len() as u64, false));

    if !nowait_here(dir.path()) {
        return;
    }
    std::fs::remove_file(env.path(&hash)).unwrap();
    // The blocking read caches the negative lookup, and forgets the file deleted behind
    // the store's back (nothing written meanwhile).
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Miss));
    assert_eq!(env.store.usage(), (0, 0, false));
    let mut new = Vec::new();
    let fs = AfterReadFs::new(&hash, || {
        new = env.put(&StdFs::new(), key, b"newest", meta(NOW + 3));
    });
    assert!(matches!(
        expect_break(env.store.read_inline(&fs, key, &hash, NOW)),
        InlineRead::Done(ReadOutcome::Miss)
    ));
    assert!(fs.fired());
    drop(fs);
    assert_eq!(env.store.usage(), (1, new.len() as u64, false));
}

#[test]
fn read_inline_hands_a_large_entry_over_already_read_and_read_prefetched_hits() {
    let dir = tempfile::tempdir().unwrap();
    if !nowait_here(dir.path()) {
        return;
    }
    let env = open(dir.path());
    let key = b"large";
    let hash = layout::key_hash(key);
    let value = noise(96 * 1024);
    let m = meta(NOW + 1);
    let file = env.put(&StdFs::new(), key, &value, m);
    assert!(file.len() > STEPPED_FILE_MAX);
    hit(env.read(&StdFs::new(), key));

    let data = expect_continue(env.store.read_inline(&StdFs::new(), key, &hash, NOW))
        .expect("the bytes of a large entry");
    assert_eq!(data.data(), &file[..]);
    assert_eq!(env.counters.inline_reads.get(), 0);

    let d = hit(env
        .store
        .read_prefetched(&StdFs::new(), key, &hash, data, NOW)
        .unwrap());
    assert_eq!(d.value, value);
    assert_eq!(d.meta, m);
    assert_eq!(env.counters.inline_reads.get(), 0);
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
}

/// `read_inline` of `key` expected to hand the bytes over to the blocking pool (without
/// printing a value of megabytes when it does not).
fn expect_handed_over(env: &Env, key: &[u8]) -> Prefetched {
    let hash = layout::key_hash(key);
    match env.store.read_inline(&StdFs::new(), key, &hash, NOW) {
        ControlFlow::Continue(Some(read)) => read,
        ControlFlow::Continue(None) => panic!("handed over without the bytes"),
        ControlFlow::Break(Ok(InlineRead::Inflate(read))) => panic!(
            "the value of a file of {} bytes is being inflated on the caller's thread",
            read.file().len()
        ),
        ControlFlow::Break(Ok(InlineRead::Hit { value, .. })) => {
            panic!("an inline hit of {} bytes", value.len())
        }
        ControlFlow::Break(other) => panic!("{:?}", other.map(|_| ())),
    }
}

/// A small file may declare a large value (up to `max_entry_bytes`, 16 MiB by default): one
/// byte repeated compresses ~1000:1. A value over [`STEPPED_VALUE_MAX`] is not allocated
/// (zero-filled) and inflated on the caller's thread: `read_inline` hands the bytes to the
/// blocking pool, as it does a large file, and `read_prefetched` hits
/// (tests/adversary7/stepped/FINDINGS.md, P2). One of exactly `STEPPED_VALUE_MAX` is inflated
/// in steps.
#[test]
fn read_inline_hands_a_small_file_declaring_a_large_value_to_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    if !nowait_here(dir.path()) {
        return;
    }
    let mut cfg = config(false, true);
    cfg.limits.max_entry_bytes = 16 << 20;
    let env = open_with(&StdFs::new(), dir.path(), cfg);
    for len in [4 << 20, STEPPED_VALUE_MAX as usize + 1] {
        let key = format!("declares {len}");
        let (key, hash) = (key.as_bytes(), layout::key_hash(key.as_bytes()));
        let value = vec![b'z'; len];
        let file = env.put(&StdFs::new(), key, &value, meta(NOW + 1));
        assert!(file.len() <= STEPPED_FILE_MAX, "{} bytes", file.len());
        let read = expect_handed_over(&env, key);
        assert_eq!(read.data(), &file[..]);
        let d = hit(env
            .store
            .read_prefetched(&StdFs::new(), key, &hash, read, NOW)
            .unwrap());
        assert!(d.value == value);
    }
    assert_eq!(env.counters.inline_reads.get(), 0);

    let (key, len) = (b"at the cap", STEPPED_VALUE_MAX as usize);
    let hash = layout::key_hash(key);
    let value = vec![b'z'; len];
    let file = env.put(&StdFs::new(), key, &value, meta(NOW + 1));
    assert!(file.len() <= STEPPED_FILE_MAX, "{} bytes", file.len());
    let mut read = match expect_break(env.store.read_inline(&StdFs::new(), key, &hash, NOW)) {
        InlineRead::Inflate(i) => i,
        InlineRead::Hit { .. } => panic!("an inline hit in one step"),
        InlineRead::Done(outcome) => {
            panic!("expected a verified entry to inflate, got {outcome:?}")
        }
    };
    // One step was taken by `read_inline`.
    let mut steps = 1;
    loop {
        steps += 1;
        if read.step(INLINE_STEP_BYTES).unwrap() {
            break;
        }
    }
    assert_eq!(steps, len / INLINE_STEP_BYTES);
    let (_, got) = env.store.stepped_hit(&hash, *read);
    assert!(got[..] == value[..]);
    assert_eq!(env.counters.inline_reads.get(), 1);
}

#[test]
fn read_prefetched_hits_on_valid_bytes_without_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"prefetched";
    let hash = layout::key_hash(key);
    let m = meta(0);
    let file = env.put(&StdFs::new(), key, b"v", m);
    let fs = FaultFs::std();
    let before = fs.total_calls();
    let d = hit(env
        .store
        .read_prefetched(&fs, key, &hash, env.store.prefetched(&hash, file), NOW)
        .unwrap());
    assert_eq!(d.value, b"v");
    assert_eq!(d.meta, m);
    assert_eq!(
        fs.total_calls(),
        before,
        "a valid prefetched entry needs no I/O"
    );
}

#[test]
fn read_prefetched_with_bad_bytes_reads_the_path_again() {
    // The prefetched bytes went bad (or were superseded) but the file at the path is healthy:
    // the read is that file's hit, and nothing is counted or quarantined.
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"reread";
    let hash = layout::key_hash(key);
    let file = env.put(&StdFs::new(), key, b"on disk", meta(0));
    let mut bad = file.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let d = hit(env
        .store
        .read_prefetched(
            &StdFs::new(),
            key,
            &hash,
            env.store.prefetched(&hash, bad),
            NOW,
        )
        .unwrap());
    assert_eq!(d.value, b"on disk");
    assert_eq!(env.corrupted_total(), 0);
    assert_eq!(env.counters.quarantined_files.get(), 0);
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
}

#[test]
fn inline_is_off_without_page_cache_reads_or_through_a_fault_fs() {
    let dir = tempfile::tempdir().unwrap();
    let key = b"k";
    let hash = layout::key_hash(key);
    {
        let env = open_with(&StdFs::new(), dir.path(), config(false, false));
        env.put(&StdFs::new(), key, b"v", meta(0));
        assert_eq!(
            expect_continue(env.store.read_inline(&StdFs::new(), key, &hash, NOW)),
            None
        );
    }
    // FaultFs keeps the trait default (`nowait_reads` false): its faults are seen on the
    // blocking path only.
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(false, true));
    let reads = fs.calls(FsOp::ReadFile);
    assert_eq!(
        expect_continue(env.store.read_inline(&fs, key, &hash, NOW)),
        None
    );
    assert_eq!(fs.calls(FsOp::ReadFile), reads);
    assert_eq!(env.counters.inline_reads.get(), 0);
}

// ---------------------------------------------------------------- miss

#[test]
fn an_absent_key_is_a_miss_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"absent";
    let hash = layout::key_hash(key);
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Miss));
    // Garbage prefetched bytes for an absent file: read again, a miss, nothing counted.
    assert!(matches!(
        env.store
            .read_prefetched(
                &StdFs::new(),
                key,
                &hash,
                env.store.prefetched(&hash, b"garbage".to_vec()),
                NOW
            )
            .unwrap(),
        ReadOutcome::Miss
    ));
    assert_eq!(env.corrupted_total(), 0);
    assert_eq!(env.store.usage(), (0, 0, false));
    if nowait_here(dir.path()) {
        // The blocking reads above cached the negative lookup.
        assert!(matches!(
            expect_break(env.store.read_inline(&StdFs::new(), key, &hash, NOW)),
            InlineRead::Done(ReadOutcome::Miss)
        ));
    }
    assert_eq!(env.counters.inline_reads.get(), 0);
}

#[test]
fn a_removed_entry_is_a_miss_and_leaves_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"gone";
    let hash = layout::key_hash(key);
    let file = env.put(&StdFs::new(), key, b"v", meta(0));
    assert_eq!(env.store.usage(), (1, file.len() as u64, false));
    std::fs::remove_file(env.path(&hash)).unwrap();
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Miss));
    assert_eq!(env.store.usage(), (0, 0, false));
}

// ---------------------------------------------------------------- expiry

#[test]
fn an_expired_entry_is_expired_and_its_file_removed() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"old";
    let hash = layout::key_hash(key);
    let file = env.put(&StdFs::new(), key, b"stale", meta(NOW));
    // One ms before expiry it is a hit.
    assert_eq!(
        hit(env.store.read(&StdFs::new(), key, &hash, NOW - 1).unwrap()).value,
        b"stale"
    );
    // Inline: expired entries go to the blocking path, the file untouched.
    if nowait_here(dir.path()) {
        assert_eq!(
            expect_continue(env.store.read_inline(&StdFs::new(), key, &hash, NOW)),
            None
        );
        assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
    }
    // `expires_ms == now` is expired.
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Expired));
    assert!(!env.path(&hash).exists());
    assert!(env.tmp_is_empty());
    assert_eq!(env.counters.warm_expirations.get(), 1);
    assert_eq!(env.corrupted_total(), 0);
    assert_eq!(env.store.usage(), (0, 0, false));
    // And now it is a miss.
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Miss));
    assert_eq!(env.counters.warm_expirations.get(), 1);
}

#[test]
fn read_prefetched_of_an_expired_entry_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"old-large";
    let hash = layout::key_hash(key);
    let file = env.put(&StdFs::new(), key, &noise(20 * 1024), meta(NOW - 1));
    assert!(matches!(
        env.store
            .read_prefetched(
                &StdFs::new(),
                key,
                &hash,
                env.store.prefetched(&hash, file),
                NOW
            )
            .unwrap(),
        ReadOutcome::Expired
    ));
    assert!(!env.path(&hash).exists());
    assert_eq!(env.counters.warm_expirations.get(), 1);
}

#[test]
fn an_expired_read_never_deletes_a_fresh_entry_written_since() {
    // The prefetched bytes are expired; a fresh entry was renamed into place since. The
    // blocking re-read judges what is at the path now: a hit of the fresh value.
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"rewritten";
    let hash = layout::key_hash(key);
    let old = env.put(&StdFs::new(), key, b"old", meta(NOW - 1));
    let fresh = env.put(&StdFs::new(), key, b"fresh", meta(NOW + 1000));
    let d = hit(env
        .store
        .read_prefetched(
            &StdFs::new(),
            key,
            &hash,
            env.store.prefetched(&hash, old),
            NOW,
        )
        .unwrap());
    assert_eq!(d.value, b"fresh");
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), fresh);
    assert_eq!(env.counters.warm_expirations.get(), 0);
}

// ---------------------------------------------------------------- corruption

/// Places `bytes` at `key`'s entry path, runs `read`, and checks the corrupt outcome: counted
/// once under `reason`, moved into the quarantine as `<now>-<reason>-<hex>` with a sidecar.
fn assert_quarantined(env: &Env, key: &[u8], bytes: &[u8], reason: Corruption) {
    let hash = layout::key_hash(key);
    let path = env.path(&hash);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    if nowait_here(env.layout.root()) {
        // Inline never acts on a corrupt file: it goes to the blocking path, untouched.
        assert_eq!(
            expect_continue(env.store.read_inline(&StdFs::new(), key, &hash, NOW)),
            None
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(env.corrupted_total(), 0);
    }
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Corrupt));
    assert!(!path.exists(), "{reason}: the entry path is emptied");
    assert_eq!(env.corrupted(reason), 1, "{reason}");
    assert_eq!(env.corrupted_total(), 1, "{reason}");
    assert_eq!(env.counters.quarantined_files.get(), 1);
    assert_eq!(env.counters.quarantined_bytes.get(), bytes.len() as u64);
    let name = format!("{NOW}-{}-{}", reason.name(), layout::hex(&hash));
    let (files, sides) = env.quarantine_dir();
    assert_eq!(files, vec![name.clone()]);
    assert_eq!(sides, vec![format!("{name}{SIDECAR_SUFFIX}")]);
    let q = env.layout.quarantine_dir().join(&name);
    assert_eq!(std::fs::read(&q).unwrap(), bytes, "quarantined as found");
    let why = std::fs::read_to_string(format!("{}{SIDECAR_SUFFIX}", q.display())).unwrap();
    assert!(
        why.starts_with(&format!("reason: {}\n", reason.name())),
        "{why}"
    );
    assert!(why.contains(&format!("\nsize: {}\n", bytes.len())), "{why}");
    assert!(why.contains(&format!("\ntime_ms: {NOW}\n")), "{why}");
    let listed = quarantine::list(&StdFs::new(), env.layout.quarantine_dir()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, reason.name());
    assert_eq!(listed[0].time_ms, NOW);
    assert!(env.tmp_is_empty());
    assert_eq!(env.store.usage().0, 0);
    // Now a plain miss, counted once.
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Miss));
    assert_eq!(env.corrupted_total(), 1);
}

fn good_file(key: &[u8]) -> Vec<u8> {
    format::encode(
        key,
        b"a value that compresses: aaaaaaaaaaaaaaaa",
        meta(0),
        6,
    )
    .unwrap()
}

#[test]
fn a_flipped_payload_byte_is_a_checksum_corruption_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"flip";
    let mut bytes = good_file(key);
    let i = HEADER_LEN + key.len() + 3; // inside the gzip payload
    bytes[i] ^= 0x10;
    assert_quarantined(&env, key, &bytes, Corruption::Checksum);
}

#[test]
fn a_truncated_file_is_a_truncated_corruption_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"trunc";
    let bytes = good_file(key);
    assert_quarantined(&env, key, &bytes[..bytes.len() - 5], Corruption::Truncated);
}

#[test]
fn a_file_cut_inside_the_header_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"trunc-header";
    let bytes = good_file(key);
    assert_quarantined(&env, key, &bytes[..HEADER_LEN - 1], Corruption::Truncated);
}

#[test]
fn trailing_bytes_are_a_trailing_bytes_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"trailing";
    let mut bytes = good_file(key);
    bytes.push(0);
    assert_quarantined(&env, key, &bytes, Corruption::TrailingBytes);
}

#[test]
fn another_keys_file_at_the_path_is_a_key_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    assert_quarantined(
        &env,
        b"mine",
        &good_file(b"theirs"),
        Corruption::KeyMismatch,
    );
}

#[test]
fn bad_magic_is_a_magic_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    assert_quarantined(
        &env,
        b"magic",
        b"not an entry file at all",
        Corruption::Magic,
    );
}

#[test]
fn a_symlink_at_the_entry_path_is_quarantined_as_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"link";
    let hash = layout::key_hash(key);
    let path = env.path(&hash);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, good_file(key)).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    assert!(matches!(env.read(&StdFs::new(), key), ReadOutcome::Corrupt));
    assert!(std::fs::symlink_metadata(&path).is_err());
    assert_eq!(env.corrupted(Corruption::NotARegularFile), 1);
    assert_eq!(env.corrupted_total(), 1);
    assert_eq!(env.counters.quarantined_files.get(), 1);
    let name = format!(
        "{NOW}-{}-{}",
        Corruption::NotARegularFile.name(),
        layout::hex(&hash)
    );
    let q = env.layout.quarantine_dir().join(&name);
    assert!(std::fs::symlink_metadata(&q)
        .unwrap()
        .file_type()
        .is_symlink());
    // The target is never touched.
    assert_eq!(std::fs::read(&target).unwrap(), good_file(key));
}

#[test]
fn a_newer_format_version_is_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path());
    let key = b"future";
    let hash = layout::key_hash(key);
    let mut bytes = good_file(key);
    bytes[8..10].copy_from_slice(&(format::VERSION + 1).to_le_bytes());
    format::reseal(&mut bytes);
    let path = env.path(&hash);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        env.read(&StdFs::new(), key),
        ReadOutcome::NewerVersion
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(env.counters.newer_version.get(), 1);
    assert_eq!(env.corrupted_total(), 0);
    assert_eq!(env.counters.quarantined_files.get(), 0);
}

// ---------------------------------------------------------------- injected faults

#[test]
fn an_eio_on_read_is_an_error_and_the_file_stays() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(false, true));
    let key = b"eio";
    let hash = layout::key_hash(key);
    let file = env.put(&fs, key, b"value", meta(0));
    fs.add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadFile])
            .path_contains(layout::hex(&hash))
            .times(1),
    );
    let err = env.store.read(&fs, key, &hash, NOW).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5));
    assert_eq!(fs.faults_injected(), 1);
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
    assert_eq!(env.corrupted_total(), 0);
    assert_eq!(env.counters.quarantined_files.get(), 0);
    assert_eq!(env.store.usage(), (1, file.len() as u64, false));
    // The disk recovers: the same file is a hit.
    assert_eq!(hit(env.read(&fs, key)).value, b"value");
}

#[test]
fn an_eio_under_read_prefetched_is_an_error_and_the_file_stays() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(false, true));
    let key = b"eio-prefetched";
    let hash = layout::key_hash(key);
    let file = env.put(&fs, key, b"value", meta(0));
    fs.add_rule(Rule::new(Fault::Errno(5)).ops(&[FsOp::ReadFile]).times(1));
    let err = env
        .store
        .read_prefetched(
            &fs,
            key,
            &hash,
            env.store.prefetched(&hash, b"bad".to_vec()),
            NOW,
        )
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5));
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
    assert_eq!(env.corrupted_total(), 0);
}

#[test]
fn a_bit_flipped_in_transit_is_counted_but_the_good_file_is_put_back() {
    // The read returns a flipped bit once; the file itself is fine. The store judges the bytes
    // it read corrupt (counted), but quarantines only if the file is still those bytes: the
    // re-read for the comparison sees the healthy file, so it is put back.
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(false, true));
    let key = b"flaky-bus";
    let hash = layout::key_hash(key);
    let file = env.put(&fs, key, b"value", meta(0));
    let bit = ((HEADER_LEN + key.len() + 2) * 8) as u64;
    fs.add_rule(
        Rule::new(Fault::FlipBit(bit))
            .ops(&[FsOp::ReadFile])
            .times(1),
    );
    assert!(matches!(env.read(&fs, key), ReadOutcome::Corrupt));
    assert_eq!(fs.faults_injected(), 1);
    assert_eq!(env.corrupted(Corruption::Checksum), 1);
    assert_eq!(env.counters.quarantined_files.get(), 0);
    assert_eq!(std::fs::read(env.path(&hash)).unwrap(), file);
    assert_eq!(env.quarantine_dir(), (vec![], vec![]));
    assert!(env.tmp_is_empty());
    assert_eq!(env.store.stranded(), 0);
    assert_eq!(hit(env.read(&fs, key)).value, b"value");
}

#[test]
fn a_failed_quarantine_rename_still_reads_corrupt_and_never_serves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(false, true));
    let key = b"q-fail";
    let hash = layout::key_hash(key);
    let mut bytes = good_file(key);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let path = env.path(&hash);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    // The move into quarantine/ fails (EIO); the file was already taken out of the path.
    fs.add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::Rename])
            .path_contains(layout::QUARANTINE_DIR)
            .times(1),
    );
    assert!(matches!(env.read(&fs, key), ReadOutcome::Corrupt));
    assert_eq!(fs.faults_injected(), 1);
    assert_eq!(env.corrupted(Corruption::Checksum), 1);
    assert_eq!(env.counters.quarantined_files.get(), 0);
    assert!(!path.exists());
    // Not left in tmp/ either.
    assert!(env.tmp_is_empty());
    assert!(matches!(env.read(&fs, key), ReadOutcome::Miss));
}

// ---------------------------------------------------------------- power loss

/// Writes `old` (if any) durably, cuts the power after `k` more calls of a write of `new`,
/// and reads the crash image with a fresh store. Returns whether the write returned `Ok` and
/// what the read found; the callers assert the exact outcome each case implies. No case may
/// find a torn (corrupt) file.
fn crash_case(old: Option<&[u8]>, new: &[u8], k: u64, sync: bool) -> (bool, ReadOutcome) {
    let dir = tempfile::tempdir().unwrap();
    let fs = CrashFs::new(dir.path().join("root")).unwrap();
    let root = fs.root().to_owned();
    let key = b"crash";
    let hash = layout::key_hash(key);
    let env = open_with(&fs, &root, config(sync, true));
    if let Some(old) = old {
        let out = env.store.write(&fs, key, &hash, old, meta(0)).unwrap();
        assert!(matches!(out, WriteOutcome::Written { .. }));
    }
    fs.power_off_after(fs.calls() + k);
    let ok = env.store.write(&fs, key, &hash, new, meta(0)).is_ok();
    let image = dir.path().join("image");
    fs.crash(&image).unwrap();
    drop(env);
    let after = open_with(&StdFs::new(), &image, config(sync, true));
    let outcome = after.store.read(&StdFs::new(), key, &hash, NOW).unwrap();
    assert_eq!(after.corrupted_total(), 0, "k={k}: a torn file was found");
    (ok, outcome)
}

#[test]
fn a_crash_mid_overwrite_leaves_the_old_or_the_new_whole_value() {
    let old = noise(3000);
    let new = b"the new value".repeat(50);
    let mut saw_ok = false;
    let mut saw_err = false;
    for k in 0..16 {
        let (ok, outcome) = crash_case(Some(&old), &new, k, true);
        let d = hit(outcome);
        if ok {
            saw_ok = true;
            // Acknowledged and fsynced: it survives.
            assert_eq!(d.value, new, "k={k}");
        } else {
            saw_err = true;
            // Failed before the directory sync made the rename durable: the old value.
            assert_eq!(d.value, old, "k={k}");
        }
    }
    assert!(saw_ok && saw_err);
}

#[test]
fn a_crash_mid_first_write_leaves_a_miss_or_the_whole_value() {
    let new = noise(5000);
    let mut saw_ok = false;
    let mut saw_err = false;
    for k in 0..16 {
        let (ok, outcome) = crash_case(None, &new, k, true);
        if ok {
            saw_ok = true;
            assert_eq!(hit(outcome).value, new, "k={k}");
        } else {
            saw_err = true;
            assert!(matches!(outcome, ReadOutcome::Miss), "k={k}: {outcome:?}");
        }
    }
    assert!(saw_ok && saw_err);
}

#[test]
fn without_fsync_a_crash_loses_the_overwrite_but_never_tears_it() {
    // Durability off: no file or directory is ever synced after the CrashFs was made (even
    // `prepare_dirs` syncs nothing), so under the strict POSIX model no name under the root
    // survives: after a crash even the old entry is gone. A miss, never a torn file.
    let old = noise(3000);
    let new = b"unsynced".repeat(100);
    for k in 0..12 {
        let (ok, outcome) = crash_case(Some(&old), &new, k, false);
        assert!(
            matches!(outcome, ReadOutcome::Miss),
            "k={k} ok={ok}: {outcome:?}"
        );
    }
}

#[test]
fn a_file_over_the_largest_valid_entry_is_oversize_and_quarantined_unread() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(false, true);
    cfg.limits.max_entry_bytes = 1024;
    let max = cfg.limits.max_file_bytes();
    let env = open_with(&StdFs::new(), dir.path(), cfg);
    let bytes = vec![7u8; usize::try_from(max).unwrap() + 1];
    assert_quarantined(&env, b"huge", &bytes, Corruption::Oversize);
}

/// The names in `dir` other than entry files (temp files left behind, say).
fn not_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| layout::parse_hex(std::ffi::OsStr::new(n)).is_none())
        .collect()
}

/// An entry's temp file sits in its fan-out directory; another process's `clear` may remove
/// that directory, temp file and all, between the write and the rename (the rename then finds
/// nothing: `NotFound`). The write must still land: the writer writes the temp file again
/// (creating the directory) instead of failing (a failed write would be retried and counted
/// against the device), and leaves no temp file behind.
#[test]
fn a_fan_out_directory_removed_under_a_write_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(true, false));
    // Three renames in a row find nothing at the temp path.
    fs.add_rule(
        Rule::new(Fault::Errno(2))
            .ops(&[FsOp::Rename])
            .path_contains("/v2/")
            .times(3),
    );
    let hash = layout::key_hash(b"k");
    let before = (fs.calls(FsOp::WriteNew), fs.calls(FsOp::Rename));
    let out = env
        .store
        .write(&fs, b"k", &hash, b"value", meta(0))
        .unwrap();
    assert!(matches!(out, WriteOutcome::Written { .. }), "{out:?}");
    assert_eq!(
        hit(env.store.read(&fs, b"k", &hash, NOW).unwrap()).value,
        b"value"
    );
    // Each failed rename: the temp file written again (the first create, which found no
    // fan-out directory, is not counted: it never reached the disk), renamed again.
    assert_eq!(
        (
            fs.calls(FsOp::WriteNew) - before.0,
            fs.calls(FsOp::Rename) - before.1
        ),
        (4, 4)
    );
    let fan_out = env.layout.entry_dir(&hash);
    assert_eq!(not_entries(&fan_out), Vec::<String>::new());
    assert_eq!(not_entries(env.layout.tmp_dir()), Vec::<String>::new());
}

/// Past [`RENAME_ATTEMPTS`] rewrites, a directory that keeps vanishing is the write's error
/// (`NotFound`), and nothing is left behind.
#[test]
fn a_fan_out_directory_that_keeps_vanishing_fails_the_write_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(true, false));
    fs.add_rule(
        Rule::new(Fault::Errno(2))
            .ops(&[FsOp::Rename])
            .path_contains("/v2/"),
    );
    let hash = layout::key_hash(b"k");
    let before = fs.calls(FsOp::Rename);
    let err = env
        .store
        .write(&fs, b"k", &hash, b"value", meta(0))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    assert_eq!(fs.calls(FsOp::Rename) - before, 1 + RENAME_ATTEMPTS as u64);
    assert!(!env.layout.entry_path(&hash).exists());
    assert_eq!(
        not_entries(&env.layout.entry_dir(&hash)),
        Vec::<String>::new()
    );
}

/// The expiry sweep (or the scan, or another writer) removes fan-out directories that hold no
/// entry this process knows (`rmdir`). A `remove` that just emptied one can find it gone when
/// it fsyncs it: the removal is done, not a failure (seen in CI: a write-through `remove`
/// reported "No such file or directory").
#[test]
fn a_fan_out_directory_removed_after_the_last_entry_left_is_no_failure() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(true, false));
    let hash = layout::key_hash(b"k");
    env.store
        .write(&fs, b"k", &hash, b"value", meta(0))
        .unwrap();
    fs.add_rule(
        Rule::new(Fault::Errno(2))
            .ops(&[FsOp::SyncDir])
            .path_contains("/v2/")
            .times(1),
    );
    assert!(env.store.remove(&fs, &hash).unwrap());
    assert!(!env.layout.entry_path(&hash).exists());
}

/// A fan-out directory can vanish between a writer's `mkdir` and its next step: the portable
/// fs then answers "No such file or directory" from `create_dir_all` itself (it opens what it
/// made, and the `rmdir` came first). The write retries instead of failing (CI: the portable
/// model test lost writes to "write: No such file or directory").
#[test]
fn a_fan_out_directory_removed_inside_create_dir_all_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let env = open_with(&fs, dir.path(), config(true, false));
    fs.add_rule(
        Rule::new(Fault::Errno(2))
            .ops(&[FsOp::CreateDirAll])
            .path_contains("/v2/")
            .times(2),
    );
    let hash = layout::key_hash(b"k");
    let before = (
        fs.calls(FsOp::WriteNew),
        fs.calls(FsOp::CreateDirAll),
        fs.calls(FsOp::Rename),
    );
    let out = env
        .store
        .write(&fs, b"k", &hash, b"value", meta(0))
        .unwrap();
    assert!(matches!(out, WriteOutcome::Written { .. }), "{out:?}");
    // The temp file's create (no directory), mkdir fails, create, mkdir fails, create,
    // mkdir, create; one rename. The three creates that found no directory never reached the
    // disk: `FaultFs` does not count them.
    assert_eq!(
        (
            fs.calls(FsOp::WriteNew) - before.0,
            fs.calls(FsOp::CreateDirAll) - before.1,
            fs.calls(FsOp::Rename) - before.2
        ),
        (1, 3, 1)
    );
    assert_eq!(
        hit(env.store.read(&fs, b"k", &hash, NOW).unwrap()).value,
        b"value"
    );
}

/// `observe_dirs` removes fan-out directories that hold no entry this process knows. One that
/// a write of this process is about to rename into is in use: it stays (removing it made the
/// writer create it again, and raced it under the portable fs).
#[test]
fn observe_dirs_leaves_a_directory_a_write_is_about_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::std());
    let env = Arc::new(open_with(&*fs, dir.path(), config(false, false)));
    let hash = layout::key_hash(b"k");
    env.store.write(&*fs, b"k", &hash, b"old", meta(0)).unwrap();
    assert!(env.store.remove(&*fs, &hash).unwrap());
    let fan_out = env.layout.entry_dir(&hash);
    assert!(fan_out.is_dir());
    fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::Rename])
            .path_contains("/v2/")
            .times(1),
    );
    let renames = fs.calls(FsOp::Rename);
    let writer = {
        let (fs, env) = (fs.clone(), env.clone());
        std::thread::spawn(move || env.store.write(&*fs, b"k", &hash, b"new", meta(0)))
    };
    while fs.calls(FsOp::Rename) == renames {
        std::thread::yield_now();
    }
    env.store.observe_dirs(&*fs);
    let kept = fan_out.is_dir();
    fs.release_hangs();
    let out = writer.join().unwrap().unwrap();
    assert!(kept, "the directory a write was renaming into was removed");
    assert!(matches!(out, WriteOutcome::Written { .. }), "{out:?}");
    // The write renamed once: its directory was there.
    assert_eq!(fs.calls(FsOp::Rename), renames + 1);
    assert_eq!(
        hit(env.store.read(&*fs, b"k", &hash, NOW).unwrap()).value,
        b"new"
    );
    // Once the entry is known, observing leaves it; once it is gone, the directory goes.
    env.store.observe_dirs(&*fs);
    assert!(fan_out.is_dir());
    assert!(env.store.remove(&*fs, &hash).unwrap());
    env.store.observe_dirs(&*fs);
    assert!(!fan_out.exists());
}

/// Concurrent writes share the free space above `min_free_bytes`: a write whose check passed
/// and whose bytes are not on the volume yet counts against the next one's check. (adversary6
/// saw 1,605,632 bytes left on a 32 MiB volume with a 1,677,720-byte floor: two writers had
/// each seen room for one more 256 KiB entry.)
#[test]
fn concurrent_writes_never_take_the_volume_below_the_free_floor() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::std());
    let floor = 1 << 20;
    let value = noise(256 << 10);
    let cfg = StoreConfig {
        min_free_bytes: Some(floor),
        ..config(false, false)
    };
    let env = Arc::new(open_with(&*fs, dir.path(), cfg));
    // Room for one entry above the floor, not two; the first write stops inside its write.
    fs.set_available_space(Some(floor + (value.len() as u64) * 3 / 2));
    fs.add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]).times(1));
    let first = {
        let (fs, env, value) = (fs.clone(), env.clone(), value.clone());
        std::thread::spawn(move || {
            let hash = layout::key_hash(b"first");
            env.store.write(&*fs, b"first", &hash, &value, meta(0))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs.faults_injected() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first write never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let hash = layout::key_hash(b"second");
    let second = env.store.write(&*fs, b"second", &hash, &value, meta(0));
    fs.release_hangs();
    let first = first.join().unwrap();
    assert!(
        matches!(first, Ok(WriteOutcome::Written { .. })),
        "{first:?}"
    );
    let err = second.expect_err("the second write would have taken the volume below the floor");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    // Once the first write is done its reservation is gone: with room again, a write works.
    fs.set_available_space(Some(floor + (value.len() as u64) * 3));
    let hash = layout::key_hash(b"third");
    assert!(matches!(
        env.store.write(&*fs, b"third", &hash, &value, meta(0)),
        Ok(WriteOutcome::Written { .. })
    ));
}
