//! The library on the hostile trees: what opening a cache changes (the layout-1 migration
//! included), what the startup scan finds (`Stats::warm_entries`, `warm_bytes`,
//! `warm_disk_bytes`, `foreign_files`, `warm_index_complete`), what `invalidate_if` and
//! `clear` return and leave, what `get` serves, and what `verify` (with and without repair)
//! reports, against transcripts recorded on layout 2 and read line by line
//! (`golden/lib_<scenario>.txt`).
//!
//! Unreadable directories are made with the `Tamper` fs (an errno on the listing of one exact
//! path): these tests run as root, who reads a mode-000 directory anyway.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::verify::{verify_with_fs, VerifyOptions};
use answercache::{BreakerState, ManualClock, Mode, TieredCache};

use crate::golden::{self, Transcript};
use crate::tamper::{Action, Op, Tamper};
use crate::trees::{self, Scenario, NOW};

/// A fresh directory holding `scenario`, canonical (the cache canonicalizes its root, and the
/// tamper hooks match exact paths).
pub fn build(scenario: fn(&Path)) -> (tempfile::TempDir, PathBuf) {
    trees::fixed_umask();
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    scenario(&base);
    (tmp, base)
}

/// Opens a cache on `root` over `fs`, on a manual clock at [`NOW`], and waits for its startup
/// scan: until the index is complete, or until `settle` after the scan could not complete.
pub async fn open(root: &Path, fs: Arc<Tamper>) -> answercache::Result<TieredCache> {
    let cache = TieredCache::builder(root)
        .fs(fs)
        .clock(Arc::new(ManualClock::new(NOW)))
        .sweep_interval(Duration::from_secs(3600))
        .build()
        .await?;
    settle(&cache).await;
    Ok(cache)
}

/// Waits for the startup scan: until the index is complete, or the scan failed (the cache
/// notes its error as `scan: ...`), or the scan cannot run (memory-only, or the breaker open:
/// then until the figures stay the same for a second). A scan that does none of these within
/// 60 s fails the test: a loaded machine slows the scan, it must not change a transcript.
pub async fn settle(cache: &TieredCache) {
    let start = Instant::now();
    let mut last = golden::figures(&cache.stats());
    let mut since = Instant::now();
    loop {
        let s = cache.stats();
        if s.warm_index_complete
            || s.last_disk_error
                .as_deref()
                .is_some_and(|e| e.starts_with("scan: "))
        {
            return;
        }
        let now = golden::figures(&s);
        if now != last {
            last = now;
            since = Instant::now();
        } else if (s.mode != Mode::Tiered || s.breaker_state == BreakerState::Open)
            && since.elapsed() > Duration::from_secs(1)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the startup scan neither finished nor failed in 60 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The verify options of these tests: the clock at [`NOW`].
pub fn options(repair: bool) -> VerifyOptions {
    VerifyOptions {
        repair,
        now_ms: NOW,
        ..VerifyOptions::default()
    }
}

/// `verify` over `fs` on `root`, as text.
pub fn verify_text(fs: &Tamper, root: &Path, repair: bool) -> String {
    match verify_with_fs(fs, root, &options(repair), None) {
        Ok(r) => serde_json::to_string(&r).unwrap(),
        Err(e) => format!("Err({e}) kind {:?}", e.kind()),
    }
}

/// How a scenario's directory is tampered with: hooks added to the fs before the cache opens
/// (and again before `verify`, on a fresh copy).
pub type Setup = fn(&Tamper, &Path);

fn no_setup(_: &Tamper, _: &Path) {}

/// A value as a transcript shows it: short printable text as text, anything else by length
/// and hash.
pub fn show_value(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if s.len() <= 60 && !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!(
            "<{} bytes, blake3 {}>",
            v.len(),
            &blake3::hash(v).to_hex()[..16]
        ),
    }
}

/// `get_bytes` of `key`, as a transcript line.
pub async fn get_line(cache: &TieredCache, key: &str) -> String {
    let got = cache.get_bytes(key.as_bytes()).await;
    let shown = match got {
        Ok(Some(v)) => format!("Ok(Some({}))", show_value(&v)),
        other => format!("{other:?}"),
    };
    format!("get {key}: {shown}")
}

/// The whole transcript of one scenario: open (the migration of a layout-1 directory and the
/// scan, with what opening changed on disk), `invalidate_if`, `clear`; then, on a fresh copy,
/// `get` of every key; then `verify`, and `verify --repair`, each on a fresh copy.
pub async fn transcript(scenario: &Scenario, setup: Setup) -> String {
    let (_tmp, base) = build(scenario.build);
    let root = trees::root(&base);
    let mut t = Transcript::new(&base);
    let before = t.snapshot(&base);
    let fs = Arc::new(Tamper::sorted());
    setup(&fs, &root);
    match open(&root, fs.clone()).await {
        Err(e) => t.line(format!("open: Err({e})")),
        Ok(cache) => {
            t.stats("after open", &cache);
            t.changes("open changed", &before, &base);
            let r = cache.invalidate_if(|k| k.starts_with(b"expired")).await;
            t.line(format!("invalidate_if(expired*): {r:?}"));
            // The removals are queued: what the disk holds is known after a flush.
            t.line(format!("flush: {:?}", cache.flush().await));
            t.stats("after invalidate_if", &cache);
            let r = cache.clear().await;
            t.line(format!("clear: {r:?}"));
            t.line(format!("flush: {:?}", cache.flush().await));
            t.stats("after clear", &cache);
            let _ = cache.close().await;
            t.line(format!("hooks fired: {}", fs.fired()));
            t.tree("tree after clear", &base);
        }
    }
    {
        let (_tmp, base) = build(scenario.build);
        let root = trees::root(&base);
        let mut g = Transcript::new(&base);
        let before = g.snapshot(&base);
        let fs = Arc::new(Tamper::sorted());
        setup(&fs, &root);
        match open(&root, fs.clone()).await {
            Err(e) => g.line(format!("gets: open: Err({e})")),
            Ok(cache) => {
                let mut keys: Vec<&str> = trees::ALL_KEYS.to_vec();
                keys.extend_from_slice(scenario.keys);
                for key in keys {
                    g.line(get_line(&cache, key).await);
                }
                g.line(format!("flush: {:?}", cache.flush().await));
                g.stats("after gets", &cache);
                let _ = cache.close().await;
                g.changes("open and gets changed", &before, &base);
            }
        }
        t.text.push_str(&g.text);
    }
    for repair in [false, true] {
        let (_tmp, base) = build(scenario.build);
        let root = trees::root(&base);
        let fs = Tamper::sorted();
        setup(&fs, &root);
        let mut v = Transcript::new(&base);
        v.line(format!(
            "verify(repair={repair}): {}",
            verify_text(&fs, &root, repair)
        ));
        if repair {
            v.tree("tree after repair", &base);
        }
        t.text.push_str(&v.text);
    }
    t.text
}

async fn check(name: &str, setup: Setup) {
    let scenario = trees::scenarios()
        .into_iter()
        .chain(trees::locked_scenarios())
        .find(|s| s.name == name)
        .unwrap();
    let text = transcript(&scenario, setup).await;
    golden::check(&format!("lib_{name}"), &text);
}

macro_rules! library {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check(stringify!($name), no_setup).await;
        }
    )*};
}

library!(
    clean,
    root_symlink,
    empty_root,
    empty_layout,
    foreign_names,
    symlinks_in_layout,
    v2_symlink,
    v2_file,
    v2_fifo,
    specials_at_entry_paths,
    corrupt_entries,
    tmp_and_quarantine,
    quarantine_symlink,
    tmp_and_quarantine_files,
    tmp_symlink,
    no_tmp_no_quarantine,
    legacy_clean,
    legacy_layout,
    legacy_v1_symlink,
);

/// Every listing of `path` fails with `errno`.
fn fail_listing(fs: &Tamper, path: PathBuf, errno: i32) {
    fs.on_times(Op::ReadDir, path, 0, u64::MAX, Action::Fail(errno));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_fan() {
    check("locked_fan", |fs, root| {
        fail_listing(fs, trees::fan(root, trees::LIVE), 5)
    })
    .await;
}

/// Layout 1's second level planted inside a fan-out directory is foreign: never listed, so
/// its failing listing changes nothing (the transcript shows the hook never fired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_foreign_dir() {
    check("locked_foreign_dir", |fs, root| {
        fail_listing(fs, trees::locked_path(root, "@foreign:expired-raw"), 13)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_two_fan_outs() {
    check("locked_two_fan_outs", |fs, root| {
        fail_listing(fs, trees::fan(root, trees::LIVE), 13);
        fail_listing(fs, trees::fan(root, "expired-2"), 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_v2() {
    check("locked_v2", |fs, root| {
        fail_listing(fs, root.join("v2"), 13)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_root() {
    check("locked_root", |fs, root| {
        fail_listing(fs, root.to_owned(), 13)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_tmp_and_quarantine() {
    check("locked_tmp", |fs, root| {
        fail_listing(fs, root.join("tmp"), 13);
        fail_listing(fs, root.join("quarantine"), 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_entries() {
    check("locked_entry_file", |fs, root| {
        for key in [trees::LIVE, "garbage", "expired-2"] {
            let path = trees::entry_path(root, key);
            for op in [Op::ReadFile, Op::ReadPrefix] {
                fs.on_times(op, path.clone(), 0, u64::MAX, Action::Fail(13));
            }
        }
    })
    .await;
}

/// A layout-1 directory whose `v1/ab` (LIVE's) cannot be listed: the migration stops there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_legacy_fan() {
    check("locked_legacy_fan", |fs, root| {
        fail_listing(fs, trees::legacy_fan1(root, trees::LIVE), 13)
    })
    .await;
}

/// A directory over the warm budget: the startup scan deletes the least recently used files,
/// by mtime, ties broken by the listing order (which the walk keeps for the cache's own
/// walks): of files with the same mtime, those listed last go first. The budget counts what the
/// files take on disk (FORMAT.md, "What the warm budget counts"): each file's length rounded
/// up to the allocation unit (4 KiB: `Tamper` does not say, so the default), 128 bytes for its
/// directory entry, and 4 KiB for each fan-out directory `v2/ab` that still holds a kept
/// entry. The expectation is computed from the listing order of this file system (a stable
/// sort, newest first, each pushed to the LRU end; victims taken from the oldest end until the
/// count is within budget), so it holds on any file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_scan_over_budget_evicts_by_mtime_then_listing_order() {
    const BUDGET: u64 = 160_000;
    const UNIT: u64 = 4096;
    let (_tmp, base) = build(|base| {
        let r = trees::root(base);
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..60u64 {
            let p = trees::put(
                &r,
                &format!("tie-{i}"),
                &[b'v'; 300],
                0,
                answercache::Encoding::Raw,
            );
            // A third older, a third newer, a third sharing one mtime.
            let t = match i % 3 {
                0 => t0 - Duration::from_secs(i),
                1 => t0 + Duration::from_secs(i),
                _ => t0,
            };
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(t).unwrap();
        }
    });
    let root = trees::root(&base);
    // The files in listing order (getdents order at each level, as `StdFs::read_dir` lists).
    let mut listed: Vec<(PathBuf, u64, std::time::SystemTime)> = Vec::new();
    for a in std::fs::read_dir(root.join("v2")).unwrap() {
        for f in std::fs::read_dir(a.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let m = f.metadata().unwrap();
            listed.push((f.path(), m.len(), m.modified().unwrap()));
        }
    }
    assert_eq!(listed.len(), 60);
    let disk = |kept: &[(PathBuf, u64, std::time::SystemTime)]| -> u64 {
        let files: u64 = kept.iter().map(|e| e.1.div_ceil(UNIT) * UNIT + 128).sum();
        let mut dirs: Vec<&Path> = kept.iter().map(|e| e.0.parent().unwrap()).collect();
        dirs.sort();
        dirs.dedup();
        files + dirs.len() as u64 * UNIT
    };
    let mut order = listed.clone();
    order.sort_by_key(|e| std::cmp::Reverse(e.2));
    while disk(&order) > BUDGET {
        order.pop().unwrap();
    }
    let (kept_disk, kept_bytes) = (disk(&order), order.iter().map(|e| e.1).sum::<u64>());
    let mut want: Vec<PathBuf> = order.into_iter().map(|e| e.0).collect();
    want.sort();
    // Some evicted, some kept, and the fan-out directories matter: the budget is not a
    // multiple of the per-file charge alone.
    assert!((10..50).contains(&want.len()), "{} kept", want.len());
    let cache = TieredCache::builder(&root)
        .fs(Arc::new(Tamper::new()))
        .clock(Arc::new(ManualClock::new(NOW)))
        .sweep_interval(Duration::from_secs(3600))
        .warm_capacity_bytes(BUDGET)
        .build()
        .await
        .unwrap();
    settle(&cache).await;
    // The scan marks the index complete before it deletes the files it evicted: wait for the
    // deletions (counted one by one) too, or a loaded machine sees files still there.
    let evicted = 60 - want.len() as u64;
    let start = Instant::now();
    while cache.stats().warm_evictions < evicted && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = cache.stats();
    let _ = cache.close().await;
    let mut kept: Vec<PathBuf> = listed
        .into_iter()
        .map(|e| e.0)
        .filter(|p| p.exists())
        .collect();
    kept.sort();
    assert_eq!(kept, want);
    assert_eq!(
        (
            s.warm_entries,
            s.warm_bytes,
            s.warm_disk_bytes,
            s.warm_evictions,
            s.warm_index_complete
        ),
        (want.len() as u64, kept_bytes, kept_disk, evicted, true)
    );
}
