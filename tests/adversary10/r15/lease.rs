//! The lease path while the fence is unknown: a waiter's "the value appeared" is only a
//! poll of the server; what it is served goes through `lookup_shared`, so the E1 rule
//! applies to it too.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{MemoryShared, TestDir};
use answercache::Source;

use super::*;
use crate::r12::leader::loader;

async fn leased_on(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    open_on(dir, server, |c| c, |b| b.shared_single_flight(true)).await
}

/// Run 1 on `dir`: `set k`, shared, `clear`, `close` `Ok`; then the fence is unreadable and
/// the replica reopened 1 ms later.
async fn reopened_blind(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    let a = leased_on(dir, server).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.clear().await.unwrap();
    a.close().await.unwrap();
    fence_unreadable(dir, None);
    tokio::time::sleep(Duration::from_millis(1)).await;
    leased_on(dir, server).await
}

/// Another replica holds the lease of `k` (a live leader's key, 10 s TTL) while the server
/// holds the answer this replica cleared before its restart: the waiter's poll sees a value
/// ("appeared"), but it is not served; the waiter loads its own answer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiter_is_not_served_the_cleared_answer_the_poll_saw() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let a = reopened_blind(&dir, &server).await;
    server.plant(
        &lease_key(b"k"),
        b"0123456789abcdef0123456789abcdef",
        Some(Duration::from_secs(10)),
    );
    let calls = Arc::new(AtomicU32::new(0));
    let got = a
        .get_or_insert_bytes(
            "k",
            &Controls::new(),
            loader(&calls, b"loaded here", Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&got.value).into_owned(),
            got.source,
            calls.load(Ordering::SeqCst)
        ),
        ("loaded here".to_owned(), Source::Loaded, 1)
    );
    assert_eq!(a.stats().shared_hits, 0);
}

/// A leader on another replica (opened after this one) loads `k2` for 1 s; this replica,
/// fence unreadable, does not read the shared tier (G1), so it does not wait for the lease
/// either: it loads its own answer at once (the leader's, in flight for 1 s, is not awaited).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_replica_with_its_fence_unreadable_loads_without_waiting_for_a_lease() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let a = reopened_blind(&dir, &server).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let b = crate::r12::leader::leased(&server).await;
    let (b_calls, a_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let controls = Controls::new();
    let lead = b.get_or_insert_bytes(
        "k2",
        &controls,
        loader(&b_calls, b"the leader's answer", Duration::from_secs(1)),
    );
    let wait = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        a.get_or_insert_bytes(
            "k2",
            &Controls::new(),
            loader(&a_calls, b"the waiter's own", Duration::ZERO),
        )
        .await
    };
    let (led, waited) = tokio::join!(lead, wait);
    let (led, waited) = (led.unwrap(), waited.unwrap());
    assert_eq!(
        (&led.value[..], led.source),
        (&b"the leader's answer"[..], Source::Loaded)
    );
    assert_eq!(
        (&waited.value[..], waited.source),
        (&b"the waiter's own"[..], Source::Loaded)
    );
    assert_eq!(
        (
            b_calls.load(Ordering::SeqCst),
            a_calls.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    let s = a.stats();
    assert_eq!((s.shared_lease_waits, s.shared_lease_acquired), (0, 0));
}
