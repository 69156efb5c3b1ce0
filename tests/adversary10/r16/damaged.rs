//! `load_fence`'s "damaged" branch (`InvalidData`: "entries made before now are misses", then
//! the fence is written again) meets a clock stepped back across a restart. The fence file on
//! disk is intact; one read of it returns a flipped bit (`Fault::FlipBit`, once). "Before
//! now" is not "before the fence" when the clock is behind the fence: the earlier run's
//! `clear` is forgotten in this process, and the fence written back is *lower* than the one
//! it replaces, so the `clear` stays undone after every later restart on a healthy disk.

use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};
use answercache::Source;

use super::*;

/// H1 (shared): run 1 clears `k` (fence 1 000 006); the clock is 30 s behind at the restart;
/// the one fence read of the open returns a flipped bit. README: "After a `close` that
/// returned `Ok`, a reopened cache never serves ... a cleared key."
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flipped_fence_read_after_a_step_back_never_serves_the_cleared_answer() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let fence1 = run1(&dir, &server, false).await;
    dir.clock().set(RUN2_MS);
    fence_read_flips_a_bit(&dir, 1);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let served = read_src(&a, "k").await;
    dir.clock().advance(Duration::from_millis(10));
    let closed = a.close().await;
    let fence2 = fence_on_disk(&dir);
    // A healthy disk from here on: every fence read returns the file as it is.
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    let after_restart = read_src(&b, "k").await;
    b.close().await.unwrap();
    // Observed: (Some(("before the clear", Shared)), true, Some(970000),
    // Some(("before the clear", Warm))).
    assert_eq!(
        (
            served,
            closed.is_ok(),
            fence2.map(|f| f >= fence1),
            after_restart
        ),
        (None, true, Some(true), None),
        "fence on disk after run 2: {fence2:?}"
    );
}

/// H1 (disk only, no shared entry): run 1's `clear` could not delete `k`'s file ("recorded by
/// the fence: the files left are never served"); the server forgets `k`; the clock is 30 s
/// behind at the restart and the one fence read of the open returns a flipped bit.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flipped_fence_read_after_a_step_back_never_serves_a_cleared_file() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, true).await;
    server.delete(&entry_key(b"k"));
    dir.clock().set(RUN2_MS);
    fence_read_flips_a_bit(&dir, 1);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let served = read_src(&a, "k").await;
    a.close().await.unwrap();
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    let after_restart = read_src(&b, "k").await;
    b.close().await.unwrap();
    // Observed: (Some(("before the clear", Warm)), Some(("before the clear", Warm))).
    assert_eq!((served, after_restart), (None, None));
}

/// Guard: the same flipped read with a clock that did not step back: the cleared answer is a
/// miss (server and disk file) and a restart on a healthy disk serves nothing cleared. Since
/// H1's fix the fence read as damaged is read again, finds run 1's intact fence and keeps it
/// (before the fix: replaced by "now", run 1's clock + 15 ms).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flipped_fence_read_without_a_step_back_hides_the_cleared_answer() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let fence1 = run1(&dir, &server, true).await;
    dir.clock().advance(Duration::from_millis(10));
    fence_read_flips_a_bit(&dir, 1);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(read_src(&a, "k").await, None);
    a.set_bytes("n", b"set in run 2").await.unwrap();
    dir.clock().advance(Duration::from_millis(1));
    a.close().await.unwrap();
    // Read again, intact: run 1's fence stays.
    assert_eq!(fence_on_disk(&dir), Some(fence1));
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(read_src(&b, "k").await, None);
    assert_eq!(
        read_src(&b, "n").await,
        Some(("set in run 2".to_owned(), Source::Warm))
    );
    b.close().await.unwrap();
}
