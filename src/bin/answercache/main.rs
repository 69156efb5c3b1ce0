//! `answercache`: the command-line companion of the answercache library.
//!
//! - `answercache demo`: an agent-backend workload against a cache in a temporary directory (or
//!   `--dir`) through a restart, damaged files and a (simulated) failing disk, ending with hits
//!   per tier, disk errors, quarantined files, time in each mode and the model time saved.
//! - Operator commands on a cache directory: `stats`, `verify [--repair]`, `ls`, `get`, `set`,
//!   `rm`, `purge --expired|--all [--dry-run]`, `quarantine list|show|clear [--dry-run]`.
//!
//! Every command takes `--json` (one JSON document on stdout, written by serde_json from the
//! command's report struct; `ls` and `purge` write their lists as they go). Exit status: 0
//! done and clean, 1 a miss / nothing of that name / corruption found, 2 usage or I/O errors,
//! printed as `error: <path>: <cause>` on stderr, or under `--json` as one
//! `{"error": {"kind", "message", "path"}}` document on stdout (usage errors from clap
//! included; `--help` and `--version` print as usual). The scans over every entry file draw a
//! progress bar with the total on stderr, only on a terminal, never under `--json`, and only
//! for large or slow scans. See docs/CLI.md.

//! Files: this one (arguments, dispatch); `cmd/`, one file per operator command; `demo/`, the
//! demo and its workload; shared by both: `error` (how a command fails, in text and JSON),
//! `output` (exit status, stdout, progress), `stream` (output written as it is produced),
//! `json` (pieces of the `--json` documents), `table` (aligned text tables and number
//! formats), `walk` (the library's walk of the entry files, as `stats`, `purge` and `ls` use
//! it).

#![forbid(unsafe_code)]

mod cmd;
mod demo;
mod error;
mod json;
mod output;
mod stream;
mod table;
mod walk;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use output::Status;

/// The demo's error type; the operator commands fail with an [`error::CliError`], which says
/// what kind of failure it is (the demo's are of kind `other`).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tiered (memory LRU + gzip disk) response cache for LLM answers.
#[derive(Debug, Parser)]
#[command(name = "answercache", version, about)]
struct Cli {
    /// Print one JSON document on stdout instead of text tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an agent-backend workload through a restart, damaged files and a failing disk, and
    /// show what the cache saves and survives.
    Demo(DemoArgs),
    /// Entries, bytes, compression ratio, expired entries and quarantine size of a directory.
    Stats {
        /// Cache directory.
        dir: PathBuf,
    },
    /// Check every entry file; exit 0 when clean, 1 when anything is corrupted.
    Verify {
        /// Cache directory.
        dir: PathBuf,
        /// Move the corrupted files to <DIR>/quarantine.
        #[arg(long)]
        repair: bool,
    },
    /// Print a value on stdout (a JSON value as its stored JSON text, other bytes as stored; a
    /// bincode value only with --raw or --json); exit 1 on a miss.
    Get {
        /// Cache directory.
        dir: PathBuf,
        /// The key.
        key: OsString,
        /// Print the stored bytes exactly as they are, a JSON value included (no formatting,
        /// no newline added).
        #[arg(long)]
        raw: bool,
    },
    /// Store the bytes read from stdin as the value of KEY.
    Set {
        /// Cache directory (created if missing).
        dir: PathBuf,
        /// The key.
        key: OsString,
        /// Time to live: 90s, 15m, 2h, 7d, 1h30m, 500ms, or plain seconds. Default: never
        /// expires.
        #[arg(long, value_name = "DURATION", value_parser = cmd::entry::parse_ttl)]
        ttl: Option<Duration>,
    },
    /// List every entry: hash, sizes, age, expiry, encoding and key (corrupt files as
    /// corrupt, with the reason), in hash order.
    Ls {
        /// Cache directory.
        dir: PathBuf,
    },
    /// Remove a key; exit 1 if it was not cached.
    Rm {
        /// Cache directory.
        dir: PathBuf,
        /// The key.
        key: OsString,
    },
    /// Delete expired entries, or all entries.
    Purge(PurgeArgs),
    /// Files moved aside as corrupted, with their reasons.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["expired", "all"])))]
struct PurgeArgs {
    /// Cache directory.
    dir: PathBuf,
    /// Delete the entries whose expiry has passed.
    #[arg(long)]
    expired: bool,
    /// Delete every entry.
    #[arg(long)]
    all: bool,
    /// Delete nothing; report what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// List quarantined files, oldest first.
    List {
        /// Cache directory.
        dir: PathBuf,
    },
    /// Show one quarantined file: reason, detail, original path, header, first bytes.
    Show {
        /// Cache directory.
        dir: PathBuf,
        /// The name `quarantine list` shows.
        name: String,
    },
    /// Delete one quarantined file (NAME) or all of them.
    Clear {
        /// Cache directory.
        dir: PathBuf,
        /// The name `quarantine list` shows; all files when omitted.
        name: Option<String>,
        /// Delete nothing; report what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Cache directory (created if missing; kept afterwards; the demo damages a few of its
    /// entry files on purpose). Default: a temporary directory removed at exit.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Requests in the whole run.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    requests: usize,
    /// Concurrent workers (tokio tasks) serving requests.
    #[arg(long, default_value_t = 8, value_name = "N")]
    workers: usize,
    /// Seed of the workload: the same seed gives the same prompts, order and answers.
    #[arg(long, default_value_t = 42, value_name = "N")]
    seed: u64,
    /// Distinct prompts in the catalog (at most 600).
    #[arg(long, default_value_t = 400, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=demo::workload::MAX_PROMPTS as u64))]
    prompts: u64,
    /// Zipf exponent of prompt popularity (higher: a few prompts dominate).
    #[arg(long, default_value_t = 0.9, value_name = "S")]
    skew: f64,
    /// Hot-tier (memory) budget in KiB; small by default so the disk tier is used visibly.
    #[arg(long, default_value_t = 2048, value_name = "KIB")]
    hot_kib: usize,
    /// The demo sleeps 1/SCALE of the simulated model latency (0.5-4 s per call).
    #[arg(long, default_value_t = 10, value_name = "SCALE",
          value_parser = clap::value_parser!(u32).range(1..))]
    time_scale: u32,
    /// The Redis or Valkey server of the replicas phase (redis://, valkey://,
    /// redis+unix:///path). It is used, never killed. Default: a throwaway redis-server (or
    /// valkey-server) on a unix socket when one is on PATH, killed -9 and restarted mid-run;
    /// without one the phase is skipped.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let json = error::json_requested(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // Help and version are answers, printed as clap prints them; so is every usage
            // error in text mode.
            if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit()
            }
            error::from_clap(&e).report(true);
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(output::ERROR_EXIT));
        }
    };
    match run(cli) {
        Ok(status) => status.into(),
        Err(e) => ExitCode::from(e.report(json)),
    }
}

fn run(cli: Cli) -> Result<Status, error::CliError> {
    let json = cli.json;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            error::CliError::new(
                error::Kind::Other,
                format!("cannot start the tokio runtime: {e}"),
            )
        })?;
    let result = match cli.command {
        Command::Demo(args) => runtime
            .block_on(demo::run(demo::DemoOptions {
                dir: args.dir,
                requests: args.requests,
                workers: args.workers,
                seed: args.seed,
                prompts: args.prompts as usize,
                skew: args.skew,
                hot_bytes: args.hot_kib.saturating_mul(1024),
                time_scale: args.time_scale,
                json,
                redis: args.redis,
            }))
            .map(|()| Status::Ok)
            .map_err(|e| error::CliError::new(error::Kind::Other, e.to_string())),
        Command::Stats { dir } => cmd::stats::run(&dir, json),
        Command::Verify { dir, repair } => cmd::verify::run(&dir, repair, json),
        Command::Get { dir, key, raw } => {
            runtime.block_on(cmd::entry::get(&dir, key.as_bytes(), raw, json))
        }
        Command::Set { dir, key, ttl } => {
            runtime.block_on(cmd::entry::set(&dir, key.as_bytes(), ttl, json))
        }
        Command::Rm { dir, key } => runtime.block_on(cmd::entry::rm(&dir, key.as_bytes(), json)),
        Command::Ls { dir } => cmd::ls::run(&dir, json),
        Command::Purge(args) => cmd::purge::run(
            &args.dir,
            if args.all {
                cmd::purge::What::All
            } else {
                cmd::purge::What::Expired
            },
            args.dry_run,
            json,
        ),
        Command::Quarantine(q) => match q {
            QuarantineCommand::List { dir } => cmd::quarantine::list(&dir, json),
            QuarantineCommand::Show { dir, name } => cmd::quarantine::show(&dir, &name, json),
            QuarantineCommand::Clear { dir, name, dry_run } => {
                cmd::quarantine::clear(&dir, name.as_deref(), dry_run, json)
            }
        },
    };
    // Background work still running (a cache's startup scan of a large directory, which reads
    // only) is not waited for: what a command had to persist, it flushed.
    runtime.shutdown_background();
    result
}
