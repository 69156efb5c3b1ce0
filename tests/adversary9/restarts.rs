//! An `Ok` invalidation across closes, crashes, reopens, power cuts and server restores.

use std::sync::Arc;

use answercache::testing::{
    CrashFs, Fault, FsOp, MemoryShared, Rule, SharedFault, SharedOpKind, TestDir,
};

use crate::mem::*;

/// A replica on `dir` answers "q" in "bot" at generation g0 (B sees it), then invalidates it
/// with the server up (g1 on the server); returns (g0, g1) with A still open.
async fn answered_then_invalidated(
    server: &MemoryShared,
    a: &answercache::TieredCache,
    b: &answercache::TieredCache,
) -> (u64, u64) {
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    store(a, "bot", "q", "old answer").await;
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    assert_eq!(served(b, "bot", "q").await.as_deref(), Some("old answer"));
    let g1 = na.invalidate().await.unwrap();
    assert_ne!(g1, g0);
    assert_eq!(on_server(server, "bot"), Some(g1));
    assert_eq!(served(a, "bot", "q").await, None);
    (g0, g1)
}

/// The server is restored to a snapshot taken before A's invalidation (it holds g0 again)
/// while A is closed. README: "A replica never goes back to a generation it left: one rolled
/// back on the server (a failover to a lagging server, a restore) is replaced by a fresh
/// one". A left g0 itself, and its own disk still holds the answer stored in g0.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_replica_reopened_after_a_restore_never_goes_back_to_the_generation_it_left() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new();
    let a = open(&dir, &server).await;
    let (g0, _g1) = answered_then_invalidated(&server, &a, &b).await;
    a.close().await.unwrap();
    plant_generation(&server, "bot", g0); // the restore
    let a = open(&dir, &server).await;
    pass(secs(5)).await;
    assert_eq!(
        served(&a, "bot", "q").await,
        None,
        "A served again the answer its own Ok invalidate had invalidated"
    );
    assert_ne!(a.namespace("bot").unwrap().generation().await.unwrap(), g0);
    assert_ne!(on_server(&server, "bot"), Some(g0));
    a.close().await.unwrap();
}

/// The same restore while A stays open: A replaces the rolled-back generation with a fresh
/// one at its next sync, and B (which held g1 too) follows.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_replica_still_open_after_a_restore_replaces_the_rolled_back_generation() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let a = replica(&server).await;
    let (g0, g1) = answered_then_invalidated(&server, &a, &b).await;
    pass(secs(3)).await;
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g1);
    plant_generation(&server, "bot", g0);
    pass(secs(5)).await;
    let now = on_server(&server, "bot").unwrap();
    assert!(now != g0 && now != g1, "a fresh generation, not {now:x}");
    for r in [&a, &b] {
        assert_eq!(r.namespace("bot").unwrap().generation().await.unwrap(), now);
        assert_eq!(served(r, "bot", "q").await, None);
    }
}

/// A's marker cannot be made durable (EIO on the fsync of `nspending/`), but the server
/// takes the generation inline: `invalidate` is `Ok` and the marker file stays behind with
/// g1. FORMAT.md: "A marker left behind ... only makes the next open write that generation
/// to the server again: misses, never stale answers." Then B invalidates again (g2) and A
/// follows; A is closed and reopened: it invalidates "bot" again with a fresh generation
/// (neither g0, g1 nor g2), which the server and B end on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_marker_left_behind_never_undoes_a_later_invalidation_of_another_replica() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new().fault_fs();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::SyncDir])
            .path_contains("nspending"),
    );
    let g1 = na.invalidate().await.unwrap();
    dir.fs().clear_rules();
    assert_ne!(g1, g0);
    assert_eq!(on_server(&server, "bot"), Some(g1));
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    // An answer stored in g1, then B invalidates it.
    store(&a, "bot", "q", "answer of g1").await;
    let nb = b.namespace("bot").unwrap();
    assert_eq!(nb.generation().await.unwrap(), g1);
    assert_eq!(
        served(&b, "bot", "q").await.as_deref(),
        Some("answer of g1")
    );
    let g2 = nb.invalidate().await.unwrap();
    pass(secs(3)).await;
    assert_eq!(na.generation().await.unwrap(), g2);
    assert_eq!(served(&a, "bot", "q").await, None);
    a.close().await.unwrap();
    let a = open(&dir, &server).await;
    assert_eq!(
        served(&a, "bot", "q").await,
        None,
        "A served an answer B's Ok invalidate had invalidated (marker left: {:?})",
        marker_files(dir.root())
    );
    pass(secs(5)).await;
    // The reopen invalidated "bot" again: a fresh generation, never g1 back.
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(
        now != g0 && now != g1 && now != g2,
        "a fresh generation, not {now:x}"
    );
    assert_eq!(on_server(&server, "bot"), Some(now), "the server went back");
    assert_eq!(nb.generation().await.unwrap(), now);
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert!(marker_files(dir.root()).is_empty());
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(served(&b, "bot", "q").await, None);
    a.close().await.unwrap();
}

/// The same left-behind marker made by a failing unlink (EIO on the marker's removal).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_marker_whose_unlink_failed_never_undoes_a_later_invalidation_of_another_replica() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new().fault_fs();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::RemoveFile])
            .path_contains("nspending"),
    );
    let g1 = na.invalidate().await.unwrap();
    dir.fs().clear_rules();
    assert_eq!(on_server(&server, "bot"), Some(g1));
    assert_eq!(marker_files(dir.root()), vec![marker_name("bot")]);
    store(&a, "bot", "q", "answer of g1").await;
    let nb = b.namespace("bot").unwrap();
    assert_eq!(nb.generation().await.unwrap(), g1);
    let g2 = nb.invalidate().await.unwrap();
    pass(secs(3)).await;
    assert_eq!(na.generation().await.unwrap(), g2);
    assert_eq!(served(&a, "bot", "q").await, None);
    drop(na); // it holds a handle of the cache: the crash drops every one
    drop(a); // a crash
    settle().await;
    let a = open(&dir, &server).await;
    assert_eq!(
        served(&a, "bot", "q").await,
        None,
        "A served an answer B's Ok invalidate had invalidated"
    );
    pass(secs(5)).await;
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(
        now != g0 && now != g1 && now != g2,
        "a fresh generation, not {now:x}"
    );
    assert_eq!(on_server(&server, "bot"), Some(now), "the server went back");
    assert_eq!(nb.generation().await.unwrap(), now);
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert!(marker_files(dir.root()).is_empty());
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(served(&b, "bot", "q").await, None);
    a.close().await.unwrap();
}

/// A pending invalidation (server away) then a power cut: the image of the disk, reopened,
/// still holds it (the namespace invalidated again at the reopen, with a fresh generation:
/// neither g0 nor the marker's g1), and the server gets that one once it answers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pending_invalidation_survives_a_power_cut() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let tmp = tempfile::tempdir().unwrap();
    let fs = Arc::new(CrashFs::new(tmp.path().join("root")).unwrap());
    let dir = TestDir::new().with_fs(fs.clone());
    let a = open_with(&dir, &server, |_| {
        answercache::testing::builder(fs.root())
            .fs(fs.clone())
            .clock(clock())
            .shared(server.config().prefix(PREFIX))
    })
    .await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    store(&a, "bot", "q", "old answer").await;
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    assert_eq!(on_server(&server, "bot"), Some(g0));
    let image = tmp.path().join("image");
    fs.crash(&image).unwrap();
    drop(na); // it holds a handle of the cache: the crash drops every one
    drop(a);
    settle().await;
    server.heal();
    let a = answercache::testing::builder(&image)
        .clock(clock())
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    assert_eq!(served(&a, "bot", "q").await, None);
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(now != g0 && now != g1, "a fresh generation, not {now:x}");
    pass(secs(5)).await;
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(on_server(&server, "bot"), Some(now));
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(served(&b, "bot", "q").await, None);
    assert_eq!(served(&a, "bot", "q").await, None);
    assert!(marker_files(&image).is_empty());
    a.close().await.unwrap();
}

/// A pending invalidation, then `clear()`, then a close and a reopen (the server still
/// away, then back): `clear` forgets answers, never the pending invalidation.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clear_then_reopen_keeps_a_pending_invalidation() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    store(&a, "bot", "q", "old answer").await;
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    a.clear().await.unwrap();
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    a.close().await.unwrap();
    let a = open(&dir, &server).await;
    // The server still refuses writes: the re-invalidation of the reopen is pending.
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    assert_eq!(served(&a, "bot", "q").await, None);
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(now != g0 && now != g1, "a fresh generation, not {now:x}");
    assert_eq!(marker_files(dir.root()), vec![marker_name("bot")]);
    assert_eq!(on_server(&server, "bot"), Some(g0));
    server.heal();
    pass(secs(5)).await;
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(on_server(&server, "bot"), Some(now));
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(served(&b, "bot", "q").await, None);
    assert!(marker_files(dir.root()).is_empty());
    a.close().await.unwrap();
}

/// A pending invalidation while the warm tier evicts everything it can (a tiny budget, many
/// answers written after it), then a crash and a reopen with the server back.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn eviction_under_a_tiny_budget_never_loses_a_pending_invalidation() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new();
    let tiny = |bld: answercache::Builder| {
        bld.warm_capacity_bytes(16 * 1024)
            .hot_capacity_bytes(4 * 1024)
    };
    let a = open_with(&dir, &server, tiny).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    store(&a, "bot", "q", "old answer").await;
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    for i in 0..200 {
        a.set_bytes(format!("filler-{i}"), vec![b'x'; 900])
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    drop(na); // it holds a handle of the cache: the crash drops every one
    drop(a);
    settle().await;
    let a = open_with(&dir, &server, tiny).await;
    assert_eq!(served(&a, "bot", "q").await, None);
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(now != g0 && now != g1, "a fresh generation, not {now:x}");
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    server.heal();
    pass(secs(5)).await;
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(on_server(&server, "bot"), Some(now));
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(served(&b, "bot", "q").await, None);
    assert!(marker_files(dir.root()).is_empty());
    a.close().await.unwrap();
}

/// A's first invalidation (g1) is pending with its marker; an answer is stored in g1. The
/// server is back; A invalidates again (g2), the server takes g2 inline, but the new marker
/// cannot be written (ENOSPC): `invalidate` is `Ok`. A is closed (gracefully) and reopened.
/// Promised: A never again serves an answer stored before its second `Ok` invalidate; the
/// older marker left behind makes the reopen invalidate "bot" again with a fresh generation
/// (neither g0, g1 nor g2), which the server and B end on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_older_marker_never_outlives_a_later_ok_invalidation() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new().fault_fs();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    assert_eq!(marker_files(dir.root()), vec![marker_name("bot")]);
    store(&a, "bot", "q", "answer between the two invalidations").await;
    server.heal();
    dir.fs().add_rule(
        Rule::new(Fault::Errno(28))
            .ops(&[FsOp::WriteNew])
            .path_contains("marker"),
    );
    let g2 = na.invalidate().await.unwrap();
    dir.fs().clear_rules();
    assert_ne!(g2, g1);
    assert_eq!(on_server(&server, "bot"), Some(g2));
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(served(&a, "bot", "q").await, None);
    a.close().await.unwrap();
    let a = open(&dir, &server).await;
    assert_eq!(
        served(&a, "bot", "q").await,
        None,
        "A served an answer its own second Ok invalidate had invalidated"
    );
    pass(secs(5)).await;
    // The older marker (g1) made the reopen invalidate "bot" again: a fresh generation, never
    // g1 back (nor g2, which it cannot tell from an older one).
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(
        now != g0 && now != g1 && now != g2,
        "a fresh generation, not {now:x}"
    );
    assert_eq!(on_server(&server, "bot"), Some(now), "the server went back");
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert!(marker_files(dir.root()).is_empty());
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(served(&b, "bot", "q").await, None);
    a.close().await.unwrap();
}

/// A's invalidation (g1) is pending (the server refused it) and A crashes; while A is down,
/// B invalidates the namespace (g2 on the server) and answers in g2. A restarts with the
/// server answering. Promised to B: its `Ok` invalidate holds, and A's older invalidation,
/// written late, must not bring back answers stored before B's (A's own, stored in g1): the
/// reopen invalidates "bot" again with a fresh generation (neither g0, g1 nor g2).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_resumed_pending_generation_never_overwrites_a_newer_one_of_another_replica() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    store(&a, "bot", "q", "A's answer, stored before B's invalidation").await;
    drop(na); // it holds a handle of the cache: the crash drops every one
    drop(a); // a crash
    settle().await;
    server.heal();
    let g2 = b.namespace("bot").unwrap().invalidate().await.unwrap();
    store(&b, "bot", "other", "B's answer in g2").await;
    let a = open(&dir, &server).await;
    assert_eq!(served(&a, "bot", "q").await, None);
    pass(secs(5)).await;
    // A's marker made the reopen invalidate "bot" again: a fresh generation, which the
    // server and B end on (B's answer in g2 is a miss too: the cost, never a stale answer).
    let now = a.namespace("bot").unwrap().generation().await.unwrap();
    assert!(
        now != g0 && now != g1 && now != g2,
        "a fresh generation, not {now:x}"
    );
    assert_eq!(
        on_server(&server, "bot"),
        Some(now),
        "the server went back (g1 = {g1:x}, g2 = {g2:x})"
    );
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), now);
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert!(marker_files(dir.root()).is_empty());
    assert_eq!(
        served(&b, "bot", "q").await,
        None,
        "B serves an answer stored before its own Ok invalidate"
    );
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(served(&a, "bot", "other").await, None);
    assert_eq!(served(&b, "bot", "other").await, None);
    a.close().await.unwrap();
}

/// A power cut at each disk call of an invalidation made while the server is away: whenever
/// `invalidate` returned `Ok`, the image reopened holds the invalidation (never the answer;
/// the namespace invalidated again at the reopen, with a generation neither g0 nor the
/// marker's), and the server gets that generation once it answers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_power_cut_at_any_point_of_an_ok_invalidation_keeps_it() {
    let mut oks = 0;
    let mut errs = 0;
    for cut in 0..24u64 {
        let server = MemoryShared::new();
        let tmp = tempfile::tempdir().unwrap();
        let fs = Arc::new(CrashFs::new(tmp.path().join("root")).unwrap());
        let a = answercache::testing::builder(fs.root())
            .fs(fs.clone())
            .clock(clock())
            .shared(server.config().prefix(PREFIX))
            .build()
            .await
            .unwrap();
        settle().await;
        let na = a.namespace("bot").unwrap();
        let g0 = na.generation().await.unwrap();
        store(&a, "bot", "q", "old answer").await;
        server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
        fs.power_off_after(fs.calls() + cut);
        let r = na.invalidate().await;
        let image = tmp.path().join("image");
        fs.crash(&image).unwrap();
        drop(na); // it holds a handle of the cache: the crash drops every one
        drop(a);
        settle().await;
        server.heal();
        let Ok(g1) = r else {
            errs += 1;
            continue;
        };
        oks += 1;
        let a = answercache::testing::builder(&image)
            .clock(clock())
            .shared(server.config().prefix(PREFIX))
            .build()
            .await
            .unwrap();
        settle().await;
        assert_eq!(served(&a, "bot", "q").await, None, "cut after {cut} calls");
        assert_ne!(g1, g0);
        // Invalidated again at the reopen: a fresh generation, neither g0 nor the marker's.
        let now = a.namespace("bot").unwrap().generation().await.unwrap();
        assert!(
            now != g0 && now != g1,
            "cut after {cut} calls: a fresh generation, not {now:x}"
        );
        pass(secs(5)).await;
        assert_eq!(
            a.namespace("bot").unwrap().generation().await.unwrap(),
            now,
            "cut after {cut} calls"
        );
        assert_eq!(
            on_server(&server, "bot"),
            Some(now),
            "cut after {cut} calls"
        );
        assert_eq!(
            a.stats().namespace_invalidations_pending,
            0,
            "cut after {cut} calls"
        );
        assert_eq!(served(&a, "bot", "q").await, None, "cut after {cut} calls");
        assert!(marker_files(&image).is_empty(), "cut after {cut} calls");
        a.close().await.unwrap();
    }
    // Early cuts fail the invalidation, late ones come after it.
    assert!(oks > 0 && errs > 0, "oks {oks}, errs {errs}");
}

/// `invalidate` on a handle of a cache already closed, with the server away: an error
/// ("the cache is closed"), with no half effect: after the reopen the namespace is where it
/// was, its answer served, the server's generation unchanged, no marker.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_invalidation_after_close_is_an_error_without_effect() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = open(&dir, &server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    store(&a, "bot", "q", "old answer").await;
    a.close().await.unwrap();
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let r = na.invalidate().await;
    assert!(r.is_err(), "{r:?}");
    assert!(
        marker_files(dir.root()).is_empty(),
        "a marker was written after close: {:?}",
        marker_files(dir.root())
    );
    drop(na);
    drop(a);
    settle().await;
    server.heal();
    let a = open(&dir, &server).await;
    pass(secs(5)).await;
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g0);
    assert_eq!(served(&a, "bot", "q").await.as_deref(), Some("old answer"));
    assert_eq!(on_server(&server, "bot"), Some(g0));
    a.close().await.unwrap();
}
