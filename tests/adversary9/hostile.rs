//! Hostile files in `<root>/nspending/` (and in its place).

use std::os::unix::fs::symlink;

use answercache::testing::{MemoryShared, TestDir};

use crate::mem::*;

/// B answers "q" in "bot" (A sees it), then invalidates it; returns nothing, A's view is
/// checked by the caller after the sync interval.
async fn b_answers_then_invalidates(
    a: &answercache::TieredCache,
    b: &answercache::TieredCache,
) -> u64 {
    let g0 = a.namespace("bot").unwrap().generation().await.unwrap();
    assert_eq!(b.namespace("bot").unwrap().generation().await.unwrap(), g0);
    store(b, "bot", "q", "old answer").await;
    assert_eq!(served(a, "bot", "q").await.as_deref(), Some("old answer"));
    let g1 = b.namespace("bot").unwrap().invalidate().await.unwrap();
    assert_ne!(g1, g0);
    g1
}

/// A plain file planted where the marker directory goes (`<root>/nspending`): A still opens
/// and serves; B's invalidation must reach A within the sync interval plus the timeout.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_file_in_place_of_the_marker_directory_never_stops_the_namespace_sync() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    std::fs::write(dir.root().join("nspending"), b"not a directory").unwrap();
    let a = open(&dir, &server).await;
    let b = replica(&server).await;
    let g1 = b_answers_then_invalidates(&a, &b).await;
    pass(secs(3)).await;
    assert_eq!(
        served(&a, "bot", "q").await,
        None,
        "A still serves an answer B invalidated 3 s ago (A's syncs: {})",
        a.stats().namespace_syncs
    );
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g1);
    a.close().await.unwrap();
}

/// The marker directory is a symlink to another directory.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_symlinked_marker_directory_never_stops_the_namespace_sync() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), dir.root().join("nspending")).unwrap();
    let a = open(&dir, &server).await;
    let b = replica(&server).await;
    let g1 = b_answers_then_invalidates(&a, &b).await;
    pass(secs(3)).await;
    assert_eq!(served(&a, "bot", "q").await, None);
    assert_eq!(a.namespace("bot").unwrap().generation().await.unwrap(), g1);
    a.close().await.unwrap();
}

/// Entries planted in `nspending/` before A opens: a directory, a FIFO, a dangling symlink,
/// an oversized file, a damaged marker, and names that are not markers of a valid namespace
/// (upper-case hex, odd length, a valid hex of an invalid name, a temp-like name). Nothing
/// hangs or panics; the damaged entries' namespaces (and only those) are invalidated again;
/// the foreign names stay; the namespace sync runs.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hostile_entries_in_the_marker_directory_cost_misses_only() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let dir = TestDir::new();
    let a = open(&dir, &server).await;
    // Five namespaces answered on A at their bootstrapped generations; "keep" untouched.
    let names = ["d1", "d2", "d3", "d4", "d5", "keep"];
    let mut before = Vec::new();
    for n in names {
        before.push(a.namespace(n).unwrap().generation().await.unwrap());
        store(&a, n, "q", "answer").await;
    }
    a.close().await.unwrap();
    let md = dir.root().join("nspending");
    std::fs::create_dir_all(&md).unwrap();
    std::fs::create_dir(md.join(marker_name("d1"))).unwrap();
    nix_mkfifo(&md.join(marker_name("d2")));
    symlink("/nonexistent/target", md.join(marker_name("d3"))).unwrap();
    std::fs::write(md.join(marker_name("d4")), vec![b'7'; 1 << 20]).unwrap();
    std::fs::write(md.join(marker_name("d5")), marker_content("other", 5)).unwrap();
    let foreign = [
        marker_name("keep").to_uppercase(),
        "6b6".to_owned(),
        marker_name("a:b"),
        "marker.1.tmp".to_owned(),
    ];
    for f in &foreign {
        std::fs::write(md.join(f), marker_content("keep", 9)).unwrap();
    }
    let a = open(&dir, &server).await;
    pass(secs(5)).await;
    for (n, g) in names.iter().zip(&before) {
        let now = a.namespace(n).unwrap().generation().await.unwrap();
        if *n == "keep" {
            assert_eq!(now, *g, "{n}");
            assert_eq!(served(&a, n, "q").await.as_deref(), Some("answer"), "{n}");
        } else {
            assert_ne!(now, *g, "{n} was not invalidated again");
            assert_eq!(served(&a, n, "q").await, None, "{n}");
            assert_eq!(on_server(&server, n), Some(now), "{n}");
            assert_eq!(served(&b, n, "q").await, None, "{n}");
        }
    }
    assert_eq!(a.stats().namespace_invalidations_pending, 0);
    let mut left = marker_files(dir.root());
    let mut want = foreign.to_vec();
    want.sort();
    left.sort();
    assert_eq!(left, want);
    a.close().await.unwrap();
}

/// A FIFO, made with `mkfifo(1)`.
fn nix_mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}
