//! Hostile and mistaken input. No key, however crafted (`../`, absolute paths, NUL bytes,
//! non-UTF-8, empty, 1 MiB), puts a file outside the root or a file name other than the hex
//! of its blake3 under `v1/xx/yy/`. A key or value over its limit is rejected with the exact
//! error and changes nothing at all: memory, counters and directory stay as they were. A value
//! read as the wrong type is a `Decode` error that leaves the entry in place. Temp files left
//! by writers that died are swept at open, while those of live writers (another process, or
//! another cache instance in this one) are kept.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use answercache::testing::{wait_until, Fault, FaultFs, FsOp, Rule};
use answercache::Error;

use crate::support::{dir_in, hex_of, open, walk, Answer, OnDisk, Reads};

fn hostile_keys() -> Vec<Vec<u8>> {
    let mut huge = Vec::with_capacity(1 << 20);
    while huge.len() < 1 << 20 {
        huge.extend_from_slice(b"../\0/");
    }
    huge.truncate(1 << 20);
    vec![
        b"../x".to_vec(),
        b"../../etc/passwd".to_vec(),
        b"/etc/passwd".to_vec(),
        b"x/../../y".to_vec(),
        b"..".to_vec(),
        b".".to_vec(),
        b"/".to_vec(),
        b"".to_vec(),
        b"a\0b".to_vec(),
        b"\0".to_vec(),
        vec![0xff, 0xfe, 0x80, b'/', 0xc0],
        b"C:\\Windows\\system32".to_vec(),
        b"tmp".to_vec(),
        b"quarantine".to_vec(),
        huge,
    ]
}

fn is_fanout(s: &str) -> bool {
    s.len() == 2
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Checks every path under `root` against the layout and returns the entry file names.
fn entry_names_checked(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (rel, is_dir) in walk(root) {
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_str().expect("UTF-8 path").to_owned())
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        match (parts.as_slice(), is_dir) {
            (["v2" | "tmp" | "quarantine"], true) => {}
            // The fence and the directory lock (FORMAT.md, section 1).
            (["fence" | "lock"], false) => {}
            (["v2", a], true) if is_fanout(a) => {}
            (["v2", a, name], false)
                if name.len() == 64
                    && name
                        .bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
                    && name[0..2] == **a =>
            {
                names.insert((*name).to_owned());
            }
            _ => panic!("unexpected path in the cache directory: {rel:?} (dir: {is_dir})"),
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_stay_inside_the_root_under_hex_names() {
    let outside = tempfile::tempdir().unwrap();
    let root = outside.path().join("cache");
    std::fs::create_dir(&root).unwrap();
    let keys = hostile_keys();
    let mut h = dir_in(tempfile::TempDir::new_in(&root).unwrap())
        .open_cache(|b| b.max_key_bytes(2 << 20))
        .await;
    for (i, k) in keys.iter().enumerate() {
        h.set_bytes(k, format!("value {i}")).await.unwrap();
    }
    h.reopen().await;

    let expected: BTreeSet<String> = keys.iter().map(|k| hex_of(k)).collect();
    assert_eq!(expected.len(), keys.len());
    assert_eq!(entry_names_checked(h.root()), expected);
    // Nothing escaped: the directories around the root hold only the root.
    let around: Vec<PathBuf> = walk(outside.path()).into_iter().map(|(p, _)| p).collect();
    assert!(around.iter().all(|p| p.starts_with("cache")), "{around:?}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);

    let before = h.stats();
    for (i, k) in keys.iter().enumerate() {
        let got = h.get_bytes(k).await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(format!("value {i}").as_bytes()),
            "key #{i}"
        );
    }
    let reads = Reads::between(&before, &h.stats());
    assert_eq!(
        reads,
        Reads {
            warm_hits: keys.len() as u64,
            ..Reads::default()
        }
    );
    // Removing them works the same way.
    for k in &keys {
        h.remove(k).await.unwrap();
    }
    h.reopen().await;
    assert_eq!(entry_names_checked(h.root()), BTreeSet::new());
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_key_is_rejected_under_the_default_limit() {
    let h = open(|b| b).await;
    let key = vec![b'k'; 1 << 20];
    let err = h.set_bytes(&key, b"v").await.unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len, max } if len == 1 << 20 && max == answercache::defaults::DEFAULT_MAX_KEY_BYTES),
        "{err:?}"
    );
    assert_eq!(answercache::defaults::DEFAULT_MAX_KEY_BYTES, 16 << 10);
    let err = h.get_bytes(&key).await.unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len, max: 16384 } if len == 1 << 20),
        "{err:?}"
    );
    assert_eq!(h.stats().sets, 0);
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_keys_and_values_are_rejected_and_change_nothing() {
    let h = open(|b| b.max_key_bytes(64).max_entry_bytes(1024)).await;
    h.set_bytes("k", b"v0").await.unwrap();
    h.flush().await.unwrap();
    let files = h.files();
    let s0 = h.stats();

    let long_key = vec![b'x'; 65];
    let key_err = |e: Error| matches!(e, Error::KeyTooLarge { len: 65, max: 64 });
    assert!(key_err(h.set_bytes(&long_key, b"v").await.unwrap_err()));
    assert!(key_err(h.set(&long_key, "v").await.unwrap_err()));
    assert!(key_err(
        h.set_with_ttl(&long_key, "v", Duration::from_secs(1))
            .await
            .unwrap_err()
    ));
    assert!(key_err(h.get_bytes(&long_key).await.unwrap_err()));
    assert!(key_err(h.remove(&long_key).await.unwrap_err()));

    let val_err = |e: Error| {
        matches!(
            e,
            Error::ValueTooLarge {
                len: 1025,
                max: 1024
            }
        )
    };
    assert!(val_err(
        h.set_bytes("k", vec![1u8; 1025]).await.unwrap_err()
    ));
    assert!(val_err(
        h.set_bytes_with_ttl("k", vec![1u8; 1025], Duration::from_secs(1))
            .await
            .unwrap_err()
    ));
    // Typed values are measured encoded: a string of 1023 characters is 1025 bytes of JSON
    // (with its quotes).
    assert!(val_err(h.set("k", &"x".repeat(1023)).await.unwrap_err()));

    let s1 = h.stats();
    assert_eq!(s1, s0, "rejections change no counter");
    assert_eq!(h.get_bytes("k").await.unwrap().as_deref(), Some(&b"v0"[..]));
    h.flush().await.unwrap();
    assert_eq!(h.files(), files, "rejections create no file");

    // The limits are inclusive.
    h.set_bytes(vec![b'x'; 64], vec![2u8; 1024]).await.unwrap();
    h.set("k", &"y".repeat(1022)).await.unwrap();
    assert_eq!(h.get::<String>("k").await.unwrap(), Some("y".repeat(1022)));
    assert_eq!(h.stats().sets, s0.sets + 2);
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_read_as_the_wrong_type_is_a_decode_miss_and_stays() {
    let mut h = open(|b| b).await;
    h.set("k", "a plain string, not an answer").await.unwrap();
    h.flush().await.unwrap();
    for tier in ["hot", "warm"] {
        assert_eq!(h.get::<Answer>("k").await.unwrap(), None, "{tier}");
        let got = h.get::<String>("k").await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some("a plain string, not an answer"),
            "{tier}"
        );
        let s = h.stats();
        assert_eq!(
            (
                s.corrupted,
                s.quarantined_files,
                s.misses,
                s.decode_misses,
                s.hot_hits,
                s.warm_hits
            ),
            (0, 0, 1, 1, 1, 0),
            "{tier}: the wrong type is a miss, never a hit; the right one then hits"
        );
        assert!(h.on_disk("k"));
        h.reopen().await;
    }
    // A prefix of the right type is not enough.
    h.set("pair", &(7u8, 9u8)).await.unwrap();
    assert_eq!(h.get::<u8>("pair").await.unwrap(), None);
    assert_eq!(h.get::<(u8, u8)>("pair").await.unwrap(), Some((7, 9)));
    h.close().await.unwrap();
}

fn plant(dir: &Path, name: &str, age: Duration) -> String {
    let path = dir.join(name);
    std::fs::write(&path, b"half an entry").unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    name.to_owned()
}

/// Plants, in `dir`, three orphan temp files named `<prefix><16 hex>.<pid>.<instance>.<n>.tmp`
/// (a dead pid; pid 1, two hours old; this process, an instance that does not exist) and two
/// of live writers (pid 1, fresh and 59 minutes old), and a foreign `notes.txt`. Returns the
/// orphans' names and the live ones'.
fn plant_temps(dir: &Path, prefix: &str) -> (Vec<String>, BTreeSet<String>) {
    const DEAD_PID: u32 = 999_999_999;
    assert!(
        !Path::new(&format!("/proc/{DEAD_PID}")).exists(),
        "pid {DEAD_PID} is not alive"
    );
    assert!(Path::new("/proc/1").exists(), "pid 1 is alive");
    let me = std::process::id();
    std::fs::create_dir_all(dir).unwrap();
    let fresh = Duration::ZERO;
    let name = |hex: &str, rest: &str| format!("{prefix}{hex}.{rest}.tmp");
    let swept = vec![
        plant(
            dir,
            &name("0123456789abcdef", &format!("{DEAD_PID}.1.0")),
            fresh,
        ),
        plant(
            dir,
            &name("0123456789abcdef", "1.1.0"),
            Duration::from_secs(2 * 3600),
        ),
        // This process, but a cache instance that does not exist (any more).
        plant(
            dir,
            &name("0123456789abcdef", &format!("{me}.999999.0")),
            fresh,
        ),
    ];
    let kept = [
        plant(dir, &name("fedcba9876543210", "1.2.0"), fresh),
        plant(
            dir,
            &name("fedcba9876543210", "1.3.7"),
            Duration::from_secs(59 * 60),
        ),
    ]
    .into();
    plant(dir, "notes.txt", fresh);
    (swept, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_temp_files_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let (swept, kept) = plant_temps(&tmp, "");
    let h = dir_in(dir).open_cache(|b| b).await;
    let s = h.stats();
    assert_eq!(s.temp_files_swept, 3);
    assert_eq!(
        s.foreign_files, 1,
        "notes.txt is foreign, counted and left alone"
    );
    let kept: BTreeSet<String> = kept.iter().map(|n| format!("tmp/{n}")).collect();
    let mut listed = h.temp_names();
    assert!(listed.remove("tmp/notes.txt"), "notes.txt is left");
    assert_eq!(listed, kept);
    for name in swept {
        assert!(!h.root().join("tmp").join(&name).exists(), "{name}");
    }
    h.close().await.unwrap();
}

/// An entry is written to a temp file beside its place (`v2/ab/.<16 hex>.<pid>.<instance>.<n>.tmp`);
/// a writer killed mid-write leaves it there. The startup scan deletes those whose writer is
/// gone (a dead process, an instance of this process that is closed, or older than an hour)
/// and keeps those of live writers; none is ever read as an entry or counted as foreign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_entry_temp_files_beside_their_entries_are_swept_by_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let ab = dir.path().join("v2").join("01");
    let (swept, kept) = plant_temps(&ab, ".");
    let h = dir_in(dir).open_cache(|b| b).await;
    assert!(wait_until(Duration::from_secs(30), || h.stats().warm_index_complete).await);
    let s = h.stats();
    assert_eq!(s.temp_files_swept, 3);
    assert_eq!(s.foreign_files, 1, "notes.txt only");
    assert_eq!(s.warm_entries, 0, "a temp file is never an entry");
    let kept: BTreeSet<String> = kept.iter().map(|n| format!("v2/01/{n}")).collect();
    assert_eq!(h.temp_names(), kept);
    for name in swept {
        assert!(!ab.join(&name).exists(), "{name}");
    }
    assert!(ab.join("notes.txt").exists(), "foreign: left");
    h.close().await.unwrap();
}

/// Two cache instances in one process share a directory: the second one's open must not
/// sweep the temp file the first is in the middle of writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temp_file_of_a_live_instance_in_this_process_is_kept() {
    let fs = Arc::new(FaultFs::std());
    let h = open(|b| b.io_timeout(Duration::from_secs(300)).fs(fs.clone())).await;
    fs.add_rule(Rule::new(Fault::Hang).ops(&[FsOp::Rename]).times(1));
    h.set("k", "v").await.unwrap();
    while fs.faults_injected() == 0 {
        tokio::task::yield_now().await; // written to tmp/, waiting to be renamed
    }
    let in_flight = h.temp_names();
    assert_eq!(in_flight.len(), 1);
    // Beside its entry's place: the other instance's startup scan walks past it.
    assert!(
        in_flight.iter().all(|n| n.starts_with("v2/")),
        "{in_flight:?}"
    );
    let other = h.open_another().await;
    assert!(
        wait_until(Duration::from_secs(30), || other
            .stats()
            .warm_index_complete)
        .await
    );
    assert_eq!(other.stats().temp_files_swept, 0);
    assert_eq!(h.temp_names(), in_flight);

    fs.release_hangs();
    h.flush().await.unwrap();
    assert!(h.temp_names().is_empty());
    assert_eq!(
        other.get::<String>("k").await.unwrap().as_deref(),
        Some("v")
    );
    other.close().await.unwrap();
    h.close().await.unwrap();
}
