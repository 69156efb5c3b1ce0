//! `persist_fence` takes `Ok(on_disk)` ("the fence on disk was already at least this one:
//! it covers this one") as this clear being on disk. It does not cover it: another
//! instance's entries are dated up to *its* fence (an entry set after a clear "gets a
//! `created_ms` no earlier than the fence, even within the same millisecond"), and a fence
//! only clears entries created *before* it. One clock, no step back, no fault.

use answercache::testing::{MemoryShared, TestDir};
use answercache::Source;

use super::*;
use crate::r16::no_removals;

/// J1 (disk only): at one millisecond T, B `clear`s (fence T+1 on disk), then sets `x` (dated
/// T+1, on disk, `flush` `Ok`). Then A, open on the same directory, `clear`s: its fence is
/// T+1 too; `write_fence` finds T+1 on disk (>=) and returns `Ok` without writing. A's
/// deletions fail (EIO under `v2/`: "even if some entry files could not be deleted", the
/// fence must hold). Every call returned before the next began: `x` was set before A's
/// clear, which returned `Ok`. Neither A nor a process opening later may serve `x`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_equal_fence_on_disk_does_not_cover_an_entry_set_before_the_clear() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    let b = open_disk(&dir, |b| b).await;
    b.clear().await.unwrap();
    b.set_bytes("x", b"set by B before A's clear")
        .await
        .unwrap();
    b.flush().await.unwrap();
    let x_file = on_disk(&dir, b"x");
    no_removals(&dir);
    let cleared = a.clear().await;
    dir.fs().clear_rules();
    let fence = fence_on_disk(&dir);
    let served_by_a = read_src(&a, "x").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    let c = open_disk(&dir, |b| b).await;
    let served_later = read_src(&c, "x").await;
    c.close().await.unwrap();
    assert_eq!(
        (x_file, cleared.is_ok(), fence),
        (
            Some(("set by B before A's clear".to_owned(), RUN1_MS + 1)),
            true,
            // RUN1_MS + 1 before the fix (B's fence, left as it was): A writes one more.
            Some(RUN1_MS + 2)
        )
    );
    // Observed: (Some(("set by B before A's clear", Warm)), Some((.., Warm))).
    assert_eq!((served_by_a, served_later), (None, None));
}

/// J1 (shared tier): the same with both instances replicas on one server: the later process
/// serves `x` from the server (or the disk).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_equal_fence_on_disk_does_not_cover_a_shared_entry_set_before_the_clear() {
    let server = MemoryShared::new();
    let dir = TestDir::new().manual_clock(RUN1_MS);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    // Two clears of B in the millisecond: B's fence (and its creation times) are 2 ms ahead.
    b.clear().await.unwrap();
    b.clear().await.unwrap();
    b.set_bytes("x", b"set by B before A's clear")
        .await
        .unwrap();
    b.flush().await.unwrap();
    let cleared = a.clear().await;
    let fence = fence_on_disk(&dir);
    let served_by_a = read(&a, "x").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    let c = open_manual(&dir, &server, |c| c, |b| b).await;
    let served_later = read_src(&c, "x").await.map(|(_, s)| s);
    c.close().await.unwrap();
    // RUN1_MS + 2 before the fix (B's fence, left as it was): A writes one more.
    assert_eq!((cleared.is_ok(), fence), (true, Some(RUN1_MS + 3)));
    // Observed: (Some("set by B before A's clear"), Some(Shared)) or Warm.
    assert_eq!(
        (served_by_a, served_later),
        (None, None::<Source>),
        "x was set before A's Ok'd clear"
    );
}

/// Guard: the same with A's clock one millisecond on (A's fence T+2 > the T+1 on disk): A
/// writes its fence, and `x` (dated T+1) is cleared for A and for a later process.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_larger_fence_covers_the_other_instances_entry() {
    let dir = TestDir::new().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    let b = open_disk(&dir, |b| b).await;
    b.clear().await.unwrap();
    b.set_bytes("x", b"set by B before A's clear")
        .await
        .unwrap();
    b.flush().await.unwrap();
    tick(&dir, 1);
    a.clear().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 2));
    assert_eq!(read_src(&a, "x").await, None);
    a.close().await.unwrap();
    b.close().await.unwrap();
    let c = open_disk(&dir, |b| b).await;
    assert_eq!(read_src(&c, "x").await, None);
    c.close().await.unwrap();
}

/// Guard: a fence on disk larger than A's (another instance's later clear) is kept: A's
/// `clear` is `Ok` and the fence stays the larger one; an entry A set before its clear is
/// cleared for a later process.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_larger_fence_on_disk_is_never_lowered() {
    let dir = TestDir::new().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    a.set_bytes("y", b"set by A").await.unwrap();
    a.flush().await.unwrap();
    let b = open_disk(&dir, |b| b).await;
    for _ in 0..5 {
        b.clear().await.unwrap();
    }
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 5));
    a.clear().await.unwrap();
    // J1's fix: A's fence (RUN1_MS + 1) is below B's, which A did not write: one more.
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 6));
    a.close().await.unwrap();
    b.close().await.unwrap();
    let c = open_disk(&dir, |b| b).await;
    assert_eq!(read_src(&c, "y").await, None);
    c.close().await.unwrap();
}
