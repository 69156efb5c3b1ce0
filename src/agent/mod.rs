//! Agent features: what an LLM backend needs beyond `get` and `set`.
//!
//! - **Single-flight loading** ([`get_or_insert_with`](crate::TieredCache::get_or_insert_with),
//!   [`get_or_insert_with_controls`](crate::TieredCache::get_or_insert_with_controls)): on a miss one loader runs per key, however
//!   many workers ask at once; errors reach every waiter and are never cached; a cancelled or
//!   panicking loader never wedges its key; an expired answer can be served when the model
//!   fails (`stale_if_error`).
//! - **Request keys** ([`RequestKey`]): a stable, versioned key from the model, messages,
//!   tools and parameters, hashed over canonical JSON.
//! - **Namespaces** ([`Namespace`]): O(1) invalidation of a whole group of answers by a
//!   persisted generation number, and [`Namespace::invalidate_if`] /
//!   [`TieredCache::invalidate_if`](crate::TieredCache::invalidate_if) for predicate-based
//!   removal.
//! - **Per-call controls** ([`Controls`]): `no_store`, `no_cache`, a TTL override, a
//!   `cacheable` predicate, `stale_if_error`, and the cost of an answer, summed over hits
//!   into `Stats::cost_saved`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use answercache::agent::{Controls, RequestKey};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
//! struct Answer { text: String, finish_reason: String, tokens: u64 }
//!
//! # let dir = tempfile::tempdir()?;
//! let cache = answercache::TieredCache::open(dir.path()).await?;
//! let chat = cache.namespace("chat")?;
//! let key = chat
//!     .request_key_builder()
//!     .model("gpt-4o-mini")
//!     .message("user", "Capital of France?")
//!     .param("temperature", &0.0)
//!     .build()?;
//! let controls = Controls::new()
//!     .ttl(Duration::from_secs(3600))
//!     .cacheable(|a: &Answer| a.finish_reason == "stop")
//!     .cost_by(|a: &Answer| a.tokens);
//! for _ in 0..3 {
//!     let answer = chat
//!         .get_or_insert_with_controls(&key, &controls, || async {
//!             // the model call
//!             Ok::<_, std::io::Error>(Answer {
//!                 text: "Paris".into(),
//!                 finish_reason: "stop".into(),
//!                 tokens: 42,
//!             })
//!         })
//!         .await?;
//!     assert_eq!(answer.text, "Paris");
//! }
//! let stats = cache.stats();
//! assert_eq!((stats.loader_calls, stats.cost_saved), (1, 84));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

// Layers, bottom up (no file imports one above it): `canonical`, `value`, `request_key`
// (keys); `generation`, `flights` (per-cache state over the tiers' narrow API), `state`
// (both, held by the cache handle); `controls`, `namespace`, `single_flight`, `invalidate`
// (the public methods, on the handle).
mod canonical;
mod controls;
mod flights;
pub(crate) mod generation;
mod invalidate;
mod namespace;
#[cfg(feature = "redis")]
mod pending;
pub(crate) mod request_key;
#[cfg(feature = "redis")]
pub(crate) mod shared_sync;
mod single_flight;
pub(crate) mod state;
mod value;

pub use controls::Controls;
pub use generation::MAX_NAMESPACE_LEN;
pub use namespace::Namespace;
pub use request_key::{RequestKey, RequestKeyBuilder, KEY_CONTEXT, KEY_SCHEMA_VERSION};
