//! The in-memory fixture: replicas on one `MemoryShared` with one tokio clock (paused in the
//! tests), server key names, and helpers to read the generation the server holds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};
use answercache::{BreakerState, Builder, TieredCache};

/// The prefix every replica uses.
pub const PREFIX: &str = "a9";

/// The server key of namespace `name`'s generation.
pub fn generation_key(name: &str) -> String {
    format!("{PREFIX}:v1:{{nsgen}}:{name}")
}

/// The generation the server holds for `name`.
pub fn on_server(server: &MemoryShared, name: &str) -> Option<u64> {
    let raw = server.raw(&generation_key(name))?;
    u64::from_str_radix(std::str::from_utf8(&raw).ok()?, 16).ok()
}

/// Puts generation `g` of `name` on the server (a restore of an older snapshot).
pub fn plant_generation(server: &MemoryShared, name: &str, g: u64) {
    server.plant(&generation_key(name), format!("{g:016x}").as_bytes(), None);
}

thread_local! {
    static CLOCK: std::cell::OnceCell<Arc<answercache::TokioClock>> =
        const { std::cell::OnceCell::new() };
}

/// The clock of this test's replicas (one per test thread; follows tokio's paused clock).
pub fn clock() -> Arc<answercache::TokioClock> {
    CLOCK.with(|c| {
        c.get_or_init(|| Arc::new(answercache::TokioClock::new()))
            .clone()
    })
}

/// Lets the background tasks run (no time passes on the paused clock unless they sleep).
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Sleeps `d` on the (paused) clock, then lets the tasks run.
pub async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
    settle().await;
}

/// Seconds.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Milliseconds.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A replica on `dir` (opened again when it was opened before), with `edit` applied to the
/// builder; waits for its shared breaker to close when the server answers.
pub async fn open_with(
    dir: &TestDir,
    server: &MemoryShared,
    edit: impl FnOnce(Builder) -> Builder,
) -> TieredCache {
    let cache = edit(
        dir.builder()
            .clock(clock())
            .shared(server.config().prefix(PREFIX)),
    )
    .build()
    .await
    .unwrap();
    settle().await;
    cache
}

/// A replica on `dir` with the default settings.
pub async fn open(dir: &TestDir, server: &MemoryShared) -> TieredCache {
    open_with(dir, server, |b| b).await
}

/// A replica in a fresh directory, its breaker closed; the directory goes with it.
pub struct Replica {
    pub _dir: TestDir,
    pub cache: TieredCache,
}

impl std::ops::Deref for Replica {
    type Target = TieredCache;
    fn deref(&self) -> &TieredCache {
        &self.cache
    }
}

/// A fresh replica on `server`, its breaker closed.
pub async fn replica(server: &MemoryShared) -> Replica {
    let dir = TestDir::new();
    let cache = open(&dir, server).await;
    assert_eq!(cache.shared_state(), Some(BreakerState::Closed));
    Replica { _dir: dir, cache }
}

/// The answer `cache` serves for `key` in namespace `ns`, as text.
pub async fn served(cache: &TieredCache, ns: &str, key: &str) -> Option<String> {
    cache
        .namespace(ns)
        .unwrap()
        .get_bytes(key)
        .await
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

/// Stores `value` for `key` in namespace `ns` and flushes it (to the disk and the server).
pub async fn store(cache: &TieredCache, ns: &str, key: &str, value: &str) {
    cache
        .namespace(ns)
        .unwrap()
        .set_bytes(key, value.as_bytes())
        .await
        .unwrap();
    cache.flush().await.unwrap();
}

/// The names in `<root>/nspending/` (sorted; empty when there is no such directory).
pub fn marker_files(root: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(root.join("nspending")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The marker file name of namespace `name` (its bytes in lowercase hex).
pub fn marker_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A marker's content.
pub fn marker_content(name: &str, g: u64) -> String {
    format!("{name}\n{g:016x}\n")
}
