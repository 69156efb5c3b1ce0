//! The E1 rule (`Freshness::may_predate_unknown_fence`) compares a shared entry's creation
//! time with the clock *at this open*. The fence it stands in for was written by an earlier
//! run's clock. When the clock stepped back across the restart (an NTP step, a VM restored
//! from a snapshot, a host whose RTC was wrong until NTP synced), entries created before the
//! earlier run's `clear` carry times after this open, and the rule lets them through. The
//! library guards against a clock behind the fence elsewhere (`write_floor`, RELIABILITY.md
//! 19-20); here nothing does. Each test: run 1 at 1 000 000 ms sets `k`, shares it, clears
//! (fence 1 000 006 on disk), closes `Ok`; the clock is set 30 s back before run 2.

use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};
use answercache::Source;

use super::*;

const RUN1_MS: u64 = 1_000_000;
/// The clock after the step back, 30 s behind run 1: within the 60 s a shared entry may be
/// dated ahead of this replica's clock (`MAX_CLOCK_AHEAD_MS`; an entry dated further ahead is
/// a miss anyway).
const RUN2_MS: u64 = 970_000;

/// Run 1: `set k`, shared, `clear` 5 ms later, `close` `Ok`. Returns the fence on disk.
async fn run1(dir: &TestDir, server: &MemoryShared) -> u64 {
    let a = open_manual(dir, server, |c| c, |b| b).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(created_on_server(server, b"k"), Some(RUN1_MS));
    dir.clock().advance(Duration::from_millis(5));
    a.clear().await.unwrap();
    assert_eq!(read(&a, "k").await, None);
    a.close().await.unwrap();
    let fence = fence_on_disk(dir).unwrap();
    assert_eq!(fence, RUN1_MS + 6);
    // The server keeps it: `clear` stays local.
    assert_eq!(
        crate::r11::held(server, b"k"),
        Some("before the clear".to_owned())
    );
    fence
}

/// Guard: the same step back with the fence readable: the fence read at open hides the
/// cleared answer (`is_stale`: 1 000 000 < 1 000 006), a counted shared miss.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_step_back_with_the_fence_readable_hides_the_cleared_answer() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server).await;
    dir.clock().set(RUN2_MS);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(read(&a, "k").await, None);
    assert_eq!((a.stats().shared_hits, a.stats().shared_misses), (0, 1));
    a.close().await.unwrap();
}

/// G1: the fence unreadable at open (EIO on that one file) and the clock 30 s behind run 1:
/// `opened_ms` is 970 000, the cleared entry was created at 1 000 000, so
/// `may_predate_unknown_fence` says "created since the open" and the answer run 1 cleared is
/// served from the shared tier. README: "After a `close` that returned `Ok`, a reopened cache
/// never serves ... a cleared key"; "while a sick disk hides the clear's fence at open, shared
/// entries created before the open are misses".
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cleared_answer_is_not_served_after_a_step_back_while_the_fence_is_unreadable() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server).await;
    dir.clock().set(RUN2_MS);
    fence_unreadable(&dir, None);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let got = read_src(&a, "k").await;
    let hits = a.stats().shared_hits;
    // Observed: (Some(("before the clear", Shared)), 1).
    assert_eq!((got, hits), (None, 0));
}

/// G2: G1's cleared answer, promoted dirty into the hot tier, reaches the disk once the fence
/// is readable, re-dated to the fence (the writer raises `created_ms` to `write_floor`), so
/// it is not stale there: after the server forgets the answer (TTL, eviction) every restart
/// of this replica serves it from its own disk. The `clear` is undone for good.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_cleared_answer_served_after_a_step_back_never_reaches_the_disk() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let fence = run1(&dir, &server).await;
    dir.clock().set(RUN2_MS);
    fence_unreadable(&dir, None);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let _served = read(&a, "k").await;
    // The disk heals; the queued and dirty writes go out; `close` `Ok`.
    dir.fs().clear_rules();
    dir.clock().advance(Duration::from_millis(10));
    let flushed = a.flush().await;
    let closed = a.close().await;
    let file = on_disk(&dir, b"k");
    server.delete(&entry_key(b"k"));
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    let got = read_src(&b, "k").await;
    b.close().await.unwrap();
    assert_eq!((flushed.is_ok(), closed.is_ok()), (true, true));
    // Observed: (Some(("before the clear", 1000006)), Some(("before the clear", Warm))): the
    // file is dated at the fence, not before it.
    assert_eq!(
        (file, got),
        (None, None::<(String, Source)>),
        "fence {fence}"
    );
}

/// G3: a `clear` made while the fence is unknown writes this process's fence over the one on
/// disk without reading it (`Freshness::persist_fence`, then `fence_known`): after the step
/// back that fence (970 001) is *lower* than run 1's (1 000 006). The answer run 1 cleared
/// (created 1 000 000, before run 2's `clear` by any clock) is then served right after run 2's
/// own `clear` ("once `clear` returns `Ok`, no entry set before it is ever served again"), and
/// after every later restart with a healthy disk (the fence read at open is 970 001).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clear_while_the_fence_is_unknown_never_lowers_the_fence() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let fence = run1(&dir, &server).await;
    dir.clock().set(RUN2_MS);
    // One failed read at open (a transient EIO); the disk is healthy afterwards.
    fence_unreadable(&dir, Some(1));
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.clear().await.unwrap();
    let after_own_clear = read(&a, "k").await;
    a.close().await.unwrap();
    let on_disk_now = fence_on_disk(&dir);
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    let after_restart = read_src(&b, "k").await;
    b.close().await.unwrap();
    // Observed: (Some("before the clear"), Some(970001), Some(("before the clear", Warm))):
    // served after its own `clear` (promoted, then written to disk), and from the disk after
    // the restart.
    assert_eq!(
        (after_own_clear, on_disk_now, after_restart),
        (None, Some(fence), None)
    );
}

/// G3 without the shared tier in the way: run 1's `clear` could not delete the entry file
/// (EIO on its removal; "recorded by the fence: the files left are never served"). Run 2's
/// `clear` while the fence is unknown also fails to delete it, and lowers the fence; run 3
/// serves run 1's cleared file from its own disk.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_lowered_fence_does_not_bring_back_a_cleared_file() {
    use answercache::testing::{Fault, FsOp, Rule};
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    server.delete(&entry_key(b"k"));
    dir.clock().advance(Duration::from_millis(5));
    // Entry files cannot be removed (the fence can be written: a rename over it).
    let no_removals = || {
        dir.fs().add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::RemoveFile, FsOp::RemoveDirAll])
                .path_contains("/v2/"),
        )
    };
    no_removals();
    a.clear().await.unwrap();
    a.close().await.unwrap();
    dir.fs().clear_rules();
    assert_eq!(
        on_disk(&dir, b"k"),
        Some(("before the clear".to_owned(), RUN1_MS))
    );
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 6));
    dir.clock().set(RUN2_MS);
    fence_unreadable(&dir, Some(1));
    no_removals();
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.clear().await.unwrap();
    a.close().await.unwrap();
    dir.fs().clear_rules();
    assert_eq!(
        on_disk(&dir, b"k"),
        Some(("before the clear".to_owned(), RUN1_MS))
    );
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    let got = read_src(&b, "k").await;
    b.close().await.unwrap();
    // Observed: Some(("before the clear", Warm)).
    assert_eq!(got, None);
}
