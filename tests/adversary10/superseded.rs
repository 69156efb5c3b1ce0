//! A `set` (or a lease leader's inline write) that supersedes a remove's `DEL` and then does
//! not reach the server (refused for memory, or failed): the `DEL` is forgotten, so the
//! removed answer stays on the server (in-memory server, paused clock: deterministic).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{MemoryShared, SharedFault, SharedOpKind};
use answercache::Source;

use crate::mem::*;

const REMOVED: &[u8] = b"v1 (removed)";

/// A replica with `k` = [`REMOVED`] on the server (its own `set`, flushed).
async fn with_removed_candidate(server: &MemoryShared, lease: bool) -> Replica {
    let a = replica_with(server, |c| c, |b| b.shared_single_flight(lease)).await;
    a.set_bytes("k", REMOVED).await.unwrap();
    a.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"k")).is_some());
    a
}

/// What the server holds for `k`, decoded.
fn held(server: &MemoryShared) -> Option<String> {
    server.raw(&entry_key(b"k")).map(|r| {
        answercache::warm::format::decode(&r, b"k", &Default::default())
            .map(|d| String::from_utf8_lossy(&d.value).into_owned())
            .unwrap_or_else(|e| format!("undecodable: {e:?}"))
    })
}

/// What a fresh replica on `server` reads for `k`.
async fn fresh_read(server: &MemoryShared) -> Option<Vec<u8>> {
    let b = replica(server).await;
    let got = b.get_bytes("k").await.unwrap().map(|v| v.to_vec());
    b.cache.close().await.unwrap();
    got
}

/// set v1, remove, set v2 on one replica while the server refuses writes for memory
/// (`maxmemory` with the default `noeviction`; `DEL` still works there). The promise
/// (RELIABILITY.md): "a set, remove, set on one replica leaves the last value or nothing on
/// the server, never the removed one". v2 cannot land (OOM), so "nothing" is the answer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn oom_refused_set_after_a_remove_leaves_the_removed_value() {
    let server = MemoryShared::new();
    let a = with_removed_candidate(&server, false).await;
    server.oom(true);
    assert!(a.remove("k").await.unwrap());
    a.set_bytes("k", b"v2 (last)").await.unwrap();
    a.flush().await.unwrap();
    let s = a.stats();
    // The SET of v2 was refused for memory (not a failure: the breaker stays Closed).
    assert_eq!(
        (
            s.shared_write_rejected_oom,
            s.shared_writes_failed,
            s.shared_state
        ),
        (1, 0, Some(answercache::BreakerState::Closed))
    );
    // The replica itself reads its last value.
    assert_eq!(
        a.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"v2 (last)"[..])
    );
    server.oom(false);
    tokio::time::sleep(secs(10)).await;
    a.flush().await.unwrap();
    assert_eq!(
        held(&server),
        None,
        "the removed value is still on the server"
    );
    assert_eq!(fresh_read(&server).await, None);
}

/// The same with a `DEL` that failed once (kept, resent after `open_timeout`) and a newer
/// `set` whose write then fails once: the breaker stays Closed (2 failures of 3), the `set`
/// "superseded" the kept removal although it never reached the server.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failed_set_after_a_kept_remove_leaves_the_removed_value() {
    let server = MemoryShared::new();
    let a = with_removed_candidate(&server, false).await;
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    // The DEL failed: kept (one entry waiting), the removed value still on the server.
    assert_eq!(a.stats().shared_queue_entries, 1);
    assert!(server.raw(&entry_key(b"k")).is_some());
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    a.set_bytes("k", b"v2 (last)").await.unwrap();
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(
        (s.shared_errors, s.shared_writes_failed, s.shared_state),
        (2, 1, Some(answercache::BreakerState::Closed))
    );
    // Long past open_timeout (5 s): anything kept has been resent.
    tokio::time::sleep(secs(30)).await;
    a.flush().await.unwrap();
    assert_eq!(
        held(&server),
        None,
        "the removed value is still on the server"
    );
    assert_eq!(fresh_read(&server).await, None);
}

type Loading = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>>>>;

fn loader(calls: &Arc<AtomicU32>, answer: &'static [u8]) -> impl FnOnce() -> Loading {
    let calls = calls.clone();
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(answer.to_vec())
        })
    }
}

/// A lease leader's inline write drops the key's kept `DEL` before it writes
/// (`SharedTier::put_inline`), and does not keep it again when the write fails.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failed_lease_write_after_a_kept_remove_leaves_the_removed_value() {
    let server = MemoryShared::new();
    let a = with_removed_candidate(&server, true).await;
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    assert_eq!(a.stats().shared_queue_entries, 1);
    // The remove's tombstone makes the lookup a miss: this replica leads the load of `k`.
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    let calls = Arc::new(AtomicU32::new(0));
    let got = a
        .get_or_insert_bytes("k", &Controls::new(), loader(&calls, b"v2 (loaded)"))
        .await
        .unwrap();
    assert_eq!(
        (&got.value[..], got.source),
        (&b"v2 (loaded)"[..], Source::Loaded)
    );
    let s = a.stats();
    assert_eq!(
        (
            s.shared_lease_acquired,
            s.shared_writes_failed,
            s.shared_state
        ),
        (1, 1, Some(answercache::BreakerState::Closed))
    );
    tokio::time::sleep(secs(30)).await;
    a.flush().await.unwrap();
    assert_eq!(
        held(&server),
        None,
        "the removed value is still on the server"
    );
    assert_eq!(fresh_read(&server).await, None);
}

/// Guard: the same sequence whose superseding `set` does land ends with it (the supersede
/// itself is right when the write is delivered).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn delivered_set_after_a_kept_remove_ends_with_the_last_value() {
    let server = MemoryShared::new();
    let a = with_removed_candidate(&server, false).await;
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    assert_eq!(a.stats().shared_queue_entries, 1);
    a.set_bytes("k", b"v2 (last)").await.unwrap();
    a.flush().await.unwrap();
    tokio::time::sleep(secs(30)).await;
    a.flush().await.unwrap();
    assert_eq!(
        fresh_read(&server).await.as_deref(),
        Some(&b"v2 (last)"[..])
    );
    let s = a.stats();
    // v1, then the kept DEL sent first in the pipeline of v2, then v2 (D1's fix).
    assert_eq!(
        (s.shared_errors, s.shared_writes_ok, s.shared_queue_entries),
        (1, 3, 0)
    );
}

/// Guard: set, remove (its `DEL` failed once and kept), then nothing: the `DEL` is resent
/// after `open_timeout` and the removed value is gone from the server.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_kept_remove_is_delivered_after_open_timeout() {
    let server = MemoryShared::new();
    let a = with_removed_candidate(&server, false).await;
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"k")).is_some());
    // Hidden here meanwhile.
    assert_eq!(a.get_bytes("k").await.unwrap(), None);
    tokio::time::sleep(secs(6)).await;
    a.flush().await.unwrap();
    assert_eq!(server.raw(&entry_key(b"k")), None);
    assert_eq!(fresh_read(&server).await, None);
    assert_eq!(a.stats().shared_queue_entries, 0);
}
