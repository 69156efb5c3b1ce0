//! Disk full, for real: a tiny tmpfs in a private mount namespace, filled through the cache.
//!
//! Four variants: bytes freed by deleting a filler file, bytes freed by remounting larger,
//! inodes exhausted (`nr_inodes`) and freed by deleting filler files, and a `min_free_bytes`
//! floor that the cache must never eat into. In each: every `set` keeps succeeding (served
//! from memory), the breaker opens after exactly `failure_threshold` consecutive failed
//! writes, memory-only mode follows at exactly `memory_only_after` errors in the window, no
//! temp or partial file is left, and once space is freed the first recovery probe that starts
//! afterwards brings Tiered mode back and writes every entry set meanwhile to disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use answercache::{BreakerState, Mode, TieredCache};

use crate::support::*;

const FAILURE_THRESHOLD: u32 = 3;
const MEMORY_ONLY_AFTER: u32 = 5;
const RECOVERY: Duration = Duration::from_millis(200);
/// Sets made while the breaker is open (skipped by the breaker, kept dirty).
const SETS_WHILE_OPEN: u64 = 3;

#[derive(Debug, Clone, Copy)]
enum Filler {
    None,
    /// One file of this many bytes.
    Bytes(usize),
    /// This many empty files.
    Files(usize),
}

#[derive(Debug, Clone, Copy)]
enum Free {
    DeleteFiller,
    Remount(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    mount: &'static str,
    filler: Filler,
    free: Free,
    value_len: usize,
    /// Sets made while memory-only on a full disk.
    degraded: u64,
    min_free: u64,
    inodes: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "bytes-delete-filler",
        mount: "size=1m",
        filler: Filler::Bytes(600 << 10),
        free: Free::DeleteFiller,
        value_len: 16 << 10,
        degraded: 8,
        min_free: 0,
        inodes: false,
    },
    Case {
        name: "bytes-remount-larger",
        mount: "size=1m",
        filler: Filler::None,
        free: Free::Remount("size=4m"),
        value_len: 16 << 10,
        degraded: 16,
        min_free: 0,
        inodes: false,
    },
    Case {
        name: "inodes",
        mount: "size=8m,nr_inodes=256",
        filler: Filler::Files(160),
        free: Free::DeleteFiller,
        value_len: 1 << 10,
        degraded: 8,
        min_free: 0,
        inodes: true,
    },
    Case {
        name: "min-free-bytes",
        mount: "size=1m",
        filler: Filler::None,
        free: Free::Remount("size=4m"),
        value_len: 16 << 10,
        degraded: 16,
        min_free: 256 << 10,
        inodes: false,
    },
];

#[derive(Debug, Default)]
struct Outcome {
    sets: u64,
    on_disk_when_full: u64,
    no_space_errors: u64,
    recovery_ms: u128,
}

#[test]
fn tmpfs_fills_up_then_recovers() {
    if role().as_deref() == Some("disk-full") {
        return child();
    }
    if !root_or_skip("disk-full") {
        return;
    }
    run_child_in_temp_dir(
        &test_name(module_path!(), "tmpfs_fills_up_then_recovers"),
        "disk-full",
        Wrap::Namespace,
    );
}

fn child() {
    let dir = child_dir();
    let rt = runtime();
    let mut outcomes = Vec::new();
    for case in CASES {
        let mnt = dir.join(case.name);
        let outcome = rt.block_on(run_case(&mnt, &case));
        println!("disk-full {}: {outcome:?}", case.name);
        outcomes.push(outcome);
        umount(&mnt);
    }
    let sum = |f: fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let recovery_max = outcomes.iter().map(|o| o.recovery_ms).max().unwrap_or(0);
    reliability(
        "disk-full",
        &[
            ("variants", &CASES.len()),
            ("sets", &sum(|o| o.sets)),
            ("entries_on_disk_when_full", &sum(|o| o.on_disk_when_full)),
            ("no_space_errors", &sum(|o| o.no_space_errors)),
            ("breaker_opened_after", &FAILURE_THRESHOLD),
            ("memory_only_after", &MEMORY_ONLY_AFTER),
            ("wrong_values", &0),
            ("lost_entries", &0),
            ("leaked_files", &0),
            ("recovery_interval_ms", &RECOVERY.as_millis()),
            ("recovery_ms_max", &recovery_max),
        ],
    );
}

fn fill(mnt: &Path, filler: Filler) {
    match filler {
        Filler::None => {}
        Filler::Bytes(n) => std::fs::write(mnt.join("filler"), vec![7u8; n]).unwrap(),
        Filler::Files(n) => {
            std::fs::create_dir(mnt.join("filler")).unwrap();
            for i in 0..n {
                std::fs::write(mnt.join("filler").join(i.to_string()), b"").unwrap();
            }
        }
    }
}

/// Another program takes whatever the cache left: bytes until ENOSPC, or inodes.
fn top_off(mnt: &Path, inodes: bool) {
    use std::io::Write;
    if inodes {
        std::fs::create_dir_all(mnt.join("topoff")).ok();
        for i in 0.. {
            if std::fs::write(mnt.join("topoff").join(i.to_string()), b"").is_err() {
                break;
            }
        }
    } else {
        let mut f = std::fs::File::create(mnt.join("topoff")).unwrap();
        while f.write_all(&[1u8; 4096]).is_ok() {}
        let _ = f.flush();
    }
}

fn key(i: u64) -> String {
    format!("key{i}")
}

struct Run {
    cache: TieredCache,
    case: Case,
    mnt: PathBuf,
    next: u64,
    /// Check after each set that the cache left `min_free_bytes` (until another program
    /// takes the rest).
    check_floor: bool,
}

impl Run {
    async fn set(&mut self) -> u64 {
        let i = self.next;
        self.next += 1;
        let k = key(i);
        persisted(
            self.cache
                .set_bytes(&k, value(&k, 0, i, self.case.value_len))
                .await,
        );
        if self.check_floor && self.case.min_free > 0 {
            let (avail, _) = available(&self.mnt);
            assert!(
                avail >= self.case.min_free,
                "{}: the cache ate into min_free_bytes: {avail} bytes left",
                self.case.name
            );
        }
        i
    }

    async fn check_all(&self) {
        for i in 0..self.next {
            let got = self.cache.get_bytes(key(i)).await.unwrap();
            let got = got.unwrap_or_else(|| panic!("{}: {} lost", self.case.name, key(i)));
            assert_eq!(check_value(&key(i), &got), Ok((0, i)), "{}", self.case.name);
        }
    }
}

async fn run_case(mnt: &Path, case: &Case) -> Outcome {
    mount_tmpfs(mnt, &format!("{},mode=0700", case.mount));
    fill(mnt, case.filler);
    let root = mnt.join("cache");
    let cache = builder(&root)
        .min_free_bytes(case.min_free)
        .failure_threshold(FAILURE_THRESHOLD)
        .memory_only_after(MEMORY_ONLY_AFTER)
        .error_window(Duration::from_secs(600))
        .open_timeout(Duration::from_millis(50))
        .max_open_timeout(Duration::from_millis(200))
        .recovery_interval(RECOVERY)
        .build()
        .await
        .unwrap();
    let mut run = Run {
        cache: cache.clone(),
        case: *case,
        mnt: mnt.to_owned(),
        next: 0,
        check_floor: true,
    };
    let name = case.name;

    // Fill through the cache until memory-only mode, counting consecutive failed writes.
    let start = Instant::now();
    let mut consecutive = 0u64;
    let mut opened_after = None;
    while cache.mode() == Mode::Tiered {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name}: never memory-only"
        );
        let before = cache.stats();
        run.set().await;
        let after = cache.stats();
        if after.writes_ok > before.writes_ok {
            consecutive = 0;
        } else {
            assert_eq!(after.writes_failed, before.writes_failed + 1, "{name}");
            consecutive += 1;
        }
        if after.breaker_state == BreakerState::Open && cache.mode() == Mode::Tiered {
            if opened_after.is_none() {
                opened_after = Some(consecutive);
                // Keep going while it is open: the sets succeed, the disk is not called.
                let rejected = after.breaker_rejections;
                for _ in 0..SETS_WHILE_OPEN {
                    run.set().await;
                }
                let s = cache.stats();
                assert_eq!(s.breaker_rejections, rejected + SETS_WHILE_OPEN, "{name}");
                assert_eq!(s.writes_failed, after.writes_failed, "{name}");
            }
            // The breaker half-opens on its timer; the next set is its trial call.
            assert!(
                wait_until(Duration::from_secs(10), || cache.breaker_state()
                    != BreakerState::Open)
                .await,
                "{name}: the breaker never half-opened"
            );
        }
    }
    let s = cache.stats();
    let no_space = errors(&cache, "no-space");
    // Another program takes what the cache left, so that the probes fail too.
    run.check_floor = false;
    top_off(mnt, case.inodes);
    assert_eq!(opened_after, Some(u64::from(FAILURE_THRESHOLD)), "{name}");
    assert_eq!(s.writes_failed, u64::from(MEMORY_ONLY_AFTER), "{name}");
    assert_eq!(s.memory_only_entries, 1, "{name}");
    assert_eq!(
        no_space, s.writes_failed,
        "{name}: one no-space error per failed write"
    );
    assert_eq!(
        s.disk_errors, no_space,
        "{name}: {:?}",
        s.disk_errors_by_kind
    );
    let on_disk_when_full = s.writes_ok;
    assert!(on_disk_when_full > 0, "{name}: nothing fit at all");

    // Keep going on the full disk: every set succeeds, from memory.
    for _ in 0..case.degraded {
        run.set().await;
    }
    let (bytes, inodes) = available(mnt);
    if case.inodes {
        assert_eq!(inodes, 0, "{name}: the inodes are really exhausted");
    } else {
        assert!(
            bytes < 4096,
            "{name}: the disk is really full: {bytes} bytes free"
        );
    }
    run.check_all().await;
    let s = cache.stats();
    assert_eq!(s.mode, Mode::MemoryOnly, "{name}");
    assert_eq!(s.probes_ok, 0, "{name}");
    assert_eq!(entry_temp_files(&root), 0, "{name}: temp files left");
    let report = verify_report(&root);
    assert!(report.is_clean(), "{name}: {report:?}");
    assert_eq!(report.healthy, on_disk_when_full, "{name}");
    assert!(
        matches!(
            cache.flush().await,
            Err(answercache::Error::NotPersisted { .. })
        ),
        "{name}: flush reports what is only in memory"
    );

    // Free space: the first probe that starts afterwards brings the disk back.
    let probes_before = cache.stats().probes_run;
    let freed_at = Instant::now();
    match case.free {
        Free::DeleteFiller => {
            if case.inodes {
                std::fs::remove_dir_all(mnt.join("filler")).unwrap();
            } else {
                std::fs::remove_file(mnt.join("filler")).unwrap();
            }
        }
        Free::Remount(opts) => remount(mnt, opts),
    }
    assert!(
        wait_until(Duration::from_secs(20), || cache.mode() == Mode::Tiered).await,
        "{name}: never recovered"
    );
    let recovery_ms = freed_at.elapsed().as_millis();
    let s = cache.stats();
    assert_eq!(s.probes_ok, 1, "{name}");
    assert!(
        s.probes_run <= probes_before + 1,
        "{name}: {} probes failed after the space was freed",
        s.probes_run - probes_before
    );
    cache.flush().await.unwrap();
    let s = cache.stats();
    assert_eq!(s.breaker_state, BreakerState::Closed, "{name}");
    assert_eq!(s.dirty_entries, 0, "{name}");
    assert_eq!(s.lost_writes, 0, "{name}");
    assert_eq!(
        s.writes_ok, run.next,
        "{name}: every entry written once: {s:?}"
    );
    run.check_all().await;
    cache.close().await.unwrap();
    assert_eq!(temp_files(&root), 0, "{name}: temp or probe files left");
    let report = verify_report(&root);
    assert!(report.is_clean(), "{name}: {report:?}");
    assert_eq!(report.healthy, run.next, "{name}");

    // A new process finds every entry, those set while degraded included.
    let reopened = builder(&root).build().await.unwrap();
    run.cache = reopened.clone();
    run.check_all().await;
    assert_eq!(reopened.stats().warm_hits, run.next, "{name}");
    assert_eq!(temp_files(&root), 0, "{name}");
    reopened.close().await.unwrap();
    Outcome {
        sets: run.next,
        on_disk_when_full,
        no_space_errors: no_space,
        recovery_ms,
    }
}
