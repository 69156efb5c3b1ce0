//! What each demo phase did, and the final tables.
//!
//! Hits and misses per tier come from the library's own counters (`Stats`), taken before and
//! after a phase; model calls and simulated latency come from the demo's workers, which are
//! the only ones who know what a miss would have cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tiercache::Stats;

use super::table::{self, Table};

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

/// One finished phase: a row of the final table.
#[derive(Debug, Clone, Default)]
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
    /// Simulated model time spent.
    pub model_spent: Duration,
    /// Simulated model time saved.
    pub model_saved: Duration,
    /// Real time the phase took.
    pub wall: Duration,
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
        format!(
            "{} requests in {}: {} hot hits, {} warm hits (disk), {} queue hits, {} misses -> {} model calls",
            table::count(self.requests),
            table::duration(self.wall),
            table::count(self.hot_hits),
            table::count(self.warm_hits),
            table::count(self.queue_hits),
            table::count(self.misses),
            table::count(self.model_calls),
        )
    }

    fn add(&mut self, other: &PhaseReport) {
        self.requests += other.requests;
        self.hot_hits += other.hot_hits;
        self.warm_hits += other.warm_hits;
        self.queue_hits += other.queue_hits;
        self.misses += other.misses;
        self.model_calls += other.model_calls;
        self.mismatches += other.mismatches;
        self.model_spent += other.model_spent;
        self.model_saved += other.model_saved;
        self.wall += other.wall;
    }
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
        "model time saved*",
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
                table::duration(p.model_saved),
            ],
        );
    }
    t
}

/// Write totals of one closed cache instance (its counters start at zero when it opens).
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Entry files written.
    pub files: u64,
    /// Value bytes before compression.
    pub uncompressed: u64,
    /// Entry-file bytes after compression (headers and keys included).
    pub compressed: u64,
    /// Disk errors seen.
    pub disk_errors: u64,
    /// Files quarantined.
    pub quarantined: u64,
}

impl Written {
    /// Adds one instance's final stats.
    pub fn add(&mut self, s: &Stats) {
        self.files += s.writes_ok;
        self.uncompressed += s.bytes_written_uncompressed;
        self.compressed += s.bytes_written_compressed;
        self.disk_errors += s.disk_errors;
        self.quarantined += s.quarantined_files;
    }

    /// `uncompressed / compressed`, e.g. `3.7x`.
    pub fn ratio(&self) -> String {
        if self.compressed == 0 {
            "-".into()
        } else {
            format!("{:.2}x", self.uncompressed as f64 / self.compressed as f64)
        }
    }
}

/// The tier table: entries, bytes and budgets of each tier as the cache stands.
pub fn tier_table(s: &Stats) -> Table {
    let mut t = Table::new(["tier", "entries", "bytes", "budget"]);
    t.row(
        "hot (memory LRU)",
        [
            table::count(s.hot_entries),
            table::bytes(s.hot_bytes),
            table::bytes(s.hot_capacity_bytes),
        ],
    );
    t.row(
        "warm (gzip files on disk)",
        [
            table::count(s.warm_entries),
            table::bytes(s.warm_bytes),
            table::bytes(s.warm_capacity_bytes),
        ],
    );
    t
}
