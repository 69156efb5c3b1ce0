//! The settings of an open cache: [`Config`] (every setting, as [`Builder`](crate::Builder)
//! checked them) and the two policies it names.

use std::path::PathBuf;
use std::time::Duration;

use crate::breaker;

/// When `set` returns relative to the disk write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePolicy {
    /// `set` returns once the hot tier has the value and its write is queued (default).
    #[default]
    WriteBehind,
    /// `set` returns once the write reached the disk, or failed (the value is then kept in
    /// memory as dirty and written when the disk is back).
    WriteThrough,
}

/// Whether writes are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync each entry file and its directory (default): an entry the disk acknowledged
    /// survives power loss.
    #[default]
    Fsync,
    /// No fsync: faster; after power loss recent entries may be missing (never torn: the
    /// checksum catches a partial file and it is quarantined).
    NoSync,
}

/// Every setting of a cache. Built by [`Builder`](crate::Builder).
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) root: PathBuf,
    pub(crate) hot_capacity_bytes: usize,
    pub(crate) hot_capacity_entries: usize,
    pub(crate) hot_shards: usize,
    pub(crate) warm_capacity_bytes: u64,
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) max_entry_bytes: usize,
    pub(crate) max_key_bytes: usize,
    /// `None`: the default floor, scaled with the volume (see `Builder::min_free_bytes`).
    pub(crate) min_free_bytes: Option<u64>,
    pub(crate) io_timeout: Duration,
    pub(crate) breaker: breaker::BreakerConfig,
    pub(crate) memory_only_after: u32,
    pub(crate) error_window: Duration,
    pub(crate) recovery_interval: Duration,
    pub(crate) health_interval: Duration,
    pub(crate) sweep_interval: Duration,
    /// The `cache` label of published metrics (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) metrics_name: String,
    /// How often metrics are published (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) metrics_interval: Duration,
    pub(crate) write_policy: WritePolicy,
    pub(crate) durability: Durability,
    pub(crate) write_queue_bytes: usize,
    pub(crate) write_concurrency: usize,
    pub(crate) compression_level: u32,
    /// Whether large entries are written stored and compressed later (see
    /// `Builder::compress_in_background`).
    pub(crate) compress_in_background: bool,
    pub(crate) quarantine_max_files: usize,
    pub(crate) quarantine_max_bytes: u64,
    pub(crate) page_cache_reads: bool,
    pub(crate) codec: crate::codec::Codec,
    /// The shared tier (feature `redis`), when configured.
    #[cfg(feature = "redis")]
    pub(crate) shared: Option<crate::shared::SharedConfig>,
    /// Cross-replica single-flight through the shared tier (feature `redis`).
    #[cfg(feature = "redis")]
    pub(crate) shared_single_flight: bool,
}
