//! Shared fixtures: running the built binary, reading its aligned tables back and its `--json`
//! documents (with serde_json), and planting entry files at a key's path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use answercache::warm::format::{self, EntryMeta, Header, Limits};
use answercache::warm::layout::{key_hash, Layout};
use serde_json::{Map, Value};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit status (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    /// Stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with both streams unless the exit status is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "exit status\n--- stdout:\n{}\n--- stderr:\n{}",
            self.out(),
            self.stderr
        );
        self
    }
}

/// Runs `answercache ARGS` with `stdin` as its standard input.
pub fn answercache_with_stdin(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_answercache"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the answercache binary starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `answercache ARGS` with an empty standard input.
pub fn answercache(args: &[&str]) -> Run {
    answercache_with_stdin(args, b"")
}

/// A path as the `&str` the binary's arguments need.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// The entry file of `key` under `dir`.
pub fn entry_path(dir: &Path, key: &str) -> PathBuf {
    Layout::new(dir).entry_path(&key_hash(key.as_bytes()))
}

/// `entry_path` relative to `dir`, as the binary prints it.
pub fn entry_rel(dir: &Path, key: &str) -> String {
    entry_path(dir, key)
        .strip_prefix(dir)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Writes a valid entry file for `key` directly (not through the binary), e.g. one whose expiry
/// is already past.
pub fn place_entry(dir: &Path, key: &str, value: &[u8], meta: EntryMeta) -> PathBuf {
    let path = entry_path(dir, key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        format::encode(key.as_bytes(), value, meta, 3).unwrap(),
    )
    .unwrap();
    path
}

/// Stores `value` under `key` through `answercache set`.
pub fn set(dir: &Path, key: &str, value: &[u8]) {
    answercache_with_stdin(&["set", arg(dir), key], value).expect_code(0);
}

/// The cells of the first table row (or label/value pair) whose label is `label`: the line,
/// trimmed at the start, split at runs of two or more spaces (the tables pad columns with at
/// least three; cells never hold two spaces in a row).
pub fn cells(text: &str, label: &str) -> Vec<String> {
    for line in text.lines() {
        let parts = split_cells(line.trim_start());
        if parts.first().map(String::as_str) == Some(label) {
            return parts;
        }
    }
    panic!("no row {label:?} in:\n{text}");
}

fn split_cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut spaces = 0;
    for c in line.chars() {
        if c == ' ' {
            spaces += 1;
            continue;
        }
        if spaces >= 2 && !cur.is_empty() {
            cells.push(std::mem::take(&mut cur));
        } else if spaces == 1 {
            cur.push(' ');
        }
        spaces = 0;
        cur.push(c);
    }
    if !cur.is_empty() {
        cells.push(cur);
    }
    cells
}

/// The number a human cell starts with: `1,234` -> 1234.
pub fn count(cell: &str) -> u64 {
    let digits: String = cell
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{cell:?} starts with no number"))
}

/// The exact byte count of a human bytes cell: `3.9 KiB (4,012 B)` -> 4012, `512 B` -> 512.
pub fn exact_bytes(cell: &str) -> u64 {
    match cell.split_once('(') {
        Some((_, exact)) => count(exact),
        None => {
            assert!(cell.ends_with(" B"), "{cell:?} is not a byte count");
            count(cell)
        }
    }
}

/// Stdout of a `--json` run, parsed by serde_json: exactly one document.
#[track_caller]
pub fn doc(run: &Run) -> Value {
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", run.out()))
}

/// The names of an object's fields, sorted.
#[track_caller]
pub fn fields(v: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = v.pairs().keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// Accessors that panic with the document when it does not have the expected shape.
pub trait JsonExt {
    /// A field of an object; panics if absent.
    fn at(&self, key: &str) -> &Value;
    /// An unsigned integer.
    fn u64(&self) -> u64;
    /// A string.
    fn str(&self) -> &str;
    /// An array's items.
    fn items(&self) -> &[Value];
    /// An object's fields.
    fn pairs(&self) -> &Map<String, Value>;
}

impl JsonExt for Value {
    #[track_caller]
    fn at(&self, key: &str) -> &Value {
        self.pairs()
            .get(key)
            .unwrap_or_else(|| panic!("no field {key:?} in {self}"))
    }

    #[track_caller]
    fn u64(&self) -> u64 {
        self.as_u64()
            .unwrap_or_else(|| panic!("{self} is not a u64"))
    }

    #[track_caller]
    fn str(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("{self} is not a string"))
    }

    #[track_caller]
    fn items(&self) -> &[Value] {
        self.as_array()
            .unwrap_or_else(|| panic!("{self} is not an array"))
    }

    #[track_caller]
    fn pairs(&self) -> &Map<String, Value> {
        self.as_object()
            .unwrap_or_else(|| panic!("{self} is not an object"))
    }
}

/// The header of `key`'s entry file.
pub fn header(dir: &Path, key: &str) -> Header {
    let bytes = std::fs::read(entry_path(dir, key)).unwrap();
    let limits = Limits::default();
    format::parse_header(&bytes, &limits).unwrap()
}

/// The length of `key`'s entry file.
pub fn file_len(dir: &Path, key: &str) -> u64 {
    entry_path(dir, key).metadata().unwrap().len()
}

#[test]
fn table_cells_and_byte_counts_read_back() {
    assert_eq!(
        split_cells("  healthy   124   399.6 KiB (409,147 B)"),
        ["healthy", "124", "399.6 KiB (409,147 B)"]
    );
    assert_eq!(
        split_cells("compression ratio   4.53x"),
        ["compression ratio", "4.53x"]
    );
    assert_eq!(count("1,234 files"), 1234);
    assert_eq!(exact_bytes("399.6 KiB (409,147 B)"), 409_147);
    assert_eq!(exact_bytes("512 B"), 512);
}

/// Every file and directory under `dir` (relative paths), each file with its bytes: two
/// snapshots are equal when nothing was created, removed or changed, byte for byte.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}
