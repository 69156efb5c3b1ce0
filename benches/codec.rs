//! Typed hits by codec: what `get::<V>` costs with each [`Codec`] now that every typed hit
//! decodes with the entry's recorded encoding, on realistic chat-completion values (an
//! OpenAI-shaped `chat.completion` with prose content and two tool calls whose `arguments` are
//! JSON strings) whose JSON encoding is ~4 KiB and ~64 KiB:
//!
//! - hot hit (criterion): `get::<ChatCompletion>` of a key held by the memory tier, on a cache
//!   written with `Codec::Json` and on one written with `Codec::Bincode` (same keys, same
//!   values), and `get_bytes` (no decode) as the baseline;
//! - warm hit, paired: the values only on disk (hot budget 1 byte, nothing is ever admitted or
//!   promoted, as in `benches/warm.rs`; files in the page cache), `get` on the JSON cache,
//!   `get` on the bincode cache and `get_bytes` on each, **interleaved in one loop** (the four
//!   reads of a round use the same key index, in an order that rotates every round), each read
//!   timed on its own; printed as medians and means. The same four are also run as separate
//!   criterion benches, as a cross-check;
//! - encode side (criterion): write-behind `set` of the same values with each codec (bursts
//!   of [`BURST`], queue drained untimed between bursts, as in `benches/set.rs`), and
//!   `set_bytes` of the JSON text as the no-encode baseline, and the encode alone
//!   (`serde_json::to_vec`, bincode `encode_to_vec`) as the CPU floor;
//! - stored sizes, printed once per value size: the encoded value (JSON, bincode) and the
//!   gzip entry file on disk (apparent and allocated).
//!
//! Knob: `ANSWERCACHE_BENCH_CODEC_ROUNDS` (paired warm rounds per size, default 2,000).
//!
//! Run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

use std::hint::black_box;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use answercache::warm::layout::{key_hash, Layout};
use answercache::workload::{ChatCompletion, Choice, FunctionCall, Message, Rng, ToolCall, Usage};
use answercache::{Codec, Durability, Encoding, Source, TieredCache, WritePolicy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use workload::Kind;

/// JSON sizes of the values: ~4 KiB and ~64 KiB.
const SIZES: [usize; 2] = [4 << 10, 64 << 10];
/// Length of the pre-drawn access sequence (cycled).
const SEQ: usize = 1 << 16;
/// Entries per size in the warm caches (as in `benches/warm.rs`).
const WARM_N: usize = 1000;
/// Distinct keys per size in the `set` benches (cycled).
const SET_KEYS: usize = 1024;
/// Longest burst of write-behind sets timed before the queue is drained.
const BURST: u64 = 256;

fn alnum(rng: &mut Rng, n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n).map(|_| A[rng.below(A.len())] as char).collect()
}

fn text(size: usize, seed: u64) -> String {
    String::from_utf8(workload::value(Kind::Text, size, seed)).unwrap()
}

fn json_len(c: &ChatCompletion) -> usize {
    serde_json::to_vec(c).unwrap().len()
}

/// Completion `seed` whose JSON encoding is `size` bytes (to within a few bytes: the content,
/// seeded markdown prose with code blocks, is cut to fit; its escapes make the fit iterative).
/// Two tool calls: a search (small arguments) and a file write whose `content` argument is a
/// markdown document of ~1/10 of `size`, JSON-escaped inside a JSON string.
fn completion(size: usize, seed: u64) -> ChatCompletion {
    let mut rng = Rng::new(seed ^ 0xC0DE_C0DE);
    let models = [
        "gpt-4o-2024-08-06",
        "gpt-4o-mini-2024-07-18",
        "gpt-4.1-2025-04-14",
    ];
    let query = text(60 + rng.below(60), seed ^ 0x51);
    let search = serde_json::json!({
        "query": query.trim(),
        "top_k": 1 + rng.below(10),
        "filters": { "lang": "rust", "since": "2024-01-01" },
    });
    let doc = text(size / 10, seed ^ 0xD0C);
    let write = serde_json::json!({
        "path": format!("docs/notes-{}.md", rng.below(1000)),
        "content": doc,
        "overwrite": rng.chance(0.5),
    });
    let call = |rng: &mut Rng, name: &str, args: &serde_json::Value| ToolCall {
        id: format!("call_{}", alnum(rng, 24)),
        kind: "function".into(),
        function: FunctionCall {
            name: name.into(),
            arguments: args.to_string(),
        },
    };
    let tool_calls = vec![
        call(&mut rng, "search_docs", &search),
        call(&mut rng, "write_file", &write),
    ];
    let prose = text(size, seed);
    let prompt_tokens = 200 + rng.below(6000) as u32;
    let mut c = ChatCompletion {
        id: format!("chatcmpl-{}", alnum(&mut rng, 29)),
        object: "chat.completion".into(),
        created: 1_730_000_000 + rng.below(20_000_000) as u64,
        model: models[rng.below(models.len())].into(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: "assistant".into(),
                content: Some(String::new()),
                refusal: None,
                tool_calls,
            },
            finish_reason: "tool_calls".into(),
        }],
        usage: Usage {
            prompt_tokens,
            completion_tokens: 0,
            total_tokens: 0,
        },
        system_fingerprint: Some(format!("fp_{}", alnum(&mut rng, 10).to_lowercase())),
    };
    let set_content = |c: &mut ChatCompletion, len: usize| {
        let content = &prose[..len.min(prose.len())];
        let completion_tokens = (content.len() / 4) as u32 + 40;
        c.choices[0].message.content = Some(content.to_string());
        c.usage.completion_tokens = completion_tokens;
        c.usage.total_tokens = prompt_tokens + completion_tokens;
    };
    let mut len = size.saturating_sub(json_len(&c));
    for _ in 0..20 {
        set_content(&mut c, len);
        let got = json_len(&c);
        if got == size {
            break;
        }
        len = if got > size {
            len.saturating_sub(got - size)
        } else {
            len + (size - got)
        };
    }
    c
}

/// What the bincode codec stores: the value's 8-byte shape, then bincode (FORMAT.md).
fn bincode_vec(c: &ChatCompletion) -> Vec<u8> {
    let shape = answercache::warm::format::bincode_shape(c).unwrap();
    let mut out = shape.to_le_bytes().to_vec();
    bincode::serde::encode_into_std_write(c, &mut out, bincode::config::standard()).unwrap();
    out
}

async fn open(dir: &Path, codec: Codec, hot_bytes: usize) -> TieredCache {
    TieredCache::builder(dir)
        .min_free_bytes(0)
        .codec(codec)
        .hot_capacity_bytes(hot_bytes)
        .hot_capacity_entries(1 << 20)
        .write_policy(WritePolicy::WriteBehind)
        .durability(Durability::NoSync)
        .build()
        .await
        .unwrap()
}

/// Key count for the hot benches, as in `benches/hot.rs`: 10,000 keys, capped at 128 MiB of
/// values per cache.
fn hot_key_count(size: usize) -> usize {
    (128usize << 20).div_ceil(size).min(10_000)
}

const CODECS: [(Codec, &str); 2] = [(Codec::Json, "json"), (Codec::Bincode, "bincode")];

fn bench_hot(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("codec_hot_hit");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let n = hot_key_count(size);
        let label = workload::size_label(size);
        let keys = workload::keys(n, 200 + size as u64);
        let values: Vec<ChatCompletion> = (0..n as u64).map(|i| completion(size, i)).collect();
        let seq = workload::zipf_sequence(n, SEQ, 21);
        let dirs = [
            workload::bench_dir("codec-hot"),
            workload::bench_dir("codec-hot"),
        ];
        let caches: Vec<TieredCache> = rt.block_on(async {
            let mut caches = Vec::new();
            for ((codec, _), dir) in CODECS.iter().zip(&dirs) {
                let cache = open(dir.path(), *codec, 2 << 30).await;
                for (k, v) in keys.iter().zip(&values) {
                    cache.set(k, v).await.unwrap();
                }
                cache.flush().await.unwrap();
                // Sanity: the value reads back, from memory, with the codec it was set with.
                let a = cache
                    .get_answer::<ChatCompletion>(&keys[0])
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    (a.source, a.encoding),
                    (Source::Hot, Encoding::from(*codec))
                );
                assert_eq!(a.value, values[0]);
                caches.push(cache);
            }
            caches
        });
        for (cache, (_, name)) in caches.iter().zip(CODECS) {
            group.bench_function(BenchmarkId::new(format!("get_{name}"), &label), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            let k = &keys[seq[i % SEQ]];
                            let v: Option<ChatCompletion> = cache.get(k).await.unwrap();
                            black_box(v.unwrap());
                        }
                        start.elapsed()
                    })
                })
            });
        }
        // The no-decode baseline: the same lookups, returning the stored bytes (an `Arc`).
        group.bench_function(BenchmarkId::new("get_bytes", &label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &keys[seq[i % SEQ]];
                        black_box(caches[0].get_bytes(k).await.unwrap().unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        for (cache, (_, name)) in caches.iter().zip(CODECS) {
            let s = cache.stats();
            println!(
                "codec_hot_hit/{label}/{name}: {n} keys, hot_hits={} warm_hits={} misses={} decode_misses={}",
                s.hot_hits, s.warm_hits, s.misses, s.decode_misses
            );
            assert_eq!(s.warm_hits + s.queue_hits + s.misses + s.decode_misses, 0);
            rt.block_on(cache.close()).unwrap();
        }
    }
    group.finish();
}

/// One size's warm-only caches (JSON and bincode), written with the same keys and values,
/// flushed, and the stored sizes printed.
struct Warm {
    label: String,
    keys: Vec<Vec<u8>>,
    seq: Vec<usize>,
    caches: Vec<TieredCache>,
    _dirs: Vec<tempfile::TempDir>,
}

fn warm_setup(rt: &tokio::runtime::Runtime, size: usize) -> Warm {
    let label = workload::size_label(size);
    let keys = workload::keys(WARM_N, 300 + size as u64);
    let values: Vec<ChatCompletion> = (0..WARM_N as u64)
        .map(|i| completion(size, 1_000_000 + i))
        .collect();
    let seq = workload::zipf_sequence(WARM_N, SEQ, 22);
    let dirs = vec![
        workload::bench_dir("codec-warm"),
        workload::bench_dir("codec-warm"),
    ];
    let caches: Vec<TieredCache> = rt.block_on(async {
        let mut caches = Vec::new();
        for ((codec, _), dir) in CODECS.iter().zip(&dirs) {
            // A 1-byte hot budget admits nothing: every get reads the entry file.
            let cache = open(dir.path(), *codec, 1).await;
            for (k, v) in keys.iter().zip(&values) {
                cache.set(k, v).await.unwrap();
            }
            cache.flush().await.unwrap();
            caches.push(cache);
        }
        caches
    });

    // Stored sizes: the encoded value and the entry file (gzip level 3 + header + key).
    let json: Vec<usize> = values
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap().len())
        .collect();
    let bin: Vec<usize> = values.iter().map(|v| bincode_vec(v).len()).collect();
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
    let as_u64 = |v: &[usize]| v.iter().map(|&x| x as u64).collect::<Vec<_>>();
    let (jmin, jmax) = (json.iter().min().unwrap(), json.iter().max().unwrap());
    println!(
        "codec_sizes/{label}: {WARM_N} chat completions (2 tool calls each); JSON {:.0} B (min {jmin}, max {jmax}), bincode {:.0} B ({:.3}x of JSON)",
        mean(&as_u64(&json)),
        mean(&as_u64(&bin)),
        mean(&as_u64(&bin)) / mean(&as_u64(&json))
    );
    for (cache, (codec, name)) in caches.iter().zip(CODECS) {
        let layout = Layout::new(cache.root());
        let paths: Vec<PathBuf> = keys
            .iter()
            .map(|k| layout.entry_path(&key_hash(k)))
            .collect();
        let metas: Vec<std::fs::Metadata> = paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap())
            .collect();
        let apparent: Vec<u64> = metas.iter().map(|m| m.len()).collect();
        let allocated: Vec<u64> = metas.iter().map(|m| m.blocks() * 512).collect();
        let encoded = if codec == Codec::Json { &json } else { &bin };
        println!(
            "codec_sizes/{label}/{name}: encoded {:.0} B, entry file {:.0} B apparent ({:.2}x gzip ratio of the encoded value), {:.0} B allocated",
            mean(&as_u64(encoded)),
            mean(&apparent),
            mean(&as_u64(encoded)) / mean(&apparent),
            mean(&allocated)
        );
        // Sanity: served from disk, with the recorded encoding, bytes as encoded, value intact.
        rt.block_on(async {
            let a = cache
                .get_answer::<ChatCompletion>(&keys[0])
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (a.source, a.encoding),
                (Source::Warm, Encoding::from(codec))
            );
            assert_eq!(a.value, values[0]);
            let b = cache.get_bytes(&keys[0]).await.unwrap().unwrap();
            assert_eq!(b.len(), encoded[0]);
        });
    }
    Warm {
        label,
        keys,
        seq,
        caches,
        _dirs: dirs,
    }
}

fn warm_report(w: &Warm) {
    for (cache, (_, name)) in w.caches.iter().zip(CODECS) {
        let s = cache.stats();
        println!(
            "codec_warm/{}/{name}: hot_hits={} warm_hits={} inline_reads={} misses={} decode_misses={}",
            w.label, s.hot_hits, s.warm_hits, s.inline_reads, s.misses, s.decode_misses
        );
        assert_eq!(s.hot_hits + s.queue_hits + s.misses + s.decode_misses, 0);
    }
}

/// Warm hits, paired: per round, the four reads (`get` JSON, `get` bincode, `get_bytes` JSON
/// entry, `get_bytes` bincode entry) of the same key index, in an order rotated every round,
/// each timed on its own.
fn paired_warm(rt: &tokio::runtime::Runtime, w: &Warm) {
    let rounds: usize = std::env::var("ANSWERCACHE_BENCH_CODEC_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut times: [Vec<Duration>; 4] = Default::default();
    rt.block_on(async {
        for r in 0..rounds {
            let k = &w.keys[w.seq[r % SEQ]];
            for slot in 0..4 {
                let which = (slot + r) % 4;
                let cache = &w.caches[which % 2];
                let t = Instant::now();
                if which < 2 {
                    let v: Option<ChatCompletion> = cache.get(k).await.unwrap();
                    black_box(v.unwrap());
                } else {
                    black_box(cache.get_bytes(k).await.unwrap().unwrap());
                }
                times[which].push(t.elapsed());
            }
        }
    });
    let median = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let means: Vec<Duration> = times.iter().map(|v| mean(v)).collect();
    let meds: Vec<Duration> = times.iter_mut().map(median).collect();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "codec_warm_paired/{}: {rounds} rounds; {}",
        w.label,
        workload::machine()
    );
    println!("| value | stat | get json | get bincode | get_bytes (json entry) | get_bytes (bincode entry) | json/bincode | json/bytes | bincode/bytes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (stat, v) in [("median", &meds), ("mean", &means)] {
        println!(
            "| {} | {stat} | {:.1?} | {:.1?} | {:.1?} | {:.1?} | {:.2}x | {:.2}x | {:.2}x |",
            w.label,
            v[0],
            v[1],
            v[2],
            v[3],
            ratio(v[0], v[1]),
            ratio(v[0], v[2]),
            ratio(v[1], v[3])
        );
    }
}

fn bench_warm(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("codec_warm_hit");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let w = warm_setup(&rt, size);
        paired_warm(&rt, &w);
        // Cross-check: the same four, one criterion bench each.
        for (cache, (_, name)) in w.caches.iter().zip(CODECS) {
            group.bench_function(BenchmarkId::new(format!("get_{name}"), &w.label), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            let k = &w.keys[w.seq[i % SEQ]];
                            let v: Option<ChatCompletion> = cache.get(k).await.unwrap();
                            black_box(v.unwrap());
                        }
                        start.elapsed()
                    })
                })
            });
            group.bench_function(
                BenchmarkId::new(format!("get_bytes_{name}_entry"), &w.label),
                |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for i in 0..iters as usize {
                                let k = &w.keys[w.seq[i % SEQ]];
                                black_box(cache.get_bytes(k).await.unwrap().unwrap());
                            }
                            start.elapsed()
                        })
                    })
                },
            );
        }
        warm_report(&w);
        rt.block_on(async {
            for cache in &w.caches {
                cache.close().await.unwrap();
            }
        });
    }
    group.finish();
}

/// Write-behind `set` with each codec (the encode is on the caller's thread, before the value
/// is queued), and `set_bytes` of the JSON text (no encode).
fn bench_set(c: &mut Criterion) {
    let rt = workload::runtime();
    let mut group = c.benchmark_group("codec_set_write_behind");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let label = workload::size_label(size);
        let keys = workload::keys(SET_KEYS, 400 + size as u64);
        let values: Vec<ChatCompletion> = (0..SET_KEYS as u64)
            .map(|i| completion(size, 2_000_000 + i))
            .collect();
        let json: Vec<Vec<u8>> = values
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap())
            .collect();
        // The default hot budget (64 MiB), as a user would have it.
        let contenders = [
            (Codec::Json, "set_json"),
            (Codec::Bincode, "set_bincode"),
            (Codec::Json, "set_bytes_json_text"),
        ];
        for (codec, name) in contenders {
            let dir = workload::bench_dir("codec-set");
            let cache = rt.block_on(open(
                dir.path(),
                codec,
                answercache::defaults::DEFAULT_HOT_CAPACITY_BYTES,
            ));
            let bytes = name.starts_with("set_bytes");
            let mut next = 0usize;
            group.bench_function(BenchmarkId::new(name, &label), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        let mut left = iters;
                        while left > 0 {
                            let burst = left.min(BURST);
                            let start = Instant::now();
                            for _ in 0..burst {
                                let i = next % SET_KEYS;
                                next += 1;
                                if bytes {
                                    cache.set_bytes(&keys[i], &json[i]).await.unwrap();
                                } else {
                                    cache.set(&keys[i], &values[i]).await.unwrap();
                                }
                            }
                            total += start.elapsed();
                            left -= burst;
                            cache.flush().await.unwrap();
                        }
                        total
                    })
                })
            });
            let s = cache.stats();
            assert_eq!(s.writes_failed + s.lost_writes, 0);
            rt.block_on(cache.close()).unwrap();
        }
        // The encode alone, on the calling thread, no cache: the CPU floor of each `set`
        // above (the library's JSON encode also walks the value once to refuse what JSON
        // cannot carry).
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("encode_only_json", &label), |b| {
            b.iter(|| {
                next += 1;
                black_box(serde_json::to_vec(&values[next % SET_KEYS]).unwrap())
            })
        });
        group.bench_function(BenchmarkId::new("encode_only_bincode", &label), |b| {
            b.iter(|| {
                next += 1;
                black_box(bincode_vec(&values[next % SET_KEYS]))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_hot, bench_warm, bench_set
}
criterion_main!(benches);
