//! How a disk error counts (DESIGN.md's failure table).

use std::fmt;
use std::io;

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
