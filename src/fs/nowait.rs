//! The non-blocking page-cache read of [`StdFs::read_file_nowait`](super::StdFs) and the
//! thread that closes what it opened.

use std::io;
use std::os::fd::OwnedFd;

use super::seam::{FileKind, FileRead};

/// Filesystems on which [`StdFs`] reads from the page cache on the caller's thread: local
/// block filesystems whose page-cache reads support `RWF_NOWAIT`. Network filesystems (NFS,
/// SMB, FUSE) are left out: their `open` may itself talk to a server, which only the timed
/// blocking path may do. tmpfs is left out because it rejects `RWF_NOWAIT` (EOPNOTSUPP on
/// Linux 6.18), so every attempt would be wasted.
pub(super) const NOWAIT_FS_MAGIC: [u64; 3] = [
    0xEF53,      // ext2/3/4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
];

/// The part of [`StdFs::read_file_nowait`] after the open.
pub(super) fn read_open_nowait(fd: &OwnedFd, max_len: u64) -> io::Result<Option<FileRead>> {
    use rustix::fs::FileType;
    use rustix::io::{Errno, ReadWriteFlags};
    let st = rustix::fs::fstat(fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Ok(Some(FileRead::NotRegular(FileKind::Dir))),
        _ => return Ok(Some(FileRead::NotRegular(FileKind::Special))),
    }
    let len = u64::try_from(st.st_size).unwrap_or(0);
    if len > max_len {
        return Ok(Some(FileRead::TooLarge(len)));
    }
    // One byte past the length: a file that grew after fstat goes to the blocking path.
    let Ok(cap) = usize::try_from(len.saturating_add(1)) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; cap];
    let mut got = 0;
    while got < cap {
        let offset = got as u64;
        let read = rustix::io::preadv2(
            fd,
            &mut [io::IoSliceMut::new(&mut buf[got..])],
            offset,
            ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            // Not (all) in the page cache, or RWF_NOWAIT unsupported here.
            Err(Errno::AGAIN | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    if got == cap {
        return Ok(None);
    }
    buf.truncate(got);
    Ok(Some(FileRead::Data(buf)))
}

/// Closes the files [`StdFs::read_file_nowait`] opened, on a thread of its own.
///
/// Closing a file can do I/O: if the entry was unlinked or renamed over while it was open
/// (a `set` of the same key, an eviction, the sweep), this close drops the last reference and
/// the filesystem frees the inode there and then (journal, block bitmaps), which can wait for
/// a sick disk. An async worker must never wait for the disk, so the descriptor is handed to
/// this thread. At most [`MAX_PENDING`](closer::MAX_PENDING) descriptors wait for it; beyond
/// that (the thread is stuck in a close) reads take the blocking path, so a hung disk costs a
/// bounded number of descriptors, not all of them.
///
/// The hand-off costs a read no system call while reads keep coming: the thread looks for
/// descriptors every [`POLL`](closer::POLL) by itself, and is woken only when it has parked
/// (no read for [`PARK_AFTER`](closer::PARK_AFTER) polls) or when
/// [`WAKE_AT`](closer::WAKE_AT) descriptors wait. Waking it on every hand-off (sessions 7-15)
/// cost each warm hit a futex wake and a thread switch on another core: 6-35% of a 1-64 KiB
/// hit on the 2-core bench machine (BENCHMARKS.md, "Session 16"). What the polling costs: up
/// to 1,000 wake-ups a second of this thread while reads continue, and a descriptor stays open
/// at most about one poll longer.
pub(super) mod closer {
    use std::os::fd::OwnedFd;
    use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
    use std::time::Duration;

    /// Descriptors waiting to be closed, at most.
    pub(super) const MAX_PENDING: usize = 256;

    /// How long the thread lets descriptors gather before it closes them.
    pub(super) const POLL: Duration = Duration::from_millis(1);

    /// Polls that found nothing before the thread parks until the next hand-off wakes it.
    pub(super) const PARK_AFTER: u32 = 10;

    /// Descriptors waiting at which a hand-off wakes the thread before its poll is due: well
    /// under [`MAX_PENDING`], so that a burst of reads does not fill the list.
    pub(super) const WAKE_AT: usize = 64;

    struct Waiting {
        fds: Vec<OwnedFd>,
        /// The thread waits for a hand-off to wake it (no poll is due).
        parked: bool,
    }

    struct Closer {
        waiting: Mutex<Waiting>,
        wake: Condvar,
    }

    fn lock(c: &Closer) -> MutexGuard<'_, Waiting> {
        crate::sync::lock(&c.waiting)
    }

    /// The closer, started on first use; `None` if its thread could not be started.
    fn closer() -> Option<&'static Closer> {
        static CLOSER: OnceLock<Option<&'static Closer>> = OnceLock::new();
        *CLOSER.get_or_init(|| {
            let c: &'static Closer = Box::leak(Box::new(Closer {
                waiting: Mutex::new(Waiting {
                    fds: Vec::new(),
                    parked: false,
                }),
                wake: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("answercache-close".into())
                .spawn(move || run(c))
                .ok()
                .map(|_| c)
        })
    }

    /// The thread: every [`POLL`] (or sooner, at [`WAKE_AT`]) it closes what was handed over;
    /// after [`PARK_AFTER`] empty polls it parks until a hand-off wakes it.
    fn run(c: &'static Closer) -> ! {
        let mut empty_polls = 0;
        loop {
            let batch = {
                let mut w = lock(c);
                if w.fds.len() < WAKE_AT {
                    w = c
                        .wake
                        .wait_timeout(w, POLL)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                if w.fds.is_empty() {
                    empty_polls += 1;
                    if empty_polls >= PARK_AFTER {
                        w.parked = true;
                        // `defer` clears `parked` when it wakes this thread.
                        while w.parked {
                            w = c
                                .wake
                                .wait(w)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                        empty_polls = 0;
                    }
                    continue;
                }
                empty_polls = 0;
                std::mem::take(&mut w.fds)
            };
            drop(batch);
        }
    }

    /// Whether a descriptor opened now could be handed to the closer.
    pub(in crate::fs) fn has_room() -> bool {
        closer().is_some_and(|c| lock(c).fds.len() < MAX_PENDING)
    }

    /// Hands `fd` to the closer thread (closes it here only if that thread could not be
    /// started, which `has_room` reports before any open). Wakes the thread only if it has
    /// parked or [`WAKE_AT`] descriptors wait.
    pub(in crate::fs) fn defer(fd: OwnedFd) {
        let Some(c) = closer() else {
            drop(fd);
            return;
        };
        let mut w = lock(c);
        w.fds.push(fd);
        let wake = std::mem::take(&mut w.parked) || w.fds.len() == WAKE_AT;
        drop(w);
        if wake {
            c.wake.notify_one();
        }
    }

    #[cfg(test)]
    mod tests {
        use std::io::Read;
        use std::os::fd::OwnedFd;
        use std::time::{Duration, Instant};

        /// Pipes whose write ends are handed to the closer: a read end reads end-of-file once
        /// its write end is closed.
        fn pipes(n: usize) -> (Vec<std::io::PipeReader>, Vec<OwnedFd>) {
            (0..n)
                .map(|_| {
                    let (r, w) = std::io::pipe().unwrap();
                    (r, OwnedFd::from(w))
                })
                .unzip()
        }

        /// Every read end reads end-of-file within 10 s: each write end was closed by the
        /// closer (a descriptor it never closes fails here).
        fn all_closed(readers: Vec<std::io::PipeReader>) {
            let (tx, rx) = std::sync::mpsc::channel();
            let n = readers.len();
            std::thread::spawn(move || {
                for mut r in readers {
                    let mut buf = [0u8; 1];
                    let _ = tx.send(r.read(&mut buf).map_err(|e| e.kind()));
                }
            });
            for i in 0..n {
                let got = rx.recv_timeout(Duration::from_secs(10));
                assert_eq!(got, Ok(Ok(0)), "read end {i} of {n}");
            }
        }

        /// A hand-off to a parked thread wakes it: no descriptor waits for another hand-off.
        #[test]
        fn a_parked_closer_is_woken_by_one_hand_off() {
            for _ in 0..3 {
                let (readers, writers) = pipes(1);
                // Long enough for PARK_AFTER empty polls, whatever else this process reads.
                std::thread::sleep(super::POLL * (super::PARK_AFTER + 5));
                for w in writers {
                    super::defer(w);
                }
                all_closed(readers);
            }
        }

        /// A burst larger than WAKE_AT and a trickle slower than POLL are all closed, and the
        /// list never holds more than MAX_PENDING.
        #[test]
        fn bursts_and_trickles_are_all_closed() {
            let (readers, writers) = pipes(super::WAKE_AT * 3 + 1);
            for w in writers {
                super::defer(w);
            }
            all_closed(readers);
            let (readers, writers) = pipes(5);
            for w in writers {
                super::defer(w);
                std::thread::sleep(super::POLL * 3);
            }
            all_closed(readers);
            let start = Instant::now();
            while !super::has_room() {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the list stays full"
                );
                std::thread::sleep(super::POLL);
            }
        }
    }
}
