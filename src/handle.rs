//! The `TieredCache` handle: builds the parts, spawns their tasks, and offers the public
//! API. Keys are resolved here (a [`RequestKey`](crate::RequestKey) to its namespace's
//! current generation); everything else is delegated to the tiers (`cache.rs`).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::agent::state::AgentState;
use crate::answer::{Answer, Source};
use crate::breaker::BreakerState;
use crate::cache::Tiers;
use crate::clock::Clock;
use crate::codec::{self, Encoding};
use crate::compactor::compactor_task;
use crate::config::{Config, Durability};
use crate::disk::DiskGate;
use crate::error::Result;
use crate::freshness::Freshness;
use crate::fs::Fs;
use crate::hot::HotTier;
use crate::key::{Key, KeyRef, Resolved};
use crate::log;
use crate::maintenance::maintenance_task;
use crate::parts::Parts;
use crate::queue::WriteQueue;
use crate::resilience::mode::Resilience;
use crate::resilience::recovery::{recovery_task, Recovery};
use crate::stats::{Counters, Mode, Stats};
use crate::supervise::spawn_supervised;
use crate::sync::lock;
use crate::warm::format::Limits;
use crate::warm::quarantine::QuarantineLimits;
use crate::warm::store::{StoreConfig, WarmStore};
use crate::writer::{watchdog_task, writer_task, Writer};

/// A tiered cache: a memory LRU in front of a gzip-compressed disk tier.
///
/// **Call [`close`](TieredCache::close) before the process exits**: it writes what is queued
/// and reports what is not on disk. Dropping the last handle without `close` leaves the queued
/// writes to background tasks that stop with the tokio runtime (returning from `main` ends
/// them mid-queue); a warning event (`pending_writes`, `queued`) says how many were left.
///
/// A cheap handle: clone it freely and share it across tasks. Background tasks (the writer,
/// the sweeps) stop on [`TieredCache::close`] or when the last handle is dropped.
#[derive(Clone)]
pub struct TieredCache {
    pub(crate) tiers: Arc<Tiers>,
    /// What the handles own together; two pointers in all, so a clone is two reference
    /// counts.
    pub(crate) life: Arc<Lifetime>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("root", &self.tiers.config().root)
            .field("hot", self.tiers.hot_for_debug())
            .finish()
    }
}

/// What the handles of one cache own together: the state of the agent features, the
/// background tasks, and the signal that stops them (sent by `close`, or when the last handle
/// drops).
pub(crate) struct Lifetime {
    /// The tiers, to say what is left pending when the last handle drops without `close`.
    tiers: Arc<Tiers>,
    /// State of the agent features (loads in flight, namespace generations).
    pub(crate) agent: AgentState,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        if self.tiers.check_open().is_ok() {
            let (pending_writes, queued) = self.tiers.pending_writes();
            if pending_writes > 0 || queued > 0 {
                tracing::warn!(
                    target: log::CACHE,
                    pending_writes,
                    queued,
                    "the last handle was dropped without close: writes not on disk are left to \
                     background tasks, which stop with the runtime; call close to wait for them"
                );
            }
        }
        let _ = self.shutdown.send(true);
    }
}

impl TieredCache {
    /// Builds the parts, prepares the directory, reads the fence and spawns the writer, the
    /// maintenance task and recovery, each with only the parts it uses.
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
                space_wait: crate::warm::space::SPACE_WAIT_MAX.min(config.io_timeout / 2),
                compact_later: config.compress_in_background,
            },
            counters.clone(),
        ));
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
        let fence_written = store.fence_written();
        let gate = Arc::new(DiskGate::new(
            fs,
            store,
            counters.clone(),
            config.io_timeout,
            res,
        ));
        let parts = Parts {
            clock: clock.clone(),
            hot,
            queue: Arc::new(WriteQueue::new(config.write_queue_bytes)),
            gate: gate.clone(),
            freshness: Arc::new(Freshness::new(clock.clone()).sharing_fence_written(fence_written)),
            counters: counters.clone(),
        };
        let writer = Arc::new(Writer::new(parts.clone(), config.write_concurrency));
        let recovery = Arc::new(Recovery::new(
            writer.clone(),
            config.health_interval,
            config.recovery_interval,
        ));
        // Directory layout and temp sweep happen before `open` returns; both are small. A
        // failing disk here degrades the cache, it does not fail the caller.
        let now = clock.now_ms();
        let prepared = gate
            .run(move |fs, store| {
                store.prepare_dirs(fs)?;
                store.detect_nowait_reads(fs);
                store.sweep_temp(fs, now)
            })
            .await;
        gate.note("open", &prepared);
        if prepared.ok().is_some() {
            gate.migrate_legacy_layout().await;
        }
        parts.freshness.load_fence(&gate).await;
        let (tx, rx) = watch::channel(false);
        #[cfg(feature = "metrics")]
        let counters_for_metrics = counters.clone();
        let tasks = vec![
            spawn_supervised("writer", counters.clone(), {
                let (writer, rx) = (writer.clone(), rx.clone());
                move || writer_task(writer.clone(), rx.clone())
            }),
            spawn_supervised("watchdog", counters.clone(), {
                let (writer, rx) = (writer.clone(), rx.clone());
                move || watchdog_task(writer.clone(), rx.clone())
            }),
            spawn_supervised("maintenance", counters.clone(), {
                let (gate, clock, rx) = (gate.clone(), clock.clone(), rx.clone());
                let every = config.sweep_interval;
                move || maintenance_task(gate.clone(), clock.clone(), every, rx.clone())
            }),
            spawn_supervised("compactor", counters.clone(), {
                let (writer, rx) = (writer.clone(), rx.clone());
                move || compactor_task(writer.clone(), rx.clone())
            }),
            spawn_supervised("resilience", counters.clone(), {
                let rx = rx.clone();
                move || recovery_task(recovery.clone(), rx.clone())
            }),
        ];
        info!(target: log::CACHE, root = %config.root.display(), "answercache opened");
        #[cfg(feature = "redis")]
        let (shared, tasks) = {
            let mut tasks = tasks;
            let shared = open_shared(&config, &counters, &clock)?;
            if let Some(tier) = &shared {
                tasks.push(spawn_supervised("shared-drain", counters.clone(), {
                    let (tier, rx) = (tier.clone(), rx.clone());
                    move || crate::shared::tasks::drain_task(tier.clone(), rx.clone())
                }));
                tasks.push(spawn_supervised("shared-probe", counters.clone(), {
                    let (tier, rx) = (tier.clone(), rx.clone());
                    move || crate::shared::tasks::probe_task(tier.clone(), rx.clone())
                }));
            }
            (shared, tasks)
        };
        let tiers = Arc::new(Tiers::new(
            config,
            parts,
            writer,
            #[cfg(feature = "redis")]
            shared,
        ));
        #[cfg(feature = "metrics")]
        let tasks = {
            let mut tasks = tasks;
            let (t, rx) = (tiers.clone(), rx.clone());
            tasks.push(spawn_supervised(
                "metrics",
                counters_for_metrics,
                move || metrics_task(t.clone(), rx.clone()),
            ));
            tasks
        };
        let agent = AgentState::default();
        #[cfg(feature = "redis")]
        let tasks = {
            let mut tasks = tasks;
            if tiers.shared().is_some() {
                // Invalidations still pending when this directory was last open: known before
                // any namespace is used or synced (disk only, never the server).
                agent.namespaces.resume(&tiers).await;
                let (t, ns, rx) = (tiers.clone(), agent.namespaces.clone(), rx.clone());
                tasks.push(spawn_supervised(
                    "namespace-sync",
                    tiers.counters_arc(),
                    move || {
                        crate::agent::shared_sync::namespace_sync_task(
                            t.clone(),
                            ns.clone(),
                            rx.clone(),
                        )
                    },
                ));
            }
            tasks
        };
        #[cfg(not(any(feature = "metrics", feature = "redis")))]
        drop(rx);
        Ok(TieredCache {
            tiers: tiers.clone(),
            life: Arc::new(Lifetime {
                tiers: tiers.clone(),
                agent,
                shutdown: tx,
                tasks: Mutex::new(tasks),
            }),
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
        // A plain key is its own stored key: no resolving future to build and poll before the
        // synchronous hot check (on a hot hit, that future cost as much as the lookup).
        let key = match key.key_ref() {
            KeyRef::Plain(bytes) => Cow::Borrowed(bytes),
            KeyRef::Request(_) => self.resolve(&key).await?,
        };
        let tiers = &self.tiers;
        if let Some(hit) = tiers.try_hot(&key) {
            return match codec::decode::<V>(hit.encoding, &hit.value) {
                Ok(v) => Ok(Some(Answer::new(v, Source::Hot, hit.encoding))),
                Err(detail) => {
                    // The hot tier counted the hit under its lock: take it back.
                    tiers.undo_hot_hit(&key, hit.cost);
                    tiers.decode_miss::<V>(hit.encoding, &detail);
                    tiers.counters().misses.inc();
                    Ok(None)
                }
            };
        }
        let Some(found) = tiers.lookup(&key, true).await? else {
            return Ok(None);
        };
        match codec::decode::<V>(found.encoding, &found.value) {
            Ok(v) => {
                tiers.count_hit(&found);
                Ok(Some(Answer::new(v, found.source, found.encoding)))
            }
            Err(detail) => {
                tiers.decode_miss::<V>(found.encoding, &detail);
                tiers.counters().misses.inc();
                Ok(None)
            }
        }
    }

    /// Gets the stored bytes of a value, whatever its encoding (the JSON text of a value set
    /// with the JSON codec). `Ok(None)` on a miss.
    pub async fn get_bytes(&self, key: impl Key) -> Result<Option<Arc<[u8]>>> {
        // A plain key's hot hit is served before any nested future is built; its miss goes
        // on to the lookup (no second hot check).
        if let KeyRef::Plain(bytes) = key.key_ref() {
            if let Some(hit) = self.tiers.try_hot(bytes) {
                return Ok(Some(hit.value));
            }
            return Ok(self.lookup_bytes(bytes).await?.map(Answer::into_value));
        }
        Ok(self.get_bytes_answer(key).await?.map(Answer::into_value))
    }

    /// [`get_bytes`](Self::get_bytes), with how the value was served and its encoding.
    pub async fn get_bytes_answer(&self, key: impl Key) -> Result<Option<Answer<Arc<[u8]>>>> {
        // As in `get_answer`: no resolving future for a plain key.
        let key = match key.key_ref() {
            KeyRef::Plain(bytes) => Cow::Borrowed(bytes),
            KeyRef::Request(_) => self.resolve(&key).await?,
        };
        if let Some(hit) = self.tiers.try_hot(&key) {
            return Ok(Some(Answer::new(hit.value, Source::Hot, hit.encoding)));
        }
        self.lookup_bytes(&key).await
    }

    /// The rest of a `get_bytes` once the hot fast path missed: the full lookup.
    async fn lookup_bytes(&self, key: &[u8]) -> Result<Option<Answer<Arc<[u8]>>>> {
        Ok(self.tiers.lookup(key, true).await?.map(|found| {
            self.tiers.count_hit(&found);
            Answer::new(found.value, found.source, found.encoding)
        }))
    }

    /// Sets a value, encoded with the cache's [`Codec`](crate::Codec) (JSON unless the builder
    /// chose otherwise), with the default TTL. [`Error::Encode`](crate::Error::Encode) for a value the codec
    /// cannot carry (nothing is changed).
    ///
    /// With [`WritePolicy::WriteBehind`](crate::WritePolicy::WriteBehind) (the default) it returns once the value is in memory
    /// and its write is queued (waiting for room in the queue first: backpressure). With
    /// [`WritePolicy::WriteThrough`](crate::WritePolicy::WriteThrough) it returns `Ok` only once the entry is durable, and
    /// [`Error::NotPersisted`](crate::Error::NotPersisted) when the write did not reach the disk (failed, skipped while
    /// the breaker is open or the cache memory-only, or a disk call that hung past
    /// `io_timeout`): the value is still served from memory and written when the disk is
    /// back. The same holds for every `set_*` method and for [`TieredCache::remove`].
    pub async fn set<V: Serialize + ?Sized>(&self, key: impl Key, value: &V) -> Result<()> {
        self.set_encoded(key, value, self.tiers.config().default_ttl)
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
        let codec = self.tiers.config().codec;
        let bytes = codec::encode(codec, value)?;
        let key = self.resolve(&key).await?;
        self.tiers
            .set(&key, bytes.into(), ttl, 0, codec.into())
            .await
    }

    /// Sets raw bytes, with the default TTL. `get_bytes` returns them unchanged; a typed
    /// `get` reads them as JSON text.
    pub async fn set_bytes(&self, key: impl Key, value: impl AsRef<[u8]>) -> Result<()> {
        let key = self.resolve(&key).await?;
        self.tiers
            .set(
                &key,
                value.as_ref().into(),
                self.tiers.config().default_ttl,
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
        self.tiers
            .set(&key, value.as_ref().into(), Some(ttl), 0, Encoding::Raw)
            .await
    }

    /// Removes a key from both tiers. Returns whether the hot tier or the write queue held it
    /// (the disk is not read to find out).
    pub async fn remove(&self, key: impl Key) -> Result<bool> {
        let key = self.resolve(&key).await?;
        self.tiers.remove(&key).await
    }

    /// The bytes `key` is stored under: itself for a plain key; for a [`RequestKey`], its key
    /// in its namespace's current generation (so the namespace's `invalidate` drops it).
    pub(crate) async fn resolve<'k>(&self, key: &'k impl Key) -> Result<Resolved<'k>> {
        match key.key_ref() {
            KeyRef::Plain(bytes) => Ok(Cow::Borrowed(bytes)),
            KeyRef::Request(rk) => Ok(Cow::Owned(
                self.life
                    .agent
                    .namespaces
                    .slot(rk.namespace())?
                    .stored_key(&self.tiers, rk.namespace(), rk.as_str().as_bytes())
                    .await?,
            )),
        }
    }

    /// Removes every entry from both tiers (foreign files in the directory are left alone).
    /// The clear is recorded on disk first (the fence, see FORMAT.md): once `clear` returns
    /// `Ok`, no entry set before it is ever served again, by this process or any process that
    /// opens the directory later, even if some entry files could not be deleted.
    /// [`Error::NotPersisted`](crate::Error::NotPersisted) when the fence could not be written (or the fence already on
    /// disk could not be read: it may be later than this clear's, and is never lowered; or an
    /// older fence write of this process, given up after `io_timeout`, has not returned): this process still never
    /// serves an entry created before the clear, and `flush`/`close` report the clear until
    /// the fence is on disk. Writes in flight finish first, except one whose disk call timed
    /// out: if it lands later, the writer deletes it. A write-through `set` or `remove` whose
    /// operation the clear drops from the queue returns once the fence is on disk (`Ok`), or
    /// the clear failed to write it (`NotPersisted`).
    pub async fn clear(&self) -> Result<()> {
        self.tiers.clear().await
    }

    /// Makes every `set`/`remove` made before the call durable, or says what is not.
    ///
    /// With the disk in use, it first queues another attempt for entries whose earlier write
    /// failed, then waits for every write queued before the call (including the write-back of
    /// a recovery that has already switched the mode back). `Ok` only if everything set or
    /// removed before the call is on disk; writes made by other tasks while it runs are not
    /// counted. Otherwise [`Error::NotPersisted`](crate::Error::NotPersisted), counting: entries still only in memory
    /// (the disk failed or is not in use; they are retried when it is back), keys whose last
    /// value was lost from memory before it reached the disk (until they are set or removed
    /// again; `Stats::lost_keys`), writes held up by a disk call that timed out and has not
    /// returned (not waited for: a disk that never answers cannot hang `flush`), and a
    /// `clear` not yet recorded on disk.
    pub async fn flush(&self) -> Result<()> {
        self.tiers.flush().await
    }

    /// Flushes, then stops the background tasks. Further calls return [`Error::Closed`](crate::Error::Closed).
    /// Returns what the flush returned: after `Ok`, a cache reopened on the directory serves
    /// no value older than the last one set, and no removed or cleared key.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.tiers.flush_for_close().await;
        self.tiers.mark_closed();
        // Removals whose `DEL` the shared server has not taken (it is away): forgotten with
        // this process, counted as dropped (RELIABILITY.md).
        #[cfg(feature = "redis")]
        if let Some(shared) = self.tiers.shared() {
            shared.abandon_pending_dels();
        }
        let _ = self.life.shutdown.send(true);
        let tasks = std::mem::take(&mut *lock(&self.life.tasks));
        for t in tasks {
            let _ = t.await;
        }
        // Entries still waiting for their compression stay stored: counted as written so.
        self.tiers.close_backlog();
        info!(target: log::CACHE, root = %self.tiers.config().root.display(), "answercache closed");
        flushed
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.tiers.mode()
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.tiers.breaker_state()
    }

    /// The shared tier's breaker state (feature `redis`): `None` without a shared tier. It
    /// starts Open and turns Closed once the server answers a `PING`; Open means "local
    /// tiers only".
    #[cfg(feature = "redis")]
    pub fn shared_state(&self) -> Option<BreakerState> {
        self.tiers.shared().map(|s| s.state())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.tiers.stats()
    }

    /// The cache directory.
    pub fn root(&self) -> &std::path::Path {
        &self.tiers.config().root
    }
}

#[cfg(feature = "metrics")]
impl TieredCache {
    /// Publishes every [`Stats`] figure through the [`metrics`] facade now (feature
    /// `metrics`; the cache also publishes every
    /// [`metrics_interval`](crate::Builder::metrics_interval)). The names, kinds and labels:
    ///
    #[doc = include_str!("../docs/METRICS.md")]
    pub fn publish_metrics(&self) {
        crate::publish::publish(
            &self.tiers.stats(),
            &self.tiers.config().metrics_name,
            self.tiers.published(),
        );
    }
}

/// The shared tier of `config`, if any (feature `redis`): its store (a lazily connecting
/// Redis client, or a test store) behind a new tier. Connects to nothing.
#[cfg(feature = "redis")]
fn open_shared(
    config: &Config,
    counters: &Arc<Counters>,
    clock: &Arc<dyn Clock>,
) -> Result<Option<Arc<crate::shared::tier::SharedTier>>> {
    use crate::shared::config::Backend;
    let Some(shared) = &config.shared else {
        return Ok(None);
    };
    let store: Arc<dyn crate::shared::store::SharedStore> = match &shared.backend {
        Backend::Redis(info) => Arc::new(
            crate::shared::redis_store::RedisStore::new((**info).clone(), shared.timeout)
                .map_err(|e| crate::Error::Config(format!("shared tier: {e}")))?,
        ),
        Backend::Store(store) => store.clone(),
    };
    Ok(Some(Arc::new(crate::shared::tier::SharedTier::new(
        store,
        shared.clone(),
        config.shared_single_flight,
        counters.clone(),
        Limits {
            max_key_bytes: config.max_key_bytes,
            max_entry_bytes: config.max_entry_bytes,
        },
        config.compression_level,
        clock.clone(),
    ))))
}

/// Publishes the metrics every `metrics_interval` until shutdown.
#[cfg(feature = "metrics")]
async fn metrics_task(tiers: Arc<Tiers>, mut shutdown: watch::Receiver<bool>) {
    let every = tiers.config().metrics_interval;
    loop {
        tokio::select! {
            _ = crate::clock::sleep_or_never(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        crate::publish::publish(
            &tiers.stats(),
            &tiers.config().metrics_name,
            tiers.published(),
        );
    }
}
