//! A fence write that hangs holds the process's fence lock and the root directory's `flock`
//! until it really returns. Another instance on the directory (a healthy disk for it) then
//! waits for that lock inside its own fence calls, each given up after `io_timeout` and
//! counted as a disk timeout. Promise: entry writes, reads and other caches on the directory
//! keep working while a fence write hangs or the fence lock is held (bounded effects);
//! `clear`/`flush`/`close` return `NotPersisted` within the timeouts. Real time (tokio does not
//! advance a paused clock while a blocking call runs); the caches' clock is manual.

use std::time::{Duration, Instant};

use answercache::testing::TestDir;
use answercache::{BreakerState, Error};

use super::*;

fn not_persisted(r: &Result<(), Error>) -> bool {
    matches!(r, Err(Error::NotPersisted { .. }))
}

/// Polls `key`'s entry file on `dir`'s disk for up to `secs` seconds of real time.
async fn lands(dir: &TestDir, key: &[u8], secs: u64) -> Option<(String, u64)> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if let Some(f) = on_disk(dir, key) {
            return Some(f);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    on_disk(dir, key)
}

/// Guard: B's fence write hangs (the rename onto `<root>/fence` of B's file system: a stalled
/// call, or a process frozen inside it) and holds the root lock. A, on the same directory,
/// makes one `clear` and two `flush`es (each `NotPersisted` after `io_timeout`, as promised,
/// within 3 s together). A's entry set afterwards reaches the disk within 5 s while B's write
/// still hangs, and A's breaker is `Closed` then: three lock waits in a row do not take A's
/// healthy disk away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_hung_fence_write_leaves_this_instances_disk_in_use() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, quick).await;
    let b = open_disk(&dir, quick).await;
    fence_write_hangs(&dir, 1);
    let b_cleared = b.clear().await;
    tick(&dir, 5);
    let started = Instant::now();
    let a_cleared = a.clear().await;
    let f1 = a.flush().await;
    let f2 = a.flush().await;
    let waited = started.elapsed();
    tick(&dir, 5);
    a.set_bytes("e", b"set while B's fence write hangs")
        .await
        .unwrap();
    let landed = lands(&dir, b"e", 5).await;
    let state = a.breaker_state();
    let injected = dir.fs().faults_injected();
    dir.fs().release_hangs();
    let b_closed = b.close().await;
    let a_closed = a.close().await;
    assert_eq!(
        (
            not_persisted(&b_cleared),
            not_persisted(&a_cleared),
            not_persisted(&f1),
            not_persisted(&f2),
            injected
        ),
        (true, true, true, true, 1)
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert!(
        b_closed.is_ok() && a_closed.is_ok(),
        "{b_closed:?} {a_closed:?}"
    );
    assert_eq!(
        (landed, state),
        (
            Some(("set while B's fence write hangs".to_owned(), RUN1_MS + 10)),
            BreakerState::Closed
        )
    );
}

/// Guard: one `clear` of A while B's fence write hangs is `NotPersisted` within the
/// timeouts; A's entry set afterwards reaches the disk; A's `get` answers (the cleared key a
/// miss, no error); after the hang is released A's retried `clear` is `Ok`, its fence on
/// disk (B's late write, one millisecond older, never lands over it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clear_waits_for_the_lock_and_entries_keep_landing() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, quick).await;
    a.set_bytes("k", b"before the clears").await.unwrap();
    a.flush().await.unwrap();
    let b = open_disk(&dir, quick).await;
    fence_write_hangs(&dir, 1);
    tick(&dir, 5);
    let b_cleared = b.clear().await;
    tick(&dir, 5);
    let started = Instant::now();
    let a_cleared = a.clear().await;
    let waited = started.elapsed();
    assert!(not_persisted(&b_cleared), "{b_cleared:?}");
    assert!(not_persisted(&a_cleared), "{a_cleared:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(read(&a, "k").await, None);
    tick(&dir, 5);
    a.set_bytes("e", b"set while B's fence write hangs")
        .await
        .unwrap();
    assert_eq!(
        lands(&dir, b"e", 5).await,
        Some(("set while B's fence write hangs".to_owned(), RUN1_MS + 15))
    );
    assert_eq!(fence_on_disk(&dir), None);
    dir.fs().release_hangs();
    // B's stalled write lands its fence (RUN1_MS + 6); A's pending one (RUN1_MS + 11) is
    // written by A's next try, never lowered afterwards.
    let mut cleared = a.flush().await;
    for _ in 0..50 {
        if cleared.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cleared = a.flush().await;
    }
    cleared.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A's fence (RUN1_MS + 11), or one or two more: since J1's fix a write finding another
    // instance's fence at or above its own writes one more, and B's given-up writes (its
    // fence, RUN1_MS + 6) and A's wait for the root lock in an order `flock` does not fix.
    let fence = fence_on_disk(&dir);
    assert!(
        fence.is_some_and(|f| (RUN1_MS + 11..=RUN1_MS + 13).contains(&f)),
        "{fence:?}"
    );
    b.close().await.unwrap();
    a.close().await.unwrap();
    assert_eq!(fence_on_disk(&dir), fence);
    let c = open_disk(&dir, quick).await;
    assert_eq!(read_src(&c, "k").await, None);
    assert_eq!(
        read_src(&c, "e").await.map(|(v, _)| v).as_deref(),
        Some("set while B's fence write hangs")
    );
    c.close().await.unwrap();
}

/// Guard: `close` of both instances while B's fence write hangs returns `NotPersisted`
/// within the timeouts (no deadlock on the fence lock or the root `flock`), and a later
/// instance (the hang released) clears `Ok` with its own fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_bounded_while_a_fence_write_hangs() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, quick).await;
    let b = open_disk(&dir, quick).await;
    fence_write_hangs(&dir, 1);
    let b_cleared = b.clear().await;
    tick(&dir, 5);
    let a_cleared = a.clear().await;
    let started = Instant::now();
    let a_closed = tokio::time::timeout(Duration::from_secs(10), a.close()).await;
    let b_closed = tokio::time::timeout(Duration::from_secs(10), b.close()).await;
    let waited = started.elapsed();
    assert!(not_persisted(&b_cleared) && not_persisted(&a_cleared));
    assert!(
        matches!(a_closed, Ok(Err(Error::NotPersisted { .. }))),
        "{a_closed:?}"
    );
    assert!(
        matches!(b_closed, Ok(Err(Error::NotPersisted { .. }))),
        "{b_closed:?}"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(fence_on_disk(&dir), None);
    dir.fs().release_hangs();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The given-up writes land when released: B's (RUN1_MS + 1) and A's (RUN1_MS + 6), from
    // their `clear`s and `close`s, in an order `flock` does not fix; since J1's fix a write
    // finding the other instance's fence at or above its own writes one more. So at least
    // A's fence, at most one more per given-up write (four).
    let fence = fence_on_disk(&dir);
    assert!(
        fence.is_some_and(|f| (RUN1_MS + 6..=RUN1_MS + 10).contains(&f)),
        "{fence:?}"
    );
    tick(&dir, 5);
    let c = open_disk(&dir, quick).await;
    c.clear().await.unwrap();
    // C's own fence (RUN1_MS + 11) is above any of those: written as it is.
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 11));
    c.close().await.unwrap();
}
