//! Hostile directory states: a symlink at an entry path (and at a fan-out directory) pointing
//! out of the cache directory, a FIFO at an entry path, a directory planted at an entry path,
//! and foreign files and folders everywhere. The cache never follows a link out of its
//! directory (the sentinel outside is never read, written or deleted), never blocks on a FIFO,
//! never recurses into a planted directory, and ignores and counts foreign files.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use answercache::verify::VerifyOptions;
use answercache::warm::layout::{hex, key_hash};
use answercache::WritePolicy;

use crate::support::{self, entry, mkfifo, open, open_with, place, quarantine_name, verify, NOW};

const SENTINEL: &[u8] = b"sentinel: must never change";

fn options(repair: bool) -> VerifyOptions {
    VerifyOptions {
        repair,
        now_ms: NOW,
        ..VerifyOptions::default()
    }
}

/// Plants a symlink at `key`'s entry path pointing at `target`, replacing whatever is there.
fn plant_link(root: &Path, key: &[u8], target: &Path) {
    let path = support::prepare_path(root, key);
    let _ = std::fs::remove_file(&path);
    symlink(target, &path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_at_an_entry_path_never_touches_its_target() {
    let dir = crate::support::dir();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.root();
    let sentinel = outside.path().join("sentinel");
    std::fs::write(&sentinel, SENTINEL).unwrap();
    let key = b"linked";
    let path = support::entry_path(root, key);
    let unchanged = || assert_eq!(std::fs::read(&sentinel).unwrap(), SENTINEL);

    // get: a miss; the link itself is quarantined, as a link.
    plant_link(root, key, &sentinel);
    let cache = open_with(&dir, |b| b.write_policy(WritePolicy::WriteThrough)).await;
    assert_eq!(cache.get_bytes(key).await.unwrap(), None);
    // The scan's end removes fan-out directories holding nothing (the link is gone): the
    // link is planted again after that, not under it.
    support::wait_for_scan(&cache).await;
    unchanged();
    let q = support::quarantined(root);
    let name = quarantine_name(NOW, "not-a-regular-file", key);
    let moved = std::fs::symlink_metadata(&q[&name].path).unwrap();
    assert!(moved.file_type().is_symlink());
    assert_eq!(
        cache.stats().corrupted_by_reason,
        support::counts(["not-a-regular-file"])
    );

    // set: the write replaces the link, it does not write through it.
    plant_link(root, key, &sentinel);
    cache.set_bytes(key, "fresh value").await.unwrap();
    cache.flush().await.unwrap();
    unchanged();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_file());
    cache.close().await.unwrap();
    // ... and reads back from disk.
    let cache = open(&dir).await;
    assert_eq!(
        cache.get_bytes(key).await.unwrap().as_deref(),
        Some(&b"fresh value"[..])
    );
    assert_eq!(cache.stats().warm_hits, 1);

    // remove: unlinks the link, not its target.
    plant_link(root, key, &sentinel);
    cache.remove(key).await.unwrap();
    cache.flush().await.unwrap();
    unchanged();
    assert!(std::fs::symlink_metadata(&path).is_err());

    // clear: removes the fan-out directories without following the link.
    plant_link(root, key, &sentinel);
    cache.clear().await.unwrap();
    unchanged();
    assert!(std::fs::symlink_metadata(&path).is_err());
    cache.close().await.unwrap();
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

/// A symlink planted as a fan-out directory (`v1/ab` → a directory outside) must not be
/// followed either: not by `verify`, not by `clear`, and not by `get`, `set` or `remove` of a
/// key whose hash starts with `ab`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinked_fanout_directory_is_never_followed() {
    let dir = crate::support::dir();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.root();
    let key = b"behind a linked fan-out dir";
    let h = hex(&key_hash(key));
    // Outside: a tree shaped like a fan-out directory, holding a valid entry of `key` and a
    // sentinel.
    let victim_dir = outside.path().join(&h[2..4]);
    std::fs::create_dir_all(&victim_dir).unwrap();
    let victim_entry = entry(key, b"value from outside the cache");
    std::fs::write(victim_dir.join(&h), &victim_entry).unwrap();
    std::fs::write(victim_dir.join("sentinel"), SENTINEL).unwrap();
    let snapshot = || {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&victim_dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot();
    std::fs::create_dir_all(root.join("v2")).unwrap();
    symlink(outside.path(), root.join("v2").join(&h[..2])).unwrap();

    let report = verify(root, &options(true)).unwrap();
    assert_eq!((report.entries_checked, report.foreign_files), (0, 1));
    assert_eq!(snapshot(), before);

    let cache = open_with(&dir, |b| b.write_policy(WritePolicy::WriteThrough)).await;
    let got = cache.get_bytes(key).await.unwrap();
    assert_eq!(
        got, None,
        "served an entry from outside the cache directory"
    );
    assert_eq!(snapshot(), before, "get changed files outside the cache");
    // The entry path runs through a symlink: the write is refused, and a write-through set
    // says so.
    assert!(matches!(
        cache.set_bytes(key, "new").await,
        Err(answercache::Error::NotPersisted { failed: 1, .. })
    ));
    let _ = cache.flush().await;
    assert_eq!(snapshot(), before, "set wrote outside the cache");
    let _ = cache.remove(key).await;
    let _ = cache.flush().await;
    assert_eq!(snapshot(), before, "remove deleted outside the cache");
    let _ = cache.clear().await;
    assert_eq!(snapshot(), before, "clear deleted outside the cache");
    cache.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_at_an_entry_path_does_not_block() {
    let dir = crate::support::dir();
    let root = dir.root();
    let key = b"fifo";
    mkfifo(&support::prepare_path(root, key));

    // verify returns (run on a thread so that a blocking open fails the test, not hangs it).
    let (tx, rx) = mpsc::channel();
    let r = root.to_owned();
    std::thread::spawn(move || tx.send(verify(&r, &options(false)).map(|r| r.corrupted)));
    let corrupted = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("verify blocked on a FIFO")
        .unwrap();
    assert_eq!(corrupted.len(), 1);
    assert_eq!(corrupted[0].reason.name(), "not-a-regular-file");

    let cache = open(&dir).await;
    let got = tokio::time::timeout(Duration::from_secs(5), cache.get_bytes(key))
        .await
        .expect("get blocked on a FIFO")
        .unwrap();
    assert_eq!(got, None);
    let q = support::quarantined(root);
    let name = quarantine_name(NOW, "not-a-regular-file", key);
    let moved = std::fs::symlink_metadata(&q[&name].path).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(moved.file_type().is_fifo());
    assert!(q[&name].field("detail").unwrap().contains("fifo"));
    let s = cache.stats();
    assert_eq!(
        s.corrupted_by_reason,
        support::counts(["not-a-regular-file"])
    );
    assert_eq!(s.disk_errors, 0);
    // The path is usable again.
    cache.set_bytes(key, "after the fifo").await.unwrap();
    cache.close().await.unwrap();
    let cache = open(&dir).await;
    assert_eq!(
        cache.get_bytes(key).await.unwrap().as_deref(),
        Some(&b"after the fifo"[..])
    );
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_planted_at_an_entry_path_is_quarantined_not_entered() {
    let dir = crate::support::dir();
    let root = dir.root();
    let key = b"planted dir";
    let planted = support::prepare_path(root, key);
    // Inside: what would be a valid entry if the scan recursed, and a nested directory.
    std::fs::create_dir_all(planted.join("nested")).unwrap();
    let inner_name = hex(&key_hash(b"inner"));
    std::fs::write(planted.join(&inner_name), entry(b"inner", b"v")).unwrap();

    let report = verify(root, &options(false)).unwrap();
    assert_eq!((report.entries_checked, report.healthy), (1, 0));
    assert_eq!(report.corrupted.len(), 1);
    assert_eq!(report.corrupted[0].reason.name(), "not-a-regular-file");
    assert!(report.corrupted[0].detail.contains("directory"));

    let cache = open(&dir).await;
    assert_eq!(cache.get_bytes(key).await.unwrap(), None);
    assert!(!planted.exists());
    let q = support::quarantined(root);
    let name = quarantine_name(NOW, "not-a-regular-file", key);
    // Moved whole, contents intact.
    assert!(q[&name].path.join(&inner_name).is_file());
    assert!(q[&name].path.join("nested").is_dir());
    assert_eq!(
        cache.stats().corrupted_by_reason,
        support::counts(["not-a-regular-file"])
    );
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_files_are_ignored_and_counted() {
    let dir = crate::support::dir();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.root();
    let keys: Vec<String> = (0..3).map(|i| format!("real/{i}")).collect();
    for k in &keys {
        place(root, k.as_bytes(), &entry(k.as_bytes(), k.as_bytes()));
    }
    let v2 = root.join("v2");
    let h = hex(&key_hash(b"real/0"));
    let ab = v2.join(&h[..2]);
    let non_utf8 = std::ffi::OsStr::from_bytes(b"\xff\xfe.bak");
    // v2/: 5 foreign names.
    std::fs::write(v2.join(".DS_Store"), b"x").unwrap();
    std::fs::write(v2.join("README"), b"x").unwrap();
    std::fs::create_dir_all(v2.join("stray/ab")).unwrap();
    std::fs::write(v2.join("stray/ab").join(&h), entry(b"real/0", b"decoy")).unwrap();
    std::fs::create_dir_all(v2.join("AB")).unwrap();
    symlink(outside.path(), v2.join("ef")).unwrap();
    // v2/ab/: 2 directories (one named like layout 1's second level, holding a decoy of
    // the real entry: never descended into) ...
    std::fs::create_dir_all(ab.join("notes")).unwrap();
    std::fs::create_dir_all(ab.join(&h[2..4])).unwrap();
    std::fs::write(ab.join(&h[2..4]).join(&h), entry(b"real/0", b"decoy")).unwrap();
    // ... and 6 names that are not entry names.
    let cd = ab;
    for name in [
        ".DS_Store".to_owned(),
        format!("{h}~"),
        format!("{h}.tmp"),
        h.to_uppercase(),
        h[..63].to_owned(),
    ] {
        std::fs::write(cd.join(name), b"x").unwrap();
    }
    std::fs::write(cd.join(non_utf8), b"x").unwrap();
    const FOREIGN: u64 = 5 + 2 + 6;

    let report = verify(root, &options(true)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.foreign_files, FOREIGN);
    assert_eq!((report.entries_checked, report.healthy), (3, 3));
    assert_eq!(report.quarantined, 0);
    assert!(cd.join(non_utf8).exists() && v2.join("stray/ab").join(&h).exists());

    let cache = open(&dir).await;
    support::wait_for_scan(&cache).await;
    for k in &keys {
        assert_eq!(
            cache.get_bytes(k).await.unwrap().as_deref(),
            Some(k.as_bytes())
        );
    }
    let s = cache.stats();
    assert_eq!(s.foreign_files, FOREIGN);
    assert_eq!(s.warm_entries, 3);
    assert_eq!((s.corrupted, s.disk_errors), (0, 0));
    cache.close().await.unwrap();
    assert_eq!(support::quarantined(root).len(), 0);
}
