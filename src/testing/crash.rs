//! [`CrashFs`]: power loss, simulated.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::real::real_fs;
use crate::fs::{DirEntryInfo, FileRead, Fs, StdFs};

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
/// use answercache::fs::Fs;
/// use answercache::testing::CrashFs;
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
            inner: real_fs(),
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
        crate::sync::lock(&self.state)
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

    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        let _st = self.gate()?;
        self.inner.total_space(path)
    }

    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        let _st = self.gate()?;
        self.inner.block_size(path)
    }
}
