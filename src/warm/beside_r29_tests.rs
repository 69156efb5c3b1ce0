//! r29: adversarial unit tests of "write each entry's temp file beside its place"
//! (`v2/ab/.<hex16>.<pid>.<instance>.<n>.tmp`, `Layout::entry_temp_path`): the startup scan's
//! sweep of those temp files (an orphan that cannot be deleted, hostile names, live and dead
//! writers), the durability of a fan-out directory made by a write (a failed fsync of `v2/`,
//! a write racing another's `mkdir`), a rename that keeps finding its temp file gone, and a
//! temp file's content never served. See `tests/core/BESIDE_R29_FINDINGS.md`.
//!
//! Tests that fail on the code they were written against are `#[ignore]`d with their finding
//! id; the others guard behaviour that holds.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::fs::{Fs, StdFs};
use crate::testing::{CrashFs, Fault, FaultFs, FsOp, Rule};
use crate::warm::format::{self, EntryMeta, Limits};
use crate::warm::layout::{self, KeyHash, Layout, TempOwner};
use crate::warm::store::{ReadOutcome, StoreConfig, WarmStore, WriteOutcome, RENAME_ATTEMPTS};
use crate::warm::store_fixture::store_config;

const NOW: u64 = 1_700_000_000_000;
/// A pid no process can have (above Linux's `pid_max` limit of 2^22): its writer is gone.
const DEAD_PID: u32 = 4_194_305;

fn config(sync: bool) -> StoreConfig {
    StoreConfig {
        limits: Limits {
            max_key_bytes: 1024,
            max_entry_bytes: 1 << 20,
        },
        compression_level: 6,
        compact_later: false,
        ..store_config(sync)
    }
}

use crate::warm::store_fixture::open_store as open_with;

fn meta() -> EntryMeta {
    EntryMeta {
        created_ms: NOW - 10,
        expires_ms: 0,
        cost: 1,
        ..EntryMeta::default()
    }
}

fn value(i: u64) -> Vec<u8> {
    text(i).into_bytes()
}

fn text(i: u64) -> String {
    format!("value {i} ").repeat(40)
}

fn write(store: &WarmStore, fs: &dyn Fs, key: &[u8], v: &[u8]) -> std::io::Result<WriteOutcome> {
    store.write(fs, key, &layout::key_hash(key), v, meta())
}

/// The value read for `key` as text (every value here is), `None` on a miss.
fn read_value(store: &WarmStore, fs: &dyn Fs, key: &[u8]) -> Option<String> {
    match store.read(fs, key, &layout::key_hash(key), NOW).unwrap() {
        ReadOutcome::Hit(d) => Some(String::from_utf8(d.value).unwrap()),
        ReadOutcome::Miss => None,
        other => panic!("expected a hit or a miss, got {other:?}"),
    }
}

/// The path of an entry temp file of `key` named for `pid` / `instance` / `n`.
fn temp_path(root: &Path, key: &[u8], pid: u32, instance: u64, n: u64) -> PathBuf {
    Layout::new(root).entry_temp_path(&layout::key_hash(key), TempOwner { pid, instance }, n)
}

/// Plants a regular file at `path` (its directory made).
fn plant(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Two keys whose entries share one fan-out directory.
fn two_keys_in_one_dir() -> (Vec<u8>, Vec<u8>) {
    let first = b"kx0".to_vec();
    let byte = layout::key_hash(&first)[0];
    let second = (1..)
        .map(|i| format!("ky{i}").into_bytes())
        .find(|k| layout::key_hash(k)[0] == byte)
        .unwrap();
    (first, second)
}

fn fan_out_of(root: &Path, hash: &KeyHash) -> PathBuf {
    Layout::new(root).entry_dir(hash)
}

// ---------------------------------------------------------------------------------------
// R29-F1: one orphan entry temp file that cannot be deleted (EPERM: an immutable file, a
// file of another user in a shared directory; EBUSY: a mount point) ends the startup scan:
// no entry is indexed, the index never completes, the scan fails again at every retry.
// ---------------------------------------------------------------------------------------

/// Three entries on disk and one orphan temp (writer gone) whose `unlink` fails with EPERM.
/// Expected: the scan indexes the three entries and completes (the orphan stays, like a
/// foreign file: counted, left). Observed: `scan` returns the EPERM, the index holds none of
/// the three and stays incomplete.
#[test]
fn an_undeletable_orphan_temp_does_not_end_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let (first, _) = open_with(&StdFs::new(), root, config(false));
        for i in 0..3u64 {
            write(&first, &StdFs::new(), format!("k{i}").as_bytes(), &value(i)).unwrap();
        }
    }
    let orphan = temp_path(root, b"k0", DEAD_PID, 1, 0);
    plant(&orphan, b"half an entry");
    let fs = FaultFs::std();
    fs.add_rule(
        Rule::new(Fault::Errno(libc_eperm()))
            .ops(&[FsOp::RemoveFile])
            .path_ends_with(".tmp"),
    );
    let (store, counters) = open_with(&fs, root, config(false));
    let scanned = store.scan(&fs, NOW);
    let (entries, _, complete) = store.usage();
    println!("scan: {scanned:?}, index: {entries} entries, complete {complete}");
    assert_eq!(scanned.as_ref().ok(), Some(&3), "{scanned:?}");
    assert_eq!((entries, complete), (3, true));
    assert!(orphan.exists());
    assert_eq!(counters.temp_files_swept.get(), 0);
}

fn libc_eperm() -> i32 {
    1
}

// ---------------------------------------------------------------------------------------
// R29-F2: the fan-out directory a write made is not durable when that write's fsync of `v2/`
// failed; the next write into the directory finds it, fsyncs only `v2/ab`, and is
// acknowledged. A power cut then takes the directory, and the acknowledged entry, away.
// ---------------------------------------------------------------------------------------

/// `Durability::Fsync`: the first write into a new fan-out directory fails at the fsync of
/// `v2/` (EIO once, after its `mkdir`); the second write of the same key then returns `Ok`.
/// Expected after a power cut: the acknowledged value. Observed: a miss (the directory's
/// name in `v2/` was never made durable).
#[test]
fn an_acked_write_into_a_dir_whose_v2_fsync_failed_survives_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let crash = Arc::new(CrashFs::new(dir.path().join("root")).unwrap());
    let root = crash.root().to_owned();
    let fs = FaultFs::new(crash.clone());
    let (store, _) = open_with(&fs, &root, config(true));
    fs.add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::SyncDir])
            .path_ends_with("/v2")
            .times(1),
    );
    let key = b"acked";
    let first = write(&store, &fs, key, &value(1));
    assert!(first.is_err(), "{first:?}");
    assert!(fan_out_of(&root, &layout::key_hash(key)).is_dir());
    let second = write(&store, &fs, key, &value(2)).unwrap();
    assert!(matches!(second, WriteOutcome::Written { .. }));
    assert_eq!(fs.faults_injected(), 1);
    let image = dir.path().join("image");
    crash.crash(&image).unwrap();
    drop(store);
    let (after, _) = open_with(&StdFs::new(), &image, config(true));
    assert_eq!(
        read_value(&after, &StdFs::new(), key),
        Some(text(2)),
        "the acknowledged write is gone after the power cut"
    );
}

// ---------------------------------------------------------------------------------------
// R29-F3: the same without any error: a write that finds the fan-out directory another
// write has just made (its fsync of `v2/` not done yet) is acknowledged before the
// directory's name is durable.
// ---------------------------------------------------------------------------------------

/// Write X (key `kx0`) makes the fan-out directory and stalls in its fsync of `v2/` (a slow
/// disk: the fsync is held). Write Y (another key of that directory) then runs to `Ok`. The
/// power goes before X's fsync returns. Expected: Y's acknowledged value. Observed: a miss.
#[test]
fn an_acked_write_racing_the_mkdir_of_its_fan_out_dir_survives_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let crash = Arc::new(CrashFs::new(dir.path().join("root")).unwrap());
    let root = crash.root().to_owned();
    let fs = FaultFs::new(crash.clone());
    let (store, _) = open_with(&fs, &root, config(true));
    let (kx, ky) = two_keys_in_one_dir();
    let fan_out = fan_out_of(&root, &layout::key_hash(&kx));
    assert!(!fan_out.exists());
    fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::SyncDir])
            .path_ends_with("/v2")
            .times(1),
    );
    let image = dir.path().join("image");
    std::thread::scope(|s| {
        let x = s.spawn(|| write(&store, &fs, &kx, &value(1)).is_ok());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !fan_out.is_dir() {
            assert!(std::time::Instant::now() < deadline, "X never made the dir");
            std::thread::sleep(Duration::from_millis(1));
        }
        let y = write(&store, &fs, &ky, &value(2)).unwrap();
        assert!(matches!(y, WriteOutcome::Written { .. }));
        // The power goes while X's fsync of v2/ is still held.
        crash.crash(&image).unwrap();
        fs.release_hangs();
        let x_ok = x.join().unwrap();
        println!("X (held in its fsync of v2/ at the power cut) returned ok={x_ok}");
    });
    drop(store);
    let (after, _) = open_with(&StdFs::new(), &image, config(true));
    assert_eq!(
        read_value(&after, &StdFs::new(), &ky),
        Some(text(2)),
        "Y was acknowledged before the power cut"
    );
}

// ---------------------------------------------------------------------------------------
// Guards.
// ---------------------------------------------------------------------------------------

/// The scan's sweep, name by name: an orphan of a dead pid, one of a closed instance of
/// this process and one older than an hour are deleted (3); one of a live other process
/// (pid 1), one of a live instance of this process and one of the scanning instance itself
/// are left; a directory, a FIFO and a symlink named like temp files, a temp name in the
/// wrong shape and a non-UTF-8 name are foreign (5), never deleted, never followed; the
/// entries are indexed, no temp file is.
#[test]
fn the_scan_sweeps_exactly_the_orphans_and_counts_hostile_names_as_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fs = StdFs::new();
    let (writer, _) = open_with(&fs, root, config(false));
    for i in 0..4u64 {
        write(&writer, &fs, format!("k{i}").as_bytes(), &value(i)).unwrap();
    }
    let entry_bytes: u64 = writer.usage().1;
    // Another live instance of this process; a closed one.
    let (live_other, _) = open_with(&fs, root, config(false));
    let closed_instance = {
        let (closed, _) = open_with(&fs, root, config(false));
        closed.owner.instance
    };
    let me = std::process::id();
    let (scanner, counters) = open_with(&fs, root, config(false));
    let swept = [
        temp_path(root, b"k0", DEAD_PID, 1, 0),
        temp_path(root, b"k1", me, closed_instance, 3),
        // Old: a live pid, but modified two hours before the scan's clock.
        temp_path(root, b"k2", 1, 9, 0),
    ];
    let kept = [
        temp_path(root, b"k3", 1, 1, 0),
        temp_path(root, b"k0", me, live_other.owner.instance, 5),
        temp_path(root, b"k1", me, scanner.owner.instance, 7),
    ];
    for p in swept.iter().chain(&kept) {
        plant(
            p,
            &format::encode(b"k0", b"not the value", meta(), 0).unwrap(),
        );
    }
    let now = crate::clock::system_now_ms();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&swept[2])
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    // Hostile names in k0's fan-out directory.
    let ab = fan_out_of(root, &layout::key_hash(b"k0"));
    let as_temp = |pid: u32, n: u64| {
        temp_path(root, b"k0", pid, 1, n)
            .file_name()
            .unwrap()
            .to_owned()
    };
    std::fs::create_dir(ab.join(as_temp(DEAD_PID, 100))).unwrap();
    let fifo = ab.join(as_temp(DEAD_PID, 101));
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let target = dir.path().join("outside");
    std::fs::write(&target, b"outside the cache").unwrap();
    std::os::unix::fs::symlink(&target, ab.join(as_temp(DEAD_PID, 102))).unwrap();
    // A temp name whose prefix is not 16 hex characters.
    std::fs::write(ab.join(format!(".{}.1.0.tmp", "z".repeat(16))), b"x").unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b".\xff\xfe0123456789abcd.4194305.1.0.tmp");
        std::fs::write(ab.join(name), b"x").unwrap();
    }
    let n = scanner.scan(&fs, now).unwrap();
    assert_eq!(n, 4);
    let (entries, bytes, complete) = scanner.usage();
    assert_eq!((entries, bytes, complete), (4, entry_bytes, true));
    assert_eq!(counters.temp_files_swept.get(), 3);
    assert_eq!(counters.foreign_files.get(), 5);
    for p in &swept {
        assert!(!p.exists(), "{p:?} was not swept");
    }
    for p in &kept {
        assert!(p.exists(), "{p:?} (a live writer's) was deleted");
    }
    assert!(ab.join(as_temp(DEAD_PID, 100)).is_dir());
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo_like());
    assert_eq!(std::fs::read(&target).unwrap(), b"outside the cache");
    assert!(std::fs::symlink_metadata(ab.join(as_temp(DEAD_PID, 102))).is_ok());
    // No temp file is ever read as an entry: each key reads its own value.
    for i in 0..4u64 {
        assert_eq!(
            read_value(&scanner, &fs, format!("k{i}").as_bytes()),
            Some(text(i))
        );
    }
    drop((writer, live_other));
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

/// A temp file holding a valid entry of the key (another value), with no entry file: a
/// miss, before and after a scan; with an entry file: that file's value.
#[test]
fn a_temp_file_holding_a_valid_entry_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fs = StdFs::new();
    let (store, _) = open_with(&fs, root, config(false));
    let live = temp_path(root, b"k", 1, 1, 0);
    plant(
        &live,
        &format::encode(b"k", b"from a temp file", meta(), 0).unwrap(),
    );
    assert_eq!(read_value(&store, &fs, b"k"), None);
    assert_eq!(store.scan(&fs, NOW).unwrap(), 0);
    assert_eq!(store.usage(), (0, 0, true));
    assert_eq!(read_value(&store, &fs, b"k"), None);
    write(&store, &fs, b"k", b"the value").unwrap();
    assert_eq!(read_value(&store, &fs, b"k").as_deref(), Some("the value"));
    assert!(live.exists());
}

/// A rename that keeps finding its temp file gone (NotFound each time): written
/// `1 + RENAME_ATTEMPTS` times, renamed as often, then the write fails with NotFound, and no
/// temp file and no entry file is left.
#[test]
fn a_rename_that_keeps_failing_not_found_fails_after_the_attempts_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fs = FaultFs::std();
    let (store, _) = open_with(&fs, root, config(false));
    write(&store, &fs, b"other", b"another entry").unwrap();
    fs.add_rule(
        Rule::new(Fault::Errno(2))
            .ops(&[FsOp::Rename])
            .path_contains("/v2/"),
    );
    let (writes, renames) = (fs.calls(FsOp::WriteNew), fs.calls(FsOp::Rename));
    let err = write(&store, &fs, b"k", b"never lands").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let attempts = u64::from(RENAME_ATTEMPTS) + 1;
    assert_eq!(fs.calls(FsOp::Rename) - renames, attempts);
    assert_eq!(fs.calls(FsOp::WriteNew) - writes, attempts);
    assert_eq!(crate::testing::temp_files(root), Vec::<String>::new());
    assert!(!Layout::new(root)
        .entry_path(&layout::key_hash(b"k"))
        .exists());
    fs.clear_rules();
    assert_eq!(read_value(&store, &fs, b"k"), None);
}

/// The fan-out directory removed (another process's `clear`) between the write of the temp
/// file and its rename, three times: written a fourth time, renamed, `Ok`, the value exact,
/// nothing left behind.
#[test]
fn a_write_whose_dir_goes_three_times_lands_with_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let key = b"k";
    let fan_out = fan_out_of(&root, &layout::key_hash(key));
    let fs = RemoveDirBeforeRename {
        inner: StdFs::new(),
        dir: fan_out.clone(),
        left: std::sync::atomic::AtomicU32::new(3),
    };
    let (store, _) = open_with(&fs, &root, config(true));
    let out = write(&store, &fs, key, b"the value").unwrap();
    assert!(matches!(out, WriteOutcome::Written { .. }));
    assert_eq!(fs.left.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        read_value(&store, &StdFs::new(), key).as_deref(),
        Some("the value")
    );
    assert_eq!(crate::testing::temp_files(&root), Vec::<String>::new());
}

/// Removes `dir` (with everything in it) before each of the first `left` renames into it.
struct RemoveDirBeforeRename {
    inner: StdFs,
    dir: PathBuf,
    left: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for RemoveDirBeforeRename {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoveDirBeforeRename")
    }
}

impl Fs for RemoveDirBeforeRename {
    fn read_file(&self, path: &Path, max_len: u64) -> std::io::Result<crate::fs::FileRead> {
        self.inner.read_file(path, max_len)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> std::io::Result<crate::fs::FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
        self.inner.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        if to.parent() == Some(&self.dir)
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            std::fs::remove_dir_all(&self.dir).unwrap();
        }
        self.inner.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<crate::fs::DirEntryInfo>> {
        self.inner.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.available_space(path)
    }
}
