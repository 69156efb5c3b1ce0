//! A shared read in flight (a slow server) while this replica removes, clears or sets the
//! key: once the mutation returned, the replica's reads, now and after a reopen, see it; the
//! shared copy read before it is never promoted over it (in-memory server, paused clock).

use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};
use answercache::TieredCache;

use crate::mem::*;

const OLD: &[u8] = b"v1 (old)";

#[derive(Clone, Copy, Debug)]
enum Mutation {
    Remove,
    Clear,
    Set,
}

/// A replica opened on `dir`.
async fn open_on(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    let cache = dir
        .builder()
        .clock(clock())
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    cache
}

/// Server holds `k` = OLD (B's); A starts a read that takes 100 ms; 10 ms in, A applies `m`.
/// Returns what A reads after both finished, and after a close and reopen.
async fn race(m: Mutation) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>) {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    b.set_bytes("k", OLD).await.unwrap();
    b.flush().await.unwrap();
    let dir = TestDir::new();
    let a = open_on(&dir, &server).await;
    server.latency(Duration::from_millis(100));
    let read = async { a.get_bytes("k").await.unwrap().map(|v| v.to_vec()) };
    let mutate = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        match m {
            Mutation::Remove => {
                a.remove("k").await.unwrap();
            }
            Mutation::Clear => a.clear().await.unwrap(),
            Mutation::Set => a.set_bytes("k", b"v2 (new)").await.unwrap(),
        }
    };
    let (during, ()) = tokio::join!(read, mutate);
    // The read began before the mutation: either answer is a linearisable one.
    assert!(
        during.is_none() || during.as_deref() == Some(OLD),
        "{m:?}: {during:?}"
    );
    server.latency(Duration::ZERO);
    let after = a.get_bytes("k").await.unwrap().map(|v| v.to_vec());
    a.close().await.unwrap();
    let a = open_on(&dir, &server).await;
    let reopened = a.get_bytes("k").await.unwrap().map(|v| v.to_vec());
    a.close().await.unwrap();
    b.cache.close().await.unwrap();
    (during, after, reopened)
}

/// The remove's `DEL` goes out 10 ms in, while the server answers in 100 ms; the hot
/// tombstone is dropped once the disk delete lands, and the `DEL`, in flight, no longer hides
/// the key: the next read (the latency gone, as a spike ends) is served the removed value,
/// which is promoted into hot and written to this replica's disk (served after a reopen).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_remove_during_a_slow_shared_read_holds() {
    let (_, after, reopened) = race(Mutation::Remove).await;
    assert_eq!((after, reopened), (None, None));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_set_during_a_slow_shared_read_holds() {
    let (_, after, reopened) = race(Mutation::Set).await;
    let new = Some(b"v2 (new)".to_vec());
    assert_eq!((after, reopened), (new.clone(), new));
}

/// A local clear: B's entry stays on the server (clear is local), but it was created before
/// the clear, so it is a miss here, now and after the reopen (the fence is on disk).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clear_during_a_slow_shared_read_holds() {
    let (_, after, reopened) = race(Mutation::Clear).await;
    assert_eq!((after, reopened), (None, None));
}

/// A remove whose `DEL` is in flight (taken from the queue, not answered: a server that
/// holds writes back, as `CLIENT PAUSE WRITE` does) is neither queued nor kept, so it does
/// not hide the shared copy. Once the hot tombstone is evicted (hot tier of 1 entry) and the
/// disk delete landed, a read in that window finds the removed value on the server.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_remove_whose_del_is_in_flight_still_hides_the_shared_copy() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = dir
        .builder()
        .clock(clock())
        .hot_capacity_entries(1)
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    a.set_bytes("k", OLD).await.unwrap();
    a.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"k")).is_some());
    // The next write (the remove's DEL) is held back by the server until the timeout.
    server.fail(
        Some(answercache::testing::SharedOpKind::Write),
        answercache::testing::SharedFault::Hang,
        Some(1),
    );
    assert!(a.remove("k").await.unwrap());
    settle().await; // the drain task sends the DEL, which hangs
                    // The disk delete lands (write-behind); another key evicts the tombstone.
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.set_bytes("j", b"other").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let during = a.get_bytes("k").await.unwrap().map(|v| v.to_vec());
    // Past the timeout: the DEL is kept, then resent; the server ends clean.
    tokio::time::sleep(secs(30)).await;
    a.flush().await.unwrap();
    let after = a.get_bytes("k").await.unwrap().map(|v| v.to_vec());
    a.close().await.unwrap();
    let a = open_on(&dir, &server).await;
    let reopened = a.get_bytes("k").await.unwrap().map(|v| v.to_vec());
    let s = a.stats();
    a.close().await.unwrap();
    assert_eq!(
        (
            during.as_deref().map(String::from_utf8_lossy),
            after.as_deref().map(String::from_utf8_lossy),
            reopened.as_deref().map(String::from_utf8_lossy)
        ),
        (None, None, None),
        "the removed value was served ({} shared hits after reopen)",
        s.shared_hits
    );
    assert_eq!(server.raw(&entry_key(b"k")), None);
}

/// A reads a corrupt value of `k` (a round trip of 100 ms); meanwhile B stores a valid answer
/// for `k`, which lands on the server before A's clean-up `DEL`. That `DEL` is unconditional,
/// so it deletes B's valid answer: a hostile value is deleted, but so is the good one that
/// replaced it (a lost shared write: misses, never a wrong answer).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn deleting_a_corrupt_value_spares_a_valid_one_written_meanwhile() {
    let server = MemoryShared::new();
    let (a, b) = (replica(&server).await, replica(&server).await);
    server.plant(&entry_key(b"k"), b"garbage, not an entry", None);
    server.latency(Duration::from_millis(100));
    let read = async { a.get_bytes("k").await.unwrap() };
    let write = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.set_bytes("k", b"valid answer").await.unwrap();
        b.flush().await.unwrap();
    };
    let (got, ()) = tokio::join!(read, write);
    assert_eq!(got, None);
    // Let A's clean-up DEL run.
    tokio::time::sleep(secs(1)).await;
    server.latency(Duration::ZERO);
    let s = a.stats();
    assert_eq!((s.shared_corrupted, b.stats().shared_writes_ok), (1, 1));
    let c = replica(&server).await;
    assert_eq!(
        c.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"valid answer"[..]),
        "B's valid answer was deleted by A's clean-up of the corrupt one"
    );
}
