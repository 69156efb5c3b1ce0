//! The on-disk layout: a warm budget that `du` agrees with, at most 256 fan-out directories,
//! none left by `clear`, and a directory written by the previous layout (`v1/ab/cd/<hex>`,
//! checked in under `fixtures/v1-layout`, written by the `answercache set` of commit 96cc531)
//! moved into `v2/ab/<hex>` at open: every answer it held is served again, nothing removed or
//! expired comes back, a newer entry is never replaced, and a migration cut short by a disk
//! error never brings back a key removed in the meantime.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use answercache::testing::{copy_dir, Fault, FsOp, Rule};
use answercache::workload::{answer, Rng};
use answercache::{Durability, WritePolicy};

use crate::support::{dir, dir_in, hex_of, walk, OnDisk};

/// What `du -sk` counts, in bytes: the allocated blocks of every file and directory under
/// `root`, the root included.
fn du_bytes(root: &Path) -> u64 {
    let own = std::fs::symlink_metadata(root).unwrap().blocks() * 512;
    own + walk(root)
        .into_iter()
        .map(|(p, _)| std::fs::symlink_metadata(root.join(p)).unwrap().blocks() * 512)
        .sum::<u64>()
}

/// The `du -sk` binary's answer, in bytes, when coreutils is there (it always is on the CI
/// image; the test above does not depend on it).
fn du_command(root: &Path) -> Option<u64> {
    let out = std::process::Command::new("du")
        .arg("-sk")
        .arg(root)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let kib: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

fn fan_out_dirs(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect()
}

/// The issue's scenario: a warm budget of 8 MiB and 12,000 answers of ~250 bytes. The budget
/// counted file lengths and the two-level fan-out left a directory per entry: `du` read 93 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn du_stays_within_the_budget_after_thousands_of_small_entries() {
    const BUDGET: u64 = 8 << 20;
    let cache = dir()
        .open_cache(|b| {
            b.warm_capacity_bytes(BUDGET)
                .hot_capacity_entries(64)
                .write_policy(WritePolicy::WriteThrough)
                .durability(Durability::NoSync)
        })
        .await;
    let mut rng = Rng::new(0x5eed_0250);
    for i in 0..12_000u32 {
        let mut text = answer(&mut rng, "geography", 250);
        text.truncate(250);
        cache
            .set_bytes(format!("chat:{i}"), text.into_bytes())
            .await
            .unwrap();
    }
    cache.flush().await.unwrap();
    let s = cache.stats();
    let root = cache.root().to_owned();
    let du = du_bytes(&root);
    assert!(
        du <= BUDGET + (1 << 20),
        "du {du} > budget {BUDGET} + 1 MiB; {s:?}"
    );
    if let Some(by_du) = du_command(&root) {
        assert!(by_du <= BUDGET + (1 << 20), "du -sk says {by_du}");
    }
    assert!(s.warm_disk_bytes <= BUDGET, "{s:?}");
    // The budget is used, not abandoned: every entry costs a 4 KiB block and 128 bytes of
    // directory, so 8 MiB less its fan-out directories holds this many.
    let dirs = fan_out_dirs(&root);
    assert!(dirs.len() <= 256, "{} fan-out directories", dirs.len());
    let files = cache.entry_names().len() as u64;
    assert_eq!(files, s.warm_entries, "{s:?}");
    assert_eq!(
        s.warm_entries,
        (BUDGET - dirs.len() as u64 * 4096) / (4096 + 128),
        "{s:?}"
    );
    // The budget never undercounts what the entries take: files and fan-out directories.
    let entries_du: u64 = dirs
        .iter()
        .map(|d| {
            let own = std::fs::symlink_metadata(d).unwrap().blocks() * 512;
            own + std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
                .sum::<u64>()
        })
        .sum();
    assert!(
        entries_du <= s.warm_disk_bytes,
        "entries take {entries_du}, the budget counts {}",
        s.warm_disk_bytes
    );
    // A restart's scan counts the same.
    cache.close().await.unwrap();
    let again = dir_in(cache.into_dir().into_tempdir())
        .open_cache(|b| b.warm_capacity_bytes(BUDGET))
        .await;
    assert!(
        answercache::testing::wait_until(Duration::from_secs(20), || again
            .stats()
            .warm_index_complete)
        .await
    );
    let after = again.stats();
    assert_eq!(after.warm_entries, s.warm_entries);
    assert_eq!(after.warm_disk_bytes, s.warm_disk_bytes);
    again.close().await.unwrap();
}

#[tokio::test]
async fn clear_leaves_no_fan_out_directory() {
    let cache = dir().open_cache(|b| b).await;
    for i in 0..300u32 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    cache.flush().await.unwrap();
    assert!(!fan_out_dirs(cache.root()).is_empty());
    cache.clear().await.unwrap();
    assert_eq!(fan_out_dirs(cache.root()), Vec::<PathBuf>::new());
    let s = cache.stats();
    assert_eq!((s.warm_entries, s.warm_bytes, s.warm_disk_bytes), (0, 0, 0));
    cache.close().await.unwrap();
}

/// The fixture's keys and what `answercache set` stored for them (96cc531).
const CAPITAL: &str = "chat:capital of france";
const JSON: &str = "json:answer";
const SHORT: &str = "short-lived"; // TTL 1 s: long expired
const REMOVED: &str = "removed"; // set, then `answercache rm`
const BIG: &str = "big:value";

fn big_value() -> Vec<u8> {
    "big ".repeat(2000).into_bytes()
}

/// A temporary directory holding a copy of the previous layout's fixture.
fn v1_fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/core/fixtures/v1-layout");
    copy_dir(&from, t.path()).unwrap();
    t
}

fn legacy_path(root: &Path, key: &str) -> PathBuf {
    let h = hex_of(key.as_bytes());
    root.join("v1").join(&h[0..2]).join(&h[2..4]).join(&h)
}

#[tokio::test]
async fn a_directory_of_the_previous_layout_is_migrated_at_open() {
    let cache = dir_in(v1_fixture()).open_cache(|b| b).await;
    let root = cache.root().to_owned();
    // Moved before `open` returned: v1/ is gone, the files are where this layout reads them,
    // byte for byte (a rename, not a rewrite).
    assert!(!root.join("v1").exists());
    for key in [CAPITAL, JSON, SHORT, BIG] {
        assert!(cache.on_disk(key), "{key}");
    }
    assert!(!cache.on_disk(REMOVED));
    assert_eq!(
        cache.get_bytes(CAPITAL).await.unwrap().as_deref(),
        Some(&b"Paris is the capital of France."[..])
    );
    assert_eq!(
        cache.get_bytes(JSON).await.unwrap().as_deref(),
        Some(&br#"{"answer":42,"model":"m"}"#[..])
    );
    assert_eq!(
        cache.get_bytes(BIG).await.unwrap(),
        Some(big_value().into())
    );
    assert_eq!(cache.get_bytes(SHORT).await.unwrap(), None);
    assert_eq!(cache.get_bytes(REMOVED).await.unwrap(), None);
    let s = cache.stats();
    assert_eq!((s.warm_hits, s.misses, s.corrupted), (3, 2, 0));
    cache.close().await.unwrap();
}

#[tokio::test]
async fn a_newer_entry_of_this_layout_is_never_replaced_by_a_migrated_one() {
    let t = v1_fixture();
    let mut cache = dir_in(t).open_cache(|b| b).await;
    cache
        .set_bytes(CAPITAL, b"Lyon (a newer answer)".to_vec())
        .await
        .unwrap();
    cache.flush().await.unwrap();
    cache.close().await.unwrap();
    // The older release wrote into its layout again (a copy of the fixture); this layout's
    // entry is the newer one.
    let root = cache.root().to_owned();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/core/fixtures/v1-layout/v1");
    copy_dir(&from, &root.join("v1")).unwrap();
    cache.reopen_after_close().await;
    assert_eq!(
        cache.get_bytes(CAPITAL).await.unwrap().as_deref(),
        Some(&b"Lyon (a newer answer)"[..])
    );
    assert!(!legacy_path(&root, CAPITAL).exists());
    assert!(!root.join("v1").exists());
    assert_eq!(
        cache.get_bytes(JSON).await.unwrap().as_deref(),
        Some(&br#"{"answer":42,"model":"m"}"#[..])
    );
    cache.close().await.unwrap();
}

/// A migration stopped by a failing disk leaves the rest of `v1/` for the next open; a key
/// removed in between must not come back when the rest moves.
#[tokio::test]
async fn a_key_removed_while_a_migration_is_unfinished_stays_removed() {
    let h = hex_of(CAPITAL.as_bytes());
    let d = dir_in(v1_fixture()).fault_fs();
    // Moving the capital's file into v2/ fails: the migration stops there.
    d.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::Rename])
            .path_contains(h.clone()),
    );
    let mut cache = d
        .open_cache(|b| b.failure_threshold(1000).memory_only_after(1000))
        .await;
    let root = cache.root().to_owned();
    assert!(legacy_path(&root, CAPITAL).exists());
    assert_eq!(cache.get_bytes(CAPITAL).await.unwrap(), None);
    cache.remove(CAPITAL).await.unwrap();
    cache.flush().await.unwrap();
    assert!(!legacy_path(&root, CAPITAL).exists());
    cache.fs().clear_rules();
    cache.close().await.unwrap();
    cache.reopen_after_close().await;
    assert_eq!(cache.get_bytes(CAPITAL).await.unwrap(), None);
    assert!(!root.join("v1").exists());
    assert_eq!(
        cache.get_bytes(BIG).await.unwrap(),
        Some(big_value().into())
    );
    cache.close().await.unwrap();
}

/// What the previous layout would not have read is not moved: a symlink at an entry path
/// (never followed), a valid entry file under the wrong directories, a foreign file. `v1/` is
/// then kept with them, and only the real entries move.
#[tokio::test]
async fn hostile_names_in_the_previous_layout_are_left_where_they_are() {
    let t = v1_fixture();
    let root = t.path().to_owned();
    let outside = tempfile::tempdir().unwrap();
    let planted = outside.path().join("entry");
    // A valid entry file (the capital's), reachable only through a symlink.
    std::fs::copy(legacy_path(&root, CAPITAL), &planted).unwrap();
    std::fs::remove_file(legacy_path(&root, CAPITAL)).unwrap();
    std::os::unix::fs::symlink(&planted, legacy_path(&root, CAPITAL)).unwrap();
    // The JSON entry under the wrong directories.
    let misplaced = root.join("v1/00/00").join(hex_of(JSON.as_bytes()));
    std::fs::create_dir_all(misplaced.parent().unwrap()).unwrap();
    std::fs::rename(legacy_path(&root, JSON), &misplaced).unwrap();
    std::fs::write(root.join("v1/README"), b"foreign").unwrap();
    let cache = dir_in(t).open_cache(|b| b).await;
    assert_eq!(cache.get_bytes(CAPITAL).await.unwrap(), None);
    assert_eq!(cache.get_bytes(JSON).await.unwrap(), None);
    assert_eq!(
        cache.get_bytes(BIG).await.unwrap(),
        Some(big_value().into())
    );
    assert!(std::fs::symlink_metadata(legacy_path(&root, CAPITAL))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(misplaced.exists());
    assert_eq!(std::fs::read(root.join("v1/README")).unwrap(), b"foreign");
    assert!(planted.exists());
    cache.close().await.unwrap();
}
