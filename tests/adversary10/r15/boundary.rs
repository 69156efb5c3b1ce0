//! E3's fix at its boundaries: values of 4095 / 4096 / 4097 bytes (the cell is shared only
//! over `STORED_MAX_BYTES`), `compression_level` 0 / default / 9, MAC keys, a long key, and a
//! value whose shared file is exactly `SharedConfig::max_entry_bytes` (or one byte over).
//! Every answer must come back byte for byte: from the server on a fresh replica, from that
//! replica's disk after a restart with the server emptied, and from the writer's disk.

use answercache::testing::{MemoryShared, TestDir};
use answercache::Source;

use super::*;
use crate::r11::incompressible;

const MAC: [u8; 32] = [7u8; 32];

/// A compressible value of exactly `len` bytes.
fn prose(len: usize) -> Vec<u8> {
    b"a compressible answer, said again. "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// `key`'s value and tier as `cache` serves it.
async fn served(cache: &TieredCache, key: &[u8]) -> Option<(Vec<u8>, Source)> {
    cache
        .get_bytes_answer(key)
        .await
        .unwrap()
        .map(|a| (a.value.to_vec(), a.source))
}

/// One writer, one reader (fresh directories), the given level and MAC key.
async fn round_trip(key: &[u8], value: &[u8], level: u32, mac: Option<[u8; 32]>) {
    let what = format!(
        "key {} B, value {} B, level {level}, mac {}",
        key.len(),
        value.len(),
        mac.is_some()
    );
    let server = MemoryShared::new();
    let edit = |c: SharedConfig| match mac {
        Some(k) => c.mac_key(k),
        None => c,
    };
    let build = |b: Builder| b.compression_level(level);
    let (dir_a, dir_b) = (TestDir::new(), TestDir::new());
    let a = open_on(&dir_a, &server, edit, build).await;
    a.set_bytes(key, value).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(shared_writes(&a), (1, 0, 0), "{what}");
    assert_eq!(a.stats().writes_ok, 1, "{what}");
    let raw = server.raw(&entry_key(key)).unwrap();
    let file = &raw[..raw.len() - if mac.is_some() { 32 } else { 0 }];
    let a_file = disk_file(&dir_a, key).unwrap();
    if value.len() > 4096 || level == 0 {
        // Both tiers encode alike: one file.
        assert_eq!(
            &a_file[..],
            file,
            "{what}: the writer's disk holds the server's file"
        );
    }
    let b = open_on(&dir_b, &server, edit, build).await;
    assert_eq!(
        served(&b, key).await,
        Some((value.to_vec(), Source::Shared)),
        "{what}"
    );
    b.flush().await.unwrap();
    b.close().await.unwrap();
    if value.len() > 4096 {
        // Promoted as the bytes read, tag cut off.
        assert_eq!(disk_file(&dir_b, key).as_deref(), Some(file), "{what}");
    }
    server.delete(&entry_key(key));
    let b = open_on(&dir_b, &server, edit, build).await;
    assert_eq!(
        served(&b, key).await,
        Some((value.to_vec(), Source::Warm)),
        "{what}: the reader's disk"
    );
    b.close().await.unwrap();
    a.close().await.unwrap();
    let a = open_on(&dir_a, &server, edit, build).await;
    assert_eq!(
        served(&a, key).await,
        Some((value.to_vec(), Source::Warm)),
        "{what}: the writer's disk"
    );
    let s = a.stats();
    assert_eq!((s.shared_hits, s.corrupted), (0, 0), "{what}");
    a.close().await.unwrap();
}

/// Guard: 4095 / 4096 / 4097 bytes, compressible and not, at levels 0, 3 (default) and 9,
/// with and without a MAC key: every answer round-trips through both tiers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn values_around_the_stored_bound_round_trip_through_both_tiers() {
    for len in [4095, 4096, 4097] {
        for value in [prose(len), incompressible(len, len as u64)] {
            for level in [0, 3, 9] {
                for mac in [None, Some(MAC)] {
                    round_trip(b"k", &value, level, mac).await;
                }
            }
        }
    }
}

/// Guard: a 10 KiB key with a small and a 4097-byte value (the key makes even the small
/// file larger than one allocation unit: compressed on disk too).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_long_key_round_trips_through_both_tiers() {
    let key: Vec<u8> = (0..10_240u32).map(|i| b'a' + (i % 26) as u8).collect();
    for value in [prose(100), prose(4097), incompressible(4097, 3)] {
        for mac in [None, Some(MAC)] {
            round_trip(&key, &value, 3, mac).await;
        }
    }
}

/// Guard: the shared file exactly at `SharedConfig::max_entry_bytes` is shared and read
/// (with a MAC key too: the bound is the file's, the tag is on top); one byte over is dropped
/// `too_large`, counted once, the server holding nothing. Values that share a cell (5000 B)
/// and that do not (3000 B, stored on disk, compressed for the server), at levels 0 and 3.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_file_exactly_at_the_shared_bound_is_shared_one_byte_over_is_dropped() {
    for len in [3000, 5000] {
        for level in [0, 3] {
            for mac in [None, Some(MAC)] {
                let value = prose(len);
                let n = answercache::warm::format::encode(b"k", &value, Default::default(), level)
                    .unwrap()
                    .len();
                for (bound, shared) in [(n, true), (n - 1, false)] {
                    let what = format!(
                        "{len} B, level {level}, mac {}, bound {bound}",
                        mac.is_some()
                    );
                    let server = MemoryShared::new();
                    let edit = |c: SharedConfig| {
                        let c = c.max_entry_bytes(bound);
                        match mac {
                            Some(k) => c.mac_key(k),
                            None => c,
                        }
                    };
                    let build = |b: Builder| b.compression_level(level);
                    let (dir_a, dir_b) = (TestDir::new(), TestDir::new());
                    let a = open_on(&dir_a, &server, edit, build).await;
                    a.set_bytes("k", &value[..]).await.unwrap();
                    a.flush().await.unwrap();
                    let s = a.stats();
                    let b = open_on(&dir_b, &server, edit, build).await;
                    let got = served(&b, b"k").await;
                    if shared {
                        assert_eq!(shared_writes(&a), (1, 0, 0), "{what}");
                        assert_eq!(
                            server.raw(&entry_key(b"k")).map(|r| r.len()),
                            Some(n + if mac.is_some() { 32 } else { 0 }),
                            "{what}"
                        );
                        assert_eq!(got, Some((value.clone(), Source::Shared)), "{what}");
                    } else {
                        assert_eq!(shared_writes(&a), (0, 0, 1), "{what}");
                        assert_eq!(
                            s.shared_writes_dropped_by_reason.get("too_large").copied(),
                            Some(1),
                            "{what}"
                        );
                        assert_eq!(server.raw(&entry_key(b"k")), None, "{what}");
                        assert_eq!(got, None, "{what}");
                    }
                    assert_eq!(s.writes_ok, 1, "{what}");
                    b.close().await.unwrap();
                    a.close().await.unwrap();
                }
            }
        }
    }
}

/// G4 (fixed): "a value both tiers store is compressed once" (FORMAT.md). The cell was shared
/// only by value length (over 4096 bytes), but the disk stores a value only when its whole
/// *file* (88-byte header, key, value, 23-byte gzip framing) fits one allocation unit: a
/// 4000-byte value with a 1-byte key (a 4112-byte stored file), or a 1000-byte value under a
/// 3.5 KiB key, was compressed by the disk writer *and* by the shared drain. Now the disk's own
/// rule decides (`WarmStore::encodes_at_level`): such a value is compressed once and the disk
/// and the server hold one file. (The compression count itself is asserted by the crate's
/// `encode_once_tests`, which can see it; here, what a user can see.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_value_whose_stored_file_exceeds_a_unit_is_one_file_on_both_tiers() {
    let long_key = vec![b'q'; 3500];
    for (key, value) in [(b"k".to_vec(), prose(4000)), (long_key, prose(1000))] {
        let server = MemoryShared::new();
        let dir = TestDir::new();
        let a = open_on(&dir, &server, |c| c, |b| b).await;
        a.set_bytes(&key[..], &value[..]).await.unwrap();
        a.flush().await.unwrap();
        let on_disk = disk_file(&dir, &key).unwrap();
        let on_server = server.raw(&entry_key(&key)).unwrap();
        a.close().await.unwrap();
        assert!(
            on_server.len() < 88 + key.len() + value.len(),
            "compressed for the server"
        );
        assert_eq!(
            on_disk,
            on_server,
            "key {} B, value {} B",
            key.len(),
            value.len()
        );
    }
}
