//! `verify` on a directory with planted corrupt files: each one reported with its reason and
//! exit status 1; `--repair` moves them to the quarantine; the next `verify` exits 0; the
//! quarantine commands then list, show and clear exactly those files.

use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::json;

use crate::support::{
    answercache, arg, cells, count, doc, entry_path, entry_rel, fields, set, JsonExt,
};

/// Keys stored through the binary, then damaged, with the reason `verify` must give.
const DAMAGED: [(&str, &str); 5] = [
    ("bit-rot", "checksum"),
    ("torn-write", "truncated"),
    ("stray-tool", "magic"),
    ("misplaced-copy", "key-mismatch"),
    ("appended", "trailing-bytes"),
];
const HEALTHY: [&str; 3] = ["ok-1", "ok-2", "ok-3"];

/// A directory with three healthy entries and the five damaged ones of [`DAMAGED`].
fn damaged_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for key in HEALTHY {
        set(
            d,
            key,
            format!("the answer for {key}").repeat(20).as_bytes(),
        );
    }
    for (key, _) in DAMAGED {
        set(
            d,
            key,
            format!("the answer for {key}").repeat(20).as_bytes(),
        );
    }
    damage(d);
    dir
}

fn damage(d: &Path) {
    let open = |key: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(entry_path(d, key))
            .unwrap()
    };
    // One bit of the payload's last byte.
    let f = open("bit-rot");
    let last = f.metadata().unwrap().len() - 1;
    let mut b = [0u8];
    f.read_exact_at(&mut b, last).unwrap();
    f.write_all_at(&[b[0] ^ 1], last).unwrap();
    // Cut in the middle of the payload.
    let f = open("torn-write");
    f.set_len(f.metadata().unwrap().len() - 10).unwrap();
    // Not a answercache file at all.
    open("stray-tool").write_all_at(b"#!/bin/sh", 0).unwrap();
    // A valid entry of another key.
    std::fs::copy(entry_path(d, "ok-1"), entry_path(d, "misplaced-copy")).unwrap();
    // Bytes after the end the header declares.
    let f = open("appended");
    f.write_all_at(b"junk", f.metadata().unwrap().len())
        .unwrap();
}

#[test]
fn verify_reports_each_planted_file_with_its_reason_then_repair_makes_it_clean() {
    let dir = damaged_dir();
    let d = dir.path();

    let first = answercache(&["verify", arg(d)]);
    first.expect_code(1);
    let text = first.out();
    for (key, reason) in DAMAGED {
        let rel = entry_rel(d, key);
        let row = cells(&text, &rel);
        assert_eq!(row[1], reason, "row of {key}: {row:?}");
    }
    for key in HEALTHY {
        assert!(
            !text.contains(&entry_rel(d, key)),
            "{key} reported:\n{text}"
        );
    }
    assert_eq!(count(&cells(&text, "entries checked")[1]), 8);
    assert_eq!(count(&cells(&text, "healthy")[1]), 3);
    assert_eq!(count(&cells(&text, "corrupted")[1]), 5);
    for (_, reason) in DAMAGED {
        assert_eq!(count(&cells(&text, reason)[1]), 1, "{reason}");
    }
    // Reporting changes nothing.
    for (key, _) in DAMAGED {
        assert!(entry_path(d, key).exists());
    }
    answercache(&["verify", arg(d)]).expect_code(1);

    let repair = answercache(&["verify", arg(d), "--repair"]);
    repair.expect_code(1);
    assert_eq!(count(&cells(&repair.out(), "quarantined now")[1]), 5);
    for (key, _) in DAMAGED {
        assert!(!entry_path(d, key).exists(), "{key} still in place");
    }

    let clean = answercache(&["verify", arg(d)]);
    clean.expect_code(0);
    assert_eq!(count(&cells(&clean.out(), "healthy")[1]), 3);
    assert_eq!(count(&cells(&clean.out(), "corrupted")[1]), 0);
    // The healthy entries are still served.
    for key in HEALTHY {
        let got = answercache(&["get", arg(d), key]);
        got.expect_code(0);
        assert_eq!(
            got.stdout,
            format!("the answer for {key}").repeat(20).as_bytes()
        );
    }
}

#[test]
fn quarantine_list_show_and_clear_see_the_repaired_files() {
    let dir = damaged_dir();
    let d = dir.path();
    answercache(&["verify", arg(d), "--repair"]).expect_code(1);

    let list = answercache(&["quarantine", "list", arg(d), "--json"]);
    list.expect_code(0);
    let doc = doc(&list);
    let files = doc.at("quarantined").items();
    assert_eq!(doc.at("files").u64(), 5);
    let mut reasons: Vec<&str> = files.iter().map(|f| f.at("reason").str()).collect();
    reasons.sort_unstable();
    let mut want: Vec<&str> = DAMAGED.iter().map(|(_, r)| *r).collect();
    want.sort_unstable();
    assert_eq!(reasons, want);

    // Each file's name ends with the entry's hash; `show` tells where it came from and why.
    for (key, reason) in DAMAGED {
        let hex = entry_rel(d, key).rsplit('/').next().unwrap().to_owned();
        let name = files
            .iter()
            .map(|f| f.at("name").str())
            .find(|n| n.ends_with(&hex))
            .unwrap();
        assert!(name.contains(&format!("-{reason}-")), "{name}");
        let show = answercache(&["quarantine", "show", arg(d), name]);
        show.expect_code(0);
        let text = show.out();
        assert_eq!(cells(&text, "reason")[1], reason);
        assert_eq!(
            cells(&text, "original")[1],
            entry_path(d, key).display().to_string()
        );
        let shown = answercache(&["quarantine", "show", arg(d), name, "--json"]);
        shown.expect_code(0);
        let shown = crate::support::doc(&shown);
        assert_eq!(
            fields(&shown),
            [
                "head_hex", "header", "key", "kind", "len", "name", "path", "reason", "sidecar",
                "time_ms"
            ]
        );
        assert_eq!(shown.at("name"), name);
        assert_eq!(shown.at("reason"), reason);
        assert_eq!(shown.at("kind"), "regular file");
        assert_eq!(
            shown.at("path"),
            d.join("quarantine")
                .join(name)
                .display()
                .to_string()
                .as_str()
        );
        assert_eq!(
            shown.at("sidecar").at("original"),
            entry_path(d, key).display().to_string().as_str()
        );
        if reason == "magic" {
            // `#!/bin/sh` over the magic: no header to read.
            assert_eq!(shown.at("header"), &serde_json::Value::Null);
            assert_eq!(shown.at("key"), &serde_json::Value::Null);
            assert_eq!(cells(&text, "header")[1], "unreadable");
        } else {
            let header = shown.at("header");
            assert_eq!(
                fields(header),
                [
                    "created_ms",
                    "encoding",
                    "expires_ms",
                    "flags",
                    "key_len",
                    "payload_len",
                    "uncompressed_len",
                    "version"
                ]
            );
            // Stored by `answercache set`: raw bytes, format version 2.
            assert_eq!(header.at("encoding"), "raw");
            assert_eq!(header.at("version").u64(), 2);
            assert_eq!(header.at("flags").u64(), 1);
            assert_eq!(cells(&text, "encoding")[1], "raw");
            // The copy of ok-1 keeps ok-1's key: that is why it is a mismatch.
            let stored_key = if key == "misplaced-copy" { "ok-1" } else { key };
            assert_eq!(shown.at("key"), stored_key);
            assert_eq!(header.at("key_len").u64(), stored_key.len() as u64);
        }
    }
    let human = answercache(&["quarantine", "list", arg(d)]);
    human.expect_code(0);
    assert!(human.out().contains("5 files"), "{}", human.out());

    // One by name, then the rest.
    let one = files[0].at("name").str();
    answercache(&["quarantine", "clear", arg(d), one]).expect_code(0);
    answercache(&["quarantine", "show", arg(d), one]).expect_code(1);
    answercache(&["quarantine", "clear", arg(d), one]).expect_code(1);
    let cleared = answercache(&["quarantine", "clear", arg(d), "--json"]);
    cleared.expect_code(0);
    assert_eq!(
        crate::support::doc(&cleared),
        json!({
            "dir": d.join("quarantine").display().to_string(),
            "dry_run": false,
            "removed": 4,
            "removed_bytes": files[1..].iter().map(|f| f.at("len").u64()).sum::<u64>(),
            "orphan_sidecars_removed": 0,
            "files": files[1..],
        })
    );
    let empty = answercache(&["quarantine", "list", arg(d), "--json"]);
    assert_eq!(
        crate::support::doc(&empty),
        json!({
            "dir": d.join("quarantine").display().to_string(),
            "files": 0,
            "bytes": 0,
            "quarantined": [],
        })
    );
    let left: Vec<_> = std::fs::read_dir(d.join("quarantine")).unwrap().collect();
    assert!(left.is_empty(), "sidecars left: {left:?}");
}

#[test]
fn a_read_through_get_quarantines_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    set(d, "k", b"value");
    std::fs::OpenOptions::new()
        .write(true)
        .open(entry_path(d, "k"))
        .unwrap()
        .write_all_at(b"XXXX", 0)
        .unwrap();
    let got = answercache(&["get", arg(d), "k"]);
    got.expect_code(1);
    assert!(got.stderr.contains("corrupted (magic)"), "{}", got.stderr);
    let list = answercache(&["quarantine", "list", arg(d), "--json"]);
    assert_eq!(doc(&list).at("files").u64(), 1);
    answercache(&["verify", arg(d)]).expect_code(0);
}
