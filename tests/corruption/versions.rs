//! Format versions. A file of a newer version (a newer tiercache sharing the directory) is a
//! miss and is left in place, byte for byte, by `get` and by `verify --repair`; it is counted
//! as `newer_version_skipped`, not as corruption. An older, unsupported version is corruption.

use tiercache::verify::{verify, VerifyOptions};
use tiercache::warm::format::{self, FLAG_GZIP};

use crate::support::{self, open, place, META, NOW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_versions_are_misses_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let payload = format::deflate(b"from the future", 6).unwrap();
    let versions = [2u16, 7, u16::MAX];
    let mut files = Vec::new();
    for v in versions {
        let key = format!("newer/{v}");
        let file = format::assemble(key.as_bytes(), 15, &payload, META, v, FLAG_GZIP);
        let path = place(root, key.as_bytes(), &file);
        files.push((key, path, file));
    }
    let old_key = b"older/0";
    let old = format::assemble(old_key, 15, &payload, META, 0, FLAG_GZIP);
    place(root, old_key, &old);

    let options = VerifyOptions {
        repair: true,
        now_ms: NOW,
        ..VerifyOptions::default()
    };
    let report = verify(root, &options).unwrap();
    assert_eq!(report.newer_version, 3);
    assert_eq!(report.healthy, 0);
    assert_eq!(
        report.corrupted_by_reason,
        support::counts(["version-too-old"])
    );
    assert_eq!(report.quarantined, 1);

    let (cache, _clock) = open(root).await;
    for (key, path, file) in &files {
        assert_eq!(cache.get_bytes(key).await.unwrap(), None, "{key}");
        assert_eq!(&std::fs::read(path).unwrap(), file, "{key} was touched");
    }
    let s = cache.stats();
    assert_eq!(s.newer_version_skipped, 3);
    assert_eq!((s.corrupted, s.quarantined_files), (0, 0));
    assert_eq!(s.misses, 3);
    assert_eq!(support::quarantined(root).len(), 1);

    // A second verify: still there, still not corruption, clean.
    let report = verify(root, &options).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.newer_version, 3);
    cache.close().await.unwrap();
}
