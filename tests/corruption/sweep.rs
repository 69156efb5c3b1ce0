//! Exhaustive damage sweeps on real entry files of several sizes (empty to 40 KiB, text and
//! incompressible bytes): every truncation length, every single-bit flip in the header and the
//! key, and seeded single-bit flips in the payload (every bit where the payload is small). No
//! variant may be served, decode to a wrong value or panic; every one is rejected as corrupt
//! (and so quarantined by the read path), except the flips that turn version 1 into a higher
//! version number, which by design are misses left in place for a newer process.
//!
//! All variants go through `format::decode` (the read path's verifier). A representative
//! subset (every 5th truncation, every 3rd header/key bit and 300 payload flips of the 4 KiB
//! entry) goes through a real cache to check that each is a miss and really lands in the
//! quarantine.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use answercache::warm::format::{self, Corruption, Invalid, HEADER_LEN};

use crate::support::{self, entry, open_with, text, Rng, DEFAULT_LIMITS};

/// The outcome of one variant through `format::decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Corrupt(Corruption),
    Newer,
    /// Decoded, to the original value: never expected for a damaged file.
    ServedSame,
    /// Decoded, to another value: the one thing a cache must never do.
    WrongValue,
    Panicked,
}

#[derive(Debug, Default)]
struct Tally {
    variants: u64,
    by_outcome: BTreeMap<String, u64>,
    wrong_values: u64,
    served: u64,
    panics: u64,
    newer: u64,
    corrupt: u64,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.variants += 1;
        let name = match o {
            Outcome::Corrupt(c) => {
                self.corrupt += 1;
                c.name().to_owned()
            }
            Outcome::Newer => {
                self.newer += 1;
                "newer-version".to_owned()
            }
            Outcome::ServedSame => {
                self.served += 1;
                "served".to_owned()
            }
            Outcome::WrongValue => {
                self.wrong_values += 1;
                "wrong-value".to_owned()
            }
            Outcome::Panicked => {
                self.panics += 1;
                "panic".to_owned()
            }
        };
        *self.by_outcome.entry(name).or_insert(0) += 1;
    }
}

fn decode(file: &[u8], key: &[u8], value: &[u8]) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| {
        format::decode(file, key, &DEFAULT_LIMITS)
    })) {
        Err(_) => Outcome::Panicked,
        Ok(Ok(d)) if d.value == value => Outcome::ServedSame,
        Ok(Ok(_)) => Outcome::WrongValue,
        Ok(Err(Invalid::NewerVersion(_))) => Outcome::Newer,
        Ok(Err(Invalid::Corrupt(c, _))) => Outcome::Corrupt(c),
    }
}

fn flip(file: &[u8], bit: usize) -> Vec<u8> {
    let mut v = file.to_vec();
    v[bit / 8] ^= 1 << (bit % 8);
    v
}

/// What a single-bit flip at header byte `byte` may be reported as.
fn header_flip_allowed(byte: usize, bit: usize, o: Outcome) -> bool {
    use Corruption::*;
    match byte {
        0..=7 => o == Outcome::Corrupt(Magic),
        // Version 2 → 0 is too old; 2 → 3, 6, 10, ... is a newer version, left in place.
        8 if bit == 1 => o == Outcome::Corrupt(VersionTooOld),
        8 | 9 => o == Outcome::Newer,
        // Key and payload lengths: the file no longer has the declared length, or the
        // declared length is over the limits.
        12..=15 | 32..=39 => matches!(o, Outcome::Corrupt(Truncated | TrailingBytes | Oversize)),
        // The value length is bounded before anything else; otherwise the checksum fails.
        40..=47 => matches!(o, Outcome::Corrupt(Checksum | Oversize)),
        // Flags, times, cost and the checksum itself: the checksum covers them and is checked
        // before the flags.
        _ => o == Outcome::Corrupt(Checksum),
    }
}

struct Sample {
    name: &'static str,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn samples() -> Vec<Sample> {
    vec![
        Sample {
            name: "empty",
            key: b"sweep/empty".to_vec(),
            value: Vec::new(),
        },
        Sample {
            name: "1 B",
            key: b"sweep/one".to_vec(),
            value: b"x".to_vec(),
        },
        Sample {
            name: "300 B text",
            key: b"sweep/300".to_vec(),
            value: text(300, 1),
        },
        Sample {
            name: "4 KiB text",
            key: b"sweep/4k".to_vec(),
            value: text(4096, 2),
        },
        Sample {
            name: "40 KiB text",
            key: b"sweep/40k".to_vec(),
            value: text(40_000, 3),
        },
        Sample {
            name: "20 KiB random, long key",
            key: vec![b'k'; 200],
            value: Rng::new(4).bytes(20_000),
        },
    ]
}

const PAYLOAD_FLIPS_PER_FILE: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_truncation_and_bit_flip_is_rejected() {
    let mut tally = Tally::default();
    let (mut truncations, mut header_key_flips, mut payload_flips) = (0u64, 0u64, 0u64);
    let mut rng = Rng::new(0x5eed);
    for s in samples() {
        let file = entry(&s.key, &s.value);
        assert!(matches!(
            decode(&file, &s.key, &s.value),
            Outcome::ServedSame
        ));
        // Every truncation: always exactly `truncated`.
        for len in 0..file.len() {
            let o = decode(&file[..len], &s.key, &s.value);
            assert_eq!(
                o,
                Outcome::Corrupt(Corruption::Truncated),
                "{} cut at {len}",
                s.name
            );
            tally.add(o);
            truncations += 1;
        }
        // Every bit of the header and the key.
        let key_end = HEADER_LEN + s.key.len();
        let mut newer_here = 0;
        for bit in 0..key_end * 8 {
            let o = decode(&flip(&file, bit), &s.key, &s.value);
            let (byte, b) = (bit / 8, bit % 8);
            if byte < HEADER_LEN {
                assert!(
                    header_flip_allowed(byte, b, o),
                    "{}: header bit {bit}: {o:?}",
                    s.name
                );
            } else {
                assert_eq!(
                    o,
                    Outcome::Corrupt(Corruption::Checksum),
                    "{}: key bit {bit}",
                    s.name
                );
            }
            newer_here += u64::from(o == Outcome::Newer);
            tally.add(o);
            header_key_flips += 1;
        }
        // Version 2 has 15 bits that can be flipped to make a higher version.
        assert_eq!(newer_here, 15, "{}", s.name);
        // Payload bits: all of them for small payloads, seeded for large ones.
        let payload_bits = (file.len() - key_end) * 8;
        let bits: Vec<usize> = if payload_bits <= PAYLOAD_FLIPS_PER_FILE {
            (0..payload_bits).collect()
        } else {
            (0..PAYLOAD_FLIPS_PER_FILE)
                .map(|_| rng.below(payload_bits))
                .collect()
        };
        for bit in bits {
            let o = decode(&flip(&file, key_end * 8 + bit), &s.key, &s.value);
            assert_eq!(
                o,
                Outcome::Corrupt(Corruption::Checksum),
                "{}: payload bit {bit}",
                s.name
            );
            tally.add(o);
            payload_flips += 1;
        }
    }
    assert!(payload_flips >= 2000, "{payload_flips}");
    assert_eq!(
        (tally.wrong_values, tally.served, tally.panics),
        (0, 0, 0),
        "{tally:?}"
    );
    assert_eq!(tally.newer, 15 * samples().len() as u64);
    assert_eq!(tally.corrupt + tally.newer, tally.variants);

    let via_cache = through_the_cache().await;
    println!(
        "RELIABILITY corruption-sweep variants={} wrong_values={} panics={} served={} \
         rejected_corrupt={} newer_version_left_in_place={} truncations={truncations} \
         header_key_flips={header_key_flips} payload_flips={payload_flips} \
         via_cache={} via_cache_quarantined={}/{} by_outcome={:?}",
        tally.variants,
        tally.wrong_values,
        tally.panics,
        tally.served,
        tally.corrupt,
        tally.newer,
        via_cache.variants,
        via_cache.quarantined,
        via_cache.variants - via_cache.newer,
        tally.by_outcome
    );
}

/// What the cache subset did.
struct ViaCache {
    variants: u64,
    newer: u64,
    quarantined: u64,
}

/// The subset through a real cache: each variant is placed at the key's path, `get` must miss
/// and the file must be quarantined (or, for a newer version, left in place).
async fn through_the_cache() -> ViaCache {
    let s = &samples()[3];
    let file = entry(&s.key, &s.value);
    let key_end = HEADER_LEN + s.key.len();
    let mut variants: Vec<Vec<u8>> = Vec::new();
    variants.extend((0..file.len()).step_by(5).map(|len| file[..len].to_vec()));
    variants.extend((0..key_end * 8).step_by(3).map(|bit| flip(&file, bit)));
    let mut rng = Rng::new(77);
    let payload_bits = (file.len() - key_end) * 8;
    variants.extend((0..300).map(|_| flip(&file, key_end * 8 + rng.below(payload_bits))));

    let dir = crate::support::dir();
    let root = dir.root();
    let cache = open_with(&dir, |b| b.quarantine_limits(100_000, u64::MAX)).await;
    // The scan's end removes empty fan-out directories: plant after it, not under it.
    support::wait_for_scan(&cache).await;
    let path = support::prepare_path(root, &s.key);
    let mut newer = 0u64;
    for (i, v) in variants.iter().enumerate() {
        std::fs::write(&path, v).unwrap();
        let got = cache.get_bytes(&s.key).await.unwrap();
        assert!(got.is_none(), "variant {i} was served");
        if path.exists() {
            // Only a newer version is left in place, byte for byte.
            assert_eq!(&std::fs::read(&path).unwrap(), v, "variant {i}");
            assert!(matches!(
                format::decode(v, &s.key, &DEFAULT_LIMITS),
                Err(Invalid::NewerVersion(_))
            ));
            newer += 1;
        }
        // A fresh millisecond per variant: quarantine names stay unique.
        dir.clock().advance(Duration::from_millis(1));
    }
    let n = variants.len() as u64;
    let st = cache.stats();
    assert_eq!(st.misses, n);
    assert_eq!(st.newer_version_skipped, newer);
    assert_eq!(st.corrupted, n - newer);
    assert_eq!(st.quarantined_files, n - newer);
    assert_eq!(support::quarantined(root).len() as u64, n - newer);
    assert_eq!(st.disk_errors, 0);
    // The key works again once a valid file is back.
    std::fs::write(&path, &file).unwrap();
    assert_eq!(
        cache.get_bytes(&s.key).await.unwrap().as_deref(),
        Some(&s.value[..])
    );
    cache.close().await.unwrap();
    ViaCache {
        variants: n,
        newer,
        quarantined: st.quarantined_files,
    }
}
