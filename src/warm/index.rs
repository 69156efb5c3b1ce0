//! The warm tier's in-memory index: which entries this process knows to be on disk, their
//! sizes and expiry, in least-recently-used order.
//!
//! Reads never need the index (the path comes from the key's hash), so `open` does not wait
//! for it: a background scan merges the entries found on disk as the least recently used,
//! ordered by file modification time. Until the scan finishes, the byte total counts only what
//! this process wrote or read, so the byte budget is enforced on a partial view; it is exact
//! once `scanned()` is true. Recency is per process: another process sharing the directory
//! keeps its own order.
//!
//! ## Memory
//!
//! The index holds one entry per file on disk for the life of the process, so it is compact:
//! 60.9 bytes of heap per entry at 1,000,000 entries, at most 64 (the `lru`-based index before
//! it held 107.7); measured by `cargo test --release --test index_memory -- --nocapture`.
//!
//! - **Slots**, 54 bytes each, in chunks of 4,096 (216 KiB; the first chunk grows to that
//!   size): the key's hash (32 bytes: it names the file), the file length (`u32`), the tag
//!   (`u32`, see [`IndexEntry::tag`]), the expiry (48 bits of unix ms) and the two links of the
//!   recency list (`u32` slot numbers, so the order is exact). A removed entry's slot goes on a
//!   free list and is reused; only [`WarmIndex::clear`] gives chunks back.
//! - **A table** of 5-byte buckets (a slot number, the key's distance from its home bucket
//!   and a 3-bit fingerprint): linear probing in Robin Hood order with backward-shift
//!   deletion (no tombstones), at most 7/8 full, grown by half: 5.7 to 8.6 bytes per entry.
//!   A lookup reads the slot only of a bucket whose key has the same home and fingerprint
//!   (about 1.05 slots for a key held, 0.1 for one not held), and a deletion shifts buckets
//!   without reading any slot (the distance is in the bucket up to 29; past that, about 1 key
//!   in 1,000 at 7/8 full, the slot's hash tells it). A key's home comes from all 32
//!   bytes of its hash mixed with a per-index random seed: file names found by the scan are
//!   not trusted to be uniform.
//! - **Exactly, elsewhere**: a length of `u32::MAX` bytes or more, and an expiry from
//!   2^48 - 3 ms (the year 10889) to `u64::MAX - 2`, are kept in small side maps; the common
//!   "never in practice" expiry `u64::MAX - 1` (see [`EXPIRY_UNKNOWN`]) has its own code.
//!   Nothing is rounded or truncated: the index answers exactly what the `lru`-based one did.
//!   (Expiries in whole seconds, rounded up, would save 2 bytes, but an entry would then be
//!   offered to the sweep up to a second late, and a sweep that falls in that second leaves
//!   it on disk for a whole `sweep_interval` more.)

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

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
    /// Which file this index knows at the path: the first 4 bytes of its checksum (see
    /// [`file_tag`]) when this process wrote or read it, 0 when the scan found it (any file
    /// there), `u32::MAX` for a file of a newer format (`NOT_OURS` in store.rs). Eviction
    /// deletes a file only if it is still that one: a file another process wrote since is not
    /// the one judged least recently used. 32 bits: a file another process wrote since has a
    /// 1 in 2^32 chance of the same tag, and the eviction then deletes that newer file (a
    /// valid entry lost, read as a miss; never a wrong answer).
    pub tag: u32,
}

/// The tag of an entry file (see [`IndexEntry::tag`]) from its first bytes (at least the
/// header): the first 4 bytes of its checksum, never 0, which means "unknown", nor
/// `u32::MAX` (a file of another format).
pub fn file_tag(file: &[u8]) -> u32 {
    let at = super::format::CHECKSUM_OFFSET;
    file.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(1, |b| u32::from_le_bytes(b).clamp(1, u32::MAX - 1))
}

/// What each entry adds to its directory, beyond its file's blocks: a directory entry of a
/// 64-character name takes 72 bytes on ext4 (8 + the name, rounded to 4), and directory
/// blocks are never full; 128 bytes covers both on ext4, XFS, APFS and tmpfs.
pub const DIRENT_CHARGE: u64 = 128;

/// The allocation unit assumed until the file system says otherwise: 4 KiB, the block size of
/// ext4, XFS, APFS and tmpfs on x86-64.
pub const DEFAULT_ALLOCATION_UNIT: u64 = 4096;

/// No slot: an end of the recency list, or an empty free list.
const NIL: u32 = u32::MAX;
/// The `prev` link of a slot on the free list.
const FREE: u32 = u32::MAX - 1;
/// Slot numbers run below [`FREE`]: at most 4,294,967,294 entries (about 230 GiB of index).
const MAX_SLOTS: u32 = FREE;
/// Slots per chunk: 2^12.
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
/// The stored length when the length is in [`WarmIndex::long_lens`] (`u32::MAX` or more).
const LEN_ELSEWHERE: u32 = u32::MAX;
/// The stored expiry (48 bits) of [`EXPIRY_UNKNOWN`].
const EXP_UNKNOWN: u64 = (1 << 48) - 1;
/// The stored expiry of `u64::MAX - 1` (a TTL of `Duration::MAX`, see `known_expiry`).
const EXP_LATEST: u64 = EXP_UNKNOWN - 1;
/// The stored expiry when the expiry is in [`WarmIndex::late_expiries`]; every expiry below
/// it is stored as it is.
const EXP_ELSEWHERE: u64 = EXP_UNKNOWN - 2;
/// The table's first size; it grows by half whenever one more key would fill it beyond 7/8.
const MIN_BUCKETS: usize = 16;

/// One entry: 54 bytes, byte arrays only (no padding).
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: KeyHash,
    /// File length, or [`LEN_ELSEWHERE`].
    len: [u8; 4],
    tag: [u8; 4],
    /// Unix ms, 48 bits: 0 = never, below [`EXP_ELSEWHERE`] as is, else a code.
    expires: [u8; 6],
    /// Neighbours in recency order: `prev` less recent, `next` more recent ([`NIL`] at the
    /// ends); on the free list, `prev` is [`FREE`] and `next` the next free slot.
    prev: [u8; 4],
    next: [u8; 4],
}

impl Slot {
    fn len(&self) -> u32 {
        u32::from_le_bytes(self.len)
    }
    fn tag(&self) -> u32 {
        u32::from_le_bytes(self.tag)
    }
    fn expires(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&self.expires);
        u64::from_le_bytes(b)
    }
    fn set_expires(&mut self, stored: u64) {
        self.expires.copy_from_slice(&stored.to_le_bytes()[..6]);
    }
    fn prev(&self) -> u32 {
        u32::from_le_bytes(self.prev)
    }
    fn next(&self) -> u32 {
        u32::from_le_bytes(self.next)
    }
    fn set_prev(&mut self, s: u32) {
        self.prev = s.to_le_bytes();
    }
    fn set_next(&mut self, s: u32) {
        self.next = s.to_le_bytes();
    }
}

/// A table bucket: 5 bytes, a slot number and `meta`: in its low 5 bits the distance from the
/// key's home bucket plus 1 (0 = empty; [`FAR`] = a distance of 30 or more, which the slot's
/// hash tells), in its top 3 bits a fingerprint of the key (see [`Slots::place`]).
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    meta: u8,
    slot: [u8; 4],
}

/// The distance bits of [`Bucket::meta`].
const DIST_MASK: u8 = 0x1f;
/// The distance code of a distance the slot's hash must tell (30 or more).
const FAR: u8 = DIST_MASK;

impl Bucket {
    fn new(slot: u32, dist: usize, fp: u8) -> Self {
        let code = u8::try_from(dist + 1).map_or(FAR, |c| c.min(FAR));
        Bucket {
            meta: (fp << 5) | code,
            slot: slot.to_le_bytes(),
        }
    }
    fn slot(&self) -> u32 {
        u32::from_le_bytes(self.slot)
    }
    /// The distance code: 0 = empty, else the distance plus 1, or [`FAR`].
    fn code(&self) -> u8 {
        self.meta & DIST_MASK
    }
    fn fp(&self) -> u8 {
        self.meta >> 5
    }
}

/// The product of `a` and `b`, its two halves folded together (foldhash's mixer).
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The `i`th 8 bytes of `hash`.
fn word(hash: &KeyHash, i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

/// Chunks of slots, a free list, and where a key's home bucket is.
#[derive(Clone)]
struct Slots {
    chunks: Vec<Vec<Slot>>,
    /// Slots made so far (live or free): the chunks' lengths added up.
    made: usize,
    /// First free slot, or [`NIL`].
    free: u32,
    /// Slots never exceed this ([`MAX_SLOTS`]; lower in tests).
    limit: u32,
    seed: [u64; 4],
    /// Homes from the hash's first 8 bytes only (tests: keys made to collide).
    #[cfg(test)]
    prefix_keyed: bool,
}

impl Slots {
    fn get(&self, s: u32) -> &Slot {
        let s = s as usize;
        &self.chunks[s >> CHUNK_BITS][s & (CHUNK - 1)]
    }

    fn get_mut(&mut self, s: u32) -> &mut Slot {
        let s = s as usize;
        &mut self.chunks[s >> CHUNK_BITS][s & (CHUNK - 1)]
    }

    /// The key's place in a table of `buckets` (> 0) buckets and its 3-bit fingerprint: its
    /// hash mixed with the seed, mapped onto `0..buckets` by multiplication (the mix's high
    /// bits), and the mix's low 3 bits.
    fn place(&self, hash: &KeyHash, buckets: usize) -> (usize, u8) {
        #[cfg(test)]
        let k = if self.prefix_keyed {
            word(hash, 0)
        } else {
            self.key(hash)
        };
        #[cfg(not(test))]
        let k = self.key(hash);
        (
            ((u128::from(k) * buckets as u128) >> 64) as usize,
            (k & 7) as u8,
        )
    }

    fn key(&self, hash: &KeyHash) -> u64 {
        let s = &self.seed;
        fold(word(hash, 0) ^ s[0], word(hash, 1) ^ s[1])
            ^ fold(word(hash, 2) ^ s[2], word(hash, 3) ^ s[3])
    }

    /// A slot for `hash`, unlinked; `None` when [`Slots::limit`] are in use.
    fn take(&mut self, hash: KeyHash) -> Option<u32> {
        let slot = Slot {
            hash,
            len: [0; 4],
            tag: [0; 4],
            expires: [0; 6],
            prev: NIL.to_le_bytes(),
            next: NIL.to_le_bytes(),
        };
        if self.free != NIL {
            let s = self.free;
            self.free = self.get(s).next();
            *self.get_mut(s) = slot;
            return Some(s);
        }
        if self.made >= self.limit as usize {
            return None;
        }
        let s = u32::try_from(self.made).ok()?;
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => {
                if c.len() == c.capacity() {
                    // Only the first chunk grows (doubling up to a full chunk): a small
                    // cache's index stays small.
                    let want = (c.len() * 2).clamp(16, CHUNK);
                    c.reserve_exact(want - c.len());
                }
                c.push(slot);
            }
            _ => {
                let mut c = Vec::with_capacity(if self.chunks.is_empty() { 16 } else { CHUNK });
                c.push(slot);
                self.chunks.push(c);
            }
        }
        self.made += 1;
        Some(s)
    }

    /// Puts slot `s` on the free list.
    fn give(&mut self, s: u32) {
        let free = self.free;
        let slot = self.get_mut(s);
        slot.set_prev(FREE);
        slot.set_next(free);
        self.free = s;
    }
}

/// The lookup table: slot numbers by key, Robin Hood linear probing (see the module docs).
#[derive(Clone, Default)]
struct Table {
    buckets: Vec<Bucket>,
}

impl Table {
    fn next(&self, pos: usize) -> usize {
        if pos + 1 == self.buckets.len() {
            0
        } else {
            pos + 1
        }
    }

    /// The distance of bucket `pos` from its home, exactly, or (when it is 30 or more and
    /// `need` is below 30) 30: enough to compare it with `need`.
    fn dist(&self, slots: &Slots, pos: usize, b: Bucket, need: usize) -> usize {
        let far = usize::from(FAR - 1);
        if b.code() != FAR {
            usize::from(b.code() - 1)
        } else if need < far {
            far
        } else {
            let n = self.buckets.len();
            let (home, _) = slots.place(&slots.get(b.slot()).hash, n);
            (pos + n - home) % n
        }
    }

    /// Where `hash` is: its bucket and slot.
    fn find(&self, slots: &Slots, hash: &KeyHash) -> Option<(usize, u32)> {
        if self.buckets.is_empty() {
            return None;
        }
        let (mut pos, fp) = slots.place(hash, self.buckets.len());
        let mut d = 0;
        loop {
            let b = self.buckets[pos];
            if b.code() == 0 {
                return None;
            }
            let bd = self.dist(slots, pos, b, d);
            // Robin Hood order: a key of this home would be before any key closer to home.
            if bd < d {
                return None;
            }
            // Only a key of the same home and fingerprint needs its slot read.
            if bd == d && b.fp() == fp && slots.get(b.slot()).hash == *hash {
                return Some((pos, b.slot()));
            }
            pos = self.next(pos);
            d += 1;
        }
    }

    /// Adds slot `s` (its hash not in the table; the table not full).
    fn insert(&mut self, slots: &Slots, s: u32) {
        let (mut pos, fp) = slots.place(&slots.get(s).hash, self.buckets.len());
        let mut cur = Bucket::new(s, 0, fp);
        let mut d = 0;
        loop {
            let b = self.buckets[pos];
            if b.code() == 0 {
                self.buckets[pos] = cur;
                return;
            }
            let bd = self.dist(slots, pos, b, d);
            if bd < d {
                // The key closer to its home moves on; this one takes its place.
                self.buckets[pos] = cur;
                cur = b;
                d = self.dist(slots, pos, b, usize::MAX);
            }
            pos = self.next(pos);
            d += 1;
            cur = Bucket::new(cur.slot(), d, cur.fp());
        }
    }

    /// Empties bucket `pos`, shifting the keys after it back towards their homes.
    fn remove_at(&mut self, slots: &Slots, mut pos: usize) {
        loop {
            let n = self.next(pos);
            let b = self.buckets[n];
            if b.code() <= 1 {
                // Empty, or at its home.
                self.buckets[pos] = Bucket::default();
                return;
            }
            let d = self.dist(slots, n, b, usize::MAX);
            self.buckets[pos] = Bucket::new(b.slot(), d - 1, b.fp());
            pos = n;
        }
    }

    /// Whether one more key would load the table beyond 7/8.
    fn full_for(&self, len: usize) -> bool {
        (len + 1).saturating_mul(8) > self.buckets.len().saturating_mul(7)
    }

    /// A table of `n` buckets holding every live slot.
    fn rebuilt(slots: &Slots, n: usize) -> Table {
        let mut t = Table {
            buckets: vec![Bucket::default(); n],
        };
        for (c, chunk) in slots.chunks.iter().enumerate() {
            for (i, slot) in chunk.iter().enumerate() {
                if slot.prev() != FREE {
                    // `c * CHUNK + i` is a slot number, below `MAX_SLOTS`.
                    t.insert(slots, (c * CHUNK + i) as u32);
                }
            }
        }
        t
    }
}

/// LRU of entry hashes with two byte totals: the files' lengths, and what the budget counts,
/// the space they take on disk (see [`WarmIndex::disk_bytes`]).
#[cfg_attr(test, derive(Clone))]
pub struct WarmIndex {
    slots: Slots,
    table: Table,
    /// Entries known.
    count: usize,
    /// Least and most recently used slots, or [`NIL`].
    lru: u32,
    mru: u32,
    /// Lengths of `u32::MAX` bytes or more, by slot (see [`LEN_ELSEWHERE`]).
    long_lens: HashMap<u32, u64>,
    /// Expiries from [`EXP_ELSEWHERE`] ms to `u64::MAX - 2`, by slot.
    late_expiries: HashMap<u32, u64>,
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
    /// Removals of entry files (a `remove`, a `clear`) begun and ended (see
    /// [`WarmIndex::removal_mark`]).
    removals_begun: u64,
    removals_ended: u64,
}

/// What [`WarmIndex::removal_mark`] noted: the removals begun and ended then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovalMark {
    begun: u64,
    ended: u64,
}

impl std::fmt::Debug for WarmIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmIndex")
            .field("len", &self.count)
            .field("bytes", &self.bytes)
            .field("disk_bytes", &self.disk_bytes())
            .field("unit", &self.unit)
            .field("scanned", &self.scanned)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl Default for WarmIndex {
    fn default() -> Self {
        let r = RandomState::new();
        WarmIndex {
            slots: Slots {
                chunks: Vec::new(),
                made: 0,
                free: NIL,
                limit: MAX_SLOTS,
                seed: [1u64, 2, 3, 4].map(|i| r.hash_one(i)),
                #[cfg(test)]
                prefix_keyed: false,
            },
            table: Table::default(),
            count: 0,
            lru: NIL,
            mru: NIL,
            long_lens: HashMap::new(),
            late_expiries: HashMap::new(),
            bytes: 0,
            charged: 0,
            per_dir: [0; 256],
            dirs: 0,
            dir_sizes: [0; 256],
            dir_extra: 0,
            unit: DEFAULT_ALLOCATION_UNIT,
            scanned: false,
            settled: false,
            removals_begun: 0,
            removals_ended: 0,
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
        let mut charged = 0u64;
        for (c, chunk) in self.slots.chunks.iter().enumerate() {
            for (i, slot) in chunk.iter().enumerate() {
                if slot.prev() != FREE {
                    // `c * CHUNK + i` is a slot number, below `MAX_SLOTS`.
                    charged += self.charge(self.len_of((c * CHUNK + i) as u32, slot));
                }
            }
        }
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
        self.count
    }

    /// Has the startup scan been merged?
    pub fn scanned(&self) -> bool {
        self.scanned
    }

    /// Notes that a removal of entry files begins (before the index forgets them): until the
    /// matching [`WarmIndex::end_removal`], and for any read that noted a mark before it, a
    /// file read may be deleted under the read without the index ever having held it (an
    /// index the startup scan has not completed yet).
    pub fn begin_removal(&mut self) {
        self.removals_begun += 1;
    }

    /// Notes that a removal begun with [`WarmIndex::begin_removal`] is over (the files are
    /// deleted, or it failed).
    pub fn end_removal(&mut self) {
        self.removals_ended += 1;
    }

    /// The removals begun and ended now, noted by a read before it reads a file.
    pub fn removal_mark(&self) -> RemovalMark {
        RemovalMark {
            begun: self.removals_begun,
            ended: self.removals_ended,
        }
    }

    /// Whether a removal may have deleted a file read after `mark` was noted: one was in
    /// progress then, or one has begun since.
    pub fn removed_since(&self, mark: RemovalMark) -> bool {
        mark.begun != mark.ended || self.removals_begun != mark.begun
    }

    /// Whether the index holds `hash` (without touching its place).
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.table.find(&self.slots, hash).is_some()
    }

    /// The tag of the entry of `hash` (see [`IndexEntry::tag`]), if the index holds it
    /// (without touching its place).
    pub fn tag_of(&self, hash: &KeyHash) -> Option<u32> {
        self.table
            .find(&self.slots, hash)
            .map(|(_, s)| self.slots.get(s).tag())
    }

    /// The file length of live slot `s`.
    fn len_of(&self, s: u32, slot: &Slot) -> u64 {
        match slot.len() {
            LEN_ELSEWHERE => self
                .long_lens
                .get(&s)
                .copied()
                .unwrap_or(u64::from(LEN_ELSEWHERE)),
            len => u64::from(len),
        }
    }

    /// The expiry of live slot `s`.
    fn expiry_of(&self, s: u32, slot: &Slot) -> u64 {
        match slot.expires() {
            EXP_UNKNOWN => EXPIRY_UNKNOWN,
            EXP_LATEST => u64::MAX - 1,
            EXP_ELSEWHERE => self.late_expiries.get(&s).copied().unwrap_or(EXP_ELSEWHERE),
            at => at,
        }
    }

    fn entry_of(&self, s: u32) -> IndexEntry {
        let slot = self.slots.get(s);
        IndexEntry {
            len: self.len_of(s, slot),
            expires_ms: self.expiry_of(s, slot),
            tag: slot.tag(),
        }
    }

    fn set_expiry_of(&mut self, s: u32, expires_ms: u64) {
        let stored = match expires_ms {
            EXPIRY_UNKNOWN => EXP_UNKNOWN,
            at if at == u64::MAX - 1 => EXP_LATEST,
            at if at < EXP_ELSEWHERE => at,
            at => {
                self.late_expiries.insert(s, at);
                EXP_ELSEWHERE
            }
        };
        let slot = self.slots.get_mut(s);
        if slot.expires() == EXP_ELSEWHERE && stored != EXP_ELSEWHERE {
            self.late_expiries.remove(&s);
        }
        slot.set_expires(stored);
    }

    /// Stores `entry` in live slot `s`.
    fn set_entry(&mut self, s: u32, entry: IndexEntry) {
        let stored = match u32::try_from(entry.len) {
            Ok(len) if len != LEN_ELSEWHERE => len,
            _ => {
                self.long_lens.insert(s, entry.len);
                LEN_ELSEWHERE
            }
        };
        let slot = self.slots.get_mut(s);
        if slot.len() == LEN_ELSEWHERE && stored != LEN_ELSEWHERE {
            self.long_lens.remove(&s);
        }
        slot.len = stored.to_le_bytes();
        slot.tag = entry.tag.to_le_bytes();
        self.set_expiry_of(s, entry.expires_ms);
    }

    /// Takes live slot `s` out of the recency list.
    fn unlink(&mut self, s: u32) {
        let (prev, next) = {
            let slot = self.slots.get(s);
            (slot.prev(), slot.next())
        };
        if prev == NIL {
            self.lru = next;
        } else {
            self.slots.get_mut(prev).set_next(next);
        }
        if next == NIL {
            self.mru = prev;
        } else {
            self.slots.get_mut(next).set_prev(prev);
        }
    }

    /// Puts unlinked slot `s` at the most recent end of the list, or at the least recent.
    fn link(&mut self, s: u32, most_recent: bool) {
        if most_recent {
            let old = self.mru;
            let slot = self.slots.get_mut(s);
            slot.set_prev(old);
            slot.set_next(NIL);
            if old == NIL {
                self.lru = s;
            } else {
                self.slots.get_mut(old).set_next(s);
            }
            self.mru = s;
        } else {
            let old = self.lru;
            let slot = self.slots.get_mut(s);
            slot.set_prev(NIL);
            slot.set_next(old);
            if old == NIL {
                self.mru = s;
            } else {
                self.slots.get_mut(old).set_prev(s);
            }
            self.lru = s;
        }
    }

    /// Records `entry` (its expiry as stored) at one end of the order, replacing what the
    /// index held for `hash`. An entry not known yet is not recorded only when the index
    /// holds [`MAX_SLOTS`] entries already (about 230 GiB of index: never in practice).
    fn record(&mut self, hash: KeyHash, entry: IndexEntry, most_recent: bool) {
        if let Some((_, s)) = self.table.find(&self.slots, &hash) {
            let old = self.len_of(s, self.slots.get(s));
            self.removed(&hash, old);
            self.set_entry(s, entry);
            self.unlink(s);
            self.link(s, most_recent);
            self.added(&hash, entry.len);
            return;
        }
        if self.table.full_for(self.count) {
            let n = self.table.buckets.len();
            let n = (n + n / 2).max(MIN_BUCKETS);
            self.table = Table::rebuilt(&self.slots, n);
        }
        let Some(s) = self.slots.take(hash) else {
            return;
        };
        self.set_entry(s, entry);
        self.table.insert(&self.slots, s);
        self.link(s, most_recent);
        self.count += 1;
        self.added(&hash, entry.len);
    }

    /// Records an entry as most recently used (written or read).
    pub fn put(&mut self, hash: KeyHash, mut entry: IndexEntry) {
        entry.expires_ms = known_expiry(entry.expires_ms);
        self.record(hash, entry, true);
    }

    /// Charges the entry of `hash` for a file of `len` bytes tagged `tag` in place of its file
    /// tagged `was` (a compaction), keeping its place in the order; `false`, and nothing
    /// changed, when the index does not hold that file for `hash`.
    pub fn recharge(&mut self, hash: &KeyHash, was: u32, len: u64, tag: u32) -> bool {
        let Some((_, s)) = self.table.find(&self.slots, hash) else {
            return false;
        };
        let old = self.entry_of(s);
        if old.tag != was {
            return false;
        }
        self.removed(hash, old.len);
        self.set_entry(s, IndexEntry { len, tag, ..old });
        self.added(hash, len);
        true
    }

    /// Records an entry as least recently used (an eviction that could not delete its file).
    pub fn put_back_lru(&mut self, hash: KeyHash, mut entry: IndexEntry) {
        entry.expires_ms = known_expiry(entry.expires_ms);
        self.record(hash, entry, false);
    }

    /// Forgets an entry.
    pub fn remove(&mut self, hash: &KeyHash) -> Option<IndexEntry> {
        let (pos, s) = self.table.find(&self.slots, hash)?;
        let e = self.entry_of(s);
        self.table.remove_at(&self.slots, pos);
        self.unlink(s);
        if self.slots.get(s).len() == LEN_ELSEWHERE {
            self.long_lens.remove(&s);
        }
        if self.slots.get(s).expires() == EXP_ELSEWHERE {
            self.late_expiries.remove(&s);
        }
        self.slots.give(s);
        self.count -= 1;
        self.removed(hash, e.len);
        Some(e)
    }

    /// The least recently used entry other than `keep`, removed from the index.
    pub fn pop_victim(&mut self, keep: &KeyHash) -> Option<(KeyHash, IndexEntry)> {
        if self.lru == NIL {
            return None;
        }
        let h = self.slots.get(self.lru).hash;
        if h == *keep {
            // Only reachable when `keep` is the sole entry: nothing else to evict.
            return None;
        }
        let e = self.remove(&h)?;
        Some((h, e))
    }

    /// Merges entries found by the startup scan, oldest first, as least recently used;
    /// entries already known (written or read since open) keep their place and size.
    pub fn merge_scanned(&mut self, mut found: Vec<(KeyHash, u64, u64)>) {
        // Newest first, each pushed to the LRU end: the oldest ends up least recent.
        found.sort_by_key(|e| std::cmp::Reverse(e.2));
        for (hash, len, _mtime) in found {
            if self.contains(&hash) {
                continue;
            }
            let entry = IndexEntry {
                len,
                expires_ms: EXPIRY_UNKNOWN,
                tag: 0,
            };
            self.record(hash, entry, false);
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
        if let Some((_, s)) = self.table.find(&self.slots, hash) {
            self.set_expiry_of(s, known_expiry(expires_ms));
        }
    }

    /// Hashes of entries known to be expired at `now_ms`, and up to `unknown_limit` entries
    /// whose expiry is not known yet, each most recently used first.
    pub fn sweep_candidates(
        &self,
        now_ms: u64,
        unknown_limit: usize,
    ) -> (Vec<KeyHash>, Vec<KeyHash>) {
        let mut expired = Vec::new();
        let mut unknown = Vec::new();
        let mut s = self.mru;
        while s != NIL {
            let slot = self.slots.get(s);
            let expires_ms = self.expiry_of(s, slot);
            if expires_ms == EXPIRY_UNKNOWN {
                if unknown.len() < unknown_limit {
                    unknown.push(slot.hash);
                }
            } else if expires_ms != 0 && now_ms >= expires_ms {
                expired.push(slot.hash);
            }
            s = slot.prev();
        }
        (expired, unknown)
    }

    /// Every entry with what the index keeps of it, least recently used first (for tests).
    #[cfg(test)]
    pub fn entries_lru_first(&self) -> Vec<(KeyHash, IndexEntry)> {
        let mut v = Vec::with_capacity(self.count);
        let mut s = self.lru;
        while s != NIL {
            v.push((self.slots.get(s).hash, self.entry_of(s)));
            s = self.slots.get(s).next();
        }
        v
    }

    /// An index that holds at most `limit` entries (tests of the limit).
    #[cfg(test)]
    pub fn with_slot_limit(limit: u32) -> Self {
        let mut ix = Self::default();
        ix.slots.limit = limit;
        ix
    }

    /// An index whose table places keys by their hash's first 8 bytes alone, unmixed, so
    /// that tests can make keys of one home.
    #[cfg(test)]
    pub fn keyed_by_prefix() -> Self {
        let mut ix = Self::default();
        ix.slots.prefix_keyed = true;
        ix
    }

    /// Forgets everything (after `clear`) and gives its memory back; the scan state is kept.
    pub fn clear(&mut self) {
        self.slots.chunks = Vec::new();
        self.slots.made = 0;
        self.slots.free = NIL;
        self.table = Table::default();
        self.count = 0;
        self.lru = NIL;
        self.mru = NIL;
        self.long_lens = HashMap::new();
        self.late_expiries = HashMap::new();
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
    fn removal_marks_see_removals_in_progress_and_begun_since() {
        let mut ix = WarmIndex::default();
        let before = ix.removal_mark();
        assert!(!ix.removed_since(before));
        ix.begin_removal();
        assert!(ix.removed_since(before));
        let during = ix.removal_mark();
        assert!(ix.removed_since(during), "a removal in progress when noted");
        ix.end_removal();
        assert!(ix.removed_since(before));
        assert!(ix.removed_since(during));
        let after = ix.removal_mark();
        assert!(!ix.removed_since(after));
        ix.clear();
        assert!(
            !ix.removed_since(after),
            "clearing the entries is not a removal mark"
        );
        ix.begin_removal();
        ix.end_removal();
        assert!(ix.removed_since(after));
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
