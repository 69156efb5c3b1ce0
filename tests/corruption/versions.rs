//! Format versions. A file of a newer version (a newer answercache sharing the directory) is a
//! miss and is left in place, byte for byte, by `get` and by `verify --repair`; it is counted
//! as `newer_version_skipped`, not as corruption. An older, unsupported version is corruption.

use answercache::verify::{verify, VerifyOptions};
use answercache::warm::format::{self, FLAG_GZIP};

use crate::support::{self, open, place, META, NOW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_versions_are_misses_left_in_place() {
    let dir = crate::support::dir();
    let root = dir.root();
    let payload = format::deflate(b"from the future", 6).unwrap();
    let versions = [3u16, 7, u16::MAX];
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

    let cache = open(&dir).await;
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

/// Entries written before encodings were recorded (format version 1: typed values in bincode,
/// `set_bytes` values raw) are read correctly by this version, from disk and then from memory,
/// or are misses: never errors, never wrong values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_entries_are_read_or_missed_never_wrong() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Answer {
        text: String,
        tokens: u32,
    }
    let dir = crate::support::dir();
    let root = dir.root();
    let v1 = |key: &str, value: &[u8]| {
        let payload = format::deflate(value, 6).unwrap();
        let file = format::assemble(
            key.as_bytes(),
            value.len() as u64,
            &payload,
            META,
            1,
            FLAG_GZIP,
        );
        place(root, key.as_bytes(), &file);
    };
    // What version 1 wrote for `set("typed", &Answer { text: "Paris", tokens: 3 })`: bincode 2,
    // standard configuration.
    v1("typed", &[5, b'P', b'a', b'r', b'i', b's', 3]);
    v1("raw", b"raw bytes, as given");
    let cache = open(&dir).await;
    for pass in ["disk", "memory"] {
        let typed: Option<Answer> = cache.get("typed").await.unwrap();
        assert_eq!(
            typed,
            Some(Answer {
                text: "Paris".into(),
                tokens: 3
            }),
            "{pass}"
        );
        let raw = cache.get_bytes_answer("raw").await.unwrap().unwrap();
        assert_eq!(&raw.value[..], b"raw bytes, as given", "{pass}");
        assert_eq!(raw.encoding, answercache::Encoding::Unrecorded, "{pass}");
        // The raw value is not an Answer: a miss, not an error and not a hit.
        assert_eq!(cache.get::<Answer>("raw").await.unwrap(), None, "{pass}");
    }
    let s = cache.stats();
    assert_eq!(
        (
            s.warm_hits,
            s.hot_hits,
            s.misses,
            s.decode_misses,
            s.corrupted
        ),
        (2, 2, 2, 2, 0)
    );
    cache.close().await.unwrap();
}
