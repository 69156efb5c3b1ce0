//! Promise 3: a write-through `set` returns Ok only once its entry is durable; waiting in the
//! queue is backpressure, never a timeout; otherwise Err(NotPersisted), and the value is still
//! served from memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::Error;

use crate::helpers::*;

/// A write whose disk call hangs: the `set` must come back (NotPersisted) after about
/// `io_timeout`, the value is served from memory; a newer set of the same key queued behind
/// the hung write also comes back at once; when the disk answers again, the newest value
/// lands (never the older one last), flush is Ok, and a restart shows the newest value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_write_through_returns_not_persisted_and_the_newest_value_lands_last() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = write_through(builder(&root, &clock))
        .fs(fs.clone())
        // Long enough that a healthy write on a loaded CI machine never reaches it.
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
    let t = Instant::now();
    let r1 = tokio::time::timeout(Duration::from_secs(5), cache.set_bytes("k", b"v1".to_vec()))
        .await
        .expect("promise 3/6: a write-through set hung on a hung disk call");
    assert!(
        matches!(r1, Err(Error::NotPersisted { .. })),
        "promise 3: a hung write acknowledged: {r1:?} after {:?}",
        t.elapsed()
    );
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    let r2 = tokio::time::timeout(Duration::from_secs(5), cache.set_bytes("k", b"v2".to_vec()))
        .await
        .expect("promise 3/6: a set queued behind a hung write hung");
    assert!(
        matches!(r2, Err(Error::NotPersisted { .. })),
        "promise 3: a set queued behind a hung write acknowledged: {r2:?}"
    );
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    // Other keys are not held up by the hung one.
    let r3 = tokio::time::timeout(
        Duration::from_secs(5),
        cache.set_bytes("other", b"o".to_vec()),
    )
    .await
    .expect("a set of another key hung");
    assert!(
        r3.is_ok(),
        "promise 3: a healthy write of another key failed: {r3:?}"
    );
    fs.release_hangs();
    settle(&cache, Duration::from_secs(5))
        .await
        .expect("flush after the disk answered");
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    cache.close().await.expect("close");
    let got = read_after_restart(&root, &clock, b"k").await;
    assert_eq!(
        got.as_deref(),
        Some(&b"v2"[..]),
        "the older hung write landed last"
    );
}

/// Waiting for room in a tiny write queue behind slow (not failing) disk calls is
/// backpressure: every write-through set on a healthy, slow disk must return Ok, however long
/// it waited, even when the wait is many times `io_timeout`. Each disk write takes 100 ms (ten
/// times under `io_timeout`, so a loaded CI machine cannot push a single call past it); 24 of
/// them one at a time make the last set wait at least 2.3 s, over twice `io_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_in_the_queue_is_never_a_timeout() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    fs.add_rule(Rule::new(Fault::Delay(Duration::from_millis(100))).ops(&[FsOp::WriteNew]));
    let cache = write_through(builder(&root, &clock))
        .fs(fs.clone())
        .io_timeout(Duration::from_secs(1))
        .write_queue_bytes(1)
        .write_concurrency(1)
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    let mut hs = Vec::new();
    for t in 0..12 {
        let c = cache.clone();
        hs.push(tokio::spawn(async move {
            let mut errs = Vec::new();
            for i in 0..2 {
                let k = format!("t{t}k{i}");
                if let Err(e) = c.set_bytes(&k, value_for(k.as_bytes(), 1, 500)).await {
                    errs.push(format!("{k}: {e}"));
                }
            }
            errs
        }));
    }
    let mut errs = Vec::new();
    for h in hs {
        errs.extend(h.await.unwrap());
    }
    let waited = start.elapsed();
    assert!(
        errs.is_empty(),
        "promise 3: write-through sets failed on a healthy slow disk (queue wait {waited:?}, \
         io_timeout 1 s): {errs:?}"
    );
    assert!(
        waited >= Duration::from_millis(2400),
        "control: no queueing happened ({waited:?})"
    );
    cache.close().await.unwrap();
    let c = fresh(&root, &clock).await;
    for t in 0..12 {
        for i in 0..2 {
            let k = format!("t{t}k{i}");
            let got = c.get_bytes(&k).await.unwrap();
            assert_eq!(got.as_deref(), Some(&value_for(k.as_bytes(), 1, 500)[..]));
        }
    }
    c.close().await.unwrap();
}

/// Write-through on a disk that fails the directory fsync after the rename: the file is in
/// place but not durable; the set must not be acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_is_not_acknowledged_when_the_dir_fsync_fails() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = write_through(builder(&root, &clock))
        .fs(fs.clone())
        .failure_threshold(100)
        .memory_only_after(1000)
        .build()
        .await
        .unwrap();
    cache.set_bytes("warm-up", b"w".to_vec()).await.unwrap();
    for (what, op) in [
        ("file fsync", FsOp::SyncFile),
        ("dir fsync", FsOp::SyncDir),
        ("rename", FsOp::Rename),
    ] {
        fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&[op]).times(1));
        let r = cache.set_bytes(format!("k-{what}"), b"v".to_vec()).await;
        assert!(
            matches!(r, Err(Error::NotPersisted { .. })),
            "promise 3: write-through set acknowledged although its {what} failed: {r:?}"
        );
        assert_eq!(
            cache
                .get_bytes(format!("k-{what}"))
                .await
                .unwrap()
                .as_deref(),
            Some(&b"v"[..]),
            "the value must still be served from memory"
        );
    }
    settle(&cache, Duration::from_secs(5))
        .await
        .expect("write-back after the faults");
    cache.close().await.unwrap();
}

/// A write-through `remove` that fails must be NotPersisted and the key must read as removed
/// in process; after healing, the remove lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_remove_failure_is_reported() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let cache = write_through(builder(&root, &clock))
        .fs(fs.clone())
        .failure_threshold(100)
        .memory_only_after(1000)
        .build()
        .await
        .unwrap();
    cache.set_bytes("k", b"v".to_vec()).await.unwrap();
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .times(1),
    );
    let r = cache.remove("k").await;
    assert!(
        matches!(r, Err(Error::NotPersisted { .. })),
        "promise 3: write-through remove acknowledged although the unlink failed: {r:?}"
    );
    assert_eq!(cache.get_bytes("k").await.unwrap(), None);
    settle(&cache, Duration::from_secs(5)).await.expect("flush");
    cache.close().await.unwrap();
    assert_eq!(read_after_restart(&root, &clock, b"k").await, None);
}
