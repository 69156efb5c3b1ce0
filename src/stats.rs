//! Counters and the serializable snapshot returned by `TieredCache::stats` (taken here, from
//! the counters and the [`Gauges`] the cache reads from its parts).
//!
//! Counters are relaxed atomics bumped on the paths that cause them; `Stats` is a plain copy
//! taken at one moment (each field is exact, fields are not taken atomically together).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::breaker::BreakerState;
use crate::fs::IoErrorKind;
use crate::warm::Corruption;

/// Whether the disk tier is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Hot tier in front of the disk tier.
    Tiered,
    /// Disk abandoned after repeated errors: hot tier only, with a doubled budget, until a
    /// recovery probe succeeds.
    MemoryOnly,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Tiered => "tiered",
            Mode::MemoryOnly => "memory-only",
        })
    }
}

/// What kind of failure a shared-tier call met (`Stats::shared_errors_by_kind`). Each feeds
/// the shared breaker (SHARED_TIER.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedErrorKind {
    /// answercache's own timeout or the client's.
    Timeout,
    /// Refused, reset, broken pipe, EOF.
    Io,
    /// NOAUTH, WRONGPASS, NOPERM.
    Auth,
    /// The server is not ready: LOADING, BUSY, MASTERDOWN, READONLY, CLUSTERDOWN, TRYAGAIN.
    Server,
    /// A protocol or parse error, or any other error reply.
    Protocol,
}

impl SharedErrorKind {
    /// Every kind, in counter order.
    pub(crate) const ALL: [SharedErrorKind; 5] = [
        SharedErrorKind::Timeout,
        SharedErrorKind::Io,
        SharedErrorKind::Auth,
        SharedErrorKind::Server,
        SharedErrorKind::Protocol,
    ];

    /// The stable name (a key of `Stats::shared_errors_by_kind`, a metrics label).
    pub(crate) fn name(self) -> &'static str {
        match self {
            SharedErrorKind::Timeout => "timeout",
            SharedErrorKind::Io => "io",
            SharedErrorKind::Auth => "auth",
            SharedErrorKind::Server => "server",
            SharedErrorKind::Protocol => "protocol",
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn index(self) -> usize {
        self as usize
    }
}

/// Why a write meant for the shared tier was dropped (`Stats::shared_writes_dropped_by_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedDrop {
    /// The shared write queue had no room for it.
    QueueFull,
    /// The shared breaker was not closed when it was due.
    BreakerOpen,
    /// Its entry is over the shared tier's `max_entry_bytes` (or cannot be encoded).
    TooLarge,
    /// It expired before it could be sent.
    Expired,
}

impl SharedDrop {
    /// Every reason, in counter order.
    pub(crate) const ALL: [SharedDrop; 4] = [
        SharedDrop::QueueFull,
        SharedDrop::BreakerOpen,
        SharedDrop::TooLarge,
        SharedDrop::Expired,
    ];

    /// The stable name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SharedDrop::QueueFull => "queue_full",
            SharedDrop::BreakerOpen => "breaker_open",
            SharedDrop::TooLarge => "too_large",
            SharedDrop::Expired => "expired",
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn index(self) -> usize {
        self as usize
    }
}

/// A counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`, saturating at `u64::MAX` (a cost can be any u64: it must not wrap).
    pub(crate) fn add(&self, n: u64) {
        if n != 0 {
            let _ = self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(n))
                });
        }
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The live counters, shared by the tiers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hot_hits: Counter,
    pub warm_hits: Counter,
    pub inline_reads: Counter,
    pub inline_read_fallbacks: Counter,
    pub queue_hits: Counter,
    pub misses: Counter,
    pub sets: Counter,
    pub removes: Counter,
    pub hot_evictions: Counter,
    pub hot_expirations: Counter,
    pub warm_evictions: Counter,
    pub warm_expirations: Counter,
    pub writes_ok: Counter,
    pub writes_failed: Counter,
    pub writes_skipped_too_large: Counter,
    pub lost_writes: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub disk_errors: [Counter; IoErrorKind::ALL.len()],
    pub corrupted: [Counter; Corruption::ALL.len()],
    pub quarantined_files: Counter,
    pub quarantined_bytes: Counter,
    pub newer_version: Counter,
    pub foreign_files: Counter,
    pub temp_files_swept: Counter,
    pub cost_saved: Counter,
    pub breaker_transitions: Counter,
    pub breaker_opens: Counter,
    pub written_back: Counter,
    pub breaker_rejections: Counter,
    pub probes_run: Counter,
    pub probes_ok: Counter,
    pub health_checks: Counter,
    pub memory_only_entries: Counter,
    pub memory_only_ms: Counter,
    pub stale_served: Counter,
    pub loader_calls: Counter,
    pub task_panics: Counter,
    pub stale_keys_purged: Counter,
    pub decode_misses: Counter,
    pub joined: Counter,
    pub bypasses: Counter,
    pub unencodable: Counter,
    /// Entry files compressed (encoded at a level above 0), for the disk and the shared tier
    /// together: a value both store is compressed once (`warm::encoded`). Not in [`Stats`]:
    /// the tests read it.
    pub entries_compressed: Counter,
    /// Entries written stored and compressed in the background (`warm::store::compact`).
    pub entries_compacted: Counter,
    pub shared: SharedCounters,
}

/// The shared tier's counters (see the `shared_*` fields of [`Stats`]).
#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    pub hits: Counter,
    pub misses: Counter,
    pub rejections: Counter,
    pub errors: [Counter; SharedErrorKind::ALL.len()],
    pub writes_ok: Counter,
    pub writes_failed: Counter,
    pub dropped: [Counter; SharedDrop::ALL.len()],
    pub rejected_oom: Counter,
    pub corrupted: [Counter; Corruption::ALL.len()],
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub breaker_opens: Counter,
    pub probes_run: Counter,
    pub probes_ok: Counter,
    pub namespace_syncs: Counter,
    pub namespace_changes_seen: Counter,
    pub lease_acquired: Counter,
    pub lease_waits: Counter,
    pub lease_waits_served: Counter,
    pub lease_takeovers: Counter,
    pub lease_wait_timeouts: Counter,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl SharedCounters {
    pub(crate) fn error(&self, kind: SharedErrorKind) {
        self.errors[kind.index()].inc();
    }

    pub(crate) fn dropped(&self, why: SharedDrop, n: u64) {
        self.dropped[why.index()].add(n);
    }

    pub(crate) fn corruption(&self, reason: Corruption) {
        self.corrupted[reason.index()].inc();
    }
}

impl Counters {
    pub(crate) fn disk_error(&self, kind: IoErrorKind) {
        self.disk_errors[kind.index()].inc();
    }

    pub(crate) fn corruption(&self, reason: Corruption) {
        self.corrupted[reason.index()].inc();
    }
}

/// A snapshot of the cache's counters and state. Serializable with serde.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered by the hot tier (a stored value that did not decode as the requested
    /// type is a miss, not a hit).
    ///
    /// How calls are counted: each `get`/`get_bytes` (and the lookup of each
    /// `get_or_insert_*`) is one of `hot_hits`, `warm_hits`, `queue_hits` or `misses`, except
    /// that a `get_or_insert_*` caller whose lookup found nothing is counted once its load is
    /// settled: in `misses` if it ran its loader, in `joined` if another caller's load served
    /// it. A full bypass (`no_cache` + `no_store`) is counted in `bypasses` only. So for
    /// `get_or_insert_*` calls, `hits + misses + joined + bypasses` is the number of calls,
    /// and `loader_calls = misses + bypasses` of them.
    pub hot_hits: u64,
    /// Gets answered by the warm tier (disk), then promoted.
    pub warm_hits: u64,
    /// Warm-tier reads that found a valid entry (of at most 64 KiB of file declaring at most
    /// 1 MiB of value; it is inflated in steps of at most 64 KiB, between which the task
    /// yields) in the page cache
    /// and finished on the calling thread, without the blocking-pool hop (ext4, xfs, btrfs;
    /// see `Fs::read_file_nowait`). A read whose entry then turns out to be older than a
    /// newer `set` still counts here, not in `warm_hits`.
    pub inline_reads: u64,
    /// Warm-tier reads that tried the page cache on the calling thread (as for
    /// `inline_reads`) and were handed on to the blocking pool because it could not answer
    /// without waiting: the file's pages or its path's names were not cached, the kernel
    /// would not say so without waiting (`RESOLVE_CACHED` answers EAGAIN while a mount
    /// changes anywhere in the system), or the read could not be finished there (too many
    /// descriptors waiting to be closed, a file it may not open with `O_NOATIME`, a file that
    /// grew while it was read). Counted once, when handed on. The blocking read then answers
    /// the get as any does, counted in `warm_hits` or `misses`; a get dropped meanwhile, and
    /// the cache's own lookups (a namespace's generation record), are counted here only. A
    /// file read on the calling thread that turns out corrupt, expired, too large to inflate
    /// there, or not a regular file is not a fallback.
    pub inline_read_fallbacks: u64,
    /// Gets answered from the write queue (a value evicted from hot before its write landed).
    pub queue_hits: u64,
    /// Calls that found nothing usable (absent, expired, corrupted, or a value that did not
    /// decode as the requested type); for `get_or_insert_*`, calls that ran their own loader.
    pub misses: u64,
    /// Lookups that found a value which did not decode as the requested type (the type
    /// changed, or another type shares the key): a miss each, never a hit. The first for each
    /// requested type is logged at warn level.
    pub decode_misses: u64,
    /// `get_or_insert_*` calls answered by another caller's load of the same key (they waited
    /// for it, or found its value stored as they were about to load), counted apart from
    /// misses: 50 identical concurrent requests are 1 miss (the load) and 49 joined.
    pub joined: u64,
    /// `get_or_insert_*` calls with `no_cache` and `no_store` (a full bypass: no lookup, no
    /// store, no joining another caller's load).
    pub bypasses: u64,
    /// Loaded values the cache's codec could not encode (a NaN under the JSON codec): returned
    /// to their caller, not stored. The first for each type is logged at warn level.
    pub unencodable: u64,
    /// Successful `set` calls.
    pub sets: u64,
    /// `remove` calls.
    pub removes: u64,
    /// Entries in the hot tier.
    pub hot_entries: u64,
    /// Bytes charged to the hot tier (key + value + a fixed per-entry overhead).
    pub hot_bytes: u64,
    /// The hot tier's current byte budget (doubled while memory-only).
    pub hot_capacity_bytes: u64,
    /// The hot tier's current entry budget (doubled while memory-only).
    pub hot_capacity_entries: u64,
    /// Entries evicted from the hot tier to stay in budget.
    pub hot_evictions: u64,
    /// Entries found expired in the hot tier.
    pub hot_expirations: u64,
    /// Entry files this process knows on disk (exact once `warm_index_complete`).
    pub warm_entries: u64,
    /// Bytes of those entry files (their lengths).
    pub warm_bytes: u64,
    /// What the warm budget counts: the space those files take on disk, each rounded up to
    /// the file system's allocation unit, plus their directory entries and fan-out
    /// directories (what `du` reports, within a few fixed directories).
    pub warm_disk_bytes: u64,
    /// The warm tier's byte budget (of `warm_disk_bytes`).
    pub warm_capacity_bytes: u64,
    /// Whether the startup scan of the directory has been merged into the warm index.
    pub warm_index_complete: bool,
    /// Entry files deleted to stay in the warm budget.
    pub warm_evictions: u64,
    /// Entry files deleted because they expired (on read or by the sweep).
    pub warm_expirations: u64,
    /// Entries written stored and compressed in the background since
    /// ([`Builder::compress_in_background`](crate::Builder::compress_in_background)).
    pub warm_compactions: u64,
    /// Entries written stored that wait for their background compression now (one being
    /// compressed no longer counts).
    pub warm_compaction_backlog: u64,
    /// Entry files written.
    pub writes_ok: u64,
    /// Entry writes that failed (the entry stays dirty in memory).
    pub writes_failed: u64,
    /// Entries not written because they exceed the warm budget or the file-size limit.
    pub writes_skipped: u64,
    /// Dirty entries evicted from memory before they could be written: the only writes lost.
    pub lost_writes: u64,
    /// Value bytes written, before compression. An entry written stored and compressed in the
    /// background counts when its compaction ends (see `warm_compaction_backlog`).
    pub bytes_written_uncompressed: u64,
    /// Entry-file bytes written, after compression and with headers: of an entry compressed
    /// in the background, the file it ends with (compressed, or stored when compressing it
    /// gained nothing or it was superseded first), counted when its compaction ends.
    pub bytes_written_compressed: u64,
    /// `bytes_written_uncompressed / bytes_written_compressed` (0 before the first write).
    /// Entries whose stored file fits in one allocation unit are written uncompressed (see
    /// [`Builder::compression_level`](crate::Builder::compression_level)), so a cache of small
    /// values shows a ratio below 1 (headers and keys included) without using more disk.
    pub compression_ratio: f64,
    /// Disk errors seen, all kinds (the API hides them; the breaker sees them): one per
    /// failing file-system call. A write that found the disk full and tried once more after
    /// deferred closes freed space (see `Fs::settle_deferred_closes`) is judged by its retry:
    /// one `no-space` if the retry was refused too, none if it was written.
    pub disk_errors: u64,
    /// Disk errors by kind (`no-space`, `io`, `read-only`, `permission`, `timeout`,
    /// `file-too-large`, `path`, `other`); kinds never seen are absent.
    pub disk_errors_by_kind: BTreeMap<String, u64>,
    /// Corrupted entry files found, all reasons.
    pub corrupted: u64,
    /// Corrupted entry files by reason; reasons never seen are absent.
    pub corrupted_by_reason: BTreeMap<String, u64>,
    /// Files moved to the quarantine by this process.
    pub quarantined_files: u64,
    /// Bytes moved to the quarantine by this process.
    pub quarantined_bytes: u64,
    /// Entry files of a newer format version, left in place and treated as misses.
    pub newer_version_skipped: u64,
    /// Foreign files and folders found in the cache directory and ignored.
    pub foreign_files: u64,
    /// Orphan temp files removed at open.
    pub temp_files_swept: u64,
    /// Writes waiting in the write-behind queue.
    pub write_queue_depth: u64,
    /// Bytes waiting in the write-behind queue.
    pub write_queue_bytes: u64,
    /// Entries in memory that are not on disk yet (queued, failed or set while memory-only).
    pub dirty_entries: u64,
    /// Sum of the caller-supplied cost of every hit, and of every `get_or_insert_with` caller
    /// served by another caller's load (tokens, money: whatever the caller used).
    pub cost_saved: u64,
    /// Current mode.
    pub mode: Mode,
    /// Current breaker state.
    pub breaker_state: BreakerState,
    /// Breaker state changes.
    pub breaker_transitions: u64,
    /// Breaker state changes to Open.
    pub breaker_opens: u64,
    /// Dirty entries queued for write-back after recovery or a passing health check.
    pub written_back: u64,
    /// The last disk failure seen (operation and error), if any; kept for operators.
    pub last_disk_error: Option<String>,
    /// Disk calls the breaker refused.
    pub breaker_rejections: u64,
    /// Recovery probes run.
    pub probes_run: u64,
    /// Recovery probes that passed.
    pub probes_ok: u64,
    /// Health checks run while tiered.
    pub health_checks: u64,
    /// Times the cache entered memory-only mode.
    pub memory_only_entries: u64,
    /// Total time spent in memory-only mode, ms (including the current stretch).
    pub memory_only_ms: u64,
    /// Expired entries served because the loader failed (`stale_if_error`).
    pub stale_served: u64,
    /// Loader calls made by `get_or_insert_*` (`misses` of those calls plus `bypasses`).
    pub loader_calls: u64,
    /// Background tasks (writer, maintenance, resilience, a write job) that panicked. Each
    /// panic is logged at error level and contained: the task is restarted, a write job's
    /// entry stays dirty. Nonzero means a bug worth reporting.
    pub task_panics: u64,
    /// Older files deleted because the key's newer value (or removal) was lost from memory
    /// before it reached the disk (see RELIABILITY.md, "lost writes").
    pub stale_keys_purged: u64,
    /// Keys whose last value (or removal), set before now, was lost from memory before it
    /// reached the disk and that have not been set or removed again since: their last value
    /// is not on disk, so `flush` and `close` report them (see RELIABILITY.md).
    pub lost_keys: u64,
    /// Keys whose older file on disk must not be served (their newest value or removal was
    /// lost from memory before reaching the disk) and has not been deleted yet. `flush` and
    /// `close` report these; recovery and health checks delete them.
    pub stale_keys_pending: u64,
    /// The shared tier's breaker state (feature `redis`); `None` without a shared tier. It
    /// starts Open and a background `PING` closes it: `build()` never waits for Redis.
    pub shared_state: Option<BreakerState>,
    /// Gets answered by the shared tier (another replica's answer, verified like a disk read).
    pub shared_hits: u64,
    /// Shared-tier reads that found nothing usable (absent, expired, older than a local
    /// `set`/`remove`/`clear`, corrupt, or failed).
    pub shared_misses: u64,
    /// Shared-tier reads not made because its breaker was not closed.
    pub shared_rejections: u64,
    /// Shared-tier calls that failed (each feeds its breaker), all kinds.
    pub shared_errors: u64,
    /// Shared-tier failures by kind: `timeout`, `io`, `auth`, `server`, `protocol`; kinds never
    /// seen are absent.
    pub shared_errors_by_kind: BTreeMap<String, u64>,
    /// Entries (and deletes) the shared tier accepted.
    pub shared_writes_ok: u64,
    /// Shared writes that failed (a failure of the kinds above; not OOM). Values only: a
    /// `DEL` that failed is kept and sent again, counted once delivered (`shared_writes_ok`)
    /// or given up (`shared_writes_dropped`).
    pub shared_writes_failed: u64,
    /// Shared writes dropped before they were sent, all reasons. Not counted in any of the
    /// three: an operation replaced on this replica by a newer one of its key before it was
    /// sent (a queued value or removal overwritten, a removal repeated while kept, a lease
    /// leader's answer that a later `set`/`remove` made stand down): the newer one is the
    /// key's write.
    pub shared_writes_dropped: u64,
    /// Shared writes dropped by reason: `queue_full`, `breaker_open`, `too_large`, `expired`.
    pub shared_writes_dropped_by_reason: BTreeMap<String, u64>,
    /// Shared writes the server refused for memory (`OOM`): not a failure (reads still
    /// work); one warning per episode says to set `maxmemory-policy allkeys-lru`.
    pub shared_write_rejected_oom: u64,
    /// Corrupt or foreign values found in the shared tier (each a miss, deleted there), all
    /// reasons.
    pub shared_corrupted: u64,
    /// Those by reason, with the names of `corrupted_by_reason`.
    pub shared_corrupted_by_reason: BTreeMap<String, u64>,
    /// Bytes of entries read from the shared tier.
    pub shared_bytes_in: u64,
    /// Bytes of entries written to the shared tier.
    pub shared_bytes_out: u64,
    /// Bytes waiting in the shared write queue.
    pub shared_queue_bytes: u64,
    /// Writes waiting in the shared write queue, plus removals whose `DEL` is kept until the
    /// server is back (not in `shared_queue_bytes`).
    pub shared_queue_entries: u64,
    /// Shared breaker changes to Open.
    pub shared_breaker_opens: u64,
    /// `PING` probes of the shared tier run (the first at start, then each half-open).
    pub shared_probes_run: u64,
    /// Those that passed.
    pub shared_probes_ok: u64,
    /// Namespace generation syncs with the shared tier (one `MGET` each).
    pub namespace_syncs: u64,
    /// Namespace generations changed by another replica and picked up here.
    pub namespace_changes_seen: u64,
    /// Namespace invalidations whose new generation is not in the shared tier yet (retried
    /// by the sync task).
    pub namespace_invalidations_pending: u64,
    /// Cross-replica loads this replica led under a shared lease.
    pub shared_lease_acquired: u64,
    /// Loads that waited for another replica's lease.
    pub shared_lease_waits: u64,
    /// Those served by the other replica's value (counted once the value was verified and
    /// decoded: one that appeared but was corrupt is not).
    pub shared_lease_waits_served: u64,
    /// Waits that took the lease over (its holder let it expire or gave up, or the lease key
    /// was foreign: no expiry, or a longer one than `lease_ttl`, deleted first).
    pub shared_lease_takeovers: u64,
    /// Waits that gave up after `lease_wait_max` and loaded locally.
    pub shared_lease_wait_timeouts: u64,
}

/// What a snapshot reads from the parts besides the counters: sizes, states and the counts
/// kept elsewhere (the hot tier counts its own fast-path hits, under its shard locks). A
/// trait, so that [`Counters::snapshot`] reads each figure at its place in the snapshot: the
/// order of the reads is part of what a snapshot shows under load (see there).
pub(crate) trait Gauges {
    /// Entries in the hot tier.
    fn hot_entries(&self) -> u64;
    /// Bytes in the hot tier.
    fn hot_bytes(&self) -> u64;
    /// The hot tier's byte budget now.
    fn hot_capacity_bytes(&self) -> u64;
    /// The hot tier's entry budget now.
    fn hot_capacity_entries(&self) -> u64;
    /// `(hits, cost)` counted by the hot tier's fast path.
    fn hot_live_hits(&self) -> (u64, u64);
    /// Entries in memory not known to be on disk.
    fn dirty_entries(&self) -> u64;
    /// `(entries, bytes, whether the startup scan is complete)` of the warm tier.
    fn warm_usage(&self) -> (u64, u64, bool);
    /// What the warm budget counts (see [`Stats::warm_disk_bytes`]).
    fn warm_disk_bytes(&self) -> u64;
    /// Entries waiting for their background compression.
    fn warm_compaction_backlog(&self) -> u64;
    /// The warm budget.
    fn warm_capacity_bytes(&self) -> u64;
    /// `(depth, bytes)` of the write queue.
    fn write_queue(&self) -> (u64, u64);
    /// The mode.
    fn mode(&self) -> Mode;
    /// The breaker's state.
    fn breaker_state(&self) -> BreakerState;
    /// Time spent memory-only, ms.
    fn memory_only_ms(&self) -> u64;
    /// The last disk error's text.
    fn last_disk_error(&self) -> Option<String>;
    /// `(stale keys pending, lost keys)`.
    fn lost(&self) -> (u64, u64);
    /// The shared breaker's state, `None` without a shared tier.
    fn shared_state(&self) -> Option<BreakerState>;
    /// `(entries, bytes)` of the shared write queue.
    fn shared_queue(&self) -> (u64, u64);
    /// Namespace invalidations not yet written to the shared tier.
    fn namespace_invalidations_pending(&self) -> u64;
}

impl Counters {
    /// The [`Stats`] of this moment: every counter, with `g`. The states and the warm and
    /// queue figures are read first, the hot tier's sizes after the hit and set counters:
    /// under an insert-only load a snapshot never shows more `sets` than entries were made.
    pub(crate) fn snapshot(&self, g: &dyn Gauges) -> Stats {
        let c = self;
        let mode = g.mode();
        let breaker_state = g.breaker_state();
        let (warm_entries, warm_bytes, scanned) = g.warm_usage();
        let (depth, qbytes) = g.write_queue();
        let (live_hits, live_cost) = g.hot_live_hits();
        let bytes_in = c.bytes_in.get();
        let bytes_out = c.bytes_out.get();
        let corrupted = by_name(&c.corrupted, Corruption::ALL, |r| r.name());
        let disk_errors = by_name(&c.disk_errors, IoErrorKind::ALL, |k| k.name());
        let (stale_keys_pending, lost_keys) = g.lost();
        let s = &c.shared;
        let shared_errors = by_name(&s.errors, SharedErrorKind::ALL, SharedErrorKind::name);
        let shared_dropped = by_name(&s.dropped, SharedDrop::ALL, SharedDrop::name);
        let shared_corrupted = by_name(&s.corrupted, Corruption::ALL, |r| r.name());
        let (shared_queue_entries, shared_queue_bytes) = g.shared_queue();
        let shared_hits = s.hits.get();
        Stats {
            hot_hits: c.hot_hits.get() + live_hits,
            warm_hits: c.warm_hits.get(),
            inline_reads: c.inline_reads.get(),
            inline_read_fallbacks: c.inline_read_fallbacks.get(),
            queue_hits: c.queue_hits.get(),
            misses: c.misses.get(),
            decode_misses: c.decode_misses.get(),
            joined: c.joined.get(),
            bypasses: c.bypasses.get(),
            unencodable: c.unencodable.get(),
            sets: c.sets.get(),
            removes: c.removes.get(),
            hot_entries: g.hot_entries(),
            hot_bytes: g.hot_bytes(),
            hot_capacity_bytes: g.hot_capacity_bytes(),
            hot_capacity_entries: g.hot_capacity_entries(),
            hot_evictions: c.hot_evictions.get(),
            hot_expirations: c.hot_expirations.get(),
            warm_entries,
            warm_bytes,
            warm_disk_bytes: g.warm_disk_bytes(),
            warm_compactions: c.entries_compacted.get(),
            warm_compaction_backlog: g.warm_compaction_backlog(),
            warm_capacity_bytes: g.warm_capacity_bytes(),
            warm_index_complete: scanned,
            warm_evictions: c.warm_evictions.get(),
            warm_expirations: c.warm_expirations.get(),
            writes_ok: c.writes_ok.get(),
            writes_failed: c.writes_failed.get(),
            writes_skipped: c.writes_skipped_too_large.get(),
            lost_writes: c.lost_writes.get(),
            bytes_written_uncompressed: bytes_in,
            bytes_written_compressed: bytes_out,
            compression_ratio: ratio(bytes_in, bytes_out),
            disk_errors: disk_errors.values().sum(),
            disk_errors_by_kind: disk_errors,
            corrupted: corrupted.values().sum(),
            corrupted_by_reason: corrupted,
            quarantined_files: c.quarantined_files.get(),
            quarantined_bytes: c.quarantined_bytes.get(),
            newer_version_skipped: c.newer_version.get(),
            foreign_files: c.foreign_files.get(),
            temp_files_swept: c.temp_files_swept.get(),
            write_queue_depth: depth,
            write_queue_bytes: qbytes,
            dirty_entries: g.dirty_entries(),
            cost_saved: c.cost_saved.get().saturating_add(live_cost),
            mode,
            breaker_state,
            breaker_transitions: c.breaker_transitions.get(),
            breaker_opens: c.breaker_opens.get(),
            written_back: c.written_back.get(),
            last_disk_error: g.last_disk_error(),
            breaker_rejections: c.breaker_rejections.get(),
            probes_run: c.probes_run.get(),
            probes_ok: c.probes_ok.get(),
            health_checks: c.health_checks.get(),
            memory_only_entries: c.memory_only_entries.get(),
            memory_only_ms: g.memory_only_ms(),
            stale_served: c.stale_served.get(),
            loader_calls: c.loader_calls.get(),
            task_panics: c.task_panics.get(),
            stale_keys_purged: c.stale_keys_purged.get(),
            stale_keys_pending,
            lost_keys,
            shared_state: g.shared_state(),
            shared_hits,
            shared_misses: s.misses.get(),
            shared_rejections: s.rejections.get(),
            shared_errors: shared_errors.values().sum(),
            shared_errors_by_kind: shared_errors,
            shared_writes_ok: s.writes_ok.get(),
            shared_writes_failed: s.writes_failed.get(),
            shared_writes_dropped: shared_dropped.values().sum(),
            shared_writes_dropped_by_reason: shared_dropped,
            shared_write_rejected_oom: s.rejected_oom.get(),
            shared_corrupted: shared_corrupted.values().sum(),
            shared_corrupted_by_reason: shared_corrupted,
            shared_bytes_in: s.bytes_in.get(),
            shared_bytes_out: s.bytes_out.get(),
            shared_queue_bytes,
            shared_queue_entries,
            shared_breaker_opens: s.breaker_opens.get(),
            shared_probes_run: s.probes_run.get(),
            shared_probes_ok: s.probes_ok.get(),
            namespace_syncs: s.namespace_syncs.get(),
            namespace_changes_seen: s.namespace_changes_seen.get(),
            namespace_invalidations_pending: g.namespace_invalidations_pending(),
            shared_lease_acquired: s.lease_acquired.get(),
            shared_lease_waits: s.lease_waits.get(),
            shared_lease_waits_served: s.lease_waits_served.get(),
            shared_lease_takeovers: s.lease_takeovers.get(),
            shared_lease_wait_timeouts: s.lease_wait_timeouts.get(),
        }
    }
}

fn by_name<const N: usize, T: Copy>(
    counters: &[Counter; N],
    all: [T; N],
    name: impl Fn(T) -> &'static str,
) -> BTreeMap<String, u64> {
    all.into_iter()
        .zip(counters.iter())
        .filter(|(_, c)| c.get() > 0)
        .map(|(k, c)| (name(k).to_owned(), c.get()))
        .collect()
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}
