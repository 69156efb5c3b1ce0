//! The free-space floor's ledger: the bytes of writes whose free-space check passed and whose
//! files may not be on the volume yet.
//!
//! A write checks `available_space >= len + floor + reserved` and, if it passes, adds `len` to
//! `reserved` until its file is renamed into place. The decision and the reservation are one
//! step under the ledger's lock, so two writes can never both pass on the same free bytes;
//! the free space is read outside it (see [`SpaceLedger::reserve_until`]).
//!
//! A write's temp file is counted by `statvfs` from its `write` on, while its reservation
//! lasts until the rename: a concurrent check counts those bytes twice. Near the floor that
//! refused writes with room to spare (SETTLE_FINDINGS.md, Z1: 96-143 of 200 concurrent
//! overwrites refused with room for both). So a check that fails while other writes hold
//! reservations does not refuse at once: it waits for one of them to end (its bytes are then
//! counted once, by `statvfs`, and an overwrite has freed the file it replaced) and checks
//! again, until no other write is in flight or the wait's bound has passed
//! ([`SPACE_WAIT_MAX`], shorter with a short `io_timeout`; one deadline for a write's two
//! checks around the settle of deferred closes). Only a check that fails with nothing else in
//! flight (or after the wait) refuses.

use std::io;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// The longest a write waits for concurrent writes to end before its free-space check
/// refuses it. Writes near the floor end in milliseconds on a working disk; one in flight
/// longer than this is stuck, and the waiting write fails as it would have. The store uses
/// half the disk calls' `io_timeout` when that is shorter (`StoreConfig::space_wait`), so a
/// write refused after waiting is reported as refused, not as timed out.
pub(crate) const SPACE_WAIT_MAX: Duration = Duration::from_secs(1);

/// What the ledger's lock guards.
#[derive(Debug, Default)]
struct State {
    /// Bytes reserved by writes whose check passed and which have not ended.
    reserved: u64,
    /// Reservations ended so far: a waiting check wakes when it moves.
    ended: u64,
    /// Bytes of the reservations ended so far (wrapping): a check adds those that ended
    /// while it read the free space, which that reading may not show yet.
    ended_bytes: u64,
}

/// The ledger (one per store).
#[derive(Debug, Default)]
pub(crate) struct SpaceLedger {
    state: Mutex<State>,
    ended: Condvar,
}

/// A passed check's reservation, released on drop.
#[derive(Debug)]
pub(crate) struct Reserved<'a> {
    ledger: Option<&'a SpaceLedger>,
    len: u64,
}

impl Reserved<'_> {
    /// A reservation of nothing (no floor to keep).
    pub(crate) fn none() -> Self {
        Reserved {
            ledger: None,
            len: 0,
        }
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if let Some(ledger) = self.ledger {
            let mut s = lock(&ledger.state);
            s.reserved = s.reserved.saturating_sub(self.len);
            s.ended = s.ended.wrapping_add(1);
            s.ended_bytes = s.ended_bytes.wrapping_add(self.len);
            drop(s);
            ledger.ended.notify_all();
        }
    }
}

impl SpaceLedger {
    /// [`SpaceLedger::reserve_until`] with a deadline `wait` from now.
    #[cfg(test)]
    pub(crate) fn reserve(
        &self,
        len: u64,
        floor: u64,
        wait: Duration,
        available: impl FnMut() -> io::Result<u64>,
    ) -> io::Result<Reserved<'_>> {
        self.reserve_until(len, floor, Instant::now().checked_add(wait), available)
    }

    /// Reserves `len` bytes if `available()` leaves at least `floor` after them and after
    /// every reservation in flight; while that fails and some are in flight, waits for one
    /// to end and checks again, until `deadline` (`None`: no wait). The error is
    /// `StorageFull`, with the figures.
    ///
    /// `available` (a `statvfs`, which can hang on a sick disk) is called without the
    /// ledger's lock, so a slow or hung call holds up only its own write, never another
    /// write's check or the end of a write. The decision is taken under the lock; the bytes
    /// of reservations that ended while `available` ran count as still in flight (the
    /// reading may predate their files), so two checks never pass on the same bytes.
    pub(crate) fn reserve_until(
        &self,
        len: u64,
        floor: u64,
        deadline: Option<Instant>,
        mut available: impl FnMut() -> io::Result<u64>,
    ) -> io::Result<Reserved<'_>> {
        loop {
            let before = lock(&self.state).ended_bytes;
            let avail = available()?;
            let mut s = lock(&self.state);
            let window = s.ended_bytes.wrapping_sub(before);
            let others = s.reserved.saturating_add(window);
            // A sum past `u64::MAX` never fits (T3: a saturated sum equal to a saturated
            // free-space figure passed).
            let fits = |others: u64| {
                len.checked_add(floor)
                    .and_then(|n| n.checked_add(others))
                    .is_some_and(|needed| avail >= needed)
            };
            if fits(others) {
                s.reserved = s.reserved.saturating_add(len);
                return Ok(Reserved {
                    ledger: Some(self),
                    len,
                });
            }
            let left = deadline.and_then(|d| d.checked_duration_since(Instant::now()));
            let left = match left {
                Some(left) if others > 0 && !left.is_zero() => left,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        BelowFloor(format!(
                            "{avail} bytes free, {others} more being written: writing {len} \
                             would leave less than min_free_bytes ({floor})"
                        )),
                    ))
                }
            };
            if window > 0 && fits(s.reserved) {
                // Only the writes that ended while the free space was read kept it from
                // fitting (the reading may predate their files): read it again. Otherwise
                // wait for a write to end, rather than read again at once (r26: under
                // churn, back-to-back reads until the deadline).
                continue;
            }
            let seen = s.ended;
            drop(
                self.ended
                    .wait_timeout_while(s, left, |s| s.ended == seen)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
        }
    }

    /// Bytes reserved now (tests).
    #[cfg(test)]
    pub(crate) fn reserved(&self) -> u64 {
        lock(&self.state).reserved
    }
}

/// The refusal of a check that found too little free space above the floor (not an error
/// of the file system's): see [`is_below_floor`].
#[derive(Debug)]
struct BelowFloor(String);

impl std::fmt::Display for BelowFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BelowFloor {}

/// Whether `e` is a [`SpaceLedger`] refusal: the figures said the write would not fit above
/// the floor (a smaller write may), not a free-space call that failed.
pub(crate) fn is_below_floor(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<BelowFloor>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_check_that_fits_reserves_and_the_drop_releases() {
        let l = SpaceLedger::default();
        let r = l.reserve(100, 1000, Duration::ZERO, || Ok(1100)).unwrap();
        assert_eq!(l.reserved(), 100);
        drop(r);
        assert_eq!(l.reserved(), 0);
    }

    #[test]
    fn a_check_below_the_floor_with_nothing_in_flight_refuses_at_once() {
        let l = SpaceLedger::default();
        let t = Instant::now();
        let e = l
            .reserve(100, 1000, Duration::from_secs(30), || Ok(1099))
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            e.to_string(),
            "1099 bytes free, 0 more being written: writing 100 would leave less than \
             min_free_bytes (1000)"
        );
        assert_eq!(l.reserved(), 0);
    }

    #[test]
    fn reservations_in_flight_are_counted() {
        let l = SpaceLedger::default();
        let _a = l.reserve(100, 1000, Duration::ZERO, || Ok(1250)).unwrap();
        // 1150 free: 100 for this write + 100 in flight + the floor do not fit.
        let e = l
            .reserve(100, 1000, Duration::ZERO, || Ok(1150))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "1150 bytes free, 100 more being written: writing 100 would leave less than \
             min_free_bytes (1000)"
        );
        assert_eq!(l.reserved(), 100);
    }

    #[test]
    fn an_available_error_is_returned_and_reserves_nothing() {
        let l = SpaceLedger::default();
        let e = l
            .reserve(100, 1000, Duration::ZERO, || {
                Err(io::Error::other("statvfs"))
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "statvfs");
        assert_eq!(l.reserved(), 0);
    }

    /// Z1: the check that failed because another write was in flight passes once that write
    /// ends and the volume shows the space it freed.
    #[test]
    fn a_check_waits_for_a_write_in_flight_and_passes_when_it_ends() {
        let l = Arc::new(SpaceLedger::default());
        let free = Arc::new(AtomicU64::new(1250));
        let a = l
            .reserve(
                100,
                1000,
                Duration::ZERO,
                || Ok(free.load(Ordering::SeqCst)),
            )
            .unwrap();
        // Its temp file is written: `statvfs` counts it, and so does the reservation.
        free.store(1150, Ordering::SeqCst);
        let calls = Arc::new(AtomicU64::new(0));
        let waiter = {
            let (l, free, calls) = (l.clone(), free.clone(), calls.clone());
            std::thread::spawn(move || {
                l.reserve(100, 1000, Duration::from_secs(60), || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(free.load(Ordering::SeqCst))
                })
                .map(|r| {
                    let held = l.reserved();
                    drop(r);
                    held
                })
            })
        };
        while calls.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // The first write's temp file became an entry that replaced an older one: as much
        // free as before it. Then it ends.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        free.store(1250, Ordering::SeqCst);
        drop(a);
        // It reserved its own 100 bytes, the first write's having ended.
        assert_eq!(waiter.join().unwrap().unwrap(), 100);
        // One check before the end, one after.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(l.reserved(), 0);
    }

    #[test]
    fn a_check_that_still_fails_after_the_wait_refuses() {
        let l = SpaceLedger::default();
        let _a = l.reserve(100, 1000, Duration::ZERO, || Ok(1250)).unwrap();
        let t = Instant::now();
        let e = l
            .reserve(100, 1000, Duration::from_millis(50), || Ok(1150))
            .unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(l.reserved(), 100);
    }

    /// A write in flight that ends without freeing anything (a new key) wakes the waiter,
    /// which then refuses on the figures it reads, with nothing in flight.
    #[test]
    fn a_check_that_fails_with_nothing_left_in_flight_refuses_before_the_deadline() {
        let l = Arc::new(SpaceLedger::default());
        let a = l.reserve(100, 1000, Duration::ZERO, || Ok(1250)).unwrap();
        let waiter = {
            let l = l.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = l.reserve(200, 1000, Duration::from_secs(60), || Ok(1150));
                (r.map(|_| ()), t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(a);
        let (r, took) = waiter.join().unwrap();
        assert_eq!(
            r.unwrap_err().to_string(),
            "1150 bytes free, 0 more being written: writing 200 would leave less than \
             min_free_bytes (1000)"
        );
        assert!(took < Duration::from_secs(30));
    }
}

#[cfg(test)]
#[path = "space_r25_tests.rs"]
mod r25_tests;

#[cfg(test)]
#[path = "space_r26_tests.rs"]
mod r26_tests;
