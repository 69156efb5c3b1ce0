//! Review r39 of 7c58541 ("without fsync, an overwrite deletes the key's older file before the
//! rename") and 86a08bb (a stored, level-0 entry laid out and checksummed in the file's buffer
//! directly). Adversarial tests through the public API and the public `warm::format`:
//!
//! - a real `kill -9` of a child process stalled between the deletion and the rename of a
//!   no-sync overwrite (the answer it had flushed must survive a process kill);
//! - a rename failing (EIO) or hanging after the deletion: what is served meanwhile, after
//!   the retry, and after a restart; a `remove` and a `clear` racing an overwrite stalled in
//!   its deletion or its rename, with `io_timeout` giving the write up or not;
//! - two instances on one directory overwriting one key, serialized and concurrently, with a
//!   reader of the entry file that must never see an answer older than one acknowledged
//!   before it began (large compressible answers, so that background compaction races them);
//! - an overwrite of an expired entry and of one at the edge of a small warm budget;
//! - `format::encode` at level 0 against an independent construction of the old bytes
//!   (block boundaries at 65,535), and `format::decode` accepting them.
//!
//! Findings: `REVIEW_R39_FINDINGS.md`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FaultFs, FsOp, Rule};
use answercache::warm::format::{self, EntryMeta, Limits};
use answercache::{Durability, Encoding, WritePolicy};

use crate::support::*;

const EIO: i32 = 5;
/// Long enough that a write held by a fault is never given up on.
const LONG_IO: Duration = Duration::from_secs(60);
/// How long a test lets a stalled call sit before it moves on (sequencing, never asserted).
const SETTLE: Duration = Duration::from_millis(300);

/// A no-sync, write-behind cache on a fresh directory with a fault-injecting file system.
async fn no_sync(io_timeout: Duration) -> TestCache {
    dir()
        .fault_fs()
        .open_cache(|b| {
            b.durability(Durability::NoSync)
                .write_policy(WritePolicy::WriteBehind)
                .io_timeout(io_timeout)
                .failure_threshold(1000)
        })
        .await
}

/// The rule matching calls on the entry file of `key` (a rename matches on its target).
fn on_entry(fault: Fault, op: FsOp, key: &str) -> Rule {
    Rule::new(fault)
        .ops(&[op])
        .path_ends_with(hex_of(key.as_bytes()))
}

async fn value(cache: &answercache::TieredCache, key: &str) -> Option<Vec<u8>> {
    cache.get_bytes(key).await.unwrap().map(|v| v.to_vec())
}

async fn faults_reach(fs: &FaultFs, n: u64) {
    assert!(
        wait_until(PATIENCE, || fs.faults_injected() >= n).await,
        "{n} faults never fired ({} did)",
        fs.faults_injected()
    );
}

// ---------------------------------------------------------------------------------------
// A process killed between the deletion and the rename.
// ---------------------------------------------------------------------------------------

/// The child's cache root (without it, the helper does nothing).
const CHILD_ROOT: &str = "R39_CHILD_ROOT";
const KILL_KEY: &str = "kill/key";
const FLUSHED: &[u8] = b"the answer the child flushed";
const IN_FLIGHT: &[u8] = b"the answer in flight at the kill";

/// The child (a helper run by `a_flushed_answer_survives_a_kill_during_its_no_sync_overwrite`
/// as a child process; without its environment it does nothing): a no-sync write-behind
/// cache sets and flushes `FLUSHED`, then overwrites it with `IN_FLIGHT`, whose rename hangs
/// (the older file is already deleted then), prints `R39-HUNG` and waits to be killed.
#[test]
fn child_overwrite_helper() {
    let Ok(root) = std::env::var(CHILD_ROOT) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let fs = Arc::new(FaultFs::std());
        let cache = answercache::testing::builder(&root)
            .fs(fs.clone())
            .durability(Durability::NoSync)
            .write_policy(WritePolicy::WriteBehind)
            .io_timeout(LONG_IO)
            .build()
            .await
            .unwrap();
        cache.set_bytes(KILL_KEY, FLUSHED).await.unwrap();
        cache.flush().await.unwrap();
        println!("\nR39-FLUSHED");
        fs.add_rule(on_entry(Fault::Hang, FsOp::Rename, KILL_KEY).times(1));
        cache.set_bytes(KILL_KEY, IN_FLIGHT).await.unwrap();
        faults_reach(&fs, 1).await;
        println!("\nR39-HUNG");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

/// A no-sync cache flushed an answer; its next overwrite of the key is stopped (its rename
/// hangs) and the process is `kill -9`ed. NoSync promises that what `flush` acknowledged
/// survives a process kill; the rename never happened, so the flushed answer is the one the
/// restarted cache must serve (as it did before 7c58541). The deletion before the rename
/// took it away: the restart serves nothing.
///
/// Fixed: the overwrite exchanges the new file with the older one (`renameat2(RENAME_EXCHANGE)`)
/// and deletes the older one after; a stalled exchange has changed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_answer_survives_a_kill_during_its_no_sync_overwrite() {
    let d = dir();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "review_r39::child_overwrite_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, d.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        let mut flushed = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            flushed |= line.contains("R39-FLUSHED");
            if line.contains("R39-HUNG") {
                return (flushed, true);
            }
        }
        (flushed, false)
    });
    let seen = tokio::time::timeout(Duration::from_secs(60), reader).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (flushed, hung) = seen.expect("the child hung before its overwrite").unwrap();
    assert!(
        flushed && hung,
        "the child flushed ({flushed}) and hung ({hung})"
    );
    let cache = d.open(d.builder().durability(Durability::NoSync)).await;
    assert_eq!(
        value(&cache, KILL_KEY).await.as_deref(),
        Some(FLUSHED),
        "the answer flushed before the kill"
    );
    cache.close().await.unwrap();
}

/// The same stall without a kill, looked at from a second instance (a fresh index, as after
/// a restart) while the rename hangs: the instance that wrote still serves its newest answer
/// from memory, and once the rename goes on both serve it, on disk too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_hanging_after_the_deletion_serves_the_newest_answer_once_released() {
    let c = no_sync(LONG_IO).await;
    c.set_bytes("k", b"first").await.unwrap();
    c.flush().await.unwrap();
    c.fs()
        .add_rule(on_entry(Fault::Hang, FsOp::Rename, "k").times(1));
    c.set_bytes("k", b"second").await.unwrap();
    faults_reach(c.fs(), 1).await;
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"second"[..]));
    c.fs().release_hangs();
    c.flush().await.unwrap();
    let other = c.open_another().await;
    assert_eq!(value(&other, "k").await.as_deref(), Some(&b"second"[..]));
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"second"[..]));
    other.close().await.unwrap();
}

/// The overwrite's rename hangs (the older file deleted) and the hot tier (2 entries) evicts
/// the answer before its write finished: it must still be served (from the write queue),
/// never the deleted older answer and never a miss; once released, it is the answer on disk.
/// With a short `io_timeout` the write is given up on meanwhile: then the older answer must
/// still never come back.
async fn evicted_while_its_rename_hangs(io_timeout: Duration) {
    let c = dir()
        .fault_fs()
        .open_cache(|b| {
            b.durability(Durability::NoSync)
                .write_policy(WritePolicy::WriteBehind)
                .io_timeout(io_timeout)
                .failure_threshold(1000)
                .hot_capacity_entries(2)
        })
        .await;
    c.set_bytes("k", b"first").await.unwrap();
    c.flush().await.unwrap();
    c.fs().add_rule(stall_rule(Stall::Rename, "k"));
    c.set_bytes("k", b"second").await.unwrap();
    faults_reach(c.fs(), 1).await;
    for i in 0..6 {
        c.set_bytes(format!("other-{i}"), b"x").await.unwrap();
    }
    let got = value(&c, "k").await;
    if io_timeout == LONG_IO {
        assert_eq!(
            got.as_deref(),
            Some(&b"second"[..]),
            "while its write hangs"
        );
    } else {
        assert!(
            got.as_deref() != Some(&b"first"[..]),
            "the superseded answer was served while the write hung"
        );
    }
    c.fs().release_hangs();
    let mut flushed = false;
    for _ in 0..50 {
        if c.flush().await.is_ok() {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flushed, "flush never became Ok once the disk was healthy");
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"second"[..]));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_evicted_while_its_rename_hangs_is_served_from_the_queue() {
    evicted_while_its_rename_hangs(LONG_IO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_evicted_while_its_rename_hangs_past_the_io_timeout_is_never_the_older_one() {
    evicted_while_its_rename_hangs(Duration::from_millis(100)).await;
}

// ---------------------------------------------------------------------------------------
// A rename failing after the deletion.
// ---------------------------------------------------------------------------------------

/// The rename of an overwrite fails once (EIO) after the older file was deleted: the newest
/// answer is served from memory meanwhile, the write is retried until `flush` is Ok, and a
/// restart serves it. Never the older answer, never nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_failing_after_the_deletion_is_retried_and_the_newest_answer_lands() {
    let mut c = no_sync(LONG_IO).await;
    c.set_bytes("k", b"first").await.unwrap();
    c.flush().await.unwrap();
    c.fs()
        .add_rule(on_entry(Fault::Errno(EIO), FsOp::Rename, "k").times(1));
    c.set_bytes("k", b"second").await.unwrap();
    faults_reach(c.fs(), 1).await;
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"second"[..]));
    let mut flushed = false;
    for _ in 0..50 {
        if c.flush().await.is_ok() {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flushed, "flush never became Ok once the disk was healthy");
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"second"[..]));
    let file = std::fs::read(c.entry_path("k")).unwrap();
    let on_disk = format::decode(&file, b"k", &Limits::default()).unwrap();
    assert_eq!(on_disk.value, b"second");
    c.reopen().await;
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"second"[..]));
}

/// Every rename of the key fails (EIO) after the older file was deleted, and the hot tier
/// (2 entries) evicts the dirty answer before any retry lands: the write is lost. What must
/// never happen then is the older answer coming back, in this process or after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_overwrite_never_brings_the_older_answer_back() {
    let mut c = dir()
        .fault_fs()
        .open_cache(|b| {
            b.durability(Durability::NoSync)
                .write_policy(WritePolicy::WriteBehind)
                .io_timeout(LONG_IO)
                .failure_threshold(1000)
                .hot_capacity_entries(2)
        })
        .await;
    c.set_bytes("k", b"first").await.unwrap();
    c.flush().await.unwrap();
    c.fs()
        .add_rule(on_entry(Fault::Errno(EIO), FsOp::Rename, "k"));
    c.set_bytes("k", b"second").await.unwrap();
    faults_reach(c.fs(), 1).await;
    for i in 0..8 {
        c.set_bytes(format!("other-{i}"), b"x").await.unwrap();
    }
    let _ = c.flush().await;
    let got = value(&c, "k").await;
    assert!(
        got.as_deref() != Some(&b"first"[..]),
        "the superseded answer was served: {got:?}"
    );
    assert!(!c.on_disk("k"), "the older file is still on disk");
    c.fs().clear_rules();
    let _ = c.close().await;
    c.reopen_after_close().await;
    let got = value(&c, "k").await;
    assert!(
        got.as_deref() != Some(&b"first"[..]),
        "the superseded answer came back after a restart: {got:?}"
    );
}

// ---------------------------------------------------------------------------------------
// `remove` and `clear` racing an overwrite stalled after (or in) its deletion.
// ---------------------------------------------------------------------------------------

/// Which call of the overwrite stalls.
#[derive(Debug, Clone, Copy)]
enum Stall {
    /// The deletion of the older file: since the fix of F1, after the exchange put the new
    /// file in place, of the older one at the temp path (`v2/ab/.<hex16>.<pid>.<instance>.<n>.tmp`).
    Deletion,
    /// The rename (since the fix of F1, the exchange) of the new file into place.
    Rename,
}

fn stall_rule(stall: Stall, key: &str) -> Rule {
    match stall {
        Stall::Deletion => Rule::new(Fault::Hang)
            .ops(&[FsOp::RemoveFile])
            .path_contains(format!(".{}.", &hex_of(key.as_bytes())[..16]))
            .path_ends_with(".tmp")
            .times(1),
        Stall::Rename => on_entry(Fault::Hang, FsOp::Rename, key).times(1),
    }
}

/// `set k` (flushed), `set k` again (its write stalls at `stall`), then `remove k` while it
/// hangs; released, the removal must win: no answer now, none on disk, none after a restart.
/// With a short `io_timeout` the stalled write is given up on (and retried) while its thread
/// still holds the key's lock and finishes later.
async fn remove_races_a_stalled_overwrite(stall: Stall, io_timeout: Duration) {
    let mut c = no_sync(io_timeout).await;
    c.set_bytes("k", b"first").await.unwrap();
    c.flush().await.unwrap();
    c.fs().add_rule(stall_rule(stall, "k"));
    c.set_bytes("k", b"second").await.unwrap();
    faults_reach(c.fs(), 1).await;
    let remover = {
        let cache = c.cache.clone();
        tokio::spawn(async move { cache.remove("k").await })
    };
    tokio::time::sleep(SETTLE).await;
    c.fs().release_hangs();
    let _ = remover.await.unwrap();
    let mut flushed = false;
    for _ in 0..50 {
        if c.flush().await.is_ok() {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flushed, "flush never became Ok once the disk was healthy");
    assert_eq!(value(&c, "k").await, None, "the removed key is served");
    assert!(!c.on_disk("k"), "the removed key's file is on disk");
    c.reopen().await;
    assert_eq!(
        value(&c, "k").await,
        None,
        "the removal was undone by a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_wins_over_an_overwrite_stalled_in_its_deletion() {
    remove_races_a_stalled_overwrite(Stall::Deletion, LONG_IO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_wins_over_an_overwrite_stalled_in_its_rename() {
    remove_races_a_stalled_overwrite(Stall::Rename, LONG_IO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_wins_over_an_overwrite_stalled_in_its_deletion_past_the_io_timeout() {
    remove_races_a_stalled_overwrite(Stall::Deletion, Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_wins_over_an_overwrite_stalled_in_its_rename_past_the_io_timeout() {
    remove_races_a_stalled_overwrite(Stall::Rename, Duration::from_millis(100)).await;
}

/// `clear` while an overwrite hangs in its rename (the older file already deleted): the
/// clear wins, now and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_wins_over_an_overwrite_stalled_in_its_rename() {
    let mut c = no_sync(LONG_IO).await;
    c.set_bytes("k", b"first").await.unwrap();
    c.set_bytes("j", b"kept?").await.unwrap();
    c.flush().await.unwrap();
    c.fs().add_rule(stall_rule(Stall::Rename, "k"));
    c.set_bytes("k", b"second").await.unwrap();
    faults_reach(c.fs(), 1).await;
    let clearer = {
        let cache = c.cache.clone();
        tokio::spawn(async move { cache.clear().await })
    };
    tokio::time::sleep(SETTLE).await;
    c.fs().release_hangs();
    clearer.await.unwrap().unwrap();
    c.flush().await.unwrap();
    assert_eq!(value(&c, "k").await, None);
    assert_eq!(value(&c, "j").await, None);
    assert!(!c.on_disk("k"));
    c.reopen().await;
    assert_eq!(value(&c, "k").await, None);
    assert_eq!(value(&c, "j").await, None);
}

// ---------------------------------------------------------------------------------------
// Two instances on one directory.
// ---------------------------------------------------------------------------------------

/// A large, compressible answer carrying `seq` (so that it is written stored and compacted
/// later in the background).
fn versioned(seq: u64) -> Vec<u8> {
    let mut v = format!("seq={seq:010};").into_bytes();
    while v.len() < 24 * 1024 {
        v.extend_from_slice(b"the same sentence again and again, compressible. ");
    }
    v
}

fn seq_of(v: &[u8]) -> u64 {
    std::str::from_utf8(&v[4..14]).unwrap().parse().unwrap()
}

/// Reads the entry file of `key` directly and decodes it: `Some(seq)`, `None` for no file.
fn seq_on_disk(root: &std::path::Path, key: &str) -> Option<u64> {
    let path = entry_path(root, key);
    let file = match std::fs::read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("reading {}: {e}", path.display()),
    };
    let limits = Limits {
        max_key_bytes: 1024,
        max_entry_bytes: 1 << 20,
    };
    let d = format::decode(&file, key.as_bytes(), &limits).expect("a whole, valid entry file");
    Some(seq_of(&d.value))
}

/// Two no-sync write-through instances overwrite one key in turns (a lock orders their
/// writes, so "the newest acknowledged" is defined); each has the key in its index, so each
/// write deletes the other's file before its rename. A reader of the entry file must never
/// see an answer older than the newest acknowledged before its read began (a missing file, a
/// miss, is allowed); at the end the file holds the last answer, and a third instance
/// serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_overwriting_in_turns_never_expose_an_older_answer() {
    let t = dir()
        .open_cache(|b| {
            b.durability(Durability::NoSync)
                .write_policy(WritePolicy::WriteThrough)
        })
        .await;
    let other = t.open_another().await;
    let acked = Arc::new(AtomicU64::new(0));
    let next = Arc::new(tokio::sync::Mutex::new(0u64));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (root, acked, done) = (t.root().to_owned(), acked.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut reads, mut misses) = (0u64, 0u64);
            while !done.load(Ordering::SeqCst) {
                let floor = acked.load(Ordering::SeqCst);
                match seq_on_disk(&root, "k") {
                    Some(seq) => assert!(seq >= floor, "read seq {seq} after {floor} was acked"),
                    None => misses += 1,
                }
                reads += 1;
            }
            (reads, misses)
        })
    };
    let mut writers = Vec::new();
    for cache in [t.cache.clone(), other.clone()] {
        let (acked, next) = (acked.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..60 {
                // Held across the write: the writes are ordered.
                let mut n = next.lock().await;
                *n += 1;
                let seq = *n;
                cache.set_bytes("k", versioned(seq)).await.unwrap();
                acked.store(seq, Ordering::SeqCst);
                drop(n);
                tokio::task::yield_now().await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (reads, _misses) = reader.join().unwrap();
    assert!(reads > 0);
    assert_eq!(seq_on_disk(t.root(), "k"), Some(120));
    other.close().await.unwrap();
    t.close().await.unwrap();
    let third = t.open_another().await;
    assert_eq!(value(&third, "k").await.map(|v| seq_of(&v)), Some(120));
    assert_eq!(third.stats().warm_entries, 1);
    third.close().await.unwrap();
}

/// Two no-sync write-behind instances overwrite one key concurrently (no order between
/// them), with background compaction on. Once both flushed, the key's file exists, is whole,
/// and holds one of the two last answers; a fresh instance serves exactly that answer, and
/// no temp file is left once all closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_overwriting_concurrently_leave_one_of_the_last_answers() {
    let t = dir()
        .open_cache(|b| {
            b.durability(Durability::NoSync)
                .write_policy(WritePolicy::WriteBehind)
        })
        .await;
    let other = t.open_another().await;
    let mut writers = Vec::new();
    for (i, cache) in [t.cache.clone(), other.clone()].into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            for n in 0..100u64 {
                // Instance 0 writes even seqs, instance 1 odd ones.
                cache
                    .set_bytes("k", versioned(n * 2 + i as u64))
                    .await
                    .unwrap();
                if n % 10 == 9 {
                    cache.flush().await.unwrap();
                }
            }
            cache.flush().await.unwrap();
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let on_disk = seq_on_disk(t.root(), "k");
    assert!(
        on_disk == Some(198) || on_disk == Some(199),
        "after both flushes the key holds {on_disk:?}"
    );
    other.close().await.unwrap();
    t.close().await.unwrap();
    assert_eq!(seq_on_disk(t.root(), "k"), on_disk);
    let third = t.open_another().await;
    assert_eq!(value(&third, "k").await.map(|v| seq_of(&v)), on_disk);
    third.close().await.unwrap();
    assert_eq!(t.temp_names(), Default::default());
}

// ---------------------------------------------------------------------------------------
// Expiry and a small budget.
// ---------------------------------------------------------------------------------------

/// The key's older entry expired; the overwrite deletes it and renames the new one: the new
/// answer is served, on disk, and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_of_an_expired_entry_serves_the_new_answer() {
    let mut c = no_sync(LONG_IO).await;
    c.set_bytes_with_ttl("k", b"short-lived", Duration::from_secs(10))
        .await
        .unwrap();
    c.flush().await.unwrap();
    c.advance(Duration::from_secs(11));
    c.set_bytes("k", b"fresh").await.unwrap();
    c.flush().await.unwrap();
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"fresh"[..]));
    c.reopen().await;
    assert_eq!(value(&c, "k").await.as_deref(), Some(&b"fresh"[..]));
}

/// A warm budget of a few entries and overwrites of the keys in it (evictions choose victims
/// among keys whose files the overwrites delete and rename): after a restart every key on
/// disk serves its last answer, never an older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_under_a_small_warm_budget_never_serve_an_older_answer() {
    let mut c = dir()
        .open_cache(|b| {
            b.durability(Durability::NoSync)
                .write_policy(WritePolicy::WriteBehind)
                .warm_capacity_bytes(4 * 24 * 1024)
                .hot_capacity_entries(2)
        })
        .await;
    let mut last = std::collections::BTreeMap::new();
    for round in 0..5u64 {
        for k in 0..6u64 {
            let seq = round * 100 + k;
            c.set_bytes(format!("k{k}"), versioned(seq)).await.unwrap();
            last.insert(k, seq);
        }
        c.flush().await.unwrap();
    }
    c.reopen().await;
    let mut served = 0;
    for (k, seq) in &last {
        if let Some(v) = value(&c, &format!("k{k}")).await {
            assert_eq!(seq_of(&v), *seq, "k{k} served an older answer");
            served += 1;
        }
    }
    assert!(served > 0, "nothing of the last round survived");
}

// ---------------------------------------------------------------------------------------
// The format: a level-0 entry is byte for byte what it was.
// ---------------------------------------------------------------------------------------

/// The stored gzip member as it was built before 86a08bb, written again here from RFC 1951/
/// 1952: a 10-byte header (XFL 4, OS 255), stored blocks of at most 65,535 bytes (BFINAL on
/// the last), CRC-32 and ISIZE.
fn old_stored_member(value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff];
    let chunks: Vec<&[u8]> = value.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let n = chunk.len() as u16;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(value);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn a_level_0_entry_is_byte_for_byte_the_old_layout_and_decodes() {
    let limits = Limits {
        max_key_bytes: 4096,
        max_entry_bytes: 1 << 20,
    };
    let metas = [
        EntryMeta::default(),
        EntryMeta {
            created_ms: 1_700_000_000_123,
            expires_ms: 1_800_000_000_456,
            cost: 77,
            encoding: Encoding::Bincode,
        },
    ];
    let sizes = [
        1usize, 2, 65_534, 65_535, 65_536, 65_537, 131_070, 131_071, 131_072, 200_000,
    ];
    for (s, &len) in sizes.iter().enumerate() {
        for (m, meta) in metas.iter().enumerate() {
            let key = format!("key-{len}-{m}-{}", "x".repeat(s * 37));
            let value = pseudo_random(len, (s * 10 + m) as u64);
            let file = format::encode(key.as_bytes(), &value, *meta, 0).unwrap();
            let old = format::assemble(
                key.as_bytes(),
                len as u64,
                &old_stored_member(&value),
                *meta,
                format::VERSION,
                format::flags_for(meta.encoding),
            );
            assert_eq!(file.len(), old.len(), "length at {len} bytes");
            assert!(file == old, "different bytes at {len} bytes, meta {m}");
            let d = format::decode(&file, key.as_bytes(), &limits).unwrap();
            assert_eq!(d.value, value, "decoded value at {len} bytes");
            assert_eq!(d.meta, *meta);
            let mut one_bit_off = file.clone();
            let last = one_bit_off.len() - 1;
            one_bit_off[last] ^= 1;
            assert!(
                format::decode(&one_bit_off, key.as_bytes(), &limits).is_err(),
                "a flipped bit decodes at {len} bytes"
            );
        }
    }
}

/// The empty value at level 0 takes the other path (flate2's member): it decodes to empty,
/// and a level-0 entry of the same value is identical whatever level-0 path is asked twice.
#[test]
fn an_empty_value_at_level_0_decodes_to_empty() {
    let limits = Limits::default();
    let file = format::encode(b"k", b"", EntryMeta::default(), 0).unwrap();
    assert_eq!(
        file,
        format::encode(b"k", b"", EntryMeta::default(), 0).unwrap()
    );
    let d = format::decode(&file, b"k", &limits).unwrap();
    assert_eq!(d.value, Vec::<u8>::new());
    assert!(format::decode(&file, b"other", &limits).is_err());
}
