//! `get_or_insert_with`: single-flight loading.
//!
//! When many workers ask the same question at once, the model must be called once. On a miss
//! the first caller of a key becomes the *leader*: it runs its loader while later callers of
//! the key wait for the leader's outcome instead of calling theirs. The protocol:
//!
//! - A full bypass (`no_cache` + `no_store`) runs the caller's loader and returns its value:
//!   no lookup, no store, no flight (it neither joins nor leads one). Counted in
//!   `Stats::bypasses`.
//! - Every other call does one lookup first, unless `no_cache` is set. A hit (a value that
//!   decodes as the requested type) returns at once and is counted as one: hits never touch
//!   the flight table. A value that does not decode is a miss (`Stats::decode_misses`).
//! - On a miss the caller joins the key's flight, or starts one and leads it. A new leader
//!   looks at the hot tier once more (not counted): a previous leader may have stored the
//!   value between this caller's lookup and its joining.
//! - The leader's loader runs *inside the leader's own future* (no spawned task, so loaders
//!   need not be `'static`). On success the leader stores the value (subject to the
//!   controls), then removes the flight, then hands the value to the waiters: a caller that
//!   misses after the flight is gone finds the value in the cache.
//! - A loader error is given to every waiter as [`Error::Loader`], sharing the error itself
//!   (an `Arc`: the caller's error type need not be `Clone`, and every waiter can downcast it
//!   with [`Error::loader_error`]), and nothing is stored: the next call loads again.
//! - A value the cache's codec cannot encode (a NaN under JSON) is returned to the leader,
//!   not stored (`Stats::unencodable`); its waiters start over and load for themselves.
//! - The flight is owned by a guard. If the leader's future is dropped (the caller gave up),
//!   the guard removes the flight and tells the waiters, who start over: one of them leads
//!   and runs *its* loader. If the loader panics, the guard does the same while unwinding,
//!   but the waiters get an [`Error::Loader`] whose error [is a panic](crate::LoaderError::is_panic) instead of retrying (a loader that
//!   panics would most likely panic again in each of them). Either way the key is never
//!   wedged: the next call loads again.
//!
//! Accounting: a caller whose lookup found nothing is counted once its load settles: in
//! `Stats::misses` if it ran its loader, in `Stats::joined` if another caller's load served it
//! (it waited for that load, or, about to lead, found its value in the hot tier). So 50
//! identical concurrent calls read as 1 miss and 49 joined. `Stats::loader_calls` counts
//! loader runs, so *calls − loader_calls* is the number of model calls saved. A joined caller
//! has saved that load's cost too: it is added to `Stats::cost_saved` like a hit's. Each
//! call's [`Answer::source`](crate::Answer) says the same per call.
//!
//! Stale-if-error: the expired answer must still be at hand when the loader fails, but a
//! lookup drops an expired hot entry, and the warm tier deletes an expired file when it reads
//! it. So a call with `stale_if_error` first *peeks* at the hot tier (no recency change, no
//! removal). If the entry there has expired, the call skips the lookup, leaving the entry in
//! place: it stays the fallback for every later call until it
//! is replaced by a successful load, evicted, or read by a plain `get`. The leader hands its
//! fallback to the waiters with the error, so they all serve the same stale answer. The
//! fallback is served only if the loader fails and the entry is within `grace` of its expiry
//! (with `no_cache`, an entry that has not expired yet qualifies too: it is the best answer
//! left). Expired entries only on disk are not served stale: finding them would cost a disk
//! read per call on the hot path. No side copy is kept, so the feature costs no memory, and a
//! `remove`, `clear` or namespace invalidation takes the fallback away with the entry.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::debug;

use super::controls::Controls;
use super::flights::{wait, Fallback, Landing, Leader, Role};
use crate::answer::{Answer, Source};
use crate::cache::{Found, LeaderStore, Tiers};
use crate::codec::{self, Codec, Encoding};
use crate::error::{Error, LoaderError, Result};
use crate::handle::TieredCache;
use crate::key::Key;

/// What a loader may fail with: any error type (kept whole, so callers can downcast it),
/// `String`, `&str`, `anyhow::Error`, `Box<dyn Error + Send + Sync>`.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The hot tier's entry for `key`, peeked at (no recency change, no removal, not counted).
fn peek(tiers: &Tiers, key: &[u8]) -> Option<Fallback> {
    tiers
        .peek_hot(key)
        .filter(|e| !e.tombstone)
        .map(|e| Fallback {
            value: e.value,
            expires_ms: e.expires_ms,
            encoding: e.encoding,
        })
}

fn is_fresh(expires_ms: u64, now_ms: u64) -> bool {
    expires_ms == 0 || now_ms < expires_ms
}

/// How the values of one call become stored bytes and back: typed values through a codec,
/// bytes as they are.
trait Kind<V> {
    /// The stored bytes of `value` and their encoding.
    fn encode(&self, value: &V) -> Result<(Arc<[u8]>, Encoding)>;
    /// `bytes` (made with `encoding`) as a `V`; `Err` is a decode miss.
    fn decode(&self, bytes: &Arc<[u8]>, encoding: Encoding) -> std::result::Result<V, String>;
    /// The encoding a loaded value gets.
    fn encoding(&self) -> Encoding;
    /// Tells the loads of this kind apart from those of another for the same key.
    fn tag(&self) -> &'static str;
}

/// Typed values, stored with a codec.
struct Typed(Codec);

impl<V: Serialize + DeserializeOwned> Kind<V> for Typed {
    fn encode(&self, value: &V) -> Result<(Arc<[u8]>, Encoding)> {
        let bytes = codec::encode(self.0, value)?;
        // A loaded value is cached only if it reads back as itself.
        codec::check_reads_back::<V>(self.0, &bytes)?;
        Ok((bytes.into(), self.0.into()))
    }
    fn decode(&self, bytes: &Arc<[u8]>, encoding: Encoding) -> std::result::Result<V, String> {
        codec::decode(encoding, bytes)
    }
    fn encoding(&self) -> Encoding {
        self.0.into()
    }
    fn tag(&self) -> &'static str {
        std::any::type_name::<V>()
    }
}

/// Bytes, stored as they are ([`Encoding::Raw`]) and read back whatever their encoding.
struct Bytes;

impl Kind<Arc<[u8]>> for Bytes {
    fn encode(&self, value: &Arc<[u8]>) -> Result<(Arc<[u8]>, Encoding)> {
        Ok((value.clone(), Encoding::Raw))
    }
    fn decode(&self, bytes: &Arc<[u8]>, _: Encoding) -> std::result::Result<Arc<[u8]>, String> {
        Ok(bytes.clone())
    }
    fn encoding(&self) -> Encoding {
        Encoding::Raw
    }
    fn tag(&self) -> &'static str {
        "bytes"
    }
}

impl TieredCache {
    /// Returns the value of `key`, calling `loader` on a miss and storing its value, with at
    /// most one loader running per key across all concurrent callers in this process (the
    /// others wait for its value). Same as
    /// [`get_or_insert_with_controls`](Self::get_or_insert_with_controls) with default
    /// [`Controls`].
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// # let cache = answercache::TieredCache::open(dir.path()).await?;
    /// let answer: String = cache
    ///     .get_or_insert_with("capital of France?", || async {
    ///         Ok::<_, std::io::Error>("Paris".to_owned()) // the model call
    ///     })
    ///     .await?;
    /// assert_eq!(answer, "Paris");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_or_insert_with<V, F, Fut, E>(&self, key: impl Key, loader: F) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<BoxError>,
    {
        self.get_or_insert_answer(key, &Controls::new(), loader)
            .await
            .map(Answer::into_value)
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) under per-call [`Controls`].
    /// [`get_or_insert_answer`](Self::get_or_insert_answer) also says how the value was served.
    pub async fn get_or_insert_with_controls<V, F, Fut, E>(
        &self,
        key: impl Key,
        controls: &Controls<V>,
        loader: F,
    ) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<BoxError>,
    {
        self.get_or_insert_answer(key, controls, loader)
            .await
            .map(Answer::into_value)
    }

    /// The value of `key` and how it was served ([`Answer::source`]: hot, warm, queue, loaded
    /// by this call, joined from another caller's load, or stale): the single-flight load
    /// under per-call [`Controls`].
    ///
    /// - Hit: the cached value (unless `no_cache`). A stored value that does not decode as
    ///   `V` is a miss (`Stats::decode_misses`): the loader runs and its value replaces it.
    /// - Miss: the loader's value, stored with the controls' TTL and cost unless `no_store` is
    ///   set or `cacheable` rejects it. Concurrent callers of the key get the same value (a
    ///   caller whose lookup missed just before another caller's load landed is served that
    ///   value from this replica's tiers, wherever it went since, and runs no loader); a
    ///   value too large for the cache, or that the codec cannot encode, is returned without
    ///   being stored.
    /// - `no_cache` + `no_store`: a full bypass. The loader runs for this caller alone,
    ///   nothing is read or stored, no other caller's load is joined.
    /// - Loader error: [`Error::Loader`], for the leader and every waiter, carrying the
    ///   loader's error itself ([`Error::loader_error`] downcasts it); nothing is stored. With
    ///   `stale_if_error`, an expired entry still in the hot tier is served instead if it is
    ///   within the grace period ([`Source::Stale`], counted in `Stats::stale_served`). Such
    ///   a call leaves an expired hot entry in place instead of dropping it, so it serves every
    ///   call of the outage; entries expired only on disk are not served stale.
    /// - A leader whose future is dropped hands the load to a waiter; a loader that panics
    ///   fails the waiters with an [`Error::Loader`] that
    ///   [is a panic](crate::LoaderError::is_panic). The next call loads again.
    ///
    /// Other errors: [`Error::KeyTooLarge`] before anything runs, [`Error::Closed`].
    pub async fn get_or_insert_answer<V, F, Fut, E>(
        &self,
        key: impl Key,
        controls: &Controls<V>,
        loader: F,
    ) -> Result<Answer<V>>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<BoxError>,
    {
        let kind = Typed(self.tiers.config().codec);
        if controls.no_cache && controls.no_store {
            return self.bypass(&kind, loader).await;
        }
        let key = self.resolve(&key).await?;
        self.load(&key, controls, &kind, loader).await
    }

    /// The bytes variant of [`get_or_insert_answer`](Self::get_or_insert_answer), for
    /// services that cache the raw text a provider answered (its JSON): the loader's bytes
    /// are stored as they are ([`Encoding::Raw`]) and every caller gets bytes back, whatever
    /// the entry's encoding. A typed `get` reads such an entry as JSON text.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use answercache::{agent::Controls, Source};
    /// # let dir = tempfile::tempdir()?;
    /// # let cache = answercache::TieredCache::open(dir.path()).await?;
    /// let body = cache
    ///     .get_or_insert_bytes("req-1", &Controls::new(), || async {
    ///         Ok::<_, std::io::Error>(r#"{"id":"chatcmpl-1","choices":[]}"#) // the HTTP body
    ///     })
    ///     .await?;
    /// assert_eq!((&body.value[..], body.source), (&br#"{"id":"chatcmpl-1","choices":[]}"#[..], Source::Loaded));
    /// let parsed: serde_json::Value = cache.get("req-1").await?.unwrap();
    /// assert_eq!(parsed["id"], "chatcmpl-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_or_insert_bytes<B, F, Fut, E>(
        &self,
        key: impl Key,
        controls: &Controls<[u8]>,
        loader: F,
    ) -> Result<Answer<Arc<[u8]>>>
    where
        B: AsRef<[u8]>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<B, E>>,
        E: Into<BoxError>,
    {
        let loader = || async move { loader().await.map(|b| Arc::<[u8]>::from(b.as_ref())) };
        if controls.no_cache && controls.no_store {
            return self.bypass(&Bytes, loader).await;
        }
        let key = self.resolve(&key).await?;
        self.load(&key, controls, &Bytes, loader).await
    }

    /// A full bypass (`no_cache` + `no_store`): this caller's own loader; nothing read, stored
    /// or shared, and the key is not even resolved (a request key's namespace is not touched).
    async fn bypass<V, K, F, Fut, E>(&self, kind: &K, loader: F) -> Result<Answer<V>>
    where
        K: Kind<V>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<BoxError>,
    {
        self.tiers.check_open()?;
        self.tiers.counters().bypasses.inc();
        self.tiers.counters().loader_calls.inc();
        match loader().await {
            Ok(v) => Ok(Answer::new(v, Source::Loaded, kind.encoding())),
            Err(e) => Err(Error::Loader(LoaderError::new(e.into()))),
        }
    }

    /// The single-flight load shared by the typed and bytes variants.
    async fn load<V, C, K, F, Fut, E>(
        &self,
        key: &[u8],
        controls: &Controls<C>,
        kind: &K,
        loader: F,
    ) -> Result<Answer<V>>
    where
        V: Borrow<C>,
        C: ?Sized,
        K: Kind<V>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<BoxError>,
    {
        let tiers = &self.tiers;
        tiers.check_open()?;
        if key.len() > tiers.config().max_key_bytes {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: tiers.config().max_key_bytes,
            });
        }
        let mut look_up = !controls.no_cache;
        let mut own_stale = None;
        if controls.stale_if_error.is_some() {
            own_stale = peek(tiers, key);
            let now = tiers.now_ms();
            if look_up
                && own_stale
                    .as_ref()
                    .is_some_and(|s| !is_fresh(s.expires_ms, now))
            {
                // A lookup would drop the expired entry, which is the fallback: keep it.
                look_up = false;
            }
        }
        // A call counts at most one decode miss, however often it meets the undecodable value
        // (its lookup, its leader's second look, another type's landing).
        let mut decode_missed = false;
        // This replica's tiers only: the shared tier is asked by the leader of the key's
        // flight (its second look), so that a caller arriving while the key is being loaded
        // here joins that load without a round trip to the server (and cannot be served,
        // from the server, a value this replica stored during its lookup).
        if look_up {
            if let Some(answer) = self.look_locally(key, kind, &mut decode_missed).await? {
                return Ok(answer);
            }
        }
        let flights = self.life.agent.flights.clone();
        loop {
            match flights.join_or_lead(kind.tag(), key) {
                Role::Leader(mut leader) => {
                    // Handed to the waiters if the loader panics.
                    leader.stale = own_stale;
                    return self
                        .lead(key, controls, kind, leader, decode_missed, loader)
                        .await;
                }
                Role::Waiter(rx) => match wait(rx).await {
                    Landing::Value {
                        bytes,
                        encoding,
                        cost,
                    } => match kind.decode(&bytes, encoding) {
                        Ok(v) => {
                            tiers.counters().joined.inc();
                            tiers.counters().cost_saved.add(cost);
                            return Ok(Answer::new(v, Source::Joined, encoding));
                        }
                        // Another type's load of the same key: load for this caller's type.
                        Err(detail) => {
                            if !decode_missed {
                                tiers.decode_miss::<V>(encoding, &detail);
                                decode_missed = true;
                            }
                        }
                    },
                    Landing::Failed { error, stale } => {
                        tiers.counters().joined.inc();
                        return self.on_failure(error, own_stale.or(stale), controls, kind);
                    }
                    // Before a new flight: the cache may hold the key's value now (the
                    // leader found it there, or another caller stored it).
                    Landing::Abandoned if look_up => {
                        if let Some(answer) =
                            self.look_locally(key, kind, &mut decode_missed).await?
                        {
                            return Ok(answer);
                        }
                    }
                    Landing::Abandoned => {}
                },
            }
        }
    }

    /// This replica's tiers looked up for `key` (`Tiers::lookup_local`) and the value decoded
    /// as `V`: the answer, its hit counted; `None` when nothing is there or the value does not
    /// decode as `V` (then one decode miss is counted, unless this call counted one already:
    /// `decode_missed`).
    async fn look_locally<V, K>(
        &self,
        key: &[u8],
        kind: &K,
        decode_missed: &mut bool,
    ) -> Result<Option<Answer<V>>>
    where
        K: Kind<V>,
    {
        let tiers = &self.tiers;
        let Some(found) = tiers.lookup_local(key).await? else {
            return Ok(None);
        };
        match kind.decode(&found.value, found.encoding) {
            Ok(v) => {
                tiers.count_hit(&found);
                Ok(Some(Answer::new(v, found.source, found.encoding)))
            }
            Err(detail) => {
                if !*decode_missed {
                    tiers.decode_miss::<V>(found.encoding, &detail);
                    *decode_missed = true;
                }
                Ok(None)
            }
        }
    }

    /// The leader's part: look at the hot tier once more, else run the loader, store its
    /// value under the controls, and land the flight. `leader.stale` is the caller's
    /// stale-if-error fallback.
    async fn lead<V, C, K, F, Fut, E>(
        &self,
        key: &[u8],
        controls: &Controls<C>,
        kind: &K,
        leader: Leader,
        decode_missed: bool,
        loader: F,
    ) -> Result<Answer<V>>
    where
        V: Borrow<C>,
        C: ?Sized,
        K: Kind<V>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<BoxError>,
    {
        let tiers = &self.tiers;
        if !controls.no_cache {
            // A previous leader may have stored the value after this caller's lookup; it can
            // have left the hot tier since (for the write queue or the disk). The hot tier
            // is only peeked: an entry there is the key's newest, and one expired or removed
            // must stay in place (the stale-if-error fallback, the removal); with none, the
            // other tiers are looked up as a `get` would, the shared tier last.
            let now = tiers.now_ms();
            let found = match tiers.peek_hot(key) {
                Some(e) if !e.tombstone && is_fresh(e.expires_ms, now) => Some(Found {
                    value: e.value.clone(),
                    expires_ms: e.expires_ms,
                    cost: e.cost,
                    encoding: e.encoding,
                    source: Source::Hot,
                }),
                Some(_) => None,
                None => tiers.lookup(key, false).await?,
            };
            if let Some(found) = found {
                match kind.decode(&found.value, found.encoding) {
                    Ok(v) => {
                        // Not handed to the callers that joined this flight: what a read
                        // begun before them found is not theirs to serve (one that began
                        // after a `remove` returned, a `no_cache` caller that asked for a
                        // fresh load). They start over, each with a look of its own.
                        leader.land(Landing::Abandoned);
                        // Another replica's answer: a shared hit, as a `get`'s.
                        if found.source == Source::Shared {
                            tiers.count_hit(&found);
                            return Ok(Answer::new(v, Source::Shared, found.encoding));
                        }
                        // Stored here by a previous leader: joined.
                        tiers.counters().joined.inc();
                        tiers.counters().cost_saved.add(found.cost);
                        return Ok(Answer::new(v, Source::Joined, found.encoding));
                    }
                    Err(detail) if !decode_missed => {
                        tiers.decode_miss::<V>(found.encoding, &detail);
                    }
                    Err(_) => {}
                }
            }
        }
        // Across replicas (feature `redis`, `shared_single_flight`): one replica loads, the
        // others wait for its answer in the shared tier (`shared/lease.rs`). Not for a call
        // that reads nothing (`no_cache`) or stores nothing (`no_store`: its waiters would
        // wait for a value that never comes), nor while this replica does not read the shared
        // tier (the fence on disk unknown: it could not be served the leader's answer).
        #[cfg(feature = "redis")]
        let mut lease = None;
        #[cfg(feature = "redis")]
        if let Some(shared) = tiers.shared().filter(|s| {
            s.single_flight && !controls.no_cache && !controls.no_store && tiers.reads_shared()
        }) {
            use crate::shared::lease::{lead_or_wait, LeaseStart};
            let hash = crate::warm::layout::key_hash(key);
            match lead_or_wait(shared, &hash).await {
                LeaseStart::Lead(guard) => lease = Some((guard, hash)),
                LeaseStart::Appeared => {
                    if let Some(found) = tiers.lookup(key, false).await? {
                        if let Ok(v) = kind.decode(&found.value, found.encoding) {
                            tiers.count_hit(&found);
                            // Only a verified, decoded value served counts (garbage that
                            // appeared during the wait is a miss, and the load is local).
                            shared.lease_counters().lease_waits_served.inc();
                            // As for the second look above: the callers that joined start
                            // over and find it themselves (in the hot tier, promoted now).
                            leader.land(Landing::Abandoned);
                            return Ok(Answer::new(v, found.source, found.encoding));
                        }
                    }
                }
                LeaseStart::Local => {}
            }
        }
        let own_stale = leader.stale.clone();
        tiers.counters().misses.inc();
        tiers.counters().loader_calls.inc();
        let value = match loader().await {
            Ok(v) => v,
            Err(e) => {
                #[cfg(feature = "redis")]
                if let Some((guard, _)) = lease.take() {
                    guard.release().await;
                }
                let error = LoaderError::new(e.into());
                leader.land(Landing::Failed {
                    error: error.clone(),
                    stale: own_stale.clone(),
                });
                return self.on_failure(error, own_stale, controls, kind);
            }
        };
        let (bytes, encoding) = match kind.encode(&value) {
            Ok(b) => b,
            Err(e) => {
                // The caller asked for an answer and has one; the cache cannot keep it. The
                // waiters start over and load for themselves.
                tiers.unencodable::<V>(&e);
                // Nor does the shared tier: the other replicas' waiters load at once.
                #[cfg(feature = "redis")]
                if let Some((guard, _)) = lease.take() {
                    guard.unshared().await;
                }
                leader.land(Landing::Abandoned);
                return Ok(Answer::new(value, Source::Loaded, kind.encoding()));
            }
        };
        let cost = controls.cost_of(value.borrow());
        // Stored before the flight lands, so a caller that misses after the flight is gone
        // finds the value in the cache.
        let stores = controls.stores(value.borrow());
        // A lease leader's answer is written to the shared tier inline, once: the local set
        // below does not queue it again.
        #[cfg(feature = "redis")]
        let led = lease.is_some();
        #[cfg(not(feature = "redis"))]
        let led = false;
        // Stored locally first, then (a lease leader) written to the shared tier inline,
        // unless a `set`/`remove` of the key came after the local store: the server then
        // gets the key's operations in the order this replica applied them.
        let ttl = controls.ttl.resolve(tiers.config().default_ttl);
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let (set, stored) = if !stores {
            (Ok(()), LeaderStore::default())
        } else if led {
            tiers
                .set_unshared(key, bytes.clone(), ttl, cost, encoding)
                .await
        } else {
            (
                tiers.set(key, bytes.clone(), ttl, cost, encoding).await,
                LeaderStore::default(),
            )
        };
        #[cfg(feature = "redis")]
        if let Some((guard, hash)) = lease.take() {
            // In memory at least (`NotPersisted`: the disk refused it, still served).
            let held = matches!(set, Ok(()) | Err(Error::NotPersisted { .. }));
            let token = stored.token.into_inner();
            if stores && held && token != 0 {
                // The entry stored locally, shared as it is (its file encoded once).
                guard
                    .complete(hash, key, bytes.clone(), stored.meta, token, stored.encoded)
                    .await;
            } else {
                // Not cacheable (or not stored): the other replicas' waiters load for
                // themselves at once, rather than taking the lease over one after another.
                guard.unshared().await;
            }
        }
        let stored = match set {
            Err(Error::ValueTooLarge { len, max }) => {
                debug!(
                    len,
                    max, "loaded value too large to cache; returned uncached"
                );
                Ok(())
            }
            // Write-through and the disk refused the write: the caller asked for an
            // answer, and has it (served from memory meanwhile; `flush` reports the
            // write).
            Err(Error::NotPersisted { .. }) => Ok(()),
            other => other,
        };
        leader.land(Landing::Value {
            bytes,
            encoding,
            cost,
        });
        stored.map(|()| Answer::new(value, Source::Loaded, encoding))
    }

    /// A failed load: the fallback if the controls allow it and it is within the grace, else
    /// the error.
    fn on_failure<V, C: ?Sized, K: Kind<V>>(
        &self,
        error: LoaderError,
        stale: Option<Fallback>,
        controls: &Controls<C>,
        kind: &K,
    ) -> Result<Answer<V>> {
        if let (Some(grace), Some(s)) = (controls.stale_if_error, stale) {
            let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
            let now = self.tiers.now_ms();
            if s.expires_ms == 0 || now < s.expires_ms.saturating_add(grace_ms) {
                if let Ok(v) = kind.decode(&s.value, s.encoding) {
                    self.tiers.counters().stale_served.inc();
                    return Ok(Answer::new(v, Source::Stale, s.encoding));
                }
            }
        }
        Err(Error::Loader(error))
    }

    /// Loads in flight right now (callers waiting on a loader count once per key).
    pub fn loads_in_flight(&self) -> usize {
        self.life.agent.flights.len()
    }
}
