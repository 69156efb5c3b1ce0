//! Layout migration (`v1/ab/cd/<h>` → `v2/ab/<h>`, FORMAT.md section 1): no stale, removed or
//! older answer may ever be served, whatever stops the move and whatever the caller does
//! before the next open.
//!
//! The promise under attack (FORMAT.md, rule 5): "A disk error stops the move: what is left is
//! moved at the next open and never served before. Until then, removing a key (or writing a
//! value that can only live in memory) also deletes its `v1/` file, so a later move cannot
//! bring back a removed answer." And rule 2: an entry in `v2/` wins over the `v1/` one.

use std::time::Duration;

use answercache::testing::{Fault, FsOp, Rule, TestCache};
use answercache::warm::format::encode_fence;

use crate::support::*;

/// Settings that keep the breaker and memory-only mode out of the way of a few injected
/// errors.
fn patient(b: answercache::Builder) -> answercache::Builder {
    b.failure_threshold(1000).memory_only_after(1000)
}

/// A directory of layout 1 holding `key` = `"old answer"` and a few other entries.
fn v1_dir(keys: &[&str]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for k in keys {
        plant_v1(t.path(), k, &format!("old answer of {k}"));
    }
    t
}

/// Opens a cache on `t` whose move of `stuck`'s file into `v2/` fails (EIO on that rename
/// only): the migration stops with `stuck` still in `v1/`.
async fn open_with_stuck_migration(
    t: tempfile::TempDir,
    stuck: &str,
    edit: impl FnOnce(answercache::Builder) -> answercache::Builder,
) -> TestCache {
    let d = dir_in(t).fault_fs();
    d.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::Rename])
            .path_contains(hex_of(stuck.as_bytes()))
            .times(2),
    );
    let cache = d.open_cache(|b| edit(patient(b))).await;
    assert!(
        v1_path(cache.root(), stuck.as_bytes()).exists(),
        "the migration must have stopped with {stuck} in v1/"
    );
    cache.fs().clear_rules();
    cache
}

async fn get_str(cache: &answercache::TieredCache, key: &str) -> Option<String> {
    cache
        .get_bytes(key)
        .await
        .unwrap()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// The newer value of a key written through the new cache is evicted by the warm budget
/// (ordinary LRU eviction); at the next open the older `v1/` file of that key, which nothing
/// deleted, is moved in and served: an answer older than the last one set.
#[tokio::test]
async fn an_evicted_newer_value_does_not_bring_back_the_v1_answer() {
    let t = v1_dir(&["chat:q", "other:1"]);
    let mut cache =
        open_with_stuck_migration(t, "chat:q", |b| b.warm_capacity_bytes(64 << 10)).await;
    let root = cache.root().to_owned();
    cache
        .set_bytes("chat:q", b"new answer".to_vec())
        .await
        .unwrap();
    cache.flush().await.unwrap();
    assert!(v2_path(&root, b"chat:q").exists());
    // Fill the 64 KiB budget with other keys: the newer value is evicted from the disk.
    for i in 0..40u32 {
        cache
            .set_bytes(format!("filler:{i}"), vec![b'x'; 100])
            .await
            .unwrap();
    }
    cache.flush().await.unwrap();
    assert!(!v2_path(&root, b"chat:q").exists(), "evicted");
    cache.reopen().await;
    // Hot is empty after a restart: whatever is served comes from the disk.
    assert_eq!(
        get_str(&cache, "chat:q").await,
        None,
        "the v1 answer (older than the evicted one) must not come back"
    );
    cache.close().await.unwrap();
}

/// The same with a TTL: the newer value expires and its file is deleted on read; the v1 file
/// (no expiry) comes back at the next open.
#[tokio::test]
async fn an_expired_newer_value_does_not_bring_back_the_v1_answer() {
    let t = v1_dir(&["chat:q", "other:1"]);
    let mut cache = open_with_stuck_migration(t, "chat:q", |b| b).await;
    cache
        .set_bytes_with_ttl("chat:q", b"new answer".to_vec(), Duration::from_secs(60))
        .await
        .unwrap();
    cache.flush().await.unwrap();
    cache.advance(Duration::from_secs(120));
    assert_eq!(get_str(&cache, "chat:q").await, None, "expired");
    cache.reopen().await;
    assert_eq!(
        get_str(&cache, "chat:q").await,
        None,
        "the v1 answer set before the expired one must not come back"
    );
    cache.close().await.unwrap();
}

/// Listing `v1/` fails once at open (EIO): the migration does not start, and the cache never
/// learns that `v1/` holds entries, so `remove` leaves the key's `v1/` file. At the next open
/// it is moved in and the removed answer is served.
#[tokio::test]
async fn a_key_removed_after_v1_could_not_be_listed_stays_removed() {
    let t = v1_dir(&["chat:q", "other:1"]);
    let d = dir_in(t).fault_fs();
    d.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::ReadDir])
            .path_contains("/v1")
            .times(1),
    );
    let mut cache = d.open_cache(patient).await;
    let root = cache.root().to_owned();
    assert_eq!(cache.fs().faults_injected(), 1);
    assert!(v1_path(&root, b"chat:q").exists());
    assert_eq!(
        get_str(&cache, "chat:q").await,
        None,
        "never served from v1/"
    );
    cache.remove("chat:q").await.unwrap();
    cache.flush().await.unwrap();
    cache.reopen().await;
    assert_eq!(
        get_str(&cache, "chat:q").await,
        None,
        "a removed answer came back"
    );
    assert_eq!(
        get_str(&cache, "other:1").await.as_deref(),
        Some("old answer of other:1")
    );
    cache.close().await.unwrap();
}

/// The directories cannot be prepared at open (creating `v2/` fails once): no migration runs,
/// the cache goes on (the breaker sees one failure), and a `remove` in this process leaves the
/// `v1/` file for the next open to move in.
#[tokio::test]
async fn a_key_removed_after_a_failed_open_stays_removed() {
    let t = v1_dir(&["chat:q", "other:1"]);
    let d = dir_in(t).fault_fs();
    d.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::CreateDirAll])
            .times(1),
    );
    let mut cache = d.open_cache(patient).await;
    let root = cache.root().to_owned();
    assert!(v1_path(&root, b"chat:q").exists());
    cache.remove("chat:q").await.unwrap();
    cache.flush().await.unwrap();
    cache.reopen().await;
    assert_eq!(
        get_str(&cache, "chat:q").await,
        None,
        "a removed answer came back"
    );
    cache.close().await.unwrap();
}

/// `invalidate_if` while the migration is unfinished: the key still in `v1/` is not found by
/// the scan (which walks `v2/` only) and comes back at the next open.
#[tokio::test]
async fn invalidate_if_during_an_unfinished_migration_removes_v1_entries_too() {
    let t = v1_dir(&["doc42:summary", "doc7:summary"]);
    let mut cache = open_with_stuck_migration(t, "doc42:summary", |b| b).await;
    let n = cache
        .invalidate_if(|k| k.starts_with(b"doc42:"))
        .await
        .unwrap();
    cache.flush().await.unwrap();
    cache.reopen().await;
    assert_eq!(
        (n, get_str(&cache, "doc42:summary").await),
        (1, None),
        "invalidate_if must remove (and count) the entry of a matching key still in v1/"
    );
    assert_eq!(
        get_str(&cache, "doc7:summary").await.as_deref(),
        Some("old answer of doc7:summary")
    );
    cache.close().await.unwrap();
}

/// A value that can only live in memory (larger than the warm budget) deletes the key's v1
/// file while the migration is unfinished (rule 5): nothing older comes back.
#[tokio::test]
async fn a_memory_only_value_deletes_the_v1_file() {
    let t = v1_dir(&["chat:q", "other:1"]);
    let mut cache =
        open_with_stuck_migration(t, "chat:q", |b| b.warm_capacity_bytes(16 << 10)).await;
    let root = cache.root().to_owned();
    let big: Vec<u8> = (0..40_000u32).flat_map(|i| i.to_le_bytes()).collect();
    cache.set_bytes("chat:q", big.clone()).await.unwrap();
    // A value larger than the warm budget is reported as not on disk (by design).
    assert!(matches!(
        cache.flush().await,
        Err(answercache::Error::NotPersisted { failed: 1, .. })
    ));
    assert!(!v1_path(&root, b"chat:q").exists());
    assert_eq!(
        cache.get_bytes("chat:q").await.unwrap().as_deref(),
        Some(&big[..])
    );
    let _ = cache.close().await;
    cache.reopen_after_close().await;
    assert_eq!(get_str(&cache, "chat:q").await, None);
    cache.close().await.unwrap();
}

/// A plain `remove` during an unfinished migration (the case the suite already covers for a
/// rename fault), here with the remove of the v1 file itself failing once: `flush` must not
/// report success while the v1 file is still there, or the answer comes back.
#[tokio::test]
async fn a_remove_whose_v1_delete_fails_is_retried_or_reported() {
    let t = v1_dir(&["chat:q", "other:1"]);
    let mut cache = open_with_stuck_migration(t, "chat:q", |b| b).await;
    let root = cache.root().to_owned();
    cache.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .path_contains("/v1/")
            .times(1),
    );
    cache.remove("chat:q").await.unwrap();
    let flushed = cache.flush().await;
    let v1_left = v1_path(&root, b"chat:q").exists();
    assert!(
        flushed.is_err() || !v1_left,
        "flush returned {flushed:?} with the v1 file still there"
    );
    cache.fs().clear_rules();
    cache.close().await.unwrap();
    cache.reopen_after_close().await;
    assert_eq!(get_str(&cache, "chat:q").await, None);
    cache.close().await.unwrap();
}

/// `clear` while `v1/` still holds entries: the fence covers them, at this open and after.
#[tokio::test]
async fn clear_during_an_unfinished_migration_covers_v1_entries() {
    let t = v1_dir(&["chat:q", "other:1", "other:2"]);
    let mut cache = open_with_stuck_migration(t, "chat:q", |b| b).await;
    cache.advance(Duration::from_millis(5));
    cache.clear().await.unwrap();
    cache.reopen().await;
    for k in ["chat:q", "other:1", "other:2"] {
        assert_eq!(get_str(&cache, k).await, None, "{k}");
    }
    assert!(!cache.root().join("v1").exists());
    cache.close().await.unwrap();
}

/// A fence written before the migration (a clear by the new release on a directory whose
/// `v1/` was left, then the files moved at a later open) covers every moved entry.
#[tokio::test]
async fn a_fence_older_than_the_migration_covers_the_moved_entries() {
    let t = v1_dir(&["chat:q", "other:1"]);
    std::fs::write(t.path().join("fence"), encode_fence(now_ms() - 60_000)).unwrap();
    // One entry created after the fence: it survives the clear.
    let after = entry_file(b"late", b"after the fence", now_ms() - 1_000, 0);
    plant(&v1_path(t.path(), b"late"), &after);
    let cache = dir_in(t).open_cache(|b| b).await;
    assert_eq!(get_str(&cache, "chat:q").await, None);
    assert_eq!(get_str(&cache, "other:1").await, None);
    assert_eq!(
        get_str(&cache, "late").await.as_deref(),
        Some("after the fence")
    );
    assert!(!cache.root().join("v1").exists());
    cache.close().await.unwrap();
}

/// Rule 2: both layouts hold the key; the v2 file wins, byte for byte, and the v1 one is
/// deleted.
#[tokio::test]
async fn an_entry_in_both_layouts_is_served_from_v2() {
    let t = v1_dir(&["chat:q"]);
    let newer = entry_file(b"chat:q", b"v2 answer", now_ms() - 1_000, 0);
    plant(&v2_path(t.path(), b"chat:q"), &newer);
    let cache = dir_in(t).open_cache(|b| b).await;
    assert_eq!(
        get_str(&cache, "chat:q").await.as_deref(),
        Some("v2 answer")
    );
    assert_eq!(
        std::fs::read(v2_path(cache.root(), b"chat:q")).unwrap(),
        newer
    );
    assert!(!cache.root().join("v1").exists());
    cache.close().await.unwrap();
}

/// Expired, newer-format and corrupt v1 files: moved as they are, then judged as any entry
/// (expired: a miss and deleted; newer format: a miss, left; corrupt: quarantined).
#[tokio::test]
async fn v1_files_are_judged_by_every_read_check_after_the_move() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_owned();
    let expired = entry_file(b"expired", b"x", now_ms() - 7_200_000, now_ms() - 3_600_000);
    plant(&v1_path(&root, b"expired"), &expired);
    let mut newer = entry_file(b"newer", b"from the future", now_ms() - 1_000, 0);
    newer[8] = 9; // format version 9
    plant(&v1_path(&root, b"newer"), &newer);
    let mut corrupt = entry_file(b"corrupt", b"bit rot", now_ms() - 1_000, 0);
    let last = corrupt.len() - 3;
    corrupt[last] ^= 1;
    plant(&v1_path(&root, b"corrupt"), &corrupt);
    let cache = dir_in(t).open_cache(|b| b).await;
    let root = cache.root().to_owned();
    assert_eq!(get_str(&cache, "expired").await, None);
    assert_eq!(get_str(&cache, "newer").await, None);
    assert_eq!(get_str(&cache, "corrupt").await, None);
    let s = cache.stats();
    assert_eq!(
        (
            s.warm_expirations,
            s.newer_version_skipped,
            s.corrupted,
            s.quarantined_files
        ),
        (1, 1, 1, 1)
    );
    assert!(!v2_path(&root, b"expired").exists());
    assert_eq!(std::fs::read(v2_path(&root, b"newer")).unwrap(), newer);
    assert!(!v2_path(&root, b"corrupt").exists());
    assert!(!root.join("v1").exists());
    cache.close().await.unwrap();
}

/// Two caches open the same layout-1 directory at once (two instances of this process): every
/// entry ends up in v2, served by both, nothing is lost or duplicated, v1/ is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_opening_the_same_v1_directory_at_once() {
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let t = tempfile::tempdir().unwrap();
    for k in &keys {
        plant_v1(t.path(), k, &format!("answer {k}"));
    }
    let d = dir_in(t);
    let (a, b) = tokio::join!(d.open(d.builder()), d.open(d.builder()));
    let root = d.root().to_owned();
    for k in &keys {
        let want = format!("answer {k}");
        assert_eq!(get_str(&a, k).await.as_deref(), Some(&want[..]), "{k}");
        assert_eq!(get_str(&b, k).await.as_deref(), Some(&want[..]), "{k}");
    }
    assert_eq!(v2_files(&root).len(), keys.len());
    assert!(
        !root.join("v1").exists(),
        "{:?}",
        std::fs::read_dir(&root).unwrap().count()
    );
    assert_eq!(a.stats().corrupted + b.stats().corrupted, 0);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// `v1` that is a symlink (to a valid layout-1 tree outside), a FIFO, or a regular file: never
/// followed or opened; the cache opens, serves nothing of it, and leaves it there.
#[tokio::test]
async fn v1_that_is_not_a_directory_is_left_alone() {
    let outside = v1_dir(&["chat:q"]);
    for kind in ["symlink", "fifo", "file"] {
        let t = not_a_directory_v1(kind, outside.path());
        let cache = dir_in(t).open_cache(|b| b).await;
        assert_eq!(get_str(&cache, "chat:q").await, None, "{kind}");
        cache.set_bytes("k", b"v".to_vec()).await.unwrap();
        cache.flush().await.unwrap();
        let meta = std::fs::symlink_metadata(cache.root().join("v1")).unwrap();
        assert_eq!(
            (meta.file_type().is_symlink(), meta.is_file()),
            (kind == "symlink", kind == "file"),
            "{kind}"
        );
        cache.close().await.unwrap();
    }
    assert!(v1_path(outside.path(), b"chat:q").exists());
}

/// A foreign `v1` (not a directory) is not a disk error: the disk is fine, and the legacy
/// code says so itself ("a `v1` that is not a directory is foreign: left alone"). Counting
/// it puts a disk error into `Stats::disk_errors` (and `answercache_disk_errors_total`) at
/// every open of such a directory.
#[tokio::test]
async fn a_foreign_v1_is_not_counted_as_a_disk_error() {
    let outside = v1_dir(&["chat:q"]);
    let mut seen = Vec::new();
    for kind in ["symlink", "fifo", "file"] {
        let t = not_a_directory_v1(kind, outside.path());
        let cache = dir_in(t).open_cache(|b| b).await;
        let s = cache.stats();
        seen.push((kind, s.disk_errors, s.disk_errors_by_kind.clone()));
        cache.close().await.unwrap();
    }
    let none = std::collections::BTreeMap::new();
    assert_eq!(
        seen,
        vec![
            ("symlink", 0, none.clone()),
            ("fifo", 0, none.clone()),
            ("file", 0, none)
        ]
    );
}

fn not_a_directory_v1(kind: &str, outside: &std::path::Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let v1 = t.path().join("v1");
    match kind {
        "symlink" => std::os::unix::fs::symlink(outside.join("v1"), &v1).unwrap(),
        "fifo" => {
            let st = std::process::Command::new("mkfifo")
                .arg(&v1)
                .status()
                .unwrap();
            assert!(st.success());
        }
        _ => std::fs::write(&v1, b"not a directory").unwrap(),
    }
    t
}

/// Hostile names under v1: a directory, a FIFO and a symlink at entry paths, a fan-out level
/// that is a file, a `cd` that is a symlink to a valid tree outside, upper-case hex and
/// non-UTF-8 names. None is moved or opened; the real entry moves; `v1/` stays with them;
/// the next open leaves the same tree.
#[tokio::test]
async fn hostile_names_under_v1_are_never_moved_or_opened() {
    use std::os::unix::ffi::OsStrExt;
    let t = v1_dir(&["real"]);
    let root = t.path().to_owned();
    let outside = v1_dir(&["outside"]);
    let h = |k: &str| hex_of(k.as_bytes());
    // A directory at the entry path of "dir".
    std::fs::create_dir_all(v1_path(&root, b"dir")).unwrap();
    // A FIFO at the entry path of "fifo".
    let fifo = v1_path(&root, b"fifo");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // A symlink at the entry path of "outside", to its real file outside.
    let link = v1_path(&root, b"outside");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(v1_path(outside.path(), b"outside"), &link).unwrap();
    // `v1/zz` (not hex) and `v1/ab` that is a file.
    std::fs::create_dir_all(root.join("v1/zz")).unwrap();
    std::fs::write(root.join("v1/zz").join(h("zz")), b"x").unwrap();
    std::fs::write(root.join("v1/ff"), b"a file at a fan-out position").unwrap();
    // Upper-case and non-UTF-8 names next to the real entry.
    let real_dir = v1_path(&root, b"real").parent().unwrap().to_owned();
    let upper = real_dir.join(h("upper").to_uppercase());
    std::fs::write(&upper, entry_file(b"upper", b"u", now_ms(), 0)).unwrap();
    std::fs::write(
        real_dir.join(std::ffi::OsStr::from_bytes(b"\xff\xfe")),
        b"x",
    )
    .unwrap();
    let cache = dir_in(t).open_cache(|b| b).await;
    let root = cache.root().to_owned();
    assert_eq!(
        get_str(&cache, "real").await.as_deref(),
        Some("old answer of real")
    );
    for k in ["dir", "fifo", "outside", "upper"] {
        assert_eq!(get_str(&cache, k).await, None, "{k}");
        assert!(!v2_path(&root, k.as_bytes()).exists(), "{k}");
    }
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(v1_path(outside.path(), b"outside").exists());
    assert!(upper.exists());
    assert!(root.join("v1/ff").is_file());
    assert_eq!(cache.stats().corrupted, 0);
    cache.close().await.unwrap();
    // A second open changes nothing.
    let before = tree(&root.join("v1"));
    let cache = answercache::testing::builder(&root).build().await.unwrap();
    cache.close().await.unwrap();
    assert_eq!(tree(&root.join("v1")), before);
}

/// A foreign file where one `v2/ab` fan-out directory would be (a per-entry path problem by
/// DESIGN.md's classification) stops the whole migration at that directory, at every open:
/// the entries of every `v1/ab` listed after it are never moved, so never served, though
/// nothing is wrong with them or with the disk.
#[tokio::test]
async fn one_blocked_fan_out_directory_does_not_stop_the_whole_migration() {
    let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
    let t = tempfile::tempdir().unwrap();
    for k in &keys {
        plant_v1(t.path(), k, &format!("answer {k}"));
    }
    // Block the fan-out directory of the first `v1/ab` the migration lists.
    let first = std::fs::read_dir(t.path().join("v1"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let blocked = first.to_string_lossy().into_owned();
    std::fs::create_dir_all(t.path().join("v2")).unwrap();
    std::fs::write(t.path().join("v2").join(&blocked), b"a foreign file").unwrap();
    let mut cache = dir_in(t).open_cache(|b| b).await;
    cache.reopen().await;
    let mut missed = Vec::new();
    for k in &keys {
        let h = hex_of(k.as_bytes());
        if h[0..2] == blocked {
            continue;
        }
        if get_str(&cache, k).await.as_deref() != Some(&format!("answer {k}")[..]) {
            missed.push(k.clone());
        }
    }
    assert_eq!(missed, Vec::<String>::new(), "fan-out {blocked} blocked");
    cache.close().await.unwrap();
}
