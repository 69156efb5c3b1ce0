//! Child processes in a private mount namespace, for tests on real small or read-only
//! volumes: the test re-executes this test binary (`--exact <test>`) under
//! `unshare --mount --propagation private`, in a role the child recognizes, with a fresh
//! temporary directory to mount on. Needs root and util-linux's `unshare`; without them the
//! test says it is skipped, except under `CI=true`, where a missing prerequisite fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROLE_ENV: &str = "ANSWERCACHE_ADV6_ROLE";
const DIR_ENV: &str = "ANSWERCACHE_ADV6_DIR";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether this process is the child for `role`.
pub fn is_child(role: &str) -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|r| r == role)
}

/// The child's working directory.
pub fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR_ENV).expect("a child gets its directory"))
}

/// Runs the test `test` (its libtest name) again in a child in a private mount namespace, in
/// `role`; panics with the child's output unless it passed. Returns false (skipped) when the
/// prerequisites are missing and `CI` is not `true`.
pub fn run_in_namespace(test: &str, role: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    let unshare = Command::new("unshare").arg("--version").output().is_ok();
    if !root || !unshare {
        let why = format!(
            "needs root (uid {}) and unshare (found: {unshare})",
            rustix::process::geteuid().as_raw()
        );
        assert!(!ci(), "{test}: {why}; CI=true requires them");
        println!("SKIPPED {test}: {why}");
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("running 1 test"),
        "child {test} failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    true
}

pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn mount_tmpfs(dir: &Path, opts: &str) {
    std::fs::create_dir_all(dir).unwrap();
    sh(
        "mount",
        &["-t", "tmpfs", "-o", opts, "tmpfs", dir.to_str().unwrap()],
    );
}

/// Remounts `dir` with `opts`, retrying while busy (a file open for writing).
pub fn remount(dir: &Path, opts: &str) {
    let opts = format!("remount,{opts}");
    for _ in 0..2000 {
        let out = Command::new("mount")
            .args(["-o", &opts, dir.to_str().unwrap()])
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("mount -o {opts}: busy");
}

/// (f_bavail × f_frsize, f_blocks × f_frsize) of the file system holding `dir`.
pub fn space(dir: &Path) -> (u64, u64) {
    let st = rustix::fs::statvfs(dir).unwrap();
    (st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the test `test` again in a plain child process in `role` (a process of its own: a
/// global tracing subscriber there sees only that test's events); panics with the child's
/// output unless it passed.
pub fn run_child(test: &str, role: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("running 1 test"),
        "child {test} failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
}
