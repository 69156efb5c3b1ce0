//! `close`/`flush` with removals kept for values not written (R1's fix), and their bounds and
//! accounting against a server that fails or hangs (in-memory server, paused clock).

use std::time::Duration;

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
use answercache::BreakerState;
use tokio::time::Instant;

use super::*;
use crate::mem::*;

/// Guard (R1 + R2): an overwriting `set` whose write fails once keeps an (uncounted) removal
/// of the shared copy it superseded, deferred by `open_timeout`; `close` right after still
/// sends it (the server answers again). No replica is then served the overwritten v1; the
/// failed value is counted once (failed), the removal not at all.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_sends_the_removal_kept_for_a_failed_overwrite() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    a.set_bytes("k", b"v1 (overwritten)").await.unwrap();
    a.flush().await.unwrap();
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    a.set_bytes("k", b"v2").await.unwrap();
    a.flush().await.unwrap();
    // The failed value's removal is kept (deferred): hidden here, still on the server.
    let kept = a.stats().shared_queue_entries;
    let hidden = text(a.get_bytes("k").await.unwrap());
    let before = held(&server, b"k");
    a.close().await.unwrap();
    let s = a.stats();
    assert_eq!(
        (kept, hidden.as_deref(), before.as_deref()),
        (1, Some("v2"), Some("v1 (overwritten)"))
    );
    assert_eq!(held(&server, b"k"), None);
    assert_eq!(fresh_read(&server, "k").await, None);
    assert_eq!(
        (
            s.shared_writes_ok,
            s.shared_writes_failed,
            s.shared_writes_dropped,
            s.shared_queue_entries
        ),
        (1, 1, 0, 0)
    );
}

/// Guard: `close` while every write hangs, with 100 values and 50 removals queued (3 batches
/// of 64): it returns `Ok` within `timeout` × (1 + 3) on the paused clock (the batch in
/// flight, then the flush's budget), and every one of the 150 writes ends exactly once as ok,
/// failed or dropped; the removals kept for the failed and dropped values are not counted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_on_a_hung_server_is_bounded_and_counts_each_write_once() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    for i in 0..50u32 {
        a.set_bytes(format!("r{i}").as_str(), b"to remove")
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    let base = a.stats();
    assert_eq!(base.shared_writes_ok, 50);
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, None);
    for i in 0..100u32 {
        a.set_bytes(format!("v{i}").as_str(), format!("value {i}").as_bytes())
            .await
            .unwrap();
    }
    for i in 0..50u32 {
        assert!(a.remove(format!("r{i}").as_str()).await.unwrap());
    }
    let t = Instant::now();
    a.close().await.unwrap();
    let took = t.elapsed();
    let s = a.stats();
    assert!(
        took <= Duration::from_millis(200) * 4,
        "close took {took:?} with a 200 ms timeout and 3 batches"
    );
    assert_eq!(s.shared_state, Some(BreakerState::Open));
    assert_eq!(
        s.shared_writes_ok - base.shared_writes_ok
            + s.shared_writes_failed
            + s.shared_writes_dropped,
        150,
        "ok {} failed {} dropped {:?}",
        s.shared_writes_ok,
        s.shared_writes_failed,
        s.shared_writes_dropped_by_reason
    );
    assert_eq!(s.shared_queue_entries, 0);
}

/// Guard (R1, breaker open): a `set` dropped because the breaker is open keeps a removal of
/// the shared copy it superseded; once the breaker closes the `DEL` is sent, so no replica is
/// served the overwritten v1, and the drop is the only count.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_set_dropped_for_an_open_breaker_still_removes_the_older_shared_copy() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    a.set_bytes("k", b"v1 (overwritten)").await.unwrap();
    a.flush().await.unwrap();
    // Three failed writes open the breaker.
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(3));
    for i in 0..3 {
        a.set_bytes(format!("f{i}").as_str(), b"f").await.unwrap();
        a.flush().await.unwrap();
    }
    assert_eq!(a.shared_state(), Some(BreakerState::Open));
    a.set_bytes("k", b"v2").await.unwrap();
    // The breaker closes after `open_timeout` (its probe answers).
    for _ in 0..100 {
        if a.shared_state() == Some(BreakerState::Closed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.shared_state(), Some(BreakerState::Closed));
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(held(&server, b"k"), None);
    assert_eq!(fresh_read(&server, "k").await, None);
    assert_eq!(text(a.get_bytes("k").await.unwrap()).as_deref(), Some("v2"));
    assert_eq!(
        (
            s.shared_writes_ok,
            s.shared_writes_failed,
            s.shared_writes_dropped_by_reason
                .get("breaker_open")
                .copied(),
            s.shared_queue_entries
        ),
        (1, 3, Some(1), 0)
    );
    a.close().await.unwrap();
}

/// Accounting: a `set` whose value expires while it waits in the queue (the drain task is
/// busy with another key's write, held until the 200 ms timeout) is skipped at encode: R1's
/// fix sends a `DEL` in its place, not counted (the value's fate is meant to be counted), but
/// the value itself is counted nowhere: not ok, not failed, not dropped (`too_large` is
/// counted on the branch next to it). Writes made: set x (failed), set k (expired) = 2;
/// ok + failed + dropped = 1.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_value_expired_in_the_queue_is_counted_once() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
    a.set_bytes("x", b"x").await.unwrap();
    settle().await;
    a.set_bytes_with_ttl("k", b"short-lived", Duration::from_millis(50))
        .await
        .unwrap();
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(held(&server, b"k"), None);
    assert_eq!(
        s.shared_writes_ok + s.shared_writes_failed + s.shared_writes_dropped,
        2,
        "set x (failed), set k (expired in the queue): ok {} failed {} dropped {:?}",
        s.shared_writes_ok,
        s.shared_writes_failed,
        s.shared_writes_dropped_by_reason
    );
}

/// Guard (R1, many keys): 300 overwriting `set`s dropped while the breaker is open keep 300
/// uncounted removals (more than one batch of 64); after the breaker closes, `close` sends
/// them all: none of the 300 overwritten values is left on the server, and only the 300 drops
/// (plus the 3 failures that opened the breaker and the 300 first writes) are counted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn three_hundred_dropped_overwrites_leave_no_older_value_shared() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    for i in 0..300u32 {
        a.set_bytes(format!("k{i}").as_str(), b"v1 (overwritten)")
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(3));
    for i in 0..3 {
        a.set_bytes(format!("f{i}").as_str(), b"f").await.unwrap();
        a.flush().await.unwrap();
    }
    assert_eq!(a.shared_state(), Some(BreakerState::Open));
    for i in 0..300u32 {
        a.set_bytes(format!("k{i}").as_str(), b"v2").await.unwrap();
    }
    assert_eq!(a.stats().shared_queue_entries, 300 + 3);
    for _ in 0..100 {
        if a.shared_state() == Some(BreakerState::Closed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.shared_state(), Some(BreakerState::Closed));
    a.close().await.unwrap();
    let s = a.stats();
    let left = (0..300u32)
        .filter(|i| held(&server, format!("k{i}").as_bytes()).is_some())
        .count();
    assert_eq!(left, 0);
    assert_eq!(
        (
            s.shared_writes_ok,
            s.shared_writes_failed,
            s.shared_writes_dropped,
            s.shared_queue_entries
        ),
        (300, 3, 300, 0)
    );
}
