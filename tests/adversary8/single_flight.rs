//! Cross-replica single-flight (SHARED_TIER.md §8): an efficiency lock that must never cost
//! correctness or liveness. Lease stolen, loader errors and panics, a lease without expiry,
//! a garbage value appearing while waiting, the server stopped mid-load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::SharedConfig;

use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

async fn sf_replica(cfg: &SharedConfig) -> Replica {
    let r = replica_with(Some(cfg.clone()), |root| {
        local_builder(root).shared_single_flight(true)
    })
    .await;
    wait_closed(&r).await;
    r
}

/// The lease is overwritten in Redis by someone else while the leader loads: the leader's
/// compare-and-delete must leave the intruder's lease alone, and its answer is still shared.
#[test]
fn stolen_lease_is_not_deleted_by_the_old_holder() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8steal", 3);
        let a = sf_replica(&cfg).await;
        let lkey = lease_key("a8steal", b"q");
        let s2 = server.clone();
        let lkey2 = lkey.clone();
        let v: String = a
            .get_or_insert_with("q", || async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(s2.exists(&lkey2).await, "the leader holds a lease");
                s2.set_raw(&lkey2, b"intruder-token").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>("answer".to_owned())
            })
            .await
            .unwrap();
        assert_eq!(v, "answer");
        assert_eq!(
            server.get_raw(&lkey).await.as_deref(),
            Some(&b"intruder-token"[..])
        );
        let b = replica(cfg.clone()).await;
        wait_closed(&b).await;
        assert_eq!(
            b.get::<String>("q").await.unwrap().as_deref(),
            Some("answer")
        );
        let s = a.stats();
        assert_eq!((s.shared_lease_acquired, s.loader_calls), (1, 1));
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// The leader's loader panics: the lease goes at once (not at its 10 s TTL), and another
/// replica loads without waiting.
#[test]
fn loader_panic_releases_the_lease() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8panic", 3);
        let a = sf_replica(&cfg).await;
        let b = sf_replica(&cfg).await;
        let ac = a.cache.clone();
        let joined = tokio::spawn(async move {
            ac.get_or_insert_with("q", || async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if std::hint::black_box(true) {
                    panic!("the model client panicked");
                }
                Ok::<_, std::io::Error>("never".to_owned())
            })
            .await
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
        let lkey = lease_key("a8panic", b"q");
        poll_until_async(
            Duration::from_millis(500),
            Duration::from_millis(10),
            || {
                let server = server.clone();
                let lkey = lkey.clone();
                async move { !server.exists(&lkey).await }
            },
        )
        .await
        .expect("the lease is released after the panic");
        let t = Instant::now();
        let v: String = b
            .get_or_insert_with("q", || async { Ok::<_, std::io::Error>("b".to_owned()) })
            .await
            .unwrap();
        assert_eq!(v, "b");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let s = b.stats();
        assert_eq!(
            (
                s.shared_lease_acquired,
                s.shared_lease_waits,
                s.loader_calls
            ),
            (1, 0, 1)
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// The leader's loader fails while another replica waits: the waiter takes over, loads once,
/// and its answer is what Redis holds; the leader's caller gets the error.
#[test]
fn loader_error_hands_the_load_to_a_waiter() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8err", 3);
        let a = sf_replica(&cfg).await;
        let b = sf_replica(&cfg).await;
        let lead = a.get_or_insert_with("q", || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err::<String, _>(std::io::Error::other("upstream 503"))
        });
        let wait = async {
            tokio::time::sleep(Duration::from_millis(80)).await;
            b.get_or_insert_with("q", || async { Ok::<_, std::io::Error>("b".to_owned()) })
                .await
        };
        let (ra, rb) = tokio::join!(lead, wait);
        assert!(ra.is_err());
        assert_eq!(rb.unwrap(), "b");
        let s = b.stats();
        assert_eq!(
            (
                s.shared_lease_waits,
                s.shared_lease_takeovers,
                s.shared_lease_acquired,
                s.shared_lease_waits_served,
                s.loader_calls
            ),
            (1, 1, 1, 0, 1)
        );
        let c = replica(cfg.clone()).await;
        wait_closed(&c).await;
        assert_eq!(c.get::<String>("q").await.unwrap().as_deref(), Some("b"));
        for r in [a, b, c] {
            r.close().await.unwrap();
        }
    });
}

/// A lease left without an expiry (`PTTL -1`: an operator's `SET`, a bug elsewhere): it is
/// no lease of this cache's, so the first caller deletes it and takes the lease over instead
/// of waiting `lease_wait_max` (adversary11 R3; this test asserted that one wait of
/// `lease_wait_max` before); its answer is shared, and a second replica then hits it without
/// waiting or loading.
#[test]
fn lease_without_expiry_costs_one_bounded_wait() {
    let _slot = exclusive_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8nottl", 3).lease_wait_max(Duration::from_millis(400));
        server.set_raw(&lease_key("a8nottl", b"q"), b"stuck").await;
        let a = sf_replica(&cfg).await;
        let t = Instant::now();
        let v: String = a
            .get_or_insert_with("q", || async { Ok::<_, std::io::Error>("a".to_owned()) })
            .await
            .unwrap();
        let took = t.elapsed();
        assert_eq!(v, "a");
        let s = a.stats();
        assert_eq!(
            (
                s.shared_lease_waits,
                s.shared_lease_wait_timeouts,
                s.shared_lease_takeovers,
                s.loader_calls
            ),
            (1, 0, 1, 1),
            "took {took:?}"
        );
        assert!(
            !server.exists(&lease_key("a8nottl", b"q")).await,
            "the stuck lease was deleted (and the new leader's released)"
        );
        a.flush().await.unwrap();
        let b = sf_replica(&cfg).await;
        let t = Instant::now();
        let v: String = b
            .get_or_insert_with("q", || async { Ok::<_, std::io::Error>("b".to_owned()) })
            .await
            .unwrap();
        assert_eq!(v, "a");
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        let s = b.stats();
        assert_eq!(
            (s.shared_hits, s.loader_calls, s.shared_lease_waits),
            (1, 0, 0)
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// While a replica waits, a garbage value appears under the key (a plant, a half-written
/// value from an old version): the waiter must not serve it, must load for itself, and must
/// not count the wait as served (`shared_lease_waits_served` counts waits that a value
/// served).
#[test]
fn garbage_appearing_during_a_wait_is_not_served_nor_counted_served() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8garb", 3);
        let a = sf_replica(&cfg).await;
        let b = sf_replica(&cfg).await;
        let ekey = entry_key("a8garb", b"q");
        let lead = a.get_or_insert_with("q", || async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, std::io::Error>("a".to_owned())
        });
        let plant = async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            server.set_raw(&ekey, b"GARBAGE, NOT AN ENTRY").await;
        };
        let wait = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            b.get_or_insert_with("q", || async { Ok::<_, std::io::Error>("b".to_owned()) })
                .await
        };
        let (ra, (), rb) = tokio::join!(lead, plant, wait);
        assert_eq!(ra.unwrap(), "a");
        assert_eq!(rb.unwrap(), "b");
        let s = b.stats();
        assert_eq!(
            (s.shared_corrupted, s.loader_calls, s.shared_hits),
            (1, 1, 0),
            "{}",
            shared_figures(&s)
        );
        assert_eq!(
            s.shared_lease_waits_served, 0,
            "a wait is counted as served by a value that was garbage"
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// The server stops while the leader loads: the leader's caller still gets its answer,
/// bounded by the loader plus two timeouts (inline SET, release), and a second replica that
/// arrives meanwhile loads locally within a timeout of its own.
#[test]
fn server_stopped_mid_lease_never_blocks_past_the_timeouts() {
    let _slot = exclusive_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8stop", 1);
        let a = sf_replica(&cfg).await;
        let b = sf_replica(&cfg).await;
        let loads = Arc::new(AtomicU64::new(0));
        let la = loads.clone();
        let lead = async {
            let t = Instant::now();
            let v: String = a
                .get_or_insert_with("q", || async move {
                    la.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok::<_, std::io::Error>("a".to_owned())
                })
                .await
                .unwrap();
            (v, t.elapsed())
        };
        let lb = loads.clone();
        let late = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sigstop_async(&server).await;
            let t = Instant::now();
            let v: String = b
                .get_or_insert_with("q", || async move {
                    lb.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, std::io::Error>("b".to_owned())
                })
                .await
                .unwrap();
            (v, t.elapsed())
        };
        let ((va, ta), (vb, tb)) = tokio::join!(lead, late);
        sigcont_async(&server).await;
        assert_eq!((va.as_str(), vb.as_str()), ("a", "b"));
        assert_eq!(loads.load(Ordering::Relaxed), 2);
        assert!(
            ta < Duration::from_millis(500) + 2 * TIMEOUT + SLACK,
            "{ta:?}"
        );
        assert!(tb < TIMEOUT + SLACK, "{tb:?}");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
