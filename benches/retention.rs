//! Retention after a burst: insert N entries as fast as the API accepts them, close (which
//! drains pending writes), reopen the same directory, and count how many entries come back.
//! answercache (write-behind, default durability: fsync) against a foyer hybrid cache (a
//! 256-entry memory tier in front of its block engine, once per write policy), whose
//! flusher drops entries when its submit queue is full. Printed, not timed by criterion.
//!
//! `ANSWERCACHE_BENCH_RETENTION_N` sets N (default 10,000 entries of 4 KiB chat JSON).
//!
//! Run: `cargo bench --bench retention`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::path::Path;
use std::time::{Duration, Instant};

use answercache::TieredCache;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy,
};
use workload::Kind;

const SIZE: usize = 4 << 10;

struct Outcome {
    insert: Duration,
    close: Duration,
    retained: usize,
}

async fn answercache_burst(
    dir: &Path,
    keys: &[Vec<u8>],
    values: &[std::sync::Arc<[u8]>],
) -> Outcome {
    let cache = TieredCache::builder(dir)
        .min_free_bytes(0)
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    for (k, v) in keys.iter().zip(values) {
        cache.set_bytes(k, v).await.unwrap();
    }
    let insert = start.elapsed();
    let start = Instant::now();
    cache.close().await.unwrap();
    let close = start.elapsed();
    // Reopen with a hot tier that admits nothing, so every hit comes from the disk.
    let cache = TieredCache::builder(dir)
        .min_free_bytes(0)
        .hot_capacity_bytes(1)
        .build()
        .await
        .unwrap();
    let mut retained = 0;
    for (k, v) in keys.iter().zip(values) {
        if cache.get_bytes(k).await.unwrap().as_deref() == Some(&v[..]) {
            retained += 1;
        }
    }
    cache.close().await.unwrap();
    Outcome {
        insert,
        close,
        retained,
    }
}

async fn open_foyer(dir: &Path, policy: HybridCachePolicy) -> HybridCache<Vec<u8>, Vec<u8>> {
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(1 << 30)
        .build()
        .unwrap();
    HybridCacheBuilder::new()
        .with_policy(policy)
        .memory(256)
        .storage()
        .with_engine_config(BlockEngineConfig::new(device))
        .build()
        .await
        .unwrap()
}

async fn foyer_burst(
    dir: &Path,
    policy: HybridCachePolicy,
    keys: &[Vec<u8>],
    values: &[std::sync::Arc<[u8]>],
) -> Outcome {
    let owned: Vec<(Vec<u8>, Vec<u8>)> = keys
        .iter()
        .zip(values)
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect();
    let hybrid = open_foyer(dir, policy).await;
    let start = Instant::now();
    for (k, v) in owned {
        hybrid.insert(k, v);
    }
    let insert = start.elapsed();
    let start = Instant::now();
    hybrid.close().await.unwrap();
    let close = start.elapsed();
    drop(hybrid);
    let hybrid = open_foyer(dir, policy).await;
    let mut retained = 0;
    for (k, v) in keys.iter().zip(values) {
        if let Ok(Some(e)) = hybrid.get(k).await {
            if e.value()[..] == v[..] {
                retained += 1;
            }
        }
    }
    hybrid.close().await.unwrap();
    Outcome {
        insert,
        close,
        retained,
    }
}

fn main() {
    let n: usize = std::env::var("ANSWERCACHE_BENCH_RETENTION_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rt = workload::runtime();
    let keys = workload::keys(n, 90);
    let values = workload::values(Kind::ChatJson, SIZE, n, 10);
    println!(
        "retention: {n} entries of {} chat JSON, inserted as fast as the API accepts; {}",
        workload::size_label(SIZE),
        workload::machine()
    );
    println!();
    println!("| cache | inserted | retained after close + reopen | lost | insert time | close (drain) time |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, o: Outcome| {
        println!(
            "| {name} | {n} | {} ({:.1}%) | {} | {:.2?} | {:.2?} |",
            o.retained,
            100.0 * o.retained as f64 / n as f64,
            n - o.retained,
            o.insert,
            o.close
        );
    };
    let dir = workload::bench_dir("retention");
    row(
        "answercache (write-behind, fsync)",
        rt.block_on(answercache_burst(dir.path(), &keys, &values)),
    );
    for (policy, name) in [
        (
            HybridCachePolicy::WriteOnEviction,
            "foyer (WriteOnEviction, default)",
        ),
        (
            HybridCachePolicy::WriteOnInsertion,
            "foyer (WriteOnInsertion)",
        ),
    ] {
        let dir = workload::bench_dir("retention-foyer");
        row(
            name,
            rt.block_on(foyer_burst(dir.path(), policy, &keys, &values)),
        );
    }
}
