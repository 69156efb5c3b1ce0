//! T2, the agent workload of `examples/agent_backend` on 1, 2 and 4 replicas, shared tier off
//! and on: Zipf-distributed questions over a simulated model (5-14 ms a call), workers per
//! replica, request keys in a namespace (whose generation the replicas must agree on through
//! Redis for anything to be shared), replicas starting 40 ms apart as a fleet's do.
//!
//! Figures: model calls saved by sharing (absolute and %), hit rate per tier (hot, warm,
//! shared), model time saved. Asserted: every request answered with its own answer; shared
//! off, each replica calls the model exactly once per distinct question it was asked; shared
//! on with one replica, the same count and no shared hit; with 2 and 4 replicas, fewer calls
//! than shared off, never fewer than the distinct questions of the whole fleet.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::workload::{Rng, Zipf};
use answercache::Controls;
use serde::{Deserialize, Serialize};

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t2";
const QUESTIONS: usize = 40;
const WORKERS: u64 = 6;
const PER_WORKER: u64 = 25;
const STAGGER: Duration = Duration::from_millis(40);

#[derive(Debug, Clone, Serialize)]
struct ChatRequest {
    model: &'static str,
    messages: Vec<Message>,
    temperature: f32,
    user: String,
}

#[derive(Debug, Clone, Serialize)]
struct Message {
    role: &'static str,
    content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Completion {
    text: String,
    total_tokens: u64,
}

fn question(i: usize) -> String {
    format!("Support question number {i}: how do I do thing {i}?")
}

fn model_latency(q: usize) -> Duration {
    Duration::from_millis(5 + (q as u64 * 7) % 10)
}

/// The questions worker `w` of replica `r` asks, in order.
fn stream(r: u64, w: u64) -> Vec<usize> {
    let mut rng = Rng::stream(0x7202 + r, w);
    let zipf = Zipf::new(QUESTIONS, 1.0);
    (0..PER_WORKER).map(|_| zipf.sample(&mut rng)).collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    requests: u64,
    model_calls: u64,
    hot: u64,
    warm: u64,
    shared: u64,
    model_ms: u64,
    wall: Duration,
}

async fn fleet(server: &RedisServer, n: u64, shared: bool) -> Figures {
    server.flushall().await;
    let cfg = config(&server.url(), PREFIX);
    let mut reps = Vec::new();
    for _ in 0..n {
        let r = replica_with(shared.then(|| cfg.clone()), |d| {
            local_builder(d).hot_capacity_entries(12).hot_shards(1)
        })
        .await;
        if shared {
            wait_closed(&r.cache).await;
        }
        reps.push(r);
    }
    let calls = Arc::new(AtomicU64::new(0));
    let model_ms = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (r, rep) in reps.iter().enumerate() {
        let ns = rep.namespace("support-bot").unwrap();
        for w in 0..WORKERS {
            let (ns, calls, model_ms, tally) =
                (ns.clone(), calls.clone(), model_ms.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(STAGGER * r as u32).await;
                for (i, q) in stream(r as u64, w).into_iter().enumerate() {
                    let request = ChatRequest {
                        model: "gpt-4o-mini",
                        messages: vec![
                            Message {
                                role: "system",
                                content: "You are the support assistant of Acme.".into(),
                            },
                            Message {
                                role: "user",
                                content: question(q),
                            },
                        ],
                        temperature: 0.0,
                        user: format!("user-{r}-{w}-{i}"),
                    };
                    let key = ns
                        .request_key_builder()
                        .request(&request)
                        .ignore("user")
                        .build()
                        .unwrap();
                    let controls = Controls::new()
                        .ttl(Duration::from_secs(24 * 3600))
                        .cost_by(|c: &Completion| c.total_tokens);
                    let (calls, model_ms) = (calls.clone(), model_ms.clone());
                    let t = Instant::now();
                    let got = ns
                        .get_or_insert_with_controls(&key, &controls, || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            let l = model_latency(q);
                            model_ms.fetch_add(l.as_millis() as u64, Ordering::SeqCst);
                            tokio::time::sleep(l).await;
                            Ok::<_, std::io::Error>(Completion {
                                text: format!("Answer to {:?}", question(q)),
                                total_tokens: 150 + q as u64,
                            })
                        })
                        .await;
                    let outcome = match got {
                        Ok(c) if c.text == format!("Answer to {:?}", question(q)) => Outcome::Hit,
                        Ok(_) => Outcome::Wrong,
                        Err(_) => Outcome::Error,
                    };
                    tally.record(outcome, t.elapsed(), TIMEOUT);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wall = started.elapsed();
    let row = tally.row("T2");
    assert_eq!(
        (
            row.caller_errors,
            row.wrong_answers,
            row.answered,
            row.total
        ),
        (0, 0, n * WORKERS * PER_WORKER, n * WORKERS * PER_WORKER),
        "n={n} shared={shared}"
    );
    let mut f = Figures {
        requests: row.total,
        model_ms: model_ms.load(Ordering::SeqCst),
        wall,
        ..Figures::default()
    };
    for r in &reps {
        r.flush().await.unwrap();
        let s = r.stats();
        f.model_calls += s.loader_calls;
        f.hot += s.hot_hits + s.queue_hits;
        f.warm += s.warm_hits;
        f.shared += s.shared_hits;
        if !shared {
            assert_eq!(s.shared_state, None);
            assert_eq!(s.shared_hits + s.shared_misses, 0);
        }
    }
    assert_eq!(
        f.model_calls,
        calls.load(Ordering::SeqCst),
        "loader_calls is the model's count"
    );
    for r in reps {
        r.close().await.unwrap();
    }
    f
}

#[test]
fn t2_agent_workload_on_1_2_4_replicas() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        for n in [1u64, 2, 4] {
            let distinct: Vec<usize> = (0..n)
                .map(|r| {
                    (0..WORKERS)
                        .flat_map(|w| stream(r, w))
                        .collect::<BTreeSet<_>>()
                        .len()
                })
                .collect();
            let per_replica: u64 = distinct.iter().map(|d| *d as u64).sum();
            let fleet_distinct = (0..n)
                .flat_map(|r| (0..WORKERS).flat_map(move |w| stream(r, w)))
                .collect::<BTreeSet<_>>()
                .len() as u64;
            let off = fleet(&server, n, false).await;
            let on = fleet(&server, n, true).await;
            assert_eq!(
                off.model_calls, per_replica,
                "shared off: one model call per distinct question per replica"
            );
            if n == 1 {
                assert_eq!(on.model_calls, per_replica, "one replica: nothing to share");
                assert_eq!(on.shared, 0);
            } else {
                assert!(
                    on.model_calls < off.model_calls,
                    "{n} replicas: sharing saved no model call ({} on, {} off)",
                    on.model_calls,
                    off.model_calls
                );
                assert!(
                    on.model_calls >= fleet_distinct,
                    "{} model calls for {fleet_distinct} distinct questions",
                    on.model_calls
                );
                assert!(on.shared > 0);
            }
            let saved = off.model_calls - on.model_calls;
            let rate = |x: u64, f: &Figures| format!("{:.1}", 100.0 * x as f64 / f.requests as f64);
            let mean_model_ms = off.model_ms as f64 / off.model_calls.max(1) as f64;
            println!(
                "\nSHARED T2 replicas={n} requests={} model_calls_off={} model_calls_on={} \
                 saved={saved} saved_pct={:.1} fleet_distinct={fleet_distinct} \
                 on_hit_pct_hot={} warm={} shared={} off_hit_pct_hot={} warm={} \
                 model_time_saved_ms={:.0} wall_off_ms={} wall_on_ms={}",
                on.requests,
                off.model_calls,
                on.model_calls,
                100.0 * saved as f64 / off.model_calls.max(1) as f64,
                rate(on.hot, &on),
                rate(on.warm, &on),
                rate(on.shared, &on),
                rate(off.hot, &off),
                rate(off.warm, &off),
                saved as f64 * mean_model_ms,
                off.wall.as_millis(),
                on.wall.as_millis()
            );
        }
    });
}
