//! Guards on the H1 fix itself (`load_fence` reads a damaged-looking fence up to three times in
//! one disk call): two bad reads then a good one keep the fence (also after a step back);
//! three bad reads without a step back move the fence forward, never back; a fence damaged
//! on disk (each way it can be) is written again so the next open keeps the disk; the breaker
//! and the error counters see one error per damaged load, none for bad reads that recovered;
//! a re-read that hangs is bounded by `io_timeout`.

use std::time::{Duration, Instant as StdInstant};

use answercache::testing::{disk_errors, Fault, FsOp, MemoryShared, Rule, TestDir};
use answercache::{BreakerState, Source};

use super::*;

/// Two reads of the fence return a flipped bit, the third the intact file, after a 30 s step
/// back: run 1's fence is kept (nothing cleared served, no error counted, the fence on disk
/// untouched), and run 2's own `set` is served after a restart.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two_bad_reads_then_a_good_one_keep_the_fence_after_a_step_back() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    dir.clock().set(super::super::r16::RUN2_MS);
    fence_read_flips_a_bit(&dir, 2);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(dir.fs().faults_injected(), 2);
    assert_eq!(read_src(&a, "k").await, None);
    assert_eq!(disk_errors(&a, "other"), 0);
    assert_eq!(a.stats().shared_hits, 0);
    a.set_bytes("n", b"set in run 2").await.unwrap();
    tick(&dir, 1);
    a.close().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 6));
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(read_src(&b, "k").await, None);
    // Set at 970 000, written raised to the fence read at open (the write floor).
    assert_eq!(
        super::super::r14::on_disk(&dir, b"n"),
        Some(("set in run 2".to_owned(), RUN1_MS + 6))
    );
    assert_eq!(
        read_src(&b, "n").await,
        Some(("set in run 2".to_owned(), Source::Warm))
    );
    b.close().await.unwrap();
}

/// Three bad reads of an intact fence, no step back: taken as damaged ("entries made before
/// now are misses"): one error counted ("other"), the breaker stays closed, the cleared
/// answer is a miss here and after a restart, and the fence written back is the open's time,
/// after run 1's: it moved forward.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn three_bad_reads_without_a_step_back_move_the_fence_forward() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, true).await;
    tick(&dir, 10);
    let faults_before = dir.fs().faults_injected();
    fence_read_flips_a_bit(&dir, 3);
    let a = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(dir.fs().faults_injected() - faults_before, 3);
    assert_eq!(disk_errors(&a, "other"), 1);
    assert_eq!(a.breaker_state(), BreakerState::Closed);
    assert_eq!(read_src(&a, "k").await, None);
    tick(&dir, 1);
    a.set_bytes("n", b"set in run 2").await.unwrap();
    tick(&dir, 1);
    a.close().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 15));
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(disk_errors(&b, "other"), 0);
    assert_eq!(read_src(&b, "k").await, None);
    assert_eq!(
        read_src(&b, "n").await,
        Some(("set in run 2".to_owned(), Source::Warm))
    );
    b.close().await.unwrap();
}

/// A fence damaged on disk, each way (a flipped bit, empty, one byte short, one byte long,
/// another magic, 24 bytes of garbage), no step back: the open counts one error, serves
/// nothing cleared (run 1's `k` file was left on disk), `close` is `Ok` and leaves a valid
/// fence (the open's time), and the next open reads it cleanly and serves run 2's `set` from
/// the disk.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fence_damaged_on_disk_is_written_again_and_the_next_open_keeps_the_disk() {
    let mut long = answercache::warm::format::encode_fence(RUN1_MS + 6).to_vec();
    long.push(0);
    let mut magic = answercache::warm::format::encode_fence(RUN1_MS + 6).to_vec();
    magic[0] ^= 0x20;
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("flipped", flipped_fence(RUN1_MS + 6)),
        ("empty", Vec::new()),
        (
            "short",
            answercache::warm::format::encode_fence(RUN1_MS + 6)[..23].to_vec(),
        ),
        ("long", long),
        ("magic", magic),
        ("garbage", (0u8..24).map(|i| i.wrapping_mul(37)).collect()),
    ];
    for (what, bytes) in damaged {
        let server = MemoryShared::new();
        let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
        run1(&dir, &server, true).await;
        damage_fence_on_disk(&dir, &bytes);
        tick(&dir, 10);
        let a = open_manual(&dir, &server, |c| c, |b| b).await;
        let seen = (
            disk_errors(&a, "other"),
            a.breaker_state(),
            read_src(&a, "k").await,
        );
        assert_eq!(seen, (1, BreakerState::Closed, None), "{what}");
        tick(&dir, 1);
        a.set_bytes("n", b"set in run 2").await.unwrap();
        tick(&dir, 1);
        a.close().await.unwrap();
        assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 15), "{what}");
        let b = open_manual(&dir, &server, |c| c, |b| b).await;
        let seen = (
            disk_errors(&b, "other"),
            read_src(&b, "k").await,
            read_src(&b, "n").await,
        );
        assert_eq!(
            seen,
            (0, None, Some(("set in run 2".to_owned(), Source::Warm))),
            "{what}"
        );
        b.close().await.unwrap();
    }
}

/// The first fence read returns a flipped bit and the re-read hangs, after a 30 s step back
/// (real time): the open returns within `io_timeout` + 2 s with the fence unknown (the
/// cleared answer is not read from the server), the next reads of the fence find run 1's,
/// and nothing cleared is served, here or after a restart; the fence on disk is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_reread_is_bounded_and_the_fence_is_read_later() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    run1(&dir, &server, false).await;
    dir.clock().set(super::super::r16::RUN2_MS);
    // Rules fire in the order added: the hang skips the first read (flipped by the second
    // rule) and catches the re-read.
    dir.fs().add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::ReadFile])
            .path_contains("/fence")
            .skip(1)
            .times(1),
    );
    fence_read_flips_a_bit(&dir, 1);
    let io_timeout = Duration::from_millis(200);
    let bound = io_timeout + Duration::from_secs(2);
    let started = StdInstant::now();
    let a = open_manual(
        &dir,
        &server,
        |c| c,
        |b| {
            b.io_timeout(io_timeout)
                .open_timeout(Duration::from_millis(200))
                .recovery_interval(Duration::from_millis(300))
                .health_interval(Duration::from_millis(300))
        },
    )
    .await;
    assert!(started.elapsed() <= bound, "{:?}", started.elapsed());
    assert_eq!(dir.fs().faults_injected(), 2);
    let t = StdInstant::now();
    let served = read_src(&a, "k").await;
    assert!(t.elapsed() <= bound, "{:?}", t.elapsed());
    assert_eq!((served, a.stats().shared_hits), (None, 0));
    a.set_bytes("n", b"set in run 2").await.unwrap();
    tick(&dir, 1);
    // Every later read of the fence is intact; the flush reads it (or a read before did).
    let flushed = a.flush().await;
    assert!(flushed.is_ok(), "{flushed:?}");
    assert_eq!(read_src(&a, "k").await, None);
    dir.fs().release_hangs();
    a.close().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 6));
    let b = open_manual(&dir, &server, |c| c, |b| b).await;
    assert_eq!(read_src(&b, "k").await, None);
    assert_eq!(
        read_src(&b, "n").await,
        Some(("set in run 2".to_owned(), Source::Warm))
    );
    b.close().await.unwrap();
}
