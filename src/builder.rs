//! The builder: every setting, its default as a named constant, and validation in `build`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker;
use crate::cache::TieredCache;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::fs::{Fs, StdFs};

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
/// Default free space the warm tier leaves on its filesystem: 64 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;
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
/// Default gzip level (0-9): 3, a good ratio on LLM text at a small CPU cost.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 3;
/// Default for [`Builder::page_cache_reads`]: on.
pub const DEFAULT_PAGE_CACHE_READS: bool = true;
/// Default bound on files kept in the quarantine.
pub const DEFAULT_QUARANTINE_MAX_FILES: usize = 1000;
/// Default bound on bytes kept in the quarantine: 64 MiB.
pub const DEFAULT_QUARANTINE_MAX_BYTES: u64 = 64 << 20;

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

/// Every setting of a cache. Built by [`Builder`].
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
    pub(crate) min_free_bytes: u64,
    pub(crate) io_timeout: Duration,
    pub(crate) breaker: breaker::BreakerConfig,
    pub(crate) memory_only_after: u32,
    pub(crate) error_window: Duration,
    pub(crate) recovery_interval: Duration,
    pub(crate) health_interval: Duration,
    pub(crate) sweep_interval: Duration,
    pub(crate) write_policy: WritePolicy,
    pub(crate) durability: Durability,
    pub(crate) write_queue_bytes: usize,
    pub(crate) write_concurrency: usize,
    pub(crate) compression_level: u32,
    pub(crate) quarantine_max_files: usize,
    pub(crate) quarantine_max_bytes: u64,
    pub(crate) page_cache_reads: bool,
}

/// Builds a [`TieredCache`]. Every setter documents its default.
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
    fs: Option<Arc<dyn Fs>>,
    clock: Option<Arc<dyn Clock>>,
}

impl Builder {
    /// A builder for a cache whose warm tier lives under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let shards = std::thread::available_parallelism()
            .map(|n| n.get() * 4)
            .unwrap_or(16);
        Builder {
            config: Config {
                root: root.into(),
                hot_capacity_bytes: DEFAULT_HOT_CAPACITY_BYTES,
                hot_capacity_entries: DEFAULT_HOT_CAPACITY_ENTRIES,
                hot_shards: shards,
                warm_capacity_bytes: DEFAULT_WARM_CAPACITY_BYTES,
                default_ttl: DEFAULT_TTL,
                max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
                max_key_bytes: DEFAULT_MAX_KEY_BYTES,
                min_free_bytes: DEFAULT_MIN_FREE_BYTES,
                io_timeout: DEFAULT_IO_TIMEOUT,
                breaker: breaker::BreakerConfig::default(),
                memory_only_after: DEFAULT_MEMORY_ONLY_AFTER,
                error_window: DEFAULT_ERROR_WINDOW,
                recovery_interval: DEFAULT_RECOVERY_INTERVAL,
                health_interval: DEFAULT_HEALTH_INTERVAL,
                sweep_interval: DEFAULT_SWEEP_INTERVAL,
                write_policy: WritePolicy::default(),
                durability: Durability::default(),
                write_queue_bytes: DEFAULT_WRITE_QUEUE_BYTES,
                write_concurrency: DEFAULT_WRITE_CONCURRENCY,
                compression_level: DEFAULT_COMPRESSION_LEVEL,
                quarantine_max_files: DEFAULT_QUARANTINE_MAX_FILES,
                quarantine_max_bytes: DEFAULT_QUARANTINE_MAX_BYTES,
                page_cache_reads: DEFAULT_PAGE_CACHE_READS,
            },
            fs: None,
            clock: None,
        }
    }

    /// Hot-tier byte budget (key + value + a fixed per-entry overhead). Default
    /// [`DEFAULT_HOT_CAPACITY_BYTES`] (64 MiB).
    pub fn hot_capacity_bytes(mut self, bytes: usize) -> Self {
        self.config.hot_capacity_bytes = bytes;
        self
    }

    /// Hot-tier entry budget. Default [`DEFAULT_HOT_CAPACITY_ENTRIES`] (100,000).
    pub fn hot_capacity_entries(mut self, entries: usize) -> Self {
        self.config.hot_capacity_entries = entries;
        self
    }

    /// Number of hot-tier shards (rounded up to a power of two). Default: 4 per available
    /// core.
    pub fn hot_shards(mut self, shards: usize) -> Self {
        self.config.hot_shards = shards;
        self
    }

    /// Warm-tier byte budget (entry files). Default [`DEFAULT_WARM_CAPACITY_BYTES`] (1 GiB).
    pub fn warm_capacity_bytes(mut self, bytes: u64) -> Self {
        self.config.warm_capacity_bytes = bytes;
        self
    }

    /// Expiry for entries set without an explicit TTL. Default: none.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = Some(ttl);
        self
    }

    /// Largest encoded value accepted by `set`. Default [`DEFAULT_MAX_ENTRY_BYTES`] (16 MiB).
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.config.max_entry_bytes = bytes;
        self
    }

    /// Longest key accepted. Default [`DEFAULT_MAX_KEY_BYTES`] (16 KiB).
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.config.max_key_bytes = bytes;
        self
    }

    /// Free space the warm tier leaves on its filesystem; a write that would go below it is
    /// handled like ENOSPC. Default [`DEFAULT_MIN_FREE_BYTES`] (64 MiB); 0 disables the check.
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.config.min_free_bytes = bytes;
        self
    }

    /// Bound on one disk operation; one that takes longer counts as a timeout failure.
    /// Default [`DEFAULT_IO_TIMEOUT`] (5 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.config.io_timeout = timeout;
        self
    }

    /// Consecutive disk failures that open the breaker. Default
    /// [`breaker::DEFAULT_FAILURE_THRESHOLD`] (3).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.config.breaker.failure_threshold = n;
        self
    }

    /// How long the breaker stays open before a half-open probe; doubles after each failed
    /// probe up to `max_open_timeout`. Default [`breaker::DEFAULT_OPEN_TIMEOUT`] (30 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.config.breaker.open_timeout = timeout;
        self
    }

    /// Cap of the growing open timeout. Default [`breaker::DEFAULT_MAX_OPEN_TIMEOUT`] (10 min).
    pub fn max_open_timeout(mut self, timeout: Duration) -> Self {
        self.config.breaker.max_open_timeout = timeout;
        self
    }

    /// Disk calls admitted while half-open. Default [`breaker::DEFAULT_HALF_OPEN_MAX`] (1).
    pub fn half_open_max(mut self, n: u32) -> Self {
        self.config.breaker.half_open_max = n;
        self
    }

    /// Disk errors within `error_window` that switch to memory-only mode. Default
    /// [`DEFAULT_MEMORY_ONLY_AFTER`] (10).
    pub fn memory_only_after(mut self, n: u32) -> Self {
        self.config.memory_only_after = n;
        self
    }

    /// The window in which disk errors are counted. Default [`DEFAULT_ERROR_WINDOW`] (5 min).
    pub fn error_window(mut self, window: Duration) -> Self {
        self.config.error_window = window;
        self
    }

    /// Interval between recovery probes while memory-only. Default
    /// [`DEFAULT_RECOVERY_INTERVAL`] (5 min).
    pub fn recovery_interval(mut self, interval: Duration) -> Self {
        self.config.recovery_interval = interval;
        self
    }

    /// Interval between health checks while tiered. Default [`DEFAULT_HEALTH_INTERVAL`] (60 s).
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.config.health_interval = interval;
        self
    }

    /// Interval between sweeps that delete expired entry files. Default
    /// [`DEFAULT_SWEEP_INTERVAL`] (5 min).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.config.sweep_interval = interval;
        self
    }

    /// Write-behind (default) or write-through.
    pub fn write_policy(mut self, policy: WritePolicy) -> Self {
        self.config.write_policy = policy;
        self
    }

    /// Whether a `get` whose entry file is in the page cache of a local ext4, xfs or btrfs
    /// filesystem reads it on the calling thread (default [`DEFAULT_PAGE_CACHE_READS`]: on),
    /// skipping the hop to the
    /// blocking pool (~20 µs, most of a small warm hit). Only calls that cannot wait for the
    /// device are made there (`RESOLVE_CACHED`, `O_NOATIME`, `RWF_NOWAIT`; the file is closed
    /// on a helper thread); anything else takes the timed blocking path. Turn it off where
    /// opening a file can wait for something other than the disk: a fanotify-based
    /// antivirus or EDR agent that vets every open, or a network or FUSE filesystem mounted
    /// *inside* the cache directory.
    pub fn page_cache_reads(mut self, enabled: bool) -> Self {
        self.config.page_cache_reads = enabled;
        self
    }

    /// fsync (default) or not.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// Bytes the write-behind queue holds before `set` waits. Default
    /// [`DEFAULT_WRITE_QUEUE_BYTES`] (64 MiB).
    pub fn write_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.write_queue_bytes = bytes;
        self
    }

    /// Entry writes in flight at once. Default [`DEFAULT_WRITE_CONCURRENCY`] (4).
    pub fn write_concurrency(mut self, n: usize) -> Self {
        self.config.write_concurrency = n;
        self
    }

    /// gzip level 0-9. Default [`DEFAULT_COMPRESSION_LEVEL`] (3).
    pub fn compression_level(mut self, level: u32) -> Self {
        self.config.compression_level = level;
        self
    }

    /// Bounds of the quarantine directory. Defaults [`DEFAULT_QUARANTINE_MAX_FILES`] (1000)
    /// and [`DEFAULT_QUARANTINE_MAX_BYTES`] (64 MiB).
    pub fn quarantine_limits(mut self, max_files: usize, max_bytes: u64) -> Self {
        self.config.quarantine_max_files = max_files;
        self.config.quarantine_max_bytes = max_bytes;
        self
    }

    /// The file system to use. Default: the real one ([`StdFs`]). Tests hand in a
    /// fault-injecting one.
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = Some(fs);
        self
    }

    /// The wall clock for expiry. Default: [`TokioClock`](crate::clock::TokioClock), which
    /// follows tokio's (pausable) clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates the settings.
    fn validate(&self) -> Result<()> {
        let c = &self.config;
        let bad = |msg: &str| Err(Error::Config(msg.to_owned()));
        if c.hot_capacity_entries == 0 {
            return bad("hot_capacity_entries must be at least 1");
        }
        if c.max_key_bytes == 0 || c.max_key_bytes > u32::MAX as usize {
            return bad("max_key_bytes must be between 1 and 4 GiB");
        }
        if c.max_entry_bytes == 0 {
            return bad("max_entry_bytes must be at least 1");
        }
        if c.compression_level > 9 {
            return bad("compression_level must be 0-9");
        }
        if c.io_timeout.is_zero() {
            return bad("io_timeout must be positive");
        }
        if c.recovery_interval.is_zero()
            || c.health_interval.is_zero()
            || c.sweep_interval.is_zero()
        {
            return bad("recovery_interval, health_interval and sweep_interval must be positive");
        }
        if c.error_window.is_zero() {
            return bad("error_window must be positive");
        }
        if c.write_concurrency == 0 {
            return bad("write_concurrency must be at least 1");
        }
        if c.root.as_os_str().is_empty() {
            return bad("the cache directory must not be empty");
        }
        Ok(())
    }

    /// Opens the cache: creates the directory layout, sweeps orphan temp files, and starts
    /// the background tasks (writer, index scan, sweeps). Does not scan existing entries
    /// before returning; entries from a previous process are readable at once.
    pub async fn build(self) -> Result<TieredCache> {
        self.validate()?;
        let mut config = self.config;
        // A canonical root lets the fs refuse every symlink below it (see `fs::StdFs`). If the
        // directory cannot be created now, the path is kept as given and the first disk
        // operations fail and degrade the cache instead of failing `build`.
        let _ = std::fs::create_dir_all(&config.root);
        if let Ok(canonical) = std::fs::canonicalize(&config.root) {
            config.root = canonical;
        }
        let fs = self.fs.unwrap_or_else(|| Arc::new(StdFs));
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(crate::clock::TokioClock::new()));
        TieredCache::open_with(config, fs, clock).await
    }
}
