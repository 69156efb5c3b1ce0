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
#[ignore = "FINDING F6 (open): under SIGSTOP/SIGCONT a SET that timed out can land after the DEL of a later remove (sent on a new connection), and the removed value is served; fails 3 in 25 runs (13 in 25 at the previous session's code)"]
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
