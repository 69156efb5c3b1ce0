//! The tiers composed: `get`, `set`, `remove`, `clear` and `flush` orchestrated across the
//! hot tier, the write queue, the disk gate, the freshness record and the writer. Nothing
//! else lives here: the parts are built and their tasks spawned by the handle
//! ([`TieredCache`](crate::TieredCache), `handle.rs`), and the agent features call the
//! narrow crate-internal API below, never the parts.
//!
//! Ordering rules that keep every read correct:
//! - `set` and `remove` change the hot tier and queue their disk operation under the queue's
//!   lock, so for each key the last commit wins in memory and on disk alike.
//! - `remove` leaves a *tombstone* in the hot tier until the delete reaches the disk, so a
//!   stale file can never be read back while its deletion is pending or has failed.
//! - A warm hit is promoted only if no `set`/`remove` touched the key's shard since the
//!   lookup began (`hot::Stamp`), so a slow disk read never overwrites a newer value.
//! - Lookups go hot → queue → disk: a value evicted from hot before its write landed is still
//!   found in the queue.
//! - Every await in `get`/`set`/`remove` comes before the first change or after the last, so a
//!   dropped future leaves the cache consistent.
//! - A file or queued write the freshness record calls stale (cleared, or older than a value
//!   lost from memory) is a miss.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::answer::Source;
use crate::breaker::BreakerState;
use crate::codec::Encoding;
use crate::config::{Config, WritePolicy};
use crate::disk::DiskOutcome;
use crate::error::{Error, Result};
use crate::hot::{HotEntry, LiveHit};
use crate::key_scan::{scan_keys, KeyScan};
use crate::parts::Parts;
use crate::queue::{Op, QueueView};
use crate::stats::{Counters, Gauges, Mode, Stats};
use crate::sync::lock;
use crate::warm::encoded::EncodedEntry;
use crate::warm::format::{EntryMeta, Limits};
use crate::warm::layout::key_hash;
use crate::warm::store::{InlineRead, ReadOutcome, INLINE_STEP_BYTES};
use crate::writer::Writer;

/// The parts of one open cache, composed (see the module docs).
pub(crate) struct Tiers {
    config: Config,
    p: Parts,
    writer: Arc<Writer>,
    closed: AtomicBool,
    /// Types already warned about: `(true, _)` a stored value that did not decode as it,
    /// `(false, _)` a loaded value the codec could not encode.
    warned_types: Mutex<HashSet<(bool, &'static str)>>,
    /// What this cache has published of each counter (feature `metrics`).
    #[cfg(feature = "metrics")]
    published: crate::publish::Published,
    /// The shared tier (feature `redis`), when configured.
    #[cfg(feature = "redis")]
    shared: Option<Arc<crate::shared::tier::SharedTier>>,
}

#[cfg(all(test, feature = "redis"))]
#[path = "encode_once_tests.rs"]
mod encode_once_tests;

/// How a `set` is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetKind {
    /// Under the cache's write policy, shared when there is a shared tier.
    Ordinary,
    /// Acknowledged once on disk whatever the write policy (a namespace's new generation).
    Durable,
    /// Not queued for the shared tier: already written there (feature `redis`).
    Unshared,
}

/// What a lease leader's local store (`Tiers::set_unshared`) tells its inline write to the
/// shared tier.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct LeaderStore {
    /// The shared queue's token of the store (`SharedQueue::mark_leader`); 0 when nothing
    /// was stored or there is no shared tier.
    pub token: std::sync::atomic::AtomicU64,
    /// The stored entry's metadata: the inline write shares the same entry.
    pub meta: EntryMeta,
    /// The disk write's cell, when the disk is in use: the entry is compressed once.
    pub encoded: Option<Arc<EncodedEntry>>,
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub value: Arc<[u8]>,
    pub expires_ms: u64,
    pub cost: u64,
    pub encoding: Encoding,
    /// Hot, warm, queue or shared.
    pub source: Source,
}

impl Tiers {
    /// The tiers over `p`, written by `writer`, open.
    pub(crate) fn new(
        config: Config,
        p: Parts,
        writer: Arc<Writer>,
        #[cfg(feature = "redis")] shared: Option<Arc<crate::shared::tier::SharedTier>>,
    ) -> Self {
        Tiers {
            #[cfg(feature = "redis")]
            shared,
            config,
            p,
            writer,
            closed: AtomicBool::new(false),
            warned_types: Mutex::default(),
            #[cfg(feature = "metrics")]
            published: crate::publish::Published::default(),
        }
    }

    /// Whether this replica reads the shared tier now: not until the fence on disk is known
    /// (see `Freshness::fence_known`; `lookup_shared` and the lease check it).
    #[cfg(feature = "redis")]
    pub(crate) fn reads_shared(&self) -> bool {
        self.p.freshness.fence_known()
    }

    /// The shared tier, when configured (feature `redis`).
    #[cfg(feature = "redis")]
    pub(crate) fn shared(&self) -> Option<&Arc<crate::shared::tier::SharedTier>> {
        self.shared.as_ref()
    }

    /// The disk gate (every disk call of the cache goes through it).
    #[cfg(feature = "redis")]
    pub(crate) fn gate(&self) -> &crate::disk::DiskGate {
        &self.p.gate
    }

    /// The settings the cache was built with.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The cache's clock, in unix ms.
    pub(crate) fn now_ms(&self) -> u64 {
        self.p.clock.now_ms()
    }

    /// The counters, shared (for a task's supervisor).
    #[cfg(feature = "redis")]
    pub(crate) fn counters_arc(&self) -> Arc<crate::stats::Counters> {
        self.p.counters.clone()
    }

    /// The counters (the agent features count joins, bypasses and loader calls).
    pub(crate) fn counters(&self) -> &Counters {
        &self.p.counters
    }

    /// `Err(Closed)` once the cache is closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Marks the cache closed (every later call is `Err(Closed)`) and tells long disk walks
    /// to stop.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.p.gate.store.begin_close();
    }

    /// Counts the entries still waiting for their compression as written, stored (`close`,
    /// once the compactor stopped).
    pub(crate) fn close_backlog(&self) {
        self.p.gate.store.close_backlog();
    }

    /// `Err(KeyTooLarge)` for a key over `max_key_bytes`.
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > self.config.max_key_bytes {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.config.max_key_bytes,
            });
        }
        Ok(())
    }

    /// The current mode.
    pub(crate) fn mode(&self) -> Mode {
        self.p.gate.mode()
    }

    /// The breaker's current state.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.p.gate.breaker_state()
    }

    /// The file system the disk gate runs on (for `testing::fs_in_use`).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn fs(&self) -> &dyn crate::fs::Fs {
        self.p.gate.fs()
    }

    /// The hot tier, for the handle's `Debug` output.
    pub(crate) fn hot_for_debug(&self) -> &dyn std::fmt::Debug {
        &*self.p.hot
    }

    /// The hot entry of `key`, if any, without counting, promoting or removing it.
    pub(crate) fn peek_hot(&self, key: &[u8]) -> Option<HotEntry> {
        self.p.hot.peek(key)
    }

    /// Drops the hot copy of `key` if it is clean (it is on disk): the next lookup reads the
    /// disk, where another process may have replaced the file.
    pub(crate) fn drop_clean_hot(&self, key: &[u8]) -> bool {
        self.p.hot.drop_clean(key)
    }

    /// Calls `f` with every live (not tombstoned) key of the hot tier; removes nothing.
    pub(crate) fn for_each_hot_key(&self, mut f: impl FnMut(&[u8])) {
        self.p.hot.remove_if(|k, e| {
            if !e.tombstone {
                f(k);
            }
            false
        });
    }

    /// The keys of the entry files on disk (`invalidate_if`), read through the gate one
    /// fan-out directory per call and handed to `on_keys` a directory at a time; what could
    /// not be read is counted in the result.
    pub(crate) async fn disk_keys(&self, on_keys: impl FnMut(Vec<Box<[u8]>>)) -> KeyScan {
        let limits = Limits {
            max_key_bytes: self.config.max_key_bytes,
            max_entry_bytes: self.config.max_entry_bytes,
        };
        scan_keys(&self.p.gate, &self.config.root, limits, on_keys).await
    }

    /// What this cache has published of each counter.
    #[cfg(feature = "metrics")]
    pub(crate) fn published(&self) -> &crate::publish::Published {
        &self.published
    }

    /// `(writes not on disk yet, writes queued)`, for the warning of a handle dropped without
    /// `close`.
    pub(crate) fn pending_writes(&self) -> (u64, u64) {
        // A value the hot tier could not keep is not dirty there but still queued: the
        // writes pending are at least the queued ones.
        let (dirty, queued) = (self.p.hot.dirty_count() as u64, self.p.queue.depth().0);
        (dirty.max(queued), queued)
    }

    /// Waits for every write queued before the call to complete.
    pub(crate) async fn wait_queued(&self) {
        let upto = self.p.queue.seq();
        self.p.queue.wait(Some(upto)).await;
    }

    /// The synchronous fast path of `get`: a live hot hit, without building the lookup future
    /// (profiled: that future and a full entry clone were most of a hot hit's cost).
    #[inline(always)]
    pub(crate) fn try_hot(&self, key: &[u8]) -> Option<LiveHit> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        // Counted by the hot tier itself (see `HotTier::live_hits`).
        self.p.hot.get_live(key, || self.p.clock.now_ms())
    }

    /// Takes back a hit [`Tiers::try_hot`] counted (its value did not decode).
    pub(crate) fn undo_hot_hit(&self, key: &[u8], cost: u64) {
        self.p.hot.undo_live_hit(key, cost);
    }

    #[tracing::instrument(level = "trace", name = "get", skip_all, fields(key_len = key.len()))]
    pub(crate) async fn lookup(&self, key: &[u8], count_miss: bool) -> Result<Option<Found>> {
        self.lookup_in(key, count_miss, true).await
    }

    /// [`Tiers::lookup`] of this replica's own tiers (hot, write queue, disk), not the
    /// shared tier, counting no miss: a `get_or_insert_*` caller's first lookup and its look
    /// after an abandoned flight (the flight's leader asks the shared tier, once).
    pub(crate) async fn lookup_local(&self, key: &[u8]) -> Result<Option<Found>> {
        self.lookup_in(key, false, false).await
    }

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    async fn lookup_in(&self, key: &[u8], count_miss: bool, shared: bool) -> Result<Option<Found>> {
        let miss = || {
            if count_miss {
                self.p.counters.misses.inc();
            }
        };
        self.check_open()?;
        self.check_key(key)?;
        let now = self.p.clock.now_ms();
        match self.p.hot.get(key, now) {
            Some(Ok(e)) if e.tombstone => {
                miss();
                return Ok(None);
            }
            Some(Ok(e)) => {
                return Ok(Some(Found {
                    value: e.value,
                    expires_ms: e.expires_ms,
                    cost: e.cost,
                    encoding: e.encoding,
                    source: Source::Hot,
                }));
            }
            // The hot tier holds a key's newest value. Clean, it is the disk's file too, which
            // the read below finds expired and deletes. Dirty, it never reached the disk: the
            // answer is a miss whatever older file the disk still has, and that file must be
            // deleted before a restart could serve it.
            Some(Err(expired)) if expired.dirty => {
                self.p.counters.hot_expirations.inc();
                let hash = key_hash(key);
                self.p.queue.locked(|view| {
                    if view
                        .pending_version(&hash)
                        .is_none_or(|v| v < expired.version)
                    {
                        self.p.freshness.mark_lost(hash, expired.version, true);
                    }
                });
                miss();
                return Ok(None);
            }
            Some(Err(_expired)) => self.p.counters.hot_expirations.inc(),
            None => {}
        }
        let stamp = self.p.hot.stamp(key);
        let hash = key_hash(key);
        match self.p.queue.lookup(&hash) {
            Some(Op::Put { value, meta, .. })
                if !meta.is_expired(now) && !self.p.freshness.is_stale(&hash, meta.created_ms) =>
            {
                return Ok(Some(Found {
                    value,
                    expires_ms: meta.expires_ms,
                    cost: meta.cost,
                    encoding: meta.encoding,
                    source: Source::Queue,
                }));
            }
            Some(_) => {
                miss();
                return Ok(None);
            }
            None => {}
        }
        let disk = self.p.gate.in_use() && self.p.freshness.load_fence(&self.p.gate).await;
        if disk {
            if let Some(found) = self.lookup_warm(key, &hash, now, stamp).await {
                return Ok(Some(found));
            }
        }
        // After the warm tier (a local disk is cheaper than a round trip), also when the disk
        // tier is not in use: each tier has its own breaker.
        #[cfg(feature = "redis")]
        if shared {
            if let Some(found) = self.lookup_shared(key, &hash, now, stamp).await {
                return Ok(Some(found));
            }
        }
        miss();
        Ok(None)
    }

    /// The warm-tier part of a lookup: a valid, fresh entry, promoted to hot.
    async fn lookup_warm(
        &self,
        key: &[u8],
        hash: &crate::warm::layout::KeyHash,
        now: u64,
        stamp: crate::hot::Stamp,
    ) -> Option<Found> {
        let hash = *hash;
        let owned_key: Arc<[u8]> = key.into();
        let outcome = self
            .p
            .gate
            .run_inline_first(
                |fs, store| store.read_inline(fs, key, &hash, now),
                move |fs, store, read| {
                    match read {
                        Some(data) => store.read_prefetched(fs, &owned_key, &hash, data, now),
                        None => store.read(fs, &owned_key, &hash, now),
                    }
                    .map(InlineRead::Done)
                },
            )
            .await;
        self.p.gate.note("read", &outcome);
        let (meta, value) = match outcome.ok() {
            Some(InlineRead::Done(ReadOutcome::Hit(d))) => (d.meta, d.value.into()),
            Some(InlineRead::Hit { meta, value }) => (meta, value),
            Some(InlineRead::Inflate(inflating)) => {
                self.inflate_stepped(key, &hash, now, inflating).await?
            }
            _ => return None,
        };
        if self.p.freshness.is_stale(&hash, meta.created_ms) {
            return None;
        }
        let found = Found {
            value,
            expires_ms: meta.expires_ms,
            cost: meta.cost,
            encoding: meta.encoding,
            source: Source::Warm,
        };
        if self.p.hot.admits(key.len(), found.value.len()) {
            let entry = HotEntry {
                unwritable: false,
                value: found.value.clone(),
                expires_ms: found.expires_ms,
                cost: found.cost,
                encoding: found.encoding,
                version: self.p.hot.next_version(),
                dirty: false,
                tombstone: false,
            };
            self.p.queue.locked(|view| {
                if let Some(evicted) = self.p.hot.promote(key, entry, stamp) {
                    self.writer.on_evicted(view, evicted);
                }
            });
        }
        Some(found)
    }

    /// Inflates a verified warm entry on this task, [`INLINE_STEP_BYTES`] of value at a time
    /// with a yield between steps, so that a large hit holds an async worker no longer than a
    /// small one and pays no blocking-pool hop (20-40 µs on 2 cores). Works on any
    /// runtime flavour and inside a `LocalSet` (unlike `block_in_place`). An entry whose gzip
    /// stream turns out invalid (its checksum was valid) is read again on the blocking pool,
    /// which quarantines what is at the path then.
    async fn inflate_stepped(
        &self,
        key: &[u8],
        hash: &crate::warm::layout::KeyHash,
        now: u64,
        mut inflating: Box<crate::warm::store::SteppedRead>,
    ) -> Option<(EntryMeta, Arc<[u8]>)> {
        loop {
            tokio::task::yield_now().await;
            // As the gate does for store code: a panic is a failed read, never the caller's.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inflating.step(INLINE_STEP_BYTES)
            }));
            match step {
                Ok(Ok(true)) => return Some(self.p.gate.store.stepped_hit(hash, *inflating)),
                Ok(Ok(false)) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let (hash, owned_key): (_, Arc<[u8]>) = (*hash, key.into());
        let outcome = self
            .p
            .gate
            .run(move |fs, store| store.read(fs, &owned_key, &hash, now))
            .await;
        self.p.gate.note("read", &outcome);
        match outcome.ok() {
            Some(ReadOutcome::Hit(d)) => Some((d.meta, d.value.into())),
            _ => None,
        }
    }

    /// The shared-tier part of a lookup (feature `redis`): a verified entry that no local
    /// `set`, `remove` or `clear` made stale, promoted to hot with the header's expiry (never
    /// a fresh TTL) and queued for the disk like a write of this cache's own, without being
    /// shared again. A `remove` whose `DEL` is still queued, or kept until the server is back,
    /// hides the shared copy.
    #[cfg(feature = "redis")]
    async fn lookup_shared(
        &self,
        key: &[u8],
        hash: &crate::warm::layout::KeyHash,
        now: u64,
        stamp: crate::hot::Stamp,
    ) -> Option<Found> {
        let shared = self.shared.as_ref()?;
        // Until the fence on disk is known, an earlier run's `clear` may hide any entry on the
        // server (see `Freshness::fence_known`): the server is not asked.
        if !crate::shared::entry::shareable(key) || shared.hides(hash) || !self.reads_shared() {
            return None;
        }
        let hit = shared.read(key, hash).await?;
        let meta = hit.decoded.meta;
        if meta.is_expired(now) || self.p.freshness.is_stale(hash, meta.created_ms) {
            shared.count_miss();
            return None;
        }
        let value: Arc<[u8]> = hit.decoded.value.into();
        if self.p.hot.admits(key.len(), value.len()) {
            let entry = |version, dirty| HotEntry {
                unwritable: false,
                value: value.clone(),
                expires_ms: meta.expires_ms,
                cost: meta.cost,
                encoding: meta.encoding,
                version,
                dirty,
                tombstone: false,
            };
            let permit = if self.p.gate.in_use() {
                self.p.queue.try_reserve(key.len(), value.len())
            } else {
                None
            };
            let queued = permit.is_some_and(|permit| {
                // The disk writes the file read, verified, as it is: not compressed again
                // (a small value is stored uncompressed instead, `warm::encoded`).
                let encoded = (self.p.gate.store)
                    .encodes_at_level(key.len(), value.len())
                    .then(|| EncodedEntry::with_file(meta, hit.file.into()));
                self.p.queue.commit_made(permit, *hash, key.into(), |view| {
                    let version = self.p.hot.next_version();
                    let evicted = self.p.hot.promote(key, entry(version, true), stamp)?;
                    self.writer.on_evicted(view, evicted);
                    Some(Op::Put {
                        value: value.clone(),
                        meta,
                        version,
                        encoded,
                    })
                })
            });
            if !queued {
                // No room in the disk queue now (or no disk): memory only, clean (it is
                // someone else's answer, nothing this cache owes the disk).
                self.p.queue.locked(|view| {
                    let version = self.p.hot.next_version();
                    if let Some(evicted) = self.p.hot.promote(key, entry(version, false), stamp) {
                        self.writer.on_evicted(view, evicted);
                    }
                });
            }
        }
        Some(Found {
            value,
            expires_ms: meta.expires_ms,
            cost: meta.cost,
            encoding: meta.encoding,
            source: Source::Shared,
        })
    }

    /// Counts a lookup's find as a hit of its source, with its cost saved. Called once the
    /// caller has decoded the value: one that does not decode is a miss, not a hit.
    pub(crate) fn count_hit(&self, found: &Found) {
        match found.source {
            Source::Warm => self.p.counters.warm_hits.inc(),
            Source::Queue => self.p.counters.queue_hits.inc(),
            Source::Shared => self.p.counters.shared.hits.inc(),
            _ => self.p.counters.hot_hits.inc(),
        }
        self.p.counters.cost_saved.add(found.cost);
    }

    /// `V`'s type name, the first time this cache warns about it (`decode`: a stored value
    /// that did not decode as it; else a loaded value the codec could not encode).
    fn first_warning<V>(&self, decode: bool) -> Option<&'static str> {
        let type_name = std::any::type_name::<V>();
        lock(&self.warned_types)
            .insert((decode, type_name))
            .then_some(type_name)
    }

    /// Counts a stored value that did not decode as `V`, and warns once per type.
    pub(crate) fn decode_miss<V>(&self, encoding: Encoding, detail: &str) {
        self.p.counters.decode_misses.inc();
        if let Some(type_name) = self.first_warning::<V>(true) {
            tracing::warn!(
                type_name,
                %encoding,
                detail,
                "a stored value does not decode as the requested type: a miss (the next store \
                 replaces it); warned once per type"
            );
        }
    }

    /// Counts a loaded value the codec could not encode (returned uncached), and warns once
    /// per type.
    pub(crate) fn unencodable<V>(&self, error: &Error) {
        self.p.counters.unencodable.inc();
        if let Some(type_name) = self.first_warning::<V>(false) {
            tracing::warn!(
                type_name,
                %error,
                "a loaded value cannot be encoded by the cache's codec: returned, not cached; \
                 warned once per type"
            );
        }
    }

    /// Sets `key` (already resolved) to `value`, encoded as `encoding`, expiring after `ttl`
    /// (`None`: never), worth `cost` per hit, under the cache's write policy.
    #[tracing::instrument(level = "trace", name = "set", skip_all, fields(key_len = key.len(), value_len = value.len()))]
    pub(crate) async fn set(
        &self,
        key: &[u8],
        value: Arc<[u8]>,
        ttl: Option<Duration>,
        cost: u64,
        encoding: Encoding,
    ) -> Result<()> {
        self.set_as(key, value, ttl, cost, encoding, SetKind::Ordinary, None)
            .await
    }

    /// [`Tiers::set`] without queueing the value for the shared tier: a lease leader's
    /// answer, which it then writes there inline (SHARED_TIER.md section 8), not twice.
    /// Returns, with the result, what the inline write needs: the token of the store (0 when
    /// nothing was stored or there is no shared tier), which makes the inline write stand down
    /// when a `set` or `remove` of the key came after this store; the entry's metadata; and
    /// the cell through which the disk writer and the inline write encode the entry once.
    pub(crate) async fn set_unshared(
        &self,
        key: &[u8],
        value: Arc<[u8]>,
        ttl: Option<Duration>,
        cost: u64,
        encoding: Encoding,
    ) -> (Result<()>, LeaderStore) {
        let mut store = LeaderStore::default();
        let r = self
            .set_as(
                key,
                value,
                ttl,
                cost,
                encoding,
                SetKind::Unshared,
                Some(&mut store),
            )
            .await;
        (r, store)
    }

    /// [`Tiers::set`] that waits for the write as under write-through, whatever the write
    /// policy: `Ok` only once the entry is on disk, else [`Error::NotPersisted`] (a namespace's
    /// new generation).
    pub(crate) async fn set_durable(
        &self,
        key: &[u8],
        value: Arc<[u8]>,
        ttl: Option<Duration>,
        encoding: Encoding,
    ) -> Result<()> {
        self.set_as(key, value, ttl, 0, encoding, SetKind::Durable, None)
            .await
    }

    /// `leader`: a lease leader's answer, told the shared queue's token of this store (see
    /// `SharedQueue::mark_leader`, taken in the critical section that orders the store), the
    /// entry's metadata and the disk write's cell.
    #[allow(
        clippy::too_many_arguments,
        reason = "the private worker behind the four public set paths"
    )]
    async fn set_as(
        &self,
        key: &[u8],
        value: Arc<[u8]>,
        ttl: Option<Duration>,
        cost: u64,
        encoding: Encoding,
        kind: SetKind,
        leader: Option<&mut LeaderStore>,
    ) -> Result<()> {
        let durable = kind == SetKind::Durable;
        self.check_open()?;
        self.check_key(key)?;
        if value.len() > self.config.max_entry_bytes {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.config.max_entry_bytes,
            });
        }
        // The only await before any change: waiting for room in the write queue. While
        // memory-only nothing is queued (the writer would only skip it): entries stay dirty in
        // the hot tier and are written back on recovery.
        let permit = if self.p.gate.in_use() {
            match self.p.queue.reserve(key.len(), value.len()).await {
                Some(p) => Some(p),
                None => return Err(Error::Closed),
            }
        } else {
            None
        };
        let now = self.p.clock.now_ms();
        let ttl_ms = ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let meta = EntryMeta {
            created_ms: self.p.freshness.created_now(),
            expires_ms: ttl_ms.map_or(0, |t| now.saturating_add(t).max(1)),
            cost,
            encoding,
        };
        let hash = key_hash(key);
        let admitted = self.p.hot.admits(key.len(), value.len());
        let hot_value = value.clone();
        #[cfg(feature = "redis")]
        let shared_value = value.clone();
        // The entry file, encoded once for the disk and the shared tier (`warm::encoded`):
        // wanted when both will store it.
        #[cfg(feature = "redis")]
        let encoded = (self.shared.is_some()
            && permit.is_some()
            && self.p.gate.store.encodes_at_level(key.len(), value.len()))
        .then(EncodedEntry::new);
        #[cfg(not(feature = "redis"))]
        let encoded: Option<Arc<EncodedEntry>> = None;
        #[cfg(feature = "redis")]
        let shared_encoded = encoded.clone();
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let leader = leader.map(|l| {
            l.meta = meta;
            l.encoded.clone_from(&encoded);
            &l.token
        });
        let ack = durable || self.config.write_policy == WritePolicy::WriteThrough;
        // Under the queue lock: the version, the hot tier, and (below) the queued write.
        let into_hot = |view: &QueueView<'_>| {
            let version = self.p.hot.next_version();
            if admitted {
                let entry = HotEntry {
                    unwritable: false,
                    value: hot_value,
                    expires_ms: meta.expires_ms,
                    cost,
                    encoding,
                    version,
                    dirty: true,
                    tombstone: false,
                };
                let evicted = self.p.hot.insert(key, entry).1;
                self.writer.on_evicted(view, evicted);
            } else {
                // Too big for the hot tier: drop any older hot value; the queue holds this one
                // until it is on disk.
                self.p.hot.remove(key);
            }
            // Queued to be shared under the same lock as its version: two `set`s of one key
            // reach the shared queue in the order they reached this replica.
            #[cfg(feature = "redis")]
            if let Some(shared) = &self.shared {
                if kind != SetKind::Unshared {
                    shared.share(
                        hash,
                        key,
                        shared_value.clone(),
                        meta,
                        shared_encoded.clone(),
                    );
                } else if let Some(t) = leader {
                    t.store(
                        shared.queue.mark_leader(hash),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            }
            version
        };
        let queued = permit.is_some();
        // A write-through caller starts its own job when it can (`Writer::claim_slot`).
        let claim = (ack && queued).then(|| self.writer.claim_slot()).flatten();
        let (rx, claimed) = match permit {
            Some(permit) => {
                let (_, rx, claimed) =
                    self.p
                        .queue
                        .commit_claiming(permit, hash, key.into(), ack, claim, |view| {
                            let version = into_hot(view);
                            (
                                Op::Put {
                                    value,
                                    meta,
                                    version,
                                    encoded,
                                },
                                (),
                            )
                        });
                (rx, claimed)
            }
            None => {
                let version = self.p.queue.locked(into_hot);
                if !admitted {
                    self.p.counters.lost_writes.inc();
                    self.p.freshness.mark_lost(hash, version, false);
                }
                (None, None)
            }
        };
        self.p.counters.sets.inc();
        if let Some((job, slot)) = claimed {
            self.writer.start_direct(job, slot);
        }
        self.acknowledge(ack, queued, rx).await
    }

    /// Write-through: `Ok` only once the operation (or a newer one of the key) is on disk.
    /// There is no timer here: waiting for a turn in the queue is backpressure, and a disk
    /// call that hangs is bounded by `io_timeout` in the gate, after which the writer tells
    /// the waiter "not written" (see `WriteQueue::mark_stuck`). Not written (failed,
    /// skipped, memory-only, hung, the cache closing) is [`Error::NotPersisted`]; the value is
    /// still served from memory and written when the disk is back.
    async fn acknowledge(
        &self,
        ack: bool,
        queued: bool,
        rx: Option<crate::queue::Ack>,
    ) -> Result<()> {
        if !ack {
            return Ok(());
        }
        let landed = match rx {
            Some(rx) => rx.await.unwrap_or(false),
            None => false,
        };
        if landed {
            return Ok(());
        }
        let reason = if !queued || self.p.gate.mode() == Mode::MemoryOnly {
            "memory-only mode: the disk tier is not in use".to_owned()
        } else {
            self.last_error_or("the disk call was not admitted (breaker open)")
        };
        Err(Error::NotPersisted {
            failed: 1,
            last_error: reason,
        })
    }

    #[tracing::instrument(level = "trace", name = "remove", skip_all)]
    pub(crate) async fn remove(&self, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        self.check_key(key)?;
        let permit = if self.p.gate.in_use() {
            match self.p.queue.reserve(key.len(), 0).await {
                Some(p) => Some(p),
                None => return Err(Error::Closed),
            }
        } else {
            None
        };
        let hash = key_hash(key);
        let queued_before = self.p.queue.lookup(&hash);
        let ack = self.config.write_policy == WritePolicy::WriteThrough;
        // Under the queue lock: the version, the tombstone, and (below) the queued delete.
        let into_hot = |view: &QueueView<'_>| {
            let version = self.p.hot.next_version();
            let tombstone = HotEntry {
                unwritable: false,
                value: Arc::from(&[][..]),
                expires_ms: 0,
                cost: 0,
                encoding: Encoding::Raw,
                version,
                dirty: true,
                tombstone: true,
            };
            let (old, evicted) = self.p.hot.insert(key, tombstone);
            self.writer.on_evicted(view, evicted);
            // Under the same lock as its version (see `set_as`).
            #[cfg(feature = "redis")]
            if let Some(shared) = &self.shared {
                shared.unshare(hash, key);
            }
            (old, version)
        };
        let queued = permit.is_some();
        let claim = (ack && queued).then(|| self.writer.claim_slot()).flatten();
        let (old, rx, claimed) = match permit {
            Some(permit) => {
                self.p
                    .queue
                    .commit_claiming(permit, hash, key.into(), ack, claim, |view| {
                        let (old, version) = into_hot(view);
                        (Op::Delete { version }, old)
                    })
            }
            None => (self.p.queue.locked(into_hot).0, None, None),
        };
        self.p.counters.removes.inc();
        if let Some((job, slot)) = claimed {
            self.writer.start_direct(job, slot);
        }
        self.acknowledge(ack, queued, rx).await?;
        let had_hot = old.is_some_and(|e| !e.tombstone);
        let had_queued = matches!(queued_before, Some(Op::Put { .. }));
        Ok(had_hot || had_queued)
    }

    #[tracing::instrument(level = "debug", name = "clear", skip_all)]
    pub(crate) async fn clear(&self) -> Result<()> {
        self.check_open()?;
        // Entries created before the fence are cleared; those set from now on are created at
        // or after it (`created_now`). The lost keys go: the fence covers their older files.
        self.p.freshness.clear();
        // The write-through callers of the operations the clear drops hear Ok once the fence
        // is on disk (below), not before: until then a restart serves the keys' older files.
        // On any early return they are dropped: "not written".
        let superseded = self.p.queue.cancel_queued();
        self.p.queue.locked(|_| self.p.hot.clear());
        // Writes calling the disk now finish first (the gate below), and none starts until the
        // clear is done, so a write made after the clear began is never deleted by it. Waiting
        // for the gate, not for an empty queue: under a steady load the queue is never empty.
        // A write that timed out (a hung disk) is not waited for; a write made before the
        // clear that lands after it is deleted by the writer (`cleared_since`), and until then
        // it is stale for reads.
        let _no_writes = self.writer.pause().await;
        if !self.p.gate.in_use() {
            return Err(Error::NotPersisted {
                failed: 1,
                last_error: "the disk tier is not in use; its entries were not deleted".into(),
            });
        }
        // The fence first: once it is on disk, no process that opens the directory serves
        // an entry made before the clear, even if deleting the files fails.
        if !self.p.freshness.persist_fence(&self.p.gate).await {
            return Err(Error::NotPersisted {
                failed: 1,
                last_error: "the clear could not be recorded on disk (the fence); this process \
                             still serves none of the cleared entries"
                    .into(),
            });
        }
        for w in superseded {
            let _ = w.send(true);
        }
        let outcome = self.p.gate.run(|fs, store| store.clear(fs)).await;
        self.p.gate.note("clear", &outcome);
        if !matches!(outcome, DiskOutcome::Done { value: Ok(()), .. }) {
            // Recorded by the fence: the files left are never served, and are evicted or
            // swept like any other.
            tracing::warn!(
                "clear: the fence is on disk, but some entry files could not be deleted"
            );
        }
        Ok(())
    }

    /// Flushes the disk tier (see `TieredCache::flush`), then drains the shared write queue
    /// within its bound (feature `redis`; what it drops is counted, never an error).
    #[tracing::instrument(level = "debug", name = "flush", skip_all)]
    pub(crate) async fn flush(&self) -> Result<()> {
        self.flush_then(false).await
    }

    /// [`Tiers::flush`] before a close: the shared tier's kept removals are sent even while
    /// their resend is deferred (see `SharedTier::flush`).
    pub(crate) async fn flush_for_close(&self) -> Result<()> {
        self.flush_then(true).await
    }

    async fn flush_then(&self, at_close: bool) -> Result<()> {
        #[cfg(not(feature = "redis"))]
        let _ = at_close;
        let disk = self.flush_disk().await;
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            if disk.as_ref().is_err_and(|e| matches!(e, Error::Closed)) {
                return disk;
            }
            let dropped = shared.flush(at_close).await;
            if dropped > 0 {
                tracing::debug!(
                    target: crate::shared::tier::TARGET,
                    dropped,
                    "flush: shared writes dropped (the shared tier is best-effort)"
                );
            }
        }
        disk
    }

    async fn flush_disk(&self) -> Result<()> {
        self.check_open()?;
        // Everything set or removed before this call has a version below `before`, and its
        // operation already queued (a version and its operation are made together, under the
        // queue lock).
        let before = self.p.queue.locked(|_| self.p.hot.version_watermark());
        {
            // A write-back being queued (after a recovery) is part of what this flush waits
            // for. With the disk in use, entries whose earlier write failed (and older files
            // of keys whose newest value was lost) get another attempt now: `close` drains
            // what is pending, not only what is queued.
            let _gate = self.writer.write_back_lock().await;
            if self.p.gate.in_use() && self.p.gate.breaker_state() == BreakerState::Closed {
                if self.p.gate.store.stranded() > 0 {
                    let outcome = self
                        .p
                        .gate
                        .run(|fs, store| {
                            store.restore_stranded(fs);
                            Ok(())
                        })
                        .await;
                    self.p.gate.note("restore", &outcome);
                }
                self.writer.write_back_gated().await;
            }
        }
        // Waits for those and for the write-back just queued.
        let upto = self.p.queue.seq();
        self.p.queue.wait(Some(upto)).await;
        let not_persisted = self.not_persisted_before(before, upto);
        if not_persisted == 0 {
            return Ok(());
        }
        let last_error = if !self.p.gate.in_use() {
            "memory-only mode: the disk tier is not in use".to_owned()
        } else if self.p.gate.breaker_state() == BreakerState::Open {
            "the circuit breaker is open: the disk is not called".to_owned()
        } else {
            self.last_error_or(crate::disk::TOO_LARGE_FOR_THE_BUDGET)
        };
        Err(Error::NotPersisted {
            failed: not_persisted,
            last_error,
        })
    }

    /// The last disk error's text, or `fallback` when no disk call has failed.
    fn last_error_or(&self, fallback: &str) -> String {
        self.p
            .gate
            .last_error()
            .unwrap_or_else(|| fallback.to_owned())
    }

    /// Operations with a hot version below `before` that are not on disk: writes held up by
    /// one that timed out, dirty entries, writes still pending (queued after `upto`), each key
    /// once; keys whose last value was lost before it reached the disk; a `clear` not yet
    /// recorded on disk. Each dirty entry is checked again, so a write that completed after
    /// the snapshot (the writer marks the entry clean before it releases the slot) is not
    /// counted.
    fn not_persisted_before(&self, before: u64, upto: u64) -> u64 {
        // Held up by a write that timed out: counted once, here.
        let mut counted = self.p.queue.stuck_upto(upto);
        for (key, snap) in self.p.hot.dirty_entries() {
            if snap.version >= before {
                continue;
            }
            let hash = key_hash(&key);
            if counted.contains(&hash) {
                continue;
            }
            // Dirty now means not on disk now, whatever is queued for it: everything queued
            // before the flush has been waited for, and a write queued since (a write-back
            // after the breaker closed) has not landed yet.
            let still_dirty = self
                .p
                .hot
                .peek(&key)
                .is_some_and(|e| e.dirty && e.version == snap.version);
            if still_dirty {
                counted.insert(hash);
            }
        }
        // A write-back queued since (not waited for) of an entry the hot tier has evicted
        // meanwhile: neither dirty in memory nor lost (the queue holds its version), and not
        // on disk. Asked after the hot tier: once its write ends it is on disk, or lost (its
        // entry gone), which the freshness record below counts.
        let pending = self.p.queue.pending_below(before);
        let n = counted.len() + pending.difference(&counted).count();
        n as u64
            + self.p.freshness.not_persisted_before(before)
            // Newer entries a judged removal took aside and could not put back yet.
            + self.p.gate.store.stranded() as u64
    }

    /// A snapshot of the counters and the parts' state.
    pub(crate) fn stats(&self) -> Stats {
        self.p.counters.snapshot(self)
    }
}

impl Gauges for Tiers {
    fn hot_entries(&self) -> u64 {
        self.p.hot.len() as u64
    }
    fn hot_bytes(&self) -> u64 {
        self.p.hot.bytes() as u64
    }
    fn hot_capacity_bytes(&self) -> u64 {
        self.p.hot.max_bytes() as u64
    }
    fn hot_capacity_entries(&self) -> u64 {
        self.p.hot.max_entries() as u64
    }
    fn hot_live_hits(&self) -> (u64, u64) {
        self.p.hot.live_hits()
    }
    fn dirty_entries(&self) -> u64 {
        self.p.hot.dirty_count() as u64
    }
    fn warm_usage(&self) -> (u64, u64, bool) {
        self.p.gate.store.usage()
    }
    fn warm_disk_bytes(&self) -> u64 {
        self.p.gate.store.disk_usage()
    }
    fn warm_compaction_backlog(&self) -> u64 {
        self.p.gate.store.backlog().len() as u64
    }
    fn warm_capacity_bytes(&self) -> u64 {
        self.config.warm_capacity_bytes
    }
    fn write_queue(&self) -> (u64, u64) {
        self.p.queue.depth()
    }
    fn mode(&self) -> Mode {
        self.p.gate.mode()
    }
    fn breaker_state(&self) -> BreakerState {
        self.p.gate.breaker_state()
    }
    fn memory_only_ms(&self) -> u64 {
        self.p.gate.res.memory_only_ms()
    }
    fn last_disk_error(&self) -> Option<String> {
        self.p.gate.last_error()
    }
    fn lost(&self) -> (u64, u64) {
        self.p.freshness.lost_counts()
    }
    #[cfg(feature = "redis")]
    fn shared_state(&self) -> Option<BreakerState> {
        self.shared.as_ref().map(|s| s.state())
    }
    #[cfg(feature = "redis")]
    fn shared_queue(&self) -> (u64, u64) {
        self.shared.as_ref().map_or((0, 0), |s| s.depth())
    }
    #[cfg(feature = "redis")]
    fn namespace_invalidations_pending(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.pending_count())
    }
    #[cfg(not(feature = "redis"))]
    fn shared_state(&self) -> Option<BreakerState> {
        None
    }
    #[cfg(not(feature = "redis"))]
    fn shared_queue(&self) -> (u64, u64) {
        (0, 0)
    }
    #[cfg(not(feature = "redis"))]
    fn namespace_invalidations_pending(&self) -> u64 {
        0
    }
}
