//! The E1 rule with a clock that does not step back (tokio's paused clock). Written against
//! the first E1 fix (entries created before the open missed, those created since served);
//! since G1's fix (a clock stepped back dates entries made since the open before an earlier
//! clear's fence) nothing is read from the shared tier while the fence is unknown, and these
//! guards assert that, and what is served once the disk heals and after restarts. Run 1 on
//! each replica's own directory: `set k`, shared, `clear` 5 ms later, `close` `Ok`.

use std::time::Duration;

use answercache::testing::{Fault, MemoryShared, Rule, TestDir};
use answercache::Source;

use super::*;

/// Run 1 (see the module docs).
async fn run1(dir: &TestDir, server: &MemoryShared) {
    let a = open_plain(dir, server).await;
    a.set_bytes("k", b"before the clear").await.unwrap();
    a.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.clear().await.unwrap();
    a.close().await.unwrap();
    assert_eq!(
        crate::r11::held(server, b"k"),
        Some("before the clear".to_owned())
    );
}

/// A value another replica sets after this replica opened (fence unreadable) is not served
/// while the fence is unknown (G1: creation times cannot prove it came after an earlier
/// run's clear); once the disk heals it is served, promoted, and written to the disk with its
/// own value: after a restart with the server emptied this replica serves exactly it from
/// its disk; the cleared answer never comes back.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_answer_set_elsewhere_after_the_open_is_served_once_the_fence_is_read() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    run1(&dir, &server).await;
    fence_unreadable(&dir, None);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let a = open_plain(&dir, &server).await;
    assert_eq!(read(&a, "k").await, None);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let b = crate::mem::replica(&server).await;
    b.set_bytes("k", b"after the open").await.unwrap();
    b.flush().await.unwrap();
    // The fence still unreadable: the server is not asked.
    assert_eq!(read_src(&a, "k").await, None);
    assert_eq!((a.stats().shared_hits, a.stats().shared_misses), (0, 0));
    dir.fs().clear_rules();
    assert_eq!(
        read_src(&a, "k").await,
        Some(("after the open".to_owned(), Source::Shared))
    );
    a.flush().await.unwrap();
    a.close().await.unwrap();
    assert_eq!(
        on_disk(&dir, b"k").map(|(v, _)| v),
        Some("after the open".to_owned())
    );
    server.delete(&entry_key(b"k"));
    let a = open_plain(&dir, &server).await;
    assert_eq!(
        read_src(&a, "k").await,
        Some(("after the open".to_owned(), Source::Warm))
    );
    a.close().await.unwrap();
}

/// A disk failing at open (every call EIO: memory-only from the start, the fence never
/// read): the cleared answer is a miss for the whole life of the process, and so is an
/// answer set elsewhere since the open (the server is not read while the fence is unknown). Restarted on a healthy disk, the cleared answer is
/// still hidden (the fence of run 1), the other served from the server.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn memory_only_from_the_start_never_serves_the_cleared_answer() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    run1(&dir, &server).await;
    dir.fs().add_rule(Rule::new(Fault::Errno(5)));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let a = open_plain(&dir, &server).await;
    assert_eq!(read(&a, "k").await, None);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let b = crate::mem::replica(&server).await;
    b.set_bytes("k2", b"set elsewhere").await.unwrap();
    b.flush().await.unwrap();
    // Long after: still hidden, whatever the breaker and the health checks did meanwhile;
    // the fence never read, nothing is read from the server (G1).
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(read(&a, "k").await, None);
    assert_eq!(read_src(&a, "k2").await, None);
    assert_eq!(a.stats().shared_hits, 0);
    let _ = a.close().await;
    dir.fs().clear_rules();
    let a = open_plain(&dir, &server).await;
    assert_eq!(read(&a, "k").await, None);
    assert_eq!(
        read_src(&a, "k2").await,
        Some(("set elsewhere".to_owned(), Source::Shared))
    );
    a.close().await.unwrap();
}

/// A `clear` made while the fence is unknown (no step back): it covers what was served
/// since the open and what came before it, in this process and after a restart on a healthy
/// disk; the fence on disk moves forward, never back; other replicas still see both answers
/// (`clear` stays local).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clear_while_the_fence_is_unknown_covers_everything_before_it() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    run1(&dir, &server).await;
    let fence1 = fence_on_disk(&dir).unwrap();
    fence_unreadable(&dir, Some(1));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let a = open_plain(&dir, &server).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let b = crate::mem::replica(&server).await;
    b.set_bytes("k2", b"set elsewhere").await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(read(&a, "k2").await, Some("set elsewhere".to_owned()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    a.clear().await.unwrap();
    assert_eq!((read(&a, "k").await, read(&a, "k2").await), (None, None));
    a.close().await.unwrap();
    let fence2 = fence_on_disk(&dir).unwrap();
    assert_eq!(fence2, now_ms() + 1);
    assert!(fence2 > fence1);
    let a = open_plain(&dir, &server).await;
    assert_eq!((read(&a, "k").await, read(&a, "k2").await), (None, None));
    assert_eq!((a.stats().shared_hits, a.stats().shared_misses), (0, 2));
    a.close().await.unwrap();
    let c = crate::mem::replica(&server).await;
    assert_eq!(
        (read(&c, "k").await, read(&c, "k2").await),
        (
            Some("before the clear".to_owned()),
            Some("set elsewhere".to_owned())
        )
    );
}

/// G3's fix, the fence staying unreadable (written with the fix, not by the reviewer): a
/// `clear` cannot read the fence on disk, so it does not write its own over it (it could be
/// lower, after a clock step back) and returns `NotPersisted`; this process still serves
/// nothing from before it. Once the disk heals, `flush` reads the fence and writes the larger
/// one: `Ok`, the fence on disk moves forward, and a restart serves nothing cleared.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clear_that_cannot_read_the_fence_is_not_persisted_until_it_can() {
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    run1(&dir, &server).await;
    let fence1 = fence_on_disk(&dir).unwrap();
    fence_unreadable(&dir, None);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let a = open_plain(&dir, &server).await;
    a.set_bytes("k3", b"set before the second clear")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let expected = now_ms() + 1;
    let cleared = a.clear().await;
    assert!(
        matches!(cleared, Err(answercache::Error::NotPersisted { .. })),
        "{cleared:?}"
    );
    assert_eq!(fence_on_disk(&dir), Some(fence1), "not written over");
    assert_eq!((read(&a, "k").await, read(&a, "k3").await), (None, None));
    dir.fs().clear_rules();
    // The failed fence reads opened the disk breaker: past its open timeout, a probe.
    tokio::time::sleep(Duration::from_secs(60)).await;
    a.flush().await.unwrap();
    let fence2 = fence_on_disk(&dir).unwrap();
    assert_eq!(fence2, expected, "the second clear's fence");
    assert!(fence2 > fence1);
    a.close().await.unwrap();
    let a = open_plain(&dir, &server).await;
    assert_eq!((read(&a, "k").await, read(&a, "k3").await), (None, None));
    a.close().await.unwrap();
}
