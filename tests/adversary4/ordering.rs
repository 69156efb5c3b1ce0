//! Ordering guarantees under real concurrency: multi-thread runtimes, many tasks, a slow
//! disk (real delays in the fs), restarts on the same directory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::testing::{Fault, FsOp, Rule};
use answercache::{Error, Mode, TieredCache, WritePolicy};

use crate::support::*;

/// A slow disk: every entry write (temp file) sleeps `ms` first.
fn slow_writes(env: &Env, ms: u64) {
    env.fs.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(ms)))
            .ops(&[FsOp::WriteNew])
            .path_contains("/tmp/"),
    );
}

/// Real-time builder (no manual clock: the multi-thread tests run on the wall clock).
fn realtime(env: &Env) -> answercache::Builder {
    TieredCache::builder(&env.root)
        .fs(env.fs.clone())
        .min_free_bytes(0)
        .health_interval(DAY)
        .sweep_interval(DAY)
        .recovery_interval(DAY)
        .memory_only_after(100_000)
        .failure_threshold(100_000)
        .io_timeout(Duration::from_secs(30))
}

/// (key, phase before the set, phase after it, fence file on disk before it)
type SetRecord = (String, u8, u8, bool);

/// `clear` vs writes in flight: a value whose `set` returned before `clear` was called is
/// never served again, by this process or after a restart, and its file is gone once the
/// writes drain; a value set after the clear began (its fence file already on disk when the
/// `set` started) is never deleted by it, nor is one set after `clear` returned. Eight tasks
/// keep writing through a slow disk while `clear` runs, and the clear's own deletion is slow,
/// so that writes made meanwhile would land before it if it did not hold them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clear_vs_writes_in_flight() {
    let env = Env::new();
    slow_writes(&env, 3);
    let b = realtime(&env).write_concurrency(8);
    let cache = b.clone().build().await.unwrap();
    spin_until(|| cache.stats().warm_index_complete).await;
    // The clear lists the entry directory before it deletes: slow that listing down.
    env.fs.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(300)))
            .ops(&[FsOp::ReadDir])
            .path_contains("/v2")
            .times(1),
    );
    let fence = env.root.join("fence");
    assert!(!fence.exists());
    // 0: before clear is called; 1: clear running; 2: clear returned.
    let phase = Arc::new(AtomicU8::new(0));
    let log: Arc<Mutex<Vec<SetRecord>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (cache, phase, log, fence) = (cache.clone(), phase.clone(), log.clone(), fence.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u32;
            let mut after = 0;
            loop {
                let k = format!("t{t}-{i}");
                let p0 = phase.load(Ordering::SeqCst);
                let fenced = fence.exists();
                cache.set(&k, &i).await.unwrap();
                let p1 = phase.load(Ordering::SeqCst);
                log.lock().unwrap().push((k, p0, p1, fenced));
                i += 1;
                if p0 == 2 {
                    after += 1;
                    if after == 10 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    phase.store(1, Ordering::SeqCst);
    cache.clear().await.unwrap();
    phase.store(2, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    cache.flush().await.unwrap();
    let log = log.lock().unwrap().clone();
    let before: Vec<&String> = log.iter().filter(|e| e.2 == 0).map(|e| &e.0).collect();
    let during: Vec<&String> = log
        .iter()
        .filter(|e| e.1 == 1 && e.3)
        .map(|e| &e.0)
        .collect();
    let after: Vec<&String> = log.iter().filter(|e| e.1 == 2).map(|e| &e.0).collect();
    assert!(!before.is_empty(), "no set returned before the clear");
    assert!(!during.is_empty(), "no set made while the clear deleted");
    assert_eq!(after.len(), 80);
    let mut served_before = Vec::new();
    let mut files_before = Vec::new();
    for k in &before {
        if cache.get::<u32>(k.as_str()).await.unwrap().is_some() {
            served_before.push(k.to_string());
        }
        if env.has_file(k) {
            files_before.push(k.to_string());
        }
    }
    let mut missing = Vec::new();
    for k in during.iter().chain(&after) {
        if cache.get::<u32>(k.as_str()).await.unwrap().is_none() || !env.has_file(k) {
            missing.push(k.to_string());
        }
    }
    assert_eq!(served_before, Vec::<String>::new(), "cleared values served");
    assert_eq!(files_before, Vec::<String>::new(), "cleared values on disk");
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "values set after the clear began lost ({} of them were set while it ran)",
        during.len()
    );
    let s = cache.stats();
    assert_eq!(
        (s.writes_failed, s.lost_writes, s.lost_keys, s.dirty_entries),
        (0, 0, 0, 0)
    );
    cache.close().await.unwrap();
    let cache = b.build().await.unwrap();
    for k in &before {
        assert_eq!(cache.get::<u32>(k.as_str()).await.unwrap(), None, "{k}");
    }
    for k in during.iter().chain(&after) {
        assert!(cache.get::<u32>(k.as_str()).await.unwrap().is_some(), "{k}");
    }
    cache.close().await.unwrap();
}

/// `flush` vs recovery write-back: a `flush` that sees the recovered mode also waits for the
/// write-back recovery started; `Ok` means every dirty entry is on disk, each written back
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flush_after_recovery_waits_for_its_write_back() {
    let env = Env::new();
    let b = realtime(&env)
        .memory_only_after(1)
        .failure_threshold(1)
        .recovery_interval(Duration::from_millis(200))
        .write_concurrency(2)
        .hot_capacity_entries(10_000);
    let cache = b.clone().build().await.unwrap();
    env.fail(&[FsOp::WriteNew], EIO);
    cache.set("trigger", &0).await.unwrap();
    assert!(matches!(
        cache.flush().await,
        Err(Error::NotPersisted { .. })
    ));
    assert_eq!(cache.mode(), Mode::MemoryOnly);
    let n = 60;
    for i in 0..n {
        cache.set(format!("d{i}"), &i).await.unwrap();
    }
    assert_eq!(cache.stats().dirty_entries, n + 1);
    env.fs.clear_rules();
    slow_writes(&env, 4);
    // Wait for the mode to turn, then flush at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cache.mode() != Mode::Tiered {
        assert!(std::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    let flushed = cache.flush().await;
    let on_disk = (0..n).filter(|i| env.has_file(&format!("d{i}"))).count();
    assert_eq!(
        (flushed.is_ok(), on_disk as u64),
        (true, n),
        "flush: {flushed:?}"
    );
    let s = cache.stats();
    assert_eq!(
        (s.dirty_entries, s.written_back, s.probes_ok, s.lost_keys),
        (0, n + 1, 1, 0)
    );
    cache.close().await.unwrap();
}

/// Eviction of dirty entries vs writer completion: with a tiny hot tier and a slow disk,
/// values leave memory before their writes land; a read right after each `set` still gets
/// that value (from the queue or the disk), nothing is counted lost, and after a restart
/// every key has its last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eviction_of_dirty_entries_vs_writer_completion() {
    let env = Env::new();
    slow_writes(&env, 1);
    let b = realtime(&env)
        .hot_capacity_entries(8)
        .hot_shards(1)
        .write_concurrency(4);
    let cache = b.clone().build().await.unwrap();
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (cache, wrong) = (cache.clone(), wrong.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..3u32 {
                for i in 0..25u32 {
                    let k = format!("t{t}-{i}");
                    let v = round * 1000 + i;
                    cache.set(&k, &v).await.unwrap();
                    let got = cache.get::<u32>(&k).await.unwrap();
                    if got != Some(v) {
                        wrong.lock().unwrap().push(format!("{k}: {got:?} != {v}"));
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*wrong.lock().unwrap(), Vec::<String>::new());
    cache.flush().await.unwrap();
    let s = cache.stats();
    assert_eq!(
        (
            s.sets,
            s.writes_failed,
            s.lost_writes,
            s.lost_keys,
            s.dirty_entries,
            s.misses
        ),
        (600, 0, 0, 0, 0, 0)
    );
    assert_eq!(s.hot_entries, 8);
    cache.close().await.unwrap();
    let cache = b.build().await.unwrap();
    for t in 0..8 {
        for i in 0..25u32 {
            let k = format!("t{t}-{i}");
            assert_eq!(cache.get::<u32>(&k).await.unwrap(), Some(2000 + i), "{k}");
        }
    }
    cache.close().await.unwrap();
}

/// Write-through acknowledgements under concurrency and random write failures: `Ok` means
/// the file is on disk when `set` returns; a failure is exactly `NotPersisted { failed: 1 }`
/// with the write's error text, and the value is still served; `flush` then writes back
/// every failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_acknowledgements_under_concurrency() {
    let env = Env::new();
    env.fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::WriteNew])
            .path_contains("/tmp/")
            .one_in(3, 7),
    );
    let b = realtime(&env)
        .write_policy(WritePolicy::WriteThrough)
        .write_concurrency(4);
    let cache = b.clone().build().await.unwrap();
    let results: Arc<Mutex<HashMap<String, Result<bool, String>>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (cache, results, env_root) = (cache.clone(), results.clone(), env.root.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                let k = format!("t{t}-{i}");
                let r = cache.set(&k, &i).await;
                let on_disk = answercache::warm::layout::Layout::new(&env_root)
                    .entry_path(&answercache::warm::layout::key_hash(k.as_bytes()))
                    .exists();
                let r = match r {
                    Ok(()) => Ok(on_disk),
                    Err(Error::NotPersisted {
                        failed: 1,
                        last_error,
                    }) => Err(last_error),
                    Err(e) => Err(format!("unexpected {e:?}")),
                };
                results.lock().unwrap().insert(k, r);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let results = results.lock().unwrap().clone();
    let ok_not_on_disk: Vec<_> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(false)))
        .collect();
    assert_eq!(ok_not_on_disk.len(), 0, "{ok_not_on_disk:?}");
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(!failed.is_empty());
    for (k, r) in &failed {
        assert_eq!(
            r.as_ref().unwrap_err(),
            "write: Input/output error (os error 5)",
            "{k}"
        );
    }
    let s = cache.stats();
    assert_eq!(
        (s.writes_failed, s.writes_ok, s.dirty_entries),
        (
            failed.len() as u64,
            200 - failed.len() as u64,
            failed.len() as u64
        )
    );
    for (k, _) in &failed {
        assert!(cache.get::<u32>(k.as_str()).await.unwrap().is_some(), "{k}");
    }
    env.fs.clear_rules();
    cache.flush().await.unwrap();
    assert_eq!(env.entry_files().len(), 200);
    assert_eq!(cache.stats().written_back, failed.len() as u64);
    cache.close().await.unwrap();
}

/// Drop without close: the last handle dropped, queued writes still land in the background
/// (through a slow disk), and a restart finds every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_without_close_drains_the_queue() {
    let env = Env::new();
    slow_writes(&env, 2);
    let b = realtime(&env).write_concurrency(2);
    let cache = b.clone().build().await.unwrap();
    let clone = cache.clone();
    let ns = cache.namespace("keep").unwrap();
    for i in 0..100u32 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    drop(cache);
    drop(clone);
    // A namespace handle keeps the cache open: its writes are still accepted.
    ns.set("n", &1).await.unwrap();
    drop(ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.entry_files().len() < 102 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} files landed",
            env.entry_files().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 100 entries, the namespace's record and its entry.
    assert_eq!(env.entry_files().len(), 102);
    let cache = b.build().await.unwrap();
    for i in 0..100u32 {
        assert_eq!(cache.get::<u32>(format!("k{i}")).await.unwrap(), Some(i));
    }
    let ns = cache.namespace("keep").unwrap();
    assert_eq!(ns.get::<u32>("n").await.unwrap(), Some(1));
    cache.close().await.unwrap();
}
