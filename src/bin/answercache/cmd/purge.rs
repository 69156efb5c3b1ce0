//! `answercache purge DIR --expired | --all`: deletes entry files without opening a cache.
//!
//! `--expired` reads each entry's 88-byte header and deletes the file when its expiry has
//! passed (what the cache's own sweep does lazily); `--all` deletes every entry file whose
//! header reads (a newer format's included). Only regular files at entry paths are deleted: foreign files are left alone, and anything
//! suspect (a header that does not parse, a symlink or a directory at an entry path) is left
//! for `verify --repair`, which quarantines it with a reason instead of destroying evidence.
//!
//! Safe while caches run on the directory: a deleted file is a miss for them, and their write
//! path never depends on a file being there. `--expired` deletes only the file whose header it
//! judged: an entry rewritten by a running cache between the header read and the delete is
//! put back (`answercache::warm::walk::remove_if_unchanged`), never deleted.
//!
//! `--dry-run` judges every file the same way and deletes none: its report is the one the real
//! run would print (same counts and bytes, `dry_run` true), unless caches change the directory
//! in between. `--json` lists every file removed (or that would be), streamed as the walk goes.

use std::path::Path;

use answercache::clock::system_now_ms;
use answercache::fs::{FileKind, FileRead, Fs, StdFs};
use answercache::warm::format::{parse_header, Invalid, Limits, HEADER_LEN};
use answercache::warm::walk::{remove_if_unchanged, WalkEntry};

use crate::error::CliError;
use crate::json;
use crate::output::{self, Progress, Status};
use crate::stream::JsonArrayDoc;
use crate::table::Table;
use crate::walk;

/// What `purge` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Entries whose expiry has passed.
    Expired,
    /// Every entry.
    All,
}

/// What `purge` did (or, under `--dry-run`, would do); serialized (after the directory, the
/// mode and the file list) as the `purge --json` document.
#[derive(Debug, Default, serde::Serialize)]
struct Tally {
    /// Files removed (that would be, under `--dry-run`).
    removed: u64,
    removed_bytes: u64,
    kept: u64,
    kept_bytes: u64,
    /// Suspect entries left for `verify --repair`.
    skipped: u64,
    /// Removed by another process first.
    vanished: u64,
    /// Foreign names under `v2/`, left alone.
    foreign_files: u64,
    /// Empty fan-out directories (`v2/ab`) removed (that would be, under `--dry-run`).
    fan_out_dirs_removed: u64,
    /// Files removed (that would be) per fan-out directory: under `--dry-run`, a directory
    /// all of whose names would be removed counts as one that would be emptied.
    #[serde(skip)]
    removed_in: std::collections::HashMap<std::path::PathBuf, u64>,
    /// Paths that could not be listed, read or removed, with the error.
    #[serde(serialize_with = "json::path_errors")]
    errors: Vec<(String, String)>,
}

/// The start of the `purge --json` document, before the file list.
#[derive(serde::Serialize)]
struct Head {
    dir: String,
    /// `expired` or `all`.
    purge: &'static str,
    dry_run: bool,
}

/// One file of the `files` list of `purge --json`.
#[derive(serde::Serialize)]
struct Removed {
    /// Path relative to the cache directory.
    file: String,
    bytes: u64,
}

/// What every visit needs.
struct Context<'a> {
    fs: &'a dyn Fs,
    root: &'a Path,
    what: What,
    dry_run: bool,
    limits: Limits,
    now_ms: u64,
}

impl Tally {
    /// Judges one entry and removes it (unless a dry run); `true` when it is (or would be)
    /// removed.
    fn visit(&mut self, ctx: &Context<'_>, e: &WalkEntry) -> bool {
        let (fs, root, what) = (ctx.fs, ctx.root, ctx.what);
        if e.kind != FileKind::File {
            self.skipped += 1;
            return false;
        }
        // Both modes read the header: a file whose header does not parse is suspect, left
        // for `verify --repair` (which keeps it, with a reason, in the quarantine).
        let head = match fs.read_prefix(&e.path, HEADER_LEN) {
            Ok(FileRead::Data(head)) => head,
            Ok(_) => {
                self.skipped += 1;
                return false;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.vanished += 1;
                return false;
            }
            Err(err) => {
                self.error(root, e, format!("read: {err}"));
                return false;
            }
        };
        let judged = match parse_header(&head, &ctx.limits) {
            Ok(h) => Some(h),
            // A newer format's entry: an entry for `--all`, not ours to judge for `--expired`.
            Err(Invalid::NewerVersion(_)) => None,
            Err(Invalid::Corrupt(..)) => {
                self.skipped += 1;
                return false;
            }
        };
        let removed = match (what, judged) {
            (What::All, _) if ctx.dry_run => Ok(true),
            (What::All, _) => fs.remove_file(&e.path).map(|()| true),
            (What::Expired, Some(h)) if h.meta.is_expired(ctx.now_ms) => {
                if ctx.dry_run {
                    Ok(true)
                } else {
                    // Only the file whose header was judged: one rewritten since is kept.
                    remove_if_unchanged(fs, root, e, &head)
                }
            }
            (What::Expired, _) => {
                self.kept += 1;
                self.kept_bytes += e.len;
                return false;
            }
        };
        match removed {
            Ok(true) => {
                self.removed += 1;
                self.removed_bytes += e.len;
                if let Some(parent) = e.path.parent() {
                    *self.removed_in.entry(parent.to_owned()).or_default() += 1;
                }
                return true;
            }
            // Gone, or rewritten since the header was read: not this command's to delete.
            Ok(false) => self.vanished += 1,
            Err(err) if what == What::All && err.kind() == std::io::ErrorKind::NotFound => {
                self.vanished += 1
            }
            Err(err) => self.error(root, e, format!("remove: {err}")),
        }
        false
    }

    fn error(&mut self, root: &Path, e: &WalkEntry, error: String) {
        self.errors.push((walk::relative(root, &e.path), error));
    }
}

/// Removes the fan-out directories (`v2/ab`) the purge left empty, so that none piles up
/// (`--all` on a directory of entries only leaves none). `rmdir` only: a directory a running
/// cache has just written an entry into is not empty, and stays. Under `--dry-run`, counts
/// the directories that would be empty once the files that would be removed are gone.
fn remove_empty_fan_outs(ctx: &Context<'_>, tally: &mut Tally) {
    let entries = answercache::warm::layout::Layout::new(ctx.root)
        .entries_dir()
        .to_owned();
    let Ok(dirs) = ctx.fs.read_dir(&entries) else {
        return;
    };
    for d in dirs {
        let name = d.name.to_string_lossy();
        let fan_out = d.kind == FileKind::Dir
            && name.len() == 2
            && name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if !fan_out {
            continue;
        }
        let path = entries.join(&d.name);
        if ctx.dry_run {
            let removed = tally.removed_in.get(&path).copied().unwrap_or(0);
            if ctx
                .fs
                .read_dir(&path)
                .is_ok_and(|names| names.len() as u64 == removed)
            {
                tally.fan_out_dirs_removed += 1;
            }
        } else if std::fs::remove_dir(&path).is_ok() {
            // Not empty (foreign files, suspect entries, a new entry) or gone: left alone.
            tally.fan_out_dirs_removed += 1;
        }
    }
}

/// Runs `purge DIR --expired | --all [--dry-run]`.
pub fn run(dir: &Path, what: What, dry_run: bool, json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    if !dry_run {
        // A dry run changes nothing; the real run first moves a `v1/` of the previous layout
        // (its entries are then purged like the others).
        output::move_previous_layout(&dir)?;
    }
    let ctx = Context {
        fs: &StdFs::new(),
        root: &dir,
        what,
        dry_run,
        limits: Limits::default(),
        now_ms: system_now_ms(),
    };
    let what_name = match what {
        What::Expired => "expired",
        What::All => "all",
    };
    let head = Head {
        dir: dir.display().to_string(),
        purge: what_name,
        dry_run,
    };
    let mut files = if json {
        Some(JsonArrayDoc::new(&head, "files")?)
    } else {
        None
    };
    let mut tally = Tally::default();
    let mut failed = None;
    let mut bar = Progress::scan(ctx.fs, &dir, "purge:", "entries looked at", json);
    let summary = walk::entries(ctx.fs, &dir, &mut |e| {
        bar.inc();
        if tally.visit(&ctx, e) {
            if let Some(files) = files.as_mut() {
                let file = walk::relative(&dir, &e.path);
                if let Err(err) = files.item(&Removed { file, bytes: e.len }) {
                    failed = Some(err);
                    return false;
                }
            }
        }
        true
    });
    bar.finish();
    if let Some(err) = failed {
        return Err(err);
    }
    let summary = summary?;
    tally.foreign_files = summary.foreign;
    remove_empty_fan_outs(&ctx, &mut tally);
    tally.errors.extend(
        summary
            .errors
            .into_iter()
            .map(|(path, e)| (path, format!("list: {e}"))),
    );
    if let Some(files) = files {
        files.end(&tally)?;
    } else {
        let flag = if dry_run { " --dry-run" } else { "" };
        let mut t = Table::new([
            format!("purge --{what_name}{flag}"),
            "files".into(),
            "bytes".into(),
        ]);
        let removed = if dry_run { "would remove" } else { "removed" };
        t.files_row(removed, tally.removed, tally.removed_bytes);
        t.files_row("kept", tally.kept, tally.kept_bytes);
        t.count_row("skipped (suspect)", tally.skipped);
        t.count_row("vanished", tally.vanished);
        t.count_row("foreign (left alone)", tally.foreign_files);
        let dirs = if dry_run {
            "empty fan-out dirs (would remove)"
        } else {
            "empty fan-out dirs removed"
        };
        t.count_row(dirs, tally.fan_out_dirs_removed);
        print!("cache directory {}\n\n{t}", dir.display());
        if tally.skipped > 0 {
            println!(
                "\nnote: {} suspect entries were left in place; `answercache verify {} --repair` quarantines them",
                crate::table::count(tally.skipped),
                dir.display()
            );
        }
        if dry_run {
            println!("\ndry run: nothing was deleted");
        }
    }
    output::fail_on(&dir, &tally.errors)?;
    Ok(Status::Ok)
}
