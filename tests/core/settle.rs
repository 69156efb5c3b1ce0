//! Adversarial tests (r23) of the W2 fix (`closer::settle`, `Fs::settle_deferred_closes`,
//! `WarmStore::write_temp` and the `check_space` retry in `write_encoded`) on a full disk,
//! through the public API: a write that cannot fit after the closes still fails cleanly (no
//! temp file left, nothing else deleted, exact counters); a write that can fit after the
//! closes succeeds without ever taking the disk below `min_free_bytes`.
//!
//! Each test runs again in a child in a private mount namespace on a small loop-mounted ext4
//! (root, `unshare`, `mkfs.ext4`, `mount`), as in `closer.rs`; without them it says it is
//! skipped, except under `CI=true`. Counts are exact; time only bounds waits (10 s).
//! Findings are `#[ignore]`d with their id; see `SETTLE_FINDINGS.md`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use answercache::workload::Rng;
use answercache::{Durability, WritePolicy};

use crate::closer::{child_ext4, ci, sh};
use crate::support::OnDisk;

pub(crate) use crate::closer::is_child;

/// Runs `test` again in a child in a private mount namespace, in `role`
/// ([`crate::closer::run_child`]); also needs `mkfs.ext4`. Skipped (said so) without them,
/// outside CI.
pub(crate) fn run_child(test: &str, role: &str) {
    if Command::new("mkfs.ext4").arg("-V").output().is_err() {
        assert!(!ci(), "{test}: needs mkfs.ext4; CI=true requires it");
        println!("SKIPPED {test}: needs mkfs.ext4");
        return;
    }
    crate::closer::run_child(test, role, true);
}

pub(crate) fn free_bytes(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).unwrap();
    st.f_bavail * st.f_frsize
}

/// Fills the filesystem of `mnt` until `keep` bytes are free (a file `ballast`).
pub(crate) fn fill_to(mnt: &Path, keep: u64) -> PathBuf {
    use std::io::Write;
    let ballast = mnt.join("ballast");
    let free = free_bytes(mnt);
    assert!(free > keep, "free {free}, keep {keep}");
    let mut left = free - keep;
    let mut f = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    f.sync_all().unwrap();
    drop(f);
    sh("sync", &[]);
    ballast
}

const LEN: usize = 40 * 1024;

/// On a disk with room for half an entry file: `a` and `b` stored before, then `rounds`
/// times inline hits of `a` and `b` (descriptors handed to the closer just before the write,
/// so the retry may run) and a set of a new key that cannot fit. Every such write fails:
/// write-through returns the error, write-behind counts it; exactly `rounds` writes failed,
/// all `no-space`; no temp file is left; `a` and `b` are exact, their files and the ballast
/// untouched; the new keys are not on disk.
fn cannot_fit(policy: WritePolicy, durability: Durability, rounds: u64) -> u64 {
    let (mnt, root) = child_ext4("cache");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::TempDir::new_in(&root).unwrap();
        let h = crate::support::dir_in(tmp)
            .open_cache(|b| {
                b.hot_capacity_bytes(1)
                    .page_cache_reads(true)
                    .write_policy(policy)
                    .durability(durability)
                    .min_free_bytes(0)
                    .failure_threshold(100_000)
                    .memory_only_after(100_000)
            })
            .await;
        let mut rng = Rng::new(7);
        let (a, b) = (rng.bytes(LEN), rng.bytes(LEN));
        h.set_bytes("a", &a).await.unwrap();
        h.set_bytes("b", &b).await.unwrap();
        h.flush().await.unwrap();
        let file_bytes = std::fs::metadata(h.entry_path("a")).unwrap().len();
        let ballast = fill_to(&mnt, file_bytes / 2);
        let ballast_len = std::fs::metadata(&ballast).unwrap().len();
        let entries: BTreeSet<String> = h.entry_names();
        assert_eq!(entries.len(), 2);
        let before = h.stats();
        let mut refused = 0;
        for i in 0..rounds {
            assert_eq!(h.get_bytes("a").await.unwrap().as_deref(), Some(&a[..]));
            assert_eq!(h.get_bytes("b").await.unwrap().as_deref(), Some(&b[..]));
            let v = rng.bytes(LEN);
            match h.set_bytes(format!("c{i}"), &v).await {
                Ok(()) => {}
                Err(_) => refused += 1,
            }
            // Write-behind: the flush may report the failed write.
            let _ = h.flush().await;
            assert_eq!(h.temp_names(), BTreeSet::new(), "round {i}");
            assert_eq!(h.entry_names(), entries, "round {i}");
            assert!(!h.entry_path(format!("c{i}")).exists(), "round {i}");
        }
        let s = h.stats();
        let fallbacks = s.inline_read_fallbacks - before.inline_read_fallbacks;
        println!(
            "{policy:?} {durability:?}: refused {refused}, writes_failed {}, {:?}, inline {}, \
             fell back to the blocking pool {fallbacks}",
            s.writes_failed - before.writes_failed,
            s.disk_errors_by_kind,
            s.inline_reads - before.inline_reads
        );
        assert_eq!(s.writes_failed - before.writes_failed, rounds);
        if policy == WritePolicy::WriteThrough {
            assert_eq!(refused, rounds);
        }
        let no_space = answercache::testing::disk_errors(&h, "no-space");
        assert!(no_space >= rounds, "{no_space}");
        // Every read tried the page cache on the calling thread: answered there, or (when
        // the kernel would not answer without waiting: a mount namespace of an earlier child
        // torn down meanwhile moves the mount sequence RESOLVE_CACHED checks) on the pool.
        assert_eq!(s.inline_reads - before.inline_reads + fallbacks, 2 * rounds);
        // And the page cache answered some: the descriptors the settle path hands over were
        // made (review r31: all fallbacks would pass the sum without testing the settle).
        assert!(s.inline_reads > before.inline_reads, "no read inline");
        assert_eq!(std::fs::metadata(&ballast).unwrap().len(), ballast_len);
        assert_eq!(h.get_bytes("a").await.unwrap().as_deref(), Some(&a[..]));
        assert_eq!(h.get_bytes("b").await.unwrap().as_deref(), Some(&b[..]));
        no_space
    })
}

#[test]
fn writes_that_cannot_fit_fail_cleanly_write_through_fsync() {
    if !is_child("cannot_wt_fsync") {
        return run_child(
            "settle::writes_that_cannot_fit_fail_cleanly_write_through_fsync",
            "cannot_wt_fsync",
        );
    }
    cannot_fit(WritePolicy::WriteThrough, Durability::Fsync, 60);
}

/// One failed write is one disk error: with page-cache reads off (nothing to settle) 60
/// refused writes count exactly 60 `no-space`; with them on, a write whose first attempt
/// found descriptors handed over retries, and the retry's ENOSPC was counted again by
/// `ObservedFs` (X1: 61-65 for 60 writes, 210-218 for 200; fixed, see SETTLE_FINDINGS.md).
/// How many writes retry depends on load; the `FaultFs` tests below make it certain.
#[test]
fn one_refused_write_counts_one_no_space_error() {
    if !is_child("x1_count") {
        return run_child(
            "settle::one_refused_write_counts_one_no_space_error",
            "x1_count",
        );
    }
    let no_space = cannot_fit(WritePolicy::WriteThrough, Durability::Fsync, 200);
    assert_eq!(no_space, 200);
}

#[test]
fn writes_that_cannot_fit_fail_cleanly_write_behind_nosync() {
    if !is_child("cannot_wb_nosync") {
        return run_child(
            "settle::writes_that_cannot_fit_fail_cleanly_write_behind_nosync",
            "cannot_wb_nosync",
        );
    }
    cannot_fit(WritePolicy::WriteBehind, Durability::NoSync, 60);
}

/// `min_free_bytes` 2 MiB, the disk filled to the floor plus one and a half entry files:
/// `rounds` times, an inline hit of `k` (exact) and a set of `k` with a new value of the
/// same size. Each set fits above the floor only once the replaced file (held open by the
/// closer until it closes it) is freed: the `check_space` refusal settles and retries. Every
/// set succeeds, nothing fails, and the free space never goes below the floor.
fn floor_kept(policy: WritePolicy, durability: Durability, rounds: u64) {
    const FLOOR: u64 = 2 << 20;
    let (mnt, root) = child_ext4("cache");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::TempDir::new_in(&root).unwrap();
        let h = crate::support::dir_in(tmp)
            .open_cache(|b| {
                b.hot_capacity_bytes(1)
                    .page_cache_reads(true)
                    .write_policy(policy)
                    .durability(durability)
                    .min_free_bytes(FLOOR)
                    .failure_threshold(100_000)
                    .memory_only_after(100_000)
            })
            .await;
        let mut rng = Rng::new(11);
        let mut value = rng.bytes(LEN);
        h.set_bytes("k", &value).await.unwrap();
        h.flush().await.unwrap();
        let file_bytes = std::fs::metadata(h.entry_path("k")).unwrap().len();
        fill_to(&mnt, FLOOR + file_bytes + file_bytes / 2);
        let before = h.stats();
        let (mut ok, mut exact, mut lowest) = (0, 0, u64::MAX);
        for _ in 0..rounds {
            if h.get_bytes("k").await.unwrap().as_deref() == Some(&value[..]) {
                exact += 1;
            }
            let next = rng.bytes(LEN);
            if h.set_bytes("k", &next).await.is_ok() {
                ok += 1;
            }
            h.flush().await.unwrap();
            lowest = lowest.min(free_bytes(&mnt));
            value = next;
        }
        let s = h.stats();
        println!(
            "{policy:?} {durability:?}: ok {ok}, exact {exact}, lowest free {lowest} \
             (floor {FLOOR}), writes_failed {}, {:?}",
            s.writes_failed - before.writes_failed,
            s.disk_errors_by_kind
        );
        assert_eq!(
            (ok, exact, s.writes_failed - before.writes_failed),
            (rounds, rounds, 0)
        );
        assert!(lowest >= FLOOR, "free {lowest} below the floor {FLOOR}");
        assert_eq!(h.temp_names(), BTreeSet::new());
        assert_eq!(h.get_bytes("k").await.unwrap().as_deref(), Some(&value[..]));
    });
}

#[test]
fn the_floor_is_kept_and_overwrites_read_inline_succeed_write_through_nosync() {
    if !is_child("floor_wt_nosync") {
        return run_child(
            "settle::the_floor_is_kept_and_overwrites_read_inline_succeed_write_through_nosync",
            "floor_wt_nosync",
        );
    }
    floor_kept(WritePolicy::WriteThrough, Durability::NoSync, 300);
}

#[test]
fn the_floor_is_kept_and_overwrites_read_inline_succeed_write_behind_fsync() {
    if !is_child("floor_wb_fsync") {
        return run_child(
            "settle::the_floor_is_kept_and_overwrites_read_inline_succeed_write_behind_fsync",
            "floor_wb_fsync",
        );
    }
    floor_kept(WritePolicy::WriteBehind, Durability::Fsync, 100);
}

// ---------------------------------------------------------------------------------------
// What a settled retry counts (X1 and its sibling), deterministic: a `FaultFs` refuses
// `write_new` with ENOSPC a chosen number of times and answers `settle_deferred_closes` true
// (the closes freed space), so the store tries the refused write once more.
// ---------------------------------------------------------------------------------------

/// A write-through cache over `fs` whose breaker opens on the first reported failure; the hot
/// tier admits nothing, so a `get` reads the disk.
async fn settling_cache(
    fs: &std::sync::Arc<answercache::testing::FaultFs>,
) -> crate::support::TestCache {
    fs.set_settle_answer(true);
    crate::support::open(|b| {
        b.hot_capacity_bytes(1)
            .write_policy(WritePolicy::WriteThrough)
            .durability(Durability::Fsync)
            .failure_threshold(1)
            .fs(fs.clone())
    })
    .await
}

fn refuse_writes(fs: &answercache::testing::FaultFs, times: u64) {
    use answercache::testing::{Fault, FsOp, Rule};
    fs.add_rule(
        Rule::new(Fault::Errno(28))
            .ops(&[FsOp::WriteNew])
            .times(times),
    );
}

/// The first attempt refused, the retry after the closes written: the write succeeded, so it
/// is no disk error and no failure for the breaker (which opens on one here). Before the
/// fix: one `no-space` counted and the breaker opened on a write that had succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_succeeds_after_the_closes_settle_is_no_error_and_no_failure() {
    let fs = std::sync::Arc::new(answercache::testing::FaultFs::std());
    let h = settling_cache(&fs).await;
    let before = h.stats();
    let writes_before = fs.calls(answercache::testing::FsOp::WriteNew);
    refuse_writes(&fs, 1);
    h.set("k", &"the answer".to_string()).await.unwrap();
    assert_eq!(fs.faults_injected(), 1);
    assert_eq!(fs.settle_calls(), 1);
    assert_eq!(
        fs.calls(answercache::testing::FsOp::WriteNew) - writes_before,
        2
    );
    let s = h.stats();
    assert_eq!(
        s.disk_errors - before.disk_errors,
        0,
        "{:?}",
        s.disk_errors_by_kind
    );
    assert_eq!(s.writes_failed - before.writes_failed, 0);
    assert_eq!(s.breaker_opens - before.breaker_opens, 0);
    assert_eq!(
        h.get::<String>("k").await.unwrap().as_deref(),
        Some("the answer")
    );
    assert_eq!(h.stats().warm_hits - before.warm_hits, 1);
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// Refused, settled, refused again: one failed write, one `no-space` error, one breaker
/// failure (X1: it counted two `no-space`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_again_after_the_closes_settle_counts_one_no_space_error() {
    let fs = std::sync::Arc::new(answercache::testing::FaultFs::std());
    let h = settling_cache(&fs).await;
    let before = h.stats();
    let writes_before = fs.calls(answercache::testing::FsOp::WriteNew);
    refuse_writes(&fs, 2);
    assert!(h.set("k", &"the answer".to_string()).await.is_err());
    assert_eq!(fs.faults_injected(), 2);
    assert_eq!(fs.settle_calls(), 1);
    assert_eq!(
        fs.calls(answercache::testing::FsOp::WriteNew) - writes_before,
        2
    );
    let s = h.stats();
    assert_eq!(
        s.disk_errors - before.disk_errors,
        1,
        "{:?}",
        s.disk_errors_by_kind
    );
    assert_eq!(answercache::testing::disk_errors(&h, "no-space"), 1);
    assert_eq!(s.writes_failed - before.writes_failed, 1);
    assert_eq!(s.breaker_opens - before.breaker_opens, 1);
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// Without a settle (nothing was left to close), a refused write is not tried again: one
/// call, one error. Guards that only a settle that freed something leads to a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_with_nothing_to_settle_is_not_retried() {
    let fs = std::sync::Arc::new(answercache::testing::FaultFs::std());
    let h = settling_cache(&fs).await;
    fs.set_settle_answer(false);
    let before = h.stats();
    let writes_before = fs.calls(answercache::testing::FsOp::WriteNew);
    refuse_writes(&fs, 1);
    assert!(h.set("k", &"the answer".to_string()).await.is_err());
    assert_eq!(fs.settle_calls(), 1);
    assert_eq!(
        fs.calls(answercache::testing::FsOp::WriteNew) - writes_before,
        1
    );
    let s = h.stats();
    assert_eq!(answercache::testing::disk_errors(&h, "no-space"), 1);
    assert_eq!(s.disk_errors - before.disk_errors, 1);
    assert_eq!(s.writes_failed - before.writes_failed, 1);
    assert_eq!(h.get::<String>("k").await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// Concurrent writes near the floor: a written temp file counted twice (Z1).
// ---------------------------------------------------------------------------------------

/// `min_free_bytes` 2 MiB; keys `k0` and `k1` stored, then the disk filled to the floor plus
/// two and a half entry files. Two tasks overwrite their own key 100 times each (page-cache
/// reads off: nothing is left to close). At most two temp files exist at once, so free space
/// never needs to go below floor + half an entry file: every set must succeed. A write's
/// space reservation is held until its rename; once its temp file is written, `statvfs`
/// already counts those bytes as used, so the other task's check counted them twice and was
/// refused: 143 of 200 in the lead's run, 96 in session 18's run before the fix
/// (SETTLE_FINDINGS.md, Z1; fixed: a failed check waits for the writes in flight, `space.rs`).
#[test]
fn concurrent_overwrites_near_the_floor_are_not_refused() {
    if !is_child("floor_concurrent_exact") {
        return run_child(
            "settle::concurrent_overwrites_near_the_floor_are_not_refused",
            "floor_concurrent_exact",
        );
    }
    const FLOOR: u64 = 2 << 20;
    const ROUNDS: u64 = 100;
    let (mnt, root) = child_ext4("cache");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::TempDir::new_in(&root).unwrap();
        let h = std::sync::Arc::new(
            crate::support::dir_in(tmp)
                .open_cache(|b| {
                    b.hot_capacity_bytes(1)
                        .page_cache_reads(false)
                        .write_policy(WritePolicy::WriteThrough)
                        .durability(Durability::Fsync)
                        .min_free_bytes(FLOOR)
                        .failure_threshold(100_000)
                        .memory_only_after(100_000)
                })
                .await,
        );
        let mut rng = Rng::new(12);
        for k in 0..2 {
            h.set_bytes(format!("k{k}"), rng.bytes(LEN)).await.unwrap();
        }
        h.flush().await.unwrap();
        let alloc = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(h.entry_path("k0")).unwrap().blocks() * 512
        };
        fill_to(&mnt, FLOOR + alloc * 5 / 2);
        let before = h.stats();
        let tasks: Vec<_> = (0..2u64)
            .map(|k| {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut rng = Rng::new(100 + k);
                    let mut ok = 0u64;
                    for _ in 0..ROUNDS {
                        if h.set_bytes(format!("k{k}"), rng.bytes(LEN)).await.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        let s = h.stats();
        println!(
            "ok {ok} of {}, writes_failed {}, {:?}, free {} (floor {FLOOR}, entry {alloc})",
            2 * ROUNDS,
            s.writes_failed - before.writes_failed,
            s.disk_errors_by_kind,
            free_bytes(&mnt)
        );
        assert_eq!(
            (ok, s.writes_failed - before.writes_failed),
            (2 * ROUNDS, 0)
        );
        assert!(free_bytes(&mnt) >= FLOOR);
        assert_eq!(h.temp_names(), BTreeSet::new());
    });
}
