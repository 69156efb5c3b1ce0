//! The writer: hands queued jobs to the disk, completes them, and writes dirty entries back.
//!
//! A job's key is released (`finish_job`) from inside the blocking call, when the disk call
//! really returned: a call that timed out and returns later can never race a newer write of
//! the same key to the rename. Counters are updated there too, before `flush` is released, and
//! write-through waiters are told only after the outcome reached the breaker and the counters,
//! so a returning `set` sees its effects.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tracing::info;

use crate::cache::{lock, Inner};
use crate::disk::DiskOutcome;
use crate::fs::IoErrorKind;
use crate::queue::{Job, Op};
use crate::warm::format::EntryMeta;
use crate::warm::layout::{key_hash, KeyHash};
use crate::warm::store::WriteOutcome;

/// The most concurrent writes the writer runs, whatever the setting.
pub(crate) const MAX_WRITE_CONCURRENCY: usize = 1024;

/// How a write job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobEnd {
    /// On disk.
    Landed,
    /// Can never be written (too large for the warm tier, EFBIG, a blocked path).
    PerEntry,
    /// The disk failed.
    Failed,
    /// The disk was not called (memory-only, breaker open).
    Skipped,
}

/// Whether a job landed, and the write-through waiters to tell.
type Acks = (bool, Vec<tokio::sync::oneshot::Sender<bool>>);

impl Inner {
    /// Writes one queued job and completes it.
    #[tracing::instrument(level = "trace", name = "write", skip_all, fields(seq = job.seq))]
    async fn run_job(self: &Arc<Self>, job: Job) {
        let Job { hash, key, op, seq } = job;
        // Write-through waiters, handed over by the blocking call and told only after the
        // outcome reached the breaker and the counters, so a returning `set` sees its effects.
        let acks: Arc<Mutex<Option<Acks>>> = Arc::new(Mutex::new(None));
        let (inner, op2, key2, acks2) = (self.clone(), op.clone(), key.clone(), acks.clone());
        // The key is released (`finish_job`) from inside the blocking call, when the disk call
        // really returned: a call that timed out and returns later can never race a newer
        // write of the same key to the rename.
        let outcome = self
            .disk
            .run(move |fs, store| {
                let result = match &op2 {
                    Op::Put { value, meta, .. } => store.write(fs, &key2, &hash, value, *meta),
                    Op::Delete { .. } => store
                        .remove(fs, &hash)
                        .map(|_| WriteOutcome::Written { len: 0 }),
                };
                if let (Op::Put { meta, .. }, Ok(WriteOutcome::Written { .. })) = (&op2, &result)
                {
                    // A `clear` ran while this write was in flight and did not wait for it (it
                    // had timed out): the clear supersedes it, also after a restart. No newer
                    // write of the key can race this delete: the key is still held.
                    if inner.cleared_since(meta.created_ms) {
                        if let Err(e) = store.remove(fs, &hash) {
                            tracing::debug!(error = %e, "could not remove a write a clear superseded");
                        }
                    }
                }
                let end = match &result {
                    Ok(WriteOutcome::Written { .. }) => JobEnd::Landed,
                    Ok(WriteOutcome::TooLarge) => JobEnd::PerEntry,
                    // A delete that failed must be retried whatever the error: the file is
                    // still there.
                    Err(e)
                        if matches!(op2, Op::Put { .. })
                            && !IoErrorKind::classify(e).is_device_failure() =>
                    {
                        JobEnd::PerEntry
                    }
                    Err(_) => JobEnd::Failed,
                };
                *lock(&acks2) = Some(inner.finish_job(&hash, &key2, seq, &op2, end));
                result
            })
            .await;
        self.note_outcome("write", &outcome);
        match &outcome {
            DiskOutcome::TimedOut => self.queue.mark_stuck(&hash, seq),
            DiskOutcome::Skipped => {
                // Memory-only or breaker open: the entry stays dirty for write-back.
                *lock(&acks) = Some(self.finish_job(&hash, &key, seq, &op, JobEnd::Skipped));
            }
            DiskOutcome::Done { .. } => {
                // The store panicked before the job was completed: complete it as failed,
                // or its key would stay in flight and `flush` would wait forever.
                let mut acks = lock(&acks);
                if acks.is_none() {
                    self.counters.task_panics.inc();
                    *acks = Some(self.finish_job(&hash, &key, seq, &op, JobEnd::Failed));
                }
            }
        }
        let acks = lock(&acks).take();
        if let Some((landed, waiters)) = acks {
            for w in waiters {
                let _ = w.send(landed);
            }
        }
    }

    /// Completes a job: a landed write (or one that can never land: too large, EFBIG) makes
    /// its hot version clean; a failed or skipped one leaves it dirty, and counts as lost if the
    /// hot tier no longer holds it and no newer operation superseded it. Counted here, where
    /// the outcome is known even for a call that returned after its timeout. Returns whether it
    /// landed and the write-through waiters to tell.
    fn finish_job(&self, hash: &KeyHash, key: &[u8], seq: u64, op: &Op, end: JobEnd) -> Acks {
        let version = match op {
            Op::Put { version, .. } | Op::Delete { version } => *version,
        };
        let held = match end {
            JobEnd::Landed | JobEnd::PerEntry => self.hot.mark_clean(key, version),
            JobEnd::Failed | JobEnd::Skipped => {
                self.hot.peek(key).is_some_and(|e| e.version == version)
            }
        };
        // Counters first: `complete` releases `flush`, which must see them.
        match end {
            JobEnd::Landed => self.counters.writes_ok.inc(),
            JobEnd::PerEntry => self.counters.writes_skipped_too_large.inc(),
            JobEnd::Failed => self.counters.writes_failed.inc(),
            JobEnd::Skipped => {}
        }
        match end {
            JobEnd::Landed => {
                // The disk now holds something newer than a loss recorded before this write.
                let mut stale = lock(&self.stale);
                if stale.get(hash).is_some_and(|&(_, lost)| lost < version) {
                    stale.remove(hash);
                }
            }
            // It can never be written (too large, EFBIG): it lives in memory only, and an
            // older file of the key must not be served once it is evicted.
            JobEnd::PerEntry => self.mark_stale(*hash, version),
            JobEnd::Failed | JobEnd::Skipped => {}
        }
        let (superseded, waiters) = self.queue.complete(hash, seq);
        if matches!(end, JobEnd::Failed | JobEnd::Skipped) && !held && !superseded {
            self.counters.lost_writes.inc();
            self.mark_stale(*hash, version);
        }
        (end == JobEnd::Landed, waiters)
    }

    /// Queues a write for every dirty entry that has none (after recovery, or when a health
    /// check finds the disk well). Latest wins: an entry is queued only if the hot tier still
    /// holds that dirty version when the write is installed. Returns how many were queued.
    pub(crate) async fn write_back(&self) -> u64 {
        let _gate = self.write_back_gate.lock().await;
        self.write_back_gated().await
    }

    /// [`Inner::write_back`] for a caller that holds `write_back_gate`.
    pub(crate) async fn write_back_gated(&self) -> u64 {
        let now = self.clock.now_ms();
        let mut queued = 0;
        for (key, e) in self.hot.dirty_entries() {
            if !self.disk_allowed() {
                break;
            }
            if e.expires_ms != 0 && now >= e.expires_ms {
                continue;
            }
            let hash = key_hash(&key);
            if self.queue.lookup(&hash).is_some() {
                continue;
            }
            let Some(permit) = self.queue.reserve(key.len(), e.value.len()).await else {
                break;
            };
            let op = if e.tombstone {
                Op::Delete { version: e.version }
            } else {
                Op::Put {
                    value: e.value.clone(),
                    meta: EntryMeta {
                        created_ms: now,
                        expires_ms: e.expires_ms,
                        cost: e.cost,
                    },
                    version: e.version,
                }
            };
            let still_dirty = || {
                self.hot
                    .peek(&key)
                    .is_some_and(|h| h.version == e.version && h.dirty)
            };
            if self
                .queue
                .commit_if(permit, hash, Arc::from(&key[..]), op, still_dirty)
            {
                queued += 1;
            }
        }
        if queued > 0 {
            self.counters.written_back.add(queued);
            info!(queued, "dirty entries queued for write-back");
        }
        queued
    }
}

/// Hands queued jobs to at most `write_concurrency` concurrent writes. On shutdown it drains
/// what is queued, then exits.
pub(crate) async fn writer_task(inner: Arc<Inner>) {
    // The builder bounds it; clamped again so that no setting can make `Semaphore` panic.
    let concurrency = inner.config.write_concurrency.clamp(1, MAX_WRITE_CONCURRENCY);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut shutdown = inner.shutdown();
    loop {
        let notified = inner.queue.ready.notified();
        while let Some(job) = inner.queue.take() {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let inner2 = inner.clone();
            tokio::spawn(async move {
                inner2.run_job(job).await;
                drop(permit);
            });
        }
        if *shutdown.borrow() && !inner.queue.has_ready() {
            // Wait for the writes in flight, then stop.
            // Fits: at most MAX_WRITE_CONCURRENCY.
            let _ = slots.acquire_many(concurrency as u32).await;
            if inner.queue.shut_if_idle() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = notified => {}
            _ = shutdown.changed() => {}
        }
    }
}
