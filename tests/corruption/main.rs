//! Corruption, quarantine and hostile directories (issue 4): a corrupted, truncated, planted or
//! hostile file in the cache directory must never crash the cache, never be served and never
//! block a caller; it is quarantined with a reason, counted, and the read is a miss.
//!
//! - `fixtures`: the committed corpus in `quarantine-fixtures/` is what `corpus` generates, and
//!   every file in it, placed at its claimed key's path, is a miss quarantined under the
//!   manifest's reason, with exact per-reason counts.
//! - `sweep`: every truncation, every single-bit flip of header and key, thousands of seeded
//!   payload flips, on real entries of several sizes. All variants go through
//!   `format::decode`; a representative subset (every 5th truncation, every 3rd header/key
//!   bit, 300 payload flips of the 4 KiB entry) also goes through a real cache.
//! - `limits`: gzip bombs and oversize files, bounded before and while inflating.
//! - `collision`: a valid entry of one key planted at another key's path.
//! - `hostile`: symlinks, FIFOs, planted directories and foreign files.
//! - `versions`: newer format versions are misses and left in place.
//! - `verify_scan`: `answercache::verify::verify` over a mixed directory, repair, re-verify.
//! - `fuzz`: seeded random mutations (multi-byte writes, splices, length changes, resealed
//!   checksums) through `format::decode` and `verify`; `ANSWERCACHE_FUZZ_CASES` raises the count.
//!
//! Every cache here runs on a `ManualClock` at `support::NOW`, so quarantine names are exact.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking on the unexpected"
)]

mod collision;
mod corpus;
mod fixtures;
mod fuzz;
mod hostile;
mod limits;
mod support;
mod sweep;
mod verify_scan;
mod versions;
mod worked_example;
