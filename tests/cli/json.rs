//! `--json` output parses, and carries the same numbers as the human tables of the same state
//! of the same directory (each command run twice, once per format; neither run changes what
//! the other sees).

use std::path::Path;

use tiercache::warm::format::EntryMeta;

use crate::support::{
    arg, cells, count, entry_path, exact_bytes, place_entry, set, tiercache, Json,
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
    tiercache(&["verify", arg(d), "--repair"]).expect_code(1);
    let f = entry_path(d, "answer/1");
    let len = f.metadata().unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    std::fs::write(entry_path(d, "answer/2"), b"TIERCACH").unwrap();
    std::fs::write(d.join("v1").join(".DS_Store"), b"x").unwrap();
    dir
}

fn both(args: &[&str]) -> (String, Json) {
    let human = tiercache(args);
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = tiercache(&json_args);
    assert_eq!(human.code, json.code, "same exit status with --json");
    (human.out(), Json::parse(&json.out()))
}

#[test]
fn stats_json_carries_the_human_numbers() {
    let dir = mixed_dir();
    let (text, doc) = both(&["stats", arg(dir.path())]);
    let row = |label: &str| cells(&text, label);
    assert_eq!(count(&row("entries")[1]), doc.get("entries").u64());
    assert_eq!(
        exact_bytes(&row("entries")[2]),
        doc.get("entry_bytes").u64()
    );
    assert_eq!(count(&row("live")[1]), doc.get("live").u64());
    assert_eq!(count(&row("expired")[1]), doc.get("expired").u64());
    assert_eq!(
        exact_bytes(&row("expired")[2]),
        doc.get("expired_bytes").u64()
    );
    assert_eq!(
        count(&row("newer format")[1]),
        doc.get("newer_version").u64()
    );
    assert_eq!(count(&row("suspect")[1]), doc.get("suspect").u64());
    assert_eq!(
        exact_bytes(&row("values (uncompressed)")[1]),
        doc.get("value_bytes").u64()
    );
    assert_eq!(count(&row("temp files")[1]), doc.get("temp_files").u64());
    assert_eq!(
        count(&row("foreign files")[1]),
        doc.get("foreign_files").u64()
    );
    assert_eq!(
        count(&row("quarantine")[1]),
        doc.get("quarantine_files").u64()
    );
    assert_eq!(
        exact_bytes(&row("quarantine")[2]),
        doc.get("quarantine_bytes").u64()
    );
    let Json::Num(ratio) = doc.get("compression_ratio") else {
        panic!("compression_ratio is not a number");
    };
    assert_eq!(
        row("compression ratio")[1],
        format!("{:.2}x", ratio.parse::<f64>().unwrap())
    );
    // And the numbers are the ones this directory implies.
    assert_eq!(
        doc.get("entries").u64(),
        6,
        "5 answers left + the expired one"
    );
    assert_eq!(doc.get("live").u64(), 4);
    assert_eq!(doc.get("expired").u64(), 1);
    assert_eq!(
        doc.get("suspect").u64(),
        1,
        "the header of answer/2 is cut short"
    );
    assert_eq!(doc.get("foreign_files").u64(), 1);
    assert_eq!(doc.get("quarantine_files").u64(), 1);
    assert_eq!(doc.get("quarantine_bytes").u64(), 7);
}

#[test]
fn verify_json_carries_the_human_numbers() {
    let dir = mixed_dir();
    let (text, doc) = both(&["verify", arg(dir.path())]);
    let row = |label: &str| cells(&text, label);
    assert_eq!(
        count(&row("entries checked")[1]),
        doc.get("entries_checked").u64()
    );
    assert_eq!(count(&row("healthy")[1]), doc.get("healthy").u64());
    assert_eq!(
        exact_bytes(&row("healthy")[2]),
        doc.get("healthy_bytes").u64()
    );
    assert_eq!(count(&row("expired")[1]), doc.get("expired").u64());
    let corrupted = doc.get("corrupted").items();
    assert_eq!(count(&row("corrupted")[1]), corrupted.len() as u64);
    assert_eq!(
        exact_bytes(&row("corrupted")[2]),
        doc.get("corrupted_bytes").u64()
    );
    for (reason, n) in doc.get("corrupted_by_reason").pairs() {
        assert_eq!(count(&row(reason)[1]), n.u64(), "{reason}");
    }
    for c in corrupted {
        let r = row(c.get("path").str());
        assert_eq!(r[1], c.get("reason").str());
        assert_eq!(r[3], c.get("detail").str());
    }
    assert_eq!(
        count(&row("newer format")[1]),
        doc.get("newer_version").u64()
    );
    assert_eq!(
        count(&row("foreign files")[1]),
        doc.get("foreign_files").u64()
    );
    assert_eq!(count(&row("vanished")[1]), doc.get("vanished").u64());
    assert_eq!(
        count(&row("I/O errors")[1]),
        doc.get("io_errors").items().len() as u64
    );
    assert_eq!(doc.get("clean"), &Json::Bool(false));
    // The numbers this directory implies.
    assert_eq!(doc.get("entries_checked").u64(), 6);
    assert_eq!((doc.get("healthy").u64(), doc.get("expired").u64()), (4, 1));
    let reasons: Vec<(&str, u64)> = doc
        .get("corrupted_by_reason")
        .pairs()
        .iter()
        .map(|(k, v)| (k.as_str(), v.u64()))
        .collect();
    assert_eq!(reasons, [("truncated", 2)]);
}

#[test]
fn quarantine_list_json_carries_the_human_numbers() {
    let dir = mixed_dir();
    tiercache(&["verify", arg(dir.path()), "--repair"]).expect_code(1);
    let (text, doc) = both(&["quarantine", "list", arg(dir.path())]);
    let files = doc.get("quarantined").items();
    assert_eq!(files.len(), 3);
    assert_eq!(doc.get("files").u64(), 3);
    for f in files {
        let r = cells(&text, f.get("name").str());
        assert_eq!(r[1], f.get("reason").str());
    }
    let total = text.lines().last().unwrap();
    assert_eq!(
        total,
        format!("3 files, {}", human_bytes(doc.get("bytes").u64()))
    );
}

fn human_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        let digits = n.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
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
        let run = tiercache(&with_json);
        assert!(matches!(run.code, Some(0 | 1)), "{args:?}: {}", run.stderr);
        let doc = Json::parse(&run.out());
        assert!(!doc.pairs().is_empty(), "{args:?}");
    }
}
