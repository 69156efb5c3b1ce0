//! Cross-replica single-flight (SHARED_TIER.md section 8, `Builder::shared_single_flight`):
//! an *efficiency* lock in Kleppmann's sense. On a local leader's miss, the replica takes a
//! lease (`SET <p>:v1:lease:<hex> <token> NX PX lease_ttl`, a 128-bit random token) and
//! loads; the others poll for its answer (25 ms, doubling, at most 500 ms apart) instead of
//! calling the model too. Correctness never depends on it: two leaders produce equivalent
//! answers and the last `SET` wins harmlessly, so no fencing token is needed.
//!
//! - The leader renews the lease every `lease_renew_interval` (by default 3 s, or a third of
//!   `lease_ttl` when that is shorter; `build()` refuses one of `lease_ttl` or more) with a
//!   compare-and-pexpire script, for at most `lease_max_hold`; on success it writes the value
//!   inline (not through the queue, so waiters see it at once) and compare-and-deletes the
//!   lease; on a loader error it only deletes the lease (a waiter takes over).
//! - A leader whose answer is not shared (not cacheable, too large, unencodable, or its
//!   inline write not accepted) replaces its lease by the "done, not shared" mark
//!   ([`UNSHARED_MARK`], for [`UNSHARED_MARK_TTL`]) instead of deleting it: its waiters load
//!   for themselves at once, side by side, instead of taking the lease over one after another
//!   (adversary11 R12).
//! - A waiter serves the value when it appears; takes the lease over when it is gone and no
//!   value came; loads locally when it sees the mark; and after `lease_wait_max` loads
//!   locally (fail open).
//! - A lease key that no leader of this configuration made (no expiry, or a longer one than
//!   `lease_ttl`: planted, another application's, a `PERSIST`) is foreign: a waiter deletes it
//!   (compare-and-delete of what it read) and takes the lease over, at once when it has no
//!   expiry, after `lease_ttl` of seeing it otherwise (a replica configured with a longer
//!   `lease_ttl` may hold it); counted as a takeover. So no lease key costs a miss more than
//!   one `lease_ttl` (adversary11 R3).
//! - Skipped whenever the shared breaker is not Closed: the load is local.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::store::LeaseSeen;
use super::tier::SharedTier;
use crate::breaker::BreakerState;
use crate::warm::encoded::EncodedEntry;
use crate::warm::format::EntryMeta;
use crate::warm::layout::KeyHash;

/// The first poll delay of a waiter.
const FIRST_POLL: Duration = Duration::from_millis(25);
/// The longest poll delay.
const MAX_POLL: Duration = Duration::from_millis(500);
/// What a leader whose answer is not shared leaves under the lease key: not a token (those
/// are 32 hex digits), so no holder's compare-and-pexpire or compare-and-delete matches it.
pub(crate) const UNSHARED_MARK: &str = "answercache:lease:done-not-shared";
/// How long the mark stays: several polls at the longest poll delay, so every waiter sees
/// it; a miss of the key meanwhile sees it too and loads locally at once.
pub(crate) const UNSHARED_MARK_TTL: Duration = Duration::from_secs(2);

/// What a local leader does about the other replicas.
pub(crate) enum LeaseStart {
    /// This replica holds the lease: load, then [`LeaseGuard::complete`] or drop the guard.
    Lead(LeaseGuard),
    /// Another replica's answer is in the shared tier now: look it up.
    Appeared,
    /// Load locally, without a lease (the breaker is not Closed, the server failed, or the
    /// wait ran out).
    Local,
}

/// A held lease: renewed in the background while held, released when completed or dropped.
pub(crate) struct LeaseGuard {
    tier: Arc<SharedTier>,
    key: String,
    token: String,
    renew: Option<JoinHandle<()>>,
    done: bool,
}

impl LeaseGuard {
    fn new(tier: Arc<SharedTier>, key: String, token: String) -> LeaseGuard {
        let every = tier.config.renew_interval();
        let hold = tier.config.lease_max_hold;
        let renew = (!every.is_zero()).then(|| {
            let (tier, key, token) = (tier.clone(), key.clone(), token.clone());
            tokio::spawn(async move {
                let until = Instant::now().checked_add(hold);
                loop {
                    tokio::time::sleep(every).await;
                    // A hung loader cannot hold the key for ever.
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return;
                    }
                    if !tier.lease_renew(&key, &token).await {
                        return;
                    }
                }
            })
        });
        LeaseGuard {
            tier,
            key,
            token,
            renew,
            done: false,
        }
    }

    /// The load succeeded: the value inline, then the lease released (or marked "done, not
    /// shared" when the value was not written).
    pub(crate) async fn complete(
        mut self,
        hash: KeyHash,
        key: &[u8],
        value: Arc<[u8]>,
        meta: EntryMeta,
        token: u64,
        encoded: Option<Arc<EncodedEntry>>,
    ) {
        self.stop_renewing();
        if self
            .tier
            .put_inline(hash, key, value, meta, token, encoded)
            .await
        {
            self.tier.lease_release(&self.key, &self.token).await;
        } else {
            // Too large, refused or failed: no value will come for the waiters.
            self.mark_unshared().await;
        }
        self.done = true;
    }

    /// The load failed: the lease released (a waiter takes over).
    pub(crate) async fn release(mut self) {
        self.stop_renewing();
        self.tier.lease_release(&self.key, &self.token).await;
        self.done = true;
    }

    /// The load succeeded but its answer is not shared (not cacheable, too large, not
    /// encodable): the lease replaced by the "done, not shared" mark, so that the waiters
    /// load for themselves at once rather than one after another; released when that fails.
    pub(crate) async fn unshared(mut self) {
        self.stop_renewing();
        self.mark_unshared().await;
        self.done = true;
    }

    async fn mark_unshared(&self) {
        let px = u64::try_from(UNSHARED_MARK_TTL.as_millis()).unwrap_or(u64::MAX);
        if !self
            .tier
            .lease_replace(&self.key, &self.token, UNSHARED_MARK, px)
            .await
        {
            self.tier.lease_release(&self.key, &self.token).await;
        }
    }

    fn stop_renewing(&mut self) {
        if let Some(r) = self.renew.take() {
            r.abort();
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.stop_renewing();
        if !self.done {
            // The leader's future was dropped: let the lease go now rather than at its TTL.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (tier, key, token) = (self.tier.clone(), self.key.clone(), self.token.clone());
                rt.spawn(async move { tier.lease_release(&key, &token).await });
            }
        }
    }
}

/// 128 random bits, as 32 hex digits (unpredictable enough: a lease is not a security
/// boundary, only an efficiency lock).
fn token() -> String {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new_derive_key("answercache shared lease token v1");
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&DRAWN.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let bytes = h.finalize();
    bytes.as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Takes the lease of `hash`, or waits for the replica that holds it (see the module docs).
pub(crate) async fn lead_or_wait(tier: &Arc<SharedTier>, hash: &KeyHash) -> LeaseStart {
    if !tier.single_flight || tier.state() != BreakerState::Closed {
        return LeaseStart::Local;
    }
    let key = tier.lease_key(hash);
    let counters = tier.lease_counters();
    let mine = token();
    match tier.lease_acquire(&key, &mine).await {
        Some(true) => {
            counters.lease_acquired.inc();
            return LeaseStart::Lead(LeaseGuard::new(tier.clone(), key, mine));
        }
        Some(false) => {}
        None => return LeaseStart::Local,
    }
    counters.lease_waits.inc();
    let start = Instant::now();
    let max = tier.config.lease_wait_max;
    let mut delay = FIRST_POLL;
    // When a poll first saw the lease with a longer TTL than `lease_ttl` (R3).
    let mut too_long_since = None;
    loop {
        let waited = start.elapsed();
        if waited >= max {
            counters.lease_wait_timeouts.inc();
            return LeaseStart::Local;
        }
        tokio::time::sleep(delay.min(max - waited)).await;
        delay = (delay * 2).min(MAX_POLL);
        if start.elapsed() >= max {
            counters.lease_wait_timeouts.inc();
            return LeaseStart::Local;
        }
        if tier.state() != BreakerState::Closed {
            return LeaseStart::Local;
        }
        match tier.lease_poll(hash).await {
            None => return LeaseStart::Local,
            // Counted as served by the caller, once the value is verified and served.
            Some((true, _)) => return LeaseStart::Appeared,
            Some((false, Some(seen))) if seen.value == UNSHARED_MARK.as_bytes() => {
                // The leader's answer is not shared: no value will come.
                return LeaseStart::Local;
            }
            Some((false, Some(seen))) => {
                if !is_foreign(&seen, tier.config.lease_ttl, &mut too_long_since) {
                    continue;
                }
                // Not a lease of this cache's: gone (unless it changed meanwhile), and taken
                // over; a waiter never waits on it.
                tier.lease_delete_foreign(&key, seen.found()).await;
                return match tier.lease_acquire(&key, &mine).await {
                    Some(true) => {
                        counters.lease_acquired.inc();
                        counters.lease_takeovers.inc();
                        LeaseStart::Lead(LeaseGuard::new(tier.clone(), key, mine))
                    }
                    Some(false) | None => LeaseStart::Local,
                };
            }
            Some((false, None)) => match tier.lease_acquire(&key, &mine).await {
                Some(true) => {
                    counters.lease_acquired.inc();
                    counters.lease_takeovers.inc();
                    return LeaseStart::Lead(LeaseGuard::new(tier.clone(), key, mine));
                }
                Some(false) => {}
                None => return LeaseStart::Local,
            },
        }
    }
}

/// Whether a lease key a poll found is foreign (R3): it has no expiry (no leader of this
/// cache's makes one), or it has had a longer TTL than `lease_ttl` for `lease_ttl` since
/// `too_long_since` (a replica configured with a longer `lease_ttl` may be a live leader).
fn is_foreign(seen: &LeaseSeen, lease_ttl: Duration, too_long_since: &mut Option<Instant>) -> bool {
    match seen.ttl {
        None => true,
        Some(ttl) if ttl > lease_ttl => {
            let since = *too_long_since.get_or_insert_with(Instant::now);
            since.elapsed() >= lease_ttl
        }
        Some(_) => {
            *too_long_since = None;
            false
        }
    }
}
