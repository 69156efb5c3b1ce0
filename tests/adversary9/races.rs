//! Invalidations racing the namespace sync, and the server flushed under the replicas.

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};

use crate::mem::*;

/// Waits (on the paused clock, 1 ms at a time, 5 s at most) until the server has seen more
/// than `n` calls of `op`.
async fn until_calls(server: &MemoryShared, op: SharedOpKind, n: u64) {
    for _ in 0..5000 {
        if server.calls(op) > n {
            return;
        }
        tokio::time::sleep(ms(1)).await;
    }
    panic!("the server never saw call {} of {op:?}", n + 1);
}

/// A's first invalidation (g1) is pending (the server refused it); an answer is stored in
/// g1. The server comes back, slow: A's sync starts writing g1, and while that write is in
/// flight A invalidates again (g2), written inline at once. The sync's write of g1 lands
/// after it. Then A closes. Promised: B stops serving answers stored before A's second
/// `Ok` invalidate within the sync interval plus the timeout.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_sync_retrying_an_older_pending_generation_never_overwrites_a_newer_invalidation() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    store(&a, "bot", "q", "answer between the two invalidations").await;
    // The server answers again, 100 ms per call (under the 200 ms timeout).
    server.heal();
    server.latency(ms(100));
    let sets = server.calls(SharedOpKind::Set);
    until_calls(&server, SharedOpKind::Set, sets).await; // the sync's SET of g1, in flight
    server.latency(std::time::Duration::ZERO);
    let g2 = na.invalidate().await.unwrap();
    assert_ne!(g2, g1);
    assert_eq!(on_server(&server, "bot"), Some(g2));
    pass(ms(300)).await; // the sync's write has landed
    let after = on_server(&server, "bot");
    a.close().await.unwrap();
    assert_eq!(
        after,
        Some(g2),
        "the server holds g1 again (g1 = {g1:x}, g2 = {g2:x}) after A's second Ok invalidate"
    );
    pass(secs(5)).await;
    assert_eq!(
        served(&b, "bot", "q").await,
        None,
        "B serves an answer stored before A's second Ok invalidate"
    );
}

/// Two invalidations of one namespace on two replicas at once, one of them while a sync
/// runs: every replica ends on the generation the server holds, which is one of the two,
/// and no replica serves the answer stored before them.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two_invalidations_racing_a_sync_converge_without_old_answers() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    store(&a, "bot", "q", "old answer").await;
    assert_eq!(served(&b, "bot", "q").await.as_deref(), Some("old answer"));
    server.latency(ms(50));
    let mgets = server.calls(SharedOpKind::Mget);
    until_calls(&server, SharedOpKind::Mget, mgets).await; // a sync's MGET in flight
    let (ga, gb) = tokio::join!(na.invalidate(), nb.invalidate());
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    server.latency(std::time::Duration::ZERO);
    pass(secs(5)).await;
    let now = on_server(&server, "bot").unwrap();
    assert!(now != g0);
    for r in [&a, &b] {
        assert_eq!(r.namespace("bot").unwrap().generation().await.unwrap(), now);
        assert_eq!(served(r, "bot", "q").await, None);
    }
    assert!(
        now == ga || now == gb,
        "{now:x} is neither {ga:x} nor {gb:x}"
    );
}

/// `FLUSHALL` after an invalidation: the replicas bootstrap a fresh generation (misses),
/// never one they left.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flushed_server_gives_misses_never_old_answers() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    store(&a, "bot", "q", "old answer").await;
    let g1 = na.invalidate().await.unwrap();
    pass(secs(3)).await;
    assert_eq!(nb.generation().await.unwrap(), g1);
    for k in server.keys() {
        server.delete(&k);
    }
    pass(secs(5)).await;
    let now = on_server(&server, "bot").unwrap();
    assert!(now != g0 && now != g1);
    for r in [&a, &b] {
        assert_eq!(r.namespace("bot").unwrap().generation().await.unwrap(), now);
        assert_eq!(served(r, "bot", "q").await, None);
    }
}

/// A's invalidation (g1) is pending: the server refused it; A stores an answer in g1. Then
/// B, which reaches the server, invalidates (g2, on the server at once), before A's next
/// sync. A's sync then writes its pending g1. Promised to B: B never again serves an answer
/// stored in the namespace before its `Ok` invalidate, and the others (A) stop serving them
/// within the sync interval plus the timeout.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_late_pending_generation_never_undoes_a_newer_invalidation_of_another_replica() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let g1 = na.invalidate().await.unwrap();
    store(&a, "bot", "q", "A's answer, stored before B's invalidation").await;
    server.heal();
    let g2 = nb.invalidate().await.unwrap();
    assert_eq!(on_server(&server, "bot"), Some(g2));
    pass(secs(5)).await;
    let now = on_server(&server, "bot");
    assert_ne!(now, Some(g1), "the server went back to A's older g1");
    assert_eq!(
        served(&b, "bot", "q").await,
        None,
        "B serves an answer stored before its own Ok invalidate"
    );
    assert_eq!(served(&a, "bot", "q").await, None);
}

/// A server that answers but refuses writes (`OOM` under `noeviction`) while A invalidates:
/// `Ok`, pending (FORMAT.md: "refusing writes"), never the server's older generation on A;
/// once the server takes writes again, B stops serving the old answer at the next syncs.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_invalidation_refused_with_oom_is_pending_then_reaches_the_others() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    let (na, nb) = (a.namespace("bot").unwrap(), b.namespace("bot").unwrap());
    let g0 = na.generation().await.unwrap();
    assert_eq!(nb.generation().await.unwrap(), g0);
    store(&a, "bot", "q", "old answer").await;
    assert_eq!(served(&b, "bot", "q").await.as_deref(), Some("old answer"));
    server.oom(true);
    let g1 = na.invalidate().await.unwrap();
    assert_eq!(a.stats().namespace_invalidations_pending, 1);
    pass(secs(5)).await;
    assert_eq!(on_server(&server, "bot"), Some(g0));
    assert_eq!(na.generation().await.unwrap(), g1);
    assert_eq!(served(&a, "bot", "q").await, None);
    server.oom(false);
    pass(secs(5)).await;
    assert_eq!(on_server(&server, "bot"), Some(g1));
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(nb.generation().await.unwrap(), g1);
    assert_eq!(served(&b, "bot", "q").await, None);
}
