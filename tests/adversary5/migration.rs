//! Opening a directory of layout 1 (`v1/ab/cd/<64 hex>`): the cache moves what layout 1 would
//! have read into `v2/ab/<64 hex>` before `open` returns, and nothing else (FORMAT.md, "Layout
//! 2, and moving a directory of layout 1"). Every test asserts exact outcomes:
//!
//! - what is served, key by key;
//! - what the directory holds afterwards, byte for byte (`trees::exact_snapshot`: every name
//!   under the test's base directory, files by mode and blake3 of their bytes, symlinks by
//!   target), computed from the tree before by the moves the rules call for;
//! - that nothing outside the cache directory changed (the sentinel directory `outside` is in
//!   the same snapshot) and that no symlink was followed: no call of the fs names a path below
//!   a symlink of the tree, and no file of `v1/` is ever opened (the move is a rename).
//!
//! Unreadable directories are made with `Tamper` (an errno on one listing: these tests run as
//! root) and, for one test, for real, with the binary run as nobody.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use answercache::{Encoding, Error, ManualClock, TieredCache};

use crate::library::{build, open, settle};
use crate::tamper::{self, Action, Op, Tamper};
use crate::trees::{
    self, Exact, EXPIRED_KEY, EXPIRED_VALUE, FOREVER, FOREVER_VALUE, LEGACY_EXPIRED_KEY, LIVE,
    LIVE_VALUE, NOW,
};

type Snap = BTreeMap<PathBuf, Exact>;

/// Expected trees, written as the changes from the tree before.
struct Expect {
    base: PathBuf,
    tree: Snap,
}

impl Expect {
    fn new(base: &Path) -> Self {
        Expect {
            base: base.to_owned(),
            tree: trees::exact_snapshot(base),
        }
    }

    fn rel(&self, p: &Path) -> PathBuf {
        p.strip_prefix(&self.base).unwrap().to_owned()
    }

    /// The file at `from` is now at `to`, unchanged.
    fn moved(&mut self, from: &Path, to: &Path) -> &mut Self {
        let (from, to) = (self.rel(from), self.rel(to));
        let node = self
            .tree
            .remove(&from)
            .unwrap_or_else(|| panic!("{from:?} was not there"));
        assert!(self.tree.insert(to.clone(), node).is_none(), "{to:?}");
        self
    }

    /// `p` is gone.
    fn removed(&mut self, p: &Path) -> &mut Self {
        let p = self.rel(p);
        assert!(self.tree.remove(&p).is_some(), "{p:?} was not there");
        self
    }

    /// The cache created the directory `p` (mode 0700).
    fn created_dir(&mut self, p: &Path) -> &mut Self {
        let p = self.rel(p);
        let old = self.tree.insert(p.clone(), Exact::Dir { mode: 0o700 });
        assert!(old.is_none(), "{p:?} was there");
        self
    }

    /// The cache created its directory lock `<root>/lock` (empty, mode 0600).
    fn lock(&mut self, root: &Path) -> &mut Self {
        let p = self.rel(&root.join("lock"));
        let empty = blake3::hash(b"").to_hex().to_string();
        self.tree.insert(
            p,
            Exact::File {
                mode: 0o600,
                blake3: empty,
            },
        );
        self
    }

    #[track_caller]
    fn check(&self) {
        let now = trees::exact_snapshot(&self.base);
        let lines = |a: &Snap, b: &Snap| -> Vec<String> {
            a.iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, v)| format!("{}: {v:?}", k.display()))
                .collect()
        };
        assert!(
            now == self.tree,
            "the tree is not the expected one\nexpected, not there:\n  {}\nthere, not expected:\n  {}",
            lines(&self.tree, &now).join("\n  "),
            lines(&now, &self.tree).join("\n  "),
        );
    }
}

/// `get_bytes` of each key, as (key, value).
async fn served(cache: &TieredCache, keys: &[&str]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for k in keys {
        let v = cache.get_bytes(k.as_bytes()).await.unwrap();
        out.push((k.to_string(), v.map(|v| v.to_vec())));
    }
    out
}

fn want(pairs: &[(&str, Option<&[u8]>)]) -> Vec<(String, Option<Vec<u8>>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
        .collect()
}

/// The fs was never asked to list or read a path below a symlink of `before` (relative to
/// `base`; the std fs would refuse to go through it, but the walk and the move must not even
/// try: they descend only into what a listing called a directory), nor any path outside the
/// cache directory. (Listing a symlink itself is asked: the move lists `<root>/v1` without
/// looking at it first, and the std fs refuses, `ENOTDIR`, as the cache's walks of `v2` do.)
/// No file under `v1/` was opened; and no file under `v1/` was opened (the move is a rename). That
/// nothing was read through a symlink shows too in what is served: the entries behind the
/// symlinks of these trees are valid for their keys, and are never served.
#[track_caller]
fn nothing_followed(fs: &Tamper, base: &Path, before: &Snap) {
    let root = trees::root(base);
    let links: Vec<PathBuf> = before
        .iter()
        .filter(|(_, n)| matches!(n, Exact::Symlink(_)))
        .map(|(p, _)| base.join(p))
        .collect();
    for p in fs.touched() {
        assert!(
            p.starts_with(&root),
            "a call outside the cache: {}",
            p.display()
        );
    }
    for op in [Op::ReadDir, Op::ReadFile, Op::ReadPrefix] {
        for p in fs.calls(op) {
            for l in &links {
                assert!(
                    p == *l || !p.starts_with(l),
                    "{op:?} through the symlink {}: {}",
                    l.display(),
                    p.display()
                );
            }
        }
    }
    let v1 = root.join("v1");
    for op in [Op::ReadFile, Op::ReadPrefix] {
        let opened: Vec<_> = fs
            .calls(op)
            .into_iter()
            .filter(|p| p.starts_with(&v1))
            .collect();
        assert!(opened.is_empty(), "{op:?} of layout-1 files: {opened:?}");
    }
}

/// Opens `root` over `fs` on the manual clock at [`NOW`]; the move is done when it returns.
async fn open_with(root: &Path, fs: &Arc<Tamper>) -> TieredCache {
    open(root, fs.clone()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_entries_move_byte_for_byte_and_v1_goes() {
    let (_tmp, base) = build(|b| trees::legacy_entries(&trees::root(b)));
    let root = trees::root(&base);
    let before = trees::exact_snapshot(&base);
    let mut e = Expect::new(&base);
    e.lock(&root).created_dir(&root.join("v2"));
    for k in [LIVE, EXPIRED_KEY, FOREVER] {
        e.created_dir(&trees::fan(&root, k))
            .moved(&trees::legacy_path(&root, k), &trees::entry_path(&root, k))
            .removed(&trees::legacy_fan2(&root, k))
            .removed(&trees::legacy_fan1(&root, k));
    }
    e.removed(&root.join("v1"));
    let fs = Arc::new(Tamper::new());
    let cache = open_with(&root, &fs).await;
    e.check();
    nothing_followed(&fs, &base, &before);
    let s = cache.stats();
    assert_eq!(
        (
            s.warm_entries,
            s.warm_bytes,
            s.warm_index_complete,
            s.disk_errors
        ),
        (3, 432, true, 0)
    );
    assert_eq!(
        served(&cache, &[LIVE, EXPIRED_KEY, FOREVER]).await,
        want(&[
            (LIVE, Some(LIVE_VALUE)),
            (EXPIRED_KEY, None),
            (FOREVER, Some(FOREVER_VALUE)),
        ])
    );
    cache.close().await.unwrap();
}

/// The hostile layout-1 tree of `trees::legacy_layout`: only the three valid entries and the
/// corrupt file (a regular file where layout 1 would have read it: moved unread, quarantined by
/// the read) move; the `v1/` file of `twin` is deleted (v2 holds a newer one); everything else
/// stays, byte for byte, and keeps `v1/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_layout_1_tree() {
    let (_tmp, base) = build(trees::scenario("legacy_layout").build);
    let root = trees::root(&base);
    let before = trees::exact_snapshot(&base);
    let mut e = Expect::new(&base);
    e.lock(&root);
    for k in [LIVE, EXPIRED_KEY, FOREVER, "corrupt"] {
        e.created_dir(&trees::fan(&root, k))
            .moved(&trees::legacy_path(&root, k), &trees::entry_path(&root, k));
    }
    // Emptied, removed: every `cd` (and then `ab`) that held only what moved.
    for k in [EXPIRED_KEY, FOREVER, "corrupt", "twin"] {
        e.removed(&trees::legacy_fan2(&root, k));
    }
    for k in [EXPIRED_KEY, "corrupt", "twin"] {
        e.removed(&trees::legacy_fan1(&root, k));
    }
    // v2 wins over v1.
    e.removed(&trees::legacy_path(&root, "twin"));
    let fs = Arc::new(Tamper::new());
    let cache = open_with(&root, &fs).await;
    e.check();
    nothing_followed(&fs, &base, &before);
    let mut keys: Vec<&str> = trees::ALL_KEYS.to_vec();
    keys.extend_from_slice(trees::LEGACY_KEYS);
    assert_eq!(
        served(&cache, &keys).await,
        want(&[
            (LIVE, Some(LIVE_VALUE)),
            (EXPIRED_KEY, None),
            (FOREVER, Some(FOREVER_VALUE)),
            ("twin", Some(b"the new twin, in v2")),
            ("linked", None),
            ("piped", None),
            ("misplaced", None),
            ("wrong-ab", None),
            ("dir-entry", None),
            ("corrupt", None),
            ("via-ab-link", None),
            ("via-cd-link", None),
        ])
    );
    let s = cache.stats();
    assert_eq!(
        (s.corrupted_by_reason.get("magic"), s.quarantined_files),
        (Some(&1), 1)
    );
    cache.close().await.unwrap();
}

/// `v1` itself a symlink to a directory holding a valid layout-1 tree: left, never listed
/// through, nothing moved from outside, nothing served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_a_symlink_is_left_and_never_followed() {
    let (_tmp, base) = build(trees::scenario("legacy_v1_symlink").build);
    let root = trees::root(&base);
    let before = trees::exact_snapshot(&base);
    let mut e = Expect::new(&base);
    e.lock(&root).created_dir(&root.join("v2"));
    let fs = Arc::new(Tamper::new());
    let cache = open_with(&root, &fs).await;
    e.check();
    nothing_followed(&fs, &base, &before);
    assert_eq!(
        served(&cache, &trees::ALL_KEYS).await,
        want(&[(LIVE, None), (EXPIRED_KEY, None), (FOREVER, None)])
    );
    cache.close().await.unwrap();
}

/// A FIFO at a v1 entry path, and a symlink at another to a FIFO outside: opening either
/// would block for ever (no writer); the move never opens a file, so `open` returns, and both
/// stay where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_at_v1_entry_paths_are_never_opened() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        trees::legacy_entries(&r);
        trees::mkfifo(&trees::legacy_path(&r, "piped"));
        trees::mkfifo(&trees::outside(b).join("fifo"));
        trees::link(
            &trees::outside(b).join("fifo"),
            &trees::legacy_path(&r, "linked"),
        );
    });
    let root = trees::root(&base);
    let before = trees::exact_snapshot(&base);
    let mut e = Expect::new(&base);
    e.lock(&root).created_dir(&root.join("v2"));
    for k in [LIVE, EXPIRED_KEY, FOREVER] {
        e.created_dir(&trees::fan(&root, k))
            .moved(&trees::legacy_path(&root, k), &trees::entry_path(&root, k))
            .removed(&trees::legacy_fan2(&root, k))
            .removed(&trees::legacy_fan1(&root, k));
    }
    let fs = Arc::new(Tamper::new());
    let cache = tokio::time::timeout(Duration::from_secs(60), open_with(&root, &fs))
        .await
        .expect("open blocked on a FIFO");
    e.check();
    nothing_followed(&fs, &base, &before);
    let got = tokio::time::timeout(
        Duration::from_secs(60),
        served(&cache, &["piped", "linked", LIVE]),
    )
    .await
    .expect("a get blocked on a FIFO");
    assert_eq!(
        got,
        want(&[("piped", None), ("linked", None), (LIVE, Some(LIVE_VALUE))])
    );
    cache.close().await.unwrap();
}

/// A layout-1 entry whose key has an entry in `v2/` already: the v2 one was written later and
/// wins; the v1 file is deleted, never moved over it (whatever it holds: here a newer-looking
/// value, a longer expiry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_twin_wins() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        trees::put_legacy(&r, LIVE, b"\"v1, never expires\"", 0, Encoding::Json);
        trees::put(&r, LIVE, b"\"v2\"", trees::FUTURE, Encoding::Json);
    });
    let root = trees::root(&base);
    let mut e = Expect::new(&base);
    e.lock(&root)
        .created_dir(&root.join("quarantine"))
        .removed(&trees::legacy_path(&root, LIVE))
        .removed(&trees::legacy_fan2(&root, LIVE))
        .removed(&trees::legacy_fan1(&root, LIVE))
        .removed(&root.join("v1"));
    let fs = Arc::new(Tamper::new());
    let cache = open_with(&root, &fs).await;
    e.check();
    assert_eq!(
        served(&cache, &[LIVE]).await,
        want(&[(LIVE, Some(b"\"v2\""))])
    );
    assert_eq!(fs.calls(Op::RemoveFile), [trees::legacy_path(&root, LIVE)]);
    cache.close().await.unwrap();
}

/// `v2/ab` is a symlink to a directory outside: moving a v1 entry into it would put the file
/// outside the cache. The rename refuses (no symlink on the way), the move stops there, and
/// nothing reaches the directory outside; the v1 file stays, never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_fan_out_symlink_is_not_followed_by_the_move() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::create_dir_all(r.join("quarantine")).unwrap();
        trees::put_legacy(&r, LIVE, LIVE_VALUE, trees::FUTURE, Encoding::Json);
        let o = trees::outside(b).join("elsewhere");
        std::fs::create_dir_all(&o).unwrap();
        std::fs::write(o.join("sentinel"), b"never touched").unwrap();
        trees::link(&o, &trees::fan(&r, LIVE));
    });
    let root = trees::root(&base);
    let before = trees::exact_snapshot(&base);
    let mut e = Expect::new(&base);
    e.lock(&root);
    let fs = Arc::new(Tamper::new());
    let cache = open_with(&root, &fs).await;
    e.check();
    nothing_followed(&fs, &base, &before);
    // The rename refuses (`ENOTDIR`: the std fs opens the target's directory without
    // following it, and a symlink is not a directory), which the move takes for a missing
    // `v2/ab`; creating it refuses too, and the move stops.
    let s = cache.stats();
    assert_eq!(
        (
            s.disk_errors_by_kind.get("path"),
            s.last_disk_error.as_deref()
        ),
        (Some(&2), None)
    );
    assert_eq!(
        fs.calls(Op::CreateDirAll).last(),
        Some(&trees::fan(&root, LIVE))
    );
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    cache.close().await.unwrap();
}

/// `v2/ab` is a regular file: the move cannot put the entry there; the v1 file and the file
/// stay as they were. (Since adversary6 F4 a blocked `v2/ab` blocks only its entries and is
/// no disk error: the assertions on `last_disk_error` now say `None`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_fan_out_file_stops_the_move() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::create_dir_all(r.join("quarantine")).unwrap();
        trees::put_legacy(&r, LIVE, LIVE_VALUE, trees::FUTURE, Encoding::Json);
        trees::write(&trees::fan(&r, LIVE), b"a file at v2/ab", Duration::ZERO);
    });
    let root = trees::root(&base);
    let mut e = Expect::new(&base);
    e.lock(&root);
    let fs = Arc::new(Tamper::new());
    let cache = open_with(&root, &fs).await;
    e.check();
    let s = cache.stats();
    assert_eq!(s.last_disk_error.as_deref(), None);
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    cache.close().await.unwrap();
}

/// A layout-1 tree of five `v1/ab`, LIVE's unlistable. The move goes through `v1/ab` in listing order and stops at the failing one: those
/// listed before it are moved, it and those after are not (and are never served). The next
/// open, with the directory readable, moves the rest and removes `v1/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlistable_v1_fan_out_stops_the_move_until_the_next_open() {
    let keys = [LIVE, EXPIRED_KEY, FOREVER, "expired-2", "garbage"];
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        trees::legacy_entries(&r);
        trees::put_legacy(&r, "expired-2", b"another", trees::EXPIRED, Encoding::Raw);
        trees::put_legacy(&r, "garbage", b"valid after all", 0, Encoding::Raw);
    });
    let root = trees::root(&base);
    // The move's order: the listing of v1 (what `StdFs::read_dir` returns).
    let order: Vec<PathBuf> = std::fs::read_dir(root.join("v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let failing = trees::legacy_fan1(&root, LIVE);
    let stop = order.iter().position(|p| *p == failing).unwrap();
    let mut e = Expect::new(&base);
    e.lock(&root).created_dir(&root.join("v2"));
    let mut moved = Vec::new();
    for k in keys {
        if order[..stop].contains(&trees::legacy_fan1(&root, k)) {
            moved.push(k);
            e.created_dir(&trees::fan(&root, k))
                .moved(&trees::legacy_path(&root, k), &trees::entry_path(&root, k))
                .removed(&trees::legacy_fan2(&root, k))
                .removed(&trees::legacy_fan1(&root, k));
        }
    }
    let fs = Arc::new(Tamper::new());
    fs.on_times(Op::ReadDir, failing.clone(), 0, u64::MAX, Action::Fail(13));
    let cache = open_with(&root, &fs).await;
    e.check();
    let s = cache.stats();
    assert_eq!(
        (
            s.warm_entries,
            s.disk_errors_by_kind.get("permission"),
            s.last_disk_error.as_deref()
        ),
        (
            moved.len() as u64,
            Some(&1),
            Some("layout migration: Permission denied (os error 13)")
        )
    );
    let value = |k: &str| -> Option<&'static [u8]> {
        match k {
            LIVE => Some(LIVE_VALUE),
            FOREVER => Some(FOREVER_VALUE),
            "garbage" => Some(b"valid after all"),
            _ => None,
        }
    };
    let expected: Vec<(&str, Option<&[u8]>)> = keys
        .iter()
        .map(|k| (*k, value(k).filter(|_| moved.contains(k))))
        .collect();
    assert_eq!(served(&cache, &keys).await, want(&expected));
    cache.close().await.unwrap();
    // Readable again: the rest moves; `v1/` goes.
    let cache = open_with(&root, &Arc::new(Tamper::new())).await;
    assert!(!root.join("v1").exists());
    let expected: Vec<(&str, Option<&[u8]>)> = keys.iter().map(|k| (*k, value(k))).collect();
    assert_eq!(served(&cache, &keys).await, want(&expected));
    cache.close().await.unwrap();
}

/// What a removal does while the move is unfinished (`v1/ab` of LIVE unlistable): it deletes
/// the key's `v1/` file too, so the next open, which moves the rest, cannot bring the removed
/// answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_while_the_move_is_unfinished_holds_after_it() {
    let (_tmp, base) = build(trees::locked_scenario("locked_legacy_fan").build);
    let root = trees::root(&base);
    let fs = Arc::new(Tamper::new());
    fs.on_times(
        Op::ReadDir,
        trees::legacy_fan1(&root, LIVE),
        0,
        u64::MAX,
        Action::Fail(13),
    );
    let cache = open_with(&root, &fs).await;
    assert!(trees::legacy_path(&root, LIVE).exists());
    // Not in the index (its file is not in v2/): `remove` reports nothing removed.
    assert!(!cache.remove(LIVE.as_bytes()).await.unwrap());
    cache.flush().await.unwrap();
    assert!(!trees::legacy_path(&root, LIVE).exists());
    assert!(trees::legacy_path(&root, LEGACY_EXPIRED_KEY).exists());
    cache.close().await.unwrap();
    let cache = open_with(&root, &Arc::new(Tamper::new())).await;
    assert!(!root.join("v1").exists());
    assert!(trees::entry_path(&root, LEGACY_EXPIRED_KEY).exists());
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    cache.close().await.unwrap();
}

/// A value that can live only in memory (larger than the warm budget), set while the move is
/// unfinished: the key's `v1/` file is deleted with its older v2 file, so no older answer
/// comes back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_only_write_while_the_move_is_unfinished_deletes_the_v1_file() {
    let (_tmp, base) = build(trees::locked_scenario("locked_legacy_fan").build);
    let root = trees::root(&base);
    let fs = Arc::new(Tamper::new());
    fs.on_times(
        Op::ReadDir,
        trees::legacy_fan1(&root, LIVE),
        0,
        u64::MAX,
        Action::Fail(13),
    );
    let build = |fs: Arc<Tamper>| {
        TieredCache::builder(&root)
            .fs(fs)
            .clock(Arc::new(ManualClock::new(NOW)))
            .sweep_interval(Duration::from_secs(3600))
            .warm_capacity_bytes(30_000)
            .build()
    };
    let cache = build(fs.clone()).await.unwrap();
    settle(&cache).await;
    // 40 KB that gzip cannot shrink: more than the budget, so memory only.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let big: Vec<u8> = (0..40_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // Memory only. Whether `set` waits to learn it (and says `NotPersisted`) or returns
    // first depends on the writer's timing; what is on disk after the flush does not.
    let r = cache.set_bytes(LIVE.as_bytes(), big.clone()).await;
    assert!(
        matches!(r, Ok(()) | Err(Error::NotPersisted { failed: 1, .. })),
        "{r:?}"
    );
    let r = cache.flush().await;
    assert!(
        matches!(r, Ok(()) | Err(Error::NotPersisted { failed: 1, .. })),
        "{r:?}"
    );
    assert!(!trees::legacy_path(&root, LIVE).exists());
    assert!(!trees::entry_path(&root, LIVE).exists());
    assert_eq!(
        served(&cache, &[LIVE]).await,
        vec![(LIVE.to_owned(), Some(big))]
    );
    // Closing says the value never reached the disk.
    let r = cache.close().await;
    assert!(
        matches!(r, Err(Error::NotPersisted { failed: 1, .. })),
        "{r:?}"
    );
    let cache = build(Arc::new(Tamper::new())).await.unwrap();
    settle(&cache).await;
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    cache.close().await.unwrap();
}

/// A write while the move is unfinished puts the new value in `v2/`; the next open finds the
/// old `v1/` file under it and deletes it: the new value is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_the_move_is_unfinished_wins_at_the_next_open() {
    let (_tmp, base) = build(trees::locked_scenario("locked_legacy_fan").build);
    let root = trees::root(&base);
    let fs = Arc::new(Tamper::new());
    fs.on_times(
        Op::ReadDir,
        trees::legacy_fan1(&root, LIVE),
        0,
        u64::MAX,
        Action::Fail(13),
    );
    let cache = open_with(&root, &fs).await;
    cache
        .set_bytes(LIVE.as_bytes(), b"\"newer\"".to_vec())
        .await
        .unwrap();
    cache.flush().await.unwrap();
    cache.close().await.unwrap();
    let cache = open_with(&root, &Arc::new(Tamper::new())).await;
    assert!(!root.join("v1").exists());
    assert_eq!(
        served(&cache, &[LIVE]).await,
        want(&[(LIVE, Some(b"\"newer\""))])
    );
    cache.close().await.unwrap();
}

/// `clear` while the move is unfinished: its fence is older than nothing on disk, so what the
/// next open moves in is cleared too (never served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_while_the_move_is_unfinished_holds_after_it() {
    let (_tmp, base) = build(trees::locked_scenario("locked_legacy_fan").build);
    let root = trees::root(&base);
    let fs = Arc::new(Tamper::new());
    fs.on_times(
        Op::ReadDir,
        trees::legacy_fan1(&root, LIVE),
        0,
        u64::MAX,
        Action::Fail(13),
    );
    let cache = open_with(&root, &fs).await;
    cache.clear().await.unwrap();
    cache.close().await.unwrap();
    let cache = open_with(&root, &Arc::new(Tamper::new())).await;
    assert!(!root.join("v1").exists());
    assert!(trees::entry_path(&root, LIVE).exists());
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    cache.close().await.unwrap();
}

/// The v1 entry is replaced by a symlink to a valid entry of the key outside after its
/// directory was listed, before it is renamed (a race the move cannot see: it never opens the
/// file). The rename moves the symlink itself into `v2/` (not what it points at); a read
/// never follows it: nothing is served, the entry outside is untouched, and the read
/// quarantines the symlink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_entry_replaced_by_a_symlink_after_its_listing_is_never_followed() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        trees::legacy_entries(&r);
        let o = trees::outside(b).join("entry");
        trees::put_at(&o, LIVE, b"\"outside\"", 0, Encoding::Json);
    });
    let root = trees::root(&base);
    let entry = trees::legacy_path(&root, LIVE);
    let target = trees::outside(&base).join("entry");
    let fs = Arc::new(Tamper::new());
    let (at, to) = (entry.clone(), target.clone());
    fs.on(
        Op::ReadDir,
        trees::legacy_fan2(&root, LIVE),
        0,
        Action::After(Box::new(move || tamper::replace_with_symlink(&at, &to))),
    );
    let outside_before = trees::exact_snapshot(&trees::outside(&base));
    let cache = open_with(&root, &fs).await;
    assert_eq!(fs.fired(), 1);
    let moved = trees::entry_path(&root, LIVE);
    assert_eq!(std::fs::read_link(&moved).unwrap(), target);
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    assert!(std::fs::symlink_metadata(&moved).is_err());
    let s = cache.stats();
    assert_eq!(
        (
            s.corrupted_by_reason.get("not-a-regular-file"),
            s.quarantined_files
        ),
        (Some(&1), 1)
    );
    cache.close().await.unwrap();
    assert_eq!(
        trees::exact_snapshot(&trees::outside(&base)),
        outside_before
    );
}

/// `v2/ab` becomes a symlink to a directory outside just before the move renames a v1 entry
/// into it: the rename refuses (no symlink on the way); nothing reaches the directory outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_fan_out_replaced_by_a_symlink_before_the_rename_is_not_followed() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        trees::legacy_entries(&r);
        let o = trees::outside(b).join("elsewhere");
        std::fs::create_dir_all(&o).unwrap();
        std::fs::write(o.join("sentinel"), b"never touched").unwrap();
    });
    let root = trees::root(&base);
    let fan = trees::fan(&root, LIVE);
    let elsewhere = trees::outside(&base).join("elsewhere");
    let fs = Arc::new(Tamper::new());
    let (at, to) = (fan.clone(), elsewhere.clone());
    fs.on(
        Op::RenameNoreplace,
        trees::legacy_path(&root, LIVE),
        0,
        Action::Before(Box::new(move || {
            let _ = std::fs::create_dir_all(at.parent().unwrap());
            tamper::replace_with_symlink(&at, &to)
        })),
    );
    let outside_before = trees::exact_snapshot(&trees::outside(&base));
    let cache = open_with(&root, &fs).await;
    assert_eq!(fs.fired(), 1);
    assert_eq!(
        trees::exact_snapshot(&trees::outside(&base)),
        outside_before
    );
    assert!(trees::legacy_path(&root, LIVE).exists());
    // The std fs opens the directory of the rename's target without following a symlink:
    // the symlink itself is not a directory.
    assert_eq!(cache.stats().last_disk_error.as_deref(), None);
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    cache.close().await.unwrap();
}

/// An emptied `v1/ab/cd` replaced by a symlink to a directory outside just before the move
/// removes it: the symlink goes, never what it points at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_v1_directory_replaced_by_a_symlink_before_its_removal() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        trees::legacy_entries(&r);
        trees::legacy_entries(&trees::outside(b));
    });
    let root = trees::root(&base);
    let cd = trees::legacy_fan2(&root, LIVE);
    let outside_cd = trees::legacy_fan2(&trees::outside(&base), LIVE);
    let fs = Arc::new(Tamper::new());
    let (at, to) = (cd.clone(), outside_cd.clone());
    fs.on(
        Op::RemoveDirAll,
        cd.clone(),
        0,
        Action::Before(Box::new(move || tamper::replace_with_symlink(&at, &to))),
    );
    let outside_before = trees::exact_snapshot(&trees::outside(&base));
    let cache = open_with(&root, &fs).await;
    assert_eq!(fs.fired(), 1);
    assert_eq!(
        trees::exact_snapshot(&trees::outside(&base)),
        outside_before
    );
    assert!(!root.join("v1").exists());
    assert_eq!(
        served(&cache, &[LIVE]).await,
        want(&[(LIVE, Some(LIVE_VALUE))])
    );
    cache.close().await.unwrap();
}

/// Removing an emptied `v1/ab/cd` fails (EIO): the move stops after the entries of that
/// `v1/ab` moved; the next open removes what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_removal_of_an_emptied_directory_is_finished_next_open() {
    let (_tmp, base) = build(|b| trees::legacy_entries(&trees::root(b)));
    let root = trees::root(&base);
    let cd = trees::legacy_fan2(&root, LIVE);
    let fs = Arc::new(Tamper::new());
    fs.on(Op::RemoveDirAll, cd.clone(), 0, Action::Fail(5));
    let cache = open_with(&root, &fs).await;
    assert!(cd.is_dir());
    assert!(trees::entry_path(&root, LIVE).exists());
    assert_eq!(
        cache.stats().last_disk_error.as_deref(),
        Some("layout migration: Input/output error (os error 5)")
    );
    assert_eq!(
        served(&cache, &[LIVE]).await,
        want(&[(LIVE, Some(LIVE_VALUE))])
    );
    cache.close().await.unwrap();
    let cache = open_with(&root, &Arc::new(Tamper::new())).await;
    assert!(!root.join("v1").exists());
    assert_eq!(
        served(&cache, &[LIVE, FOREVER, EXPIRED_KEY]).await,
        want(&[
            (LIVE, Some(LIVE_VALUE)),
            (FOREVER, Some(FOREVER_VALUE)),
            (EXPIRED_KEY, None)
        ])
    );
    cache.close().await.unwrap();
    let _ = EXPIRED_VALUE;
}

/// A v2 twin that is not an entry file (a FIFO planted at LIVE's v2 path): it is in the way,
/// so the v1 file is deleted, never moved over it; the read quarantines the FIFO; nothing is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_twin_that_is_a_fifo_wins_too() {
    let (_tmp, base) = build(|b| {
        let r = trees::root(b);
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::create_dir_all(r.join("quarantine")).unwrap();
        trees::put_legacy(&r, LIVE, LIVE_VALUE, trees::FUTURE, Encoding::Json);
        trees::mkfifo(&trees::entry_path(&r, LIVE));
    });
    let root = trees::root(&base);
    let mut e = Expect::new(&base);
    e.lock(&root)
        .removed(&trees::legacy_path(&root, LIVE))
        .removed(&trees::legacy_fan2(&root, LIVE))
        .removed(&trees::legacy_fan1(&root, LIVE))
        .removed(&root.join("v1"));
    let fs = Arc::new(Tamper::new());
    let cache = open_with(&root, &fs).await;
    e.check();
    assert_eq!(served(&cache, &[LIVE]).await, want(&[(LIVE, None)]));
    let s = cache.stats();
    assert_eq!(
        (
            s.corrupted_by_reason.get("not-a-regular-file"),
            s.quarantined_files
        ),
        (Some(&1), 1)
    );
    cache.close().await.unwrap();
    assert!(std::fs::symlink_metadata(trees::entry_path(&root, LIVE)).is_err());
}
