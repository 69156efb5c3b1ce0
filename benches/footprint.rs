//! Disk footprint: bytes on disk per entry against the raw value size, per value kind and
//! size, for answercache (gzip level 3, the default) and cacache (uncompressed, plus its index).
//! Printed as a markdown table, not timed: this binary does not use criterion.
//!
//! "apparent" is the sum of file lengths; "allocated" is what the filesystem charges
//! (`st_blocks * 512`, 4 KiB granularity on ext4). answercache's fan-out directories (`v2/ab/`,
//! at most 256) are counted separately: with few entries each entry may still get a directory
//! of its own, so the per-entry share printed here is the worst case; with the 256 directories
//! in use it tends to ~80 bytes of directory per entry (one name each).
//!
//! Run: `cargo bench --bench footprint`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use answercache::{Durability, TieredCache, WritePolicy};
use workload::Kind;

/// Entries written per kind and size.
const M: usize = 200;

#[derive(Default, Debug, Clone, Copy)]
struct Usage {
    files: u64,
    apparent: u64,
    allocated: u64,
    dirs: u64,
    dir_allocated: u64,
}

fn walk(path: &Path, u: &mut Usage) {
    for e in std::fs::read_dir(path).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            u.dirs += 1;
            u.dir_allocated += m.blocks() * 512;
            walk(&e.path(), u);
        } else if m.is_file() {
            u.files += 1;
            u.apparent += m.len();
            u.allocated += m.blocks() * 512;
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let rt = workload::runtime();
    println!("footprint: {} entries per row; {}", M, workload::machine());
    println!();
    println!("| kind | value size | answercache apparent/entry | gzip ratio | answercache allocated/entry | answercache dirs/entry (bytes) | cacache apparent/entry | cacache allocated/entry |");
    println!("|---|---|---|---|---|---|---|---|");
    for kind in Kind::ALL {
        for &size in &workload::SIZES {
            let keys = workload::keys(M, 80 + size as u64);
            let values = workload::values(kind, size, M, 9);
            let dir = workload::bench_dir("footprint");
            let stats = rt.block_on(async {
                let cache = TieredCache::builder(dir.path())
                    .min_free_bytes(0)
                    .write_policy(WritePolicy::WriteThrough)
                    .durability(Durability::NoSync)
                    .build()
                    .await
                    .unwrap();
                workload::fill(&cache, &keys, &values).await;
                let s = cache.stats();
                cache.close().await.unwrap();
                s
            });
            let mut ours = Usage::default();
            walk(&dir.path().join("v2"), &mut ours);
            assert_eq!(ours.files, M as u64);

            let cdir = workload::bench_dir("footprint-cacache");
            rt.block_on(async {
                for (k, v) in keys.iter().zip(&values) {
                    let k = std::str::from_utf8(k).unwrap();
                    cacache::write(cdir.path(), k, &v[..]).await.unwrap();
                }
            });
            let mut theirs = Usage::default();
            walk(cdir.path(), &mut theirs);

            let per = |x: u64| x as f64 / M as f64;
            println!(
                "| {} | {} | {:.0} B ({:.2}x raw) | {:.2}x | {:.0} B ({:.2}x raw) | {:.0} B | {:.0} B ({:.2}x raw) | {:.0} B ({:.2}x raw) |",
                kind.label(),
                workload::size_label(size),
                per(ours.apparent),
                per(ours.apparent) / size as f64,
                stats.compression_ratio,
                per(ours.allocated),
                per(ours.allocated) / size as f64,
                per(ours.dir_allocated),
                per(theirs.apparent),
                per(theirs.apparent) / size as f64,
                per(theirs.allocated + theirs.dir_allocated),
                per(theirs.allocated + theirs.dir_allocated) / size as f64,
            );
        }
    }
}
