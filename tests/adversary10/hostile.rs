//! Hostile values on a real server: a value of the wrong Redis type under an entry key.
//! The promise: hostile values are counted and deleted, never served, and a corrupt or
//! foreign value is "a data problem", not a failure that feeds the breaker
//! (SHARED_TIER.md §3, §6).

use std::time::Duration;

use answercache::BreakerState;

use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

/// A list planted under one key's entry name (`RPUSH`): every read of that key is answered
/// `WRONGTYPE`, classified as a protocol failure: three reads open the breaker, so the
/// replica loses every other key's shared hits too, and the planted key is never deleted,
/// so it happens again after every recovery.
#[test]
fn a_wrong_type_value_is_counted_and_deleted_not_a_breaker_failure() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a10wt", 3);
        let (a, b) = (replica(cfg.clone()).await, replica(cfg).await);
        wait_closed(&a).await;
        wait_closed(&b).await;
        b.set_bytes("other", "shared answer").await.unwrap();
        b.flush().await.unwrap();
        let key = entry_key("a10wt", b"k");
        let _: i64 = server.cmd(&["RPUSH", &key, "planted"]).await;
        for _ in 0..3 {
            assert_eq!(a.get_bytes("k").await.unwrap(), None);
        }
        // Another key, shared by B: still a hit on A.
        assert_eq!(
            a.get_bytes("other").await.unwrap().as_deref(),
            Some(&b"shared answer"[..]),
            "{}",
            shared_figures(&a.stats())
        );
        let s = a.stats();
        assert_eq!(
            (s.shared_errors, s.shared_breaker_opens, s.shared_state),
            (0, 0, Some(BreakerState::Closed)),
            "{}",
            shared_figures(&s)
        );
        assert_eq!(s.shared_corrupted, 1, "{}", shared_figures(&s));
        let gone = poll_until_async(Duration::from_secs(2), Duration::from_millis(10), || {
            let (server, key) = (&server, &key);
            async move { !server.exists(key).await }
        })
        .await;
        assert!(gone.is_some(), "the planted value was never deleted");
    });
}

/// Guard: the same key holding a string of garbage is a miss, counted (`magic`) and deleted,
/// with no error and no breaker move; other keys keep hitting.
#[test]
fn garbage_under_an_entry_key_is_counted_deleted_and_not_a_failure() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a10gb", 3);
        let (a, b) = (replica(cfg.clone()).await, replica(cfg).await);
        wait_closed(&a).await;
        wait_closed(&b).await;
        b.set_bytes("other", "shared answer").await.unwrap();
        b.flush().await.unwrap();
        let key = entry_key("a10gb", b"k");
        for _ in 0..3 {
            server.set_raw(&key, b"not an entry file at all").await;
            assert_eq!(a.get_bytes("k").await.unwrap(), None);
            wait_stats(&a, "the garbage deleted", |_| true).await;
            assert!(
                poll_until_async(Duration::from_secs(2), Duration::from_millis(10), || {
                    let (server, key) = (&server, &key);
                    async move { !server.exists(key).await }
                })
                .await
                .is_some(),
                "never deleted"
            );
        }
        assert_eq!(
            a.get_bytes("other").await.unwrap().as_deref(),
            Some(&b"shared answer"[..])
        );
        let s = a.stats();
        assert_eq!(
            (
                s.shared_corrupted,
                by(&s.shared_corrupted_by_reason, "magic"),
                s.shared_errors,
                s.shared_breaker_opens,
                s.shared_hits,
                s.shared_misses
            ),
            (3, 3, 0, 0, 1, 3),
            "{}",
            shared_figures(&s)
        );
    });
}
