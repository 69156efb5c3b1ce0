//! The existing promises with the new encodings: the hot tier's fast path takes back a hit
//! that does not decode (with its cost), values keep their encoding through the write queue
//! (evicted before their write landed), through a memory-only outage and its write-back,
//! through promotion from disk; two instances with different codecs writing the same keys
//! never serve a torn or foreign value.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::{Codec, Encoding, Mode, Source};
use serde::{Deserialize, Serialize};

use crate::support::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Answer {
    text: String,
    tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Other {
    embedding: Vec<f32>,
}

fn answer(n: u64) -> Answer {
    Answer {
        text: format!("answer {n}"),
        tokens: n,
    }
}

/// A hot hit that does not decode is a miss: the fast path counted a hit and its cost under
/// the shard lock, and must take both back. Exact counters after each call.
#[tokio::test]
async fn a_hot_decode_miss_takes_back_the_hit_and_its_cost() {
    let f = open().await;
    f.set_with_controls("k", &answer(1), &Controls::new().cost(40))
        .await
        .unwrap();
    let step = |hot, misses, decode_misses, cost_saved| Counts {
        hot,
        misses,
        decode_misses,
        cost_saved,
        ..Counts::default()
    };
    assert_eq!(f.get::<Answer>("k").await.unwrap(), Some(answer(1)));
    assert_eq!(counts(&f.stats()), step(1, 0, 0, 40));
    assert_eq!(f.get::<Other>("k").await.unwrap(), None);
    assert_eq!(counts(&f.stats()), step(1, 1, 1, 40));
    assert_eq!(f.get_answer::<Vec<u8>>("k").await.unwrap(), None);
    assert_eq!(counts(&f.stats()), step(1, 2, 2, 40));
    // get_bytes is a hit whatever the type.
    assert!(f.get_bytes("k").await.unwrap().is_some());
    assert_eq!(counts(&f.stats()), step(2, 2, 2, 80));
    // get_or_insert over it as Other: one decode miss, one miss, one load.
    let got = f
        .get_or_insert_answer("k", &Controls::new().cost(7), || async {
            Ok::<_, std::io::Error>(Other {
                embedding: vec![0.5],
            })
        })
        .await
        .unwrap();
    assert_eq!(got.source, Source::Loaded);
    let mut want = step(2, 3, 3, 80);
    want.loader_calls = 1;
    assert_eq!(counts(&f.stats()), want);
    // And the old type now misses; the new one hits with the new cost.
    assert_eq!(f.get::<Answer>("k").await.unwrap(), None);
    assert!(f.get::<Other>("k").await.unwrap().is_some());
    let mut want = step(3, 4, 4, 87);
    want.loader_calls = 1;
    assert_eq!(counts(&f.stats()), want);
}

/// Costs are caller-defined (tokens, micro-dollars, ...), any u64. A hit of a costly answer,
/// then a decode miss of the same entry: `cost_saved` must be the hit's cost. The fast path
/// adds costs saturating, then subtracts the taken-back cost exactly: the hit is wiped out.
#[tokio::test]
async fn cost_saved_of_a_hit_survives_a_later_decode_miss_whatever_the_cost() {
    let f = open().await;
    let cost = u64::MAX;
    f.set_with_controls("k", &answer(1), &Controls::new().cost(cost))
        .await
        .unwrap();
    assert!(f.get::<Answer>("k").await.unwrap().is_some());
    assert_eq!(f.stats().cost_saved, cost);
    assert_eq!(f.get::<Other>("k").await.unwrap(), None);
    let s = f.stats();
    assert_eq!(
        (s.hot_hits, s.misses, s.decode_misses, s.cost_saved),
        (1, 1, 1, cost),
        "one hit of cost {cost} and one decode miss"
    );
}

/// A value set while the cache is memory-only (the disk failing), of each encoding, is
/// written back when the disk recovers with the encoding it was set with: after a restart each
/// reads back from the disk as its type, and raw bytes stay raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_set_while_memory_only_are_written_back_with_their_encoding() {
    for codec in [Codec::Json, Codec::Bincode] {
        let fs = Arc::new(FaultFs::std());
        let fs2 = fs.clone();
        let mut f = open_with(move |b| sick(b, &fs2).codec(codec)).await;
        fs.add_rule(Rule::new(Fault::Errno(EIO)));
        let _ = f.set_bytes("trigger", b"t").await;
        let _ = f.flush().await;
        assert!(
            wait_mode(&f, Mode::MemoryOnly).await,
            "control: never memory-only"
        );

        f.set("typed", &answer(1)).await.unwrap();
        f.set_bytes("raw", br#"{"text":"raw","tokens":2}"#)
            .await
            .unwrap();
        let loaded = f
            .get_or_insert_answer("loaded", &Controls::new().cost(9), || async {
                Ok::<_, std::io::Error>(answer(3))
            })
            .await
            .unwrap();
        assert_eq!(loaded.encoding, Encoding::from(codec));
        let during = f.get_answer::<Answer>("typed").await.unwrap().unwrap();
        assert_eq!(
            (during.source, during.encoding),
            (Source::Hot, Encoding::from(codec))
        );

        fs.clear_rules();
        assert!(wait_mode(&f, Mode::Tiered).await, "never recovered");
        f.reopen_with(|b| b.fs(Arc::new(answercache::StdFs::new())))
            .await;
        for (key, want, encoding) in [
            ("typed", answer(1), Encoding::from(codec)),
            (
                "raw",
                Answer {
                    text: "raw".into(),
                    tokens: 2,
                },
                Encoding::Raw,
            ),
            ("loaded", answer(3), Encoding::from(codec)),
        ] {
            let got = f.get_answer::<Answer>(key).await.unwrap();
            assert_eq!(
                got.map(|a| (a.value, a.source, a.encoding)),
                Some((want, Source::Warm, encoding)),
                "{codec:?} {key}"
            );
        }
        assert_eq!(f.stats().cost_saved, 9, "{codec:?}: the loaded cost kept");
    }
}

/// A value evicted from the hot tier before its write landed is read from the write queue,
/// with its encoding, by `get`, `get_bytes` and `get_or_insert`; once the write lands it reads
/// from the disk with the same encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_value_evicted_before_its_write_landed_keeps_its_encoding_in_the_queue() {
    for codec in [Codec::Json, Codec::Bincode] {
        let fs = Arc::new(FaultFs::std());
        let fs2 = fs.clone();
        let mut f = open_with(move |b| {
            b.fs(fs2)
                .codec(codec)
                .hot_capacity_entries(2)
                .hot_shards(1)
                .io_timeout(Duration::from_secs(60))
        })
        .await;
        fs.add_rule(Rule::new(Fault::Hang).ops(&[FsOp::WriteNew]));
        f.set_with_controls("k", &answer(7), &Controls::new().cost(5))
            .await
            .unwrap();
        f.set_bytes("raw", b"[1,2,3]").await.unwrap();
        for i in 0..6 {
            f.set(format!("filler-{i}"), &i).await.unwrap();
        }
        assert_eq!(f.stats().lost_writes, 0);
        let got = f.get_answer::<Answer>("k").await.unwrap().unwrap();
        assert_eq!(
            (got.value, got.source, got.encoding),
            (answer(7), Source::Queue, Encoding::from(codec)),
            "{codec:?}"
        );
        let bytes = f.get_bytes_answer("k").await.unwrap().unwrap();
        assert_eq!(
            (bytes.source, bytes.encoding),
            (Source::Queue, Encoding::from(codec))
        );
        let raw = f.get_answer::<Vec<u8>>("raw").await.unwrap().unwrap();
        assert_eq!(
            (raw.value, raw.source, raw.encoding),
            (vec![1, 2, 3], Source::Queue, Encoding::Raw)
        );
        assert_eq!(f.get::<Other>("k").await.unwrap(), None);
        let via_load = f
            .get_or_insert_answer("k", &Controls::new(), || async {
                Err::<Answer, _>("must not load")
            })
            .await
            .unwrap();
        assert_eq!(via_load.source, Source::Queue);
        let c = counts(&f.stats());
        assert_eq!(
            (c.queue, c.misses, c.decode_misses, c.cost_saved),
            (4, 1, 1, 15),
            "{codec:?} {c:?}"
        );
        fs.clear_rules();
        fs.release_hangs();
        f.reopen_with(|b| b.fs(Arc::new(answercache::StdFs::new())))
            .await;
        let got = f.get_answer::<Answer>("k").await.unwrap().unwrap();
        assert_eq!(
            (got.value, got.source, got.encoding),
            (answer(7), Source::Warm, Encoding::from(codec))
        );
        let raw = f.get_answer::<Vec<u8>>("raw").await.unwrap().unwrap();
        assert_eq!((raw.value, raw.encoding), (vec![1, 2, 3], Encoding::Raw));
    }
}

/// Two instances on one directory, one writing JSON and one bincode, racing on the same keys
/// with a hot tier too small to hold them (reads go to the disk): every typed read by either
/// is a value of its key, decoded with the codec its writer used; never a torn or foreign
/// value, never a decode miss (both types are the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_instances_with_different_codecs_never_serve_a_foreign_value() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct V {
        key: String,
        writer: String,
        seq: u64,
        embedding: Vec<f32>,
    }
    fn v(key: &str, writer: &str, seq: u64) -> V {
        let mut r = Rng::new(seq);
        V {
            key: key.into(),
            writer: writer.into(),
            seq,
            embedding: (0..64).map(|_| finite_f32(&mut r)).collect(),
        }
    }
    let a = open_with(|b| b.codec(Codec::Json).hot_capacity_entries(3).hot_shards(1)).await;
    let b = second(&a, |b| {
        b.codec(Codec::Bincode)
            .hot_capacity_entries(3)
            .hot_shards(1)
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (name, cache) in [("json", a.cache.clone()), ("bincode", b.clone())] {
        for t in 0..3u64 {
            let (cache, stop) = (cache.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut seq = t;
                while !stop.load(Ordering::SeqCst) {
                    seq += 3;
                    let key = format!("k{}", seq % 10);
                    cache.set(&key, &v(&key, name, seq)).await.unwrap();
                    if seq % 7 == 0 {
                        cache.flush().await.ok();
                    }
                    // Hot hits and page-cache reads complete without yielding: let the
                    // runtime's timers run.
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in 0..4u64 {
            let (cache, stop, reads) = (cache.clone(), stop.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = t;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let key = format!("k{}", n % 10);
                    if let Some(got) = cache.get_answer::<V>(&key).await.unwrap() {
                        let want = v(&key, &got.value.writer, got.value.seq);
                        assert_eq!(got.value, want, "torn or foreign value via {name}");
                        let expected = if got.value.writer == "json" {
                            Encoding::Json
                        } else {
                            Encoding::Bincode
                        };
                        assert_eq!(got.encoding, expected, "encoding of {:?}", got.value.writer);
                        reads.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for (i, t) in tasks.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(20), t).await {
            Ok(r) => r.unwrap(),
            Err(_) => panic!("task {i} hangs: a: {:?} / b: {:?}", a.stats(), b.stats()),
        }
    }
    assert!(reads.load(Ordering::SeqCst) > 100, "control: too few reads");
    assert_eq!((a.stats().decode_misses, b.stats().decode_misses), (0, 0));
    b.close().await.unwrap();
}

/// A process that drops its handle without `close`: the writes it queued still land (the
/// runtime lives on), each with its encoding; the next process reads them as their types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_by_a_process_dropped_without_close_keep_their_encoding() {
    for codec in [Codec::Json, Codec::Bincode] {
        let mut f = open_with(|b| b.codec(codec)).await;
        f.set("typed", &answer(1)).await.unwrap();
        f.set_bytes("raw", b"[7]").await.unwrap();
        f.get_or_insert_with("loaded", || async {
            Ok::<_, std::io::Error>(Other {
                embedding: vec![-0.0, 1e-45, f32::MAX],
            })
        })
        .await
        .unwrap();
        let root = f.root().to_owned();
        let landed = wait_until(Duration::from_secs(10), || {
            ["typed", "raw", "loaded"]
                .iter()
                .all(|k| entry_path(&root, k.as_bytes()).exists())
        });
        f.restart_without_close(move |b| b.codec(codec)).await;
        assert!(landed.await, "control: the queued writes never landed");
        let t = f.get_answer::<Answer>("typed").await.unwrap().unwrap();
        assert_eq!(
            (t.value, t.source, t.encoding),
            (answer(1), Source::Warm, Encoding::from(codec))
        );
        let r = f.get_answer::<Vec<u8>>("raw").await.unwrap().unwrap();
        assert_eq!((r.value, r.encoding), (vec![7], Encoding::Raw));
        let l = f.get_answer::<Other>("loaded").await.unwrap().unwrap();
        assert_eq!(
            l.value
                .embedding
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            [-0.0f32, 1e-45, f32::MAX].map(f32::to_bits)
        );
        assert_eq!(l.encoding, Encoding::from(codec));
    }
}
