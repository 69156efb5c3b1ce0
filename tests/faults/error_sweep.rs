//! SQLite's error-point sweep: for each operation (a `set` of a new key in a new fan-out
//! directory, a `set` over an existing entry, `get`, `remove`, `open`, the recovery probe with
//! its write-back) and each error kind (ENOSPC, EIO, EROFS, EACCES on any call; EFBIG on the
//! writes, the only calls that can meet it; a short write; an fsync error, of a file or a
//! directory; a rename error), fail the Nth fs
//! call for N = 1, 2, ... until the operation completes without reaching it, once as "fail
//! once" and once as "fail forever" (until the disk heals, after the operation).
//!
//! After each variant: the operation returned normally (a failing disk is not the caller's
//! error); "fail once" counted exactly one disk error and left no temp file behind; once the
//! disk heals, timers alone (health check, recovery probe) bring the cache back to Tiered with
//! a closed breaker and nothing dirty, `flush` succeeds, no temp file is left while the process
//! runs on, `verify` is clean, no file descriptor leaked, and a reopened cache holds exactly
//! the state the operations asked for (0 lost, 0 wrong). EFBIG is a per-entry outcome: an
//! entry that hit it may be absent after a restart, but never replaced by an older value.
//!
//! Runs in a child process of its own, so that the fd count sees no other test's files, on
//! tokio's paused clock, so that the health and probe timers fire exactly when advanced.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FaultFs, FsOp, Rule};
use answercache::{BreakerState, Mode};

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    SetNew,
    SetOverwrite,
    Get,
    Remove,
    Open,
    Probe,
}

const OPS: [Op; 6] = [
    Op::SetNew,
    Op::SetOverwrite,
    Op::Get,
    Op::Remove,
    Op::Open,
    Op::Probe,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Errno(&'static str, i32),
    ShortWrite,
    FsyncError,
    RenameError,
}

const KINDS: [Kind; 8] = [
    Kind::Errno("enospc", ENOSPC),
    Kind::Errno("eio", EIO),
    Kind::Errno("erofs", EROFS),
    Kind::Errno("eacces", EACCES),
    Kind::Errno("efbig", EFBIG),
    Kind::ShortWrite,
    Kind::FsyncError,
    Kind::RenameError,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    Once,
    Forever,
}

fn rule(kind: Kind, persist: Persist, n: u64) -> Rule {
    let r = match kind {
        // EFBIG comes from writing past a size limit: only a write can meet it.
        Kind::Errno(_, EFBIG) => Rule::new(Fault::Errno(EFBIG)).ops(&[FsOp::WriteNew]),
        Kind::Errno(_, e) => Rule::new(Fault::Errno(e)),
        Kind::ShortWrite => Rule::new(Fault::ShortWrite(ENOSPC)).ops(&[FsOp::WriteNew]),
        Kind::FsyncError => Rule::new(Fault::Errno(EIO)).ops(&[FsOp::SyncFile, FsOp::SyncDir]),
        Kind::RenameError => Rule::new(Fault::Errno(EIO)).ops(&[FsOp::Rename]),
    };
    let r = r.skip(n - 1);
    match persist {
        Persist::Once => r.times(1),
        Persist::Forever => r,
    }
}

/// Health-check and recovery-probe interval: advanced by hand.
const HEAL: Duration = Duration::from_secs(60);
const OLD_KEYS: u64 = 4;
/// The key `SetNew` writes; its fan-out directories do not exist in the template.
const FRESH: &str = "fresh";

fn old(i: u64) -> String {
    format!("old{i}")
}

#[derive(Debug, Default)]
struct Tally {
    variants: u64,
    faults: u64,
    wrong: u64,
    lost: u64,
    once_error_count_off: u64,
    temps_after_op_once: u64,
    temps_while_running: u64,
    temps_after_reopen: u64,
    not_recovered: u64,
    flush_failed: u64,
    unclean: u64,
    leaked_fds: u64,
    failures: Vec<String>,
}

#[test]
fn fail_every_call_of_every_operation() {
    if role().as_deref() == Some("error-sweep") {
        return child();
    }
    run_child(child_command(
        &test_name(module_path!(), "fail_every_call_of_every_operation"),
        "error-sweep",
        Wrap::Plain,
    ));
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A directory with `old0..old3` on disk and an orphan temp file of a dead process.
async fn template(root: &Path) {
    let cache = builder(root).build().await.unwrap();
    for i in 0..OLD_KEYS {
        cache
            .set_bytes(old(i), value(&old(i), 0, 100 + i, 1500))
            .await
            .unwrap();
    }
    cache.close().await.unwrap();
    // pid 4,000,000,000 is above any pid_max: its temp file is an orphan.
    std::fs::write(
        root.join("tmp/0123456789abcdef.4000000000.1.0.tmp"),
        b"half a write",
    )
    .unwrap();
    let hex = blake3::hash(FRESH.as_bytes()).to_hex();
    assert!(
        !root.join("v2").join(&hex[..2]).exists(),
        "{FRESH} must need a new fan-out directory"
    );
}

fn builder_for(root: &Path, fs: Arc<FaultFs>, op: Op) -> answercache::Builder {
    let b = builder(root)
        .fs(fs)
        .io_timeout(Duration::from_secs(30))
        .health_interval(HEAL)
        .recovery_interval(HEAL)
        .open_timeout(Duration::from_secs(10));
    if op == Op::Probe {
        b.failure_threshold(1).memory_only_after(1)
    } else {
        b.memory_only_after(1000)
    }
}

/// The value `key` should hold after the operation: `None` absent.
type Expect = BTreeMap<String, Option<u64>>;

/// One variant. `None` when the operation completed without reaching the Nth call.
async fn variant(
    op: Op,
    kind: Kind,
    persist: Persist,
    n: u64,
    template_dir: &Path,
    fd_baseline: Option<usize>,
    t: &mut Tally,
) -> bool {
    let name = format!("{op:?}/{kind:?}/{persist:?}/N={n}");
    let fail = |t: &mut Tally, what: String| t.failures.push(format!("{name}: {what}"));
    let dir = scratch_dir();
    let root = dir.path().join("root");
    copy_dir(template_dir, &root).unwrap();
    let fs = Arc::new(FaultFs::std());
    let mut expect: Expect = (0..OLD_KEYS).map(|i| (old(i), Some(100 + i))).collect();
    if op == Op::Open {
        fs.add_rule(rule(kind, persist, n));
    }
    let cache = builder_for(&root, fs.clone(), op).build().await.unwrap();
    wait_for(|| cache.stats().warm_index_complete).await;
    if op == Op::Probe {
        // Memory-only, with two dirty entries for the probe to write back.
        fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::WriteNew]).times(1));
        persisted(
            cache
                .set_bytes("dirty0", value("dirty0", 0, 200, 900))
                .await,
        );
        assert_eq!(cache.mode(), Mode::MemoryOnly);
        persisted(
            cache
                .set_bytes("dirty1", value("dirty1", 0, 201, 900))
                .await,
        );
        fs.clear_rules();
        expect.insert("dirty0".into(), Some(200));
        expect.insert("dirty1".into(), Some(201));
    }
    // Open's fault was injected while opening.
    let (faults_before, errors_before) = match op {
        Op::Open => (0, 0),
        _ => (fs.faults_injected(), cache.stats().disk_errors),
    };
    if op != Op::Open {
        fs.add_rule(rule(kind, persist, n));
    }
    let mut wrong = 0;
    match op {
        Op::SetNew => {
            persisted(cache.set_bytes(FRESH, value(FRESH, 0, 500, 3000)).await);
            expect.insert(FRESH.into(), Some(500));
        }
        Op::SetOverwrite => {
            persisted(cache.set_bytes(old(0), value(&old(0), 0, 500, 3000)).await);
            expect.insert(old(0), Some(500));
        }
        Op::Get => {
            if let Some(v) = cache.get_bytes(old(1)).await.unwrap() {
                wrong += u64::from(check_value(&old(1), &v) != Ok((0, 101)));
            }
        }
        Op::Remove => {
            persisted(cache.remove(old(2)).await);
            expect.insert(old(2), None);
        }
        Op::Open => {}
        Op::Probe => {
            tokio::time::advance(HEAL).await;
            wait_for(|| cache.stats().probes_run == 1).await;
            settle().await;
        }
    }
    settle().await;
    let injected = fs.faults_injected() - faults_before;
    if injected == 0 {
        fs.clear_rules();
        cache.close().await.unwrap();
        return false;
    }
    t.variants += 1;
    t.faults += injected;

    // Right after the operation, the fault possibly still there.
    let s = cache.stats();
    if persist == Persist::Once && s.disk_errors - errors_before != 1 {
        t.once_error_count_off += 1;
        fail(
            t,
            format!(
                "{} disk errors counted for one fault",
                s.disk_errors - errors_before
            ),
        );
    }
    // (Open finds an orphan to sweep; the probe's own file can only go once the disk heals,
    // when its removal is the call that failed.)
    if persist == Persist::Once && !matches!(op, Op::Open | Op::Probe) && temp_files(&root) != 0 {
        t.temps_after_op_once += 1;
        fail(
            t,
            format!(
                "temp files after the op: {:?}",
                answercache::testing::temp_files(&root)
            ),
        );
    }
    let in_memory: Vec<(&str, Option<u64>)> = match op {
        Op::SetNew => vec![(FRESH, Some(500))],
        Op::SetOverwrite => vec![("old0", Some(500))],
        Op::Remove => vec![("old2", None)],
        Op::Probe => vec![("dirty0", Some(200)), ("dirty1", Some(201))],
        Op::Get | Op::Open => vec![],
    };
    for (k, want) in &in_memory {
        let got = cache.get_bytes(k).await.unwrap();
        let got = got.map(|v| check_value(k, &v).map(|(_, s)| s));
        if got != want.map(Ok) {
            wrong += 1;
            fail(t, format!("{k} read {got:?} in memory, set {want:?}"));
        }
    }

    // The disk heals; timers alone (at least one health check or probe) must bring
    // everything back.
    fs.clear_rules();
    for _ in 0..6 {
        tokio::time::advance(HEAL + Duration::from_secs(1)).await;
        settle().await;
        let s = cache.stats();
        if s.mode == Mode::Tiered && s.breaker_state == BreakerState::Closed && s.dirty_entries == 0
        {
            break;
        }
    }
    let s = cache.stats();
    if !(s.mode == Mode::Tiered && s.breaker_state == BreakerState::Closed && s.dirty_entries == 0)
    {
        t.not_recovered += 1;
        fail(
            t,
            format!(
                "not recovered: {:?} {:?} dirty {}",
                s.mode, s.breaker_state, s.dirty_entries
            ),
        );
    }
    if let Err(e) = cache.flush().await {
        t.flush_failed += 1;
        fail(t, format!("flush after healing: {e}"));
    }
    if op != Op::Open && temp_files(&root) != 0 {
        t.temps_while_running += 1;
        fail(
            t,
            format!(
                "temp files left while running: {:?}",
                answercache::testing::temp_files(&root)
            ),
        );
    }
    let _ = cache.close().await;
    drop(cache);
    settle().await;
    if let Some(base) = fd_baseline {
        let now = open_fds();
        if now != base {
            t.leaked_fds += now.abs_diff(base) as u64;
            fail(t, format!("{now} fds open, {base} before"));
        }
    }
    let report = verify_report(&root);
    if !report.is_clean() {
        t.unclean += 1;
        fail(t, format!("verify: {report:?}"));
    }

    // What the next process finds.
    let reopened = answercache::testing::builder(&root).build().await.unwrap();
    // `tmp/` is swept before `build` returns, the fan-out directories by the startup scan.
    let scanned = wait_until(Duration::from_secs(30), || {
        reopened.stats().warm_index_complete
    })
    .await;
    let temps = temp_files(&root) as u64;
    if !scanned || temps != 0 {
        t.temps_after_reopen += temps.max(1);
        fail(
            t,
            format!(
                "temp files after reopen (scan complete: {scanned}): {:?}",
                answercache::testing::temp_files(&root)
            ),
        );
    }
    let per_entry = kind == Kind::Errno("efbig", EFBIG);
    for (k, want) in &expect {
        let got = reopened.get_bytes(k).await.unwrap();
        let got = got.map(|v| check_value(k, &v).map(|(_, s)| s));
        // Written (or deleted) by the operation itself.
        let changed = matches!(
            (op, k.as_str()),
            (Op::SetNew, FRESH)
                | (Op::SetOverwrite, "old0")
                | (Op::Remove, "old2")
                | (Op::Probe, "dirty0" | "dirty1")
        );
        match got {
            Some(Ok(s)) if Some(s) == *want => {}
            None if want.is_none() => {}
            // EFBIG: the entry lives in memory only; absent after a restart is fine.
            None if per_entry && changed => {}
            None => {
                t.lost += 1;
                fail(t, format!("{k} lost after reopen, expected {want:?}"));
            }
            other => {
                wrong += 1;
                fail(
                    t,
                    format!("{k} is {other:?} after reopen, expected {want:?}"),
                );
            }
        }
    }
    reopened.close().await.unwrap();
    t.wrong += wrong;
    true
}

fn child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let dir = scratch_dir();
    let template_dir = dir.path().join("template");
    rt.block_on(template(&template_dir));
    let mut t = Tally::default();
    // Warm up (lazily opened fds, thread pools), then take the fd baseline.
    rt.block_on(variant(
        Op::SetNew,
        Kind::ShortWrite,
        Persist::Once,
        1,
        &template_dir,
        None,
        &mut Tally::default(),
    ));
    let baseline = open_fds();
    let mut per_op: BTreeMap<String, u64> = BTreeMap::new();
    for op in OPS {
        for kind in KINDS {
            for persist in [Persist::Once, Persist::Forever] {
                for n in 1.. {
                    let before = t.variants;
                    let hit = rt.block_on(variant(
                        op,
                        kind,
                        persist,
                        n,
                        &template_dir,
                        Some(baseline),
                        &mut t,
                    ));
                    *per_op.entry(format!("{op:?}")).or_default() += t.variants - before;
                    if !hit {
                        break;
                    }
                }
            }
        }
    }
    // One line per kind of failure (the operation, the error kind and what went wrong), with
    // its count and first occurrence.
    let mut groups: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for f in &t.failures {
        eprintln!("error-sweep: {f}");
        let (variant, what) = f.split_once(": ").unwrap_or((f, ""));
        let mut parts = variant.split('/');
        let (op, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let what: String = what
            .chars()
            .take_while(|c| !matches!(c, ':' | '{' | '['))
            .collect();
        let g = groups
            .entry(format!("{op}/{kind}: {what}"))
            .or_insert((0, f.clone()));
        g.0 += 1;
    }
    let summary: Vec<String> = groups
        .iter()
        .map(|(k, (n, first))| format!("{n} x {k} (first: {first})"))
        .collect();
    let per_op: Vec<String> = per_op.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    reliability(
        "error-sweep",
        &[
            ("ops", &OPS.len()),
            ("kinds", &KINDS.len()),
            ("modes", &2),
            ("variants", &t.variants),
            ("variants_by_op", &per_op.join(",")),
            ("faults_injected", &t.faults),
            ("wrong_values", &t.wrong),
            ("lost_entries", &t.lost),
            ("leaked_fds", &t.leaked_fds),
            ("temp_files_left_while_running", &t.temps_while_running),
            ("temp_files_after_reopen", &t.temps_after_reopen),
            ("unclean_verify", &t.unclean),
            ("not_recovered", &t.not_recovered),
        ],
    );
    assert!(
        t.failures.is_empty(),
        "{} failed checks:\n{}",
        t.failures.len(),
        summary.join("\n")
    );
}
