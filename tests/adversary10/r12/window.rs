//! The leader's supersession of an older operation of its key in a batch the drain task has
//! taken and is encoding on the blocking pool (held here: `max_blocking_threads(1)`, as in
//! r11's `window.rs`), and what is counted for it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use answercache::agent::Controls;
use answercache::testing::{MemoryShared, SharedFault, SharedOpKind, TestDir};
use answercache::{BreakerState, Source};

use super::*;
use crate::mem::*;

use crate::r11::window::{occupy_the_blocking_pool, runtime, until};

/// Accounting through the new path (R6's fix): `remove k` is taken by the drain task with a
/// 100 KiB value of another key, and waits for the blocking pool to encode them. This
/// replica leads a load of `k`: its inline write marks the batch's `DEL k` superseded and
/// sends `DEL` + `SET v2` itself. The batch then drops its `DEL k` before sending. The
/// removal reached the server (in the leader's pipeline), but it is never counted: writes
/// made are set k, set x (its write hangs: failed), remove k, set big, the leader's value =
/// 5; ok + failed + dropped = 4. (Had the `remove` and a later `set` of k met in the queue,
/// the batch would count both, the `DEL` and the `SET`: 2 ok.)
#[test]
fn a_removal_superseded_in_a_taken_batch_is_counted_once() {
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
        a.set_bytes("k", b"v1 (removed)").await.unwrap();
        a.flush().await.unwrap();
        // The drain task is busy with x (held until the 1 s timeout).
        server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
        a.set_bytes("x", b"x").await.unwrap();
        until(&a, "the drain task took [x]", |s| {
            s.shared_queue_entries == 0
        })
        .await;
        assert!(a.remove("k").await.unwrap());
        let big = incompressible(100 << 10, 7);
        a.set_bytes("big", &big).await.unwrap();
        let blocker = occupy_the_blocking_pool().await;
        // x's write times out; the drain task takes [DEL k, big] and waits to encode it.
        // Left: x's kept (uncounted, deferred) removal.
        until(&a, "the drain task took [DEL k, big]", |s| {
            s.shared_queue_entries == 1 && s.shared_writes_failed == 1
        })
        .await;
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let got = a
            .get_or_insert_bytes("k", &Controls::new(), move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(b"v2 (loaded)".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(
            (&got.value[..], got.source, calls.load(Ordering::SeqCst)),
            (&b"v2 (loaded)"[..], Source::Loaded, 1)
        );
        drop(blocker);
        a.flush().await.unwrap();
        let s = a.stats();
        let big_held = server.raw(&entry_key(b"big")).is_some();
        let k_held = held(&server, b"k");
        a.close().await.unwrap();
        assert_eq!((k_held.as_deref(), big_held), (Some("v2 (loaded)"), true));
        assert_eq!(
            (
                s.shared_writes_ok,
                s.shared_writes_failed,
                s.shared_writes_dropped
            ),
            (4, 1, 0),
            "set k, set x (failed), remove k, set big, the leader's value"
        );
    });
}
