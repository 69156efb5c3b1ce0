//! A failing disk under `invalidate` and under the marker listing: `Err` whenever the
//! promise cannot be kept, nothing hangs, and the namespace sync keeps running.

use std::time::Duration;

use answercache::testing::{Fault, FsOp, MemoryShared, Rule, SharedFault, SharedOpKind, TestDir};
use answercache::Error;

use crate::mem::*;

/// The server is away and the marker cannot be written (ENOSPC on its temp file): the
/// record alone would not survive a restart as pending, so `invalidate` is `Err`
/// (`NotPersisted`), while the invalidation holds in this process.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_marker_and_no_server_is_not_persisted() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    store(&a, "bot", "q", "old answer").await;
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    dir.fs().add_rule(
        Rule::new(Fault::Errno(28))
            .ops(&[FsOp::WriteNew])
            .path_contains("marker"),
    );
    let r = na.invalidate().await;
    assert!(matches!(r, Err(Error::NotPersisted { .. })), "{r:?}");
    assert_ne!(na.generation().await.unwrap(), g0);
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    assert!(marker_files(dir.root()).is_empty());
    a.close().await.unwrap();
}

/// Every write of the disk fails (EIO) with the server away: `Err`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_disk_and_no_server_is_an_error() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    na.generation().await.unwrap();
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    dir.fs().add_rule(Rule::new(Fault::Errno(5)).ops(&[
        FsOp::WriteNew,
        FsOp::Rename,
        FsOp::SyncFile,
    ]));
    let r = na.invalidate().await;
    assert!(matches!(r, Err(Error::NotPersisted { .. })), "{r:?}");
    dir.fs().clear_rules();
    a.close().await.ok();
}

/// The `fsync` of `nspending/` hangs (a stalled mount) with the server away: `invalidate`
/// returns within a bound (never hangs), with an error, since neither the marker nor the
/// server holds the generation. Real time: a hung blocking call stops a paused clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_marker_fsync_is_an_error_not_a_hang() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let a = dir
        .builder()
        .io_timeout(Duration::from_secs(1))
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    let na = a.namespace("bot").unwrap();
    na.generation().await.unwrap();
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    dir.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::SyncDir])
            .path_contains("nspending"),
    );
    let r = tokio::time::timeout(Duration::from_secs(30), na.invalidate())
        .await
        .expect("invalidate hung");
    dir.fs().clear_rules();
    dir.fs().release_hangs();
    assert!(r.is_err(), "{r:?}");
    a.close().await.ok();
}

/// Listing the marker directory fails (EIO on its `read_dir`, for as long as the test runs)
/// from the open on; the rest of the disk works. B's invalidation must still reach A.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unlistable_marker_directory_never_stops_the_namespace_sync() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadDir])
            .path_contains("nspending"),
    );
    let a = open(&dir, &server).await;
    let b = replica(&server).await;
    let g0 = a.namespace("bot").unwrap().generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    store(&b, "bot", "q", "old answer").await;
    assert_eq!(served(&a, "bot", "q").await.as_deref(), Some("old answer"));
    let g1 = b.namespace("bot").unwrap().invalidate().await.unwrap();
    pass(secs(3)).await;
    assert_eq!(
        served(&a, "bot", "q").await,
        None,
        "A still serves an answer B invalidated 3 s ago (A's syncs: {})",
        a.stats().namespace_syncs
    );
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g1);
    a.close().await.unwrap();
}

/// A pending invalidation (g1: the server refused it), a crash, then a reopen whose marker
/// directory cannot be listed for good (EIO on its `read_dir`) while the rest of the disk
/// works, the server back. A keeps its own invalidation (its local record, never the
/// server's g0), and since it cannot tell whether that record is pending, it invalidates the
/// namespace again once the listing has failed three times: B stops serving the answer
/// stored before A's `Ok` invalidate (before the fix, B served it for good and A stayed on
/// g1, never written).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pending_invalidation_behind_an_unlistable_marker_directory_reaches_the_others() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new().fault_fs();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    store(&b, "bot", "q", "old answer").await;
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    drop(na); // it holds a handle of the cache: the crash drops every one
    drop(a);
    settle().await;
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadDir])
            .path_contains("nspending"),
    );
    server.heal();
    let a = open(&dir, &server).await;
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g1);
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(on_server(&server, "bot"), Some(g0));
    pass(secs(10)).await;
    let now = on_server(&server, "bot").unwrap();
    assert!(![g0, g1].contains(&now), "the server holds {now:x}");
    for r in [&a, &b] {
        assert_eq!(r.namespace("bot").unwrap().generation().await.unwrap(), now);
        assert_eq!(served(r, "bot", "q").await, None);
    }
    a.close().await.unwrap();
}

/// The same listing failing only at the open (one EIO): the next sync lists the markers and
/// B's invalidation reaches A in time.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_marker_listing_that_fails_once_costs_one_sync_at_most() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadDir])
            .path_contains("nspending")
            .times(1),
    );
    let a = open(&dir, &server).await;
    let b = replica(&server).await;
    let g0 = a.namespace("bot").unwrap().generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    store(&b, "bot", "q", "old answer").await;
    assert_eq!(served(&a, "bot", "q").await.as_deref(), Some("old answer"));
    let g1 = b.namespace("bot").unwrap().invalidate().await.unwrap();
    pass(secs(3)).await;
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g1);
    assert_eq!(dir.fs().faults_injected(), 1);
    a.close().await.unwrap();
}

/// A's disk fails every call from the open on; the server works. B answers and invalidates:
/// A learns the new generation while its disk is down (it reads no answer from the server
/// then: its fence is unknown), and once the disk heals it is served B's new answer, never the
/// invalidated one. With the default
/// `memory_only_after` (10) A is not memory-only: three errors open the disk breaker, whose
/// probes add one error each at growing intervals, so the mode stays `Tiered` with the disk
/// breaker open (checked: still so after 10 minutes, 7 errors), and the namespace sync keeps
/// waiting for the markers to be listed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_replica_whose_disk_is_down_at_open_still_learns_invalidations() {
    a_replica_whose_disk_is_down_at_open_learns_invalidations(|b| b).await;
}

/// The same with `memory_only_after(1)`: the first disk error makes A memory-only (its disk
/// gate not in use), and A syncs namespaces without its markers (fixed by 2d54133).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_memory_only_replica_learns_invalidations() {
    a_replica_whose_disk_is_down_at_open_learns_invalidations(|b| b.memory_only_after(1)).await;
}

async fn a_replica_whose_disk_is_down_at_open_learns_invalidations(
    edit: impl FnOnce(answercache::Builder) -> answercache::Builder,
) {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    dir.fs().add_rule(Rule::new(Fault::Errno(5)));
    let a = open_with(&dir, &server, edit).await;
    let b = replica(&server).await;
    let g0 = a.namespace("bot").unwrap().generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    store(&b, "bot", "q", "old answer").await;
    // A's fence on disk is unknown (its disk failed at open), so A reads nothing from the
    // server: an earlier run's `clear` could hide any entry there (adversary10 r15 G1; this
    // test served B's answer here before that fix).
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(a.stats().shared_hits, 0);
    let g1 = b.namespace("bot").unwrap().invalidate().await.unwrap();
    pass(secs(3)).await;
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g1);
    assert!(a.stats().namespace_syncs > 0);
    // The disk heals: once A has read its fence it reads the server again, in the generation
    // it learned while its disk was down: B's new answer, never the invalidated one.
    dir.fs().clear_rules();
    store(&b, "bot", "q", "new answer").await;
    pass(secs(600)).await;
    assert_eq!(served(&a, "bot", "q").await.as_deref(), Some("new answer"));
    assert_eq!(a.stats().shared_hits, 1);
    a.close().await.ok();
}
