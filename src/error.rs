//! The public error type.
//!
//! Errors are for caller mistakes (an oversized key or value, a value that does not decode as
//! the requested type), configuration, and `flush`/`close` reporting what could not be
//! persisted. A failing disk is *not* an error of `get`/`set`: it degrades the cache instead.

/// Everything that can go wrong in a call to tiercache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than the configured `max_key_bytes`. Nothing was changed.
    #[error("key is {len} bytes, over the limit of {max} bytes (max_key_bytes)")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The encoded value is longer than the configured `max_entry_bytes`. Nothing was changed.
    #[error("value is {len} bytes encoded, over the limit of {max} bytes (max_entry_bytes)")]
    ValueTooLarge {
        /// Encoded length of the rejected value.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The value could not be encoded with the cache's codec (bincode over serde).
    #[error("value could not be encoded: {0}")]
    Encode(String),
    /// The stored value does not decode as the requested type. The entry is left as it is.
    #[error("stored value does not decode as {type_name}: {detail}")]
    Decode {
        /// The Rust type that was requested.
        type_name: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The builder was given an invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `flush` or `close` could not persist some entries; they stay in memory (dirty) and are
    /// retried when the disk is back, unless evicted first.
    #[error("{failed} entries could not be written to disk (last error: {last_error})")]
    NotPersisted {
        /// How many queued writes failed or were skipped.
        failed: u64,
        /// A description of the last failure.
        last_error: String,
    },
    /// The cache was closed; the handle can no longer be used.
    #[error("the cache is closed")]
    Closed,
    /// A `get_or_insert_with` loader failed; every waiter gets the same message.
    #[error("loader failed: {0}")]
    Loader(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
