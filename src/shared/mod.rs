//! The shared tier (feature `redis`): replicas of an agent backend share answers through a
//! Redis or Valkey server they already run. It sits after the warm tier (hot → warm → shared
//! → loader) and is an optimisation: it never fails or blocks a caller. SHARED_TIER.md in the
//! repository is the design; docs/ARCHITECTURE.md names the parts.
//!
//! Files: `config` ([`SharedConfig`]), `store` (the crate-private seam and the failure
//! classification), `redis_store` (the seam on a server), `entry` (key names, MAC and the
//! verification of a value read back), `queue` (the bounded write queue), `tier` (the gate:
//! breaker, timeouts, reads, batches, namespace generations, leases), `tasks` (the drain,
//! probe and namespace-sync tasks).

pub(crate) mod config;
pub(crate) mod entry;
pub(crate) mod lease;
pub(crate) mod queue;
pub(crate) mod redis_store;
pub(crate) mod store;
pub(crate) mod tasks;
pub(crate) mod tier;

pub use config::{
    SharedConfig, DEFAULT_LEASE_MAX_HOLD, DEFAULT_LEASE_RENEW_INTERVAL, DEFAULT_LEASE_TTL,
    DEFAULT_LEASE_WAIT_MAX, DEFAULT_NAMESPACE_SYNC_INTERVAL, DEFAULT_SHARED_FAILURE_THRESHOLD,
    DEFAULT_SHARED_MAX_ENTRY_BYTES, DEFAULT_SHARED_MAX_OPEN_TIMEOUT, DEFAULT_SHARED_MAX_TTL,
    DEFAULT_SHARED_OPEN_TIMEOUT, DEFAULT_SHARED_PREFIX, DEFAULT_SHARED_TIMEOUT,
    DEFAULT_SHARED_WRITE_QUEUE_BYTES,
};
