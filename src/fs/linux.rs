//! The Linux implementation of [`StdFs`](super::StdFs) (its default there): `openat2` with
//! `RESOLVE_NO_SYMLINKS` for every path, `renameat2(RENAME_NOREPLACE)`, and the page-cache
//! reads of `nowait` on local ext4, xfs and btrfs. Never follows a symlink, never blocks on a
//! FIFO.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::nowait::{closer, read_open_nowait, NOWAIT_FS_MAGIC};
use super::opened;
use super::seam::{DirEntryInfo, FileKind, FileRead, Fs};

/// The Linux file system calls (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LinuxFs;

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

/// [`check_parent`] of both ends of a rename; once when they share a directory (an entry's
/// temp file beside its place: the rename of every write).
fn check_parents(from: &Path, to: &Path) -> io::Result<()> {
    check_parent(from)?;
    if from.parent() != to.parent() {
        check_parent(to)?;
    }
    Ok(())
}

/// Opens a path for reading if it is a regular file (with its length): `Ok(Err(kind))` when
/// something else sits there. O_NONBLOCK: opening a FIFO must not wait for a writer. No
/// symlink is followed: one at the entry path or above it fails with ELOOP.
fn open_regular(path: &Path) -> io::Result<Result<(File, u64), FileKind>> {
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
        // A socket (or a device with no driver) cannot be opened: not a regular file, never
        // a device failure (one planted socket would open the breaker for every key).
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
            return Ok(Err(FileKind::Special));
        }
        Err(e) => return Err(e),
    };
    opened::regular(file)
}

impl Fs for LinuxFs {
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        match open_regular(path)? {
            Ok((file, len)) => opened::read_first(file, len, n),
            Err(kind) => Ok(FileRead::NotRegular(kind)),
        }
    }

    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        match open_regular(path)? {
            Ok((file, len)) => opened::read_whole(file, len, max_len),
            Err(kind) => Ok(FileRead::NotRegular(kind)),
        }
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
        check_parents(from, to)?;
        fs::rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        check_parents(from, to)?;
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            from,
            rustix::fs::CWD,
            to,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(io::Error::from)
    }

    fn rename_exchange(&self, from: &Path, to: &Path) -> io::Result<()> {
        check_parents(from, to)?;
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            from,
            rustix::fs::CWD,
            to,
            rustix::fs::RenameFlags::EXCHANGE,
        ) {
            Ok(()) => Ok(()),
            // A file system without exchange (EINVAL), a kernel without `renameat2`.
            Err(
                rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP,
            ) => Err(io::ErrorKind::Unsupported.into()),
            Err(e) => Err(e.into()),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        check_parent(path)?;
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        check_parent(path)?;
        // Not `std::fs::remove_dir_all`: its directory handles panic when `closedir` fails
        // (see `read_dir`; `faults::fiu_closedir` failed in `clear` with it).
        if fs::symlink_metadata(path)?.file_type().is_symlink() {
            // As std's: a symlink at the path is removed, never followed (anything else that
            // is not a directory fails to open as one: ENOTDIR, as with std's).
            return fs::remove_file(path);
        }
        remove_tree(rustix::fs::CWD, path, 0)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        check_parent(path)?;
        fs::remove_dir(path)
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
        // rustix's `Dir`, not `std::fs::read_dir`: std's directory handle panics when
        // `closedir` fails (an EIO injected by libfiu did, in `faults::fiu`); this one
        // reports errors while reading and ignores one on close, as `close` of a file does.
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        for entry in rustix::fs::Dir::new(fd)? {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e == rustix::io::Errno::NOENT => continue,
                Err(e) => return Err(e.into()),
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = std::ffi::OsStr::from_bytes(name).to_os_string();
            // As `DirEntry::metadata`: does not follow symlinks.
            let meta = match fs::symlink_metadata(path.join(&name)) {
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
                name,
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

    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        let st = rustix::fs::statvfs(path)?;
        Ok(Some(st.f_blocks.saturating_mul(st.f_frsize)))
    }

    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        let st = rustix::fs::statvfs(path)?;
        Ok(Some(st.f_frsize).filter(|&n| n > 0))
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

    /// Waits for the closer thread (see `closer::settle`).
    fn settle_deferred_closes(&self, timeout: std::time::Duration) -> bool {
        closer::settle(timeout)
    }

    /// `openat2` with `RESOLVE_CACHED | RESOLVE_NO_SYMLINKS` (EAGAIN unless every component is
    /// in the dentry cache), `O_NOATIME` (no inode update to journal) and `O_NONBLOCK`, then
    /// `fstat` and `preadv2(RWF_NOWAIT)` (EAGAIN unless the data is in the page cache).
    /// Anything that would need I/O answers `Ok(None)`.
    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        use rustix::io::Errno;
        // A place in the closer's list first: the descriptor must never be closed here.
        let Some(place) = closer::reserve() else {
            return Ok(None);
        };
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
        place.defer(fd);
        read
    }
}

/// How deep [`remove_tree`] descends (one open descriptor and one small stack frame per
/// level): far below the stack of a blocking thread, far above the cache's own layout (two
/// levels). A deeper tree is a planted one: left, reported as `ELOOP` (a path error, not the
/// device's failure), after everything beside it was removed.
const REMOVE_TREE_MAX_DEPTH: usize = 256;

/// Removes the directory `name` (relative to `parent`, or absolute) and everything in it, as
/// `std::fs::remove_dir_all` does but with rustix's `Dir`, whose close errors are ignored:
/// symlinks are removed, never followed (the directory is opened `O_NOFOLLOW`, entries are
/// unlinked by name relative to it); an entry gone meanwhile is not an error; one created
/// meanwhile makes the final `rmdir` fail (`DirectoryNotEmpty`), as std's does. Unlike std's,
/// an entry that cannot be removed does not stop the others: the first error is returned
/// after the rest went (r40, F1: entries beside a planted tree stayed).
fn remove_tree<Fd: std::os::fd::AsFd, P: rustix::path::Arg + Copy>(
    parent: Fd,
    name: P,
    depth: usize,
) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    if depth > REMOVE_TREE_MAX_DEPTH {
        return Err(rustix::io::Errno::LOOP.into());
    }
    let dir = rustix::fs::openat(
        &parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut entries = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e == rustix::io::Errno::NOENT => continue,
            Err(e) => return Err(e.into()),
        };
        let n = entry.file_name();
        if n.to_bytes() == b"." || n.to_bytes() == b".." {
            continue;
        }
        entries.push((n.to_owned(), entry.file_type()));
    }
    let mut first_error = None;
    for (n, kind) in entries {
        let is_dir = match kind {
            FileType::Directory => Ok(true),
            FileType::Unknown => rustix::fs::statat(&dir, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                .map_err(io::Error::from),
            _ => Ok(false),
        };
        let removed = match is_dir {
            Ok(true) => remove_tree(&dir, n.as_c_str(), depth + 1),
            Ok(false) => {
                rustix::fs::unlinkat(&dir, n.as_c_str(), AtFlags::empty()).map_err(io::Error::from)
            }
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    drop(dir);
    if let Some(e) = first_error {
        return Err(e);
    }
    rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR).map_err(io::Error::from)
}

#[cfg(test)]
mod remove_tree_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::symlink;

    use super::LinuxFs;
    use crate::fs::Fs;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_tree_goes_and_symlinks_in_it_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(outside.join("kept")).unwrap();
        std::fs::write(outside.join("kept/file"), b"x").unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/b/c/deep"), b"1").unwrap();
        std::fs::write(tree.join("a/top"), b"2").unwrap();
        symlink(&outside, tree.join("a/b/to_outside")).unwrap();
        symlink(outside.join("kept/file"), tree.join("to_file")).unwrap();
        LinuxFs.remove_dir_all(&tree).unwrap();
        assert_eq!(names(root.path()), ["outside"]);
        assert_eq!(names(&outside.join("kept")), ["file"]);
    }

    #[test]
    fn a_symlink_at_the_path_is_removed_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("f"), b"x").unwrap();
        let link = root.path().join("link");
        symlink(&target, &link).unwrap();
        LinuxFs.remove_dir_all(&link).unwrap();
        assert_eq!(names(root.path()), ["target"]);
        assert_eq!(names(&target), ["f"]);
    }

    #[test]
    fn a_file_at_the_path_is_not_a_directory_and_stays() {
        // As `std::fs::remove_dir_all`: ENOTDIR, nothing removed (a fan-out directory
        // replaced by a file is a path error, adversary5 `clear_fan_replaced_by_a_file`).
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, b"kept").unwrap();
        let err = LinuxFs.remove_dir_all(&file).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotADirectory);
        assert_eq!(std::fs::read(&file).unwrap(), b"kept");
    }

    #[test]
    fn a_missing_path_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let err = LinuxFs
            .remove_dir_all(&root.path().join("absent"))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_tree_deeper_than_the_bound_stays_and_everything_beside_it_goes() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        let mut deep = tree.join("a");
        for _ in 0..=super::REMOVE_TREE_MAX_DEPTH + 1 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        for name in ["0", "b", "z"] {
            std::fs::write(tree.join(name), b"x").unwrap();
        }
        std::fs::create_dir_all(tree.join("c/e")).unwrap();
        std::fs::write(tree.join("c/e/f"), b"x").unwrap();
        let err = LinuxFs.remove_dir_all(&tree).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
        assert!(deep.is_dir());
        assert_eq!(names(&tree), ["a"]);
    }

    #[test]
    fn a_tree_as_deep_as_the_bound_goes() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        let mut deep = tree.clone();
        for _ in 0..super::REMOVE_TREE_MAX_DEPTH {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("leaf"), b"x").unwrap();
        LinuxFs.remove_dir_all(&tree).unwrap();
        assert_eq!(names(root.path()), Vec::<String>::new());
    }
}

#[cfg(test)]
mod exchange_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::LinuxFs;
    use crate::fs::Fs;

    #[test]
    fn an_exchange_swaps_two_files_and_needs_both() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"old").unwrap();
        LinuxFs.rename_exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
        std::fs::remove_file(&b).unwrap();
        let err = LinuxFs.rename_exchange(&a, &b).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
    }
}
