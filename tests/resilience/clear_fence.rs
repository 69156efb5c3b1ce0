//! `clear` across failures and restarts. A clear is recorded on disk first, as the fence
//! (`<root>/fence`, FORMAT.md): entries created before it are never served again, by any
//! process that opens the directory, even where deleting their files failed. A clear that
//! could not record its fence is reported, by `clear` and by every `flush` and `close` until
//! the fence is on disk.

use std::time::Duration;

use answercache::testing::FsOp;
use answercache::{Error, WritePolicy};

use crate::support::*;

fn edit(b: answercache::Builder) -> answercache::Builder {
    b.write_policy(WritePolicy::WriteBehind)
        .failure_threshold(1_000)
}

async fn three_entries_on_disk(cache: &answercache::TieredCache) {
    for i in 0..3 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    cache.flush().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_clear_whose_files_cannot_be_deleted_still_holds_after_a_restart() {
    let t = dir();
    let cache = open(&t, edit).await;
    three_entries_on_disk(&cache).await;
    fail(&t, &[FsOp::RemoveDirAll], EIO);
    cache.clear().await.unwrap();
    t.fs().clear_rules();
    // Files are still there, and never served.
    assert_eq!(cache.get::<i32>("k1").await.unwrap(), None);
    cache.set("after", &9).await.unwrap();
    cache.close().await.unwrap();
    let reopened = open(&t, edit).await;
    for i in 0..3 {
        assert_eq!(reopened.get::<i32>(format!("k{i}")).await.unwrap(), None);
    }
    assert_eq!(reopened.get::<i32>("after").await.unwrap(), Some(9));
}

#[tokio::test(start_paused = true)]
async fn a_clear_that_cannot_record_its_fence_is_reported_until_it_is_on_disk() {
    let t = dir();
    let cache = open(&t, edit).await;
    three_entries_on_disk(&cache).await;
    fail(&t, &[FsOp::WriteNew, FsOp::RemoveDirAll], EIO);
    match cache.clear().await {
        Err(Error::NotPersisted { failed: 1, .. }) => {}
        other => panic!("clear returned {other:?}"),
    }
    assert_eq!(cache.get::<i32>("k1").await.unwrap(), None);
    match cache.flush().await {
        Err(Error::NotPersisted { failed: 1, .. }) => {}
        other => panic!("flush returned {other:?}"),
    }
    // The disk heals: the next flush records the fence, and close is Ok.
    t.fs().clear_rules();
    cache.flush().await.unwrap();
    cache.close().await.unwrap();
    let reopened = open(&t, edit).await;
    for i in 0..3 {
        assert_eq!(reopened.get::<i32>(format!("k{i}")).await.unwrap(), None);
    }
}

/// A set made in the same millisecond as a clear, after it, is not cleared.
#[tokio::test(start_paused = true)]
async fn a_set_right_after_a_clear_survives_it() {
    let t = dir();
    let cache = open(&t, edit).await;
    three_entries_on_disk(&cache).await;
    fail(&t, &[FsOp::RemoveDirAll], EIO);
    cache.clear().await.unwrap();
    t.fs().clear_rules();
    cache.set("k1", &100).await.unwrap();
    assert_eq!(cache.get::<i32>("k1").await.unwrap(), Some(100));
    cache.close().await.unwrap();
    let reopened = open(&t, edit).await;
    assert_eq!(reopened.get::<i32>("k1").await.unwrap(), Some(100));
    assert_eq!(reopened.get::<i32>("k2").await.unwrap(), None);
}

/// A fence that is damaged (or cannot be read) at open makes every entry made before the
/// open a miss, and is written again: a miss is acceptable, a cleared entry served is not.
#[tokio::test(start_paused = true)]
async fn a_damaged_fence_makes_older_entries_misses() {
    let t = dir();
    let cache = open(&t, edit).await;
    three_entries_on_disk(&cache).await;
    cache.close().await.unwrap();
    std::fs::write(t.root().join("fence"), b"garbage").unwrap();
    tokio::time::advance(Duration::from_millis(5)).await;
    let reopened = open(&t, edit).await;
    assert_eq!(reopened.get::<i32>("k0").await.unwrap(), None);
    reopened.set("new", &1).await.unwrap();
    reopened.close().await.unwrap();
    assert_eq!(std::fs::read(t.root().join("fence")).unwrap().len(), 24);
    let again = open(&t, edit).await;
    assert_eq!(again.get::<i32>("k1").await.unwrap(), None);
    assert_eq!(again.get::<i32>("new").await.unwrap(), Some(1));
}
