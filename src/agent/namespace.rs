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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::controls::Controls;
use super::request_key::{RequestKey, RequestKeyBuilder};
use super::state::{lock, state_of};
use crate::answer::Answer;
use crate::cache::TieredCache;
use crate::codec::{self, Codec, Encoding};
use crate::error::{Error, Result};
use crate::key::{Key, KeyRef};

/// Prefix of the keys of namespaced entries.
pub(crate) const ENTRY_PREFIX: &[u8] = b"\0tiercache:ns:";
/// Prefix of the keys of namespace records.
pub(crate) const RECORD_PREFIX: &[u8] = b"\0tiercache:nsgen:";
/// Longest namespace name.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Checks a namespace name: 1 to [`MAX_NAMESPACE_LEN`] characters of `A-Z a-z 0-9 . _ - /`.
/// The restriction keeps stored keys unambiguous (no `:`) and readable in logs.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/');
    if name.is_empty() || name.len() > MAX_NAMESPACE_LEN || !name.bytes().all(ok_char) {
        return Err(Error::Config(format!(
            "invalid namespace name {name:?}: use 1 to {MAX_NAMESPACE_LEN} characters of \
             A-Z a-z 0-9 . _ - /"
        )));
    }
    Ok(())
}

fn record_key(name: &str) -> Vec<u8> {
    [RECORD_PREFIX, name.as_bytes()].concat()
}

fn entry_key(name: &str, generation: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(ENTRY_PREFIX.len() + name.len() + 18 + key.len());
    k.extend_from_slice(ENTRY_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k.extend_from_slice(format!(":{generation:016x}:").as_bytes());
    k.extend_from_slice(key);
    k
}

/// A fresh generation: unpredictable enough never to repeat one this or another process drew.
fn fresh_generation(now_ms: u64) -> u64 {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new_derive_key("tiercache namespace generation v1");
    h.update(&nanos.to_le_bytes());
    h.update(&now_ms.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&DRAWN.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    // 0 means "not resolved yet" in the slot.
    u64::from_le_bytes(first).max(1)
}

/// The persisted record of a namespace.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    generation: u64,
    created_ms: u64,
}

/// A namespace's in-memory state in one open cache.
#[derive(Debug, Default)]
pub(crate) struct NamespaceSlot {
    /// The current generation; 0 until first read. Set under `lock`, read without it.
    generation: AtomicU64,
    /// Serializes reading and replacing the record.
    lock: tokio::sync::Mutex<()>,
}

/// A namespace of a cache: keys scoped to it, invalidated together in O(1). Cheap to clone.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// # let cache = tiercache::TieredCache::builder(dir.path()).min_free_bytes(0).build().await?;
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
        check_name(name)?;
        let state = state_of(&self.inner);
        let slot = lock(&state.namespaces)
            .entry(name.to_owned())
            .or_default()
            .clone();
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
        let g = self.slot.generation.load(Ordering::Acquire);
        if g != 0 {
            return Ok(g);
        }
        self.read_record(false).await
    }

    /// Reads the generation from the cache again: picks up an invalidation made by another
    /// process sharing the directory.
    pub async fn refresh(&self) -> Result<u64> {
        self.read_record(true).await
    }

    async fn read_record(&self, again: bool) -> Result<u64> {
        let _serial = self.slot.lock.lock().await;
        let g = self.slot.generation.load(Ordering::Acquire);
        if g != 0 && !again {
            return Ok(g);
        }
        let inner = &self.cache.inner;
        let rk = record_key(&self.name);
        if again {
            // Another process may have replaced the record on disk: a clean copy in memory is
            // the record as this process last read it, so read the disk instead.
            inner.hot.drop_clean(&rk);
        }
        let found = inner.lookup(&rk, false).await?;
        let g = match found.and_then(|f| codec::decode::<Record>(f.encoding, &f.value).ok()) {
            Some(r) if r.generation != 0 => r.generation,
            _ => {
                // Never written, or lost: a fresh generation (see the module docs).
                let now = inner.clock.now_ms();
                let g = fresh_generation(now);
                let record = codec::encode(
                    Codec::Json,
                    &Record {
                        generation: g,
                        created_ms: now,
                    },
                )?;
                // A write-through store that did not reach the disk still serves the
                // generation from memory; `flush` reports it.
                match inner
                    .store(&rk, record.into(), None, 0, Encoding::Json)
                    .await
                {
                    Ok(()) | Err(Error::NotPersisted { .. }) => {}
                    Err(e) => return Err(e),
                }
                g
            }
        };
        self.slot.generation.store(g, Ordering::Release);
        Ok(g)
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
    pub(crate) async fn stored_key(&self, key: &[u8]) -> Result<Vec<u8>> {
        Ok(entry_key(&self.name, self.generation().await?, key))
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
        let _serial = self.slot.lock.lock().await;
        let inner = &self.cache.inner;
        let now = inner.clock.now_ms();
        let g = fresh_generation(now);
        // In memory first: from here on, this process never reads an old entry.
        self.slot.generation.store(g, Ordering::Release);
        let record: Arc<[u8]> = codec::encode(
            Codec::Json,
            &Record {
                generation: g,
                created_ms: now,
            },
        )?
        .into();
        let rk = record_key(&self.name);
        // Waits for this write's own acknowledgement, whatever the write policy: `Ok` only
        // once the new generation is on disk.
        match inner.put(&rk, record, None, 0, Encoding::Json, true).await {
            Ok(()) => Ok(g),
            Err(Error::NotPersisted { last_error, .. }) => Err(Error::NotPersisted {
                failed: 1,
                last_error: format!(
                    "the new generation of namespace {:?} is not on disk: {last_error}",
                    self.name
                ),
            }),
            Err(e) => Err(e),
        }
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
