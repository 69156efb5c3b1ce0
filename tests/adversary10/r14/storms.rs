//! `set`/`remove` storms on multi-thread runtimes: the disk writer and the shared drain
//! encode concurrently through one cell per `set`. Whatever order the storm took, after
//! `flush` this replica, its disk (reopened) and the server agree on each key, and where
//! both hold a value they hold the same entry file (one encode, never a cell of another
//! `set`).

use std::sync::Arc;

use answercache::testing::{MemoryShared, TestDir};
use answercache::WritePolicy;

use super::*;

/// Value `i` of `key`: sizes that cross the stored rule (one allocation unit), the drain's
/// inline-encode bound (64 KiB) and compressible and incompressible content.
fn value(key: usize, i: usize) -> Vec<u8> {
    let tag = format!("key {key} value {i};");
    let mut v = match (key + i) % 4 {
        0 => tag.clone().into_bytes(),
        1 => tag.repeat(200).into_bytes(),
        2 => incompressible(70 << 10, (key * 1000 + i) as u64),
        _ => tag.repeat(5000).into_bytes(),
    };
    v.extend_from_slice(tag.as_bytes());
    v
}

/// What the server holds for `key`, decoded.
fn held_bytes(server: &MemoryShared, key: &[u8]) -> Option<Vec<u8>> {
    server.raw(&entry_key(key)).map(|r| {
        answercache::warm::format::decode(&r, key, &Default::default())
            .unwrap()
            .value
    })
}

async fn storm(policy: WritePolicy, rounds: usize) {
    const KEYS: usize = 4;
    const TASKS: usize = 3;
    let server = MemoryShared::new();
    let dir = TestDir::new();
    let a = Arc::new(open_on(&dir, &server, |c| c, |b| b.write_policy(policy)).await);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..rounds {
                    let key = (t + i) % KEYS;
                    let name = format!("k{key}");
                    // Every seventh operation of a task is a removal.
                    if (i + t) % 7 == 3 {
                        let _ = a.remove(&name).await.unwrap();
                    } else {
                        let _ = a.set_bytes(&name, &value(key, i * TASKS + t)[..]).await;
                    }
                    if i % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    a.flush().await.unwrap();
    let mut here = Vec::new();
    for k in 0..KEYS {
        let name = format!("k{k}");
        let local = a.get_bytes(&name).await.unwrap().map(|v| v.to_vec());
        let shared = held_bytes(&server, name.as_bytes());
        assert_eq!(local, shared, "{name}: this replica and the server");
        if let Some(v) = &local {
            let (on_disk, on_server) = (
                disk_file(&dir, name.as_bytes()).unwrap(),
                server.raw(&entry_key(name.as_bytes())).unwrap(),
            );
            if v.len() > 4096 {
                // Compressed by the disk: one file for both tiers (encode once).
                assert_eq!(
                    on_disk, on_server,
                    "{name}: the disk's file and the server's"
                );
            } else {
                // Stored uncompressed on disk, compressed for the server (r15 G4 / E3): the
                // same value in both files.
                let on_disk = answercache::warm::format::decode(
                    &on_disk,
                    name.as_bytes(),
                    &Default::default(),
                )
                .unwrap()
                .value;
                assert_eq!(&on_disk, v, "{name}: the disk's value");
            }
        }
        here.push(local);
    }
    let s = a.stats();
    assert_eq!(
        (s.shared_writes_failed, s.writes_failed, s.lost_writes),
        (0, 0, 0)
    );
    Arc::try_unwrap(a).unwrap().close().await.unwrap();
    // Reopened (and the server emptied): the disk holds the same answers.
    for k in 0..KEYS {
        server.delete(&entry_key(format!("k{k}").as_bytes()));
    }
    let b = open_plain(&dir, &server).await;
    for (k, want) in here.iter().enumerate() {
        let got = b
            .get_bytes(&format!("k{k}"))
            .await
            .unwrap()
            .map(|v| v.to_vec());
        assert_eq!(&got, want, "k{k} after the restart");
    }
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_storm_ends_with_the_same_answer_everywhere() {
    storm(WritePolicy::WriteBehind, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_storm_ends_with_the_same_answer_everywhere() {
    storm(WritePolicy::WriteThrough, 40).await;
}
