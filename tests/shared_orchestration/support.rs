//! The fixture: replicas (separate directories, one `MemoryShared`), server key names, entry
//! bytes for planting, and a log capture.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::testing::{MemoryShared, TestDir};
use answercache::warm::format::{self, EntryMeta};
use answercache::warm::layout::{hex, key_hash};
use answercache::{BreakerState, Builder, Encoding, SharedConfig, TieredCache};

/// The prefix every test replica uses.
pub const PREFIX: &str = "t";

/// One replica: its cache, and its directory (kept until the replica drops).
pub struct Replica {
    _dir: TestDir,
    pub cache: TieredCache,
}

impl std::ops::Deref for Replica {
    type Target = TieredCache;
    fn deref(&self) -> &TieredCache {
        &self.cache
    }
}

/// A replica on `server` with the shared settings `edit` makes and the builder `build`
/// makes, once its shared breaker has closed (the start-up `PING`).
pub async fn replica_with(
    server: &MemoryShared,
    edit: impl FnOnce(SharedConfig) -> SharedConfig,
    build: impl FnOnce(Builder) -> Builder,
) -> Replica {
    let dir = TestDir::new();
    let cache = build(
        dir.builder()
            .clock(clock())
            // These tests step a paused clock by the shared tier's timeouts (5 s, as long as
            // the default `io_timeout`) while the local disk's writes run on blocking threads
            // in real time: a write still in flight at such a step would be given up by the
            // watchdog (seen once in a full suite run, session 24:
            // `writes::a_del_kept_while_open_is_sent_once_the_breaker_closes`, `close` →
            // `NotPersisted`). No test here is about the disk's timeout.
            .io_timeout(Duration::from_secs(3600))
            .shared(edit(server.config().prefix(PREFIX))),
    )
    .build()
    .await
    .unwrap();
    settle().await;
    assert_eq!(cache.shared_state(), Some(BreakerState::Closed));
    Replica { _dir: dir, cache }
}

/// A replica with the default shared settings.
pub async fn replica(server: &MemoryShared) -> Replica {
    replica_with(server, |c| c, |b| b).await
}

/// Lets the background tasks run (no time passes on the paused clock unless they sleep).
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The server key of `key`'s entry.
pub fn entry_key(key: &[u8]) -> String {
    format!("{PREFIX}:v1:e:{}", hex(&key_hash(key)))
}

/// The server key of `key`'s lease.
pub fn lease_key(key: &[u8]) -> String {
    format!("{PREFIX}:v1:lease:{}", hex(&key_hash(key)))
}

/// The server key of namespace `name`'s generation.
pub fn generation_key(name: &str) -> String {
    format!("{PREFIX}:v1:{{nsgen}}:{name}")
}

/// A valid entry file of `key` holding `value` (raw bytes).
pub fn entry(key: &[u8], value: &[u8], created_ms: u64, expires_ms: u64, cost: u64) -> Vec<u8> {
    let meta = EntryMeta {
        created_ms,
        expires_ms,
        cost,
        encoding: Encoding::Raw,
    };
    format::encode(key, value, meta, 6).unwrap()
}

thread_local! {
    /// The clock of this test's replicas (each test runs on a thread of its own, in a
    /// current-thread runtime): one clock, so that times written by one replica and planted
    /// by the test compare exactly.
    static CLOCK: std::cell::OnceCell<Arc<answercache::TokioClock>> = const { std::cell::OnceCell::new() };
}

/// The clock of this test's replicas (made on first use, inside the test's runtime).
pub fn clock() -> Arc<answercache::TokioClock> {
    CLOCK.with(|c| {
        c.get_or_init(|| Arc::new(answercache::TokioClock::new()))
            .clone()
    })
}

/// The replicas' clock now (unix ms; follows tokio's paused clock).
pub fn now_ms() -> u64 {
    answercache::clock::Clock::now_ms(&*clock())
}

/// Captured log lines of the current thread (a current-thread runtime: the tasks too).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures every event from now on until the guard drops.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(sub))
    }

    /// The lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Seconds.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
