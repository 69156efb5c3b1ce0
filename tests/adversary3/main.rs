//! Adversary 3: tries to break the promises of issue 12 ("Values agent backends cache") with
//! real restarts (close + reopen, drop without close), real concurrency (multi-thread
//! runtimes, many tasks), hostile and old files, and the values real users store. See
//! FINDINGS.md for what broke.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../adversary/helpers.rs"]
mod helpers;

mod bincode_codec;
mod flights;
mod json_codec;
mod namespaces;
mod planted;
mod support;
mod tiers;
