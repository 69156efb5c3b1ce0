//! # answercache
//!
//! A response cache for agent backends (LLM answers, tool results): a memory LRU **hot tier**
//! in front of a gzip-compressed on-disk **warm tier**. A failing disk degrades the cache
//! instead of failing the caller; corrupted files are quarantined, never served.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use answercache::TieredCache;
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Answer { text: String, tokens: u32 }
//!
//! let dir = tempfile::tempdir()?;
//! let cache = TieredCache::builder(dir.path())
//!     .hot_capacity_bytes(64 << 20)
//!     .warm_capacity_bytes(1 << 30)
//!     .default_ttl(Duration::from_secs(24 * 3600))
//!     .build()
//!     .await?;
//!
//! let answer = Answer { text: "Paris".into(), tokens: 3 };
//! cache.set("capital of France?", &answer).await?;
//! let hit: Option<Answer> = cache.get("capital of France?").await?;
//! assert_eq!(hit, Some(answer));
//! cache.close().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Architecture
//! A handle ([`TieredCache`]) composes named parts, each owning its state: the hot tier (a
//! sharded LRU), the write queue, the disk gate (breaker, memory-only mode, `io_timeout`, over
//! the [`fs`] seam and the [`warm`] store), the freshness record (the clear fence and keys lost
//! from memory), the writer and recovery. Public building blocks: [`warm`] (the entry
//! [format](warm::format), see FORMAT.md, the [path scheme](warm::layout) and the
//! [walk](warm::walk) of a cache directory), [`fs`],
//! [`breaker`], [`verify`], [`agent`] (single-flight loading, request keys, namespaces). See
//! docs/ARCHITECTURE.md in the repository.
//!
//! ## Features
//! | feature | what it adds |
//! |---|---|
//! | `cli` | the `answercache` binary (`demo`, operator commands) |
//! | `test-util` | [`testing`]: fault-injecting file systems and the `TestDir`/`TestCache` fixture, for tests of code that embeds answercache (implies `workload`) |
//! | `metrics` | every `Stats` figure through the `metrics` facade (`TieredCache::publish_metrics`; names in docs/METRICS.md) |
//! | `redis` | the shared tier on Redis or Valkey (`SharedConfig`, `Builder::shared`): replicas share answers (hot → warm → shared → loader); never fails or blocks a caller |
//! | `redis-tls` | `rediss://` / `valkeys://` URLs for the shared tier (rustls) |
//! | `workload` | `workload`: the seeded generator of the demo, benches and tests (LLM-like prose, chat completions, Zipf access); not part of the cache API |

#![forbid(unsafe_code)]

pub mod agent;
mod answer;
pub mod breaker;
mod builder;
mod cache;
pub mod clock;
mod codec;
mod compactor;
mod config;
pub mod defaults;
mod disk;
mod error;
mod freshness;
pub mod fs;
mod handle;
mod hot;
mod key;
mod key_scan;
mod log;
mod maintenance;
mod parts;
#[cfg(feature = "metrics")]
mod publish;
mod queue;
mod resilience;
#[cfg(feature = "redis")]
pub mod shared;
mod stats;
mod supervise;
mod sync;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod verify;
pub mod warm;
#[cfg(any(test, feature = "workload"))]
pub mod workload;
mod writer;

pub use agent::{Controls, Namespace, RequestKey, RequestKeyBuilder};
pub use answer::{Answer, Source};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use builder::Builder;
pub use clock::{Clock, ManualClock, TokioClock};
pub use codec::{Codec, Encoding, MAX_JSON_DEPTH};
pub use config::{Config, Durability, WritePolicy};
pub use error::{Error, LoaderError, Result};
pub use fs::{Fs, IoErrorKind, StdFs};
pub use handle::TieredCache;
pub use hot::ENTRY_OVERHEAD as HOT_ENTRY_OVERHEAD;
pub use key::Key;
#[cfg(feature = "redis")]
pub use shared::SharedConfig;
pub use stats::{Mode, Stats};
pub use warm::Corruption;

/// The README's code blocks, compiled and run as doctests so the quickstart stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
