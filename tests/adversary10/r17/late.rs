//! A fence write that hangs (a stalled mount: the rename onto `<root>/fence` blocks) is given
//! up after `io_timeout` ("the hung call counts as a timeout failure and finishes, or not, in
//! the background"): the `clear` returns `NotPersisted`. A later `clear` writes its own,
//! larger fence and returns `Ok`. When the stalled rename finally completes, it puts the
//! first, smaller fence over the second. One instance, one clock, no damage. Real time
//! (tokio does not advance a paused clock while a blocking call runs); the cache's clock is
//! manual.

use std::time::{Duration, Instant as StdInstant};

use answercache::testing::{MemoryShared, TestDir};
use answercache::Error;

use super::*;

/// The settings of the real-time tests: short `io_timeout`, health and recovery intervals.
fn quick(b: answercache::Builder) -> answercache::Builder {
    b.io_timeout(Duration::from_millis(200))
        .open_timeout(Duration::from_millis(200))
        .recovery_interval(Duration::from_millis(300))
        .health_interval(Duration::from_millis(300))
}

/// Retries `clear` (the disk may be memory-only or the breaker open after a timeout) for up
/// to 20 s of real time, advancing the manual clock 1 ms per try.
async fn clear_until_ok(dir: &TestDir, cache: &answercache::TieredCache) -> Result<(), Error> {
    let mut cleared = cache.clear().await;
    for _ in 0..200 {
        if cleared.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick(dir, 1);
        cleared = cache.clear().await;
    }
    cleared
}

/// Polls the fence on disk until it differs from `from` (at most 5 s of real time).
async fn fence_changes(dir: &TestDir, from: Option<u64>) -> Option<u64> {
    let started = StdInstant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let now = fence_on_disk(dir);
        if now != from {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fence_on_disk(dir)
}

/// I2: `clear` 1's fence write hangs (`NotPersisted`); `j` is set; `clear` 2 is made while
/// the stalled write has not returned. Fixed (fence writes are serialised inside the disk
/// call, read-compare-write): `clear` 2 cannot be on disk before the older write returns, so
/// it is `NotPersisted` too (the test as first written expected `Ok` there; the promise it
/// checks is unchanged). Then the stalled rename completes; the retried `clear` returns `Ok`,
/// no later landing lowers its fence, `close` returns `Ok`, and a restart serves neither `j`
/// nor `k`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fence_write_never_lands_over_a_later_clear() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    tick(&dir, 10);
    let a = open_manual(&dir, &server, |c| c, quick).await;
    fence_write_hangs(&dir, 1);
    let first = a.clear().await;
    assert!(
        matches!(first, Err(Error::NotPersisted { failed: 1, .. })),
        "{first:?}"
    );
    tick(&dir, 10);
    a.set_bytes("j", b"set between the clears").await.unwrap();
    let _ = a.flush().await;
    let j_created = created_on_server(&server, b"j");
    tick(&dir, 10);
    let second = a.clear().await;
    assert!(
        matches!(second, Err(Error::NotPersisted { .. })),
        "{second:?}"
    );
    assert_eq!(read(&a, "j").await, None);
    // Nothing of either clear is on disk while the first write hangs.
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 6));
    dir.fs().release_hangs();
    tick(&dir, 10);
    clear_until_ok(&dir, &a).await.unwrap();
    let fence_ok = fence_on_disk(&dir);
    // Any write given up earlier has had time to land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fence_later = fence_on_disk(&dir);
    let closed = a.close().await;
    let fence_closed = fence_on_disk(&dir);
    let b = open_manual(&dir, &server, |c| c, quick).await;
    let served = (read_src(&b, "j").await, read_src(&b, "k").await);
    b.close().await.unwrap();
    assert_eq!(j_created, Some(RUN1_MS + 25));
    assert!(fence_ok.is_some_and(|f| f > RUN1_MS + 36), "{fence_ok:?}");
    assert!(closed.is_ok(), "{closed:?}");
    assert_eq!(
        (fence_later, fence_closed, served),
        (fence_ok, fence_ok, (None, None))
    );
}

/// Guard: the same stalled fence write released *before* the second `clear`: the fence on
/// disk ends at the second clear's, `close` is `Ok`, and a restart serves nothing cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fence_write_released_before_the_next_clear_is_covered_by_it() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    tick(&dir, 10);
    let a = open_manual(&dir, &server, |c| c, quick).await;
    fence_write_hangs(&dir, 1);
    let first = a.clear().await;
    assert!(
        matches!(first, Err(Error::NotPersisted { failed: 1, .. })),
        "{first:?}"
    );
    dir.fs().release_hangs();
    // The stalled rename lands clear 1's fence (1 000 016).
    assert_eq!(
        fence_changes(&dir, Some(RUN1_MS + 6)).await,
        Some(RUN1_MS + 16)
    );
    tick(&dir, 10);
    a.set_bytes("j", b"set between the clears").await.unwrap();
    let _ = a.flush().await;
    tick(&dir, 10);
    clear_until_ok(&dir, &a).await.unwrap();
    // The disk is back by now: the second clear persists at its first try.
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 36));
    a.close().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 36));
    let b = open_manual(&dir, &server, |c| c, quick).await;
    assert_eq!(read_src(&b, "j").await, None);
    assert_eq!(read_src(&b, "k").await, None);
    b.close().await.unwrap();
}
