//! What the agent tests share besides the crate's [`TestCache`] (on the default clock, which
//! follows tokio's paused clock): a count of the entry files, an `Answer` shaped like a model
//! reply, a model error, and `settle`, which returns once every other task is blocked.

#![allow(dead_code)] // each test module uses its own part of the fixture

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use answercache::testing::TestCache;

/// Number of entry files on disk.
pub fn files_on_disk(t: &TestCache) -> usize {
    fn walk(p: &std::path::Path) -> usize {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { walk(&p) } else { 1 })
                .sum()
        })
    }
    walk(&t.root().join("v2"))
}

/// A model reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub finish_reason: String,
    pub tokens: u64,
}

/// A complete answer of `tokens` tokens.
pub fn answer(text: &str, tokens: u64) -> Answer {
    Answer {
        text: text.into(),
        finish_reason: "stop".into(),
        tokens,
    }
}

/// A model failure.
#[derive(Debug)]
pub struct ModelDown(pub &'static str);

impl fmt::Display for ModelDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model down: {}", self.0)
    }
}

impl std::error::Error for ModelDown {}

/// Returns once every other task of the (paused-clock) runtime is blocked: the paused clock
/// only moves when nothing else can run.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// A loader result that always succeeds, for type inference.
pub fn ok(a: Answer) -> Result<Answer, ModelDown> {
    Ok(a)
}
