//! Setup that fails loudly (DESIGN.md, Public API; issue 13): `build()` returns
//! `Error::Config` for what no retry can fix and never panics; device trouble at start (a
//! read-only or full volume, a failing disk) degrades instead, as it would at run time, and
//! the cache recovers like one that met the trouble at run time. `min_free_bytes` on small
//! volumes: real tmpfs mounts in a private mount namespace (see `mounts`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule};
use answercache::{Error, Mode, TieredCache};

use crate::mounts::{self, child_dir, is_child, mount_tmpfs, remount, run_in_namespace, space};
use crate::support::*;

fn kind(r: &answercache::Result<TieredCache>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(Error::Config(_)) => "Config".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// Every root that can never be a directory is `Error::Config`, and building touches nothing
/// outside it (a dangling symlink's target is not created).
#[tokio::test]
async fn roots_that_can_never_be_directories_are_config_errors() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    std::fs::write(p.join("file"), b"x").unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(p.join("fifo"))
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink(p.join("file"), p.join("to-file")).unwrap();
    std::os::unix::fs::symlink(p.join("nowhere/target"), p.join("dangling")).unwrap();
    std::os::unix::fs::symlink(p.join("loop"), p.join("loop")).unwrap();
    let cases: Vec<(&str, PathBuf)> = vec![
        ("regular file", p.join("file")),
        ("below a regular file", p.join("file/cache")),
        ("two levels below a file", p.join("file/a/b")),
        ("fifo", p.join("fifo")),
        ("symlink to a file", p.join("to-file")),
        ("below a symlink to a file", p.join("to-file/cache")),
        ("dangling symlink", p.join("dangling")),
        ("below a dangling symlink", p.join("dangling/cache")),
        ("symlink loop", p.join("loop")),
        ("empty path", PathBuf::new()),
        (
            "cannot be created (procfs)",
            PathBuf::from("/proc/answercache-adv6/cache"),
        ),
        (
            "cannot be created (sysfs)",
            PathBuf::from("/sys/answercache-adv6"),
        ),
    ];
    let mut got = Vec::new();
    for (what, root) in &cases {
        let r = TieredCache::builder(root).build().await;
        got.push((*what, kind(&r)));
        if let Ok(c) = r {
            c.close().await.ok();
        }
    }
    let want: Vec<(&str, String)> = cases.iter().map(|(w, _)| (*w, "Config".into())).collect();
    assert_eq!(got, want);
    assert!(
        !p.join("nowhere").exists(),
        "a dangling symlink's target was created"
    );
    assert_eq!(std::fs::read(p.join("file")).unwrap(), b"x");
}

/// A root given through a symlink to a directory, with `..` and a trailing slash, or relative
/// to the working directory, is used by its canonical path.
#[tokio::test]
async fn roots_given_through_symlinks_and_relative_paths_are_canonical() {
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, t.path().join("link")).unwrap();
    let canonical = std::fs::canonicalize(&real).unwrap();
    for given in [
        t.path().join("link"),
        t.path().join("real/../link/"),
        t.path().join("link/./"),
    ] {
        let cache = answercache::testing::builder(&given).build().await.unwrap();
        assert_eq!(cache.root(), canonical, "{given:?}");
        cache.set_bytes("k", b"v".to_vec()).await.unwrap();
        cache.close().await.unwrap();
        assert!(v2_path(&canonical, b"k").exists());
    }
    // Relative to the working directory (the package root under cargo test).
    let rel = PathBuf::from(format!("target/adv6-relative-{}", std::process::id()));
    let cache = answercache::testing::builder(&rel).build().await.unwrap();
    assert_eq!(cache.root(), std::fs::canonicalize(&rel).unwrap());
    assert!(cache.root().is_absolute());
    cache.close().await.unwrap();
    std::fs::remove_dir_all(&rel).unwrap();
}

/// A runtime without timers: `Error::Config`, no panic, on both runtime flavours; the same
/// builder then builds on a runtime with timers.
#[test]
fn a_runtime_without_timers_is_a_config_error() {
    let t = tempfile::tempdir().unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()
        .unwrap();
    let b = answercache::testing::builder(t.path());
    let got = [
        kind(&current.block_on(b.clone().build())),
        kind(&multi.block_on(b.clone().build())),
        // From a task of the multi-thread runtime (another thread than block_on's).
        kind(&multi.block_on(multi.spawn(b.clone().build())).unwrap()),
    ];
    assert_eq!(got, ["Config", "Config", "Config"]);
    let ok = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    ok.block_on(async {
        let c = b.build().await.unwrap();
        c.close().await.unwrap();
    });
}

/// Out-of-range settings are `Error::Config` naming the setter, and a refused build creates
/// no directory.
#[tokio::test]
async fn out_of_range_settings_fail_before_touching_the_disk() {
    use answercache::Builder;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("never-created");
    type Edit = fn(Builder) -> Builder;
    let cases: Vec<(&str, Edit)> = vec![
        ("hot_capacity_entries", |b| b.hot_capacity_entries(0)),
        ("hot_shards", |b| b.hot_shards(0)),
        ("hot_shards", |b| b.hot_shards(1025)),
        ("default_ttl", |b| b.default_ttl(Duration::from_micros(999))),
        ("max_entry_bytes", |b| b.max_entry_bytes(0)),
        ("max_key_bytes", |b| b.max_key_bytes(0)),
        ("io_timeout", |b| b.io_timeout(Duration::ZERO)),
        ("io_timeout", |b| b.io_timeout(Duration::MAX)),
        ("failure_threshold", |b| b.failure_threshold(0)),
        ("open_timeout", |b| b.open_timeout(Duration::MAX)),
        ("half_open_max", |b| b.half_open_max(0)),
        ("memory_only_after", |b| b.memory_only_after(0)),
        ("error_window", |b| b.error_window(Duration::ZERO)),
        ("recovery_interval", |b| b.recovery_interval(Duration::ZERO)),
        ("health_interval", |b| {
            b.health_interval(Duration::from_nanos(1))
        }),
        ("sweep_interval", |b| b.sweep_interval(Duration::ZERO)),
        ("write_queue_bytes", |b| b.write_queue_bytes(0)),
        ("write_concurrency", |b| b.write_concurrency(0)),
        ("compression_level", |b| b.compression_level(10)),
    ];
    let mut got = Vec::new();
    for (setter, edit) in &cases {
        let r = edit(TieredCache::builder(&root)).build().await;
        let named = match &r {
            Err(Error::Config(m)) => m.starts_with(setter),
            _ => false,
        };
        got.push((*setter, kind(&r), named));
    }
    let want: Vec<_> = cases
        .iter()
        .map(|(s, _)| (*s, "Config".to_owned(), true))
        .collect();
    assert_eq!(got, want);
    assert!(!root.exists());
}

/// The extremes the builder documents as valid work: `Duration::MAX` as "never" for the
/// error window (every error stays counted: memory-only after the third), TTLs at and just
/// under `u64::MAX` ms (never expire), 1,024 shards for one hot entry.
#[tokio::test]
async fn documented_extremes_work() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.error_window(Duration::MAX)
                .memory_only_after(3)
                .failure_threshold(1000)
                .recovery_interval(Duration::MAX)
                .health_interval(Duration::MAX)
                .sweep_interval(Duration::MAX)
                .hot_shards(1024)
                .hot_capacity_entries(1)
        })
        .await;
    for ttl in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_millis(u64::MAX - 1),
        Duration::from_millis(u64::MAX / 2),
    ] {
        let key = format!("ttl:{ttl:?}");
        cache
            .set_bytes_with_ttl(&key, b"forever".to_vec(), ttl)
            .await
            .unwrap();
        cache.flush().await.unwrap();
        assert_eq!(
            cache.get_bytes(&key).await.unwrap().as_deref(),
            Some(&b"forever"[..]),
            "{ttl:?}"
        );
    }
    cache.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    let mut alive = 0;
    for ttl in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_millis(u64::MAX - 1),
        Duration::from_millis(u64::MAX / 2),
    ] {
        alive += u32::from(
            cache
                .get_bytes(format!("ttl:{ttl:?}"))
                .await
                .unwrap()
                .is_some(),
        );
    }
    assert_eq!(alive, 4);
    cache
        .fs()
        .add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::ReadFile]));
    for i in 0..3 {
        assert_eq!(cache.get_bytes(format!("absent:{i}")).await.unwrap(), None);
    }
    assert_eq!(cache.mode(), Mode::MemoryOnly);
    cache.fs().clear_rules();
    let _ = cache.close().await;
}

/// The disk fails once while `open` prepares the directory (creating `v2/`: EIO), then is
/// healthy. "Device trouble at start degrades, as at run time": the cache must end up as one
/// that met the error at run time. It never opens the directory lock (`<root>/lock`, FORMAT.md
/// "The directory lock"), which orders judged removals against other processes' renames, for
/// the rest of its life.
#[tokio::test]
async fn a_disk_error_at_open_does_not_leave_the_cache_without_its_directory_lock() {
    let d = dir().fault_fs();
    d.fs().add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::CreateDirAll])
            .times(1),
    );
    let cache = d
        .open_cache(|b| b.failure_threshold(1000).memory_only_after(1000))
        .await;
    let root = cache.root().to_owned();
    for i in 0..10u32 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    cache.flush().await.unwrap();
    assert_eq!(v2_files(&root).len(), 10);
    assert_eq!(
        (
            root.join("lock").is_file(),
            root.join("quarantine").is_dir()
        ),
        (true, true)
    );
    cache.close().await.unwrap();
}

fn resilient(b: answercache::Builder) -> answercache::Builder {
    b.failure_threshold(1)
        .memory_only_after(1)
        .open_timeout(Duration::from_millis(20))
        .max_open_timeout(Duration::from_millis(50))
        .recovery_interval(Duration::from_millis(50))
        .health_interval(Duration::from_millis(50))
}

/// Waits (5 s at most: the probes run every 50 ms) for the cache to be tiered and flushed.
async fn recovered(cache: &TieredCache) -> bool {
    wait_until(Duration::from_secs(5), || cache.mode() == Mode::Tiered).await
        && cache.flush().await.is_ok()
}

/// A root on a read-only volume: `build()` succeeds (device trouble, not configuration),
/// the cache serves from memory, and once the volume is writable again it recovers and
/// writes what it holds, whether the root existed at open or not.
#[test]
fn a_read_only_volume_at_open_degrades_then_recovers() {
    const ROLE: &str = "read-only-at-open";
    if !is_child(ROLE) {
        run_in_namespace(
            "setup::a_read_only_volume_at_open_degrades_then_recovers",
            ROLE,
        );
        return;
    }
    let mnt = child_dir().join("vol");
    mount_tmpfs(&mnt, "size=8m,mode=0700");
    std::fs::create_dir(mnt.join("existing")).unwrap();
    remount(&mnt, "ro");
    let rt = mounts::runtime();
    rt.block_on(async {
        let mut caches = Vec::new();
        for name in ["existing", "missing"] {
            let r = answercache::testing::builder(mnt.join(name))
                .build_with(resilient)
                .await;
            assert_eq!(kind(&r), "Ok", "{name}");
            let c = r.unwrap();
            c.set_bytes("k", b"served from memory".to_vec())
                .await
                .unwrap();
            assert_eq!(
                c.get_bytes("k").await.unwrap().as_deref(),
                Some(&b"served from memory"[..])
            );
            assert!(matches!(c.flush().await, Err(Error::NotPersisted { .. })));
            caches.push((name, c));
        }
        remount(&mnt, "rw");
        let mut got = Vec::new();
        for (name, c) in &caches {
            let ok = recovered(c).await;
            let on_disk = v2_path(&mnt.join(name), b"k").exists();
            let s = c.stats();
            eprintln!(
                "{name}: mode {:?}, probes {}/{}, last error {:?}",
                s.mode, s.probes_ok, s.probes_run, s.last_disk_error
            );
            got.push((*name, ok, on_disk));
        }
        assert_eq!(
            got,
            vec![("existing", true, true), ("missing", true, true)],
            "(root, recovered and flushed, entry on disk)"
        );
        for (_, c) in caches {
            let _ = c.close().await;
        }
    });
}

/// A full volume at open: `build()` succeeds, values are served from memory, and once space
/// is freed the cache recovers and writes them.
#[test]
fn a_full_volume_at_open_degrades_then_recovers() {
    const ROLE: &str = "full-at-open";
    if !is_child(ROLE) {
        run_in_namespace("setup::a_full_volume_at_open_degrades_then_recovers", ROLE);
        return;
    }
    let mnt = child_dir().join("vol");
    mount_tmpfs(&mnt, "size=1m,mode=0700");
    std::fs::create_dir(mnt.join("cache")).unwrap();
    fill(&mnt.join("filler"));
    let rt = mounts::runtime();
    rt.block_on(async {
        let r = answercache::testing::builder(mnt.join("cache"))
            .build_with(resilient)
            .await;
        assert_eq!(kind(&r), "Ok");
        let c = r.unwrap();
        c.set_bytes("k", vec![b'v'; 10_000]).await.unwrap();
        assert_eq!(
            c.get_bytes("k").await.unwrap().map(|v| v.len()),
            Some(10_000)
        );
        assert!(matches!(c.flush().await, Err(Error::NotPersisted { .. })));
        std::fs::remove_file(mnt.join("filler")).unwrap();
        assert!(recovered(&c).await, "{:?}", c.stats());
        assert!(v2_path(&mnt.join("cache"), b"k").exists());
        c.close().await.unwrap();
    });
}

/// Writes zeros to `path` until the volume is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// `min_free_bytes` scaling on a real 32 MiB tmpfs (default floor: 5% = 1,677,720 bytes):
/// - a volume with less free space than the floor from the start: nothing is written, and
///   the free space is untouched;
/// - a fresh volume filled by the cache: everything fits until the floor, and the cache stops
///   with the floor still free (never less, and not more than one entry beyond it);
/// - explicit settings are used as they are: 8 MiB is left free.
#[test]
fn min_free_bytes_on_a_32_mib_volume() {
    const ROLE: &str = "min-free-32m";
    if !is_child(ROLE) {
        run_in_namespace("setup::min_free_bytes_on_a_32_mib_volume", ROLE);
        return;
    }
    const FLOOR: u64 = 33_554_432 / 100 * 5;
    const ENTRY: usize = 256 << 10;
    let value = |i: u32| -> Vec<u8> {
        let mut rng = answercache::workload::Rng::new(u64::from(i) + 1);
        (0..ENTRY / 8)
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect()
    };
    let rt = mounts::runtime();
    let base = child_dir();
    rt.block_on(async {
        // 1. Less free than the floor from the start.
        let mnt = base.join("a");
        mount_tmpfs(&mnt, "size=32m,mode=0700");
        let (_, total) = space(&mnt);
        assert_eq!(total, 32 << 20);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(mnt.join("other-program")).unwrap();
            let chunk = vec![1u8; 1 << 20];
            for _ in 0..31 {
                f.write_all(&chunk).unwrap();
            }
        }
        let before = space(&mnt).0;
        assert!(before < FLOOR, "{before}");
        let c = TieredCache::builder(mnt.join("cache"))
            .failure_threshold(1000)
            .memory_only_after(1000)
            .build()
            .await
            .unwrap();
        c.set_bytes("small", b"tiny".to_vec()).await.unwrap();
        assert!(matches!(c.flush().await, Err(Error::NotPersisted { .. })));
        let s = c.stats();
        assert_eq!((s.writes_ok, v2_files(&mnt.join("cache")).len()), (0, 0));
        assert!(
            space(&mnt).0 + 64 * 1024 >= before,
            "the cache used the last free space"
        );
        let _ = c.close().await;

        // 2. A fresh volume, filled by the cache alone.
        let mnt = base.join("b");
        mount_tmpfs(&mnt, "size=32m,mode=0700");
        let c = TieredCache::builder(mnt.join("cache"))
            .compression_level(0)
            .failure_threshold(1000)
            .memory_only_after(1000)
            .hot_capacity_bytes(64 << 20)
            .build()
            .await
            .unwrap();
        for i in 0..160u32 {
            c.set_bytes(format!("k{i}"), value(i)).await.unwrap();
        }
        let _ = c.flush().await;
        let s = c.stats();
        let free = space(&mnt).0;
        assert!(s.writes_ok >= 100, "{s:?}");
        assert!(
            free >= FLOOR && free < FLOOR + 2 * (ENTRY as u64 + 8192),
            "{free} bytes free after {} writes; floor {FLOOR}",
            s.writes_ok
        );
        let _ = c.close().await;

        // 3. An explicit floor: 8 MiB stays free.
        let mnt = base.join("c");
        mount_tmpfs(&mnt, "size=32m,mode=0700");
        let c = TieredCache::builder(mnt.join("cache"))
            .compression_level(0)
            .min_free_bytes(8 << 20)
            .failure_threshold(1000)
            .memory_only_after(1000)
            .build()
            .await
            .unwrap();
        for i in 0..160u32 {
            c.set_bytes(format!("k{i}"), value(i)).await.unwrap();
        }
        let _ = c.flush().await;
        let free = space(&mnt).0;
        assert!(
            free >= 8 << 20 && free < (8 << 20) + 2 * (ENTRY as u64 + 8192),
            "{free}"
        );
        let _ = c.close().await;
    });
}

/// `Builder::build` with an edit, for the mount tests.
trait BuildWith {
    async fn build_with(
        self,
        edit: fn(answercache::Builder) -> answercache::Builder,
    ) -> answercache::Result<TieredCache>;
}

impl BuildWith for answercache::Builder {
    async fn build_with(
        self,
        edit: fn(answercache::Builder) -> answercache::Builder,
    ) -> answercache::Result<TieredCache> {
        edit(self).build().await
    }
}
