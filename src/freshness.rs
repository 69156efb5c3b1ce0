//! Freshness: which files on disk (and writes in the queue) are older than what the caller
//! last set, removed or cleared, and so must never be served.
//!
//! Two records, one protocol:
//! - **The clear fence** (`cleared_before_ms`): entries created before it are cleared. Moved
//!   by `clear` (and by the overflow of the lost-key map below); written to `<root>/fence`
//!   ([`Freshness::persist_fence`]) so that a restart knows it too, and read at open
//!   ([`Freshness::load_fence`]). Until the fence on disk is known, nothing is served from
//!   the disk and nothing is written to it: the disk may hold entries a `clear` removed, and
//!   an entry written with a creation time before an unseen clear would be taken for a
//!   cleared one.
//! - **Lost keys** (`stale`): keys whose latest value (or removal) left memory before it
//!   reached the disk (evicted dirty, or a failed write of a version memory no longer holds).
//!   Every disk file and queued write of such a key is older than what the caller last set,
//!   whatever its creation time (clocks step back; another process's clock differs), so it is
//!   a miss. Write-back deletes that older file (`Op::Purge`, then [`Freshness::purged`]) so
//!   a restart cannot serve it either; the mark goes once a newer write of the key lands
//!   ([`Freshness::landed`]). Bounded by [`STALE_KEYS_MAX`]: past that the fence moves to now
//!   instead (every older file is a miss), and `flush` reports the overflow until the next
//!   `clear`.
//!
//! Who calls what: reads ask [`Freshness::is_stale`]; the write path asks
//! [`Freshness::created_now`] for an entry's creation time; the writer reports
//! [`landed`](Freshness::landed) and [`purged`](Freshness::purged) and marks losses
//! ([`mark_lost`](Freshness::mark_lost)); `flush` counts
//! [`not_persisted_before`](Freshness::not_persisted_before).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::disk::{DiskGate, DiskOutcome};
use crate::log;
use crate::sync::lock;
use crate::warm::layout::KeyHash;

/// Bound on keys remembered as stale on disk.
pub(crate) const STALE_KEYS_MAX: usize = 100_000;

/// A key whose latest value (or removal) was lost from memory before it reached the disk.
#[derive(Debug, Clone, Copy)]
struct Lost {
    /// The lost hot-tier version.
    version: u64,
    /// The key's older file has been deleted (`Op::Purge` landed).
    purged: bool,
    /// The version had expired (its TTL passed) before it reached the disk: once the older
    /// file is deleted the disk is right ("absent"), and the mark is dropped.
    expired: bool,
}

/// The clear fence and the lost keys of one open cache (see the module docs).
pub(crate) struct Freshness {
    clock: Arc<dyn Clock>,
    /// Entries created before this time (unix ms) are treated as cleared. Set by `clear`, so
    /// that a disk clear that failed cannot bring old answers back in this process.
    cleared_before_ms: AtomicU64,
    /// The fence on disk (read at open, written by `persist_fence`). Below
    /// `cleared_before_ms` while a `clear` (or the overflow of `stale`) is not yet on disk.
    fence_persisted_ms: AtomicU64,
    /// Whether the fence on disk has been read (or replaced by one of this process).
    fence_known: AtomicBool,
    /// The fence read from disk (0 before it is known): every write of this process is made
    /// after it (see [`Freshness::write_floor`]).
    fence_loaded_ms: AtomicU64,
    /// The largest fence this process wrote to disk, also by a write given up after
    /// `io_timeout` that landed later (shared with the warm store): the next fence moves
    /// past it, so that a new `clear`'s fence is always above every fence this process wrote.
    fence_written: Arc<AtomicU64>,
    /// Lost keys (see the module docs).
    stale: Mutex<HashMap<KeyHash, Lost>>,
    /// More keys were lost than `stale` holds; reset by `clear`.
    lost_overflow: AtomicBool,
}

impl Freshness {
    /// Nothing cleared, nothing lost, the fence on disk not read yet.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Freshness {
            clock,
            cleared_before_ms: AtomicU64::new(0),
            fence_persisted_ms: AtomicU64::new(0),
            fence_known: AtomicBool::new(false),
            fence_loaded_ms: AtomicU64::new(0),
            fence_written: Arc::new(AtomicU64::new(0)),
            stale: Mutex::new(HashMap::new()),
            lost_overflow: AtomicBool::new(false),
        }
    }

    /// Shares the warm store's record of the largest fence this process wrote (see the
    /// field's docs).
    pub(crate) fn sharing_fence_written(mut self, written: Arc<AtomicU64>) -> Self {
        self.fence_written = written;
        self
    }

    /// The creation time of an entry made now: never before the fence, so that an entry set
    /// in the same millisecond as, and after, a `clear` is not taken for a cleared one.
    pub(crate) fn created_now(&self) -> u64 {
        self.clock
            .now_ms()
            .max(self.cleared_before_ms.load(Ordering::Relaxed))
    }

    /// The earliest creation time a write may carry: the fence read from disk. Entries set
    /// before it could be read, or by a clock behind it, are written with this time instead.
    pub(crate) fn write_floor(&self) -> u64 {
        self.fence_loaded_ms.load(Ordering::Relaxed)
    }

    /// Whether the fence in memory (a `clear`, or the overflow of the lost-key map) is not
    /// yet on disk: a restart would not know it.
    pub(crate) fn fence_pending(&self) -> bool {
        self.cleared_before_ms.load(Ordering::Relaxed)
            > self.fence_persisted_ms.load(Ordering::Relaxed)
    }

    /// Did a `clear` start after an entry created at `created_ms` was set?
    pub(crate) fn cleared_since(&self, created_ms: u64) -> bool {
        created_ms < self.cleared_before_ms.load(Ordering::Relaxed)
    }

    /// Is a disk file (or queued write) of this key created at `created_ms` older than
    /// something the caller set or removed since (a clear, or a dirty entry lost from memory)?
    /// For a lost key, every file is, whatever its creation time: times come from clocks that
    /// can step back (or from another process), and a miss is acceptable where an older value
    /// is not. The mark goes once a newer write of this process lands.
    pub(crate) fn is_stale(&self, hash: &KeyHash, created_ms: u64) -> bool {
        self.cleared_since(created_ms) || lock(&self.stale).contains_key(hash)
    }

    /// Whether the fence on disk has been read (or replaced by one of this process). Until it
    /// is, any entry not made by this process may be one an earlier run's `clear` removed:
    /// creation times cannot tell (a clock stepped back across the restart dates entries made
    /// since before that clear's fence), so the shared tier serves nothing meanwhile.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn fence_known(&self) -> bool {
        self.fence_known.load(Ordering::Acquire)
    }

    /// Records that version `version` of `hash`, its latest, left memory before reaching the
    /// disk: lost, or (`expired`) expired, in which case "absent" is the right state on disk
    /// and nothing is reported once the older file is deleted.
    pub(crate) fn mark_lost(&self, hash: KeyHash, version: u64, expired: bool) {
        let now = self.clock.now_ms();
        let mut stale = lock(&self.stale);
        let lost = Lost {
            version,
            purged: false,
            expired,
        };
        stale.insert(hash, lost);
        if stale.len() > STALE_KEYS_MAX {
            stale.clear();
            drop(stale);
            self.lost_overflow.store(true, Ordering::Relaxed);
            self.move_fence_past(now);
        }
    }

    /// The disk now holds version `version` of the key (or, for a delete, nothing): a loss
    /// recorded at or before that version no longer makes its older file a risk.
    pub(crate) fn landed(&self, hash: &KeyHash, version: u64) {
        let mut stale = lock(&self.stale);
        if stale.get(hash).is_some_and(|l| l.version <= version) {
            stale.remove(hash);
        }
    }

    /// The older file of a key lost at `version` has been deleted: no older file is left to
    /// serve. The key's last value is still not on disk, unless it had expired (then absent is
    /// right and the mark goes).
    pub(crate) fn purged(&self, hash: &KeyHash, version: u64) {
        let mut stale = lock(&self.stale);
        match stale.get_mut(hash) {
            Some(l) if l.version == version && l.expired => {
                stale.remove(hash);
            }
            Some(l) if l.version == version => l.purged = true,
            _ => {}
        }
    }

    /// Lost keys whose older file has not been deleted yet, with their lost version.
    pub(crate) fn unpurged(&self) -> Vec<(KeyHash, u64)> {
        lock(&self.stale)
            .iter()
            .filter(|(_, l)| !l.purged)
            .map(|(h, l)| (*h, l.version))
            .collect()
    }

    /// Whether `hash` is still lost at `version` with its older file not deleted.
    pub(crate) fn still_unpurged(&self, hash: &KeyHash, version: u64) -> bool {
        lock(&self.stale)
            .get(hash)
            .is_some_and(|l| l.version == version && !l.purged)
    }

    /// Moves the fence past now and past every entry made so far (entries created before it
    /// are cleared; those set from now on are created at or after it) and forgets the lost
    /// keys: the fence covers every older file of theirs, and no key has a last value set
    /// before the clear.
    pub(crate) fn clear(&self) {
        self.move_fence_past(self.clock.now_ms());
        lock(&self.stale).clear();
        self.lost_overflow.store(false, Ordering::Relaxed);
    }

    /// Moves the fence past every entry made so far: past `now_ms` and past the fence itself,
    /// since an entry made in the millisecond of an earlier move carries the fence as its
    /// creation time ([`Freshness::created_now`]). Several moves in one millisecond push the
    /// fence (and the creation times after it) a millisecond ahead of the clock each. Also
    /// past every fence this process wrote: a write given up after `io_timeout` may have
    /// landed one above this fence since (one more than another writer's, see
    /// `WarmStore::write_fence`), and a new fence at or below it would be taken for that
    /// older write's.
    fn move_fence_past(&self, now_ms: u64) {
        let written = self.fence_written.load(Ordering::Relaxed);
        let _ =
            self.cleared_before_ms
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |fence| {
                    Some(fence.max(now_ms).max(written).saturating_add(1))
                });
    }

    /// What of the operations before version `before` is not on disk for freshness' reasons:
    /// keys lost before it, the overflow of the lost-key map, a fence not yet on disk.
    pub(crate) fn not_persisted_before(&self, before: u64) -> u64 {
        lock(&self.stale)
            .values()
            .filter(|l| l.version < before)
            .count() as u64
            + u64::from(self.fence_pending())
            + u64::from(self.lost_overflow.load(Ordering::Relaxed))
    }

    /// `(lost keys whose older file is not deleted yet, lost keys)` for `Stats`.
    pub(crate) fn lost_counts(&self) -> (u64, u64) {
        let stale = lock(&self.stale);
        let pending = stale.values().filter(|l| !l.purged).count();
        (pending as u64, stale.len() as u64)
    }

    /// Writes the fence to disk if it is pending. Returns whether the fence as it was when
    /// called (the caller's `clear`, or any before it) is on disk now: a `clear` made
    /// meanwhile moves the fence on, and is its own caller's to persist.
    pub(crate) async fn persist_fence(&self, gate: &DiskGate) -> bool {
        let wanted = self.cleared_before_ms.load(Ordering::Relaxed);
        if wanted <= self.fence_persisted_ms.load(Ordering::Relaxed) {
            return true;
        }
        // The fence on disk, not read yet, may be ahead of this one (a clock stepped back
        // since an earlier run's `clear` wrote it): it is read first, so that the fence written
        // is the larger. A fence on disk never moves back; one that cannot be read is not
        // written over (the caller reports it not persisted).
        if !self.load_fence(gate).await {
            return false;
        }
        let fence = self.cleared_before_ms.load(Ordering::Relaxed);
        if fence <= self.fence_persisted_ms.load(Ordering::Relaxed) {
            return true;
        }
        let outcome = gate
            .run(move |fs, store| store.write_fence(fs, fence))
            .await;
        gate.note("fence", &outcome);
        if let DiskOutcome::Done {
            value: Ok(on_disk), ..
        } = outcome
        {
            // The fence on disk may be above this one (another cache instance's `clear`, or
            // this one plus 1 where another had written the same time): this process takes
            // it as its own fence too, so that it serves nothing a later process would not,
            // and its entries from now on are created at or after it.
            self.cleared_before_ms.fetch_max(on_disk, Ordering::Relaxed);
            self.fence_persisted_ms
                .fetch_max(on_disk, Ordering::Relaxed);
            // The fence on disk is known now (read and written in that call).
            self.fence_known.store(true, Ordering::Release);
        }
        self.fence_persisted_ms.load(Ordering::Relaxed) >= wanted
    }

    /// Reads the fence (at open, and before a disk read or write while it is not known). A
    /// fence that is damaged (not merely unreadable now) makes every entry created before now
    /// a miss, and is written again: a miss is acceptable, serving an entry a `clear` removed
    /// is not. Returns whether the fence is known.
    pub(crate) async fn load_fence(&self, gate: &DiskGate) -> bool {
        if self.fence_known.load(Ordering::Acquire) {
            return true;
        }
        // A fence read as damaged is read again before it is replaced: a read that flipped a
        // bit once must not cost the real fence, which may be later than "now" (a clock
        // stepped back since it was written; the replacement would lower it for good). One
        // disk call for the breaker: a fence damaged on disk is one error, as before.
        let outcome = gate
            .run(|fs, store| store.read_fence_again_if_damaged(fs))
            .await;
        gate.note("fence", &outcome);
        match outcome {
            DiskOutcome::Done {
                value: Ok(fence), ..
            } => {
                let fence = fence.unwrap_or(0);
                self.cleared_before_ms.fetch_max(fence, Ordering::Relaxed);
                self.fence_persisted_ms.fetch_max(fence, Ordering::Relaxed);
                self.fence_loaded_ms.store(fence, Ordering::Relaxed);
            }
            DiskOutcome::Done { value: Err(e), .. }
                if e.kind() == std::io::ErrorKind::InvalidData =>
            {
                tracing::warn!(
                    target: log::CACHE,
                    "the fence file is damaged: entries made before now are misses"
                );
                self.cleared_before_ms
                    .fetch_max(self.clock.now_ms(), Ordering::Relaxed);
            }
            _ => return false,
        }
        self.fence_known.store(true, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// An entry made before a `clear` began is cleared by it, even when another clear ran
    /// in the same millisecond before the entry was made (its creation time is then the
    /// first clear's fence, not the clock): a write in flight across the second clear
    /// (taken from the queue before it, landing after it) must be deleted by the writer,
    /// and a read of it must miss.
    #[test]
    fn a_clear_covers_every_entry_made_before_it_in_the_same_millisecond() {
        let clock = ManualClock::new(1_000);
        let f = Freshness::new(Arc::new(clock.clone()));
        let before_any_clear = f.created_now();
        f.clear();
        assert!(f.cleared_since(before_any_clear));
        let between = f.created_now();
        assert!(!f.cleared_since(between), "made after the first clear");
        f.clear();
        assert!(f.cleared_since(between), "made before the second clear");
        let after = f.created_now();
        assert!(!f.cleared_since(after), "made after the second clear");
        assert!(between < after);
        // The same with the clock moving on: nothing made after a clear is cleared by it.
        clock.advance(std::time::Duration::from_millis(5));
        let later = f.created_now();
        f.clear();
        assert!(f.cleared_since(later) && f.cleared_since(after));
        assert!(!f.cleared_since(f.created_now()));
    }

    /// The overflow of the lost-key map moves the fence like a clear: every entry made
    /// before it is a miss, also one made in the millisecond of an earlier clear.
    #[test]
    fn the_lost_key_overflow_covers_every_entry_made_before_it() {
        let f = Freshness::new(Arc::new(ManualClock::new(1_000)));
        f.clear();
        let between = f.created_now();
        for i in 0..=STALE_KEYS_MAX {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            f.mark_lost(hash, 1, false);
        }
        assert!(f.lost_overflow.load(Ordering::Relaxed));
        assert!(f.cleared_since(between));
        assert!(!f.cleared_since(f.created_now()));
    }
}
