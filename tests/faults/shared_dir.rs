//! Two processes, one cache directory: thousands of mixed operations each, at the same time.
//!
//! One process writes through with fsync, the other writes behind without; both keep a small
//! hot tier (16 entries, one shard), so most reads go to the write queue or the disk, where the
//! other process's renames land. Every value names its key, its writer and its sequence number
//! and carries padding derived from them, so a reader tells a torn value, or another key's,
//! from a real one. Shared keys are written and removed by both: a read must return a whole
//! value of that key, from either writer, or nothing. Private keys are written by their owner
//! only: its reads must return exactly its last `set` (or nothing after its `remove`), and so
//! must a third process opening the directory afterwards. Neither process may panic, count a
//! corrupted file (a reader seeing a half-renamed entry would quarantine it), or leave a temp
//! file behind; `verify` is clean at the end.

use std::collections::HashMap;
use std::process::Stdio;

use answercache::{Durability, WritePolicy};

use crate::support::*;

const WRITER_ENV: &str = "ANSWERCACHE_FAULTS_WRITER";
const OPS_ENV: &str = "ANSWERCACHE_FAULTS_OPS";
const SHARED_KEYS: u64 = 64;
const PRIVATE_KEYS: u64 = 32;

fn shared(i: u64) -> String {
    format!("shared{i}")
}

fn private(w: u64, i: u64) -> String {
    format!("private{w}-{i}")
}

#[test]
fn two_processes_one_directory() {
    if role().as_deref() == Some("shared-writer") {
        return writer();
    }
    let ops: u64 = scale(3000, 30_000);
    let dir = scratch_dir();
    let root = dir.path().join("cache");
    let name = test_name(module_path!(), "two_processes_one_directory");
    let children: Vec<_> = (0..2u64)
        .map(|w| {
            let mut cmd = child_command(&name, "shared-writer", Wrap::Plain);
            cmd.env(DIR_ENV, &root)
                .env(WRITER_ENV, w.to_string())
                .env(OPS_ENV, ops.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut figures: HashMap<String, u64> = HashMap::new();
    let mut finals: HashMap<String, Option<u64>> = HashMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        check_child(&out);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let line = line.find("SHARED ").map_or(line, |at| &line[at..]);
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["SHARED", fields @ ..] => {
                    for f in fields {
                        let (k, v) = f.split_once('=').unwrap();
                        *figures.entry(k.to_owned()).or_default() += v.parse::<u64>().unwrap();
                    }
                }
                ["FINAL", k, v] => {
                    finals.insert((*k).to_owned(), v.parse().ok());
                }
                _ => {}
            }
        }
    }
    assert_eq!(finals.len(), 2 * PRIVATE_KEYS as usize);
    let report = verify_report(&root);
    assert!(report.is_clean(), "{report:?}");

    // A third process sees every private key as its owner left it.
    let rt = runtime();
    let (lost, wrong, temps) = rt.block_on(async {
        let cache = builder(&root).build().await.unwrap();
        let temps = temp_files(&root);
        let (mut lost, mut wrong) = (0u64, 0u64);
        for (k, want) in &finals {
            let got = cache.get_bytes(k).await.unwrap();
            let got = got.map(|v| check_value(k, &v).map(|(_, s)| s));
            match (got, want) {
                (Some(Ok(s)), Some(w)) if s == *w => {}
                (None, None) => {}
                (None, Some(_)) => lost += 1,
                _ => wrong += 1,
            }
        }
        cache.close().await.unwrap();
        (lost, wrong, temps)
    });
    let f = |k: &str| figures.get(k).copied().unwrap_or(0);
    reliability(
        "shared-directory",
        &[
            ("processes", &2),
            ("ops", &f("ops")),
            ("gets", &f("gets")),
            ("reads_of_other_process_values", &f("foreign")),
            ("warm_hits", &f("warm_hits")),
            ("wrong_values", &(f("wrong") + wrong)),
            ("torn_reads", &f("torn")),
            ("corrupted_files", &f("corrupted")),
            ("lost_entries", &lost),
            ("panics", &0),
            ("temp_files_after_open", &temps),
        ],
    );
    assert_eq!(f("ops"), 2 * ops);
    assert!(
        f("foreign") > 0,
        "the processes never read each other's values"
    );
    assert_eq!(
        (f("wrong"), f("torn"), f("corrupted"), lost, wrong, temps),
        (0, 0, 0, 0, 0, 0)
    );
}

fn writer() {
    let root = child_dir();
    let w: u64 = std::env::var(WRITER_ENV).unwrap().parse().unwrap();
    let ops: u64 = std::env::var(OPS_ENV).unwrap().parse().unwrap();
    runtime().block_on(async {
        let (policy, durability) = if w == 0 {
            (WritePolicy::WriteThrough, Durability::Fsync)
        } else {
            (WritePolicy::WriteBehind, Durability::NoSync)
        };
        let cache = builder(&root)
            .write_policy(policy)
            .durability(durability)
            .hot_capacity_entries(16)
            .hot_shards(1)
            .build()
            .await
            .unwrap();
        let mut rng = Rng::new(0xa11ce + w);
        let mut mine: HashMap<u64, Option<u64>> = HashMap::new();
        let (mut gets, mut foreign, mut wrong, mut torn) = (0u64, 0u64, 0u64, 0u64);
        for seq in 1..=ops {
            let len = 100 + rng.below(4000);
            match rng.below(100) {
                0..40 => {
                    let k = shared(rng.below(SHARED_KEYS as usize) as u64);
                    cache.set_bytes(&k, value(&k, w, seq, len)).await.unwrap();
                }
                40..48 => {
                    cache.remove(shared(rng.below(SHARED_KEYS as usize) as u64)).await.unwrap();
                }
                48..62 => {
                    let i = rng.below(PRIVATE_KEYS as usize) as u64;
                    let k = private(w, i);
                    cache.set_bytes(&k, value(&k, w, seq, len)).await.unwrap();
                    mine.insert(i, Some(seq));
                }
                62..66 => {
                    let i = rng.below(PRIVATE_KEYS as usize) as u64;
                    cache.remove(private(w, i)).await.unwrap();
                    mine.insert(i, None);
                }
                _ => {
                    gets += 1;
                    if rng.chance(0.5) {
                        let k = shared(rng.below(SHARED_KEYS as usize) as u64);
                        if let Some(v) = cache.get_bytes(&k).await.unwrap() {
                            match check_value(&k, &v) {
                                Ok((writer, _)) => foreign += u64::from(writer != w),
                                Err(e) => {
                                    eprintln!("writer {w}: {e}");
                                    torn += 1;
                                }
                            }
                        }
                    } else {
                        let i = rng.below(PRIVATE_KEYS as usize) as u64;
                        let k = private(w, i);
                        let got = cache.get_bytes(&k).await.unwrap();
                        let got = got.map(|v| check_value(&k, &v));
                        let want = mine.get(&i).copied().flatten();
                        match (got, want) {
                            (Some(Ok((_, s))), Some(want)) if s == want => {}
                            (None, None) => {}
                            (Some(Err(e)), _) => {
                                eprintln!("writer {w}: {e}");
                                torn += 1;
                            }
                            (got, want) => {
                                eprintln!("writer {w}: {k} read {got:?}, last set {want:?}");
                                wrong += 1;
                            }
                        }
                    }
                }
            }
        }
        cache.flush().await.unwrap();
        let s = cache.stats();
        cache.close().await.unwrap();
        // On a line of its own: libtest may have printed "test name ... " before it.
        println!(
            "\nSHARED ops={ops} gets={gets} foreign={foreign} warm_hits={} wrong={wrong} torn={torn} corrupted={}",
            s.warm_hits, s.corrupted
        );
        for i in 0..PRIVATE_KEYS {
            let v = mine.get(&i).copied().flatten();
            println!("FINAL {} {}", private(w, i), v.map_or("none".into(), |s| s.to_string()));
        }
        assert_eq!((wrong, torn, s.corrupted), (0, 0, 0));
    });
}
