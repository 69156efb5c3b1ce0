//! Review r36 of f7813e6 ("a leader's second look finds the previous leader's value in the
//! write queue or on disk"): adversarial tests of `lead`'s second look (`peek_hot`, else
//! `Tiers::lookup_local`) against removals, clears, newer sets, expiry, corrupt files,
//! values of another type, `no_cache`, `stale_if_error` and the counters. Findings:
//! `REVIEW_R36_FINDINGS.md`. (Since fa133af the first lookup is `lookup_local` and the
//! second look, after the hot peek, a full `lookup` with the shared tier last; no test here
//! configures a shared tier.)
//!
//! Most tests hold a leader L the way `second_look.rs` does: L's first lookup reads an expired
//! file of the key and is held just after the read; meanwhile a previous leader P loads,
//! stores and lands, and its answer is evicted from the hot tier (one entry). Released, L
//! misses, leads a flight of its own and looks again. Some tests hold that second look too,
//! at its read of the key's file, to act while L's flight is open.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use answercache::fs::{DirEntryInfo, FileRead};
use answercache::testing::{real_fs, wait_until};
use answercache::workload::{chat_completion, chat_json, ChatCompletion, Rng};
use answercache::{Answer, Builder, Controls, Fs, Source, TieredCache};

use crate::support::*;

/// The key every scenario is about: a chat request's cache key.
const KEY: &str = "chat:gpt-4o:v1:what is the capital of France, and why is it there?";

/// A gate a blocking fs call waits at (after its read) until the test opens it; the test can
/// wait, bounded, for a caller to arrive.
#[derive(Debug, Default)]
struct Hold {
    /// (a call is waiting, the gate is open)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Hold {
    fn wait_here(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 = true;
        self.cv.notify_all();
        while !st.1 {
            st = self.cv.wait(st).unwrap();
        }
    }

    /// Whether a caller arrived within `limit`.
    fn arrived_within(&self, limit: Duration) -> bool {
        let st = self.state.lock().unwrap();
        let (st, _) = self.cv.wait_timeout_while(st, limit, |s| !s.0).unwrap();
        st.0
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// Waits (bounded by `PATIENCE`) for a call to arrive at `hold`.
async fn caught(hold: &Arc<Hold>) -> bool {
    let h = hold.clone();
    tokio::task::spawn_blocking(move || h.arrived_within(PATIENCE))
        .await
        .unwrap()
}

/// A file system over `inner` that holds the next read of `target` at an armed [`Hold`], and,
/// while armed, every entry write and entry delete (paths under `v2/`).
#[derive(Debug)]
struct Script {
    inner: Arc<dyn Fs>,
    target: Mutex<PathBuf>,
    next_read: Mutex<Option<Arc<Hold>>>,
    target_reads: AtomicU64,
    writes: Mutex<Option<Arc<Hold>>>,
    /// Every hold ever armed: opened when the test ends, pass or fail.
    all: Mutex<Vec<Arc<Hold>>>,
}

impl Script {
    fn new(inner: Arc<dyn Fs>, target: PathBuf) -> Self {
        Script {
            inner,
            target: Mutex::new(target),
            next_read: Mutex::new(None),
            target_reads: AtomicU64::new(0),
            writes: Mutex::new(None),
            all: Mutex::new(Vec::new()),
        }
    }

    fn new_hold(&self) -> Arc<Hold> {
        let h = Arc::new(Hold::default());
        self.all.lock().unwrap().push(h.clone());
        h
    }

    /// The next read of the target waits at the returned hold.
    fn arm_read(&self) -> Arc<Hold> {
        let h = self.new_hold();
        *self.next_read.lock().unwrap() = Some(h.clone());
        h
    }

    /// Every entry write and delete from now on waits at the returned hold.
    fn hold_writes(&self) -> Arc<Hold> {
        let h = self.new_hold();
        *self.writes.lock().unwrap() = Some(h.clone());
        h
    }

    fn let_writes_go(&self) {
        if let Some(h) = self.writes.lock().unwrap().take() {
            h.open();
        }
    }

    fn reads_of_target(&self) -> u64 {
        self.target_reads.load(Ordering::SeqCst)
    }

    fn entry_op(&self, path: &Path) {
        let is_entry = path.components().any(|c| c.as_os_str() == "v2");
        let hold = self.writes.lock().unwrap().clone();
        if let (true, Some(h)) = (is_entry, hold) {
            h.wait_here();
        }
    }
}

/// Opens every hold of the script when dropped (a failing test must not leave a blocking
/// call held: the runtime would wait for it forever).
struct ReleaseAll(Arc<Script>);

impl Drop for ReleaseAll {
    fn drop(&mut self) {
        for h in self.0.all.lock().unwrap().iter() {
            h.open();
        }
    }
}

impl Fs for Script {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        let r = self.inner.read_file(path, max_len);
        if path == *self.target.lock().unwrap() {
            self.target_reads.fetch_add(1, Ordering::SeqCst);
            let hold = self.next_read.lock().unwrap().take();
            if let Some(h) = hold {
                h.wait_here();
            }
        }
        r
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.inner.read_prefix(path, n)
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        self.entry_op(path);
        self.inner.write_new(path, data, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.entry_op(path);
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.inner.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.inner.available_space(path)
    }
}

/// A chat completion, the value every loader here answers (distinct per seed).
fn completion(seed: u64) -> ChatCompletion {
    chat_completion(&mut Rng::new(seed), 2_000)
}

/// The answers of the callers of a scenario.
struct Answers {
    old: ChatCompletion,
    p: ChatCompletion,
    l: ChatCompletion,
    c: ChatCompletion,
}

fn answers() -> Answers {
    Answers {
        old: completion(3600),
        p: completion(1),
        l: completion(2),
        c: completion(3),
    }
}

/// A loader that counts its calls and answers `value`.
fn loader(
    loads: &Arc<AtomicU64>,
    value: ChatCompletion,
) -> impl FnOnce() -> std::future::Ready<Result<ChatCompletion, io::Error>> {
    let loads = loads.clone();
    move || {
        loads.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(value))
    }
}

type Call = tokio::task::JoinHandle<answercache::Result<Answer<ChatCompletion>>>;

/// A `get_or_insert_answer` of [`KEY`] on its own task.
fn call(
    cache: &TieredCache,
    controls: Controls<ChatCompletion>,
    loads: &Arc<AtomicU64>,
    value: ChatCompletion,
) -> Call {
    let (cache, load) = (cache.clone(), loader(loads, value));
    tokio::spawn(async move { cache.get_or_insert_answer(KEY, &controls, load).await })
}

/// The answer of a call (bounded: a hang fails the test).
async fn finish(call: Call) -> Answer<ChatCompletion> {
    tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call hung")
        .expect("the call panicked")
        .expect("the call failed")
}

/// `(id of the answer, where it came from)`: what a scenario checks of an answer.
fn seen(a: &Answer<ChatCompletion>) -> (String, Source) {
    (a.value.id.clone(), a.source)
}

struct Ctx {
    h: TestCache,
    fs: Arc<Script>,
    _release: ReleaseAll,
    p_loads: Arc<AtomicU64>,
    l_loads: Arc<AtomicU64>,
    c_loads: Arc<AtomicU64>,
}

/// A cache with a one-entry hot tier on a [`Script`] file system over `inner`, whose disk
/// holds an expired answer of [`KEY`] (a lookup of the key reads that file, and misses).
async fn scenario_on(inner: Arc<dyn Fs>, edit: impl FnOnce(Builder) -> Builder) -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(Script::new(inner, entry_path(dir.path(), KEY)));
    let release = ReleaseAll(fs.clone());
    let script = fs.clone();
    let mut h = dir_in(dir)
        .open_cache(|b| {
            edit(
                b.hot_capacity_entries(1)
                    .hot_shards(1)
                    .page_cache_reads(false)
                    .fs(script),
            )
        })
        .await;
    let old = chat_json(&answers().old, 2_000);
    h.set_bytes_with_ttl(KEY, old, Duration::from_secs(1))
        .await
        .unwrap();
    h.advance(Duration::from_secs(2));
    h.reopen().await;
    Ctx {
        h,
        fs,
        _release: release,
        p_loads: Arc::new(AtomicU64::new(0)),
        l_loads: Arc::new(AtomicU64::new(0)),
        c_loads: Arc::new(AtomicU64::new(0)),
    }
}

async fn scenario() -> Ctx {
    scenario_on(Arc::new(real_fs()), |b| b).await
}

impl Ctx {
    /// Starts the leader L (plain controls, answering `value`) and holds its first lookup at
    /// its read of the expired file. Returns L and the hold.
    async fn start_l(&self, value: ChatCompletion) -> (Call, Arc<Hold>) {
        self.start_l_with(Controls::new(), value).await
    }

    async fn start_l_with(
        &self,
        controls: Controls<ChatCompletion>,
        value: ChatCompletion,
    ) -> (Call, Arc<Hold>) {
        let first = self.fs.arm_read();
        let l = call(&self.h.cache, controls, &self.l_loads, value);
        assert!(
            caught(&first).await,
            "L's first lookup never read the key's file"
        );
        (l, first)
    }

    /// The previous leader P: loads `value` under `controls` and lands its flight.
    async fn p_loads(
        &self,
        controls: Controls<ChatCompletion>,
        value: ChatCompletion,
    ) -> Answer<ChatCompletion> {
        let loaded = self
            .h
            .cache
            .get_or_insert_answer(KEY, &controls, loader(&self.p_loads, value))
            .await
            .unwrap();
        assert_eq!(loaded.source, Source::Loaded);
        loaded
    }

    /// Evicts what the hot tier holds to the disk: flushed, replaced by another key, flushed.
    async fn evict_to_disk(&self) {
        self.h.cache.flush().await.unwrap();
        self.h
            .set_bytes("other", chat_json(&completion(99), 600))
            .await
            .unwrap();
        self.h.cache.flush().await.unwrap();
        assert_eq!(self.h.stats().hot_entries, 1, "\"other\" only");
    }

    fn loads(&self) -> (u64, u64, u64) {
        (
            self.p_loads.load(Ordering::SeqCst),
            self.l_loads.load(Ordering::SeqCst),
            self.c_loads.load(Ordering::SeqCst),
        )
    }

    /// `(hits, misses, joined, loader_calls)` of the cache since it was (re)opened.
    fn counted(&self) -> (u64, u64, u64, u64) {
        let s = self.h.stats();
        (
            s.hot_hits + s.warm_hits + s.queue_hits,
            s.misses,
            s.joined,
            s.loader_calls,
        )
    }

    async fn get(&self) -> Option<ChatCompletion> {
        self.h.cache.get::<ChatCompletion>(KEY).await.unwrap()
    }
}

/// How long a call spawned now is given to reach its flight (it has no disk call to make on
/// the way: a tombstone or `no_cache` skips the disk).
const TO_JOIN: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Promise 2: never a wrong, stale or removed answer.
// ---------------------------------------------------------------------------------------

/// FINDING R36-F1. L's second look reads P's file from the disk (held there); meanwhile
/// `remove` returns (a `get` now answers None) and a caller C starts after it: its lookup
/// misses on the tombstone and it joins L's flight. L's read, finished, serves the removed
/// answer: nothing on the way (`lookup_warm`: the promotion is refused, but the value is
/// returned; `Freshness::is_stale` knows only clears and lost writes) sees the removal, and
/// L lands it to C. A call begun after `remove` returned is served the removed answer.
/// Fixed: a flight whose leader found the value in the cache lands as abandoned; its waiters
/// start over with a lookup of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_a_call_begun_after_remove_is_not_served_the_removed_answer() {
    let ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    let second = ctx.fs.arm_read();
    first.open();
    assert!(
        caught(&second).await,
        "L's second look did not read the disk"
    );
    // On the disk only: `remove` reports that memory held nothing.
    assert!(!ctx.h.remove(KEY).await.unwrap());
    assert_eq!(ctx.get().await, None, "removed, for a get");
    let c = call(&ctx.h.cache, Controls::new(), &ctx.c_loads, a.c.clone());
    tokio::time::sleep(TO_JOIN).await;
    assert!(!c.is_finished(), "C waits for L's flight");
    second.open();
    let (l, c) = (finish(l).await, finish(c).await);
    // L began before the remove: its look may end with what it read (as a `get` racing a
    // remove may). C began after it: it starts over, sees the removal and loads its own.
    assert_eq!(
        (seen(&c), seen(&l), ctx.loads()),
        (
            (a.c.id.clone(), Source::Loaded),
            (a.p.id.clone(), Source::Joined),
            (1, 0, 1)
        ),
        "C (begun after the remove) must not get P's removed answer {}",
        a.p.id
    );
    ctx.h.cache.flush().await.unwrap();
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.c.id.clone()));
}

/// Guard. `clear` while L's second look reads P's file: the clear's fence makes the read
/// stale (`is_stale`), L loads, and C, begun after the clear, joins L's load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_clear_during_the_second_look_hides_the_previous_answer() {
    let ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    let second = ctx.fs.arm_read();
    first.open();
    assert!(
        caught(&second).await,
        "L's second look did not read the disk"
    );
    tokio::time::timeout(PATIENCE, ctx.h.cache.clear())
        .await
        .expect("clear waits for no read")
        .unwrap();
    assert_eq!(ctx.get().await, None, "cleared, for a get");
    let c = call(&ctx.h.cache, Controls::new(), &ctx.c_loads, a.c.clone());
    tokio::time::sleep(TO_JOIN).await;
    assert!(!c.is_finished(), "C waits for L's flight");
    second.open();
    let (l, c) = (finish(l).await, finish(c).await);
    assert_eq!(
        (seen(&l), seen(&c), ctx.loads()),
        (
            (a.l.id.clone(), Source::Loaded),
            (a.l.id.clone(), Source::Joined),
            (1, 1, 0)
        )
    );
    ctx.h.cache.flush().await.unwrap();
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.l.id.clone()));
}

/// Guard. P's answer expired (its controls' TTL) while on disk: the second look finds the
/// file expired, deletes it, and L loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_an_answer_expired_on_disk_is_not_served_by_the_second_look() {
    let ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new().ttl(Duration::from_secs(10)), a.p.clone())
        .await;
    ctx.evict_to_disk().await;
    ctx.h.advance(Duration::from_secs(20));
    first.open();
    let l = finish(l).await;
    assert_eq!(
        (seen(&l), ctx.loads(), ctx.counted()),
        ((a.l.id.clone(), Source::Loaded), (1, 1, 0), (0, 2, 0, 2))
    );
    // The expired file of the key that P's lookup read, and P's expired answer.
    assert_eq!(ctx.h.stats().warm_expirations, 2);
    ctx.h.cache.flush().await.unwrap();
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.l.id.clone()));
}

/// Guard. A newer `set` after P's load, evicted to the write queue (its write held): the
/// second look serves the set's value, not P's answer on the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_a_newer_set_in_the_queue_is_what_the_second_look_serves() {
    let mut ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    let _writes = ctx.fs.hold_writes();
    ctx.h.set(KEY, &a.c).await.unwrap();
    ctx.h
        .set_bytes("other2", chat_json(&completion(98), 600))
        .await
        .unwrap();
    assert_eq!(
        ctx.h.stats().write_queue_depth,
        2,
        "the set's write and other2's"
    );
    first.open();
    let l = finish(l).await;
    assert_eq!(
        (seen(&l), ctx.loads(), ctx.counted()),
        ((a.c.id.clone(), Source::Joined), (1, 0, 0), (0, 1, 1, 1))
    );
    ctx.fs.let_writes_go();
    ctx.h.cache.flush().await.unwrap();
    ctx.h.reopen().await;
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.c.id.clone()));
}

/// Guard. `remove` after P's load leaves a tombstone in the hot tier; its delete is held, so
/// P's file is still on the disk. The second look sees the tombstone, reads no file, and L
/// loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_a_tombstone_in_hot_hides_the_older_file_from_the_second_look() {
    let mut ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    let _writes = ctx.fs.hold_writes();
    assert!(!ctx.h.remove(KEY).await.unwrap());
    assert!(ctx.h.on_disk(KEY), "the delete is held: P's file is there");
    let reads = ctx.fs.reads_of_target();
    first.open();
    let l = finish(l).await;
    assert_eq!(
        (seen(&l), ctx.loads(), ctx.fs.reads_of_target() - reads),
        ((a.l.id.clone(), Source::Loaded), (1, 1, 0), 0)
    );
    assert_eq!(ctx.counted(), (0, 2, 0, 2));
    ctx.fs.let_writes_go();
    ctx.h.cache.flush().await.unwrap();
    ctx.h.reopen().await;
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.l.id.clone()));
}

/// Guard. P's file is corrupted on the disk (a byte of its body flipped) before L looks
/// again: the second look quarantines it as a `get` would, and L loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_a_corrupt_file_met_by_the_second_look_is_quarantined_not_served() {
    let ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    let path = ctx.h.entry_path(KEY);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    first.open();
    let l = finish(l).await;
    let s = ctx.h.stats();
    assert_eq!(
        (seen(&l), ctx.loads(), ctx.counted()),
        ((a.l.id.clone(), Source::Loaded), (1, 1, 0), (0, 2, 0, 2))
    );
    assert_eq!((s.corrupted, s.quarantined_files), (1, 1), "{s:?}");
    ctx.h.cache.flush().await.unwrap();
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.l.id.clone()));
}

/// Guard. P's answer is rejected by its `cacheable` (a truncated completion) or by
/// `no_store`: it is returned to P, never stored, so the second look finds nothing and L
/// loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_an_answer_cacheable_or_no_store_rejected_is_not_found_by_the_second_look() {
    for rejecting in ["cacheable", "no_store"] {
        let ctx = scenario().await;
        let a = answers();
        let (l, first) = ctx.start_l(a.l.clone()).await;
        let mut truncated = a.p.clone();
        truncated.choices[0].finish_reason = "length".into();
        let controls = match rejecting {
            "cacheable" => Controls::new().cacheable(|c: &ChatCompletion| {
                c.choices.iter().all(|c| c.finish_reason == "stop")
            }),
            _ => Controls::new().no_store(),
        };
        ctx.p_loads(controls, truncated).await;
        assert!(!ctx.h.on_disk(KEY), "{rejecting}: nothing stored");
        first.open();
        let l = finish(l).await;
        assert_eq!(
            (seen(&l), ctx.loads(), ctx.counted()),
            ((a.l.id.clone(), Source::Loaded), (1, 1, 0), (0, 2, 0, 2)),
            "{rejecting}"
        );
        ctx.h.cache.flush().await.unwrap();
        assert_eq!(
            ctx.get().await.map(|v| v.id),
            Some(a.l.id.clone()),
            "{rejecting}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// `no_cache`: "do not answer from the cache: call the loader (or join a load already in
// flight)".
// ---------------------------------------------------------------------------------------

/// FINDING R36-F2. A `no_cache` caller N (a "regenerate": the entry is known outdated) that
/// arrives while L's second look reads P's answer from the disk joins L's flight, which is
/// no load at all: N is served P's cached answer, its loader never runs and the entry is not
/// refreshed. Before f7813e6 the second look was a synchronous peek of the hot tier, with no
/// await between the flight's creation and its landing: no caller could join a flight that
/// ended in a cache read. Fixed (8c4357c): the flight lands as abandoned, N starts over and
/// loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_no_cache_a_refresh_joining_a_second_look_is_not_served_the_cached_answer() {
    let ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    let second = ctx.fs.arm_read();
    first.open();
    assert!(
        caught(&second).await,
        "L's second look did not read the disk"
    );
    let n = call(
        &ctx.h.cache,
        Controls::new().no_cache(),
        &ctx.c_loads,
        a.c.clone(),
    );
    tokio::time::sleep(TO_JOIN).await;
    assert!(!n.is_finished(), "N waits for L's flight");
    second.open();
    let (l, n) = (finish(l).await, finish(n).await);
    assert_eq!(seen(&l), (a.p.id.clone(), Source::Joined), "L: P's answer");
    assert_eq!(
        (seen(&n), ctx.loads()),
        ((a.c.id.clone(), Source::Loaded), (1, 0, 1)),
        "N asked not to be answered from the cache"
    );
    ctx.h.cache.flush().await.unwrap();
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.c.id.clone()));
}

// ---------------------------------------------------------------------------------------
// Promise 3: stale_if_error.
// ---------------------------------------------------------------------------------------

/// Guard. An expired answer in the hot tier and a failing model: every `stale_if_error` call
/// leads, its second look peeks the expired entry and leaves it, and the stale answer is
/// served each time (the whole outage); a waiter of the failed flight gets it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise3_the_second_look_leaves_the_stale_fallback_in_the_hot_tier() {
    let h = open(|b| b.hot_capacity_entries(4)).await;
    let old = completion(3600);
    h.set_with_ttl(KEY, &old, Duration::from_secs(60))
        .await
        .unwrap();
    h.advance(Duration::from_secs(120));
    let controls = Controls::new().stale_if_error(Duration::from_secs(600));
    let fails = Arc::new(AtomicU64::new(0));
    for round in 0..3 {
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let failing = {
            let fails = fails.clone();
            move || async move {
                fails.fetch_add(1, Ordering::SeqCst);
                let _ = gate_rx.await;
                Err::<ChatCompletion, _>(io::Error::other("503 model overloaded"))
            }
        };
        let (c1, c2) = (h.cache.clone(), h.cache.clone());
        let ctl = controls.clone();
        let leader = tokio::spawn(async move { c1.get_or_insert_answer(KEY, &ctl, failing).await });
        assert!(
            wait_until(PATIENCE, || h.loads_in_flight() == 1).await,
            "round {round}"
        );
        let ctl = controls.clone();
        let waiter = tokio::spawn(async move {
            c2.get_or_insert_answer(KEY, &ctl, || async { Ok::<_, io::Error>(completion(7)) })
                .await
        });
        tokio::time::sleep(TO_JOIN).await;
        gate_tx.send(()).unwrap();
        let (leader, waiter) = (finish(leader).await, finish(waiter).await);
        assert_eq!(
            (seen(&leader), seen(&waiter)),
            (
                (old.id.clone(), Source::Stale),
                (old.id.clone(), Source::Stale)
            ),
            "round {round}"
        );
        assert_eq!(
            h.stats().hot_entries,
            1,
            "round {round}: the fallback stays"
        );
    }
    let s = h.stats();
    assert_eq!(
        (
            fails.load(Ordering::SeqCst),
            s.loader_calls,
            s.misses,
            s.joined,
            s.stale_served,
            s.hot_hits + s.warm_hits + s.queue_hits
        ),
        (3, 3, 3, 3, 6, 0)
    );
}

// ---------------------------------------------------------------------------------------
// Promise 5 and 4: decoding, and decode misses counted once per call.
// ---------------------------------------------------------------------------------------

/// A provider's error body, stored raw by a bytes caller: not a `ChatCompletion`.
const ERROR_BODY: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}"#;

/// Guard. The previous load of the key was another type's (a bytes caller storing the
/// provider's raw error body; a typed caller of another struct): its flight is not L's, but
/// its value is what the second look finds. A decode miss, counted once, and L loads once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise5_another_types_value_found_by_the_second_look_is_one_decode_miss() {
    for other in ["bytes", "struct"] {
        let ctx = scenario().await;
        let a = answers();
        let (l, first) = ctx.start_l(a.l.clone()).await;
        match other {
            "bytes" => {
                let got = ctx
                    .h
                    .get_or_insert_bytes(KEY, &Controls::new(), || async {
                        Ok::<_, io::Error>(ERROR_BODY)
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    (&got.value[..], got.source),
                    (ERROR_BODY.as_bytes(), Source::Loaded)
                );
            }
            _ => {
                let got: Answer<crate::support::Answer> = ctx
                    .h
                    .get_or_insert_answer(KEY, &Controls::new(), || async {
                        Ok::<_, io::Error>(answer(&mut Rng::new(5), 800, 2))
                    })
                    .await
                    .unwrap();
                assert_eq!(got.source, Source::Loaded, "{other}");
            }
        }
        ctx.evict_to_disk().await;
        first.open();
        let l = finish(l).await;
        let s = ctx.h.stats();
        assert_eq!(
            (seen(&l), ctx.loads(), ctx.counted(), s.decode_misses),
            ((a.l.id.clone(), Source::Loaded), (0, 1, 0), (0, 2, 0, 2), 1),
            "{other}"
        );
        ctx.h.cache.flush().await.unwrap();
        assert_eq!(
            ctx.get().await.map(|v| v.id),
            Some(a.l.id.clone()),
            "{other}"
        );
    }
}

/// Guard. A call meets the undecodable value twice: in its own lookup (a decode miss), then,
/// after the flight it joined was abandoned and the value left the hot tier, in its second
/// look on the disk. One decode miss per call: 2 for the 2 calls, not 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise4_a_call_meeting_an_undecodable_value_twice_counts_one_decode_miss() {
    let h = open(|b| b.hot_capacity_entries(1).hot_shards(1)).await;
    h.set_bytes(KEY, ERROR_BODY).await.unwrap();
    h.cache.flush().await.unwrap();
    h.set_bytes("other", b"x".to_vec()).await.unwrap();
    h.cache.flush().await.unwrap();
    // Q: its loader never answers; its future is dropped below (a client gone).
    let q = {
        let c = h.cache.clone();
        tokio::spawn(async move {
            c.get_or_insert_with::<ChatCompletion, _, _, _>(KEY, || async {
                std::future::pending::<Result<ChatCompletion, io::Error>>().await
            })
            .await
        })
    };
    assert!(wait_until(PATIENCE, || h.stats().loader_calls == 1).await);
    // L: its lookup meets the value in the hot tier (promoted by Q's), then joins Q's flight.
    let l_loads = Arc::new(AtomicU64::new(0));
    let l_value = completion(2);
    let l = call(&h.cache, Controls::new(), &l_loads, l_value.clone());
    assert!(wait_until(PATIENCE, || h.stats().decode_misses == 2).await);
    tokio::time::sleep(TO_JOIN).await;
    // The value leaves the hot tier (clean: dropped, on the disk still); Q goes.
    h.set_bytes("other", b"y".to_vec()).await.unwrap();
    q.abort();
    let l = finish(l).await;
    let s = h.stats();
    assert_eq!(
        (
            seen(&l),
            l_loads.load(Ordering::SeqCst),
            s.decode_misses,
            s.misses,
            s.loader_calls,
            s.joined
        ),
        ((l_value.id.clone(), Source::Loaded), 1, 2, 2, 2, 0)
    );
}

// ---------------------------------------------------------------------------------------
// Promise 1 and 4: one model call per key, counters exact, under churn.
// ---------------------------------------------------------------------------------------

/// Guard. 8 questions asked 40 times each by concurrent agents over a one-entry hot tier
/// (every answer is evicted to the queue or the disk within microseconds): each question's
/// model is called exactly once in all (nothing expires or is removed, so any caller after
/// the first load finds its answer somewhere in the replica), and the counters add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise1_one_model_call_per_question_under_a_one_entry_hot_tier() {
    const QUESTIONS: usize = 8;
    const ASKS: usize = 40;
    let h = open(|b| b.hot_capacity_entries(1).hot_shards(1)).await;
    let calls: Arc<Vec<AtomicU64>> = Arc::new((0..QUESTIONS).map(|_| AtomicU64::new(0)).collect());
    let mut rng = Rng::new(36);
    let mut tasks = Vec::new();
    for i in 0..QUESTIONS * ASKS {
        let q = rng.below(QUESTIONS);
        let (cache, calls) = (h.cache.clone(), calls.clone());
        let pause = rng.below(3) as u64;
        tasks.push(tokio::spawn(async move {
            let key = format!("chat:v1:question {q}");
            let got: ChatCompletion = cache
                .get_or_insert_with(key.as_str(), || async move {
                    calls[q].fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    Ok::<_, io::Error>(completion(q as u64))
                })
                .await
                .unwrap();
            (q, got.id)
        }));
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        let (q, id) = tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
        assert_eq!(id, completion(q as u64).id, "question {q}");
    }
    let per_question: Vec<u64> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(per_question, vec![1; QUESTIONS]);
    let s = h.stats();
    assert_eq!(
        (
            s.hot_hits + s.warm_hits + s.queue_hits + s.misses + s.joined + s.bypasses,
            s.loader_calls,
            s.misses
        ),
        (
            (QUESTIONS * ASKS) as u64,
            QUESTIONS as u64,
            QUESTIONS as u64
        ),
        "{s:?}"
    );
}

/// Guard. With the disk's breaker open, the second look does not read the disk (as a `get`
/// would not): L loads, and reports the failed store as a loaded answer, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_the_second_look_reads_no_disk_while_the_breaker_is_open() {
    use answercache::testing::{Fault, FaultFs, FsOp, Rule};
    let fault = Arc::new(FaultFs::std());
    let ctx = scenario_on(fault.clone(), |b| {
        b.failure_threshold(1)
            .open_timeout(Duration::from_secs(3600))
            .max_open_timeout(Duration::from_secs(3600))
    })
    .await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    // A failing write opens the breaker.
    fault.add_rule(Rule::new(Fault::Errno(5)).ops(&[FsOp::WriteNew]).times(1));
    ctx.h.set_bytes("third", b"z".to_vec()).await.unwrap();
    let cache = ctx.h.cache.clone();
    assert!(
        wait_until(PATIENCE, || cache.breaker_state()
            == answercache::BreakerState::Open)
        .await,
        "the failed write did not open the breaker"
    );
    let reads = ctx.fs.reads_of_target();
    first.open();
    let l = finish(l).await;
    assert_eq!(
        (seen(&l), ctx.loads(), ctx.fs.reads_of_target() - reads),
        ((a.l.id.clone(), Source::Loaded), (1, 1, 0), 0)
    );
    assert_eq!(ctx.counted(), (0, 2, 0, 2));
}

/// Guard. The key's newest value V was lost (evicted from memory while the disk was off:
/// memory-only mode), and the disk still holds an older answer O of the key. Once the disk
/// is back, the second look must not serve O (the lost mark, or the purge of O, hides it):
/// L loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise2_the_second_look_does_not_serve_the_older_file_of_a_lost_write() {
    use answercache::testing::{Fault, FaultFs, FsOp, Rule};
    use answercache::Mode;
    let fault = Arc::new(FaultFs::std());
    let ctx = scenario_on(fault.clone(), |b| {
        b.failure_threshold(1)
            .memory_only_after(1)
            .recovery_interval(Duration::from_millis(100))
            .open_timeout(Duration::from_millis(100))
            .max_open_timeout(Duration::from_millis(100))
    })
    .await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    // O: an older answer of the key, on the disk only.
    ctx.h.set(KEY, &a.old).await.unwrap();
    ctx.evict_to_disk().await;
    assert!(ctx.h.on_disk(KEY));
    // The disk fails: memory-only. V, the key's newest value, is then evicted: lost.
    fault.add_rule(Rule::new(Fault::Errno(5)).ops(&[FsOp::WriteNew]));
    ctx.h.set(KEY, &a.p).await.unwrap();
    let flushed = ctx.h.cache.flush().await;
    assert!(
        matches!(flushed, Err(answercache::Error::NotPersisted { .. })),
        "{flushed:?}"
    );
    assert_eq!(ctx.h.mode(), Mode::MemoryOnly);
    // Memory-only doubles the hot tier (2 entries): V, other2; other3 evicts V.
    for k in ["other2", "other3"] {
        ctx.h.set_bytes(k, b"evicts V".to_vec()).await.unwrap();
    }
    assert_eq!(ctx.h.stats().lost_writes, 1, "{:?}", ctx.h.stats());
    // The disk is back.
    fault.clear_rules();
    let cache = ctx.h.cache.clone();
    assert!(
        wait_until(PATIENCE, || cache.mode() == Mode::Tiered).await,
        "never recovered"
    );
    first.open();
    let l = finish(l).await;
    assert_eq!(
        (seen(&l), ctx.loads()),
        ((a.l.id.clone(), Source::Loaded), (0, 1, 0)),
        "the older answer {} must not be served",
        a.old.id
    );
    ctx.h.cache.flush().await.unwrap();
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.l.id.clone()));
}

/// Guard (no hangs). L's future is dropped (its client went away) while its second look
/// reads the disk, with a `no_cache` caller C (a refresh: its lookup is skipped, so it joins
/// L's flight) waiting on it: C takes the flight over, runs its loader once, and its answer
/// replaces P's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise6_a_leader_dropped_during_its_second_look_hands_over_to_its_waiter() {
    let ctx = scenario().await;
    let a = answers();
    let (l, first) = ctx.start_l(a.l.clone()).await;
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    let second = ctx.fs.arm_read();
    first.open();
    assert!(
        caught(&second).await,
        "L's second look did not read the disk"
    );
    let c = call(
        &ctx.h.cache,
        Controls::new().no_cache(),
        &ctx.c_loads,
        a.c.clone(),
    );
    tokio::time::sleep(TO_JOIN).await;
    assert!(!c.is_finished(), "C waits for L's flight");
    l.abort();
    assert!(tokio::time::timeout(PATIENCE, l)
        .await
        .unwrap()
        .unwrap_err()
        .is_cancelled());
    let c = finish(c).await;
    assert_eq!(
        (seen(&c), ctx.loads(), ctx.counted()),
        ((a.c.id.clone(), Source::Loaded), (1, 0, 1), (0, 2, 0, 2))
    );
    assert_eq!(ctx.h.loads_in_flight(), 0);
    second.open();
    ctx.h.cache.flush().await.unwrap();
    assert_eq!(ctx.get().await.map(|v| v.id), Some(a.c.id.clone()));
}

/// Guard. A bytes caller's second look finds the typed answer P stored (another flight: a
/// typed load): bytes decode whatever the encoding, so it is served as its JSON text, and no
/// loader runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise5_a_bytes_callers_second_look_serves_the_typed_answer_as_json() {
    let ctx = scenario().await;
    let a = answers();
    let first = ctx.fs.arm_read();
    let l = {
        let (cache, loads) = (ctx.h.cache.clone(), ctx.l_loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_bytes(KEY, &Controls::new(), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, io::Error>(ERROR_BODY)
                })
                .await
        })
    };
    assert!(
        caught(&first).await,
        "L's first lookup never read the key's file"
    );
    ctx.p_loads(Controls::new(), a.p.clone()).await;
    ctx.evict_to_disk().await;
    first.open();
    let l = tokio::time::timeout(PATIENCE, l)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let served: ChatCompletion = serde_json::from_slice(&l.value).unwrap();
    assert_eq!(
        (served, l.source, ctx.loads(), ctx.counted()),
        (a.p.clone(), Source::Joined, (1, 0, 0), (0, 1, 1, 1))
    );
}
