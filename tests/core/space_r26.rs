//! Adversarial tests (r26) of the free-space ledger after 2583f64: `statvfs` read outside the
//! ledger's lock with a window of reservations that ended during the read, the wait bounded
//! by min(1 s, io_timeout / 2) with one deadline per write. Findings are `#[ignore]`d with
//! their id; see `SPACE_R26_FINDINGS.md`. Unit tests of the ledger itself are in
//! `src/warm/space_r26_tests.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use answercache::WritePolicy;

use crate::space_r25::{
    charged, faulty, hang_one_write, no_space, timeouts, value, RealBut, Statvfs, FLOOR,
};
use crate::support::OnDisk;

// ---------------------------------------------------------------------------------------
// The read outside the lock: a stale reading.
// ---------------------------------------------------------------------------------------

/// `available_space` (through [`RealBut`]) answers `free`, and, when `hold` is
/// set, takes its reading, reports it on `entered`, and returns it only once `go` says so (a
/// slow `statvfs` whose figure predates what happens meanwhile).
#[derive(Debug, Default)]
struct StaleStatvfs {
    free: AtomicU64,
    hold: AtomicBool,
    calls: AtomicU64,
    chans: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl Statvfs for StaleStatvfs {
    fn available(&self) -> std::io::Result<u64> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let v = self.free.load(Ordering::SeqCst);
        if self.hold.swap(false, Ordering::SeqCst) {
            let (entered, go) = self.chans.lock().unwrap().take().unwrap();
            entered.send(()).unwrap();
            go.recv().unwrap();
        }
        Ok(v)
    }
}

/// Room for one entry above the floor (and half of another). A's `statvfs` reads that
/// figure and is slow; meanwhile B passes on the same figure, lands (the volume now shows
/// its file: half an entry of room) and ends. A then decides on its stale reading: the
/// window (B's bytes) makes it re-read, and it is refused. Exactly one of A, B lands, one
/// `no-space`, A read `statvfs` twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_reading_never_passes_a_second_write_on_the_same_bytes() {
    let fs = Arc::new(RealBut(StaleStatvfs::default()));
    fs.free.store(1 << 40, Ordering::SeqCst);
    let h = crate::support::dir()
        .with_fs(fs.clone())
        .open_cache(|b| {
            b.write_policy(WritePolicy::WriteThrough)
                .min_free_bytes(FLOOR)
                .write_concurrency(4)
                .failure_threshold(100_000)
                .memory_only_after(100_000)
        })
        .await;
    h.set_bytes("k0", value(0)).await.unwrap();
    let len = charged(std::fs::metadata(h.entry_path("k0")).unwrap().len());
    fs.free.store(FLOOR + len + len / 2, Ordering::SeqCst);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    *fs.chans.lock().unwrap() = Some((entered_tx, go_rx));
    fs.hold.store(true, Ordering::SeqCst);
    let calls0 = fs.calls.load(Ordering::SeqCst);
    let c = h.cache.clone();
    let a = tokio::spawn(async move { c.set_bytes("ka", value(1)).await });
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();
    // B: its check reads the same figure and passes; it lands.
    h.set_bytes("kb", value(2)).await.unwrap();
    // The volume shows B's file.
    fs.free.store(FLOOR + len / 2, Ordering::SeqCst);
    go_tx.send(()).unwrap();
    let ra = a.await.unwrap();
    let calls = fs.calls.load(Ordering::SeqCst) - calls0;
    println!(
        "A: {ra:?}; statvfs calls (A and B) {calls}; no-space {}",
        no_space(&h)
    );
    assert!(ra.is_err(), "A passed on B's bytes");
    assert!(!h.entry_path("ka").exists());
    assert!(h.entry_path("kb").exists());
    assert_eq!(no_space(&h), 1);
    // B once, A twice (stale, then fresh).
    assert_eq!(calls, 3);
}

// ---------------------------------------------------------------------------------------
// The deadline against a small io_timeout.
// ---------------------------------------------------------------------------------------

/// One write hangs holding its reservation (room for one entry above the floor); then `n`
/// sets of other keys, each of which waits (min(1 s, io_timeout/2)) and is refused. Returns
/// (sets refused, no-space, timeouts) counted for those `n` sets, the slowest set, and how
/// many sets took io_timeout or longer (only those can have timed out in the gate).
async fn refused_behind_a_hung_write(
    io_timeout: Duration,
    n: u64,
) -> (u64, u64, u64, Duration, u64) {
    let (mut h, len) = faulty(|b| b).await;
    h.reopen_with(|b| b.io_timeout(io_timeout)).await;
    h.fs().set_available_space(Some(FLOOR + len + len / 2));
    let hung = hang_one_write(&h).await;
    // The hung write's own timeout (the gate cuts it at io_timeout).
    tokio::time::sleep(io_timeout * 3 + Duration::from_millis(50)).await;
    let (ns0, to0) = (no_space(&h), timeouts(&h));
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    let mut outlived = 0;
    for i in 0..n {
        let t = Instant::now();
        let r = h.set_bytes(format!("w{i}"), value(10 + i)).await;
        slowest = slowest.max(t.elapsed());
        outlived += u64::from(t.elapsed() >= io_timeout);
        if let Err(e) = &r {
            println!(
                "io_timeout {io_timeout:?}, set {i}: {e} after {:?}",
                t.elapsed()
            );
        }
        refused += u64::from(r.is_err());
    }
    // Anything left in the background (a waiting closure the gate gave up on) ends.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let figures = (
        refused,
        no_space(&h) - ns0,
        timeouts(&h) - to0,
        slowest,
        outlived,
    );
    h.fs().release_hangs();
    let _ = hung.await.unwrap();
    figures
}

/// With io_timeout 10 ms the wait is 5 ms: each of 20 refused sets is one `no-space`, no
/// `timeout` (the breaker would count those).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_waits_with_a_10ms_io_timeout_are_no_space_not_timeouts() {
    let (refused, ns, to, slowest, outlived) =
        refused_behind_a_hung_write(Duration::from_millis(10), 20).await;
    println!(
        "io_timeout 10 ms: refused {refused}, no-space {ns}, timeouts {to}, slowest {slowest:?}, \
         sets of 10 ms or more {outlived}"
    );
    // As below: a set stalled past io_timeout on a loaded runner really timed out.
    assert_eq!((refused, ns + to), (20, 20));
    assert!(
        to <= outlived,
        "{to} timeouts, {outlived} sets outlived io_timeout"
    );
}

/// The same at the smallest io_timeout, 1 ms (wait 0.5 ms): what is left of the gate's
/// budget after the wait is 0.5 ms for the re-read, the refusal and the hand-back. A loaded
/// runner can stall a blocking thread longer than that (a clean-clone CI run counted one
/// timeout in 20; reproduced under four busy loops): such a call really outlived
/// io_timeout, and a timeout is then the right count. So: every refusal counted exactly once,
/// as no-space or as a timeout, and a timeout only for a set that took io_timeout or longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_waits_with_a_1ms_io_timeout_are_no_space_not_timeouts() {
    let (refused, ns, to, slowest, outlived) =
        refused_behind_a_hung_write(Duration::from_millis(1), 20).await;
    println!(
        "io_timeout 1 ms: refused {refused}, no-space {ns}, timeouts {to}, slowest {slowest:?}, \
         sets of 1 ms or more {outlived}"
    );
    assert_eq!((refused, ns + to), (20, 20));
    assert!(
        to <= outlived,
        "{to} timeouts, {outlived} sets outlived io_timeout"
    );
}
