//! Hostile gzip members in checksum-valid entry files: every one is `decode` or `bomb`
//! through `format::decode`, and a miss that quarantines the file through a live cache.
//! Valid RFC 1952 members with optional header fields (which FORMAT.md rule 16 does not call
//! invalid) read back as exactly the value they carry.

use std::collections::BTreeMap;

use answercache::testing::TestDir;
use answercache::warm::format::{
    self, assemble, deflate, inflate_exact, Corruption, InflateError, Invalid, Limits, FLAG_GZIP,
};

use crate::support::*;

const LIMITS: Limits = Limits {
    max_key_bytes: 16 << 10,
    max_entry_bytes: 16 << 20,
};

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// The raw deflate stream of `value` (the gzip member without its framing).
fn raw_deflate(value: &[u8]) -> Vec<u8> {
    let m = deflate(value, 6).unwrap();
    m[10..m.len() - 8].to_vec()
}

/// Stored blocks holding `value` (at most 65,535 bytes each); the last one final if `last`.
fn stored(value: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = if value.is_empty() {
        vec![&[][..]]
    } else {
        value.chunks(65_535).collect()
    };
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        out.push(u8::from(last && i + 1 == n));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// The 10-byte gzip header with flags `flg`.
fn header(flg: u8) -> Vec<u8> {
    vec![0x1f, 0x8b, 8, flg, 0, 0, 0, 0, 0, 0xff]
}

fn trailer(value: &[u8]) -> Vec<u8> {
    let mut t = crc32(value).to_le_bytes().to_vec();
    t.extend_from_slice(&(value.len() as u32).to_le_bytes());
    t
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A member with the optional fields given in `fields` (already encoded) and flags `flg`;
/// with FHCRC (0x02) the header CRC is `hcrc` or the right one.
fn member_with(flg: u8, fields: &[u8], hcrc: Option<u16>, body: &[u8], tr: &[u8]) -> Vec<u8> {
    let mut h = header(flg);
    h.extend_from_slice(fields);
    if flg & 2 != 0 {
        let right = (crc32(&h) & 0xffff) as u16;
        h.extend_from_slice(&hcrc.unwrap_or(right).to_le_bytes());
    }
    cat(&[&h, body, tr])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Served as exactly this many bytes of the reference value.
    Value,
    /// Corrupt for one of these reasons.
    Corrupt(&'static [Corruption]),
}

const DECODE: Want = Want::Corrupt(&[Corruption::Decode]);
const BOMB: Want = Want::Corrupt(&[Corruption::Bomb]);
const DECODE_OR_BOMB: Want = Want::Corrupt(&[Corruption::Decode, Corruption::Bomb]);

struct Case {
    name: &'static str,
    payload: Vec<u8>,
    declared: u64,
    value: Vec<u8>,
    want: Want,
}

fn cases() -> Vec<Case> {
    let v = b"The capital of France is Paris. ".repeat(40);
    let big = noise(40 << 10, 7); // a file of 16-64 KiB: inflated in steps on the task
    let good = deflate(&v, 6).unwrap();
    let body = raw_deflate(&v);
    let tr = trailer(&v);
    let n = v.len() as u64;
    let mut out = Vec::new();
    let mut case = |name, payload, declared, value: &[u8], want| {
        out.push(Case {
            name,
            payload,
            declared,
            value: value.to_vec(),
            want,
        })
    };
    case("reference", good.clone(), n, &v, Want::Value);
    case(
        "two members, declared the first",
        cat(&[&good, &good]),
        n,
        &v,
        DECODE,
    );
    case(
        "two members, declared both",
        cat(&[&good, &good]),
        2 * n,
        &v,
        DECODE,
    );
    let empty = deflate(b"", 6).unwrap();
    case(
        "member then an empty member",
        cat(&[&good, &empty]),
        n,
        &v,
        DECODE,
    );
    case(
        "empty member then the member",
        cat(&[&empty, &good]),
        n,
        &v,
        DECODE,
    );
    // Optional fields, valid: RFC 1952 members.
    let fextra = [4u8, 0, b'A', b'C', 0, 0];
    case(
        "FEXTRA valid",
        member_with(0x04, &fextra, None, &body, &tr),
        n,
        &v,
        Want::Value,
    );
    case(
        "FNAME + FCOMMENT valid",
        member_with(0x18, b"answer.txt\0a comment\0", None, &body, &tr),
        n,
        &v,
        Want::Value,
    );
    case(
        "FHCRC right",
        member_with(0x02, b"", None, &body, &tr),
        n,
        &v,
        Want::Value,
    );
    case(
        "all optional fields, FHCRC right",
        member_with(0x1e, &cat(&[&fextra, b"n\0c\0"]), None, &body, &tr),
        n,
        &v,
        Want::Value,
    );
    // Optional fields, invalid.
    let h = header(0x02);
    let right = (crc32(&h) & 0xffff) as u16;
    case(
        "FHCRC wrong",
        member_with(0x02, b"", Some(right ^ 1), &body, &tr),
        n,
        &v,
        DECODE,
    );
    case(
        "FHCRC wrong, all fields",
        member_with(0x1e, &cat(&[&fextra, b"n\0c\0"]), Some(0), &body, &tr),
        n,
        &v,
        DECODE,
    );
    case(
        "FEXTRA longer than the payload",
        member_with(0x04, &[0xff, 0xff, 1, 2], None, &body, &tr),
        n,
        &v,
        DECODE,
    );
    case(
        "FNAME never terminated",
        cat(&[&header(0x08), b"no terminator at all"]),
        n,
        &v,
        DECODE,
    );
    for (name, flg) in [
        ("reserved flag 0x20", 0x20u8),
        ("reserved flag 0x40", 0x40),
        ("reserved flag 0x80", 0x80),
    ] {
        case(name, member_with(flg, b"", None, &body, &tr), n, &v, DECODE);
    }
    let mut cm = good.clone();
    cm[2] = 7;
    case("CM 7", cm, n, &v, DECODE);
    let mut magic = good.clone();
    magic[1] = 0x8c;
    case("ID2 0x8c", magic, n, &v, DECODE);
    // Trailers.
    let mut isize = good.clone();
    let l = isize.len();
    isize[l - 4..].copy_from_slice(&((n as u32) + 1).to_le_bytes());
    case("ISIZE + 1", isize, n, &v, DECODE);
    let mut isize = good.clone();
    isize[l - 4..].copy_from_slice(&((n as u32).wrapping_add(1 << 31)).to_le_bytes());
    case("ISIZE + 2^31", isize, n, &v, DECODE);
    let mut crc = good.clone();
    crc[l - 8] ^= 0x80;
    case("CRC-32 wrong", crc, n, &v, DECODE);
    for cut in 1..=8 {
        let name: &'static str = Box::leak(format!("trailer cut by {cut}").into_boxed_str());
        case(name, good[..l - cut].to_vec(), n, &v, DECODE);
    }
    case(
        "final block, no trailer",
        cat(&[&header(0), &body]),
        n,
        &v,
        DECODE,
    );
    // Blocks.
    case(
        "stored blocks, final",
        cat(&[&header(0), &stored(&v, true), &tr]),
        n,
        &v,
        Want::Value,
    );
    case(
        "stored, non-final, ends at the buffer end",
        cat(&[&header(0), &stored(&v, false)]),
        n,
        &v,
        DECODE,
    );
    case(
        "stored, non-final, then the trailer",
        cat(&[&header(0), &stored(&v, false), &tr]),
        n,
        &v,
        DECODE_OR_BOMB,
    );
    case(
        "stored, non-final, then an empty final stored block, then the trailer",
        cat(&[&header(0), &stored(&v, false), &stored(b"", true), &tr]),
        n,
        &v,
        Want::Value,
    );
    case(
        "block type 3",
        cat(&[&header(0), &[0x07, 0, 0, 0], &tr]),
        n,
        &v,
        DECODE,
    );
    case(
        "stored block with NLEN wrong",
        cat(&[&header(0), &[1, 5, 0, 0, 0], b"hello", &trailer(b"hello")]),
        5,
        b"hello",
        DECODE,
    );
    // Declared lengths.
    case("declared + 1", good.clone(), n + 1, &v, DECODE);
    case("declared - 1", good.clone(), n - 1, &v, BOMB);
    case("declared 0, data", good.clone(), 0, &v, BOMB);
    case(
        "declared the largest value, tiny payload",
        good.clone(),
        16 << 20,
        &v,
        DECODE,
    );
    case("empty value", empty.clone(), 0, b"", Want::Value);
    case("empty value, declared 1", empty.clone(), 1, b"", DECODE);
    case("empty payload, declared 0", Vec::new(), 0, b"", DECODE);
    case("header only, declared 0", header(0), 0, b"", DECODE);
    case(
        "header and an empty final stored block only, declared 0",
        cat(&[&header(0), &stored(b"", true)]),
        0,
        b"",
        DECODE,
    );
    // Other wrappers.
    let mut z = vec![0x78, 0x9c];
    z.extend_from_slice(&body);
    z.extend_from_slice(&adler32(&v).to_be_bytes());
    case("zlib wrapper", z, n, &v, DECODE);
    case("raw deflate", body.clone(), n, &v, DECODE);
    // Bytes after the member.
    for (name, extra) in [
        ("one zero byte after", vec![0u8]),
        ("eight zero bytes after", vec![0u8; 8]),
        ("a second gzip header after", header(0)),
        ("the trailer again after", tr.clone()),
        ("1f 8b after", vec![0x1f, 0x8b]),
    ] {
        case(name, cat(&[&good, &extra]), n, &v, DECODE);
    }
    // A bomb after a whole member (trailing bytes, never inflated into the value).
    let zeros = deflate(&vec![0u8; 4 << 20], 9).unwrap();
    case("a bomb member after", cat(&[&good, &zeros]), n, &v, DECODE);
    case("a bomb, declared 64 KiB", zeros.clone(), 64 << 10, &v, BOMB);
    // Large (over 16 KiB of file: inflated in steps on the task) files.
    let bgood = deflate(&big, 1).unwrap();
    let bl = bgood.len();
    let bn = big.len() as u64;
    case("large reference", bgood.clone(), bn, &big, Want::Value);
    let mut bcrc = bgood.clone();
    bcrc[bl - 8] ^= 1;
    case("large, CRC-32 wrong", bcrc, bn, &big, DECODE);
    case("large, declared - 1", bgood.clone(), bn - 1, &big, BOMB);
    case("large, declared + 1", bgood.clone(), bn + 1, &big, DECODE);
    case(
        "large, stored non-final ending at the buffer end",
        cat(&[&header(0), &stored(&big, false)]),
        bn,
        &big,
        DECODE,
    );
    case(
        "large, a byte after",
        cat(&[&bgood, &[0]]),
        bn,
        &big,
        DECODE,
    );
    out
}

fn reason(r: &Result<format::Decoded, Invalid>) -> Option<Corruption> {
    match r {
        Err(Invalid::Corrupt(c, _)) => Some(*c),
        _ => None,
    }
}

/// Every case through `format::decode` (and `inflate_exact`): the value or one of the
/// allowed reasons, never another answer.
#[test]
fn hostile_members_through_decode() {
    let mut wrong = Vec::new();
    for c in cases() {
        let key = format!("gzip:{}", c.name);
        let file = assemble(
            key.as_bytes(),
            c.declared,
            &c.payload,
            meta(1_700_000_000_000, 0),
            2,
            FLAG_GZIP,
        );
        let got = std::panic::catch_unwind(|| format::decode(&file, key.as_bytes(), &LIMITS));
        let Ok(got) = got else {
            wrong.push(format!("{}: panicked", c.name));
            continue;
        };
        let ok = match (c.want, &got) {
            (Want::Value, Ok(d)) => d.value == c.value,
            (Want::Corrupt(allowed), r) => reason(r).is_some_and(|x| allowed.contains(&x)),
            _ => false,
        };
        // inflate_exact says the same.
        let direct = inflate_exact(&c.payload, c.declared);
        let direct_ok = match (c.want, &direct) {
            (Want::Value, Ok(v)) => *v == c.value,
            (Want::Corrupt(a), Err(InflateError::Bomb { .. })) => a.contains(&Corruption::Bomb),
            (Want::Corrupt(a), Err(InflateError::Invalid(_))) => a.contains(&Corruption::Decode),
            _ => false,
        };
        if !ok || !direct_ok {
            wrong.push(format!(
                "{}: wanted {:?}, decode gave {:?}, inflate_exact gave {:?}",
                c.name,
                c.want,
                got.as_ref().map(|d| d.value.len()),
                direct.as_ref().map(|v| v.len())
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Every hostile case planted in a live cache's directory: a miss, the file quarantined
/// (gone from its path), counted under its reason; the valid ones are hits of exactly their
/// value, and the file stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_members_through_a_live_cache() {
    let cache = TestDir::new()
        .open_cache(|b| b.hot_capacity_entries(1).memory_only_after(1000))
        .await;
    let root = cache.root().to_owned();
    scanned(&cache).await;
    let cases = cases();
    let mut want_reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let key = format!("gzip-live:{i}");
        let file = assemble(
            key.as_bytes(),
            c.declared,
            &c.payload,
            meta(now_ms() - 1000, 0),
            2,
            FLAG_GZIP,
        );
        let path = v2_path(&root, key.as_bytes());
        plant(&path, &file);
        let got = cache.get_bytes(&key).await.unwrap();
        match c.want {
            Want::Value => {
                if got.as_deref() != Some(&c.value[..]) || !path.exists() {
                    wrong.push(format!("{}: valid, got {:?}", c.name, got.map(|v| v.len())));
                }
            }
            Want::Corrupt(allowed) => {
                if got.is_some() || path.exists() {
                    wrong.push(format!(
                        "{}: served {:?}, file still there: {}",
                        c.name,
                        got.map(|v| v.len()),
                        path.exists()
                    ));
                }
                let before = want_reasons.clone();
                let s = cache.stats();
                // Which of the allowed reasons it was counted under.
                let hit = allowed.iter().find(|r| {
                    s.corrupted_by_reason.get(r.name()).copied().unwrap_or(0)
                        > before.get(r.name()).copied().unwrap_or(0)
                });
                match hit {
                    Some(r) => *want_reasons.entry(r.name().to_owned()).or_default() += 1,
                    None => wrong.push(format!(
                        "{}: not counted under {allowed:?}: {:?}",
                        c.name, s.corrupted_by_reason
                    )),
                }
            }
        }
    }
    let corrupt = cases
        .iter()
        .filter(|c| matches!(c.want, Want::Corrupt(_)))
        .count() as u64;
    let s = cache.stats();
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(s.corrupted, corrupt, "{:?}", s.corrupted_by_reason);
    assert_eq!(s.quarantined_files, corrupt);
    assert_eq!(s.disk_errors, 0, "{:?}", s.disk_errors_by_kind);
    assert_eq!(s.corrupted_by_reason, want_reasons);
}
