//! Adversarial tests (r28) of the fixes r27 brought to "durable first, compact later"
//! (`COMPACT_R27_FINDINGS.md`): `close` and a compaction that outlives its wait, the
//! free-space floor under concurrent writers and compactions on a real tmpfs (the F1 fix's
//! `COMPACT_MIN_FREE_BYTES` headroom).
//!
//! Counts and values are exact; time only bounds how long a test waits for "eventually".
//! Findings carry their id (R28-Fn) in their docs; all are fixed and run (see `COMPACT_R28_FINDINGS.md`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule};
use answercache::workload::{markdown, Rng};
use answercache::{BreakerState, Durability, WritePolicy};

use crate::closer::{is_child, run_child, sh};
use crate::support::{self, OnDisk};

/// The directory `closer::run_child` hands its child.
const CHILD_DIR_ENV: &str = "ANSWERCACHE_CLOSER_DIR";

const WAIT: Duration = Duration::from_secs(10);

fn text(seed: u64, len: usize) -> Vec<u8> {
    markdown(&mut Rng::new(seed), len).into_bytes()
}

// ---------------------------------------------------------------------------------------
// R28-F2: a compaction that outlives `close`'s wait (io_timeout) and then fails puts its
// entry back into the backlog `close` emptied, and its write is never counted.
// ---------------------------------------------------------------------------------------

/// A write-through set of a 70 KB value (written stored, queued); its compaction's temp write
/// hangs (a stalled mount), `close` gives up on it after `io_timeout` (300 ms) and returns;
/// the mount then answers, and the compaction's rename fails (EIO). Promised (F4/F5 fixes):
/// after `close` the backlog is empty and every entry written is counted once in the write
/// counters (stored, when it stays stored). Observed: the failed compaction puts its entry
/// back (`push_front`) after `close_backlog` ran: `warm_compaction_backlog` 1 after close,
/// and the write is counted nowhere (`bytes_written_*` 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_failing_after_close_leaves_no_backlog_and_counts_its_write() {
    let mut cache = support::dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .durability(Durability::NoSync)
                .hot_capacity_bytes(1)
                .io_timeout(Duration::from_millis(300))
        })
        .await;
    let v = text(28, 70_000);
    cache.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::WriteNew])
            .path_contains("tmp")
            .skip(1)
            .times(1),
    );
    cache.set_bytes("late", &v).await.unwrap();
    let stored = support::entry_path(cache.dir_root(), "late");
    let stored = std::fs::metadata(stored).unwrap().len();
    assert_eq!(cache.stats().warm_compaction_backlog, 1);
    assert!(wait_until(WAIT, || cache.fs().faults_injected() == 1).await);
    assert_eq!(
        cache.stats().warm_compaction_backlog,
        0,
        "taken off the queue"
    );
    cache.close().await.unwrap();
    let at_close = cache.stats();
    println!(
        "at close: backlog {}, bytes_written {} / {}",
        at_close.warm_compaction_backlog,
        at_close.bytes_written_uncompressed,
        at_close.bytes_written_compressed
    );
    cache.fs().add_rule(
        Rule::new(Fault::Errno(5))
            .ops(&[FsOp::Rename])
            .path_contains("tmp")
            .times(1),
    );
    cache.fs().release_hangs();
    assert!(wait_until(WAIT, || cache.fs().faults_injected() == 2).await);
    // The failed compaction cleans up its temp file and, at once, gives its entry back.
    assert!(wait_until(WAIT, || cache.temp_names().is_empty()).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = cache.stats();
    println!(
        "after the late failure: backlog {}, bytes_written {} / {}, compactions {}",
        s.warm_compaction_backlog,
        s.bytes_written_uncompressed,
        s.bytes_written_compressed,
        s.warm_compactions
    );
    assert_eq!(s.warm_compactions, 0);
    assert_eq!(s.warm_compaction_backlog, 0, "an entry queued after close");
    assert_eq!(
        (s.bytes_written_uncompressed, s.bytes_written_compressed),
        (v.len() as u64, stored),
        "the write is counted once, stored"
    );
    cache.fs().clear_rules();
    cache.reopen_after_close().await;
    assert_eq!(
        cache.get_bytes("late").await.unwrap().as_deref(),
        Some(&v[..])
    );
    cache.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Guard: the free-space floor on a real tmpfs with concurrent writers and compactions.
// ---------------------------------------------------------------------------------------

const FLOOR_ROLE_ON: &str = "r28-floor-on";
const FLOOR_ROLE_OFF: &str = "r28-floor-off";
const FLOOR: u64 = 8 << 20;
const FLOOR_TASKS: u64 = 4;
const FLOOR_VALUES: u64 = 70;
const FLOOR_VALUE: usize = 1 << 20;

fn floor_value(task: u64, i: u64) -> Vec<u8> {
    text(1000 * task + i, FLOOR_VALUE)
}

/// In a namespaced child: a 128 MiB tmpfs, `min_free_bytes` 8 MiB, a warm budget far over
/// the volume (the floor is what binds), background compression `background`. Four tasks
/// each set 70 values of 1 MiB of markdown (about 340 KB each compressed: 280 of them take
/// about 95 MiB, which the 120 MiB above the floor hold) while the compactor works; a
/// sampler reads the volume's free space every millisecond. The floor is never crossed (no
/// sample under 8 MiB free, none at the end), the breaker stays closed, no temp file is left,
/// every set succeeds (each value fits compressed), and after a restart every value is served
/// exactly.
fn floor_child(background: bool) {
    let base = PathBuf::from(std::env::var_os(CHILD_DIR_ENV).unwrap());
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    sh(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=128m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = support::dir_in(tempfile::TempDir::new_in(&mnt).unwrap())
            .open_cache(|b| {
                b.write_policy(WritePolicy::WriteThrough)
                    .durability(Durability::NoSync)
                    .min_free_bytes(FLOOR)
                    .warm_capacity_bytes(1 << 30)
                    .hot_capacity_bytes(1)
                    .compress_in_background(background)
                    .failure_threshold(1000)
                    .memory_only_after(1000)
            })
            .await;
        let least = Arc::new(AtomicU64::new(u64::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (least, done, mnt) = (least.clone(), done.clone(), mnt.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    least.fetch_min(crate::settle::free_bytes(&mnt), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let cache = Arc::new(cache);
        let writers: Vec<_> = (0..FLOOR_TASKS)
            .map(|t| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for i in 0..FLOOR_VALUES {
                        if cache
                            .set_bytes(&format!("t{t}-{i}"), &floor_value(t, i))
                            .await
                            .is_ok()
                        {
                            ok.push((t, i));
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut ok = Vec::new();
        for w in writers {
            ok.extend(w.await.unwrap());
        }
        assert!(wait_until(WAIT, || cache.stats().warm_compaction_backlog == 0).await);
        done.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let s = cache.stats();
        let least = least.load(Ordering::Relaxed);
        println!(
            "background {background}: ok {} of {}, least free {least}, free now {}, compactions {}, breaker {:?}, \
             disk errors {:?}",
            ok.len(),
            FLOOR_TASKS * FLOOR_VALUES,
            crate::settle::free_bytes(&mnt),
            s.warm_compactions,
            cache.breaker_state(),
            s.disk_errors_by_kind
        );
        assert!(least >= FLOOR, "free space went to {least}, under the floor");
        assert_eq!(ok.len(), (FLOOR_TASKS * FLOOR_VALUES) as usize, "sets refused");
        assert!(crate::settle::free_bytes(&mnt) >= FLOOR);
        assert_eq!(cache.breaker_state(), BreakerState::Closed);
        assert!(cache.temp_names().is_empty());
        let mut cache = Arc::try_unwrap(cache).ok().unwrap();
        cache.close().await.ok();
        cache.reopen_after_close().await;
        for (t, i) in &ok {
            assert_eq!(
                cache
                    .get_bytes(&format!("t{t}-{i}"))
                    .await
                    .unwrap()
                    .as_deref(),
                Some(&floor_value(*t, *i)[..]),
                "t{t}-{i}"
            );
        }
        cache.close().await.ok();
        drop(cache);
    });
}

/// Guard: background compression off (every file compressed before its write).
#[test]
fn the_floor_holds_and_every_value_fits_with_background_compression_off() {
    if is_child(FLOOR_ROLE_OFF) {
        return floor_child(false);
    }
    if is_child(FLOOR_ROLE_ON) {
        return;
    }
    run_child(
        "compact_r28::the_floor_holds_and_every_value_fits_with_background_compression_off",
        FLOOR_ROLE_OFF,
        true,
    );
}

/// R28-F3: the same with background compression on (the default). The entries written
/// stored while 64 MiB above the floor were free (`COMPACT_MIN_FREE_BYTES`) stay stored: the
/// writes that follow take that headroom, and every compaction then finds `NoRoom` (it asks
/// the same 64 MiB). About 55 MiB of stored files that compressed take about a third hold
/// the volume, and the last sets are refused at the floor. Observed: 239 of 280 sets `Ok`,
/// 41 refused (41 no-space disk errors), 0 compactions; with the setting off all 280 fit.
#[test]
fn the_floor_holds_and_every_value_fits_with_background_compression_on() {
    if is_child(FLOOR_ROLE_ON) {
        return floor_child(true);
    }
    if is_child(FLOOR_ROLE_OFF) {
        return;
    }
    run_child(
        "compact_r28::the_floor_holds_and_every_value_fits_with_background_compression_on",
        FLOOR_ROLE_ON,
        true,
    );
}

// ---------------------------------------------------------------------------------------
// R28-F4: an entry write that outlives `close` (its disk call timed out) lands stored and
// queues itself into the backlog `close` emptied: never compacted, never counted.
// ---------------------------------------------------------------------------------------

/// A write-through set of a 70 KB value whose temp write takes 1.5 s (`FaultFs` delay, a slow
/// disk) with `io_timeout` 300 ms: the set gives up, `close` returns, then the write lands.
/// Returns the stats once it landed, the value length and the entry file's length.
async fn a_write_landing_after_close(background: bool) -> (answercache::Stats, u64, u64) {
    let mut cache = support::dir()
        .fault_fs()
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .durability(Durability::NoSync)
                .hot_capacity_bytes(1)
                .compress_in_background(background)
                .io_timeout(Duration::from_millis(300))
                .failure_threshold(100)
        })
        .await;
    let v = text(29, 70_000);
    cache.fs().add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(1500)))
            .ops(&[FsOp::WriteNew])
            .path_contains("tmp")
            .times(1),
    );
    let set = cache.set_bytes("slow", &v).await;
    let closed = cache.close().await;
    println!("background {background}: set {set:?}, close {closed:?}");
    let path = support::entry_path(cache.dir_root(), "slow");
    assert!(wait_until(WAIT, || path.exists() && cache.temp_names().is_empty()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let len = std::fs::metadata(&path).unwrap().len();
    let s = cache.stats();
    println!(
        "background {background}: landed {len} bytes; backlog {}, bytes_written {} / {}, \
         compactions {}",
        s.warm_compaction_backlog,
        s.bytes_written_uncompressed,
        s.bytes_written_compressed,
        s.warm_compactions
    );
    cache.fs().clear_rules();
    cache.reopen_after_close().await;
    assert_eq!(
        cache.get_bytes("slow").await.unwrap().as_deref(),
        Some(&v[..])
    );
    cache.close().await.unwrap();
    (s, v.len() as u64, len)
}

/// Guard: with background compression off, the write that lands after close is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_landing_after_close_is_counted_with_background_compression_off() {
    let (s, value, len) = a_write_landing_after_close(false).await;
    assert_eq!(s.warm_compaction_backlog, 0);
    assert_eq!(
        (s.bytes_written_uncompressed, s.bytes_written_compressed),
        (value, len)
    );
}

/// R28-F4: with background compression on, the late write is written stored and queued into
/// the backlog `close_backlog` already emptied (the compactor has stopped): the backlog gauge
/// says 1 after close, and the write is never counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_landing_after_close_is_counted_with_background_compression_on() {
    let (s, value, len) = a_write_landing_after_close(true).await;
    assert_eq!(s.warm_compaction_backlog, 0);
    assert_eq!(
        (s.bytes_written_uncompressed, s.bytes_written_compressed),
        (value, len)
    );
}

// ---------------------------------------------------------------------------------------
// Guard: a model of sets, removes and racing reads while compactions run.
// ---------------------------------------------------------------------------------------

const MODEL_TASKS: u64 = 3;
const MODEL_KEYS: u64 = 3;
const MODEL_OPS: u64 = 100;

/// The value of version `ver` of key `k` of task `t`: its name first, then 5-60 KB of text.
fn model_value(t: u64, k: u64, ver: u64) -> Vec<u8> {
    let seed = t * 1_000_000 + k * 1_000 + ver;
    let mut v = format!("t{t}k{k}v{ver}:").into_bytes();
    v.extend(text(seed, 5_000 + (seed * 7_919 % 55_000) as usize));
    v
}

/// Three tasks own three keys each and set (write-through) or remove them at random, checking
/// each key reads back exactly as their last operation left it; two reader tasks read every
/// key meanwhile (warm reads: hot tier of one byte), and each value they get must be exactly
/// one that was set for that key (its version is its prefix). Compactions run whenever the
/// writes pause. Then: every write counted once (`bytes_written_uncompressed` = the bytes
/// set), nothing waiting, one entry file per live key and no other, the index charge equals
/// the bytes on disk, and after a restart every key is what the model says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_removes_and_racing_reads_keep_disk_index_and_values_exact() {
    let mut cache = support::open(|b| {
        b.write_policy(WritePolicy::WriteThrough)
            .durability(Durability::NoSync)
            .hot_capacity_bytes(1)
    })
    .await;
    let shared = Arc::new((*cache).clone());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (c, done) = (shared.clone(), done.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(500 + r);
                let mut hits = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let (t, k) = (rng.next_u64() % MODEL_TASKS, rng.next_u64() % MODEL_KEYS);
                    if let Some(v) = c.get_bytes(format!("t{t}k{k}")).await.unwrap() {
                        let head = String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned();
                        let ver: u64 = head
                            .split_once(':')
                            .and_then(|(h, _)| h.rsplit_once('v'))
                            .and_then(|(_, n)| n.parse().ok())
                            .unwrap_or_else(|| panic!("not a value of t{t}k{k}: {head}"));
                        assert!(
                            v[..] == model_value(t, k, ver)[..],
                            "wrong bytes for t{t}k{k}v{ver}"
                        );
                        hits += 1;
                    }
                    tokio::task::yield_now().await;
                }
                hits
            })
        })
        .collect();
    let writers: Vec<_> = (0..MODEL_TASKS)
        .map(|t| {
            let c = shared.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(t + 1);
                let mut model: Vec<Option<u64>> = vec![None; MODEL_KEYS as usize];
                let mut set_bytes = 0u64;
                for ver in 0..MODEL_OPS {
                    let k = rng.next_u64() % MODEL_KEYS;
                    let key = format!("t{t}k{k}");
                    if rng.next_u64().is_multiple_of(4) {
                        c.remove(key.as_str()).await.unwrap();
                        model[k as usize] = None;
                    } else {
                        let v = model_value(t, k, ver);
                        c.set_bytes(key.as_str(), &v).await.unwrap();
                        set_bytes += v.len() as u64;
                        model[k as usize] = Some(ver);
                    }
                    let want = model[k as usize].map(|ver| model_value(t, k, ver));
                    assert!(
                        c.get_bytes(key.as_str()).await.unwrap().as_deref() == want.as_deref(),
                        "{key} after op {ver}"
                    );
                    if rng.next_u64().is_multiple_of(2) {
                        // A pause: the compactor's idle window when the others pause too.
                        tokio::time::sleep(Duration::from_millis(120)).await;
                    }
                }
                (model, set_bytes)
            })
        })
        .collect();
    let mut models = Vec::new();
    let mut set_bytes = 0;
    for w in writers {
        let (m, b) = w.await.unwrap();
        models.push(m);
        set_bytes += b;
    }
    done.store(true, Ordering::Relaxed);
    let mut hits = 0;
    for r in readers {
        hits += r.await.unwrap();
    }
    assert!(
        wait_until(WAIT, || {
            let s = cache.stats();
            s.warm_compaction_backlog == 0 && s.bytes_written_uncompressed == set_bytes
        })
        .await,
        "every write counted once: {} of {set_bytes}",
        cache.stats().bytes_written_uncompressed
    );
    let live: Vec<(u64, u64, u64)> = models
        .iter()
        .enumerate()
        .flat_map(|(t, m)| {
            m.iter()
                .enumerate()
                .filter_map(move |(k, v)| v.map(|ver| (t as u64, k as u64, ver)))
        })
        .collect();
    let s = cache.stats();
    println!(
        "reader hits {hits}, live {}, compactions {}, warm {} entries {} bytes, on disk {} files \
         {} bytes",
        live.len(),
        s.warm_compactions,
        s.warm_entries,
        s.warm_bytes,
        cache.entry_names().len(),
        cache.entry_bytes_on_disk()
    );
    assert_eq!(cache.entry_names().len(), live.len());
    assert_eq!(s.warm_entries, live.len() as u64);
    assert_eq!(s.warm_bytes, cache.entry_bytes_on_disk());
    assert!(cache.temp_names().is_empty());
    drop(shared);
    cache.reopen().await;
    for (t, m) in models.iter().enumerate() {
        for (k, v) in m.iter().enumerate() {
            let want = v.map(|ver| model_value(t as u64, k as u64, ver));
            assert!(
                cache
                    .get_bytes(format!("t{t}k{k}"))
                    .await
                    .unwrap()
                    .as_deref()
                    == want.as_deref(),
                "t{t}k{k} after the restart"
            );
        }
    }
    cache.close().await.unwrap();
}
