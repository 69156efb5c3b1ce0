//! Feature `metrics`: every `Stats` figure through the facade, exactly, under the names,
//! kinds and labels of docs/METRICS.md, after a scripted workload with real faults (disk
//! errors of two kinds, a corrupt file quarantined, warm evictions, memory-only mode); two
//! caches told apart by `metrics_name`; a cache reopened in the same process.
//!
//! The expected series are derived from docs/METRICS.md itself (name, kind, labels, `Stats`
//! field), so a figure renamed or left out on either side fails here.

use std::collections::BTreeMap;
use std::time::Duration;

use answercache::testing::{wait_until, Fault, FsOp, Rule};
use answercache::{Mode, Stats, TieredCache};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use serde_json::Value;

use crate::support::*;

/// `name{label=value,...}` → (kind, value) of every series `publish` leaves in a fresh
/// recorder.
fn published(cache: &TieredCache) -> BTreeMap<String, (&'static str, f64)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || cache.publish_metrics());
    snapshot(&snapshotter)
}

fn snapshot(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> BTreeMap<String, (&'static str, f64)> {
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
                (MetricKind::Counter, DebugValue::Counter(n)) => ("counter", n as f64),
                (MetricKind::Gauge, DebugValue::Gauge(g)) => ("gauge", g.into_inner()),
                other => panic!("unexpected {other:?}"),
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), v)
        })
        .collect()
}

fn ticks(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// A `Stats` field as the documentation says it is published.
fn number(field: &str, v: &Value) -> f64 {
    match (field, v) {
        ("mode", Value::String(m)) => f64::from(u8::from(m == "memory-only")),
        ("breaker_state", Value::String(b)) => match b.as_str() {
            "closed" => 0.0,
            "half-open" => 1.0,
            "open" => 2.0,
            other => panic!("breaker state {other}"),
        },
        (_, Value::Bool(b)) => f64::from(u8::from(*b)),
        (_, Value::Number(n)) => n.as_f64().unwrap(),
        other => panic!("{other:?}"),
    }
}

/// The series docs/METRICS.md says `s` publishes under `cache` = `name`, and the `Stats`
/// fields it names.
fn documented(s: &Stats, name: &str) -> (BTreeMap<String, (&'static str, f64)>, Vec<String>) {
    // The shared tier's series (after their heading) are published only by a cache with a
    // shared tier (feature `redis`; tests/shared_orchestration checks them): not these.
    let doc = include_str!("../../docs/METRICS.md");
    let doc = doc.split("## The shared tier").next().unwrap();
    let json = serde_json::to_value(s).unwrap();
    let mut out = BTreeMap::new();
    let mut fields = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `answercache_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (metric, kind, labels, field) = (&ticks(cells[1])[0], cells[2], cells[3], cells[4]);
        let kind: &'static str = if kind == "counter" {
            "counter"
        } else {
            "gauge"
        };
        let named = ticks(field);
        let label_ticks = ticks(labels);
        if labels.is_empty() {
            let f = &named[0];
            fields.push(f.clone());
            let v = number(f, &json[f]);
            out.insert(format!("{metric}{{cache={name}}}"), (kind, v));
        } else if labels.contains("seen") {
            // `kind (...; kinds seen)`: one series per key of the map.
            let f = &named[0];
            fields.push(f.clone());
            let key = &label_ticks[0];
            for (k, v) in json[f].as_object().unwrap() {
                out.insert(
                    format!("{metric}{{cache={name},{key}={k}}}"),
                    (kind, v.as_f64().unwrap()),
                );
            }
        } else {
            let key = &label_ticks[0];
            assert_eq!(label_ticks.len() - 1, named.len(), "{line}");
            for (value, f) in label_ticks[1..].iter().zip(&named) {
                fields.push(f.clone());
                let v = number(f, &json[f]);
                out.insert(format!("{metric}{{cache={name},{key}={value}}}"), (kind, v));
            }
        }
    }
    (out, fields)
}

/// A scripted workload with faults: 12 sets (one refused by a full disk), hot and warm hits,
/// misses, a corrupt file quarantined, warm evictions, disk errors of kinds `io` and
/// `no-space`, then memory-only. Every published series equals its `Stats` figure, the set of
/// series is exactly the documented one, and every `Stats` field is documented (but the
/// text of the last error and the two totals that are sums of labelled series).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_is_published_exactly_after_faults() {
    let cache = dir()
        .fault_fs()
        .open_cache(|b| {
            b.metrics_name("faulty")
                .metrics_interval(Duration::MAX)
                .hot_capacity_entries(4)
                .warm_capacity_bytes(80 << 10)
                .failure_threshold(100)
                .memory_only_after(6)
                .recovery_interval(Duration::from_secs(3600))
                .health_interval(Duration::from_secs(3600))
                .sweep_interval(Duration::from_secs(3600))
        })
        .await;
    let root = cache.root().to_owned();
    for i in 0..8u32 {
        cache
            .set(format!("k{i}"), &format!("answer {i}"))
            .await
            .unwrap();
    }
    cache.flush().await.unwrap();
    // Warm hits (the hot tier holds 4), hot hits, misses.
    for i in 0..8u32 {
        let _: Option<String> = cache.get(format!("k{i}")).await.unwrap();
    }
    for i in 0..3u32 {
        let _: Option<String> = cache.get(format!("absent{i}")).await.unwrap();
    }
    // A corrupt file, quarantined on read: planted for a key this cache never held, so no
    // copy of it can be in the hot tier (which keys the 4-entry hot tier keeps depends on
    // its randomly seeded shard hasher: a clean-clone CI run served k0 from memory).
    let mut bytes = entry_file(b"planted", b"\"answer\"", now_ms(), 0);
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    plant(&v2_path(&root, b"planted"), &bytes);
    let _: Option<String> = cache.get("planted").await.unwrap();
    // A full disk for one write, EIO for two reads.
    cache.fs().add_rule(
        Rule::new(Fault::Errno(ENOSPC))
            .ops(&[FsOp::WriteNew])
            .times(1),
    );
    cache.set("k8", &"refused by a full disk").await.unwrap();
    let _ = cache.flush().await;
    cache.fs().clear_rules();
    cache
        .fs()
        .add_rule(Rule::new(Fault::Errno(EIO)).ops(&[FsOp::ReadFile]).times(2));
    for i in 0..2u32 {
        let _: Option<String> = cache.get(format!("absent-io{i}")).await.unwrap();
    }
    // More writes than the 80 KiB budget holds: evictions.
    cache.fs().clear_rules();
    for i in 9..12u32 {
        cache
            .set(format!("k{i}"), &format!("answer {i}"))
            .await
            .unwrap();
    }
    let _ = cache.flush().await;
    // Memory-only: every call fails until the sixth error.
    cache.fs().add_rule(Rule::new(Fault::Errno(EIO)));
    for i in 0..6u32 {
        let _: Option<String> = cache.get(format!("gone{i}")).await.unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || cache.mode() == Mode::MemoryOnly).await);
    let before = cache.stats();
    let got = published(&cache);
    let after = cache.stats();
    assert!(
        before.warm_evictions > 0 && before.quarantined_files == 1,
        "{before:?}"
    );
    assert_eq!(
        (
            before.disk_errors_by_kind.get("no-space"),
            before.disk_errors_by_kind.contains_key("io")
        ),
        (Some(&1), true),
        "{before:?}"
    );
    let (want_before, fields) = documented(&before, "faulty");
    let (want_after, _) = documented(&after, "faulty");
    // Time moves (memory_only_ms): a series is right if it is the figure of a snapshot taken
    // just before or just after the publication, or between them.
    let mut wrong = Vec::new();
    for (series, (kind, v)) in &got {
        match (want_before.get(series), want_after.get(series)) {
            (Some((k, lo)), Some((_, hi))) if k == kind && *lo <= *v && *v <= *hi => {}
            other => wrong.push(format!("{series} = {kind} {v}, documented {other:?}")),
        }
    }
    for series in want_before.keys() {
        if !got.contains_key(series) {
            wrong.push(format!("{series} documented, not published"));
        }
    }
    assert_eq!(wrong, Vec::<String>::new());
    // Every Stats figure is documented (the sums are their labelled series'), the shared
    // tier's in its own section.
    let mut fields = fields;
    let shared_section = include_str!("../../docs/METRICS.md")
        .split("## The shared tier")
        .nth(1)
        .unwrap();
    for line in shared_section
        .lines()
        .filter(|l| l.starts_with("| `answercache_"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        fields.extend(ticks(cells[4]));
    }
    let json = serde_json::to_value(&before).unwrap();
    let mut undocumented: Vec<String> = json
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !fields.contains(k))
        .cloned()
        .collect();
    undocumented.sort();
    assert_eq!(
        undocumented,
        [
            "corrupted",
            "disk_errors",
            "last_disk_error",
            "shared_corrupted",
            "shared_errors",
            "shared_writes_dropped"
        ]
    );
    assert_eq!(
        before.disk_errors,
        before.disk_errors_by_kind.values().sum::<u64>()
    );
    assert_eq!(
        before.corrupted,
        before.corrupted_by_reason.values().sum::<u64>()
    );
    cache.fs().clear_rules();
    let _ = cache.close().await;
}

/// Two caches in one process, told apart by `metrics_name`: one recorder holds both, each
/// series with its own cache's figures.
#[tokio::test]
async fn two_caches_are_told_apart_by_name() {
    let d1 = dir();
    let a = d1.open(d1.builder().metrics_name("answers")).await;
    let d2 = dir();
    let b = d2.open(d2.builder().metrics_name("tools")).await;
    for i in 0..3u32 {
        a.set(format!("k{i}"), &i).await.unwrap();
    }
    b.set("t", &1u32).await.unwrap();
    let _: Option<u32> = b.get("t").await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        a.publish_metrics();
        b.publish_metrics();
    });
    let got = snapshot(&snapshotter);
    let v = |s: &str| got.get(s).map(|(_, v)| *v);
    assert_eq!(
        (
            v("answercache_sets_total{cache=answers}"),
            v("answercache_sets_total{cache=tools}"),
            v("answercache_hits_total{cache=answers,tier=hot}"),
            v("answercache_hits_total{cache=tools,tier=hot}"),
            v("answercache_entries{cache=answers,tier=warm}"),
            v("answercache_entries{cache=tools,tier=warm}"),
        ),
        (
            Some(3.0),
            Some(1.0),
            Some(0.0),
            Some(1.0),
            Some(3.0),
            Some(1.0)
        )
    );
    // 60 series per cache (59 until `answercache_inline_read_fallbacks_total`).
    assert_eq!(got.len(), 2 * 60, "{got:#?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A cache closed and opened again in the same process under the same name (a reload of the
/// service's configuration): its counters start again at 0, and `publish` hands them to the
/// recorder with `absolute`, which the `metrics` atomics (and the Prometheus exporter's)
/// apply as a maximum: the new instance's counts are hidden behind the old instance's
/// totals. A counter that reads 5 after the reopen's single `set` is wrong whichever way
/// one reads it (1 since the reopen, or 6 in all).
#[tokio::test]
async fn a_cache_reopened_under_the_same_name_publishes_its_own_counts() {
    let d = dir();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let settings = d
        .builder()
        .metrics_name("reloaded")
        .metrics_interval(Duration::MAX);
    let first = d.open(settings.clone()).await;
    for i in 0..5u32 {
        first.set(format!("k{i}"), &i).await.unwrap();
    }
    first.flush().await.unwrap();
    metrics::with_local_recorder(&recorder, || first.publish_metrics());
    first.close().await.unwrap();
    let second = d.open(settings).await;
    second.set("k5", &5u32).await.unwrap();
    second.flush().await.unwrap();
    metrics::with_local_recorder(&recorder, || second.publish_metrics());
    let got = snapshot(&snapshotter);
    let sets = got["answercache_sets_total{cache=reloaded}"].1;
    assert!(
        sets == 1.0 || sets == 6.0,
        "sets_total = {sets} after 5 + 1 sets"
    );
    second.close().await.unwrap();
}

/// The publication interval on tokio's paused clock: `Duration::MAX` never publishes on its
/// own (a year later, nothing), and a short interval keeps publishing while the cache is
/// memory-only (the gauge reads 1).
#[test]
fn the_interval_never_and_during_an_outage() {
    use crate::mounts::{is_child, run_child};
    const ROLE: &str = "metrics-interval";
    if !is_child(ROLE) {
        run_child("metrics::the_interval_never_and_during_an_outage", ROLE);
        return;
    }
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let d = dir();
        let never = d
            .open(
                d.builder()
                    .metrics_name("never")
                    .metrics_interval(Duration::MAX)
                    .health_interval(Duration::MAX)
                    .sweep_interval(Duration::MAX),
            )
            .await;
        never.set("k", &1u32).await.unwrap();
        tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
        let got = snapshot(&snapshotter);
        assert!(
            !got.keys().any(|k| k.contains("cache=never")),
            "published on its own: {got:?}"
        );
        never.close().await.unwrap();

        let d = dir().fault_fs();
        let c = d
            .open(
                d.builder()
                    .metrics_name("outage")
                    .metrics_interval(Duration::from_secs(1))
                    .failure_threshold(1)
                    .memory_only_after(1)
                    .recovery_interval(Duration::from_secs(3600))
                    .health_interval(Duration::from_secs(3600))
                    .sweep_interval(Duration::from_secs(3600)),
            )
            .await;
        d.fs().add_rule(Rule::new(Fault::Errno(EIO)));
        let _: Option<u32> = c.get("absent").await.unwrap();
        assert_eq!(c.mode(), Mode::MemoryOnly);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got = snapshot(&snapshotter);
        assert_eq!(
            got.get("answercache_memory_only{cache=outage}")
                .map(|v| v.1),
            Some(1.0)
        );
        d.fs().clear_rules();
        let _ = c.close().await;
    });
}
