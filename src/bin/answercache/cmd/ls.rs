//! `answercache ls DIR`: every entry of a cache directory, one row each: hash, stored size,
//! value size, age, expiry, encoding and key.
//!
//! File names are blake3 hashes of the keys, so the key is read from the file itself, and
//! every file is read whole and checked exactly as `verify` checks it
//! ([`answercache::verify::check_entry`]: checksum before inflating, the stored key hashed
//! against the name, inflation to the end): nothing of a file that fails is shown as entry
//! data. Such a file is a `corrupt` row with its reason; an entry of a newer format is a
//! `newer-version` row, not judged. No cache is opened and nothing is changed.
//!
//! Rows come in the walk's order, which is the order of the hashes, and are written as the
//! files are read: memory stays flat on any size of directory (sort with `sort` or `jq` for
//! another order). Exit status 0 (corrupt rows included: `verify` is the check), 2 when a file
//! or directory could not be read (its row or the `errors` list says which).

use std::path::Path;

use answercache::clock::system_now_ms;
use answercache::fs::StdFs;
use answercache::verify::{check_entry, EntryCheck};
use answercache::warm::format::Limits;
use answercache::warm::layout::hex;
use answercache::warm::walk::WalkEntry;
use serde::Serialize;

use crate::error::CliError;
use crate::json;
use crate::output::{self, Progress, Status};
use crate::stream::{JsonArrayDoc, Stdout};
use crate::table;
use crate::walk;

/// Longest key text a text row shows (the JSON row has all of it).
const KEY_CHARS: usize = 200;

/// One entry as `ls --json` lists it. Every field is present in every row, `null` when it
/// does not apply: only a `live` or `expired` row has data read from the file.
#[derive(Serialize)]
struct Row {
    /// The 64 hex characters of the file name (blake3 of the key).
    hash: String,
    /// Path relative to the cache directory.
    file: String,
    /// `live`, `expired`, `corrupt`, `newer-version` or `unreadable`.
    state: &'static str,
    /// The file's length.
    file_bytes: u64,
    /// The value's length, uncompressed.
    value_bytes: Option<u64>,
    created_ms: Option<u64>,
    /// `now_ms - created_ms` (0 for an entry from the future).
    age_ms: Option<u64>,
    /// 0: never expires.
    expires_ms: Option<u64>,
    /// Time left; 0 once expired, `null` when it never expires.
    expires_in_ms: Option<u64>,
    /// `raw`, `json`, `bincode` or `unrecorded` (format version 1).
    encoding: Option<&'static str>,
    /// The key, when it is UTF-8 (JSON escapes what needs it).
    key: Option<String>,
    /// The key's bytes in hex, when it is not UTF-8.
    key_hex: Option<String>,
    /// Why a `corrupt` row is (a stable reason name, as `verify` says).
    reason: Option<&'static str>,
    /// What exactly is wrong (`corrupt`), the version (`newer-version`), the error
    /// (`unreadable`).
    detail: Option<String>,
    /// The key's bytes, for the text row.
    #[serde(skip)]
    key_bytes: Option<Vec<u8>>,
}

impl Row {
    fn new(root: &Path, e: &WalkEntry, state: &'static str, file_bytes: u64) -> Row {
        Row {
            hash: hex(&e.hash),
            file: walk::relative(root, &e.path),
            state,
            file_bytes,
            value_bytes: None,
            created_ms: None,
            age_ms: None,
            expires_ms: None,
            expires_in_ms: None,
            encoding: None,
            key: None,
            key_hex: None,
            reason: None,
            detail: None,
            key_bytes: None,
        }
    }

    /// The row of `check`; `None` for a file that vanished since the listing.
    fn of(
        root: &Path,
        e: &WalkEntry,
        check: std::io::Result<EntryCheck>,
        now_ms: u64,
    ) -> Option<Row> {
        let row = match check {
            Ok(EntryCheck::Healthy { header, key, len }) => {
                let meta = header.meta;
                let expired = meta.is_expired(now_ms);
                let mut row = Row::new(root, e, if expired { "expired" } else { "live" }, len);
                row.value_bytes = Some(header.uncompressed_len);
                row.created_ms = Some(meta.created_ms);
                row.age_ms = Some(now_ms.saturating_sub(meta.created_ms));
                row.expires_ms = Some(meta.expires_ms);
                row.expires_in_ms =
                    (meta.expires_ms != 0).then(|| meta.expires_ms.saturating_sub(now_ms));
                row.encoding = Some(walk::encoding_name(&header));
                match String::from_utf8(key) {
                    Ok(text) => {
                        row.key_bytes = Some(text.as_bytes().to_vec());
                        row.key = Some(text);
                    }
                    Err(e) => {
                        row.key_hex = Some(json::hex(e.as_bytes()));
                        row.key_bytes = Some(e.into_bytes());
                    }
                }
                row
            }
            Ok(EntryCheck::NewerVersion { version, len }) => {
                let mut row = Row::new(root, e, "newer-version", len);
                row.detail = Some(format!("format version {version}"));
                row
            }
            Ok(EntryCheck::Corrupt {
                reason,
                detail,
                len,
            }) => {
                let mut row = Row::new(root, e, "corrupt", len);
                row.reason = Some(reason.name());
                row.detail = Some(detail);
                row
            }
            Ok(EntryCheck::Vanished) => return None,
            // `EntryCheck` may grow: what this build does not know is not shown as data.
            Ok(_) => {
                let mut row = Row::new(root, e, "unreadable", e.len);
                row.detail = Some("not understood by this build".into());
                row
            }
            Err(err) => {
                let mut row = Row::new(root, e, "unreadable", e.len);
                row.detail = Some(format!("read: {err}"));
                row
            }
        };
        Some(row)
    }

    /// The text row: fixed-width columns, the key last.
    fn text(&self) -> String {
        let size = table::bytes(self.file_bytes);
        let rest = match self.state {
            "live" | "expired" => {
                let expires = match self.expires_in_ms {
                    None => "never".to_owned(),
                    Some(0) => "expired".to_owned(),
                    Some(ms) => format!("in {}", table::span(ms)),
                };
                let key = self.key_bytes.as_deref().map(key_cell).unwrap_or_default();
                format!(
                    "{:>10}   {:>8}   {expires:<11}   {:<10}   {key}",
                    self.value_bytes.map(table::bytes).unwrap_or_default(),
                    self.age_ms.map(table::span).unwrap_or_default(),
                    self.encoding.unwrap_or_default(),
                )
            }
            "corrupt" => format!(
                "corrupt: {}: {}",
                self.reason.unwrap_or_default(),
                self.detail.as_deref().unwrap_or_default()
            ),
            "newer-version" => format!(
                "newer format ({}): left alone",
                self.detail.as_deref().unwrap_or_default()
            ),
            state => format!("{state}: {}", self.detail.as_deref().unwrap_or_default()),
        };
        format!("{:<64}   {size:>10}   {rest}", self.hash)
            .trim_end()
            .to_owned()
            + "\n"
    }
}

/// A key as a text cell: quoted and escaped, cut at [`KEY_CHARS`].
fn key_cell(key: &[u8]) -> String {
    let shown = table::key(key);
    if shown.chars().count() <= KEY_CHARS {
        return shown;
    }
    let cut: String = shown.chars().take(KEY_CHARS).collect();
    format!("{cut}... ({} bytes)", key.len())
}

/// The start of the `ls --json` document, before the rows.
#[derive(Serialize)]
struct Head {
    dir: String,
    /// The time ages and expiries are computed against, unix ms.
    now_ms: u64,
}

/// The end of the `ls` output: counts by state (and the text footer).
#[derive(Serialize, Default)]
struct Totals {
    /// Rows listed.
    count: u64,
    /// File bytes of the rows listed.
    bytes: u64,
    live: u64,
    expired: u64,
    corrupt: u64,
    newer_version: u64,
    unreadable: u64,
    /// Entry files removed by another process between the listing and the read: no row.
    vanished: u64,
    /// Foreign names under the entries directory: not entries, no row.
    foreign_files: u64,
    /// Paths that could not be listed or read, with the error.
    #[serde(serialize_with = "json::path_errors")]
    errors: Vec<(String, String)>,
}

impl Totals {
    fn add(&mut self, row: &Row) {
        self.count += 1;
        self.bytes += row.file_bytes;
        match row.state {
            "live" => self.live += 1,
            "expired" => self.expired += 1,
            "corrupt" => self.corrupt += 1,
            "newer-version" => self.newer_version += 1,
            _ => {
                self.unreadable += 1;
                let detail = row.detail.clone().unwrap_or_default();
                self.errors.push((row.file.clone(), detail));
            }
        }
    }

    fn footer(&self, dir: &Path) -> String {
        let mut out = format!(
            "\n{} {}, {}: {} live, {} expired, {} corrupt, {} newer format, {} unreadable\n",
            table::count(self.count),
            if self.count == 1 { "entry" } else { "entries" },
            table::bytes_exact(self.bytes),
            table::count(self.live),
            table::count(self.expired),
            table::count(self.corrupt),
            table::count(self.newer_version),
            table::count(self.unreadable),
        );
        if self.corrupt > 0 {
            out.push_str(&format!(
                "note: `answercache verify {} --repair` moves the corrupt files to the quarantine\n",
                dir.display()
            ));
        }
        match self.foreign_files {
            0 => {}
            1 => out.push_str("note: 1 foreign file (not an entry) left out\n"),
            n => out.push_str(&format!(
                "note: {} foreign files (not entries) left out\n",
                table::count(n)
            )),
        }
        out
    }
}

/// Where the rows go.
enum Sink {
    /// Text rows on stdout, after a header written with the first row (or the footer).
    Text {
        out: Stdout,
        header: Option<String>,
    },
    Json(JsonArrayDoc),
}

impl Sink {
    fn row(&mut self, row: &Row) -> Result<(), CliError> {
        match self {
            Sink::Text { out, header } => {
                if let Some(h) = header.take() {
                    out.write(h.as_bytes())?;
                }
                out.write(row.text().as_bytes())
            }
            Sink::Json(doc) => doc.item(row),
        }
    }

    fn closed(&self) -> bool {
        match self {
            Sink::Text { out, .. } => out.closed(),
            Sink::Json(doc) => doc.closed(),
        }
    }

    fn end(self, dir: &Path, totals: &Totals) -> Result<(), CliError> {
        match self {
            Sink::Text { mut out, header } => {
                if let Some(h) = header {
                    out.write(h.as_bytes())?;
                }
                out.write(totals.footer(dir).as_bytes())?;
                out.flush()
            }
            Sink::Json(doc) => doc.end(totals),
        }
    }
}

/// The text header: the directory, the column names and a rule.
fn text_header(dir: &Path) -> String {
    let columns = format!(
        "{:<64}   {:>10}   {:>10}   {:>8}   {:<11}   {:<10}   key",
        "hash", "size", "value", "age", "expires", "encoding"
    );
    format!(
        "cache directory {}\n\n{columns}\n{}\n",
        dir.display(),
        "-".repeat(columns.len())
    )
}

/// Runs `ls DIR`.
pub fn run(dir: &Path, json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    output::move_previous_layout(&dir)?;
    let fs = StdFs::new();
    let limits = Limits::default();
    let now_ms = system_now_ms();
    let mut sink = if json {
        let head = Head {
            dir: dir.display().to_string(),
            now_ms,
        };
        Sink::Json(JsonArrayDoc::new(&head, "entries")?)
    } else {
        Sink::Text {
            out: Stdout::new(),
            header: Some(text_header(&dir)),
        }
    };
    // Rows printed on the terminal show the progress themselves (and a bar would tear them).
    let quiet = json || std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut bar = Progress::scan(&fs, &dir, "ls:", "entries read", quiet);
    let mut totals = Totals::default();
    let mut failed = None;
    let summary = walk::entries(&fs, &dir, &mut |e| {
        bar.inc();
        let Some(row) = Row::of(&dir, e, check_entry(&fs, e, &limits), now_ms) else {
            totals.vanished += 1;
            return true;
        };
        totals.add(&row);
        if let Err(err) = sink.row(&row) {
            failed = Some(err);
            return false;
        }
        // A reader that left (`| head`) wants no more rows.
        !sink.closed()
    });
    bar.finish();
    if let Some(err) = failed {
        return Err(err);
    }
    let summary = summary?;
    totals.foreign_files = summary.foreign;
    totals.errors.extend(summary.errors);
    sink.end(&dir, &totals)?;
    output::fail_on(&dir, &totals.errors)?;
    Ok(Status::Ok)
}
