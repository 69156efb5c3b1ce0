//! Acting on a judgment of an entry file without deleting a newer one: the file at an entry
//! path is taken aside with an atomic rename and compared with what was judged (see
//! [`take_if_unchanged`]). Used by the store (expiry, eviction, quarantine) and by
//! [`walk::remove_if_unchanged`](super::walk::remove_if_unchanged).

use std::io;
use std::path::Path;

use tracing::debug;

use crate::fs::{FileKind, FileRead, Fs};

/// A missing file, or a path through something that is not a directory: nothing to act on.
pub(crate) fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
}

/// What a read or sweep judged the file at an entry path to be (see [`take_if_unchanged`]).
#[derive(Debug, Clone, Copy)]
pub enum Judged<'a> {
    /// A regular file with exactly these bytes.
    Bytes(&'a [u8]),
    /// A regular file starting with exactly this header (the sweep reads only headers; the
    /// header's checksum covers the rest).
    Header(&'a [u8]),
    /// Something other than a regular file.
    NotRegular(FileKind),
    /// A regular file over the largest valid entry.
    TooLarge,
}

/// Moves the file at `path` to `aside` (a fresh temp name in the same directory tree, e.g.
/// under `tmp/`) if it is still the file that was `judged`: `Ok(true)`, and the caller deletes
/// or quarantines `aside`. `Ok(false)` when there is nothing to act on: the path is empty, or a
/// newer file was renamed onto it since the judgment (it is put back, or, if an even newer one
/// took the path meanwhile, deleted as superseded).
///
/// Why not unlink the path: between reading a file and acting on what it said (expired,
/// corrupt), another writer (this process or another one sharing the directory) may have
/// renamed a newer entry onto the path; unlinking would delete that acknowledged write. The
/// rename is atomic, so what is taken is exactly what sat at the path; comparing it with the
/// judgment tells whether it is the same file; putting a different one back uses a rename that
/// never replaces, so the newest entry always wins. A reader sees a miss for that instant,
/// never a wrong entry.
pub fn take_if_unchanged(
    fs: &dyn Fs,
    path: &Path,
    aside: &Path,
    judged: &Judged<'_>,
    max_file_bytes: u64,
) -> io::Result<bool> {
    match fs.rename(path, aside) {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {
            // Nothing at the path, or no directory to put it aside in (`tmp/` removed, or
            // never created on a volume that was read-only at open): create that one and try
            // once more, so a judged file is never kept in place for want of `tmp/`.
            let Some(dir) = aside.parent() else {
                return Ok(false);
            };
            if fs.read_dir(dir).is_ok() {
                return Ok(false);
            }
            fs.create_dir_all(dir)?;
            match fs.rename(path, aside) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    let same = match judged {
        Judged::Bytes(b) => matches!(
            fs.read_file(aside, b.len() as u64),
            Ok(FileRead::Data(d)) if d == *b
        ),
        Judged::Header(h) => matches!(
            fs.read_prefix(aside, h.len()),
            Ok(FileRead::Data(d)) if d == *h
        ),
        Judged::NotRegular(kind) => matches!(
            fs.read_file(aside, 0),
            Ok(FileRead::NotRegular(k)) if k == *kind
        ),
        Judged::TooLarge => matches!(
            fs.read_file(aside, max_file_bytes),
            Ok(FileRead::TooLarge(_))
        ),
    };
    if same {
        return Ok(true);
    }
    // A failed put-back is tried again at once (a transient error), then left to the caller.
    let mut restored = fs.rename_noreplace(aside, path);
    for _ in 0..2 {
        match &restored {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                restored = fs.rename_noreplace(aside, path);
            }
            _ => break,
        }
    }
    match restored {
        Ok(()) => Ok(false),
        // Superseded by an even newer entry: the one taken is older than it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if let Err(e) = fs.remove_file(aside) {
                debug!(error = %e, "could not remove a superseded entry taken aside");
            }
            Ok(false)
        }
        // The newer entry is stranded at `aside`: never deleted here (it may be an
        // acknowledged write); the caller puts it back later (see `WarmStore::strand`).
        Err(e) => Err(io::Error::new(e.kind(), Stranded(e))),
    }
}

/// The error of [`take_if_unchanged`] when a newer entry it took aside could not be put back:
/// it is still at the `aside` path, and must be put back (with a rename that never replaces)
/// before anything deletes it.
#[derive(Debug)]
pub struct Stranded(pub io::Error);

impl std::fmt::Display for Stranded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a newer entry taken aside could not be put back: {}",
            self.0
        )
    }
}

impl std::error::Error for Stranded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether `e` is [`take_if_unchanged`]'s "a newer entry is stranded at `aside`".
pub fn is_stranded(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stranded>())
}
