//! Shared fixtures: running the built binary, reading its aligned tables back, a small JSON
//! parser (the crate has no serde_json), and planting entry files at a key's path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tiercache::warm::format::{self, EntryMeta};
use tiercache::warm::layout::{key_hash, Layout};

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

/// Runs `tiercache ARGS` with `stdin` as its standard input.
pub fn tiercache_with_stdin(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiercache"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tiercache binary starts");
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

/// Runs `tiercache ARGS` with an empty standard input.
pub fn tiercache(args: &[&str]) -> Run {
    tiercache_with_stdin(args, b"")
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

/// Stores `value` under `key` through `tiercache set`.
pub fn set(dir: &Path, key: &str, value: &[u8]) {
    tiercache_with_stdin(&["set", arg(dir), key], value).expect_code(0);
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

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Numbers are kept as written, so integers compare exactly.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses a whole document; panics on anything that is not JSON.
    pub fn parse(text: &str) -> Json {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing characters after the JSON value");
        v
    }

    /// A field of an object; panics if absent.
    #[track_caller]
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(pairs) => pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no field {key:?} in {self:?}")),
            _ => panic!("{self:?} is not an object"),
        }
    }

    /// An unsigned integer.
    #[track_caller]
    pub fn u64(&self) -> u64 {
        match self {
            Json::Num(n) => n.parse().unwrap_or_else(|_| panic!("{n} is not a u64")),
            _ => panic!("{self:?} is not a number"),
        }
    }

    /// A string.
    #[track_caller]
    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("{self:?} is not a string"),
        }
    }

    /// An array's items.
    #[track_caller]
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => panic!("{self:?} is not an array"),
        }
    }

    /// An object's pairs.
    #[track_caller]
    pub fn pairs(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(v) => v,
            _ => panic!("{self:?} is not an object"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.s.get(self.i).copied(),
            Some(c),
            "expected {:?} at byte {}",
            c as char,
            self.i
        );
        self.i += 1;
    }

    fn peek(&mut self) -> u8 {
        self.ws();
        *self.s.get(self.i).expect("unexpected end of JSON")
    }

    fn value(&mut self) -> Json {
        match self.peek() {
            b'{' => {
                self.eat(b'{');
                let mut pairs = Vec::new();
                if self.peek() == b'}' {
                    self.i += 1;
                    return Json::Obj(pairs);
                }
                loop {
                    let k = self.string();
                    self.eat(b':');
                    pairs.push((k, self.value()));
                    match self.peek() {
                        b',' => self.i += 1,
                        _ => {
                            self.eat(b'}');
                            return Json::Obj(pairs);
                        }
                    }
                }
            }
            b'[' => {
                self.eat(b'[');
                let mut items = Vec::new();
                if self.peek() == b']' {
                    self.i += 1;
                    return Json::Arr(items);
                }
                loop {
                    items.push(self.value());
                    match self.peek() {
                        b',' => self.i += 1,
                        _ => {
                            self.eat(b']');
                            return Json::Arr(items);
                        }
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                assert!(n.parse::<f64>().is_ok(), "bad number {n:?} at byte {start}");
                Json::Num(n.to_owned())
            }
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Json {
        assert!(self.s[self.i..].starts_with(w.as_bytes()), "bad literal");
        self.i += w.len();
        v
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = Vec::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).unwrap(),
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                            self.i += 4;
                            let c = char::from_u32(u32::from_str_radix(hex, 16).unwrap())
                                .expect("no surrogates in this output");
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        _ => panic!("bad escape \\{}", e as char),
                    }
                }
                c if c < 0x20 => panic!("raw control character in a JSON string"),
                c => out.push(c),
            }
        }
    }
}

#[test]
fn the_test_parser_reads_json() {
    let v = Json::parse(r#" {"a": [1, -2.5e3, true, null], "b": {"c": "x\"\u0041\n"}, "d": {}} "#);
    assert_eq!(v.get("a").items().len(), 4);
    assert_eq!(v.get("a").items()[0].u64(), 1);
    assert_eq!(v.get("b").get("c").str(), "x\"A\n");
    assert!(v.get("d").pairs().is_empty());
    assert_eq!(
        split_cells("  healthy   124   399.6 KiB (409,147 B)"),
        ["healthy", "124", "399.6 KiB (409,147 B)"]
    );
    assert_eq!(exact_bytes("399.6 KiB (409,147 B)"), 409_147);
    assert_eq!(exact_bytes("512 B"), 512);
}
