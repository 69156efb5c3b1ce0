//! What the fixes of R3 and R12 promise, beyond the reviewer's tests (in-memory server,
//! paused clock: deterministic).
//! - R3: a lease key with a TTL longer than `lease_ttl` (planted with `PX` of a day) is
//!   taken over after one `lease_ttl`, and deleted, so the next miss does not wait at all.
//! - R12: a leader whose answer is not shared (not cacheable, or over `max_entry_bytes`)
//!   leaves the "done, not shared" mark: its waiters load side by side at once, so the
//!   slowest caller waits one load more than the leader (not N), with no takeovers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::MemoryShared;
use answercache::Source;
use tokio::time::Instant;

use super::*;
use crate::mem::*;

async fn leased(
    server: &MemoryShared,
    edit: fn(answercache::SharedConfig) -> answercache::SharedConfig,
) -> Replica {
    replica_with(server, edit, |b| b.shared_single_flight(true)).await
}

/// Loads `key` on `r` with a loader of `load`, returning when it had its answer.
async fn ask(
    r: &Replica,
    calls: &Arc<AtomicU32>,
    controls: &Controls<[u8]>,
    answer: Vec<u8>,
    load: Duration,
    start: Instant,
) -> Duration {
    let calls = calls.clone();
    let got = r
        .cache
        .get_or_insert_bytes("k", controls, move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(load).await;
            Ok::<_, String>(answer)
        })
        .await
        .unwrap();
    assert_eq!(got.source, Source::Loaded);
    start.elapsed()
}

/// R3: a planted lease key with a day's `PX` (longer than any lease of this cache's) costs
/// the first miss one `lease_ttl` (10 s) of waiting, not `lease_wait_max` (60 s); it is then
/// taken over and deleted, and the next miss leads at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_lease_key_with_a_longer_ttl_is_taken_over_after_one_lease_ttl() {
    let server = MemoryShared::new();
    server.plant(
        &lease_key(b"k"),
        b"a foreign lease",
        Some(Duration::from_secs(24 * 3600)),
    );
    let a = leased(&server, |c| c).await;
    let calls = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let controls = Controls::new();
    let first = ask(&a, &calls, &controls, b"one".to_vec(), secs(1) / 10, start).await;
    let s = a.stats();
    assert_eq!(
        (
            calls.load(Ordering::SeqCst),
            s.shared_lease_takeovers,
            s.shared_lease_wait_timeouts
        ),
        (1, 1, 0)
    );
    // One lease TTL, plus at most one poll at the longest delay and the load.
    assert!(first <= secs(11), "waited {first:?}");
    assert!(
        first >= secs(10),
        "waited {first:?}: a lease of a longer-configured replica gets one lease_ttl"
    );
    // Deleted: released by the new leader in turn.
    assert_eq!(server.raw(&lease_key(b"k")), None);
    a.remove("k").await.unwrap();
    a.flush().await.unwrap();
    server.plant(&lease_key(b"k"), b"another, no expiry", None);
    let start = Instant::now();
    let second = ask(&a, &calls, &controls, b"two".to_vec(), secs(1) / 10, start).await;
    assert!(
        second <= secs(1),
        "a lease key without expiry is taken over at once: {second:?}"
    );
    assert_eq!(server.raw(&lease_key(b"k")), None);
}

/// R12, what the mark guarantees: with 3 replicas asking at once and an answer that is not
/// shared, the waiters load side by side once the leader's load is over: 3 loads, no
/// takeovers, and the slowest caller waits 2 loads plus at most one poll at the longest
/// delay (500 ms), however many replicas wait. (The reviewer's test asks for 1.6 s, which
/// no lease can give: a waiter learns the answer is not shared only when the leader's load
/// is over.) The same for an answer over `max_entry_bytes`, which `put_inline` does not
/// write.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unshared_answer_costs_the_waiters_one_load_more_not_one_each() {
    for too_large in [false, true] {
        let server = MemoryShared::new();
        let edit: fn(answercache::SharedConfig) -> answercache::SharedConfig = if too_large {
            |c| c.max_entry_bytes(1024)
        } else {
            |c| c
        };
        let replicas = [
            leased(&server, edit).await,
            leased(&server, edit).await,
            leased(&server, edit).await,
            leased(&server, edit).await,
        ];
        let calls = Arc::new(AtomicU32::new(0));
        let (controls, answer) = if too_large {
            (Controls::new(), incompressible(4096, 5))
        } else {
            (
                Controls::new().cacheable(|_: &[u8]| false),
                b"a refusal, not cached".to_vec(),
            )
        };
        let start = Instant::now();
        let (t0, t1, t2, t3) = tokio::join!(
            ask(
                &replicas[0],
                &calls,
                &controls,
                answer.clone(),
                secs(1),
                start
            ),
            ask(
                &replicas[1],
                &calls,
                &controls,
                answer.clone(),
                secs(1),
                start
            ),
            ask(
                &replicas[2],
                &calls,
                &controls,
                answer.clone(),
                secs(1),
                start
            ),
            ask(
                &replicas[3],
                &calls,
                &controls,
                answer.clone(),
                secs(1),
                start
            )
        );
        let slowest = t0.max(t1).max(t2).max(t3);
        let takeovers: u64 = replicas
            .iter()
            .map(|r| r.stats().shared_lease_takeovers)
            .sum();
        assert_eq!(
            (calls.load(Ordering::SeqCst), takeovers),
            (4, 0),
            "too large: {too_large}"
        );
        assert!(
            slowest <= secs(2) + Duration::from_millis(500),
            "too large: {too_large}: the slowest caller waited {slowest:?} ({t0:?}, {t1:?}, {t2:?}, {t3:?})"
        );
        // The mark is short-lived and never a value.
        assert_eq!(held(&server, b"k"), None);
        tokio::time::sleep(secs(3)).await;
        assert_eq!(server.raw(&lease_key(b"k")), None);
    }
}
