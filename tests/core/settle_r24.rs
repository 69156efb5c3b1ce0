//! Adversarial tests (r24) of the X1 fix (`ObservedFs` holds ENOSPC refusals; a settle that
//! answers `true` withdraws the latest, the store retries the refused write) and of
//! `FaultFs::set_settle_answer`: what one write that meets ENOSPC (on `write_new`, its fsync,
//! a short write, the rename, the fan-out directory, the directory fsync, the free-space
//! check, an eviction) counts in `Stats::disk_errors_by_kind`, `writes_failed` and the
//! breaker (`failure_threshold(1)`), what a `get` returns after it, and that no temp file is
//! left; then timeouts, concurrent writes, memory-only mode and a real full ext4 with
//! concurrent inline hits and writes.
//!
//! Counts are exact; time only bounds waits. Findings are `#[ignore]`d with their id; see
//! `R24_FINDINGS.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FaultFs, FsOp, Rule};
use answercache::workload::Rng;
use answercache::{Builder, Durability, Mode, Stats, WritePolicy};

use crate::support::{OnDisk, TestCache};

const WAIT: Duration = Duration::from_secs(10);

/// A cache over `fs` whose hot tier admits nothing (a `get` reads the disk), the breaker
/// opening on the first reported failure unless `edit` says otherwise.
async fn cache_on(
    fs: &Arc<FaultFs>,
    settle: bool,
    policy: WritePolicy,
    durability: Durability,
    edit: impl FnOnce(Builder) -> Builder,
) -> TestCache {
    fs.set_settle_answer(settle);
    crate::support::open(|b| {
        edit(
            b.hot_capacity_bytes(1)
                .write_policy(policy)
                .durability(durability)
                .failure_threshold(1)
                .memory_only_after(100_000)
                .fs(fs.clone()),
        )
    })
    .await
}

/// The disk errors counted between two snapshots, by kind (kinds that did not move absent).
fn kinds(before: &Stats, after: &Stats) -> BTreeMap<String, u64> {
    after
        .disk_errors_by_kind
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.disk_errors_by_kind.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// The path text of `<root>/v2/`, under which the temp files of entry writes are written,
/// beside their entries (`v2/ab/.<16 hex>.<pid>.<instance>.<n>.tmp`); a rule for those temp
/// files alone adds `path_ends_with(".tmp")` (the root itself lies under the system's `/tmp`,
/// so a rule matching "tmp" alone would match every path). Not the probe's, `<root>/tmp/probe.*`.
fn tmp_dir(h: &TestCache) -> String {
    h.root().join("v2").to_string_lossy().into_owned()
}

/// An ENOSPC rule on the temp files of entry writes (see [`tmp_dir`]).
fn enospc_temps(ops: &[FsOp], h: &TestCache, times: u64) -> Rule {
    enospc(ops, &tmp_dir(h), times).path_ends_with(".tmp")
}

/// The start of the temp files of `key`'s writes: `<root>/v2/ab/.<16 hex of its hash>.`
fn temp_of(h: &TestCache, key: &str) -> String {
    let hex = crate::support::hex_of(key.as_bytes());
    h.root()
        .join("v2")
        .join(&hex[..2])
        .join(format!(".{}.", &hex[..16]))
        .to_string_lossy()
        .into_owned()
}

fn v2_dir(h: &TestCache) -> String {
    h.root().join("v2").to_string_lossy().into_owned()
}

/// What one scenario must count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    kinds: BTreeMap<String, u64>,
    disk_errors: u64,
    writes_failed: u64,
    breaker_opens: u64,
    settles: u64,
    write_new_calls: u64,
    /// Whether the value was stored (a following `get` answers it exactly) or not (`None`).
    stored: bool,
}

fn expect(
    pairs: &[(&str, u64)],
    writes_failed: u64,
    breaker_opens: u64,
    settles: u64,
    write_new_calls: u64,
    stored: bool,
) -> Counted {
    let kinds = map(pairs);
    Counted {
        disk_errors: kinds.values().sum(),
        kinds,
        writes_failed,
        breaker_opens,
        settles,
        write_new_calls,
        stored,
    }
}

/// One set of `k` (a value of a few KiB) through a fresh cache over a `FaultFs` set up by
/// `rules` after the open; returns what it counted. Write-through: the set's result is the
/// write's; write-behind: the set succeeds and `flush` reports the write's result. No temp
/// file is ever left.
async fn one_write(
    settle: bool,
    policy: WritePolicy,
    durability: Durability,
    edit: impl FnOnce(Builder) -> Builder,
    rules: impl FnOnce(&FaultFs, &TestCache),
) -> Counted {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(&fs, settle, policy, durability, edit).await;
    let value = Rng::new(3).bytes(6000);
    let before = h.stats();
    let (settles, writes) = (fs.settle_calls(), fs.calls(FsOp::WriteNew));
    rules(&fs, &h);
    let set = h.set_bytes("k", &value).await;
    let flushed = h.flush().await;
    let after = h.stats();
    let counted_settles = fs.settle_calls() - settles;
    let counted_writes = fs.calls(FsOp::WriteNew) - writes;
    fs.clear_rules();
    let got = h.get_bytes("k").await.unwrap();
    let stored = got.is_some();
    if let Some(got) = got {
        assert_eq!(&got[..], &value[..], "a stored value is exact");
    }
    let failed = after.writes_failed - before.writes_failed;
    match policy {
        WritePolicy::WriteThrough => assert_eq!(set.is_err(), failed == 1, "{set:?}"),
        WritePolicy::WriteBehind => {
            assert!(set.is_ok(), "{set:?}");
            assert_eq!(flushed.is_err(), failed == 1, "{flushed:?}");
        }
    }
    assert_eq!(h.temp_names(), BTreeSet::new(), "no temp file left");
    Counted {
        kinds: kinds(&before, &after),
        disk_errors: after.disk_errors - before.disk_errors,
        writes_failed: failed,
        breaker_opens: after.breaker_opens - before.breaker_opens,
        settles: counted_settles,
        write_new_calls: counted_writes,
        stored,
    }
}

fn enospc(ops: &[FsOp], path: &str, times: u64) -> Rule {
    Rule::new(Fault::Errno(28))
        .ops(ops)
        .path_contains(path)
        .times(times)
}

const BOTH: [(WritePolicy, Durability); 4] = [
    (WritePolicy::WriteThrough, Durability::Fsync),
    (WritePolicy::WriteThrough, Durability::NoSync),
    (WritePolicy::WriteBehind, Durability::Fsync),
    (WritePolicy::WriteBehind, Durability::NoSync),
];

// ---------------------------------------------------------------------------------------
// write_new refused 1, 2, 3 times, settle true or false
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_new_refused_once_without_a_settle_is_one_error_and_one_failure() {
    for (policy, durability) in BOTH {
        let c = one_write(
            false,
            policy,
            durability,
            |b| b,
            |fs, h| {
                fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 1));
            },
        )
        .await;
        assert_eq!(
            c,
            expect(&[("no-space", 1)], 1, 1, 1, 1, false),
            "{policy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_new_refused_once_then_written_is_no_error_in_both_policies() {
    for (policy, durability) in BOTH {
        let c = one_write(
            true,
            policy,
            durability,
            |b| b,
            |fs, h| {
                fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 1));
            },
        )
        .await;
        assert_eq!(c, expect(&[], 0, 0, 1, 2, true), "{policy:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_new_refused_twice_is_one_error_in_both_policies() {
    for (policy, durability) in BOTH {
        let c = one_write(
            true,
            policy,
            durability,
            |b| b,
            |fs, h| {
                fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 2));
            },
        )
        .await;
        assert_eq!(
            c,
            expect(&[("no-space", 1)], 1, 1, 1, 2, false),
            "{policy:?}"
        );
    }
}

/// A write refused on every attempt is still tried only twice (one settle), one error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_new_always_refused_is_tried_twice_and_one_error() {
    for (policy, durability) in BOTH {
        let c = one_write(
            true,
            policy,
            durability,
            |b| b,
            |fs, h| {
                fs.add_rule(
                    Rule::new(Fault::Errno(28))
                        .ops(&[FsOp::WriteNew])
                        .path_contains(tmp_dir(h))
                        .path_ends_with(".tmp"),
                );
            },
        )
        .await;
        assert_eq!(
            c,
            expect(&[("no-space", 1)], 1, 1, 1, 2, false),
            "{policy:?}"
        );
    }
}

/// Three refusals over two writes (threshold 2): the first write refused twice (one error,
/// one failure), the second refused once and written on its retry (none; its success resets
/// the breaker's run of failures, so it never opens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_refusals_over_two_writes_count_one_error() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.failure_threshold(2),
    )
    .await;
    let before = h.stats();
    let writes = fs.calls(FsOp::WriteNew);
    fs.add_rule(enospc_temps(&[FsOp::WriteNew], &h, 3));
    assert!(h.set("a", &"one".to_string()).await.is_err());
    h.set("b", &"two".to_string()).await.unwrap();
    let s = h.stats();
    assert_eq!(kinds(&before, &s), map(&[("no-space", 1)]));
    assert_eq!(s.disk_errors - before.disk_errors, 1);
    assert_eq!(s.writes_failed - before.writes_failed, 1);
    assert_eq!(s.breaker_opens - before.breaker_opens, 0);
    assert_eq!(fs.settle_calls(), 2);
    assert_eq!(fs.calls(FsOp::WriteNew) - writes, 4);
    assert_eq!(fs.faults_injected(), 3);
    assert_eq!(h.get::<String>("a").await.unwrap(), None);
    assert_eq!(h.get::<String>("b").await.unwrap().as_deref(), Some("two"));
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// Refused with ENOSPC, retried, the retry fails with EIO: judged by its retry, one `io`
/// error and no `no-space`; a device failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_fails_with_eio_counts_the_eio_only() {
    for (policy, durability) in BOTH {
        let c = one_write(
            true,
            policy,
            durability,
            |b| b,
            |fs, h| {
                fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 1));
                fs.add_rule(
                    Rule::new(Fault::Errno(5))
                        .ops(&[FsOp::WriteNew])
                        .path_contains(tmp_dir(h))
                        .path_ends_with(".tmp")
                        .times(1),
                );
            },
        )
        .await;
        assert_eq!(c, expect(&[("io", 1)], 1, 1, 1, 2, false), "{policy:?}");
    }
}

/// Refused twice (the retry too), and the cleanup unlink of the temp path fails with EIO:
/// one `no-space` (the retried refusal) and one `io`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_retry_and_a_failed_cleanup_count_one_of_each() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
        |fs, h| {
            fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 2));
            // The unlink before the retry passes (NotFound), the cleanup after it fails.
            fs.add_rule(
                Rule::new(Fault::Errno(5))
                    .ops(&[FsOp::RemoveFile])
                    .path_contains(tmp_dir(h))
                    .path_ends_with(".tmp")
                    .skip(1)
                    .times(1),
            );
        },
    )
    .await;
    assert_eq!(c, expect(&[("io", 1), ("no-space", 1)], 1, 1, 1, 2, false));
}

/// EDQUOT is a refusal like ENOSPC: settled and retried; once written, no error; refused
/// again, one `no-space`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_refusal_is_settled_like_enospc() {
    for (times, counted, failed, stored) in
        [(1, vec![], 0, true), (2, vec![("no-space", 1)], 1, false)]
    {
        let c = one_write(
            true,
            WritePolicy::WriteThrough,
            Durability::Fsync,
            |b| b,
            |fs, h| {
                fs.add_rule(
                    Rule::new(Fault::Errno(122))
                        .ops(&[FsOp::WriteNew])
                        .path_contains(tmp_dir(h))
                        .path_ends_with(".tmp")
                        .times(times),
                );
            },
        )
        .await;
        assert_eq!(c, expect(&counted, failed, failed, 1, 2, stored), "{times}");
    }
}

/// EIO first (not retried: only ENOSPC settles), one `io` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_is_not_retried_and_counts_once() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
        |fs, h| {
            fs.add_rule(
                Rule::new(Fault::Errno(5))
                    .ops(&[FsOp::WriteNew])
                    .path_contains(tmp_dir(h))
                    .path_ends_with(".tmp")
                    .times(1),
            );
        },
    )
    .await;
    assert_eq!(c, expect(&[("io", 1)], 1, 1, 0, 1, false));
}

// ---------------------------------------------------------------------------------------
// The fsync inside write_new, short writes
// ---------------------------------------------------------------------------------------

/// The data was written, its fsync refused with ENOSPC: the temp file is removed and written
/// again after the settle; no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_refused_once_then_written_is_no_error() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
        |fs, h| fs.add_rule(enospc_temps(&[FsOp::SyncFile], h, 1)),
    )
    .await;
    assert_eq!(c, expect(&[], 0, 0, 1, 2, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_refused_twice_is_one_error_and_no_temp_file() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
        |fs, h| fs.add_rule(enospc_temps(&[FsOp::SyncFile], h, 2)),
    )
    .await;
    assert_eq!(c, expect(&[("no-space", 1)], 1, 1, 1, 2, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_refused_without_a_settle_is_one_error_and_no_temp_file() {
    let c = one_write(
        false,
        WritePolicy::WriteBehind,
        Durability::Fsync,
        |b| b,
        |fs, h| fs.add_rule(enospc_temps(&[FsOp::SyncFile], h, 1)),
    )
    .await;
    assert_eq!(c, expect(&[("no-space", 1)], 1, 1, 1, 1, false));
}

/// Half the file written, then ENOSPC: the partial temp file is removed before the retry,
/// the retry writes the exact entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_write_then_written_on_the_retry_is_exact_and_no_error() {
    for (policy, durability) in BOTH {
        let c = one_write(
            true,
            policy,
            durability,
            |b| b,
            |fs, h| {
                fs.add_rule(
                    Rule::new(Fault::ShortWrite(28))
                        .ops(&[FsOp::WriteNew])
                        .path_contains(tmp_dir(h))
                        .path_ends_with(".tmp")
                        .times(1),
                );
            },
        )
        .await;
        assert_eq!(c, expect(&[], 0, 0, 1, 2, true), "{policy:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_writes_twice_are_one_error_and_no_temp_file() {
    for settle in [true, false] {
        let c = one_write(
            settle,
            WritePolicy::WriteThrough,
            Durability::Fsync,
            |b| b,
            |fs, h| {
                fs.add_rule(
                    Rule::new(Fault::ShortWrite(28))
                        .ops(&[FsOp::WriteNew])
                        .path_contains(tmp_dir(h))
                        .path_ends_with(".tmp")
                        .times(2),
                );
            },
        )
        .await;
        let calls = if settle { 2 } else { 1 };
        assert_eq!(
            c,
            expect(&[("no-space", 1)], 1, 1, 1, calls, false),
            "settle {settle}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// ENOSPC on calls that do not settle: rename, fan-out directory, directory fsync, eviction
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_refused_is_one_error_and_not_retried() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
        |fs, h| fs.add_rule(enospc(&[FsOp::Rename], &v2_dir(h), 1)),
    )
    .await;
    assert_eq!(c, expect(&[("no-space", 1)], 1, 1, 0, 1, false));
}

/// The first entry of its fan-out directory: its temp file (written beside its place) finds
/// none, and creating the directory is refused. That refusal is the temp file's write's: it
/// settles like one (the deferred closes, then once more). Refused once: written, no error;
/// refused again after the settle: one error, one failure, nothing left behind. (The creates
/// that found no directory never reach the disk: not counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_directory_refused_settles_like_the_temp_file() {
    for (refusals, want) in [
        (1, expect(&[], 0, 0, 1, 1, true)),
        (2, expect(&[("no-space", 1)], 1, 1, 1, 0, false)),
    ] {
        let c = one_write(
            true,
            WritePolicy::WriteThrough,
            Durability::Fsync,
            |b| b,
            |fs, h| {
                assert!(!h.entry_path("k").parent().unwrap().exists());
                fs.add_rule(enospc(&[FsOp::CreateDirAll], &v2_dir(h), refusals));
            },
        )
        .await;
        assert_eq!(c, want, "refused {refusals} times");
    }
}

/// The directory fsync after the rename refused: one error, one failure, no settle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_fsync_refused_is_one_error() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
    )
    .await;
    // The fan-out directory exists: the only directory fsync is the one after the rename.
    h.set("k", &"old".to_string()).await.unwrap();
    let before = h.stats();
    fs.add_rule(enospc(&[FsOp::SyncDir], &v2_dir(&h), 1));
    let set = h.set("k", &"new".to_string()).await;
    let s = h.stats();
    assert!(set.is_err(), "{set:?}");
    assert_eq!(kinds(&before, &s), map(&[("no-space", 1)]));
    assert_eq!(s.disk_errors - before.disk_errors, 1);
    assert_eq!(s.writes_failed - before.writes_failed, 1);
    assert_eq!(s.breaker_opens - before.breaker_opens, 1);
    assert_eq!(fs.settle_calls(), 0);
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// The same with the breaker kept closed: the write is reported not persisted although its
/// file was renamed into place before the refused directory fsync. The hot tier here keeps
/// nothing, so the value was lost from memory: its key's file is never served again in this
/// process (RELIABILITY.md), and a `get` is a miss, not the file in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_refused_directory_fsync_the_lost_value_is_a_miss() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.failure_threshold(100),
    )
    .await;
    h.set("k", &"old".to_string()).await.unwrap();
    let before = h.stats();
    fs.add_rule(enospc(&[FsOp::SyncDir], &v2_dir(&h), 1));
    assert!(h.set("k", &"new".to_string()).await.is_err());
    assert!(h.on_disk("k"));
    assert_eq!(h.get::<String>("k").await.unwrap(), None);
    let s = h.stats();
    assert_eq!(kinds(&before, &s), map(&[("no-space", 1)]));
    assert_eq!(s.writes_failed - before.writes_failed, 1);
    assert_eq!(fs.settle_calls(), 0);
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// Threshold 2: a failed write, a write refused once and written on its retry, a failed
/// write. Were the retried write a failure, the three would be consecutive failures and the
/// breaker would open at the second; it is a success between two failures, so it never
/// opens. (A half-open version of this test raced the cache's own disk calls for the
/// half-open slot: see R24_FINDINGS.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_between_two_failures_keeps_the_breaker_closed() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.failure_threshold(2),
    )
    .await;
    let before = h.stats();
    fs.add_rule(enospc(&[FsOp::WriteNew], &temp_of(&h, "a"), 2));
    fs.add_rule(enospc(&[FsOp::WriteNew], &temp_of(&h, "b"), 1));
    fs.add_rule(enospc(&[FsOp::WriteNew], &temp_of(&h, "c"), 2));
    assert!(h.set("a", &"one".to_string()).await.is_err());
    h.set("b", &"two".to_string()).await.unwrap();
    assert!(h.set("c", &"three".to_string()).await.is_err());
    let s = h.stats();
    assert_eq!(s.breaker_state, answercache::BreakerState::Closed);
    assert_eq!(s.breaker_opens - before.breaker_opens, 0);
    assert_eq!(kinds(&before, &s), map(&[("no-space", 2)]));
    assert_eq!(s.writes_failed - before.writes_failed, 2);
    assert_eq!(fs.settle_calls(), 3);
    assert_eq!(fs.faults_injected(), 5);
    assert_eq!(h.get::<String>("b").await.unwrap().as_deref(), Some("two"));
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// A write refused once and written on its retry whose eviction's unlink is refused: the
/// retried refusal is withdrawn, the swallowed one counted; one `no-space`, a breaker
/// failure (the eviction's), the write itself succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_and_a_refused_eviction_count_the_eviction_only() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.warm_capacity_bytes(20_000),
    )
    .await;
    let mut rng = Rng::new(5);
    let (a, b) = (rng.bytes(6000), rng.bytes(6000));
    h.set_bytes("a", &a).await.unwrap();
    let before = h.stats();
    fs.add_rule(enospc_temps(&[FsOp::WriteNew], &h, 1));
    // The eviction of "a" (not the removal of the refused temp file, in `v2/` too).
    let victim = h.entry_path("a").to_string_lossy().into_owned();
    fs.add_rule(enospc(&[FsOp::RemoveFile], &victim, 1));
    h.set_bytes("b", &b).await.unwrap();
    let s = h.stats();
    assert_eq!(kinds(&before, &s), map(&[("no-space", 1)]));
    assert_eq!(s.writes_failed - before.writes_failed, 0);
    assert_eq!(s.breaker_opens - before.breaker_opens, 1);
    assert_eq!(fs.settle_calls(), 1);
    assert!(h.on_disk("a"));
    assert!(h.on_disk("b"));
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// An eviction whose unlink is refused with ENOSPC: the error is swallowed (the write
/// succeeded), still counted once and still a device failure for the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swallowed_enospc_in_an_eviction_is_counted_and_reported() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.warm_capacity_bytes(20_000),
    )
    .await;
    let mut rng = Rng::new(5);
    let (a, b) = (rng.bytes(6000), rng.bytes(6000));
    h.set_bytes("a", &a).await.unwrap();
    assert!(h.on_disk("a"));
    let before = h.stats();
    fs.add_rule(enospc(&[FsOp::RemoveFile], &v2_dir(&h), 1));
    h.set_bytes("b", &b).await.unwrap();
    let s = h.stats();
    assert_eq!(kinds(&before, &s), map(&[("no-space", 1)]));
    assert_eq!(s.disk_errors - before.disk_errors, 1);
    assert_eq!(s.writes_failed - before.writes_failed, 0);
    assert_eq!(s.breaker_opens - before.breaker_opens, 1);
    assert_eq!(s.warm_evictions - before.warm_evictions, 0);
    assert_eq!(fs.settle_calls(), 0);
    // The victim's file is still there; the new entry is on disk.
    assert!(h.on_disk("a"));
    assert!(h.on_disk("b"));
    assert_eq!(h.temp_names(), BTreeSet::new());
}

// ---------------------------------------------------------------------------------------
// The free-space check
// ---------------------------------------------------------------------------------------

/// `min_free_bytes` refuses (the check's own error, not an fs call's), settles, refuses
/// again: one `no-space`, one failure, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_refusing_twice_is_one_error() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.min_free_bytes(1 << 20),
        |fs, _| fs.set_available_space(Some(4096)),
    )
    .await;
    assert_eq!(c, expect(&[("no-space", 1)], 1, 1, 1, 0, false));
}

/// `available_space` itself fails with ENOSPC once: settled, checked again, written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_space_call_refused_once_is_no_error() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.min_free_bytes(1),
        |fs, _| {
            fs.add_rule(
                Rule::new(Fault::Errno(28))
                    .ops(&[FsOp::AvailableSpace])
                    .times(1),
            )
        },
    )
    .await;
    assert_eq!(c, expect(&[], 0, 0, 1, 1, true));
}

/// The free-space call refused once (withdrawn by its settle), then `write_new` refused
/// twice: one `no-space` in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_space_refusal_then_write_refusals_count_one_error() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.min_free_bytes(1),
        |fs, h| {
            fs.add_rule(
                Rule::new(Fault::Errno(28))
                    .ops(&[FsOp::AvailableSpace])
                    .times(1),
            );
            fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 2));
        },
    )
    .await;
    assert_eq!(c, expect(&[("no-space", 1)], 1, 1, 2, 2, false));
}

/// The free-space call refused twice: one error, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_space_call_refused_twice_is_one_error() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.min_free_bytes(1),
        |fs, _| {
            fs.add_rule(
                Rule::new(Fault::Errno(28))
                    .ops(&[FsOp::AvailableSpace])
                    .times(2),
            )
        },
    )
    .await;
    assert_eq!(c, expect(&[("no-space", 1)], 1, 1, 1, 0, false));
}

// ---------------------------------------------------------------------------------------
// A settle that answers true, and then no retry
// ---------------------------------------------------------------------------------------

/// `write_temp` settles (`true`: the refusal is withdrawn), then cannot remove the temp
/// path before the retry and gives up with the first attempt's ENOSPC: the write failed on
/// that refusal, which was never retried, so it must still count one `no-space` (beside the
/// `io` of the failed unlink).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_not_retried_because_the_temp_file_cannot_go_is_counted() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
        |fs, h| {
            fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 1));
            fs.add_rule(
                Rule::new(Fault::Errno(5))
                    .ops(&[FsOp::RemoveFile])
                    .path_contains(tmp_dir(h))
                    .path_ends_with(".tmp")
                    .times(1),
            );
        },
    )
    .await;
    assert_eq!(c, expect(&[("io", 1), ("no-space", 1)], 1, 1, 1, 1, false));
}

/// The same with an unlink error that is not a device failure (EISDIR, a path error): the
/// write failed with ENOSPC and the breaker must hear of it; with the refusal withdrawn and
/// only a path error seen, the operation is reported as no failure at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_not_retried_is_still_a_breaker_failure() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b,
        |fs, h| {
            fs.add_rule(enospc_temps(&[FsOp::WriteNew], h, 1));
            fs.add_rule(
                Rule::new(Fault::Errno(21))
                    .ops(&[FsOp::RemoveFile])
                    .path_contains(tmp_dir(h))
                    .path_ends_with(".tmp")
                    .times(1),
            );
        },
    )
    .await;
    assert_eq!(
        c,
        expect(&[("no-space", 1), ("path", 1)], 1, 1, 1, 1, false)
    );
}

/// Y1's consequence: a disk that refuses every write while the settle answers `true`, and
/// whose temp paths cannot be unlinked (EISDIR, a path error), never reaches memory-only
/// mode: every write fails, none is a reported failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_failing_on_withdrawn_refusals_still_trip_memory_only() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| {
            b.failure_threshold(100)
                .memory_only_after(3)
                .error_window(Duration::from_secs(3600))
        },
    )
    .await;
    let before = h.stats();
    fs.add_rule(
        Rule::new(Fault::Errno(28))
            .ops(&[FsOp::WriteNew])
            .path_contains(tmp_dir(&h))
            .path_ends_with(".tmp"),
    );
    fs.add_rule(
        Rule::new(Fault::Errno(21))
            .ops(&[FsOp::RemoveFile])
            .path_contains(tmp_dir(&h))
            .path_ends_with(".tmp"),
    );
    for i in 0..3 {
        assert!(h.set(format!("k{i}"), &"v".to_string()).await.is_err());
    }
    let s = h.stats();
    println!("{:?}, mode {:?}", kinds(&before, &s), s.mode);
    assert_eq!(s.writes_failed - before.writes_failed, 3);
    assert_eq!(s.mode, Mode::MemoryOnly);
    assert_eq!(s.memory_only_entries - before.memory_only_entries, 1);
}

/// The free-space call refused (held, withdrawn by the settle), then the floor refuses on
/// the second check (the check's own error): one `no-space`, counted by the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_free_space_refusal_then_the_floor_is_one_error() {
    let c = one_write(
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.min_free_bytes(1 << 20),
        |fs, _| {
            fs.set_available_space(Some(4096));
            fs.add_rule(
                Rule::new(Fault::Errno(28))
                    .ops(&[FsOp::AvailableSpace])
                    .times(1),
            );
        },
    )
    .await;
    assert_eq!(c, expect(&[("no-space", 1)], 1, 1, 1, 0, false));
}

// ---------------------------------------------------------------------------------------
// Timeouts: the operation outlives the gate; its refusals are counted when it ends
// ---------------------------------------------------------------------------------------

/// Waits until the counters say the timed-out write finished in the background.
async fn finished(h: &TestCache, before: &Stats, disk_errors: u64, writes_failed: u64) -> Stats {
    let done = wait_until(WAIT, || {
        let s = h.stats();
        s.disk_errors - before.disk_errors >= disk_errors
            && s.writes_failed - before.writes_failed >= writes_failed
    })
    .await;
    let s = h.stats();
    assert!(done, "{:?}", kinds(before, &s));
    s
}

/// Refused, settled, the unlink before the retry hangs past `io_timeout` (the breaker
/// hears a timeout), released: the retry is refused too. Counted once the write ends: one
/// `timeout`, one `no-space`, one failed write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_write_refused_on_its_retry_counts_one_no_space() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| {
            b.io_timeout(Duration::from_millis(300))
                .failure_threshold(100)
        },
    )
    .await;
    let before = h.stats();
    let writes = fs.calls(FsOp::WriteNew);
    fs.add_rule(enospc_temps(&[FsOp::WriteNew], &h, 2));
    fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::RemoveFile])
            .path_contains(tmp_dir(&h))
            .path_ends_with(".tmp")
            .times(1),
    );
    let set = h.set("k", &"v".to_string()).await;
    assert!(set.is_err(), "{set:?}");
    let mid = h.stats();
    assert_eq!(kinds(&before, &mid), map(&[("timeout", 1)]));
    fs.release_hangs();
    let s = finished(&h, &before, 2, 1).await;
    assert_eq!(kinds(&before, &s), map(&[("no-space", 1), ("timeout", 1)]));
    assert_eq!(s.writes_failed - before.writes_failed, 1);
    assert_eq!(fs.settle_calls(), 1);
    assert_eq!(fs.calls(FsOp::WriteNew) - writes, 2);
    assert_eq!(h.get::<String>("k").await.unwrap(), None);
    assert_eq!(h.temp_names(), BTreeSet::new());
    // Nothing more arrives: the observer counted on its drop, once.
    h.flush().await.ok();
    assert_eq!(h.stats().disk_errors - before.disk_errors, 2);
}

/// The same with a slow unlink (`Delay`) instead of a hang, and the retry written: only the
/// timeout counts, the value lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_write_written_on_its_retry_counts_only_the_timeout() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| {
            b.io_timeout(Duration::from_millis(300))
                .failure_threshold(100)
        },
    )
    .await;
    let before = h.stats();
    fs.add_rule(enospc_temps(&[FsOp::WriteNew], &h, 1));
    fs.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(1500)))
            .ops(&[FsOp::RemoveFile])
            .path_contains(tmp_dir(&h))
            .path_ends_with(".tmp")
            .times(1),
    );
    let set = h.set("k", &"v".to_string()).await;
    assert!(set.is_err(), "{set:?}");
    let landed = wait_until(WAIT, || h.on_disk("k")).await;
    assert!(landed);
    // The job completes (and the index learns the entry) after the rename.
    let deadline = std::time::Instant::now() + WAIT;
    let mut got = None;
    while got.is_none() && std::time::Instant::now() < deadline {
        got = h.get::<String>("k").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got.as_deref(), Some("v"));
    let s = h.stats();
    assert_eq!(kinds(&before, &s), map(&[("timeout", 1)]));
    assert_eq!(s.writes_failed - before.writes_failed, 0);
    assert_eq!(fs.settle_calls(), 1);
    assert_eq!(h.temp_names(), BTreeSet::new());
}

/// No settle; the temp-file cleanup after the refusal hangs past the timeout: released, the
/// refusal is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_refusal_without_a_settle_counts_once() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        false,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| {
            b.io_timeout(Duration::from_millis(300))
                .failure_threshold(100)
        },
    )
    .await;
    let before = h.stats();
    fs.add_rule(enospc_temps(&[FsOp::WriteNew], &h, 1));
    fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::RemoveFile])
            .path_contains(tmp_dir(&h))
            .path_ends_with(".tmp")
            .times(1),
    );
    assert!(h.set("k", &"v".to_string()).await.is_err());
    assert_eq!(kinds(&before, &h.stats()), map(&[("timeout", 1)]));
    fs.release_hangs();
    let s = finished(&h, &before, 2, 1).await;
    assert_eq!(kinds(&before, &s), map(&[("no-space", 1), ("timeout", 1)]));
    assert_eq!(s.writes_failed - before.writes_failed, 1);
    assert_eq!(fs.settle_calls(), 1);
    h.flush().await.ok();
    assert_eq!(h.stats().disk_errors - before.disk_errors, 2);
}

// ---------------------------------------------------------------------------------------
// Concurrent writes, one in n refused
// ---------------------------------------------------------------------------------------

/// 64 concurrent writes through one cache, `write_new` refused one call in three, settle
/// true: every write whose first attempt was refused settled once and tried again; exactly
/// the writes whose retry was refused too failed, and each counted one `no-space`.
async fn concurrent_one_in_three(policy: WritePolicy, seed: u64) {
    const N: usize = 64;
    let fs = Arc::new(FaultFs::std());
    let h = Arc::new(
        cache_on(&fs, true, policy, Durability::NoSync, |b| {
            b.failure_threshold(u32::MAX).write_concurrency(8)
        })
        .await,
    );
    let before = h.stats();
    let writes = fs.calls(FsOp::WriteNew);
    fs.add_rule(
        Rule::new(Fault::Errno(28))
            .ops(&[FsOp::WriteNew])
            .path_contains(tmp_dir(&h))
            .path_ends_with(".tmp")
            .one_in(3, seed),
    );
    let mut tasks = Vec::new();
    for i in 0..N {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.set(format!("k{i}"), &format!("value {i}")).await.is_ok()
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        ok.push(t.await.unwrap());
    }
    let _ = h.flush().await;
    let s = h.stats();
    let faults = fs.faults_injected();
    let settles = fs.settle_calls();
    let calls = fs.calls(FsOp::WriteNew) - writes;
    let failed = s.writes_failed - before.writes_failed;
    fs.clear_rules();
    println!("{policy:?} seed {seed}: faults {faults}, settles {settles}, failed {failed}");
    // Each write: one call, plus one after a settle when the first was refused.
    assert_eq!(calls, N as u64 + settles);
    // Refused calls: every first attempt that settled, and every failed retry.
    assert_eq!(faults, settles + failed);
    let no_space = if failed == 0 {
        vec![]
    } else {
        vec![("no-space", failed)]
    };
    assert_eq!(kinds(&before, &s), map(&no_space));
    assert_eq!(s.disk_errors - before.disk_errors, failed);
    let mut stored = 0;
    for (i, ok) in ok.iter().enumerate() {
        let got = h.get::<String>(format!("k{i}")).await.unwrap();
        if got.is_some() {
            assert_eq!(got, Some(format!("value {i}")));
            stored += 1;
        }
        if policy == WritePolicy::WriteThrough {
            assert_eq!(*ok, got.is_some(), "k{i}");
        }
    }
    assert_eq!(stored, N as u64 - failed);
    assert_eq!(h.temp_names(), BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refused_writes_count_exactly_the_writes_that_failed_write_through() {
    for seed in [1, 2, 3] {
        concurrent_one_in_three(WritePolicy::WriteThrough, seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refused_writes_count_exactly_the_writes_that_failed_write_behind() {
    for seed in [4, 5, 6] {
        concurrent_one_in_three(WritePolicy::WriteBehind, seed).await;
    }
}

// ---------------------------------------------------------------------------------------
// Memory-only mode
// ---------------------------------------------------------------------------------------

/// A disk that refuses every write while the settle keeps answering `true`: each write is
/// still one error and one reported failure, so `memory_only_after(3)` trips on the third;
/// while it stays full each recovery probe (which does not settle) counts one more; once
/// the disk has room again the probe brings the cache back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truly_full_disk_still_trips_memory_only_with_settle_true() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| {
            b.failure_threshold(100)
                .memory_only_after(3)
                .error_window(Duration::from_secs(3600))
                .recovery_interval(Duration::from_millis(20))
                .health_interval(Duration::from_secs(3600))
        },
    )
    .await;
    let before = h.stats();
    let writes = fs.calls(FsOp::WriteNew);
    fs.add_rule(Rule::new(Fault::Errno(28)).ops(&[FsOp::WriteNew]));
    for i in 0..3 {
        assert_eq!(h.stats().mode, Mode::Tiered, "write {i}");
        assert!(h.set(format!("k{i}"), &"v".to_string()).await.is_err());
    }
    let s = h.stats();
    assert_eq!(s.mode, Mode::MemoryOnly);
    assert_eq!(s.memory_only_entries - before.memory_only_entries, 1);
    assert_eq!(s.writes_failed - before.writes_failed, 3);
    assert_eq!(fs.settle_calls(), 3);
    assert_eq!(fs.calls(FsOp::WriteNew) - writes, 6);
    // A few probes fail on the full disk.
    assert!(wait_until(WAIT, || h.stats().probes_run - before.probes_run >= 3).await);
    fs.clear_rules();
    assert!(wait_until(WAIT, || h.stats().mode == Mode::Tiered).await);
    let s = h.stats();
    let failed_probes = s.probes_run - before.probes_run - (s.probes_ok - before.probes_ok);
    assert_eq!(s.probes_ok - before.probes_ok, 1);
    assert_eq!(kinds(&before, &s), map(&[("no-space", 3 + failed_probes)]));
    // The probes never settle.
    assert_eq!(fs.settle_calls(), 3);
    h.set("after", &"back".to_string()).await.unwrap();
    assert_eq!(
        h.get::<String>("after").await.unwrap().as_deref(),
        Some("back")
    );
}

/// A healthy disk whose every first attempt is refused and every retry written: no error,
/// no failure, never memory-only (threshold 1, memory-only after 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_always_written_on_their_retry_never_trip_anything() {
    let fs = Arc::new(FaultFs::std());
    let h = cache_on(
        &fs,
        true,
        WritePolicy::WriteThrough,
        Durability::Fsync,
        |b| b.memory_only_after(3),
    )
    .await;
    let before = h.stats();
    for i in 0..20 {
        fs.add_rule(enospc_temps(&[FsOp::WriteNew], &h, 1));
        h.set(format!("k{i}"), &format!("v{i}")).await.unwrap();
    }
    let s = h.stats();
    assert_eq!(s.disk_errors - before.disk_errors, 0);
    assert_eq!(s.breaker_opens - before.breaker_opens, 0);
    assert_eq!(s.mode, Mode::Tiered);
    assert_eq!(fs.settle_calls(), 20);
    for i in 0..20 {
        assert_eq!(
            h.get::<String>(format!("k{i}")).await.unwrap(),
            Some(format!("v{i}"))
        );
    }
}

// ---------------------------------------------------------------------------------------
// FaultFs's new API
// ---------------------------------------------------------------------------------------

/// Defaults: settle answers false, counted; set true it answers true; the inner fs is not
/// asked (a counting inner fs sees no settle).
#[test]
fn fault_fs_settle_answer_defaults_to_false_and_does_not_ask_the_inner_fs() {
    #[derive(Debug)]
    struct Counting(std::sync::atomic::AtomicU64);
    impl answercache::Fs for Counting {
        fn read_file(&self, _: &Path, _: u64) -> std::io::Result<answercache::fs::FileRead> {
            unimplemented!()
        }
        fn read_prefix(&self, _: &Path, _: usize) -> std::io::Result<answercache::fs::FileRead> {
            unimplemented!()
        }
        fn write_new(&self, _: &Path, _: &[u8], _: bool) -> std::io::Result<()> {
            unimplemented!()
        }
        fn rename(&self, _: &Path, _: &Path) -> std::io::Result<()> {
            unimplemented!()
        }
        fn rename_noreplace(&self, _: &Path, _: &Path) -> std::io::Result<()> {
            unimplemented!()
        }
        fn remove_file(&self, _: &Path) -> std::io::Result<()> {
            unimplemented!()
        }
        fn remove_dir_all(&self, _: &Path) -> std::io::Result<()> {
            unimplemented!()
        }
        fn create_dir_all(&self, _: &Path) -> std::io::Result<()> {
            unimplemented!()
        }
        fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
            unimplemented!()
        }
        fn read_dir(&self, _: &Path) -> std::io::Result<Vec<answercache::fs::DirEntryInfo>> {
            unimplemented!()
        }
        fn available_space(&self, _: &Path) -> std::io::Result<u64> {
            unimplemented!()
        }
        fn settle_deferred_closes(&self, _: Duration) -> bool {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            true
        }
    }
    use answercache::Fs as _;
    let inner = Arc::new(Counting(std::sync::atomic::AtomicU64::new(0)));
    let fs = FaultFs::new(inner.clone());
    assert!(!fs.settle_deferred_closes(Duration::ZERO));
    assert_eq!(fs.settle_calls(), 1);
    fs.set_settle_answer(true);
    assert!(fs.settle_deferred_closes(Duration::ZERO));
    assert!(fs.settle_deferred_closes(Duration::ZERO));
    assert_eq!(fs.settle_calls(), 3);
    fs.set_settle_answer(false);
    assert!(!fs.settle_deferred_closes(Duration::ZERO));
    assert_eq!(fs.settle_calls(), 4);
    assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Not a fault, not a call of any op.
    assert_eq!(fs.faults_injected(), 0);
    assert_eq!(fs.total_calls(), 0);
}

// ---------------------------------------------------------------------------------------
// A real full ext4, page-cache reads on, concurrent hits and writes
// ---------------------------------------------------------------------------------------

use crate::settle::{fill_to, free_bytes, is_child, run_child};

/// A 16 MiB ext4 filled to half an entry file; `a` and `b` stored before. Four writers set
/// new keys that cannot fit (write-through, fsync) while two readers hit `a` and `b`
/// inline (descriptors handed to the closer all along, so settles find something to close
/// and writes retry): every set fails, each failed write is exactly one `no-space` and
/// nothing else, no temp file is left, every hit is exact.
#[test]
fn concurrent_hits_and_refused_writes_on_a_full_ext4_count_one_error_each() {
    if !is_child("concurrent_full") {
        return run_child(
            "settle_r24::concurrent_hits_and_refused_writes_on_a_full_ext4_count_one_error_each",
            "concurrent_full",
        );
    }
    concurrent_full(WritePolicy::WriteThrough, Durability::Fsync);
}

/// The same, write-behind without fsync: every set succeeds, every write fails in the
/// background, one `no-space` each.
#[test]
fn concurrent_hits_and_refused_write_behind_on_a_full_ext4_count_one_error_each() {
    if !is_child("concurrent_full_wb") {
        return run_child(
            "settle_r24::concurrent_hits_and_refused_write_behind_on_a_full_ext4_count_one_error_each",
            "concurrent_full_wb",
        );
    }
    concurrent_full(WritePolicy::WriteBehind, Durability::NoSync);
}

fn concurrent_full(policy: WritePolicy, durability: Durability) {
    const LEN: usize = 40 * 1024;
    const WRITERS: u64 = 4;
    const ROUNDS: u64 = 100;
    let (mnt, root) = crate::closer::child_ext4("cache");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::TempDir::new_in(&root).unwrap();
        let h = Arc::new(
            crate::support::dir_in(tmp)
                .open_cache(|b| {
                    b.hot_capacity_bytes(1)
                        .page_cache_reads(true)
                        .write_policy(policy)
                        .durability(durability)
                        .min_free_bytes(0)
                        .write_concurrency(4)
                        .failure_threshold(u32::MAX)
                        .memory_only_after(100_000)
                })
                .await,
        );
        let mut rng = Rng::new(9);
        let (a, b) = (rng.bytes(LEN), rng.bytes(LEN));
        h.set_bytes("a", &a).await.unwrap();
        h.set_bytes("b", &b).await.unwrap();
        h.flush().await.unwrap();
        let file_bytes = std::fs::metadata(h.entry_path("a")).unwrap().len();
        fill_to(&mnt, file_bytes / 2);
        let before = h.stats();
        let (a, b) = (Arc::new(a), Arc::new(b));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(100 + w);
                let mut refused = 0u64;
                for i in 0..ROUNDS {
                    let v = rng.bytes(LEN);
                    if h.set_bytes(format!("w{w}-{i}"), &v).await.is_err() {
                        refused += 1;
                    }
                }
                refused
            }));
        }
        let mut readers = Vec::new();
        for r in 0..2u64 {
            let (h, a, b) = (h.clone(), a.clone(), b.clone());
            readers.push(tokio::spawn(async move {
                let mut exact = 0u64;
                for _ in 0..ROUNDS * 2 {
                    let (key, want) = if r == 0 { ("a", &a) } else { ("b", &b) };
                    if h.get_bytes(key).await.unwrap().as_deref() == Some(&want[..]) {
                        exact += 1;
                    }
                }
                exact
            }));
        }
        let mut refused = 0;
        for t in tasks {
            refused += t.await.unwrap();
        }
        let mut exact = 0;
        for t in readers {
            exact += t.await.unwrap();
        }
        // Every value was lost from a hot tier that keeps nothing: all of them not persisted.
        let flushed = h.flush().await;
        match flushed {
            Err(answercache::Error::NotPersisted { failed, .. }) => {
                assert_eq!(failed, WRITERS * ROUNDS)
            }
            other => panic!("flush: {other:?}"),
        }
        let s = h.stats();
        println!(
            "refused {refused}, exact {exact}, writes_failed {}, {:?}, inline {}",
            s.writes_failed - before.writes_failed,
            kinds(&before, &s),
            s.inline_reads - before.inline_reads
        );
        let want_refused = match policy {
            WritePolicy::WriteThrough => WRITERS * ROUNDS,
            WritePolicy::WriteBehind => 0,
        };
        assert_eq!(refused, want_refused);
        assert_eq!(exact, 4 * ROUNDS);
        assert_eq!(s.writes_failed - before.writes_failed, WRITERS * ROUNDS);
        assert_eq!(kinds(&before, &s), map(&[("no-space", WRITERS * ROUNDS)]));
        assert_eq!(h.temp_names(), BTreeSet::new());
        assert_eq!(h.entry_names().len(), 2);
    });
}

/// `min_free_bytes` 2 MiB, the disk filled to the floor plus three entry files; two writers
/// each overwrite their own key after an inline hit of it (the replaced file is freed only
/// when the closer closes the hit's descriptor; the `check_space` refusal settles and
/// retries), 100 rounds each. A write may be refused (the other writer's reservation); each
/// refused write counts exactly one `no-space` and nothing else; the free space is never
/// below the floor; at the end each key reads as its last value if that set succeeded, and
/// as a miss if it failed (lost from a hot tier that keeps nothing); no temp file.
#[test]
fn concurrent_overwrites_at_the_floor_count_one_error_per_refused_write() {
    if !is_child("floor_concurrent") {
        return run_child(
            "settle_r24::concurrent_overwrites_at_the_floor_count_one_error_per_refused_write",
            "floor_concurrent",
        );
    }
    const FLOOR: u64 = 2 << 20;
    const LEN: usize = 40 * 1024;
    const ROUNDS: u64 = 100;
    let (mnt, root) = crate::closer::child_ext4("cache");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::TempDir::new_in(&root).unwrap();
        let h = Arc::new(
            crate::support::dir_in(tmp)
                .open_cache(|b| {
                    b.hot_capacity_bytes(1)
                        .page_cache_reads(true)
                        .write_policy(WritePolicy::WriteThrough)
                        .durability(Durability::NoSync)
                        .min_free_bytes(FLOOR)
                        .write_concurrency(2)
                        .failure_threshold(u32::MAX)
                        .memory_only_after(100_000)
                })
                .await,
        );
        let mut rng = Rng::new(21);
        let first: Vec<Vec<u8>> = (0..2).map(|_| rng.bytes(LEN)).collect();
        for (w, v) in first.iter().enumerate() {
            h.set_bytes(format!("k{w}"), v).await.unwrap();
        }
        h.flush().await.unwrap();
        let file_bytes = std::fs::metadata(h.entry_path("k0")).unwrap().len();
        fill_to(&mnt, FLOOR + 3 * file_bytes);
        let before = h.stats();
        let mut tasks = Vec::new();
        for (w, v) in first.into_iter().enumerate() {
            let (h, mnt) = (h.clone(), mnt.clone());
            tasks.push(tokio::spawn(async move {
                let key = format!("k{w}");
                let mut rng = Rng::new(300 + w as u64);
                // What a get must answer now: the last value set, or a miss after a failure.
                let mut current = Some(v);
                let (mut refused, mut lowest) = (0u64, u64::MAX);
                for i in 0..ROUNDS {
                    let got = h.get_bytes(&key).await.unwrap();
                    assert_eq!(got.as_deref(), current.as_deref(), "{key} round {i}");
                    let next = rng.bytes(LEN);
                    match h.set_bytes(&key, &next).await {
                        Ok(()) => current = Some(next),
                        Err(_) => {
                            refused += 1;
                            current = None;
                        }
                    }
                    lowest = lowest.min(free_bytes(&mnt));
                }
                let got = h.get_bytes(&key).await.unwrap();
                assert_eq!(got.as_deref(), current.as_deref(), "{key} at the end");
                (refused, lowest)
            }));
        }
        let (mut refused, mut lowest) = (0, u64::MAX);
        for t in tasks {
            let (r, l) = t.await.unwrap();
            refused += r;
            lowest = lowest.min(l);
        }
        let s = h.stats();
        println!(
            "refused {refused}, lowest free {lowest} (floor {FLOOR}), writes_failed {}, {:?}, \
             inline {}",
            s.writes_failed - before.writes_failed,
            kinds(&before, &s),
            s.inline_reads - before.inline_reads
        );
        assert!(lowest >= FLOOR, "free {lowest} below the floor {FLOOR}");
        assert_eq!(s.writes_failed - before.writes_failed, refused);
        let want = if refused == 0 {
            map(&[])
        } else {
            map(&[("no-space", refused)])
        };
        assert_eq!(kinds(&before, &s), want);
        assert_eq!(h.temp_names(), BTreeSet::new());
    });
}
