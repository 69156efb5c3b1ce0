//! `answercache demo`'s replicas phase (issue 15) against a real server: three replicas share
//! answers through Redis, the demo's throwaway server is killed -9 and restarted mid-run, and
//! the tables and the `--json` document agree on what the scenario implies:
//! - every request of both runs is answered, 0 errors and 0 wrong answers (every answer is
//!   checked against the model's);
//! - every answer has one source: hot + warm + queue + shared + joined + loaded = requests, and
//!   the model was called once per loaded answer (the library's `loader_calls` agree);
//! - sharing off has no shared hit; sharing on has some, and fewer model calls;
//! - the kill happened at 40% of the requests and the restart at 50%; every replica that
//!   opened its shared breaker closed it again (each `closed -> open` ends in a
//!   `half-open -> closed`, each `open -> half-open` in one of `-> open` or `-> closed`), and
//!   all three are closed at the end;
//! - with `--redis URL` the server is used and never killed;
//! - without a server on `PATH` the phase is skipped with one line saying why, and the demo
//!   still succeeds (the README's main command needs no Redis).
//!
//! A machine without `redis-server` (or `valkey-server`) on `PATH` prints `SKIPPED: no
//! redis-server (apt-get install redis-server)` and passes the tests that need one; under
//! `CI=true` that is a failure (`.ci/run` installs one), as in tests/shared.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{answercache, cells, count, doc, fields, JsonExt, Run};

/// The fast demo of tests/cli/demo.rs: 240 requests over 120 prompts.
const FAST: [&str; 10] = [
    "demo",
    "--requests",
    "240",
    "--time-scale",
    "200",
    "--workers",
    "4",
    "--prompts",
    "120",
    "--json",
];
/// The replicas tests' demo: more requests than [`FAST`], so that the prompts repeat across
/// replicas enough for sharing to save a margin of calls (20-25 here, against 5-8 with
/// `FAST`: concurrent first asks of a prompt and the server's restart, empty, both cost
/// calls), at a faster simulated model.
const SHARING: [&str; 10] = [
    "demo",
    "--requests",
    "600",
    "--time-scale",
    "400",
    "--workers",
    "4",
    "--prompts",
    "120",
    "--json",
];
/// `--requests` of [`SHARING`].
const REQUESTS: u64 = 600;

/// What a missing server prints (and passes with, outside CI).
const SKIP_MESSAGE: &str = "SKIPPED: no redis-server (apt-get install redis-server)";

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`), as tests/shared
/// decides it.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The server binary the demo would find on `PATH` (the same names, in the same order).
fn server_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    ["redis-server", "valkey-server"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// The server binary, or `None` after printing [`SKIP_MESSAGE`]; under CI a panic.
fn server_or_skip() -> Option<PathBuf> {
    let found = server_on_path();
    if found.is_none() {
        assert!(!in_ci(), "CI=true and {SKIP_MESSAGE}");
        println!("{SKIP_MESSAGE}");
    }
    found
}

/// The `replicas` record, after checking the exit status.
#[track_caller]
fn replicas(run: &Run) -> Value {
    run.expect_code(0);
    doc(run).at("replicas").clone()
}

/// The checks every run of the phase passes, with or without a kill: returns the two runs.
#[track_caller]
fn common(r: &Value, text: &str) -> (Value, Value) {
    assert_eq!(r.at("status").str(), "ran", "{r}");
    assert_eq!(r.at("replicas").u64(), 3);
    assert_eq!(r.at("requests").u64(), REQUESTS);
    let runs = r.at("runs").items();
    assert_eq!(runs.len(), 2);
    let (off, on) = (runs[0].clone(), runs[1].clone());
    assert_eq!(off.at("name").str(), "sharing off");
    assert_eq!(on.at("name").str(), "sharing on");
    for run in [&off, &on] {
        assert_eq!(run.at("requests").u64(), REQUESTS, "{run}");
        assert_eq!(run.at("errors").u64(), 0, "{run}");
        assert_eq!(run.at("wrong_answers").u64(), 0, "{run}");
        assert_eq!(run.at("first_error"), &Value::Null, "{run}");
        let sources: u64 = [
            "hot_hits",
            "warm_hits",
            "queue_hits",
            "shared_hits",
            "joined",
            "loaded",
        ]
        .iter()
        .map(|f| run.at(f).u64())
        .sum();
        assert_eq!(sources, REQUESTS, "one source per answer: {run}");
        assert_eq!(run.at("model_calls"), run.at("loaded"), "{run}");
        assert_eq!(run.at("model_calls"), run.at("loader_calls"), "{run}");
        assert_eq!(run.at("shared_hits"), run.at("stats_shared_hits"), "{run}");
    }
    assert_eq!(off.at("shared_hits").u64(), 0);
    let (without, with) = (off.at("model_calls").u64(), on.at("model_calls").u64());
    assert!(with < without, "sharing saved nothing: {r}");
    assert!(on.at("shared_hits").u64() > 0, "{r}");
    assert_eq!(r.at("model_calls_without_sharing").u64(), without);
    assert_eq!(r.at("model_calls_with_sharing").u64(), with);
    assert_eq!(r.at("calls_saved").u64(), without - with);
    assert_eq!(r.at("shared_hits"), on.at("shared_hits"));
    assert_eq!(r.at("errors").u64(), 0);
    assert_eq!(r.at("wrong_answers").u64(), 0);
    assert_eq!(r.at("shared_closed_at_end").u64(), 3);
    // The tables say the same.
    let row = |label: &str| count(&cells(text, label)[1]);
    assert_eq!(row("model calls without sharing"), without);
    assert_eq!(row("model calls with sharing"), with);
    assert_eq!(row("model calls saved by sharing"), without - with);
    assert_eq!(row("shared hits"), on.at("shared_hits").u64());
    assert_eq!(row("errors to callers"), 0);
    assert_eq!(row("wrong answers"), 0);
    assert_eq!(
        row("shared breaker state changes"),
        r.at("breaker_changes").u64()
    );
    assert_eq!(
        cells(text, "shared tier at the end")[1],
        "closed on 3 of 3 replicas"
    );
    for (label, run) in [("sharing off", &off), ("sharing on", &on)] {
        let c = cells(text, label);
        assert_eq!(count(&c[1]), REQUESTS, "{label}");
        assert_eq!(count(&c[2]), run.at("model_calls").u64(), "{label}");
        assert_eq!(count(&c[6]), run.at("shared_hits").u64(), "{label}");
        assert_eq!(count(&c[8]), 0, "{label}: errors");
        assert_eq!(count(&c[9]), 0, "{label}: wrong answers");
    }
    (off, on)
}

/// A transition count of `breaker_changes_by_kind` (0 when absent).
fn changes(r: &Value, kind: &str) -> u64 {
    r.at("breaker_changes_by_kind")
        .pairs()
        .get(kind)
        .map_or(0, JsonExt::u64)
}

/// Checks that every shared breaker that opened closed again and that every half-open ended
/// one way or the other (all were closed before the run and are at the end); returns how many
/// times one opened from closed.
#[track_caller]
fn breakers_came_back(r: &Value) -> u64 {
    let opened = changes(r, "closed -> open");
    let reclosed = changes(r, "half-open -> closed");
    assert_eq!(opened, reclosed, "{r}");
    assert_eq!(
        changes(r, "open -> half-open"),
        changes(r, "half-open -> open") + reclosed,
        "{r}"
    );
    let by_kind: u64 = r
        .at("breaker_changes_by_kind")
        .pairs()
        .values()
        .map(JsonExt::u64)
        .sum();
    assert_eq!(by_kind, r.at("breaker_changes").u64());
    opened
}

#[test]
fn replicas_share_answers_and_survive_a_server_kill() {
    if server_or_skip().is_none() {
        return;
    }
    let run = answercache(&SHARING);
    let r = replicas(&run);
    let text = &run.stderr;
    common(&r, text);
    assert!(r.at("throwaway").as_bool().unwrap(), "{r}");
    // The kill happened where the scenario puts it.
    assert!(r.at("server_killed").as_bool().unwrap(), "{r}");
    assert_eq!(r.at("kill_skipped"), &Value::Null);
    let kill = r.at("kill");
    assert_eq!(kill.at("at_request").u64(), REQUESTS * 2 / 5);
    assert_eq!(kill.at("restarted_at_request").u64(), REQUESTS / 2);
    assert!(kill.at("breakers_open_at_restart").u64() <= 3);
    assert!(
        text.contains("REDIS KILLED: kill -9 of the server"),
        "{text}"
    );
    assert!(
        text.contains("REDIS RESTARTED on the same socket"),
        "{text}"
    );
    assert!(
        cells(text, "server kill -9")[1].starts_with(&format!(
            "at request {}, restarted empty on the same socket at request {}",
            REQUESTS * 2 / 5,
            REQUESTS / 2
        )),
        "{text}"
    );
    let opened = breakers_came_back(&r);
    assert!(opened >= 1, "the kill opened no breaker: {r}");
    // Breakers that were open when the server came back are among those that opened.
    assert!(kill.at("breakers_open_at_restart").u64() <= opened, "{r}");
    assert_eq!(
        fields(&r),
        [
            "breaker_changes",
            "breaker_changes_by_kind",
            "calls_saved",
            "errors",
            "kill",
            "kill_skipped",
            "model_calls_with_sharing",
            "model_calls_without_sharing",
            "prefix",
            "replicas",
            "requests",
            "runs",
            "server",
            "server_killed",
            "shared_closed_at_end",
            "shared_hits",
            "status",
            "throwaway",
            "wall_ms",
            "wrong_answers",
        ]
    );
}

/// A server this test starts and stops (the demo's `--redis URL`).
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: &Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("r.sock");
        let child = Command::new(bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(start.elapsed() < Duration::from_secs(5), "no server socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child, dir }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.path().join("r.sock").display())
    }

    /// Whether the process still runs.
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn replicas_on_a_given_server_share_without_killing_it() {
    let Some(bin) = server_or_skip() else {
        return;
    };
    let mut server = Server::start(&bin);
    let url = server.url();
    let mut args = SHARING.to_vec();
    args.extend(["--redis", url.as_str()]);
    let run = answercache(&args);
    let r = replicas(&run);
    let text = &run.stderr;
    common(&r, text);
    assert!(!r.at("throwaway").as_bool().unwrap());
    assert!(!r.at("server_killed").as_bool().unwrap());
    assert_eq!(r.at("kill"), &Value::Null);
    assert_eq!(
        r.at("kill_skipped").str(),
        "the server of --redis is not this demo's to kill"
    );
    assert_eq!(
        cells(text, "server kill -9")[1],
        "skipped: the server of --redis is not this demo's to kill"
    );
    // No kill: whatever opened (a call slower than the 200 ms timeout on a loaded machine)
    // closed again.
    breakers_came_back(&r);
    assert!(!text.contains("REDIS KILLED"), "{text}");
    assert!(
        server.running(),
        "the demo must not stop a server it did not start"
    );
    assert_eq!(r.at("server").str(), format!("{url} (from --redis)"));
}

#[test]
fn without_a_server_the_phase_is_skipped_and_the_demo_succeeds() {
    // An empty PATH: no redis-server, no valkey-server.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_answercache"))
        .args(FAST)
        .env("PATH", empty.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let r = replicas(&run);
    let reason = "no redis-server or valkey-server on PATH (apt-get install redis-server, or pass --redis URL)";
    assert_eq!(
        r,
        serde_json::json!({"status": "skipped", "reason": reason})
    );
    let text = &run.stderr;
    assert!(text.contains(&format!("  skipped: {reason}\n")), "{text}");
    assert_eq!(
        cells(text, "replicas phase")[1],
        format!("skipped: {reason}")
    );
    // The main phases ran as ever.
    assert_eq!(
        doc(&run).at("resilience").at("requests_answered").u64(),
        248
    );
}
