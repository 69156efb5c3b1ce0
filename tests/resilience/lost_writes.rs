//! Lost writes and what they may never bring back (issue 11, bug 1). A value set (or a key
//! removed) during an outage can be lost from memory before the disk is back: the hot tier
//! evicts it while it is dirty. Its key's *older* file is still on disk. The cache must never
//! serve that file again: not in this process, and not after a `close` that returned Ok and a
//! reopen. Recovery deletes such files before it reports the write-back done; `close` reports
//! any it could not delete.

use std::time::Duration;

use answercache::testing::FsOp;
use answercache::{Error, Mode, WritePolicy};

use crate::support::*;

const EVERY_OP: [FsOp; 11] = FsOp::ALL;

fn edit(b: answercache::Builder) -> answercache::Builder {
    b.write_policy(WritePolicy::WriteBehind)
        .failure_threshold(1)
        .memory_only_after(1)
        .recovery_interval(Duration::from_secs(10))
        .hot_capacity_entries(50)
}

/// Sets `k` = "v1" and removes `gone` (both on disk), then, during an outage, sets `k` =
/// "v2", removes `gone`'s tombstone by setting it again then removing it, and pushes both out
/// of the hot tier with 200 other keys.
async fn lose_the_newest_of_k_and_gone(t: &TestDir, cache: &answercache::TieredCache) {
    cache.set("k", &"v1").await.unwrap();
    cache.set("gone", &"old").await.unwrap();
    cache.flush().await.unwrap();
    fail(t, &EVERY_OP, EIO);
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
async fn after_recovery_neither_the_old_value_nor_the_removed_key_returns_after_a_restart() {
    let t = dir();
    let cache = open(&t, edit).await;
    lose_the_newest_of_k_and_gone(&t, &cache).await;
    t.fs().clear_rules();
    tokio::time::sleep(Duration::from_secs(11)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    let s = cache.stats();
    // Recovery deleted the older file of every lost key before reporting the write-back
    // done; their last values are still not on disk, and close says how many.
    assert_eq!(s.stale_keys_pending, 0);
    assert_eq!(s.stale_keys_purged, s.lost_keys);
    assert!(s.lost_keys >= 2, "{s:?}");
    match cache.close().await {
        Err(Error::NotPersisted { failed, .. }) => assert_eq!(failed, s.lost_keys),
        other => panic!("close must report the lost values, got {other:?}"),
    }
    let reopened = open(&t, edit).await;
    assert_eq!(reopened.get::<String>("k").await.unwrap(), None);
    assert_eq!(reopened.get::<String>("gone").await.unwrap(), None);
    // Setting the key again makes it whole: close is Ok.
    reopened.set("k", &"v3").await.unwrap();
    reopened.close().await.unwrap();
    let again = open(&t, edit).await;
    assert_eq!(again.get::<String>("k").await.unwrap(), Some("v3".into()));
}

/// Once every lost key has been set again (or removed) and those writes landed, nothing is
/// missing from the disk: close is Ok, and the reopened cache serves the new values.
#[tokio::test(start_paused = true)]
async fn setting_every_lost_key_again_makes_close_ok() {
    let t = dir();
    let cache = open(&t, edit).await;
    lose_the_newest_of_k_and_gone(&t, &cache).await;
    t.fs().clear_rules();
    tokio::time::sleep(Duration::from_secs(11)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    cache.set("k", &"v3").await.unwrap();
    cache.remove("gone").await.unwrap();
    cache.set("trigger", &1).await.unwrap();
    for i in 0..200 {
        cache.set(format!("filler{i}"), &i).await.unwrap();
    }
    cache.close().await.unwrap();
    let reopened = open(&t, edit).await;
    assert_eq!(
        reopened.get::<String>("k").await.unwrap(),
        Some("v3".into())
    );
    assert_eq!(reopened.get::<String>("gone").await.unwrap(), None);
    assert_eq!(reopened.get::<i32>("filler7").await.unwrap(), Some(7));
}

#[tokio::test(start_paused = true)]
async fn close_during_the_outage_reports_the_stale_files_it_could_not_delete() {
    let t = dir();
    let cache = open(&t, edit).await;
    lose_the_newest_of_k_and_gone(&t, &cache).await;
    let s = cache.stats();
    assert!(s.stale_keys_pending >= 2, "{s:?}");
    assert_eq!(s.stale_keys_pending, s.lost_keys);
    match cache.close().await {
        // Every lost key, and every entry still dirty in memory.
        Err(Error::NotPersisted { failed, .. }) => {
            assert_eq!(failed, s.lost_keys + s.dirty_entries)
        }
        other => panic!("close must report the stale files, got {other:?}"),
    }
}

/// A value that expires before its write reaches the disk leaves the key's older file behind.
/// The newest value expired, so the key is a miss: the older file is never served, `flush`
/// reports it until it is deleted, and a restart does not bring it back. Found by the
/// outage model test (seed 5: `set_with_ttl` during ENOSPC, TTL passed, the older value was
/// served).
#[tokio::test(start_paused = true)]
async fn a_value_that_expires_before_reaching_the_disk_never_uncovers_an_older_one() {
    for read_while_expired in [true, false] {
        let t = dir();
        let cache = open(&t, |b| b.failure_threshold(1_000)).await;
        cache.set("k", &"v1").await.unwrap();
        // Writes and deletes fail: the older file cannot go yet.
        fail(&t, &[FsOp::WriteNew, FsOp::RemoveFile], EIO);
        not_persisted(
            cache
                .set_with_ttl("k", &"v2", Duration::from_millis(23))
                .await,
        );
        tokio::time::advance(Duration::from_millis(24)).await;
        if read_while_expired {
            assert_eq!(cache.get::<String>("k").await.unwrap(), None);
        }
        assert!(
            matches!(
                cache.flush().await,
                Err(Error::NotPersisted { failed: 1, .. })
            ),
            "read_while_expired={read_while_expired}: the older file is still on disk"
        );
        assert_eq!(cache.get::<String>("k").await.unwrap(), None);
        t.fs().clear_rules();
        cache.flush().await.unwrap();
        cache.close().await.unwrap();
        let reopened = open(&t, |b| b).await;
        assert_eq!(
            reopened.get::<String>("k").await.unwrap(),
            None,
            "read_while_expired={read_while_expired}"
        );
    }
}
