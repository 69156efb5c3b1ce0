//! T4, `kill -9` mid-traffic, restart after 1 s (10 s in §12, shortened: the breaker's
//! timers are shortened with it): a writer replica sets fresh keys, a reader replica gets
//! them from Redis (each key once, so every get goes to the network).
//!
//! The standard row, and: the reader's breaker opens after at most 3 failures per in-flight
//! wave (3 + 4 readers - 1); no get waits on the network while Open; every get ends within
//! the timeout; recovery by the PING probe within the capped open timeout of the restart; the
//! hit rate dips to exactly 0 during the outage (the reader has none of these keys) and comes
//! back on the empty Redis; the writer's writes during the outage are dropped, not held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t4";
const READERS: usize = 4;

#[test]
fn t4_kill9_mid_traffic_then_restart() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let server = Arc::new(server);
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = config(&server.url(), PREFIX);
        let reps = replicas(2, &cfg).await;
        let (w, r) = (&reps[0], &reps[1]);
        let watch_r = StateWatch::start(r);
        let watch_w = StateWatch::start(w);
        let t_start = Instant::now();
        let traffic = Traffic::start(
            "t4",
            Some(w.cache.clone()),
            r.cache.clone(),
            READERS,
            Keys::Written { lag: 20 },
        );
        traffic.wait_gets(300).await;
        let (r0, w0) = (r.stats(), w.stats());
        logs.clear();
        let t_fault = Instant::now();
        server.kill9();
        let open = wait_state(r, BreakerState::Open, Duration::from_secs(3)).await;
        assert!(
            open.is_some(),
            "the reader never opened: {}",
            watch_r.timeline()
        );
        wait_state(w, BreakerState::Open, Duration::from_secs(3))
            .await
            .expect("the writer opens too");
        // The outage: 1 s of traffic against nothing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t_restart = Instant::now();
        restart_async(&server).await;
        let t_up = Instant::now();
        // One open timeout at most, then a probe: a PING, and one more when the first met the
        // client's stale connection error.
        let limit = MAX_OPEN_TIMEOUT + 2 * TIMEOUT + SLACK;
        let closed = wait_state(r, BreakerState::Closed, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "the reader never closed: {}",
            watch_r.timeline()
        );
        wait_state(w, BreakerState::Closed, Duration::from_secs(5))
            .await
            .expect("the writer closes too");
        let t_closed = Instant::now();
        // Hits come back on the empty Redis: wait for 50 of them.
        let hits_back = poll_until(Duration::from_secs(5), || {
            hits_in(&traffic.samples(), t_closed, Instant::now()).0 >= 50
        })
        .await;
        let set_errors = traffic.set_errors.clone();
        let samples = traffic.stop().await;
        assert!(hits_back.is_some(), "no hits after recovery");
        let (r1, w1) = (r.stats(), w.stats());

        let at_open = watch_r
            .first(BreakerState::Open, t_fault)
            .expect("Open seen");
        let errors_at_open = at_open.stats.shared_errors - r0.shared_errors;
        assert!(
            errors_at_open < 3 + READERS as u64,
            // at most 3 + (readers - 1): one in-flight wave past the threshold
            "the reader opened after {errors_at_open} failures"
        );
        assert!(errors_at_open >= 1);
        let recovery = watch_r.recovery(t_restart, t_up).expect("Closed seen");
        assert!(
            recovery <= limit,
            "closed {recovery:?} after the restart (limit {limit:?}): {}",
            watch_r.timeline()
        );
        assert!(
            r1.shared_probes_ok > r0.shared_probes_ok,
            "recovery is a probe's"
        );
        // No network wait while Open, and something was tried while Open.
        let while_open: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.state_before == Some(BreakerState::Open))
            .collect();
        assert!(!while_open.is_empty());
        let slow_open: Vec<Duration> = while_open
            .iter()
            .filter(|s| s.latency >= SLACK)
            .map(|s| s.latency)
            .collect();
        // A network wait is the 200 ms timeout; a refused get takes microseconds, plus what
        // a loaded 2-core machine adds (SLACK, 100 ms).
        assert!(
            slow_open.is_empty(),
            "gets that began while the breaker was Open took >= SLACK ({SLACK:?}): {slow_open:?}"
        );
        // The dip: exactly 0 hits between Open and Closed; hits before and after.
        let t_open = at_open.at;
        let (healthy_hits, healthy) = hits_in(&samples, t_start, t_fault);
        let (outage_hits, outage) = hits_in(&samples, t_open, t_restart);
        let (after_hits, after) = hits_in(&samples, t_closed, Instant::now());
        assert_eq!(outage_hits, 0, "hits while Redis was down");
        assert!(outage > 0);
        assert!(
            healthy_hits * 10 >= healthy * 8,
            "healthy hit rate {healthy_hits}/{healthy}"
        );
        assert!(after_hits > 0, "{after_hits}/{after}");

        let mut row = traffic_row("T4 kill-9", &samples);
        row.fault_to_open = watch_r.time_to(BreakerState::Open, t_fault);
        row.recovery_to_closed = Some(recovery);
        row.writes_dropped = w1.shared_writes_dropped - w0.shared_writes_dropped;
        row.log_lines = logs.crate_events().len() as u64;
        row.transitions = transitions_between(&r0, &r1) + transitions_between(&w0, &w1);
        row.print();
        println!(
            "SHARED T4 detail errors_at_open={errors_at_open} hit_rate_healthy={healthy_hits}/{healthy} \
             outage={outage_hits}/{outage} after={after_hits}/{after} writer_dropped_by_reason={:?} \
             reader_timeline=[{}] writer_timeline=[{}]",
            w1.shared_writes_dropped_by_reason,
            watch_r.timeline(),
            watch_w.timeline()
        );
        row.check_standard();
        assert!(
            row.max_added_latency <= TIMEOUT + SLACK,
            "a get took {:?}",
            row.max_added_latency
        );
        assert!(
            row.writes_dropped > 0,
            "writes during the outage were not dropped"
        );
        assert_eq!(
            set_errors.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "set failed"
        );
        // Opens are logged: each replica's Closed -> Open is one WARN.
        let warns = logs
            .shared_events()
            .iter()
            .filter(|e| e.level == tracing::Level::WARN)
            .count() as u64;
        assert!(
            warns >= 2
                && warns
                    <= (r1.shared_breaker_opens - r0.shared_breaker_opens)
                        + (w1.shared_breaker_opens - w0.shared_breaker_opens),
            "{warns} warnings: {:#?}",
            logs.crate_events()
        );
        for rep in reps {
            rep.close().await.unwrap();
        }
    });
}

/// After a `kill -9` and a restart, the first probe that meets the server up closes the
/// breaker: the connection manager's failed reconnect from the outage is not handed to that
/// probe as its answer (it was, and recovery took one more doubled open timeout).
#[test]
fn t4_the_first_probe_after_the_restart_closes_the_breaker() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start_with(ServerOptions::default()) else {
        return;
    };
    let server = Arc::new(server);
    let logs = LogCapture::new();
    run(&logs, async {
        let r = replica(config(&server.url(), "t4probe")).await;
        wait_closed(&r).await;
        assert_eq!(r.get_bytes("warm-up").await.unwrap(), None);
        server.kill9();
        let opened = poll_until_async(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || async {
                let _ = r.get_bytes("k").await;
                r.shared_state() == Some(BreakerState::Open)
            },
        )
        .await;
        assert!(opened.is_some(), "never opened after the kill");
        // Two probes meet the dead server (the first reconnect attempts fail).
        let s = r.stats();
        poll_until(Duration::from_secs(5), || {
            r.stats().shared_probes_run >= s.shared_probes_run + 2
        })
        .await
        .expect("probes run while Open");
        restart_async(&server).await;
        let up = r.stats();
        wait_state(&r, BreakerState::Closed, Duration::from_secs(5))
            .await
            .expect("closed after the restart");
        let after = r.stats();
        let probes = after.shared_probes_run - up.shared_probes_run;
        // 1; 0 when a probe already in flight at the restart met the server up.
        assert!(
            probes <= 1,
            "{probes} probes after the server was up before the breaker closed"
        );
        assert_eq!(after.shared_probes_ok, up.shared_probes_ok + 1);
    });
}
