//! Adversary 15: the E1 fix (`Freshness::may_predate_unknown_fence`: while the clear fence on
//! disk is unknown, a shared entry created before this cache opened is a miss) and the E3 fix
//! (only values over 4 KiB share an encoded cell; the shared drain compresses at the
//! configured level), commit 2c3da5f. Attacked with a clock stepped back across a restart,
//! `clear`s made while the fence is unknown, replicas on other directories, the lease path,
//! and boundary sizes (4096 / 4097 bytes, `compression_level(0)`, MAC keys, a value exactly at
//! the shared `max_entry_bytes`). See FINDINGS.md here.

mod boundary;
mod fence;
mod lease;
mod step_back;

use std::time::Duration;

use answercache::testing::{Fault, FsOp, MemoryShared, Rule, TestDir};
use answercache::{BreakerState, Builder, SharedConfig, TieredCache};

pub use super::r14::{disk_file, on_disk, open_on, open_plain, read, read_src, shared_writes};
use crate::mem::*;

/// A replica on `server` over `dir` with `dir`'s manual clock (and `FaultFs` when it has
/// one), once its shared breaker has closed. The manual clock does not move by itself; the
/// breaker's timers run on tokio's (paused) clock.
pub async fn open_manual(
    dir: &TestDir,
    server: &MemoryShared,
    edit: impl FnOnce(SharedConfig) -> SharedConfig,
    build: impl FnOnce(Builder) -> Builder,
) -> TieredCache {
    let cache = build(dir.builder().shared(edit(server.config().prefix(PREFIX))))
        .build()
        .await
        .unwrap();
    for _ in 0..200 {
        if cache.shared_state() == Some(BreakerState::Closed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(cache.shared_state(), Some(BreakerState::Closed));
    cache
}

/// Every read of `dir`'s fence file fails with EIO (`times`: only so many; `None`: all).
pub fn fence_unreadable(dir: &TestDir, times: Option<u64>) {
    let rule = Rule::new(Fault::Errno(5))
        .ops(&[FsOp::ReadFile])
        .path_contains("/fence");
    dir.fs().add_rule(match times {
        Some(n) => rule.times(n),
        None => rule,
    });
}

/// The fence on `dir`'s disk (ms), read with the library's decoder.
pub fn fence_on_disk(dir: &TestDir) -> Option<u64> {
    let path = answercache::warm::layout::Layout::new(dir.root()).fence_path();
    let bytes = std::fs::read(path).ok()?;
    answercache::warm::format::decode_fence(&bytes)
}

/// The creation time of `key`'s entry on the server.
pub fn created_on_server(server: &MemoryShared, key: &[u8]) -> Option<u64> {
    let raw = server.raw(&entry_key(key))?;
    Some(
        answercache::warm::format::decode(&raw, key, &Default::default())
            .unwrap()
            .meta
            .created_ms,
    )
}
