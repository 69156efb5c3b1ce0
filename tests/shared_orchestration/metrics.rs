//! Feature `metrics`: a cache with a shared tier publishes exactly the shared series that
//! docs/METRICS.md lists in its shared section, with the figures of `Stats`.

use std::collections::BTreeMap;

use answercache::testing::MemoryShared;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

use crate::support::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_shared_series_are_the_documented_ones() {
    let server = MemoryShared::new();
    let a = replica_with(&server, |c| c, |b| b.metrics_name("m")).await;
    let b = replica_with(&server, |c| c, |b| b.metrics_name("m")).await;
    a.set_bytes("q", b"v").await.unwrap();
    a.flush().await.unwrap();
    assert!(b.get_bytes("q").await.unwrap().is_some());
    server.plant(&entry_key(b"bad"), b"garbage", None);
    assert_eq!(b.get_bytes("bad").await.unwrap(), None);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || b.publish_metrics());
    let got: BTreeMap<String, f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .filter(|l| l.key() != "cache")
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
        .collect();
    let want = |name: &str| {
        got.get(name)
            .copied()
            .unwrap_or_else(|| panic!("{name}: {got:#?}"))
    };
    assert_eq!(want("answercache_hits_total{tier=shared}"), 1.0);
    assert_eq!(want("answercache_shared_misses_total{}"), 1.0);
    assert_eq!(
        want("answercache_shared_corrupted_total{reason=magic}"),
        1.0
    );
    assert_eq!(want("answercache_shared_breaker_state{}"), 0.0);
    assert_eq!(want("answercache_shared_probes_total{result=ok}"), 1.0);
    assert_eq!(want("answercache_shared_writes_total{outcome=ok}"), 0.0);
    assert_eq!(
        want("answercache_shared_bytes_total{direction=in}"),
        b.stats().shared_bytes_in as f64
    );
    let doc = include_str!("../../docs/METRICS.md");
    let (_, shared_doc) = doc.split_once("## The shared tier").unwrap();
    let mut documented: Vec<&str> = shared_doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| *n != "answercache_hits_total")
        .collect();
    documented.sort();
    let mut names: Vec<&str> = got
        .keys()
        .map(|k| k.split('{').next().unwrap())
        .filter(|n| n.contains("shared") || n.contains("namespace_"))
        .collect();
    names.dedup();
    // Kinds of error never seen are not published.
    documented.retain(|n| *n != "answercache_shared_errors_total");
    assert_eq!(names, documented);
}
