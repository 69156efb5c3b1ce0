//! The shared tier never fails or blocks a caller, and stays bounded, under a hung server:
//! `close` while the drain is stuck, a drop without `close`, the write queue's byte bound
//! with every write accounted for, auth revoked mid-traffic with one log event per
//! transition; scripted faults on the in-memory stand-in with exact counters.

use std::time::{Duration, Instant};

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

/// `close()` while the server is stopped and the drain is stuck on a batch: returns `Ok`
/// within the timeouts; every one of the 300 writes is accounted (ok + failed + dropped).
#[test]
fn close_with_a_stuck_drain_is_bounded_and_accounts_every_write() {
    let _slot = exclusive_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let a = replica(cfg(&server, "a8close", 3)).await;
        wait_closed(&a).await;
        sigstop_async(&server).await;
        let t = Instant::now();
        for i in 0..300u64 {
            a.set_bytes(format!("k{i}").as_str(), value("k", i, 1024))
                .await
                .unwrap();
        }
        let sets = t.elapsed();
        let t = Instant::now();
        a.close().await.unwrap();
        let closing = t.elapsed();
        sigcont_async(&server).await;
        let s = a.stats();
        assert!(closing < Duration::from_secs(2), "close took {closing:?}");
        assert!(sets < Duration::from_secs(5), "300 sets took {sets:?}");
        assert_eq!(
            s.shared_writes_ok + s.shared_writes_failed + s.shared_writes_dropped,
            300,
            "{}",
            shared_figures(&s)
        );
        assert_eq!((s.shared_queue_entries, s.shared_queue_bytes), (0, 0));
    });
}

/// Dropping every handle without `close` while the server is stopped: the runtime shuts
/// down promptly (no task waits on the server past its timeout).
#[test]
fn drop_without_close_under_a_hung_server() {
    let _slot = exclusive_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    let t = Instant::now();
    run(&logs, async {
        let a = replica(cfg(&server, "a8drop", 3)).await;
        wait_closed(&a).await;
        sigstop_async(&server).await;
        for i in 0..50u64 {
            a.set_bytes(format!("k{i}").as_str(), "v").await.unwrap();
        }
        drop(a);
    });
    let took = t.elapsed();
    server.sigcont();
    assert!(
        took < Duration::from_secs(3),
        "drop and shutdown took {took:?}"
    );
}

/// The byte bound of the write queue under a hung server and values of 4 KiB: the gauge
/// never passes it, sets never wait on the stopped server (under 1 s each on a loaded
/// machine, where waiting would mean for ever), and after close every write is accounted.
#[test]
fn write_queue_byte_bound_holds_under_a_hung_server() {
    let _slot = exclusive_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        const BOUND: usize = 64 << 10;
        let a = replica(cfg(&server, "a8bound", 1000).write_queue_bytes(BOUND)).await;
        wait_closed(&a).await;
        sigstop_async(&server).await;
        let mut peak = 0u64;
        let mut slowest = Duration::ZERO;
        for i in 0..1000u64 {
            let t = Instant::now();
            a.set_bytes(format!("k{i}").as_str(), value("k", i, 4096))
                .await
                .unwrap();
            slowest = slowest.max(t.elapsed());
            peak = peak.max(a.stats().shared_queue_bytes);
        }
        assert!(peak <= BOUND as u64, "queue bytes {peak} > {BOUND}");
        assert!(
            slowest < Duration::from_millis(150),
            "a set waited {slowest:?}"
        );
        let s = a.stats();
        assert!(by(&s.shared_writes_dropped_by_reason, "queue_full") > 0);
        a.close().await.unwrap();
        sigcont_async(&server).await;
        let s = a.stats();
        assert_eq!(
            s.shared_writes_ok + s.shared_writes_failed + s.shared_writes_dropped,
            1000,
            "{}",
            shared_figures(&s)
        );
    });
}

/// `requirepass` and `CLIENT KILL` mid-traffic: gets and sets never fail, the breaker opens
/// on auth errors, one warning names the transition, nothing is logged per request; the
/// password removed, the probe closes it again.
#[test]
fn auth_revoked_mid_traffic() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let a = replica(cfg(&server, "a8auth", 3)).await;
        wait_closed(&a).await;
        a.set_bytes("k", "v").await.unwrap();
        a.flush().await.unwrap();
        logs.clear();
        let before = a.stats();
        server.require_password("s3cret").await;
        for i in 0..200u64 {
            a.set_bytes(format!("n{i}").as_str(), "x").await.unwrap();
            assert_eq!(a.get_bytes(format!("m{i}").as_str()).await.unwrap(), None);
        }
        wait_open(&a).await;
        let s = a.stats();
        assert!(
            by(&s.shared_errors_by_kind, "auth") >= 1,
            "{}",
            shared_figures(&s)
        );
        assert!(s.shared_breaker_opens >= 1, "{}", shared_figures(&s));
        server.remove_password().await;
        wait_closed(&a).await;
        let s = a.stats();
        let events = logs.shared_events();
        assert_eq!(
            events.len() as u64,
            transitions_between(&before, &s),
            "one event per transition: {:#?}",
            events.iter().map(|e| e.line()).collect::<Vec<_>>()
        );
        a.close().await.unwrap();
    });
}

/// A scripted fault sequence on the in-memory stand-in, counters exact: 3 I/O failures open
/// the breaker (1 open, 3 errors, 3 misses), 2 more gets are rejections without a call,
/// sets while Open are dropped (breaker_open), a remove's `DEL` is kept (not dropped), and
/// exactly one warning is logged.
#[test]
fn scripted_faults_exact_counters() {
    let logs = LogCapture::new();
    run(&logs, async {
        let mem = MemoryShared::new();
        let dir = tempfile::tempdir().unwrap();
        let cache = local_builder(dir.path())
            .shared(
                mem.config()
                    .failure_threshold(3)
                    .open_timeout(DAY)
                    .max_open_timeout(DAY)
                    .namespace_sync_interval(Duration::ZERO),
            )
            .build()
            .await
            .unwrap();
        wait_closed(&cache).await;
        logs.clear();
        mem.fail(Some(SharedOpKind::Get), SharedFault::Io, None);
        for i in 0..5 {
            assert_eq!(
                cache.get_bytes(format!("q{i}").as_str()).await.unwrap(),
                None
            );
        }
        assert_eq!(cache.shared_state(), Some(BreakerState::Open));
        cache.set_bytes("s", "v").await.unwrap();
        cache.remove("s").await.unwrap();
        let s = cache.stats();
        assert_eq!(mem.calls(SharedOpKind::Get), 3);
        assert_eq!(
            (
                s.shared_errors,
                by(&s.shared_errors_by_kind, "io"),
                s.shared_misses,
                s.shared_rejections,
                s.shared_breaker_opens,
                s.shared_hits,
                s.misses,
            ),
            (3, 3, 3, 2, 1, 0, 5)
        );
        assert_eq!(
            (
                s.shared_writes_dropped,
                by(&s.shared_writes_dropped_by_reason, "breaker_open")
            ),
            (1, 1),
            "the set is dropped; the remove's DEL is kept for when the server is back"
        );
        assert_eq!(s.shared_queue_entries, 1, "the kept DEL");
        let warns: Vec<_> = logs
            .shared_events()
            .into_iter()
            .filter(|e| e.level == tracing::Level::WARN)
            .collect();
        assert_eq!(
            warns.len(),
            1,
            "{:#?}",
            warns.iter().map(|e| e.line()).collect::<Vec<_>>()
        );
        assert_eq!(logs.shared_events().len(), 1);
        cache.close().await.unwrap();
    });
}
