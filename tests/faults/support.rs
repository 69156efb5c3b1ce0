//! Shared fixtures of the fault harnesses: child processes (this test binary re-executed in a
//! role, optionally inside a private mount namespace or under a file-size limit), tmpfs mounts,
//! self-checking values, file and fd counts, and the `RELIABILITY` line each harness prints.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use answercache::testing;
pub use answercache::testing::{copy_dir, wait_until};
use answercache::verify::{verify, VerifyOptions, VerifyReport};
pub use answercache::workload::Rng;
use answercache::{Builder, Durability, WritePolicy};

/// Set in a child process: which harness body to run.
pub const ROLE_ENV: &str = "ANSWERCACHE_FAULTS_ROLE";
/// The directory a child works in.
pub const DIR_ENV: &str = "ANSWERCACHE_FAULTS_DIR";

pub const EIO: i32 = 5;
pub const EACCES: i32 = 13;
pub const EFBIG: i32 = 27;
pub const ENOSPC: i32 = 28;
pub const EROFS: i32 = 30;

/// A timer that never fires during a test.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// `ANSWERCACHE_LONG=1` runs more cycles, seeds and operations.
pub fn long_mode() -> bool {
    std::env::var("ANSWERCACHE_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `ci` in the default mode, `long` with `ANSWERCACHE_LONG=1`.
pub fn scale<T>(ci: T, long: T) -> T {
    if long_mode() {
        long
    } else {
        ci
    }
}

/// The role this process was started in, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// The working directory handed to a child.
pub fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR_ENV).expect("a child gets its directory"))
}

/// The libtest name of `func` in the module `module` (`module_path!()`, crate name first).
pub fn test_name(module: &str, func: &str) -> String {
    let module = module.split_once("::").map_or("", |(_, m)| m);
    format!("{module}::{func}")
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Harnesses that need mounts run only as root. As root they must run: a failing mount is a
/// failure, not a skip.
pub fn root_or_skip(harness: &str) -> bool {
    if is_root() {
        return true;
    }
    println!(
        "SKIPPED {harness}: needs root for mount namespaces and tmpfs mounts (uid {})",
        rustix::process::geteuid().as_raw()
    );
    false
}

/// How a child process is started.
pub enum Wrap {
    /// Directly.
    Plain,
    /// In a private mount namespace (`unshare -m --propagation private`): its mounts vanish
    /// with it.
    Namespace,
    /// Under `RLIMIT_FSIZE` of this many bytes (a multiple of 512) with SIGXFSZ ignored (an
    /// ignored signal stays ignored across `exec`).
    FileSizeLimit(u64),
}

/// A command that re-executes this test binary to run only `test` in `role`.
pub fn child_command(test: &str, role: &str, wrap: Wrap) -> Command {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = match wrap {
        Wrap::Plain => Command::new(&exe),
        Wrap::Namespace => {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private"]).arg(&exe);
            c
        }
        Wrap::FileSizeLimit(bytes) => {
            assert_eq!(bytes % 512, 0, "ulimit -f counts 512-byte blocks");
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "trap '' XFSZ && ulimit -f {} && exec \"$0\" \"$@\"",
                    bytes / 512
                ))
                .arg(&exe);
            c
        }
    };
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role);
    cmd
}

/// Runs `test` again as a child in `role`, started as `wrap`, in a fresh temporary directory
/// (its [`DIR_ENV`]), to its end (see [`run_child`]).
pub fn run_child_in_temp_dir(test: &str, role: &str, wrap: Wrap) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = child_command(test, role, wrap);
    cmd.env(DIR_ENV, dir.path());
    run_child(cmd);
}

/// Runs a child to its end, forwards its `RELIABILITY` lines, and panics with its output
/// unless it succeeded. Returns its stdout.
pub fn run_child(mut cmd: Command) -> String {
    let out = cmd.output().expect("spawn the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    forward_reliability(&stdout);
    check_child(&out);
    // `--exact` with a name that matches nothing runs nothing, successfully.
    assert!(
        stdout.contains("running 1 test"),
        "the child ran no test:\n{stdout}"
    );
    stdout
}

/// Panics with the (indented) end of the child's output unless it exited 0.
pub fn check_child(out: &Output) {
    if !out.status.success() {
        let tail = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let mut start = s.len().saturating_sub(6000);
            while !s.is_char_boundary(start) {
                start += 1;
            }
            // Indented, so that a `grep ^RELIABILITY` of the report sees each line once.
            s[start..].replace('\n', "\n  ")
        };
        panic!(
            "child failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
}

/// Re-prints a child's `RELIABILITY` lines (libtest may have glued "test name ... " in front).
pub fn forward_reliability(stdout: &str) {
    for line in stdout.lines() {
        if let Some(at) = line.find("RELIABILITY ") {
            println!("\n{}", &line[at..]);
        }
    }
}

/// Prints `RELIABILITY <name> k=v ...` on a line of its own (after a newline, since libtest
/// may have printed "test name ... " without one).
pub fn reliability(name: &str, fields: &[(&str, &dyn Display)]) {
    let mut line = format!("RELIABILITY {name}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("\n{line}");
}

/// A temp directory on a tmpfs (`/dev/shm`) where there is one, else the default: for
/// harnesses whose faults are simulated, so that the real disk's speed does not matter.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

/// A multi-threaded runtime with timers, for harnesses that run on real time.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A builder on the real fs: write-through with fsync, no free-space floor, and every timer
/// off unless a harness sets it.
pub fn builder(root: &Path) -> Builder {
    testing::builder(root)
        .write_policy(WritePolicy::WriteThrough)
        .durability(Durability::Fsync)
        .health_interval(DAY)
        .sweep_interval(DAY)
        .recovery_interval(DAY)
        .io_timeout(Duration::from_secs(10))
}

/// A value that names its key, its writer and its sequence number, padded to `len` bytes with
/// bytes derived from that header: a reader can tell a torn value, or another key's, from the
/// real one. The padding does not compress, so `len` is about what lands on disk.
pub fn value(key: &str, writer: u64, seq: u64, len: usize) -> Vec<u8> {
    let header = format!("{key}|{writer}|{seq}|");
    let mut v = header.clone().into_bytes();
    let pad = len.saturating_sub(v.len());
    let mut padding = vec![0u8; pad];
    blake3::Hasher::new()
        .update(header.as_bytes())
        .finalize_xof()
        .fill(&mut padding);
    v.extend_from_slice(&padding);
    v
}

/// `(writer, seq)` of a value made by [`value`] for `key`, or what is wrong with it.
pub fn check_value(key: &str, bytes: &[u8]) -> Result<(u64, u64), String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    let mut parts = text.splitn(4, '|');
    let (Some(k), Some(w), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("no header in {} bytes", bytes.len()));
    };
    if k != key {
        return Err(format!("value of key {k:?} returned for {key:?}"));
    }
    let (Ok(w), Ok(s)) = (w.parse::<u64>(), s.parse::<u64>()) else {
        return Err(format!("bad header for {key:?}"));
    };
    if value(key, w, s, bytes.len()) != bytes {
        return Err(format!("torn value for {key:?} (writer {w}, seq {s})"));
    }
    Ok((w, s))
}

/// Names of the entries of `dir` (none if it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("list {}: {e}", dir.display()),
    }
}

/// Temp files: every file in `<root>/tmp`, and the temp files of entries being written in
/// `<root>/v2/ab/` (see `answercache::testing::temp_files`).
pub fn temp_files(root: &Path) -> usize {
    answercache::testing::temp_files(root).len()
}

/// Temp files of entry writes, in `<root>/v2/ab/` and `<root>/tmp` (recovery-probe files
/// excluded: one may be in flight while a harness looks).
pub fn entry_temp_files(root: &Path) -> usize {
    answercache::testing::temp_files(root)
        .iter()
        .filter(|n| !n.starts_with("tmp/probe."))
        .count()
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    files_in(Path::new("/proc/self/fd")).len()
}

/// Runs `verify` (report only) on a cache directory.
pub fn verify_report(root: &Path) -> VerifyReport {
    verify(root, &VerifyOptions::default()).expect("verify runs")
}

/// Runs a program; panics unless it exits 0.
pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mounts a tmpfs with `opts` on `dir` (inside this process's private mount namespace).
pub fn mount_tmpfs(dir: &Path, opts: &str) {
    std::fs::create_dir_all(dir).expect("mount point");
    let d = dir.to_str().expect("utf-8 path");
    sh("mount", &["-t", "tmpfs", "-o", opts, "tmpfs", d]);
}

/// Remounts the tmpfs on `dir` with `opts` (`ro`, `rw,size=4m`, ...). A read-only remount
/// is refused (EBUSY) while a file is open for writing: it is retried until it lands between
/// two writes, like an operator's would be.
pub fn remount(dir: &Path, opts: &str) {
    let d = dir.to_str().expect("utf-8 path");
    let opts = format!("remount,{opts}");
    for _ in 0..1000 {
        let out = Command::new("mount")
            .args(["-o", &opts, d])
            .output()
            .expect("run mount");
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("busy"),
            "mount -o {opts} {d}: {}\n{err}",
            out.status
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("mount -o {opts} {d}: busy 1000 times");
}

pub fn umount(dir: &Path) {
    sh("umount", &[dir.to_str().expect("utf-8 path")]);
}

/// (bytes, inodes) available on the filesystem holding `dir`.
pub fn available(dir: &Path) -> (u64, u64) {
    let st = rustix::fs::statvfs(dir).expect("statvfs");
    (st.f_bavail * st.f_frsize, st.f_favail)
}

pub use answercache::testing::disk_errors as errors;

/// The result of a write-through `set`/`remove` under a fault: `true` if it reached the disk,
/// `false` if it reported that it did not (`NotPersisted`: the value is still served from
/// memory and written when the disk is back). Any other error fails the harness.
#[track_caller]
pub fn persisted<T: std::fmt::Debug>(r: answercache::Result<T>) -> bool {
    match r {
        Ok(_) => true,
        Err(answercache::Error::NotPersisted { failed: 1, .. }) => false,
        Err(e) => panic!("a write-through operation failed with {e:?}"),
    }
}

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`): there a missing
/// external tool fails the harness instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Where libfiu's `fiu-run -x` looks for its preload libraries (Debian `libfiu0`).
pub const FIU_POSIX_PRELOAD: &str = "/usr/lib/fiu/fiu_posix_preload.so";

/// The libfiu harness runs only where `fiu-run` and `fiu-ctrl` (Debian `fiu-utils`, which
/// `.ci/run` installs) and the POSIX preload library are present. Elsewhere it prints
/// `SKIPPED <reason>` and passes, except under `CI`, where a missing injector is a failure:
/// CI must never pass a fault harness that did not run.
pub fn fiu_or_skip(harness: &str) -> bool {
    let on_path = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = ["fiu-run", "fiu-ctrl"]
        .into_iter()
        .filter(|t| !on_path(t))
        .chain((!Path::new(FIU_POSIX_PRELOAD).exists()).then_some(FIU_POSIX_PRELOAD))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{harness}: needs libfiu (apt-get install fiu-utils); missing: {}",
        missing.join(", ")
    );
    assert!(!in_ci(), "CI=true and {reason}");
    println!("SKIPPED {reason}");
    false
}

/// A copy of this test binary in `dir`, for children started over a long run: a rebuild of
/// the test target meanwhile (another `cargo test` on the same `target/`) replaces the file
/// `current_exe` names, and children would then run another build or fail to start.
pub fn copy_of_this_binary(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let copy = dir.join(exe.file_name().expect("a file name"));
    std::fs::copy(&exe, &copy).expect("copy the test binary");
    copy
}

/// A command that re-executes the test binary `exe` (this one, or [`copy_of_this_binary`]),
/// like [`child_command`], under libfiu's `fiu-run -x` (the POSIX preload library: failures
/// injected into libc calls) with its remote control on the named pipes `<ctrl>-<pid>.in|out`,
/// for `fiu-ctrl -f <ctrl>`. No failure point is enabled at start: the parent enables them
/// with [`fiu_ctrl`] once the child is ready, so that the Rust runtime's start-up and libtest's
/// own output run without faults.
pub fn fiu_child_command(exe: &Path, test: &str, role: &str, ctrl: &Path) -> Command {
    let mut cmd = Command::new("fiu-run");
    cmd.arg("-x")
        .arg("-f")
        .arg(ctrl)
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role);
    cmd
}

/// Sends libfiu remote-control commands (`enable_random name=posix/io/*,probability=0.02`,
/// `disable name=posix/io/*`, ...) to the process `pid` started by [`fiu_child_command`] with
/// the same `ctrl`, and waits for it to apply them. Panics if `fiu-ctrl` reports an error.
pub fn fiu_ctrl(ctrl: &Path, pid: u32, commands: &[&str]) {
    let mut cmd = Command::new("timeout");
    cmd.arg("20").arg("fiu-ctrl").arg("-f").arg(ctrl);
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    let out = cmd.arg(pid.to_string()).output().expect("run fiu-ctrl");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // fiu-ctrl exits 0 even when it could not reach the process: it says so on stdout.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "fiu-ctrl {commands:?} {pid}: {}\n{said}",
        out.status
    );
}
