//! Cross-replica single-flight (SHARED_TIER.md section 8, `Builder::shared_single_flight`):
//! an *efficiency* lock in Kleppmann's sense. On a local leader's miss, the replica takes a
//! lease (`SET <p>:v1:lease:<hex> <token> NX PX lease_ttl`, a 128-bit random token) and
//! loads; the others poll for its answer (25 ms, doubling, at most 500 ms apart) instead of
//! calling the model too. Correctness never depends on it: two leaders produce equivalent
//! answers and the last `SET` wins harmlessly, so no fencing token is needed.
//!
//! - The leader renews the lease every `lease_renew_interval` with a compare-and-pexpire
//!   script, for at most `lease_max_hold`; on success it writes the value inline (not
//!   through the queue, so waiters see it at once) and compare-and-deletes the lease; on a
//!   loader error it only deletes the lease (a waiter takes over).
//! - A waiter serves the value when it appears; takes the lease over when it is gone and no
//!   value came; and after `lease_wait_max` loads locally (fail open).
//! - Skipped whenever the shared breaker is not Closed: the load is local.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::tier::SharedTier;
use crate::breaker::BreakerState;
use crate::warm::format::EntryMeta;
use crate::warm::layout::KeyHash;

/// The first poll delay of a waiter.
const FIRST_POLL: Duration = Duration::from_millis(25);
/// The longest poll delay.
const MAX_POLL: Duration = Duration::from_millis(500);

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

    /// The load succeeded: the value inline, then the lease released.
    pub(crate) async fn complete(
        mut self,
        hash: KeyHash,
        key: &[u8],
        value: Arc<[u8]>,
        meta: EntryMeta,
    ) {
        self.stop_renewing();
        self.tier.put_inline(hash, key, value, meta).await;
        self.tier.lease_release(&self.key, &self.token).await;
        self.done = true;
    }

    /// The load failed: the lease released (a waiter takes over).
    pub(crate) async fn release(mut self) {
        self.stop_renewing();
        self.tier.lease_release(&self.key, &self.token).await;
        self.done = true;
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
            Some((false, true)) => {}
            Some((false, false)) => match tier.lease_acquire(&key, &mine).await {
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
