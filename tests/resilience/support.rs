//! Fixture for resilience tests: caches on a [`TestDir`] with a fault-injecting fs, with every
//! timer set explicitly so tests on tokio's paused clock know exactly what runs when.

use std::time::Duration;

pub use answercache::testing::TestDir;
use answercache::testing::{Fault, FsOp, Rule};
use answercache::{Builder, TieredCache, WritePolicy};

pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;
pub const EFBIG: i32 = 27;

pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// A directory whose caches run on a fault-injecting fs (no rules yet).
pub fn dir() -> TestDir {
    TestDir::new().fault_fs()
}

/// Deterministic timers: no health check, sweep or recovery probe unless a test asks for
/// one; write-through so every `set` is exactly one disk write.
pub fn timers(b: Builder) -> Builder {
    b.write_policy(WritePolicy::WriteThrough)
        .health_interval(DAY)
        .sweep_interval(DAY)
        .recovery_interval(DAY)
        .memory_only_after(1_000)
        .io_timeout(Duration::from_millis(500))
}

/// Opens a cache on `t` with [`timers`] and then `edit`'s settings, and waits for the startup
/// scan, so that its disk calls cannot interleave with a test.
pub async fn open(t: &TestDir, edit: impl FnOnce(Builder) -> Builder) -> TieredCache {
    let cache = t.open(edit(timers(t.builder()))).await;
    for _ in 0..1000 {
        if cache.stats().warm_index_complete {
            return cache;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("startup scan did not finish");
}

/// Every call of `ops` fails with `errno` from now on.
pub fn fail(t: &TestDir, ops: &[FsOp], errno: i32) {
    t.fs().add_rule(Rule::new(Fault::Errno(errno)).ops(ops));
}

/// Lets background tasks and blocking calls run to quiescence without moving the clock far.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[allow(
    unused_imports,
    reason = "tests/events includes this file and does not use it"
)]
pub use answercache::testing::disk_errors as errors;

/// Lets ready tasks run without moving the clock.
pub async fn spin() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Yields (without moving the paused clock) until `cond` holds; blocking-pool threads start in
/// real time, so this is bounded in real time (10 s), not by a yield count.
pub async fn spin_until(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 10 s"
        );
        tokio::task::yield_now().await;
    }
}

/// The result of a write-through `set` (or `remove`) whose write failed or was skipped: it
/// reports exactly one entry not persisted (the value is still served from memory).
#[track_caller]
pub fn not_persisted<T: std::fmt::Debug>(r: answercache::Result<T>) {
    match r {
        Err(answercache::Error::NotPersisted { failed: 1, .. }) => {}
        other => panic!("expected NotPersisted {{ failed: 1 }}, got {other:?}"),
    }
}

/// The result of a write-through `set` under random faults: `true` if it reached the disk,
/// `false` if it reported not persisted; any other error fails the test.
#[track_caller]
pub fn persisted(r: answercache::Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(answercache::Error::NotPersisted { failed: 1, .. }) => false,
        Err(e) => panic!("a write-through set failed with {e:?}"),
    }
}
