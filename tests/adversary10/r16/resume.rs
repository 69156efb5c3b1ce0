//! The G1 fix (`Tiers::reads_shared`: nothing read from the shared tier while the fence on
//! disk is unknown): does a replica whose disk failed from the open read the shared tier
//! again once the disk heals, and is a `remove` made while the fence is unknown kept across
//! a restart?

use std::time::Duration;

use answercache::testing::{Fault, MemoryShared, Rule, TestDir};
use answercache::Source;

use super::*;

/// Guard: every disk call fails from the open (the fence never read): an answer another
/// replica sets is not served; the disk heals; after the recovery interval the replica reads
/// the shared tier again and is served it (`Shared`, one hit), and still never run 1's
/// cleared answer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shared_reads_resume_once_a_disk_failing_from_the_open_heals() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    dir.clock().advance(Duration::from_millis(10));
    dir.fs().add_rule(Rule::new(Fault::Errno(5)));
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    // Another replica on its own directory, its clock with this one's.
    let other = TestDir::new().fault_fs().manual_clock(RUN1_MS + 15);
    let b = open_manual(&other, &server, |c| c, |b| b).await;
    b.set_bytes("k2", b"set elsewhere").await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(created_on_server(&server, b"k2"), Some(RUN1_MS + 15));
    assert_eq!(read_src(&a, "k2").await, None);
    assert_eq!((a.stats().shared_hits, a.stats().shared_misses), (0, 0));
    dir.fs().clear_rules();
    run_for(400).await;
    assert_eq!(read_src(&a, "k").await, None);
    assert_eq!(
        read_src(&a, "k2").await,
        Some(("set elsewhere".to_owned(), Source::Shared))
    );
    assert_eq!((a.stats().shared_hits, a.stats().shared_misses), (1, 1));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Guard: run 1 stores `x` (disk and server). Run 2, the fence unreadable, removes it
/// (`Ok`), `close` `Ok`. Run 3 on a healthy disk and a fresh replica: `x` is served by
/// neither (the removal reached the disk and the server).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_remove_while_the_fence_is_unknown_is_kept_across_a_restart() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.set_bytes("x", b"old").await.unwrap();
    a.close().await.unwrap();
    assert_eq!(on_disk(&dir, b"x"), Some(("old".to_owned(), RUN1_MS)));
    dir.clock().advance(Duration::from_millis(10));
    fence_unreadable(&dir, None);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    a.remove("x").await.unwrap();
    assert_eq!(read(&a, "x").await, None);
    let closed = a.close().await;
    dir.fs().clear_rules();
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    let c = crate::mem::replica(&server).await;
    assert_eq!(
        (
            closed.is_ok(),
            on_disk(&dir, b"x"),
            read(&b, "x").await,
            read(&c, "x").await
        ),
        (true, None, None, None)
    );
    b.close().await.unwrap();
}
