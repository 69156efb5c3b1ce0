//! What every operator command shares: how it ends (exit status), where its output goes
//! (aligned text or `--json` on stdout, progress on stderr), and the checks on its `DIR`.
//!
//! Exit status, the same for every command:
//! - 0: done; nothing wrong found.
//! - 1: done, and the answer is "no" or "not clean": `get` missed, `rm`/`quarantine show`
//!   found nothing of that name, `verify` found corrupted files.
//! - 2: usage errors (clap's own status for them) and I/O errors, printed as one
//!   `error: <path>: <cause>` line on stderr, or under `--json` as one error document on
//!   stdout (see [`crate::error`]).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{CliError, Kind};

/// How a command that ran to its end finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: a miss, nothing of that name, or corruption found.
    No,
}

impl Status {
    /// Exit 1 when `no`, else 0.
    pub fn no_if(no: bool) -> Status {
        if no {
            Status::No
        } else {
            Status::Ok
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        match s {
            Status::Ok => ExitCode::SUCCESS,
            Status::No => ExitCode::from(1),
        }
    }
}

/// The exit status of usage and I/O errors.
pub const ERROR_EXIT: u8 = 2;

/// Prints a `--json` document on stdout: a report struct as pretty-printed JSON (two-space
/// indentation) and a newline.
pub fn print_json<T: serde::Serialize + ?Sized>(doc: &T) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(doc)
        .map_err(|e| CliError::new(Kind::Io, format!("writing the JSON document: {e}")))?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

/// Writes `bytes` on stdout and flushes. A reader that left early (`answercache get ... | head
/// -c 100`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(stdout_error(&e)),
    }
}

/// A failed write on stdout.
pub fn stdout_error(e: &std::io::Error) -> CliError {
    CliError::new(Kind::Io, format!("writing to stdout: {e}"))
}

/// Checks that `dir` is an existing directory: the read-side commands never create one (a
/// mistyped path must not look like an empty cache).
pub fn existing_dir(dir: &Path) -> Result<PathBuf, CliError> {
    let err = |kind, what: &str| CliError::new(kind, format!("{}: {what}", dir.display())).at(dir);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(dir.to_path_buf()),
        Ok(_) => Err(err(Kind::NotADirectory, "not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(err(Kind::NoSuchDirectory, "no such cache directory"))
        }
        Err(e) => Err(CliError::io(dir, e)),
    }
}

/// The error a command ends with after printing its report, when it met I/O errors on the
/// way: the first one (`first`, about `path`), and how many more (`"errors"`, `"I/O errors,
/// listed above"`). The report lists them all: under `--json` nothing more is printed.
pub fn first_of(path: &Path, first: String, n: usize, more: &str) -> CliError {
    let message = match n {
        0 | 1 => first,
        n => format!("{first} (and {} more {more})", n - 1),
    };
    CliError::new(Kind::Io, message).at(path).in_report()
}

/// Fails with the first of `errors` (a path relative to `dir` and the cause), if any.
pub fn fail_on(dir: &Path, errors: &[(String, String)]) -> Result<(), CliError> {
    match errors.first() {
        None => Ok(()),
        Some((path, e)) => {
            let path = dir.join(path);
            Err(first_of(
                &path,
                format!("{}: {e}", path.display()),
                errors.len(),
                "errors",
            ))
        }
    }
}

/// A counter on stderr for a scan of unknown length ("verifying: 12,345 entries checked"),
/// drawn only when stderr is a terminal: piped output and logs stay clean.
pub fn scan_progress(what: &str, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {human_pos} {msg}") {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_owned());
    bar.set_message(unit.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
