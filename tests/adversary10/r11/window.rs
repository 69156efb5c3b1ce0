//! The drain task encodes a batch holding a value over 64 KiB on the blocking pool
//! (`send_batch`: `spawn_blocking(enc.encode ..)`), after it took the batch out of the queue
//! and before it sends it. That gzip of up to 256 KiB takes milliseconds (longer on a
//! loaded machine or a busy blocking pool); these tests widen it deterministically by
//! occupying the runtime's only blocking thread (`max_blocking_threads(1)`) while the
//! encode waits. Real clock, in-memory server.
//!
//! - A removal in that batch is in no list while it waits: not queued, not kept, not yet
//!   marked in flight (`DelsInFlight::mark` comes after the encode), so it does not hide
//!   the removed answer.
//! - A lease leader's inline write (`put_inline`) does not wait for the drain task's turn
//!   (`sending`): an older value of the key in that batch is sent after it, and overwrites
//!   it on the server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{MemoryShared, SharedFault, SharedOpKind, TestDir};
use answercache::{BreakerState, Source, TieredCache};

use super::*;
use crate::mem::*;

/// A current-thread runtime with one blocking thread.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap()
}

/// Holds the runtime's only blocking thread until dropped.
pub(crate) struct Blocker(
    #[allow(dead_code, reason = "dropping it frees the thread")] std::sync::mpsc::Sender<()>,
);

pub(crate) async fn occupy_the_blocking_pool() -> Blocker {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let _ = started.send(());
        let _ = rx.recv();
    });
    running.await.unwrap();
    Blocker(tx)
}

/// Polls `cond` on `cache`'s stats every 5 ms, for 10 s at most.
pub(crate) async fn until(
    cache: &TieredCache,
    what: &str,
    cond: impl Fn(&answercache::Stats) -> bool,
) {
    for _ in 0..2000 {
        if cond(&cache.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: {:?}", cache.stats());
}

async fn open_on(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    let cache = dir
        .builder()
        .clock(clock())
        .shared(server.config().prefix(PREFIX).timeout(secs(1)))
        .build()
        .await
        .unwrap();
    until(&cache, "closed", |s| {
        s.shared_state == Some(BreakerState::Closed)
    })
    .await;
    cache
}

/// RELIABILITY.md: a removal "hides the key's shared copy from this replica (so does a `DEL`
/// queued or being sent, until the server has answered it)". Here A removes `k` while the
/// drain task is busy (a write the server holds until the 1 s timeout); the disk delete
/// lands and the hot tombstone goes; the queued `DEL` hides the key (checked). The drain task
/// then takes `[DEL k, a 100 KiB value]` and waits for the blocking pool to encode it: a
/// read now is served the removed answer, promoted into hot and queued for A's disk, so A
/// keeps serving it after the `DEL` landed and after a reopen.
#[test]
fn a_removal_in_a_batch_being_encoded_still_hides_the_shared_copy() {
    runtime().block_on(async {
        let server = MemoryShared::new();
        let dir = TestDir::new();
        let a = open_on(&dir, &server).await;
        a.set_bytes("k", b"v1 (removed)").await.unwrap();
        a.flush().await.unwrap();
        server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
        a.set_bytes("x", b"another key").await.unwrap();
        until(&a, "the drain task took [x]", |s| {
            s.shared_queue_entries == 0
        })
        .await;
        assert!(a.remove("k").await.unwrap());
        a.set_bytes("big", incompressible(100 << 10, 1))
            .await
            .unwrap();
        until(&a, "the disk writes landed", |s| {
            s.write_queue_depth == 0 && s.dirty_entries == 0
        })
        .await;
        // Queued: hidden.
        assert_eq!(text(a.get_bytes("k").await.unwrap()), None);
        let blocker = occupy_the_blocking_pool().await;
        // The hung write times out (1 s); the drain task takes the batch and waits to encode.
        // Left: the removal of `x` kept for the failed write (R1), deferred.
        until(&a, "the drain task took [DEL k, big]", |s| {
            s.shared_queue_entries == 1 && s.shared_writes_failed == 1
        })
        .await;
        let during = text(a.get_bytes("k").await.unwrap());
        drop(blocker);
        a.flush().await.unwrap();
        assert_eq!(held(&server, b"k"), None);
        let after = text(a.get_bytes("k").await.unwrap());
        a.close().await.unwrap();
        let a = open_on(&dir, &server).await;
        let reopened = text(a.get_bytes("k").await.unwrap());
        a.close().await.unwrap();
        assert_eq!(
            (during, after, reopened),
            (None, None, None),
            "the removed answer was served"
        );
    });
}

/// RELIABILITY.md: "a set, remove, set on one replica leaves the last value or nothing on the
/// server, never the removed one". A `set k v1` (100 KiB) is taken by the drain task, which
/// waits for the blocking pool to encode it; A removes `k` and leads its load
/// (`shared_single_flight`): the leader's inline write sends `DEL` + `SET v3` at once. Then
/// the encode runs and the drain task sends `SET v1`: the server ends with v1, removed and
/// overwritten, for `max_ttl` (7 days); every other replica is served it.
#[test]
fn a_lease_leaders_write_is_not_overtaken_by_an_older_queued_value() {
    runtime().block_on(async {
        let server = MemoryShared::new();
        let dir = TestDir::new();
        let a = dir
            .builder()
            .clock(clock())
            .shared_single_flight(true)
            .shared(server.config().prefix(PREFIX).timeout(secs(1)))
            .build()
            .await
            .unwrap();
        until(&a, "closed", |s| {
            s.shared_state == Some(BreakerState::Closed)
        })
        .await;
        let v1 = incompressible(100 << 10, 5);
        let blocker = occupy_the_blocking_pool().await;
        a.set_bytes("k", &v1).await.unwrap();
        until(&a, "the drain task took [k v1]", |s| {
            s.shared_queue_entries == 0
        })
        .await;
        assert!(a.remove("k").await.unwrap());
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let got = a
            .get_or_insert_bytes("k", &Controls::new(), move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, String>(b"v3 (loaded)".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(
            (&got.value[..], got.source, calls.load(Ordering::SeqCst)),
            (&b"v3 (loaded)"[..], Source::Loaded, 1)
        );
        assert_eq!(held(&server, b"k").as_deref(), Some("v3 (loaded)"));
        drop(blocker);
        a.flush().await.unwrap();
        let s = a.stats();
        assert_eq!(s.shared_lease_acquired, 1);
        let on_server = server.raw(&entry_key(b"k")).map(|r| {
            answercache::warm::format::decode(&r, b"k", &Default::default())
                .unwrap()
                .value
                .len()
        });
        let fresh = fresh_read(&server, "k").await.map(|v| v.len());
        a.close().await.unwrap();
        assert_eq!(
            (on_server, fresh),
            (Some(11), Some(11)),
            "the server holds the removed 100 KiB v1 (length {on_server:?}), not v3 (11 bytes)"
        );
    });
}
