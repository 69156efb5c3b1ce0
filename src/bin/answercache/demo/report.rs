//! What each demo phase did, and the final tables.
//!
//! Hits and misses per tier, disk errors, quarantined files and time memory-only come from the
//! library's own counters (`Stats`), taken before and after a phase; model calls and simulated
//! latency come from the demo's workers, which are the only ones who know what a miss would
//! have cost. A cache instance's counters start at zero when it opens, so totals over the run
//! add up each closed instance's last snapshot ([`Totals`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use answercache::Stats;

use crate::table::{self, Table};

/// Counters the workers of one phase share.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests served.
    pub requests: AtomicU64,
    /// Hits whose value differed from the model's answer (0 unless `--dir` holds answers of
    /// another seed).
    pub mismatches: AtomicU64,
    /// Model calls made (one per miss).
    pub model_calls: AtomicU64,
    /// Simulated model time spent on misses, ms.
    pub model_ms_spent: AtomicU64,
    /// Simulated model time hits avoided, ms.
    pub model_ms_saved: AtomicU64,
}

impl Tally {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One finished phase: a row of the final table, and a record of the `--json` document
/// (durations in ms).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PhaseReport {
    /// Row label.
    pub name: String,
    /// Requests served.
    pub requests: u64,
    /// Hot-tier hits.
    pub hot_hits: u64,
    /// Warm-tier (disk) hits.
    pub warm_hits: u64,
    /// Hits on values still waiting in the write queue.
    pub queue_hits: u64,
    /// Misses.
    pub misses: u64,
    /// Model calls made.
    pub model_calls: u64,
    /// Hits that differed from the model's answer.
    pub mismatches: u64,
    /// Disk errors the cache met (and hid from the workers).
    pub disk_errors: u64,
    /// Files the cache quarantined.
    pub quarantined: u64,
    /// Time the cache spent memory-only during the phase.
    #[serde(rename = "memory_only_ms", serialize_with = "as_ms")]
    pub memory_only: Duration,
    /// Simulated model time spent.
    #[serde(rename = "model_ms_spent", serialize_with = "as_ms")]
    pub model_spent: Duration,
    /// Simulated model time saved.
    #[serde(rename = "model_ms_saved", serialize_with = "as_ms")]
    pub model_saved: Duration,
    /// Real time the phase took.
    #[serde(rename = "wall_ms", serialize_with = "as_ms")]
    pub wall: Duration,
}

/// A duration as whole ms (for `#[serde(serialize_with)]`).
fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(ms(*d))
}

impl PhaseReport {
    /// The report of a phase that ran between the `before` and `after` snapshots of one cache
    /// instance.
    pub fn new(name: &str, before: &Stats, after: &Stats, tally: &Tally, wall: Duration) -> Self {
        PhaseReport {
            name: name.to_owned(),
            requests: Tally::get(&tally.requests),
            hot_hits: after.hot_hits - before.hot_hits,
            warm_hits: after.warm_hits - before.warm_hits,
            queue_hits: after.queue_hits - before.queue_hits,
            misses: after.misses - before.misses,
            model_calls: Tally::get(&tally.model_calls),
            mismatches: Tally::get(&tally.mismatches),
            disk_errors: after.disk_errors - before.disk_errors,
            quarantined: after.quarantined_files - before.quarantined_files,
            memory_only: Duration::from_millis(
                after.memory_only_ms.saturating_sub(before.memory_only_ms),
            )
            .min(wall),
            model_spent: Duration::from_millis(Tally::get(&tally.model_ms_spent)),
            model_saved: Duration::from_millis(Tally::get(&tally.model_ms_saved)),
            wall,
        }
    }

    /// Hits of every tier.
    pub fn hits(&self) -> u64 {
        self.hot_hits + self.warm_hits + self.queue_hits
    }

    /// One line for the log between phases.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} requests in {}: {} hot hits, {} warm hits (disk), {} queue hits, {} misses -> {} model calls",
            table::count(self.requests),
            table::duration(self.wall),
            table::count(self.hot_hits),
            table::count(self.warm_hits),
            table::count(self.queue_hits),
            table::count(self.misses),
            table::count(self.model_calls),
        );
        if self.disk_errors > 0 || self.quarantined > 0 || !self.memory_only.is_zero() {
            line.push_str(&format!(
                "; {} disk errors hidden from callers, {} files quarantined, {} memory-only",
                table::count(self.disk_errors),
                table::count(self.quarantined),
                table::duration(self.memory_only)
            ));
        }
        line
    }

    fn add(&mut self, other: &PhaseReport) {
        self.requests += other.requests;
        self.hot_hits += other.hot_hits;
        self.warm_hits += other.warm_hits;
        self.queue_hits += other.queue_hits;
        self.misses += other.misses;
        self.model_calls += other.model_calls;
        self.mismatches += other.mismatches;
        self.disk_errors += other.disk_errors;
        self.quarantined += other.quarantined;
        self.memory_only += other.memory_only;
        self.model_spent += other.model_spent;
        self.model_saved += other.model_saved;
        self.wall += other.wall;
    }
}

/// A duration in whole ms.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sums the phases into a `total` row.
pub fn total(phases: &[PhaseReport]) -> PhaseReport {
    let mut t = PhaseReport {
        name: "total".into(),
        ..PhaseReport::default()
    };
    for p in phases {
        t.add(p);
    }
    t
}

/// The per-phase table: one row per phase and a total.
pub fn phase_table(phases: &[PhaseReport]) -> Table {
    let mut t = Table::new([
        "phase",
        "requests",
        "hot hits",
        "warm hits",
        "queue hits",
        "misses",
        "hit rate",
        "disk errors",
        "quarantined",
        "memory-only",
        "time saved*",
    ]);
    let total = total(phases);
    for p in phases.iter().chain(std::iter::once(&total)) {
        t.row(
            p.name.clone(),
            [
                table::count(p.requests),
                table::count(p.hot_hits),
                table::count(p.warm_hits),
                table::count(p.queue_hits),
                table::count(p.misses),
                table::percent(p.hits(), p.hits() + p.misses),
                table::count(p.disk_errors),
                table::count(p.quarantined),
                table::duration(p.memory_only),
                table::duration(p.model_saved),
            ],
        );
    }
    t
}

/// Totals of the cache instances already closed (each one's counters start at zero): their
/// last stats, summed on demand.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Each closed instance's final stats and how long it was open, ms.
    closed: Vec<(Stats, u64)>,
}

impl Totals {
    /// Adds one instance's final stats and how long it was open.
    pub fn add(&mut self, s: &Stats, open_for: Duration) {
        self.closed.push((s.clone(), ms(open_for)));
    }

    /// A counter summed over the instances.
    pub fn sum(&self, counter: impl Fn(&Stats) -> u64) -> u64 {
        self.closed.iter().map(|(s, _)| counter(s)).sum()
    }

    /// Counters by name (disk errors by kind, corruption by reason) summed over the
    /// instances.
    pub fn sum_by_name(
        &self,
        counters: impl Fn(&Stats) -> &BTreeMap<String, u64>,
    ) -> BTreeMap<String, u64> {
        let mut sum = BTreeMap::new();
        for (s, _) in &self.closed {
            for (k, v) in counters(s) {
                *sum.entry(k.clone()).or_default() += v;
            }
        }
        sum
    }

    /// Time memory-only, ms (never more than an instance was open).
    pub fn memory_only_ms(&self) -> u64 {
        self.closed
            .iter()
            .map(|(s, open_ms)| s.memory_only_ms.min(*open_ms))
            .sum()
    }

    /// `uncompressed / compressed` value bytes written, e.g. `3.7x`.
    pub fn ratio(&self) -> String {
        let compressed = self.sum(|s| s.bytes_written_compressed);
        if compressed == 0 {
            "-".into()
        } else {
            let uncompressed = self.sum(|s| s.bytes_written_uncompressed);
            format!("{:.2}x", uncompressed as f64 / compressed as f64)
        }
    }

    /// Time the disk tier was in use, ms.
    pub fn tiered_ms(&self) -> u64 {
        let open_ms: u64 = self.closed.iter().map(|(_, open_ms)| open_ms).sum();
        open_ms - self.memory_only_ms()
    }
}

/// The tier table: entries, bytes and budgets of each tier as the cache stands. The warm tier's
/// budget counts its space on disk (blocks, directory entries, fan-out directories: what `du`
/// reads), next to its files' lengths.
pub fn tier_table(s: &Stats) -> Table {
    let mut t = Table::new(["tier", "entries", "bytes", "on disk (du)", "budget"]);
    t.row(
        "hot (memory LRU)",
        [
            table::count(s.hot_entries),
            table::bytes(s.hot_bytes),
            "-".to_owned(),
            table::bytes(s.hot_capacity_bytes),
        ],
    );
    t.row(
        "warm (gzip files on disk)",
        [
            table::count(s.warm_entries),
            table::bytes(s.warm_bytes),
            table::bytes(s.warm_disk_bytes),
            table::bytes(s.warm_capacity_bytes),
        ],
    );
    t
}
