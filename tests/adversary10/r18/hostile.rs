//! Hostile disk states met inside `write_fence` only (the fence was read fine at open): its
//! read failing (EIO), a read-only file system (EROFS) on the rename, and a directory planted
//! at the fence path. `clear`/`flush`/`close` must say `NotPersisted` (never `Ok`), `get`
//! must answer without an error and serve nothing cleared, and the fence must land once the
//! disk is back.

use answercache::testing::{Fault, FsOp, Rule, TestDir};
use answercache::Error;

use super::*;

fn failed(r: &Result<(), Error>) -> Option<u64> {
    match r {
        Err(Error::NotPersisted { failed, .. }) => Some(*failed),
        _ => None,
    }
}

/// Guard: the fence read inside the write fails (EIO) while the fence on disk (an older
/// clear's) is intact: `clear` is `NotPersisted { failed: 1 }` and nothing is written over
/// the fence; `k` is a miss; `flush` says `NotPersisted`; once reads work, `flush` writes the
/// clear's fence and returns `Ok`, and a later process does not serve `k`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fence_unreadable_only_inside_the_write_is_never_written_over() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    a.clear().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 1));
    tick(&dir, 10);
    a.set_bytes("k", b"before the second clear").await.unwrap();
    a.flush().await.unwrap();
    tick(&dir, 10);
    fence_unreadable(&dir, None);
    let cleared = a.clear().await;
    let k = a.get_bytes("k").await.map(|v| v.is_some());
    let flushed = a.flush().await;
    let fence_meanwhile = fence_on_disk(&dir);
    dir.fs().clear_rules();
    let flushed_after = a.flush().await;
    let fence_after = fence_on_disk(&dir);
    a.close().await.unwrap();
    let b = open_disk(&dir, |b| b).await;
    let k_later = read(&b, "k").await;
    b.close().await.unwrap();
    assert_eq!(
        (failed(&cleared), k.ok(), failed(&flushed), fence_meanwhile),
        (Some(1), Some(false), Some(1), Some(RUN1_MS + 1))
    );
    assert_eq!(
        (flushed_after.is_ok(), fence_after, k_later),
        (true, Some(RUN1_MS + 21), None)
    );
}

/// Guard: the file system turns read-only (EROFS on every rename) while clearing: `clear`,
/// `flush` and `close` say `NotPersisted`, no temp fence file is left, and a later process
/// (the file system writable again) does not serve what this one's Ok'd earlier clear removed
/// nor what the failed one was meant to clear... only after its own `clear` is `Ok`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_read_only_remount_while_clearing_is_not_persisted() {
    let dir = TestDir::new().fault_fs().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    tick(&dir, 10);
    dir.fs()
        .add_rule(Rule::new(Fault::Errno(30)).ops(&[FsOp::Rename, FsOp::WriteNew]));
    let cleared = a.clear().await;
    let k = read(&a, "k").await;
    let closed = a.close().await;
    let temps = temp_files(&dir);
    let fence = fence_on_disk(&dir);
    dir.fs().clear_rules();
    assert_eq!(
        (
            failed(&cleared).is_some(),
            k,
            failed(&closed).is_some(),
            fence
        ),
        (true, None, true, None)
    );
    assert_eq!(temps, Vec::<String>::new());
    let b = open_disk(&dir, |b| b).await;
    // The clear never reached the disk and said so: a later process may serve `k`; a clear
    // made now is `Ok` and removes it.
    tick(&dir, 10);
    b.clear().await.unwrap();
    assert_eq!(fence_on_disk(&dir), Some(RUN1_MS + 21));
    assert_eq!(read(&b, "k").await, None);
    b.close().await.unwrap();
}

/// Guard: a directory planted at the fence path after the open: the read inside the write
/// sees "something other than a fence file" (damaged), the rename over a directory fails:
/// `clear` and `close` say `NotPersisted`, `get` answers (`k` a miss), no temp file is left;
/// a later process (the directory still there) takes the fence as damaged and serves nothing
/// made before its open.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_directory_at_the_fence_path_is_not_persisted() {
    let dir = TestDir::new().manual_clock(RUN1_MS);
    let a = open_disk(&dir, |b| b).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    let fence_path = answercache::warm::layout::Layout::new(dir.root()).fence_path();
    std::fs::create_dir(&fence_path).unwrap();
    std::fs::write(fence_path.join("inside"), b"x").unwrap();
    tick(&dir, 10);
    let cleared = a.clear().await;
    let k = a.get_bytes("k").await.map(|v| v.is_some());
    let closed = a.close().await;
    let temps = temp_files(&dir);
    tick(&dir, 10);
    let b = open_disk(&dir, |b| b).await;
    let k_later = b.get_bytes("k").await.map(|v| v.is_some());
    let b_cleared = b.clear().await;
    let b_closed = b.close().await;
    assert_eq!(
        (failed(&cleared), k.ok(), failed(&closed), temps),
        (Some(1), Some(false), Some(1), Vec::<String>::new())
    );
    assert_eq!(
        (k_later.ok(), failed(&b_cleared), failed(&b_closed)),
        (Some(false), Some(1), Some(1))
    );
    assert!(fence_path.is_dir());
}
