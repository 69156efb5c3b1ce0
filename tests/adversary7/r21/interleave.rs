//! A get polled by hand so that it stops exactly between two 64 KiB steps (poll k returns
//! `Pending` right after step k), then a `set`, `remove` or `clear` of the key, acknowledged
//! and flushed (the writer renames and indexes the new state), or a drop of the get.
//!
//! The get that was stopped answers the old value or the new state, nothing else (never torn,
//! never another length); the index equals the disk right after it finishes (before any
//! re-read could repair it: P1 in ../stepped/FINDINGS.md); the next gets answer exactly the
//! new state, from memory and from the disk. A dropped get counts nothing, leaves the file
//! and the index as they were, and the next get reads exactly the value.

use std::task::Poll;

use answercache::TieredCache;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    Remove,
    Clear,
    Drop,
}

async fn finish<F>(fut: &mut F) -> answercache::Result<Option<Arc<[u8]>>>
where
    F: std::future::Future<Output = answercache::Result<Option<Arc<[u8]>>>> + Unpin,
{
    loop {
        match poll_once(fut) {
            Poll::Ready(r) => return r,
            Poll::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// One round: `key` = `old` on disk only, a get stopped after `k` steps, `op`, the rest.
async fn round(
    cache: &TieredCache,
    root: &Path,
    key: &str,
    old: &[u8],
    new: &[u8],
    op: Op,
    k: u32,
) -> Result<(), String> {
    let ctx = format!("{key} {op:?} after step {k}");
    park(cache, key, old).await;
    let path = v2_path(root, key.as_bytes());
    let old_file = std::fs::read(&path).unwrap();
    assert!(old_file.len() <= FILE_MAX, "{ctx}: not a stepped file");
    let s0 = cache.stats();
    let mut fut = Box::pin(cache.get_bytes(key));
    for i in 0..k {
        if poll_once(&mut fut).is_ready() {
            return Err(format!("{ctx}: ready at poll {}", i + 1));
        }
    }
    let s1 = cache.stats();
    if moved(&s0, &s1) != Moved::default() {
        return Err(format!(
            "{ctx}: counted before its last step: {:?}",
            moved(&s0, &s1)
        ));
    }
    let new_state: Option<&[u8]> = match op {
        Op::Set => {
            cache.set_bytes(key, new).await.unwrap();
            Some(new)
        }
        Op::Remove => {
            cache.remove(key).await.unwrap();
            None
        }
        Op::Clear => {
            cache.clear().await.unwrap();
            None
        }
        Op::Drop => {
            drop(fut);
            let s2 = cache.stats();
            if moved(&s0, &s2) != Moved::default()
                || (s2.warm_entries, s2.warm_bytes) != (s0.warm_entries, s0.warm_bytes)
                || !file_is(root, key, &old_file)
            {
                return Err(format!(
                    "{ctx}: the drop changed something: {:?}, index {} / {} -> {} / {}",
                    moved(&s0, &s2),
                    s0.warm_entries,
                    s0.warm_bytes,
                    s2.warm_entries,
                    s2.warm_bytes
                ));
            }
            let (got, yields) = get_counting_yields(cache, key).await;
            let s3 = cache.stats();
            if got.as_deref() != Some(old)
                || moved(&s2, &s3) != STEPPED_HIT
                || yields != yields_for(old.len())
            {
                return Err(format!(
                    "{ctx}: after the drop got {:?} after {yields} yields, moved {:?}",
                    got.map(|g| g.len()),
                    moved(&s2, &s3)
                ));
            }
            cache.flush().await.unwrap();
            return index_matches_disk(cache, root).map_err(|e| format!("{ctx}: {e}"));
        }
    };
    cache.flush().await.unwrap();
    match op {
        Op::Set => {
            if file_is(root, key, &old_file) {
                return Err(format!(
                    "{ctx}: the old file is still there after the flush"
                ));
            }
        }
        _ => {
            if path.exists() {
                return Err(format!("{ctx}: a file is still there after the flush"));
            }
        }
    }
    let got = finish(&mut fut).await.unwrap();
    drop(fut);
    if got.as_deref() != Some(old) && got.as_deref() != new_state {
        return Err(format!(
            "{ctx}: the racing get answered {:?} bytes",
            got.map(|g| g.len())
        ));
    }
    // Before anything reads the key again.
    index_matches_disk(cache, root).map_err(|e| format!("{ctx}: right after the get: {e}"))?;
    for i in 0..3 {
        let got = cache.get_bytes(key).await.unwrap();
        if got.as_deref() != new_state {
            return Err(format!(
                "{ctx}: get {i} after the ack answered {:?} bytes",
                got.map(|g| g.len())
            ));
        }
    }
    evict_hot(cache).await;
    let got = cache.get_bytes(key).await.unwrap();
    if got.as_deref() != new_state {
        return Err(format!(
            "{ctx}: from the disk: {:?} bytes",
            got.map(|g| g.len())
        ));
    }
    cache.flush().await.unwrap();
    index_matches_disk(cache, root).map_err(|e| format!("{ctx}: at the end: {e}"))
}

async fn rounds(tag: &str) {
    let cache = open().await;
    let root = cache.root().to_owned();
    let mut wrong = Vec::new();
    let olds = [
        ("128k+1", text(2 * STEP + 1, 11), vec![1, 2]),
        ("1m", text(VALUE_MAX, 12), vec![1, 8, 15]),
    ];
    let news = [("noise", noise(20_000, 13)), ("text", text(STEP + 1, 14))];
    let mut n = 0;
    for (oname, old, ks) in &olds {
        for (nname, new) in &news {
            for op in [Op::Set, Op::Remove, Op::Clear, Op::Drop] {
                if op != Op::Set && *nname != "noise" {
                    continue;
                }
                for &k in ks {
                    n += 1;
                    let key = format!("{tag}:{oname}:{nname}:{op:?}:{k}");
                    if let Err(e) = round(&cache, &root, &key, old, new, op, k).await {
                        wrong.push(e);
                    }
                }
            }
        }
    }
    assert!(n >= 20);
    assert!(wrong.is_empty(), "{wrong:#?}");
    let s = cache.stats();
    assert_eq!(
        (s.corrupted, s.disk_errors),
        (0, 0),
        "{:?} {:?}",
        s.corrupted_by_reason,
        s.disk_errors_by_kind
    );
}

#[test]
fn writes_between_two_64k_steps_current_thread() {
    ct().block_on(rounds("ct"));
}

#[test]
fn writes_between_two_64k_steps_multi_thread() {
    mt(2).block_on(rounds("mt"));
}

/// A hostile member whose fault shows only at its second step (declared one byte short of
/// 128 KiB + 1: a bomb by one byte), stopped after its first step while a valid newer value
/// is set and flushed: the get's re-read on the blocking pool reads the path *then*, so it
/// answers exactly the newer value; the hostile file, replaced before anything judged it on
/// the pool, is neither counted nor quarantined (it is gone: never served). Then the same
/// member alone: a miss, counted once as a bomb, quarantined.
#[test]
fn a_hostile_member_replaced_between_its_steps() {
    ct().block_on(async {
        let cache = open().await;
        let root = cache.root().to_owned();
        let v = text(2 * STEP + 1, 21);
        let payload = answercache::warm::format::deflate(&v, 6).unwrap();
        let new = noise(20_000, 22);
        for (key, replaced) in [("hostile:replaced", true), ("hostile:alone", false)] {
            let path = v2_path(&root, key.as_bytes());
            plant(
                &path,
                &resealed(key, v.len() as u64 - 1, &payload, now_ms()),
            );
            let s0 = cache.stats();
            let mut fut = Box::pin(cache.get_bytes(key));
            assert!(poll_once(&mut fut).is_pending(), "{key}");
            if replaced {
                cache.set_bytes(key, &new).await.unwrap();
                cache.flush().await.unwrap();
                // Out of the hot tier: the re-read must find it on the disk.
                evict_hot(&cache).await;
            }
            let got = finish(&mut fut).await.unwrap();
            drop(fut);
            let s1 = cache.stats();
            let m = moved(&s0, &s1);
            if replaced {
                assert!(
                    got.as_deref() == Some(&new[..]),
                    "{key}: {:?}",
                    got.map(|g| g.len())
                );
                assert_eq!(m, POOL_HIT, "{key}");
                assert_eq!(s1.corrupted_by_reason.get("bomb"), None, "{key}");
            } else {
                assert_eq!(got, None, "{key}");
                assert_eq!(m, CORRUPT_MISS, "{key}");
                assert_eq!(reason_count(&s1, "bomb"), 1, "{key}");
                assert!(!path.exists(), "{key}");
            }
        }
        cache.flush().await.unwrap();
        index_matches_disk(&cache, &root).unwrap();
    });
}
