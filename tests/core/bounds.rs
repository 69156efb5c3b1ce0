//! Bounds under churn: 100,000 sets of mixed sizes over 200 keys (interleaved with gets that
//! promote disk entries and a few removes that leave tombstones), with budgets so small that
//! both tiers evict constantly, while the writer runs on another thread. After *every*
//! operation the hot tier is within its byte and entry budgets and the warm tier within its
//! byte budget. The directory starts empty, so the warm index is exact from the first write;
//! at the end its totals must match the files on disk exactly, and no write may have been
//! lost on a healthy disk. Two targeted scenarios pin the ways the warm index can drift from
//! the disk: a read racing the eviction of the file it read, and a restart with a smaller
//! budget than the files already on disk.

use std::sync::Arc;

use answercache::workload::{markdown, Rng};
use answercache::Durability;

use crate::support::{dir_in, entry_path, open, pause_after_read, Gate, OnDisk};

const SETS: u64 = 100_000;
const KEYS: usize = 200;
const HOT_BYTES: usize = 4 << 10;
const HOT_ENTRIES: usize = 16;
const WARM_BYTES: u64 = 16 << 10;

/// Mostly small values (like short tool results), some larger than the whole hot budget (disk
/// only) and a few larger than the whole warm budget (memory-only, never written).
fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(1000) {
        0..=449 => rng.range(1, 32),
        450..=899 => rng.range(33, 256),
        900..=994 => rng.range(257, 1024),
        995..=998 => rng.range(HOT_BYTES, 2 * HOT_BYTES),
        _ => return rng.bytes(WARM_BYTES as usize + 1024),
    };
    if rng.chance(0.5) {
        markdown(rng, len).into_bytes()
    } else {
        rng.bytes(len)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_after_every_operation_under_100k_sets() {
    let mut rng = Rng::new(0xB0B);
    let h = open(|b| {
        b.hot_capacity_bytes(HOT_BYTES)
            .hot_capacity_entries(HOT_ENTRIES)
            .warm_capacity_bytes(WARM_BYTES)
            .write_queue_bytes(256 << 10)
            .durability(Durability::NoSync)
    })
    .await;
    let mut sets = 0;
    let mut op = 0u64;
    while sets < SETS {
        op += 1;
        let key = format!("key-{}", rng.below(KEYS));
        match rng.below(100) {
            0..=91 => {
                h.set_bytes(&key, value(&mut rng)).await.unwrap();
                sets += 1;
            }
            92..=97 => {
                h.get_bytes(&key).await.unwrap();
            }
            _ => {
                h.remove(&key).await.unwrap();
            }
        }
        if op.is_multiple_of(1000) {
            // Values larger than the warm budget live in memory only: `flush` reports exactly
            // those, still in memory (dirty) or already evicted from it (lost keys), and
            // nothing else.
            let r = h.flush().await;
            let s = h.stats();
            match r {
                Ok(()) => assert_eq!((s.dirty_entries, s.lost_keys), (0, 0)),
                Err(answercache::Error::NotPersisted { failed, .. }) => {
                    assert_eq!(failed, s.dirty_entries + s.lost_keys)
                }
                Err(e) => panic!("flush: {e}"),
            }
        }
        let s = h.stats();
        assert!(
            s.hot_bytes <= HOT_BYTES as u64
                && s.hot_entries <= HOT_ENTRIES as u64
                && s.warm_bytes <= WARM_BYTES,
            "op {op}: hot {} B / {} entries, warm {} B / {} entries",
            s.hot_bytes,
            s.hot_entries,
            s.warm_bytes,
            s.warm_entries
        );
    }
    h.flush().await.unwrap();
    let s = h.stats();
    assert_eq!(s.sets, SETS);
    assert_eq!(
        (
            s.hot_capacity_bytes,
            s.hot_capacity_entries,
            s.warm_capacity_bytes
        ),
        (HOT_BYTES as u64, HOT_ENTRIES as u64, WARM_BYTES)
    );
    // Both tiers were at their limits all along, not merely under them.
    assert!(
        s.hot_evictions > SETS / 2,
        "hot evictions: {}",
        s.hot_evictions
    );
    assert!(
        s.warm_evictions > s.writes_ok / 2,
        "warm evictions: {} of {} writes",
        s.warm_evictions,
        s.writes_ok
    );
    assert!(
        s.writes_skipped > 0,
        "values over the warm budget are not written"
    );
    // A healthy disk loses no write: only values that could never be written (larger than
    // the warm budget) are lost, when the hot tier evicts them.
    assert!(
        s.lost_writes <= s.writes_skipped,
        "{} lost, {} too large",
        s.lost_writes,
        s.writes_skipped
    );
    // The warm index's totals are the directory's.
    assert_eq!(s.warm_entries, h.entry_names().len() as u64);
    assert_eq!(s.warm_bytes, h.entry_bytes_on_disk());
    h.close().await.unwrap();
}

/// A get reads X's file; before it records the hit, a write of Y evicts X (index entry and
/// file). The late hit must not bring X back into the index: the index would then count a
/// file that no longer exists, and exceed the budget that eviction just restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_the_eviction_of_its_file_does_not_resurrect_it() {
    let mut rng = Rng::new(99);
    let gate = Arc::new(Gate::default());
    // Values of 3,000 random bytes: too big for the 1 KiB hot tier, so every read goes to
    // disk; one entry file (a 4 KiB block, its directory entry and its fan-out directory:
    // 8,320 bytes as the budget counts) fits in the 10,000-byte warm budget, two do not.
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(pause_after_read(entry_path(dir.path(), "x"), gate.clone()));
    let x = rng.bytes(3000);
    let y = rng.bytes(3000);
    let h = dir_in(dir)
        .open_cache(|b| {
            b.hot_capacity_bytes(1024)
                .warm_capacity_bytes(10_000)
                .fs(fs)
        })
        .await;
    h.set_bytes("x", &x).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!((h.stats().warm_entries, h.stats().hot_entries), (1, 0));

    let reader = {
        let cache = h.cache.clone();
        tokio::spawn(async move { cache.get_bytes("x").await })
    };
    let g = gate.clone();
    tokio::task::spawn_blocking(move || g.wait_for_caller())
        .await
        .unwrap();
    h.set_bytes("y", &y).await.unwrap();
    h.flush().await.unwrap();
    assert!(!h.on_disk("x"), "x was evicted to make room for y");
    assert_eq!(h.stats().warm_evictions, 1);
    gate.open();
    let got = reader.await.unwrap().unwrap();
    assert_eq!(
        got.as_deref(),
        Some(&x[..]),
        "the read saw the whole file before it went"
    );

    let s = h.stats();
    assert_eq!(s.warm_entries, 1, "only y is on disk");
    assert_eq!(s.warm_bytes, h.entry_bytes_on_disk());
    assert!(
        s.warm_bytes <= 5000,
        "warm {} B over its budget of 5000 B",
        s.warm_bytes
    );
    h.close().await.unwrap();
}

/// A cache reopened with a smaller warm budget than the files already on disk trims the
/// directory to the budget once its startup scan knows the files, without waiting for the
/// next write.
#[tokio::test(start_paused = true)]
async fn a_smaller_budget_after_restart_is_enforced_once_the_scan_completes() {
    let mut rng = Rng::new(5);
    let h = open(|b| b).await;
    for i in 0..20 {
        h.set_bytes(format!("k{i}"), rng.bytes(1000)).await.unwrap();
    }
    h.close().await.unwrap();
    let per_file = h.entry_bytes_on_disk() / 20;
    let budget = 5 * per_file;
    let h = h
        .into_dir()
        .open_cache(|b| b.warm_capacity_bytes(budget))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let s = h.stats();
    assert!(s.warm_index_complete);
    assert!(
        s.warm_bytes <= budget,
        "warm {} B over its budget of {budget} B",
        s.warm_bytes
    );
    assert!(
        h.entry_bytes_on_disk() <= budget,
        "{} B on disk",
        h.entry_bytes_on_disk()
    );
    h.close().await.unwrap();
}
