//! Chaos: 64 tasks of mixed operations (set, get, remove, flush, clear) on 96 keys over a
//! file system that fails at random (EIO, ENOSPC, EROFS, EACCES, EFBIG, short writes, flipped
//! bits on read), sleeps at random and sometimes hangs until released; tasks sleep at random
//! between operations and drop some operations mid-flight. Seeded; timers (breaker, probe,
//! health check, sweep) run on real time, so the breaker opens and closes and memory-only mode
//! comes and goes while the tasks run.
//!
//! The whole run is under a timeout (no deadlock), every task is joined (no panic), and every
//! value any `get` returns is whole and is one that was set for its key. Then the disk heals:
//! `close` returns, `verify` is clean, and a reopened cache holds, for every key, nothing or a
//! value that was set for it, with no temp file left.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::{TieredCache, WritePolicy};

use crate::support::*;

const TASKS: u64 = 64;
const KEYS: u64 = 96;
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// key -> every sequence number ever set for it.
type Ever = Arc<Mutex<HashMap<String, HashSet<u64>>>>;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    ops: u64,
    gets: u64,
    values_read: u64,
    dropped: u64,
    wrong: u64,
}

fn key(i: u64) -> String {
    format!("chaos{i}")
}

fn faults(fs: &FaultFs, seed: u64) {
    let rules = [
        Rule::new(Fault::Errno(EIO)).one_in(150, seed),
        Rule::new(Fault::Errno(ENOSPC)).one_in(300, seed + 1),
        Rule::new(Fault::Errno(EROFS)).one_in(600, seed + 2),
        Rule::new(Fault::Errno(EACCES)).one_in(600, seed + 3),
        Rule::new(Fault::Errno(EFBIG))
            .ops(&[FsOp::WriteNew])
            .one_in(200, seed + 4),
        Rule::new(Fault::ShortWrite(ENOSPC))
            .ops(&[FsOp::WriteNew])
            .one_in(100, seed + 5),
        Rule::new(Fault::FlipBit(8 * 60 + 3))
            .ops(&[FsOp::ReadFile])
            .one_in(50, seed + 6),
        Rule::new(Fault::Delay(Duration::from_millis(3))).one_in(15, seed + 7),
        Rule::new(Fault::Hang).one_in(400, seed + 8).times(6),
    ];
    for r in rules {
        fs.add_rule(r);
    }
}

async fn task(
    t: u64,
    seed: u64,
    ops: u64,
    cache: TieredCache,
    ever: Ever,
    seq: Arc<AtomicU64>,
) -> Figures {
    let mut rng = Rng::new(seed * 1000 + t);
    let mut f = Figures::default();
    for _ in 0..ops {
        f.ops += 1;
        let k = key(rng.below(KEYS as usize) as u64);
        // 10% of operations are dropped after a random few microseconds.
        let drop_after = rng
            .chance(0.1)
            .then(|| Duration::from_micros(rng.below(300) as u64));
        let roll = rng.below(100);
        let op = async {
            match roll {
                0..35 => {
                    let s = seq.fetch_add(1, Ordering::Relaxed);
                    ever.lock().unwrap().entry(k.clone()).or_default().insert(s);
                    let len = 50 + rng.below(3000);
                    persisted(cache.set_bytes(&k, value(&k, t, s, len)).await);
                    None
                }
                35..45 => {
                    persisted(cache.remove(&k).await);
                    None
                }
                45..47 => {
                    let _ = cache.flush().await;
                    None
                }
                47 if rng.chance(0.1) => {
                    let _ = cache.clear().await;
                    None
                }
                _ => Some(cache.get_bytes(&k).await.unwrap()),
            }
        };
        let got = match drop_after {
            Some(d) => match tokio::time::timeout(d, op).await {
                Ok(got) => got,
                Err(_) => {
                    f.dropped += 1;
                    None
                }
            },
            None => op.await,
        };
        if let Some(got) = got {
            f.gets += 1;
            if let Some(v) = got {
                f.values_read += 1;
                let ok = match check_value(&k, &v) {
                    Ok((_, s)) => ever
                        .lock()
                        .unwrap()
                        .get(&k)
                        .is_some_and(|set| set.contains(&s)),
                    Err(_) => false,
                };
                if !ok {
                    eprintln!(
                        "chaos seed {seed} task {t}: {k} returned a value never set: {:?}",
                        check_value(&k, &v)
                    );
                    f.wrong += 1;
                }
            }
        }
        if rng.chance(0.7) {
            tokio::time::sleep(Duration::from_micros(rng.below(8000) as u64)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    f
}

#[derive(Debug, Default)]
struct Run {
    f: Figures,
    faults: u64,
    transitions: u64,
    memory_only_entries: u64,
    quarantined: u64,
    reopen_wrong: u64,
    temps_after_open: u64,
    secs: f64,
}

async fn chaos(seed: u64, ops: u64) -> Run {
    let started = std::time::Instant::now();
    let dir = scratch_dir();
    let root = dir.path().join("cache");
    let fs = Arc::new(FaultFs::std());
    let cache = builder(&root)
        .fs(fs.clone())
        .write_policy(if seed.is_multiple_of(2) {
            WritePolicy::WriteBehind
        } else {
            WritePolicy::WriteThrough
        })
        .hot_capacity_entries(48)
        .hot_shards(4)
        .failure_threshold(3)
        .open_timeout(Duration::from_millis(50))
        .max_open_timeout(Duration::from_millis(400))
        .memory_only_after(8)
        .error_window(Duration::from_secs(2))
        .recovery_interval(Duration::from_millis(150))
        .health_interval(Duration::from_millis(100))
        .sweep_interval(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    faults(&fs, seed);
    let stop = Arc::new(AtomicBool::new(false));
    let releaser = {
        let (fs, stop) = (fs.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(40)).await;
                fs.release_hangs();
            }
        })
    };
    let ever: Ever = Arc::default();
    let seq = Arc::new(AtomicU64::new(1));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(task(t, seed, ops, cache.clone(), ever.clone(), seq.clone())))
        .collect();
    let mut run = Run::default();
    for handle in tasks {
        let f = handle.await.expect("a task panicked");
        run.f.ops += f.ops;
        run.f.gets += f.gets;
        run.f.values_read += f.values_read;
        run.f.dropped += f.dropped;
        run.f.wrong += f.wrong;
    }
    stop.store(true, Ordering::Relaxed);
    releaser.await.unwrap();
    run.faults = fs.faults_injected();
    fs.clear_rules();
    let s = cache.stats();
    run.transitions = s.breaker_transitions;
    run.memory_only_entries = s.memory_only_entries;
    run.quarantined = s.quarantined_files;
    let _ = cache.close().await;
    drop(cache);
    let report = verify_report(&root);
    assert!(report.is_clean(), "seed {seed}: {report:?}");

    let reopened = builder(&root).build().await.unwrap();
    run.temps_after_open = temp_files(&root) as u64;
    for i in 0..KEYS {
        let k = key(i);
        if let Some(v) = reopened.get_bytes(&k).await.unwrap() {
            let ok = match check_value(&k, &v) {
                Ok((_, s)) => ever
                    .lock()
                    .unwrap()
                    .get(&k)
                    .is_some_and(|set| set.contains(&s)),
                Err(_) => false,
            };
            run.reopen_wrong += u64::from(!ok);
        }
    }
    reopened.close().await.unwrap();
    run.secs = started.elapsed().as_secs_f64();
    run
}

#[test]
fn sixty_four_tasks_random_faults_and_delays() {
    let seeds: Vec<u64> = scale(vec![1, 2], (1..=20).collect());
    let ops: u64 = scale(400, 1500);
    let rt = runtime();
    let mut total = Run::default();
    for seed in &seeds {
        let run = rt
            .block_on(async { tokio::time::timeout(RUN_LIMIT, chaos(*seed, ops)).await })
            .unwrap_or_else(|_| panic!("seed {seed}: no progress within {RUN_LIMIT:?}: deadlock"));
        println!("chaos seed {seed}: {run:?}");
        total.f.ops += run.f.ops;
        total.f.gets += run.f.gets;
        total.f.values_read += run.f.values_read;
        total.f.dropped += run.f.dropped;
        total.f.wrong += run.f.wrong;
        total.faults += run.faults;
        total.transitions += run.transitions;
        total.memory_only_entries += run.memory_only_entries;
        total.quarantined += run.quarantined;
        total.reopen_wrong += run.reopen_wrong;
        total.temps_after_open += run.temps_after_open;
        total.secs += run.secs;
    }
    let seeds_text = seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    reliability(
        "chaos",
        &[
            ("tasks", &TASKS),
            ("seeds", &seeds_text),
            ("ops", &total.f.ops),
            ("gets", &total.f.gets),
            ("values_read", &total.f.values_read),
            ("dropped_futures", &total.f.dropped),
            ("faults_injected", &total.faults),
            ("breaker_transitions", &total.transitions),
            ("memory_only_entries", &total.memory_only_entries),
            ("quarantined_after_bit_flips", &total.quarantined),
            ("wrong_values", &(total.f.wrong + total.reopen_wrong)),
            ("deadlocks", &0),
            ("panics", &0),
            ("temp_files_after_open", &total.temps_after_open),
        ],
    );
    assert_eq!(
        (total.f.wrong, total.reopen_wrong, total.temps_after_open),
        (0, 0, 0)
    );
    assert!(total.transitions > 0, "the faults never moved the breaker");
}
