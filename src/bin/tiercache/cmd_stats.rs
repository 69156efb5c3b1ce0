//! `tiercache stats DIR`: what a cache directory holds, read from the directory itself.
//!
//! No cache is opened: the command lists the entry files and reads only each one's 88-byte
//! header (`read_prefix`), enough for expiry, sizes and the compression ratio without reading
//! payloads. A header that does not parse is counted as *suspect* and left to `verify`, which
//! reads whole files and can quarantine them; `stats` changes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use tiercache::clock::system_now_ms;
use tiercache::fs::{FileKind, FileRead, Fs, StdFs};
use tiercache::warm::format::{parse_header, Invalid, Limits, HEADER_LEN};
use tiercache::warm::layout::Layout;
use tiercache::warm::quarantine;

use super::json::PathError;
use super::output::{self, Status};
use super::report;
use super::table::{self, Table};
use super::walk::{self, EntryFile};
use super::BoxError;

/// What `stats` found.
#[derive(Debug, Clone, Default)]
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
    by_encoding: BTreeMap<&'static str, u64>,
    /// Value bytes (uncompressed) of the entries with a readable header.
    value_bytes: u64,
    /// File bytes of the entries with a readable header (the ratio's denominator).
    readable_bytes: u64,
    /// Oldest and newest `created_ms` among readable headers (0 when none).
    oldest_ms: u64,
    newest_ms: u64,
    /// Foreign names under `v1/`.
    foreign: u64,
    /// Files in `tmp/` (writes in progress, or left by a crash and swept at the next open).
    temp_files: u64,
    temp_bytes: u64,
    /// Quarantined files (sidecars not counted) and their bytes.
    quarantine_files: u64,
    quarantine_bytes: u64,
    /// Paths that could not be listed or read, with the error.
    errors: Vec<(String, String)>,
}

impl DirStats {
    fn ratio(&self) -> f64 {
        if self.readable_bytes == 0 {
            0.0
        } else {
            self.value_bytes as f64 / self.readable_bytes as f64
        }
    }

    fn add(&mut self, fs: &dyn Fs, e: &EntryFile, limits: &Limits, now_ms: u64) {
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
                self.errors.push((e.rel.clone(), err.to_string()));
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
                *self.by_encoding.entry(walk::encoding_name(&h)).or_default() += 1;
                self.value_bytes += h.uncompressed_len;
                self.readable_bytes += e.len;
                let created = h.meta.created_ms;
                if self.oldest_ms == 0 || created < self.oldest_ms {
                    self.oldest_ms = created;
                }
                self.newest_ms = self.newest_ms.max(created);
            }
            Err(Invalid::NewerVersion(_)) => self.newer_version += 1,
            Err(Invalid::Corrupt(..)) => self.suspect += 1,
        }
    }

    fn report(&self, dir: &Path) -> StatsReport<'_> {
        StatsReport {
            dir: dir.display().to_string(),
            entries: self.entries,
            entry_bytes: self.entry_bytes,
            live: self.live,
            expired: self.expired,
            expired_bytes: self.expired_bytes,
            newer_version: self.newer_version,
            suspect: self.suspect,
            vanished: self.vanished,
            entries_by_encoding: &self.by_encoding,
            value_bytes: self.value_bytes,
            compression_ratio: self.ratio(),
            oldest_created_ms: self.oldest_ms,
            newest_created_ms: self.newest_ms,
            foreign_files: self.foreign,
            temp_files: self.temp_files,
            temp_bytes: self.temp_bytes,
            quarantine_files: self.quarantine_files,
            quarantine_bytes: self.quarantine_bytes,
            errors: PathError::all(&self.errors),
        }
    }

    fn human(&self, dir: &Path) -> String {
        let mut t = Table::new(["stats", "files", "bytes"]);
        t.row(
            "entries",
            [
                table::count(self.entries),
                table::bytes_exact(self.entry_bytes),
            ],
        );
        t.row("  live", [table::count(self.live), String::new()]);
        t.row(
            "  expired",
            [
                table::count(self.expired),
                table::bytes_exact(self.expired_bytes),
            ],
        );
        t.row(
            "  newer format",
            [table::count(self.newer_version), String::new()],
        );
        t.row("  suspect", [table::count(self.suspect), String::new()]);
        t.row(
            "values (uncompressed)",
            [String::new(), table::bytes_exact(self.value_bytes)],
        );
        t.row(
            "temp files",
            [
                table::count(self.temp_files),
                table::bytes_exact(self.temp_bytes),
            ],
        );
        t.row("foreign files", [table::count(self.foreign), String::new()]);
        t.row(
            "quarantine",
            [
                table::count(self.quarantine_files),
                table::bytes_exact(self.quarantine_bytes),
            ],
        );
        let ratio = if self.readable_bytes == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}x", self.ratio())
        };
        let mut out = format!("cache directory {}\n\n{t}\n", dir.display());
        let encodings = self
            .by_encoding
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        out.push_str(&table::pairs(&[
            ("encodings", report::by_name(&encodings)),
            ("compression ratio", ratio),
            ("oldest entry", table::time_ms(self.oldest_ms)),
            ("newest entry", table::time_ms(self.newest_ms)),
        ]));
        let mut hints = Vec::new();
        if self.expired > 0 {
            hints.push(format!(
                "{} expired entries: the cache deletes them lazily; `tiercache purge {} --expired` does it now",
                table::count(self.expired),
                dir.display()
            ));
        }
        if self.suspect > 0 {
            hints.push(format!(
                "{} suspect entries (header unreadable or not a regular file): run `tiercache verify {}`",
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

/// `stats --json`.
#[derive(serde::Serialize)]
struct StatsReport<'a> {
    dir: String,
    entries: u64,
    entry_bytes: u64,
    live: u64,
    expired: u64,
    expired_bytes: u64,
    newer_version: u64,
    suspect: u64,
    vanished: u64,
    /// Entries with a readable header, by encoding.
    entries_by_encoding: &'a BTreeMap<&'static str, u64>,
    value_bytes: u64,
    compression_ratio: f64,
    oldest_created_ms: u64,
    newest_created_ms: u64,
    foreign_files: u64,
    temp_files: u64,
    temp_bytes: u64,
    quarantine_files: u64,
    quarantine_bytes: u64,
    errors: Vec<PathError<'a>>,
}

/// Runs `stats DIR`.
pub fn run(dir: &Path, json: bool) -> Result<Status, BoxError> {
    let dir = output::existing_dir(dir)?;
    let fs = StdFs;
    let layout = Layout::new(&dir);
    let limits = Limits::default();
    let now_ms = system_now_ms();
    let mut s = DirStats::default();
    let bar = output::scan_progress("stats:", "entries read");
    let summary = walk::entries(&fs, &dir, &mut |e| {
        s.add(&fs, &e, &limits, now_ms);
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    s.foreign = summary.foreign;
    s.errors
        .extend(summary.errors.into_iter().map(|e| (e.rel, e.error)));
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
    if json {
        output::print_json(&s.report(&dir))?;
    } else {
        print!("{}", s.human(&dir));
    }
    if let Some((path, e)) = s.errors.first() {
        return Err(format!(
            "{}: {e}{}",
            dir.join(path).display(),
            match s.errors.len() {
                1 => String::new(),
                n => format!(" (and {} more errors)", n - 1),
            }
        )
        .into());
    }
    Ok(Status::Ok)
}
