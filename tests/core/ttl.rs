//! Expiry on both tiers, with a clock the test moves by hand: an entry is served up to the
//! millisecond before its expiry and never at or after it, from memory or from disk; expired
//! files are deleted when read, including files written by a previous process and read after
//! a restart; the periodic sweep deletes expired files nobody reads (on tokio's paused clock,
//! so its interval passes without real waiting), also for entries it learns about only from
//! the startup scan; entries not yet expired are left alone throughout.

use std::time::Duration;

use crate::support::{open, OnDisk, Reads};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_entries_expire_exactly_at_their_ttl() {
    let h = open(|b| b).await;
    h.set_with_ttl("a", "ten seconds", 10 * SEC).await.unwrap();
    h.set_with_ttl("b", "twenty seconds", 20 * SEC)
        .await
        .unwrap();
    h.set("c", "forever").await.unwrap();
    h.flush().await.unwrap();
    assert!(h.on_disk("a") && h.on_disk("b") && h.on_disk("c"));

    h.advance(10 * SEC - MS);
    for k in ["a", "b", "c"] {
        assert!(
            h.get::<String>(k).await.unwrap().is_some(),
            "{k} at 9.999 s"
        );
    }
    let s = h.stats();
    assert_eq!((s.hot_hits, s.hot_expirations, s.misses), (3, 0, 0));

    h.advance(MS);
    assert_eq!(h.get::<String>("a").await.unwrap(), None, "a at 10 s");
    assert_eq!(
        h.get::<String>("b").await.unwrap().as_deref(),
        Some("twenty seconds")
    );
    assert_eq!(
        h.get::<String>("c").await.unwrap().as_deref(),
        Some("forever")
    );
    let s = h.stats();
    assert_eq!((s.hot_hits, s.hot_expirations, s.misses), (5, 1, 1));
    // The read went on to the disk copy, found it expired too, and deleted it.
    assert_eq!(s.warm_expirations, 1);
    assert!(!h.on_disk("a"));
    assert_eq!((s.hot_entries, s.warm_entries), (2, 2));

    h.advance(10 * SEC);
    assert_eq!(h.get::<String>("b").await.unwrap(), None, "b at 20 s");
    assert_eq!(
        h.get::<String>("c").await.unwrap().as_deref(),
        Some("forever")
    );
    let s = h.stats();
    assert_eq!((s.hot_expirations, s.warm_expirations, s.misses), (2, 2, 2));
    assert!(!h.on_disk("b") && h.on_disk("c"));
    h.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ttl_applies_to_plain_sets_only() {
    let h = open(|b| b.default_ttl(MIN)).await;
    h.set("plain", &1u32).await.unwrap();
    h.set_bytes("raw", b"1").await.unwrap();
    h.set_with_ttl("explicit", &2u32, HOUR).await.unwrap();
    h.advance(MIN);
    assert_eq!(h.get::<u32>("plain").await.unwrap(), None);
    assert_eq!(h.get_bytes("raw").await.unwrap(), None);
    assert_eq!(h.get::<u32>("explicit").await.unwrap(), Some(2));
    assert_eq!(h.stats().hot_expirations, 2);
    h.close().await.unwrap();
}

/// Entries written by one process, expired while the cache was closed, read by the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_expire_on_disk_are_misses_after_a_restart() {
    let mut h = open(|b| b).await;
    let short = ["s1", "s2", "s3"];
    let long = ["l1", "l2"];
    for k in short {
        h.set_with_ttl(k, k, MIN).await.unwrap();
    }
    for k in long {
        h.set_with_ttl(k, k, HOUR).await.unwrap();
    }
    h.set("forever", "forever").await.unwrap();
    h.reopen().await;

    h.advance(2 * MIN);
    let before = h.stats();
    for k in short {
        assert_eq!(
            h.get::<String>(k).await.unwrap(),
            None,
            "{k} expired on disk"
        );
        assert!(!h.on_disk(k), "{k}: expired file deleted on read");
    }
    for k in long.into_iter().chain(["forever"]) {
        assert_eq!(
            h.get::<String>(k).await.unwrap().as_deref(),
            Some(k),
            "{k} still valid"
        );
        assert!(h.on_disk(k));
    }
    let s = h.stats();
    assert_eq!(
        Reads::between(&before, &s),
        Reads {
            warm_hits: 3,
            misses: 3,
            ..Reads::default()
        }
    );
    assert_eq!((s.warm_expirations, s.hot_expirations), (3, 0));

    // The expiry persisted with the entry: promoted copies expire in memory on time, and the
    // files a restart later.
    h.advance(HOUR - MIN);
    for k in long {
        assert_eq!(h.get::<String>(k).await.unwrap(), None, "{k} at one hour");
    }
    let s = h.stats();
    assert_eq!((s.hot_expirations, s.warm_expirations), (2, 5));
    h.reopen().await;
    assert_eq!(
        h.get::<String>("forever").await.unwrap().as_deref(),
        Some("forever")
    );
    assert_eq!(h.entry_names().len(), 1);
    h.close().await.unwrap();
}

/// The sweep deletes expired files that no read touches. Tokio's clock is paused: sleeping
/// past `sweep_interval` runs the sweep at once.
#[tokio::test(start_paused = true)]
async fn the_sweep_deletes_expired_files_nobody_reads() {
    let h = open(|b| b.sweep_interval(MIN)).await;
    let doomed = ["d1", "d2", "d3", "d4"];
    for k in doomed {
        h.set_with_ttl(k, k, 30 * SEC).await.unwrap();
    }
    h.set_with_ttl("later", "later", 10 * MIN).await.unwrap();
    h.set("forever", "forever").await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.entry_names().len(), 6);

    h.advance(30 * SEC);
    tokio::time::sleep(MIN + SEC).await;
    for k in doomed {
        assert!(!h.on_disk(k), "{k}: swept");
    }
    assert!(h.on_disk("later") && h.on_disk("forever"));
    let s = h.stats();
    assert_eq!((s.warm_expirations, s.warm_entries), (4, 2));
    // The hot copies expire on their own when read; the disk has nothing left to delete.
    for k in doomed {
        assert_eq!(h.get::<String>(k).await.unwrap(), None);
    }
    let s = h.stats();
    assert_eq!((s.hot_expirations, s.warm_expirations, s.misses), (4, 4, 4));

    // A sweep with nothing expired deletes nothing.
    tokio::time::sleep(MIN).await;
    assert_eq!(h.stats().warm_expirations, 4);
    assert_eq!(h.entry_names().len(), 2);
    h.close().await.unwrap();
}

/// After a restart the index knows entry files only from the startup scan, without their
/// expiry: the sweep must read their headers and delete the expired ones.
#[tokio::test(start_paused = true)]
async fn the_sweep_deletes_expired_files_of_a_previous_process() {
    let mut h = open(|b| b.sweep_interval(MIN)).await;
    for k in ["x1", "x2", "x3"] {
        h.set_with_ttl(k, k, 30 * SEC).await.unwrap();
    }
    h.set_with_ttl("y", "y", HOUR).await.unwrap();
    h.set("z", "z").await.unwrap();
    h.reopen().await;
    h.advance(30 * SEC);
    tokio::time::sleep(MIN + SEC).await;
    let s = h.stats();
    assert!(s.warm_index_complete);
    assert_eq!((s.warm_expirations, s.warm_entries), (3, 2));
    assert_eq!(
        h.entry_names(),
        ["y", "z"]
            .iter()
            .map(|k| crate::support::hex_of(k.as_bytes()))
            .collect()
    );
    assert_eq!((s.warm_hits, s.misses), (0, 0), "no read was involved");
    h.close().await.unwrap();
}
