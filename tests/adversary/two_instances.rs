//! Promise 4: a read, an expiry sweep or an eviction removes (or quarantines) only the file it
//! judged, never a newer file written since, by this process or another instance on the same
//! directory. Two instances share one directory here, as two processes of one service would.

use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};

use crate::helpers::*;

fn val(tag: &str, n: usize) -> Vec<u8> {
    let mut v = tag.as_bytes().to_vec();
    let mut r = Rng::new(n as u64 ^ 77);
    while v.len() < n {
        v.push((r.next_u64() & 0xff) as u8);
    }
    v
}

/// Instance A has a small warm budget; instance B writes a newer value of a key A once wrote.
/// A's LRU eviction must not delete B's newer, acknowledged (write-through, fsynced) file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_eviction_in_one_instance_never_deletes_a_newer_file_of_another() {
    let (_dir, root, clock) = scenario();
    // About 1.1 KiB per entry file, 8,320 bytes as the budget counts (a 4 KiB block, its
    // directory entry, its own fan-out directory): the budget holds two.
    let a = builder(&root, &clock)
        .warm_capacity_bytes(20_000)
        .build()
        .await
        .unwrap();
    let b = write_through(builder(&root, &clock)).build().await.unwrap();

    a.set_bytes("k", val("A-old", 1000)).await.unwrap();
    a.flush().await.unwrap();
    clock.advance(Duration::from_millis(5));
    b.set_bytes("k", val("B-new", 1000)).await.unwrap(); // acknowledged durable
    b.flush().await.unwrap();
    // A writes two other keys: its index holds "k" as least recently used.
    for i in 0..3 {
        clock.advance(Duration::from_millis(5));
        a.set_bytes(format!("other{i}"), val("x", 1000))
            .await
            .unwrap();
        a.flush().await.unwrap();
    }
    let on_disk = std::fs::read(entry_path(&root, "k")).ok();
    b.close().await.expect("B's close");
    a.close().await.ok();
    let got = read_after_restart(&root, &clock, b"k").await;
    assert!(
        on_disk.is_some() && got.as_deref() == Some(&val("B-new", 1000)[..]),
        "promise 4 (and 3): A's eviction of its own old entry deleted B's newer, acknowledged \
         file: file present after A's evictions = {}, value after restart = {} (expected B-new)",
        on_disk.is_some(),
        short(&got)
    );
}

/// The startup scan of instance A merges the files it finds and evicts beyond A's budget.
/// Between A's choice of a victim and its unlink, instance B rewrites that key
/// (write-through, acknowledged). A must not delete B's newer file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_eviction_keeps_a_file_another_instance_rewrote_meanwhile() {
    let (_dir, root, clock) = scenario();
    {
        let seed = builder(&root, &clock).build().await.unwrap();
        for i in 0..6 {
            seed.set_bytes(format!("k{i}"), val("seed", 1000))
                .await
                .unwrap();
            clock.advance(Duration::from_millis(1));
        }
        seed.close().await.unwrap();
    }
    let hook = HookFs::new();
    // Whichever key A's scan picks first, stop A just before its unlink.
    let gates: Vec<_> = (0..6)
        .map(|i| hook.arm(Hook::BeforeRemove(entry_path(&root, format!("k{i}")))))
        .collect();
    let a = builder(&root, &clock)
        .fs(hook.clone())
        .warm_capacity_bytes(20_000)
        .build()
        .await
        .unwrap();
    let mut victim = None;
    for _ in 0..400 {
        if let Some(i) = (0..6).find(|i| gates[*i].reached_now()) {
            victim = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Some(v) = victim else {
        panic!("control: A's scan evicted nothing");
    };
    let b = write_through(builder(&root, &clock)).build().await.unwrap();
    // A holds the directory lock exclusively while it judges its victim, so B's rename
    // waits until A is done (it may not be acknowledged earlier).
    let b2 = b.clone();
    let k = format!("k{v}");
    let set = tokio::spawn(async move { b2.set_bytes(k, val("B-new", 1000)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    for g in &gates {
        g.open();
    }
    set.await.unwrap().expect("B's write-through set");
    b.close().await.expect("B's close");
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.close().await.ok();
    let got = read_after_restart(&root, &clock, format!("k{v}").as_bytes()).await;
    assert!(
        got.as_deref() == Some(&val("B-new", 1000)[..]),
        "promise 4: A's scan eviction deleted the file B rewrote (acknowledged) after A \
         chose k{v} as a victim: after restart {}",
        short(&got)
    );
}

/// A read of instance A judges an expired file; before A takes it out of the way, instance B
/// writes a newer value (no TTL), then B removes the key (its unlink finds nothing: A holds
/// the file aside), and A puts the newer file back. The key B removed (acknowledged,
/// write-through, close Ok) must not come back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_judgment_never_resurrects_a_key_another_instance_removed() {
    let (_dir, root, clock) = scenario();
    let hook = HookFs::new();
    let a = builder(&root, &clock)
        .fs(hook.clone())
        .io_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let b = write_through(builder(&root, &clock)).build().await.unwrap();
    let path = entry_path(&root, "k");

    b.set_bytes_with_ttl("k", b"old, expires".to_vec(), Duration::from_secs(1))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));

    let read_gate = hook.arm(Hook::AfterRead(path.clone()));
    let aside_gate = hook.arm(Hook::AfterRenameFrom(path.clone()));
    let a2 = a.clone();
    let reader =
        tokio::spawn(async move { a2.get_bytes("k").await.map(|v| v.map(|v| v.to_vec())) });
    assert!(
        read_gate.reached(Duration::from_secs(10)).await,
        "A's read never came"
    );
    // B: a newer value, in place before A takes "the expired file" aside (A holds no lock
    // while it reads).
    b.set_bytes("k", b"B newer".to_vec()).await.unwrap();
    read_gate.open();
    assert!(
        aside_gate.reached(Duration::from_secs(10)).await,
        "A never took the file aside"
    );
    // B removes the key while A holds the file aside: the directory lock makes B's delete
    // wait until A has put the file back (or deleted it), so it cannot be undone by A.
    let b2 = b.clone();
    let remove = tokio::spawn(async move { b2.remove("k").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    aside_gate.open();
    remove.await.unwrap().expect("B's acknowledged remove");
    let seen = reader.await.unwrap().unwrap();
    assert_eq!(seen, None, "A's read of an expired file");
    b.close().await.expect("B's close");
    a.close().await.ok();
    let got = read_after_restart(&root, &clock, b"k").await;
    assert!(
        got.is_none(),
        "promise 1/4: a key removed by B (acknowledged, close Ok) came back after a restart \
         because A's expiry judgment put B's file back: got {}",
        short(&got)
    );
}

/// The same race in one process, plus one EIO: a read judges an expired file, a newer
/// write-through value lands, the read takes the newer file aside, and putting it back
/// fails once. The newer, acknowledged file must not be deleted for the old one's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_judgment_with_one_failed_put_back_keeps_the_newer_file() {
    let (_dir, root, clock) = scenario();
    let hook = HookFs::new();
    let a = write_through(builder(&root, &clock))
        .fs(hook.clone())
        .hot_capacity_entries(1)
        .io_timeout(Duration::from_secs(30))
        .failure_threshold(100)
        .memory_only_after(1000)
        .build()
        .await
        .unwrap();
    let path = entry_path(&root, "k");
    a.set_bytes_with_ttl("k", b"old, expires".to_vec(), Duration::from_secs(1))
        .await
        .unwrap();
    a.set_bytes("evict-k-from-hot", b"x".to_vec())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));

    let read_gate = hook.arm(Hook::AfterRead(path.clone()));
    hook.arm(Hook::FailNoReplaceTo(path.clone()));
    let a2 = a.clone();
    let reader =
        tokio::spawn(async move { a2.get_bytes("k").await.map(|v| v.map(|v| v.to_vec())) });
    assert!(
        read_gate.reached(Duration::from_secs(10)).await,
        "the read never came"
    );
    a.set_bytes("k", b"newer, acknowledged".to_vec())
        .await
        .expect("write-through set on a healthy disk");
    read_gate.open();
    let _ = reader.await.unwrap().unwrap();
    let present = path.exists();
    let closed = a.close().await;
    let got = read_after_restart(&root, &clock, b"k").await;
    assert!(
        present && got.as_deref() == Some(&b"newer, acknowledged"[..]),
        "promise 4/3: the newer acknowledged file was deleted by a judgment of the older one \
         (one EIO on the put-back): file present = {present}, close = {closed:?}, after \
         restart = {}",
        short(&got)
    );
}

/// Instance A sweeps expired entries (its index knows "k" with a short TTL) while B has
/// rewritten "k" without TTL: the sweep must keep B's file. Run on a FaultFs that delays
/// A's header reads so that B's write lands between A's choice and A's check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_sweep_keeps_a_file_another_instance_rewrote() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let a = builder(&root, &clock)
        .fs(fs.clone())
        .sweep_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let b = write_through(builder(&root, &clock)).build().await.unwrap();
    for i in 0..20 {
        a.set_bytes_with_ttl(format!("k{i}"), b"short".to_vec(), Duration::from_secs(1))
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    fs.add_rule(Rule::new(Fault::Delay(Duration::from_millis(3))).ops(&[FsOp::ReadPrefix]));
    clock.advance(Duration::from_secs(2));
    for i in 0..20 {
        b.set_bytes(format!("k{i}"), format!("B{i}").into_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.close().await.unwrap();
    a.close().await.ok();
    let c = fresh(&root, &clock).await;
    let mut missing = Vec::new();
    for i in 0..20 {
        let got = c.get_bytes(format!("k{i}")).await.unwrap();
        if got.as_deref() != Some(format!("B{i}").as_bytes()) {
            missing.push((i, got.map(|v| String::from_utf8_lossy(&v).into_owned())));
        }
    }
    c.close().await.unwrap();
    assert!(
        missing.is_empty(),
        "promise 4: A's expiry sweep removed B's newer files: {missing:?}"
    );
}
