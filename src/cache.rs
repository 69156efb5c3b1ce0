//! The `TieredCache` handle: get/set/remove orchestration across the hot tier, the write
//! queue and the warm tier.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::answer::{Answer, Source};
use crate::breaker::BreakerState;
use crate::builder::{Builder, Config, Durability, WritePolicy};
use crate::clock::Clock;
use crate::codec;
use crate::codec::Encoding;
use crate::degraded::{resilience_task, Resilience};
use crate::disk::{Disk, DiskOutcome};
use crate::error::{Error, Result};
use crate::fs::{Fs, IoErrorKind};
use crate::hot::LiveHit;
use crate::hot::{Evicted, HotEntry, HotTier};
use crate::key::{Key, KeyRef, Resolved};
use crate::queue::{Op, QueueView, WriteQueue};
use crate::stats::{self, Counters, Mode, Stats};
use crate::supervise::spawn_supervised;
use crate::warm::format::{EntryMeta, Limits};
use crate::warm::layout::{key_hash, KeyHash};
use crate::warm::quarantine::QuarantineLimits;
use crate::warm::store::{ReadOutcome, StoreConfig, WarmStore};
use std::borrow::Cow;

/// A tiered cache: a memory LRU in front of a gzip-compressed disk tier.
///
/// A cheap handle: clone it freely and share it across tasks. Background tasks (the writer,
/// the sweeps) stop on [`TieredCache::close`] or when the last handle is dropped; on drop,
/// queued writes are still written in the background while the runtime lives.
#[derive(Clone)]
pub struct TieredCache {
    pub(crate) inner: Arc<Inner>,
    _life: Arc<Lifetime>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("root", &self.inner.config.root)
            .field("hot", &self.inner.hot)
            .finish()
    }
}

/// Dropped with the last handle: tells the background tasks to finish.
struct Lifetime {
    shutdown: watch::Sender<bool>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hot: Arc<HotTier>,
    pub(crate) queue: WriteQueue,
    pub(crate) disk: Disk,
    pub(crate) counters: Arc<Counters>,
    /// State of the agent features (loads in flight, namespace generations).
    pub(crate) agent: Arc<crate::agent::AgentState>,
    closed: AtomicBool,
    /// Entries created before this time (unix ms) are treated as cleared. Set by `clear`, so
    /// that a disk clear that failed cannot bring old answers back in this process.
    cleared_before_ms: AtomicU64,
    /// The fence on disk (`<root>/fence`, read at open, written by `persist_fence`): entries
    /// created before it are cleared for every process that opens the directory. Below
    /// `cleared_before_ms` while a `clear` (or the overflow of `stale`) is not yet on disk;
    /// `flush` and `close` report that.
    fence_persisted_ms: AtomicU64,
    /// Whether the fence on disk has been read (or replaced by one of this process). Until
    /// then nothing is served from the disk (see `load_fence`).
    fence_known: AtomicBool,
    /// The fence read from disk (0 before it is known): every write of this process is made
    /// after it, so entries are written with a creation time no earlier than it (`run_job`)
    /// even when they were set before it could be read, or by a clock behind it.
    pub(crate) fence_loaded_ms: AtomicU64,
    /// Keys whose latest value (or removal) was lost from memory before it reached the disk
    /// (set in `mark_stale`): a disk file (or a queued write) of such a key is older than what
    /// the caller last set, so it is a miss, never served.
    /// Write-back deletes that file (`Op::Purge`, then `purged`), so that a restart cannot
    /// serve it either. The entry stays until a newer write or removal of the key lands (or a
    /// `clear`): until then the key's last value is not on disk, and `flush` says so.
    /// Bounded by [`STALE_KEYS_MAX`]; past that, the fence moves to now instead (every older
    /// file is a miss, for this process and, once the fence is on disk, after a restart), and
    /// `flush` reports the overflow until the next `clear`.
    pub(crate) stale: Mutex<HashMap<KeyHash, Lost>>,
    /// More keys were lost than `stale` holds (see there); reset by `clear`.
    lost_overflow: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Types already warned about: `(true, _)` a stored value that did not decode as it,
    /// `(false, _)` a loaded value the codec could not encode.
    warned_types: Mutex<std::collections::HashSet<(bool, &'static str)>>,
    /// Held while the mode switches back to tiered and the dirty entries are queued for
    /// write-back, and by `flush` before it looks at the queue: a `flush` that sees the
    /// recovered mode also waits for the write-back that recovery started.
    pub(crate) write_back_gate: tokio::sync::Mutex<()>,
    /// Write jobs hold it shared while they call the disk; `clear` holds it exclusively
    /// while it records the fence and deletes the entry files, so that a write made after the
    /// clear began is never deleted by it.
    pub(crate) clear_gate: tokio::sync::RwLock<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    shutdown: watch::Receiver<bool>,
}

type BoxTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Bound on keys remembered as stale on disk.
const STALE_KEYS_MAX: usize = 100_000;

/// A key whose latest value (or removal) was lost from memory before it reached the disk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lost {
    /// The lost hot-tier version.
    pub version: u64,
    /// The key's older file has been deleted (`Op::Purge` landed).
    pub purged: bool,
    /// The version had expired (its TTL passed) before it reached the disk: once the older
    /// file is deleted the disk is right ("absent"), and the mark is dropped.
    pub expired: bool,
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub value: Arc<[u8]>,
    pub expires_ms: u64,
    pub cost: u64,
    pub encoding: Encoding,
    /// Hot, warm or queue.
    pub source: Source,
}

impl TieredCache {
    /// A builder for a cache under `root`.
    pub fn builder(root: impl Into<std::path::PathBuf>) -> Builder {
        Builder::new(root)
    }

    /// Opens a cache under `root` with every default.
    pub async fn open(root: impl Into<std::path::PathBuf>) -> Result<TieredCache> {
        Builder::new(root).build().await
    }

    pub(crate) async fn open_with(
        config: Config,
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
    ) -> Result<TieredCache> {
        let counters = Arc::new(Counters::default());
        let store = Arc::new(WarmStore::new(
            &config.root,
            StoreConfig {
                limits: Limits {
                    max_key_bytes: config.max_key_bytes,
                    max_entry_bytes: config.max_entry_bytes,
                },
                compression_level: config.compression_level,
                sync: config.durability == Durability::Fsync,
                page_cache_reads: config.page_cache_reads,
                capacity_bytes: config.warm_capacity_bytes,
                min_free_bytes: config.min_free_bytes,
                quarantine: QuarantineLimits {
                    max_files: config.quarantine_max_files,
                    max_bytes: config.quarantine_max_bytes,
                },
            },
            counters.clone(),
        ));
        let (tx, rx) = watch::channel(false);
        let hot = Arc::new(HotTier::new(
            config.hot_shards,
            config.hot_capacity_bytes,
            config.hot_capacity_entries,
        ));
        let res = Arc::new(Resilience::new(
            config.breaker.clone(),
            config.memory_only_after,
            config.error_window,
            hot.clone(),
            counters.clone(),
        ));
        let inner = Arc::new(Inner {
            hot,
            queue: WriteQueue::new(config.write_queue_bytes),
            disk: Disk {
                fs,
                store,
                counters: counters.clone(),
                io_timeout: config.io_timeout,
                res,
            },
            counters,
            agent: Arc::default(),
            clock,
            closed: AtomicBool::new(false),
            cleared_before_ms: AtomicU64::new(0),
            fence_persisted_ms: AtomicU64::new(0),
            fence_known: AtomicBool::new(false),
            fence_loaded_ms: AtomicU64::new(0),
            stale: Mutex::new(HashMap::new()),
            lost_overflow: AtomicBool::new(false),
            write_back_gate: tokio::sync::Mutex::new(()),
            clear_gate: tokio::sync::RwLock::new(()),
            last_error: Mutex::new(None),
            warned_types: Mutex::default(),
            tasks: Mutex::new(Vec::new()),
            shutdown: rx,
            config,
        });
        // Directory layout and temp sweep happen before `open` returns; both are small. A
        // failing disk here degrades the cache, it does not fail the caller.
        let now = inner.clock.now_ms();
        let prepared = inner
            .disk
            .run(move |fs, store| {
                store.prepare_dirs(fs)?;
                store.detect_nowait_reads(fs);
                store.sweep_temp(fs, now)
            })
            .await;
        inner.note_outcome("open", &prepared);
        inner.load_fence().await;
        let supervised = |name, task: fn(Arc<Inner>) -> _| {
            let inner = inner.clone();
            spawn_supervised(name, inner.counters.clone(), move || task(inner.clone()))
        };
        let tasks = vec![
            supervised("writer", |i| {
                Box::pin(crate::writer::writer_task(i)) as BoxTask
            }),
            supervised("maintenance", |i| Box::pin(maintenance_task(i)) as BoxTask),
            supervised("resilience", |i| Box::pin(resilience_task(i)) as BoxTask),
        ];
        *lock(&inner.tasks) = tasks;
        info!(root = %inner.config.root.display(), "tiercache opened");
        Ok(TieredCache {
            inner,
            _life: Arc::new(Lifetime { shutdown: tx }),
        })
    }

    /// Gets a value and decodes it as `V`. `Ok(None)` on a miss. A stored value that does not
    /// decode as `V` (the type changed, or another type shares the key) is a miss too,
    /// counted in `Stats::decode_misses` (never a hit), and the entry is left as it is: the
    /// next `set` replaces it. See [`Codec`](crate::Codec) for what each codec reads back.
    /// `V` must be `Serialize` too: a bincode value is checked by the shape of what it
    /// decodes to (bincode's bytes name nothing, so a changed type could decode from them).
    pub async fn get<V: Serialize + DeserializeOwned>(&self, key: impl Key) -> Result<Option<V>> {
        Ok(self.get_answer(key).await?.map(Answer::into_value))
    }

    /// [`get`](Self::get), with how the value was served ([`Source::Hot`], [`Source::Warm`]
    /// or [`Source::Queue`]) and its encoding.
    pub async fn get_answer<V: Serialize + DeserializeOwned>(
        &self,
        key: impl Key,
    ) -> Result<Option<Answer<V>>> {
        let key = self.resolve(&key).await?;
        let inner = &self.inner;
        if let Some(hit) = inner.try_hot(&key) {
            return match codec::decode::<V>(hit.encoding, &hit.value) {
                Ok(v) => Ok(Some(Answer::new(v, Source::Hot, hit.encoding))),
                Err(detail) => {
                    // The hot tier counted the hit under its lock: take it back.
                    inner.hot.undo_live_hit(&key, hit.cost);
                    inner.decode_miss::<V>(hit.encoding, &detail);
                    inner.counters.misses.inc();
                    Ok(None)
                }
            };
        }
        let Some(found) = inner.lookup(&key, true).await? else {
            return Ok(None);
        };
        match codec::decode::<V>(found.encoding, &found.value) {
            Ok(v) => {
                inner.count_hit(&found);
                Ok(Some(Answer::new(v, found.source, found.encoding)))
            }
            Err(detail) => {
                inner.decode_miss::<V>(found.encoding, &detail);
                inner.counters.misses.inc();
                Ok(None)
            }
        }
    }

    /// Gets the stored bytes of a value, whatever its encoding (the JSON text of a value set
    /// with the JSON codec). `Ok(None)` on a miss.
    pub async fn get_bytes(&self, key: impl Key) -> Result<Option<Arc<[u8]>>> {
        Ok(self.get_bytes_answer(key).await?.map(Answer::into_value))
    }

    /// [`get_bytes`](Self::get_bytes), with how the value was served and its encoding.
    pub async fn get_bytes_answer(&self, key: impl Key) -> Result<Option<Answer<Arc<[u8]>>>> {
        let key = self.resolve(&key).await?;
        if let Some(hit) = self.inner.try_hot(&key) {
            return Ok(Some(Answer::new(hit.value, Source::Hot, hit.encoding)));
        }
        Ok(self.inner.lookup(&key, true).await?.map(|found| {
            self.inner.count_hit(&found);
            Answer::new(found.value, found.source, found.encoding)
        }))
    }

    /// Sets a value, encoded with the cache's [`Codec`](crate::Codec) (JSON unless the builder
    /// chose otherwise), with the default TTL. [`Error::Encode`] for a value the codec
    /// cannot carry (nothing is changed).
    ///
    /// With [`WritePolicy::WriteBehind`] (the default) it returns once the value is in memory
    /// and its write is queued (waiting for room in the queue first: backpressure). With
    /// [`WritePolicy::WriteThrough`] it returns `Ok` only once the entry is durable, and
    /// [`Error::NotPersisted`] when the write did not reach the disk (failed, skipped while
    /// the breaker is open or the cache memory-only, or a disk call that hung past
    /// `io_timeout`): the value is still served from memory and written when the disk is
    /// back. The same holds for every `set_*` method and for [`TieredCache::remove`].
    pub async fn set<V: Serialize + ?Sized>(&self, key: impl Key, value: &V) -> Result<()> {
        self.set_encoded(key, value, self.inner.config.default_ttl)
            .await
    }

    /// Sets a value that expires after `ttl`.
    pub async fn set_with_ttl<V: Serialize + ?Sized>(
        &self,
        key: impl Key,
        value: &V,
        ttl: Duration,
    ) -> Result<()> {
        self.set_encoded(key, value, Some(ttl)).await
    }

    async fn set_encoded<V: Serialize + ?Sized>(
        &self,
        key: impl Key,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let codec = self.inner.config.codec;
        let bytes = codec::encode(codec, value)?;
        let key = self.resolve(&key).await?;
        self.inner
            .store(&key, bytes.into(), ttl, 0, codec.into())
            .await
    }

    /// Sets raw bytes, with the default TTL. `get_bytes` returns them unchanged; a typed
    /// `get` reads them as JSON text.
    pub async fn set_bytes(&self, key: impl Key, value: impl AsRef<[u8]>) -> Result<()> {
        let key = self.resolve(&key).await?;
        self.inner
            .store(
                &key,
                value.as_ref().into(),
                self.inner.config.default_ttl,
                0,
                Encoding::Raw,
            )
            .await
    }

    /// Sets raw bytes that expire after `ttl`.
    pub async fn set_bytes_with_ttl(
        &self,
        key: impl Key,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<()> {
        let key = self.resolve(&key).await?;
        self.inner
            .store(&key, value.as_ref().into(), Some(ttl), 0, Encoding::Raw)
            .await
    }

    /// Removes a key from both tiers. Returns whether the hot tier or the write queue held it
    /// (the disk is not read to find out).
    pub async fn remove(&self, key: impl Key) -> Result<bool> {
        let key = self.resolve(&key).await?;
        self.inner.remove(&key).await
    }

    /// The bytes `key` is stored under: itself for a plain key; for a [`RequestKey`], its key
    /// in its namespace's current generation (so the namespace's `invalidate` drops it).
    pub(crate) async fn resolve<'k>(&self, key: &'k impl Key) -> Result<Resolved<'k>> {
        match key.key_ref() {
            KeyRef::Plain(bytes) => Ok(Cow::Borrowed(bytes)),
            KeyRef::Request(rk) => Ok(Cow::Owned(
                self.namespace(rk.namespace())?
                    .stored_key(rk.as_str().as_bytes())
                    .await?,
            )),
        }
    }

    /// Removes every entry from both tiers (foreign files in the directory are left alone).
    /// The clear is recorded on disk first (the fence, see FORMAT.md): once `clear` returns
    /// `Ok`, no entry set before it is ever served again, by this process or any process that
    /// opens the directory later, even if some entry files could not be deleted.
    /// [`Error::NotPersisted`] when the fence could not be written: this process still never
    /// serves an entry created before the clear, and `flush`/`close` report the clear until
    /// the fence is on disk. Writes in flight finish first, except one whose disk call timed
    /// out: if it lands later, the writer deletes it.
    pub async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }

    /// Makes every `set`/`remove` made before the call durable, or says what is not.
    ///
    /// With the disk in use, it first queues another attempt for entries whose earlier write
    /// failed, then waits for every write queued before the call (including the write-back of
    /// a recovery that has already switched the mode back). `Ok` only if everything set or
    /// removed before the call is on disk; writes made by other tasks while it runs are not
    /// counted. Otherwise [`Error::NotPersisted`], counting: entries still only in memory
    /// (the disk failed or is not in use; they are retried when it is back), keys whose last
    /// value was lost from memory before it reached the disk (until they are set or removed
    /// again; `Stats::lost_keys`), writes held up by a disk call that timed out and has not
    /// returned (not waited for: a disk that never answers cannot hang `flush`), and a
    /// `clear` not yet recorded on disk.
    pub async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    /// Flushes, then stops the background tasks. Further calls return [`Error::Closed`].
    /// Returns what the flush returned: after `Ok`, a cache reopened on the directory serves
    /// no value older than the last one set, and no removed or cleared key.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.inner.flush().await;
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.disk.store.begin_close();
        let _ = self._life.shutdown.send(true);
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for t in tasks {
            let _ = t.await;
        }
        info!(root = %self.inner.config.root.display(), "tiercache closed");
        flushed
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.inner.disk.res.mode()
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.disk.res.breaker_state()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The cache directory.
    pub fn root(&self) -> &std::path::Path {
        &self.inner.config.root
    }
}

pub(crate) use crate::sync::lock;

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > self.config.max_key_bytes {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.config.max_key_bytes,
            });
        }
        Ok(())
    }

    /// The creation time of an entry made now: never before the fence, so that an entry set
    /// in the same millisecond as, and after, a `clear` is not taken for a cleared one.
    pub(crate) fn created_now(&self) -> u64 {
        self.clock
            .now_ms()
            .max(self.cleared_before_ms.load(Ordering::Relaxed))
    }

    /// Whether the fence in memory (a `clear`, or the overflow of the stale-key map) is not
    /// yet on disk: a restart would not know it.
    pub(crate) fn fence_pending(&self) -> bool {
        self.cleared_before_ms.load(Ordering::Relaxed)
            > self.fence_persisted_ms.load(Ordering::Relaxed)
    }

    /// Writes the fence to disk if it is pending. Returns whether none is pending now.
    pub(crate) async fn persist_fence(&self) -> bool {
        let fence = self.cleared_before_ms.load(Ordering::Relaxed);
        if fence <= self.fence_persisted_ms.load(Ordering::Relaxed) {
            return true;
        }
        let outcome = self
            .disk
            .run(move |fs, store| store.write_fence(fs, fence))
            .await;
        self.note_outcome("fence", &outcome);
        if matches!(outcome, DiskOutcome::Done { value: Ok(()), .. }) {
            self.fence_persisted_ms.fetch_max(fence, Ordering::Relaxed);
            // The fence on disk is now this process's, whatever was there before.
            self.fence_known.store(true, Ordering::Release);
        }
        !self.fence_pending()
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

    /// Records that version `version` of `hash`, its latest, was lost before reaching the disk.
    pub(crate) fn mark_stale(&self, hash: KeyHash, version: u64) {
        self.mark_lost(hash, version, false);
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
            self.cleared_before_ms
                .fetch_max(now.saturating_add(1), Ordering::Relaxed);
        }
    }

    /// Reads the fence (at open, and before a disk read while it is not known). Until it has
    /// been read, no entry is served from the disk: the disk may hold entries that a `clear`
    /// removed. A fence that is damaged (not merely unreadable now) makes every entry created
    /// before now a miss, and is written again: a miss is acceptable, serving an entry a
    /// `clear` removed is not. Returns whether the fence is known.
    pub(crate) async fn load_fence(&self) -> bool {
        if self.fence_known.load(Ordering::Acquire) {
            return true;
        }
        let outcome = self.disk.run(|fs, store| store.read_fence(fs)).await;
        self.note_outcome("fence", &outcome);
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
                tracing::warn!("the fence file is damaged: entries made before now are misses");
                self.cleared_before_ms
                    .fetch_max(self.clock.now_ms(), Ordering::Relaxed);
            }
            _ => return false,
        }
        self.fence_known.store(true, Ordering::Release);
        true
    }

    /// Whether the disk tier is in use (the breaker may still refuse a call).
    pub(crate) fn disk_allowed(&self) -> bool {
        self.disk.res.mode() == Mode::Tiered
    }

    /// Records a failed disk operation's error text for `flush`/`close` reports.
    pub(crate) fn note_outcome<T>(&self, what: &str, outcome: &DiskOutcome<T>) {
        let text = match outcome {
            DiskOutcome::Done { value: Err(e), .. } => format!("{what}: {e}"),
            DiskOutcome::Done {
                device_failure: Some(kind),
                ..
            } => format!("{what}: {kind} error"),
            DiskOutcome::TimedOut => {
                format!("{what}: timed out after {:?}", self.config.io_timeout)
            }
            _ => return,
        };
        debug!(error = %text, "disk operation failed");
        *lock(&self.last_error) = Some(text);
    }

    /// The synchronous fast path of `get`: a live hot hit, without building the lookup future
    /// (profiled: that future and a full entry clone were most of a hot hit's cost).
    pub(crate) fn try_hot(&self, key: &[u8]) -> Option<LiveHit> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        // Counted by the hot tier itself (see `HotTier::live_hits`).
        self.hot.get_live(key, || self.clock.now_ms())
    }

    #[tracing::instrument(level = "trace", name = "get", skip_all, fields(key_len = key.len()))]
    pub(crate) async fn lookup(&self, key: &[u8], count_miss: bool) -> Result<Option<Found>> {
        let miss = || {
            if count_miss {
                self.counters.misses.inc();
            }
        };
        self.check_open()?;
        self.check_key(key)?;
        let now = self.clock.now_ms();
        match self.hot.get(key, now) {
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
                self.counters.hot_expirations.inc();
                let hash = key_hash(key);
                self.queue.locked(|view| {
                    if view
                        .pending_version(&hash)
                        .is_none_or(|v| v < expired.version)
                    {
                        self.mark_lost(hash, expired.version, true);
                    }
                });
                miss();
                return Ok(None);
            }
            Some(Err(_expired)) => self.counters.hot_expirations.inc(),
            None => {}
        }
        let stamp = self.hot.stamp(key);
        let hash = key_hash(key);
        match self.queue.lookup(&hash) {
            Some(Op::Put { value, meta, .. })
                if !meta.is_expired(now) && !self.is_stale(&hash, meta.created_ms) =>
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
        if !self.disk_allowed() || !self.load_fence().await {
            miss();
            return Ok(None);
        }
        let owned_key: Arc<[u8]> = key.into();
        let outcome = self
            .disk
            .run_inline_first(
                |fs, store| store.read_inline(fs, key, &hash, now),
                move |fs, store, read| match read {
                    Some(data) => store.read_prefetched(fs, &owned_key, &hash, data, now),
                    None => store.read(fs, &owned_key, &hash, now),
                },
            )
            .await;
        self.note_outcome("read", &outcome);
        let decoded = match outcome.ok() {
            Some(ReadOutcome::Hit(d)) if !self.is_stale(&hash, d.meta.created_ms) => d,
            _ => {
                miss();
                return Ok(None);
            }
        };
        let found = Found {
            value: decoded.value.into(),
            expires_ms: decoded.meta.expires_ms,
            cost: decoded.meta.cost,
            encoding: decoded.meta.encoding,
            source: Source::Warm,
        };
        if self.hot.admits(key.len(), found.value.len()) {
            let entry = HotEntry {
                unwritable: false,
                value: found.value.clone(),
                expires_ms: found.expires_ms,
                cost: found.cost,
                encoding: found.encoding,
                version: self.hot.next_version(),
                dirty: false,
                tombstone: false,
            };
            self.queue.locked(|view| {
                if let Some(evicted) = self.hot.promote(key, entry, stamp) {
                    self.on_evicted(view, evicted);
                }
            });
        }
        Ok(Some(found))
    }

    /// Counts a lookup's find as a hit of its source, with its cost saved. Called once the
    /// caller has decoded the value: one that does not decode is a miss, not a hit.
    pub(crate) fn count_hit(&self, found: &Found) {
        match found.source {
            Source::Warm => self.counters.warm_hits.inc(),
            Source::Queue => self.counters.queue_hits.inc(),
            _ => self.counters.hot_hits.inc(),
        }
        self.counters.cost_saved.add(found.cost);
    }

    /// Counts a stored value that did not decode as `V`, and warns once per type.
    pub(crate) fn decode_miss<V>(&self, encoding: Encoding, detail: &str) {
        self.counters.decode_misses.inc();
        let type_name = std::any::type_name::<V>();
        if lock(&self.warned_types).insert((true, type_name)) {
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
        self.counters.unencodable.inc();
        let type_name = std::any::type_name::<V>();
        if lock(&self.warned_types).insert((false, type_name)) {
            tracing::warn!(
                type_name,
                %error,
                "a loaded value cannot be encoded by the cache's codec: returned, not cached; \
                 warned once per type"
            );
        }
    }

    #[tracing::instrument(level = "trace", name = "set", skip_all, fields(key_len = key.len(), value_len = value.len()))]
    pub(crate) async fn store(
        &self,
        key: &[u8],
        value: Arc<[u8]>,
        ttl: Option<Duration>,
        cost: u64,
        encoding: Encoding,
    ) -> Result<()> {
        self.put(key, value, ttl, cost, encoding, false).await
    }

    /// `store`, and with `durable` the call waits for the write as under write-through
    /// (whatever the write policy): `Ok` only once the entry is on disk, else
    /// [`Error::NotPersisted`].
    pub(crate) async fn put(
        &self,
        key: &[u8],
        value: Arc<[u8]>,
        ttl: Option<Duration>,
        cost: u64,
        encoding: Encoding,
        durable: bool,
    ) -> Result<()> {
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
        let permit = if self.disk_allowed() {
            match self.queue.reserve(key.len(), value.len()).await {
                Some(p) => Some(p),
                None => return Err(Error::Closed),
            }
        } else {
            None
        };
        let now = self.clock.now_ms();
        let ttl_ms = ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let meta = EntryMeta {
            created_ms: self.created_now(),
            expires_ms: ttl_ms.map_or(0, |t| now.saturating_add(t).max(1)),
            cost,
            encoding,
        };
        let hash = key_hash(key);
        let admitted = self.hot.admits(key.len(), value.len());
        let hot_value = value.clone();
        let ack = durable || self.config.write_policy == WritePolicy::WriteThrough;
        // Under the queue lock: the version, the hot tier, and (below) the queued write.
        let into_hot = |view: &QueueView<'_>| {
            let version = self.hot.next_version();
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
                let evicted = self.hot.insert(key, entry).1;
                self.on_evicted(view, evicted);
            } else {
                // Too big for the hot tier: drop any older hot value; the queue holds this one
                // until it is on disk.
                self.hot.remove(key);
            }
            version
        };
        let queued = permit.is_some();
        let rx = match permit {
            Some(permit) => {
                self.queue
                    .commit(permit, hash, key.into(), ack, |view| {
                        let version = into_hot(view);
                        (
                            Op::Put {
                                value,
                                meta,
                                version,
                            },
                            (),
                        )
                    })
                    .1
            }
            None => {
                let version = self.queue.locked(into_hot);
                if !admitted {
                    self.counters.lost_writes.inc();
                    self.mark_stale(hash, version);
                }
                None
            }
        };
        self.counters.sets.inc();
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
        let reason = if !queued || self.disk.res.mode() == Mode::MemoryOnly {
            "memory-only mode: the disk tier is not in use".to_owned()
        } else {
            lock(&self.last_error)
                .clone()
                .unwrap_or_else(|| "the disk call was not admitted (breaker open)".into())
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
        let permit = if self.disk_allowed() {
            match self.queue.reserve(key.len(), 0).await {
                Some(p) => Some(p),
                None => return Err(Error::Closed),
            }
        } else {
            None
        };
        let hash = key_hash(key);
        let queued_before = self.queue.lookup(&hash);
        let ack = self.config.write_policy == WritePolicy::WriteThrough;
        // Under the queue lock: the version, the tombstone, and (below) the queued delete.
        let into_hot = |view: &QueueView<'_>| {
            let version = self.hot.next_version();
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
            let (old, evicted) = self.hot.insert(key, tombstone);
            self.on_evicted(view, evicted);
            (old, version)
        };
        let queued = permit.is_some();
        let (old, rx) = match permit {
            Some(permit) => self.queue.commit(permit, hash, key.into(), ack, |view| {
                let (old, version) = into_hot(view);
                (Op::Delete { version }, old)
            }),
            None => (self.queue.locked(into_hot).0, None),
        };
        self.counters.removes.inc();
        self.acknowledge(ack, queued, rx).await?;
        let had_hot = old.is_some_and(|e| !e.tombstone);
        let had_queued = matches!(queued_before, Some(Op::Put { .. }));
        Ok(had_hot || had_queued)
    }

    /// Accounts for entries pushed out of the hot tier, with the queue locked (`view`) so the
    /// writer cannot finish a write between the eviction and this decision. A dirty entry is
    /// lost unless the queue holds its version or a newer one; an older write still in flight
    /// would land and leave an older value on disk, so a lost key is marked stale.
    fn on_evicted(&self, view: &QueueView<'_>, evicted: Vec<Evicted>) {
        if evicted.is_empty() {
            return;
        }
        self.counters.hot_evictions.add(evicted.len() as u64);
        for ev in evicted {
            if !ev.entry.dirty {
                continue;
            }
            let hash = key_hash(&ev.key);
            if view
                .pending_version(&hash)
                .is_some_and(|v| v >= ev.entry.version)
            {
                continue;
            }
            let expired = ev.entry.expires_ms != 0 && self.clock.now_ms() >= ev.entry.expires_ms;
            if expired {
                self.mark_lost(hash, ev.entry.version, true);
                continue;
            }
            // Counted, not logged: under memory pressure this happens per request.
            self.counters.lost_writes.inc();
            self.mark_stale(hash, ev.entry.version);
        }
    }

    #[tracing::instrument(level = "debug", name = "clear", skip_all)]
    pub(crate) async fn clear(&self) -> Result<()> {
        self.check_open()?;
        // Entries created before the fence are cleared; those set from now on are created at
        // or after it (`created_now`).
        let fence = self.clock.now_ms().saturating_add(1);
        self.cleared_before_ms.fetch_max(fence, Ordering::Relaxed);
        // The fence covers every older file of a key whose newest value was lost, and no key
        // has a last value set before the clear.
        lock(&self.stale).clear();
        self.lost_overflow.store(false, Ordering::Relaxed);
        self.queue.cancel_queued();
        self.queue.locked(|_| self.hot.clear());
        // Writes calling the disk now finish first (the gate below), and none starts until the
        // clear is done, so a write made after the clear began is never deleted by it. Waiting
        // for the gate, not for an empty queue: under a steady load the queue is never empty.
        // A write that timed out (a hung disk) is not waited for; a write made before the
        // clear that lands after it is deleted by the writer (`cleared_since`), and until then
        // it is stale for reads.
        let _no_writes = self.clear_gate.write().await;
        if !self.disk_allowed() {
            return Err(Error::NotPersisted {
                failed: 1,
                last_error: "the disk tier is not in use; its entries were not deleted".into(),
            });
        }
        // The fence first: once it is on disk, no process that opens the directory serves
        // an entry made before the clear, even if deleting the files fails.
        if !self.persist_fence().await {
            return Err(Error::NotPersisted {
                failed: 1,
                last_error: "the clear could not be recorded on disk (the fence); this process \
                             still serves none of the cleared entries"
                    .into(),
            });
        }
        let outcome = self.disk.run(|fs, store| store.clear(fs)).await;
        self.note_outcome("clear", &outcome);
        if !matches!(outcome, DiskOutcome::Done { value: Ok(()), .. }) {
            // Recorded by the fence: the files left are never served, and are evicted or
            // swept like any other.
            tracing::warn!(
                "clear: the fence is on disk, but some entry files could not be deleted"
            );
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "flush", skip_all)]
    pub(crate) async fn flush(&self) -> Result<()> {
        self.check_open()?;
        // Everything set or removed before this call has a version below `before`, and its
        // operation already queued (a version and its operation are made together, under the
        // queue lock).
        let before = self.queue.locked(|_| self.hot.version_watermark());
        {
            // A write-back being queued (after a recovery) is part of what this flush waits
            // for. With the disk in use, entries whose earlier write failed (and older files
            // of keys whose newest value was lost) get another attempt now: `close` drains
            // what is pending, not only what is queued.
            let _gate = self.write_back_gate.lock().await;
            if self.disk_allowed() && self.disk.res.breaker_state() == BreakerState::Closed {
                if self.disk.store.stranded() > 0 {
                    let outcome = self
                        .disk
                        .run(|fs, store| {
                            store.restore_stranded(fs);
                            Ok(())
                        })
                        .await;
                    self.note_outcome("restore", &outcome);
                }
                self.write_back_gated().await;
            }
        }
        // Waits for those and for the write-back just queued.
        let upto = self.queue.seq();
        self.queue.wait(Some(upto)).await;
        let not_persisted = self.not_persisted_before(before, upto);
        if not_persisted == 0 {
            return Ok(());
        }
        let last_error = if !self.disk_allowed() {
            "memory-only mode: the disk tier is not in use".to_owned()
        } else if self.disk.res.breaker_state() == BreakerState::Open {
            "the circuit breaker is open: the disk is not called".to_owned()
        } else {
            lock(&self.last_error)
                .clone()
                .unwrap_or_else(|| "values larger than the warm budget live in memory only".into())
        };
        Err(Error::NotPersisted {
            failed: not_persisted,
            last_error,
        })
    }

    /// Operations with a hot version below `before` that are not on disk: dirty entries with
    /// no write pending, keys whose last value was lost before it reached the disk, and a
    /// `clear` not yet recorded on disk. Each dirty
    /// entry is checked again under the queue lock, so a write that completed after the
    /// snapshot (the writer marks the entry clean before it releases the slot) is not
    /// counted.
    fn not_persisted_before(&self, before: u64, upto: u64) -> u64 {
        // Held up by a write that timed out: counted once, here.
        let stuck = self.queue.stuck_upto(upto);
        let mut n = stuck.len() as u64;
        for (key, snap) in self.hot.dirty_entries() {
            if snap.version >= before {
                continue;
            }
            let hash = key_hash(&key);
            if stuck.contains(&hash) {
                continue;
            }
            // Dirty now means not on disk now, whatever is queued for it: everything queued
            // before the flush has been waited for, and a write queued since (a write-back
            // after the breaker closed) has not landed yet.
            let still_dirty = self
                .hot
                .peek(&key)
                .is_some_and(|e| e.dirty && e.version == snap.version);
            n += u64::from(still_dirty);
        }
        n + lock(&self.stale)
            .values()
            .filter(|l| l.version < before)
            .count() as u64
            + u64::from(self.fence_pending())
            + u64::from(self.lost_overflow.load(Ordering::Relaxed))
            // Newer entries a judged removal took aside and could not put back yet.
            + self.disk.store.stranded() as u64
    }

    /// A receiver that turns true when the cache shuts down.
    pub(crate) fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// While memory-only: free-space check, write, fsync, read back, verify and delete a probe
    /// file. On success: tiered mode, breaker closed, dirty entries written back, then the hot
    /// budget back to normal (what no longer fits is on disk by then). Returns whether the disk
    /// is back.
    #[tracing::instrument(level = "debug", name = "recovery_probe", skip_all)]
    pub(crate) async fn recovery_probe(&self) -> bool {
        self.counters.probes_run.inc();
        let outcome = self.disk.run_unchecked(|fs, store| store.probe(fs)).await;
        self.note_outcome("recovery probe", &outcome);
        if !matches!(
            outcome,
            DiskOutcome::Done {
                value: Ok(()),
                device_failure: None
            }
        ) {
            debug!("recovery probe failed; staying memory-only");
            return false;
        }
        self.counters.probes_ok.inc();
        let gate = self.write_back_gate.lock().await;
        self.disk.res.recover();
        let upto_before = self.queue.seq();
        let queued = self.write_back_gated().await;
        drop(gate);
        if queued > 0 {
            let upto = self.queue.seq().max(upto_before);
            self.queue.wait(Some(upto)).await;
        }
        self.queue.locked(|view| {
            let evicted = self.disk.res.restore_budget();
            self.on_evicted(view, evicted);
        });
        true
    }

    /// While tiered: the same probe through the breaker, so a sick disk opens it (and a
    /// half-open breaker gets its probe call without waiting for traffic). A passing check
    /// also writes back entries whose earlier write failed.
    #[tracing::instrument(level = "debug", name = "health_check", skip_all)]
    pub(crate) async fn health_check(&self) {
        if self.disk.res.breaker_state() == BreakerState::Open {
            return;
        }
        self.counters.health_checks.inc();
        let outcome = self.disk.run(|fs, store| store.probe(fs)).await;
        self.note_outcome("health check", &outcome);
        if matches!(
            outcome,
            DiskOutcome::Done {
                value: Ok(()),
                device_failure: None
            }
        ) {
            self.write_back().await;
        }
    }

    fn stats(&self) -> Stats {
        let mode = self.disk.res.mode();
        let breaker_state = self.disk.res.breaker_state();
        let c = &self.counters;
        let (warm_entries, warm_bytes, scanned) = self.disk.store.usage();
        let (depth, qbytes) = self.queue.depth();
        let (live_hits, live_cost) = self.hot.live_hits();
        let bytes_in = c.bytes_in.get();
        let bytes_out = c.bytes_out.get();
        let corrupted = stats::by_name(&c.corrupted, crate::warm::Corruption::ALL, |r| r.name());
        let disk_errors = stats::by_name(&c.disk_errors, IoErrorKind::ALL, |k| k.name());
        let (stale_keys_pending, lost_keys) = {
            let stale = lock(&self.stale);
            let pending = stale.values().filter(|l| !l.purged).count();
            (pending as u64, stale.len() as u64)
        };
        Stats {
            hot_hits: c.hot_hits.get() + live_hits,
            warm_hits: c.warm_hits.get(),
            inline_reads: c.inline_reads.get(),
            queue_hits: c.queue_hits.get(),
            misses: c.misses.get(),
            decode_misses: c.decode_misses.get(),
            joined: c.joined.get(),
            bypasses: c.bypasses.get(),
            unencodable: c.unencodable.get(),
            sets: c.sets.get(),
            removes: c.removes.get(),
            hot_entries: self.hot.len() as u64,
            hot_bytes: self.hot.bytes() as u64,
            hot_capacity_bytes: self.hot.max_bytes() as u64,
            hot_capacity_entries: self.hot.max_entries() as u64,
            hot_evictions: c.hot_evictions.get(),
            hot_expirations: c.hot_expirations.get(),
            warm_entries,
            warm_bytes,
            warm_capacity_bytes: self.config.warm_capacity_bytes,
            warm_index_complete: scanned,
            warm_evictions: c.warm_evictions.get(),
            warm_expirations: c.warm_expirations.get(),
            writes_ok: c.writes_ok.get(),
            writes_failed: c.writes_failed.get(),
            writes_skipped: c.writes_skipped_too_large.get(),
            lost_writes: c.lost_writes.get(),
            bytes_written_uncompressed: bytes_in,
            bytes_written_compressed: bytes_out,
            compression_ratio: stats::ratio(bytes_in, bytes_out),
            disk_errors: disk_errors.values().sum(),
            disk_errors_by_kind: disk_errors,
            corrupted: corrupted.values().sum(),
            corrupted_by_reason: corrupted,
            quarantined_files: c.quarantined_files.get(),
            quarantined_bytes: c.quarantined_bytes.get(),
            newer_version_skipped: c.newer_version.get(),
            foreign_files: c.foreign_files.get(),
            temp_files_swept: c.temp_files_swept.get(),
            write_queue_depth: depth,
            write_queue_bytes: qbytes,
            dirty_entries: self.hot.dirty_count() as u64,
            cost_saved: c.cost_saved.get().saturating_add(live_cost),
            mode,
            breaker_state,
            breaker_transitions: c.breaker_transitions.get(),
            breaker_opens: c.breaker_opens.get(),
            written_back: c.written_back.get(),
            last_disk_error: lock(&self.last_error).clone(),
            breaker_rejections: c.breaker_rejections.get(),
            probes_run: c.probes_run.get(),
            probes_ok: c.probes_ok.get(),
            health_checks: c.health_checks.get(),
            memory_only_entries: c.memory_only_entries.get(),
            memory_only_ms: self.disk.res.memory_only_ms(),
            stale_served: c.stale_served.get(),
            loader_calls: c.loader_calls.get(),
            task_panics: c.task_panics.get(),
            stale_keys_purged: c.stale_keys_purged.get(),
            stale_keys_pending,
            lost_keys,
        }
    }
}

/// Merges the startup scan into the warm index, then sweeps expired entry files every
/// `sweep_interval` (retrying the scan if it failed).
async fn maintenance_task(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = crate::degraded::sleep_or_never(inner.config.sweep_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
        first = false;
        if *shutdown.borrow() {
            return;
        }
        if !inner.disk_allowed() {
            continue;
        }
        let scanned = inner.disk.store.usage().2;
        let now = inner.clock.now_ms();
        let walk = inner.disk.run_long(move |fs, store| {
            if scanned {
                store.sweep_expired(fs, now)
            } else {
                store.scan(fs)
            }
        });
        tokio::select! {
            outcome = walk => inner.note_outcome(if scanned { "sweep" } else { "scan" }, &outcome),
            _ = shutdown.changed() => {
                inner.disk.store.begin_close();
                return;
            }
        }
        if !scanned {
            continue;
        }
    }
}
