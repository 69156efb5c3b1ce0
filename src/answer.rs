//! How a call was answered: the value with its [`Source`].
//!
//! An agent service wants to say, per request, whether the answer came from the cache and
//! from where (an `X-Cache` header, a log field, a metric label) without threading an
//! `AtomicBool` through its loader. The `*_answer` methods return an [`Answer`]: the value,
//! its source and its encoding.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use answercache::{agent::Controls, Source};
//! # let dir = tempfile::tempdir()?;
//! # let cache = answercache::TieredCache::open(dir.path()).await?;
//! let load = || async { Ok::<_, std::io::Error>("Paris".to_owned()) };
//! let first = cache.get_or_insert_answer("capital?", &Controls::new(), load).await?;
//! assert_eq!((first.value.as_str(), first.source), ("Paris", Source::Loaded));
//! let again = cache.get_or_insert_answer("capital?", &Controls::new(), load).await?;
//! assert_eq!(again.source, Source::Hot);
//! assert_eq!(again.source.x_cache(), "HIT");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;

use crate::codec::Encoding;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Source {
    /// The memory tier.
    Hot,
    /// The disk tier (the entry is now in the memory tier too).
    Warm,
    /// The write queue: set recently, evicted from memory before its write landed.
    Queue,
    /// The shared tier (Redis or Valkey, feature `redis`): another replica's answer (it is
    /// now in the memory tier, and queued for the disk tier, too).
    Shared,
    /// This caller's own loader ran.
    Loaded,
    /// Another caller's load of the same key, which this caller waited for (or whose value it
    /// found stored just as it was about to load).
    Joined,
    /// The loader failed and an expired answer within its `stale_if_error` grace was served.
    Stale,
}

impl Source {
    /// The stable name: `hot`, `warm`, `queue`, `shared`, `loaded`, `joined`, `stale`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Hot => "hot",
            Source::Warm => "warm",
            Source::Queue => "queue",
            Source::Shared => "shared",
            Source::Loaded => "loaded",
            Source::Joined => "joined",
            Source::Stale => "stale",
        }
    }

    /// Whether the answer came without this caller running its loader (every source but
    /// [`Source::Loaded`]).
    pub fn is_cached(self) -> bool {
        self != Source::Loaded
    }

    /// A value for an `X-Cache` response header: `HIT` (a tier), `JOINED`, `STALE` or
    /// `MISS` (loaded).
    pub fn x_cache(self) -> &'static str {
        match self {
            Source::Hot | Source::Warm | Source::Queue | Source::Shared => "HIT",
            Source::Joined => "JOINED",
            Source::Stale => "STALE",
            Source::Loaded => "MISS",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value and how it was served.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Answer<V> {
    /// The value.
    pub value: V,
    /// Where it came from.
    pub source: Source,
    /// How its bytes are (or would be) stored: the entry's recorded encoding for a cached
    /// value, the cache's codec (or [`Encoding::Raw`] for bytes) for a loaded one.
    pub encoding: Encoding,
}

impl<V> Answer<V> {
    pub(crate) fn new(value: V, source: Source, encoding: Encoding) -> Answer<V> {
        Answer {
            value,
            source,
            encoding,
        }
    }

    /// The value, dropping how it was served.
    pub fn into_value(self) -> V {
        self.value
    }
}
