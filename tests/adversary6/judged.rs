//! Deleting or quarantining what a read judged (FORMAT.md section 4): the file is first
//! renamed aside into `tmp/`. When `tmp/` is missing (an operator removed it while the
//! cache runs; the cache writes nothing, so nothing recreates it), the rename fails with
//! ENOENT, which the take-aside step reads as "nothing at the path": an expired entry is
//! never deleted, a corrupt one never quarantined, read after read.

use std::time::Duration;

use answercache::WritePolicy;

use crate::support::*;

#[tokio::test]
async fn a_missing_tmp_directory_does_not_keep_judged_files_in_place() {
    let mut cache = dir()
        .open_cache(|b| {
            b.hot_capacity_entries(1)
                .write_policy(WritePolicy::WriteThrough)
        })
        .await;
    let root = cache.root().to_owned();
    cache
        .set_bytes_with_ttl("short", b"expires".to_vec(), Duration::from_secs(1))
        .await
        .unwrap();
    cache.set_bytes("rot", b"bit rot".to_vec()).await.unwrap();
    cache
        .set_bytes("other", b"pushes the rest out of memory".to_vec())
        .await
        .unwrap();
    cache.reopen().await;
    std::fs::remove_dir(root.join("tmp")).unwrap();
    let p = v2_path(&root, b"rot");
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 4;
    std::fs::write(&p, bytes).unwrap();
    cache.advance(Duration::from_secs(5));
    for _ in 0..3 {
        assert_eq!(cache.get_bytes("short").await.unwrap(), None);
        assert_eq!(cache.get_bytes("rot").await.unwrap(), None);
    }
    let s = cache.stats();
    assert_eq!(
        (
            v2_path(&root, b"short").exists(),
            p.exists(),
            s.warm_expirations,
            s.quarantined_files,
            s.corrupted
        ),
        (false, false, 1, 1, 1),
        "(expired file left, corrupt file left, expirations, quarantined, corruptions counted)"
    );
    cache.close().await.unwrap();
}
