//! The public error type.
//!
//! Errors are for caller mistakes (an oversized key or value, a value the codec cannot carry),
//! configuration, a loader's own error, and `flush`/`close` (and a write-through `set`)
//! reporting what could not be persisted. A failing disk is *not* an error of `get`/`set`: it
//! degrades the cache instead. A stored value that does not decode as the requested type is
//! a miss, not an error.

use std::sync::Arc;

/// Everything that can go wrong in a call to answercache.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than the configured `max_key_bytes`. Nothing was changed.
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The encoded value is longer than the configured `max_entry_bytes`. Nothing was changed.
    ValueTooLarge {
        /// Encoded length of the rejected value.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The value could not be encoded with the cache's codec (see [`Codec`](crate::Codec):
    /// JSON has no form for a NaN, for instance). Nothing was changed.
    Encode(String),
    /// The builder was given an invalid configuration.
    Config(String),
    /// `flush` or `close` could not persist some entries; they stay in memory (dirty) and are
    /// retried when the disk is back, unless evicted first.
    NotPersisted {
        /// How many queued writes failed or were skipped.
        failed: u64,
        /// A description of the last failure.
        last_error: String,
    },
    /// The cache was closed; the handle can no longer be used.
    Closed,
    /// A `get_or_insert_*` loader failed (or panicked). Every caller that shared the load gets
    /// the same error, which keeps its source: see [`Error::loader_error`].
    Loader(LoaderError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::KeyTooLarge { len, max } => write!(
                f,
                "key is {len} bytes, over the limit of {max} bytes (max_key_bytes)"
            ),
            Error::ValueTooLarge { len, max } => write!(
                f,
                "value is {len} bytes encoded, over the limit of {max} bytes (max_entry_bytes)"
            ),
            Error::Encode(e) => write!(f, "value could not be encoded: {e}"),
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
            Error::NotPersisted { failed, last_error } => write!(
                f,
                "{failed} entries could not be written to disk (last error: {last_error})"
            ),
            Error::Closed => f.write_str("the cache is closed"),
            // With its text, so that a log line of this error alone says what failed; the
            // error itself is also the `source()` (a chain printer shows the text twice).
            Error::Loader(e) => write!(f, "loader failed: {e}"),
        }
    }
}

impl std::error::Error for Error {
    /// For [`Error::Loader`], the loader's own error (so that chain walkers, `anyhow`'s
    /// `downcast_ref` among them, find it); `None` otherwise.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Loader(e) => Some(e.get_ref()),
            _ => None,
        }
    }
}

impl Error {
    /// The loader's own error, if this is [`Error::Loader`] and the loader's error is an `E`:
    /// map an upstream 429 to your HTTP status, read its `Retry-After`.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("rate limited, retry after {retry_after_s} s")]
    /// struct RateLimited { retry_after_s: u64 }
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let cache = answercache::TieredCache::open(dir.path()).await?;
    /// let err = cache
    ///     .get_or_insert_with("q", || async { Err::<String, _>(RateLimited { retry_after_s: 7 }) })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.loader_error::<RateLimited>().map(|e| e.retry_after_s), Some(7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn loader_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Loader(e) => e.downcast_ref(),
            _ => None,
        }
    }
}

/// A loader's error, shared by every caller of the load (cloning shares it).
#[derive(Clone)]
pub struct LoaderError {
    inner: Arc<dyn std::error::Error + Send + Sync + 'static>,
    panicked: bool,
}

impl LoaderError {
    pub(crate) fn new(e: Box<dyn std::error::Error + Send + Sync + 'static>) -> LoaderError {
        LoaderError {
            inner: Arc::from(e),
            panicked: false,
        }
    }

    pub(crate) fn panicked() -> LoaderError {
        LoaderError {
            inner: Arc::new(Panicked),
            panicked: true,
        }
    }

    /// The loader's error as an `E`, if it is one.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let e: &(dyn std::error::Error + 'static) = &*self.inner;
        e.downcast_ref::<E>()
    }

    /// The loader's error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// Whether the loader panicked (instead of returning an error).
    pub fn is_panic(&self) -> bool {
        self.panicked
    }
}

impl std::fmt::Debug for LoaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.inner, f)
    }
}

impl std::fmt::Display for LoaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.inner, f)
    }
}

impl std::error::Error for LoaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// The error of a loader that panicked.
#[derive(Debug, thiserror::Error)]
#[error("loader panicked")]
struct Panicked;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
