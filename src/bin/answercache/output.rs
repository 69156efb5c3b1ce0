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
use std::time::{Duration, Instant};

use answercache::fs::Fs;
use answercache::warm::walk::{EntryWalk, WalkItem};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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
        // The operator's own path is followed, as the library follows the root it is given: a
        // symlink to a cache directory (or `DIR/` through one) names that directory. What
        // lies below it is never followed.
        Ok(m) if m.is_dir() => match std::fs::canonicalize(dir) {
            Ok(real) if real != dir => Ok(real),
            _ => Ok(dir.to_path_buf()),
        },
        Ok(_) => Err(err(Kind::NotADirectory, "not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(err(Kind::NoSuchDirectory, "no such cache directory"))
        }
        Err(e) => Err(CliError::io(dir, e)),
    }
}

/// Moves the entries of a `v1/` directory of the previous layout into `v2/`, as a cache
/// opening the directory does, so that the commands that walk `v2/` (`verify`, `purge`,
/// `ls`) see them (`answercache::warm::migrate`). Returns how many were moved.
pub fn move_previous_layout(dir: &Path) -> Result<u64, CliError> {
    let fs = answercache::StdFs::new();
    match answercache::warm::migrate::migrate_root(&fs, dir, true) {
        Ok(done) => Ok(done.map_or(0, |m| m.moved)),
        Err(e) => Err(CliError::io(
            &answercache::warm::layout::Layout::new(dir).legacy_entries_dir(),
            e,
        )),
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

/// Scans with fewer entry files than this show their bar only once they have run for
/// [`SHOW_AFTER`]: a small directory is done before a bar would be read.
pub const SHOW_OVER_FILES: u64 = 1_000;
/// How long a scan runs before its bar appears, whatever its size.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Whether a scan's bar is drawn, given its total and how long it has run.
fn bar_due(total: u64, elapsed: Duration) -> bool {
    total > SHOW_OVER_FILES || elapsed >= SHOW_AFTER
}

/// The progress of a scan over every entry file (`stats`, `verify`, `purge`, `ls`): a bar on
/// stderr with the total, `verify: [=====>    ] 12,345/65,536 entries checked (eta 3s)`.
///
/// Drawn only when stderr is a terminal and the command is not `quiet` (`--json`, or `ls`
/// printing rows on the same terminal), so tests, pipes and logs never see it; and only past
/// [`SHOW_OVER_FILES`] entry files or [`SHOW_AFTER`]. The total comes from a listing pass
/// before the scan (the walk, counting names at entry paths; no file is opened), made only
/// when the bar may be drawn; a counting pass that itself runs past [`SHOW_AFTER`] shows a
/// counter meanwhile.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
}

impl Progress {
    /// The progress of a scan of `root`'s entry files, `what` before the bar and `unit` after
    /// the counts.
    pub fn scan(fs: &dyn Fs, root: &Path, what: &str, unit: &str, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
                started: Instant::now(),
                shown: true,
            };
        }
        let mut p = Progress {
            bar: ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
            started: Instant::now(),
            shown: false,
        };
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {human_pos} {msg}") {
            p.bar.set_style(style);
        }
        p.bar.set_prefix(what.to_owned());
        p.bar.set_message("entry files counted");
        let mut total = 0u64;
        for item in EntryWalk::new(fs, root) {
            if let WalkItem::Entry(_) = item {
                total += 1;
                if total.is_multiple_of(1024) {
                    p.bar.set_position(total);
                    p.show_if_due(0);
                }
            }
        }
        p.bar.set_length(total);
        p.bar.set_position(0);
        p.bar.set_message(unit.to_owned());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {human_pos}/{human_len} {msg} (eta {eta})",
        ) {
            p.bar.set_style(style.progress_chars("=> "));
        }
        p.started = Instant::now();
        p.show_if_due(total);
        p
    }

    /// One more entry done.
    pub fn inc(&mut self) {
        self.set_position(self.bar.position() + 1);
    }

    /// `n` entries done.
    pub fn set_position(&mut self, n: u64) {
        // Entries written since the count: the total grows with them.
        if self.bar.length().is_some_and(|len| n > len) {
            self.bar.set_length(n);
        }
        self.bar.set_position(n);
        let total = self.bar.length().unwrap_or(0);
        self.show_if_due(total);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn show_if_due(&mut self, total: u64) {
        if !self.shown && bar_due(total, self.started.elapsed()) {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_waits_for_a_large_scan_or_a_long_one() {
        assert!(!bar_due(0, Duration::ZERO));
        assert!(!bar_due(SHOW_OVER_FILES, Duration::from_millis(999)));
        assert!(bar_due(SHOW_OVER_FILES + 1, Duration::ZERO));
        assert!(bar_due(3, SHOW_AFTER));
    }

    #[test]
    fn hidden_when_stderr_is_not_a_terminal_or_quiet() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // `cargo test` run from a terminal leaves stderr a terminal: only `quiet` is then sure.
        let tty = std::io::stderr().is_terminal();
        for quiet in [true, false] {
            let mut p = Progress::scan(&answercache::StdFs::new(), dir.path(), "t:", "x", quiet);
            p.set_position(5_000);
            assert_eq!(p.bar.is_hidden(), quiet || !tty);
            p.finish();
        }
    }
}
