//! `Tamper`: the std file system with hooks that change the tree (or fail) on a chosen call of
//! a chosen operation on an exact path, before or after the call. It is how the races of a
//! walk are made deterministic: "the fan-out directory `v2/ab` is replaced by a file between
//! the listing of `v2` and its own listing", "`v2/ab` becomes a symlink just before the layout
//! migration renames a `v1/` file into it". Every call is also logged (operation and path), so
//! a test can say exactly what was touched.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use answercache::fs::{DirEntryInfo, FileRead, Fs, StdFs};

/// Which operation a hook watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ReadDir,
    ReadFile,
    ReadPrefix,
    Rename,
    /// `rename_noreplace`, matched on its source path (the layout migration's move, and
    /// putting back a file taken aside).
    RenameNoreplace,
    RemoveFile,
    RemoveDirAll,
    CreateDirAll,
    WriteNew,
    SyncDir,
    /// Not a call: the destination of the `rename` or `rename_noreplace` logged just before.
    RenameTarget,
}

/// What a hook does.
pub enum Action {
    /// Runs before the call, which then goes ahead.
    Before(Box<dyn FnMut() + Send>),
    /// Runs after the call, whose result is kept.
    After(Box<dyn FnMut() + Send>),
    /// The call fails with this errno instead.
    Fail(i32),
}

struct Hook {
    op: Op,
    path: PathBuf,
    /// Fires on this matching call (0: the first), and `times` calls from there.
    on_call: u64,
    times: u64,
    seen: u64,
    fired: u64,
    action: Action,
}

#[derive(Default)]
pub struct Tamper {
    /// List directories in byte order of the names instead of the file system's order.
    sorted: bool,
    hooks: Mutex<Vec<Hook>>,
    /// Every hooked call, in order: the operation and its (source) path.
    log: Mutex<Vec<(Op, PathBuf)>>,
}

impl fmt::Debug for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tamper")
    }
}

impl Tamper {
    pub fn new() -> Self {
        Tamper::default()
    }

    /// A `Tamper` whose listings are in byte order of the names: what the cache does in
    /// listing order (which `v2/ab` it reaches first when a walk or a migration stops on an
    /// error, which directory `clear` removes before one fails) is then the same on every file
    /// system (ext4 orders a listing by a hash seeded per file system), so a transcript
    /// recorded on one machine holds on another.
    pub fn sorted() -> Self {
        Tamper {
            sorted: true,
            ..Tamper::default()
        }
    }

    /// Adds a hook firing once, on the `on_call`-th call (from 0) of `op` on exactly `path`.
    pub fn on(&self, op: Op, path: impl Into<PathBuf>, on_call: u64, action: Action) {
        self.on_times(op, path, on_call, 1, action);
    }

    /// Adds a hook firing on `times` calls from the `on_call`-th.
    pub fn on_times(
        &self,
        op: Op,
        path: impl Into<PathBuf>,
        on_call: u64,
        times: u64,
        action: Action,
    ) {
        self.hooks.lock().unwrap().push(Hook {
            op,
            path: path.into(),
            on_call,
            times,
            seen: 0,
            fired: 0,
            action,
        });
    }

    /// How many times hooks fired.
    pub fn fired(&self) -> u64 {
        self.hooks.lock().unwrap().iter().map(|h| h.fired).sum()
    }

    /// Every call of `op` so far, by path, in order.
    pub fn calls(&self, op: Op) -> Vec<PathBuf> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Every path any call named (a rename's source and destination), in order.
    pub fn touched(&self) -> Vec<PathBuf> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn call<T>(&self, op: Op, path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.log.lock().unwrap().push((op, path.to_owned()));
        let mut after = Vec::new();
        {
            let mut hooks = self.hooks.lock().unwrap();
            for (i, h) in hooks.iter_mut().enumerate() {
                if h.op != op || h.path != path {
                    continue;
                }
                let n = h.seen;
                h.seen += 1;
                if n < h.on_call || n >= h.on_call + h.times {
                    continue;
                }
                h.fired += 1;
                match &mut h.action {
                    Action::Before(run) => run(),
                    Action::After(_) => after.push(i),
                    Action::Fail(errno) => return Err(io::Error::from_raw_os_error(*errno)),
                }
            }
        }
        let result = f();
        let mut hooks = self.hooks.lock().unwrap();
        for i in after {
            if let Action::After(run) = &mut hooks[i].action {
                run();
            }
        }
        result
    }
}

impl Fs for Tamper {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.call(Op::ReadFile, path, || StdFs::new().read_file(path, max_len))
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.call(Op::ReadPrefix, path, || StdFs::new().read_prefix(path, n))
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        self.call(Op::WriteNew, path, || {
            StdFs::new().write_new(path, data, sync)
        })
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push((Op::RenameTarget, to.to_owned()));
        self.call(Op::Rename, from, || StdFs::new().rename(from, to))
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push((Op::RenameTarget, to.to_owned()));
        self.call(Op::RenameNoreplace, from, || {
            StdFs::new().rename_noreplace(from, to)
        })
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.call(Op::RemoveFile, path, || StdFs::new().remove_file(path))
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.call(Op::RemoveDirAll, path, || StdFs::new().remove_dir_all(path))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.call(Op::CreateDirAll, path, || StdFs::new().create_dir_all(path))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.call(Op::SyncDir, path, || StdFs::new().sync_dir(path))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        let mut names = self.call(Op::ReadDir, path, || StdFs::new().read_dir(path))?;
        if self.sorted {
            names.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(names)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        StdFs::new().available_space(path)
    }
}

/// Replaces the directory `dir` (and what it holds) with a regular file.
pub fn replace_with_file(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(dir);
    std::fs::write(dir, b"a file where a directory was").unwrap();
}

/// Replaces whatever is at `path` with a FIFO.
pub fn replace_with_fifo(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::remove_file(path);
    crate::trees::mkfifo(path);
}

/// Replaces whatever is at `path` with a directory.
pub fn replace_with_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::remove_file(path);
    std::fs::create_dir_all(path.join("inside")).unwrap();
}

/// Removes the directory `dir`.
pub fn remove_dir(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
}

/// Replaces the directory `dir` with a symlink to `target`.
pub fn replace_with_symlink(dir: &Path, target: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(dir);
    std::os::unix::fs::symlink(target, dir).unwrap();
}
