//! The I/O seam: every disk call of the warm tier goes through [`Fs`].
//!
//! The trait is small, synchronous and object-safe (`&self`, `io::Result`) so that it runs on
//! tokio's blocking pool, and so that tests can wrap it in decorators that fail the Nth call,
//! fail by path, flip bytes on read or hang (see `testing`). Paths are absolute, under the
//! cache root. The std implementation never follows a symlink and never blocks on a FIFO.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::Path;
use std::time::UNIX_EPOCH;

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
    fn of(t: fs::FileType) -> FileKind {
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
}

/// Filesystems on which [`StdFs`] reads from the page cache on the caller's thread: local
/// block filesystems whose page-cache reads support `RWF_NOWAIT`. Network filesystems (NFS,
/// SMB, FUSE) are left out: their `open` may itself talk to a server, which only the timed
/// blocking path may do. tmpfs is left out because it rejects `RWF_NOWAIT` (EOPNOTSUPP on
/// Linux 6.18), so every attempt would be wasted.
const NOWAIT_FS_MAGIC: [u64; 3] = [
    0xEF53,      // ext2/3/4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
];

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

fn millis(m: &fs::Metadata) -> u64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Opens `path` with no symlink followed in *any* component (`openat2` with
/// `RESOLVE_NO_SYMLINKS`; the cache root is canonicalized at open, so a symlink anywhere in a
/// path is one planted inside the cache directory, e.g. `v1/ab -> /elsewhere`). Falls back to
/// `O_NOFOLLOW` on the last component where `openat2` is missing (Linux < 5.6).
fn open_beneath(path: &Path, oflags: rustix::fs::OFlags, mode: u32) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let oflags = oflags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        oflags,
        Mode::from_raw_mode(mode),
        ResolveFlags::NO_SYMLINKS,
    ) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::NOSYS) => {
            let fd = rustix::fs::open(path, oflags, Mode::from_raw_mode(mode))?;
            Ok(File::from(fd))
        }
        Err(e) => Err(e.into()),
    }
}

/// Fails with ELOOP if the directory holding `path` is reached through a symlink, so that a
/// rename, unlink or mkdir by path can never act outside the cache directory. (A symlink
/// swapped in between this check and the call is not caught; planting one needs write access
/// to the cache directory, which the threat model gives only to crashes and stray tools.)
fn check_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => open_beneath(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            0,
        )
        .map(drop),
        _ => Ok(()),
    }
}

/// Opens a path for reading if it is a regular file: `Ok(Err(kind))` when something else sits
/// there. O_NONBLOCK: opening a FIFO must not wait for a writer. No symlink is followed: one
/// at the entry path or above it fails with ELOOP.
fn open_regular(path: &Path) -> io::Result<Result<(File, fs::Metadata), FileKind>> {
    let open = open_beneath(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY,
        0,
    );
    let file = match open {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(Err(FileKind::Symlink));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(Ok((file, meta)))
    } else if ft.is_dir() {
        Ok(Err(FileKind::Dir))
    } else {
        Ok(Err(FileKind::Special))
    }
}

impl Fs for StdFs {
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        let (file, meta) = match open_regular(path)? {
            Ok(f) => f,
            Err(kind) => return Ok(FileRead::NotRegular(kind)),
        };
        // Never more than the file holds (`n` may be a limit of gigabytes).
        let cap = usize::try_from(meta.len()).map_or(n, |len| len.min(n));
        let mut buf = Vec::with_capacity(cap);
        file.take(n as u64).read_to_end(&mut buf)?;
        Ok(FileRead::Data(buf))
    }

    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        let (mut file, meta) = match open_regular(path)? {
            Ok(f) => f,
            Err(kind) => return Ok(FileRead::NotRegular(kind)),
        };
        if meta.len() > max_len {
            return Ok(FileRead::TooLarge(meta.len()));
        }
        let cap = usize::try_from(meta.len()).unwrap_or(0);
        let mut buf = Vec::with_capacity(cap);
        // Read one byte past the limit so a file that grew after fstat is still caught.
        (&mut file)
            .take(max_len.saturating_add(1))
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > max_len {
            return Ok(FileRead::TooLarge(buf.len() as u64));
        }
        Ok(FileRead::Data(buf))
    }

    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        use rustix::fs::OFlags;
        let mut file = open_beneath(path, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, 0o600)?;
        file.write_all(data)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        check_parent(from)?;
        check_parent(to)?;
        fs::rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        check_parent(from)?;
        check_parent(to)?;
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            from,
            rustix::fs::CWD,
            to,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(io::Error::from)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        check_parent(path)?;
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        check_parent(path)?;
        fs::remove_dir_all(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        // The deepest existing ancestor must be reached without symlinks; what is created
        // below it is created by us.
        let mut existing = path;
        while let Some(parent) = existing.parent() {
            if fs::symlink_metadata(existing).is_ok() {
                break;
            }
            existing = parent;
        }
        if !existing.as_os_str().is_empty() {
            open_beneath(
                existing,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                0,
            )?;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        open_beneath(
            path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            0,
        )?
        .sync_all()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        open_beneath(
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            0,
        )?;
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            // DirEntry::metadata does not follow symlinks.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let ft = meta.file_type();
            let kind =
                if ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device() {
                    FileKind::Special
                } else {
                    FileKind::of(ft)
                };
            out.push(DirEntryInfo {
                name: entry.file_name(),
                kind,
                len: meta.len(),
                modified_ms: millis(&meta),
            });
        }
        Ok(out)
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(path)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Yes on ext4, xfs and btrfs (see `NOWAIT_FS_MAGIC`) when the kernel has
    /// `RESOLVE_CACHED` (Linux 5.12).
    fn nowait_reads(&self, root: &Path) -> bool {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let Ok(st) = rustix::fs::statfs(root) else {
            return false;
        };
        // `f_type` is a signed word (32-bit on 32-bit targets, where btrfs's magic is
        // negative); the magic numbers are 32-bit: compare the low 32 bits.
        #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss, reason = "see above")]
        let magic = u64::from(st.f_type as u32);
        if !NOWAIT_FS_MAGIC.contains(&magic) {
            return false;
        }
        matches!(
            rustix::fs::openat2(
                rustix::fs::CWD,
                root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS | ResolveFlags::CACHED,
            ),
            Ok(_) | Err(rustix::io::Errno::AGAIN)
        )
    }

    /// `openat2` with `RESOLVE_CACHED | RESOLVE_NO_SYMLINKS` (EAGAIN unless every component is
    /// in the dentry cache), `O_NOATIME` (no inode update to journal) and `O_NONBLOCK`, then
    /// `fstat` and `preadv2(RWF_NOWAIT)` (EAGAIN unless the data is in the page cache).
    /// Anything that would need I/O answers `Ok(None)`.
    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        use rustix::io::Errno;
        if !closer::has_room() {
            return Ok(None);
        }
        let flags = OFlags::RDONLY
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC
            | OFlags::NOFOLLOW
            | OFlags::NOATIME;
        let fd = match rustix::fs::openat2(
            rustix::fs::CWD,
            path,
            flags,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::CACHED,
        ) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => return Ok(Some(FileRead::NotRegular(FileKind::Symlink))),
            // Not cached (AGAIN); O_NOATIME on a file another user owns (PERM); a kernel
            // without RESOLVE_CACHED (INVAL, NOSYS): the blocking path decides.
            Err(Errno::AGAIN | Errno::PERM | Errno::INVAL | Errno::NOSYS) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let read = read_open_nowait(&fd, max_len);
        // Closed on the closer thread, never here (see `closer`).
        closer::defer(fd);
        read
    }
}

/// The part of [`StdFs::read_file_nowait`] after the open.
fn read_open_nowait(fd: &OwnedFd, max_len: u64) -> io::Result<Option<FileRead>> {
    use rustix::fs::FileType;
    use rustix::io::{Errno, ReadWriteFlags};
    let st = rustix::fs::fstat(fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Ok(Some(FileRead::NotRegular(FileKind::Dir))),
        _ => return Ok(Some(FileRead::NotRegular(FileKind::Special))),
    }
    let len = u64::try_from(st.st_size).unwrap_or(0);
    if len > max_len {
        return Ok(Some(FileRead::TooLarge(len)));
    }
    // One byte past the length: a file that grew after fstat goes to the blocking path.
    let Ok(cap) = usize::try_from(len.saturating_add(1)) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; cap];
    let mut got = 0;
    while got < cap {
        let offset = got as u64;
        let read = rustix::io::preadv2(
            fd,
            &mut [io::IoSliceMut::new(&mut buf[got..])],
            offset,
            ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            // Not (all) in the page cache, or RWF_NOWAIT unsupported here.
            Err(Errno::AGAIN | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    if got == cap {
        return Ok(None);
    }
    buf.truncate(got);
    Ok(Some(FileRead::Data(buf)))
}

/// Closes the files [`StdFs::read_file_nowait`] opened, on a thread of its own.
///
/// Closing a file can do I/O: if the entry was unlinked or renamed over while it was open
/// (a `set` of the same key, an eviction, the sweep), this close drops the last reference and
/// the filesystem frees the inode there and then (journal, block bitmaps), which can wait for
/// a sick disk. An async worker must never wait for the disk, so the descriptor is handed to
/// this thread. At most [`MAX_PENDING`](closer::MAX_PENDING) descriptors wait for it; beyond
/// that (the thread is stuck in a close) reads take the blocking path, so a hung disk costs a
/// bounded number of descriptors, not all of them.
mod closer {
    use std::os::fd::OwnedFd;
    use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
    use std::time::Duration;

    /// Descriptors waiting to be closed, at most.
    pub(super) const MAX_PENDING: usize = 256;

    struct Closer {
        pending: Mutex<Vec<OwnedFd>>,
        wake: Condvar,
    }

    fn lock(m: &Mutex<Vec<OwnedFd>>) -> MutexGuard<'_, Vec<OwnedFd>> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The closer, started on first use; `None` if its thread could not be started.
    fn closer() -> Option<&'static Closer> {
        static CLOSER: OnceLock<Option<&'static Closer>> = OnceLock::new();
        *CLOSER.get_or_init(|| {
            let c: &'static Closer = Box::leak(Box::new(Closer {
                pending: Mutex::new(Vec::new()),
                wake: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("tiercache-close".into())
                .spawn(move || loop {
                    let batch = {
                        let mut p = lock(&c.pending);
                        while p.is_empty() {
                            p = c
                                .wake
                                .wait(p)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                        std::mem::take(&mut *p)
                    };
                    drop(batch);
                    // Lets the next closes gather: at most a few thousand wake-ups a second
                    // under any read rate.
                    std::thread::sleep(Duration::from_micros(200));
                })
                .ok()
                .map(|_| c)
        })
    }

    /// Whether a descriptor opened now could be handed to the closer.
    pub(super) fn has_room() -> bool {
        closer().is_some_and(|c| lock(&c.pending).len() < MAX_PENDING)
    }

    /// Hands `fd` to the closer thread (closes it here only if that thread could not be
    /// started, which `has_room` reports before any open).
    pub(super) fn defer(fd: OwnedFd) {
        let Some(c) = closer() else {
            drop(fd);
            return;
        };
        let mut p = lock(&c.pending);
        let was_empty = p.is_empty();
        p.push(fd);
        drop(p);
        if was_empty {
            c.wake.notify_one();
        }
    }
}

/// How a disk error counts, per DESIGN.md's failure table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoErrorKind {
    /// ENOSPC, EDQUOT, or free space under `min_free_bytes`.
    NoSpace,
    /// EIO.
    Io,
    /// EROFS.
    ReadOnly,
    /// EACCES, EPERM.
    Permission,
    /// A call that did not return within `io_timeout`.
    Timeout,
    /// EFBIG: this one entry is too large for the filesystem or the process's file size limit.
    FileTooLarge,
    /// The entry's path is blocked by something planted in the directory (ENOTDIR, EISDIR,
    /// EEXIST, ELOOP, ENAMETOOLONG): about this entry, not the device.
    Path,
    /// Anything else.
    Other,
}

impl IoErrorKind {
    /// Every kind, in a fixed order.
    pub const ALL: [IoErrorKind; 8] = [
        IoErrorKind::NoSpace,
        IoErrorKind::Io,
        IoErrorKind::ReadOnly,
        IoErrorKind::Permission,
        IoErrorKind::Timeout,
        IoErrorKind::FileTooLarge,
        IoErrorKind::Path,
        IoErrorKind::Other,
    ];

    /// Classifies an I/O error. NotFound is not an error of the disk and is handled by callers
    /// before classifying; if it reaches here it is `Other`.
    pub fn classify(e: &io::Error) -> IoErrorKind {
        use rustix::io::Errno;
        if let Some(code) = e.raw_os_error() {
            let errno = Errno::from_raw_os_error(code);
            return match errno {
                Errno::NOSPC | Errno::DQUOT => IoErrorKind::NoSpace,
                Errno::IO => IoErrorKind::Io,
                Errno::ROFS => IoErrorKind::ReadOnly,
                Errno::ACCESS | Errno::PERM => IoErrorKind::Permission,
                Errno::FBIG => IoErrorKind::FileTooLarge,
                Errno::TIMEDOUT => IoErrorKind::Timeout,
                Errno::NOTDIR
                | Errno::ISDIR
                | Errno::EXIST
                | Errno::LOOP
                | Errno::NAMETOOLONG
                | Errno::XDEV => IoErrorKind::Path,
                _ => IoErrorKind::Other,
            };
        }
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => IoErrorKind::NoSpace,
            io::ErrorKind::ReadOnlyFilesystem => IoErrorKind::ReadOnly,
            io::ErrorKind::PermissionDenied => IoErrorKind::Permission,
            io::ErrorKind::TimedOut => IoErrorKind::Timeout,
            io::ErrorKind::FileTooLarge => IoErrorKind::FileTooLarge,
            io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::AlreadyExists => IoErrorKind::Path,
            _ => IoErrorKind::Other,
        }
    }

    /// Does this kind count against the device (breaker failure, memory-only window)? EFBIG
    /// and blocked paths do not: they are about one entry, not the disk.
    pub fn is_device_failure(self) -> bool {
        !matches!(self, IoErrorKind::FileTooLarge | IoErrorKind::Path)
    }

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            IoErrorKind::NoSpace => "no-space",
            IoErrorKind::Io => "io",
            IoErrorKind::ReadOnly => "read-only",
            IoErrorKind::Permission => "permission",
            IoErrorKind::Timeout => "timeout",
            IoErrorKind::FileTooLarge => "file-too-large",
            IoErrorKind::Path => "path",
            IoErrorKind::Other => "other",
        }
    }

    /// Position in [`IoErrorKind::ALL`].
    pub fn index(self) -> usize {
        IoErrorKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }
}

impl fmt::Display for IoErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_design_table() {
        let c = |code: i32| IoErrorKind::classify(&io::Error::from_raw_os_error(code));
        use rustix::io::Errno;
        assert_eq!(c(Errno::NOSPC.raw_os_error()), IoErrorKind::NoSpace);
        assert_eq!(c(Errno::DQUOT.raw_os_error()), IoErrorKind::NoSpace);
        assert_eq!(c(Errno::IO.raw_os_error()), IoErrorKind::Io);
        assert_eq!(c(Errno::ROFS.raw_os_error()), IoErrorKind::ReadOnly);
        assert_eq!(c(Errno::ACCESS.raw_os_error()), IoErrorKind::Permission);
        assert_eq!(c(Errno::PERM.raw_os_error()), IoErrorKind::Permission);
        assert_eq!(c(Errno::FBIG.raw_os_error()), IoErrorKind::FileTooLarge);
        assert!(!IoErrorKind::FileTooLarge.is_device_failure());
        assert!(IoErrorKind::NoSpace.is_device_failure());
        assert_eq!(
            IoErrorKind::classify(&io::Error::from(io::ErrorKind::TimedOut)),
            IoErrorKind::Timeout
        );
    }

    fn mkfifo(dir: &Path) -> std::path::PathBuf {
        let fifo = dir.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        fifo
    }

    #[test]
    fn std_fs_refuses_symlinks_and_fifos_and_bounds_length() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            StdFs.read_file(&link, 100).unwrap(),
            FileRead::NotRegular(FileKind::Symlink)
        ));
        assert!(matches!(
            StdFs.read_file(dir.path(), 100).unwrap(),
            FileRead::NotRegular(FileKind::Dir)
        ));
        assert!(matches!(
            StdFs.read_file(&target, 3).unwrap(),
            FileRead::TooLarge(6)
        ));
        match StdFs.read_file(&target, 6).unwrap() {
            FileRead::Data(d) => assert_eq!(d, b"secret"),
            other => panic!("{other:?}"),
        }
        let fifo = mkfifo(dir.path());
        assert!(matches!(
            StdFs.read_file(&fifo, 100).unwrap(),
            FileRead::NotRegular(FileKind::Special)
        ));
        let kinds: Vec<_> = {
            let mut v = StdFs.read_dir(dir.path()).unwrap();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v.into_iter().map(|e| (e.name, e.kind)).collect()
        };
        assert_eq!(
            kinds,
            vec![
                ("fifo".into(), FileKind::Special),
                ("link".into(), FileKind::Symlink),
                ("target".into(), FileKind::File)
            ]
        );
    }

    #[test]
    fn nowait_reads_only_from_memory_and_never_through_symlinks_or_fifos() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        assert!(
            StdFs.nowait_reads(dir.path()),
            "the temp dir must be on ext4, xfs or btrfs for this test"
        );
        let target = dir.path().join("target");
        StdFs.write_new(&target, b"secret", true).unwrap();
        match StdFs.read_file_nowait(&target, 6).unwrap() {
            Some(FileRead::Data(d)) => assert_eq!(d, b"secret"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            StdFs.read_file_nowait(&target, 5).unwrap(),
            Some(FileRead::TooLarge(6))
        ));
        // Out of the page cache: it would block, so it is not read here.
        let f = File::open(&target).unwrap();
        rustix::fs::fadvise(f.as_fd(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
        assert!(StdFs.read_file_nowait(&target, 6).unwrap().is_none());
        // A name never looked up has no (negative) dentry yet: the lookup would block.
        let missing = dir.path().join("missing");
        assert!(StdFs.read_file_nowait(&missing, 6).unwrap().is_none());
        let slow = StdFs.read_file(&missing, 6).unwrap_err();
        assert_eq!(slow.kind(), io::ErrorKind::NotFound);
        // Now the kernel remembers that it is missing: a miss answered without blocking.
        let fast = StdFs.read_file_nowait(&missing, 6).unwrap_err();
        assert_eq!(fast.kind(), io::ErrorKind::NotFound);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            StdFs.read_file_nowait(&link, 100).unwrap(),
            Some(FileRead::NotRegular(FileKind::Symlink))
        ));
        // A symlinked directory above the file is refused too.
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(&sub, dir.path().join("sublink")).unwrap();
        assert!(matches!(
            StdFs
                .read_file_nowait(&dir.path().join("sublink/f"), 100)
                .unwrap(),
            Some(FileRead::NotRegular(FileKind::Symlink))
        ));
        assert!(matches!(
            StdFs.read_file_nowait(&sub, 100).unwrap(),
            Some(FileRead::NotRegular(FileKind::Dir))
        ));
        let fifo = mkfifo(dir.path());
        assert!(matches!(
            StdFs.read_file_nowait(&fifo, 100).unwrap(),
            Some(FileRead::NotRegular(FileKind::Special))
        ));
    }

    #[test]
    fn write_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        StdFs.write_new(&p, b"one", true).unwrap();
        let err = StdFs.write_new(&p, b"two", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
