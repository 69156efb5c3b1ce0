//! The one walk of a cache directory's entry files: `<root>/v2/ab/<64 hex>`.
//!
//! [`EntryWalk`] is an iterator over what the listings show; it opens no file and decides
//! nothing. Every caller (the cache's startup scan and `clear`, [`verify`](crate::verify),
//! the `answercache` binary's `stats` and `purge`) walks with it and draws its own conclusions
//! from the items. The rules:
//!
//! - **Only the layout is descended into.** Below `v2/`, a name is descended into only if the
//!   listing (`lstat`: a symlink is a symlink) calls it a directory and it is two lowercase hex
//!   characters (`v2/ab/`). Each such directory is announced as
//!   [`WalkItem::FanOutDir`] before it is listed, so a caller may [skip](EntryWalk::skip_dir)
//!   it.
//! - **Entries whatever they are.** Every name of 64 lowercase hex characters in `v2/ab/` is
//!   a [`WalkItem::Entry`], with the hash its name spells and the kind, length and mtime the
//!   listing gives: a regular file, but also a directory, symlink, FIFO or device planted at an
//!   entry path, which the walk never opens or descends into (the caller decides what a
//!   non-regular entry means: the cache skips it, `verify` calls it `not-a-regular-file`).
//! - **Entries being written are items.** A regular file in `v2/ab/` named as a writer names
//!   the temp file of an entry it is writing (`.<16 hex>.<pid>.<instance>.<n>.tmp`, written
//!   beside its entry's place and renamed over it) is a [`WalkItem::Temp`]: never an entry,
//!   never foreign. The cache's startup scan deletes those whose writer is gone; tools count
//!   them as temp files.
//! - **Foreign names are items.** Every other name under `v2/` (`.DS_Store`, `ab/foo~`, a file
//!   where a fan-out directory belongs, a symlink to a directory, a non-UTF-8 name) is a
//!   [`WalkItem::Foreign`], never opened or descended into; so is `v2` itself when it is not a
//!   directory. Callers count them or ignore them. The previous layout's `v1/` is not walked:
//!   a cache moves its entries into `v2/` when it opens (see `WarmStore::migrate_legacy`).
//! - **Unreadable directories are items.** A directory whose listing fails is a
//!   [`WalkItem::Unlisted`] with the error and its [`Level`], and the walk goes on with the
//!   next name, so one bad fan-out directory does not hide the other 255. Whether that
//!   ends the caller's work is the caller's call (failing to list `v1` itself usually does). A
//!   directory that vanished between two listings (`NotFound`, `NotADirectory`: normal in a
//!   directory other processes share) is skipped without an item; a missing root or `v2` is an
//!   empty walk.
//! - **Nothing is followed.** Every listing goes through the [`Fs`] the walk is given (the
//!   std one refuses any symlink on the way, `openat2(RESOLVE_NO_SYMLINKS)` on Linux, an
//!   `O_NOFOLLOW` walk of every component elsewhere; the
//!   fault-injecting ones of `answercache::testing` wrap it), and the walk descends only into
//!   what a listing called a directory.
//! - **Order and laziness.** Names are visited in byte order of their names at every level
//!   (reports are deterministic; the cache's own walks keep the listing's order), depth first. Each listing is made by the `next` call that
//!   needs it: dropping the iterator stops the walk, and a caller can stop between any two
//!   items.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fs::{DirEntryInfo, FileKind, Fs};

use super::layout::{self, KeyHash, Layout};
use super::take::{take_if_unchanged, Judged};

/// Where in the layout a directory sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The cache root.
    Root,
    /// `<root>/v2`.
    Entries,
    /// A fan-out directory, `v2/ab`: it holds the entries.
    FanOut,
}

/// A name at an entry path (`v2/ab/<64 hex>`), as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalkEntry {
    /// The full path.
    pub path: PathBuf,
    /// The key hash the name spells.
    pub hash: KeyHash,
    /// What sits there (from `lstat`: never followed).
    pub kind: FileKind,
    /// Its length in bytes, as listed.
    pub len: u64,
    /// Its modification time, unix ms, as listed.
    pub modified_ms: u64,
}

/// A fan-out directory (`v2/ab`) the walk is about to list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanOutDir {
    /// The full path.
    pub path: PathBuf,
    /// [`Level::FanOut`].
    pub level: Level,
}

/// A name under `v2/` that has no place in the layout (or `v2` itself, not a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Foreign {
    /// The full path.
    pub path: PathBuf,
    /// What sits there (from `lstat`: never followed).
    pub kind: FileKind,
}

/// The temp file of an entry being written (`v2/ab/.<16 hex>.<pid>.<instance>.<n>.tmp`), or
/// left behind by a writer that died.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TempFile {
    /// The full path.
    pub path: PathBuf,
    /// Its length in bytes, as listed.
    pub len: u64,
    /// Its modification time, unix ms, as listed.
    pub modified_ms: u64,
}

/// A directory whose listing failed; nothing below it was walked.
#[derive(Debug)]
#[non_exhaustive]
pub struct Unlisted {
    /// The directory's full path.
    pub path: PathBuf,
    /// Where it sits in the layout.
    pub level: Level,
    /// The listing's error, as the [`Fs`] returned it.
    pub error: io::Error,
}

/// One thing an [`EntryWalk`] saw.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalkItem {
    /// A name at an entry path, whatever sits there.
    Entry(WalkEntry),
    /// A fan-out directory, announced before it is listed (see [`EntryWalk::skip_dir`]).
    FanOutDir(FanOutDir),
    /// The temp file of an entry being written (or left by a writer that died); never
    /// opened.
    Temp(TempFile),
    /// A name with no place in the layout; never opened or descended into.
    Foreign(Foreign),
    /// A directory that could not be listed; the walk goes on past it.
    Unlisted(Unlisted),
}

/// How a walk begins.
#[derive(Debug)]
enum Start {
    /// List the root, then `v2` if the root listing calls it a directory.
    ListRoot,
    /// The root listing the caller already made.
    RootListing(Vec<DirEntryInfo>),
    /// List `v2` directly.
    Entries,
    /// List one fan-out directory `v2/ab` only.
    FanOut(PathBuf),
}

/// A directory being walked: the names still to visit.
#[derive(Debug)]
struct Listing {
    dir: PathBuf,
    level: Level,
    names: std::vec::IntoIter<DirEntryInfo>,
}

/// The walk of the entry files under a cache root: an iterator of [`WalkItem`]s. See the
/// [module docs](self) for its rules.
///
/// ```
/// use answercache::warm::walk::{EntryWalk, WalkItem};
/// use answercache::StdFs;
///
/// # fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let (mut entries, mut foreign) = (0, 0);
/// for item in EntryWalk::new(&StdFs::new(), dir.path()) {
///     match item {
///         WalkItem::Entry(e) => entries += u64::from(e.kind == answercache::fs::FileKind::File),
///         WalkItem::Foreign(_) => foreign += 1,
///         WalkItem::Unlisted(u) => return Err(u.error),
///         _ => {}
///     }
/// }
/// assert_eq!((entries, foreign), (0, 0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct EntryWalk<'a> {
    fs: &'a dyn Fs,
    root: PathBuf,
    entries: PathBuf,
    start: Option<Start>,
    /// Directories being walked, innermost last.
    stack: Vec<Listing>,
    /// The fan-out directory the last item announced: listed by the next call unless skipped.
    pending: Option<(PathBuf, Level)>,
    sorted: bool,
    /// Whether `v2` has been listed.
    entries_listed: bool,
    /// See [`EntryWalk::strict_entries`].
    strict_entries: bool,
}

impl<'a> EntryWalk<'a> {
    /// A walk of everything under `root`, as a tool that did not create the directory walks
    /// it: the root is listed first, and `v2` is descended into only if that listing calls it
    /// a directory (a symlink or a file named `v2` is a [`WalkItem::Foreign`]).
    pub fn new(fs: &'a dyn Fs, root: &Path) -> Self {
        Self::starting(fs, root, Start::ListRoot)
    }

    /// [`EntryWalk::new`] for a caller that has listed the root itself (`verify` also looks
    /// at `quarantine/` in it): the same walk, one listing less.
    pub(crate) fn after_root_listing(
        fs: &'a dyn Fs,
        root: &Path,
        listing: Vec<DirEntryInfo>,
    ) -> Self {
        Self::starting(fs, root, Start::RootListing(listing))
    }

    /// A walk that starts by listing `<root>/v2` (the cache's own walks: it created `v2` at
    /// open). A `v2` that is not a directory then fails its listing ([`WalkItem::Unlisted`])
    /// or is missing (an empty walk).
    pub(crate) fn from_entries_dir(fs: &'a dyn Fs, root: &Path) -> Self {
        Self::starting(fs, root, Start::Entries)
    }

    /// A walk of one fan-out directory `dir` (`<root>/v2/ab`, as a [`WalkItem::FanOutDir`]
    /// names it) and its entries: for a caller that walks `v2` one fan-out directory per disk
    /// call.
    pub(crate) fn fan_out(fs: &'a dyn Fs, root: &Path, dir: &Path) -> Self {
        Self::starting(fs, root, Start::FanOut(dir.to_owned()))
    }

    fn starting(fs: &'a dyn Fs, root: &Path, start: Start) -> Self {
        EntryWalk {
            fs,
            root: root.to_owned(),
            entries: Layout::new(root).entries_dir().to_owned(),
            start: Some(start),
            stack: Vec::new(),
            pending: None,
            sorted: true,
            entries_listed: false,
            strict_entries: false,
        }
    }

    /// Visits the names of each directory in the order the listing returns them instead of
    /// sorting them: the cache's own walks keep the order they always had (it breaks the
    /// startup scan's ties in mtime, and orders `clear`'s removals), and skip sorting a `v2`
    /// of 65,536 directories.
    pub(crate) fn in_listing_order(mut self) -> Self {
        self.sorted = false;
        self
    }

    /// Reports a `<root>/v2` that is not a directory (a file, a FIFO, a symlink) as
    /// [`WalkItem::Unlisted`] instead of taking it for one that vanished: for `invalidate_if`,
    /// whose entries then cannot be scanned and which must say so. A missing `v2` stays an
    /// empty walk.
    pub(crate) fn strict_entries(mut self) -> Self {
        self.strict_entries = true;
        self
    }

    /// Whether `v2` was listed: false until the walk gets there, and when `v2` is missing, not
    /// a directory, or could not be listed.
    pub(crate) fn entries_listed(&self) -> bool {
        self.entries_listed
    }

    /// Does not list the fan-out directory the last item ([`WalkItem::FanOutDir`]) announced:
    /// nothing below it is visited. Called after any other item, it does nothing.
    pub fn skip_dir(&mut self) {
        self.pending = None;
    }

    /// What the name `e` in the directory `dir` at `level` is.
    fn classify(&mut self, dir: &Path, level: Level, e: DirEntryInfo) -> WalkItem {
        let path = dir.join(&e.name);
        match level {
            Level::FanOut => match layout::parse_hex(&e.name) {
                // Only at its own fan-out directory (`v2/ab/ab…`) is a name an entry path:
                // elsewhere no read ever looks for it, so it is foreign, not an entry.
                Some(hash) if fan_out_of(dir) == Some(hash[0]) => WalkItem::Entry(WalkEntry {
                    path,
                    hash,
                    kind: e.kind,
                    len: e.len,
                    modified_ms: e.modified_ms,
                }),
                None if e.kind == FileKind::File
                    && layout::parse_entry_temp_name(&e.name).is_some() =>
                {
                    WalkItem::Temp(TempFile {
                        path,
                        len: e.len,
                        modified_ms: e.modified_ms,
                    })
                }
                _ => foreign(path, e.kind),
            },
            Level::Entries if e.kind == FileKind::Dir && layout::is_fanout_name(&e.name) => {
                self.pending = Some((path.clone(), Level::FanOut));
                WalkItem::FanOutDir(FanOutDir {
                    path,
                    level: Level::FanOut,
                })
            }
            _ => foreign(path, e.kind),
        }
    }

    /// Lists `dir` and pushes it on the stack; `Some` when that ends in an item instead.
    fn enter(&mut self, dir: PathBuf, level: Level) -> Option<WalkItem> {
        match self.fs.read_dir(&dir) {
            Ok(names) => {
                self.entries_listed |= level == Level::Entries;
                self.push(dir, level, names);
                None
            }
            // Under `strict_entries`, `v2` only counts as gone when it is missing: one that is
            // not a directory is unlisted.
            Err(e)
                if is_vanished(&e)
                    && !(self.strict_entries
                        && level == Level::Entries
                        && e.kind() != io::ErrorKind::NotFound) =>
            {
                None
            }
            Err(error) => Some(WalkItem::Unlisted(Unlisted {
                path: dir,
                level,
                error,
            })),
        }
    }

    fn push(&mut self, dir: PathBuf, level: Level, mut names: Vec<DirEntryInfo>) {
        if self.sorted {
            names.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self.stack.push(Listing {
            dir,
            level,
            names: names.into_iter(),
        });
    }

    /// Takes the first step; `Some` when it ends in an item.
    fn begin(&mut self, start: Start) -> Option<WalkItem> {
        let root_listing = match start {
            Start::Entries => return self.enter(self.entries.clone(), Level::Entries),
            Start::FanOut(dir) => return self.enter(dir, Level::FanOut),
            Start::RootListing(listing) => listing,
            Start::ListRoot => match self.fs.read_dir(&self.root) {
                Ok(listing) => listing,
                Err(e) if is_vanished(&e) => return None,
                Err(error) => {
                    return Some(WalkItem::Unlisted(Unlisted {
                        path: self.root.clone(),
                        level: Level::Root,
                        error,
                    }))
                }
            },
        };
        let v1 = OsStr::new(layout::ENTRIES_DIR);
        match root_listing.iter().find(|e| e.name == v1).map(|e| e.kind) {
            None => None,
            Some(FileKind::Dir) => self.enter(self.entries.clone(), Level::Entries),
            Some(kind) => Some(foreign(self.entries.clone(), kind)),
        }
    }
}

impl Iterator for EntryWalk<'_> {
    type Item = WalkItem;

    fn next(&mut self) -> Option<WalkItem> {
        if let Some(start) = self.start.take() {
            if let Some(item) = self.begin(start) {
                return Some(item);
            }
        }
        if let Some((dir, level)) = self.pending.take() {
            if let Some(item) = self.enter(dir, level) {
                return Some(item);
            }
        }
        loop {
            let top = self.stack.last_mut()?;
            match top.names.next() {
                Some(e) => {
                    let (dir, level) = (top.dir.clone(), top.level);
                    return Some(self.classify(&dir, level, e));
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

fn foreign(path: PathBuf, kind: FileKind) -> WalkItem {
    WalkItem::Foreign(Foreign { path, kind })
}

/// The first hash byte of the entries a fan-out directory holds (`…/v2/ab` → `0xab`).
pub(crate) fn fan_out_of(dir: &Path) -> Option<u8> {
    layout::fanout_byte(dir.file_name()?)
}

/// Gone between two listings: another process removed it (or replaced a directory on the
/// way with a file).
fn is_vanished(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Deletes the entry file `entry` (found by a walk under `root`) only if it still starts with
/// `header`, the bytes the caller read and judged (expired, say): `Ok(true)` when it deleted
/// it, `Ok(false)` when there was nothing to delete (the file is gone, or a newer entry was
/// renamed onto the path since the header was read: that one is left in place).
///
/// For tools that delete entries of a directory live caches share: unlinking the path could
/// delete a newer, acknowledged entry another process just wrote. The file is first renamed
/// aside, to `<root>/tmp/purge.<pid>.0.<n>.tmp` (a temp name: if this process dies before
/// deleting it, the next cache that opens the directory sweeps it), compared with `header`,
/// and put back (with a rename that never replaces) if it differs. An error means nothing was
/// deleted, or that the file aside could not be deleted, or that a newer entry taken aside
/// could not be put back (it is then still at the aside path, never deleted).
pub fn remove_if_unchanged(
    fs: &dyn Fs,
    root: &Path,
    entry: &WalkEntry,
    header: &[u8],
) -> io::Result<bool> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let aside = Layout::new(root)
        .tmp_dir()
        .join(format!("purge.{}.0.{n}.tmp", std::process::id()));
    if !take_if_unchanged(fs, &entry.path, &aside, &Judged::Header(header), u64::MAX)? {
        return Ok(false);
    }
    fs.remove_file(&aside)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::fs::StdFs;
    use crate::testing::{Fault, FaultFs, FsOp, Rule};
    use crate::warm::layout::{hex, key_hash, plant};

    /// What a walk yielded, as text: `E v2/ab/<hex8> kind`, `D v2/ab`, `F path kind`,
    /// `U path level`.
    fn trace(root: &Path, walk: EntryWalk<'_>) -> Vec<String> {
        let rel = |p: &Path| p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        walk.map(|item| match item {
            WalkItem::Entry(e) => {
                assert_eq!(e.path.file_name().unwrap(), hex(&e.hash).as_str());
                format!("E {} {:?}", &rel(&e.path)[..14], e.kind)
            }
            WalkItem::FanOutDir(d) => format!("D {} {:?}", rel(&d.path), d.level),
            WalkItem::Foreign(f) => format!("F {} {:?}", rel(&f.path), f.kind),
            WalkItem::Temp(t) => format!("T {} {}", rel(&t.path), t.len),
            WalkItem::Unlisted(u) => format!("U {} {:?}", rel(&u.path), u.level),
        })
        .collect()
    }

    fn place(root: &Path, key: &[u8]) -> PathBuf {
        plant(root, key, key)
    }

    #[test]
    fn missing_root_or_v2_is_an_empty_walk() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(trace(&missing, EntryWalk::new(&StdFs::new(), &missing)).is_empty());
        assert!(trace(dir.path(), EntryWalk::new(&StdFs::new(), dir.path())).is_empty());
        let fs = StdFs::new();
        let walk = EntryWalk::from_entries_dir(&fs, dir.path());
        assert!(trace(dir.path(), walk).is_empty());
    }

    #[test]
    fn entries_foreign_names_and_hostile_kinds_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let v2 = root.join("v2");
        let name = |prefix: &str| format!("{prefix}{}", "0".repeat(64 - prefix.len()));
        std::fs::create_dir_all(v2.join("ab")).unwrap();
        std::fs::write(v2.join("ab").join(name("abcd1")), b"x").unwrap();
        std::fs::write(v2.join("ab").join(name("abcd0")), b"x").unwrap();
        std::fs::write(v2.join("ab/foo~"), b"x").unwrap();
        // An entry being written: a temp file; the same name as a directory, or with a name
        // that is not a writer's, foreign.
        std::fs::write(v2.join("ab/.abcd000000000000.77.1.0.tmp"), b"xyz").unwrap();
        std::fs::create_dir(v2.join("ab/.abcd000000000000.77.1.1.tmp")).unwrap();
        std::fs::write(v2.join("ab/.abcd00000000000.77.1.2.tmp"), b"x").unwrap();
        std::fs::write(v2.join("ab").join(name("ABCD")), b"x").unwrap();
        // A directory at an entry path: an entry, never descended into.
        std::fs::create_dir_all(v2.join("ab").join(name("abcd2")).join("inner")).unwrap();
        // The previous layout's second level inside a v2 fan-out directory: foreign.
        std::fs::create_dir_all(v2.join("ab/cd")).unwrap();
        std::fs::write(v2.join("ab/cd").join(name("abcd3")), b"x").unwrap();
        std::fs::write(v2.join(".DS_Store"), b"x").unwrap();
        std::fs::write(v2.join("ef"), b"x").unwrap();
        std::fs::create_dir_all(v2.join("fe/q")).unwrap();
        std::fs::create_dir_all(v2.join("AB/cd")).unwrap();
        // The previous layout's directory is not walked.
        std::fs::create_dir_all(root.join("v1/ab/cd")).unwrap();
        std::fs::write(root.join("v1/ab/cd").join(name("abcd4")), b"x").unwrap();
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join(name("ee00")), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, v2.join("ee")).unwrap();
        let short = |n: &str| n[..8].to_owned();
        assert_eq!(
            trace(root, EntryWalk::new(&StdFs::new(), root)),
            [
                "F v2/.DS_Store File".to_owned(),
                "F v2/AB Dir".to_owned(),
                "D v2/ab FanOut".to_owned(),
                "F v2/ab/.abcd00000000000.77.1.2.tmp File".to_owned(),
                "T v2/ab/.abcd000000000000.77.1.0.tmp 3".to_owned(),
                "F v2/ab/.abcd000000000000.77.1.1.tmp Dir".to_owned(),
                format!("F v2/ab/{} File", name("ABCD")),
                format!("E v2/ab/{} File", short(&name("abcd0"))),
                format!("E v2/ab/{} File", short(&name("abcd1"))),
                format!("E v2/ab/{} Dir", short(&name("abcd2"))),
                "F v2/ab/cd Dir".to_owned(),
                "F v2/ab/foo~ File".to_owned(),
                "F v2/ee Symlink".to_owned(),
                "F v2/ef File".to_owned(),
                "D v2/fe FanOut".to_owned(),
                "F v2/fe/q Dir".to_owned(),
            ]
        );
    }

    #[test]
    fn v2_that_is_not_a_directory_is_foreign_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        place(elsewhere.path(), b"k");
        std::os::unix::fs::symlink(elsewhere.path().join("v2"), dir.path().join("v2")).unwrap();
        let root = dir.path();
        assert_eq!(
            trace(root, EntryWalk::new(&StdFs::new(), root)),
            ["F v2 Symlink"]
        );
        // Started at v2 itself: the std Fs does not list through the symlink (`ENOTDIR`, as for
        // a file named `v2`), so nothing is walked.
        assert!(trace(root, EntryWalk::from_entries_dir(&StdFs::new(), root)).is_empty());
    }

    #[test]
    fn an_unlistable_directory_is_an_item_and_the_walk_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = place(root, b"a");
        let b = place(root, b"b");
        let bad = a.parent().unwrap().to_owned();
        let fs = FaultFs::std();
        fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::ReadDir])
                .path_contains(bad.strip_prefix(root).unwrap().to_string_lossy()),
        );
        let items: Vec<WalkItem> = EntryWalk::new(&fs, root).collect();
        let unlisted: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                WalkItem::Unlisted(u) => Some((u.path.clone(), u.level, u.error.raw_os_error())),
                _ => None,
            })
            .collect();
        assert_eq!(unlisted, [(bad, Level::FanOut, Some(5))]);
        let entries: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                WalkItem::Entry(e) => Some(e.path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(entries, [b]);
    }

    #[test]
    fn a_skipped_fan_out_directory_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        place(root, b"a");
        place(root, b"b");
        let fs = FaultFs::std();
        let mut walk = EntryWalk::from_entries_dir(&fs, root);
        let mut tops = 0;
        while let Some(item) = walk.next() {
            match item {
                WalkItem::FanOutDir(d) => {
                    assert_eq!(d.level, Level::FanOut);
                    tops += 1;
                    walk.skip_dir();
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(tops, 2);
        assert_eq!(fs.calls(FsOp::ReadDir), 1);
    }

    #[test]
    fn a_fan_out_walk_stays_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = place(root, b"a");
        place(root, b"b");
        let top = a.parent().unwrap();
        let fs = StdFs::new();
        let walk = EntryWalk::fan_out(&fs, root, top);
        let entries: Vec<_> = walk
            .filter_map(|i| match i {
                WalkItem::Entry(e) => Some(e.path),
                _ => None,
            })
            .collect();
        if hex(&key_hash(b"a"))[..2] != hex(&key_hash(b"b"))[..2] {
            assert_eq!(entries, [a]);
        }
    }

    #[test]
    fn remove_if_unchanged_deletes_only_the_judged_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let path = place(root, b"old header and body");
        let entry =
            match EntryWalk::new(&StdFs::new(), root).find(|i| matches!(i, WalkItem::Entry(_))) {
                Some(WalkItem::Entry(e)) => e,
                other => panic!("{other:?}"),
            };
        // Rewritten since the header was read: left in place.
        std::fs::write(&path, b"new header and body").unwrap();
        assert!(!remove_if_unchanged(&StdFs::new(), root, &entry, b"old header").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"new header and body");
        assert!(remove_if_unchanged(&StdFs::new(), root, &entry, b"new header").unwrap());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        assert!(!remove_if_unchanged(&StdFs::new(), root, &entry, b"new header").unwrap());
    }
}
