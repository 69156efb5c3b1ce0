//! What the seam is: the [`Fs`] trait and the types its calls return (see the module docs
//! of `fs`).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

/// What kind of file a directory entry is (never following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

impl FileKind {
    /// The kind of a file of type `t` (from `symlink_metadata`: a symlink is a symlink).
    pub fn of(t: fs::FileType) -> FileKind {
        if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_dir() {
            FileKind::Dir
        } else if t.is_file() {
            FileKind::File
        } else {
            FileKind::Special
        }
    }

    /// A short description for messages ("symlink", "directory", ...).
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::File => "regular file",
            FileKind::Dir => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Special => "fifo, socket or device",
        }
    }
}

/// One directory entry with its metadata (from `lstat`).
#[derive(Debug, Clone)]
pub struct DirEntryInfo {
    /// The file name.
    pub name: OsString,
    /// Its kind.
    pub kind: FileKind,
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time, unix ms.
    pub modified_ms: u64,
}

/// The result of reading a file that might not be a regular file.
#[derive(Debug)]
pub enum FileRead {
    /// The file's bytes.
    Data(Vec<u8>),
    /// Something other than a regular file sits at the path; it was not read.
    NotRegular(FileKind),
    /// The file is longer than the limit; it was not read.
    TooLarge(u64),
}

/// The file-system operations the warm tier uses.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Reads a whole regular file of at most `max_len` bytes, without following a symlink and
    /// without blocking on a FIFO.
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead>;
    /// Reads the first `n` bytes (fewer if the file is shorter) of a regular file, with the same
    /// protections as [`Fs::read_file`]. Used to read headers without reading payloads.
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead>;
    /// Creates a new file (failing if it exists) with mode 0600, writes `data`, and fsyncs it
    /// when `sync` is set. On error a partial file may remain; the caller removes it.
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to` only if nothing is at `to`: fails with
    /// `AlreadyExists` otherwise, changing nothing. Used to put back a file that a read took
    /// out of the way (see `WarmStore`) without ever replacing a newer one.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Atomically exchanges `from` and `to`, which must both exist: afterwards `to` names
    /// what `from` named and `from` what `to` named (`renameat2(RENAME_EXCHANGE)`). A write
    /// that replaces a file without fsync uses it, then deletes the file now at `from`: on
    /// ext4, a plain rename over an existing file starts writing the new file's data back
    /// inside the call (`auto_da_alloc`), an exchange does not, and neither leaves a moment
    /// with nothing at `to`. `Unsupported` where the file system (or this `Fs`) has no such
    /// call: the default, and callers then rename.
    fn rename_exchange(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Removes a file (or symlink, never its target).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory tree without following symlinks.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents with mode 0700.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Fsyncs a directory, making renames and creations in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Lists a directory with `lstat` metadata. Entries that vanish meanwhile are skipped.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>>;
    /// Bytes available to unprivileged users on the filesystem holding `path`.
    fn available_space(&self, path: &Path) -> io::Result<u64>;

    /// Removes an empty directory (`rmdir`): fails, changing nothing, when it holds anything
    /// (so a file renamed in meanwhile is never deleted). The default fails with
    /// `Unsupported`: the cache then keeps its empty fan-out directories.
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// The size of the filesystem holding `path`, in bytes, if known. The default free-space
    /// floor scales with it (see `Builder::min_free_bytes`). The default is `Ok(None)`
    /// (unknown: the floor is not scaled down).
    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        let _ = path;
        Ok(None)
    }

    /// The file system's allocation unit (`statvfs`'s fragment size), if known: the warm
    /// budget counts each entry file rounded up to it (see `Builder::warm_capacity_bytes`).
    /// The default is `Ok(None)` (4 KiB is assumed).
    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        let _ = path;
        Ok(None)
    }

    /// Whether [`Fs::read_file_nowait`] may be called for files under `root`: only where a
    /// read that finds everything in memory can never wait for the device or the network.
    /// Asked once, when the cache opens (on the blocking pool). The default is `false`:
    /// every read then goes through [`Fs::read_file`] on the blocking pool, bounded by
    /// `io_timeout`. Decorators that inject faults keep the default, so their faults are
    /// always seen on the timed path.
    fn nowait_reads(&self, root: &Path) -> bool {
        let _ = root;
        false
    }

    /// Like [`Fs::read_file`], but only if it can be done without blocking: every path
    /// component already in the kernel's lookup cache and the whole file in the page cache.
    /// `Ok(None)` when it would block (the caller then calls [`Fs::read_file`] on a thread
    /// that may block). Called on an async worker thread, only where
    /// [`Fs::nowait_reads`] said yes. The default always answers `Ok(None)`.
    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        let _ = (path, max_len);
        Ok(None)
    }

    /// Waits, at most `timeout`, until the files [`Fs::read_file_nowait`] opened and left to
    /// be closed later are closed. `true` if some were still open and all are closed now: a
    /// file unlinked or renamed over while one of them was open frees its space only then,
    /// so a write that found the disk full tries once more. Called on the blocking pool.
    /// The default (nothing is closed later) answers `false` at once.
    fn settle_deferred_closes(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        false
    }
}
