//! r28: adversarial unit tests of the fixes of r27 (`tests/core/COMPACT_R27_FINDINGS.md`) to
//! "durable first, compact later": the level-0 member laid out by hand
//! (`format::stored_member`) at hostile sizes, read by every reader; the F8 boundary
//! (`PRESSING_SHARE`) and the pressing backlog, exactly; a compaction that keeps failing
//! (requeued at the head, `Backlog::push_front`); a compaction that fails after `close`
//! emptied the backlog (`WarmStore::close_backlog`). See `tests/core/COMPACT_R28_FINDINGS.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::fs::{DirEntryInfo, FileRead, Fs, StdFs};
use crate::testing::{Fault, FaultFs, FsOp, Rule};
use crate::warm::format::{self, EntryMeta, Inflating, HEADER_LEN};
use crate::warm::layout::{self, KeyHash, Layout};
use crate::warm::store::{ReadOutcome, StoreConfig, WarmStore, WriteOutcome};
use crate::warm::store_fixture::store_config;

const NOW: u64 = 1_700_000_000_000;

fn config() -> StoreConfig {
    store_config(false)
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

/// Pseudo-random bytes (do not compress).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
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

fn written(out: WriteOutcome) -> u64 {
    match out {
        WriteOutcome::Written { len } => len,
        other => panic!("expected a write, got {other:?}"),
    }
}

/// What a compaction step did, by name (`Compacted` is private to `warm::store`); an error
/// as `Err`.
fn outcome(store: &WarmStore, fs: &dyn Fs) -> String {
    match store.compact_next(fs, NOW) {
        Ok(done) => format!("{done:?}")
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned(),
        Err(_) => "Err".to_owned(),
    }
}

/// The stored file's exact length: header, key, gzip header (10), one 5-byte header per
/// block of at most 65,535 bytes (an empty value: one empty final block),
/// trailer (8).
fn stored_len(key: &[u8], n: usize) -> usize {
    let member = 10 + 5 * n.div_ceil(65_535).max(1) + n + 8;
    HEADER_LEN + key.len() + member
}

/// Every reader reads the file `format::encode(.., 0)` lays out at each hostile size: the
/// exact length, `verify`, `decode`, the stepped reader (`Inflating`, 1,000 bytes a step),
/// `inflate_exact` and an independent gzip decoder (flate2's `GzDecoder`, which checks the
/// CRC-32 and ISIZE) give back the exact value.
#[test]
fn stored_members_of_hostile_sizes_are_read_by_every_reader() {
    let limits = config().limits;
    let key = b"chat:stored".to_vec();
    for n in [
        0usize,
        1,
        2,
        65_534,
        65_535,
        65_536,
        65_537,
        131_069,
        131_070,
        131_071,
        196_605,
        196_606,
        1 << 20,
    ] {
        let value = noise(n, n as u64 + 1);
        let file = format::encode(&key, &value, meta(), 0).unwrap();
        assert_eq!(file.len(), stored_len(&key, n), "length of {n}");
        let header = format::verify(&file, &limits).unwrap();
        assert_eq!(header.uncompressed_len, n as u64, "{n}");
        let decoded = format::decode(&file, &key, &limits).unwrap();
        assert!(decoded.value == value, "decode {n}");
        assert_eq!(decoded.meta, meta(), "{n}");
        let payload = &file[HEADER_LEN + key.len()..];
        assert!(
            format::inflate_exact(payload, n as u64).unwrap() == value,
            "inflate_exact {n}"
        );
        let mut gz = Vec::new();
        flate2::read::GzDecoder::new(payload)
            .read_to_end(&mut gz)
            .unwrap();
        assert!(gz == value, "GzDecoder {n}");
        let mut stepping = Inflating::start(file.clone(), &key, &limits).unwrap();
        let mut steps = 0usize;
        while !stepping.step(1000).unwrap() {
            steps += 1;
        }
        let (back, stepped) = stepping.finish();
        assert!(back == file, "{n}");
        assert!(stepped[..] == value[..], "stepped {n}");
        // At most 1,000 bytes a step: n / 1000 steps at least before the last.
        assert!(steps >= n / 1000, "{n}: {steps} steps");
        // A store wrote it stored, and reads it back exactly.
        let dir = tempfile::tempdir().unwrap();
        let fs = StdFs::new();
        let (store, _) = open_with(
            &fs,
            dir.path(),
            StoreConfig {
                compression_level: 0,
                ..config()
            },
        );
        let hash = layout::key_hash(&key);
        let len = written(store.write(&fs, &key, &hash, &value, meta()).unwrap());
        assert_eq!(len, file.len() as u64, "{n}");
        assert!(on_disk(dir.path(), &hash).unwrap() == file, "{n}");
        assert!(value_of(&store, &fs, &key) == Some(value), "store read {n}");
    }
}

/// The largest value a cache accepts (`max_entry_bytes`, 16 MiB here), incompressible,
/// written stored: its payload stays within `Limits::max_payload_bytes` (the bound every
/// reader applies), it is queued (an eighth of the 1 GiB budget is 128 MiB), the compaction
/// finds no gain and leaves it, and it reads back exactly.
#[test]
fn the_largest_entry_written_stored_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(&fs, dir.path(), config());
    let n = 1 << 24;
    let value = noise(n, 77);
    let hash = layout::key_hash(b"max");
    let len = written(store.write(&fs, b"max", &hash, &value, meta()).unwrap());
    assert_eq!(len as usize, stored_len(b"max", n));
    assert_eq!(store.backlog().len(), 1);
    assert_eq!(outcome(&store, &fs), "NoGain");
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (n as u64, len)
    );
    assert!(value_of(&store, &fs, b"max") == Some(value));
}

/// F8 and the pressing backlog, exactly (budget 800,000: an eighth is 100,000). A stored file
/// of 100,000 bytes (key "x", value 99,883 bytes: 88 + 1 + 10 + 2 × 5 + 99,883 + 8) is
/// written stored and queued; 100,001 bytes is compressed at once. The backlog presses once
/// its stored bytes exceed 100,000, not at 100,000.
#[test]
fn the_eighth_of_the_budget_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, counters) = open_with(
        &fs,
        dir.path(),
        StoreConfig {
            capacity_bytes: 800_000,
            ..config()
        },
    );
    let at = text(99_883, 1);
    let hx = layout::key_hash(b"x");
    assert_eq!(
        written(store.write(&fs, b"x", &hx, &at, meta()).unwrap()),
        100_000
    );
    assert_eq!(store.backlog().len(), 1);
    assert_eq!(store.backlog().bytes(), 100_000);
    assert!(!store.compaction_pressing());
    // One byte more: compressed now, counted now, not queued.
    let over = text(99_884, 2);
    let hy = layout::key_hash(b"y");
    let want = format::encode(b"y", &over, meta(), 3).unwrap();
    assert_eq!(
        written(store.write(&fs, b"y", &hy, &over, meta()).unwrap()),
        want.len() as u64
    );
    assert_eq!(on_disk(dir.path(), &hy).unwrap(), want);
    assert_eq!(store.backlog().len(), 1);
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (99_884, want.len() as u64)
    );
    // A second stored entry of 4,097 bytes (value 3,985 with key "z"): 104,097 waiting.
    let small = text(3_985, 3);
    let hz = layout::key_hash(b"z");
    assert_eq!(
        written(store.write(&fs, b"z", &hz, &small, meta()).unwrap()),
        4_097
    );
    assert_eq!(store.backlog().bytes(), 104_097);
    assert!(store.compaction_pressing());
    assert_eq!(outcome(&store, &fs), "Done");
    assert_eq!(store.backlog().bytes(), 4_097);
    assert!(!store.compaction_pressing());
    assert_eq!(outcome(&store, &fs), "Done");
    assert_eq!(store.backlog().bytes(), 0);
    assert_eq!(value_of(&store, &fs, b"x"), Some(at));
    assert_eq!(value_of(&store, &fs, b"y"), Some(over));
    assert_eq!(value_of(&store, &fs, b"z"), Some(small));
}

/// R28-F1. One entry whose stored file cannot be read (EIO from a bad sector, `FaultFs`, on
/// that path only) fails its compaction every time; it is put back at the head
/// (`Backlog::push_front`), so every later compaction tries it again and no other entry is
/// ever compacted: the backlog never shrinks, and once it presses it presses for good. Four
/// compaction steps with two entries waiting must compact the healthy one.
#[test]
fn an_entry_that_always_fails_does_not_starve_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let (store, counters) = open_with(&fs, dir.path(), config());
    let (bad, good) = (text(30_000, 4), text(30_000, 5));
    let (hb, hg) = (layout::key_hash(b"bad"), layout::key_hash(b"good"));
    store.write(&fs, b"bad", &hb, &bad, meta()).unwrap();
    let good_len = written(store.write(&fs, b"good", &hg, &good, meta()).unwrap());
    assert_eq!(store.backlog().len(), 2);
    let bad_path = Layout::new(dir.path()).entry_path(&hb);
    fs.add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadFile])
            .path_contains(bad_path.to_string_lossy().into_owned()),
    );
    let steps: Vec<String> = (0..4).map(|_| outcome(&store, &fs)).collect();
    println!("steps: {steps:?}, backlog {}", store.backlog().len());
    let want = format::encode(b"good", &good, meta(), 3).unwrap();
    let on = on_disk(dir.path(), &hg).unwrap();
    println!(
        "healthy entry on disk: {} bytes (stored {good_len}, compressed {})",
        on.len(),
        want.len()
    );
    assert_eq!(on.len(), want.len());
    assert_eq!(counters.entries_compacted.get(), 1);
}

/// An `Fs` whose next write of a temp file (armed: the compaction's) blocks until released,
/// then fails with EIO: a compaction stalled past `io_timeout` that fails at last.
struct StallThenFail {
    inner: StdFs,
    armed: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl std::fmt::Debug for StallThenFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StallThenFail")
    }
}

impl Fs for StallThenFail {
    fn read_file(&self, path: &Path, max: u64) -> io::Result<FileRead> {
        self.inner.read_file(path, max)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        let armed = self.armed.lock().unwrap().take();
        if let Some((entered, release)) = armed {
            entered.send(()).unwrap();
            release.recv().unwrap();
            return Err(io::Error::from_raw_os_error(5));
        }
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

/// R28-F2. `close` waits for a compaction in flight at most `io_timeout`, then counts the
/// entries left in the backlog as written (stored) and empties it (`close_backlog`). A
/// compaction that outlived that wait has already taken its entry off the queue, so
/// `close_backlog` does not count it; when it then fails, `compact_next` puts the entry back
/// (`push_front`) into the backlog `close` emptied. After close: the backlog gauge says 1
/// entry (promised 0), and the entry's write is never counted in `bytes_in`/`bytes_out`
/// (promised: counted once, stored). Store level: the compaction runs on a thread, blocked in
/// its temp write, while this thread does what `close` does.
#[test]
fn a_compaction_failing_after_close_is_counted_once_and_leaves_no_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(StallThenFail {
        inner: StdFs::new(),
        armed: Mutex::new(None),
    });
    let (store, counters) = open_with(&*fs, dir.path(), config());
    let store = Arc::new(store);
    let value = text(30_000, 6);
    let hash = layout::key_hash(b"late");
    let len = written(store.write(&*fs, b"late", &hash, &value, meta()).unwrap());
    assert_eq!(store.backlog().len(), 1);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    *fs.armed.lock().unwrap() = Some((entered_tx, release_rx));
    let compaction = {
        let (store, fs) = (store.clone(), fs.clone());
        std::thread::spawn(move || outcome(&store, &*fs))
    };
    entered_rx.recv().unwrap();
    // `close`: the wait for the compaction gave up (io_timeout); the backlog is counted.
    store.close_backlog();
    release_tx.send(()).unwrap();
    assert_eq!(compaction.join().unwrap(), "Err");
    println!(
        "after close: backlog {} ({} bytes), bytes_in {}, bytes_out {}",
        store.backlog().len(),
        store.backlog().bytes(),
        counters.bytes_in.get(),
        counters.bytes_out.get()
    );
    // The stored file is intact and served.
    assert_eq!(on_disk(dir.path(), &hash).unwrap().len() as u64, len);
    assert_eq!(value_of(&store, &*fs, b"late"), Some(value));
    assert_eq!((store.backlog().len(), store.backlog().bytes()), (0, 0));
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (30_000, len)
    );
}

/// Guard: a compaction that fails while the cache is open puts its entry back with its stored
/// bytes (the gauge and the pressing test stay exact), counts nothing, and a later step
/// compacts it and counts it once. (Since the R28-F1 fix it goes back behind the others:
/// the next step compacts `b`.)
#[test]
fn a_failed_compaction_is_requeued_exactly_and_counted_once_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::std();
    let (store, counters) = open_with(&fs, dir.path(), config());
    let (a, b) = (text(30_000, 8), text(40_000, 9));
    let (ha, hb) = (layout::key_hash(b"a"), layout::key_hash(b"b"));
    let la = written(store.write(&fs, b"a", &ha, &a, meta()).unwrap());
    let lb = written(store.write(&fs, b"b", &hb, &b, meta()).unwrap());
    assert_eq!(store.backlog().bytes(), la + lb);
    fs.add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::WriteNew])
            .path_contains("tmp")
            .times(1),
    );
    assert_eq!(outcome(&store, &fs), "Err");
    assert_eq!(
        (store.backlog().len(), store.backlog().bytes()),
        (2, la + lb)
    );
    assert_eq!((counters.bytes_in.get(), counters.bytes_out.get()), (0, 0));
    assert_eq!(outcome(&store, &fs), "Done");
    let wb = format::encode(b"b", &b, meta(), 3).unwrap();
    assert_eq!(on_disk(dir.path(), &hb).unwrap(), wb);
    assert_eq!((store.backlog().len(), store.backlog().bytes()), (1, la));
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (40_000, wb.len() as u64)
    );
    assert_eq!(outcome(&store, &fs), "Done");
    let wa = format::encode(b"a", &a, meta(), 3).unwrap();
    assert_eq!(on_disk(dir.path(), &ha).unwrap(), wa);
    assert_eq!(
        (counters.bytes_in.get(), counters.bytes_out.get()),
        (70_000, (wa.len() + wb.len()) as u64)
    );
    assert_eq!(outcome(&store, &fs), "Idle");
    assert_eq!(counters.entries_compacted.get(), 2);
    assert_eq!(value_of(&store, &fs, b"a"), Some(a));
    assert_eq!(value_of(&store, &fs, b"b"), Some(b));
}

/// Guard: the offline check (`verify`, what the CLI runs) finds every stored file of a
/// hostile size healthy: 9 entries written stored (level 0) by a store, exact byte total, none
/// corrupt, none quarantined.
#[test]
fn verify_finds_stored_files_of_hostile_sizes_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let (store, _) = open_with(
        &fs,
        dir.path(),
        StoreConfig {
            compression_level: 0,
            ..config()
        },
    );
    let sizes = [
        0usize, 1, 65_534, 65_535, 65_536, 65_537, 131_070, 131_071, 196_606,
    ];
    let mut total = 0;
    for (i, n) in sizes.iter().enumerate() {
        let key = format!("v{i}").into_bytes();
        let value = noise(*n, i as u64 + 100);
        let len = written(
            store
                .write(&fs, &key, &layout::key_hash(&key), &value, meta())
                .unwrap(),
        );
        assert_eq!(len as usize, stored_len(&key, *n), "{n}");
        total += len;
    }
    let report = crate::verify::verify(
        dir.path(),
        &crate::verify::VerifyOptions {
            now_ms: NOW,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (
            report.entries_checked,
            report.healthy,
            report.healthy_bytes,
            report.corrupted.len(),
            report.quarantined
        ),
        (sizes.len() as u64, sizes.len() as u64, total, 0, 0)
    );
}

/// An `Fs` that runs a step at the next write of a temp file (armed: the compaction's), then
/// fails that write with EIO.
struct StepThenFail {
    inner: StdFs,
    step: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for StepThenFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepThenFail")
    }
}

impl Fs for StepThenFail {
    fn read_file(&self, path: &Path, max: u64) -> io::Result<FileRead> {
        self.inner.read_file(path, max)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        let step = self.step.lock().unwrap().take();
        if let Some(step) = step {
            step();
            return Err(io::Error::from_raw_os_error(5));
        }
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

/// R28-F5. A failed compaction puts its entry back at the head only "if there is room"
/// (`Backlog::push_front`); with `BACKLOG_MAX` (65,536) entries waiting again (a write queued
/// one while the compaction ran) the entry is dropped: neither queued nor counted, so the
/// write counters never count that write (an entry that cannot be queued at its write is
/// counted at once, stored). Entry A (30 KB) heads the queue, key "k" is written 65,535
/// times behind it (full); A's compaction fails (EIO on its temp write) after one more write
/// of "k" was queued. After `close_backlog` every write must be counted once:
/// `bytes_in` = 30,000 + 65,536 × 4,200.
#[test]
fn a_failed_compaction_with_a_full_backlog_still_counts_its_write() {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let fs = Arc::new(StepThenFail {
        inner: StdFs::new(),
        step: Mutex::new(None),
    });
    let (store, counters) = open_with(&*fs, dir.path(), config());
    let store = Arc::new(store);
    let a = text(30_000, 11);
    store
        .write(&*fs, b"a", &layout::key_hash(b"a"), &a, meta())
        .unwrap();
    let k = text(4_200, 12);
    let hk = layout::key_hash(b"k");
    for _ in 0..65_535 {
        store.write(&*fs, b"k", &hk, &k, meta()).unwrap();
    }
    assert_eq!(store.backlog().len(), 65_536);
    {
        let (s, k) = (store.clone(), k.clone());
        *fs.step.lock().unwrap() = Some(Box::new(move || {
            let plain = StdFs::new();
            s.write(&plain, b"k", &layout::key_hash(b"k"), &k, meta())
                .unwrap();
        }));
    }
    assert_eq!(outcome(&store, &*fs), "Err");
    println!(
        "after the failure: backlog {}, bytes_in {}",
        store.backlog().len(),
        counters.bytes_in.get()
    );
    store.close_backlog();
    assert_eq!(store.backlog().len(), 0);
    assert_eq!(counters.bytes_in.get(), 30_000 + 65_536 * 4_200);
    assert_eq!(value_of(&store, &*fs, b"a"), Some(a));
}
