//! A deterministic workload generator for demos, benches and tests: seeded random numbers,
//! Zipf-skewed popularity, and LLM-like answers (markdown prose with code blocks, and
//! OpenAI-style chat-completion JSON of an exact size). Not part of the cache API: it is
//! here so that the demo, the benches and the tests draw from one generator instead of
//! each carrying a copy of it.
//!
//! Everything is a function of a seed: the same seed gives the same bytes on every machine,
//! so two runs (and two machines) measure the same values, and a failing random test
//! replays exactly.
//!
//! ```
//! use answercache::workload::{chat_completion, chat_json, markdown, Rng, Zipf};
//!
//! let mut rng = Rng::new(7);
//! let popular = Zipf::new(1000, 1.0);
//! let key = format!("prompt-{}", popular.sample(&mut rng)); // rank 0 most often
//! let text = markdown(&mut rng, 4096); // exactly 4 KiB of markdown
//! let body = chat_json(&chat_completion(&mut rng, 16 << 10), 16 << 10);
//! assert_eq!((text.len(), body.len()), (4096, 16 << 10));
//! # let _ = key;
//! ```
//!
//! Files: `rng` ([`Rng`], [`Zipf`]), `text` (prose: [`answer`], [`markdown`]), `chat`
//! ([`ChatCompletion`] and its JSON).

mod chat;
mod rng;
mod text;

pub use chat::{
    answered, chat_completion, chat_json, ChatCompletion, Choice, FunctionCall, Message, ToolCall,
    Usage, MODELS,
};
pub use rng::{Rng, Zipf};
pub use text::{answer, markdown};
