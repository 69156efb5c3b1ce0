//! Adversary 16: the G1, G3 and G4 fixes of 980e1f7 (`Freshness::persist_fence` reads the
//! fence first while it is unknown and never writes over one it cannot read; the shared tier
//! is not read, and no lease taken, while the fence is unknown; `WarmStore::encodes_at_level`).
//! Attacked with a disk failing from the open then healing, a fence read that returns a
//! flipped bit once (`load_fence`'s "damaged" branch), a clock stepped back across a restart,
//! `clear`s while the fence is unreadable, a fence that cannot be written, and a fence read
//! that hangs. See FINDINGS.md here.

mod damaged;
mod recovered;
mod resume;

use std::time::Duration;

use answercache::testing::{Fault, FsOp, MemoryShared, Rule, TestDir};

pub use super::r15::{
    created_on_server, fence_on_disk, fence_unreadable, on_disk, open_manual, read, read_src,
};
use crate::mem::*;

/// Run 1's clock (ms), as in r15's `step_back`.
pub const RUN1_MS: u64 = 1_000_000;
/// The clock after a 30 s step back (within the 60 s a shared entry may be dated ahead).
pub const RUN2_MS: u64 = 970_000;

/// Run 1 on `dir` (manual clock at [`RUN1_MS`]): `set k` = "before the clear", shared and on
/// disk; 5 ms later `clear` (fence `RUN1_MS + 6`), `close` `Ok`. With `keep_file`, the entry
/// file cannot be deleted by the clear ("recorded by the fence: the files left are never
/// served") and stays on disk. Returns the fence on disk.
pub async fn run1(dir: &TestDir, server: &MemoryShared, keep_file: bool) -> u64 {
    let a = open_manual(dir, server, |c| c, |b| b).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(created_on_server(server, b"k"), Some(RUN1_MS));
    dir.clock().advance(Duration::from_millis(5));
    if keep_file {
        no_removals(dir);
    }
    a.clear().await.unwrap();
    assert_eq!(read(&a, "k").await, None);
    a.close().await.unwrap();
    dir.fs().clear_rules();
    let fence = fence_on_disk(dir).unwrap();
    assert_eq!(fence, RUN1_MS + 6);
    let file = on_disk(dir, b"k");
    if keep_file {
        assert_eq!(file, Some(("before the clear".to_owned(), RUN1_MS)));
    } else {
        assert_eq!(file, None);
    }
    assert_eq!(
        crate::r11::held(server, b"k"),
        Some("before the clear".to_owned())
    );
    fence
}

/// Entry files under `v2/` cannot be deleted (EIO); the fence can still be written.
pub fn no_removals(dir: &TestDir) {
    dir.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::RemoveFile, FsOp::RemoveDirAll])
            .path_contains("/v2/"),
    );
}

/// The next `times` reads of the fence return its bytes with one bit of the time flipped (a
/// flaky cable, controller or DMA: the file on the platter is intact). `load_fence` takes
/// that for a damaged fence.
pub fn fence_read_flips_a_bit(dir: &TestDir, times: u64) {
    dir.fs().add_rule(
        Rule::new(Fault::FlipBit(8 * 8 + 3))
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence")
            .times(times),
    );
}

/// Lets the paused clock run `secs` seconds, in one-second steps (timers of the recovery
/// task, the breaker and the shared tier fire in between).
pub async fn run_for(secs: u64) {
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
