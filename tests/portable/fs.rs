//! The portable file system itself, call by call, next to the platform's (the Linux one on
//! Linux), which it must match: a symlink planted at any level of an entry's path (`v1`,
//! each fan-out directory, the entry itself) or at `tmp/` is never followed by any call;
//! a FIFO is never blocked on; `rename_noreplace` onto anything fails with `AlreadyExists`
//! and changes nothing; listings agree field for field.
//!
//! Paths come from [`Layout`] (the fan-out is the layout's business), and every scenario
//! checks that nothing outside the cache root changed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use answercache::fs::{FileKind, FileRead, Fs, StdFs};
use answercache::warm::layout::{key_hash, Layout};
use rustix::io::Errno;

/// The implementations under test: the portable one, and the platform's default, whose
/// behaviour it must match (on Linux, the Linux implementation).
fn implementations() -> [StdFs; 2] {
    [StdFs::portable(), StdFs::new()]
}

/// A cache root holding one entry (`b"entry"`) and a temp file (`b"temp"`), and beside it,
/// outside the root, a mirror of the same tree whose files say where they are: what a
/// planted symlink points to.
struct Tree {
    _dir: tempfile::TempDir,
    layout: Layout,
    outside: PathBuf,
    entry: PathBuf,
    temp: PathBuf,
    /// A temp file beside the entry, in its fan-out directory (where every write's is), made
    /// by [`Tree::write_beside`].
    beside: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let outside = std::fs::canonicalize(outside).unwrap();
        let layout = Layout::new(&root);
        let hash = key_hash(b"the key");
        let entry = layout.entry_path(&hash);
        let temp = layout.tmp_dir().join("t.tmp");
        let beside = entry.with_file_name(".t.tmp");
        let t = Tree {
            _dir: dir,
            layout,
            outside,
            entry,
            temp,
            beside,
        };
        for (base, entry_bytes, temp_bytes) in [
            (t.root().to_owned(), &b"entry"[..], &b"temp"[..]),
            (t.outside.clone(), b"outside entry", b"outside temp"),
        ] {
            let in_base = |p: &Path| base.join(p.strip_prefix(t.root()).unwrap());
            std::fs::create_dir_all(in_base(t.entry.parent().unwrap())).unwrap();
            std::fs::create_dir_all(in_base(t.layout.tmp_dir())).unwrap();
            std::fs::write(in_base(&t.entry), entry_bytes).unwrap();
            std::fs::write(in_base(&t.temp), temp_bytes).unwrap();
        }
        t
    }

    fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Writes the temp file beside the entry, and its mirror outside.
    fn write_beside(&self) {
        std::fs::write(&self.beside, b"temp").unwrap();
        std::fs::write(self.mirror(&self.beside), b"outside temp").unwrap();
    }

    fn entry_dir(&self) -> &Path {
        self.entry.parent().unwrap()
    }

    /// The place outside the root that mirrors `p`.
    fn mirror(&self, p: &Path) -> PathBuf {
        self.outside.join(p.strip_prefix(self.root()).unwrap())
    }

    /// Every directory between the root and the entry (`v1`, then each fan-out level), then
    /// the entry itself.
    fn levels(&self) -> Vec<PathBuf> {
        let mut levels: Vec<PathBuf> = self
            .entry
            .ancestors()
            .take_while(|a| *a != self.root())
            .map(Path::to_owned)
            .collect();
        levels.reverse();
        levels
    }

    /// Replaces `at` (a file or a tree) with a symlink to its mirror outside the root.
    fn plant_symlink(&self, at: &Path) {
        if std::fs::symlink_metadata(at).unwrap().is_dir() {
            std::fs::remove_dir_all(at).unwrap();
        } else {
            std::fs::remove_file(at).unwrap();
        }
        std::os::unix::fs::symlink(self.mirror(at), at).unwrap();
    }

    /// Everything outside the root: path, then the file's bytes, `<dir>`, or `-> target`.
    fn outside_now(&self) -> BTreeMap<PathBuf, String> {
        snapshot(&self.outside)
    }
}

/// Every path under `dir` (not following symlinks) with what it is.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn go(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let what = if meta.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                go(&p, out);
                "<dir>".to_owned()
            } else {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
            };
            out.insert(p, what);
        }
    }
    let mut out = BTreeMap::new();
    go(dir, &mut out);
    out
}

/// The OS error number of `r`'s error (panics on success).
fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().expect("an OS error")
}

const ELOOP: i32 = Errno::LOOP.raw_os_error();
const EEXIST: i32 = Errno::EXIST.raw_os_error();
const ENOTDIR: i32 = Errno::NOTDIR.raw_os_error();

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink())
}

fn not_regular(r: io::Result<FileRead>) -> FileKind {
    match r.unwrap() {
        FileRead::NotRegular(kind) => kind,
        other => panic!("read as {other:?}"),
    }
}

#[test]
fn the_levels_are_those_of_the_layout() {
    let t = Tree::new();
    let levels = t.levels();
    assert_eq!(
        levels.first().map(PathBuf::as_path),
        Some(t.layout.entries_dir())
    );
    assert_eq!(levels.last(), Some(&t.entry));
    assert!(
        levels.len() >= 3,
        "v2, at least one fan-out level, the entry: {levels:?}"
    );
}

#[test]
fn a_symlinked_directory_at_any_level_of_an_entry_path_is_never_followed() {
    for fs in implementations() {
        // Every directory level (the entry itself is the next test's).
        for i in 0..Tree::new().levels().len() - 1 {
            let t = Tree::new();
            t.write_beside();
            let level = t.levels()[i].clone();
            t.plant_symlink(&level);
            let outside = t.outside_now();
            let ctx = format!("{fs:?}, symlink at {}", level.display());
            let aside = t.layout.tmp_dir().join("aside.tmp");
            // A directory to act in (a parent, a directory to list, create or sync) that is
            // itself the symlink is "not a directory" (the cache takes it for "nothing
            // there"); a symlink further up, or on the way to a file to open, is ELOOP.
            let place = |dir: &Path| if dir == level { ENOTDIR } else { ELOOP };
            let entry_dir = t.entry_dir();

            assert_eq!(
                not_regular(fs.read_file(&t.entry, 100)),
                FileKind::Symlink,
                "{ctx}"
            );
            assert_eq!(
                not_regular(fs.read_prefix(&t.entry, 4)),
                FileKind::Symlink,
                "{ctx}"
            );
            assert_eq!(errno(fs.write_new(&t.entry, b"new", true)), ELOOP, "{ctx}");
            let in_place = place(entry_dir);
            assert_eq!(
                errno(fs.rename(&t.temp, &t.entry)),
                in_place,
                "{ctx}: rename to"
            );
            assert_eq!(
                errno(fs.rename(&t.entry, &aside)),
                in_place,
                "{ctx}: rename from"
            );
            assert_eq!(
                errno(fs.rename(&t.beside, &t.entry)),
                in_place,
                "{ctx}: rename within the entry's directory"
            );
            assert_eq!(
                errno(fs.rename_noreplace(&t.beside, &t.entry)),
                in_place,
                "{ctx}: rename_noreplace within the entry's directory"
            );
            assert_eq!(
                errno(fs.rename_noreplace(&t.temp, &t.entry)),
                in_place,
                "{ctx}"
            );
            assert_eq!(
                errno(fs.rename_noreplace(&t.entry, &aside)),
                in_place,
                "{ctx}"
            );
            assert_eq!(errno(fs.remove_file(&t.entry)), in_place, "{ctx}");
            assert_eq!(errno(fs.create_dir_all(entry_dir)), in_place, "{ctx}");
            assert_eq!(errno(fs.create_dir_all(&t.entry.join("d"))), ELOOP, "{ctx}");
            assert_eq!(errno(fs.sync_dir(entry_dir)), in_place, "{ctx}");
            assert_eq!(errno(fs.read_dir(entry_dir)), in_place, "{ctx}");
            if level != entry_dir {
                let parent = entry_dir.parent().unwrap();
                assert_eq!(errno(fs.remove_dir_all(entry_dir)), place(parent), "{ctx}");
            }
            assert_eq!(t.outside_now(), outside, "{ctx}: nothing changed outside");
            assert!(is_symlink(&level), "{ctx}: the link is still there");
            assert_eq!(std::fs::read(&t.temp).unwrap(), b"temp", "{ctx}");
            assert_eq!(
                std::fs::read(t.mirror(&t.beside)).unwrap(),
                b"outside temp",
                "{ctx}: the temp beside the entry, outside, is untouched"
            );
            assert!(!aside.exists(), "{ctx}");

            // The link itself can go, never what it points to.
            fs.remove_dir_all(&level).unwrap();
            assert!(
                std::fs::symlink_metadata(&level).is_err(),
                "{ctx}: link removed"
            );
            assert_eq!(
                t.outside_now(),
                outside,
                "{ctx}: removing the link removed only it"
            );
            // A tree holding the link is removed without descending through it.
            t.plant_symlink_again(&level);
            fs.remove_dir_all(t.layout.entries_dir()).unwrap();
            assert!(!t.layout.entries_dir().exists(), "{ctx}");
            assert_eq!(
                t.outside_now(),
                outside,
                "{ctx}: the tree's removal stopped at the link"
            );
        }
    }
}

impl Tree {
    /// Puts the symlink at `at` back (its place is empty).
    fn plant_symlink_again(&self, at: &Path) {
        std::os::unix::fs::symlink(self.mirror(at), at).unwrap();
    }
}

#[test]
fn a_symlinked_entry_is_acted_on_as_a_link_never_through_it() {
    for fs in implementations() {
        let t = Tree::new();
        t.plant_symlink(&t.entry);
        let outside = t.outside_now();
        let target = t.mirror(&t.entry);
        let ctx = format!("{fs:?}");

        assert_eq!(
            not_regular(fs.read_file(&t.entry, 100)),
            FileKind::Symlink,
            "{ctx}"
        );
        assert_eq!(
            not_regular(fs.read_prefix(&t.entry, 4)),
            FileKind::Symlink,
            "{ctx}"
        );
        assert_eq!(errno(fs.write_new(&t.entry, b"new", true)), EEXIST, "{ctx}");
        let refused = fs.rename_noreplace(&t.temp, &t.entry).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists, "{ctx}");
        assert_eq!(errno(fs.create_dir_all(&t.entry)), ENOTDIR, "{ctx}");
        assert_eq!(errno(fs.sync_dir(&t.entry)), ENOTDIR, "{ctx}");
        assert_eq!(errno(fs.read_dir(&t.entry)), ENOTDIR, "{ctx}");
        assert_eq!(std::fs::read(&t.temp).unwrap(), b"temp", "{ctx}");
        assert_eq!(std::fs::read_link(&t.entry).unwrap(), target, "{ctx}");

        // A rename moves the link itself...
        let moved = t.layout.tmp_dir().join("moved.tmp");
        fs.rename(&t.entry, &moved).unwrap();
        assert_eq!(std::fs::read_link(&moved).unwrap(), target, "{ctx}");
        fs.rename_noreplace(&moved, &t.entry).unwrap();
        assert_eq!(std::fs::read_link(&t.entry).unwrap(), target, "{ctx}");
        // ...and one onto it replaces the link, not the file it points to.
        fs.rename(&t.temp, &t.entry).unwrap();
        assert!(!is_symlink(&t.entry), "{ctx}");
        assert_eq!(std::fs::read(&t.entry).unwrap(), b"temp", "{ctx}");
        assert_eq!(t.outside_now(), outside, "{ctx}");

        // Removing it removes the link, never its target.
        let removals: [fn(&StdFs, &Path) -> io::Result<()>; 2] =
            [StdFs::remove_file, StdFs::remove_dir_all];
        for remove in removals {
            std::fs::remove_file(&t.entry).unwrap();
            t.plant_symlink_again(&t.entry);
            remove(&fs, &t.entry).unwrap();
            assert!(std::fs::symlink_metadata(&t.entry).is_err(), "{ctx}");
            std::fs::write(&t.entry, b"entry").unwrap();
        }
        assert_eq!(t.outside_now(), outside, "{ctx}");
        assert_eq!(std::fs::read(&target).unwrap(), b"outside entry", "{ctx}");
    }
}

#[test]
fn a_symlinked_tmp_dir_is_never_followed() {
    for fs in implementations() {
        let t = Tree::new();
        let tmp = t.layout.tmp_dir();
        t.plant_symlink(tmp);
        let outside = t.outside_now();
        let ctx = format!("{fs:?}");
        let new_temp = tmp.join("new.tmp");

        // Opening a file in it: ELOOP. Acting in it (it is the parent, or the directory to
        // list, create or sync): ENOTDIR, as for any symlink where a directory should be.
        assert_eq!(
            not_regular(fs.read_file(&t.temp, 100)),
            FileKind::Symlink,
            "{ctx}"
        );
        assert_eq!(errno(fs.write_new(&new_temp, b"new", true)), ELOOP, "{ctx}");
        assert_eq!(errno(fs.sync_dir(tmp)), ENOTDIR, "{ctx}");
        assert_eq!(errno(fs.rename(&t.temp, &t.entry)), ENOTDIR, "{ctx}");
        assert_eq!(errno(fs.rename(&t.entry, &new_temp)), ENOTDIR, "{ctx}");
        assert_eq!(
            errno(fs.rename_noreplace(&t.temp, &t.entry)),
            ENOTDIR,
            "{ctx}"
        );
        assert_eq!(
            errno(fs.rename_noreplace(&t.entry, &new_temp)),
            ENOTDIR,
            "{ctx}"
        );
        assert_eq!(errno(fs.remove_file(&t.temp)), ENOTDIR, "{ctx}");
        assert_eq!(errno(fs.create_dir_all(tmp)), ENOTDIR, "{ctx}");
        assert_eq!(errno(fs.read_dir(tmp)), ENOTDIR, "{ctx}");
        assert_eq!(std::fs::read(&t.entry).unwrap(), b"entry", "{ctx}");
        assert_eq!(t.outside_now(), outside, "{ctx}");

        fs.remove_dir_all(tmp).unwrap();
        assert!(std::fs::symlink_metadata(tmp).is_err(), "{ctx}");
        assert_eq!(t.outside_now(), outside, "{ctx}: only the link went");
        fs.create_dir_all(tmp).unwrap();
        assert!(std::fs::symlink_metadata(tmp).unwrap().is_dir(), "{ctx}");
    }
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// Runs `f` on a thread and fails if it has not returned within 30 s: a call blocked on a
/// FIFO waits for a writer that never comes.
fn never_blocks(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: blocked on a FIFO"),
    }
}

#[test]
fn a_fifo_anywhere_is_never_blocked_on() {
    for fs in implementations() {
        never_blocks(&format!("{fs:?}"), move || {
            let ctx = format!("{fs:?}");
            // At the entry path.
            let t = Tree::new();
            std::fs::remove_file(&t.entry).unwrap();
            mkfifo(&t.entry);
            assert_eq!(
                not_regular(fs.read_file(&t.entry, 100)),
                FileKind::Special,
                "{ctx}"
            );
            assert_eq!(
                not_regular(fs.read_prefix(&t.entry, 4)),
                FileKind::Special,
                "{ctx}"
            );
            assert_eq!(errno(fs.write_new(&t.entry, b"x", true)), EEXIST, "{ctx}");
            assert_eq!(errno(fs.sync_dir(&t.entry)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.read_dir(&t.entry)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.create_dir_all(&t.entry)), ENOTDIR, "{ctx}");
            let listed: Vec<_> = fs
                .read_dir(t.entry_dir())
                .unwrap()
                .into_iter()
                .map(|e| (e.name, e.kind, e.len))
                .collect();
            let name = t.entry.file_name().unwrap().to_owned();
            assert_eq!(listed, [(name, FileKind::Special, 0)], "{ctx}");
            fs.remove_file(&t.entry).unwrap();
            assert!(std::fs::symlink_metadata(&t.entry).is_err(), "{ctx}");

            // In place of a directory on the way.
            let t = Tree::new();
            let fan_out = t.entry_dir().to_owned();
            std::fs::remove_dir_all(&fan_out).unwrap();
            mkfifo(&fan_out);
            assert_eq!(errno(fs.read_file(&t.entry, 100)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.read_prefix(&t.entry, 4)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.write_new(&t.entry, b"x", true)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.rename(&t.temp, &t.entry)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.create_dir_all(&fan_out)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.read_dir(&fan_out)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.sync_dir(&fan_out)), ENOTDIR, "{ctx}");
            assert_eq!(errno(fs.remove_dir_all(&fan_out)), ENOTDIR, "{ctx}");
            // Inside a tree being removed: unlinked, never opened.
            fs.remove_dir_all(t.layout.entries_dir()).unwrap();
            assert!(!t.layout.entries_dir().exists(), "{ctx}");
        });
    }
}

#[test]
fn rename_noreplace_onto_anything_fails_with_already_exists_and_changes_nothing() {
    for fs in implementations() {
        let t = Tree::new();
        let ctx = format!("{fs:?}");
        let before = snapshot(t.root());
        // Onto a file, a directory, a dangling symlink.
        let dangling = t.layout.tmp_dir().join("dangling");
        std::os::unix::fs::symlink(t.root().join("nowhere"), &dangling).unwrap();
        let before_link = snapshot(t.root());
        for to in [&t.entry, t.entry_dir(), &dangling] {
            let err = fs.rename_noreplace(&t.temp, to).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::AlreadyExists,
                "{ctx}: onto {to:?}"
            );
            assert_eq!(err.raw_os_error(), Some(EEXIST), "{ctx}");
            assert_eq!(snapshot(t.root()), before_link, "{ctx}: onto {to:?}");
        }
        std::fs::remove_file(&dangling).unwrap();
        assert_eq!(snapshot(t.root()), before, "{ctx}");
        assert_eq!(std::fs::read(&t.entry).unwrap(), b"entry", "{ctx}");
        assert_eq!(std::fs::read(&t.temp).unwrap(), b"temp", "{ctx}");

        // Onto nothing: moved.
        std::fs::remove_file(&t.entry).unwrap();
        fs.rename_noreplace(&t.temp, &t.entry).unwrap();
        assert_eq!(std::fs::read(&t.entry).unwrap(), b"temp", "{ctx}");
        assert!(std::fs::symlink_metadata(&t.temp).is_err(), "{ctx}");
        // From nothing: NotFound.
        let gone = fs.rename_noreplace(&t.temp, &t.entry).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{ctx}");
    }
}

#[test]
fn listings_metadata_and_errors_agree_with_the_platform_implementation() {
    let t = Tree::new();
    let dir = t.entry_dir();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/f"), b"12345").unwrap();
    std::os::unix::fs::symlink("nowhere", dir.join("link")).unwrap();
    mkfifo(&dir.join("fifo"));
    let listing = |fs: &StdFs| {
        let mut v: Vec<_> = fs
            .read_dir(dir)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind, e.len, e.modified_ms))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let [portable, platform] = implementations();
    let listed = listing(&portable);
    assert_eq!(listed, listing(&platform));
    let kinds: Vec<(&str, FileKind)> = listed
        .iter()
        .map(|(n, k, _, _)| (n.to_str().unwrap(), *k))
        .collect();
    let entry_name = t.entry.file_name().unwrap().to_str().unwrap();
    let mut expected = vec![
        ("fifo", FileKind::Special),
        ("link", FileKind::Symlink),
        ("sub", FileKind::Dir),
        (entry_name, FileKind::File),
    ];
    expected.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(kinds, expected);
    let entry_meta = std::fs::metadata(&t.entry).unwrap();
    let entry_ms = entry_meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let entry = listed.iter().find(|e| e.0 == entry_name).unwrap();
    assert_eq!((entry.2, entry.3), (5, entry_ms));

    // The same errors for what is missing or in the way.
    let missing = t.root().join("missing/x");
    let file_in_the_way = t.entry.join("x");
    for fs in implementations() {
        let ctx = format!("{fs:?}");
        assert_eq!(
            fs.read_file(&missing, 1).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.read_dir(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.remove_file(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.remove_dir_all(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(errno(fs.read_file(&file_in_the_way, 1)), ENOTDIR, "{ctx}");
        assert_eq!(errno(fs.create_dir_all(&file_in_the_way)), ENOTDIR, "{ctx}");
        assert_eq!(
            errno(fs.remove_dir_all(&t.entry)),
            ENOTDIR,
            "{ctx}: a file is no tree"
        );
        assert_eq!(
            errno(fs.write_new(&file_in_the_way, b"x", false)),
            ENOTDIR,
            "{ctx}"
        );
        assert!(matches!(
            fs.read_file(dir, 1).unwrap(),
            FileRead::NotRegular(FileKind::Dir)
        ));
        assert!(matches!(
            fs.read_file(&t.entry, 4).unwrap(),
            FileRead::TooLarge(5)
        ));
        match fs.read_prefix(&t.entry, 3).unwrap() {
            FileRead::Data(d) => assert_eq!(d, b"ent", "{ctx}"),
            other => panic!("{ctx}: {other:?}"),
        }
        assert_eq!(
            fs.total_space(t.root()).unwrap(),
            Some(
                rustix::fs::statvfs(t.root())
                    .map(|s| s.f_blocks * s.f_frsize)
                    .unwrap()
            ),
            "{ctx}"
        );
        assert!(fs.available_space(t.root()).unwrap() > 0, "{ctx}");
    }
}

#[test]
fn directories_are_created_0700_and_a_tree_is_removed_whole() {
    use std::os::unix::fs::PermissionsExt;
    for fs in implementations() {
        let t = Tree::new();
        let ctx = format!("{fs:?}");
        let deep = t.root().join("a/b/c");
        fs.create_dir_all(&deep).unwrap();
        fs.create_dir_all(&deep).unwrap(); // already there: fine
        for d in [t.root().join("a"), t.root().join("a/b"), deep.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & !0o700, 0, "{ctx}: {d:?} is {mode:o}");
        }
        fs.write_new(&deep.join("f"), b"x", true).unwrap();
        fs.sync_dir(&deep).unwrap();
        std::os::unix::fs::symlink(&t.outside, deep.join("out")).unwrap();
        mkfifo(&deep.join("fifo"));
        fs.remove_dir_all(&t.root().join("a")).unwrap();
        assert!(!t.root().join("a").exists(), "{ctx}");
        assert!(
            t.mirror(t.layout.entries_dir()).exists(),
            "{ctx}: the link's target stays"
        );
    }
}

/// (The Linux implementation asks `statvfs`, which follows symlinks.)
#[test]
fn the_portable_fs_reports_no_space_through_a_symlink() {
    let t = Tree::new();
    let link = t.root().join("link");
    std::os::unix::fs::symlink(&t.outside, &link).unwrap();
    assert_eq!(errno(StdFs::portable().available_space(&link)), ENOTDIR);
    assert_eq!(errno(StdFs::portable().total_space(&link)), ENOTDIR);
    let through = link.join("v2");
    assert_eq!(errno(StdFs::portable().available_space(&through)), ELOOP);
}
