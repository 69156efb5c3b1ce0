//! The operator commands on the hostile trees: every command line, on a fresh copy of each
//! tree, against a transcript recorded on layout 2 and read line by line
//! (`golden/cli_<scenario>.txt`: exit status, stdout, stderr and what each command changed on
//! disk), and against the library's own view of the same tree (`verify --json` is the report
//! of `answercache::verify`; `get --raw` serves what `TieredCache::get_bytes` serves).
//!
//! This file replaces the differential tests (old binary of 2694034 against the new one):
//! they compared two binaries of the same layout, and the old one knows only layout 1, so
//! across the layout change every comparison would differ by design. FINDINGS.md says why they
//! were retired and what replaced them.
//!
//! The locked scenarios run the binary as nobody (`setpriv`, so root is needed): root reads a
//! mode-000 directory anyway. Without root or `setpriv` they fail under `CI=true` and print
//! why they skip elsewhere.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use answercache::fs::StdFs;
use answercache::verify::{verify_with_fs, VerifyOptions};
use answercache::TieredCache;

use crate::golden;
use crate::trees::{self, Scenario};

/// The binary under test.
pub fn bin() -> PathBuf {
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

/// Runs `bin ARGS` (as nobody when `nobody`), with `stdin`; the raw stdout too.
pub fn run_raw(args: &[String], stdin: &[u8], nobody: bool) -> (Run, Vec<u8>) {
    let mut cmd = if nobody {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ])
        .arg(bin());
        c
    } else {
        Command::new(bin())
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
    (
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        out.stdout,
    )
}

/// Runs `bin ARGS` (as nobody when `nobody`), with `stdin`.
pub fn run(args: &[String], stdin: &[u8], nobody: bool) -> Run {
    run_raw(args, stdin, nobody).0
}

/// Replaces `base` with `<BASE>`, times within two days of now (13-digit unix ms, and ISO
/// timestamps of this decade) with `<NOW>`, process ids in `purge.<pid>` temp names with
/// `<PID>`, and the racy "(last error: ...)" of a cache that met two errors with `<RACY>`.
pub fn normaliser(base: &Path) -> impl Fn(&str) -> String {
    let base = base.to_string_lossy().into_owned();
    let now = answercache::clock::system_now_ms();
    move |s: &str| {
        let s = s.replace(&base, "<BASE>");
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
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
        // What a cache met last (`get`/`set`/`rm` on a locked directory): its startup scan
        // and the command's own write race, and a failure may open the breaker first; the
        // text differs from run to run (FINDINGS.md, "Not a finding").
        let out = out
            .lines()
            .map(|l| match (l.find("(last error: "), l.rfind(')')) {
                // Text lines end with the `)`; JSON error documents have it inside the
                // `"message"` string.
                (Some(at), Some(end)) if end > at => {
                    format!("{}(last error: <RACY>){}", &l[..at], &l[end + 1..])
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + if out.ends_with('\n') { "\n" } else { "" };
        // `purge.<pid>.` names this run's process.
        let mut s = out;
        let mut from = 0;
        while let Some(at) = s[from..].find("purge.").map(|a| a + from) {
            let start = at + "purge.".len();
            let digits = s[start..].bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                s.replace_range(start..start + digits, "<PID>");
            }
            from = start;
        }
        s
    }
}

/// `line` with control characters (a bincode value's bytes on stdout) as `\u{..}` escapes, so
/// the transcripts are plain text.
fn visible(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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

/// Builds `scenario` in `base` (locking what it locks, owned by nobody when it does).
pub fn build(base: &Path, scenario: &Scenario) {
    trees::fixed_umask();
    std::fs::create_dir_all(base).unwrap();
    (scenario.build)(base);
    if !scenario.locked.is_empty() {
        let root = trees::root(base);
        trees::set_mode(base.parent().unwrap(), 0o755);
        trees::chown_all(base, NOBODY, NOBODY);
        for spec in scenario.locked {
            trees::set_mode(&trees::locked_path(&root, spec), 0o000);
        }
    }
}

/// Builds the locked `scenario` in `base` when the binary can run as nobody; `false` (after
/// saying why) when it cannot, which fails under `CI=true`.
pub fn build_locked(base: &Path, scenario: &Scenario) -> bool {
    if !can_drop_privileges() {
        assert!(
            !in_ci(),
            "CI=true: the locked scenarios need root and setpriv (to run as nobody)"
        );
        println!("skipped: needs root and setpriv to run the binary as nobody");
        return false;
    }
    build(base, scenario);
    true
}

/// Makes the locked directories of `scenario` readable again, so the temp dir can go.
pub fn unlock(base: &Path, scenario: &Scenario) {
    for spec in scenario.locked {
        let _ = std::fs::set_permissions(
            trees::locked_path(&trees::root(base), spec),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
    }
}

/// Commands whose outcome shows a finding (FINDINGS.md) on `scenario`: they still run, but
/// the transcript records a marker instead of their outcome (the finding's own test, in
/// `findings`, asserts what they should do). `args` as written in [`command_sets`].
fn not_pinned(scenario: &str, args: &[String]) -> Option<&'static str> {
    let (cmd, dir) = (args[0].as_str(), args.get(1).map(String::as_str));
    let scan = matches!(cmd, "stats" | "verify" | "purge");
    match scenario {
        // F8: the directory given through a symlink is walked as an empty one.
        "root_symlink" if scan && dir == Some("{}") => Some("F8"),
        // F3: the scan commands do not see the entries of layout 1 a cache has not moved yet.
        "legacy_clean" | "legacy_layout" | "locked_legacy_fan" if scan => Some("F3"),
        // F9: `rm` of an entry the cache moves from `v1/` when it opens says there was none
        // (the three valid entries, and the corrupt file that moves unread).
        "legacy_clean" | "legacy_layout"
            if cmd == "rm"
                && args
                    .get(2)
                    .is_some_and(|k| trees::ALL_KEYS.contains(&k.as_str()) || k == "corrupt") =>
        {
            Some("F9")
        }
        _ => None,
    }
}

/// Builds `scenario` in a fresh `base`, runs the command sequence `cmds` (the cache root
/// replaces `{}`), and writes each command's outcome to `t`: the command, its exit status,
/// stdout, stderr and what it changed on disk.
fn play(t: &mut String, base: &Path, scenario: &Scenario, cmds: &[Cmd]) {
    build(base, scenario);
    let root = trees::root(base);
    let nobody = !scenario.locked.is_empty();
    let norm = normaliser(base);
    let mut before = trees::snapshot(base, &norm);
    for cmd in cmds {
        let args: Vec<String> = cmd
            .args
            .iter()
            .map(|a| a.replace("{}", &root.to_string_lossy()))
            .collect();
        let r = run(&args, cmd.stdin, nobody);
        writeln!(t, "$ answercache {}", norm(&args.join(" "))).unwrap();
        if !cmd.stdin.is_empty() {
            writeln!(t, "stdin: {}", String::from_utf8_lossy(cmd.stdin)).unwrap();
        }
        if let Some(finding) = not_pinned(scenario.name, &cmd.args) {
            writeln!(t, "[not pinned: {finding}, see FINDINGS.md]").unwrap();
            before = trees::snapshot(base, &norm);
            continue;
        }
        writeln!(t, "exit: {:?}", r.code).unwrap();
        for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            let text = norm(text);
            if text.is_empty() {
                continue;
            }
            writeln!(t, "{what}:").unwrap();
            for l in text.lines() {
                writeln!(t, "  | {}", visible(l)).unwrap();
            }
        }
        let after = trees::snapshot(base, &norm);
        // A command that opens a cache (`get`, `set`, `rm`) may or may not reach the end of
        // its startup scan, which removes empty fan-out directories (`rmdir`, FORMAT.md): such
        // a removal is timing, not the command's outcome, and is left out of its changes.
        // `purge` removes the ones it empties itself, always: those stay.
        let opens_a_cache = matches!(
            cmd.args.first().map(|a| a.as_ref()),
            Some("get" | "set" | "rm")
        );
        let changes: Vec<_> = golden::diff(&before, &after)
            .into_iter()
            .filter(|c| !(opens_a_cache && is_fan_out_dir_change(&c.to_string())))
            .collect();
        if changes.is_empty() {
            writeln!(t, "changed: nothing").unwrap();
        } else {
            writeln!(t, "changed:").unwrap();
            for c in changes {
                writeln!(t, "  {c}").unwrap();
            }
        }
        before = after;
    }
    if nobody {
        unlock(base, scenario);
    }
}

/// The operator commands every scenario is run with, each set on a fresh copy; the commands
/// of a set run on one copy in turn.
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
    for key in keys(scenario) {
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

/// The keys `get` and `rm` are asked about: the three valid ones and the scenario's.
fn keys(scenario: &Scenario) -> Vec<&'static str> {
    let mut keys: Vec<&str> = trees::ALL_KEYS.to_vec();
    keys.extend_from_slice(scenario.keys);
    keys
}

/// The transcript of every command set of `scenario`: the tree it starts from, then each
/// set's commands and what they did.
pub fn transcript(scenario: &Scenario) -> String {
    let mut t = String::new();
    {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        build(&base, scenario);
        let norm = normaliser(&base);
        writeln!(t, "scenario {}; the tree of every set:", scenario.name).unwrap();
        for (path, node) in trees::snapshot(&base, &norm) {
            writeln!(t, "  {path}: {node:?}").unwrap();
        }
        unlock(&base, scenario);
    }
    for (i, set) in command_sets(scenario).iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        writeln!(t, "\n== set {i}").unwrap();
        play(&mut t, &tmp.path().join("base"), scenario, set);
    }
    t
}

/// The CLI against the library, on fresh copies of `scenario`: `verify --json` is the report
/// `answercache::verify` gives (the three fields of the run aside), and `get KEY --raw` prints
/// exactly the bytes `get_bytes` serves (exit 0), or serves nothing when the library serves
/// nothing (exit 1; or 2, naming the error, where the library met a disk error it hides behind
/// the miss). Returns the differences.
async fn against_library(scenario: &Scenario) -> String {
    let mut report = String::new();
    {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("cli"), tmp.path().join("lib"));
        build(&a, scenario);
        build(&b, scenario);
        let root = trees::root(&a);
        let r = run(
            &[
                "verify".into(),
                root.to_string_lossy().into_owned(),
                "--json".into(),
            ],
            b"",
            false,
        );
        let mut cli: serde_json::Value = match serde_json::from_str(&r.stdout) {
            Ok(v) => v,
            Err(e) => serde_json::json!({ "unparsable": e.to_string(), "stderr": r.stderr }),
        };
        if let Some(m) = cli.as_object_mut() {
            for field in ["dir", "repair", "clean"] {
                m.remove(field);
            }
        }
        let options = VerifyOptions {
            now_ms: answercache::clock::system_now_ms(),
            ..VerifyOptions::default()
        };
        let lib = match verify_with_fs(&StdFs::new(), &trees::root(&b), &options, None) {
            Ok(r) => serde_json::to_value(&r).unwrap(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let (cli, lib) = (
            cli.to_string()
                .replace(&a.to_string_lossy().into_owned(), "<BASE>"),
            lib.to_string()
                .replace(&b.to_string_lossy().into_owned(), "<BASE>"),
        );
        if cli != lib && !(r.code == Some(2) && lib.starts_with("{\"error\"")) {
            writeln!(report, "verify --json: cli {cli}\n  library {lib}").unwrap();
        }
    }
    for key in keys(scenario) {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("cli"), tmp.path().join("lib"));
        build(&a, scenario);
        build(&b, scenario);
        let args = [
            "get".to_owned(),
            trees::root(&a).to_string_lossy().into_owned(),
            key.to_owned(),
            "--raw".to_owned(),
        ];
        let (r, stdout) = run_raw(&args, b"", false);
        // The library hides a disk error behind a miss (it shows in `Stats::disk_errors`);
        // `get` reports it to the operator (exit 2) when it can say what it was.
        let lib = match TieredCache::open(trees::root(&b)).await {
            Ok(cache) => {
                let got = cache.get_bytes(key.as_bytes()).await;
                let disk_errors = cache.stats().disk_errors;
                let _ = cache.close().await;
                got.map(|v| (v, disk_errors)).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let agree = match &lib {
            Ok((Some(v), _)) => r.code == Some(0) && stdout == v.as_ref(),
            Ok((None, 0)) => r.code == Some(1) && stdout.is_empty(),
            Ok((None, _)) => matches!(r.code, Some(1 | 2)) && stdout.is_empty(),
            Err(_) => r.code == Some(2),
        };
        if !agree {
            writeln!(
                report,
                "get {key} --raw: cli exit {:?} stdout {:?} stderr {:?}\n  library {:?}",
                r.code,
                String::from_utf8_lossy(&stdout),
                r.stderr,
                lib.map(|(v, e)| (v.map(|v| String::from_utf8_lossy(&v).into_owned()), e))
            )
            .unwrap();
        }
    }
    report
}

/// `- <dir>/v2/ab: Dir { .. }` or `+ ...`: a fan-out directory made or removed, nothing in it.
fn is_fan_out_dir_change(c: &str) -> bool {
    let Some(rest) = c.strip_prefix("- ").or_else(|| c.strip_prefix("+ ")) else {
        return false;
    };
    let Some((path, what)) = rest.split_once(": ") else {
        return false;
    };
    let parts: Vec<&str> = path.split('/').collect();
    what.starts_with("Dir ")
        && parts.len() == 3
        && parts[1] == "v2"
        && parts[2].len() == 2
        && parts[2].bytes().all(|b| b.is_ascii_hexdigit())
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

/// Whether this is a CI run: there a test that cannot run fails instead of skipping.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn check(name: &str) {
    let scenario = trees::scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    golden::check(&format!("cli_{name}"), &transcript(&scenario));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = rt.block_on(against_library(&scenario));
    assert!(d.is_empty(), "the CLI and the library differ:\n{d}");
}

/// The locked scenarios: the transcript only (the library runs as root in this process, and
/// root reads a mode-000 directory).
fn check_locked(name: &str) {
    if !can_drop_privileges() {
        assert!(
            !in_ci(),
            "CI=true: the locked scenarios need root and setpriv (to run as nobody)"
        );
        println!("skipped: needs root and setpriv to run the binary as nobody");
        return;
    }
    let scenario = trees::locked_scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    golden::check(&format!("cli_{name}"), &transcript(&scenario));
}

macro_rules! cli {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check(stringify!($name));
        }
    )*};
}

macro_rules! cli_locked {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_locked(stringify!($name));
        }
    )*};
}

cli!(
    clean,
    root_symlink,
    empty_root,
    empty_layout,
    foreign_names,
    symlinks_in_layout,
    v2_symlink,
    v2_file,
    v2_fifo,
    specials_at_entry_paths,
    corrupt_entries,
    tmp_and_quarantine,
    quarantine_symlink,
    tmp_and_quarantine_files,
    tmp_symlink,
    no_tmp_no_quarantine,
    legacy_clean,
    legacy_layout,
    legacy_v1_symlink,
);

cli_locked!(
    locked_fan,
    locked_foreign_dir,
    locked_two_fan_outs,
    locked_v2,
    locked_tmp,
    locked_quarantine,
    locked_entry_file,
    locked_root,
    locked_legacy_fan,
);

/// Help, version and usage errors: what an operator sees before any directory is read
/// (`golden/cli_usage.txt`; the version is normalised).
#[test]
fn usage_and_help() {
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
    let norm = normaliser(tmp.path());
    let mut t = String::new();
    for line in lines {
        let args: Vec<String> = line.split(' ').map(|a| a.replace("{}", &d)).collect();
        let r = run(&args, b"", false);
        let fix = |s: &str| norm(s).replace(env!("CARGO_PKG_VERSION"), "<VERSION>");
        writeln!(
            t,
            "$ answercache {}\nexit: {:?}",
            fix(&args.join(" ")),
            r.code
        )
        .unwrap();
        for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            if text.is_empty() {
                continue;
            }
            writeln!(t, "{what}:").unwrap();
            for l in fix(text).lines() {
                writeln!(t, "  | {l}").unwrap();
            }
        }
    }
    golden::check("cli_usage", &t);
}

/// The move of a layout-1 directory whose `v1/ab` (LIVE's, holding LIVE and an expired key)
/// the binary, run as nobody, cannot read (mode 000): `get` opens a cache, whose move stops
/// there; nothing of `v1/` moves or changes, LIVE is not served, and `rm` cannot remove it
/// (its `v1/` file cannot be deleted: said, exit 2). Once the directory is readable, the next
/// `get` moves the rest and serves LIVE.
#[test]
fn migration_of_an_unreadable_v1_fan_out_as_nobody() {
    let scenario = trees::locked_scenario("locked_legacy_fan");
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    if !build_locked(&base, &scenario) {
        return;
    }
    let root = trees::root(&base);
    let r = root.to_string_lossy().into_owned();
    let v1 = trees::legacy_fan1(&root, trees::LIVE);
    let before = trees::exact_snapshot(&v1);
    let norm = normaliser(&base);
    let mut t = String::new();
    for line in [
        format!("get {r} {}", trees::LIVE),
        format!("rm {r} {}", trees::LIVE),
        format!("get {r} {} --raw", trees::LEGACY_EXPIRED_KEY),
    ] {
        let args: Vec<String> = line.split(' ').map(str::to_owned).collect();
        let out = run(&args, b"", true);
        writeln!(
            t,
            "{} => {:?} {:?} {:?}",
            norm(&line),
            out.code,
            norm(&out.stdout),
            norm(&out.stderr)
        )
        .unwrap();
    }
    let after = trees::exact_snapshot(&v1);
    trees::set_mode(&v1, 0o755);
    let args: Vec<String> = ["get", &r, trees::LIVE, "--raw"]
        .map(str::to_owned)
        .to_vec();
    let out = run(&args, b"", true);
    writeln!(
        t,
        "(readable) get {} --raw => {:?} {:?} {:?}",
        trees::LIVE,
        out.code,
        out.stdout,
        norm(&out.stderr)
    )
    .unwrap();
    assert_eq!(after, before, "v1/ab changed while unreadable");
    assert!(!root.join("v1").exists());
    let not_cached = |k: &str| format!("\"\\\"{k}\\\": not cached in <BASE>/cache\\n\"");
    assert_eq!(
        t,
        format!(
            "get <BASE>/cache live-json => Some(1) \"\" {}\n\
             rm <BASE>/cache live-json => Some(2) \"\" \"error: <BASE>/cache: \\\"live-json\\\" \
             not removed: 1 entries could not be written to disk (last error: <RACY>)\\n\"\n\
             get <BASE>/cache {} --raw => Some(1) \"\" {}\n\
             (readable) get live-json --raw => Some(0) {:?} \"\"\n",
            not_cached(trees::LIVE),
            trees::LEGACY_EXPIRED_KEY,
            not_cached(trees::LEGACY_EXPIRED_KEY),
            String::from_utf8_lossy(trees::LIVE_VALUE),
        )
    );
}
