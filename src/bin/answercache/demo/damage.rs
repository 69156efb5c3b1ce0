//! The demo's planted corruption: real entry files in the demo directory, damaged the ways
//! files get damaged in production, while the cache is closed.
//!
//! Each damage is done with plain `std::fs` calls, as the outside world would do it (a failing
//! disk, a crash, a stray tool), not through the cache. The cache then meets the files on its
//! next reads and must quarantine each with the right reason, never serve it.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use answercache::warm::format::HEADER_LEN;
use answercache::warm::layout::{key_hash, Layout};

/// One damaged file.
#[derive(Debug, Clone)]
pub struct Planted {
    /// The damage, in words.
    pub how: &'static str,
    /// What was done to the bytes.
    pub what: String,
    /// The reason the cache should give when it quarantines the file.
    pub expect: &'static str,
    /// Path relative to the cache directory.
    pub rel: String,
}

/// The damages, in the order they are applied to the victims.
const DAMAGES: [(&str, &str); 4] = [
    ("bit rot", "checksum"),
    ("torn write", "truncated"),
    ("stray tool", "magic"),
    ("misplaced copy", "key-mismatch"),
];

/// Damages the entry files of `victims` (one damage each, in [`DAMAGES`] order), using the
/// file of `donor` for the misplaced copy. Victims without a file are skipped.
pub fn plant(dir: &Path, victims: &[&str], donor: &str) -> std::io::Result<Vec<Planted>> {
    let layout = Layout::new(dir);
    let path_of = |key: &str| layout.entry_path(&key_hash(key.as_bytes()));
    let mut planted = Vec::new();
    for (key, (how, expect)) in victims.iter().zip(DAMAGES) {
        let path = path_of(key);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let len = meta.len();
        let what = match expect {
            "checksum" => {
                // One bit in the middle of the gzip payload: the checksum catches it before
                // the decompressor ever sees the bytes.
                let payload_at = (HEADER_LEN + key.len()) as u64;
                let at = payload_at + len.saturating_sub(payload_at) / 2;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)?;
                let mut byte = [0u8; 1];
                f.read_exact_at(&mut byte, at)?;
                f.write_all_at(&[byte[0] ^ 0x10], at)?;
                format!("flipped bit 4 of byte {at} of {len}")
            }
            "truncated" => {
                let keep = len * 3 / 5;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(keep)?;
                format!("cut from {len} to {keep} bytes")
            }
            "magic" => {
                let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
                f.write_all(b"{\"note\":")?;
                "overwrote the first 8 bytes with JSON".to_owned()
            }
            _ => {
                std::fs::copy(path_of(donor), &path)?;
                "replaced with the (valid) file of another prompt".to_owned()
            }
        };
        planted.push(Planted {
            how,
            what,
            expect,
            rel: relative(dir, &path),
        });
    }
    Ok(planted)
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
