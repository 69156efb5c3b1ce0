//! Promise 3 with a real `kill -9`: a child process (this test binary, re-executed) runs
//! write-through + fsync `set`/`remove` from several tasks at once on a multi-thread runtime,
//! plus an occasional `clear`, with a hot tier of 4 entries, and reports each operation's
//! start and acknowledgement over its stdout pipe. The parent kills it at a random moment and
//! checks, with a fresh cache, every key against what was acknowledged:
//! - the key's last acknowledged `set`/`remove` is what a restart shows, or the operation in
//!   flight at the kill (or a miss, when a `clear` overlapped it);
//! - a `clear` acknowledged after the key's last acknowledged operation removed it;
//! - every value is whole and belongs to its key; `verify` is clean.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use answercache::verify::{verify, VerifyOptions};
use answercache::{ManualClock, TieredCache};

use crate::helpers::*;

const ROLE: &str = "ANSWERCACHE_ADVERSARY_ROLE";
const DIR: &str = "ANSWERCACHE_ADVERSARY_DIR";
const BASE: &str = "ANSWERCACHE_ADVERSARY_BASE";
const TASKS: usize = 4;
const KEYS: usize = 3;

fn key(t: usize, k: usize) -> String {
    format!("t{t}k{k}")
}

fn child() {
    let dir = std::path::PathBuf::from(std::env::var_os(DIR).unwrap());
    let base: u64 = std::env::var(BASE).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cache = write_through(TieredCache::builder(&dir))
            .min_free_bytes(0)
            .hot_capacity_entries(4)
            .build()
            .await
            .unwrap();
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let say = {
            let out = out.clone();
            move |s: String| {
                let mut o = out.lock().unwrap();
                let _ = writeln!(o, "{s}");
                let _ = o.flush();
            }
        };
        say("OPEN".into());
        let mut hs = Vec::new();
        for t in 0..TASKS {
            let cache = cache.clone();
            let say = say.clone();
            hs.push(tokio::spawn(async move {
                let mut r = Rng::new(base + t as u64);
                for i in 0u64.. {
                    let id = base + i * TASKS as u64 + t as u64;
                    let k = key(t, r.below(KEYS));
                    let roll = r.below(100);
                    let res = if t == 0 && roll < 4 {
                        say(format!("B {t} {id} clear -"));
                        cache.clear().await
                    } else if roll < 25 {
                        say(format!("B {t} {id} rm {k}"));
                        cache.remove(&k).await.map(|_| ())
                    } else {
                        let len = [10usize, 900, 5000, 40_000][r.below(4)];
                        say(format!("B {t} {id} set {k} {len}"));
                        cache.set_bytes(&k, value_for(k.as_bytes(), id, len)).await
                    };
                    match res {
                        Ok(()) => say(format!("A {t} {id}")),
                        Err(e) => say(format!("N {t} {id} {e}")),
                    }
                }
            }));
        }
        for h in hs {
            let _ = h.await;
        }
    });
}

#[derive(Debug, Clone)]
struct OpRec {
    #[allow(dead_code)]
    task: usize,
    begin: usize,
    ack: Option<usize>,
    kind: String,
    key: String,
    id: u64,
}

#[test]
fn write_through_acks_survive_kill_minus_nine_with_concurrent_tasks() {
    if std::env::var(ROLE).as_deref() == Ok("child") {
        return child();
    }
    let (_dir, root, _) = scenario();
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng::new(0xadd5);
    // Known state of each key after the previous cycle (None: absent).
    let mut model: HashMap<String, Option<u64>> = HashMap::new();
    let mut problems = Vec::new();
    let (mut acked_total, mut clears_acked, mut nacks) = (0, 0, 0);
    let cycles = 25;
    for cycle in 0..cycles {
        let base = (cycle as u64 + 1) * 10_000_000;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill9::write_through_acks_survive_kill_minus_nine_with_concurrent_tasks",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, "child")
            .env(DIR, &root)
            .env(BASE, base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let want_acks = 3 + rng.below(40);
        let mut lines = Vec::new();
        let mut acks = 0;
        while acks < want_acks {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if line.starts_with("A ") {
                acks += 1;
            }
            lines.push(line.trim_end().to_string());
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
            "cycle {cycle}: the child ended by itself: {lines:?}"
        );

        // Parse.
        let mut ops: Vec<OpRec> = Vec::new();
        let mut open: HashMap<usize, usize> = HashMap::new(); // task -> index in ops
        for (i, line) in lines.iter().enumerate() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["B", t, id, kind, k, ..] => {
                    let t: usize = t.parse().unwrap();
                    open.insert(t, ops.len());
                    ops.push(OpRec {
                        task: t,
                        begin: i,
                        ack: None,
                        kind: kind.to_string(),
                        key: k.to_string(),
                        id: id.parse().unwrap(),
                    });
                }
                ["A", t, _id] => {
                    let t: usize = t.parse().unwrap();
                    let j = open.remove(&t).expect("an ack follows a begin");
                    ops[j].ack = Some(i);
                    acked_total += 1;
                    if ops[j].kind == "clear" {
                        clears_acked += 1;
                    }
                }
                ["N", t, ..] => {
                    nacks += 1;
                    let t: usize = t.parse().unwrap();
                    open.remove(&t);
                    problems.push(format!(
                        "cycle {cycle}: a write-through op failed on a healthy disk: {line}"
                    ));
                }
                _ => {}
            }
        }
        let clears: Vec<&OpRec> = ops.iter().filter(|o| o.kind == "clear").collect();
        let report = verify(&root, &VerifyOptions::default()).unwrap();
        if !report.is_clean() {
            problems.push(format!("cycle {cycle}: verify: {report:?}"));
        }
        let clock = ManualClock::new(answercache::clock::system_now_ms());
        let observed: HashMap<String, Option<Vec<u8>>> = rt.block_on(async {
            let c = fresh(&root, &clock).await;
            let mut m = HashMap::new();
            for t in 0..TASKS {
                for k in 0..KEYS {
                    let k = key(t, k);
                    let v = c.get_bytes(&k).await.unwrap().map(|v| v.to_vec());
                    m.insert(k, v);
                }
            }
            c.close().await.unwrap();
            m
        });
        for t in 0..TASKS {
            for k in 0..KEYS {
                let k = key(t, k);
                let got = &observed[&k];
                let got_id = match got {
                    None => None,
                    Some(v) => match check_value(k.as_bytes(), v) {
                        Ok(id) => Some(id),
                        Err(e) => {
                            problems.push(format!("cycle {cycle}: promise 7: {k}: {e}"));
                            continue;
                        }
                    },
                };
                let key_ops: Vec<&OpRec> = ops
                    .iter()
                    .filter(|o| o.key == k && o.kind != "clear")
                    .collect();
                let last_acked = key_ops.iter().rev().find(|o| o.ack.is_some());
                let in_flight = key_ops.iter().rev().find(|o| o.ack.is_none());
                let state = |o: &OpRec| if o.kind == "set" { Some(o.id) } else { None };
                let (base_state, base_begin, base_ack) = match last_acked {
                    Some(o) => (state(o), o.begin as i64, o.ack.unwrap() as i64),
                    None => (model.get(&k).copied().flatten(), -1, -1),
                };
                let mut allowed: Vec<Option<u64>> = vec![base_state];
                let mut base_gone = false;
                for c in &clears {
                    let c_ack = c.ack.map_or(i64::MAX, |a| a as i64);
                    if c_ack <= base_begin {
                        continue; // done before the key's last acknowledged op began
                    }
                    if c.ack.is_some() && (c.begin as i64) > base_ack {
                        base_gone = true;
                    }
                    allowed.push(None);
                }
                if base_gone {
                    allowed.retain(|s| s.is_none());
                    allowed.push(None);
                }
                if let Some(f) = in_flight {
                    if last_acked.is_none_or(|l| f.begin > l.begin) {
                        allowed.push(state(f));
                    }
                }
                if !allowed.contains(&got_id) {
                    problems.push(format!(
                        "cycle {cycle}: promise 3: {k} after kill -9 = {got_id:?}, allowed \
                         {allowed:?} (last acked {last_acked:?}, in flight {in_flight:?}, \
                         clears {clears:?})"
                    ));
                }
                model.insert(k, got_id);
            }
        }
        if problems.len() > 10 {
            break;
        }
    }
    eprintln!(
        "KILL9 cycles={cycles} acked={acked_total} clears_acked={clears_acked} nacks={nacks} problems={}",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        acked_total > 100,
        "control: too few acknowledged ops ({acked_total})"
    );
}
