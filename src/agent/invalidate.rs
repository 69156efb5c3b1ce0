//! `invalidate_if`: predicate-based removal, the scan that namespaces avoid.
//!
//! Some entries must go *now* and by what their key says ("every summary of document 42"),
//! which no generation number can express. This walks both tiers and removes every entry
//! whose key satisfies the predicate:
//!
//! 1. Writes queued before the call are waited for, so the disk holds them when it is walked.
//! 2. The hot tier is walked in memory (the predicate sees every live key; nothing is removed
//!    in this pass).
//! 3. The warm tier is walked one fan-out directory (`v1/ab/`) per disk call, so each call
//!    stays well within `io_timeout` and passes the breaker like any other disk operation.
//!    Only each file's header and key are read (no payload, no inflating); a key whose hash
//!    does not match its file name is not trusted and skipped (that file is corrupt or
//!    planted, and the ordinary read path quarantines it).
//! 4. Every matching key is removed with the ordinary `remove`, which leaves a tombstone in
//!    the hot tier until the delete reaches the disk: the same ordering guarantees as a
//!    caller's `remove`.
//!
//! The predicate sees keys only: values would cost a read and an inflate of every file.
//! Namespace records are never shown to it (dropping one would invalidate its namespace,
//! which [`Namespace::invalidate`](super::Namespace::invalidate) does better).
//!
//! If part of the disk could not be walked (memory-only mode, breaker open, an I/O error),
//! what was found is still removed and the call returns [`Error::NotPersisted`]: entries in
//! the unwalked part may remain, and calling again once the disk is back finishes the job.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use super::namespace::RECORD_PREFIX;
use crate::cache::TieredCache;
use crate::disk::DiskOutcome;
use crate::error::{Error, Result};
use crate::fs::{FileKind, FileRead, Fs};
use crate::warm::format::{self, Limits, HEADER_LEN};
use crate::warm::layout::{self, key_hash, Layout};

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

impl TieredCache {
    /// Removes every entry whose key satisfies `pred`, from both tiers, and returns how many
    /// keys were removed. Unlike [`Namespace::invalidate`](super::Namespace::invalidate) this
    /// is a scan: it reads the header of every entry file. Keys of namespaced entries are
    /// shown as stored (see [`Namespace`](super::Namespace)); use
    /// [`Namespace::invalidate_if`](super::Namespace::invalidate_if) to match them by the
    /// key given to the namespace.
    ///
    /// If part of the disk could not be scanned, the entries found are still removed and the
    /// error is [`Error::NotPersisted`]; call again once the disk is back.
    pub async fn invalidate_if(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Result<u64> {
        self.remove_matching(|k| !k.starts_with(RECORD_PREFIX) && pred(k))
            .await
    }

    pub(crate) async fn remove_matching(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Result<u64> {
        let inner = &self.inner;
        let upto = inner.queue.seq();
        inner.queue.wait(Some(upto)).await;

        let mut doomed: BTreeSet<Box<[u8]>> = BTreeSet::new();
        inner.hot.remove_if(|k, e| {
            if !e.tombstone && pred(k) {
                doomed.insert(k.into());
            }
            false
        });

        let entries: PathBuf = Layout::new(&inner.config.root).entries_dir().to_owned();
        let limits = Limits {
            max_key_bytes: inner.config.max_key_bytes,
            max_entry_bytes: inner.config.max_entry_bytes,
        };
        let mut unscanned = 0u64;
        let mut last_error = String::new();
        let mut note = |what: String| {
            unscanned += 1;
            last_error = what;
        };
        let root = entries.clone();
        let tops = match inner.disk.run(move |fs, _| list(fs, &root)).await {
            DiskOutcome::Done { value: Ok(v), .. } => v,
            other => {
                note(format!(
                    "listing {}: {}",
                    entries.display(),
                    describe(&other)
                ));
                Vec::new()
            }
        };
        for top in tops {
            if top.kind != FileKind::Dir || !layout::is_fanout_name(&top.name) {
                continue;
            }
            let dir = entries.join(&top.name);
            let d = dir.clone();
            match inner
                .disk
                .run(move |fs, _| keys_under(fs, &d, limits))
                .await
            {
                DiskOutcome::Done {
                    value: Ok(keys), ..
                } => {
                    doomed.extend(keys.into_iter().filter(|k| pred(k)));
                }
                other => note(format!("scanning {}: {}", dir.display(), describe(&other))),
            }
        }

        let mut removed = 0;
        let mut not_on_disk = 0;
        for key in &doomed {
            match inner.remove(key).await {
                Ok(_) => {}
                // Write-through and the delete did not reach the disk: removed in memory
                // (never served), reported below.
                Err(Error::NotPersisted { last_error: e, .. }) => {
                    not_on_disk += 1;
                    last_error = e;
                }
                Err(e) => return Err(e),
            }
            removed += 1;
        }
        if not_on_disk > 0 {
            return Err(Error::NotPersisted {
                failed: not_on_disk + unscanned,
                last_error: format!(
                    "{removed} entries removed, {not_on_disk} of them not yet from the disk \
                     (last: {last_error})"
                ),
            });
        }
        if unscanned > 0 {
            return Err(Error::NotPersisted {
                failed: unscanned,
                last_error: format!(
                    "{removed} entries removed, but {unscanned} directories could not be \
                     scanned (last: {last_error})"
                ),
            });
        }
        Ok(removed)
    }
}

fn describe<T>(outcome: &DiskOutcome<T>) -> String {
    match outcome {
        DiskOutcome::Done { value: Err(e), .. } => e.to_string(),
        DiskOutcome::Done { .. } => "ok".into(),
        DiskOutcome::TimedOut => "timed out".into(),
        DiskOutcome::Skipped => "the disk tier is not in use (memory-only or breaker open)".into(),
    }
}
