//! Cross-replica single-flight (`shared_single_flight(true)`): one replica loads under the
//! lease while the others poll for its answer; a leader that fails lets a waiter take over;
//! a waiter gives up after `lease_wait_max` and loads itself; without the breaker Closed
//! nothing is leased.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
use answercache::Source;

use crate::support::*;

async fn leased(server: &MemoryShared) -> Replica {
    replica_with(server, |c| c, |b| b.shared_single_flight(true)).await
}

/// What a test loader returns.
type Loading = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>>>>;

/// A loader that counts its calls, takes `ms` and answers `answer` (or fails).
fn loader(
    calls: &Arc<AtomicU32>,
    ms: u64,
    answer: Result<&'static str, &'static str>,
) -> impl FnOnce() -> Loading {
    let calls = calls.clone();
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            answer.map(|a| a.as_bytes().to_vec()).map_err(str::to_owned)
        })
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_replica_loads_and_the_others_are_served_its_answer() {
    let server = MemoryShared::new();
    let replicas = [
        leased(&server).await,
        leased(&server).await,
        leased(&server).await,
    ];
    let calls = Arc::new(AtomicU32::new(0));
    let c = Controls::new().cost(9);
    // Staggered by 1 ms, so that the first one leads.
    let after = |ms: u64, r: &'static Replica| {
        let (c, calls) = (&c, &calls);
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            r.get_or_insert_bytes("q", c, loader(calls, 500, Ok("Paris")))
                .await
        }
    };
    let replicas: &'static [Replica; 3] = Box::leak(Box::new(replicas));
    let (r0, r1, r2) = tokio::join!(
        after(0, &replicas[0]),
        after(1, &replicas[1]),
        after(2, &replicas[2])
    );
    let answers = [r0, r1, r2];
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let sources: Vec<Source> = answers.iter().map(|a| a.as_ref().unwrap().source).collect();
    assert_eq!(
        sources,
        vec![Source::Loaded, Source::Shared, Source::Shared]
    );
    for a in &answers {
        assert_eq!(&*a.as_ref().unwrap().value, b"Paris");
    }
    let s0 = replicas[0].stats();
    assert_eq!((s0.shared_lease_acquired, s0.loader_calls), (1, 1));
    for r in &replicas[1..] {
        let s = r.stats();
        assert_eq!(
            (
                s.shared_lease_waits,
                s.shared_lease_waits_served,
                s.shared_hits,
                s.cost_saved
            ),
            (1, 1, 1, 9)
        );
        assert_eq!(s.loader_calls, 0);
    }
    // The lease is gone, the value stays.
    assert_eq!(server.keys(), vec![entry_key(b"q")], "no lease left behind");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_leader_lets_a_waiter_take_over() {
    let server = MemoryShared::new();
    let (a, b) = (leased(&server).await, leased(&server).await);
    let calls = Arc::new(AtomicU32::new(0));
    let c = Controls::new();
    let (ra, rb) = tokio::join!(
        a.get_or_insert_bytes("q", &c, loader(&calls, 300, Err("model down"))),
        async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            b.get_or_insert_bytes("q", &c, loader(&calls, 300, Ok("Paris")))
                .await
        }
    );
    assert!(ra.is_err());
    let rb = rb.unwrap();
    assert_eq!((&*rb.value, rb.source), (&b"Paris"[..], Source::Loaded));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let s = b.stats();
    assert_eq!(
        (
            s.shared_lease_waits,
            s.shared_lease_takeovers,
            s.shared_lease_acquired
        ),
        (1, 1, 1)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiter_gives_up_after_lease_wait_max_and_loads_itself() {
    let server = MemoryShared::new();
    let edit = |c: answercache::SharedConfig| c.lease_wait_max(Duration::from_secs(2));
    let a = replica_with(&server, edit, |b| b.shared_single_flight(true)).await;
    let b = replica_with(&server, edit, |b| b.shared_single_flight(true)).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = Controls::new();
    let t0 = tokio::time::Instant::now();
    let (ra, rb) = tokio::join!(
        a.get_or_insert_bytes("q", &c, loader(&calls, 30_000, Ok("slow"))),
        async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let r = b
                .get_or_insert_bytes("q", &c, loader(&calls, 10, Ok("fast")))
                .await;
            let waited = t0.elapsed();
            // The slow leader keeps renewing its lease (every 3 s) past the 10 s TTL: at
            // 16 s, renewed at 15 s, 9 s are left.
            tokio::time::sleep_until(t0 + Duration::from_secs(16)).await;
            (r, waited, server.ttl(&lease_key(b"q")))
        }
    );
    let (rb, waited, ttl_at_16s) = rb;
    assert_eq!(&*rb.unwrap().value, b"fast");
    assert_eq!(waited, Duration::from_millis(1 + 2000 + 10));
    assert_eq!(ttl_at_16s, Some(Some(Duration::from_secs(9))));
    assert_eq!(&*ra.unwrap().value, b"slow");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(b.stats().shared_lease_wait_timeouts, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_lease_unless_the_breaker_is_closed() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    server.fail(None, SharedFault::Io, None);
    for i in 0..3 {
        a.get_bytes(format!("k{i}")).await.unwrap();
    }
    let calls = Arc::new(AtomicU32::new(0));
    let r = a
        .get_or_insert_bytes("q", &Controls::new(), loader(&calls, 10, Ok("v")))
        .await
        .unwrap();
    assert_eq!(r.source, Source::Loaded);
    assert_eq!(server.calls(SharedOpKind::Lease), 0);
    assert_eq!(a.stats().shared_lease_acquired, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shared_single_flight_without_a_shared_tier_is_a_config_error() {
    let dir = answercache::testing::TestDir::new();
    let err = dir
        .builder()
        .shared_single_flight(true)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, answercache::Error::Config(ref m) if m.contains("shared_single_flight")),
        "{err}"
    );
}

/// A holder that crashed while loading (its process gone, its lease left on the server with
/// 10 s to live, never renewed, never released): a waiter polls until the lease expires,
/// then takes over and loads, once; it does not wait `lease_wait_max` (60 s).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_crashed_holders_lease_expires_and_a_waiter_takes_over_once() {
    let server = MemoryShared::new();
    let b = leased(&server).await;
    server.plant(
        &lease_key(b"q"),
        b"token-of-a-dead-replica",
        Some(Duration::from_secs(10)),
    );
    let calls = Arc::new(AtomicU32::new(0));
    let t0 = tokio::time::Instant::now();
    let r = b
        .get_or_insert_bytes("q", &Controls::new(), loader(&calls, 10, Ok("Paris")))
        .await
        .unwrap();
    let waited = t0.elapsed();
    assert_eq!((&*r.value, r.source), (&b"Paris"[..], Source::Loaded));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(12),
        "took over after {waited:?}, the dead lease lived 10 s"
    );
    let s = b.stats();
    assert_eq!(
        (
            s.shared_lease_waits,
            s.shared_lease_takeovers,
            s.shared_lease_wait_timeouts,
            s.shared_lease_acquired
        ),
        (1, 1, 0, 1)
    );
    // Its answer is on the server for the others.
    b.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"q")).is_some());
}
