//! Adversary-7 review of perf14: warm hits of 16-64 KiB of file verified on the caller's task
//! and inflated in steps (`ExactInflater::step`, `Inflating`, `inflate_stepped`) with a
//! `yield_now` between steps. See FINDINGS.md in this directory.
//!
//! - `race`: `set`/`remove`/`clear` acknowledged before or during a stepped read, on
//!   multi-thread and current-thread runtimes and in a `LocalSet`.
//! - `cancel`: gets dropped mid-step (`abort` after n yields, `timeout` of a few ns).
//! - `corrupt`: checksum-valid hostile members whose fault shows at a late step, and raw
//!   damage, on every runtime flavour.

mod cancel;
mod corrupt;
mod race;

use std::path::Path;
use std::time::Duration;

use answercache::testing::{TestCache, TestDir};
use answercache::TieredCache;
use tokio::runtime::{Builder as RtBuilder, Runtime};

use crate::support::*;

pub fn mt(workers: usize) -> Runtime {
    RtBuilder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

pub fn ct() -> Runtime {
    RtBuilder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cache whose hot tier holds one entry, its startup scan done.
pub async fn open() -> TestCache {
    let cache = TestDir::new()
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

/// Text of `len` bytes that compresses ~100:1, distinct per `seed`: a file of a few KiB
/// whose value takes `len / 64 KiB` steps (`INLINE_STEP_BYTES`; 32 KiB when these tests were
/// written).
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let line = format!("seed {seed:>20}: the stepped inflater must give this back exactly. ");
    line.as_bytes().iter().copied().cycle().take(len).collect()
}

/// `noise_len` bytes of noise, then zeros up to `len`: a file of about `noise_len` bytes (at
/// most 64 KiB: read inline) whose value takes more than one 64 KiB step. These tests were
/// written with 32 KiB steps and noise alone (40-60 KiB: two steps); with 64 KiB steps noise
/// alone would inflate in one.
pub fn long_noise(noise_len: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut v = noise(noise_len, seed);
    v.resize(len, 0);
    v
}

/// Leaves `key` = `value` on disk only: set, pushed out of the one-entry hot tier by a filler,
/// flushed.
pub async fn park(cache: &TieredCache, key: &str, value: &[u8]) {
    cache.set_bytes(key, value).await.unwrap();
    cache.set_bytes("filler", b"f").await.unwrap();
    cache.flush().await.unwrap();
}

/// Pushes whatever the hot tier holds out to the disk.
pub async fn evict_hot(cache: &TieredCache) {
    cache.set_bytes("filler", b"g").await.unwrap();
    cache.flush().await.unwrap();
}

/// The index's view (`warm_entries`, `warm_bytes`) against the entry files on disk, once
/// quiescent.
pub fn index_matches_disk(cache: &TieredCache, root: &Path) -> Result<(), String> {
    let files = v2_files(root);
    let bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let s = cache.stats();
    if (s.warm_entries, s.warm_bytes) == (files.len() as u64, bytes) {
        Ok(())
    } else {
        Err(format!(
            "index says {} files / {} bytes, disk has {} / {bytes}",
            s.warm_entries,
            s.warm_bytes,
            files.len()
        ))
    }
}
