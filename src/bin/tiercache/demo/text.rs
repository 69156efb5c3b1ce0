//! English-like assistant answers: markdown prose with headings, lists and fenced code blocks.
//!
//! Why not random bytes or lorem ipsum: the warm tier's compression ratio, and so its disk
//! footprint, depends on what the values look like. Real LLM answers repeat a modest
//! vocabulary, markdown structure and code idioms; this generator does the same, so the ratio
//! the demo reports is in the range a real deployment sees (about 3-5x at gzip level 3).

use std::fmt::Write;

use super::rng::Rng;

const SUBJECTS: &[&str] = &[
    "The cache",
    "This approach",
    "The request handler",
    "Your service",
    "The worker pool",
    "A background task",
    "The scheduler",
    "Each shard",
    "The client library",
    "The database",
    "The retry loop",
    "A well-behaved agent",
    "The load balancer",
    "The parser",
    "This function",
];
const VERBS: &[&str] = &[
    "keeps",
    "reduces",
    "avoids",
    "stores",
    "returns",
    "validates",
    "retries",
    "streams",
    "batches",
    "serializes",
    "compresses",
    "evicts",
    "tracks",
    "schedules",
    "protects",
];
const OBJECTS: &[&str] = &[
    "the response",
    "every request",
    "the hot path",
    "recent results",
    "the connection pool",
    "stale entries",
    "the error budget",
    "expensive calls",
    "the payload",
    "partial writes",
    "the configuration",
    "tail latency",
    "the working set",
    "each token",
    "the index",
];
const TAILS: &[&str] = &[
    "under heavy load",
    "without blocking the caller",
    "across restarts",
    "in a single pass",
    "when the disk is slow",
    "before the deadline expires",
    "for most workloads",
    "at a small memory cost",
    "without extra allocations",
    "even when requests arrive in bursts",
    "so that the latency stays predictable",
    "while the upstream service recovers",
];
const OPENERS: &[&str] = &[
    "In practice,",
    "For example,",
    "Note that",
    "As a rule of thumb,",
    "In most cases,",
    "Importantly,",
    "On the other hand,",
    "To be safe,",
    "In short,",
    "Under the hood,",
];
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
const IDENTS: &[&str] = &[
    "cache", "request", "response", "client", "config", "buffer", "result", "handle", "entry",
    "retries", "timeout", "payload", "session", "tokens", "state",
];
const TYPES: &[&str] = &[
    "String", "Vec<u8>", "u64", "Duration", "Config", "Response", "bool",
];

/// Appends one sentence.
fn sentence(rng: &mut Rng, out: &mut String) {
    if rng.chance(0.3) {
        out.push_str(rng.pick(OPENERS));
        out.push(' ');
        let s = rng.pick(SUBJECTS);
        // Lower-case the subject's article after an opener.
        let mut chars = s.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_lowercase());
            out.push_str(chars.as_str());
        }
    } else {
        out.push_str(rng.pick(SUBJECTS));
    }
    let _ = write!(out, " {} {}", rng.pick(VERBS), rng.pick(OBJECTS));
    if rng.chance(0.6) {
        let _ = write!(out, " {}", rng.pick(TAILS));
    }
    if rng.chance(0.2) {
        let _ = write!(out, ", and {} {}", rng.pick(VERBS), rng.pick(OBJECTS));
    }
    out.push_str(". ");
}

fn paragraph(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.range(2, 6) {
        sentence(rng, out);
    }
    out.pop();
    out.push_str("\n\n");
}

fn bullets(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.range(3, 6) {
        let _ = writeln!(
            out,
            "- **{}**: {} {} {}.",
            rng.pick(IDENTS),
            rng.pick(VERBS),
            rng.pick(OBJECTS),
            rng.pick(TAILS)
        );
    }
    out.push('\n');
}

fn rust_block(rng: &mut Rng, out: &mut String) {
    let name = rng.pick(IDENTS);
    let arg = rng.pick(IDENTS);
    let ty = rng.pick(TYPES);
    let _ = writeln!(
        out,
        "```rust\npub async fn load_{name}({arg}: &{ty}) -> Result<{ty}, Error> {{"
    );
    for _ in 0..rng.range(2, 7) {
        let var = rng.pick(IDENTS);
        match rng.below(4) {
            0 => {
                let _ = writeln!(out, "    let {var} = {arg}.{}().await?;", rng.pick(IDENTS));
            }
            1 => {
                let _ = writeln!(
                    out,
                    "    if {var}.is_empty() {{\n        return Err(Error::Missing(\"{var}\"));\n    }}"
                );
            }
            2 => {
                let _ = writeln!(
                    out,
                    "    tracing::debug!({var} = ?{var}, \"{} ready\");",
                    rng.pick(IDENTS)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "    let {var} = {}.get(&{arg}).cloned().unwrap_or_default();",
                    rng.pick(IDENTS)
                );
            }
        }
    }
    let _ = writeln!(out, "    Ok({ty}::from({arg}.clone()))\n}}\n```\n");
}

fn python_block(rng: &mut Rng, out: &mut String) {
    let name = rng.pick(IDENTS);
    let _ = writeln!(
        out,
        "```python\ndef handle_{name}({}, timeout=30):",
        rng.pick(IDENTS)
    );
    for _ in 0..rng.range(2, 6) {
        let var = rng.pick(IDENTS);
        match rng.below(3) {
            0 => {
                let _ = writeln!(
                    out,
                    "    {var} = client.fetch({:?}, timeout=timeout)",
                    rng.pick(IDENTS)
                );
            }
            1 => {
                let _ = writeln!(
                    out,
                    "    if not {var}:\n        raise ValueError(\"missing {var}\")"
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "    logger.info(\"%s ready: %d\", \"{var}\", len({var}))"
                );
            }
        }
    }
    let _ = writeln!(out, "    return {name}\n```\n");
}

/// An answer of about `target` bytes (it stops at the first section boundary past it).
pub fn answer(rng: &mut Rng, topic: &str, target: usize) -> String {
    let mut out = String::with_capacity(target + 1024);
    let _ = write!(out, "Here is how to approach {topic}.\n\n");
    paragraph(rng, &mut out);
    while out.len() < target {
        let _ = write!(out, "## {}\n\n", rng.pick(HEADINGS));
        paragraph(rng, &mut out);
        match rng.below(4) {
            0 => rust_block(rng, &mut out),
            1 => python_block(rng, &mut out),
            2 => bullets(rng, &mut out),
            _ => paragraph(rng, &mut out),
        }
    }
    out.push_str("Let me know if you want a complete, runnable example.");
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
        assert!(a.contains("```"));
    }
}
