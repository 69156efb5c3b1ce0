//! The demo's agent-backend workload: a catalog of distinct prompts, a Zipf-skewed request
//! sequence over them, and a deterministic "model" that answers each prompt with a
//! chat-completion response after a simulated latency.
//!
//! Everything derives from one seed: the same seed gives the same prompts, the same request
//! order and byte-identical responses, so a cache hit can be checked against what the model
//! would have answered.

use std::time::Duration;

use answercache::workload::{answer, answered, ChatCompletion, Rng, Zipf};

const MODELS: &[&str] = &["gpt-4o-mini", "claude-3-5-haiku", "llama-3.1-70b-instruct"];
const TASKS: &[&str] = &[
    "add retries with exponential backoff to an HTTP client",
    "cache LLM responses on disk",
    "stream a large file without loading it into memory",
    "debounce events from a file watcher",
    "design a rate limiter for an API gateway",
    "write an integration test for a REST endpoint",
    "parse a config file with defaults and validation",
    "handle graceful shutdown of background workers",
    "implement a circuit breaker around a flaky dependency",
    "batch database inserts efficiently",
    "profile a slow request handler",
    "serialize structs to JSON with optional fields",
    "build a connection pool with health checks",
    "paginate results from a cursor-based API",
    "schedule periodic jobs with jitter",
    "deduplicate concurrent requests for the same key",
    "validate user input at an API boundary",
    "log structured events with request ids",
    "migrate a schema without downtime",
    "bound memory use of an in-process cache",
];
const LANGS: &[&str] = &["Rust", "Python", "Go", "TypeScript", "Java", "Kotlin"];
const STYLES: &[&str] = &[
    "Explain briefly how to",
    "Show me, with code, how to",
    "What is the idiomatic way to",
    "Give a production-ready approach to",
    "Walk me through how to",
];

/// One distinct prompt and what answering it costs.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Index in the catalog.
    pub id: usize,
    /// Model the agent asks.
    pub model: &'static str,
    /// Prompt text.
    pub text: String,
    /// Cache key: model and prompt, so different models never share answers.
    pub key: String,
    /// Size the answer aims for, bytes.
    pub answer_bytes: usize,
    /// Simulated time the model takes to answer (0.5-4 s, longer for longer answers).
    pub latency: Duration,
}

/// The prompts and the request sequence of one demo run.
#[derive(Debug, Clone)]
pub struct Workload {
    seed: u64,
    prompts: Vec<Prompt>,
    requests: Vec<usize>,
}

/// Most distinct prompts the catalog can hold (tasks x languages x phrasings).
pub const MAX_PROMPTS: usize = 20 * 6 * 5;

impl Workload {
    /// `prompts` distinct prompts (at most [`MAX_PROMPTS`]) and `requests` requests over them,
    /// Zipf-distributed with exponent `skew`.
    pub fn new(seed: u64, prompts: usize, requests: usize, skew: f64) -> Self {
        let mut rng = Rng::stream(seed, u64::MAX);
        let mut combos: Vec<(usize, usize, usize)> = (0..TASKS.len())
            .flat_map(|t| {
                (0..LANGS.len()).flat_map(move |l| (0..STYLES.len()).map(move |s| (t, l, s)))
            })
            .collect();
        rng.shuffle(&mut combos);
        let catalog: Vec<Prompt> = combos
            .into_iter()
            .take(prompts.clamp(1, MAX_PROMPTS))
            .enumerate()
            .map(|(id, (t, l, s))| {
                let mut r = Rng::stream(seed, id as u64);
                let model = r.pick(MODELS);
                let text = format!("{} {} in {}?", STYLES[s], TASKS[t], LANGS[l]);
                // Log-uniform 1-64 KiB: many short answers, a long tail of long ones.
                let u = r.unit();
                let answer_bytes = (1024.0 * 64f64.powf(u)) as usize;
                let latency_ms = 500 + (u * 3000.0) as u64 + r.below(501) as u64;
                Prompt {
                    id,
                    model,
                    key: format!("chat/{model}/{text}"),
                    text,
                    answer_bytes,
                    latency: Duration::from_millis(latency_ms),
                }
            })
            .collect();
        let zipf = Zipf::new(catalog.len(), skew);
        let requests = (0..requests).map(|_| zipf.sample(&mut rng)).collect();
        Workload {
            seed,
            prompts: catalog,
            requests,
        }
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// The prompt of request `i`.
    pub fn request(&self, i: usize) -> &Prompt {
        &self.prompts[self.requests[i]]
    }

    /// Distinct prompts asked in requests `range`.
    pub fn distinct(&self, range: std::ops::Range<usize>) -> usize {
        let mut seen = vec![false; self.prompts.len()];
        for &p in &self.requests[range] {
            seen[p] = true;
        }
        seen.into_iter().filter(|&s| s).count()
    }

    /// What the model answers to `prompt`: always the same response for the same seed.
    pub fn answer(&self, prompt: &Prompt) -> ChatCompletion {
        let mut rng = Rng::stream(self.seed, prompt.id as u64 | 1 << 63);
        let content = answer(
            &mut rng,
            prompt.text.trim_end_matches('?'),
            prompt.answer_bytes,
        );
        let prompt_tokens = (prompt.text.len() / 4 + 12) as u32;
        let id = format!("chatcmpl-{:016x}", rng.next_u64());
        let created = 1_735_689_600 + rng.below(86_400) as u64;
        answered(id, created, prompt.model, content, prompt_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_workload() {
        let a = Workload::new(9, 300, 1000, 1.0);
        let b = Workload::new(9, 300, 1000, 1.0);
        for i in [0, 17, 999] {
            assert_eq!(a.request(i).key, b.request(i).key);
            assert_eq!(a.answer(a.request(i)), b.answer(b.request(i)));
        }
        let keys: std::collections::HashSet<_> = a.prompts.iter().map(|p| &p.key).collect();
        assert_eq!(keys.len(), 300);
    }

    #[test]
    fn latencies_and_sizes_in_range() {
        let w = Workload::new(1, MAX_PROMPTS, 0, 1.0);
        for p in &w.prompts {
            assert!(
                (500..=4000).contains(&p.latency.as_millis()),
                "{:?}",
                p.latency
            );
            assert!((1024..=64 * 1024).contains(&p.answer_bytes));
        }
    }
}
