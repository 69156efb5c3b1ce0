//! The write path: a bounded, one-slot-per-key queue drained in pipelines; `set` never waits
//! for the server; drops are counted by reason; `PX` is the remaining TTL capped by
//! `max_ttl`; `remove` is a `DEL`; `flush` drains within its bound and never fails.

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
use answercache::BreakerState;

use crate::support::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn px_is_the_remaining_ttl_capped_by_max_ttl() {
    let server = MemoryShared::new();
    let a = replica_with(&server, |c| c.max_ttl(secs(3600)), |b| b).await;
    a.set_bytes_with_ttl("short", b"v", secs(60)).await.unwrap();
    a.set_bytes_with_ttl("long", b"v", secs(7200))
        .await
        .unwrap();
    a.set_bytes("forever", b"v").await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(server.ttl(&entry_key(b"short")), Some(Some(secs(60))));
    assert_eq!(server.ttl(&entry_key(b"long")), Some(Some(secs(3600))));
    assert_eq!(server.ttl(&entry_key(b"forever")), Some(Some(secs(3600))));
    // One pipeline for the three.
    assert_eq!(server.calls(SharedOpKind::Write), 1);
    let s = a.stats();
    assert_eq!((s.shared_writes_ok, s.shared_writes_dropped), (3, 0));
    assert_eq!(
        s.shared_bytes_out,
        ["short", "long", "forever"]
            .iter()
            .map(|k| server.raw(&entry_key(k.as_bytes())).unwrap().len() as u64)
            .sum::<u64>()
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_value_on_the_server_is_the_entry_file_byte_for_byte() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    a.set_bytes("k", b"hello").await.unwrap();
    a.flush().await.unwrap();
    let raw = server.raw(&entry_key(b"k")).unwrap();
    let d = answercache::warm::format::decode(&raw, b"k", &Default::default()).unwrap();
    assert_eq!(d.value, b"hello");
    assert_eq!((d.meta.expires_ms, d.meta.cost), (0, 0));
    // Namespace records are never shared as entries.
    assert_eq!(server.keys(), vec![entry_key(b"k")]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn set_then_remove_ends_as_one_del() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    a.set_bytes("k", b"v").await.unwrap();
    a.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"k")).is_some());
    a.set_bytes("k", b"v2").await.unwrap();
    a.remove("k").await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(server.raw(&entry_key(b"k")), None);
    let s = a.stats();
    // The set, then the DEL that replaced the second set in the queue.
    assert_eq!(
        (s.shared_writes_ok, server.calls(SharedOpKind::Write)),
        (2, 2)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_queue_drops_the_new_write_and_set_never_waits() {
    let server = MemoryShared::new();
    // One slot: 64 bytes of overhead, a 2-byte key, a 10-byte value.
    let a = replica_with(&server, |c| c.write_queue_bytes(76), |b| b).await;
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, None);
    a.set_bytes("k1", b"0123456789").await.unwrap();
    settle().await; // the drain task takes k1 and hangs on it
    let t0 = tokio::time::Instant::now();
    a.set_bytes("k2", b"0123456789").await.unwrap();
    a.set_bytes("k3", b"0123456789").await.unwrap();
    assert_eq!(t0.elapsed(), std::time::Duration::ZERO, "set never waits");
    let s = a.stats();
    // Queued: k2; kept: a removal of k3's shared copy (the dropped k3 supersedes it; not a
    // write of its own, so not counted dropped again).
    assert_eq!(
        (
            s.shared_queue_entries,
            s.shared_queue_bytes,
            s.shared_writes_dropped
        ),
        (2, 76, 1)
    );
    assert_eq!(s.shared_writes_dropped_by_reason["queue_full"], 1);
    // The hung batch times out after 200 ms: a failure.
    tokio::time::advance(std::time::Duration::from_millis(200)).await;
    settle().await;
    let s = a.stats();
    assert_eq!(
        (s.shared_writes_failed, s.shared_errors_by_kind["timeout"]),
        (1, 1)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn entries_over_max_entry_bytes_stay_local() {
    let server = MemoryShared::new();
    let a = replica_with(&server, |c| c.max_entry_bytes(200), |b| b).await;
    // Incompressible: the entry file is well over 200 bytes.
    let noise: Vec<u8> = (0..1000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    a.set_bytes("big", &noise).await.unwrap();
    a.set_bytes("small", b"v").await.unwrap();
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(s.shared_writes_dropped_by_reason["too_large"], 1);
    assert_eq!((s.shared_writes_ok, s.shared_writes_dropped), (1, 1));
    assert_eq!(server.keys(), vec![entry_key(b"small")]);
    assert_eq!(
        a.get_bytes("big").await.unwrap().as_deref(),
        Some(&noise[..])
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn writes_are_dropped_while_the_breaker_is_open_and_flush_never_fails() {
    let server = MemoryShared::new();
    server.fail(None, SharedFault::Io, None);
    let dir = answercache::testing::TestDir::new();
    let a = dir
        .builder()
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    assert_eq!(a.shared_state(), Some(BreakerState::Open));
    a.set_bytes("k", b"v").await.unwrap();
    a.remove("j").await.unwrap();
    a.flush().await.unwrap();
    let s = a.stats();
    // The set is dropped; the remove's DEL is kept until the server is back (or `close`),
    // and so is a removal of the shared copy the dropped set supersedes.
    assert_eq!(s.shared_writes_dropped_by_reason["breaker_open"], 1);
    assert_eq!((s.shared_writes_ok, s.shared_queue_entries), (0, 2));
    assert_eq!(a.get_bytes("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    a.close().await.unwrap();
    let s = a.stats();
    assert_eq!(s.shared_writes_dropped_by_reason["breaker_open"], 2);
    assert_eq!(s.shared_queue_entries, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_del_kept_while_open_is_sent_once_the_breaker_closes() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    a.set_bytes("k", b"v1").await.unwrap();
    a.flush().await.unwrap();
    server.fail(None, SharedFault::Io, None);
    for i in 0..3 {
        assert_eq!(a.get_bytes(format!("miss{i}")).await.unwrap(), None);
    }
    assert_eq!(a.shared_state(), Some(BreakerState::Open));
    a.remove("k").await.unwrap();
    // A newer set while Open is dropped; it does not cancel the kept DEL.
    a.set_bytes("k", b"v2").await.unwrap();
    let s = a.stats();
    assert_eq!((s.shared_writes_dropped, s.shared_queue_entries), (1, 1));
    server.heal();
    tokio::time::advance(answercache::shared::DEFAULT_SHARED_OPEN_TIMEOUT).await;
    settle().await;
    assert_eq!(a.shared_state(), Some(BreakerState::Closed));
    assert!(
        server.raw(&entry_key(b"k")).is_none(),
        "the kept DEL was sent"
    );
    let s = a.stats();
    assert_eq!((s.shared_writes_ok, s.shared_queue_entries), (2, 0));
    assert_eq!(a.get_bytes("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    a.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn flush_gives_up_on_a_hung_server_within_its_bound() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, None);
    for i in 0..3 {
        a.set_bytes(format!("k{i}"), b"v").await.unwrap();
    }
    let t0 = tokio::time::Instant::now();
    a.flush().await.unwrap();
    // One batch: one timeout (200 ms), whether the drain task or flush sent it.
    assert_eq!(t0.elapsed(), std::time::Duration::from_millis(200));
    let s = a.stats();
    // Left: a removal of each failed value's key (the server may hold an older copy), its
    // resend deferred by the failure; not writes of their own.
    assert_eq!(s.shared_queue_entries, 3);
    assert_eq!((s.shared_writes_failed, s.shared_writes_dropped), (3, 0));
    assert_eq!(s.shared_errors_by_kind["timeout"], 1);
    a.close().await.unwrap();
}

/// A `remove` whose `DEL` the drain has taken and is sending (the server has not answered
/// yet) still hides the shared copy: a read on the other connection meanwhile must not get
/// the removed answer back from the server (and promote it, so that it is served again).
/// CI found it (adversary8's set/remove storm): `hides` looked only at the queue and the
/// kept removals, not at a `DEL` in flight.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_removal_whose_del_is_in_flight_still_hides_the_shared_copy() {
    let server = MemoryShared::new();
    let a = replica_with(&server, |c| c, |b| b.hot_capacity_entries(1)).await;
    a.set_bytes("k", b"removed answer").await.unwrap();
    a.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"k")).is_some());
    // The next pipelined write (the DEL) hangs until the tier's timeout.
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
    let writes = server.calls(SharedOpKind::Write);
    a.remove("k").await.unwrap();
    // Another key pushes the tombstone out of the 1-entry hot tier.
    a.set_bytes("other", b"o").await.unwrap();
    for _ in 0..200 {
        if server.calls(SharedOpKind::Write) > writes && a.stats().write_queue_depth == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(
        server.calls(SharedOpKind::Write),
        writes + 1,
        "the DEL is in flight"
    );
    assert_eq!(a.stats().write_queue_depth, 0, "the disk has the removal");
    assert!(
        server.raw(&entry_key(b"k")).is_some(),
        "the DEL has not landed"
    );
    assert_eq!(
        a.get_bytes("k").await.unwrap(),
        None,
        "a removed answer came back from the server while its DEL was in flight"
    );
    assert_eq!(a.get_bytes("k").await.unwrap(), None);
    // The hung DEL times out (200 ms), is kept, and is sent again after the open timeout
    // (5 s).
    tokio::time::sleep(secs(4)).await;
    settle().await;
    // Kept: the DEL, and a removal of `other`'s key (its value was in the same failed
    // batch).
    assert_eq!(a.stats().shared_queue_entries, 2, "the DEL is kept");
    assert!(server.raw(&entry_key(b"k")).is_some());
    assert_eq!(a.get_bytes("k").await.unwrap(), None);
    tokio::time::sleep(secs(2)).await;
    settle().await;
    assert_eq!(a.stats().shared_queue_entries, 0);
    assert_eq!(server.raw(&entry_key(b"k")), None);
    assert_eq!(a.get_bytes("k").await.unwrap(), None);
}
