//! The log events a scripted outage emits, with their targets, levels and fields: what an
//! operator's subscriber sees and filters on (`RUST_LOG=answercache::degraded=warn`, a log
//! pipeline alerting on "disk abandoned"). Recorded on the old code like the golden
//! transcripts.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::testing::FsOp;
use answercache::Mode;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::support::*;

/// Records the crate's events emitted on one thread (the runtime's): blocking-pool threads
/// log in real time, in an order that changes from run to run.
#[derive(Clone)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    /// The distinct spans entered: `LEVEL target name`.
    spans: Arc<Mutex<std::collections::BTreeSet<String>>>,
    thread: std::thread::ThreadId,
}

impl Capture {
    /// Whether an event is recorded: one of the runtime's thread, or one of an entry write
    /// (in its `write` span), on whichever thread it runs (since sessions 23 and 24 the
    /// blocking thread completes the write and reports it; its job completes, and the
    /// awaiting `flush` or `set` resumes, only after these events).
    fn counts<S>(&self, ctx: &Context<'_, S>) -> bool
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        std::thread::current().id() == self.thread
            || ctx.lookup_current().is_some_and(|span| {
                span.scope()
                    .any(|s| s.name() == "write" && s.metadata().target() == "answercache::writer")
            })
    }
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S> Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: Context<'_, S>,
    ) {
        let meta = attrs.metadata();
        if meta.target().starts_with("answercache") {
            let line = format!("{} {} {}", meta.level(), meta.target(), meta.name());
            self.spans.lock().unwrap().insert(line);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("answercache") || !self.counts(&ctx) {
            return;
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        fields.0.sort();
        let mut line = format!("{} {}:", meta.level(), meta.target());
        for (k, v) in fields.0 {
            write!(line, " {k}={v}").unwrap();
        }
        self.lines.lock().unwrap().push(line);
    }
}

/// Open, write, an outage (breaker, memory-only), recovery and its write-back, close: every
/// event of the crate, in order, with its target. Runs in a child process of its own, with a
/// global subscriber: a thread-local one misses events whose callsites other tests (threads
/// without a subscriber) registered first.
#[test]
fn log_events_of_an_outage() {
    const CHILD: &str = "ADV4_LOGS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let capture = Capture {
            lines: Arc::default(),
            spans: Arc::default(),
            thread: std::thread::current().id(),
        };
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(capture.clone()),
        )
        .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(outage(capture));
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "logs::log_events_of_an_outage",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 passed"), "{stdout}");
}

async fn outage(capture: Capture) {
    let env = Env::new();
    let mut t = Transcript::new(&env, "logs");
    let b = env
        .builder()
        .failure_threshold(2)
        .memory_only_after(3)
        .error_window(Duration::from_secs(600))
        .open_timeout(Duration::from_secs(1))
        .max_open_timeout(Duration::from_secs(1))
        .recovery_interval(Duration::from_secs(30));
    // A damaged fence file: warned about at open.
    std::fs::write(env.root.join("fence"), b"not a fence").unwrap();
    let cache = env.open(b).await;
    cache.set("a", &1).await.unwrap();
    cache.flush().await.unwrap();
    env.fail(&[FsOp::WriteNew], EIO);
    for i in 0..3 {
        cache.set(format!("k{i}"), &i).await.unwrap();
        let _ = cache.flush().await;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        settle().await;
    }
    t.line("mode", cache.mode());
    let _ = cache.get::<u32>("missing").await;
    // A recovery probe that fails, then one that passes.
    tokio::time::sleep(Duration::from_secs(31)).await;
    settle().await;
    env.fs.clear_rules();
    tokio::time::sleep(Duration::from_secs(31)).await;
    spin_until(|| cache.mode() == Mode::Tiered).await;
    cache.flush().await.unwrap();
    settle().await;
    cache.close().await.unwrap();
    for line in capture.lines.lock().unwrap().iter() {
        t.line("event", line);
    }
    for line in capture.spans.lock().unwrap().iter() {
        t.line("span", line);
    }
    t.finish();
}
