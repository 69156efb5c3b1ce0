//! What the adversary-7 tests share.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use answercache::testing::wait_until;
use answercache::warm::format::{encode, EntryMeta};
use answercache::{Encoding, TieredCache};

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

pub fn meta(created_ms: u64, expires_ms: u64) -> EntryMeta {
    EntryMeta {
        created_ms,
        expires_ms,
        cost: 0,
        encoding: Encoding::Raw,
    }
}

/// A valid entry file of `key` holding the raw bytes `value`.
pub fn entry_file(key: &[u8], value: &[u8], created_ms: u64, expires_ms: u64) -> Vec<u8> {
    encode(key, value, meta(created_ms, expires_ms), 3).unwrap()
}

/// Writes `bytes` at `path`, creating its directories (again, if a live cache's rmdir took
/// them meanwhile).
pub fn plant(path: &Path, bytes: &[u8]) {
    for _ in 0..20 {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match std::fs::write(path, bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            r => return r.unwrap(),
        }
    }
    panic!("{path:?}: its directory kept vanishing");
}

pub async fn scanned(cache: &TieredCache) {
    assert!(
        wait_until(Duration::from_secs(60), || cache
            .stats()
            .warm_index_complete)
        .await,
        "the startup scan did not finish"
    );
}

/// Incompressible bytes (xorshift), deterministic in `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The entry files (regular files with 64-hex names) under `<root>/v2/*/`.
pub fn v2_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root.join("v2")) else {
        return out;
    };
    for d in dirs.flatten() {
        let Ok(names) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for e in names.flatten() {
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) && e.file_name().len() == 64 {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
