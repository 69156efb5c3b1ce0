//! The write queue: what `set` and `remove` have promised the disk and the writer has not yet
//! delivered.
//!
//! Why a map of slots and not a channel of operations: per key, only the *last* `set` or
//! `remove` matters, so a newer operation replaces the older one in its slot instead of queueing
//! behind it (a hot key rewritten 1,000 times costs one write, not 1,000), and a key is handed
//! to at most one writer at a time, so two writes of one key can never race to the rename.
//! When a newer operation arrives while the older one is being written, the slot is re-queued
//! once the older write finishes: the last operation always lands last.
//!
//! The slot also serves reads: a value evicted from the hot tier before its write landed is
//! still found here.
//!
//! The queue is bounded in bytes by a semaphore: `set` waits for room (backpressure) before it
//! changes anything, so dropping a `set` future while it waits leaves nothing half-done.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use crate::warm::encoded::EncodedEntry;
use crate::warm::format::EntryMeta;
use crate::warm::layout::KeyHash;

/// Fixed cost charged per queued operation on top of key and value bytes.
pub const OP_OVERHEAD: usize = 128;

/// A queued operation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Write this value.
    Put {
        value: Arc<[u8]>,
        meta: EntryMeta,
        /// The hot-tier version this write makes clean.
        version: u64,
        /// The entry file, shared with the other tier that stores this write (the shared
        /// tier, or the shared hit this write promotes), so that it is encoded once.
        encoded: Option<Arc<EncodedEntry>>,
    },
    /// Delete the entry file.
    Delete {
        /// The hot-tier version of the tombstone this delete clears.
        version: u64,
    },
    /// Delete the entry file because the key's newest value (or removal) was lost from
    /// memory before it reached the disk: the older file must never be served again (see
    /// `Inner::stale`). Queued by write-back; its job carries no key, only the hash.
    Purge {
        /// The lost hot-tier version; landing clears the stale mark if no newer loss
        /// replaced it.
        version: u64,
    },
}

impl Op {
    /// The hot-tier version this operation carries.
    pub(crate) fn version(&self) -> u64 {
        match self {
            Op::Put { version, .. } | Op::Delete { version } | Op::Purge { version } => *version,
        }
    }
}

/// The result handed to write-through waiters: `true` when the operation reached the disk.
pub(crate) type Ack = oneshot::Receiver<bool>;

#[derive(Debug)]
struct Slot {
    key: Arc<[u8]>,
    op: Op,
    seq: u64,
    queued: bool,
    in_flight: bool,
    /// The write in flight for this key timed out and may never return (set by
    /// `mark_stuck`, cleared when it returns). Nothing of this slot can progress until then, a
    /// newer operation queued behind it included: `flush` and `clear` do not wait for it.
    stuck: bool,
    /// The `seq` of the job handed to a writer, while `in_flight`.
    in_flight_seq: u64,
    /// `clear` dropped the pending operation of this in-flight slot: reads ignore it and
    /// `complete` removes the slot instead of queueing it again. Reset by a newer commit.
    cancelled: bool,
    _permit: OwnedSemaphorePermit,
    waiters: Vec<oneshot::Sender<bool>>,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<KeyHash, Slot>,
    ready: VecDeque<KeyHash>,
    seq: u64,
    bytes: usize,
    in_flight: usize,
    /// The writer has stopped (see [`WriteQueue::shut_if_idle`]).
    shut: bool,
    /// The `seq` of every slot that is not stuck: `wait(Some(u))` is done once the first is
    /// above `u`, a lookup instead of a scan of every slot.
    live: BTreeSet<u64>,
    /// The `upto` of each `wait(Some(_))` call waiting, with how many wait for it: a
    /// completion wakes them only once the smallest is done (not at every job of a drain).
    flushes: BTreeMap<u64, usize>,
}

impl State {
    /// Is no operation with `seq <= upto` left that is not stuck (or the writer gone)?
    fn flushed(&self, upto: u64) -> bool {
        self.shut || self.live.first().is_none_or(|&m| m > upto)
    }

    /// Is a `wait(Some(_))` call done (the one with the smallest `upto` is done whenever any
    /// is)?
    fn flush_due(&self) -> bool {
        self.flushes
            .first_key_value()
            .is_some_and(|(&u, _)| self.flushed(u))
    }

    /// Checks (debug builds, small queues) that `live` holds the seqs of the slots that are
    /// not stuck, exactly.
    fn check_live(&self) {
        if cfg!(debug_assertions) && self.slots.len() <= 512 {
            let expected: BTreeSet<u64> = self
                .slots
                .values()
                .filter(|s| !s.stuck)
                .map(|s| s.seq)
                .collect();
            debug_assert_eq!(self.live, expected, "the queue's live seqs");
        }
    }
}

/// Installs `op` in the key's slot (replacing an older operation) and returns whether the key
/// must be put on the ready list (it is neither queued nor being written).
fn install(
    st: &mut State,
    permit: OwnedSemaphorePermit,
    hash: KeyHash,
    key: Arc<[u8]>,
    op: Op,
    waiter: Option<oneshot::Sender<bool>>,
) -> bool {
    st.seq += 1;
    let seq = st.seq;
    st.bytes += permit.num_permits();
    let push_ready = match st.slots.get_mut(&hash) {
        Some(slot) => {
            if !slot.stuck {
                st.live.remove(&slot.seq);
                st.live.insert(seq);
            }
            slot.op = op;
            slot.seq = seq;
            slot.key = key;
            slot.cancelled = false;
            let old = std::mem::replace(&mut slot._permit, permit);
            st.bytes -= old.num_permits();
            // Behind a write that timed out, nothing is known to become durable: a
            // write-through waiter learns "not written" at once (its sender is dropped).
            if !slot.stuck {
                slot.waiters.extend(waiter);
            }
            let ready = !slot.queued && !slot.in_flight;
            slot.queued |= ready;
            ready
        }
        None => {
            st.live.insert(seq);
            st.slots.insert(
                hash,
                Slot {
                    key,
                    op,
                    seq,
                    queued: true,
                    in_flight: false,
                    stuck: false,
                    in_flight_seq: 0,
                    cancelled: false,
                    _permit: permit,
                    waiters: waiter.into_iter().collect(),
                },
            );
            true
        }
    };
    if push_ready {
        st.ready.push_back(hash);
    }
    st.check_live();
    push_ready
}

/// Hands the job of `hash` (just taken off the ready list) to a writer: marks its key in
/// flight. `None` if the key has no slot.
fn start(st: &mut State, hash: KeyHash) -> Option<Job> {
    let slot = st.slots.get_mut(&hash)?;
    slot.queued = false;
    slot.in_flight = true;
    slot.in_flight_seq = slot.seq;
    let job = Job {
        hash,
        key: slot.key.clone(),
        op: slot.op.clone(),
        seq: slot.seq,
    };
    st.in_flight += 1;
    Some(job)
}

/// What the queue holds, seen under its lock (see [`WriteQueue::locked`]).
pub(crate) struct QueueView<'a>(&'a State);

impl QueueView<'_> {
    /// The hot-tier version of the operation pending for `hash`, if any.
    pub(crate) fn pending_version(&self, hash: &KeyHash) -> Option<u64> {
        self.0.slots.get(hash).map(|s| s.op.version())
    }
}

/// A job handed to a writer.
#[derive(Debug)]
pub(crate) struct Job {
    pub hash: KeyHash,
    pub key: Arc<[u8]>,
    pub op: Op,
    pub seq: u64,
}

/// The queue.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    state: Mutex<State>,
    space: Arc<Semaphore>,
    capacity: usize,
    /// Wakes the writer when a slot becomes ready.
    pub(crate) ready: Notify,
    /// Wakes `clear` (`wait(None)`) and [`WriteQueue::wait_shut`] when a job completes.
    progress: Notify,
    /// Wakes `flush` (`wait(Some(_))`) when one of them is done.
    flushed: Notify,
}

impl WriteQueue {
    /// A queue holding at most `capacity_bytes` (an operation larger than that takes the
    /// whole capacity, so it waits for an empty queue but never forever).
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        let capacity = capacity_bytes.clamp(OP_OVERHEAD, u32::MAX as usize);
        WriteQueue {
            state: Mutex::new(State::default()),
            space: Arc::new(Semaphore::new(capacity)),
            capacity,
            ready: Notify::new(),
            progress: Notify::new(),
            flushed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Waits for room for an operation of `key_len` + `value_len` bytes. Nothing is changed
    /// until [`WriteQueue::commit`], so a caller dropped while waiting leaves no trace.
    /// `None` once the writer has stopped: nothing would ever make room.
    pub(crate) async fn reserve(
        &self,
        key_len: usize,
        value_len: usize,
    ) -> Option<OwnedSemaphorePermit> {
        // Fits: capacity <= u32::MAX by construction.
        let cost = (key_len + value_len + OP_OVERHEAD).min(self.capacity) as u32;
        // Fails once the writer has stopped (the semaphore is closed then).
        self.space.clone().acquire_many_owned(cost).await.ok()
    }

    /// [`WriteQueue::commit_claiming`] with no claim: the writer runs the job.
    #[cfg(test)]
    pub(crate) fn commit<R>(
        &self,
        permit: OwnedSemaphorePermit,
        hash: KeyHash,
        key: Arc<[u8]>,
        ack: bool,
        under_lock: impl FnOnce(&QueueView<'_>) -> (Op, R),
    ) -> (R, Option<Ack>) {
        let (r, rx, _) = self.commit_claiming(permit, hash, key, ack, None::<()>, under_lock);
        (r, rx)
    }

    /// Queues `op` for `key` with a permit from [`WriteQueue::reserve`], replacing an older
    /// operation for the same key. `under_lock` runs while the queue is locked, so that the
    /// caller's hot-tier change and the queued operation are ordered the same way for every
    /// key: the last commit wins in memory and on disk. With `ack`, returns a receiver that
    /// learns whether the operation (or a newer one that replaced it) reached the disk.
    ///
    /// With a write slot (`claim`), for a caller that will run the job itself: if the key is
    /// neither queued nor being written and the writer has not stopped, the job is handed
    /// back in flight (as [`WriteQueue::take`] would hand it to the writer) instead of being
    /// put on the ready list, and the writer is not woken; the caller must run it to its end
    /// (`Writer::drive`). Otherwise the slot is dropped and the job queued for the writer.
    pub(crate) fn commit_claiming<R, S>(
        &self,
        permit: OwnedSemaphorePermit,
        hash: KeyHash,
        key: Arc<[u8]>,
        ack: bool,
        claim: Option<S>,
        under_lock: impl FnOnce(&QueueView<'_>) -> (Op, R),
    ) -> (R, Option<Ack>, Option<(Job, S)>) {
        let (tx, rx) = if ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut st = self.lock();
        // The operation is made under the lock (its hot-tier version too), so that every
        // version handed out before a `flush` read the watermark is queued by then.
        let (op, r) = under_lock(&QueueView(&st));
        // After the writer stopped nothing will be written: the operation still serves reads,
        // and a write-through caller learns at once that it was not written (`tx` dropped).
        let tx = tx.filter(|_| !st.shut);
        let push_ready = install(&mut st, permit, hash, key, op, tx);
        let claimed = match claim {
            // `install` has just pushed it last on the ready list.
            Some(slot) if push_ready && !st.shut && st.ready.back() == Some(&hash) => {
                st.ready.pop_back();
                start(&mut st, hash).map(|job| (job, slot))
            }
            _ => None,
        };
        drop(st);
        if push_ready && claimed.is_none() {
            self.ready.notify_one();
        }
        (r, rx, claimed)
    }

    /// Room for an operation of `key_len` + `value_len` bytes if there is some now; never
    /// waits (a shared hit's copy for the disk is not worth backpressure on a `get`).
    #[cfg(feature = "redis")]
    pub(crate) fn try_reserve(
        &self,
        key_len: usize,
        value_len: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let cost = (key_len + value_len + OP_OVERHEAD).min(self.capacity) as u32;
        self.space.clone().try_acquire_many_owned(cost).ok()
    }

    /// Like [`WriteQueue::commit_if`], with the operation made under the lock by `make`
    /// (`None`: nothing installed, the permit released). Returns whether it was installed.
    #[cfg(feature = "redis")]
    pub(crate) fn commit_made(
        &self,
        permit: OwnedSemaphorePermit,
        hash: KeyHash,
        key: Arc<[u8]>,
        make: impl FnOnce(&QueueView<'_>) -> Option<Op>,
    ) -> bool {
        let mut st = self.lock();
        let Some(op) = make(&QueueView(&st)) else {
            return false;
        };
        let push_ready = install(&mut st, permit, hash, key, op, None);
        drop(st);
        if push_ready {
            self.ready.notify_one();
        }
        true
    }

    /// Like [`WriteQueue::commit`], but installs the operation only if `cond` holds under the
    /// lock (write-back: only if the hot tier still holds that dirty version). Returns whether
    /// it was installed; the permit is released otherwise.
    pub(crate) fn commit_if(
        &self,
        permit: OwnedSemaphorePermit,
        hash: KeyHash,
        key: Arc<[u8]>,
        op: Op,
        cond: impl FnOnce(&QueueView<'_>) -> bool,
    ) -> bool {
        let mut st = self.lock();
        if !cond(&QueueView(&st)) {
            return false;
        }
        let push_ready = install(&mut st, permit, hash, key, op, None);
        drop(st);
        if push_ready {
            self.ready.notify_one();
        }
        true
    }

    /// Runs `f` with the queue locked, without queueing anything (memory-only mode, promotions,
    /// budget changes), so that it is ordered with every commit and can decide from what the
    /// queue holds at that instant.
    pub(crate) fn locked<R>(&self, f: impl FnOnce(&QueueView<'_>) -> R) -> R {
        let st = self.lock();
        f(&QueueView(&st))
    }

    /// Marks an in-flight job as stuck (its disk call timed out and may never return): `flush`
    /// and `clear` stop waiting for it, and for a newer operation of the key queued behind it
    /// (which still waits for it to return before it is written).
    ///
    /// Its write-through waiters (those of a newer operation queued behind it too) are told
    /// "not written" now: a disk that does not answer cannot hang `set`, and the write is not
    /// known to be durable. The value is still served from memory.
    pub(crate) fn mark_stuck(&self, hash: &KeyHash, seq: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(slot) = st.slots.get_mut(hash) {
            if slot.in_flight && slot.in_flight_seq == seq && !slot.stuck {
                slot.stuck = true;
                st.live.remove(&slot.seq);
                // Dropped senders: the receivers learn "not written".
                slot.waiters.clear();
            }
        }
        st.check_live();
        self.wake(guard);
    }

    /// Wakes `clear` and [`WriteQueue::wait_shut`] (at every change), and the `flush` calls
    /// once one is done; takes the lock guard to release it first.
    fn wake(&self, st: impl std::ops::Deref<Target = State>) {
        let flush_due = st.flush_due();
        drop(st);
        if flush_due {
            self.flushed.notify_waiters();
        }
        self.progress.notify_waiters();
    }

    #[cfg(test)]
    async fn push(&self, hash: KeyHash, key: Arc<[u8]>, op: Op, ack: bool) -> Option<Ack> {
        let len = match &op {
            Op::Put { value, .. } => value.len(),
            Op::Delete { .. } | Op::Purge { .. } => 0,
        };
        let permit = self.reserve(key.len(), len).await?;
        self.commit(permit, hash, key, ack, |_| (op, ())).1
    }

    /// The pending operation for a key, if any (for reads).
    pub(crate) fn lookup(&self, hash: &KeyHash) -> Option<Op> {
        self.lock()
            .slots
            .get(hash)
            .filter(|s| !s.cancelled)
            .map(|s| s.op.clone())
    }

    /// Takes the next ready job, marking its key in flight.
    pub(crate) fn take(&self) -> Option<Job> {
        let mut st = self.lock();
        while let Some(hash) = st.ready.pop_front() {
            if let Some(job) = start(&mut st, hash) {
                return Some(job);
            }
        }
        None
    }

    /// Records that the job `seq` for `hash` finished. If a newer operation arrived
    /// meanwhile, the key is queued again and its waiters keep waiting for it; the first value
    /// returned is then `true` (the finished job was superseded). Otherwise the slot is removed
    /// and its write-through waiters are returned, for the caller to tell once the outcome has
    /// been accounted for (dropping them tells them "not written").
    pub(crate) fn complete(&self, hash: &KeyHash, seq: u64) -> (bool, Vec<oneshot::Sender<bool>>) {
        self.complete_then(hash, seq, |_| ())
    }

    /// [`WriteQueue::complete`], running `before_release(superseded)` under the queue lock
    /// before the slot is released, so that what the caller records (a lost write) is in place
    /// before a reader can find the slot gone.
    pub(crate) fn complete_then(
        &self,
        hash: &KeyHash,
        seq: u64,
        before_release: impl FnOnce(bool),
    ) -> (bool, Vec<oneshot::Sender<bool>>) {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.in_flight = st.in_flight.saturating_sub(1);
        let shut = st.shut;
        let (requeue, cancelled) = match st.slots.get_mut(hash) {
            Some(slot) if slot.cancelled => (false, true),
            // No writer any more: the newer operation stays readable in its slot, and its
            // write-through waiters are told now that it will not be written.
            Some(slot) if slot.seq != seq && shut => {
                slot.in_flight = false;
                if std::mem::take(&mut slot.stuck) {
                    st.live.insert(slot.seq);
                }
                // Dropped senders: the receivers learn "not written".
                slot.waiters.clear();
                before_release(true);
                st.check_live();
                self.wake(guard);
                return (true, Vec::new());
            }
            Some(slot) if slot.seq != seq => {
                slot.in_flight = false;
                if std::mem::take(&mut slot.stuck) {
                    st.live.insert(slot.seq);
                }
                slot.queued = true;
                (true, false)
            }
            _ => (false, false),
        };
        before_release(requeue || cancelled);
        let mut waiters = Vec::new();
        if requeue {
            st.ready.push_back(*hash);
        } else if let Some(slot) = st.slots.remove(hash) {
            if !slot.stuck {
                st.live.remove(&slot.seq);
            }
            st.bytes -= slot._permit.num_permits();
            waiters = slot.waiters;
        }
        st.check_live();
        self.wake(guard);
        if requeue {
            self.ready.notify_one();
        }
        // A cancelled slot was superseded by `clear`.
        (requeue || cancelled, waiters)
    }

    /// Drops every operation not yet handed to a writer (for `clear`). An operation waiting
    /// behind a write in flight is cancelled too: that write finishes (and `clear` waits for
    /// it), then the slot is removed instead of queued again. Returns the write-through waiters
    /// of the dropped operations (those behind a write in flight included, which would
    /// otherwise hear that older write's outcome), for `clear` to tell once its fence is on
    /// disk: until then a restart serves the key's older file, so "superseded by the clear" is
    /// not yet true there. Dropping them tells them "not written".
    pub(crate) fn cancel_queued(&self) -> Vec<oneshot::Sender<bool>> {
        let mut st = self.lock();
        let mut waiters = Vec::new();
        for slot in st.slots.values_mut().filter(|s| s.in_flight) {
            slot.cancelled = true;
            if slot.seq != slot.in_flight_seq {
                // They wait for the newer operation, which the clear drops.
                waiters.append(&mut slot.waiters);
            }
        }
        let doomed: Vec<KeyHash> = st
            .slots
            .iter()
            .filter(|(_, s)| !s.in_flight)
            .map(|(h, _)| *h)
            .collect();
        for h in &doomed {
            if let Some(slot) = st.slots.remove(h) {
                if !slot.stuck {
                    st.live.remove(&slot.seq);
                }
                st.bytes -= slot._permit.num_permits();
                waiters.extend(slot.waiters);
            }
        }
        st.ready.clear();
        st.check_live();
        self.wake(st);
        waiters
    }

    /// Called by the writer when it is about to stop: if nothing is ready, marks the queue shut
    /// and returns `true`; otherwise returns `false` (the writer must take those jobs first).
    /// Once shut, `reserve` fails, `wait` returns at once and write-through acks are not
    /// waited for, so that nothing (a caller, or a recovery probe racing `close`) can wait
    /// for a writer that is gone.
    pub(crate) fn shut_if_idle(&self) -> bool {
        let mut st = self.lock();
        if !st.ready.is_empty() {
            return false;
        }
        // Idle: every remaining slot is in flight (a write that timed out and has not
        // returned). When it returns, `complete` does not queue a newer operation again.
        st.shut = true;
        self.space.close();
        self.wake(st);
        true
    }

    /// Waits until the writer has stopped ([`WriteQueue::shut_if_idle`]).
    pub(crate) async fn wait_shut(&self) {
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().shut {
                return;
            }
            notified.await;
        }
    }

    /// The current sequence number: every operation queued so far has `seq <=` this.
    pub(crate) fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Waits until no operation with `seq <= upto` remains (when `upto` is `None`: until
    /// nothing is in flight). Neither waits for a stuck slot (a write that timed out and may
    /// never return, and anything queued behind it).
    pub(crate) async fn wait(&self, upto: Option<u64>) {
        match upto {
            Some(u) => self.wait_flushed(u).await,
            None => loop {
                let notified = self.progress.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let st = self.lock();
                    // Writes in flight still finish once shut, so `clear` keeps waiting.
                    if !st.slots.values().any(|s| s.in_flight && !s.stuck) {
                        return;
                    }
                }
                notified.await;
            },
        }
    }

    /// `wait(Some(upto))`: registered in `flushes` while it waits, so that it is woken once
    /// it is done rather than at every completion (a drain of n entries would wake it n
    /// times, each a look at the queue, on a core the writer needs).
    async fn wait_flushed(&self, upto: u64) {
        /// Takes the registration back however the call ends (done, or its future dropped).
        struct Registered<'a>(&'a WriteQueue, u64);
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                if let Some(n) = st.flushes.get_mut(&self.1) {
                    *n -= 1;
                    if *n == 0 {
                        st.flushes.remove(&self.1);
                    }
                }
            }
        }
        let mut registered = None;
        loop {
            let notified = self.flushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                // Once shut, operations still queued will never be written: `flush` stops
                // waiting.
                if st.flushed(upto) {
                    return;
                }
                // Once: a second guard, dropped, would take the registration back.
                if registered.is_none() {
                    *st.flushes.entry(upto).or_insert(0) += 1;
                    registered = Some(Registered(self, upto));
                }
            }
            notified.await;
        }
    }

    /// Keys whose operation with `seq <= upto` is held up by a write that timed out.
    pub(crate) fn stuck_upto(&self, upto: u64) -> HashSet<KeyHash> {
        self.lock()
            .slots
            .iter()
            .filter(|(_, s)| s.stuck && s.seq <= upto)
            .map(|(h, _)| *h)
            .collect()
    }

    /// Keys whose pending operation, a write or a delete, carries a hot-tier version below
    /// `before`: not on disk yet. Not purges (their keys are counted as lost) nor operations
    /// a `clear` cancelled (it supersedes them).
    pub(crate) fn pending_below(&self, before: u64) -> HashSet<KeyHash> {
        self.lock()
            .slots
            .iter()
            .filter(|(_, s)| {
                !s.cancelled && !matches!(s.op, Op::Purge { .. }) && s.op.version() < before
            })
            .map(|(h, _)| *h)
            .collect()
    }

    /// (operations waiting, bytes waiting).
    pub(crate) fn depth(&self) -> (u64, u64) {
        let st = self.lock();
        (st.slots.len() as u64, st.bytes as u64)
    }

    /// Is anything waiting to be handed to a writer?
    pub(crate) fn has_ready(&self) -> bool {
        !self.lock().ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::Ordering;

    fn put(v: u8) -> Op {
        Op::Put {
            value: vec![v; 10].into(),
            meta: EntryMeta::default(),
            version: u64::from(v),
            encoded: None,
        }
    }

    fn val(op: &Op) -> Option<u8> {
        match op {
            Op::Put { value, .. } => Some(value[0]),
            Op::Delete { .. } | Op::Purge { .. } => None,
        }
    }

    #[tokio::test]
    async fn newer_ops_replace_older_ones_and_land_last() {
        let q = WriteQueue::new(1 << 20);
        let h = [1u8; 32];
        let k: Arc<[u8]> = b"k".as_slice().into();
        q.push(h, k.clone(), put(1), false).await;
        q.push(h, k.clone(), put(2), false).await;
        assert_eq!(q.depth().0, 1);
        let job = q.take().unwrap();
        assert_eq!(val(&job.op), Some(2));
        // A newer op while the write is in flight: not handed out twice...
        q.push(h, k.clone(), Op::Delete { version: 9 }, false).await;
        assert!(q.take().is_none());
        assert!(matches!(q.lookup(&h), Some(Op::Delete { .. })));
        // ...but queued again when the older write completes.
        assert!(q.complete(&h, job.seq).0);
        let job2 = q.take().unwrap();
        assert!(matches!(job2.op, Op::Delete { .. }));
        assert!(!q.complete(&h, job2.seq).0);
        assert_eq!(q.depth(), (0, 0));
        assert!(q.lookup(&h).is_none());
    }

    /// A claim takes the job in flight when the key is idle (no ready entry, the writer not
    /// woken); behind a write in flight, or once shut, the claim is refused and the job
    /// queued (or not) exactly as without one.
    #[tokio::test]
    async fn a_claim_takes_an_idle_keys_job_and_nothing_else() {
        let q = WriteQueue::new(1 << 20);
        let (h, other) = ([7u8; 32], [8u8; 32]);
        let k: Arc<[u8]> = b"k".as_slice().into();
        // An older job of another key is ready: the claim does not take it.
        q.push(other, k.clone(), put(9), false).await;
        let permit = q.reserve(1, 1).await.unwrap();
        let (_, ack, claimed) =
            q.commit_claiming(permit, h, k.clone(), true, Some("slot"), |_| (put(1), ()));
        let (job, slot) = claimed.expect("an idle key's job is claimed");
        assert_eq!((job.hash, val(&job.op), slot), (h, Some(1), "slot"));
        assert_eq!(q.lock().in_flight, 1);
        assert!(q.lock().slots[&h].in_flight);
        // Only the other key's job is ready: the claimed one is never handed out twice.
        let next = q.take().unwrap();
        assert_eq!(next.hash, other);
        assert!(q.take().is_none());
        // A newer op of the claimed key waits behind it: its claim is refused.
        let permit = q.reserve(1, 1).await.unwrap();
        let (_, newer, refused) =
            q.commit_claiming(permit, h, k.clone(), true, Some("slot"), |_| (put(2), ()));
        assert!(refused.is_none());
        assert!(q.take().is_none(), "behind the write in flight, not ready");
        // Its completion queues the newer op for the writer; both waiters learn its outcome.
        let (superseded, waiters) = q.complete(&h, job.seq);
        assert!(superseded && waiters.is_empty());
        let job2 = q.take().unwrap();
        assert_eq!(val(&job2.op), Some(2));
        let (_, waiters) = q.complete(&h, job2.seq);
        assert_eq!(waiters.len(), 2);
        for w in waiters {
            w.send(true).unwrap();
        }
        assert!(ack.unwrap().await.unwrap() && newer.unwrap().await.unwrap());
        q.complete(&other, next.seq);
        // Once shut, a claim is refused: nothing runs a job after the writer stopped.
        assert!(q.shut_if_idle());
        let late = WriteQueue::new(1 << 20);
        let permit = late.reserve(1, 1).await.unwrap();
        assert!(late.shut_if_idle());
        let (_, ack, claimed) =
            late.commit_claiming(permit, h, k.clone(), true, Some(()), |_| (put(3), ()));
        assert!(claimed.is_none());
        assert!(ack.unwrap().await.is_err(), "told at once: not written");
        assert_eq!(late.lock().in_flight, 0);
    }

    #[tokio::test]
    async fn waiters_learn_the_outcome_of_the_op_that_superseded_theirs() {
        let q = WriteQueue::new(1 << 20);
        let h = [2u8; 32];
        let k: Arc<[u8]> = b"k".as_slice().into();
        let a = q.push(h, k.clone(), put(1), true).await.unwrap();
        let b = q.push(h, k.clone(), put(2), true).await.unwrap();
        let job = q.take().unwrap();
        let (superseded, waiters) = q.complete(&h, job.seq);
        assert!(!superseded);
        assert_eq!(waiters.len(), 2);
        for w in waiters {
            w.send(false).unwrap();
        }
        assert!(!a.await.unwrap());
        assert!(!b.await.unwrap());
    }

    /// `clear` tells the waiters of what it drops itself, once its fence is on disk: they
    /// are handed back, not told anything here. An operation that is itself in flight keeps
    /// its waiters: they learn its own outcome.
    #[tokio::test]
    async fn cancel_hands_back_the_waiters_of_what_it_drops() {
        let q = WriteQueue::new(1 << 20);
        let k: Arc<[u8]> = b"k".as_slice().into();
        let (queued, behind, alone) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        // Two keys in flight.
        q.push(behind, k.clone(), put(2), false).await;
        q.push(alone, k.clone(), put(3), false).await;
        let jobs: Vec<Job> = std::iter::from_fn(|| q.take()).collect();
        let behind_job = jobs.iter().find(|j| j.hash == behind).unwrap();
        let alone_job = jobs.iter().find(|j| j.hash == alone).unwrap();
        // `alone`: its newest operation is the one in flight, with a waiter.
        let alone_ack = q.push(alone, k.clone(), put(5), true).await.unwrap();
        assert!(q.complete(&alone, alone_job.seq).0);
        let alone_job = q.take().unwrap();
        assert_eq!(alone_job.hash, alone);
        // `behind`: a newer operation waits behind its write.
        let mut behind_ack = q.push(behind, k.clone(), put(4), true).await.unwrap();
        // `queued`: not handed to a writer yet.
        let mut queued_ack = q.push(queued, k.clone(), put(1), true).await.unwrap();
        let waiters = q.cancel_queued();
        assert_eq!(
            waiters.len(),
            2,
            "the queued op's and the one behind a write"
        );
        assert!(queued_ack.try_recv().is_err() && behind_ack.try_recv().is_err());
        assert!(q.lookup(&queued).is_none() && q.lookup(&behind).is_none());
        // The write in flight under `behind` completes: it tells nobody, and is not requeued.
        let (superseded, told) = q.complete(&behind, behind_job.seq);
        assert!(superseded && told.is_empty());
        let (_, told) = q.complete(&alone, alone_job.seq);
        assert_eq!(told.len(), 1, "an op in flight keeps its own waiters");
        for w in told {
            w.send(true).unwrap();
        }
        assert!(alone_ack.await.unwrap());
        for w in waiters {
            w.send(true).unwrap();
        }
        assert!(queued_ack.await.unwrap() && behind_ack.await.unwrap());
        assert_eq!(q.depth(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn once_shut_nothing_waits_for_the_writer() {
        let q = Arc::new(WriteQueue::new(2 * (10 + 1 + OP_OVERHEAD)));
        let k: Arc<[u8]> = b"k".as_slice().into();
        q.push([1; 32], k.clone(), put(1), false).await;
        // Not idle: a ready job must be taken first.
        assert!(!q.shut_if_idle());
        let job = q.take().unwrap();
        q.complete(&job.hash, job.seq);
        // A permit granted before the writer stops, committed after it stopped.
        let late = q.reserve(1, 10).await.unwrap();
        // Backpressure: the queue is full, a `set` waits for room.
        q.push([2; 32], k.clone(), put(2), false).await;
        let q2 = q.clone();
        let blocked = tokio::spawn(async move { q2.reserve(1, 10).await.is_some() });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());
        let job = q.take().unwrap();
        let upto = q.seq();
        assert!(q.shut_if_idle());
        // The waiter for room is told there will be none, instead of waiting forever.
        assert!(!blocked.await.unwrap());
        assert!(q.reserve(1, 0).await.is_none());
        // A write-through ack for an operation committed now resolves at once: not written.
        let (_, ack) = q.commit(late, [3; 32], k.clone(), true, |_| (put(3), ()));
        assert!(ack.unwrap().await.is_err());
        assert!(matches!(
            q.lookup(&[3; 32]),
            Some(Op::Put { version: 3, .. })
        ));
        // `flush` stops waiting although a job is still in flight...
        assert_eq!(q.lock().in_flight, 1);
        q.wait(Some(upto)).await;
        // ...but `clear` waits for writes in flight: they can still land.
        let q2 = q.clone();
        let clear = tokio::spawn(async move { q2.wait(None).await });
        tokio::task::yield_now().await;
        assert!(!clear.is_finished());
        q.complete(&job.hash, job.seq);
        clear.await.unwrap();
    }

    #[tokio::test]
    async fn once_shut_a_newer_op_behind_a_write_in_flight_is_not_queued_again() {
        let q = WriteQueue::new(1 << 20);
        let h = [5u8; 32];
        let k: Arc<[u8]> = b"k".as_slice().into();
        q.push(h, k.clone(), put(1), false).await;
        let job = q.take().unwrap();
        let newer = q.push(h, k.clone(), put(2), true).await.unwrap();
        // The newer operation waits behind the write in flight, not on the ready list.
        assert!(q.shut_if_idle());
        let (superseded, waiters) = q.complete(&h, job.seq);
        assert!(superseded);
        assert!(waiters.is_empty());
        assert!(newer.await.is_err(), "told at once: not written");
        assert!(q.take().is_none(), "no writer: not queued again");
        assert!(matches!(q.lookup(&h), Some(Op::Put { version: 2, .. })));
        assert_eq!(q.lock().in_flight, 0);
        q.wait(None).await;
    }

    #[tokio::test(start_paused = true)]
    async fn backpressure_waits_for_room() {
        let q = Arc::new(WriteQueue::new(2 * (10 + 1 + OP_OVERHEAD)));
        let k: Arc<[u8]> = b"k".as_slice().into();
        q.push([1; 32], k.clone(), put(1), false).await;
        q.push([2; 32], k.clone(), put(2), false).await;
        let q2 = q.clone();
        let k2 = k.clone();
        let third = tokio::spawn(async move { q2.push([3; 32], k2, put(3), false).await });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!third.is_finished());
        assert_eq!(q.depth().0, 2);
        let job = q.take().unwrap();
        q.complete(&job.hash, job.seq);
        third.await.unwrap();
        assert_eq!(q.depth().0, 2);
    }

    /// A `flush` of a drain is woken once it is done, not at every job (the drain bench's
    /// caller took a wake-up and a scan of every slot per entry).
    #[tokio::test]
    async fn a_flush_is_woken_once_when_its_drain_is_done_not_per_job() {
        let q = Arc::new(WriteQueue::new(1 << 20));
        let k: Arc<[u8]> = b"k".as_slice().into();
        for i in 0..100u8 {
            q.push([i; 32], k.clone(), put(i), false).await;
        }
        let upto = q.seq();
        // A later operation the flush must not wait for.
        q.push([200; 32], k.clone(), put(200), false).await;
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (q2, p2) = (q.clone(), polls.clone());
        let waiter = tokio::spawn(async move {
            let mut wait = Box::pin(q2.wait(Some(upto)));
            std::future::poll_fn(|cx| {
                p2.fetch_add(1, Ordering::SeqCst);
                wait.as_mut().poll(cx)
            })
            .await
        });
        tokio::task::yield_now().await;
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        let jobs: Vec<Job> = std::iter::from_fn(|| q.take()).collect();
        assert_eq!(jobs.len(), 101);
        for job in &jobs[..99] {
            q.complete(&job.hash, job.seq);
            tokio::task::yield_now().await;
        }
        assert_eq!(
            (polls.load(Ordering::SeqCst), waiter.is_finished()),
            (1, false),
            "99 of 100 done: not woken"
        );
        q.complete(&jobs[99].hash, jobs[99].seq);
        waiter.await.unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), 2, "woken once, done");
        assert_eq!(q.lock().flushes.len(), 0, "registration taken back");
        // A flush dropped while it waits takes its registration back too.
        let upto = q.seq();
        let mut dropped = Box::pin(q.wait(Some(upto)));
        assert!(futures_poll_once(dropped.as_mut()).is_pending());
        assert_eq!(q.lock().flushes.get(&upto), Some(&1));
        drop(dropped);
        assert_eq!(q.lock().flushes.len(), 0);
    }

    /// Two flushes: the earlier one's completion wakes both; the later one, not done, waits
    /// on and is woken when its own operations are written (a first version took its
    /// registration back on that wake-up and waited forever: `promises::flush_is_ok_...`
    /// hung in 10 of 40 runs).
    #[tokio::test]
    async fn a_flush_woken_before_it_is_done_is_woken_again_when_it_is() {
        let q = Arc::new(WriteQueue::new(1 << 20));
        let k: Arc<[u8]> = b"k".as_slice().into();
        q.push([1; 32], k.clone(), put(1), false).await;
        let first_upto = q.seq();
        q.push([2; 32], k.clone(), put(2), false).await;
        let second_upto = q.seq();
        let (q1, q2) = (q.clone(), q.clone());
        let first = tokio::spawn(async move { q1.wait(Some(first_upto)).await });
        let second = tokio::spawn(async move { q2.wait(Some(second_upto)).await });
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let (a, b) = (q.take().unwrap(), q.take().unwrap());
        q.complete(&a.hash, a.seq);
        first.await.unwrap();
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished());
        assert_eq!(
            q.lock().flushes.get(&second_upto),
            Some(&1),
            "still registered"
        );
        q.complete(&b.hash, b.seq);
        tokio::time::timeout(std::time::Duration::from_secs(10), second)
            .await
            .expect("the second flush is woken")
            .unwrap();
    }

    /// Polls `f` once with a no-op waker.
    fn futures_poll_once<F: std::future::Future + ?Sized>(
        f: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx)
    }

    /// A stuck write stops counting for `flush` the moment it is marked, and a newer operation
    /// queued behind it counts again once it returns (the flush after that waits for it).
    #[tokio::test]
    async fn a_stuck_slot_leaves_and_rejoins_what_flush_waits_for() {
        let q = Arc::new(WriteQueue::new(1 << 20));
        let (h, k): (KeyHash, Arc<[u8]>) = ([9; 32], b"k".as_slice().into());
        q.push(h, k.clone(), put(1), false).await;
        let job = q.take().unwrap();
        let upto = q.seq();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.wait(Some(upto)).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.mark_stuck(&h, job.seq);
        waiter.await.unwrap();
        // Behind the stuck write: not waited for while it is stuck.
        q.push(h, k.clone(), put(2), false).await;
        q.wait(Some(q.seq())).await;
        // The stuck write returns: the newer operation is queued and waited for again.
        assert!(q.complete(&h, job.seq).0);
        let upto = q.seq();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.wait(Some(upto)).await });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "the newer operation is not written yet"
        );
        let job = q.take().unwrap();
        assert_eq!(val(&job.op), Some(2));
        q.complete(&h, job.seq);
        waiter.await.unwrap();
        assert_eq!((q.depth(), q.lock().live.len()), ((0, 0), 0));
    }

    #[tokio::test]
    async fn flush_waits_for_ops_up_to_a_seq() {
        let q = Arc::new(WriteQueue::new(1 << 20));
        let k: Arc<[u8]> = b"k".as_slice().into();
        q.push([1; 32], k.clone(), put(1), false).await;
        let upto = q.seq();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.wait(Some(upto)).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let job = q.take().unwrap();
        q.complete(&job.hash, job.seq);
        waiter.await.unwrap();
    }
}
