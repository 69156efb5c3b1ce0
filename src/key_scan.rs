//! The keys on disk, for `invalidate_if`: the entry directory walked ([`EntryWalk`]) one
//! fan-out directory (`v2/ab/`) per disk call, so each call stays well within `io_timeout` and passes the
//! breaker like any other disk operation. Only each file's header and key are read (no
//! payload, no inflating); a key whose hash does not match its file name is not trusted and
//! skipped (that file is corrupt or planted, and the ordinary read path quarantines it).

use std::io;
use std::path::{Path, PathBuf};

use crate::disk::{DiskGate, DiskOutcome};
use crate::fs::{FileKind, FileRead, Fs};
use crate::warm::format::{self, Limits, HEADER_LEN};
use crate::warm::layout::{key_hash, Layout};
use crate::warm::walk::{EntryWalk, WalkItem};

/// What a scan of the keys on disk could not read.
#[derive(Debug, Default)]
pub(crate) struct KeyScan {
    /// Directories that could not be listed or read (the disk failed, or was not called).
    pub unscanned: u64,
    /// What went wrong last, if anything.
    pub last_error: String,
}

/// Scans the keys of every entry file under `root` through `gate`, handing each fan-out
/// directory's keys to `on_keys` as soon as they are read (so a caller holds only what it
/// keeps, and a dropped scan has shown what it read).
pub(crate) async fn scan_keys(
    gate: &DiskGate,
    root: &Path,
    limits: Limits,
    mut on_keys: impl FnMut(Vec<Box<[u8]>>),
) -> KeyScan {
    let mut scan = KeyScan::default();
    let note = |scan: &mut KeyScan, what: String| {
        scan.unscanned += 1;
        scan.last_error = what;
    };
    let r = root.to_owned();
    let tops = match gate.run(move |fs, _| fan_out_dirs(fs, &r)).await {
        DiskOutcome::Done { value: Ok(v), .. } => v,
        other => {
            let entries = Layout::new(root).entries_dir().display().to_string();
            note(
                &mut scan,
                format!("listing {entries}: {}", describe(&other)),
            );
            Vec::new()
        }
    };
    for top in tops {
        let (r, d) = (root.to_owned(), top.clone());
        match gate.run(move |fs, _| keys_under(fs, &r, &d, limits)).await {
            DiskOutcome::Done {
                value: Ok(keys), ..
            } => on_keys(keys),
            other => note(
                &mut scan,
                format!("scanning {}: {}", top.display(), describe(&other)),
            ),
        }
    }
    scan
}

/// The fan-out directories (`v2/ab`), in listing order; an error if `v2` cannot
/// be listed (a missing `v2` has none).
fn fan_out_dirs(fs: &dyn Fs, root: &Path) -> io::Result<Vec<PathBuf>> {
    // `v2` itself must be a directory (`strict_entries`): one that is not means the entries
    // cannot be scanned, and `invalidate_if` must say so. Missing is empty.
    let mut tops = Vec::new();
    let mut walk = EntryWalk::from_entries_dir(fs, root)
        .in_listing_order()
        .strict_entries();
    while let Some(item) = walk.next() {
        match item {
            WalkItem::FanOutDir(d) => {
                walk.skip_dir();
                tops.push(d.path);
            }
            WalkItem::Unlisted(u) => return Err(u.error),
            _ => {}
        }
    }
    Ok(tops)
}

/// The keys of the entry files under one fan-out directory `v2/ab/`. Only each file's header
/// and key are read; a key whose hash is not its file's name is skipped.
fn keys_under(fs: &dyn Fs, root: &Path, top: &Path, limits: Limits) -> io::Result<Vec<Box<[u8]>>> {
    let mut keys = Vec::new();
    for item in EntryWalk::fan_out(fs, root, top).in_listing_order() {
        let entry = match item {
            WalkItem::Entry(e) if e.kind == FileKind::File => e,
            WalkItem::Unlisted(u) => return Err(u.error),
            _ => continue,
        };
        let bytes = match fs.read_prefix(&entry.path, HEADER_LEN + limits.max_key_bytes) {
            Ok(FileRead::Data(b)) => b,
            Ok(_) => continue,
            // Vanished meanwhile: another process removed or replaced it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Ok(header) = format::parse_header(&bytes, &limits) else {
            continue;
        };
        let end = HEADER_LEN + header.key_len as usize;
        let Some(key) = bytes.get(HEADER_LEN..end) else {
            continue;
        };
        if key_hash(key) == entry.hash {
            keys.push(key.into());
        }
    }
    Ok(keys)
}

fn describe<T>(outcome: &DiskOutcome<T>) -> String {
    match outcome {
        DiskOutcome::Done { value: Err(e), .. } => e.to_string(),
        DiskOutcome::Done { .. } => "ok".into(),
        DiskOutcome::TimedOut => "timed out".into(),
        DiskOutcome::Skipped => "the disk tier is not in use (memory-only or breaker open)".into(),
    }
}
