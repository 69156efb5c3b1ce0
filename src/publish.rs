//! Feature `metrics`: every [`Stats`] figure through the [`metrics`] facade, under stable names,
//! so that a Prometheus or OpenTelemetry exporter installed by the application picks them up
//! with no mapping. The cache publishes every
//! [`metrics_interval`](crate::Builder::metrics_interval) (10 s by default) and on
//! [`TieredCache::publish_metrics`](crate::TieredCache::publish_metrics). Every series carries the label `cache` (the builder's
//! [`metrics_name`](crate::Builder::metrics_name), `"answercache"` by default), so several
//! caches in one process are told apart.
//!
//! Counters are published with `increment`, by what each grew since this cache last published
//! it (the cache keeps the totals and what it published): a cache reopened under the same name
//! in one process adds to the series instead of being hidden behind the higher total of the
//! cache before it (an exporter keeps the highest `absolute`). Gauges are published with `set`. The names,
//! kinds and labels: docs/METRICS.md (also in the docs of `TieredCache::publish_metrics`).

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::{counter, gauge};

use crate::breaker::BreakerState;
use crate::stats::{Mode, Stats};

/// What one cache has published of each counter (by name and label value).
#[derive(Debug, Default)]
pub(crate) struct Published(Mutex<HashMap<(&'static str, String), u64>>);

impl Published {
    /// How much counter `metric` (label value `label`) grew to `now` since it was published.
    fn grew(&self, metric: &'static str, label: &str, now: u64) -> u64 {
        let mut last = crate::sync::lock(&self.0);
        let before = last.insert((metric, label.to_owned()), now).unwrap_or(0);
        now.saturating_sub(before)
    }
}

/// Publishes `s` under the label `cache` = `name`; `published` is what this cache published
/// before.
pub(crate) fn publish(s: &Stats, name: &str, published: &Published) {
    let c = |metric: &'static str, v: u64| {
        counter!(metric, "cache" => name.to_owned()).increment(published.grew(metric, "", v))
    };
    let cl = |metric: &'static str, key: &'static str, value: &str, v: u64| {
        counter!(metric, "cache" => name.to_owned(), key => value.to_owned())
            .increment(published.grew(metric, value, v))
    };
    let g = |metric: &'static str, v: f64| gauge!(metric, "cache" => name.to_owned()).set(v);
    let gl = |metric: &'static str, key: &'static str, value: &str, v: f64| {
        gauge!(metric, "cache" => name.to_owned(), key => value.to_owned()).set(v)
    };
    cl("answercache_hits_total", "tier", "hot", s.hot_hits);
    cl("answercache_hits_total", "tier", "warm", s.warm_hits);
    cl("answercache_hits_total", "tier", "queue", s.queue_hits);
    c("answercache_inline_reads_total", s.inline_reads);
    c(
        "answercache_inline_read_fallbacks_total",
        s.inline_read_fallbacks,
    );
    c("answercache_misses_total", s.misses);
    c("answercache_decode_misses_total", s.decode_misses);
    c("answercache_joined_total", s.joined);
    c("answercache_bypasses_total", s.bypasses);
    c("answercache_unencodable_total", s.unencodable);
    c("answercache_loader_calls_total", s.loader_calls);
    c("answercache_stale_served_total", s.stale_served);
    c("answercache_sets_total", s.sets);
    c("answercache_removes_total", s.removes);
    cl(
        "answercache_evictions_total",
        "tier",
        "hot",
        s.hot_evictions,
    );
    cl(
        "answercache_evictions_total",
        "tier",
        "warm",
        s.warm_evictions,
    );
    cl(
        "answercache_expirations_total",
        "tier",
        "hot",
        s.hot_expirations,
    );
    cl(
        "answercache_expirations_total",
        "tier",
        "warm",
        s.warm_expirations,
    );
    cl("answercache_writes_total", "outcome", "ok", s.writes_ok);
    cl(
        "answercache_writes_total",
        "outcome",
        "failed",
        s.writes_failed,
    );
    cl(
        "answercache_writes_total",
        "outcome",
        "skipped",
        s.writes_skipped,
    );
    cl("answercache_writes_total", "outcome", "lost", s.lost_writes);
    let written = "answercache_written_bytes_total";
    cl(
        written,
        "stage",
        "uncompressed",
        s.bytes_written_uncompressed,
    );
    cl(written, "stage", "compressed", s.bytes_written_compressed);
    for (kind, n) in &s.disk_errors_by_kind {
        cl("answercache_disk_errors_total", "kind", kind, *n);
    }
    for (reason, n) in &s.corrupted_by_reason {
        cl("answercache_corrupted_total", "reason", reason, *n);
    }
    c("answercache_quarantined_files_total", s.quarantined_files);
    c("answercache_quarantined_bytes_total", s.quarantined_bytes);
    c(
        "answercache_newer_version_skipped_total",
        s.newer_version_skipped,
    );
    c("answercache_foreign_files_total", s.foreign_files);
    c("answercache_temp_files_swept_total", s.temp_files_swept);
    c("answercache_warm_compactions_total", s.warm_compactions);
    c("answercache_cost_saved_total", s.cost_saved);
    c(
        "answercache_breaker_transitions_total",
        s.breaker_transitions,
    );
    c("answercache_breaker_opens_total", s.breaker_opens);
    c("answercache_breaker_rejections_total", s.breaker_rejections);
    c("answercache_written_back_total", s.written_back);
    cl("answercache_probes_total", "result", "run", s.probes_run);
    cl("answercache_probes_total", "result", "ok", s.probes_ok);
    c("answercache_health_checks_total", s.health_checks);
    c(
        "answercache_memory_only_entries_total",
        s.memory_only_entries,
    );
    c("answercache_memory_only_ms_total", s.memory_only_ms);
    c("answercache_task_panics_total", s.task_panics);
    c("answercache_stale_keys_purged_total", s.stale_keys_purged);
    gl("answercache_entries", "tier", "hot", s.hot_entries as f64);
    gl("answercache_entries", "tier", "warm", s.warm_entries as f64);
    gl("answercache_bytes", "tier", "hot", s.hot_bytes as f64);
    gl("answercache_bytes", "tier", "warm", s.warm_bytes as f64);
    g("answercache_warm_disk_bytes", s.warm_disk_bytes as f64);
    g(
        "answercache_warm_compaction_backlog",
        s.warm_compaction_backlog as f64,
    );
    let capacity = "answercache_capacity_bytes";
    gl(capacity, "tier", "hot", s.hot_capacity_bytes as f64);
    gl(capacity, "tier", "warm", s.warm_capacity_bytes as f64);
    g(
        "answercache_hot_capacity_entries",
        s.hot_capacity_entries as f64,
    );
    g(
        "answercache_warm_index_complete",
        f64::from(u8::from(s.warm_index_complete)),
    );
    g("answercache_write_queue_depth", s.write_queue_depth as f64);
    g("answercache_write_queue_bytes", s.write_queue_bytes as f64);
    g("answercache_dirty_entries", s.dirty_entries as f64);
    g("answercache_compression_ratio", s.compression_ratio);
    g(
        "answercache_memory_only",
        f64::from(u8::from(s.mode == Mode::MemoryOnly)),
    );
    let breaker = match s.breaker_state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    g("answercache_breaker_state", breaker);
    g(
        "answercache_stale_keys_pending",
        s.stale_keys_pending as f64,
    );
    g("answercache_lost_keys", s.lost_keys as f64);
    if let Some(state) = s.shared_state {
        publish_shared(s, state, name, published);
    }
}

/// The shared tier's series (feature `redis`), published only by a cache that has one.
fn publish_shared(s: &Stats, state: BreakerState, name: &str, published: &Published) {
    let c = |metric: &'static str, v: u64| {
        counter!(metric, "cache" => name.to_owned()).increment(published.grew(metric, "", v))
    };
    let cl = |metric: &'static str, key: &'static str, value: &str, v: u64| {
        counter!(metric, "cache" => name.to_owned(), key => value.to_owned())
            .increment(published.grew(metric, value, v))
    };
    let g = |metric: &'static str, v: f64| gauge!(metric, "cache" => name.to_owned()).set(v);
    cl("answercache_hits_total", "tier", "shared", s.shared_hits);
    c("answercache_shared_misses_total", s.shared_misses);
    c("answercache_shared_rejections_total", s.shared_rejections);
    for (kind, n) in &s.shared_errors_by_kind {
        cl("answercache_shared_errors_total", "kind", kind, *n);
    }
    let writes = "answercache_shared_writes_total";
    cl(writes, "outcome", "ok", s.shared_writes_ok);
    cl(writes, "outcome", "failed", s.shared_writes_failed);
    cl(
        writes,
        "outcome",
        "rejected_oom",
        s.shared_write_rejected_oom,
    );
    for reason in ["queue_full", "breaker_open", "too_large", "expired"] {
        let n = s
            .shared_writes_dropped_by_reason
            .get(reason)
            .copied()
            .unwrap_or(0);
        cl(
            "answercache_shared_writes_dropped_total",
            "reason",
            reason,
            n,
        );
    }
    for (reason, n) in &s.shared_corrupted_by_reason {
        cl("answercache_shared_corrupted_total", "reason", reason, *n);
    }
    cl(
        "answercache_shared_bytes_total",
        "direction",
        "in",
        s.shared_bytes_in,
    );
    cl(
        "answercache_shared_bytes_total",
        "direction",
        "out",
        s.shared_bytes_out,
    );
    c(
        "answercache_shared_breaker_opens_total",
        s.shared_breaker_opens,
    );
    cl(
        "answercache_shared_probes_total",
        "result",
        "run",
        s.shared_probes_run,
    );
    cl(
        "answercache_shared_probes_total",
        "result",
        "ok",
        s.shared_probes_ok,
    );
    c("answercache_namespace_syncs_total", s.namespace_syncs);
    c(
        "answercache_namespace_changes_seen_total",
        s.namespace_changes_seen,
    );
    let lease = "answercache_shared_lease_total";
    cl(lease, "event", "acquired", s.shared_lease_acquired);
    cl(lease, "event", "waits", s.shared_lease_waits);
    cl(lease, "event", "waits_served", s.shared_lease_waits_served);
    cl(lease, "event", "takeovers", s.shared_lease_takeovers);
    cl(
        lease,
        "event",
        "wait_timeouts",
        s.shared_lease_wait_timeouts,
    );
    let breaker = match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    g("answercache_shared_breaker_state", breaker);
    g(
        "answercache_shared_queue_bytes",
        s.shared_queue_bytes as f64,
    );
    g(
        "answercache_shared_queue_entries",
        s.shared_queue_entries as f64,
    );
    g(
        "answercache_namespace_invalidations_pending",
        s.namespace_invalidations_pending as f64,
    );
}
