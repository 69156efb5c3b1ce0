//! Gzip bombs and oversize files. A small file whose payload inflates far past
//! `max_entry_bytes` is rejected as `bomb`, and the inflater stops within one
//! `INFLATE_CHUNK` of the limit (checked on `inflate_exact` directly and, through the cache,
//! from the byte count the quarantine sidecar records). Declared lengths over the limits, and
//! files longer than any valid entry, are `oversize` without inflating or reading them whole.

use answercache::warm::format::{self, InflateError, FLAG_GZIP, INFLATE_CHUNK};

use crate::support::{
    self, bomb_payload, open_with, place, quarantine_name, BOMB_INFLATED, META, NOW,
};

/// The cache's value limit in these tests: the bomb inflates to 64 times this.
const MAX_ENTRY: usize = 64 << 10;

#[test]
fn inflate_stops_within_one_chunk_of_the_limit() {
    let payload = bomb_payload();
    assert!(
        payload.len() < 8 << 10,
        "a small file: {} bytes",
        payload.len()
    );
    // Limits on and off chunk boundaries, including 0 and the cache's value limit.
    for limit in [
        0u64,
        1,
        1000,
        MAX_ENTRY as u64,
        1_000_003,
        (BOMB_INFLATED - 1) as u64,
    ] {
        let err = format::inflate_exact(payload, limit).unwrap_err();
        let InflateError::Bomb { inflated } = err else {
            panic!("limit {limit}: {err:?}");
        };
        let inflated = inflated as u64;
        assert!(inflated > limit, "limit {limit}: stopped at {inflated}");
        assert!(
            inflated <= limit + INFLATE_CHUNK as u64,
            "limit {limit}: {inflated} bytes inflated before stopping"
        );
    }
    // The declared length exactly: accepted, so the bound is not off by one.
    let exact = format::inflate_exact(payload, BOMB_INFLATED as u64).unwrap();
    assert_eq!(exact.len(), BOMB_INFLATED);
}

/// Parses "... (N produced before stopping)" from a sidecar's detail line.
fn produced(detail: &str) -> u64 {
    let (_, rest) = detail.split_once('(').expect("a count in parentheses");
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_through_the_cache_are_quarantined_after_at_most_one_chunk() {
    let dir = crate::support::dir();
    let root = dir.root();
    // Declared at the limit, declared tiny, and declared over the limit (never inflated).
    let cases: [(&str, u64, &str); 3] = [
        ("bomb/at-limit", MAX_ENTRY as u64, "bomb"),
        ("bomb/tiny", 10, "bomb"),
        ("bomb/over-limit", BOMB_INFLATED as u64, "oversize"),
    ];
    for (key, declared, _) in cases {
        let file = format::assemble(key.as_bytes(), declared, bomb_payload(), META, 1, FLAG_GZIP);
        place(root, key.as_bytes(), &file);
    }
    place(root, b"fine", &support::entry(b"fine", b"a normal value"));
    let cache = open_with(&dir, |b| b.max_entry_bytes(MAX_ENTRY)).await;
    for (key, _, _) in cases {
        assert_eq!(cache.get_bytes(key).await.unwrap(), None, "{key}");
    }
    assert_eq!(
        cache.get_bytes("fine").await.unwrap().as_deref(),
        Some(&b"a normal value"[..])
    );
    let q = support::quarantined(root);
    assert_eq!(q.len(), 3);
    for (key, declared, reason) in cases {
        let entry = &q[&quarantine_name(NOW, reason, key.as_bytes())];
        let detail = entry.field("detail").unwrap();
        if reason == "bomb" {
            let n = produced(detail);
            assert!(n > declared, "{key}: {detail}");
            assert!(n <= declared + INFLATE_CHUNK as u64, "{key}: {detail}");
            assert!(
                n <= MAX_ENTRY as u64 + INFLATE_CHUNK as u64,
                "{key}: {detail}"
            );
        } else {
            assert!(detail.contains("value length"), "{key}: {detail}");
        }
    }
    let s = cache.stats();
    assert_eq!(
        s.corrupted_by_reason,
        support::counts(["bomb", "bomb", "oversize"])
    );
    assert_eq!(s.disk_errors, 0);
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_longer_than_any_valid_entry_are_oversize_unread() {
    let dir = crate::support::dir();
    let root = dir.root();
    let limits = format::Limits {
        max_key_bytes: 64,
        max_entry_bytes: 4096,
    };
    let too_long = vec![b'A'; limits.max_file_bytes() as usize + 1];
    place(root, b"huge", &too_long);
    let cache = open_with(&dir, |b| b.max_key_bytes(64).max_entry_bytes(4096)).await;
    assert_eq!(cache.get_bytes("huge").await.unwrap(), None);
    let q = support::quarantined(root);
    let entry = &q[&quarantine_name(NOW, "oversize", b"huge")];
    assert_eq!(
        entry.field("size"),
        Some(too_long.len().to_string().as_str())
    );
    assert_eq!(
        cache.stats().corrupted_by_reason,
        support::counts(["oversize"])
    );
    cache.close().await.unwrap();
}
