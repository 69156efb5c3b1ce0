//! Every `closedir` failing, deterministically (libfiu's `posix/io/dir/closedir`, always on,
//! EBADF): Rust's std asserts that `closedir` succeeded when it drops a directory handle
//! ("unexpected error during closedir"), so each directory std lists or removes recursively
//! under such a fault panics. Session 25's CI run met it at random in `fiu::libfiu_random_faults_then_reopen`
//! (the listing of `LinuxFs::read_dir`, since rewritten on rustix, whose `Dir` reads with
//! `getdents64` and ignores a close error).
//!
//! A child (this test binary re-executed under `fiu-run -x`) fills a cache with 40 answers
//! without faults, says `READY`; the parent enables the failure point; the child then reopens
//! the directory (the start-up scan lists every fan-out directory), reads every answer, removes
//! one, clears the cache (which deletes the fan-out directories), writes one answer, reopens
//! once more and reads. Every step must give the exact result it gives without faults, and no
//! thread may panic: a panic contained by the cache (`Stats::task_panics`) is counted as a
//! failure here.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use answercache::{Durability, TieredCache, WritePolicy};

use crate::support::*;

const ROLE: &str = "fiu-closedir";
const KEYS: usize = 40;

fn value_of(k: usize) -> Vec<u8> {
    format!("answer {k}: {}", "text of an answer ".repeat(k + 1)).into_bytes()
}

async fn open(root: &Path) -> TieredCache {
    builder(root)
        .write_policy(WritePolicy::WriteThrough)
        .durability(Durability::Fsync)
        .sweep_interval(DAY)
        .build()
        .await
        .expect("open")
}

/// What the child does under the fault; `Err` names the first step that went wrong.
async fn steps_under_the_fault(root: &Path) -> Result<(), String> {
    let cache = open(root).await;
    for k in 0..KEYS {
        let got = cache.get_bytes(format!("k{k}")).await;
        let got = got.map_err(|e| format!("get k{k} after the reopen: {e}"))?;
        if got.as_deref() != Some(&value_of(k)[..]) {
            return Err(format!("get k{k} after the reopen: {got:?}"));
        }
    }
    match cache.remove("k0").await {
        Ok(true) => {}
        other => return Err(format!("remove k0: {other:?}")),
    }
    cache.clear().await.map_err(|e| format!("clear: {e}"))?;
    for k in 0..KEYS {
        match cache.get_bytes(format!("k{k}")).await {
            Ok(None) => {}
            other => return Err(format!("get k{k} after the clear: {other:?}")),
        }
    }
    cache
        .set_bytes("after", b"written after the clear")
        .await
        .map_err(|e| format!("set after the clear: {e}"))?;
    let panics = cache.stats().task_panics;
    cache.close().await.map_err(|e| format!("close: {e}"))?;
    if panics != 0 {
        return Err(format!("{panics} contained panics in the first cache"));
    }
    let cache = open(root).await;
    match cache.get_bytes("after").await {
        Ok(Some(v)) if &v[..] == b"written after the clear" => {}
        other => return Err(format!("get after, reopened: {other:?}")),
    }
    for k in 0..KEYS {
        match cache.get_bytes(format!("k{k}")).await {
            Ok(None) => {}
            other => return Err(format!("get k{k}, reopened after the clear: {other:?}")),
        }
    }
    let panics = cache.stats().task_panics;
    cache
        .close()
        .await
        .map_err(|e| format!("second close: {e}"))?;
    if panics != 0 {
        return Err(format!("{panics} contained panics in the reopened cache"));
    }
    Ok(())
}

fn child() {
    let root = child_dir();
    let rt = runtime();
    rt.block_on(async {
        let cache = open(&root).await;
        for k in 0..KEYS {
            cache
                .set_bytes(format!("k{k}"), value_of(k))
                .await
                .expect("set without faults");
        }
        cache.close().await.expect("close without faults");
    });
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let preloaded = maps.contains("fiu_posix_preload.so");
    // After a newline: libtest may have printed "test name ... " before it.
    println!("\nREADY {}", u8::from(preloaded));
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "GO");
    let result = rt.block_on(steps_under_the_fault(&root));
    println!("RESULT {}", result.err().unwrap_or_else(|| "ok".into()));
    std::io::stdout().flush().unwrap();
}

#[test]
fn libfiu_every_closedir_failing() {
    if role().as_deref() == Some(ROLE) {
        return child();
    }
    if !fiu_or_skip("fiu_closedir") {
        return;
    }
    let test = test_name(module_path!(), "libfiu_every_closedir_failing");
    let dir = scratch_dir();
    let root = dir.path().join("cache");
    let ctrl = dir.path().join("fiu-ctrl");
    let exe = std::env::current_exe().unwrap();
    let mut child = fiu_child_command(&exe, &test, ROLE, &ctrl)
        .env(DIR_ENV, &root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fiu-run");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    let mut result = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if let Some(flag) = line.strip_prefix("READY ") {
            assert_eq!(
                flag, "1",
                "libfiu's preload library is not mapped in the child"
            );
            // EBADF (9): what libfiu's `closedir` fails with.
            fiu_ctrl(
                &ctrl,
                pid,
                &["enable name=posix/io/dir/closedir,failinfo=9"],
            );
            stdin.write_all(b"GO\n").unwrap();
        } else if let Some(r) = line.strip_prefix("RESULT ") {
            result = Some(r.to_owned());
        }
        said.push(line);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = said.join("\n");
    assert!(
        out.status.success(),
        "the child failed ({}):\n{said}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked") && !said.contains("panicked"),
        "a thread panicked under the fault:\n{said}\n{stderr}"
    );
    assert_eq!(result.as_deref(), Some("ok"), "{said}\n{stderr}");
}
