//! The demo's live log: the library's own state-change events, printed as they happen.
//!
//! Why a tracing subscriber and not polling `stats()`: the library emits exactly one event per
//! state change (breaker transition, switch to memory-only, recovery, write-back, quarantine),
//! so subscribing shows every change in order, including the ones that come and go between two
//! polls (an `open -> half-open -> open` cycle takes microseconds when a call is waiting).
//! The subscriber is minimal (no `tracing-subscriber` in the binary's dependencies): it takes
//! events from `answercache` at info level and above, plus the one debug event that says a
//! recovery probe failed, turns each into a line and queues it; [`Live::flush`] prints the
//! queue above the progress bar. Nothing is printed while a library lock is held.
//!
//! A small poller ([`Live::watch`]) adds what has no event: the requests still being answered
//! while the cache is memory-only, and the end of the write-back.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use answercache::{Mode, TieredCache};
use indicatif::ProgressBar;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::{Event, Level, Metadata, Subscriber};

use super::report::Tally;
use crate::table;

/// Counts of the events seen, for the final table.
#[derive(Debug, Default)]
pub struct EventCounts {
    /// Switches to memory-only mode.
    pub memory_only: AtomicU64,
    /// Recoveries (back to tiered mode after a passing probe).
    pub recoveries: AtomicU64,
    /// Recovery probes that failed.
    pub probes_failed: AtomicU64,
    /// Files quarantined.
    pub quarantined: AtomicU64,
    /// Shared-tier breaker transitions, by `from -> to` (every replica's together).
    pub shared_changes: Mutex<BTreeMap<String, u64>>,
}

impl EventCounts {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// The shared-tier breaker transitions seen so far, by `from -> to`.
    pub fn shared_changes(&self) -> BTreeMap<String, u64> {
        lock(&self.shared_changes).clone()
    }

    fn shared_change(&self, from: &str, to: &str) {
        *lock(&self.shared_changes)
            .entry(format!("{from} -> {to}"))
            .or_default() += 1;
    }
}

/// Where the demo's narrative goes, and the queue of live lines.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    /// Narrative on stderr (with `--json`, stdout carries only the JSON document).
    to_stderr: bool,
    queue: Mutex<Vec<String>>,
    bar: Mutex<Option<ProgressBar>>,
    /// Events seen so far.
    pub counts: EventCounts,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Live {
    /// A live log; call [`Live::install`] to receive the library's events.
    pub fn new(to_stderr: bool) -> Arc<Live> {
        Arc::new(Live {
            started: Instant::now(),
            to_stderr,
            queue: Mutex::new(Vec::new()),
            bar: Mutex::new(None),
            counts: EventCounts::default(),
        })
    }

    /// Makes this log the process's tracing subscriber. Returns false if another subscriber
    /// was installed first (the demo then runs without live events).
    pub fn install(self: &Arc<Live>) -> bool {
        tracing::subscriber::set_global_default(EventSink(self.clone())).is_ok()
    }

    /// Prints a narrative line now (after the queued live lines, keeping the order).
    pub fn say(&self, line: impl AsRef<str>) {
        self.flush();
        self.print(line.as_ref());
    }

    fn print(&self, line: &str) {
        let out = || {
            if self.to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        };
        match lock(&self.bar).as_ref() {
            Some(bar) => bar.suspend(out),
            None => out(),
        }
    }

    /// Queues a live line, stamped with the time since the demo started.
    pub fn note(&self, line: impl fmt::Display) {
        let t = self.started.elapsed().as_secs_f64();
        lock(&self.queue).push(format!("  [{t:>7.3} s] {line}"));
    }

    /// Prints the queued live lines.
    pub fn flush(&self) {
        let lines = std::mem::take(&mut *lock(&self.queue));
        for l in lines {
            self.print(&l);
        }
    }

    /// The progress bar live lines are printed above (`None` between phases).
    pub fn set_bar(&self, bar: Option<ProgressBar>) {
        *lock(&self.bar) = bar;
    }

    /// Polls `cache` every 25 ms, printing the queued events and what has no event of its own,
    /// until the returned guard is dropped.
    pub fn watch(self: &Arc<Live>, cache: &TieredCache, tally: Arc<Tally>) -> WatchGuard {
        let stop = Arc::new(AtomicBool::new(false));
        let (live, cache, stop2) = (self.clone(), cache.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut w = Watcher::new(&cache);
            while !stop2.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(25)).await;
                w.poll(&live, &cache, &tally);
                live.flush();
            }
        });
        WatchGuard {
            stop,
            task: Some(task),
            live: self.clone(),
        }
    }

    fn on_event(&self, level: Level, f: Fields) {
        let c = &self.counts;
        let get = |k: &str| f.0.get(k).cloned().unwrap_or_default();
        let message = get("message");
        let line = match message.as_str() {
            "answercache opened" | "answercache closed" => return,
            "disk circuit breaker opened" => {
                format!(
                    "breaker {} -> OPEN: disk calls refused for {} ms",
                    get("from"),
                    get("open_timeout_ms")
                )
            }
            "disk circuit breaker state changed" => {
                let to = get("to");
                let why = match to.as_str() {
                    "half-open" => ": the timer lets one trial call through",
                    "closed" => ": disk calls admitted again",
                    _ => "",
                };
                format!("breaker {} -> {}{why}", get("from"), to.to_uppercase())
            }
            "disk abandoned: switched to memory-only mode with a doubled hot budget" => {
                c.memory_only.fetch_add(1, Ordering::Relaxed);
                let bytes = get("hot_capacity_bytes").parse().unwrap_or(0);
                let window = get("window_ms").parse().unwrap_or(0);
                format!(
                    "MEMORY-ONLY: {} disk errors within {}: disk abandoned, hot budget doubled to {}; requests are served from memory",
                    get("errors"),
                    table::duration(Duration::from_millis(window)),
                    table::bytes(bytes)
                )
            }
            "recovery probe failed; staying memory-only" => {
                c.probes_failed.fetch_add(1, Ordering::Relaxed);
                "recovery probe FAILED (write/fsync/read-back on the disk): staying memory-only"
                    .to_owned()
            }
            "disk recovered: back to tiered mode" => {
                c.recoveries.fetch_add(1, Ordering::Relaxed);
                "recovery probe PASSED -> TIERED: breaker reset to closed, the disk is back in use"
                    .to_owned()
            }
            "dirty entries queued for write-back" => {
                let n: u64 = get("queued").parse().unwrap_or(0);
                format!("write-back: {n} entries set while the disk was away queued for the disk")
            }
            "shared tier circuit breaker opened: serving from the local tiers only" => {
                c.shared_change(&get("from"), "open");
                let cause = get("cause");
                format!(
                    "shared breaker {} -> OPEN{}: this replica serves from its local tiers; PING again in {} ms",
                    get("from"),
                    if cause.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", super::shorten(&cause, 60))
                    },
                    get("open_timeout_ms")
                )
            }
            "shared tier circuit breaker state changed" => {
                let (from, to) = (get("from"), get("to"));
                c.shared_change(&from, &to);
                let why = match to.as_str() {
                    "half-open" => ": the timer lets one PING through",
                    "closed" => ": the server answers PING; this replica shares answers",
                    _ => "",
                };
                format!("shared breaker {from} -> {}{why}", to.to_uppercase())
            }
            "corrupted entry quarantined" => {
                c.quarantined.fetch_add(1, Ordering::Relaxed);
                format!(
                    "QUARANTINED ({}): {}; moved to quarantine/{}",
                    get("reason"),
                    get("detail"),
                    shorten_name(&get("quarantined_as"))
                )
            }
            _ if level == Level::DEBUG || level == Level::TRACE => return,
            _ => {
                let rest: Vec<String> =
                    f.0.iter()
                        .filter(|(k, _)| k.as_str() != "message")
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                format!("{level} {message} {}", rest.join(" "))
            }
        };
        self.note(line);
    }
}

/// `<time>-<reason>-<64 hex>` with the hex shortened to 12 characters.
fn shorten_name(name: &str) -> String {
    match name.len() {
        n if n > 60 => format!("{}...", &name[..n - 52]),
        _ => name.to_owned(),
    }
}

/// Stops the poller (and prints what it queued) when dropped or finished.
pub struct WatchGuard {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
    live: Arc<Live>,
}

impl WatchGuard {
    /// Stops the poller and prints the remaining lines.
    pub async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.live.flush();
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the poller remembers between two polls.
struct Watcher {
    base_hot_bytes: u64,
    mode: Mode,
    /// Requests answered when the last memory-only status line was printed, and when.
    last_report: (u64, u64, Instant),
    /// Set on recovery; cleared when the write-back is seen done.
    writing_back: bool,
}

impl Watcher {
    fn new(cache: &TieredCache) -> Watcher {
        let s = cache.stats();
        Watcher {
            base_hot_bytes: if s.mode == Mode::MemoryOnly {
                s.hot_capacity_bytes / 2
            } else {
                s.hot_capacity_bytes
            },
            mode: s.mode,
            last_report: (0, 0, Instant::now()),
            writing_back: false,
        }
    }

    fn poll(&mut self, live: &Live, cache: &TieredCache, tally: &Tally) {
        let s = cache.stats();
        let requests = tally.requests.load(Ordering::Relaxed);
        let calls = tally.model_calls.load(Ordering::Relaxed);
        if s.mode != self.mode {
            if s.mode == Mode::Tiered {
                self.writing_back = true;
            }
            self.mode = s.mode;
            self.last_report = (requests, calls, Instant::now());
        }
        if s.mode == Mode::MemoryOnly && self.last_report.2.elapsed() >= Duration::from_secs(1) {
            let (r0, c0, _) = self.last_report;
            let (served, model) = (requests - r0, calls - c0);
            // No line without traffic (between phases): there is nothing to show.
            if served > 0 {
                live.note(format!(
                "memory-only, still serving: {served} requests answered in the last second ({} from memory, {model} by the model and kept in memory); {} entries wait for the disk",
                    served - model,
                    s.dirty_entries
                ));
            }
            self.last_report = (requests, calls, Instant::now());
        }
        if self.writing_back
            && s.mode == Mode::Tiered
            && s.dirty_entries == 0
            && s.write_queue_depth == 0
            && s.hot_capacity_bytes == self.base_hot_bytes
        {
            self.writing_back = false;
            live.note(format!(
                "write-back done: nothing left only in memory (lost writes: {}); hot budget back to {}",
                s.lost_writes,
                table::bytes(s.hot_capacity_bytes)
            ));
        }
    }
}

/// An event's fields, as text.
#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// The tracing subscriber feeding [`Live`]: events only (spans are never enabled).
struct EventSink(Arc<Live>);

impl Subscriber for EventSink {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        // Debug for the failed-probe event; `on_event` drops the other debug events.
        m.is_event() && *m.level() <= Level::DEBUG && m.target().starts_with("answercache")
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::DEBUG)
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.on_event(*event.metadata().level(), fields);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}
