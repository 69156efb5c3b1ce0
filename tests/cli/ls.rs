//! `ls` lists every entry of a directory, one row each, in hash order: hash, sizes, age,
//! expiry, encoding and key, read through the library's verified read path. A printable key
//! is shown as it is, any other escaped (text) or as `key_hex` (JSON, when not UTF-8); an
//! expired entry says so; a corrupt file is a `corrupt` row with its reason and nothing read
//! from it; a newer format's entry is not judged. Entries are made through the library (their
//! paths come from `Layout`), never at hard-coded paths.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use answercache::warm::format::{self, EntryMeta, Limits, FLAG_GZIP};
use answercache::warm::layout::{hex, key_hash, Layout};
use answercache::Encoding;
use serde_json::{json, Value};

use crate::support::{answercache, arg, cells, doc, set, JsonExt};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The entry file of `key` (any bytes) under `dir`.
fn path_of(dir: &Path, key: &[u8]) -> PathBuf {
    Layout::new(dir).entry_path(&key_hash(key))
}

fn rel(dir: &Path, key: &[u8]) -> String {
    path_of(dir, key)
        .strip_prefix(dir)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Writes a valid entry for `key` with the library's encoder.
fn place(dir: &Path, key: &[u8], value: &[u8], meta: EntryMeta) -> u64 {
    let path = path_of(dir, key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = format::encode(key, value, meta, 3).unwrap();
    std::fs::write(&path, &file).unwrap();
    file.len() as u64
}

fn meta(created_ms: u64, expires_ms: u64, encoding: Encoding) -> EntryMeta {
    EntryMeta {
        created_ms,
        expires_ms,
        cost: 0,
        encoding,
    }
}

/// A `live`/`expired` row as `ls --json` writes it.
#[allow(clippy::too_many_arguments)]
fn healthy_row(
    dir: &Path,
    key: &[u8],
    state: &str,
    file_bytes: u64,
    value_bytes: u64,
    m: EntryMeta,
    now: u64,
) -> Value {
    let (text, key_hex) = match std::str::from_utf8(key) {
        Ok(s) => (json!(s), Value::Null),
        Err(_) => (Value::Null, json!(hex_bytes(key))),
    };
    json!({
        "hash": hex(&key_hash(key)),
        "file": rel(dir, key),
        "state": state,
        "file_bytes": file_bytes,
        "value_bytes": value_bytes,
        "created_ms": m.created_ms,
        "age_ms": now - m.created_ms,
        "expires_ms": m.expires_ms,
        "expires_in_ms": if m.expires_ms == 0 { Value::Null } else { json!(m.expires_ms.saturating_sub(now)) },
        "encoding": m.encoding.name(),
        "key": text,
        "key_hex": key_hex,
        "reason": null,
        "detail": null,
    })
}

/// A row with nothing read from the file.
fn bare_row(
    dir: &Path,
    key: &[u8],
    state: &str,
    file_bytes: u64,
    reason: Value,
    detail: &str,
) -> Value {
    json!({
        "hash": hex(&key_hash(key)),
        "file": rel(dir, key),
        "state": state,
        "file_bytes": file_bytes,
        "value_bytes": null,
        "created_ms": null,
        "age_ms": null,
        "expires_ms": null,
        "expires_in_ms": null,
        "encoding": null,
        "key": null,
        "key_hex": null,
        "reason": reason,
        "detail": detail,
    })
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory with one entry of each kind `ls` tells apart, and the time they were made
/// relative to.
struct Mixed {
    dir: tempfile::TempDir,
    t0: u64,
    lens: Vec<(Vec<u8>, u64)>,
}

const PRINTABLE: &[u8] = b"capital of France?";
const CONTROL: &[u8] = b"bell\x07and\nnewline";
const NOT_UTF8: &[u8] = b"\xff\xfebinary key";
const EXPIRED: &[u8] = b"weather/paris";
const CORRUPT: &[u8] = b"flipped";
const MISPLACED: &[u8] = b"misplaced";
const NEWER: &[u8] = b"from-the-future";

fn mixed() -> Mixed {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t0 = now_ms();
    // Made 3 days 5 hours 30 minutes ago: the text cells are then stable for half an hour.
    let created = t0 - 3 * DAY - 5 * HOUR - HOUR / 2;
    let mut lens = Vec::new();
    let mut put = |key: &[u8], value: &[u8], m| lens.push((key.to_vec(), place(d, key, value, m)));
    put(PRINTABLE, b"Paris.", meta(created, 0, Encoding::Raw));
    put(
        CONTROL,
        br#"{"a":1}"#,
        meta(created, t0 + 2 * DAY + 12 * HOUR + HOUR / 2, Encoding::Json),
    );
    put(NOT_UTF8, &[0, 1, 2], meta(created, 0, Encoding::Bincode));
    put(
        EXPIRED,
        b"18C",
        meta(created, created + HOUR, Encoding::Raw),
    );
    put(CORRUPT, b"will be damaged", meta(created, 0, Encoding::Raw));
    // One bit flipped at the end of the payload: the checksum fails.
    let p = path_of(d, CORRUPT);
    let mut bytes = std::fs::read(&p).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    // A valid entry of another key at MISPLACED's path.
    let other = format::encode(b"other key", b"v", meta(created, 0, Encoding::Raw), 3).unwrap();
    std::fs::create_dir_all(path_of(d, MISPLACED).parent().unwrap()).unwrap();
    std::fs::write(path_of(d, MISPLACED), &other).unwrap();
    lens.push((MISPLACED.to_vec(), other.len() as u64));
    // A version-3 file: not this build's to judge.
    let payload = format::deflate(b"?", 3).unwrap();
    let newer = format::assemble(
        NEWER,
        1,
        &payload,
        meta(created, 0, Encoding::Raw),
        3,
        FLAG_GZIP,
    );
    std::fs::create_dir_all(path_of(d, NEWER).parent().unwrap()).unwrap();
    std::fs::write(path_of(d, NEWER), &newer).unwrap();
    lens.push((NEWER.to_vec(), newer.len() as u64));
    // A foreign file among the entries: not listed, counted.
    std::fs::write(Layout::new(d).entries_dir().join("README"), b"not an entry").unwrap();
    Mixed { dir, t0, lens }
}

impl Mixed {
    fn len(&self, key: &[u8]) -> u64 {
        self.lens.iter().find(|(k, _)| k == key).unwrap().1
    }
}

#[test]
fn json_lists_every_entry_with_exact_fields_in_hash_order() {
    let m = mixed();
    let d = m.dir.path();
    let run = answercache(&["--json", "ls", arg(d)]);
    run.expect_code(0);
    assert_eq!(run.stderr, "");
    let doc = doc(&run);
    let now = doc.at("now_ms").u64();
    assert!((m.t0..m.t0 + 600_000).contains(&now), "{now} vs {}", m.t0);
    let created = m.t0 - 3 * DAY - 5 * HOUR - HOUR / 2;
    let mut want = vec![
        healthy_row(
            d,
            PRINTABLE,
            "live",
            m.len(PRINTABLE),
            6,
            meta(created, 0, Encoding::Raw),
            now,
        ),
        healthy_row(
            d,
            CONTROL,
            "live",
            m.len(CONTROL),
            7,
            meta(
                created,
                m.t0 + 2 * DAY + 12 * HOUR + HOUR / 2,
                Encoding::Json,
            ),
            now,
        ),
        healthy_row(
            d,
            NOT_UTF8,
            "live",
            m.len(NOT_UTF8),
            3,
            meta(created, 0, Encoding::Bincode),
            now,
        ),
        healthy_row(
            d,
            EXPIRED,
            "expired",
            m.len(EXPIRED),
            3,
            meta(created, created + HOUR, Encoding::Raw),
            now,
        ),
        bare_row(
            d,
            CORRUPT,
            "corrupt",
            m.len(CORRUPT),
            json!("checksum"),
            "checksum mismatch",
        ),
        bare_row(
            d,
            MISPLACED,
            "corrupt",
            m.len(MISPLACED),
            json!("key-mismatch"),
            "stored key does not hash to the file name",
        ),
        bare_row(
            d,
            NEWER,
            "newer-version",
            m.len(NEWER),
            Value::Null,
            "format version 3",
        ),
    ];
    want.sort_by(|a, b| a["hash"].as_str().cmp(&b["hash"].as_str()));
    let total: u64 = m.lens.iter().map(|(_, n)| n).sum();
    assert_eq!(
        doc,
        json!({
            "dir": arg(d),
            "now_ms": now,
            "entries": want,
            "count": 7,
            "bytes": total,
            "live": 3,
            "expired": 1,
            "corrupt": 2,
            "newer_version": 1,
            "unreadable": 0,
            "vanished": 0,
            "foreign_files": 1,
            "errors": [],
        })
    );
    // The expired entry's time left is 0, the other's what its expiry implies.
    let rows = doc.at("entries").items();
    let row = |key: &[u8]| {
        rows.iter()
            .find(|r| r.at("hash") == hex(&key_hash(key)).as_str())
            .unwrap()
    };
    assert_eq!(row(EXPIRED).at("expires_in_ms").u64(), 0);
    assert_eq!(row(NOT_UTF8).at("key_hex"), "fffe62696e617279206b6579");
    assert_eq!(row(CONTROL).at("key"), "bell\u{7}and\nnewline");
    // And `verify` finds the same two corrupt files.
    let verify = crate::support::doc(&answercache(&["--json", "verify", arg(d)]));
    assert_eq!(
        verify.at("corrupted_by_reason"),
        &json!({"checksum": 1, "key-mismatch": 1})
    );
    // Nothing was changed.
    assert!(path_of(d, CORRUPT).is_file() && path_of(d, EXPIRED).is_file());
}

#[test]
fn text_rows_show_sizes_ages_expiries_and_escaped_keys() {
    let m = mixed();
    let d = m.dir.path();
    let run = answercache(&["ls", arg(d)]);
    run.expect_code(0);
    assert_eq!(run.stderr, "");
    let text = run.out();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("cache directory {}", d.display()));
    assert_eq!(lines[1], "");
    assert_eq!(
        lines[2],
        format!(
            "{:<64}   {:>10}   {:>10}   {:>8}   {:<11}   {:<10}   key",
            "hash", "size", "value", "age", "expires", "encoding"
        )
    );
    assert_eq!(lines[3], "-".repeat(lines[2].len()));
    // Seven rows, in hash order, then a blank line and the footer.
    let hashes: Vec<&str> = lines[4..11].iter().map(|l| &l[..64]).collect();
    let mut sorted = hashes.clone();
    sorted.sort_unstable();
    assert_eq!(hashes, sorted);
    assert_eq!(lines[11], "");
    let total: u64 = m.lens.iter().map(|(_, n)| n).sum();
    assert_eq!(
        lines[12],
        format!(
            "7 entries, {}: 3 live, 1 expired, 2 corrupt, 1 newer format, 0 unreadable",
            human_bytes(total)
        )
    );
    assert_eq!(
        lines[13],
        format!(
            "note: `answercache verify {} --repair` moves the corrupt files to the quarantine",
            d.display()
        )
    );
    assert_eq!(lines[14], "note: 1 foreign file (not an entry) left out");
    assert_eq!(lines.len(), 15);

    // The cells after the hash.
    let row = |key: &[u8]| cells(&text, &hex(&key_hash(key)))[1..].to_vec();
    let size = |key: &[u8]| format!("{} B", m.len(key));
    assert_eq!(
        row(PRINTABLE),
        [
            &size(PRINTABLE),
            "6 B",
            "3d 05h",
            "never",
            "raw",
            "\"capital of France?\""
        ]
    );
    // Control characters escaped: the terminal sees no bell and no line break.
    assert_eq!(
        row(CONTROL),
        [
            &size(CONTROL),
            "7 B",
            "3d 05h",
            "in 2d 12h",
            "json",
            r#""bell\u{7}and\nnewline""#
        ]
    );
    assert_eq!(
        row(NOT_UTF8),
        [
            &size(NOT_UTF8),
            "3 B",
            "3d 05h",
            "never",
            "bincode",
            r#""\xff\xfebinary key""#
        ]
    );
    assert_eq!(
        row(EXPIRED),
        [
            &size(EXPIRED),
            "3 B",
            "3d 05h",
            "expired",
            "raw",
            "\"weather/paris\""
        ]
    );
    // Nothing of a corrupt file's contents: its reason only.
    assert_eq!(
        row(CORRUPT),
        [&size(CORRUPT), "corrupt: checksum: checksum mismatch"]
    );
    assert_eq!(
        row(MISPLACED),
        [
            &size(MISPLACED),
            "corrupt: key-mismatch: stored key does not hash to the file name"
        ]
    );
    assert!(!text.contains("other key"), "{text}");
    assert_eq!(
        row(NEWER),
        [&size(NEWER), "newer format (format version 3): left alone"]
    );
}

fn human_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    assert!(n < 1_000_000, "{n}");
    let digits = n.to_string();
    let (a, b) = digits.split_at(digits.len() - 3);
    format!("{:.1} KiB ({a},{b} B)", n as f64 / 1024.0)
}

#[test]
fn an_empty_directory_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = answercache(&["ls", arg(d)]);
    run.expect_code(0);
    let header = format!(
        "{:<64}   {:>10}   {:>10}   {:>8}   {:<11}   {:<10}   key",
        "hash", "size", "value", "age", "expires", "encoding"
    );
    assert_eq!(
        run.out(),
        format!(
            "cache directory {}\n\n{header}\n{}\n\n0 entries, 0 B: 0 live, 0 expired, 0 corrupt, 0 newer format, 0 unreadable\n",
            d.display(),
            "-".repeat(header.len())
        )
    );
    let run = answercache(&["--json", "ls", arg(d)]);
    run.expect_code(0);
    let doc = doc(&run);
    assert_eq!(
        doc,
        json!({
            "dir": arg(d),
            "now_ms": doc.at("now_ms").u64(),
            "entries": [],
            "count": 0,
            "bytes": 0,
            "live": 0,
            "expired": 0,
            "corrupt": 0,
            "newer_version": 0,
            "unreadable": 0,
            "vanished": 0,
            "foreign_files": 0,
            "errors": [],
        })
    );
    // Pretty-printed like every other document.
    assert!(
        run.out().contains("\n  \"entries\": [],\n"),
        "{}",
        run.out()
    );
}

#[test]
fn entries_set_by_the_cli_are_listed_with_their_header_times() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    set(d, "k1", b"one");
    set(d, "k2", b"twenty two");
    let doc = doc(&answercache(&["--json", "ls", arg(d)]));
    let rows = doc.at("entries").items();
    assert_eq!(rows.len(), 2);
    for (key, value_len) in [("k1", 3), ("k2", 10)] {
        let bytes = std::fs::read(path_of(d, key.as_bytes())).unwrap();
        let h = format::parse_header(&bytes, &Limits::default()).unwrap();
        let row = rows.iter().find(|r| r.at("key") == key).unwrap();
        assert_eq!(
            row,
            &healthy_row(
                d,
                key.as_bytes(),
                "live",
                bytes.len() as u64,
                value_len,
                h.meta,
                doc.at("now_ms").u64().max(h.meta.created_ms),
            )
        );
    }
}
