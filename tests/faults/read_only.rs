//! Read-only disk, for real: the tmpfs under the cache is remounted read-only mid-workload
//! (every write then fails with a real EROFS) and later read-write again.
//!
//! Sequential variant, with exact counts: reads of entries already on disk keep working while
//! the breaker admits them (Closed, and the trial call of HalfOpen); writes degrade (three
//! failures open the breaker, the fourth in the window switches to memory-only); every `set`
//! still succeeds and is served from memory; once the mount is writable again the first probe
//! that starts afterwards restores Tiered mode and writes everything set meanwhile.
//! Concurrent variant: four tasks keep setting and reading their own keys through two
//! read-only/read-write cycles; every read returns exactly the last value its task set, and
//! after recovery all of them are on disk.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::{BreakerState, Mode, TieredCache};

use crate::support::*;

const RECOVERY: Duration = Duration::from_millis(200);
const STORED: u64 = 40;
/// One shard, so that the hot tier is one exact LRU the test can reason about.
const HOT_ENTRIES: usize = 12;

#[test]
fn remount_read_only_mid_workload() {
    if role().as_deref() == Some("read-only") {
        return child();
    }
    if !root_or_skip("read-only") {
        return;
    }
    run_child_in_temp_dir(
        &test_name(module_path!(), "remount_read_only_mid_workload"),
        "read-only",
        Wrap::Namespace,
    );
}

#[derive(Debug, Default)]
struct Figures {
    sets: u64,
    gets: u64,
    warm_hits_read_only: u64,
    erofs_errors: u64,
    remounts: u64,
    recovery_ms_max: u128,
}

fn child() {
    let dir = child_dir();
    let rt = runtime();
    let mut f = Figures::default();
    rt.block_on(sequential(&dir.join("seq"), &mut f));
    umount(&dir.join("seq"));
    rt.block_on(concurrent(&dir.join("conc"), &mut f));
    umount(&dir.join("conc"));
    reliability(
        "read-only",
        &[
            ("variants", &2),
            ("remounts", &f.remounts),
            ("sets", &f.sets),
            ("gets", &f.gets),
            ("warm_hits_while_read_only", &f.warm_hits_read_only),
            ("erofs_errors", &f.erofs_errors),
            ("wrong_values", &0),
            ("lost_entries", &0),
            ("leaked_files", &0),
            ("recovery_ms_max", &f.recovery_ms_max),
        ],
    );
}

fn key(p: &str, i: u64) -> String {
    format!("{p}{i}")
}

/// A write-through set; on the read-only disk it reports not persisted (still served).
async fn set(cache: &TieredCache, k: &str, seq: u64) {
    persisted(cache.set_bytes(k, value(k, 0, seq, 2048)).await);
}

/// The value of `k`, checked to be whole and `k`'s.
async fn get(cache: &TieredCache, k: &str) -> Option<u64> {
    let got = cache.get_bytes(k).await.unwrap()?;
    Some(check_value(k, &got).unwrap().1)
}

async fn wait_recovered(cache: &TieredCache, f: &mut Figures) {
    let probes_before = cache.stats().probes_run;
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || cache.mode() == Mode::Tiered).await,
        "never recovered"
    );
    f.recovery_ms_max = f.recovery_ms_max.max(start.elapsed().as_millis());
    let s = cache.stats();
    assert!(
        s.probes_run <= probes_before + 1,
        "{} probes failed after the remount",
        s.probes_run - probes_before
    );
}

async fn sequential(mnt: &Path, f: &mut Figures) {
    mount_tmpfs(mnt, "size=4m,mode=0700");
    let root = mnt.join("cache");
    let cache = builder(&root)
        .hot_capacity_entries(HOT_ENTRIES)
        .hot_shards(1)
        .failure_threshold(3)
        .memory_only_after(4)
        .error_window(Duration::from_secs(600))
        .open_timeout(Duration::from_millis(50))
        .max_open_timeout(Duration::from_millis(200))
        .recovery_interval(RECOVERY)
        .build()
        .await
        .unwrap();
    for i in 0..STORED {
        set(&cache, &key("k", i), i).await;
    }
    assert_eq!(cache.stats().writes_ok, STORED);

    remount(mnt, "ro");
    f.remounts += 1;
    let e = std::fs::write(mnt.join("x"), b"x").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(EROFS),
        "the mount is really read-only"
    );

    // Reads of entries on disk (not in the hot tier) keep working.
    for i in 0..10 {
        assert_eq!(get(&cache, &key("k", i)).await, Some(i));
    }
    let s = cache.stats();
    assert_eq!(s.warm_hits, 10);
    f.warm_hits_read_only += 10;

    // Writes degrade: three failures open the breaker.
    for i in 0..3 {
        set(&cache, &key("n", i), 1000 + i).await;
        assert_eq!(cache.stats().writes_failed, i + 1);
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    // While it is open, disk reads are not admitted: a miss, never a wrong value.
    let rejected = cache.stats().breaker_rejections;
    for i in 10..15 {
        assert_eq!(get(&cache, &key("k", i)).await, None);
    }
    assert_eq!(cache.stats().breaker_rejections, rejected + 5);
    // Half-open admits a trial call: a read, which works on a read-only disk and closes it.
    assert!(
        wait_until(Duration::from_secs(10), || cache.breaker_state()
            == BreakerState::HalfOpen)
        .await
    );
    assert_eq!(get(&cache, &key("k", 15)).await, Some(15));
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    f.warm_hits_read_only += 1;
    // The fourth write error in the window switches to memory-only.
    set(&cache, &key("n", 3), 1003).await;
    let s = cache.stats();
    assert_eq!(s.writes_failed, 4);
    assert_eq!(s.mode, Mode::MemoryOnly);
    assert_eq!(s.memory_only_entries, 1);
    let erofs = errors(&cache, "read-only");
    assert!(erofs >= 4, "{:?}", s.disk_errors_by_kind);
    f.erofs_errors += erofs;
    assert_eq!(s.disk_errors, erofs, "{:?}", s.disk_errors_by_kind);
    for i in 4..14 {
        set(&cache, &key("n", i), 1000 + i).await;
    }
    for i in 0..14 {
        assert_eq!(get(&cache, &key("n", i)).await, Some(1000 + i));
    }
    assert_eq!(cache.stats().lost_writes, 0);
    // Memory-only: no disk read at all, so entries only on disk are misses.
    assert_eq!(get(&cache, &key("k", 20)).await, None);
    assert_eq!(entry_temp_files(&root), 0);

    remount(mnt, "rw");
    f.remounts += 1;
    wait_recovered(&cache, f).await;
    cache.flush().await.unwrap();
    let written = STORED + 14;
    let s = cache.stats();
    assert_eq!(s.writes_ok, written, "{s:?}");
    assert_eq!((s.dirty_entries, s.lost_writes), (0, 0));
    assert_eq!(s.probes_ok, 1);
    f.sets += STORED + 14;
    f.gets += 10 + 5 + 1 + 14 + 1;
    cache.close().await.unwrap();
    assert_eq!(temp_files(&root), 0);
    let report = verify_report(&root);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.healthy, written);

    let reopened = builder(&root).build().await.unwrap();
    for i in 0..STORED {
        assert_eq!(get(&reopened, &key("k", i)).await, Some(i));
    }
    for i in 0..14 {
        assert_eq!(get(&reopened, &key("n", i)).await, Some(1000 + i));
    }
    f.gets += STORED + 14;
    reopened.close().await.unwrap();
}

const TASKS: u64 = 4;
const KEYS_PER_TASK: u64 = 20;

async fn concurrent(mnt: &Path, f: &mut Figures) {
    mount_tmpfs(mnt, "size=4m,mode=0700");
    let root = mnt.join("cache");
    let cache = builder(&root)
        .failure_threshold(3)
        .memory_only_after(6)
        .error_window(Duration::from_secs(600))
        .open_timeout(Duration::from_millis(50))
        .max_open_timeout(Duration::from_millis(200))
        .recovery_interval(RECOVERY)
        .health_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, stop) = (cache.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = vec![None; KEYS_PER_TASK as usize];
            let mut rng = Rng::new(t);
            let (mut sets, mut gets) = (0u64, 0u64);
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let i = rng.below(KEYS_PER_TASK as usize) as u64;
                let k = key(&format!("t{t}-"), i);
                if rng.chance(0.5) {
                    seq += 1;
                    set(&cache, &k, seq).await;
                    last[i as usize] = Some(seq);
                    sets += 1;
                } else {
                    assert_eq!(get(&cache, &k).await, last[i as usize], "{k}");
                    gets += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (last, sets, gets)
        }));
    }
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        remount(mnt, "ro");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            cache.stats().writes_failed > 0,
            "the remount hit the workload"
        );
        remount(mnt, "rw");
        f.remounts += 2;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for task in tasks {
        let (last, sets, gets) = task.await.unwrap();
        f.sets += sets;
        f.gets += gets;
        finals.push(last);
    }
    wait_recovered(&cache, f).await;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = cache.stats();
            s.dirty_entries == 0 && s.breaker_state == BreakerState::Closed
        })
        .await,
        "dirty entries never written back: {:?}",
        cache.stats()
    );
    cache.flush().await.unwrap();
    let s = cache.stats();
    assert_eq!(s.lost_writes, 0);
    f.erofs_errors += errors(&cache, "read-only");
    cache.close().await.unwrap();
    assert_eq!(
        answercache::testing::temp_files(&root),
        Vec::<String>::new(),
        "{s:?}"
    );
    let report = verify_report(&root);
    assert!(report.is_clean(), "{report:?}");

    let reopened = builder(&root).build().await.unwrap();
    for (t, last) in finals.iter().enumerate() {
        for (i, want) in last.iter().enumerate() {
            let k = key(&format!("t{t}-"), i as u64);
            assert_eq!(get(&reopened, &k).await, *want, "{k} after reopen");
        }
    }
    reopened.close().await.unwrap();
}
