//! The old binary (2694034, `OLD_TIERCACHE_BIN`) and the new one run the same operator
//! commands on two copies of the same hostile directory: stdout, stderr, the exit status and
//! the tree left behind (cache and sentinel) must be the same, once the two directories' paths
//! and the times of "now" are normalised.
//!
//! Without `OLD_TIERCACHE_BIN` the tests skip with a printed reason under `CI=true`, and fail
//! (saying how to build the old binary) otherwise: they are review tools.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::trees::{self, Scenario};

/// The old binary, or `None` when the test must skip.
pub fn old_bin() -> Option<PathBuf> {
    match std::env::var_os("OLD_TIERCACHE_BIN") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "OLD_TIERCACHE_BIN={} is not a file",
                p.display()
            );
            Some(p)
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            println!(
                "skipped: OLD_TIERCACHE_BIN is not set (the differential tests compare the \
                 binary of 2694034 with this one; see tests/adversary5/FINDINGS.md)"
            );
            None
        }
        _ => panic!(
            "OLD_TIERCACHE_BIN is not set: build the old binary with `git worktree add /tmp/old \
             2694034 && cargo build --manifest-path /tmp/old/Cargo.toml --features cli --bin \
             tiercache` and point OLD_TIERCACHE_BIN at /tmp/old/target/debug/tiercache \
             (under CI=true these tests skip instead)"
        ),
    }
}

pub fn new_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_answercache"))
}

/// What one run printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The uid and gid commands of locked scenarios run as (nobody).
pub const NOBODY: u32 = 65534;

/// Runs `bin ARGS` (as nobody when `nobody`), with `stdin`.
pub fn run(bin: &Path, args: &[String], stdin: &[u8], nobody: bool) -> Run {
    let mut cmd = if nobody {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let mut child = cmd
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Replaces `base` with `<BASE>`, times within two days of now (13-digit unix ms, and ISO
/// timestamps of this decade) with `<NOW>`, and process ids in temp names with `<PID>`.
pub fn normaliser(base: &Path) -> impl Fn(&str) -> String {
    let base = base.to_string_lossy().into_owned();
    let now = answercache::clock::system_now_ms();
    move |s: &str| {
        // The crate's rename (issue 13) is accepted: the new binary names itself answercache.
        let s = s
            .replace(&base, "<BASE>")
            .replace("answercache", "tiercache");
        let mut out = String::with_capacity(s.len());
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            // A run of digits.
            if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()) {
                let j = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let run = &s[i..j];
                if run.len() == 13 {
                    let v: u64 = run.parse().unwrap();
                    if v.abs_diff(now) < 2 * 86_400_000 {
                        out.push_str("<NOW>");
                        i = j;
                        continue;
                    }
                }
                // 20YY-MM-DDTHH:MM:SSZ of this decade.
                if run.len() == 4 && run.starts_with("202") && s[j..].starts_with('-') {
                    let tail = &s[i..];
                    if tail.len() >= 20
                        && tail.as_bytes()[10] == b'T'
                        && tail.as_bytes()[19] == b'Z'
                    {
                        out.push_str("<NOW-ISO>");
                        i += 20;
                        continue;
                    }
                }
                out.push_str(run);
                i = j;
                continue;
            }
            out.push(b[i] as char);
            i += 1;
        }
        // What a cache met last (`get`/`set`/`rm` on a locked directory): its startup scan
        // and the command's own write race, and a failure may open the breaker first; the
        // old binary prints either, run to run.
        let out = out
            .lines()
            .map(|l| match l.find("(last error: ") {
                Some(at) if l.ends_with(')') => format!("{}(last error: <RACY>)", &l[..at]),
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + if out.ends_with('\n') { "\n" } else { "" };
        // `purge.<pid>.` and `.<pid>.<instance>.<n>.tmp` name this run's process.
        let mut s = out;
        for marker in ["purge."] {
            while let Some(at) = s.find(marker) {
                let start = at + marker.len();
                let digits = s[start..].bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 {
                    break;
                }
                s.replace_range(at..start + digits, "purge<PID>");
            }
        }
        s
    }
}

/// What one command did to one copy of a scenario: its run and the tree it left.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub run: Run,
    pub tree: String,
}

/// Builds `scenario` in a fresh `base`, runs the command sequence `cmds` with `bin` (the cache
/// root replaces `{}` in each command), and returns the normalised outcome of each command.
pub fn play(bin: &Path, base: &Path, scenario: &Scenario, cmds: &[Cmd]) -> Vec<Outcome> {
    trees::fixed_umask();
    std::fs::create_dir_all(base).unwrap();
    (scenario.build)(base);
    let root = trees::root(base);
    let nobody = !scenario.locked.is_empty();
    if nobody {
        trees::set_mode(base.parent().unwrap(), 0o755);
        trees::chown_all(base, NOBODY, NOBODY);
        for spec in scenario.locked {
            trees::set_mode(&trees::locked_path(&root, spec), 0o000);
        }
    }
    let norm = normaliser(base);
    let mut out = Vec::new();
    for cmd in cmds {
        let args: Vec<String> = cmd
            .args
            .iter()
            .map(|a| a.replace("{}", &root.to_string_lossy()))
            .collect();
        let r = run(bin, &args, cmd.stdin, nobody);
        let run = Run {
            code: r.code,
            stdout: norm(&r.stdout),
            stderr: norm(&r.stderr),
        };
        let mut tree = String::new();
        for (path, node) in trees::snapshot(base, &norm) {
            writeln!(tree, "{path}: {node:?}").unwrap();
        }
        out.push(Outcome { run, tree });
    }
    if nobody {
        // Unlock, so the temp dir can be removed.
        for spec in scenario.locked {
            let _ = std::fs::set_permissions(
                trees::locked_path(&root, spec),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            );
        }
    }
    out
}

/// One command line (`{}` is the cache root) and its standard input.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub args: Vec<String>,
    pub stdin: &'static [u8],
}

pub fn cmd(line: &str) -> Cmd {
    Cmd {
        args: line.split(' ').map(str::to_owned).collect(),
        stdin: b"",
    }
}

/// The operator commands every scenario is run with, each on a fresh copy; the sequences run
/// on one copy in turn.
pub fn command_sets(scenario: &Scenario) -> Vec<Vec<Cmd>> {
    let mut sets: Vec<Vec<Cmd>> = [
        "stats {}",
        "stats {} --json",
        "verify {}",
        "verify {} --json",
        "verify {} --repair",
        "verify {} --repair --json",
        "purge {} --expired",
        "purge {} --expired --json",
        "purge {} --all",
        "purge {} --all --json",
        "quarantine list {}",
        "quarantine list {} --json",
        "quarantine clear {}",
        "quarantine clear {} --json",
    ]
    .iter()
    .map(|l| vec![cmd(l)])
    .collect();
    // The directory spelt with a trailing slash and through `..`.
    sets.push(vec![
        cmd("stats {}/"),
        cmd("verify {}/ --json"),
        cmd("purge {}/../cache --expired --json"),
        cmd("verify {}/../cache --repair"),
    ]);
    // Verify, repair, then look again.
    sets.push(vec![
        cmd("verify {} --repair"),
        cmd("verify {}"),
        cmd("stats {}"),
        cmd("quarantine list {} --json"),
        cmd("purge {} --expired"),
        cmd("stats {} --json"),
    ]);
    let planted = format!(
        "{}-checksum-{}",
        trees::CREATED,
        trees::hex_name(trees::LIVE)
    );
    sets.push(vec![
        cmd(&format!("quarantine show {{}} {planted}")),
        cmd(&format!("quarantine show {{}} {planted} --json")),
        cmd(&format!("quarantine show {{}} {planted}.why")),
    ]);
    sets.push(vec![
        cmd(&format!("quarantine clear {{}} {planted}")),
        cmd(&format!("quarantine clear {{}} {planted} --json")),
    ]);
    let mut keys: Vec<&str> = trees::ALL_KEYS.to_vec();
    keys.extend_from_slice(scenario.keys);
    for key in keys {
        sets.push(vec![
            cmd(&format!("get {{}} {key}")),
            cmd(&format!("get {{}} {key} --json")),
            cmd(&format!("get {{}} {key} --raw")),
        ]);
        sets.push(vec![cmd(&format!("rm {{}} {key}"))]);
        sets.push(vec![cmd(&format!("rm {{}} {key} --json"))]);
    }
    sets.push(vec![
        Cmd {
            args: ["set", "{}", "fresh-key", "--ttl", "1h"]
                .map(str::to_owned)
                .to_vec(),
            stdin: b"{\"fresh\": true}",
        },
        cmd("get {} fresh-key --json"),
        cmd("stats {}"),
    ]);
    sets
}

/// Runs every command set of `scenario` with both binaries; returns the differences, as text.
pub fn differences(old: &Path, scenario: &Scenario) -> String {
    let new = new_bin();
    let mut report = String::new();
    for (i, set) in command_sets(scenario).iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        // Same-length names: tables align on path lengths.
        let a = play(old, &tmp.path().join("old"), scenario, set);
        let b = play(&new, &tmp.path().join("new"), scenario, set);
        for (j, (a, b)) in a.iter().zip(&b).enumerate() {
            if std::env::var_os("ADV5_SHOW").is_some() {
                let line = set[j].args.join(" ");
                println!(
                    "### {} `{line}` exit {:?}\n{}{}",
                    scenario.name, b.run.code, b.run.stdout, b.run.stderr
                );
            }
            if a == b {
                continue;
            }
            let line = set[j].args.join(" ");
            writeln!(report, "=== {} [{i}.{j}] `{line}`", scenario.name).unwrap();
            if a.run.code != b.run.code {
                writeln!(report, "exit: old {:?}, new {:?}", a.run.code, b.run.code).unwrap();
            }
            for (what, x, y) in [
                ("stdout", &a.run.stdout, &b.run.stdout),
                ("stderr", &a.run.stderr, &b.run.stderr),
                ("tree", &a.tree, &b.tree),
            ] {
                if x != y {
                    writeln!(report, "--- {what} old:\n{x}--- {what} new:\n{y}").unwrap();
                }
            }
        }
    }
    report
}

fn check(name: &str, locked: bool) {
    let Some(old) = old_bin() else {
        return;
    };
    let all = if locked {
        trees::locked_scenarios()
    } else {
        trees::scenarios()
    };
    let scenario = all.into_iter().find(|s| s.name == name).unwrap();
    let d = differences(&old, &scenario);
    assert!(d.is_empty(), "old and new binaries differ:\n{d}");
}

/// Whether this process may run commands as another user (the locked scenarios need it: root
/// reads a mode-000 directory anyway).
fn can_drop_privileges() -> bool {
    rustix::process::geteuid().is_root()
        && Command::new("setpriv")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn check_locked(name: &str) {
    if !can_drop_privileges() {
        println!("skipped: needs root and setpriv to run the binaries as nobody");
        return;
    }
    check(name, true);
}

macro_rules! differential {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check(stringify!($name), false);
        }
    )*};
}

macro_rules! differential_locked {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_locked(stringify!($name));
        }
    )*};
}

differential!(
    clean,
    root_symlink,
    empty_root,
    empty_layout,
    foreign_names,
    symlinks_in_layout,
    v1_symlink,
    v1_file,
    v1_fifo,
    specials_at_entry_paths,
    corrupt_entries,
    tmp_and_quarantine,
    quarantine_symlink,
    tmp_and_quarantine_files,
    tmp_symlink,
    no_tmp_no_quarantine,
);

differential_locked!(
    locked_fan1,
    locked_fan2,
    locked_two_fan_outs,
    locked_v1,
    locked_tmp,
    locked_quarantine,
    locked_entry_file,
    locked_root,
);

/// Help, version and usage errors: what an operator sees before any directory is read.
#[test]
fn usage_and_help() {
    let Some(old) = old_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_string_lossy().into_owned();
    std::fs::write(tmp.path().join("file"), b"x").unwrap();
    let lines = [
        "--help",
        "--version",
        "stats --help",
        "verify --help",
        "get --help",
        "set --help",
        "rm --help",
        "purge --help",
        "quarantine --help",
        "quarantine list --help",
        "quarantine show --help",
        "quarantine clear --help",
        "stats",
        "stats {}/missing",
        "stats {}/file",
        "verify {}/file --json",
        "purge {}",
        "purge {} --all --expired",
        "set {}/new k --ttl 0s",
        "set {}/new k --ttl abc",
        "get {}/missing k",
        "rm {}/file k",
        "quarantine show {} ../x",
        "quarantine show {} 12-checksum-x/y",
        "quarantine clear {} 12-bogus-x",
        "bogus",
    ];
    let mut diff = String::new();
    for line in lines {
        let args: Vec<String> = line.split(' ').map(|a| a.replace("{}", &d)).collect();
        let name = |bin: &Path| bin.file_name().unwrap().to_string_lossy().into_owned();
        let (a, b) = (
            run(&old, &args, b"", false),
            run(&new_bin(), &args, b"", false),
        );
        let fix = |s: &str, bin: &Path| {
            s.replace(&format!("Usage: {}", name(bin)), "Usage: tiercache")
                .replace("answercache", "tiercache")
        };
        let a = (a.code, fix(&a.stdout, &old), fix(&a.stderr, &old));
        let b = (
            b.code,
            fix(&b.stdout, &new_bin()),
            fix(&b.stderr, &new_bin()),
        );
        if a != b {
            writeln!(diff, "=== `{line}`\nold: {a:?}\nnew: {b:?}").unwrap();
        }
    }
    assert!(diff.is_empty(), "old and new binaries differ:\n{diff}");
}
