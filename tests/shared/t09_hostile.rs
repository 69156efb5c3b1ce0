//! T9, corrupt and hostile values planted with a raw client under the keys a replica reads:
//! garbage, truncated, wrong magic, another key's entry, flipped payload and checksum
//! bytes, version 0, bad flags, an inflation bomb, oversize length fields (key, value,
//! payload), a broken gzip stream, trailing bytes, bytes over `max_entry_bytes` that are no
//! entry file.
//!
//! (An empty value is a control, not a case: the bounded read cannot tell it from no key,
//! so it is a plain miss, left alone.)
//!
//! Asserted: each is a miss, `DEL`eted, counted in `shared_corrupted_by_reason` under the
//! FORMAT.md reason (exact counts, nothing on the disk's counters), no error and no breaker
//! move; 0 wrong answers; the largest single allocation while reading them stays under 1 MiB
//! (the declared lengths are bounded before allocating, the bomb stopped within a chunk). A
//! well-formed planted entry is a hit (so the misses are the checks' doing), a newer format
//! version, an expired entry and a well-formed entry over `max_entry_bytes` (a replica with a
//! larger bound may have shared it) are misses, the last left on the server. With `mac_key`: entries without the MAC, or with
//! another key's, are misses; the writer's own and a correctly MAC'd plant are hits.

use answercache::warm::format::{self, EntryMeta};
use answercache::{BreakerState, Encoding};
use std::collections::BTreeMap;

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t9";
const MAX_ENTRY: usize = 64 << 10;

fn meta() -> EntryMeta {
    EntryMeta {
        created_ms: now_ms() - 1000,
        expires_ms: 0,
        cost: 7,
        encoding: Encoding::Raw,
    }
}

fn entry(key: &str, len: usize) -> Vec<u8> {
    format::encode(key.as_bytes(), &value(key, 1, len), meta(), 3).unwrap()
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `(case, planted bytes, FORMAT.md reason)` for the key `h-<case>`.
fn hostile() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let k = |c: &str| format!("h-{c}");
    let mut v = Vec::new();
    let mut garbage = vec![0u8; 200];
    blake3::Hasher::new()
        .update(b"garbage")
        .finalize_xof()
        .fill(&mut garbage);
    v.push(("garbage", garbage, "magic"));
    v.push(("magic-prefix", b"TIERC".to_vec(), "truncated"));
    let mut e = entry(&k("wrong-magic"), 300);
    e[..8].copy_from_slice(b"NOTACACH");
    v.push(("wrong-magic", e, "magic"));
    v.push((
        "short-header",
        entry(&k("short-header"), 300)[..60].to_vec(),
        "truncated",
    ));
    let e = entry(&k("truncated"), 300);
    v.push(("truncated", e[..e.len() - 5].to_vec(), "truncated"));
    let mut e = entry(&k("trailing"), 300);
    e.extend_from_slice(&[1, 2, 3]);
    v.push(("trailing", e, "trailing-bytes"));
    v.push((
        "foreign-key",
        entry("another key entirely", 300),
        "key-mismatch",
    ));
    let mut e = entry(&k("payload-flip"), 300);
    let n = e.len();
    e[n - 3] ^= 0x01;
    v.push(("payload-flip", e, "checksum"));
    let mut e = entry(&k("checksum-flip"), 300);
    e[60] ^= 0x80;
    v.push(("checksum-flip", e, "checksum"));
    let mut e = entry(&k("version-0"), 300);
    e[8..10].copy_from_slice(&0u16.to_le_bytes());
    format::reseal(&mut e);
    v.push(("version-0", e, "version-too-old"));
    let mut e = entry(&k("flags"), 300);
    e[10..12].copy_from_slice(&0u16.to_le_bytes());
    format::reseal(&mut e);
    v.push(("flags", e, "flags"));
    // 4 MiB of zeros declared as 1,000 bytes.
    let payload = format::deflate(&vec![0u8; 4 << 20], 9).unwrap();
    let e = format::assemble(
        k("bomb").as_bytes(),
        1000,
        &payload,
        meta(),
        format::VERSION,
        format::flags_for(Encoding::Raw),
    );
    v.push(("bomb", e, "bomb"));
    let mut e = entry(&k("key-len"), 300);
    set_u32(&mut e, 12, u32::MAX);
    format::reseal(&mut e);
    v.push(("key-len", e, "oversize"));
    let mut e = entry(&k("value-len"), 300);
    set_u64(&mut e, 40, 1 << 40);
    format::reseal(&mut e);
    v.push(("value-len", e, "oversize"));
    let mut e = entry(&k("payload-len"), 300);
    set_u64(&mut e, 32, 1 << 40);
    format::reseal(&mut e);
    v.push(("payload-len", e, "oversize"));
    let mut junk = vec![0u8; 100];
    blake3::Hasher::new()
        .update(b"not gzip")
        .finalize_xof()
        .fill(&mut junk);
    let e = format::assemble(
        k("bad-gzip").as_bytes(),
        300,
        &junk,
        meta(),
        format::VERSION,
        format::flags_for(Encoding::Raw),
    );
    v.push(("bad-gzip", e, "decode"));
    // Bytes over max_entry_bytes + header that are no entry file. (A well-formed entry that
    // long is a control: a replica with a larger max_entry_bytes may have shared it,
    // adversary11 R11.)
    v.push(("too-large", vec![0xAB; 4 * MAX_ENTRY], "oversize"));
    v
}

#[test]
fn t9_hostile_values_are_misses_deleted_and_counted() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let logs = LogCapture::new();
    let _thread = logs.attach_current_thread();
    let rt = logs.current_thread_runtime();
    let cfg = config(&server.url(), PREFIX).max_entry_bytes(MAX_ENTRY);
    let r = rt.block_on(async {
        let r = replica(cfg.clone()).await;
        wait_closed(&r.cache).await;
        r
    });
    let cases = hostile();
    rt.block_on(async {
        for (case, bytes, _) in &cases {
            server
                .set_raw(&entry_key(PREFIX, format!("h-{case}").as_bytes()), bytes)
                .await;
        }
        // Controls: a well-formed entry, a newer format version, an expired entry.
        server
            .set_raw(&entry_key(PREFIX, b"h-good"), &entry("h-good", 300))
            .await;
        let mut newer = entry("h-newer", 300);
        newer[8..10].copy_from_slice(&3u16.to_le_bytes());
        format::reseal(&mut newer);
        server.set_raw(&entry_key(PREFIX, b"h-newer"), &newer).await;
        let mut old = meta();
        old.expires_ms = now_ms() - 500;
        let expired = format::encode(b"h-expired", &value("h-expired", 1, 300), old, 3).unwrap();
        server
            .set_raw(&entry_key(PREFIX, b"h-expired"), &expired)
            .await;
        server.set_raw(&entry_key(PREFIX, b"h-empty"), b"").await;
        // A well-formed entry over this replica's max_entry_bytes (incompressible value), as
        // a replica with a larger bound shares it (adversary11 R11).
        server
            .set_raw(
                &entry_key(PREFIX, b"h-larger"),
                &entry("h-larger", 4 * MAX_ENTRY),
            )
            .await;
    });
    let r0 = r.stats();
    let ((wrong, answers), peak) = alloc::peak_allocation(|| {
        rt.block_on(async {
            let mut wrong = 0u64;
            let mut answers = Vec::new();
            for (case, _, _) in &cases {
                let got = r.get_bytes(format!("h-{case}").as_str()).await;
                let got = got.unwrap_or_else(|e| panic!("{case}: an error to the caller: {e}"));
                if got.is_some() {
                    wrong += 1;
                }
                answers.push((*case, got.is_some()));
            }
            (wrong, answers)
        })
    });
    let r1 = r.stats();
    rt.block_on(async {
        // Every hostile value was deleted: in the background, after the miss was returned
        // (over the write connection, which may still be connecting), so waited for (2 s at
        // most).
        let mut left = Vec::new();
        for _ in 0..200 {
            left.clear();
            for (case, _, _) in &cases {
                if server
                    .exists(&entry_key(PREFIX, format!("h-{case}").as_bytes()))
                    .await
                {
                    left.push(*case);
                }
            }
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for (_, _, reason) in &cases {
            *expected.entry((*reason).to_owned()).or_default() += 1;
        }
        let got: BTreeMap<String, u64> = r1
            .shared_corrupted_by_reason
            .iter()
            .map(|(k, v)| (k.clone(), v - by(&r0.shared_corrupted_by_reason, k)))
            .filter(|(_, v)| *v > 0)
            .collect();
        println!(
            "\nSHARED T9 cases={} wrong_answers={wrong} left_in_redis={left:?} \
             corrupted_by_reason={got:?} peak_alloc_bytes={peak} shared_errors={}",
            cases.len(),
            r1.shared_errors - r0.shared_errors
        );
        assert_eq!(wrong, 0, "hostile values served: {answers:?}");
        assert!(left.is_empty(), "hostile values not DEL'd: {left:?}");
        assert_eq!(got, expected, "counted by reason");
        assert_eq!(
            r1.shared_corrupted - r0.shared_corrupted,
            cases.len() as u64
        );
        assert_eq!(
            r1.corrupted, r0.corrupted,
            "the disk's counters are the disk's"
        );
        assert_eq!(
            r1.shared_errors, r0.shared_errors,
            "corruption is not a failure"
        );
        assert_eq!(r.shared_state(), Some(BreakerState::Closed));
        assert!(
            peak < 1 << 20,
            "a hostile read allocated {peak} bytes at once"
        );

        // The controls.
        let good = r.get_bytes("h-good").await.unwrap();
        check_value("h-good", &good.expect("a well-formed plant is a hit")).unwrap();
        assert_eq!(r.get_bytes("h-newer").await.unwrap(), None);
        assert_eq!(r.get_bytes("h-expired").await.unwrap(), None);
        // An empty value: the bounded read (`GETRANGE key 0 max`, SHARED_TIER.md section 3)
        // answers "" for an empty value and for no key alike, so it is a plain miss, neither
        // counted as corruption nor deleted (it holds no answer to serve, and nothing
        // allocates for it).
        assert_eq!(r.get_bytes("h-empty").await.unwrap(), None);
        assert_eq!(r.get_bytes("h-larger").await.unwrap(), None);
        let r2 = r.stats();
        assert_eq!(
            r2.shared_corrupted, r1.shared_corrupted,
            "a newer version, an expired entry, an empty value or a larger entry is not \
             counted as corruption"
        );
        assert_eq!(r2.shared_misses - r1.shared_misses, 4);
        assert!(
            server.exists(&entry_key(PREFIX, b"h-empty")).await,
            "an empty value reads as no key: nothing to delete"
        );
        assert!(
            server.exists(&entry_key(PREFIX, b"h-larger")).await,
            "an entry over this replica's bound may be valid for its writer: left alone"
        );
        println!(
            "SHARED T9 controls newer_version_deleted={} expired_deleted={}",
            !server.exists(&entry_key(PREFIX, b"h-newer")).await,
            !server.exists(&entry_key(PREFIX, b"h-expired")).await
        );
        r.close().await.unwrap();
    });
}

/// "Values larger than max_entry_bytes + header are rejected before allocation" (§3): a
/// 32 MiB value under a key is a miss without a 32 MiB allocation.
#[test]
fn t9_an_oversize_value_is_not_read_whole() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let logs = LogCapture::new();
    let _thread = logs.attach_current_thread();
    let rt = logs.current_thread_runtime();
    let cfg = config(&server.url(), PREFIX).max_entry_bytes(MAX_ENTRY);
    let r = rt.block_on(async {
        let r = replica(cfg).await;
        wait_closed(&r.cache).await;
        let mut big = entry("h-huge", 300);
        big.resize(32 << 20, 0xAB);
        server.set_raw(&entry_key(PREFIX, b"h-huge"), &big).await;
        r
    });
    let (got, peak) = alloc::peak_allocation(|| rt.block_on(r.get_bytes("h-huge")));
    println!(
        "\nSHARED T9 oversize_value_bytes={} peak_alloc_bytes={peak}",
        32 << 20
    );
    assert_eq!(got.unwrap(), None);
    assert!(
        peak < 8 << 20,
        "a 32 MiB value was read whole ({peak} bytes at once) with max_entry_bytes {MAX_ENTRY}"
    );
    rt.block_on(async {
        // Deleted in the background after the miss was returned: waited for (2 s at most).
        let key = entry_key(PREFIX, b"h-huge");
        let gone = poll_until_async(
            std::time::Duration::from_secs(2),
            std::time::Duration::from_millis(10),
            || {
                let (server, key) = (&server, key.clone());
                async move { !server.exists(&key).await }
            },
        )
        .await;
        assert!(
            gone.is_some(),
            "the oversize value was not DEL'd within 2 s"
        );
        r.close().await.unwrap();
    });
}

#[test]
fn t9_mac_key_makes_planted_answers_misses() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let key = *blake3::hash(b"t9 mac key").as_bytes();
        let other = *blake3::hash(b"another mac key").as_bytes();
        let cfg = config(&server.url(), PREFIX).mac_key(key);
        let reps = replicas(2, &cfg).await;
        let (a, b) = (&reps[0], &reps[1]);
        a.set_bytes("m-own", value("m-own", 1, 300)).await.unwrap();
        a.flush().await.unwrap();
        let raw = server
            .get_raw(&entry_key(PREFIX, b"m-own"))
            .await
            .expect("A's entry");
        let plain = entry("m-own", 300);
        assert_eq!(
            raw.len(),
            plain.len() + 32,
            "entry bytes followed by a 32-byte MAC"
        );
        assert_eq!(
            &raw[raw.len() - 32..],
            blake3::keyed_hash(&key, &raw[..raw.len() - 32]).as_bytes()
        );
        let plant = |k: &str, mac: Option<[u8; 32]>| {
            let mut e = entry(k, 300);
            if let Some(m) = mac {
                let tag = *blake3::keyed_hash(&m, &e).as_bytes();
                e.extend_from_slice(&tag);
            }
            e
        };
        server
            .set_raw(&entry_key(PREFIX, b"m-none"), &plant("m-none", None))
            .await;
        server
            .set_raw(
                &entry_key(PREFIX, b"m-other"),
                &plant("m-other", Some(other)),
            )
            .await;
        server
            .set_raw(&entry_key(PREFIX, b"m-right"), &plant("m-right", Some(key)))
            .await;
        let b0 = b.stats();
        check_value("m-own", &b.get_bytes("m-own").await.unwrap().expect("own")).unwrap();
        assert_eq!(
            b.get_bytes("m-none").await.unwrap(),
            None,
            "an unMAC'd plant was served"
        );
        assert_eq!(
            b.get_bytes("m-other").await.unwrap(),
            None,
            "a forged MAC was served"
        );
        check_value(
            "m-right",
            &b.get_bytes("m-right")
                .await
                .unwrap()
                .expect("a correct MAC"),
        )
        .unwrap();
        let b1 = b.stats();
        assert_eq!(b1.shared_hits - b0.shared_hits, 2);
        assert_eq!(b1.shared_corrupted - b0.shared_corrupted, 2);
        assert!(!server.exists(&entry_key(PREFIX, b"m-none")).await);
        assert!(!server.exists(&entry_key(PREFIX, b"m-other")).await);
        println!(
            "\nSHARED T9 mac rejected=2 served=2 reasons={:?}",
            b1.shared_corrupted_by_reason
        );
        for r in reps {
            r.close().await.unwrap();
        }
    });
}
