//! Adversary 20: the K1 fix of 7ae3d62 (`WarmStore::fence_written` shared with `Freshness`;
//! `move_fence_past` moves past it). Attacked with a failed or given-up fence write of one
//! instance while another instance cleared in the same millisecond (one clear per
//! millisecond per instance: outside the documented limit of several clears in one ms).
//! See FINDINGS.md.

mod pending;

pub use super::r15::{fence_on_disk, on_disk, read};
pub use super::r16::RUN1_MS;
pub use super::r17::{fence_write_hangs, tick};
pub use super::r18::open_disk;
pub use super::r19::fence_becomes;
