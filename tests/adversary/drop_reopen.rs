//! Dropping a cache without `close`, then opening a new one on the same directory: the old
//! handle's queued writes are still written in the background (documented). They must not
//! land over newer values the new instance set and closed with Ok (promise 1).

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};

use crate::helpers::*;

/// The boundary of "the last set wins" across instances (README, RELIABILITY.md): a handle
/// dropped without `close` still writes its queue in the background (the drain contract), and
/// across instances the write that lands last wins. So a queued write of a dropped instance can
/// land over the value a newer instance set and closed with Ok. Found by the adversarial review
/// (issue 11); kept as the exact statement of what happens: call `close` before another
/// instance writes the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_instances_queued_write_lands_last_and_wins() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    // A slow disk for the first instance: its writes take 300 ms.
    fs.add_rule(Rule::new(Fault::Delay(Duration::from_millis(300))).ops(&[FsOp::WriteNew]));
    let old = builder(&root, &clock).fs(fs.clone()).build().await.unwrap();
    old.set_bytes("k", b"v1 (set first)".to_vec())
        .await
        .unwrap();
    drop(old);
    clock.advance(Duration::from_millis(5));
    let new = builder(&root, &clock).build().await.unwrap();
    new.set_bytes("k", b"v2 (set last)".to_vec()).await.unwrap();
    new.close().await.expect("close of the new instance");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = read_after_restart(&root, &clock, b"k").await;
    assert_eq!(
        got.as_deref(),
        Some(&b"v1 (set first)"[..]),
        "the dropped instance's queued write is written, and lands last"
    );
}

/// Dropping the cache (no close) on a healthy disk, then a restart in the same runtime once
/// the background writer had time: every value set is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_cache_still_writes_its_queue() {
    let (_dir, root, clock) = scenario();
    let c = builder(&root, &clock).build().await.unwrap();
    for i in 0..50 {
        c.set_bytes(
            format!("k{i}"),
            value_for(format!("k{i}").as_bytes(), i, 2000),
        )
        .await
        .unwrap();
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = fresh(&root, &clock).await;
    for i in 0..50u64 {
        let k = format!("k{i}");
        let got = r.get_bytes(&k).await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&value_for(k.as_bytes(), i, 2000)[..]),
            "{k} after a drop without close"
        );
    }
    r.close().await.unwrap();
}
