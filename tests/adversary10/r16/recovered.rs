//! The G3 fix (`persist_fence` reads the fence first while it is unknown; one it cannot read
//! is never written over, and the `clear` is `NotPersisted`) on every cache, not only
//! replicas: a disk failing from the open (memory-only from the start) that heals later, with
//! and without a clock stepped back; a fence that stays unreadable across two `clear`s and a
//! `close`; a fence that can be read but not written; a fence read that hangs.

use std::time::{Duration, Instant as StdInstant};

use answercache::testing::{Fault, FsOp, MemoryShared, Rule, TestDir};
use answercache::{Error, Source};

use super::*;

/// Run 2 on a disk failing from the open (every call EIO): `p` set, `clear` (`NotPersisted`:
/// nothing can be read or written), `q` set after it; the disk heals; the recovery task
/// brings it back. Then `flush` is `Ok`, the fence on disk is `expected_fence`, and after a
/// `close` `Ok` and a restart only `q` is served (from the disk, created `expected_fence`
/// at the latest: never before the fence).
async fn memory_only_then_heals(run2_ms: Option<u64>, expected_fence: u64) {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    match run2_ms {
        Some(ms) => dir.clock().set(ms),
        None => dir.clock().advance(Duration::from_millis(10)),
    }
    dir.fs().add_rule(Rule::new(Fault::Errno(5)));
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.set_bytes("p", b"set before the second clear")
        .await
        .unwrap();
    dir.clock().advance(Duration::from_millis(1));
    let cleared = a.clear().await;
    assert!(
        matches!(cleared, Err(Error::NotPersisted { .. })),
        "{cleared:?}"
    );
    dir.clock().advance(Duration::from_millis(1));
    a.set_bytes("q", b"set after the second clear")
        .await
        .unwrap();
    assert_eq!((read(&a, "k").await, read(&a, "p").await), (None, None));
    dir.fs().clear_rules();
    // Past the recovery interval (5 min) and the health interval: the disk is back.
    run_for(400).await;
    let flushed = a.flush().await;
    assert!(flushed.is_ok(), "{flushed:?}");
    assert_eq!(fence_on_disk(&dir), Some(expected_fence));
    assert_eq!(
        (
            read(&a, "k").await,
            read(&a, "p").await,
            read(&a, "q").await
        ),
        (None, None, Some("set after the second clear".to_owned()))
    );
    a.close().await.unwrap();
    let q_file = on_disk(&dir, b"q");
    assert!(
        q_file.as_ref().is_some_and(
            |(v, created)| v == "set after the second clear" && *created >= expected_fence
        ),
        "{q_file:?}"
    );
    assert_eq!(on_disk(&dir, b"p"), None);
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!((read(&b, "k").await, read(&b, "p").await), (None, None));
    assert_eq!(
        read_src(&b, "q").await,
        Some(("set after the second clear".to_owned(), Source::Warm))
    );
    b.close().await.unwrap();
}

/// Guard: no step back. Run 2's clear at 1 000 016 writes fence 1 000 017 once the disk heals.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn memory_only_from_the_start_a_clear_persists_once_the_disk_heals() {
    memory_only_then_heals(None, RUN1_MS + 17).await;
}

/// Guard: run 2's clock 30 s behind run 1. Its clear (fence 970 002 in memory) is covered by
/// run 1's fence once that is read: the fence on disk stays 1 000 006 (never lowered), `p`
/// (970 000) is below it, `q` is written dated at the fence.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn memory_only_from_the_start_with_a_step_back_never_lowers_the_fence() {
    memory_only_then_heals(Some(RUN2_MS), RUN1_MS + 6).await;
}

/// Guard: the fence stays unreadable (EIO on that one file) through two `clear`s and the
/// `close`: both `clear`s and the `close` are errors, never `Ok`; the fence on disk is
/// untouched; this process serves nothing set before the second clear.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two_clears_and_a_close_with_the_fence_unreadable_are_never_ok() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let fence1 = run1(&dir, &server, false).await;
    dir.clock().advance(Duration::from_millis(10));
    fence_unreadable(&dir, None);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.set_bytes("p", b"one").await.unwrap();
    dir.clock().advance(Duration::from_millis(1));
    let first = a.clear().await;
    a.set_bytes("q", b"two").await.unwrap();
    dir.clock().advance(Duration::from_millis(1));
    let second = a.clear().await;
    assert!(
        matches!(first, Err(Error::NotPersisted { .. })),
        "{first:?}"
    );
    assert!(
        matches!(second, Err(Error::NotPersisted { .. })),
        "{second:?}"
    );
    assert_eq!(
        (
            read(&a, "k").await,
            read(&a, "p").await,
            read(&a, "q").await
        ),
        (None, None, None)
    );
    run_for(120).await;
    let closed = a.close().await;
    assert!(
        matches!(closed, Err(Error::NotPersisted { .. })),
        "{closed:?}"
    );
    assert_eq!(fence_on_disk(&dir), Some(fence1));
}

/// Guard: the fence can be read but not replaced (EROFS on the rename onto it): the `clear`
/// is `NotPersisted`, so is the `close`, and the fence on disk is run 1's.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fence_that_cannot_be_written_makes_clear_and_close_not_persisted() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let fence1 = run1(&dir, &server, false).await;
    dir.clock().advance(Duration::from_millis(10));
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    dir.fs().add_rule(
        Rule::new(Fault::Errno(30))
            .ops(&[FsOp::Rename])
            .path_contains("/fence"),
    );
    a.set_bytes("p", b"one").await.unwrap();
    a.flush().await.unwrap();
    dir.clock().advance(Duration::from_millis(1));
    let cleared = a.clear().await;
    assert!(
        matches!(cleared, Err(Error::NotPersisted { .. })),
        "{cleared:?}"
    );
    assert_eq!(read(&a, "p").await, None);
    let closed = a.close().await;
    assert!(
        matches!(closed, Err(Error::NotPersisted { .. })),
        "{closed:?}"
    );
    assert_eq!(fence_on_disk(&dir), Some(fence1));
}

/// Guard (liveness, real time: tokio's paused clock does not move while a blocking call
/// hangs): every read of the fence hangs (a stalled mount, that one file), `io_timeout`
/// 200 ms. The open and each of 30 `get`s of distinct keys (misses) return within
/// `io_timeout` plus a generous 2 s; `set`s never wait on the disk. Once the hangs are
/// released, the disk back, a `clear` persists a fence above run 1's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_fence_read_blocks_no_get_beyond_io_timeout() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let fence1 = run1(&dir, &server, false).await;
    dir.clock().advance(Duration::from_millis(10));
    dir.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence"),
    );
    let io_timeout = Duration::from_millis(200);
    let bound = io_timeout + Duration::from_secs(2);
    let started = StdInstant::now();
    let a = open_manual(
        &dir,
        &server,
        |c| c,
        |b| {
            b.io_timeout(io_timeout)
                .open_timeout(Duration::from_millis(200))
                .recovery_interval(Duration::from_millis(300))
                .health_interval(Duration::from_millis(300))
        },
    )
    .await;
    assert!(started.elapsed() <= bound, "{:?}", started.elapsed());
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let key = format!("miss{i}");
        let t = StdInstant::now();
        assert_eq!(read(&a, &key).await, None);
        slowest = slowest.max(t.elapsed());
        let t = StdInstant::now();
        a.set_bytes(key.as_str(), b"v").await.unwrap();
        assert!(t.elapsed() <= bound, "{:?}", t.elapsed());
    }
    assert!(slowest <= bound, "{slowest:?}");
    assert_eq!(read(&a, "k").await, None);
    dir.fs().clear_rules();
    dir.fs().release_hangs();
    // The disk back (breaker probe / recovery probe), within a generous 20 s.
    let mut cleared = a.clear().await;
    for _ in 0..200 {
        if cleared.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        dir.clock().advance(Duration::from_millis(1));
        cleared = a.clear().await;
    }
    assert!(cleared.is_ok(), "{cleared:?}");
    let fence2 = fence_on_disk(&dir).unwrap();
    assert!(fence2 > fence1, "{fence2} {fence1}");
    a.close().await.unwrap();
}
