//! Adversary 19: the J1/J2 fix of cd4d82f/bfa1abf (`WarmStore::write_fence` writes one more
//! than a fence at or above its own that another writer wrote, leaves one "this process
//! already wrote" (`fence_written`, a high-water mark); `Freshness::persist_fence` raises the
//! in-memory fence to the one on disk). Attacked with a given-up fence write that lands
//! above this instance's fence (so `fence_written` runs ahead of what is persisted) followed
//! by another instance's clear, a fence damaged on disk after another instance's clears ran
//! ahead of the clock, another instance's clock-ahead fence vs this instance's later sets,
//! concurrent clears and sets of one instance, a fence deleted by hand, and a failed clear's
//! fence persisted later over another instance's ahead fence. See FINDINGS.md.

mod ahead;
mod damaged;
mod given_up;

use std::time::Duration;

use answercache::testing::TestDir;

pub use super::r15::{fence_on_disk, on_disk, read};
pub use super::r16::{no_removals, RUN1_MS};
pub use super::r17::{damage_fence_on_disk, fence_write_hangs, flipped_fence, tick};
pub use super::r18::{open_disk, quick};

/// Polls the fence on `dir`'s disk until it is `want` (at most 5 s of real time).
pub async fn fence_becomes(dir: &TestDir, want: u64) -> Option<u64> {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if fence_on_disk(dir) == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fence_on_disk(dir)
}
