//! A lease leader's inline write (`put_inline`) against this replica's own `set`/`remove`
//! of the key around it, and the accounting of the operations it supersedes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
use answercache::Source;

use super::*;
use crate::mem::*;

pub(crate) type Loading =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>>>>;

/// A loader that counts its calls and answers `answer` after `took`.
pub(crate) fn loader(
    calls: &Arc<AtomicU32>,
    answer: &[u8],
    took: Duration,
) -> impl FnOnce() -> Loading {
    let calls = calls.clone();
    let answer = answer.to_vec();
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(took).await;
            Ok(answer)
        })
    }
}

pub(crate) async fn leased(server: &MemoryShared) -> Replica {
    replica_with(server, |c| c, |b| b.shared_single_flight(true)).await
}

/// Sleeps 1 ms at a time (paused clock) until `server` has seen `n` pipelined writes.
pub(crate) async fn until_writes(server: &MemoryShared, n: u64) {
    for _ in 0..10_000 {
        if server.calls(SharedOpKind::Write) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "the server saw {} writes",
        server.calls(SharedOpKind::Write)
    );
}

/// A `set` of the key made while this replica's lease leader's inline write is on its way to
/// the server (every answer takes 50 ms). The `set` is queued; the leader's write lands; the
/// drain task's batch waits for it (R6's fix) and then writes the `set`'s value: the server
/// ends with `v3 (set)`. But the leader's own local store (`set_unshared`, after
/// `guard.complete` returned) lands after the `set`, so this replica keeps `v2 (loaded)`,
/// exactly what it would keep without a shared tier. From then on the replicas disagree for
/// good: this one serves v2, every other one is served v3 (7 days), and this one too once its
/// local copy is gone (evicted, a restart without the disk): a value this replica overwrote.
///
/// Fixed (session 13): the leader stores its answer locally first, then writes it inline; the
/// `set`, made after the local store, wins here and on the server (the leader's inline write,
/// already sent, lands first, and the batch waits for it), so all three read `v3 (set)`, as
/// the finding allowed ("an implementation that made A keep v3 instead").
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_set_during_the_leaders_inline_write_agrees_with_the_local_value() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    server.latency(Duration::from_millis(50));
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let writes = server.calls(SharedOpKind::Write);
    let lead = a.get_or_insert_bytes(
        "k",
        &controls,
        loader(&calls, b"v2 (loaded)", Duration::from_millis(100)),
    );
    let set = async {
        // The leader's inline write has reached the server (answered 50 ms later).
        until_writes(&server, writes + 1).await;
        a.set_bytes("k", b"v3 (set)").await.unwrap();
    };
    let (led, ()) = tokio::join!(lead, set);
    let led = led.unwrap();
    assert_eq!(
        (&led.value[..], led.source),
        (&b"v2 (loaded)"[..], Source::Loaded)
    );
    a.flush().await.unwrap();
    server.latency(Duration::ZERO);
    let here = text(a.get_bytes("k").await.unwrap());
    let on_server = held(&server, b"k");
    let fresh = fresh_read(&server, "k").await;
    assert_eq!(
        (here, on_server, fresh),
        (
            Some("v3 (set)".to_owned()),
            Some("v3 (set)".to_owned()),
            Some("v3 (set)".to_owned())
        ),
        "this replica and the server disagree"
    );
}

/// Accounting: a `remove` whose `DEL` is still queued when this replica's lease leader writes
/// the key inline. The leader takes the `DEL` out of the queue and sends it first
/// (`del_first`), and it is delivered, but it is never counted: not ok, not failed, not
/// dropped. Writes made: `set k`, `set x` (its write hangs: failed), `remove k`, the leader's
/// value = 4; ok + failed + dropped = 3.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_removal_taken_over_by_a_leaders_write_is_counted_once() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    a.set_bytes("k", b"v1 (removed)").await.unwrap();
    a.flush().await.unwrap();
    // The drain task is busy with x's batch (held until the 200 ms timeout) ...
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
    a.set_bytes("x", b"x").await.unwrap();
    settle().await;
    // ... while `remove k` is queued behind it.
    assert!(a.remove("k").await.unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let led = a
        .get_or_insert_bytes(
            "k",
            &controls,
            loader(&calls, b"v2 (loaded)", Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(
        (&led.value[..], led.source),
        (&b"v2 (loaded)"[..], Source::Loaded)
    );
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(held(&server, b"k"), Some("v2 (loaded)".to_owned()));
    assert_eq!(held(&server, b"x"), None);
    assert_eq!(
        (
            s.shared_writes_ok,
            s.shared_writes_failed,
            s.shared_writes_dropped,
            s.shared_queue_entries
        ),
        (3, 1, 0, 1),
        "set k, set x (failed), remove k, the leader's value; x's failed value keeps an \
         (uncounted, deferred) removal of x"
    );
}

/// `flush` bound: "waits for a batch the drain task is sending (itself bounded by
/// `timeout`), then sends what is queued within `timeout` × the number of batches"
/// (`SharedTier::flush`; SHARED_TIER.md: `timeout × batches`). Here the drain task's batch
/// holds `set k v3`, made while this replica's lease leader's inline write of `k` is held by
/// the server. The batch first waits for that write (R6's fix: up to `timeout`), then its own
/// round trip is held too (up to `timeout`). A `flush` called when the batch was taken, with
/// nothing else queued, waits for both: 2 × `timeout` (400 ms), not `timeout`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flush_behind_a_batch_waiting_for_a_leader_is_bounded_by_the_timeout() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    let timeout = Duration::from_millis(200);
    let writes = server.calls(SharedOpKind::Write);
    // The leader's inline write and the next batch are both held until the timeout.
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(2));
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let lead = a.get_or_insert_bytes(
        "k",
        &controls,
        loader(&calls, b"v2 (loaded)", Duration::ZERO),
    );
    let flush = async {
        until_writes(&server, writes + 1).await;
        a.set_bytes("k", b"v3 (set)").await.unwrap();
        // The drain task takes [k v3]; it waits for the leader's write.
        settle().await;
        assert_eq!(a.stats().shared_queue_entries, 0);
        let t = tokio::time::Instant::now();
        a.flush().await.unwrap();
        t.elapsed()
    };
    let (led, took) = tokio::join!(lead, flush);
    assert_eq!(&led.unwrap().value[..], &b"v2 (loaded)"[..]);
    assert!(
        took <= timeout,
        "flush took {took:?} with nothing queued and one batch being sent (timeout {timeout:?})"
    );
}

/// Accounting under `flush`'s budget: x's write is held (the drain task busy until 200 ms);
/// A's lease leader writes `k` inline at 150 ms, held too (until 350 ms); A sets `k` = v3 and
/// flushes. The batch `[k v3]` first waits for the leader's write, then its own round trip is
/// held. Every write made (x, the leader's v2, v3) must end once: ok + failed + dropped = 3.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_batch_waiting_for_a_leader_under_a_flush_counts_each_write_once() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    let writes = server.calls(SharedOpKind::Write);
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(3));
    a.set_bytes("x", b"x").await.unwrap();
    settle().await;
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let lead = a.get_or_insert_bytes(
        "k",
        &controls,
        loader(&calls, b"v2 (loaded)", Duration::from_millis(150)),
    );
    let flush = async {
        until_writes(&server, writes + 2).await;
        a.set_bytes("k", b"v3 (set)").await.unwrap();
        a.flush().await.unwrap();
    };
    let (led, ()) = tokio::join!(lead, flush);
    assert_eq!(&led.unwrap().value[..], &b"v2 (loaded)"[..]);
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(
        s.shared_writes_ok + s.shared_writes_failed + s.shared_writes_dropped,
        3,
        "x, the leader's v2, v3: ok {} failed {} dropped {:?}",
        s.shared_writes_ok,
        s.shared_writes_failed,
        s.shared_writes_dropped_by_reason
    );
}
