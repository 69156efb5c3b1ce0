//! Adversary 13: the per-key write ordering of d88c629/45ca310 (a lease leader stores its
//! answer locally first, `SharedQueue::mark_leader`/`take_for_leader`, then writes it inline
//! unless a `set`/`remove` of the key reached the shared queue since). All tests use
//! `testing::MemoryShared` on tokio's paused clock (deterministic). See FINDINGS.md.

mod leader;

pub use super::r11::{fresh_read, held, text};
