//! Adversary 2: tries to break the newest promises (directory lock, born_ms eviction,
//! stranded entries, flush, clear, fence at open).

#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../adversary/helpers.rs"]
mod helpers;

mod t;
