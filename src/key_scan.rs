//! The keys on disk, for `invalidate_if`: the entry directory walked one fan-out directory
//! (`v1/ab/`) per disk call, so each call stays well within `io_timeout` and passes the
//! breaker like any other disk operation. Only each file's header and key are read (no
//! payload, no inflating); a key whose hash does not match its file name is not trusted and
//! skipped (that file is corrupt or planted, and the ordinary read path quarantines it).

use std::io;
use std::path::{Path, PathBuf};

use crate::disk::{DiskGate, DiskOutcome};
use crate::fs::{FileKind, FileRead, Fs};
use crate::warm::format::{self, Limits, HEADER_LEN};
use crate::warm::layout::{self, key_hash, Layout};

/// What a scan of the keys on disk found.
#[derive(Debug, Default)]
pub(crate) struct KeyScan {
    /// The keys of the entry files read.
    pub keys: Vec<Box<[u8]>>,
    /// Directories that could not be listed or read (the disk failed, or was not called).
    pub unscanned: u64,
    /// What went wrong last, if anything.
    pub last_error: String,
}

/// Scans the keys of every entry file under `root` through `gate`.
pub(crate) async fn scan_keys(gate: &DiskGate, root: &Path, limits: Limits) -> KeyScan {
    let entries: PathBuf = Layout::new(root).entries_dir().to_owned();
    let mut scan = KeyScan::default();
    let note = |scan: &mut KeyScan, what: String| {
        scan.unscanned += 1;
        scan.last_error = what;
    };
    let dir = entries.clone();
    let tops = match gate.run(move |fs, _| list(fs, &dir)).await {
        DiskOutcome::Done { value: Ok(v), .. } => v,
        other => {
            note(
                &mut scan,
                format!("listing {}: {}", entries.display(), describe(&other)),
            );
            Vec::new()
        }
    };
    for top in tops {
        if top.kind != FileKind::Dir || !layout::is_fanout_name(&top.name) {
            continue;
        }
        let dir = entries.join(&top.name);
        let d = dir.clone();
        match gate.run(move |fs, _| keys_under(fs, &d, limits)).await {
            DiskOutcome::Done {
                value: Ok(keys), ..
            } => scan.keys.extend(keys),
            other => note(
                &mut scan,
                format!("scanning {}: {}", dir.display(), describe(&other)),
            ),
        }
    }
    scan
}

/// Lists a directory; a missing one is empty.
fn list(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<crate::fs::DirEntryInfo>> {
    match fs.read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

/// The keys of the entry files under one fan-out directory `v1/ab/`.
fn keys_under(fs: &dyn Fs, top: &Path, limits: Limits) -> io::Result<Vec<Box<[u8]>>> {
    let mut keys = Vec::new();
    for sub in list(fs, top)? {
        if sub.kind != FileKind::Dir || !layout::is_fanout_name(&sub.name) {
            continue;
        }
        let dir = top.join(&sub.name);
        for f in list(fs, &dir)? {
            let Some(hash) = layout::parse_hex(&f.name) else {
                continue;
            };
            if f.kind != FileKind::File {
                continue;
            }
            let bytes = match fs.read_prefix(&dir.join(&f.name), HEADER_LEN + limits.max_key_bytes)
            {
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
            if key_hash(key) == hash {
                keys.push(key.into());
            }
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
