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
        /// Places taken by reads that may hand a descriptor over ([`reserve`]): counted with
        /// `fds` against [`MAX_PENDING`].
        reserved: usize,
        /// The thread waits for a hand-off to wake it (no poll is due).
        parked: bool,
        /// Descriptors handed over, and closed, since the thread started.
        handed: u64,
        closed: u64,
        /// Someone waits in [`settle`]: the thread closes what waits without gathering more,
        /// and tells `settled` after each batch.
        settlers: usize,
    }

    struct Closer {
        waiting: Mutex<Waiting>,
        wake: Condvar,
        /// Told after a batch is closed while someone waits in [`settle`].
        settled: Condvar,
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
                    reserved: 0,
                    parked: false,
                    handed: 0,
                    closed: 0,
                    settlers: 0,
                }),
                wake: Condvar::new(),
                settled: Condvar::new(),
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
                let hurry = w.settlers > 0 && !w.fds.is_empty();
                if w.fds.len() < WAKE_AT && !hurry {
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
                        // `push` and `settle` clear `parked` when they wake this thread.
                        while w.parked {
                            w = c
                                .wake
                                .wait(w)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                        empty_polls = 0;
                    }
                    if w.fds.is_empty() {
                        continue;
                    }
                }
                empty_polls = 0;
                std::mem::take(&mut w.fds)
            };
            let n = batch.len() as u64;
            drop(batch);
            let mut w = lock(c);
            w.closed += n;
            let tell = w.settlers > 0;
            drop(w);
            if tell {
                c.settled.notify_all();
            }
        }
    }

    /// Waits, at most `timeout`, until every descriptor handed over before the call is closed,
    /// waking the thread now. `true` if some were waiting or being closed and all are closed
    /// now: space they held (files unlinked or renamed over while a read had them open) is
    /// free, and a write that found the disk full may try again
    /// (tests/core/CLOSER_FINDINGS.md, W2). `false` if none were held, or the thread is stuck
    /// in a close.
    pub(in crate::fs) fn settle(timeout: std::time::Duration) -> bool {
        let Some(c) = closer() else {
            return false;
        };
        let mut w = lock(c);
        let target = w.handed;
        if w.closed >= target {
            return false;
        }
        let deadline = std::time::Instant::now() + timeout;
        w.settlers += 1;
        w.parked = false;
        c.wake.notify_one();
        let settled = loop {
            if w.closed >= target {
                break true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break false;
            }
            w = c
                .settled
                .wait_timeout(w, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        };
        w.settlers -= 1;
        settled
    }

    /// Whether a descriptor opened now could be handed to the closer.
    #[cfg(test)]
    pub(in crate::fs) fn has_room() -> bool {
        closer().is_some_and(|c| {
            let w = lock(c);
            w.fds.len() + w.reserved < MAX_PENDING
        })
    }

    /// A place in the closer's list, taken before a read opens its file and given back when
    /// the descriptor is handed over ([`Place::defer`]) or the place dropped: the check for
    /// room and the hand-off are one step, so concurrent reads never make the list hold more
    /// than [`MAX_PENDING`] (tests/core/CLOSER_FINDINGS.md, W1).
    pub(in crate::fs) struct Place {
        closer: &'static Closer,
        handed_over: bool,
    }

    /// A place in the closer's list, or `None` when [`MAX_PENDING`] descriptors wait or are
    /// about to (the thread is stuck in a close), or the thread could not be started.
    pub(in crate::fs) fn reserve() -> Option<Place> {
        let c = closer()?;
        let mut w = lock(c);
        if w.fds.len() + w.reserved >= MAX_PENDING {
            return None;
        }
        w.reserved += 1;
        Some(Place {
            closer: c,
            handed_over: false,
        })
    }

    impl Place {
        /// Hands `fd` to the closer thread in this place.
        pub(in crate::fs) fn defer(mut self, fd: OwnedFd) {
            self.handed_over = true;
            let mut w = lock(self.closer);
            w.reserved -= 1;
            push(self.closer, w, fd);
        }
    }

    impl Drop for Place {
        fn drop(&mut self) {
            if !self.handed_over {
                lock(self.closer).reserved -= 1;
            }
        }
    }

    /// Hands `fd` to the closer thread without a place (tests; closes it here only if that
    /// thread could not be started).
    #[cfg(test)]
    pub(in crate::fs) fn defer(fd: OwnedFd) {
        let Some(c) = closer() else {
            drop(fd);
            return;
        };
        push(c, lock(c), fd);
    }

    /// Adds `fd` to the list; wakes the thread only if it has parked or [`WAKE_AT`]
    /// descriptors wait.
    fn push(c: &Closer, mut w: MutexGuard<'_, Waiting>, fd: OwnedFd) {
        w.fds.push(fd);
        w.handed += 1;
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

        /// When `settle` returns, every descriptor handed over before it is closed: the
        /// non-blocking read end reads end-of-file at once (with its write end still open it
        /// would answer `WouldBlock`). In a child process of its own: another test of this
        /// binary spawning a process (`python3`, `true`, `mkfifo`, a child test) holds a copy of
        /// every descriptor between its fork and its exec, so a write end could read as open
        /// here although the closer had closed it (session 18's clean-clone CI: one failure in
        /// 20 rounds, `WouldBlock`).
        #[test]
        fn settle_waits_for_what_was_handed_over() {
            if !in_child("settle_waits_for_what_was_handed_over", "settle") {
                return;
            }
            for _ in 0..20 {
                let (readers, writers) = pipes(3);
                for w in writers {
                    super::defer(w);
                }
                // `false` only if the thread closed them all before `settle` looked.
                let _ = super::settle(Duration::from_secs(10));
                for r in readers {
                    let r = OwnedFd::from(r);
                    rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK).unwrap();
                    let mut r = std::fs::File::from(r);
                    let mut buf = [0u8; 1];
                    assert_eq!(r.read(&mut buf).map_err(|e| e.kind()), Ok(0));
                }
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

        // ---- Adversarial tests (r22): a closer stuck in a close, spurious wake-ups. ----
        //
        // A close that blocks: the last descriptor of a TCP socket with `SO_LINGER` (120 s)
        // whose peer reads nothing (its send queue cannot drain, so `close` waits in
        // `tcp_close`). `python3` makes the pair (the crate has no socket options) and the test
        // takes its own copy with `pidfd_getfd`; python closes its copy, so the closer's close
        // is the last, and blocks until the peer drains. The tests that stall the process-wide
        // closer run again in a child process of their own (`--exact`), so that no other unit
        // test waits on it.

        use std::io::{BufRead, Write};
        use std::path::{Path, PathBuf};

        const ROLE_ENV: &str = "ANSWERCACHE_R22_CLOSER_ROLE";

        fn ci() -> bool {
            std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        }

        /// In the parent: runs `tests::<name>` again in a child in `role` and returns false;
        /// in that child, returns true (the test body runs). Skipped (false, said so) without
        /// `python3`, except under `CI=true`.
        fn in_child(name: &str, role: &str) -> bool {
            if std::env::var(ROLE_ENV).is_ok_and(|r| r == role) {
                return true;
            }
            let python = std::process::Command::new("python3")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !python {
                assert!(!ci(), "{name}: needs python3; CI=true requires it");
                println!("SKIPPED {name}: needs python3");
                return false;
            }
            let test = format!("fs::nowait::closer::tests::{name}");
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    &test,
                    "--nocapture",
                    "--test-threads=1",
                    "--include-ignored",
                ])
                .env(ROLE_ENV, role)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stdout.contains("running 1 test"),
                "child {test} failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                out.status
            );
            false
        }

        const LINGER_PAIR: &str = r#"
import socket, struct, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
c.connect(srv.getsockname()); peer, _ = srv.accept()
peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
c.setblocking(False)
try:
    while True: c.send(b"x" * 65536)
except BlockingIOError: pass
c.setblocking(True)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 120))
print(c.fileno(), flush=True)
sys.stdin.readline()
c.close()
print("closed", flush=True)
sys.stdin.readline()
peer.settimeout(60)
while peer.recv(1 << 20): pass
"#;

        /// A socket whose last close blocks until [`Stuck::release`] (or the test's end).
        struct Stuck {
            child: std::process::Child,
            stdin: Option<std::process::ChildStdin>,
        }

        impl Stuck {
            fn new() -> (Stuck, OwnedFd) {
                use std::process::Stdio;
                let mut child = std::process::Command::new("python3")
                    .args(["-c", LINGER_PAIR])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                let fd: i32 = line.trim().parse().unwrap();
                let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
                let pidfd =
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
                let sock = rustix::process::pidfd_getfd(
                    &pidfd,
                    fd,
                    rustix::process::PidfdGetfdFlags::empty(),
                )
                .unwrap();
                writeln!(stdin, "got").unwrap();
                line.clear();
                out.read_line(&mut line).unwrap();
                assert_eq!(line.trim(), "closed");
                (
                    Stuck {
                        child,
                        stdin: Some(stdin),
                    },
                    sock,
                )
            }

            /// The peer drains: the blocked close returns.
            fn release(mut self) {
                self.stop();
            }

            fn stop(&mut self) {
                if let Some(mut stdin) = self.stdin.take() {
                    let _ = writeln!(stdin, "drain");
                    drop(stdin);
                    let _ = self.child.wait();
                }
            }
        }

        impl Drop for Stuck {
            fn drop(&mut self) {
                self.stop();
            }
        }

        /// The closer thread's id (by its name).
        fn closer_tid() -> Option<String> {
            std::fs::read_dir("/proc/self/task").ok()?.find_map(|e| {
                let e = e.ok()?;
                let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
                (comm.trim() == "answercache-clo") // comm: 15 bytes of "answercache-close"
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
        }

        /// Waits (10 s at most) until the closer thread is blocked in `close(2)`.
        fn wait_closer_in_close() {
            #[cfg(target_arch = "x86_64")]
            const CLOSE: &str = "3";
            #[cfg(target_arch = "aarch64")]
            const CLOSE: &str = "57";
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            compile_error!("the syscall number of close on this architecture");
            let start = Instant::now();
            loop {
                // A thread just started takes its name a moment later: no name yet, not yet.
                let tid = closer_tid().unwrap_or_default();
                let sys = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                    .unwrap_or_default();
                if sys.split_whitespace().next() == Some(CLOSE) {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the closer is not in close: {sys}"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        fn pending() -> usize {
            super::lock(super::closer().unwrap()).fds.len()
        }

        /// Descriptors of this process open on `path`.
        fn fds_on(path: &Path) -> usize {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.starts_with(path))
                .count()
        }

        fn settle_fds(path: &Path) -> usize {
            let start = Instant::now();
            loop {
                let n = fds_on(path);
                if n == 0 || start.elapsed() > Duration::from_secs(10) {
                    return n;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }

        /// A page-cached file on a filesystem with inline reads (the temp dir: ext4, xfs or
        /// btrfs, as in `tests/core/inline_reads.rs`).
        fn cached(dir: &Path, data: &[u8]) -> PathBuf {
            use crate::fs::Fs;
            assert!(
                crate::fs::StdFs::new().nowait_reads(dir),
                "{} is not on ext4, xfs or btrfs",
                dir.display()
            );
            let path = dir.join("f");
            std::fs::write(&path, data).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data);
            path
        }

        fn nowait(path: &Path) -> Option<Vec<u8>> {
            use crate::fs::{FileRead, Fs};
            match crate::fs::StdFs::new()
                .read_file_nowait(path, 1 << 20)
                .unwrap()
            {
                Some(FileRead::Data(d)) => Some(d),
                None => None,
                Some(other) => panic!("{other:?}"),
            }
        }

        /// A close that hangs: while it does, descriptors handed over wait (exactly those),
        /// inline reads succeed until exactly MAX_PENDING wait and then answer `None` (the
        /// blocking path), a cache's warm hit is still exact (through the blocking pool, not
        /// inline); once the close returns, everything is closed and reads are inline again.
        #[test]
        fn a_stuck_close_caps_the_list_and_reads_take_the_blocking_path() {
            if !in_child(
                "a_stuck_close_caps_the_list_and_reads_take_the_blocking_path",
                "stuck_caps",
            ) {
                return;
            }
            let (stuck, sock) = Stuck::new();
            super::defer(sock);
            wait_closer_in_close();
            assert_eq!(pending(), 0);

            // Pipes handed over now wait, exactly those, none closed.
            let (readers, writers) = pipes(10);
            for w in writers {
                super::defer(w);
            }
            assert_eq!(pending(), 10);
            for r in &readers {
                rustix::io::ioctl_fionbio(r, true).unwrap();
                let mut b = [0u8; 1];
                let got = rustix::io::read(r, &mut b);
                assert_eq!(got, Err(rustix::io::Errno::AGAIN), "closed while stuck");
            }

            // Inline reads until the list is full, then the blocking path.
            let dir = tempfile::tempdir().unwrap();
            let data = b"stuck closer".repeat(100);
            let path = cached(dir.path(), &data);
            let mut inline = 0;
            while let Some(got) = nowait(&path) {
                assert_eq!(got, data);
                inline += 1;
                assert!(inline <= super::MAX_PENDING, "no cap");
            }
            assert_eq!(inline, super::MAX_PENDING - 10);
            assert_eq!(pending(), super::MAX_PENDING);
            assert!(!super::has_room());
            assert_eq!(fds_on(&path), super::MAX_PENDING - 10);
            for _ in 0..100 {
                assert_eq!(nowait(&path), None);
            }
            assert_eq!(pending(), super::MAX_PENDING);

            // A cache's warm hit: exact, through the blocking pool.
            let cache_dir = tempfile::tempdir().unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let cache_root = cache_dir.path().to_owned();
            rt.block_on(async {
                let c = crate::TieredCache::builder(&cache_root)
                    .hot_capacity_bytes(1)
                    .min_free_bytes(0)
                    .build()
                    .await
                    .unwrap();
                for i in 0..20 {
                    c.set(format!("k{i}"), &format!("v{i}")).await.unwrap();
                }
                c.flush().await.unwrap();
                for i in 0..20 {
                    assert_eq!(
                        c.get::<String>(format!("k{i}")).await.unwrap(),
                        Some(format!("v{i}"))
                    );
                }
                let s = c.stats();
                assert_eq!((s.warm_hits, s.inline_reads), (20, 0));
                assert_eq!(pending(), super::MAX_PENDING);

                // Unstuck: everything is closed, and hits are inline again.
                stuck.release();
                all_closed(readers);
                assert_eq!(settle_fds(&path), 0);
                let start = Instant::now();
                while pending() > 0 {
                    assert!(start.elapsed() < Duration::from_secs(10), "{}", pending());
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert!(super::has_room());
                for i in 0..20 {
                    assert_eq!(
                        c.get::<String>(format!("k{i}")).await.unwrap(),
                        Some(format!("v{i}"))
                    );
                }
                let s = c.stats();
                assert_eq!((s.warm_hits, s.inline_reads), (40, 20));
                c.close().await.unwrap();
            });
            assert_eq!(settle_fds(&cache_root.join("v2")), 0);
            assert_eq!(nowait(&path), Some(data));
            assert_eq!(settle_fds(&path), 0);
        }

        /// With the closer stuck and MAX_PENDING - 1 waiting, 8 threads read inline at once:
        /// `has_room` and `defer` are two separate critical sections, so every thread that saw
        /// room hands its descriptor over. The list must never hold more than MAX_PENDING (the
        /// module's doc: "At most MAX_PENDING descriptors wait for it"). 300 attempts.
        #[test]
        fn concurrent_readers_never_push_the_list_past_max_pending() {
            if !in_child(
                "concurrent_readers_never_push_the_list_past_max_pending",
                "stuck_race",
            ) {
                return;
            }
            let (stuck, sock) = Stuck::new();
            super::defer(sock);
            wait_closer_in_close();
            let dir = tempfile::tempdir().unwrap();
            let data = b"racing readers".repeat(50);
            let path = Arc::new(cached(dir.path(), &data));
            let mut most = 0;
            for _ in 0..300 {
                {
                    let mut w = super::lock(super::closer().unwrap());
                    // Dropped here, closed on this thread: the list back to MAX_PENDING - 1.
                    w.fds.truncate(super::MAX_PENDING - 1);
                    while w.fds.len() < super::MAX_PENDING - 1 {
                        w.fds
                            .push(OwnedFd::from(std::fs::File::open("/dev/null").unwrap()));
                    }
                }
                let barrier = Arc::new(std::sync::Barrier::new(8));
                let threads: Vec<_> = (0..8)
                    .map(|_| {
                        let (barrier, path) = (barrier.clone(), path.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            nowait(&path)
                        })
                    })
                    .collect();
                let mut inline = 0;
                for t in threads {
                    if let Some(got) = t.join().unwrap() {
                        assert_eq!(got, data);
                        inline += 1;
                    }
                }
                let n = pending();
                assert_eq!(n, super::MAX_PENDING - 1 + inline);
                most = most.max(n);
            }
            {
                super::lock(super::closer().unwrap()).fds.clear();
            }
            stuck.release();
            assert_eq!(settle_fds(&path), 0);
            assert!(
                most <= super::MAX_PENDING,
                "{most} descriptors waited (MAX_PENDING {})",
                super::MAX_PENDING
            );
        }

        /// Spurious wake-ups (10,000 `notify_all`s from another thread) neither unpark the
        /// closer for good nor lose a hand-off: after an idle it is parked (exactly: `parked`
        /// is set and nothing waits); trickled hand-offs during the storm are all closed, and
        /// once the storm ends and the closer is idle again it parks again.
        #[test]
        fn spurious_wake_ups_lose_nothing_and_the_closer_parks_again() {
            if !in_child(
                "spurious_wake_ups_lose_nothing_and_the_closer_parks_again",
                "spurious",
            ) {
                return;
            }
            let c = super::closer().unwrap();
            let parked_within = |limit: Duration| {
                let start = Instant::now();
                while !super::lock(c).parked {
                    if start.elapsed() > limit {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                true
            };
            assert!(parked_within(Duration::from_secs(10)), "never parked");
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let storm = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 10_000 {
                        c.wake.notify_all();
                        n += 1;
                        if n.is_multiple_of(100) {
                            std::thread::yield_now();
                        }
                    }
                    n
                })
            };
            for round in 0..30 {
                let (readers, writers) = pipes(1 + round % 3);
                std::thread::sleep(Duration::from_micros(500 * round as u64));
                for w in writers {
                    super::defer(w);
                }
                all_closed(readers);
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(storm.join().unwrap() >= 10_000);
            assert!(parked_within(Duration::from_secs(10)), "never parked again");
            let w = super::lock(c);
            assert_eq!((w.parked, w.fds.len()), (true, 0));
        }

        use std::sync::Arc;

        // ---- Adversarial tests (r23): settle (W2) and places (W1). ----

        fn would_block(r: &std::io::PipeReader) -> bool {
            rustix::io::ioctl_fionbio(r, true).unwrap();
            let mut b = [0u8; 1];
            rustix::io::read(r, &mut b) == Err(rustix::io::Errno::AGAIN)
        }

        /// With the closer stuck in a close: 16 settlers at once (each after a hand-off of its
        /// own) all answer `false` within 10 s (each waits its 100 ms, none hangs or
        /// deadlocks with the others or the hand-offs), none closes anything; afterwards no
        /// settler is counted, nothing is reserved, exactly 4 + 16 descriptors wait. Released:
        /// every one is closed, a settle with nothing handed over answers `false` at once, and
        /// `closed == handed`.
        #[test]
        fn settlers_with_a_stuck_closer_give_up_at_their_timeout() {
            if !in_child(
                "settlers_with_a_stuck_closer_give_up_at_their_timeout",
                "r23_stuck_settle",
            ) {
                return;
            }
            let (stuck, sock) = Stuck::new();
            super::defer(sock);
            wait_closer_in_close();
            let (readers, writers) = pipes(4);
            for w in writers {
                super::defer(w);
            }
            let (tx, rx) = std::sync::mpsc::channel();
            for i in 0..16 {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let (r, w) = pipes(1);
                    for w in w {
                        super::defer(w);
                    }
                    let got = super::settle(Duration::from_millis(100));
                    let _ = tx.send((i, got, r));
                });
            }
            drop(tx);
            let mut more = Vec::new();
            for _ in 0..16 {
                let (i, got, r) = rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a settler hangs past its timeout");
                assert!(!got, "settler {i}: settled while the closer is stuck");
                more.extend(r);
            }
            {
                let w = super::lock(super::closer().unwrap());
                assert_eq!((w.settlers, w.reserved, w.fds.len()), (0, 0, 20));
            }
            for r in readers.iter().chain(&more) {
                assert!(would_block(r), "closed while the closer is stuck");
            }
            stuck.release();
            all_closed(readers);
            all_closed(more);
            let start = Instant::now();
            while pending() > 0 {
                assert!(start.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(1));
            }
            // The last batch's count is added after its close: wait for it.
            let start = Instant::now();
            loop {
                let w = super::lock(super::closer().unwrap());
                if w.closed == w.handed {
                    assert_eq!((w.settlers, w.reserved, w.handed), (0, 0, 21));
                    break;
                }
                drop(w);
                assert!(start.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(1));
            }
            let start = Instant::now();
            assert!(!super::settle(Duration::from_secs(30)));
            assert!(start.elapsed() < Duration::from_secs(10));
        }

        /// Settlers and hand-offs from many threads at once, the closer free: every settle
        /// that answers `true` finds its own descriptor (handed over before it) closed; all
        /// return within 10 s; afterwards nothing is reserved, no settler is counted, every
        /// descriptor is closed and the closer parks again (no spinning on `settlers`).
        #[test]
        fn concurrent_settlers_and_hand_offs_close_everything_and_park() {
            if !in_child(
                "concurrent_settlers_and_hand_offs_close_everything_and_park",
                "r23_settle_storm",
            ) {
                return;
            }
            let (tx, rx) = std::sync::mpsc::channel();
            for t in 0..8 {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut bad = 0;
                    let mut trues = 0;
                    let mut readers = Vec::new();
                    for i in 0..300 {
                        let (r, w) = pipes(1 + (t + i) % 3);
                        for w in w {
                            super::defer(w);
                        }
                        if super::settle(Duration::from_secs(5)) {
                            trues += 1;
                            for r in &r {
                                if !matches!(
                                    {
                                        rustix::io::ioctl_fionbio(r, true).unwrap();
                                        let mut b = [0u8; 1];
                                        rustix::io::read(r, &mut b)
                                    },
                                    Ok(0)
                                ) {
                                    bad += 1;
                                }
                            }
                        }
                        readers.extend(r);
                    }
                    let _ = tx.send((bad, trues, readers));
                });
            }
            drop(tx);
            let mut all = Vec::new();
            for _ in 0..8 {
                let (bad, _trues, r) = rx
                    .recv_timeout(Duration::from_secs(60))
                    .expect("a settler hangs");
                assert_eq!(bad, 0, "settle said true with a descriptor still open");
                all.extend(r);
            }
            all_closed(all);
            let c = super::closer().unwrap();
            let start = Instant::now();
            while !super::lock(c).parked {
                assert!(start.elapsed() < Duration::from_secs(10), "never parks");
                std::thread::sleep(Duration::from_millis(1));
            }
            let w = super::lock(c);
            assert_eq!((w.settlers, w.reserved, w.fds.len()), (0, 0, 0));
            assert_eq!(w.closed, w.handed);
        }

        /// Every way out of `read_file_nowait` gives its place back: ENOENT, ENOTDIR, an
        /// empty path, a symlink (ELOOP), a directory, a file too large, a file read; from
        /// 8 threads, more than MAX_PENDING times each. Afterwards nothing is reserved and
        /// reads are inline again.
        #[test]
        fn every_way_out_of_a_read_gives_its_place_back() {
            if !in_child("every_way_out_of_a_read_gives_its_place_back", "r23_places") {
                return;
            }
            use crate::fs::{FileKind, FileRead, Fs};
            let dir = tempfile::tempdir().unwrap();
            let data = b"places".repeat(20);
            let file = cached(dir.path(), &data);
            std::os::unix::fs::symlink(&file, dir.path().join("link")).unwrap();
            std::fs::create_dir(dir.path().join("d")).unwrap();
            let base = Arc::new(dir.path().to_owned());
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (base, data) = (base.clone(), data.clone());
                    std::thread::spawn(move || {
                        let fs = crate::fs::StdFs::new();
                        for _ in 0..super::MAX_PENDING + 10 {
                            // ENOENT, ENOTDIR, an empty path: an error, or `None` where
                            // RESOLVE_CACHED answers EAGAIN first (no negative dentry yet).
                            for p in [base.join("missing"), base.join("f").join("x"), "".into()] {
                                let e = fs.read_file_nowait(&p, 1 << 20);
                                assert!(matches!(e, Err(_) | Ok(None)), "{p:?}: {e:?}");
                            }
                            // Each answers its kind, or `None` (EAGAIN: not all cached).
                            let r = fs.read_file_nowait(&base.join("link"), 1 << 20);
                            assert!(
                                matches!(
                                    r,
                                    Ok(None | Some(FileRead::NotRegular(FileKind::Symlink)))
                                ),
                                "{r:?}"
                            );
                            let r = fs.read_file_nowait(&base.join("d"), 1 << 20);
                            assert!(
                                matches!(r, Ok(None | Some(FileRead::NotRegular(FileKind::Dir)))),
                                "{r:?}"
                            );
                            let r = fs.read_file_nowait(&base.join("f"), 10);
                            assert!(
                                matches!(r, Ok(None | Some(FileRead::TooLarge(120)))),
                                "{r:?}"
                            );
                            match fs.read_file_nowait(&base.join("f"), 1 << 20) {
                                Ok(Some(FileRead::Data(d))) => assert_eq!(d, data),
                                Ok(None) => {}
                                other => panic!("{other:?}"),
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(super::lock(super::closer().unwrap()).reserved, 0);
            let start = Instant::now();
            while pending() > 0 {
                assert!(start.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(super::has_room());
            assert!((0..1000).any(|_| nowait(&file).is_some_and(|d| d == data)));
            assert_eq!(super::lock(super::closer().unwrap()).reserved, 0);
            assert_eq!(settle_fds(dir.path()), 0);
        }

        /// With the closer stuck: places held (not yet handed over) count against
        /// MAX_PENDING exactly like waiting descriptors; dropping them unused gives every
        /// one back; a read then is inline again.
        #[test]
        fn held_places_count_and_dropped_places_come_back() {
            if !in_child(
                "held_places_count_and_dropped_places_come_back",
                "r23_held_places",
            ) {
                return;
            }
            let (stuck, sock) = Stuck::new();
            super::defer(sock);
            wait_closer_in_close();
            let (readers, writers) = pipes(6);
            for w in writers {
                super::defer(w);
            }
            let mut places = Vec::new();
            while let Some(p) = super::reserve() {
                places.push(p);
                assert!(places.len() <= super::MAX_PENDING, "no cap");
            }
            assert_eq!(places.len(), super::MAX_PENDING - 6);
            let dir = tempfile::tempdir().unwrap();
            let data = b"held".repeat(10);
            let path = cached(dir.path(), &data);
            assert_eq!(nowait(&path), None);
            // Half handed over (pipes), half dropped unused.
            let (more_readers, more_writers) = pipes(places.len() / 2);
            let rest = places.split_off(places.len() / 2);
            for (p, w) in places.into_iter().zip(more_writers) {
                p.defer(w);
            }
            {
                let w = super::lock(super::closer().unwrap());
                assert_eq!(w.fds.len() + w.reserved, super::MAX_PENDING);
            }
            drop(rest);
            {
                let w = super::lock(super::closer().unwrap());
                assert_eq!(w.reserved, 0);
                assert_eq!(w.fds.len(), 6 + (super::MAX_PENDING - 6) / 2);
            }
            assert_eq!(nowait(&path), Some(data));
            stuck.release();
            all_closed(readers);
            all_closed(more_readers);
            assert_eq!(settle_fds(&path), 0);
        }
    }
}
