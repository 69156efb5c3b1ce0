//! `answercache quarantine list|show|clear DIR [NAME]`: the files the cache (or `verify
//! --repair`) moved aside, with the reason each was judged corrupted.
//!
//! A NAME is accepted only if it is a plain file name that parses as a quarantine name
//! (`<time>-<reason>-<rest>`): `show` and `clear` can never reach outside
//! `<DIR>/quarantine/`. Reads go through `StdFs`, which follows no symlink: a planted symlink
//! in the quarantine is shown and removed as a link, its target never touched.

use std::path::Path;

use answercache::fs::{FileKind, FileRead, Fs, StdFs};
use answercache::warm::format::{parse_header, Header, Limits, HEADER_LEN};
use answercache::warm::layout::Layout;
use answercache::warm::quarantine::{self, QuarantinedFile, SIDECAR_SUFFIX};

use crate::error::{CliError, Kind};
use crate::json::{self, Pairs};
use crate::output::{self, Status};
use crate::table::{self, Table};
use crate::walk;

/// Bytes of a quarantined file `show` reads: the header and up to 1 KiB of the key.
const SHOW_READ: usize = HEADER_LEN + 1024;
/// Bytes of it `show` dumps in hex: the header and the start of the key.
const SHOW_DUMP: usize = 128;
/// Longest key text `show` prints.
const SHOW_KEY_CHARS: usize = 200;
/// Longest sidecar read (they are five short lines).
const SIDECAR_MAX: u64 = 64 * 1024;

fn qdir(dir: &Path) -> std::path::PathBuf {
    Layout::new(dir).quarantine_dir().to_path_buf()
}

fn listed(dir: &Path) -> Result<Vec<QuarantinedFile>, CliError> {
    let q = qdir(dir);
    quarantine::list(&StdFs::new(), &q).map_err(|e| CliError::io(&q, e))
}

/// Checks a NAME given on the command line: a plain quarantine file name (a sidecar name is
/// taken as the file it describes).
fn valid_name(name: &str) -> Result<&str, CliError> {
    let name = name.strip_suffix(SIDECAR_SUFFIX).unwrap_or(name);
    if name.contains('/') || name.contains('\0') || quarantine::parse_name(name).is_none() {
        return Err(CliError::usage(format!(
            "{name:?} is not a quarantined file name (expected <time>-<reason>-<name>, as `quarantine list` shows)"
        )));
    }
    Ok(name)
}

/// `quarantine show|clear NAME` when there is no such file: exit 1, "not found".
fn not_there(q: &Path, name: &str) -> CliError {
    CliError::new(
        Kind::NotFound,
        format!("no quarantined file {name} in {}", q.display()),
    )
    .at(&q.join(name))
}

/// `quarantine list --json`.
#[derive(serde::Serialize)]
struct ListReport<'a> {
    dir: String,
    files: usize,
    bytes: u64,
    quarantined: &'a [QuarantinedFile],
}

/// `quarantine show --json`: the file as `list` shows it, then what `show` reads.
#[derive(serde::Serialize)]
struct ShowReport<'a> {
    #[serde(flatten)]
    file: &'a QuarantinedFile,
    path: String,
    kind: &'static str,
    /// The sidecar's record, in its order (empty when the sidecar is missing).
    sidecar: Pairs<'a>,
    /// `null` when the header does not parse.
    header: Option<HeaderDoc>,
    key: Option<String>,
    head_hex: String,
}

/// What a quarantined file's header says.
#[derive(serde::Serialize)]
struct HeaderDoc {
    version: u16,
    flags: u16,
    encoding: &'static str,
    key_len: u32,
    created_ms: u64,
    expires_ms: u64,
    payload_len: u64,
    uncompressed_len: u64,
}

impl HeaderDoc {
    fn of(h: &Header) -> HeaderDoc {
        HeaderDoc {
            version: h.version,
            flags: h.flags,
            encoding: walk::encoding_name(h),
            key_len: h.key_len,
            created_ms: h.meta.created_ms,
            expires_ms: h.meta.expires_ms,
            payload_len: h.payload_len,
            uncompressed_len: h.uncompressed_len,
        }
    }
}

/// `quarantine clear --json`; under `--dry-run` the same fields, for what would be removed.
#[derive(serde::Serialize)]
struct ClearReport<'a> {
    dir: String,
    dry_run: bool,
    removed: u64,
    removed_bytes: u64,
    orphan_sidecars_removed: u64,
    /// The files removed (or that would be), as `list` shows them.
    files: &'a [&'a QuarantinedFile],
}

/// Runs `quarantine list DIR`.
pub fn list(dir: &Path, json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    let files = listed(&dir)?;
    let bytes: u64 = files.iter().map(|f| f.len).sum();
    if json {
        output::print_json(&ListReport {
            dir: qdir(&dir).display().to_string(),
            files: files.len(),
            bytes,
            quarantined: &files,
        })?;
        return Ok(Status::Ok);
    }
    println!("quarantine {}", qdir(&dir).display());
    if files.is_empty() {
        println!("empty");
        return Ok(Status::Ok);
    }
    println!();
    let mut t = Table::new(["name", "reason", "quarantined at", "size"]).left_aligned(&[1, 2]);
    for f in &files {
        t.row(
            f.name.clone(),
            [
                f.reason.clone(),
                table::time_ms(f.time_ms),
                table::bytes(f.len),
            ],
        );
    }
    print!("{t}");
    println!(
        "\n{} {}, {}",
        table::count(files.len() as u64),
        if files.len() == 1 { "file" } else { "files" },
        table::bytes_exact(bytes)
    );
    Ok(Status::Ok)
}

/// Runs `quarantine show DIR NAME`: the sidecar's record, what the header says, and the first
/// bytes. Exit 1 when there is no such file.
pub fn show(dir: &Path, name: &str, json: bool) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    let name = valid_name(name)?;
    let q = qdir(&dir);
    let Some(file) = listed(&dir)?.into_iter().find(|f| f.name == name) else {
        return Err(not_there(&q, name));
    };
    let path = q.join(name);
    let sidecar_path = q.join(format!("{name}{SIDECAR_SUFFIX}"));
    let sidecar: Vec<(String, String)> = match StdFs::new().read_file(&sidecar_path, SIDECAR_MAX) {
        Ok(FileRead::Data(d)) => String::from_utf8_lossy(&d)
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        // A sidecar is written after the move and may be missing after a crash.
        _ => Vec::new(),
    };
    let kind = std::fs::symlink_metadata(&path)
        .map(|m| FileKind::of(m.file_type()))
        .map_err(|e| CliError::io(&path, e))?;
    let head = match StdFs::new().read_prefix(&path, SHOW_READ) {
        Ok(FileRead::Data(d)) => d,
        _ => Vec::new(),
    };
    let limits = Limits::default();
    let header = parse_header(&head, &limits).ok();
    let key = header.map(|h| {
        let end = (HEADER_LEN + h.key_len as usize).min(head.len());
        String::from_utf8_lossy(&head[HEADER_LEN.min(end)..end]).into_owned()
    });
    let head = &head[..head.len().min(SHOW_DUMP)];
    if json {
        output::print_json(&ShowReport {
            file: &file,
            path: path.display().to_string(),
            kind: kind.describe(),
            sidecar: Pairs(&sidecar),
            header: header.as_ref().map(HeaderDoc::of),
            key,
            head_hex: json::hex(head),
        })?;
        return Ok(Status::Ok);
    }
    let mut rows: Vec<(&str, String)> = vec![
        ("name", file.name.clone()),
        ("path", path.display().to_string()),
        ("kind", kind.describe().to_owned()),
        ("size", table::bytes_exact(file.len)),
        ("reason", file.reason.clone()),
        ("quarantined at", table::time_ms(file.time_ms)),
    ];
    for (k, v) in &sidecar {
        if k == "detail" || k == "original" {
            rows.push((k.as_str(), v.clone()));
        }
    }
    if sidecar.is_empty() {
        rows.push(("sidecar", "missing".into()));
    }
    match (header, &key) {
        (Some(h), Some(key)) => {
            rows.push((
                "header",
                format!(
                    "v{} flags {:#06x}, key {} B, payload {} B -> value {} B",
                    h.version, h.flags, h.key_len, h.payload_len, h.uncompressed_len
                ),
            ));
            rows.push(("encoding", walk::encoding_name(&h).to_owned()));
            rows.push(("created", table::time_ms(h.meta.created_ms)));
            rows.push(("expires", table::time_ms(h.meta.expires_ms)));
            let shown: String = key.chars().take(SHOW_KEY_CHARS).collect();
            let cut = if shown.len() < key.len() || (h.key_len as usize) > key.len() {
                " (cut)"
            } else {
                ""
            };
            rows.push(("key", format!("{shown:?}{cut}")));
        }
        _ => rows.push(("header", "unreadable".into())),
    }
    print!("{}", table::pairs(&rows));
    if !head.is_empty() {
        println!("\nfirst {} bytes:", head.len());
        print!("{}", hexdump(head));
    }
    Ok(Status::Ok)
}

/// Runs `quarantine clear DIR [NAME] [--dry-run]`: deletes one quarantined file (exit 1 if
/// there is no such file) or all of them, with their sidecars. With `dry_run`, deletes nothing
/// and reports what it would delete: the same document, `dry_run` true.
pub fn clear(
    dir: &Path,
    name: Option<&str>,
    dry_run: bool,
    json: bool,
) -> Result<Status, CliError> {
    let dir = output::existing_dir(dir)?;
    let q = qdir(&dir);
    let name = name.map(valid_name).transpose()?;
    let files = listed(&dir)?;
    let chosen: Vec<&QuarantinedFile> = match name {
        Some(name) => {
            let found: Vec<_> = files.iter().filter(|f| f.name == name).collect();
            if found.is_empty() {
                return Err(not_there(&q, name));
            }
            found
        }
        None => files.iter().collect(),
    };
    let mut removed = Vec::with_capacity(chosen.len());
    for f in chosen {
        if !dry_run {
            quarantine::remove_one(&StdFs::new(), &q, &f.name)
                .map_err(|e| CliError::io(&q.join(&f.name), e))?;
        }
        removed.push(f);
    }
    let bytes: u64 = removed.iter().map(|f| f.len).sum();
    // Sidecars whose file is gone (a crash between the two deletes, or a file removed by
    // hand) go with a full clear. A dry run counts the same ones: their files are missing
    // whether or not the others were deleted first.
    let mut orphans = 0u64;
    if name.is_none() {
        if let Ok(entries) = StdFs::new().read_dir(&q) {
            for e in entries {
                let Some(n) = e.name.to_str() else { continue };
                let Some(base) = n.strip_suffix(SIDECAR_SUFFIX) else {
                    continue;
                };
                if quarantine::parse_name(base).is_some()
                    && !entries_has(&q, base)
                    && (dry_run || StdFs::new().remove_file(&q.join(n)).is_ok())
                {
                    orphans += 1;
                }
            }
        }
    }
    if json {
        output::print_json(&ClearReport {
            dir: q.display().to_string(),
            dry_run,
            removed: removed.len() as u64,
            removed_bytes: bytes,
            orphan_sidecars_removed: orphans,
            files: &removed,
        })?;
    } else {
        let n = removed.len() as u64;
        println!(
            "{} {} quarantined {}, {}, from {}{}",
            if dry_run { "would remove" } else { "removed" },
            table::count(n),
            if n == 1 { "file" } else { "files" },
            table::bytes_exact(bytes),
            q.display(),
            if dry_run {
                " (dry run: nothing was deleted)"
            } else {
                ""
            }
        );
    }
    Ok(Status::Ok)
}

fn entries_has(q: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(q.join(name)).is_ok()
}

/// `hexdump -C` style: offset, 16 bytes in hex, the printable ones as text.
fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}  {:<47}  |{text}|\n",
            i * 16,
            hex.join(" ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("1700-checksum-abc").is_ok());
        assert_eq!(
            valid_name("1700-checksum-abc.why").ok(),
            Some("1700-checksum-abc")
        );
        assert!(valid_name("../1700-checksum-abc").is_err());
        assert!(valid_name("1700-checksum-a/b").is_err());
        assert!(valid_name("..").is_err());
        assert!(valid_name("notes.txt").is_err());
    }

    #[test]
    fn hexdump_lines() {
        let d = hexdump(b"TIERCACH\x01\x00");
        assert_eq!(
            d,
            "00000000  54 49 45 52 43 41 43 48 01 00                    |TIERCACH..|\n"
        );
    }
}
