//! An agent backend in miniature: many workers answer user questions through a simulated
//! chat model, with answercache in front of it.
//!
//! - Requests are keyed by what is asked ([`RequestKey`] over the model, messages and
//!   parameters; the `user` field is declared irrelevant), in a namespace per assistant.
//! - Concurrent workers asking the same question share one model call
//!   (`get_or_insert_with_controls`).
//! - Truncated answers are never cached (`cacheable`); answers are stored with their token
//!   count as their cost, so the tokens saved are counted; live-data questions get a short
//!   TTL and are served stale while the model is failing (`stale_if_error`); "regenerate"
//!   clicks bypass the cache (`no_cache`).
//! - Phase two takes the model down (cached and stale answers keep flowing), phase three
//!   restarts the process (warm hits from disk), phase four ships a new system prompt (an O(1)
//!   namespace invalidation).
//!
//! Run with `cargo run --example agent_backend`; it takes a second or two.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::agent::{Controls, Namespace};
use answercache::workload::{Rng, Zipf};
use answercache::{Stats, TieredCache};
use serde::{Deserialize, Serialize};

/// What we send to the model (OpenAI-style).
#[derive(Debug, Clone, Serialize)]
struct ChatRequest {
    model: &'static str,
    messages: Vec<Message>,
    temperature: f32,
    max_tokens: u32,
    /// End-user id for abuse tracking: does not change the answer.
    user: String,
}

#[derive(Debug, Clone, Serialize)]
struct Message {
    role: &'static str,
    content: String,
}

/// What the model sends back.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Completion {
    text: String,
    finish_reason: String,
    total_tokens: u64,
}

#[derive(Debug)]
struct Overloaded;

impl std::error::Error for Overloaded {}

impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("503: model overloaded")
    }
}

/// The simulated model: 20-60 ms per call, 6% overloaded, 4% truncated; every call fails
/// while `down`.
struct Model {
    rng: Mutex<Rng>,
    calls: AtomicU64,
    down: AtomicBool,
}

impl Model {
    async fn complete(&self, req: &ChatRequest) -> Result<Completion, Overloaded> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (latency, roll) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (20 + rng.below(40) as u64, rng.below(100))
        };
        tokio::time::sleep(Duration::from_millis(latency)).await;
        if roll < 6 || self.down.load(Ordering::Relaxed) {
            return Err(Overloaded);
        }
        let question = req.messages.last().map_or("", |m| m.content.as_str());
        let truncated = roll < 10;
        Ok(Completion {
            text: format!("Answer to {question:?}"),
            finish_reason: if truncated { "length" } else { "stop" }.into(),
            total_tokens: 150 + question.len() as u64 * 9,
        })
    }
}

const QUESTIONS: [&str; 40] = [
    "How do I reset my password?",
    "What is the current status of the API?",
    "What are your opening hours?",
    "What is today's exchange rate for EUR/USD?",
    "How do I cancel my subscription?",
    "Where is my order?",
    "Do you ship to Canada?",
    "How do I change my billing address?",
    "What payment methods do you accept?",
    "How do I export my data?",
    "Can I get a refund?",
    "How do I enable two-factor authentication?",
    "How do I invite a teammate?",
    "What is the difference between the Pro and Team plans?",
    "How do I delete my account?",
    "Is there a student discount?",
    "How do I contact support by phone?",
    "Why was my card declined?",
    "How do I change the language of the app?",
    "Can I use the app offline?",
    "How do I restore a deleted file?",
    "What are the API rate limits?",
    "How do I rotate my API key?",
    "Do you have a status page?",
    "How long does shipping take?",
    "Can I change my username?",
    "How do I merge two accounts?",
    "Where can I find my invoices?",
    "How do I upgrade my plan?",
    "What data do you collect?",
    "Is my data encrypted at rest?",
    "How do I set up single sign-on?",
    "What browsers do you support?",
    "How do I report a bug?",
    "Can I pause my subscription?",
    "How do I turn off email notifications?",
    "Is there a mobile app?",
    "How do I change my email address?",
    "What is your uptime guarantee?",
    "How do I connect my calendar?",
];

/// Questions about live data: short TTL, served stale while the model fails.
fn is_live(question: &str) -> bool {
    question.contains("status") || question.contains("exchange rate")
}

/// Requests answered and failed, across phases.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone)]
struct Backend {
    support: Namespace,
    model: Arc<Model>,
    tally: Arc<Tally>,
    system_prompt: &'static str,
}

impl Backend {
    /// One user request, as an agent framework would make it.
    async fn answer(&self, question: &str, user: u64, regenerate: bool) {
        self.tally.requests.fetch_add(1, Ordering::Relaxed);
        let request = ChatRequest {
            model: "gpt-4o-mini",
            messages: vec![
                Message {
                    role: "system",
                    content: self.system_prompt.into(),
                },
                Message {
                    role: "user",
                    content: question.into(),
                },
            ],
            temperature: 0.0,
            max_tokens: 512,
            user: format!("user-{user}"),
        };
        let key = match self
            .support
            .request_key_builder()
            .request(&request)
            .ignore("user")
            .build()
        {
            Ok(k) => k,
            Err(e) => {
                eprintln!("bad request: {e}");
                return;
            }
        };
        let mut controls = Controls::new()
            .cacheable(|c: &Completion| c.finish_reason == "stop")
            .cost_by(|c: &Completion| c.total_tokens);
        controls = if is_live(question) {
            controls
                .ttl(Duration::from_millis(150))
                .stale_if_error(Duration::from_secs(30))
        } else {
            controls.ttl(Duration::from_secs(24 * 3600))
        };
        if regenerate {
            controls = controls.no_cache();
        }
        let model = self.model.clone();
        let answered = self
            .support
            .get_or_insert_with_controls(&key, &controls, || async move {
                model.complete(&request).await
            })
            .await;
        if answered.is_err() {
            self.tally.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs `workers` workers of `per_worker` requests each.
async fn traffic(backend: &Backend, seed: u64, workers: u64, per_worker: u64) {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::stream(seed, w);
            // A few questions are asked all the time, as in real traffic.
            let popular = Zipf::new(QUESTIONS.len(), 1.0);
            for _ in 0..per_worker {
                let q = QUESTIONS[popular.sample(&mut rng)];
                let regenerate = rng.chance(0.02);
                backend.answer(q, rng.below(1000) as u64, regenerate).await;
                // Think time between a user's messages.
                tokio::time::sleep(Duration::from_millis(rng.below(5) as u64)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The counters this example reports, taken from [`Stats`].
#[derive(Default, Clone, Copy)]
struct Counts {
    hot: u64,
    warm: u64,
    misses: u64,
    loader_calls: u64,
    cost_saved: u64,
    stale: u64,
}

impl Counts {
    fn of(s: &Stats) -> Counts {
        Counts {
            // A hit in the write-behind queue is a memory hit too.
            hot: s.hot_hits + s.queue_hits,
            warm: s.warm_hits,
            misses: s.misses,
            loader_calls: s.loader_calls,
            cost_saved: s.cost_saved,
            stale: s.stale_served,
        }
    }

    fn minus(self, o: Counts) -> Counts {
        Counts {
            hot: self.hot - o.hot,
            warm: self.warm - o.warm,
            misses: self.misses - o.misses,
            loader_calls: self.loader_calls - o.loader_calls,
            cost_saved: self.cost_saved - o.cost_saved,
            stale: self.stale - o.stale,
        }
    }

    fn plus(self, o: Counts) -> Counts {
        Counts {
            hot: self.hot + o.hot,
            warm: self.warm + o.warm,
            misses: self.misses + o.misses,
            loader_calls: self.loader_calls + o.loader_calls,
            cost_saved: self.cost_saved + o.cost_saved,
            stale: self.stale + o.stale,
        }
    }
}

/// Reports phases and sums them.
struct Report {
    tally: Arc<Tally>,
    /// Requests made before the current phase.
    requests_before: u64,
    totals: Counts,
}

impl Report {
    /// Prints the phase that just ended. `since` is the cache's counts when it began
    /// (counters start at zero when a cache opens).
    fn phase(&mut self, name: &str, cache: &TieredCache, since: Counts) {
        let c = Counts::of(&cache.stats()).minus(since);
        let requests = self.tally.requests.load(Ordering::Relaxed);
        println!(
            "{name:<22} requests {:>4} | hits: {:>4} hot, {:>3} warm | misses {:>3} | \
             model calls {:>3} | tokens saved {:>6} | stale served {}",
            requests - self.requests_before,
            c.hot,
            c.warm,
            c.misses,
            c.loader_calls,
            c.cost_saved,
            c.stale
        );
        self.requests_before = requests;
        self.totals = self.totals.plus(c);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    // A small hot tier (one exact LRU) so that the warm tier does real work.
    let builder = TieredCache::builder(dir.path())
        .hot_capacity_entries(12)
        .hot_shards(1)
        .min_free_bytes(0);
    let model = Arc::new(Model {
        rng: Mutex::new(Rng::new(42)),
        calls: AtomicU64::new(0),
        down: AtomicBool::new(false),
    });
    let tally = Arc::new(Tally::default());
    let mut report = Report {
        tally: tally.clone(),
        requests_before: 0,
        totals: Counts::default(),
    };

    // Phase 1: a busy morning, 24 workers.
    let cache = builder.clone().build().await?;
    let mut backend = Backend {
        support: cache.namespace("support-bot")?,
        model: model.clone(),
        tally: tally.clone(),
        system_prompt: "You are the support assistant of Acme. Be brief.",
    };
    traffic(&backend, 1, 24, 25).await;
    report.phase("1. morning traffic", &cache, Counts::default());

    // Phase 2: the model is down. Cached answers keep flowing; live-data answers have
    // expired but are served stale; only questions not answered yet fail.
    tokio::time::sleep(Duration::from_millis(200)).await;
    model.down.store(true, Ordering::Relaxed);
    let since = Counts::of(&cache.stats());
    traffic(&backend, 2, 8, 10).await;
    report.phase("2. model outage", &cache, since);
    model.down.store(false, Ordering::Relaxed);
    cache.close().await?;

    // Phase 3: the process restarts; answers come back from disk.
    let cache = builder.clone().build().await?;
    backend.support = cache.namespace("support-bot")?;
    traffic(&backend, 3, 24, 10).await;
    report.phase("3. after a restart", &cache, Counts::default());

    // Phase 4: a new system prompt ships; every old answer is invalid at once.
    let since = Counts::of(&cache.stats());
    backend.support.invalidate().await?;
    backend.system_prompt = "You are the support assistant of Acme. Be brief and kind.";
    traffic(&backend, 4, 8, 10).await;
    report.phase("4. new system prompt", &cache, since);
    cache.close().await?;

    let totals = report.totals;
    let requests = tally.requests.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    println!();
    println!(
        "requests: {requests} ({} answered, {failed} failed after the model errored)",
        requests - failed
    );
    println!(
        "hits: {} hot, {} warm; misses: {}",
        totals.hot, totals.warm, totals.misses
    );
    println!(
        "model calls: {} (the simulated model saw {}); loader calls saved: {} ({:.0}%)",
        totals.loader_calls,
        model.calls.load(Ordering::Relaxed),
        requests - totals.loader_calls,
        100.0 * (requests - totals.loader_calls) as f64 / requests as f64
    );
    println!(
        "cost saved: {} tokens (${:.4} at $0.60 per million); stale answers served: {}",
        totals.cost_saved,
        totals.cost_saved as f64 * 0.60 / 1e6,
        totals.stale
    );
    println!("ran in {:.2?}", started.elapsed());
    Ok(())
}
