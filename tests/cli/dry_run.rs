//! `--dry-run` deletes nothing and reports exactly what the real run then deletes: every file
//! under the cache directory is still there byte for byte after it, and its document is the
//! real run's, `dry_run` aside (the same counts, bytes and file list). For `purge --expired`,
//! `purge --all`, `quarantine clear NAME` and `quarantine clear`.

use serde_json::{json, Value};

use answercache::warm::format::EntryMeta;
use answercache::warm::layout::Layout;

use crate::support::{
    answercache, arg, cells, count, doc, entry_path, entry_rel, exact_bytes, file_len, place_entry,
    set, snapshot, JsonExt,
};

/// Live, expired, suspect and foreign files.
fn purge_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    set(d, "live-1", b"one");
    set(d, "live-2", b"two");
    let old = EntryMeta {
        created_ms: 1_000,
        expires_ms: 2_000,
        cost: 0,
        encoding: Default::default(),
    };
    for key in ["expired-a", "expired-b", "expired-c"] {
        place_entry(d, key, key.as_bytes(), old);
    }
    // A header cut short: suspect, left for verify.
    std::fs::write(entry_path(d, "live-2"), b"TIERCACH").unwrap();
    std::fs::write(Layout::new(d).entries_dir().join("notes.txt"), b"x").unwrap();
    dir
}

/// `{"file", "bytes"}` of `keys`, in the walk's order (by hash, which is path order).
fn files(d: &std::path::Path, keys: &[&str]) -> Vec<Value> {
    let mut v: Vec<(String, u64)> = keys
        .iter()
        .map(|k| (entry_rel(d, k), file_len(d, k)))
        .collect();
    v.sort();
    v.into_iter()
        .map(|(file, bytes)| json!({"file": file, "bytes": bytes}))
        .collect()
}

/// Runs `args` with `--dry-run` (text, then `--json`), checks that nothing changed under
/// `d`, then runs it for real with `--json`: returns (dry-run document, real document).
fn dry_then_real(d: &std::path::Path, args: &[&str]) -> (Value, Value, String) {
    let before = snapshot(d);
    let mut dry: Vec<&str> = args.to_vec();
    dry.push("--dry-run");
    let text = answercache(&dry);
    text.expect_code(0);
    assert_eq!(text.stderr, "");
    assert_eq!(snapshot(d), before, "{dry:?} changed the directory");
    dry.push("--json");
    let dry_doc = answercache(&dry);
    dry_doc.expect_code(0);
    assert_eq!(snapshot(d), before, "{dry:?} changed the directory");
    let mut real: Vec<&str> = args.to_vec();
    real.push("--json");
    let real_doc = answercache(&real);
    real_doc.expect_code(0);
    (doc(&dry_doc), doc(&real_doc), text.out())
}

/// How many fan-out directories hold nothing but the entries of `keys` (a purge that removes
/// those entries empties them).
fn emptied_fan_outs(d: &std::path::Path, keys: &[&str]) -> u64 {
    let mut dirs: Vec<std::path::PathBuf> = keys
        .iter()
        .map(|k| entry_path(d, k).parent().unwrap().to_owned())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.iter()
        .filter(|dir| {
            std::fs::read_dir(dir).unwrap().all(|e| {
                let p = e.unwrap().path();
                keys.iter().any(|k| entry_path(d, k) == p)
            })
        })
        .count() as u64
}

/// `doc` with `dry_run` set to `value`.
fn with_dry_run(doc: &Value, value: bool) -> Value {
    let mut doc = doc.clone();
    doc.as_object_mut()
        .unwrap()
        .insert("dry_run".into(), json!(value));
    doc
}

#[test]
fn purge_expired_dry_run_reports_what_the_real_run_removes() {
    let dir = purge_dir();
    let d = dir.path();
    let expired = ["expired-a", "expired-b", "expired-c"];
    let bytes: u64 = expired.iter().map(|k| file_len(d, k)).sum();
    let want_files = files(d, &expired);
    let emptied = emptied_fan_outs(d, &expired);
    let (dry, real, text) = dry_then_real(d, &["purge", arg(d), "--expired"]);
    assert_eq!(
        dry,
        json!({
            "dir": arg(d),
            "purge": "expired",
            "dry_run": true,
            "files": want_files,
            "removed": 3,
            "removed_bytes": bytes,
            "kept": 1,
            "kept_bytes": file_len(d, "live-1"),
            "skipped": 1,
            "vanished": 0,
            "foreign_files": 1,
            "fan_out_dirs_removed": emptied,
            "errors": [],
        })
    );
    assert_eq!(real, with_dry_run(&dry, false));
    // The real run left no empty fan-out directory.
    for e in std::fs::read_dir(d.join("v2")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            assert!(p.read_dir().unwrap().next().is_some(), "{p:?} left empty");
        }
    }
    // The text report says the same, as "would remove", and that nothing was deleted.
    assert_eq!(
        cells(&text, "purge --expired --dry-run")[1..],
        ["files", "bytes"]
    );
    let would = cells(&text, "would remove");
    assert_eq!((count(&would[1]), exact_bytes(&would[2])), (3, bytes));
    assert!(text.ends_with("\ndry run: nothing was deleted\n"), "{text}");
    for key in expired {
        assert!(
            !entry_path(d, key).exists(),
            "{key} removed by the real run"
        );
    }
    assert!(entry_path(d, "live-1").is_file());
    assert!(entry_path(d, "live-2").is_file(), "suspect: left alone");
}

#[test]
fn purge_all_dry_run_reports_what_the_real_run_removes() {
    let dir = purge_dir();
    let d = dir.path();
    // Every regular file at an entry path, the suspect one left for verify.
    let all = ["live-1", "expired-a", "expired-b", "expired-c"];
    let bytes: u64 = all.iter().map(|k| file_len(d, k)).sum();
    let want_files = files(d, &all);
    let (dry, real, text) = dry_then_real(d, &["purge", arg(d), "--all"]);
    assert_eq!(dry.at("files"), &json!(want_files));
    assert_eq!(
        (dry.at("removed").u64(), dry.at("removed_bytes").u64()),
        (4, bytes)
    );
    assert_eq!(dry.at("dry_run"), true);
    assert_eq!(real, with_dry_run(&dry, false));
    let would = cells(&text, "would remove");
    assert_eq!((count(&would[1]), exact_bytes(&would[2])), (4, bytes));
    for key in all {
        assert!(!entry_path(d, key).exists(), "{key}");
    }
}

/// A directory with three quarantined files (by `verify --repair`), and their names.
fn quarantined() -> (tempfile::TempDir, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for key in ["q1", "q2", "q3"] {
        set(d, key, format!("value of {key}").as_bytes());
        std::fs::write(entry_path(d, key), format!("damaged {key}")).unwrap();
    }
    answercache(&["verify", arg(d), "--repair"]).expect_code(1);
    let list = doc(&answercache(&["--json", "quarantine", "list", arg(d)]));
    let files = list.at("quarantined").items().to_vec();
    assert_eq!(files.len(), 3);
    (dir, files)
}

#[test]
fn quarantine_clear_one_dry_run_reports_what_the_real_run_removes() {
    let (dir, files) = quarantined();
    let d = dir.path();
    let q = Layout::new(d).quarantine_dir().to_path_buf();
    let name = files[1].at("name").str().to_owned();
    let (dry, real, text) = dry_then_real(d, &["quarantine", "clear", arg(d), &name]);
    assert_eq!(
        dry,
        json!({
            "dir": q.display().to_string(),
            "dry_run": true,
            "removed": 1,
            "removed_bytes": files[1].at("len").u64(),
            "orphan_sidecars_removed": 0,
            "files": [files[1]],
        })
    );
    assert_eq!(real, with_dry_run(&dry, false));
    assert_eq!(
        text,
        format!(
            "would remove 1 quarantined file, {} B, from {} (dry run: nothing was deleted)\n",
            files[1].at("len").u64(),
            q.display()
        )
    );
    assert!(!q.join(&name).exists());
    assert!(!q.join(format!("{name}.why")).exists());
    assert_eq!(
        std::fs::read_dir(&q).unwrap().count(),
        4,
        "two files, two sidecars"
    );
}

#[test]
fn quarantine_clear_all_dry_run_reports_what_the_real_run_removes() {
    let (dir, files) = quarantined();
    let d = dir.path();
    let q = Layout::new(d).quarantine_dir().to_path_buf();
    // A sidecar whose file is gone: a full clear removes it too.
    let orphan = "1700000000000-checksum-0000000000000000000000000000000000000000000000000000000000000000.why";
    std::fs::write(q.join(orphan), b"reason: checksum\n").unwrap();
    let bytes: u64 = files.iter().map(|f| f.at("len").u64()).sum();
    let (dry, real, text) = dry_then_real(d, &["quarantine", "clear", arg(d)]);
    assert_eq!(
        dry,
        json!({
            "dir": q.display().to_string(),
            "dry_run": true,
            "removed": 3,
            "removed_bytes": bytes,
            "orphan_sidecars_removed": 1,
            "files": files,
        })
    );
    assert_eq!(real, with_dry_run(&dry, false));
    assert_eq!(
        text,
        format!(
            "would remove 3 quarantined files, {} B, from {} (dry run: nothing was deleted)\n",
            bytes,
            q.display()
        )
    );
    assert_eq!(std::fs::read_dir(&q).unwrap().count(), 0);
}
