//! Namespace generations: the state behind [`Namespace`](super::Namespace) (see its module
//! for why a generation): the names, the stored-key scheme, the persisted record, and the
//! per-cache slots that hold each namespace's current generation. Works on the tiers alone,
//! so the cache handle can resolve a [`RequestKey`](super::RequestKey) with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::cache::Tiers;
use crate::codec::{self, Codec, Encoding};
use crate::error::{Error, Result};
use crate::sync::lock;

#[cfg(feature = "redis")]
use super::pending::{self, Marker};
#[cfg(feature = "redis")]
use crate::shared::tier::{Published, Retried};

/// Prefix of the keys of namespaced entries.
// The crate's first name, `tiercache`, stays in what is stored and hashed (these prefixes,
// the generation's derive-key context, `KEY_CONTEXT`, the file magic): renaming the crate must
// not change a stored key or orphan a namespace.
pub(crate) const ENTRY_PREFIX: &[u8] = b"\0tiercache:ns:";
/// Prefix of the keys of namespace records.
pub(crate) const RECORD_PREFIX: &[u8] = b"\0tiercache:nsgen:";
/// Longest namespace name.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Checks a namespace name: 1 to [`MAX_NAMESPACE_LEN`] characters of `A-Z a-z 0-9 . _ - /`.
/// The restriction keeps stored keys unambiguous (no `:`) and readable in logs.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/');
    if name.is_empty() || name.len() > MAX_NAMESPACE_LEN || !name.bytes().all(ok_char) {
        return Err(Error::Config(format!(
            "invalid namespace name {name:?}: use 1 to {MAX_NAMESPACE_LEN} characters of \
             A-Z a-z 0-9 . _ - /"
        )));
    }
    Ok(())
}

fn record_key(name: &str) -> Vec<u8> {
    [RECORD_PREFIX, name.as_bytes()].concat()
}

fn entry_key(name: &str, generation: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(ENTRY_PREFIX.len() + name.len() + 18 + key.len());
    k.extend_from_slice(ENTRY_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k.extend_from_slice(format!(":{generation:016x}:").as_bytes());
    k.extend_from_slice(key);
    k
}

/// A fresh generation: unpredictable enough never to repeat one this or another process drew.
fn fresh_generation(now_ms: u64) -> u64 {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new_derive_key("tiercache namespace generation v1");
    h.update(&nanos.to_le_bytes());
    h.update(&now_ms.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&DRAWN.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    // 0 means "not resolved yet" in the slot.
    u64::from_le_bytes(first).max(1)
}

/// The persisted record of a namespace.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    generation: u64,
    created_ms: u64,
    /// The generations this cache left for it (feature `redis`: the last
    /// `RETIRED_GENERATIONS`), so that a reopened cache never adopts one of them from a
    /// server rolled back by a restore or a failover. Absent in records of older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired: Vec<u64>,
}

/// A record as the versions before `retired` wrote it (bincode, which has no optional
/// fields: a record of two fields does not decode as one of three).
#[derive(Debug, Serialize, Deserialize)]
struct RecordV1 {
    generation: u64,
    created_ms: u64,
}

/// Decodes a namespace record of this version or of an earlier one.
fn decode_record(encoding: Encoding, bytes: &[u8]) -> Option<Record> {
    codec::decode::<Record>(encoding, bytes).ok().or_else(|| {
        codec::decode::<RecordV1>(encoding, bytes)
            .ok()
            .map(|r| Record {
                generation: r.generation,
                created_ms: r.created_ms,
                retired: Vec::new(),
            })
    })
}

/// The record of generation `g` of `name`, made now, with the generations left for it.
fn record_of(tiers: &Tiers, name: &str, g: u64) -> Result<Arc<[u8]>> {
    #[cfg(feature = "redis")]
    let retired = tiers
        .shared()
        .map(|s| s.retired_generations(name))
        .unwrap_or_default();
    #[cfg(not(feature = "redis"))]
    let retired = {
        let _ = name;
        Vec::new()
    };
    let record = Record {
        generation: g,
        created_ms: tiers.now_ms(),
        retired,
    };
    Ok(codec::encode(Codec::Json, &record)?.into())
}

/// How many generations one `invalidate` draws when the server holds another replica's
/// newer one each time (then the sync takes over).
#[cfg(feature = "redis")]
const INVALIDATE_TRIES: u32 = 3;

/// The outcome of one draw of `invalidate`.
enum Drawn {
    /// The call's result.
    Done(Result<u64>),
    /// The server held another replica's generation: draw again.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Superseded,
}

/// A namespace's in-memory state in one open cache.
#[derive(Debug, Default)]
pub(crate) struct NamespaceSlot {
    /// The current generation; 0 until first read. Set under `lock`, read without it.
    generation: AtomicU64,
    /// Serializes reading and replacing the record.
    lock: tokio::sync::Mutex<()>,
    /// Set when the generation came from the local record while the pending-namespace
    /// markers could not be listed (feature `redis`): it may be an invalidation the server
    /// has not taken, so the sync checks it against the server before anything is adopted
    /// over it (see `shared_sync`).
    #[cfg(feature = "redis")]
    unverified: std::sync::atomic::AtomicBool,
}

/// The namespaces used in one open cache, by name.
#[derive(Debug, Default)]
pub(crate) struct Namespaces {
    slots: Mutex<HashMap<String, Arc<NamespaceSlot>>>,
    /// Serializes reading the pending-namespace markers (feature `redis`).
    #[cfg(feature = "redis")]
    resume: tokio::sync::Mutex<()>,
    /// How many times in a row the markers could not be listed (feature `redis`).
    #[cfg(feature = "redis")]
    unlisted: AtomicU64,
}

/// Remembers (feature `redis`) that this replica left generation `old` of `name` for `new`:
/// the shared tier never adopts it again (a generation rolled back on the server).
fn retire(tiers: &Tiers, name: &str, old: u64, new: u64) {
    #[cfg(feature = "redis")]
    if old != 0 && old != new {
        if let Some(shared) = tiers.shared() {
            shared.retire_generation(name, old);
        }
    }
    #[cfg(not(feature = "redis"))]
    let _ = (tiers, name, old, new);
}

impl Namespaces {
    /// The slot of `name` ([`Error::Config`] for an invalid name); handles of the same name
    /// share it.
    pub(crate) fn slot(&self, name: &str) -> Result<Arc<NamespaceSlot>> {
        check_name(name)?;
        Ok(lock(&self.slots)
            .entry(name.to_owned())
            .or_default()
            .clone())
    }
}

impl Namespaces {
    /// Every namespace used so far whose generation is known, by name.
    #[cfg(feature = "redis")]
    pub(crate) fn resolved(&self) -> Vec<(String, Arc<NamespaceSlot>)> {
        lock(&self.slots)
            .iter()
            .filter(|(_, s)| s.generation.load(Ordering::Acquire) != 0)
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }
}

#[cfg(feature = "redis")]
impl Namespaces {
    /// Reads the pending-namespace markers back (see [`super::pending`]), once: each marked
    /// namespace is invalidated again, with a fresh generation (pending until the server
    /// takes it). Never the marker's own generation: the marker may be older than a later
    /// invalidation whose own marker could not be written, or than another replica's that
    /// the server took meanwhile, and answers stored under it may predate those; a fresh one
    /// costs misses, never stale answers. The generation the marker names is retired (never
    /// adopted from the server). When the disk cannot list them now, the next sync tries
    /// again, and until then no generation is taken from the server over a local record.
    pub(crate) async fn resume(&self, tiers: &Tiers) {
        let Some(shared) = tiers.shared() else { return };
        let _one = self.resume.lock().await;
        if shared.markers_listed() {
            return;
        }
        let Some(markers) = pending::list(tiers).await else {
            self.unlisted.fetch_add(1, Ordering::AcqRel);
            return;
        };
        for marker in markers {
            let (name, g) = match marker {
                Marker::Pending { name, g, retired } => (name, Some((g, retired))),
                Marker::Unknown { name } => (name, None),
                Marker::Foreign => continue,
            };
            let Ok(slot) = self.slot(&name) else { continue };
            match g {
                // The pending one, and those left before it: the fresh generation may be
                // written over any of them (the server may hold one still).
                Some((g, retired)) => {
                    for left in retired.into_iter().chain([g]) {
                        shared.retire_generation(&name, left);
                    }
                }
                None => pending::remove_bad(tiers, &name).await,
            }
            match slot.invalidate(tiers, &name).await {
                Ok(g) => tracing::info!(
                    target: crate::shared::tier::TARGET,
                    namespace = name.as_str(),
                    generation = %format!("{g:016x}"),
                    "a namespace invalidation pending when this directory was last open: \
                     invalidated again"
                ),
                Err(e) => tracing::warn!(
                    target: crate::shared::tier::TARGET,
                    namespace = name.as_str(),
                    error = %e,
                    "a namespace invalidation pending when this directory was last open: \
                     invalidating it again did not reach the disk"
                ),
            }
        }
        shared.set_markers_listed();
    }

    /// How many times in a row the markers could not be listed (0 once they were).
    pub(crate) fn unlisted(&self) -> u64 {
        self.unlisted.load(Ordering::Acquire)
    }

    /// Removes the markers of the generations the server took, unless a newer invalidation
    /// of the namespace is pending by now; invalidates again, with a fresh generation, each
    /// namespace whose pending generation the server holds another in place of (another
    /// replica's, which the pending one must not overwrite; or nothing, after a flush).
    pub(crate) async fn settle(&self, tiers: &Tiers, retried: Retried) {
        let Some(shared) = tiers.shared() else { return };
        for (name, g, cur) in retried.superseded {
            let Ok(slot) = self.slot(&name) else { continue };
            if shared.pending_generation(&name) != Some(g) {
                continue; // invalidated again meanwhile
            }
            if let Some(cur) = cur {
                shared.retire_generation(&name, cur);
            }
            match slot.invalidate(tiers, &name).await {
                Ok(now) => tracing::info!(
                    target: crate::shared::tier::TARGET,
                    namespace = name.as_str(),
                    generation = %format!("{now:016x}"),
                    "a pending namespace invalidation found another replica's generation on \
                     the server: invalidated again over it"
                ),
                Err(e) => tracing::warn!(
                    target: crate::shared::tier::TARGET,
                    namespace = name.as_str(),
                    error = %e,
                    "a pending namespace invalidation found another replica's generation on \
                     the server: invalidating again did not reach the disk"
                ),
            }
        }
        for (name, g) in retried.written {
            let Ok(slot) = self.slot(&name) else { continue };
            let _serial = slot.lock.lock().await;
            if !shared.is_pending(&name) {
                pending::remove(tiers, &name, g).await;
            }
        }
    }
}

#[cfg(feature = "redis")]
impl NamespaceSlot {
    /// Whether the generation came from the local record while the markers could not be
    /// listed, and has not been found on the server since (see the field).
    pub(crate) fn unverified(&self) -> bool {
        self.unverified.load(Ordering::Acquire)
    }

    /// Records that the server holds this generation: nothing is pending behind it.
    pub(crate) fn verified(&self) {
        self.unverified.store(false, Ordering::Release);
    }
}

impl NamespaceSlot {
    /// The current generation, for a sync about to read the server's: `None` while this
    /// replica is changing it (an `invalidate` or a first read holds the slot), so that the
    /// sync skips the slot this time. A snapshot taken here precedes every server read of
    /// the sync, and any later local change shows in [`NamespaceSlot::adopt`]'s compare.
    #[cfg(feature = "redis")]
    pub(crate) fn snapshot(&self) -> Option<u64> {
        let _serial = self.lock.try_lock().ok()?;
        Some(self.generation.load(Ordering::Acquire))
    }

    /// Adopts generation `g` of namespace `name` seen in the shared tier (another replica
    /// invalidated it, or bootstrapped it first): the slot, and the local record so that a
    /// reopen starts from it. Returns whether the generation changed. Skipped while this
    /// replica's own newer generation waits to be written there, for a generation this
    /// replica retired, and when the slot no longer holds `expected` (its
    /// [`NamespaceSlot::snapshot`] before the server was read): this replica changed it since
    /// (an `invalidate` whose write the read may predate), and the next sync reconciles.
    #[cfg(feature = "redis")]
    pub(crate) async fn adopt(&self, tiers: &Tiers, name: &str, expected: u64, g: u64) -> bool {
        let _serial = self.lock.lock().await;
        // Never one this replica left (read from the server before an invalidation of its
        // own, or rolled back there): the next sync replaces it.
        if tiers
            .shared()
            .is_some_and(|s| s.is_pending(name) || s.is_retired(name, g))
        {
            return false;
        }
        if self.generation.load(Ordering::Acquire) != expected {
            return false;
        }
        let old = self.generation.swap(g, Ordering::AcqRel);
        if old == g {
            return false;
        }
        retire(tiers, name, old, g);
        if let Ok(bytes) = record_of(tiers, name, g) {
            // Best effort: the slot already holds `g`; a record not on disk is drawn again
            // (and reconciled by the next sync) after a reopen.
            let _ = tiers
                .set(&record_key(name), bytes, None, 0, Encoding::Json)
                .await;
        }
        tracing::info!(
            target: crate::shared::tier::TARGET,
            namespace = name,
            generation = %format!("{g:016x}"),
            "namespace generation changed by another replica"
        );
        true
    }

    /// A fresh generation, bootstrapped in the shared tier (`SET NX GET`: the first replica
    /// wins and every other adopts it), or written in place of one this replica retired.
    /// `None` when the shared tier cannot be asked. Serialized with `invalidate`: the server's
    /// generation is read after any invalidation of this replica has written its own, so a
    /// generation it has just left is not taken for a rolled-back one.
    #[cfg(feature = "redis")]
    pub(crate) async fn bootstrap_shared(&self, tiers: &Tiers, name: &str) -> Option<u64> {
        let shared = tiers.shared()?;
        let _serial = self.lock.lock().await;
        shared
            .bootstrap_generation(name, fresh_generation(tiers.now_ms()))
            .await
    }

    /// The current generation of namespace `name` (read from the cache on first use).
    pub(crate) async fn generation(&self, tiers: &Tiers, name: &str) -> Result<u64> {
        let g = self.generation.load(Ordering::Acquire);
        if g != 0 {
            return Ok(g);
        }
        self.read_record(tiers, name, false).await
    }

    /// The stored key of `key` (as given inside namespace `name`) in the current generation.
    pub(crate) async fn stored_key(
        &self,
        tiers: &Tiers,
        name: &str,
        key: &[u8],
    ) -> Result<Vec<u8>> {
        Ok(entry_key(name, self.generation(tiers, name).await?, key))
    }

    /// Reads the generation record (`again`: from the disk, not a clean copy in memory), or
    /// writes a fresh one if there is none.
    pub(crate) async fn read_record(&self, tiers: &Tiers, name: &str, again: bool) -> Result<u64> {
        let _serial = self.lock.lock().await;
        let g = self.generation.load(Ordering::Acquire);
        if g != 0 && !again {
            return Ok(g);
        }
        let rk = record_key(name);
        if again {
            // Another process may have replaced the record on disk: a clean copy in memory is
            // the record as this process last read it, so read the disk instead.
            tiers.drop_clean_hot(&rk);
        }
        let found = tiers.lookup(&rk, false).await?;
        let record = found.and_then(|f| decode_record(f.encoding, &f.value));
        // The generations this cache left, as of its last run: never adopted again.
        #[cfg(feature = "redis")]
        if let (Some(shared), Some(r)) = (tiers.shared(), &record) {
            for &left in &r.retired {
                shared.retire_generation(name, left);
            }
        }
        let local = match record {
            Some(r) if r.generation != 0 => Some(r.generation),
            _ => None,
        };
        // With a shared tier, the replicas' generation wins over the local record: `GET`, or
        // on nil a *fresh* generation by `SET NX GET` (never the local record's: it may be
        // one the fleet invalidated since, and reusing it would bring old answers back).
        // Unreachable: the local record, reconciled by the next sync.
        #[cfg(feature = "redis")]
        let local = match tiers.shared() {
            // Until the markers are read, a local record may be an invalidation the server
            // has not taken: it is kept, unverified, and the sync reconciles it.
            Some(shared)
                if !shared.is_pending(name) && (shared.markers_listed() || local.is_none()) =>
            {
                match shared
                    .bootstrap_generation(name, fresh_generation(tiers.now_ms()))
                    .await
                {
                    Some(g) if Some(g) != local => {
                        if let Some(left) = local {
                            shared.retire_generation(name, left);
                        }
                        let bytes = record_of(tiers, name, g)?;
                        match tiers.set(&rk, bytes, None, 0, Encoding::Json).await {
                            Ok(()) | Err(Error::NotPersisted { .. }) => {}
                            Err(e) => return Err(e),
                        }
                        Some(g)
                    }
                    _ => local,
                }
            }
            Some(shared) if local.is_some() && !shared.markers_listed() => {
                self.unverified.store(true, Ordering::Release);
                local
            }
            _ => local,
        };
        let g = match local {
            Some(g) => g,
            None => {
                // Never written, or lost: a fresh generation (see the module docs).
                let g = fresh_generation(tiers.now_ms());
                let record = record_of(tiers, name, g)?;
                // A write-through store that did not reach the disk still serves the
                // generation from memory; `flush` reports it.
                match tiers.set(&rk, record, None, 0, Encoding::Json).await {
                    Ok(()) | Err(Error::NotPersisted { .. }) => {}
                    Err(e) => return Err(e),
                }
                g
            }
        };
        let old = self.generation.swap(g, Ordering::AcqRel);
        retire(tiers, name, old, g);
        Ok(g)
    }

    /// Draws a new generation for namespace `name` and returns it once it is on disk (see
    /// [`Namespace::invalidate`](super::Namespace::invalidate)).
    pub(crate) async fn invalidate(&self, tiers: &Tiers, name: &str) -> Result<u64> {
        // A closed cache changes nothing (no marker, no generation on the server): the
        // `Closed` error means the call did not happen.
        tiers.check_open()?;
        let _serial = self.lock.lock().await;
        tiers.check_open()?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.invalidate_locked(tiers, name, tries).await {
                Drawn::Done(r) => return r,
                Drawn::Superseded => continue,
            }
        }
    }

    /// One draw of [`NamespaceSlot::invalidate`], under the slot's lock (`tries`: this one's
    /// number).
    async fn invalidate_locked(&self, tiers: &Tiers, name: &str, tries: u32) -> Drawn {
        let g = fresh_generation(tiers.now_ms());
        // In memory first: from here on, this process never reads an old entry.
        let old = self.generation.swap(g, Ordering::AcqRel);
        retire(tiers, name, old, g);
        #[cfg(feature = "redis")]
        self.verified();
        let record = match record_of(tiers, name, g) {
            Ok(r) => r,
            Err(e) => return Drawn::Done(Err(e)),
        };
        let rk = record_key(name);
        // With a shared tier, a marker first (see `pending` below): until the server takes
        // the generation, a restart must know it is pending.
        #[cfg(feature = "redis")]
        let marked = match tiers.shared() {
            Some(shared) => {
                let retired = shared.retired_generations(name);
                Some(pending::write(tiers, name, g, &retired).await)
            }
            None => None,
        };
        // Waits for this write's own acknowledgement, whatever the write policy: `Ok` only
        // once the new generation is on disk.
        let written = tiers.set_durable(&rk, record, None, Encoding::Json).await;
        // The other replicas learn it from the shared tier: written inline, within the
        // tier's timeout; when the server is away it stays pending (retried by the sync
        // task) and the invalidation still holds here.
        #[cfg(feature = "redis")]
        if let (Some(shared), Some(marked)) = (tiers.shared(), marked) {
            match shared.publish_generation(name, g).await {
                Published::Written => {
                    if marked.is_ok() {
                        pending::remove(tiers, name, g).await;
                    }
                }
                // Another replica's generation, written since this one last synced: `g` is
                // not written over it (answers stored under `g` between the draw and now may
                // predate it). It is retired here and a fresh generation replaces both; a
                // few times, then the sync finishes the job.
                Published::Superseded(cur) if tries < INVALIDATE_TRIES => {
                    if let Some(cur) = cur {
                        shared.retire_generation(name, cur);
                    }
                    return Drawn::Superseded;
                }
                Published::Superseded(_) | Published::Failed => {
                    if let (Ok(()), Err(e)) = (&written, marked) {
                        return Drawn::Done(Err(Error::NotPersisted {
                            failed: 1,
                            last_error: format!(
                                "the invalidation of namespace {name:?} holds here and is on \
                                 disk, but the shared server has not taken it and its pending \
                                 marker could not be written ({e}): after a crash the other \
                                 replicas would learn it only at this namespace's next use"
                            ),
                        }));
                    }
                }
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = tries;
        Drawn::Done(match written {
            Ok(()) => Ok(g),
            Err(Error::NotPersisted { last_error, .. }) => Err(Error::NotPersisted {
                failed: 1,
                last_error: format!(
                    "the new generation of namespace {name:?} is not on disk: {last_error}"
                ),
            }),
            Err(e) => Err(e),
        })
    }
}
