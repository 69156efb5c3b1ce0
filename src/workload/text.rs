//! English-like assistant answers: markdown prose with headings, lists and fenced code blocks.
//!
//! Why not random bytes or lorem ipsum: the warm tier compresses, so its disk footprint and
//! its read and write costs depend on what the values look like. Real LLM answers repeat a
//! modest vocabulary, markdown structure and code idioms; this generator draws words from a
//! ~600-word vocabulary with Zipf weights ("the" is common, "idempotent" rare), so that the
//! gzip ratio of its text is close to real model output (about 2-2.7x at 4-64 KiB, level 3).

use std::fmt::Write;
use std::sync::OnceLock;

use super::rng::{Rng, Zipf};

/// ~600 common English and technical words, most common first (their Zipf rank).
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

/// Identifiers of the code blocks.
const CODE_IDENTS: &str = "cache key value entry result config client request response \
items buffer reader writer path file handle state count total index offset len size \
timeout retries attempt error err msg data payload body headers url token model prompt";

/// Types of the Rust code blocks.
const CODE_TYPES: &[&str] = &[
    "String",
    "Vec<u8>",
    "usize",
    "u64",
    "bool",
    "Option<String>",
    "Result<(), Error>",
    "HashMap<String, u64>",
    "Arc<Mutex<State>>",
    "&str",
    "Duration",
    "PathBuf",
];

/// Section headings.
const HEADINGS: &[&str] = &[
    "Overview",
    "How it works",
    "Example",
    "Trade-offs",
    "Error handling",
    "Performance",
    "Configuration",
    "Testing",
    "Common pitfalls",
    "Summary",
    "Step-by-step",
    "Alternatives",
];

struct Vocab {
    words: Vec<&'static str>,
    zipf: Zipf,
    idents: Vec<&'static str>,
}

fn vocab() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| {
        let words: Vec<&'static str> = VOCABULARY.split_whitespace().collect();
        let zipf = Zipf::new(words.len(), 1.05);
        Vocab {
            words,
            zipf,
            idents: CODE_IDENTS.split_whitespace().collect(),
        }
    })
}

fn word(rng: &mut Rng) -> &'static str {
    let v = vocab();
    v.words[v.zipf.sample(rng)]
}

/// `cache` or `cache_entry`.
fn ident(rng: &mut Rng) -> String {
    let v = vocab();
    let mut s = String::from(rng.pick(&v.idents));
    if rng.chance(0.5) {
        s.push('_');
        s.push_str(rng.pick(&v.idents));
    }
    s
}

/// Appends one sentence: 6-23 words, now and then an inline `identifier`, a number or a comma.
fn sentence(rng: &mut Rng, out: &mut String) {
    let n = rng.range(6, 23);
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
                let _ = write!(out, "`{}`", ident(rng));
            } else if rng.chance(0.03) {
                let _ = write!(out, "{}", rng.below(10_000));
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

fn paragraph(rng: &mut Rng, out: &mut String) {
    for i in 0..rng.range(2, 6) {
        if i > 0 {
            out.push(' ');
        }
        sentence(rng, out);
    }
    out.push_str("\n\n");
}

/// A numbered or bulleted list of 2-6 sentences.
fn list(rng: &mut Rng, out: &mut String) {
    let numbered = rng.chance(0.5);
    for i in 0..rng.range(2, 6) {
        if numbered {
            let _ = write!(out, "{}. ", i + 1);
        } else {
            out.push_str("- ");
        }
        sentence(rng, out);
        out.push('\n');
    }
    out.push('\n');
}

/// A fenced Rust (3 in 5) or Python block of 4-17 lines.
fn code_block(rng: &mut Rng, out: &mut String) {
    let rust = rng.chance(0.6);
    out.push_str(if rust { "```rust\n" } else { "```python\n" });
    let mut depth = 0usize;
    for _ in 0..rng.range(4, 17) {
        for _ in 0..depth + usize::from(!rust && depth == 0) {
            out.push_str("    ");
        }
        let a = ident(rng);
        let b = ident(rng);
        let t = rng.pick(CODE_TYPES);
        let _ = match (rust, rng.below(7)) {
            (true, 0) if depth < 2 => {
                depth += 1;
                write!(out, "fn {a}({b}: {t}) -> {} {{", rng.pick(CODE_TYPES))
            }
            (true, 1) if depth < 3 => {
                depth += 1;
                write!(out, "for {a} in {b}.iter() {{")
            }
            (true, 2) if depth > 0 => {
                depth -= 1;
                write!(out, "}}")
            }
            (true, 3) => write!(out, "let {a} = {b}.get(&key).cloned().unwrap_or_default();"),
            (true, 4) => write!(out, "// {} {} {}", word(rng), word(rng), word(rng)),
            (true, _) => write!(
                out,
                "let {a}: {t} = {b}.{}({});",
                ident(rng),
                rng.below(4096)
            ),
            (false, 0) => write!(out, "def {a}({b}, timeout={}):", rng.below(60)),
            (false, 1) => write!(out, "for {a} in {b}:"),
            (false, 2) => write!(out, "return {a}.get(\"{}\", None)", word(rng)),
            (false, 3) => write!(out, "# {} {} {}", word(rng), word(rng), word(rng)),
            (false, _) => write!(out, "{a} = {b}.{}({})", ident(rng), rng.below(4096)),
        };
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

/// A `## heading`, a paragraph, then a code block (one in two), a list or another paragraph.
fn section(rng: &mut Rng, out: &mut String) {
    let _ = write!(out, "## {}\n\n", rng.pick(HEADINGS));
    paragraph(rng, out);
    match rng.below(4) {
        0 | 1 => code_block(rng, out),
        2 => list(rng, out),
        _ => paragraph(rng, out),
    }
}

/// An answer about `topic` of about `target` bytes: an opening line naming the topic, a
/// paragraph, sections until `target` is reached (it stops at the first section boundary past
/// it: at most a few KiB over), and a closing line.
pub fn answer(rng: &mut Rng, topic: &str, target: usize) -> String {
    let mut out = String::with_capacity(target + 4096);
    let _ = write!(out, "Here is how to approach {topic}.\n\n");
    paragraph(rng, &mut out);
    while out.len() < target {
        section(rng, &mut out);
    }
    out.push_str("Let me know if you want a complete, runnable example.");
    out
}

/// Markdown of exactly `len` bytes, ASCII: a paragraph, then sections, cut at `len`.
pub fn markdown(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 4096);
    paragraph(rng, &mut out);
    while out.len() < len {
        section(rng, &mut out);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_deterministic_and_near_the_target() {
        let a = answer(&mut Rng::new(3), "retries", 8192);
        let b = answer(&mut Rng::new(3), "retries", 8192);
        assert_eq!(a, b);
        assert!((8192..8192 + 4096).contains(&a.len()), "{}", a.len());
        assert!(a.starts_with("Here is how to approach retries.\n\n"));
        assert!(a.contains("```"));
    }

    #[test]
    fn markdown_has_the_exact_length_and_looks_like_markdown() {
        for len in [0, 1, 1000, 4096, 65_536] {
            let m = markdown(&mut Rng::new(len as u64), len);
            assert_eq!(m.len(), len);
            assert!(m.is_ascii());
        }
        let m = markdown(&mut Rng::new(1), 16 << 10);
        assert!(m.contains("\n## ") && m.contains("```"), "{m}");
    }
}
