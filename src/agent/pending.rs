//! Pending-namespace markers (feature `redis`; FORMAT.md, "Pending namespace markers"): one
//! small file per namespace whose invalidation the shared server has not taken yet,
//! `<root>/nspending/<name in hex>`, holding `<name>\n<generation, 16 hex digits>\n` and,
//! since the generation compare-and-set, a third line: the generations this replica had
//! left for the namespace when it drew the pending one (at most [`MARKER_RETIRED`], 16 hex
//! digits each, separated by spaces), so that a reopen may write the fresh generation over
//! the one the server still holds even when the namespace record is gone (a `clear`, an
//! eviction).
//!
//! The pending generations live in the shared tier's memory; without a marker a restart
//! would forget them, the namespace's first use would take the server's older generation over
//! the local record, and the invalidation would be undone here and never reach the other
//! replicas. So `invalidate` writes the marker before its record, the marker goes once the
//! server took that generation, and opening the cache reads every marker back before any
//! background task runs (then before each sync until it succeeds).

use std::ffi::OsStr;

use crate::cache::Tiers;
use crate::disk::DiskOutcome;

/// Longest marker content read: a name of at most 64 characters, a newline, 16 hex digits,
/// a newline, at most [`MARKER_RETIRED`] generations of 17 bytes each (with their separator
/// or the final newline), with room to spare.
const MARKER_MAX: u64 = 512;
/// Most retired generations a marker lists (the newest).
const MARKER_RETIRED: usize = 8;

/// The marker's file name: the namespace name in lowercase hex.
fn file_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The marker's first two lines: what [`remove`] compares.
fn head(name: &str, g: u64) -> Vec<u8> {
    format!("{name}\n{g:016x}\n").into_bytes()
}

/// The marker's content: its head, then the newest [`MARKER_RETIRED`] of `retired` on a
/// third line (none: no third line, as the first version wrote it).
fn content(name: &str, g: u64, retired: &[u64]) -> Vec<u8> {
    let mut c = head(name, g);
    let newest = &retired[retired.len().saturating_sub(MARKER_RETIRED)..];
    if !newest.is_empty() {
        let line: Vec<String> = newest.iter().map(|r| format!("{r:016x}")).collect();
        c.extend_from_slice(line.join(" ").as_bytes());
        c.push(b'\n');
    }
    c
}

/// A generation as a marker writes it: 16 hex digits of a nonzero number.
fn parse_generation(hex: &str) -> Option<u64> {
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().filter(|&g| g != 0)
}

/// What one entry of the marker directory says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Generation `g` of namespace `name` is pending; this replica had left `retired` for
    /// it (empty in markers of the first version).
    Pending {
        name: String,
        g: u64,
        retired: Vec<u64>,
    },
    /// The entry names namespace `name`, but its content cannot be read as a marker
    /// (damaged, not a regular file, unreadable): its generation is unknown.
    Unknown { name: String },
    /// Not the name of a marker of a valid namespace; left alone.
    Foreign,
}

/// Reads one directory entry (`content`: `None` when it could not be read as a file).
pub(crate) fn parse(file: &OsStr, content: Option<&[u8]>) -> Marker {
    let Some(name) = file.to_str().and_then(name_of_file) else {
        return Marker::Foreign;
    };
    let parsed = content.and_then(|c| {
        let text = std::str::from_utf8(c).ok()?.strip_suffix('\n')?;
        let mut lines = text.split('\n');
        let (n, g) = (lines.next()?, parse_generation(lines.next()?)?);
        let retired = match lines.next() {
            None => Vec::new(),
            Some(line) => line
                .split(' ')
                .map(parse_generation)
                .collect::<Option<Vec<u64>>>()
                .filter(|r| r.len() <= MARKER_RETIRED)?,
        };
        (n == name && lines.next().is_none()).then_some((g, retired))
    });
    match parsed {
        Some((g, retired)) => Marker::Pending { name, g, retired },
        None => Marker::Unknown { name },
    }
}

/// The namespace named by a marker file name, if it is one.
fn name_of_file(file: &str) -> Option<String> {
    if !file.len().is_multiple_of(2) || file.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..file.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(file.get(i..i + 2)?, 16).ok())
        .collect();
    let name = String::from_utf8(bytes?).ok()?;
    // The caller checks that it is a valid namespace name.
    (file_name(&name) == file).then_some(name)
}

/// Writes the marker of generation `g` of `name`, with the generations `retired` (durably
/// under `Durability::Fsync`); one more try on failure. `Err` with the last error when it is
/// not on disk.
pub(crate) async fn write(
    tiers: &Tiers,
    name: &str,
    g: u64,
    retired: &[u64],
) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..2 {
        let (file, bytes) = (file_name(name), content(name, g, retired));
        let outcome = tiers
            .gate()
            .run(move |fs, store| store.write_marker(fs, &file, &bytes))
            .await;
        tiers.gate().note("namespace marker", &outcome);
        match outcome {
            DiskOutcome::Done { value: Ok(()), .. } => return Ok(()),
            DiskOutcome::Done { value: Err(e), .. } => last = e.to_string(),
            DiskOutcome::TimedOut => last = "timed out".into(),
            DiskOutcome::Skipped => return Err("the disk is not in use".into()),
        }
    }
    Err(last)
}

/// Removes the marker of generation `g` of `name` if it still names `g` (best effort: a
/// marker left behind only makes a later open invalidate that generation's namespace again,
/// which costs misses, never stale answers).
pub(crate) async fn remove(tiers: &Tiers, name: &str, g: u64) {
    let (file, bytes) = (file_name(name), head(name, g));
    let outcome = tiers
        .gate()
        .run(move |fs, store| store.remove_marker(fs, &file, &bytes, MARKER_MAX))
        .await;
    tiers.gate().note("namespace marker", &outcome);
}

/// Removes what sits at the marker path of `name` that is not a readable marker.
pub(crate) async fn remove_bad(tiers: &Tiers, name: &str) {
    let file = file_name(name);
    let outcome = tiers
        .gate()
        .run(move |fs, store| store.remove_bad_marker(fs, &file))
        .await;
    tiers.gate().note("namespace marker", &outcome);
}

/// Every marker on disk; `None` when the disk cannot list them now.
pub(crate) async fn list(tiers: &Tiers) -> Option<Vec<Marker>> {
    let outcome = tiers
        .gate()
        .run(|fs, store| store.read_markers(fs, MARKER_MAX))
        .await;
    tiers.gate().note("namespace markers", &outcome);
    let entries = outcome.ok()?;
    Some(
        entries
            .iter()
            .map(|(file, c)| parse(file, c.as_deref()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_hostile_names_are_foreign() {
        let f = file_name("bot/v1");
        assert_eq!(f, "626f742f7631");
        let c = content("bot/v1", 0xabc, &[]);
        assert_eq!(c, b"bot/v1\n0000000000000abc\n");
        assert_eq!(
            parse(OsStr::new(&f), Some(&c)),
            Marker::Pending {
                name: "bot/v1".into(),
                g: 0xabc,
                retired: vec![]
            }
        );
        // With the generations left: the newest eight.
        let left: Vec<u64> = (1..=10).collect();
        let c3 = content("bot/v1", 0xabc, &left);
        assert_eq!(
            &c3[..],
            &[
                &c[..],
                b"0000000000000003 0000000000000004 0000000000000005 0000000000000006 \
                  0000000000000007 0000000000000008 0000000000000009 000000000000000a\n"
            ]
            .concat()[..]
        );
        assert!(c3.len() as u64 <= MARKER_MAX);
        assert_eq!(
            parse(OsStr::new(&f), Some(&c3)),
            Marker::Pending {
                name: "bot/v1".into(),
                g: 0xabc,
                retired: (3..=10).collect()
            }
        );
        // A marker whose content names another namespace, is cut, or is not a file; a third
        // line that is not generations, empty, or too long; a fourth line.
        let other = content("bot", 7, &[]);
        let bad_third = [&c[..], b"000000000000000g\n"].concat();
        let empty_third = [&c[..], b"\n"].concat();
        let nine = [
            &c[..],
            "0000000000000001 ".repeat(8).as_bytes(),
            b"0000000000000001\n",
        ]
        .concat();
        let fourth = [&c3[..], b"0000000000000001\n"].concat();
        let no_newline = &c3[..c3.len() - 1];
        for bad in [
            Some(&other[..]),
            Some(&c[..10]),
            Some(&b""[..]),
            None,
            Some(&bad_third[..]),
            Some(&empty_third[..]),
            Some(&nine[..]),
            Some(&fourth[..]),
            Some(no_newline),
        ] {
            assert_eq!(
                parse(OsStr::new(&f), bad),
                Marker::Unknown {
                    name: "bot/v1".into()
                }
            );
        }
        // Generation 0 means "not resolved": never a pending one.
        assert_eq!(
            parse(OsStr::new(&f), Some(&content("bot/v1", 0, &[]))),
            Marker::Unknown {
                name: "bot/v1".into()
            }
        );
        // Not hex, odd length, upper-case hex, not UTF-8.
        for file in ["zz", "626", "626F74", "ff", ""] {
            assert_eq!(parse(OsStr::new(file), Some(&c)), Marker::Foreign, "{file}");
        }
    }
}
