//! The default of every [`Builder`](crate::Builder) setting, as a named constant.

use std::time::Duration;

/// Default hot-tier byte budget: 64 MiB.
pub const DEFAULT_HOT_CAPACITY_BYTES: usize = 64 << 20;
/// Default hot-tier entry budget.
pub const DEFAULT_HOT_CAPACITY_ENTRIES: usize = 100_000;
/// Default warm-tier byte budget: 1 GiB of entry files.
pub const DEFAULT_WARM_CAPACITY_BYTES: u64 = 1 << 30;
/// Default expiry: none (entries live until evicted or removed).
pub const DEFAULT_TTL: Option<Duration> = None;
/// Default largest encoded value: 16 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 16 << 20;
/// Default longest key: 16 KiB (long enough for a raw prompt; hash longer ones).
pub const DEFAULT_MAX_KEY_BYTES: usize = 16 << 10;
/// Default free space the warm tier leaves on its filesystem: 64 MiB, or
/// [`DEFAULT_MIN_FREE_PERCENT`] of the filesystem if that is less.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;
/// The default free-space floor as a share of the filesystem's size, in percent, when that is
/// below [`DEFAULT_MIN_FREE_BYTES`]: 5.
pub const DEFAULT_MIN_FREE_PERCENT: u64 = 5;
/// Default interval between two publications of the metrics (feature `metrics`): 10 s.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(10);
/// Default bound on one disk call: 5 s.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Default disk errors within `error_window` that switch to memory-only mode.
pub const DEFAULT_MEMORY_ONLY_AFTER: u32 = 10;
/// Default window in which disk errors are counted: 5 min.
pub const DEFAULT_ERROR_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Default interval between recovery probes while memory-only: 5 min.
pub const DEFAULT_RECOVERY_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default interval between health checks while tiered: 60 s.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(60);
/// Default interval between sweeps of expired entry files: 5 min.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default bound on bytes waiting in the write-behind queue: 64 MiB.
pub const DEFAULT_WRITE_QUEUE_BYTES: usize = 64 << 20;
/// Default number of entry writes in flight at once.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 4;
/// Default gzip level (0-9): 3, a good ratio on LLM text at a small CPU cost. It applies to
/// entries larger than one allocation unit; smaller ones are stored (see
/// [`Builder::compression_level`](crate::Builder::compression_level)).
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 3;
/// Default for [`Builder::compress_in_background`](crate::Builder::compress_in_background):
/// on (a large entry is written stored and compressed when the disk is idle).
pub const DEFAULT_COMPRESS_IN_BACKGROUND: bool = true;
/// Default for [`Builder::page_cache_reads`](crate::Builder::page_cache_reads): on.
pub const DEFAULT_PAGE_CACHE_READS: bool = true;
/// Default bound on files kept in the quarantine.
pub const DEFAULT_QUARANTINE_MAX_FILES: usize = 1000;
/// Default bound on bytes kept in the quarantine: 64 MiB.
pub const DEFAULT_QUARANTINE_MAX_BYTES: u64 = 64 << 20;
