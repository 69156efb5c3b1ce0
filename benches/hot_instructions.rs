//! Instructions per hot hit, counted by valgrind's cachegrind: `get_bytes` of answercache
//! against a raw `Mutex<lru::LruCache>` get (the hot bench's two contenders), on the hot bench's
//! keys and Zipf sequence. Unlike a timing, the count does not move with the machine's load, so
//! a change to the hit path can be judged on a shared machine; the timed ratio is still the hot
//! bench's (`benches/hot.rs`), since a cache miss or a locked instruction costs more than one.
//!
//! Each contender runs in a child process under `valgrind --tool=cachegrind`, once with no
//! gets and once with `ITERS`; the difference divided by `ITERS` is its cost per hit (the
//! setup cancels). The values' length does not enter the hit path (a hit clones an `Arc`), so
//! the values are 64-byte stand-ins; the key counts are the hot bench's for 1 KiB and 64 KiB
//! values (10,000 and 2,048 keys). Not timed: this binary does not use criterion. Without
//! `valgrind` on the `PATH` it says so and exits 0.
//!
//! Run: `cargo bench --bench hot_instructions` (about a minute).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::process::Command;
use std::sync::{Arc, Mutex};

use answercache::{Durability, TieredCache};

/// Gets counted per contender.
const ITERS: usize = 400_000;
/// The hot bench's sequence length.
const SEQ: usize = 1 << 16;
/// The value's stand-in length.
const VALUE_LEN: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let who = args[i + 1].as_str();
        let keys: usize = args[i + 2].parse().unwrap();
        let iters: usize = args[i + 3].parse().unwrap();
        return child(who, keys, iters);
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("hot_instructions: valgrind is not installed; nothing measured");
        return;
    }
    println!("| keys (hot bench size) | answercache | raw Mutex<LruCache> | ratio |");
    println!("|---|---|---|---|");
    for (keys, label) in [(10_000, "1 KiB"), (2_048, "64 KiB")] {
        let ours = per_hit("answercache", keys);
        let raw = per_hit("raw", keys);
        println!(
            "| {keys} ({label}) | {ours:.1} | {raw:.1} | {:.2}x |",
            ours / raw
        );
    }
}

/// Instructions per get of `who` with `keys` keys.
fn per_hit(who: &str, keys: usize) -> f64 {
    let none = instructions(who, keys, 0);
    let all = instructions(who, keys, ITERS);
    (all as f64 - none as f64) / ITERS as f64
}

/// The instructions cachegrind counted in one child run.
fn instructions(who: &str, keys: usize, iters: usize) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(exe)
        .args(["--child", who, &keys.to_string(), &iters.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("I") && l.contains("refs:"))
        .unwrap_or_else(|| panic!("no instruction count in: {err}"));
    line.rsplit(':')
        .next()
        .unwrap()
        .trim()
        .replace(',', "")
        .parse()
        .unwrap()
}

/// One contender's loop: fill `keys` keys, then `iters` gets along the Zipf sequence.
fn child(who: &str, n: usize, iters: usize) {
    let keys = workload::keys(n, 64 << 10);
    let seq = workload::zipf_sequence(n, SEQ, 7);
    let value: Arc<[u8]> = vec![7u8; VALUE_LEN].into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if who == "raw" {
        let raw = Mutex::new(lru::LruCache::new(NonZeroUsize::new(n).unwrap()));
        for k in &keys {
            raw.lock()
                .unwrap()
                .put(k.clone().into_boxed_slice(), value.clone());
        }
        rt.block_on(async {
            for i in 0..iters {
                let k: &[u8] = &keys[seq[i % SEQ]];
                black_box(raw.lock().unwrap().get(k).cloned());
            }
        });
        return;
    }
    let dir = workload::bench_dir("hot-instructions");
    rt.block_on(async {
        let cache = TieredCache::builder(dir.path())
            .min_free_bytes(0)
            .hot_capacity_bytes(1 << 30)
            .hot_capacity_entries(1 << 20)
            .durability(Durability::NoSync)
            .build()
            .await
            .unwrap();
        for k in &keys {
            cache.set_bytes(k.as_slice(), value.clone()).await.unwrap();
        }
        cache.flush().await.unwrap();
        for i in 0..iters {
            let k = &keys[seq[i % SEQ]];
            black_box(cache.get_bytes(k).await.unwrap());
        }
        let stats = cache.stats();
        assert_eq!(
            stats.warm_hits + stats.misses,
            0,
            "every get must be a hot hit"
        );
        cache.close().await.unwrap();
    });
}
