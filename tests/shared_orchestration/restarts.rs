//! An `Ok` invalidation outlives the process that made it: one still pending (the server
//! away) when the replica closes or crashes holds after a reopen, on this replica and,
//! once the server answers, on the others, whether or not the namespace is used again. The
//! reopened replica invalidates the namespace again with a fresh generation (never the
//! marker's, which an invalidation made since may have passed).

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind, TestDir};
use answercache::{BreakerState, TieredCache};

use crate::support::*;

/// The generation the server holds for `name`.
fn on_server(server: &MemoryShared, name: &str) -> Option<u64> {
    let raw = server.raw(&generation_key(name))?;
    u64::from_str_radix(std::str::from_utf8(&raw).ok()?, 16).ok()
}

/// A replica opened on `dir` (reopened when it was opened before).
async fn open_on(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    let cache = dir
        .builder()
        .clock(clock())
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    cache
}

/// Replica A answers "q" in namespace "bot" (B sees it too), then invalidates it while the
/// server refuses writes; returns A's directory and the new generation, with A's instance
/// left to the caller (to close or to drop as a crash would).
async fn invalidate_while_away(
    server: &MemoryShared,
    b: &TieredCache,
) -> (TestDir, TieredCache, u64, u64) {
    let dir = TestDir::new();
    let a = open_on(&dir, server).await;
    assert_eq!(a.shared_state(), Some(BreakerState::Closed));
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    na.set_bytes("q", b"old answer").await.unwrap();
    a.flush().await.unwrap();
    let nb = b.namespace("bot").unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    assert_eq!(
        nb.get_bytes("q").await.unwrap().as_deref(),
        Some(&b"old answer"[..])
    );
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    assert_ne!(g1, g0);
    assert_eq!(on_server(server, "bot"), Some(g0));
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    (dir, a, g0, g1)
}

/// After the reopen the namespace is not used on A: the server must get a generation A
/// drew at the reopen (neither the one A left nor the pending one), and B must stop serving
/// the invalidated answer at its next sync. Returns that generation.
async fn check_reaches_the_others(
    server: &MemoryShared,
    a: &TieredCache,
    b: &TieredCache,
    (g0, g1): (u64, u64),
) -> u64 {
    tokio::time::sleep(secs(5)).await;
    settle().await;
    let g2 = on_server(server, "bot").unwrap();
    assert!(
        g2 != g0 && g2 != g1,
        "the server holds {g2:x} (left: {g0:x}, pending: {g1:x})"
    );
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g2);
    let nb = b.namespace("bot").unwrap();
    assert_eq!(nb.generation().await.unwrap(), g2);
    assert_eq!(
        nb.get_bytes("q").await.unwrap(),
        None,
        "another replica served an answer invalidated before the restart"
    );
    g2
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pending_invalidation_closed_then_reopened_reaches_the_others_unused() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let (dir, a, g0, g1) = invalidate_while_away(&server, &b).await;
    a.close().await.unwrap();
    server.heal();
    let a = open_on(&dir, &server).await;
    check_reaches_the_others(&server, &a, &b, (g0, g1)).await;
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    let na = a.namespace("bot").unwrap();
    assert_eq!(na.get_bytes("q").await.unwrap(), None);
    a.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pending_invalidation_holds_locally_when_the_namespace_is_used_first_after_a_crash() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let (dir, a, g0, g1) = invalidate_while_away(&server, &b).await;
    drop(a); // a crash: no close
    settle().await;
    server.heal();
    let a = open_on(&dir, &server).await;
    // Used at once, before any retry: the server still holds g0, which A left.
    let na = a.namespace("bot").unwrap();
    assert_eq!(
        na.get_bytes("q").await.unwrap(),
        None,
        "an answer invalidated before the crash was served again after it"
    );
    let g = na.generation().await.unwrap();
    assert!(g != g0 && g != g1);
    assert_eq!(check_reaches_the_others(&server, &a, &b, (g0, g1)).await, g);
    a.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pending_invalidation_reopened_while_the_server_is_still_away_is_written_when_it_answers()
{
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let (dir, a, g0, g1) = invalidate_while_away(&server, &b).await;
    a.close().await.unwrap();
    let a = open_on(&dir, &server).await;
    tokio::time::sleep(secs(3)).await;
    settle().await;
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    assert_eq!(
        on_server(&server, "bot"),
        Some(g0),
        "written while writes fail"
    );
    server.heal();
    check_reaches_the_others(&server, &a, &b, (g0, g1)).await;
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    a.close().await.unwrap();
}
