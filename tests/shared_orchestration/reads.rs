//! The read path: hot → queue → warm → shared → loader. A shared hit is verified like a disk
//! read, promoted with the header's expiry (never a fresh TTL) and written to the warm tier
//! without being shared again; hostile values are a miss, deleted and counted by reason; a
//! local removal or clear wins over an older shared copy.

use answercache::testing::{MemoryShared, SharedOpKind};
use answercache::warm::format::{reseal, HEADER_LEN};
use answercache::{Corruption, Source};

use crate::support::*;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn another_replicas_answer_is_a_shared_hit_promoted_with_its_own_expiry() {
    let server = MemoryShared::new();
    let a = replica(&server).await;
    let b = replica(&server).await;
    a.set_bytes_with_ttl("q", b"Paris", secs(60)).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(server.ttl(&entry_key(b"q")), Some(Some(secs(60))));
    assert_eq!(a.stats().shared_writes_ok, 1);

    let got = b.get_bytes_answer("q").await.unwrap().unwrap();
    assert_eq!((&*got.value, got.source), (&b"Paris"[..], Source::Shared));
    let again = b.get_bytes_answer("q").await.unwrap().unwrap();
    assert_eq!(again.source, Source::Hot);
    b.flush().await.unwrap();
    let s = b.stats();
    assert_eq!(
        (s.shared_hits, s.shared_misses, s.hot_hits, s.misses),
        (1, 0, 1, 0)
    );
    // The warm copy is B's own, not shared again: B wrote nothing to the server.
    assert_eq!((s.writes_ok, s.shared_writes_ok), (1, 0));
    assert_eq!(server.calls(SharedOpKind::Write), 1);
    // The promoted copy keeps A's expiry: 60 s after A's set it is gone from B too.
    tokio::time::advance(secs(60)).await;
    assert_eq!(b.get_bytes("q").await.unwrap(), None);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shared_hit_saves_its_cost_and_is_consulted_after_the_warm_tier() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let planted = entry(b"k", b"v", now_ms(), 0, 7);
    server.plant(&entry_key(b"k"), &planted, None);
    assert_eq!(b.get_bytes("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    let s = b.stats();
    let len = planted.len() as u64;
    assert_eq!(
        (s.shared_hits, s.cost_saved, s.shared_bytes_in),
        (1, 7, len)
    );
    // A key the warm tier holds never reaches the server.
    b.set_bytes("local", b"x").await.unwrap();
    b.flush().await.unwrap();
    let gets = server.calls(SharedOpKind::Get);
    assert_eq!(
        b.get_bytes("local").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );
    assert_eq!(server.calls(SharedOpKind::Get), gets);
    // A miss everywhere asks the server once, and counts one shared miss.
    assert_eq!(b.get_bytes("absent").await.unwrap(), None);
    assert_eq!(server.calls(SharedOpKind::Get), gets + 1);
    let s = b.stats();
    assert_eq!((s.shared_misses, s.misses), (1, 1));
}

/// Each hostile value: its bytes and the reason it must be counted under.
fn hostile(key: &[u8]) -> Vec<(&'static str, Vec<u8>, Corruption)> {
    let good = entry(key, b"the answer", now_ms(), 0, 0);
    let mut wrong_magic = good.clone();
    wrong_magic[0] ^= 0xff;
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    // Declares 3 bytes but inflates to 10: checksum-valid, stopped by the inflate limit.
    let mut bomb = good.clone();
    bomb[40..48].copy_from_slice(&3u64.to_le_bytes());
    reseal(&mut bomb);
    // A 4 GiB value declared: refused before any allocation.
    let mut huge_value = good.clone();
    huge_value[40..48].copy_from_slice(&(4u64 << 30).to_le_bytes());
    reseal(&mut huge_value);
    let mut huge_key = good.clone();
    huge_key[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut huge_payload = good.clone();
    huge_payload[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    vec![
        (
            "garbage",
            b"not an entry at all".to_vec(),
            Corruption::Magic,
        ),
        (
            "truncated",
            good[..good.len() - 5].to_vec(),
            Corruption::Truncated,
        ),
        (
            "header only",
            good[..HEADER_LEN - 1].to_vec(),
            Corruption::Truncated,
        ),
        ("wrong magic", wrong_magic, Corruption::Magic),
        (
            "wrong stored key",
            entry(b"another key", b"the answer", now_ms(), 0, 0),
            Corruption::KeyMismatch,
        ),
        ("flipped checksum byte", flipped, Corruption::Checksum),
        ("uncompressed_len bomb", bomb, Corruption::Bomb),
        ("oversize value length", huge_value, Corruption::Oversize),
        ("oversize key length", huge_key, Corruption::Oversize),
        (
            "oversize payload length",
            huge_payload,
            Corruption::Oversize,
        ),
        (
            "over max_entry_bytes",
            vec![0u8; 4097],
            Corruption::Oversize,
        ),
    ]
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_hostile_value_is_a_miss_deleted_and_counted_by_reason() {
    let server = MemoryShared::new();
    let b = replica_with(&server, |c| c.max_entry_bytes(4096), |b| b).await;
    let cases = hostile(b"k");
    let n = cases.len() as u64;
    for (name, bytes, reason) in cases {
        let before = b
            .stats()
            .shared_corrupted_by_reason
            .get(reason.name())
            .copied();
        server.plant(&entry_key(b"k"), &bytes, None);
        assert_eq!(b.get_bytes("k").await.unwrap(), None, "{name}");
        settle().await;
        assert_eq!(server.raw(&entry_key(b"k")), None, "{name}: deleted");
        let after = b.stats().shared_corrupted_by_reason[reason.name()];
        assert_eq!(after, before.unwrap_or(0) + 1, "{name}");
    }
    let s = b.stats();
    assert_eq!((s.shared_corrupted, s.shared_misses, s.misses), (n, n, n));
    assert_eq!((s.shared_hits, s.corrupted, s.shared_errors), (0, 0, 0));
    // Corruption is a data problem, not the server's: the breaker stays closed.
    assert_eq!(b.shared_state(), Some(answercache::BreakerState::Closed));
    assert_eq!(server.calls(SharedOpKind::Del), n);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_a_mac_key_a_planted_valid_entry_is_a_forgery() {
    let server = MemoryShared::new();
    let key = [7u8; 32];
    let a = replica_with(&server, |c| c.mac_key(key), |b| b).await;
    let b = replica_with(&server, |c| c.mac_key(key), |b| b).await;
    a.set_bytes("q", b"signed").await.unwrap();
    a.flush().await.unwrap();
    // The stored value is the entry file followed by its 32-byte MAC.
    let stored = server.raw(&entry_key(b"q")).unwrap();
    let file_len = stored.len() - 32;
    assert_eq!(&stored[..8], b"TIERCACH");
    assert_eq!(
        b.get_bytes("q").await.unwrap().as_deref(),
        Some(&b"signed"[..])
    );
    // Someone with write access but without the key plants a checksum-valid entry.
    server.plant(
        &entry_key(b"p"),
        &entry(b"p", b"forged", now_ms(), 0, 0),
        None,
    );
    assert_eq!(b.get_bytes("p").await.unwrap(), None);
    settle().await;
    assert_eq!(server.raw(&entry_key(b"p")), None);
    let s = b.stats();
    assert_eq!(s.shared_corrupted_by_reason["checksum"], 1);
    assert!(file_len > 88);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_local_remove_wins_over_an_older_shared_copy() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    b.set_bytes("k", b"mine").await.unwrap();
    b.flush().await.unwrap();
    // The removal's DEL cannot be delivered.
    server.fail(
        Some(SharedOpKind::Write),
        answercache::testing::SharedFault::Io,
        Some(1),
    );
    assert!(b.remove("k").await.unwrap());
    b.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"k")).is_some());
    // The DEL is kept (not counted failed), and sent again after `open_timeout`.
    let s = b.stats();
    assert_eq!(
        (s.shared_writes_failed, s.shared_queue_entries),
        (0, 1),
        "the failed DEL is kept"
    );
    let gets = server.calls(SharedOpKind::Get);
    assert_eq!(b.get_bytes("k").await.unwrap(), None);
    assert_eq!(server.calls(SharedOpKind::Get), gets, "not even asked");
    tokio::time::advance(answercache::shared::DEFAULT_SHARED_OPEN_TIMEOUT).await;
    settle().await;
    assert!(
        server.raw(&entry_key(b"k")).is_none(),
        "the kept DEL was sent"
    );
    assert_eq!(b.stats().shared_queue_entries, 0);
    // A later set of the key makes it shareable again.
    b.set_bytes("k", b"again").await.unwrap();
    b.flush().await.unwrap();
    assert!(server.raw(&entry_key(b"k")).is_some());
    let s = b.stats();
    assert_eq!((s.shared_writes_ok, s.shared_writes_failed), (3, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_newer_set_queued_supersedes_a_kept_del() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    b.set_bytes("k", b"old").await.unwrap();
    b.flush().await.unwrap();
    server.fail(
        Some(SharedOpKind::Write),
        answercache::testing::SharedFault::Io,
        Some(1),
    );
    assert!(b.remove("k").await.unwrap());
    b.flush().await.unwrap();
    assert_eq!(b.stats().shared_queue_entries, 1);
    // Queued while Closed, after the failed DEL: the set wins; the kept DEL goes first in the
    // same pipeline (so a set that is then refused never leaves the removed value there).
    b.set_bytes("k", b"new").await.unwrap();
    b.flush().await.unwrap();
    tokio::time::advance(answercache::shared::DEFAULT_SHARED_OPEN_TIMEOUT).await;
    settle().await;
    let c = replica(&server).await;
    assert_eq!(
        c.get_bytes("k").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
    let s = b.stats();
    // "old", the DEL, "new".
    assert_eq!((s.shared_writes_ok, s.shared_queue_entries), (3, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_local_clear_wins_over_shared_values_created_before_it() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let before = now_ms();
    server.plant(&entry_key(b"old"), &entry(b"old", b"v", before, 0, 0), None);
    tokio::time::advance(secs(1)).await;
    b.clear().await.unwrap();
    assert_eq!(b.get_bytes("old").await.unwrap(), None);
    let s = b.stats();
    assert_eq!(
        (s.shared_hits, s.shared_misses, s.shared_corrupted),
        (0, 1, 0)
    );
    // One created after the clear is served.
    tokio::time::advance(secs(1)).await;
    server.plant(
        &entry_key(b"new"),
        &entry(b"new", b"v", now_ms(), 0, 0),
        None,
    );
    assert_eq!(
        b.get_bytes("new").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_entry_dated_more_than_a_minute_ahead_is_a_miss_not_deleted() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let ahead = now_ms() + 61_000;
    server.plant(&entry_key(b"far"), &entry(b"far", b"v", ahead, 0, 0), None);
    let near = now_ms() + 60_000;
    server.plant(&entry_key(b"near"), &entry(b"near", b"v", near, 0, 0), None);
    assert_eq!(b.get_bytes("far").await.unwrap(), None);
    assert!(server.raw(&entry_key(b"far")).is_some(), "not deleted");
    // Within the tolerance: served.
    assert_eq!(
        b.get_bytes("near").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    let s = b.stats();
    assert_eq!(
        (s.shared_hits, s.shared_misses, s.shared_corrupted),
        (1, 1, 0)
    );
    // Once this replica's clock is within the tolerance of its date, it is an entry like
    // any other.
    tokio::time::advance(secs(1)).await;
    assert_eq!(
        b.get_bytes("far").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_expired_shared_entry_is_a_miss() {
    let server = MemoryShared::new();
    let b = replica(&server).await;
    let now = now_ms();
    server.plant(&entry_key(b"k"), &entry(b"k", b"v", now - 10, now, 0), None);
    assert_eq!(b.get_bytes("k").await.unwrap(), None);
    let s = b.stats();
    assert_eq!((s.shared_hits, s.shared_misses), (0, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_shared_tier_is_consulted_while_the_disk_tier_is_memory_only() {
    use answercache::testing::{Fault, Rule, TestDir};
    let server = MemoryShared::new();
    let dir = TestDir::new().fault_fs();
    let cache = dir
        .builder()
        .clock(clock())
        .memory_only_after(1)
        .shared(server.config().prefix(PREFIX))
        .build()
        .await
        .unwrap();
    settle().await;
    // Every disk call fails from now on: the first write sends the cache memory-only.
    dir.fs().add_rule(Rule::new(Fault::Errno(5)));
    cache.set_bytes("local", b"x").await.unwrap();
    assert!(
        answercache::testing::wait_until(secs(5), || cache.mode() == answercache::Mode::MemoryOnly)
            .await
    );
    server.plant(&entry_key(b"k"), &entry(b"k", b"v", now_ms(), 0, 3), None);
    let got = cache.get_bytes_answer("k").await.unwrap().unwrap();
    assert_eq!((&*got.value, got.source), (&b"v"[..], Source::Shared));
    let s = cache.stats();
    assert_eq!((s.shared_hits, s.cost_saved), (1, 3));
}
