//! Adversarial tests (r29) of "write each entry's temp file beside its place"
//! (`v2/ab/.<hex16>.<pid>.<instance>.<n>.tmp`) through the public API, with real processes
//! and real faults: an orphan temp file that cannot be deleted (`chattr +i`), another process
//! clearing while this one writes, `kill -9` mid-write and the sweep at the next open, a live
//! process's temp file, and the CLI's and `verify`'s view of a directory holding temp files.
//!
//! Counts and values are exact; time only bounds how long a test waits for "eventually".
//! Findings carry their id (R29-Fn) in their docs and are `#[ignore]`d with it (see
//! `BESIDE_R29_FINDINGS.md`); the other tests guard what holds.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use answercache::testing::{temp_files, wait_until};
use answercache::workload::{markdown, Rng};
use answercache::{BreakerState, Durability, WritePolicy};

use crate::closer::is_child;
use crate::support;

const ROLE_ENV: &str = "ANSWERCACHE_CLOSER_ROLE";
const DIR_ENV: &str = "ANSWERCACHE_R29_DIR";
const WAIT: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);
/// A pid no process can have (above Linux's `pid_max` limit of 2^22).
const DEAD_PID: u32 = 4_194_305;

/// Chat-like text of about `len` bytes, varied by `seed`.
fn text(seed: u64, len: usize) -> Vec<u8> {
    markdown(&mut Rng::new(seed), len).into_bytes()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The temp file name a writer `pid` / `instance` / `n` gives an entry of `key`, beside it.
fn temp_path(root: &Path, key: &str, pid: u32, instance: u64, n: u64) -> PathBuf {
    let hex = support::hex_of(key.as_bytes());
    root.join("v2")
        .join(&hex[..2])
        .join(format!(".{}.{pid}.{instance}.{n}.tmp", &hex[..16]))
}

fn plant(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The regular entry files under `<root>/v2` (64-hex names) and their total bytes.
fn entry_files(root: &Path) -> (u64, u64) {
    let mut n = 0;
    let mut bytes = 0;
    let Ok(dirs) = std::fs::read_dir(root.join("v2")) else {
        return (0, 0);
    };
    for d in dirs {
        let Ok(files) = std::fs::read_dir(d.unwrap().path()) else {
            continue;
        };
        for f in files {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && f.file_type().unwrap().is_file() {
                n += 1;
                bytes += f.metadata().unwrap().len();
            }
        }
    }
    (n, bytes)
}

/// A child running this test's binary in `role`, with `dir` in [`DIR_ENV`].
fn spawn_child(test: &str, role: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Writes a line to the real stdout, flushed (the test harness may capture `println!` on the
/// test's own thread).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR_ENV).unwrap())
}

/// Reads the child's stdout until a line starting with `prefix`; returns it and the lines
/// before it. Panics with the child's stderr if it ends first.
fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
) -> (String, Vec<String>) {
    let mut before = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // The harness may have written "test <name> ... " on the same line first.
        if let Some(at) = line.find(prefix) {
            return (line[at..].to_owned(), before);
        }
        before.push(line);
    }
    panic!("the child ended before {prefix:?}; it said {before:?}");
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

// ---------------------------------------------------------------------------------------
// R29-F1, end to end: one orphan entry temp file that cannot be deleted (`chattr +i`; as
// well: a file of another user in a shared group directory, a bind mount) keeps the index
// incomplete for good: the entries already on disk are never counted, so the warm budget
// does not hold, and every retry of the scan is a permission error for the breaker.
// ---------------------------------------------------------------------------------------

/// Undoes `chattr +i` when dropped, so the temporary directory can go.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
    }
}

const F1_KEYS: u64 = 24;
const F1_VALUE: usize = 8000;
const F1_BUDGET: u64 = 64 << 10;

/// 24 entries of ~8 KB on disk (written by an earlier instance), one orphan temp file of a
/// dead writer made immutable; the cache reopens with a 64 KiB warm budget. Expected: the
/// scan completes (the orphan left; its refused unlink counted once as the `permission` disk
/// error it is, not enough to move the breaker), and after one more write the entry files
/// are within the budget. Observed before the fix (R29-F1): the index never completed, the 24
/// files plus the new one stayed on disk (~200 KB for a 64 KiB budget), and the repeated
/// scans counted a permission error each until the breaker opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_orphan_temp_is_left_and_the_scan_completes() {
    if !is_root() {
        println!("SKIPPED: needs root (chattr +i)");
        return;
    }
    let _no_mounts = support::no_mounts_async().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    let value = |i: u64| text(i, F1_VALUE);
    {
        let cache = answercache::testing::builder(&root)
            .write_policy(WritePolicy::WriteThrough)
            .durability(Durability::NoSync)
            .hot_capacity_bytes(1)
            .compression_level(0)
            .compress_in_background(false)
            .build()
            .await
            .unwrap();
        for i in 0..F1_KEYS {
            cache.set_bytes(format!("k{i}"), value(i)).await.unwrap();
        }
        cache.close().await.unwrap();
    }
    let (on_disk, _) = entry_files(&root);
    assert_eq!(on_disk, F1_KEYS);
    let orphan = temp_path(&root, "k0", DEAD_PID, 1, 0);
    plant(&orphan, b"half an entry");
    let out = Command::new("chattr").arg("+i").arg(&orphan).output();
    if let Some(why) = match &out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    } {
        println!("SKIPPED: chattr +i: {why}");
        return;
    }
    let _undo = Immutable(orphan.clone());
    let cache = answercache::testing::builder(&root)
        .write_policy(WritePolicy::WriteThrough)
        .durability(Durability::NoSync)
        .hot_capacity_bytes(1)
        .compression_level(0)
        .compress_in_background(false)
        .warm_capacity_bytes(F1_BUDGET)
        .sweep_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let complete = wait_until(Duration::from_secs(2), || cache.stats().warm_index_complete).await;
    let new_write = cache.set_bytes("new", text(999, F1_VALUE)).await;
    println!("write-through set of a new key: {new_write:?}");
    let s = cache.stats();
    let (files, bytes) = entry_files(&root);
    println!(
        "complete {complete}; entry files {files} ({bytes} bytes) for a {F1_BUDGET}-byte budget; \
         index {} entries / {} bytes; disk errors {:?}; breaker {:?}, opens {}; swept {}",
        s.warm_entries,
        s.warm_bytes,
        s.disk_errors_by_kind,
        s.breaker_state,
        s.breaker_opens,
        s.temp_files_swept
    );
    assert!(orphan.exists());
    assert_eq!(
        (
            complete,
            new_write.is_ok(),
            bytes <= F1_BUDGET,
            s.disk_errors,
            s.breaker_opens
        ),
        (true, true, true, 1, 0),
        "{files} entry files, {bytes} bytes"
    );
    cache.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Another process clearing while this one writes (temp files now sit in the directories a
// clear removes whole).
// ---------------------------------------------------------------------------------------

const CLEAR_ROLE: &str = "r29-clear-writer";
const CLEAR_KEYS: u64 = 32;
const CLEAR_TASKS: u64 = 4;
/// The round whose values must be on disk at the end (written after the last clear).
const FINAL_ROUND: u64 = 1_000_000;

fn clear_value(key: u64, round: u64) -> Vec<u8> {
    text(key * 7919 + round, 3000 + (key as usize) * 37)
}

/// The child: `CLEAR_TASKS` tasks write their keys round after round (write-through,
/// fsynced) until `<dir>/stop` exists, then once more with `FINAL_ROUND`; prints
/// `DONE <failed sets>`.
fn clear_writer_child() {
    let dir = child_dir();
    runtime().block_on(async {
        let cache = answercache::testing::builder(dir.join("cache"))
            .write_policy(WritePolicy::WriteThrough)
            .durability(Durability::Fsync)
            .hot_capacity_bytes(1)
            .compress_in_background(false)
            .open_timeout(HOUR)
            .build()
            .await
            .unwrap();
        let cache = std::sync::Arc::new(cache);
        say("READY");
        let mut tasks = Vec::new();
        for t in 0..CLEAR_TASKS {
            let (cache, dir) = (cache.clone(), dir.clone());
            tasks.push(tokio::spawn(async move {
                let mut failed = 0u64;
                let mut round = 0;
                loop {
                    let last = dir.join("stop").exists();
                    let r = if last { FINAL_ROUND } else { round };
                    for k in (t..CLEAR_KEYS).step_by(CLEAR_TASKS as usize) {
                        if cache
                            .set_bytes(format!("k{k}"), clear_value(k, r))
                            .await
                            .is_err()
                        {
                            failed += 1;
                        }
                    }
                    if last {
                        return failed;
                    }
                    round += 1;
                }
            }));
        }
        let mut failed = 0;
        for t in tasks {
            failed += t.await.unwrap();
        }
        let s = cache.stats();
        say(&format!(
            "DONE {failed} writes_failed={} disk_errors={:?}",
            s.writes_failed, s.disk_errors_by_kind
        ));
        std::sync::Arc::into_inner(cache)
            .unwrap()
            .close()
            .await
            .unwrap();
    });
}

/// Another process writes 32 keys (4 writers, fsynced, write-through) while this one clears
/// 40 times. Expected: no write of the child fails; no clear here counts a disk error or
/// moves the breaker (another process's writes are not a failing device); at the end every
/// key reads its final value exactly, and no temp file is left.
///
/// R29-F4: observed: `remove_dir_all` of a fan-out directory fails (ENOTEMPTY: the other
/// process created its temp file there after the listing) and counts as a device failure;
/// three in a row open this process's breaker, and its next `clear` fails with "the disk
/// tier is not in use".
#[test]
fn clears_racing_another_processs_writes_lose_nothing_and_leave_nothing() {
    if is_child(CLEAR_ROLE) {
        return clear_writer_child();
    }
    let _no_mounts = support::no_mounts();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    std::fs::create_dir_all(&root).unwrap();
    let mut child = spawn_child(
        "beside_r29::clears_racing_another_processs_writes_lose_nothing_and_leave_nothing",
        CLEAR_ROLE,
        tmp.path(),
    );
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    read_until(&mut lines, "READY");
    let rt = runtime();
    let (failed_clears, clear_errors, breaker_opens, breaker) = rt.block_on(async {
        let cache = answercache::testing::builder(&root)
            .write_policy(WritePolicy::WriteThrough)
            .durability(Durability::Fsync)
            .hot_capacity_bytes(1)
            .build()
            .await
            .unwrap();
        let mut failed_clears = Vec::new();
        for n in 0..40 {
            if let Err(e) = cache.clear().await {
                failed_clears.push(format!("clear {n}: {e}"));
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        println!("failed clears: {failed_clears:?}");
        let s = cache.stats();
        println!(
            "clearing process: disk errors {:?}, breaker {:?}, opens {}",
            s.disk_errors_by_kind, s.breaker_state, s.breaker_opens
        );
        cache.close().await.unwrap();
        (
            failed_clears.len(),
            s.disk_errors,
            s.breaker_opens,
            s.breaker_state,
        )
    });
    std::fs::write(tmp.path().join("stop"), b"").unwrap();
    let (done, _) = read_until(&mut lines, "DONE");
    println!("child: {done}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(done.starts_with("DONE 0 "), "{done}");
    assert_eq!(temp_files(&root), Vec::<String>::new());
    rt.block_on(async {
        let cache = answercache::testing::builder(&root)
            .hot_capacity_bytes(1)
            .build()
            .await
            .unwrap();
        for k in 0..CLEAR_KEYS {
            assert_eq!(
                cache.get_bytes(format!("k{k}")).await.unwrap().as_deref(),
                Some(&clear_value(k, FINAL_ROUND)[..]),
                "k{k}"
            );
        }
        assert_eq!(cache.stats().corrupted, 0);
        cache.close().await.unwrap();
    });
    assert_eq!(
        (failed_clears, clear_errors, breaker_opens, breaker),
        (0, 0, 0, BreakerState::Closed)
    );
}

// ---------------------------------------------------------------------------------------
// kill -9 mid-write: the next open sweeps the killed writer's temp files, and every key
// reads the value of its last acknowledged write or of the write in flight, exactly.
// ---------------------------------------------------------------------------------------

const KILL_ROLE: &str = "r29-kill-writer";
const KILL_KEYS: u64 = 8;

fn kill_value(key: u64, round: u64) -> Vec<u8> {
    // Large and incompressible-ish: each write takes a while, so a kill often lands in one.
    let mut v = text(key * 131 + round, 200_000);
    v.extend_from_slice(format!("|k{key} r{round}").as_bytes());
    v
}

/// The child: writes the keys round after round (fsynced, write-through, 4 tasks), printing
/// `ACK <key> <round>` after each `Ok`, until killed.
fn kill_writer_child() {
    let dir = child_dir();
    runtime().block_on(async {
        let cache = std::sync::Arc::new(
            answercache::testing::builder(dir.join("cache"))
                .write_policy(WritePolicy::WriteThrough)
                .durability(Durability::Fsync)
                .hot_capacity_bytes(1)
                .compression_level(0)
                .compress_in_background(false)
                .build()
                .await
                .unwrap(),
        );
        say("READY");
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0.. {
                    for k in (t..KILL_KEYS).step_by(4) {
                        cache
                            .set_bytes(format!("k{k}"), kill_value(k, round))
                            .await
                            .unwrap();
                        say(&format!("ACK {k} {round}"));
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Three times: a child writes 8 keys (200 KB values, fsynced) in 4 tasks and is killed
/// (SIGKILL) 50-400 ms in; this process then counts the child's entry temp files left in
/// `v2/`, opens the directory and waits for the scan. Expected: exactly those temp files
/// are swept (`temp_files_swept`), none is left anywhere, and each key reads its last
/// acknowledged value or the next round's (the write in flight when killed), never another.
#[test]
fn a_killed_writers_temps_are_swept_and_every_key_reads_an_acked_or_in_flight_value() {
    if is_child(KILL_ROLE) {
        return kill_writer_child();
    }
    let _no_mounts = support::no_mounts();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    std::fs::create_dir_all(&root).unwrap();
    let rt = runtime();
    // What each key read after the previous round (None before the first).
    let mut prev: Vec<Option<Vec<u8>>> = vec![None; KILL_KEYS as usize];
    let mut total_left = 0;
    for (i, delay_ms) in [50u64, 400, 150].into_iter().enumerate() {
        let mut child = spawn_child(
            "beside_r29::a_killed_writers_temps_are_swept_and_every_key_reads_an_acked_or_in_flight_value",
            KILL_ROLE,
            tmp.path(),
        );
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                    acks.push((it.next().unwrap(), it.next().unwrap()));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(300 + delay_ms));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        // The child starts at round 0 each time: only this child's acks count.
        let mut acked: Vec<Option<u64>> = vec![None; KILL_KEYS as usize];
        for (k, r) in reader.join().unwrap() {
            acked[k as usize] = Some(r);
        }
        let left: Vec<String> = temp_files(&root)
            .into_iter()
            .filter(|n| n.starts_with("v2/") && n.contains(&format!(".{pid}.")))
            .collect();
        println!("round {i}: killed after {delay_ms} ms, acks {acked:?}, temps left {left:?}");
        total_left += left.len();
        let swept = rt.block_on(async {
            let cache = answercache::testing::builder(&root)
                .hot_capacity_bytes(1)
                .build()
                .await
                .unwrap();
            assert!(wait_until(WAIT, || cache.stats().warm_index_complete).await);
            for k in 0..KILL_KEYS {
                let got = cache
                    .get_bytes(format!("k{k}"))
                    .await
                    .unwrap()
                    .map(|v| v.to_vec());
                let allowed: Vec<Option<Vec<u8>>> = match acked[k as usize] {
                    // The last acked value, or the next one (in flight, renamed, not acked).
                    Some(r) => vec![Some(kill_value(k, r)), Some(kill_value(k, r + 1))],
                    // None acked: what was there before, or the first write (in flight).
                    None => vec![prev[k as usize].clone(), Some(kill_value(k, 0))],
                };
                let tail = got.as_ref().map(|v| {
                    String::from_utf8_lossy(&v[v.len().saturating_sub(12)..]).into_owned()
                });
                assert!(allowed.contains(&got), "round {i}, k{k}: got ...{tail:?}");
                prev[k as usize] = got;
            }
            assert_eq!(cache.stats().corrupted, 0);
            let swept = cache.stats().temp_files_swept;
            cache.close().await.unwrap();
            swept
        });
        assert_eq!(swept, left.len() as u64, "round {i}");
        assert_eq!(temp_files(&root), Vec::<String>::new(), "round {i}");
    }
    println!("{total_left} temp files left by the kills in all");
}

// ---------------------------------------------------------------------------------------
// A live other process's temp file is left; once it is gone, the next open sweeps it.
// ---------------------------------------------------------------------------------------

/// A temp file named for a live process (`sleep`), beside an entry: the cache opens, scans,
/// serves the entry, leaves the temp file (`temp_files_swept` 0). The process exits; the
/// next open sweeps it (1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_processs_temp_is_left_until_it_exits() {
    let dir = support::dir();
    let root = dir.root().to_owned();
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let live = temp_path(&root, "k", sleeper.id(), 1, 0);
    plant(&live, b"being written");
    let mut cache = dir
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .hot_capacity_bytes(1)
        })
        .await;
    cache.set_bytes("k", b"the value".to_vec()).await.unwrap();
    assert!(wait_until(WAIT, || cache.stats().warm_index_complete).await);
    assert_eq!(cache.stats().temp_files_swept, 0);
    assert!(live.exists());
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"the value"[..])
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    cache.reopen_after_close().await;
    assert!(wait_until(WAIT, || cache.stats().warm_index_complete).await);
    assert_eq!(cache.stats().temp_files_swept, 1);
    assert!(!live.exists());
    assert_eq!(
        cache.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"the value"[..])
    );
    assert_eq!(cache.stats().foreign_files, 0);
    cache.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The CLI and `verify` on a directory holding entry temp files.
// ---------------------------------------------------------------------------------------

/// Three entries, a live writer's temp file (pid 1) and an orphan (dead pid) beside them:
/// `verify` is clean, checks 3 entries, counts no foreign file; `answercache stats --json`
/// counts 3 entries, 2 temp files with their bytes, no foreign file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_verify_count_temp_files_as_temp_files() {
    let dir = support::dir();
    let root = dir.root().to_owned();
    let cache = dir
        .open_cache(|b| b.write_policy(WritePolicy::WriteThrough))
        .await;
    for k in ["a", "b", "c"] {
        cache
            .set_bytes(k, k.repeat(100).into_bytes())
            .await
            .unwrap();
    }
    cache.close().await.unwrap();
    plant(&temp_path(&root, "a", 1, 1, 0), &[7u8; 1000]);
    plant(&temp_path(&root, "b", DEAD_PID, 1, 0), &[7u8; 234]);
    let report =
        answercache::verify::verify(&root, &answercache::verify::VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (report.entries_checked, report.healthy, report.foreign_files),
        (3, 3, 0)
    );
    let Some(exe) = option_env!("CARGO_BIN_EXE_answercache") else {
        println!("SKIPPED the CLI part: built without the `cli` feature");
        return;
    };
    let out = Command::new(exe)
        .args(["stats", "--json"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tmp_in_tmp: Vec<String> = temp_files(&root)
        .into_iter()
        .filter(|n| n.starts_with("tmp/"))
        .collect();
    assert_eq!(tmp_in_tmp, Vec::<String>::new());
    assert_eq!(
        (
            doc["entries"].as_u64(),
            doc["temp_files"].as_u64(),
            doc["temp_bytes"].as_u64(),
            doc["foreign_files"].as_u64()
        ),
        (Some(3), Some(2), Some(1234), Some(0)),
        "{doc}"
    );
}
