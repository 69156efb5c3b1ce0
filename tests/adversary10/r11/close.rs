//! `close` while a removal is kept after one failed `DEL` (a transient error: the breaker
//! stays Closed, the server answers everything else). The resend waits `open_timeout`
//! (`dels_not_before`), `flush` skips deferred removals, and `close` then abandons them: the
//! removed answer stays on the server and comes back after the restart, although the server
//! was reachable the whole time (in-memory server, paused clock: deterministic).

use answercache::testing::{MemoryShared, SharedFault, SharedOpKind, TestDir};
use answercache::{BreakerState, TieredCache};

use super::*;
use crate::mem::*;

async fn open_on(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    let cache = dir
        .builder()
        .clock(clock())
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    assert_eq!(cache.shared_state(), Some(BreakerState::Closed));
    cache
}

/// RELIABILITY.md: kept removals are forgotten by "a restart *before the server is back*";
/// here the server never went away (1 failure of 3, Closed, every later call answered), and
/// `close` had the time to send the `DEL` (its flush sends within `timeout` × batches).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_soon_after_one_failed_del_delivers_the_removal() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = open_on(&dir, &server).await;
    a.set_bytes("k", b"v1 (removed)").await.unwrap();
    a.flush().await.unwrap();
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(
        (s.shared_errors, s.shared_queue_entries, s.shared_state),
        (1, 1, Some(BreakerState::Closed))
    );
    // The server answers: another key is written and read fine.
    a.set_bytes("other", b"fine").await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(held(&server, b"other").as_deref(), Some("fine"));
    a.close().await.unwrap();
    let dropped = a.stats().shared_writes_dropped;
    let a = open_on(&dir, &server).await;
    let reopened = text(a.get_bytes("k").await.unwrap());
    a.close().await.unwrap();
    assert_eq!(
        (
            held(&server, b"k"),
            reopened,
            fresh_read(&server, "k").await
        ),
        (None, None, None),
        "the removal was abandoned at close ({dropped} dropped)"
    );
}

/// Guard: the same `close` once `open_timeout` (5 s) has passed sends the kept removal.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn close_after_open_timeout_delivers_the_kept_removal() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = open_on(&dir, &server).await;
    a.set_bytes("k", b"v1 (removed)").await.unwrap();
    a.flush().await.unwrap();
    server.fail(Some(SharedOpKind::Write), SharedFault::Io, Some(1));
    assert!(a.remove("k").await.unwrap());
    a.flush().await.unwrap();
    tokio::time::sleep(secs(6)).await;
    a.close().await.unwrap();
    assert_eq!(held(&server, b"k"), None);
    let a = open_on(&dir, &server).await;
    assert_eq!(text(a.get_bytes("k").await.unwrap()), None);
    a.close().await.unwrap();
}
