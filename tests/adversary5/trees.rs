//! Hostile cache directories, built the same way every time, and a snapshot of what a tree
//! holds (every name under a directory, `lstat`-ed, never followed) to compare trees.
//!
//! Each scenario builds, under an empty `base` directory, the cache root `base/cache` and, where
//! it needs one, a directory `base/outside` that symlinks lead to (a sentinel: nothing may be
//! read through, written into or deleted from it). The trees are in layout 2
//! (`v2/ab/<64 hex>`, one level of fan-out directories); the `legacy_*` scenarios hold a
//! directory of layout 1 (`v1/ab/cd/<64 hex>`) with hostile content, which a cache moves into
//! `v2/` when it opens (FORMAT.md, "Layout 2, and moving a directory of layout 1").

// Running the binaries as another user (`locked`, `chown_all`) is the CLI tests'.
#![cfg_attr(not(feature = "cli"), allow(dead_code))]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use answercache::warm::format::{self, EntryMeta};
use answercache::warm::layout::{hex, key_hash, Layout};
use answercache::Encoding;

/// A fixed creation time, far in the past (2001-09-09): never mistaken for "now" when outputs
/// are normalised.
pub const CREATED: u64 = 1_000_000_000_000;
/// An expiry long past.
pub const EXPIRED: u64 = 1_000_000_000_001;
/// An expiry far in the future (2096).
pub const FUTURE: u64 = 4_000_000_000_000;
/// The time the library tests run at (2030), between `EXPIRED` and `FUTURE`.
pub const NOW: u64 = 1_900_000_000_000;

/// Keys the scenarios use; `get`/`rm` are asked about them.
pub const LIVE: &str = "live-json";
pub const EXPIRED_KEY: &str = "expired-raw";
pub const FOREVER: &str = "forever-bincode";

/// A pid no process has (above the kernel's `pid_max` limit of 2^22).
pub const DEAD_PID: u32 = 4_194_999;

/// Sets the process umask to 022: the snapshots record modes, and the trees (and what the
/// binaries, which inherit it, create) must not depend on the umask a test runner has.
pub fn fixed_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
}

/// The cache root under `base`.
pub fn root(base: &Path) -> PathBuf {
    base.join("cache")
}

/// The sentinel directory under `base`.
pub fn outside(base: &Path) -> PathBuf {
    base.join("outside")
}

/// The entry path of `key` under `root`: `v2/ab/<hex>`.
pub fn entry_path(root: &Path, key: &str) -> PathBuf {
    Layout::new(root).entry_path(&key_hash(key.as_bytes()))
}

/// The fan-out directory `v2/ab` of `key`.
pub fn fan(root: &Path, key: &str) -> PathBuf {
    entry_path(root, key).parent().unwrap().to_owned()
}

/// Where layout 1 kept `key`'s entry: `v1/ab/cd/<hex>`.
pub fn legacy_path(root: &Path, key: &str) -> PathBuf {
    Layout::new(root).legacy_entry_path(&key_hash(key.as_bytes()))
}

/// Layout 1's first-level directory `v1/ab` of `key`.
pub fn legacy_fan1(root: &Path, key: &str) -> PathBuf {
    legacy_fan2(root, key).parent().unwrap().to_owned()
}

/// Layout 1's second-level directory `v1/ab/cd` of `key`.
pub fn legacy_fan2(root: &Path, key: &str) -> PathBuf {
    legacy_path(root, key).parent().unwrap().to_owned()
}

/// The bytes of a valid entry.
pub fn entry_bytes(key: &str, value: &[u8], expires_ms: u64, encoding: Encoding) -> Vec<u8> {
    let meta = EntryMeta {
        created_ms: CREATED,
        expires_ms,
        cost: 7,
        encoding,
    };
    format::encode(key.as_bytes(), value, meta, 6).unwrap()
}

/// Writes `bytes` at `path`, creating its parents, with an mtime of `age` ago.
pub fn write(path: &Path, bytes: &[u8], age: Duration) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

/// Writes a valid entry of `key` at `path`, with an mtime a minute ago.
pub fn put_at(path: &Path, key: &str, value: &[u8], expires_ms: u64, encoding: Encoding) {
    write(
        path,
        &entry_bytes(key, value, expires_ms, encoding),
        Duration::from_secs(60),
    );
}

/// Writes a valid entry of `key` at its path.
pub fn put(root: &Path, key: &str, value: &[u8], expires_ms: u64, encoding: Encoding) -> PathBuf {
    let path = entry_path(root, key);
    put_at(&path, key, value, expires_ms, encoding);
    path
}

/// Writes a valid entry of `key` where layout 1 kept it (`v1/ab/cd/<hex>`).
pub fn put_legacy(
    root: &Path,
    key: &str,
    value: &[u8],
    expires_ms: u64,
    encoding: Encoding,
) -> PathBuf {
    let path = legacy_path(root, key);
    put_at(&path, key, value, expires_ms, encoding);
    path
}

/// The live value of [`LIVE`].
pub const LIVE_VALUE: &[u8] = br#"{"answer":"forty-two","tokens":[1,2,3]}"#;
/// The value of [`EXPIRED_KEY`].
pub const EXPIRED_VALUE: &[u8] = b"an old answer, long expired";
/// The value of [`FOREVER`] (bincode bytes, shapeless: only `get_bytes` reads it).
pub const FOREVER_VALUE: &[u8] = &[3, 0, 0, 0, 1, 2, 3];

/// The three valid entries every scenario starts from: one live JSON value, one expired raw
/// value, one bincode value that never expires.
pub fn valid_entries(root: &Path) {
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("quarantine")).unwrap();
    put(root, LIVE, LIVE_VALUE, FUTURE, Encoding::Json);
    put(root, EXPIRED_KEY, EXPIRED_VALUE, EXPIRED, Encoding::Raw);
    put(root, FOREVER, FOREVER_VALUE, 0, Encoding::Bincode);
}

/// The same three entries, where layout 1 kept them (`v1/ab/cd/<hex>`), and no `v2/`.
pub fn legacy_entries(root: &Path) {
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("quarantine")).unwrap();
    put_legacy(root, LIVE, LIVE_VALUE, FUTURE, Encoding::Json);
    put_legacy(root, EXPIRED_KEY, EXPIRED_VALUE, EXPIRED, Encoding::Raw);
    put_legacy(root, FOREVER, FOREVER_VALUE, 0, Encoding::Bincode);
}

pub fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    try_mkfifo(path).unwrap();
}

/// A FIFO at `path`, whose directory must exist; the error when it cannot be made.
pub fn try_mkfifo(path: &Path) -> std::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(std::io::Error::from)
}

/// A unix socket file (the listener is dropped; the name stays).
pub fn socket(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
}

/// A character device like `/dev/null` (needs root); a FIFO where the test is not root.
pub fn chardev(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 3),
    );
    if made.is_err() {
        mkfifo(path);
    }
}

pub fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    symlink(target, at).unwrap();
}

/// The 64-hex name of `key`.
pub fn hex_name(key: &str) -> String {
    hex(&key_hash(key.as_bytes()))
}

/// `n` distinct two-hex names that none of `keys` uses as its fan-out directory, in order.
pub fn free_fans(keys: &[&str], n: usize) -> Vec<String> {
    let used: Vec<String> = keys.iter().map(|k| hex_name(k)[..2].to_owned()).collect();
    (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .filter(|x| !used.contains(x))
        .take(n)
        .collect()
}

/// Panics unless `keys` have pairwise distinct fan-out directories: a scenario that plants
/// something at one key's fan-out directory must not hit another's by chance.
pub fn assert_distinct_fans(keys: &[&str]) {
    let mut fans: Vec<String> = keys.iter().map(|k| hex_name(k)[..2].to_owned()).collect();
    fans.sort();
    fans.dedup();
    assert_eq!(
        fans.len(),
        keys.len(),
        "fan-out directories shared among {keys:?}"
    );
}

/// One hostile directory.
pub struct Scenario {
    pub name: &'static str,
    pub build: fn(&Path),
    /// Keys `get` and `rm` are asked about (besides the three valid ones).
    pub keys: &'static [&'static str],
    /// Directories (relative to the cache root, or `@fan:KEY`, `@legacy:KEY`, `@entry:KEY`)
    /// made unreadable (mode 000) after the build: only meaningful when the commands run as a
    /// user other than root.
    pub locked: &'static [&'static str],
}

pub const ALL_KEYS: [&str; 3] = [LIVE, EXPIRED_KEY, FOREVER];

fn clean(base: &Path) {
    valid_entries(&root(base));
}

fn foreign_names(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    assert_distinct_fans(&ALL_KEYS);
    let v2 = r.join("v2");
    let free = free_fans(&ALL_KEYS, 1).remove(0);
    let live = hex_name(LIVE);
    write(&v2.join(".DS_Store"), b"x", Duration::ZERO);
    write(&v2.join("zz"), b"not hex", Duration::ZERO);
    std::fs::create_dir_all(v2.join("ZZ/yy")).unwrap();
    // An upper-case fan-out directory holding what would be a valid entry (EXPIRED_KEY's
    // fan-out name has a letter: upper case differs from it).
    let expired = hex_name(EXPIRED_KEY);
    let upper = expired[..2].to_uppercase();
    assert_ne!(upper, expired[..2]);
    write(
        &v2.join(&upper).join(&expired),
        &entry_bytes(EXPIRED_KEY, b"upper", 0, Encoding::Raw),
        Duration::ZERO,
    );
    // A regular file where a fan-out directory belongs.
    write(&v2.join(&free), b"a file at v2/xx", Duration::ZERO);
    // 64 hex directly under v2/: an entry name at the fan-out level.
    write(
        &v2.join(&live),
        b"64 hex at the fan-out level",
        Duration::ZERO,
    );
    // Names inside a real fan-out directory.
    let f = fan(&r, LIVE);
    write(&f.join("foo~"), b"editor backup", Duration::ZERO);
    std::fs::create_dir_all(f.join("0")).unwrap();
    write(&f.join("0g"), b"x", Duration::ZERO);
    write(&f.join(&live[..63]), b"63 hex", Duration::ZERO);
    write(&f.join(format!("{live}0")), b"65 hex", Duration::ZERO);
    write(
        &f.join(live.to_uppercase()),
        b"upper 64 hex",
        Duration::ZERO,
    );
    write(&f.join(format!("{live}.tmp")), b"x", Duration::ZERO);
    std::fs::create_dir_all(f.join("sub/deeper")).unwrap();
    // Layout 1's second level inside a fan-out directory (`v2/ab/cd/<hex>`, a valid entry at
    // the place layout 1 would have read): foreign in layout 2, never descended into.
    write(
        &f.join(&live[2..4]).join(&live),
        &entry_bytes(LIVE, b"layout 1's second level", 0, Encoding::Raw),
        Duration::ZERO,
    );
    // Non-UTF-8 names at both levels.
    write(
        &v2.join(OsStr::from_bytes(b"\xff\xfe")),
        b"x",
        Duration::ZERO,
    );
    write(&f.join(OsStr::from_bytes(b"a\xff")), b"x", Duration::ZERO);
    write(
        &f.join(OsStr::from_bytes(b"\xc3\x28")),
        b"x",
        Duration::ZERO,
    );
    // A valid entry in a fan-out directory that is not its hash's (FOREVER's name in LIVE's
    // directory).
    write(
        &f.join(hex_name(FOREVER)),
        &entry_bytes(FOREVER, b"misplaced", 0, Encoding::Raw),
        Duration::ZERO,
    );
    // Foreign names at the root are not the walk's business, nor is a later layout's
    // directory.
    write(&r.join("README"), b"x", Duration::ZERO);
    std::fs::create_dir_all(r.join("v3/ab")).unwrap();
}

/// Keys of [`symlinks_in_layout`].
pub const SYMLINK_KEYS: &[&str] = &["outside-key", "dangling", "loop"];

fn symlinks_in_layout(base: &Path) {
    let r = root(base);
    let o = outside(base);
    valid_entries(&r);
    let mut keys = ALL_KEYS.to_vec();
    keys.extend_from_slice(SYMLINK_KEYS);
    assert_distinct_fans(&keys);
    // Outside: a whole valid layout and a valid entry file.
    put(&o, "outside-key", b"outside value", EXPIRED, Encoding::Raw);
    let outside_entry = entry_path(&o, "outside-key");
    let v2 = r.join("v2");
    let free = free_fans(&keys, 2);
    // A symlink where a fan-out directory belongs, to a fan-out directory outside.
    link(&fan(&o, "outside-key"), &v2.join(&free[0]));
    // A symlink named like layout 1's second level inside a fan-out directory, to a
    // directory outside (foreign).
    let live = hex_name(LIVE);
    link(&fan(&o, "outside-key"), &fan(&r, LIVE).join(&live[2..4]));
    // A symlink at an entry path, to a valid expired entry outside (named for its key).
    link(&outside_entry, &entry_path(&r, "outside-key"));
    // A dangling symlink at an entry path, and one to a fan-out directory of the cache.
    link(&o.join("nothing"), &entry_path(&r, "dangling"));
    link(&fan(&r, FOREVER), &entry_path(&r, "loop"));
    // A relative symlink to a fan-out directory of the same cache, at a fan-out position.
    link(Path::new(&live[..2]), &v2.join(&free[1]));
}

/// `v2` is a symlink to a directory outside holding a valid layout.
fn v2_symlink(base: &Path) {
    let r = root(base);
    let o = outside(base);
    valid_entries(&o);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    std::fs::create_dir_all(r.join("quarantine")).unwrap();
    link(&o.join("v2"), &r.join("v2"));
}

/// The cache directory given on the command line is a symlink to the real one.
fn root_symlink(base: &Path) {
    let real = base.join("real");
    valid_entries(&real);
    write(
        &entry_path(&real, "garbage"),
        &[0x55u8; 200],
        Duration::ZERO,
    );
    link(&real, &root(base));
}

fn v2_file(base: &Path) {
    let r = root(base);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    write(&r.join("v2"), b"a file named v2", Duration::ZERO);
}

fn v2_fifo(base: &Path) {
    let r = root(base);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    mkfifo(&r.join("v2"));
}

/// Keys of [`specials_at_entry_paths`] that `get` and `rm` are asked about. Not the socket's:
/// reading a socket at an entry path is F4 (FINDINGS.md; `findings::socket_at_an_entry_path`
/// asserts what it should do), and a transcript must not pin it.
pub const SPECIAL_KEYS: &[&str] = &["fifo", "device", "dir"];

fn specials_at_entry_paths(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    let mut keys = ALL_KEYS.to_vec();
    keys.extend_from_slice(SPECIAL_KEYS);
    keys.push("socket");
    assert_distinct_fans(&keys);
    mkfifo(&entry_path(&r, "fifo"));
    socket(&entry_path(&r, "socket"));
    chardev(&entry_path(&r, "device"));
    // A directory at an entry path, holding what looks like entries of both layouts.
    let d = entry_path(&r, "dir");
    std::fs::create_dir_all(&d).unwrap();
    write(
        &d.join(hex_name("dir")),
        &entry_bytes("dir", b"nested", 0, Encoding::Raw),
        Duration::ZERO,
    );
    std::fs::create_dir_all(d.join("v1/ab/cd")).unwrap();
    std::fs::create_dir_all(d.join("v2/ab")).unwrap();
    // Specials where fan-out directories belong, and one named like a fan-out directory
    // inside one (foreign).
    let free = free_fans(&keys, 3);
    mkfifo(&r.join("v2").join(&free[0]));
    socket(&fan(&r, LIVE).join(&free[1]));
    chardev(&r.join("v2").join(&free[2]));
}

fn corrupt_entries(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    let good = entry_bytes("truncated", &[b'a'; 3000], 0, Encoding::Raw);
    write(
        &entry_path(&r, "truncated"),
        &good[..good.len() - 9],
        Duration::ZERO,
    );
    let mut flipped = entry_bytes("checksum", b"a value with a flipped bit", 0, Encoding::Json);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    write(&entry_path(&r, "checksum"), &flipped, Duration::ZERO);
    // A valid entry of another key at this key's path.
    write(
        &entry_path(&r, "mismatch"),
        &entry_bytes("someone-else", b"v", 0, Encoding::Raw),
        Duration::ZERO,
    );
    write(&entry_path(&r, "empty"), b"", Duration::ZERO);
    write(&entry_path(&r, "garbage"), &[0x55u8; 200], Duration::ZERO);
    write(&entry_path(&r, "short"), b"TIERCACH", Duration::ZERO);
    // A newer format version (left alone), and a version-1 file (still read).
    let payload = format::deflate(b"from the future", 6).unwrap();
    let meta = EntryMeta {
        created_ms: CREATED,
        expires_ms: EXPIRED,
        cost: 0,
        encoding: Encoding::Raw,
    };
    let newer = format::assemble(b"newer", 15, &payload, meta, format::VERSION + 1, 1);
    write(&entry_path(&r, "newer"), &newer, Duration::ZERO);
    let payload = format::deflate(b"from the past", 6).unwrap();
    let meta = EntryMeta {
        created_ms: CREATED + 5,
        expires_ms: 0,
        cost: 0,
        encoding: Encoding::Raw,
    };
    let old = format::assemble(b"version-one", 13, &payload, meta, 1, format::FLAG_GZIP);
    write(&entry_path(&r, "version-one"), &old, Duration::ZERO);
    // The reserved encoding code in a version-2 header (re-sealed, so only the flags are bad).
    let payload = format::deflate(b"reserved", 6).unwrap();
    let mut reserved = format::assemble(
        b"reserved",
        8,
        &payload,
        meta,
        format::VERSION,
        format::FLAG_GZIP | format::FLAG_ENCODING_MASK,
    );
    format::reseal(&mut reserved);
    write(&entry_path(&r, "reserved"), &reserved, Duration::ZERO);
    // A huge declared length (the header says 1 TiB of payload: `payload_len`, bytes 32..40;
    // layout 1's version of this tree wrote it at 24..32, the expiry).
    let mut huge = entry_bytes("huge", b"tiny", 0, Encoding::Raw);
    huge[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
    write(&entry_path(&r, "huge"), &huge, Duration::ZERO);
}

/// Keys the corrupt scenario planted.
pub const CORRUPT_KEYS: &[&str] = &[
    "truncated",
    "checksum",
    "mismatch",
    "empty",
    "garbage",
    "short",
    "newer",
    "version-one",
    "reserved",
    "huge",
];

fn tmp_and_quarantine(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    let tmp = r.join("tmp");
    let h = hex_name(LIVE);
    // Temp files: a dead writer's, a live-looking one of pid 1, an hour-old one, foreign names,
    // a directory, a FIFO and a symlink.
    write(
        &tmp.join(format!("{h}.{DEAD_PID}.1.0.tmp")),
        b"dead writer",
        Duration::from_secs(5),
    );
    write(
        &tmp.join(format!("{h}.1.1.0.tmp")),
        b"pid 1 writer",
        Duration::from_secs(5),
    );
    write(
        &tmp.join(format!("{h}.1.1.1.tmp")),
        b"old pid 1 writer",
        Duration::from_secs(2 * 3600),
    );
    write(&tmp.join("notes.txt"), b"foreign", Duration::from_secs(5));
    write(
        &tmp.join(format!("purge.{DEAD_PID}.0.3.tmp")),
        b"purge leftover",
        Duration::from_secs(5),
    );
    std::fs::create_dir_all(tmp.join("a-directory")).unwrap();
    mkfifo(&tmp.join(format!("fifo.{DEAD_PID}.1.0.tmp")));
    link(
        &outside(base),
        &tmp.join(format!("link.{DEAD_PID}.1.0.tmp")),
    );
    std::fs::create_dir_all(outside(base)).unwrap();
    // The quarantine: a file with its sidecar, a file without, a sidecar without a file,
    // names that do not parse, a directory, a FIFO, a symlink.
    let q = r.join("quarantine");
    let name = format!("{CREATED}-checksum-{h}");
    write(
        &q.join(&name),
        &entry_bytes(LIVE, b"quarantined", 0, Encoding::Raw),
        Duration::ZERO,
    );
    write(
        &q.join(format!("{name}.why")),
        b"reason: checksum\ndetail: planted\n",
        Duration::ZERO,
    );
    write(
        &q.join(format!("{}-magic-{h}", CREATED + 1)),
        &[0u8; 100],
        Duration::ZERO,
    );
    write(
        &q.join(format!("{}-truncated-gone.why", CREATED + 2)),
        b"reason: truncated\n",
        Duration::ZERO,
    );
    write(&q.join("not-a-quarantine-name"), b"x", Duration::ZERO);
    write(
        &q.join(format!("{}-no-such-reason-x", CREATED + 3)),
        b"x",
        Duration::ZERO,
    );
    std::fs::create_dir_all(q.join(format!("{}-checksum-dir", CREATED + 4))).unwrap();
    mkfifo(&q.join(format!("{}-checksum-fifo", CREATED + 5)));
    link(
        &outside(base),
        &q.join(format!("{}-not-a-regular-file-link", CREATED + 6)),
    );
    // Root-level leftovers of a cache: lock and fence files.
    write(&r.join("lock"), b"", Duration::ZERO);
    write(&r.join("fence"), b"not a valid fence", Duration::ZERO);
}

fn quarantine_symlink(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    std::fs::remove_dir(r.join("quarantine")).unwrap();
    std::fs::create_dir_all(outside(base)).unwrap();
    link(&outside(base), &r.join("quarantine"));
    write(&entry_path(&r, "garbage"), &[0x55u8; 200], Duration::ZERO);
    mkfifo(&entry_path(&r, "fifo"));
}

fn tmp_and_quarantine_files(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    std::fs::remove_dir(r.join("quarantine")).unwrap();
    std::fs::remove_dir(r.join("tmp")).unwrap();
    write(&r.join("quarantine"), b"a file", Duration::ZERO);
    write(&r.join("tmp"), b"a file", Duration::ZERO);
    write(&entry_path(&r, "garbage"), &[0x55u8; 200], Duration::ZERO);
}

fn tmp_symlink(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    std::fs::remove_dir(r.join("tmp")).unwrap();
    std::fs::create_dir_all(outside(base)).unwrap();
    link(&outside(base), &r.join("tmp"));
    put(&r, "expired-2", b"another", EXPIRED, Encoding::Raw);
}

fn no_tmp_no_quarantine(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    std::fs::remove_dir(r.join("tmp")).unwrap();
    std::fs::remove_dir(r.join("quarantine")).unwrap();
    put(&r, "expired-2", b"another", EXPIRED, Encoding::Raw);
    write(&entry_path(&r, "garbage"), &[0x55u8; 200], Duration::ZERO);
}

fn empty_root(base: &Path) {
    std::fs::create_dir_all(root(base)).unwrap();
}

fn empty_layout(base: &Path) {
    let r = root(base);
    std::fs::create_dir_all(r.join("v2")).unwrap();
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    std::fs::create_dir_all(r.join("quarantine")).unwrap();
    // Empty fan-out directories, and an empty layout-1 second level inside one (foreign).
    std::fs::create_dir_all(r.join("v2/00")).unwrap();
    std::fs::create_dir_all(r.join("v2/01/02")).unwrap();
}

fn unreadable_fan_out(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    put(&r, "expired-2", b"another", EXPIRED, Encoding::Raw);
    write(&entry_path(&r, "garbage"), &[0x55u8; 200], Duration::ZERO);
    assert_distinct_fans(&[LIVE, EXPIRED_KEY, FOREVER, "expired-2", "garbage"]);
}

/// [`unreadable_fan_out`], plus a directory named like layout 1's second level inside
/// EXPIRED_KEY's fan-out directory, holding a valid entry: foreign, so never listed (locking
/// it changes nothing).
fn unreadable_foreign_dir(base: &Path) {
    unreadable_fan_out(base);
    let r = root(base);
    let hex = hex_name(EXPIRED_KEY);
    write(
        &fan(&r, EXPIRED_KEY).join(&hex[2..4]).join(&hex),
        &entry_bytes(EXPIRED_KEY, b"layout 1's place", 0, Encoding::Raw),
        Duration::ZERO,
    );
}

/// Keys the hostile layout-1 tree plants, besides the three valid ones (see [`legacy_layout`]).
pub const LEGACY_KEYS: &[&str] = &[
    "twin",
    "linked",
    "piped",
    "misplaced",
    "wrong-ab",
    "dir-entry",
    "corrupt",
    "via-ab-link",
    "via-cd-link",
];

/// A directory of layout 1 (`v1/ab/cd/<hex>`, no `v2/`) with hostile content. What layout 1
/// would have read (a regular file, its name 64 hex, under the directories its hash names)
/// moves to `v2/ab/<hex>` when a cache opens; everything else stays where it is:
///
/// - the three valid entries, at their layout-1 paths (they move);
/// - `twin`: an old value in `v1/` and a newer one in `v2/` (v2 wins, the v1 file is deleted);
/// - `linked`: a symlink at its v1 entry path to a valid entry of it outside;
/// - `piped`: a FIFO at its v1 entry path;
/// - `misplaced`: a valid entry under its `v1/ab` but the wrong `cd`; `wrong-ab`: under the
///   right `cd` of a wrong `ab`;
/// - `dir-entry`: a directory at its v1 entry path, holding a valid entry of it;
/// - `corrupt`: garbage at its v1 entry path (a regular file: it moves, unread);
/// - `via-ab-link`: `v1/ab` is a symlink to a directory outside holding the key's valid
///   entry at `cd/<hex>`; `via-cd-link`: `v1/ab/cd` is such a symlink;
/// - `v1/.DS_Store`, an upper-case `v1/AB/cd/<hex>` of a valid entry, a file where `v1/ab/cd`
///   belongs, and `<hex>.tmp` next to an entry.
fn legacy_layout(base: &Path) {
    let r = root(base);
    let o = outside(base);
    legacy_entries(&r);
    std::fs::create_dir_all(&o).unwrap();
    std::fs::write(o.join("sentinel"), b"never touched").unwrap();
    let mut all: Vec<&str> = ALL_KEYS.to_vec();
    all.extend_from_slice(LEGACY_KEYS);
    assert_distinct_fans(&all);
    let v1 = r.join("v1");
    // v2 already holds a newer entry of `twin`.
    put_legacy(&r, "twin", b"the old twin, in v1", 0, Encoding::Raw);
    put(&r, "twin", b"the new twin, in v2", 0, Encoding::Raw);
    // A symlink at a v1 entry path, to a valid entry of the key outside.
    let target = o.join("linked-entry");
    put_at(
        &target,
        "linked",
        b"read through a symlink",
        0,
        Encoding::Raw,
    );
    link(&target, &legacy_path(&r, "linked"));
    mkfifo(&legacy_path(&r, "piped"));
    // Misplaced valid entries.
    let m = hex_name("misplaced");
    let wrong_cd = if &m[2..4] == "00" { "01" } else { "00" };
    put_at(
        &legacy_fan1(&r, "misplaced").join(wrong_cd).join(&m),
        "misplaced",
        b"under the wrong cd",
        0,
        Encoding::Raw,
    );
    let w = hex_name("wrong-ab");
    let wrong_ab = free_fans(&all, 1).remove(0);
    put_at(
        &v1.join(&wrong_ab).join(&w[2..4]).join(&w),
        "wrong-ab",
        b"under the wrong ab",
        0,
        Encoding::Raw,
    );
    // A directory at a v1 entry path, holding a valid entry of the key.
    let d = legacy_path(&r, "dir-entry");
    put_at(
        &d.join(hex_name("dir-entry")),
        "dir-entry",
        b"nested",
        0,
        Encoding::Raw,
    );
    write(&legacy_path(&r, "corrupt"), &[0x55u8; 200], Duration::ZERO);
    // `v1/ab` and `v1/ab/cd` as symlinks to directories outside holding valid entries where
    // layout 1 would have read them.
    let a = hex_name("via-ab-link");
    put_at(
        &o.join("ab-dir").join(&a[2..4]).join(&a),
        "via-ab-link",
        b"through v1/ab",
        0,
        Encoding::Raw,
    );
    link(&o.join("ab-dir"), &v1.join(&a[..2]));
    let c = hex_name("via-cd-link");
    put_at(
        &o.join("cd-dir").join(&c),
        "via-cd-link",
        b"through v1/ab/cd",
        0,
        Encoding::Raw,
    );
    link(&o.join("cd-dir"), &legacy_fan2(&r, "via-cd-link"));
    // Foreign names.
    write(&v1.join(".DS_Store"), b"x", Duration::ZERO);
    let e = hex_name(EXPIRED_KEY);
    put_at(
        &v1.join(e[..2].to_uppercase()).join(&e[2..4]).join(&e),
        EXPIRED_KEY,
        b"in an upper-case directory",
        0,
        Encoding::Raw,
    );
    let f = hex_name(FOREVER);
    let not_cd = if &f[2..4] == "ff" { "fe" } else { "ff" };
    write(
        &legacy_fan1(&r, FOREVER).join(not_cd),
        b"a file where v1/ab/cd belongs",
        Duration::ZERO,
    );
    write(
        &legacy_fan2(&r, LIVE).join(format!("{}.tmp", hex_name(LIVE))),
        b"a temp name",
        Duration::ZERO,
    );
}

/// `v1` is a symlink to a directory outside holding a valid layout-1 tree.
fn legacy_v1_symlink(base: &Path) {
    let r = root(base);
    let o = outside(base);
    legacy_entries(&o);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    std::fs::create_dir_all(r.join("quarantine")).unwrap();
    link(&o.join("v1"), &r.join("v1"));
}

/// A directory of layout 1 holding only the three valid entries.
fn legacy_clean(base: &Path) {
    legacy_entries(&root(base));
}

/// The first key `prefix-<i>` whose fan-out directory is `fan` (two hex characters).
pub fn key_in_fan(prefix: &str, fan: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|k| hex_name(k)[..2] == *fan)
        .unwrap()
}

/// The key of [`legacy_unreadable`] that shares LIVE's `v1/ab` and is expired (the first
/// `expired-in-v1-<i>` in LIVE's fan-out directory, `key_in_fan("expired-in-v1", "79")`).
pub const LEGACY_EXPIRED_KEY: &str = "expired-in-v1-346";

/// The locked scenario of the migration: a directory half moved to layout 2. `v2/` holds
/// EXPIRED_KEY, FOREVER and garbage; `v1/` holds one directory `v1/ab` (LIVE's), with LIVE
/// and an expired entry of another key sharing it, which is made unreadable. One `v1/ab` only,
/// so what the move does before it stops does not depend on the order of a listing.
fn legacy_unreadable(base: &Path) {
    let r = root(base);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    std::fs::create_dir_all(r.join("quarantine")).unwrap();
    put(&r, EXPIRED_KEY, EXPIRED_VALUE, EXPIRED, Encoding::Raw);
    put(&r, FOREVER, FOREVER_VALUE, 0, Encoding::Bincode);
    write(&entry_path(&r, "garbage"), &[0x55u8; 200], Duration::ZERO);
    put_legacy(&r, LIVE, LIVE_VALUE, FUTURE, Encoding::Json);
    let k = LEGACY_EXPIRED_KEY;
    assert_eq!(k, key_in_fan("expired-in-v1", &hex_name(LIVE)[..2]));
    put_legacy(&r, k, b"expired, in v1", EXPIRED, Encoding::Raw);
}

/// Every scenario.
pub fn scenarios() -> Vec<Scenario> {
    let s = |name, build, keys| Scenario {
        name,
        build,
        keys,
        locked: &[],
    };
    vec![
        s("clean", clean as fn(&Path), &[] as &'static [&'static str]),
        s("empty_root", empty_root, &[]),
        s("empty_layout", empty_layout, &[]),
        s("foreign_names", foreign_names, &[]),
        s("symlinks_in_layout", symlinks_in_layout, SYMLINK_KEYS),
        s("v2_symlink", v2_symlink, &[]),
        s("root_symlink", root_symlink, &["garbage"]),
        s("v2_file", v2_file, &[]),
        s("v2_fifo", v2_fifo, &[]),
        s(
            "specials_at_entry_paths",
            specials_at_entry_paths,
            SPECIAL_KEYS,
        ),
        s("corrupt_entries", corrupt_entries, CORRUPT_KEYS),
        s("tmp_and_quarantine", tmp_and_quarantine, &[]),
        s(
            "quarantine_symlink",
            quarantine_symlink,
            &["garbage", "fifo"],
        ),
        s(
            "tmp_and_quarantine_files",
            tmp_and_quarantine_files,
            &["garbage"],
        ),
        s("tmp_symlink", tmp_symlink, &["expired-2"]),
        s(
            "no_tmp_no_quarantine",
            no_tmp_no_quarantine,
            &["expired-2", "garbage"],
        ),
        s("legacy_clean", legacy_clean, &[]),
        s("legacy_layout", legacy_layout, LEGACY_KEYS),
        s("legacy_v1_symlink", legacy_v1_symlink, &[]),
    ]
}

/// The scenario `name`.
pub fn scenario(name: &str) -> Scenario {
    scenarios().into_iter().find(|s| s.name == name).unwrap()
}

/// The locked scenario `name`.
pub fn locked_scenario(name: &str) -> Scenario {
    locked_scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

/// Scenarios with unreadable directories: run as a user other than root.
pub fn locked_scenarios() -> Vec<Scenario> {
    let s = |name, build, locked| Scenario {
        name,
        build,
        keys: &["expired-2", "garbage"],
        locked,
    };
    let u = unreadable_fan_out as fn(&Path);
    vec![
        s(
            "locked_fan",
            u,
            &["@fan:live-json"] as &'static [&'static str],
        ),
        s(
            "locked_foreign_dir",
            unreadable_foreign_dir,
            &["@foreign:expired-raw"],
        ),
        s(
            "locked_two_fan_outs",
            u,
            &["@fan:live-json", "@fan:expired-2"],
        ),
        s("locked_v2", u, &["v2"]),
        s("locked_tmp", u, &["tmp"]),
        s("locked_quarantine", u, &["quarantine"]),
        s(
            "locked_entry_file",
            u,
            &["@entry:live-json", "@entry:garbage"],
        ),
        s("locked_root", u, &["."]),
        Scenario {
            name: "locked_legacy_fan",
            build: legacy_unreadable,
            keys: &[LEGACY_EXPIRED_KEY, "garbage"],
            locked: &["@legacy:live-json"],
        },
    ]
}

/// Resolves a `locked` name under `root`: `@fan:KEY` (`v2/ab`), `@foreign:KEY` (the layout-1
/// second level planted inside `v2/ab`), `@legacy:KEY` (`v1/ab`), `@entry:KEY` or a path.
pub fn locked_path(root: &Path, spec: &str) -> PathBuf {
    if let Some(k) = spec.strip_prefix("@fan:") {
        fan(root, k)
    } else if let Some(k) = spec.strip_prefix("@foreign:") {
        fan(root, k).join(&hex_name(k)[2..4])
    } else if let Some(k) = spec.strip_prefix("@legacy:") {
        legacy_fan1(root, k)
    } else if let Some(k) = spec.strip_prefix("@entry:") {
        entry_path(root, k)
    } else {
        root.join(spec)
    }
}

/// Gives everything under `base` to `uid`/`gid` (not following symlinks).
pub fn chown_all(base: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(base, Some(uid), Some(gid)).unwrap();
    let meta = std::fs::symlink_metadata(base).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(base).unwrap() {
            chown_all(&e.unwrap().path(), uid, gid);
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// What sits at one path of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { len: u64, hash: String, mode: u32 },
    Dir { mode: u32 },
    Symlink(String),
    Special(&'static str),
}

/// Every name under `base`, relative, with what sits there. Unreadable directories are listed
/// as such (the snapshot runs as root, so they are read anyway).
pub fn snapshot(base: &Path, normalise: &dyn Fn(&str) -> String) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(base, base, normalise, &mut out);
    out
}

fn walk(
    base: &Path,
    dir: &Path,
    normalise: &dyn Fn(&str) -> String,
    out: &mut BTreeMap<String, Node>,
) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.unwrap();
        let path = e.path();
        let rel = normalise(&path.strip_prefix(base).unwrap().to_string_lossy());
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let mode = meta.mode() & 0o7777;
        let node = if ft.is_symlink() {
            let t = std::fs::read_link(&path).unwrap();
            Node::Symlink(normalise(&t.to_string_lossy()))
        } else if ft.is_dir() {
            walk(base, &path, normalise, out);
            Node::Dir { mode }
        } else if ft.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            // Sidecars and other text carry times: normalised like the outputs.
            let limits = format::Limits::default();
            let hash = if rel.ends_with(".why") {
                normalise(&text)
            } else if let Some(ms) = format::decode_fence(&bytes) {
                normalise(&format!("fence {ms}"))
            } else if let Ok(h) = format::parse_header(&bytes, &limits) {
                // An entry written now carries now's times (and a checksum over them).
                let body = &bytes[format::HEADER_LEN.min(bytes.len())..];
                normalise(&format!(
                    "entry v{} flags {} created {} expires {} cost {} body {}",
                    h.version,
                    h.flags,
                    h.meta.created_ms,
                    h.meta.expires_ms,
                    h.meta.cost,
                    &blake3::hash(body).to_hex()[..16]
                ))
            } else {
                blake3::hash(&bytes).to_hex()[..16].to_owned()
            };
            Node::File {
                len: meta.len(),
                hash,
                mode,
            }
        } else {
            use std::os::unix::fs::FileTypeExt;
            Node::Special(if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            })
        };
        out.insert(rel, node);
    }
}

/// What sits at one path, byte for byte: a file by its mode and the blake3 of all its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exact {
    File { mode: u32, blake3: String },
    Dir { mode: u32 },
    Symlink(PathBuf),
    Special(&'static str),
}

/// Every name under `base` (relative, `lstat`-ed, never followed), byte for byte.
pub fn exact_snapshot(base: &Path) -> BTreeMap<PathBuf, Exact> {
    fn go(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Exact>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let mode = meta.mode() & 0o7777;
            let node = if ft.is_symlink() {
                Exact::Symlink(std::fs::read_link(&path).unwrap())
            } else if ft.is_dir() {
                go(base, &path, out);
                Exact::Dir { mode }
            } else if ft.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                Exact::File {
                    mode,
                    blake3: blake3::hash(&bytes).to_hex().to_string(),
                }
            } else {
                use std::os::unix::fs::FileTypeExt;
                Exact::Special(if ft.is_fifo() { "fifo" } else { "other" })
            };
            out.insert(path.strip_prefix(base).unwrap().to_owned(), node);
        }
    }
    let mut out = BTreeMap::new();
    go(base, base, &mut out);
    out
}
