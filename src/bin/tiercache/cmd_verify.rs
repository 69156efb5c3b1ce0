//! `tiercache verify DIR [--repair]`: every entry file checked the way a `get` would check it,
//! by the library's [`tiercache::verify`]; with `--repair` the corrupted ones are moved to the
//! quarantine. Exit status 0 when clean, 1 when anything is corrupted (a repairing run that
//! moved files included: the *next* run is clean), 2 on I/O errors (the report is still
//! printed; the scan went on past each error).

use std::path::Path;

use tiercache::fs::StdFs;
use tiercache::verify::{verify_with_fs, VerifyOptions, VerifyReport};

use super::output::{self, Status};
use super::table::{self, Table};
use super::BoxError;

/// `verify --json`: the library's report, field for field, after three fields of the run.
#[derive(serde::Serialize)]
struct VerifyDoc<'a> {
    dir: String,
    repair: bool,
    clean: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
}

/// Runs `verify DIR [--repair]`.
pub fn run(dir: &Path, repair: bool, json: bool) -> Result<Status, BoxError> {
    let dir = output::existing_dir(dir)?;
    let options = VerifyOptions {
        repair,
        ..VerifyOptions::default()
    };
    let bar = output::scan_progress(
        if repair {
            "verify --repair:"
        } else {
            "verify:"
        },
        "entries checked",
    );
    let mut progress = |n: u64| bar.set_position(n);
    let report = verify_with_fs(&StdFs, &dir, &options, Some(&mut progress))
        .map_err(|e| format!("{}: {e}", dir.join("v1").display()))?;
    bar.finish_and_clear();
    if json {
        output::print_json(&VerifyDoc {
            dir: dir.display().to_string(),
            repair,
            clean: report.is_clean(),
            report: &report,
        })?;
    } else {
        print!("{}", human(&dir, repair, &report));
    }
    if let Some(first) = report.io_errors.first() {
        return Err(format!(
            "{}: {} failed: {}{}",
            dir.join(&first.path).display(),
            first.op,
            first.error,
            match report.io_errors.len() {
                1 => String::new(),
                n => format!(" (and {} more I/O errors, listed above)", n - 1),
            }
        )
        .into());
    }
    Ok(Status::no_if(!report.corrupted.is_empty()))
}

fn human(dir: &Path, repair: bool, r: &VerifyReport) -> String {
    let mut t = Table::new(["verify", "files", "bytes"]);
    t.row(
        "entries checked",
        [table::count(r.entries_checked), String::new()],
    );
    t.row(
        "healthy",
        [table::count(r.healthy), table::bytes_exact(r.healthy_bytes)],
    );
    t.row("  expired", [table::count(r.expired), String::new()]);
    t.row(
        "corrupted",
        [
            table::count(r.corrupted.len() as u64),
            table::bytes_exact(r.corrupted_bytes),
        ],
    );
    for (reason, n) in &r.corrupted_by_reason {
        t.row(format!("  {reason}"), [table::count(*n), String::new()]);
    }
    if repair {
        t.row(
            "quarantined now",
            [
                table::count(r.quarantined),
                table::bytes_exact(r.quarantined_bytes),
            ],
        );
    }
    t.row(
        "newer format",
        [table::count(r.newer_version), String::new()],
    );
    t.row(
        "foreign files",
        [table::count(r.foreign_files), String::new()],
    );
    t.row("vanished", [table::count(r.vanished), String::new()]);
    t.row(
        "I/O errors",
        [table::count(r.io_errors.len() as u64), String::new()],
    );
    let mut out = format!("cache directory {}\n\n{t}", dir.display());
    if !r.corrupted.is_empty() {
        let mut files =
            Table::new(["corrupted file", "reason", "size", "detail"]).left_aligned(&[1, 3]);
        for c in &r.corrupted {
            files.row(
                c.path.clone(),
                [
                    c.reason.name().to_owned(),
                    table::bytes(c.len),
                    c.detail.clone(),
                ],
            );
        }
        out.push_str(&format!("\n{files}"));
    }
    if !r.io_errors.is_empty() {
        let mut errors = Table::new(["path", "operation", "error"]).left_aligned(&[1, 2]);
        for e in &r.io_errors {
            errors.row(e.path.clone(), [e.op.to_owned(), e.error.clone()]);
        }
        out.push_str(&format!("\n{errors}"));
    }
    out.push('\n');
    let n = r.corrupted.len();
    out.push_str(&if n == 0 && r.io_errors.is_empty() {
        "clean: every entry file is whole and valid\n".to_owned()
    } else if n == 0 {
        "no corrupted file found, but the scan met I/O errors (listed above)\n".to_owned()
    } else if repair {
        // Every file moved by one run is named `<the run's time>-<reason>-<file name>`.
        let named = r
            .corrupted
            .iter()
            .find_map(|c| c.quarantined_as.as_deref())
            .and_then(|name| name.split_once('-'))
            .map(|(time, _)| format!(" as {time}-<reason>-<file name>"))
            .unwrap_or_default();
        format!(
            "{n} corrupted {} found; {} moved to {}{named} (see `tiercache quarantine list {}`)\n",
            plural(n, "file", "files"),
            table::count(r.quarantined),
            dir.join("quarantine").display(),
            dir.display()
        )
    } else {
        format!(
            "{n} corrupted {} found; `tiercache verify {} --repair` moves them to the quarantine\n",
            plural(n, "file", "files"),
            dir.display()
        )
    });
    out
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}
