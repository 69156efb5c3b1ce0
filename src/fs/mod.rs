//! The I/O seam: every disk call of the warm tier goes through [`Fs`].
//!
//! The trait is small, synchronous and object-safe (`&self`, `io::Result`) so that it runs on
//! tokio's blocking pool, and so that tests can wrap it in decorators that fail the Nth call,
//! fail by path, flip bytes on read or hang (see `testing`). Paths are absolute, under the
//! cache root. The std implementation never follows a symlink and never blocks on a FIFO.
//!
//! Files: this one (the trait and what it returns), `std_fs` (the std implementation),
//! `nowait` (the non-blocking page-cache read and its closer thread), `error` (how an I/O
//! error counts).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

mod error;
mod nowait;
mod std_fs;

pub use error::IoErrorKind;
pub use std_fs::StdFs;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

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
