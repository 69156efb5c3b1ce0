//! Namespaces: groups of entries invalidated together in O(1).
//!
//! Why a generation and not a scan: "forget every answer of the support bot" must not cost a
//! walk over a disk tier of a million files. Each namespace has a *generation*, a random
//! 64-bit number, and every key in it is stored as
//!
//! ```text
//! \0tiercache:ns:<name>:<generation as 16 hex digits>:<key>
//! ```
//!
//! Invalidating draws a new generation: every old entry becomes unreachable at once, in both
//! tiers, and ages out of them through the ordinary LRU eviction and expiry (nothing is
//! deleted eagerly; [`Namespace::invalidate_if`] is the scan, for when a few entries must go
//! now).
//!
//! A [`RequestKey`] carries its namespace: wherever it is used (the cache's methods or a
//! `Namespace` handle), it is stored under its namespace's current generation, so one
//! `invalidate` drops plain keys and request keys of the namespace alike.
//!
//! Persistence: the generation is an ordinary cache entry, `\0tiercache:nsgen:<name>` (value:
//! the JSON `{"generation":u64,"created_ms":u64}`; records written by earlier versions are
//! bincode, and still read; no expiry), so it lives in both tiers, survives a reopen and goes
//! through the same breaker and write path as everything else. It is read once per namespace
//! per open cache (not counted in `Stats`: the hits and misses there are the caller's) and
//! kept in memory. [`Namespace::invalidate`] waits until the new generation is on disk, so an
//! invalidation that returned `Ok` holds after a crash.
//!
//! Why random generations and not a counter: if the record is ever lost (evicted from the
//! warm tier, removed by `clear`, a failed write), a counter would restart at 0 and bring back
//! every answer it once invalidated. A lost record is instead replaced by a fresh random
//! generation, so losing it can only cause misses, never stale answers.
//!
//! Another process sharing the directory reads the generation when it first uses the
//! namespace; it sees a later invalidation after [`Namespace::refresh`] or a reopen.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::controls::Controls;
use super::generation::NamespaceSlot;
use super::request_key::{RequestKey, RequestKeyBuilder};
use crate::answer::Answer;
use crate::error::{Error, Result};
use crate::handle::TieredCache;
use crate::key::{Key, KeyRef};

/// A namespace of a cache: keys scoped to it, invalidated together in O(1). Cheap to clone.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// # let cache = answercache::TieredCache::builder(dir.path()).min_free_bytes(0).build().await?;
/// let support = cache.namespace("support-bot")?;
/// support.set("greeting", &"Hello!").await?;
/// assert_eq!(support.get::<String>("greeting").await?.as_deref(), Some("Hello!"));
/// support.invalidate().await?; // the prompt changed: forget every answer
/// assert_eq!(support.get::<String>("greeting").await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Namespace {
    cache: TieredCache,
    name: Arc<str>,
    slot: Arc<NamespaceSlot>,
}

impl TieredCache {
    /// The namespace `name` (1 to 64 characters of `A-Z a-z 0-9 . _ - /`, else
    /// [`Error::Config`]). Handles of the same name share their state.
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        let slot = self.life.agent.namespaces.slot(name)?;
        Ok(Namespace {
            cache: self.clone(),
            name: name.into(),
            slot,
        })
    }
}

impl Namespace {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cache this namespace belongs to.
    pub fn cache(&self) -> &TieredCache {
        &self.cache
    }

    /// The current generation (read from the cache on first use).
    pub async fn generation(&self) -> Result<u64> {
        self.slot.generation(&self.cache.tiers, &self.name).await
    }

    /// Reads the generation from the cache again: picks up an invalidation made by another
    /// process sharing the directory.
    pub async fn refresh(&self) -> Result<u64> {
        self.slot
            .read_record(&self.cache.tiers, &self.name, true)
            .await
    }

    /// The key under which this namespace stores `key` now (it changes with the generation).
    /// A [`RequestKey`] must be of this namespace ([`Error::Config`] otherwise).
    pub async fn key(&self, key: impl Key) -> Result<Vec<u8>> {
        match key.key_ref() {
            KeyRef::Plain(bytes) => self.stored_key(bytes).await,
            KeyRef::Request(rk) if rk.namespace() == &*self.name => {
                self.stored_key(rk.as_str().as_bytes()).await
            }
            KeyRef::Request(rk) => Err(Error::Config(format!(
                "request key {rk} belongs to namespace {:?}, not {:?}",
                rk.namespace(),
                self.name
            ))),
        }
    }

    /// The stored key of `key` (as given inside this namespace) in the current generation.
    async fn stored_key(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.slot
            .stored_key(&self.cache.tiers, &self.name, key)
            .await
    }

    /// The [`RequestKey`] of `request` in this namespace.
    pub fn request_key<R: Serialize + ?Sized>(&self, request: &R) -> Result<RequestKey> {
        RequestKey::new(&self.name, request)
    }

    /// A [`RequestKeyBuilder`] in this namespace.
    pub fn request_key_builder(&self) -> RequestKeyBuilder {
        RequestKey::builder(&self.name)
    }

    /// [`TieredCache::get`] in this namespace.
    pub async fn get<V: Serialize + DeserializeOwned>(&self, key: impl Key) -> Result<Option<V>> {
        self.cache.get(self.key(key).await?).await
    }

    /// [`TieredCache::get_answer`] in this namespace.
    pub async fn get_answer<V: Serialize + DeserializeOwned>(
        &self,
        key: impl Key,
    ) -> Result<Option<Answer<V>>> {
        self.cache.get_answer(self.key(key).await?).await
    }

    /// [`TieredCache::get_bytes`] in this namespace.
    pub async fn get_bytes(&self, key: impl Key) -> Result<Option<Arc<[u8]>>> {
        self.cache.get_bytes(self.key(key).await?).await
    }

    /// [`TieredCache::set`] in this namespace.
    pub async fn set<V: Serialize + ?Sized>(&self, key: impl Key, value: &V) -> Result<()> {
        self.cache.set(self.key(key).await?, value).await
    }

    /// [`TieredCache::set_with_ttl`] in this namespace.
    pub async fn set_with_ttl<V: Serialize + ?Sized>(
        &self,
        key: impl Key,
        value: &V,
        ttl: Duration,
    ) -> Result<()> {
        self.cache
            .set_with_ttl(self.key(key).await?, value, ttl)
            .await
    }

    /// [`TieredCache::set_bytes`] in this namespace.
    pub async fn set_bytes(&self, key: impl Key, value: impl AsRef<[u8]>) -> Result<()> {
        self.cache.set_bytes(self.key(key).await?, value).await
    }

    /// [`TieredCache::set_with_controls`] in this namespace.
    pub async fn set_with_controls<V: Serialize>(
        &self,
        key: impl Key,
        value: &V,
        controls: &Controls<V>,
    ) -> Result<bool> {
        self.cache
            .set_with_controls(self.key(key).await?, value, controls)
            .await
    }

    /// [`TieredCache::remove`] in this namespace.
    pub async fn remove(&self, key: impl Key) -> Result<bool> {
        self.cache.remove(self.key(key).await?).await
    }

    /// [`TieredCache::get_or_insert_with`] in this namespace.
    pub async fn get_or_insert_with<V, F, Fut, E>(&self, key: impl Key, loader: F) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.get_or_insert_answer(key, &Controls::new(), loader)
            .await
            .map(Answer::into_value)
    }

    /// [`TieredCache::get_or_insert_with_controls`] in this namespace.
    pub async fn get_or_insert_with_controls<V, F, Fut, E>(
        &self,
        key: impl Key,
        controls: &Controls<V>,
        loader: F,
    ) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.get_or_insert_answer(key, controls, loader)
            .await
            .map(Answer::into_value)
    }

    /// [`TieredCache::get_or_insert_answer`] in this namespace.
    pub async fn get_or_insert_answer<V, F, Fut, E>(
        &self,
        key: impl Key,
        controls: &Controls<V>,
        loader: F,
    ) -> Result<Answer<V>>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let key = self.key(key).await?;
        self.cache.get_or_insert_answer(key, controls, loader).await
    }

    /// [`TieredCache::get_or_insert_bytes`] in this namespace.
    pub async fn get_or_insert_bytes<B, F, Fut, E>(
        &self,
        key: impl Key,
        controls: &Controls<[u8]>,
        loader: F,
    ) -> Result<Answer<Arc<[u8]>>>
    where
        B: AsRef<[u8]>,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<B, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let key = self.key(key).await?;
        self.cache.get_or_insert_bytes(key, controls, loader).await
    }

    /// Invalidates every entry of the namespace, in both tiers, in O(1): draws a new
    /// generation and returns it. Returns once the new generation is on disk; if it could not
    /// be written (the disk is failing or not in use), the invalidation holds in this process
    /// and the error is [`Error::NotPersisted`] (the record is written when the disk is back,
    /// unless it is evicted first).
    pub async fn invalidate(&self) -> Result<u64> {
        self.slot.invalidate(&self.cache.tiers, &self.name).await
    }

    /// Removes the entries of the namespace's current generation whose key (as given to this
    /// namespace) satisfies `pred`, from both tiers. A scan: see
    /// [`TieredCache::invalidate_if`]. Returns how many keys were removed.
    pub async fn invalidate_if(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Result<u64> {
        let prefix = self.key(b"").await?;
        self.cache
            .remove_matching(|k| k.strip_prefix(&prefix[..]).is_some_and(&mut pred))
            .await
    }
}
