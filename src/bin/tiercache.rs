//! `tiercache`: the command-line companion of the tiercache library.
//!
//! - `tiercache demo`: runs an agent-backend workload against a cache in a temporary
//!   directory (or `--dir`) and shows hits per tier, bytes per tier, compression and the
//!   (simulated) model time saved, including entries read back from disk after a restart.
//!
//! Exit status: 0 on success, 2 on usage or I/O errors (printed as `error: ...` on stderr).

// The binary's crate root is `src/bin/tiercache.rs`, so its modules live in `tiercache/`
// beside it and are named by path.
#[path = "tiercache/demo.rs"]
mod demo;
#[path = "tiercache/report.rs"]
mod report;
#[path = "tiercache/rng.rs"]
mod rng;
#[path = "tiercache/table.rs"]
mod table;
#[path = "tiercache/text.rs"]
mod text;
#[path = "tiercache/workload.rs"]
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The error type of the binary: every failure ends as one `error: ...` line.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tiered (memory LRU + gzip disk) response cache for LLM answers.
#[derive(Debug, Parser)]
#[command(name = "tiercache", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an agent-backend workload (simulated model latency) and show what the cache saves.
    Demo(DemoArgs),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Cache directory (created if missing; kept afterwards). Default: a temporary directory
    /// removed at exit.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Requests in the whole run (half before the restart, half after).
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
          value_parser = clap::value_parser!(u64).range(1..=workload::MAX_PROMPTS as u64))]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(demo::DemoOptions {
            dir: args.dir,
            requests: args.requests,
            workers: args.workers,
            seed: args.seed,
            prompts: args.prompts as usize,
            skew: args.skew,
            hot_bytes: args.hot_kib.saturating_mul(1024),
            time_scale: args.time_scale,
        })),
    }
}
