//! Promise 3 against `clear`: a write-through `set` or `remove` that a `clear` supersedes (its
//! queued operation dropped by the clear, or queued behind a write in flight that the clear
//! lets finish) returns Ok only once what a restart shows is that operation's result or the
//! clear's: never the key's older value. Seen once in a clean-clone CI run of
//! `kill9::write_through_acks_survive_kill_minus_nine_with_concurrent_tasks`: after a kill
//! during an unacknowledged `clear`, a key read an older acknowledged value although a later
//! `set` of it, begun before the clear and acknowledged just after the clear began, had been
//! acknowledged. The `clear` told the waiters of the operations it dropped "written" at once,
//! before its fence was on disk: a kill in between left the older file, not yet covered by
//! any fence, as what a restart serves.
//!
//! Each test stops the clear's fence write (a `Hang`) and looks at the directory the way a
//! process started after a `kill -9` at that instant would.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use answercache::testing::{Fault, FaultFs, FsOp, Rule};
use answercache::{Result, TieredCache};

use crate::helpers::*;

type Op<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// Polls `f` once, without yielding to the runtime's other tasks.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

/// A write-through cache over `fs` whose disk calls never time out in these tests.
async fn open(
    root: &std::path::Path,
    clock: &answercache::ManualClock,
    fs: &Arc<FaultFs>,
) -> TieredCache {
    write_through(builder(root, clock).fs(fs.clone()))
        .io_timeout(Duration::from_secs(60))
        .failure_threshold(100)
        .memory_only_after(1000)
        .build()
        .await
        .unwrap()
}

/// Lets every hung call go and stops hanging new ones when a test ends, passed or failed, so
/// that the runtime's blocking pool can shut down.
struct Unhang(Arc<FaultFs>);

impl Drop for Unhang {
    fn drop(&mut self) {
        self.0.clear_rules();
    }
}

fn hang_fence(fs: &FaultFs) {
    fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::Rename])
            .path_contains("fence"),
    );
}

/// The operation is committed to the queue and the `clear` runs before the writer task takes
/// it (the runtime has one thread: the writer cannot run between the two polls). The clear
/// drops the operation; its write-through caller must not hear Ok while the key's older file
/// is what a restart would serve. The only write slot (`write_concurrency(1)`) is held by a
/// hung write of another key, so that the operation is queued for the writer task: with a
/// free slot its caller would start the write itself, in flight before the clear began.
#[tokio::test]
async fn an_operation_a_clear_drops_is_not_acknowledged_before_the_fence_is_on_disk() {
    let mut problems = Vec::new();
    for remove in [false, true] {
        let (_dir, root, clock) = scenario();
        let fs = Arc::new(FaultFs::std());
        let _unhang = Unhang(fs.clone());
        let cache = write_through(builder(&root, &clock).fs(fs.clone()))
            .io_timeout(Duration::from_secs(60))
            .failure_threshold(100)
            .memory_only_after(1000)
            .write_concurrency(1)
            .build()
            .await
            .unwrap();
        cache.set_bytes("k", b"older".to_vec()).await.unwrap();
        clock.advance(Duration::from_millis(1));
        fs.add_rule(
            Rule::new(Fault::Hang)
                .ops(&[FsOp::WriteNew])
                .path_contains(&hex_of(b"blocker")[..16])
                .times(1),
        );
        let mut blocker: Op<'_> = Box::pin(cache.set_bytes("blocker", b"b".to_vec()));
        assert!(poll_once(&mut blocker).await.is_pending());
        assert!(
            wait_until(Duration::from_secs(10), || fs.faults_injected() >= 1).await,
            "control: the other key's write holds the slot, hung"
        );
        hang_fence(&fs);
        let mut op: Op<'_> = if remove {
            Box::pin(async { cache.remove("k").await.map(|_| ()) })
        } else {
            Box::pin(cache.set_bytes("k", b"newer".to_vec()))
        };
        assert!(poll_once(&mut op).await.is_pending(), "queued, waiting");
        let mut clear = Box::pin(cache.clear());
        assert!(
            poll_once(&mut clear).await.is_pending(),
            "the clear waits for the write in flight"
        );
        // The other key's write lands; the clear goes on to its fence write, which hangs.
        fs.release_hangs();
        let mut at_fence = false;
        for _ in 0..1000 {
            assert!(poll_once(&mut clear).await.is_pending(), "the fence hangs");
            if fs.faults_injected() >= 2 {
                at_fence = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(at_fence, "control: the clear reached its fence write");
        blocker.await.expect("the other key's set");
        let early = tokio::time::timeout(Duration::from_millis(300), &mut op).await;
        if let Ok(res) = &early {
            assert!(res.is_ok(), "a healthy disk: {res:?}");
            // A kill -9 now: the caller was told Ok.
            let seen = read_after_restart(&root, &clock, b"k").await;
            let allowed: &[Option<&[u8]>] = if remove {
                &[None]
            } else {
                &[None, Some(b"newer")]
            };
            if !allowed.contains(&seen.as_deref()) {
                problems.push(format!(
                    "promise 3 (remove: {remove}): the write-through operation returned Ok \
                     while the clear's fence was not on disk, and a restart then reads {} (the \
                     value the acknowledged operation replaced)",
                    short(&seen)
                ));
            }
        }
        fs.release_hangs();
        clear.await.expect("the clear, its fence released");
        if early.is_err() {
            op.await.expect("acknowledged once the fence is on disk");
        }
        cache.close().await.unwrap();
        assert_eq!(read_after_restart(&root, &clock, b"k").await, None);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The newer `set` waits behind an older write of the key in flight when the `clear` runs: the
/// clear drops the newer one and lets the older one finish. The writer deletes that older
/// entry once it lands (the clear began after it was made); here that delete fails once (EIO).
/// The older write landing must not acknowledge the newer `set` (it did, as "a newer operation
/// of the key reached the disk") while the older value is what a restart serves.
#[tokio::test]
async fn an_operation_queued_behind_a_write_in_flight_is_not_acknowledged_by_that_write() {
    let (_dir, root, clock) = scenario();
    let fs = Arc::new(FaultFs::std());
    let _unhang = Unhang(fs.clone());
    let cache = open(&root, &clock, &fs).await;
    cache.set_bytes("k", b"first".to_vec()).await.unwrap();
    clock.advance(Duration::from_millis(1));
    fs.add_rule(
        Rule::new(Fault::Hang)
            .ops(&[FsOp::WriteNew])
            .path_contains(&hex_of(b"k")[..16])
            .times(1),
    );
    let mut older: Op<'_> = Box::pin(cache.set_bytes("k", b"older".to_vec()));
    assert!(poll_once(&mut older).await.is_pending());
    assert!(
        wait_until(Duration::from_secs(10), || fs.faults_injected() >= 1).await,
        "control: the older write is in flight, hung"
    );
    fs.add_rule(
        Rule::new(Fault::Errno(EIO))
            .ops(&[FsOp::RemoveFile])
            .path_contains(hex_of(b"k"))
            .times(1),
    );
    let mut newer: Op<'_> = Box::pin(cache.set_bytes("k", b"newer".to_vec()));
    assert!(poll_once(&mut newer).await.is_pending(), "queued behind it");
    hang_fence(&fs);
    let mut clear = Box::pin(cache.clear());
    assert!(
        poll_once(&mut clear).await.is_pending(),
        "the clear waits for the write in flight"
    );
    fs.release_hangs(); // the older write lands
    let early = tokio::time::timeout(Duration::from_millis(300), &mut newer).await;
    if let Ok(res) = &early {
        assert!(res.is_ok(), "a healthy disk: {res:?}");
        let seen = read_after_restart(&root, &clock, b"k").await;
        assert!(
            seen.is_none() || seen.as_deref() == Some(b"newer"),
            "promise 3: the newer write-through set returned Ok when the older write landed \
             (the clear had dropped it; its fence is not on disk), and a restart then reads {}",
            short(&seen)
        );
    }
    assert!(poll_once(&mut clear).await.is_pending());
    // The faults so far: the older write's hang, the failed delete; then the fence's hang.
    assert!(
        wait_until(Duration::from_secs(10), || fs.faults_injected() >= 3).await,
        "control: the clear reached its fence write"
    );
    fs.release_hangs();
    clear.await.expect("the clear, its fence released");
    if early.is_err() {
        newer.await.expect("acknowledged once the fence is on disk");
    }
    older.await.expect("the older set");
    cache.close().await.unwrap();
    assert_eq!(read_after_restart(&root, &clock, b"k").await, None);
}
