//! Test support: a fault-injecting [`Fs`] decorator ([`FaultFs`]) and a power-loss simulator
//! ([`CrashFs`]).
//!
//! Available to this crate's tests and, with the `test-util` feature, to code that embeds
//! tiercache and wants to test its own behaviour on a sick disk.
//!
//! ```
//! use std::sync::Arc;
//! use tiercache::testing::{Fault, FaultFs, FsOp, Rule};
//! let fs = Arc::new(FaultFs::std());
//! // Every entry write fails with ENOSPC from the third one on.
//! fs.add_rule(Rule::new(Fault::Errno(libc_enospc())).ops(&[FsOp::WriteNew]).skip(2));
//! # fn libc_enospc() -> i32 { 28 }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::fs::{DirEntryInfo, FileRead, Fs, StdFs};

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
    skip: u64,
    times: Option<u64>,
    /// Fire on a matching call only with probability 1/n, decided by a seeded hash of the
    /// call's index (deterministic for a given seed and call order).
    one_in: Option<(u64, u64)>,
    seen: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Rule {
    /// A rule that fires on every call, forever, until narrowed.
    pub fn new(fault: Fault) -> Self {
        Rule {
            fault,
            ops: None,
            path_contains: None,
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
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    available_space: Option<u64>,
    hang_generation: u64,
}

/// An [`Fs`] that forwards to an inner one and injects faults by rule, counting every call.
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

    /// Wraps the real file system.
    pub fn std() -> Self {
        FaultFs::new(Arc::new(StdFs))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Calls of one op so far.
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
                if splitmix(seed ^ splitmix(rule.seen)) % n != 0 {
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

impl Fs for FaultFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.read(FsOp::ReadFile, path, || self.inner.read_file(path, max_len))
    }

    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.read(FsOp::ReadPrefix, path, || self.inner.read_prefix(path, n))
    }

    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        match self.check(FsOp::WriteNew, path) {
            Some(Fault::Errno(e)) => return Err(io::Error::from_raw_os_error(e)),
            Some(Fault::ShortWrite(e)) => {
                self.inner.write_new(path, &data[..data.len() / 2], false)?;
                return Err(io::Error::from_raw_os_error(e));
            }
            _ => {}
        }
        if !sync {
            return self.inner.write_new(path, data, false);
        }
        match self.check(FsOp::SyncFile, path) {
            Some(Fault::Errno(e)) | Some(Fault::ShortWrite(e)) => {
                // The data was written; the fsync failed.
                self.inner.write_new(path, data, false)?;
                Err(io::Error::from_raw_os_error(e))
            }
            _ => self.inner.write_new(path, data, true),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plain(FsOp::Rename, to, || self.inner.rename(from, to))
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plain(FsOp::Rename, to, || self.inner.rename_noreplace(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.plain(FsOp::RemoveFile, path, || self.inner.remove_file(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.plain(FsOp::RemoveDirAll, path, || self.inner.remove_dir_all(path))
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
}

/// Power loss, simulated: an [`Fs`] over a real directory that also keeps, in memory, the
/// image of that directory as of the last fsyncs, which is all a power cut leaves behind.
///
/// The model is the strict POSIX one, the one a cache that promises durability must be
/// written against (ext4's journal ordering or a battery-backed controller may be kinder; no
/// code should count on it):
/// - a file's data is durable once `write_new(.., sync = true)` returns `Ok`; a file that was
///   never fsynced comes back *torn* (its first half) if its name survives;
/// - a name (a file or directory created, renamed or removed in a directory) is durable only
///   once that directory is synced with `sync_dir`; until then the directory comes back as it
///   was at its previous sync (a directory never synced comes back empty, and one whose own
///   name never became durable does not come back at all);
/// - the cache root, and everything under it when the `CrashFs` is made, is durable.
///
/// Calls go to the real directory (without its fsyncs, which the model makes pointless), so
/// the cache under test sees a normal file system.
/// [`CrashFs::power_off_after`] cuts the power at a chosen call: that call and every later one
/// fail with EIO and change nothing, as if the machine had died at that instant.
/// [`CrashFs::crash`] cuts the power and writes the durable image into a fresh directory,
/// which a test then reopens to check what a restarted process would find.
///
/// Two knobs make the disk lie, so that a test can prove it would notice a missing fsync:
/// [`CrashFs::drop_file_syncs`] and [`CrashFs::drop_dir_syncs`].
///
/// ```
/// use std::sync::Arc;
/// use tiercache::fs::Fs;
/// use tiercache::testing::CrashFs;
/// let dir = tempfile::tempdir()?;
/// let fs = CrashFs::new(dir.path())?;
/// let root = fs.root().to_owned();
/// fs.create_dir_all(&root.join("d"))?;
/// fs.write_new(&root.join("d/synced"), b"kept", true)?;
/// fs.sync_dir(&root.join("d"))?; // the name "synced" is durable in d...
/// fs.sync_dir(&root)?; // ...and the name "d" in the root
/// fs.write_new(&root.join("d/unsynced"), b"lost", true)?;
/// let image = tempfile::tempdir()?;
/// fs.crash(&image.path().join("after"))?;
/// assert_eq!(std::fs::read(image.path().join("after/d/synced"))?, b"kept");
/// assert!(!image.path().join("after/d/unsynced").exists());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct CrashFs {
    root: PathBuf,
    inner: StdFs,
    state: Mutex<CrashState>,
}

/// What a directory entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// A regular file: an index into `CrashState::inodes`.
    File(usize),
    Dir,
}

#[derive(Debug)]
struct Inode {
    data: Vec<u8>,
    /// Set when the data was fsynced.
    synced: bool,
}

type Listing = BTreeMap<OsString, Node>;

#[derive(Debug, Default)]
struct CrashState {
    /// Directory listings as the running system sees them, by absolute path.
    live: HashMap<PathBuf, Listing>,
    /// Directory listings as of each directory's last `sync_dir`.
    durable: HashMap<PathBuf, Listing>,
    inodes: Vec<Inode>,
    calls: u64,
    /// Calls after this many fail with EIO and change nothing.
    power_off_after: Option<u64>,
    /// Set when a call was refused because the power was off.
    powered_off: bool,
    drop_file_syncs: bool,
    drop_dir_syncs: bool,
}

impl CrashState {
    fn add_inode(&mut self, data: Vec<u8>, synced: bool) -> usize {
        self.inodes.push(Inode { data, synced });
        self.inodes.len() - 1
    }

    /// Moves every live listing at or below `from` to the same place below `to`.
    fn move_subtree(&mut self, from: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self
            .live
            .keys()
            .filter(|k| k.starts_with(from))
            .cloned()
            .collect();
        for old in moved {
            if let (Some(listing), Ok(rest)) = (self.live.remove(&old), old.strip_prefix(from)) {
                self.live.insert(to.join(rest), listing);
            }
        }
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

impl CrashFs {
    /// `rename`, or with `noreplace` the variant that refuses to replace `to`.
    fn rename_with(&self, from: &Path, to: &Path, noreplace: bool) -> io::Result<()> {
        let mut st = self.gate()?;
        if noreplace {
            self.inner.rename_noreplace(from, to)?;
        } else {
            self.inner.rename(from, to)?;
        }
        if let (Some((fd, fname)), Some((td, tname))) = (self.split(from), self.split(to)) {
            let node = st.live.get_mut(&fd).and_then(|l| l.remove(&fname));
            if let Some(node) = node {
                st.live.entry(td).or_default().insert(tname, node);
                if node == Node::Dir {
                    st.move_subtree(from, to);
                }
            }
        }
        Ok(())
    }

    /// A power-loss simulator over `root` (created if missing). Everything already under
    /// `root` counts as durable.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        std::fs::create_dir_all(root.as_ref())?;
        let root = std::fs::canonicalize(root.as_ref())?;
        let mut st = CrashState::default();
        Self::scan(&mut st, &root)?;
        Ok(CrashFs {
            root,
            inner: StdFs,
            state: Mutex::new(st),
        })
    }

    /// Records the existing tree under `dir` as durable.
    fn scan(st: &mut CrashState, dir: &Path) -> io::Result<()> {
        let mut listing = Listing::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                listing.insert(entry.file_name(), Node::Dir);
                Self::scan(st, &entry.path())?;
            } else if ft.is_file() {
                let data = std::fs::read(entry.path())?;
                let id = st.add_inode(data, true);
                listing.insert(entry.file_name(), Node::File(id));
            }
            // Symlinks and special files are not modelled: the cache never makes them.
        }
        st.live.insert(dir.to_owned(), listing.clone());
        st.durable.insert(dir.to_owned(), listing);
        Ok(())
    }

    /// The (canonical) root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> MutexGuard<'_, CrashState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cuts the power after `n` more calls in total (counting from the first call ever made):
    /// call number `n + 1` and every later one fail with EIO and change nothing.
    pub fn power_off_after(&self, n: u64) {
        self.lock().power_off_after = Some(n);
    }

    /// Calls made so far, refused ones included.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Whether a call was refused because the power was off.
    pub fn is_powered_off(&self) -> bool {
        self.lock().powered_off
    }

    /// Makes file fsyncs lie (succeed without making anything durable): a disk with a
    /// volatile write cache that ignores flushes, or code that forgot to fsync.
    pub fn drop_file_syncs(&self, yes: bool) {
        self.lock().drop_file_syncs = yes;
    }

    /// Makes directory fsyncs lie (succeed without making any name durable).
    pub fn drop_dir_syncs(&self, yes: bool) {
        self.lock().drop_dir_syncs = yes;
    }

    /// Cuts the power now and writes the durable image of the root into `into` (created; it
    /// must not exist yet). Unsynced file data that survives by name comes back torn.
    pub fn crash(&self, into: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.power_off_after = Some(0);
        st.powered_off = true;
        std::fs::create_dir_all(
            into.parent()
                .ok_or_else(|| io::Error::other("no parent for the image root"))?,
        )?;
        Self::write_image(&st, &self.root, into)
    }

    fn write_image(st: &CrashState, dir: &Path, into: &Path) -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new().mode(0o700).create(into)?;
        let Some(listing) = st.durable.get(dir) else {
            return Ok(()); // created, never synced: comes back empty
        };
        for (name, node) in listing {
            match *node {
                Node::Dir => Self::write_image(st, &dir.join(name), &into.join(name))?,
                Node::File(id) => {
                    let inode = &st.inodes[id];
                    let data = if inode.synced {
                        &inode.data[..]
                    } else {
                        &inode.data[..inode.data.len() / 2]
                    };
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(into.join(name))?;
                    f.write_all(data)?;
                }
            }
        }
        Ok(())
    }

    /// Counts the call; refuses it if the power is off.
    fn gate(&self) -> io::Result<MutexGuard<'_, CrashState>> {
        let mut st = self.lock();
        st.calls += 1;
        if st.power_off_after.is_some_and(|n| st.calls > n) {
            st.powered_off = true;
            return Err(eio());
        }
        Ok(st)
    }

    /// `(directory, name)` of a path below the root; `None` for paths outside the model.
    fn split(&self, path: &Path) -> Option<(PathBuf, OsString)> {
        if !path.starts_with(&self.root) || path == self.root {
            return None;
        }
        Some((path.parent()?.to_owned(), path.file_name()?.to_owned()))
    }
}

impl Fs for CrashFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        let _st = self.gate()?;
        self.inner.read_file(path, max_len)
    }

    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        let _st = self.gate()?;
        self.inner.read_prefix(path, n)
    }

    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        let mut st = self.gate()?;
        // The model decides what is durable; a real fsync would only cost time.
        let result = self.inner.write_new(path, data, false);
        let content = match &result {
            Ok(()) => Some(data.to_vec()),
            // O_EXCL refused: the file there is not ours.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
            // Created, then the write or the fsync failed: whatever reached the file.
            Err(_) => std::fs::read(path).ok(),
        };
        if let (Some(content), Some((dir, name))) = (content, self.split(path)) {
            let synced = result.is_ok() && sync && !st.drop_file_syncs;
            let id = st.add_inode(content, synced);
            st.live.entry(dir).or_default().insert(name, Node::File(id));
        }
        result
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        // The same model as `rename`: the real call refuses to replace.
        self.rename_with(from, to, true)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename_with(from, to, false)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.gate()?;
        self.inner.remove_file(path)?;
        if let Some((dir, name)) = self.split(path) {
            if let Some(l) = st.live.get_mut(&dir) {
                l.remove(&name);
            }
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.gate()?;
        self.inner.remove_dir_all(path)?;
        if let Some((dir, name)) = self.split(path) {
            if let Some(l) = st.live.get_mut(&dir) {
                l.remove(&name);
            }
            st.live.retain(|k, _| !k.starts_with(path));
        }
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.gate()?;
        self.inner.create_dir_all(path)?;
        if let Ok(rest) = path.strip_prefix(&self.root) {
            let mut dir = self.root.clone();
            for part in rest.components() {
                let name = part.as_os_str().to_owned();
                st.live
                    .entry(dir.clone())
                    .or_default()
                    .entry(name.clone())
                    .or_insert(Node::Dir);
                dir.push(name);
                st.live.entry(dir.clone()).or_default();
            }
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.gate()?;
        // Opened (so a missing directory still fails) but not synced: the model decides.
        std::fs::File::open(path)?;
        if path.starts_with(&self.root) && !st.drop_dir_syncs {
            let listing = st.live.get(path).cloned().unwrap_or_default();
            st.durable.insert(path.to_owned(), listing);
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        let _st = self.gate()?;
        self.inner.read_dir(path)
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let _st = self.gate()?;
        self.inner.available_space(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_skip_fire_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::std();
        fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::WriteNew])
                .skip(1)
                .times(2),
        );
        let p = |i: u32| dir.path().join(format!("f{i}"));
        assert!(fs.write_new(&p(0), b"x", false).is_ok());
        assert_eq!(
            fs.write_new(&p(1), b"x", false).unwrap_err().raw_os_error(),
            Some(5)
        );
        assert_eq!(
            fs.write_new(&p(2), b"x", false).unwrap_err().raw_os_error(),
            Some(5)
        );
        assert!(fs.write_new(&p(3), b"x", true).is_ok());
        assert_eq!(fs.calls(FsOp::WriteNew), 4);
        assert_eq!(fs.calls(FsOp::SyncFile), 1);
        assert_eq!(fs.faults_injected(), 2);
    }

    #[test]
    fn short_write_leaves_half_a_file_and_flips_flip() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::std();
        fs.add_rule(
            Rule::new(Fault::ShortWrite(28))
                .ops(&[FsOp::WriteNew])
                .times(1),
        );
        let p = dir.path().join("f");
        assert_eq!(
            fs.write_new(&p, b"abcdef", false)
                .unwrap_err()
                .raw_os_error(),
            Some(28)
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        fs.add_rule(
            Rule::new(Fault::FlipBit(8))
                .ops(&[FsOp::ReadFile])
                .path_contains("f"),
        );
        match fs.read_file(&p, 10).unwrap() {
            FileRead::Data(d) => assert_eq!(d, b"acc"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hang_blocks_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::std());
        fs.add_rule(Rule::new(Fault::Hang).ops(&[FsOp::ReadDir]).times(1));
        let fs2 = fs.clone();
        let path = dir.path().to_owned();
        let t = std::thread::spawn(move || fs2.read_dir(&path).map(|v| v.len()));
        while fs.faults_injected() == 0 {
            std::thread::yield_now();
        }
        assert!(!t.is_finished());
        fs.release_hangs();
        assert_eq!(t.join().unwrap().unwrap(), 0);
    }

    #[test]
    fn crash_keeps_only_what_was_synced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("old")).unwrap();
        std::fs::write(root.join("old/f"), b"old").unwrap();
        let fs = CrashFs::new(&root).unwrap();
        let root = fs.root().to_owned();
        // Replaced by a rename whose directory is synced: the new data survives. Data never
        // fsynced, under a synced name, comes back torn.
        fs.write_new(&root.join("old/t1"), b"new", true).unwrap();
        fs.rename(&root.join("old/t1"), &root.join("old/f"))
            .unwrap();
        fs.write_new(&root.join("old/torn"), b"abcdef", false)
            .unwrap();
        fs.sync_dir(&root.join("old")).unwrap();
        // Renamed and removed without a sync: the old names survive.
        fs.rename(&root.join("old/f"), &root.join("old/g")).unwrap();
        fs.remove_file(&root.join("old/torn")).unwrap();
        // A directory whose own name was never synced is lost with what it holds.
        fs.create_dir_all(&root.join("new/sub")).unwrap();
        fs.write_new(&root.join("new/sub/x"), b"x", true).unwrap();
        fs.sync_dir(&root.join("new/sub")).unwrap();
        fs.sync_dir(&root.join("new")).unwrap();
        let calls = fs.calls();
        let image = dir.path().join("image");
        fs.crash(&image).unwrap();
        assert!(fs.read_dir(&root).is_err(), "the power is off");
        assert_eq!(fs.calls(), calls + 1);
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&image), ["old"]);
        assert_eq!(names(&image.join("old")), ["f", "torn"]);
        assert_eq!(std::fs::read(image.join("old/f")).unwrap(), b"new");
        assert_eq!(std::fs::read(image.join("old/torn")).unwrap(), b"abc");
    }

    #[test]
    fn power_off_refuses_calls_and_lying_syncs_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fs = CrashFs::new(dir.path().join("r")).unwrap();
        let root = fs.root().to_owned();
        fs.power_off_after(2);
        fs.write_new(&root.join("a"), b"a", true).unwrap();
        fs.sync_dir(&root).unwrap();
        assert!(!fs.is_powered_off());
        assert_eq!(
            fs.write_new(&root.join("b"), b"b", true)
                .unwrap_err()
                .raw_os_error(),
            Some(5)
        );
        assert!(fs.is_powered_off());
        assert!(!root.join("b").exists(), "a refused call changes nothing");
        fs.crash(&dir.path().join("img")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("img/a")).unwrap(), b"a");

        let fs = CrashFs::new(dir.path().join("r2")).unwrap();
        let root = fs.root().to_owned();
        fs.drop_file_syncs(true);
        fs.write_new(&root.join("a"), b"abcd", true).unwrap();
        fs.sync_dir(&root).unwrap();
        fs.drop_dir_syncs(true);
        fs.write_new(&root.join("b"), b"b", true).unwrap();
        fs.sync_dir(&root).unwrap();
        fs.crash(&dir.path().join("img2")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("img2/a")).unwrap(), b"ab");
        assert!(!dir.path().join("img2/b").exists());
    }
}
