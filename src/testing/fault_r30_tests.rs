//! r30: adversarial tests of `FaultFs::write_new`'s look at the parent directory (commits
//! 8c85421 and d2e6d21): a create that found no directory is not counted, fires no rule and
//! must not reach the disk; with a symlink on the way the inner fs answers. Each test
//! compares `FaultFs::std()` with `real_fs()` or checks what lands against what is counted.
//! See `tests/core/REVIEW_R30_FINDINGS.md`.
//!
//! Tests that fail on the code they were written against are `#[ignore]`d with their finding
//! id; the others guard behaviour that holds.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::fs::{DirEntryInfo, FileRead, StdFs};

const ENOTDIR: i32 = 20;
const ENAMETOOLONG: i32 = 36;
const ELOOP: i32 = 40;

/// Another writer acting between `FaultFs`'s look at the parent and the create: runs `hook`
/// (once) just before the inner create.
struct Hooked {
    inner: StdFs,
    hook: Box<dyn Fn() + Send + Sync>,
    done: AtomicBool,
    /// `create_dir_all` calls that reached the real fs.
    dirs_made: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooked")
    }
}

impl Hooked {
    fn new(hook: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Hooked {
            inner: real_fs(),
            hook: Box::new(hook),
            done: AtomicBool::new(false),
            dirs_made: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

impl Fs for Hooked {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.inner.read_file(path, max_len)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        if !self.done.swap(true, Ordering::SeqCst) {
            (self.hook)();
        }
        self.inner.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.dirs_made.fetch_add(1, Ordering::SeqCst);
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.inner.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.inner.available_space(path)
    }
}

fn errno(r: &io::Result<()>) -> Option<i32> {
    r.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// One create through `FaultFs::std()` and one through the real fs, at `path` each (the
/// first one's file removed before the second).
fn both(path: &Path) -> (Option<i32>, u64, Option<i32>) {
    let fs = FaultFs::std();
    let faulted = fs.write_new(path, b"value", false);
    let _ = std::fs::remove_file(path);
    let real = real_fs().write_new(path, b"value", false);
    let _ = std::fs::remove_file(path);
    (errno(&faulted), fs.calls(FsOp::WriteNew), errno(&real))
}

// ---------------------------------------------------------------------------------------
// R30-F1: the uncounted pass-through that d2e6d21 put back for a symlink on the way is the
// race 8c85421 removed: the symlink replaced by a directory between FaultFs's look and the
// inner create lets an uncounted, unfaulted file land.
// ---------------------------------------------------------------------------------------

/// `ab` is a dangling symlink when `FaultFs` looks; another writer replaces it with a
/// directory (the cache's own repair of a foreign `ab`, a tool, a test's fixture) before the
/// inner create. A `times(1)` ENOSPC rule is on `write_new`. Expected: whatever reaches the
/// disk is counted and faulted (ENOSPC, 1 call, 1 fault, nothing there) or nothing lands
/// (ELOOP/ENOENT, 0 calls). Observed: `Ok`, the file is there, 0 calls, 0 faults, the rule
/// unused.
#[test]
fn a_create_under_a_symlink_swapped_for_a_directory_is_counted_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ab");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    let swapped = link.clone();
    let fs = FaultFs::new(Hooked::new(move || {
        std::fs::remove_file(&swapped).unwrap();
        std::fs::create_dir(&swapped).unwrap();
    }));
    fs.add_rule(Rule::new(Fault::Errno(28)).ops(&[FsOp::WriteNew]).times(1));
    let path = link.join("x.tmp");
    let r = fs.write_new(&path, b"value", false);
    let observed = (
        errno(&r),
        path.exists(),
        fs.calls(FsOp::WriteNew),
        fs.faults_injected(),
    );
    println!("(errno, landed, calls, faults) = {observed:?}");
    assert!(
        matches!(
            observed,
            (Some(28), false, 1, 1) | (Some(ELOOP | ENOENT), false, 0, 0)
        ),
        "an uncounted or unfaulted create reached the disk: {observed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// R30-F2: a bare relative file name ("x.tmp": its parent is the empty path, the working
// directory) is refused with a made-up ENOENT, where the real fs creates it.
// ---------------------------------------------------------------------------------------

/// Expected: `FaultFs::std()` answers as the real fs does (`Ok`, counted once). Observed:
/// ENOENT, 0 calls (`Path::new("").exists()` is false), while `real_fs()` creates the file
/// in the working directory. (`LinuxFs::check_parent` itself treats an empty parent as the
/// working directory.)
#[test]
fn a_bare_relative_name_is_created_as_by_the_real_fs() {
    let name = PathBuf::from(format!("r30-bare-{}.tmp", std::process::id()));
    let observed = both(&name);
    let _ = std::fs::remove_file(&name);
    println!("(FaultFs errno, FaultFs calls, real errno) = {observed:?}");
    assert_eq!(observed, (None, 1, None));
}

// ---------------------------------------------------------------------------------------
// R30-F3: a parent that `exists()` says is not there for a reason other than ENOENT (a
// regular file on the way: ENOTDIR; a name too long: ENAMETOOLONG) gets a made-up ENOENT,
// where the real fs answers its own errno. The store acts on the difference: ENOENT makes
// `write_temp_once` create the directory and retry, any other errno ends the write.
// ---------------------------------------------------------------------------------------

/// Expected: the real fs's errno. Observed: ENOENT (2) from FaultFs for both.
#[test]
fn a_parent_unreachable_for_another_reason_gets_the_real_errno() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("v2"), b"a file where v2/ should be").unwrap();
    let under_file = dir.path().join("v2").join("ab").join("x.tmp");
    let long = dir.path().join("n".repeat(300)).join("x.tmp");
    let observed = [both(&under_file), both(&long)];
    println!("[(FaultFs errno, calls, real errno)] = {observed:?}");
    assert_eq!(
        observed,
        [
            (Some(ENOTDIR), 1, Some(ENOTDIR)),
            (Some(ENAMETOOLONG), 1, Some(ENAMETOOLONG))
        ]
    );
}

// ---------------------------------------------------------------------------------------
// R30-F4: the reverse race: the directory is there at the look and gone at the create (an
// `rmdir` of an empty fan-out directory by `observe_dirs`, `clear`, another process). The
// create is counted (and a rule would be used up) though it found no directory.
// ---------------------------------------------------------------------------------------

/// Expected (`FaultFs::calls`: "a write_new into a directory that does not exist is not
/// one"): ENOENT, 0 calls. Observed: ENOENT, 1 call: a concurrent test's exact count is one
/// too many whenever an empty fan-out directory is removed under a write (the store then
/// makes it and writes again: 2 counted for 1 file).
#[test]
fn a_create_whose_directory_goes_before_the_create_is_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let ab = dir.path().join("ab");
    std::fs::create_dir(&ab).unwrap();
    let gone = ab.clone();
    let fs = FaultFs::new(Hooked::new(move || std::fs::remove_dir(&gone).unwrap()));
    let path = ab.join("x.tmp");
    let r = fs.write_new(&path, b"value", false);
    let observed = (errno(&r), path.exists(), fs.calls(FsOp::WriteNew));
    println!("(errno, landed, calls) = {observed:?}");
    assert_eq!(observed, (Some(ENOENT), false, 0));
}

// ---------------------------------------------------------------------------------------
// Guards.
// ---------------------------------------------------------------------------------------

/// Parent states where `FaultFs::std()` and the real fs agree, errno and count: missing
/// (ENOENT, 0), missing under `..` (ENOENT, 0), a regular file (ENOTDIR, 1), a FIFO
/// (ENOTDIR, 1), a dangling symlink (ELOOP, 0), a symlink to a directory (ELOOP, 1), a
/// symlink loop (ELOOP, 0), a missing directory below a symlink to a directory (ELOOP, 0).
/// Nothing is created behind any symlink.
#[test]
fn every_other_parent_state_gets_the_real_errno() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = d.join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(d.join("file"), b"x").unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        d.join("fifo"),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
    std::os::unix::fs::symlink(&target, d.join("todir")).unwrap();
    std::os::unix::fs::symlink(d.join("loop"), d.join("loop")).unwrap();
    let cases = [
        ("missing", d.join("missing/x.tmp"), (Some(ENOENT), 0)),
        ("dotdot", d.join("missing/../gone/x.tmp"), (Some(ENOENT), 0)),
        ("file", d.join("file/x.tmp"), (Some(ENOTDIR), 1)),
        ("fifo", d.join("fifo/x.tmp"), (Some(ENOTDIR), 1)),
        ("dangling", d.join("dangling/x.tmp"), (Some(ELOOP), 0)),
        ("todir", d.join("todir/x.tmp"), (Some(ELOOP), 1)),
        ("loop", d.join("loop/x.tmp"), (Some(ELOOP), 0)),
        ("below todir", d.join("todir/sub/x.tmp"), (Some(ELOOP), 0)),
    ];
    for (what, path, (want_errno, want_calls)) in cases {
        let (faulted, calls, real) = both(&path);
        assert_eq!(
            (faulted, calls, real),
            (want_errno, want_calls, want_errno),
            "{what}"
        );
    }
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert!(!d.join("nowhere").exists());
}

/// The race 8c85421 fixed, many times over: 8 threads write 8 files each into 4 directories
/// that another thread makes while they write; every create that landed was counted and no
/// create was counted that did not land (all dirs are plain, no symlink on the way).
#[test]
fn concurrent_creates_racing_mkdir_count_exactly_what_landed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::std();
        let dirs: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("d{i}"))).collect();
        let ok = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for d in &dirs {
                    std::thread::yield_now();
                    std::fs::create_dir(d).unwrap();
                }
            });
            for t in 0..8 {
                let (fs, dirs, ok) = (&fs, &dirs, &ok);
                s.spawn(move || {
                    for n in 0..8 {
                        let p = dirs[n % 4].join(format!("{t}.{n}.tmp"));
                        if fs.write_new(&p, b"v", false).is_ok() {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let landed: u64 = dirs
            .iter()
            .map(|d| std::fs::read_dir(d).unwrap().count() as u64)
            .sum();
        assert_eq!(
            (fs.calls(FsOp::WriteNew), ok.load(Ordering::SeqCst)),
            (landed, landed),
            "round {round}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Guards of `layout::fanout_byte` (ffa3f71) in `observe_dirs` and the durable-directory
// marks: hostile names in `v2/` are never taken for fan-out directories.
// ---------------------------------------------------------------------------------------

mod fan_out_names {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::Arc;

    use crate::fs::Fs;
    use crate::testing::{real_fs, CrashFs};
    use crate::warm::format::{EntryMeta, Limits};
    use crate::warm::layout::{self, Layout};
    use crate::warm::store::{ReadOutcome, StoreConfig, WriteOutcome};
    use crate::warm::store_fixture::{open_store, store_config};

    const NOW: u64 = 1_700_000_000_000;

    fn config(sync: bool) -> StoreConfig {
        StoreConfig {
            limits: Limits {
                max_key_bytes: 1024,
                max_entry_bytes: 1 << 20,
            },
            compact_later: false,
            ..store_config(sync)
        }
    }

    fn meta() -> EntryMeta {
        EntryMeta {
            created_ms: NOW - 10,
            expires_ms: 0,
            cost: 1,
            ..EntryMeta::default()
        }
    }

    /// A key whose fan-out directory is `byte`.
    fn key_in(byte: u8) -> Vec<u8> {
        (0..)
            .map(|i| format!("key{i}").into_bytes())
            .find(|k| layout::key_hash(k)[0] == byte)
            .unwrap()
    }

    /// Plants, in `v2/`: directories `AB`, `+a`, `a` and a non-UTF-8 one, each holding a
    /// file; a regular file `cd`; a symlink `ef` to `outside` (holding `victim`); an empty
    /// real fan-out directory `0a`. Returns the names and what each holds.
    fn plant_hostile(v2: &Path, outside: &Path) -> Vec<Vec<u8>> {
        let names: Vec<Vec<u8>> = vec![
            b"AB".to_vec(),
            b"+a".to_vec(),
            b"a".to_vec(),
            b"a\xff".to_vec(),
        ];
        for n in &names {
            let d = v2.join(OsStr::from_bytes(n));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("keep"), b"foreign").unwrap();
        }
        std::fs::write(v2.join("cd"), b"a file named like a fan-out dir").unwrap();
        std::fs::create_dir_all(outside).unwrap();
        std::fs::write(outside.join("victim"), b"outside").unwrap();
        std::os::unix::fs::symlink(outside, v2.join("ef")).unwrap();
        std::fs::create_dir(v2.join("0a")).unwrap();
        names
    }

    /// `observe_dirs` removes the empty real fan-out directory `0a` and nothing else: every
    /// hostile name stays with its content, the symlink is neither followed nor removed.
    #[test]
    fn observe_dirs_removes_only_real_empty_fan_out_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let fs = real_fs();
        let (store, _) = open_store(&fs, &root, config(false));
        let v2 = Layout::new(&root).entries_dir().to_owned();
        let outside = dir.path().join("outside");
        let names = plant_hostile(&v2, &outside);
        store.observe_dirs(&fs);
        for n in &names {
            let d = v2.join(OsStr::from_bytes(n));
            assert_eq!(std::fs::read(d.join("keep")).unwrap(), b"foreign", "{n:?}");
        }
        assert_eq!(
            std::fs::read(v2.join("cd")).unwrap(),
            b"a file named like a fan-out dir"
        );
        assert!(std::fs::symlink_metadata(v2.join("ef"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"outside");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        assert!(!v2.join("0a").exists());
    }

    /// Power cut, `Fsync`: a directory `AB` (uppercase) planted before the store opened,
    /// `observe_dirs` run over it, then an acknowledged write into fan-out `ab` (which it
    /// makes): after the cut the value is there (no mark of `ab` was taken from `AB`). A
    /// write into `cd` (a regular file there) fails, and leaves the file.
    #[test]
    fn an_acked_write_beside_hostile_names_survives_a_power_cut() {
        let dir = tempfile::tempdir().unwrap();
        let pre = dir.path().join("root");
        std::fs::create_dir_all(pre.join("v2")).unwrap();
        let outside = dir.path().join("outside");
        plant_hostile(&pre.join("v2"), &outside);
        let crash = Arc::new(CrashFs::new(&pre).unwrap());
        let root = crash.root().to_owned();
        let fs: &dyn Fs = &*crash;
        let (store, _) = open_store(fs, &root, config(true));
        store.observe_dirs(fs);
        let key = key_in(0xab);
        let out = store
            .write(fs, &key, &layout::key_hash(&key), b"acked", meta())
            .unwrap();
        assert!(matches!(out, WriteOutcome::Written { .. }));
        let blocked = key_in(0xcd);
        let err = store.write(fs, &blocked, &layout::key_hash(&blocked), b"x", meta());
        assert!(err.is_err(), "{err:?}");
        let image = dir.path().join("image");
        crash.crash(&image).unwrap();
        drop(store);
        let std = real_fs();
        let (after, _) = open_store(&std, &image, config(true));
        match after
            .read(&std, &key, &layout::key_hash(&key), NOW)
            .unwrap()
        {
            ReadOutcome::Hit(d) => assert_eq!(d.value, b"acked"),
            other => panic!("the acknowledged write is gone: {other:?}"),
        }
        assert_eq!(
            std::fs::read(image.join("v2").join("AB").join("keep")).unwrap(),
            b"foreign"
        );
    }

    // -----------------------------------------------------------------------------------
    // R30-F5: a durable-directory mark goes stale when another instance (another process
    // sharing the directory) removes the fan-out directory and makes it again: this
    // instance still takes the new directory's name in `v2/` for durable.
    // -----------------------------------------------------------------------------------

    /// `Durability::Fsync`, two stores on one root (two processes sharing the cache). A
    /// writes key 1 into fan-out `ab` (makes it, fsyncs `v2/`, marks it durable). B `clear`s
    /// (removes `ab`, fsyncs `v2/`), then writes key 2 into `ab`: makes it and fails at its
    /// fsync of `v2/` (EIO; or B dies there). A then writes key 3 into `ab`: it finds the
    /// directory, fsyncs `ab` only (its mark says durable) and is acknowledged. Expected
    /// after a power cut: key 3's value. Observed: a miss (`ab`'s name was never made durable
    /// after B made it).
    ///
    /// Fixed for stores of one process (the marks are one table per root, `durable_marks`).
    /// Two *processes* still keep their own: RELIABILITY.md, "Session 20", says what that
    /// leaves.
    #[test]
    fn an_acked_write_into_a_dir_another_instance_remade_survives_a_power_cut() {
        use crate::testing::{Fault, FaultFs, FsOp, Rule};
        let dir = tempfile::tempdir().unwrap();
        let crash = Arc::new(CrashFs::new(dir.path().join("root")).unwrap());
        let root = crash.root().to_owned();
        let a_fs: &dyn Fs = &*crash;
        let b_fs = FaultFs::new(crash.clone());
        let (a, _) = open_store(a_fs, &root, config(true));
        let (b, _) = open_store(&b_fs, &root, config(true));
        let keys: Vec<Vec<u8>> = (0..)
            .map(|i| format!("key{i}").into_bytes())
            .filter(|k| layout::key_hash(k)[0] == 0xab)
            .take(3)
            .collect();
        let put = |s: &crate::warm::store::WarmStore, fs: &dyn Fs, k: &[u8], v: &[u8]| {
            s.write(fs, k, &layout::key_hash(k), v, meta())
        };
        assert!(matches!(
            put(&a, a_fs, &keys[0], b"one").unwrap(),
            WriteOutcome::Written { .. }
        ));
        b.clear(&b_fs).unwrap();
        assert!(!root.join("v2").join("ab").exists());
        b_fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::SyncDir])
                .path_ends_with("/v2")
                .times(1),
        );
        let b_write = put(&b, &b_fs, &keys[1], b"two");
        assert_eq!(
            b_write
                .as_ref()
                .err()
                .and_then(std::io::Error::raw_os_error),
            Some(5)
        );
        assert!(root.join("v2").join("ab").is_dir());
        let acked = put(&a, a_fs, &keys[2], b"three").unwrap();
        assert!(matches!(acked, WriteOutcome::Written { .. }));
        let image = dir.path().join("image");
        crash.crash(&image).unwrap();
        drop((a, b));
        let std = real_fs();
        let (after, _) = open_store(&std, &image, config(true));
        let got = match after
            .read(&std, &keys[2], &layout::key_hash(&keys[2]), NOW)
            .unwrap()
        {
            ReadOutcome::Hit(d) => Some(d.value),
            _ => None,
        };
        let ab_survived = image.join("v2").join("ab").is_dir();
        println!("after the power cut: value {got:?}, v2/ab there: {ab_survived}");
        assert_eq!(
            (got.as_deref(), ab_survived),
            (Some(&b"three"[..]), true),
            "the acknowledged write is gone"
        );
    }

    /// R30-F3 in the store: `v2/` replaced by a regular file under a running store. On the
    /// real fs the temp file's create fails with ENOTDIR and the write ends there (no
    /// `create_dir_all`); under `FaultFs` the made-up ENOENT sends `write_temp_once` into its
    /// make-the-directory-and-retry branch. Expected: the same outcome and the same calls as
    /// on the real fs (counted there by a wrapper). Observed: the same error (kind `Other`),
    /// `v2` untouched, but 4 `create_dir_all` under FaultFs against 3 on the real fs (the
    /// extra one is `write_temp_once`'s; a `CreateDirAll` rule would fire on it).
    #[test]
    fn a_store_write_with_v2_replaced_by_a_file_makes_the_calls_of_the_real_fs() {
        use crate::testing::{FaultFs, FsOp};
        use std::sync::atomic::Ordering;
        // The same write on the real fs and under FaultFs: what it returns (`Debug`) and
        // what `v2` holds after.
        let run = |fs: &dyn Fs| {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            let (store, _) = open_store(fs, &root, config(false));
            let v2 = Layout::new(&root).entries_dir().to_owned();
            std::fs::remove_dir_all(&v2).unwrap();
            std::fs::write(&v2, b"a file where v2/ should be").unwrap();
            let key = key_in(0xab);
            let r = store.write(fs, &key, &layout::key_hash(&key), b"v", meta());
            let out = match r {
                Ok(o) => format!("Ok({o:?})"),
                Err(e) => format!("Err(kind {:?}, errno {:?})", e.kind(), e.raw_os_error()),
            };
            (out, std::fs::read(&v2).ok().map(|b| b.len()))
        };
        let counting = super::Hooked::new(|| {});
        let real = run(&*counting);
        let real = (real, counting.dirs_made.load(Ordering::SeqCst));
        let fault = FaultFs::std();
        let faulted = (run(&fault), fault.calls(FsOp::CreateDirAll));
        println!("(outcome, v2 length, create_dir_all calls): real {real:?}; FaultFs {faulted:?}");
        assert_eq!(faulted, real);
    }
}
