//! Adversary 14: "encode once" (b50c44e, d0b8409; SHARED_TIER.md section 3): one
//! `EncodedEntry` cell shared by a `set`'s disk write and its shared write, the shared drain
//! encoding through the warm store's encoder, a lease leader sharing its local store's
//! metadata and cell, a promoted shared hit written to disk as the bytes read. Attacked with
//! replicas reopened on their own directory, hostile server values, a sick disk
//! (`FaultFs`), multi-thread storms and `clear`s. See FINDINGS.md here.

mod accounting;
mod fence;
mod hostile;
mod leader;
mod liveness;
mod storms;

use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};
use answercache::{BreakerState, Builder, SharedConfig, TieredCache};

pub use super::r11::{fresh_read, held, incompressible, text};
use crate::mem::*;

/// A replica on `server` over `dir` (its own directory, reopenable; its `FaultFs` when the
/// directory has one), once its shared breaker has closed.
pub async fn open_on(
    dir: &TestDir,
    server: &MemoryShared,
    edit: impl FnOnce(SharedConfig) -> SharedConfig,
    build: impl FnOnce(Builder) -> Builder,
) -> TieredCache {
    let cache = build(
        dir.builder()
            .clock(clock())
            .shared(edit(server.config().prefix(PREFIX))),
    )
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

/// A replica with the default settings over `dir`.
pub async fn open_plain(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    open_on(dir, server, |c| c, |b| b).await
}

/// What `cache` serves for `key`, as text.
pub async fn read(cache: &TieredCache, key: &str) -> Option<String> {
    text(cache.get_bytes(key).await.unwrap())
}

/// The entry file of `key` on `dir`'s disk (`None`: absent).
pub fn disk_file(dir: &TestDir, key: &[u8]) -> Option<Vec<u8>> {
    use answercache::warm::layout::{key_hash, Layout};
    std::fs::read(Layout::new(dir.root()).entry_path(&key_hash(key))).ok()
}

/// The decoded value and creation time of `key`'s entry file on `dir`'s disk.
pub fn on_disk(dir: &TestDir, key: &[u8]) -> Option<(String, u64)> {
    disk_file(dir, key).map(|f| {
        let d = answercache::warm::format::decode(&f, key, &Default::default()).unwrap();
        (
            String::from_utf8_lossy(&d.value).into_owned(),
            d.meta.created_ms,
        )
    })
}

/// `(ok, failed, dropped)` of the shared writes.
pub fn shared_writes(cache: &TieredCache) -> (u64, u64, u64) {
    let s = cache.stats();
    (
        s.shared_writes_ok,
        s.shared_writes_failed,
        s.shared_writes_dropped,
    )
}

/// What `cache` serves for `key`, as text, with the tier it came from.
pub async fn read_src(cache: &TieredCache, key: &str) -> Option<(String, answercache::Source)> {
    cache
        .get_bytes_answer(key)
        .await
        .unwrap()
        .map(|a| (String::from_utf8_lossy(&a.value).into_owned(), a.source))
}
