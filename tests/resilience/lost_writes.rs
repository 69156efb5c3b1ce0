//! Lost writes and what they may never bring back (issue 11, bug 1). A value set (or a key
//! removed) during an outage can be lost from memory before the disk is back: the hot tier
//! evicts it while it is dirty. Its key's *older* file is still on disk. The cache must never
//! serve that file again: not in this process, and not after a `close` that returned Ok and a
//! reopen. Recovery deletes such files before it reports the write-back done; `close` reports
//! any it could not delete.

use std::time::Duration;

use tiercache::testing::FsOp;
use tiercache::{Error, Mode, WritePolicy};

use crate::support::*;

const EVERY_OP: [FsOp; 11] = FsOp::ALL;

fn builder(t: &TestCache) -> tiercache::Builder {
    t.builder()
        .write_policy(WritePolicy::WriteBehind)
        .failure_threshold(1)
        .memory_only_after(1)
        .recovery_interval(Duration::from_secs(10))
        .hot_capacity_entries(50)
}

/// Sets `k` = "v1" and removes `gone` (both on disk), then, during an outage, sets `k` =
/// "v2", removes `gone`'s tombstone by setting it again then removing it, and pushes both out
/// of the hot tier with 200 other keys.
async fn lose_the_newest_of_k_and_gone(t: &TestCache, cache: &tiercache::TieredCache) {
    cache.set("k", &"v1").await.unwrap();
    cache.set("gone", &"old").await.unwrap();
    cache.flush().await.unwrap();
    t.fail(&EVERY_OP, EIO);
    // The first write fails: memory-only from then on.
    let _ = cache.set("trigger", &0).await;
    let _ = cache.flush().await;
    spin_until(|| cache.mode() == Mode::MemoryOnly).await;
    cache.set("k", &"v2").await.unwrap();
    cache.remove("gone").await.unwrap();
    for i in 0..200 {
        cache.set(format!("filler{i}"), &i).await.unwrap();
    }
    let s = cache.stats();
    assert_eq!(s.hot_entries, 100, "the doubled budget is full");
    assert!(s.lost_writes >= 2, "{s:?}");
    // Lost from memory, and the older files are never served in this process.
    assert_eq!(cache.get::<String>("k").await.unwrap(), None);
    assert_eq!(cache.get::<String>("gone").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn after_recovery_and_a_clean_close_neither_the_old_value_nor_the_removed_key_returns() {
    let t = TestCache::new();
    let cache = t.open(builder(&t)).await;
    lose_the_newest_of_k_and_gone(&t, &cache).await;
    t.fs.clear_rules();
    tokio::time::sleep(Duration::from_secs(11)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    cache.close().await.unwrap();
    let reopened = t.open(builder(&t)).await;
    assert_eq!(reopened.get::<String>("k").await.unwrap(), None);
    assert_eq!(reopened.get::<String>("gone").await.unwrap(), None);
    assert_eq!(reopened.stats().stale_keys_pending, 0);
}

#[tokio::test(start_paused = true)]
async fn close_during_the_outage_reports_the_stale_files_it_could_not_delete() {
    let t = TestCache::new();
    let cache = t.open(builder(&t)).await;
    lose_the_newest_of_k_and_gone(&t, &cache).await;
    let stale = cache.stats().stale_keys_pending;
    assert!(stale >= 2, "{stale}");
    match cache.close().await {
        Err(Error::NotPersisted { failed, .. }) => assert!(failed >= stale, "{failed} < {stale}"),
        other => panic!("close must report the stale files, got {other:?}"),
    }
}
