//! Durable first, compact later, end to end (`Builder::compress_in_background`): a large
//! value is on disk stored when its write-through `set` returns, served from there, and
//! compressed in place once the disk has been idle; writes that never pause put the
//! compaction off, but only so long; a restart serves either form.

use std::time::Duration;

use answercache::workload::{markdown, Rng};
use answercache::{Durability, WritePolicy};

use crate::support::{self, OnDisk};

fn value(seed: u64, len: usize) -> Vec<u8> {
    markdown(&mut Rng::new(seed), len).into_bytes()
}

async fn wait_for(cache: &support::TestCache, what: impl Fn(&answercache::Stats) -> bool) -> bool {
    answercache::testing::wait_until(Duration::from_secs(10), || what(&cache.stats())).await
}

/// A write-through set of a 64 KiB answer lands stored (its file longer than the value), is
/// served, and is compressed once nothing writes; a restart serves the compressed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_write_through_value_lands_stored_and_is_compressed_when_idle() {
    let mut cache = support::open(|b| {
        b.write_policy(WritePolicy::WriteThrough)
            .durability(Durability::Fsync)
    })
    .await;
    let v = value(1, 64 << 10);
    cache.set_bytes(b"answer", &v).await.unwrap();
    let stored = std::fs::metadata(cache.entry_path(b"answer"))
        .unwrap()
        .len();
    assert!(stored > v.len() as u64, "stored: {stored} for {}", v.len());
    assert!(wait_for(&cache, |s| s.warm_compactions == 1).await);
    let s = cache.stats();
    assert_eq!(s.warm_compaction_backlog, 0);
    let compressed = std::fs::metadata(cache.entry_path(b"answer"))
        .unwrap()
        .len();
    assert!(compressed * 2 < v.len() as u64, "compressed: {compressed}");
    assert_eq!(s.bytes_written_compressed, compressed);
    assert_eq!(s.bytes_written_uncompressed, v.len() as u64);
    assert_eq!(cache.entry_bytes_on_disk(), compressed);
    assert!(cache.temp_names().is_empty());
    cache.reopen().await;
    assert_eq!(
        cache.get_bytes(b"answer").await.unwrap().as_deref(),
        Some(&v[..])
    );
    cache.close().await.unwrap();
}

/// Forty 20 KB answers set back to back (write-behind, `NoSync`) are all compressed once the
/// writes stop: the backlog is worked off, each file replaced by its compressed form, and
/// every value read back exactly after a restart. (When a compaction runs under writes that
/// never pause is `compactor::turn`'s, tested on the paused clock there: a real disk call
/// lets a paused clock jump.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_compressed_once_the_writes_stop() {
    let mut cache = support::open(|b| b.durability(Durability::NoSync)).await;
    let values: Vec<Vec<u8>> = (0..40).map(|i| value(100 + i, 20_000)).collect();
    for (i, v) in values.iter().enumerate() {
        cache.set_bytes(format!("k{i}"), v).await.unwrap();
    }
    cache.flush().await.unwrap();
    assert!(wait_for(&cache, |s| s.warm_compactions == 40).await);
    let s = cache.stats();
    assert_eq!(s.warm_compaction_backlog, 0);
    assert_eq!(s.bytes_written_uncompressed, 40 * 20_000);
    assert_eq!(s.bytes_written_compressed, cache.entry_bytes_on_disk());
    for (i, v) in values.iter().enumerate() {
        let len = std::fs::metadata(cache.entry_path(format!("k{i}")))
            .unwrap()
            .len();
        assert!(len * 2 < v.len() as u64, "k{i}: {len}");
    }
    cache.reopen().await;
    for (i, v) in values.iter().enumerate() {
        let got = cache.get_bytes(format!("k{i}")).await.unwrap();
        assert_eq!(got.as_deref(), Some(&v[..]), "k{i}");
    }
    cache.close().await.unwrap();
}

/// With the setting off, the file written is the compressed one and nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_background_compression_off_the_write_compresses() {
    let cache = support::open(|b| {
        b.write_policy(WritePolicy::WriteThrough)
            .compress_in_background(false)
    })
    .await;
    let v = value(2, 64 << 10);
    cache.set_bytes(b"answer", &v).await.unwrap();
    let len = std::fs::metadata(cache.entry_path(b"answer"))
        .unwrap()
        .len();
    assert!(len * 2 < v.len() as u64, "{len}");
    let s = cache.stats();
    assert_eq!(
        (s.warm_compaction_backlog, s.bytes_written_compressed),
        (0, len)
    );
    cache.close().await.unwrap();
}

/// A write in flight is not idleness. While an entry write hangs (a slow disk's `fdatasync`
/// under another tenant's I/O), no write *begins*, but the disk is busy with one a caller
/// waits for: the compactor must not put its own write and sync beside it. Before session 24
/// it counted only writes begun, so on a disk whose syncs take more than 50 ms it compacted
/// beside nearly every write (measured under a `dd` load: 1,346 compactions for 1,634 sets).
/// Once the write lands and the disk has been idle, the waiting entry is compressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_is_not_idleness() {
    let cache = support::write_through(Duration::from_secs(60), 4).await;
    cache
        .set_bytes(b"waiting", &value(1, 64 << 10))
        .await
        .unwrap();
    assert_eq!(cache.stats().warm_compaction_backlog, 1);
    let before = cache.fs().calls(answercache::testing::FsOp::WriteNew);
    support::hang_one_entry_write(&cache);
    // Its caller stops waiting; the write stays in flight (see `caller_writes`).
    let set = tokio::time::timeout(
        Duration::from_millis(50),
        cache.set_bytes(b"slow", value(2, 64 << 10)),
    )
    .await;
    assert!(set.is_err(), "the set returned while its write hung");
    support::entry_writes_reach(&cache, before + 1).await;
    // Six times the idle wait with no write begun, one in flight all along.
    tokio::time::sleep(compactor_idle() * 6).await;
    let s = cache.stats();
    assert_eq!(
        (s.warm_compactions, s.warm_compaction_backlog),
        (0, 1),
        "compacted beside a write in flight"
    );
    support::release(&cache);
    assert!(wait_for(&cache, |s| s.warm_compactions == 2).await);
    let s = cache.stats();
    assert_eq!((s.writes_ok, s.warm_compaction_backlog), (2, 0));
    cache.close().await.unwrap();
}

/// The compactor's idle wait (`compactor::COMPACT_IDLE`, 50 ms).
fn compactor_idle() -> Duration {
    Duration::from_millis(50)
}
