//! Promise 1 through outages: values evicted from the hot tier while dirty, removes during an
//! outage, recovery, restart. And the reporting half: flush/close say NotPersisted while a
//! lost key's last value is not on disk, until it is set or removed again.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::{Error, Mode};

use crate::helpers::*;

async fn go_memory_only(cache: &answercache::TieredCache, fs: &FaultFs) {
    fs.add_rule(Rule::new(Fault::Errno(EIO)));
    let _ = cache.set_bytes("trigger", b"t".to_vec()).await;
    let _ = cache.flush().await;
    assert!(
        wait_until(Duration::from_secs(5), || cache.mode() == Mode::MemoryOnly).await,
        "control: the cache never went memory-only: {:?}",
        cache.stats()
    );
}

/// set k=v1 (on disk); outage; set k=v2 and push it out of the hot tier while dirty (lost);
/// the disk comes back. v1 must never be served again: not during the outage, not after
/// recovery, not after a restart. flush/close report k until it is set again; after that,
/// close is Ok and the restart shows the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_lost_in_an_outage_never_brings_the_older_file_back() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let b = sick(builder(&root, &clock), &fs)
        .hot_capacity_entries(2)
        .hot_shards(1);
    let cache = b.clone().build().await.unwrap();
    cache.set_bytes("k", b"v1 older".to_vec()).await.unwrap();
    cache.flush().await.unwrap();
    clock.advance(Duration::from_millis(3));
    go_memory_only(&cache, &fs).await;
    cache.set_bytes("k", b"v2 newest".to_vec()).await.unwrap();
    for i in 0..6 {
        cache
            .set_bytes(format!("filler{i}"), b"f".to_vec())
            .await
            .unwrap();
    }
    assert!(cache.stats().lost_writes >= 1, "control: k was not lost");
    let during = cache.get_bytes("k").await.unwrap();
    assert_eq!(
        during,
        None,
        "promise 1: older value served during the outage: {:?}",
        cache.stats()
    );
    fs.clear_rules();
    assert!(
        wait_until(Duration::from_secs(5), || cache.mode() == Mode::Tiered).await,
        "never recovered"
    );
    let _ = cache.flush().await;
    let after = cache.get_bytes("k").await.unwrap();
    assert_eq!(after, None, "promise 1: older value served after recovery");
    let f1 = cache.flush().await;
    let f2 = cache.flush().await;
    assert!(
        matches!(f1, Err(Error::NotPersisted { .. })) && matches!(f2, Err(Error::NotPersisted { .. })),
        "promise 1: a lost key must be reported by every flush until it is set again: {f1:?} / {f2:?}"
    );
    let closed = cache.close().await;
    assert!(
        matches!(closed, Err(Error::NotPersisted { .. })),
        "close must report the lost key: {closed:?}"
    );
    let restarted = b.clone().build().await.unwrap();
    let got = restarted.get_bytes("k").await.unwrap();
    assert_eq!(got, None, "promise 1: older value served after restart");
    let closed = restarted.close().await;
    // The lost key is not known to the new process: its close is about its own writes.
    assert!(
        closed.is_ok(),
        "a process that set nothing: close {closed:?}"
    );
    let c = b.clone().build().await.unwrap();
    c.set_bytes("k", b"v3".to_vec()).await.unwrap();
    c.close().await.unwrap();
    assert_eq!(
        read_after_restart(&root, &clock, b"k").await.as_deref(),
        Some(&b"v3"[..])
    );
}

/// A remove during an outage whose tombstone is pushed out of the hot tier before the disk
/// comes back: the removed key must never come back (in process, after recovery, after a
/// restart), and the filler values written during the outage must all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_during_an_outage_with_the_tombstone_evicted_stays_removed() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let b = sick(builder(&root, &clock), &fs)
        .hot_capacity_entries(2)
        .hot_shards(1);
    let cache = b.clone().build().await.unwrap();
    cache
        .set_bytes("k", b"removed later".to_vec())
        .await
        .unwrap();
    cache.flush().await.unwrap();
    go_memory_only(&cache, &fs).await;
    cache.remove("k").await.unwrap();
    for i in 0..6 {
        cache
            .set_bytes(format!("filler{i}"), format!("f{i}").into_bytes())
            .await
            .unwrap();
    }
    assert_eq!(cache.get_bytes("k").await.unwrap(), None);
    fs.clear_rules();
    assert!(wait_until(Duration::from_secs(5), || cache.mode() == Mode::Tiered).await);
    let _ = cache.flush().await;
    assert_eq!(
        cache.get_bytes("k").await.unwrap(),
        None,
        "promise 1: removed key served after recovery"
    );
    let closed = cache.close().await;
    let c = fresh(&root, &clock).await;
    let got = c.get_bytes("k").await.unwrap();
    let mut fillers = Vec::new();
    for i in 0..6 {
        fillers.push(c.get_bytes(format!("filler{i}")).await.unwrap());
    }
    c.close().await.unwrap();
    assert_eq!(
        got, None,
        "promise 1: removed key back after restart (close {closed:?})"
    );
    // Fillers evicted while dirty are lost (reported); the ones present must be exact.
    for (i, f) in fillers.iter().enumerate() {
        if let Some(v) = f {
            assert_eq!(&v[..], format!("f{i}").as_bytes());
        }
    }
    if closed.is_ok() {
        assert!(
            fillers.iter().all(Option::is_some),
            "promise 1: close Ok but a filler is missing after restart: {fillers:?}"
        );
    }
}

/// A remove during an outage whose tombstone stays in memory: recovery deletes the file;
/// close is Ok; the key is gone after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_during_an_outage_lands_on_recovery() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = sick(builder(&root, &clock), &fs).build().await.unwrap();
    cache.set_bytes("k", b"v".to_vec()).await.unwrap();
    cache.flush().await.unwrap();
    go_memory_only(&cache, &fs).await;
    assert!(cache.remove("k").await.unwrap());
    let during = cache.flush().await;
    assert!(
        matches!(during, Err(Error::NotPersisted { .. })),
        "promise 2: flush Ok while the remove is not on disk: {during:?}"
    );
    fs.clear_rules();
    settle(&cache, Duration::from_secs(5))
        .await
        .expect("flush after recovery");
    cache.close().await.unwrap();
    assert_eq!(read_after_restart(&root, &clock, b"k").await, None);
}

/// Disk full (ENOSPC) then EROFS then EIO, with a hot tier big enough to keep everything:
/// nothing may be lost; once the disk heals, flush becomes Ok and a restart shows exactly the
/// last value (or absence) of every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_outages_with_room_in_memory_lose_nothing() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let b = sick(builder(&root, &clock), &fs)
        .failure_threshold(2)
        .memory_only_after(4);
    let cache = b.clone().build().await.unwrap();
    let mut model: std::collections::BTreeMap<String, Option<Vec<u8>>> = Default::default();
    let mut rng = Rng::new(42);
    let mut seq = 0;
    for errno in [ENOSPC, EROFS, EIO, EACCES] {
        fs.add_rule(Rule::new(Fault::Errno(errno)).ops(&[
            FsOp::WriteNew,
            FsOp::RemoveFile,
            FsOp::Rename,
            FsOp::SyncDir,
        ]));
        for _ in 0..40 {
            seq += 1;
            let k = format!("k{}", rng.below(12));
            if rng.chance(1.0 / 4.0) {
                cache.remove(&k).await.unwrap();
                model.insert(k, None);
            } else {
                let v = value_for(k.as_bytes(), seq, 50 + rng.below(3000));
                cache.set_bytes(&k, &v).await.unwrap();
                model.insert(k, Some(v));
            }
            clock.advance(Duration::from_millis(1));
        }
        let f = cache.flush().await;
        assert!(
            f.is_err(),
            "promise 2: flush Ok while writes fail with errno {errno}"
        );
        fs.clear_rules();
        settle(&cache, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("after errno {errno}: flush never Ok: {e}"));
    }
    cache.close().await.expect("close after the disk healed");
    let c = fresh(&root, &clock).await;
    for (k, want) in &model {
        let got = c.get_bytes(k).await.unwrap().map(|v| v.to_vec());
        assert_eq!(
            got.as_ref().map(|v| check_value(k.as_bytes(), v)),
            want.as_ref().map(|v| check_value(k.as_bytes(), v)),
            "promise 1: key {k} after restart"
        );
    }
    c.close().await.unwrap();
}

/// Promise 2, deterministically: flush A starts while the breaker is open (so it does not
/// write back the dirty entry k1) and waits for a slow write of k2 that was already in
/// flight. Meanwhile the breaker closes and flush B (a health check's write-back does the
/// same) queues k1 again; that write is slow. When k2 lands, A sees k1 "pending" and returns
/// Ok, although k1, set before A began, is not on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_is_not_ok_while_an_entry_set_before_it_is_not_on_disk() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let h1 = hex_of(b"k1")[..16].to_string();
    let h2 = hex_of(b"k2")[..16].to_string();
    // k2's write: slow (400 ms). k1's first write: EIO; its second: very slow (1.5 s).
    fs.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(400)))
            .ops(&[FsOp::WriteNew])
            .path_contains(h2)
            .times(1),
    );
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::WriteNew])
            .path_contains(h1.clone())
            .times(1),
    );
    fs.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(1500)))
            .ops(&[FsOp::WriteNew])
            .path_contains(h1)
            .times(1),
    );
    let cache = builder(&root, &clock)
        .fs(fs.clone())
        .failure_threshold(1)
        .open_timeout(Duration::from_millis(30))
        .max_open_timeout(Duration::from_millis(30))
        .memory_only_after(1000)
        .health_interval(Duration::MAX)
        .recovery_interval(Duration::MAX)
        .build()
        .await
        .unwrap();
    cache.set_bytes("k2", b"slow".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // k2's write is in flight
    cache
        .set_bytes("k1", b"set before flush A".to_vec())
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || cache.stats().writes_failed >= 1).await,
        "control: k1's first write did not fail"
    );
    let c = cache.clone();
    let flush_a = tokio::spawn(async move { c.flush().await });
    tokio::time::sleep(Duration::from_millis(60)).await; // breaker: open -> half-open
    let _ = cache.get_bytes("absent").await; // a successful disk call closes it
    assert_eq!(
        cache.breaker_state(),
        answercache::BreakerState::Closed,
        "control: the breaker did not close"
    );
    let c = cache.clone();
    let flush_b = tokio::spawn(async move { c.flush().await });
    let a = flush_a.await.unwrap();
    let k1_on_disk = entry_path(&root, "k1").exists();
    let b = flush_b.await.unwrap();
    assert!(
        a.is_err() || k1_on_disk,
        "promise 2: flush A returned Ok but k1, set before it began, was not on disk when it \
         returned (flush B, which re-queued k1, later returned {b:?})"
    );
    cache.close().await.unwrap();
}

/// k = v1 (no TTL) is on disk. The disk fails; k = v2 with a 1 s TTL is set and stays dirty in
/// memory. v2 expires before the disk comes back. The last value set for k is v2, expired:
/// k must be a miss from then on, never v1 (older than v2), in process and after a
/// close that returned Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dirty_value_that_expires_never_uncovers_the_older_file() {
    for memory_only in [false, true] {
        let (_dir, root, clock) = scenario();
        let fs = Arc::new(FaultFs::std());
        let cache = builder(&root, &clock)
            .fs(fs.clone())
            .failure_threshold(1)
            .memory_only_after(if memory_only { 1 } else { 1000 })
            .open_timeout(Duration::from_millis(20))
            .max_open_timeout(Duration::from_millis(20))
            .recovery_interval(Duration::from_millis(20))
            .health_interval(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        cache
            .set_bytes("k", b"v1 older, no ttl".to_vec())
            .await
            .unwrap();
        cache.flush().await.unwrap();
        fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::WriteNew]));
        cache
            .set_bytes_with_ttl("k", b"v2 newest, 1 s".to_vec(), Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(2), || cache.stats().writes_failed >= 1
                || cache.mode() == Mode::MemoryOnly)
            .await,
            "control: the write of v2 did not fail"
        );
        clock.advance(Duration::from_secs(2)); // v2 expires while only in memory
        fs.clear_rules();
        let _ = settle(&cache, Duration::from_secs(3)).await;
        let in_process = cache.get_bytes("k").await.unwrap().map(|v| v.to_vec());
        let closed = cache.close().await;
        let after = read_after_restart(&root, &clock, b"k").await;
        eprintln!(
            "EXPIRY memory_only={memory_only} in_process={} closed={closed:?} after={}",
            short(&in_process),
            short(&after)
        );
        assert!(
            in_process.is_none() && (closed.is_err() || after.is_none()),
            "promise 1 (memory-only: {memory_only}): after v2 expired unwritten, k = {} in \
             process; close = {closed:?}; after restart k = {} (v1 is older than the last \
             value set)",
            short(&in_process),
            short(&after)
        );
    }
}
