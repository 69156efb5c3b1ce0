//! Thousands of namespaces invalidated while the server is away, across a crash.

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind, TestDir};

use crate::mem::*;

const N: usize = 2000;

/// `N` namespaces, each answered, then invalidated while the server refuses writes, then a
/// crash (drop without close) and a reopen: every invalidation holds on A, reaches the
/// server once it answers, and B (which saw every answer) stops serving them all.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn thousands_of_pending_invalidations_hold_across_a_crash() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new();
    let nosync = |bld: answercache::Builder| bld.durability(answercache::Durability::NoSync);
    let a = open_with(&dir, &server, nosync).await;
    let names: Vec<String> = (0..N).map(|i| format!("ns-{i}")).collect();
    for n in &names {
        let ns = a.namespace(n).unwrap();
        ns.generation().await.unwrap();
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
    server.heal();
    pass(secs(6)).await;
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    assert!(marker_files(dir.root()).is_empty());
    for (n, g) in names.iter().zip(&gens) {
        assert_eq!(on_server(&server, n), Some(*g), "{n}");
        assert_eq!(served(&a, n, "q").await, None, "{n}");
        assert_eq!(served(&b, n, "q").await, None, "{n}");
    }
    a.close().await.unwrap();
}
