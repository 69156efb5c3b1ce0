//! Adversary 17: the H1 fix of 5d28383 (`Freshness::load_fence` reads a fence that reads as
//! damaged twice more, inside one disk call, before taking it as damaged) and the fence rules
//! of the same session (`fence_known`, `reads_shared`, `persist_fence` reading first while
//! unknown). Attacked with fence reads that return a flipped bit 2 and 3 times, a fence
//! damaged on disk without a clock step back, a re-read that hangs, the breaker's count of
//! the re-reads, two cache instances on one directory, and a fence write that hangs and lands
//! after a later `clear`. See FINDINGS.md here.

mod late;
mod overwrite;
mod reread;

use std::time::Duration;

use answercache::testing::{Fault, FsOp, Rule, TestDir};

pub use super::r15::{created_on_server, fence_on_disk, open_manual, read, read_src};
pub use super::r16::{fence_read_flips_a_bit, no_removals, run1, RUN1_MS};

/// Replaces the fence file on disk with `bytes` (bit rot, a stray write: damaged on disk,
/// every read returns the same).
pub fn damage_fence_on_disk(dir: &TestDir, bytes: &[u8]) {
    let path = answercache::warm::layout::Layout::new(dir.root()).fence_path();
    std::fs::write(path, bytes).unwrap();
}

/// The fence run 1 left on disk with one bit of its time flipped: 24 bytes, right magic, a
/// checksum that does not match.
pub fn flipped_fence(ms: u64) -> Vec<u8> {
    let mut f = answercache::warm::format::encode_fence(ms).to_vec();
    f[8] ^= 1 << 3;
    f
}

/// Every rename onto the fence hangs (once: `times`) until `FaultFs::release_hangs`.
pub fn fence_write_hangs(dir: &TestDir, times: u64) {
    dir.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::Rename])
            .path_contains("/fence")
            .times(times),
    );
}

/// Advances `dir`'s manual clock by `ms` milliseconds.
pub fn tick(dir: &TestDir, ms: u64) {
    dir.clock().advance(Duration::from_millis(ms));
}
