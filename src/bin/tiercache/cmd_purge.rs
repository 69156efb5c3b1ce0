//! `tiercache purge DIR --expired | --all`: deletes entry files without opening a cache.
//!
//! `--expired` reads each entry's 88-byte header and deletes the file when its expiry has
//! passed (what the cache's own sweep does lazily); `--all` deletes every entry file. Only
//! regular files at entry paths are deleted: foreign files are left alone, and anything
//! suspect (a header that does not parse, a symlink or a directory at an entry path) is left
//! for `verify --repair`, which quarantines it with a reason instead of destroying evidence.
//!
//! Safe while caches run on the directory: a deleted file is a miss for them, and their write
//! path never depends on a file being there. `--expired` deletes only the file whose header it
//! judged: an entry rewritten by a running cache between the header read and the delete is
//! put back (`tiercache::warm::take_if_unchanged`), never deleted.

use std::path::Path;

use tiercache::clock::system_now_ms;
use tiercache::fs::{FileKind, FileRead, Fs, StdFs};
use tiercache::warm::format::{parse_header, Invalid, Limits, HEADER_LEN};
use tiercache::warm::{take_if_unchanged, Judged};

use super::json::PathError;
use super::output::{self, Status};
use super::table::{self, Table};
use super::walk::{self, EntryFile};
use super::BoxError;

/// What `purge` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Entries whose expiry has passed.
    Expired,
    /// Every entry.
    All,
}

#[derive(Debug, Default)]
struct Tally {
    removed: u64,
    removed_bytes: u64,
    kept: u64,
    kept_bytes: u64,
    /// Suspect entries left for `verify --repair`.
    skipped: u64,
    /// Removed by another process first.
    vanished: u64,
    errors: Vec<(String, String)>,
}

impl Tally {
    fn visit(&mut self, fs: &dyn Fs, e: &EntryFile, what: What, ctx: &Context) {
        if e.kind != FileKind::File {
            self.skipped += 1;
            return;
        }
        let (limits, now_ms) = (&ctx.limits, ctx.now_ms);
        let delete = match what {
            What::All => true,
            What::Expired => match fs.read_prefix(&e.path, HEADER_LEN) {
                Ok(FileRead::Data(head)) => match parse_header(&head, limits) {
                    Ok(h) if h.meta.is_expired(now_ms) => {
                        self.remove_judged(fs, e, &head, ctx);
                        return;
                    }
                    Ok(_) => false,
                    // A newer format's entry is not ours to judge.
                    Err(Invalid::NewerVersion(_)) => false,
                    Err(Invalid::Corrupt(..)) => {
                        self.skipped += 1;
                        return;
                    }
                },
                Ok(_) => {
                    self.skipped += 1;
                    return;
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    self.vanished += 1;
                    return;
                }
                Err(err) => {
                    self.errors.push((e.rel.clone(), format!("read: {err}")));
                    return;
                }
            },
        };
        if !delete {
            self.kept += 1;
            self.kept_bytes += e.len;
            return;
        }
        match fs.remove_file(&e.path) {
            Ok(()) => {
                self.removed += 1;
                self.removed_bytes += e.len;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => self.vanished += 1,
            Err(err) => self.errors.push((e.rel.clone(), format!("remove: {err}"))),
        }
    }

    /// Deletes an expired entry only if it is still the file whose header was read.
    fn remove_judged(&mut self, fs: &dyn Fs, e: &EntryFile, head: &[u8], ctx: &Context) {
        let n = ctx.next.get();
        ctx.next.set(n + 1);
        // A temp name of this process: swept by the next cache that opens the directory if
        // this command dies before it deletes it.
        let aside = ctx
            .root
            .join("tmp")
            .join(format!("purge.{}.0.{n}.tmp", std::process::id()));
        let judged = Judged::Header(head);
        match take_if_unchanged(fs, &e.path, &aside, &judged, u64::MAX) {
            Ok(true) => match fs.remove_file(&aside) {
                Ok(()) => {
                    self.removed += 1;
                    self.removed_bytes += e.len;
                }
                Err(err) => self.errors.push((e.rel.clone(), format!("remove: {err}"))),
            },
            // Gone, or rewritten since the header was read: not this command's to delete.
            Ok(false) => self.vanished += 1,
            Err(err) => self.errors.push((e.rel.clone(), format!("remove: {err}"))),
        }
    }
}

/// What every visit needs.
struct Context {
    root: std::path::PathBuf,
    limits: Limits,
    now_ms: u64,
    /// The next number for a temp name.
    next: std::cell::Cell<u64>,
}

/// `purge --json`.
#[derive(serde::Serialize)]
struct PurgeReport<'a> {
    dir: String,
    /// `expired` or `all`.
    purge: &'static str,
    removed: u64,
    removed_bytes: u64,
    kept: u64,
    kept_bytes: u64,
    skipped: u64,
    vanished: u64,
    foreign_files: u64,
    errors: Vec<PathError<'a>>,
}

/// Runs `purge DIR --expired | --all`.
pub fn run(dir: &Path, what: What, json: bool) -> Result<Status, BoxError> {
    let dir = output::existing_dir(dir)?;
    let fs = StdFs;
    let limits = Limits::default();
    let ctx = Context {
        root: dir.clone(),
        limits,
        now_ms: system_now_ms(),
        next: std::cell::Cell::new(0),
    };
    let mut tally = Tally::default();
    let bar = output::scan_progress("purge:", "entries looked at");
    let summary = walk::entries(&fs, &dir, &mut |e| {
        tally.visit(&fs, &e, what, &ctx);
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    tally.errors.extend(
        summary
            .errors
            .into_iter()
            .map(|e| (e.rel, format!("list: {}", e.error))),
    );
    let what_name = match what {
        What::Expired => "expired",
        What::All => "all",
    };
    if json {
        output::print_json(&PurgeReport {
            dir: dir.display().to_string(),
            purge: what_name,
            removed: tally.removed,
            removed_bytes: tally.removed_bytes,
            kept: tally.kept,
            kept_bytes: tally.kept_bytes,
            skipped: tally.skipped,
            vanished: tally.vanished,
            foreign_files: summary.foreign,
            errors: PathError::all(&tally.errors),
        })?;
    } else {
        let mut t = Table::new([
            format!("purge --{what_name}"),
            "files".into(),
            "bytes".into(),
        ]);
        t.row(
            "removed",
            [
                table::count(tally.removed),
                table::bytes_exact(tally.removed_bytes),
            ],
        );
        t.row(
            "kept",
            [
                table::count(tally.kept),
                table::bytes_exact(tally.kept_bytes),
            ],
        );
        t.row(
            "skipped (suspect)",
            [table::count(tally.skipped), String::new()],
        );
        t.row("vanished", [table::count(tally.vanished), String::new()]);
        t.row(
            "foreign (left alone)",
            [table::count(summary.foreign), String::new()],
        );
        print!("cache directory {}\n\n{t}", dir.display());
        if tally.skipped > 0 {
            println!(
                "\nnote: {} suspect entries were left in place; `tiercache verify {} --repair` quarantines them",
                table::count(tally.skipped),
                dir.display()
            );
        }
    }
    if let Some((path, e)) = tally.errors.first() {
        return Err(format!(
            "{}: {e}{}",
            dir.join(path).display(),
            match tally.errors.len() {
                1 => String::new(),
                n => format!(" (and {} more errors)", n - 1),
            }
        )
        .into());
    }
    Ok(Status::Ok)
}
