//! A lease leader's inline write now shares its local store's metadata and cell: the server
//! and the leader's disk must hold the same entry, and a `clear` after the local store must
//! hide the shared copy from this replica.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{Fault, FsOp, MemoryShared, Rule, SharedFault, SharedOpKind, TestDir};
use answercache::{Source, WritePolicy};

use super::*;
use crate::r12::leader::{loader, until_writes};

async fn leader_on(dir: &TestDir, server: &MemoryShared) -> answercache::TieredCache {
    open_on(dir, server, |c| c, |b| b.shared_single_flight(true)).await
}

/// The leader's answer is one entry: the same creation time and expiry on the server and on
/// its disk. A compressed answer (over 4 KiB) is the same file, compressed once; a small one
/// is stored uncompressed on the disk (its file fits one allocation unit) and compressed for
/// the server (`warm::encoded`).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_leaders_answer_is_the_same_file_on_the_server_and_on_its_disk() {
    for (key, answer) in [
        ("small", b"a short answer".to_vec()),
        ("large", b"a long, compressible answer. ".repeat(3000)),
    ] {
        let server = MemoryShared::new();
        let dir = TestDir::new();
        let a = leader_on(&dir, &server).await;
        let calls = Arc::new(AtomicU32::new(0));
        let got = a
            .get_or_insert_bytes(
                key,
                &Controls::new(),
                loader(&calls, &answer, Duration::ZERO),
            )
            .await
            .unwrap();
        assert_eq!((&got.value[..], got.source), (&answer[..], Source::Loaded));
        a.flush().await.unwrap();
        let on_server = server.raw(&entry_key(key.as_bytes())).unwrap();
        let on_disk = disk_file(&dir, key.as_bytes()).unwrap();
        if answer.len() > 4096 {
            assert_eq!(on_disk, on_server, "{key}");
        } else {
            // Header bytes 16..32: created and expires; 40..48: the value's length.
            assert_eq!(
                (&on_disk[16..32], &on_disk[40..48]),
                (&on_server[16..32], &on_server[40..48]),
                "{key}"
            );
            // Stored on disk (larger than the value), compressed on the server.
            let stored = on_disk.len() - 88 - key.len();
            let compressed = on_server.len() - 88 - key.len();
            assert_eq!(stored, answer.len() + 23, "{key}: a stored gzip member");
            assert_ne!(compressed, stored, "{key}: compressed for the server");
        }
        assert_eq!(shared_writes(&a), (1, 0, 0), "{key}");
        assert_eq!(a.stats().writes_ok, 1, "{key}");
        a.close().await.unwrap();
    }
}

/// A `clear` made while the leader, its answer stored here, waits for a sent `DEL` of the
/// key: the inline write then carries the local store's creation time (before the clear),
/// so this replica does not serve the answer from the server after its `clear`; the server
/// holds it (`clear` stays local) and another replica is served it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clear_during_the_leaders_inline_write_hides_its_shared_copy_here() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = leader_on(&dir, &server).await;
    a.set_bytes("k", b"v1").await.unwrap();
    a.flush().await.unwrap();
    let writes = server.calls(SharedOpKind::Write);
    server.fail(Some(SharedOpKind::Write), SharedFault::Hang, Some(1));
    assert!(a.remove("k").await.unwrap());
    until_writes(&server, writes + 1).await;
    let calls = Arc::new(AtomicU32::new(0));
    let controls = Controls::new();
    let lead = a.get_or_insert_bytes("k", &controls, loader(&calls, b"v2", Duration::ZERO));
    let clear = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.clear().await
    };
    let (led, cleared) = tokio::join!(lead, clear);
    let led = led.unwrap();
    cleared.unwrap();
    assert_eq!((&led.value[..], led.source), (&b"v2"[..], Source::Loaded));
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.flush().await.unwrap();
    assert_eq!(held(&server, b"k"), Some("v2".to_owned()));
    assert_eq!(read(&a, "k").await, None);
    assert_eq!(on_disk(&dir, b"k"), None);
    a.close().await.unwrap();
    // Reopened on its directory: still hidden (the fence).
    let a = leader_on(&dir, &server).await;
    assert_eq!(read(&a, "k").await, None);
    a.close().await.unwrap();
    assert_eq!(fresh_read(&server, "k").await, Some("v2".to_owned()));
}

/// A leader whose local disk write fails (write-through: `NotPersisted`, the answer held in
/// memory): its inline write still shares the answer, whole, counted once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_leader_whose_disk_write_fails_shares_a_whole_answer() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let a = open_on(
        &dir,
        &server,
        |c| c,
        |b| {
            b.shared_single_flight(true)
                .write_policy(WritePolicy::WriteThrough)
        },
    )
    .await;
    dir.fs()
        .add_rule(Rule::new(Fault::Errno(5)).ops(&[FsOp::WriteNew]));
    let answer = b"an answer the disk refused. ".repeat(500);
    let calls = Arc::new(AtomicU32::new(0));
    let got = a
        .get_or_insert_bytes(
            "k",
            &Controls::new(),
            loader(&calls, &answer, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!((&got.value[..], got.source), (&answer[..], Source::Loaded));
    assert_eq!(
        server
            .raw(&entry_key(b"k"))
            .map(
                |r| answercache::warm::format::decode(&r, b"k", &Default::default())
                    .unwrap()
                    .value
            ),
        Some(answer.clone())
    );
    assert_eq!(shared_writes(&a), (1, 0, 0));
    assert_eq!(
        read(&a, "k").await,
        Some(String::from_utf8(answer.clone()).unwrap())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    dir.fs().clear_rules();
    let _ = a.close().await;
    assert_eq!(
        fresh_read(&server, "k").await,
        Some(String::from_utf8(answer).unwrap())
    );
}
