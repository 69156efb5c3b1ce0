//! Model tests: `HotTier` (one hash per operation, `ShardMap` shards) against the
//! `lru::LruCache`-based tier it replaced, kept here verbatim as `RefTier` but for the shard it
//! picks (the same bits of the same seeded hash, so that both put every key in the same shard).
//! Seeded random sequences of every operation; after each one the answers, the evicted lists,
//! the counters and every shard's LRU order must be the same.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use super::*;

struct RefShard {
    lru: LruCache<Box<[u8]>, HotEntry>,
    mutations: u64,
    live_hits: u64,
    live_cost: u128,
}

/// The previous hot tier, with `shard_of` taking bits 32.. of the hash (as `HotTier` does).
struct RefTier {
    shards: Box<[Mutex<RefShard>]>,
    hasher: DefaultHashBuilder,
    bytes: AtomicUsize,
    entries: AtomicUsize,
    max_bytes: AtomicUsize,
    max_entries: AtomicUsize,
    next_version: AtomicU64,
}

impl RefTier {
    fn like(t: &HotTier) -> Self {
        RefTier {
            shards: (0..t.shards.len())
                .map(|_| {
                    Mutex::new(RefShard {
                        lru: LruCache::unbounded(),
                        mutations: 0,
                        live_hits: 0,
                        live_cost: 0,
                    })
                })
                .collect(),
            hasher: t.hasher.clone(),
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            max_bytes: AtomicUsize::new(t.max_bytes()),
            max_entries: AtomicUsize::new(t.max_entries()),
            next_version: AtomicU64::new(t.version_watermark()),
        }
    }

    fn next_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        ((self.hasher.hash_one(key) >> 32) as usize) & (self.shards.len() - 1)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, RefShard> {
        crate::sync::lock(&self.shards[i])
    }

    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    fn max_bytes(&self) -> usize {
        self.max_bytes.load(Ordering::Relaxed)
    }

    fn max_entries(&self) -> usize {
        self.max_entries.load(Ordering::Relaxed)
    }

    fn admits(&self, key_len: usize, value_len: usize) -> bool {
        key_len + value_len + ENTRY_OVERHEAD <= self.max_bytes()
    }

    fn get(&self, key: &[u8], now_ms: u64) -> Option<Result<HotEntry, HotEntry>> {
        let i = self.shard_of(key);
        let mut shard = self.lock(i);
        let entry = shard.lru.get(key)?;
        if entry.expires_ms != 0 && now_ms >= entry.expires_ms {
            let (k, e) = shard.lru.pop_entry(key)?;
            drop(shard);
            self.uncharge(&k, &e);
            return Some(Err(e));
        }
        Some(Ok(entry.clone()))
    }

    fn get_live(&self, key: &[u8], now_ms: impl FnOnce() -> u64) -> Option<LiveHit> {
        let mut shard = self.lock(self.shard_of(key));
        let e = shard.lru.get(key)?;
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

    fn undo_live_hit(&self, key: &[u8], cost: u64) {
        let mut shard = self.lock(self.shard_of(key));
        shard.live_hits = shard.live_hits.saturating_sub(1);
        shard.live_cost = shard.live_cost.saturating_sub(u128::from(cost));
    }

    fn live_hits(&self) -> (u64, u64) {
        let (hits, cost) = (0..self.shards.len()).fold((0u64, 0u128), |(hits, cost), i| {
            let shard = self.lock(i);
            (hits + shard.live_hits, cost.saturating_add(shard.live_cost))
        });
        (hits, u64::try_from(cost).unwrap_or(u64::MAX))
    }

    fn peek(&self, key: &[u8]) -> Option<HotEntry> {
        self.lock(self.shard_of(key)).lru.peek(key).cloned()
    }

    fn stamp(&self, key: &[u8]) -> Stamp {
        let shard = self.shard_of(key);
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

    fn insert(&self, key: &[u8], entry: HotEntry) -> (Option<HotEntry>, Vec<Evicted>) {
        self.insert_inner(key, entry, None)
            .unwrap_or((None, Vec::new()))
    }

    fn promote(&self, key: &[u8], entry: HotEntry, stamp: Stamp) -> Option<Vec<Evicted>> {
        self.insert_inner(key, entry, Some(stamp)).map(|(_, ev)| ev)
    }

    fn insert_inner(
        &self,
        key: &[u8],
        entry: HotEntry,
        stamp: Option<Stamp>,
    ) -> Option<(Option<HotEntry>, Vec<Evicted>)> {
        let i = self.shard_of(key);
        let mut evicted = Vec::new();
        let replaced;
        {
            let mut shard = self.lock(i);
            match stamp {
                Some(s) => {
                    if s.shard != i || s.mutations != shard.mutations || shard.lru.contains(key) {
                        return None;
                    }
                    replaced = None;
                }
                None => {
                    shard.mutations += 1;
                    replaced = shard.lru.pop_entry(key).map(|(k, e)| {
                        self.uncharge(&k, &e);
                        e
                    });
                }
            }
            self.bytes.fetch_add(entry.charge(key), Ordering::Relaxed);
            self.entries.fetch_add(1, Ordering::Relaxed);
            shard.lru.push(key.into(), entry);
            while self.over_budget() && shard.lru.len() > 1 {
                if let Some((k, e)) = shard.lru.pop_lru() {
                    self.uncharge(&k, &e);
                    evicted.push(Evicted { key: k, entry: e });
                }
            }
        }
        self.evict_others(i, &mut evicted);
        Some((replaced, evicted))
    }

    fn evict_others(&self, skip: usize, evicted: &mut Vec<Evicted>) {
        let n = self.shards.len();
        let mut j = (skip + 1) & (n - 1);
        let mut empty_in_a_row = 0;
        while self.over_budget() && empty_in_a_row < n {
            let mut shard = self.lock(j);
            let mut took = false;
            while self.over_budget() {
                match shard.lru.pop_lru() {
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

    fn remove(&self, key: &[u8]) -> Option<HotEntry> {
        let i = self.shard_of(key);
        let mut shard = self.lock(i);
        shard.mutations += 1;
        let (k, e) = shard.lru.pop_entry(key)?;
        drop(shard);
        self.uncharge(&k, &e);
        Some(e)
    }

    fn drop_clean(&self, key: &[u8]) -> bool {
        let i = self.shard_of(key);
        let mut shard = self.lock(i);
        if shard.lru.peek(key).is_none_or(|e| e.dirty) {
            return false;
        }
        shard.mutations += 1;
        let Some((k, e)) = shard.lru.pop_entry(key) else {
            return false;
        };
        drop(shard);
        self.uncharge(&k, &e);
        true
    }

    fn clear(&self) -> Vec<Evicted> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            shard.mutations += 1;
            while let Some((k, e)) = shard.lru.pop_lru() {
                self.uncharge(&k, &e);
                out.push(Evicted { key: k, entry: e });
            }
        }
        out
    }

    fn mark_clean(&self, key: &[u8], version: u64) -> bool {
        let mut shard = self.lock(self.shard_of(key));
        match shard.lru.peek_mut(key) {
            Some(e) if e.version == version && e.tombstone => {
                if let Some((k, e)) = shard.lru.pop_entry(key) {
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

    fn mark_unwritable(&self, key: &[u8], version: u64) -> bool {
        let mut shard = self.lock(self.shard_of(key));
        match shard.lru.peek_mut(key) {
            Some(e) if e.version == version => {
                e.unwritable = true;
                true
            }
            _ => false,
        }
    }

    fn set_budget(&self, max_bytes: usize, max_entries: usize) -> Vec<Evicted> {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        self.max_entries
            .store(max_entries.max(1), Ordering::Relaxed);
        let mut evicted = Vec::new();
        if self.over_budget() {
            self.evict_others(self.shards.len() - 1, &mut evicted);
        }
        evicted
    }

    fn dirty_entries(&self) -> Vec<(Box<[u8]>, HotEntry)> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let shard = self.lock(i);
            out.extend(
                shard
                    .lru
                    .iter()
                    .filter(|(_, e)| e.dirty)
                    .map(|(k, e)| (k.clone(), e.clone())),
            );
        }
        out
    }

    fn dirty_count(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).lru.iter().filter(|(_, e)| e.dirty).count())
            .sum()
    }

    fn remove_if(&self, mut pred: impl FnMut(&[u8], &HotEntry) -> bool) -> Vec<Evicted> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            let doomed: Vec<Box<[u8]>> = shard
                .lru
                .iter()
                .filter(|(k, e)| pred(k, e))
                .map(|(k, _)| k.clone())
                .collect();
            if !doomed.is_empty() {
                shard.mutations += 1;
            }
            for k in doomed {
                if let Some((k, e)) = shard.lru.pop_entry(&k) {
                    self.uncharge(&k, &e);
                    out.push(Evicted { key: k, entry: e });
                }
            }
        }
        out
    }

    /// Every shard's entries, most recently used first.
    fn order(&self) -> Vec<Vec<(Vec<u8>, View)>> {
        (0..self.shards.len())
            .map(|i| {
                self.lock(i)
                    .lru
                    .iter()
                    .map(|(k, e)| (k.to_vec(), view(e)))
                    .collect()
            })
            .collect()
    }
}

impl ShardMap {
    /// Checks the structure's invariants (tests).
    fn check(&self) {
        let mut seen = 0usize;
        let mut prev = NIL;
        let mut i = self.head;
        while i != NIL {
            let n = &self.nodes[i as usize];
            assert_eq!(n.prev, prev, "back link of {i}");
            let (k, _) = n.kv.as_ref().expect("a listed node holds a key");
            assert_eq!(self.find(n.hash, k), Some(i), "table finds node {i}");
            seen += 1;
            assert!(seen <= self.nodes.len(), "list cycle");
            prev = i;
            i = n.next;
        }
        assert_eq!(self.tail, prev);
        assert_eq!(seen, self.table.len());
        let mut free = 0usize;
        let mut f = self.free;
        while f != NIL {
            assert!(self.nodes[f as usize].kv.is_none());
            free += 1;
            assert!(free <= self.nodes.len(), "free list cycle");
            f = self.nodes[f as usize].next;
        }
        assert_eq!(seen + free, self.nodes.len());
        assert!(self.nodes.len() <= self.max_nodes);
    }
}

/// Every shard's entries, most recently used first; checks each shard's structure too.
fn order(t: &HotTier) -> Vec<Vec<(Vec<u8>, View)>> {
    (0..t.shards.len())
        .map(|i| {
            let shard = t.lock(i);
            shard.map.check();
            shard
                .map
                .iter()
                .map(|(k, e)| (k.to_vec(), view(e)))
                .collect()
        })
        .collect()
}

/// Everything an entry holds, comparable.
type View = (
    Vec<u8>,
    u64,
    u64,
    crate::codec::Encoding,
    u64,
    bool,
    bool,
    bool,
);

fn view(e: &HotEntry) -> View {
    (
        e.value.to_vec(),
        e.expires_ms,
        e.cost,
        e.encoding,
        e.version,
        e.dirty,
        e.tombstone,
        e.unwritable,
    )
}

fn views(ev: &[Evicted]) -> Vec<(Vec<u8>, View)> {
    ev.iter()
        .map(|e| (e.key.to_vec(), view(&e.entry)))
        .collect()
}

fn hit_view(h: &LiveHit) -> (Vec<u8>, crate::codec::Encoding, u64) {
    (h.value.to_vec(), h.encoding, h.cost)
}

/// splitmix64: a seeded sequence, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn check_same(t: &HotTier, r: &RefTier, what: &str) {
    assert_eq!(
        (t.bytes(), t.len(), t.max_bytes(), t.max_entries()),
        (r.bytes(), r.len(), r.max_bytes(), r.max_entries()),
        "{what}: counters"
    );
    assert_eq!(order(t), r.order(), "{what}: LRU order");
    let charged: usize = order(t)
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.0.len() + ENTRY_OVERHEAD)
        .sum();
    assert_eq!(t.bytes(), charged, "{what}: bytes are the sum of charges");
}

/// One seeded run of `ops` random operations on `keys` keys.
fn run(seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let shards = 1usize << rng.below(5);
    let key_count = 1 + rng.below(48) as usize;
    let keys: Vec<Vec<u8>> = (0..key_count)
        .map(|i| {
            let len = match rng.below(4) {
                0 => rng.below(4) as usize,
                1 => 76,
                _ => rng.below(200) as usize,
            };
            let mut k: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Distinct keys whatever their random bytes.
            k.extend_from_slice(&(i as u16).to_le_bytes());
            k
        })
        .collect();
    let budget = |rng: &mut Rng| {
        let bytes = (ENTRY_OVERHEAD + 100) * (1 + rng.below(40) as usize);
        let entries = rng.below(40) as usize; // 0 is taken as 1
        (bytes, entries)
    };
    let (b, e) = budget(&mut rng);
    let t = HotTier::new(shards, b, e);
    let r = RefTier::like(&t);
    let mut stamps: Vec<(usize, Stamp)> = Vec::new();
    let mut now = 1_000u64;
    let entry = |rng: &mut Rng, t: &HotTier, r: &RefTier, now: u64| {
        let version = t.next_version();
        assert_eq!(version, r.next_version());
        let len = if rng.chance(3) {
            t.max_bytes() + rng.below(100) as usize // larger than the whole budget
        } else {
            rng.below(300) as usize
        };
        HotEntry {
            value: vec![version as u8; len].into(),
            expires_ms: if rng.chance(30) {
                now + rng.below(50)
            } else {
                0
            },
            cost: rng.below(1_000),
            encoding: if rng.chance(50) {
                crate::codec::Encoding::Json
            } else {
                crate::codec::Encoding::default()
            },
            version,
            dirty: rng.chance(60),
            tombstone: rng.chance(10),
            unwritable: rng.chance(5),
        }
    };
    for step in 0..ops {
        let what = format!("seed {seed} step {step}");
        let k = rng.below(key_count as u64) as usize;
        let key = &keys[k][..];
        now += rng.below(5);
        match rng.below(100) {
            0..=24 => {
                let e = entry(&mut rng, &t, &r, now);
                let admit = t.admits(key.len(), e.value.len());
                assert_eq!(admit, r.admits(key.len(), e.value.len()));
                let (a, ae) = t.insert(key, e.clone());
                let (b, be) = r.insert(key, e);
                assert_eq!(
                    a.as_ref().map(view),
                    b.as_ref().map(view),
                    "{what}: replaced"
                );
                assert_eq!(views(&ae), views(&be), "{what}: insert evicted");
            }
            25..=39 => {
                let read = (std::cell::Cell::new(false), std::cell::Cell::new(false));
                let a = t.get_live(key, || {
                    read.0.set(true);
                    now
                });
                let b = r.get_live(key, || {
                    read.1.set(true);
                    now
                });
                assert_eq!(a.as_ref().map(hit_view), b.as_ref().map(hit_view), "{what}");
                assert_eq!(read.0.get(), read.1.get(), "{what}: clock read");
                if let (Some(a), true) = (a, rng.chance(20)) {
                    t.undo_live_hit(key, a.cost);
                    r.undo_live_hit(key, a.cost);
                }
            }
            40..=49 => {
                let a = t.get(key, now);
                let b = r.get(key, now);
                let v = |x: Option<Result<HotEntry, HotEntry>>| {
                    x.map(|x| x.map(|e| view(&e)).map_err(|e| view(&e)))
                };
                assert_eq!(v(a), v(b), "{what}: get");
            }
            50..=54 => {
                assert_eq!(
                    t.peek(key).as_ref().map(view),
                    r.peek(key).as_ref().map(view),
                    "{what}: peek"
                );
            }
            55..=61 => {
                let s = t.stamp(key);
                assert_eq!(s, r.stamp(key), "{what}: stamp");
                stamps.push((k, s));
            }
            62..=71 if !stamps.is_empty() => {
                let (k, s) = stamps.swap_remove(rng.below(stamps.len() as u64) as usize);
                // Now and then a stamp promotes another key (of another shard, perhaps).
                let k = if rng.chance(10) {
                    (k + 1) % key_count
                } else {
                    k
                };
                let key = &keys[k][..];
                let mut e = entry(&mut rng, &t, &r, now);
                e.dirty = false;
                e.tombstone = false;
                let a = t.promote(key, e.clone(), s);
                let b = r.promote(key, e, s);
                assert_eq!(
                    a.as_deref().map(views),
                    b.as_deref().map(views),
                    "{what}: promote"
                );
            }
            72..=77 => {
                assert_eq!(
                    t.remove(key).as_ref().map(view),
                    r.remove(key).as_ref().map(view),
                    "{what}: remove"
                );
            }
            78..=81 => assert_eq!(t.drop_clean(key), r.drop_clean(key), "{what}: drop_clean"),
            82..=86 => {
                // The entry's version most of the time, another one now and then.
                let v = match t.peek(key) {
                    Some(e) if rng.chance(80) => e.version,
                    _ => rng.below(t.version_watermark() + 1),
                };
                if rng.chance(70) {
                    assert_eq!(t.mark_clean(key, v), r.mark_clean(key, v), "{what}: clean");
                } else {
                    assert_eq!(
                        t.mark_unwritable(key, v),
                        r.mark_unwritable(key, v),
                        "{what}: unwritable"
                    );
                }
            }
            87..=90 => {
                let (b, e) = budget(&mut rng);
                assert_eq!(
                    views(&t.set_budget(b, e)),
                    views(&r.set_budget(b, e)),
                    "{what}: set_budget"
                );
            }
            91..=93 => {
                let m = 2 + rng.below(4);
                let pred = |k: &[u8], e: &HotEntry| (e.version + k.len() as u64).is_multiple_of(m);
                assert_eq!(
                    views(&t.remove_if(pred)),
                    views(&r.remove_if(pred)),
                    "{what}: remove_if"
                );
            }
            94..=96 => {
                let d = |v: Vec<(Box<[u8]>, HotEntry)>| {
                    v.into_iter()
                        .map(|(k, e)| (k.to_vec(), view(&e)))
                        .collect::<Vec<_>>()
                };
                assert_eq!(d(t.dirty_entries()), d(r.dirty_entries()), "{what}: dirty");
                assert_eq!(t.dirty_count(), r.dirty_count(), "{what}: dirty count");
                assert_eq!(t.live_hits(), r.live_hits(), "{what}: live hits");
            }
            97 => assert_eq!(views(&t.clear()), views(&r.clear()), "{what}: clear"),
            _ => {}
        }
        check_same(&t, &r, &what);
    }
    assert_eq!(t.live_hits(), r.live_hits(), "seed {seed}: live hits");
}

#[test]
fn the_shard_maps_behave_as_the_lru_cache_did() {
    for seed in 0..300 {
        run(seed, 600);
    }
}

#[test]
fn long_runs_behave_as_the_lru_cache_did() {
    for seed in [0xDEAD_BEEF, 42, 7_777_777] {
        run(seed, 20_000);
    }
}

#[test]
fn a_full_slab_gives_up_its_least_recent_entry() {
    let mut m = ShardMap::new();
    m.max_nodes = 3;
    let e = |v: u64| HotEntry {
        value: Arc::from(&[1u8, 2][..]),
        expires_ms: 0,
        cost: 0,
        encoding: crate::codec::Encoding::Json,
        version: v,
        dirty: false,
        tombstone: false,
        unwritable: false,
    };
    let keys: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"e"];
    let hb = DefaultHashBuilder::default();
    let hash = |k: &[u8]| hb.hash_one(k);
    for (v, k) in keys[..3].iter().enumerate() {
        assert!(m.push_absent(hash(k), (*k).into(), e(v as u64)).is_none());
    }
    assert!(m.lookup(hash(b"a"), b"a").is_some()); // b is now the least recent
    let out = m.push_absent(hash(b"d"), b"d"[..].into(), e(3));
    assert_eq!(
        out.map(|(k, e)| (k.to_vec(), e.version)),
        Some((b"b".to_vec(), 1))
    );
    m.check();
    assert!(m.remove(hash(b"c"), b"c").is_some());
    // A free slot: no eviction.
    assert!(m.push_absent(hash(b"e"), b"e"[..].into(), e(4)).is_none());
    m.check();
    let keys_now: Vec<&[u8]> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys_now, [&b"e"[..], b"d", b"a"]);

    // Through the tier: the entry the slab gave up is returned, and uncharged.
    let t = HotTier::new(1, 1 << 20, 100);
    t.lock(0).map.max_nodes = 2;
    t.insert(b"x", e(10));
    t.insert(b"y", e(11));
    let (_, ev) = t.insert(b"z", e(12));
    assert_eq!(views(&ev).len(), 1);
    assert_eq!(&*ev[0].key, b"x");
    assert_eq!((t.len(), t.bytes()), (2, 2 * (1 + 2 + ENTRY_OVERHEAD)));
    order(&t);
}

#[test]
fn concurrent_use_keeps_the_accounting_exact() {
    let t = Arc::new(HotTier::new(4, (ENTRY_OVERHEAD + 64) * 40, 50));
    std::thread::scope(|s| {
        for th in 0..4u64 {
            let t = t.clone();
            s.spawn(move || {
                let mut rng = Rng(th);
                for _ in 0..20_000 {
                    let key = [rng.below(90) as u8, 1];
                    match rng.below(10) {
                        0..=3 => {
                            let e = HotEntry {
                                value: vec![0u8; rng.below(64) as usize].into(),
                                expires_ms: 0,
                                cost: 1,
                                encoding: crate::codec::Encoding::Json,
                                version: t.next_version(),
                                dirty: rng.chance(50),
                                tombstone: false,
                                unwritable: false,
                            };
                            t.insert(&key, e);
                        }
                        4..=7 => {
                            t.get_live(&key, || 0);
                        }
                        8 => {
                            t.remove(&key);
                        }
                        _ => {
                            let s = t.stamp(&key);
                            let e = HotEntry {
                                value: vec![1u8; 8].into(),
                                expires_ms: 0,
                                cost: 1,
                                encoding: crate::codec::Encoding::Json,
                                version: t.next_version(),
                                dirty: false,
                                tombstone: false,
                                unwritable: false,
                            };
                            t.promote(&key, e, s);
                        }
                    }
                }
            });
        }
    });
    let all = order(&t);
    let charged: usize = all
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.0.len() + ENTRY_OVERHEAD)
        .sum();
    assert_eq!(t.bytes(), charged);
    assert_eq!(t.len(), all.iter().map(Vec::len).sum::<usize>());
    assert!(t.bytes() <= t.max_bytes() && t.len() <= t.max_entries());
}
