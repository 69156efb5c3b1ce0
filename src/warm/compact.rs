//! Durable first, compact later: an entry the configured gzip level would compress is written
//! *stored* (level 0: a gzip member every reader reads, checksummed like any entry), so a
//! write-through `set` waits for the durable write only, and queued here; the compactor task
//! (`crate::compactor`) compresses it when the disk has been idle for a moment and puts the
//! compressed file in place of the stored one.
//!
//! The replacement keeps every promise a write makes:
//! - **Never older.** The compressed file replaces the stored one only if that is still the
//!   file at the entry path: under the key's exclusive lock, which is also an exclusive `flock`
//!   on `<root>/lock` (every rename and delete of an entry, by this process or another sharing
//!   the directory, holds it shared), the index must still know the stored file (`tag`) and
//!   the path must still hold its exact header (its checksum covers the whole file). Without a
//!   working `flock` another process's rename could land between that check and the rename,
//!   so nothing is replaced there.
//! - **Never lost.** The compressed file is complete and, with `Durability::Fsync`, fsynced in
//!   `tmp/` before its rename: a crash at any point leaves the stored file or the compressed
//!   one at the path, both whole and of the same value, creation and expiry time (a clear's
//!   fence judges the compressed file as it judged the stored one).
//! - **Never a wrong value.** The value compressed is the one read back from the stored file
//!   and verified (checksum, exact length, inflate); a file that does not verify is left to
//!   the read path, which quarantines it.
//!
//! The budget charges the stored size until the compaction, then the compressed size. An
//! entry that compresses to no fewer allocation units than it takes stored is left stored.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Hold, InFlight, WarmStore};
use crate::fs::{FileRead, Fs};
use crate::warm::format::{self, HEADER_LEN};
use crate::warm::index::file_tag;
use crate::warm::layout::KeyHash;
use crate::warm::space::is_below_floor;
use crate::warm::take::is_not_found;

/// The most entries waiting for compaction. One more written stored while this many wait
/// stays stored (valid, larger) until it is written again: 65,536 × 56 bytes of queue at most.
pub const BACKLOG_MAX: usize = 65_536;

/// The free space, above `min_free_bytes`, that an entry written stored first leaves besides
/// its file (else it is compressed before its write), so that the stored files never take the
/// last of a disk; a write refused it makes the compactor press (see
/// [`WarmStore::compaction_pressing`]) to give their space back.
pub const COMPACT_MIN_FREE_BYTES: u64 = 64 << 20;

/// The compactor stops waiting for idle moments once the entries waiting take more than one
/// part in this many of the warm budget (stored).
pub const PRESSING_SHARE: u64 = 8;

/// An entry written stored, waiting for the compactor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    /// Its key's hash.
    pub hash: KeyHash,
    /// The tag of the stored file ([`file_tag`]).
    pub tag: u32,
    /// Its value's length.
    pub value_len: u64,
    /// The stored file's length.
    pub stored_len: u64,
    /// Compactions of it that failed so far (see [`COMPACT_TRIES`]).
    pub tries: u8,
}

/// The most times one entry's compaction is tried: after that many failures it stays stored
/// (counted as written so), so that one entry on a bad sector cannot hold up the rest.
pub const COMPACT_TRIES: u8 = 3;

/// The entries written stored that wait for the compactor, and the activity it waits out.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// Oldest first.
    queue: Mutex<VecDeque<Waiting>>,
    /// Woken when an entry is queued.
    wanted: tokio::sync::Notify,
    /// Entry writes begun plus entry writes ended: the activity the compactor waits out
    /// (with `in_flight`, see [`Backlog::idle_since`]).
    activity: AtomicU64,
    /// Entry writes begun and not yet ended.
    in_flight: AtomicU64,
    /// The stored bytes of the entries waiting.
    bytes: AtomicU64,
    /// Set when a write found too little room to be written stored (see
    /// [`WarmStore::compaction_pressing`]); cleared when the backlog empties.
    tight: AtomicBool,
    /// Set by `close` (under the queue's lock): nothing is queued any more, so a write or a
    /// failed compaction that ends after it counts its entry as written, stored.
    closed: AtomicBool,
}

/// An entry write in flight (see [`Backlog::note_write`]); it ends when this drops.
#[derive(Debug)]
pub(crate) struct WriteInFlight<'a>(&'a Backlog);

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        // Before `in_flight`: see `Backlog::idle_since`.
        self.0.activity.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one compaction step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compacted {
    /// Nothing was waiting.
    Idle,
    /// The stored file was compressed and is in place: `stored` and `compressed` bytes.
    Done {
        /// The stored file's length.
        stored: u64,
        /// The compressed file's length.
        compressed: u64,
    },
    /// The entry is no longer the file that was queued (overwritten, removed, evicted,
    /// expired, cleared, unreadable, or another process holds it): nothing was replaced.
    Superseded,
    /// Compressed, it would take no fewer allocation units: left stored.
    NoGain,
    /// The directory lock does not work here (see the module docs): left stored.
    Unordered,
    /// Too little free space above the floor for the compressed file: left stored.
    NoRoom,
}

impl Backlog {
    /// Counts an entry write as begun; it ends when the guard drops. In flight in between:
    /// a write whose sync takes longer than [`COMPACT_IDLE`](crate::compactor::COMPACT_IDLE)
    /// is activity the compactor waits out, not an idle disk.
    pub(crate) fn note_write(&self) -> WriteInFlight<'_> {
        // Before `activity`: see `idle_since`.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.activity.fetch_add(1, Ordering::SeqCst);
        WriteInFlight(self)
    }

    /// The activity so far (entry writes begun plus ended), for [`Backlog::idle_since`].
    pub(crate) fn activity(&self) -> u64 {
        self.activity.load(Ordering::SeqCst)
    }

    /// Whether no entry write was in flight at any moment since [`Backlog::activity`] was
    /// `seen`: none in flight now and none begun or ended since. (`in_flight` is read first: a
    /// write in flight at that read, or one that ended after `seen`, changed `activity` or
    /// counts there; one that begins after it counts in `activity` before its disk call.)
    pub(crate) fn idle_since(&self, seen: u64) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && self.activity.load(Ordering::SeqCst) == seen
    }

    /// Queues a stored file; `false` when [`BACKLOG_MAX`] wait already or the cache closed.
    pub(super) fn push(&self, w: Waiting) -> bool {
        let mut q = crate::sync::lock(&self.queue);
        if q.len() >= BACKLOG_MAX || self.closed.load(Ordering::Relaxed) {
            return false;
        }
        q.push_back(w);
        self.bytes.fetch_add(w.stored_len, Ordering::Relaxed);
        drop(q);
        self.wanted.notify_one();
        true
    }

    /// Queues again, at the back, an entry whose compaction failed, unless it failed
    /// [`COMPACT_TRIES`] times, or the backlog is full or closed: `false`, it stays stored.
    fn retry(&self, mut w: Waiting) -> bool {
        w.tries = w.tries.saturating_add(1);
        if w.tries >= COMPACT_TRIES {
            return false;
        }
        self.push(w)
    }

    fn pop(&self) -> Option<Waiting> {
        let mut q = crate::sync::lock(&self.queue);
        let w = q.pop_front()?;
        self.bytes.fetch_sub(w.stored_len, Ordering::Relaxed);
        if q.is_empty() {
            self.tight.store(false, Ordering::Relaxed);
        }
        Some(w)
    }

    /// Notes that a write found too little room to be written stored: the compactor stops
    /// waiting for idle moments until the backlog is worked off.
    pub(super) fn note_tight(&self) {
        if self.len() > 0 {
            self.tight.store(true, Ordering::Relaxed);
        }
    }

    /// The stored bytes of the entries waiting.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        crate::sync::lock(&self.queue).len()
    }

    /// Resolves when an entry was queued since the last call (or is queued now).
    pub(crate) async fn wanted(&self) {
        self.wanted.notified().await;
    }
}

impl WarmStore {
    /// The compactions waiting, and the activity the compactor waits out.
    pub(crate) fn backlog(&self) -> &Backlog {
        &self.compactions
    }

    /// Whether the compactor no longer waits for the disk to be idle: the entries waiting
    /// take more than one part in [`PRESSING_SHARE`] of the warm budget (under writes that
    /// never pause, the budget would otherwise hold about a third of the entries it holds
    /// compressed), or a write since found too little free space to be written stored (the
    /// space the stored files hold is needed: r28, F3).
    pub(crate) fn compaction_pressing(&self) -> bool {
        self.compactions.bytes() > self.config.capacity_bytes / PRESSING_SHARE
            || self.compactions.tight.load(Ordering::Relaxed)
    }

    /// Compresses the oldest entry waiting and puts it in place of its stored file (see the
    /// module docs). `now_ms`: an entry expired by then is not compressed.
    ///
    /// The write counters (`bytes_in`, `bytes_out`) count an entry written stored here, once,
    /// with the file it ends with: compressed, or stored when it is not compressed.
    pub(crate) fn compact_next(&self, fs: &dyn Fs, now_ms: u64) -> io::Result<Compacted> {
        let Some(w) = self.compactions.pop() else {
            return Ok(Compacted::Idle);
        };
        let done = self.compact(fs, &w.hash, w.tag, now_ms);
        match done {
            // Tried again after the compactor's pause (the entry is stored and valid), behind
            // the others; after `COMPACT_TRIES` failures it stays stored.
            Err(_) => {
                if !self.compactions.retry(w) {
                    self.count_written(&w, w.stored_len);
                }
            }
            Ok(Compacted::Done { compressed, .. }) => self.count_written(&w, compressed),
            Ok(_) => self.count_written(&w, w.stored_len),
        }
        done
    }

    fn count_written(&self, w: &Waiting, file_len: u64) {
        self.counters.bytes_in.add(w.value_len);
        self.counters.bytes_out.add(file_len);
    }

    /// Counts the entries still waiting as written, stored, and forgets them: the cache
    /// closes, and they stay stored (valid) until they are written again.
    pub(crate) fn close_backlog(&self) {
        let left: Vec<Waiting> = {
            let mut q = crate::sync::lock(&self.compactions.queue);
            self.compactions.closed.store(true, Ordering::Relaxed);
            self.compactions.bytes.store(0, Ordering::Relaxed);
            q.drain(..).collect()
        };
        for w in &left {
            self.count_written(w, w.stored_len);
        }
    }

    fn compact(&self, fs: &dyn Fs, hash: &KeyHash, tag: u32, now_ms: u64) -> io::Result<Compacted> {
        if self.dir_lock.get().is_none() {
            // No directory lock (see `key_lock`): known before any work.
            return Ok(Compacted::Unordered);
        }
        if self.index().tag_of(hash) != Some(tag) {
            return Ok(Compacted::Superseded);
        }
        let path = self.layout.entry_path(hash);
        let limits = &self.config.limits;
        let stored = match fs.read_file(&path, limits.max_file_bytes()) {
            Ok(FileRead::Data(d)) => d,
            Ok(_) => return Ok(Compacted::Superseded),
            Err(e) if is_not_found(&e) => return Ok(Compacted::Superseded),
            Err(e) => return Err(e),
        };
        if file_tag(&stored) != tag {
            return Ok(Compacted::Superseded);
        }
        // What does not verify is left for the read path to judge and quarantine.
        let Ok(header) = format::verify(&stored, limits) else {
            return Ok(Compacted::Superseded);
        };
        if header.meta.is_expired(now_ms) {
            return Ok(Compacted::Superseded);
        }
        let key = format::stored_key(&stored, &header);
        let key_end = HEADER_LEN + key.len();
        let Some(payload) = stored.get(key_end..) else {
            return Ok(Compacted::Superseded);
        };
        let Ok(value) = format::inflate_exact(payload, header.uncompressed_len) else {
            return Ok(Compacted::Superseded);
        };
        let level = self.config.compression_level;
        let file = format::encode(key, &value, header.meta, level)?;
        drop(value);
        let (stored_len, len) = (stored.len() as u64, file.len() as u64);
        {
            let ix = self.index();
            if ix.charge(len) >= ix.charge(stored_len) {
                return Ok(Compacted::NoGain);
            }
        }
        // Both files are on the volume until the rename: the compressed one needs room above
        // the floor like any write, and gives back more than it takes (the stored file). No
        // wait: it runs when nothing else writes.
        let _reserved = match self.check_space(fs, len, None) {
            Ok(r) => r,
            Err(e) if is_below_floor(&e) => return Ok(Compacted::NoRoom),
            Err(e) => return Err(e),
        };
        let _in_flight = InFlight::new(&self.writing_into[usize::from(hash[0])]);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.layout.entry_temp_path(hash, self.owner, n);
        if let Err(e) = self.write_temp(fs, &tmp, &file) {
            self.remove_or_remember(fs, tmp);
            return Err(e);
        }
        let replaced = {
            let key_lock = self.key_lock(hash, Hold::Exclusive);
            if key_lock.file.is_none() {
                Ok(Compacted::Unordered)
            } else if self.index().tag_of(hash) != Some(tag) {
                Ok(Compacted::Superseded)
            } else {
                match fs.read_prefix(&path, HEADER_LEN) {
                    Ok(FileRead::Data(head)) if stored.get(..HEADER_LEN) == Some(&head[..]) => {
                        match fs.rename(&tmp, &path) {
                            Ok(()) => {
                                self.compacted_in_place(fs, hash, tag, &file);
                                return Ok(Compacted::Done {
                                    stored: stored_len,
                                    compressed: len,
                                });
                            }
                            // Its directory went with a `clear` meanwhile.
                            Err(e) if is_not_found(&e) => Ok(Compacted::Superseded),
                            Err(e) => Err(e),
                        }
                    }
                    Ok(_) => Ok(Compacted::Superseded),
                    Err(e) if is_not_found(&e) => Ok(Compacted::Superseded),
                    Err(e) => Err(e),
                }
            }
        };
        self.remove_or_remember(fs, tmp);
        replaced
    }

    /// After the compressed `file` took the place of the stored file `tag` of `hash` (the
    /// key's lock held): the index charges it. If the index knows neither file, the entry was
    /// evicted or cleared between the check and the rename (neither takes the key's lock to
    /// forget an entry): the compressed file goes the same way. (Nothing else changes the
    /// entry while the key's lock is held exclusively: writes and removals take it.)
    fn compacted_in_place(&self, fs: &dyn Fs, hash: &KeyHash, tag: u32, file: &[u8]) {
        self.counters.entries_compressed.inc();
        self.counters.entries_compacted.inc();
        let new_tag = file_tag(file);
        {
            let mut ix = self.index();
            if ix.recharge(hash, tag, file.len() as u64, new_tag)
                || ix.tag_of(hash) == Some(new_tag)
            {
                // Charged now, or already: a read that found the compressed file between the
                // rename and here recorded it (readers take no key lock).
                return;
            }
        }
        match fs.remove_file(&self.layout.entry_path(hash)) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                tracing::debug!(error = %e, "could not delete a compacted entry forgotten meanwhile")
            }
        }
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
pub(super) mod tests;
