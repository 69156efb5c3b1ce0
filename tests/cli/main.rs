//! The `answercache` binary as an operator and a newcomer use it (issue 8): every test runs the
//! built binary through `std::process::Command`, one process per command, on a temporary
//! cache directory, and reads what it prints and its exit status.
//!
//! - `entries`: `set` then `get` in two separate processes returns the bytes unchanged (raw
//!   bytes that read as JSON come back as their JSON text and a newline, and unchanged with
//!   `--raw`); misses, expired entries and removals exit 1; a missing directory or a bad
//!   argument exits 2 with the path and the cause; `purge --all` leaves suspect files.
//! - `errors`: under `--json` every error (usage errors included) is one
//!   `{"error": {"kind", "message", "path"}}` document on stdout with text mode's exit status.
//! - `ls`: every entry with exact sizes, times, encoding and key (escaped when not printable),
//!   corrupt files as corrupt with their reason, in hash order; an empty directory.
//! - `dry_run`: `purge --expired|--all --dry-run` and `quarantine clear [NAME] --dry-run`
//!   change no byte and report exactly what the real run then deletes.
//! - `verify`: planted corrupt files are each reported with their reason and exit status 1;
//!   `--repair` moves them to the quarantine and the next `verify` exits 0; `quarantine
//!   list|show|clear` then see exactly those files.
//! - `json`: `--json` output is one document serde_json parses, with exactly the documented
//!   fields, and carries the same numbers as the human tables.
//! - `values`: `get` prints every value stored through the typed API with the JSON codec (and
//!   raw bytes that read as JSON) as its JSON text, a version-1 value as its stored bytes, and
//!   refuses a bincode value (exit 2) unless `--raw` or `--json`; `--json` says the encoding.
//! - `demo`: the demo finishes with exit 0, and its final table reports at least one breaker
//!   opening, one recovery and one quarantined file (the `--json` document agrees).
//! - `replicas`: the demo's replicas phase against a real server: three replicas share
//!   answers, the throwaway server is killed -9 and restarted, 0 errors and 0 wrong answers,
//!   fewer model calls with sharing than without, shared hits; `--redis URL` is used and never
//!   killed; without a server on `PATH` the phase is skipped and the demo succeeds. Under
//!   `CI=true` a missing `redis-server` fails these tests instead of skipping them.
//!
//! The binary exists only with the `cli` feature (`cargo test --all-features`).

#![cfg(feature = "cli")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking on the unexpected"
)]

mod demo;
mod dry_run;
mod entries;
mod errors;
mod json;
mod ls;
mod replicas;
mod support;
mod values;
mod verify;
