//! Review r21: inline warm reads inflate up to 64 KiB of value per step (`INLINE_STEP_BYTES`
//! went from 32 to 64 KiB). See FINDINGS.md in this directory.
//!
//! - `boundary`: hostile checksum-valid members whose fault shows exactly at a 64 KiB step
//!   boundary (declared lengths 64 KiB ± 1, 128 KiB ± 1, 1 MiB; a block that ends at 64 KiB;
//!   stored blocks across the boundary; long FEXTRA/FCOMMENT), through `ExactInflater` with
//!   64 KiB budgets and through a live cache (exact reason, counted once, quarantined).
//! - `sizes`: files of exactly `STEPPED_FILE_MAX` and one byte more, values of exactly
//!   `STEPPED_VALUE_MAX` and one byte more, 64 KiB ± 1 values written by the cache itself:
//!   which path reads them (`inline_reads`), how many yields (manual polls), the exact bytes.
//! - `interleave`: a get polled by hand to stop exactly between two steps, then a `set`,
//!   `remove`, `clear` (flushed) or a drop; the answer, the later answers, the index.
//! - `docs`: the documents name the 64 KiB step (FINDING V1: docs/ARCHITECTURE.md does not).
//! - `expiry`: a manual clock at the expiry boundary and moved past it between steps.
//! - `contexts`: a hand-written executor on a thread with an entered handle, a dropped
//!   `LocalSet` and a dropped runtime mid-steps, many concurrent stepped reads of one key.
//! - `lifecycle`: a `close` between two steps, an empty value, stepped gets joined in one
//!   task.
//! - `scan`: a stepped read before the startup scan has indexed the directory (the scan
//!   held by a wrapping `Fs`), with a `remove` or `set` between its steps.
//! - `tamper`: the inline read sees other bytes than the pool then finds at the path (a
//!   wrapping `Fs`): the pool judges the path, never the inline bytes.

mod boundary;
mod contexts;
mod docs;
mod expiry;
mod interleave;
mod lifecycle;
mod scan;
mod sizes;
mod tamper;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use answercache::testing::{TestCache, TestDir};
use answercache::warm::format::{assemble, FLAG_GZIP};
use answercache::{Stats, TieredCache};

pub use crate::stepped::{ct, evict_hot, index_matches_disk, mt, park, text};
pub use crate::support::*;

/// `INLINE_STEP_BYTES` (not public): the most value one inline step inflates.
pub const STEP: usize = 64 << 10;
/// `STEPPED_FILE_MAX`: the largest entry file read and verified on the caller's task.
pub const FILE_MAX: usize = 64 << 10;
/// `STEPPED_VALUE_MAX`: the largest declared value inflated on the caller's task.
pub const VALUE_MAX: usize = 1 << 20;

/// How many yields a stepped read of `len` bytes of value takes: one step per 64 KiB, the
/// first inside `read_inline`, a yield before each later one.
pub fn yields_for(len: usize) -> u32 {
    (len.div_ceil(STEP).max(1) - 1) as u32
}

/// A cache whose hot tier holds one entry, its startup scan done (real file system: page-
/// cache reads on, on ext4/xfs/btrfs).
pub async fn open() -> TestCache {
    crate::stepped::open().await
}

/// Like [`open`], on a manual clock starting at `start_ms`.
pub async fn open_at(start_ms: u64) -> TestCache {
    let cache = TestDir::new()
        .manual_clock(start_ms)
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
    cache
}

/// Polls `f` once with a waker that does nothing (the caller polls again itself).
pub fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(f).poll(&mut cx)
}

/// A get of `key` polled by hand to the end: the answer and how many times it returned
/// `Pending` (for a stepped read: the yields between its steps; a blocking-pool read
/// returns `Pending` until its thread is done, any number of times).
pub async fn get_counting_yields(cache: &TieredCache, key: &str) -> (Option<Arc<[u8]>>, u32) {
    let mut fut = Box::pin(cache.get_bytes(key));
    let mut pendings = 0;
    loop {
        match poll_once(&mut fut) {
            Poll::Ready(r) => return (r.unwrap(), pendings),
            Poll::Pending => {
                pendings += 1;
                if pendings > 64 {
                    // Not a stepped read (at most 15 yields): a pool read, let its thread
                    // run.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// A checksum-valid entry file of `key` (version 2, gzip, raw bytes) whose header declares
/// `declared` bytes of value over `payload`, created a second before `now`, never expiring.
pub fn resealed(key: &str, declared: u64, payload: &[u8], now: u64) -> Vec<u8> {
    assemble(
        key.as_bytes(),
        declared,
        payload,
        meta(now - 1000, 0),
        2,
        FLAG_GZIP,
    )
}

/// The CRC-32 of `data` (gzip's).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// The gzip trailer of `value`.
pub fn trailer(value: &[u8]) -> Vec<u8> {
    let mut t = crc32(value).to_le_bytes().to_vec();
    t.extend_from_slice(&(value.len() as u32).to_le_bytes());
    t
}

/// The 10-byte gzip header with flags `flg`.
pub fn gz_header(flg: u8) -> Vec<u8> {
    vec![0x1f, 0x8b, 8, flg, 0, 0, 0, 0, 0, 0xff]
}

/// Raw deflate of `data` at `level`, ended by a full flush (an empty non-final stored block:
/// the stream is byte-aligned after it and the next block starts a new byte), never final.
pub fn deflate_flushed(data: &[u8], level: u32) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    loop {
        let before = c.total_in() as usize;
        out.reserve(64 << 10);
        c.compress_vec(&data[before..], &mut out, FlushCompress::Full)
            .unwrap();
        if c.total_in() as usize == data.len() && out.capacity() > out.len() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "not full-flushed");
    out
}

/// Stored blocks holding `value` (at most 65,535 bytes each); the last one final if `last`.
pub fn stored(value: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = if value.is_empty() {
        vec![&[][..]]
    } else {
        value.chunks(65_535).collect()
    };
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        out.push(u8::from(last && i + 1 == n));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// What the counters a read moves moved by between `a` and `b`.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Default)]
pub struct Moved {
    pub warm_hits: u64,
    pub hot_hits: u64,
    pub misses: u64,
    pub inline_reads: u64,
    pub corrupted: u64,
    pub quarantined: u64,
    pub disk_errors: u64,
    pub warm_expirations: u64,
}

pub fn moved(a: &Stats, b: &Stats) -> Moved {
    Moved {
        warm_hits: b.warm_hits - a.warm_hits,
        hot_hits: b.hot_hits - a.hot_hits,
        misses: b.misses - a.misses,
        inline_reads: b.inline_reads - a.inline_reads,
        corrupted: b.corrupted - a.corrupted,
        quarantined: b.quarantined_files - a.quarantined_files,
        disk_errors: b.disk_errors - a.disk_errors,
        warm_expirations: b.warm_expirations - a.warm_expirations,
    }
}

/// A stepped hit: one warm hit, read inline.
pub const STEPPED_HIT: Moved = Moved {
    warm_hits: 1,
    hot_hits: 0,
    misses: 0,
    inline_reads: 1,
    corrupted: 0,
    quarantined: 0,
    disk_errors: 0,
    warm_expirations: 0,
};

/// A hit inflated on the blocking pool.
pub const POOL_HIT: Moved = Moved {
    inline_reads: 0,
    ..STEPPED_HIT
};

/// A corrupt entry: a miss, counted once, quarantined.
pub const CORRUPT_MISS: Moved = Moved {
    warm_hits: 0,
    hot_hits: 0,
    misses: 1,
    inline_reads: 0,
    corrupted: 1,
    quarantined: 1,
    disk_errors: 0,
    warm_expirations: 0,
};

/// The count of `reason` in the stats.
pub fn reason_count(s: &Stats, reason: &str) -> u64 {
    s.corrupted_by_reason.get(reason).copied().unwrap_or(0)
}

/// The entry file of `key` under `root` is exactly `bytes`.
pub fn file_is(root: &Path, key: &str, bytes: &[u8]) -> bool {
    std::fs::read(v2_path(root, key.as_bytes())).is_ok_and(|b| b == bytes)
}
