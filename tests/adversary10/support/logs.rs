//! Counting the log events a scenario emits (§12: "log lines emitted, ≤ transitions + 1").
//!
//! One global subscriber, installed once, routes each event to the capture of the thread that
//! emitted it: the test's runtime registers its worker and blocking threads (and the thread
//! that calls `block_on`), so tests running in parallel each count their own cache's events.
//! A global subscriber, not a thread-local one: tracing caches per call site whether anyone is
//! interested, and a call site first hit on a thread without a subscriber would stay "never"
//! for a thread-local one (tests/events explains it). Only INFO and above are recorded; the
//! subscriber declares no interest in DEBUG and TRACE, so those call sites stay disabled.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One event.
#[derive(Debug, Clone)]
pub struct Captured {
    /// When it was recorded.
    pub at: Instant,
    /// Its level.
    pub level: Level,
    /// Its target (`answercache::shared`, ...).
    pub target: String,
    /// Its fields, `message` included, in order.
    pub fields: Vec<(String, String)>,
}

impl Captured {
    /// A field's value (`Debug` text).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `LEVEL target: k=v ...`, for messages and for text searches.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}:", self.level, self.target);
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }
}

type Sink = Arc<Mutex<Vec<Captured>>>;

fn routes() -> &'static Mutex<HashMap<ThreadId, Sink>> {
    static ROUTES: OnceLock<Mutex<HashMap<ThreadId, Sink>>> = OnceLock::new();
    ROUTES.get_or_init(Mutex::default)
}

struct Router;

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber> Layer<S> for Router {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if *meta.level() <= Level::INFO {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        *meta.level() <= Level::INFO
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let sink = routes()
            .lock()
            .ok()
            .and_then(|r| r.get(&std::thread::current().id()).cloned());
        let Some(sink) = sink else {
            return;
        };
        let meta = event.metadata();
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        let c = Captured {
            at: Instant::now(),
            level: *meta.level(),
            target: meta.target().to_owned(),
            fields,
        };
        let pushed = sink.lock().map(|mut s| s.push(c));
        drop(pushed);
    }
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Router))
            .expect("no other global subscriber in this binary");
        tracing::callsite::rebuild_interest_cache();
    });
}

/// The events of one test.
#[derive(Clone, Default)]
pub struct LogCapture {
    sink: Sink,
}

impl LogCapture {
    /// A capture; installs the global subscriber on first use.
    pub fn new() -> LogCapture {
        install();
        LogCapture::default()
    }

    /// Routes the current thread's events here until the guard drops.
    pub fn attach_current_thread(&self) -> ThreadGuard {
        let id = std::thread::current().id();
        routes()
            .lock()
            .expect("routes")
            .insert(id, self.sink.clone());
        ThreadGuard(id)
    }

    /// A multi-threaded runtime (2 workers, timers, I/O) whose threads report here.
    pub fn runtime(&self) -> tokio::runtime::Runtime {
        self.runtime_builder(true).build().expect("runtime")
    }

    /// A current-thread runtime (every task on the thread that calls `block_on`, which must
    /// be attached with [`attach_current_thread`](Self::attach_current_thread)).
    pub fn current_thread_runtime(&self) -> tokio::runtime::Runtime {
        self.runtime_builder(false).build().expect("runtime")
    }

    fn runtime_builder(&self, multi: bool) -> tokio::runtime::Builder {
        let mut b = if multi {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        let start = self.sink.clone();
        b.enable_all()
            .on_thread_start(move || {
                routes()
                    .lock()
                    .expect("routes")
                    .insert(std::thread::current().id(), start.clone());
            })
            .on_thread_stop(|| {
                if let Ok(mut r) = routes().lock() {
                    r.remove(&std::thread::current().id());
                }
            });
        b
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Captured> {
        self.sink.lock().expect("sink").clone()
    }

    /// Forgets the events so far.
    pub fn clear(&self) {
        self.sink.lock().expect("sink").clear();
    }

    /// The events whose target starts with `prefix`.
    pub fn with_target(&self, prefix: &str) -> Vec<Captured> {
        self.events()
            .into_iter()
            .filter(|e| e.target.starts_with(prefix))
            .collect()
    }

    /// The crate's events (target `answercache…`): the log lines of the §12 row.
    pub fn crate_events(&self) -> Vec<Captured> {
        self.with_target("answercache")
    }

    /// The shared tier's events (target `answercache::shared`).
    pub fn shared_events(&self) -> Vec<Captured> {
        self.with_target("answercache::shared")
    }

    /// The crate's WARN (and ERROR) events.
    pub fn crate_warnings(&self) -> Vec<Captured> {
        self.crate_events()
            .into_iter()
            .filter(|e| e.level <= Level::WARN)
            .collect()
    }
}

/// Detaches a thread from its capture.
pub struct ThreadGuard(ThreadId);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if let Ok(mut r) = routes().lock() {
            r.remove(&self.0);
        }
    }
}
