//! Adversary 11: the shared tier's entry paths after last session's changes (`dels_in_flight`,
//! `SharedOp::Put { del_first }`, `Failure::WrongType`, inline deletion of corrupt values,
//! OOM handling) against the promises of README "Shared tier", RELIABILITY.md and
//! SHARED_TIER.md: no removed or overwritten answer served again, values verified like a disk
//! read, TTLs honoured, no errors and bounded latency while the server is sick, leases that
//! never hand out a wrong answer and cost at most one lease TTL.
//!
//! Findings are the `#[ignore = "FINDING Rn: ..."]` tests, listed in FINDINGS.md here.
//! - `expiry.rs`: a newer `set` whose value is not shared (expired in the queue, too large);
//! - `close.rs`: a removal kept after one failed `DEL`, then `close`;
//! - `window.rs`: the blocking-pool encode of a batch (a removal in no list; a lease
//!   leader's inline write overtaken by an older queued value);
//! - `lease.rs`: foreign lease keys, the renewal interval, unshared answers, and the
//!   leader's inline write (the OOM episode, removals it carries, a cancelled caller);
//! - `reads.rs`: the inline deletion of corrupt values, bounds that differ by replica;
//! - `real.rs`: a real `redis-server` (wrong-type values of every kind, `max_ttl`).

mod close;
mod expiry;
mod fixes;
mod fixes_real;
mod lease;
mod reads;
mod real;
pub(crate) mod window;

use answercache::testing::MemoryShared;

use crate::mem::*;

/// What the server holds for `key`'s entry, decoded (`None`: absent).
pub fn held(server: &MemoryShared, key: &[u8]) -> Option<String> {
    server.raw(&entry_key(key)).map(|r| {
        answercache::warm::format::decode(&r, key, &Default::default())
            .map(|d| String::from_utf8_lossy(&d.value).into_owned())
            .unwrap_or_else(|e| format!("undecodable: {e:?}"))
    })
}

/// What a fresh replica on `server` reads for `key`.
pub async fn fresh_read(server: &MemoryShared, key: &str) -> Option<String> {
    let b = replica(server).await;
    let got = b
        .get_bytes(key)
        .await
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    b.cache.close().await.unwrap();
    got
}

/// `n` bytes that gzip cannot shrink (a xorshift stream), so the entry file is about `n`.
pub fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A value read, as text.
pub fn text(v: Option<std::sync::Arc<[u8]>>) -> Option<String> {
    v.map(|v| String::from_utf8_lossy(&v).into_owned())
}
