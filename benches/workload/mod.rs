//! The shared, deterministic workload of every bench: LLM-like responses and request-hash keys,
//! with skewed (Zipf) access. No network, no downloaded data: everything comes from a seeded
//! generator, so two runs (and two machines) measure the same bytes.
//!
//! - Values: OpenAI-style chat-completion JSON and plain markdown text, both made of
//!   English-like prose (a Zipf-distributed vocabulary, sentences, paragraphs, lists, headers)
//!   with fenced code blocks, at exactly 1, 4, 16 or 64 KiB. Their gzip ratio is close to real
//!   model output (about 2.5-3.5x), which matters: the warm tier compresses.
//! - Keys: `<model>:<64 hex chars>` like the request hashes an agent backend derives from the
//!   canonical request.
//! - Access: Zipf (s = 1.0) over the key set, pre-drawn so that sampling is not measured.
//!
//! Lives in a folder so that cargo does not take it for a bench target; included by each bench
//! file with `#[path = "workload/mod.rs"] mod workload;`. Each bench uses a
//! subset, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Value sizes of the issue: 1, 4, 16 and 64 KiB.
pub const SIZES: [usize; 4] = [1 << 10, 4 << 10, 16 << 10, 64 << 10];

/// A human label for a size: "1KiB", "4KiB", ...
pub fn size_label(size: usize) -> String {
    format!("{}KiB", size >> 10)
}

/// SplitMix64: tiny, fast, seeded, and good enough for workload generation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_0F7C_AC4E_0001)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Zipf sampler over `0..n` by inverse CDF (binary search over the cumulative weights).
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Rank `i` (0-based) has weight `1 / (i + 1)^s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 0..n {
            sum += 1.0 / ((i + 1) as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// `len` Zipf(s = 1.0) draws over `0..n`, shuffled so that the hottest keys are not the first
/// ones generated (rank `r` maps to a fixed random key index).
pub fn zipf_sequence(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let zipf = Zipf::new(n, 1.0);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        perm.swap(i, j);
    }
    (0..len).map(|_| perm[zipf.sample(&mut rng)]).collect()
}

/// `len` uniform draws over `0..n`.
pub fn uniform_sequence(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.below(n)).collect()
}

const MODELS: [&str; 4] = [
    "gpt-4o-2024-08-06",
    "gpt-4o-mini-2024-07-18",
    "claude-3-5-sonnet-20241022",
    "llama-3.1-70b-instruct",
];

/// The cache key of request `i`: `<model>:<blake3 hex of a request-like string>`, ~90 bytes.
pub fn key(i: u64) -> String {
    let model = MODELS[(i % MODELS.len() as u64) as usize];
    let request = format!(
        "{{\"model\":\"{model}\",\"temperature\":0,\"messages\":[{{\"role\":\"user\",\"content\":\"question #{i}\"}}]}}"
    );
    format!("{model}:{}", blake3::hash(request.as_bytes()).to_hex())
}

/// `n` keys as owned byte vectors (what the benches look up).
pub fn keys(n: usize, salt: u64) -> Vec<Vec<u8>> {
    (0..n as u64)
        .map(|i| key(i.wrapping_add(salt.wrapping_mul(1_000_003))).into_bytes())
        .collect()
}

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OpenAI-style `chat.completion` JSON body.
    ChatJson,
    /// Plain markdown text (prose, lists, code blocks).
    Text,
}

impl Kind {
    /// Both kinds.
    pub const ALL: [Kind; 2] = [Kind::ChatJson, Kind::Text];

    /// "json" or "text".
    pub fn label(self) -> &'static str {
        match self {
            Kind::ChatJson => "json",
            Kind::Text => "text",
        }
    }
}

/// Value `seed` of `kind`, exactly `size` bytes, ASCII.
pub fn value(kind: Kind, size: usize, seed: u64) -> Vec<u8> {
    match kind {
        Kind::Text => {
            let mut rng = Rng::new(seed);
            let mut s = String::with_capacity(size + 512);
            while s.len() < size {
                block(&mut rng, &mut s);
            }
            s.truncate(size);
            s.into_bytes()
        }
        Kind::ChatJson => chat_json(&chat_completion(size, seed), size),
    }
}

/// `n` values of `kind` and `size` (seeds `salt*n .. salt*n + n`), shared as `Arc<[u8]>`.
pub fn values(kind: Kind, size: usize, n: usize, salt: u64) -> Vec<Arc<[u8]>> {
    (0..n as u64)
        .map(|i| Arc::from(value(kind, size, salt.wrapping_mul(n as u64) + i)))
        .collect()
}

/// A typed chat completion, for the typed `get`/`set` benches (serde, bincode on disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always "chat.completion".
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model name.
    pub model: String,
    /// One choice.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
    /// `fp_...`.
    pub system_fingerprint: String,
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position.
    pub index: u32,
    /// The assistant's message.
    pub message: Message,
    /// "stop", "length", ...
    pub finish_reason: String,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// "assistant".
    pub role: String,
    /// The answer text.
    pub content: String,
}

/// Token usage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

/// A completion whose JSON rendering is about `size` bytes (exactly, via [`chat_json`]).
pub fn chat_completion(size: usize, seed: u64) -> ChatCompletion {
    let mut rng = Rng::new(seed ^ 0xC0FF_EE00);
    let alnum = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let id: String = (0..29)
        .map(|_| alnum[rng.below(alnum.len())] as char)
        .collect();
    let fp: String = (0..10)
        .map(|_| b"0123456789abcdef"[rng.below(16)] as char)
        .collect();
    let mut content = String::with_capacity(size);
    while content.len() + 420 < size {
        block(&mut rng, &mut content);
    }
    let completion_tokens = (content.len() / 4) as u32;
    let prompt_tokens = 50 + rng.below(2000) as u32;
    ChatCompletion {
        id: format!("chatcmpl-{id}"),
        object: "chat.completion".into(),
        created: 1_730_000_000 + rng.below(20_000_000) as u64,
        model: MODELS[rng.below(MODELS.len())].into(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: "assistant".into(),
                content,
            },
            finish_reason: "stop".into(),
        }],
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        },
        system_fingerprint: format!("fp_{fp}"),
    }
}

/// Renders `c` as the JSON an API returns, trimmed or padded (content only) to exactly `size`
/// bytes.
pub fn chat_json(c: &ChatCompletion, size: usize) -> Vec<u8> {
    let render = |content: &str| {
        let choice = &c.choices[0];
        format!(
            "{{\"id\":\"{}\",\"object\":\"{}\",\"created\":{},\"model\":\"{}\",\"choices\":[{{\"index\":{},\"message\":{{\"role\":\"{}\",\"content\":\"{}\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":\"{}\"}}],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}},\"system_fingerprint\":\"{}\"}}",
            c.id,
            c.object,
            c.created,
            c.model,
            choice.index,
            choice.message.role,
            json_escape(content),
            choice.finish_reason,
            c.usage.prompt_tokens,
            c.usage.completion_tokens,
            c.usage.total_tokens,
            c.system_fingerprint
        )
    };
    let mut content = c.choices[0].message.content.clone();
    let mut out = render(&content);
    while out.len() > size && !content.is_empty() {
        let over = out.len() - size;
        let keep = content.len().saturating_sub(over.max(1));
        content.truncate(keep);
        out = render(&content);
    }
    if out.len() < size {
        // Spaces need no escaping: one render lands exactly on `size`.
        content.extend(std::iter::repeat_n(' ', size - out.len()));
        out = render(&content);
    }
    debug_assert_eq!(out.len(), size);
    out.into_bytes()
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 16);
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// ~600 common English and technical words; drawn with Zipf weights so that "the" is common
/// and "idempotent" is rare, as in real answers.
const VOCABULARY: &str = "the of and to a in is that for it as with be on this are by or not you \
can an from at which have will we if but your more one all use when also has their so there \
these other they its been should may each would was than into such only then how some what \
value function data file code example need first time set case make used same return using \
new would like call type two any see error list way where because both while number string \
system cache request response model user input output key result memory disk process state \
different however instead without between within through after before during under over \
default option configuration server client thread task async await future runtime lock \
method class object field struct trait module crate package library version update change \
test check run build write read open close start stop create delete remove insert query \
table index column row record entry item element array vector map hash tree node edge graph \
path directory name size length count total limit budget capacity timeout retry error \
failure success status message event log trace metric latency throughput performance \
simple complex important common specific general possible available necessary useful \
correct wrong better best large small fast slow high low long short early late recent \
current previous next last final initial main primary secondary additional optional \
following above below here there now then again still already often usually always never \
sometimes typically generally especially particularly simply directly easily quickly \
carefully explicitly implicitly automatically manually safely efficiently correctly \
approach solution problem issue question answer reason idea point part step stage phase \
level layer tier policy rule pattern strategy technique algorithm structure design \
pipeline service endpoint api token prompt context window embedding vector search rank \
document paragraph sentence word character byte bit line page section chapter summary \
note warning tip important remember consider ensure avoid prefer choose keep handle \
support provide allow require include contain depend define declare implement extend \
override wrap unwrap parse serialize deserialize encode decode compress decompress \
validate verify compute calculate measure compare sort filter group merge split join \
convert transform generate produce consume store load save fetch send receive connect \
user customer developer team project application program environment production staging \
local remote network connection socket address port protocol header body payload \
schema format json yaml text binary integer float boolean null empty true false zero \
idempotent deterministic concurrent parallel sequential atomic durable consistent \
eventual transient persistent volatile immutable mutable shared exclusive private public \
because therefore although unless whether either neither rather quite very much many \
few several most least enough too well just even also only almost nearly exactly";

const CODE_IDENTS: &str = "cache key value entry result config client request response \
items buffer reader writer path file handle state count total index offset len size \
timeout retries attempt error err msg data payload body headers url token model prompt";

const CODE_TYPES: &str = "String Vec<u8> usize u64 bool Option<String> Result<(), Error> \
HashMap<String, u64> Arc<Mutex<State>> &str Duration PathBuf";

fn words(list: &'static str) -> Vec<&'static str> {
    list.split_whitespace().collect()
}

struct Vocab {
    words: Vec<&'static str>,
    zipf: Zipf,
    idents: Vec<&'static str>,
    types: Vec<&'static str>,
}

fn vocab() -> &'static Vocab {
    static V: std::sync::OnceLock<Vocab> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let w = words(VOCABULARY);
        let zipf = Zipf::new(w.len(), 1.05);
        Vocab {
            words: w,
            zipf,
            idents: words(CODE_IDENTS),
            types: CODE_TYPES.split(' ').filter(|s| !s.is_empty()).collect(),
        }
    })
}

fn word(rng: &mut Rng) -> &'static str {
    let v = vocab();
    v.words[v.zipf.sample(rng)]
}

fn sentence(rng: &mut Rng, out: &mut String) {
    let n = 6 + rng.below(18);
    for i in 0..n {
        let w = word(rng);
        if i == 0 {
            let mut cs = w.chars();
            if let Some(c) = cs.next() {
                out.push(c.to_ascii_uppercase());
                out.push_str(cs.as_str());
            }
        } else {
            out.push(' ');
            if rng.chance(0.04) {
                out.push('`');
                out.push_str(ident(rng).as_str());
                out.push('`');
            } else if rng.chance(0.03) {
                out.push_str(&(rng.below(10_000)).to_string());
            } else {
                out.push_str(w);
            }
        }
        if i + 1 < n && rng.chance(0.08) {
            out.push(',');
        }
    }
    out.push(if rng.chance(0.1) { '?' } else { '.' });
}

fn ident(rng: &mut Rng) -> String {
    let v = vocab();
    let mut s = String::from(v.idents[rng.below(v.idents.len())]);
    if rng.chance(0.5) {
        s.push('_');
        s.push_str(v.idents[rng.below(v.idents.len())]);
    }
    s
}

fn code_block(rng: &mut Rng, out: &mut String) {
    let v = vocab();
    let rust = rng.chance(0.6);
    out.push_str(if rust { "```rust\n" } else { "```python\n" });
    let lines = 4 + rng.below(14);
    let mut depth = 0usize;
    for _ in 0..lines {
        for _ in 0..depth + usize::from(!rust && depth == 0) {
            out.push_str("    ");
        }
        let a = ident(rng);
        let b = ident(rng);
        let t = v.types[rng.below(v.types.len())];
        let line = match (rust, rng.below(7)) {
            (true, 0) if depth < 2 => {
                depth += 1;
                format!(
                    "fn {a}({b}: {t}) -> {} {{",
                    v.types[rng.below(v.types.len())]
                )
            }
            (true, 1) if depth < 3 => {
                depth += 1;
                format!("for {a} in {b}.iter() {{")
            }
            (true, 2) if depth > 0 => {
                depth -= 1;
                "}".to_string()
            }
            (true, 3) => format!("let {a} = {b}.get(&key).cloned().unwrap_or_default();"),
            (true, 4) => format!("// {} {} {}", word(rng), word(rng), word(rng)),
            (true, _) => format!("let {a}: {t} = {b}.{}({});", ident(rng), rng.below(4096)),
            (false, 0) => format!("def {a}({b}, timeout={}):", rng.below(60)),
            (false, 1) => format!("for {a} in {b}:"),
            (false, 2) => format!("return {a}.get(\"{}\", None)", word(rng)),
            (false, 3) => format!("# {} {} {}", word(rng), word(rng), word(rng)),
            (false, _) => format!("{a} = {b}.{}({})", ident(rng), rng.below(4096)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    while rust && depth > 0 {
        depth -= 1;
        for _ in 0..depth {
            out.push_str("    ");
        }
        out.push_str("}\n");
    }
    out.push_str("```\n\n");
}

/// One markdown block: a paragraph (most often), a list, a header or a code block.
fn block(rng: &mut Rng, out: &mut String) {
    match rng.below(20) {
        0..=11 => {
            for _ in 0..2 + rng.below(5) {
                sentence(rng, out);
                out.push(' ');
            }
            out.push_str("\n\n");
        }
        12..=14 => {
            for i in 0..2 + rng.below(5) {
                if rng.chance(0.5) {
                    out.push_str(&format!("{}. ", i + 1));
                } else {
                    out.push_str("- ");
                }
                sentence(rng, out);
                out.push('\n');
            }
            out.push('\n');
        }
        15 => {
            out.push_str("## ");
            for _ in 0..2 + rng.below(4) {
                out.push_str(word(rng));
                out.push(' ');
            }
            out.push_str("\n\n");
        }
        _ => code_block(rng, out),
    }
}

/// A fresh directory for a bench: under `$TIERCACHE_BENCH_DIR` if set (to put the warm tier on
/// a particular disk), else under the system temp dir. Removed when dropped.
pub fn bench_dir(name: &str) -> tempfile::TempDir {
    let base = std::env::var_os("TIERCACHE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let _ = std::fs::create_dir_all(&base);
    tempfile::Builder::new()
        .prefix(&format!("tiercache-bench-{name}-"))
        .tempdir_in(base)
        .unwrap_or_else(|e| panic!("cannot create a bench directory: {e}"))
}

/// The runtime every bench drives its futures on: multi-threaded, 2 workers (the CI machine has
/// 2 cores), with the blocking pool the warm tier uses.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}

/// A one-line description of the machine for printed reports: cores, CPU model, load.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, load average {load}")
}
