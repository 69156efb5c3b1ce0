//! Errors under `--json` are one JSON document on stdout, `{"error": {"kind", "message",
//! "path"}}`, with the exit status text mode has (2 for usage and I/O errors, 1 for a
//! quarantine name that is not there), and nothing on stderr; `message` is exactly the line
//! text mode prints after `error: `. Text mode is unchanged: one line on stderr, nothing on
//! stdout.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{answercache, answercache_with_stdin, arg, doc, Run};

/// Runs `args` with `--json` first and checks that it failed with exit `code` and exactly the
/// error document `{kind, message, path}`, nothing on stderr; then runs it without `--json`
/// and checks that text mode printed `text` on stderr (and nothing on stdout) with the same
/// status.
#[track_caller]
fn fails_as(args: &[&str], code: i32, kind: &str, message: &str, path: Option<&Path>, text: &str) {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    let run = answercache(&with_json);
    run.expect_code(code);
    assert_eq!(run.stderr, "", "{args:?}: nothing on stderr under --json");
    assert_eq!(
        doc(&run),
        json!({"error": {
            "kind": kind,
            "message": message,
            "path": path.map(|p| p.display().to_string()),
        }}),
        "{args:?}"
    );
    let run = answercache(args);
    run.expect_code(code);
    assert_eq!(run.out(), "", "{args:?}: nothing on stdout in text mode");
    assert_eq!(run.stderr, text, "{args:?}");
}

#[test]
fn a_missing_directory_is_a_json_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cache");
    let m = arg(&missing);
    let message = format!("{m}: no such cache directory");
    for args in [
        vec!["stats", m],
        vec!["verify", m],
        vec!["verify", m, "--repair"],
        vec!["ls", m],
        vec!["get", m, "k"],
        vec!["rm", m, "k"],
        vec!["purge", m, "--all"],
        vec!["purge", m, "--expired", "--dry-run"],
        vec!["quarantine", "list", m],
        vec!["quarantine", "clear", m],
        vec!["quarantine", "clear", m, "--dry-run"],
    ] {
        fails_as(
            &args,
            2,
            "no-such-directory",
            &message,
            Some(&missing),
            &format!("error: {message}\n"),
        );
    }
    assert!(!missing.exists(), "no command created it");
}

#[test]
fn a_file_given_as_the_directory_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let message = format!("{}: not a directory", file.display());
    fails_as(
        &["stats", arg(&file)],
        2,
        "not-a-directory",
        &message,
        Some(&file),
        &format!("error: {message}\n"),
    );
}

#[test]
fn a_bad_ttl_is_a_usage_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let message = "invalid value '5 minutes' for '--ttl <DURATION>': invalid duration \"5 minutes\": expected e.g. 90s, 15m, 2h, 7d, 1h30m, 500ms";
    fails_as(
        &["set", arg(&cache), "k", "--ttl", "5 minutes"],
        2,
        "usage",
        message,
        None,
        &format!("error: {message}\n\nFor more information, try '--help'.\n"),
    );
    assert!(!cache.exists(), "set stopped before creating the directory");
}

#[test]
fn usage_errors_are_json_errors_with_clap_s_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = arg(dir.path());
    fails_as(
        &["purge", d],
        2,
        "usage",
        "the following required arguments were not provided:\n  <--expired|--all>",
        None,
        "error: the following required arguments were not provided:\n  <--expired|--all>\n\n\
         Usage: answercache purge <--expired|--all> <DIR>\n\n\
         For more information, try '--help'.\n",
    );
    fails_as(
        &["no-such-command"],
        2,
        "usage",
        "unrecognized subcommand 'no-such-command'",
        None,
        "error: unrecognized subcommand 'no-such-command'\n\n\
         Usage: answercache [OPTIONS] <COMMAND>\n\n\
         For more information, try '--help'.\n",
    );
    // `--json` after the command name counts as well.
    let run = answercache(&["stats", d, "--bogus", "--json"]);
    run.expect_code(2);
    assert_eq!(
        doc(&run),
        json!({"error": {"kind": "usage", "message": "unexpected argument '--bogus' found", "path": null}})
    );
    // A subcommand missing: clap's help in text mode, an error under --json.
    let run = answercache(&["--json", "quarantine"]);
    run.expect_code(2);
    assert_eq!(
        doc(&run),
        json!({"error": {
            "kind": "usage",
            "message": "a subcommand is required; usage: answercache quarantine [OPTIONS] <COMMAND>",
            "path": null,
        }})
    );
    // After `--`, `--json` is a value (here the key): text mode, a plain miss.
    let run = answercache(&["get", d, "--", "--json"]);
    run.expect_code(1);
    assert_eq!(run.stderr, format!("\"--json\": not cached in {d}\n"));
}

#[test]
fn help_and_version_are_printed_as_usual_under_json() {
    let run = answercache(&["--json", "--version"]);
    run.expect_code(0);
    assert_eq!(
        run.out(),
        format!("answercache {}\n", env!("CARGO_PKG_VERSION"))
    );
    let run = answercache(&["--json", "stats", "--help"]);
    run.expect_code(0);
    assert!(run.out().starts_with("Entries, bytes"), "{}", run.out());
}

#[test]
fn a_quarantine_name_that_cannot_be_one_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = arg(dir.path());
    let message = "\"../../etc/passwd\" is not a quarantined file name (expected <time>-<reason>-<name>, as `quarantine list` shows)";
    for cmd in ["show", "clear"] {
        fails_as(
            &["quarantine", cmd, d, "../../etc/passwd"],
            2,
            "usage",
            message,
            None,
            &format!("error: {message}\n"),
        );
    }
}

#[test]
fn a_quarantine_name_that_is_not_there_is_not_found_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = arg(dir.path());
    let name = format!("1700000000000-checksum-{}", "ab".repeat(32));
    let q = dir.path().join("quarantine");
    let message = format!("no quarantined file {name} in {}", q.display());
    for args in [
        vec!["quarantine", "show", d, &name],
        vec!["quarantine", "clear", d, &name],
        vec!["quarantine", "clear", d, &name, "--dry-run"],
    ] {
        fails_as(
            &args,
            1,
            "not-found",
            &message,
            Some(&q.join(&name)),
            // Text mode: the answer line, no `error:` (as a `get` miss).
            &format!("{message}\n"),
        );
    }
}

#[test]
fn a_key_over_the_limit_is_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = arg(dir.path());
    let key = "k".repeat(20_000);
    let message =
        format!("get \"{key}\": key is 20000 bytes, over the limit of 16384 bytes (max_key_bytes)");
    fails_as(
        &["get", d, &key],
        2,
        "bad-key",
        &message,
        None,
        &format!("error: {message}\n"),
    );
    let run = answercache_with_stdin(&["--json", "set", d, &key], b"v");
    run.expect_code(2);
    let e: &Value = &doc(&run)["error"];
    assert_eq!(e["kind"], "bad-key");
    assert_eq!(
        e["message"],
        format!("set \"{key}\": key is 20000 bytes, over the limit of 16384 bytes (max_key_bytes)")
    );
}

#[test]
fn an_error_document_is_the_only_thing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let run: Run = answercache(&["--json", "verify", arg(&missing)]);
    run.expect_code(2);
    // One document: serde_json reads exactly one value from the whole of stdout.
    let mut values = serde_json::Deserializer::from_slice(&run.stdout).into_iter::<Value>();
    assert!(values.next().unwrap().is_ok());
    assert!(values.next().is_none());
}
