//! The shared tier's gate: the store behind its own breaker and timeout, the write queue, and
//! the counters. Everything the cache asks of Redis goes through here, and nothing here can
//! fail or block a caller: a call the breaker refuses, or that fails or times out, is a miss
//! (or a dropped write), counted.
//!
//! What counts as a failure (feeds the breaker): timeouts, I/O, auth, a server that is not
//! ready, protocol errors. What does not: nil (a miss), `OOM` on a write (the server answered
//! and reads still work: counted, one warning per episode), corrupt values (a data problem:
//! deleted and counted), entries skipped for size.
//!
//! The breaker is the crate's [`CircuitBreaker`] in a second instance, made quiet so that its
//! transitions are logged here under `answercache::shared`, one event each. Only the probe
//! task (`tasks.rs`) is admitted while half-open, with a `PING`; user traffic is admitted
//! only while Closed. The tier starts Open, and the first `PING` closes it: `build()` never
//! waits for Redis.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::config::SharedConfig;
use super::entry::{self, Checked};
use super::queue::{PendingDels, Queued, SharedOp, SharedQueue};
use super::store::{BoxFut, Failure, Found, SharedStore, StoreError, WriteOp};
use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit, Transition};
use crate::clock::Clock;
use crate::stats::{Counters, SharedDrop, SharedErrorKind};
use crate::sync::lock;
use crate::warm::encoded::EncodedEntry;
use crate::warm::format::{self, Decoded, EntryMeta, Limits};
use crate::warm::layout::KeyHash;

/// Log target of the shared tier's events.
pub(crate) const TARGET: &str = "answercache::shared";
/// Most commands per pipelined batch.
pub(crate) const BATCH_OPS: usize = 64;
/// Most bytes per pipelined batch (the first operation is always taken).
pub(crate) const BATCH_BYTES: usize = 256 << 10;
/// Entries above this are verified (inflated) on the blocking pool, not on the caller's
/// thread.
const INLINE_VERIFY_BYTES: usize = 64 << 10;
/// How far ahead of this replica's clock a shared entry's `created_ms` may be (another
/// replica's clock running ahead). Further ahead, the entry is a miss here (counted in
/// `shared_misses`, not deleted: it may be valid for its writer): a local `clear` compares
/// creation times with this replica's clock, and an entry dated in the future would pass it.
pub(crate) const MAX_CLOCK_AHEAD_MS: u64 = 60_000;
/// What became of a namespace generation written to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// The server holds it.
    Written,
    /// The server holds another replica's generation (`Some`), or nothing where nothing may
    /// be replaced (`None`): not written, and no longer worth writing (a fresh generation
    /// must replace it).
    Superseded(Option<u64>),
    /// The call failed or was not admitted: still pending.
    Failed,
}

/// What one [`SharedTier::retry_pending`] did.
#[derive(Debug, Default)]
pub(crate) struct Retried {
    /// Generations the server took: their markers can go.
    pub written: Vec<(String, u64)>,
    /// Generations the server holds something else in place of: (name, generation, what it
    /// holds).
    pub superseded: Vec<(String, u64, Option<u64>)>,
}

/// How much of a corrupt value the clean-up compares (with its length, when it was read
/// whole) before it deletes it.
const DEL_IF_PREFIX: usize = 4096;
/// Most namespace generations remembered as retired, per namespace.
pub(crate) const RETIRED_GENERATIONS: usize = 64;

/// The shared tier of one open cache (see the module docs).
pub(crate) struct SharedTier {
    store: Arc<dyn SharedStore>,
    pub(crate) config: SharedConfig,
    breaker: Mutex<CircuitBreaker>,
    counters: Arc<Counters>,
    pub(crate) queue: SharedQueue,
    limits: Limits,
    compression_level: u32,
    clock: Arc<dyn Clock>,
    /// Wakes the probe task: the breaker changed.
    pub(crate) wake: Notify,
    /// Set by the first `OOM` of an episode (one warning), cleared by the next accepted write.
    oom_episode: AtomicBool,
    /// Held while a batch is sent: `flush` and the drain task take turns.
    sending: tokio::sync::Mutex<()>,
    /// Namespace generations drawn by `invalidate` and not yet on the server, by name.
    pending_generations: Mutex<HashMap<String, u64>>,
    /// Whether the pending-namespace markers were read (see [`SharedTier::markers_listed`]).
    markers_listed: std::sync::atomic::AtomicBool,
    /// Cross-replica single-flight is on.
    pub(crate) single_flight: bool,
    /// Removals whose `DEL` is not on the server yet (it could not be queued or sent): kept,
    /// and sent once the breaker is Closed, before the queue's next batch; until then their
    /// key's shared copy is not served here. A newer `set` of the key that is queued
    /// supersedes one. Bounded by [`PENDING_DELS_MAX`] (the oldest is dropped past it,
    /// counted in `shared_writes_dropped{queue_full}`); in memory only (documented in
    /// RELIABILITY.md).
    pending_dels: PendingDels,
    /// The keys of operations taken from the queue (or written by a lease leader) and not
    /// yet answered: they hide the key's shared copy meanwhile, as queued and kept removals
    /// do (the server holds an older value, or one being removed; a read on the other
    /// connection could otherwise get it back), and order the writes of a key (see
    /// [`Flights`]).
    flights: Mutex<Flights>,
    /// Notified when a flight ends (a write waiting for an older one of its key goes on).
    flight_done: Notify,
    /// The namespace generations this replica left (invalidated, or replaced by another
    /// replica's), the last [`RETIRED_GENERATIONS`] per name: never adopted again from the
    /// server (a rolled-back generation would bring invalidated answers back).
    retired: Mutex<HashMap<String, std::collections::VecDeque<u64>>>,
    /// Kept removals are not resent before this (set by a failed `DEL`, cleared when the
    /// breaker closes): a server that fails writes while reads pass (the breaker stays
    /// Closed) is not sent the same `DEL`s in a loop.
    dels_not_before: Mutex<Option<Instant>>,
}

/// Most removals kept in `pending_dels`.
pub(crate) const PENDING_DELS_MAX: usize = 100_000;

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier")
            .field("state", &self.state())
            .finish()
    }
}

/// A value found in the shared tier, verified.
#[derive(Debug)]
pub(crate) struct SharedHit {
    pub decoded: Decoded,
    /// The entry file read (its MAC, if any, cut off): what the disk writes when the hit is
    /// promoted, without compressing the value again.
    pub file: Vec<u8>,
}

/// A permit for one call; abandoned (frees nothing but is accounted) when dropped unreported.
struct Call<'a> {
    tier: &'a SharedTier,
    permit: Option<Permit>,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            lock(&self.tier.breaker).on_abandoned(p);
        }
    }
}

impl SharedTier {
    /// The tier over `store`, Open until the probe task's first `PING` passes.
    pub(crate) fn new(
        store: Arc<dyn SharedStore>,
        config: SharedConfig,
        single_flight: bool,
        counters: Arc<Counters>,
        limits: Limits,
        compression_level: u32,
        clock: Arc<dyn Clock>,
    ) -> SharedTier {
        let mut breaker = CircuitBreaker::new(BreakerConfig {
            failure_threshold: config.failure_threshold,
            open_timeout: config.open_timeout,
            max_open_timeout: config.max_open_timeout,
            half_open_max: 1,
        })
        .without_logging();
        // Not a transition anyone needs to hear about: the tier starts Open.
        let _ = breaker.trip(Instant::now().into_std());
        SharedTier {
            store,
            queue: SharedQueue::new(config.write_queue_bytes),
            config,
            breaker: Mutex::new(breaker),
            counters,
            limits,
            compression_level,
            clock,
            wake: Notify::new(),
            oom_episode: AtomicBool::new(false),
            sending: tokio::sync::Mutex::new(()),
            pending_generations: Mutex::default(),
            markers_listed: std::sync::atomic::AtomicBool::new(false),
            single_flight,
            pending_dels: PendingDels::new(PENDING_DELS_MAX),
            flights: Mutex::default(),
            flight_done: Notify::new(),
            retired: Mutex::default(),
            dels_not_before: Mutex::default(),
        }
    }

    /// The breaker's state now (its timer applied).
    pub(crate) fn state(&self) -> BreakerState {
        let mut b = lock(&self.breaker);
        let t = b.poll(Instant::now().into_std());
        let s = b.state();
        drop(b);
        self.record(t, None);
        s
    }

    /// The server key of an entry.
    pub(crate) fn entry_key(&self, hash: &KeyHash) -> String {
        entry::entry_key(&self.config.prefix, hash)
    }

    /// The longest value read for an entry.
    fn max_value_len(&self) -> usize {
        entry::max_value_len(self.config.max_entry_bytes, self.config.mac_key.as_ref())
    }

    /// Logs and counts a transition (one event each).
    fn record(&self, t: Option<Transition>, cause: Option<&StoreError>) {
        let Some(t) = t else { return };
        let cause = cause.map(|e| e.detail.as_str()).unwrap_or("");
        if t.to == BreakerState::Open {
            self.counters.shared.breaker_opens.inc();
            let open_timeout_ms = t
                .open_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            tracing::warn!(
                target: TARGET,
                from = %t.from,
                to = %t.to,
                open_timeout_ms,
                cause,
                "shared tier circuit breaker opened: serving from the local tiers only"
            );
        } else {
            tracing::info!(
                target: TARGET,
                from = %t.from,
                to = %t.to,
                "shared tier circuit breaker state changed"
            );
            if t.to == BreakerState::Closed {
                // The kept removals go now.
                *lock(&self.dels_not_before) = None;
                if self.pending_dels.len() > 0 {
                    self.queue.ready.notify_one();
                }
            }
        }
        self.wake.notify_one();
    }

    /// A permit for a call while Closed; `None` otherwise (counted in `shared_rejections`
    /// when `count`).
    fn admit(&self, count: bool) -> Option<Call<'_>> {
        let now = Instant::now().into_std();
        let mut b = lock(&self.breaker);
        let t = b.poll(now);
        let permit = if b.state() == BreakerState::Closed {
            b.try_acquire(now).0.ok()
        } else {
            None
        };
        drop(b);
        self.record(t, None);
        if permit.is_none() && count {
            self.counters.shared.rejections.inc();
        }
        permit.map(|p| Call {
            tier: self,
            permit: Some(p),
        })
    }

    /// Reports a call's outcome to the breaker: a failure of a kind, or a success.
    fn report(&self, mut call: Call<'_>, failure: Option<&StoreError>) {
        let Some(p) = call.permit.take() else { return };
        let now = Instant::now().into_std();
        let t = match failure {
            Some(_) => lock(&self.breaker).on_failure(p, now),
            None => lock(&self.breaker).on_success(p, now),
        };
        self.record(t, failure);
    }

    /// Runs `op` on the store within the timeout; a timeout is a failure of its kind.
    async fn timed<T>(&self, fut: BoxFut<'_, T>) -> Result<T, StoreError> {
        self.timed_until(Instant::now() + self.config.timeout, fut)
            .await
    }

    /// [`SharedTier::timed`] with the timeout ending at `deadline`.
    async fn timed_until<T>(&self, deadline: Instant, fut: BoxFut<'_, T>) -> Result<T, StoreError> {
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::failed(
                SharedErrorKind::Timeout,
                format!("no answer within {:?}", self.config.timeout),
            )),
        }
    }

    /// One admitted call, answered by `deadline` (a write's `timeout`, counted from before
    /// it waited for an older write of its keys), whose outcome for the breaker `judge`
    /// decides from its result (a pipeline whose round trip passed but whose commands failed
    /// is a failure): `None` when the breaker refused it (counted in `shared_rejections`
    /// when `count_rejection`). Round-trip failures are counted here; `judge`'s are the
    /// caller's to count.
    async fn call_judged<T>(
        &self,
        count_rejection: bool,
        deadline: Instant,
        op: impl FnOnce(&dyn SharedStore) -> BoxFut<'_, T>,
        judge: impl FnOnce(&T) -> Option<StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let call = self.admit(count_rejection)?;
        let result = self.timed_until(deadline, op(&*self.store)).await;
        match &result {
            Err(e) => {
                if let Some(kind) = e.failure() {
                    self.counters.shared.error(kind);
                    self.report(call, Some(e));
                } else {
                    self.report(call, None);
                }
            }
            Ok(v) => {
                let failed = judge(v);
                self.report(call, failed.as_ref());
            }
        }
        Some(result)
    }

    /// One admitted call within the timeout: `None` when the breaker refused it; failures
    /// counted and reported.
    async fn call<T>(
        &self,
        count_rejection: bool,
        op: impl FnOnce(&dyn SharedStore) -> BoxFut<'_, T>,
    ) -> Option<Result<T, StoreError>> {
        let deadline = Instant::now() + self.config.timeout;
        self.call_judged(count_rejection, deadline, op, |_| None)
            .await
    }

    /// Reads the entry of `key` (already known not to be found locally). `None` on a miss,
    /// counted (a rejection, error, absence, corrupt or newer value, an expired entry, or one
    /// created more than [`MAX_CLOCK_AHEAD_MS`] ahead of this replica's clock); a
    /// hit is counted by the caller once it decided to serve it ([`SharedTier::count_miss`]
    /// otherwise). A corrupt value is deleted on the server, in the background.
    pub(crate) async fn read(self: &Arc<Self>, key: &[u8], hash: &KeyHash) -> Option<SharedHit> {
        let ekey = self.entry_key(hash);
        let max = self.max_value_len();
        let started = Instant::now();
        let bytes = match self.call(true, |s| s.get(&ekey, max)).await? {
            Ok(Some(b)) => b,
            Err(e) if e.kind == Failure::WrongType => {
                // Not a string: the shared analogue of a directory at an entry path.
                self.counters
                    .shared
                    .corruption(crate::warm::format::Corruption::NotARegularFile);
                self.count_miss();
                self.delete_corrupt(ekey, Found::NotAString, started).await;
                return None;
            }
            Ok(None) | Err(_) => {
                self.count_miss();
                return None;
            }
        };
        self.counters.shared.bytes_in.add(bytes.len() as u64);
        let (checked, bytes) = if bytes.len() <= INLINE_VERIFY_BYTES {
            let checked =
                entry::check(&bytes, key, max, self.config.mac_key.as_ref(), &self.limits);
            (checked, bytes)
        } else {
            let (key, mac, limits) = (key.to_vec(), self.config.mac_key, self.limits);
            tokio::task::spawn_blocking(move || {
                let checked = entry::check(&bytes, &key, max, mac.as_ref(), &limits);
                (checked, bytes)
            })
            .await
            .unwrap_or((Checked::Newer, Vec::new()))
        };
        let now = self.clock.now_ms();
        match checked {
            Checked::Entry(d)
                if !d.meta.is_expired(now)
                    && d.meta.created_ms <= now.saturating_add(MAX_CLOCK_AHEAD_MS) =>
            {
                let mut file = bytes;
                if self.config.mac_key.is_some() {
                    file.truncate(file.len().saturating_sub(entry::MAC_LEN));
                }
                Some(SharedHit { decoded: d, file })
            }
            Checked::Entry(_) | Checked::Newer => {
                self.count_miss();
                None
            }
            Checked::Corrupt(reason) => {
                self.counters.shared.corruption(reason);
                self.count_miss();
                // What the clean-up compares before it deletes.
                let found = Found::Bytes {
                    prefix: bytes[..bytes.len().min(DEL_IF_PREFIX)].to_vec(),
                    len: (bytes.len() <= max).then_some(bytes.len()),
                };
                self.delete_corrupt(ekey, found, started).await;
                None
            }
        }
    }

    /// Deletes a corrupt or foreign value found at `ekey`, while the key still holds it
    /// (`found`): the next read of the key does not meet it again, and a valid value another
    /// replica wrote since stays. Waited for while the read that found it (begun at
    /// `started`) is within its timeout, so that a read is bounded by one timeout; the rest
    /// goes on in the background.
    async fn delete_corrupt(self: &Arc<Self>, ekey: String, found: Found, started: Instant) {
        let tier = self.clone();
        let del = tokio::spawn(async move {
            let _ = tier.call(false, |s| s.del_if(&ekey, found)).await;
        });
        let left = self.config.timeout.saturating_sub(started.elapsed());
        let _ = tokio::time::timeout(left, del).await;
    }

    /// Counts a shared read that found nothing usable.
    pub(crate) fn count_miss(&self) {
        self.counters.shared.misses.inc();
    }

    /// Queues `value` to be shared (a local `set` or load). Never waits.
    pub(crate) fn share(
        &self,
        hash: KeyHash,
        key: &[u8],
        value: Arc<[u8]>,
        meta: EntryMeta,
        encoded: Option<Arc<EncodedEntry>>,
    ) {
        self.push(
            hash,
            key,
            SharedOp::Put {
                value,
                meta,
                del_first: false,
                encoded,
            },
        );
    }

    /// Queues a `DEL` of `key`'s shared entry (a local `remove`). Never waits.
    pub(crate) fn unshare(&self, hash: KeyHash, key: &[u8]) {
        self.push(hash, key, SharedOp::Del);
    }

    fn push(&self, hash: KeyHash, key: &[u8], op: SharedOp) {
        if !entry::shareable(key) {
            return;
        }
        let del = matches!(op, SharedOp::Del);
        let mut op = op;
        if let SharedOp::Put { del_first, .. } = &mut op {
            // A kept removal it supersedes is sent first, with it.
            *del_first |= self.pending_dels.contains(&hash);
        }
        let dropped = if self.state() != BreakerState::Closed {
            // Best effort for values: nothing is held for later (no write-back after an
            // outage), and an older queued value of the key goes too. But the shared copy a
            // value supersedes must not outlive it (it would be served, here once the local
            // copy expired, and on every other replica): a removal is kept, as for a
            // `remove`, and sent once the breaker closes (not counted as a write: the value
            // is counted dropped). A queued removal of the key stays counted.
            let queued = self.queue.supersede(&hash);
            let counted = del
                || matches!(
                    queued,
                    Some(
                        SharedOp::Del
                            | SharedOp::Put {
                                del_first: true,
                                ..
                            }
                    )
                );
            self.keep_removal(hash, counted);
            (!del).then_some(SharedDrop::BreakerOpen)
        } else if self.queue.push(hash, key, op).is_err() {
            // The same for a value that did not fit (an older queued operation of the key
            // stays queued).
            self.keep_removal(hash, del);
            (!del).then_some(SharedDrop::QueueFull)
        } else {
            if !del {
                // Queued after any write of the key in flight: it supersedes a kept removal.
                self.pending_dels.remove(&hash);
            }
            None
        };
        if let Some(why) = dropped {
            self.counters.shared.dropped(why, 1);
        }
    }

    /// A `DEL` failed: kept removals wait `open_timeout` (or the breaker's next closing)
    /// before they are sent again.
    fn defer_dels(&self) {
        let at = Instant::now().checked_add(self.config.open_timeout);
        *lock(&self.dels_not_before) = at;
    }

    /// When kept removals may be sent again, if they are waiting for that.
    pub(crate) fn dels_deferred_until(&self) -> Option<Instant> {
        let at = *lock(&self.dels_not_before);
        at.filter(|&t| t > Instant::now() && self.pending_dels.len() > 0)
    }

    /// Keeps a removal whose `DEL` could not be queued or sent (see `pending_dels`) of
    /// `hash`: a `remove`'s (`counted` as a write: delivered, failed or
    /// dropped), or the removal of the shared copy that a value not written (dropped,
    /// refused, failed, expired, too large) superseded, which is not a write of its own
    /// (the value's fate was counted).
    fn keep_removal(&self, hash: KeyHash, counted: bool) {
        let given_up = self.pending_dels.insert(hash, counted);
        if given_up > 0 {
            self.counters
                .shared
                .dropped(SharedDrop::QueueFull, given_up);
        }
    }

    /// Whether this replica's own removal hides the key's shared copy: its `DEL` is queued,
    /// or kept until it can be sent.
    pub(crate) fn hides(&self, hash: &KeyHash) -> bool {
        matches!(
            self.queue.lookup(hash),
            Some(
                SharedOp::Del
                    | SharedOp::Put {
                        del_first: true,
                        ..
                    }
            )
        ) || self.pending_dels.contains(hash)
            || lock(&self.flights).keys.contains_key(hash)
    }

    /// `(entries, bytes)` waiting to be sent: the queue's, and the kept removals (counted as
    /// entries, not bytes).
    pub(crate) fn depth(&self) -> (u64, u64) {
        let (entries, bytes) = self.queue.depth();
        (entries + self.pending_dels.len(), bytes)
    }

    /// Gives up the kept removals (at `close`: the server has not been back since), counted
    /// as dropped `breaker_open`. Returns how many.
    pub(crate) fn abandon_pending_dels(&self) -> u64 {
        let n = self.pending_dels.clear();
        self.counters.shared.dropped(SharedDrop::BreakerOpen, n);
        n
    }

    /// Sends one batch from the queue. `false` when the queue was empty. `now`: kept
    /// removals are sent even while their resend is deferred (a `close`: one pass, not the
    /// drain task's loop that the deferral holds back).
    pub(crate) async fn send_batch(&self, now: bool) -> bool {
        let _turn = self.sending.lock().await;
        let closed = self.state() == BreakerState::Closed;
        // Kept removals first (while Closed): each goes after any write of its key that was
        // in flight when it was kept (that write has been answered, or timed out before the
        // breaker opened and closed again on the same server), and before a newer `set` of
        // the key taken below.
        let kept = if closed && (now || self.dels_deferred_until().is_none()) {
            self.pending_dels.oldest(BATCH_OPS)
        } else {
            Vec::new()
        };
        // The kept removals that are not writes of their own (see `keep_removal`).
        let uncounted: HashSet<KeyHash> = kept.iter().filter(|k| !k.1).map(|k| k.0).collect();
        let mut batch: Vec<Queued> = kept
            .into_iter()
            .map(|(hash, _)| Queued {
                hash,
                key: Arc::from(&[][..]),
                op: SharedOp::Del,
            })
            .collect();
        // From the take until the server answered, every key of the batch hides its shared
        // copy (the server holds an older value, or one being removed), also while the batch
        // is being encoded: taken and marked under the flights' lock, which `hides` takes
        // after looking at the queue, so that a read never finds an operation neither queued
        // nor in flight. A send cancelled on the way keeps a removal of each key.
        let mut in_flight = {
            let mut flights = lock(&self.flights);
            batch.extend(self.queue.take(BATCH_OPS - batch.len(), BATCH_BYTES));
            let keys = batch
                .iter()
                .map(|q| (q.hash, removal_counted(&q.op, &uncounted, &q.hash)))
                .collect();
            InFlight::taken(self, &mut flights, keys)
        };
        if batch.is_empty() {
            in_flight.done = true;
            return false;
        }
        if !closed {
            in_flight.done = true;
            self.drop_batch(&batch);
            return true;
        }
        let now_ms = self.clock.now_ms();
        let big = batch.iter().any(|q| match &q.op {
            SharedOp::Put { value, .. } => value.len() > INLINE_VERIFY_BYTES,
            SharedOp::Del => false,
        });
        let enc = Encoding {
            mac: self.config.mac_key,
            level: self.compression_level,
            max_entry_bytes: self.config.max_entry_bytes,
            prefix: self.config.prefix.clone(),
            max_ttl: self.config.max_ttl,
            uncounted,
        };
        let ops = if big {
            // Compressing large values is CPU work: off the runtime's threads.
            let counters = self.counters.clone();
            match tokio::task::spawn_blocking(move || enc.encode(batch, now_ms, &counters)).await {
                Ok(ops) => ops,
                // Not encoded (the pool shut down): the guard keeps a removal of each key.
                Err(_) => return true,
            }
        } else {
            enc.encode(batch, now_ms, &self.counters)
        };
        // A lease leader may have written a newer value of a key meanwhile (its older
        // operation here is dropped), or be writing one (this batch waits for its answer).
        // One `timeout` for the wait and the round trip together: a batch, which `flush`
        // waits for, is bounded by the encode and one `timeout`.
        let deadline = Instant::now() + self.config.timeout;
        let ops = in_flight.send(ops, deadline).await;
        if ops.is_empty() {
            in_flight.done = true;
            return true;
        }
        // `(hash, bytes, is a DEL, counted)` of each write, in order.
        let what: Vec<Sent> = ops
            .iter()
            .map(|(hash, op, counted)| match op {
                WriteOp::Set { value, .. } => Sent {
                    hash: *hash,
                    size: value.len() as u64,
                    del: false,
                    counted: true,
                },
                WriteOp::Del { .. } => Sent {
                    hash: *hash,
                    size: 0,
                    del: true,
                    counted: *counted,
                },
            })
            .collect();
        // Values (failed or dropped as a whole batch): removals are counted once delivered or
        // given up, not per attempt.
        let values = what.iter().filter(|w| !w.del).count() as u64;
        let ops: Vec<WriteOp> = ops.into_iter().map(|(_, op, _)| op).collect();
        // A command's own failure (READONLY after a failover) is the server's trouble too:
        // the batch is then reported to the breaker as one failure, not as a success.
        let result = self
            .call_judged(
                false,
                deadline,
                |s| s.write_many(ops),
                |r: &Vec<_>| first_failure(r),
            )
            .await;
        // Answered (or refused, or timed out): each path below keeps or settles its removals.
        in_flight.done = true;
        let Some(result) = result else {
            self.counters
                .shared
                .dropped(SharedDrop::BreakerOpen, values);
            self.keep_dels(&what);
            return true;
        };
        let replies = match result {
            Ok(r) => r,
            Err(e) => {
                // Values are not retried; a removal of every key is kept (counted once
                // delivered or given up, not per attempt): the server may hold the value a
                // failed one superseded.
                if e.failure().is_some() {
                    self.counters.shared.writes_failed.add(values);
                    self.keep_dels(&what);
                    self.defer_dels();
                } else {
                    // Not a failure (the breaker stays Closed): given up, not resent at once.
                    for w in what.iter().filter(|w| w.del) {
                        self.pending_dels.remove(&w.hash);
                    }
                }
                return true;
            }
        };
        for (reply, w) in replies.into_iter().zip(&what) {
            let (hash, size) = (w.hash, w.size);
            if w.del {
                match &reply {
                    Err(e) if e.failure().is_some() => {
                        self.keep_removal(hash, w.counted);
                        self.defer_dels();
                        continue;
                    }
                    // Delivered, or refused for good (not a failure).
                    _ => self.pending_dels.remove(&hash),
                }
                if !w.counted {
                    continue;
                }
            }
            match reply {
                Ok(()) => {
                    self.counters.shared.writes_ok.inc();
                    self.counters.shared.bytes_out.add(size);
                    if size > 0 {
                        self.oom_episode.store(false, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    // A value refused or failed: the older value it superseded may still be
                    // there. A `DEL` is allowed under `OOM`: it is kept, and sent. After a
                    // failure (a server refusing writes), it waits as a failed `DEL` does.
                    self.keep_removal(hash, w.del);
                    if e.kind == Failure::Oom {
                        self.note_oom(&e);
                    } else {
                        self.counters.shared.writes_failed.inc();
                        if let Some(kind) = e.failure() {
                            self.counters.shared.error(kind);
                            self.defer_dels();
                        }
                    }
                }
            }
        }
        true
    }

    /// Counts a write the server refused for memory; one warning per episode.
    fn note_oom(&self, e: &StoreError) {
        self.counters.shared.rejected_oom.inc();
        if !self.oom_episode.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: TARGET,
                error = %e,
                "the shared server refuses writes for memory (OOM): answers are not shared \
                 until it has room; set maxmemory-policy allkeys-lru (or allkeys-lfu) on a \
                 cache server"
            );
        }
    }

    /// Waits for a batch the drain task is sending (itself bounded by `timeout`), then sends
    /// what is queued within `timeout` × the number of batches it needs; what is left then
    /// (or everything, while the breaker is not Closed) is dropped and counted. Returns how
    /// many operations were dropped. Never fails. `at_close`: kept removals are sent even
    /// while their resend is deferred after a failed `DEL` (the server answers, and a close
    /// would otherwise forget them); otherwise they wait for the deferral, as the drain
    /// task's do.
    pub(crate) async fn flush(&self, at_close: bool) -> u64 {
        drop(self.sending.lock().await);
        let (mut entries, _) = self.queue.depth();
        if self.state() == BreakerState::Closed
            && (at_close || self.dels_deferred_until().is_none())
        {
            entries += self.pending_dels.len();
        }
        if entries == 0 {
            return 0;
        }
        let batches = entries.div_ceil(BATCH_OPS as u64);
        let budget = self
            .config
            .timeout
            .saturating_mul(u32::try_from(batches).unwrap_or(u32::MAX));
        let before = self.dropped_total();
        let _ =
            tokio::time::timeout(budget, async { while self.send_batch(at_close).await {} }).await;
        let left = self.queue.take(usize::MAX, usize::MAX);
        self.drop_batch(&left);
        self.dropped_total() - before
    }

    /// Drops the values of `batch` (counted `breaker_open`) and keeps a removal of every
    /// key: its own, or that of the shared copy a dropped value superseded.
    fn drop_batch(&self, batch: &[Queued]) {
        let mut values = 0;
        for q in batch {
            if matches!(q.op, SharedOp::Put { .. }) {
                values += 1;
            }
            self.keep_removal(q.hash, removal_counted(&q.op, &HashSet::new(), &q.hash));
        }
        self.counters
            .shared
            .dropped(SharedDrop::BreakerOpen, values);
    }

    /// Keeps a removal of every key of a batch that was not delivered: its own, or that of
    /// the shared copy a value not written superseded.
    fn keep_dels(&self, what: &[Sent]) {
        for w in what {
            self.keep_removal(w.hash, w.del && w.counted);
        }
    }

    fn dropped_total(&self) -> u64 {
        self.counters.shared.dropped.iter().map(|c| c.get()).sum()
    }

    /// The probe: a `PING` admitted as the half-open probe (or, at start, while Open), which
    /// closes the breaker when it passes. Returns whether it passed.
    pub(crate) async fn probe(&self, at_start: bool) -> bool {
        let now = Instant::now().into_std();
        let permit = {
            let mut b = lock(&self.breaker);
            let t = b.poll(now);
            let p = if b.state() == BreakerState::HalfOpen {
                b.try_acquire(now).0.ok()
            } else {
                None
            };
            drop(b);
            self.record(t, None);
            p
        };
        if permit.is_none() && !(at_start && self.state() == BreakerState::Open) {
            return false;
        }
        self.counters.shared.probes_run.inc();
        let mut result = self.timed(self.store.ping()).await;
        // A connection error may be the client handing back its last failed reconnect,
        // from before the server came back (its next command reconnects): asked once more,
        // so that a server back in time is not kept Open for another open timeout.
        if matches!(&result, Err(e) if e.failure() == Some(SharedErrorKind::Io)) {
            result = self.timed(self.store.ping()).await;
        }
        let now = Instant::now().into_std();
        let ok = result.is_ok();
        if let Err(e) = &result {
            if let Some(kind) = e.failure() {
                self.counters.shared.error(kind);
            }
        }
        let t = {
            let mut b = lock(&self.breaker);
            match (permit, ok) {
                (Some(p), true) => b.on_success(p, now),
                (Some(p), false) => b.on_failure(p, now),
                // At start: Open → Closed directly on the first PONG.
                (None, true) => b.reset(now),
                (None, false) => None,
            }
        };
        self.record(t, result.as_ref().err());
        if ok {
            self.counters.shared.probes_ok.inc();
        }
        ok
    }

    /// When the breaker next changes on its own (Open → HalfOpen).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        lock(&self.breaker).next_deadline().map(Instant::from_std)
    }

    // ---- namespace generations (SHARED_TIER.md section 7) ----

    /// The server's generation of namespace `name`, bootstrapped with `fresh` when it has
    /// none (`SET NX GET`: the first writer wins, every replica adopts it), or when it holds
    /// one this replica retired (then `fresh` is written as `invalidate` writes it: a
    /// rolled-back generation must not bring invalidated answers back). `None` when the
    /// server cannot be asked (the caller keeps its local record).
    pub(crate) async fn bootstrap_generation(&self, name: &str, fresh: u64) -> Option<u64> {
        let key = entry::generation_key(&self.config.prefix, name);
        if let Some(g) = self
            .call(false, |s| s.get(&key, 64))
            .await?
            .ok()?
            .as_deref()
            .and_then(entry::parse_generation)
        {
            return Some(self.unless_retired(name, g, fresh).await);
        }
        let text = entry::generation_text(fresh);
        match self
            .call(false, |s| s.set_nx_get(&key, text.as_bytes()))
            .await?
            .ok()?
        {
            None => Some(fresh),
            Some(v) => match entry::parse_generation(&v) {
                Some(g) => Some(self.unless_retired(name, g, fresh).await),
                None => {
                    // Not a generation: replace it.
                    self.call(false, |s| s.set(&key, text.as_bytes()))
                        .await?
                        .ok()?;
                    Some(fresh)
                }
            },
        }
    }

    /// `g`, or, when this replica retired it, `fresh` written in its place (pending until
    /// the server takes it, as an `invalidate`'s).
    async fn unless_retired(&self, name: &str, g: u64, fresh: u64) -> u64 {
        if !self.is_retired(name, g) {
            return g;
        }
        tracing::warn!(
            target: TARGET,
            namespace = name,
            generation = %entry::generation_text(g),
            "the server holds a namespace generation this replica left (rolled back by a \
             failover or restore?): a fresh generation replaces it"
        );
        // Superseded or failed: pending, and the sync finishes it.
        let _ = self.publish_generation(name, fresh).await;
        fresh
    }

    /// Remembers that this replica left generation `g` of `name` (the last
    /// [`RETIRED_GENERATIONS`]).
    pub(crate) fn retire_generation(&self, name: &str, g: u64) {
        let mut retired = lock(&self.retired);
        let list = retired.entry(name.to_owned()).or_default();
        if !list.contains(&g) {
            list.push_back(g);
            if list.len() > RETIRED_GENERATIONS {
                list.pop_front();
            }
        }
    }

    /// The generations of `name` this replica left, oldest first (kept in its namespace
    /// record, so that a reopen knows them).
    pub(crate) fn retired_generations(&self, name: &str) -> Vec<u64> {
        lock(&self.retired)
            .get(name)
            .map(|list| list.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether this replica left generation `g` of `name`.
    pub(crate) fn is_retired(&self, name: &str, g: u64) -> bool {
        lock(&self.retired)
            .get(name)
            .is_some_and(|list| list.contains(&g))
    }

    /// Writes a namespace's new generation (inline, within the timeout), over a generation
    /// this replica retired or over nothing (see [`SharedTier::write_generation`]). When it is
    /// not written, it stays pending: [`SharedTier::retry_pending`] writes it later, or finds
    /// it superseded.
    pub(crate) async fn publish_generation(&self, name: &str, g: u64) -> Published {
        lock(&self.pending_generations).insert(name.to_owned(), g);
        self.write_generation(name, g, true).await
    }

    /// Writes generation `g` of `name` by compare-and-set: only over one this replica left
    /// (retired: its own invalidations, the generations it adopted and left, one a restore
    /// brought back) or, when `if_absent`, over nothing. Anything else on the server is a
    /// generation of another replica this one has not seen (an invalidation there, or a
    /// bootstrap after a flush): writing `g` over it would undo it and bring back answers
    /// stored under `g` before it, so `g` is [`Published::Superseded`] and the caller draws a
    /// fresh one. A value that is not a generation counts as nothing.
    async fn write_generation(&self, name: &str, g: u64, if_absent: bool) -> Published {
        let key = entry::generation_key(&self.config.prefix, name);
        let text = entry::generation_text(g);
        let accept: Vec<Vec<u8>> = self
            .retired_generations(name)
            .into_iter()
            .map(|r| entry::generation_text(r).into_bytes())
            .collect();
        let replace = match self
            .call(false, |s| {
                s.set_generation(&key, text.as_bytes(), accept, if_absent)
            })
            .await
        {
            Some(Ok(None)) => false,
            Some(Ok(Some(cur))) => match entry::parse_generation(&cur) {
                Some(c) if c == g || self.is_retired(name, c) => true,
                Some(c) => return Published::Superseded(Some(c)),
                None if if_absent && !cur.is_empty() => true,
                None => return Published::Superseded(None),
            },
            // A key of another type: not a generation.
            Some(Err(e)) if if_absent && e.kind == Failure::WrongType => true,
            _ => return Published::Failed,
        };
        // Not the text the script compares (a hostile or damaged value): replaced as is.
        if replace
            && !matches!(
                self.call(false, |s| s.set(&key, text.as_bytes())).await,
                Some(Ok(()))
            )
        {
            return Published::Failed;
        }
        let mut pending = lock(&self.pending_generations);
        if pending.get(name) == Some(&g) {
            pending.remove(name);
        }
        Published::Written
    }

    /// Writes the pending generations, never over nothing (a flushed server: a generation
    /// drawn before the flush may predate an invalidation the flush lost). Stops at the
    /// first failure.
    pub(crate) async fn retry_pending(&self) -> Retried {
        let pending: Vec<(String, u64)> = lock(&self.pending_generations)
            .iter()
            .map(|(n, g)| (n.clone(), *g))
            .collect();
        let mut retried = Retried::default();
        for (name, g) in pending {
            match self.write_generation(&name, g, false).await {
                Published::Written => retried.written.push((name, g)),
                Published::Superseded(cur) => retried.superseded.push((name, g, cur)),
                Published::Failed => break,
            }
        }
        retried
    }

    /// The generation of `name` not yet on the server, if any.
    pub(crate) fn pending_generation(&self, name: &str) -> Option<u64> {
        lock(&self.pending_generations).get(name).copied()
    }

    /// Whether the pending-namespace markers on disk have been read since the cache opened.
    /// Until then a replica neither adopts nor bootstraps a generation over its local
    /// record: that record may be an invalidation the server has not taken.
    pub(crate) fn markers_listed(&self) -> bool {
        self.markers_listed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that the markers have been read (see [`SharedTier::markers_listed`]).
    pub(crate) fn set_markers_listed(&self) {
        self.markers_listed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether `name` has a generation not yet on the server.
    pub(crate) fn is_pending(&self, name: &str) -> bool {
        lock(&self.pending_generations).contains_key(name)
    }

    /// Namespace invalidations not yet on the server.
    pub(crate) fn pending_count(&self) -> u64 {
        lock(&self.pending_generations).len() as u64
    }

    /// The server's generations of `names` (`MGET`), `None` when it cannot be asked. Counted
    /// as one sync.
    pub(crate) async fn read_generations(&self, names: &[String]) -> Option<Vec<Option<u64>>> {
        let keys: Vec<String> = names
            .iter()
            .map(|n| entry::generation_key(&self.config.prefix, n))
            .collect();
        let values = self.call(false, |s| s.mget(&keys)).await?.ok()?;
        self.counters.shared.namespace_syncs.inc();
        Some(
            values
                .iter()
                .map(|v| v.as_deref().and_then(entry::parse_generation))
                .collect(),
        )
    }

    /// Counts a generation change seen on the server.
    pub(crate) fn count_change(&self) {
        self.counters.shared.namespace_changes_seen.inc();
    }

    /// The namespace sync interval (`ZERO`: off).
    pub(crate) fn sync_interval(&self) -> Duration {
        self.config.namespace_sync_interval
    }
}

/// The first command of a pipeline's replies that failed with a failure kind (the pipeline is
/// then reported to the breaker as that failure, not as a success).
fn first_failure(replies: &[Result<(), StoreError>]) -> Option<StoreError> {
    replies
        .iter()
        .filter_map(|r| r.as_ref().err())
        .find(|e| e.failure().is_some())
        .cloned()
}

/// The server's `PX` for an entry expiring at `expires_ms` (0: never), at `now_ms`:
/// `min(remaining, max_ttl)`, relative (never `PXAT`: that would compare this replica's clock
/// with the server's). `None` when already expired.
pub(crate) fn px(expires_ms: u64, now_ms: u64, max_ttl: Duration) -> Option<u64> {
    let max = u64::try_from(max_ttl.as_millis()).unwrap_or(u64::MAX);
    if expires_ms == 0 {
        return Some(max);
    }
    let remaining = expires_ms.checked_sub(now_ms).filter(|&r| r > 0)?;
    Some(remaining.min(max))
}

/// What turning queued operations into server writes needs (owned: it may run on the
/// blocking pool).
struct Encoding {
    mac: Option<[u8; 32]>,
    level: u32,
    max_entry_bytes: usize,
    prefix: String,
    max_ttl: Duration,
    /// Kept removals in the batch that are not writes of their own (see
    /// `SharedTier::keep_removal`).
    uncounted: HashSet<KeyHash>,
}

/// One write of a batch sent: its key, bytes, whether it is a `DEL`, and whether it counts as
/// a write (a removal kept for a value not written does not).
struct Sent {
    hash: KeyHash,
    size: u64,
    del: bool,
    counted: bool,
}

/// Whether `op` of `hash`, kept as a removal when not delivered, is a counted one: a `remove`'s
/// (queued, or kept and not in `uncounted`), or one a value carried (`del_first`); not the
/// removal of a shared copy that a plain value superseded.
fn removal_counted(op: &SharedOp, uncounted: &HashSet<KeyHash>, hash: &KeyHash) -> bool {
    match op {
        SharedOp::Del => !uncounted.contains(hash),
        SharedOp::Put { del_first, .. } => *del_first,
    }
}

impl Encoding {
    /// The writes of `batch`: entries over `max_entry_bytes` are dropped (counted), expired
    /// ones skipped, each replaced by a `DEL` of the key. Each value is encoded as the disk's
    /// entry file (FORMAT.md).
    fn encode(
        &self,
        batch: Vec<Queued>,
        now_ms: u64,
        counters: &Counters,
    ) -> Vec<(KeyHash, WriteOp, bool)> {
        let mut out = Vec::with_capacity(batch.len());
        for q in batch {
            let key = entry::entry_key(&self.prefix, &q.hash);
            match q.op {
                SharedOp::Del => {
                    let counted = !self.uncounted.contains(&q.hash);
                    out.push((q.hash, WriteOp::Del { key }, counted));
                }
                SharedOp::Put {
                    value,
                    meta,
                    del_first,
                    encoded,
                } => {
                    if del_first {
                        out.push((q.hash, WriteOp::Del { key: key.clone() }, true));
                    }
                    // A value not shared (expired by now, not encodable, too large) still
                    // supersedes the key's shared copy: a `DEL` goes in its place (not a
                    // write of its own).
                    let not_shared = |out: &mut Vec<(KeyHash, WriteOp, bool)>, key: String| {
                        if !del_first {
                            out.push((q.hash, WriteOp::Del { key }, false));
                        }
                    };
                    let Some(px) = px(meta.expires_ms, now_ms, self.max_ttl) else {
                        counters.shared.dropped(SharedDrop::Expired, 1);
                        not_shared(&mut out, key);
                        continue;
                    };
                    // The file the disk writer encoded for this write, or encoded here and
                    // left for it: the value is compressed once.
                    // At the configured level: the disk's rule of storing a file that fits
                    // one allocation unit is about disk blocks, which the server does not
                    // have (a cell is only shared above that size, `warm::encoded`).
                    let encode = || {
                        if self.level != 0 {
                            counters.entries_compressed.inc();
                        }
                        format::encode(&q.key, &value, meta, self.level)
                    };
                    let file = match &encoded {
                        Some(cell) => cell.file_for(meta, encode),
                        None => encode().map(Arc::from),
                    };
                    let Ok(file) = file else {
                        counters.shared.dropped(SharedDrop::TooLarge, 1);
                        not_shared(&mut out, key);
                        continue;
                    };
                    if file.len() > self.max_entry_bytes {
                        counters.shared.dropped(SharedDrop::TooLarge, 1);
                        not_shared(&mut out, key);
                        continue;
                    }
                    let value: Arc<[u8]> = match &self.mac {
                        None => file,
                        Some(_) => entry::seal(file.to_vec(), self.mac.as_ref()).into(),
                    };
                    out.push((q.hash, WriteOp::Set { key, value, px }, true));
                }
            }
        }
        out
    }
}

/// The writes in flight, by key (see `SharedTier::flights`).
///
/// A batch's operations are *taken* (being encoded) and then *sent* (awaiting the answer); a
/// lease leader's inline write is sent at once. Two writes of one key are ordered: a leader
/// whose key is in a taken batch marks it *superseded*, and the batch drops its (older)
/// operation of the key before it is sent; a write whose key is being sent by another waits
/// for that answer (within `timeout`) before it is sent itself.
#[derive(Default)]
struct Flights {
    keys: HashMap<KeyHash, Flight>,
    superseded: HashSet<KeyHash>,
    /// Taken keys whose operation is a counted removal (see `SharedTier::keep_removal`): a
    /// leader that supersedes one delivers it, and counts it.
    removals: HashSet<KeyHash>,
}

/// How many writes of one key are taken and sent.
#[derive(Default, Clone, Copy)]
struct Flight {
    taken: u32,
    sent: u32,
}

impl Flights {
    fn add(&mut self, hash: KeyHash, taken: u32, sent: u32) {
        let f = self.keys.entry(hash).or_default();
        f.taken += taken;
        f.sent += sent;
    }

    fn sub(&mut self, hash: &KeyHash, taken: u32, sent: u32) {
        if let Some(f) = self.keys.get_mut(hash) {
            f.taken = f.taken.saturating_sub(taken);
            f.sent = f.sent.saturating_sub(sent);
            if f.taken == 0 && f.sent == 0 {
                self.keys.remove(hash);
            }
        }
        if taken > 0 {
            // A supersession applies to the one batch taken (batches take turns).
            self.superseded.remove(hash);
            self.removals.remove(hash);
        }
    }

    /// How many writes of `hash` are being sent.
    fn sent(&self, hash: &KeyHash) -> u32 {
        self.keys.get(hash).map_or(0, |f| f.sent)
    }
}

/// One batch's (or inline write's) keys in [`Flights`], until it is done. Dropped before it
/// was answered (a `flush` that gave up on a hung server, a caller that went away), a removal
/// of each key is kept, to be sent again: a removal, or the supersession of a shared copy, is
/// never lost for a cancelled send.
struct InFlight<'a> {
    tier: &'a SharedTier,
    /// Each key, with whether its removal kept on a cancel is counted (a `remove`'s).
    taken: Vec<(KeyHash, bool)>,
    sent: Vec<(KeyHash, bool)>,
    done: bool,
}

impl<'a> InFlight<'a> {
    /// Marks `hashes` taken (the flights' lock held by the caller).
    fn taken(tier: &'a SharedTier, flights: &mut Flights, hashes: Vec<(KeyHash, bool)>) -> Self {
        for &(h, counted) in &hashes {
            flights.add(h, 1, 0);
            if counted {
                flights.removals.insert(h);
            }
        }
        InFlight {
            tier,
            taken: hashes,
            sent: Vec::new(),
            done: false,
        }
    }

    /// Marks `hash` sent (the flights' lock held by the caller).
    fn sent_now(tier: &'a SharedTier, flights: &mut Flights, hash: KeyHash, counted: bool) -> Self {
        flights.add(hash, 0, 1);
        InFlight {
            tier,
            taken: Vec::new(),
            sent: vec![(hash, counted)],
            done: false,
        }
    }

    /// Moves the taken keys to sent, dropping the operations of superseded keys, once no
    /// other write of a key of `ops` is being sent (or `deadline` passed). The operations
    /// left to send.
    async fn send(
        &mut self,
        mut ops: Vec<(KeyHash, WriteOp, bool)>,
        deadline: Instant,
    ) -> Vec<(KeyHash, WriteOp, bool)> {
        let tier = self.tier;
        loop {
            let notified = tier.flight_done.notified();
            {
                let mut flights = lock(&tier.flights);
                let busy = ops.iter().any(|(h, _, _)| flights.sent(h) > 0);
                if !busy || Instant::now() >= deadline {
                    ops.retain(|(h, _, _)| !flights.superseded.contains(h));
                    let taken = std::mem::take(&mut self.taken);
                    for (h, _) in &taken {
                        flights.sub(h, 1, 0);
                    }
                    for (h, _, _) in &ops {
                        if !self.sent.iter().any(|(s, _)| s == h) {
                            let counted = taken.iter().any(|(t, c)| t == h && *c);
                            flights.add(*h, 0, 1);
                            self.sent.push((*h, counted));
                        }
                    }
                    return ops;
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut flights = lock(&self.tier.flights);
        for (h, _) in &self.taken {
            flights.sub(h, 1, 0);
        }
        for (h, _) in &self.sent {
            flights.sub(h, 0, 1);
        }
        drop(flights);
        if !self.done {
            for &(h, counted) in self.taken.iter().chain(&self.sent) {
                self.tier.keep_removal(h, counted);
            }
        }
        self.tier.flight_done.notify_waiters();
    }
}

// ---- leases (SHARED_TIER.md section 8) ----

impl SharedTier {
    /// The lease key of an entry.
    pub(crate) fn lease_key(&self, hash: &KeyHash) -> String {
        entry::lease_key(&self.config.prefix, hash)
    }

    fn lease_px(&self) -> u64 {
        u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// `SET lease token NX PX lease_ttl`: `Some(taken)`, `None` when not admitted or failed.
    pub(crate) async fn lease_acquire(&self, key: &str, token: &str) -> Option<bool> {
        let px = self.lease_px();
        self.call(false, |s| s.lease_acquire(key, token, px))
            .await?
            .ok()
    }

    /// The compare-and-pexpire script: whether `token` still holds the lease.
    pub(crate) async fn lease_renew(&self, key: &str, token: &str) -> bool {
        let px = self.lease_px();
        matches!(
            self.call(false, |s| s.lease_renew(key, token, px)).await,
            Some(Ok(true))
        )
    }

    /// The compare-and-delete script (best effort).
    pub(crate) async fn lease_release(&self, key: &str, token: &str) {
        let _ = self.call(false, |s| s.lease_release(key, token)).await;
    }

    /// The compare-and-set script: whether `token` held the lease, now replaced by `value`
    /// for `px` ms (the "done, not shared" mark).
    pub(crate) async fn lease_replace(&self, key: &str, token: &str, value: &str, px: u64) -> bool {
        matches!(
            self.call(false, |s| s.lease_replace(key, token, value, px))
                .await,
            Some(Ok(true))
        )
    }

    /// Deletes a foreign lease key while it still holds what a poll found there.
    pub(crate) async fn lease_delete_foreign(&self, key: &str, found: Found) {
        let _ = self.call(false, |s| s.del_if(key, found)).await;
    }

    /// `(the value exists, the lease key as found)`; `None` when not admitted or failed.
    pub(crate) async fn lease_poll(
        &self,
        hash: &KeyHash,
    ) -> Option<(bool, Option<super::store::LeaseSeen>)> {
        let (ekey, lkey) = (self.entry_key(hash), self.lease_key(hash));
        let (value, leased) = self.call(false, |s| s.poll(&ekey, &lkey, 0)).await?.ok()?;
        Some((value.is_some(), leased))
    }

    /// Writes an entry now, not through the queue (a lease holder's answer, which its waiters
    /// poll for). Whether it was accepted.
    ///
    /// `token`: the leader's local store of the answer ([`SharedQueue::mark_leader`]): when
    /// a `set` or `remove` of the key came after it, the answer is older than what this
    /// replica holds, and is not written (`false`).
    pub(crate) async fn put_inline(
        &self,
        hash: KeyHash,
        key: &[u8],
        value: Arc<[u8]>,
        meta: EntryMeta,
        token: u64,
        encoded: Option<Arc<EncodedEntry>>,
    ) -> bool {
        if !entry::shareable(key) {
            self.queue.forget_leader(&hash, token);
            return false;
        }
        // This value is the key's newest here. An older operation of the key must not land
        // after it: a queued one is taken out, one in a batch taken but not sent is dropped
        // by that batch (superseded), and one being sent is waited for (within `timeout`).
        // A removal it supersedes (queued, kept or in a batch) goes first, in the same
        // pipeline: if the value is then refused or fails, the removed answer is not left on
        // the server. From here until the server answered, the key's shared copy is hidden
        // (it is older, or being removed); a caller gone meanwhile leaves a removal kept.
        let deadline = Instant::now() + self.config.timeout;
        // `del_counted`: the removal it carries is a `remove`'s (counted as a write when
        // delivered), not only the removal of a shared copy a value not written superseded.
        let (mut in_flight, del_first, del_counted) = loop {
            let notified = self.flight_done.notified();
            {
                let mut flights = lock(&self.flights);
                if flights.sent(&hash) == 0 || Instant::now() >= deadline {
                    let Ok(queued) = self.queue.take_for_leader(&hash, token) else {
                        // A `set`/`remove` of the key came after the leader stored its
                        // answer locally: that one carries the key's state to the server
                        // (queued, or in a batch), and this older answer must not land
                        // after it. Not written.
                        return false;
                    };
                    let taken = flights.keys.get(&hash).is_some_and(|f| f.taken > 0);
                    let taken_removal = taken && flights.removals.contains(&hash);
                    if taken {
                        flights.superseded.insert(hash);
                    }
                    let queued_removal = matches!(
                        queued,
                        Some(
                            SharedOp::Del
                                | SharedOp::Put {
                                    del_first: true,
                                    ..
                                }
                        )
                    );
                    let kept = self.pending_dels.counted(&hash);
                    let del_first = taken || queued_removal || kept.is_some();
                    let del_counted = taken_removal || queued_removal || kept == Some(true);
                    break (
                        InFlight::sent_now(self, &mut flights, hash, del_counted),
                        del_first,
                        del_counted,
                    );
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        };
        self.pending_dels.remove(&hash);
        let enc = Encoding {
            mac: self.config.mac_key,
            level: self.compression_level,
            max_entry_bytes: self.config.max_entry_bytes,
            prefix: self.config.prefix.clone(),
            max_ttl: self.config.max_ttl,
            uncounted: HashSet::new(),
        };
        let q = Queued {
            hash,
            key: key.into(),
            op: SharedOp::Put {
                value,
                meta,
                del_first,
                encoded,
            },
        };
        let ops: Vec<WriteOp> = enc
            .encode(vec![q], self.clock.now_ms(), &self.counters)
            .into_iter()
            .map(|(_, op, _)| op)
            .collect();
        let size = match ops.last() {
            Some(WriteOp::Set { value, .. }) => value.len() as u64,
            _ => {
                // Too large or expired: not shared, but the shared copy it supersedes goes
                // (the drain task sends the removal).
                in_flight.done = true;
                self.keep_removal(hash, del_counted);
                return false;
            }
        };
        let replies = self
            .call_judged(
                false,
                deadline,
                |s| s.write_many(ops),
                |r: &Vec<_>| first_failure(r),
            )
            .await;
        in_flight.done = true;
        // Whatever is not accepted below leaves a removal kept: the older shared copy this
        // value superseded may still be there.
        let replies = match replies {
            Some(Ok(replies)) => replies,
            Some(Err(e)) => {
                self.counters.shared.writes_failed.inc();
                self.keep_removal(hash, del_counted);
                if e.failure().is_some() {
                    self.defer_dels();
                }
                return false;
            }
            None => {
                self.counters.shared.writes_failed.inc();
                self.keep_removal(hash, del_counted);
                return false;
            }
        };
        let mut replies = replies.into_iter();
        if del_first {
            match replies.next() {
                // Delivered: a `remove`'s counts as a write, as in a batch.
                Some(Ok(())) => {
                    if del_counted {
                        self.counters.shared.writes_ok.inc();
                    }
                }
                _ => self.keep_removal(hash, del_counted),
            }
        }
        match replies.next() {
            Some(Ok(())) => {
                self.counters.shared.writes_ok.inc();
                self.counters.shared.bytes_out.add(size);
                // An accepted write ends an OOM episode, as the drain task's do.
                self.oom_episode.store(false, Ordering::Relaxed);
                true
            }
            Some(Err(e)) if e.kind == Failure::Oom => {
                self.keep_removal(hash, false);
                self.note_oom(&e);
                false
            }
            other => {
                self.keep_removal(hash, false);
                self.counters.shared.writes_failed.inc();
                if let Some(kind) = other.and_then(|r| r.err()).and_then(|e| e.failure()) {
                    self.counters.shared.error(kind);
                    self.defer_dels();
                }
                false
            }
        }
    }

    /// The lease counters.
    pub(crate) fn lease_counters(&self) -> &crate::stats::SharedCounters {
        &self.counters.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px_is_the_remaining_ttl_capped_by_max_ttl() {
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(px(0, 1000, week), Some(604_800_000));
        assert_eq!(px(1500, 1000, week), Some(500));
        assert_eq!(px(1000, 1000, week), None);
        assert_eq!(px(999, 1000, week), None);
        assert_eq!(px(u64::MAX, 0, Duration::from_secs(1)), Some(1000));
    }
}
