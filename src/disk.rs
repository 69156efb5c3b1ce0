//! The disk gate: every warm-tier operation runs through [`DiskGate::run`] (or a sibling), which
//! - runs the synchronous store code on tokio's blocking pool,
//! - bounds it by `io_timeout` (a hung disk cannot hang `get` or `set`; the hung call counts
//!   as a timeout failure and finishes, or not, in the background),
//! - except the first step of a read ([`DiskGate::run_inline_first`]), which runs on the calling
//!   thread because it is made only of calls that fail instead of waiting for the device
//!   (a page-cache read, see `Fs::read_file_nowait`); whatever it cannot finish continues on
//!   the blocking pool as above,
//! - hands it an [`ObservedFs`] that sees the result of every single fs call, so that an error
//!   the store swallows (a failed quarantine rename, a failed eviction) is still counted, by
//!   kind, and still reported as a failure of the operation,
//! - and reports the operation's outcome to the resilience layer.
//!
//! NotFound is not an error of the device: a missing file is a miss.

use std::io;
use std::ops::{ControlFlow, Deref};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::breaker::BreakerState;
use crate::fs::{DirEntryInfo, FileRead, Fs, IoErrorKind};
use crate::log;
use crate::resilience::mode::{Admission, OwnedAdmission, Resilience};
use crate::stats::Counters;
use crate::stats::Mode;
use crate::sync::lock;
use crate::warm::store::WarmStore;

/// Why a value is not on disk when its file would exceed the whole warm budget (what `flush`
/// reports for it).
pub(crate) const TOO_LARGE_FOR_THE_BUDGET: &str =
    "values larger than the warm budget live in memory only";

const NONE: u8 = u8::MAX;

/// Wraps an [`Fs`] for one operation and records the first error of each class it returns.
#[derive(Debug)]
pub(crate) struct ObservedFs {
    inner: Arc<dyn Fs>,
    counters: Arc<Counters>,
    /// First device-failure kind seen (index into `IoErrorKind::ALL`), or `NONE`.
    device_failure: AtomicU8,
    /// Whether any error (device or per-entry) was seen.
    any_error: AtomicU8,
    /// ENOSPC refusals seen and not yet recorded. The store tries a refused write once more
    /// when [`Fs::settle_deferred_closes`] says closes left for later freed space: the retry
    /// (the next `write_new` or `available_space`) withdraws the refusal, so the write is
    /// judged by its retry (a write refused twice is one error, one written on its retry
    /// none). A refusal whose retry is never made stays. They are recorded, counted and
    /// reported as a device failure, when the operation's outcome is read
    /// ([`ObservedFs::device_failure`], [`ObservedFs::saw_any`]) or the observer is dropped.
    held_no_space: AtomicU32,
    /// A settle answered `true` while a refusal was held: the next `write_new` or
    /// `available_space` is its retry.
    retry_due: AtomicBool,
}

impl ObservedFs {
    pub(crate) fn new(inner: Arc<dyn Fs>, counters: Arc<Counters>) -> Self {
        ObservedFs {
            inner,
            counters,
            device_failure: AtomicU8::new(NONE),
            any_error: AtomicU8::new(0),
            held_no_space: AtomicU32::new(0),
            retry_due: AtomicBool::new(false),
        }
    }

    fn see<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if e.kind() != io::ErrorKind::NotFound {
                let kind = IoErrorKind::classify(e);
                if kind == IoErrorKind::NoSpace {
                    self.held_no_space.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.record(kind, 1);
                }
            }
        }
        r
    }

    /// Counts `n` errors of `kind`, and notes the first device failure.
    fn record(&self, kind: IoErrorKind, n: u32) {
        for _ in 0..n {
            self.counters.disk_error(kind);
        }
        self.any_error.store(1, Ordering::Relaxed);
        if kind.is_device_failure() {
            let _ = self.device_failure.compare_exchange(
                NONE,
                kind.index() as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Called by the calls the store retries after a settle (`write_new`, `available_space`):
    /// if a settle said to retry a held refusal, this call is that retry, and the refusal is
    /// withdrawn (this call's own outcome counts instead).
    fn retrying(&self) {
        if self.retry_due.swap(false, Ordering::Relaxed) {
            let _ = self
                .held_no_space
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Records the ENOSPC refusals no retry withdrew (see `held_no_space`).
    fn record_held(&self) {
        let n = self.held_no_space.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.record(IoErrorKind::NoSpace, n);
        }
    }

    /// The first device failure seen, if any.
    pub(crate) fn device_failure(&self) -> Option<IoErrorKind> {
        self.record_held();
        let i = self.device_failure.load(Ordering::Relaxed);
        IoErrorKind::ALL.get(usize::from(i)).copied()
    }

    fn saw_any(&self) -> bool {
        self.record_held();
        self.any_error.load(Ordering::Relaxed) != 0
    }
}

impl Drop for ObservedFs {
    /// An operation that outlived its gate call (timed out): its refusals still count.
    fn drop(&mut self) {
        self.record_held();
    }
}

impl Fs for ObservedFs {
    fn read_file(&self, path: &Path, max_len: u64) -> io::Result<FileRead> {
        self.see(self.inner.read_file(path, max_len))
    }
    fn read_prefix(&self, path: &Path, n: usize) -> io::Result<FileRead> {
        self.see(self.inner.read_prefix(path, n))
    }
    fn write_new(&self, path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
        self.retrying();
        self.see(self.inner.write_new(path, data, sync))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.see(self.inner.rename(from, to))
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.inner.rename_noreplace(from, to) {
            // The answer the caller asked for, not a fault of the device.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            r => self.see(r),
        }
    }
    fn rename_exchange(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.inner.rename_exchange(from, to) {
            // A file system without the call: the caller renames instead.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Err(e),
            r => self.see(r),
        }
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.see(self.inner.remove_file(path))
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        // Not empty at the end: another process created a file in it after it was listed (its
        // entry's temp file, or the entry): an answer, not a device failure (r29, F4).
        match self.inner.remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Err(e),
            r => self.see(r),
        }
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        // Not empty (another process's entry) is an answer, not a device failure.
        // An `Fs` without `rmdir` (the trait's default) is no device failure either.
        match self.inner.remove_dir(path) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::Unsupported
                ) =>
            {
                Err(e)
            }
            r => self.see(r),
        }
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.see(self.inner.create_dir_all(path))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.see(self.inner.sync_dir(path))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.see(self.inner.read_dir(path))
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.retrying();
        self.see(self.inner.available_space(path))
    }
    fn total_space(&self, path: &Path) -> io::Result<Option<u64>> {
        self.see(self.inner.total_space(path))
    }
    fn block_size(&self, path: &Path) -> io::Result<Option<u64>> {
        self.see(self.inner.block_size(path))
    }
    fn nowait_reads(&self, root: &Path) -> bool {
        self.inner.nowait_reads(root)
    }
    fn read_file_nowait(&self, path: &Path, max_len: u64) -> io::Result<Option<FileRead>> {
        self.see(self.inner.read_file_nowait(path, max_len))
    }
    /// When the closes freed something, the caller tries its refused write again: the next
    /// `write_new` or `available_space`, if one is made, withdraws the held refusal (see
    /// `held_no_space`).
    fn settle_deferred_closes(&self, timeout: std::time::Duration) -> bool {
        let settled = self.inner.settle_deferred_closes(timeout);
        if settled && self.held_no_space.load(Ordering::Relaxed) > 0 {
            self.retry_due.store(true, Ordering::Relaxed);
        }
        settled
    }
}

/// How an operation through the gate ended.
#[derive(Debug)]
pub(crate) enum DiskOutcome<T> {
    /// It ran; `T` is its result. `device_failure` is set when any fs call inside it failed
    /// in a way that counts against the device, even if the operation itself recovered.
    Done {
        value: io::Result<T>,
        device_failure: Option<IoErrorKind>,
    },
    /// It did not finish within `io_timeout`.
    TimedOut,
    /// The disk was not called (memory-only mode or breaker open).
    Skipped,
}

impl<T> DiskOutcome<T> {
    /// The value, if the operation ran and succeeded.
    pub(crate) fn ok(self) -> Option<T> {
        match self {
            DiskOutcome::Done { value: Ok(v), .. } => Some(v),
            _ => None,
        }
    }
}

/// The store panicked: a bug, but the cache must stay up. Counted as a failure of the device
/// path rather than propagated.
fn panicked<T>(counters: &Counters) -> DiskOutcome<T> {
    tracing::error!("warm-tier operation panicked");
    counters.disk_error(IoErrorKind::Other);
    DiskOutcome::Done {
        value: Err(io::Error::other("warm-tier operation panicked")),
        device_failure: Some(IoErrorKind::Other),
    }
}

/// Tells the breaker how an admitted operation ended: a timeout or any device failure inside
/// it is a failure.
pub(crate) fn report<T, R: Deref<Target = Resilience>>(
    admission: Admission<R>,
    outcome: &DiskOutcome<T>,
) {
    admission.report(match outcome {
        DiskOutcome::Done { device_failure, .. } => *device_failure,
        DiskOutcome::TimedOut => Some(IoErrorKind::Timeout),
        DiskOutcome::Skipped => None,
    });
}

/// The gate every warm-tier operation passes (see the module docs). It owns the warm store,
/// the file system, the resilience state (breaker and mode) and the text of the last disk
/// error, which `flush`, `close` and write-through `set` report.
#[derive(Debug)]
pub(crate) struct DiskGate {
    fs: Arc<dyn Fs>,
    pub(crate) store: Arc<WarmStore>,
    counters: Arc<Counters>,
    io_timeout: Duration,
    pub(crate) res: Arc<Resilience>,
    last_error: Mutex<Option<String>>,
}

impl DiskGate {
    /// A gate over `store` on `fs`, each call bounded by `io_timeout`.
    pub(crate) fn new(
        fs: Arc<dyn Fs>,
        store: Arc<WarmStore>,
        counters: Arc<Counters>,
        io_timeout: Duration,
        res: Arc<Resilience>,
    ) -> Self {
        DiskGate {
            fs,
            store,
            counters,
            io_timeout,
            res,
            last_error: Mutex::new(None),
        }
    }

    /// The file system (for `testing::fs_in_use`).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn fs(&self) -> &dyn Fs {
        &*self.fs
    }

    /// Whether the disk tier is in use (the breaker may still refuse a call).
    pub(crate) fn in_use(&self) -> bool {
        self.res.mode() == Mode::Tiered
    }

    /// Moves the entries of a directory written by the previous layout (`v1/ab/cd`) into
    /// `v2/ab`, one `v1/ab` per disk call, before the cache serves (see `warm::migrate`). A
    /// failing disk stops it: what is left is migrated at the next open, and until then is
    /// never served (and removed with its key).
    pub(crate) async fn migrate_legacy_layout(&self) {
        let found = self.run(|fs, store| store.legacy_dirs(fs)).await;
        self.note("layout migration", &found);
        let Some(Some(dirs)) = found.ok() else {
            return;
        };
        let mut done = crate::warm::migrate::Migrated::default();
        for dir in dirs {
            let step = self
                .run(move |fs, store| store.migrate_legacy_dir(fs, &dir))
                .await;
            self.note("layout migration", &step);
            match step.ok() {
                Some(m) => done += m,
                None => {
                    tracing::warn!(
                        target: log::CACHE,
                        moved = done.moved,
                        "moving the previous layout's entries (v1/) into v2/ stopped on a disk \
                         error; the rest moves at the next open and is not served until then"
                    );
                    return;
                }
            }
        }
        if done.retry > 0 {
            tracing::warn!(
                target: log::CACHE,
                moved = done.moved,
                not_moved = done.retry,
                "some entries of the previous layout (v1/) could not be moved into v2/ now; \
                 they move at the next open and are not served until then"
            );
            return;
        }
        let finished = self.run(|fs, store| store.finish_legacy(fs)).await;
        self.note("layout migration", &finished);
        tracing::info!(
            target: log::CACHE,
            moved = done.moved,
            superseded = done.superseded,
            left = done.left,
            v1_removed = finished.ok().unwrap_or(false),
            "entries of the previous layout (v1/ab/cd) moved to v2/ab"
        );
    }

    /// The current mode.
    pub(crate) fn mode(&self) -> Mode {
        self.res.mode()
    }

    /// The breaker's state.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.res.breaker_state()
    }

    /// Records a failed operation's error text (`what`: the operation) for reports.
    pub(crate) fn note<T>(&self, what: &str, outcome: &DiskOutcome<T>) {
        let text = match outcome {
            DiskOutcome::Done { value: Err(e), .. } => format!("{what}: {e}"),
            DiskOutcome::Done {
                device_failure: Some(kind),
                ..
            } => format!("{what}: {kind} error"),
            DiskOutcome::TimedOut => {
                format!("{what}: timed out after {:?}", self.io_timeout)
            }
            _ => return,
        };
        tracing::debug!(target: log::CACHE, error = %text, "disk operation failed");
        *lock(&self.last_error) = Some(text);
    }

    /// Records why a value is not on disk when no disk call failed (a value over the warm
    /// budget), so that `flush` reports that instead of an older, unrelated error.
    pub(crate) fn set_last_error(&self, text: &str) {
        *lock(&self.last_error) = Some(text.to_owned());
    }

    /// The text of the last failed operation, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Runs `f` if the mode and the breaker admit a disk call (else `Skipped`), bounded by
    /// `io_timeout`, and reports its outcome to the breaker: a timeout or any device failure
    /// inside it is a failure.
    pub(crate) async fn run<T, F>(&self, f: F) -> DiskOutcome<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Fs, &WarmStore) -> io::Result<T> + Send + 'static,
    {
        self.admitted(f, Some(self.io_timeout)).await
    }

    /// Like [`DiskGate::run`] for operations made of many fs calls (the startup scan, the expiry
    /// sweep): admitted and observed, but with no overall timeout, since `io_timeout` bounds
    /// one disk call, not a walk of a million files. They stop early when the cache closes.
    pub(crate) async fn run_long<T, F>(&self, f: F) -> DiskOutcome<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Fs, &WarmStore) -> io::Result<T> + Send + 'static,
    {
        self.admitted(f, None).await
    }

    /// Like [`DiskGate::run`], but first tries `inline` on the calling thread: a step that can
    /// never block (reads from the page cache, see [`Fs::read_file_nowait`]). When it
    /// finishes the operation (`Break`), its result is reported to the breaker as `run` would
    /// report it, and no blocking-pool hop is paid. When it cannot (`Continue(state)`),
    /// `rest(state)` runs on the blocking pool under the same breaker admission, bounded by
    /// `io_timeout`.
    pub(crate) async fn run_inline_first<T, S, I, F>(&self, inline: I, rest: F) -> DiskOutcome<T>
    where
        T: Send + 'static,
        S: Send + 'static,
        I: FnOnce(&dyn Fs, &WarmStore) -> ControlFlow<io::Result<T>, S>,
        F: FnOnce(&dyn Fs, &WarmStore, S) -> io::Result<T> + Send + 'static,
    {
        let Some(admission) = self.res.admit() else {
            return DiskOutcome::Skipped;
        };
        let observed = ObservedFs::new(self.fs.clone(), self.counters.clone());
        let store = &self.store;
        let stepped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inline(&observed, store)));
        let outcome = match stepped {
            Err(_) => panicked(&self.counters),
            Ok(ControlFlow::Break(value)) => DiskOutcome::Done {
                value,
                device_failure: observed.device_failure(),
            },
            Ok(ControlFlow::Continue(state)) => {
                self.execute(
                    move |fs, store| rest(fs, store, state),
                    Some(self.io_timeout),
                )
                .await
            }
        };
        report(admission, &outcome);
        outcome
    }

    /// Runs optional background work (a compaction): only while tiered with the breaker
    /// closed (checked now, when the caller holds whatever it waited for), on the file system
    /// itself, bounded by `io_timeout`, and without reporting anything to the breaker or the
    /// error window, nor counting a rejection or an error: work no caller asked for must not
    /// open the breaker over a read-only or inode-less volume that still serves reads, nor
    /// take a half-open breaker's trial call. `None`: not run. A call past `io_timeout` is a
    /// `TimedOut` error (the blocking call then finishes on its own), a panic an error too.
    pub(crate) async fn run_optional<T, F>(&self, f: F) -> Option<io::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Fs, &WarmStore) -> io::Result<T> + Send + 'static,
    {
        if self.res.mode() != Mode::Tiered || self.res.breaker_state() != BreakerState::Closed {
            return None;
        }
        let (fs, store) = (self.fs.clone(), self.store.clone());
        let task = tokio::task::spawn_blocking(move || f(&*fs, &store));
        Some(match tokio::time::timeout(self.io_timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(_panicked)) => {
                self.counters.task_panics.inc();
                Err(io::Error::other("the optional disk call panicked"))
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the optional disk call outlived io_timeout",
            )),
        })
    }

    /// Runs `f` bounded by `io_timeout` without asking the breaker (the recovery probe, which
    /// runs while the breaker is open).
    pub(crate) async fn run_unchecked<T, F>(&self, f: F) -> DiskOutcome<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Fs, &WarmStore) -> io::Result<T> + Send + 'static,
    {
        self.execute(f, Some(self.io_timeout)).await
    }

    async fn admitted<T, F>(&self, f: F, timeout: Option<Duration>) -> DiskOutcome<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Fs, &WarmStore) -> io::Result<T> + Send + 'static,
    {
        let Some(admission) = self.res.admit() else {
            return DiskOutcome::Skipped;
        };
        let outcome = self.execute(f, timeout).await;
        report(admission, &outcome);
        outcome
    }

    /// Runs `f` on the blocking pool, observing every fs call, bounded by `timeout` if given.
    async fn execute<T, F>(&self, f: F, timeout: Option<Duration>) -> DiskOutcome<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Fs, &WarmStore) -> io::Result<T> + Send + 'static,
    {
        let observed = Arc::new(self.observer());
        let store = self.store.clone();
        let obs = observed.clone();
        let task = tokio::task::spawn_blocking(move || f(&*obs, &store));
        let joined = match timeout {
            Some(t) => tokio::time::timeout(t, task).await,
            None => Ok(task.await),
        };
        match joined {
            Ok(Ok(value)) => self.judge(&observed, value),
            Ok(Err(_join)) => self.panicked(),
            Err(_) => self.timed_out(),
        }
    }

    /// An observer of one operation's fs calls: run the operation on it, then
    /// [`DiskGate::judge`] its result (for a caller that runs the operation on the blocking
    /// pool itself, `Writer::start_direct`).
    pub(crate) fn observer(&self) -> ObservedFs {
        ObservedFs::new(self.fs.clone(), self.counters.clone())
    }

    /// The outcome of an operation that ran on `observed` and returned `value`: which device
    /// failure it met, if any (counting an error the operation made up itself).
    pub(crate) fn judge<T>(&self, observed: &ObservedFs, value: io::Result<T>) -> DiskOutcome<T> {
        let mut device_failure = observed.device_failure();
        if let Err(e) = &value {
            if crate::warm::store::is_layout_blocked(e) && device_failure.is_none() {
                // Seen by the observer as a path error (per entry), but it blocks
                // every entry: the device has failed.
                device_failure = Some(IoErrorKind::Path);
            }
            // An error the closure made up itself (a free-space check, a probe
            // mismatch) was not seen by the observer: count it here.
            if !observed.saw_any() {
                let kind = IoErrorKind::classify(e);
                self.counters.disk_error(kind);
                if kind.is_device_failure() && device_failure.is_none() {
                    device_failure = Some(kind);
                }
            }
        }
        DiskOutcome::Done {
            value,
            device_failure,
        }
    }

    /// The outcome of an operation that panicked (counted).
    pub(crate) fn panicked<T>(&self) -> DiskOutcome<T> {
        panicked(&self.counters)
    }

    /// The outcome of an operation not waited for past `io_timeout` (counted).
    pub(crate) fn timed_out<T>(&self) -> DiskOutcome<T> {
        self.counters.disk_error(IoErrorKind::Timeout);
        DiskOutcome::TimedOut
    }

    /// The bound on one disk call.
    pub(crate) fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    /// Asks the mode and the breaker for a disk call whose outcome is reported with
    /// [`report`]: `None` when refused.
    pub(crate) fn admit_owned(&self) -> Option<OwnedAdmission> {
        self.res.admit_owned()
    }
}

#[cfg(test)]
#[path = "disk_r24_tests.rs"]
mod r24_tests;
