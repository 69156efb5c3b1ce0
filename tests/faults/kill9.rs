//! `kill -9`, for real: a child process runs a write-through workload with fsync durability
//! and reports, over its stdout pipe, each operation it starts and each one `flush` confirmed
//! on disk. The parent sends SIGKILL at a random moment (during startup, right after open, or
//! after a random number of acknowledgements plus a random delay), reaps it, and checks the
//! directory the way the next process would see it:
//! - `verify` is clean: 0 torn entries;
//! - every acknowledged `set` or `remove` is what a reopened cache returns (0 lost), and every
//!   value returned is the last acknowledged one of its key or the one in flight at the kill
//!   (0 wrong values);
//! - opening sweeps every temp file the kill left: 0 temp files after `open`.
//!
//! Cycles share one directory, so each child starts from what the previous kill left.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

const KEYS: u64 = 48;
const SEED_ENV: &str = "ANSWERCACHE_FAULTS_SEED";
const BASE_ENV: &str = "ANSWERCACHE_FAULTS_SEQ_BASE";

fn key(k: u64) -> String {
    format!("key{k}")
}

/// Value sizes from a few bytes to several pages, so kills land inside writes of every size.
fn value_len(seq: u64) -> usize {
    [40, 900, 4 << 10, 16 << 10][(Rng::new(seq).next_u64() % 4) as usize]
}

#[test]
fn kill_minus_nine_cycles() {
    if role().as_deref() == Some("kill9") {
        return worker();
    }
    let cycles: u64 = scale(200, 2000);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let name = test_name(module_path!(), "kill_minus_nine_cycles");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The state every key must have on disk: None = absent.
    let mut model: HashMap<u64, Option<u64>> = HashMap::new();
    let mut rng = Rng::new(0x5eed_0009);
    let (mut kills, mut acked, mut in_flight, mut temps_left) = (0u64, 0u64, 0u64, 0u64);
    let (mut torn, mut lost, mut wrong, mut leaked) = (0u64, 0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    for cycle in 0..cycles {
        let mut cmd = child_command(&name, "kill9", Wrap::Plain);
        cmd.env(DIR_ENV, &root)
            .env(SEED_ENV, cycle.to_string())
            .env(BASE_ENV, ((cycle + 1) * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        // When to kill: 5% during startup, 5% right after open, else after 1-8 acks.
        let moment = rng.below(100);
        let wait_for = match moment {
            0..5 => None,
            5..10 => Some(("OPEN", 1)),
            _ => Some(("ACK ", 1 + rng.below(8))),
        };
        if let Some((what, n)) = wait_for {
            let mut seen = 0;
            while seen < n {
                let mut line = String::new();
                if out.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                if line.starts_with(what) {
                    seen += 1;
                }
                lines.push(line);
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000) as u64));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        for line in out.lines() {
            lines.push(line.unwrap());
        }
        assert_eq!(
            status.signal(),
            Some(9),
            "cycle {cycle}: the child ended on its own: {status}\n{lines:?}"
        );
        kills += 1;

        // What the child did: acknowledged operations, and the one in flight, if any.
        let mut pending: Option<(u64, u64, Option<u64>)> = None;
        for line in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["BEGIN", seq, op, k] => {
                    let (seq, k) = (seq.parse().unwrap(), k.parse().unwrap());
                    pending = Some((seq, k, (*op == "set").then_some(seq)));
                }
                ["ACK", seq] => {
                    let (s, k, state) = pending.take().expect("an ACK follows a BEGIN");
                    assert_eq!(seq.parse::<u64>().unwrap(), s);
                    model.insert(k, state);
                    acked += 1;
                }
                ["NACK", ..] => panic!("cycle {cycle}: a write failed on a healthy disk: {line}"),
                _ => {}
            }
        }
        in_flight += u64::from(pending.is_some());

        // The next process's view.
        temps_left += temp_files(&root) as u64;
        if root.exists() {
            let report = verify_report(&root);
            torn += report.corrupted.len() as u64 + report.io_errors.len() as u64;
            assert!(report.is_clean(), "cycle {cycle}: {report:?}");
        }
        rt.block_on(async {
            let cache = builder(&root).build().await.unwrap();
            // `tmp/` is swept before `build` returns; the temp files left beside entries, by
            // the startup scan.
            assert!(
                answercache::testing::wait_until(Duration::from_secs(30), || {
                    cache.stats().warm_index_complete
                })
                .await,
                "cycle {cycle}: the startup scan never completed"
            );
            leaked += temp_files(&root) as u64;
            for k in 0..KEYS {
                let found = match cache.get_bytes(key(k)).await.unwrap() {
                    None => None,
                    Some(v) => match check_value(&key(k), &v) {
                        Ok((_, seq)) => Some(seq),
                        Err(e) => {
                            eprintln!("cycle {cycle}: {e}");
                            wrong += 1;
                            continue;
                        }
                    },
                };
                let want = model.get(&k).copied().flatten();
                let also = pending.and_then(|(_, pk, state)| (pk == k).then_some(state));
                if found == want || also == Some(found) {
                    model.insert(k, found);
                } else if found.is_none() {
                    eprintln!("cycle {cycle}: {} lost: acknowledged {want:?}", key(k));
                    lost += 1;
                } else {
                    eprintln!(
                        "cycle {cycle}: {} is {found:?}; acknowledged {want:?}, in flight {also:?}",
                        key(k)
                    );
                    wrong += 1;
                }
            }
            cache.close().await.unwrap();
        });
    }
    reliability(
        "kill-9",
        &[
            ("cycles", &cycles),
            ("kills", &kills),
            ("acked_ops", &acked),
            ("in_flight_at_kill", &in_flight),
            ("temp_files_left_by_kills", &temps_left),
            ("torn_entries", &torn),
            ("lost_entries", &lost),
            ("wrong_values", &wrong),
            ("temp_files_after_open", &leaked),
            ("seconds", &started.elapsed().as_secs()),
        ],
    );
    assert_eq!((torn, lost, wrong, leaked), (0, 0, 0, 0));
    assert_eq!(kills, cycles);
}

/// The child: sets and removes forever, printing `BEGIN <seq> <set|rm> <key>` before each
/// operation and `ACK <seq>` once `flush` confirmed it on disk.
fn worker() {
    let root = child_dir();
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let base: u64 = std::env::var(BASE_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = builder(&root).build().await.unwrap();
        // On a line of its own: libtest may have printed "test name ... " before it.
        println!("\nOPEN");
        let mut rng = Rng::new(seed);
        for n in 0..1_000_000u64 {
            let seq = base + n;
            let k = rng.below(KEYS as usize) as u64;
            if rng.chance(0.15) {
                println!("BEGIN {seq} rm {k}");
                cache.remove(key(k)).await.unwrap();
            } else {
                println!("BEGIN {seq} set {k}");
                let v = value(&key(k), 0, seq, value_len(seq));
                cache.set_bytes(key(k), v).await.unwrap();
            }
            match cache.flush().await {
                Ok(()) => println!("ACK {seq}"),
                Err(e) => println!("NACK {seq} {e}"),
            }
        }
    });
}
