//! Review r37 of 50290a0 ("a flush is woken once it is done, not at every completed job": the
//! write queue's `live` set of the seqs not stuck, the `flushes` registrations of waiting
//! `wait(Some(upto))` calls, and `wake` notifying them only once the smallest is done).
//! Adversarial tests through the public API: flushes with equal and different watermarks
//! each woken when their own writes land, flushes dropped mid-wait (their registrations must
//! not hold or misdirect later ones), writes hung past `io_timeout` and returning later,
//! `clear`, `close`, the breaker opening, memory-only mode and recovery write-back, and queues
//! of more than 512 slots (where the debug check of `live` is off). Findings:
//! `REVIEW_R37_FINDINGS.md`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::testing::{wait_until, Fault, FaultFs, FsOp, Rule};
use answercache::{BreakerState, Durability, Error, Mode, TieredCache, WritePolicy};

use crate::support::*;

/// Long enough that a write held at a gate is never given up on (not stuck).
const LONG_IO: Duration = Duration::from_secs(60);
/// How long a test lets a flush that must keep waiting run before it looks.
const SETTLE: Duration = Duration::from_millis(300);

/// The first 16 hex digits of blake3(key): what the temp file of an entry being written is
/// named after (`v2/ab/.<hex16>.<pid>.<instance>.<n>.tmp`), so that a rule or a hold on it
/// matches that key's writes only.
fn tag(key: &str) -> String {
    format!("/.{}.", &hex_of(key.as_bytes())[..16])
}

/// Per-key gates on entry writes: a write of a held key waits (on its blocking thread) until
/// the test opens the key's gate.
#[derive(Default)]
struct Holds {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

impl Holds {
    fn hold(&self, key: &str) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.gates.lock().unwrap().insert(tag(key), gate.clone());
        gate
    }

    fn wait_if_held(&self, path: &Path) {
        let p = path.to_string_lossy();
        let gate = self
            .gates
            .lock()
            .unwrap()
            .iter()
            .find(|(t, _)| p.contains(t.as_str()))
            .map(|(_, g)| g.clone());
        if let Some(g) = gate {
            g.wait_here();
        }
    }
}

/// A cache on a fault file system over a [`Hooked`] one that holds the writes of the keys
/// `holds` names.
async fn held_cache(edit: impl FnOnce(answercache::Builder) -> answercache::Builder) -> Held {
    let holds = Arc::new(Holds::default());
    let h2 = holds.clone();
    let hooked = Hooked {
        before_write: Box::new(move |p| h2.wait_if_held(p)),
        ..Hooked::default()
    };
    let fs = Arc::new(FaultFs::new(Arc::new(hooked)));
    let cache = dir()
        .with_fs(fs.clone())
        .open_cache(|b| {
            edit(
                b.write_policy(WritePolicy::WriteBehind)
                    .io_timeout(LONG_IO)
                    .write_concurrency(2)
                    .failure_threshold(1000)
                    .durability(Durability::NoSync)
                    .compress_in_background(false)
                    .write_queue_bytes(64 << 20),
            )
        })
        .await;
    Held { cache, holds, fs }
}

struct Held {
    cache: TestCache,
    holds: Arc<Holds>,
    fs: Arc<FaultFs>,
}

/// Lets every held or hung write go when a test ends (a failed one too): the runtime's drop
/// waits for its blocking threads.
impl Drop for Held {
    fn drop(&mut self) {
        for g in self.holds.gates.lock().unwrap().values() {
            g.open();
        }
        self.fs.clear_rules();
        self.fs.release_hangs();
    }
}

/// Waits (off the runtime) until a write is held at `gate`.
async fn reached(gate: &Arc<Gate>) {
    let g = gate.clone();
    tokio::time::timeout(
        PATIENCE,
        tokio::task::spawn_blocking(move || g.wait_for_caller()),
    )
    .await
    .expect("the held write reaches its gate")
    .unwrap();
}

type Flush = tokio::task::JoinHandle<answercache::Result<()>>;

fn spawn_flush(c: &TieredCache) -> Flush {
    let c = c.clone();
    tokio::spawn(async move { c.flush().await })
}

/// The flush's result, failing the test if it does not return within [`PATIENCE`].
async fn result_of(f: Flush, what: &str) -> answercache::Result<()> {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: flush hung"))
        .unwrap()
}

fn not_persisted<T: std::fmt::Debug>(r: &answercache::Result<T>, n: u64) -> bool {
    matches!(r, Err(Error::NotPersisted { failed, .. }) if *failed == n)
}

async fn value_of(cache: &TieredCache, key: &str) -> Option<Vec<u8>> {
    cache.get_bytes(key).await.unwrap().map(|v| v.to_vec())
}

/// A flush of an idle, drained queue returns at once (nothing registered or live is left
/// over) with `Ok`.
async fn idle_flush_is_instant(cache: &TieredCache) {
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), cache.flush())
        .await
        .expect("an idle flush returns at once");
    assert!(r.is_ok(), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let s = cache.stats();
    assert_eq!((s.write_queue_depth, s.dirty_entries), (0, 0), "{s:?}");
}

/// Promise 2: flushes with equal and with different watermarks, waiting together. Each is
/// released when the writes it covers land, and not before: releasing `a` releases the two
/// flushes begun after `a` only; the three begun after `b` (one after `c`, a key that lands
/// at once) wait for `b`, and are woken when it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_flushes_with_equal_and_different_watermarks_each_wake_when_their_writes_land() {
    let h = held_cache(|b| b).await;
    let c = h.cache.cache.clone();
    let (ga, gb) = (h.holds.hold("a"), h.holds.hold("b"));
    c.set_bytes("a", b"va").await.unwrap();
    reached(&ga).await;
    let f1 = [spawn_flush(&c), spawn_flush(&c)];
    tokio::time::sleep(SETTLE).await;
    c.set_bytes("b", b"vb").await.unwrap();
    reached(&gb).await;
    let f2 = [spawn_flush(&c), spawn_flush(&c)];
    tokio::time::sleep(SETTLE).await;
    c.set_bytes("c", b"vc").await.unwrap();
    let f3 = spawn_flush(&c);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        (
            f1.iter().filter(|f| f.is_finished()).count(),
            f2.iter().filter(|f| f.is_finished()).count(),
            f3.is_finished()
        ),
        (0, 0, false),
        "every flush waits while a and b are held"
    );
    ga.open();
    for (i, f) in f1.into_iter().enumerate() {
        let r = result_of(f, "after a").await;
        assert!(r.is_ok(), "flush {i} begun after a: {r:?}");
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        (
            f2.iter().filter(|f| f.is_finished()).count(),
            f3.is_finished()
        ),
        (0, false),
        "flushes begun after b still wait for b"
    );
    gb.open();
    for (i, f) in f2.into_iter().chain([f3]).enumerate() {
        let r = result_of(f, "after b").await;
        assert!(r.is_ok(), "flush {i} begun after b: {r:?}");
    }
    assert_eq!(
        ["a", "b", "c"].map(|k| h.cache.on_disk(k)),
        [true, true, true]
    );
    assert_eq!(c.stats().writes_ok, 3);
    idle_flush_is_instant(&c).await;
}

/// Promise 5: flushes dropped while they wait (by `timeout`, and a task aborted) take their
/// registrations back without disturbing the others: a flush begun after `b`, waiting beside
/// twenty cancelled ones (some with a lower watermark, some equal to its own), is released
/// exactly when `b` lands, not when `a` does, and never left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_dropped_flushes_neither_hold_nor_strand_a_flush_still_waiting() {
    let h = held_cache(|b| b).await;
    let c = h.cache.cache.clone();
    let (ga, gb) = (h.holds.hold("a"), h.holds.hold("b"));
    c.set_bytes("a", b"va").await.unwrap();
    reached(&ga).await;
    // Ten flushes with a's watermark, cancelled while they wait.
    let mut elapsed = 0;
    for _ in 0..10 {
        if tokio::time::timeout(Duration::from_millis(20), c.flush())
            .await
            .is_err()
        {
            elapsed += 1;
        }
    }
    assert_eq!(elapsed, 10, "a is held: every flush times out");
    c.set_bytes("b", b"vb").await.unwrap();
    reached(&gb).await;
    let kept = spawn_flush(&c);
    // Ten more with b's watermark (the kept flush's), five cancelled by timeout and five by
    // aborting their tasks.
    let mut elapsed = 0;
    for _ in 0..5 {
        if tokio::time::timeout(Duration::from_millis(20), c.flush())
            .await
            .is_err()
        {
            elapsed += 1;
        }
    }
    let aborted: Vec<Flush> = (0..5).map(|_| spawn_flush(&c)).collect();
    tokio::time::sleep(SETTLE).await;
    for f in &aborted {
        f.abort();
    }
    for f in aborted {
        assert!(f.await.unwrap_err().is_cancelled());
    }
    assert_eq!(elapsed, 5);
    ga.open();
    tokio::time::sleep(SETTLE).await;
    assert!(!kept.is_finished(), "b is still held");
    gb.open();
    let r = result_of(kept, "kept").await;
    assert!(r.is_ok(), "{r:?}");
    idle_flush_is_instant(&c).await;
}

/// Promise 5: a flush woken once before it is done (a lower flush completed) and then dropped
/// leaves its twin with the same watermark registered and woken: `f_low` covers `a`; `f_hi`
/// and `twin` cover `b`; `a` lands (all are woken, `f_low` returns Ok), then `f_hi` is
/// aborted; `b` lands and `twin` returns Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_a_flush_dropped_after_a_wakeup_leaves_its_twin_woken() {
    let h = held_cache(|b| b).await;
    let c = h.cache.cache.clone();
    let (ga, gb) = (h.holds.hold("a"), h.holds.hold("b"));
    c.set_bytes("a", b"va").await.unwrap();
    reached(&ga).await;
    let f_low = spawn_flush(&c);
    tokio::time::sleep(SETTLE).await;
    c.set_bytes("b", b"vb").await.unwrap();
    reached(&gb).await;
    let (f_hi, twin) = (spawn_flush(&c), spawn_flush(&c));
    tokio::time::sleep(SETTLE).await;
    ga.open();
    let r = result_of(f_low, "f_low").await;
    assert!(r.is_ok(), "{r:?}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!((f_hi.is_finished(), twin.is_finished()), (false, false));
    f_hi.abort();
    assert!(f_hi.await.unwrap_err().is_cancelled());
    gb.open();
    let r = result_of(twin, "twin").await;
    assert!(r.is_ok(), "{r:?}");
    idle_flush_is_instant(&c).await;
}

/// Promise 3: two flushes wait for a write that then hangs past `io_timeout` (and another
/// that is merely slow); both return at the timeout, reporting exactly the hung key. A newer
/// set of the key queued behind the hung write is not waited for (a flush returns before
/// another `io_timeout` passes, reporting it). When the hung write returns, the newer one is
/// queued again and a flush begun then waits for it (slowed to 200 ms) and returns Ok with it
/// on disk; a restart serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_a_hung_write_stops_counting_and_its_successor_counts_again_once_it_returns() {
    const IO: Duration = Duration::from_millis(500);
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteBehind)
                .io_timeout(IO)
                .write_concurrency(2)
                .failure_threshold(1000)
                .durability(Durability::NoSync)
                .compress_in_background(false)
        })
        .await;
    cache.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::WriteNew])
            .path_contains(tag("k"))
            .times(1),
    );
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(100)))
            .ops(&[FsOp::WriteNew])
            .path_contains(tag("l"))
            .times(1),
    );
    let c = cache.cache.clone();
    c.set_bytes("k", b"v1").await.unwrap();
    let f1 = spawn_flush(&c);
    c.set_bytes("l", b"l").await.unwrap();
    let f2 = spawn_flush(&c);
    let t = Instant::now();
    for (i, f) in [f1, f2].into_iter().enumerate() {
        let r = result_of(f, "beside the hung write").await;
        assert!(not_persisted(&r, 1), "flush {i}: {r:?}");
    }
    assert!(t.elapsed() < IO * 4, "{:?}", t.elapsed());
    assert_eq!(cache.stats().writes_ok, 1);
    // Behind the stuck write: reported, not waited for.
    c.set_bytes("k", b"v2").await.unwrap();
    let t = Instant::now();
    let r = result_of(spawn_flush(&c), "behind the stuck write").await;
    assert!(not_persisted(&r, 1), "{r:?}");
    assert!(t.elapsed() < IO, "waited {:?} for a stuck key", t.elapsed());
    assert_eq!(c.stats().write_queue_depth, 1);
    // The hung write returns: v2 is queued again (its write slowed) and a flush waits for it.
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(200)))
            .ops(&[FsOp::WriteNew])
            .path_contains(tag("k"))
            .times(1),
    );
    let before = cache.fs().calls(FsOp::WriteNew);
    cache.fs().release_hangs();
    let fs = cache.fs().clone();
    assert!(wait_until(PATIENCE, || fs.calls(FsOp::WriteNew) == before + 1).await);
    let r = result_of(spawn_flush(&c), "after the hung write returned").await;
    assert!(r.is_ok(), "{r:?}");
    let s = c.stats();
    assert_eq!(
        (
            s.writes_ok,
            s.write_queue_depth,
            s.dirty_entries,
            s.lost_writes
        ),
        (3, 0, 0, 0),
        "{s:?}"
    );
    idle_flush_is_instant(&c).await;
    cache.reopen().await;
    assert_eq!(value_of(&cache, "k").await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(value_of(&cache, "l").await.as_deref(), Some(&b"l"[..]));
}

/// Promise 2: flushes begun before and during a `clear` (which drops the queued writes of
/// `b` and `c` and waits for `a`'s, held) return once `a` lands, and the clear returns Ok.
/// What each flush reports depends on whether the clear's fence was on disk when it looked
/// (`Ok`, or the clear counted once); nothing else is reported. After it: no key served, in
/// memory or after a restart; a flush after it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_flushes_during_a_clear_return_once_the_write_in_flight_lands() {
    let mut h = held_cache(|b| b.write_concurrency(1)).await;
    let c = h.cache.cache.clone();
    let ga = h.holds.hold("a");
    c.set_bytes("a", b"va").await.unwrap();
    reached(&ga).await;
    c.set_bytes("b", b"vb").await.unwrap();
    c.set_bytes("c", b"vc").await.unwrap();
    let before = spawn_flush(&c);
    tokio::time::sleep(SETTLE).await;
    let c2 = c.clone();
    let clear = tokio::spawn(async move { c2.clear().await });
    tokio::time::sleep(SETTLE).await;
    let during = spawn_flush(&c);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        (
            before.is_finished(),
            clear.is_finished(),
            during.is_finished()
        ),
        (false, false, false),
        "a is held"
    );
    ga.open();
    let cleared = tokio::time::timeout(PATIENCE, clear)
        .await
        .unwrap()
        .unwrap();
    assert!(cleared.is_ok(), "{cleared:?}");
    for (name, f) in [("before", before), ("during", during)] {
        let r = result_of(f, name).await;
        assert!(r.is_ok() || not_persisted(&r, 1), "{name}: {r:?}");
    }
    idle_flush_is_instant(&c).await;
    for k in ["a", "b", "c"] {
        assert_eq!(value_of(&c, k).await, None, "{k}");
    }
    h.cache.reopen().await;
    for k in ["a", "b", "c"] {
        assert_eq!(value_of(&h.cache, k).await, None, "{k} after a restart");
    }
}

/// Promise 2: a flush waiting when `close` begins returns Ok once the held write lands, and
/// so does the close; a flush after the close is `Closed`; a restart serves every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_a_flush_waiting_through_close_returns_ok() {
    let mut h = held_cache(|b| b).await;
    let c = h.cache.cache.clone();
    let ga = h.holds.hold("a");
    c.set_bytes("a", b"va").await.unwrap();
    reached(&ga).await;
    c.set_bytes("b", b"vb").await.unwrap();
    let f = spawn_flush(&c);
    tokio::time::sleep(SETTLE).await;
    let c2 = c.clone();
    let close = tokio::spawn(async move { c2.close().await });
    tokio::time::sleep(SETTLE).await;
    assert_eq!((f.is_finished(), close.is_finished()), (false, false));
    ga.open();
    let r = result_of(f, "beside close").await;
    assert!(r.is_ok(), "{r:?}");
    let closed = tokio::time::timeout(PATIENCE, close)
        .await
        .unwrap()
        .unwrap();
    assert!(closed.is_ok(), "{closed:?}");
    assert!(matches!(c.flush().await, Err(Error::Closed)));
    assert_eq!(c.stats().write_queue_depth, 0);
    h.cache.reopen_after_close().await;
    assert_eq!(value_of(&h.cache, "a").await.as_deref(), Some(&b"va"[..]));
    assert_eq!(value_of(&h.cache, "b").await.as_deref(), Some(&b"vb"[..]));
}

/// Promise 2: the breaker opens while a flush waits. One write slot: `a` is held, then `b`
/// and `c` fail (EIO; threshold 2: the breaker opens), `d` and `e` are refused. The flush
/// begun after all five sets returns once the queue is drained, reporting exactly the four
/// keys not on disk, with the breaker named as the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_a_flush_waiting_while_the_breaker_opens_reports_exactly_what_is_not_on_disk() {
    let h = held_cache(|b| {
        b.write_concurrency(1)
            .failure_threshold(2)
            .open_timeout(Duration::from_secs(60))
            .max_open_timeout(Duration::from_secs(60))
            .memory_only_after(1000)
    })
    .await;
    let c = h.cache.cache.clone();
    let ga = h.holds.hold("a");
    for k in ["b", "c"] {
        h.fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::WriteNew])
                .path_contains(tag(k))
                .times(1),
        );
    }
    c.set_bytes("a", b"va").await.unwrap();
    reached(&ga).await;
    for k in ["b", "c", "d", "e"] {
        c.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    let f = spawn_flush(&c);
    tokio::time::sleep(SETTLE).await;
    assert!(!f.is_finished());
    ga.open();
    let r = result_of(f, "breaker opening").await;
    match &r {
        Err(Error::NotPersisted { failed, last_error }) => {
            assert_eq!(*failed, 4, "{r:?}");
            assert!(last_error.contains("circuit breaker is open"), "{r:?}");
        }
        other => panic!("expected NotPersisted(4), got {other:?}"),
    }
    assert_eq!(c.breaker_state(), BreakerState::Open);
    let s = c.stats();
    assert_eq!(
        (
            s.writes_ok,
            s.writes_failed,
            s.breaker_opens,
            s.write_queue_depth,
            s.dirty_entries
        ),
        (1, 2, 1, 0, 4),
        "{s:?}"
    );
    // Nothing is left registered or live: the next flush returns at once, the same report.
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), c.flush())
        .await
        .unwrap();
    assert!(not_persisted(&r, 4), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// Promises 2 and 4: memory-only mode, then recovery. 600 keys set while memory-only (a
/// flush then reports all 601 dirty at once, without waiting); the disk heals, the recovery
/// probe writes back 601 entries (a queue of more than 512 slots: the debug check of `live`
/// is off) and waits for them; four flushes begun as the mode turns all return Ok, every key
/// on disk; the queue is empty after and an idle flush returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_flushes_racing_a_recovery_write_back_of_more_than_512_entries() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteBehind)
                .io_timeout(Duration::from_secs(10))
                .write_concurrency(2)
                .failure_threshold(1)
                .memory_only_after(1)
                .recovery_interval(Duration::from_millis(300))
                .durability(Durability::NoSync)
                .compress_in_background(false)
                .hot_capacity_entries(100_000)
                .write_queue_bytes(64 << 20)
        })
        .await;
    cache
        .fs()
        .add_rule(Rule::new(Fault::Errno(5)).ops(&[FsOp::WriteNew]));
    let c = cache.cache.clone();
    c.set_bytes("trigger", b"t").await.unwrap();
    let r = result_of(spawn_flush(&c), "trigger").await;
    assert!(not_persisted(&r, 1), "{r:?}");
    assert_eq!(c.mode(), Mode::MemoryOnly);
    let keys: Vec<String> = (0..600).map(|i| format!("m{i}")).collect();
    for k in &keys {
        c.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    let t = Instant::now();
    let r = result_of(spawn_flush(&c), "memory-only").await;
    match &r {
        Err(Error::NotPersisted { failed, last_error }) => {
            assert_eq!(*failed, 601, "{r:?}");
            assert!(last_error.contains("memory-only"), "{r:?}");
        }
        other => panic!("expected NotPersisted(601), got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Heal, with every write slowed a little so that the write-back is a queue, not a burst.
    cache.fs().clear_rules();
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_micros(500)))
            .ops(&[FsOp::WriteNew])
            .path_contains("/v2/"),
    );
    let c2 = c.clone();
    assert!(wait_until(PATIENCE, || c2.mode() == Mode::Tiered).await);
    let flushes: Vec<Flush> = (0..4).map(|_| spawn_flush(&c)).collect();
    for (i, f) in flushes.into_iter().enumerate() {
        let r = result_of(f, "after recovery").await;
        assert!(r.is_ok(), "flush {i}: {r:?}");
    }
    let missing: Vec<&String> = keys.iter().filter(|k| !cache.on_disk(k)).collect();
    assert_eq!(missing, Vec::<&String>::new());
    let s = c.stats();
    assert_eq!(
        (
            s.written_back,
            s.lost_writes,
            s.write_queue_depth,
            s.dirty_entries
        ),
        (601, 0, 0, 0),
        "{s:?}"
    );
    idle_flush_is_instant(&c).await;
    cache.reopen().await;
    for k in keys.iter().step_by(37) {
        assert_eq!(
            value_of(&cache, k).await.as_deref(),
            Some(k.as_bytes()),
            "{k}"
        );
    }
}

/// Promises 3, 4 and 5 on a queue of more than 512 slots: `x`'s first write hangs for good
/// (given up at `io_timeout`), `x` is set again behind it, `z` is held at a gate, and 1,200
/// keys are queued behind (300 of them set again, 200 removed): the queue holds exactly 1,202
/// slots. Flushes begun in the middle and one after all sets return once `z` is let go,
/// each reporting exactly `x`; then the hung write returns, `x`'s newer value lands, a flush
/// is Ok, the queue is empty, and a restart serves every key's last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_a_queue_of_1202_slots_with_a_stuck_write_drains_and_flush_stays_exact() {
    const IO: Duration = Duration::from_millis(400);
    let mut h = held_cache(|b| {
        b.io_timeout(IO)
            .write_concurrency(1)
            .hot_capacity_entries(100_000)
    })
    .await;
    let c = h.cache.cache.clone();
    h.fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::WriteNew])
            .path_contains(tag("x"))
            .times(1),
    );
    c.set_bytes("x", b"x1").await.unwrap();
    let fs = h.fs.clone();
    assert!(wait_until(PATIENCE, || fs.calls(FsOp::WriteNew) == 1).await);
    tokio::time::sleep(IO + Duration::from_millis(200)).await;
    c.set_bytes("x", b"x2").await.unwrap();
    let gz = h.holds.hold("z");
    c.set_bytes("z", b"z").await.unwrap();
    reached(&gz).await;
    let keys: Vec<String> = (0..1200).map(|i| format!("q{i}")).collect();
    let mut want: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let mut flushes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        c.set_bytes(k, k.as_bytes()).await.unwrap();
        want.insert(k.clone(), Some(k.as_bytes().to_vec()));
        if i % 300 == 299 {
            flushes.push(spawn_flush(&c));
        }
    }
    for k in keys.iter().step_by(4) {
        let v = format!("{k}-again").into_bytes();
        c.set_bytes(k, &v).await.unwrap();
        want.insert(k.clone(), Some(v));
    }
    for k in keys.iter().skip(1).step_by(6) {
        assert!(c.remove(k).await.unwrap(), "{k}");
        want.insert(k.clone(), None);
    }
    flushes.push(spawn_flush(&c));
    assert_eq!(c.stats().write_queue_depth, 1202);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(flushes.iter().filter(|f| f.is_finished()).count(), 0);
    gz.open();
    for (i, f) in flushes.into_iter().enumerate() {
        let r = result_of(f, "big queue").await;
        assert!(not_persisted(&r, 1), "flush {i}: {r:?}");
    }
    assert_eq!(
        c.stats().write_queue_depth,
        1,
        "x's slot, behind its hung write"
    );
    h.fs.release_hangs();
    let c2 = c.clone();
    assert!(wait_until(PATIENCE, || c2.stats().write_queue_depth == 0).await);
    let r = result_of(spawn_flush(&c), "after release").await;
    assert!(r.is_ok(), "{r:?}");
    idle_flush_is_instant(&c).await;
    assert_eq!(c.stats().lost_writes, 0);
    h.cache.reopen().await;
    assert_eq!(value_of(&h.cache, "x").await.as_deref(), Some(&b"x2"[..]));
    assert_eq!(value_of(&h.cache, "z").await.as_deref(), Some(&b"z"[..]));
    let wrong: Vec<&String> = {
        let mut wrong = Vec::new();
        for (k, v) in &want {
            if value_of(&h.cache, k).await != *v {
                wrong.push(k);
            }
        }
        wrong
    };
    assert_eq!(wrong, Vec::<&String>::new());
}

/// Promises 4 and 5: a `clear` of a queue of 1,201 slots (one in flight, held) while three
/// flushes wait: every flush and the clear return once the held write lands, the queue is
/// empty, an idle flush returns at once; 700 keys set after are flushed Ok and served after a
/// restart, the cleared ones are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_a_clear_of_more_than_512_queued_slots_leaves_flush_exact() {
    let mut h = held_cache(|b| b.write_concurrency(1).hot_capacity_entries(100_000)).await;
    let c = h.cache.cache.clone();
    let gz = h.holds.hold("z");
    c.set_bytes("z", b"z").await.unwrap();
    reached(&gz).await;
    let old: Vec<String> = (0..1200).map(|i| format!("o{i}")).collect();
    for k in &old {
        c.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    assert_eq!(c.stats().write_queue_depth, 1201);
    let flushes: Vec<Flush> = (0..3).map(|_| spawn_flush(&c)).collect();
    tokio::time::sleep(SETTLE).await;
    let c2 = c.clone();
    let clear = tokio::spawn(async move { c2.clear().await });
    tokio::time::sleep(SETTLE).await;
    assert_eq!(c.stats().write_queue_depth, 1, "only z, in flight");
    gz.open();
    let cleared = tokio::time::timeout(PATIENCE, clear)
        .await
        .unwrap()
        .unwrap();
    assert!(cleared.is_ok(), "{cleared:?}");
    for (i, f) in flushes.into_iter().enumerate() {
        let r = result_of(f, "beside clear").await;
        assert!(r.is_ok() || not_persisted(&r, 1), "flush {i}: {r:?}");
    }
    idle_flush_is_instant(&c).await;
    let new: Vec<String> = (0..700).map(|i| format!("n{i}")).collect();
    for k in &new {
        c.set_bytes(k, k.as_bytes()).await.unwrap();
    }
    let r = result_of(spawn_flush(&c), "after clear").await;
    assert!(r.is_ok(), "{r:?}");
    idle_flush_is_instant(&c).await;
    h.cache.reopen().await;
    for k in new.iter().step_by(23) {
        assert_eq!(
            value_of(&h.cache, k).await.as_deref(),
            Some(k.as_bytes()),
            "{k}"
        );
    }
    for k in old
        .iter()
        .step_by(23)
        .chain(std::iter::once(&"z".to_owned()))
    {
        assert_eq!(value_of(&h.cache, k).await, None, "{k}");
    }
}

/// Promise 1 under load: four writers set fresh keys (and overwrite one hot key each), held
/// back by a 256 KiB queue, on a disk with random 1 ms delays; a flusher, fifteen times,
/// snapshots the keys whose `set` returned, flushes (must be Ok, within PATIENCE), and checks
/// that every one of them has its entry file; beside it, flushes cancelled after 0 to 3 ms. At the end, the queue is empty,
/// an idle flush returns at once, and a restart serves every key's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_flush_ok_means_every_key_set_before_it_is_on_disk_under_concurrent_writers() {
    let mut cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteBehind)
                .io_timeout(Duration::from_secs(30))
                .write_concurrency(3)
                .durability(Durability::NoSync)
                .compress_in_background(false)
                .hot_capacity_entries(100_000)
                // Backpressure: a flush waits for at most ~1,500 queued writes.
                .write_queue_bytes(256 << 10)
        })
        .await;
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(1)))
            .ops(&[FsOp::WriteNew])
            .path_contains("/v2/")
            .one_in(3, 7),
    );
    let c = cache.cache.clone();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..4 {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let k = format!("w{t}-{i}");
                c.set_bytes(&k, k.as_bytes()).await.unwrap();
                acked.lock().unwrap().push(k);
                c.set_bytes(format!("hot{t}"), i.to_le_bytes())
                    .await
                    .unwrap();
                i += 1;
                if i.is_multiple_of(8) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            i
        }));
    }
    let cancellers = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = tokio::time::timeout(Duration::from_millis(n % 4), c.flush()).await;
                n += 1;
            }
        })
    };
    for round in 0..15 {
        let snapshot: Vec<String> = acked.lock().unwrap().clone();
        let r = result_of(spawn_flush(&c), "under load").await;
        assert!(r.is_ok(), "round {round}: {r:?}");
        let missing: Vec<&String> = snapshot.iter().filter(|k| !cache.on_disk(k)).collect();
        assert_eq!(missing, Vec::<&String>::new(), "round {round}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut last = Vec::new();
    for w in writers {
        last.push(tokio::time::timeout(PATIENCE, w).await.unwrap().unwrap());
    }
    tokio::time::timeout(PATIENCE, cancellers)
        .await
        .unwrap()
        .unwrap();
    let r = result_of(spawn_flush(&c), "final").await;
    assert!(r.is_ok(), "{r:?}");
    idle_flush_is_instant(&c).await;
    let all: Vec<String> = acked.lock().unwrap().clone();
    assert_eq!(all.len() as u32, last.iter().sum::<u32>());
    cache.reopen().await;
    for k in all.iter().step_by(11) {
        assert_eq!(
            value_of(&cache, k).await.as_deref(),
            Some(k.as_bytes()),
            "{k}"
        );
    }
    for (t, n) in last.iter().enumerate() {
        assert_eq!(
            value_of(&cache, &format!("hot{t}")).await,
            Some((n - 1).to_le_bytes().to_vec()),
            "hot{t}"
        );
    }
}

/// Promise 2 with write-through: eight tasks set overlapping keys (each `set` Ok: on disk),
/// interleaved with flushes (Ok) and flushes cancelled after 0 to 2 ms; every task returns;
/// the queue is empty after, and an idle flush returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r37_write_through_sets_with_flushes_some_cancelled_all_return() {
    let cache = write_through(Duration::from_secs(30), 2).await;
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(1)))
            .ops(&[FsOp::WriteNew])
            .path_contains("/v2/")
            .one_in(2, 3),
    );
    let c = cache.cache.clone();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut oks = 0u64;
            for i in 0..40u64 {
                let k = format!("s{}", (t * 7 + i) % 16);
                c.set_bytes(&k, format!("{t}-{i}")).await.unwrap();
                match i % 3 {
                    0 => {
                        c.flush().await.unwrap();
                        oks += 1;
                    }
                    1 => {
                        let _ = tokio::time::timeout(Duration::from_millis(t % 3), c.flush()).await;
                    }
                    _ => {}
                }
            }
            oks
        }));
    }
    let mut oks = 0;
    for t in tasks {
        oks += tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
    }
    assert_eq!(oks, 8 * 14);
    let s = c.stats();
    assert_eq!(
        (s.sets, s.writes_failed, s.lost_writes),
        (320, 0, 0),
        "{s:?}"
    );
    idle_flush_is_instant(&c).await;
}
