//! Shared fixtures: deterministic entries, placing files at a key's path, caches on a
//! directory whose clock reads [`NOW`], `verify` on the fixtures' file system, and reading the
//! quarantine back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use answercache::testing::real_fs;
pub use answercache::testing::TestDir;
use answercache::verify::{verify_with_fs, VerifyOptions, VerifyReport};
use answercache::warm::format::{self, EntryMeta, Limits};
use answercache::warm::layout::{hex, key_hash, Layout};
pub use answercache::workload::Rng;
use answercache::TieredCache;

/// The clock every cache in these tests reads: quarantine names are `<NOW>-<reason>-<hex>`.
pub const NOW: u64 = 1_800_000_000_000;

/// Metadata of every generated entry: fixed, so files are byte-for-byte reproducible, and
/// never expiring, so they stay valid whatever the clock says.
pub const META: EntryMeta = EntryMeta {
    created_ms: 1_700_000_000_000,
    expires_ms: 0,
    cost: 7,
    encoding: answercache::Encoding::Raw,
};

/// The limits a cache has by default (what the fixtures are built against).
pub const DEFAULT_LIMITS: Limits = Limits {
    max_key_bytes: answercache::defaults::DEFAULT_MAX_KEY_BYTES,
    max_entry_bytes: answercache::defaults::DEFAULT_MAX_ENTRY_BYTES,
};

const WORDS: [&str; 24] = [
    "the",
    "model",
    "answer",
    "cache",
    "token",
    "Paris",
    "is",
    "capital",
    "of",
    "France",
    "tool",
    "result",
    "JSON",
    "{\"role\":",
    "\"assistant\"}",
    "latency",
    "prompt",
    "42",
    "retrieval",
    "context",
    "and",
    "a",
    "with",
    "error",
];

/// LLM-ish text of exactly `len` bytes, deterministic in `seed`.
///
/// The committed fixtures hold `text(700, 2024)`: its draws are reduced modulo, as when they
/// were generated, not with `Rng::below`, so that the bytes stay the same.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut draw_below = |n: usize| (rng.next_u64() % n as u64) as usize;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[draw_below(WORDS.len())].as_bytes());
        out.push(if draw_below(12) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// A valid entry file for `key` holding `value`.
pub fn entry(key: &[u8], value: &[u8]) -> Vec<u8> {
    format::encode(key, value, META, 6).expect("encode")
}

/// The path of `key`'s entry under `root`.
pub fn entry_path(root: &Path, key: &[u8]) -> PathBuf {
    Layout::new(root).entry_path(&key_hash(key))
}

/// `v2/ab/<hex>` of `key`, relative to the root.
pub fn rel_entry_path(key: &[u8]) -> String {
    let h = hex(&key_hash(key));
    format!("v2/{}/{h}", &h[..2])
}

/// Writes `bytes` at `key`'s entry path (creating the fan-out directories), replacing
/// whatever regular file was there.
pub fn place(root: &Path, key: &[u8], bytes: &[u8]) -> PathBuf {
    let path = entry_path(root, key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write entry");
    path
}

/// Creates the fan-out directories of `key` and returns its entry path.
pub fn prepare_path(root: &Path, key: &[u8]) -> PathBuf {
    let path = entry_path(root, key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    path
}

/// `answercache::verify::verify` on the fixtures' real file system (`testing::real_fs`: the
/// portable one in tests/portable_corruption, where the hostile directories must meet it).
pub fn verify(root: &Path, options: &VerifyOptions) -> std::io::Result<VerifyReport> {
    verify_with_fs(&real_fs(), root, options, None)
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
}

/// A directory whose caches read a manual clock at [`NOW`].
pub fn dir() -> TestDir {
    TestDir::new().manual_clock(NOW)
}

/// A cache on `dir` with default limits.
pub async fn open(dir: &TestDir) -> TieredCache {
    open_with(dir, |b| b).await
}

/// Like [`open`], with extra builder settings.
pub async fn open_with(
    dir: &TestDir,
    f: impl FnOnce(answercache::Builder) -> answercache::Builder,
) -> TieredCache {
    dir.open(f(dir.builder())).await
}

/// Waits (yielding, no sleeping) until the background scan has been merged.
pub async fn wait_for_scan(cache: &TieredCache) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cache.stats().warm_index_complete {
        assert!(Instant::now() < deadline, "the startup scan never finished");
        tokio::task::yield_now().await;
    }
}

/// One quarantined file and its sidecar.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub sidecar: String,
    pub path: PathBuf,
}

impl Quarantined {
    /// A `key: value` line of the sidecar.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.sidecar
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
    }
}

/// Everything in `<root>/quarantine/` that is not a sidecar, by name, with its sidecar (which
/// must exist).
pub fn quarantined(root: &Path) -> BTreeMap<String, Quarantined> {
    let qdir = Layout::new(root).quarantine_dir().to_owned();
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(&qdir) else {
        return out;
    };
    for e in rd {
        let e = e.expect("dir entry");
        let name = e.file_name().into_string().expect("utf-8 quarantine name");
        if name.ends_with(".why") {
            continue;
        }
        let sidecar = std::fs::read_to_string(qdir.join(format!("{name}.why")))
            .unwrap_or_else(|e| panic!("sidecar of {name}: {e}"));
        out.insert(
            name,
            Quarantined {
                sidecar,
                path: e.path(),
            },
        );
    }
    out
}

/// The quarantine name the read path gives `key`'s file at time `now` for `reason`.
pub fn quarantine_name(now: u64, reason: &str, key: &[u8]) -> String {
    format!("{now}-{reason}-{}", hex(&key_hash(key)))
}

/// A gzip member of 4 MiB of zeros (about 4 KiB): computed once, deflate is slow in debug.
pub fn bomb_payload() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| format::deflate(&vec![0u8; BOMB_INFLATED], 9).expect("deflate"))
}

/// What [`bomb_payload`] inflates to.
pub const BOMB_INFLATED: usize = 4 << 20;

/// `BTreeMap<String, u64>` from `(name, count)` pairs, for comparing with `Stats`.
pub fn counts<'a>(pairs: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for p in pairs {
        *m.entry(p.to_owned()).or_insert(0) += 1;
    }
    m
}
