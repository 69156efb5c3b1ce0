//! Adversary 18: the I1/I2 fix of cd4d82f (`WarmStore::write_fence` reads the fence first,
//! under the process's fence lock held inside the disk call and an exclusive `flock` on the
//! root directory, and writes only a larger one; `Freshness::persist_fence` takes any `Ok`,
//! also "the fence on disk was already at least this one", as persisted). Attacked with two
//! and three instances on one directory, same-millisecond clears, a fence write of another
//! instance (or process) that hangs holding the root lock, real child processes clearing at
//! once and killed (`SIGKILL`) inside a fence write, a fence read failing only inside the
//! write, and a directory planted at the fence path. See FINDINGS.md here.

mod concurrent;
mod covered;
mod held;
mod hostile;
mod procs;

use std::time::Duration;

use answercache::testing::TestDir;

pub use super::r15::{fence_on_disk, fence_unreadable, on_disk, open_manual, read, read_src};
pub use super::r16::RUN1_MS;
pub use super::r17::{fence_write_hangs, tick};

/// The settings of the real-time tests (r17's `quick`): short `io_timeout`, health and
/// recovery intervals.
pub fn quick(b: answercache::Builder) -> answercache::Builder {
    b.io_timeout(Duration::from_millis(200))
        .open_timeout(Duration::from_millis(200))
        .recovery_interval(Duration::from_millis(300))
        .health_interval(Duration::from_millis(300))
}

/// A disk-only instance on `dir` (its file system and clock), built by `edit`.
pub async fn open_disk(
    dir: &TestDir,
    edit: impl FnOnce(answercache::Builder) -> answercache::Builder,
) -> answercache::TieredCache {
    edit(dir.builder()).build().await.unwrap()
}

/// The temp files left behind: the files in `<root>/tmp` and the entry temp files in
/// `<root>/v2/ab/`, as paths relative to the root, sorted.
pub fn temp_files(dir: &TestDir) -> Vec<String> {
    answercache::testing::temp_files(dir.root())
}
