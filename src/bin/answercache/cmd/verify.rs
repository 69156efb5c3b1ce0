//! `answercache verify DIR [--repair]`: every entry file checked the way a `get` would check it,
//! by the library's [`answercache::verify`]; with `--repair` the corrupted ones are moved to the
//! quarantine. Exit status 0 when clean, 1 when anything is corrupted (a repairing run that
//! moved files included: the *next* run is clean), 2 on I/O errors (the report is still
//! printed; the scan went on past each error).

use std::path::Path;

use answercache::fs::StdFs;
use answercache::verify::{verify_with_fs, VerifyOptions, VerifyReport};
use answercache::warm::layout::Layout;

use crate::error::CliError;
use crate::output::{self, Progress, Status};
use crate::table::{self, Table};

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
pub fn run(dir: &Path, repair: bool, json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    let options = VerifyOptions {
        repair,
        ..VerifyOptions::default()
    };
    let what = if repair {
        "verify --repair:"
    } else {
        "verify:"
    };
    let mut bar = Progress::scan(&StdFs::new(), &dir, what, "entries checked", json);
    let mut progress = |n: u64| bar.set_position(n);
    let report = verify_with_fs(&StdFs::new(), &dir, &options, Some(&mut progress));
    bar.finish();
    let report = report.map_err(|e| CliError::io(Layout::new(&dir).entries_dir(), e))?;
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
        let path = dir.join(&first.path);
        return Err(output::first_of(
            &path,
            format!("{}: {} failed: {}", path.display(), first.op, first.error),
            report.io_errors.len(),
            "I/O errors, listed above",
        ));
    }
    Ok(Status::no_if(!report.corrupted.is_empty()))
}

fn human(dir: &Path, repair: bool, r: &VerifyReport) -> String {
    let mut t = Table::new(["verify", "files", "bytes"]);
    t.count_row("entries checked", r.entries_checked);
    t.files_row("healthy", r.healthy, r.healthy_bytes);
    t.count_row("  expired", r.expired);
    t.files_row("corrupted", r.corrupted.len() as u64, r.corrupted_bytes);
    for (reason, n) in &r.corrupted_by_reason {
        t.count_row(format!("  {reason}"), *n);
    }
    if repair {
        t.files_row("quarantined now", r.quarantined, r.quarantined_bytes);
    }
    t.count_row("newer format", r.newer_version);
    t.count_row("foreign files", r.foreign_files);
    t.count_row("vanished", r.vanished);
    t.count_row("I/O errors", r.io_errors.len() as u64);
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
            "{n} corrupted {} found; {} moved to {}{named} (see `answercache quarantine list {}`)\n",
            plural(n, "file", "files"),
            table::count(r.quarantined),
            dir.join("quarantine").display(),
            dir.display()
        )
    } else {
        format!(
            "{n} corrupted {} found; `answercache verify {} --repair` moves them to the quarantine\n",
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
