//! A fence damaged on disk (bit rot: right length and magic, checksum off) is "not written
//! over blindly": `write_fence` takes it as absent and writes this instance's `ms`. Another
//! instance's clears ran its fence (and the creation times of its entries set after them)
//! ahead of the clock; the damage loses that, and the fence this `clear` writes is below
//! those entries' dates. One clock, no step back.

use answercache::testing::TestDir;

use super::*;

/// K2: at T, B `clear`s 3 times (fence T+3, its creation times T+3) and sets `x` (dated T+3,
/// `flush` `Ok`). The fence file is damaged (one bit of its time flipped). A, open on the
/// directory since before, `clear`s (`Ok`; its deletions fail: EIO under `v2/`). A writes
/// its own T+1 over the damaged T+3, and `x` (set before A's clear) is served by A and by a
/// later process. Expected: `None` for both (A's clear returned `Ok`; "even if some entry
/// files could not be deleted" the fence holds).
#[tokio::test(flavor = "current_thread", start_paused = true)]
#[ignore = "FINDING K2 (documented limit: several clears in one ms): a clear over a damaged fence writes its own (lower) fence; another instance's entry dated ahead of the clock, set before the clear, is served"]
async fn a_clear_over_a_damaged_fence_leaves_a_clock_ahead_entry_served() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    let b = open_disk(&dir, |b| b).await;
    for _ in 0..3 {
        b.clear().await.unwrap();
    }
    b.set_bytes("x", b"set by B before A's clear")
        .await
        .unwrap();
    b.flush().await.unwrap();
    assert_eq!(
        on_disk(&dir, b"x"),
        Some(("set by B before A's clear".to_owned(), RUN1_MS + 3))
    );
    damage_fence_on_disk(&dir, &flipped_fence(RUN1_MS + 3));
    no_removals(&dir);
    let cleared = a.clear().await;
    dir.fs().clear_rules();
    let fence = fence_on_disk(&dir);
    let served_by_a = read(&a, "x").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    let c = open_disk(&dir, |b| b).await;
    let served_later = read(&c, "x").await;
    c.close().await.unwrap();
    assert!(cleared.is_ok(), "{cleared:?}");
    // Observed: both Some("set by B before A's clear"); the fence went from (damaged) T+3
    // to A's T+1.
    assert_eq!(
        (served_by_a, served_later),
        (None, None),
        "x was set before A's Ok'd clear (fence now {fence:?})"
    );
}

/// Guard: the same damage with B's entry dated at the clock (one clear of B, then the clock
/// moves 1 ms): A's clear (fence T+2 over the damaged one) covers `x` (dated T+1) for A and a
/// later process, and A's entry set after its clear (same millisecond) is served by both.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clear_over_a_damaged_fence_covers_entries_dated_at_the_clock() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    let b = open_disk(&dir, |b| b).await;
    b.clear().await.unwrap();
    b.set_bytes("x", b"set by B before A's clear")
        .await
        .unwrap();
    b.flush().await.unwrap();
    damage_fence_on_disk(&dir, &flipped_fence(RUN1_MS + 1));
    tick(&dir, 1);
    no_removals(&dir);
    a.clear().await.unwrap();
    dir.fs().clear_rules();
    a.set_bytes("y", b"set by A after its clear").await.unwrap();
    a.flush().await.unwrap();
    let fence = fence_on_disk(&dir);
    let by_a = (read(&a, "x").await, read(&a, "y").await);
    a.close().await.unwrap();
    b.close().await.unwrap();
    let c = open_disk(&dir, |b| b).await;
    let later = (read(&c, "x").await, read(&c, "y").await);
    c.close().await.unwrap();
    let y = Some("set by A after its clear".to_owned());
    assert_eq!(
        (fence, by_a, later),
        (Some(RUN1_MS + 2), (None, y.clone()), (None, y))
    );
}

/// Guard: the fence file deleted by hand between two clears of A (fence_written T+1 in A):
/// A's second clear (fence T+2) writes it again; `x`, set by A between the clears, is a miss
/// for A and a later process; `z`, set after, is served.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fence_deleted_by_hand_is_written_again_by_the_next_clear() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    a.clear().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 1));
    a.set_bytes("x", b"between").await.unwrap();
    a.flush().await.unwrap();
    std::fs::remove_file(answercache::warm::layout::Layout::new(dir.root()).fence_path()).unwrap();
    no_removals(&dir);
    a.clear().await.unwrap();
    dir.fs().clear_rules();
    a.set_bytes("z", b"after").await.unwrap();
    a.flush().await.unwrap();
    let fence = fence_on_disk(&dir);
    let by_a = (read(&a, "x").await, read(&a, "z").await);
    a.close().await.unwrap();
    let c = open_disk(&dir, |b| b).await;
    let later = (read(&c, "x").await, read(&c, "z").await);
    c.close().await.unwrap();
    let z = Some("after".to_owned());
    assert_eq!(
        (fence, by_a, later),
        (Some(RUN1_MS + 2), (None, z.clone()), (None, z))
    );
}

/// K2 with the fence file deleted by hand instead of damaged: A's `clear` writes T+1 where
/// B's T+3 was, and `x` (dated T+3, set before A's clear) is served by A and later.
#[tokio::test(flavor = "current_thread", start_paused = true)]
#[ignore = "FINDING K2 (documented limit: several clears in one ms): (fence deleted by hand) a clear writes its own lower fence; another instance's clock-ahead entry set before it is served"]
async fn a_clear_after_the_fence_was_deleted_leaves_a_clock_ahead_entry_served() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    let b = open_disk(&dir, |b| b).await;
    for _ in 0..3 {
        b.clear().await.unwrap();
    }
    b.set_bytes("x", b"set by B before A's clear")
        .await
        .unwrap();
    b.flush().await.unwrap();
    std::fs::remove_file(answercache::warm::layout::Layout::new(dir.root()).fence_path()).unwrap();
    no_removals(&dir);
    let cleared = a.clear().await;
    dir.fs().clear_rules();
    let fence = fence_on_disk(&dir);
    let served_by_a = read(&a, "x").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    let c = open_disk(&dir, |b| b).await;
    let served_later = read(&c, "x").await;
    c.close().await.unwrap();
    assert!(cleared.is_ok(), "{cleared:?}");
    // Observed: both Some("set by B before A's clear"), fence T+1.
    assert_eq!(
        (served_by_a, served_later),
        (None, None),
        "x was set before A's Ok'd clear (fence now {fence:?})"
    );
}
