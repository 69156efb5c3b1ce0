//! r24: [`ObservedFs`]'s held ENOSPC refusals, call by call (see `tests/core/settle_r24.rs`
//! for the same through the store and the gate).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ObservedFs;
use crate::fs::{DirEntryInfo, FileRead, Fs, IoErrorKind};
use crate::stats::Counters;

/// `write_new` fails with the next errno of a script (0: succeeds); the settle answers
/// `settle` and counts.
#[derive(Debug, Default)]
struct Scripted {
    errnos: std::sync::Mutex<Vec<i32>>,
    settle: AtomicBool,
    settles: AtomicU64,
}

impl Scripted {
    fn new(errnos: &[i32], settle: bool) -> Arc<Self> {
        let mut v = errnos.to_vec();
        v.reverse();
        Arc::new(Scripted {
            errnos: std::sync::Mutex::new(v),
            settle: AtomicBool::new(settle),
            settles: AtomicU64::new(0),
        })
    }
    fn next(&self) -> io::Result<()> {
        match crate::sync::lock(&self.errnos).pop() {
            Some(e) if e != 0 => Err(io::Error::from_raw_os_error(e)),
            _ => Ok(()),
        }
    }
}

impl Fs for Scripted {
    fn read_file(&self, _: &Path, _: u64) -> io::Result<FileRead> {
        self.next().map(|()| FileRead::Data(Vec::new()))
    }
    fn read_prefix(&self, _: &Path, _: usize) -> io::Result<FileRead> {
        self.next().map(|()| FileRead::Data(Vec::new()))
    }
    fn write_new(&self, _: &Path, _: &[u8], _: bool) -> io::Result<()> {
        self.next()
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        self.next()
    }
    fn rename_noreplace(&self, _: &Path, _: &Path) -> io::Result<()> {
        self.next()
    }
    fn remove_file(&self, _: &Path) -> io::Result<()> {
        self.next()
    }
    fn remove_dir_all(&self, _: &Path) -> io::Result<()> {
        self.next()
    }
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        self.next()
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        self.next()
    }
    fn read_dir(&self, _: &Path) -> io::Result<Vec<DirEntryInfo>> {
        self.next().map(|()| Vec::new())
    }
    fn available_space(&self, _: &Path) -> io::Result<u64> {
        self.next().map(|()| 0)
    }
    fn settle_deferred_closes(&self, _: Duration) -> bool {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.settle.load(Ordering::SeqCst)
    }
}

fn no_space(c: &Counters) -> u64 {
    c.disk_errors[IoErrorKind::NoSpace.index()].get()
}

fn all(c: &Counters) -> u64 {
    c.disk_errors.iter().map(|n| n.get()).sum()
}

fn observed(errnos: &[i32], settle: bool) -> (ObservedFs, Arc<Scripted>, Arc<Counters>) {
    let fs = Scripted::new(errnos, settle);
    let counters = Arc::new(Counters::default());
    (ObservedFs::new(fs.clone(), counters.clone()), fs, counters)
}

const P: &str = "/x";

/// A refusal is not counted until the outcome is read; then once, and reading it again
/// counts nothing more; dropping counts nothing more either.
#[test]
fn a_held_refusal_is_counted_once_when_read_and_not_again_on_drop() {
    let (o, _, c) = observed(&[28], false);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert_eq!(all(&c), 0);
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert_eq!(no_space(&c), 1);
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert!(o.saw_any());
    drop(o);
    assert_eq!((no_space(&c), all(&c)), (1, 1));
}

/// An operation whose outcome is never read (it timed out): counted on drop, once.
#[test]
fn a_held_refusal_is_counted_on_drop() {
    let (o, _, c) = observed(&[28, 28], false);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert!(o.rename(Path::new(P), Path::new(P)).is_err());
    assert_eq!(all(&c), 0);
    drop(o);
    assert_eq!((no_space(&c), all(&c)), (2, 2));
}

/// A settle answering true withdraws nothing by itself: the retry it announces does, when it
/// is made. One answering false announces none. (Y1: a settle that withdrew at once left a
/// refusal whose retry was never made uncounted.)
#[test]
fn a_true_settle_withdraws_one_refusal_only_when_the_retry_is_made() {
    let (o, fs, c) = observed(&[28, 28, 28, 0], false);
    for _ in 0..3 {
        assert!(o.write_new(Path::new(P), b"", true).is_err());
    }
    assert!(!o.settle_deferred_closes(Duration::ZERO));
    fs.settle.store(true, Ordering::SeqCst);
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert!(o.settle_deferred_closes(Duration::ZERO));
    // Announced twice, not yet made: nothing withdrawn.
    assert_eq!(o.held_no_space.load(Ordering::SeqCst), 3);
    // A call that is not a retry withdraws nothing either.
    assert!(o.remove_file(Path::new(P)).is_ok());
    assert_eq!(o.held_no_space.load(Ordering::SeqCst), 3);
    // The retry (written): one withdrawn, and only one for the two settles.
    assert!(o.write_new(Path::new(P), b"", true).is_ok());
    assert!(o.write_new(Path::new(P), b"", true).is_ok());
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert_eq!(no_space(&c), 2);
    assert_eq!(fs.settles.load(Ordering::SeqCst), 3);
}

/// A true settle whose retry is never made (the store gave up before it): the refusal counts.
#[test]
fn a_refusal_whose_retry_is_never_made_counts() {
    let (o, _, c) = observed(&[28], true);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert_eq!((no_space(&c), all(&c)), (1, 1));
}

/// A free-space call is a retry too (the `check_space` path).
#[test]
fn a_free_space_call_after_a_true_settle_is_the_retry() {
    let (o, _, c) = observed(&[], true);
    o.held_no_space.store(1, Ordering::SeqCst);
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert!(o.available_space(Path::new(P)).is_ok());
    assert_eq!(o.device_failure(), None);
    assert_eq!(all(&c), 0);
}

/// A settle with nothing held withdraws nothing, and does not go negative: a later refusal
/// still counts.
#[test]
fn a_settle_with_nothing_held_leaves_later_refusals_counted() {
    let (o, _, c) = observed(&[28], true);
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert_eq!(no_space(&c), 1);
}

/// Refusals already recorded (the outcome was read) cannot be withdrawn by a later settle:
/// the count never goes down, and a refusal after that settle still counts.
#[test]
fn a_settle_after_the_outcome_was_read_withdraws_nothing_recorded() {
    let (o, _, c) = observed(&[28, 28], true);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert_eq!(no_space(&c), 1);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    drop(o);
    assert_eq!(no_space(&c), 2);
}

/// An EIO beside a withdrawn refusal: the EIO is counted at once and is the device failure;
/// the refusal is gone.
#[test]
fn eio_is_counted_at_once_and_a_withdrawn_refusal_leaves_it_alone() {
    let (o, _, c) = observed(&[28, 5], true);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert_eq!(all(&c), 1);
    assert_eq!(o.device_failure(), Some(IoErrorKind::Io));
    assert_eq!((no_space(&c), all(&c)), (0, 1));
}

/// ENOSPC (held) then EIO in one operation: both counted once, and the operation is a
/// device failure. (Its kind is the first *recorded*, `io`, not the first seen: only the
/// text of `DiskGate::note` shows it; the breaker ignores the kind.)
#[test]
fn enospc_then_eio_both_count_and_fail_the_operation() {
    let (o, _, c) = observed(&[28, 5], false);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert!(o.remove_file(Path::new(P)).is_err());
    assert!(o.device_failure().is_some());
    assert_eq!((no_space(&c), all(&c)), (1, 2));
}

/// EDQUOT classifies as no-space: held and withdrawn like ENOSPC.
#[test]
fn edquot_is_held_like_enospc() {
    let (o, _, c) = observed(&[122, 122], true);
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert!(o.settle_deferred_closes(Duration::ZERO));
    assert!(o.write_new(Path::new(P), b"", true).is_err());
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert_eq!(no_space(&c), 1);
}

/// A long run of refusals, each followed by a true settle and then retried: every retry
/// withdraws the refusal before it; only the last refusal, whose retry is never made, counts.
#[test]
fn a_run_of_retried_refusals_counts_only_the_last() {
    let (o, _, c) = observed(&[28; 1000], true);
    for _ in 0..1000 {
        assert!(o.write_new(Path::new(P), b"", true).is_err());
        assert!(o.settle_deferred_closes(Duration::ZERO));
    }
    assert_eq!(o.device_failure(), Some(IoErrorKind::NoSpace));
    assert_eq!((no_space(&c), all(&c)), (1, 1));
}
