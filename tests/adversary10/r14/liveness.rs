//! The cell's wait (`OnceLock::get_or_init`) joins the disk writer and the shared drain:
//! a hung disk must not stall the shared tier, on a multi-thread runtime, a current-thread
//! one, or inside a `LocalSet`, for a `set` and for a lease leader.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{wait_until, Fault, FsOp, MemoryShared, Rule, TestDir};
use answercache::Source;

use super::*;
use crate::r12::leader::loader;

/// A replica whose disk hangs every file write (`FaultFs`, `Fault::Hang` on `write_new`):
/// a `set` (write-behind: returns at once) and a lease leader's answer reach the server
/// within 10 s (real time), whole; the leader returns within 10 s.
async fn hung_disk_does_not_stall_the_shared_tier() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let a = open_on(&dir, &server, |c| c, |b| b.shared_single_flight(true)).await;
    dir.fs()
        .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
    let big = b"a compressible answer, large enough for the blocking pool. ".repeat(2000);
    a.set_bytes("set", &big[..]).await.unwrap();
    a.set_bytes("small", &b"short"[..]).await.unwrap();
    let shared = wait_until(Duration::from_secs(10), || {
        server.raw(&entry_key(b"set")).is_some() && server.raw(&entry_key(b"small")).is_some()
    })
    .await;
    assert!(shared, "the set values reached the server");
    let calls = Arc::new(AtomicU32::new(0));
    let led = tokio::time::timeout(
        Duration::from_secs(10),
        a.get_or_insert_bytes(
            "led",
            &Controls::new(),
            loader(&calls, &big, Duration::ZERO),
        ),
    )
    .await
    .expect("the leader returned")
    .unwrap();
    assert_eq!(led.source, Source::Loaded);
    for key in ["set", "led"] {
        assert_eq!(
            held(&server, key.as_bytes()),
            Some(String::from_utf8(big.clone()).unwrap()),
            "{key}"
        );
    }
    assert_eq!(held(&server, b"small"), Some("short".to_owned()));
    assert_eq!(shared_writes(&a).1, 0);
    dir.fs().clear_rules();
    let _ = a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_disk_does_not_stall_the_shared_tier_multi_thread() {
    hung_disk_does_not_stall_the_shared_tier().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_hung_disk_does_not_stall_the_shared_tier_current_thread() {
    hung_disk_does_not_stall_the_shared_tier().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_hung_disk_does_not_stall_the_shared_tier_in_a_local_set() {
    tokio::task::LocalSet::new()
        .run_until(hung_disk_does_not_stall_the_shared_tier())
        .await;
}
