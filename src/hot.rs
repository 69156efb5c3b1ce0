//! The hot tier: LRU shards behind mutexes, bounded by bytes and by entries.
//!
//! Each operation hashes its key once, with a randomly seeded hasher (keys are user input):
//! bits 32 and up of that hash pick the shard, and the shard's map (a `hashbrown::HashTable`
//! over a slab of nodes on an intrusive LRU list, see `ShardMap`) is probed with the same
//! hash (its bucket comes from the low bits, its control byte from the top seven).
//!
//! Why one global budget over per-shard budgets: a per-shard budget of `total / shards` makes
//! an entry larger than one shard's share uncacheable and lets one busy shard evict while the
//! others sit empty. Here the byte and entry counters are global; an insert evicts from its own
//! shard's LRU tail first and, when that shard has nothing left to give, from the other shards
//! one at a time (never holding two locks, so there is no lock-order deadlock). After any
//! single-threaded sequence of calls the counters are within budget; concurrent inserts into
//! different shards can overshoot only between their insert and their eviction.
//!
//! Byte accounting is exact by definition: an entry is charged `key.len() + value.len() +
//! ENTRY_OVERHEAD`, `bytes()` is always the sum of the charges of the entries present.
//!
//! Every entry carries a `version` (unique per insert) and a `dirty` flag: dirty means "not
//! known to be on disk". Inserts by `set` are dirty until the writer reports the write of that
//! version; promotions from the warm tier are clean.
//!
//! Each shard keeps a mutation counter, bumped by `set`/`remove`/`clear` (not by promotions or
//! evictions). A warm hit promotes only if its shard's counter has not moved since the lookup
//! began, so a slow disk read can never install a value older than a concurrent `set`.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::{DefaultHashBuilder, HashTable};

/// Bytes charged per entry on top of key and value: the LRU node, the map slot and the entry
/// fields, rounded.
pub const ENTRY_OVERHEAD: usize = 96;

/// A value held by the hot tier.
#[derive(Debug, Clone)]
pub struct HotEntry {
    /// The encoded value.
    pub value: Arc<[u8]>,
    /// Expiry, unix ms; 0 = never.
    pub expires_ms: u64,
    /// Caller-supplied cost of the value.
    pub cost: u64,
    /// How the value's bytes were made.
    pub encoding: crate::codec::Encoding,
    /// Unique per insert; matches the write queued for it.
    pub version: u64,
    /// Not known to be on disk.
    pub dirty: bool,
    /// A removal not yet applied on disk: reads are misses and never go to the disk, so a
    /// stale file cannot come back. Cleared when the delete lands.
    pub tombstone: bool,
    /// A write found that this version can never be written (larger than the warm budget,
    /// EFBIG): write-back does not try again. Still dirty, since it is not on disk (`flush`
    /// reports it).
    pub unwritable: bool,
}

impl HotEntry {
    fn charge(&self, key: &[u8]) -> usize {
        key.len() + self.value.len() + ENTRY_OVERHEAD
    }
}

/// What [`HotTier::get_live`] returns: the value, how it is encoded, its cost.
#[derive(Debug, Clone)]
pub struct LiveHit {
    /// The stored bytes.
    pub value: Arc<[u8]>,
    /// How they were made.
    pub encoding: crate::codec::Encoding,
    /// The entry's cost (counted in the shard with the hit).
    pub cost: u64,
}

/// An entry pushed out by an insert or a budget change.
#[derive(Debug)]
pub struct Evicted {
    /// Its key.
    pub key: Box<[u8]>,
    /// The entry.
    pub entry: HotEntry,
}

/// A key and its entry, as the shard map hands them back when it removes them.
type Kv = (Box<[u8]>, HotEntry);

/// "No node": the end of a list.
const NIL: u32 = u32::MAX;

/// One slot of a shard's slab: a node of the shard's LRU list while it holds a key, a link of
/// the free list (through `next`) while it does not.
#[derive(Debug)]
struct Node {
    /// The key's 64-bit hash (the table's hash; the shard came from other bits of it).
    hash: u64,
    /// The next more recently used node (`NIL` for the most recent).
    prev: u32,
    /// The next less recently used node (`NIL` for the least recent); the next free slot
    /// while this one is free.
    next: u32,
    /// The key and entry; `None` while the slot is free.
    kv: Option<Kv>,
}

/// One shard's LRU map, looked up by a hash computed once by the caller (which also picked the
/// shard from it): a `hashbrown::HashTable` of slab indices, the nodes in a slab (a `Vec` with a
/// free list), and an intrusive doubly linked list from most to least recently used.
///
/// The semantics are those of the `lru::LruCache` (unbounded) it replaces: `lookup` marks the
/// key most recently used, `peek`/`peek_mut`/`contains` do not, `iter` runs from most to least
/// recently used, `pop_lru` removes the least recently used.
#[derive(Debug)]
struct ShardMap {
    table: HashTable<u32>,
    nodes: Vec<Node>,
    /// Most recently used node.
    head: u32,
    /// Least recently used node.
    tail: u32,
    /// First free slot of `nodes`.
    free: u32,
    /// Most nodes the slab may hold (`NIL` in use: indices are `u32`; smaller in tests). At
    /// that size with no free slot, a push evicts the least recently used entry first.
    max_nodes: usize,
}

impl ShardMap {
    fn new() -> Self {
        ShardMap {
            table: HashTable::new(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            max_nodes: NIL as usize,
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot holding `key`, if any; recency unchanged.
    #[inline(always)]
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let nodes = &self.nodes;
        self.table
            .find(hash, |&i| {
                let n = &nodes[i as usize];
                n.hash == hash && n.kv.as_ref().is_some_and(|(k, _)| **k == *key)
            })
            .copied()
    }

    /// The entry in slot `i` (`None` only for a free slot).
    #[inline(always)]
    fn at(&self, i: u32) -> Option<&HotEntry> {
        self.nodes[i as usize].kv.as_ref().map(|(_, e)| e)
    }

    #[inline]
    fn at_mut(&mut self, i: u32) -> Option<&mut HotEntry> {
        self.nodes[i as usize].kv.as_mut().map(|(_, e)| e)
    }

    #[inline(always)]
    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    #[inline(always)]
    fn link_front(&mut self, i: u32) {
        let old = self.head;
        let n = &mut self.nodes[i as usize];
        n.prev = NIL;
        n.next = old;
        match old {
            NIL => self.tail = i,
            o => self.nodes[o as usize].prev = i,
        }
        self.head = i;
    }

    /// The slot holding `key`, marked most recently used.
    #[inline(always)]
    fn lookup(&mut self, hash: u64, key: &[u8]) -> Option<u32> {
        let i = self.find(hash, key)?;
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
        Some(i)
    }

    fn peek(&self, hash: u64, key: &[u8]) -> Option<&HotEntry> {
        self.find(hash, key).and_then(|i| self.at(i))
    }

    fn peek_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut HotEntry> {
        self.find(hash, key).and_then(|i| self.at_mut(i))
    }

    fn contains(&self, hash: u64, key: &[u8]) -> bool {
        self.find(hash, key).is_some()
    }

    /// Inserts `key` (which must be absent) as the most recently used entry. Returns the entry
    /// evicted to make room when the slab is at `max_nodes` with no free slot (never in
    /// practice: four billion entries in one shard).
    fn push_absent(&mut self, hash: u64, key: Box<[u8]>, entry: HotEntry) -> Option<Kv> {
        let evicted = if self.free == NIL && self.nodes.len() >= self.max_nodes {
            self.pop_lru()
        } else {
            None
        };
        let node = Node {
            hash,
            prev: NIL,
            next: NIL,
            kv: Some((key, entry)),
        };
        let i = match self.free {
            NIL => {
                // Below `max_nodes` (at most `NIL`): the index fits, and is not `NIL`.
                let i = u32::try_from(self.nodes.len()).unwrap_or(NIL);
                self.nodes.push(node);
                i
            }
            f => {
                self.free = self.nodes[f as usize].next;
                self.nodes[f as usize] = node;
                f
            }
        };
        self.link_front(i);
        let nodes = &self.nodes;
        self.table
            .insert_unique(hash, i, |&j| nodes[j as usize].hash);
        evicted
    }

    /// Unlinks slot `i` (already out of the table) and frees it.
    fn release(&mut self, i: u32) -> Option<Kv> {
        self.unlink(i);
        let n = &mut self.nodes[i as usize];
        let kv = n.kv.take();
        n.next = self.free;
        self.free = i;
        if self.table.is_empty() {
            // Empty: start the slab over, dense (its capacity stays).
            self.nodes.clear();
            self.free = NIL;
        }
        kv
    }

    /// Removes the entry in slot `i`.
    fn remove_at(&mut self, i: u32) -> Option<Kv> {
        let hash = self.nodes[i as usize].hash;
        if let Ok(slot) = self.table.find_entry(hash, |&j| j == i) {
            slot.remove();
        }
        self.release(i)
    }

    /// Removes `key`'s entry.
    fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Kv> {
        let i = self.find(hash, key)?;
        self.remove_at(i)
    }

    /// Removes the least recently used entry.
    fn pop_lru(&mut self) -> Option<Kv> {
        match self.tail {
            NIL => None,
            t => self.remove_at(t),
        }
    }

    /// The entries, from most to least recently used.
    fn iter(&self) -> impl Iterator<Item = (&[u8], &HotEntry)> + '_ {
        let mut i = self.head;
        std::iter::from_fn(move || {
            let n = self.nodes.get(i as usize)?;
            i = n.next;
            n.kv.as_ref().map(|(k, e)| (&**k, e))
        })
    }

    /// Removes the entries for which `pred` holds, calling it from the most to the least
    /// recently used; returns them in that order.
    fn drain_where(&mut self, mut pred: impl FnMut(&[u8], &HotEntry) -> bool) -> Vec<Kv> {
        let mut out = Vec::new();
        let mut i = self.head;
        while let Some(n) = self.nodes.get(i as usize) {
            let next = n.next;
            let doomed = n.kv.as_ref().is_some_and(|(k, e)| pred(k, e));
            if doomed {
                out.extend(self.remove_at(i));
            }
            i = next;
        }
        out
    }
}

struct Shard {
    map: ShardMap,
    mutations: u64,
    /// Hits served by [`HotTier::get_live`] and their summed cost, counted under the shard
    /// lock already held instead of in shared atomics: no extra contended cache line on the
    /// hottest path (see [`HotTier::live_hits`]).
    live_hits: u64,
    /// Wide enough never to saturate, so that [`HotTier::undo_live_hit`] is exact.
    live_cost: u128,
}

/// A shard's lock on cache lines of its own: threads working on different shards do not
/// invalidate each other's lock word and map (128: adjacent-line prefetching pairs lines).
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// A lookup stamp: which shard, and its mutation count when the lookup began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    shard: usize,
    mutations: u64,
}

/// The sharded LRU.
pub struct HotTier {
    shards: Box<[Padded]>,
    /// Randomly seeded (keys are user input: no chosen-collision attack on the tables).
    hasher: DefaultHashBuilder,
    bytes: AtomicUsize,
    entries: AtomicUsize,
    max_bytes: AtomicUsize,
    max_entries: AtomicUsize,
    next_version: AtomicU64,
}

impl std::fmt::Debug for HotTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotTier")
            .field("shards", &self.shards.len())
            .field("bytes", &self.bytes())
            .field("entries", &self.len())
            .finish()
    }
}

impl HotTier {
    /// A tier with `shards` shards (rounded up to a power of two) and the given budgets.
    pub fn new(shards: usize, max_bytes: usize, max_entries: usize) -> Self {
        let n = shards.clamp(1, 1024).next_power_of_two();
        HotTier {
            shards: (0..n)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        map: ShardMap::new(),
                        mutations: 0,
                        live_hits: 0,
                        live_cost: 0,
                    }))
                })
                .collect(),
            hasher: DefaultHashBuilder::default(),
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            max_bytes: AtomicUsize::new(max_bytes),
            max_entries: AtomicUsize::new(max_entries.max(1)),
            next_version: AtomicU64::new(1),
        }
    }

    /// A fresh version number for an insert.
    pub fn next_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    /// Every version handed out so far is below this.
    pub fn version_watermark(&self) -> u64 {
        self.next_version.load(Ordering::Relaxed)
    }

    /// The key's hash, computed once per operation: the shard comes from its bits 32 and up,
    /// which the shard's table does not use (it takes its bucket from the low bits and its
    /// control byte from the top seven).
    #[inline(always)]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline(always)]
    fn shard_of_hash(&self, hash: u64) -> usize {
        ((hash >> 32) as usize) & (self.shards.len() - 1)
    }

    #[inline(always)]
    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard lock cannot leave the LRU half-updated in a way that
        // matters more than losing the cache; keep serving rather than propagate the poison.
        crate::sync::lock(&self.shards[i].0)
    }

    /// The key's hash and its shard, locked.
    #[inline(always)]
    fn lock_key(&self, key: &[u8]) -> (u64, usize, MutexGuard<'_, Shard>) {
        let hash = self.hash(key);
        let i = self.shard_of_hash(hash);
        (hash, i, self.lock(i))
    }

    /// Current charged bytes.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Current entry count.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// The entry budget.
    pub fn max_entries(&self) -> usize {
        self.max_entries.load(Ordering::Relaxed)
    }

    /// Would an entry of this key and value length fit in the budget at all?
    pub fn admits(&self, key_len: usize, value_len: usize) -> bool {
        key_len + value_len + ENTRY_OVERHEAD <= self.max_bytes()
    }

    /// Looks a key up, marking it most recently used. Expired entries (`now_ms` at or past
    /// their expiry) are removed and reported as `Err(entry)`.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Result<HotEntry, HotEntry>> {
        let (hash, _, mut shard) = self.lock_key(key);
        let i = shard.map.lookup(hash, key)?;
        let entry = shard.map.at(i)?;
        if entry.expires_ms != 0 && now_ms >= entry.expires_ms {
            let (k, e) = shard.map.remove_at(i)?;
            drop(shard);
            self.uncharge(&k, &e);
            return Some(Err(e));
        }
        Some(Ok(entry.clone()))
    }

    /// The fast path of a hit: the value of a live entry (not a tombstone, not expired),
    /// marked most recently used and counted (with its cost) in the shard; only the value's
    /// `Arc` is cloned, and the clock is read only when the entry has an expiry. `None` means
    /// "take the full path" (absent, tombstone or expired), which accounts for it.
    ///
    /// It and what it calls are `inline(always)`, with `Tiers::try_hot`: left to the
    /// compiler, the hit was three calls deep, each saving and restoring registers, and cost
    /// 358 instructions against a raw `Mutex<LruCache>` get's 237; inlined, 310
    /// (`cargo bench --bench hot_instructions`).
    #[inline(always)]
    pub fn get_live(&self, key: &[u8], now_ms: impl FnOnce() -> u64) -> Option<LiveHit> {
        let (hash, _, mut guard) = self.lock_key(key);
        let shard = &mut *guard;
        let i = shard.map.lookup(hash, key)?;
        let e = shard.map.at(i)?;
        if e.tombstone || (e.expires_ms != 0 && now_ms() >= e.expires_ms) {
            return None;
        }
        let hit = LiveHit {
            value: e.value.clone(),
            encoding: e.encoding,
            cost: e.cost,
        };
        shard.live_hits += 1;
        shard.live_cost += u128::from(hit.cost);
        Some(hit)
    }

    /// Takes back a hit counted by [`HotTier::get_live`] (its value then did not decode as
    /// the caller's type: a miss, not a hit).
    pub fn undo_live_hit(&self, key: &[u8], cost: u64) {
        let (_, _, mut shard) = self.lock_key(key);
        shard.live_hits = shard.live_hits.saturating_sub(1);
        shard.live_cost = shard.live_cost.saturating_sub(u128::from(cost));
    }

    /// Hits served by [`HotTier::get_live`] so far, and their summed cost (saturated).
    pub fn live_hits(&self) -> (u64, u64) {
        let (hits, cost) = (0..self.shards.len()).fold((0u64, 0u128), |(hits, cost), i| {
            let shard = self.lock(i);
            (hits + shard.live_hits, cost.saturating_add(shard.live_cost))
        });
        (hits, u64::try_from(cost).unwrap_or(u64::MAX))
    }

    /// Looks a key up without changing recency or removing expired entries.
    pub fn peek(&self, key: &[u8]) -> Option<HotEntry> {
        let (hash, _, shard) = self.lock_key(key);
        shard.map.peek(hash, key).cloned()
    }

    /// The stamp to pass to [`HotTier::promote`].
    pub fn stamp(&self, key: &[u8]) -> Stamp {
        let shard = self.shard_of_hash(self.hash(key));
        Stamp {
            shard,
            mutations: self.lock(shard).mutations,
        }
    }

    fn uncharge(&self, key: &[u8], e: &HotEntry) {
        self.bytes.fetch_sub(e.charge(key), Ordering::Relaxed);
        self.entries.fetch_sub(1, Ordering::Relaxed);
    }

    fn over_budget(&self) -> bool {
        self.bytes() > self.max_bytes() || self.len() > self.max_entries()
    }

    /// Inserts (or replaces) an entry on behalf of `set`: bumps the shard's mutation counter.
    /// Returns the replaced entry and whatever was evicted to make room. The caller checks
    /// [`HotTier::admits`] first; an entry that does not fit is evicted at once.
    pub fn insert(&self, key: &[u8], entry: HotEntry) -> (Option<HotEntry>, Vec<Evicted>) {
        self.insert_inner(key, entry, None)
            .unwrap_or((None, Vec::new()))
    }

    /// Inserts a value read from the warm tier, unless the key's shard was mutated since
    /// `stamp` was taken or the key is already present. Returns `None` when skipped.
    pub fn promote(&self, key: &[u8], entry: HotEntry, stamp: Stamp) -> Option<Vec<Evicted>> {
        self.insert_inner(key, entry, Some(stamp)).map(|(_, ev)| ev)
    }

    fn insert_inner(
        &self,
        key: &[u8],
        entry: HotEntry,
        stamp: Option<Stamp>,
    ) -> Option<(Option<HotEntry>, Vec<Evicted>)> {
        let (hash, i, mut shard) = self.lock_key(key);
        let mut evicted = Vec::new();
        let replaced;
        {
            match stamp {
                Some(s) => {
                    if s.shard != i
                        || s.mutations != shard.mutations
                        || shard.map.contains(hash, key)
                    {
                        return None;
                    }
                    replaced = None;
                }
                None => {
                    shard.mutations += 1;
                    replaced = shard.map.remove(hash, key).map(|(k, e)| {
                        self.uncharge(&k, &e);
                        e
                    });
                }
            }
            self.bytes.fetch_add(entry.charge(key), Ordering::Relaxed);
            self.entries.fetch_add(1, Ordering::Relaxed);
            if let Some((k, e)) = shard.map.push_absent(hash, key.into(), entry) {
                self.uncharge(&k, &e);
                evicted.push(Evicted { key: k, entry: e });
            }
            // Evict from this shard first, never the entry just inserted (it is the most
            // recent, so it is the last one left); the other shards give the rest.
            while self.over_budget() && shard.map.len() > 1 {
                if let Some((k, e)) = shard.map.pop_lru() {
                    self.uncharge(&k, &e);
                    evicted.push(Evicted { key: k, entry: e });
                }
            }
        }
        drop(shard);
        self.evict_others(i, &mut evicted);
        Some((replaced, evicted))
    }

    /// Evicts from shards other than `skip`, one lock at a time, until within budget.
    fn evict_others(&self, skip: usize, evicted: &mut Vec<Evicted>) {
        let n = self.shards.len();
        let mut j = (skip + 1) & (n - 1);
        let mut empty_in_a_row = 0;
        while self.over_budget() && empty_in_a_row < n {
            let mut shard = self.lock(j);
            let mut took = false;
            while self.over_budget() {
                match shard.map.pop_lru() {
                    Some((k, e)) => {
                        self.uncharge(&k, &e);
                        evicted.push(Evicted { key: k, entry: e });
                        took = true;
                    }
                    None => break,
                }
            }
            drop(shard);
            empty_in_a_row = if took { 0 } else { empty_in_a_row + 1 };
            j = (j + 1) & (n - 1);
        }
    }

    /// Removes a key on behalf of `remove` (bumps the mutation counter).
    pub fn remove(&self, key: &[u8]) -> Option<HotEntry> {
        let (hash, _, mut shard) = self.lock_key(key);
        shard.mutations += 1;
        let (k, e) = shard.map.remove(hash, key)?;
        drop(shard);
        self.uncharge(&k, &e);
        Some(e)
    }

    /// Drops the entry of `key` if it is clean (the same as its file on disk), so that the next
    /// lookup reads the disk; a dirty entry (not on disk yet) stays. Returns whether one was
    /// dropped.
    pub fn drop_clean(&self, key: &[u8]) -> bool {
        let (hash, _, mut shard) = self.lock_key(key);
        let Some(i) = shard.map.find(hash, key) else {
            return false;
        };
        if shard.map.at(i).is_none_or(|e| e.dirty) {
            return false;
        }
        shard.mutations += 1;
        let Some((k, e)) = shard.map.remove_at(i) else {
            return false;
        };
        drop(shard);
        self.uncharge(&k, &e);
        true
    }

    /// Removes every entry (bumps every mutation counter). Returns the removed entries.
    pub fn clear(&self) -> Vec<Evicted> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            shard.mutations += 1;
            while let Some((k, e)) = shard.map.pop_lru() {
                self.uncharge(&k, &e);
                out.push(Evicted { key: k, entry: e });
            }
        }
        out
    }

    /// Marks the entry clean if it still holds `version` (its write landed); a tombstone is
    /// removed instead, its job done.
    pub fn mark_clean(&self, key: &[u8], version: u64) -> bool {
        let (hash, _, mut shard) = self.lock_key(key);
        let Some(i) = shard.map.find(hash, key) else {
            return false;
        };
        match shard.map.at_mut(i) {
            Some(e) if e.version == version && e.tombstone => {
                if let Some((k, e)) = shard.map.remove_at(i) {
                    drop(shard);
                    self.uncharge(&k, &e);
                }
                true
            }
            Some(e) if e.version == version => {
                e.dirty = false;
                true
            }
            _ => false,
        }
    }

    /// Marks `version` of `key` as unwritable (see [`HotEntry::unwritable`]). Returns whether
    /// the hot tier still held that version.
    pub fn mark_unwritable(&self, key: &[u8], version: u64) -> bool {
        let (hash, _, mut shard) = self.lock_key(key);
        match shard.map.peek_mut(hash, key) {
            Some(e) if e.version == version => {
                e.unwritable = true;
                true
            }
            _ => false,
        }
    }

    /// Changes the budgets (memory-only mode doubles them), evicting what no longer fits.
    pub fn set_budget(&self, max_bytes: usize, max_entries: usize) -> Vec<Evicted> {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        self.max_entries
            .store(max_entries.max(1), Ordering::Relaxed);
        let mut evicted = Vec::new();
        if self.over_budget() {
            self.evict_others(self.shards.len() - 1, &mut evicted);
        }
        evicted
    }

    /// Copies out the keys and entries that are dirty (for write-back after recovery).
    pub fn dirty_entries(&self) -> Vec<(Box<[u8]>, HotEntry)> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let shard = self.lock(i);
            out.extend(
                shard
                    .map
                    .iter()
                    .filter(|(_, e)| e.dirty)
                    .map(|(k, e)| (k.into(), e.clone())),
            );
        }
        out
    }

    /// Number of dirty entries.
    pub fn dirty_count(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).map.iter().filter(|(_, e)| e.dirty).count())
            .sum()
    }

    /// Removes every entry for which `pred(key, entry)` holds (bumps mutation counters of the
    /// shards it changes). Returns the removed entries.
    pub fn remove_if(&self, mut pred: impl FnMut(&[u8], &HotEntry) -> bool) -> Vec<Evicted> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            let doomed = shard.map.drain_where(&mut pred);
            if !doomed.is_empty() {
                shard.mutations += 1;
            }
            for (k, e) in doomed {
                self.uncharge(&k, &e);
                out.push(Evicted { key: k, entry: e });
            }
        }
        out
    }
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tier: &HotTier, len: usize) -> HotEntry {
        HotEntry {
            unwritable: false,
            value: vec![7u8; len].into(),
            expires_ms: 0,
            cost: 0,
            encoding: crate::codec::Encoding::Json,
            version: tier.next_version(),
            dirty: true,
            tombstone: false,
        }
    }

    #[test]
    fn byte_accounting_is_exact() {
        let t = HotTier::new(4, 1 << 20, 1000);
        t.insert(b"a", entry(&t, 10));
        t.insert(b"bb", entry(&t, 20));
        assert_eq!(t.bytes(), 1 + 10 + 2 + 20 + 2 * ENTRY_OVERHEAD);
        let (old, _) = t.insert(b"a", entry(&t, 5));
        assert_eq!(old.unwrap().value.len(), 10);
        assert_eq!(t.bytes(), 1 + 5 + 2 + 20 + 2 * ENTRY_OVERHEAD);
        t.remove(b"bb");
        assert_eq!(t.bytes(), 1 + 5 + ENTRY_OVERHEAD);
        assert_eq!(t.len(), 1);
        t.clear();
        assert_eq!((t.bytes(), t.len()), (0, 0));
    }

    #[test]
    fn entry_budget_evicts_least_recently_used_in_one_shard() {
        let t = HotTier::new(1, 1 << 20, 3);
        for k in [b"a", b"b", b"c"] {
            t.insert(k, entry(&t, 1));
        }
        assert!(t.get(b"a", 0).is_some()); // a is now most recent
        let (_, ev) = t.insert(b"d", entry(&t, 1));
        assert_eq!(ev.len(), 1);
        assert_eq!(&*ev[0].key, b"b");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn byte_budget_is_global_and_evicts_across_shards() {
        let per = 100 + ENTRY_OVERHEAD + 2;
        let t = HotTier::new(16, per * 10, 1000);
        for i in 0..100u16 {
            t.insert(&i.to_le_bytes(), entry(&t, 100));
            assert!(t.bytes() <= t.max_bytes());
        }
        assert_eq!(t.len(), 10);
        // One entry bigger than a sixteenth of the budget still fits.
        let (_, _) = t.insert(b"big", entry(&t, per * 5));
        assert!(t.peek(b"big").is_some());
        assert!(t.bytes() <= t.max_bytes());
    }

    #[test]
    fn promotion_loses_to_a_concurrent_set() {
        let t = HotTier::new(1, 1 << 20, 100);
        let stamp = t.stamp(b"k");
        t.insert(b"k", entry(&t, 3)); // a set during the disk read
        t.remove(b"k");
        assert!(t.promote(b"k", entry(&t, 9), stamp).is_none());
        assert!(t.peek(b"k").is_none());
        let stamp = t.stamp(b"k");
        assert!(t.promote(b"k", entry(&t, 9), stamp).is_some());
        assert_eq!(t.peek(b"k").unwrap().value.len(), 9);
    }

    #[test]
    fn the_fast_path_serves_only_live_values() {
        let t = HotTier::new(1, 1 << 20, 100);
        let mut e = entry(&t, 3);
        e.expires_ms = 1000;
        e.cost = 7;
        t.insert(b"k", e);
        assert_eq!(
            t.get_live(b"k", || 999)
                .map(|v| (v.value.len(), v.cost, v.encoding)),
            Some((3, 7, crate::codec::Encoding::Json))
        );
        assert_eq!(t.live_hits(), (1, 7));
        assert!(t.get_live(b"k", || 1000).is_none(), "expired: full path");
        let mut tomb = entry(&t, 0);
        tomb.tombstone = true;
        t.insert(b"gone", tomb);
        assert!(t.get_live(b"gone", || 0).is_none(), "tombstone: full path");
        let never = entry(&t, 2);
        t.insert(b"n", never);
        let read_clock = std::cell::Cell::new(false);
        assert!(t
            .get_live(b"n", || {
                read_clock.set(true);
                0
            })
            .is_some());
        assert!(!read_clock.get(), "no expiry, no clock read");
        // Only hits are counted: the expired and tombstone lookups were not.
        assert_eq!(t.live_hits(), (2, 7));
    }

    #[test]
    fn expired_entries_are_removed_on_get() {
        let t = HotTier::new(1, 1 << 20, 100);
        let mut e = entry(&t, 3);
        e.expires_ms = 1000;
        t.insert(b"k", e);
        assert!(matches!(t.get(b"k", 999), Some(Ok(_))));
        assert!(matches!(t.get(b"k", 1000), Some(Err(_))));
        assert!(t.get(b"k", 1000).is_none());
        assert_eq!((t.len(), t.bytes()), (0, 0));
    }

    #[test]
    fn shrinking_the_budget_evicts_down_to_it() {
        let t = HotTier::new(4, 1 << 20, 20);
        for i in 0..20u8 {
            t.insert(&[i], entry(&t, 1));
        }
        let ev = t.set_budget(1 << 20, 10);
        assert_eq!(ev.len(), 10);
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn dirty_tracking_by_version() {
        let t = HotTier::new(2, 1 << 20, 20);
        let e = entry(&t, 1);
        let v = e.version;
        t.insert(b"k", e);
        assert_eq!(t.dirty_count(), 1);
        assert!(!t.mark_clean(b"k", v + 100));
        assert!(t.mark_clean(b"k", v));
        assert_eq!(t.dirty_count(), 0);
    }
}
