//! The portable implementation of [`StdFs`](super::StdFs) ([`StdFs::portable`](super::StdFs::portable),
//! and the only one off Linux): POSIX calls on descriptors, with the guarantees of the Linux
//! one.
//!
//! Every path is walked from `/` (the cache root is canonical, so a symlink anywhere in a
//! path is one planted in the cache directory) one component at a time, each opened with
//! `O_NOFOLLOW | O_DIRECTORY` relative to its parent's descriptor; every call then acts on the
//! last component relative to the descriptor of its parent (`openat`, `renameat`, `unlinkat`,
//! `mkdirat`, `linkat`, `fstatat`). What the walk reached cannot be swapped for a symlink
//! before the call acts on it: the descriptors hold the directories themselves.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::opened;
use super::seam::{DirEntryInfo, FileKind, FileRead, Fs};

/// How many times `create_dir_all` makes a directory that keeps vanishing before it can be
/// opened.
const MKDIR_ATTEMPTS: u32 = 3;

/// The portable file system calls (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PortableFs;

/// How a directory on the way is opened: for reading (which works everywhere), never through
/// a symlink. `O_NONBLOCK`: should a system check `O_DIRECTORY` only after opening, a FIFO
/// planted on the way still does not block the open.
const WALK: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// How a file is opened to be read: `O_NONBLOCK` (a FIFO must not wait for a writer),
/// `O_NOCTTY` (a terminal planted there must not become ours).
const READ: OFlags = OFlags::RDONLY.union(OFlags::NONBLOCK).union(OFlags::NOCTTY);

/// The names to open one after the other to reach `path`, and whether the walk starts at `/`
/// (else at the working directory).
fn components(path: &Path) -> io::Result<(bool, Vec<&OsStr>)> {
    let mut absolute = false;
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => absolute = true,
            Component::CurDir => {}
            Component::ParentDir => names.push(OsStr::new("..")),
            Component::Normal(name) => names.push(name),
            Component::Prefix(_) => return Err(Errno::INVAL.into()),
        }
    }
    if !absolute && names.is_empty() && path.as_os_str().is_empty() {
        // `open("")`.
        return Err(Errno::NOENT.into());
    }
    Ok((absolute, names))
}

/// The directory a walk starts from: `/` or the working directory.
fn start(absolute: bool) -> io::Result<OwnedFd> {
    let from = OsStr::new(if absolute { "/" } else { "." });
    match rustix::fs::openat(rustix::fs::CWD, from, WALK, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ACCESS) => search_only(rustix::fs::CWD, from),
        Err(e) => Err(e.into()),
    }
}

/// `e`, the error of a call on `name` in `dir` that does not follow a symlink, as `ELOOP`
/// when `name` is a symlink: systems differ in what they answer for one (`ELOOP` on Linux
/// and macOS, `EMLINK` on FreeBSD, `EFTYPE` on NetBSD, `ENOTDIR` for `O_PATH | O_DIRECTORY`
/// on Linux), and the cache counts them all as a blocked path. `EEXIST` stays (a symlink at
/// the path of an `O_CREAT | O_EXCL` open is "something is there", as on Linux).
fn symlink_as_loop(dir: BorrowedFd<'_>, name: &OsStr, e: Errno) -> io::Error {
    if matches!(e, Errno::LOOP | Errno::EXIST | Errno::NOENT) {
        return e.into();
    }
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => Errno::LOOP.into(),
        _ => e.into(),
    }
}

/// Opens the directory `name` in `dir` without following a symlink.
fn open_dir_in(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    match rustix::fs::openat(dir, name, WALK, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ACCESS) => search_only(dir, name),
        Err(e) => Err(symlink_as_loop(dir, name, e)),
    }
}

/// Opens the directory `name` in `dir`, which the process may search but not read, as a
/// place to act in: `O_PATH`, where the system has it.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn search_only(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| symlink_as_loop(dir, name, e))
}

/// Without `O_PATH`, a directory that grants only search permission cannot be walked.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn search_only(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Err(symlink_as_loop(dir, name, Errno::ACCESS))
}

/// Opens the directory `path`, every component of it included, without following a symlink:
/// `ENOTDIR` if its last component is a symlink, `ELOOP` if one above is (see [`walk`]).
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let (absolute, names) = components(path)?;
    walk(absolute, &names, Errno::NOTDIR)
}

/// Walks `names` from the start. A symlink on the way fails with `ELOOP`, except at the last
/// name, where it fails with `trailing_symlink`: the errors of the Linux implementation,
/// which opens a directory to act in (a parent, a directory to list) with
/// `O_PATH | O_DIRECTORY | O_NOFOLLOW`, where a trailing symlink is "not a directory"
/// (`ENOTDIR`, which the cache takes for "nothing there"), and a file to open with
/// `O_NOFOLLOW`, where every directory above it is on the way (`ELOOP`).
fn walk(absolute: bool, names: &[&OsStr], trailing_symlink: Errno) -> io::Result<OwnedFd> {
    let mut dir = start(absolute)?;
    let last = names.len().saturating_sub(1);
    for (i, name) in names.iter().enumerate() {
        dir = match open_dir_in(dir.as_fd(), name) {
            Ok(next) => next,
            Err(e) if i == last && is_loop(&e) => return Err(trailing_symlink.into()),
            Err(e) => return Err(e),
        };
    }
    Ok(dir)
}

/// Whether `e` is `ELOOP` (what [`symlink_as_loop`] makes of a symlink).
fn is_loop(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
}

/// The directory holding `path` (walked as by [`open_dir`]: `ENOTDIR` if that directory is a
/// symlink, `ELOOP` if one above it is) and the name of `path` in it.
fn open_parent(path: &Path) -> io::Result<(OwnedFd, &OsStr)> {
    let (absolute, mut names) = components(path)?;
    // `/` has no parent to act in.
    let name = names.pop().ok_or(Errno::INVAL)?;
    Ok((walk(absolute, &names, Errno::NOTDIR)?, name))
}

/// Opens `path` with `flags` (and `O_NOFOLLOW`, `O_CLOEXEC`) in its parent: a symlink
/// anywhere on the way, or at `path` itself, fails with `ELOOP` (at `path`: `EEXIST` for
/// `O_CREAT | O_EXCL`, `ENOTDIR` for `O_DIRECTORY`).
fn open_file(path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let (absolute, names) = components(path)?;
    let Some((name, above)) = names.split_last() else {
        let root = if absolute { "/" } else { "." };
        return Ok(rustix::fs::openat(rustix::fs::CWD, root, flags, mode)?);
    };
    let dir = walk(absolute, above, Errno::LOOP)?;
    match rustix::fs::openat(&dir, *name, flags, mode) {
        Ok(fd) => Ok(fd),
        Err(e) => match symlink_as_loop(dir.as_fd(), name, e) {
            // A symlink where a directory is asked for is not one (as on Linux).
            e if is_loop(&e) && flags.contains(OFlags::DIRECTORY) => Err(Errno::NOTDIR.into()),
            e => Err(e),
        },
    }
}

/// Opens a path for reading if it is a regular file (with its length): `Ok(Err(kind))` when
/// something else sits there; a symlink anywhere on the way is `Ok(Err(Symlink))`.
fn open_regular(path: &Path) -> io::Result<Result<(File, u64), FileKind>> {
    match open_file(path, READ, Mode::empty()) {
        Ok(fd) => opened::regular(File::from(fd)),
        Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            Ok(Err(FileKind::Symlink))
        }
        // A socket (or a device with no driver) cannot be opened: not a regular file.
        Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => {
            Ok(Err(FileKind::Special))
        }
        Err(e) => Err(e),
    }
}

/// The kind of a file of mode `mode` (from `fstatat` without following symlinks).
fn kind_of(file_type: FileType) -> FileKind {
    match file_type {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Special,
    }
}

/// The modification time of `st`, unix milliseconds (0 before 1970).
#[allow(
    clippy::unnecessary_cast,
    clippy::useless_conversion,
    reason = "the field types of `struct stat` differ between systems"
)]
fn modified_ms(st: &rustix::fs::Stat) -> u64 {
    let secs = u64::try_from(st.st_mtime as i64).unwrap_or(0);
    let nanos = u64::try_from(st.st_mtime_nsec as i64).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

/// The names in the directory `dir` (without `.` and `..`) with the type the listing gives
/// (`Unknown` where the filesystem does not say). Read whole before anything acts on them.
fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, FileType)>> {
    let mut stream = Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(entry) = stream.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(name).to_owned(), entry.file_type()));
    }
    Ok(out)
}

/// Removes `name` in `dir`: a directory with everything below it (listed first, never
/// descending through a symlink), anything else unlinked (a symlink itself, never its
/// target). `top`: `name` is what the caller named, which fails with `ENOTDIR` when it is
/// not a directory (as `std::fs::remove_dir_all`), except a symlink, which is removed.
/// What vanishes meanwhile is skipped.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, top: bool) -> io::Result<()> {
    let fd = match rustix::fs::openat(dir, name, WALK, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            let e = symlink_as_loop(dir, name, e);
            let not_dir = e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error());
            if is_loop(&e) || (not_dir && !top) {
                return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
            }
            return Err(e);
        }
    };
    for (child, file_type) in list(fd.as_fd())? {
        let removed = match file_type {
            FileType::Directory | FileType::Unknown => remove_tree(fd.as_fd(), &child, false),
            _ => rustix::fs::unlinkat(&fd, &child, AtFlags::empty()).map_err(io::Error::from),
        };
        if let Err(e) = removed {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// [`Fs::rename_noreplace`] where the system has no atomic rename that refuses to replace
/// (or the filesystem refuses it): a hard link at the new name (`EEXIST` if anything is
/// there, symlinks included: nothing changed), then the old name unlinked. Not for
/// directories (`linkat` refuses them: nothing changed). If the old name cannot be unlinked,
/// the error is returned with the file under both names (a put-back tried again then finds
/// the new name taken, `AlreadyExists`, and deletes the old one: the file stays at the new).
fn link_then_unlink(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> io::Result<()> {
    rustix::fs::linkat(from_dir, from, to_dir, to, AtFlags::empty())?;
    match rustix::fs::unlinkat(from_dir, from, AtFlags::empty()) {
        // Someone else removed the old name meanwhile: the file is at the new one.
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `renameat2(RENAME_NOREPLACE)` (Linux) or `renameatx_np(RENAME_EXCL)` (Apple), falling back
/// to [`link_then_unlink`] where the kernel or the filesystem does not support it.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn rename_exclusive(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> io::Result<()> {
    use rustix::fs::RenameFlags;
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // ENOTSUP and EOPNOTSUPP are one number on Linux, two on Apple systems.
        Err(e)
            if e == Errno::INVAL
                || e == Errno::NOSYS
                || e == Errno::NOTSUP
                || e == Errno::OPNOTSUPP =>
        {
            link_then_unlink(from_dir, from, to_dir, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// Systems without an atomic rename that refuses to replace: [`link_then_unlink`].
#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn rename_exclusive(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> io::Result<()> {
    link_then_unlink(from_dir, from, to_dir, to)
}

impl Fs for PortableFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        match open_regular(path)? {
            Ok((file, len)) => opened::read_whole(file, len, max_len),
            Err(kind) => Ok(FileRead::NotRegular(kind)),
        }
    }

    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        match open_regular(path)? {
            Ok((file, len)) => opened::read_first(file, len, n),
            Err(kind) => Ok(FileRead::NotRegular(kind)),
        }
    }

    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let fd = open_file(path, flags, Mode::RUSR | Mode::WUSR)?;
        let mut file = File::from(fd);
        file.write_all(data)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = open_parent(from)?;
        let (to_dir, to_name) = open_parent(to)?;
        Ok(rustix::fs::renameat(
            &from_dir, from_name, &to_dir, to_name,
        )?)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = open_parent(from)?;
        let (to_dir, to_name) = open_parent(to)?;
        rename_exclusive(from_dir.as_fd(), from_name, to_dir.as_fd(), to_name)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = open_parent(path)?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = open_parent(path)?;
        remove_tree(dir.as_fd(), name, true)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = open_parent(path)?;
        Ok(rustix::fs::unlinkat(
            dir.as_fd(),
            name,
            rustix::fs::AtFlags::REMOVEDIR,
        )?)
    }

    /// A symlink on the way fails as in [`walk`] (`ENOTDIR` as the last component, `ELOOP`
    /// above it). (The Linux implementation also answers `ENOTDIR` for a symlink above the
    /// last component when what lies beyond it through the link does not exist: it looks
    /// through the link to find out; this one never does.)
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let (absolute, names) = components(path)?;
        let mut dir = start(absolute)?;
        let last = names.len().saturating_sub(1);
        for (i, name) in names.iter().enumerate() {
            let mut opened = open_dir_in(dir.as_fd(), name);
            // Made, then removed (`rmdir` of an empty directory by another writer or a
            // cleanup) before it could be opened: make it again, a bounded number of times.
            for _ in 0..MKDIR_ATTEMPTS {
                if !matches!(&opened, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                    break;
                }
                match rustix::fs::mkdirat(&dir, *name, Mode::RWXU) {
                    // Made by someone else meanwhile: as good.
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                opened = open_dir_in(dir.as_fd(), name);
            }
            dir = match opened {
                Ok(next) => next,
                Err(e) if i == last && is_loop(&e) => return Err(Errno::NOTDIR.into()),
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let fd = open_file(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(rustix::fs::fsync(&fd)?)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        let dir = open_dir(path)?;
        let mut out = Vec::new();
        for (name, _) in list(dir.as_fd())? {
            let st = match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Vanished since the listing.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            out.push(DirEntryInfo {
                name,
                kind: kind_of(FileType::from_raw_mode(st.st_mode)),
                len: u64::try_from(st.st_size).unwrap_or(0),
                modified_ms: modified_ms(&st),
            });
        }
        Ok(out)
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let st = rustix::fs::fstatvfs(open_dir(path)?)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        let st = rustix::fs::fstatvfs(open_dir(path)?)?;
        Ok(Some(st.f_blocks.saturating_mul(st.f_frsize)))
    }

    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        let st = rustix::fs::fstatvfs(open_dir(path)?)?;
        Ok(Some(st.f_frsize).filter(|&n| n > 0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::fs;
    use std::path::PathBuf;

    /// The directory `dir`, opened as the calls above open it.
    fn at(dir: &Path) -> OwnedFd {
        open_dir(dir).unwrap()
    }

    fn errno(e: io::Error) -> Errno {
        Errno::from_io_error(&e).unwrap()
    }

    #[test]
    fn the_link_fallback_moves_a_file_and_never_replaces_anything() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        let (da, db) = (at(&a), at(&b));
        let name = |s: &str| OsStr::new(s).to_owned();
        fs::write(a.join("f"), b"moving").unwrap();

        // Onto a file, a directory, a dangling symlink: EEXIST, nothing changed.
        fs::write(b.join("file"), b"there").unwrap();
        fs::create_dir(b.join("dir")).unwrap();
        std::os::unix::fs::symlink("nowhere", b.join("link")).unwrap();
        for to in ["file", "dir", "link"] {
            let e = link_then_unlink(da.as_fd(), &name("f"), db.as_fd(), &name(to)).unwrap_err();
            assert_eq!(errno(e), Errno::EXIST, "onto {to}");
            assert_eq!(contents(&a, &b), ("moving".to_owned(), "there".to_owned()));
        }
        assert!(b.join("dir").is_dir());
        assert_eq!(fs::read_link(b.join("link")).unwrap(), Path::new("nowhere"));

        // Onto nothing: moved (one name, one link count).
        link_then_unlink(da.as_fd(), &name("f"), db.as_fd(), &name("g")).unwrap();
        assert!(fs::symlink_metadata(a.join("f")).is_err());
        assert_eq!(fs::read(b.join("g")).unwrap(), b"moving");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(b.join("g")).unwrap().nlink(), 1);

        // A symlink is moved as itself.
        std::os::unix::fs::symlink("target", a.join("l")).unwrap();
        link_then_unlink(da.as_fd(), &name("l"), db.as_fd(), &name("l2")).unwrap();
        assert_eq!(fs::read_link(b.join("l2")).unwrap(), Path::new("target"));
        assert!(fs::symlink_metadata(a.join("l")).is_err());

        // A directory cannot be: refused, nothing changed.
        fs::create_dir(a.join("d")).unwrap();
        let e = link_then_unlink(da.as_fd(), &name("d"), db.as_fd(), &name("d2")).unwrap_err();
        assert_eq!(errno(e), Errno::PERM);
        assert!(a.join("d").is_dir() && fs::symlink_metadata(b.join("d2")).is_err());

        // Nothing to move: ENOENT.
        let e = link_then_unlink(da.as_fd(), &name("f"), db.as_fd(), &name("h")).unwrap_err();
        assert_eq!(errno(e), Errno::NOENT);
    }

    /// The bytes of `a/f` and `b/file`.
    fn contents(a: &Path, b: &Path) -> (String, String) {
        let read = |p: PathBuf| String::from_utf8(fs::read(p).unwrap()).unwrap();
        (read(a.join("f")), read(b.join("file")))
    }

    #[test]
    fn a_symlink_is_eloop_on_the_way_and_enotdir_where_a_directory_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        fs::write(root.join("real/sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        let e = |r: io::Result<OwnedFd>| errno(r.unwrap_err());
        assert_eq!(e(open_dir(&root.join("link"))), Errno::NOTDIR);
        assert_eq!(e(open_dir(&root.join("link/sub"))), Errno::LOOP);
        let read = OFlags::RDONLY;
        assert_eq!(
            e(open_file(&root.join("link"), read, Mode::empty())),
            Errno::LOOP
        );
        assert_eq!(
            e(open_file(&root.join("link/sub/f"), read, Mode::empty())),
            Errno::LOOP
        );
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY;
        assert_eq!(
            e(open_file(&root.join("link"), dir_flags, Mode::empty())),
            Errno::NOTDIR
        );
        let link = root.join("link");
        let (_, name) = open_parent(&link).unwrap();
        assert_eq!(name, "link");
        assert_eq!(
            errno(open_parent(&root.join("link/x")).unwrap_err()),
            Errno::NOTDIR
        );
        assert_eq!(
            errno(open_parent(Path::new("/")).unwrap_err()),
            Errno::INVAL
        );
        assert_eq!(errno(open_dir(Path::new("")).unwrap_err()), Errno::NOENT);
        // A relative path walks from the working directory.
        assert!(open_dir(Path::new(".")).is_ok());
    }
}
