//! Warm hits from the page cache finish on the calling thread, without the blocking-pool hop
//! (`Stats::inline_reads`), and only those: a file not in the page cache, a file too large to
//! inflate on an async worker, a corrupt or expired file, and any fault-injecting `Fs` all take
//! the timed blocking path, with the same answers and the same quarantine as before.
//!
//! Needs the temporary directory on ext4, xfs or btrfs (as on CI): elsewhere the inline
//! path is off by design and the first assertion says so.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::FaultFs;

use answercache::workload::{markdown, Rng};

use crate::support::{open, OnDisk, TestCache};

const SMALL: usize = 20;

/// Drops the file's pages from the page cache (they are clean: the cache fsyncs by default).
/// `fadvise(DONTNEED)` is advisory, so it is repeated until `fincore` (util-linux) reports
/// no resident byte; the test fails, saying why, if the kernel keeps the page anyway.
fn evict_from_page_cache(path: &std::path::Path) {
    let f = std::fs::File::open(path).unwrap();
    for _ in 0..100 {
        rustix::fs::fadvise(f.as_fd(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
        if resident_bytes(path) == 0 {
            return;
        }
    }
    panic!("the kernel kept {} in the page cache", path.display());
}

/// Bytes of the file in the page cache, by `fincore`.
fn resident_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "fincore failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_cache_hits_finish_inline_and_everything_else_takes_the_timed_path() {
    let _no_mounts = crate::support::no_mounts_async().await;
    // A one-byte hot tier admits nothing: every get goes to the disk.
    let h = open(|b| b.hot_capacity_bytes(1)).await;
    let mut rng = Rng::new(7);
    let small: Vec<String> = (0..SMALL).map(|_| markdown(&mut rng, 4096)).collect();
    // 64 KiB of random bytes: the file stays over `STEPPED_FILE_MAX` (64 KiB) after gzip.
    let big = rng.bytes(64 * 1024);
    for (i, v) in small.iter().enumerate() {
        h.set(format!("small{i}"), v).await.unwrap();
    }
    h.set_bytes("big", &big).await.unwrap();
    h.set_with_ttl("short", "ten seconds", Duration::from_secs(10))
        .await
        .unwrap();
    h.flush().await.unwrap();

    for (i, v) in small.iter().enumerate() {
        assert_eq!(
            h.get::<String>(format!("small{i}")).await.unwrap().as_ref(),
            Some(v)
        );
    }
    let s = h.stats();
    assert_eq!(
        (s.warm_hits, s.inline_reads, s.inline_read_fallbacks),
        (SMALL as u64, SMALL as u64, 0),
        "every small page-cache hit inline (is the temp dir on ext4, xfs or btrfs?)"
    );

    // Too large to inflate inline: read inline, decoded on the blocking pool.
    assert_eq!(h.get_bytes("big").await.unwrap().as_deref(), Some(&big[..]));
    let s = h.stats();
    assert_eq!(
        (s.warm_hits, s.inline_reads, s.inline_read_fallbacks),
        (SMALL as u64 + 1, SMALL as u64, 0)
    );

    // Not in the page cache: the timed path reads it from the device. The startup scan reads
    // every file's header: once it has, nothing of this cache reads small0 behind the test's
    // back (a scan still running on a loaded runner put its page back after the eviction: a
    // clean-clone CI run saw the read inline).
    assert!(
        answercache::testing::wait_until(Duration::from_secs(30), || h.stats().warm_index_complete)
            .await,
        "startup scan"
    );
    // The values were written stored and are compressed in the background: a compaction of
    // small0 after the eviction would put a fresh file, cached, in its place (review r31, F3).
    assert!(
        answercache::testing::wait_until(Duration::from_secs(30), || {
            let s = h.stats();
            // One per small value (the big random one and the tiny one are not compacted);
            // the backlog does not count a compaction in flight.
            s.warm_compaction_backlog == 0 && s.warm_compactions == SMALL as u64
        })
        .await,
        "background compaction: {} done",
        h.stats().warm_compactions
    );
    let compactions = h.stats().warm_compactions;
    evict_from_page_cache(&h.entry_path("small0"));
    assert_eq!(
        h.get::<String>("small0").await.unwrap().as_ref(),
        Some(&small[0])
    );
    assert_eq!(
        h.stats().warm_compactions,
        compactions,
        "none after the eviction"
    );
    // The page cache could not answer without waiting: one fallback, counted apart.
    let s = h.stats();
    assert_eq!(
        (s.warm_hits, s.inline_reads, s.inline_read_fallbacks),
        (SMALL as u64 + 2, SMALL as u64, 1)
    );
    // Back in the page cache now: inline again.
    assert_eq!(
        h.get::<String>("small0").await.unwrap().as_ref(),
        Some(&small[0])
    );
    let s = h.stats();
    assert_eq!(
        (s.warm_hits, s.inline_reads, s.inline_read_fallbacks),
        (SMALL as u64 + 3, SMALL as u64 + 1, 1)
    );

    // A missing file is a miss (inline once the kernel remembers the name as missing).
    assert_eq!(h.get::<String>("never-set").await.unwrap(), None);
    // A name never looked up is not in the kernel's name cache: the first lookup falls back.
    assert_eq!(h.stats().inline_read_fallbacks, 2);

    // Corrupt: never served, quarantined by the blocking path with its reason.
    let path = h.entry_path("small1");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(h.get::<String>("small1").await.unwrap(), None);
    let s = h.stats();
    assert_eq!(s.corrupted_by_reason.get("checksum"), Some(&1));
    assert_eq!(s.quarantined_files, 1);
    assert!(!path.exists());

    // Expired: a miss, and the file is deleted by the blocking path.
    h.advance(Duration::from_secs(10));
    assert_eq!(h.get::<String>("short").await.unwrap(), None);
    assert!(!h.on_disk("short"));
    let s = h.stats();
    assert_eq!(s.warm_expirations, 1);
    assert_eq!(s.misses, 3);
    // A corrupt or expired file read from the page cache is no fallback: the blocking path
    // judges it.
    assert_eq!(
        (s.warm_hits, s.inline_reads, s.inline_read_fallbacks),
        (SMALL as u64 + 3, SMALL as u64 + 1, 2)
    );
}

/// Descriptors of this process open on files under `dir`.
/// Descriptors open on entry files (`v1/`) under `dir`; the directory lock's are not entries.
fn open_fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir.join("v2")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_read_inline_are_all_closed() {
    let _no_mounts = crate::support::no_mounts_async().await;
    let h = open(|b| b.hot_capacity_bytes(1)).await;
    for i in 0..50 {
        h.set(format!("k{i}"), &i).await.unwrap();
    }
    h.flush().await.unwrap();
    for round in 0..4 {
        for i in 0..50 {
            assert_eq!(
                h.get::<i32>(format!("k{i}")).await.unwrap(),
                Some(i),
                "{round}"
            );
        }
    }
    let s = h.stats();
    // A read the page cache could not answer without waiting went to the blocking pool
    // (counted apart): none while no test of this binary mounts.
    assert_eq!((s.inline_reads, s.inline_read_fallbacks), (200, 0));
    // The closer thread closes them within a few hundred microseconds; allow 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open_fds_under(h.root()) > 0 {
        assert!(std::time::Instant::now() < deadline, "descriptors leaked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes `n` integers, flushes, reads each back from the disk (the hot tier admits nothing);
/// returns (warm hits, inline reads).
async fn round_trip_through_the_disk(h: &TestCache, n: i32) -> (u64, u64) {
    for i in 0..n {
        h.set(format!("k{i}"), &i).await.unwrap();
    }
    h.flush().await.unwrap();
    for i in 0..n {
        assert_eq!(h.get::<i32>(format!("k{i}")).await.unwrap(), Some(i));
    }
    let s = h.stats();
    (s.warm_hits, s.inline_reads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_cache_reads_can_be_turned_off() {
    let h = open(|b| b.hot_capacity_bytes(1).page_cache_reads(false)).await;
    assert_eq!(round_trip_through_the_disk(&h, 10).await, (10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injecting_fs_always_takes_the_timed_path() {
    let fs = Arc::new(FaultFs::std());
    let h = open(|b| b.hot_capacity_bytes(1).fs(fs)).await;
    assert_eq!(round_trip_through_the_disk(&h, 10).await, (10, 0));
}
