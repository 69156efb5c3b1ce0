//! How a command fails: one [`CliError`] with a [`Kind`], the message text mode prints and
//! the path it concerns, written either as today's `error: <message>` line on stderr or, under
//! `--json`, as one document on stdout:
//!
//! ```text
//! {"error": {"kind": "no-such-directory", "message": "/x: no such cache directory", "path": "/x"}}
//! ```
//!
//! Why stdout under `--json`: a script reads one document from stdout whatever happened, and
//! tells a failure from a report by the top-level `error` field (every report is an object
//! without one); stderr stays free for what is not a result. `message` is exactly the text
//! mode's line after `error: `, so both modes say the same thing.
//!
//! A command that met I/O errors while producing its report (`verify`, `stats`, `purge`, `ls`
//! go on past each) prints the report with the errors listed in it, then fails with the first
//! one, [marked](CliError::in_report) as already reported: under `--json` the report is the
//! one document and nothing else is printed; in text mode the `error:` line follows it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What kind of failure, by a stable name (the `kind` of the JSON error document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The command line is wrong: clap's own errors (unknown command or flag, a missing or
    /// invalid argument such as a bad `--ttl`), and a quarantine NAME that cannot be one.
    Usage,
    /// `DIR` does not exist.
    NoSuchDirectory,
    /// `DIR` exists but is not a directory.
    NotADirectory,
    /// `quarantine show|clear NAME`: no quarantined file of that name. Exit 1, like a miss.
    NotFound,
    /// The key is refused by the library (longer than `max_key_bytes`).
    BadKey,
    /// The value is refused by the library (longer than `max_entry_bytes`).
    BadValue,
    /// A value that cannot be shown without the Rust type that wrote it (bincode), asked for
    /// as text; `--raw` or `--json` show its bytes.
    Undecodable,
    /// `set` or `rm` could not make its change durable on disk.
    NotPersisted,
    /// An I/O error: listing, reading, removing, writing stdout.
    Io,
    /// The library failed otherwise (opening the cache, say).
    Cache,
    /// Anything else (the demo's failures).
    Other,
}

impl Kind {
    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::NoSuchDirectory => "no-such-directory",
            Kind::NotADirectory => "not-a-directory",
            Kind::NotFound => "not-found",
            Kind::BadKey => "bad-key",
            Kind::BadValue => "bad-value",
            Kind::Undecodable => "undecodable",
            Kind::NotPersisted => "not-persisted",
            Kind::Io => "io",
            Kind::Cache => "cache",
            Kind::Other => "other",
        }
    }

    /// The exit status: 1 for "nothing of that name" (an answer, as a miss is), else 2.
    pub fn exit(self) -> u8 {
        match self {
            Kind::NotFound => 1,
            _ => super::output::ERROR_EXIT,
        }
    }
}

/// A failed command.
#[derive(Debug)]
pub struct CliError {
    kind: Kind,
    message: String,
    path: Option<PathBuf>,
    /// Set when the report already printed lists this error (see the module docs).
    in_report: bool,
}

impl CliError {
    /// An error of `kind` whose text is `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            path: None,
            in_report: false,
        }
    }

    /// An I/O error on `path`: `<path>: <cause>`.
    pub fn io(path: &Path, cause: impl fmt::Display) -> Self {
        CliError::new(Kind::Io, format!("{}: {cause}", path.display())).at(path)
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(Kind::Usage, message)
    }

    /// A failure of the library's call, classified by the library's error: `message` is the
    /// whole text (it includes `e`).
    pub fn cache(e: &answercache::Error, message: impl Into<String>) -> Self {
        let kind = match e {
            answercache::Error::KeyTooLarge { .. } => Kind::BadKey,
            answercache::Error::ValueTooLarge { .. } | answercache::Error::Encode(_) => {
                Kind::BadValue
            }
            answercache::Error::NotPersisted { .. } => Kind::NotPersisted,
            _ => Kind::Cache,
        };
        CliError::new(kind, message)
    }

    /// The same error, concerning `path`.
    pub fn at(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    /// The same error, already listed in the report the command printed.
    pub fn in_report(mut self) -> Self {
        self.in_report = true;
        self
    }

    /// Prints the error the way the mode wants (see the module docs) and returns the exit
    /// status.
    pub fn report(&self, json: bool) -> u8 {
        if json {
            if !self.in_report {
                // Nothing more can be done if stdout fails too.
                let _ = super::output::print_json(&self.doc());
            }
        } else if self.kind == Kind::NotFound {
            // An answer, not a failure: the line has no `error:` (as `get`'s miss line).
            eprintln!("{}", self.message);
        } else {
            eprintln!("error: {}", self.message);
        }
        self.kind.exit()
    }

    /// The `--json` error document.
    pub fn doc(&self) -> ErrorDoc<'_> {
        ErrorDoc {
            error: ErrorFields {
                kind: self.kind.name(),
                message: &self.message,
                path: self.path.as_ref().map(|p| p.display().to_string()),
            },
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// `{"error": {...}}`.
#[derive(Serialize)]
pub struct ErrorDoc<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    kind: &'static str,
    message: &'a str,
    /// `null` when the error concerns no one path.
    path: Option<String>,
}

/// Whether `--json` is among the arguments (before a `--`, after which everything is a
/// value): known before clap has parsed them, so that a usage error can be written as JSON.
pub fn json_requested(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// A clap error as a usage error for `--json`: its first paragraph (clap's message without
/// `error: `, the usage line and the tips).
pub fn from_clap(e: &clap::Error) -> CliError {
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let first = text.split("\n\n").next().unwrap_or(text).trim_end();
    let message = if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap's text is the help (a description first); the usage line says what is missing.
        match text.lines().find_map(|l| l.strip_prefix("Usage: ")) {
            Some(usage) => format!("a subcommand is required; usage: {usage}"),
            None => "a subcommand is required".to_owned(),
        }
    } else {
        first.to_owned()
    };
    CliError::usage(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn json_is_seen_before_a_double_dash_only() {
        assert!(json_requested(&args(&[
            "answercache",
            "--json",
            "stats",
            "d"
        ])));
        assert!(json_requested(&args(&[
            "answercache",
            "stats",
            "d",
            "--json"
        ])));
        assert!(!json_requested(&args(&[
            "answercache",
            "get",
            "d",
            "--",
            "--json"
        ])));
        assert!(
            !json_requested(&args(&["--json"])),
            "argv[0] is not an argument"
        );
        assert!(!json_requested(&args(&["answercache", "--jsonx", "stats"])));
    }

    #[test]
    fn the_document_has_kind_message_and_path() {
        let e = CliError::io(Path::new("/x/v1"), "Permission denied (os error 13)");
        assert_eq!(
            serde_json::to_value(e.doc()).ok(),
            Some(serde_json::json!({"error": {
                "kind": "io",
                "message": "/x/v1: Permission denied (os error 13)",
                "path": "/x/v1",
            }}))
        );
        let e = CliError::usage("bad");
        assert_eq!(
            serde_json::to_value(e.doc()).ok(),
            Some(serde_json::json!({"error": {"kind": "usage", "message": "bad", "path": null}}))
        );
        assert_eq!((Kind::NotFound.exit(), Kind::Usage.exit()), (1, 2));
    }
}
