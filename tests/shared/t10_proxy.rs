//! T10, network faults through the fault proxy (a TCP server behind it): +50 ms and +300 ms
//! latency, a blackhole, an RST on every connection.
//!
//! - +50 ms: every get a hit, each taking 50 ms to 50 ms + ε; breaker Closed, no error.
//! - +300 ms: timeouts (each get within timeout + ε) open the breaker; it closes once the
//!   latency is gone.
//! - blackhole: as SIGSTOP (timeouts, Open, Closed after the heal).
//! - RST after 0 bytes: as a crash (I/O errors, Open, Closed after).
//!
//! Each fault prints its row and meets the standard criteria.

use std::time::{Duration, Instant};

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t10";

#[test]
fn t10_latency_blackhole_reset_through_the_proxy() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

/// Runs `fault` under reader traffic through the proxy, lifts it with `heal`, and returns the
/// row (standard criteria checked) and the error counts by kind during it.
async fn under_fault(
    name: &str,
    r: &Replica,
    seed_name: &str,
    fault: impl FnOnce(),
    heal: impl FnOnce(),
    logs: &LogCapture,
) -> (Row, std::collections::BTreeMap<String, u64>) {
    let watch = StateWatch::start(r);
    let traffic = Traffic::start(
        name,
        None,
        r.cache.clone(),
        4,
        Keys::Seeded {
            name: seed_name.into(),
            count: 1500,
        },
    );
    traffic.wait_gets(50).await;
    let r0 = r.stats();
    logs.clear();
    let t_fault = Instant::now();
    fault();
    let opened = wait_state(r, BreakerState::Open, Duration::from_secs(3)).await;
    assert!(
        opened.is_some(),
        "{name}: never opened: {}",
        watch.timeline()
    );
    traffic.wait_gets(20).await;
    let t_heal_began = Instant::now();
    heal();
    let t_heal = Instant::now();
    let closed = wait_state(r, BreakerState::Closed, Duration::from_secs(3)).await;
    assert!(
        closed.is_some(),
        "{name}: never closed: {}",
        watch.timeline()
    );
    traffic.wait_gets(50).await;
    let samples = traffic.stop().await;
    let r1 = r.stats();
    let mut row = traffic_row(name, &samples);
    row.fault_to_open = watch.time_to(BreakerState::Open, t_fault);
    row.recovery_to_closed = watch.recovery(t_heal_began, t_heal);
    row.log_lines = logs.crate_events().len() as u64;
    row.transitions = transitions_between(&r0, &r1);
    row.print();
    let kinds: std::collections::BTreeMap<String, u64> = r1
        .shared_errors_by_kind
        .iter()
        .map(|(k, v)| (k.clone(), v - by(&r0.shared_errors_by_kind, k)))
        .collect();
    println!(
        "SHARED {name} detail errors_by_kind={kinds:?} timeline=[{}]",
        watch.timeline()
    );
    row.check_standard();
    assert!(row.max_added_latency <= TIMEOUT + SLACK, "{row}");
    let rec = row.recovery_to_closed.expect("closed");
    assert!(rec <= MAX_OPEN_TIMEOUT + TIMEOUT + SLACK, "{name}: {rec:?}");
    (row, kinds)
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(ServerOptions { tcp: true, ..opts }) else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let proxy = FaultProxy::start(server.tcp_addr()).await;
        let seeder = replica(config(&server.url(), PREFIX)).await;
        wait_closed(&seeder.cache).await;
        for s in ["t10-lat", "t10-slow", "t10-bh", "t10-rst"] {
            seed(&seeder, s, 1500).await;
        }
        seeder.close().await.unwrap();
        let r = replica(config(&proxy.url(), PREFIX)).await;
        wait_closed(&r.cache).await;

        // +50 ms: hits at about 50 ms.
        proxy.set_latency(Duration::from_millis(50));
        let r0 = r.stats();
        let mut lat = Vec::new();
        for j in 0..20u64 {
            let k = format!("t10-lat-{j}");
            let t = Instant::now();
            let v = r.get_bytes(k.as_str()).await.unwrap();
            lat.push(t.elapsed());
            check_value(&k, &v.expect("a hit at +50 ms")).unwrap();
        }
        proxy.set_latency(Duration::ZERO);
        let r1 = r.stats();
        let (min, max) = (*lat.iter().min().unwrap(), *lat.iter().max().unwrap());
        println!(
            "\nSHARED T10 plus50ms hits=20/20 min_ms={} p50_ms={} max_ms={}",
            ms3(min),
            ms3(percentile(&mut lat, 50.0)),
            ms3(max)
        );
        assert_eq!(r1.shared_hits - r0.shared_hits, 20);
        assert_eq!(r1.shared_errors, r0.shared_errors);
        assert!(min >= Duration::from_millis(50), "{min:?}");
        assert!(max < Duration::from_millis(50) + SLACK, "{max:?}");
        assert_eq!(r.shared_state(), Some(BreakerState::Closed));

        let (_, kinds) = under_fault(
            "T10 plus300ms",
            &r,
            "t10-slow",
            || proxy.set_latency(Duration::from_millis(300)),
            || proxy.set_latency(Duration::ZERO),
            &logs,
        )
        .await;
        assert!(by(&kinds, "timeout") >= 3, "{kinds:?}");
        let (_, kinds) = under_fault(
            "T10 blackhole",
            &r,
            "t10-bh",
            || proxy.set_blackhole(true),
            || proxy.set_blackhole(false),
            &logs,
        )
        .await;
        assert!(by(&kinds, "timeout") >= 3, "{kinds:?}");
        let (_, kinds) = under_fault(
            "T10 reset",
            &r,
            "t10-rst",
            || proxy.cut_after(Some(0), Cut::Reset),
            || proxy.clear(),
            &logs,
        )
        .await;
        assert!(by(&kinds, "io") >= 1, "an RST is an I/O failure: {kinds:?}");
        assert!(proxy.cut_count() >= 1);
        r.close().await.unwrap();
    });
}
