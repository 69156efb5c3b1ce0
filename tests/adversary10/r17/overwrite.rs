//! Two cache instances on one directory ("Across processes (or cache instances) sharing a
//! directory ... a `clear` is ordered by creation time on each writer's clock"), one clock,
//! no step back. Instance B holds a fence *pending* in memory (it read the fence as damaged:
//! "entries made before now are misses", or its own `clear` could not write the fence), and
//! writes it when it next persists (a health check, `flush`, `close`) without reading the
//! fence on disk again: over a *later* fence that instance A's `clear` wrote, and returned
//! `Ok` for. The fence on disk moves back; every process that opens the directory later
//! serves what A's `clear` removed.

use answercache::testing::{Fault, FsOp, MemoryShared, Rule, TestDir};
use answercache::{Error, Source};

use super::*;
use crate::mem::*;

/// I1 (shared): B opens while three reads of the (intact) fence return a flipped bit; A sets
/// `j`, `clear`s (`Ok`) and closes; B closes. A process opening later must not serve `j`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fence_read_as_damaged_by_another_instance_never_undoes_a_clear() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    tick(&dir, 10);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    fence_read_flips_a_bit(&dir, 3);
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(dir.fs().faults_injected(), 3);
    tick(&dir, 10);
    a.set_bytes("j", b"set before A's clear").await.unwrap();
    a.flush().await.unwrap();
    let j_created = created_on_server(&server, b"j");
    tick(&dir, 10);
    a.clear().await.unwrap();
    let fence_a = fence_on_disk(&dir);
    assert_eq!(read(&a, "j").await, None);
    a.close().await.unwrap();
    tick(&dir, 10);
    let b_closed = b.close().await;
    let fence_after_b = fence_on_disk(&dir);
    let c = open_manual(&dir, &server, |c| c, |b| b).await;
    let served = read_src(&c, "j").await;
    c.close().await.unwrap();
    assert_eq!(
        (j_created, fence_a, b_closed.is_ok()),
        (Some(RUN1_MS + 25), Some(RUN1_MS + 36), true)
    );
    // Observed: (Some(1000015), Some(("set before A's clear", Shared))).
    // J1's fix (tests/adversary10/r18): B finds A's fence, at or above its own pending one,
    // and writes one more (A may have dated entries at its fence before B's clear).
    assert_eq!((fence_after_b, served), (Some(RUN1_MS + 37), None));
}

/// I1 (disk only, the fence damaged on disk, no step back): both instances open on a fence
/// with a flipped bit on disk; A's `clear` (`Ok`) writes a valid fence but cannot delete
/// `j`'s file ("recorded by the fence: the files left are never served"); B closes. The
/// server forgets `j`. A process opening later must not serve `j`'s file.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fence_damaged_on_disk_never_undoes_a_later_clear_of_another_instance() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    damage_fence_on_disk(&dir, &flipped_fence(RUN1_MS + 6));
    tick(&dir, 10);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    tick(&dir, 10);
    a.set_bytes("j", b"set before A's clear").await.unwrap();
    a.flush().await.unwrap();
    tick(&dir, 10);
    no_removals(&dir);
    a.clear().await.unwrap();
    dir.fs().clear_rules();
    let fence_a = fence_on_disk(&dir);
    let file = super::super::r14::on_disk(&dir, b"j");
    assert_eq!(read(&a, "j").await, None);
    a.close().await.unwrap();
    server.delete(&entry_key(b"j"));
    tick(&dir, 10);
    let b_closed = b.close().await;
    let fence_after_b = fence_on_disk(&dir);
    let c = open_manual(&dir, &server, |c| c, |b| b).await;
    let served = read_src(&c, "j").await;
    c.close().await.unwrap();
    assert_eq!(
        (fence_a, file, b_closed.is_ok()),
        (
            Some(RUN1_MS + 36),
            Some(("set before A's clear".to_owned(), RUN1_MS + 25)),
            true
        )
    );
    // Observed: (Some(1000015), Some(("set before A's clear", Warm))).
    // J1's fix (tests/adversary10/r18): B finds A's fence, at or above its own pending one,
    // and writes one more (A may have dated entries at its fence before B's clear).
    assert_eq!((fence_after_b, served), (Some(RUN1_MS + 37), None));
}

/// I1 (no damage at all): B's `clear` cannot write the fence (one EIO on the rename:
/// `NotPersisted`, "flush reports it until it is on disk"); A sets `j` and `clear`s (`Ok`);
/// B's `close` retries its fence and writes it over A's.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_retried_clear_of_another_instance_never_undoes_a_later_clear() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    tick(&dir, 10);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::Rename])
            .path_contains("/fence")
            .times(1),
    );
    let b_cleared = b.clear().await;
    tick(&dir, 10);
    a.set_bytes("j", b"set after B's clear, before A's")
        .await
        .unwrap();
    a.flush().await.unwrap();
    tick(&dir, 10);
    a.clear().await.unwrap();
    let fence_a = fence_on_disk(&dir);
    a.close().await.unwrap();
    tick(&dir, 10);
    let b_closed = b.close().await;
    let fence_after_b = fence_on_disk(&dir);
    let c = open_manual(&dir, &server, |c| c, |b| b).await;
    let served = read_src(&c, "j").await;
    c.close().await.unwrap();
    assert!(
        matches!(b_cleared, Err(Error::NotPersisted { failed: 1, .. })),
        "{b_cleared:?}"
    );
    assert_eq!((fence_a, b_closed.is_ok()), (Some(RUN1_MS + 36), true));
    // Observed: (Some(1000016), Some(("set after B's clear, before A's", Shared))).
    // J1's fix (tests/adversary10/r18): B finds A's fence, at or above its own pending one,
    // and writes one more (A may have dated entries at its fence before B's clear).
    assert_eq!((fence_after_b, served), (Some(RUN1_MS + 37), None));
}

/// Guard: two instances, no fault, B never clears: B's `close` writes no fence (none is
/// pending), A's `clear` stays on disk, and a later process serves nothing it removed, but
/// serves what B set after it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_instance_with_no_pending_fence_leaves_anothers_clear_alone() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    tick(&dir, 10);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    tick(&dir, 10);
    a.set_bytes("j", b"set before A's clear").await.unwrap();
    a.flush().await.unwrap();
    tick(&dir, 10);
    a.clear().await.unwrap();
    a.close().await.unwrap();
    tick(&dir, 10);
    b.set_bytes("m", b"set by B after A's clear").await.unwrap();
    b.close().await.unwrap();
    let c = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 36));
    assert_eq!(read_src(&c, "j").await, None);
    assert_eq!(
        read_src(&c, "m").await,
        Some(("set by B after A's clear".to_owned(), Source::Warm))
    );
    c.close().await.unwrap();
}

/// Guard: A's `clear` lands while B's open is re-reading a fence that read as damaged once
/// (real time: the re-read is delayed 1 s): B's re-read finds A's new fence, B serves nothing
/// A's `clear` removed, writes no fence at `close`, and a later process reads A's fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_landing_during_anothers_reread_is_the_fence_it_reads() {
    use std::time::Duration;
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    tick(&dir, 10);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.set_bytes("j", b"set before A's clear").await.unwrap();
    a.flush().await.unwrap();
    tick(&dir, 10);
    let faults_before = dir.fs().faults_injected();
    // Rules fire in the order added: the delay skips the first read (flipped by the second
    // rule) and slows the re-read.
    dir.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_secs(1)))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence")
            .skip(1)
            .times(1),
    );
    fence_read_flips_a_bit(&dir, 1);
    let opening = {
        let (dir_builder, config) = (dir.builder(), server.config().prefix(PREFIX));
        tokio::spawn(async move { dir_builder.shared(config).build().await.unwrap() })
    };
    while dir.fs().faults_injected() - faults_before < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    a.clear().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 26));
    let b = opening.await.unwrap();
    let served = read_src(&b, "j").await;
    a.close().await.unwrap();
    tick(&dir, 10);
    b.close().await.unwrap();
    assert_eq!((served, fence_on_disk(&dir)), (None, Some(RUN1_MS + 26)));
    let c = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(read_src(&c, "j").await, None);
    c.close().await.unwrap();
}
