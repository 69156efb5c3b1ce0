//! Stepped reads (64 KiB steps) outside the usual runtime contexts, and dropped by their
//! context mid-steps:
//!
//! - a hand-written executor (thread park/unpark) on a plain thread that entered a
//!   multi-thread runtime's handle, and one that entered an idle current-thread runtime's
//!   handle (`yield_now` then has no scheduler: it wakes at once): a stepped hit, a pool hit
//!   and a hostile member caught at its last step, each with its exact counts;
//! - a `LocalSet` dropped, and a runtime dropped, while a get yields between its steps;
//! - many gets of one 1 MiB value at once on two workers.

use std::sync::mpsc;
use std::task::{Context, Poll, Wake, Waker};

use answercache::warm::format::deflate;

use super::*;

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `f` to the end on this thread, parking between polls: no tokio scheduler.
fn block_on_plain<F: std::future::Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

/// Three keys on disk only: a stepped value (128 KiB + 1 of text), a pool value (64 KiB of
/// noise), a bomb found at its second step.
async fn plant_three(cache: &TieredCache, tag: &str) -> [(String, Option<Vec<u8>>, Moved); 3] {
    let stepped = text(2 * STEP + 1, 41);
    let pooled = noise(STEP, 42);
    let (sk, pk, bk) = (
        format!("{tag}:stepped"),
        format!("{tag}:pooled"),
        format!("{tag}:bomb"),
    );
    park(cache, &sk, &stepped).await;
    park(cache, &pk, &pooled).await;
    let payload = deflate(&stepped, 6).unwrap();
    plant(
        &v2_path(cache.root(), bk.as_bytes()),
        &resealed(&bk, stepped.len() as u64 - 1, &payload, now_ms()),
    );
    [
        (sk, Some(stepped), STEPPED_HIT),
        (pk, Some(pooled), POOL_HIT),
        (bk, None, CORRUPT_MISS),
    ]
}

/// Reads the three keys with `block_on_plain` on a new thread that entered `handle` (a
/// watchdog turns a hang into a failure), each with its exact counts.
fn read_three_on_a_plain_thread(
    rt: &tokio::runtime::Runtime,
    cache: &TieredCache,
    handle: tokio::runtime::Handle,
    keys: &[(String, Option<Vec<u8>>, Moved); 3],
) {
    for (key, want, counts) in keys {
        let (tx, rx) = mpsc::channel();
        let (c, k) = (cache.clone(), key.clone());
        let h = handle.clone();
        std::thread::spawn(move || {
            let _entered = h.enter();
            let s0 = c.stats();
            let got = block_on_plain(c.get_bytes(&k)).unwrap();
            let _ = tx.send((got, moved(&s0, &c.stats())));
        });
        let (got, m) = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{key}: no answer: {e}"));
        assert!(
            got.as_deref() == want.as_deref(),
            "{key}: {:?}",
            got.map(|g| g.len())
        );
        assert_eq!(m, *counts, "{key}");
        rt.block_on(evict_hot(cache));
    }
}

#[test]
fn plain_executor_with_an_entered_multi_thread_handle() {
    let rt = mt(2);
    let cache = rt.block_on(open());
    let keys = rt.block_on(plant_three(&cache, "plain-mt"));
    read_three_on_a_plain_thread(&rt, &cache, rt.handle().clone(), &keys);
    let s = cache.stats();
    assert_eq!((s.corrupted, s.quarantined_files, s.disk_errors), (1, 1, 0));
    assert_eq!(reason_count(&s, "bomb"), 1);
}

/// The cache opened on a multi-thread runtime; the reads on a plain thread that entered the
/// handle of a current-thread runtime nobody drives: its blocking pool runs the pool reads,
/// `yield_now` wakes at once.
#[test]
fn plain_executor_with_an_idle_current_thread_handle_entered() {
    let rt = mt(2);
    let cache = rt.block_on(open());
    let keys = rt.block_on(plant_three(&cache, "plain-ct"));
    let idle = ct();
    read_three_on_a_plain_thread(&rt, &cache, idle.handle().clone(), &keys);
    let s = cache.stats();
    assert_eq!((s.corrupted, s.quarantined_files, s.disk_errors), (1, 1, 0));
}

/// The state a dropped get must leave: nothing counted since `s0`, the file and the index as
/// they were; the next get exactly the value, a stepped hit with 15 yields.
async fn after_a_dropped_get(
    cache: &TieredCache,
    key: &str,
    value: &[u8],
    file: &[u8],
    s0: &Stats,
) {
    let s1 = cache.stats();
    assert_eq!(moved(s0, &s1), Moved::default(), "{key}");
    assert_eq!(
        (s1.warm_entries, s1.warm_bytes),
        (s0.warm_entries, s0.warm_bytes),
        "{key}"
    );
    assert!(file_is(cache.root(), key, file), "{key}");
    let (got, yields) = get_counting_yields(cache, key).await;
    assert!(got.as_deref() == Some(value), "{key}");
    assert_eq!(
        (moved(&s1, &cache.stats()), yields),
        (STEPPED_HIT, 15),
        "{key}"
    );
    cache.flush().await.unwrap();
    index_matches_disk(cache, cache.root()).unwrap();
}

#[test]
fn a_local_set_dropped_between_steps() {
    let rt = ct();
    let cache = rt.block_on(open());
    let value = text(VALUE_MAX, 51);
    for yields in [0u32, 1, 3, 7] {
        let key = format!("local-drop:{yields}");
        rt.block_on(park(&cache, &key, &value));
        let file = std::fs::read(v2_path(cache.root(), key.as_bytes())).unwrap();
        let s0 = cache.stats();
        let set = tokio::task::LocalSet::new();
        let (c, k) = (cache.cache.clone(), key.clone());
        let task = set.spawn_local(async move { c.get_bytes(&k).await.unwrap() });
        rt.block_on(set.run_until(async {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
        }));
        drop(set);
        let err = rt.block_on(task).unwrap_err();
        assert!(err.is_cancelled(), "{key}: {err}");
        rt.block_on(after_a_dropped_get(&cache, &key, &value, &file, &s0));
    }
}

#[test]
fn a_runtime_dropped_between_steps() {
    let rt = mt(2);
    let cache = rt.block_on(open());
    let value = text(VALUE_MAX, 52);
    for yields in [0u32, 1, 3, 7] {
        let key = format!("rt-drop:{yields}");
        rt.block_on(park(&cache, &key, &value));
        let file = std::fs::read(v2_path(cache.root(), key.as_bytes())).unwrap();
        let s0 = cache.stats();
        let other = ct();
        let (c, k) = (cache.cache.clone(), key.clone());
        let task = other.spawn(async move { c.get_bytes(&k).await.unwrap() });
        other.block_on(async {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
        });
        drop(other);
        let err = rt.block_on(task).unwrap_err();
        assert!(err.is_cancelled(), "{key}: {err}");
        rt.block_on(after_a_dropped_get(&cache, &key, &value, &file, &s0));
    }
}

/// 24 gets of one 1 MiB value (16 steps each) at once on two workers: every one exactly the
/// value; each a warm or a hot hit, none a miss; no error; the index equals the disk.
#[test]
fn many_stepped_gets_of_one_key_at_once() {
    mt(2).block_on(async {
        let cache = open().await;
        let value = Arc::new(text(VALUE_MAX, 61));
        park(&cache, "many", &value).await;
        let s0 = cache.stats();
        let tasks: Vec<_> = (0..24)
            .map(|_| {
                let c = cache.cache.clone();
                tokio::spawn(async move { c.get_bytes("many").await.unwrap() })
            })
            .collect();
        for t in tasks {
            let got = t.await.unwrap();
            assert!(got.as_deref() == Some(&value[..]));
        }
        let s1 = cache.stats();
        let m = moved(&s0, &s1);
        assert_eq!(m.warm_hits + m.hot_hits, 24, "{m:?}");
        assert_eq!((m.misses, m.corrupted, m.disk_errors), (0, 0, 0), "{m:?}");
        assert!(
            m.inline_reads >= 1 && m.inline_reads <= m.warm_hits,
            "{m:?}"
        );
        cache.flush().await.unwrap();
        index_matches_disk(&cache, cache.root()).unwrap();
    });
}
