//! Promises 1, 2, 3 and 7 against a model, under concurrency and seeded random faults:
//! several tasks on a multi-thread runtime set, remove, get and flush their own keys (so each
//! key's order is known exactly) while a FaultFs fails calls at random (EIO, ENOSPC, short
//! writes, delays). The main task clears the cache between phases. Then the disk heals, the
//! cache is closed and reopened, and every key is compared with the model.
//!
//! What each check may assume:
//! - in process, a `get` returns the key's last value or a miss, never an older value
//!   (DESIGN: a lost value's older file is "never served again: not in this process");
//! - a `flush` that returned Ok: a second instance on the directory (reading the disk) sees
//!   exactly the last value of every key the flushing task owns;
//! - a write-through `set`/`remove` that returned Ok, if it is the key's last operation, is
//!   what a restart shows, whatever `close` said;
//! - after `close` Ok, a restart shows exactly the model; after `close` Err, never a value
//!   that was not set for the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::{Error, TieredCache, WritePolicy};

use crate::helpers::*;

#[derive(Debug, Clone, Copy)]
struct Cfg {
    seed: u64,
    write_through: bool,
    hot_entries: usize,
    fault_one_in: u64,
    clears: bool,
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    /// Last value set (None: removed or cleared).
    last: Option<Vec<u8>>,
    /// The last operation was a write-through op acknowledged Ok.
    acked: bool,
    /// The last operation was a `remove` (not a clear).
    removed: bool,
    /// Cleared by a clear that returned Err, not set since.
    cleared_unrecorded: bool,
}

type Model = Arc<Mutex<HashMap<String, KeyState>>>;

const TASKS: usize = 6;
const KEYS: usize = 5;
const OPS: usize = 70;

fn key(t: usize, k: usize) -> String {
    format!("t{t}/k{k}")
}

async fn task(
    t: usize,
    cfg: Cfg,
    cache: TieredCache,
    observer: TieredCache,
    model: Model,
    violations: Arc<Mutex<Vec<String>>>,
    phase: usize,
) {
    let mut rng = Rng::new(
        cfg.seed
            .wrapping_mul(1000)
            .wrapping_add((t * 10 + phase) as u64),
    );
    let v = |s: String| violations.lock().unwrap().push(s);
    for i in 0..OPS {
        let k = key(t, rng.below(KEYS));
        let seq = ((phase * OPS + i) * TASKS + t) as u64;
        match rng.below(10) {
            0..=3 => {
                let len = [0usize, 10, 200, 3000, 20_000][rng.below(5)];
                let val = value_for(k.as_bytes(), seq, len);
                let r = cache.set_bytes(&k, &val).await;
                let acked = match r {
                    Ok(()) => cfg.write_through,
                    Err(Error::NotPersisted { .. }) if cfg.write_through => false,
                    Err(e) => {
                        v(format!("set {k}: unexpected error {e}"));
                        false
                    }
                };
                model.lock().unwrap().insert(
                    k.clone(),
                    KeyState {
                        last: Some(val),
                        acked,
                        ..Default::default()
                    },
                );
            }
            4 => {
                let r = cache.remove(&k).await;
                let acked = match r {
                    Ok(_) => cfg.write_through,
                    Err(Error::NotPersisted { .. }) if cfg.write_through => false,
                    Err(e) => {
                        v(format!("remove {k}: unexpected error {e}"));
                        false
                    }
                };
                model.lock().unwrap().insert(
                    k.clone(),
                    KeyState {
                        last: None,
                        acked,
                        removed: true,
                        ..Default::default()
                    },
                );
            }
            5 => {
                if let Ok(()) = cache.flush().await {
                    // Promise 2: everything this task set before the flush is on disk.
                    for kk in 0..KEYS {
                        let k = key(t, kk);
                        let st = model.lock().unwrap().get(&k).cloned().unwrap_or_default();
                        if st.cleared_unrecorded {
                            continue;
                        }
                        let on_disk = observer.get_bytes(&k).await.unwrap().map(|b| b.to_vec());
                        let ok = match (&st.last, &on_disk) {
                            (Some(w), Some(g)) => w == g,
                            (None, None) => true,
                            (None, Some(_)) => !st.removed, // a clear's leftover file: fenced
                            (Some(_), None) => false,
                        };
                        if !ok {
                            let file = std::fs::read(entry_path(observer.root(), &k)).ok();
                            let mine = cache.get_bytes(&k).await.ok().flatten().map(|b| b.to_vec());
                            let again = observer.get_bytes(&k).await.unwrap().map(|b| b.to_vec());
                            v(format!(
                                "promise 2: flush Ok but {k} on disk is {} (model {}; entry file \
                                 {} bytes; this instance serves {}; observer again {}; stats {:?})",
                                short(&on_disk),
                                short(&st.last),
                                file.map_or(-1, |f| f.len() as i64),
                                short(&mine),
                                short(&again),
                                cache.stats()
                            ));
                        }
                    }
                }
            }
            _ => {
                let got = cache.get_bytes(&k).await.unwrap().map(|b| b.to_vec());
                let st = model.lock().unwrap().get(&k).cloned().unwrap_or_default();
                if let Some(g) = &got {
                    if let Err(e) = check_value(k.as_bytes(), g) {
                        v(format!("promise 7: get {k}: {e}"));
                    } else if st.last.as_ref() != Some(g) {
                        v(format!(
                            "promise 1: get {k} returned {} but the last value is {}",
                            short(&got),
                            short(&st.last)
                        ));
                    }
                }
            }
        }
        if rng.chance(1.0 / 8.0) {
            tokio::task::yield_now().await;
        }
    }
}

async fn run(cfg: Cfg) {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let n = cfg.fault_one_in;
    let s = cfg.seed;
    let all = FsOp::ALL;
    fs.add_rule(Rule::new(Fault::Errno(EIO)).ops(&all).one_in(n, s));
    fs.add_rule(
        Rule::new(Fault::Errno(ENOSPC))
            .ops(&[FsOp::WriteNew])
            .one_in(n, s + 1),
    );
    fs.add_rule(
        Rule::new(Fault::ShortWrite(EIO))
            .ops(&[FsOp::WriteNew])
            .one_in(n, s + 2),
    );
    fs.add_rule(Rule::new(Fault::Delay(Duration::from_millis(2))).one_in(16, s + 3));
    let policy = if cfg.write_through {
        WritePolicy::WriteThrough
    } else {
        WritePolicy::WriteBehind
    };
    let b = builder(&root, &clock)
        .fs(fs.clone())
        .write_policy(policy)
        .durability(answercache::Durability::NoSync)
        .hot_capacity_entries(cfg.hot_entries)
        .failure_threshold(3)
        .memory_only_after(8)
        .error_window(Duration::from_secs(1))
        .open_timeout(Duration::from_millis(15))
        .max_open_timeout(Duration::from_millis(60))
        .recovery_interval(Duration::from_millis(25))
        .health_interval(Duration::from_millis(30))
        .io_timeout(Duration::from_secs(2))
        .write_queue_bytes(64 << 10);
    let cache = b.clone().build().await.unwrap();
    let observer = builder(&root, &clock)
        .hot_capacity_bytes(0)
        .build()
        .await
        .unwrap();
    let model: Model = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let phases = if cfg.clears { 3 } else { 2 };
    let mut clear_errs = 0;
    for phase in 0..phases {
        let mut hs = Vec::new();
        for t in 0..TASKS {
            hs.push(tokio::spawn(task(
                t,
                cfg,
                cache.clone(),
                observer.clone(),
                model.clone(),
                violations.clone(),
                phase,
            )));
        }
        for h in hs {
            h.await.expect("a task panicked");
        }
        clock.advance(Duration::from_millis(7));
        if cfg.clears && phase + 1 < phases {
            let r = cache.clear().await;
            let failed = r.is_err();
            clear_errs += u64::from(failed);
            for st in model.lock().unwrap().values_mut() {
                *st = KeyState {
                    cleared_unrecorded: failed,
                    ..Default::default()
                };
            }
            for t in 0..TASKS {
                for k in 0..KEYS {
                    let k = key(t, k);
                    if let Some(g) = cache.get_bytes(&k).await.unwrap() {
                        violations.lock().unwrap().push(format!(
                            "promise 5: {k} served after clear ({:?}): {}",
                            r.as_ref().err(),
                            short(&Some(g.to_vec()))
                        ));
                    }
                }
            }
            clock.advance(Duration::from_millis(3));
        }
    }
    // Heal, settle, check in process (promise 2 with a healthy disk), close, restart.
    fs.clear_rules();
    let settled = settle(&cache, Duration::from_secs(4)).await;
    let stats = cache.stats();
    let closed = cache.close().await;
    observer.close().await.ok();
    let c = fresh(&root, &clock).await;
    let model = model.lock().unwrap().clone();
    let mut older_after_err = 0;
    for t in 0..TASKS {
        for k in 0..KEYS {
            let k = key(t, k);
            let st = model.get(&k).cloned().unwrap_or_default();
            let got = c.get_bytes(&k).await.unwrap().map(|b| b.to_vec());
            let bad = |s: String| violations.lock().unwrap().push(s);
            if let Some(g) = &got {
                if let Err(e) = check_value(k.as_bytes(), g) {
                    bad(format!("promise 7: after restart {k}: {e}"));
                    continue;
                }
            }
            if closed.is_ok() {
                if got != st.last {
                    bad(format!(
                        "promise 1: close Ok, yet after restart {k} = {} (model {})",
                        short(&got),
                        short(&st.last)
                    ));
                }
            } else if st.acked && got != st.last {
                bad(format!(
                    "promise 3: {k}'s last op was an acknowledged write-through op, yet after \
                     restart {k} = {} (model {})",
                    short(&got),
                    short(&st.last)
                ));
            } else if got.is_some() && got != st.last {
                older_after_err += 1;
            }
        }
    }
    c.close().await.unwrap();
    eprintln!(
        "MODEL {cfg:?}: settled={:?} closed={:?} clear_errs={clear_errs} faults={} lost_writes={} \
         lost_keys={} older_after_close_err={older_after_err} task_panics={}",
        settled.as_ref().err(),
        closed.as_ref().err(),
        fs.faults_injected(),
        stats.lost_writes,
        stats.lost_keys,
        stats.task_panics
    );
    let v = violations.lock().unwrap().clone();
    assert!(
        stats.task_panics == 0,
        "promise 6: task panics {}",
        stats.task_panics
    );
    assert!(
        v.is_empty(),
        "{cfg:?}: {} violations:\n{}",
        v.len(),
        v.join("\n")
    );
    // With room in memory nothing can be lost: a healed disk must make close Ok.
    if cfg.hot_entries >= 1000 {
        assert!(
            closed.is_ok(),
            "{cfg:?}: nothing could be lost (hot tier holds every key), the disk healed, yet \
             close = {closed:?}"
        );
    }
}

async fn run_bounded(cfg: Cfg) {
    if tokio::time::timeout(Duration::from_secs(40), run(cfg))
        .await
        .is_err()
    {
        panic!("promise 6: {cfg:?} hung (40 s)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_write_behind_room_in_memory_with_clears() {
    for seed in [1, 2] {
        run_bounded(Cfg {
            seed,
            write_through: false,
            hot_entries: 10_000,
            fault_one_in: 12,
            clears: true,
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_write_through_room_in_memory_with_clears() {
    for seed in [3, 4] {
        run_bounded(Cfg {
            seed,
            write_through: true,
            hot_entries: 10_000,
            fault_one_in: 12,
            clears: true,
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_write_behind_tiny_hot_tier() {
    for seed in [5, 6] {
        run_bounded(Cfg {
            seed,
            write_through: false,
            hot_entries: 3,
            fault_one_in: 10,
            clears: true,
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_write_through_tiny_hot_tier() {
    for seed in [7, 8] {
        run_bounded(Cfg {
            seed,
            write_through: true,
            hot_entries: 2,
            fault_one_in: 10,
            clears: false,
        })
        .await;
    }
}
