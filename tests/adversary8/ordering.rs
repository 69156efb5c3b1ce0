//! Per-key ordering on one replica (SHARED_TIER.md §5, §11): a set then a remove then a set
//! must leave the last value on the server, or nothing, never the removed one; and this
//! replica's own reads always see its last `set`/`remove`, whatever the breaker does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use answercache::workload::Rng;

use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

/// A `SET` the drain sent to a stopped server times out (counted failed, the breaker opens);
/// the newer `set` that follows is dropped while Open. The server then wakes and executes
/// the buffered `SET`. The `remove` between them must still win: its `DEL` is kept (not
/// dropped: 1 write dropped, not 2 as when this test found the defect) and sent once the
/// breaker closes, after the late `SET`, so the server ends with nothing (or `v2`), never
/// the removed value.
#[test]
fn timed_out_set_lands_after_the_remove_that_superseded_it() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8late", 1);
        let a = replica(cfg.clone()).await;
        wait_closed(&a).await;
        sigstop_async(&server).await;
        a.set_bytes("k", "v1 (removed)").await.unwrap();
        wait_stats(&a, "the SET timed out", |s| s.shared_writes_failed == 1).await;
        wait_open(&a).await;
        assert!(a.remove("k").await.unwrap());
        a.set_bytes("k", "v2 (last)").await.unwrap();
        let s = a.stats();
        assert_eq!(
            (
                s.shared_writes_ok,
                s.shared_writes_failed,
                s.shared_writes_dropped
            ),
            (0, 1, 1),
            "the set of v2 is dropped, the remove's DEL is kept"
        );
        sigcont_async(&server).await;
        wait_closed(&a).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // This replica: its last set.
        assert_eq!(
            a.get_bytes("k").await.unwrap().as_deref(),
            Some(&b"v2 (last)"[..])
        );
        // Another replica reads what the server holds.
        let b = replica(cfg.clone()).await;
        wait_closed(&b).await;
        let seen = b.get_bytes("k").await.unwrap();
        assert!(
            seen.as_deref() != Some(&b"v1 (removed)"[..]),
            "the server holds the removed value after set, remove, set on one replica \
             (a write counted as failed landed late)"
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// A storm of sets and removes on 12 keys while the server is stopped and continued every
/// 40 operations (threshold 2: the breaker flaps). Each `set` returns within 1 s (never waits
/// on the stopped server); every
/// read on the replica (hot tier of 4 entries, so reads reach the disk and the shared tier)
/// is its own last operation; after the storm a final operation per key, delivered while
/// Closed, is exactly what a fresh replica reads.
#[test]
fn set_remove_storm_while_the_breaker_flaps() {
    let _slot = exclusive_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8storm", 2);
        let a = replica_with(Some(cfg.clone()), |root| {
            local_builder(root).hot_capacity_entries(4)
        })
        .await;
        wait_closed(&a).await;
        let mut rng = Rng::new(8);
        let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut stopped = false;
        let mut slowest_set = Duration::ZERO;
        let mut wrong = Vec::new();
        for i in 0..400u64 {
            if i % 40 == 39 {
                if stopped {
                    sigcont_async(&server).await;
                } else {
                    sigstop_async(&server).await;
                }
                stopped = !stopped;
            }
            let k = format!("k{}", rng.below(12));
            if rng.below(3) == 0 {
                a.remove(k.as_str()).await.unwrap();
                model.insert(k.clone(), None);
            } else {
                let v = format!("{k}|{i}");
                let t = Instant::now();
                a.set_bytes(k.as_str(), &v).await.unwrap();
                slowest_set = slowest_set.max(t.elapsed());
                model.insert(k.clone(), Some(v));
            }
            let probe = format!("k{}", rng.below(12));
            let got = a.get_bytes(probe.as_str()).await.unwrap();
            let want = model.get(&probe).cloned().flatten();
            if got.as_deref() != want.as_deref().map(str::as_bytes) {
                wrong.push(format!(
                    "op {i}: {probe} read {:?}, last op {want:?}",
                    got.as_deref().map(String::from_utf8_lossy)
                ));
            }
        }
        if stopped {
            sigcont_async(&server).await;
        }
        assert!(wrong.is_empty(), "stale or wrong reads: {wrong:#?}");
        assert!(
            slowest_set < Duration::from_secs(1),
            "a set waited {slowest_set:?}"
        );
        wait_closed(&a).await;
        a.flush().await.unwrap();
        let mut finals = BTreeMap::new();
        for n in 0..12 {
            let k = format!("k{n}");
            if n % 3 == 0 {
                a.remove(k.as_str()).await.unwrap();
                finals.insert(k, None);
            } else {
                let v = format!("{k}|final");
                a.set_bytes(k.as_str(), &v).await.unwrap();
                finals.insert(k, Some(v));
            }
        }
        a.flush().await.unwrap();
        assert_eq!(a.shared_state(), Some(answercache::BreakerState::Closed));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = replica(cfg.clone()).await;
        wait_closed(&b).await;
        for (k, want) in &finals {
            let got = b.get_bytes(k.as_str()).await.unwrap();
            assert_eq!(
                got.as_deref().map(String::from_utf8_lossy),
                want.as_deref().map(Into::into),
                "{k} on the server after the final operations"
            );
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// F6's mechanism, made frequent: a removal whose `DEL` the drain task has taken from the
/// queue for a batch must hide the key's shared copy until the server answered, including
/// while the batch is being encoded, before the `DEL` is sent. Here the batch is four 60 KiB
/// values (each under the 64 KiB above which encoding moves to the blocking pool, as in
/// adversary10 R5) gzipped at level 9 on the drain task's own worker thread, with no await
/// between the take and the send: milliseconds during which this replica's reads run on the
/// runtime's other worker thread. The drain is held on an earlier write (`CLIENT PAUSE
/// WRITE`, reads still served) while the values, the removal and a few small writes (which
/// evict the removal's tombstone from a hot tier of 2 entries) queue up behind it; then this
/// replica reads the removed key in a loop until the server no longer holds it. Every read
/// must be a miss: the removed answer is on the server until the `DEL` lands, and only the
/// hiding keeps it from being served.
#[test]
fn a_removal_taken_for_a_batch_hides_the_shared_copy_while_it_is_encoded() {
    let _slot = exclusive_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let prefix = "a8take";
        let cfg = cfg(&server, prefix, 3);
        let a = replica_with(Some(cfg.clone()), |root| {
            local_builder(root)
                .hot_capacity_entries(2)
                .compression_level(9)
        })
        .await;
        wait_closed(&a).await;
        let mut rng = Rng::new(66);
        let words = [
            "answer", "token", "cache", "shared", "replica", "value", "the", "of",
        ];
        // Compressible text, 60 KiB: encoded inline (not on the blocking pool).
        let mut value = || -> Vec<u8> {
            let mut v = Vec::with_capacity(60 << 10);
            while v.len() < 60 << 10 {
                v.extend_from_slice(words[rng.below(words.len())].as_bytes());
                v.extend_from_slice(format!(" {} ", rng.below(1000)).as_bytes());
            }
            v.truncate(60 << 10);
            v
        };
        let mut admin = server.admin().await;
        let mut stale = Vec::new();
        let mut reads = 0u64;
        for round in 0..5 {
            let k = format!("victim{round}");
            let ekey = entry_key(prefix, k.as_bytes());
            a.set_bytes(k.as_str(), "the removed answer").await.unwrap();
            a.flush().await.unwrap();
            assert!(
                server.exists(&ekey).await,
                "round {round}: the value is shared"
            );
            // The drain sends `hold` and waits for the server (writes paused, < the timeout).
            server.client_pause(Duration::from_millis(80), true).await;
            a.set_bytes(format!("hold{round}").as_str(), "x")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            for j in 0..2 {
                a.set_bytes(format!("before{round}-{j}").as_str(), value())
                    .await
                    .unwrap();
            }
            a.remove(k.as_str()).await.unwrap();
            for j in 0..2 {
                a.set_bytes(format!("after{round}-{j}").as_str(), value())
                    .await
                    .unwrap();
            }
            for j in 0..3 {
                a.set_bytes(format!("evict{round}-{j}").as_str(), "e")
                    .await
                    .unwrap();
            }
            // Until the server no longer holds the key, and 3 reads more (10 s at most).
            let start = Instant::now();
            let mut after = 0;
            while after < 3 {
                let on_server: bool = redis::cmd("EXISTS")
                    .arg(&ekey)
                    .query_async(&mut admin)
                    .await
                    .unwrap();
                if !on_server {
                    after += 1;
                }
                let got = a.get_bytes(k.as_str()).await.unwrap();
                reads += 1;
                if let Some(v) = got {
                    stale.push(format!(
                        "round {round}, {:?} after the remove: {k} read {:?}",
                        start.elapsed(),
                        String::from_utf8_lossy(&v)
                    ));
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "round {round}: the DEL never reached the server: {}",
                    shared_figures(&a.stats())
                );
            }
        }
        assert!(
            stale.is_empty(),
            "a removed answer was served in {} of {reads} reads; the first: {:#?}",
            stale.len(),
            &stale[..stale.len().min(5)]
        );
        a.close().await.unwrap();
    });
}
