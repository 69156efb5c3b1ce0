//! `get_or_insert_with`: single-flight loading.
//!
//! When many workers ask the same question at once, the model must be called once. On a miss
//! the first caller of a key becomes the *leader*: it runs its loader while later callers of
//! the key wait for the leader's outcome instead of calling theirs. The protocol:
//!
//! - Every call does one ordinary lookup first (counted as a hit or a miss in `Stats`), unless
//!   `no_cache` is set. A hit returns at once: hits never touch the flight table.
//! - On a miss the caller joins the key's flight, or starts one and leads it. A new leader
//!   looks at the hot tier once more (not counted): a previous leader may have stored the
//!   value between this caller's lookup and its joining.
//! - The leader's loader runs *inside the leader's own future* (no spawned task, so loaders
//!   need not be `'static`). On success the leader stores the value (subject to the
//!   controls), then removes the flight, then hands the value to the waiters: a caller that
//!   misses after the flight is gone finds the value in the cache.
//! - A loader error is given to every waiter as [`Error::Loader`] with the error's text (the
//!   caller's error type need not be `Clone`), and nothing is stored: the next call loads
//!   again.
//! - The flight is owned by a guard. If the leader's future is dropped (the caller gave up),
//!   the guard removes the flight and tells the waiters, who start over: one of them leads
//!   and runs *its* loader. If the loader panics, the guard does the same while unwinding,
//!   but the waiters get `Error::Loader("loader panicked")` instead of retrying (a loader that
//!   panics would most likely panic again in each of them). Either way the key is never
//!   wedged: the next call loads again.
//!
//! Accounting: `Stats::loader_calls` counts loader runs, so *calls − loader_calls* is the
//! number of model calls saved. A caller served by another caller's load (a waiter, or a new
//! leader that finds the value in the hot tier) has saved that load's cost too: it is added to
//! `Stats::cost_saved` like a hit's.
//!
//! Stale-if-error: the expired answer must still be at hand when the loader fails, but a
//! lookup drops an expired hot entry, and the warm tier deletes an expired file when it reads
//! it. So a call with `stale_if_error` first *peeks* at the hot tier (no recency change, no
//! removal). If the entry there has expired, the call counts its miss itself and skips the
//! lookup, leaving the entry in place: it stays the fallback for every later call until it
//! is replaced by a successful load, evicted, or read by a plain `get`. The leader hands its
//! fallback to the waiters with the error, so they all serve the same stale answer. The
//! fallback is served only if the loader fails and the entry is within `grace` of its expiry
//! (with `no_cache`, an entry that has not expired yet qualifies too: it is the best answer
//! left). Expired entries only on disk are not served stale: finding them would cost a disk
//! read per call on the hot path. No side copy is kept, so the feature costs no memory, and a
//! `remove`, `clear` or namespace invalidation takes the fallback away with the entry.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tracing::debug;

use super::controls::Controls;
use super::state::{lock, state_of};
use crate::cache::{Inner, TieredCache};
use crate::codec;
use crate::error::{Error, Result};

/// The loads in flight of one cache.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Box<[u8]>, Arc<Flight>>>,
}

/// One load in flight. Waiters subscribe to `tx`; the leader's guard sends exactly once.
struct Flight {
    tx: watch::Sender<Option<Landing>>,
}

/// How a flight ended.
#[derive(Clone)]
enum Landing {
    /// The loader's value, encoded, and its cost.
    Value { bytes: Arc<[u8]>, cost: u64 },
    /// The loader failed (or panicked); the leader's stale-if-error fallback, if it had one.
    Failed {
        failure: Failure,
        stale: Option<Fallback>,
    },
    /// The leader gave up before the loader finished: start over.
    Abandoned,
}

#[derive(Clone)]
enum Failure {
    Loader(String),
    Encode(String),
    Panicked,
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Loader(msg) => Error::Loader(msg),
            Failure::Encode(msg) => Error::Encode(msg),
            Failure::Panicked => Error::Loader("loader panicked".into()),
        }
    }
}

/// An entry peeked at from the hot tier, to serve if the loader fails.
#[derive(Clone)]
struct Fallback {
    value: Arc<[u8]>,
    expires_ms: u64,
}

enum Role {
    Leader(Leader),
    Waiter(watch::Receiver<Option<Landing>>),
}

/// Owns a flight; lands it exactly once, on success, error, cancellation or panic.
struct Leader {
    flights: Arc<Flights>,
    key: Box<[u8]>,
    flight: Arc<Flight>,
    /// Handed to the waiters if the loader panics.
    stale: Option<Fallback>,
    landed: bool,
}

impl Flights {
    fn join_or_lead(self: &Arc<Self>, key: &[u8]) -> Role {
        let mut map = lock(&self.map);
        if let Some(f) = map.get(key) {
            return Role::Waiter(f.tx.subscribe());
        }
        let flight = Arc::new(Flight {
            tx: watch::channel(None).0,
        });
        map.insert(key.into(), flight.clone());
        Role::Leader(Leader {
            flights: self.clone(),
            key: key.into(),
            flight,
            stale: None,
            landed: false,
        })
    }

    /// Loads in flight (for tests and introspection).
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

impl Leader {
    fn land(mut self, landing: Landing) {
        self.landed = true;
        self.finish(landing);
    }

    /// Removes the flight (first, so a caller arriving now starts a new one rather than
    /// joining a finished one), then tells the waiters.
    fn finish(&self, landing: Landing) {
        {
            let mut map = lock(&self.flights.map);
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        self.flight.tx.send_replace(Some(landing));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        let landing = if std::thread::panicking() {
            Landing::Failed {
                failure: Failure::Panicked,
                stale: self.stale.take(),
            }
        } else {
            Landing::Abandoned
        };
        self.finish(landing);
    }
}

async fn wait(mut rx: watch::Receiver<Option<Landing>>) -> Landing {
    match rx.wait_for(Option::is_some).await {
        Ok(landing) => landing.clone().unwrap_or(Landing::Abandoned),
        // The sender is gone without a landing: cannot happen with the guard, but starting
        // over is the safe answer.
        Err(_) => Landing::Abandoned,
    }
}

/// The hot tier's entry for `key`, peeked at (no recency change, no removal, not counted).
fn peek(inner: &Inner, key: &[u8]) -> Option<Fallback> {
    inner
        .hot
        .peek(key)
        .filter(|e| !e.tombstone)
        .map(|e| Fallback {
            value: e.value,
            expires_ms: e.expires_ms,
        })
}

fn is_fresh(expires_ms: u64, now_ms: u64) -> bool {
    expires_ms == 0 || now_ms < expires_ms
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
    /// # let cache = tiercache::TieredCache::open(dir.path()).await?;
    /// let answer: String = cache
    ///     .get_or_insert_with("capital of France?", || async {
    ///         Ok::<_, std::io::Error>("Paris".to_owned()) // the model call
    ///     })
    ///     .await?;
    /// assert_eq!(answer, "Paris");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_or_insert_with<V, F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        loader: F,
    ) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Display,
    {
        self.get_or_insert_with_controls(key, &Controls::new(), loader)
            .await
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) under per-call [`Controls`].
    ///
    /// - Hit: the cached value (unless `no_cache`).
    /// - Miss: the loader's value, stored with the controls' TTL and cost unless `no_store` is
    ///   set or `cacheable` rejects it. Concurrent callers of the key get the same value; a
    ///   value too large for the cache is returned without being stored.
    /// - Loader error: [`Error::Loader`] with the error's text, for the leader and every
    ///   waiter; nothing is stored. With `stale_if_error`, an expired entry still in the hot
    ///   tier is served instead if it is within the grace period, and counted in
    ///   `Stats::stale_served`. Such a call leaves an expired hot entry in place instead of
    ///   dropping it, so it serves every call of the outage; entries expired only on disk are
    ///   not served stale.
    /// - A leader whose future is dropped hands the load to a waiter; a loader that panics
    ///   fails the waiters with `Error::Loader("loader panicked")`. The next call loads again.
    ///
    /// Other errors: [`Error::KeyTooLarge`] before anything runs, [`Error::Decode`] if the
    /// cached value is not a `V`, [`Error::Encode`], [`Error::Closed`].
    pub async fn get_or_insert_with_controls<V, F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        controls: &Controls<V>,
        loader: F,
    ) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Display,
    {
        let key = key.as_ref();
        let inner = &self.inner;
        if key.len() > inner.config.max_key_bytes {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: inner.config.max_key_bytes,
            });
        }
        let mut look_up = !controls.no_cache;
        let mut own_stale = None;
        if controls.stale_if_error.is_some() {
            own_stale = peek(inner, key);
            let now = inner.clock.now_ms();
            if look_up
                && own_stale
                    .as_ref()
                    .is_some_and(|s| !is_fresh(s.expires_ms, now))
            {
                // A lookup would drop the expired entry, which is the fallback: keep it and
                // count the miss the lookup would have counted.
                inner.counters.misses.inc();
                look_up = false;
            }
        }
        if look_up {
            if let Some(found) = inner.lookup(key).await? {
                return codec::decode(&found.value);
            }
        }
        let flights = state_of(inner).flights.clone();
        loop {
            match flights.join_or_lead(key) {
                Role::Leader(leader) => {
                    return self.lead(key, controls, leader, own_stale, loader).await;
                }
                Role::Waiter(rx) => match wait(rx).await {
                    Landing::Value { bytes, cost } => {
                        inner.counters.cost_saved.add(cost);
                        return codec::decode(&bytes);
                    }
                    Landing::Failed { failure, stale } => {
                        return self.on_failure(failure, own_stale.or(stale), controls);
                    }
                    Landing::Abandoned => continue,
                },
            }
        }
    }

    /// The leader's part: look at the hot tier once more, else run the loader, store its
    /// value under the controls, and land the flight.
    async fn lead<V, F, Fut, E>(
        &self,
        key: &[u8],
        controls: &Controls<V>,
        mut leader: Leader,
        own_stale: Option<Fallback>,
        loader: F,
    ) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Display,
    {
        let inner = &self.inner;
        if !controls.no_cache {
            // A previous leader may have stored the value after this caller's lookup.
            let now = inner.clock.now_ms();
            if let Some(e) = inner.hot.peek(key) {
                if !e.tombstone && is_fresh(e.expires_ms, now) {
                    inner.counters.cost_saved.add(e.cost);
                    leader.land(Landing::Value {
                        bytes: e.value.clone(),
                        cost: e.cost,
                    });
                    return codec::decode(&e.value);
                }
            }
        }
        leader.stale = own_stale.clone();
        inner.counters.loader_calls.inc();
        let value = match loader().await {
            Ok(v) => v,
            Err(e) => {
                let failure = Failure::Loader(e.to_string());
                leader.land(Landing::Failed {
                    failure: failure.clone(),
                    stale: own_stale.clone(),
                });
                return self.on_failure(failure, own_stale, controls);
            }
        };
        let bytes: Arc<[u8]> = match codec::encode(&value) {
            Ok(b) => b.into(),
            Err(e) => {
                leader.land(Landing::Failed {
                    failure: Failure::Encode(e.to_string()),
                    stale: None,
                });
                return Err(e);
            }
        };
        let cost = controls.cost_of(&value);
        // Stored before the flight lands, so a caller that misses after the flight is gone
        // finds the value in the cache.
        let stored = if controls.stores(&value) {
            let ttl = controls.ttl.resolve(inner.config.default_ttl);
            match inner.store(key, bytes.clone(), ttl, cost).await {
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
            }
        } else {
            Ok(())
        };
        leader.land(Landing::Value { bytes, cost });
        stored.map(|()| value)
    }

    /// A failed load: the fallback if the controls allow it and it is within the grace, else
    /// the error.
    fn on_failure<V: DeserializeOwned>(
        &self,
        failure: Failure,
        stale: Option<Fallback>,
        controls: &Controls<V>,
    ) -> Result<V> {
        if let (Some(grace), Some(s)) = (controls.stale_if_error, stale) {
            let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
            let now = self.inner.clock.now_ms();
            if s.expires_ms == 0 || now < s.expires_ms.saturating_add(grace_ms) {
                if let Ok(v) = codec::decode(&s.value) {
                    self.inner.counters.stale_served.inc();
                    return Ok(v);
                }
            }
        }
        Err(failure.into_error())
    }

    /// Loads in flight right now (callers waiting on a loader count once per key).
    pub fn loads_in_flight(&self) -> usize {
        state_of(&self.inner).flights.len()
    }
}
