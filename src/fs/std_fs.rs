//! [`StdFs`]: the real file system, never following a symlink, never blocking on a FIFO, in
//! one of two implementations: the Linux one (`linux`, with its fast paths) or the portable
//! one (`portable`, any Unix).

use std::io;
use std::path::Path;

#[cfg(all(target_os = "linux", not(answercache_force_portable)))]
use super::linux::LinuxFs;
use super::portable::PortableFs;
use super::seam::{DirEntryInfo, FileRead, Fs};

/// The real file system: every path component reached without following a symlink (a symlink
/// anywhere in a path is refused with `ELOOP`, or read as
/// [`FileRead::NotRegular`]`(`[`FileKind::Symlink`](super::FileKind::Symlink)`)`), FIFOs,
/// sockets and devices never opened for a blocking read, new files created with mode 0600
/// and directories with 0700.
///
/// Two implementations, with the same guarantees and the same errors:
/// - **Linux** ([`StdFs::new`] and [`StdFs::default`] on Linux): `openat2` with
///   `RESOLVE_NO_SYMLINKS`, `renameat2(RENAME_NOREPLACE)`, and reads from the page cache on
///   the caller's thread (`RESOLVE_CACHED`, `RWF_NOWAIT`) on local ext4, xfs and btrfs (see
///   [`Builder::page_cache_reads`](crate::Builder::page_cache_reads)).
/// - **Portable** ([`StdFs::portable`], and what [`StdFs::new`] is on every other Unix):
///   POSIX calls on descriptors. See [`StdFs::portable`].
///
/// `Debug` says which: `StdFs { mode: Linux }` or `StdFs { mode: Portable }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdFs {
    mode: Implementation,
}

/// Which implementation a [`StdFs`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Implementation {
    #[cfg(all(target_os = "linux", not(answercache_force_portable)))]
    Linux,
    Portable,
}

impl StdFs {
    /// The real file system with this platform's best implementation: the Linux one on
    /// Linux, the portable one ([`StdFs::portable`]) on every other Unix.
    pub const fn new() -> StdFs {
        #[cfg(all(target_os = "linux", not(answercache_force_portable)))]
        let mode = Implementation::Linux;
        #[cfg(not(all(target_os = "linux", not(answercache_force_portable))))]
        let mode = Implementation::Portable;
        StdFs { mode }
    }

    /// The portable implementation: the default on Unix systems other than Linux (macOS, the
    /// BSDs), available on Linux too, where the test suite runs the cache on it.
    ///
    /// Same guarantees as the Linux one, with POSIX calls only:
    /// - Every path is walked one component at a time from `/` (or from the working
    ///   directory for a relative path), each component opened with `O_NOFOLLOW` relative to
    ///   its parent's descriptor, and every call acts on the last component relative to its
    ///   parent's descriptor (`openat`, `renameat`, `unlinkat`, `mkdirat`, `linkat`,
    ///   `fstatat`): a symlink anywhere in a path fails with `ELOOP` (whatever error the
    ///   system gives for `O_NOFOLLOW` on a symlink), and nothing a walk reached can be
    ///   swapped for a symlink before the call acts on it.
    /// - A directory on the way is opened for reading, or, where read permission is missing,
    ///   with `O_PATH` on systems that have it (Linux, FreeBSD); elsewhere a directory that
    ///   grants only search permission cannot be walked (`EACCES`).
    /// - Files to read are opened with `O_NONBLOCK` and checked with `fstat` before any read.
    /// - [`Fs::rename_noreplace`]: `renameat2(RENAME_NOREPLACE)` on Linux and
    ///   `renameatx_np(RENAME_EXCL)` on Apple systems; elsewhere, and where the filesystem
    ///   refuses those, `linkat` then `unlinkat` of the old name (`EEXIST` from `linkat`:
    ///   nothing changed). That fallback cannot move a directory (`EPERM`, nothing changed),
    ///   and, if the old name cannot be unlinked, fails with both names left in place.
    /// - [`Fs::remove_dir_all`] lists each directory before removing what it holds and
    ///   never descends through a symlink; [`Fs::read_dir`] takes each entry's metadata with
    ///   `fstatat(AT_SYMLINK_NOFOLLOW)` on the listed directory's descriptor.
    /// - Free and total space by `fstatvfs`. [`Fs::nowait_reads`] is `false`: every read
    ///   runs on the blocking pool, bounded by `io_timeout`.
    /// - The errors are the Linux implementation's: `ELOOP` for a symlink on the way (a read
    ///   of it is [`FileRead::NotRegular`]`(Symlink)`), `ENOTDIR` for a symlink where a
    ///   directory is asked for (a parent to act in, a directory to list, create or sync),
    ///   `EEXIST` for one at the path of a new file, whatever the system answers for
    ///   `O_NOFOLLOW` on a symlink. Two corner cases differ: [`Fs::create_dir_all`] through a
    ///   symlink whose target lacks the rest of the path fails with `ELOOP`, where Linux
    ///   looks through the link and answers `ENOTDIR`; and free and total space are never
    ///   asked through a symlink (`ENOTDIR`, `ELOOP`), where Linux's `statvfs` follows it.
    ///
    /// Each call walks its path anew (no descriptor is kept between calls), a few more system
    /// calls per operation than on Linux.
    pub const fn portable() -> StdFs {
        StdFs {
            mode: Implementation::Portable,
        }
    }

    /// Whether this is the portable implementation ([`StdFs::portable`]).
    pub const fn is_portable(&self) -> bool {
        matches!(self.mode, Implementation::Portable)
    }

    /// The implementation's calls.
    fn imp(&self) -> &'static dyn Fs {
        match self.mode {
            #[cfg(all(target_os = "linux", not(answercache_force_portable)))]
            Implementation::Linux => &LinuxFs,
            Implementation::Portable => &PortableFs,
        }
    }
}

impl Default for StdFs {
    /// [`StdFs::new`].
    fn default() -> StdFs {
        StdFs::new()
    }
}

impl Fs for StdFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.imp().read_file(path, max_len)
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.imp().read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        self.imp().write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.imp().rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.imp().rename_noreplace(from, to)
    }
    fn rename_exchange(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.imp().rename_exchange(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.imp().remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.imp().remove_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.imp().remove_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.imp().create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.imp().sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.imp().read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.imp().available_space(path)
    }
    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        self.imp().total_space(path)
    }
    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        self.imp().block_size(path)
    }
    fn nowait_reads(&self, root: &Path) -> bool {
        self.imp().nowait_reads(root)
    }
    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        self.imp().read_file_nowait(path, max_len)
    }
    fn settle_deferred_closes(&self, timeout: std::time::Duration) -> bool {
        self.imp().settle_deferred_closes(timeout)
    }
}
