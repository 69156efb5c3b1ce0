//! A newer `set` whose value is not shared: it expired while queued behind a slow batch, or
//! it is over `max_entry_bytes`. The drain task skips it (`Encoding::encode`: `continue`)
//! and sends nothing for the key, so the *older* value stays on the server for `max_ttl`
//! (7 days): the overwritten answer is served by every other replica, and by this one once
//! its own copy expired (in-memory server, paused clock: deterministic).

use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};

use super::*;
use crate::mem::*;

const OLD: &[u8] = b"v1 (overwritten)";

/// `k` = [`OLD`] on the server, written by `a` itself.
async fn with_old(server: &MemoryShared, a: &answercache::TieredCache) {
    a.set_bytes("k", OLD).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(held(server, b"k").as_deref(), Some("v1 (overwritten)"));
}

/// A `set k v1` (no TTL) is on the server. A latency spike (writes answered in 100 ms) keeps
/// the drain task busy with another key while `set_bytes_with_ttl(k, v2, 50 ms)` is queued;
/// v2 has expired when its batch is encoded and is skipped. Once v2 expired, `k` has no
/// value on this replica (without a shared tier: `None`), yet A itself reads v1 back from
/// the server (`shared_hits = 1`), and so does a fresh replica. README: "a local remove,
/// clear or newer set is never overridden by an older shared copy".
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_overwriting_set_that_expires_in_the_queue_leaves_the_older_value_shared() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    with_old(&server, &a).await;
    server.latency(Duration::from_millis(100));
    a.set_bytes("x", b"another key").await.unwrap();
    settle().await; // the drain task sends [x]: answered at 100 ms
    a.set_bytes_with_ttl("k", b"v2 (50 ms)", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.latency(Duration::ZERO);
    a.flush().await.unwrap();
    let s = a.stats();
    // x and v1 were written; v2 never was, and nothing else was sent for `k`.
    assert_eq!((s.shared_writes_ok, s.shared_writes_failed), (2, 0));
    let on_a = text(a.get_bytes("k").await.unwrap());
    let hits_a = a.stats().shared_hits;
    let on_fresh = fresh_read(&server, "k").await;
    assert_eq!(
        (on_a, on_fresh, held(&server, b"k")),
        (None, None, None),
        "the overwritten value was served (A's shared hits: {hits_a})"
    );
}

/// The same with a value over `max_entry_bytes` (counted `too_large`, "stays local"): the
/// value it overwrote stays shared, and a fresh replica is served it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_overwriting_set_too_large_to_share_leaves_the_older_value_shared() {
    let server = MemoryShared::new();
    let a = replica_with(&server, |c| c.max_entry_bytes(1024), |b| b).await;
    with_old(&server, &a).await;
    a.set_bytes("k", incompressible(4096, 7)).await.unwrap();
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(
        s.shared_writes_dropped_by_reason.get("too_large").copied(),
        Some(1)
    );
    // This replica serves its own newer value (hot, warm).
    assert_eq!(a.get_bytes("k").await.unwrap().map(|v| v.len()), Some(4096));
    assert_eq!(
        (fresh_read(&server, "k").await, held(&server, b"k")),
        (None, None),
        "a fresh replica is served the overwritten value"
    );
}

/// Guard (D1's `del_first`): set, *remove*, then a value too large to share: the removal the
/// value superseded is still sent first, so the server ends with nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_too_large_value_after_a_remove_still_sends_the_del() {
    let server = MemoryShared::new();
    let a = replica_with(&server, |c| c.max_entry_bytes(1024), |b| b).await;
    with_old(&server, &a).await;
    assert!(a.remove("k").await.unwrap());
    a.set_bytes("k", incompressible(4096, 8)).await.unwrap();
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(
        (
            s.shared_writes_ok,
            s.shared_writes_dropped_by_reason.get("too_large").copied(),
            s.shared_queue_entries
        ),
        (2, Some(1), 0)
    );
    assert_eq!(held(&server, b"k"), None);
    assert_eq!(fresh_read(&server, "k").await, None);
}

/// Guard: set (TTL 10 s), remove, set (TTL 20 ms) that expires while queued behind a slow
/// batch: the removal it superseded is still sent, so nothing is left on the server, and the
/// replica (its own v2 expired) reads nothing, now and after a reopen.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_expired_value_after_a_remove_still_sends_the_del() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = dir
        .builder()
        .clock(clock())
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    with_old(&server, &a).await;
    server.latency(Duration::from_millis(100));
    a.set_bytes("x", b"another key").await.unwrap();
    settle().await;
    assert!(a.remove("k").await.unwrap());
    a.set_bytes_with_ttl("k", b"v2 (20 ms)", Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.latency(Duration::ZERO);
    a.flush().await.unwrap();
    assert_eq!(held(&server, b"k"), None);
    assert_eq!(text(a.get_bytes("k").await.unwrap()), None);
    a.close().await.unwrap();
    let a = dir
        .builder()
        .clock(clock())
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    assert_eq!(text(a.get_bytes("k").await.unwrap()), None);
    assert_eq!(a.stats().shared_hits, 0);
    a.close().await.unwrap();
}
