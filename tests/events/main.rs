//! Tracing events: exactly one event per state transition, never one per call. LiteLLM's
//! breaker logged a traceback per request while open; these tests count the events.
//!
//! They live in their own test binary, run one at a time, because tracing caches per call
//! site whether any subscriber is interested. In a binary where other tests drive the same
//! code concurrently, a call site first registered by another thread just before this test's
//! subscriber is installed can stay cached as "never" even after
//! `rebuild_interest_cache` (tracing-core registers a call site, then publishes it to the
//! list that a rebuild walks). Here no other thread emits events while a test counts them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure with its location"
)]

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use answercache::testing::FsOp;
use answercache::{BreakerConfig, BreakerState, CircuitBreaker, Mode};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[allow(dead_code, reason = "shared fixture; this binary uses part of it")]
#[path = "../resilience/support.rs"]
mod support;

use support::{dir, fail, open, EIO};

/// Serializes the tests of this binary (see the module docs).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Captured {
    level: Level,
    fields: Vec<(String, String)>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Records every event at INFO or above with its fields.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Captured>>>);

impl Events {
    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
}

impl<S: Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level <= Level::INFO {
            let mut fields = Vec::new();
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(Captured { level, fields });
        }
    }
}

/// Installs a capturing subscriber for this thread and recomputes tracing's interest cache.
fn capture() -> (Events, tracing::subscriber::DefaultGuard) {
    let events = Events::default();
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    tracing::callsite::rebuild_interest_cache();
    (events, guard)
}

#[test]
fn breaker_one_event_per_transition_and_none_per_call() {
    let _serial = one_at_a_time();
    let (events, _guard) = capture();
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig {
        failure_threshold: 3,
        half_open_max: 1,
        ..BreakerConfig::default()
    });
    let admit = |b: &mut CircuitBreaker, now| b.try_acquire(now).0.expect("admitted");
    // Calls that make no transition: no events.
    for _ in 0..50 {
        let p = admit(&mut b, t0);
        b.on_success(p, t0);
    }
    for _ in 0..2 {
        let p = admit(&mut b, t0);
        b.on_failure(p, t0);
    }
    assert_eq!(events.take(), vec![]);
    let p = admit(&mut b, t0);
    b.on_failure(p, t0); // Closed -> Open
    for _ in 0..50 {
        assert!(b.try_acquire(t0).0.is_err());
        b.poll(t0);
    }
    let t = t0 + Duration::from_secs(30);
    let p = admit(&mut b, t); // Open -> HalfOpen
    b.poll(t);
    b.on_success(p, t); // HalfOpen -> Closed
    assert_eq!(b.transitions(), 3);

    let got = events.take();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].level, Level::WARN);
    assert_eq!(got[0].field("from"), Some("closed"));
    assert_eq!(got[0].field("to"), Some("open"));
    assert_eq!(got[0].field("open_timeout_ms"), Some("30000"));
    assert_eq!(got[1].level, Level::INFO);
    assert_eq!(got[1].field("from"), Some("open"));
    assert_eq!(got[1].field("to"), Some("half-open"));
    assert_eq!(got[1].field("open_timeout_ms"), None);
    assert_eq!(got[2].level, Level::INFO);
    assert_eq!(got[2].field("from"), Some("half-open"));
    assert_eq!(got[2].field("to"), Some("closed"));
}

#[test]
fn cache_one_event_per_transition_whatever_the_traffic() {
    let _serial = one_at_a_time();
    let (events, _guard) = capture();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(cache_events(events));
}

async fn cache_events(events: Events) {
    let t = dir();
    let cache = open(&t, |b| b.failure_threshold(3).memory_only_after(5)).await;
    events.take(); // drop the "opened" event
    fail(&t, &[FsOp::WriteNew, FsOp::ReadFile], EIO);
    // 3 failures open the breaker (one event); then 5,000 calls are rejected silently.
    // Write-through: each set reports that its write did not reach the disk.
    for i in 0..3 {
        assert!(cache.set(format!("k{i}"), &i).await.is_err());
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    for i in 0..2500 {
        assert!(cache.set(format!("k{i}"), &i).await.is_err());
        cache.get::<i32>(format!("other{i}")).await.unwrap();
    }
    let got = events.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].level, Level::WARN);
    assert_eq!(got[0].field("message"), Some("disk circuit breaker opened"));
    assert_eq!(got[0].field("to"), Some("open"));
    assert_eq!(cache.stats().breaker_transitions, 1);
    assert_eq!(cache.stats().mode, Mode::Tiered);
}

/// A stored value that does not decode as the requested type warns once per type, however
/// often it is read; a loaded value the codec cannot encode, once per type too.
#[test]
fn decode_misses_and_unencodable_values_warn_once_per_type() {
    let _serial = one_at_a_time();
    let (events, _guard) = capture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = answercache::testing::TestCache::new().await;
        cache.set("k", "text").await.unwrap();
        for _ in 0..5 {
            assert_eq!(cache.get::<u64>("k").await.unwrap(), None);
            assert_eq!(cache.get::<Vec<u8>>("k").await.unwrap(), None);
        }
        for _ in 0..3 {
            let nan = cache
                .get_or_insert_with("nan", || async { Ok::<_, std::io::Error>(f64::NAN) })
                .await
                .unwrap();
            assert!(nan.is_nan());
        }
        let s = cache.stats();
        assert_eq!((s.decode_misses, s.unencodable), (10, 3));
        cache.close().await.unwrap();
    });
    let warns: Vec<Captured> = events
        .take()
        .into_iter()
        .filter(|e| e.level == Level::WARN)
        .collect();
    let types: Vec<Option<&str>> = warns.iter().map(|e| e.field("type_name")).collect();
    assert_eq!(
        types,
        [
            Some("\"u64\""),
            Some("\"alloc::vec::Vec<u8>\""),
            Some("\"f64\"")
        ],
        "{warns:?}"
    );
}

/// Dropping the last handle without `close` warns once, with the number of writes not on
/// disk: they are left to background tasks that stop with the runtime. No warning while a
/// clone lives, after `close`, or when nothing is pending.
#[test]
fn dropping_the_last_handle_without_close_warns_with_the_writes_pending() {
    let _serial = one_at_a_time();
    let (events, _guard) = capture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let warnings = |events: &Events| -> Vec<Captured> {
            events
                .take()
                .into_iter()
                .filter(|e| e.level == Level::WARN)
                .collect()
        };
        let t = dir();
        let cache = open(&t, |b| b.failure_threshold(100).memory_only_after(100)).await;
        fail(&t, &[FsOp::WriteNew], EIO);
        for i in 0..5 {
            // Write-through: each write fails, each value stays in memory (dirty).
            assert!(matches!(
                cache.set(format!("k{i}"), &i).await,
                Err(answercache::Error::NotPersisted { .. })
            ));
        }
        assert_eq!(cache.stats().dirty_entries, 5);
        events.take();
        let clone = cache.clone();
        drop(cache);
        assert_eq!(warnings(&events), vec![], "a clone still holds the cache");
        drop(clone);
        let got = warnings(&events);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].field("pending_writes"), Some("5"));
        assert_eq!(got[0].field("queued"), Some("0"));
        assert_eq!(
            got[0].field("message"),
            Some("the last handle was dropped without close: writes not on disk are left to background tasks, which stop with the runtime; call close to wait for them")
        );

        // Closed first: no warning.
        let t2 = dir();
        let cache = open(&t2, |b| b).await;
        cache.set("k", &1).await.unwrap();
        cache.close().await.unwrap();
        events.take();
        drop(cache);
        assert_eq!(warnings(&events), vec![]);

        // Nothing pending: no warning.
        let t3 = dir();
        let cache = open(&t3, |b| b).await;
        cache.set("k", &1).await.unwrap();
        cache.flush().await.unwrap();
        events.take();
        drop(cache);
        assert_eq!(warnings(&events), vec![]);
    });
}
