//! T6, a slow server: `DEBUG SLEEP 1` (2 in §12) and `CLIENT PAUSE 1000 WRITE` (2000 in §12).
//!
//! - `DEBUG SLEEP`: every get ends within the timeout + ε, timeouts open the breaker, and it
//!   closes within the open timeout once the sleep is over (the row).
//! - `CLIENT PAUSE WRITE`, reads only: every read is a hit, the breaker stays Closed, no error.
//! - `CLIENT PAUSE WRITE` while the same replica writes: the write timeouts are counted, and
//!   no read waits behind a paused write (a read that the breaker admits is not stalled by the
//!   replica's own queued writes); the breaker's behaviour is recorded (one breaker for reads
//!   and writes, by design).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;

const PAUSE: Duration = Duration::from_millis(1000);

#[test]
fn t6_debug_sleep() {
    let _slot = shared_slot();
    debug_sleep(ServerOptions::default());
}

pub fn debug_sleep(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    if server.version().0 < 7 {
        return;
    }
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = config(&server.url(), "t6a").max_open_timeout(OPEN_TIMEOUT);
        let reps = replicas(2, &cfg).await;
        let (seeder, r) = (&reps[0], &reps[1]);
        seed(seeder, "t6a", 3000).await;
        let watch = StateWatch::start(r);
        let traffic = Traffic::start(
            "t6a",
            None,
            r.cache.clone(),
            4,
            Keys::Seeded {
                name: "t6a".into(),
                count: 3000,
            },
        );
        traffic.wait_gets(200).await;
        let r0 = r.stats();
        logs.clear();
        let t_fault = Instant::now();
        let sleeping = server.debug_sleep(PAUSE).await;
        sleeping.await.unwrap();
        let t_end = Instant::now();
        let closed = wait_state(r, BreakerState::Closed, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "{}", watch.timeline());
        traffic.wait_gets(100).await;
        let samples = traffic.stop().await;
        let r1 = r.stats();
        let mut row = traffic_row("T6 debug-sleep", &samples);
        row.fault_to_open = watch.time_to(BreakerState::Open, t_fault);
        // The server cannot answer before its sleep (sent after `t_fault`) ends.
        row.recovery_to_closed = watch.recovery(t_fault + PAUSE, t_end);
        row.log_lines = logs.crate_events().len() as u64;
        row.transitions = transitions_between(&r0, &r1);
        row.print();
        println!(
            "SHARED T6 debug-sleep detail timeouts={} opens={} timeline=[{}]",
            by(&r1.shared_errors_by_kind, "timeout") - by(&r0.shared_errors_by_kind, "timeout"),
            r1.shared_breaker_opens - r0.shared_breaker_opens,
            watch.timeline()
        );
        row.check_standard();
        assert!(row.max_added_latency <= TIMEOUT + SLACK, "{row}");
        assert!(
            row.fault_to_open.is_some(),
            "DEBUG SLEEP did not open the breaker"
        );
        assert!(
            by(&r1.shared_errors_by_kind, "timeout") - by(&r0.shared_errors_by_kind, "timeout")
                >= 3
        );
        let rec = row.recovery_to_closed.expect("closed");
        assert!(rec <= OPEN_TIMEOUT + SLACK, "{rec:?}: {}", watch.timeline());
        for rep in reps {
            rep.close().await.unwrap();
        }
    });
}

#[test]
fn t6_client_pause_write_reads_keep_hitting() {
    let _slot = shared_slot();
    pause_reads_only(ServerOptions::default());
}

pub fn pause_reads_only(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = config(&server.url(), "t6b");
        let reps = replicas(2, &cfg).await;
        let (seeder, r) = (&reps[0], &reps[1]);
        seed(seeder, "t6b", 3000).await;
        let watch = StateWatch::start(r);
        let r0 = r.stats();
        logs.clear();
        server.client_pause(PAUSE, true).await;
        let t_pause = Instant::now();
        let traffic = Traffic::start(
            "t6b",
            None,
            r.cache.clone(),
            4,
            Keys::Seeded {
                name: "t6b".into(),
                count: 3000,
            },
        );
        tokio::time::sleep_until((t_pause + PAUSE - Duration::from_millis(100)).into()).await;
        let samples = traffic.stop().await;
        let r1 = r.stats();
        let mut row = traffic_row("T6 pause-write-reads", &samples);
        row.log_lines = logs.crate_events().len() as u64;
        row.transitions = transitions_between(&r0, &r1);
        row.print();
        row.check_standard();
        let (hits, gets) = hits_in(&samples, t_pause, Instant::now());
        assert!(gets > 0);
        assert_eq!(hits, gets, "reads missed during PAUSE WRITE");
        assert_eq!(
            r1.shared_errors,
            r0.shared_errors,
            "{}",
            shared_figures(&r1)
        );
        assert_eq!(
            watch.changes(),
            0,
            "the breaker moved: {}",
            watch.timeline()
        );
        assert_eq!(r.shared_state(), Some(BreakerState::Closed));
        server.client_unpause().await;
        for rep in reps {
            rep.close().await.unwrap();
        }
    });
}

#[test]
fn t6_client_pause_write_reads_do_not_wait_behind_writes() {
    let _slot = shared_slot();
    pause_reads_and_writes(ServerOptions::default());
}

pub fn pause_reads_and_writes(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = config(&server.url(), "t6c");
        let reps = replicas(2, &cfg).await;
        let (seeder, x) = (&reps[0], &reps[1]);
        seed(seeder, "t6c", 3000).await;
        let watch = StateWatch::start(x);
        let x0 = x.stats();
        logs.clear();
        server.client_pause(PAUSE, true).await;
        let t_pause = Instant::now();
        // The same replica reads seeded keys and writes fresh ones.
        let traffic = Traffic::start(
            "t6c",
            Some(x.cache.clone()),
            x.cache.clone(),
            4,
            Keys::Seeded {
                name: "t6c".into(),
                count: 3000,
            },
        );
        tokio::time::sleep_until((t_pause + PAUSE - Duration::from_millis(100)).into()).await;
        let set_errors = traffic.set_errors.clone();
        let samples = traffic.stop().await;
        server.client_unpause().await;
        x.flush().await.unwrap();
        let x1 = x.stats();
        let mut row = traffic_row("T6 pause-write-mixed", &samples);
        row.fault_to_open = watch.time_to(BreakerState::Open, t_pause);
        row.writes_dropped = x1.shared_writes_dropped - x0.shared_writes_dropped;
        row.log_lines = logs.crate_events().len() as u64;
        row.transitions = transitions_between(&x0, &x1);
        row.print();
        let stalled = samples.iter().filter(|s| s.latency >= TIMEOUT).count();
        let (hits, gets) = hits_in(&samples, t_pause, Instant::now());
        let write_timeouts =
            by(&x1.shared_errors_by_kind, "timeout") - by(&x0.shared_errors_by_kind, "timeout");
        println!(
            "SHARED T6 pause-write-mixed detail read_hits={hits}/{gets} stalled_reads={stalled} \
             write_timeouts={write_timeouts} writes_failed={} opens={} timeline=[{}]",
            x1.shared_writes_failed - x0.shared_writes_failed,
            x1.shared_breaker_opens - x0.shared_breaker_opens,
            watch.timeline()
        );
        row.check_standard();
        assert_eq!(set_errors.load(Ordering::Relaxed), 0);
        assert!(
            write_timeouts >= 1 || x1.shared_writes_failed > x0.shared_writes_failed,
            "paused writes were not counted: {}",
            shared_figures(&x1)
        );
        assert_eq!(
            stalled, 0,
            "{stalled} reads waited a timeout behind the replica's paused writes"
        );
        for rep in reps {
            rep.close().await.unwrap();
        }
    });
}
