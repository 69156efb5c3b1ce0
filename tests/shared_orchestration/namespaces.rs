//! Namespaces across replicas: first use converges on one generation (`SET NX GET`), an
//! `invalidate` on one replica reaches the others at the next sync, an invalidation made
//! while the server is away stays `Ok`, pending, and is written by the sync, and a
//! generation deleted on the server is bootstrapped again with a fresh one.

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};

use crate::support::*;

/// The generation the server holds for `name`.
fn on_server(server: &MemoryShared, name: &str) -> Option<u64> {
    let raw = server.raw(&generation_key(name))?;
    assert_eq!(raw.len(), 16);
    u64::from_str_radix(std::str::from_utf8(&raw).unwrap(), 16).ok()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn first_use_converges_and_an_invalidation_reaches_the_others_at_the_next_sync() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    assert_eq!(on_server(&server, "bot"), Some(g0));
    assert_eq!(server.calls(SharedOpKind::SetNxGet), 1);

    nb.set_bytes("q", b"old answer").await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(
        na.get_bytes("q").await.unwrap().as_deref(),
        Some(&b"old answer"[..])
    );

    let g1 = na.invalidate().await.unwrap();
    assert_ne!(g1, g0);
    assert_eq!(on_server(&server, "bot"), Some(g1));
    // B still serves the old generation until its sync (2 s).
    assert_eq!(nb.generation().await.unwrap(), g0);
    tokio::time::sleep(secs(2)).await;
    settle().await;
    assert_eq!(nb.generation().await.unwrap(), g1);
    assert_eq!(nb.get_bytes("q").await.unwrap(), None);
    let s = b.stats();
    assert_eq!((s.namespace_syncs, s.namespace_changes_seen), (1, 1));
    let s = a.stats();
    assert_eq!(
        (s.namespace_changes_seen, s.namespace_invalidations_pending),
        (0, 0)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_invalidation_while_the_server_is_away_is_ok_pending_then_written() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    assert_eq!(na.generation().await.unwrap(), g1);
    assert_eq!(on_server(&server, "bot"), Some(g0));
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    // The first sync fails to write it too; the server comes back before the second.
    tokio::time::sleep(secs(2)).await;
    settle().await;
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    assert_eq!(
        na.generation().await.unwrap(),
        g1,
        "never the server's older one"
    );
    server.heal();
    tokio::time::sleep(secs(2)).await;
    settle().await;
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(on_server(&server, "bot"), Some(g1));
    // B picked it up at the same sync or at the next one.
    tokio::time::sleep(secs(2)).await;
    settle().await;
    assert_eq!(nb.generation().await.unwrap(), g1);
    assert_eq!(b.stats().namespace_changes_seen, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_generation_deleted_on_the_server_is_bootstrapped_fresh() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    server.delete(&generation_key("bot"));
    tokio::time::sleep(secs(2)).await;
    settle().await;
    let g1 = on_server(&server, "bot").unwrap();
    assert_ne!(g1, g0);
    assert_eq!(na.generation().await.unwrap(), g1);
    assert_eq!(nb.generation().await.unwrap(), g1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_open_breaker_skips_the_sync_and_keeps_the_last_generation() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let na = a.namespace("bot").unwrap();
    let g0 = na.generation().await.unwrap();
    server.fail(None, SharedFault::Io, None);
    for i in 0..3 {
        a.get_bytes(format!("k{i}")).await.unwrap();
    }
    let mgets = server.calls(SharedOpKind::Mget);
    tokio::time::sleep(secs(2)).await;
    settle().await;
    assert_eq!(server.calls(SharedOpKind::Mget), mgets);
    assert_eq!(na.generation().await.unwrap(), g0);
    assert_eq!(a.stats().namespace_syncs, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rolled_back_generation_is_replaced_not_adopted_by_the_replicas_that_left_it() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    na.set_bytes("q", b"old answer").await.unwrap();
    a.flush().await.unwrap();
    let g1 = na.invalidate().await.unwrap();
    tokio::time::sleep(secs(2)).await;
    settle().await;
    assert_eq!(nb.generation().await.unwrap(), g1, "B left g0 for g1");
    // The server rolls back to g0 (a failover to a lagging server, a restore).
    server.plant(
        &generation_key("bot"),
        format!("{g0:016x}").as_bytes(),
        None,
    );
    tokio::time::sleep(secs(2)).await;
    settle().await;
    // Both left g0: neither adopts it; a fresh generation replaces it on the server.
    let g2 = on_server(&server, "bot").unwrap();
    assert!(g2 != g0 && g2 != g1);
    tokio::time::sleep(secs(2)).await;
    settle().await;
    let g2 = on_server(&server, "bot").unwrap();
    assert_eq!(na.generation().await.unwrap(), g2);
    assert_eq!(nb.generation().await.unwrap(), g2);
    assert_eq!(na.get_bytes("q").await.unwrap(), None);
    assert_eq!(nb.get_bytes("q").await.unwrap(), None);
    // A replica that never held g1 cannot tell a rollback: it adopts what the server holds.
    server.plant(
        &generation_key("bot"),
        format!("{g0:016x}").as_bytes(),
        None,
    );
    let c = replica(&server).await;
    let nc = c.namespace("bot").unwrap();
    assert_eq!(nc.generation().await.unwrap(), g0);
}
