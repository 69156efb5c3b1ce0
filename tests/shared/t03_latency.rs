//! T3, latency: p50/p99 of hot, warm and shared hits, and of a miss with and without the shared
//! tier (its overhead), over a unix socket, TCP loopback and the fault proxy adding 1 ms and
//! 10 ms per round trip. Runs alone (the exclusive slot).
//!
//! Asserted: every shared get is a shared hit, every repeat a hot hit, every get after a
//! reopen a warm hit that never touches Redis (exact counts); a hot hit is faster than a
//! shared one; through the proxy a shared hit and a shared miss pay at least the added
//! latency and stay under the timeout.

use std::time::{Duration, Instant};

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t3";

#[derive(Debug, Default)]
struct Lat {
    hot: Vec<Duration>,
    warm: Vec<Duration>,
    shared_hit: Vec<Duration>,
    shared_miss: Vec<Duration>,
    local_miss: Vec<Duration>,
}

fn p(v: &[Duration], q: f64) -> Duration {
    let mut v = v.to_vec();
    percentile(&mut v, q)
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

async fn measure(url: &str, name: &str, n: u64) -> Lat {
    let cfg = config(url, PREFIX);
    let mut lat = Lat::default();
    let w = replica(cfg.clone()).await;
    wait_closed(&w.cache).await;
    let key = |i: u64| format!("{name}-{i}");
    for i in 0..n {
        w.set_bytes(key(i).as_str(), value(&key(i), i, 1024))
            .await
            .unwrap();
    }
    w.flush().await.unwrap();
    let r = replica(cfg.clone()).await;
    wait_closed(&r.cache).await;
    for i in 0..n {
        let t = Instant::now();
        let v = r.get_bytes(key(i).as_str()).await.unwrap();
        lat.shared_hit.push(t.elapsed());
        check_value(&key(i), &v.expect("a shared hit")).unwrap();
    }
    assert_eq!(r.stats().shared_hits, n, "{}", shared_figures(&r.stats()));
    let hot0 = r.stats().hot_hits;
    for i in 0..n {
        let t = Instant::now();
        let v = r.get_bytes(key(i).as_str()).await.unwrap();
        lat.hot.push(t.elapsed());
        assert!(v.is_some());
    }
    assert_eq!(r.stats().hot_hits - hot0, n);
    r.flush().await.unwrap();
    // Reopened: the shared hits were written to the warm tier.
    let r = r.reopen(Some(cfg.clone()), local_builder).await;
    wait_closed(&r.cache).await;
    for i in 0..n {
        let t = Instant::now();
        let v = r.get_bytes(key(i).as_str()).await.unwrap();
        lat.warm.push(t.elapsed());
        assert!(v.is_some());
    }
    let s = r.stats();
    assert_eq!(
        (s.warm_hits, s.shared_hits, s.shared_misses),
        (n, 0, 0),
        "warm hits must not touch Redis: {}",
        shared_figures(&s)
    );
    for i in 0..n {
        let k = format!("{name}-absent-{i}");
        let t = Instant::now();
        assert_eq!(r.get_bytes(k.as_str()).await.unwrap(), None);
        lat.shared_miss.push(t.elapsed());
    }
    assert_eq!(r.stats().shared_misses, n);
    let local = replica_with(None, local_builder).await;
    for i in 0..n {
        let k = format!("{name}-absent-{i}");
        let t = Instant::now();
        assert_eq!(local.get_bytes(k.as_str()).await.unwrap(), None);
        lat.local_miss.push(t.elapsed());
    }
    for c in [w, r, local] {
        c.close().await.unwrap();
    }
    lat
}

#[test]
fn t3_latency_of_each_tier_over_each_transport() {
    let _slot = exclusive_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(unix) = RedisServer::start_with(opts.clone()) else {
        return;
    };
    let Some(tcp) = RedisServer::start_with(ServerOptions { tcp: true, ..opts }) else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let proxy = FaultProxy::start(tcp.tcp_addr()).await;
        let mut runs = Vec::new();
        for (name, added, n) in [
            ("unix", None, 200u64),
            ("tcp", None, 200),
            ("proxy_1ms", Some(Duration::from_millis(1)), 100),
            ("proxy_10ms", Some(Duration::from_millis(10)), 40),
        ] {
            let url = match (name, added) {
                ("unix", _) => unix.url(),
                (_, None) => tcp.url(),
                (_, Some(d)) => {
                    proxy.set_latency(d);
                    proxy.url()
                }
            };
            let lat = measure(&url, name, n).await;
            let hot50 = p(&lat.hot, 50.0);
            let shared50 = p(&lat.shared_hit, 50.0);
            assert!(
                hot50 < shared50,
                "{name}: hot p50 {hot50:?} ≥ shared p50 {shared50:?}"
            );
            if let Some(d) = added {
                let min_hit = *lat.shared_hit.iter().min().unwrap();
                let min_miss = *lat.shared_miss.iter().min().unwrap();
                assert!(
                    min_hit >= d && min_miss >= d,
                    "{name}: {min_hit:?} / {min_miss:?}"
                );
                assert!(p(&lat.shared_hit, 99.0) < TIMEOUT, "{name}");
            }
            println!(
                "\nSHARED T3 transport={name} n={n} hot_p50_us={} hot_p99_us={} warm_p50_us={} \
                 warm_p99_us={} shared_hit_p50_us={} shared_hit_p99_us={} shared_miss_p50_us={} \
                 shared_miss_p99_us={} local_miss_p50_us={} miss_overhead_p50_us={}",
                us(hot50),
                us(p(&lat.hot, 99.0)),
                us(p(&lat.warm, 50.0)),
                us(p(&lat.warm, 99.0)),
                us(shared50),
                us(p(&lat.shared_hit, 99.0)),
                us(p(&lat.shared_miss, 50.0)),
                us(p(&lat.shared_miss, 99.0)),
                us(p(&lat.local_miss, 50.0)),
                us(p(&lat.shared_miss, 50.0).saturating_sub(p(&lat.local_miss, 50.0))),
            );
            runs.push(lat);
        }
        drop(proxy);
    });
}
