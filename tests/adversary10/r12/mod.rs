//! Adversary 12: the shared tier after session 13's fixes (`Flights`: taken/sent per key, a
//! lease leader superseding an older taken operation or waiting for a sent one, removals kept
//! for values not written, `close` sending deferred removals) against the promises of README
//! "Shared tier", RELIABILITY.md and SHARED_TIER.md.
//!
//! Findings are the `#[ignore = "FINDING Sn: ..."]` tests, listed in FINDINGS.md here. All
//! tests use `testing::MemoryShared` on tokio's paused clock (deterministic).

mod close;
pub(crate) mod leader;
mod threads;
mod window;

pub use super::r11::{fresh_read, held, incompressible, text};
