//! The generator of `quarantine-fixtures/`: every fixture is built here from a valid entry
//! (fixed key, value and times, so the bytes are reproducible) by one deliberate act of
//! damage. `fixtures::fixtures_are_up_to_date` compares the result with the committed files;
//! `ANSWERCACHE_REGENERATE_FIXTURES=1` rewrites them (after a format change, say).

use std::path::PathBuf;

use answercache::warm::format::{self, FLAG_GZIP, HEADER_LEN};

use crate::support::{entry, text, Rng, META};

/// The pseudo-reason of a file that is not corrupt but of a newer format version: a miss, and
/// left in place.
pub const NEWER_VERSION: &str = "newer-version";

/// One fixture: a file name, the key whose path it is placed at, what was done to it, the
/// reason the cache must give, and its bytes.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub file: String,
    pub key: String,
    pub what: String,
    pub reason: String,
    pub bytes: Vec<u8>,
}

/// The committed corpus directory.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("quarantine-fixtures")
}

/// The value every fixture's base entry holds.
pub fn value() -> Vec<u8> {
    text(700, 2024)
}

// Byte offsets of the header fields (FORMAT.md).
const VERSION: usize = 8;
const FLAGS: usize = 10;
const KEY_LEN: usize = 12;
const CREATED: usize = 16;
const PAYLOAD_LEN: usize = 32;
const VALUE_LEN: usize = 40;
const CHECKSUM: usize = 56;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn resealed(mut b: Vec<u8>) -> Vec<u8> {
    format::reseal(&mut b);
    b
}

/// Where the payload of a valid file starts.
fn payload_at(b: &[u8]) -> usize {
    HEADER_LEN + u32_at(b, KEY_LEN) as usize
}

/// A file with `key`, the base value's declared length and an arbitrary payload, checksummed.
fn with_payload(key: &[u8], declared: u64, payload: &[u8]) -> Vec<u8> {
    format::assemble(key, declared, payload, META, format::VERSION, FLAG_GZIP)
}

type Build = fn(&[u8], &[u8]) -> Vec<u8>;

/// `(file stem, what was done, expected reason, build(key, valid entry of key))`.
const SPECS: &[(&str, &str, &str, Build)] = &[
    ("01-empty", "an empty file (0 bytes)", "truncated", |_, _| Vec::new()),
    ("02-magic-prefix-only", "only the first 5 bytes of the magic", "truncated", |_, v| {
        v[..5].to_vec()
    }),
    ("03-bad-magic", "first magic byte changed from T to X", "magic", |_, v| {
        let mut b = v.to_vec();
        b[0] = b'X';
        b
    }),
    ("04-plain-gzip-file", "a bare gzip file of the value, no entry header", "magic", |_, _| {
        format::deflate(&value(), 6).unwrap()
    }),
    ("05-all-zero-bytes", "as long as a valid entry, every byte zero", "magic", |_, v| {
        vec![0u8; v.len()]
    }),
    ("06-random-bytes", "512 seeded random bytes", "magic", |_, _| {
        // One draw per byte, as when the fixture was generated.
        let mut rng = Rng::new(6);
        (0..512).map(|_| rng.next_u64() as u8).collect()
    }),
    ("07-truncated-mid-header", "cut after 50 of the 88 header bytes", "truncated", |_, v| {
        v[..50].to_vec()
    }),
    ("08-header-only", "the 88-byte header alone: key and payload missing", "truncated", |_, v| {
        v[..HEADER_LEN].to_vec()
    }),
    ("09-truncated-mid-key", "cut in the middle of the key", "truncated", |k, v| {
        v[..HEADER_LEN + k.len() / 2].to_vec()
    }),
    ("10-truncated-mid-payload", "cut in the middle of the gzip payload", "truncated", |_, v| {
        let p = payload_at(v);
        v[..p + (v.len() - p) / 2].to_vec()
    }),
    ("11-missing-last-byte", "the last byte removed (torn append)", "truncated", |_, v| {
        v[..v.len() - 1].to_vec()
    }),
    ("12-trailing-newline", "a newline appended (an editor saved it)", "trailing-bytes", |_, v| {
        let mut b = v.to_vec();
        b.push(b'\n');
        b
    }),
    ("13-two-entries-concatenated", "the valid entry written twice in a row", "trailing-bytes", |_, v| {
        v.repeat(2)
    }),
    ("14-payload-length-one-short-resealed", "declared payload length minus 1, checksum recomputed", "trailing-bytes", |_, v| {
        let mut b = v.to_vec();
        let n = u64_at(&b, PAYLOAD_LEN);
        put_u64(&mut b, PAYLOAD_LEN, n - 1);
        resealed(b)
    }),
    ("15-version-0-resealed", "format version set to 0, checksum recomputed", "version-too-old", |_, v| {
        let mut b = v.to_vec();
        put_u16(&mut b, VERSION, 0);
        resealed(b)
    }),
    ("16-checksum-byte-flipped", "one bit of the stored checksum flipped", "checksum", |_, v| {
        let mut b = v.to_vec();
        b[CHECKSUM] ^= 0x01;
        b
    }),
    ("17-key-byte-flipped", "one bit of the stored key flipped", "checksum", |_, v| {
        let mut b = v.to_vec();
        b[HEADER_LEN + 3] ^= 0x20;
        b
    }),
    ("18-payload-byte-flipped", "one bit in the middle of the gzip payload flipped", "checksum", |_, v| {
        let mut b = v.to_vec();
        let p = payload_at(v);
        b[p + (v.len() - p) / 2] ^= 0x04;
        b
    }),
    ("19-created-time-bit-flipped", "one bit of the creation time flipped", "checksum", |_, v| {
        let mut b = v.to_vec();
        b[CREATED + 1] ^= 0x10;
        b
    }),
    ("20-torn-write-zeroed-tail", "the last 32 bytes zeroed (a torn write)", "checksum", |_, v| {
        let mut b = v.to_vec();
        let n = b.len();
        b[n - 32..].fill(0);
        b
    }),
    ("21-unknown-flag-resealed", "flag bit 15 set, checksum recomputed", "flags", |_, v| {
        let mut b = v.to_vec();
        put_u16(&mut b, FLAGS, FLAG_GZIP | 0x8000);
        resealed(b)
    }),
    ("22-gzip-flag-cleared-resealed", "the gzip flag cleared, checksum recomputed", "flags", |_, v| {
        let mut b = v.to_vec();
        put_u16(&mut b, FLAGS, 0);
        resealed(b)
    }),
    ("23-entry-of-another-key", "a valid entry of key fixture/somebody-else", "key-mismatch", |_, _| {
        entry(b"fixture/somebody-else", &value())
    }),
    ("24-key-differs-in-case", "a valid entry of the same key in upper case", "key-mismatch", |k, _| {
        entry(&k.to_ascii_uppercase(), &value())
    }),
    ("25-key-boundary-shifted-resealed", "key length minus 1 and payload length plus 1 (the key's last byte moves into the payload), checksum recomputed", "key-mismatch", |_, v| {
        let mut b = v.to_vec();
        let k = u32_at(&b, KEY_LEN);
        let p = u64_at(&b, PAYLOAD_LEN);
        put_u32(&mut b, KEY_LEN, k - 1);
        put_u64(&mut b, PAYLOAD_LEN, p + 1);
        resealed(b)
    }),
    ("26-oversize-key-length-resealed", "declared key length 0xFFFFFFFF, checksum recomputed", "oversize", |_, v| {
        let mut b = v.to_vec();
        put_u32(&mut b, KEY_LEN, u32::MAX);
        resealed(b)
    }),
    ("27-oversize-value-length-resealed", "declared value length u64::MAX, checksum recomputed", "oversize", |_, v| {
        let mut b = v.to_vec();
        put_u64(&mut b, VALUE_LEN, u64::MAX);
        resealed(b)
    }),
    ("28-oversize-payload-length-resealed", "declared payload length 1 TiB, checksum recomputed", "oversize", |_, v| {
        let mut b = v.to_vec();
        put_u64(&mut b, PAYLOAD_LEN, 1 << 40);
        resealed(b)
    }),
    ("29-gzip-bomb", "declares 1000 bytes; the payload inflates to 1 MiB of zeros", "bomb", |k, _| {
        with_payload(k, 1000, &format::deflate(&vec![0u8; 1 << 20], 9).unwrap())
    }),
    ("30-value-length-one-short-resealed", "declared value length minus 1 (inflates one byte past it), checksum recomputed", "bomb", |_, v| {
        let mut b = v.to_vec();
        let n = u64_at(&b, VALUE_LEN);
        put_u64(&mut b, VALUE_LEN, n - 1);
        resealed(b)
    }),
    ("31-value-length-one-long-resealed", "declared value length plus 1 (inflates short), checksum recomputed", "decode", |_, v| {
        let mut b = v.to_vec();
        let n = u64_at(&b, VALUE_LEN);
        put_u64(&mut b, VALUE_LEN, n + 1);
        resealed(b)
    }),
    ("32-gzip-crc-flipped-resealed", "one bit of the gzip trailer's CRC-32 flipped, checksum recomputed", "decode", |_, v| {
        let mut b = v.to_vec();
        let n = b.len();
        b[n - 8] ^= 0x01;
        resealed(b)
    }),
    ("33-gzip-then-garbage-resealed", "7 bytes of garbage after the gzip member inside the payload, checksum recomputed", "decode", |k, _| {
        let mut p = format::deflate(&value(), 6).unwrap();
        p.extend_from_slice(b"garbage");
        with_payload(k, value().len() as u64, &p)
    }),
    ("34-two-gzip-members-resealed", "two complete gzip members of the value, declared length of one, checksum recomputed", "decode", |k, _| {
        let p = format::deflate(&value(), 6).unwrap();
        with_payload(k, value().len() as u64, &p.repeat(2))
    }),
    ("35-raw-value-not-gzip-resealed", "the value stored uncompressed in place of the gzip payload, checksum recomputed", "decode", |k, _| {
        with_payload(k, value().len() as u64, &value())
    }),
    ("36-empty-payload-resealed", "an empty payload declaring the value's length, checksum recomputed", "decode", |k, _| {
        with_payload(k, value().len() as u64, &[])
    }),
    ("37-deflate-stream-cut-resealed", "the gzip member cut in half, lengths and checksum recomputed", "decode", |k, _| {
        let p = format::deflate(&value(), 6).unwrap();
        with_payload(k, value().len() as u64, &p[..p.len() / 2])
    }),
    ("38-newer-version-3", "a valid entry claiming format version 3, checksum recomputed (not corrupt: left in place)", NEWER_VERSION, |_, v| {
        let mut b = v.to_vec();
        put_u16(&mut b, VERSION, 3);
        resealed(b)
    }),
    ("39-reserved-encoding-resealed", "the reserved encoding code 3 in flag bits 1-2, checksum recomputed", "flags", |_, v| {
        let mut b = v.to_vec();
        put_u16(&mut b, FLAGS, FLAG_GZIP | 0b110);
        resealed(b)
    }),
    ("40-encoding-bits-in-version-1-resealed", "a version-1 file with encoding bits set (version 1 defines only the gzip flag), checksum recomputed", "flags", |_, v| {
        let mut b = v.to_vec();
        put_u16(&mut b, VERSION, 1);
        put_u16(&mut b, FLAGS, FLAG_GZIP | 0b010);
        resealed(b)
    }),
];

/// Builds every fixture.
pub fn generate() -> Vec<Fixture> {
    SPECS
        .iter()
        .map(|&(stem, what, reason, build)| {
            let key = format!("fixture/{stem}");
            let valid = entry(key.as_bytes(), &value());
            Fixture {
                file: format!("{stem}.entry"),
                bytes: build(key.as_bytes(), &valid),
                key,
                what: what.to_owned(),
                reason: reason.to_owned(),
            }
        })
        .collect()
}

/// The manifest's header line.
pub const MANIFEST_HEADER: &str = "file\tclaimed_key\twhat_was_done\texpected_reason";

/// `MANIFEST.tsv` for `fixtures`.
pub fn manifest(fixtures: &[Fixture]) -> String {
    let mut out = String::from(MANIFEST_HEADER);
    out.push('\n');
    for f in fixtures {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            f.file, f.key, f.what, f.reason
        ));
    }
    out
}

/// The committed corpus: each manifest row with the committed file's bytes.
pub fn load() -> Vec<Fixture> {
    let dir = dir();
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(MANIFEST_HEADER));
    lines
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 4, "manifest row {line:?}");
            Fixture {
                file: cols[0].to_owned(),
                key: cols[1].to_owned(),
                what: cols[2].to_owned(),
                reason: cols[3].to_owned(),
                bytes: std::fs::read(dir.join(cols[0])).unwrap(),
            }
        })
        .collect()
}
