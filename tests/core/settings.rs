//! Every builder setter at its extremes. For each setter and each of 0, 1 and MAX (and, where a
//! setter has a bound, both sides of it) the cache either refuses to build with exactly
//! `Error::Config` naming the setter, or it builds and a short workload behaves exactly as the
//! setter's documentation says: `set`, `get` (the exact value), `remove`, `flush`, `close` and a
//! reopen all return within a bound (a hang fails the case) and no background task panics.
//!
//! Background tasks run on tokio worker and blocking-pool threads, where a panic only ends the
//! task: nothing reaches the caller. Each case therefore runs on its own runtime whose threads
//! carry the case's name, and a process-wide panic hook counts panics by thread name, so a
//! panic in another test of this binary (running in parallel) is never charged to a case here.
//!
//! Every case runs, and the test fails with the full list of failing cases, so one run shows
//! every setter that misbehaves.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use answercache::testing::{self, Fault, FaultFs, FsOp, Rule};
use answercache::{Builder, Durability, Error, ManualClock, Mode, TieredCache, WritePolicy};

const NS: Duration = Duration::from_nanos(1);
const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
const EIO: i32 = 5;
/// Bound on one step of a workload (build, set, flush, close, ...): past it the step hung.
const STEP: Duration = Duration::from_secs(10);
/// Prefix of the names of the threads of a case's runtime.
const THREAD_PREFIX: &str = "tc-settings-";

// ---------------------------------------------------------------------------------------------
// Panic accounting by thread name.

fn panics() -> &'static Mutex<HashMap<String, u64>> {
    static PANICS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    PANICS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(name) = std::thread::current().name() {
                if name.starts_with(THREAD_PREFIX) {
                    if let Ok(mut m) = panics().lock() {
                        *m.entry(name.to_owned()).or_default() += 1;
                    }
                }
            }
            previous(info);
        }));
        Mutex::new(HashMap::new())
    })
}

fn panics_on(thread: &str) -> u64 {
    panics()
        .lock()
        .map(|m| m.get(thread).copied().unwrap_or(0))
        .unwrap_or(0)
}

/// Runs `body` on a fresh multi-threaded runtime whose threads (workers and blocking pool) are
/// named `thread`; returns its result and the panics seen on those threads.
fn on_named_runtime<F, Fut>(thread: &str, body: F) -> (Result<(), String>, u64)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(thread)
        .enable_all()
        .build()
        .expect("a runtime");
    let result = rt.block_on(body());
    // A hung blocking call must not hang the test as well.
    rt.shutdown_timeout(Duration::from_secs(2));
    (result, panics_on(thread))
}

/// Awaits one step of a workload; a step that takes longer than [`STEP`] hung.
async fn step<T>(what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| format!("{what}: hung (no answer within {STEP:?})"))
}

/// The cache's own count of background-task panics (supervised tasks are restarted, so this
/// is the only trace one leaves in the API).
fn no_task_panics(cache: &TieredCache) -> Result<(), String> {
    let n = cache.stats().task_panics;
    ensure(n == 0, || format!("stats: {n} background task panic(s)"))
}

fn ensure(ok: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(msg())
    }
}

/// The accounting itself: a panic in a spawned task or on the blocking pool of a case's
/// runtime is seen, and charged to that runtime only.
#[test]
fn the_panic_accounting_sees_background_panics() {
    let thread = format!("{THREAD_PREFIX}self-check");
    let (result, panicked) = on_named_runtime(&thread, || async {
        let task = tokio::spawn(async { panic!("deliberate: checks the panic accounting") });
        let blocking = tokio::task::spawn_blocking(|| panic!("deliberate, on the blocking pool"));
        ensure(task.await.is_err() && blocking.await.is_err(), || {
            "the tasks did not panic".into()
        })
    });
    assert_eq!((result, panicked), (Ok(()), 2));
    assert_eq!(panics_on(&format!("{THREAD_PREFIX}never-used")), 0);
}

// ---------------------------------------------------------------------------------------------
// The table.

type Apply = Box<dyn Fn(Builder) -> Builder>;
type Check = fn(TieredCache, ManualClock) -> Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// What `flush` and `close` must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Ok,
    /// `Err(Error::NotPersisted { failed, .. })` with exactly this `failed`.
    NotPersisted(u64),
    /// A disk call bounded by a 1 ms `io_timeout` may or may not finish in time on a loaded
    /// machine: `Ok`, or `NotPersisted` for at most the two keys the workload wrote.
    OkOrNotPersisted,
}

struct Outcome {
    /// What `remove("a")` returns; `None` where it depends on whether the write of "a" had
    /// landed (a hot tier that cannot hold "a").
    remove_found: Option<bool>,
    flush: Flush,
    /// Whether a reopened cache reads "b" from the disk; `None` where it depends on timing.
    persisted: Option<bool>,
    /// A setter-specific check, run after the common gets and before `flush`.
    extra: Option<Check>,
}

impl Outcome {
    fn works() -> Self {
        Outcome {
            remove_found: Some(true),
            flush: Flush::Ok,
            persisted: Some(true),
            extra: None,
        }
    }
    fn remove_found(mut self, found: Option<bool>) -> Self {
        self.remove_found = found;
        self
    }
    fn flush(mut self, flush: Flush) -> Self {
        self.flush = flush;
        self
    }
    fn persisted(mut self, persisted: Option<bool>) -> Self {
        self.persisted = persisted;
        self
    }
    fn extra(mut self, check: Check) -> Self {
        self.extra = Some(check);
        self
    }
}

enum Expect {
    /// `build()` returns `Err(Error::Config(msg))` and `msg` names the setter.
    Reject,
    Accept(Outcome),
}

struct Case {
    setter: &'static str,
    value: String,
    apply: Apply,
    expect: Expect,
}

fn case(
    setter: &'static str,
    value: impl std::fmt::Debug,
    apply: impl Fn(Builder) -> Builder + 'static,
    expect: Expect,
) -> Case {
    Case {
        setter,
        value: format!("{value:?}"),
        apply: Box::new(apply),
        expect,
    }
}

fn works() -> Expect {
    Expect::Accept(Outcome::works())
}

fn accept(o: Outcome) -> Expect {
    Expect::Accept(o)
}

fn reject() -> Expect {
    Expect::Reject
}

/// Every setter of `Builder` × its extremes.
fn cases() -> Vec<Case> {
    let mut v = Vec::new();

    // Hot tier. A byte budget that holds no entry keeps values out of memory: "a" is then in
    // the write queue or on disk, and whether `remove` still finds it depends on which.
    for n in [0usize, 1] {
        v.push(case(
            "hot_capacity_bytes",
            n,
            move |b| b.hot_capacity_bytes(n),
            accept(Outcome::works().remove_found(None).extra(|c, _| {
                Box::pin(async move {
                    let s = c.stats();
                    ensure(s.hot_entries == 0, || {
                        format!(
                            "hot_entries {} with a budget that holds none",
                            s.hot_entries
                        )
                    })
                })
            })),
        ));
    }
    v.push(case(
        "hot_capacity_bytes",
        usize::MAX,
        |b| b.hot_capacity_bytes(usize::MAX),
        accept(Outcome::works().extra(|c, _| {
            Box::pin(async move {
                let s = c.stats();
                ensure(
                    s.hot_capacity_bytes == u64::MAX && s.hot_entries == 2,
                    || format!("stats {:?}", (s.hot_capacity_bytes, s.hot_entries)),
                )
            })
        })),
    ));
    v.push(case(
        "hot_capacity_entries",
        0,
        |b| b.hot_capacity_entries(0),
        reject(),
    ));
    v.push(case(
        "hot_capacity_entries",
        1,
        |b| b.hot_capacity_entries(1),
        accept(Outcome::works().remove_found(None).extra(|c, _| {
            Box::pin(async move {
                let s = c.stats();
                ensure(s.hot_entries == 1 && s.hot_capacity_entries == 1, || {
                    format!(
                        "hot entries {} of {}",
                        s.hot_entries, s.hot_capacity_entries
                    )
                })
            })
        })),
    ));
    v.push(case(
        "hot_capacity_entries",
        usize::MAX,
        |b| b.hot_capacity_entries(usize::MAX),
        works(),
    ));
    for (n, ok) in [
        (0usize, false),
        (1, true),
        (3, true),
        (1024, true),
        (1025, false),
        (usize::MAX, false),
    ] {
        v.push(case(
            "hot_shards",
            n,
            move |b| b.hot_shards(n),
            if ok { works() } else { reject() },
        ));
    }

    // Warm tier. A budget no entry file fits in keeps every value in memory only: `flush`
    // reports "b" (it is not on disk), a reopen finds nothing.
    for n in [0u64, 1] {
        v.push(case(
            "warm_capacity_bytes",
            n,
            move |b| b.warm_capacity_bytes(n),
            accept(
                Outcome::works()
                    .persisted(Some(false))
                    .flush(Flush::NotPersisted(1)),
            ),
        ));
    }
    v.push(case(
        "warm_capacity_bytes",
        u64::MAX,
        |b| b.warm_capacity_bytes(u64::MAX),
        works(),
    ));

    // Expiry: millisecond resolution, at least 1 ms; Duration::MAX is "never".
    for d in [Duration::ZERO, NS, MS - NS] {
        v.push(case("default_ttl", d, move |b| b.default_ttl(d), reject()));
    }
    v.push(case(
        "default_ttl",
        MS,
        |b| b.default_ttl(MS),
        accept(Outcome::works().persisted(Some(false)).extra(|c, clock| {
            Box::pin(async move {
                clock.advance(MS);
                let b = c.get::<u8>("b").await.map_err(|e| e.to_string())?;
                ensure(b.is_none(), || {
                    format!("\"b\" alive 1 ms after a 1 ms TTL: {b:?}")
                })
            })
        })),
    ));
    for d in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_millis(u64::MAX - 1),
        Duration::from_secs(u64::MAX / 1000),
    ] {
        v.push(case(
            "default_ttl",
            d,
            move |b| b.default_ttl(d),
            accept(Outcome::works().extra(|c, clock| {
                Box::pin(async move {
                    clock.advance(CENTURY);
                    let b = c.get::<u8>("b").await.map_err(|e| e.to_string())?;
                    ensure(b == Some(7), || {
                        format!("\"b\" gone a century later with a huge TTL: {b:?}")
                    })
                })
            })),
        ));
    }

    // Key and value limits: 1 ..= u32::MAX (the entry format's bound).
    v.push(case(
        "max_entry_bytes",
        0,
        |b| b.max_entry_bytes(0),
        reject(),
    ));
    v.push(case(
        "max_entry_bytes",
        1,
        |b| b.max_entry_bytes(1),
        accept(Outcome::works().extra(|c, _| {
            Box::pin(async move {
                match c.set_bytes("c", b"xy").await {
                    Err(Error::ValueTooLarge { len: 2, max: 1 }) => Ok(()),
                    other => Err(format!("a 2-byte value with max_entry_bytes 1: {other:?}")),
                }
            })
        })),
    ));
    let u32_max = u32::MAX as usize;
    v.push(case(
        "max_entry_bytes",
        u32_max,
        move |b| b.max_entry_bytes(u32_max),
        works(),
    ));
    for n in [u32_max + 1, usize::MAX] {
        v.push(case(
            "max_entry_bytes",
            n,
            move |b| b.max_entry_bytes(n),
            reject(),
        ));
    }
    v.push(case("max_key_bytes", 0, |b| b.max_key_bytes(0), reject()));
    v.push(case(
        "max_key_bytes",
        1,
        |b| b.max_key_bytes(1),
        accept(Outcome::works().extra(|c, _| {
            Box::pin(async move {
                match c.set_bytes("ab", b"x").await {
                    Err(Error::KeyTooLarge { len: 2, max: 1 }) => Ok(()),
                    other => Err(format!("a 2-byte key with max_key_bytes 1: {other:?}")),
                }
            })
        })),
    ));
    v.push(case(
        "max_key_bytes",
        u32_max,
        move |b| b.max_key_bytes(u32_max),
        works(),
    ));
    for n in [u32_max + 1, usize::MAX] {
        v.push(case(
            "max_key_bytes",
            n,
            move |b| b.max_key_bytes(n),
            reject(),
        ));
    }

    // Free space: 0 disables the check; more than the disk has refuses every write like a
    // full disk: values are served from memory and `flush` reports the one left dirty ("b";
    // the removal of "a" is a delete, which needs no space).
    for n in [0u64, 1] {
        v.push(case(
            "min_free_bytes",
            n,
            move |b| b.min_free_bytes(n),
            works(),
        ));
    }
    v.push(case(
        "min_free_bytes",
        u64::MAX,
        |b| b.min_free_bytes(u64::MAX),
        accept(
            Outcome::works()
                .flush(Flush::NotPersisted(1))
                .persisted(Some(false)),
        ),
    ));

    // The bound on one disk call: 1 ms ..= 1 h; a hung disk must always be cut off.
    for d in [Duration::ZERO, NS, MS - NS, HOUR + NS, Duration::MAX] {
        v.push(case("io_timeout", d, move |b| b.io_timeout(d), reject()));
    }
    v.push(case(
        "io_timeout",
        MS,
        |b| b.io_timeout(MS),
        accept(
            Outcome::works()
                .flush(Flush::OkOrNotPersisted)
                .persisted(None),
        ),
    ));
    v.push(case("io_timeout", HOUR, |b| b.io_timeout(HOUR), works()));

    // Breaker.
    v.push(case(
        "failure_threshold",
        0,
        |b| b.failure_threshold(0),
        reject(),
    ));
    for n in [1u32, u32::MAX] {
        v.push(case(
            "failure_threshold",
            n,
            move |b| b.failure_threshold(n),
            works(),
        ));
    }
    for (d, ok) in [
        (Duration::ZERO, true),
        (NS, true),
        (DAY, true),
        (DAY + NS, false),
        (Duration::MAX, false),
    ] {
        v.push(case(
            "open_timeout",
            d,
            move |b| b.open_timeout(d),
            if ok { works() } else { reject() },
        ));
        v.push(case(
            "max_open_timeout",
            d,
            move |b| b.max_open_timeout(d),
            if ok { works() } else { reject() },
        ));
    }
    for (n, ok) in [
        (0u32, false),
        (1, true),
        (1024, true),
        (1025, false),
        (u32::MAX, false),
    ] {
        v.push(case(
            "half_open_max",
            n,
            move |b| b.half_open_max(n),
            if ok { works() } else { reject() },
        ));
    }

    // Memory-only mode.
    for (n, ok) in [
        (0u32, false),
        (1, true),
        (100_000, true),
        (100_001, false),
        (u32::MAX, false),
    ] {
        v.push(case(
            "memory_only_after",
            n,
            move |b| b.memory_only_after(n),
            if ok { works() } else { reject() },
        ));
    }

    // Windows and intervals: at least 1 ms (the timers' resolution); Duration::MAX is "never".
    type Interval = fn(Builder, Duration) -> Builder;
    let intervals: [(&'static str, Interval); 4] = [
        ("error_window", |b, d| b.error_window(d)),
        ("recovery_interval", |b, d| b.recovery_interval(d)),
        ("health_interval", |b, d| b.health_interval(d)),
        ("sweep_interval", |b, d| b.sweep_interval(d)),
    ];
    for (name, set) in intervals {
        for d in [Duration::ZERO, NS, MS - NS] {
            v.push(case(name, d, move |b| set(b, d), reject()));
        }
        for d in [MS, Duration::MAX] {
            v.push(case(name, d, move |b| set(b, d), works()));
        }
    }

    // Enumerations and switches: every value is valid.
    for p in [WritePolicy::WriteBehind, WritePolicy::WriteThrough] {
        v.push(case("write_policy", p, move |b| b.write_policy(p), works()));
    }
    for d in [Durability::Fsync, Durability::NoSync] {
        v.push(case("durability", d, move |b| b.durability(d), works()));
    }
    for on in [false, true] {
        v.push(case(
            "page_cache_reads",
            on,
            move |b| b.page_cache_reads(on),
            works(),
        ));
    }

    // Write-behind queue.
    v.push(case(
        "write_queue_bytes",
        0,
        |b| b.write_queue_bytes(0),
        reject(),
    ));
    for n in [1usize, usize::MAX] {
        v.push(case(
            "write_queue_bytes",
            n,
            move |b| b.write_queue_bytes(n),
            works(),
        ));
    }
    for (n, ok) in [
        (0usize, false),
        (1, true),
        (1024, true),
        (1025, false),
        (usize::MAX, false),
    ] {
        v.push(case(
            "write_concurrency",
            n,
            move |b| b.write_concurrency(n),
            if ok { works() } else { reject() },
        ));
    }
    for (n, ok) in [
        (0u32, true),
        (1, true),
        (9, true),
        (10, false),
        (u32::MAX, false),
    ] {
        v.push(case(
            "compression_level",
            n,
            move |b| b.compression_level(n),
            if ok { works() } else { reject() },
        ));
    }

    // Quarantine: a bound no file fits in keeps no quarantined file (a corrupt file is
    // counted, taken out of service and deleted); MAX is no bound.
    for (files, bytes) in [(0usize, u64::MAX), (usize::MAX, 0u64), (1, 1)] {
        v.push(case(
            "quarantine_limits",
            (files, bytes),
            move |b| b.quarantine_limits(files, bytes),
            accept(
                Outcome::works().extra(|c, _| {
                    Box::pin(async move { corrupt_file_is_quarantined(&c, 0).await })
                }),
            ),
        ));
    }
    v.push(case(
        "quarantine_limits",
        (usize::MAX, u64::MAX),
        |b| b.quarantine_limits(usize::MAX, u64::MAX),
        accept(
            Outcome::works()
                .extra(|c, _| Box::pin(async move { corrupt_file_is_quarantined(&c, 1).await })),
        ),
    ));
    v
}

/// Plants a corrupt entry file for "q": a read of "q" is a miss, the file is counted as
/// quarantined, and the quarantine then holds `kept` files.
async fn corrupt_file_is_quarantined(c: &TieredCache, kept: usize) -> Result<(), String> {
    use answercache::warm::layout::{key_hash, Layout};
    let layout = Layout::new(c.root());
    let path = layout.entry_path(&key_hash(b"q"));
    // The open cache removes an empty fan-out directory (its scan, every 256 writes): like
    // any writer, make it again when it vanished between the mkdir and the write.
    let mut planted = Ok(());
    for _ in 0..10 {
        planted = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, b"not an entry file"));
        if !matches!(&planted, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            break;
        }
    }
    planted.map_err(|e| format!("planting {path:?}: {e}"))?;
    let q = c.get_bytes("q").await.map_err(|e| e.to_string())?;
    ensure(q.is_none(), || format!("a corrupt file was served: {q:?}"))?;
    let s = c.stats();
    let listed = answercache::warm::quarantine::list(
        &answercache::testing::real_fs(),
        layout.quarantine_dir(),
    )
    .map_err(|e| format!("listing the quarantine: {e}"))?;
    ensure(
        (
            s.corrupted,
            s.quarantined_files,
            listed.len(),
            path.exists(),
        ) == (1, 1, kept, false),
        || {
            format!(
                "(corrupted, quarantined, kept, still at its path) = {:?}, expected (1, 1, {kept}, false)",
                (s.corrupted, s.quarantined_files, listed.len(), path.exists())
            )
        },
    )
}

// ---------------------------------------------------------------------------------------------
// The workload.

fn base(dir: &Path, clock: &ManualClock) -> Builder {
    testing::builder(dir).clock(Arc::new(clock.clone()))
}

fn check_flush(what: &str, got: answercache::Result<()>, want: Flush) -> Result<(), String> {
    match (want, &got) {
        (Flush::Ok | Flush::OkOrNotPersisted, Ok(())) => Ok(()),
        (Flush::NotPersisted(n), Err(Error::NotPersisted { failed, .. })) if *failed == n => Ok(()),
        (Flush::OkOrNotPersisted, Err(Error::NotPersisted { failed: 1 | 2, .. })) => Ok(()),
        _ => Err(format!("{what}: {got:?}, expected {want:?}")),
    }
}

/// Builds with the case's setting and runs the workload; `Err` describes the first deviation.
async fn run_case(case: &Case, dir: &Path) -> Result<(), String> {
    let clock = ManualClock::new(answercache::clock::system_now_ms());
    let built = step("build", (case.apply)(base(dir, &clock)).build()).await?;
    let outcome = match (&case.expect, built) {
        (Expect::Reject, Err(Error::Config(msg))) => {
            return ensure(msg.contains(case.setter), || {
                format!("Error::Config does not name the setter: {msg:?}")
            });
        }
        (Expect::Reject, Err(e)) => return Err(format!("expected Error::Config, got {e:?}")),
        (Expect::Reject, Ok(cache)) => {
            // Say what accepting it does: the workload with the plain expectations.
            let workload = workload(&Outcome::works(), cache, clock, dir).await;
            return Err(format!(
                "accepted; expected Error::Config (workload: {})",
                workload.err().unwrap_or_else(|| "ok".into())
            ));
        }
        (Expect::Accept(_), Err(e)) => return Err(format!("rejected: {e}")),
        (Expect::Accept(o), Ok(cache)) => (o, cache),
    };
    let (o, cache) = outcome;
    workload(o, cache, clock, dir).await
}

/// set, get, remove, the setter's own check, flush, close, and a reopen that reads what
/// reached the disk.
async fn workload(
    o: &Outcome,
    cache: TieredCache,
    clock: ManualClock,
    dir: &Path,
) -> Result<(), String> {
    let e = |what: &'static str| move |err: Error| format!("{what}: {err}");

    step("set_bytes a", cache.set_bytes("a", b"x"))
        .await?
        .map_err(e("set_bytes a"))?;
    step("set b", cache.set("b", &7u8))
        .await?
        .map_err(e("set b"))?;
    let a = step("get_bytes a", cache.get_bytes("a"))
        .await?
        .map_err(e("get_bytes a"))?;
    ensure(a.as_deref() == Some(&b"x"[..]), || {
        format!("get_bytes a: {a:?}")
    })?;
    let b = step("get b", cache.get::<u8>("b"))
        .await?
        .map_err(e("get b"))?;
    ensure(b == Some(7), || format!("get b: {b:?}"))?;
    let found = step("remove a", cache.remove("a"))
        .await?
        .map_err(e("remove a"))?;
    if let Some(want) = o.remove_found {
        ensure(found == want, || {
            format!("remove a returned {found}, expected {want}")
        })?;
    }
    let a = step("get_bytes a after remove", cache.get_bytes("a"))
        .await?
        .map_err(e("get_bytes a after remove"))?;
    ensure(a.is_none(), || format!("a after remove: {a:?}"))?;
    let s = cache.stats();
    ensure((s.sets, s.removes, s.task_panics) == (2, 1, 0), || {
        format!(
            "(sets, removes, task_panics) = {:?}",
            (s.sets, s.removes, s.task_panics)
        )
    })?;
    if let Some(extra) = o.extra {
        step("setter-specific check", extra(cache.clone(), clock.clone())).await??;
    }
    check_flush("flush", step("flush", cache.flush()).await?, o.flush)?;
    let closed = step("close", cache.close()).await?;
    let close_ok = closed.is_ok();
    check_flush("close", closed, o.flush)?;
    no_task_panics(&cache)?;

    // What reached the disk, read by a cache with every default.
    let reopened = step("reopen", base(dir, &clock).build())
        .await?
        .map_err(e("reopen"))?;
    let b = step("get b after reopen", reopened.get::<u8>("b"))
        .await?
        .map_err(e("get b after reopen"))?;
    if let Some(want) = o.persisted {
        let want = want.then_some(7);
        ensure(b == want, || {
            format!("get b after reopen: {b:?}, expected {want:?}")
        })?;
    }
    let a = step("get a after reopen", reopened.get_bytes("a"))
        .await?
        .map_err(e("get a after reopen"))?;
    // After a `close` that returned Ok the removal is on disk; after `NotPersisted` (a 1 ms
    // `io_timeout`) an older whole value may come back (README, "Acknowledgements").
    ensure(a.is_none() || !close_ok, || {
        format!("removed \"a\" back after a close that returned Ok: {a:?}")
    })?;
    step("close reopened", reopened.close())
        .await?
        .map_err(e("close reopened"))
}

/// Runs every case on its own named runtime; returns one line per failing case.
fn run_all(
    cases: Vec<Case>,
    tag: &str,
    run: for<'a> fn(&'a Case, &'a Path) -> CaseFuture<'a>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let thread = format!("{THREAD_PREFIX}{tag}-{i}");
        let (result, panicked) = on_named_runtime(&thread, || run(case, dir.path()));
        let mut problems = Vec::new();
        if let Err(e) = result {
            problems.push(e);
        }
        if panicked > 0 {
            problems.push(format!("{panicked} panic(s) in background tasks"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}({}): {}",
                case.setter,
                case.value,
                problems.join("; ")
            ));
        }
    }
    failures
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

#[test]
fn every_setter_at_its_extremes_is_rejected_or_works() {
    let cases = cases();
    let n = cases.len();
    let failures = run_all(cases, "sweep", |c, d| Box::pin(run_case(c, d)));
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The same extremes through a disk outage: the knobs that only matter when the disk fails.

/// After the outage, the cache is expected to bring the disk back by itself (or not).
struct OutageCase {
    case: Case,
    recovers: bool,
    /// What `set` returns during the outage: `Ok` under write-behind, `NotPersisted(1)` under
    /// write-through (the write did not reach the disk).
    set: Flush,
}

fn outage_cases() -> Vec<OutageCase> {
    let mut v = Vec::new();
    let mut push = |setter, value: &dyn std::fmt::Debug, apply: Apply, recovers| {
        v.push(OutageCase {
            case: Case {
                setter,
                value: format!("{value:?}"),
                apply,
                expect: works(),
            },
            recovers,
            set: Flush::Ok,
        });
    };
    push("(base)", &"", Box::new(|b| b), true);
    for n in [1u32, u32::MAX] {
        push(
            "failure_threshold",
            &n,
            Box::new(move |b| b.failure_threshold(n)),
            true,
        );
    }
    for d in [Duration::ZERO, NS, DAY] {
        push(
            "open_timeout",
            &d,
            Box::new(move |b| b.open_timeout(d)),
            true,
        );
        push(
            "max_open_timeout",
            &d,
            Box::new(move |b| b.max_open_timeout(d)),
            true,
        );
    }
    for n in [1u32, 1024] {
        push(
            "half_open_max",
            &n,
            Box::new(move |b| b.half_open_max(n)),
            true,
        );
    }
    // Never memory-only: the breaker half-opens and a health check closes it.
    push(
        "memory_only_after",
        &100_000,
        Box::new(|b| b.memory_only_after(100_000)),
        true,
    );
    for d in [MS, Duration::MAX] {
        push(
            "error_window",
            &d,
            Box::new(move |b| b.error_window(d)),
            true,
        );
        push(
            "health_interval",
            &d,
            Box::new(move |b| b.health_interval(d)),
            true,
        );
        push(
            "sweep_interval",
            &d,
            Box::new(move |b| b.sweep_interval(d)),
            true,
        );
    }
    push(
        "recovery_interval",
        &MS,
        Box::new(|b| b.recovery_interval(MS)),
        true,
    );
    // "Never": once memory-only, the cache stays memory-only.
    push(
        "recovery_interval",
        &Duration::MAX,
        Box::new(|b| b.recovery_interval(Duration::MAX)),
        false,
    );
    push("io_timeout", &HOUR, Box::new(|b| b.io_timeout(HOUR)), true);
    for n in [1usize, 1024] {
        push(
            "write_concurrency",
            &n,
            Box::new(move |b| b.write_concurrency(n)),
            true,
        );
    }
    push(
        "write_queue_bytes",
        &1,
        Box::new(|b| b.write_queue_bytes(1)),
        true,
    );
    push(
        "write_policy",
        &WritePolicy::WriteThrough,
        Box::new(|b| b.write_policy(WritePolicy::WriteThrough)),
        true,
    );
    if let Some(last) = v.last_mut() {
        last.set = Flush::NotPersisted(1);
    }
    v
}

/// Writes fail with EIO until "a" is set and the disk has been given up on, then the disk
/// heals. A case that recovers must be back to Tiered with "a" on disk within a few seconds;
/// one that does not must still serve "a" from memory and report it from `flush`/`close`.
async fn run_outage(case: &OutageCase, dir: &Path) -> Result<(), String> {
    let fs = Arc::new(FaultFs::std());
    let builder = testing::builder(dir)
        .fs(fs.clone())
        .failure_threshold(1)
        .memory_only_after(1)
        .open_timeout(Duration::from_millis(20))
        .max_open_timeout(Duration::from_millis(100))
        .recovery_interval(Duration::from_millis(20))
        .health_interval(Duration::from_millis(20));
    let cache = step("build", (case.case.apply)(builder).build())
        .await?
        .map_err(|e| format!("rejected: {e}"))?;
    let e = |what: &'static str| move |err: Error| format!("{what}: {err}");
    fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::WriteNew]));
    check_flush(
        "set_bytes a during the outage",
        step("set_bytes a", cache.set_bytes("a", b"x")).await?,
        case.set,
    )?;
    // The write has been tried (and failed) once flush returns.
    check_flush(
        "flush during the outage",
        step("flush", cache.flush()).await?,
        Flush::NotPersisted(1),
    )?;
    let a = step("get_bytes a", cache.get_bytes("a"))
        .await?
        .map_err(e("get_bytes a"))?;
    ensure(a.as_deref() == Some(&b"x"[..]), || {
        format!("get_bytes a during the outage: {a:?}")
    })?;
    fs.clear_rules();
    if case.recovers {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if cache.mode() == Mode::Tiered && step("flush", cache.flush()).await?.is_ok() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let s = cache.stats();
                return Err(format!(
                    "not recovered 5 s after the disk healed: mode {:?}, breaker {:?}, probes {}/{}",
                    s.mode, s.breaker_state, s.probes_ok, s.probes_run
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        step("close", cache.close()).await?.map_err(e("close"))?;
        no_task_panics(&cache)?;
        let reopened = step("reopen", testing::builder(dir).build())
            .await?
            .map_err(e("reopen"))?;
        let a = step("get a after reopen", reopened.get_bytes("a"))
            .await?
            .map_err(e("get a after reopen"))?;
        ensure(a.as_deref() == Some(&b"x"[..]), || {
            format!("\"a\" after recovery and reopen: {a:?}")
        })?;
        step("close reopened", reopened.close())
            .await?
            .map_err(e("close reopened"))
    } else {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure(cache.mode() == Mode::MemoryOnly, || {
            format!("mode {:?}; expected to stay memory-only", cache.mode())
        })?;
        let a = step("get_bytes a", cache.get_bytes("a"))
            .await?
            .map_err(e("get_bytes a"))?;
        ensure(a.as_deref() == Some(&b"x"[..]), || {
            format!("get_bytes a while memory-only: {a:?}")
        })?;
        check_flush(
            "close",
            step("close", cache.close()).await?,
            Flush::NotPersisted(1),
        )?;
        no_task_panics(&cache)
    }
}

#[test]
fn extreme_resilience_settings_survive_a_disk_outage() {
    let cases = outage_cases();
    let n = cases.len();
    let mut failures = Vec::new();
    for (i, oc) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let thread = format!("{THREAD_PREFIX}outage-{i}");
        let (result, panicked) = on_named_runtime(&thread, || run_outage(oc, dir.path()));
        let mut problems = Vec::new();
        if let Err(e) = result {
            problems.push(e);
        }
        if panicked > 0 {
            problems.push(format!("{panicked} panic(s) in background tasks"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}({}): {}",
                oc.case.setter,
                oc.case.value,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} outage cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The root directory (the argument of `TieredCache::builder`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_that_cannot_be_a_directory_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    for root in [
        std::path::PathBuf::new(),
        file.clone(),
        file.join("below-a-file"),
    ] {
        let built = tokio::time::timeout(STEP, testing::builder(&root).build())
            .await
            .unwrap_or_else(|_| panic!("build({root:?}) hung"));
        match built {
            Err(Error::Config(msg)) => assert!(
                msg.contains("cache directory"),
                "{root:?}: message does not say what is wrong: {msg:?}"
            ),
            Err(e) => panic!("{root:?}: expected Error::Config, got {e:?}"),
            Ok(cache) => {
                let _ = cache.close().await;
                panic!("{root:?}: accepted");
            }
        }
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"not a directory",
        "the file is left alone"
    );
}

/// A root that cannot be created (not a device problem: the path can never hold a directory
/// for this process) is a configuration error at `build`, not a cache that runs memory-only
/// forever while `flush` and `close` return `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_that_cannot_be_created_is_rejected() {
    // /sys refuses new directories (EPERM, also for root); /proc has no such entry (ENOENT).
    for root in ["/sys/answercache-root", "/proc/answercache-root/cache"] {
        let built = tokio::time::timeout(STEP, testing::builder(root).build())
            .await
            .unwrap_or_else(|_| panic!("build({root}) hung"));
        match built {
            Err(Error::Config(msg)) => assert!(
                msg.contains("cache directory") && msg.contains("cannot be created"),
                "{root}: message does not say what is wrong: {msg:?}"
            ),
            Err(e) => panic!("{root}: expected Error::Config, got {e:?}"),
            Ok(cache) => {
                let _ = cache.close().await;
                panic!("{root}: accepted");
            }
        }
    }
}

/// A runtime built without timers (`enable_time`) is a configuration error at `build`, not a
/// panic at the first disk call.
#[test]
fn build_on_a_runtime_without_timers_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let root = dir.path().to_owned();
    let built = std::thread::spawn(move || rt.block_on(testing::builder(&root).build()))
        .join()
        .expect("build panicked on a runtime without timers");
    match built {
        Err(Error::Config(msg)) => assert!(
            msg.contains("timers") && msg.contains("enable_time"),
            "{msg:?}"
        ),
        Err(e) => panic!("expected Error::Config, got {e:?}"),
        Ok(_) => panic!("built on a runtime without timers"),
    }
}

#[test]
fn build_outside_a_tokio_runtime_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let built = futures_lite_block_on(testing::builder(dir.path()).build());
    match built {
        Err(Error::Config(msg)) => assert!(msg.contains("tokio"), "{msg:?}"),
        Err(e) => panic!("expected Error::Config, got {e:?}"),
        Ok(_) => panic!("built outside a runtime"),
    }
}

/// A minimal executor with no tokio context: polls `fut` to completion on this thread.
fn futures_lite_block_on<F: Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(10)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// "Never" is never, also on tokio's paused clock, which jumps straight to the next timer
// whenever the runtime is idle: a "never" that is really "in 30 years" (tokio clamps longer
// sleeps to that) fires there within the test.

#[tokio::test(start_paused = true)]
async fn duration_max_intervals_never_fire_even_decades_later() {
    const DECADE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::std());
    let builder = testing::builder(dir.path())
        .fs(fs.clone())
        .failure_threshold(1)
        .memory_only_after(1)
        .recovery_interval(Duration::MAX)
        .health_interval(Duration::MAX)
        .sweep_interval(Duration::MAX);
    // Every timer of the cache "never": with the metrics feature, its publication too (at its
    // default 10 s, forty years of paused time would be 126 million publications).
    #[cfg(feature = "metrics")]
    let builder = builder.metrics_interval(Duration::MAX);
    let cache = builder.build().await.unwrap();
    for _ in 0..1000 {
        if cache.stats().warm_index_complete {
            break;
        }
        tokio::time::sleep(MS).await;
    }
    assert!(cache.stats().warm_index_complete, "startup scan");

    // Tiered and idle: no health check and no sweep ever touches the disk; an expired entry
    // file stays where it is (it is never served: a read would delete it).
    cache
        .set_bytes_with_ttl("t", b"t", Duration::from_secs(1))
        .await
        .unwrap();
    cache.flush().await.unwrap();
    let expired = answercache::warm::layout::Layout::new(cache.root())
        .entry_path(&answercache::warm::layout::key_hash(b"t"));
    assert!(expired.exists());
    let calls = fs.total_calls();
    for _ in 0..4 {
        tokio::time::sleep(DECADE).await;
    }
    let s = cache.stats();
    assert_eq!(
        (s.health_checks, fs.total_calls() - calls, expired.exists()),
        (0, 0, true),
        "40 years of health_interval and sweep_interval Duration::MAX"
    );

    // Memory-only: no recovery probe ever runs.
    fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::WriteNew]));
    cache.set_bytes("a", b"x").await.unwrap();
    assert!(matches!(
        cache.flush().await,
        Err(Error::NotPersisted { failed: 1, .. })
    ));
    assert_eq!(cache.mode(), Mode::MemoryOnly);
    fs.clear_rules();
    for _ in 0..4 {
        tokio::time::sleep(DECADE).await;
    }
    let s = cache.stats();
    assert_eq!(
        (s.mode, s.probes_run, s.task_panics),
        (Mode::MemoryOnly, 0, 0),
        "40 years of recovery_interval Duration::MAX"
    );
    assert_eq!(
        cache.get_bytes("a").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );
    assert!(matches!(
        cache.close().await,
        Err(Error::NotPersisted { failed: 1, .. })
    ));
}
