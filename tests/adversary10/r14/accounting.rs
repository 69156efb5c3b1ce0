//! Every write accounted once, with the shared tier encoding through the warm store's
//! encoder (its level rule: a file that fits one allocation unit is stored, level 0).

use answercache::testing::{MemoryShared, TestDir};

use super::*;

/// Six `set`s of distinct keys, one of them too large to share: shared (ok, failed,
/// dropped) = (5, 0, 1), the drop `too_large`; the disk wrote all six; the server holds the
/// five, whole.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_set_is_counted_once_per_tier() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = open_on(&dir, &server, |c| c.max_entry_bytes(64 << 10), |b| b).await;
    let values: Vec<(String, Vec<u8>)> = vec![
        ("tiny".into(), b"t".to_vec()),
        ("stored".into(), b"under one unit ".repeat(100)),
        ("prose".into(), b"a compressible answer ".repeat(4000)),
        ("noise".into(), incompressible(40 << 10, 1)),
        (
            "big-prose".into(),
            b"compressed below the shared bound ".repeat(10_000),
        ),
        ("too-large".into(), incompressible(100 << 10, 2)),
    ];
    for (k, v) in &values {
        a.set_bytes(k, &v[..]).await.unwrap();
    }
    a.flush().await.unwrap();
    let s = a.stats();
    assert_eq!(shared_writes(&a), (5, 0, 1));
    assert_eq!(
        s.shared_writes_dropped_by_reason.get("too_large").copied(),
        Some(1)
    );
    assert_eq!((s.writes_ok, s.writes_failed), (6, 0));
    for (k, v) in &values[..5] {
        assert_eq!(
            held(&server, k.as_bytes()),
            Some(String::from_utf8_lossy(v).into_owned()),
            "{k}"
        );
    }
    assert_eq!(held(&server, b"too-large"), None);
    a.close().await.unwrap();
}

/// E3: a small compressible answer whose compressed entry file fits
/// `SharedConfig::max_entry_bytes` is no longer shared: the shared tier now encodes with the
/// disk's rule, which stores (level 0) any file that fits one allocation unit (4 KiB), and
/// the stored file is over the bound. Counted (dropped, `too_large`), but not shared, where
/// before b50c44e it was (level 6: 144 bytes).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_answer_whose_compressed_file_fits_the_shared_bound_is_shared() {
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = open_on(&dir, &server, |c| c.max_entry_bytes(1500), |b| b).await;
    let answer = "a compressible answer ".repeat(64);
    let compressed =
        answercache::warm::format::encode(b"k", answer.as_bytes(), Default::default(), 6).unwrap();
    assert!(
        compressed.len() < 200,
        "{} bytes compressed",
        compressed.len()
    );
    a.set_bytes("k", answer.as_bytes()).await.unwrap();
    a.flush().await.unwrap();
    // Observed: None, and (0, 0, 1) with the drop `too_large`.
    assert_eq!(held(&server, b"k"), Some(answer));
    assert_eq!(shared_writes(&a), (1, 0, 0));
}
