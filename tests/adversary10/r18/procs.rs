//! Real processes on one directory (the test binary run again as a child, as in
//! tests/adversary9/real.rs): clears from three child processes and four tasks of this one at
//! once, the fence on disk watched throughout; and a child whose fence write hangs (holding
//! the root `flock`) killed with `SIGKILL` inside it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::testing::{builder, Fault, FaultFs, FsOp, Rule, TestDir};
use answercache::Error;

use super::*;

const CHILD_ROOT: &str = "R18_CHILD_ROOT";
const CHILD_MODE: &str = "R18_CHILD_MODE";
const CHILD_TAG: &str = "R18_CHILD_TAG";
/// Clears each storm child makes.
const STORM: usize = 30;

/// The child (a helper; without its environment it does nothing). `storm`: sets `<tag>-<i>`
/// then `clear`s, `STORM` times, printing `R18-OK <i> <fence on disk>` for each `Ok` and
/// `R18-DONE <oks>` at the end. `hang`: its fence rename hangs; `clear` (given up after
/// 200 ms, the call still inside the rename, the root lock held), prints `R18-HUNG <pid>`
/// and waits to be killed.
#[test]
fn child_helper() {
    let (Ok(root), Ok(mode)) = (std::env::var(CHILD_ROOT), std::env::var(CHILD_MODE)) else {
        return;
    };
    let tag = std::env::var(CHILD_TAG).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let root = Path::new(&root);
        match mode.as_str() {
            "storm" => {
                let cache = builder(root).build().await.unwrap();
                let mut oks = 0;
                for i in 0..STORM {
                    cache
                        .set_bytes(&format!("{tag}-{i}"), b"set before the clear")
                        .await
                        .unwrap();
                    if cache.clear().await.is_ok() {
                        oks += 1;
                        let fence = read_fence(root).unwrap_or(0);
                        println!("\nR18-OK {i} {fence}");
                    }
                }
                cache.close().await.unwrap();
                println!("\nR18-DONE {oks}");
            }
            "hang" => {
                let fs = Arc::new(FaultFs::std());
                fs.add_rule(
                    Rule::new(Fault::Hang)
                        .ops(&[FsOp::Rename])
                        .path_contains("/fence")
                        .times(1),
                );
                let cache = builder(root)
                    .fs(fs)
                    .io_timeout(Duration::from_millis(200))
                    .build()
                    .await
                    .unwrap();
                let cleared = cache.clear().await;
                assert!(matches!(cleared, Err(Error::NotPersisted { .. })));
                println!("\nR18-HUNG {}", std::process::id());
                std::io::Write::flush(&mut std::io::stdout()).unwrap();
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

fn read_fence(root: &Path) -> Option<u64> {
    let path = answercache::warm::layout::Layout::new(root).fence_path();
    answercache::warm::format::decode_fence(&std::fs::read(path).ok()?)
}

fn child(root: &Path, mode: &str, tag: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "r18::procs::child_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ROOT, root)
    .env(CHILD_MODE, mode)
    .env(CHILD_TAG, tag)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    c
}

/// Guard: three child processes (30 `set` + `clear` each) and four tasks of this process's
/// cache (10 each) clear at once on a healthy disk. Every clear is `Ok`; the fence on disk,
/// read every millisecond throughout, never moves back and ends at or above every fence a
/// child saw after its `Ok`; a process opening afterwards serves none of the 130 keys, each
/// set before an `Ok`'d clear of its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clears_of_three_processes_and_four_tasks_never_move_the_fence_back() {
    let dir = TestDir::new();
    let root = dir.root().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (root, stop) = (root.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<u64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(f) = read_fence(&root) {
                    if seen.last() != Some(&f) {
                        seen.push(f);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        })
    };
    let children: Vec<_> = (0..3)
        .map(|n| child(&root, "storm", &format!("c{n}")).spawn().unwrap())
        .collect();
    let cache = Arc::new(builder(&root).build().await.unwrap());
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut oks = 0;
                let mut errors = Vec::new();
                for i in 0..10 {
                    cache
                        .set_bytes(&format!("p{t}-{i}"), b"set before the clear")
                        .await
                        .unwrap();
                    match cache.clear().await {
                        Ok(()) => oks += 1,
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (oks, errors)
            })
        })
        .collect();
    let mut parent_oks = 0;
    let mut parent_errors = Vec::new();
    for t in tasks {
        let (oks, errors) = t.await.unwrap();
        parent_oks += oks;
        parent_errors.extend(errors);
    }
    let outputs: Vec<_> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    Arc::try_unwrap(cache).unwrap().close().await.unwrap();
    let mut child_oks = Vec::new();
    let mut max_seen_by_children = 0;
    for out in &outputs {
        assert!(out.status.success(), "{:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("R18-OK ") {
                let fence: u64 = rest.split_whitespace().nth(1).unwrap().parse().unwrap();
                max_seen_by_children = max_seen_by_children.max(fence);
            }
        }
        let done = text
            .lines()
            .find_map(|l| l.strip_prefix("R18-DONE "))
            .map(|n| n.trim().parse::<usize>().unwrap());
        child_oks.push(done);
    }
    assert_eq!(child_oks, vec![Some(STORM); 3]);
    // Concurrent clears of one instance may say NotPersisted for a clear whose fence is on
    // disk (J2, `concurrent.rs`); never any other error, and never an Ok not on disk.
    assert_eq!(parent_oks + parent_errors.len(), 40);
    assert!(
        parent_errors
            .iter()
            .all(|e| e.contains("the clear could not be recorded on disk (the fence)")),
        "{parent_errors:?}"
    );
    let backwards: Vec<_> = seen.windows(2).filter(|w| w[1] < w[0]).collect();
    assert!(backwards.is_empty(), "the fence moved back: {backwards:?}");
    let last = read_fence(&root).unwrap();
    assert!(
        last >= max_seen_by_children && seen.last() == Some(&last),
        "{last} {max_seen_by_children} {:?}",
        seen.last()
    );
    let later = builder(&root).build().await.unwrap();
    let mut served = Vec::new();
    for key in (0..3)
        .flat_map(|n| (0..STORM).map(move |i| format!("c{n}-{i}")))
        .chain((0..4).flat_map(|t| (0..10).map(move |i| format!("p{t}-{i}"))))
    {
        if later.get_bytes(&key).await.unwrap().is_some() {
            served.push(key);
        }
    }
    later.close().await.unwrap();
    assert_eq!(served, Vec::<String>::new());
}

/// Guard: a child process's fence write hangs inside the rename, holding the root lock. This
/// process's `clear` is `NotPersisted` within the timeouts while the child lives, and its
/// entries still land; the child is killed (`SIGKILL`) with its temp fence file in `tmp/`:
/// the kernel drops the lock, this process's retried `clear` is `Ok` with its fence on disk
/// (above `k`'s creation time), `k` is never served again, and the next open sweeps the dead
/// child's temp file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_killed_inside_a_fence_write_releases_the_lock() {
    let dir = TestDir::new();
    let root = dir.root().to_owned();
    let a = quick(builder(&root)).build().await.unwrap();
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    let k_created = on_disk(&dir, b"k").unwrap().1;
    let mut kid = child(&root, "hang", "").spawn().unwrap();
    let stdout = kid.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| l.find("R18-HUNG").map(|at| l[at..].to_owned()))
        }),
    )
    .await;
    let line = match line {
        Ok(Ok(Some(line))) => line,
        other => {
            kid.kill().unwrap();
            panic!("the child never hung: {other:?}");
        }
    };
    let kid_pid: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let kid_temps: Vec<_> = temp_files(&dir)
        .into_iter()
        .filter(|n| n.contains(&format!(".{kid_pid}.")))
        .collect();
    let started = Instant::now();
    let while_held = a.clear().await;
    let waited = started.elapsed();
    a.set_bytes("e", b"set while the lock is held")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e_landed = on_disk(&dir, b"e").map(|(v, _)| v);
    kid.kill().unwrap();
    kid.wait().unwrap();
    let mut cleared = a.clear().await;
    for _ in 0..100 {
        if cleared.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cleared = a.clear().await;
    }
    let fence = fence_on_disk(&dir);
    let k_served = read(&a, "k").await;
    let closed = a.close().await;
    let b = builder(&root).build().await.unwrap();
    let k_later = read(&b, "k").await;
    let kid_temps_after: Vec<_> = temp_files(&dir)
        .into_iter()
        .filter(|n| n.contains(&format!(".{kid_pid}.")))
        .collect();
    b.close().await.unwrap();
    assert_eq!(kid_temps.len(), 1, "{kid_temps:?}");
    assert!(
        matches!(while_held, Err(Error::NotPersisted { failed: 1, .. })),
        "{while_held:?}"
    );
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(e_landed.as_deref(), Some("set while the lock is held"));
    assert!(cleared.is_ok(), "{cleared:?}");
    assert!(
        fence.is_some_and(|f| f > k_created),
        "{fence:?} {k_created}"
    );
    assert!(closed.is_ok(), "{closed:?}");
    assert_eq!((k_served, k_later), (None, None));
    assert_eq!(kid_temps_after, Vec::<String>::new());
}
