//! Promises 6 and 7 with hostile input: keys that are empty, huge, binary or path-like; values
//! of 0 bytes and exactly `max_entry_bytes`; planted files (another key's entry, truncated,
//! a directory, a FIFO, a symlink) at entry paths; many tasks hammering one key.

use std::sync::Arc;
use std::time::Duration;

use answercache::{Error, TieredCache};
use serde::{Deserialize, Serialize};

use crate::helpers::*;

fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (r.next_u64() & 0xff) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_and_boundary_values_round_trip_exactly() {
    let (dir, root, clock) = scenario();
    let max_entry = 256 << 10;
    let max_key = 4096;
    let b = builder(&root, &clock)
        .max_entry_bytes(max_entry)
        .max_key_bytes(max_key)
        .hot_capacity_entries(2); // reads go to the disk
    let cache = b.clone().build().await.unwrap();
    let mut keys: Vec<Vec<u8>> = vec![
        vec![],
        b"/".to_vec(),
        b"../../../../etc/passwd".to_vec(),
        b"\0".to_vec(),
        vec![0xff; 33],
        "ключ🔑".as_bytes().to_vec(),
        vec![b'a'; max_key],
        b"v1/ab/cd".to_vec(),
        b"fence".to_vec(),
        b"tmp".to_vec(),
    ];
    for i in 0..5u8 {
        keys.push((0..=255u8).map(|b| b ^ i).collect());
    }
    let values: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(i, _)| match i % 4 {
            0 => vec![],
            1 => incompressible(max_entry, i as u64), // exactly max_entry_bytes
            2 => vec![0u8; max_entry],                // compresses to almost nothing
            _ => incompressible(1 + i * 7, i as u64),
        })
        .collect();
    for (k, v) in keys.iter().zip(&values) {
        cache
            .set_bytes(k, v)
            .await
            .unwrap_or_else(|e| panic!("set {k:?}: {e}"));
    }
    // Over the limits: rejected, nothing changed.
    let too_long_key = vec![b'a'; max_key + 1];
    assert!(matches!(
        cache.set_bytes(&too_long_key, b"x").await,
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        cache.get_bytes(&too_long_key).await,
        Err(Error::KeyTooLarge { .. })
    ));
    let r = cache.set_bytes(&keys[1], vec![1u8; max_entry + 1]).await;
    assert!(matches!(r, Err(Error::ValueTooLarge { .. })), "{r:?}");
    cache.flush().await.unwrap();
    for (k, v) in keys.iter().zip(&values) {
        let got = cache.get_bytes(k).await.unwrap();
        assert!(
            got.as_deref() == Some(&v[..]),
            "promise 7: key {:?} ({} bytes) in process: got {:?} bytes, want {}",
            &k[..k.len().min(16)],
            k.len(),
            got.map(|g| g.len()),
            v.len()
        );
    }
    cache.close().await.unwrap();
    let c = b.clone().build().await.unwrap();
    for (k, v) in keys.iter().zip(&values) {
        let got = c.get_bytes(k).await.unwrap();
        assert!(
            got.as_deref() == Some(&v[..]),
            "promise 7: key {:?} after restart: got {:?} bytes, want {}",
            &k[..k.len().min(16)],
            got.map(|g| g.len()),
            v.len()
        );
    }
    // Nothing outside v2/, tmp/, quarantine/, fence, lock (FORMAT.md, section 1).
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    c.close().await.unwrap();
    for n in &names {
        assert!(
            ["v2", "tmp", "quarantine", "fence", "lock"].contains(&n.as_str()),
            "unexpected file in the root: {n} ({names:?})"
        );
    }
    assert!(!dir.path().join("etc").exists());
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Answer {
    text: String,
    tokens: u32,
    tools: Vec<(String, Option<f64>)>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Other {
    n: u64,
}

/// A typed value read back as another type: a decode miss, and the entry is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_is_a_decode_miss_and_changes_nothing() {
    let (_dir, root, clock) = scenario();
    let cache = builder(&root, &clock)
        .hot_capacity_entries(1)
        .build()
        .await
        .unwrap();
    let a = Answer {
        text: "Paris\u{0}\u{1F600}".into(),
        tokens: u32::MAX,
        tools: vec![
            ("search".into(), Some(f64::MIN_POSITIVE)),
            (String::new(), None),
        ],
    };
    cache.set("a", &a).await.unwrap();
    cache.set("evict", &1u8).await.unwrap();
    cache.flush().await.unwrap();
    let wrong: Result<Option<Vec<Other>>, _> = cache.get("a").await;
    assert!(matches!(wrong, Ok(None)), "{wrong:?}");
    assert_eq!(cache.stats().decode_misses, 1);
    let back: Option<Answer> = cache.get("a").await.unwrap();
    assert_eq!(back, Some(a.clone()));
    cache.close().await.unwrap();
    let c = fresh(&root, &clock).await;
    let back: Option<Answer> = c.get("a").await.unwrap();
    assert_eq!(back, Some(a));
    c.close().await.unwrap();
}

/// Files planted at entry paths: another key's valid entry, a truncated one, a directory, a
/// FIFO, a symlink to a valid entry, garbage. Each read is a miss (never another key's value,
/// never a hang on the FIFO), and a later set of the key works and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_files_are_never_served_and_never_hang() {
    let (_dir, root, clock) = scenario();
    {
        let c = builder(&root, &clock).build().await.unwrap();
        c.set_bytes("donor", b"the donor's value".to_vec())
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let donor = std::fs::read(entry_path(&root, "donor")).unwrap();
    let plant = |key: &str| {
        let p = entry_path(&root, key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    std::fs::write(plant("copy"), &donor).unwrap();
    std::fs::write(plant("truncated"), &donor[..donor.len() - 3]).unwrap();
    std::fs::write(plant("garbage"), incompressible(5000, 9)).unwrap();
    std::fs::write(plant("empty"), b"").unwrap();
    std::fs::create_dir_all(plant("dir")).unwrap();
    std::os::unix::fs::symlink(entry_path(&root, "donor"), plant("link")).unwrap();
    let fifo = plant("fifo");
    let made_fifo = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    for page_cache in [true, false] {
        let c = builder(&root, &clock)
            .page_cache_reads(page_cache)
            .build()
            .await
            .unwrap();
        for k in [
            "copy",
            "truncated",
            "garbage",
            "empty",
            "dir",
            "link",
            "fifo",
        ] {
            let got = tokio::time::timeout(Duration::from_secs(5), c.get_bytes(k))
                .await
                .unwrap_or_else(|_| panic!("promise 6: get of planted {k} hung"));
            assert!(
                matches!(got, Ok(None)),
                "promise 7: planted {k} served: {:?}",
                got.map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
            );
        }
        c.close().await.ok();
    }
    let c = builder(&root, &clock).build().await.unwrap();
    for k in [
        "copy",
        "truncated",
        "garbage",
        "empty",
        "dir",
        "link",
        "fifo",
    ] {
        if k == "fifo" && !made_fifo {
            continue;
        }
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.set_bytes(k, format!("new {k}").into_bytes()),
        )
        .await
        .expect("set hung");
        r.unwrap();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), c.close())
        .await
        .expect("close hung");
    let c = builder(&root, &clock).build().await.unwrap();
    for k in ["copy", "truncated", "garbage", "empty", "link"] {
        let got = c.get_bytes(k).await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(format!("new {k}").as_bytes()),
            "{k} after replanting"
        );
    }
    assert_eq!(
        c.get_bytes("donor").await.unwrap().as_deref(),
        Some(&b"the donor's value"[..]),
        "the symlink's target was changed through the link"
    );
    c.close().await.unwrap();
}

/// Many tasks set and get one key at once (sizes from 0 to 200 KB, tiny hot tier so reads go
/// to the queue and the disk): every value read is whole and was set for that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_hammered_by_many_tasks_is_never_torn() {
    let (_dir, root, clock) = scenario();
    let cache: TieredCache = builder(&root, &clock)
        .hot_capacity_bytes(64 << 10)
        .durability(answercache::Durability::NoSync)
        .build()
        .await
        .unwrap();
    let bad = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for t in 0..8u64 {
        let c = cache.clone();
        let bad = bad.clone();
        hs.push(tokio::spawn(async move {
            let mut r = Rng::new(t);
            for i in 0..60u64 {
                if r.chance(1.0 / 2.0) {
                    let len = [0, 100, 20_000, 200_000][r.below(4)];
                    c.set_bytes("hot-key", value_for(b"hot-key", t * 1000 + i, len))
                        .await
                        .unwrap();
                } else if let Some(v) = c.get_bytes("hot-key").await.unwrap() {
                    if v.is_empty() {
                        continue; // a 0-byte value is a value too (value_for of len 0 is its header)
                    }
                    if let Err(e) = check_value(b"hot-key", &v) {
                        bad.lock().unwrap().push(e);
                    }
                }
                if r.chance(1.0 / 10.0) {
                    c.remove("hot-key").await.unwrap();
                }
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    cache.close().await.unwrap();
    let v = bad.lock().unwrap().clone();
    assert!(v.is_empty(), "promise 7: torn or foreign values: {v:?}");
}
