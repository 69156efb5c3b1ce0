//! T11, namespace invalidation across replicas (sync every 50 ms, 2 s in production).
//!
//! - Concurrent first use by 4 replicas converges on one generation (`SET NX GET`), the one
//!   Redis holds as 16 hex digits.
//! - 100 invalidations on A: each reaches B, C and D within the sync interval + timeout
//!   (propagation p50/p99/max printed); after it, none of them serves the old generation's
//!   answer; each sees exactly 100 changes, A none.
//! - The generation key deleted in Redis: every replica bootstraps again onto one new
//!   generation, and only misses follow (never an old answer).

use std::time::{Duration, Instant};

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t11";
const SYNC: Duration = Duration::from_millis(50);
const NS: &str = "chat";

#[test]
fn t11_namespace_generations_across_replicas() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = config(&server.url(), PREFIX).namespace_sync_interval(SYNC);
        let reps = replicas(4, &cfg).await;
        let ns: Vec<answercache::Namespace> =
            reps.iter().map(|r| r.namespace(NS).unwrap()).collect();
        // Concurrent first use.
        let gens = futures_join(ns.iter().map(|n| n.generation())).await;
        let g0 = gens[0];
        assert!(
            gens.iter().all(|g| *g == g0),
            "first use diverged: {gens:x?}"
        );
        let held: String = server.get_raw(&nsgen_key(PREFIX, NS)).await.map_or_else(
            || panic!("no generation key in Redis"),
            |b| String::from_utf8(b).unwrap(),
        );
        assert_eq!(held, gen_hex(g0));

        let bound = SYNC + TIMEOUT + SLACK;
        let mut samples = Vec::new();
        let mut stale = 0u64;
        let before: Vec<answercache::Stats> = reps.iter().map(|r| r.stats()).collect();
        for i in 0..100u64 {
            let check_stale = i % 10 == 0;
            if check_stale {
                ns[0].set_bytes("q", format!("answer {i}")).await.unwrap();
                reps[0].flush().await.unwrap();
                for n in &ns[1..] {
                    let v = n.get_bytes("q").await.unwrap();
                    assert_eq!(v.as_deref(), Some(format!("answer {i}").as_bytes()));
                }
            }
            let g = ns[0].invalidate().await.unwrap();
            let t = Instant::now();
            assert_eq!(ns[0].generation().await.unwrap(), g);
            assert_eq!(
                server.get_raw(&nsgen_key(PREFIX, NS)).await,
                Some(gen_hex(g).into_bytes()),
                "invalidate() writes the generation inline"
            );
            // Each replica's propagation time, from invalidate() returning to its slot
            // holding the new generation.
            let mut seen: Vec<Option<Duration>> = vec![None; 3];
            while seen.iter().any(Option::is_none) {
                for (j, n) in ns[1..].iter().enumerate() {
                    if seen[j].is_none() && n.generation().await.unwrap() == g {
                        seen[j] = Some(t.elapsed());
                    }
                }
                assert!(
                    t.elapsed() < Duration::from_secs(2),
                    "invalidation {i} never reached every replica: {seen:?}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            samples.extend(seen.into_iter().flatten());
            if check_stale {
                for n in &ns[1..] {
                    if n.get_bytes("q").await.unwrap().is_some() {
                        stale += 1;
                    }
                }
            }
        }
        let mut s = samples.clone();
        let (p50, p99, max) = (
            percentile(&mut s, 50.0),
            percentile(&mut s, 99.0),
            percentile(&mut s, 100.0),
        );
        let after: Vec<answercache::Stats> = reps.iter().map(|r| r.stats()).collect();
        let changes: Vec<u64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.namespace_changes_seen - b.namespace_changes_seen)
            .collect();
        println!(
            "\nSHARED T11 invalidations=100 propagation_p50_ms={} p99_ms={} max_ms={} \
             bound_ms={} stale_answers={stale} changes_seen={changes:?} pending={}",
            ms3(p50),
            ms3(p99),
            ms3(max),
            ms3(bound),
            after[0].namespace_invalidations_pending
        );
        assert_eq!(stale, 0, "old answers served after the bound");
        assert!(max <= bound, "propagation {max:?} > {bound:?}");
        assert_eq!(changes, vec![0, 100, 100, 100]);
        assert_eq!(after[0].namespace_invalidations_pending, 0);

        // The generation key deleted: one new generation, misses only.
        let g_last = ns[0].generation().await.unwrap();
        ns[0].set_bytes("z", "old answer").await.unwrap();
        reps[0].flush().await.unwrap();
        assert!(ns[1].get_bytes("z").await.unwrap().is_some());
        assert!(server.del(&nsgen_key(PREFIX, NS)).await);
        let converged = poll_until_async(Duration::from_secs(3), Duration::from_millis(5), || {
            let ns = ns.clone();
            async move {
                let gens = futures_join(ns.iter().map(|n| n.generation())).await;
                gens.iter().all(|g| *g == gens[0] && *g != g_last)
            }
        })
        .await;
        assert!(
            converged.is_some(),
            "replicas did not converge on a new generation"
        );
        let g_new = ns[0].generation().await.unwrap();
        assert_eq!(
            server.get_raw(&nsgen_key(PREFIX, NS)).await,
            Some(gen_hex(g_new).into_bytes())
        );
        for n in &ns {
            assert_eq!(
                n.get_bytes("z").await.unwrap(),
                None,
                "an old answer after the reset"
            );
        }
        println!(
            "SHARED T11 key_deleted converge_ms={} new_generation={}",
            ms3(converged.unwrap()),
            gen_hex(g_new)
        );
        for r in reps {
            r.close().await.unwrap();
        }
    });
}

/// Awaits all of `futs` concurrently; panics on an error.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<u64>
where
    F: std::future::Future<Output = answercache::Result<u64>>,
{
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out = Vec::new();
    // Polled together: all started before any is awaited to completion.
    let mut pending: Vec<_> = futs.into_iter().map(Some).collect();
    let mut results: Vec<Option<u64>> = vec![None; pending.len()];
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => {
                        results[i] = Some(r.expect("generation"));
                        *f = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.push(r.expect("every future ran"));
    }
    out
}

/// A pending generation never overwrites another replica's newer one (the compare-and-set
/// script on a real server). A's invalidation (g1) cannot reach the server (its proxy
/// blackholes), A answers "q" under g1; then B invalidates (g2, on the server). When A's
/// connection heals, its sync finds g2 where it expected a generation it left: it does not
/// write g1 over it (that would bring A's answer, stored before B's `Ok` invalidate, back on
/// A and on B), but invalidates again with a fresh generation, which both replicas then use.
#[test]
fn t11_a_late_pending_generation_never_overwrites_a_newer_one() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start_tcp() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let prefix = "t11cas";
        let proxy = FaultProxy::start(server.tcp_addr()).await;
        let a = replica(config(&proxy.url(), prefix).namespace_sync_interval(SYNC)).await;
        let b = replica(config(&server.url(), prefix).namespace_sync_interval(SYNC)).await;
        wait_closed(&a).await;
        wait_closed(&b).await;
        let (na, nb) = (a.namespace(NS).unwrap(), b.namespace(NS).unwrap());
        let g0 = na.generation().await.unwrap();
        assert_eq!(nb.generation().await.unwrap(), g0);
        proxy.set_blackhole(true);
        let g1 = na.invalidate().await.unwrap();
        assert_eq!(a.stats().namespace_invalidations_pending, 1);
        na.set_bytes("q", "A's answer, before B's invalidation")
            .await
            .unwrap();
        let g2 = nb.invalidate().await.unwrap();
        let key = nsgen_key(prefix, NS);
        assert_eq!(server.get_raw(&key).await, Some(gen_hex(g2).into_bytes()));
        proxy.set_blackhole(false);
        let settled = poll_until_async(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                a.stats().namespace_invalidations_pending == 0
                    && na.generation().await.unwrap() == nb.generation().await.unwrap()
            },
        )
        .await;
        assert!(
            settled.is_some(),
            "A and B never converged (A pending {}, A {:x}, B {:x})",
            a.stats().namespace_invalidations_pending,
            na.generation().await.unwrap(),
            nb.generation().await.unwrap()
        );
        let now = na.generation().await.unwrap();
        assert!(
            ![g0, g1, g2].contains(&now),
            "the replicas ended on {now:x}, one of g0 {g0:x}, g1 {g1:x}, g2 {g2:x}"
        );
        assert_eq!(server.get_raw(&key).await, Some(gen_hex(now).into_bytes()));
        assert_eq!(na.get_bytes("q").await.unwrap(), None);
        assert_eq!(nb.get_bytes("q").await.unwrap(), None);
        for r in [a, b] {
            r.close().await.unwrap();
        }
    });
}
