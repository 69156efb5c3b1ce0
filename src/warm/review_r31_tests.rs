//! r31: adversarial unit tests of `Stats::inline_read_fallbacks` at `WarmStore::read_inline`:
//! for every answer `Fs::read_file_nowait` can give (and every kind of file bytes it can hand
//! over), one call counts exactly one of {inline read, fallback, neither}, never both, and
//! only "would block" (`Ok(None)`) is a fallback. A store that never tries the page cache
//! (`page_cache_reads: false`, an `Fs` that says no, the fault-injecting `FaultFs`) counts
//! nothing. See `tests/core/REVIEW_R31_FINDINGS.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::fs::{DirEntryInfo, FileKind, FileRead, Fs, StdFs};
use crate::stats::Counters;
use crate::testing::FaultFs;
use crate::warm::format::{EntryMeta, Limits};
use crate::warm::layout::{self, Layout};
use crate::warm::store::{
    InlineRead, Prefetched, ReadOutcome, StoreConfig, WarmStore, INLINE_STEP_BYTES,
    STEPPED_FILE_MAX,
};
use crate::warm::store_fixture::{open_store, store_config};

const NOW: u64 = 1_700_000_000_000;

fn config(page_cache_reads: bool) -> StoreConfig {
    StoreConfig {
        limits: Limits {
            max_key_bytes: 1024,
            max_entry_bytes: 1 << 20,
        },
        compression_level: 6,
        page_cache_reads,
        compact_later: false,
        ..store_config(false)
    }
}

/// What the scripted `read_file_nowait` answers next.
#[derive(Debug, Clone)]
enum Answer {
    /// The real `StdFs` answer.
    Real,
    WouldBlock,
    Data(Vec<u8>),
    NotRegular(FileKind),
    TooLarge(u64),
    NotFound,
    Eio,
}

/// `StdFs`, with `nowait_reads` as given and `read_file_nowait` answering what the test
/// scripts; counts the nowait calls.
#[derive(Debug)]
struct Scripted {
    inner: StdFs,
    nowait: bool,
    answer: Mutex<Answer>,
    calls: AtomicU64,
}

impl Scripted {
    fn new(nowait: bool) -> Scripted {
        Scripted {
            inner: StdFs::new(),
            nowait,
            answer: Mutex::new(Answer::Real),
            calls: AtomicU64::new(0),
        }
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }
}

impl Fs for Scripted {
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
    fn nowait_reads(&self, _root: &Path) -> bool {
        self.nowait
    }
    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Answer::Real => self.inner.read_file_nowait(path, max_len),
            Answer::WouldBlock => Ok(None),
            Answer::Data(d) => Ok(Some(FileRead::Data(d))),
            Answer::NotRegular(k) => Ok(Some(FileRead::NotRegular(k))),
            Answer::TooLarge(n) => Ok(Some(FileRead::TooLarge(n))),
            Answer::NotFound => Err(io::Error::from(io::ErrorKind::NotFound)),
            Answer::Eio => Err(io::Error::from_raw_os_error(5)),
        }
    }
}

fn meta(expires_ms: u64) -> EntryMeta {
    EntryMeta {
        created_ms: NOW - 10,
        expires_ms,
        cost: 1,
        ..EntryMeta::default()
    }
}

fn noise(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new()
        .update(b"r31 noise")
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Writes `value` for `key` through the store; returns the entry file's bytes.
fn put(store: &WarmStore, root: &Path, key: &[u8], value: &[u8], m: EntryMeta) -> Vec<u8> {
    let hash = layout::key_hash(key);
    store.write(&StdFs::new(), key, &hash, value, m).unwrap();
    std::fs::read(Layout::new(root).entry_path(&hash)).unwrap()
}

/// What a `read_inline` call returned, by kind.
fn kind(flow: &ControlFlow<io::Result<InlineRead>, Option<Prefetched>>) -> &'static str {
    match flow {
        ControlFlow::Continue(None) => "continue",
        ControlFlow::Continue(Some(_)) => "prefetched",
        ControlFlow::Break(Err(_)) => "error",
        ControlFlow::Break(Ok(InlineRead::Done(ReadOutcome::Miss))) => "miss",
        ControlFlow::Break(Ok(InlineRead::Done(_))) => "done",
        ControlFlow::Break(Ok(InlineRead::Hit { .. })) => "hit",
        ControlFlow::Break(Ok(InlineRead::Inflate(_))) => "inflate",
    }
}

/// (what, key, the nowait answer, what `read_inline` returns, (inline reads, fallbacks) it
/// counts).
type Case = (&'static str, &'static str, Answer, &'static str, (u64, u64));

fn counts(c: &Counters) -> (u64, u64) {
    (c.inline_reads.get(), c.inline_read_fallbacks.get())
}

/// Every answer of `read_file_nowait` through one store: what `read_inline` returns and
/// what it counts (inline reads, fallbacks), exactly; one nowait call each.
#[test]
fn each_nowait_answer_counts_at_most_one_and_only_would_block_is_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Scripted::new(true);
    let (store, counters) = open_store(&fs, dir.path(), config(true));
    store.detect_nowait_reads(&fs);
    let root = dir.path();
    let small = put(&store, root, b"small", b"a small value", meta(0));
    // 40 KiB of noise then 40 KiB of zeros: a file under 64 KiB, a value of two steps.
    let mut stepped_value = noise(40 * 1024);
    stepped_value.resize(80 * 1024, 0);
    let stepped = put(&store, root, b"stepped", &stepped_value, meta(0));
    assert!(stepped.len() <= STEPPED_FILE_MAX);
    let large = put(&store, root, b"large", &noise(96 * 1024), meta(0));
    assert!(large.len() > STEPPED_FILE_MAX);
    let expired = put(&store, root, b"expired", b"old", meta(NOW - 1));
    let mut corrupt = small.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;

    let cases: Vec<Case> = vec![
        (
            "would block",
            "small",
            Answer::WouldBlock,
            "continue",
            (0, 1),
        ),
        (
            "a directory",
            "small",
            Answer::NotRegular(FileKind::Dir),
            "continue",
            (0, 0),
        ),
        (
            "a symlink",
            "small",
            Answer::NotRegular(FileKind::Symlink),
            "continue",
            (0, 0),
        ),
        (
            "a FIFO",
            "small",
            Answer::NotRegular(FileKind::Special),
            "continue",
            (0, 0),
        ),
        (
            "too large",
            "small",
            Answer::TooLarge(1 << 40),
            "continue",
            (0, 0),
        ),
        ("not found", "absent", Answer::NotFound, "miss", (0, 0)),
        ("EIO", "small", Answer::Eio, "error", (0, 0)),
        (
            "a small entry",
            "small",
            Answer::Data(small.clone()),
            "hit",
            (1, 0),
        ),
        (
            "a stepped entry",
            "stepped",
            Answer::Data(stepped),
            "inflate",
            (0, 0),
        ),
        (
            "a file over 64 KiB",
            "large",
            Answer::Data(large),
            "prefetched",
            (0, 0),
        ),
        (
            "a corrupt entry",
            "small",
            Answer::Data(corrupt),
            "continue",
            (0, 0),
        ),
        (
            "another key's entry",
            "other",
            Answer::Data(small),
            "continue",
            (0, 0),
        ),
        (
            "an expired entry",
            "expired",
            Answer::Data(expired),
            "continue",
            (0, 0),
        ),
    ];
    let mut inflating = None;
    for (i, (what, key, answer, want, moved)) in cases.into_iter().enumerate() {
        fs.answer(answer);
        let before = counts(&counters);
        let key = key.as_bytes();
        let flow = store.read_inline(&fs, key, &layout::key_hash(key), NOW);
        let after = counts(&counters);
        assert_eq!(
            (kind(&flow), after.0 - before.0, after.1 - before.1),
            (want, moved.0, moved.1),
            "{what}"
        );
        assert_eq!(fs.calls.load(Ordering::SeqCst), i as u64 + 1, "{what}");
        if let ControlFlow::Break(Ok(InlineRead::Inflate(read))) = flow {
            inflating = Some(read);
        }
    }
    // The stepped read, finished by its caller: one inline read, no fallback.
    let mut read = inflating.expect("the stepped entry's read");
    while !read.step(INLINE_STEP_BYTES).unwrap() {}
    let (_, value) = store.stepped_hit(&layout::key_hash(b"stepped"), *read);
    assert_eq!(&value[..], &stepped_value[..]);
    assert_eq!(counts(&counters), (2, 1));
}

/// No page-cache attempt, no count: `page_cache_reads: false` with an `Fs` that would say
/// yes, an `Fs` that says no, and `FaultFs` (which keeps nowait reads off) never call
/// `read_file_nowait`, and `read_inline` counts nothing even where it would block.
#[test]
fn a_store_that_never_tries_the_page_cache_counts_no_fallback() {
    for (what, nowait, page_cache_reads) in [
        ("page_cache_reads off", true, false),
        ("an Fs that says no", false, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fs = Scripted::new(nowait);
        let (store, counters) = open_store(&fs, dir.path(), config(page_cache_reads));
        store.detect_nowait_reads(&fs);
        put(&store, dir.path(), b"k", b"v", meta(0));
        fs.answer(Answer::WouldBlock);
        let flow = store.read_inline(&fs, b"k", &layout::key_hash(b"k"), NOW);
        assert_eq!(
            (
                kind(&flow),
                fs.calls.load(Ordering::SeqCst),
                counts(&counters)
            ),
            ("continue", 0, (0, 0)),
            "{what}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultFs::new(Arc::new(StdFs::new()));
    let (store, counters) = open_store(&fault, dir.path(), config(true));
    store.detect_nowait_reads(&fault);
    put(&store, dir.path(), b"k", b"v", meta(0));
    for key in [&b"k"[..], b"never-looked-up"] {
        let flow = store.read_inline(&fault, key, &layout::key_hash(key), NOW);
        assert_eq!((kind(&flow), counts(&counters)), ("continue", (0, 0)));
    }
}
