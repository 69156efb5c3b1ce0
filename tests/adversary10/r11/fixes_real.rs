//! R3 and R12's fixes on a real `redis-server` (the poll's `GETRANGE` + `PTTL` of the lease
//! key, the compare-and-set of the "done, not shared" mark, the compare-and-delete of a
//! foreign lease). No timing assertion: outcomes only.

use answercache::agent::Controls;
use answercache::Source;

use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

/// R3: a lease key with no expiry is deleted and taken over by the first miss (a takeover,
/// no wait timeout); R12: a leader whose answer is not cacheable leaves the mark, with a TTL
/// of at most 2 s, instead of nothing, and a miss meanwhile loads locally (no lease).
#[test]
fn a_foreign_lease_is_taken_over_and_an_unshared_answer_leaves_the_mark() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "r11fx", 3);
        let a = replica_with(Some(cfg.clone()), |p| {
            local_builder(p).shared_single_flight(true)
        })
        .await;
        wait_closed(&a).await;
        let lease = lease_key("r11fx", b"k");
        let _: String = server.cmd(&["SET", &lease, "not one of our tokens"]).await;
        assert_eq!(server.pttl(&lease).await, -1);
        let got = a
            .get_or_insert_bytes("k", &Controls::new(), || async {
                Ok::<_, String>(b"answer".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(got.source, Source::Loaded);
        let s = a.stats();
        assert_eq!(
            (
                s.shared_lease_takeovers,
                s.shared_lease_wait_timeouts,
                server.exists(&lease).await
            ),
            (1, 0, false),
            "{}",
            shared_figures(&s)
        );
        let refuse: Controls<[u8]> = Controls::new().cacheable(|_: &[u8]| false);
        let got = a
            .get_or_insert_bytes("refused", &refuse, || async {
                Ok::<_, String>(b"a refusal".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(got.source, Source::Loaded);
        let mark = lease_key("r11fx", b"refused");
        assert_eq!(
            server.get_raw(&mark).await.as_deref(),
            Some(&b"answercache:lease:done-not-shared"[..])
        );
        let pttl = server.pttl(&mark).await;
        assert!((1..=2000).contains(&pttl), "PTTL {pttl}");
        // Another replica's miss meanwhile: no lease taken, loaded locally.
        let b = replica_with(Some(cfg), |p| local_builder(p).shared_single_flight(true)).await;
        wait_closed(&b).await;
        let before = b.stats().shared_lease_acquired;
        let got = b
            .get_or_insert_bytes("refused", &refuse, || async {
                Ok::<_, String>(b"a refusal".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(got.source, Source::Loaded);
        if server.exists(&mark).await {
            // Still within the mark's 2 s: it did not lead.
            assert_eq!(b.stats().shared_lease_acquired, before);
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
