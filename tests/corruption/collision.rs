//! A valid entry of key A placed at key B's path (a copy gone wrong, a hash-prefix mix-up, a
//! deliberate plant) is a miss for B, never returns A's value, and is quarantined as
//! `key-mismatch`; A itself and B's later writes are unaffected.

use answercache::verify::{verify, VerifyOptions};
use answercache::WritePolicy;

use crate::support::{self, open, open_with, quarantine_name, rel_entry_path, NOW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_of_another_key_is_never_served() {
    let dir = crate::support::dir();
    let root = dir.root();
    let cache = open_with(&dir, |b| b.write_policy(WritePolicy::WriteThrough)).await;
    cache.set_bytes("key A", "value of A").await.unwrap();
    cache.close().await.unwrap();
    let a_path = support::entry_path(root, b"key A");
    let a_file = std::fs::read(&a_path).unwrap();
    let b_path = support::prepare_path(root, b"key B");
    std::fs::copy(&a_path, &b_path).unwrap();

    // verify sees it first, without repairing.
    let report = verify(
        root,
        &VerifyOptions {
            now_ms: NOW,
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert_eq!((report.entries_checked, report.healthy), (2, 1));
    assert_eq!(report.corrupted.len(), 1);
    assert_eq!(report.corrupted[0].path, rel_entry_path(b"key B"));
    assert_eq!(report.corrupted[0].reason.name(), "key-mismatch");

    let cache = open(&dir).await;
    assert_eq!(cache.get_bytes("key B").await.unwrap(), None);
    assert_eq!(
        cache.get_bytes("key A").await.unwrap().as_deref(),
        Some(&b"value of A"[..])
    );
    let s = cache.stats();
    assert_eq!(s.corrupted_by_reason, support::counts(["key-mismatch"]));
    assert_eq!((s.misses, s.warm_hits), (1, 1));
    let q = support::quarantined(root);
    let name = quarantine_name(NOW, "key-mismatch", b"key B");
    assert_eq!(q.keys().collect::<Vec<_>>(), [&name]);
    assert_eq!(std::fs::read(&q[&name].path).unwrap(), a_file);
    assert!(!b_path.exists());
    assert_eq!(std::fs::read(&a_path).unwrap(), a_file);

    // B can be written and read back normally afterwards.
    cache.set_bytes("key B", "value of B").await.unwrap();
    cache.close().await.unwrap();
    let cache = open(&dir).await;
    assert_eq!(
        cache.get_bytes("key B").await.unwrap().as_deref(),
        Some(&b"value of B"[..])
    );
    assert_eq!(cache.stats().warm_hits, 1);
    cache.close().await.unwrap();
}
