//! The warm tier's synchronous core: read, write, remove, clear, scan and sweeps over an
//! [`Fs`]. It runs on tokio's blocking pool; the async layer decides *whether* to call it
//! (mode, breaker) and bounds *how long* a call may take.
//!
//! Every function takes the `Fs` to use as an argument rather than storing it, so that the
//! caller can hand in a per-operation observer that sees every error (see `disk.rs`): a
//! secondary failure swallowed here (a quarantine rename that fails) is still counted against
//! the device.

use std::collections::HashSet;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing::{debug, info, trace, warn};

use crate::defaults::{DEFAULT_MIN_FREE_BYTES, DEFAULT_MIN_FREE_PERCENT};
use crate::fs::{FileKind, FileRead, Fs, IoErrorKind};
use crate::stats::Counters;

use super::encoded::EncodedEntry;
use super::format::{self, Corruption, Decoded, EntryMeta, Invalid, Limits, HEADER_LEN};
use super::index::{IndexEntry, RemovalMark, WarmIndex};
use super::layout::{self, KeyHash, Layout, TempOwner};
use super::quarantine::{self, QuarantineLimits, Why};
use super::space::{Reserved, SpaceLedger};
use super::take::{is_not_found, is_stranded, take_if_unchanged, Judged};
use super::walk::{EntryWalk, Level, WalkItem};

/// Temp files older than this are removed at open whoever wrote them: no write takes an hour.
pub const TEMP_MAX_AGE_MS: u64 = 3600 * 1000;
/// Headers of entries found by the scan whose expiry is read per sweep.
pub const SWEEP_UNKNOWN_PER_PASS: usize = 4096;

/// Cache instances alive in this process, so that the temp sweep of one instance never
/// deletes the temp file another live instance (same pid) is writing.
fn live_instances() -> &'static Mutex<HashSet<u64>> {
    static LIVE: OnceLock<Mutex<HashSet<u64>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

fn lock_live() -> MutexGuard<'static, HashSet<u64>> {
    crate::sync::lock(live_instances())
}

/// Durable-directory marks (see [`WarmStore::fan_out_durable`]), one table per cache root for
/// every store of this process on it: one store's removal of a fan-out directory (`clear`,
/// `observe_dirs`) clears the mark for all of them (review r30, F5).
type DurableMarks = [std::sync::atomic::AtomicBool; 256];

fn durable_marks(root: &Path) -> Arc<DurableMarks> {
    static MARKS: OnceLock<
        Mutex<std::collections::HashMap<PathBuf, std::sync::Weak<DurableMarks>>>,
    > = OnceLock::new();
    let mut all = crate::sync::lock(MARKS.get_or_init(Default::default));
    all.retain(|_, m| m.strong_count() > 0);
    if let Some(m) = all.get(root).and_then(std::sync::Weak::upgrade) {
        return m;
    }
    let m: Arc<DurableMarks> = Arc::new(std::array::from_fn(|_| {
        std::sync::atomic::AtomicBool::new(false)
    }));
    all.insert(root.to_owned(), Arc::downgrade(&m));
    m
}

/// Whether the writer of a temp file is gone: a dead process, or an instance of this process
/// that closed (its name says which, see [`layout::parse_temp_name`]).
fn writer_gone(owner: layout::TempOwner) -> bool {
    if owner.pid == std::process::id() {
        !lock_live().contains(&owner.instance)
    } else {
        !pid_alive(owner.pid)
    }
}

/// Whether process `pid` may be alive (and writing its temp files): Linux asks `/proc`.
#[cfg(all(target_os = "linux", not(answercache_force_portable)))]
fn pid_alive(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true; // cannot tell: rely on the age rule
    }
    proc_root.join(pid.to_string()).exists()
}

/// Whether process `pid` may be alive (and writing its temp files): other systems have no
/// `/proc` to ask (or one that differs), and are asked by [`pid_alive_by_signal`].
#[cfg(not(all(target_os = "linux", not(answercache_force_portable))))]
fn pid_alive(pid: u32) -> bool {
    pid_alive_by_signal(pid)
}

/// `kill(pid, 0)`: no such process (`ESRCH`) is dead; a process we may not signal (`EPERM`)
/// is alive; a pid that cannot be one is "cannot tell" (alive: the age rule decides).
#[cfg(any(test, not(all(target_os = "linux", not(answercache_force_portable)))))]
fn pid_alive_by_signal(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Settings of the warm store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Read limits.
    pub limits: Limits,
    /// gzip level 0-9 of the entries whose stored file would not fit in one allocation unit
    /// (smaller ones are stored: see `WarmStore::encode`).
    pub compression_level: u32,
    /// fsync files and directories.
    pub sync: bool,
    /// Byte budget of entry files.
    pub capacity_bytes: u64,
    /// Free space to leave on the filesystem.
    /// `None`: the default floor, scaled with the volume ([`WarmStore::free_floor`]).
    pub min_free_bytes: Option<u64>,
    /// Quarantine bounds.
    pub quarantine: QuarantineLimits,
    /// Whether reads may try the page cache on the calling thread (`Builder::page_cache_reads`).
    pub page_cache_reads: bool,
    /// The longest a write near the free-space floor waits for concurrent writes to end (see
    /// [`SpaceLedger`]): `SPACE_WAIT_MAX` (1 s), or half the disk calls' `io_timeout` when that
    /// is shorter, so that a write refused after waiting is reported as refused, not as a
    /// disk call that timed out.
    pub space_wait: std::time::Duration,
    /// Whether an entry the configured level would compress is written stored first and
    /// compressed by the compactor later (`Builder::compress_in_background`; see `compact`).
    pub compact_later: bool,
}

/// The largest entry file [`WarmStore::read_inline`] verifies and inflates on the caller's
/// thread (in steps of [`INLINE_STEP_BYTES`]) instead of on the blocking pool: its checksum
/// (blake3 over at most this much, ~20-30 µs on a slow core) is computed in one go. Larger
/// files are handed to the blocking pool, already read.
pub const STEPPED_FILE_MAX: usize = 64 * 1024;

/// The largest value [`WarmStore::read_inline`] inflates on the caller's thread: 16 steps of
/// [`INLINE_STEP_BYTES`]. A file of at most [`STEPPED_FILE_MAX`] bytes may declare far more
/// (up to `max_entry_bytes`, 16 MiB by default: one byte repeated compresses ~1000:1), and the
/// value's buffer is allocated and zero-filled in one go before the first step (the crate
/// forbids `unsafe`, so there is no uninitialised buffer to inflate into): such a file is
/// handed to the blocking pool, already read, as a larger file is
/// (tests/adversary7/stepped/FINDINGS.md, P2). Chosen from the header's declared length
/// before the file is verified; the pool verifies it all the same.
pub const STEPPED_VALUE_MAX: u64 = 1 << 20;

/// Bytes of value one inflate step produces on an async worker before the task yields: every
/// value of at most 64 KiB is inflated in one go.
///
/// Why not smaller: every step after the first costs 12-15 µs on the 2-core bench machine
/// (zlib-rs copies each unfinished call's output into its 32 KiB window, and the task yields
/// and is polled again; BENCHMARKS.md, "Session 16"). With 32 KiB steps (sessions 12-15) a
/// 64 KiB warm hit was 1.17-1.19x its floor, with 64 KiB steps 1.07-1.09x (paired runs in the
/// same minutes).
///
/// The cost, the longest one poll of an inline read holds an async worker: the blake3 of at
/// most [`STEPPED_FILE_MAX`] bytes of file (~20-30 µs there, as documented at that constant)
/// and one step, ~115 µs for 64 KiB of chat JSON there at gzip level 3 (levels 3-9 inflate at about the same speed, level 1 up to
/// 25% slower, stored values far faster: `benches/COMPRESSION.md`). That is the upper end of
/// tokio's 10-100 µs guidance, on this slow core; the blocking-pool hop it avoids costs 20-40
/// µs per hit and two thread hand-offs. Values over [`STEPPED_VALUE_MAX`] and files over
/// [`STEPPED_FILE_MAX`] go to the blocking pool.
pub const INLINE_STEP_BYTES: usize = 64 * 1024;

/// What [`WarmStore::read_inline`] found.
#[derive(Debug)]
pub(crate) enum InlineRead {
    /// The read is over.
    Done(ReadOutcome),
    /// A valid, unexpired entry, inflated into the `Arc` the cache hands out.
    Hit {
        /// Times and cost.
        meta: EntryMeta,
        /// The value.
        value: Arc<[u8]>,
    },
    /// A verified, unexpired entry whose value the caller inflates in steps
    /// ([`SteppedRead::step`]), then hands to [`WarmStore::stepped_hit`].
    Inflate(Box<SteppedRead>),
}

/// A stepped read in progress ([`InlineRead::Inflate`]): the verified entry being inflated,
/// and what the index knew of the key when the read began, so that [`WarmStore::stepped_hit`]
/// records this file only if no write, removal or eviction changed the key's index entry
/// during the yields between steps (a newer file's entry must not be overwritten with this
/// older file's length and tag).
#[derive(Debug)]
pub(crate) struct SteppedRead {
    inflating: format::Inflating,
    /// What the index knew of the key before the file was read.
    indexed: Noted,
}

impl SteppedRead {
    /// Inflates at most `budget` more bytes of the value (see [`format::Inflating::step`]).
    pub(crate) fn step(&mut self, budget: usize) -> Result<bool, Invalid> {
        self.inflating.step(budget)
    }

    /// The entry's times and cost.
    #[cfg(test)]
    pub(crate) fn meta(&self) -> &EntryMeta {
        self.inflating.meta()
    }

    /// The entry file.
    #[cfg(test)]
    pub(crate) fn file(&self) -> &[u8] {
        self.inflating.file()
    }
}

/// The bytes of an entry file [`WarmStore::read_inline`] read and hands to the blocking pool
/// ([`WarmStore::read_prefetched`]), with what the index knew of the key before they were read:
/// the inflate of a large value there takes long enough for a write of the key to rename and
/// index a newer file meanwhile, whose entry the older file's hit must not overwrite.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Prefetched {
    data: Vec<u8>,
    /// What the index knew of the key before the file was read.
    indexed: Noted,
}

/// What the index knew of a key before a read of its file ([`WarmStore::note`]): the key's
/// index tag (`None`: not in the index) and the removals begun and ended then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Noted {
    tag: Option<u32>,
    removals: RemovalMark,
}

impl Prefetched {
    /// The entry file's bytes.
    #[cfg(test)]
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }
}

/// What a read found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A valid, unexpired entry.
    Hit(Decoded),
    /// No file.
    Miss,
    /// The entry had expired; its file was removed.
    Expired,
    /// A newer format version; left in place.
    NewerVersion,
    /// A corrupt or hostile file; counted by reason and quarantined (if the disk allowed).
    Corrupt,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The entry file is in place; `len` bytes.
    Written {
        /// File length.
        len: u64,
    },
    /// The entry is larger than the whole warm budget; not written, stays memory-only.
    TooLarge,
}

/// The warm tier's core.
#[derive(Debug)]
pub struct WarmStore {
    layout: Layout,
    config: StoreConfig,
    owner: TempOwner,
    seq: AtomicU64,
    /// Whether the marker directory was created (and its root entry made durable).
    #[cfg(feature = "redis")]
    markers_dir_ready: std::sync::atomic::AtomicBool,
    index: Mutex<WarmIndex>,
    counters: Arc<Counters>,
    /// Set when the cache closes: long walks (scan, sweep) stop at the next file.
    closing: std::sync::atomic::AtomicBool,
    /// Temp and probe files whose removal failed; retried by every probe.
    leftovers: Mutex<Vec<PathBuf>>,
    /// Newer entries a judged removal took aside and could not put back (aside, entry path);
    /// put back by every probe, never over a yet newer entry.
    stranded: Mutex<Vec<(PathBuf, PathBuf)>>,
    /// Whether reads first try the page cache on the caller's thread (set at open, see
    /// [`WarmStore::detect_nowait_reads`]).
    nowait_reads: std::sync::atomic::AtomicBool,
    /// See [`WarmStore::key_lock`].
    key_locks: [Mutex<()>; KEY_LOCKS],
    /// One descriptor of `<root>/lock` per stripe of `key_locks` (see [`WarmStore::key_lock`]),
    /// opened by `prepare_dirs`; empty where the file cannot be opened (then only this
    /// process's operations are ordered).
    dir_lock: OnceLock<Vec<std::fs::File>>,
    /// Held by a fence write for its whole read-compare-write (see [`WarmStore::write_fence`]),
    /// inside the disk call: a write given up after `io_timeout` keeps it until it really
    /// returns, so no later write starts before an older one has landed.
    fence_write: Mutex<()>,
    /// The largest fence this process wrote (0 before any; see [`WarmStore::write_fence`]),
    /// also when the write was given up and landed later. Shared with `Freshness`, which
    /// moves the next fence past it.
    fence_written: Arc<AtomicU64>,
    /// The default free-space floor for this volume (`u64::MAX` until first needed; see
    /// [`WarmStore::free_floor`]).
    default_floor: AtomicU64,
    /// Bytes of writes whose free-space check passed and that may not be on the volume yet:
    /// each check counts them, so concurrent writes never take the volume below the floor
    /// together (see [`SpaceLedger`]).
    space: SpaceLedger,
    /// Whether `v1/` (the previous layout) may still hold entries: set when a migration
    /// starts, cleared when it finished every `v1/ab`. While set, removing a key also removes
    /// its `v1/` file (see `migrate`).
    legacy_pending: std::sync::atomic::AtomicBool,
    /// Whether a write without fsync replaces a key's older file by exchanging it with the
    /// new one (see [`WarmStore::rename_into_place`]): cleared the first time the file system
    /// answers that it has no exchange.
    exchange_renames: std::sync::atomic::AtomicBool,
    /// Set when the older file an exchange moved to a temp name could not be deleted (it is
    /// remembered in `leftovers`, which the budget does not count): until every leftover is
    /// deleted (`retry_leftovers`), writes rename over older files, which frees them at once
    /// (r40, F3: 40 undeletable older files at temp names held 5x the warm budget).
    exchange_paused: std::sync::atomic::AtomicBool,
    /// Whether `prepare_dirs` has succeeded (the directories and the directory lock are
    /// there); a disk that failed at open gets them at the first write or probe that works.
    prepared: std::sync::atomic::AtomicBool,
    /// Writes of this process under way per fan-out directory (`hash[0]`), from before their
    /// temp file until the index knows their entry: `observe_dirs` leaves such a directory
    /// alone (see [`InFlight`]).
    writing_into: [AtomicU32; 256],
    /// With `Durability::Fsync`: the fan-out directories (`hash[0]`) whose name in `v2/` this
    /// process made durable (an fsync of `v2/` that returned after it saw the directory). A
    /// write into one not marked fsyncs `v2/` before it is acknowledged: the directory may be
    /// one another write has just made and not yet made durable (r29, F3), or one whose
    /// making failed at that fsync (F2). Cleared when this process makes or removes the
    /// directory. At most 256 such fsyncs per process and directory lifetime. Shared by every
    /// store of this process on the same root ([`durable_marks`]); another *process* that
    /// removes a directory and makes it again is not seen (RELIABILITY.md, "Session 20").
    fan_out_durable: Arc<DurableMarks>,
    /// The index's allocation unit, for `encode` without the index lock: the shared tier's
    /// drain encodes through it too, and must not wait on the disk side's lock.
    unit: AtomicU64,
    /// Entries written stored that the compactor is to compress (see `compact`).
    compactions: compact::Backlog,
}

/// A write's claim on its fan-out directory (see `WarmStore::writing_into`), released on drop.
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The index tag of a file of a newer format found at an entry path: counted in the budget,
/// never deleted by this release (see `WarmStore::pop_victims`). `file_tag` never gives it.
const NOT_OURS: u32 = u32::MAX;

/// Every how many writes the fan-out directories' sizes are looked at again (see
/// `WarmStore::observe_dirs`).
const OBSERVE_DIRS_EVERY: u64 = 256;

/// How many times a write creates its fan-out directory again when it finds it gone (see
/// `WarmStore::write_temp_once` and `WarmStore::write_encoded`).
pub(crate) const RENAME_ATTEMPTS: u32 = 4;

/// Stripes of the per-key lock (and descriptors of the directory lock).
const KEY_LOCKS: usize = 16;

/// Reads of a fence that read as damaged before it is taken as damaged (see
/// [`WarmStore::read_fence_again_if_damaged`]).
const FENCE_REREADS: usize = 2;

/// How long a write that found the disk full waits for the files left to be closed later to
/// be closed before it tries once more (see [`Fs::settle_deferred_closes`]): the closer closes
/// within about a millisecond; longer means it is stuck in a close, and the write fails as it
/// would have.
const SETTLE_CLOSES_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// How a key's lock is held across processes (see [`WarmStore::key_lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Renaming an entry into place, deleting one: many at a time, in every process.
    Shared,
    /// Deleting or quarantining what a read, a sweep or an eviction judged: alone.
    Exclusive,
}

/// A key's lock: the in-process stripe, and the directory lock in the same mode. Dropped,
/// the directory lock is released first.
struct KeyGuard<'a> {
    file: Option<&'a std::fs::File>,
    _stripe: MutexGuard<'a, ()>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.file {
            let _ = rustix::fs::flock(f, rustix::fs::FlockOperation::Unlock);
        }
    }
}

impl Drop for WarmStore {
    fn drop(&mut self) {
        lock_live().remove(&self.owner.instance);
    }
}

/// The largest entry file stored uncompressed when it fits one allocation unit: 4 KiB, the
/// unit of ext4, XFS and APFS that `benches/COMPRESSION.md` measured. A file system that
/// reports a larger unit (NFS says 1 MiB and allocates far less) gets compressed files above
/// it: there compressing saves real bytes, page cache and, for the shared tier, network.
pub const STORED_MAX_BYTES: u64 = 4096;

impl WarmStore {
    /// A store for `root`. Registers a live instance id for the temp sweep.
    pub(crate) fn new(root: &Path, config: StoreConfig, counters: Arc<Counters>) -> Self {
        static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);
        let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        lock_live().insert(instance);
        WarmStore {
            layout: Layout::new(root),
            config,
            owner: TempOwner {
                pid: std::process::id(),
                instance,
            },
            seq: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            markers_dir_ready: std::sync::atomic::AtomicBool::new(false),
            index: Mutex::new(WarmIndex::default()),
            counters,
            closing: std::sync::atomic::AtomicBool::new(false),
            leftovers: Mutex::new(Vec::new()),
            stranded: Mutex::new(Vec::new()),
            nowait_reads: std::sync::atomic::AtomicBool::new(false),
            key_locks: std::array::from_fn(|_| Mutex::new(())),
            dir_lock: OnceLock::new(),
            fence_write: Mutex::new(()),
            fence_written: Arc::new(AtomicU64::new(0)),
            default_floor: AtomicU64::new(u64::MAX),
            space: SpaceLedger::default(),
            // Unknown until a listing of the root says there is no `v1/` (or a migration
            // finished): until then removals also delete a `v1/` file (one `unlink` that
            // finds nothing, where there is none).
            legacy_pending: std::sync::atomic::AtomicBool::new(true),
            exchange_renames: std::sync::atomic::AtomicBool::new(true),
            exchange_paused: std::sync::atomic::AtomicBool::new(false),
            prepared: std::sync::atomic::AtomicBool::new(false),
            writing_into: std::array::from_fn(|_| AtomicU32::new(0)),
            fan_out_durable: durable_marks(root),
            unit: AtomicU64::new(super::index::DEFAULT_ALLOCATION_UNIT),
            compactions: compact::Backlog::default(),
        }
    }

    fn index(&self) -> MutexGuard<'_, WarmIndex> {
        crate::sync::lock(&self.index)
    }

    /// Stops long walks (scan, sweep) at their next step: the cache is closing.
    pub fn begin_close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// (entries, bytes, scan complete) as this process knows them.
    pub fn usage(&self) -> (u64, u64, bool) {
        let ix = self.index();
        (ix.len() as u64, ix.bytes(), ix.settled())
    }

    /// What the warm budget counts: the known entries' space on disk (see
    /// [`WarmIndex::disk_bytes`]).
    pub fn disk_usage(&self) -> u64 {
        self.index().disk_bytes()
    }

    /// Creates root, `v2/`, `tmp/` and `quarantine/` (mode 0700), and learns the file
    /// system's allocation unit.
    pub fn prepare_dirs(&self, fs: &dyn Fs) -> io::Result<()> {
        for d in [
            self.layout.entries_dir(),
            self.layout.tmp_dir(),
            self.layout.quarantine_dir(),
        ] {
            fs.create_dir_all(d)?;
        }
        if let Some(unit) = fs.block_size(self.layout.root())? {
            let mut ix = self.index();
            ix.set_unit(unit);
            self.unit.store(ix.unit(), Ordering::Relaxed);
        }
        self.open_dir_lock();
        if self.config.sync {
            // The new directories' entries in the root must survive a power cut, or every
            // entry written under them is lost with them.
            fs.sync_dir(self.layout.root())?;
        }
        self.prepared.store(true, Ordering::Release);
        Ok(())
    }

    /// Reads the entry for `key`.
    pub fn read(
        &self,
        fs: &dyn Fs,
        key: &[u8],
        hash: &KeyHash,
        now_ms: u64,
    ) -> io::Result<ReadOutcome> {
        let path = self.layout.entry_path(hash);
        // Noted before the file is read (see `read_inline`).
        let indexed = self.note(hash);
        let data = match fs.read_file(&path, self.config.limits.max_file_bytes()) {
            Ok(FileRead::Data(d)) => d,
            Ok(FileRead::NotRegular(kind)) => {
                let detail = format!("a {} sits at the entry path", kind.describe());
                let why = Why {
                    reason: Corruption::NotARegularFile,
                    detail: &detail,
                    size: 0,
                    now_ms,
                };
                return Ok(self.quarantine(fs, &path, &Judged::NotRegular(kind), hash, why));
            }
            Ok(FileRead::TooLarge(len)) => {
                let detail = format!("{len} bytes, over the largest valid entry");
                let why = Why {
                    reason: Corruption::Oversize,
                    detail: &detail,
                    size: len,
                    now_ms,
                };
                return Ok(self.quarantine(fs, &path, &Judged::TooLarge, hash, why));
            }
            Err(e) if is_not_found(&e) => {
                self.forget_unless_changed(hash, indexed);
                return Ok(ReadOutcome::Miss);
            }
            Err(e) => return Err(e),
        };
        match format::decode(&data, key, &self.config.limits) {
            Ok(decoded) if decoded.meta.is_expired(now_ms) => {
                match self.remove_judged(fs, hash, &Judged::Bytes(&data)) {
                    Ok(true) => self.counters.warm_expirations.inc(),
                    Ok(false) => {}
                    Err(e) => debug!(error = %e, "could not remove an expired entry"),
                }
                Ok(ReadOutcome::Expired)
            }
            Ok(decoded) => {
                self.touch_unless_changed(hash, &data, &decoded.meta, indexed);
                Ok(ReadOutcome::Hit(decoded))
            }
            Err(Invalid::NewerVersion(v)) => {
                self.counters.newer_version.inc();
                debug!(version = v, "entry of a newer format version left in place");
                Ok(ReadOutcome::NewerVersion)
            }
            Err(Invalid::Corrupt(reason, detail)) => {
                let len = data.len() as u64;
                let judged = Judged::Bytes(&data);
                let why = Why {
                    reason,
                    detail: &detail,
                    size: len,
                    now_ms,
                };
                Ok(self.quarantine(fs, &path, &judged, hash, why))
            }
        }
    }

    /// Records the hit of the file `data` in the index (LRU order, as [`WarmStore::touch`]),
    /// if the key's index entry is still the one noted before the file was read (`indexed`:
    /// its tag, `None` when absent) or already this file's. Otherwise a write (or a removal, a
    /// clear, an eviction) changed it since the read, and the index is left alone: a writer
    /// renames its file into place before it indexes it, so that entry is newer than this
    /// file (tests/adversary7/stepped/FINDINGS.md, P1).
    ///
    /// A key absent before and absent now is unchanged only if no removal ran meanwhile: an
    /// index the startup scan has not completed does not hold every file, so a `remove` or
    /// `clear` of one it never held leaves its tag `None`, and [`WarmStore::touch`] would
    /// re-add the deleted file for good (tests/adversary7/r21/FINDINGS.md, V2). Then the hit
    /// is not recorded: the scan finds the file if it is still there.
    fn touch_unless_changed(&self, hash: &KeyHash, data: &[u8], meta: &EntryMeta, indexed: Noted) {
        let mut ix = self.index();
        let now = ix.tag_of(hash);
        let unchanged =
            now == indexed.tag && (now.is_some() || !ix.removed_since(indexed.removals));
        if unchanged || now == Some(super::index::file_tag(data)) {
            self.touch(&mut ix, hash, data, meta);
        }
    }

    /// What the index knows of the key now, noted before its file is read (see
    /// [`WarmStore::touch_unless_changed`]).
    fn note(&self, hash: &KeyHash) -> Noted {
        let ix = self.index();
        Noted {
            tag: ix.tag_of(hash),
            removals: ix.removal_mark(),
        }
    }

    /// Drops the key's index entry after a read found no file, if the entry is still the one
    /// noted before the read (see [`WarmStore::touch_unless_changed`]): a file written and
    /// indexed since is there.
    fn forget_unless_changed(&self, hash: &KeyHash, indexed: Noted) {
        let mut ix = self.index();
        if ix.tag_of(hash) == indexed.tag {
            ix.remove(hash);
        }
    }

    /// Records a hit in the index (LRU order), under the index lock the caller holds.
    fn touch(&self, ix: &mut WarmIndex, hash: &KeyHash, data: &[u8], meta: &EntryMeta) {
        let (len, tag) = (data.len() as u64, super::index::file_tag(data));
        // Known: this process has read (and judged) that file, which may be another process's
        // rewrite: it is the one eviction may delete, with its own length. Unknown to a
        // complete index means an eviction or removal raced this read (or another process
        // wrote it): re-adding it would leave a phantom in the budget.
        if ix.contains(hash) || !ix.scanned() {
            ix.put(
                *hash,
                IndexEntry {
                    len,
                    expires_ms: meta.expires_ms,
                    tag,
                },
            );
        }
    }

    /// Decides, once at open (or at the first passing probe), whether reads may first try
    /// [`Fs::read_file_nowait`]: only if the builder allows it and the `Fs` says the root's
    /// filesystem is one where that cannot block.
    pub fn detect_nowait_reads(&self, fs: &dyn Fs) {
        let yes = self.config.page_cache_reads && fs.nowait_reads(self.layout.root());
        self.nowait_reads.store(yes, Ordering::Relaxed);
        debug!(nowait_reads = yes, "page-cache reads on the calling thread");
    }

    /// The part of a read that runs on the caller's thread, before any blocking-pool hop: reads
    /// the entry file only if that cannot block ([`Fs::read_file_nowait`]), and finishes the
    /// common cases. An entry file of at most [`STEPPED_FILE_MAX`] bytes whose value is of at
    /// most [`STEPPED_VALUE_MAX`] bytes is verified first (header, length, checksum, flags,
    /// key, expiry: everything before inflating, as `format::decode`), then its value is
    /// inflated straight into the `Arc` the cache hands out, [`INLINE_STEP_BYTES`] at most on
    /// this call. A value of one step is a hit here
    /// (`InlineRead::Hit`); a longer one is handed back to be inflated in more steps by the
    /// caller, which yields between them (`InlineRead::Inflate`), so neither a blocking-pool
    /// hop nor a long stretch on the worker is paid. A larger file or value continues on the
    /// blocking pool, already read (`Continue(Some)`, with the key's index tag noted before
    /// the read: see [`Prefetched`]); an expired or invalid one, or one not in the
    /// page cache, too (`Continue(None)`): that path reads it again and removes or
    /// quarantines what is at the path then.
    pub(crate) fn read_inline(
        &self,
        fs: &dyn Fs,
        key: &[u8],
        hash: &KeyHash,
        now_ms: u64,
    ) -> ControlFlow<io::Result<InlineRead>, Option<Prefetched>> {
        if !self.nowait_reads.load(Ordering::Relaxed) {
            return ControlFlow::Continue(None);
        }
        let path = self.layout.entry_path(hash);
        // Noted before the file is read: a writer renames its file into place before it
        // indexes it, so an entry that changes after this is a newer file's (or a removal).
        let indexed = self.note(hash);
        let data = match fs.read_file_nowait(&path, self.config.limits.max_file_bytes()) {
            Ok(Some(FileRead::Data(d))) => d,
            Ok(Some(FileRead::NotRegular(_) | FileRead::TooLarge(_))) => {
                return ControlFlow::Continue(None);
            }
            Ok(None) => {
                self.counters.inline_read_fallbacks.inc();
                return ControlFlow::Continue(None);
            }
            Err(e) if is_not_found(&e) => {
                self.forget_unless_changed(hash, indexed);
                return ControlFlow::Break(Ok(InlineRead::Done(ReadOutcome::Miss)));
            }
            Err(e) => return ControlFlow::Break(Err(e)),
        };
        // A file whose checksum alone would hold the worker too long, or one that declares a
        // value too large to allocate and inflate here (its header, not yet verified, says;
        // an invalid header is the stepped path's to judge): verified and inflated on the
        // blocking pool ([`WarmStore::read_prefetched`]), already read. Not `block_in_place`:
        // tokio gives no way to ask whether it may be called, and it panics inside a
        // `LocalSet` or an entered handle (tests/adversary7).
        if data.len() > STEPPED_FILE_MAX
            || format::parse_header(&data, &self.config.limits)
                .is_ok_and(|h| h.uncompressed_len > STEPPED_VALUE_MAX)
        {
            return ControlFlow::Continue(Some(Prefetched { data, indexed }));
        }
        let mut read = match format::Inflating::start(data, key, &self.config.limits) {
            Ok(inflating) if !inflating.meta().is_expired(now_ms) => {
                SteppedRead { inflating, indexed }
            }
            // Expired, corrupt, newer: the blocking path reads the file again and acts on
            // what is at the path *then* (a fresh file renamed into place meanwhile must not
            // be deleted or quarantined for the old one's faults).
            _ => return ControlFlow::Continue(None),
        };
        match read.step(INLINE_STEP_BYTES) {
            Ok(true) => {
                let (meta, value) = self.stepped_hit(hash, read);
                ControlFlow::Break(Ok(InlineRead::Hit { meta, value }))
            }
            Ok(false) => ControlFlow::Break(Ok(InlineRead::Inflate(Box::new(read)))),
            Err(_) => ControlFlow::Continue(None),
        }
    }

    /// The hit of an entry [`WarmStore::read_inline`] verified, once it is inflated
    /// completely (its last step returned `Ok(true)`): recorded in the index as a read hit is,
    /// but only if the key's index entry is still the one the read began with, or already
    /// this file's ([`WarmStore::touch_unless_changed`]): a write during the steps owns it.
    pub(crate) fn stepped_hit(&self, hash: &KeyHash, read: SteppedRead) -> (EntryMeta, Arc<[u8]>) {
        let SteppedRead { inflating, indexed } = read;
        let meta = *inflating.meta();
        let (file, value) = inflating.finish();
        self.counters.inline_reads.inc();
        self.touch_unless_changed(hash, &file, &meta, indexed);
        (meta, value)
    }

    /// Finishes a read whose bytes [`WarmStore::read_inline`] already has (an entry too
    /// large to verify on an async worker): a valid, unexpired entry is a hit (recorded in
    /// the index unless a write changed the key's entry since the bytes were read, see
    /// [`WarmStore::touch_unless_changed`]); anything else is read again by
    /// [`WarmStore::read`], which removes or quarantines what is at the path now.
    pub(crate) fn read_prefetched(
        &self,
        fs: &dyn Fs,
        key: &[u8],
        hash: &KeyHash,
        read: Prefetched,
        now_ms: u64,
    ) -> io::Result<ReadOutcome> {
        match format::decode(&read.data, key, &self.config.limits) {
            Ok(decoded) if !decoded.meta.is_expired(now_ms) => {
                self.touch_unless_changed(hash, &read.data, &decoded.meta, read.indexed);
                Ok(ReadOutcome::Hit(decoded))
            }
            _ => self.read(fs, key, hash, now_ms),
        }
    }

    /// The bytes of the key's entry file as [`WarmStore::read_inline`] would hand them over,
    /// noting the key's index entry now.
    #[cfg(test)]
    pub(crate) fn prefetched(&self, hash: &KeyHash, data: Vec<u8>) -> Prefetched {
        Prefetched {
            indexed: self.note(hash),
            data,
        }
    }

    /// Counts a corruption and moves the file into the quarantine, if it is still the file
    /// judged corrupt (see [`WarmStore::take_judged`]). A failure to move it is logged (and
    /// seen by the observing `Fs`), never returned: the read is a miss either way.
    fn quarantine(
        &self,
        fs: &dyn Fs,
        path: &Path,
        judged: &Judged<'_>,
        hash: &KeyHash,
        why: Why<'_>,
    ) -> ReadOutcome {
        let Why {
            reason,
            detail,
            size: len,
            ..
        } = why;
        self.counters.corruption(reason);
        let _key = self.key_lock(hash, Hold::Exclusive);
        let aside = match self.take_judged(fs, hash, judged) {
            Ok(Some(aside)) => aside,
            // A newer file replaced it since it was read: that one is left alone.
            Ok(None) => return ReadOutcome::Corrupt,
            Err(e) => {
                warn!(reason = reason.name(), error = %e, "corrupted entry could not be quarantined");
                return ReadOutcome::Corrupt;
            }
        };
        self.index().remove(hash);
        match quarantine::quarantine(
            fs,
            self.layout.quarantine_dir(),
            &aside,
            path,
            why,
            self.config.quarantine,
        ) {
            Ok(Some(name)) => {
                self.counters.quarantined_files.inc();
                self.counters.quarantined_bytes.add(len);
                warn!(reason = reason.name(), %detail, quarantined_as = %name, "corrupted entry quarantined");
            }
            Ok(None) => {}
            Err(e) => {
                warn!(reason = reason.name(), error = %e, "corrupted entry could not be quarantined");
                // Out of the entry path, it is never served; do not leave it in tmp/.
                self.remove_or_remember(fs, aside);
            }
        }
        ReadOutcome::Corrupt
    }

    /// The in-process lock of a key's entry path: held while a file is renamed into place
    /// and recorded in the index, while an entry is deleted, and while a judged file is taken
    /// out of the way, so that this process never interleaves those steps for one key.
    ///
    /// Across processes (and cache instances) sharing the directory, the same operations are
    /// ordered by `flock` on `<root>/lock`: renames and deletes hold it shared, a judged
    /// removal holds it exclusively for its whole take-aside-compare-delete-or-put-back
    /// window, so that no other process renames a newer entry in, or deletes one, while a
    /// file it may have to put back is out of the path. One descriptor per stripe: `flock`
    /// belongs to an open file description, and the stripe's mutex makes its holder unique.
    fn key_lock(&self, hash: &KeyHash, hold: Hold) -> KeyGuard<'_> {
        let i = usize::from(hash[0]) % KEY_LOCKS;
        let stripe = crate::sync::lock(&self.key_locks[i]);
        let file = self.dir_lock.get().and_then(|fds| fds.get(i));
        let file = file.filter(|f| {
            let op = match hold {
                Hold::Shared => rustix::fs::FlockOperation::LockShared,
                Hold::Exclusive => rustix::fs::FlockOperation::LockExclusive,
            };
            // A file system without locks: only this process's operations are ordered.
            rustix::fs::flock(f, op).is_ok()
        });
        KeyGuard {
            file,
            _stripe: stripe,
        }
    }

    /// Opens the directory lock's descriptors (once; see [`WarmStore::key_lock`]).
    fn open_dir_lock(&self) {
        if self.dir_lock.get().is_some() {
            return;
        }
        let path = self.layout.root().join(layout::LOCK_FILE);
        // Read-only descriptors: `flock` needs no more, and a file open for writing would
        // keep the filesystem from being remounted read-only.
        let open = || {
            use rustix::fs::{Mode, OFlags};
            rustix::fs::open(
                &path,
                OFlags::RDONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map(std::fs::File::from)
        };
        let fds: Vec<std::fs::File> = (0..KEY_LOCKS).map_while(|_| open().ok()).collect();
        // Left unset when the file cannot be opened (a failing or read-only disk at open):
        // the next probe tries again (see `WarmStore::probe`).
        if fds.len() == KEY_LOCKS {
            let _ = self.dir_lock.set(fds);
        }
    }

    /// Takes the file at the key's entry path out of the way (into `tmp/`) if it is still the
    /// file a read or a sweep judged (expired, corrupt): `Some(path_aside)` for the caller to
    /// delete or quarantine. Between the judgment and now, a newer entry may have been renamed
    /// into place, by this process or another: the path cannot be unlinked blindly, since
    /// that would delete the newer entry (an acknowledged, fsynced write). So the file is
    /// renamed aside first (atomic: whatever is at the path then is what is taken) and
    /// compared with the judgment; if it differs, it is put back with a rename that never
    /// replaces (a yet newer entry renamed meanwhile wins, and the taken one, older than that,
    /// is deleted). Readers see a miss for that instant, never a wrong entry.
    /// The caller holds the key's lock.
    fn take_judged(
        &self,
        fs: &dyn Fs,
        hash: &KeyHash,
        judged: &Judged<'_>,
    ) -> io::Result<Option<PathBuf>> {
        let path = self.layout.entry_path(hash);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let aside = self.layout.temp_path(hash, self.owner, n);
        let max_file_bytes = self.config.limits.max_file_bytes();
        match take_if_unchanged(fs, &path, &aside, judged, max_file_bytes) {
            Ok(taken) => Ok(taken.then_some(aside)),
            Err(e) if is_stranded(&e) => {
                crate::sync::lock(&self.stranded).push((aside, path));
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the key's entry file if it is still the one judged (see
    /// [`WarmStore::take_judged`]); returns whether it did.
    fn remove_judged(&self, fs: &dyn Fs, hash: &KeyHash, judged: &Judged<'_>) -> io::Result<bool> {
        let _key = self.key_lock(hash, Hold::Exclusive);
        let Some(aside) = self.take_judged(fs, hash, judged)? else {
            return Ok(false);
        };
        self.index().remove(hash);
        match fs.remove_file(&aside) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(true),
            Err(e) => {
                // Out of the entry path it is never served; the temp sweep retries it.
                crate::sync::lock(&self.leftovers).push(aside);
                Err(e)
            }
        }
    }

    /// Whether [`encode`](Self::encode) encodes an entry of this key and value length at the
    /// configured level, as the shared tier does, so that one file serves both
    /// (`warm::encoded`): not when its stored file would fit one allocation unit (the disk
    /// then stores it uncompressed).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn encodes_at_level(&self, key_len: usize, value_len: usize) -> bool {
        self.config.compression_level == 0
            || (format::HEADER_LEN as u64)
                .saturating_add(key_len as u64)
                .saturating_add(value_len as u64)
                .saturating_add(format::GZIP_STORED_OVERHEAD)
                > self.unit.load(Ordering::Relaxed).min(STORED_MAX_BYTES)
    }

    /// The entry file of a value: stored (gzip level 0) when the stored file fits in one
    /// allocation unit of the file system (the warm index's, 512 B ..= 1 MiB, 4 KiB when the
    /// file system does not say), where compressing it would save no disk space and the warm
    /// budget charges the same (and a read inflates it ~3x faster: see
    /// `benches/COMPRESSION.md`), and at most [`STORED_MAX_BYTES`]; compressed at the
    /// configured level otherwise. Level 0 configured stores everything. Readers need not
    /// know: both are one gzip member.
    pub(crate) fn encode(&self, key: &[u8], value: &[u8], meta: EntryMeta) -> io::Result<Vec<u8>> {
        let level = self.config.compression_level;
        if level != 0 {
            let unit = self.unit.load(Ordering::Relaxed).min(STORED_MAX_BYTES);
            // A stored member has at least one block: this is the shortest it can be, so a
            // value that fails it is compressed without being stored first.
            let stored_at_least = (format::HEADER_LEN as u64)
                .saturating_add(key.len() as u64)
                .saturating_add(value.len() as u64)
                .saturating_add(format::GZIP_STORED_OVERHEAD);
            if stored_at_least <= unit {
                // Past the one-block estimate (a longer key's stored header): the real length.
                let stored = format::encode(key, value, meta, 0)?;
                if stored.len() as u64 <= unit {
                    return Ok(stored);
                }
            }
            self.counters.entries_compressed.inc();
        }
        format::encode(key, value, meta, level)
    }

    /// [`write_encoded`](Self::write_encoded) of a write no other tier stores.
    #[cfg(test)]
    pub fn write(
        &self,
        fs: &dyn Fs,
        key: &[u8],
        hash: &KeyHash,
        value: &[u8],
        meta: EntryMeta,
    ) -> io::Result<WriteOutcome> {
        self.write_encoded(fs, key, hash, value, meta, None)
    }

    /// Writes an entry atomically: unique temp file, write, fsync (per durability), rename,
    /// directory fsync. Then evicts least-recently-used entries beyond the byte budget.
    /// `encoded`: the write's cell when another tier stores it too; the entry file encoded
    /// there for exactly `meta` is written as it is, else the one encoded here is left there
    /// (the value is compressed once, see `warm::encoded`).
    pub(crate) fn write_encoded(
        &self,
        fs: &dyn Fs,
        key: &[u8],
        hash: &KeyHash,
        value: &[u8],
        meta: EntryMeta,
        encoded: Option<&EncodedEntry>,
    ) -> io::Result<WriteOutcome> {
        // In flight until it returns (the compactor waits it out).
        let _writing = self.compactions.note_write();
        // Written stored now and compressed later (see `compact`) when the configured level
        // would compress it and no other tier shares its encoding.
        let mut compact_later = encoded.is_none() && self.config.compact_later;
        let shared: Arc<[u8]>;
        let mut file: std::borrow::Cow<'_, [u8]> = match encoded {
            None if compact_later => {
                let stored = format::encode(key, value, meta, 0)?;
                let len = stored.len() as u64;
                let unit = self.unit.load(Ordering::Relaxed).min(STORED_MAX_BYTES);
                if self.config.compression_level == 0 || len <= unit {
                    // One the level would not compress anyway: a stored entry like any other.
                    compact_later = false;
                    std::borrow::Cow::Owned(stored)
                } else if len > self.config.capacity_bytes / compact::PRESSING_SHARE {
                    // Large for the budget: stored, it would evict entries its compressed
                    // file fits beside (r27, F8). Compressed now.
                    compact_later = false;
                    std::borrow::Cow::Owned(self.encode(key, value, meta)?)
                } else {
                    std::borrow::Cow::Owned(stored)
                }
            }
            None => std::borrow::Cow::Owned(self.encode(key, value, meta)?),
            Some(cell) => {
                shared = cell.file_for(meta, || self.encode(key, value, meta))?;
                std::borrow::Cow::Borrowed(&shared[..])
            }
        };
        let needs = {
            let ix = self.index();
            ix.charge(file.len() as u64).saturating_add(ix.unit())
        };
        if needs > self.config.capacity_bytes {
            // This value stays memory-only; an older file of the key must not outlive it.
            // If it cannot be deleted, the write failed (and is retried), so that a value that
            // lives in memory only never leaves an older file behind.
            self.remove_older(fs, hash)?;
            return Ok(WriteOutcome::TooLarge);
        }
        // Too little space: once more after deferred closes freed what they held (see
        // `write_temp`). One deadline for all checks' waits.
        let deadline = std::time::Instant::now().checked_add(self.config.space_wait);
        let reserve = |len: u64, headroom: u64, deadline: Option<std::time::Instant>| match self
            .check_space_above(fs, len, deadline, headroom)
        {
            Err(e)
                if IoErrorKind::classify(&e) == IoErrorKind::NoSpace
                    && fs.settle_deferred_closes(SETTLE_CLOSES_MAX) =>
            {
                self.check_space_above(fs, len, deadline, headroom)
            }
            r => r,
        };
        let _reserved = if compact_later {
            // Written stored only with room to compress it later too
            // (`COMPACT_MIN_FREE_BYTES` above the floor, as the compaction asks), else it
            // would stay stored; checked without waiting for writes in flight.
            match reserve(file.len() as u64, compact::COMPACT_MIN_FREE_BYTES, None) {
                Err(e) if super::space::is_below_floor(&e) => {
                    // Compressed now if that is smaller (r27, F1: also with
                    // `min_free_bytes(0)`), and checked against the floor alone; the stored
                    // files waiting give their space back without waiting for idle moments.
                    self.compactions.note_tight();
                    let compressed = self.encode(key, value, meta)?;
                    if compressed.len() < file.len() {
                        file = std::borrow::Cow::Owned(compressed);
                    }
                    compact_later = false;
                    self.check_space(fs, file.len() as u64, deadline)?
                }
                r => r?,
            }
        } else {
            reserve(file.len() as u64, 0, deadline)?
        };
        let file: &[u8] = &file;
        let len = file.len() as u64;
        // Until the index knows the entry, `observe_dirs` must not take its directory away.
        let _in_flight = InFlight::new(&self.writing_into[usize::from(hash[0])]);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        // Beside its place (see `Layout::entry_temp_path`): the rename stays in one directory.
        let tmp = self.layout.entry_temp_path(hash, self.owner, n);
        let dest = self.layout.entry_path(hash);
        let mut attempt = 0;
        let written = loop {
            match self.write_temp(fs, &tmp, file) {
                // A path error creating the temp file: the fan-out directory is blocked (a
                // file or symlink planted there: this entry's path), or `v2/` itself is (no
                // entry can be written: the device's failure).
                Err(e) if IoErrorKind::classify(&e) == IoErrorKind::Path => {
                    break Err(self.entry_or_layout_blocked(fs, e))
                }
                Err(e) => break Err(e),
                Ok(()) => {}
            }
            let key_lock = self.key_lock(hash, Hold::Shared);
            match self.rename_into_place(fs, &tmp, &dest, hash[0], hash) {
                // The fan-out directory went, with the temp file in it, between the write and
                // the rename (another process's `clear`; this one's waits for writes): written
                // again, a bounded number of times.
                Err(e) if is_not_found(&e) && attempt < RENAME_ATTEMPTS => {
                    drop(key_lock);
                    attempt += 1;
                    // Gone with its directory; if it is somehow still there, the new create
                    // (`O_EXCL`) must not find it.
                    match fs.remove_file(&tmp) {
                        Err(r) if !is_not_found(&r) => break Err(e),
                        _ => {}
                    }
                }
                Err(e) if IoErrorKind::classify(&e) == IoErrorKind::Path => {
                    drop(key_lock);
                    break Err(self.entry_or_layout_blocked(fs, e));
                }
                Err(e) => break Err(e),
                Ok(()) => break Ok(key_lock),
            }
        };
        let key_lock = match written {
            Ok(guard) => guard,
            Err(e) => {
                // Never leave a partial temp file behind (ENOSPC included); other entries
                // are never deleted in reaction. One that cannot be removed now is retried
                // later.
                self.remove_or_remember(fs, tmp);
                if !IoErrorKind::classify(&e).is_device_failure() {
                    // EFBIG or a blocked path: this value is not on disk, so an older file
                    // of the key must not outlive it (and be served after a restart). If it
                    // cannot be deleted, that error is the outcome (a device failure: the
                    // write is retried).
                    self.remove_older(fs, hash)?;
                }
                return Err(e);
            }
        };
        if !self.prepared.load(Ordering::Acquire) {
            // The disk failed while the cache opened and works now.
            if let Err(e) = self.prepare_dirs(fs) {
                debug!(error = %e, "the cache directory is still not set up");
            }
        }
        // A `v1/` file of this key (a migration not finished) is older than this entry: it
        // must not come back when this one is evicted or expires (see `migrate`).
        if let Err(e) = self.remove_legacy(fs, hash) {
            debug!(error = %e, "could not delete an entry of the previous layout");
        }
        // Recording the entry and choosing victims is one step under the index lock, so the
        // byte total is never seen over budget.
        let victims = {
            let mut ix = self.index();
            ix.put(
                *hash,
                IndexEntry {
                    len,
                    expires_ms: meta.expires_ms,
                    tag: super::index::file_tag(file),
                },
            );
            self.pop_victims(&mut ix, hash)
        };
        let queued = compact_later
            && self.compactions.push(compact::Waiting {
                hash: *hash,
                tag: super::index::file_tag(file),
                value_len: value.len() as u64,
                stored_len: len,
                tries: 0,
            });
        if !queued {
            // Counted with the file it ends with (see `compact_next`) when queued.
            self.counters.bytes_in.add(value.len() as u64);
            self.counters.bytes_out.add(len);
        }
        // Victims are other keys: their locks are taken one at a time, never while holding
        // this one (two keys may share a lock).
        drop(key_lock);
        self.delete_victims(fs, victims);
        if n % OBSERVE_DIRS_EVERY == OBSERVE_DIRS_EVERY - 1 {
            self.observe_dirs(fs);
        }
        Ok(WriteOutcome::Written { len })
    }

    /// Looks at what the fan-out directories take on disk (one listing of `v2/`): a directory
    /// keeps the size of the most names it ever held (ext4 never shrinks one), and the budget
    /// counts that. A directory that holds no entry this process knows is removed (`rmdir`:
    /// one holding another process's entry stays), which gives its blocks back.
    pub fn observe_dirs(&self, fs: &dyn Fs) {
        let Ok(dirs) = fs.read_dir(self.layout.entries_dir()) else {
            return;
        };
        for d in dirs {
            let Some(i) = layout::fanout_byte(&d.name).filter(|_| d.kind == FileKind::Dir) else {
                continue;
            };
            // Checked before the index: a write claims its directory before the index
            // knows its entry, and releases it after.
            let unused = self.writing_into[usize::from(i)].load(Ordering::Acquire) == 0
                && self.index().dir_unused(i);
            let size = if unused
                && fs
                    .remove_dir(&self.layout.entries_dir().join(&d.name))
                    .is_ok()
            {
                self.fan_out_durable[usize::from(i)].store(false, Ordering::Release);
                0
            } else {
                d.len
            };
            self.index().observe_dir(i, size);
        }
    }

    /// Takes least-recently-used entries (never `keep`) out of the index until it is within
    /// the byte budget; their files are deleted by [`WarmStore::delete_victims`].
    fn pop_victims(&self, ix: &mut WarmIndex, keep: &KeyHash) -> Vec<(KeyHash, IndexEntry)> {
        let mut v = Vec::new();
        // Files of a newer format (another release sharing the directory) are counted but
        // never deleted here: they go back, and other entries are evicted instead.
        let mut kept = Vec::new();
        let mut kept_charge = 0u64;
        while ix.disk_bytes().saturating_add(kept_charge) > self.config.capacity_bytes {
            match ix.pop_victim(keep) {
                Some((h, e)) if e.tag == NOT_OURS => {
                    kept_charge = kept_charge.saturating_add(ix.charge(e.len));
                    kept.push((h, e));
                }
                Some(victim) => v.push(victim),
                None => break,
            }
        }
        for (h, e) in kept {
            ix.put(h, e);
        }
        v
    }

    /// A victim whose file is still there (it could not be read or deleted, or is not ours to
    /// judge) goes back into the index as least recently used: the budget keeps counting it,
    /// and the next eviction tries it first.
    fn keep_counting(&self, victim: KeyHash, entry: IndexEntry) {
        let mut ix = self.index();
        if !ix.contains(&victim) {
            ix.put_back_lru(victim, entry);
        }
    }

    /// Deletes the files of entries chosen as least recently used, each only if it is still
    /// the file that was judged: not written again by this process since (it is back in the
    /// index), and the file the index knew (its tag), not one another process wrote since;
    /// such a file goes back into the index, so the budget still counts it. Exclusive, so no
    /// process renames a newer entry in between the check and the unlink.
    fn delete_victims(&self, fs: &dyn Fs, victims: Vec<(KeyHash, IndexEntry)>) {
        for (victim, entry) in victims {
            let tag = entry.tag;
            let _key = self.key_lock(&victim, Hold::Exclusive);
            if self.index().contains(&victim) {
                continue;
            }
            let path = self.layout.entry_path(&victim);
            if tag != 0 {
                match fs.read_prefix(&path, HEADER_LEN) {
                    Ok(FileRead::Data(head)) => {
                        let now = super::index::file_tag(&head);
                        if now != tag {
                            if let Ok(h) = format::parse_header(&head, &self.config.limits) {
                                let len = (HEADER_LEN as u64)
                                    .saturating_add(u64::from(h.key_len))
                                    .saturating_add(h.payload_len);
                                self.index().put(
                                    victim,
                                    IndexEntry {
                                        len,
                                        expires_ms: h.meta.expires_ms,
                                        tag: now,
                                    },
                                );
                            } else {
                                // Another release's file (a newer format) is there: not
                                // ours to judge or delete, still on disk, still counted.
                                self.index().put(
                                    victim,
                                    IndexEntry {
                                        tag: NOT_OURS,
                                        ..entry
                                    },
                                );
                            }
                            continue;
                        }
                    }
                    // Not an entry file: left for the read path to quarantine.
                    Ok(_) => continue,
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => {
                        debug!(error = %e, "could not read an entry chosen for eviction");
                        self.keep_counting(victim, entry);
                        continue;
                    }
                }
            }
            match fs.remove_file(&path) {
                Ok(()) => self.counters.warm_evictions.inc(),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    debug!(error = %e, "could not evict an entry file");
                    self.keep_counting(victim, entry);
                }
            }
        }
    }

    /// Too little free space is handled like ENOSPC, so the cache never fills a disk that
    /// other programs need. A file of `len` bytes is counted as the allocation units it
    /// takes, plus one more for a block its fan-out directory may gain (the check cannot
    /// tell cheaply whether it will). The bytes are reserved until the returned guard drops
    /// (after the write): a concurrent write's check counts them as already gone. A check
    /// that fails while other writes are in flight waits for them (until `deadline`) and
    /// checks again: their temp files are counted by the volume as well as by their
    /// reservations until they end (see [`SpaceLedger`]).
    fn check_space(
        &self,
        fs: &dyn Fs,
        len: u64,
        deadline: Option<std::time::Instant>,
    ) -> io::Result<Reserved<'_>> {
        self.check_space_above(fs, len, deadline, 0)
    }

    /// [`WarmStore::check_space`] with `headroom` more bytes to leave free than the floor.
    fn check_space_above(
        &self,
        fs: &dyn Fs,
        len: u64,
        deadline: Option<std::time::Instant>,
        headroom: u64,
    ) -> io::Result<Reserved<'_>> {
        let floor = self.free_floor(fs)?.saturating_add(headroom);
        if floor == 0 {
            return Ok(Reserved::none());
        }
        let unit = self.unit.load(Ordering::Relaxed).max(1);
        let takes = len.div_ceil(unit).saturating_mul(unit).saturating_add(unit);
        self.space.reserve_until(takes, floor, deadline, || {
            fs.available_space(self.layout.root())
        })
    }

    /// The free space to leave: the setting, or by default the smaller of
    /// `DEFAULT_MIN_FREE_BYTES` and `DEFAULT_MIN_FREE_PERCENT` of the volume (its size read
    /// once; an unknown size keeps the full default).
    fn free_floor(&self, fs: &dyn Fs) -> io::Result<u64> {
        if let Some(n) = self.config.min_free_bytes {
            return Ok(n);
        }
        let known = self.default_floor.load(Ordering::Relaxed);
        if known != u64::MAX {
            return Ok(known);
        }
        let floor = match fs.total_space(self.layout.root())? {
            Some(total) => DEFAULT_MIN_FREE_BYTES.min(total / 100 * DEFAULT_MIN_FREE_PERCENT),
            None => DEFAULT_MIN_FREE_BYTES,
        };
        self.default_floor.store(floor, Ordering::Relaxed);
        Ok(floor)
    }

    /// A path error renaming an entry into place blocks only that entry (a foreign file in
    /// its fan-out directory's place) unless `v1/` itself cannot be listed: then no entry can
    /// be written, and the error is the device's.
    fn entry_or_layout_blocked(&self, fs: &dyn Fs, e: io::Error) -> io::Error {
        match fs.read_dir(self.layout.entries_dir()) {
            Ok(_) => e,
            Err(_) => layout_blocked(e),
        }
    }

    /// Writes the temp file. On a full disk, once more after the files this process read from
    /// the page cache and left to be closed later are closed ([`Fs::settle_deferred_closes`]):
    /// an entry replaced or removed while such a read had it open frees its space only then
    /// (tests/core/CLOSER_FINDINGS.md, W2).
    fn write_temp(&self, fs: &dyn Fs, tmp: &Path, file: &[u8]) -> io::Result<()> {
        match self.write_temp_once(fs, tmp, file) {
            Err(e) if IoErrorKind::classify(&e) == IoErrorKind::NoSpace => {
                if !fs.settle_deferred_closes(SETTLE_CLOSES_MAX) {
                    return Err(e);
                }
                match fs.remove_file(tmp) {
                    Ok(()) => {}
                    Err(r) if is_not_found(&r) => {}
                    Err(_) => return Err(e),
                }
                self.write_temp_once(fs, tmp, file)
            }
            r => r,
        }
    }

    /// Creates the temp file `tmp` (in its entry's fan-out directory) holding `file`.
    fn write_temp_once(&self, fs: &dyn Fs, tmp: &Path, file: &[u8]) -> io::Result<()> {
        let mut attempt = 0;
        loop {
            match fs.write_new(tmp, file, self.config.sync) {
                // No fan-out directory: the first entry in it, or a `purge` removed it empty
                // (`rmdir`, possibly between our `create_dir_all` and the create): create it,
                // make its entry in `v2/` durable, write again. Bounded: a directory that
                // keeps vanishing is an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < RENAME_ATTEMPTS => {
                    attempt += 1;
                    let Some(dir) = tmp.parent() else {
                        return Err(e);
                    };
                    // Not durable until `v2/` is fsynced after this, here or by the next
                    // write into it (see `rename_into_place`).
                    self.set_fan_out_durable(dir, false);
                    match fs.create_dir_all(dir) {
                        // Made, and removed again before it could be opened (the portable
                        // fs opens what it made): another round.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        r => r?,
                    }
                    if self.config.sync {
                        fs.sync_dir(self.layout.entries_dir())?;
                        self.set_fan_out_durable(dir, true);
                    }
                }
                r => return r,
            }
        }
    }

    /// Marks the fan-out directory `dir` (`<root>/v2/ab`) durable in `v2/` (an fsync of `v2/`
    /// returned after this process made it) or not known durable (this process is making or
    /// removing it); see [`WarmStore::fan_out_durable`].
    fn set_fan_out_durable(&self, dir: &Path, durable: bool) {
        if let Some(i) = super::walk::fan_out_of(dir) {
            self.fan_out_durable[usize::from(i)].store(durable, Ordering::Release);
        }
    }

    /// Renames the written temp file `tmp` over the entry path `dest`, in the same fan-out
    /// directory (`fan_out`), and (with `Fsync`) makes the rename durable: the directory, and
    /// `v2/` unless this process knows the directory's name there durable
    /// ([`WarmStore::fan_out_durable`]). `NotFound`: the directory went with the temp file in it.
    ///
    /// Without fsync, the older file of a key this process knows of is replaced by an
    /// *exchange* ([`Fs::rename_exchange`]), and the older file, now at the temp path, is
    /// deleted (or remembered and deleted later; a temp file is never read, and the next
    /// start-up sweeps it). Renamed over an existing file, ext4 (its default `auto_da_alloc`)
    /// starts writing the new file's data back inside the rename, which a no-sync write never
    /// asked for: at 64 KiB about a fifth of a drain's time (BENCHMARKS.md, "Session 26"); an
    /// exchange does not, and, like the rename, never leaves the path without an entry (r39,
    /// F1: deleting the older file first did, and a `kill -9` between the deletion and the
    /// rename lost an answer `flush` had acknowledged). A file system without exchange, a key
    /// with nothing at its path, or an older file left undeleted (`exchange_paused`): the
    /// plain rename. With fsync the rename replaces the file as before (its data is on disk
    /// already: nothing to write back).
    fn rename_into_place(
        &self,
        fs: &dyn Fs,
        tmp: &Path,
        dest: &Path,
        fan_out: u8,
        hash: &KeyHash,
    ) -> io::Result<()> {
        if !self.config.sync
            && self.exchange_renames.load(Ordering::Relaxed)
            && !self.exchange_paused.load(Ordering::Relaxed)
            && self.index().contains(hash)
        {
            match fs.rename_exchange(tmp, dest) {
                Ok(()) => {
                    // `tmp` names the older entry file now.
                    if !self.remove_or_remember(fs, tmp.to_path_buf()) {
                        self.exchange_paused.store(true, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    trace!("no exchange on this file system: renaming over older files");
                    self.exchange_renames.store(false, Ordering::Relaxed);
                }
                // Nothing at `dest` (deleted meanwhile), or `tmp` gone with its directory:
                // the rename does what is right, or says which.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        fs.rename(tmp, dest)?;
        if self.config.sync {
            if let Some(dir) = dest.parent() {
                fs.sync_dir(dir)?;
            }
            let durable = &self.fan_out_durable[usize::from(fan_out)];
            if !durable.load(Ordering::Acquire) {
                fs.sync_dir(self.layout.entries_dir())?;
                durable.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Removes an entry file. `Ok(false)` if there was none.
    pub fn remove(&self, fs: &dyn Fs, hash: &KeyHash) -> io::Result<bool> {
        let _key = self.key_lock(hash, Hold::Shared);
        {
            let mut ix = self.index();
            ix.begin_removal();
            ix.remove(hash);
        }
        let removed = self.remove_files(fs, hash);
        self.index().end_removal();
        removed
    }

    /// The file deletions of [`WarmStore::remove`].
    fn remove_files(&self, fs: &dyn Fs, hash: &KeyHash) -> io::Result<bool> {
        self.remove_legacy(fs, hash)?;
        let path = self.layout.entry_path(hash);
        match fs.remove_file(&path) {
            Ok(()) => {
                if self.config.sync {
                    match fs.sync_dir(&self.layout.entry_dir(hash)) {
                        // Emptied, and removed meanwhile (`observe_dirs`): nothing to sync.
                        Err(e) if is_not_found(&e) => {}
                        r => r?,
                    }
                }
                Ok(true)
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes every entry (the fan-out directories under `v1/`); foreign files are left.
    pub fn clear(&self, fs: &dyn Fs) -> io::Result<()> {
        {
            let mut ix = self.index();
            ix.begin_removal();
            ix.clear();
        }
        let cleared = self.clear_files(fs);
        self.index().end_removal();
        cleared
    }

    /// The file deletions of [`WarmStore::clear`].
    fn clear_files(&self, fs: &dyn Fs) -> io::Result<()> {
        let mut walk = EntryWalk::from_entries_dir(fs, self.layout.root()).in_listing_order();
        let mut first_error = None;
        while let Some(item) = walk.next() {
            match item {
                WalkItem::FanOutDir(dir) => {
                    walk.skip_dir();
                    self.set_fan_out_durable(&dir.path, false);
                    match fs.remove_dir_all(&dir.path) {
                        Ok(()) => {}
                        Err(e) if is_not_found(&e) => {}
                        // Another process wrote into it after it was listed (an entry, or
                        // its temp file): what it listed is gone, what came after stays and
                        // is no failure (r29, F4). The budget counts what stays.
                        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                            self.count_left(fs, &dir.path);
                        }
                        Err(e) => {
                            // What stays is stale (the fence says so) but on disk: the
                            // budget counts it and eviction deletes it.
                            self.count_left(fs, &dir.path);
                            first_error.get_or_insert(e);
                        }
                    }
                }
                WalkItem::Unlisted(u) => return Err(u.error),
                _ => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if self.config.sync && walk.entries_listed() {
            fs.sync_dir(self.layout.entries_dir())?;
        }
        Ok(())
    }

    /// Puts the entry files left in fan-out directory `dir` into the index as found by a scan
    /// (least recently used, evicted as found).
    fn count_left(&self, fs: &dyn Fs, dir: &Path) {
        let Ok(names) = fs.read_dir(dir) else {
            return;
        };
        let found: Vec<(KeyHash, u64, u64)> = names
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .filter_map(|e| Some((layout::parse_hex(&e.name)?, e.len, e.modified_ms)))
            .collect();
        self.index().merge_scanned_keeping_state(found);
    }

    /// Removes orphan temp files: those of dead processes, of instances of this process that
    /// are no longer alive, and any older than [`TEMP_MAX_AGE_MS`]. Returns how many.
    pub fn sweep_temp(&self, fs: &dyn Fs, now_ms: u64) -> io::Result<u64> {
        let entries = match fs.read_dir(self.layout.tmp_dir()) {
            Ok(e) => e,
            Err(e) if is_not_found(&e) => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for e in entries {
            let old = now_ms.saturating_sub(e.modified_ms) > TEMP_MAX_AGE_MS;
            let orphan = layout::parse_temp_name(&e.name).is_some_and(writer_gone);
            if e.kind == FileKind::File && (orphan || old) {
                match fs.remove_file(&self.layout.tmp_dir().join(&e.name)) {
                    Ok(()) => removed += 1,
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            } else if !orphan && !old && layout::parse_temp_name(&e.name).is_none() {
                self.counters.foreign_files.inc();
            }
        }
        if removed > 0 {
            info!(removed, "orphan temp files swept");
        }
        self.counters.temp_files_swept.add(removed);
        Ok(removed)
    }

    /// Walks `v2/ab/` and merges what it finds into the index. Foreign files and folders
    /// are counted and ignored; the temp files of entries whose writer is gone (or older than
    /// [`TEMP_MAX_AGE_MS`] at `now_ms`) are deleted; nothing is opened, nothing is followed; a
    /// directory that cannot be listed ends the scan (the index stays incomplete).
    pub fn scan(&self, fs: &dyn Fs, now_ms: u64) -> io::Result<u64> {
        let mut found = Vec::new();
        let mut foreign = 0u64;
        let mut swept = 0u64;
        for item in EntryWalk::from_entries_dir(fs, self.layout.root()).in_listing_order() {
            match item {
                WalkItem::Entry(e) if e.kind == FileKind::File => {
                    found.push((e.hash, e.len, e.modified_ms))
                }
                // Non-regular files at entry paths are quarantined when read.
                WalkItem::Entry(_) => {}
                WalkItem::Foreign(_) => foreign += 1,
                // An entry's temp file whose writer is gone (a crash, a `kill -9`): deleted,
                // as `sweep_temp` does in `tmp/`. One of a live writer is left to it.
                WalkItem::Temp(t) => {
                    let old = now_ms.saturating_sub(t.modified_ms) > TEMP_MAX_AGE_MS;
                    let orphan = t
                        .path
                        .file_name()
                        .and_then(layout::parse_entry_temp_name)
                        .is_some_and(writer_gone);
                    if orphan || old {
                        match fs.remove_file(&t.path) {
                            Ok(()) => swept += 1,
                            Err(e) if is_not_found(&e) => {}
                            // Left, and the scan goes on (r29, F1): one undeletable leftover
                            // must not keep every entry out of the index. The next scan
                            // tries again.
                            Err(e) => {
                                debug!(error = %e, path = %t.path.display(), "could not remove an orphan entry temp file");
                            }
                        }
                    }
                }
                WalkItem::FanOutDir(d) if d.level == Level::FanOut && self.is_closing() => {
                    // Abandon: the index stays marked incomplete.
                    self.counters.temp_files_swept.add(swept);
                    return Ok(found.len() as u64);
                }
                WalkItem::Unlisted(u) => {
                    self.counters.temp_files_swept.add(swept);
                    return Err(u.error);
                }
                _ => {}
            }
        }
        let n = found.len() as u64;
        // A previous process may have left more than this one's budget.
        self.index().merge_scanned(found);
        // What the directories take (a bigger cache before this one grew them).
        self.observe_dirs(fs);
        let victims = {
            let mut ix = self.index();
            self.pop_victims(&mut ix, &[0u8; 32])
        };
        self.delete_victims(fs, victims);
        // Directories the evictions emptied give their blocks back.
        self.observe_dirs(fs);
        // Complete once the directory is within the budget.
        self.index().mark_settled();
        self.counters.foreign_files.add(foreign);
        self.counters.temp_files_swept.add(swept);
        if swept > 0 {
            info!(removed = swept, "orphan entry temp files swept");
        }
        debug!(entries = n, foreign, "warm index scan merged");
        Ok(n)
    }

    /// Removes expired entry files known to the index, and learns the expiry of up to
    /// [`SWEEP_UNKNOWN_PER_PASS`] entries found by the scan. Returns how many were removed.
    pub fn sweep_expired(&self, fs: &dyn Fs, now_ms: u64) -> io::Result<u64> {
        let (expired, unknown) = self
            .index()
            .sweep_candidates(now_ms, SWEEP_UNKNOWN_PER_PASS);
        let mut removed = 0;
        for hash in expired.iter().chain(unknown.iter()) {
            if self.is_closing() {
                break;
            }
            let path = self.layout.entry_path(hash);
            // Re-read the header: another process may have rewritten the entry meanwhile.
            let head = match fs.read_prefix(&path, HEADER_LEN) {
                Ok(FileRead::Data(d)) => d,
                Ok(_) => continue,
                Err(e) if is_not_found(&e) => {
                    self.index().remove(hash);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let expires = match format::parse_header(&head, &self.config.limits) {
                Ok(h) => h.meta.expires_ms,
                Err(_) => 0, // left for the read path or `verify` to quarantine
            };
            if expires != 0 && now_ms >= expires {
                // Only the file whose header was judged: a newer entry renamed into place
                // since (by this process or another) stays.
                if self.remove_judged(fs, hash, &Judged::Header(&head))? {
                    removed += 1;
                    self.counters.warm_expirations.inc();
                }
            } else {
                self.index().set_expiry(hash, expires);
            }
        }
        self.observe_dirs(fs);
        Ok(removed)
    }

    /// Reads the fence (see FORMAT.md, "The fence"): `Ok(None)` when there is none,
    /// `Ok(Some(ms))` for a valid one; a fence that is not valid is `InvalidData`.
    pub fn read_fence(&self, fs: &dyn Fs) -> io::Result<Option<u64>> {
        match fs.read_file(&self.layout.fence_path(), format::FENCE_LEN as u64) {
            Ok(FileRead::Data(d)) => format::decode_fence(&d).map(Some).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "the fence file is not valid")
            }),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "something other than a fence file sits at the fence path",
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The largest fence this process wrote (see [`WarmStore::write_fence`]), shared.
    pub(crate) fn fence_written(&self) -> Arc<AtomicU64> {
        self.fence_written.clone()
    }

    /// Reads the fence, reading one that reads as damaged up to [`FENCE_REREADS`] more times
    /// (a read that flipped a bit once must not pass for a damaged fence).
    pub fn read_fence_again_if_damaged(&self, fs: &dyn Fs) -> io::Result<Option<u64>> {
        let mut read = self.read_fence(fs);
        for _ in 0..FENCE_REREADS {
            match &read {
                Err(e) if e.kind() == io::ErrorKind::InvalidData => read = self.read_fence(fs),
                _ => break,
            }
        }
        read
    }

    /// Makes the fence on disk cover every entry created before `ms`, atomically and durably
    /// (temp file, fsync, rename, root fsync), for every process that opens the directory
    /// from now on. Returns the fence on disk afterwards.
    ///
    /// A fence on disk never moves back. The fence is read first, under this process's fence
    /// lock (held until the call really returns, also after the caller gave up waiting) and an
    /// exclusive `flock` on the root directory (other processes and cache instances), then:
    /// - absent, damaged or below `ms`: `ms` is written;
    /// - at or above `ms`, and this process has already written a fence at least `ms` (an
    ///   older write of the same `clear`, given up and landed since): left as it is;
    /// - at or above `ms` otherwise (another writer's): one more than it is written. That
    ///   writer dates the entries it sets after its `clear` *at* its fence (`created_ms` is
    ///   never below the fence; several clears in one millisecond push it ahead of the
    ///   clock), and a fence clears only what is strictly older.
    ///
    /// A fence that cannot be read is not written over: the error is returned.
    pub fn write_fence(&self, fs: &dyn Fs, ms: u64) -> io::Result<u64> {
        let _in_process = crate::sync::lock(&self.fence_write);
        let _across = self.lock_root();
        let ms = match self.read_fence_again_if_damaged(fs) {
            // This process already wrote a fence at least `ms` (an earlier write of this
            // fence, given up and landed since): what is there now is at or above it, and
            // covers `ms` as it did. A new fence of this process is always above the last it
            // wrote (`Freshness` moves its fence past it), so this is never a new `clear`.
            Ok(Some(on_disk))
                if on_disk >= ms && ms <= self.fence_written.load(Ordering::Relaxed) =>
            {
                return Ok(on_disk)
            }
            Ok(Some(on_disk)) if on_disk >= ms => on_disk.saturating_add(1),
            Ok(_) => ms,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => ms,
            Err(e) => return Err(e),
        };
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.layout.probe_path(self.owner, n);
        let result = fs
            .write_new(&tmp, &format::encode_fence(ms), true)
            .and_then(|()| fs.rename(&tmp, &self.layout.fence_path()))
            .and_then(|()| fs.sync_dir(self.layout.root()));
        match result {
            Ok(()) => {
                self.fence_written.fetch_max(ms, Ordering::Relaxed);
            }
            Err(_) => {
                self.remove_or_remember(fs, tmp);
            }
        }
        result.map(|()| ms)
    }

    /// An exclusive `flock` on the root directory, released when the descriptor drops (see
    /// [`WarmStore::write_fence`]). `None` where the root cannot be opened or locked: then
    /// only this process's fence writes are ordered, as for [`WarmStore::key_lock`].
    fn lock_root(&self) -> Option<std::fs::File> {
        use rustix::fs::{FlockOperation, Mode, OFlags};
        let dir = rustix::fs::open(
            self.layout.root(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        rustix::fs::flock(&dir, FlockOperation::LockExclusive).ok()?;
        Some(std::fs::File::from(dir))
    }

    #[cfg(feature = "redis")]
    /// Writes the pending-namespace marker `file` with `content` (FORMAT.md, "Pending
    /// namespace markers"): temp file, rename over any older marker of the same name, and,
    /// when writes are durable, fsync of the file, of the marker directory and (the first
    /// time) of the root. A temp name left by an earlier process with the same pid is
    /// removed and the write tried once more under a new name.
    pub fn write_marker(&self, fs: &dyn Fs, file: &str, content: &[u8]) -> io::Result<()> {
        let dir = self.layout.markers_dir();
        if !self.markers_dir_ready.load(Ordering::Acquire) {
            fs.create_dir_all(&dir)?;
            if self.config.sync {
                fs.sync_dir(self.layout.root())?;
            }
            self.markers_dir_ready.store(true, Ordering::Release);
        }
        let mut tries = 0;
        let tmp = loop {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let tmp = self.layout.marker_temp_path(self.owner, n);
            match fs.write_new(&tmp, content, self.config.sync) {
                Ok(()) => break tmp,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries == 0 => {
                    tries += 1;
                    let _ = fs.remove_file(&tmp);
                }
                Err(e) => {
                    self.remove_or_remember(fs, tmp);
                    return Err(e);
                }
            }
        };
        let result = fs.rename(&tmp, &dir.join(file)).and_then(|()| {
            if self.config.sync {
                fs.sync_dir(&dir)
            } else {
                Ok(())
            }
        });
        if result.is_err() {
            self.remove_or_remember(fs, tmp);
        }
        result
    }

    #[cfg(feature = "redis")]
    /// The pending-namespace markers: each entry's name and, for a regular file of at most
    /// `max_len` bytes, its content (`None`: something else sits there, or it cannot be
    /// read). No marker directory: none.
    pub fn read_markers(
        &self,
        fs: &dyn Fs,
        max_len: u64,
    ) -> io::Result<Vec<(std::ffi::OsString, Option<Vec<u8>>)>> {
        let dir = self.layout.markers_dir();
        let entries = match fs.read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            // Whatever cannot be read as a marker (a directory, a FIFO, a file too long, an
            // error) is one whose generation is unknown: the caller invalidates its namespace
            // again rather than let one entry stop the others from being read.
            let content = match fs.read_file(&dir.join(&e.name), max_len) {
                Ok(FileRead::Data(d)) => Some(d),
                Err(e) if is_not_found(&e) => continue,
                Ok(_) | Err(_) => None,
            };
            out.push((e.name, content));
        }
        Ok(out)
    }

    #[cfg(feature = "redis")]
    /// Removes the marker `file` if it still begins with `head` (its name and generation: a
    /// newer marker of the same namespace stays) and is at most `max_len` bytes. Returns
    /// whether it was removed.
    pub fn remove_marker(
        &self,
        fs: &dyn Fs,
        file: &str,
        head: &[u8],
        max_len: u64,
    ) -> io::Result<bool> {
        let path = self.layout.markers_dir().join(file);
        match fs.read_file(&path, max_len) {
            Ok(FileRead::Data(d)) if d.starts_with(head) => {}
            Ok(_) => return Ok(false),
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        match fs.remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    #[cfg(feature = "redis")]
    /// Removes whatever sits at the marker path `file` that is not a marker this cache can
    /// read (a directory, a FIFO, a damaged file), once its namespace was invalidated again.
    pub fn remove_bad_marker(&self, fs: &dyn Fs, file: &str) -> io::Result<()> {
        let path = self.layout.markers_dir().join(file);
        match fs.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(_) => match fs.remove_dir_all(&path) {
                Err(e) if is_not_found(&e) => Ok(()),
                other => other,
            },
        }
    }

    /// The recovery probe: free-space check, then write and fsync a probe file, read it
    /// back, verify it and delete it.
    pub fn probe(&self, fs: &dyn Fs) -> io::Result<()> {
        const PROBE_LEN: usize = 4096;
        // What `open` could not set up on a disk that failed then (read-only, full, erroring):
        // the directories and the directory lock. A disk that is back gets them now.
        if !self.prepared.load(Ordering::Acquire) {
            self.prepare_dirs(fs)?;
        }
        self.retry_leftovers(fs);
        // No wait: the probe runs while nothing else writes.
        let _reserved = self.check_space(fs, PROBE_LEN as u64, None)?;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.layout.probe_path(self.owner, n);
        let mut data = Vec::with_capacity(PROBE_LEN);
        let mut h = blake3::Hasher::new();
        h.update(&n.to_le_bytes());
        h.update(&self.owner.instance.to_le_bytes());
        h.finalize_xof().fill({
            data.resize(PROBE_LEN, 0);
            &mut data
        });
        let result = fs.write_new(&path, &data, true).and_then(|()| {
            match fs.read_file(&path, PROBE_LEN as u64)? {
                FileRead::Data(back) if back == data => Ok(()),
                _ => Err(io::Error::other("probe file read back differs")),
            }
        });
        let removed = fs.remove_file(&path);
        if let Err(e) = &removed {
            if !is_not_found(e) {
                crate::sync::lock(&self.leftovers).push(path);
            }
        }
        result?;
        match removed {
            Err(e) if !is_not_found(&e) => Err(e),
            _ => {
                // The disk may have been away when the cache opened.
                if !self.nowait_reads.load(Ordering::Relaxed) {
                    self.detect_nowait_reads(fs);
                }
                Ok(())
            }
        }
    }

    /// Removes a temp or probe file, or remembers it for [`WarmStore::retry_leftovers`].
    /// Whether nothing is left of it (removed, or gone already).
    fn remove_or_remember(&self, fs: &dyn Fs, path: PathBuf) -> bool {
        match fs.remove_file(&path) {
            Ok(()) => true,
            Err(e) if is_not_found(&e) => true,
            Err(e) => {
                debug!(error = %e, "could not remove a temp file; will retry");
                crate::sync::lock(&self.leftovers).push(path);
                false
            }
        }
    }

    /// Retries removing temp and probe files whose removal failed earlier (the disk was
    /// failing); called by every probe, so a disk that recovers is left clean.
    fn retry_leftovers(&self, fs: &dyn Fs) {
        let paths = std::mem::take(&mut *crate::sync::lock(&self.leftovers));
        for p in paths {
            self.remove_or_remember(fs, p);
        }
        if crate::sync::lock(&self.leftovers).is_empty() {
            self.exchange_paused.store(false, Ordering::Relaxed);
        }
        self.restore_stranded(fs);
    }

    /// Newer entries taken aside by a judged removal that are still waiting to be put back.
    pub fn stranded(&self) -> usize {
        crate::sync::lock(&self.stranded).len()
    }

    /// Puts back the newer entries a judged removal took aside and could not put back then
    /// (never over a yet newer entry, which wins). Called by every probe and by `flush`.
    pub fn restore_stranded(&self, fs: &dyn Fs) {
        let stranded = std::mem::take(&mut *crate::sync::lock(&self.stranded));
        for (aside, path) in stranded {
            match fs.rename_noreplace(&aside, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    self.remove_or_remember(fs, aside);
                }
                Err(e) if is_not_found(&e) => {}
                Err(_) => crate::sync::lock(&self.stranded).push((aside, path)),
            }
        }
    }

    /// Deletes the key's existing entry file (none is fine). A path error is not the
    /// device's: no file can sit behind a blocked path.
    fn remove_older(&self, fs: &dyn Fs, hash: &KeyHash) -> io::Result<()> {
        let _key = self.key_lock(hash, Hold::Shared);
        self.index().remove(hash);
        self.remove_legacy(fs, hash)?;
        match fs.remove_file(&self.layout.entry_path(hash)) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if !IoErrorKind::classify(&e).is_device_failure() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl WarmStore {
    /// While a migration is unfinished, removes the key's file of the previous layout, so
    /// that a later migration cannot move a removed answer back in (see `migrate`). Removed
    /// before the `v2/` file: a migration moving it in between is then undone by the caller's
    /// removal of the `v2/` path.
    fn remove_legacy(&self, fs: &dyn Fs, hash: &KeyHash) -> io::Result<()> {
        if !self.legacy_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        match fs.remove_file(&self.layout.legacy_entry_path(hash)) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if !IoErrorKind::classify(&e).is_device_failure() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether entries of the previous layout may still wait in `v1/` (a migration not
    /// finished).
    pub fn legacy_pending(&self) -> bool {
        self.legacy_pending.load(Ordering::Acquire)
    }

    /// The previous layout's `v1/ab` directories to migrate; `None` without a `v1/`. Marks
    /// the migration pending (see [`WarmStore::remove_legacy`]) when there is one.
    pub fn legacy_dirs(&self, fs: &dyn Fs) -> io::Result<Option<Vec<PathBuf>>> {
        let dirs = super::migrate::legacy_dirs(fs, &self.layout)?;
        self.legacy_pending.store(dirs.is_some(), Ordering::Release);
        Ok(dirs)
    }

    /// Moves one `v1/ab` directory's entries into `v2/` (see `migrate`).
    pub fn migrate_legacy_dir(
        &self,
        fs: &dyn Fs,
        dir: &Path,
    ) -> io::Result<super::migrate::Migrated> {
        super::migrate::migrate_dir(fs, &self.layout, dir, self.config.sync)
    }

    /// Every `v1/ab` was migrated: removes what is left of `v1/` if it is empty, and ends
    /// the pending state (what is left, if anything, is not an entry).
    pub fn finish_legacy(&self, fs: &dyn Fs) -> io::Result<bool> {
        self.legacy_pending.store(false, Ordering::Release);
        super::migrate::finish(fs, &self.layout, self.config.sync)
    }
}

/// A path error that blocks the whole layout (the root, `tmp/` or `v1/` is not a usable
/// directory): no entry can be written, so it counts against the device (see
/// [`is_layout_blocked`]) instead of being one entry's problem.
#[derive(Debug)]
struct LayoutBlocked(io::Error);

impl std::fmt::Display for LayoutBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the cache directory cannot hold entries: {}", self.0)
    }
}

impl std::error::Error for LayoutBlocked {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn layout_blocked(e: io::Error) -> io::Error {
    io::Error::other(LayoutBlocked(e))
}

/// Is this the error of a write that no entry could have made (see [`LayoutBlocked`])?
pub(crate) fn is_layout_blocked(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LayoutBlocked>())
}

#[path = "compact.rs"]
mod compact;
#[cfg(test)]
pub(crate) use compact::tests::StepFs;
pub(crate) use compact::Backlog;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::fs::StdFs;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        let aside = dir.path().join("aside.tmp");
        (dir, path, aside)
    }

    #[test]
    fn a_process_is_alive_by_signal_until_it_is_gone() {
        assert!(pid_alive_by_signal(std::process::id()));
        // Not ours to signal (EPERM unless root): still alive.
        assert!(pid_alive_by_signal(1));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive_by_signal(pid), "a reaped child is gone");
        assert!(!pid_alive_by_signal(999_999_999));
        // Not a pid (0 is the process group, beyond i32 wraps negative): cannot tell.
        assert!(pid_alive_by_signal(0));
        assert!(pid_alive_by_signal(u32::MAX));
    }

    #[test]
    fn the_judged_file_is_taken_aside() {
        let (_dir, path, aside) = setup();
        std::fs::write(&path, b"old entry").unwrap();
        let judged = Judged::Bytes(b"old entry");
        assert!(take_if_unchanged(&StdFs::new(), &path, &aside, &judged, 100).unwrap());
        assert!(!path.exists());
        assert_eq!(std::fs::read(&aside).unwrap(), b"old entry");
    }

    #[test]
    fn a_newer_file_renamed_in_after_the_judgment_is_put_back() {
        let (_dir, path, aside) = setup();
        // Judged "old entry"; a writer has since renamed a newer entry onto the path.
        std::fs::write(&path, b"newer entry").unwrap();
        for judged in [
            Judged::Bytes(b"old entry"),
            Judged::Header(b"old "),
            Judged::TooLarge,
            Judged::NotRegular(FileKind::Dir),
        ] {
            assert!(!take_if_unchanged(&StdFs::new(), &path, &aside, &judged, 100).unwrap());
            assert_eq!(std::fs::read(&path).unwrap(), b"newer entry", "{judged:?}");
            assert!(!aside.exists(), "{judged:?}");
        }
    }

    #[test]
    fn nothing_at_the_path_takes_nothing() {
        let (_dir, path, aside) = setup();
        let judged = Judged::Bytes(b"x");
        assert!(!take_if_unchanged(&StdFs::new(), &path, &aside, &judged, 100).unwrap());
        assert!(!aside.exists());
    }

    /// A put-back that keeps failing leaves the newer entry aside, never deletes it: the error
    /// says so, for the caller to put it back later.
    #[test]
    fn a_newer_entry_whose_put_back_fails_is_stranded_not_deleted() {
        use crate::testing::{Fault, FaultFs, FsOp, Rule};
        let (_dir, path, aside) = setup();
        std::fs::write(&path, b"newer entry").unwrap();
        let fs = FaultFs::std();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        fs.add_rule(
            Rule::new(Fault::Errno(5))
                .ops(&[FsOp::Rename])
                .path_contains(name)
                .skip(0)
                .times(3),
        );
        // The rename aside goes to `aside` (not matched); the three put-backs to `path` fail.
        let err = take_if_unchanged(&fs, &path, &aside, &Judged::Bytes(b"old"), 100).unwrap_err();
        assert!(is_stranded(&err), "{err}");
        assert!(!path.exists());
        assert_eq!(std::fs::read(&aside).unwrap(), b"newer entry");
        assert_eq!(fs.faults_injected(), 3);
    }

    /// An even newer entry took the path while the taken one was being compared: the put
    /// back refuses to replace it, and the taken one (older than it) is deleted.
    #[test]
    fn put_back_never_replaces_an_even_newer_entry() {
        let (dir, path, aside) = setup();
        std::fs::write(&path, b"newer").unwrap();
        std::fs::rename(&path, &aside).unwrap();
        std::fs::write(&path, b"newest").unwrap();
        let err = StdFs::new().rename_noreplace(&aside, &path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"newest");
        drop(dir);
    }
}

#[cfg(test)]
#[path = "beside_r29_tests.rs"]
mod beside_r29_tests;

#[cfg(test)]
#[path = "review_r31_tests.rs"]
mod review_r31_tests;

#[cfg(test)]
#[path = "replace_tests.rs"]
mod replace_tests;
