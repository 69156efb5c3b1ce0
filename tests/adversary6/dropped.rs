//! Dropped without close (issue 13): when the last handle drops without `close`, one WARN
//! event says how many writes are pending (`pending_writes`, `queued`). Each test runs in a
//! child process of its own with a global subscriber, so that events from other threads
//! (another task, another runtime) are seen and no other test's events are.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule, TestDir};
use answercache::{Mode, TieredCache};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::mounts::{is_child, run_child};
use crate::support::*;

/// A WARN event's fields.
type Warn = Vec<(String, String)>;

#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<Warn>>>);

struct Fields<'a>(&'a mut Warn);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() == Level::WARN {
            let mut f = Vec::new();
            event.record(&mut Fields(&mut f));
            self.0.lock().unwrap().push(f);
        }
    }
}

impl Warnings {
    fn install() -> Warnings {
        let w = Warnings::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(w.clone()))
            .unwrap();
        w
    }

    /// The drop warnings so far, as (pending_writes, queued); other warnings are dropped.
    fn drops(&self) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|f| {
                let get = |n: &str| f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                Some((get("pending_writes")?, get("queued")?))
            })
            .collect()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

macro_rules! in_child {
    ($name:literal) => {
        if !is_child($name) {
            run_child(concat!("dropped::", $name), $name);
            return;
        }
    };
}

/// Write-behind with a hung disk: five `set`s are queued behind one hung write. Dropping the
/// last handle warns once, with the five writes pending.
#[test]
fn queued_writes_behind_a_hung_disk() {
    in_child!("queued_writes_behind_a_hung_disk");
    let w = Warnings::install();
    rt().block_on(async {
        let d = dir().fault_fs();
        let cache = d.open(d.builder().write_concurrency(1)).await;
        d.fs()
            .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
        for i in 0..5u32 {
            cache.set(format!("k{i}"), &i).await.unwrap();
        }
        assert!(wait_until(Duration::from_secs(5), || d.fs().faults_injected() == 1).await);
        drop(cache);
        assert_eq!(w.drops(), vec![("5".into(), "5".into())]);
        d.fs().clear_rules();
    });
}

/// The same with a hot tier too small for any value (`hot_capacity_bytes(0)`: values are
/// served from the write queue until written). Five writes are still pending; the warning
/// must say so in `pending_writes`, the number the issue asks for.
#[test]
fn queued_writes_of_values_not_in_the_hot_tier() {
    in_child!("queued_writes_of_values_not_in_the_hot_tier");
    let w = Warnings::install();
    rt().block_on(async {
        let d = dir().fault_fs();
        let cache = d
            .open(d.builder().write_concurrency(1).hot_capacity_bytes(0))
            .await;
        d.fs()
            .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
        for i in 0..5u32 {
            cache.set(format!("k{i}"), &i).await.unwrap();
        }
        assert!(wait_until(Duration::from_secs(5), || d.fs().faults_injected() == 1).await);
        assert_eq!(cache.get::<u32>("k4").await.unwrap(), Some(4));
        drop(cache);
        let got = w.drops();
        d.fs().clear_rules();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "5", "pending_writes of {got:?}");
    });
}

/// During an outage (memory-only): two removes and three sets wait for the disk. Dropping
/// the last handle, moved into another task, warns once with the five.
#[test]
fn an_outage_dropped_in_another_task() {
    in_child!("an_outage_dropped_in_another_task");
    let w = Warnings::install();
    rt().block_on(async {
        let d = dir().fault_fs();
        let cache = d
            .open(
                d.builder()
                    .failure_threshold(1)
                    .memory_only_after(1)
                    .recovery_interval(Duration::from_secs(3600)),
            )
            .await;
        for i in 0..5u32 {
            cache.set(format!("k{i}"), &i).await.unwrap();
        }
        cache.flush().await.unwrap();
        d.fs().add_rule(Rule::new(Fault::Errno(EIO)));
        assert_eq!(cache.get::<u32>("absent").await.unwrap(), None);
        assert!(wait_until(Duration::from_secs(5), || cache.mode() == Mode::MemoryOnly).await);
        cache.remove("k0").await.unwrap();
        cache.remove("k1").await.unwrap();
        for i in 5..8u32 {
            cache.set(format!("k{i}"), &i).await.unwrap();
        }
        assert_eq!(cache.stats().dirty_entries, 5);
        tokio::spawn(async move { drop(cache) }).await.unwrap();
        assert_eq!(w.drops(), vec![("5".into(), "0".into())]);
    });
}

/// The last handle is dropped on another runtime's thread, and the last one of another cache
/// after its runtime has shut down (outside any runtime): each warns once, neither panics.
#[test]
fn dropped_on_another_runtime_and_after_shutdown() {
    in_child!("dropped_on_another_runtime_and_after_shutdown");
    let w = Warnings::install();
    // Declared after the runtime, so dropped (releasing hung calls) before it on a panic.
    let runtime = rt();
    let d = TestDir::new().fault_fs();
    let (a, b) = runtime.block_on(async {
        let a = d.open(d.builder().write_concurrency(1)).await;
        let b = d.open(d.builder().write_concurrency(1)).await;
        d.fs()
            .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
        a.set("a", &1u32).await.unwrap();
        b.set("b1", &1u32).await.unwrap();
        b.set("b2", &2u32).await.unwrap();
        (a, b)
    });
    let other = std::thread::spawn(move || {
        let rt2 = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt2.block_on(async move { drop(a) });
    });
    other.join().unwrap();
    assert_eq!(w.drops(), vec![("1".into(), "1".into())]);
    // Shut down with `b1`'s write still hung (`drop` would wait for the blocking thread, so
    // before session 24 the hang was released first; the blocking thread now completes the
    // write it runs, and `b1` would land, and `b2` after it, while the runtime shuts down).
    runtime.shutdown_background();
    assert_eq!(b.stats().dirty_entries, 2);
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(b)));
    assert!(dropped.is_ok());
    assert_eq!(w.drops().len(), 2, "{:?}", w.drops());
    assert_eq!(w.drops()[1].0, "2");
    d.fs().clear_rules();
}

/// A `Namespace` holds the cache: dropping the cache handle is not the last drop; dropping
/// the namespace is, and warns once.
#[test]
fn a_namespace_keeps_the_cache_alive() {
    in_child!("a_namespace_keeps_the_cache_alive");
    let w = Warnings::install();
    rt().block_on(async {
        let d = dir().fault_fs();
        let cache: TieredCache = d.open(d.builder().write_concurrency(1)).await;
        let ns = cache.namespace("docs").unwrap();
        ns.set("k", &1u32).await.unwrap();
        d.fs()
            .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
        ns.set("k2", &2u32).await.unwrap();
        drop(cache);
        assert_eq!(w.drops(), Vec::<(String, String)>::new());
        drop(ns);
        assert_eq!(w.drops().len(), 1, "{:?}", w.drops());
        d.fs().clear_rules();
    });
}
