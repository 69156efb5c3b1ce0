//! Thousands of namespaces invalidated while the server is away, across a crash.

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind, TestDir};

use crate::mem::*;

const N: usize = 2000;

/// `N` namespaces, each answered, then invalidated while the server refuses writes, then a
/// crash (drop without close) and a reopen: every invalidation holds on A (invalidated again
/// at the reopen, with fresh generations), reaches the server once it answers, and B (which
/// saw every answer) stops serving them all.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn thousands_of_pending_invalidations_hold_across_a_crash() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new();
    let nosync = |bld: answercache::Builder| bld.durability(answercache::Durability::NoSync);
    let a = open_with(&dir, &server, nosync).await;
    let names: Vec<String> = (0..N).map(|i| format!("ns-{i}")).collect();
    let mut g0s = Vec::new();
    for n in &names {
        let ns = a.namespace(n).unwrap();
        g0s.push(ns.generation().await.unwrap());
        ns.set_bytes("q", b"old").await.unwrap();
    }
    a.flush().await.unwrap();
    for n in &names {
        assert_eq!(served(&b, n, "q").await.as_deref(), Some("old"), "{n}");
    }
    server.fail(Some(SharedOpKind::Set), SharedFault::Io, None);
    let mut gens = Vec::new();
    for n in &names {
        gens.push(a.namespace(n).unwrap().invalidate().await.unwrap());
    }
    assert_eq!(a.stats().namespace_invalidations_pending, N as u64);
    assert_eq!(marker_files(dir.root()).len(), N);
    drop(a);
    settle().await;
    let a = open_with(&dir, &server, nosync).await;
    assert_eq!(a.stats().namespace_invalidations_pending, N as u64);
    for n in &names {
        assert_eq!(served(&a, n, "q").await, None, "{n}");
    }
    server.heal();
    // The re-invalidations of the reopen opened the shared breaker (the server refused their
    // writes): its probe closes it 5 s later, the sync writes every generation, then removes
    // the 2,000 markers.
    pass(secs(8)).await;
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert_eq!(marker_files(dir.root()), Vec::<String>::new());
    // Each marked namespace was invalidated again at the reopen, with a fresh generation:
    // neither g0 nor the marker's g1 (retired); the server holds A's, and B adopts it.
    for ((n, g0), g1) in names.iter().zip(&g0s).zip(&gens) {
        let now = a.namespace(n).unwrap().generation().await.unwrap();
        assert!(
            now != *g0 && now != *g1,
            "{n}: a fresh generation, not {now:x}"
        );
        assert_eq!(on_server(&server, n), Some(now), "{n}");
        assert_eq!(
            b.namespace(n).unwrap().generation().await.unwrap(),
            now,
            "{n}"
        );
        assert_eq!(served(&a, n, "q").await, None, "{n}");
        assert_eq!(served(&b, n, "q").await, None, "{n}");
    }
    a.close().await.unwrap();
}
