//! `tiercache demo`: an agent backend in front of a (simulated) LLM, with the cache between.
//!
//! The demo is a list of phases, each a method of [`Demo`] that runs against the current
//! cache handle and records a [`PhaseReport`]: serve requests, restart the cache, serve more.
//! New phases (a failing disk, recovery, planted corruption) slot in between without touching
//! the others: they only need the cache handle and `Demo::serve`.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tiercache::{Stats, TieredCache};
use tokio::task::JoinSet;

use super::report::{self, PhaseReport, Tally, Written};
use super::table;
use super::workload::{ChatCompletion, Prompt, Workload};
use super::BoxError;

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
}

/// How many prompts the restart check reads back.
const RESTART_CHECK_PROMPTS: usize = 5;

/// A demo run: the directory, the workload and the phases done so far.
struct Demo {
    opts: DemoOptions,
    dir: PathBuf,
    /// Keeps the temporary directory alive (and deletes it at the end).
    _temp: Option<tempfile::TempDir>,
    workload: Arc<Workload>,
    phases: Vec<PhaseReport>,
    /// Write totals of cache instances already closed.
    written: Written,
    started: Instant,
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> Result<(), BoxError> {
    let mut demo = Demo::prepare(opts)?;
    let half = demo.workload.len() / 2;
    let cache = demo.open().await?;
    demo.serve(&cache, "before restart", 0..half).await?;
    let cache = demo.restart(cache).await?;
    demo.serve(&cache, "after restart", half..demo.workload.len())
        .await?;
    demo.finish(cache).await
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
                    .prefix("tiercache-demo-")
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
        println!("tiercache demo: an agent backend caching LLM responses");
        println!("  cache directory : {}", dir.display());
        println!(
            "  workload        : {} requests from {} workers over {} distinct prompts (Zipf s={}, seed {})",
            table::count(workload.len() as u64),
            opts.workers,
            table::count(workload.distinct(0..workload.len()) as u64),
            opts.skew,
            opts.seed,
        );
        println!(
            "  responses       : chat-completion JSON-like structs, 1-64 KiB of markdown prose and code"
        );
        println!(
            "  hot tier budget : {} of memory; everything else lives in the gzip warm tier on disk",
            table::bytes(opts.hot_bytes as u64)
        );
        println!(
            "  model latency   : SIMULATED, 0.5-4 s per call; the demo sleeps 1/{} of it",
            opts.time_scale
        );
        println!();
        Ok(Demo {
            opts,
            dir,
            _temp: temp,
            workload,
            phases: Vec::new(),
            written: Written::default(),
            started: Instant::now(),
        })
    }

    /// Opens the cache on the demo directory.
    async fn open(&self) -> Result<TieredCache, BoxError> {
        TieredCache::builder(&self.dir)
            .hot_capacity_bytes(self.opts.hot_bytes)
            .build()
            .await
            .map_err(|e| format!("cannot open the cache at {}: {e}", self.dir.display()).into())
    }

    /// Serves requests `range` of the workload with the configured number of workers, with a
    /// progress bar, and records the phase.
    async fn serve(
        &mut self,
        cache: &TieredCache,
        name: &str,
        range: Range<usize>,
    ) -> Result<(), BoxError> {
        println!(
            "== {name}: serving requests {}..{} ==",
            range.start, range.end
        );
        let before = cache.stats();
        let started = Instant::now();
        let tally = Arc::new(Tally::default());
        let bar = progress_bar(name, range.len() as u64);
        let next = Arc::new(AtomicUsize::new(range.start));
        let mut workers = JoinSet::new();
        for _ in 0..self.opts.workers.max(1) {
            let worker = Worker {
                cache: cache.clone(),
                workload: self.workload.clone(),
                tally: tally.clone(),
                time_scale: self.opts.time_scale.max(1),
            };
            let (next, end, bar) = (next.clone(), range.end, bar.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return Ok::<(), BoxError>(());
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
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined.map_err(|e| format!("worker task failed: {e}"))??;
        }
        bar.finish_and_clear();
        let report = PhaseReport::new(name, &before, &cache.stats(), &tally, started.elapsed());
        println!("  {}", report.summary());
        self.phases.push(report);
        println!();
        Ok(())
    }

    /// Closes the cache (draining the write queue to disk), reopens it on the same directory
    /// and reads back the most popular prompts: the hot tier starts empty, so every answer
    /// comes from the files the previous instance wrote.
    async fn restart(&mut self, cache: TieredCache) -> Result<TieredCache, BoxError> {
        println!("== restart: close the cache and reopen it on the same directory ==");
        let closed = self.close(cache).await;
        println!(
            "  closed : {} entry files on disk ({}), hot tier dropped with the process",
            table::count(closed.warm_entries),
            table::bytes(closed.warm_bytes)
        );
        let cache = self.open().await?;
        let s = wait_for_index(&cache).await;
        println!(
            "  reopened: hot tier {} entries; warm index found {} entry files on disk{}",
            s.hot_entries,
            table::count(s.warm_entries),
            if s.warm_index_complete {
                ""
            } else {
                " so far (scan still running)"
            }
        );
        // The restart check: the top prompts of the first half, read back one by one.
        let before = cache.stats();
        let started = Instant::now();
        let tally = Arc::new(Tally::default());
        let worker = Worker {
            cache: cache.clone(),
            workload: self.workload.clone(),
            tally: tally.clone(),
            time_scale: self.opts.time_scale.max(1),
        };
        for prompt in self.popular(RESTART_CHECK_PROMPTS) {
            let warm_before = cache.stats().warm_hits;
            let hit = worker.request(&prompt).await?;
            let from = match (hit, cache.stats().warm_hits > warm_before) {
                (true, true) => "warm hit (read back from disk)",
                (true, false) => "hit",
                (false, _) => "miss (model called)",
            };
            println!(
                "  {from:<30} {:>9}  {}",
                table::bytes(prompt.answer_bytes as u64),
                shorten(&prompt.text, 60)
            );
        }
        let report = PhaseReport::new(
            "restart check",
            &before,
            &cache.stats(),
            &tally,
            started.elapsed(),
        );
        println!("  {}", report.summary());
        self.phases.push(report);
        println!();
        Ok(cache)
    }

    /// The `n` prompts asked most often in the first half of the run.
    fn popular(&self, n: usize) -> Vec<Prompt> {
        let half = self.workload.len() / 2;
        let mut counts: Vec<(usize, usize, &Prompt)> = Vec::new();
        for i in 0..half {
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

    /// Closes a cache instance, adds its write totals, and returns its last stats. A flush
    /// that could not persist everything is reported, not fatal: the demo shows what the
    /// cache does, and the stats carry the numbers.
    async fn close(&mut self, cache: TieredCache) -> Stats {
        if let Err(e) = cache.close().await {
            println!("  note: {e}");
        }
        let s = cache.stats();
        self.written.add(&s);
        s
    }

    /// Closes the cache and prints the final tables.
    async fn finish(mut self, cache: TieredCache) -> Result<(), BoxError> {
        let closed = self.close(cache).await;
        let total = report::total(&self.phases);
        println!("== results ==");
        print!("{}", report::phase_table(&self.phases));
        println!();
        print!("{}", report::tier_table(&closed));
        println!();
        let w = self.written;
        let rows = [
            (
                "compression (values -> files)",
                format!(
                    "{} -> {} in {} files: {}",
                    table::bytes(w.uncompressed),
                    table::bytes(w.compressed),
                    table::count(w.files),
                    w.ratio()
                ),
            ),
            (
                "model calls made / saved",
                format!(
                    "{} / {}",
                    table::count(total.model_calls),
                    table::count(total.hits())
                ),
            ),
            (
                "simulated model time*",
                format!(
                    "{} spent, {} saved ({} without the cache)",
                    table::duration(total.model_spent),
                    table::duration(total.model_saved),
                    table::duration(total.model_spent + total.model_saved)
                ),
            ),
            (
                "hits equal to the model's answer",
                if total.mismatches == 0 {
                    format!("all {}", table::count(total.hits()))
                } else {
                    format!(
                        "{} differ (the directory holds answers of another --seed)",
                        table::count(total.mismatches)
                    )
                },
            ),
            (
                "disk errors / quarantined files",
                format!("{} / {}", w.disk_errors, w.quarantined),
            ),
            (
                "mode / breaker",
                format!("{} / {}", closed.mode, closed.breaker_state),
            ),
            (
                "cache directory",
                match self._temp {
                    Some(_) => format!(
                        "{} (temporary, removed on exit; use --dir to keep it)",
                        self.dir.display()
                    ),
                    None => self.dir.display().to_string(),
                },
            ),
            ("wall time", table::duration(self.started.elapsed())),
        ];
        print!("{}", table::pairs(&rows));
        println!();
        println!(
            "* model latency is SIMULATED (0.5-4 s per call, slept at 1/{} speed); no model was called.",
            self.opts.time_scale
        );
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
    /// simulated latency) and caches the answer. Returns whether it was a hit.
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
