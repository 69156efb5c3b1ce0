//! The warm tier's in-memory index: which entries this process knows to be on disk, their
//! sizes and expiry, in least-recently-used order.
//!
//! Reads never need the index (the path comes from the key's hash), so `open` does not wait
//! for it: a background scan merges the entries found on disk as the least recently used,
//! ordered by file modification time. Until the scan finishes, the byte total counts only what
//! this process wrote or read, so the byte budget is enforced on a partial view; it is exact
//! once `scanned()` is true. Recency is per process: another process sharing the directory
//! keeps its own order.

use lru::LruCache;

use super::layout::KeyHash;

/// Expiry not known yet (the entry was found by the scan and its header not read).
pub const EXPIRY_UNKNOWN: u64 = u64::MAX;

/// A known expiry as the index stores it: a file's `u64::MAX` (a TTL of `Duration::MAX`)
/// becomes one millisecond earlier, which is still never in practice, so that it cannot be
/// taken for [`EXPIRY_UNKNOWN`] and offered to every sweep again.
fn known_expiry(expires_ms: u64) -> u64 {
    expires_ms.min(EXPIRY_UNKNOWN - 1)
}

/// What the index keeps per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// File length in bytes.
    pub len: u64,
    /// Expiry, unix ms; 0 = never; [`EXPIRY_UNKNOWN`] = not read yet.
    pub expires_ms: u64,
    /// Which file this index knows at the path: the first 8 bytes of its checksum (see
    /// [`file_tag`]) when this process wrote or read it, 0 when the scan found it (any file
    /// there). Eviction deletes a file only if it is still that one: a file another process
    /// wrote since is not the one judged least recently used.
    pub tag: u64,
}

/// The tag of an entry file (see [`IndexEntry::tag`]) from its first bytes (at least the
/// header); never 0, which means "unknown", nor `u64::MAX` (a file of another format).
pub fn file_tag(file: &[u8]) -> u64 {
    let at = super::format::CHECKSUM_OFFSET;
    file.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(1, |b| u64::from_le_bytes(b).clamp(1, u64::MAX - 1))
}

/// What each entry adds to its directory, beyond its file's blocks: a directory entry of a
/// 64-character name takes 72 bytes on ext4 (8 + the name, rounded to 4), and directory
/// blocks are never full; 128 bytes covers both on ext4, XFS, APFS and tmpfs.
pub const DIRENT_CHARGE: u64 = 128;

/// The allocation unit assumed until the file system says otherwise: 4 KiB, the block size of
/// ext4, XFS, APFS and tmpfs on x86-64.
pub const DEFAULT_ALLOCATION_UNIT: u64 = 4096;

/// LRU of entry hashes with two byte totals: the files' lengths, and what the budget counts,
/// the space they take on disk (see [`WarmIndex::disk_bytes`]).
#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
pub struct WarmIndex {
    lru: LruCache<KeyHash, IndexEntry>,
    bytes: u64,
    /// Sum of [`WarmIndex::charge`] over the entries.
    charged: u64,
    /// Entries per fan-out directory (`v2/ab`, by the hash's first byte).
    per_dir: [u32; 256],
    /// Fan-out directories holding at least one known entry.
    dirs: u64,
    /// The size each fan-out directory was last seen to take (a directory grows with the
    /// names it ever held and ext4 never shrinks it); 0 when not seen.
    dir_sizes: [u64; 256],
    /// Sum of `dir_sizes` beyond one unit, over the directories that hold an entry.
    dir_extra: u64,
    /// The file system's allocation unit.
    unit: u64,
    scanned: bool,
    settled: bool,
}

impl Default for WarmIndex {
    fn default() -> Self {
        WarmIndex {
            lru: LruCache::unbounded(),
            bytes: 0,
            charged: 0,
            per_dir: [0; 256],
            dirs: 0,
            dir_sizes: [0; 256],
            dir_extra: 0,
            unit: DEFAULT_ALLOCATION_UNIT,
            scanned: false,
            settled: false,
        }
    }
}

impl WarmIndex {
    /// Total file bytes known (the files' lengths).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What the warm budget counts: each file's length rounded up to the allocation unit,
    /// plus [`DIRENT_CHARGE`] per entry, plus one unit per fan-out directory that holds an
    /// entry. This is what `du` sees, within the few fixed directories of the layout and the
    /// empty fan-out directories (at most 256 units).
    pub fn disk_bytes(&self) -> u64 {
        self.charged
            .saturating_add(self.dirs.saturating_mul(self.unit))
            .saturating_add(self.dir_extra)
    }

    /// What fan-out directory `i` takes beyond one unit, counted while it holds an entry.
    fn extra(&self, i: usize) -> u64 {
        self.dir_sizes[i].saturating_sub(self.unit)
    }

    /// Records the size fan-out directory `i` (`v2/<i as hex>`) takes on disk, as a listing
    /// of `v2/` shows it (0: gone).
    pub fn observe_dir(&mut self, i: u8, bytes: u64) {
        let i = usize::from(i);
        if self.per_dir[i] > 0 {
            self.dir_extra -= self.extra(i);
        }
        self.dir_sizes[i] = bytes;
        if self.per_dir[i] > 0 {
            self.dir_extra += self.extra(i);
        }
    }

    /// Whether fan-out directory `i` holds no entry this index knows.
    pub fn dir_unused(&self, i: u8) -> bool {
        self.per_dir[usize::from(i)] == 0
    }

    /// What an entry file of `len` bytes takes on disk, its directory entry included (not its
    /// fan-out directory).
    pub fn charge(&self, len: u64) -> u64 {
        len.div_ceil(self.unit)
            .saturating_mul(self.unit)
            .saturating_add(DIRENT_CHARGE)
    }

    /// The allocation unit in use.
    pub fn unit(&self) -> u64 {
        self.unit
    }

    /// Sets the file system's allocation unit (clamped to 512 B ..= 1 MiB) and recounts.
    pub fn set_unit(&mut self, unit: u64) {
        self.unit = unit.clamp(512, 1 << 20);
        let charged: u64 = self.lru.iter().map(|(_, e)| self.charge(e.len)).sum();
        self.charged = charged;
        self.dir_extra = (0..256)
            .filter(|&i| self.per_dir[i] > 0)
            .map(|i| self.extra(i))
            .sum();
    }

    fn added(&mut self, hash: &KeyHash, len: u64) {
        self.bytes += len;
        self.charged += self.charge(len);
        let i = usize::from(hash[0]);
        if self.per_dir[i] == 0 {
            self.dirs += 1;
            self.dir_extra += self.extra(i);
        }
        self.per_dir[i] += 1;
    }

    fn removed(&mut self, hash: &KeyHash, len: u64) {
        self.bytes -= len;
        self.charged -= self.charge(len);
        let i = usize::from(hash[0]);
        self.per_dir[i] -= 1;
        if self.per_dir[i] == 0 {
            self.dirs -= 1;
            self.dir_extra -= self.extra(i);
        }
    }

    /// Entries known.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Has the startup scan been merged?
    pub fn scanned(&self) -> bool {
        self.scanned
    }

    /// Whether the index holds `hash` (without touching its place).
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.lru.contains(hash)
    }

    /// Records an entry as most recently used (written or read).
    pub fn put(&mut self, hash: KeyHash, mut entry: IndexEntry) {
        entry.expires_ms = known_expiry(entry.expires_ms);
        if let Some(old) = self.lru.put(hash, entry) {
            self.removed(&hash, old.len);
        }
        self.added(&hash, entry.len);
    }

    /// Records an entry as least recently used (an eviction that could not delete its file).
    pub fn put_back_lru(&mut self, hash: KeyHash, entry: IndexEntry) {
        self.put(hash, entry);
        self.lru.demote(&hash);
    }

    /// Forgets an entry.
    pub fn remove(&mut self, hash: &KeyHash) -> Option<IndexEntry> {
        let e = self.lru.pop(hash)?;
        self.removed(hash, e.len);
        Some(e)
    }

    /// The least recently used entry other than `keep`, removed from the index.
    pub fn pop_victim(&mut self, keep: &KeyHash) -> Option<(KeyHash, IndexEntry)> {
        let (h, _) = self.lru.peek_lru()?;
        if h == keep {
            // Only reachable when `keep` is the sole entry: nothing else to evict.
            return None;
        }
        let (h, e) = self.lru.pop_lru()?;
        self.removed(&h, e.len);
        Some((h, e))
    }

    /// Merges entries found by the startup scan, oldest first, as least recently used;
    /// entries already known (written or read since open) keep their place and size.
    pub fn merge_scanned(&mut self, mut found: Vec<(KeyHash, u64, u64)>) {
        // Newest first, each pushed to the LRU end: the oldest ends up least recent.
        found.sort_by_key(|e| std::cmp::Reverse(e.2));
        for (hash, len, _mtime) in found {
            if self.lru.contains(&hash) {
                continue;
            }
            self.lru.put(
                hash,
                IndexEntry {
                    len,
                    expires_ms: EXPIRY_UNKNOWN,
                    tag: 0,
                },
            );
            self.lru.demote(&hash);
            self.added(&hash, len);
        }
        self.scanned = true;
    }

    /// [`WarmIndex::merge_scanned`] for files found outside the startup scan (left by a
    /// failed `clear`): the scan state is unchanged.
    pub fn merge_scanned_keeping_state(&mut self, found: Vec<(KeyHash, u64, u64)>) {
        let scanned = self.scanned;
        self.merge_scanned(found);
        self.scanned = scanned;
    }

    /// The startup scan is merged and its evictions are done (`Stats::warm_index_complete`).
    pub fn mark_settled(&mut self) {
        self.settled = true;
    }

    /// Whether [`WarmIndex::mark_settled`] was called.
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Sets the known expiry of an entry.
    pub fn set_expiry(&mut self, hash: &KeyHash, expires_ms: u64) {
        if let Some(e) = self.lru.peek_mut(hash) {
            e.expires_ms = known_expiry(expires_ms);
        }
    }

    /// Hashes of entries known to be expired at `now_ms`, and up to `unknown_limit` entries
    /// whose expiry is not known yet.
    pub fn sweep_candidates(
        &self,
        now_ms: u64,
        unknown_limit: usize,
    ) -> (Vec<KeyHash>, Vec<KeyHash>) {
        let mut expired = Vec::new();
        let mut unknown = Vec::new();
        for (h, e) in self.lru.iter() {
            if e.expires_ms == EXPIRY_UNKNOWN {
                if unknown.len() < unknown_limit {
                    unknown.push(*h);
                }
            } else if e.expires_ms != 0 && now_ms >= e.expires_ms {
                expired.push(*h);
            }
        }
        (expired, unknown)
    }

    /// Every entry with what the index keeps of it, least recently used first (for tests).
    #[cfg(test)]
    pub fn entries_lru_first(&self) -> Vec<(KeyHash, IndexEntry)> {
        let mut v: Vec<(KeyHash, IndexEntry)> = self.lru.iter().map(|(h, e)| (*h, *e)).collect();
        v.reverse();
        v
    }

    /// Forgets everything (after `clear`); the scan state is kept.
    pub fn clear(&mut self) {
        self.lru.clear();
        self.bytes = 0;
        self.charged = 0;
        self.per_dir = [0; 256];
        self.dirs = 0;
        self.dir_sizes = [0; 256];
        self.dir_extra = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u8) -> KeyHash {
        [i; 32]
    }

    #[test]
    fn bytes_follow_puts_and_removes() {
        let mut ix = WarmIndex::default();
        ix.put(
            h(1),
            IndexEntry {
                len: 10,
                expires_ms: 0,
                tag: 0,
            },
        );
        ix.put(
            h(2),
            IndexEntry {
                len: 20,
                expires_ms: 0,
                tag: 0,
            },
        );
        ix.put(
            h(1),
            IndexEntry {
                len: 5,
                expires_ms: 0,
                tag: 0,
            },
        );
        assert_eq!(ix.bytes(), 25);
        // Two files of one block each, two directory entries, two fan-out directories.
        assert_eq!(ix.disk_bytes(), 2 * 4096 + 2 * DIRENT_CHARGE + 2 * 4096);
        ix.remove(&h(2));
        assert_eq!((ix.bytes(), ix.len()), (5, 1));
        assert_eq!(ix.disk_bytes(), 4096 + DIRENT_CHARGE + 4096);
        ix.remove(&h(1));
        assert_eq!((ix.bytes(), ix.disk_bytes()), (0, 0));
    }

    #[test]
    fn disk_bytes_round_files_up_to_the_unit_and_count_each_directory_once() {
        let mut ix = WarmIndex::default();
        let entry = |len| IndexEntry {
            len,
            expires_ms: 0,
            tag: 0,
        };
        // Same first byte: one fan-out directory.
        let mut a = h(7);
        a[1] = 1;
        let mut b = h(7);
        b[1] = 2;
        ix.put(a, entry(1));
        ix.put(b, entry(4097));
        assert_eq!(ix.bytes(), 4098);
        assert_eq!(ix.disk_bytes(), 4096 + 8192 + 2 * DIRENT_CHARGE + 4096);
        ix.set_unit(65536);
        assert_eq!(ix.disk_bytes(), 2 * 65536 + 2 * DIRENT_CHARGE + 65536);
        ix.set_unit(1);
        assert_eq!(ix.unit(), 512);
        assert_eq!(ix.disk_bytes(), 512 + 4608 + 2 * DIRENT_CHARGE + 512);
        ix.clear();
        assert_eq!((ix.bytes(), ix.disk_bytes(), ix.len()), (0, 0, 0));
        ix.put(a, entry(0));
        assert_eq!(ix.disk_bytes(), DIRENT_CHARGE + 512);
    }

    #[test]
    fn scanned_entries_are_least_recent_oldest_first() {
        let mut ix = WarmIndex::default();
        ix.put(
            h(9),
            IndexEntry {
                len: 1,
                expires_ms: 0,
                tag: 0,
            },
        );
        ix.merge_scanned(vec![
            (h(1), 10, 300),
            (h(2), 10, 100),
            (h(3), 10, 200),
            (h(9), 99, 1),
        ]);
        assert_eq!(ix.bytes(), 31);
        let order: Vec<u8> =
            std::iter::from_fn(|| ix.pop_victim(&h(0)).map(|(k, _)| k[0])).collect();
        assert_eq!(order, vec![2, 3, 1, 9]);
    }

    #[test]
    fn the_kept_entry_is_never_a_victim() {
        let mut ix = WarmIndex::default();
        ix.put(
            h(1),
            IndexEntry {
                len: 1,
                expires_ms: 0,
                tag: 0,
            },
        );
        assert_eq!(ix.pop_victim(&h(1)), None);
        ix.put(
            h(2),
            IndexEntry {
                len: 1,
                expires_ms: 0,
                tag: 0,
            },
        );
        assert_eq!(ix.pop_victim(&h(2)).map(|(k, _)| k), Some(h(1)));
    }

    /// Regression (issue 11, bug 7): an entry whose expiry is the largest representable time
    /// (a TTL of `Duration::MAX`) is not "expiry unknown": once learned it is never offered
    /// to the sweep again, so the sweep moves on to the entries it has not read.
    #[test]
    fn an_expiry_of_u64_max_is_known_not_unknown() {
        let mut ix = WarmIndex::default();
        ix.merge_scanned((0..3u8).map(|i| (h(i), 10, u64::from(i))).collect());
        for i in 0..2u8 {
            ix.set_expiry(&h(i), u64::MAX);
        }
        ix.put(
            h(9),
            IndexEntry {
                len: 10,
                expires_ms: u64::MAX,
                tag: 0,
            },
        );
        let (expired, unknown) = ix.sweep_candidates(1_000, 10);
        assert_eq!(expired, Vec::<KeyHash>::new());
        assert_eq!(unknown, vec![h(2)]);
    }
}
