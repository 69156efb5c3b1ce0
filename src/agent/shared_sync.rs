//! The namespace sync task (feature `redis`): every `namespace_sync_interval`, one `MGET` of
//! the generations of every namespace this cache has used, so that an `invalidate` on one
//! replica reaches the others within the interval plus the timeout (the staleness bound of
//! SHARED_TIER.md section 7). A changed generation is adopted (one info event each); a
//! missing one (evicted, deleted) is bootstrapped again with a fresh generation, which gives
//! misses, never stale answers; so is one this replica retired (it left it: invalidated it,
//! or adopted a newer one), which a failover to a lagging server or a restore can bring back.
//! Generations this replica drew while the server was away are written first. While the shared breaker is not Closed the sync is skipped and the last
//! known generations stay.

use std::sync::Arc;

use tokio::sync::watch;

use super::generation::{NamespaceSlot, Namespaces};
use crate::breaker::BreakerState;
use crate::cache::Tiers;

/// How many times in a row the pending-namespace markers may fail to be listed, while the
/// disk otherwise works, before each namespace whose generation came from its local record
/// and differs from the server's is invalidated again.
const GIVE_UP_LISTING: u64 = 3;

/// Invalidates `name` again, its local generation unverifiable (see `GIVE_UP_LISTING`).
async fn reinvalidate(tiers: &Tiers, slot: &NamespaceSlot, name: &str) {
    match slot.invalidate(tiers, name).await {
        Ok(g) => tracing::warn!(
            target: crate::shared::tier::TARGET,
            namespace = name,
            generation = %format!("{g:016x}"),
            "the pending-namespace markers cannot be listed: a namespace whose local \
             generation differs from the server's was invalidated again"
        ),
        Err(e) => tracing::warn!(
            target: crate::shared::tier::TARGET,
            namespace = name,
            error = %e,
            "the pending-namespace markers cannot be listed: invalidating a namespace again \
             failed"
        ),
    }
}

/// Runs one sync every interval until shutdown.
pub(crate) async fn namespace_sync_task(
    tiers: Arc<Tiers>,
    namespaces: Arc<Namespaces>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(every) = tiers.shared().map(|s| s.sync_interval()) else {
        return;
    };
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = crate::clock::sleep_or_never(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        sync_once(&tiers, &namespaces).await;
    }
}

/// One sync (see the module docs).
pub(crate) async fn sync_once(tiers: &Tiers, namespaces: &Namespaces) {
    let Some(shared) = tiers.shared() else { return };
    if shared.state() != BreakerState::Closed {
        return;
    }
    // Invalidations pending before a restart first: nothing is adopted over a local record
    // until they are known. A cache that is not reading its disk now (memory-only after disk
    // errors, or its disk breaker open) reads no local record and no entry from the disk,
    // so it syncs meanwhile: when the disk is back, the markers are read before the next
    // sync and each marked namespace is invalidated again, whatever was adopted.
    namespaces.resume(tiers).await;
    let disk_readable = tiers.gate().in_use() && tiers.breaker_state() != BreakerState::Open;
    // Markers that cannot be listed while the disk works (their directory alone failing):
    // a namespace whose generation came from its local record may hide a pending
    // invalidation. It is left alone while the server holds another generation, and
    // invalidated again (a fresh generation: misses, never stale answers) once the listing
    // has failed `GIVE_UP_LISTING` times; the other namespaces sync as usual.
    let unlisted = !shared.markers_listed() && disk_readable;
    let retried = shared.retry_pending().await;
    namespaces.settle(tiers, retried).await;
    // Each slot's generation before the server is read: a generation this replica draws
    // while the read is in flight is not overwritten by the older one the read returns.
    let slots: Vec<_> = namespaces
        .resolved()
        .into_iter()
        .filter(|(name, _)| !shared.is_pending(name))
        .filter_map(|(name, slot)| slot.snapshot().map(|g| (name, slot, g)))
        .collect();
    if slots.is_empty() {
        return;
    }
    let names: Vec<String> = slots.iter().map(|(n, _, _)| n.clone()).collect();
    let Some(generations) = shared.read_generations(&names).await else {
        return;
    };
    for ((name, slot, before), seen) in slots.iter().zip(generations) {
        if slot.unverified() {
            if seen == Some(*before) || !unlisted {
                slot.verified();
            } else {
                if namespaces.unlisted() >= GIVE_UP_LISTING {
                    reinvalidate(tiers, slot, name).await;
                }
                continue;
            }
        }
        let g = match seen {
            Some(g) if g == *before => continue,
            // Never one this replica left (rolled back on the server): the bootstrap sees it
            // again and writes a fresh one in its place.
            Some(g) if !shared.is_retired(name, g) => Some(g),
            Some(_) | None => slot.bootstrap_shared(tiers, name).await,
        };
        if let Some(g) = g {
            if slot.adopt(tiers, name, *before, g).await {
                shared.count_change();
            }
        }
    }
}
