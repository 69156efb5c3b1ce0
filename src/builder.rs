//! The builder: every setting (its default a constant in [`defaults`](crate::defaults)), and
//! validation in `build`.
//!
//! Every setter has a checked range or a defined meaning at its extremes (0, 1, the type's
//! MAX), stated in its documentation: a value out of range fails [`Builder::build`] with
//! [`Error::Config`] naming the setter and its valid range, so a configuration mistake never
//! surfaces later as a panic in a background task or a hang in `flush`. Wherever a duration is
//! an interval that may be "never", `Duration::MAX` means never; a timeout that guards against
//! a hung disk has an upper bound instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker;
use crate::clock::Clock;
use crate::config::{Config, Durability, WritePolicy};
use crate::error::{Error, Result};
use crate::fs::{Fs, IoErrorKind, StdFs};
use crate::handle::TieredCache;

use crate::defaults::*;

/// Most hot-tier shards ([`Builder::hot_shards`]).
pub(crate) const MAX_HOT_SHARDS: usize = 1024;
/// Longest key and largest value: the entry format stores a key length in 32 bits, and a
/// value's limit sizes every read buffer bound, which must not overflow.
pub(crate) const MAX_KEY_OR_ENTRY_BYTES: usize = u32::MAX as usize;
/// Shortest default TTL: expiry has millisecond resolution.
pub(crate) const MIN_TTL: Duration = Duration::from_millis(1);
/// Bounds of [`Builder::io_timeout`]: a disk call must be able to finish, and a hung one must
/// be cut off.
pub(crate) const MIN_IO_TIMEOUT: Duration = Duration::from_millis(1);
pub(crate) const MAX_IO_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest breaker open time ([`Builder::open_timeout`], [`Builder::max_open_timeout`]).
pub(crate) const MAX_OPEN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Most probes while half-open ([`Builder::half_open_max`]).
pub(crate) const MAX_HALF_OPEN: u32 = 1024;
/// Most errors [`Builder::memory_only_after`] may wait for (each is remembered until it leaves
/// the error window).
pub(crate) const MAX_MEMORY_ONLY_AFTER: u32 = 100_000;
/// Shortest window or interval (the timers' resolution).
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Most concurrent entry writes ([`Builder::write_concurrency`]).
pub(crate) const MAX_WRITE_CONCURRENCY: usize = crate::writer::MAX_WRITE_CONCURRENCY;
/// Highest gzip level.
pub(crate) const MAX_COMPRESSION_LEVEL: u32 = 9;

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
            .map(|n| n.get().saturating_mul(4))
            .unwrap_or(16)
            .clamp(1, MAX_HOT_SHARDS);
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
                min_free_bytes: None,
                io_timeout: DEFAULT_IO_TIMEOUT,
                breaker: breaker::BreakerConfig::default(),
                memory_only_after: DEFAULT_MEMORY_ONLY_AFTER,
                error_window: DEFAULT_ERROR_WINDOW,
                recovery_interval: DEFAULT_RECOVERY_INTERVAL,
                health_interval: DEFAULT_HEALTH_INTERVAL,
                sweep_interval: DEFAULT_SWEEP_INTERVAL,
                #[cfg(feature = "metrics")]
                metrics_name: "answercache".to_owned(),
                #[cfg(feature = "metrics")]
                metrics_interval: DEFAULT_METRICS_INTERVAL,
                write_policy: WritePolicy::default(),
                durability: Durability::default(),
                write_queue_bytes: DEFAULT_WRITE_QUEUE_BYTES,
                write_concurrency: DEFAULT_WRITE_CONCURRENCY,
                compression_level: DEFAULT_COMPRESSION_LEVEL,
                compress_in_background: DEFAULT_COMPRESS_IN_BACKGROUND,
                quarantine_max_files: DEFAULT_QUARANTINE_MAX_FILES,
                quarantine_max_bytes: DEFAULT_QUARANTINE_MAX_BYTES,
                page_cache_reads: DEFAULT_PAGE_CACHE_READS,
                codec: crate::codec::Codec::Json,
                #[cfg(feature = "redis")]
                shared: None,
                #[cfg(feature = "redis")]
                shared_single_flight: false,
            },
            fs: None,
            clock: None,
        }
    }

    /// The codec typed values are stored with (`set`, `get_or_insert_*`). Default
    /// [`Codec::Json`](crate::Codec::Json): self-describing, round-trips every serde type
    /// and tolerates added `#[serde(default)]` fields. [`Codec::Bincode`](crate::Codec::Bincode)
    /// is compact, for fixed-shape values such as embedding vectors. Each entry records its
    /// codec, so entries written with another setting stay readable. See
    /// [`Codec`](crate::Codec) for what each can carry.
    pub fn codec(mut self, codec: crate::codec::Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// Hot-tier byte budget (key + value + a fixed per-entry overhead of
    /// [`ENTRY_OVERHEAD`](crate::HOT_ENTRY_OVERHEAD) bytes). Default
    /// [`DEFAULT_HOT_CAPACITY_BYTES`] (64 MiB).
    ///
    /// Any value is valid. `usize::MAX`: no byte bound (`hot_capacity_entries` still bounds the
    /// tier). A budget too small for an entry (0 for every entry) keeps that value out of
    /// memory: it is served from the write queue until written, then from the warm tier; while
    /// the cache is memory-only such a value cannot be kept (it counts as a lost write), and
    /// removals still leave their tombstone in memory until the delete reaches the disk.
    pub fn hot_capacity_bytes(mut self, bytes: usize) -> Self {
        self.config.hot_capacity_bytes = bytes;
        self
    }

    /// Hot-tier entry budget. Default [`DEFAULT_HOT_CAPACITY_ENTRIES`] (100,000).
    ///
    /// Range `1..=usize::MAX`; 0 is rejected. `usize::MAX`: no entry bound.
    pub fn hot_capacity_entries(mut self, entries: usize) -> Self {
        self.config.hot_capacity_entries = entries;
        self
    }

    /// Number of hot-tier shards (rounded up to a power of two). Default: 4 per available
    /// core, at most 1024.
    ///
    /// Range `1..=1024`; 0 and larger values are rejected.
    pub fn hot_shards(mut self, shards: usize) -> Self {
        self.config.hot_shards = shards;
        self
    }

    /// Warm-tier byte budget: the space the entries take on disk, as `du` counts it. Default
    /// [`DEFAULT_WARM_CAPACITY_BYTES`] (1 GiB).
    ///
    /// Each entry file counts its length rounded up to the file system's allocation unit
    /// (4 KiB on ext4, XFS, APFS, tmpfs), plus 128 bytes of directory entry; each of the at
    /// most 256 fan-out directories holding an entry counts one unit. So a 250-byte answer
    /// costs 4,224 bytes: an 8 MiB budget holds about 1,900 of them, and `du -sk` of the root
    /// stays within the budget plus 1 MiB (`Stats::warm_disk_bytes` is the figure; FORMAT.md,
    /// "What the warm budget counts").
    ///
    /// Any value is valid. `u64::MAX`: no bound other than the filesystem's free space (see
    /// [`min_free_bytes`](Builder::min_free_bytes)). A value whose entry file would exceed the
    /// whole budget (0 for every value) is never written to disk: it lives in the hot tier
    /// only, an older file of its key is deleted, and `flush` does not report it (it is
    /// memory-only by configuration, not by failure).
    pub fn warm_capacity_bytes(mut self, bytes: u64) -> Self {
        self.config.warm_capacity_bytes = bytes;
        self
    }

    /// Expiry for entries set without an explicit TTL. Default: none (entries live until
    /// evicted or removed).
    ///
    /// Millisecond resolution (a fraction of a millisecond is dropped); range: at least 1 ms,
    /// so `Duration::ZERO` and anything under 1 ms are rejected (every entry would be expired
    /// when stored). `Duration::MAX`, like any TTL of `u64::MAX` ms or more, means never: the
    /// same as not calling this.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = if ttl.as_millis() >= u128::from(u64::MAX) {
            None
        } else {
            Some(ttl)
        };
        self
    }

    /// Largest encoded value accepted by `set`. Default [`DEFAULT_MAX_ENTRY_BYTES`] (16 MiB).
    ///
    /// Range `1..=u32::MAX` (4 GiB - 1); 0 and larger values are rejected. Reads of entry
    /// files are bounded by it.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.config.max_entry_bytes = bytes;
        self
    }

    /// Longest key accepted. Default [`DEFAULT_MAX_KEY_BYTES`] (16 KiB).
    ///
    /// Range `1..=u32::MAX` (the entry format stores the key length in 32 bits); 0 and larger
    /// values are rejected.
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.config.max_key_bytes = bytes;
        self
    }

    /// Free space the warm tier leaves on its filesystem; a write that would go below it is
    /// handled like ENOSPC. Default: [`DEFAULT_MIN_FREE_BYTES`] (64 MiB) or
    /// [`DEFAULT_MIN_FREE_PERCENT`](crate::defaults::DEFAULT_MIN_FREE_PERCENT) (5%) of the
    /// filesystem's size, whichever is smaller, so that a small volume (a 32 MiB tmpfs) is
    /// still used. A value set here is used as it is, whatever the volume.
    ///
    /// Any value is valid. 0 disables the check. A value above the filesystem's free space
    /// (`u64::MAX` always is) refuses every entry write like a full disk: values are served
    /// from memory, the breaker and memory-only mode react as to ENOSPC, and `flush`/`close`
    /// report what was not written.
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.config.min_free_bytes = Some(bytes);
        self
    }

    /// Bound on one disk operation; one that takes longer counts as a timeout failure.
    /// Default [`DEFAULT_IO_TIMEOUT`] (5 s).
    ///
    /// Range 1 ms ..= 1 h. There is no "never": a hung disk must always be cut off, so
    /// `Duration::MAX` is rejected, as are `Duration::ZERO` and anything under 1 ms (no disk
    /// call could finish). Near the floor, a healthy but busy disk times out too (an fsync
    /// often takes milliseconds): each timeout counts as a failure and leaves the entry dirty.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.config.io_timeout = timeout;
        self
    }

    /// Consecutive disk failures that open the breaker. Default
    /// [`breaker::DEFAULT_FAILURE_THRESHOLD`] (3).
    ///
    /// Range `1..=u32::MAX`; 0 is rejected. `u32::MAX`: in practice the breaker never opens on
    /// failures (memory-only mode, see [`memory_only_after`](Builder::memory_only_after), still
    /// applies).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.config.breaker.failure_threshold = n;
        self
    }

    /// How long the breaker stays open before a half-open probe; doubles after each failed
    /// probe up to `max_open_timeout`. Default [`breaker::DEFAULT_OPEN_TIMEOUT`] (30 s).
    ///
    /// Range 0 ..= 24 h. `Duration::ZERO`: the breaker half-opens at once, so the next disk
    /// call is the probe. There is no "never" (`Duration::MAX` is rejected): a breaker that
    /// never half-opens would abandon the disk for good while the cache still reports Tiered.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.config.breaker.open_timeout = timeout;
        self
    }

    /// Cap of the growing open timeout. Default [`breaker::DEFAULT_MAX_OPEN_TIMEOUT`] (10 min).
    ///
    /// Range 0 ..= 24 h (`Duration::MAX` is rejected, as for `open_timeout`). A cap below
    /// `open_timeout` (0, say) never shortens it: the open time then stays at `open_timeout`
    /// and does not grow.
    pub fn max_open_timeout(mut self, timeout: Duration) -> Self {
        self.config.breaker.max_open_timeout = timeout;
        self
    }

    /// Disk calls admitted while half-open, and successes needed to close. Default
    /// [`breaker::DEFAULT_HALF_OPEN_MAX`] (1).
    ///
    /// Range `1..=1024`; 0 (no probe could ever close the breaker) and larger values are
    /// rejected.
    pub fn half_open_max(mut self, n: u32) -> Self {
        self.config.breaker.half_open_max = n;
        self
    }

    /// Disk errors within `error_window` that switch to memory-only mode. Default
    /// [`DEFAULT_MEMORY_ONLY_AFTER`] (10).
    ///
    /// Range `1..=100_000` (each counted error is remembered until it leaves the window); 0
    /// and larger values are rejected.
    pub fn memory_only_after(mut self, n: u32) -> Self {
        self.config.memory_only_after = n;
        self
    }

    /// The window in which disk errors are counted. Default [`DEFAULT_ERROR_WINDOW`] (5 min).
    ///
    /// At least 1 ms; `Duration::ZERO` and anything under 1 ms are rejected. `Duration::MAX`:
    /// errors never leave the window; they count until the next switch to memory-only mode.
    pub fn error_window(mut self, window: Duration) -> Self {
        self.config.error_window = window;
        self
    }

    /// Interval between recovery probes while memory-only. Default
    /// [`DEFAULT_RECOVERY_INTERVAL`] (5 min).
    ///
    /// At least 1 ms; `Duration::ZERO` and anything under 1 ms are rejected. `Duration::MAX`:
    /// never probe, so once memory-only the cache stays memory-only until it is reopened.
    pub fn recovery_interval(mut self, interval: Duration) -> Self {
        self.config.recovery_interval = interval;
        self
    }

    /// Interval between health checks while tiered. Default [`DEFAULT_HEALTH_INTERVAL`] (60 s).
    ///
    /// At least 1 ms; `Duration::ZERO` and anything under 1 ms are rejected. `Duration::MAX`:
    /// no health checks (the breaker's own probes and the recovery probe still run).
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.config.health_interval = interval;
        self
    }

    /// Interval between sweeps that delete expired entry files. Default
    /// [`DEFAULT_SWEEP_INTERVAL`] (5 min).
    ///
    /// At least 1 ms; `Duration::ZERO` and anything under 1 ms are rejected. `Duration::MAX`:
    /// no sweeps after the startup scan (an expired file is still never served, and is deleted
    /// when read or evicted).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.config.sweep_interval = interval;
        self
    }

    /// The value of the `cache` label on every published metric (feature `metrics`; see
    /// the list of metrics in [`TieredCache::publish_metrics`]). Default `"answercache"`; give
    /// each cache of a process its own.
    #[cfg(feature = "metrics")]
    pub fn metrics_name(mut self, name: impl Into<String>) -> Self {
        self.config.metrics_name = name.into();
        self
    }

    /// How often the cache publishes its metrics (feature `metrics`). Default
    /// [`DEFAULT_METRICS_INTERVAL`] (10 s).
    ///
    /// At least 1 ms. `Duration::MAX`: never on its own (call
    /// [`TieredCache::publish_metrics`], e.g. before each scrape).
    #[cfg(feature = "metrics")]
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.config.metrics_interval = interval;
        self
    }

    /// Write-behind (default) or write-through. Both values are valid.
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
    /// *inside* the cache directory. Linux only: the portable file system of other systems
    /// ([`StdFs::portable`]) reads every file on the blocking pool.
    pub fn page_cache_reads(mut self, enabled: bool) -> Self {
        self.config.page_cache_reads = enabled;
        self
    }

    /// fsync (default) or not. Both values are valid.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// Bytes the write-behind queue holds before `set` waits. Default
    /// [`DEFAULT_WRITE_QUEUE_BYTES`] (64 MiB).
    ///
    /// Range `1..=usize::MAX`; 0 is rejected (for `set` to wait for the disk, use
    /// [`WritePolicy::WriteThrough`]). Each queued operation is charged its key, its value and
    /// a fixed overhead (128 bytes); a bound below one operation's charge holds one operation
    /// at a time, and one operation larger than the bound waits for an empty queue. Values
    /// above 4 GiB act as 4 GiB (`usize::MAX`: as large as possible).
    pub fn write_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.write_queue_bytes = bytes;
        self
    }

    /// Entry writes in flight at once. Default [`DEFAULT_WRITE_CONCURRENCY`] (4).
    ///
    /// Range `1..=1024`; 0 (nothing would ever be written) and larger values are rejected.
    pub fn write_concurrency(mut self, n: usize) -> Self {
        self.config.write_concurrency = n;
        self
    }

    /// gzip level of the entries larger than one allocation unit. Default
    /// [`DEFAULT_COMPRESSION_LEVEL`] (3).
    ///
    /// Range `0..=9`: 0 stores without compressing (still gzip-framed and checksummed), 9
    /// compresses best; larger values are rejected. At every level, an entry whose stored
    /// (level 0) file fits in one allocation unit of the file system (4 KiB on most; the warm
    /// budget rounds every file up to it), and is at most 4 KiB whatever the unit, is stored:
    /// compressing it would save no space, and a stored entry inflates about 3x faster when
    /// read.
    pub fn compression_level(mut self, level: u32) -> Self {
        self.config.compression_level = level;
        self
    }

    /// Whether an entry that would be compressed is first written stored (gzip level 0, as
    /// every reader reads it) and compressed at [`compression_level`](Self::compression_level)
    /// by a background task when the disk has been idle for a moment (default
    /// [`DEFAULT_COMPRESS_IN_BACKGROUND`], `true`). A write-through `set` then waits for the
    /// durable write only, not for the encode (about half of a durable 64 KiB write on a slow
    /// core: BENCHMARKS.md, "Session 19"), and a write-behind burst drains at the speed of the
    /// disk.
    ///
    /// The costs: a large entry is written twice, and until its compaction it takes (and the
    /// warm budget charges) its stored size. Bounds: an entry is written stored only if its
    /// stored file is at most an eighth of the warm budget and the volume keeps 64 MiB free
    /// above `min_free_bytes` besides it (else it is compressed first); under writes that
    /// never pause the compactor still runs once a second, and without waiting once the
    /// entries waiting take an eighth of the budget. The compressed file replaces the stored
    /// one only if that is still the file at the entry path (checked under the key's lock,
    /// also across processes), durable before it replaces it. Compactions never count
    /// against the breaker; one that fails pauses them for 30 s, and an entry whose
    /// compaction failed three times stays stored. A write refused that headroom makes the
    /// compactor work without waiting until the backlog is empty. `close` waits for a
    /// compaction in flight (at most `io_timeout`); entries still waiting stay stored (valid,
    /// larger) until they are written again. `false`: every entry is compressed before its
    /// write, as in earlier releases. Values written through the shared tier too are
    /// compressed once, before both writes, either way. Both values are valid.
    pub fn compress_in_background(mut self, enabled: bool) -> Self {
        self.config.compress_in_background = enabled;
        self
    }

    /// Bounds of the quarantine directory. Defaults [`DEFAULT_QUARANTINE_MAX_FILES`] (1000)
    /// and [`DEFAULT_QUARANTINE_MAX_BYTES`] (64 MiB).
    ///
    /// Any values are valid. 0 (either bound) keeps no quarantined file: a corrupt file is
    /// still counted and taken out of service, then deleted. `usize::MAX` / `u64::MAX`: no
    /// bound of that kind.
    pub fn quarantine_limits(mut self, max_files: usize, max_bytes: u64) -> Self {
        self.config.quarantine_max_files = max_files;
        self.config.quarantine_max_bytes = max_bytes;
        self
    }

    /// The file system to use. Default: the real one ([`StdFs::new`]: the Linux implementation
    /// on Linux, the portable one elsewhere; [`StdFs::portable`] chooses the portable one on
    /// Linux too). Tests hand in a fault-injecting one.
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

    /// A shared tier (feature `redis`): replicas share answers through a Redis or Valkey
    /// server, after the warm tier (hot → warm → shared → loader). Default: none. It never
    /// fails or blocks a caller: `build()` does not wait for the server (the tier starts with
    /// its breaker open and a background `PING` closes it), `set` only queues the write, and
    /// every read is bounded by the tier's timeout and breaker. See [`SharedConfig`](crate::SharedConfig)
    /// and the README's "Shared tier" section.
    #[cfg(feature = "redis")]
    pub fn shared(mut self, config: crate::shared::SharedConfig) -> Self {
        self.config.shared = Some(config);
        self
    }

    /// Cross-replica single-flight (feature `redis`): on a miss, `get_or_insert_*` takes a
    /// lease in the shared tier so that one replica loads a key while the others wait for its
    /// answer (bounded by [`SharedConfig::lease_wait_max`](crate::SharedConfig::lease_wait_max);
    /// skipped while the shared breaker is not closed). Default off. Needs
    /// [`Builder::shared`]: without it `build()` fails with [`Error::Config`].
    #[cfg(feature = "redis")]
    pub fn shared_single_flight(mut self, on: bool) -> Self {
        self.config.shared_single_flight = on;
        self
    }

    /// Validates the settings: each out-of-range value is an [`Error::Config`] naming its
    /// setter and the valid range. Checks nothing outside the settings.
    fn validate(&self) -> Result<()> {
        let c = &self.config;
        let b = &c.breaker;
        let never = Duration::MAX;
        in_range(
            "hot_capacity_entries",
            c.hot_capacity_entries,
            1,
            usize::MAX,
            "at least 1",
        )?;
        in_range("hot_shards", c.hot_shards, 1, MAX_HOT_SHARDS, "1 ..= 1024")?;
        if let Some(ttl) = c.default_ttl {
            in_range(
                "default_ttl",
                ttl,
                MIN_TTL,
                never,
                "at least 1 ms (Duration::MAX: never)",
            )?;
        }
        let limit = "1 ..= u32::MAX";
        in_range(
            "max_entry_bytes",
            c.max_entry_bytes,
            1,
            MAX_KEY_OR_ENTRY_BYTES,
            limit,
        )?;
        in_range(
            "max_key_bytes",
            c.max_key_bytes,
            1,
            MAX_KEY_OR_ENTRY_BYTES,
            limit,
        )?;
        in_range(
            "io_timeout",
            c.io_timeout,
            MIN_IO_TIMEOUT,
            MAX_IO_TIMEOUT,
            "1 ms ..= 1 h",
        )?;
        in_range(
            "failure_threshold",
            b.failure_threshold,
            1,
            u32::MAX,
            "at least 1",
        )?;
        let open = "0 ..= 24 h";
        in_range(
            "open_timeout",
            b.open_timeout,
            Duration::ZERO,
            MAX_OPEN_TIMEOUT,
            open,
        )?;
        in_range(
            "max_open_timeout",
            b.max_open_timeout,
            Duration::ZERO,
            MAX_OPEN_TIMEOUT,
            open,
        )?;
        in_range(
            "half_open_max",
            b.half_open_max,
            1,
            MAX_HALF_OPEN,
            "1 ..= 1024",
        )?;
        let errors = "1 ..= 100000";
        in_range(
            "memory_only_after",
            c.memory_only_after,
            1,
            MAX_MEMORY_ONLY_AFTER,
            errors,
        )?;
        let interval = "at least 1 ms (Duration::MAX: never)";
        in_range(
            "error_window",
            c.error_window,
            MIN_INTERVAL,
            never,
            interval,
        )?;
        in_range(
            "recovery_interval",
            c.recovery_interval,
            MIN_INTERVAL,
            never,
            interval,
        )?;
        in_range(
            "health_interval",
            c.health_interval,
            MIN_INTERVAL,
            never,
            interval,
        )?;
        in_range(
            "sweep_interval",
            c.sweep_interval,
            MIN_INTERVAL,
            never,
            interval,
        )?;
        #[cfg(feature = "metrics")]
        in_range(
            "metrics_interval",
            c.metrics_interval,
            MIN_INTERVAL,
            never,
            interval,
        )?;
        in_range(
            "write_queue_bytes",
            c.write_queue_bytes,
            1,
            usize::MAX,
            "at least 1",
        )?;
        let writes = "1 ..= 1024";
        in_range(
            "write_concurrency",
            c.write_concurrency,
            1,
            MAX_WRITE_CONCURRENCY,
            writes,
        )?;
        in_range(
            "compression_level",
            c.compression_level,
            0,
            MAX_COMPRESSION_LEVEL,
            "0 ..= 9",
        )?;
        #[cfg(feature = "redis")]
        {
            if c.shared_single_flight && c.shared.is_none() {
                return Err(Error::Config(
                    "shared_single_flight(true) needs a shared tier (Builder::shared)".to_owned(),
                ));
            }
            if let Some(shared) = &c.shared {
                shared.validate()?;
            }
        }
        if c.root.as_os_str().is_empty() {
            return Err(Error::Config(
                "the cache directory must not be empty".to_owned(),
            ));
        }
        Ok(())
    }

    /// Opens the cache: creates the directory layout, sweeps orphan temp files, and starts
    /// the background tasks (writer, index scan, sweeps). Does not scan existing entries
    /// before returning; entries from a previous process are readable at once.
    ///
    /// Fails with [`Error::Config`] on what no retry can fix: a setting out of its range (see
    /// each setter), a root that is empty, is not a directory or lies below a file, and a
    /// call outside a tokio runtime or on one without timers (`enable_time`). Device trouble
    /// (a read-only, full or failing disk) degrades the cache instead, as at run time.
    ///
    /// A runtime without timers is detected by catching the panic tokio raises when a timer
    /// is made on it: a program built with `panic = "abort"` aborts there instead of getting
    /// the error.
    pub async fn build(self) -> Result<TieredCache> {
        self.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "build() must run inside a tokio runtime (with timers enabled)".to_owned(),
            ));
        }
        if !timers_enabled() {
            return Err(Error::Config(
                "the tokio runtime has no timers (the cache bounds every disk call with one): \
                 build it with enable_time() or enable_all()"
                    .to_owned(),
            ));
        }
        let mut config = self.config;
        // A canonical root lets the fs refuse every symlink below it (see `fs::StdFs`). A
        // directory that cannot be created because the device is in trouble (read-only, full,
        // failing) is left to the disk operations, which degrade the cache as they would at
        // run time; any other reason (no permission, a missing parent that cannot be made, a
        // path that can never be a directory) is a configuration mistake.
        if let Err(e) = std::fs::create_dir_all(&config.root) {
            if !device_trouble(&e) {
                check_root(&config.root)?;
                return Err(Error::Config(format!(
                    "the cache directory {} cannot be created: {e}",
                    config.root.display()
                )));
            }
        }
        check_root(&config.root)?;
        if let Ok(canonical) = std::fs::canonicalize(&config.root) {
            config.root = canonical;
        }
        let fs = self.fs.unwrap_or_else(|| Arc::new(StdFs::new()));
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(crate::clock::TokioClock::new()));
        TieredCache::open_with(config, fs, clock).await
    }
}

impl TieredCache {
    /// A builder for a cache under `root`.
    pub fn builder(root: impl Into<std::path::PathBuf>) -> Builder {
        Builder::new(root)
    }

    /// Opens a cache under `root` with every default.
    pub async fn open(root: impl Into<std::path::PathBuf>) -> Result<TieredCache> {
        Builder::new(root).build().await
    }
}

/// `Ok` when `value` lies in `min..=max`; otherwise the [`Error::Config`] naming the setter,
/// the value and the valid range.
fn in_range<T: PartialOrd + std::fmt::Debug>(
    setter: &str,
    value: T,
    min: T,
    max: T,
    valid: &str,
) -> Result<()> {
    if value < min || value > max {
        return Err(Error::Config(format!(
            "{setter}({value:?}) is out of range: valid is {valid}"
        )));
    }
    Ok(())
}

/// Whether an error creating the root is the device's trouble (read-only, full, failing),
/// which degrades the cache, rather than a mistake in the path or its permissions.
fn device_trouble(e: &std::io::Error) -> bool {
    matches!(
        IoErrorKind::classify(e),
        IoErrorKind::ReadOnly | IoErrorKind::NoSpace | IoErrorKind::Io | IoErrorKind::Timeout
    )
}

/// Whether the current tokio runtime has its time driver. tokio offers no query, and
/// creating a timer on a runtime without one panics; the probe catches that panic on this
/// thread, with the panic hook told to stay silent for it (other threads' panics still reach
/// the hook that was installed before).
fn timers_enabled() -> bool {
    use std::cell::Cell;
    thread_local!(static PROBING: Cell<bool> = const { Cell::new(false) });
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PROBING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    PROBING.with(|p| p.set(true));
    let probe = std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO)));
    PROBING.with(|p| p.set(false));
    probe.is_ok()
}

/// Refuses a root that can never be a directory: an existing file (or other non-directory),
/// or a path below one. Anything else (permissions, a read-only or failing disk) is left to
/// the disk operations, which degrade the cache.
fn check_root(root: &std::path::Path) -> Result<()> {
    let problem = match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "it exists and is not a directory".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            format!("a part of its path is not a directory ({e})")
        }
        Err(_) => return Ok(()),
    };
    Err(Error::Config(format!(
        "the cache directory {} cannot be used: {problem}",
        root.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Duration = Duration::from_nanos(1);
    const MS: Duration = Duration::from_millis(1);

    /// `set` applied to a default builder validates (`ok`), or fails with `Error::Config`
    /// whose message starts with the setter's name and the value.
    fn check(setter: &str, value: &str, set: impl Fn(Builder) -> Builder, ok: bool) {
        let result = set(Builder::new("/nonexistent/answercache-validate")).validate();
        match (ok, result) {
            (true, Ok(())) => {}
            (false, Err(Error::Config(msg))) => {
                let want = format!("{setter}({value}) is out of range: valid is ");
                assert!(msg.starts_with(&want), "{setter}({value}): message {msg:?}");
            }
            (ok, other) => panic!("{setter}({value}): expected valid={ok}, got {other:?}"),
        }
    }

    /// Checks each `(value, valid)` of a setter of `T`.
    fn sweep<T: Copy + std::fmt::Debug>(
        setter: &str,
        set: impl Fn(Builder, T) -> Builder,
        values: &[(T, bool)],
    ) {
        for &(v, ok) in values {
            check(setter, &format!("{v:?}"), |b| set(b, v), ok);
        }
    }

    #[test]
    fn defaults_are_valid_on_any_core_count() {
        let b = Builder::new("/nonexistent/answercache-validate");
        assert!(b.validate().is_ok());
        assert!((1..=MAX_HOT_SHARDS).contains(&b.config.hot_shards));
    }

    #[test]
    fn every_bound_is_inclusive_and_exact() {
        let u32max = MAX_KEY_OR_ENTRY_BYTES;
        sweep(
            "hot_capacity_entries",
            Builder::hot_capacity_entries,
            &[(0, false), (1, true), (usize::MAX, true)],
        );
        sweep(
            "hot_shards",
            Builder::hot_shards,
            &[
                (0, false),
                (1, true),
                (1024, true),
                (1025, false),
                (usize::MAX, false),
            ],
        );
        sweep(
            "max_entry_bytes",
            Builder::max_entry_bytes,
            &[
                (0, false),
                (1, true),
                (u32max, true),
                (u32max + 1, false),
                (usize::MAX, false),
            ],
        );
        sweep(
            "max_key_bytes",
            Builder::max_key_bytes,
            &[
                (0, false),
                (1, true),
                (u32max, true),
                (u32max + 1, false),
                (usize::MAX, false),
            ],
        );
        sweep(
            "default_ttl",
            Builder::default_ttl,
            &[
                (Duration::ZERO, false),
                (NS, false),
                (MS - NS, false),
                (MS, true),
                (Duration::MAX, true),
            ],
        );
        sweep(
            "io_timeout",
            Builder::io_timeout,
            &[
                (Duration::ZERO, false),
                (MS - NS, false),
                (MS, true),
                (MAX_IO_TIMEOUT, true),
                (MAX_IO_TIMEOUT + NS, false),
                (Duration::MAX, false),
            ],
        );
        sweep(
            "failure_threshold",
            Builder::failure_threshold,
            &[(0, false), (1, true), (u32::MAX, true)],
        );
        for (setter, set) in [
            (
                "open_timeout",
                Builder::open_timeout as fn(Builder, Duration) -> Builder,
            ),
            ("max_open_timeout", Builder::max_open_timeout),
        ] {
            sweep(
                setter,
                set,
                &[
                    (Duration::ZERO, true),
                    (NS, true),
                    (MAX_OPEN_TIMEOUT, true),
                    (MAX_OPEN_TIMEOUT + NS, false),
                    (Duration::MAX, false),
                ],
            );
        }
        sweep(
            "half_open_max",
            Builder::half_open_max,
            &[
                (0, false),
                (1, true),
                (1024, true),
                (1025, false),
                (u32::MAX, false),
            ],
        );
        sweep(
            "memory_only_after",
            Builder::memory_only_after,
            &[
                (0, false),
                (1, true),
                (100_000, true),
                (100_001, false),
                (u32::MAX, false),
            ],
        );
        for (setter, set) in [
            (
                "error_window",
                Builder::error_window as fn(Builder, Duration) -> Builder,
            ),
            ("recovery_interval", Builder::recovery_interval),
            ("health_interval", Builder::health_interval),
            ("sweep_interval", Builder::sweep_interval),
        ] {
            sweep(
                setter,
                set,
                &[
                    (Duration::ZERO, false),
                    (NS, false),
                    (MS - NS, false),
                    (MS, true),
                    (Duration::MAX, true),
                ],
            );
        }
        sweep(
            "write_queue_bytes",
            Builder::write_queue_bytes,
            &[(0, false), (1, true), (usize::MAX, true)],
        );
        sweep(
            "write_concurrency",
            Builder::write_concurrency,
            &[
                (0, false),
                (1, true),
                (1024, true),
                (1025, false),
                (usize::MAX, false),
            ],
        );
        sweep(
            "compression_level",
            Builder::compression_level,
            &[(0, true), (9, true), (10, false), (u32::MAX, false)],
        );
        // Any value is valid.
        for n in [0, 1, usize::MAX] {
            check("hot_capacity_bytes", "", |b| b.hot_capacity_bytes(n), true);
            check("quarantine_limits", "", |b| b.quarantine_limits(n, 0), true);
        }
        for n in [0, 1, u64::MAX] {
            check(
                "warm_capacity_bytes",
                "",
                |b| b.warm_capacity_bytes(n),
                true,
            );
            check("min_free_bytes", "", |b| b.min_free_bytes(n), true);
            check("quarantine_limits", "", |b| b.quarantine_limits(0, n), true);
        }
    }

    #[test]
    fn a_ttl_too_long_for_a_millisecond_expiry_is_never() {
        let ttl = |d| Builder::new("x").default_ttl(d).config.default_ttl;
        assert_eq!(ttl(Duration::MAX), None);
        assert_eq!(ttl(Duration::from_millis(u64::MAX)), None);
        let longest = Duration::from_millis(u64::MAX - 1);
        assert_eq!(ttl(longest), Some(longest));
        assert_eq!(ttl(MS), Some(MS));
    }

    #[test]
    fn the_message_names_the_setter_the_value_and_the_range() {
        let err = Builder::new("x").write_concurrency(usize::MAX).validate();
        match err {
            Err(Error::Config(msg)) => assert_eq!(
                msg,
                format!(
                    "write_concurrency({}) is out of range: valid is 1 ..= 1024",
                    usize::MAX
                )
            ),
            other => panic!("{other:?}"),
        }
        match Builder::new("").validate() {
            Err(Error::Config(msg)) => assert!(msg.contains("cache directory"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}
