//! `write_fence` leaves the fence on disk when it is `>= ms` and `fence_written >= ms`
//! ("this process already wrote a fence at least `ms`: what is there now is at or above it,
//! and covers `ms` as it did"). `fence_written` is a high-water mark of what this process
//! wrote, and a given-up write can land one *above* this instance's in-memory fence (it wrote
//! one more than another writer's fence). Another instance's later clear then writes one more
//! than that and dates its entries at it; this instance's next clear has an `ms` below its
//! own `fence_written`, finds the other's fence "at or above", and returns `Ok` without
//! covering the other's entry set before it. Real time (a hung call); manual clock.

use std::time::Duration;

use answercache::testing::TestDir;
use answercache::{Error, TieredCache};

use super::*;

/// Retries `clear` without moving the clock (each try moves A's fence on by one) until `Ok`,
/// at most 40 tries 100 ms apart.
async fn clear_until_ok_same_ms(cache: &TieredCache) -> (Result<(), Error>, usize) {
    let mut tries = 1;
    let mut cleared = cache.clear().await;
    while cleared.is_err() && tries < 40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tries += 1;
        cleared = cache.clear().await;
    }
    (cleared, tries)
}

/// What the scenario observed: (A's second clear, tries, fence after B's clear, fence after
/// A's second clear, A serves x, a later process serves x).
type Seen = (
    bool,
    usize,
    Option<u64>,
    Option<u64>,
    Option<String>,
    Option<String>,
);

/// One clock at T. B `clear`s 10 times (fence T+10 on disk, B's creation times T+10). A
/// `clear`s: its fence T+1; `write_fence` finds B's T+10 and writes T+11, but the rename
/// hangs; A gives up (`NotPersisted`). The rename is released and lands: `fence_written` =
/// T+11 in A, A's in-memory fence still T+1. B `clear`s (writes T+12: T+11 is not B's) and
/// sets `x` (dated T+12), `flush` `Ok`. Then A `clear`s (deletions fail: EIO under `v2/`).
/// `hang_first`: false runs the control without the hang. `n`: B's clears first (10 above;
/// the fences are T+n, T+n+1, T+n+2).
async fn scenario(hang_first: bool, n: u64) -> Seen {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, quick).await;
    let b = open_disk(&dir, quick).await;
    for _ in 0..n {
        b.clear().await.unwrap();
    }
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + n));
    if hang_first {
        fence_write_hangs(&dir, 1);
        let first = a.clear().await;
        assert!(
            matches!(first, Err(Error::NotPersisted { .. })),
            "{first:?}"
        );
        dir.fs().release_hangs();
        assert_eq!(
            fence_becomes(&dir, RUN1_MS + n + 1).await,
            Some(RUN1_MS + n + 1)
        );
    } else {
        a.clear().await.unwrap();
        assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + n + 1));
    }
    b.clear().await.unwrap();
    let after_b = fence_on_disk(&dir);
    b.set_bytes("x", b"set by B before A's second clear")
        .await
        .unwrap();
    b.flush().await.unwrap();
    assert_eq!(
        on_disk(&dir, b"x"),
        Some((
            "set by B before A's second clear".to_owned(),
            RUN1_MS + n + 2
        ))
    );
    no_removals(&dir);
    let (cleared, tries) = clear_until_ok_same_ms(&a).await;
    let fence = fence_on_disk(&dir);
    dir.fs().clear_rules();
    let served_by_a = read(&a, "x").await;
    let _ = a.close().await;
    let _ = b.close().await;
    let c = open_disk(&dir, quick).await;
    let served_later = read(&c, "x").await;
    c.close().await.unwrap();
    (
        cleared.is_ok(),
        tries,
        after_b,
        fence,
        served_by_a,
        served_later,
    )
}

/// K1: A's second `clear` returns `Ok` with B's fence T+12 left on disk (A's `ms` T+2 is below
/// A's `fence_written` T+11), and `x`, set by B before that clear began, is served by A and
/// by a later process. Expected: A writes T+13 (the fence on disk is not one A wrote), `x`
/// is a miss for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landed_given_up_write_makes_a_later_clear_skip_another_writers_fence() {
    let (ok, _tries, after_b, fence, by_a, later) = scenario(true, 10).await;
    // Observed: fence Some(RUN1_MS + 12) (B's, left as it was), x served by A and later.
    assert_eq!(
        (ok, after_b, fence, by_a, later),
        (true, Some(RUN1_MS + 12), Some(RUN1_MS + 13), None, None),
        "x was set before A's Ok'd clear"
    );
}

/// Guard (K1's control): the same without the hang. A's first clear writes T+11 and raises
/// A's fence to it; A's second clear (fence T+12 in memory) finds B's T+12 and writes T+13.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_hang_the_second_clear_covers_the_other_instances_entry() {
    let (ok, tries, after_b, fence, by_a, later) = scenario(false, 10).await;
    assert_eq!(
        (ok, tries, after_b, fence, by_a, later),
        (true, 1, Some(RUN1_MS + 12), Some(RUN1_MS + 13), None, None)
    );
}

/// K1 with B's one `clear` first (two instances clearing in one millisecond, as in J1): B's
/// fence T+1, A's given-up write T+2, B's clear T+3 and `x` dated T+3; A's second `clear` (its
/// fence T+2, equal to its `fence_written`) returns `Ok` with T+3 left on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clear_of_the_other_instance_is_enough_for_k1() {
    let (ok, tries, after_b, fence, by_a, later) = scenario(true, 1).await;
    // Observed: fence Some(RUN1_MS + 3) (B's), x served by A and later.
    assert_eq!(
        (ok, tries, after_b, fence, by_a, later),
        (true, 1, Some(RUN1_MS + 3), Some(RUN1_MS + 4), None, None),
        "x was set before A's Ok'd clear"
    );
}
