//! A model of what every acknowledgement promised, checked across disk outages and restarts.
//!
//! Seeded random sequences of `set` / `set_with_ttl` / `set_bytes` / `remove` / `get` /
//! `flush` / `clear` / close + reopen, and a `get` racing a `set` of the same key, run on
//! tokio's paused clock over a [`FaultFs`]. Outages come and go on a seeded schedule: EIO on
//! every call, ENOSPC on writes, EROFS on writes, renames and removes (reads still work, so an
//! older file stays readable), or flaky EIO on one call in three. Short outages only open the
//! breaker; long ones (with the clock moving) reach memory-only mode. An outage ends with the
//! disk healed and, most of the time, the clock moved past `open_timeout` and
//! `recovery_interval` so that the probe and the write-back run. The hot tier holds a few
//! entries only, so dirty values are evicted (lost) while the disk is away: the interesting
//! case.
//!
//! The model ([`Model`]) knows, for every value ever set (each unique, tagged with its key and
//! serial number), what the cache may still do with it:
//! - `Current`: the last acknowledged write of its key; may be served (or missed: the cache may
//!   lose data).
//! - `Superseded`: replaced by a later `set`/`remove` in this process. Never served again by
//!   this process; after a `close` that returned **Err** and a reopen it may come back (DESIGN:
//!   `close` "reports any it could not delete"), counted (`old_back_after_err_close`).
//! - `Leftover`: a value of its key not yet made impossible when a `clear` returned Err (its
//!   file may still be there). Never served by this process (the clear's own promise); may
//!   come back after a reopen, counted (`leftover_back_after_clear_err`), until the key is
//!   written again.
//! - `Alt`: after a reopen, a value that may be the one on disk (an old one that was allowed to
//!   come back). The first read that returns one of them settles which one the disk has.
//! - `Dead`: must never be served again, by any process: superseded and then made impossible by
//!   an acknowledgement: `close` Ok, `flush` Ok, a write-through `set`/`remove` Ok on the key,
//!   `clear` Ok, or a read after a reopen that showed the key's one file holds another value.
//!
//! Durability obligations (checked after every reopen on a healthy disk, on every key):
//! - write-through `set` Ok (not `NotPersisted`): the value reads back after close + reopen,
//!   even if `close` returned Err, unless the key was touched since or the value expired;
//! - `flush` Ok / `close` Ok: every key's last value at that moment reads back (DESIGN:
//!   "`flush` returns Ok only if everything set before it began is on disk"), also a write
//!   that was lost from memory during an outage (flush must then not say Ok; such violations
//!   are labelled "[a write the disk was unavailable for: lost?]"); a removed key stays
//!   absent. Only what the closing process itself set counts: a value an earlier process set
//!   and did not persist is no promise of a later one.
//!
//! The warm budget is large, and each process asserts `warm_evictions == 0`, so nothing may be
//! missing for that reason.
//!
//! Every `get` is checked: a miss, or exactly a value the model allows, never expired (judged
//! by the clock the cache reads, shared across reopens), never another key's, never torn.
//!
//! A broken promise is recorded (the first of each kind printed in full: seed, op index, the
//! values of the key and their states, the trace tail of the key and of the run), the model is
//! resynced with what the cache showed, and the run goes on; the test fails at the end with one
//! line per promise (count, seeds, first occurrence). A call error, a torn or foreign value or
//! a hang stops the seed at once. Replay one seed exactly with
//! `ANSWERCACHE_SEED=<seed> cargo test --all-features --test resilience outage_model -- --nocapture`
//! (`ANSWERCACHE_OPS=<n>` sets the length, `ANSWERCACHE_TRACE=1` prints every operation as it is
//! done). `ANSWERCACHE_LONG=1` runs 120 seeds of 2,000 operations (a few minutes). A watchdog
//! thread ends the process with the last operations if a test does not end within 240 s of
//! real time (`ANSWERCACHE_WATCHDOG_SECS`), since a hang that blocks the runtime's thread cannot
//! be caught by a tokio timeout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{self, Fault, FaultFs, FsOp, Rule};
use answercache::workload::Rng;
use answercache::{Builder, Clock, Durability, Error, TieredCache, TokioClock, WritePolicy};

const KEYS: usize = 10;
/// Seeds and ops per seed in CI; `ANSWERCACHE_LONG=1` multiplies both.
const CI_SEEDS: u64 = 12;
const CI_OPS: usize = 500;
const LONG_SEEDS: u64 = 120;
const LONG_OPS: usize = 2000;
/// Bound on one cache call in virtual time: a hang is reported, not waited for forever.
const CALL_BOUND: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// Values: unique strings tagged `k<key>#<serial>|`, stored either through the codec (`set` of a
// `String`) or as raw bytes that are exactly the codec's encoding of that string (the default
// JSON codec: the quoted string), so that `get::<String>` and `get_bytes` read every value
// whichever way it was written, and a served value always names the key and the write it came
// from.

/// The JSON encoding of a `String` (checked against the cache's own codec by
/// `value_encoding_matches_the_codec`).
fn encode_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).expect("a string has a JSON form")
}

fn decode_string(b: &[u8]) -> Option<String> {
    serde_json::from_slice(b).ok()
}

/// `(key, serial)` of a served string, if it carries a tag.
fn parse_tag(s: &str) -> Option<(usize, usize)> {
    let tag = s.split('|').next()?;
    let rest = tag.strip_prefix('k')?;
    let (k, serial) = rest.split_once('#')?;
    Some((k.parse().ok()?, serial.parse().ok()?))
}

fn key_name(k: usize) -> String {
    format!("outage-key-{k}")
}

/// The name of a key's entry file (blake3 hex of the key, FORMAT.md).
fn key_hex(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone)]
enum St {
    /// The last acknowledged write of its key.
    Current,
    /// After a reopen: may be what the key's file holds.
    Alt { why: String },
    /// Replaced in this process; may come back only after an Err close and a reopen.
    Superseded { by: String },
    /// The key's last value when a `clear` returned Err; never served by this process.
    Leftover { by: String },
    /// Never to be served again.
    Dead { superseded: String, why: String },
}

#[derive(Debug)]
struct Val {
    key: usize,
    text: String,
    /// `(lo, hi)`: the expiry lies in this range (clock read before and after the `set`).
    exp: Option<(u64, u64)>,
    set_at: usize,
    how: &'static str,
    /// The process (counted from 0, one more per reopen) whose `set` this was.
    gen: u32,
    /// Set while the disk was unavailable (an outage, the breaker not closed, memory-only,
    /// or the set itself reported NotPersisted): such a write may have been lost from memory.
    degraded: bool,
    /// Outages begun before this set (to tell whether the disk went away after it).
    outages_before: u64,
    st: St,
}

#[derive(Debug, Default)]
struct KeyState {
    vals: Vec<usize>,
    /// A value that must read back after a reopen on a healthy disk, and why.
    durable: Option<(usize, String)>,
}

#[derive(Debug, Default)]
struct Model {
    vals: Vec<Val>,
    keys: Vec<KeyState>,
    /// The current process.
    gen: u32,
}

impl Model {
    fn new() -> Self {
        Model {
            vals: Vec::new(),
            keys: (0..KEYS).map(|_| KeyState::default()).collect(),
            gen: 0,
        }
    }

    fn supersede(&mut self, k: usize, by: &str) {
        for &s in &self.keys[k].vals {
            let v = &mut self.vals[s];
            v.st = match &v.st {
                St::Current | St::Alt { .. } => St::Superseded { by: by.to_owned() },
                St::Leftover { by: first } => St::Superseded {
                    by: format!("{first}, then {by}"),
                },
                other => other.clone(),
            };
        }
        self.keys[k].durable = None;
    }

    fn kill_superseded(&mut self, k: usize, why: &str) {
        for &s in &self.keys[k].vals {
            let v = &mut self.vals[s];
            if let St::Superseded { by } = &v.st {
                v.st = St::Dead {
                    superseded: by.clone(),
                    why: why.to_owned(),
                };
            }
        }
    }

    fn set(&mut self, v: Val, durable: Option<String>) -> usize {
        let k = v.key;
        let serial = self.vals.len();
        self.supersede(k, &format!("set #{serial} at op {}", v.set_at));
        self.vals.push(v);
        self.keys[k].vals.push(serial);
        if let Some(why) = durable {
            self.kill_superseded(k, &format!("{why} (the file was replaced)"));
            self.keys[k].durable = Some((serial, why));
        }
        serial
    }

    fn remove(&mut self, k: usize, op: usize, durable: Option<String>) {
        self.supersede(k, &format!("remove at op {op}"));
        if let Some(why) = durable {
            self.kill_superseded(k, &format!("{why} (the file was deleted)"));
        }
    }

    fn clear_ok(&mut self, op: usize) {
        for v in &mut self.vals {
            if !matches!(v.st, St::Dead { .. }) {
                let superseded = match &v.st {
                    St::Superseded { by } => by.clone(),
                    _ => format!("clear at op {op}"),
                };
                v.st = St::Dead {
                    superseded,
                    why: format!("clear returned Ok at op {op}"),
                };
            }
        }
        for k in &mut self.keys {
            k.durable = None;
        }
    }

    /// `clear` returned Err: any file there was at the time (the last value, or an older one
    /// whose replacement had not landed) may survive a restart (the clear's promise covers
    /// only this process).
    fn clear_err(&mut self, op: usize) {
        for v in &mut self.vals {
            if matches!(v.st, St::Current | St::Alt { .. } | St::Superseded { .. }) {
                v.st = St::Leftover {
                    by: format!("clear returned Err at op {op}"),
                };
            }
        }
        for k in &mut self.keys {
            k.durable = None;
        }
    }

    /// `flush` or `close` returned Ok: everything set before it (by this process) is on disk.
    /// A value an earlier process set and did not persist is no promise of this one.
    fn persisted_all(&mut self, why: &str) {
        for k in 0..KEYS {
            self.kill_superseded(k, why);
            let live: Vec<usize> = self.keys[k]
                .vals
                .iter()
                .copied()
                .filter(|&s| {
                    matches!(
                        self.vals[s].st,
                        St::Current | St::Alt { .. } | St::Leftover { .. }
                    )
                })
                .collect();
            if let [only] = live[..] {
                if matches!(self.vals[only].st, St::Current) && self.vals[only].gen == self.gen {
                    self.keys[k].durable = Some((only, why.to_owned()));
                }
            }
        }
    }

    /// A new process: what was superseded (and not made impossible since) or left by a failed
    /// clear may be what the disk holds.
    fn reopen(&mut self, op: usize) {
        self.gen += 1;
        for v in &mut self.vals {
            v.st = match &v.st {
                St::Superseded { by } => St::Alt {
                    why: format!(
                        "superseded by {by}, no Ok close/flush since; reopened at op {op}"
                    ),
                },
                St::Leftover { by } => St::Alt {
                    why: format!("{by}; reopened at op {op}"),
                },
                other => other.clone(),
            };
        }
    }

    /// A read returned `s`, a candidate: the key's one file (or memory) holds it.
    fn observed(&mut self, k: usize, s: usize, op: usize) {
        for &o in &self.keys[k].vals {
            if o == s {
                continue;
            }
            if matches!(self.vals[o].st, St::Current | St::Alt { .. }) {
                self.vals[o].st = St::Dead {
                    superseded: format!("#{s} read at op {op}"),
                    why: "another value of the key was read after a reopen (one file per key)"
                        .to_owned(),
                };
            }
        }
        self.vals[s].st = St::Current;
    }
}

// ---------------------------------------------------------------------------------------------
// The run configuration.

#[derive(Debug, Clone)]
struct Setup {
    write_through: bool,
    hot_entries: usize,
    hot_bytes: usize,
    failure_threshold: u32,
    open_timeout: Duration,
    max_open_timeout: Duration,
    memory_only_after: u32,
    recovery_interval: Duration,
    health_interval: Duration,
    sweep_interval: Duration,
    fsync: bool,
    outages: bool,
}

impl Setup {
    fn draw(seed: u64, rng: &mut Rng, outages: bool) -> Self {
        let open_ms = rng.range(500, 3000) as u64;
        Setup {
            write_through: seed % 2 == 1,
            hot_entries: rng.range(2, 5),
            hot_bytes: if rng.chance(0.3) { 2500 } else { 1 << 20 },
            failure_threshold: rng.range(2, 3) as u32,
            open_timeout: Duration::from_millis(open_ms),
            max_open_timeout: Duration::from_millis(open_ms * 4),
            memory_only_after: rng.range(3, 8) as u32,
            recovery_interval: Duration::from_millis(rng.range(1000, 5000) as u64),
            health_interval: Duration::from_millis(rng.range(1000, 6000) as u64),
            sweep_interval: Duration::from_millis(rng.range(3000, 20000) as u64),
            fsync: rng.chance(0.25),
            outages,
        }
    }

    fn builder(&self, root: &std::path::Path, fs: Arc<FaultFs>, clock: Arc<TokioClock>) -> Builder {
        testing::builder(root)
            .fs(fs)
            .clock(clock)
            .warm_capacity_bytes(1 << 30)
            .hot_capacity_entries(self.hot_entries)
            .hot_capacity_bytes(self.hot_bytes)
            .hot_shards(1)
            .write_policy(if self.write_through {
                WritePolicy::WriteThrough
            } else {
                WritePolicy::WriteBehind
            })
            .durability(if self.fsync {
                Durability::Fsync
            } else {
                Durability::NoSync
            })
            .failure_threshold(self.failure_threshold)
            .open_timeout(self.open_timeout)
            .max_open_timeout(self.max_open_timeout)
            .memory_only_after(self.memory_only_after)
            .error_window(Duration::from_secs(60))
            .recovery_interval(self.recovery_interval)
            .health_interval(self.health_interval)
            .sweep_interval(self.sweep_interval)
            // Far longer than the clock moves while a disk call is in flight: no spurious timeout.
            .io_timeout(Duration::from_secs(60))
    }

    /// Long enough for a half-open breaker to close and a recovery probe to run.
    fn recovery_time(&self) -> Duration {
        self.recovery_interval
            .max(self.max_open_timeout)
            .max(self.health_interval)
            + Duration::from_secs(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outage {
    EioAll,
    EnospcWrites,
    ErofsWrites,
    FlakyEio,
}

impl Outage {
    fn draw(rng: &mut Rng) -> Self {
        match rng.below(4) {
            0 => Outage::EioAll,
            1 => Outage::EnospcWrites,
            2 => Outage::ErofsWrites,
            _ => Outage::FlakyEio,
        }
    }

    fn inject(self, fs: &FaultFs, seed: u64) {
        let writes = [FsOp::WriteNew, FsOp::SyncFile];
        let rule = match self {
            Outage::EioAll => Rule::new(Fault::Errno(5)),
            Outage::EnospcWrites => Rule::new(Fault::Errno(28)).ops(&writes),
            Outage::ErofsWrites => Rule::new(Fault::Errno(30)).ops(&[
                FsOp::WriteNew,
                FsOp::SyncFile,
                FsOp::Rename,
                FsOp::RemoveFile,
                FsOp::RemoveDirAll,
                FsOp::CreateDirAll,
            ]),
            Outage::FlakyEio => Rule::new(Fault::Errno(5)).one_in(3, seed),
        };
        fs.add_rule(rule);
    }
}

// ---------------------------------------------------------------------------------------------
// A violation: which promise, where, and the trace that leads to it.

#[derive(Debug)]
struct Violation {
    seed: u64,
    op: usize,
    promise: String,
    detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} op {}: {}\n{}\nreplay: ANSWERCACHE_SEED={} cargo test --all-features --test resilience outage_model -- --nocapture",
            self.seed, self.op, self.promise, self.detail, self.seed
        )
    }
}

#[derive(Debug, Default, Clone)]
struct Counts {
    ops: u64,
    gets: u64,
    hits: u64,
    misses: u64,
    sets: u64,
    sets_not_persisted: u64,
    removes_not_persisted: u64,
    flush_ok: u64,
    flush_err: u64,
    clear_ok: u64,
    clear_err: u64,
    close_ok: u64,
    close_err: u64,
    reopens: u64,
    strict_reopens: u64,
    outages: BTreeMap<String, u64>,
    durable_checked: u64,
    old_back_after_err_close: u64,
    leftover_back_after_clear_err: u64,
    races: u64,
    memory_only_entries: u64,
    breaker_opens: u64,
    lost_writes: u64,
    written_back: u64,
    disk_errors: u64,
    disk_errors_by_kind: BTreeMap<String, u64>,
    last_disk_error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// One seeded run.

struct Run {
    seed: u64,
    setup: Setup,
    rng: Rng,
    root: PathBuf,
    _dir: tempfile::TempDir,
    clock: Arc<TokioClock>,
    fs: Arc<FaultFs>,
    cache: TieredCache,
    outage: Option<(Outage, usize)>,
    next_outage_at: usize,
    model: Model,
    trace: Vec<(usize, Option<usize>, String)>,
    counts: Counts,
    op: usize,
    /// Promises found broken so far (the run goes on after each, resynced).
    found: Vec<Violation>,
    /// Outages begun so far.
    outage_seq: u64,
    /// `ANSWERCACHE_TRACE=1`: print every operation as it is done.
    live_trace: bool,
    /// The last operations, shared with the watchdog that reports a hang.
    progress: Progress,
}

type Check = Result<(), Violation>;

/// Lets background tasks and blocking calls run to quiescence, moving the clock a little.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl Run {
    async fn new(seed: u64, outages: bool, progress: Progress) -> Run {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
        let setup = Setup::draw(seed, &mut rng, outages);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let clock = Arc::new(TokioClock::new());
        let fs = Arc::new(FaultFs::std());
        let cache = setup
            .builder(&root, fs.clone(), clock.clone())
            .build()
            .await
            .unwrap();
        let next_outage_at = rng.range(5, 30);
        Run {
            seed,
            setup,
            rng,
            root,
            _dir: dir,
            clock,
            fs,
            cache,
            outage: None,
            next_outage_at,
            model: Model::new(),
            trace: Vec::new(),
            counts: Counts::default(),
            op: 0,
            found: Vec::new(),
            outage_seq: 0,
            live_trace: std::env::var("ANSWERCACHE_TRACE").is_ok_and(|v| v == "1"),
            progress,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Was the disk unavailable when value `s` was set or since (its write may have been lost
    /// from memory before it landed, which DESIGN allows; `flush`/`close` must then not say Ok)?
    fn exposed(&self, s: usize) -> bool {
        let v = &self.model.vals[s];
        v.degraded || self.outage_seq > v.outages_before
    }

    /// Is the disk unavailable (for labelling writes that may be lost)?
    fn degraded(&self) -> bool {
        self.outage.is_some()
            || self.cache.mode() != answercache::Mode::Tiered
            || self.cache.breaker_state() != answercache::BreakerState::Closed
    }

    fn note(&mut self, key: Option<usize>, what: String) {
        let line = format!("seed {} op {}: {what}", self.seed, self.op);
        if self.live_trace {
            eprintln!("{line}");
        }
        self.progress.push(line);
        self.trace.push((self.op, key, what));
    }

    fn describe(&self, s: usize) -> String {
        let v = &self.model.vals[s];
        let exp = match v.exp {
            Some((lo, hi)) => format!(", expires @{lo}..{hi}"),
            None => String::new(),
        };
        format!(
            "#{s} ({} at op {} by process {}{exp}; now {:?})",
            v.how, v.set_at, v.gen, v.st
        )
    }

    fn violation(&self, key: Option<usize>, promise: &str, what: String) -> Violation {
        let mut d = String::new();
        let _ = writeln!(d, "{what}");
        let _ = writeln!(d, "setup: {:?}", self.setup);
        let _ = writeln!(
            d,
            "outage now: {:?}; mode {:?}, breaker {:?}",
            self.outage,
            self.cache.mode(),
            self.cache.breaker_state()
        );
        if let Some(k) = key {
            let _ = writeln!(d, "values of key {k}:");
            for &s in &self.model.keys[k].vals {
                let _ = writeln!(d, "  {}", self.describe(s));
            }
            let _ = writeln!(d, "durable obligation: {:?}", self.model.keys[k].durable);
            let _ = writeln!(d, "trace of key {k} (last 30):");
            let of_key: Vec<_> = self
                .trace
                .iter()
                .filter(|(_, kk, _)| kk.is_none_or(|kk| kk == k))
                .collect();
            for (op, _, what) in &of_key[of_key.len().saturating_sub(30)..] {
                let _ = writeln!(d, "  op {op}: {what}");
            }
        }
        let _ = writeln!(d, "trace (last 40 entries):");
        for (op, _, what) in &self.trace[self.trace.len().saturating_sub(40)..] {
            let _ = writeln!(d, "  op {op}: {what}");
        }
        Violation {
            seed: self.seed,
            op: self.op,
            promise: promise.to_owned(),
            detail: d,
        }
    }

    /// Runs a cache call, bounded in virtual time so that a hang is a violation.
    async fn call<T>(&self, what: &str, f: impl Future<Output = T>) -> Result<T, Violation> {
        match tokio::time::timeout(CALL_BOUND, f).await {
            Ok(r) => Ok(r),
            Err(_) => Err(self.violation(
                None,
                "no call hangs",
                format!("{what} did not return within {CALL_BOUND:?} (virtual time)"),
            )),
        }
    }

    fn value_text(&mut self, k: usize) -> String {
        let serial = self.model.vals.len();
        let mut s = format!("k{k}#{serial}|");
        let len = if self.rng.chance(0.8) {
            self.rng.range(20, 300)
        } else {
            self.rng.range(300, 1800)
        };
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
        while s.len() < len {
            s.push(char::from(self.rng.pick(ALPHA)));
        }
        s
    }

    // -- operations ---------------------------------------------------------------------------

    /// `set`, `set_with_ttl` or `set_bytes` (by `how`) of a fresh value.
    async fn op_set(&mut self, k: usize, how: u64, ttl_ms: Option<u64>) -> Check {
        let text = self.value_text(k);
        let ttl = (how == 1).then(|| {
            Duration::from_millis(ttl_ms.unwrap_or_else(|| self.rng.range(1, 6000) as u64))
        });
        let key = key_name(k);
        let t0 = self.now();
        let (r, label) = match (how, ttl) {
            (1, Some(ttl)) => (
                self.call("set_with_ttl", self.cache.set_with_ttl(&key, &text, ttl))
                    .await?,
                "set_with_ttl",
            ),
            (2, _) => (
                self.call(
                    "set_bytes",
                    self.cache.set_bytes(&key, encode_string(&text)),
                )
                .await?,
                "set_bytes",
            ),
            _ => (self.call("set", self.cache.set(&key, &text)).await?, "set"),
        };
        let t1 = self.now();
        self.counts.sets += 1;
        let serial = self.model.vals.len();
        let durable = match (&r, self.setup.write_through) {
            (Ok(()), true) => Some(format!(
                "write-through {label} #{serial} returned Ok at op {}",
                self.op
            )),
            (Ok(()), false) => None,
            (Err(Error::NotPersisted { .. }), true) => {
                self.counts.sets_not_persisted += 1;
                None
            }
            (Err(e), _) => return Err(self.violation(
                Some(k),
                "get/set never return disk errors (only a write-through set reports NotPersisted)",
                format!("{label} of key {k} returned {e:?}"),
            )),
        };
        let ttl_ms = ttl.map(|t| t.as_millis() as u64);
        let result = match &r {
            Ok(()) => "Ok".to_owned(),
            Err(e) => format!("Err({e})"),
        };
        self.note(
            Some(k),
            format!(
                "{label} k{k} = #{serial} ({} bytes{}) -> {result}",
                text.len(),
                ttl_ms.map_or(String::new(), |t| format!(", ttl {t} ms"))
            ),
        );
        self.model.set(
            Val {
                key: k,
                text,
                exp: ttl_ms.map(|t| (t0 + t, t1 + t)),
                set_at: self.op,
                how: label,
                gen: self.model.gen,
                degraded: self.degraded() || r.is_err(),
                outages_before: self.outage_seq,
                st: St::Current,
            },
            durable,
        );
        Ok(())
    }

    async fn op_remove(&mut self, k: usize) -> Check {
        let r = self.call("remove", self.cache.remove(key_name(k))).await?;
        let durable = match (&r, self.setup.write_through) {
            (Ok(_), true) => Some(format!(
                "write-through remove returned Ok at op {}",
                self.op
            )),
            (Ok(_), false) => None,
            (Err(Error::NotPersisted { .. }), true) => {
                self.counts.removes_not_persisted += 1;
                None
            }
            (Err(e), _) => {
                return Err(self.violation(
                    Some(k),
                    "remove never returns a disk error (only NotPersisted under write-through)",
                    format!("remove of key {k} returned {e:?}"),
                ))
            }
        };
        self.note(Some(k), format!("remove k{k} -> {r:?}"));
        self.model.remove(k, self.op, durable);
        Ok(())
    }

    /// Reads key `k` and checks the answer. `strict`: the disk is healthy and this is the first
    /// read since a reopen, so every durability obligation must be met.
    async fn op_get(&mut self, k: usize, strict: bool, ctx: &str) -> Check {
        let typed = self.rng.chance(0.5);
        let t = self.now();
        let key = key_name(k);
        let got: Result<Option<String>, Error> = if typed {
            self.call("get", self.cache.get::<String>(&key)).await?
        } else {
            match self.call("get_bytes", self.cache.get_bytes(&key)).await? {
                Ok(Some(b)) => match decode_string(&b) {
                    Some(s) => Ok(Some(s)),
                    None => {
                        return Err(self.violation(
                            Some(k),
                            "never a torn or foreign value",
                            format!(
                                "{ctx}: get_bytes of key {k} returned {} bytes that are no value this test wrote",
                                b.len()
                            ),
                        ))
                    }
                },
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.check_read(
            k,
            t,
            got,
            strict,
            ctx,
            if typed { "get" } else { "get_bytes" },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn check_read(
        &mut self,
        k: usize,
        t: u64,
        got: Result<Option<String>, Error>,
        strict: bool,
        ctx: &str,
        api: &str,
    ) -> Check {
        self.counts.gets += 1;
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                return Err(self.violation(
                    Some(k),
                    "get never returns a disk error",
                    format!("{ctx}: {api} of key {k} returned {e:?}"),
                ))
            }
        };
        let Some(text) = got else {
            self.counts.misses += 1;
            self.note(Some(k), format!("{ctx}: {api} k{k} -> miss @{t}"));
            if strict {
                if let Some((s, why)) = self.model.keys[k].durable.clone() {
                    let v = &self.model.vals[s];
                    let may_have_expired = v.exp.is_some_and(|(lo, _)| t >= lo);
                    if !may_have_expired {
                        let degraded = self.exposed(s);
                        let v = self.violation(
                            Some(k),
                            &promise_of_durability(&why, degraded),
                            format!(
                                "{ctx}: {api} of key {k} @{t} missed; {} must read back: {why}",
                                self.describe(s)
                            ),
                        );
                        self.record(v);
                        // Resync: the value is gone; should it ever come back, that is
                        // reported too.
                        self.model.keys[k].durable = None;
                        self.model.vals[s].st = St::Dead {
                            superseded: format!("nothing (it was missing at op {})", self.op),
                            why: "it was missing after a reopen on a healthy disk".into(),
                        };
                    }
                }
            }
            return Ok(());
        };
        self.counts.hits += 1;
        let Some((kk, s)) = parse_tag(&text).filter(|&(_, s)| s < self.model.vals.len()) else {
            return Err(self.violation(
                Some(k),
                "never a torn or foreign value",
                format!(
                    "{ctx}: {api} of key {k} returned {} bytes with no known tag: {:?}",
                    text.len(),
                    &text[..text.len().min(40)]
                ),
            ));
        };
        self.note(Some(k), format!("{ctx}: {api} k{k} -> #{s} @{t}"));
        if kk != k || self.model.vals[s].key != k {
            return Err(self.violation(
                Some(k),
                "never another key's value",
                format!(
                    "{ctx}: {api} of key {k} returned {} of key {kk}",
                    self.describe(s)
                ),
            ));
        }
        if self.model.vals[s].text != text {
            return Err(self.violation(
                Some(k),
                "never a torn or foreign value",
                format!(
                    "{ctx}: {api} of key {k} returned a value tagged #{s} whose bytes differ from what was set"
                ),
            ));
        }
        if let Some((_, hi)) = self.model.vals[s].exp {
            if t >= hi {
                let v = self.violation(
                    Some(k),
                    "never an expired value",
                    format!(
                        "{ctx}: {api} of key {k} @{t} returned {}, expired at the latest @{hi}",
                        self.describe(s)
                    ),
                );
                self.record(v);
                return Ok(());
            }
        }
        if strict {
            if let Some((d, why)) = self.model.keys[k].durable.clone() {
                // (A durable value that may have expired owes nothing; what was read instead
                // is judged by its own state below.)
                let d_may_have_expired = self.model.vals[d].exp.is_some_and(|(lo, _)| t >= lo);
                if d != s && !d_may_have_expired {
                    let degraded = self.exposed(d);
                    let v = self.violation(
                        Some(k),
                        &promise_of_durability(&why, degraded),
                        format!(
                            "{ctx}: {api} of key {k} returned {} instead of the durable {} ({why})",
                            self.describe(s),
                            self.describe(d)
                        ),
                    );
                    self.record(v);
                    self.model.keys[k].durable = None;
                    self.model.observed(k, s, self.op);
                    return Ok(());
                }
            }
        }
        match self.model.vals[s].st.clone() {
            St::Current => {
                self.model.observed(k, s, self.op);
                return Ok(());
            }
            St::Alt { why } => {
                if why.contains("clear returned Err") {
                    self.counts.leftover_back_after_clear_err += 1;
                } else {
                    self.counts.old_back_after_err_close += 1;
                }
                self.note(
                    Some(k),
                    format!("  (allowed: #{s} came back after a reopen: {why})"),
                );
                self.model.observed(k, s, self.op);
                return Ok(());
            }
            _ => {}
        }
        let v = match self.model.vals[s].st.clone() {
            St::Current | St::Alt { .. } => unreachable!(),
            St::Superseded { by } => {
                let promise = if self
                    .model
                    .keys[k]
                    .vals
                    .iter()
                    .any(|&o| matches!(self.model.vals[o].st, St::Current | St::Alt { .. }))
                {
                    "never an older value in the live process"
                } else {
                    "never a removed key's value in the live process"
                };
                self.violation(
                    Some(k),
                    promise,
                    format!(
                        "{ctx}: {api} of key {k} @{t} returned {}, superseded by {by} in this process",
                        self.describe(s)
                    ),
                )
            }
            St::Leftover { by } => self.violation(
                Some(k),
                "clear Err: this process never serves an entry created before the clear",
                format!(
                    "{ctx}: {api} of key {k} returned {} ({by})",
                    self.describe(s)
                ),
            ),
            St::Dead { superseded, why } => self.violation(
                Some(k),
                &promise_of_death(&why),
                format!(
                    "{ctx}: {api} of key {k} @{t} returned {}, superseded by {superseded}, then {why}",
                    self.describe(s)
                ),
            ),
        };
        self.record(v);
        // Resync with what the cache shows (hot, queue and disk are read in that order, so a
        // value served means nothing newer is held): the run goes on to find more.
        self.model.observed(k, s, self.op);
        Ok(())
    }

    /// Records a broken promise; the run continues (the caller resyncs the model).
    fn record(&mut self, v: Violation) {
        let first_of_kind = !self.found.iter().any(|f| f.promise == v.promise);
        if first_of_kind {
            eprintln!("\n==== {v}\n");
        } else {
            eprintln!("==== seed {} op {}: {} (again)", v.seed, v.op, v.promise);
        }
        self.found.push(v);
    }

    /// A `get` and a `set` of the same key at once: the get may return the value before the
    /// set or the new one (or a miss), nothing else.
    async fn op_race(&mut self, k: usize) -> Check {
        self.counts.races += 1;
        let text = self.value_text(k);
        let key = key_name(k);
        let typed = self.rng.chance(0.5);
        let t = self.now();
        let cache = self.cache.clone();
        let get = async {
            if typed {
                cache.get::<String>(&key).await
            } else {
                cache
                    .get_bytes(&key)
                    .await
                    .map(|o| o.map(|b| decode_string(&b).unwrap_or_else(|| "<torn>".into())))
            }
        };
        let (got, set) = self
            .call("a get racing a set", async {
                tokio::join!(get, self.cache.set(&key, &text))
            })
            .await?;
        let serial = self.model.vals.len();
        let api = if typed { "get" } else { "get_bytes" };
        // The read is judged against the state before the set (the model does not know the
        // new value yet), except that the new value itself is also a right answer.
        let new_value = matches!(&got, Ok(Some(g)) if *g == text);
        if new_value {
            self.counts.gets += 1;
            self.counts.hits += 1;
            self.note(
                Some(k),
                format!("race: {api} k{k} -> #{serial} (the racing set) @{t}"),
            );
        } else {
            self.check_read(k, t, got, false, "race", api)?;
        }
        let durable = match (&set, self.setup.write_through) {
            (Ok(()), true) => Some(format!(
                "write-through set #{serial} (racing a get) returned Ok at op {}",
                self.op
            )),
            (Ok(()), false) => None,
            (Err(Error::NotPersisted { .. }), true) => None,
            (Err(e), _) => return Err(self.violation(
                Some(k),
                "get/set never return disk errors (only a write-through set reports NotPersisted)",
                format!("set of key {k} (racing a get) returned {e:?}"),
            )),
        };
        self.note(
            Some(k),
            format!(
                "race: set k{k} = #{serial} ({} bytes) -> {set:?}, with a get",
                text.len()
            ),
        );
        let degraded = self.degraded() || set.is_err();
        self.model.set(
            Val {
                key: k,
                text,
                exp: None,
                set_at: self.op,
                how: "set (racing a get)",
                gen: self.model.gen,
                degraded,
                outages_before: self.outage_seq,
                st: St::Current,
            },
            durable,
        );
        Ok(())
    }

    async fn op_flush(&mut self) -> Check {
        let r = self.call("flush", self.cache.flush()).await?;
        self.note(None, format!("flush -> {}", short(&r)));
        match r {
            Ok(()) => {
                self.counts.flush_ok += 1;
                let lost = self.cache.stats().lost_writes;
                self.model.persisted_all(&format!(
                    "flush returned Ok at op {} (this process counted {lost} lost writes)",
                    self.op
                ));
                Ok(())
            }
            Err(Error::NotPersisted { .. }) => {
                self.counts.flush_err += 1;
                Ok(())
            }
            Err(e) => Err(self.violation(
                None,
                "flush reports only NotPersisted",
                format!("flush returned {e:?}"),
            )),
        }
    }

    async fn op_clear(&mut self) -> Check {
        let r = self.call("clear", self.cache.clear()).await?;
        self.note(None, format!("clear -> {}", short(&r)));
        match r {
            Ok(()) => {
                self.counts.clear_ok += 1;
                self.model.clear_ok(self.op);
                Ok(())
            }
            Err(Error::NotPersisted { .. }) => {
                self.counts.clear_err += 1;
                self.model.clear_err(self.op);
                Ok(())
            }
            Err(e) => Err(self.violation(
                None,
                "clear reports only NotPersisted",
                format!("clear returned {e:?}"),
            )),
        }
    }

    fn collect_stats(&mut self) -> Check {
        let s = self.cache.stats();
        if s.warm_evictions != 0 {
            return Err(self.violation(
                None,
                "fixture: the warm budget is large, nothing is evicted from disk",
                format!("warm_evictions = {}", s.warm_evictions),
            ));
        }
        self.counts.memory_only_entries += s.memory_only_entries;
        self.counts.breaker_opens += s.breaker_opens;
        self.counts.lost_writes += s.lost_writes;
        self.counts.written_back += s.written_back;
        self.counts.disk_errors += s.disk_errors;
        for (kind, n) in &s.disk_errors_by_kind {
            *self
                .counts
                .disk_errors_by_kind
                .entry(kind.clone())
                .or_default() += n;
        }
        if s.last_disk_error.is_some() {
            self.counts.last_disk_error = s.last_disk_error;
        }
        Ok(())
    }

    /// close + reopen. `variant`: 0 heal the disk (same `FaultFs`), 1 a new `FaultFs`, 2 the
    /// disk dies first (a flush, then EIO on every call, then close), 3 the outage goes on in
    /// the new process.
    async fn op_reopen(&mut self, variant: u64) -> Check {
        self.collect_stats()?;
        let lost_before = self.cache.stats().lost_writes;
        if variant == 2 {
            if self.rng.chance(0.6) {
                self.op_flush().await?;
            }
            self.fs.add_rule(Rule::new(Fault::Errno(5)));
            self.note(None, "the disk dies: EIO on every call".into());
        }
        let r = self.call("close", self.cache.close()).await?;
        self.note(None, format!("close -> {}", short(&r)));
        match r {
            Ok(()) => {
                self.counts.close_ok += 1;
                self.model.persisted_all(&format!(
                    "close returned Ok at op {} (this process counted {} lost writes)",
                    self.op,
                    lost_before.max(self.cache.stats().lost_writes)
                ));
            }
            Err(Error::NotPersisted { .. }) => self.counts.close_err += 1,
            Err(e) => {
                return Err(self.violation(
                    None,
                    "close reports only NotPersisted",
                    format!("close returned {e:?}"),
                ))
            }
        }
        let strict = match variant {
            3 if self.outage.is_some() => false,
            0 | 3 => {
                self.fs.clear_rules();
                true
            }
            _ => {
                self.fs = Arc::new(FaultFs::std());
                true
            }
        };
        if strict && self.outage.take().is_some() {
            self.next_outage_at = self.op + self.rng.range(5, 40);
        }
        self.model.reopen(self.op);
        self.counts.reopens += 1;
        self.note(
            None,
            format!(
                "reopen ({})",
                if strict {
                    "healthy disk"
                } else {
                    "the outage goes on"
                }
            ),
        );
        let built = self
            .call(
                "open",
                self.setup
                    .builder(&self.root, self.fs.clone(), self.clock.clone())
                    .build(),
            )
            .await?;
        self.cache = match built {
            Ok(c) => c,
            Err(e) => {
                return Err(self.violation(
                    None,
                    "open degrades, it does not fail, on a sick disk",
                    format!("build returned {e:?}"),
                ))
            }
        };
        if strict {
            self.counts.strict_reopens += 1;
            // The startup scan of the warm index, so its calls do not interleave with reads.
            for _ in 0..2000 {
                if self.cache.stats().warm_index_complete {
                    break;
                }
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for k in 0..KEYS {
            if strict && self.model.keys[k].durable.is_some() {
                self.counts.durable_checked += 1;
            }
            self.op_get(k, strict, "after reopen").await?;
        }
        for i in 0..2 {
            let key = format!("never-set-{i}");
            let got = self.call("get", self.cache.get_bytes(&key)).await?;
            if !matches!(got, Ok(None)) {
                return Err(self.violation(
                    None,
                    "never another key's value",
                    format!("after reopen: a never-set key read {got:?}"),
                ));
            }
        }
        Ok(())
    }

    // -- time and outages ---------------------------------------------------------------------

    async fn advance(&mut self, by: Duration) {
        settle().await;
        let step = Duration::from_millis(500);
        let mut left = by;
        while !left.is_zero() {
            let d = left.min(step);
            tokio::time::advance(d).await;
            settle().await;
            left -= d;
        }
    }

    async fn start_outage(&mut self) {
        let kind = Outage::draw(&mut self.rng);
        let long = self.rng.chance(0.4);
        let len = if long {
            self.rng.range(25, 70)
        } else {
            self.rng.range(2, 8)
        };
        kind.inject(&self.fs, self.seed ^ self.op as u64);
        self.outage_seq += 1;
        self.outage = Some((kind, self.op + len));
        *self
            .counts
            .outages
            .entry(format!("{kind:?}{}", if long { "-long" } else { "-short" }))
            .or_default() += 1;
        self.note(
            None,
            format!(
                "outage {kind:?} starts, for {len} ops (mode {:?})",
                self.cache.mode()
            ),
        );
    }

    async fn end_outage(&mut self) {
        let recover = self.rng.chance(0.7);
        self.fs.clear_rules();
        self.outage = None;
        self.next_outage_at = self.op + self.rng.range(5, 40);
        let (mode, breaker) = (self.cache.mode(), self.cache.breaker_state());
        if recover {
            self.advance(self.setup.recovery_time()).await;
        }
        self.note(
            None,
            format!(
                "outage ends (mode {mode:?}, breaker {breaker:?}){}",
                if recover {
                    format!(
                        "; clock moved {:?}: now mode {:?}, breaker {:?}, dirty {}",
                        self.setup.recovery_time(),
                        self.cache.mode(),
                        self.cache.breaker_state(),
                        self.cache.stats().dirty_entries
                    )
                } else {
                    String::new()
                }
            ),
        );
    }

    async fn step(&mut self) -> Check {
        if self.setup.outages {
            match self.outage {
                Some((_, end)) if self.op >= end => self.end_outage().await,
                None if self.op >= self.next_outage_at => self.start_outage().await,
                _ => {}
            }
        }
        // A little time passes between operations; timers fire.
        let dt = self.rng.below(300) as u64;
        tokio::time::advance(Duration::from_millis(dt)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let k = self.rng.below(KEYS);
        let r = self.rng.below(1000);
        self.counts.ops += 1;
        let line = format!(
            "seed {} op {}: starting (draw {r}, key {k})",
            self.seed, self.op
        );
        if self.live_trace {
            eprintln!("{line}");
        }
        self.progress.push(line);
        match r {
            0..=229 => self.op_set(k, 0, None).await,
            230..=309 => self.op_set(k, 1, None).await,
            310..=419 => self.op_set(k, 2, None).await,
            420..=489 => self.op_remove(k).await,
            490..=769 => self.op_get(k, false, "get").await,
            770..=809 => self.op_flush().await,
            810..=821 => self.op_clear().await,
            822..=861 => {
                let variant = self.rng.below(4) as u64;
                self.op_reopen(variant).await
            }
            862..=889 => self.op_race(k).await,
            890..=909 => {
                // A read that finds an expired file races a newer write of the key: the read
                // may delete only the file it judged, never the newer one.
                let ttl = self.rng.range(1, 40) as u64;
                self.op_set(k, 1, Some(ttl)).await?;
                self.op_flush().await?;
                self.note(None, format!("clock +{} ms", ttl + 1));
                self.advance(Duration::from_millis(ttl + 1)).await;
                // The read's deletion of the expired file is slowed down, so that the newer
                // write lands in between (the order in which a careless delete removes it).
                self.fs.add_rule(
                    Rule::new(Fault::Delay(Duration::from_millis(20)))
                        .ops(&[FsOp::RemoveFile])
                        .path_contains(key_hex(&key_name(k)))
                        .times(1),
                );
                self.note(
                    Some(k),
                    "the next delete of its file is slowed by 20 ms".into(),
                );
                self.op_race(k).await
            }
            910..=979 => {
                let ms = self.rng.range(1, 4000) as u64;
                self.note(None, format!("clock +{ms} ms"));
                self.advance(Duration::from_millis(ms)).await;
                Ok(())
            }
            _ => {
                let d = self.setup.recovery_time();
                self.note(None, format!("clock +{d:?} (past the recovery interval)"));
                self.advance(d).await;
                Ok(())
            }
        }
    }

    /// Runs `ops` operations, then a last close and a reopen on a healthy disk that checks
    /// every key.
    async fn run(&mut self, ops: usize) -> Check {
        while self.op < ops {
            self.step().await?;
            self.op += 1;
        }
        self.op_reopen(1).await?;
        self.collect_stats()?;
        let r = self.call("close", self.cache.close()).await?;
        if let Err(e) = r {
            return Err(self.violation(
                None,
                "close on a healthy disk after a healthy reopen persists everything",
                format!("the last close returned {e:?}"),
            ));
        }
        Ok(())
    }
}

fn short<T: std::fmt::Debug>(r: &answercache::Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e})"),
    }
}

fn promise_of_durability(why: &str, degraded: bool) -> String {
    let promise = if why.starts_with("write-through") {
        "write-through set Ok means durable: it reads back after close + reopen"
    } else if why.starts_with("flush") {
        "flush Ok means everything set before it is on disk"
    } else if why.starts_with("close") {
        "close Ok means everything set before it is on disk"
    } else {
        why
    };
    if degraded && !why.starts_with("write-through") {
        // DESIGN allows a write to be lost (evicted while the disk was away); flush/close must
        // then not report Ok ("Ok only if everything set before it began is on disk").
        format!("{promise} [a write the disk was unavailable for: lost?]")
    } else {
        promise.to_owned()
    }
}

fn promise_of_death(why: &str) -> String {
    if why.starts_with("close returned Ok") {
        "after close Ok and a reopen, nothing older than the last set (nor a removed key) is served"
            .into()
    } else if why.starts_with("flush returned Ok") {
        "after flush Ok, nothing superseded before it is ever served again".into()
    } else if why.starts_with("write-through") {
        "after a write-through set/remove Ok, the key's older values never come back".into()
    } else if why.starts_with("clear returned Ok") {
        "clear Ok: nothing set before it ever comes back".into()
    } else if why.starts_with("another value") {
        "one file per key: after reading one value, an unread alternative never appears".into()
    } else {
        format!("never served again ({why})")
    }
}

// ---------------------------------------------------------------------------------------------
// Drivers.

/// The last operations of the runs of one test, for the watchdog.
#[derive(Clone, Default)]
struct Progress(Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

impl Progress {
    fn push(&self, line: String) {
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() == 30 {
            q.pop_front();
        }
        q.push_back(line);
    }
}

/// A hang that blocks the runtime's thread cannot be bounded by a tokio timeout: after
/// `limit` of real time a plain thread prints where the run was and ends the process.
struct Watchdog(Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    fn start(label: &str, limit: Duration, progress: Progress) -> Watchdog {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let label = label.to_owned();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + limit;
            while std::time::Instant::now() < deadline {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let q = progress
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            eprintln!(
                "outage_model ({label}): no end within {limit:?} of real time: a hang. Last operations:"
            );
            for line in q.iter() {
                eprintln!("  {line}");
            }
            eprintln!("replay with ANSWERCACHE_TRACE=1 ANSWERCACHE_SEED=<seed> to see it live");
            std::process::exit(101);
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn long_mode() -> bool {
    std::env::var("ANSWERCACHE_LONG").is_ok_and(|v| v == "1")
}

async fn run_seeds(seeds: Vec<u64>, ops: usize, outages: bool, label: &str) {
    let mut failures: Vec<Violation> = Vec::new();
    let mut failed_seeds = 0;
    let mut total = Counts::default();
    let progress = Progress::default();
    let limit = Duration::from_secs(
        env_u64("ANSWERCACHE_WATCHDOG_SECS").unwrap_or(if long_mode() { 3600 } else { 240 }),
    );
    let _watchdog = Watchdog::start(label, limit, progress.clone());
    for &seed in &seeds {
        let mut run = Run::new(seed, outages, progress.clone()).await;
        let result = run.run(ops).await;
        let c = &run.counts;
        let mut found: Vec<Violation> = std::mem::take(&mut run.found);
        let fatal = result.err();
        let verdict = match (&fatal, found.first()) {
            (Some(v), _) => format!("STOPPED at op {}: {}", v.op, v.promise),
            (None, Some(v)) => format!(
                "{} broken, first at op {}: {}",
                found.len(),
                v.op,
                v.promise
            ),
            (None, None) => "ok".to_owned(),
        };
        println!(
            "RELIABILITY outage-model {label} seed={seed} write_through={} ops={} gets={} hits={} misses={} sets={} not_persisted={} flush_ok={} flush_err={} clear_ok={} clear_err={} close_ok={} close_err={} reopens={} durable_checked={} old_back_after_err_close={} leftover_back_after_clear_err={} outages={:?} memory_only_entries={} breaker_opens={} lost_writes={} written_back={} disk_errors={} by_kind={:?} result={verdict}",
            run.setup.write_through,
            c.ops,
            c.gets,
            c.hits,
            c.misses,
            c.sets,
            c.sets_not_persisted + c.removes_not_persisted,
            c.flush_ok,
            c.flush_err,
            c.clear_ok,
            c.clear_err,
            c.close_ok,
            c.close_err,
            c.reopens,
            c.durable_checked,
            c.old_back_after_err_close,
            c.leftover_back_after_clear_err,
            c.outages,
            c.memory_only_entries,
            c.breaker_opens,
            c.lost_writes,
            c.written_back,
            c.disk_errors,
            c.disk_errors_by_kind,
        );
        total.ops += c.ops;
        total.memory_only_entries += c.memory_only_entries;
        total.breaker_opens += c.breaker_opens;
        total.close_err += c.close_err;
        total.durable_checked += c.durable_checked;
        total.disk_errors += c.disk_errors;
        if let Some(v) = fatal {
            eprintln!("\n==== {v}\n");
            found.push(v);
        }
        if !found.is_empty() {
            failed_seeds += 1;
        }
        failures.extend(found);
        // The cache handle may be open after a fatal violation: close it, ignoring the outcome.
        run.fs.clear_rules();
        let _ = tokio::time::timeout(CALL_BOUND, run.cache.close()).await;
    }
    if outages {
        // The scenario reached what it is about.
        if seeds.len() > 1 {
            assert!(total.breaker_opens > 0, "no outage opened the breaker");
            assert!(
                total.memory_only_entries > 0,
                "no outage reached memory-only mode"
            );
            assert!(
                total.durable_checked > 0,
                "no durability obligation was checked"
            );
        }
    } else {
        // The control must be fault-free for its verdict to mean anything.
        assert_eq!(total.disk_errors, 0, "the control run saw disk errors");
    }
    if !failures.is_empty() {
        // One line per promise: how often, in how many seeds, and the first occurrence.
        let mut by_promise: BTreeMap<&str, (usize, Vec<u64>, &Violation)> = BTreeMap::new();
        for v in &failures {
            let e = by_promise.entry(&v.promise).or_insert((0, Vec::new(), v));
            e.0 += 1;
            if !e.1.contains(&v.seed) {
                e.1.push(v.seed);
            }
        }
        let mut msg = format!(
            "{failed_seeds} of {} seeds broke promises ({label}), {} violations:\n",
            seeds.len(),
            failures.len()
        );
        for (promise, (n, in_seeds, first)) in &by_promise {
            let _ = writeln!(
                msg,
                "  {n} x {promise}: seeds {in_seeds:?}; first: seed {} op {}",
                first.seed, first.op
            );
        }
        let _ = writeln!(
            msg,
            "\nthe first violation of each promise is printed above in full (stderr)"
        );
        panic!("{msg}");
    }
}

fn seeds_and_ops(first: u64) -> (Vec<u64>, usize) {
    let ops = env_u64("ANSWERCACHE_OPS").map(|n| n as usize);
    if let Some(seed) = env_u64("ANSWERCACHE_SEED") {
        return (
            vec![seed],
            ops.unwrap_or(if long_mode() { LONG_OPS } else { CI_OPS }),
        );
    }
    if long_mode() {
        (
            (first..first + LONG_SEEDS).collect(),
            ops.unwrap_or(LONG_OPS),
        )
    } else {
        ((first..first + CI_SEEDS).collect(), ops.unwrap_or(CI_OPS))
    }
}

/// The model across outages, recoveries and restarts (write-behind on even seeds,
/// write-through on odd ones).
#[tokio::test(start_paused = true)]
async fn acknowledgements_hold_across_outages_and_restarts() {
    let (seeds, ops) = seeds_and_ops(1);
    run_seeds(seeds, ops, true, "outages").await;
}

/// The same model with no fault at all: a control that the model itself demands nothing the
/// design does not promise (every close is Ok here, so every value must read back).
#[tokio::test(start_paused = true)]
async fn acknowledgements_hold_without_outages() {
    let (seeds, ops) = seeds_and_ops(1001);
    let seeds = if env_u64("ANSWERCACHE_SEED").is_some() {
        seeds
    } else {
        seeds.into_iter().take(4).collect()
    };
    run_seeds(seeds, ops, false, "no-outages").await;
}

/// The fixture's hand-made byte values are exactly the codec's encoding of the same strings,
/// so `get::<String>` and `get_bytes` read every value whichever way it was written.
#[tokio::test(start_paused = true)]
async fn value_encoding_matches_the_codec() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TieredCache::builder(dir.path())
        .min_free_bytes(0)
        .build()
        .await
        .unwrap();
    for len in [0usize, 1, 250, 251, 300, 1800, 70_000] {
        let text: String = std::iter::repeat_n('x', len).collect();
        cache.set("typed", &text).await.unwrap();
        let raw = cache.get_bytes("typed").await.unwrap().unwrap();
        assert_eq!(&raw[..], &encode_string(&text)[..], "len {len}");
        assert_eq!(decode_string(&raw).as_deref(), Some(text.as_str()));
        cache.set_bytes("raw", encode_string(&text)).await.unwrap();
        assert_eq!(cache.get::<String>("raw").await.unwrap(), Some(text));
    }
    cache.close().await.unwrap();
}
