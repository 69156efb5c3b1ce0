//! T5, a hung server: `SIGSTOP` for 1.5 s (5 s in §12), then `SIGCONT`, under a reader
//! replica getting seeded keys (each once, so each get goes to the network).
//!
//! The standard row, and: every get ends within the timeout + ε (admitted ones pay at most
//! the timeout); 0 network waits while Open; timeouts counted as such; the breaker closes
//! within the open timeout of SIGCONT (open timeout 300 ms, not doubling here); the replies
//! the resumed server sends to requests that timed out are never taken for later requests'
//! (0 wrong answers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t5";
const READERS: usize = 4;
const STOPPED: Duration = Duration::from_millis(1500);

#[test]
fn t5_sigstop_then_sigcont() {
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
        let cfg = config(&server.url(), PREFIX).max_open_timeout(OPEN_TIMEOUT);
        let reps = replicas(2, &cfg).await;
        let (seeder, r) = (&reps[0], &reps[1]);
        seed(seeder, "t5", 3000).await;
        let watch = StateWatch::start(r);
        let traffic = Traffic::start(
            "t5",
            None,
            r.cache.clone(),
            READERS,
            Keys::Seeded {
                name: "t5".into(),
                count: 3000,
            },
        );
        traffic.wait_gets(200).await;
        let r0 = r.stats();
        logs.clear();
        let t_fault = Instant::now();
        sigstop_async(&server).await;
        assert!(
            wait_state(r, BreakerState::Open, Duration::from_secs(3))
                .await
                .is_some(),
            "never opened: {}",
            watch.timeline()
        );
        tokio::time::sleep_until((t_fault + STOPPED).into()).await;
        let t_heal = Instant::now();
        sigcont_async(&server).await;
        let t_cont = Instant::now();
        let closed = wait_state(r, BreakerState::Closed, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "never closed: {}", watch.timeline());
        traffic.wait_gets(200).await;
        let samples = traffic.stop().await;
        let r1 = r.stats();

        let mut row = traffic_row("T5 sigstop", &samples);
        row.fault_to_open = watch.time_to(BreakerState::Open, t_fault);
        row.recovery_to_closed = watch.recovery(t_heal, t_cont);
        row.writes_dropped = r1.shared_writes_dropped - r0.shared_writes_dropped;
        row.log_lines = logs.crate_events().len() as u64;
        row.transitions = transitions_between(&r0, &r1);
        row.print();
        let while_open: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.state_before == Some(BreakerState::Open))
            .collect();
        let waited_open = while_open.iter().filter(|s| s.latency >= SLACK).count();
        println!(
            "SHARED T5 detail timeouts={} gets_while_open={} waited_while_open={waited_open} \
             timeline=[{}]",
            by(&r1.shared_errors_by_kind, "timeout") - by(&r0.shared_errors_by_kind, "timeout"),
            while_open.len(),
            watch.timeline()
        );
        row.check_standard();
        assert!(
            row.max_added_latency <= TIMEOUT + SLACK,
            "a get took {:?} (timeout {TIMEOUT:?})",
            row.max_added_latency
        );
        assert!(!while_open.is_empty());
        // A network wait is the 200 ms timeout; a refused get takes microseconds, plus what
        // a loaded 2-core machine adds (SLACK, 100 ms).
        assert_eq!(
            waited_open, 0,
            "gets that began while Open took >= SLACK ({SLACK:?}): network waits while Open"
        );
        assert!(
            by(&r1.shared_errors_by_kind, "timeout") - by(&r0.shared_errors_by_kind, "timeout")
                >= 3,
            "{}",
            shared_figures(&r1)
        );
        let rec = row.recovery_to_closed.expect("closed after SIGCONT");
        assert!(
            rec <= OPEN_TIMEOUT + SLACK,
            "closed {rec:?} after SIGCONT (open timeout {OPEN_TIMEOUT:?}): {}",
            watch.timeline()
        );
        // After the resume, gets hit again.
        let (after_hits, after) = hits_in(&samples, t_cont + rec, Instant::now());
        assert!(
            after_hits > 0 && after_hits * 10 >= after * 8,
            "{after_hits}/{after}"
        );
        for rep in reps {
            rep.close().await.unwrap();
        }
    });
}
