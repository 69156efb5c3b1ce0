//! What the handle shows of itself (`Debug`, its size) and `invalidate_if`'s interleaving of
//! the caller's predicate with the disk scan.

use std::sync::{Arc, Mutex};

use answercache::testing::FsOp;
use answercache::{Namespace, TieredCache};

use crate::support::*;

/// `Debug` of the handle: the root and the hot tier's shards, bytes and entries (how full the
/// cache is, in a log line).
#[tokio::test(start_paused = true)]
async fn debug_output_of_the_handle() {
    let env = Env::new();
    let cache = env.open(env.builder().hot_shards(4)).await;
    let root = format!("{:?}", env.root);
    assert_eq!(
        format!("{cache:?}"),
        format!(
            "TieredCache {{ root: {root}, hot: HotTier {{ shards: 4, bytes: 0, entries: 0 }} }}"
        )
    );
    cache.set("k", &"v").await.unwrap();
    let s = cache.stats();
    assert_eq!(s.hot_entries, 1);
    assert_eq!(
        format!("{cache:?}"),
        format!(
            "TieredCache {{ root: {root}, hot: HotTier {{ shards: 4, bytes: {}, entries: 1 }} }}",
            s.hot_bytes
        )
    );
    cache.close().await.unwrap();
}

/// `Debug` of a namespace shows its cache the same way.
#[tokio::test(start_paused = true)]
async fn debug_output_of_a_namespace() {
    let env = Env::new();
    let cache = env.open(env.builder()).await;
    let ns: Namespace = cache.namespace("chat").unwrap();
    let root = format!("{:?}", env.root);
    let shown = format!("{ns:?}");
    let expected = format!(
        "Namespace {{ cache: TieredCache {{ root: {root}, hot: HotTier {{ shards: 1, bytes: 0, \
         entries: 0 }} }}, name: \"chat\", slot: NamespaceSlot {{ generation: 0, "
    );
    assert!(
        shown.starts_with(&expected),
        "\n got: {shown}\nwant: {expected}..."
    );
    cache.close().await.unwrap();
}

/// The handle is two pointers (cloning it costs two reference-count increments).
#[test]
fn the_handle_is_two_pointers() {
    assert_eq!(
        std::mem::size_of::<TieredCache>(),
        2 * std::mem::size_of::<usize>()
    );
    assert_eq!(
        std::mem::size_of::<Option<TieredCache>>(),
        2 * std::mem::size_of::<usize>()
    );
}

/// `invalidate_if` calls the predicate on each fan-out directory's keys as soon as that
/// directory is read (keeping only the matching keys), not after the whole disk was read:
/// the predicate of a key in the first directory read runs after 2 directory listings (the
/// entries dir, `ab/`), the one of a key in the second after 3.
#[tokio::test(start_paused = true)]
async fn invalidate_if_calls_the_predicate_per_directory() {
    let env = Env::new();
    // Two keys in two different fan-out directories.
    let a = "alpha";
    let b = (0..)
        .map(|i| format!("beta{i}"))
        .find(|k| Env::top_dir(k) != Env::top_dir(a))
        .unwrap();
    let builder = env.write_through();
    let cache = env.open(builder.clone()).await;
    cache.set(a, &1).await.unwrap();
    cache.set(&b, &2).await.unwrap();
    cache.close().await.unwrap();
    // Reopened: the hot tier is empty, both keys are found by the disk scan only.
    let cache = env.open(builder).await;
    let base = env.fs.calls(FsOp::ReadDir);
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (fs, seen2) = (env.fs.clone(), seen.clone());
    let removed = cache
        .invalidate_if(move |_| {
            seen2.lock().unwrap().push(fs.calls(FsOp::ReadDir) - base);
            true
        })
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(*seen.lock().unwrap(), vec![2, 3]);
    cache.close().await.unwrap();
}

/// Cancelling `invalidate_if` during its disk scan: the predicate has already seen the keys
/// of the directories read so far (it runs per directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_invalidate_if_has_seen_the_directories_read() {
    use answercache::testing::{Fault, Rule};
    use std::time::Duration;
    let env = Env::new();
    let a = "alpha";
    let b = (0..)
        .map(|i| format!("beta{i}"))
        .find(|k| Env::top_dir(k) != Env::top_dir(a))
        .unwrap();
    let builder = env.write_through();
    let cache = env.open(builder.clone()).await;
    cache.set(a, &1).await.unwrap();
    cache.set(&b, &2).await.unwrap();
    cache.close().await.unwrap();
    let cache = env.open(builder).await;
    // The second fan-out directory listed is slow (the first one's listing passes).
    env.fs.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(1500)))
            .ops(&[FsOp::ReadDir])
            .path_contains("/v2/")
            .skip(1)
            .times(1),
    );
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen2 = seen.clone();
    let r = tokio::time::timeout(
        Duration::from_millis(700),
        cache.invalidate_if(move |k| {
            seen2.lock().unwrap().push(k.to_vec());
            false
        }),
    )
    .await;
    assert!(r.is_err(), "the scan should still run: {r:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0] == a.as_bytes() || seen[0] == b.as_bytes());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cache.close().await.unwrap();
}

/// `stats()` reads the counters before the hot tier's size (as it did): a `set` inserts its
/// entry before it counts itself, so with only sets of new keys (no eviction, no removal) a
/// snapshot never shows fewer hot entries than sets. Fields are not promised to be taken
/// together, but this order held them consistent for an insert-only workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_never_show_more_sets_than_hot_entries_on_an_insert_only_load() {
    use answercache::testing::FsOp;
    use answercache::{Mode, TieredCache};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let env = Env::new();
    let cache = TieredCache::builder(&env.root)
        .fs(env.fs.clone())
        .min_free_bytes(0)
        .memory_only_after(1)
        .failure_threshold(1)
        .recovery_interval(DAY)
        .health_interval(DAY)
        .sweep_interval(DAY)
        .hot_capacity_entries(1_000_000)
        .hot_capacity_bytes(1 << 30)
        .build()
        .await
        .unwrap();
    env.fail(&[FsOp::WriteNew], EIO);
    cache.set("trigger", &0).await.unwrap();
    let _ = cache.flush().await;
    assert_eq!(cache.mode(), Mode::MemoryOnly);
    let done = Arc::new(AtomicBool::new(false));
    let mut setters = Vec::new();
    for t in 0..6 {
        let cache = cache.clone();
        setters.push(tokio::spawn(async move {
            for i in 0..10_000u32 {
                cache.set(format!("t{t}-{i}"), &i).await.unwrap();
            }
        }));
    }
    // Snapshots taken on a thread of their own while the six setters run.
    let reader = {
        let (cache, done) = (cache.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut samples, mut violations) = (0u64, Vec::new());
            while !done.load(Ordering::SeqCst) || samples == 0 {
                let s = cache.stats();
                samples += 1;
                if s.hot_entries < s.sets || s.dirty_entries < s.sets {
                    violations.push((s.sets, s.hot_entries, s.dirty_entries));
                }
            }
            (samples, violations)
        })
    };
    for s in setters {
        s.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (samples, violations) = reader.join().unwrap();
    let s = cache.stats();
    assert_eq!(
        (s.sets, s.hot_entries, s.dirty_entries, s.hot_evictions),
        (60_001, 60_001, 60_001, 0)
    );
    assert_eq!(
        violations.len(),
        0,
        "of {samples} snapshots; (sets, hot_entries, dirty_entries) of the first that saw \
         more sets: {:?}",
        &violations[..violations.len().min(5)]
    );
    env.fs.clear_rules();
    drop(cache);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The auto traits of the public handles (what a caller can move into a thread, keep across
/// `catch_unwind`, pin): `[Send, Sync, Unpin, UnwindSafe, RefUnwindSafe]`.
#[test]
fn auto_traits_of_the_handles() {
    use std::marker::PhantomData;
    use std::panic::{RefUnwindSafe, UnwindSafe};
    // Inherent methods win over trait methods when their bound holds (autoref probing).
    macro_rules! has {
        ($t:ty, $tr:path) => {{
            struct Q<T: ?Sized>(PhantomData<T>);
            #[allow(dead_code)]
            trait No {
                fn get(&self) -> bool {
                    false
                }
            }
            impl<T: ?Sized> No for Q<T> {}
            impl<T: ?Sized + $tr> Q<T> {
                #[allow(dead_code)]
                fn get(&self) -> bool {
                    true
                }
            }
            Q::<$t>(PhantomData).get()
        }};
    }
    macro_rules! row {
        ($t:ty) => {
            format!(
                "{}: {:?}",
                stringify!($t),
                [
                    has!($t, Send),
                    has!($t, Sync),
                    has!($t, Unpin),
                    has!($t, UnwindSafe),
                    has!($t, RefUnwindSafe),
                ]
            )
        };
    }
    let rows = vec![
        row!(answercache::TieredCache),
        row!(answercache::Namespace),
        row!(answercache::Builder),
        row!(answercache::Stats),
    ];
    assert_eq!(
        rows,
        [
            "answercache::TieredCache: [true, true, true, false, false]",
            "answercache::Namespace: [true, true, true, false, false]",
            "answercache::Builder: [true, true, true, false, false]",
            "answercache::Stats: [true, true, true, true, true]",
        ]
    );
}
