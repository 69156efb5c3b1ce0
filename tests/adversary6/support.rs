//! What the adversary-6 tests share: looking at the disk independently of the library's path
//! code (entry paths of both layouts, `du`, file counts), planting entry files of either
//! layout with the public format encoder, and directories whose caches read a manual clock.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use answercache::testing::TestDir;
use answercache::warm::format::{encode, EntryMeta};
use answercache::Encoding;

pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;
pub const EROFS: i32 = 30;

/// A directory whose caches read a manual clock starting at the real wall time.
pub fn dir() -> TestDir {
    TestDir::new().manual_clock(now_ms())
}

/// Like [`dir`], on a directory the test prepared.
pub fn dir_in(prepared: tempfile::TempDir) -> TestDir {
    TestDir::in_tempdir(prepared).manual_clock(now_ms())
}

pub fn now_ms() -> u64 {
    answercache::clock::system_now_ms()
}

/// Lowercase hex of blake3(key).
pub fn hex_of(key: &[u8]) -> String {
    blake3::hash(key)
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `<root>/v2/ab/<hex>`.
pub fn v2_path(root: &Path, key: &[u8]) -> PathBuf {
    let h = hex_of(key);
    root.join("v2").join(&h[0..2]).join(&h)
}

/// `<root>/v1/ab/cd/<hex>`: where layout 1 kept the entry.
pub fn v1_path(root: &Path, key: &[u8]) -> PathBuf {
    let h = hex_of(key);
    root.join("v1").join(&h[0..2]).join(&h[2..4]).join(&h)
}

/// An entry file of `key` holding the raw bytes `value`, created at `created_ms`.
pub fn entry_file(key: &[u8], value: &[u8], created_ms: u64, expires_ms: u64) -> Vec<u8> {
    encode(
        key,
        value,
        EntryMeta {
            created_ms,
            expires_ms,
            cost: 0,
            encoding: Encoding::Raw,
        },
        3,
    )
    .unwrap()
}

/// Writes `bytes` at `path`, creating its directories.
/// A cache open on the directory removes fan-out directories that hold none of its entries
/// (`rmdir`), possibly between the two steps: like any writer, this makes it again.
pub fn plant(path: &Path, bytes: &[u8]) {
    for _ in 0..10 {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match std::fs::write(path, bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            r => return r.unwrap(),
        }
    }
    panic!("{path:?}: its directory kept vanishing");
}

/// Plants a layout-1 entry of `key` = `value` (raw bytes), created an hour ago, no expiry.
pub fn plant_v1(root: &Path, key: &str, value: &str) {
    let file = entry_file(key.as_bytes(), value.as_bytes(), now_ms() - 3_600_000, 0);
    plant(&v1_path(root, key.as_bytes()), &file);
}

/// What `du -sk` counts, in bytes: the allocated blocks of every file and directory under
/// `root`, the root included (symlinks not followed).
pub fn du_bytes(root: &Path) -> u64 {
    fn go(p: &Path) -> u64 {
        // A live cache may remove an emptied fan-out directory (or evict a file) while this
        // walks: what vanished takes nothing.
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let m = match std::fs::symlink_metadata(p) {
            Err(e) if gone(&e) => return 0,
            m => m.unwrap(),
        };
        let mut n = m.blocks() * 512;
        if m.is_dir() {
            let listing = match std::fs::read_dir(p) {
                Err(e) if gone(&e) => return n,
                l => l.unwrap(),
            };
            for e in listing {
                n += go(&e.unwrap().path());
            }
        }
        n
    }
    go(root)
}

/// `du -sk <root>` by the coreutils binary, in bytes.
pub fn du_command(root: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .arg("-sk")
        .arg(root)
        .output()
        .expect("du (coreutils) must be installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let kib: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
    kib * 1024
}

/// The entry files (regular files with 64-hex names) under `<root>/v2/*/`.
pub fn v2_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root.join("v2")) else {
        return out;
    };
    for d in dirs {
        let d = d.unwrap();
        if !d.file_type().unwrap().is_dir() {
            continue;
        }
        // A directory the cache removes meanwhile (it `rmdir`s empty fan-out directories).
        let Ok(names) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for e in names {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() && e.file_name().len() == 64 {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The fan-out directories under `<root>/v2`.
pub fn fan_out_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join("v2"))
        .map(|it| {
            it.map(|e| e.unwrap().path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What the budget should count for the files there now: each file rounded up to 4 KiB plus
/// 128 bytes, plus 4 KiB per non-empty fan-out directory (FORMAT.md, "What the warm budget
/// counts"; the test file systems have 4 KiB units).
pub fn budget_of_files(root: &Path) -> u64 {
    let files = v2_files(root);
    let mut dirs = std::collections::BTreeSet::new();
    let mut n = 0;
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        n += len.div_ceil(4096) * 4096 + 128;
        dirs.insert(f.parent().unwrap().to_owned());
    }
    // Each fan-out directory holding an entry counts what it takes (at least a block): ext4
    // never shrinks a directory, and the budget counts its real size (FORMAT.md).
    n + dirs
        .iter()
        .map(|d| std::fs::metadata(d).map_or(4096, |m| m.len().max(4096)))
        .sum::<u64>()
}

/// Every path under `dir` (relative), with its kind (`d`, `f`, `l`, `p`, `?`) and, for files,
/// the length, sorted; symlinks are not followed.
pub fn tree(dir: &Path) -> Vec<(PathBuf, char, u64)> {
    fn go(base: &Path, rel: &Path, out: &mut Vec<(PathBuf, char, u64)>) {
        let Ok(it) = std::fs::read_dir(base.join(rel)) else {
            return;
        };
        for e in it {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(base.join(&rel)).unwrap();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_file() {
                'f'
            } else if ft.is_symlink() {
                'l'
            } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
                'p'
            } else {
                '?'
            };
            out.push((rel.clone(), kind, if kind == 'f' { m.len() } else { 0 }));
            if kind == 'd' {
                go(base, &rel, out);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, Path::new(""), &mut out);
    out.sort();
    out
}
