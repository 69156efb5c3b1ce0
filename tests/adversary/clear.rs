//! Promise 5: `clear()` Ok means nothing set before it ever comes back, even after a restart;
//! a clear whose fence (`<root>/fence`) could not be written is reported by clear, flush and
//! close.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::{Error, Mode};

use crate::helpers::*;

async fn populate(cache: &answercache::TieredCache, n: usize, tag: &str) {
    for i in 0..n {
        cache
            .set_bytes(format!("k{i}"), format!("{tag}{i}").into_bytes())
            .await
            .unwrap();
    }
}

/// The fence write fails (EIO on its rename); clear, flush and close must all say so. A later
/// flush on a healed disk records it; then close is Ok and nothing from before comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_whose_fence_fails_is_reported_until_it_is_recorded() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let b = builder(&root, &clock)
        .fs(fs.clone())
        .failure_threshold(100)
        .memory_only_after(1000);
    let cache = b.clone().build().await.unwrap();
    populate(&cache, 10, "old").await;
    cache.flush().await.unwrap();
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::Rename, FsOp::WriteNew])
            .path_contains("fence"),
    );
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::WriteNew])
            .path_contains("probe"),
    );
    clock.advance(Duration::from_millis(2));
    let cleared = cache.clear().await;
    assert!(
        matches!(cleared, Err(Error::NotPersisted { .. })),
        "promise 5: clear Ok although its fence could not be written: {cleared:?}"
    );
    for i in 0..10 {
        assert_eq!(cache.get_bytes(format!("k{i}")).await.unwrap(), None);
    }
    cache.set_bytes("new", b"after".to_vec()).await.unwrap();
    let f = cache.flush().await;
    assert!(
        matches!(f, Err(Error::NotPersisted { .. })),
        "promise 5: flush Ok while the clear's fence is not on disk: {f:?}"
    );
    fs.clear_rules();
    cache
        .flush()
        .await
        .expect("flush on a healed disk records the fence");
    cache.close().await.expect("close after the fence landed");
    let c = fresh(&root, &clock).await;
    for i in 0..10 {
        assert_eq!(
            c.get_bytes(format!("k{i}")).await.unwrap(),
            None,
            "promise 5: k{i} back after restart"
        );
    }
    assert_eq!(
        c.get_bytes("new").await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
    c.close().await.unwrap();
}

/// The fence write fails and never heals: close must report it (and what a restart then
/// shows is allowed to include old entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_whose_fence_never_lands_is_reported_by_close() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = builder(&root, &clock)
        .fs(fs.clone())
        .failure_threshold(100)
        .memory_only_after(1000)
        .build()
        .await
        .unwrap();
    populate(&cache, 5, "old").await;
    cache.flush().await.unwrap();
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::Rename])
            .path_contains("fence"),
    );
    let _ = cache.clear().await;
    let closed = cache.close().await;
    assert!(
        matches!(closed, Err(Error::NotPersisted { .. })),
        "promise 5: close Ok although the clear's fence never reached the disk: {closed:?}"
    );
}

/// Clear during an outage (memory-only): Err. The disk comes back; recovery records the fence;
/// close Ok; after a restart nothing from before the clear is back, and what was set after
/// it (during the outage) is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_during_an_outage_then_recovery_then_restart() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = builder(&root, &clock)
        .fs(fs.clone())
        .failure_threshold(1)
        .memory_only_after(1)
        .open_timeout(Duration::from_millis(10))
        .recovery_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    populate(&cache, 10, "old").await;
    cache.flush().await.unwrap();
    fs.add_rule(Rule::new(Fault::Errno(EIO)));
    let _ = cache.set_bytes("trigger", b"t".to_vec()).await;
    let _ = cache.flush().await;
    assert!(wait_until(Duration::from_secs(5), || cache.mode() == Mode::MemoryOnly).await);
    clock.advance(Duration::from_millis(2));
    let cleared = cache.clear().await;
    assert!(cleared.is_err(), "clear Ok while memory-only: {cleared:?}");
    cache.set_bytes("k3", b"new3".to_vec()).await.unwrap();
    for i in 0..10 {
        let got = cache.get_bytes(format!("k{i}")).await.unwrap();
        let want: Option<&[u8]> = if i == 3 { Some(b"new3") } else { None };
        assert_eq!(got.as_deref(), want, "promise 5 in process: k{i}");
    }
    fs.clear_rules();
    settle(&cache, Duration::from_secs(5))
        .await
        .expect("flush after recovery");
    cache.close().await.expect("close after recovery");
    let c = fresh(&root, &clock).await;
    for i in 0..10 {
        let got = c.get_bytes(format!("k{i}")).await.unwrap();
        let want: Option<&[u8]> = if i == 3 { Some(b"new3") } else { None };
        assert_eq!(got.as_deref(), want, "promise 5 after restart: k{i}");
    }
    c.close().await.unwrap();
}

/// Clear while the deletion of entry files fails (the fence lands): clear Ok. Restart:
/// nothing from before. Then the same directory is used for a long time: the leftover old
/// files must still never be served, including after the clock moves on and entries are
/// rewritten and removed around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_with_undeletable_files_never_serves_them() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = builder(&root, &clock)
        .fs(fs.clone())
        .failure_threshold(100)
        .memory_only_after(1000)
        .build()
        .await
        .unwrap();
    populate(&cache, 10, "old").await;
    cache.flush().await.unwrap();
    fs.add_rule(Rule::new(Fault::Errno(EACCES)).ops(&[FsOp::RemoveDirAll]));
    clock.advance(Duration::from_millis(1));
    cache.clear().await.expect("the fence landed");
    fs.clear_rules();
    cache.set_bytes("k0", b"new0".to_vec()).await.unwrap();
    cache.remove("k1").await.unwrap();
    cache.close().await.unwrap();
    let files_left = (0..10)
        .filter(|i| entry_path(&root, format!("k{i}")).exists())
        .count();
    assert!(
        files_left >= 8,
        "control: the old files were deleted after all ({files_left})"
    );
    for round in 0..2 {
        clock.advance(Duration::from_secs(3600));
        let c = fresh(&root, &clock).await;
        for i in 0..10 {
            let got = c.get_bytes(format!("k{i}")).await.unwrap();
            let want: Option<&[u8]> = if i == 0 { Some(b"new0") } else { None };
            assert_eq!(got.as_deref(), want, "promise 5, restart {round}: k{i}");
        }
        c.close().await.unwrap();
    }
}

/// A write whose disk call hangs is in flight when `clear` runs; the clear must not wait
/// forever, must win (the write, when it lands, is deleted), also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_racing_a_hung_write_wins_after_restart() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = builder(&root, &clock)
        .fs(fs.clone())
        // Long enough that the clear's own disk calls on a loaded CI machine never reach it.
        .io_timeout(Duration::from_secs(1))
        .failure_threshold(100)
        .memory_only_after(1000)
        .build()
        .await
        .unwrap();
    fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::WriteNew])
            .path_contains(&hex_of(b"k")[..16])
            .times(1),
    );
    cache
        .set_bytes("k", b"before clear".to_vec())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await; // the write timed out
    clock.advance(Duration::from_millis(1));
    let cleared = tokio::time::timeout(Duration::from_secs(5), cache.clear()).await;
    let cleared = cleared.expect("promise 6: clear hung on a hung write");
    assert!(cleared.is_ok(), "{cleared:?}");
    fs.release_hangs();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cache.get_bytes("k").await.unwrap(), None);
    let closed = tokio::time::timeout(Duration::from_secs(5), cache.close())
        .await
        .expect("promise 6: close hung");
    closed.expect("close");
    assert_eq!(
        read_after_restart(&root, &clock, b"k").await,
        None,
        "promise 5: a write made before the clear came back after a restart"
    );
}

/// `clear` while 6 tasks keep setting their keys (slow disk, so writes are in flight and
/// queued at the clear). A value whose `set` returned before the clear began must never be
/// read again (in process or after a restart); each key's last value (set after the clear
/// returned) must be exactly what a restart shows, close being Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_racing_concurrent_sets() {
    use std::sync::atomic::{AtomicU8, Ordering};
    for write_through_policy in [false, true] {
        let (_dir, root, clock) = scenario();
        let fs = Arc::new(FaultFs::std());
        fs.add_rule(
            Rule::new(Fault::Delay(Duration::from_millis(3)))
                .ops(&[FsOp::WriteNew])
                .one_in(2, 9),
        );
        let mut b = builder(&root, &clock)
            .fs(fs.clone())
            .hot_capacity_entries(8)
            .hot_shards(1);
        if write_through_policy {
            b = write_through(b);
        }
        let cache = b.build().await.unwrap();
        // 0: before the clear began, 1: during, 2: after it returned.
        let phase = Arc::new(AtomicU8::new(0));
        let mut hs = Vec::new();
        for t in 0..6u64 {
            let (c, phase) = (cache.clone(), phase.clone());
            hs.push(tokio::spawn(async move {
                let mut pre: Vec<(String, u64)> = Vec::new(); // completed before the clear began
                let mut last: std::collections::HashMap<String, u64> = Default::default();
                let mut bad = Vec::new();
                let mut after_sets = 0;
                let mut seq = t * 1_000_000;
                loop {
                    seq += 1;
                    let k = format!("t{t}k{}", seq % 4);
                    let began = phase.load(Ordering::SeqCst);
                    c.set_bytes(&k, value_for(k.as_bytes(), seq, 500))
                        .await
                        .unwrap();
                    let ended = phase.load(Ordering::SeqCst);
                    if ended == 0 {
                        pre.push((k.clone(), seq));
                    }
                    last.insert(k.clone(), seq);
                    if began == 2 {
                        after_sets += 1;
                    }
                    // Read another of this task's keys: never a value from before the clear
                    // unless it was set again since.
                    let k2 = format!("t{t}k{}", (seq + 1) % 4);
                    if phase.load(Ordering::SeqCst) == 2 {
                        if let Some(v) = c.get_bytes(&k2).await.unwrap() {
                            let s = check_value(k2.as_bytes(), &v).unwrap();
                            if pre.contains(&(k2.clone(), s)) && last.get(&k2) != Some(&s) {
                                bad.push(format!("{k2}: seq {s} from before the clear, after it"));
                            } else if pre.contains(&(k2.clone(), s)) && last.get(&k2) == Some(&s) {
                                // last set completed before the clear: cleared, must be a miss
                                bad.push(format!(
                                    "{k2}: seq {s} set before the clear served after it"
                                ));
                            }
                        }
                    }
                    if after_sets >= 12 || seq % 1_000_000 > 20_000 {
                        return (pre, last, bad);
                    }
                    // A steady, not saturating, load: each task sets a key every ~1 ms.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        clock.advance(Duration::from_millis(1));
        phase.store(1, Ordering::SeqCst);
        let cleared = tokio::time::timeout(Duration::from_secs(5), cache.clear()).await;
        phase.store(2, Ordering::SeqCst);
        let stats = cache.stats();
        let cleared = cleared.unwrap_or_else(|_| {
            panic!(
                "promise 6 (write-through: {write_through_policy}): clear hung (5 s) while \
                 other tasks kept setting keys: {stats:?}"
            )
        });
        cleared.expect("clear on a healthy (slow) disk");
        let mut results = Vec::new();
        for h in hs {
            results.push(h.await.unwrap());
        }
        cache.close().await.expect("close");
        let c = fresh(&root, &clock).await;
        let mut problems = Vec::new();
        for (pre, last, bad) in &results {
            problems.extend(bad.iter().cloned());
            for (k, s) in last {
                let got = c
                    .get_bytes(k)
                    .await
                    .unwrap()
                    .map(|v| check_value(k.as_bytes(), &v).unwrap());
                if got != Some(*s) {
                    problems.push(format!(
                        "{k}: after restart {got:?}, last set {s} (pre-clear: {})",
                        got.is_some_and(|g| pre.contains(&(k.clone(), g)))
                    ));
                }
            }
        }
        c.close().await.unwrap();
        assert!(
            problems.is_empty(),
            "promise 5/1 (write-through: {write_through_policy}): {problems:?}"
        );
    }
}
