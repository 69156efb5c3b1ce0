//! `get`, `set` and `rm`: one key at a time, through a real [`TieredCache`] opened on `DIR`.
//!
//! Going through the library, not around it, is the point: the value `set` stores is written
//! the way every process writes (temp file, fsync, rename, directory fsync), and `get` checks it
//! the way every process checks (checksum before inflating, stored key compared, a corrupted
//! file quarantined, an expired one deleted). The cache is opened with the library defaults
//! (`min_free_bytes` included: an operator's `set` never fills a disk other programs need).
//!
//! Why `flush` and not `close`: `close` also waits for the background tasks, among them the
//! startup scan that indexes the directory, which on a large cache takes longer than the
//! command itself. `flush` waits for what matters here, the queued write or delete, and
//! reports an entry that could not be persisted; the process then exits without waiting for the
//! (read-only) scan.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use answercache::fs::{FileRead, Fs, StdFs};
use answercache::warm::format::{parse_header, Header, Limits, HEADER_LEN};
use answercache::warm::layout::{key_hash, Layout};
use answercache::{Encoding, Stats, TieredCache};
use serde::Serialize;

use crate::error::{CliError, Kind};
use crate::json;
use crate::output::{self, Status};
use crate::table::{self, key as show_key};
use crate::walk;
use serde_json::value::RawValue;

/// Opens the cache on `dir` with every default but one: a command lives for one key, so it
/// compresses a large value before its write (`compress_in_background(false)`) instead of
/// leaving it stored for a compactor that the exit would stop.
async fn open(dir: &Path) -> Result<TieredCache, CliError> {
    let cache = TieredCache::builder(dir)
        .compress_in_background(false)
        .build()
        .await;
    cache.map_err(|e| {
        CliError::cache(
            &e,
            format!("cannot open the cache at {}: {e}", dir.display()),
        )
        .at(dir)
    })
}

/// The entry file of `key` and what its header says, if it is there and readable.
struct EntryInfo {
    path: PathBuf,
    rel: String,
    file_len: Option<u64>,
    header: Option<Header>,
}

fn entry_info(dir: &Path, key: &[u8]) -> EntryInfo {
    let path = Layout::new(dir).entry_path(&key_hash(key));
    let rel = walk::relative(dir, &path);
    let file_len = std::fs::symlink_metadata(&path).ok().map(|m| m.len());
    let limits = Limits::default();
    let header = match StdFs::new().read_prefix(&path, HEADER_LEN) {
        Ok(FileRead::Data(d)) => parse_header(&d, &limits).ok(),
        _ => None,
    };
    EntryInfo {
        path,
        rel,
        file_len,
        header,
    }
}

/// How `get` shows a value.
enum Shown<'a> {
    /// A JSON value (encoding `json`, or raw bytes that parse as JSON): its text as stored.
    Json(&'a RawValue),
    /// A bincode value (without `--raw`): its bytes name no type or field, so only the Rust
    /// type that wrote it can decode it. Not printed as text (exit 2, kind `undecodable`);
    /// `--json` gives its bytes in hex.
    Opaque(&'a [u8]),
    /// Anything else (a version-1 entry, raw bytes that are not JSON), and every value under
    /// `--raw`: the bytes as stored.
    Bytes(&'a [u8]),
}

impl<'a> Shown<'a> {
    fn of(value: &'a [u8], encoding: Encoding, raw: bool) -> Shown<'a> {
        if raw {
            return Shown::Bytes(value);
        }
        match encoding {
            Encoding::Json | Encoding::Raw => match json::as_json(value) {
                Some(v) => Shown::Json(v),
                None => Shown::Bytes(value),
            },
            Encoding::Bincode => Shown::Opaque(value),
            _ => Shown::Bytes(value),
        }
    }

    /// `json`, `text` (UTF-8 bytes) or `hex`: which field of the `--json` document holds the
    /// value, and as what.
    fn format(&self) -> &'static str {
        match self {
            Shown::Json(_) => "json",
            Shown::Bytes(b) if std::str::from_utf8(b).is_ok() => "text",
            Shown::Bytes(_) | Shown::Opaque(_) => "hex",
        }
    }
}

/// The `value` field of `get --json`: the JSON value itself, or the text of UTF-8 bytes.
#[derive(Serialize)]
#[serde(untagged)]
enum ValueField<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// `get --json`.
#[derive(Serialize)]
struct GetReport<'a> {
    key: String,
    found: bool,
    /// How the value's bytes were made (absent on a miss).
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    /// `json`: `value` is the JSON value; `text`: `value` is the bytes as a string; `hex`:
    /// `value_hex` holds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    value_format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<ValueField<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_bytes: Option<usize>,
    file: &'a str,
    file_bytes: Option<u64>,
    created_ms: Option<u64>,
    expires_ms: Option<u64>,
    notes: &'a [String],
}

/// Runs `get DIR KEY [--raw]`: the value on stdout (a JSON value as its JSON text and a
/// newline, anything else but bincode, and everything under `--raw`, as its stored bytes),
/// exit 1 on a miss; a bincode value without `--raw` is exit 2 (`--json` shows it in hex).
pub async fn get(dir: &Path, key: &[u8], raw: bool, json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    let cache = open(&dir).await?;
    let answer = cache
        .get_bytes_answer(key)
        .await
        .map_err(|e| CliError::cache(&e, format!("get {}: {e}", show_key(key))))?;
    let stats = cache.stats();
    let info = entry_info(&dir, key);
    // The library hides disk errors from callers (a sick disk is a miss); an operator asking
    // for one key wants to know, with the path and the cause.
    if answer.is_none() && stats.disk_errors > 0 {
        if let Some(e) = read_error(&info, &stats) {
            return Err(e);
        }
    }
    let notes = miss_notes(&stats);
    let shown = answer
        .as_ref()
        .map(|a| Shown::of(&a.value, a.encoding, raw));
    if json {
        let value = match &shown {
            Some(Shown::Json(v)) => Some(ValueField::Json(v)),
            Some(Shown::Bytes(b)) => std::str::from_utf8(b).ok().map(ValueField::Text),
            Some(Shown::Opaque(_)) | None => None,
        };
        let value_hex = match &shown {
            Some(Shown::Bytes(b) | Shown::Opaque(b)) if value.is_none() => Some(json::hex(b)),
            _ => None,
        };
        output::print_json(&GetReport {
            key: String::from_utf8_lossy(key).into_owned(),
            found: answer.is_some(),
            encoding: answer.as_ref().map(|a| a.encoding.name()),
            value_format: shown.as_ref().map(Shown::format),
            value,
            value_hex,
            value_bytes: answer.as_ref().map(|a| a.value.len()),
            file: &info.rel,
            file_bytes: info.file_len,
            created_ms: info.header.map(|h| h.meta.created_ms),
            expires_ms: info.header.map(|h| h.meta.expires_ms),
            notes: &notes,
        })?;
    } else {
        match &shown {
            Some(Shown::Json(v)) => {
                output::write_stdout(format!("{}\n", v.get()).as_bytes())?;
            }
            Some(Shown::Bytes(b)) => output::write_stdout(b)?,
            Some(Shown::Opaque(b)) => {
                return Err(CliError::new(
                    Kind::Undecodable,
                    format!(
                        "{}: stored with the bincode codec ({}): bincode bytes name no type or field, so the value cannot be shown without the Rust type that wrote it; --raw prints its stored bytes, --json shows them in hex",
                        show_key(key),
                        table::bytes(b.len() as u64)
                    ),
                )
                .at(&info.path))
            }
            None => {
                eprintln!("{}: not cached in {}", show_key(key), dir.display());
                for n in &notes {
                    eprintln!("note: {n}");
                }
            }
        }
    }
    Ok(Status::no_if(answer.is_none()))
}

/// Why a `get` missed although a file may have been there.
fn miss_notes(s: &Stats) -> Vec<String> {
    let mut notes = Vec::new();
    for (reason, n) in &s.corrupted_by_reason {
        notes.push(format!(
            "the entry file was corrupted ({reason}{}) and moved to the quarantine",
            if *n > 1 {
                format!(", {n} files")
            } else {
                String::new()
            }
        ));
    }
    if s.newer_version_skipped > 0 {
        notes.push(
            "the entry file was written by a newer answercache format; left in place".to_owned(),
        );
    }
    if s.warm_expirations > 0 {
        notes.push("the entry had expired; its file was deleted".to_owned());
    }
    notes
}

/// The message for a `get` that a disk error may have turned into a miss: the cause as the OS
/// tells it when reading the file again fails, else the kind the cache counted. `None` when
/// the file is simply not there (the error was elsewhere, e.g. preparing the directory at
/// open): a plain miss.
fn read_error(info: &EntryInfo, s: &Stats) -> Option<CliError> {
    let kinds: Vec<&str> = s.disk_errors_by_kind.keys().map(String::as_str).collect();
    match StdFs::new().read_file(&info.path, u64::MAX) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(CliError::io(&info.path, e)),
        Ok(_) => Some(CliError::io(
            &info.path,
            format!(
                "the cache met a disk error ({}) reading the entry",
                kinds.join(", ")
            ),
        )),
    }
}

/// `set --json`.
#[derive(Serialize)]
struct SetReport<'a> {
    key: String,
    /// `raw`: `set` stores the bytes it reads.
    encoding: Option<&'static str>,
    value_bytes: usize,
    file: &'a str,
    file_bytes: Option<u64>,
    expires_ms: u64,
}

/// Runs `set DIR KEY [--ttl D]` with the value read from stdin.
pub async fn set(
    dir: &Path,
    key: &[u8],
    ttl: Option<Duration>,
    json: bool,
) -> Result<Status, CliError> {
    if std::io::stdin().is_terminal() {
        eprintln!("reading the value from stdin; end it with Ctrl-D");
    }
    // One byte over the limit is enough to know it is too large.
    let mut value = Vec::new();
    std::io::stdin()
        .take(answercache::defaults::DEFAULT_MAX_ENTRY_BYTES as u64 + 1)
        .read_to_end(&mut value)
        .map_err(|e| CliError::new(Kind::Io, format!("reading the value from stdin: {e}")))?;
    // A DIR that is a file, or lies below one, is the same usage error as for every other
    // command (`not-a-directory`), not an I/O error of creating it.
    let below_a_file = dir
        .ancestors()
        .any(|a| std::fs::metadata(a).is_ok_and(|m| !m.is_dir()));
    if below_a_file {
        return Err(CliError::new(
            Kind::NotADirectory,
            format!("{}: not a directory", dir.display()),
        )
        .at(dir));
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let cache = open(dir).await?;
    let stored = match ttl {
        Some(ttl) => cache.set_bytes_with_ttl(key, &value, ttl).await,
        None => cache.set_bytes(key, &value).await,
    };
    stored.map_err(|e| CliError::cache(&e, format!("set {}: {e}", show_key(key))))?;
    cache.flush().await.map_err(|e| {
        let message = format!("{}: {} not stored: {e}", dir.display(), show_key(key));
        CliError::cache(&e, message).at(dir)
    })?;
    let info = entry_info(dir, key);
    let expires_ms = info.header.map_or(0, |h| h.meta.expires_ms);
    if json {
        output::print_json(&SetReport {
            key: String::from_utf8_lossy(key).into_owned(),
            encoding: info.header.as_ref().map(walk::encoding_name),
            value_bytes: value.len(),
            file: &info.rel,
            file_bytes: info.file_len,
            expires_ms,
        })?;
    } else {
        println!(
            "stored {}: {} -> {} ({} on disk){}",
            show_key(key),
            table::bytes(value.len() as u64),
            info.rel,
            info.file_len.map_or("?".into(), table::bytes),
            if expires_ms == 0 {
                ", never expires".to_owned()
            } else {
                format!(", expires {}", table::time_ms(expires_ms))
            }
        );
    }
    Ok(Status::Ok)
}

/// `rm --json`.
#[derive(Serialize)]
struct RmReport<'a> {
    key: String,
    removed: bool,
    /// The removed entry's encoding, as its header said (`null` when there was no readable
    /// entry file).
    encoding: Option<&'static str>,
    file: &'a str,
    file_bytes: Option<u64>,
}

/// Runs `rm DIR KEY`: exit 1 when there was nothing to remove.
pub async fn rm(dir: &Path, key: &[u8], json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    // Opened first: the cache moves a `v1/` of the previous layout into `v2/`, where the
    // entry is then looked for.
    let cache = open(&dir).await?;
    let before = entry_info(&dir, key);
    cache
        .remove(key)
        .await
        .map_err(|e| CliError::cache(&e, format!("rm {}: {e}", show_key(key))))?;
    cache.flush().await.map_err(|e| {
        let message = format!("{}: {} not removed: {e}", dir.display(), show_key(key));
        CliError::cache(&e, message).at(&dir)
    })?;
    let removed = before.file_len.is_some();
    if json {
        output::print_json(&RmReport {
            key: String::from_utf8_lossy(key).into_owned(),
            removed,
            encoding: before.header.as_ref().map(walk::encoding_name),
            file: &before.rel,
            file_bytes: before.file_len,
        })?;
    } else if let Some(len) = before.file_len {
        println!(
            "removed {}: {} ({})",
            show_key(key),
            before.rel,
            table::bytes(len)
        );
    } else {
        eprintln!("{}: not cached in {}", show_key(key), dir.display());
    }
    Ok(Status::no_if(!removed))
}

/// Parses a TTL: `90s`, `15m`, `2h`, `7d`, `500ms`, combinations (`1h30m`), or plain seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: expected e.g. 90s, 15m, 2h, 7d, 1h30m, 500ms");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = rest.parse::<u64>() {
        total = Duration::from_secs(secs);
        rest = "";
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
        total = total
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(bad)?;
    }
    if total.is_zero() {
        return Err(format!("invalid duration {text:?}: a TTL must be positive"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("5 minutes").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
