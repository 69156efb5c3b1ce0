//! [`FaultFs`]: an [`Fs`] decorator that fails, corrupts or hangs chosen calls.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::real::real_fs;
use crate::fs::{DirEntryInfo, FileRead, Fs};
use crate::workload::Rng;

/// The operations of [`Fs`], plus the fsync inside `write_new`, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsOp {
    /// `read_file`.
    ReadFile,
    /// `read_prefix`.
    ReadPrefix,
    /// `write_new`: the create and write.
    WriteNew,
    /// The fsync of `write_new` (only when it syncs).
    SyncFile,
    /// `rename`.
    Rename,
    /// `remove_file`.
    RemoveFile,
    /// `remove_dir_all`.
    RemoveDirAll,
    /// `create_dir_all`.
    CreateDirAll,
    /// `sync_dir`.
    SyncDir,
    /// `read_dir`.
    ReadDir,
    /// `available_space`.
    AvailableSpace,
}

impl FsOp {
    /// Every op.
    pub const ALL: [FsOp; 11] = [
        FsOp::ReadFile,
        FsOp::ReadPrefix,
        FsOp::WriteNew,
        FsOp::SyncFile,
        FsOp::Rename,
        FsOp::RemoveFile,
        FsOp::RemoveDirAll,
        FsOp::CreateDirAll,
        FsOp::SyncDir,
        FsOp::ReadDir,
        FsOp::AvailableSpace,
    ];

    fn index(self) -> usize {
        FsOp::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// What a matching call suffers.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fail with this errno (e.g. 28 = ENOSPC, 5 = EIO, 30 = EROFS, 13 = EACCES, 27 = EFBIG).
    Errno(i32),
    /// `write_new` only: write the first half of the data, then fail with this errno.
    ShortWrite(i32),
    /// Reads only: flip this bit (`byte * 8 + bit`) of the data returned, if present.
    FlipBit(u64),
    /// Sleep this long (real time) before doing the call normally.
    Delay(Duration),
    /// Block until [`FaultFs::release_hangs`] is called, then do the call normally: a stalled
    /// network mount.
    Hang,
}

/// A fault rule: which calls it matches and how many times it fires.
#[derive(Debug, Clone)]
pub struct Rule {
    fault: Fault,
    ops: Option<Vec<FsOp>>,
    path_contains: Option<String>,
    path_ends_with: Option<String>,
    skip: u64,
    times: Option<u64>,
    /// Fire on a matching call only with probability 1/n, decided by a seeded hash of the
    /// call's index (deterministic for a given seed and call order).
    one_in: Option<(u64, u64)>,
    seen: u64,
}

/// Whether a `one_in(n, seed)` rule fires on its `seen`-th matching call: a seeded hash of the
/// call's index, so the same seed and call order always fire on the same calls.
fn fires_one_in(n: u64, seed: u64, seen: u64) -> bool {
    let hashed_index = Rng::new(seen).next_u64();
    Rng::new(seed ^ hashed_index).next_u64().is_multiple_of(n)
}

impl Rule {
    /// A rule that fires on every call, forever, until narrowed.
    pub fn new(fault: Fault) -> Self {
        Rule {
            fault,
            ops: None,
            path_contains: None,
            path_ends_with: None,
            skip: 0,
            times: None,
            one_in: None,
            seen: 0,
        }
    }

    /// Fire on a matching call with probability `1/n`, seeded.
    pub fn one_in(mut self, n: u64, seed: u64) -> Self {
        self.one_in = Some((n.max(1), seed));
        self
    }

    /// Only these operations.
    pub fn ops(mut self, ops: &[FsOp]) -> Self {
        self.ops = Some(ops.to_vec());
        self
    }

    /// Only paths containing this text.
    pub fn path_contains(mut self, s: impl Into<String>) -> Self {
        self.path_contains = Some(s.into());
        self
    }

    /// Only paths ending with this text (with [`Rule::path_contains`]: both). The temp files
    /// of entry writes sit beside the entries (`<root>/v2/ab/.<…>.tmp`): a rule for them alone
    /// is `path_contains("<root>/v2/")` and `path_ends_with(".tmp")`.
    pub fn path_ends_with(mut self, s: impl Into<String>) -> Self {
        self.path_ends_with = Some(s.into());
        self
    }

    /// Let the first `n` matching calls through.
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Fire this many times, then stop.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, op: FsOp, path: &Path) -> bool {
        self.ops.as_ref().is_none_or(|o| o.contains(&op))
            && self
                .path_contains
                .as_ref()
                .is_none_or(|s| path.to_string_lossy().contains(s.as_str()))
            && self
                .path_ends_with
                .as_ref()
                .is_none_or(|s| path.to_string_lossy().ends_with(s.as_str()))
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    available_space: Option<u64>,
    settle_answer: bool,
    settles: u64,
    hang_generation: u64,
}

/// An [`Fs`] that forwards to an inner one and injects faults by rule, counting every call.
///
/// One exception: a [`Fs::write_new`] into a directory that does not exist fails with
/// `ENOENT` (`ELOOP` with an unreachable symlink on the way) without being counted, without
/// any rule firing and without reaching the inner file system: a real create fails at the
/// path lookup there, before anything a disk fault could hit. A create whose directory goes
/// between that look and the create is not counted either.
#[derive(Debug)]
pub struct FaultFs {
    inner: Arc<dyn Fs>,
    state: Mutex<State>,
    released: Condvar,
    calls: [AtomicU64; FsOp::ALL.len()],
    faults: AtomicU64,
}

impl FaultFs {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Fs>) -> Self {
        FaultFs {
            inner,
            state: Mutex::new(State::default()),
            released: Condvar::new(),
            calls: Default::default(),
            faults: AtomicU64::new(0),
        }
    }

    /// Wraps the real file system ([`real_fs`](super::real_fs): [`StdFs::new`](crate::StdFs::new),
    /// or the portable one after [`use_portable_fs`](super::use_portable_fs)).
    pub fn std() -> Self {
        FaultFs::new(Arc::new(real_fs()))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Adds a rule (rules are checked in the order added; the first that fires wins).
    pub fn add_rule(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule: the disk is healthy again. Also releases hung calls.
    pub fn clear_rules(&self) {
        self.lock().rules.clear();
        self.release_hangs();
    }

    /// Lets every call blocked by [`Fault::Hang`] continue.
    pub fn release_hangs(&self) {
        self.lock().hang_generation += 1;
        self.released.notify_all();
    }

    /// Overrides the free space `available_space` reports (`None`: ask the inner fs).
    pub fn set_available_space(&self, bytes: Option<u64>) {
        self.lock().available_space = bytes;
    }

    /// What [`Fs::settle_deferred_closes`] answers (default `false`: this fs reads nothing
    /// from the page cache, so it never leaves a close for later, and the inner fs is not
    /// asked). `true` plays a disk whose space came back once deferred closes were done: the
    /// store tries a write refused with ENOSPC once more.
    pub fn set_settle_answer(&self, answer: bool) {
        self.lock().settle_answer = answer;
    }

    /// Calls of [`Fs::settle_deferred_closes`] so far.
    pub fn settle_calls(&self) -> u64 {
        self.lock().settles
    }

    /// Calls of one op so far (a `write_new` into a directory that does not exist is not
    /// one: it never reaches the disk).
    pub fn calls(&self, op: FsOp) -> u64 {
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Calls of all ops so far.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }

    /// Counts the call and returns the fault to apply, if any.
    fn check(&self, op: FsOp, path: &Path) -> Option<Fault> {
        self.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        let mut st = self.lock();
        let mut fired = None;
        for rule in st.rules.iter_mut() {
            if !rule.matches(op, path) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            if let Some((n, seed)) = rule.one_in {
                rule.seen += 1;
                if !fires_one_in(n, seed, rule.seen) {
                    continue;
                }
            }
            if let Some(t) = rule.times.as_mut() {
                if *t == 0 {
                    continue;
                }
                *t -= 1;
            }
            fired = Some(rule.fault.clone());
            break;
        }
        if let Some(Fault::Hang) = fired {
            let generation = st.hang_generation;
            self.faults.fetch_add(1, Ordering::SeqCst);
            while st.hang_generation == generation {
                st = self
                    .released
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            return None;
        }
        drop(st);
        if let Some(Fault::Delay(d)) = fired {
            self.faults.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(d);
            return None;
        }
        if fired.is_some() {
            self.faults.fetch_add(1, Ordering::SeqCst);
        }
        fired
    }

    fn plain<T>(&self, op: FsOp, path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        match self.check(op, path) {
            Some(Fault::Errno(e)) | Some(Fault::ShortWrite(e)) => {
                Err(io::Error::from_raw_os_error(e))
            }
            _ => f(),
        }
    }

    fn read(
        &self,
        op: FsOp,
        path: &Path,
        f: impl FnOnce() -> io::Result<FileRead>,
    ) -> io::Result<FileRead> {
        match self.check(op, path) {
            Some(Fault::Errno(e)) | Some(Fault::ShortWrite(e)) => {
                Err(io::Error::from_raw_os_error(e))
            }
            Some(Fault::FlipBit(bit)) => {
                let mut r = f()?;
                if let FileRead::Data(d) = &mut r {
                    if let Some(b) = usize::try_from(bit / 8).ok().and_then(|i| d.get_mut(i)) {
                        *b ^= 1 << (bit % 8);
                    }
                }
                Ok(r)
            }
            _ => f(),
        }
    }
}

/// `ENOENT`.
const ENOENT: i32 = rustix::io::Errno::NOENT.raw_os_error();

/// `ELOOP`: what the real file systems answer for a symlink on a path.
const ELOOP: i32 = rustix::io::Errno::LOOP.raw_os_error();

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// The error a create at `path` gets at the lookup of its directory, before anything a disk
/// fault could hit: `ENOENT` if the directory is not there, `ELOOP` if a symlink is on the way
/// and the directory is not reachable (dangling, a loop, missing behind it: the real file
/// systems refuse the symlink whatever appears behind it later). `None`: the create goes on
/// (a directory there, reached or refused by `inner`; a file on the way, `ENOTDIR`; a name
/// too long). A bare name's directory is the working directory.
fn lookup_refusal(path: &Path) -> Option<io::Error> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let missing = match std::fs::metadata(dir) {
        Ok(_) => return None,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    };
    if dir.ancestors().any(is_symlink) {
        Some(io::Error::from_raw_os_error(ELOOP))
    } else if missing {
        Some(io::Error::from_raw_os_error(ENOENT))
    } else {
        None
    }
}

impl Fs for FaultFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.read(FsOp::ReadFile, path, || self.inner.read_file(path, max_len))
    }

    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.read(FsOp::ReadPrefix, path, || self.inner.read_prefix(path, n))
    }

    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        // A create in a directory that does not exist fails (`ENOENT`) at the path lookup,
        // before it reaches the disk: not counted as a call, and no rule fires on it (none is
        // used up), as no fault of a real disk would (the first write into a new fan-out
        // directory finds none). It fails here, never in `inner`: had another writer made the
        // directory since the look, an uncounted and unfaulted file would land (review r30).
        if let Some(refused) = lookup_refusal(path) {
            return Err(refused);
        }
        let counted = |op: FsOp| {
            move |r: io::Result<()>| {
                // The directory went between the look and the create (another writer's
                // `rmdir`): a create that found no directory after all, not counted.
                if r.as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
                    && lookup_refusal(path).is_some()
                {
                    self.calls[op.index()].fetch_sub(1, Ordering::SeqCst);
                    if op == FsOp::SyncFile {
                        self.calls[FsOp::WriteNew.index()].fetch_sub(1, Ordering::SeqCst);
                    }
                }
                r
            }
        };
        match self.check(FsOp::WriteNew, path) {
            Some(Fault::Errno(e)) => return Err(io::Error::from_raw_os_error(e)),
            Some(Fault::ShortWrite(e)) => {
                self.inner.write_new(path, &data[..data.len() / 2], false)?;
                return Err(io::Error::from_raw_os_error(e));
            }
            _ => {}
        }
        if !sync {
            return counted(FsOp::WriteNew)(self.inner.write_new(path, data, false));
        }
        match self.check(FsOp::SyncFile, path) {
            Some(Fault::Errno(e)) | Some(Fault::ShortWrite(e)) => {
                // The data was written; the fsync failed.
                counted(FsOp::SyncFile)(self.inner.write_new(path, data, false))?;
                Err(io::Error::from_raw_os_error(e))
            }
            _ => counted(FsOp::SyncFile)(self.inner.write_new(path, data, true)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plain(FsOp::Rename, to, || self.inner.rename(from, to))
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plain(FsOp::Rename, to, || self.inner.rename_noreplace(from, to))
    }

    /// Counted and faulted as a [`FsOp::Rename`] of `to`.
    fn rename_exchange(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plain(FsOp::Rename, to, || self.inner.rename_exchange(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.plain(FsOp::RemoveFile, path, || self.inner.remove_file(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.plain(FsOp::RemoveDirAll, path, || self.inner.remove_dir_all(path))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.plain(FsOp::RemoveDirAll, path, || self.inner.remove_dir(path))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.plain(FsOp::CreateDirAll, path, || self.inner.create_dir_all(path))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.plain(FsOp::SyncDir, path, || self.inner.sync_dir(path))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.plain(FsOp::ReadDir, path, || self.inner.read_dir(path))
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let fake = self.lock().available_space;
        self.plain(FsOp::AvailableSpace, path, || match fake {
            Some(n) => Ok(n),
            None => self.inner.available_space(path),
        })
    }

    /// The inner file system's answer, not subject to the rules (they fail or fake
    /// `available_space`, the call the free-space check makes per write).
    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner.total_space(path)
    }

    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner.block_size(path)
    }

    fn settle_deferred_closes(&self, timeout: Duration) -> bool {
        let _ = timeout;
        let mut st = self.lock();
        st.settles += 1;
        st.settle_answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{DirEntryInfo, FileRead};
    use crate::StdFs;

    /// Another writer's `mkdir` landing between `FaultFs`'s look at the parent directory and
    /// the create: this inner file system makes the parent just before it creates the file.
    #[derive(Debug)]
    struct MkdirFirst(StdFs);

    impl Fs for MkdirFirst {
        fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
            self.0.read_file(path, max_len)
        }
        fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
            self.0.read_prefix(path, n)
        }
        fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.0.write_new(path, data, sync)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.0.rename(from, to)
        }
        fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.0.rename_noreplace(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.0.remove_file(path)
        }
        fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
            self.0.remove_dir_all(path)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.0.create_dir_all(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            self.0.sync_dir(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
            self.0.read_dir(path)
        }
        fn available_space(&self, path: &Path) -> io::Result<u64> {
            self.0.available_space(path)
        }
    }

    /// Under a dangling symlink the answer is the real file system's (a refused symlink),
    /// not `ENOENT`: the store acts on the difference.
    #[test]
    fn a_create_under_a_dangling_symlink_is_refused_as_the_real_fs_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("ab")).unwrap();
        let fs = FaultFs::std();
        let path = dir.path().join("ab").join("x.tmp");
        let err = fs.write_new(&path, b"value", false).unwrap_err();
        let inner = crate::testing::real_fs()
            .write_new(&path, b"value", false)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), inner.raw_os_error());
        assert_ne!(
            err.raw_os_error(),
            Some(ENOENT),
            "the symlink is refused, not followed"
        );
        assert_eq!(fs.calls(FsOp::WriteNew), 0);
        assert!(!dir.path().join("nowhere").exists());
    }

    /// A create that found no directory is not counted and fires no rule, so it must not reach
    /// the disk either: had the directory appeared in between (another writer's `mkdir`), an
    /// uncounted, unfaulted file would land. The CI run of stop 28 saw exactly that: 64
    /// concurrent writes counted one `write_new` fewer than they made.
    #[test]
    fn a_create_that_found_no_directory_never_lands() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new(Arc::new(MkdirFirst(StdFs::new())));
        fs.add_rule(Rule::new(Fault::Errno(28)).ops(&[FsOp::WriteNew]).times(1));
        let path = dir.path().join("ab").join("x.tmp");
        let err = fs.write_new(&path, b"value", false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(2), "ENOENT");
        assert!(!path.exists());
        assert_eq!(fs.calls(FsOp::WriteNew), 0);
        assert_eq!(fs.faults_injected(), 0);
        // The rule was not used up: the next create, in the directory now there, is refused.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let err = fs.write_new(&path, b"value", false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(fs.calls(FsOp::WriteNew), 1);
        assert_eq!(fs.faults_injected(), 1);
        assert!(!path.exists());
    }
}

#[cfg(test)]
#[path = "fault_r30_tests.rs"]
mod r30_tests;
