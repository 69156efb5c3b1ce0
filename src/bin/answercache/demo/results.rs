//! The demo's final results: the tables a newcomer reads, and the `--json` document with the
//! same numbers.
//!
//! Numbers come from three places: the phases (per-phase deltas of the library's `Stats`, plus
//! what the workers know about the model), the totals of the closed cache instances (each
//! instance's counters start at zero), and the live log's event counts for what `Stats` has no
//! counter for (breaker openings, entries written back).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use answercache::Stats;

use super::replicas::Outcome;
use super::report::{self, PhaseReport, Totals};
use crate::table;

/// Everything the final tables show.
pub struct Results<'a> {
    /// The phases, in order.
    pub phases: &'a [PhaseReport],
    /// Totals of every cache instance of the run.
    pub totals: &'a Totals,
    /// The last instance's final stats.
    pub last: &'a Stats,
    /// Breaker transitions into Open (from the live log).
    pub breaker_opens: u64,
    /// Dirty entries queued for write-back after recoveries (from the live log).
    pub written_back: u64,
    /// The configured hot budget, bytes.
    pub hot_bytes: u64,
    /// Real sleep = simulated model latency / `time_scale`.
    pub time_scale: u32,
    /// The cache directory.
    pub dir: &'a Path,
    /// Whether the directory is removed at exit.
    pub temporary: bool,
    /// Wall-clock time of the whole run.
    pub wall: Duration,
    /// The replicas phase.
    pub replicas: &'a Outcome,
}

impl Results<'_> {
    /// The tables, as blocks of text to print one after the other.
    pub fn text(&self) -> Vec<String> {
        let total = report::total(self.phases);
        let t = self.totals;
        let resilience = [
            ("breaker openings", format!("{}", self.breaker_opens)),
            (
                "memory-only stretches",
                format!(
                    "{} (hot budget doubled to {} while in it)",
                    t.sum(|s| s.memory_only_entries),
                    table::bytes(self.hot_bytes * 2)
                ),
            ),
            (
                "recovery probes",
                format!(
                    "{} run, {} passed",
                    t.sum(|s| s.probes_run),
                    t.sum(|s| s.probes_ok)
                ),
            ),
            ("recoveries", format!("{}", t.sum(|s| s.probes_ok))),
            (
                "written back after recovery",
                format!(
                    "{} entries (lost writes: {})",
                    table::count(self.written_back),
                    t.sum(|s| s.lost_writes)
                ),
            ),
            (
                "disk errors",
                format!(
                    "{} ({}), none returned to a caller",
                    table::count(t.sum(|s| s.disk_errors)),
                    table::by_name(&t.sum_by_name(|s| &s.disk_errors_by_kind))
                ),
            ),
            (
                "quarantined files",
                format!(
                    "{} ({}), none served",
                    table::count(t.sum(|s| s.quarantined_files)),
                    table::by_name(&t.sum_by_name(|s| &s.corrupted_by_reason))
                ),
            ),
            (
                "time tiered / memory-only",
                format!(
                    "{} / {}",
                    table::duration(Duration::from_millis(t.tiered_ms())),
                    table::duration(Duration::from_millis(t.memory_only_ms()))
                ),
            ),
            (
                "requests answered",
                format!(
                    "{} of {}",
                    table::count(total.requests),
                    table::count(total.requests)
                ),
            ),
        ];
        let savings = [
            (
                "compression (values -> files)",
                format!(
                    "{} -> {} in {} files: {}",
                    table::bytes(t.sum(|s| s.bytes_written_uncompressed)),
                    table::bytes(t.sum(|s| s.bytes_written_compressed)),
                    table::count(t.sum(|s| s.writes_ok)),
                    t.ratio()
                ),
            ),
            (
                "model calls made / saved",
                format!(
                    "{} / {}",
                    table::count(total.model_calls),
                    table::count(total.hits())
                ),
            ),
            (
                "simulated model time*",
                format!(
                    "{} spent, {} saved ({} without the cache)",
                    table::duration(total.model_spent),
                    table::duration(total.model_saved),
                    table::duration(total.model_spent + total.model_saved)
                ),
            ),
            (
                "hits equal to the model's answer",
                if total.mismatches == 0 {
                    format!("all {}", table::count(total.hits()))
                } else {
                    format!(
                        "{} differ (the directory holds answers of another --seed)",
                        table::count(total.mismatches)
                    )
                },
            ),
            (
                "mode / breaker at the end",
                format!("{} / {}", self.last.mode, self.last.breaker_state),
            ),
            (
                "cache directory",
                if self.temporary {
                    format!(
                        "{} (temporary, removed on exit; use --dir to keep it)",
                        self.dir.display()
                    )
                } else {
                    self.dir.display().to_string()
                },
            ),
            ("wall time", table::duration(self.wall)),
        ];
        let mut blocks = vec![
            report::phase_table(self.phases).to_string(),
            report::tier_table(self.last).to_string(),
            table::pairs(&resilience),
            table::pairs(&savings),
        ];
        blocks.extend(self.replicas.text());
        blocks.push(format!(
                "* model latency is SIMULATED (0.5-4 s per call, slept at 1/{} speed); no model was called.",
                self.time_scale
            ));
        blocks
    }

    /// The `--json` document.
    pub fn doc(&self) -> DemoDoc<'_> {
        let total = report::total(self.phases);
        let requests_answered = total.requests;
        let t = self.totals;
        DemoDoc {
            dir: self.dir.display().to_string(),
            kept: !self.temporary,
            phases: self.phases.iter().cloned().chain([total]).collect(),
            resilience: Resilience {
                breaker_openings: self.breaker_opens,
                memory_only_entries: t.sum(|s| s.memory_only_entries),
                probes_run: t.sum(|s| s.probes_run),
                probes_ok: t.sum(|s| s.probes_ok),
                recoveries: t.sum(|s| s.probes_ok),
                written_back: self.written_back,
                lost_writes: t.sum(|s| s.lost_writes),
                disk_errors: t.sum(|s| s.disk_errors),
                disk_errors_by_kind: t.sum_by_name(|s| &s.disk_errors_by_kind),
                quarantined_files: t.sum(|s| s.quarantined_files),
                corrupted_by_reason: t.sum_by_name(|s| &s.corrupted_by_reason),
                tiered_ms: t.tiered_ms(),
                memory_only_ms: t.memory_only_ms(),
                requests_answered,
            },
            writes: Writes {
                files: t.sum(|s| s.writes_ok),
                uncompressed_bytes: t.sum(|s| s.bytes_written_uncompressed),
                compressed_bytes: t.sum(|s| s.bytes_written_compressed),
            },
            final_stats: self.last,
            replicas: self.replicas,
            wall_ms: report::ms(self.wall),
        }
    }
}

/// The demo's `--json` document.
#[derive(serde::Serialize)]
pub struct DemoDoc<'a> {
    dir: String,
    /// Whether the directory stays after the run (`--dir`).
    kept: bool,
    /// One record per phase, then the total.
    phases: Vec<PhaseReport>,
    resilience: Resilience,
    writes: Writes,
    /// The last cache instance's `Stats`, field for field.
    final_stats: &'a Stats,
    /// The replicas phase: `{"status": "ran", ...}` or `{"status": "skipped", "reason"}`.
    replicas: &'a Outcome,
    wall_ms: u64,
}

/// What the failing disk did and how the cache came through.
#[derive(serde::Serialize)]
struct Resilience {
    breaker_openings: u64,
    memory_only_entries: u64,
    probes_run: u64,
    probes_ok: u64,
    recoveries: u64,
    written_back: u64,
    lost_writes: u64,
    disk_errors: u64,
    disk_errors_by_kind: BTreeMap<String, u64>,
    quarantined_files: u64,
    corrupted_by_reason: BTreeMap<String, u64>,
    tiered_ms: u64,
    memory_only_ms: u64,
    requests_answered: u64,
}

/// Entry files written over the run.
#[derive(serde::Serialize)]
struct Writes {
    files: u64,
    uncompressed_bytes: u64,
    compressed_bytes: u64,
}
