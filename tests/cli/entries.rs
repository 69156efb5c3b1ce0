//! `set`, `get`, `rm` and `purge`, one process per command: what one process stores, another
//! reads back byte for byte; the exit status says hit (0) or miss (1); usage and I/O errors
//! exit 2 and name the path and the cause.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use answercache::warm::format::EntryMeta;
use serde_json::json;

use crate::support::{
    answercache, answercache_with_stdin, arg, cells, count, doc, entry_path, entry_rel, file_len,
    header, place_entry, set, JsonExt,
};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn set_then_get_in_two_processes_returns_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Every byte value, a newline and an invalid UTF-8 sequence: the value is raw bytes.
    let mut value: Vec<u8> = (0..=255u8).collect();
    value.extend_from_slice(b"\nanswer: 42\n\xff\xfe");
    let stored = answercache_with_stdin(&["set", arg(dir.path()), "prompt/1"], &value);
    stored.expect_code(0);
    assert!(
        stored.out().contains(&entry_rel(dir.path(), "prompt/1")),
        "{}",
        stored.out()
    );
    assert!(entry_path(dir.path(), "prompt/1").is_file());

    let got = answercache(&["get", arg(dir.path()), "prompt/1"]);
    got.expect_code(0);
    assert_eq!(got.stdout, value);
    assert_eq!(got.stderr, "");

    // `--raw` prints the same bytes.
    let raw = answercache(&["get", arg(dir.path()), "prompt/1", "--raw"]);
    raw.expect_code(0);
    assert_eq!(raw.stdout, value);

    // The same through --json: not UTF-8, so the value comes as hex.
    let got = answercache(&["get", arg(dir.path()), "prompt/1", "--json"]);
    got.expect_code(0);
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        doc(&got),
        json!({
            "key": "prompt/1",
            "found": true,
            "encoding": "raw",
            "value_format": "hex",
            "value_hex": hex,
            "value_bytes": 270,
            "file": entry_rel(dir.path(), "prompt/1"),
            "file_bytes": file_len(dir.path(), "prompt/1"),
            "created_ms": header(dir.path(), "prompt/1").meta.created_ms,
            "expires_ms": 0,
            "notes": [],
        })
    );
}

#[test]
fn raw_text_is_printed_as_it_is_and_raw_json_as_json() {
    let dir = tempfile::tempdir().unwrap();
    set(dir.path(), "text", b"The capital of France is Paris.\n");
    // Members out of alphabetical order, a number written two ways, an integer beyond 64 bits.
    let tool = br#"{"temp_c": 18, "sky": "light rain", "readings": [2.50, 1e2, 340282366920938463463374607431768211455]}"#;
    set(dir.path(), "tool", tool);

    let text = answercache(&["get", arg(dir.path()), "text"]);
    text.expect_code(0);
    assert_eq!(text.stdout, b"The capital of France is Paris.\n");
    let doc_text = doc(&answercache(&["--json", "get", arg(dir.path()), "text"]));
    assert_eq!(doc_text.at("value_format"), "text");
    assert_eq!(doc_text.at("value"), "The capital of France is Paris.\n");

    // JSON: its text as stored (members in their order, every number as written), a newline.
    let got = answercache(&["get", arg(dir.path()), "tool"]);
    got.expect_code(0);
    assert_eq!(got.stdout, [&tool[..], b"\n"].concat());
    assert_eq!(got.stderr, "");
    // `--raw`: the stored bytes.
    let raw = answercache(&["get", arg(dir.path()), "tool", "--raw"]);
    raw.expect_code(0);
    assert_eq!(raw.stdout, tool);

    let got = answercache(&["--json", "get", arg(dir.path()), "tool"]);
    got.expect_code(0);
    // The embedded value is the stored text, verbatim: order and 128-bit integer kept.
    assert!(
        got.out().contains(&format!(
            "\"value\": {},\n",
            std::str::from_utf8(tool).unwrap()
        )),
        "{}",
        got.out()
    );
    let d = doc(&got);
    assert_eq!(d.at("encoding"), "raw");
    assert_eq!(d.at("value_format"), "json");
    assert_eq!(d.at("value_bytes").u64(), tool.len() as u64);
    assert_eq!(d.at("value").at("temp_c").u64(), 18);
    assert_eq!(d.at("value").at("sky"), "light rain");
    assert_eq!(d.at("value").at("readings").items()[0], 2.5);
    assert_eq!(d.at("value").at("readings").items()[1], 100.0);

    // Under --raw, --json gives the stored text.
    let d = doc(&answercache(&[
        "--json",
        "get",
        arg(dir.path()),
        "tool",
        "--raw",
    ]));
    assert_eq!(d.at("value_format"), "text");
    assert_eq!(d.at("value").str().as_bytes(), tool);
}

#[test]
fn a_second_set_replaces_the_value() {
    let dir = tempfile::tempdir().unwrap();
    set(dir.path(), "k", b"first");
    set(dir.path(), "k", b"second");
    let got = answercache(&["get", arg(dir.path()), "k"]);
    got.expect_code(0);
    assert_eq!(got.stdout, b"second");
}

#[test]
fn a_miss_exits_1_with_nothing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    set(dir.path(), "present", b"v");
    let got = answercache(&["get", arg(dir.path()), "absent"]);
    got.expect_code(1);
    assert!(got.stdout.is_empty());
    assert!(
        got.stderr.contains("\"absent\": not cached"),
        "{}",
        got.stderr
    );

    let got = answercache(&["--json", "get", arg(dir.path()), "absent"]);
    got.expect_code(1);
    assert_eq!(
        doc(&got),
        json!({
            "key": "absent",
            "found": false,
            "file": entry_rel(dir.path(), "absent"),
            "file_bytes": null,
            "created_ms": null,
            "expires_ms": null,
            "notes": [],
        })
    );
}

#[test]
fn a_missing_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cache");
    for cmd in ["get", "rm"] {
        let run = answercache(&[cmd, arg(&missing), "k"]);
        run.expect_code(2);
        assert_eq!(
            run.stderr.trim_end(),
            format!("error: {}: no such cache directory", missing.display())
        );
    }
    for args in [
        vec!["stats", arg(&missing)],
        vec!["verify", arg(&missing)],
        vec!["purge", arg(&missing), "--all"],
        vec!["quarantine", "list", arg(&missing)],
    ] {
        let run = answercache(&args);
        run.expect_code(2);
        assert!(
            run.stderr.contains(&missing.display().to_string()),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Nothing was created by the failed commands.
    assert!(!missing.exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    answercache(&["purge", arg(dir.path())]).expect_code(2);
    answercache(&["purge", arg(dir.path()), "--all", "--expired"]).expect_code(2);
    let bad_ttl = answercache(&["set", arg(dir.path()), "k", "--ttl", "5 minutes"]);
    bad_ttl.expect_code(2);
    assert!(
        bad_ttl.stderr.contains("invalid duration"),
        "{}",
        bad_ttl.stderr
    );
    answercache(&["set", arg(dir.path()), "k", "--ttl", "0s"]).expect_code(2);
    answercache(&["no-such-command"]).expect_code(2);
    let bad_name = answercache(&["quarantine", "show", arg(dir.path()), "../../etc/passwd"]);
    bad_name.expect_code(2);
    assert!(bad_name.stderr.contains("not a quarantined file name"));
}

#[test]
fn ttl_sets_the_expiry_and_an_expired_entry_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let before = now_ms();
    let stored = answercache_with_stdin(
        &["set", arg(dir.path()), "short", "--ttl", "1h30m", "--json"],
        b"v",
    );
    stored.expect_code(0);
    let stored = doc(&stored);
    let expires = stored.at("expires_ms").u64();
    let ttl = Duration::from_secs(5400).as_millis() as u64;
    assert!(
        (before + ttl..=now_ms() + ttl).contains(&expires),
        "expires_ms {expires} not 1h30m after {before}"
    );
    assert_eq!(
        stored,
        json!({
            "key": "short",
            "encoding": "raw",
            "value_bytes": 1,
            "file": entry_rel(dir.path(), "short"),
            "file_bytes": file_len(dir.path(), "short"),
            "expires_ms": header(dir.path(), "short").meta.expires_ms,
        })
    );

    // An entry whose expiry has passed (written directly: no test sleeps).
    let expired = place_entry(
        dir.path(),
        "old",
        b"stale answer",
        EntryMeta {
            created_ms: 1_000,
            expires_ms: 2_000,
            cost: 0,
            encoding: Default::default(),
        },
    );
    let got = answercache(&["get", arg(dir.path()), "old"]);
    got.expect_code(1);
    assert!(got.stdout.is_empty());
    assert!(got.stderr.contains("had expired"), "{}", got.stderr);
    assert!(!expired.exists(), "the expired file is deleted on read");
}

#[test]
fn rm_removes_the_file_and_exits_1_when_nothing_was_there() {
    let dir = tempfile::tempdir().unwrap();
    set(dir.path(), "k", b"value");
    set(dir.path(), "k2", b"value 2");
    let path = entry_path(dir.path(), "k");
    assert!(path.is_file());
    let k_len = file_len(dir.path(), "k");
    assert!(k_len < 1024, "{k_len} is printed in plain bytes");
    let removed = answercache(&["rm", arg(dir.path()), "k"]);
    removed.expect_code(0);
    assert_eq!(
        removed.out(),
        format!(
            "removed \"k\": {} ({} B)\n",
            entry_rel(dir.path(), "k"),
            k_len
        )
    );
    assert!(!path.exists());
    answercache(&["get", arg(dir.path()), "k"]).expect_code(1);
    let again = answercache(&["rm", arg(dir.path()), "k", "--json"]);
    again.expect_code(1);
    assert_eq!(
        doc(&again),
        json!({
            "key": "k",
            "removed": false,
            "encoding": null,
            "file": entry_rel(dir.path(), "k"),
            "file_bytes": null,
        })
    );
    let len = file_len(dir.path(), "k2");
    let removed = answercache(&["rm", arg(dir.path()), "k2", "--json"]);
    removed.expect_code(0);
    assert_eq!(
        doc(&removed),
        json!({
            "key": "k2",
            "removed": true,
            "encoding": "raw",
            "file": entry_rel(dir.path(), "k2"),
            "file_bytes": len,
        })
    );
}

#[test]
fn purge_expired_keeps_live_entries_and_purge_all_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    set(dir.path(), "live-1", b"one");
    set(dir.path(), "live-2", b"two");
    let old = EntryMeta {
        created_ms: 1_000,
        expires_ms: 2_000,
        cost: 0,
        encoding: Default::default(),
    };
    let a = place_entry(dir.path(), "expired-a", b"a", old);
    let b = place_entry(dir.path(), "expired-b", b"bb", old);
    let expired_bytes = a.metadata().unwrap().len() + b.metadata().unwrap().len();
    // A foreign file is never touched.
    let foreign = dir.path().join("v2").join("README");
    std::fs::write(&foreign, b"not an entry").unwrap();

    let purged = answercache(&["purge", arg(dir.path()), "--expired"]);
    purged.expect_code(0);
    let text = purged.out();
    let removed = cells(&text, "removed");
    assert_eq!(count(&removed[1]), 2);
    assert_eq!(crate::support::exact_bytes(&removed[2]), expired_bytes);
    assert_eq!(count(&cells(&text, "kept")[1]), 2);
    assert_eq!(count(&cells(&text, "foreign (left alone)")[1]), 1);
    assert!(!a.exists() && !b.exists());
    assert!(entry_path(dir.path(), "live-1").is_file());

    let live_bytes = file_len(dir.path(), "live-1") + file_len(dir.path(), "live-2");
    // The files in the walk's order: by hash.
    let mut live = [
        (
            entry_rel(dir.path(), "live-1"),
            file_len(dir.path(), "live-1"),
        ),
        (
            entry_rel(dir.path(), "live-2"),
            file_len(dir.path(), "live-2"),
        ),
    ];
    live.sort();
    // The fan-out directories left: the two live entries' (`--expired` removed the ones it
    // emptied).
    let fan_outs = |root: &std::path::Path| {
        std::fs::read_dir(root.join("v2"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count() as u64
    };
    let live_dirs = fan_outs(dir.path());
    assert_eq!(
        live_dirs,
        if entry_path(dir.path(), "live-1").parent() == entry_path(dir.path(), "live-2").parent() {
            1
        } else {
            2
        }
    );
    let purged = answercache(&["purge", arg(dir.path()), "--all", "--json"]);
    purged.expect_code(0);
    assert_eq!(
        doc(&purged),
        json!({
            "dir": arg(dir.path()),
            "purge": "all",
            "dry_run": false,
            "files": live.iter().map(|(f, b)| json!({"file": f, "bytes": b})).collect::<Vec<_>>(),
            "removed": 2,
            "removed_bytes": live_bytes,
            "kept": 0,
            "kept_bytes": 0,
            "skipped": 0,
            "vanished": 0,
            "foreign_files": 1,
            "fan_out_dirs_removed": live_dirs,
            "errors": [],
        })
    );
    // Nothing of the layout is left behind but the foreign file.
    assert_eq!(fan_outs(dir.path()), 0);
    answercache(&["get", arg(dir.path()), "live-1"]).expect_code(1);
    assert!(foreign.is_file());
}

#[test]
fn purge_all_leaves_suspect_files_for_verify() {
    // CLI.md: "suspect ones are left for `verify --repair`, which quarantines them with a
    // reason instead of destroying the evidence": under `--all` as under `--expired`.
    let dir = tempfile::tempdir().unwrap();
    set(dir.path(), "good", b"value");
    set(dir.path(), "cut", b"value");
    let cut = entry_path(dir.path(), "cut");
    std::fs::write(&cut, b"TIERCACH").unwrap();
    let purged = answercache(&["purge", arg(dir.path()), "--all", "--json"]);
    purged.expect_code(0);
    let d = doc(&purged);
    assert_eq!(
        (d.at("removed").u64(), d.at("skipped").u64()),
        (1, 1),
        "{d}"
    );
    assert_eq!(std::fs::read(&cut).unwrap(), b"TIERCACH");
    assert!(!entry_path(dir.path(), "good").exists());
    let verified = doc(&answercache(&["--json", "verify", arg(dir.path())]));
    assert_eq!(verified.at("corrupted_by_reason"), &json!({"truncated": 1}));
}

/// A directory of the previous layout (`v1/ab/cd/<hex>`, the checked-in fixture of
/// tests/core): `stats` says its entries are not counted and who moves them; the first
/// command that opens a cache (`get`) moves them, and `stats` then counts them in `v2/`.
#[test]
fn stats_names_a_previous_layout_and_a_cache_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/core/fixtures/v1-layout");
    answercache::testing::copy_dir(&fixture, dir.path()).unwrap();
    let before = answercache(&["--json", "stats", arg(dir.path())]);
    before.expect_code(0);
    let d = doc(&before);
    assert_eq!(
        (d.at("previous_layout"), d.at("entries").u64()),
        (&json!(true), 0)
    );
    let text = answercache(&["stats", arg(dir.path())]);
    assert!(
        text.out().contains(
            "note: v1/ holds entries of the previous layout, not counted here: the first cache \
             that opens this directory moves them into v2/"
        ),
        "{}",
        text.out()
    );
    let got = answercache(&["get", arg(dir.path()), "chat:capital of france"]);
    got.expect_code(0);
    assert_eq!(got.out(), "Paris is the capital of France.");
    let after = doc(&answercache(&["--json", "stats", arg(dir.path())]));
    // Four entry files moved (one of them long expired); v1/ is gone.
    assert_eq!(
        (
            after.at("previous_layout"),
            after.at("entries").u64(),
            after.at("expired").u64()
        ),
        (&json!(false), 4, 1)
    );
    assert!(!dir.path().join("v1").exists());
}
