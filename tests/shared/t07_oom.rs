//! T7, Redis out of memory (`maxmemory 1mb`, `noeviction`, `DEBUG POPULATE`): writes are
//! refused with OOM, reads still served.
//!
//! Asserted: every refused write is counted in `shared_write_rejected_oom` (exactly one per
//! set), none as a failure or an error; reads still hit; the breaker stays Closed (no
//! transition, no open); exactly 1 WARN for the episode however many writes it refuses;
//! writes succeed again once memory is back.

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t7";

#[test]
fn t7_oom_rejects_writes_keeps_reads_and_the_breaker() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    if server.version().0 < 7 {
        return;
    }
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = config(&server.url(), PREFIX);
        let reps = replicas(2, &cfg).await;
        let (seeder, r) = (&reps[0], &reps[1]);
        seed(seeder, "t7-seed", 20).await;
        server.fill_to_oom().await;
        let watch = StateWatch::start(r);
        let r0 = r.stats();
        logs.clear();

        // A first burst of writes: each refused with OOM.
        for i in 0..30u64 {
            let k = format!("t7-oom-{i}");
            r.set_bytes(k.as_str(), value(&k, i, 256)).await.unwrap();
        }
        r.flush().await.unwrap();
        let r1 = r.stats();
        assert_eq!(
            r1.shared_write_rejected_oom - r0.shared_write_rejected_oom,
            30,
            "{}",
            shared_figures(&r1)
        );
        assert_eq!(r1.shared_writes_ok, r0.shared_writes_ok);
        assert_eq!(
            r1.shared_writes_failed, r0.shared_writes_failed,
            "OOM is not a failure"
        );
        assert_eq!(r1.shared_errors, r0.shared_errors, "OOM is not an error");
        for i in 0..30u64 {
            assert!(
                !server
                    .exists(&entry_key(PREFIX, format!("t7-oom-{i}").as_bytes()))
                    .await
            );
        }

        // Reads still hit.
        for j in 0..20u64 {
            let k = format!("t7-seed-{j}");
            let v = r.get_bytes(k.as_str()).await.unwrap();
            check_value(&k, &v.expect("a read during OOM is a hit")).unwrap();
        }
        assert_eq!(r.stats().shared_hits - r0.shared_hits, 20);

        // A second burst in the same episode: counted, not logged again.
        for i in 30..40u64 {
            let k = format!("t7-oom-{i}");
            r.set_bytes(k.as_str(), value(&k, i, 256)).await.unwrap();
        }
        r.flush().await.unwrap();
        let r2 = r.stats();
        assert_eq!(
            r2.shared_write_rejected_oom - r0.shared_write_rejected_oom,
            40
        );
        assert_eq!(r.shared_state(), Some(BreakerState::Closed));
        assert_eq!(r2.shared_breaker_opens, r0.shared_breaker_opens);
        assert_eq!(
            watch.changes(),
            0,
            "the breaker moved: {}",
            watch.timeline()
        );
        let warns = logs.crate_warnings();
        assert_eq!(warns.len(), 1, "one WARN per OOM episode: {warns:#?}");
        let text = warns[0].line().to_lowercase();
        assert!(
            text.contains("oom") || text.contains("maxmemory"),
            "the warning does not say what happened: {text}"
        );
        assert!(
            warns[0].target.starts_with("answercache::shared"),
            "{}",
            warns[0].target
        );

        // Memory back: writes land again.
        server.config_set("maxmemory", "0").await;
        for i in 0..5u64 {
            let k = format!("t7-after-{i}");
            r.set_bytes(k.as_str(), value(&k, i, 256)).await.unwrap();
        }
        r.flush().await.unwrap();
        let r3 = r.stats();
        assert_eq!(r3.shared_writes_ok - r2.shared_writes_ok, 5);
        for i in 0..5u64 {
            assert!(
                server
                    .exists(&entry_key(PREFIX, format!("t7-after-{i}").as_bytes()))
                    .await
            );
        }
        println!(
            "\nSHARED T7 oom_rejected={} reads_hit=20/20 breaker={:?} opens={} warns={} \
             writes_after_recovery={} oom_warning={:?}",
            r2.shared_write_rejected_oom - r0.shared_write_rejected_oom,
            r.shared_state(),
            r2.shared_breaker_opens - r0.shared_breaker_opens,
            warns.len(),
            r3.shared_writes_ok - r2.shared_writes_ok,
            warns[0].line()
        );
        for rep in reps {
            rep.close().await.unwrap();
        }
    });
}
