//! `answercache purge DIR --expired | --all`: deletes entry files without opening a cache.
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
//! put back (`answercache::warm::walk::remove_if_unchanged`), never deleted.

use std::path::Path;

use answercache::clock::system_now_ms;
use answercache::fs::{FileKind, FileRead, Fs, StdFs};
use answercache::warm::format::{parse_header, Invalid, Limits, HEADER_LEN};
use answercache::warm::walk::{remove_if_unchanged, WalkEntry};

use crate::json;
use crate::output::{self, Status};
use crate::table::Table;
use crate::walk;
use crate::BoxError;

/// What `purge` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Entries whose expiry has passed.
    Expired,
    /// Every entry.
    All,
}

/// What `purge` did; serialized (after the directory and the mode) as the `purge --json`
/// document.
#[derive(Debug, Default, serde::Serialize)]
struct Tally {
    removed: u64,
    removed_bytes: u64,
    kept: u64,
    kept_bytes: u64,
    /// Suspect entries left for `verify --repair`.
    skipped: u64,
    /// Removed by another process first.
    vanished: u64,
    /// Foreign names under `v1/`, left alone.
    foreign_files: u64,
    /// Paths that could not be listed, read or removed, with the error.
    #[serde(serialize_with = "json::path_errors")]
    errors: Vec<(String, String)>,
}

/// `purge --json`.
#[derive(serde::Serialize)]
struct PurgeReport<'a> {
    dir: String,
    /// `expired` or `all`.
    purge: &'static str,
    #[serde(flatten)]
    tally: &'a Tally,
}

/// What every visit needs.
struct Context<'a> {
    fs: &'a dyn Fs,
    root: &'a Path,
    what: What,
    limits: Limits,
    now_ms: u64,
}

impl Tally {
    fn visit(&mut self, ctx: &Context<'_>, e: &WalkEntry) {
        let (fs, root, what) = (ctx.fs, ctx.root, ctx.what);
        if e.kind != FileKind::File {
            self.skipped += 1;
            return;
        }
        let removed = match what {
            What::All => fs.remove_file(&e.path).map(|()| true),
            What::Expired => match fs.read_prefix(&e.path, HEADER_LEN) {
                Ok(FileRead::Data(head)) => match parse_header(&head, &ctx.limits) {
                    // Only the file whose header was judged: one rewritten since is kept.
                    Ok(h) if h.meta.is_expired(ctx.now_ms) => {
                        remove_if_unchanged(fs, root, e, &head)
                    }
                    // A newer format's entry is not ours to judge.
                    Ok(_) | Err(Invalid::NewerVersion(_)) => {
                        self.kept += 1;
                        self.kept_bytes += e.len;
                        return;
                    }
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
                    self.error(root, e, format!("read: {err}"));
                    return;
                }
            },
        };
        match removed {
            Ok(true) => {
                self.removed += 1;
                self.removed_bytes += e.len;
            }
            // Gone, or rewritten since the header was read: not this command's to delete.
            Ok(false) => self.vanished += 1,
            Err(err) if what == What::All && err.kind() == std::io::ErrorKind::NotFound => {
                self.vanished += 1
            }
            Err(err) => self.error(root, e, format!("remove: {err}")),
        }
    }

    fn error(&mut self, root: &Path, e: &WalkEntry, error: String) {
        self.errors.push((walk::relative(root, &e.path), error));
    }
}

/// Runs `purge DIR --expired | --all`.
pub fn run(dir: &Path, what: What, json: bool) -> Result<Status, BoxError> {
    let dir = output::existing_dir(dir)?;
    let ctx = Context {
        fs: &StdFs::new(),
        root: &dir,
        what,
        limits: Limits::default(),
        now_ms: system_now_ms(),
    };
    let mut tally = Tally::default();
    let bar = output::scan_progress("purge:", "entries looked at");
    let summary = walk::entries(ctx.fs, &dir, &mut |e| {
        tally.visit(&ctx, &e);
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    tally.foreign_files = summary.foreign;
    tally.errors.extend(
        summary
            .errors
            .into_iter()
            .map(|(path, e)| (path, format!("list: {e}"))),
    );
    let what_name = match what {
        What::Expired => "expired",
        What::All => "all",
    };
    if json {
        output::print_json(&PurgeReport {
            dir: dir.display().to_string(),
            purge: what_name,
            tally: &tally,
        })?;
    } else {
        let mut t = Table::new([
            format!("purge --{what_name}"),
            "files".into(),
            "bytes".into(),
        ]);
        t.files_row("removed", tally.removed, tally.removed_bytes);
        t.files_row("kept", tally.kept, tally.kept_bytes);
        t.count_row("skipped (suspect)", tally.skipped);
        t.count_row("vanished", tally.vanished);
        t.count_row("foreign (left alone)", tally.foreign_files);
        print!("cache directory {}\n\n{t}", dir.display());
        if tally.skipped > 0 {
            println!(
                "\nnote: {} suspect entries were left in place; `answercache verify {} --repair` quarantines them",
                crate::table::count(tally.skipped),
                dir.display()
            );
        }
    }
    output::fail_on(&dir, &tally.errors)?;
    Ok(Status::Ok)
}
