//! `--json` output is one document serde_json parses, with exactly the fields each command
//! documents, and carries the same numbers as the human tables of the same state of the same
//! directory (each command run twice, once per format; neither run changes what the other
//! sees).

use std::path::Path;

use answercache::warm::format::EntryMeta;
use serde_json::{json, Value};

use crate::support::{
    answercache, arg, cells, count, doc, entry_path, exact_bytes, fields, place_entry, set, JsonExt,
};

/// A directory with live, expired, damaged, quarantined and foreign files.
fn mixed_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for i in 0..6 {
        set(
            d,
            &format!("answer/{i}"),
            "some cached answer text. ".repeat(40 * (i + 1)).as_bytes(),
        );
    }
    place_entry(
        d,
        "expired",
        b"old answer",
        EntryMeta {
            created_ms: 1_000,
            expires_ms: 2_000,
            cost: 0,
            encoding: Default::default(),
        },
    );
    // Quarantine one file, then damage two more that stay in place: one cut at the end (its
    // header still reads), one cut inside the header.
    std::fs::write(entry_path(d, "answer/0"), b"garbage").unwrap();
    answercache(&["verify", arg(d), "--repair"]).expect_code(1);
    let f = entry_path(d, "answer/1");
    let len = f.metadata().unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    std::fs::write(entry_path(d, "answer/2"), b"TIERCACH").unwrap();
    std::fs::write(d.join("v2").join(".DS_Store"), b"x").unwrap();
    dir
}

fn both(args: &[&str]) -> (String, Value) {
    let human = answercache(args);
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = answercache(&json_args);
    assert_eq!(human.code, json.code, "same exit status with --json");
    (human.out(), doc(&json))
}

#[test]
fn stats_json_carries_the_human_numbers() {
    let dir = mixed_dir();
    let (text, doc) = both(&["stats", arg(dir.path())]);
    let row = |label: &str| cells(&text, label);
    assert_eq!(count(&row("entries")[1]), doc.at("entries").u64());
    assert_eq!(exact_bytes(&row("entries")[2]), doc.at("entry_bytes").u64());
    assert_eq!(count(&row("live")[1]), doc.at("live").u64());
    assert_eq!(count(&row("expired")[1]), doc.at("expired").u64());
    assert_eq!(
        exact_bytes(&row("expired")[2]),
        doc.at("expired_bytes").u64()
    );
    assert_eq!(
        count(&row("newer format")[1]),
        doc.at("newer_version").u64()
    );
    assert_eq!(count(&row("suspect")[1]), doc.at("suspect").u64());
    assert_eq!(
        exact_bytes(&row("values (uncompressed)")[1]),
        doc.at("value_bytes").u64()
    );
    assert_eq!(count(&row("temp files")[1]), doc.at("temp_files").u64());
    assert_eq!(
        count(&row("foreign files")[1]),
        doc.at("foreign_files").u64()
    );
    assert_eq!(
        count(&row("quarantine")[1]),
        doc.at("quarantine_files").u64()
    );
    assert_eq!(
        exact_bytes(&row("quarantine")[2]),
        doc.at("quarantine_bytes").u64()
    );
    let ratio = doc.at("compression_ratio").as_f64().unwrap();
    assert_eq!(row("compression ratio")[1], format!("{ratio:.2}x"));
    assert_eq!(row("encodings")[1], "raw 5");
    // And the numbers are the ones this directory implies.
    assert_eq!(
        doc.at("entries").u64(),
        6,
        "5 answers left + the expired one"
    );
    assert_eq!(doc.at("live").u64(), 4);
    assert_eq!(doc.at("expired").u64(), 1);
    assert_eq!(
        doc.at("suspect").u64(),
        1,
        "the header of answer/2 is cut short"
    );
    assert_eq!(doc.at("foreign_files").u64(), 1);
    assert_eq!(doc.at("quarantine_files").u64(), 1);
    assert_eq!(doc.at("quarantine_bytes").u64(), 7);
    // answer/1 (cut at the end, header intact), 3, 4, 5 and the expired one.
    assert_eq!(doc.at("entries_by_encoding"), &json!({"raw": 5}));
    assert_eq!(
        (doc.at("newer_version").u64(), doc.at("vanished").u64()),
        (0, 0)
    );
    assert_eq!(
        (doc.at("temp_files").u64(), doc.at("temp_bytes").u64()),
        (0, 0)
    );
    assert_eq!(doc.at("dir"), arg(dir.path()));
    assert_eq!(doc.at("errors"), &json!([]));
    assert_eq!(doc.at("previous_layout"), false);
    assert_eq!(
        fields(&doc),
        [
            "compression_ratio",
            "dir",
            "entries",
            "entries_by_encoding",
            "entry_bytes",
            "errors",
            "expired",
            "expired_bytes",
            "foreign_files",
            "live",
            "newer_version",
            "newest_created_ms",
            "oldest_created_ms",
            "previous_layout",
            "quarantine_bytes",
            "quarantine_files",
            "suspect",
            "temp_bytes",
            "temp_files",
            "value_bytes",
            "vanished",
        ]
    );
}

#[test]
fn verify_json_carries_the_human_numbers() {
    let dir = mixed_dir();
    let (text, doc) = both(&["verify", arg(dir.path())]);
    let row = |label: &str| cells(&text, label);
    assert_eq!(
        count(&row("entries checked")[1]),
        doc.at("entries_checked").u64()
    );
    assert_eq!(count(&row("healthy")[1]), doc.at("healthy").u64());
    assert_eq!(
        exact_bytes(&row("healthy")[2]),
        doc.at("healthy_bytes").u64()
    );
    assert_eq!(count(&row("expired")[1]), doc.at("expired").u64());
    let corrupted = doc.at("corrupted").items();
    assert_eq!(count(&row("corrupted")[1]), corrupted.len() as u64);
    assert_eq!(
        exact_bytes(&row("corrupted")[2]),
        doc.at("corrupted_bytes").u64()
    );
    for (reason, n) in doc.at("corrupted_by_reason").pairs() {
        assert_eq!(count(&row(reason)[1]), n.u64(), "{reason}");
    }
    for c in corrupted {
        let r = row(c.at("path").str());
        assert_eq!(r[1], c.at("reason").str());
        assert_eq!(r[3], c.at("detail").str());
    }
    assert_eq!(
        count(&row("newer format")[1]),
        doc.at("newer_version").u64()
    );
    assert_eq!(
        count(&row("foreign files")[1]),
        doc.at("foreign_files").u64()
    );
    assert_eq!(count(&row("vanished")[1]), doc.at("vanished").u64());
    assert_eq!(
        count(&row("I/O errors")[1]),
        doc.at("io_errors").items().len() as u64
    );
    assert_eq!(doc.at("clean"), false);
    // The numbers this directory implies.
    assert_eq!(doc.at("entries_checked").u64(), 6);
    assert_eq!((doc.at("healthy").u64(), doc.at("expired").u64()), (4, 1));
    let reasons: Vec<(&str, u64)> = doc
        .at("corrupted_by_reason")
        .pairs()
        .iter()
        .map(|(k, v)| (k.as_str(), v.u64()))
        .collect();
    assert_eq!(reasons, [("truncated", 2)]);
    assert_eq!(doc.at("dir"), arg(dir.path()));
    assert_eq!(doc.at("repair"), false);
    assert_eq!(doc.at("foreign_files").u64(), 1);
    assert_eq!(doc.at("io_errors"), &json!([]));
    assert_eq!(
        fields(&doc),
        [
            "clean",
            "corrupted",
            "corrupted_by_reason",
            "corrupted_bytes",
            "dir",
            "entries_checked",
            "expired",
            "foreign_files",
            "healthy",
            "healthy_bytes",
            "io_errors",
            "newer_version",
            "quarantined",
            "quarantined_bytes",
            "repair",
            "vanished",
        ]
    );
    let mut paths: Vec<&str> = corrupted.iter().map(|c| c.at("path").str()).collect();
    paths.sort_unstable();
    let mut want = [
        crate::support::entry_rel(dir.path(), "answer/1"),
        crate::support::entry_rel(dir.path(), "answer/2"),
    ];
    want.sort_unstable();
    assert_eq!(paths, want);
    for c in corrupted {
        assert_eq!(
            fields(c),
            ["detail", "len", "path", "quarantined_as", "reason"]
        );
        assert_eq!(c.at("reason"), "truncated");
        assert_eq!(c.at("quarantined_as"), &Value::Null);
    }
}

#[test]
fn quarantine_list_json_carries_the_human_numbers() {
    let dir = mixed_dir();
    answercache(&["verify", arg(dir.path()), "--repair"]).expect_code(1);
    let (text, doc) = both(&["quarantine", "list", arg(dir.path())]);
    let files = doc.at("quarantined").items();
    assert_eq!(files.len(), 3);
    assert_eq!(doc.at("files").u64(), 3);
    for f in files {
        let r = cells(&text, f.at("name").str());
        assert_eq!(r[1], f.at("reason").str());
        assert_eq!(fields(f), ["len", "name", "reason", "time_ms"]);
    }
    let mut reasons: Vec<&str> = files.iter().map(|f| f.at("reason").str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["magic", "truncated", "truncated"]);
    assert_eq!(
        doc.at("bytes").u64(),
        files.iter().map(|f| f.at("len").u64()).sum::<u64>()
    );
    assert_eq!(fields(&doc), ["bytes", "dir", "files", "quarantined"]);
    let total = text.lines().last().unwrap();
    assert_eq!(
        total,
        format!("3 files, {}", human_bytes(doc.at("bytes").u64()))
    );
}

fn human_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        let digits = n.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{:.1} KiB ({grouped} B)", n as f64 / 1024.0)
    }
}

#[test]
fn every_command_prints_one_json_document() {
    let dir = mixed_dir();
    let d: &Path = dir.path();
    for args in [
        vec!["stats", arg(d)],
        vec!["verify", arg(d)],
        vec!["get", arg(d), "answer/3"],
        vec!["get", arg(d), "absent"],
        vec!["rm", arg(d), "answer/4"],
        vec!["purge", arg(d), "--expired"],
        vec!["quarantine", "list", arg(d)],
        vec!["quarantine", "clear", arg(d)],
    ] {
        let mut with_json = vec!["--json"];
        with_json.extend(&args);
        let run = answercache(&with_json);
        assert!(matches!(run.code, Some(0 | 1)), "{args:?}: {}", run.stderr);
        let doc = doc(&run);
        assert!(!doc.pairs().is_empty(), "{args:?}");
        // Pretty-printed: one field per line, two-space indentation.
        assert!(run.out().starts_with("{\n  \""), "{args:?}: {}", run.out());
    }
}
