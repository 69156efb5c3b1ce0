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
pub(super) mod closer {
    use std::os::fd::OwnedFd;
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::Duration;

    /// Descriptors waiting to be closed, at most.
    pub(super) const MAX_PENDING: usize = 256;

    struct Closer {
        pending: Mutex<Vec<OwnedFd>>,
        wake: Condvar,
    }

    /// The closer, started on first use; `None` if its thread could not be started.
    fn closer() -> Option<&'static Closer> {
        static CLOSER: OnceLock<Option<&'static Closer>> = OnceLock::new();
        *CLOSER.get_or_init(|| {
            let c: &'static Closer = Box::leak(Box::new(Closer {
                pending: Mutex::new(Vec::new()),
                wake: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("answercache-close".into())
                .spawn(move || loop {
                    let batch = {
                        let mut p = crate::sync::lock(&c.pending);
                        while p.is_empty() {
                            p = c
                                .wake
                                .wait(p)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                        std::mem::take(&mut *p)
                    };
                    drop(batch);
                    // Lets the next closes gather: at most a few thousand wake-ups a second
                    // under any read rate.
                    std::thread::sleep(Duration::from_micros(200));
                })
                .ok()
                .map(|_| c)
        })
    }

    /// Whether a descriptor opened now could be handed to the closer.
    pub(in crate::fs) fn has_room() -> bool {
        closer().is_some_and(|c| crate::sync::lock(&c.pending).len() < MAX_PENDING)
    }

    /// Hands `fd` to the closer thread (closes it here only if that thread could not be
    /// started, which `has_room` reports before any open).
    pub(in crate::fs) fn defer(fd: OwnedFd) {
        let Some(c) = closer() else {
            drop(fd);
            return;
        };
        let mut p = crate::sync::lock(&c.pending);
        let was_empty = p.is_empty();
        p.push(fd);
        drop(p);
        if was_empty {
            c.wake.notify_one();
        }
    }
}
