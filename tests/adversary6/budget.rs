//! A warm budget `du` agrees with (issue 13; FORMAT.md "What the warm budget counts"):
//! `du -sk <root>` within the budget plus 1 MiB once eviction settles, and
//! `Stats::warm_disk_bytes` / `warm_entries` equal to what the files actually there take.
//!
//! Every test runs on a real ext4 directory (`/tmp`); caches write through without fsync
//! (the accounting does not depend on durability) so that evictions happen inside `set`.

use std::path::Path;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule, TestCache};
use answercache::{Durability, TieredCache, WritePolicy};

use crate::support::*;

const MIB: u64 = 1 << 20;

fn through(b: answercache::Builder) -> answercache::Builder {
    b.write_policy(WritePolicy::WriteThrough)
        .durability(Durability::NoSync)
        .failure_threshold(1000)
        .memory_only_after(1000)
        .hot_capacity_entries(16)
}

async fn scanned(cache: &TieredCache) {
    assert!(
        wait_until(Duration::from_secs(60), || cache
            .stats()
            .warm_index_complete)
        .await,
        "the startup scan did not finish"
    );
}

/// The index's figures against the files actually under `v2/`.
fn index_vs_disk(cache: &TieredCache, root: &Path) -> ((u64, u64), (u64, u64)) {
    let s = cache.stats();
    (
        (s.warm_entries, s.warm_disk_bytes),
        (v2_files(root).len() as u64, budget_of_files(root)),
    )
}

/// "A startup scan over a directory left by a bigger budget" / "restart with a smaller
/// budget": 16,384 small entries (64 per fan-out directory) were left by a cache with a large
/// budget; a cache with a 1 MiB budget opens the directory and evicts down to its budget. ext4
/// never shrinks a directory: each fan-out directory keeps the 3 blocks (12 KiB) that 64 names
/// took, though it now holds one entry or none, and the budget counts it as one block (or
/// nothing, when empty). `du` stays ~3 MiB over the budget forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn du_after_reopening_a_big_directory_with_a_small_budget() {
    let t = tempfile::tempdir().unwrap();
    let created = now_ms() - 60_000;
    for i in 0..16_384u32 {
        let key = format!("left-by-a-big-budget:{i}");
        let file = entry_file(key.as_bytes(), b"a short answer", created, 0);
        plant(&v2_path(t.path(), key.as_bytes()), &file);
    }
    let cache = dir_in(t)
        .open_cache(|b| through(b).warm_capacity_bytes(MIB))
        .await;
    let root = cache.root().to_owned();
    scanned(&cache).await;
    // The scan is marked complete before its evictions are done: wait for them.
    assert!(
        wait_until(Duration::from_secs(60), || v2_files(&root).len() as u64
            == cache.stats().warm_entries)
        .await
    );
    let s = cache.stats();
    assert!(s.warm_disk_bytes <= MIB, "{s:?}");
    assert_eq!(
        index_vs_disk(&cache, &root).0,
        index_vs_disk(&cache, &root).1
    );
    let du = du_bytes(&root);
    assert_eq!(du_command(&root), du);
    assert!(
        du <= MIB + MIB,
        "du {du} B > budget {MIB} + 1 MiB; the budget counts {} B for {} entries in {} fan-out \
         directories",
        s.warm_disk_bytes,
        s.warm_entries,
        fan_out_dirs(&root).len()
    );
    cache.close().await.unwrap();
}

/// The same inside one process, no restart: a workload of small answers grows the fan-out
/// directories (64 names each), then one of large answers evicts them. Each directory keeps
/// its 3 blocks; the budget counts one per directory holding an entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn du_after_small_answers_give_way_to_large_ones() {
    const BUDGET: u64 = 72 * MIB;
    let cache = dir()
        .open_cache(|b| through(b).warm_capacity_bytes(BUDGET).compression_level(0))
        .await;
    let root = cache.root().to_owned();
    for i in 0..16_384u32 {
        cache
            .set_bytes(format!("small:{i}"), b"a short answer".to_vec())
            .await
            .unwrap();
    }
    let big: Vec<u8> = (0..(256 << 10) / 4)
        .flat_map(|i: u32| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    for i in 0..300u32 {
        cache
            .set_bytes(format!("large:{i}"), big.clone())
            .await
            .unwrap();
    }
    let s = cache.stats();
    assert!(s.warm_disk_bytes <= BUDGET, "{s:?}");
    assert_eq!(
        index_vs_disk(&cache, &root).0,
        index_vs_disk(&cache, &root).1
    );
    let du = du_bytes(&root);
    assert!(
        du <= BUDGET + MIB,
        "du {du} B > budget {BUDGET} + 1 MiB ({} B over); {} entries",
        du - BUDGET - MIB,
        s.warm_entries
    );
    cache.close().await.unwrap();
}

/// Two cache instances share a directory (DESIGN.md: several processes may), each with the
/// same 2 MiB budget, each writing its own keys: each bounds only what it knows, so the
/// directory holds twice the budget.
///
/// The lead's decision (FINDINGS.md F11; FORMAT.md, "What the warm budget counts"): the budget
/// is per process, as the index and its recency are. N processes sharing a directory may hold
/// N budgets; `du` stays within their sum plus 1 MiB, and each within its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn du_with_two_instances_sharing_the_directory() {
    const BUDGET: u64 = 2 * MIB;
    let d = dir();
    let a = d
        .open(through(d.builder()).warm_capacity_bytes(BUDGET))
        .await;
    let b = d
        .open(through(d.builder()).warm_capacity_bytes(BUDGET))
        .await;
    scanned(&a).await;
    scanned(&b).await;
    for i in 0..600u32 {
        a.set_bytes(format!("a:{i}"), vec![b'a'; 200])
            .await
            .unwrap();
        b.set_bytes(format!("b:{i}"), vec![b'b'; 200])
            .await
            .unwrap();
    }
    let root = d.root().to_owned();
    let du = du_bytes(&root);
    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.warm_disk_bytes <= BUDGET && sb.warm_disk_bytes <= BUDGET);
    assert!(
        du <= 2 * BUDGET + MIB,
        "du {du} B > two budgets of {BUDGET} + 1 MiB; instance a counts {} B, b counts {} B, {} files",
        sa.warm_disk_bytes,
        sb.warm_disk_bytes,
        v2_files(&root).len()
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// An eviction whose delete fails (EIO on the unlink, once per victim for 5 victims) takes the
/// victim out of the index anyway: the file stays on disk, uncounted, and is never evicted
/// again. `warm_entries` / `warm_disk_bytes` drift below what the disk holds.
#[tokio::test]
async fn a_failed_eviction_delete_leaves_an_uncounted_file() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| through(b).warm_capacity_bytes(64 << 10))
        .await;
    let root = cache.root().to_owned();
    for i in 0..20u32 {
        cache
            .set_bytes(format!("k{i}"), vec![b'x'; 300])
            .await
            .unwrap();
    }
    assert_eq!(
        index_vs_disk(&cache, &root).0,
        index_vs_disk(&cache, &root).1
    );
    cache.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .path_contains("/v2/")
            .times(5),
    );
    for i in 20..60u32 {
        cache
            .set_bytes(format!("k{i}"), vec![b'x'; 300])
            .await
            .unwrap();
    }
    assert_eq!(cache.fs().faults_injected(), 5);
    let ((entries, counted), (files, on_disk)) = index_vs_disk(&cache, &root);
    assert_eq!(
        (entries, counted),
        (files, on_disk),
        "the index must count every entry file there (or retry deleting it)"
    );
    cache.close().await.unwrap();
}

/// The same with the victim's header read failing (EIO): the eviction gives up on the file
/// and it is out of the index for good.
#[tokio::test]
async fn a_failed_eviction_read_leaves_an_uncounted_file() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| through(b).warm_capacity_bytes(64 << 10))
        .await;
    let root = cache.root().to_owned();
    for i in 0..20u32 {
        cache
            .set_bytes(format!("k{i}"), vec![b'x'; 300])
            .await
            .unwrap();
    }
    cache.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::ReadPrefix])
            .path_contains("/v2/")
            .times(5),
    );
    for i in 20..60u32 {
        cache
            .set_bytes(format!("k{i}"), vec![b'x'; 300])
            .await
            .unwrap();
    }
    assert_eq!(cache.fs().faults_injected(), 5);
    let (index, disk) = index_vs_disk(&cache, &root);
    assert_eq!(index, disk);
    cache.close().await.unwrap();
}

/// One transient EIO while `clear` removes the fan-out directories: `clear` returns Ok (the
/// fence holds), the index is emptied, and every file left (the clear stops at the first
/// error) is uncounted. The code says they "are evicted or swept like any other"; they are
/// not: a refill to the budget doubles what the directory holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_by_a_clear_are_counted_and_evicted() {
    const BUDGET: u64 = 2 * MIB;
    let cache = dir()
        .fault_fs()
        .open_cache(|b| through(b).warm_capacity_bytes(BUDGET))
        .await;
    let root = cache.root().to_owned();
    for i in 0..480u32 {
        cache
            .set_bytes(format!("before:{i}"), vec![b'b'; 200])
            .await
            .unwrap();
    }
    cache.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveDirAll])
            .times(1),
    );
    cache.clear().await.unwrap();
    cache.fs().clear_rules();
    for i in 0..480u32 {
        cache
            .set_bytes(format!("after:{i}"), vec![b'a'; 200])
            .await
            .unwrap();
    }
    let (index, disk) = index_vs_disk(&cache, &root);
    let du = du_bytes(&root);
    assert_eq!(
        (index, du <= BUDGET + MIB),
        (disk, true),
        "index (entries, bytes) vs files there; du {du} B"
    );
    cache.close().await.unwrap();
}

/// FORMAT.md section 5 step 8: an eviction that finds a file another process wrote since
/// "goes back into the index instead, so the budget still counts it". A newer release's file
/// (format version 3) is such a file; it is left in place but not counted.
#[tokio::test]
async fn a_newer_format_file_found_by_an_eviction_is_counted() {
    let cache = dir()
        .open_cache(|b| through(b).warm_capacity_bytes(64 << 10))
        .await;
    let root = cache.root().to_owned();
    cache.set_bytes("shared", vec![b's'; 300]).await.unwrap();
    // A newer process sharing the directory rewrites the entry in its format.
    let mut newer = entry_file(b"shared", b"a newer release's value", now_ms(), 0);
    newer[8] = 3;
    std::fs::write(v2_path(&root, b"shared"), &newer).unwrap();
    for i in 0..40u32 {
        cache
            .set_bytes(format!("k{i}"), vec![b'x'; 300])
            .await
            .unwrap();
    }
    assert_eq!(std::fs::read(v2_path(&root, b"shared")).unwrap(), newer);
    let (index, disk) = index_vs_disk(&cache, &root);
    assert_eq!(index, disk);
    cache.close().await.unwrap();
}

/// Accounting stays exact through what real users do: overwrites of the same keys with
/// growing and shrinking values (across block boundaries: 4,096 ± 1 bytes of file), removes
/// (of keys written and never written), quarantine of a corrupt entry, TTL expiry (on read
/// and by the sweep), clear and refill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_matches_the_disk_through_a_realistic_workload() {
    let mut cache = dir()
        .open_cache(|b| {
            through(b)
                .warm_capacity_bytes(256 << 10)
                .compression_level(0)
                .sweep_interval(Duration::from_millis(20))
        })
        .await;
    let root = cache.root().to_owned();
    let check = |cache: &TestCache, what: &str| {
        let (index, disk) = index_vs_disk(cache, &root);
        assert_eq!(index, disk, "{what}");
    };
    // A raw value of n bytes at level 0 makes a file of 88 + key + 10 + n + 5 + 8 bytes.
    let file_len = |key: &str, n: usize| 88 + key.len() + 23 + n;
    for round in 0..3usize {
        for i in 0..30usize {
            let key = format!("grow:{i}");
            // 4095, 4096, 4097 bytes of file, then much larger and back.
            let n = match (i + round) % 5 {
                0 => 4095 - file_len(&key, 0),
                1 => 4096 - file_len(&key, 0),
                2 => 4097 - file_len(&key, 0),
                3 => 12_000,
                _ => 10,
            };
            cache.set_bytes(&key, vec![b'g'; n]).await.unwrap();
        }
        check(&cache, "overwrites");
    }
    let lens: std::collections::BTreeSet<u64> = v2_files(&root)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(
        lens.contains(&4095) && lens.contains(&4096) && lens.contains(&4097),
        "{lens:?}"
    );
    for i in 0..10 {
        cache.remove(format!("grow:{i}")).await.unwrap();
        cache.remove(format!("never-written:{i}")).await.unwrap();
    }
    check(&cache, "removes");
    // A corrupt entry, quarantined on read.
    let p = v2_path(&root, b"grow:20");
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&p, bytes).unwrap();
    cache.reopen().await; // hot empty: the next get reads the file
    scanned(&cache).await;
    assert_eq!(cache.get_bytes("grow:20").await.unwrap(), None);
    assert_eq!(cache.stats().quarantined_files, 1);
    check(&cache, "quarantine");
    // TTL expiry: one read, the rest swept.
    for i in 0..10 {
        cache
            .set_bytes_with_ttl(format!("ttl:{i}"), vec![b't'; 50], Duration::from_secs(5))
            .await
            .unwrap();
    }
    cache.advance(Duration::from_secs(10));
    assert_eq!(cache.get_bytes("ttl:0").await.unwrap(), None);
    assert!(
        wait_until(Duration::from_secs(20), || cache.stats().warm_expirations
            == 10)
        .await,
        "{:?}",
        cache.stats()
    );
    check(&cache, "expiry");
    cache.clear().await.unwrap();
    check(&cache, "clear");
    assert_eq!(fan_out_dirs(&root), Vec::<std::path::PathBuf>::new());
    for i in 0..100 {
        cache
            .set_bytes(format!("refill:{i}"), vec![b'r'; 900])
            .await
            .unwrap();
    }
    check(&cache, "refill");
    assert!(cache.stats().warm_disk_bytes <= 256 << 10);
    cache.close().await.unwrap();
}

/// A value larger than the warm budget lives in memory only: by design a write-through `set`
/// (and `flush`) reports it as not on disk, naming why. After an unrelated disk error earlier
/// in the process (one failed read, long recovered), the reason given is that stale error.
#[tokio::test]
async fn a_value_over_the_budget_is_reported_with_its_own_reason() {
    let mut got = Vec::new();
    for policy in [WritePolicy::WriteThrough, WritePolicy::WriteBehind] {
        let cache = dir()
            .fault_fs()
            .open_cache(|b| {
                through(b)
                    .write_policy(policy)
                    .warm_capacity_bytes(16 << 10)
            })
            .await;
        cache
            .fs()
            .add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::ReadFile]).times(1));
        assert_eq!(cache.get_bytes("absent").await.unwrap(), None);
        cache.fs().clear_rules();
        cache.set_bytes("ok", b"small".to_vec()).await.unwrap();
        let big: Vec<u8> = (0..40_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let set = cache.set_bytes("big", big).await;
        let reported = match policy {
            WritePolicy::WriteThrough => set,
            _ => {
                set.unwrap();
                cache.flush().await
            }
        };
        match reported {
            Err(answercache::Error::NotPersisted { failed, last_error }) => {
                got.push((failed, last_error))
            }
            other => panic!("{policy:?}: {other:?}"),
        }
        let _ = cache.close().await;
    }
    let why = "values larger than the warm budget live in memory only".to_owned();
    assert_eq!(got, vec![(1, why.clone()), (1, why)]);
}
