//! Compression level study (issue "Performance"): what each gzip level costs and saves on the
//! values an agent backend caches, per size class, to choose the default from data.
//!
//! Values ([`agent_values`], seeded): English prose answers, markdown answers with code blocks,
//! OpenAI-style chat completions (usage; every other one a tool-call turn whose arguments are
//! JSON in a JSON string) and search-tool JSON results, in five size classes around 1, 4, 16,
//! 64 and 256 KiB. A class is a range: each value's length is drawn uniformly from 0.75x to
//! 1.25x the class size, so that the entries of a class fall anywhere relative to the 4 KiB
//! allocation unit the warm budget counts in (values of one exact length would all round up
//! alike). Each (kind, class) cell holds [`values_per_cell`] different values (64 up to
//! 16 KiB, 32 at 64 KiB, 16 at 256 KiB); every figure is over all of them.
//!
//! Printed first (before criterion runs), for levels 0-9:
//!
//! 1. ratio: gzip payload / value (what `format::deflate` produces);
//! 2. paired timings: `format::encode` (gzip + blake3 + header, the write path's CPU) and
//!    `format::decode` (checksum + inflate, the read path's CPU), per value. Each round
//!    encodes the cell's values at every level, then decodes them at every level, in an order
//!    that rotates every round, so that load on a shared machine falls on all levels alike;
//!    medians of [`ROUNDS`] rounds;
//! 3. what an entry takes: file bytes (header + key + payload, what a read reads) and the
//!    bytes the warm budget charges (file rounded up to 4 KiB, plus 128 for its directory
//!    entry: `WarmIndex::charge`); 3b: the same under the rule "level 0 when the stored entry
//!    fits in one 4 KiB unit";
//! 4. the cost of reading bytes from the page cache (`std::fs::read` of 4-256 KiB files);
//! 5. the per size class summary, from the paired timings: per write (encode µs), per read
//!    (decode µs, bytes read) and per entry on disk (charged bytes, entries a budget holds) for
//!    each level, against level 3, the default.
//!
//! Then criterion times `encode` and `decode` for levels 1, 3, 6 and 9 (others with
//! `ANSWERCACHE_BENCH_LEVELS`, e.g. `0,3,4,5,6`) on every (kind, size)
//! (ids `compression/encode/<kind>/<size>/L<level>`, `compression/decode/...`), each iteration
//! taking the cell's next value; and last, table 6: table 5 again from this run's criterion
//! estimates (benches run one after the other, so load drift between them shows here and not
//! in table 5: a cross-check).
//!
//! Knob: `ANSWERCACHE_BENCH_CORPUS` = paths (`:`-separated) of real text files or directories
//! (their `*.md`, `*.txt`, `*.json`, `*.rst` files, sorted, concatenated): each becomes an
//! extra kind in tables 1-3, cut into consecutive values of each size (not timed by criterion).
//!
//! `ANSWERCACHE_BENCH_DUMP` = a directory: the second value of each generated cell (a tool-call
//! turn for chat-json) is written there, to look at.
//!
//! Run: `cargo bench --bench compression -- --warm-up-time 1 --measurement-time 2`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "workload/mod.rs"]
mod workload;

#[path = "workload/agent_values.rs"]
mod agent_values;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use agent_values::ValueKind;
use answercache::warm::format::{self, EntryMeta, Limits};
use answercache::workload::Rng;
use answercache::Encoding;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// Size classes: 1, 4, 16, 64 and 256 KiB.
const SIZES: [usize; 5] = [1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10];
/// Levels criterion times unless `ANSWERCACHE_BENCH_LEVELS` says otherwise.
const TIMED_LEVELS: [u32; 4] = [1, 3, 6, 9];
/// The current default (`DEFAULT_COMPRESSION_LEVEL`), the reference of the summary.
const BASE_LEVEL: u32 = answercache::defaults::DEFAULT_COMPRESSION_LEVEL;
/// Rounds of the paired timing loop (median taken).
const ROUNDS: usize = 5;
/// The warm budget's allocation unit and per-entry directory charge (`src/warm/index.rs`).
const UNIT: u64 = 4096;
const DIRENT_CHARGE: u64 = 128;

/// Values per (kind, size) cell: about 2 MiB of values, between 16 and 64 of them.
fn values_per_cell(size: usize) -> usize {
    ((2 << 20) / size).clamp(16, 64)
}

/// The length of a value of class `size`: uniform in 0.75x-1.25x the class size.
fn jittered(size: usize, rng: &mut Rng) -> usize {
    size * 3 / 4 + rng.below(size / 2)
}

/// The levels criterion times: `ANSWERCACHE_BENCH_LEVELS` (comma-separated), else
/// [`TIMED_LEVELS`].
fn timed_levels() -> Vec<u32> {
    std::env::var("ANSWERCACHE_BENCH_LEVELS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|l| {
                    l.trim()
                        .parse::<u32>()
                        .expect("ANSWERCACHE_BENCH_LEVELS: 0-9, comma-separated")
                })
                .filter(|l| *l <= 9)
                .collect::<Vec<u32>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| TIMED_LEVELS.to_vec())
}

/// "16KiB": the class of lengths 12-20 KiB.
fn size_label(size: usize) -> String {
    format!("{}KiB", size >> 10)
}

/// One (kind, size) cell: its values and their keys.
struct Cell {
    kind: String,
    size: usize,
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    encoding: Encoding,
}

impl Cell {
    /// `n` values of `kind` in class `size`.
    fn generated(kind: ValueKind, size: usize, n: usize) -> Cell {
        let mut rng = Rng::new(size as u64);
        let values: Vec<Vec<u8>> = (0..n as u64)
            .map(|i| {
                let len = jittered(size, &mut rng);
                let v = agent_values::value(kind, len, 1000 * size as u64 + i);
                assert_eq!(v.len(), len, "{} {len}", kind.label());
                v
            })
            .collect();
        let encoding = match kind {
            ValueKind::Chat | ValueKind::ToolResult => Encoding::Json,
            _ => Encoding::Raw,
        };
        Cell {
            kind: kind.label().to_owned(),
            size,
            keys: workload::keys(n, size as u64),
            values,
            encoding,
        }
    }

    /// Consecutive pieces of `text` with the class's lengths (as many as fit, up to the
    /// usual count).
    fn corpus(label: &str, text: &[u8], size: usize) -> Option<Cell> {
        let mut rng = Rng::new(size as u64);
        let mut values = Vec::new();
        let mut rest = text;
        while values.len() < values_per_cell(size) {
            let len = jittered(size, &mut rng);
            if rest.len() < len {
                break;
            }
            let (value, tail) = rest.split_at(len);
            values.push(value.to_vec());
            rest = tail;
        }
        if values.is_empty() {
            return None;
        }
        Some(Cell {
            kind: label.to_owned(),
            size,
            keys: workload::keys(values.len(), 7 + size as u64),
            values,
            encoding: Encoding::Raw,
        })
    }

    fn meta(&self) -> EntryMeta {
        EntryMeta {
            created_ms: 1_730_000_000_000,
            expires_ms: 0,
            cost: 1234,
            encoding: self.encoding,
        }
    }

    fn files(&self, level: u32) -> Vec<Vec<u8>> {
        self.keys
            .iter()
            .zip(&self.values)
            .map(|(k, v)| format::encode(k, v, self.meta(), level).unwrap())
            .collect()
    }
}

/// What one level does to one cell, per value (means).
#[derive(Clone, Default)]
struct Quick {
    ratio: f64,
    file: f64,
    charged: f64,
    encode_us: f64,
    decode_us: f64,
    /// Each value's entry file length.
    lens: Vec<usize>,
}

fn charge(file_len: usize) -> u64 {
    (file_len as u64).div_ceil(UNIT) * UNIT + DIRENT_CHARGE
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Every level (0-9) on one cell, **paired**: each round encodes the cell's values at every
/// level, then decodes them at every level, the levels in an order that rotates every round
/// (so that a load spike on this shared machine hits all levels alike, not one); medians of
/// the rounds, per value.
fn paired(cell: &Cell, rounds: usize) -> Vec<Quick> {
    let n = cell.values.len() as f64;
    let files: Vec<Vec<Vec<u8>>> = (0..=9).map(|l| cell.files(l)).collect();
    let limits = Limits::default();
    let mut enc = vec![Vec::new(); 10];
    let mut dec = vec![Vec::new(); 10];
    for r in 0..rounds {
        for j in 0..10 {
            let level = (j + 3 * r) % 10;
            let t = Instant::now();
            for (k, v) in cell.keys.iter().zip(&cell.values) {
                black_box(format::encode(k, v, cell.meta(), level as u32).unwrap());
            }
            enc[level].push(t.elapsed().as_secs_f64() * 1e6 / n);
        }
        for j in 0..10 {
            let level = (j + 3 * r + 5) % 10;
            let t = Instant::now();
            for (k, f) in cell.keys.iter().zip(&files[level]) {
                black_box(format::decode(f, k, &limits).unwrap());
            }
            dec[level].push(t.elapsed().as_secs_f64() * 1e6 / n);
        }
    }
    let original: usize = cell.values.iter().map(Vec::len).sum();
    files
        .iter()
        .zip(enc.into_iter().zip(dec))
        .map(|(files, (enc, dec))| {
            for ((k, f), v) in cell.keys.iter().zip(files).zip(&cell.values) {
                assert_eq!(&format::decode(f, k, &limits).unwrap().value, v);
            }
            let payload: usize = files
                .iter()
                .zip(&cell.keys)
                .map(|(f, k)| f.len() - format::HEADER_LEN - k.len())
                .sum();
            Quick {
                ratio: payload as f64 / original as f64,
                file: files.iter().map(Vec::len).sum::<usize>() as f64 / n,
                charged: files.iter().map(|f| charge(f.len())).sum::<u64>() as f64 / n,
                encode_us: median(enc),
                decode_us: median(dec),
                lens: files.iter().map(Vec::len).collect(),
            }
        })
        .collect()
}

/// Table 3b: stored (level 0) where the stored file fits in one allocation unit, else
/// `level`, against `level` alone.
fn print_store_small(cells: &[Cell], quick: &BTreeMap<(usize, u32), Quick>, level: u32) {
    println!(
        "Table 3b. Rule \"level 0 if the stored entry file fits in one 4 KiB unit, else L{level}\", against L{level} alone (paired timings; the rule's times mix the two levels' by the share stored):"
    );
    println!();
    println!("| kind / size | values stored | charged bytes L{level} | charged bytes rule | encode µs L{level} / rule | decode µs L{level} / rule |");
    println!("|---|---|---|---|---|---|");
    for (i, c) in cells.iter().enumerate() {
        let (stored, compressed) = (&quick[&(i, 0)], &quick[&(i, level)]);
        let n = stored.lens.len() as f64;
        let fits: Vec<bool> = stored.lens.iter().map(|&l| l as u64 <= UNIT).collect();
        let share = fits.iter().filter(|f| **f).count() as f64 / n;
        let rule_charge: u64 = fits
            .iter()
            .zip(stored.lens.iter().zip(&compressed.lens))
            .map(|(&fit, (&s, &z))| charge(if fit { s } else { z }))
            .sum();
        // Per-value times are not kept: the rule's time is the share-weighted mix.
        let mix = |a: f64, b: f64| share * a + (1.0 - share) * b;
        println!(
            "| {} {} | {:.0}% | {:.0} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} |",
            c.kind,
            size_label(c.size),
            share * 100.0,
            compressed.charged,
            rule_charge as f64 / n,
            compressed.encode_us,
            mix(stored.encode_us, compressed.encode_us),
            compressed.decode_us,
            mix(stored.decode_us, compressed.decode_us),
        );
    }
    println!();
}

/// The text of each corpus path in `ANSWERCACHE_BENCH_CORPUS`, labelled by its file name.
fn corpora() -> Vec<(String, Vec<u8>)> {
    let Some(paths) = std::env::var_os("ANSWERCACHE_BENCH_CORPUS") else {
        return Vec::new();
    };
    std::env::split_paths(&paths)
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| {
            let mut files = Vec::new();
            collect(&p, &mut files);
            files.sort();
            let mut text = Vec::new();
            for f in &files {
                text.extend(std::fs::read(f).unwrap_or_default());
                text.push(b'\n');
            }
            let label = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            (format!("real:{label}"), text)
        })
        .collect()
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            collect(&e.path(), out);
        }
    } else if p.is_file()
        && p.extension()
            .is_some_and(|e| ["md", "txt", "json", "rst"].iter().any(|x| e == *x))
    {
        out.push(p.to_owned());
    }
}

fn print_quick_tables(cells: &[Cell], quick: &BTreeMap<(usize, u32), Quick>, rounds: usize) {
    let levels: Vec<u32> = (0..=9).collect();
    let header = |what: &str| {
        let cols: Vec<String> = levels.iter().map(|l| format!("L{l}")).collect();
        println!("| {what} | {} |", cols.join(" | "));
        println!("|---|{}", "---|".repeat(levels.len()));
    };
    let table = |title: &str, f: &dyn Fn(&Quick) -> String| {
        println!("{title}");
        println!();
        header("kind / size");
        for (i, c) in cells.iter().enumerate() {
            let row: Vec<String> = levels.iter().map(|&l| f(&quick[&(i, l)])).collect();
            println!(
                "| {} {} | {} |",
                c.kind,
                size_label(c.size),
                row.join(" | ")
            );
        }
        println!();
    };
    table(
        "Table 1. Ratio, gzip payload / value (lower is smaller):",
        &|q| format!("{:.3}", q.ratio),
    );
    table(
        &format!(
            "Table 2a. Paired timing: format::encode µs per value (gzip + blake3; median of {rounds} rounds):"
        ),
        &|q| format!("{:.1}", q.encode_us),
    );
    table(
        &format!(
            "Table 2b. Paired timing: format::decode µs per value (blake3 + inflate; median of {rounds} rounds):"
        ),
        &|q| format!("{:.1}", q.decode_us),
    );
    table(
        "Table 3. Entry file bytes per value / bytes the warm budget charges (4 KiB units + 128):",
        &|q| format!("{:.0} / {:.0}", q.file, q.charged),
    );
}

/// Median µs of `std::fs::read` of a `len`-byte file in the page cache.
fn page_cache_read_us(dir: &Path, len: usize) -> f64 {
    let path = dir.join(format!("f{len}"));
    std::fs::write(&path, vec![b'x'; len]).unwrap();
    let mut times = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        black_box(std::fs::read(&path).unwrap());
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(times)
}

/// Where criterion writes its estimates (its own rule: `$CRITERION_HOME`, else the target
/// directory's `criterion/`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // <target>/release/deps/compression-<hash>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// This run's criterion estimates (ns per iteration: the slope where there is one, else the
/// mean, as criterion prints), by full id.
fn estimates(since: SystemTime) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Some(root) = criterion_dir().map(|d| d.join("compression")) else {
        return out;
    };
    for bench in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for level in std::fs::read_dir(bench.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let new = level.path().join("new");
            let (Ok(b), Ok(e)) = (
                std::fs::read(new.join("benchmark.json")),
                std::fs::read(new.join("estimates.json")),
            ) else {
                continue;
            };
            let fresh = std::fs::metadata(new.join("estimates.json"))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            let (Ok(b), Ok(e)) = (
                serde_json::from_slice::<serde_json::Value>(&b),
                serde_json::from_slice::<serde_json::Value>(&e),
            ) else {
                continue;
            };
            let ns = e["slope"]["point_estimate"]
                .as_f64()
                .or_else(|| e["mean"]["point_estimate"].as_f64());
            if let (true, Some(id), Some(ns)) = (fresh, b["full_id"].as_str(), ns) {
                out.insert(id.to_owned(), ns);
            }
        }
    }
    out
}

fn id(op: &str, kind: &str, size: usize, level: u32) -> String {
    format!("compression/{op}/{kind}/{}/L{level}", size_label(size))
}

/// The per size class summary from this run's criterion estimates and the cells' sizes.
/// Encode and decode µs per value of cell `i` at a level, if measured.
type Times<'a> = dyn Fn(usize, &Cell, u32) -> Option<(f64, f64)> + 'a;

fn print_summary(
    title: &str,
    levels: &[u32],
    cells: &[Cell],
    quick: &BTreeMap<(usize, u32), Quick>,
    times: &Times<'_>,
    read_slope_us_per_kib: f64,
) {
    println!(
        "{title} Per size class, mean over the {} generated kinds, against L{BASE_LEVEL}:",
        ValueKind::ALL.len()
    );
    println!();
    println!("| size | level | encode µs (write) | decode µs (read) | file bytes (read) | charged bytes | entries per budget vs L{BASE_LEVEL} | Δwrite µs | Δread µs (CPU + page-cache copy) | write µs per KiB of budget saved |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let generated: Vec<(usize, &Cell)> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.kind.starts_with("real:"))
        .collect();
    for &size in &SIZES {
        let row = |level: u32| -> Option<(f64, f64, f64, f64)> {
            let mut acc = (0.0, 0.0, 0.0, 0.0);
            let mut n = 0.0;
            for (i, c) in generated.iter().filter(|(_, c)| c.size == size) {
                let q = quick.get(&(*i, level))?;
                let (e, d) = times(*i, c, level)?;
                acc = (acc.0 + e, acc.1 + d, acc.2 + q.file, acc.3 + q.charged);
                n += 1.0;
            }
            (n > 0.0).then(|| (acc.0 / n, acc.1 / n, acc.2 / n, acc.3 / n))
        };
        let Some(base) = row(BASE_LEVEL) else {
            continue;
        };
        for &level in levels {
            let Some((e, d, file, charged)) = row(level) else {
                continue;
            };
            let read_delta = (d - base.1) + (file - base.2) / 1024.0 * read_slope_us_per_kib;
            let saved_kib = (base.3 - charged) / 1024.0;
            let per_kib = if level == BASE_LEVEL || saved_kib.abs() < 1e-9 {
                "-".to_owned()
            } else {
                format!("{:.1}", (e - base.0) / saved_kib)
            };
            println!(
                "| {} | L{level} | {e:.1} | {d:.1} | {file:.0} | {charged:.0} | {:+.1}% | {:+.1} | {read_delta:+.1} | {per_kib} |",
                size_label(size),
                (base.3 / charged - 1.0) * 100.0,
                e - base.0,
            );
        }
    }
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (criterion's test mode:
    // each bench once). The paired loop then runs one round on two values per cell.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let started = SystemTime::now();
    println!("compression: {}", workload::machine());
    println!();

    let mut cells: Vec<Cell> = Vec::new();
    for kind in ValueKind::ALL {
        for &size in &SIZES {
            // Test mode (`cargo test --benches`) checks the code, not the figures.
            let n = if bench_mode { values_per_cell(size) } else { 2 };
            cells.push(Cell::generated(kind, size, n));
        }
    }
    if let Some(dump) = std::env::var_os("ANSWERCACHE_BENCH_DUMP") {
        let dump = PathBuf::from(dump);
        std::fs::create_dir_all(&dump).unwrap();
        for c in &cells {
            let name = format!("{}-{}", c.kind, size_label(c.size));
            std::fs::write(dump.join(name), &c.values[1]).unwrap();
        }
    }
    for (label, text) in corpora() {
        println!("corpus {label}: {} bytes", text.len());
        for &size in &SIZES {
            cells.extend(Cell::corpus(&label, &text, size));
        }
    }
    let rounds = if bench_mode { ROUNDS } else { 1 };
    let mut quick_results = BTreeMap::new();
    for (i, cell) in cells.iter().enumerate() {
        for (level, q) in paired(cell, rounds).into_iter().enumerate() {
            quick_results.insert((i, level as u32), q);
        }
    }
    println!();
    print_quick_tables(&cells, &quick_results, rounds);
    print_store_small(&cells, &quick_results, BASE_LEVEL);

    let dir = workload::bench_dir("compression");
    let reads: Vec<(usize, f64)> = [4 << 10, 16 << 10, 64 << 10, 256 << 10]
        .into_iter()
        .map(|len| (len, page_cache_read_us(dir.path(), len)))
        .collect();
    let (small, large) = (reads[0], reads[reads.len() - 1]);
    let slope = (large.1 - small.1) / ((large.0 - small.0) as f64 / 1024.0);
    println!("Table 4. std::fs::read of a file in the page cache (median of 300):");
    println!();
    println!("| file | µs |");
    println!("|---|---|");
    for (len, us) in &reads {
        println!("| {} | {us:.1} |", size_label(*len));
    }
    println!();
    println!("Marginal cost of a page-cache byte: {slope:.3} µs per KiB (4 to 256 KiB).");
    println!();
    let paired_times = |i: usize, _: &Cell, level: u32| {
        let q = quick_results.get(&(i, level))?;
        Some((q.encode_us, q.decode_us))
    };
    print_summary(
        &format!("Table 5 (paired times, median of {rounds} rounds)."),
        &(0..=9).collect::<Vec<u32>>(),
        &cells,
        &quick_results,
        &paired_times,
        slope,
    );

    let levels = timed_levels();
    let mut c = Criterion::default()
        .nresamples(10_000)
        .configure_from_args();
    {
        let mut group = c.benchmark_group("compression");
        for cell in cells.iter().filter(|c| !c.kind.starts_with("real:")) {
            let size = size_label(cell.size);
            group.throughput(Throughput::Bytes(cell.size as u64));
            if cell.size >= 64 << 10 {
                group.sampling_mode(SamplingMode::Flat).sample_size(10);
            } else {
                group.sampling_mode(SamplingMode::Auto).sample_size(30);
            }
            let n = cell.values.len();
            let limits = Limits::default();
            for &level in &levels {
                let meta = cell.meta();
                group.bench_function(
                    BenchmarkId::new(format!("encode/{}/{size}", cell.kind), format!("L{level}")),
                    |b| {
                        let mut j = 0;
                        b.iter(|| {
                            j = (j + 1) % n;
                            format::encode(&cell.keys[j], &cell.values[j], meta, level).unwrap()
                        })
                    },
                );
                let files = cell.files(level);
                group.bench_function(
                    BenchmarkId::new(format!("decode/{}/{size}", cell.kind), format!("L{level}")),
                    |b| {
                        let mut j = 0;
                        b.iter(|| {
                            j = (j + 1) % n;
                            format::decode(&files[j], &cell.keys[j], &limits).unwrap()
                        })
                    },
                );
            }
        }
        group.finish();
    }
    c.final_summary();

    if bench_mode {
        let est = estimates(started);
        println!();
        if est.is_empty() {
            println!("(no criterion estimates from this run found: no summary)");
        } else {
            let times = |_: usize, c: &Cell, level: u32| {
                Some((
                    est.get(&id("encode", &c.kind, c.size, level))? / 1e3,
                    est.get(&id("decode", &c.kind, c.size, level))? / 1e3,
                ))
            };
            print_summary(
                "Table 6 (criterion times, sequential: a cross-check of table 5).",
                &levels,
                &cells,
                &quick_results,
                &times,
                slope,
            );
        }
    }
}
