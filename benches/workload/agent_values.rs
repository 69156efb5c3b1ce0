//! The four kinds of value an agent backend caches, each of an exact size and a function of a
//! seed, for benches that need more than the two kinds of `Kind` in `workload/mod.rs` (the compression
//! study, `benches/compression.rs`):
//!
//! - [`ValueKind::Prose`]: an English prose answer (paragraphs and lists, an inline
//!   `identifier` now and then, no headings and no code blocks);
//! - [`ValueKind::Markdown`]: a markdown answer with headings, lists and fenced Rust/Python code
//!   blocks (`Kind::Text` of `workload/mod.rs`);
//! - [`ValueKind::Chat`]: an OpenAI-style `chat.completion` body with `usage`; every other seed
//!   is a tool-call turn (`finish_reason: "tool_calls"`, a search call, and from 4 KiB a
//!   `write_file` call whose `content` argument is a markdown document, JSON inside a JSON
//!   string), the others a plain answer;
//! - [`ValueKind::ToolResult`]: a web/docs search tool's JSON result: query, a list of results
//!   (title, URL, snippet, score, date, source) and timing.
//!
//! All words come from the library generator ([`answercache::workload`]: a ~600-word
//! vocabulary with Zipf weights), so their compressibility is that generator's, close to real
//! model output at 4-64 KiB by its own account; `benches/COMPRESSION.md` compares it with real
//! markdown and prose (`ANSWERCACHE_BENCH_CORPUS`).
//!
//! Included by a bench file with `#[path = "workload/agent_values.rs"] mod agent_values;`.

#![allow(dead_code)]

use answercache::workload::{self, FunctionCall, Rng, ToolCall};
use serde_json::json;

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// English prose answer.
    Prose,
    /// Markdown answer with code blocks.
    Markdown,
    /// OpenAI-style chat completion JSON (half of them tool-call turns).
    Chat,
    /// A search tool's JSON result list.
    ToolResult,
}

impl ValueKind {
    /// Every kind.
    pub const ALL: [ValueKind; 4] = [
        ValueKind::Prose,
        ValueKind::Markdown,
        ValueKind::Chat,
        ValueKind::ToolResult,
    ];

    /// "prose", "markdown", "chat-json", "tool-json".
    pub fn label(self) -> &'static str {
        match self {
            ValueKind::Prose => "prose",
            ValueKind::Markdown => "markdown",
            ValueKind::Chat => "chat-json",
            ValueKind::ToolResult => "tool-json",
        }
    }
}

/// Value `seed` of `kind`, exactly `size` bytes (a chat completion below ~700 bytes is
/// longer: its envelope alone is).
pub fn value(kind: ValueKind, size: usize, seed: u64) -> Vec<u8> {
    match kind {
        ValueKind::Prose => prose(&mut Rng::stream(seed, 11), size).into_bytes(),
        ValueKind::Markdown => crate::workload::value(crate::workload::Kind::Text, size, seed),
        ValueKind::Chat => chat(size, seed),
        ValueKind::ToolResult => tool_result(size, seed),
    }
}

/// Prose of exactly `len` bytes: the library's markdown without its headings and fenced code
/// blocks, cut at `len`.
pub fn prose(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 4096);
    let mut want = 2 * len + 2048;
    while out.len() < len {
        let md = workload::markdown(rng, want);
        let mut in_code = false;
        for line in md.lines() {
            if line.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code || line.starts_with('#') {
                continue;
            }
            if line.is_empty() && (out.is_empty() || out.ends_with("\n\n")) {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        want *= 2;
    }
    out.truncate(len);
    out
}

/// Prose with nothing JSON would escape: one line of words.
fn flat_prose(rng: &mut Rng, len: usize) -> String {
    prose(rng, len)
        .chars()
        .map(|c| match c {
            '\n' | '"' | '\\' => ' ',
            c => c,
        })
        .collect()
}

fn alnum(rng: &mut Rng, n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n).map(|_| char::from(rng.pick(A))).collect()
}

/// `n` words of prose joined by `sep`, lower case: a URL slug or a query.
fn words(rng: &mut Rng, n: usize, sep: &str) -> String {
    let text = flat_prose(rng, 40 * n + 64);
    let picked: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() > 1)
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect();
    picked.join(sep)
}

/// A chat completion of exactly `size` bytes (above ~700 bytes); odd seeds are tool-call
/// turns.
pub fn chat(size: usize, seed: u64) -> Vec<u8> {
    let mut c = crate::workload::chat_completion(size, seed);
    if seed % 2 == 1 {
        let mut rng = Rng::stream(seed, 12);
        let call = |name: &str, args: serde_json::Value, rng: &mut Rng| ToolCall {
            id: format!("call_{}", alnum(rng, 24)),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: args.to_string(),
            },
        };
        let n = 5 + rng.below(6);
        let query = words(&mut rng, n, " ");
        let mut calls = vec![call(
            "search_docs",
            json!({
                "query": query,
                "top_k": 1 + rng.below(10),
                "filters": { "lang": "rust", "since": "2024-01-01" },
            }),
            &mut rng,
        )];
        if size >= 4 << 10 {
            let doc = workload::markdown(&mut rng, size / 3);
            let path = format!("docs/{}.md", words(&mut rng, 3, "-"));
            calls.push(call(
                "write_file",
                json!({ "path": path, "content": doc, "overwrite": rng.chance(0.5) }),
                &mut rng,
            ));
        }
        if size >= 64 << 10 {
            let path = format!("src/{}.rs", words(&mut rng, 2, "_"));
            calls.push(call(
                "read_file",
                json!({ "path": path, "start_line": 1 + rng.below(400) }),
                &mut rng,
            ));
        }
        let choice = &mut c.choices[0];
        choice.message.tool_calls = calls;
        choice.finish_reason = "tool_calls".into();
    }
    workload::chat_json(&c, size)
}

const SITES: [&str; 8] = [
    "docs.rs",
    "doc.rust-lang.org",
    "stackoverflow.com",
    "github.com",
    "developer.mozilla.org",
    "en.wikipedia.org",
    "blog.example-engineering.com",
    "users.rust-lang.org",
];

fn url(rng: &mut Rng, site: &str) -> String {
    match site {
        "docs.rs" => format!(
            "https://docs.rs/{}/{}.{}.{}/{}/struct.{}.html",
            words(rng, 1, ""),
            rng.below(3),
            rng.below(60),
            rng.below(20),
            words(rng, 1, ""),
            words(rng, 2, "")
        ),
        "stackoverflow.com" => format!(
            "https://stackoverflow.com/questions/{}/{}",
            10_000_000 + rng.below(70_000_000),
            words(rng, 6, "-")
        ),
        "github.com" => format!(
            "https://github.com/{}/{}/issues/{}",
            words(rng, 1, ""),
            words(rng, 2, "-"),
            1 + rng.below(9000)
        ),
        "en.wikipedia.org" => format!("https://en.wikipedia.org/wiki/{}", words(rng, 2, "_")),
        _ => format!(
            "https://{site}/{}/{}",
            words(rng, 2, "-"),
            words(rng, 4, "-")
        ),
    }
}

fn result(rng: &mut Rng, rank: usize) -> serde_json::Value {
    let site = rng.pick(&SITES);
    let n = 4 + rng.below(6);
    let title = words(rng, n, " ");
    let snippet_len = 150 + rng.below(250);
    json!({
        "rank": rank,
        "title": format!("{title} - {site}"),
        "url": url(rng, site),
        "snippet": flat_prose(rng, snippet_len),
        "score": (rng.unit() * 1e5).round() / 1e5,
        "published_date": format!("20{:02}-{:02}-{:02}", 18 + rng.below(8), 1 + rng.below(12), 1 + rng.below(28)),
        "source": site,
    })
}

/// A search tool's result of exactly `size` bytes (above ~500): results are added while they
/// fit, then the last snippet is lengthened (or, with one result, shortened) to land on `size`.
pub fn tool_result(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::stream(seed, 13);
    let n = 4 + rng.below(6);
    let query = words(&mut rng, n, " ");
    let took = 40 + rng.below(900);
    let request_id = alnum(&mut rng, 20);
    let mut results: Vec<serde_json::Value> = Vec::new();
    let render = |results: &[serde_json::Value]| {
        serde_json::to_vec(&json!({
            "query": query,
            "request_id": request_id,
            "results": results,
            "total_results": 1000 + took * 37,
            "response_time_ms": took,
        }))
        .unwrap_or_default()
    };
    loop {
        let next = result(&mut rng, results.len() + 1);
        results.push(next);
        let len = render(&results).len();
        if len > size {
            if results.len() > 1 {
                results.pop();
            } else {
                // One result is too long: shorten its snippet (ASCII, nothing escaped).
                let snippet = results[0]["snippet"].as_str().unwrap_or_default();
                let keep = snippet.len().saturating_sub(len - size);
                results[0]["snippet"] = snippet[..keep].to_owned().into();
            }
            break;
        }
    }
    let mut out = render(&results);
    if out.len() < size {
        let missing = size - out.len();
        let pad = flat_prose(&mut rng, missing);
        if let Some(last) = results.last_mut() {
            let snippet = last["snippet"].as_str().unwrap_or_default().to_owned();
            last["snippet"] = (snippet + &pad).into();
        }
        out = render(&results);
    }
    out
}
