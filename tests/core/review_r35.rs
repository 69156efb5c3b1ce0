//! Review r35 of "a blocking thread that completed a write runs the next ready one with the
//! same slot" (1ad57d7: `RunDirect::run`, `next_chained`, the writer task's slot-then-job
//! order) and "a write in flight is not idleness" (a2dd261: the compactor's in-flight
//! guard): adversarial tests of chains under hung and failing disks, `clear`, `close`,
//! `remove`, the breaker, write-through callers competing for slots, and the compactor beside
//! hung and failed writes. Findings: `REVIEW_R35_FINDINGS.md`.

use std::collections::BTreeSet;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule};
use answercache::workload::{markdown, Rng};
use answercache::{BreakerState, Durability, Error, WritePolicy};

use crate::support::*;

const IO_TIMEOUT: Duration = Duration::from_millis(300);

/// `n` keys `"{prefix}{i}"` whose entry files lie in distinct fan-out directories, so that a
/// fault rule on one key's directory (`/v2/ab/`) matches that key's writes only.
fn keys(prefix: &str, n: usize) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < n {
        let k = format!("{prefix}{i}");
        if seen.insert(hex_of(k.as_bytes())[..2].to_string()) {
            out.push(k);
        }
        i += 1;
    }
    out
}

/// The path fragment of the fan-out directory of `key`.
fn fanout(key: &str) -> String {
    format!("/v2/{}/", &hex_of(key.as_bytes())[..2])
}

/// Hangs the next entry write of `key` (until `release_hangs`).
fn hang_key(cache: &TestCache, key: &str) {
    cache.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::WriteNew])
            .path_contains(fanout(key))
            .times(1),
    );
}

/// Delays the next entry write of `key` by `d`.
fn delay_key(cache: &TestCache, key: &str, d: Duration) {
    cache.fs().add_rule(
        Rule::new(Fault::Delay(d))
            .ops(&[FsOp::WriteNew])
            .path_contains(fanout(key))
            .times(1),
    );
}

fn not_persisted<T: std::fmt::Debug>(r: &answercache::Result<T>, n: u64) -> bool {
    matches!(r, Err(Error::NotPersisted { failed, .. }) if *failed == n)
}

async fn value_of(cache: &TestCache, key: &str) -> Option<Vec<u8>> {
    cache.get_bytes(key).await.unwrap().map(|v| v.to_vec())
}

/// Every key in `ks` is served with its own name as its value (how these tests set them).
async fn serves_own_names(cache: &TestCache, ks: &[String]) {
    for k in ks {
        assert_eq!(
            value_of(cache, k).await.as_deref(),
            Some(k.as_bytes()),
            "{k}"
        );
    }
}

async fn write_behind(concurrency: usize) -> TestCache {
    dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteBehind)
                .io_timeout(IO_TIMEOUT)
                .write_concurrency(concurrency)
                .failure_threshold(100)
                .durability(Durability::NoSync)
                .compress_in_background(false)
        })
        .await
}

/// Guard: `write_concurrency(1)`, a write-behind backlog drained by one chain, whose fourth
/// job hangs: after `io_timeout` the watchdog frees the slot and the rest of the queue is
/// written; `flush` reports exactly the hung key; once the disk answers it lands, and a
/// restart serves every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_a_hung_chained_job_with_one_slot_does_not_hold_up_the_queue() {
    let mut cache = write_behind(1).await;
    let ks = keys("q", 7);
    // The first write is slow, so the other six are queued when it returns: one chain.
    delay_key(&cache, &ks[0], Duration::from_millis(200));
    hang_key(&cache, &ks[3]);
    for k in &ks {
        cache.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await.unwrap();
    assert!(not_persisted(&flushed, 1), "{flushed:?}");
    let s = cache.stats();
    assert_eq!(
        (s.writes_ok, s.writes_failed, s.breaker_opens, s.task_panics),
        (6, 0, 0, 0),
        "{s:?}"
    );
    for (i, k) in ks.iter().enumerate() {
        assert_eq!(cache.on_disk(k), i != 3, "{k}");
    }
    release(&cache);
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 7).await);
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await.unwrap();
    assert!(flushed.is_ok(), "{flushed:?}");
    let s = cache.stats();
    assert_eq!(
        (
            s.writes_ok,
            s.writes_failed,
            s.lost_writes,
            s.write_queue_depth
        ),
        (7, 0, 0, 0),
        "{s:?}"
    );
    cache.reopen().await;
    serves_own_names(&cache, &ks).await;
}

/// Guard: five write-through sets race for one slot; one of them hangs. The hung one hears
/// "not written" at `io_timeout`; every other set is Ok (none waits for the hung disk for
/// ever, none deadlocks behind the chain), and all five land once the disk answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_write_through_sets_racing_a_hung_chain_for_one_slot() {
    let mut cache = write_through(IO_TIMEOUT, 1).await;
    let ks = keys("w", 5);
    hang_key(&cache, &ks[2]);
    let mut tasks = Vec::new();
    for k in &ks {
        let c = cache.cache.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.set_bytes(&k, k.as_bytes()).await;
            (k, r)
        }));
    }
    for t in tasks {
        let (k, r) = tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
        if k == ks[2] {
            assert!(not_persisted(&r, 1), "{k}: {r:?}");
        } else {
            assert!(r.is_ok(), "{k}: {r:?}");
        }
    }
    let s = cache.stats();
    assert_eq!((s.writes_ok, s.writes_failed), (4, 0), "{s:?}");
    release(&cache);
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 5).await);
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await.unwrap();
    assert!(flushed.is_ok(), "{flushed:?}");
    cache.reopen().await;
    serves_own_names(&cache, &ks).await;
}

/// Guard: the breaker opens in the middle of a chain (two failed writes, threshold 2): the
/// chain's next jobs are refused, not run (no third failure, nothing lost), they stay dirty,
/// and once the breaker closes again `flush` writes them back: every value lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_the_breaker_opening_mid_chain_leaves_the_rest_dirty_for_write_back() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteBehind)
                .io_timeout(Duration::from_secs(10))
                .write_concurrency(1)
                .failure_threshold(2)
                .open_timeout(Duration::from_millis(200))
                .max_open_timeout(Duration::from_millis(200))
                .memory_only_after(1000)
                .durability(Durability::NoSync)
                .compress_in_background(false)
        })
        .await;
    let ks = keys("b", 7);
    hang_key(&cache, &ks[0]);
    cache.set_bytes(&ks[0], ks[0].as_bytes()).await.unwrap();
    entry_writes_reach(&cache, 1).await;
    for k in &ks[1..] {
        cache.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    // The chain after the held write: two EIO failures, then the breaker is open.
    for k in &ks[1..3] {
        cache.fs().add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::WriteNew])
                .path_contains(fanout(k))
                .times(1),
        );
    }
    cache.fs().release_hangs();
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().write_queue_depth == 0).await);
    let s = cache.stats();
    assert_eq!(
        (s.writes_ok, s.writes_failed, s.breaker_opens, s.lost_writes),
        (1, 2, 1, 0),
        "{s:?}"
    );
    assert_eq!(cache.stats().dirty_entries, 6);
    // The breaker's open time passes; a new write is its trial, then `flush` writes back
    // (with the breaker closed) what the chain left dirty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cache.set_bytes("trial", b"t".to_vec()).await.unwrap();
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 2).await);
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    let f = tokio::time::timeout(PATIENCE, cache.flush()).await.unwrap();
    assert!(f.is_ok(), "{f:?}");
    assert_eq!(cache.stats().dirty_entries, 0);
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    let s = cache.stats();
    assert_eq!(
        (s.writes_ok, s.writes_failed, s.breaker_opens, s.lost_writes),
        (8, 2, 1, 0),
        "{s:?}"
    );
    cache.reopen().await;
    serves_own_names(&cache, &ks).await;
}

/// Guard: a chained job hangs past `io_timeout`; a `clear` then returns Ok without waiting
/// for it, and the old value that lands after the clear does not survive it (in memory, on
/// disk, after a restart); a set made after the clear does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_a_chained_write_landing_after_a_clear_does_not_undo_it() {
    let mut cache = write_behind(1).await;
    let ks = keys("c", 4);
    delay_key(&cache, &ks[0], Duration::from_millis(200));
    hang_key(&cache, &ks[1]);
    for k in &ks[..3] {
        cache.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    // The chain: ks[0] lands, ks[1] hangs (ks[2] waits in the queue).
    entry_writes_reach(&cache, 2).await;
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 1).await);
    let cleared = tokio::time::timeout(PATIENCE, cache.clear()).await.unwrap();
    assert!(cleared.is_ok(), "{cleared:?}");
    cache.set_bytes(&ks[3], ks[3].as_bytes()).await.unwrap();
    release(&cache);
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 3).await);
    let f = tokio::time::timeout(PATIENCE, cache.flush()).await.unwrap();
    assert!(f.is_ok(), "{f:?}");
    for (i, k) in ks.iter().enumerate() {
        assert_eq!(cache.on_disk(k), i == 3, "{k}");
    }
    assert_eq!(value_of(&cache, &ks[1]).await, None);
    cache.reopen().await;
    for (i, k) in ks.iter().enumerate() {
        let want = (i == 3).then(|| k.as_bytes().to_vec());
        assert_eq!(value_of(&cache, k).await, want, "{k}");
    }
}

/// Guard: per-key order across a hung chained job: `k`'s first value hangs (given up at
/// `io_timeout`), then `k` is set again and removed. When the disk answers, the old value
/// lands, then the removal: `k` is absent, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_a_removal_queued_behind_a_hung_chained_write_wins() {
    let mut cache = write_behind(1).await;
    let ks = keys("o", 2);
    let (a, k) = (&ks[0], &ks[1]);
    delay_key(&cache, a, Duration::from_millis(200));
    hang_key(&cache, k);
    cache.set_bytes(a, b"a".to_vec()).await.unwrap();
    cache.set_bytes(k, b"v1".to_vec()).await.unwrap();
    entry_writes_reach(&cache, 2).await;
    tokio::time::sleep(IO_TIMEOUT + Duration::from_millis(100)).await;
    cache.set_bytes(k, b"v2".to_vec()).await.unwrap();
    assert!(cache.remove(k).await.unwrap());
    let f = tokio::time::timeout(PATIENCE, cache.flush()).await.unwrap();
    assert!(not_persisted(&f, 1), "{f:?}");
    release(&cache);
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 3).await);
    let f = tokio::time::timeout(PATIENCE, cache.flush()).await.unwrap();
    assert!(f.is_ok(), "{f:?}");
    assert!(!cache.on_disk(k));
    assert_eq!(value_of(&cache, k).await, None);
    cache.reopen().await;
    assert_eq!(value_of(&cache, k).await, None);
    assert_eq!(value_of(&cache, a).await.as_deref(), Some(&b"a"[..]));
}

/// Guard: `close` while one chain drains thirty slow writes (20 ms each, one slot) waits for
/// every one: all thirty are on disk after it, each written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_close_waits_for_a_whole_chain() {
    let mut cache = write_behind(1).await;
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(20)))
            .ops(&[FsOp::WriteNew])
            .path_contains("/v2/"),
    );
    let ks: Vec<String> = (0..30).map(|i| format!("z{i}")).collect();
    for k in &ks {
        cache.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    let closed = tokio::time::timeout(PATIENCE, cache.close()).await.unwrap();
    assert!(closed.is_ok(), "{closed:?}");
    let s = cache.stats();
    assert_eq!(
        (
            s.writes_ok,
            s.writes_failed,
            s.lost_writes,
            s.write_queue_depth
        ),
        (30, 0, 0, 0),
        "{s:?}"
    );
    for k in &ks {
        assert!(cache.on_disk(k), "{k}");
    }
    cache.reopen_after_close().await;
    serves_own_names(&cache, &ks).await;
}

/// Guard: many write-through callers on two slots (the writer task's slot-then-job order,
/// callers' own claims and chains all competing): every set is Ok and written exactly once,
/// nothing is left queued or in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_many_write_through_callers_on_two_slots_all_land_once() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_secs(10))
                .write_concurrency(2)
                .durability(Durability::NoSync)
                .compress_in_background(false)
        })
        .await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = cache.cache.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let k = format!("t{t}-{i}");
                c.set_bytes(&k, k.as_bytes()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
    }
    let s = cache.stats();
    assert_eq!(
        (
            s.writes_ok,
            s.writes_failed,
            s.write_queue_depth,
            s.dirty_entries
        ),
        (200, 0, 0, 0),
        "{s:?}"
    );
    cache.reopen().await;
    for t in 0..8 {
        for i in 0..25 {
            let k = format!("t{t}-{i}");
            assert_eq!(value_of(&cache, &k).await.as_deref(), Some(k.as_bytes()));
        }
    }
}

fn big(seed: u64) -> Vec<u8> {
    markdown(&mut Rng::new(seed), 64 << 10).into_bytes()
}

async fn compacting(io_timeout: Duration) -> TestCache {
    dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(io_timeout)
                .write_concurrency(2)
                .failure_threshold(100)
                .durability(Durability::NoSync)
        })
        .await
}

/// Guard: an entry write hung for good (past `io_timeout`, never returning) keeps the
/// compactor's in-flight count up, but the backlog is still worked off at about one entry per
/// 21 idle waits (1.05 s): none is compacted in the first half second, all three within ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_the_compactor_works_off_its_backlog_beside_a_write_hung_for_good() {
    let cache = compacting(IO_TIMEOUT).await;
    hang_one_entry_write(&cache);
    let hung = cache.set_bytes("hung", big(1)).await;
    assert!(not_persisted(&hung, 1), "{hung:?}");
    for i in 0..3 {
        cache.set_bytes(format!("s{i}"), big(10 + i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = cache.stats();
    assert_eq!(
        (s.warm_compactions, s.warm_compaction_backlog),
        (0, 3),
        "{s:?}"
    );
    let c = cache.cache.clone();
    assert!(
        wait_until(Duration::from_secs(10), || c.stats().warm_compactions == 3).await,
        "{:?}",
        cache.stats()
    );
    release(&cache);
    let c = cache.cache.clone();
    assert!(
        wait_until(PATIENCE, || {
            let s = c.stats();
            (s.writes_ok, s.warm_compactions, s.warm_compaction_backlog) == (4, 4, 0)
        })
        .await,
        "{:?}",
        cache.stats()
    );
    cache.close().await.unwrap();
}

/// Guard: an entry write that failed (EIO) ended its in-flight guard: the next stored entry
/// is compacted after one idle wait, not after the 1.05 s a leaked guard would cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_a_failed_write_leaves_no_write_in_flight_for_the_compactor() {
    let cache = compacting(Duration::from_secs(10)).await;
    cache.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::WriteNew])
            .path_contains("/v2/")
            .times(1),
    );
    let failed = cache.set_bytes("failed", big(1)).await;
    assert!(not_persisted(&failed, 1), "{failed:?}");
    cache.set_bytes("stored", big(2)).await.unwrap();
    let c = cache.cache.clone();
    assert!(
        wait_until(Duration::from_millis(600), || c.stats().warm_compactions
            == 1)
        .await,
        "{:?}",
        cache.stats()
    );
    let s = cache.stats();
    assert_eq!(
        (s.writes_ok, s.writes_failed, s.warm_compaction_backlog),
        (1, 1, 0),
        "{s:?}"
    );
    cache.close().await.unwrap();
}

/// Guard: a pressing backlog (the stored entries waiting take more than an eighth of a 1 MiB
/// warm budget) is compacted beside a write hung for good without the 1.05 s put-off, until
/// it no longer presses: within half a second two of the three entries are compacted, the
/// third (one entry, no longer pressing) waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r35_a_pressing_backlog_is_compacted_beside_a_write_hung_for_good() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(IO_TIMEOUT)
                .write_concurrency(2)
                .failure_threshold(100)
                .durability(Durability::NoSync)
                .warm_capacity_bytes(1 << 20)
        })
        .await;
    hang_one_entry_write(&cache);
    let hung = cache.set_bytes("hung", b"small".to_vec()).await;
    assert!(not_persisted(&hung, 1), "{hung:?}");
    for i in 0..3 {
        cache.set_bytes(format!("p{i}"), big(20 + i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = cache.stats();
    assert_eq!(
        (s.warm_compactions, s.warm_compaction_backlog),
        (2, 1),
        "{s:?}"
    );
    release(&cache);
    let c = cache.cache.clone();
    assert!(
        wait_until(PATIENCE, || {
            let s = c.stats();
            (s.writes_ok, s.warm_compactions, s.warm_compaction_backlog) == (4, 3, 0)
        })
        .await,
        "{:?}",
        cache.stats()
    );
    cache.close().await.unwrap();
}
