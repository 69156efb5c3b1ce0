//! Expiry and the stepped path, on a manual clock: an entry expiring exactly at the get's
//! `now` is a miss (FORMAT.md step 17: `now_ms >= expires_ms`), deleted, counted as a warm
//! expiration, never inflated inline; one expiring a millisecond later is a stepped hit. A
//! get whose entry expires while it yields between its steps answers the value it verified
//! as live when it started (the same `now` as the blocking path), and from then on the key is
//! a miss and its file is deleted.

use std::task::Poll;

use answercache::Clock;

use super::*;

const T0: u64 = 1_900_000_000_000;

fn plant_expiring(root: &Path, key: &str, value: &[u8], expires_ms: u64) -> Vec<u8> {
    let file = entry_file(key.as_bytes(), value, T0 - 1000, expires_ms);
    assert!(file.len() <= FILE_MAX);
    plant(&v2_path(root, key.as_bytes()), &file);
    file
}

async fn expiry_rounds() {
    let cache = open_at(T0).await;
    let root = cache.root().to_owned();
    let v = text(2 * STEP + 1, 31);

    // Expires exactly now: a miss, the file deleted, nothing inflated.
    plant_expiring(&root, "exp:now", &v, T0);
    let s0 = cache.stats();
    let (got, _) = get_counting_yields(&cache, "exp:now").await;
    let m = moved(&s0, &cache.stats());
    assert_eq!(got, None);
    assert_eq!(
        m,
        Moved {
            misses: 1,
            warm_expirations: 1,
            ..Moved::default()
        }
    );
    assert!(!v2_path(&root, b"exp:now").exists());

    // Expires a millisecond from now: a stepped hit of exactly the value, two yields.
    let file = plant_expiring(&root, "exp:later", &v, T0 + 1);
    let s0 = cache.stats();
    let (got, yields) = get_counting_yields(&cache, "exp:later").await;
    assert!(got.as_deref() == Some(&v[..]));
    assert_eq!((moved(&s0, &cache.stats()), yields), (STEPPED_HIT, 2));
    assert!(file_is(&root, "exp:later", &file));
    // Planted after the scan: not in the index; removed so that the index equals the disk.
    cache.remove("exp:later").await.unwrap();
    evict_hot(&cache).await;

    // Expires while the get yields between its steps (the clock moved past it after the
    // first step, and again after the eighth).
    for (key, at) in [("exp:cross:1", 1u32), ("exp:cross:8", 8)] {
        let big = text(VALUE_MAX, u64::from(at));
        let start = cache.clock().now_ms();
        plant_expiring(&root, key, &big, start + 5);
        let s0 = cache.stats();
        let mut fut = Box::pin(cache.get_bytes(key));
        for _ in 0..at {
            assert!(poll_once(&mut fut).is_pending(), "{key}");
        }
        cache.advance(Duration::from_millis(10));
        let mut polls = 0;
        let got = loop {
            match poll_once(&mut fut) {
                Poll::Ready(r) => break r.unwrap(),
                Poll::Pending => polls += 1,
            }
        };
        drop(fut);
        assert!(
            got.as_deref() == Some(&big[..]),
            "{key}: {:?}",
            got.map(|g| g.len())
        );
        assert_eq!(at + polls, yields_for(VALUE_MAX), "{key}");
        assert_eq!(moved(&s0, &cache.stats()), STEPPED_HIT, "{key}");
        // From now on a miss, whichever tier holds it; the file is deleted.
        let s1 = cache.stats();
        assert_eq!(cache.get_bytes(key).await.unwrap(), None, "{key}");
        let m = moved(&s1, &cache.stats());
        assert_eq!(
            (
                m.misses,
                m.warm_hits,
                m.hot_hits,
                m.warm_expirations,
                m.corrupted
            ),
            (1, 0, 0, 1, 0),
            "{key}"
        );
        assert!(!v2_path(&root, key.as_bytes()).exists(), "{key}");
        assert_eq!(cache.get_bytes(key).await.unwrap(), None, "{key}");
    }

    // Dropped after the clock moved past its expiry mid-steps: nothing counted, the next get
    // a miss that deletes the file.
    let key = "exp:dropped";
    let start = cache.clock().now_ms();
    plant_expiring(&root, key, &v, start + 5);
    let s0 = cache.stats();
    let mut fut = Box::pin(cache.get_bytes(key));
    assert!(poll_once(&mut fut).is_pending());
    cache.advance(Duration::from_millis(10));
    drop(fut);
    assert_eq!(moved(&s0, &cache.stats()), Moved::default());
    assert_eq!(cache.get_bytes(key).await.unwrap(), None);
    assert_eq!(
        moved(&s0, &cache.stats()),
        Moved {
            misses: 1,
            warm_expirations: 1,
            ..Moved::default()
        }
    );
    assert!(!v2_path(&root, key.as_bytes()).exists());

    let s = cache.stats();
    assert_eq!((s.corrupted, s.disk_errors), (0, 0));
    cache.flush().await.unwrap();
    index_matches_disk(&cache, &root).unwrap();
}

#[test]
fn expiry_at_and_across_64k_steps_current_thread() {
    ct().block_on(expiry_rounds());
}

#[test]
fn expiry_at_and_across_64k_steps_multi_thread() {
    mt(2).block_on(expiry_rounds());
}
