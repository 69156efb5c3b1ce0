//! The edges of the inline path's size limits: entry files of exactly `STEPPED_FILE_MAX`
//! (64 KiB: verified and inflated on the task) and one byte more (the blocking pool), values
//! of exactly `STEPPED_VALUE_MAX` (1 MiB: 16 steps, 15 yields) and one byte more (the pool),
//! and values of 64 KiB ± 1 written by the cache itself. Every read is exactly the value;
//! the path is asserted by `inline_reads` and the yields by polling the get by hand.

use answercache::warm::format::{deflate, encode};

use super::*;

/// A valid entry file of exactly `len` bytes holding `value`, under a key padded to make it
/// so: the key and the file.
fn file_of_len(tag: &str, value: &[u8], len: usize) -> (String, Vec<u8>) {
    let base = format!("{tag}:");
    let f0 = encode(base.as_bytes(), value, meta(now_ms() - 1000, 0), 3)
        .unwrap()
        .len();
    assert!(f0 <= len, "{tag}: {f0} bytes before padding");
    let key = format!("{base}{}", "p".repeat(len - f0));
    let file = encode(key.as_bytes(), value, meta(now_ms() - 1000, 0), 3).unwrap();
    assert_eq!(file.len(), len, "{tag}");
    (key, file)
}

/// `noise_len` bytes of noise, then zeros up to `len`.
fn padded_noise(noise_len: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut v = noise(noise_len, seed);
    v.resize(len, 0);
    v
}

async fn exact_file_sizes(tag: &str) {
    let cache = open().await;
    let root = cache.root().to_owned();
    let mut wrong = Vec::new();
    let values = [
        ("one step", padded_noise(63_000, 63_000, 1)),
        ("64 KiB + 1", padded_noise(63_000, STEP + 1, 2)),
        ("1 MiB", padded_noise(63_000, VALUE_MAX, 3)),
        ("1 MiB + 1", padded_noise(63_000, VALUE_MAX + 1, 4)),
    ];
    for (vname, value) in &values {
        for len in [FILE_MAX, FILE_MAX + 1] {
            let inline = len <= FILE_MAX && value.len() <= VALUE_MAX;
            // Valid.
            let (key, file) = file_of_len(&format!("{tag}:{vname}:{len}"), value, len);
            let path = v2_path(&root, key.as_bytes());
            plant(&path, &file);
            let before = cache.stats();
            let (got, yields) = get_counting_yields(&cache, &key).await;
            let m = moved(&before, &cache.stats());
            let want = if inline { STEPPED_HIT } else { POOL_HIT };
            if got.as_deref() != Some(&value[..])
                || m != want
                || (inline && yields != yields_for(value.len()))
                || !file_is(&root, &key, &file)
            {
                wrong.push(format!(
                    "{vname}, file {len}: got {:?} after {yields} yields, moved {m:?}",
                    got.map(|g| g.len())
                ));
            }
            // Planted after the scan, never indexed: removed so that the index equals the disk.
            cache.remove(&key).await.unwrap();
            evict_hot(&cache).await;
            // The same member declaring one byte less (a bomb at its last step), resealed:
            // the file keeps its length.
            let payload = deflate(value, 3).unwrap();
            let key_len = file.len() - 88 - payload.len();
            let bkey = format!("{tag}:{vname}:{len}:bomb:");
            let bkey = format!("{bkey}{}", "b".repeat(key_len - bkey.len()));
            let bomb = resealed(&bkey, value.len() as u64 - 1, &payload, now_ms());
            assert_eq!(bomb.len(), len, "{bkey}");
            let bpath = v2_path(&root, bkey.as_bytes());
            plant(&bpath, &bomb);
            let before = cache.stats();
            let got = cache.get_bytes(&bkey).await.unwrap();
            let after = cache.stats();
            let m = moved(&before, &after);
            if got.is_some()
                || m != CORRUPT_MISS
                || reason_count(&after, "bomb") != reason_count(&before, "bomb") + 1
                || bpath.exists()
            {
                wrong.push(format!(
                    "{vname}, file {len}, bomb: got {:?}, moved {m:?}, {:?}",
                    got.map(|g| g.len()),
                    after.corrupted_by_reason
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    cache.flush().await.unwrap();
    index_matches_disk(&cache, &root).unwrap();
}

#[test]
fn files_of_exactly_64k_and_one_byte_more_multi_thread() {
    mt(2).block_on(exact_file_sizes("mt"));
}

#[test]
fn files_of_exactly_64k_and_one_byte_more_current_thread() {
    ct().block_on(exact_file_sizes("ct"));
}

/// Values around the step and value limits, written by the cache itself (its writer
/// compresses them), pushed out of the hot tier, read back: text (a small file: the stepped
/// path, one yield per 64 KiB after the first) and noise of 64 KiB ± 1 (a file over 64 KiB:
/// the blocking pool).
#[test]
fn values_around_64k_and_1m_written_by_the_cache() {
    mt(2).block_on(async {
        let cache = open().await;
        let root = cache.root().to_owned();
        let mut wrong = Vec::new();
        let mut cases: Vec<(String, Vec<u8>, bool)> = Vec::new();
        for n in [
            STEP - 1,
            STEP,
            STEP + 1,
            2 * STEP - 1,
            2 * STEP,
            2 * STEP + 1,
            VALUE_MAX - 1,
            VALUE_MAX,
            VALUE_MAX + 1,
        ] {
            cases.push((format!("text {n}"), text(n, n as u64), n <= VALUE_MAX));
        }
        for n in [STEP - 1, STEP, STEP + 1] {
            cases.push((format!("noise {n}"), noise(n, n as u64), false));
        }
        for (key, value, inline) in &cases {
            park(&cache, key, value).await;
            let file = std::fs::read(v2_path(&root, key.as_bytes())).unwrap();
            assert_eq!(file.len() <= FILE_MAX, key.starts_with("text"), "{key}");
            let before = cache.stats();
            let (got, yields) = get_counting_yields(&cache, key).await;
            let m = moved(&before, &cache.stats());
            let want = if *inline { STEPPED_HIT } else { POOL_HIT };
            if got.as_deref() != Some(&value[..])
                || m != want
                || (*inline && yields != yields_for(value.len()))
            {
                wrong.push(format!(
                    "{key}: got {:?} after {yields} yields (want {}), moved {m:?}",
                    got.map(|g| g.len()),
                    yields_for(value.len())
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        let s = cache.stats();
        assert_eq!((s.corrupted, s.disk_errors), (0, 0));
        cache.flush().await.unwrap();
        index_matches_disk(&cache, &root).unwrap();
    });
}

/// Version-1 entry files (FORMAT.md: still read) around the step boundaries take the same
/// path as version 2: stepped hits of exactly their bytes with the exact yields; a v1 member
/// declaring one byte less is a bomb, counted once, quarantined.
#[test]
fn version_1_files_around_the_step_boundaries() {
    use answercache::warm::format::{assemble, FLAG_GZIP};
    ct().block_on(async {
        let cache = open().await;
        let root = cache.root().to_owned();
        let mut wrong = Vec::new();
        for n in [STEP, STEP + 1, 2 * STEP + 1, VALUE_MAX] {
            let key = format!("v1:{n}");
            let v = text(n, 200 + n as u64);
            let m = deflate(&v, 6).unwrap();
            let file = assemble(
                key.as_bytes(),
                n as u64,
                &m,
                meta(now_ms() - 1000, 0),
                1,
                FLAG_GZIP,
            );
            plant(&v2_path(&root, key.as_bytes()), &file);
            let s0 = cache.stats();
            let (got, yields) = get_counting_yields(&cache, &key).await;
            let mv = moved(&s0, &cache.stats());
            if got.as_deref() != Some(&v[..]) || mv != STEPPED_HIT || yields != yields_for(n) {
                wrong.push(format!(
                    "{key}: {:?} after {yields} yields, {mv:?}",
                    got.map(|g| g.len())
                ));
            }
            cache.remove(&key).await.unwrap();
            evict_hot(&cache).await;
            let bkey = format!("v1:{n}:bomb");
            let path = v2_path(&root, bkey.as_bytes());
            plant(
                &path,
                &assemble(
                    bkey.as_bytes(),
                    n as u64 - 1,
                    &m,
                    meta(now_ms() - 1000, 0),
                    1,
                    FLAG_GZIP,
                ),
            );
            let s0 = cache.stats();
            let got = cache.get_bytes(&bkey).await.unwrap();
            let s1 = cache.stats();
            if got.is_some()
                || moved(&s0, &s1) != CORRUPT_MISS
                || reason_count(&s1, "bomb") != reason_count(&s0, "bomb") + 1
                || path.exists()
            {
                wrong.push(format!(
                    "{bkey}: {:?}, {:?}",
                    got.map(|g| g.len()),
                    moved(&s0, &s1)
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        cache.flush().await.unwrap();
        index_matches_disk(&cache, &root).unwrap();
    });
}
