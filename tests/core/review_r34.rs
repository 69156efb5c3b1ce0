//! Review r34 of "a write-through caller's job starts on the blocking pool and completes
//! there" (1486f99, 2633310, efe875a, 941c64b): adversarial tests of the direct jobs
//! (`Writer::start_direct`, `RunDirect`, the watchdog) against the breaker's half-open trial,
//! `clear`, restarts, concurrency and power loss. Findings: `REVIEW_R34_FINDINGS.md`.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{wait_until, CrashFs, Fault, FsOp, Rule};
use answercache::{BreakerState, Durability, Error, WritePolicy};

use crate::support::*;

fn not_persisted<T: std::fmt::Debug>(r: &answercache::Result<T>) -> bool {
    matches!(r, Err(Error::NotPersisted { failed: 1, .. }))
}

async fn value_of(cache: &TestCache, key: &str) -> Option<Vec<u8>> {
    cache.get_bytes(key).await.unwrap().map(|v| v.to_vec())
}

/// Guard: a half-open breaker's one trial (`half_open_max(1)`) is taken by a caller-run
/// write that hangs past io_timeout: the watchdog's timeout reopens the breaker (a second
/// open), a set racing the trial is refused, not run; once the disk answers and the breaker
/// closes again every key's newest value lands, also after a restart. Counters exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r34_a_hung_half_open_trial_reopens_and_the_newest_values_all_land() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
                .write_concurrency(2)
                .failure_threshold(1)
                .open_timeout(Duration::from_millis(200))
                .half_open_max(1)
                .max_open_timeout(Duration::from_millis(200))
                .memory_only_after(100)
        })
        .await;
    hang_entry_writes(&cache);
    let a1 = cache.set_bytes("a", b"a1".to_vec()).await;
    assert!(not_persisted(&a1), "{a1:?}");
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    // Refused while open: not run, not a failure.
    let b1 = cache.set_bytes("b", b"b1".to_vec()).await;
    assert!(not_persisted(&b1), "{b1:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The trial: hangs too. A set of another key racing it is refused (one trial only).
    let c = cache.cache.clone();
    let trial = tokio::spawn(async move { c.set_bytes("c", b"c1".to_vec()).await });
    let fs = cache.fs().clone();
    assert!(wait_until(PATIENCE, || fs.calls(FsOp::WriteNew) == 2).await);
    let d1 = cache.set_bytes("d", b"d1".to_vec()).await;
    assert!(not_persisted(&d1), "{d1:?}");
    let trial = tokio::time::timeout(PATIENCE, trial)
        .await
        .unwrap()
        .unwrap();
    assert!(not_persisted(&trial), "{trial:?}");
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    // A newer value of the hung key "a": queued behind the hung write.
    let a2 = cache.set_bytes("a", b"a2".to_vec()).await;
    assert!(not_persisted(&a2), "{a2:?}");
    let s = cache.stats();
    assert_eq!(
        (s.breaker_opens, s.disk_errors, s.writes_ok, s.writes_failed),
        (2, 2, 0, 0),
        "{s:?}"
    );
    release(&cache);
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 2).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e1 = cache.set_bytes("e", b"e1".to_vec()).await;
    assert!(e1.is_ok(), "{e1:?}");
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    let s = cache.stats();
    assert_eq!(
        (
            s.breaker_opens,
            s.disk_errors,
            s.writes_ok,
            s.writes_failed,
            s.lost_writes,
            s.task_panics
        ),
        (2, 2, 6, 0, 0, 0),
        "{s:?}"
    );
    cache.reopen().await;
    for (k, v) in [
        ("a", "a2"),
        ("b", "b1"),
        ("c", "c1"),
        ("d", "d1"),
        ("e", "e1"),
    ] {
        assert_eq!(
            value_of(&cache, k).await.as_deref(),
            Some(v.as_bytes()),
            "{k}"
        );
    }
}

/// Guard: a caller-run write hung past io_timeout, then a `clear`, then the write lands
/// late: it must not survive the clear (on disk, in memory, after a restart), while a set of
/// the same key and of another key made after the clear began survives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r34_a_late_landing_write_never_survives_a_clear_but_later_sets_do() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
                .write_concurrency(2)
                .failure_threshold(100)
                .memory_only_after(100)
        })
        .await;
    cache.set_bytes("k", b"old".to_vec()).await.unwrap();
    cache.set_bytes("gone", b"g".to_vec()).await.unwrap();
    hang_one_entry_write(&cache);
    let hung = cache.set_bytes("k", b"hung".to_vec()).await;
    assert!(not_persisted(&hung), "{hung:?}");
    let cleared = tokio::time::timeout(PATIENCE, cache.clear()).await;
    assert!(matches!(cleared, Ok(Ok(()))), "{cleared:?}");
    assert!(!cache.on_disk("gone"));
    assert_eq!(value_of(&cache, "k").await, None);
    cache.set_bytes("n", b"new".to_vec()).await.unwrap();
    // Behind the hung write of "k": not written yet.
    let after = cache.set_bytes("k", b"after".to_vec()).await;
    assert!(not_persisted(&after), "{after:?}");
    cache.fs().release_hangs();
    let c = cache.cache.clone();
    assert!(
        wait_until(PATIENCE, || c.stats().writes_ok == 5).await,
        "{:?}",
        c.stats()
    );
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    assert_eq!(value_of(&cache, "k").await.as_deref(), Some(&b"after"[..]));
    assert_eq!(value_of(&cache, "n").await.as_deref(), Some(&b"new"[..]));
    cache.reopen().await;
    assert_eq!(value_of(&cache, "k").await.as_deref(), Some(&b"after"[..]));
    assert_eq!(value_of(&cache, "n").await.as_deref(), Some(&b"new"[..]));
    assert_eq!(value_of(&cache, "gone").await, None);
}

/// Guard: the same, with nothing set after the clear: the late write of "k" made before
/// the clear is deleted from disk and stays absent after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r34_a_write_made_before_a_clear_that_lands_after_it_is_gone_after_restart() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_millis(300))
                .write_concurrency(1)
                .failure_threshold(100)
                .memory_only_after(100)
        })
        .await;
    hang_one_entry_write(&cache);
    let hung = cache.set_bytes("k", b"hung".to_vec()).await;
    assert!(not_persisted(&hung), "{hung:?}");
    let cleared = tokio::time::timeout(PATIENCE, cache.clear()).await;
    assert!(matches!(cleared, Ok(Ok(()))), "{cleared:?}");
    cache.fs().release_hangs();
    let c = cache.cache.clone();
    assert!(wait_until(PATIENCE, || c.stats().writes_ok == 1).await);
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    assert!(!cache.on_disk("k"));
    assert_eq!(value_of(&cache, "k").await, None);
    cache.reopen().await;
    assert_eq!(value_of(&cache, "k").await, None);
}

/// Guard: clears racing a stream of caller-run sets on a slow disk (every entry write
/// delayed): after each clear returns, no value set before it is served, and once all is
/// flushed a restart serves exactly the values set after the last clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r34_clears_racing_caller_run_sets_keep_exactly_the_later_values() {
    for concurrency in [1, 2] {
        let mut cache = dir()
            .fault_fs()
            .open_cache(|b| {
                b.write_policy(WritePolicy::WriteThrough)
                    .io_timeout(Duration::from_secs(10))
                    .write_concurrency(concurrency)
            })
            .await;
        cache.fs().add_rule(
            Rule::new(Fault::Delay(Duration::from_millis(3)))
                .ops(&[FsOp::WriteNew])
                .path_contains("v2"),
        );
        let cache_arc = cache.cache.clone();
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let c = cache_arc.clone();
                tokio::spawn(async move {
                    for i in 0..15 {
                        c.set_bytes(format!("t{t}k{}", i % 5), format!("pre{i}").into_bytes())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::time::timeout(PATIENCE, cache.clear())
            .await
            .unwrap()
            .unwrap();
        for w in writers {
            w.await.unwrap();
        }
        tokio::time::timeout(PATIENCE, cache.clear())
            .await
            .unwrap()
            .unwrap();
        for t in 0..4 {
            for k in 0..5 {
                assert_eq!(value_of(&cache, &format!("t{t}k{k}")).await, None);
            }
        }
        for t in 0..4 {
            cache
                .set_bytes(format!("t{t}k0"), b"post".to_vec())
                .await
                .unwrap();
        }
        cache.fs().clear_rules();
        tokio::time::timeout(PATIENCE, cache.flush())
            .await
            .unwrap()
            .unwrap();
        cache.reopen().await;
        for t in 0..4 {
            for k in 0..5 {
                let want = (k == 0).then(|| b"post".to_vec());
                assert_eq!(
                    value_of(&cache, &format!("t{t}k{k}")).await,
                    want,
                    "concurrency {concurrency} t{t}k{k}"
                );
            }
        }
    }
}

/// Guard: concurrent write-through sets and removes of the same keys with
/// `write_concurrency` 1 and 2 on a slow disk, then one last operation per key: Ok from
/// flush means every key's last value (or absence) is on disk, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r34_the_newest_value_wins_on_disk_under_contention() {
    for concurrency in [1, 2] {
        let mut cache = dir()
            .fault_fs()
            .open_cache(|b| {
                b.write_policy(WritePolicy::WriteThrough)
                    .io_timeout(Duration::from_secs(10))
                    .write_concurrency(concurrency)
            })
            .await;
        cache.fs().add_rule(
            Rule::new(Fault::Delay(Duration::from_millis(2)))
                .ops(&[FsOp::WriteNew])
                .path_contains("v2"),
        );
        let c = cache.cache.clone();
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                tokio::spawn(async move {
                    for i in 0..20u32 {
                        let k = format!("k{}", (i + t) % 6);
                        if i % 7 == 3 {
                            c.remove(&k).await.unwrap();
                        } else {
                            c.set_bytes(&k, format!("t{t}i{i}").into_bytes())
                                .await
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // The last operation of each key, all at once.
        let last: Vec<_> = (0..6)
            .map(|k| {
                let c = c.clone();
                tokio::spawn(async move {
                    let key = format!("k{k}");
                    if k == 5 {
                        c.remove(&key).await.map(|_| ())
                    } else {
                        c.set_bytes(&key, format!("last{k}").into_bytes()).await
                    }
                })
            })
            .collect();
        for l in last {
            l.await.unwrap().unwrap();
        }
        tokio::time::timeout(PATIENCE, cache.flush())
            .await
            .unwrap()
            .unwrap();
        let s = cache.stats();
        assert_eq!((s.writes_failed, s.lost_writes), (0, 0), "{s:?}");
        cache.fs().clear_rules();
        cache.reopen().await;
        for k in 0..6 {
            let want = (k != 5).then(|| format!("last{k}").into_bytes());
            assert_eq!(
                value_of(&cache, &format!("k{k}")).await,
                want,
                "concurrency {concurrency} k{k}"
            );
        }
    }
}

/// Guard: a caller-run write-through set (and remove) that returned Ok survives a power cut
/// (`CrashFs`: the durable image only): the direct path fsyncs the file and its directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r34_an_acknowledged_caller_run_write_survives_a_power_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let fs = Arc::new(CrashFs::new(&root).unwrap());
    let cache = answercache::testing::builder(fs.root())
        .fs(fs.clone())
        .write_policy(WritePolicy::WriteThrough)
        .durability(Durability::Fsync)
        .write_concurrency(2)
        .build()
        .await
        .unwrap();
    let big = answercache::workload::markdown(&mut answercache::workload::Rng::new(7), 40_000);
    cache.set_bytes("pre", b"pre".to_vec()).await.unwrap();
    let (a, b, big_set) = tokio::join!(
        cache.set_bytes("a", b"a1".to_vec()),
        cache.set_bytes("b", b"b1".to_vec()),
        cache.set_bytes("big", big.as_bytes().to_vec())
    );
    a.unwrap();
    b.unwrap();
    big_set.unwrap();
    assert!(cache.remove("pre").await.unwrap());
    let image = tmp.path().join("image");
    fs.crash(&image).unwrap();
    drop(cache);
    let cache = answercache::testing::builder(&image).build().await.unwrap();
    assert_eq!(
        cache.get_bytes("a").await.unwrap().as_deref(),
        Some(&b"a1"[..])
    );
    assert_eq!(
        cache.get_bytes("b").await.unwrap().as_deref(),
        Some(&b"b1"[..])
    );
    assert_eq!(
        cache.get_bytes("big").await.unwrap().as_deref(),
        Some(big.as_bytes())
    );
    assert_eq!(cache.get_bytes("pre").await.unwrap(), None);
}

/// Guard: two caller-run writes fail (EIO) at once and switch the cache to memory-only
/// (`memory_only_after(2)`) while a third is in flight; sets made meanwhile are
/// NotPersisted and served from memory; once the disk is well the health check recovers and
/// writes every dirty entry back: each key's newest value is on disk after a restart, and
/// the counters are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r34_memory_only_with_caller_run_writes_in_flight_then_recovery_writes_back() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .io_timeout(Duration::from_secs(10))
                .write_concurrency(3)
                .failure_threshold(100)
                .memory_only_after(2)
                .recovery_interval(Duration::from_millis(100))
        })
        .await;
    cache.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::WriteNew])
            .path_contains("v2")
            .times(2),
    );
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(200)))
            .ops(&[FsOp::WriteNew])
            .path_contains("v2"),
    );
    let (a, b) = tokio::join!(
        cache.set_bytes("a", b"a1".to_vec()),
        cache.set_bytes("b", b"b1".to_vec())
    );
    assert!(not_persisted(&a), "{a:?}");
    assert!(not_persisted(&b), "{b:?}");
    let c = cache.cache.clone();
    // Memory-only: refused at once.
    let (a2, c1) = tokio::join!(
        cache.set_bytes("a", b"a2".to_vec()),
        cache.set_bytes("c", b"c1".to_vec())
    );
    assert!(not_persisted(&a2), "{a2:?}");
    assert!(not_persisted(&c1), "{c1:?}");
    assert_eq!(value_of(&cache, "a").await.as_deref(), Some(&b"a2"[..]));
    let s = cache.stats();
    assert_eq!(
        (
            s.writes_failed,
            s.writes_ok,
            s.lost_writes,
            s.memory_only_entries
        ),
        (2, 0, 0, 1),
        "{s:?}"
    );
    cache.fs().clear_rules();
    assert!(
        wait_until(PATIENCE, || c.stats().writes_ok == 3).await,
        "{:?}",
        c.stats()
    );
    let flushed = tokio::time::timeout(PATIENCE, cache.flush()).await;
    assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
    let s = cache.stats();
    assert_eq!(
        (
            s.writes_failed,
            s.writes_ok,
            s.lost_writes,
            s.memory_only_entries
        ),
        (2, 3, 0, 1),
        "{s:?}"
    );
    cache.reopen().await;
    for (k, v) in [("a", "a2"), ("b", "b1"), ("c", "c1")] {
        assert_eq!(
            value_of(&cache, k).await.as_deref(),
            Some(v.as_bytes()),
            "{k}"
        );
    }
}
