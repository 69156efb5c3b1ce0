//! The shared breaker: it starts Open and the start-up `PING` closes it (`build()` never
//! waits); exactly `failure_threshold` failures open it, with one log event; while Open the
//! server is not called; the timer-driven probe closes it; OOM is not a failure and warns
//! once per episode.

use std::time::Duration;

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind, TestDir};
use answercache::BreakerState;

use crate::support::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn build_does_not_wait_and_the_first_ping_closes_the_breaker() {
    let server = MemoryShared::new();
    server.latency(Duration::from_millis(50));
    let dir = TestDir::new();
    let t0 = tokio::time::Instant::now();
    let cache = dir
        .builder()
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    assert_eq!(cache.shared_state(), Some(BreakerState::Open));
    assert_eq!(t0.elapsed(), Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(50)).await;
    settle().await;
    assert_eq!(cache.shared_state(), Some(BreakerState::Closed));
    let s = cache.stats();
    assert_eq!(
        (
            s.shared_probes_run,
            s.shared_probes_ok,
            s.shared_breaker_opens
        ),
        (1, 1, 0)
    );
    assert_eq!(s.shared_state, Some(BreakerState::Closed));
    // Without a shared tier: None.
    let plain = TestDir::new().builder().build().await.unwrap();
    assert_eq!(
        (plain.shared_state(), plain.stats().shared_state),
        (None, None)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn three_failures_open_it_and_the_probe_closes_it() {
    let (logs, _guard) = Logs::capture();
    let server = MemoryShared::new();
    let b = replica(&server).await;
    server.fail(Some(SharedOpKind::Get), SharedFault::Io, None);
    for i in 0..3 {
        assert_eq!(b.get_bytes(format!("k{i}")).await.unwrap(), None);
    }
    assert_eq!(b.shared_state(), Some(BreakerState::Open));
    let s = b.stats();
    assert_eq!((s.shared_errors, s.shared_errors_by_kind["io"]), (3, 3));
    assert_eq!((s.shared_breaker_opens, s.shared_misses), (1, 3));
    // While Open: a miss without a call.
    assert_eq!(b.get_bytes("k9").await.unwrap(), None);
    assert_eq!(server.calls(SharedOpKind::Get), 3);
    assert_eq!(b.stats().shared_rejections, 1);
    assert_eq!(
        logs.lines_with("shared tier circuit breaker opened").len(),
        1
    );
    // The server is back: 5 s later the probe closes the breaker.
    server.heal();
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(b.shared_state(), Some(BreakerState::Closed));
    let s = b.stats();
    assert_eq!((s.shared_probes_run, s.shared_probes_ok), (2, 2));
    // Closed at start, Open, then HalfOpen and Closed: four events, one each.
    assert_eq!(logs.lines_with("shared tier circuit breaker").len(), 4);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_probe_doubles_the_open_time() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    server.fail(None, SharedFault::Auth, None);
    for i in 0..3 {
        b.get_bytes(format!("k{i}")).await.unwrap();
    }
    assert_eq!(b.stats().shared_errors_by_kind["auth"], 3);
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(b.shared_state(), Some(BreakerState::Open));
    server.heal();
    // 10 s this time: still Open after 9.
    tokio::time::sleep(Duration::from_secs(9)).await;
    settle().await;
    assert_eq!(b.shared_state(), Some(BreakerState::Open));
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(b.shared_state(), Some(BreakerState::Closed));
    let s = b.stats();
    assert_eq!(
        (
            s.shared_probes_run,
            s.shared_probes_ok,
            s.shared_breaker_opens
        ),
        (3, 2, 2)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_failure_kind_is_counted_under_its_name() {
    let server = MemoryShared::new();
    let b = replica_with(&server, |c| c.failure_threshold(100), |b| b).await;
    for fault in [
        SharedFault::Timeout,
        SharedFault::Io,
        SharedFault::Auth,
        SharedFault::Server,
        SharedFault::Protocol,
        SharedFault::Hang,
    ] {
        server.fail(Some(SharedOpKind::Get), fault, Some(1));
        assert_eq!(b.get_bytes("k").await.unwrap(), None);
    }
    let s = b.stats();
    let by: Vec<(&str, u64)> = s
        .shared_errors_by_kind
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by,
        vec![
            ("auth", 1),
            ("io", 1),
            ("protocol", 1),
            ("server", 1),
            ("timeout", 2)
        ]
    );
    assert_eq!(b.shared_state(), Some(BreakerState::Closed));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn oom_keeps_the_breaker_closed_and_warns_once_per_episode() {
    let (logs, _guard) = Logs::capture();
    let server = MemoryShared::new();
    let a = replica(&server).await;
    server.oom(true);
    for i in 0..5 {
        a.set_bytes(format!("k{i}"), b"v").await.unwrap();
        a.flush().await.unwrap();
    }
    let s = a.stats();
    assert_eq!(
        (
            s.shared_write_rejected_oom,
            s.shared_writes_failed,
            s.shared_errors
        ),
        (5, 0, 0)
    );
    assert_eq!(a.shared_state(), Some(BreakerState::Closed));
    assert_eq!(logs.lines_with("OOM").len(), 1);
    // Reads still work during the episode.
    server.plant(&entry_key(b"r"), &entry(b"r", b"v", now_ms(), 0, 0), None);
    assert_eq!(a.get_bytes("r").await.unwrap().as_deref(), Some(&b"v"[..]));
    // An accepted write ends the episode; the next OOM warns again.
    server.oom(false);
    a.set_bytes("ok", b"v").await.unwrap();
    a.flush().await.unwrap();
    server.oom(true);
    a.set_bytes("again", b"v").await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(logs.lines_with("OOM").len(), 2);
    assert_eq!(a.stats().shared_write_rejected_oom, 6);
}
