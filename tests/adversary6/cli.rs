//! The operator commands (feature `cli`), run as the built binary: `purge --all` against a
//! directory still holding layout-1 entries, `--dry-run` against the real run on a quiet
//! hostile tree, `--json` errors on failure paths (one document on stdout, nothing on
//! stderr, the documented kind and exit status), the progress bar under a pseudo-terminal
//! (`script` from util-linux; required under `CI=true`), `stats` on a directory of layout 1.

use std::path::Path;
use std::process::{Command, Stdio};

use answercache::testing::TestDir;
use serde_json::Value;

use crate::support::*;

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stdout as exactly one JSON document.
    fn doc(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.out()))
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_answercache")
}

fn run_with_stdin(args: &[&str], stdin: Stdio) -> Run {
    let out = Command::new(bin())
        .args(args)
        .stdin(stdin)
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Run {
    run_with_stdin(args, Stdio::null())
}

fn run_input(args: &[&str], input: &[u8]) -> Run {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut i = child.stdin.take().unwrap();
    let _ = i.write_all(input);
    drop(i);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An operator upgrades and wipes the cache with `purge --all` before any cache of the new
/// release has opened the directory: its entries are still in `v1/`. `purge --all` deletes
/// "every entry"; the next `get` (which opens a cache, which moves `v1/` in) must miss. It
/// serves the purged answer.
#[test]
fn purge_all_purges_entries_still_in_the_previous_layout() {
    let t = tempfile::tempdir().unwrap();
    plant_v1(t.path(), "chat:q", "purged answer");
    let dir = s(t.path());
    let stats = run(&["--json", "stats", dir]);
    assert_eq!(stats.doc()["previous_layout"], Value::Bool(true));
    let purge = run(&["--json", "purge", dir, "--all"]);
    assert_eq!(purge.code, Some(0), "{}", purge.stderr);
    let get = run(&["get", dir, "chat:q"]);
    assert_eq!(
        (get.code, get.out()),
        (Some(1), String::new()),
        "`get` after `purge --all`"
    );
}

/// `purge --expired` on the same kind of directory: an expired layout-1 entry is not
/// reported (nor deleted), but it is not served either (the cache deletes it on read):
/// the report undercounts, nothing wrong is served.
#[test]
fn stats_and_get_on_a_directory_of_the_previous_layout() {
    let t = tempfile::tempdir().unwrap();
    plant_v1(t.path(), "chat:q", "an answer");
    let dir = s(t.path());
    let before = run(&["--json", "stats", dir]).doc();
    assert_eq!(
        (before["previous_layout"].clone(), before["entries"].clone()),
        (Value::Bool(true), Value::from(0))
    );
    let get = run(&["get", dir, "chat:q"]);
    assert_eq!((get.code, get.out()), (Some(0), "an answer".to_owned()));
    let after = run(&["--json", "stats", dir]).doc();
    assert_eq!(
        (after["previous_layout"].clone(), after["entries"].clone()),
        (Value::Bool(false), Value::from(1))
    );
}

/// A quiet hostile tree: live, expired and newer-format entries, a header that does not
/// parse, a symlink, a FIFO and a directory at entry paths, foreign files at every level,
/// an empty fan-out directory and one holding only a foreign file. For `purge --expired` and
/// `purge --all`, the dry run's document equals the real run's (but `dry_run`), the real run
/// removes exactly the files listed, and `--all` leaves no fan-out directory that held only
/// entries.
#[test]
fn dry_runs_report_exactly_what_the_real_runs_remove() {
    for what in ["--expired", "--all"] {
        let t = hostile_tree();
        let dir = s(t.path());
        let before = tree(t.path());
        let dry = run(&["--json", "purge", dir, what, "--dry-run"]);
        assert_eq!(dry.code, Some(0), "{}", dry.stderr);
        assert_eq!(tree(t.path()), before, "a dry run changed the tree");
        let real = run(&["--json", "purge", dir, what]);
        assert_eq!(real.code, Some(0), "{}", real.stderr);
        let (mut d, r) = (dry.doc(), real.doc());
        assert_eq!(d["dry_run"], Value::Bool(true));
        d["dry_run"] = Value::Bool(false);
        assert_eq!(d, r, "{what}: dry run vs real run");
        // Exactly the listed files are gone.
        let listed: Vec<String> = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["file"].as_str().unwrap().to_owned())
            .collect();
        let after = tree(t.path());
        let gone: Vec<String> = before
            .iter()
            .filter(|(p, k, _)| *k != 'd' && !after.iter().any(|(q, _, _)| q == p))
            .map(|(p, _, _)| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(gone, listed, "{what}");
        let dirs_gone = before
            .iter()
            .filter(|(p, k, _)| *k == 'd' && !after.iter().any(|(q, _, _)| q == p))
            .count() as u64;
        assert_eq!(
            dirs_gone,
            r["fan_out_dirs_removed"].as_u64().unwrap(),
            "{what}"
        );
        if what == "--all" {
            let left: Vec<String> = fan_out_dirs(t.path())
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            // Left: the fan-out directories holding something that is not an entry.
            assert_eq!(left.len() as u64, 5, "{left:?}");
        }
    }
}

/// The hostile tree of [`dry_runs_report_exactly_what_the_real_runs_remove`].
fn hostile_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let now = now_ms();
    for i in 0..20u32 {
        let k = format!("live:{i}");
        plant(
            &v2_path(root, k.as_bytes()),
            &entry_file(k.as_bytes(), b"v", now - 1000, 0),
        );
        let k = format!("expired:{i}");
        plant(
            &v2_path(root, k.as_bytes()),
            &entry_file(k.as_bytes(), b"v", now - 10_000, now - 5_000),
        );
    }
    let mut newer = entry_file(b"newer", b"n", now, 0);
    newer[8] = 7;
    plant(&v2_path(root, b"newer"), &newer);
    plant(&v2_path(root, b"bad-header"), b"TIERCACHgarbage");
    let link = v2_path(root, b"symlink");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    let fifo = v2_path(root, b"fifo");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(v2_path(root, b"a-directory")).unwrap();
    std::fs::write(root.join("v2/README"), b"foreign").unwrap();
    std::fs::create_dir_all(root.join("v2/00")).unwrap();
    std::fs::create_dir_all(root.join("v2/ff")).unwrap();
    std::fs::write(root.join("v2/ff/notes.txt"), b"foreign").unwrap();
    // What a cache leaves: its temp and quarantine directories.
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("quarantine")).unwrap();
    t
}

/// `purge --expired` on a directory without `tmp/` (copied by a tool that skips empty
/// directories, or an operator removed it): it deletes nothing and reports every expired
/// entry as `vanished` ("removed by another process first"), while its dry run says it
/// would remove them. The file is taken aside into `tmp/` before it is deleted; the rename
/// fails with ENOENT, which is read as "nothing at the path".
#[test]
fn purge_expired_without_a_tmp_directory() {
    let t = hostile_tree();
    std::fs::remove_dir(t.path().join("tmp")).unwrap();
    let dir = s(t.path());
    let dry = run(&["--json", "purge", dir, "--expired", "--dry-run"]).doc();
    let real = run(&["--json", "purge", dir, "--expired"]);
    let r = real.doc();
    let expired_left = (0..20u32)
        .filter(|i| v2_path(t.path(), format!("expired:{i}").as_bytes()).exists())
        .count();
    assert_eq!(
        (
            r["removed"].clone(),
            r["vanished"].clone(),
            expired_left,
            real.code
        ),
        (dry["removed"].clone(), Value::from(0), 0, Some(0)),
        "real run: {}",
        real.out()
    );
}

fn json_error(r: &Run) -> (Option<i32>, String, bool) {
    let doc = r.doc();
    let kind = doc["error"]["kind"].as_str().unwrap_or("<none>").to_owned();
    (r.code, kind, r.stderr.is_empty())
}

/// Failure paths under `--json`: one error document on stdout, nothing on stderr, the
/// documented kind and exit status.
#[test]
fn every_failure_under_json_is_one_error_document() {
    let t = tempfile::tempdir().unwrap();
    let dir = s(t.path());
    std::fs::write(t.path().join("file"), b"x").unwrap();
    let file = t.path().join("file");
    let file = s(&file);
    let missing = t.path().join("missing");
    let missing = s(&missing);
    let long_key = "k".repeat(17 * 1024);
    type Case<'a> = (&'a str, Run, (Option<i32>, &'a str));
    let cases: Vec<Case> = vec![
        (
            "stats of a missing dir",
            run(&["--json", "stats", missing]),
            (Some(2), "no-such-directory"),
        ),
        (
            "ls of a file",
            run(&["--json", "ls", file]),
            (Some(2), "not-a-directory"),
        ),
        (
            "get in a file",
            run(&["--json", "get", file, "k"]),
            (Some(2), "not-a-directory"),
        ),
        (
            "rm in a missing dir",
            run(&["--json", "rm", missing, "k"]),
            (Some(2), "no-such-directory"),
        ),
        (
            "get of a key too long",
            run(&["--json", "get", dir, &long_key]),
            (Some(2), "bad-key"),
        ),
        (
            "set of a value too large",
            run_input(&["--json", "set", dir, "k"], &vec![0u8; (16 << 20) + 1]),
            (Some(2), "bad-value"),
        ),
        (
            "set reading a directory as stdin",
            run_with_stdin(
                &["--json", "set", dir, "k"],
                Stdio::from(std::fs::File::open(t.path()).unwrap()),
            ),
            (Some(2), "io"),
        ),
        (
            "bad ttl",
            run_input(&["--json", "set", dir, "k", "--ttl", "soon"], b"v"),
            (Some(2), "usage"),
        ),
        (
            "unknown command",
            run(&["--json", "frobnicate"]),
            (Some(2), "usage"),
        ),
        (
            "json flag after the command",
            run(&["purge", dir, "--json"]),
            (Some(2), "usage"),
        ),
        (
            "bad quarantine name",
            run(&["--json", "quarantine", "show", dir, "../../etc/passwd"]),
            (Some(2), "usage"),
        ),
        (
            "no such quarantined file",
            run(&[
                "--json",
                "quarantine",
                "clear",
                dir,
                "1700000000000-checksum-ab",
                "--dry-run",
            ]),
            (Some(1), "not-found"),
        ),
        (
            "quarantine list of a missing dir",
            run(&["--json", "quarantine", "list", missing]),
            (Some(2), "no-such-directory"),
        ),
        (
            "purge dry run of a missing dir",
            run(&["--json", "purge", missing, "--all", "--dry-run"]),
            (Some(2), "no-such-directory"),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, r, (code, kind)) in &cases {
        let got = std::panic::catch_unwind(|| json_error(r));
        match got {
            Ok(g) if g == (*code, kind.to_string(), true) => {}
            Ok(g) => wrong.push(format!(
                "{what}: got {g:?}, want ({code:?}, {kind}, stderr empty); stderr {:?}",
                r.stderr
            )),
            Err(_) => wrong.push(format!(
                "{what}: stdout {:?}, stderr {:?}",
                r.out(),
                r.stderr
            )),
        }
    }
    assert_eq!(wrong, Vec::<String>::new());
}

/// `set` into a DIR that is a regular file (or lies below one): docs/CLI.md's table says
/// `not-a-directory` ("DIR is not a directory"), as `get`, `ls` and the others say. `set`
/// says `io`, with "File exists (os error 17)" for the file itself.
#[test]
fn set_into_a_file_is_not_a_directory() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("file"), b"x").unwrap();
    let file = t.path().join("file");
    let file = s(&file);
    let got = [
        json_error(&run_input(&["--json", "set", file, "k"], b"v")),
        json_error(&run_input(
            &["--json", "set", &format!("{file}/sub"), "k"],
            b"v",
        )),
    ];
    let want = (Some(2), "not-a-directory".to_owned(), true);
    assert_eq!(got, [want.clone(), want]);
}

/// Runs `cmd` under a pseudo-terminal (`script`), returning everything it wrote to the
/// terminal (stdout and stderr together).
fn under_pty(cmd: &str) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "`script` (util-linux) is required under CI=true");
        println!("SKIPPED: `script` (util-linux) is missing");
        return None;
    }
    let out = Command::new("script")
        .args(["-qefc", cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The bar: drawn on a terminal for a scan of more than 1,000 entry files, never under
/// `--json`, never for `ls` writing its rows to the terminal, never into a pipe.
#[test]
fn the_progress_bar_only_on_a_terminal_and_never_in_json() {
    let t = tempfile::tempdir().unwrap();
    for i in 0..1500u32 {
        let k = format!("k{i}");
        plant(
            &v2_path(t.path(), k.as_bytes()),
            &entry_file(k.as_bytes(), b"v", now_ms(), 0),
        );
    }
    let dir = s(t.path());
    let bin = bin();
    // A bar redraws its line: a carriage return not followed by a newline (the terminal
    // turns every newline into CR LF), or an escape sequence.
    let bar = |out: &str| out.replace("\r\n", "\n").contains('\r') || out.contains("\x1b[");
    let Some(text) = under_pty(&format!("{bin} stats {dir}")) else {
        return;
    };
    assert!(bar(&text), "no bar on a terminal: {text:?}");
    for cmd in [
        format!("{bin} --json stats {dir}"),
        format!("{bin} --json verify {dir}"),
        format!("{bin} --json ls {dir}"),
        format!("{bin} --json purge {dir} --expired --dry-run"),
        format!("{bin} ls {dir}"),
        format!("{bin} stats {dir} 2>&1 | cat"),
        format!("{bin} verify {dir} 2>/dev/null"),
    ] {
        let out = under_pty(&cmd).unwrap();
        assert!(!bar(&out), "{cmd}: {:?}", &out[..out.len().min(400)]);
    }
    // `--json` output under a terminal is still exactly one document.
    let out = under_pty(&format!("{bin} --json stats {dir}")).unwrap();
    let v: Value = serde_json::from_str(&out.replace("\r\n", "\n")).unwrap();
    assert_eq!(v["entries"], Value::from(1500));
}

/// A cache running in this process while `purge --expired` (real, not dry) runs over the
/// directory: entries it rewrote as live after they expired are never deleted, and the
/// cache serves them after the purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_expired_never_deletes_a_newer_acknowledged_entry() {
    let d = TestDir::new();
    let cache = d
        .open(
            d.builder()
                .write_policy(answercache::WritePolicy::WriteThrough)
                .durability(answercache::Durability::NoSync),
        )
        .await;
    let root = d.root().to_owned();
    let now = now_ms();
    for i in 0..400u32 {
        let k = format!("k{i}");
        plant(
            &v2_path(&root, k.as_bytes()),
            &entry_file(k.as_bytes(), b"old", now - 10_000, now - 5_000),
        );
    }
    let purge = {
        let dir = root.clone();
        std::thread::spawn(move || run(&["purge", s(&dir), "--expired"]))
    };
    for i in (0..400u32).rev() {
        cache
            .set_bytes(format!("k{i}"), b"fresh".to_vec())
            .await
            .unwrap();
    }
    let purge = purge.join().unwrap();
    assert_eq!(purge.code, Some(0), "{}", purge.stderr);
    let reopened = d.open(d.builder()).await;
    let mut missing = Vec::new();
    for i in 0..400u32 {
        if reopened
            .get_bytes(format!("k{i}"))
            .await
            .unwrap()
            .as_deref()
            != Some(&b"fresh"[..])
        {
            missing.push(i);
        }
    }
    assert_eq!(missing, Vec::<u32>::new());
    cache.close().await.unwrap();
    reopened.close().await.unwrap();
}
