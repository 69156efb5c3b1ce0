//! Phase 5, **replicas**: three replicas of the agent backend behind a round-robin load
//! balancer (request `i` goes to replica `i mod 3`), each with a cache of its own (its own
//! directory, its own hot tier), serve the demo's workload twice:
//! 1. **sharing off**: each replica answers only its own repeats; a prompt another replica
//!    already paid for costs a model call again;
//! 2. **sharing on**: the same three caches' configuration plus one [`SharedConfig`] (same
//!    server, same prefix): a replica's miss is looked up in Redis before the model is called.
//!    Mid-run (at 40% of the requests) the server is killed with `SIGKILL` and, a tenth of
//!    the requests later, restarted empty on the same socket: the replicas keep answering from
//!    their local tiers and the model, their shared breakers open, and close again once the
//!    server is back. What the server held is gone: answers shared before the kill are paid
//!    for again by the replicas that do not hold them locally.
//!
//! Every request goes through `get_or_insert_answer` (the model call is its loader, so a
//! model call is a loader call), and every answer is compared with what the workload says the
//! model answers: the phase counts errors returned to callers and wrong answers, both of which
//! must be 0.
//!
//! The server is the one `--redis URL` names (never killed: it is not the demo's), or a
//! throwaway `redis-server` / `valkey-server` found on `PATH` ([`server`](super::server)).
//! Without either the phase is skipped with one line saying why: the demo's main command
//! needs no Redis.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::workload::ChatCompletion;
use answercache::{BreakerState, Controls, SharedConfig, Source, Stats, TieredCache};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::live::Live;
use super::report::ms;
use super::server::{self, Throwaway};
use super::workload::{Prompt, Workload};
use super::{progress_bar, Demo};
use crate::table::{self, Table};
use crate::BoxError;

/// Replicas in the phase.
pub const REPLICAS: usize = 3;
/// The shared breaker's first open time (default 5 s), shortened so that the replicas find
/// the restarted server within the phase.
const SHARED_OPEN_TIMEOUT: Duration = Duration::from_millis(200);
/// The cap of its doubling (default 2 min).
const SHARED_MAX_OPEN_TIMEOUT: Duration = Duration::from_millis(800);
/// How long the demo's entries live on the server: they expire there on their own, also on a
/// server that is not the demo's.
const SHARED_MAX_TTL: Duration = Duration::from_secs(600);
/// The longest wait for the replicas' shared breakers to close (after start, at the end).
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// The longest the restart waits for every replica's breaker to open after the kill.
const OPEN_WAIT: Duration = Duration::from_secs(1);
/// The phase's model latency is slept at this many times the demo's `--time-scale`: the
/// phase serves the workload twice, over three replicas, and must stay within seconds.
pub const PHASE_SPEEDUP: u32 = 4;

/// Which server the phase will use, decided before the demo starts.
#[derive(Debug, Clone)]
pub enum Plan {
    /// `--redis URL`: used as it is, never killed.
    External(String),
    /// A throwaway server started from this binary.
    Throwaway(PathBuf),
    /// No server: the phase is skipped, for this reason.
    Skip(String),
}

impl Plan {
    /// `--redis URL` if given, else a server binary on `PATH`, else a skip.
    pub fn choose(url: Option<&str>) -> Plan {
        match (url, server::find()) {
            (Some(url), _) => Plan::External(url.to_owned()),
            (None, Some(bin)) => Plan::Throwaway(bin),
            (None, None) => Plan::Skip(format!(
                "no {} or {} on PATH (apt-get install redis-server, or pass --redis URL)",
                server::SERVER_NAMES[0],
                server::SERVER_NAMES[1]
            )),
        }
    }

    /// The line of the demo's introduction.
    pub fn intro(&self) -> String {
        match self {
            Plan::External(url) => format!(
                "3 replicas share answers through the server of --redis ({}); it is not killed",
                server::redact(url)
            ),
            Plan::Throwaway(bin) => format!(
                "3 replicas share answers through a throwaway {} on a unix socket, killed -9 and restarted mid-run",
                bin.display()
            ),
            Plan::Skip(why) => format!("skipped: {why}"),
        }
    }
}

/// What the phase did: the `replicas` record of the `--json` document.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// The phase ran (boxed: the report is large, a skip is a line).
    Ran(Box<Report>),
    /// It did not, for this reason.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// One run of the workload over the three replicas.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Run {
    /// `sharing off` or `sharing on`.
    pub name: String,
    /// Requests served.
    pub requests: u64,
    /// Model calls (loader calls) made.
    pub model_calls: u64,
    /// The replicas' `Stats::loader_calls`, summed (equal to `model_calls`).
    pub loader_calls: u64,
    /// Answers from the hot tiers (`Answer::source`, as every count by tier here).
    pub hot_hits: u64,
    /// Answers from the warm tiers (disk).
    pub warm_hits: u64,
    /// Answers from the write queues.
    pub queue_hits: u64,
    /// Answers from the shared tier: another replica's.
    pub shared_hits: u64,
    /// Answers joined from a concurrent load of the same key on the same replica.
    pub joined: u64,
    /// Answers this request's own model call produced (equal to `model_calls`).
    pub loaded: u64,
    /// The replicas' `Stats::shared_hits`, summed.
    pub stats_shared_hits: u64,
    /// Errors returned to callers.
    pub errors: u64,
    /// Answers that differ from the model's.
    pub wrong_answers: u64,
    /// The first error returned to a caller, if any.
    pub first_error: Option<String>,
    /// Real time the run took.
    #[serde(rename = "wall_ms", serialize_with = "as_ms")]
    pub wall: Duration,
}

/// The server kill of the sharing-on run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Kill {
    /// The request whose turn it was when the server was killed.
    pub at_request: u64,
    /// The request whose turn it was when it was back (empty, on the same socket).
    pub restarted_at_request: u64,
    /// How long it was down.
    #[serde(rename = "down_ms", serialize_with = "as_ms")]
    pub down: Duration,
    /// Replicas whose shared breaker was open when the server came back.
    pub breakers_open_at_restart: u64,
}

/// The phase's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The server, in words (no password).
    pub server: String,
    /// Whether the demo started (and stopped) it.
    pub throwaway: bool,
    /// Replicas.
    pub replicas: u64,
    /// The shared prefix of the three replicas.
    pub prefix: String,
    /// Requests of each run.
    pub requests: u64,
    /// The two runs: sharing off, sharing on.
    pub runs: Vec<Run>,
    /// Model calls of the sharing-off run.
    pub model_calls_without_sharing: u64,
    /// Model calls of the sharing-on run.
    pub model_calls_with_sharing: u64,
    /// The difference (0 when sharing saved nothing).
    pub calls_saved: u64,
    /// Shared hits of the sharing-on run.
    pub shared_hits: u64,
    /// Errors returned to callers, both runs.
    pub errors: u64,
    /// Wrong answers, both runs.
    pub wrong_answers: u64,
    /// Shared-breaker transitions during the sharing-on run, every replica's, after each
    /// had first closed.
    pub breaker_changes: u64,
    /// The same by `from -> to`.
    pub breaker_changes_by_kind: BTreeMap<String, u64>,
    /// Whether the server was killed and restarted.
    pub server_killed: bool,
    /// The kill, when it happened.
    pub kill: Option<Kill>,
    /// Why there was no kill.
    pub kill_skipped: Option<String>,
    /// Replicas whose shared breaker was closed at the end.
    pub shared_closed_at_end: u64,
    /// Real time of the phase.
    #[serde(rename = "wall_ms", serialize_with = "as_ms")]
    pub wall: Duration,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(ms(*d))
}

impl Outcome {
    /// The blocks of the final results.
    pub fn text(&self) -> Vec<String> {
        let r = match self {
            Outcome::Skipped { reason } => {
                return vec![table::pairs(&[(
                    "replicas phase",
                    format!("skipped: {reason}"),
                )])]
            }
            Outcome::Ran(r) => r,
        };
        let mut t = Table::new([
            "replicas (3, round-robin)",
            "requests",
            "model calls",
            "hot hits",
            "warm hits",
            "queue hits",
            "shared hits",
            "joined",
            "errors",
            "wrong answers",
            "wall",
        ]);
        for run in &r.runs {
            t.row(
                run.name.clone(),
                [
                    table::count(run.requests),
                    table::count(run.model_calls),
                    table::count(run.hot_hits),
                    table::count(run.warm_hits),
                    table::count(run.queue_hits),
                    table::count(run.shared_hits),
                    table::count(run.joined),
                    table::count(run.errors),
                    table::count(run.wrong_answers),
                    table::duration(run.wall),
                ],
            );
        }
        let answers: u64 = r.runs.iter().map(|run| run.requests).sum();
        let kill = match (&r.kill, &r.kill_skipped) {
            (Some(k), _) => format!(
                "at request {}, restarted empty on the same socket at request {} (down {}; {} of {} shared breakers open when it came back)",
                table::count(k.at_request),
                table::count(k.restarted_at_request),
                table::duration(k.down),
                k.breakers_open_at_restart,
                r.replicas
            ),
            (None, Some(why)) => format!("skipped: {why}"),
            (None, None) => "skipped".to_owned(),
        };
        let pairs = [
            ("shared server", r.server.clone()),
            ("requests per run", table::count(r.requests)),
            (
                "model calls without sharing",
                table::count(r.model_calls_without_sharing),
            ),
            (
                "model calls with sharing",
                table::count(r.model_calls_with_sharing),
            ),
            (
                "model calls saved by sharing",
                format!(
                    "{} ({} of the calls without sharing)",
                    table::count(r.calls_saved),
                    table::percent(r.calls_saved, r.model_calls_without_sharing)
                ),
            ),
            (
                "shared hits",
                format!(
                    "{} (answers another replica had paid for)",
                    table::count(r.shared_hits)
                ),
            ),
            ("errors to callers", table::count(r.errors)),
            (
                "wrong answers",
                format!(
                    "{} (all {} answers of both runs checked against the model's)",
                    table::count(r.wrong_answers),
                    table::count(answers)
                ),
            ),
            (
                "shared breaker state changes",
                format!(
                    "{} ({})",
                    table::count(r.breaker_changes),
                    table::by_name(&r.breaker_changes_by_kind)
                ),
            ),
            ("server kill -9", kill),
            (
                "shared tier at the end",
                format!(
                    "closed on {} of {} replicas",
                    r.shared_closed_at_end, r.replicas
                ),
            ),
        ];
        vec![t.to_string(), table::pairs(&pairs)]
    }
}

/// The kill and restart of the throwaway server, done by the worker whose turn request
/// `kill_at` (and `restart_at`) is; workers that draw a later request wait for them.
struct KillPlan {
    server: Arc<Mutex<Throwaway>>,
    kill_at: usize,
    restart_at: usize,
    /// 0 before the kill, 1 killed, 2 restarted.
    stage: watch::Sender<u8>,
    caches: Vec<TieredCache>,
    live: Arc<Live>,
    done: Mutex<Option<Kill>>,
    killed_at: Mutex<Option<Instant>>,
}

impl KillPlan {
    /// Called before request `i` is served.
    async fn before(&self, i: usize) -> Result<(), BoxError> {
        if i == self.kill_at {
            let pid = self.lock().pid();
            let server = self.server.clone();
            tokio::task::spawn_blocking(move || {
                server
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .kill9()
            })
            .await
            .map_err(|e| format!("killing the server: {e}"))?;
            *self
                .killed_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
            self.live.note(format!(
                "REDIS KILLED: kill -9 of the server (pid {}) at request {i}; everything it held is gone",
                pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
            ));
            self.stage.send_replace(1);
            return Ok(());
        }
        if i == self.restart_at {
            self.wait_stage(1).await;
            // Let the replicas find out first (at most OPEN_WAIT): their breakers open on
            // the failed calls of the requests served meanwhile.
            let deadline = Instant::now() + OPEN_WAIT;
            while Instant::now() < deadline && self.open_count() < self.caches.len() as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let open = self.open_count();
            let server = self.server.clone();
            tokio::task::spawn_blocking(move || {
                server
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .restart()
            })
            .await
            .map_err(|e| format!("restarting the server: {e}"))??;
            let down = self
                .killed_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .map_or(Duration::ZERO, |t| t.elapsed());
            self.live.note(format!(
                "REDIS RESTARTED on the same socket at request {i} after {}, empty: what was shared before is gone (replicas do not upload what they hold again); {open} of {} shared breakers are open and PING it on their timers",
                table::duration(down),
                self.caches.len()
            ));
            *self
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Kill {
                at_request: self.kill_at as u64,
                restarted_at_request: i as u64,
                down,
                breakers_open_at_restart: open,
            });
            self.stage.send_replace(2);
            return Ok(());
        }
        let need = if i > self.restart_at {
            2
        } else if i > self.kill_at {
            1
        } else {
            0
        };
        self.wait_stage(need).await;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Throwaway> {
        self.server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn wait_stage(&self, need: u8) {
        let mut rx = self.stage.subscribe();
        // The sender lives as long as the plan: `wait_for` cannot fail here.
        let _ = rx.wait_for(|s| *s >= need).await;
    }

    fn open_count(&self) -> u64 {
        self.caches
            .iter()
            .filter(|c| c.shared_state() != Some(BreakerState::Closed))
            .count() as u64
    }
}

/// The counters the workers of one run share.
#[derive(Default)]
struct RunTally {
    requests: AtomicU64,
    model_calls: AtomicU64,
    /// Answers by `Source`, in `Source::name` order of [`SOURCES`].
    sources: [AtomicU64; SOURCES.len()],
    errors: AtomicU64,
    wrong: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// The sources an answer is counted under.
const SOURCES: [Source; 7] = [
    Source::Hot,
    Source::Warm,
    Source::Queue,
    Source::Shared,
    Source::Loaded,
    Source::Joined,
    Source::Stale,
];

impl RunTally {
    fn source(&self, s: Source) -> u64 {
        SOURCES
            .iter()
            .position(|x| *x == s)
            .map_or(0, |i| get(&self.sources[i]))
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// What one request does on its replica: the cache in front of the (simulated) model.
async fn ask(
    cache: &TieredCache,
    workload: &Workload,
    prompt: &Prompt,
    time_scale: u32,
    tally: &RunTally,
) {
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let answer = cache
        .get_or_insert_answer(&prompt.key, &Controls::new(), move || async move {
            tokio::time::sleep(prompt.latency / time_scale).await;
            tally.model_calls.fetch_add(1, Ordering::Relaxed);
            Ok::<ChatCompletion, std::convert::Infallible>(workload.answer(prompt))
        })
        .await;
    match answer {
        Ok(a) => {
            if let Some(i) = SOURCES.iter().position(|s| *s == a.source) {
                tally.sources[i].fetch_add(1, Ordering::Relaxed);
            }
            if a.value != workload.answer(prompt) {
                tally.wrong.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(e) => {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tally
                .first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert_with(|| format!("{:?}: {e}", prompt.key));
        }
    }
}

/// A unique prefix per run: a server shared with other runs (or other seeds) never answers
/// this run's prompts with their answers.
fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("answercache-demo-{}-{nanos:x}", std::process::id())
}

impl Demo {
    /// Runs the phase (or says why not) and returns what it did.
    pub(super) async fn replicas(&mut self) -> Result<Outcome, BoxError> {
        self.live.say(
            "== 5. replicas: three replicas of the agent backend share answers through Redis ==",
        );
        let started = Instant::now();
        let (url, server, kill_skipped) = match self.redis.clone() {
            Plan::Skip(reason) => {
                self.live.say(format!("  skipped: {reason}"));
                self.live.say("");
                return Ok(Outcome::Skipped { reason });
            }
            Plan::External(url) => (
                url,
                None,
                Some("the server of --redis is not this demo's to kill".to_owned()),
            ),
            Plan::Throwaway(bin) => {
                let t = match tokio::task::spawn_blocking(move || Throwaway::start(&bin))
                    .await
                    .map_err(|e| format!("starting the server: {e}"))?
                {
                    Ok(t) => t,
                    Err(e) => {
                        let reason = format!("the Redis server did not start: {e}");
                        self.live.say(format!("  skipped: {reason}"));
                        self.live.say("");
                        return Ok(Outcome::Skipped { reason });
                    }
                };
                (t.url(), Some(Arc::new(Mutex::new(t))), None)
            }
        };
        let prefix = unique_prefix();
        let shared = SharedConfig::redis(&url)
            .map_err(|e| format!("--redis {}: {e}", server::redact(&url)))?
            .prefix(&prefix)
            .open_timeout(SHARED_OPEN_TIMEOUT)
            .max_open_timeout(SHARED_MAX_OPEN_TIMEOUT)
            .max_ttl(SHARED_MAX_TTL)
            .namespace_sync_interval(Duration::ZERO);
        let server_words = match &server {
            Some(s) => {
                let s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                format!(
                    "{} ({}), throwaway, on a unix socket; stopped at the end",
                    s.version(),
                    s.bin().display()
                )
            }
            None => format!("{} (from --redis)", server::redact(&url)),
        };
        let time_scale = self.opts.time_scale.max(1).saturating_mul(PHASE_SPEEDUP);
        self.live.say(format!("  server  : {server_words}"));
        self.live.say(format!(
            "  replicas: {REPLICAS} caches, each with its own directory and a {} hot tier; request i goes to replica i mod {REPLICAS} (a round-robin load balancer), {} workers each",
            table::bytes(self.opts.hot_bytes as u64),
            self.opts.workers.max(1)
        ));
        self.live.say(format!(
            "  shared  : one prefix ({prefix}); breaker open {} doubling to {} (shortened); entries expire on the server after {}",
            table::duration(SHARED_OPEN_TIMEOUT),
            table::duration(SHARED_MAX_OPEN_TIMEOUT),
            table::duration(SHARED_MAX_TTL)
        ));
        self.live.say(format!(
            "  model   : SIMULATED as before, slept at 1/{time_scale} speed in this phase"
        ));
        let root = tempfile::Builder::new()
            .prefix("answercache-demo-replicas-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let n = self.workload.len();

        self.live
            .say("  run 1, sharing off: each replica answers only its own repeats");
        let (off, _) = self
            .replica_run(
                "sharing off",
                &root.path().join("off"),
                None,
                None,
                time_scale,
            )
            .await?;
        self.live.say(format!("  sharing off: {}", summary(&off)));

        let (kill_at, restart_at) = (n * 2 / 5, n / 2);
        let mut kill_skipped = kill_skipped;
        let plan = match &server {
            Some(s) if restart_at > kill_at && restart_at < n => {
                Some((s.clone(), kill_at, restart_at))
            }
            Some(_) => {
                kill_skipped = Some(format!("too few requests ({n}) to kill the server mid-run"));
                None
            }
            None => None,
        };
        self.live.say(match &plan {
            Some(_) => format!(
                "  run 2, sharing on: fresh caches, one shared tier; the server is killed -9 at request {kill_at} and restarted, empty, at request {restart_at}"
            ),
            None => format!(
                "  run 2, sharing on: fresh caches, one shared tier; no kill: {}",
                kill_skipped.as_deref().unwrap_or("")
            ),
        });
        let (on, run) = self
            .replica_run(
                "sharing on",
                &root.path().join("on"),
                Some(shared),
                plan,
                time_scale,
            )
            .await?;
        self.live.say(format!("  sharing on: {}", summary(&on)));
        if let Some(s) = server.clone() {
            let _ = tokio::task::spawn_blocking(move || {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .kill9()
            })
            .await;
            self.live.say("  throwaway server stopped");
        }
        let (off_calls, on_calls) = (off.model_calls, on.model_calls);
        let throwaway = server.is_some();
        let report = Report {
            server: server_words,
            throwaway,
            replicas: REPLICAS as u64,
            prefix,
            requests: n as u64,
            model_calls_without_sharing: off_calls,
            model_calls_with_sharing: on_calls,
            calls_saved: off_calls.saturating_sub(on_calls),
            shared_hits: on.shared_hits,
            errors: off.errors + on.errors,
            wrong_answers: off.wrong_answers + on.wrong_answers,
            breaker_changes: run.changes.values().sum(),
            breaker_changes_by_kind: run.changes,
            server_killed: run.kill.is_some(),
            kill_skipped: match &run.kill {
                Some(_) => None,
                None => kill_skipped.or_else(|| Some("the server was not killed".to_owned())),
            },
            shared_closed_at_end: run.closed_at_end,
            kill: run.kill,
            runs: vec![off, on],
            wall: started.elapsed(),
        };
        self.live.say("");
        Ok(Outcome::Ran(Box::new(report)))
    }

    /// One run of the workload over [`REPLICAS`] fresh caches under `dir`, with `shared` (or
    /// none) and the kill `plan` (server, kill at, restart at).
    async fn replica_run(
        &mut self,
        name: &str,
        dir: &Path,
        shared: Option<SharedConfig>,
        plan: Option<(Arc<Mutex<Throwaway>>, usize, usize)>,
        time_scale: u32,
    ) -> Result<(Run, RunFacts), BoxError> {
        let mut caches = Vec::new();
        for r in 0..REPLICAS {
            let mut b = TieredCache::builder(dir.join(format!("replica-{r}")))
                .hot_capacity_bytes(self.opts.hot_bytes);
            if let Some(cfg) = &shared {
                b = b.shared(cfg.clone());
            }
            caches.push(
                b.build()
                    .await
                    .map_err(|e| format!("cannot open replica {r} in {}: {e}", dir.display()))?,
            );
        }
        let mut facts = RunFacts::default();
        if shared.is_some() {
            // `build()` never waits for the server: the breakers start open, the first PING
            // closes them.
            let closed = wait_closed(&caches, CLOSE_WAIT).await;
            self.live.flush();
            if closed < REPLICAS as u64 {
                self.live.say(format!(
                    "  note: {} of {REPLICAS} replicas reached the server within {}; the others serve from their local tiers",
                    closed,
                    table::duration(CLOSE_WAIT)
                ));
            }
        }
        let changes_before = self.live.counts.shared_changes();
        let kill = plan.map(|(server, kill_at, restart_at)| {
            let (stage, _) = watch::channel(0u8);
            Arc::new(KillPlan {
                server,
                kill_at,
                restart_at,
                stage,
                caches: caches.clone(),
                live: self.live.clone(),
                done: Mutex::new(None),
                killed_at: Mutex::new(None),
            })
        });
        let before: Vec<Stats> = caches.iter().map(TieredCache::stats).collect();
        let started = Instant::now();
        let n = self.workload.len();
        let tally = Arc::new(RunTally::default());
        let bar = progress_bar(name, n as u64);
        self.live.set_bar(Some(bar.clone()));
        let watch = self
            .live
            .watch(&caches[0], Arc::new(super::report::Tally::default()));
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = JoinSet::new();
        for _ in 0..self.opts.workers.max(1) * REPLICAS {
            let (caches, workload, tally, next, bar, kill) = (
                caches.clone(),
                self.workload.clone(),
                tally.clone(),
                next.clone(),
                bar.clone(),
                kill.clone(),
            );
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    if let Some(k) = &kill {
                        k.before(i).await?;
                    }
                    ask(
                        &caches[i % REPLICAS],
                        &workload,
                        workload.request(i),
                        time_scale,
                        &tally,
                    )
                    .await;
                    bar.inc(1);
                    let calls = get(&tally.model_calls);
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
        let wall = started.elapsed();
        if shared.is_some() {
            // The restarted server is found by each breaker's timer: wait for it, so the
            // transitions of the recovery are in the count.
            let closed = wait_closed(&caches, CLOSE_WAIT).await;
            facts.closed_at_end = closed;
        }
        watch.finish().await;
        self.live.set_bar(None);
        bar.finish_and_clear();
        result?;
        let after: Vec<Stats> = caches.iter().map(TieredCache::stats).collect();
        let sum = |f: fn(&Stats) -> u64| -> u64 {
            before
                .iter()
                .zip(&after)
                .map(|(b, a)| f(a).saturating_sub(f(b)))
                .sum()
        };
        let run = Run {
            name: name.to_owned(),
            requests: get(&tally.requests),
            model_calls: get(&tally.model_calls),
            loader_calls: sum(|s| s.loader_calls),
            hot_hits: tally.source(Source::Hot),
            warm_hits: tally.source(Source::Warm),
            queue_hits: tally.source(Source::Queue),
            shared_hits: tally.source(Source::Shared),
            joined: tally.source(Source::Joined),
            loaded: tally.source(Source::Loaded),
            stats_shared_hits: sum(|s| s.shared_hits),
            errors: get(&tally.errors),
            wrong_answers: get(&tally.wrong),
            first_error: tally
                .first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            wall,
        };
        let mut changes = self.live.counts.shared_changes();
        for (k, v) in &changes_before {
            if let Some(c) = changes.get_mut(k) {
                *c -= v;
            }
        }
        changes.retain(|_, v| *v > 0);
        facts.changes = changes;
        if let Some(k) = &kill {
            facts.kill = k
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
        }
        for c in caches {
            if let Err(e) = c.close().await {
                self.live.say(format!("  note: closing a replica: {e}"));
            }
        }
        self.live.flush();
        Ok((run, facts))
    }
}

/// What a run knows besides its counters.
#[derive(Debug, Default)]
struct RunFacts {
    kill: Option<Kill>,
    changes: BTreeMap<String, u64>,
    closed_at_end: u64,
}

/// Waits (at most `limit`) until every cache's shared breaker is closed; how many are.
async fn wait_closed(caches: &[TieredCache], limit: Duration) -> u64 {
    let closed = || {
        caches
            .iter()
            .filter(|c| c.shared_state() == Some(BreakerState::Closed))
            .count() as u64
    };
    let deadline = Instant::now() + limit;
    while closed() < caches.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    closed()
}

/// One line for the log after a run.
fn summary(r: &Run) -> String {
    let mut line = format!(
        "{} requests in {}: {} hot hits, {} warm hits, {} queue hits, {} shared hits, {} joined -> {} model calls; {} errors, {} wrong answers",
        table::count(r.requests),
        table::duration(r.wall),
        table::count(r.hot_hits),
        table::count(r.warm_hits),
        table::count(r.queue_hits),
        table::count(r.shared_hits),
        table::count(r.joined),
        table::count(r.model_calls),
        table::count(r.errors),
        table::count(r.wrong_answers),
    );
    if let Some(e) = &r.first_error {
        line.push_str(&format!(" (first error: {e})"));
    }
    line
}
