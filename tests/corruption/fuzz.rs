//! A stable-Rust, seeded fuzz test of the reader: valid entry files mutated at random
//! (bit flips, multi-byte overwrites, header fields set to edge values, truncation, extension,
//! insertion, deletion, splices within the file and from other entries, a second gzip member)
//! and, for half of the cases, resealed with a fresh checksum so that the damage reaches the
//! length checks, the flags and the gzip decoder instead of stopping at the checksum.
//!
//! Through `format::decode` with the original key: never a panic, and never a value other
//! than the original. Through `verify` (in batches of files on disk, with `repair`): the same
//! verdict as `decode` for every file, exactly the corrupt ones quarantined, and a clean
//! second pass.
//!
//! Resealing is only combined with mutations inside the file itself: a checksum is for
//! integrity, not authenticity, so a resealed splice of *another* value's gzip stream is a
//! forgery the format does not claim to detect. `ANSWERCACHE_FUZZ_CASES` (default 50,000) sets
//! the number of `decode` cases; `cargo fuzz` (see `fuzz/`) runs the decoder for longer.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use answercache::verify::{verify, VerifyOptions};
use answercache::warm::format::{self, Invalid, HEADER_LEN};

use crate::support::{self, entry, place, rel_entry_path, text, Rng, DEFAULT_LIMITS, NOW};

/// Offsets of the header's length and flag fields, with their widths.
const FIELDS: [(usize, usize); 6] = [(8, 2), (10, 2), (12, 4), (32, 8), (40, 8), (16, 8)];

struct Base {
    key: Vec<u8>,
    value: Vec<u8>,
    file: Vec<u8>,
}

fn bases(tag: &str) -> Vec<Base> {
    let values: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"y".to_vec(),
        text(120, 1),
        text(1500, 2),
        Rng::new(3).bytes(600),
        vec![0u8; 3000],
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let key = format!("fuzz/{tag}/{i}").into_bytes();
            let file = entry(&key, &value);
            Base { key, value, file }
        })
        .collect()
}

fn edge_value(rng: &mut Rng, file_len: usize, width: usize) -> u64 {
    let max = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (width * 8)) - 1
    };
    let choices = [
        0,
        1,
        2,
        max,
        max / 2,
        file_len as u64,
        (file_len as u64).saturating_sub(HEADER_LEN as u64),
        rng.next_u64() & max,
        answercache::defaults::DEFAULT_MAX_ENTRY_BYTES as u64,
        answercache::defaults::DEFAULT_MAX_ENTRY_BYTES as u64 + 1,
    ];
    choices[rng.below(choices.len())]
}

/// Applies 1-4 random mutations to `file`; returns whether any took bytes from `other`.
fn mutate(rng: &mut Rng, file: &mut Vec<u8>, other: &[u8]) -> bool {
    let mut foreign = false;
    for _ in 0..1 + rng.below(4) {
        let len = file.len();
        match rng.below(13) {
            0 if len > 0 => {
                let bit = rng.below(len * 8);
                file[bit / 8] ^= 1 << (bit % 8);
            }
            1 if len > 0 => {
                for _ in 0..1 + rng.below(16) {
                    let at = rng.below(len);
                    file[at] = rng.next_u64() as u8;
                }
            }
            2 if len >= HEADER_LEN => {
                let (at, width) = FIELDS[rng.below(FIELDS.len())];
                let v = edge_value(rng, len, width).to_le_bytes();
                file[at..at + width].copy_from_slice(&v[..width]);
            }
            3 => file.truncate(rng.below(len + 1)),
            4 => {
                let n = 1 + rng.below(64);
                let extra = rng.bytes(n);
                file.extend_from_slice(&extra);
            }
            5 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(32);
                let extra = rng.bytes(n);
                file.splice(at..at, extra);
            }
            6 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                file.drain(a..b);
            }
            7 if len > 1 => {
                // Copy a range of the file over another place in it.
                let n = 1 + rng.below(len.min(256));
                let from = rng.below(len - n + 1);
                let to = rng.below(len - n + 1);
                let chunk = file[from..from + n].to_vec();
                file[to..to + n].copy_from_slice(&chunk);
            }
            8 if len > 0 && !other.is_empty() => {
                // Splice a range of another entry in.
                let n = 1 + rng.below(other.len().min(256));
                let from = rng.below(other.len() - n + 1);
                let to = rng.below(len + 1);
                let end = (to + n).min(len);
                file.splice(to..end, other[from..from + n].iter().copied());
                foreign = true;
            }
            9 if len > HEADER_LEN => {
                // Repeat the tail (a second gzip member or a copy of the trailer).
                let from = HEADER_LEN + rng.below(len - HEADER_LEN);
                let tail = file[from..].to_vec();
                file.extend_from_slice(&tail);
            }
            10 | 11 if len > HEADER_LEN + 20 => {
                // Overwrite bytes inside the payload only, lengths unchanged: with a reseal,
                // this is what reaches the gzip decoder.
                let start = HEADER_LEN + 20;
                for _ in 0..1 + rng.below(8) {
                    let at = start + rng.below(len - start);
                    file[at] = rng.next_u64() as u8;
                }
            }
            _ => {
                if len > 0 {
                    let at = rng.below(len);
                    file[at] = file[at].wrapping_add(1);
                }
            }
        }
    }
    foreign
}

/// The verdict of `decode` on one file: `Ok(())` for the original value, the reason name
/// otherwise. Panics (failing the test) on a wrong value or a panic inside `decode`.
fn verdict(file: &[u8], base: &Base, case: u64) -> Result<(), String> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        format::decode(file, &base.key, &DEFAULT_LIMITS)
    }));
    match r {
        Err(_) => panic!("case {case}: decode panicked"),
        Ok(Ok(d)) => {
            assert!(
                d.value == base.value,
                "case {case}: a different value was decoded"
            );
            Ok(())
        }
        Ok(Err(Invalid::NewerVersion(_))) => Err("newer-version".into()),
        Ok(Err(Invalid::Corrupt(c, _))) => Err(c.name().to_owned()),
    }
}

fn cases() -> u64 {
    std::env::var("ANSWERCACHE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

#[test]
fn mutated_files_never_decode_to_another_value() {
    let bases = bases("decode");
    let mut rng = Rng::new(0xF022);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let n = cases();
    for case in 0..n {
        let base = &bases[rng.below(bases.len())];
        let other = &bases[rng.below(bases.len())].file;
        let mut file = base.file.clone();
        let foreign = mutate(&mut rng, &mut file, other);
        if !foreign && rng.chance(0.5) {
            format::reseal(&mut file);
        }
        // The header parser and the verifier alone must not panic either.
        let _ = format::parse_header(&file, &DEFAULT_LIMITS);
        let _ = format::verify(&file, &DEFAULT_LIMITS);
        let name = match verdict(&file, base, case) {
            Ok(()) => "accepted-original-value".to_owned(),
            Err(reason) => reason,
        };
        *outcomes.entry(name).or_insert(0) += 1;
    }
    println!("RELIABILITY corruption-fuzz cases={n} wrong_values=0 panics=0 outcomes={outcomes:?}");
    assert_eq!(outcomes.values().sum::<u64>(), n);
    // The mutations reach past the checksum: the decoder's own checks all fire.
    for reason in [
        "checksum",
        "truncated",
        "trailing-bytes",
        "oversize",
        "decode",
        "bomb",
        "flags",
    ] {
        assert!(
            outcomes.contains_key(reason),
            "no case reached {reason}: {outcomes:?}"
        );
    }
}

#[test]
fn verify_agrees_with_decode_on_mutated_files() {
    const BATCHES: u64 = 200;
    let mut rng = Rng::new(0xBA7C4);
    let (mut files, mut quarantined) = (0u64, 0u64);
    let options = VerifyOptions {
        repair: true,
        now_ms: NOW,
        quarantine_max_files: 100_000,
        quarantine_max_bytes: u64::MAX,
        ..VerifyOptions::default()
    };
    for batch in 0..BATCHES {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bases = bases(&batch.to_string());
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        let (mut healthy, mut newer) = (0u64, 0u64);
        for (i, base) in bases.iter().enumerate() {
            let mut file = base.file.clone();
            let other = &bases[rng.below(bases.len())].file;
            let foreign = mutate(&mut rng, &mut file, other);
            if !foreign && rng.chance(0.5) {
                format::reseal(&mut file);
            }
            place(root, &base.key, &file);
            match verdict(&file, base, batch * 100 + i as u64) {
                Ok(()) => healthy += 1,
                Err(r) if r == "newer-version" => newer += 1,
                Err(r) => {
                    want.insert(rel_entry_path(&base.key), r);
                }
            }
        }
        let report = verify(root, &options).unwrap();
        let got: BTreeMap<String, String> = report
            .corrupted
            .iter()
            .map(|c| (c.path.clone(), c.reason.name().to_owned()))
            .collect();
        assert_eq!(got, want, "batch {batch}");
        assert_eq!(report.entries_checked, bases.len() as u64);
        assert_eq!(
            (report.healthy, report.newer_version),
            (healthy, newer),
            "batch {batch}"
        );
        assert_eq!(report.quarantined, want.len() as u64);
        assert_eq!(support::quarantined(root).len(), want.len());
        let again = verify(root, &options).unwrap();
        assert!(again.is_clean(), "batch {batch}: {again:?}");
        assert_eq!(again.healthy, healthy);
        files += bases.len() as u64;
        quarantined += report.quarantined;
    }
    println!("RELIABILITY corruption-fuzz-verify files={files} quarantined={quarantined} disagreements=0");
}
