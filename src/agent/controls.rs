//! Per-call cache controls for [`get_or_insert_with_controls`](crate::TieredCache::get_or_insert_with_controls)
//! and [`set_with_controls`](crate::TieredCache::set_with_controls).
//!
//! The names follow HTTP's `Cache-Control`, whose meanings agent developers already know:
//! `no-store` (never keep this answer), `no-cache` (do not answer from the cache; go to the
//! origin and refresh the entry), a max-age override, and `stale-if-error`. Two additions are
//! specific to model answers:
//!
//! - a `cacheable` predicate on the value, because the model call can *succeed* with an
//!   answer that must not be cached: an error payload, a refusal, a truncated completion
//!   (`finish_reason: "length"`). Such an answer is still returned, and handed to the callers
//!   waiting on the same load, but never stored;
//! - a cost per entry (tokens, micro-dollars: the unit is the caller's), fixed or computed
//!   from the value (its `usage`), stored with the entry and summed over every hit into
//!   `Stats::cost_saved`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::codec;
use crate::error::Result;
use crate::handle::TieredCache;
use crate::key::Key;

/// How long a stored entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ttl {
    /// The cache's `default_ttl`.
    Default,
    /// Expires this long after it is stored.
    After(Duration),
    /// Never expires (even when the cache has a default TTL).
    Never,
}

impl Ttl {
    /// The `ttl` argument of `Tiers::set` (`None` = never expires).
    pub(crate) fn resolve(self, default: Option<Duration>) -> Option<Duration> {
        match self {
            Ttl::Default => default,
            Ttl::After(d) => Some(d),
            Ttl::Never => None,
        }
    }
}

type Pred<V> = Arc<dyn Fn(&V) -> bool + Send + Sync>;
type CostFn<V> = Arc<dyn Fn(&V) -> u64 + Send + Sync>;

/// Options for one call. Cheap to clone; build once and reuse. `V` is the value type;
/// [`get_or_insert_bytes`](crate::TieredCache::get_or_insert_bytes) takes `Controls<[u8]>`.
///
/// ```
/// use std::time::Duration;
/// use answercache::agent::Controls;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Answer { text: String, finish_reason: String, total_tokens: u64 }
///
/// let controls = Controls::new()
///     .ttl(Duration::from_secs(3600))
///     .cacheable(|a: &Answer| a.finish_reason == "stop")
///     .cost_by(|a: &Answer| a.total_tokens)
///     .stale_if_error(Duration::from_secs(600));
/// # let _ = controls;
/// ```
#[must_use]
pub struct Controls<V: ?Sized> {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) ttl: Ttl,
    pub(crate) cacheable: Option<Pred<V>>,
    pub(crate) cost: Option<CostFn<V>>,
    pub(crate) fixed_cost: u64,
    pub(crate) stale_if_error: Option<Duration>,
}

impl<V: ?Sized> Controls<V> {
    /// The defaults: look up, load on a miss, store with the cache's default TTL and cost 0.
    pub fn new() -> Self {
        Controls {
            no_store: false,
            no_cache: false,
            ttl: Ttl::Default,
            cacheable: None,
            cost: None,
            fixed_cost: 0,
            stale_if_error: None,
        }
    }

    /// Do not store the answer (it is still returned, and given to concurrent callers of the
    /// same key). An entry already in the cache is left as it is. With
    /// [`no_cache`](Self::no_cache): a full bypass (no lookup, no store, no shared load).
    pub fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// Do not answer from the cache: call the loader (or join a load already in flight) and
    /// store its answer over the current entry. Refreshes an entry known to be outdated. With
    /// [`no_store`](Self::no_store): a full bypass, for answers that must not be shared
    /// (sampled requests, `temperature > 0`): the caller's own loader runs, nothing is read
    /// or stored, and no other caller's load is joined.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    /// Store the answer with this TTL instead of the cache's `default_ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Ttl::After(ttl);
        self
    }

    /// Store the answer without expiry, whatever the cache's `default_ttl`.
    pub fn no_expiry(mut self) -> Self {
        self.ttl = Ttl::Never;
        self
    }

    /// Store the answer only if `pred` holds for it: never cache an error payload, a refusal
    /// or a truncated answer. The answer is returned either way.
    pub fn cacheable(mut self, pred: impl Fn(&V) -> bool + Send + Sync + 'static) -> Self {
        self.cacheable = Some(Arc::new(pred));
        self
    }

    /// The cost of producing the answer, stored with it and added to `Stats::cost_saved` on
    /// every hit. Default 0.
    pub fn cost(mut self, cost: u64) -> Self {
        self.fixed_cost = cost;
        self.cost = None;
        self
    }

    /// The cost computed from the answer (its token usage, its price).
    pub fn cost_by(mut self, cost: impl Fn(&V) -> u64 + Send + Sync + 'static) -> Self {
        self.cost = Some(Arc::new(cost));
        self
    }

    /// When the loader fails, serve an expired answer for up to `grace` past its expiry
    /// instead of the error (counted in `Stats::stale_served`). See
    /// [`get_or_insert_with_controls`](crate::TieredCache::get_or_insert_with_controls) for
    /// which expired answers are still at hand.
    pub fn stale_if_error(mut self, grace: Duration) -> Self {
        self.stale_if_error = Some(grace);
        self
    }

    /// Whether `value` may be stored under these controls.
    pub(crate) fn stores(&self, value: &V) -> bool {
        !self.no_store && self.cacheable.as_ref().is_none_or(|p| p(value))
    }

    /// The cost of `value`.
    pub(crate) fn cost_of(&self, value: &V) -> u64 {
        self.cost.as_ref().map_or(self.fixed_cost, |f| f(value))
    }
}

impl<V: ?Sized> Default for Controls<V> {
    fn default() -> Self {
        Controls::new()
    }
}

impl<V: ?Sized> Clone for Controls<V> {
    fn clone(&self) -> Self {
        Controls {
            no_store: self.no_store,
            no_cache: self.no_cache,
            ttl: self.ttl,
            cacheable: self.cacheable.clone(),
            cost: self.cost.clone(),
            fixed_cost: self.fixed_cost,
            stale_if_error: self.stale_if_error,
        }
    }
}

impl<V: ?Sized> fmt::Debug for Controls<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controls")
            .field("no_store", &self.no_store)
            .field("no_cache", &self.no_cache)
            .field("ttl", &self.ttl)
            .field("cacheable", &self.cacheable.as_ref().map(|_| "fn"))
            .field(
                "cost",
                &self
                    .cost
                    .as_ref()
                    .map_or_else(|| self.fixed_cost.to_string(), |_| "fn".into()),
            )
            .field("stale_if_error", &self.stale_if_error)
            .finish()
    }
}

impl TieredCache {
    /// Sets a value under `controls`: its TTL override, its cost, and whether it is stored at
    /// all (`no_store`, `cacheable`). Returns whether it was stored. `no_cache` and
    /// `stale_if_error` concern loading and have no effect here.
    pub async fn set_with_controls<V: Serialize>(
        &self,
        key: impl Key,
        value: &V,
        controls: &Controls<V>,
    ) -> Result<bool> {
        if !controls.stores(value) {
            return Ok(false);
        }
        let codec = self.tiers.config().codec;
        let bytes = codec::encode(codec, value)?;
        let ttl = controls.ttl.resolve(self.tiers.config().default_ttl);
        let key = self.resolve(&key).await?;
        self.tiers
            .set(
                &key,
                bytes.into(),
                ttl,
                controls.cost_of(value),
                codec.into(),
            )
            .await?;
        Ok(true)
    }
}
