//! Scanning a whole warm tier for corruption: the library call behind an operator's
//! `answercache verify [--repair]`.
//!
//! The read path already quarantines a corrupted file when a `get` happens to touch it. That
//! is enough to keep bad bytes from being served, but it leaves an operator blind: a disk that
//! is rotting under entries nobody asked for yet shows nothing in `stats()`. [`verify`] walks
//! every entry file, checks it the way a `get` would (bounded lengths, exact file length,
//! checksum before inflating, inflation with a hard limit, gzip read to its end) and, having no
//! requested key to compare with, checks instead that the stored key hashes to the file's name
//! (so a valid entry of key A planted at key B's path is a `key-mismatch` here as it is on
//! `get`). With [`VerifyOptions::repair`] the corrupted files are moved to the quarantine,
//! exactly as the read path would move them.
//!
//! The walk is [`crate::warm::walk`], the one the cache's startup scan does, and just as
//! distrustful: it never follows a symlink (a symlink or a `v2/` that is not a plain directory
//! is not descended into), never opens a FIFO or device (anything at an entry path that
//! `lstat` does not call a regular file is `not-a-regular-file` without being opened), never
//! recurses into a directory planted at an entry path, and counts, but otherwise ignores,
//! foreign files and folders (`.DS_Store`, editor backups, non-UTF-8 names, stray folders). Entries of a newer format version are left
//! alone: a newer process may share the directory. Repair never moves a file through a
//! `<root>/quarantine` that is not a real directory (a planted symlink would carry it out of
//! the cache directory); such moves are reported as I/O errors instead.
//!
//! A `v1/` directory of the previous layout is first moved into `v2/`, as a cache opening the
//! directory does (FORMAT.md, "Layout 2"): its entries are checked like the others instead of
//! waiting, unchecked, for the next open to serve them.
//!
//! An I/O error on one directory or file does not end the scan: it is recorded in
//! [`VerifyReport::io_errors`] and the walk goes on, so one unreadable fan-out directory does
//! not hide the state of the other 255. Only failing to list `<root>/v2` itself is an error.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{debug, info, warn};

use crate::fs::{FileKind, FileRead, Fs, StdFs};
use crate::warm::format::{self, Corruption, Header, Invalid, Limits};
use crate::warm::layout::{self, KeyHash, Layout, QUARANTINE_DIR};
use crate::warm::quarantine::{self, QuarantineLimits, Why};
use crate::warm::walk::{EntryWalk, Level, WalkEntry, WalkItem};

/// What [`verify`] checks and whether it repairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Move corrupted files to `<root>/quarantine/` (default `false`: report only).
    pub repair: bool,
    /// Longest key accepted; use the cache's `max_key_bytes`. Default
    /// [`DEFAULT_MAX_KEY_BYTES`](crate::defaults::DEFAULT_MAX_KEY_BYTES).
    pub max_key_bytes: usize,
    /// Longest value accepted; use the cache's `max_entry_bytes`. Default
    /// [`DEFAULT_MAX_ENTRY_BYTES`](crate::defaults::DEFAULT_MAX_ENTRY_BYTES).
    pub max_entry_bytes: usize,
    /// Quarantine bound in files, enforced after each move. Default
    /// [`DEFAULT_QUARANTINE_MAX_FILES`](crate::defaults::DEFAULT_QUARANTINE_MAX_FILES).
    pub quarantine_max_files: usize,
    /// Quarantine bound in bytes. Default
    /// [`DEFAULT_QUARANTINE_MAX_BYTES`](crate::defaults::DEFAULT_QUARANTINE_MAX_BYTES).
    pub quarantine_max_bytes: u64,
    /// The time, unix ms: decides which healthy entries count as expired and stamps the names
    /// of quarantined files. Default: the system clock when the options are made.
    pub now_ms: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            repair: false,
            max_key_bytes: crate::defaults::DEFAULT_MAX_KEY_BYTES,
            max_entry_bytes: crate::defaults::DEFAULT_MAX_ENTRY_BYTES,
            quarantine_max_files: crate::defaults::DEFAULT_QUARANTINE_MAX_FILES,
            quarantine_max_bytes: crate::defaults::DEFAULT_QUARANTINE_MAX_BYTES,
            now_ms: crate::clock::system_now_ms(),
        }
    }
}

impl VerifyOptions {
    fn limits(&self) -> Limits {
        Limits {
            max_key_bytes: self.max_key_bytes,
            max_entry_bytes: self.max_entry_bytes,
        }
    }

    fn quarantine_limits(&self) -> QuarantineLimits {
        QuarantineLimits {
            max_files: self.quarantine_max_files,
            max_bytes: self.quarantine_max_bytes,
        }
    }
}

/// One corrupted (or hostile) file found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorruptFile {
    /// Path relative to the cache root, `v2/ab/<hex>`.
    pub path: String,
    /// Why it is not a valid entry.
    pub reason: Corruption,
    /// What exactly was wrong, in words.
    pub detail: String,
    /// Its length in bytes (0 for what is not a regular file).
    pub len: u64,
    /// Its name inside `<root>/quarantine/` once moved there; `None` when not repairing, when
    /// another process removed it first, or when the move failed (see `io_errors`).
    pub quarantined_as: Option<String>,
}

/// An I/O error met during the scan; the scan went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyIoError {
    /// Path relative to the cache root.
    pub path: String,
    /// What was being done: `list`, `read` or `quarantine`.
    pub op: &'static str,
    /// The error text.
    pub error: String,
}

/// What [`verify`] found. Serializable, for the CLI's `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Names at entry paths (`v2/ab/<64 hex>`) that were looked at, whatever they turned out
    /// to be: `healthy + corrupted.len() + newer_version + vanished` plus the reads that failed
    /// (in `io_errors`).
    pub entries_checked: u64,
    /// Valid entries (expired ones included).
    pub healthy: u64,
    /// Bytes of the valid entry files.
    pub healthy_bytes: u64,
    /// Valid entries whose expiry has passed (a subset of `healthy`). They are not corrupt and
    /// are left for the cache's sweep to delete.
    pub expired: u64,
    /// Corrupted files by reason name (`checksum`, `key-mismatch`, ...); reasons not seen are
    /// absent.
    pub corrupted_by_reason: BTreeMap<String, u64>,
    /// Every corrupted file, in path order.
    pub corrupted: Vec<CorruptFile>,
    /// Bytes of the corrupted files.
    pub corrupted_bytes: u64,
    /// Files moved to the quarantine by this call (0 unless repairing).
    pub quarantined: u64,
    /// Bytes moved to the quarantine by this call.
    pub quarantined_bytes: u64,
    /// Entries of a newer format version: not checked, left in place.
    pub newer_version: u64,
    /// Foreign files and folders under `v2/` (and a `v2` that is not a directory): ignored.
    pub foreign_files: u64,
    /// Entry files that vanished between listing and reading (another process removed or
    /// evicted them): normal in a shared directory, not an error.
    pub vanished: u64,
    /// I/O errors met on the way; the scan went on past each.
    pub io_errors: Vec<VerifyIoError>,
}

impl VerifyReport {
    /// True when nothing corrupted was found and no I/O error happened. A repairing call that
    /// quarantined files is not clean; the next one is.
    pub fn is_clean(&self) -> bool {
        self.corrupted.is_empty() && self.io_errors.is_empty()
    }
}

/// Scans the warm tier under `root` (the directory the cache was opened with) on the real file
/// system. See the [module docs](self).
pub fn verify(root: impl AsRef<Path>, options: &VerifyOptions) -> io::Result<VerifyReport> {
    verify_with_fs(&StdFs::new(), root.as_ref(), options, None)
}

/// [`verify`] over any [`Fs`] (tests inject faults), calling `progress` with the number of
/// entries checked so far after each one.
pub fn verify_with_fs(
    fs: &dyn Fs,
    root: &Path,
    options: &VerifyOptions,
    progress: Option<&mut dyn FnMut(u64)>,
) -> io::Result<VerifyReport> {
    // The root is followed as the cache follows the root it is opened with (a symlink to a
    // cache directory names that directory); nothing below it is.
    let canonical = std::fs::canonicalize(root).ok();
    let root = canonical.as_deref().unwrap_or(root);
    let mut scan = Scan {
        fs,
        layout: Layout::new(root),
        options,
        limits: options.limits(),
        report: VerifyReport::default(),
        progress,
        quarantine_blocked: None,
    };
    // A layout-1 `v1/` is moved into `v2/` first, as a cache opening the directory does (the
    // files are not changed): its entries are then checked like the others, and are not
    // waiting unchecked to be served by the next open. A move that fails is an I/O error of
    // the report; what was not moved stays in `v1/`, never served.
    if let Err(e) = crate::warm::migrate::migrate_root(fs, root, true) {
        let v1 = scan.layout.legacy_entries_dir();
        scan.io_error(&v1, "move layout 1", &e);
    }
    scan.run()?;
    let mut report = scan.report;
    report.corrupted.sort_by(|a, b| a.path.cmp(&b.path));
    info!(
        checked = report.entries_checked,
        healthy = report.healthy,
        corrupted = report.corrupted.len(),
        quarantined = report.quarantined,
        foreign = report.foreign_files,
        "warm tier verified"
    );
    Ok(report)
}

/// What one entry file is, read and checked by [`check_entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryCheck {
    /// A whole, valid entry (it may have expired: see `header.meta`).
    Healthy {
        /// Its header.
        header: Header,
        /// Its stored key (it hashes to the file name).
        key: Vec<u8>,
        /// The file's length in bytes.
        len: u64,
    },
    /// An entry of a newer format version: not judged, to be left in place.
    NewerVersion {
        /// The version its header records.
        version: u16,
        /// The file's length in bytes.
        len: u64,
    },
    /// Not a valid entry; quarantined by a `get` or `verify --repair`.
    Corrupt {
        /// Why.
        reason: Corruption,
        /// What exactly was wrong, in words.
        detail: String,
        /// The file's length in bytes (0 for what is not a regular file).
        len: u64,
    },
    /// Gone between the listing and the read (another process removed or evicted it).
    Vanished,
}

/// Reads the entry file a walk found and checks it exactly as [`verify`] does (and as a `get`
/// would, with the stored key hashed against the file name in place of a requested key):
/// bounded lengths, exact file length, checksum before inflating, flags, inflation with a hard
/// limit to the end of the gzip stream. What is not a regular file is `not-a-regular-file`
/// without being opened. For tools that show entries one by one (the CLI's `ls`): nothing of
/// a file that is not [`EntryCheck::Healthy`] is to be shown as an entry's data. `Err` is an
/// I/O error reading it.
pub fn check_entry(fs: &dyn Fs, entry: &WalkEntry, limits: &Limits) -> io::Result<EntryCheck> {
    if entry.kind != FileKind::File {
        // Never opened: a FIFO would block a reader, a symlink leads out of the directory, a
        // directory is not descended into.
        return Ok(not_regular(entry.kind));
    }
    let data = match fs.read_file(&entry.path, limits.max_file_bytes()) {
        Ok(FileRead::Data(d)) => d,
        // Replaced between the listing and the open.
        Ok(FileRead::NotRegular(kind)) => return Ok(not_regular(kind)),
        Ok(FileRead::TooLarge(len)) => {
            return Ok(EntryCheck::Corrupt {
                reason: Corruption::Oversize,
                detail: format!("{len} bytes, over the largest valid entry"),
                len,
            })
        }
        Err(e) if is_not_found(&e) => return Ok(EntryCheck::Vanished),
        Err(e) => return Err(e),
    };
    Ok(check_bytes(&data, &entry.hash, limits))
}

fn not_regular(kind: FileKind) -> EntryCheck {
    EntryCheck::Corrupt {
        reason: Corruption::NotARegularFile,
        detail: format!("a {} sits at the entry path", kind.describe()),
        len: 0,
    }
}

/// Checks one entry file's bytes against the hash its name claims.
fn check_bytes(data: &[u8], hash: &KeyHash, limits: &Limits) -> EntryCheck {
    let len = data.len() as u64;
    let invalid = |e: Invalid| match e {
        Invalid::NewerVersion(version) => EntryCheck::NewerVersion { version, len },
        Invalid::Corrupt(reason, detail) => EntryCheck::Corrupt {
            reason,
            detail,
            len,
        },
    };
    let header = match format::verify(data, limits) {
        Ok(h) => h,
        Err(e) => return invalid(e),
    };
    let key = format::stored_key(data, &header);
    // No requested key to compare with: the name is the hash of the key that owns this path.
    if layout::key_hash(key) != *hash {
        return EntryCheck::Corrupt {
            reason: Corruption::KeyMismatch,
            detail: "stored key does not hash to the file name".into(),
            len,
        };
    }
    // Inflate (with its hard limit, to the end of the gzip stream) exactly as `get` would.
    match format::decode(data, key, limits) {
        Ok(_) => EntryCheck::Healthy {
            header,
            key: key.to_vec(),
            len,
        },
        Err(e) => invalid(e),
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
}

struct Scan<'a, 'p> {
    fs: &'a dyn Fs,
    layout: Layout,
    options: &'a VerifyOptions,
    limits: Limits,
    report: VerifyReport,
    progress: Option<&'p mut dyn FnMut(u64)>,
    /// Set when `<root>/quarantine` exists but is not a directory (a planted symlink, say):
    /// repairing would then move files through it, out of the cache directory.
    quarantine_blocked: Option<FileKind>,
}

impl Scan<'_, '_> {
    fn run(&mut self) -> io::Result<()> {
        // `<root>/v2` must be a real directory: `read_dir` would follow a symlink out of the
        // cache directory. The root listing is tiny (v2, tmp, quarantine).
        let root_entries = match self.fs.read_dir(self.layout.root()) {
            Ok(v) => v,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.quarantine_blocked = root_entries
            .iter()
            .find(|e| e.name == OsStr::new(QUARANTINE_DIR) && e.kind != FileKind::Dir)
            .map(|e| e.kind);
        let entries_dir = self.layout.entries_dir().to_owned();
        let fs = self.fs;
        for item in EntryWalk::after_root_listing(fs, self.layout.root(), root_entries) {
            match item {
                WalkItem::Entry(e) => self.check(&e),
                WalkItem::Foreign(f) => {
                    if f.path == entries_dir {
                        warn!(
                            kind = f.kind.describe(),
                            "v2 is not a directory; not descended into"
                        );
                    }
                    self.report.foreign_files += 1;
                }
                // Failing to list `v2` itself ends the scan; a fan-out directory is recorded
                // and skipped.
                WalkItem::Unlisted(u) if u.level <= Level::Entries => return Err(u.error),
                WalkItem::Unlisted(u) => self.io_error(&u.path, "list", &u.error),
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&mut self, entry: &WalkEntry) {
        let path = entry.path.as_path();
        self.report.entries_checked += 1;
        match check_entry(self.fs, entry, &self.limits) {
            Ok(EntryCheck::Healthy { header, len, .. }) => {
                self.report.healthy += 1;
                self.report.healthy_bytes += len;
                self.report.expired += u64::from(header.meta.is_expired(self.options.now_ms));
            }
            Ok(EntryCheck::NewerVersion { .. }) => self.report.newer_version += 1,
            Ok(EntryCheck::Corrupt {
                reason,
                detail,
                len,
            }) => self.corrupt(path, reason, detail, len),
            Ok(EntryCheck::Vanished) => self.report.vanished += 1,
            Err(e) => self.io_error(path, "read", &e),
        }
        let checked = self.report.entries_checked;
        if let Some(progress) = self.progress.as_mut() {
            progress(checked);
        }
    }

    fn corrupt(&mut self, path: &Path, reason: Corruption, detail: String, len: u64) {
        debug!(path = %path.display(), reason = reason.name(), %detail, "corrupted entry");
        *self
            .report
            .corrupted_by_reason
            .entry(reason.name().to_owned())
            .or_default() += 1;
        self.report.corrupted_bytes += len;
        let mut quarantined_as = None;
        if let (true, Some(kind)) = (self.options.repair, self.quarantine_blocked) {
            let e = io::Error::other(format!(
                "{QUARANTINE_DIR} is a {}, not a directory: not moving files through it",
                kind.describe()
            ));
            self.io_error(path, "quarantine", &e);
        } else if self.options.repair {
            let why = Why {
                reason,
                detail: &detail,
                size: len,
                now_ms: self.options.now_ms,
            };
            let qdir = self.layout.quarantine_dir();
            let limits = self.options.quarantine_limits();
            match quarantine::quarantine(self.fs, qdir, path, path, why, limits) {
                Ok(Some(name)) => {
                    self.report.quarantined += 1;
                    self.report.quarantined_bytes += len;
                    quarantined_as = Some(name);
                }
                // Removed by another process between the read and the move: nothing to do.
                Ok(None) => {}
                Err(e) => self.io_error(path, "quarantine", &e),
            }
        }
        self.report.corrupted.push(CorruptFile {
            path: self.relative(path),
            reason,
            detail,
            len,
            quarantined_as,
        });
    }

    fn io_error(&mut self, path: &Path, op: &'static str, e: &io::Error) {
        warn!(path = %path.display(), op, error = %e, "verify: I/O error, going on");
        self.report.io_errors.push(VerifyIoError {
            path: self.relative(path),
            op,
            error: e.to_string(),
        });
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.layout.root())
            .map(PathBuf::from)
            .unwrap_or_else(|_| path.to_owned())
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking on the unexpected"
)]
mod tests {
    use super::*;
    use crate::testing::{Fault, FaultFs, FsOp, Rule};
    use crate::warm::format::{EntryMeta, FLAG_GZIP};
    use crate::warm::layout::{key_hash, plant as place};

    const NOW: u64 = 1_800_000_000_000;

    fn options(repair: bool) -> VerifyOptions {
        VerifyOptions {
            repair,
            now_ms: NOW,
            ..VerifyOptions::default()
        }
    }

    fn meta(expires_ms: u64) -> EntryMeta {
        EntryMeta {
            created_ms: NOW - 1000,
            expires_ms,
            cost: 1,
            encoding: Default::default(),
        }
    }

    fn entry(key: &[u8], value: &[u8]) -> Vec<u8> {
        format::encode(key, value, meta(0), 3).unwrap()
    }

    #[test]
    fn missing_or_empty_roots_are_clean() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        let report = verify(&missing, &options(true)).unwrap();
        assert_eq!(report, VerifyReport::default());
        assert!(report.is_clean());
        std::fs::create_dir_all(dir.path().join("v2")).unwrap();
        assert_eq!(
            verify(dir.path(), &options(true)).unwrap(),
            VerifyReport::default()
        );
    }

    #[test]
    fn healthy_expired_and_newer_entries() {
        let dir = tempfile::tempdir().unwrap();
        let a = entry(b"a", b"value a");
        place(dir.path(), b"a", &a);
        let expired = format::encode(b"b", b"value b", meta(NOW - 1), 3).unwrap();
        place(dir.path(), b"b", &expired);
        let payload = format::deflate(b"v", 1).unwrap();
        let newer = format::assemble(b"c", 1, &payload, meta(0), 3, FLAG_GZIP);
        let newer_path = place(dir.path(), b"c", &newer);
        let report = verify(dir.path(), &options(true)).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.entries_checked, 3);
        assert_eq!(report.healthy, 2);
        assert_eq!(report.healthy_bytes, (a.len() + expired.len()) as u64);
        assert_eq!(report.expired, 1);
        assert_eq!(report.newer_version, 1);
        assert_eq!(report.quarantined, 0);
        assert_eq!(std::fs::read(newer_path).unwrap(), newer);
    }

    #[test]
    fn corruption_is_reported_then_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let mut flipped = entry(b"k1", b"some value");
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let p1 = place(dir.path(), b"k1", &flipped);
        // A valid entry of another key at k2's path.
        let p2 = place(dir.path(), b"k2", &entry(b"other", b"x"));
        place(dir.path(), b"ok", &entry(b"ok", b"fine"));
        let report = verify(dir.path(), &options(false)).unwrap();
        assert!(!report.is_clean());
        assert_eq!(report.entries_checked, 3);
        assert_eq!(report.healthy, 1);
        let reasons: Vec<_> = report.corrupted_by_reason.iter().collect();
        assert_eq!(
            reasons,
            [
                (&"checksum".to_owned(), &1),
                (&"key-mismatch".to_owned(), &1)
            ]
        );
        assert_eq!(report.quarantined, 0);
        assert!(p1.exists() && p2.exists());
        let report = verify(dir.path(), &options(true)).unwrap();
        assert_eq!(report.quarantined, 2);
        assert_eq!(report.quarantined_bytes, report.corrupted_bytes);
        assert!(!p1.exists() && !p2.exists());
        for c in &report.corrupted {
            let name = c.quarantined_as.as_deref().unwrap();
            let hex = c.path.rsplit('/').next().unwrap();
            assert_eq!(name, format!("{NOW}-{}-{hex}", c.reason.name()));
            assert!(dir.path().join("quarantine").join(name).exists());
        }
        let again = verify(dir.path(), &options(true)).unwrap();
        assert!(again.is_clean());
        assert_eq!((again.entries_checked, again.healthy), (1, 1));
    }

    #[test]
    fn foreign_names_are_counted_and_hostile_kinds_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        place(root, b"ok", &entry(b"ok", b"fine"));
        let v2 = root.join("v2");
        std::fs::write(v2.join(".DS_Store"), b"x").unwrap();
        std::fs::create_dir_all(v2.join("stray/ab")).unwrap();
        std::fs::create_dir_all(v2.join("ab/zz")).unwrap();
        std::fs::write(v2.join("ab/foo~"), b"x").unwrap();
        let link_target = root.join("outside");
        std::fs::write(&link_target, b"sentinel").unwrap();
        let link = Layout::new(root).entry_path(&key_hash(b"link"));
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&link_target, &link).unwrap();
        let report = verify(root, &options(true)).unwrap();
        assert_eq!(report.foreign_files, 4);
        assert_eq!(report.entries_checked, 2);
        assert_eq!(report.healthy, 1);
        assert_eq!(report.corrupted.len(), 1);
        assert_eq!(report.corrupted[0].reason, Corruption::NotARegularFile);
        assert_eq!(report.quarantined, 1);
        assert_eq!(std::fs::read(&link_target).unwrap(), b"sentinel");
    }

    #[test]
    fn v2_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let planted = place(elsewhere.path(), b"k", b"garbage");
        std::os::unix::fs::symlink(elsewhere.path().join("v2"), dir.path().join("v2")).unwrap();
        let report = verify(dir.path(), &options(true)).unwrap();
        assert_eq!(report.foreign_files, 1);
        assert_eq!(report.entries_checked, 0);
        assert_eq!(std::fs::read(planted).unwrap(), b"garbage");
    }

    #[test]
    fn io_errors_are_recorded_and_the_scan_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let good = place(dir.path(), b"ok", &entry(b"ok", b"fine"));
        let mut bad = entry(b"bad", b"value");
        bad[0] = b'X';
        let bad_path = place(dir.path(), b"bad", &bad);
        let fs = FaultFs::std();
        fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::ReadFile])
                .path_contains(good.file_name().unwrap().to_string_lossy()),
        );
        fs.add_rule(Rule::new(Fault::Errno(13)).ops(&[FsOp::Rename]));
        let mut seen = Vec::new();
        let report =
            verify_with_fs(&fs, dir.path(), &options(true), Some(&mut |n| seen.push(n))).unwrap();
        assert_eq!(seen, [1, 2]);
        assert_eq!(report.entries_checked, 2);
        assert_eq!(report.healthy, 0);
        assert_eq!(report.corrupted.len(), 1);
        assert_eq!(report.corrupted[0].reason, Corruption::Magic);
        assert_eq!(report.corrupted[0].quarantined_as, None);
        assert_eq!(report.quarantined, 0);
        let ops: Vec<_> = report.io_errors.iter().map(|e| e.op).collect();
        let mut ops_sorted = ops.clone();
        ops_sorted.sort_unstable();
        assert_eq!(ops_sorted, ["quarantine", "read"]);
        assert!(bad_path.exists());
        // Failing to list v2/ itself is the one error that ends the call.
        let fs = FaultFs::std();
        fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::ReadDir])
                .path_contains("v2"),
        );
        let err = verify_with_fs(&fs, dir.path(), &options(false), None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5));
    }

    #[test]
    fn repair_never_moves_files_through_a_symlinked_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let bad = place(dir.path(), b"bad", b"garbage");
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("quarantine")).unwrap();
        let report = verify(dir.path(), &options(true)).unwrap();
        assert_eq!(report.corrupted.len(), 1);
        assert_eq!(report.quarantined, 0);
        assert_eq!(report.io_errors.len(), 1);
        assert_eq!(report.io_errors[0].op, "quarantine");
        assert!(bad.exists());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn files_vanishing_mid_scan_are_normal() {
        let dir = tempfile::tempdir().unwrap();
        place(dir.path(), b"gone", &entry(b"gone", b"v"));
        let fs = FaultFs::std();
        // ENOENT on the read: another process evicted the entry after the listing.
        fs.add_rule(Rule::new(Fault::Errno(2)).ops(&[FsOp::ReadFile]));
        let report = verify_with_fs(&fs, dir.path(), &options(true), None).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            (report.entries_checked, report.vanished, report.healthy),
            (1, 1, 0)
        );
    }

    #[test]
    fn verdict_matches_the_read_path_for_bombs_and_short_inflates() {
        let limits = options(false).limits();
        let hash = key_hash(b"k");
        let payload = format::deflate(&[0u8; 100_000], 9).unwrap();
        let bomb = format::assemble(b"k", 10, &payload, meta(0), 1, FLAG_GZIP);
        assert!(matches!(
            check_bytes(&bomb, &hash, &limits),
            EntryCheck::Corrupt {
                reason: Corruption::Bomb,
                ..
            }
        ));
        let short = format::assemble(b"k", 100_001, &payload, meta(0), 1, FLAG_GZIP);
        assert!(matches!(
            check_bytes(&short, &hash, &limits),
            EntryCheck::Corrupt {
                reason: Corruption::Decode,
                ..
            }
        ));
        for file in [&bomb, &short] {
            let Err(Invalid::Corrupt(want, _)) = format::decode(file, b"k", &limits) else {
                panic!("decode accepted a bad file");
            };
            let EntryCheck::Corrupt { reason: got, .. } = check_bytes(file, &hash, &limits) else {
                panic!("verify accepted a bad file");
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn check_entry_gives_the_header_and_key_of_a_valid_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let good = entry(b"good", b"value");
        place(root, b"good", &good);
        // A valid file of another key at this key's path, and one bit flipped in a third.
        place(root, b"moved", &entry(b"other", b"value"));
        let mut flipped = entry(b"flipped", b"value");
        *flipped.last_mut().unwrap() ^= 1;
        place(root, b"flipped", &flipped);
        let limits = options(false).limits();
        let mut seen = BTreeMap::new();
        for item in EntryWalk::new(&StdFs::new(), root) {
            if let WalkItem::Entry(e) = item {
                seen.insert(e.hash, check_entry(&StdFs::new(), &e, &limits).unwrap());
            }
        }
        let header = format::parse_header(&good, &limits).unwrap();
        assert_eq!(
            seen.remove(&key_hash(b"good")),
            Some(EntryCheck::Healthy {
                header,
                key: b"good".to_vec(),
                len: good.len() as u64,
            })
        );
        assert!(matches!(
            seen.remove(&key_hash(b"moved")),
            Some(EntryCheck::Corrupt {
                reason: Corruption::KeyMismatch,
                ..
            })
        ));
        assert!(matches!(
            seen.remove(&key_hash(b"flipped")),
            Some(EntryCheck::Corrupt {
                reason: Corruption::Checksum,
                ..
            })
        ));
        assert!(seen.is_empty());
    }

    #[test]
    fn report_serializes() {
        let report = VerifyReport {
            corrupted: vec![CorruptFile {
                path: "v1/ab/cd/x".into(),
                reason: Corruption::KeyMismatch,
                detail: "d".into(),
                len: 3,
                quarantined_as: None,
            }],
            ..VerifyReport::default()
        };
        let bytes = bincode::serde::encode_to_vec(&report, bincode::config::standard()).unwrap();
        assert!(bytes.windows(10).any(|w| w == b"v1/ab/cd/x"));
    }
}
