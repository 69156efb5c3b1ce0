//! Stepped reads at the cache's edges: a `close` between two 64 KiB steps (of a valid value
//! and of a bomb whose fault shows at the second step), an empty value, and many stepped
//! gets of different keys interleaved in one task by `tokio::join!`.

use std::task::Poll;

use answercache::warm::format::deflate;
use answercache::{Error, Source};

use super::*;

/// A get polled past its first step, the cache closed (every write drained), the get
/// finished: no panic, the exact value, a miss or `Closed`, nothing else. A restart then
/// reads the valid value exactly (a stepped hit); the bomb is counted and quarantined once
/// over the two instances, never served.
#[test]
fn close_between_two_steps() {
    ct().block_on(async {
        let mut cache = open().await;
        let root = cache.root().to_owned();
        let value = text(VALUE_MAX, 81);
        park(&cache, "close:valid", &value).await;
        let small = text(2 * STEP + 1, 82);
        let bomb_path = v2_path(&root, b"close:bomb");
        plant(
            &bomb_path,
            &resealed(
                "close:bomb",
                small.len() as u64 - 1,
                &deflate(&small, 6).unwrap(),
                now_ms(),
            ),
        );
        let mut fv = Box::pin(cache.get_bytes("close:valid"));
        let mut fb = Box::pin(cache.get_bytes("close:bomb"));
        assert!(poll_once(&mut fv).is_pending());
        assert!(poll_once(&mut fb).is_pending());
        cache.close().await.unwrap();
        let finish = |f: &mut _| loop {
            if let Poll::Ready(r) = poll_once::<std::pin::Pin<Box<_>>>(f) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let got_v: answercache::Result<Option<Arc<[u8]>>> = finish(&mut fv);
        drop(fv);
        match &got_v {
            Ok(Some(v)) => assert!(**v == *value, "close:valid: wrong bytes"),
            Ok(None) | Err(Error::Closed) => {}
            Err(e) => panic!("close:valid: {e}"),
        }
        let got_b: answercache::Result<Option<Arc<[u8]>>> = finish(&mut fb);
        drop(fb);
        assert!(
            matches!(got_b, Ok(None) | Err(Error::Closed)),
            "close:bomb: {:?}",
            got_b.map(|g| g.map(|g| g.len()))
        );
        let old = cache.stats();
        assert_eq!(old.disk_errors, 0, "{:?}", old.disk_errors_by_kind);
        assert_eq!(old.corrupted, old.quarantined_files);
        assert!(old.corrupted <= 1);
        assert_eq!(old.corrupted == 1, !bomb_path.exists());
        cache.reopen_after_close().await;
        scanned(&cache).await;
        let (got, yields) = get_counting_yields(&cache, "close:valid").await;
        assert!(got.as_deref() == Some(&value[..]));
        assert_eq!(yields, 15);
        assert_eq!(cache.get_bytes("close:bomb").await.unwrap(), None);
        let new = cache.stats();
        assert_eq!(new.inline_reads, 1);
        assert_eq!(
            (
                old.corrupted + new.corrupted,
                old.quarantined_files + new.quarantined_files
            ),
            (1, 1)
        );
        assert!(!bomb_path.exists());
        assert_eq!(new.disk_errors, 0);
    });
}

/// An empty value written by the cache: a stepped hit (one step, no yield) of exactly zero
/// bytes, served as warm. A member of one byte declaring none is a bomb; an empty member
/// declaring one byte is a decode error.
#[test]
fn an_empty_value_on_the_stepped_path() {
    mt(2).block_on(async {
        let cache = open().await;
        let root = cache.root().to_owned();
        park(&cache, "empty", b"").await;
        let s0 = cache.stats();
        let (got, yields) = get_counting_yields(&cache, "empty").await;
        assert_eq!(got.as_deref(), Some(&b""[..]));
        assert_eq!((moved(&s0, &cache.stats()), yields), (STEPPED_HIT, 0));
        evict_hot(&cache).await;
        let answer = cache.get_bytes_answer("empty").await.unwrap().unwrap();
        assert_eq!(answer.source, Source::Warm);
        assert!(answer.value.is_empty());
        for (key, payload, declared, reason) in [
            ("empty:bomb", deflate(b"x", 6).unwrap(), 0, "bomb"),
            ("empty:short", deflate(b"", 6).unwrap(), 1, "decode"),
        ] {
            let path = v2_path(&root, key.as_bytes());
            plant(&path, &resealed(key, declared, &payload, now_ms()));
            let s0 = cache.stats();
            assert_eq!(cache.get_bytes(key).await.unwrap(), None, "{key}");
            let s1 = cache.stats();
            assert_eq!(moved(&s0, &s1), CORRUPT_MISS, "{key}");
            assert_eq!(
                reason_count(&s1, reason),
                reason_count(&s0, reason) + 1,
                "{key}"
            );
            assert!(!path.exists(), "{key}");
        }
        cache.flush().await.unwrap();
        index_matches_disk(&cache, &root).unwrap();
    });
}

/// Eight stepped gets of different keys (64 KiB + 1 to 1 MiB) in one task with
/// `tokio::join!`: their steps interleave on one task; each answers exactly its value, eight
/// stepped hits.
#[test]
fn stepped_gets_joined_in_one_task() {
    ct().block_on(async {
        let cache = open().await;
        let lens = [
            STEP + 1,
            2 * STEP,
            2 * STEP + 1,
            3 * STEP - 1,
            5 * STEP,
            8 * STEP + 1,
            VALUE_MAX - 1,
            VALUE_MAX,
        ];
        let values: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| text(n, 90 + i as u64))
            .collect();
        // Each on the disk only (the hot tier holds one entry).
        for (i, v) in values.iter().enumerate() {
            park(&cache, &format!("join:{i}"), v).await;
        }
        let s0 = cache.stats();
        let c = &cache;
        let got = tokio::join!(
            c.get_bytes("join:0"),
            c.get_bytes("join:1"),
            c.get_bytes("join:2"),
            c.get_bytes("join:3"),
            c.get_bytes("join:4"),
            c.get_bytes("join:5"),
            c.get_bytes("join:6"),
            c.get_bytes("join:7"),
        );
        let got = [got.0, got.1, got.2, got.3, got.4, got.5, got.6, got.7];
        for (i, g) in got.into_iter().enumerate() {
            assert!(g.unwrap().as_deref() == Some(&values[i][..]), "join:{i}");
        }
        let m = moved(&s0, &cache.stats());
        assert_eq!(
            m,
            Moved {
                warm_hits: 8,
                inline_reads: 8,
                ..Moved::default()
            }
        );
        index_matches_disk(&cache, cache.root()).unwrap();
    });
}
