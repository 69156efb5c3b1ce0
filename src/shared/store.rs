//! The shared-tier seam: a small object-safe trait over the few commands the shared tier
//! sends (like the disk's [`Fs`](crate::fs::Fs)), its error type, and the classification of
//! errors into what feeds the breaker and what does not (SHARED_TIER.md section 6).
//!
//! Crate-private in v1 to keep the public surface small: the Redis implementation
//! (`redis_store.rs`) and the fault-injecting in-memory one
//! ([`MemoryShared`](crate::testing::MemoryShared), feature `test-util`) are the two.
//! Every call is bounded by the caller (`tokio::time::timeout` in the tier), so an
//! implementation may hang: the tier cuts it off.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::stats::SharedErrorKind;

/// A boxed future, so the trait stays object-safe.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a shared-tier call failed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreError {
    /// How it counts.
    pub kind: Failure,
    /// The error's text, for the one log event per breaker transition.
    pub detail: String,
}

/// How an error counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A failure of this kind: feeds the breaker.
    Failed(SharedErrorKind),
    /// The server refused a write for memory: not a failure (reads still work).
    Oom,
    /// The key holds a value of another Redis type (`WRONGTYPE`: a list where an entry string
    /// belongs): a data problem of that key, not a failure of the server; the read path
    /// counts it corrupt and deletes it.
    WrongType,
}

impl StoreError {
    /// A failure of `kind`.
    pub(crate) fn failed(kind: SharedErrorKind, detail: impl Into<String>) -> StoreError {
        StoreError {
            kind: Failure::Failed(kind),
            detail: detail.into(),
        }
    }

    /// The failure kind, `None` for OOM and a wrong type.
    pub(crate) fn failure(&self) -> Option<SharedErrorKind> {
        match self.kind {
            Failure::Failed(k) => Some(k),
            Failure::Oom | Failure::WrongType => None,
        }
    }

    /// Classifies an error reply by its code (the first word): OOM is not a failure; auth
    /// and not-ready codes are their kinds; any other error reply is a protocol failure.
    pub(crate) fn from_reply(code: &str, detail: impl Into<String>) -> StoreError {
        let kind = match code {
            "OOM" => {
                return StoreError {
                    kind: Failure::Oom,
                    detail: detail.into(),
                }
            }
            "WRONGTYPE" => {
                return StoreError {
                    kind: Failure::WrongType,
                    detail: detail.into(),
                }
            }
            "NOAUTH" | "WRONGPASS" | "NOPERM" => SharedErrorKind::Auth,
            "LOADING" | "BUSY" | "MASTERDOWN" | "READONLY" | "CLUSTERDOWN" | "TRYAGAIN" => {
                SharedErrorKind::Server
            }
            _ => SharedErrorKind::Protocol,
        };
        StoreError::failed(kind, detail)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What a read found at a key that is to be deleted as corrupt (see
/// [`SharedStore::del_if`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A value of another Redis type (`WRONGTYPE`).
    NotAString,
    /// A string beginning with `prefix`, of `len` bytes when the whole value was read.
    Bytes { prefix: Vec<u8>, len: Option<usize> },
}

/// How much of a lease key's value a poll reads: a token is 32 hex digits; one byte more
/// than this tells a longer (foreign) value apart.
pub(crate) const LEASE_READ_LEN: usize = 64;

/// A lease key as a waiter's poll found it (adversary11 R3, R12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseSeen {
    /// Its value (a holder's token, the "not shared" mark, or anything a foreign writer put
    /// there), at most its first `LEASE_READ_LEN + 1` bytes.
    pub value: Vec<u8>,
    /// Its remaining time to live; `None` when it has no expiry (no lease of this cache's).
    pub ttl: Option<Duration>,
}

impl LeaseSeen {
    /// What a compare-and-delete ([`SharedStore::del_if`]) of this value compares.
    pub(crate) fn found(&self) -> Found {
        Found::Bytes {
            prefix: self.value.clone(),
            len: (self.value.len() <= LEASE_READ_LEN).then_some(self.value.len()),
        }
    }
}

/// One write of a pipelined batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteOp {
    /// `SET key value PX px`.
    Set {
        key: String,
        value: Arc<[u8]>,
        px: u64,
    },
    /// `DEL key`.
    Del { key: String },
}

/// The commands the shared tier sends. `&self`, boxed futures: object-safe, so the tier holds
/// an `Arc<dyn SharedStore>`.
pub(crate) trait SharedStore: Send + Sync + 'static {
    /// `GETRANGE key 0 max_len`: the value, or at most its first `max_len + 1` bytes (so an
    /// oversized value is seen as such without fetching it whole); `None` when absent or
    /// empty.
    fn get(&self, key: &str, max_len: usize) -> BoxFut<'_, Option<Vec<u8>>>;
    /// The writes in one pipeline (one round trip). The outer error is the round trip's;
    /// the inner ones each command's own reply (an `OOM`, a `READONLY`).
    fn write_many(&self, ops: Vec<WriteOp>) -> BoxFut<'_, Vec<Result<(), StoreError>>>;
    /// `SET key value` with no expiry (a namespace generation).
    fn set(&self, key: &str, value: &[u8]) -> BoxFut<'_, ()>;
    /// The compare-and-set script of a namespace generation: writes `value` (no expiry)
    /// when the key holds one of `accept`, or nothing and `if_absent`. `None` when it wrote
    /// `value` or the key already held it; otherwise `Some` of what the key holds (empty
    /// when nothing), left unchanged.
    fn set_generation(
        &self,
        key: &str,
        value: &[u8],
        accept: Vec<Vec<u8>>,
        if_absent: bool,
    ) -> BoxFut<'_, Option<Vec<u8>>>;
    /// The compare-and-delete script of a corrupt value: deletes `key` only while it still
    /// holds what was read there, so that a valid value another replica wrote since is
    /// spared. `Found::NotAString`: it held another Redis type (deleted while it still does);
    /// `Found::Bytes`: it began with `prefix` and, when `len` is known, was that long.
    /// Whether it deleted.
    fn del_if(&self, key: &str, found: Found) -> BoxFut<'_, bool>;
    /// `MGET keys...`.
    fn mget(&self, keys: &[String]) -> BoxFut<'_, Vec<Option<Vec<u8>>>>;
    /// `SET key value NX GET`: `None` when this call set it, else the value already there.
    fn set_nx_get(&self, key: &str, value: &[u8]) -> BoxFut<'_, Option<Vec<u8>>>;
    /// `SET key token NX PX px`: whether the lease was taken.
    fn lease_acquire(&self, key: &str, token: &str, px: u64) -> BoxFut<'_, bool>;
    /// The compare-and-pexpire script: whether `token` still held the lease (and now for
    /// `px` more).
    fn lease_renew(&self, key: &str, token: &str, px: u64) -> BoxFut<'_, bool>;
    /// The compare-and-delete script: whether `token` held the lease (now deleted).
    fn lease_release(&self, key: &str, token: &str) -> BoxFut<'_, bool>;
    /// The compare-and-set script: when `token` still holds the lease, replaces it by `value`
    /// for `px` (a leader's "done, not shared" mark). Whether it did.
    fn lease_replace(&self, key: &str, token: &str, value: &str, px: u64) -> BoxFut<'_, bool>;
    /// `GETRANGE value 0 max_len` pipelined with `GETRANGE lease 0 LEASE_READ_LEN` and
    /// `PTTL lease`: the value (as [`SharedStore::get`]) and the lease key, `None` when it does
    /// not exist.
    fn poll(
        &self,
        value_key: &str,
        lease_key: &str,
        max_len: usize,
    ) -> BoxFut<'_, (Option<Vec<u8>>, Option<LeaseSeen>)>;
    /// `PING`.
    fn ping(&self) -> BoxFut<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_code() {
        let kind = |c| StoreError::from_reply(c, "x").kind;
        assert_eq!(kind("OOM"), Failure::Oom);
        // A key of another type: that key's data problem (adversary10 D3).
        assert_eq!(kind("WRONGTYPE"), Failure::WrongType);
        assert_eq!(StoreError::from_reply("WRONGTYPE", "x").failure(), None);
        for c in ["NOAUTH", "WRONGPASS", "NOPERM"] {
            assert_eq!(kind(c), Failure::Failed(SharedErrorKind::Auth), "{c}");
        }
        for c in [
            "LOADING",
            "BUSY",
            "MASTERDOWN",
            "READONLY",
            "CLUSTERDOWN",
            "TRYAGAIN",
        ] {
            assert_eq!(kind(c), Failure::Failed(SharedErrorKind::Server), "{c}");
        }
        for c in ["ERR", "WRONGTYPEX", ""] {
            assert_eq!(kind(c), Failure::Failed(SharedErrorKind::Protocol), "{c}");
        }
    }
}
