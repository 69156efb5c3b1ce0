//! `answercache demo`: an agent backend in front of a (simulated) LLM, with the cache between,
//! living through what a production cache lives through.
//!
//! The demo is a list of phases, each a method of [`Demo`] that runs against the current
//! cache handle and records a [`PhaseReport`]:
//! 1. **warm-up**: serve requests; answers go to the hot tier and to gzip files on disk.
//! 2. **restart**: close the cache; while it is down, damage four entry files the ways files
//!    get damaged (bit rot, a torn write, a stray tool, a misplaced copy); reopen and read the
//!    most popular prompts back: the intact ones come from disk, the damaged ones are
//!    quarantined with their reason and answered by the model instead, never served.
//! 3. **disk failing**: every disk call now fails with EIO. The failure is SIMULATED: the cache
//!    was built on [`FailingFs`], a fault-injecting file system around the real one, because
//!    failing a real device needs privileges (a read-only remount, a full tmpfs) a demo must
//!    not assume. The live log shows the breaker opening, the switch to memory-only with the
//!    doubled hot budget, requests still answered, and a recovery probe failing.
//! 4. **disk repaired**: the fault is switched off. Nothing tells the cache: its next
//!    recovery probe finds the disk healthy, it goes back to tiered mode and writes back what
//!    was set during the outage.
//! 5. **replicas** (`replicas.rs`): once the cache is closed, three replicas with caches of
//!    their own serve the workload twice through one Redis server, with sharing off and on;
//!    mid-run the server is killed -9 and restarted. The phase reports the model calls saved
//!    by sharing, the shared hits and the shared breaker's changes, with 0 errors and 0 wrong
//!    answers. The server is `--redis URL`, or a throwaway `redis-server` / `valkey-server`
//!    from `PATH` (`server.rs`); without one the phase is skipped with one line saying why.
//!
//! The resilience knobs are shortened (`DEMO_*` below) so the whole story fits in seconds.
//! New phases slot in between the others: they only need the cache handle and `Demo::serve`.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::warm::layout::Layout;
use answercache::warm::quarantine;
use answercache::{BreakerState, Mode, Stats, StdFs, TieredCache};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::output;
use crate::table;
use crate::BoxError;
use answercache::workload::ChatCompletion;
use faults::FailingFs;
use live::{EventCounts, Live};
use report::{PhaseReport, Tally, Totals};
use results::Results;
use workload::{Prompt, Workload};

mod damage;
mod faults;
mod live;
mod replicas;
mod report;
mod results;
mod server;
pub mod workload;

/// Settings of a demo run (the `demo` subcommand's options).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Cache directory; a temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// Requests in the whole run.
    pub requests: usize,
    /// Concurrent workers.
    pub workers: usize,
    /// Seed of the workload.
    pub seed: u64,
    /// Distinct prompts.
    pub prompts: usize,
    /// Zipf exponent of the prompt popularity.
    pub skew: f64,
    /// Hot-tier budget, bytes.
    pub hot_bytes: usize,
    /// Real sleep = simulated model latency / `time_scale`.
    pub time_scale: u32,
    /// Print a JSON document on stdout (the narrative goes to stderr).
    pub json: bool,
    /// The Redis or Valkey server of the replicas phase (`--redis URL`); `None`: a throwaway
    /// server when one is installed, else the phase is skipped.
    pub redis: Option<String>,
}

/// Consecutive disk failures that open the breaker (the library default).
const DEMO_FAILURE_THRESHOLD: u32 = 3;
/// How long the breaker stays open at first (default 30 s).
const DEMO_OPEN_TIMEOUT: Duration = Duration::from_millis(250);
/// The cap of the breaker's exponential backoff on failed trial calls (default 10 min).
const DEMO_MAX_OPEN_TIMEOUT: Duration = Duration::from_secs(1);
/// Disk errors within the window that switch to memory-only (the library default).
const DEMO_MEMORY_ONLY_AFTER: u32 = 10;
/// The error window (default 5 min).
const DEMO_ERROR_WINDOW: Duration = Duration::from_secs(30);
/// Time between recovery probes while memory-only (default 5 min).
const DEMO_RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Time between health checks while tiered (default 60 s).
const DEMO_HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// Failed recovery probes the outage lasts for.
const OUTAGE_FAILED_PROBES: u64 = 2;
/// How many popular prompts the restart check reads back (half of them get damaged).
const RESTART_CHECK_PROMPTS: usize = 8;
/// Longest wait for the cache to go memory-only, or to recover, when the phase's requests run
/// out first.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// A stop condition for [`Demo::serve`], checked every few milliseconds.
type StopWhen = Arc<dyn Fn(&Stats) -> bool + Send + Sync>;

/// A demo run: the directory, the workload and the phases done so far.
struct Demo {
    opts: DemoOptions,
    dir: PathBuf,
    /// Keeps the temporary directory alive (and deletes it at the end).
    temp: Option<tempfile::TempDir>,
    workload: Arc<Workload>,
    /// The file system every cache instance of the demo runs on: the real one, failing every
    /// call during the outage.
    fs: Arc<FailingFs>,
    live: Arc<Live>,
    /// Whether the live log receives the library's events.
    events: bool,
    phases: Vec<PhaseReport>,
    /// Totals of cache instances already closed.
    totals: Totals,
    /// When the current cache instance was opened.
    opened_at: Instant,
    started: Instant,
    /// The server of the replicas phase, or why it is skipped.
    redis: replicas::Plan,
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> Result<(), BoxError> {
    let mut demo = Demo::prepare(opts)?;
    let n = demo.workload.len();
    let (warm_end, outage_end) = (n * 2 / 5, n * 3 / 4);
    let cache = demo.open().await?;
    demo.live.say(
        "== 1. warm-up: the agent serves requests; answers are cached in memory and on disk ==",
    );
    demo.serve(&cache, "warm-up", 0..warm_end, None).await?;
    demo.live.say("");
    let cache = demo.restart(cache).await?;
    let stopped = demo.outage(&cache, warm_end..outage_end).await?;
    demo.recovery(&cache, stopped..n).await?;
    let closed = demo.close(cache).await;
    let replicas = demo.replicas().await?;
    demo.finish(closed, replicas).await
}

impl Demo {
    /// Picks the directory, builds the workload and prints what is about to happen.
    fn prepare(opts: DemoOptions) -> Result<Demo, BoxError> {
        let (dir, temp) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("answercache-demo-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let workload = Arc::new(Workload::new(
            opts.seed,
            opts.prompts,
            opts.requests,
            opts.skew,
        ));
        let live = Live::new(opts.json);
        let events = live.install();
        let say = |s: String| live.say(s);
        say("answercache demo: an agent backend caching LLM responses, through a restart, damaged files and a failing disk".into());
        say(format!("  cache directory : {}", dir.display()));
        say(format!(
            "  workload        : {} requests from {} workers over {} distinct prompts (Zipf s={}, seed {})",
            table::count(workload.len() as u64),
            opts.workers,
            table::count(workload.distinct(0..workload.len()) as u64),
            opts.skew,
            opts.seed,
        ));
        say("  responses       : chat-completion JSON-like structs, 1-64 KiB of markdown prose and code".into());
        say(format!(
            "  hot tier budget : {} of memory; everything else lives in the gzip warm tier on disk",
            table::bytes(opts.hot_bytes as u64)
        ));
        say(format!(
            "  model latency   : SIMULATED, 0.5-4 s per call; the demo sleeps 1/{} of it",
            opts.time_scale
        ));
        say(format!(
            "  resilience      : breaker opens after {DEMO_FAILURE_THRESHOLD} failures for {} (doubling up to {}); memory-only after {DEMO_MEMORY_ONLY_AFTER} errors in {}; recovery probe every {} (shortened for the demo)",
            table::duration(DEMO_OPEN_TIMEOUT),
            table::duration(DEMO_MAX_OPEN_TIMEOUT),
            table::duration(DEMO_ERROR_WINDOW),
            table::duration(DEMO_RECOVERY_INTERVAL),
        ));
        say("  disk failure    : SIMULATED with a fault-injecting file system around the real one; no device is harmed".into());
        let redis = replicas::Plan::choose(opts.redis.as_deref());
        say(format!("  replicas        : {}", redis.intro()));
        if !events {
            say("  note: another tracing subscriber is installed; the live log is off".into());
        }
        say(String::new());
        Ok(Demo {
            opts,
            dir,
            temp,
            workload,
            fs: Arc::new(FailingFs::new(Arc::new(StdFs::new()))),
            live,
            events,
            phases: Vec::new(),
            totals: Totals::default(),
            opened_at: Instant::now(),
            started: Instant::now(),
            redis,
        })
    }

    /// Opens the cache on the demo directory, on the demo's file system.
    async fn open(&mut self) -> Result<TieredCache, BoxError> {
        let cache = TieredCache::builder(&self.dir)
            .fs(self.fs.clone())
            .hot_capacity_bytes(self.opts.hot_bytes)
            .failure_threshold(DEMO_FAILURE_THRESHOLD)
            .open_timeout(DEMO_OPEN_TIMEOUT)
            .max_open_timeout(DEMO_MAX_OPEN_TIMEOUT)
            .memory_only_after(DEMO_MEMORY_ONLY_AFTER)
            .error_window(DEMO_ERROR_WINDOW)
            .recovery_interval(DEMO_RECOVERY_INTERVAL)
            .health_interval(DEMO_HEALTH_INTERVAL)
            .build()
            .await
            .map_err(|e| format!("cannot open the cache at {}: {e}", self.dir.display()))?;
        self.opened_at = Instant::now();
        Ok(cache)
    }

    /// Serves requests `range` of the workload with the configured number of workers, with a
    /// progress bar and the live log, and records the phase. With `stop`, the workers stop
    /// taking requests once it holds. Returns the index of the first request not served.
    async fn serve(
        &mut self,
        cache: &TieredCache,
        name: &str,
        range: Range<usize>,
        stop: Option<StopWhen>,
    ) -> Result<usize, BoxError> {
        let before = cache.stats();
        let started = Instant::now();
        let tally = Arc::new(Tally::default());
        let bar = progress_bar(name, range.len() as u64);
        self.live.set_bar(Some(bar.clone()));
        let watch = self.live.watch(cache, tally.clone());
        let next = Arc::new(AtomicUsize::new(range.start));
        let stopped = Arc::new(AtomicBool::new(false));
        let checker = stop.map(|stop| {
            let (cache, stopped) = (cache.clone(), stopped.clone());
            tokio::spawn(async move {
                while !stop(&cache.stats()) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                stopped.store(true, Ordering::SeqCst);
            })
        });
        let mut workers = JoinSet::new();
        for _ in 0..self.opts.workers.max(1) {
            let worker = Worker {
                cache: cache.clone(),
                workload: self.workload.clone(),
                tally: tally.clone(),
                time_scale: self.opts.time_scale.max(1),
            };
            let (next, stopped, end, bar) = (next.clone(), stopped.clone(), range.end, bar.clone());
            workers.spawn(async move {
                while !stopped.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= end {
                        break;
                    }
                    worker.request(worker.workload.request(i)).await?;
                    bar.inc(1);
                    let calls = worker.tally.model_calls.load(Ordering::Relaxed);
                    let done = bar.position();
                    bar.set_message(format!(
                        "hit rate {}, {} model calls",
                        table::percent(done.saturating_sub(calls), done),
                        table::count(calls)
                    ));
                }
                Ok::<(), BoxError>(())
            });
        }
        let mut result = Ok(());
        while let Some(joined) = workers.join_next().await {
            if let Err(e) = joined
                .map_err(|e| BoxError::from(format!("worker task failed: {e}")))
                .and_then(|r| r)
            {
                result = Err(e);
            }
        }
        if let Some(c) = checker {
            c.abort();
        }
        watch.finish().await;
        self.live.set_bar(None);
        bar.finish_and_clear();
        result?;
        let served_to = next.load(Ordering::SeqCst).min(range.end);
        let report = PhaseReport::new(name, &before, &cache.stats(), &tally, started.elapsed());
        self.live.say(format!(
            "  {name}: requests {}..{served_to}: {}",
            range.start,
            report.summary()
        ));
        self.phases.push(report);
        Ok(served_to)
    }

    /// Waits, with the live log on, until `cond` holds or [`MAX_WAIT`] passes.
    async fn wait_for(&self, cache: &TieredCache, cond: &StopWhen) -> bool {
        let watch = self.live.watch(cache, Arc::new(Tally::default()));
        let deadline = Instant::now() + MAX_WAIT;
        let met = loop {
            if cond(&cache.stats()) {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        watch.finish().await;
        met
    }

    /// Closes the cache (draining the write queue to disk); while it is down, damages a few
    /// entry files; reopens it and reads the most popular prompts back: the hot tier starts
    /// empty, so every answer comes from the files, and the damaged ones are quarantined.
    async fn restart(&mut self, cache: TieredCache) -> Result<TieredCache, BoxError> {
        self.live
            .say("== 2. restart: close the cache; while it is down, damage some files; reopen ==");
        let closed = self.close(cache).await;
        self.live.say(format!(
            "  closed  : {} entry files on disk ({}), hot tier gone with the instance",
            table::count(closed.warm_entries),
            table::bytes(closed.warm_bytes)
        ));
        let popular = self.popular(RESTART_CHECK_PROMPTS);
        // Every other popular prompt is damaged; the first (intact) one donates the copy.
        let victims: Vec<&str> = popular
            .iter()
            .skip(1)
            .step_by(2)
            .map(|p| p.key.as_str())
            .collect();
        let planted = match popular.first() {
            Some(donor) => damage::plant(&self.dir, &victims, &donor.key)
                .map_err(|e| format!("damaging files in {}: {e}", self.dir.display()))?,
            None => Vec::new(),
        };
        for p in &planted {
            self.live.say(format!(
                "  damaged : {:<15} {} ({}; the cache should say {:?})",
                p.how,
                short_path(&p.rel),
                p.what,
                p.expect
            ));
        }
        let cache = self.open().await?;
        let s = wait_for_index(&cache).await;
        self.live.say(format!(
            "  reopened: hot tier {} entries; warm index found {} entry files on disk{}",
            s.hot_entries,
            table::count(s.warm_entries),
            if s.warm_index_complete {
                ""
            } else {
                " so far (scan still running)"
            }
        ));
        self.live.say(format!(
            "  reading back the {} most popular prompts (the hot tier is empty: answers come from disk):",
            popular.len()
        ));
        let before = cache.stats();
        let started = Instant::now();
        let tally = Arc::new(Tally::default());
        let worker = Worker {
            cache: cache.clone(),
            workload: self.workload.clone(),
            tally: tally.clone(),
            time_scale: self.opts.time_scale.max(1),
        };
        for prompt in &popular {
            let s0 = cache.stats();
            let hit = worker.request(prompt).await?;
            let s1 = cache.stats();
            let from = match (hit, s1.warm_hits > s0.warm_hits) {
                (true, true) => "warm hit (read back from disk)".to_owned(),
                (true, false) => "hit".to_owned(),
                (false, _) if s1.quarantined_files > s0.quarantined_files => {
                    "QUARANTINED -> miss, model called".to_owned()
                }
                (false, _) => "miss (model called)".to_owned(),
            };
            self.live.flush();
            self.live.say(format!(
                "    {from:<34} {:>9}  {}",
                table::bytes(prompt.answer_bytes as u64),
                shorten(&prompt.text, 56)
            ));
        }
        let report = PhaseReport::new(
            "restart check",
            &before,
            &cache.stats(),
            &tally,
            started.elapsed(),
        );
        self.live
            .say(format!("  restart check: {}", report.summary()));
        self.phases.push(report);
        let q = Layout::new(&self.dir).quarantine_dir().to_path_buf();
        if let Ok(files) = quarantine::list(&StdFs::new(), &q) {
            let reasons: Vec<&str> = files.iter().map(|f| f.reason.as_str()).collect();
            self.live.say(format!(
                "  quarantine: {} files in {} ({}); none was served",
                files.len(),
                q.display(),
                reasons.join(", ")
            ));
        }
        self.live.say("");
        Ok(cache)
    }

    /// Makes every disk call fail and serves requests until the cache has gone memory-only and
    /// [`OUTAGE_FAILED_PROBES`] recovery probes have failed (or the range ends; the outage then
    /// goes on without traffic). Returns the first request not served.
    async fn outage(
        &mut self,
        cache: &TieredCache,
        range: Range<usize>,
    ) -> Result<usize, BoxError> {
        self.live
            .say("== 3. disk failure: every disk call now fails with EIO ==");
        self.live.say(
            "  SIMULATED: the cache runs on a fault-injecting file system; it now fails every read, write, rename and listing",
        );
        self.fs.fail(true);
        let live = self.live.clone();
        let events = self.events;
        let (failed_before, run_before) = (
            EventCounts::get(&live.counts.probes_failed),
            cache.stats().probes_run,
        );
        let stop: StopWhen = Arc::new(move |s: &Stats| {
            s.mode == Mode::MemoryOnly
                && if events {
                    EventCounts::get(&live.counts.probes_failed)
                        >= failed_before + OUTAGE_FAILED_PROBES
                } else {
                    s.probes_run >= run_before + OUTAGE_FAILED_PROBES
                }
        });
        let served_to = self
            .serve(cache, "disk failing", range, Some(stop.clone()))
            .await?;
        if !stop(&cache.stats()) {
            self.live.say(
                "  (this phase's requests ran out: waiting for the cache to give the disk up and probe it)",
            );
            if !self.wait_for(cache, &stop).await {
                self.live.say(format!(
                    "  note: the cache did not go memory-only and probe within {}",
                    table::duration(MAX_WAIT)
                ));
            }
        }
        self.live.say("");
        Ok(served_to)
    }

    /// Repairs the disk and serves the rest of the requests while the cache finds out,
    /// recovers and writes back; then waits for the write-back to finish.
    async fn recovery(&mut self, cache: &TieredCache, range: Range<usize>) -> Result<(), BoxError> {
        self.live
            .say("== 4. disk repaired: the fault rule is removed ==");
        self.live.say(format!(
            "  nothing tells the cache; its next recovery probe (every {}) finds the disk healthy",
            table::duration(DEMO_RECOVERY_INTERVAL)
        ));
        self.fs.fail(false);
        self.serve(cache, "disk repaired", range, None).await?;
        if cache.mode() == Mode::MemoryOnly {
            self.live
                .say("  (requests ran out before the probe: waiting for it and the write-back)");
        }
        // What the last requests set is still queued: wait for it too, so the final numbers
        // describe a cache at rest.
        let done: StopWhen = Arc::new(|s: &Stats| {
            s.mode == Mode::Tiered
                && s.breaker_state == BreakerState::Closed
                && s.dirty_entries == 0
                && s.write_queue_depth == 0
        });
        if !self.wait_for(cache, &done).await {
            self.live.say(format!(
                "  note: the cache had not recovered within {}",
                table::duration(MAX_WAIT)
            ));
        }
        self.live.say("");
        Ok(())
    }

    /// The `n` prompts asked most often in the warm-up.
    fn popular(&self, n: usize) -> Vec<Prompt> {
        let warm_end = self.workload.len() * 2 / 5;
        let mut counts: Vec<(usize, usize, &Prompt)> = Vec::new();
        for i in 0..warm_end {
            let p = self.workload.request(i);
            match counts.iter_mut().find(|(_, id, _)| *id == p.id) {
                Some(c) => c.0 += 1,
                None => counts.push((1, p.id, p)),
            }
        }
        counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        counts
            .into_iter()
            .take(n)
            .map(|(_, _, p)| p.clone())
            .collect()
    }

    /// Closes a cache instance, adds its totals, and returns its last stats. A flush that
    /// could not persist everything is reported, not fatal: the demo shows what the cache
    /// does, and the stats carry the numbers.
    async fn close(&mut self, cache: TieredCache) -> Stats {
        if let Err(e) = cache.close().await {
            self.live.say(format!("  note: {e}"));
        }
        self.live.flush();
        let s = cache.stats();
        self.totals.add(&s, self.opened_at.elapsed());
        s
    }

    /// Prints the final tables (and, with `--json`, the document), given the main cache's
    /// last stats and what the replicas phase did. Errors or wrong answers of the replicas
    /// phase fail the demo, once the tables are out.
    async fn finish(self, closed: Stats, replicas: replicas::Outcome) -> Result<(), BoxError> {
        let results = Results {
            phases: &self.phases,
            totals: &self.totals,
            last: &closed,
            breaker_opens: self.totals.sum(|s| s.breaker_opens),
            written_back: self.totals.sum(|s| s.written_back),
            hot_bytes: self.opts.hot_bytes as u64,
            time_scale: self.opts.time_scale,
            dir: &self.dir,
            temporary: self.temp.is_some(),
            wall: self.started.elapsed(),
            replicas: &replicas,
        };
        self.live.say("== results ==");
        for block in results.text() {
            self.live.say(block);
        }
        if self.opts.json {
            output::print_json(&results.doc())?;
        }
        if let replicas::Outcome::Ran(r) = &replicas {
            if r.errors > 0 || r.wrong_answers > 0 {
                return Err(format!(
                    "the replicas phase returned {} errors and {} wrong answers to callers",
                    r.errors, r.wrong_answers
                )
                .into());
            }
        }
        Ok(())
    }
}

/// One request handler: what an agent backend does per prompt.
#[derive(Clone)]
struct Worker {
    cache: TieredCache,
    workload: Arc<Workload>,
    tally: Arc<Tally>,
    time_scale: u32,
}

impl Worker {
    /// Looks the prompt up; on a miss "calls the model" (sleeps a scaled-down share of its
    /// simulated latency) and caches the answer. Returns whether it was a hit. A cache error
    /// here ends the demo: a failing disk must never produce one.
    async fn request(&self, prompt: &Prompt) -> Result<bool, BoxError> {
        self.tally.requests.fetch_add(1, Ordering::Relaxed);
        let latency_ms = prompt.latency.as_millis() as u64;
        let cached = self
            .cache
            .get::<ChatCompletion>(&prompt.key)
            .await
            .map_err(|e| format!("get {:?}: {e}", prompt.key))?;
        if let Some(answer) = cached {
            self.tally
                .model_ms_saved
                .fetch_add(latency_ms, Ordering::Relaxed);
            if answer != self.workload.answer(prompt) {
                self.tally.mismatches.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(true);
        }
        tokio::time::sleep(prompt.latency / self.time_scale).await;
        let answer = self.workload.answer(prompt);
        self.tally.model_calls.fetch_add(1, Ordering::Relaxed);
        self.tally
            .model_ms_spent
            .fetch_add(latency_ms, Ordering::Relaxed);
        self.cache
            .set(&prompt.key, &answer)
            .await
            .map_err(|e| format!("set {:?}: {e}", prompt.key))?;
        Ok(false)
    }
}

/// Waits (at most a second) for the warm index to merge the startup scan, so the numbers
/// printed after a restart are complete. `open` itself never waits for the scan.
async fn wait_for_index(cache: &TieredCache) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let s = cache.stats();
        if s.warm_index_complete || Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn progress_bar(name: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "  {prefix:>15} [{bar:40.cyan/blue}] {pos:>5}/{len:5} {elapsed:>4}  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_owned());
    bar
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

/// `v2/ab/<64 hex>` with the hex cut to 12 characters.
fn short_path(rel: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, name)) if name.len() > 12 => format!("{dir}/{}...", &name[..12]),
        _ => rel.to_owned(),
    }
}
