//! The warm tier's in-memory index at 1,000,000 entries (one per file on disk): the cost of
//! each operation the store makes under the index lock, per operation.
//!
//! - `put_new`: a write of a key the index does not know (grows it by one);
//! - `touch`: a read or rewrite of a known key (`put` of an existing entry: moved to the most
//!   recent end, its length and expiry replaced);
//! - `pop_victim`: an eviction's choice (the least recently used entry, taken out);
//! - `remove`: a removal of a known key (a `remove`, an expired or corrupted file).
//!
//! Each sample runs its operations in batches of [`BATCH`] on an index of 1,000,000 entries
//! and puts it back untimed after each batch (the new keys removed, the taken ones put back),
//! so every batch sees 1,000,000 entries. Keys are blake3 hashes (as the store's); the
//! order they are touched in is a uniform draw from a seeded generator. The index is reached
//! through `answercache::testing::WarmIndexProbe` (hidden; the index is crate-private).
//!
//! Run: `cargo bench --bench index -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use answercache::testing::WarmIndexProbe;
use answercache::warm::layout::{key_hash, KeyHash};
use answercache::workload::Rng;
use criterion::{criterion_group, criterion_main, Criterion};

/// Entries in the index.
const N: usize = 1_000_000;
/// Operations timed between two untimed restorations of the index.
const BATCH: usize = 1024;
/// Keys `put_new` takes in turn (each batch new ones, so that their places in the index are
/// not still in the CPU's caches from the batch before).
const FRESH: usize = 256 * BATCH;
/// Unix ms the expiries are drawn around.
const NOW: u64 = 1_750_000_000_000;

/// A known entry's file length and expiry, drawn from `rng` (200 B to 256 KiB, log-uniform;
/// a third never expire).
fn draw(rng: &mut Rng) -> (u64, u64) {
    let (lo, hi) = (200f64.ln(), (256.0 * 1024.0f64).ln());
    let len = (lo + rng.unit() * (hi - lo)).exp() as u64;
    let exp = if rng.chance(1.0 / 3.0) {
        0
    } else {
        NOW + rng.range(60_000, 7 * 24 * 3_600_000) as u64
    };
    (len, exp)
}

struct Fixture {
    ix: WarmIndexProbe,
    /// The hashes of the entries in the index.
    known: Vec<KeyHash>,
    /// Hashes the index never holds between batches ([`FRESH`]), used in turn.
    fresh: Vec<KeyHash>,
    /// Where the next batch of `put_new` starts in `fresh`.
    cursor: usize,
    /// The batch's operands (hash, length, expiry), drawn untimed.
    picks: Vec<(KeyHash, u64, u64)>,
    rng: Rng,
}

fn fixture() -> Fixture {
    let mut rng = Rng::new(0x1de5_bec4);
    let known: Vec<KeyHash> = (0..N as u64).map(|i| key_hash(&i.to_le_bytes())).collect();
    let fresh: Vec<KeyHash> = (0..FRESH as u64)
        .map(|i| key_hash(&(u64::MAX - i).to_le_bytes()))
        .collect();
    let mut ix = WarmIndexProbe::new();
    for h in &known {
        let (len, exp) = draw(&mut rng);
        ix.put(*h, len, exp);
    }
    assert_eq!(ix.len(), N);
    Fixture {
        ix,
        known,
        fresh,
        cursor: 0,
        picks: Vec::with_capacity(BATCH),
        rng,
    }
}

/// Runs `iters` operations in batches of at most [`BATCH`]: `prepare` (untimed), `timed`,
/// then `restore` (untimed), each given the batch's size.
fn batched(
    f: &mut Fixture,
    iters: u64,
    mut prepare: impl FnMut(&mut Fixture, usize),
    mut timed: impl FnMut(&mut Fixture, usize),
    mut restore: impl FnMut(&mut Fixture, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(BATCH);
        prepare(f, n);
        let t = Instant::now();
        timed(f, n);
        total += t.elapsed();
        restore(f, n);
        left -= n;
    }
    total
}

fn bench_index(c: &mut Criterion) {
    let mut f = fixture();
    let mut group = c.benchmark_group("warm_index_1M");

    group.bench_function("put_new", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut f,
                iters,
                |f, n| {
                    f.picks.clear();
                    for _ in 0..n {
                        let h = f.fresh[f.cursor];
                        f.cursor = (f.cursor + 1) % FRESH;
                        let (len, exp) = draw(&mut f.rng);
                        f.picks.push((h, len, exp));
                    }
                },
                |f, _| {
                    for &(h, len, exp) in &f.picks {
                        f.ix.put(black_box(h), len, exp);
                    }
                },
                |f, _| {
                    for (h, _, _) in &f.picks {
                        f.ix.remove(h);
                    }
                },
            )
        })
    });

    group.bench_function("touch", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut f,
                iters,
                |f, n| {
                    f.picks.clear();
                    for _ in 0..n {
                        let h = f.known[f.rng.below(N)];
                        let (len, exp) = draw(&mut f.rng);
                        f.picks.push((h, len, exp));
                    }
                },
                |f, _| {
                    for &(h, len, exp) in &f.picks {
                        f.ix.put(black_box(h), len, exp);
                    }
                },
                |_, _| {},
            )
        })
    });

    group.bench_function("pop_victim", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut f,
                iters,
                |f, _| f.picks.clear(),
                |f, n| {
                    for _ in 0..n {
                        let h = black_box(f.ix.pop_victim()).unwrap();
                        f.picks.push((h, 0, 0));
                    }
                },
                |f, _| {
                    for i in 0..f.picks.len() {
                        let (len, exp) = draw(&mut f.rng);
                        f.ix.put(f.picks[i].0, len, exp);
                    }
                },
            )
        })
    });

    group.bench_function("remove", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut f,
                iters,
                |f, n| {
                    // Distinct keys per batch (a second `remove` of one would find nothing):
                    // `n` evenly spaced ones from a random start, at a random spacing.
                    f.picks.clear();
                    let start = f.rng.below(N);
                    let step = 1 + f.rng.below(N / BATCH - 1);
                    for i in 0..n {
                        let (len, exp) = draw(&mut f.rng);
                        f.picks.push((f.known[(start + i * step) % N], len, exp));
                    }
                },
                |f, _| {
                    for (h, _, _) in &f.picks {
                        black_box(f.ix.remove(h));
                    }
                },
                |f, _| {
                    for &(h, len, exp) in &f.picks {
                        f.ix.put(h, len, exp);
                    }
                },
            )
        })
    });

    group.finish();
    assert_eq!(f.ix.len(), N);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_index
}
criterion_main!(benches);
