//! Random libc faults from a tool nobody here wrote: libfiu (Debian `fiu-utils`).
//!
//! A child process (this test binary re-executed) runs under `fiu-run -x`, libfiu's POSIX
//! preload library, which wraps libc calls and makes each one fail with the errno it is told
//! (EIO or ENOSPC, in turn: the device failures of DESIGN.md) with the probability it is told.
//! The parent enables `enable_random name=posix/io/*,probability=P,failinfo=ERRNO` with
//! `fiu-ctrl` once the child is ready (so
//! that the Rust runtime's start-up and libtest's own output are left alone), seeded
//! (`FIU_PRNG_SEED`), and disables it at the end. The child opens a cache on a fresh directory
//! (write-through or write-behind, with fsync or, in the `-nosync` runs, without: the
//! exchange path; a 64 KiB hot tier so that values are evicted before they are written, a
//! small write queue in half the runs so that writers wait for room, 50-200 ms
//! breaker, recovery, health and sweep timers) and runs 4 concurrent tasks over 200 keys (20
//! shared by all tasks, so operations on one key overlap; the others owned by one task each)
//! through a seeded sequence of `set`, `set_with_ttl` (a day), `remove`, `get` and `flush`
//! with self-checking values (key and sequence number inside), then `close`. It reports the
//! start and the result of every operation to the parent over its stdout, a line at a time
//! under one lock (so the order of the lines is the order of the events), retrying each
//! `write` that libfiu fails (a failed `write` writes nothing, a short one is continued): the
//! parent's record of acknowledgements is exact.
//!
//! Ending: half the runs `close` with faults still on; the other half first *heal* (faults
//! off, then wait up to 10 s for the timers alone to bring back tiered mode, a closed breaker
//! and nothing dirty), then `close`. A `kill -9` variant kills the child mid-run, faults on,
//! after a seeded number of acknowledgements.
//!
//! The parent keeps the model of what was acknowledged (an operation that ended before
//! another began is superseded by it; overlapping ones may land in either order) and checks,
//! in the child and after reopening the directory without libfiu:
//! - `wrong`: no value read (child or parent) belongs to another key, is torn, or was never
//!   set; `verify` finds no torn entry file;
//! - `resurrected`: a live `get` never returns a value superseded before it began (an older
//!   value, or one of a removed key); after reopening, no key holds a value superseded by an
//!   operation known durable: a write-through Ok, a `flush` Ok begun after it ended ("`flush`
//!   returns Ok only if everything set before it began is on disk"), and, after a `close`
//!   that returned Ok, every operation. An older *whole* value may come back only after a
//!   failed `close` or a `kill -9`, and only down to the newest durable operation (DESIGN.md,
//!   failure classification);
//! - `lost_acked`: a key whose last operations are write-through `set`s that returned Ok
//!   reads back one of them after reopening (the warm budget is large enough that nothing is
//!   evicted, which is asserted). A miss is allowed only where a `remove`, or a write not known
//!   durable (it may have been lost from memory, its older file deleted), may be the key's last
//!   word;
//! - `lost_flushed`: the same for `set`s covered by a `flush` or `close` that returned Ok:
//!   "`flush` returns `Ok` only if every `set`/`remove` made before it began is on disk" (a
//!   key whose last value was lost from memory is reported by `flush`/`close` until it is set
//!   or removed again, `Stats::lost_keys`);
//! - no unexpected error (`get`/`set`/`remove` never fail because of the disk; write-through
//!   reports only `NotPersisted`), no hang, no crash of the child, no temp file after reopen;
//!   `not_recovered`: a healed cache reaches tiered mode, a closed breaker, nothing dirty or
//!   queued and no stale file pending, and its `close` returns Ok exactly when it counts no
//!   lost key.
//!
//! A control run first enables `posix/io/sync/fdatasync` unconditionally: every write-through
//! `set` must then report `NotPersisted`, proving that the injector reaches the cache's calls.
//!
//! What libfiu (1.1) cannot see: every open the cache makes (rustix's `openat2` has no glibc
//! wrapper, so rustix calls `syscall()`), and the calls libfiu does not wrap: `mkdir`,
//! `openat`, `unlinkat`, `readdir64`, `statx`/`fstat64`, `statvfs64`/`statfs64`, `preadv2`.
//! What it sees: `read`, `write`, `fsync`, `fdatasync`, `close`, `rename`, `unlink`,
//! `opendir`, `fdopendir`, `closedir` (all made by std on the cache's behalf).
//!
//! libfiu fails `closedir` with EBADF, on which Rust's std panics ("unexpected error during
//! closedir"): the cache lists and removes directories with rustix's `Dir`, which ignores a
//! close error (since session 25/26; `fiu_closedir` fails every `closedir` and pins it).
//!
//! Run it alone: `cargo test --all-features --test faults fiu -- --nocapture`; replay runs by
//! seed with `ANSWERCACHE_FIU_SEEDS=0xf1000002,...` (thread interleavings and the errno libfiu
//! picks are not seeded: a replay is likely, not certain, to fail the same way).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::{BreakerState, Builder, Durability, Error, Mode, TieredCache, WritePolicy};

use crate::support::*;

const ROLE: &str = "fiu";
const SEED_ENV: &str = "ANSWERCACHE_FIU_SEED";
const OPS_ENV: &str = "ANSWERCACHE_FIU_OPS";
const TASKS_ENV: &str = "ANSWERCACHE_FIU_TASKS";
const POLICY_ENV: &str = "ANSWERCACHE_FIU_POLICY";
const DURABILITY_ENV: &str = "ANSWERCACHE_FIU_DURABILITY";
const QUEUE_ENV: &str = "ANSWERCACHE_FIU_QUEUE_BYTES";
const HEAL_ENV: &str = "ANSWERCACHE_FIU_HEAL";

const KEYS: u64 = 200;
/// Small enough that values are evicted before they are written.
const HOT_BYTES: usize = 64 << 10;
/// Large enough that nothing is ever evicted from the disk (asserted).
const WARM_BYTES: u64 = 256 << 20;
/// The small write queue of half the runs: a few values.
const SMALL_QUEUE_BYTES: usize = 24 << 10;
/// The default write queue.
const LARGE_QUEUE_BYTES: usize = 64 << 20;
/// A TTL that never expires during a run.
const LONG_TTL: Duration = DAY;
/// Concurrent tasks in the child.
const TASKS: u64 = 4;
/// Keys every task uses (operations on them overlap); each task owns a share of the others.
const SHARED_KEYS: u64 = 20;
/// How long a healed child waits for its cache to recover.
const HEAL_LIMIT: Duration = Duration::from_secs(10);
/// Bound on one child run (a hang is a failure, reported with the child's output).
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn key(k: u64) -> String {
    format!("k{k}")
}

fn value_len(seq: u64) -> usize {
    [64, 700, 3000, 6000][(Rng::new(seq).next_u64() % 4) as usize]
}

fn policy_name(p: WritePolicy) -> &'static str {
    match p {
        WritePolicy::WriteThrough => "write-through",
        _ => "write-behind",
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn libfiu_random_faults_then_reopen() {
    if role().as_deref() == Some(ROLE) {
        return child();
    }
    if !fiu_or_skip("fiu") {
        return;
    }
    let test = test_name(module_path!(), "libfiu_random_faults_then_reopen");
    let bin = tempfile::tempdir().unwrap();
    let exe = copy_of_this_binary(bin.path());
    let ops = scale(600, 4000);
    let rounds = scale(1, 5);
    let mut specs = vec![Spec {
        label: "control",
        policy: WritePolicy::WriteThrough,
        durability: Durability::Fsync,
        fiu: "enable name=posix/io/sync/fdatasync".into(),
        p: "fdatasync=1".into(),
        seed: 0xf100_00c0,
        ops: 80,
        tasks: 1,
        queue_bytes: LARGE_QUEUE_BYTES,
        heal: false,
        kill_after: None,
    }];
    // Without fsync second (appended: the runs with fsync keep their seeds).
    for (durability, ps) in [
        (Durability::Fsync, &["0.005", "0.02", "0.1"][..]),
        (Durability::NoSync, &["0.02", "0.1"][..]),
    ] {
        let nosync = durability == Durability::NoSync;
        for round in 0..rounds {
            for p in ps {
                for policy in [WritePolicy::WriteThrough, WritePolicy::WriteBehind] {
                    for heal in [false, true] {
                        let n = specs.len() as u64;
                        let label = match (heal, nosync) {
                            (true, false) => "heal-then-close",
                            (false, false) => "close-under-faults",
                            (true, true) => "heal-then-close-nosync",
                            (false, true) => "close-under-faults-nosync",
                        };
                        let mut spec = random_spec(label, policy, durability, p, n, ops);
                        spec.seed = 0xf100_0000 + round * 100 + n;
                        spec.heal = heal;
                        specs.push(spec);
                    }
                }
            }
        }
    }
    let outcomes: Vec<Outcome> = specs
        .iter()
        .filter(|s| chosen(s.seed))
        .map(|s| run(&exe, &test, s))
        .collect();
    let mut extra = Vec::new();
    if !only_some() {
        let control = &outcomes[0];
        if !(control.tally.sets_ok == 0 && control.tally.sets_np > 0 && control.disk_errors > 0) {
            extra.push((
                "control",
                format!(
                    "with every fdatasync failing, every write-through set must report \
                     NotPersisted and the cache must count disk errors: sets_ok={} \
                     sets_not_persisted={} disk_errors={}",
                    control.tally.sets_ok, control.tally.sets_np, control.disk_errors
                ),
            ));
        }
        let random_errors: u64 = outcomes[1..].iter().map(|o| o.disk_errors).sum();
        if random_errors == 0 {
            extra.push((
                "control",
                "libfiu injected nothing the cache saw".to_owned(),
            ));
        }
    }
    assert_clean(&outcomes, extra);
}

/// Run `n` of a random-fault harness: libfiu fails every `posix/io/*` call with probability
/// `p` and the errno of [`errno_for`]; a small write queue in every other run. Its seed is
/// 0, it heals nothing and is not killed until the caller says otherwise.
fn random_spec(
    label: &'static str,
    policy: WritePolicy,
    durability: Durability,
    p: &str,
    n: u64,
    ops: u64,
) -> Spec {
    Spec {
        label,
        policy,
        durability,
        fiu: format!(
            "enable_random name=posix/io/*,probability={p},failinfo={}",
            errno_for(n)
        ),
        p: format!("{p},errno={}", errno_for(n)),
        seed: 0,
        ops,
        tasks: TASKS,
        queue_bytes: if n.is_multiple_of(2) {
            SMALL_QUEUE_BYTES
        } else {
            LARGE_QUEUE_BYTES
        },
        heal: false,
        kill_after: None,
    }
}

/// The errno libfiu sets for run `n`: EIO and ENOSPC in turn (pairs of runs), the device
/// failures of DESIGN.md. Left to itself, libfiu picks any errno its man page lists for the
/// call, including ones the real call cannot return in the state at hand (ENOENT from an
/// `unlink` of a file that is there, EFBIG from a small `write`): those test libfiu's
/// imagination, not the cache.
fn errno_for(n: u64) -> i32 {
    if (n / 2).is_multiple_of(2) {
        EIO
    } else {
        ENOSPC
    }
}

#[test]
fn libfiu_random_faults_kill_minus_nine() {
    if role().as_deref() == Some(ROLE) {
        return child();
    }
    if !fiu_or_skip("fiu-kill-9") {
        return;
    }
    let test = test_name(module_path!(), "libfiu_random_faults_kill_minus_nine");
    let bin = tempfile::tempdir().unwrap();
    let exe = copy_of_this_binary(bin.path());
    let ops = scale(600, 4000);
    let kills = scale(2, 10);
    let mut specs = Vec::new();
    let mut rng = Rng::new(0xf100_9999);
    // Without fsync second (appended: the runs with fsync keep their seeds and kill points).
    for (durability, label) in [
        (Durability::Fsync, "kill-9"),
        (Durability::NoSync, "kill-9-nosync"),
    ] {
        for i in 0..kills {
            for policy in [WritePolicy::WriteThrough, WritePolicy::WriteBehind] {
                let p = ["0.02", "0.1"][(i % 2) as usize];
                let n = specs.len() as u64;
                let mut spec = random_spec(label, policy, durability, p, n, ops);
                spec.seed = 0xf100_9000 + n;
                spec.kill_after = Some(ops / 10 + rng.below((ops * 8 / 10) as usize) as u64);
                specs.push(spec);
            }
        }
    }
    let outcomes: Vec<Outcome> = specs
        .iter()
        .filter(|s| chosen(s.seed))
        .map(|s| run(&exe, &test, s))
        .collect();
    assert_clean(&outcomes, Vec::new());
}

/// The model behind the harness, on scripted child output: each kind of broken promise is
/// counted, and what the rules allow is not.
#[test]
fn the_model_counts_every_broken_promise() {
    if role().is_some() {
        return;
    }
    let model = |wt: bool, lines: &[&str]| {
        let mut m = Model::new("scripted".into(), wt);
        for l in lines {
            m.on_line(l);
        }
        m
    };
    // Write-through, close Ok: a removed key must stay removed.
    let script = [
        "B 1 set 5",
        "A 1 set 5 ok",
        "B 2 rm 5",
        "A 2 rm 5 ok",
        "CLOSE ok 0 0",
    ];
    let mut m = model(true, &script);
    m.reopened(5, None);
    assert_eq!(m.tally.bad(), 0);
    m.reopened(5, Some(1));
    assert_eq!((m.tally.resurrected, m.tally.bad()), (1, 1));
    // Write-through Ok, then a kill: the value must be there.
    let mut m = model(true, &["B 1 set 6", "A 1 set 6 ok", "B 2 set 6"]);
    m.reopened(6, Some(1));
    m.reopened(6, Some(2));
    assert_eq!(m.tally.bad(), 0);
    let mut m = model(true, &["B 1 set 6", "A 1 set 6 ok"]);
    m.reopened(6, None);
    assert_eq!((m.tally.lost_acked, m.tally.bad()), (1, 1));
    // Write-behind: a flush Ok covers what ended before it began, even if close failed.
    let script = [
        "B 1 set 7",
        "A 1 set 7 ok",
        "F 2",
        "A 2 flush ok 0 0",
        "CLOSE np 1 0",
    ];
    let mut m = model(false, &script);
    m.reopened(7, Some(1));
    assert_eq!(m.tally.bad(), 0);
    m.reopened(7, None);
    m.reopened(8, None);
    assert_eq!((m.tally.lost_flushed, m.tally.bad()), (1, 1));
    // ... but not a set that ended after the flush began.
    let script = [
        "B 1 set 7",
        "F 2",
        "A 1 set 7 ok",
        "A 2 flush ok 0 0",
        "CLOSE np 1 0",
    ];
    let mut m = model(false, &script);
    m.reopened(7, None);
    assert_eq!(m.tally.bad(), 0);
    // A crash after a flush: the flushed value or a newer one, or nothing (a newer one may
    // be lost and the older file deleted), never one older than the flushed one.
    let script = [
        "B 20 set 10",
        "A 20 set 10 ok",
        "B 1 set 10",
        "A 1 set 10 ok",
        "F 2",
        "A 2 flush ok 0 0",
        "B 3 set 10",
        "A 3 set 10 ok",
        "B 4 set 11",
        "A 4 set 11 ok",
        "B 5 set 10",
        "A 5 set 10 ok",
        "B 6 set 10",
    ];
    let mut m = model(false, &script);
    for found in [None, Some(1), Some(5), Some(6)] {
        m.reopened(10, found);
    }
    assert_eq!(m.tally.bad(), 0);
    assert_eq!(
        m.tally.older_allowed, 2,
        "1 and 5: older than the set in flight"
    );
    m.reopened(10, Some(20));
    m.reopened(10, Some(4));
    assert_eq!((m.tally.resurrected, m.tally.wrong), (1, 1));
    // Live reads: the last value or a miss; overlapping sets may land in either order.
    let script = [
        "B 1 set 8",
        "A 1 set 8 ok",
        "B 2 set 8",
        "B 3 set 8",
        "A 2 set 8 ok",
        "A 3 set 8 ok",
        "B 4 get 8",
        "A 4 get 8 hit 2",
        "B 5 get 8",
        "A 5 get 8 hit 3",
        "B 6 get 8",
        "A 6 get 8 miss",
    ];
    let mut m = model(true, &script);
    assert_eq!(m.tally.bad(), 0);
    for l in [
        "B 7 get 8",
        "A 7 get 8 hit 1",
        "B 8 get 8",
        "A 8 get 8 hit 99",
    ] {
        m.on_line(l);
    }
    assert_eq!((m.tally.resurrected, m.tally.wrong), (1, 1));
    m.on_line("A 9 get 8 bad value of key \"k7\" returned for \"k8\"");
    assert_eq!(m.tally.wrong, 2);
    // Overlapping write-through sets, close Ok: one of them, never nothing.
    let mut m = model(true, &script[..6]);
    m.on_line("CLOSE ok 0 0");
    m.reopened(8, Some(2));
    m.reopened(8, Some(3));
    assert_eq!(m.tally.bad(), 0);
    m.reopened(8, None);
    m.reopened(8, Some(1));
    assert_eq!((m.tally.lost_acked, m.tally.resurrected), (1, 1));
    // Errors the API must never return.
    let mut m = model(
        false,
        &[
            "B 1 set 9",
            "A 1 set 9 np 1 disk",
            "B 2 get 9",
            "A 2 get 9 err x",
        ],
    );
    assert_eq!(m.tally.unexpected, 2);
    m.on_line("HEALED timeout 0 mode=memory-only");
    m.on_line("CLOSE np 0 0");
    assert_eq!(m.tally.not_recovered, 2);
    // Healed: close is Ok exactly when no key was lost from memory.
    for (lost_keys, close, bad) in [(0, "ok", 0), (0, "np", 1), (3, "np", 0), (3, "ok", 1)] {
        let m = model(
            false,
            &[
                &format!("HEALED ok {lost_keys}"),
                &format!("CLOSE {close} 0 0"),
            ],
        );
        assert_eq!(
            m.tally.not_recovered, bad,
            "lost_keys={lost_keys} close={close}"
        );
    }
}

/// `ANSWERCACHE_FIU_SEEDS=0xf1000002,0xf1009001` runs only the runs with these seeds (from the
/// `RELIABILITY fiu` lines), to replay a failure. Thread interleavings and the errno libfiu
/// picks are not seeded: a replay is likely, not certain, to fail the same way.
fn chosen(seed: u64) -> bool {
    let Ok(list) = std::env::var("ANSWERCACHE_FIU_SEEDS") else {
        return true;
    };
    list.split(',').any(|s| {
        let s = s.trim();
        let n = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        };
        n == Some(seed)
    })
}

fn only_some() -> bool {
    std::env::var_os("ANSWERCACHE_FIU_SEEDS").is_some()
}

/// Fails with every count and, per kind of broken promise, its first few instances.
fn assert_clean(outcomes: &[Outcome], extra: Vec<(&'static str, String)>) {
    let mut total = Tally::default();
    let mut by_kind: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (kind, what) in &extra {
        by_kind.entry(kind).or_default().push(what);
    }
    for o in outcomes {
        total.add(&o.tally);
        for (kind, what) in &o.problems {
            by_kind.entry(kind).or_default().push(what);
        }
    }
    let mut shown = String::new();
    for (kind, all) in &by_kind {
        shown.push_str(&format!(
            "\n{kind}: {} (the first {}):",
            all.len(),
            all.len().min(8)
        ));
        for what in all.iter().take(8) {
            shown.push_str(&format!("\n  {}", what.replace('\n', "\n  ")));
        }
    }
    assert!(
        total.bad() == 0 && by_kind.is_empty(),
        "libfiu harness: wrong={} resurrected={} lost_acked={} lost_flushed={} unexpected={} \
         torn={} temps_after_open={} not_recovered={} child_failures={}{shown}",
        total.wrong,
        total.resurrected,
        total.lost_acked,
        total.lost_flushed,
        total.unexpected,
        total.torn,
        total.temps_after_open,
        total.not_recovered,
        total.failures,
    );
}

// ---------------------------------------------------------------------------------------------
// The parent: one child run, its model, and the checks after reopening.

struct Spec {
    label: &'static str,
    policy: WritePolicy,
    /// `NoSync` runs (since session 26) take the no-sync write path (an overwrite exchanges
    /// the files); the model is the same: a process kill keeps what the page cache holds.
    durability: Durability,
    /// The libfiu command enabled while the child works.
    fiu: String,
    /// For the report.
    p: String,
    seed: u64,
    ops: u64,
    tasks: u64,
    queue_bytes: usize,
    /// Faults off before `close`, which must then return Ok.
    heal: bool,
    /// SIGKILL the child after this many acknowledgements.
    kill_after: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    acks: u64,
    sets_ok: u64,
    sets_np: u64,
    removes: u64,
    gets: u64,
    live_hits: u64,
    live_misses: u64,
    flush_ok: u64,
    flush_np: u64,
    reopen_hits: u64,
    reopen_misses: u64,
    older_allowed: u64,
    // Failures: every one of these must be 0.
    wrong: u64,
    resurrected: u64,
    lost_acked: u64,
    lost_flushed: u64,
    unexpected: u64,
    torn: u64,
    temps_after_open: u64,
    not_recovered: u64,
    failures: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.wrong += o.wrong;
        self.resurrected += o.resurrected;
        self.lost_acked += o.lost_acked;
        self.lost_flushed += o.lost_flushed;
        self.unexpected += o.unexpected;
        self.torn += o.torn;
        self.temps_after_open += o.temps_after_open;
        self.not_recovered += o.not_recovered;
        self.failures += o.failures;
    }

    fn bad(&self) -> u64 {
        self.wrong
            + self.resurrected
            + self.lost_acked
            + self.lost_flushed
            + self.unexpected
            + self.torn
            + self.temps_after_open
            + self.not_recovered
            + self.failures
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutation {
    Set,
    Remove,
}

/// A `set` or `remove`: where it began and ended in the child's output (`end` is `None` if it
/// was in flight at a kill) and whether it returned Ok.
#[derive(Debug, Clone, Copy)]
struct Op {
    seq: u64,
    what: Mutation,
    begin: u64,
    end: Option<u64>,
    ok: bool,
}

impl Op {
    /// Ended before `other` began: `other` supersedes it.
    fn before(&self, other: &Op) -> bool {
        self.end.is_some_and(|e| e < other.begin)
    }
}

struct Outcome {
    tally: Tally,
    disk_errors: u64,
    /// (kind, what): every broken promise, for the report.
    problems: Vec<(&'static str, String)>,
}

/// A flush (or `close`): where it began and ended in the child's output, whether it returned
/// Ok, and the cache's `lost_writes` when it returned.
#[derive(Debug, Clone, Copy)]
struct Flush {
    began: u64,
    ended: u64,
    ok: bool,
    lost: u64,
}

/// What the child acknowledged, and the checks made as its lines arrive. Lines are written
/// under one lock, in the order of the events they report, so positions in the output order
/// them: an operation that ended before another began precedes it; operations whose lines
/// interleave overlap (several tasks share some keys), and either may be the later one.
struct Model {
    run: String,
    write_through: bool,
    /// Lines seen.
    pos: u64,
    /// Per key, its mutations in the order they began.
    ops: HashMap<u64, Vec<Op>>,
    /// Gets begun: seq -> position.
    gets_began: HashMap<u64, u64>,
    /// Flushes begun: seq -> position.
    flush_began: HashMap<u64, u64>,
    flushes: Vec<Flush>,
    /// `close`: whether it returned Ok, and the cache's `lost_writes` then.
    close: Option<(bool, u64)>,
    /// After healing: whether the cache recovered, and `Stats::lost_keys` then.
    healed: Option<(bool, u64)>,
    stats: BTreeMap<String, u64>,
    /// `disk_errors` as of the last report (flush or close).
    disk_errors: u64,
    ready: Option<bool>,
    finished: bool,
    tally: Tally,
    /// (kind, what): every broken promise, for the report.
    problems: Vec<(&'static str, String)>,
}

impl Model {
    fn new(run: String, write_through: bool) -> Model {
        Model {
            run,
            write_through,
            pos: 0,
            ops: HashMap::new(),
            gets_began: HashMap::new(),
            flush_began: HashMap::new(),
            flushes: Vec::new(),
            close: None,
            healed: None,
            stats: BTreeMap::new(),
            disk_errors: 0,
            ready: None,
            finished: false,
            tally: Tally::default(),
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, kind: &'static str, what: String) {
        self.problems.push((kind, format!("{}: {what}", self.run)));
    }

    fn ops_of(&self, k: u64) -> &[Op] {
        self.ops.get(&k).map_or(&[], Vec::as_slice)
    }

    fn set_of(&self, k: u64, v: u64) -> Option<Op> {
        self.ops_of(k)
            .iter()
            .find(|o| o.seq == v && o.what == Mutation::Set)
            .copied()
    }

    fn on_line(&mut self, line: &str) {
        self.pos += 1;
        let pos = self.pos;
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
        match w.as_slice() {
            ["READY", preloaded] => self.ready = Some(*preloaded == "1"),
            ["OPEN", "ok"] => {}
            ["OPEN", rest @ ..] => {
                self.tally.unexpected += 1;
                self.problem(
                    "unexpected",
                    format!("build() failed under faults: {}", rest.join(" ")),
                );
            }
            ["B", seq, "get", _] => {
                self.gets_began.insert(num(seq), pos);
            }
            ["B", seq, op, k] => {
                let what = if *op == "rm" {
                    Mutation::Remove
                } else {
                    Mutation::Set
                };
                self.ops.entry(num(k)).or_default().push(Op {
                    seq: num(seq),
                    what,
                    begin: pos,
                    end: None,
                    ok: false,
                });
            }
            ["A", seq, op @ ("set" | "sett" | "rm"), k, res, rest @ ..] => {
                let (seq, k) = (num(seq), num(k));
                self.tally.acks += 1;
                let ok = *res == "ok";
                let op_ref = self
                    .ops
                    .get_mut(&k)
                    .and_then(|ops| ops.iter_mut().find(|o| o.seq == seq && o.end.is_none()));
                let Some(o) = op_ref else {
                    panic!("{}: an acknowledgement without its BEGIN: {line}", self.run);
                };
                o.end = Some(pos);
                o.ok = ok;
                let what = o.what;
                // Write-behind acknowledges once the value is in memory: never an error.
                // Write-through reports one disk outcome only: NotPersisted.
                if !(ok || (*res == "np" && self.write_through)) {
                    self.tally.unexpected += 1;
                    self.problem(
                        "unexpected",
                        format!("{op} {} seq {seq}: {res} {}", key(k), rest.join(" ")),
                    );
                }
                match (what, ok) {
                    (Mutation::Set, true) => self.tally.sets_ok += 1,
                    (Mutation::Set, false) => self.tally.sets_np += 1,
                    (Mutation::Remove, _) => self.tally.removes += 1,
                }
            }
            ["A", seq, "get", k, res, rest @ ..] => {
                let (seq, k) = (num(seq), num(k));
                self.tally.acks += 1;
                self.tally.gets += 1;
                let began = self.gets_began.remove(&seq).unwrap_or(0);
                match *res {
                    "miss" => self.tally.live_misses += 1,
                    "hit" => {
                        let v = rest.first().map_or(u64::MAX, |v| num(v));
                        self.live_hit(seq, k, v, began, pos);
                    }
                    "bad" => {
                        self.tally.wrong += 1;
                        self.problem("wrong", format!("live get seq {seq}: {}", rest.join(" ")));
                    }
                    _ => {
                        self.tally.unexpected += 1;
                        self.problem(
                            "unexpected",
                            format!("live get seq {seq} {}: {}", key(k), rest.join(" ")),
                        );
                    }
                }
            }
            ["F", seq] => {
                self.flush_began.insert(num(seq), pos);
            }
            ["A", seq, "flush", res, lost, disk_errors, ..] => {
                self.tally.acks += 1;
                let ok = *res == "ok";
                if ok {
                    self.tally.flush_ok += 1;
                } else {
                    self.tally.flush_np += 1;
                }
                if !(ok || *res == "np") {
                    self.tally.unexpected += 1;
                    self.problem(
                        "unexpected",
                        format!("flush seq {seq}: {}", w[3..].join(" ")),
                    );
                }
                let began = self.flush_began.remove(&num(seq)).unwrap_or(u64::MAX);
                self.flushes.push(Flush {
                    began,
                    ended: pos,
                    ok,
                    lost: num(lost),
                });
                self.disk_errors = num(disk_errors);
            }
            ["HEALED", res, lost_keys, rest @ ..] => {
                self.healed = Some((*res == "ok", num(lost_keys)));
                if *res != "ok" {
                    self.tally.not_recovered += 1;
                    self.problem(
                        "not_recovered",
                        format!(
                            "faults off for {HEAL_LIMIT:?}, yet not recovered: {}",
                            rest.join(" ")
                        ),
                    );
                }
            }
            ["CLOSE", res, lost, disk_errors, rest @ ..] => {
                let ok = *res == "ok";
                if !(ok || *res == "np") {
                    self.tally.unexpected += 1;
                    self.problem("unexpected", format!("close: {}", w[1..].join(" ")));
                }
                // Healed, a cache has nothing left to write but the keys it lost from memory.
                if let Some((_, lost_keys)) = self.healed.filter(|h| ok != (h.1 == 0)) {
                    self.tally.not_recovered += 1;
                    self.problem(
                        "not_recovered",
                        format!(
                            "close after healing, with lost_keys={lost_keys}: {res} {}",
                            rest.join(" ")
                        ),
                    );
                }
                self.close = Some((ok, num(lost)));
                // `close` flushes: it covers every operation, like a last `flush`.
                self.flushes.push(Flush {
                    began: pos,
                    ended: pos,
                    ok,
                    lost: num(lost),
                });
                self.disk_errors = num(disk_errors);
            }
            ["STATS", kvs @ ..] => {
                for kv in kvs {
                    if let Some((k, v)) = kv.split_once('=') {
                        self.stats.insert(k.to_owned(), num(v));
                    }
                }
            }
            ["DONE"] => self.finished = true,
            _ => {}
        }
    }

    /// A value read by the live child, by a `get` between positions `began` and `ended`: a
    /// value set for the key that no other operation of the key superseded before the `get`
    /// began (a miss is always allowed: values may be evicted and lost).
    fn live_hit(&mut self, seq: u64, k: u64, v: u64, began: u64, ended: u64) {
        self.tally.live_hits += 1;
        let get = Op {
            seq,
            what: Mutation::Set,
            begin: began,
            end: Some(ended),
            ok: true,
        };
        let Some(s) = self.set_of(k, v).filter(|s| s.begin < ended) else {
            self.tally.wrong += 1;
            self.problem(
                "wrong",
                format!(
                    "live get seq {seq}: {} returned seq {v}, never set for it",
                    key(k)
                ),
            );
            return;
        };
        let superseded = self
            .ops_of(k)
            .iter()
            .find(|o| s.before(o) && o.before(&get))
            .copied();
        if let Some(o) = superseded {
            self.tally.resurrected += 1;
            self.problem(
                "resurrected",
                format!(
                    "live get seq {seq}: {} returned the value of set {v}, superseded by {o:?} \
                 before the get began",
                    key(k)
                ),
            );
        }
    }

    /// Whether `o` is known to be on disk: a write-through Ok, or a `flush` (or `close`) that
    /// began after it ended and returned Ok (DESIGN: "`flush` returns Ok only if everything
    /// set before it began is on disk").
    fn durable(&self, o: &Op) -> bool {
        let Some(end) = o.end else {
            return false;
        };
        (self.write_through && o.ok)
            || self.flushes.iter().any(|f| f.ok && f.began > end)
            || self.close.is_some_and(|c| c.0)
    }

    /// What a reopened cache returned for key `k`. The disk may hold the outcome of any
    /// operation not superseded by a durable one (`candidates`); a miss is allowed only if one
    /// of them is a `remove` or is not durable (a write that may have been lost, its older
    /// file deleted). After a `close` that returned Ok every completed operation is durable.
    fn reopened(&mut self, k: u64, found: Option<u64>) {
        let ops = self.ops_of(k).to_vec();
        let durable: Vec<Op> = ops.iter().filter(|o| self.durable(o)).copied().collect();
        let candidates: Vec<Op> = ops
            .iter()
            .filter(|o| !durable.iter().any(|d| o.before(d)))
            .copied()
            .collect();
        let miss_ok = candidates.is_empty()
            || candidates
                .iter()
                .any(|o| o.what == Mutation::Remove || !self.durable(o));
        let newest: Vec<u64> = ops
            .iter()
            .filter(|o| !ops.iter().any(|p| o.before(p)))
            .map(|o| o.seq)
            .collect();
        match found {
            Some(v)
                if candidates
                    .iter()
                    .any(|o| o.seq == v && o.what == Mutation::Set) =>
            {
                self.tally.reopen_hits += 1;
                if !newest.contains(&v) {
                    self.tally.older_allowed += 1;
                }
            }
            None if miss_ok => self.tally.reopen_misses += 1,
            None => {
                self.tally.reopen_misses += 1;
                if self.write_through && candidates.iter().all(|o| o.ok) {
                    self.tally.lost_acked += 1;
                    self.problem(
                        "lost_acked",
                        format!(
                        "{} missing after reopen: its last write-through set(s) {candidates:?} \
                         returned Ok (close {:?})",
                        key(k),
                        self.close
                    ),
                    );
                } else {
                    self.tally.lost_flushed += 1;
                    let last_end = candidates.iter().filter_map(|o| o.end).max().unwrap_or(0);
                    let cover = self
                        .flushes
                        .iter()
                        .filter(|f| f.ok && f.began > last_end)
                        .min_by_key(|f| f.ended)
                        .map_or("none".to_owned(), |f| {
                            format!(
                                "lines {}-{}, lost_writes={} when it returned",
                                f.began, f.ended, f.lost
                            )
                        });
                    self.problem(
                        "lost_flushed",
                        format!(
                            "{} missing after reopen: its last set(s) {candidates:?} were covered \
                             by a flush/close Ok (the first: {cover}; close {:?})",
                            key(k),
                            self.close
                        ),
                    );
                }
            }
            Some(v) if self.set_of(k, v).is_some() => {
                self.tally.resurrected += 1;
                self.problem(
                    "resurrected",
                    format!(
                        "{} came back as set {v} after reopen; it may hold only {:?} (durable: \
                     {:?}), close {:?}",
                        key(k),
                        candidates
                            .iter()
                            .map(|o| (o.seq, o.what))
                            .collect::<Vec<_>>(),
                        durable.iter().map(|o| o.seq).collect::<Vec<_>>(),
                        self.close
                    ),
                );
            }
            Some(v) => {
                self.tally.wrong += 1;
                self.problem(
                    "wrong",
                    format!("{} read seq {v} after reopen, never set for it", key(k)),
                );
            }
        }
    }
}

/// Reads the child's stdout on a thread of its own: complete lines only (a line cut by a
/// kill is dropped).
fn lines_of(child: &mut Child) -> Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    rx
}

fn tail_of(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let mut start = s.len().saturating_sub(4000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].replace('\n', "\n    ")
}

/// The failure-point name of an `enable...` command.
fn fiu_name(command: &str) -> &str {
    command
        .split_once("name=")
        .map_or("", |(_, rest)| rest.split(',').next().unwrap_or(""))
}

fn run(exe: &Path, test: &str, spec: &Spec) -> Outcome {
    let wt = spec.policy == WritePolicy::WriteThrough;
    let name = format!(
        "{} policy={} p={} seed={:#x}",
        spec.label,
        policy_name(spec.policy),
        spec.p,
        spec.seed
    );
    let mut model = Model::new(name.clone(), wt);
    let dir = scratch_dir();
    let root = dir.path().join("cache");
    let ctrl = dir.path().join("fiu-ctrl");
    let stderr_path = dir.path().join("child.stderr");
    let mut cmd = fiu_child_command(exe, test, ROLE, &ctrl);
    cmd.env(DIR_ENV, &root)
        .env(SEED_ENV, spec.seed.to_string())
        .env(OPS_ENV, spec.ops.to_string())
        .env(TASKS_ENV, spec.tasks.to_string())
        .env(POLICY_ENV, if wt { "wt" } else { "wb" })
        .env(
            DURABILITY_ENV,
            if spec.durability == Durability::NoSync {
                "nosync"
            } else {
                "fsync"
            },
        )
        .env(QUEUE_ENV, spec.queue_bytes.to_string())
        .env(HEAL_ENV, if spec.heal { "1" } else { "0" })
        // libfiu's own PRNG (which calls fail); the errno it picks is not seeded, nor is the
        // interleaving of the child's threads.
        .env(
            "FIU_PRNG_SEED",
            (spec.seed as u32 & 0x7fff_ffff).to_string(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn fiu-run");
    let pid = child.id();
    let rx = lines_of(&mut child);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let deadline = started + RUN_LIMIT;
    let disable = format!("disable name={}", fiu_name(&spec.fiu));
    let mut recent: Vec<String> = Vec::new();
    let (mut killed, mut hung, mut enabled) = (false, false, false);
    loop {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                hung = true;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        model.on_line(&line);
        recent.push(line.trim_end().to_owned());
        if recent.len() > 40 {
            recent.remove(0);
        }
        match line.split_whitespace().next().unwrap_or("") {
            "READY" => {
                assert_eq!(
                    model.ready,
                    Some(true),
                    "{name}: libfiu's preload library is not mapped in the child"
                );
                fiu_ctrl(&ctrl, pid, &[&spec.fiu]);
                enabled = true;
                stdin.write_all(b"GO\n").unwrap();
            }
            "HEAL" => {
                fiu_ctrl(&ctrl, pid, &[&disable]);
                enabled = false;
                stdin.write_all(b"HEAL\n").unwrap();
            }
            "DONE" => {
                if enabled {
                    fiu_ctrl(&ctrl, pid, &[&disable]);
                    enabled = false;
                }
                stdin.write_all(b"END\n").unwrap();
            }
            _ => {}
        }
        if spec.kill_after.is_some_and(|n| model.tally.acks >= n) {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    if hung {
        child.kill().unwrap();
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline + Duration::from_secs(10) {
            hung = true;
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    // Acknowledgements already in the pipe at the kill count too.
    for line in rx.iter() {
        model.on_line(&line);
    }
    let child_ok = if killed {
        status.signal() == Some(9)
    } else {
        status.success() && model.finished
    };
    if hung || !child_ok {
        model.tally.failures += 1;
        model.problem(
            "child",
            format!(
            "the child {}: {status}\n    --- last lines ---\n    {}\n    --- stderr ---\n    {}",
            if hung { "hung" } else { "failed" },
            recent.join("\n    "),
            tail_of(&stderr_path)
        ),
        );
    }
    if killed {
        assert!(model.close.is_none(), "{name}: killed after close");
    }
    // Panics in the child, even those the cache contains (its supervised tasks count them in
    // `task_panics`): a failure. "No panics on any disk state"; until session 26 they were
    // shown, not judged, because std's directory handles panicked when libfiu failed
    // `closedir` (now listed and removed with rustix: `fiu_closedir`).
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut panics = stderr.lines().filter(|l| l.contains("panicked at"));
    if let Some(first) = panics.next() {
        let message = stderr
            .lines()
            .skip_while(|l| *l != first)
            .nth(1)
            .unwrap_or("");
        let n = panics.count() + 1;
        model.tally.failures += 1;
        model.problem(
            "child",
            format!("the child logged {n} panic(s), the first: {first} {message}"),
        );
    }
    let warm_evictions = model.stats.get("warm_evictions").copied().unwrap_or(0);
    if warm_evictions != 0 {
        model.tally.failures += 1;
        model.problem(
            "child",
            format!("warm_evictions={warm_evictions}: the warm budget must hold every entry"),
        );
    }

    // The next process's view, without libfiu.
    if root.exists() {
        let report = verify_report(&root);
        let torn = (report.corrupted.len() + report.io_errors.len()) as u64;
        if torn > 0 {
            model.tally.torn += torn;
            model.problem("torn", format!("verify: {report:?}"));
        }
    }
    let rt = runtime();
    rt.block_on(async {
        let cache = builder(&root)
            .warm_capacity_bytes(WARM_BYTES)
            .build()
            .await
            .unwrap();
        // `tmp/` is swept before `build` returns; the temp files left beside entries, by the
        // startup scan.
        let scanned = answercache::testing::wait_until(Duration::from_secs(30), || {
            cache.stats().warm_index_complete
        })
        .await;
        assert!(scanned, "{name}: the startup scan never completed");
        let temps = temp_files(&root) as u64;
        if temps > 0 {
            model.tally.temps_after_open += temps;
            model.problem("temps", format!("{temps} temp files after reopen"));
        }
        for k in 0..KEYS {
            let found = match cache.get_bytes(key(k)).await.unwrap() {
                None => None,
                Some(v) => match check_value(&key(k), &v) {
                    Ok((_, seq)) => Some(seq),
                    Err(e) => {
                        model.tally.wrong += 1;
                        model.problem("wrong", format!("after reopen: {e}"));
                        continue;
                    }
                },
            };
            model.reopened(k, found);
        }
        let s = cache.stats();
        assert_eq!(s.warm_evictions, 0, "{name}: the reopened cache evicted");
        cache.close().await.unwrap();
    });
    let t = &model.tally;
    let st = |k: &str| model.stats.get(k).map_or("-".to_owned(), u64::to_string);
    let close = match (killed, model.close) {
        (true, _) => "killed",
        (false, Some((true, _))) => "ok",
        (false, Some((false, _))) => "not-persisted",
        (false, None) => "none",
    };
    let kill_after = spec.kill_after.map_or("-".to_owned(), |n| n.to_string());
    reliability(
        "fiu",
        &[
            ("run", &spec.label),
            ("policy", &policy_name(spec.policy)),
            ("p", &spec.p),
            ("seed", &format!("{:#x}", spec.seed)),
            ("tasks", &spec.tasks),
            ("queue_bytes", &spec.queue_bytes),
            ("kill_after_acks", &kill_after),
            ("ops", &spec.ops),
            ("acks", &t.acks),
            ("sets_ok", &t.sets_ok),
            ("sets_not_persisted", &t.sets_np),
            ("removes", &t.removes),
            ("gets", &t.gets),
            ("live_hits", &t.live_hits),
            ("flush_ok", &t.flush_ok),
            ("flush_not_persisted", &t.flush_np),
            ("close", &close),
            ("reopen_hits", &t.reopen_hits),
            ("older_whole_values_allowed", &t.older_allowed),
            ("lost_writes", &st("lost_writes")),
            ("wrong", &t.wrong),
            ("resurrected", &t.resurrected),
            ("lost_acked", &t.lost_acked),
            ("lost_flushed", &t.lost_flushed),
            ("unexpected_errors", &t.unexpected),
            ("torn", &t.torn),
            ("temps_after_open", &t.temps_after_open),
            ("not_recovered", &t.not_recovered),
            ("child_failures", &t.failures),
            ("disk_errors", &model.disk_errors),
            ("memory_only_entries", &st("memory_only_entries")),
            ("probes_ok", &st("probes_ok")),
            ("written_back", &st("written_back")),
            ("task_panics", &st("task_panics")),
            ("ms", &started.elapsed().as_millis()),
        ],
    );
    Outcome {
        tally: model.tally,
        disk_errors: model.disk_errors,
        problems: model.problems,
    }
}

// ---------------------------------------------------------------------------------------------
// The child, under libfiu.

/// The child's channel to the parent: its stdout and stdin, duplicated before any fault is
/// enabled and used unbuffered. libfiu fails a `write` or `read` before calling libc's (nothing
/// is written or consumed) or shortens it, so retrying until the whole line is written (or a
/// whole line read) keeps the record exact.
struct Pipe {
    out: File,
    inp: File,
}

impl Pipe {
    fn open() -> Pipe {
        Pipe {
            out: File::from(std::io::stdout().as_fd().try_clone_to_owned().unwrap()),
            inp: File::from(std::io::stdin().as_fd().try_clone_to_owned().unwrap()),
        }
    }

    fn line(&mut self, text: &str) {
        let mut buf = text.as_bytes().to_vec();
        buf.push(b'\n');
        let (mut done, mut failed) = (0, 0u64);
        while done < buf.len() {
            match self.out.write(&buf[done..]) {
                Ok(n) if n > 0 => done += n,
                _ => failed += 1,
            }
            assert!(failed < 100_000, "stdout keeps failing");
        }
    }

    /// Waits for the parent to send `word` on a line.
    fn wait_for(&mut self, word: &str) {
        let (mut line, mut byte, mut failed) = (Vec::new(), [0u8; 1], 0u64);
        loop {
            match self.inp.read(&mut byte) {
                Ok(0) => panic!("the parent closed stdin"),
                Ok(_) if byte[0] == b'\n' => {
                    if line == word.as_bytes() {
                        return;
                    }
                    line.clear();
                }
                Ok(_) => line.push(byte[0]),
                Err(_) => {
                    failed += 1;
                    assert!(failed < 100_000, "stdin keeps failing");
                }
            }
        }
    }
}

/// The pipe shared by the child's tasks: one line at a time, in the order of the events.
#[derive(Clone)]
struct Report(Arc<Mutex<Pipe>>);

impl Report {
    fn line(&self, text: &str) {
        self.0.lock().unwrap().line(text);
    }

    fn wait_for(&self, word: &str) {
        self.0.lock().unwrap().wait_for(word);
    }
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

fn child_builder(
    root: &Path,
    policy: WritePolicy,
    durability: Durability,
    queue_bytes: usize,
) -> Builder {
    answercache::testing::builder(root)
        .write_policy(policy)
        .durability(durability)
        .hot_capacity_bytes(HOT_BYTES)
        .warm_capacity_bytes(WARM_BYTES)
        .write_queue_bytes(queue_bytes)
        .failure_threshold(3)
        .open_timeout(Duration::from_millis(50))
        .max_open_timeout(Duration::from_millis(200))
        .error_window(Duration::from_secs(1))
        .recovery_interval(Duration::from_millis(50))
        .health_interval(Duration::from_millis(100))
        .sweep_interval(Duration::from_millis(200))
        .io_timeout(Duration::from_secs(10))
}

/// `ok`, `np <failed> <last error>` (NotPersisted) or `err <what>`.
fn outcome<T>(r: &Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Error::NotPersisted { failed, last_error }) => {
            format!("np {failed} {}", last_error.replace(['\n', ' '], "_"))
        }
        Err(e) => format!("err {}", e.to_string().replace('\n', " ")),
    }
}

/// One task of the child: `ops` operations, on its own keys (`k % tasks == t` among those
/// above `SHARED_KEYS`) or, one time in three, on the keys all tasks share.
async fn worker(cache: TieredCache, report: Report, seed: u64, t: u64, tasks: u64, ops: u64) {
    let mut rng = Rng::stream(seed, t);
    let own = (KEYS - SHARED_KEYS) / tasks;
    for i in 0..ops {
        let seq = i * tasks + t + 1;
        let k = if rng.chance(0.33) {
            rng.below(SHARED_KEYS as usize) as u64
        } else {
            SHARED_KEYS + t + tasks * rng.below(own as usize) as u64
        };
        let kk = key(k);
        match rng.below(100) {
            0..50 => {
                let ttl = rng.chance(0.2);
                let v = value(&kk, 0, seq, value_len(seq));
                report.line(&format!("B {seq} set {k}"));
                let r = if ttl {
                    cache.set_bytes_with_ttl(&kk, v, LONG_TTL).await
                } else {
                    cache.set_bytes(&kk, v).await
                };
                let op = if ttl { "sett" } else { "set" };
                report.line(&format!("A {seq} {op} {k} {}", outcome(&r)));
            }
            50..62 => {
                report.line(&format!("B {seq} rm {k}"));
                let r = cache.remove(&kk).await;
                report.line(&format!("A {seq} rm {k} {}", outcome(&r)));
            }
            62..95 => {
                report.line(&format!("B {seq} get {k}"));
                let res = match cache.get_bytes(&kk).await {
                    Ok(None) => "miss".to_owned(),
                    Ok(Some(v)) => match check_value(&kk, &v) {
                        Ok((_, s)) => format!("hit {s}"),
                        Err(e) => format!("bad {e}"),
                    },
                    Err(e) => format!("err {e}"),
                };
                report.line(&format!("A {seq} get {k} {}", res.replace('\n', " ")));
            }
            _ => {
                report.line(&format!("F {seq}"));
                let r = cache.flush().await;
                let s = cache.stats();
                let res = outcome(&r);
                let (word, rest) = res.split_once(' ').unwrap_or((&res, ""));
                report.line(&format!(
                    "A {seq} flush {word} {} {} {rest}",
                    s.lost_writes, s.disk_errors
                ));
            }
        }
        // Spreads a run over many breaker, recovery and health-check periods.
        if i % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Waits, faults off, until the cache is back to normal on its own.
async fn heal(cache: &TieredCache) -> Result<(), String> {
    let healthy = || {
        let s = cache.stats();
        s.mode == Mode::Tiered
            && s.breaker_state == BreakerState::Closed
            && s.dirty_entries == 0
            && s.write_queue_depth == 0
            && s.stale_keys_pending == 0
    };
    if wait_until(HEAL_LIMIT, healthy).await {
        return Ok(());
    }
    let s = cache.stats();
    Err(format!(
        "mode={} breaker={:?} dirty_entries={} write_queue_depth={} stale_keys_pending={}",
        s.mode, s.breaker_state, s.dirty_entries, s.write_queue_depth, s.stale_keys_pending
    ))
}

fn child() {
    let root = child_dir();
    let seed = env_u64(SEED_ENV);
    let ops = env_u64(OPS_ENV);
    let tasks = env_u64(TASKS_ENV);
    let queue_bytes = usize::try_from(env_u64(QUEUE_ENV)).unwrap();
    let heal_first = env_u64(HEAL_ENV) == 1;
    let durability = match std::env::var(DURABILITY_ENV).unwrap().as_str() {
        "nosync" => Durability::NoSync,
        _ => Durability::Fsync,
    };
    let policy = match std::env::var(POLICY_ENV).unwrap().as_str() {
        "wt" => WritePolicy::WriteThrough,
        _ => WritePolicy::WriteBehind,
    };
    // Everything that could trip over an injected fault outside the cache is set up first:
    // the channel, the runtime (no I/O driver: no eventfd writes to fail), the check that
    // libfiu is really loaded.
    let report = Report(Arc::new(Mutex::new(Pipe::open())));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let preloaded = maps.contains("fiu_posix_preload.so") && maps.contains("fiu_run_preload.so");
    // After a newline: libtest may have printed "test name ... " before it.
    report.line(&format!("\nREADY {}", u8::from(preloaded)));
    report.wait_for("GO");
    rt.block_on(async {
        let cache = match child_builder(&root, policy, durability, queue_bytes)
            .build()
            .await
        {
            Ok(c) => c,
            Err(e) => {
                report.line(&format!("OPEN err {e}"));
                return;
            }
        };
        report.line("OPEN ok");
        let per_task = ops / tasks;
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                tokio::spawn(worker(
                    cache.clone(),
                    report.clone(),
                    seed,
                    t,
                    tasks,
                    per_task,
                ))
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        if heal_first {
            report.line("HEAL");
            report.wait_for("HEAL");
            match heal(&cache).await {
                Ok(()) => report.line(&format!("HEALED ok {}", cache.stats().lost_keys)),
                Err(state) => report.line(&format!(
                    "HEALED timeout {} {state}",
                    cache.stats().lost_keys
                )),
            }
        }
        let r = cache.close().await;
        let s = cache.stats();
        let res = outcome(&r);
        let (word, rest) = res.split_once(' ').unwrap_or((&res, ""));
        report.line(&format!(
            "CLOSE {word} {} {} {rest}",
            s.lost_writes, s.disk_errors
        ));
        report.line(&format!(
            "STATS lost_writes={} disk_errors={} warm_evictions={} task_panics={} \
             memory_only_entries={} probes_run={} probes_ok={} written_back={} writes_ok={} \
             writes_failed={} breaker_opens={} quarantined_files={} corrupted={} \
             hot_evictions={}",
            s.lost_writes,
            s.disk_errors,
            s.warm_evictions,
            s.task_panics,
            s.memory_only_entries,
            s.probes_run,
            s.probes_ok,
            s.written_back,
            s.writes_ok,
            s.writes_failed,
            s.breaker_opens,
            s.quarantined_files,
            s.corrupted,
            s.hot_evictions,
        ));
    });
    report.line("DONE");
    report.wait_for("END");
}
