//! The writer: hands queued jobs to the disk, completes them, and writes dirty entries back.
//!
//! A job is completed (`finish_job`: counters, the hot entry's dirty mark, the key's queue
//! slot released) after its outcome reached the breaker, so that `flush`, released by the
//! completion, and a write-through `set` see the mode and breaker state that the write left
//! behind. A disk call that timed out is completed by the blocking call itself when it really
//! returns: it can never race a newer write of the same key to the rename.

use std::sync::{Arc, Mutex};

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
    clear_gate: Arc<tokio::sync::RwLock<()>>,
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
    /// The runtime the cache was opened on: a job a write-through caller starts runs on its
    /// blocking pool ([`Writer::start_direct`]).
    runtime: Option<tokio::runtime::Handle>,
    /// The deadlines of the jobs write-through callers started ([`watchdog_task`]).
    watch: Watch,
}

impl Writer {
    /// A writer over `p`, with at most `concurrency` writes at once (clamped to
    /// `1..=MAX_WRITE_CONCURRENCY`).
    pub(crate) fn new(p: Parts, concurrency: usize) -> Self {
        let concurrency = concurrency.clamp(1, MAX_WRITE_CONCURRENCY);
        Writer {
            p,
            clear_gate: Arc::new(tokio::sync::RwLock::new(())),
            write_back_gate: tokio::sync::Mutex::new(()),
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            runtime: tokio::runtime::Handle::try_current().ok(),
            watch: Watch::default(),
        }
    }

    /// A write slot for a write-through caller that will start its own job (see
    /// [`WriteQueue::commit_claiming`](crate::queue::WriteQueue::commit_claiming) and
    /// [`Writer::start_direct`]), if one is free now and the fence on disk is known. `None`:
    /// the writer task runs the job.
    ///
    /// Why: a job the writer task runs wakes the writer task, then the task it spawns for the
    /// job, then the blocking thread, the job's task again, then the caller; a job the caller
    /// starts itself wakes only the blocking thread, which completes it and wakes the caller,
    /// as a plain `spawn_blocking` of the same disk calls would.
    pub(crate) fn claim_slot(&self) -> Option<OwnedSemaphorePermit> {
        if !self.can_start_direct() {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Whether a job can be started on the blocking pool now ([`Writer::start_direct`]): the
    /// cache's runtime is known, and so is the fence on disk (a job taken otherwise goes to a
    /// task, `run_job`, which loads the fence first).
    fn can_start_direct(&self) -> bool {
        self.runtime.is_some() && self.p.freshness.fence_known()
    }

    /// Starts a job a write-through caller (or the writer task) claimed with `slot`, without
    /// waiting for it: on the blocking pool of the cache's runtime, which completes the job
    /// itself when the disk call returns (breaker report, error note, `finish_job`, the
    /// waiters told), so the job never depends on the caller being polled, or kept; then, with
    /// the same slot, it runs the next queued job, if any, and so on until the queue has none
    /// ready (see [`RunDirect::run`]). The watchdog ([`watchdog_task`]) gives up on a job after
    /// `io_timeout`, as `run_job` does on a disk call that hangs. A job that cannot start at
    /// once (a `clear` holds the clear gate) is run by a task as the writer task runs one.
    pub(crate) fn start_direct(self: &Arc<Self>, job: Job, slot: OwnedSemaphorePermit) {
        let Some(rt) = self.runtime.clone() else {
            // `claim_slot` hands out no slot without a runtime.
            return self.finish_and_tell(&job.hash, &job.key, job.seq, &job.op, JobEnd::Skipped);
        };
        let Some(run) = self.prepare_direct(&rt, job, slot) else {
            return;
        };
        // Its events (a breaker transition, say) go where the caller's would, in a `write`
        // span under the caller's, as they did from `run_job` on a current-thread runtime.
        let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
        // On a runtime shutting down the closure is dropped unrun: `RunDirect`'s drop
        // completes the job as failed.
        drop(rt.spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, || run.run())));
    }

    /// What [`Writer::start_direct`] and a chained job ([`RunDirect::run`]) do before the disk
    /// call, on any thread and without waiting: the clear gate's read guard (a `clear` holds
    /// or wants it: the job goes to a task, which waits for it, with the slot), the breaker's
    /// admission (refused: completed as skipped at once), the entry's creation floor, the
    /// watchdog's registration. `None`: the job was handed on or completed here.
    fn prepare_direct(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        job: Job,
        slot: OwnedSemaphorePermit,
    ) -> Option<RunDirect> {
        let Ok(clear_guard) = self.clear_gate.clone().try_read_owned() else {
            let writer = self.clone();
            drop(rt.spawn(async move {
                writer.run_job(job).await;
                drop(slot);
            }));
            return None;
        };
        let Job {
            hash,
            key,
            mut op,
            seq,
        } = job;
        let Some(admission) = self.p.gate.admit_owned() else {
            drop(clear_guard);
            // Memory-only or breaker open: the entry stays dirty for write-back.
            self.finish_and_tell(&hash, &key, seq, &op, JobEnd::Skipped);
            return None;
        };
        if let Op::Put { meta, .. } = &mut op {
            // The fence is known (`claim_slot`, `next_chained`): see `run_job`.
            meta.created_ms = meta.created_ms.max(self.p.freshness.write_floor());
        }
        let direct = Arc::new(Direct {
            state: Mutex::new(DirectState::Running {
                admission,
                slot,
                clear_guard: Some(clear_guard),
            }),
        });
        let deadline = {
            let _inside = rt.enter();
            tokio::time::Instant::now() + self.p.gate.io_timeout()
        };
        self.watch.register(Watched {
            deadline,
            direct: direct.clone(),
            hash,
            seq,
        });
        Some(RunDirect {
            writer: self.clone(),
            hash,
            key,
            op,
            seq,
            direct,
            completed: false,
        })
    }

    /// The next job a blocking thread that just completed one runs with its `slot`: one the
    /// queue has ready, while a job can start there ([`Writer::can_start_direct`]). `None`:
    /// none (the slot is freed).
    fn next_chained(self: &Arc<Self>, slot: OwnedSemaphorePermit) -> Option<RunDirect> {
        if !self.can_start_direct() {
            return None;
        }
        let rt = self.runtime.as_ref()?;
        let job = self.p.queue.take()?;
        self.prepare_direct(rt, job, slot)
    }

    /// The watchdog gave up on a job started by [`Writer::start_direct`]: as `run_job` does on
    /// a timeout, the breaker and the error log hear it, its waiters learn "not written" and
    /// its slot is freed; the blocking call completes the job when it really returns.
    fn time_out(&self, w: &Watched) {
        let mut st = lock(&w.direct.state);
        let prior = std::mem::replace(&mut *st, DirectState::GaveUp);
        let DirectState::Running {
            admission,
            slot,
            clear_guard,
        } = prior
        else {
            // Finished meanwhile: nothing to give up.
            *st = prior;
            return;
        };
        drop(st);
        drop(clear_guard);
        let outcome: DiskOutcome<()> = self.p.gate.timed_out();
        crate::disk::report(admission, &outcome);
        self.p.gate.note("write", &outcome);
        self.p.queue.mark_stuck(&w.hash, w.seq);
        drop(slot);
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
                self.finish_and_tell(&hash, &key, seq, &op, JobEnd::Skipped);
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
                let result = writer.write_op(fs, store, &key2, &hash, &op2);
                let end = writer.end_of(&op2, &result);
                let mut c = lock(&completion2);
                match *c {
                    Completion::GaveUp => {
                        // Waiters left (`mark_stuck` may not have told them yet) learn the
                        // real outcome.
                        writer.finish_and_tell(&hash, &key2, seq, &op2, end);
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
            Some(end) => self.finish_and_tell(&hash, &key, seq, &op, end),
        }
    }

    /// The disk work of a job: writes or deletes the entry file of `hash`.
    fn write_op(
        &self,
        fs: &dyn crate::fs::Fs,
        store: &crate::warm::store::WarmStore,
        key: &[u8],
        hash: &KeyHash,
        op: &Op,
    ) -> std::io::Result<WriteOutcome> {
        let result = match op {
            Op::Put {
                value,
                meta,
                encoded,
                ..
            } => store.write_encoded(fs, key, hash, value, *meta, encoded.as_deref()),
            Op::Delete { .. } | Op::Purge { .. } => store
                .remove(fs, hash)
                .map(|_| WriteOutcome::Written { len: 0 }),
        };
        if let (Op::Put { meta, .. }, Ok(WriteOutcome::Written { .. })) = (op, &result) {
            // A `clear` ran while this write was in flight and did not wait for it (it
            // had timed out): the clear supersedes it, also after a restart. No newer
            // write of the key can race this delete: the key is still held.
            if self.p.freshness.cleared_since(meta.created_ms) {
                if let Err(e) = store.remove(fs, hash) {
                    tracing::debug!(error = %e, "could not remove a write a clear superseded");
                }
            }
        }
        result
    }

    /// How a job whose disk work returned `result` ended.
    fn end_of(&self, op: &Op, result: &std::io::Result<WriteOutcome>) -> JobEnd {
        match result {
            Ok(WriteOutcome::Written { .. }) => JobEnd::Landed,
            Ok(WriteOutcome::TooLarge) => {
                self.p
                    .gate
                    .set_last_error(crate::disk::TOO_LARGE_FOR_THE_BUDGET);
                JobEnd::PerEntry
            }
            // A delete that failed must be retried whatever the error: the file is
            // still there.
            Err(e) if matches!(op, Op::Put { .. }) => match IoErrorKind::classify(e) {
                IoErrorKind::FileTooLarge => JobEnd::FileTooLarge,
                k if !k.is_device_failure() => JobEnd::Blocked,
                _ => JobEnd::Failed,
            },
            Err(_) => JobEnd::Failed,
        }
    }

    /// Completes a job (`finish_job`) and tells its write-through waiters.
    fn finish_and_tell(&self, hash: &KeyHash, key: &[u8], seq: u64, op: &Op, end: JobEnd) {
        let (landed, waiters) = self.finish_job(hash, key, seq, op, end);
        for w in waiters {
            let _ = w.send(landed);
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

/// A job a write-through caller started ([`Writer::start_direct`]), shared by the blocking
/// call that runs it and the watchdog.
struct Direct {
    state: Mutex<DirectState>,
}

/// Who completes a started job (as `Completion` in `run_job`).
enum DirectState {
    /// The disk call has not returned; what is released when it does, or when the
    /// watchdog gives up on it.
    Running {
        admission: crate::resilience::mode::OwnedAdmission,
        slot: OwnedSemaphorePermit,
        /// Released when the disk call returns or the watchdog gives up on it, as `run_job`
        /// releases it when `gate.run` returns: a `clear` does not wait for a hung write
        /// past `io_timeout` (a write made before it that lands after it is deleted by the
        /// writer: `cleared_since`).
        clear_guard: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
    },
    /// The watchdog gave up waiting (timeout reported); the blocking call completes the job.
    GaveUp,
    /// Completed.
    Finished,
}

/// The blocking half of a started job: runs the disk work and completes the job. Dropped
/// without running (the runtime shut down) or by a panic, it completes the job as failed: a
/// started job is always completed, or its key would stay in flight and `flush` would wait
/// forever.
struct RunDirect {
    writer: Arc<Writer>,
    hash: KeyHash,
    key: Arc<[u8]>,
    op: Op,
    seq: u64,
    direct: Arc<Direct>,
    completed: bool,
}

impl RunDirect {
    /// Runs the job, then, with its slot, the jobs the queue has ready, one after another on
    /// this thread (a drain of write-behind entries then takes no thread wake-up per entry),
    /// until none is ready, the watchdog gave up on one (its slot is gone), or the fence is
    /// unknown. Each job has its own `write` span, watchdog deadline and admission.
    fn run(self) {
        let mut next = Some(self);
        while let Some(job) = next.take() {
            let writer = job.writer.clone();
            let span = tracing::trace_span!("write", seq = job.seq);
            let slot = span.in_scope(|| job.run_one());
            next = slot.and_then(|slot| writer.next_chained(slot));
        }
    }

    /// Runs the job and completes it; returns its slot unless the watchdog gave up on it.
    fn run_one(mut self) -> Option<OwnedSemaphorePermit> {
        let writer = self.writer.clone();
        let gate = &writer.p.gate;
        let observed = gate.observer();
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            writer.write_op(&observed, &gate.store, &self.key, &self.hash, &self.op)
        }));
        if let DirectState::Running { clear_guard, .. } = &mut *lock(&self.direct.state) {
            // Released as soon as the disk call returned (see `DirectState::Running`).
            drop(clear_guard.take());
        }
        let (mut result, end) = match done {
            Ok(result) => {
                let end = writer.end_of(&self.op, &result);
                (Some(result), end)
            }
            Err(_) => {
                writer.p.counters.task_panics.inc();
                (None, JobEnd::Failed)
            }
        };
        let mut judge = || match result.take() {
            Some(result) => gate.judge(&observed, result),
            None => gate.panicked(),
        };
        self.complete(Some(&mut judge), end)
    }

    /// Completes the job with `end`. Unless the watchdog gave up on it (it reported the
    /// timeout), `judge` makes the outcome (counting an error the store made up itself, as
    /// `DiskGate::run` does for a call it waited for) and it is reported to the breaker and
    /// the error log; a call that returned after the watchdog gave up is not judged, as
    /// `run_job` does not judge one its gate stopped waiting for (`None`: never ran).
    /// Returns the job's slot, for the next job, unless the watchdog gave up on it (it freed
    /// the slot then).
    fn complete(
        &mut self,
        judge: Option<&mut dyn FnMut() -> DiskOutcome<WriteOutcome>>,
        end: JobEnd,
    ) -> Option<OwnedSemaphorePermit> {
        self.completed = true;
        let prior = std::mem::replace(&mut *lock(&self.direct.state), DirectState::Finished);
        let writer = &self.writer;
        if writer
            .watch
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            writer.watch.wake.notify_one();
        }
        match prior {
            DirectState::Running {
                admission,
                slot,
                clear_guard,
            } => {
                drop(clear_guard);
                match judge {
                    Some(judge) => {
                        let outcome = judge();
                        crate::disk::report(admission, &outcome);
                        writer.p.gate.note("write", &outcome);
                    }
                    None => drop(admission),
                }
                writer.finish_and_tell(&self.hash, &self.key, self.seq, &self.op, end);
                Some(slot)
            }
            // Waiters left (`mark_stuck` may not have told them yet) learn the real outcome.
            DirectState::GaveUp => {
                writer.finish_and_tell(&self.hash, &self.key, self.seq, &self.op, end);
                None
            }
            DirectState::Finished => None,
        }
    }
}

impl Drop for RunDirect {
    fn drop(&mut self) {
        if !self.completed {
            drop(self.complete(None, JobEnd::Failed));
        }
    }
}

/// A started job the watchdog watches.
struct Watched {
    deadline: tokio::time::Instant,
    direct: Arc<Direct>,
    hash: KeyHash,
    seq: u64,
}

/// The started jobs' deadlines, in the order they were started (each is `io_timeout` after
/// its start, so that is also deadline order).
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    /// Wakes an idle watchdog, or a stopping one when a job finishes.
    wake: tokio::sync::Notify,
    /// The cache is closing: a finished job wakes the watchdog (see [`watchdog_task`]).
    draining: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct WatchState {
    jobs: std::collections::VecDeque<Watched>,
    /// Whether the watchdog sleeps until a deadline now (`false`: idle, or not started).
    armed: bool,
    /// The length at which `register` drops the finished jobs (see there).
    compact_at: usize,
}

/// The fewest watched jobs at which `Watch::register` drops the finished ones.
const WATCH_COMPACT_MIN: usize = 64;

impl Watch {
    /// Watches a started job. The watchdog is woken only when idle: when it is armed, it
    /// wakes at a deadline no later than this one and then sees it.
    ///
    /// The watchdog drops finished jobs only when it wakes (about once per `io_timeout`), so
    /// that a steady stream of writes with a long `io_timeout` does not pile up finished jobs
    /// until then, they are dropped here once the list doubled since the last time: at most
    /// twice the jobs still running, or [`WATCH_COMPACT_MIN`], stay watched, at O(1) amortized
    /// per job.
    fn register(&self, w: Watched) {
        let mut st = lock(&self.state);
        if st.jobs.len() >= st.compact_at.max(WATCH_COMPACT_MIN) {
            st.jobs.retain(|w| !w.direct.finished());
            st.compact_at = 2 * st.jobs.len();
        }
        st.jobs.push_back(w);
        if !st.armed {
            st.armed = true;
            drop(st);
            self.wake.notify_one();
        }
    }
}

impl Direct {
    fn finished(&self) -> bool {
        matches!(*lock(&self.state), DirectState::Finished)
    }
}

/// Gives up on started jobs ([`Writer::start_direct`]) still running at their deadline. It
/// wakes at the deadline of the oldest job still running, so a steady stream of writes wakes
/// it about once per `io_timeout`, not once per write. Stops once the cache shut down and no
/// job is watched.
pub(crate) async fn watchdog_task(writer: Arc<Writer>, mut shutdown: watch::Receiver<bool>) {
    let _orphans = GiveUpOnDrop(writer.clone());
    let watch = &writer.watch;
    loop {
        // A dropped sender (the cache dropped without `close`) stops it as `close` does.
        let stopping = *shutdown.borrow() || shutdown.has_changed().is_err();
        if stopping {
            // From now on a job that finishes wakes this task: `close` waits for it.
            watch
                .draining
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let notified = watch.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = tokio::time::Instant::now();
        let mut expired = Vec::new();
        let next = {
            let mut st = lock(&watch.state);
            while let Some(front) = st.jobs.front() {
                if front.direct.finished() {
                    st.jobs.pop_front();
                } else if front.deadline <= now {
                    expired.extend(st.jobs.pop_front());
                } else {
                    break;
                }
            }
            let next = st.jobs.front().map(|w| w.deadline);
            st.armed = next.is_some();
            next
        };
        for w in &expired {
            writer.time_out(w);
        }
        if !expired.is_empty() {
            continue;
        }
        match next {
            Some(deadline) if stopping => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = notified => {}
                }
            }
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = shutdown.changed() => {}
                }
            }
            // The writer holds every slot while it shuts the queue, and no job starts after:
            // once it is shut and nothing is watched, no job can come.
            None if stopping => {
                tokio::select! {
                    _ = writer.p.queue.wait_shut() => return,
                    _ = notified => {}
                }
            }
            None => {
                tokio::select! {
                    _ = notified => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// Gives up on every watched job when the watchdog is dropped unfinished (its runtime shut
/// down): nothing would bound their disk calls any more, and their callers, awaiting on
/// another runtime perhaps, must not wait for a hung disk forever.
struct GiveUpOnDrop(Arc<Writer>);

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        let jobs = std::mem::take(&mut lock(&self.0.watch.state).jobs);
        for w in &jobs {
            self.0.time_out(w);
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
        // A slot first, then a job: while blocking threads run one queued job after another
        // with the slots they hold (`RunDirect::run`), this task takes none out of the queue to
        // wait with.
        while writer.p.queue.has_ready() {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Some(job) = writer.p.queue.take() else {
                break;
            };
            if writer.can_start_direct() {
                writer.start_direct(job, permit);
            } else {
                // No runtime handle, or the fence is still to be loaded (`run_job` loads it).
                let writer2 = writer.clone();
                tokio::spawn(async move {
                    writer2.run_job(job).await;
                    drop(permit);
                });
            }
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

#[cfg(test)]
#[path = "writer_watch_tests.rs"]
mod watch_tests;
