//! Model tests of the warm index ([`WarmIndex`]): random sequences of every operation, drawn
//! from seeds, run on the index and on a plain reference model (a map of recency stamps, every
//! total recounted from scratch), compared after each step: entry count, byte totals, the
//! whole LRU order with each entry's length, expiry and tag, `contains`, the fan-out
//! directories in use, the sweep's candidates, and the order `pop_victim` gives. Then the edge
//! cases one by one: lengths and expiries at and past every width a compact index could
//! store them in, the tag's sentinels, removing the head, the tail and the only entry, reuse
//! of freed places, growth across many resizes, and `clear` then reuse.

use std::collections::{BTreeMap, HashMap};

use super::index::{file_tag, IndexEntry, WarmIndex, DIRENT_CHARGE, EXPIRY_UNKNOWN};
use super::layout::KeyHash;
use crate::workload::Rng;

/// The tag type of [`IndexEntry::tag`].
type Tag = u32;
/// The tag a file of a newer format gets (`NOT_OURS` in store.rs).
const NOT_OURS: Tag = Tag::MAX;

/// What the index must behave like: recency as a stamp per entry (lowest = least recently
/// used), totals recounted from the entries every time they are asked for.
#[derive(Debug, Clone)]
struct Model {
    by_stamp: BTreeMap<i64, KeyHash>,
    entries: HashMap<KeyHash, (i64, IndexEntry)>,
    /// The next stamp at the most recent end, and at the least recent end.
    hi: i64,
    lo: i64,
    dir_sizes: [u64; 256],
    unit: u64,
    scanned: bool,
    settled: bool,
}

impl Model {
    fn new() -> Self {
        Model {
            by_stamp: BTreeMap::new(),
            entries: HashMap::new(),
            hi: 0,
            lo: -1,
            dir_sizes: [0; 256],
            unit: 4096,
            scanned: false,
            settled: false,
        }
    }

    fn known(expires_ms: u64) -> u64 {
        if expires_ms == u64::MAX {
            u64::MAX - 1
        } else {
            expires_ms
        }
    }

    fn insert(&mut self, h: KeyHash, e: IndexEntry, most_recent: bool) {
        self.remove(&h);
        let stamp = if most_recent {
            self.hi += 1;
            self.hi
        } else {
            self.lo -= 1;
            self.lo
        };
        self.by_stamp.insert(stamp, h);
        self.entries.insert(h, (stamp, e));
    }

    fn put(&mut self, h: KeyHash, mut e: IndexEntry) {
        e.expires_ms = Self::known(e.expires_ms);
        self.insert(h, e, true);
    }

    fn put_back_lru(&mut self, h: KeyHash, mut e: IndexEntry) {
        e.expires_ms = Self::known(e.expires_ms);
        self.insert(h, e, false);
    }

    fn remove(&mut self, h: &KeyHash) -> Option<IndexEntry> {
        let (stamp, e) = self.entries.remove(h)?;
        self.by_stamp.remove(&stamp);
        Some(e)
    }

    fn pop_victim(&mut self, keep: &KeyHash) -> Option<(KeyHash, IndexEntry)> {
        let (_, h) = self.by_stamp.first_key_value()?;
        let h = *h;
        if &h == keep {
            return None;
        }
        self.remove(&h).map(|e| (h, e))
    }

    fn merge(&mut self, mut found: Vec<(KeyHash, u64, u64)>, keep_state: bool) {
        // Oldest (smallest mtime) least recent; among equal times, the later in the list
        // is the less recent; a hash already known (or listed earlier) keeps its place.
        found.sort_by_key(|e| std::cmp::Reverse(e.2));
        for (h, len, _) in found {
            if !self.entries.contains_key(&h) {
                let e = IndexEntry {
                    len,
                    expires_ms: EXPIRY_UNKNOWN,
                    tag: 0,
                };
                self.insert(h, e, false);
            }
        }
        if !keep_state {
            self.scanned = true;
        }
    }

    fn set_expiry(&mut self, h: &KeyHash, expires_ms: u64) {
        if let Some((_, e)) = self.entries.get_mut(h) {
            e.expires_ms = Self::known(expires_ms);
        }
    }

    fn clear(&mut self) {
        self.by_stamp.clear();
        self.entries.clear();
        self.dir_sizes = [0; 256];
    }

    /// Least recently used first.
    fn order(&self) -> Vec<(KeyHash, IndexEntry)> {
        self.by_stamp
            .values()
            .map(|h| (*h, self.entries[h].1))
            .collect()
    }

    fn charge(&self, len: u64) -> u64 {
        len.div_ceil(self.unit) * self.unit + DIRENT_CHARGE
    }

    fn bytes(&self) -> u64 {
        self.entries.values().map(|(_, e)| e.len).sum()
    }

    /// Whether each fan-out directory holds an entry.
    fn dirs_used(&self) -> [bool; 256] {
        let mut used = [false; 256];
        for h in self.entries.keys() {
            used[usize::from(h[0])] = true;
        }
        used
    }

    fn disk_bytes(&self) -> u64 {
        let files: u64 = self.entries.values().map(|(_, e)| self.charge(e.len)).sum();
        let used = self.dirs_used();
        let dirs: u64 = (0..256)
            .filter(|&i| used[i])
            .map(|i| self.unit + self.dir_sizes[i].saturating_sub(self.unit))
            .sum();
        files + dirs
    }

    fn sweep(&self, now_ms: u64, limit: usize) -> (Vec<KeyHash>, Vec<KeyHash>) {
        sweep(&self.order(), now_ms, limit)
    }
}

/// The sweep's candidates in an order (least recently used first): the expired ones and up to
/// `limit` unknown ones, each most recent first.
fn sweep(
    order: &[(KeyHash, IndexEntry)],
    now_ms: u64,
    limit: usize,
) -> (Vec<KeyHash>, Vec<KeyHash>) {
    let mut expired = Vec::new();
    let mut unknown = Vec::new();
    for (h, e) in order.iter().rev() {
        if e.expires_ms == EXPIRY_UNKNOWN {
            if unknown.len() < limit {
                unknown.push(*h);
            }
        } else if e.expires_ms != 0 && now_ms >= e.expires_ms {
            expired.push(*h);
        }
    }
    (expired, unknown)
}

/// Lengths at and around every width an index could keep them in.
const LENS: [u64; 14] = [
    0,
    1,
    4095,
    4096,
    4097,
    (1 << 16) - 1,
    1 << 20,
    u32::MAX as u64 - 1,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    (1 << 33) + 7,
    (1 << 40) - 1,
    1 << 40,
    1 << 41,
];

/// Expiries (unix ms) at and around every boundary: never, the smallest, whole seconds and
/// one ms either side, 32 and 48 bits, the largest known one, and `u64::MAX` (a TTL of
/// `Duration::MAX`, stored as one ms less).
const EXPIRIES: [u64; 22] = [
    0,
    1,
    999,
    1000,
    1001,
    1_750_000_000_000,
    1_750_000_000_001,
    1_750_000_000_999,
    1_750_000_001_000,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    (1 << 48) - 4,
    (1 << 48) - 3,
    (1 << 48) - 2,
    (1 << 48) - 1,
    1 << 48,
    (1 << 48) + 1,
    1 << 60,
    u64::MAX - 3,
    u64::MAX - 2,
    u64::MAX - 1,
    u64::MAX,
];

const TAGS: [Tag; 7] = [0, 1, 2, 0x1234_5678, Tag::MAX - 2, Tag::MAX - 1, NOT_OURS];

fn random(rng: &mut Rng) -> KeyHash {
    let mut h = [0u8; 32];
    h.copy_from_slice(&rng.bytes(32));
    h
}

/// A pool of keys that collide in every way a table over them could care about: random ones,
/// ones sharing their first 8 or 9 bytes (the same place in a table keyed by them, the same
/// fingerprint), ones in the same fan-out directory, ones at both ends of the key space (a
/// table's first and last slots), and the all-zero hash (the store's "keep nothing").
fn pool(rng: &mut Rng) -> Vec<KeyHash> {
    let mut keys = Vec::new();
    for _ in 0..16 {
        keys.push(random(rng));
    }
    for (shared, n) in [(8, 8), (9, 8), (1, 8)] {
        let base = random(rng);
        for _ in 0..n {
            let mut h = random(rng);
            h[..shared].copy_from_slice(&base[..shared]);
            keys.push(h);
        }
    }
    for end in [0x00u8, 0xff] {
        for _ in 0..4 {
            let mut h = random(rng);
            h[..8].fill(end);
            keys.push(h);
        }
    }
    keys.push([0; 32]);
    keys.push([0xff; 32]);
    keys
}

fn entry(rng: &mut Rng) -> IndexEntry {
    IndexEntry {
        len: if rng.chance(0.5) {
            rng.pick(&LENS)
        } else {
            rng.below(1 << 20) as u64
        },
        expires_ms: if rng.chance(0.5) {
            rng.pick(&EXPIRIES)
        } else {
            1_750_000_000_000 + rng.below(10_000) as u64
        },
        tag: if rng.chance(0.5) {
            rng.pick(&TAGS)
        } else {
            rng.next_u64() as Tag
        },
    }
}

/// Sweep times worth asking about: around the expiries of the entries at both ends, and some
/// of the fixed ones.
fn sweep_times(order: &[(KeyHash, IndexEntry)]) -> Vec<u64> {
    let mut t: Vec<u64> = EXPIRIES.iter().step_by(3).copied().collect();
    t.push(u64::MAX);
    let ends = order.iter().take(2).chain(order.iter().rev().take(2));
    for (_, e) in ends {
        t.extend([
            e.expires_ms.saturating_sub(1),
            e.expires_ms,
            e.expires_ms.saturating_add(1),
        ]);
    }
    t
}

/// Everything the index answers, compared with the model.
fn check(ix: &WarmIndex, m: &Model, keys: &[KeyHash], ctx: &str) {
    assert_eq!(ix.len(), m.entries.len(), "{ctx}: len");
    assert_eq!(ix.bytes(), m.bytes(), "{ctx}: bytes");
    assert_eq!(ix.disk_bytes(), m.disk_bytes(), "{ctx}: disk_bytes");
    assert_eq!(ix.unit(), m.unit, "{ctx}: unit");
    assert_eq!(ix.scanned(), m.scanned, "{ctx}: scanned");
    assert_eq!(ix.settled(), m.settled, "{ctx}: settled");
    let order = m.order();
    assert_eq!(ix.entries_lru_first(), order, "{ctx}: order");
    for k in keys {
        assert_eq!(ix.contains(k), m.entries.contains_key(k), "{ctx}: contains");
    }
    let used = m.dirs_used();
    for i in 0..=255u8 {
        assert_eq!(
            ix.dir_unused(i),
            !used[usize::from(i)],
            "{ctx}: dir_unused({i})"
        );
    }
    for now in sweep_times(&order) {
        for limit in [1, usize::MAX] {
            assert_eq!(
                ix.sweep_candidates(now, limit),
                sweep(&order, now, limit),
                "{ctx}: sweep_candidates({now}, {limit})"
            );
        }
    }
}

/// Pops every victim of a copy of the index and of the model (never `keep`): the same
/// entries in the same order, and both end empty unless `keep` was the last.
fn check_victims(ix: &WarmIndex, m: &Model, keep: &KeyHash, ctx: &str) {
    let (mut ix, mut m) = (ix.clone(), m.clone());
    loop {
        let (a, b) = (ix.pop_victim(keep), m.pop_victim(keep));
        assert_eq!(a, b, "{ctx}: pop_victim sequence");
        if a.is_none() {
            break;
        }
        assert_eq!(ix.len(), m.entries.len());
        if ix.len() < 100 || ix.len() % 1000 == 0 {
            assert_eq!(ix.disk_bytes(), m.disk_bytes(), "{ctx}: disk_bytes popping");
        }
    }
    assert_eq!(ix.bytes(), m.bytes());
}

/// One random operation on both, from `rng`.
fn step(ix: &mut WarmIndex, m: &mut Model, keys: &[KeyHash], rng: &mut Rng) -> String {
    let k = rng.pick(keys);
    match rng.below(100) {
        0..=29 => {
            let e = entry(rng);
            ix.put(k, e);
            m.put(k, e);
            format!("put {e:?}")
        }
        30..=34 => {
            let e = entry(rng);
            ix.put_back_lru(k, e);
            m.put_back_lru(k, e);
            format!("put_back_lru {e:?}")
        }
        35..=49 => {
            assert_eq!(ix.remove(&k), m.remove(&k), "remove");
            "remove".into()
        }
        50..=64 => {
            // The least recent (nothing popped), any key, or none.
            let keep = match rng.below(3) {
                0 => m.by_stamp.values().next().copied().unwrap_or(k),
                1 => k,
                _ => [0x5a; 32],
            };
            assert_eq!(ix.pop_victim(&keep), m.pop_victim(&keep), "pop_victim");
            "pop_victim".into()
        }
        65..=69 => {
            // Duplicates and equal modification times included.
            let found: Vec<(KeyHash, u64, u64)> = (0..rng.below(12))
                .map(|_| (rng.pick(keys), entry(rng).len, rng.below(4) as u64))
                .collect();
            let keep_state = rng.chance(0.4);
            if keep_state {
                ix.merge_scanned_keeping_state(found.clone());
            } else {
                ix.merge_scanned(found.clone());
            }
            m.merge(found, keep_state);
            format!("merge keep_state={keep_state}")
        }
        70..=81 => {
            let exp = if rng.chance(0.7) {
                rng.pick(&EXPIRIES)
            } else {
                rng.next_u64()
            };
            ix.set_expiry(&k, exp);
            m.set_expiry(&k, exp);
            format!("set_expiry {exp}")
        }
        82..=89 => {
            let i = if rng.chance(0.5) {
                k[0]
            } else {
                rng.below(256) as u8
            };
            let bytes = rng.pick(&[0, 512, 4096, 8192, 1 << 20, 3 << 20]);
            ix.observe_dir(i, bytes);
            m.dir_sizes[usize::from(i)] = bytes;
            format!("observe_dir {i} {bytes}")
        }
        90..=93 => {
            let unit = rng.pick(&[1, 512, 4096, 65536, 1 << 20, 1 << 30]);
            ix.set_unit(unit);
            m.unit = unit.clamp(512, 1 << 20);
            format!("set_unit {unit}")
        }
        94..=95 => {
            ix.clear();
            m.clear();
            "clear".into()
        }
        96 => {
            ix.mark_settled();
            m.settled = true;
            "mark_settled".into()
        }
        _ => {
            // A burst of writes of keys the pool does not hold, then their removal: the
            // places they took are reused by the pool's keys afterwards.
            let extra: Vec<KeyHash> = (0..rng.below(40)).map(|_| random(rng)).collect();
            for h in &extra {
                let e = entry(rng);
                ix.put(*h, e);
                m.put(*h, e);
            }
            for h in extra.iter().rev() {
                assert_eq!(ix.remove(h), m.remove(h));
            }
            "burst".into()
        }
    }
}

#[test]
fn random_operations_match_the_model() {
    for seed in 0..60u64 {
        let mut rng = Rng::new(seed);
        let keys = pool(&mut rng);
        // Every other seed, the pool's keys that share their first 8 bytes share their home
        // in the table too.
        let mut ix = if seed % 2 == 0 {
            WarmIndex::default()
        } else {
            WarmIndex::keyed_by_prefix()
        };
        let mut m = Model::new();
        for i in 0..1000 {
            let what = step(&mut ix, &mut m, &keys, &mut rng);
            let ctx = format!("seed {seed} step {i} ({what})");
            check(&ix, &m, &keys, &ctx);
            if i % 200 == 0 {
                check_victims(&ix, &m, &[0; 32], &ctx);
                check_victims(&ix, &m, &rng.pick(&keys), &ctx);
            }
        }
        check_victims(&ix, &m, &[0; 32], &format!("seed {seed} end"));
    }
}

/// Many entries, so that a compact index grows its table and its storage many times over,
/// frees places and reuses them, across every boundary; compared in full every so often.
#[test]
fn growth_across_many_resizes_matches_the_model() {
    for seed in 0..2u64 {
        let mut rng = Rng::new(1000 + seed);
        let keys: Vec<KeyHash> = (0..30_000u64)
            .map(|i| super::layout::key_hash(&(seed << 32 | i).to_le_bytes()))
            .collect();
        let mut ix = WarmIndex::default();
        let mut m = Model::new();
        for i in 0..90_000 {
            // Mostly growth early, mostly churn later.
            let k = rng.pick(&keys);
            match rng.below(10) {
                0..=5 => {
                    let e = entry(&mut rng);
                    ix.put(k, e);
                    m.put(k, e);
                }
                6 => assert_eq!(ix.remove(&k), m.remove(&k)),
                7 if i > 45_000 => {
                    for _ in 0..rng.below(8) {
                        assert_eq!(ix.pop_victim(&k), m.pop_victim(&k));
                    }
                }
                8 => {
                    let e = entry(&mut rng);
                    ix.put_back_lru(k, e);
                    m.put_back_lru(k, e);
                }
                _ => {
                    let exp = rng.pick(&EXPIRIES);
                    ix.set_expiry(&k, exp);
                    m.set_expiry(&k, exp);
                }
            }
            if i % 15_000 == 0 || i == 89_999 {
                let ctx = format!("seed {seed} step {i}");
                assert_eq!(ix.len(), m.entries.len(), "{ctx}");
                assert_eq!(ix.bytes(), m.bytes(), "{ctx}");
                assert_eq!(ix.disk_bytes(), m.disk_bytes(), "{ctx}");
                assert_eq!(ix.entries_lru_first(), m.order(), "{ctx}");
                for now in [0, 1_750_000_005_000, u64::MAX] {
                    assert_eq!(ix.sweep_candidates(now, 100), m.sweep(now, 100), "{ctx}");
                }
                for k in keys.iter().step_by(7) {
                    assert_eq!(ix.contains(k), m.entries.contains_key(k));
                }
            }
        }
        // The scan merges what a restart finds: all the keys, newest first.
        let found: Vec<(KeyHash, u64, u64)> = keys
            .iter()
            .enumerate()
            .map(|(i, h)| (*h, i as u64 * 3, (i % 977) as u64))
            .collect();
        ix.merge_scanned(found.clone());
        m.merge(found, false);
        assert_eq!(ix.entries_lru_first(), m.order());
        check_victims(&ix, &m, &[0; 32], &format!("seed {seed} end"));
        ix.clear();
        m.clear();
        assert_eq!((ix.len(), ix.bytes(), ix.disk_bytes()), (0, 0, 0));
        for k in keys.iter().take(5000) {
            let e = entry(&mut rng);
            ix.put(*k, e);
            m.put(*k, e);
        }
        assert_eq!(ix.entries_lru_first(), m.order());
        assert_eq!(ix.disk_bytes(), m.disk_bytes());
    }
}

fn e(len: u64, expires_ms: u64, tag: Tag) -> IndexEntry {
    IndexEntry {
        len,
        expires_ms,
        tag,
    }
}

fn h(i: u8) -> KeyHash {
    let mut k = [i; 32];
    k[31] = 0x77;
    k
}

/// Lengths past `u32::MAX` are kept exactly, through a rewrite to a small length and back,
/// a removal, and a pop; the place they used serves a small entry afterwards.
#[test]
fn lengths_past_32_bits_are_exact() {
    let mut ix = WarmIndex::default();
    let big = [
        u32::MAX as u64 - 1,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        1 << 40,
    ];
    for (i, len) in big.iter().enumerate() {
        ix.put(h(i as u8), e(*len, 0, 5));
    }
    assert_eq!(ix.bytes(), big.iter().sum::<u64>());
    ix.put(h(1), e(10, 0, 5));
    ix.put(h(1), e(u32::MAX as u64 + 9, 0, 5));
    ix.put(h(2), e(3, 0, 5));
    assert_eq!(
        ix.bytes(),
        big[0] + u32::MAX as u64 + 9 + 3 + big[3],
        "rewrites replace the lengths"
    );
    assert_eq!(ix.remove(&h(3)), Some(e(1 << 40, 0, 5)));
    assert_eq!(ix.pop_victim(&[0; 32]), Some((h(0), e(big[0], 0, 5))));
    assert_eq!(
        ix.pop_victim(&[0; 32]),
        Some((h(1), e(u32::MAX as u64 + 9, 0, 5)))
    );
    // The places freed are reused; nothing of their lengths stays.
    ix.put(h(9), e(1, 0, 5));
    ix.put(h(10), e(2, 0, 5));
    ix.put(h(11), e(3, 0, 5));
    assert_eq!(ix.bytes(), 3 + 1 + 2 + 3);
    assert_eq!(
        ix.entries_lru_first(),
        vec![
            (h(2), e(3, 0, 5)),
            (h(9), e(1, 0, 5)),
            (h(10), e(2, 0, 5)),
            (h(11), e(3, 0, 5)),
        ]
    );
}

/// Every expiry is kept to the millisecond: the sweep offers an entry exactly from its
/// expiry on, never a millisecond before; 0 never expires; `u64::MAX` is stored as one ms
/// less (known, not unknown); scanned entries are unknown until `set_expiry`.
#[test]
fn expiries_are_exact_to_the_millisecond() {
    let mut ix = WarmIndex::default();
    for (i, exp) in EXPIRIES.iter().enumerate() {
        ix.put(h(i as u8), e(1, *exp, 1));
    }
    for (i, exp) in EXPIRIES.iter().enumerate() {
        let stored = if *exp == u64::MAX { u64::MAX - 1 } else { *exp };
        let k = h(i as u8);
        let expired_at = |now: u64| ix.sweep_candidates(now, 0).0.contains(&k);
        if stored == 0 {
            assert!(!expired_at(u64::MAX), "0 never expires");
            continue;
        }
        assert!(expired_at(stored), "{exp} expired at its expiry");
        assert!(!expired_at(stored - 1), "{exp} not a ms before");
        assert!(expired_at(u64::MAX));
    }
    let stored: Vec<u64> = ix
        .entries_lru_first()
        .iter()
        .map(|(_, e)| e.expires_ms)
        .collect();
    let want: Vec<u64> = EXPIRIES.iter().map(|&x| x.min(u64::MAX - 1)).collect();
    assert_eq!(stored, want);

    ix.merge_scanned(vec![(h(200), 5, 1), (h(201), 5, 2)]);
    assert_eq!(ix.sweep_candidates(u64::MAX, 10).1, vec![h(201), h(200)]);
    ix.set_expiry(&h(200), EXPIRY_UNKNOWN);
    ix.set_expiry(&h(201), 1_750_000_000_123);
    let (expired, unknown) = ix.sweep_candidates(1_750_000_000_123, 10);
    assert!(unknown.is_empty(), "set_expiry(u64::MAX) is a known expiry");
    assert!(expired.contains(&h(201)) && !expired.contains(&h(200)));
    assert!(!ix
        .sweep_candidates(1_750_000_000_122, 10)
        .0
        .contains(&h(201)));
    // `set_expiry` of a key not held adds nothing.
    ix.set_expiry(&h(202), 5);
    assert!(!ix.contains(&h(202)));
}

/// Tags come back as they were put, the sentinels included: 0 (a file the scan found),
/// `NOT_OURS` (a file of a newer format) and every other value.
#[test]
fn tags_come_back_exactly() {
    let mut ix = WarmIndex::default();
    for (i, tag) in TAGS.iter().enumerate() {
        ix.put(h(i as u8), e(1, 0, *tag));
    }
    let popped: Vec<Tag> =
        std::iter::from_fn(|| ix.pop_victim(&[0; 32]).map(|(_, e)| e.tag)).collect();
    assert_eq!(popped, TAGS);
    ix.merge_scanned(vec![(h(1), 1, 1)]);
    assert_eq!(ix.remove(&h(1)).map(|e| e.tag), Some(0));
}

/// `file_tag` is never 0 (unknown) nor `NOT_OURS`, whatever the checksum bytes, and files too
/// short for a checksum all get the same tag.
#[test]
fn file_tags_avoid_both_sentinels() {
    let at = super::format::CHECKSUM_OFFSET;
    let mut file = vec![0u8; super::format::HEADER_LEN];
    assert_ne!(file_tag(&file), 0);
    file[at..at + 8].fill(0xff);
    assert_ne!(file_tag(&file), NOT_OURS);
    assert_ne!(file_tag(&file), 0);
    file[at] = 0x12;
    let a = file_tag(&file);
    file[at] = 0x13;
    assert_ne!(file_tag(&file), a, "the checksum's first byte counts");
    assert_eq!(file_tag(&[]), file_tag(&[1, 2, 3]));
    assert!(file_tag(&[]) != 0 && file_tag(&[]) != NOT_OURS);
}

/// Removing the least recent, the most recent, a middle and the only entry keeps the order
/// of the rest; `pop_victim` never takes `keep`, and stops at it when it is the least recent.
#[test]
fn removing_the_ends_and_the_only_entry() {
    let mut ix = WarmIndex::default();
    let order =
        |ix: &WarmIndex| -> Vec<u8> { ix.entries_lru_first().iter().map(|(k, _)| k[0]).collect() };
    for i in 1..=5 {
        ix.put(h(i), e(u64::from(i), 0, 1));
    }
    assert_eq!(ix.remove(&h(1)).map(|e| e.len), Some(1));
    assert_eq!(order(&ix), [2, 3, 4, 5]);
    assert_eq!(ix.remove(&h(5)).map(|e| e.len), Some(5));
    assert_eq!(order(&ix), [2, 3, 4]);
    assert_eq!(ix.remove(&h(3)).map(|e| e.len), Some(3));
    assert_eq!(order(&ix), [2, 4]);
    assert_eq!(ix.remove(&h(3)), None);
    assert_eq!(ix.pop_victim(&h(2)), None, "keep is the least recent");
    assert_eq!(ix.pop_victim(&h(4)).map(|(k, _)| k), Some(h(2)));
    assert_eq!(ix.pop_victim(&h(4)), None, "keep is the only one");
    assert_eq!(ix.remove(&h(4)).map(|e| e.len), Some(4));
    assert_eq!((ix.len(), ix.bytes(), ix.disk_bytes()), (0, 0, 0));
    assert_eq!(ix.pop_victim(&[0; 32]), None);
    // The empty index takes entries again, in order.
    ix.put(h(7), e(7, 0, 1));
    ix.put_back_lru(h(8), e(8, 0, 1));
    ix.put(h(9), e(9, 0, 1));
    assert_eq!(order(&ix), [8, 7, 9]);
    ix.put(h(8), e(8, 0, 1));
    assert_eq!(order(&ix), [7, 9, 8]);
    ix.put_back_lru(h(8), e(8, 0, 1));
    assert_eq!(order(&ix), [8, 7, 9]);
}

/// `clear` forgets every entry, byte and directory size (the scan state stays), and the
/// index works as new afterwards.
#[test]
fn clear_then_reuse() {
    let mut ix = WarmIndex::default();
    let mut m = Model::new();
    let mut rng = Rng::new(77);
    ix.merge_scanned(vec![(h(1), 10, 1)]);
    m.merge(vec![(h(1), 10, 1)], false);
    for i in 0..3000u32 {
        let k = super::layout::key_hash(&i.to_le_bytes());
        let en = entry(&mut rng);
        ix.put(k, en);
        m.put(k, en);
    }
    ix.observe_dir(h(1)[0], 1 << 20);
    m.dir_sizes[usize::from(h(1)[0])] = 1 << 20;
    ix.clear();
    m.clear();
    check(&ix, &m, &[h(1)], "cleared");
    assert!(ix.scanned());
    for i in 0..3000u32 {
        let k = super::layout::key_hash(&(i + 7).to_le_bytes());
        let en = entry(&mut rng);
        ix.put(k, en);
        m.put(k, en);
    }
    check(&ix, &m, &[h(1)], "reused");
    check_victims(&ix, &m, &[0; 32], "reused");
}

/// Hundreds of keys of one home (a table keyed by their first 8 bytes, as a hostile directory
/// listing could make them): distances past what a bucket holds (29) are read from the
/// slots; lookups, removals from the middle of the run, reuse and growth stay exact.
#[test]
fn keys_of_one_home_past_the_distance_a_bucket_holds() {
    let mut rng = Rng::new(5);
    let mut ix = WarmIndex::keyed_by_prefix();
    let mut m = Model::new();
    let keys: Vec<KeyHash> = (0..700)
        .map(|i| {
            let mut k = random(&mut rng);
            // Half at the last home (runs wrap around to the first bucket), half at one home.
            k[..8].fill(if i % 2 == 0 { 0xff } else { 0x42 });
            k
        })
        .collect();
    let others: Vec<KeyHash> = (0..300).map(|_| random(&mut rng)).collect();
    for (i, k) in keys.iter().chain(&others).enumerate() {
        let en = e(i as u64, 0, 3);
        ix.put(*k, en);
        m.put(*k, en);
    }
    check(&ix, &m, &keys, "filled");
    for k in keys.iter().step_by(3) {
        assert_eq!(ix.remove(k), m.remove(k));
    }
    check(&ix, &m, &keys, "thinned");
    for k in keys.iter().step_by(3) {
        assert!(!ix.contains(k));
        let en = entry(&mut rng);
        ix.put_back_lru(*k, en);
        m.put_back_lru(*k, en);
    }
    for _ in 0..2000 {
        let k = rng.pick(&keys);
        match rng.below(3) {
            0 => assert_eq!(ix.remove(&k), m.remove(&k)),
            1 => assert_eq!(ix.pop_victim(&k), m.pop_victim(&k)),
            _ => {
                let en = entry(&mut rng);
                ix.put(k, en);
                m.put(k, en);
            }
        }
    }
    check(&ix, &m, &keys, "churned");
    check_victims(&ix, &m, &[0; 32], "churned");
}

/// At its slot limit the index records no new entry (and counts none of it), but still
/// updates the ones it holds; a removal makes room again.
#[test]
fn a_full_index_records_no_new_entry() {
    let mut ix = WarmIndex::with_slot_limit(3);
    for i in 1..=4 {
        ix.put(h(i), e(u64::from(i), 0, 1));
    }
    assert_eq!((ix.len(), ix.bytes()), (3, 6));
    assert!(!ix.contains(&h(4)));
    ix.put(h(1), e(10, 0, 1));
    assert_eq!((ix.len(), ix.bytes()), (3, 15));
    ix.merge_scanned(vec![(h(5), 100, 1)]);
    assert_eq!((ix.len(), ix.bytes()), (3, 15));
    assert_eq!(ix.pop_victim(&[0; 32]).map(|(k, _)| k), Some(h(2)));
    ix.put(h(4), e(4, 0, 1));
    assert_eq!((ix.len(), ix.bytes()), (3, 17));
    assert_eq!(
        ix.entries_lru_first()
            .iter()
            .map(|(k, _)| k[0])
            .collect::<Vec<_>>(),
        [3, 1, 4]
    );
}
