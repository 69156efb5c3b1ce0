//! The path scheme: the one place that turns keys into paths and file names back into hashes.
//!
//! ```text
//! <root>/v2/ab/<64 hex chars of blake3(key)>      entry files, one level of 256 fan-out dirs
//! <root>/v2/ab/.<hex16>.<pid>.<instance>.<n>.tmp  an entry being written, beside its place
//! <root>/tmp/<hex16>.<pid>.<instance>.<n>.tmp     other temp files (an entry taken aside,
//!                                                 the probe, markers), same filesystem
//! <root>/quarantine/<time>-<reason>-<name>        quarantined files (+ ".why" sidecars)
//! <root>/v1/ab/cd/<64 hex>                        the previous layout: migrated at open
//! ```
//! The key never appears in a path: whatever bytes a key holds (`../x`, NUL, 1 MiB), the file
//! name is 64 lowercase hex characters under one 2-character directory.
//!
//! One level of 256 directories (like git's objects) suits small caches and 1M entries
//! alike: at most 256 directories ever exist (1 MiB of blocks, counted in the warm budget),
//! and 1M entries make ~4,000 names per directory, which ext4, XFS, APFS and tmpfs index.
//! The previous layout's 65,536 second-level directories cost one 4 KiB directory per entry
//! in small caches. The entry files themselves did not change (FORMAT.md, "Layout"). Walking the
//! directories is [`super::walk`]'s job; naming temp files is the writers' (private).
//!
//! An entry is written to a temp file in its own fan-out directory and renamed over its
//! place: a rename within one directory, and creates spread over 256 directories. With one
//! `tmp/` for every write, concurrent writes queued on that directory's lock for each create
//! and on the volume's rename lock for each cross-directory rename (Linux takes
//! `s_vfs_rename_mutex` for those): four writers wrote no faster than one (BENCHMARKS.md,
//! "Session 20"). The leading dot and the `.tmp` suffix keep the name from ever being read as
//! an entry (`parse_hex` takes 64 hex characters only).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The name of the directory holding the entry files (layout 2; the files are format 1).
pub const ENTRIES_DIR: &str = "v2";
/// The directory of the previous layout, `v1/ab/cd/<64 hex>`: its entries are moved into
/// `v2/` when a cache opens (see FORMAT.md, "Layout").
pub const LEGACY_ENTRIES_DIR: &str = "v1";
/// The name of the temp directory.
pub const TMP_DIR: &str = "tmp";
/// The name of the quarantine directory.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The fence file's name, in the root.
pub const FENCE_FILE: &str = "fence";
/// The directory lock's name, in the root (an empty file; see FORMAT.md).
pub const LOCK_FILE: &str = "lock";

/// blake3 of a key: the entry's identity on disk.
pub type KeyHash = [u8; 32];

/// Hashes a key.
pub fn key_hash(key: &[u8]) -> KeyHash {
    *blake3::hash(key).as_bytes()
}

/// Lowercase hex of a hash.
pub fn hex(hash: &KeyHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in hash {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Parses 64 lowercase hex characters; anything else (upper case, other lengths, non-UTF-8)
/// is not an entry name.
pub fn parse_hex(name: &OsStr) -> Option<KeyHash> {
    let s = name.to_str()?;
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Who wrote a temp file, parsed from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TempOwner {
    /// Process id of the writer.
    pub pid: u32,
    /// The writing cache instance within that process.
    pub instance: u64,
}

/// The paths of one cache directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    entries: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Layout {
            entries: root.join(ENTRIES_DIR),
            tmp: root.join(TMP_DIR),
            quarantine: root.join(QUARANTINE_DIR),
            root,
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/v2`.
    pub fn entries_dir(&self) -> &Path {
        &self.entries
    }

    /// `<root>/tmp`.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// `<root>/quarantine`.
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    /// `<root>/fence`: entries created before the time it records are cleared (see
    /// FORMAT.md, "The fence").
    pub fn fence_path(&self) -> PathBuf {
        self.root.join(FENCE_FILE)
    }

    /// `<root>/v2/ab`: the fan-out directory an entry lives in.
    pub fn entry_dir(&self, hash: &KeyHash) -> PathBuf {
        let h = hex(hash);
        self.entries.join(&h[0..2])
    }

    /// `<root>/v2/ab/<hex>`.
    pub fn entry_path(&self, hash: &KeyHash) -> PathBuf {
        let h = hex(hash);
        self.entries.join(&h[0..2]).join(h)
    }

    /// `<root>/v1`: the previous layout's entries directory.
    pub fn legacy_entries_dir(&self) -> PathBuf {
        self.root.join(LEGACY_ENTRIES_DIR)
    }

    /// `<root>/v1/ab/cd/<hex>`: where the previous layout kept an entry.
    pub fn legacy_entry_path(&self, hash: &KeyHash) -> PathBuf {
        let h = hex(hash);
        self.legacy_entries_dir()
            .join(&h[0..2])
            .join(&h[2..4])
            .join(h)
    }

    /// The temp path an entry of `hash` is written to before it is renamed into place: in
    /// its own fan-out directory, unique to (process, instance, counter).
    pub(crate) fn entry_temp_path(&self, hash: &KeyHash, owner: TempOwner, n: u64) -> PathBuf {
        let h = hex(hash);
        self.entries.join(&h[0..2]).join(format!(
            ".{}.{}.{}.{n}.tmp",
            &h[..16],
            owner.pid,
            owner.instance
        ))
    }

    /// A temp path in `tmp/` unique to (process, instance, counter): where an entry is taken
    /// aside before a judged removal.
    pub(crate) fn temp_path(&self, hash: &KeyHash, owner: TempOwner, n: u64) -> PathBuf {
        let h = hex(hash);
        self.tmp.join(format!(
            "{}.{}.{}.{n}.tmp",
            &h[..16],
            owner.pid,
            owner.instance
        ))
    }

    /// The directory of pending-namespace markers.
    pub fn markers_dir(&self) -> PathBuf {
        self.root.join("nspending")
    }

    /// A pending-namespace marker's temp path.
    #[cfg(feature = "redis")]
    pub(crate) fn marker_temp_path(&self, owner: TempOwner, n: u64) -> PathBuf {
        self.tmp
            .join(format!("marker.{}.{}.{n}.tmp", owner.pid, owner.instance))
    }

    /// The recovery probe's temp path.
    pub(crate) fn probe_path(&self, owner: TempOwner, n: u64) -> PathBuf {
        self.tmp
            .join(format!("probe.{}.{}.{n}.tmp", owner.pid, owner.instance))
    }
}

/// Parses `<anything>.<pid>.<instance>.<n>.tmp`.
pub(crate) fn parse_temp_name(name: &OsStr) -> Option<TempOwner> {
    let s = name.to_str()?;
    let s = s.strip_suffix(".tmp")?;
    let mut parts = s.rsplit('.');
    let _n: u64 = parts.next()?.parse().ok()?;
    let instance: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    Some(TempOwner { pid, instance })
}

/// Parses the name of an entry temp file, `.<16 hex>.<pid>.<instance>.<n>.tmp` (see
/// [`Layout::entry_temp_path`]); `None` for any other name.
pub(crate) fn parse_entry_temp_name(name: &OsStr) -> Option<TempOwner> {
    let s = name.to_str()?;
    let hex16 = s.strip_prefix('.')?.get(..16)?;
    if !hex16.bytes().all(|c| nibble(c).is_some()) || s.as_bytes().get(17) != Some(&b'.') {
        return None;
    }
    parse_temp_name(name)
}

/// Is `name` a valid fan-out directory name (two lowercase hex characters)?
pub(crate) fn is_fanout_name(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|s| s.len() == 2 && s.bytes().all(|c| nibble(c).is_some()))
}

/// The first hash byte a fan-out directory named `name` holds (`"ab"` → `0xab`); `None` for
/// any other name (see [`is_fanout_name`]).
pub(crate) fn fanout_byte(name: &OsStr) -> Option<u8> {
    if !is_fanout_name(name) {
        return None;
    }
    u8::from_str_radix(name.to_str()?, 16).ok()
}

/// Writes `bytes` at the entry path of `key` under `root`, creating its directories.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
pub(crate) fn plant(root: &Path, key: &[u8], bytes: &[u8]) -> PathBuf {
    let path = Layout::new(root).entry_path(&key_hash(key));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    #[test]
    fn only_two_lowercase_hex_digits_name_a_fan_out_directory() {
        for (name, byte) in [("ab", Some(0xab)), ("00", Some(0)), ("ff", Some(0xff))] {
            assert_eq!(fanout_byte(OsStr::new(name)), byte, "{name}");
        }
        for name in ["AB", "aB", "+a", "-1", "a", "abc", "", "g0", " a", "\u{e9}"] {
            assert_eq!(fanout_byte(OsStr::new(name)), None, "{name:?}");
        }
    }

    #[test]
    fn hostile_keys_map_to_hex_names_under_the_root() {
        let layout = Layout::new("/cache");
        let big = vec![b'/'; 1 << 20];
        let keys: [&[u8]; 6] = [
            b"../x",
            b"../../etc/passwd",
            b"a\0b",
            &[0xff, 0xfe, b'/'],
            b"",
            &big,
        ];
        for key in keys {
            let p = layout.entry_path(&key_hash(key));
            let rel = p.strip_prefix("/cache/v2").unwrap();
            let comps: Vec<_> = rel.components().collect();
            assert_eq!(comps.len(), 2, "{p:?}");
            for c in &comps {
                assert!(matches!(c, Component::Normal(_)));
            }
            let name = p.file_name().unwrap();
            assert_eq!(parse_hex(name), Some(key_hash(key)));
            assert_eq!(&name.to_str().unwrap()[..2], rel.iter().next().unwrap());
        }
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let h = key_hash(b"k");
        assert_eq!(parse_hex(OsStr::new(&hex(&h))), Some(h));
        assert_eq!(parse_hex(OsStr::new(&hex(&h).to_uppercase())), None);
        assert_eq!(parse_hex(OsStr::new("abc")), None);
        assert_eq!(parse_hex(OsStr::new(".DS_Store")), None);
    }

    #[test]
    fn temp_names_round_trip() {
        let layout = Layout::new("/c");
        let owner = TempOwner {
            pid: 4242,
            instance: 7,
        };
        let p = layout.temp_path(&key_hash(b"k"), owner, 19);
        assert_eq!(parse_temp_name(p.file_name().unwrap()), Some(owner));
        let p = layout.probe_path(owner, 3);
        assert_eq!(parse_temp_name(p.file_name().unwrap()), Some(owner));
        assert_eq!(parse_temp_name(OsStr::new("x.tmp")), None);
    }

    #[test]
    fn entry_temps_sit_beside_their_entry_and_parse_back() {
        let layout = Layout::new("/c");
        let owner = TempOwner {
            pid: 4242,
            instance: 7,
        };
        let h = key_hash(b"k");
        let p = layout.entry_temp_path(&h, owner, 19);
        assert_eq!(p.parent(), layout.entry_path(&h).parent());
        let name = p.file_name().unwrap();
        assert_eq!(
            name.to_str().unwrap(),
            format!(".{}.4242.7.19.tmp", &hex(&h)[..16])
        );
        assert_eq!(parse_entry_temp_name(name), Some(owner));
        assert_eq!(parse_hex(name), None);
        // Not entry temps: the `tmp/` names, short or non-hex prefixes, other suffixes.
        let tmp_name = layout.temp_path(&h, owner, 19);
        assert_eq!(parse_entry_temp_name(tmp_name.file_name().unwrap()), None);
        for other in [
            ".0123456789abcde.1.2.3.tmp",
            ".0123456789abcdeg.1.2.3.tmp",
            ".0123456789ABCDEF.1.2.3.tmp",
            ".0123456789abcdef0.1.2.3.tmp",
            ".0123456789abcdef.1.2.3.tmpx",
            ".0123456789abcdef.x.2.3.tmp",
            ".DS_Store",
        ] {
            assert_eq!(parse_entry_temp_name(OsStr::new(other)), None, "{other}");
        }
        assert_eq!(
            parse_entry_temp_name(OsStr::new(".0123456789abcdef.1.2.3.tmp")),
            Some(TempOwner {
                pid: 1,
                instance: 2
            })
        );
    }
}
