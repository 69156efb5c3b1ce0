//! Hostile cache directories, built the same way every time, and a snapshot of what a tree
//! holds (every name under a directory, `lstat`-ed, never followed) to compare trees left by
//! two runs.
//!
//! Each scenario builds, under an empty `base` directory, the cache root `base/cache` and, where
//! it needs one, a directory `base/outside` that symlinks lead to (a sentinel: nothing may be
//! read through, written into or deleted from it). The trees use only APIs that 2694034 and the
//! new code both have (`warm::format`, `warm::layout`), so the same file runs on both.

// Running the binaries as another user (`locked`, `chown_all`) is the differential tests'.
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

/// The entry path of `key` under `root`.
pub fn entry_path(root: &Path, key: &str) -> PathBuf {
    Layout::new(root).entry_path(&key_hash(key.as_bytes()))
}

/// `v1/ab` of `key`.
pub fn fan1(root: &Path, key: &str) -> PathBuf {
    entry_path(root, key)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned()
}

/// `v1/ab/cd` of `key`.
pub fn fan2(root: &Path, key: &str) -> PathBuf {
    entry_path(root, key).parent().unwrap().to_owned()
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

/// Writes a valid entry of `key` at its path.
pub fn put(root: &Path, key: &str, value: &[u8], expires_ms: u64, encoding: Encoding) -> PathBuf {
    let path = entry_path(root, key);
    write(
        &path,
        &entry_bytes(key, value, expires_ms, encoding),
        Duration::from_secs(60),
    );
    path
}

/// The three valid entries every scenario starts from: one live JSON value, one expired raw
/// value, one bincode value that never expires.
pub fn valid_entries(root: &Path) {
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("quarantine")).unwrap();
    put(
        root,
        LIVE,
        br#"{"answer":"forty-two","tokens":[1,2,3]}"#,
        FUTURE,
        Encoding::Json,
    );
    put(
        root,
        EXPIRED_KEY,
        b"an old answer, long expired",
        EXPIRED,
        Encoding::Raw,
    );
    put(root, FOREVER, &[3, 0, 0, 0, 1, 2, 3], 0, Encoding::Bincode);
}

pub fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
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

/// A two-hex-character fan-out name that none of `keys` uses at the first level.
pub fn free_fan1(keys: &[&str]) -> String {
    let used: Vec<String> = keys
        .iter()
        .map(|k| hex(&key_hash(k.as_bytes()))[..2].to_owned())
        .collect();
    (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .find(|n| !used.contains(n))
        .unwrap()
}

/// The 64-hex name of `key`.
pub fn hex_name(key: &str) -> String {
    hex(&key_hash(key.as_bytes()))
}

/// One hostile directory.
pub struct Scenario {
    pub name: &'static str,
    pub build: fn(&Path),
    /// Keys `get` and `rm` are asked about (besides the three valid ones).
    pub keys: &'static [&'static str],
    /// Directories (relative to the cache root) made unreadable (mode 000) after the build:
    /// only meaningful when the commands run as a user other than root.
    pub locked: &'static [&'static str],
}

pub const ALL_KEYS: [&str; 3] = [LIVE, EXPIRED_KEY, FOREVER];

fn clean(base: &Path) {
    valid_entries(&root(base));
}

fn foreign_names(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    let v1 = r.join("v1");
    let free = free_fan1(&ALL_KEYS);
    write(&v1.join(".DS_Store"), b"x", Duration::ZERO);
    write(&v1.join("zz"), b"not hex", Duration::ZERO);
    std::fs::create_dir_all(v1.join("ZZ/yy")).unwrap();
    // Upper-case fan-out directories holding what would be a valid entry.
    let live = hex_name(LIVE);
    let upper = v1.join(live[..2].to_uppercase()).join(&live[2..4]);
    write(
        &upper.join(&live),
        &entry_bytes(LIVE, b"upper", 0, Encoding::Raw),
        Duration::ZERO,
    );
    // A regular file where a first-level fan-out directory belongs.
    write(&v1.join(&free), b"a file at v1/xx", Duration::ZERO);
    // Names inside a real fan-out directory.
    let f1 = fan1(&r, LIVE);
    let f2 = fan2(&r, LIVE);
    write(&f1.join("foo~"), b"x", Duration::ZERO);
    write(
        &f1.join(&live),
        b"64 hex at the first level",
        Duration::ZERO,
    );
    std::fs::create_dir_all(f1.join("0")).unwrap();
    write(&f1.join("0g"), b"x", Duration::ZERO);
    write(&f2.join("foo~"), b"editor backup", Duration::ZERO);
    write(&f2.join(&live[..63]), b"63 hex", Duration::ZERO);
    write(&f2.join(format!("{live}0")), b"65 hex", Duration::ZERO);
    write(
        &f2.join(live.to_uppercase()),
        b"upper 64 hex",
        Duration::ZERO,
    );
    write(&f2.join(format!("{live}.tmp")), b"x", Duration::ZERO);
    std::fs::create_dir_all(f2.join("sub/deeper")).unwrap();
    // Non-UTF-8 names at every level.
    write(
        &v1.join(OsStr::from_bytes(b"\xff\xfe")),
        b"x",
        Duration::ZERO,
    );
    write(&f1.join(OsStr::from_bytes(b"a\xff")), b"x", Duration::ZERO);
    write(
        &f2.join(OsStr::from_bytes(b"\xc3\x28")),
        b"x",
        Duration::ZERO,
    );
    // A valid entry in fan-out directories that are not its hash's (under the live entry's
    // first-level directory).
    let forever = hex_name(FOREVER);
    let wrong = if &live[2..4] == "ee" { "ef" } else { "ee" };
    write(
        &f1.join(wrong).join(&forever),
        &entry_bytes(FOREVER, b"misplaced", 0, Encoding::Raw),
        Duration::ZERO,
    );
    // Foreign names at the root are not the walk's business.
    write(&r.join("README"), b"x", Duration::ZERO);
    std::fs::create_dir_all(r.join("v2/ab/cd")).unwrap();
}

fn symlinks_in_layout(base: &Path) {
    let r = root(base);
    let o = outside(base);
    valid_entries(&r);
    // Outside: a whole valid layout and a valid entry file.
    put(&o, "outside-key", b"outside value", EXPIRED, Encoding::Raw);
    let outside_entry = entry_path(&o, "outside-key");
    let v1 = r.join("v1");
    let free = free_fan1(&ALL_KEYS);
    // A symlink where a first-level fan-out directory belongs, to a directory outside.
    link(&fan1(&o, "outside-key"), &v1.join(&free));
    // A symlink where a second-level one belongs, to a directory outside.
    let live = hex_name(LIVE);
    let second = if &live[2..4] == "00" { "01" } else { "00" };
    link(&fan2(&o, "outside-key"), &fan1(&r, LIVE).join(second));
    // A symlink at an entry path, to a valid expired entry outside (named for its key).
    link(&outside_entry, &entry_path(&r, "outside-key"));
    // A dangling symlink at an entry path, and one to the entry's own directory.
    link(&o.join("nothing"), &entry_path(&r, "dangling"));
    link(&fan2(&r, FOREVER), &entry_path(&r, "loop"));
    // A relative symlink to a fan-out directory of the same cache, at a fan-out position.
    link(Path::new(&live[..2]), &v1.join(free_other(&free)));
}

/// Another free fan-out name, not `taken` (the first free one) nor the one after it.
fn free_other(taken: &str) -> String {
    free_fan1s(3).into_iter().find(|n| n != taken).unwrap()
}

/// `n` distinct two-hex names that none of the valid entries uses at the first level.
pub fn free_fan1s(n: usize) -> Vec<String> {
    let used: Vec<String> = ALL_KEYS
        .iter()
        .map(|k| hex_name(k)[..2].to_owned())
        .collect();
    (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .filter(|x| !used.contains(x))
        .take(n)
        .collect()
}

fn v1_symlink(base: &Path) {
    let r = root(base);
    let o = outside(base);
    valid_entries(&o);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    std::fs::create_dir_all(r.join("quarantine")).unwrap();
    link(&o.join("v1"), &r.join("v1"));
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

fn v1_file(base: &Path) {
    let r = root(base);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    write(&r.join("v1"), b"a file named v1", Duration::ZERO);
}

fn v1_fifo(base: &Path) {
    let r = root(base);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    mkfifo(&r.join("v1"));
}

fn specials_at_entry_paths(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    mkfifo(&entry_path(&r, "fifo"));
    socket(&entry_path(&r, "socket"));
    chardev(&entry_path(&r, "device"));
    // A directory at an entry path, holding what looks like entries.
    let d = entry_path(&r, "dir");
    std::fs::create_dir_all(&d).unwrap();
    write(
        &d.join(hex_name("dir")),
        &entry_bytes("dir", b"nested", 0, Encoding::Raw),
        Duration::ZERO,
    );
    std::fs::create_dir_all(d.join("v1/ab/cd")).unwrap();
    // Specials where fan-out directories belong.
    let free = free_fan1s(3);
    mkfifo(&r.join("v1").join(&free[0]));
    socket(&fan1(&r, LIVE).join(&free[1]));
    chardev(&r.join("v1").join(&free[2]));
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
    // A huge declared length (the header says 1 TiB of payload).
    let mut huge = entry_bytes("huge", b"tiny", 0, Encoding::Raw);
    huge[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
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
    std::fs::create_dir_all(r.join("v1")).unwrap();
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    std::fs::create_dir_all(r.join("quarantine")).unwrap();
    // Empty fan-out directories, at both levels.
    std::fs::create_dir_all(r.join("v1/00")).unwrap();
    std::fs::create_dir_all(r.join("v1/01/02")).unwrap();
}

fn unreadable_fan_out(base: &Path) {
    let r = root(base);
    valid_entries(&r);
    put(&r, "expired-2", b"another", EXPIRED, Encoding::Raw);
    write(&entry_path(&r, "garbage"), &[0x55u8; 200], Duration::ZERO);
}

/// Every scenario.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "clean",
            build: clean,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "empty_root",
            build: empty_root,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "empty_layout",
            build: empty_layout,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "foreign_names",
            build: foreign_names,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "symlinks_in_layout",
            build: symlinks_in_layout,
            keys: &["outside-key", "dangling", "loop"],
            locked: &[],
        },
        Scenario {
            name: "v1_symlink",
            build: v1_symlink,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "root_symlink",
            build: root_symlink,
            keys: &["garbage"],
            locked: &[],
        },
        Scenario {
            name: "v1_file",
            build: v1_file,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "v1_fifo",
            build: v1_fifo,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "specials_at_entry_paths",
            build: specials_at_entry_paths,
            keys: &["fifo", "socket", "device", "dir"],
            locked: &[],
        },
        Scenario {
            name: "corrupt_entries",
            build: corrupt_entries,
            keys: CORRUPT_KEYS,
            locked: &[],
        },
        Scenario {
            name: "tmp_and_quarantine",
            build: tmp_and_quarantine,
            keys: &[],
            locked: &[],
        },
        Scenario {
            name: "quarantine_symlink",
            build: quarantine_symlink,
            keys: &["garbage", "fifo"],
            locked: &[],
        },
        Scenario {
            name: "tmp_and_quarantine_files",
            build: tmp_and_quarantine_files,
            keys: &["garbage"],
            locked: &[],
        },
        Scenario {
            name: "tmp_symlink",
            build: tmp_symlink,
            keys: &["expired-2"],
            locked: &[],
        },
        Scenario {
            name: "no_tmp_no_quarantine",
            build: no_tmp_no_quarantine,
            keys: &["expired-2", "garbage"],
            locked: &[],
        },
    ]
}

/// Scenarios with unreadable directories: run as a user other than root.
pub fn locked_scenarios() -> Vec<Scenario> {
    let s = |name, locked| Scenario {
        name,
        build: unreadable_fan_out,
        keys: &["expired-2", "garbage"],
        locked,
    };
    vec![
        s("locked_fan1", &["@fan1:live-json"]),
        s("locked_fan2", &["@fan2:expired-raw"]),
        s(
            "locked_two_fan_outs",
            &["@fan1:live-json", "@fan2:expired-2"],
        ),
        s("locked_v1", &["v1"]),
        s("locked_tmp", &["tmp"]),
        s("locked_quarantine", &["quarantine"]),
        s("locked_entry_file", &["@entry:live-json", "@entry:garbage"]),
        s("locked_root", &["."]),
    ]
}

/// Resolves a `locked` name (`@fan1:KEY`, `@fan2:KEY`, `@entry:KEY` or a path) under `root`.
pub fn locked_path(root: &Path, spec: &str) -> PathBuf {
    if let Some(k) = spec.strip_prefix("@fan1:") {
        fan1(root, k)
    } else if let Some(k) = spec.strip_prefix("@fan2:") {
        fan2(root, k)
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
