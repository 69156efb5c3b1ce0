//! Adversary 5: tries to break the promise of issue 16 ("Architecture: named parts") for the
//! one walk of the on-disk layout (`warm::walk`) and the restructured CLI: no behaviour change
//! of the library or of the operator commands on hostile directories. See FINDINGS.md.
//!
//! - `differential`: the binary of 2694034 (`OLD_TIERCACHE_BIN`) and the new one run every
//!   operator command on copies of the same hostile directory; outputs, exit statuses and the
//!   trees left must match (skipped with a reason under `CI=true` without the old binary).
//! - `library`: the startup scan's figures, `invalidate_if`, `clear` and `verify` on the same
//!   hostile trees, against transcripts recorded on 2694034 (`golden/lib_*.txt`).
//! - `races`: directories that vanish or are replaced while the walks run (`tamper`, an `Fs`
//!   that changes the tree on a chosen call), against transcripts recorded on 2694034.
//! - `cli_races`: `purge --expired` racing a writer, and every operator command on a layout
//!   that churns under it (real binaries, real concurrency).
//! - `trees`: the hostile directories and tree snapshots; `golden`: the transcripts.
//!
//! Every file here compiles against 2694034 too (only APIs both have), so that the transcripts
//! can be recorded there: copy this directory into a checkout of 2694034 and run
//! `ADV5_BLESS=1 cargo test --all-features --test adversary5`.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "cli")]
mod cli_races;
#[cfg(feature = "cli")]
mod differential;
mod golden;
mod library;
mod races;
mod tamper;
mod trees;
