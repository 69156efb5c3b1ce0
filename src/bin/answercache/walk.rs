//! What `stats`, `purge` and `ls` need of the library's walk ([`answercache::warm::walk`]): every name
//! at an entry path, the foreign names counted, the fan-out directories that could not be
//! listed recorded (the walk goes on past them); only failing to list the root or `<root>/v2`
//! itself ends the walk.

use std::path::Path;

use answercache::fs::Fs;
use answercache::warm::format::{Header, FLAG_ENCODING_MASK};
use answercache::warm::walk::{EntryWalk, Level, WalkEntry, WalkItem};

use crate::error::{CliError, Kind};

/// What the walk saw besides entry files.
#[derive(Debug, Clone, Default)]
pub struct WalkSummary {
    /// Foreign files and folders under `v2/`, and a `v2` that is not a directory.
    pub foreign: u64,
    /// Temp files of entries being written (or left by a writer that died), in `v2/ab/`.
    pub temp_files: u64,
    /// Their bytes, as listed.
    pub temp_bytes: u64,
    /// Directories that could not be listed: the path relative to the cache root, the error.
    pub errors: Vec<(String, String)>,
}

/// Calls `visit` for every name at an entry path under `root`, in path order (the walk
/// sorts each listing: the order of the hashes), until it returns `false`. A missing
/// `<root>/v2` is an empty walk.
pub fn entries(
    fs: &dyn Fs,
    root: &Path,
    visit: &mut dyn FnMut(&WalkEntry) -> bool,
) -> Result<WalkSummary, CliError> {
    let mut summary = WalkSummary::default();
    for item in EntryWalk::new(fs, root) {
        match item {
            // The caller is done (its reader left, or it failed).
            WalkItem::Entry(e) if !visit(&e) => break,
            WalkItem::Foreign(_) => summary.foreign += 1,
            WalkItem::Temp(t) => {
                summary.temp_files += 1;
                summary.temp_bytes += t.len;
            }
            WalkItem::Unlisted(u) if u.level <= Level::Entries => {
                return Err(unlisted(&u.path, &u.error));
            }
            WalkItem::Unlisted(u) => summary
                .errors
                .push((relative(root, &u.path), u.error.to_string())),
            _ => {}
        }
    }
    Ok(summary)
}

/// The error of a walk that could not list the root or `<root>/v2`: nothing was walked.
pub fn unlisted(path: &Path, e: &std::io::Error) -> CliError {
    CliError::new(Kind::Io, format!("cannot list {}: {e}", path.display())).at(path)
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
