//! Concurrent `clear`s of one cache instance on a healthy disk. `clear`'s docs list when it
//! says `NotPersisted`: the fence could not be written, the fence on disk could not be read,
//! an older fence write given up after `io_timeout` has not returned. None holds here.

use answercache::testing::{builder, TestDir};
use answercache::Error;

/// The disk errors `cache` counted, all kinds.
fn disk_errors(cache: &answercache::TieredCache) -> u64 {
    cache.stats().disk_errors
}

/// J2: two `clear`s of one instance at once (`tokio::join!`), 20 rounds, on a healthy disk.
/// Each must be `Ok` (the disk counts no error; both fences reach it). Observed: in many
/// rounds one of the two says `NotPersisted` ("the clear could not be recorded on disk (the
/// fence)") although its fence, and a larger one, are on disk: `persist_fence` returns
/// `!fence_pending()`, which the *other* clear's newer fence makes true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clears_at_once_on_a_healthy_disk_are_both_ok() {
    let dir = TestDir::new();
    let cache = builder(dir.root()).build().await.unwrap();
    let mut not_persisted = 0;
    let mut other = Vec::new();
    for i in 0..20 {
        cache
            .set_bytes(&format!("k{i}"), b"before the clears")
            .await
            .unwrap();
        let (x, y) = tokio::join!(cache.clear(), cache.clear());
        for r in [x, y] {
            match r {
                Ok(()) => {}
                Err(Error::NotPersisted { .. }) => not_persisted += 1,
                Err(e) => other.push(e.to_string()),
            }
        }
    }
    let errors = disk_errors(&cache);
    let flushed = cache.flush().await;
    cache.close().await.unwrap();
    assert!(flushed.is_ok(), "{flushed:?}");
    // Observed: not_persisted > 0 (see FINDINGS.md for the rates), errors 0.
    assert_eq!((not_persisted, other, errors), (0, Vec::<String>::new(), 0));
}

/// Guard: the same 20 rounds: whatever each says, nothing is served from before the round's
/// clears, by this instance or a later one, and `flush` is `Ok` afterwards (every fence is on
/// disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clears_at_once_leave_nothing_from_before_them() {
    let dir = TestDir::new();
    let cache = builder(dir.root()).build().await.unwrap();
    for i in 0..20 {
        cache
            .set_bytes(&format!("k{i}"), b"before the clears")
            .await
            .unwrap();
        cache.flush().await.unwrap();
        let (x, y) = tokio::join!(cache.clear(), cache.clear());
        for r in [x, y] {
            assert!(
                matches!(r, Ok(()) | Err(Error::NotPersisted { .. })),
                "{r:?}"
            );
        }
        assert_eq!(cache.get_bytes(&format!("k{i}")).await.unwrap(), None);
    }
    assert_eq!(disk_errors(&cache), 0);
    cache.flush().await.unwrap();
    cache.close().await.unwrap();
    let later = builder(dir.root()).build().await.unwrap();
    for i in 0..20 {
        assert_eq!(
            later.get_bytes(&format!("k{i}")).await.unwrap(),
            None,
            "k{i}"
        );
    }
    later.close().await.unwrap();
}
