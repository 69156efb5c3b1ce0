//! Feature `metrics`: after a scripted workload, the recorder holds exactly the figures of
//! `Stats`, under the documented names (docs/METRICS.md) and the `cache` label; and the cache
//! publishes on its own every `metrics_interval` (tokio's paused clock).

#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use answercache::testing::TestDir;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

/// `name{label=value,...}` → value, for every series the recorder holds.
fn series(snapshotter: &Snapshotter) -> BTreeMap<String, f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let v = match (kind, value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => n as f64,
                (MetricKind::Gauge, DebugValue::Gauge(g)) => g.into_inner(),
                other => panic!("unexpected {other:?}"),
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), v)
        })
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_scripted_workload_is_published_exactly() {
    let dir = TestDir::new();
    let cache = dir
        .open(
            dir.builder()
                .metrics_name("chat")
                .metrics_interval(Duration::MAX),
        )
        .await;
    for i in 0..3u32 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    for i in 0..2u32 {
        assert_eq!(cache.get::<u32>(format!("k{i}")).await.unwrap(), Some(i));
    }
    assert_eq!(cache.get::<u32>("absent").await.unwrap(), None);
    cache.flush().await.unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || cache.publish_metrics());
    let got = series(&snapshotter);
    let s = cache.stats();
    let want = |name: &str| {
        got.get(name)
            .copied()
            .unwrap_or_else(|| panic!("{name} missing: {got:#?}"))
    };
    assert_eq!(want("answercache_hits_total{cache=chat,tier=hot}"), 2.0);
    assert_eq!(want("answercache_hits_total{cache=chat,tier=warm}"), 0.0);
    assert_eq!(want("answercache_misses_total{cache=chat}"), 1.0);
    assert_eq!(want("answercache_sets_total{cache=chat}"), 3.0);
    assert_eq!(want("answercache_writes_total{cache=chat,outcome=ok}"), 3.0);
    assert_eq!(
        want("answercache_writes_total{cache=chat,outcome=failed}"),
        0.0
    );
    assert_eq!(want("answercache_entries{cache=chat,tier=hot}"), 3.0);
    assert_eq!(want("answercache_entries{cache=chat,tier=warm}"), 3.0);
    assert_eq!(want("answercache_dirty_entries{cache=chat}"), 0.0);
    assert_eq!(want("answercache_memory_only{cache=chat}"), 0.0);
    assert_eq!(want("answercache_breaker_state{cache=chat}"), 0.0);
    assert_eq!(
        want("answercache_written_bytes_total{cache=chat,stage=compressed}"),
        s.bytes_written_compressed as f64
    );
    assert_eq!(
        want("answercache_bytes{cache=chat,tier=hot}"),
        s.hot_bytes as f64
    );
    assert_eq!(
        want("answercache_capacity_bytes{cache=chat,tier=warm}"),
        s.warm_capacity_bytes as f64
    );
    // Three small files, a block and a directory entry each, in as many fan-out directories
    // as their hashes' first bytes name (the test directory is on a 4 KiB-block file system).
    let fan_outs = std::fs::read_dir(dir.path().join("v2")).unwrap().count() as u64;
    assert_eq!(s.warm_disk_bytes, 3 * (4096 + 128) + fan_outs * 4096);
    assert_eq!(
        want("answercache_warm_disk_bytes{cache=chat}"),
        s.warm_disk_bytes as f64
    );
    // Every series the documentation lists is published (kinds seen only when nonzero: none
    // here), and nothing else.
    let doc = include_str!("../../docs/METRICS.md");
    // The shared tier's series come after their heading; this cache has no shared tier
    // (tests/shared_orchestration checks them).
    let (doc, _shared) = doc
        .split_once("## The shared tier")
        .expect("the shared tier's section");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `answercache_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let mut names: Vec<String> = got
        .keys()
        .map(|k| {
            k.split('{')
                .next()
                .unwrap()
                .trim_start_matches("answercache_")
                .to_owned()
        })
        .collect();
    names.dedup();
    let mut expected: Vec<String> = documented
        .iter()
        .filter(|n| !matches!(**n, "disk_errors_total" | "corrupted_total"))
        .map(|n| n.to_string())
        .collect();
    expected.sort();
    names.sort();
    assert_eq!(names, expected);
    // 60 series (59 until `answercache_inline_read_fallbacks_total`).
    assert_eq!(got.len(), 60, "{got:#?}");
    cache.close().await.unwrap();
}

#[test]
fn the_cache_publishes_every_interval() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The background task runs on the runtime's thread: a global recorder for this binary.
    metrics::set_global_recorder(recorder).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = TestDir::new();
        let cache = dir
            .open(
                dir.builder()
                    .metrics_name("timed")
                    .metrics_interval(Duration::from_secs(10)),
            )
            .await;
        cache.set("k", &1u32).await.unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        let sets = |snap: &Snapshotter| {
            series(snap)
                .get("answercache_sets_total{cache=timed}")
                .copied()
        };
        assert_eq!(
            sets(&snapshotter),
            None,
            "nothing before the first interval"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(sets(&snapshotter), Some(1.0));
        cache.set("k2", &2u32).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The debugging recorder's snapshot takes what a counter grew since the last snapshot
        // (it swaps it with 0): the one `set` since, published as an increment of 1 (a
        // Prometheus exporter shows the sum, 2).
        assert_eq!(sets(&snapshotter), Some(1.0));
        cache.close().await.unwrap();
    });
}
