//! Adversary 7: attacks the performance work of the one-shot inflater
//! (`warm::format::inflate_exact`), the in-place inflate of large warm entries
//! (`WarmStore::read_inline` + `block_in_place`), the compact warm index and the hot tier's
//! single-hash slab map. See FINDINGS.md for what fails and why.
//!
//! - `gzip`: hostile gzip members, resealed with a valid blake3 checksum so that they reach
//!   the inflater, through `format::decode` and through a live cache (miss + quarantine).
//! - `runtimes`: large warm reads from every kind of tokio context.
//! - `hot`: the hot tier under concurrency, against a model.
//! - `stepped`: the perf14 stepped inline inflate against races with writes, dropped gets
//!   and damaged entries (stepped/FINDINGS.md).
//! - `warm`: the warm index's budget, order, sweep and restart scan through the public API.
//! - `r21`: the 64 KiB inline inflate steps (`INLINE_STEP_BYTES` 32 -> 64 KiB) at their
//!   boundaries, between two steps, on a manual clock and outside the usual contexts
//!   (r21/FINDINGS.md).

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gzip;
mod hot;
mod r21;
mod runtimes;
mod stepped;
mod support;
mod warm;
