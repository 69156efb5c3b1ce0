//! The writer: hands queued jobs to the disk, completes them, and writes dirty entries back.
//!
//! A job is completed (`finish_job`: counters, the hot entry's dirty mark, the key's queue
//! slot released) after its outcome reached the breaker, so that `flush`, released by the
//! completion, and a write-through `set` see the mode and breaker state that the write left
//! behind. A disk call that timed out is completed by the blocking call itself when it really
//! returns: it can never race a newer write of the same key to the rename.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::info;

use crate::disk::DiskOutcome;
use crate::fs::IoErrorKind;
use crate::hot::Evicted;
use crate::parts::Parts;
use crate::queue::{Job, Op, QueueView};
use crate::sync::lock;
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
    /// Larger than the whole warm budget: the value lives in memory only, its older file
    /// deleted. It stays dirty, so `flush` reports it (it is not on disk), and is marked
    /// unwritable, so write-back does not try again.
    PerEntry,
    /// EFBIG (a file-size limit): like `PerEntry`, but write-back tries again (a limit can be
    /// raised; an EFBIG can be transient). Not a failure of the device.
    FileTooLarge,
    /// Its path is blocked (ENOTDIR, ELOOP, a foreign file or directory in the way): not a
    /// fault of the device, but not on disk either. It stays dirty: `flush` reports it and
    /// write-back retries it.
    Blocked,
    /// The disk failed.
    Failed,
    /// The disk was not called (memory-only, breaker open).
    Skipped,
}

/// Whether a job landed, and the write-through waiters to tell.
type Acks = (bool, Vec<tokio::sync::oneshot::Sender<bool>>);

/// Who completes a job (see `run_job`).
enum Completion {
    /// The disk call has not returned.
    Running,
    /// It returned with this end; the writer task completes the job.
    Returned(JobEnd),
    /// The writer task gave up waiting (timeout); the blocking call completes the job.
    GaveUp,
    /// Completed.
    Finished,
}

/// What the writer uses, and nothing else: the write queue it drains, the hot tier whose
/// entries it marks clean, the disk gate, the freshness record it reports landings and
/// losses to, the counters, the clock. Shared with the cache (which queues writes and asks for
/// write-back) and with recovery (which triggers write-back).
pub(crate) struct Writer {
    /// The state holders (the writer uses all of them).
    pub(crate) p: Parts,
    /// Write jobs hold it shared while they call the disk; `clear` holds it exclusively
    /// ([`Writer::pause`]) while it records the fence and deletes the entry files, so that a
    /// write made after the clear began is never deleted by it.
    clear_gate: tokio::sync::RwLock<()>,
    /// Held while dirty entries are queued for write-back ([`Writer::write_back_lock`]): by
    /// recovery while it switches the mode back and queues them, and by `flush` before it
    /// looks at the queue, so a `flush` that sees the recovered mode also waits for the
    /// write-back that recovery started.
    write_back_gate: tokio::sync::Mutex<()>,
    /// The most concurrent writes.
    concurrency: usize,
    /// One permit per write calling the disk, `concurrency` in all: taken by the writer task
    /// for each job it hands out and by a write-through caller that runs its own job
    /// ([`Writer::claim_slot`]).
    slots: Arc<Semaphore>,
    /// The runtime the cache was opened on: a write-through caller dropped while it runs its
    /// own job hands the rest of it to a task there ([`Driven`]).
    runtime: Option<tokio::runtime::Handle>,
}

impl Writer {
    /// A writer over `p`, with at most `concurrency` writes at once (clamped to
    /// `1..=MAX_WRITE_CONCURRENCY`).
    pub(crate) fn new(p: Parts, concurrency: usize) -> Self {
        let concurrency = concurrency.clamp(1, MAX_WRITE_CONCURRENCY);
        Writer {
            p,
            clear_gate: tokio::sync::RwLock::new(()),
            write_back_gate: tokio::sync::Mutex::new(()),
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// A write slot for a write-through caller that will run its own job (see
    /// [`WriteQueue::commit_claiming`](crate::queue::WriteQueue::commit_claiming)), if one is
    /// free now. `None`: the writer task runs the job.
    ///
    /// Why: a job the writer task runs wakes the writer task, then the task it spawns for the
    /// job, then the caller; a job the caller runs itself wakes only the blocking thread and
    /// then the caller, as a plain `spawn_blocking` of the same disk calls would.
    pub(crate) fn claim_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.runtime.as_ref()?;
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Runs a job a write-through caller claimed, on the caller's task, holding `slot`
    /// while it runs. Dropped before it finished (the caller was cancelled), the rest of
    /// the job runs to its end in a task of its own: a job once started is always completed,
    /// or its key would stay in flight and `flush` would wait forever. It is polled inside
    /// the cache's runtime, whatever runtime (or executor) the caller runs on: its disk calls
    /// use that runtime's blocking pool and timers, as the writer task's jobs do.
    pub(crate) fn drive(self: &Arc<Self>, job: Job, slot: OwnedSemaphorePermit) -> Driven {
        let writer = self.clone();
        Driven {
            job: Some(Box::pin(async move {
                writer.run_job(job).await;
                drop(slot);
            })),
            runtime: self.runtime.clone(),
            counters: self.p.counters.clone(),
        }
    }

    /// Waits for the writes calling the disk now and keeps new ones from starting until the
    /// guard drops (`clear`).
    pub(crate) async fn pause(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.clear_gate.write().await
    }

    /// Keeps a `clear` from starting until the guard drops (a compaction: see
    /// `crate::compactor`), as a write job does while it calls the disk.
    pub(crate) async fn hold_off_clear(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.clear_gate.read().await
    }

    /// The write-back lock (see the field's docs).
    pub(crate) async fn write_back_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_back_gate.lock().await
    }

    /// Accounts for entries pushed out of the hot tier, with the queue locked (`view`) so the
    /// writer cannot finish a write between the eviction and this decision. A dirty entry is
    /// lost unless the queue holds its version or a newer one; an older write still in flight
    /// would land and leave an older value on disk, so a lost key is marked stale.
    pub(crate) fn on_evicted(&self, view: &QueueView<'_>, evicted: Vec<Evicted>) {
        if evicted.is_empty() {
            return;
        }
        self.p.counters.hot_evictions.add(evicted.len() as u64);
        for ev in evicted {
            if !ev.entry.dirty {
                continue;
            }
            let hash = key_hash(&ev.key);
            if view
                .pending_version(&hash)
                .is_some_and(|v| v >= ev.entry.version)
            {
                continue;
            }
            let expired = ev.entry.expires_ms != 0 && self.p.clock.now_ms() >= ev.entry.expires_ms;
            if expired {
                self.p.freshness.mark_lost(hash, ev.entry.version, true);
                continue;
            }
            // Counted, not logged: under memory pressure this happens per request.
            self.p.counters.lost_writes.inc();
            self.p.freshness.mark_lost(hash, ev.entry.version, false);
        }
    }

    /// Writes one queued job and completes it.
    #[tracing::instrument(level = "trace", name = "write", skip_all, fields(seq = job.seq))]
    async fn run_job(self: &Arc<Self>, job: Job) {
        let Job {
            hash,
            key,
            mut op,
            seq,
        } = job;
        if let Op::Put { meta, .. } = &mut op {
            // Until the fence on disk is known, nothing is written: an entry's creation time
            // must not fall before a clear this process has not seen yet (it was made after
            // it), or it would be taken for a cleared one.
            if !self.p.freshness.load_fence(&self.p.gate).await {
                let (landed, waiters) = self.finish_job(&hash, &key, seq, &op, JobEnd::Skipped);
                for w in waiters {
                    let _ = w.send(landed);
                }
                return;
            }
            meta.created_ms = meta.created_ms.max(self.p.freshness.write_floor());
        }
        // Who completes the job: this task, after the outcome reached the breaker and the
        // error log (so that `flush`, released by the completion, and a write-through `set`
        // see the mode and the breaker that this write left behind); or, once this task gave
        // up on a disk call that timed out, the blocking call itself when it really returns,
        // so that it can never race a newer write of the same key to the rename.
        let completion = Arc::new(Mutex::new(Completion::Running));
        let (writer, op2, key2, completion2) =
            (self.clone(), op.clone(), key.clone(), completion.clone());
        let clear_gate = self.clear_gate.read().await;
        let outcome = self
            .p
            .gate
            .run(move |fs, store| {
                let result = match &op2 {
                    Op::Put {
                        value,
                        meta,
                        encoded,
                        ..
                    } => store.write_encoded(fs, &key2, &hash, value, *meta, encoded.as_deref()),
                    Op::Delete { .. } | Op::Purge { .. } => store
                        .remove(fs, &hash)
                        .map(|_| WriteOutcome::Written { len: 0 }),
                };
                if let (Op::Put { meta, .. }, Ok(WriteOutcome::Written { .. })) = (&op2, &result)
                {
                    // A `clear` ran while this write was in flight and did not wait for it (it
                    // had timed out): the clear supersedes it, also after a restart. No newer
                    // write of the key can race this delete: the key is still held.
                    if writer.p.freshness.cleared_since(meta.created_ms) {
                        if let Err(e) = store.remove(fs, &hash) {
                            tracing::debug!(error = %e, "could not remove a write a clear superseded");
                        }
                    }
                }
                let end = match &result {
                    Ok(WriteOutcome::Written { .. }) => JobEnd::Landed,
                    Ok(WriteOutcome::TooLarge) => {
                        writer.p.gate.set_last_error(crate::disk::TOO_LARGE_FOR_THE_BUDGET);
                        JobEnd::PerEntry
                    }
                    // A delete that failed must be retried whatever the error: the file is
                    // still there.
                    Err(e) if matches!(op2, Op::Put { .. }) => match IoErrorKind::classify(e) {
                        IoErrorKind::FileTooLarge => JobEnd::FileTooLarge,
                        k if !k.is_device_failure() => JobEnd::Blocked,
                        _ => JobEnd::Failed,
                    },
                    Err(_) => JobEnd::Failed,
                };
                let mut c = lock(&completion2);
                match *c {
                    Completion::GaveUp => {
                        // Waiters left (`mark_stuck` may not have told them yet) learn the
                        // real outcome.
                        let (landed, waiters) = writer.finish_job(&hash, &key2, seq, &op2, end);
                        for w in waiters {
                            let _ = w.send(landed);
                        }
                        *c = Completion::Finished;
                    }
                    _ => *c = Completion::Returned(end),
                }
                result
            })
            .await;
        drop(clear_gate);
        self.p.gate.note("write", &outcome);
        let end = {
            let mut c = lock(&completion);
            match (&outcome, std::mem::replace(&mut *c, Completion::Finished)) {
                (_, Completion::Returned(end)) => Some(end),
                (DiskOutcome::TimedOut, _) => {
                    *c = Completion::GaveUp;
                    None
                }
                // Memory-only or breaker open: the entry stays dirty for write-back.
                (DiskOutcome::Skipped, _) => Some(JobEnd::Skipped),
                // The store panicked before it returned: complete the job as failed, or its
                // key would stay in flight and `flush` would wait forever.
                (DiskOutcome::Done { .. }, _) => {
                    self.p.counters.task_panics.inc();
                    Some(JobEnd::Failed)
                }
            }
        };
        match end {
            None => self.p.queue.mark_stuck(&hash, seq),
            Some(end) => {
                let (landed, waiters) = self.finish_job(&hash, &key, seq, &op, end);
                for w in waiters {
                    let _ = w.send(landed);
                }
            }
        }
    }

    /// Completes a job: a landed write makes its hot version clean; any other leaves it dirty
    /// (retried by write-back, reported by `flush`), and counts as lost if the hot tier no
    /// longer holds it and no newer operation superseded it. Counted here, where
    /// the outcome is known even for a call that returned after its timeout. Returns whether it
    /// landed and the write-through waiters to tell.
    fn finish_job(&self, hash: &KeyHash, key: &[u8], seq: u64, op: &Op, end: JobEnd) -> Acks {
        let version = op.version();
        if let Op::Purge { .. } = op {
            return self.finish_purge(hash, seq, version, end);
        }
        match end {
            JobEnd::Landed => {
                self.p.hot.mark_clean(key, version);
            }
            JobEnd::PerEntry => {
                self.p.hot.mark_unwritable(key, version);
            }
            JobEnd::FileTooLarge | JobEnd::Failed | JobEnd::Blocked | JobEnd::Skipped => {}
        }
        // Counters first: `complete` releases `flush`, which must see them.
        match end {
            JobEnd::Landed => self.p.counters.writes_ok.inc(),
            JobEnd::PerEntry | JobEnd::FileTooLarge => {
                self.p.counters.writes_skipped_too_large.inc()
            }
            JobEnd::Failed | JobEnd::Blocked => self.p.counters.writes_failed.inc(),
            JobEnd::Skipped => {}
        }
        match end {
            JobEnd::Landed => self.p.freshness.landed(hash, version),
            // It can never be written (too large, EFBIG): it lives in memory only, and an
            // older file of the key must not be served once it is evicted.
            // Its older file was deleted: no older value can be served.
            JobEnd::PerEntry | JobEnd::FileTooLarge => self.p.freshness.landed(hash, version),
            JobEnd::Failed | JobEnd::Blocked | JobEnd::Skipped => {}
        }
        // A write that did not land, of a version no longer in memory and not superseded, is
        // lost: marked before its slot goes, or a read could find neither and serve the
        // key's older file in between.
        // Whether memory still holds it is asked under the queue lock too: an eviction in
        // between sees the slot and leaves the decision to this one.
        let (_, waiters) = self.p.queue.complete_then(hash, seq, |superseded| {
            let held = self.p.hot.peek(key).is_some_and(|e| e.version == version);
            if end != JobEnd::Landed && !held && !superseded {
                self.p.counters.lost_writes.inc();
                self.p.freshness.mark_lost(*hash, version, false);
            }
        });
        (end == JobEnd::Landed, waiters)
    }

    /// Completes a purge (see [`Op::Purge`]): once it landed the key is no longer stale; if
    /// it failed the mark stays and the next write-back tries again.
    fn finish_purge(&self, hash: &KeyHash, seq: u64, version: u64, end: JobEnd) -> Acks {
        if end == JobEnd::Landed {
            self.p.counters.stale_keys_purged.inc();
            self.p.freshness.purged(hash, version);
        }
        let (_, waiters) = self.p.queue.complete(hash, seq);
        (end == JobEnd::Landed, waiters)
    }

    /// Queues a write for every dirty entry that has none (after recovery, or when a health
    /// check finds the disk well). Latest wins: an entry is queued only if the hot tier still
    /// holds that dirty version when the write is installed. Returns how many were queued.
    pub(crate) async fn write_back(&self) -> u64 {
        let _gate = self.write_back_gate.lock().await;
        self.write_back_gated().await
    }

    /// [`Writer::write_back`] for a caller that holds the write-back lock.
    pub(crate) async fn write_back_gated(&self) -> u64 {
        // A pending clear first: written back entries are newer than its fence.
        self.p.freshness.persist_fence(&self.p.gate).await;
        let now = self.p.clock.now_ms();
        let created_ms = self.p.freshness.created_now();
        let mut queued = 0;
        for (key, e) in self.p.hot.dirty_entries() {
            if !self.p.gate.in_use() {
                break;
            }
            if e.unwritable {
                continue;
            }
            // Expired before it reached the disk: "absent" is the right state there, so the
            // key's older file is deleted (and the entry made clean) instead.
            let expired = e.expires_ms != 0 && now >= e.expires_ms;
            let hash = key_hash(&key);
            if self.p.queue.lookup(&hash).is_some() {
                continue;
            }
            let Some(permit) = self.p.queue.reserve(key.len(), e.value.len()).await else {
                break;
            };
            let op = if e.tombstone || expired {
                Op::Delete { version: e.version }
            } else {
                Op::Put {
                    value: e.value.clone(),
                    meta: EntryMeta {
                        created_ms,
                        expires_ms: e.expires_ms,
                        cost: e.cost,
                        encoding: e.encoding,
                    },
                    version: e.version,
                    encoded: None,
                }
            };
            let still_dirty = |_: &QueueView<'_>| {
                self.p
                    .hot
                    .peek(&key)
                    .is_some_and(|h| h.version == e.version && h.dirty)
            };
            if self
                .p
                .queue
                .commit_if(permit, hash, Arc::from(&key[..]), op, still_dirty)
            {
                queued += 1;
            }
        }
        let purges = self.queue_purges().await;
        if queued > 0 {
            self.p.counters.written_back.add(queued);
            info!(queued, "dirty entries queued for write-back");
        }
        if purges > 0 {
            info!(
                purges,
                "older files of keys whose newest value was lost queued for deletion"
            );
        }
        queued + purges
    }

    /// Queues the deletion of the older file of every stale key (its newest value or removal
    /// was lost from memory before reaching the disk) that has no operation queued: once it
    /// lands, not even a restart can serve that older file.
    async fn queue_purges(&self) -> u64 {
        let mut queued = 0;
        for (hash, lost) in self.p.freshness.unpurged() {
            if !self.p.gate.in_use() {
                break;
            }
            if self.p.queue.lookup(&hash).is_some() {
                continue;
            }
            let Some(permit) = self.p.queue.reserve(0, 0).await else {
                break;
            };
            // Never in place of an operation queued meanwhile (a newer set or remove).
            let still_stale = |view: &QueueView<'_>| {
                view.pending_version(&hash).is_none()
                    && self.p.freshness.still_unpurged(&hash, lost)
            };
            let op = Op::Purge { version: lost };
            if self
                .p
                .queue
                .commit_if(permit, hash, Arc::from(&[][..]), op, still_stale)
            {
                queued += 1;
            }
        }
        queued
    }
}

/// A job run by the write-through caller that claimed it (see [`Writer::drive`]).
pub(crate) struct Driven {
    /// The job's remaining work; `None` once it finished.
    job: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The cache's runtime: the job is polled inside it, and the rest runs there if this is
    /// dropped first.
    runtime: Option<tokio::runtime::Handle>,
    /// Where a panic of the job is counted.
    counters: Arc<crate::stats::Counters>,
}

impl Future for Driven {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(job) = this.job.as_mut() else {
            return Poll::Ready(());
        };
        let _inside = this.runtime.as_ref().map(|rt| rt.enter());
        // A bug in the job must not unwind into the caller's code: it is counted, as a panic
        // of a job the writer task runs is, and the job is given up (its key stays in flight,
        // as it would in the writer task).
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(())) => {}
            Err(_) => {
                tracing::error!("a write job panicked");
                this.counters.task_panics.inc();
            }
        }
        this.job = None;
        Poll::Ready(())
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        let Some(job) = self.job.take() else {
            return;
        };
        // A job whose poll panicked cannot be polled again; the panic is the caller's.
        if std::thread::panicking() {
            return;
        }
        if let Some(rt) = &self.runtime {
            // On a runtime shutting down the task is dropped unrun, as the writer task's
            // own jobs are.
            drop(rt.spawn(job));
        }
    }
}

/// Hands queued jobs to at most `write_concurrency` concurrent writes. On shutdown it drains
/// what is queued, then exits.
pub(crate) async fn writer_task(writer: Arc<Writer>, mut shutdown: watch::Receiver<bool>) {
    // Clamped in `Writer::new`, so that no setting can make `Semaphore` panic.
    let concurrency = writer.concurrency;
    let slots = writer.slots.clone();
    loop {
        let notified = writer.p.queue.ready.notified();
        while let Some(job) = writer.p.queue.take() {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let writer2 = writer.clone();
            tokio::spawn(async move {
                writer2.run_job(job).await;
                drop(permit);
            });
        }
        if *shutdown.borrow() && !writer.p.queue.has_ready() {
            // Wait for the writes in flight, then stop.
            // Fits: at most MAX_WRITE_CONCURRENCY.
            // Held while the queue is shut: no write-through caller can claim a job of its
            // own in between, which `close` would not wait for.
            let all = slots.acquire_many(concurrency as u32).await;
            if writer.p.queue.shut_if_idle() {
                return;
            }
            drop(all);
            continue;
        }
        tokio::select! {
            _ = notified => {}
            _ = shutdown.changed() => {}
        }
    }
}
