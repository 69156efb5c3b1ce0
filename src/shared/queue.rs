//! The shared write queue: one slot per key (the latest operation wins, as in the disk's
//! queue, so a `set` then a `remove` ends as a `DEL`), bounded by bytes. When full, the *new*
//! write is dropped and counted: a slow Redis must never slow a caller down (disk-style
//! backpressure is what this refuses). A `DEL` is never dropped that way: one that cannot be
//! queued or sent waits in [`PendingDels`] (bounded by count) until the server is back. Pure
//! state, no tasks: the drain task takes batches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use crate::warm::encoded::EncodedEntry;
use crate::warm::format::EntryMeta;
use crate::warm::layout::KeyHash;

/// Fixed bytes charged per slot besides its key and value.
pub(crate) const SLOT_OVERHEAD: usize = 64;

/// A queued operation.
#[derive(Debug, Clone)]
pub(crate) enum SharedOp {
    /// Share this value; `del_first`: a removal of the key it superseded (queued or kept)
    /// goes first, in the same pipeline, so that a value that is then refused (OOM), fails
    /// or is dropped never leaves the removed one on the server.
    Put {
        value: Arc<[u8]>,
        meta: EntryMeta,
        del_first: bool,
        /// The entry file, shared with the disk write of the same `set` (`warm::encoded`).
        encoded: Option<Arc<EncodedEntry>>,
    },
    /// Delete the key's shared entry.
    Del,
}

/// A queued operation with its key.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub hash: KeyHash,
    pub key: Arc<[u8]>,
    pub op: SharedOp,
}

#[derive(Debug)]
struct Slot {
    key: Arc<[u8]>,
    op: SharedOp,
    bytes: usize,
    seq: u64,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<KeyHash, Slot>,
    /// Keys in arrival order of their latest operation; entries whose seq no longer matches
    /// their slot are skipped.
    order: VecDeque<(KeyHash, u64)>,
    bytes: usize,
    seq: u64,
    /// Keys whose lease leader stored its answer locally, with the token of that store:
    /// cleared by any newer operation of the key (see [`SharedQueue::take_for_leader`]).
    leaders: HashMap<KeyHash, u64>,
    leader_seq: u64,
}

/// A newer operation of the key reached the queue after the lease leader's local store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Newer;

/// The queue (see the module docs).
#[derive(Debug)]
pub(crate) struct SharedQueue {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the drain task.
    pub(crate) ready: tokio::sync::Notify,
}

/// The new operation did not fit: it was dropped (and an older one of the key with it).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl SharedQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        SharedQueue {
            state: Mutex::default(),
            capacity,
            ready: tokio::sync::Notify::new(),
        }
    }

    /// Queues `op` for `key`, replacing what the key had queued. `Err(Full)` when it does not
    /// fit: then an older value of the key is dropped too, so it is never shared after a
    /// newer local one; an older queued `DEL` stays (the key's latest state that reaches the
    /// server is then "absent", never an older value).
    pub(crate) fn push(&self, hash: KeyHash, key: &[u8], op: SharedOp) -> Result<(), Full> {
        let size = SLOT_OVERHEAD
            + key.len()
            + match &op {
                SharedOp::Put { value, .. } => value.len(),
                SharedOp::Del => 0,
            };
        let mut st = lock(&self.state);
        // Newer than a lease leader's local store of the key, queued or not.
        st.leaders.remove(&hash);
        let old = st.slots.get(&hash).map_or(0, |s| s.bytes);
        if (st.bytes - old).saturating_add(size) > self.capacity {
            if !matches!(st.slots.get(&hash).map(|s| &s.op), Some(SharedOp::Del)) {
                if let Some(mut s) = st.slots.remove(&hash) {
                    st.bytes -= s.bytes;
                    // The older value goes; a removal it carried stays queued.
                    if let SharedOp::Put {
                        del_first: true, ..
                    } = s.op
                    {
                        s.op = SharedOp::Del;
                        s.bytes = SLOT_OVERHEAD + s.key.len();
                        st.bytes += s.bytes;
                        st.slots.insert(hash, s);
                    }
                }
            }
            return Err(Full);
        }
        let mut op = op;
        if let Some(s) = st.slots.remove(&hash) {
            st.bytes -= s.bytes;
            // A value replacing a queued removal (or a value that carried one) carries it.
            let owed = matches!(
                s.op,
                SharedOp::Del
                    | SharedOp::Put {
                        del_first: true,
                        ..
                    }
            );
            if let SharedOp::Put { del_first, .. } = &mut op {
                *del_first |= owed;
            }
        }
        st.seq += 1;
        let seq = st.seq;
        st.bytes += size;
        st.slots.insert(
            hash,
            Slot {
                key: key.into(),
                op,
                bytes: size,
                seq,
            },
        );
        st.order.push_back((hash, seq));
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// A newer operation of `hash` that is not queued (dropped while the breaker is open):
    /// the key's queued operation goes (returned), and a lease leader's local store of the
    /// key is no longer its newest.
    pub(crate) fn supersede(&self, hash: &KeyHash) -> Option<SharedOp> {
        let mut st = lock(&self.state);
        st.leaders.remove(hash);
        let s = st.slots.remove(hash)?;
        st.bytes -= s.bytes;
        Some(s.op)
    }

    /// A lease leader stored its answer for `hash` locally (called in the same critical
    /// section as that store's version, as `push` is for every `set`/`remove`). Returns the
    /// token [`SharedQueue::take_for_leader`] checks.
    pub(crate) fn mark_leader(&self, hash: KeyHash) -> u64 {
        let mut st = lock(&self.state);
        st.leader_seq += 1;
        let token = st.leader_seq;
        st.leaders.insert(hash, token);
        token
    }

    /// For the lease leader's inline write of `hash`: when no operation of the key came
    /// since its local store (`token`), takes the key's queued operation out (older than
    /// the leader's value) and returns it; `Err(Newer)` otherwise (the newer operation
    /// carries the key's state to the server, and the leader's value must not land after
    /// it).
    pub(crate) fn take_for_leader(
        &self,
        hash: &KeyHash,
        token: u64,
    ) -> Result<Option<SharedOp>, Newer> {
        let mut st = lock(&self.state);
        if st.leaders.get(hash) != Some(&token) {
            return Err(Newer);
        }
        st.leaders.remove(hash);
        let Some(s) = st.slots.remove(hash) else {
            return Ok(None);
        };
        st.bytes -= s.bytes;
        Ok(Some(s.op))
    }

    /// Forgets a lease leader's mark (its answer is not written inline after all).
    pub(crate) fn forget_leader(&self, hash: &KeyHash, token: u64) {
        let mut st = lock(&self.state);
        if st.leaders.get(hash) == Some(&token) {
            st.leaders.remove(hash);
        }
    }

    /// What `hash` has queued.
    pub(crate) fn lookup(&self, hash: &KeyHash) -> Option<SharedOp> {
        lock(&self.state).slots.get(hash).map(|s| s.op.clone())
    }

    /// Takes up to `max_ops` operations, oldest first, stopping before the batch passes
    /// `max_bytes` (the first is always taken).
    pub(crate) fn take(&self, max_ops: usize, max_bytes: usize) -> Vec<Queued> {
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_ops {
            let Some(&(hash, seq)) = st.order.front() else {
                break;
            };
            let size = match st.slots.get(&hash) {
                Some(s) if s.seq == seq => s.bytes,
                _ => {
                    st.order.pop_front();
                    continue;
                }
            };
            if !out.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            st.order.pop_front();
            if let Some(slot) = st.slots.remove(&hash) {
                st.bytes -= slot.bytes;
                bytes += slot.bytes;
                out.push(Queued {
                    hash,
                    key: slot.key,
                    op: slot.op,
                });
            }
        }
        out
    }

    /// `(entries, bytes)`.
    pub(crate) fn depth(&self) -> (u64, u64) {
        let st = lock(&self.state);
        (st.slots.len() as u64, st.bytes as u64)
    }
}

/// Removals whose `DEL` is not on the server yet: it could not be queued or sent (the breaker
/// was not Closed, the queue was full, the write failed). Each is kept until it is delivered
/// (sent once the breaker is Closed again) or superseded by a newer `set` of the key that was
/// queued; while kept, it hides the key's shared copy from this replica. Bounded by count:
/// past `max`, the oldest is given up (the caller counts it). In memory only: a restart
/// forgets them.
#[derive(Debug)]
pub(crate) struct PendingDels {
    state: Mutex<Pending>,
    max: usize,
}

#[derive(Debug, Default)]
struct Pending {
    /// Key hash → the seq of its latest insertion, and whether it is a removal counted as a
    /// write (a `remove`'s; not one kept only because a value superseding the key's shared
    /// copy was not written, which was counted as that value's fate).
    keys: HashMap<KeyHash, (u64, bool)>,
    /// Insertion order; entries whose seq no longer matches are skipped (and compacted).
    order: VecDeque<(KeyHash, u64)>,
    seq: u64,
}

impl Pending {
    /// Drops stale entries from the front of `order`, and compacts it when mostly stale.
    fn tidy(&mut self) {
        while let Some(&(h, seq)) = self.order.front() {
            if self.keys.get(&h).map(|k| k.0) == Some(seq) {
                break;
            }
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.keys.len() + 64 {
            let keys = &self.keys;
            self.order
                .retain(|(h, seq)| keys.get(h).map(|k| k.0) == Some(*seq));
        }
    }
}

impl PendingDels {
    pub(crate) fn new(max: usize) -> Self {
        PendingDels {
            state: Mutex::default(),
            max,
        }
    }

    /// Keeps a `DEL` of `hash`, `counted` as a write or not (a key kept both ways is
    /// counted). Returns how many older counted ones were given up for the bound (0 or 1).
    pub(crate) fn insert(&self, hash: KeyHash, counted: bool) -> u64 {
        let mut st = lock(&self.state);
        st.seq += 1;
        let seq = st.seq;
        let mut given_up = 0;
        let was = st.keys.insert(hash, (seq, counted));
        if let Some((_, true)) = was {
            if let Some(k) = st.keys.get_mut(&hash) {
                k.1 = true;
            }
        }
        if was.is_none() && st.keys.len() > self.max {
            st.tidy();
            if let Some((oldest, _)) = st.order.pop_front() {
                if let Some((_, true)) = st.keys.remove(&oldest) {
                    given_up = 1;
                }
            }
        }
        st.order.push_back((hash, seq));
        st.tidy();
        given_up
    }

    /// Forgets the `DEL` of `hash` (delivered, or superseded by a newer queued `set`).
    pub(crate) fn remove(&self, hash: &KeyHash) {
        let mut st = lock(&self.state);
        if st.keys.remove(hash).is_some() {
            st.tidy();
        }
    }

    /// Whether a `DEL` of `hash` is kept.
    pub(crate) fn contains(&self, hash: &KeyHash) -> bool {
        lock(&self.state).keys.contains_key(hash)
    }

    /// Whether a `DEL` of `hash` is kept (`Some`), and whether it is counted.
    pub(crate) fn counted(&self, hash: &KeyHash) -> Option<bool> {
        lock(&self.state).keys.get(hash).map(|k| k.1)
    }

    /// The oldest `n` kept, each with whether it is counted, still kept (until
    /// [`PendingDels::remove`]d once delivered).
    pub(crate) fn oldest(&self, n: usize) -> Vec<(KeyHash, bool)> {
        let st = lock(&self.state);
        st.order
            .iter()
            .filter_map(|&(h, seq)| match st.keys.get(&h) {
                Some(&(s, counted)) if s == seq => Some((h, counted)),
                _ => None,
            })
            .take(n)
            .collect()
    }

    /// Gives every one up; returns how many counted ones there were.
    pub(crate) fn clear(&self) -> u64 {
        let mut st = lock(&self.state);
        let n = st.keys.values().filter(|k| k.1).count() as u64;
        *st = Pending::default();
        n
    }

    pub(crate) fn len(&self) -> u64 {
        lock(&self.state).keys.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warm::layout::key_hash;

    fn put(v: &[u8]) -> SharedOp {
        SharedOp::Put {
            value: v.into(),
            meta: EntryMeta::default(),
            del_first: false,
            encoded: None,
        }
    }

    #[test]
    fn the_latest_operation_wins_and_bytes_are_exact() {
        let q = SharedQueue::new(1 << 20);
        let (a, b) = (key_hash(b"a"), key_hash(b"b"));
        q.push(a, b"a", put(b"1234")).unwrap();
        q.push(b, b"b", put(b"xy")).unwrap();
        assert_eq!(q.depth(), (2, (SLOT_OVERHEAD * 2 + 1 + 4 + 1 + 2) as u64));
        q.push(a, b"a", SharedOp::Del).unwrap();
        assert_eq!(q.depth(), (2, (SLOT_OVERHEAD * 2 + 1 + 1 + 2) as u64));
        assert!(matches!(q.lookup(&a), Some(SharedOp::Del)));
        let batch = q.take(64, usize::MAX);
        // `b` was queued before `a`'s latest operation.
        assert_eq!(batch.len(), 2);
        assert_eq!(&*batch[0].key, b"b");
        assert_eq!(&*batch[1].key, b"a");
        assert!(matches!(batch[1].op, SharedOp::Del));
        assert_eq!(q.depth(), (0, 0));
    }

    #[test]
    fn a_full_queue_drops_the_new_write_and_the_keys_older_one() {
        let q = SharedQueue::new(SLOT_OVERHEAD * 2 + 10);
        let (a, b) = (key_hash(b"a"), key_hash(b"b"));
        q.push(a, b"a", put(b"12345")).unwrap();
        assert_eq!(q.push(b, b"b", put(b"123456789")), Err(Full));
        assert_eq!(q.depth(), (1, (SLOT_OVERHEAD + 6) as u64));
        // A bigger value of `a` that does not fit drops `a` entirely.
        assert_eq!(q.push(a, b"a", put(&[0u8; 200])), Err(Full));
        assert_eq!(q.depth(), (0, 0));
        assert!(q.lookup(&a).is_none());
    }

    #[test]
    fn a_value_that_does_not_fit_leaves_an_older_del_queued() {
        let q = SharedQueue::new(SLOT_OVERHEAD + 10);
        let a = key_hash(b"a");
        q.push(a, b"a", SharedOp::Del).unwrap();
        assert_eq!(q.push(a, b"a", put(&[0u8; 200])), Err(Full));
        assert!(matches!(q.lookup(&a), Some(SharedOp::Del)));
        assert_eq!(q.depth(), (1, (SLOT_OVERHEAD + 1) as u64));
    }

    #[test]
    fn pending_dels_are_bounded_oldest_first() {
        let p = PendingDels::new(3);
        let h = |i: u8| key_hash(&[i]);
        for i in 0..3 {
            assert_eq!(p.insert(h(i), true), 0);
        }
        // Again: not a new key, nothing given up; it becomes the newest.
        assert_eq!(p.insert(h(0), true), 0);
        assert_eq!(p.oldest(10), vec![(h(1), true), (h(2), true), (h(0), true)]);
        assert_eq!(p.insert(h(3), true), 1);
        assert!(!p.contains(&h(1)));
        assert_eq!(p.oldest(2), vec![(h(2), true), (h(0), true)]);
        p.remove(&h(2));
        assert_eq!(p.oldest(10), vec![(h(0), true), (h(3), true)]);
        // Churn does not grow the order without bound.
        for _ in 0..1000 {
            p.insert(h(9), true);
            p.remove(&h(9));
        }
        assert!(lock(&p.state).order.len() <= 2 * 2 + 64 + 1);
        assert_eq!(p.len(), 2);
        assert_eq!(p.clear(), 2);
        assert!(p.oldest(10).is_empty());
    }

    #[test]
    fn only_counted_removals_count_when_given_up_or_cleared() {
        let p = PendingDels::new(2);
        let h = |i: u8| key_hash(&[i]);
        assert_eq!(p.insert(h(0), false), 0);
        assert_eq!(p.insert(h(1), true), 0);
        // Kept both ways: counted; kept uncounted again: still counted.
        assert_eq!(p.insert(h(0), true), 0);
        assert_eq!(p.insert(h(0), false), 0);
        assert_eq!(p.oldest(10), vec![(h(1), true), (h(0), true)]);
        // h(1) (counted) is given up for h(2): 1.
        assert_eq!(p.insert(h(2), false), 1);
        // h(0) (counted) is given up for h(3): 1; then h(2) (not counted): 0.
        assert_eq!(p.insert(h(3), false), 1);
        assert_eq!(p.insert(h(4), true), 0);
        assert_eq!(p.oldest(10), vec![(h(3), false), (h(4), true)]);
        assert_eq!(p.len(), 2);
        assert_eq!(p.clear(), 1);
    }

    #[test]
    fn batches_stop_at_the_count_and_byte_bounds() {
        let q = SharedQueue::new(usize::MAX);
        for i in 0..100u32 {
            let k = i.to_le_bytes();
            q.push(key_hash(&k), &k, put(&[0u8; 36])).unwrap();
        }
        assert_eq!(q.take(64, usize::MAX).len(), 64);
        // Each slot is 64 + 4 + 36 = 104 bytes: 3 fit in 350.
        assert_eq!(q.take(64, 350).len(), 3);
        assert_eq!(q.take(usize::MAX, usize::MAX).len(), 33);
        assert_eq!(q.take(64, usize::MAX).len(), 0);
    }
}
