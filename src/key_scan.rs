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
    // Entries of the previous layout not moved yet (a migration a failing disk cut short):
    // the next open moves them, so their keys are scanned too, and a directory of them that
    // cannot be read is unscanned (see `warm::migrate`).
    if gate.store.legacy_pending() {
        let legacy = match gate.run(move |fs, store| store.legacy_dirs(fs)).await {
            DiskOutcome::Done { value: Ok(d), .. } => d.unwrap_or_default(),
            other => {
                let v1 = Layout::new(root).legacy_entries_dir();
                note(
                    &mut scan,
                    format!("listing {}: {}", v1.display(), describe(&other)),
                );
                Vec::new()
            }
        };
        for top in legacy {
            let d = top.clone();
            match gate
                .run(move |fs, _| legacy_keys_under(fs, &d, limits))
                .await
            {
                DiskOutcome::Done {
                    value: Ok(keys), ..
                } => on_keys(keys),
                other => note(
                    &mut scan,
                    format!("scanning {}: {}", top.display(), describe(&other)),
                ),
            }
        }
    }
    scan
}

/// The keys of the previous layout's entry files under one `v1/ab/` (all its `cd/`), read
/// like [`keys_under`]'s.
fn legacy_keys_under(fs: &dyn Fs, top: &Path, limits: Limits) -> io::Result<Vec<Box<[u8]>>> {
    let mut keys = Vec::new();
    for sub in fs.read_dir(top)? {
        if sub.kind != FileKind::Dir {
            continue;
        }
        let dir = top.join(&sub.name);
        let names = match fs.read_dir(&dir) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in names {
            let Some(hash) = crate::warm::layout::parse_hex(&e.name) else {
                continue;
            };
            if e.kind != FileKind::File {
                continue;
            }
            if let Some(key) = key_of(fs, &dir.join(&e.name), &hash, limits)? {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// The key an entry file records, if its header parses and the key hashes to `hash`.
fn key_of(
    fs: &dyn Fs,
    path: &Path,
    hash: &crate::warm::layout::KeyHash,
    limits: Limits,
) -> io::Result<Option<Box<[u8]>>> {
    let bytes = match fs.read_prefix(path, HEADER_LEN + limits.max_key_bytes) {
        Ok(FileRead::Data(b)) => b,
        Ok(_) => return Ok(None),
        // Vanished meanwhile: another process removed or replaced it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(header) = format::parse_header(&bytes, &limits) else {
        return Ok(None);
    };
    let end = HEADER_LEN + header.key_len as usize;
    let Some(key) = bytes.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok((key_hash(key) == *hash).then(|| key.into()))
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
        if let Some(key) = key_of(fs, &entry.path, &entry.hash, limits)? {
            keys.push(key);
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
