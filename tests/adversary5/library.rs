//! The library on the hostile trees: what the startup scan finds (`Stats::warm_entries`,
//! `warm_bytes`, `foreign_files`, `warm_index_complete`), what `invalidate_if` and `clear`
//! return and leave, and what `verify` (with and without repair) reports, against transcripts
//! recorded on 2694034 (`golden/lib_<scenario>.txt`).
//!
//! Unreadable directories are made with the `Tamper` fs (an errno on the listing of one exact
//! path): these tests run as root, who reads a mode-000 directory anyway.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::verify::{verify_with_fs, VerifyOptions};
use answercache::{ManualClock, TieredCache};

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

/// Waits for the startup scan: the index complete, or 400 ms of unchanged figures.
pub async fn settle(cache: &TieredCache) {
    let start = Instant::now();
    let mut last = golden::figures(&cache.stats());
    let mut since = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if cache.stats().warm_index_complete {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = golden::figures(&cache.stats());
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > Duration::from_millis(400) {
            return;
        }
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

/// The whole transcript of one scenario: open (the scan), `invalidate_if`, `clear`; then
/// `verify`, and `verify --repair`, each on a fresh copy.
pub async fn transcript(scenario: &Scenario, setup: Setup) -> String {
    let (_tmp, base) = build(scenario.build);
    let root = trees::root(&base);
    let mut t = Transcript::new(&base);
    let fs = Arc::new(Tamper::new());
    setup(&fs, &root);
    match open(&root, fs.clone()).await {
        Err(e) => t.line(format!("open: Err({e})")),
        Ok(cache) => {
            t.stats("after open", &cache);
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
            t.tree("tree after clear", &base);
        }
    }
    for repair in [false, true] {
        let (_tmp, base) = build(scenario.build);
        let root = trees::root(&base);
        let fs = Tamper::new();
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
    v1_symlink,
    v1_file,
    v1_fifo,
    specials_at_entry_paths,
    corrupt_entries,
    tmp_and_quarantine,
    quarantine_symlink,
    tmp_and_quarantine_files,
    tmp_symlink,
    no_tmp_no_quarantine,
);

/// Every listing of `path` fails with `errno`.
fn fail_listing(fs: &Tamper, path: PathBuf, errno: i32) {
    fs.on_times(Op::ReadDir, path, 0, u64::MAX, Action::Fail(errno));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_fan1() {
    check("locked_fan1", |fs, root| {
        fail_listing(fs, trees::fan1(root, trees::LIVE), 5)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_fan2() {
    check("locked_fan2", |fs, root| {
        fail_listing(fs, trees::fan2(root, trees::EXPIRED_KEY), 13)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_two_fan_outs() {
    check("locked_two_fan_outs", |fs, root| {
        fail_listing(fs, trees::fan1(root, trees::LIVE), 13);
        fail_listing(fs, trees::fan2(root, "expired-2"), 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlistable_v1() {
    check("locked_v1", |fs, root| {
        fail_listing(fs, root.join("v1"), 13)
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

/// A directory over the warm budget: the startup scan deletes the least recently used files,
/// by mtime, ties broken by the listing order (which the new walk keeps for the cache's own
/// walks): of files with the same mtime, those listed last go first. The expectation is
/// computed from the listing order of this file system (2694034's rule: a stable sort, newest
/// first, each pushed to the LRU end), so it holds on any file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_scan_over_budget_evicts_by_mtime_then_listing_order() {
    const BUDGET: u64 = 3600;
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
    for a in std::fs::read_dir(root.join("v1")).unwrap() {
        for b in std::fs::read_dir(a.unwrap().path()).unwrap() {
            for f in std::fs::read_dir(b.unwrap().path()).unwrap() {
                let f = f.unwrap();
                let m = f.metadata().unwrap();
                listed.push((f.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    let mut order = listed.clone();
    order.sort_by_key(|e| std::cmp::Reverse(e.2));
    let mut total: u64 = order.iter().map(|e| e.1).sum();
    while total > BUDGET {
        total -= order.pop().unwrap().1;
    }
    let mut want: Vec<PathBuf> = order.into_iter().map(|e| e.0).collect();
    want.sort();
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
    while cache.stats().warm_evictions < evicted && start.elapsed() < Duration::from_secs(10) {
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
            s.warm_evictions,
            s.warm_index_complete
        ),
        (want.len() as u64, total, 60 - want.len() as u64, true)
    );
}
