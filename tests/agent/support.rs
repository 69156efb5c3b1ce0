//! The fixture: a cache in a fresh temporary directory (`min_free_bytes(0)` so a nearly full
//! test disk cannot refuse writes; the default clock, which follows tokio's paused clock),
//! that can be reopened on the same directory; an `Answer` shaped like a model reply; a
//! model error; and `settle`, which returns once every other task is blocked.

#![allow(dead_code)] // each test module uses its own part of the fixture

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiercache::{Builder, TieredCache};

pub struct Fixture {
    dir: tempfile::TempDir,
    builder: Builder,
    pub cache: TieredCache,
}

impl std::ops::Deref for Fixture {
    type Target = TieredCache;
    fn deref(&self) -> &TieredCache {
        &self.cache
    }
}

/// A cache with every default but `min_free_bytes`.
pub async fn open() -> Fixture {
    open_with(|b| b).await
}

/// A cache with the builder edited by the test.
pub async fn open_with(edit: impl FnOnce(Builder) -> Builder) -> Fixture {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let builder = edit(TieredCache::builder(dir.path()).min_free_bytes(0));
    let cache = builder.clone().build().await.expect("open the cache");
    Fixture {
        dir,
        builder,
        cache,
    }
}

impl Fixture {
    /// Closes the cache (every write lands) and opens a new one on the same directory: a
    /// process restart.
    pub async fn reopen(&mut self) {
        self.cache.close().await.expect("close drains every write");
        self.cache = self.builder.clone().build().await.expect("reopen");
    }

    /// Number of entry files on disk.
    pub fn files_on_disk(&self) -> usize {
        fn walk(p: &std::path::Path) -> usize {
            std::fs::read_dir(p).map_or(0, |rd| {
                rd.map(|e| e.unwrap().path())
                    .map(|p| if p.is_dir() { walk(&p) } else { 1 })
                    .sum()
            })
        }
        walk(&self.dir.path().join("v1"))
    }
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
