//! `invalidate_if`: predicate-based removal, the scan that namespaces avoid.
//!
//! Some entries must go *now* and by what their key says ("every summary of document 42"),
//! which no generation number can express. This walks both tiers and removes every entry
//! whose key satisfies the predicate:
//!
//! 1. Writes queued before the call are waited for, so the disk holds them when it is walked.
//! 2. The hot tier is walked in memory (the predicate sees every live key; nothing is removed
//!    in this pass).
//! 3. The warm tier is walked one fan-out directory (`v2/ab/`) per disk call, so each call
//!    stays well within `io_timeout` and passes the breaker like any other disk operation
//!    (`key_scan.rs`). Only each file's header and key are read; a key whose hash does not
//!    match its file name is not trusted and skipped.
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

use super::generation::RECORD_PREFIX;
use crate::error::{Error, Result};
use crate::handle::TieredCache;

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
        let tiers = &self.tiers;
        tiers.wait_queued().await;

        let mut doomed: BTreeSet<Box<[u8]>> = BTreeSet::new();
        tiers.for_each_hot_key(|k| {
            if pred(k) {
                doomed.insert(k.into());
            }
        });

        let scan = tiers
            .disk_keys(|keys| doomed.extend(keys.into_iter().filter(|k| pred(k))))
            .await;
        let (unscanned, mut last_error) = (scan.unscanned, scan.last_error);

        let mut removed = 0;
        let mut not_on_disk = 0;
        for key in &doomed {
            match tiers.remove(key).await {
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
