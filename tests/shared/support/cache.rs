//! The shared tier's side of the harness: replicas (caches with their own directories on one
//! Redis), the breaker watch, the Redis key layout of SHARED_TIER.md §3, and the figures the
//! scenarios read from `Stats`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::{BreakerState, Builder, SharedConfig, Stats, TieredCache};

/// The per-operation timeout of the scenarios (the default).
pub const TIMEOUT: Duration = Duration::from_millis(200);
/// The breaker's open timeout in the scenarios (5 s by default): shortened so that a recovery
/// takes a fraction of a second.
pub const OPEN_TIMEOUT: Duration = Duration::from_millis(300);
/// The cap of the doubling open timeout in the scenarios.
pub const MAX_OPEN_TIMEOUT: Duration = Duration::from_millis(600);
/// What a loaded 2-core machine may add to a bound (scheduling, a disk call).
pub const SLACK: Duration = Duration::from_millis(100);
/// A timer that never fires during a test.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// The scenarios' shared settings on `url`: `prefix`, [`TIMEOUT`], [`OPEN_TIMEOUT`] doubling
/// to [`MAX_OPEN_TIMEOUT`], no namespace sync (a scenario that needs it sets it).
pub fn config(url: &str, prefix: &str) -> SharedConfig {
    SharedConfig::redis(url)
        .expect("a valid URL")
        .prefix(prefix)
        .timeout(TIMEOUT)
        .failure_threshold(3)
        .open_timeout(OPEN_TIMEOUT)
        .max_open_timeout(MAX_OPEN_TIMEOUT)
        .namespace_sync_interval(Duration::ZERO)
}

/// A local builder for `root`: the test fixture's settings, disk timers off, no fsync (the
/// disk is not under test; seeding thousands of entries must not wait for the device).
pub fn local_builder(root: &Path) -> Builder {
    answercache::testing::builder(root)
        .durability(answercache::Durability::NoSync)
        .health_interval(DAY)
        .sweep_interval(DAY)
        .recovery_interval(DAY)
}

/// One replica: a cache with a directory of its own.
pub struct Replica {
    /// The cache.
    pub cache: TieredCache,
    dir: tempfile::TempDir,
}

impl Replica {
    /// Its root directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Its stats.
    pub fn stats(&self) -> Stats {
        self.cache.stats()
    }
}

impl std::ops::Deref for Replica {
    type Target = TieredCache;
    fn deref(&self) -> &TieredCache {
        &self.cache
    }
}

/// A replica on `config`, built from `local` (a builder taking the directory).
pub async fn replica_with(
    shared: Option<SharedConfig>,
    local: impl FnOnce(&Path) -> Builder,
) -> Replica {
    let dir = tempfile::tempdir().expect("replica dir");
    let mut b = local(dir.path());
    if let Some(cfg) = shared {
        b = b.shared(cfg);
    }
    let cache = b.build().await.expect("build a replica");
    Replica { cache, dir }
}

/// A replica with the fixture's local settings.
pub async fn replica(shared: SharedConfig) -> Replica {
    replica_with(Some(shared), local_builder).await
}

/// `n` replicas on one config, each waited for until its breaker is Closed.
pub async fn replicas(n: usize, shared: &SharedConfig) -> Vec<Replica> {
    let mut v = Vec::new();
    for _ in 0..n {
        let r = replica(shared.clone()).await;
        wait_closed(&r.cache).await;
        v.push(r);
    }
    v
}

/// Polls until the shared breaker is in `state`; how long it took.
pub async fn wait_state(
    cache: &TieredCache,
    state: BreakerState,
    limit: Duration,
) -> Option<Duration> {
    super::poll_until(limit, || cache.shared_state() == Some(state)).await
}

/// Waits (5 s at most, else panics) until the shared breaker is Closed: `build()` starts it
/// Open and a background `PING` closes it.
pub async fn wait_closed(cache: &TieredCache) -> Duration {
    wait_state(cache, BreakerState::Closed, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the shared tier never closed: {:?}, {:?}",
                cache.shared_state(),
                shared_figures(&cache.stats())
            )
        })
}

/// Redis key of an entry: `<prefix>:v1:e:<64 hex of blake3(stored key)>`.
pub fn entry_key(prefix: &str, stored_key: &[u8]) -> String {
    format!("{prefix}:v1:e:{}", blake3::hash(stored_key).to_hex())
}

/// Redis key of a namespace's generation: `<prefix>:v1:{nsgen}:<name>`.
pub fn nsgen_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:v1:{{nsgen}}:{name}")
}

/// Redis key of a lease: `<prefix>:v1:lease:<64 hex of blake3(stored key)>`.
pub fn lease_key(prefix: &str, stored_key: &[u8]) -> String {
    format!("{prefix}:v1:lease:{}", blake3::hash(stored_key).to_hex())
}

/// A generation as Redis holds it: 16 lower-case hex digits.
pub fn gen_hex(g: u64) -> String {
    format!("{g:016x}")
}

/// `expires_ms` of an entry file's header (bytes 24..32).
pub fn header_expires_ms(entry: &[u8]) -> u64 {
    u64::from_le_bytes(entry[24..32].try_into().expect("a header"))
}

/// `created_ms` of an entry file's header (bytes 16..24).
pub fn header_created_ms(entry: &[u8]) -> u64 {
    u64::from_le_bytes(entry[16..24].try_into().expect("a header"))
}

/// `cost` of an entry file's header (bytes 48..56).
pub fn header_cost(entry: &[u8]) -> u64 {
    u64::from_le_bytes(entry[48..56].try_into().expect("a header"))
}

/// The warm tier's file of `stored_key` under `root` (FORMAT.md: `v2/ab/<hash>`).
pub fn warm_file(root: &Path, stored_key: &[u8]) -> std::path::PathBuf {
    let hex = blake3::hash(stored_key).to_hex();
    root.join("v2").join(&hex[..2]).join(hex.as_str())
}

/// Wall-clock unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// A counter of a by-kind map (0 when absent).
pub fn by(map: &std::collections::BTreeMap<String, u64>, k: &str) -> u64 {
    map.get(k).copied().unwrap_or(0)
}

/// The shared figures of a snapshot, for messages.
pub fn shared_figures(s: &Stats) -> String {
    format!(
        "state={:?} hits={} misses={} rejections={} errors={} {:?} writes_ok={} failed={} \
         dropped={} {:?} oom={} corrupted={} {:?} queue={}B/{} opens={} probes={}/{} \
         ns_syncs={} ns_changes={} ns_pending={} lease acq={} waits={} served={} takeovers={} \
         wait_timeouts={} loader_calls={} cost_saved={}",
        s.shared_state,
        s.shared_hits,
        s.shared_misses,
        s.shared_rejections,
        s.shared_errors,
        s.shared_errors_by_kind,
        s.shared_writes_ok,
        s.shared_writes_failed,
        s.shared_writes_dropped,
        s.shared_writes_dropped_by_reason,
        s.shared_write_rejected_oom,
        s.shared_corrupted,
        s.shared_corrupted_by_reason,
        s.shared_queue_bytes,
        s.shared_queue_entries,
        s.shared_breaker_opens,
        s.shared_probes_ok,
        s.shared_probes_run,
        s.namespace_syncs,
        s.namespace_changes_seen,
        s.namespace_invalidations_pending,
        s.shared_lease_acquired,
        s.shared_lease_waits,
        s.shared_lease_waits_served,
        s.shared_lease_takeovers,
        s.shared_lease_wait_timeouts,
        s.loader_calls,
        s.cost_saved,
    )
}

/// Breaker transitions implied by the counters: every entry into Open
/// (`shared_breaker_opens`), every probe (Open → HalfOpen) and every successful one
/// (HalfOpen → Closed).
pub fn transitions(s: &Stats) -> u64 {
    s.shared_breaker_opens + s.shared_probes_run + s.shared_probes_ok
}

/// [`transitions`] between two snapshots.
pub fn transitions_between(before: &Stats, after: &Stats) -> u64 {
    transitions(after) - transitions(before)
}

/// One observed breaker state, with the stats at that moment.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it was first seen.
    pub at: Instant,
    /// The state.
    pub state: Option<BreakerState>,
    /// The cache's stats then.
    pub stats: Stats,
}

/// Watches a cache's shared breaker from a thread of its own (every 200 µs, independent of
/// the runtime's scheduling) and records every change with the stats of the moment. A state
/// held for less than the polling period may be missed: the counters are the exact record,
/// the watch the timeline.
pub struct StateWatch {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StateWatch {
    /// Starts watching `cache`.
    pub fn start(cache: &TieredCache) -> StateWatch {
        let cache = cache.clone();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut last = None;
                while !stop.load(Ordering::Relaxed) {
                    let state = cache.shared_state();
                    if last != Some(state) {
                        last = Some(state);
                        let at = Instant::now();
                        let stats = cache.stats();
                        seen.lock().expect("seen").push(Seen { at, state, stats });
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        StateWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Every state seen, in order (the first is the state when the watch started).
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// The first time `state` was seen at or after `after`.
    pub fn first(&self, state: BreakerState, after: Instant) -> Option<Seen> {
        self.seen()
            .into_iter()
            .find(|s| s.at >= after && s.state == Some(state))
    }

    /// How long from `after` until `state` was first seen.
    pub fn time_to(&self, state: BreakerState, after: Instant) -> Option<Duration> {
        self.first(state, after).map(|s| s.at - after)
    }

    /// How long after `healed` the breaker closed: the first `Closed` seen at or after
    /// `heal_began` (an instant taken before the heal action: a restart, a `SIGCONT`),
    /// measured from `healed` (the instant taken after it), and zero when it came first. The
    /// instant after the heal can be late: on a busy machine the test task may wake after the
    /// breaker already probed and closed, and a search from it would miss the close. A search
    /// from the fault would find a close of the outage before its heal (a fault that let one
    /// probe through: review r31, F2).
    pub fn recovery(&self, heal_began: Instant, healed: Instant) -> Option<Duration> {
        self.first(BreakerState::Closed, heal_began)
            .map(|s| s.at.saturating_duration_since(healed))
    }

    /// The states seen, as text (`closed open half-open closed`).
    pub fn timeline(&self) -> String {
        let seen = self.seen();
        let t0 = seen.first().map(|s| s.at);
        seen.iter()
            .map(|s| {
                format!(
                    "{}@{:.0}ms",
                    s.state.map_or("none", BreakerState::as_str),
                    t0.map_or(0.0, |t0| (s.at - t0).as_secs_f64() * 1e3)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Changes seen after the first record.
    pub fn changes(&self) -> usize {
        self.seen().len().saturating_sub(1)
    }
}

impl Drop for StateWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Replica {
    /// Closes the cache and opens its directory again with `shared` (a restart).
    pub async fn reopen(
        self,
        shared: Option<SharedConfig>,
        local: impl FnOnce(&Path) -> Builder,
    ) -> Replica {
        self.cache.close().await.expect("close before reopening");
        let Replica { cache, dir } = self;
        drop(cache);
        let mut b = local(dir.path());
        if let Some(cfg) = shared {
            b = b.shared(cfg);
        }
        let cache = b.build().await.expect("reopen a replica");
        Replica { cache, dir }
    }
}

/// Which keys the readers of a [`Traffic`] get.
#[derive(Debug, Clone)]
pub enum Keys {
    /// The keys the writer wrote, `lag` behind the newest (each read once).
    Written { lag: u64 },
    /// `{name}-{j}` for `j < count`, seeded beforehand, in order: a key is used up by a hit
    /// (which promotes it locally); a miss puts it back for the next get, so that every get
    /// still goes to the network (or is refused by the breaker) and the seeds last through
    /// an outage of any length, whose refused gets take microseconds each.
    Seeded { name: String, count: u64 },
}

/// One get of a [`Traffic`].
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it began.
    pub at: Instant,
    /// How long it took.
    pub latency: Duration,
    /// How it ended.
    pub outcome: super::Outcome,
    /// The reader's shared breaker state when it began.
    pub state_before: Option<BreakerState>,
}

/// Traffic for the fault scenarios: a writer task setting fresh self-checking values
/// (`{name}-w-{i}`, 512 bytes, one every 2 ms) and reader tasks getting keys through another
/// (or the same) cache (see [`Keys`]), every result checked and timed.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The readers' tally (the §12 row's traffic figures), timeout threshold [`TIMEOUT`].
    pub tally: Arc<super::Tally>,
    /// Writer `set` errors (must be 0).
    pub set_errors: Arc<std::sync::atomic::AtomicU64>,
    samples: Arc<Mutex<Vec<Sample>>>,
    written: Arc<std::sync::atomic::AtomicU64>,
}

/// The value size of [`Traffic`]'s writes and seeds.
pub const VALUE_LEN: usize = 512;

impl Traffic {
    /// Starts `readers` reader tasks on `reader`, and a writer on `writer` if given.
    pub fn start(
        name: &str,
        writer: Option<TieredCache>,
        reader: TieredCache,
        readers: usize,
        keys: Keys,
    ) -> Traffic {
        use std::sync::atomic::AtomicU64;
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(super::Tally::default());
        let set_errors = Arc::new(AtomicU64::new(0));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let written = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        // Seeded keys a miss put back.
        let retry: Arc<Mutex<Vec<u64>>> = Arc::default();
        let mut tasks = Vec::new();
        if let Some(w) = writer {
            let (stop, written, set_errors, name) = (
                stop.clone(),
                written.clone(),
                set_errors.clone(),
                name.to_owned(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("{name}-w-{i}");
                    if w.set_bytes(k.as_str(), super::value(&k, i, VALUE_LEN))
                        .await
                        .is_err()
                    {
                        set_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                    written.store(i, Ordering::Release);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
        for _ in 0..readers {
            let (stop, tally, samples, written, next, retry, reader, keys, name) = (
                stop.clone(),
                tally.clone(),
                samples.clone(),
                written.clone(),
                next.clone(),
                retry.clone(),
                reader.clone(),
                keys.clone(),
                name.to_owned(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut seeded = None;
                    let key = match &keys {
                        Keys::Written { lag } => {
                            let newest = written.load(Ordering::Acquire).saturating_sub(*lag);
                            // Each key once: take `newest` unless another reader did.
                            let prev = next.fetch_max(newest + 1, Ordering::AcqRel);
                            if newest == 0 || prev > newest {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                continue;
                            }
                            format!("{name}-w-{newest}")
                        }
                        Keys::Seeded { name, count } => {
                            let back = retry.lock().expect("retry").pop();
                            let j = back.unwrap_or_else(|| next.fetch_add(1, Ordering::AcqRel));
                            if j >= *count {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                continue;
                            }
                            seeded = Some(j);
                            format!("{name}-{j}")
                        }
                    };
                    let state_before = reader.shared_state();
                    let at = Instant::now();
                    let r = reader.get_bytes(key.as_str()).await;
                    let latency = at.elapsed();
                    let outcome = match r {
                        Ok(Some(v)) => match super::check_value(&key, &v) {
                            Ok(_) => super::Outcome::Hit,
                            Err(_) => super::Outcome::Wrong,
                        },
                        Ok(None) => super::Outcome::Miss,
                        Err(_) => super::Outcome::Error,
                    };
                    tally.record(outcome, latency, TIMEOUT);
                    samples.lock().expect("samples").push(Sample {
                        at,
                        latency,
                        outcome,
                        state_before,
                    });
                    if outcome == super::Outcome::Miss {
                        if let Some(j) = seeded {
                            retry.lock().expect("retry").push(j);
                        }
                        // A refused get takes microseconds: without a pause the readers would
                        // spin on the runtime's two workers.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
        Traffic {
            stop,
            tasks,
            tally,
            set_errors,
            samples,
            written,
        }
    }

    /// Keys written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    /// Waits until `n` more gets have been made (10 s at most, else panics).
    pub async fn wait_gets(&self, n: u64) {
        let target = self.tally.total() + n;
        let ok = super::poll_until(Duration::from_secs(10), || self.tally.total() >= target).await;
        assert!(ok.is_some(), "traffic stalled: {} gets", self.tally.total());
    }

    /// Stops every task and returns the samples.
    pub async fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.await.expect("a traffic task panicked");
        }
        self.samples()
    }
}

/// `(hits, gets)` among `samples` that began in `[from, to)`.
pub fn hits_in(samples: &[Sample], from: Instant, to: Instant) -> (u64, u64) {
    let w: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    let hits = w
        .iter()
        .filter(|s| s.outcome == super::Outcome::Hit)
        .count();
    (hits as u64, w.len() as u64)
}

/// Seeds `{name}-{j}` for `j < count` through `cache` ([`VALUE_LEN`]-byte values) and flushes.
pub async fn seed(cache: &TieredCache, name: &str, count: u64) {
    for j in 0..count {
        let k = format!("{name}-{j}");
        cache
            .set_bytes(k.as_str(), super::value(&k, j, VALUE_LEN))
            .await
            .expect("seed");
    }
    cache.flush().await.expect("flush the seeds");
}

/// The traffic figures of a §12 row from the samples.
pub fn traffic_row(test: &str, samples: &[Sample]) -> super::Row {
    let t = super::Tally::default();
    for s in samples {
        t.record(s.outcome, s.latency, TIMEOUT);
    }
    t.row(test)
}
