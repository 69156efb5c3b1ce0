//! Never a stale answer: a shared copy older than this replica's own `remove`, `clear` or
//! namespace invalidation must not be served by this replica (README "Per replica, the last
//! `set`/`remove` wins, as without it: a local `remove`, `clear` or newer `set` is never
//! overridden by an older shared copy"), including across a restart of the replica.

use std::time::Duration;

use answercache::warm::format::{self, EntryMeta};
use answercache::Encoding;

use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

/// A remove whose `DEL` could not be delivered (the breaker was open). When this test found
/// the defect, the `DEL` was dropped and the removal hid the shared copy only in memory:
/// after a restart of the replica the removed answer was served again. Now the `DEL` is kept
/// (not dropped) and sent once the breaker closes: the answer is gone from the server, for
/// this replica after a restart and for every other replica. The limit that stays (README,
/// RELIABILITY.md): a restart *before* the server is back forgets the kept `DEL` (counted
/// dropped at `close`), and the removed answer is served from the server again until it
/// expires there (`max_ttl`); asserted at the end.
#[test]
fn removed_answer_comes_back_after_a_restart() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8rm", 1);
        let a = replica(cfg.clone()).await;
        wait_closed(&a).await;
        a.set_bytes("k", "removed answer").await.unwrap();
        a.flush().await.unwrap();
        let key = entry_key("a8rm", b"k");
        assert!(server.exists(&key).await);
        // The server goes away for a moment: the breaker opens on the next read.
        sigstop_async(&server).await;
        assert_eq!(a.get_bytes("other").await.unwrap(), None);
        wait_open(&a).await;
        assert!(a.remove("k").await.unwrap());
        let s = a.stats();
        assert_eq!(
            (s.shared_writes_dropped, s.shared_queue_entries),
            (0, 1),
            "the DEL is kept, not dropped"
        );
        sigcont_async(&server).await;
        wait_closed(&a).await;
        // In this process the removal hides the shared copy.
        assert_eq!(a.get_bytes("k").await.unwrap(), None);
        // The kept DEL reaches the server once the breaker is Closed.
        poll_until_async(
            Duration::from_secs(3),
            Duration::from_millis(20),
            || async { !server.exists(&key).await },
        )
        .await
        .unwrap_or_else(|| {
            panic!(
                "the kept DEL never reached the server: {}",
                shared_figures(&a.stats())
            )
        });
        let s = a.stats();
        assert_eq!((s.shared_writes_dropped, s.shared_queue_entries), (0, 0));
        // Another replica does not get the removed answer back.
        let b = replica(cfg.clone()).await;
        wait_closed(&b).await;
        assert_eq!(b.get_bytes("k").await.unwrap(), None);
        // A restart of the replica (a deploy).
        let a = a.reopen(Some(cfg.clone()), local_builder).await;
        wait_closed(&a).await;
        let got = a.get_bytes("k").await.unwrap();
        assert_eq!(
            got.as_deref().map(String::from_utf8_lossy),
            None,
            "after a restart the replica serves the answer it removed (shared hits {})",
            a.stats().shared_hits
        );

        // The documented limit: a restart while the server is still away forgets the kept
        // DEL (in memory only); the removed answer is on the server until `max_ttl`.
        a.set_bytes("j", "removed before a restart").await.unwrap();
        a.flush().await.unwrap();
        sigstop_async(&server).await;
        assert_eq!(a.get_bytes("other").await.unwrap(), None);
        wait_open(&a).await;
        assert!(a.remove("j").await.unwrap());
        let s = a.stats();
        assert_eq!((s.shared_writes_dropped, s.shared_queue_entries), (0, 1));
        // `close` gives the kept DEL up (counted dropped; shared_orchestration checks the
        // count), and the restarted replica knows nothing of it.
        let a = a.reopen(Some(cfg.clone()), local_builder).await;
        sigcont_async(&server).await;
        wait_closed(&a).await;
        assert_eq!(
            a.get_bytes("j").await.unwrap().as_deref(),
            Some(&b"removed before a restart"[..]),
            "the documented limit (README, RELIABILITY.md) changed: update them"
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// The clear fence is on disk: after `clear` (and a restart), entries in the shared tier
/// created before it are misses on this replica, while another replica still hits them
/// (clear stays local).
#[test]
fn clear_fence_holds_for_shared_copies_across_restart() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8clr", 3);
        let a = replica(cfg.clone()).await;
        let b = replica(cfg.clone()).await;
        wait_closed(&a).await;
        wait_closed(&b).await;
        a.set_bytes("k", "before clear").await.unwrap();
        a.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        a.clear().await.unwrap();
        assert_eq!(a.get_bytes("k").await.unwrap(), None);
        assert_eq!(
            b.get_bytes("k").await.unwrap().as_deref(),
            Some(&b"before clear"[..])
        );
        let a = a.reopen(Some(cfg.clone()), local_builder).await;
        wait_closed(&a).await;
        assert_eq!(a.get_bytes("k").await.unwrap(), None);
        let s = a.stats();
        assert_eq!((s.shared_hits, s.shared_misses), (0, 1));
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// An entry whose header claims it was created in the future (a replica whose clock runs an
/// hour ahead, or a plant) and that was on the server before this replica's `clear`: the
/// fence compares creation times, so it survives the clear and is served.
#[test]
fn future_dated_entry_survives_a_clear() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8fut", 3);
        let a = replica(cfg.clone()).await;
        wait_closed(&a).await;
        let meta = EntryMeta {
            created_ms: now_ms() + 3_600_000,
            expires_ms: 0,
            cost: 1,
            encoding: Encoding::Raw,
        };
        let file = format::encode(b"k", b"written before the clear", meta, 3).unwrap();
        server.set_raw(&entry_key("a8fut", b"k"), &file).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        a.clear().await.unwrap();
        let got = a.get_bytes("k").await.unwrap();
        assert_eq!(
            got.as_deref().map(String::from_utf8_lossy),
            None,
            "an entry on the server before the clear was served after it"
        );
        a.close().await.unwrap();
    });
}

/// A namespace's generation on the server rolled back to the previous one (a failover to a
/// lagging replica, a restore, an operator): the replica that invalidated adopts it and
/// serves the answers it invalidated.
#[test]
fn rolled_back_generation_revives_invalidated_answers() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8gen", 3).namespace_sync_interval(Duration::from_millis(50));
        let a = replica(cfg.clone()).await;
        wait_closed(&a).await;
        let ns = a.namespace("chat").unwrap();
        let g1 = ns.generation().await.unwrap();
        ns.set_bytes("q", "old answer").await.unwrap();
        a.flush().await.unwrap();
        let g2 = ns.invalidate().await.unwrap();
        assert_ne!(g1, g2);
        assert_eq!(ns.get_bytes("q").await.unwrap(), None);
        server
            .set_raw(&nsgen_key("a8gen", "chat"), gen_hex(g1).as_bytes())
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let got = ns.get_bytes("q").await.unwrap();
        assert_eq!(
            got.as_deref().map(String::from_utf8_lossy),
            None,
            "the replica that invalidated serves the invalidated answer again (generation {:x})",
            ns.generation().await.unwrap()
        );
        a.close().await.unwrap();
    });
}

/// Garbage or a deleted generation key: the replicas bootstrap a fresh generation, the old
/// answer is never served again, and the server holds 16 hex digits once more.
#[test]
fn garbage_or_deleted_generation_gives_misses_only() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8gg", 3).namespace_sync_interval(Duration::from_millis(50));
        let a = replica(cfg.clone()).await;
        let b = replica(cfg.clone()).await;
        wait_closed(&a).await;
        wait_closed(&b).await;
        let (na, nb) = (a.namespace("chat").unwrap(), b.namespace("chat").unwrap());
        let g0 = na.generation().await.unwrap();
        assert_eq!(nb.generation().await.unwrap(), g0);
        let key = nsgen_key("a8gg", "chat");
        for (round, plant) in [
            Some(&b"not a generation"[..]),
            Some(b"0000000000000000"),
            None,
        ]
        .into_iter()
        .enumerate()
        {
            let answer = format!("answer {round}");
            na.set_bytes("q", &answer).await.unwrap();
            a.flush().await.unwrap();
            assert_eq!(
                nb.get_bytes("q").await.unwrap().as_deref(),
                Some(answer.as_bytes())
            );
            let before = (
                na.generation().await.unwrap(),
                nb.generation().await.unwrap(),
            );
            match plant {
                Some(v) => server.set_raw(&key, v).await,
                None => assert!(server.del(&key).await),
            }
            poll_until_async(
                Duration::from_secs(3),
                Duration::from_millis(20),
                || async {
                    na.generation().await.unwrap() != before.0
                        && nb.generation().await.unwrap() != before.1
                },
            )
            .await
            .expect("both replicas leave the generation");
            tokio::time::sleep(Duration::from_millis(150)).await;
            let (ga, gb) = (
                na.generation().await.unwrap(),
                nb.generation().await.unwrap(),
            );
            assert_eq!(ga, gb, "round {round}: replicas converge");
            let held = server.get_raw(&key).await.unwrap();
            assert_eq!(held, gen_hex(ga).into_bytes(), "round {round}");
            assert_eq!(na.get_bytes("q").await.unwrap(), None, "round {round}");
            assert_eq!(nb.get_bytes("q").await.unwrap(), None, "round {round}");
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
