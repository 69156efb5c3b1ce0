//! Walking the entry files of a cache directory without opening a cache: what `stats` and
//! `purge` need.
//!
//! The walk is the one `tiercache::verify` does, and as distrustful: every listing goes
//! through `StdFs::read_dir` (no symlink followed anywhere below the root), only directories
//! with two-hex-character names are descended into, only 64-hex-character names are entry
//! files, and everything else is counted as foreign and left alone. A directory that cannot be
//! listed is recorded and skipped, so one bad fan-out directory does not hide the others; only
//! failing to list `<root>/v1` itself ends the walk.

use std::io;
use std::path::{Path, PathBuf};

use tiercache::fs::{DirEntryInfo, FileKind, Fs};
use tiercache::warm::format::{Header, FLAG_ENCODING_MASK};
use tiercache::warm::layout::{self, Layout};

/// One name at an entry path (`v1/ab/cd/<64 hex>`), as listed (`lstat`, never followed).
#[derive(Debug, Clone)]
pub struct EntryFile {
    /// Full path.
    pub path: PathBuf,
    /// Path relative to the cache root, `v1/ab/cd/<hex>`.
    pub rel: String,
    /// What sits there.
    pub kind: FileKind,
    /// Its length in bytes.
    pub len: u64,
}

/// A directory the walk could not list; the walk went on.
#[derive(Debug, Clone)]
pub struct WalkError {
    /// Path relative to the cache root.
    pub rel: String,
    /// The error.
    pub error: String,
}

/// What the walk saw besides entry files.
#[derive(Debug, Clone, Default)]
pub struct WalkSummary {
    /// Foreign files and folders under `v1/`, and a `v1` that is not a directory.
    pub foreign: u64,
    /// Directories that could not be listed.
    pub errors: Vec<WalkError>,
}

/// Calls `visit` for every name at an entry path under `root`, in path order. A missing
/// `<root>/v1` is an empty walk.
pub fn entries(
    fs: &dyn Fs,
    root: &Path,
    visit: &mut dyn FnMut(EntryFile),
) -> io::Result<WalkSummary> {
    let mut summary = WalkSummary::default();
    let layout = Layout::new(root);
    let Some(root_list) = list_or_missing(fs, root)? else {
        return Ok(summary);
    };
    match root_list
        .iter()
        .find(|e| e.name == layout::ENTRIES_DIR)
        .map(|e| e.kind)
    {
        None => return Ok(summary),
        Some(FileKind::Dir) => {}
        Some(_) => {
            summary.foreign += 1;
            return Ok(summary);
        }
    }
    let v1 = layout.entries_dir();
    let Some(top) = list_or_missing(fs, v1)? else {
        return Ok(summary);
    };
    for a in top {
        if a.kind != FileKind::Dir || !layout::is_fanout_name(&a.name) {
            summary.foreign += 1;
            continue;
        }
        let dir_a = v1.join(&a.name);
        let Some(second) = list_logged(fs, root, &dir_a, &mut summary) else {
            continue;
        };
        for b in second {
            if b.kind != FileKind::Dir || !layout::is_fanout_name(&b.name) {
                summary.foreign += 1;
                continue;
            }
            let dir_b = dir_a.join(&b.name);
            let Some(files) = list_logged(fs, root, &dir_b, &mut summary) else {
                continue;
            };
            for f in files {
                if layout::parse_hex(&f.name).is_none() {
                    summary.foreign += 1;
                    continue;
                }
                let path = dir_b.join(&f.name);
                visit(EntryFile {
                    rel: relative(root, &path),
                    path,
                    kind: f.kind,
                    len: f.len,
                });
            }
        }
    }
    Ok(summary)
}

/// The name of the encoding an entry's header records (`raw`, `json`, `bincode`, `unrecorded`
/// for a version-1 file), or `reserved` for the code no version defines (such a file is
/// corrupt: `verify` reports it under `flags`).
pub fn encoding_name(h: &Header) -> &'static str {
    if h.version >= 2 && h.flags & FLAG_ENCODING_MASK == FLAG_ENCODING_MASK {
        "reserved"
    } else {
        h.meta.encoding.name()
    }
}

/// `path` relative to `root`, as text.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn sorted(mut v: Vec<DirEntryInfo>) -> Vec<DirEntryInfo> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn list_or_missing(fs: &dyn Fs, dir: &Path) -> io::Result<Option<Vec<DirEntryInfo>>> {
    match fs.read_dir(dir) {
        Ok(v) => Ok(Some(sorted(v))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot list {}: {e}", dir.display()),
        )),
    }
}

fn list_logged(
    fs: &dyn Fs,
    root: &Path,
    dir: &Path,
    summary: &mut WalkSummary,
) -> Option<Vec<DirEntryInfo>> {
    match fs.read_dir(dir) {
        Ok(v) => Some(sorted(v)),
        // Removed by another process between two listings: normal in a shared directory.
        Err(e) if is_not_found(&e) => None,
        Err(e) => {
            summary.errors.push(WalkError {
                rel: relative(root, dir),
                error: e.to_string(),
            });
            None
        }
    }
}
