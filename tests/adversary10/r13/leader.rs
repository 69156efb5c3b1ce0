//! A lease leader's local store, its mark, and its inline write against this replica's own
//! operations of the key.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
use answercache::Source;

use super::*;
use crate::mem::*;

use crate::r12::leader::{leased, loader, until_writes};

/// A `remove` made while the leader, having stored its answer locally, waits (in
/// `put_inline`) for a sent `DEL` of the key: the leader must stand down (its mark cleared
/// by the `remove`'s push), so this replica and the server both end with nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_remove_while_the_leader_waits_for_a_sent_del_wins_everywhere() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    a.set_bytes("k", b"v1").await.unwrap();
    a.flush().await.unwrap();
    let writes = server.calls(SharedOpKind::Write);
    // The `DEL` batch is held until the timeout (200 ms).
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
    assert!(a.remove("k").await.unwrap());
    until_writes(&server, writes + 1).await;
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let lead = a.get_or_insert_bytes(
        "k",
        &controls,
        loader(&calls, b"v2 (loaded)", Duration::ZERO),
    );
    let rm = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.remove("k").await.unwrap()
    };
    let (led, removed) = tokio::join!(lead, rm);
    let led = led.unwrap();
    assert_eq!(
        (&led.value[..], led.source, removed),
        (&b"v2 (loaded)"[..], Source::Loaded, true)
    );
    a.flush().await.unwrap();
    assert_eq!(
        (text(a.get_bytes("k").await.unwrap()), held(&server, b"k")),
        (None, None)
    );
    assert_eq!(fresh_read(&server, "k").await, None);
}

/// A leader dropped while its inline write is held by the server (after its local store),
/// then a `set` of the key: the `set` wins here and on the server.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_set_after_a_cancelled_leader_wins_everywhere() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    let writes = server.calls(SharedOpKind::Write);
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let lead = a.get_or_insert_bytes(
        "k",
        &controls,
        loader(&calls, b"v2 (loaded)", Duration::ZERO),
    );
    tokio::select! {
        _ = lead => panic!("the leader's inline write is held"),
        () = until_writes(&server, writes + 1) => {}
    }
    // The leader is gone; its answer is stored here (stored before the inline write).
    a.set_bytes("k", b"v3 (set)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.flush().await.unwrap();
    assert_eq!(
        (text(a.get_bytes("k").await.unwrap()), held(&server, b"k")),
        (Some("v3 (set)".to_owned()), Some("v3 (set)".to_owned()))
    );
    assert_eq!(fresh_read(&server, "k").await, Some("v3 (set)".to_owned()));
}

/// Two leaders of one key in sequence, a `remove` between them: the second one's answer is
/// written (a mark left by the first one does not make it stand down), then a `remove` of
/// it wins everywhere.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two_leaders_of_one_key_in_sequence() {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let first = a
        .get_or_insert_bytes("k", &controls, loader(&calls, b"v1", Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(first.source, Source::Loaded);
    assert_eq!(held(&server, b"k"), Some("v1".to_owned()));
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    assert_eq!(held(&server, b"k"), None);
    let second = a
        .get_or_insert_bytes("k", &controls, loader(&calls, b"v2", Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        (&second.value[..], second.source),
        (&b"v2"[..], Source::Loaded)
    );
    assert_eq!(held(&server, b"k"), Some("v2".to_owned()));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    assert_eq!(
        (text(a.get_bytes("k").await.unwrap()), held(&server, b"k")),
        (None, None)
    );
    let s = a.stats();
    assert_eq!(
        (
            s.shared_writes_ok,
            s.shared_writes_failed,
            s.shared_writes_dropped
        ),
        (4, 0, 0),
        "v1, remove, v2, remove"
    );
}

/// set k v1 (flushed), `remove k` (its `DEL` held until the timeout), then, at 20 ms, a
/// second `remove k`; with `lead`, a lease leader of `k` loads `v2` meanwhile and stands down
/// (the second `remove` came after its local store). Returns ok, failed, dropped.
async fn stand_down(lead: bool) -> (u64, u64, u64) {
    let server = MemoryShared::new();
    let a = leased(&server).await;
    a.set_bytes("k", b"v1").await.unwrap();
    a.flush().await.unwrap();
    let writes = server.calls(SharedOpKind::Write);
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
    assert!(a.remove("k").await.unwrap());
    until_writes(&server, writes + 1).await;
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let load = async {
        if lead {
            let led = a
                .get_or_insert_bytes(
                    "k",
                    &controls,
                    loader(&calls, b"v2 (loaded)", Duration::ZERO),
                )
                .await
                .unwrap();
            assert_eq!(led.source, Source::Loaded);
        }
    };
    let rm = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.remove("k").await.unwrap()
    };
    tokio::join!(load, rm);
    a.flush().await.unwrap();
    assert_eq!(
        (text(a.get_bytes("k").await.unwrap()), held(&server, b"k")),
        (None, None)
    );
    let s = a.stats();
    (
        s.shared_writes_ok,
        s.shared_writes_failed,
        s.shared_writes_dropped,
    )
}

/// Accounting of a leader that stands down. T1 asked for one write more with the leader
/// (dropped, superseded). Decided (session 13): an operation replaced on this replica by a
/// newer one of its key before it was sent is coalesced, not counted (a queued value
/// overwritten, a removal repeated while kept, and so a leader's answer that a later
/// `remove` made stand down): the newer operation is the key's write (`Stats::
/// shared_writes_dropped` says so). So the counts are exactly those without the leader.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_leader_that_stands_down_is_counted_once() {
    let without = stand_down(false).await;
    let with = stand_down(true).await;
    assert_eq!(without, (2, 0, 0));
    assert_eq!(
        with, without,
        "ok, failed, dropped: without the leader {without:?}, with it {with:?}"
    );
}

/// A leader whose local store is refused (`ValueTooLarge`): the answer is returned uncached,
/// not written to the server (no mark, token 0), and an older shared copy is not left to be
/// served instead of a newer local state: after `set k v1`, `remove k`, the too-large load
/// leaves nothing here and on the server.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_leader_whose_local_store_is_refused_writes_nothing() {
    let server = MemoryShared::new();
    let a = replica_with(
        &server,
        |c| c,
        |b| b.shared_single_flight(true).max_entry_bytes(64),
    )
    .await;
    a.set_bytes("k", b"v1").await.unwrap();
    a.flush().await.unwrap();
    assert!(a.remove("k").await.unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let big = vec![b'x'; 100];
    let led = a
        .get_or_insert_bytes("k", &controls, loader(&calls, &big, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((led.value.len(), led.source), (100, Source::Loaded));
    a.flush().await.unwrap();
    assert_eq!(
        (text(a.get_bytes("k").await.unwrap()), held(&server, b"k")),
        (None, None)
    );
    assert_eq!(fresh_read(&server, "k").await, None);
}
