//! Moving a directory written by the previous layout (`v1/ab/cd/<64 hex>`) into the current
//! one (`v2/ab/<64 hex>`). The entry files did not change; only their directories did, so a
//! file is moved with one rename and never rewritten.
//!
//! The rules (FORMAT.md, "Layout"):
//! - A file moves only onto a free path (`rename_noreplace`): an entry already in `v2/` for
//!   the same key was written by a cache of this layout, after the `v1/` one, so it wins and
//!   the `v1/` file is deleted.
//! - Only what the previous layout would have read moves: a regular file whose 64-hex name
//!   sits under the two directories its hash names. Anything else (foreign files, symlinks,
//!   FIFOs, misplaced names) is left where it is, never opened; `v1/` is then kept.
//! - Nothing is served from `v1/`. An entry not moved yet is a miss, and the fence, the
//!   expiry and every check of a read still apply to a moved file (its header is unchanged).
//! - The cache migrates at open, before it serves, one `v1/ab` per disk call. While `v1/`
//!   still holds entries (a migration cut short by a failing disk), removing a key also
//!   removes its `v1/` file, so a later migration cannot bring back a removed answer.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use crate::fs::{FileKind, Fs};

use super::layout::{self, Layout};
use super::take::is_not_found;

/// What migrating one `v1/ab` directory did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Entry files moved into `v2/`.
    pub moved: u64,
    /// Entry files deleted because `v2/` already held a newer entry of the key.
    pub superseded: u64,
    /// Names left in place: not something the previous layout would have read.
    pub left: u64,
    /// Entries that could not be moved now (a directory on the way vanished or was swapped):
    /// left in place for the next open, the migration stays unfinished.
    pub retry: u64,
}

impl std::ops::AddAssign for Migrated {
    fn add_assign(&mut self, o: Migrated) {
        self.moved += o.moved;
        self.superseded += o.superseded;
        self.left += o.left;
        self.retry += o.retry;
    }
}

/// The previous layout's first-level directories (`v1/ab`), in listing order. `None` when
/// there is no `v1/` directory (a `v1` that is not a directory is foreign: left alone).
pub fn legacy_dirs(fs: &dyn Fs, layout: &Layout) -> io::Result<Option<Vec<PathBuf>>> {
    let v1 = layout.legacy_entries_dir();
    // The root listing tells what `v1` is without an error for a `v1` that is not a
    // directory (a symlink, a FIFO, a file: foreign, left alone, never a disk error).
    let root = match fs.read_dir(layout.root()) {
        Ok(names) => names,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let is_dir = root
        .iter()
        .any(|e| e.name == OsStr::new(layout::LEGACY_ENTRIES_DIR) && e.kind == FileKind::Dir);
    if !is_dir {
        return Ok(None);
    }
    match fs.read_dir(&v1) {
        Ok(names) => Ok(Some(
            names
                .into_iter()
                .filter(|e| e.kind == FileKind::Dir && layout::is_fanout_name(&e.name))
                .map(|e| v1.join(e.name))
                .collect(),
        )),
        Err(e) if is_not_found(&e) || e.kind() == io::ErrorKind::NotADirectory => Ok(None),
        // A `v1` symlink: never followed.
        Err(e) if e.raw_os_error() == Some(libc_eloop()) => Ok(None),
        Err(e) => Err(e),
    }
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

/// Moves the entries of one `v1/ab` directory (all its `cd/` directories) into `v2/`, then
/// removes the directories it emptied. `sync`: the `v2/` directories that received files are
/// fsynced before any `v1/` directory is removed.
pub fn migrate_dir(fs: &dyn Fs, layout: &Layout, dir: &Path, sync: bool) -> io::Result<Migrated> {
    let mut done = Migrated::default();
    let Some(ab) = dir.file_name().and_then(OsStr::to_str).map(str::to_owned) else {
        return Ok(done);
    };
    let subs = match fs.read_dir(dir) {
        Ok(s) => s,
        Err(e) if is_not_found(&e) => return Ok(done),
        Err(e) => return Err(e),
    };
    let mut received: Vec<PathBuf> = Vec::new();
    let mut emptied: Vec<PathBuf> = Vec::new();
    for sub in subs {
        if sub.kind != FileKind::Dir || !layout::is_fanout_name(&sub.name) {
            done.left += 1;
            continue;
        }
        let cd = sub.name.to_string_lossy().into_owned();
        let sub_path = dir.join(&sub.name);
        let names = match fs.read_dir(&sub_path) {
            Ok(n) => n,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        let mut left_here = 0;
        for e in names {
            let hash = layout::parse_hex(&e.name);
            let placed = hash.is_some_and(|h| {
                let hex = layout::hex(&h);
                hex[0..2] == ab && hex[2..4] == cd
            });
            let (Some(hash), true, FileKind::File) = (hash, placed, e.kind) else {
                left_here += 1;
                continue;
            };
            let from = sub_path.join(&e.name);
            let to = layout.entry_path(&hash);
            let moved = match fs.rename_noreplace(&from, &to) {
                Err(err) if is_not_found(&err) => {
                    // The fan-out directory of v2 does not exist yet (or the file vanished:
                    // then the retry finds nothing either). One that cannot be created (a
                    // foreign file in its place) blocks this entry only.
                    match fs.create_dir_all(&layout.entry_dir(&hash)) {
                        Ok(()) => fs.rename_noreplace(&from, &to),
                        Err(e) if !crate::fs::IoErrorKind::classify(&e).is_device_failure() => {
                            Err(io::Error::from(io::ErrorKind::NotFound))
                        }
                        Err(e) => return Err(e),
                    }
                }
                r => r,
            };
            match moved {
                Ok(()) => {
                    done.moved += 1;
                    let d = layout.entry_dir(&hash);
                    if !received.contains(&d) {
                        received.push(d);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    match fs.remove_file(&from) {
                        Ok(()) => done.superseded += 1,
                        Err(err) if is_not_found(&err) => {}
                        Err(err) => return Err(err),
                    }
                }
                // Not moved (the file vanished, or a directory on the way was swapped): it
                // counts as left, so its directory is kept and nothing it holds is deleted;
                // the next open tries again.
                Err(err) if is_not_found(&err) => {
                    // Gone (another cache moved it first): nothing left. Still there (a
                    // directory on the way vanished or was swapped): left, for the next open.
                    let still_there = fs
                        .read_dir(&sub_path)
                        .is_ok_and(|names| names.iter().any(|n| n.name == e.name));
                    if still_there {
                        left_here += 1;
                        done.retry += 1;
                    }
                }
                Err(err) => return Err(err),
            }
        }
        done.left += left_here;
        if left_here == 0 {
            emptied.push(sub_path);
        }
    }
    if sync {
        for d in &received {
            fs.sync_dir(d)?;
        }
        if !received.is_empty() {
            fs.sync_dir(layout.entries_dir())?;
        }
    }
    for d in emptied {
        // Only directories whose entries all moved, listed again just before: remove_dir_all
        // then removes no file (one renamed in after this listing would be an older release's,
        // writing beside this one, which is not supported).
        match fs.read_dir(&d) {
            Ok(rest) if rest.is_empty() => {}
            Ok(_) => {
                done.left += 1;
                continue;
            }
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        }
        match remove_empty(fs, &d) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            // Something arrived since the listing: left, with what it holds.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => done.left += 1,
            Err(e) => return Err(e),
        }
    }
    if done.left == 0 {
        match fs.read_dir(dir) {
            Ok(rest) if rest.is_empty() => match remove_empty(fs, dir) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(e),
            },
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Moves every entry of a layout-1 `v1/` under `root` into `v2/` (what a cache does when it
/// opens the directory), for tools that work on a directory without opening a cache (the
/// `answercache` binary's `verify`, `purge` and `ls`). `Ok(None)` when there is no `v1/`.
/// `v2/` is created if needed. Not for a directory a release of layout 1 still writes to.
pub fn migrate_root(fs: &dyn Fs, root: &Path, sync: bool) -> io::Result<Option<Migrated>> {
    let layout = Layout::new(root);
    let Some(dirs) = legacy_dirs(fs, &layout)? else {
        return Ok(None);
    };
    fs.create_dir_all(layout.entries_dir())?;
    let mut done = Migrated::default();
    for dir in dirs {
        done += migrate_dir(fs, &layout, &dir, sync)?;
    }
    if done.retry == 0 {
        finish(fs, &layout, sync)?;
    }
    Ok(Some(done))
}

/// Removes a directory a listing found empty: `rmdir`, which refuses one where something
/// arrived since (never deleting it). An `Fs` without `rmdir` falls back to `remove_dir_all`.
fn remove_empty(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    match fs.remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => fs.remove_dir_all(dir),
        r => r,
    }
}

/// Removes `v1/` if nothing is left in it: `Ok(true)` when it is gone.
pub fn finish(fs: &dyn Fs, layout: &Layout, sync: bool) -> io::Result<bool> {
    let v1 = layout.legacy_entries_dir();
    match fs.read_dir(&v1) {
        Ok(rest) if rest.is_empty() => {}
        Ok(_) => return Ok(false),
        Err(e) if is_not_found(&e) => return Ok(true),
        Err(e) => return Err(e),
    }
    match remove_empty(fs, &v1) {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => return Ok(false),
        Err(e) => return Err(e),
    }
    if sync {
        fs.sync_dir(layout.root())?;
    }
    Ok(true)
}
