//! A local `clear` against the shared tier across a restart: the fence on disk is what hides
//! the shared copies of cleared answers from this replica (`Freshness::is_stale`). While the
//! fence cannot be read (a disk fault at open), nothing hides them.

use std::time::Duration;

use answercache::testing::{Fault, FsOp, MemoryShared, Rule, TestDir};
use answercache::Source;

use super::*;

/// A replica on `dir` sets `k`, shares it, clears (its fence on disk), and closes `Ok`.
/// Returns the fence's time (the clear's) as the creation-time floor to compare with.
async fn set_share_clear_close(dir: &TestDir, server: &MemoryShared) -> u64 {
    let a = open_plain(dir, server).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(held(server, b"k"), Some("before the clear".to_owned()));
    let (_, created) = on_disk(dir, b"k").unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.clear().await.unwrap();
    let fence = now_ms() + 1;
    assert!(created < fence);
    assert_eq!(read(&a, "k").await, None);
    assert_eq!(on_disk(dir, b"k"), None);
    a.close().await.unwrap();
    fence
}

/// The fence file only: every read of it fails with EIO.
fn fence_unreadable(dir: &TestDir) {
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence"),
    );
}

/// Guard: reopened on a healthy disk, the fence hides the shared copy of the cleared answer
/// (a shared miss, not a hit), as README promises for a `close` that returned `Ok`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cleared_answer_stays_hidden_after_a_restart() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    set_share_clear_close(&dir, &server).await;
    let a = open_plain(&dir, &server).await;
    assert_eq!(read(&a, "k").await, None);
    let s = a.stats();
    assert_eq!((s.shared_hits, s.shared_misses), (0, 1));
    // The server still holds it: `clear` stays local.
    assert_eq!(held(&server, b"k"), Some("before the clear".to_owned()));
    a.close().await.unwrap();
}

/// E1: reopened while the fence file cannot be read (EIO on that one file), the replica
/// serves the answer its own `clear` removed, from the shared tier. README: "After a `close`
/// that returned `Ok`, a reopened cache never serves ... a cleared key"; "a local `remove`,
/// `clear` or newer `set` is never overridden by an older shared copy".
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cleared_answer_is_not_served_while_the_fence_is_unreadable() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    set_share_clear_close(&dir, &server).await;
    fence_unreadable(&dir);
    let a = open_plain(&dir, &server).await;
    let got = a.get_bytes("k").await.unwrap();
    // Observed: Some("before the clear"), a shared hit.
    assert_eq!(text(got), None);
    assert_eq!(a.stats().shared_hits, 0);
}

/// E2: the cleared answer served in E1 is promoted dirty into the hot tier; once the disk is
/// healthy, write-back writes it to the disk with a creation time after the fence (a fresh
/// one, `Freshness::created_now`; the writer would raise an older one to the fence,
/// `write_floor`). From then on it is served from the local disk after every restart,
/// whatever the server holds: the `clear` is undone for good on this replica.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cleared_answer_never_reaches_the_disk_again() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let fence = set_share_clear_close(&dir, &server).await;
    fence_unreadable(&dir);
    let a = open_plain(&dir, &server).await;
    let served = a.get_bytes("k").await.unwrap();
    // The disk heals; the replica's queued and dirty writes go out; it closes.
    dir.fs().clear_rules();
    let flushed = a.flush().await;
    let closed = a.close().await;
    let file = on_disk(&dir, b"k");
    // The server forgets the answer (its TTL, an eviction): only the disk can bring it back.
    server.delete(&entry_key(b"k"));
    let b = open_plain(&dir, &server).await;
    let got = read_src(&b, "k").await;
    b.close().await.unwrap();
    // E1 fixed: not served, so not promoted either.
    assert_eq!(text(served), None, "E1");
    assert_eq!((flushed.is_ok(), closed.is_ok()), (true, true));
    // Observed before the fix: (Some(("before the clear", true)), Some(("before the clear",
    // Warm))): the file held the cleared answer dated after the fence, and the restarted
    // replica served it from its disk.
    assert_eq!(
        (file.map(|(v, created)| (v, created >= fence)), got),
        (None, None::<(String, Source)>)
    );
}

/// The writer's creation-time floor (`Freshness::write_floor`) with a cell the drain filled
/// first: the clock stepped back behind a `clear` made before a restart, the fence
/// unreadable at open (once), a `set` made then is created behind the fence. The drain
/// encodes it first (the writer's fence read is slow) for that time; the writer raises the
/// time to the fence and must encode its own file, not reuse the drain's (which the fence
/// would make a miss after a restart). Guard: served from the disk after a restart, and the
/// disk's file is dated at the fence while the server's keeps the `set`'s time.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_set_raised_to_the_fence_is_not_written_with_the_drains_file() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(1_000_000);
    let open = || async {
        let cache = dir
            .builder()
            .shared(server.config().prefix(PREFIX))
            .build()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            cache.shared_state(),
            Some(answercache::BreakerState::Closed)
        );
        cache
    };
    let a = open().await;
    a.clear().await.unwrap();
    a.close().await.unwrap();
    let fence = 1_000_001;
    // An NTP step back of 100 s.
    dir.clock().set(900_000);
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence")
            .times(1),
    );
    dir.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(300)))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence"),
    );
    let a = open().await;
    a.set_bytes("k", b"set behind the fence").await.unwrap();
    let shared = answercache::testing::wait_until(Duration::from_secs(10), || {
        server.raw(&entry_key(b"k")).is_some()
    })
    .await;
    assert!(shared);
    a.flush().await.unwrap();
    a.close().await.unwrap();
    let on_server = answercache::warm::format::decode(
        &server.raw(&entry_key(b"k")).unwrap(),
        b"k",
        &Default::default(),
    )
    .unwrap()
    .meta
    .created_ms;
    assert_eq!(
        (on_disk(&dir, b"k"), on_server),
        (Some(("set behind the fence".to_owned(), fence)), 900_000)
    );
    dir.fs().clear_rules();
    server.delete(&entry_key(b"k"));
    let b = open().await;
    assert_eq!(
        read_src(&b, "k").await,
        Some(("set behind the fence".to_owned(), Source::Warm))
    );
    b.close().await.unwrap();
}
