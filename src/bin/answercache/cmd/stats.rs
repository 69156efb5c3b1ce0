//! `answercache stats DIR`: what a cache directory holds, read from the directory itself.
//!
//! No cache is opened: the command lists the entry files and reads only each one's 88-byte
//! header (`read_prefix`), enough for expiry, sizes and the compression ratio without reading
//! payloads. A header that does not parse is counted as *suspect* and left to `verify`, which
//! reads whole files and can quarantine them; `stats` changes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use answercache::clock::system_now_ms;
use answercache::fs::{FileKind, FileRead, Fs, StdFs};
use answercache::warm::format::{parse_header, Invalid, Limits, HEADER_LEN};
use answercache::warm::layout::Layout;
use answercache::warm::quarantine;

use answercache::warm::walk::WalkEntry;

use crate::error::CliError;
use crate::json;
use crate::output::{self, Progress, Status};
use crate::table::{self, Table};
use crate::walk;

/// What `stats` found; serialized (after the directory) as the `stats --json` document.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct DirStats {
    /// Names at entry paths, whatever they are.
    entries: u64,
    /// Bytes of the regular entry files.
    entry_bytes: u64,
    /// Entries with a readable v1 header that have not expired.
    live: u64,
    /// Entries with a readable v1 header whose expiry has passed.
    expired: u64,
    /// Bytes of the expired entry files.
    expired_bytes: u64,
    /// Entries of a newer format version (left alone by this version).
    newer_version: u64,
    /// Entries whose header does not parse, or that are not regular files: `verify` them.
    suspect: u64,
    /// Entry files removed by another process between the listing and the read.
    vanished: u64,
    /// Entries with a readable header, by the encoding it records (`json`, `raw`, ...).
    entries_by_encoding: BTreeMap<&'static str, u64>,
    /// Value bytes (uncompressed) of the entries with a readable header.
    value_bytes: u64,
    /// `value_bytes / readable_bytes` (0 when nothing was readable).
    compression_ratio: f64,
    /// Oldest and newest `created_ms` among readable headers (0 when none).
    oldest_created_ms: u64,
    newest_created_ms: u64,
    /// Foreign names under `v2/`.
    foreign_files: u64,
    /// Whether a `v1/` directory of the previous layout is here: its entries are not counted
    /// above; a cache opening the directory moves them into `v2/` (FORMAT.md, "Layout 2").
    previous_layout: bool,
    /// Files in `tmp/` (writes in progress, or left by a crash and swept at the next open).
    temp_files: u64,
    temp_bytes: u64,
    /// Quarantined files (sidecars not counted) and their bytes.
    quarantine_files: u64,
    quarantine_bytes: u64,
    /// Paths that could not be listed or read, with the error.
    #[serde(serialize_with = "json::path_errors")]
    errors: Vec<(String, String)>,
    /// File bytes of the entries with a readable header (the ratio's denominator).
    #[serde(skip)]
    readable_bytes: u64,
}

/// `stats --json`.
#[derive(serde::Serialize)]
struct StatsReport<'a> {
    dir: String,
    #[serde(flatten)]
    stats: &'a DirStats,
}

impl DirStats {
    fn ratio(&self) -> f64 {
        if self.readable_bytes == 0 {
            0.0
        } else {
            self.value_bytes as f64 / self.readable_bytes as f64
        }
    }

    fn add(&mut self, fs: &dyn Fs, root: &Path, e: &WalkEntry, limits: &Limits, now_ms: u64) {
        self.entries += 1;
        if e.kind != FileKind::File {
            self.suspect += 1;
            return;
        }
        self.entry_bytes += e.len;
        let head = match fs.read_prefix(&e.path, HEADER_LEN) {
            Ok(FileRead::Data(d)) => d,
            Ok(_) => {
                self.suspect += 1;
                return;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.vanished += 1;
                self.entries -= 1;
                self.entry_bytes -= e.len;
                return;
            }
            Err(err) => {
                self.errors
                    .push((walk::relative(root, &e.path), err.to_string()));
                return;
            }
        };
        match parse_header(&head, limits) {
            Ok(h) => {
                if h.meta.is_expired(now_ms) {
                    self.expired += 1;
                    self.expired_bytes += e.len;
                } else {
                    self.live += 1;
                }
                *self
                    .entries_by_encoding
                    .entry(walk::encoding_name(&h))
                    .or_default() += 1;
                self.value_bytes += h.uncompressed_len;
                self.readable_bytes += e.len;
                let created = h.meta.created_ms;
                if self.oldest_created_ms == 0 || created < self.oldest_created_ms {
                    self.oldest_created_ms = created;
                }
                self.newest_created_ms = self.newest_created_ms.max(created);
            }
            Err(Invalid::NewerVersion(_)) => self.newer_version += 1,
            Err(Invalid::Corrupt(..)) => self.suspect += 1,
        }
    }

    fn human(&self, dir: &Path) -> String {
        let mut t = Table::new(["stats", "files", "bytes"]);
        t.files_row("entries", self.entries, self.entry_bytes);
        t.count_row("  live", self.live);
        t.files_row("  expired", self.expired, self.expired_bytes);
        t.count_row("  newer format", self.newer_version);
        t.count_row("  suspect", self.suspect);
        t.row(
            "values (uncompressed)",
            [String::new(), table::bytes_exact(self.value_bytes)],
        );
        t.files_row("temp files", self.temp_files, self.temp_bytes);
        t.count_row("foreign files", self.foreign_files);
        t.files_row("quarantine", self.quarantine_files, self.quarantine_bytes);
        let ratio = if self.readable_bytes == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}x", self.ratio())
        };
        let mut out = format!("cache directory {}\n\n{t}\n", dir.display());
        out.push_str(&table::pairs(&[
            ("encodings", table::by_name(&self.entries_by_encoding)),
            ("compression ratio", ratio),
            ("oldest entry", table::time_ms(self.oldest_created_ms)),
            ("newest entry", table::time_ms(self.newest_created_ms)),
        ]));
        let mut hints = Vec::new();
        if self.previous_layout {
            hints.push(
                "v1/ holds entries of the previous layout, not counted here: the first cache \
                 that opens this directory moves them into v2/"
                    .to_owned(),
            );
        }
        if self.expired > 0 {
            hints.push(format!(
                "{} expired entries: the cache deletes them lazily; `answercache purge {} --expired` does it now",
                table::count(self.expired),
                dir.display()
            ));
        }
        if self.suspect > 0 {
            hints.push(format!(
                "{} suspect entries (header unreadable or not a regular file): run `answercache verify {}`",
                table::count(self.suspect),
                dir.display()
            ));
        }
        if !hints.is_empty() {
            out.push('\n');
            for h in hints {
                out.push_str(&format!("note: {h}\n"));
            }
        }
        out
    }
}

/// Runs `stats DIR`.
pub fn run(dir: &Path, json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    let fs = StdFs::new();
    let layout = Layout::new(&dir);
    let limits = Limits::default();
    let now_ms = system_now_ms();
    let mut s = DirStats::default();
    let mut bar = Progress::scan(&fs, &dir, "stats:", "entries read", json);
    let summary = walk::entries(&fs, &dir, &mut |e| {
        s.add(&fs, &dir, e, &limits, now_ms);
        bar.inc();
        true
    });
    bar.finish();
    let summary = summary?;
    s.foreign_files = summary.foreign;
    s.temp_files = summary.temp_files;
    s.temp_bytes = summary.temp_bytes;
    s.errors.extend(summary.errors);
    s.previous_layout = fs.read_dir(&dir).is_ok_and(|names| {
        names.iter().any(|n| {
            n.name == answercache::warm::layout::LEGACY_ENTRIES_DIR && n.kind == FileKind::Dir
        })
    });
    match fs.read_dir(layout.tmp_dir()) {
        Ok(files) => {
            for f in files.iter().filter(|f| f.kind == FileKind::File) {
                s.temp_files += 1;
                s.temp_bytes += f.len;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => s.errors.push(("tmp".into(), e.to_string())),
    }
    match quarantine::list(&fs, layout.quarantine_dir()) {
        Ok(files) => {
            s.quarantine_files = files.len() as u64;
            s.quarantine_bytes = files.iter().map(|f| f.len).sum();
        }
        Err(e) => s.errors.push(("quarantine".into(), e.to_string())),
    }
    s.compression_ratio = s.ratio();
    if json {
        output::print_json(&StatsReport {
            dir: dir.display().to_string(),
            stats: &s,
        })?;
    } else {
        print!("{}", s.human(&dir));
    }
    output::fail_on(&dir, &s.errors)?;
    Ok(Status::Ok)
}
