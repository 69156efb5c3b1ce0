//! T8, auth: `requirepass` plus `CLIENT KILL` (the replica reconnects and gets NOAUTH), then the
//! password removed.
//!
//! The standard row, and: auth errors counted as `auth`; the breaker opens with exactly 1 WARN
//! that names auth; the probe closes it after the removal (no user traffic needed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t8";

#[test]
fn t8_noauth_opens_with_one_warning_then_recovers() {
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
        // A long enough open timeout that no probe runs before the password is removed.
        let cfg = config(&server.url(), PREFIX)
            .open_timeout(Duration::from_millis(600))
            .max_open_timeout(Duration::from_millis(600));
        let reps = replicas(2, &cfg).await;
        let (seeder, r) = (&reps[0], &reps[1]);
        seed(seeder, "t8", 3000).await;
        // Idle from here: only the reader meets the fault.
        seeder.close().await.unwrap();
        let watch = StateWatch::start(r);
        let traffic = Traffic::start(
            "t8",
            None,
            r.cache.clone(),
            2,
            Keys::Seeded {
                name: "t8".into(),
                count: 3000,
            },
        );
        traffic.wait_gets(100).await;
        let r0 = r.stats();
        logs.clear();
        let t_fault = Instant::now();
        server.require_password("s3cret").await;
        let opened = wait_state(r, BreakerState::Open, Duration::from_secs(3)).await;
        assert!(
            opened.is_some(),
            "NOAUTH never opened the breaker: {}",
            watch.timeline()
        );
        let t_heal = Instant::now();
        server.remove_password().await;
        let t_rec = Instant::now();
        let closed = wait_state(r, BreakerState::Closed, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "{}", watch.timeline());
        traffic.wait_gets(50).await;
        let samples = traffic.stop().await;
        let r1 = r.stats();
        let mut row = traffic_row("T8 auth", &samples);
        row.fault_to_open = watch.time_to(BreakerState::Open, t_fault);
        row.recovery_to_closed = watch.recovery(t_heal, t_rec);
        row.log_lines = logs.crate_events().len() as u64;
        row.transitions = transitions_between(&r0, &r1);
        row.print();
        let warns = logs.crate_warnings();
        println!(
            "SHARED T8 detail errors_by_kind={:?} warns={} warning={:?} timeline=[{}]",
            r1.shared_errors_by_kind,
            warns.len(),
            warns.first().map(|w| w.line()),
            watch.timeline()
        );
        row.check_standard();
        assert!(
            by(&r1.shared_errors_by_kind, "auth") > by(&r0.shared_errors_by_kind, "auth"),
            "NOAUTH not counted as auth: {:?}",
            r1.shared_errors_by_kind
        );
        assert_eq!(r1.shared_breaker_opens - r0.shared_breaker_opens, 1);
        assert_eq!(warns.len(), 1, "{warns:#?}");
        assert!(
            warns[0].line().to_lowercase().contains("auth"),
            "the warning does not name auth: {}",
            warns[0].line()
        );
        assert!(r1.shared_probes_ok > r0.shared_probes_ok);
        let rec = row.recovery_to_closed.expect("closed");
        assert!(rec <= Duration::from_millis(600) + SLACK, "{rec:?}");
        assert!(row.max_added_latency <= TIMEOUT + SLACK, "{row}");
        r.close().await.unwrap();
    });
}
