//! Hostile checksum-valid members whose fault shows exactly at a 64 KiB step boundary, and
//! valid members whose blocks end or straddle there.
//!
//! Each case goes through `ExactInflater::<Arc<[u8]>>` stepped with 64 KiB budgets (the
//! inline path's `Inflating::step`), which must agree with the one-shot `inflate_exact`, and
//! through a live cache: a valid one is a hit of exactly its value (on the stepped path, with
//! exactly one yield per 64 KiB after the first, when its file is at most 64 KiB and its value
//! at most 1 MiB), a hostile one a miss counted once under its exact reason, its file
//! quarantined, no disk error (a caught panic would count one).

use std::sync::Arc;

use answercache::warm::format::{
    deflate, inflate_exact, ExactInflater, InflateError, INFLATE_CHUNK,
};

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Value(Vec<u8>),
    Bomb,
    Decode,
}

struct Case {
    name: String,
    payload: Vec<u8>,
    declared: u64,
    want: Want,
    /// For a valid plain member: the steps of 64 KiB it takes, less one.
    yields: Option<u32>,
}

fn case(out: &mut Vec<Case>, name: String, payload: Vec<u8>, declared: u64, want: Want) {
    let yields = match &want {
        Want::Value(v) => Some(yields_for(v.len())),
        _ => None,
    };
    out.push(Case {
        name,
        payload,
        declared,
        want,
        yields,
    });
}

/// `m` with a header field after the fixed header: FEXTRA (`flag` 4, `xlen` bytes) or
/// FCOMMENT (`flag` 0x10, `xlen` bytes and a NUL).
fn with_field(m: &[u8], flag: u8, xlen: usize) -> Vec<u8> {
    let mut out = m[..10].to_vec();
    out[3] |= flag;
    if flag == 4 {
        out.extend_from_slice(&(xlen as u16).to_le_bytes());
        out.extend(std::iter::repeat_n(b'x', xlen));
    } else {
        out.extend(std::iter::repeat_n(b'c', xlen));
        out.push(0);
    }
    out.extend_from_slice(&m[10..]);
    out
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    // Plain members of text around the step boundaries: every fault shows at the last step.
    for n in [
        STEP - 1,
        STEP,
        STEP + 1,
        2 * STEP - 1,
        2 * STEP,
        2 * STEP + 1,
        VALUE_MAX - 1,
        VALUE_MAX,
    ] {
        let v = text(n, n as u64);
        let m = deflate(&v, 6).unwrap();
        let l = m.len();
        let n64 = n as u64;
        case(
            &mut out,
            format!("{n}: valid"),
            m.clone(),
            n64,
            Want::Value(v.clone()),
        );
        case(
            &mut out,
            format!("{n}: declared one less"),
            m.clone(),
            n64 - 1,
            Want::Bomb,
        );
        case(
            &mut out,
            format!("{n}: declared one more"),
            m.clone(),
            n64 + 1,
            Want::Decode,
        );
        let mut crc = m.clone();
        crc[l - 8] ^= 1;
        case(
            &mut out,
            format!("{n}: CRC-32 wrong"),
            crc,
            n64,
            Want::Decode,
        );
        let mut isize = m.clone();
        isize[l - 4..].copy_from_slice(&(n as u32 + 1).to_le_bytes());
        case(
            &mut out,
            format!("{n}: ISIZE + 1"),
            isize,
            n64,
            Want::Decode,
        );
        for cut in [1, 8] {
            case(
                &mut out,
                format!("{n}: trailer cut by {cut}"),
                m[..l - cut].to_vec(),
                n64,
                Want::Decode,
            );
        }
        case(
            &mut out,
            format!("{n}: a zero byte after"),
            [&m[..], &[0]].concat(),
            n64,
            Want::Decode,
        );
        case(
            &mut out,
            format!("{n}: two members, one declared"),
            [&m[..], &m[..]].concat(),
            n64,
            Want::Decode,
        );
        case(
            &mut out,
            format!("{n}: two members, both declared"),
            [&m[..], &m[..]].concat(),
            2 * n64,
            Want::Decode,
        );
    }
    // A compressed block that ends exactly at 64 KiB of value (full flush: byte-aligned),
    // then a stored block of noise: the second step is the stored block.
    let a = text(STEP, 1);
    let b = noise(60_000, 2);
    let ab = [&a[..], &b[..]].concat();
    let head = [&gz_header(0)[..], &deflate_flushed(&a, 6)[..]].concat();
    let m1 = [&head[..], &stored(&b, true), &trailer(&ab)].concat();
    let n1 = ab.len() as u64;
    case(
        &mut out,
        "block ends at 64 KiB, stored after: valid".into(),
        m1.clone(),
        n1,
        Want::Value(ab.clone()),
    );
    case(
        &mut out,
        "block ends at 64 KiB, stored after: declared 64 KiB".into(),
        m1.clone(),
        STEP as u64,
        Want::Bomb,
    );
    case(
        &mut out,
        "block ends at 64 KiB, stored after: declared 64 KiB + 1".into(),
        m1.clone(),
        STEP as u64 + 1,
        Want::Bomb,
    );
    case(
        &mut out,
        "block ends at 64 KiB, stored after: declared one more".into(),
        m1.clone(),
        n1 + 1,
        Want::Decode,
    );
    case(
        &mut out,
        "block ends at 64 KiB, stored after: declared one less".into(),
        m1.clone(),
        n1 - 1,
        Want::Bomb,
    );
    let mut nlen = m1.clone();
    // The stored block's NLEN (after its header byte and LEN).
    let at = head.len() + 3;
    nlen[at] ^= 1;
    case(
        &mut out,
        "block ends at 64 KiB, stored after: NLEN wrong".into(),
        nlen,
        n1,
        Want::Decode,
    );
    case(
        &mut out,
        "block ends at 64 KiB, stored after, not final, no trailer".into(),
        [&head[..], &stored(&b, false)].concat(),
        n1,
        Want::Decode,
    );
    case(
        &mut out,
        "block ends at 64 KiB, nothing after".into(),
        head.clone(),
        STEP as u64,
        Want::Decode,
    );
    // The same first block, then an empty final stored block: exactly 64 KiB, one step.
    let m2 = [&head[..], &stored(b"", true), &trailer(&a)].concat();
    case(
        &mut out,
        "block ends at 64 KiB, empty final block: valid".into(),
        m2.clone(),
        STEP as u64,
        Want::Value(a.clone()),
    );
    case(
        &mut out,
        "block ends at 64 KiB, empty final block: declared one more".into(),
        m2.clone(),
        STEP as u64 + 1,
        Want::Decode,
    );
    case(
        &mut out,
        "block ends at 64 KiB, empty final block: declared one less".into(),
        m2.clone(),
        STEP as u64 - 1,
        Want::Bomb,
    );
    case(
        &mut out,
        "block ends at 64 KiB, empty final block, stored block after the trailer".into(),
        [&m2[..], &stored(&b, true)].concat(),
        STEP as u64,
        Want::Decode,
    );
    // A stored block that straddles the boundary: 40,000 bytes of zeros compressed, then
    // 60,000 of noise stored (the first step ends 25,536 bytes into it).
    let z = vec![0u8; 40_000];
    let zb = [&z[..], &b[..]].concat();
    let zhead = [&gz_header(0)[..], &deflate_flushed(&z, 9)[..]].concat();
    let m3 = [&zhead[..], &stored(&b, true), &trailer(&zb)].concat();
    let n3 = zb.len() as u64;
    case(
        &mut out,
        "stored block straddles 64 KiB: valid".into(),
        m3.clone(),
        n3,
        Want::Value(zb.clone()),
    );
    case(
        &mut out,
        "stored block straddles 64 KiB: declared 64 KiB".into(),
        m3.clone(),
        STEP as u64,
        Want::Bomb,
    );
    case(
        &mut out,
        "stored block straddles 64 KiB: declared one more".into(),
        m3.clone(),
        n3 + 1,
        Want::Decode,
    );
    let mut cut = m3.clone();
    cut.truncate(zhead.len() + 5 + 30_000);
    case(
        &mut out,
        "stored block straddles 64 KiB: cut inside the block".into(),
        cut,
        n3,
        Want::Decode,
    );
    // A compressed block ending at 64 KiB, then a final compressed block of 64 KiB + 1: the
    // second step ends one byte short of the value.
    let c = text(STEP + 1, 3);
    let ac = [&a[..], &c[..]].concat();
    let mc = [
        &head[..],
        &deflate(&c, 6).unwrap()[10..deflate(&c, 6).unwrap().len() - 8],
        &trailer(&ac),
    ]
    .concat();
    let nc = ac.len() as u64;
    case(
        &mut out,
        "two compressed blocks, 64 KiB then 64 KiB + 1: valid".into(),
        mc.clone(),
        nc,
        Want::Value(ac.clone()),
    );
    case(
        &mut out,
        "two compressed blocks: declared 128 KiB".into(),
        mc.clone(),
        2 * STEP as u64,
        Want::Bomb,
    );
    case(
        &mut out,
        "two compressed blocks: declared one more".into(),
        mc.clone(),
        nc + 1,
        Want::Decode,
    );
    // A member of stored blocks of exactly 64 KiB of value (its file is over 64 KiB: the
    // blocking pool reads it), and of 64 KiB - 200 (its file fits: one inline step).
    for n in [STEP, STEP - 200] {
        let s = noise(n, n as u64);
        let ms = [&gz_header(0)[..], &stored(&s, true), &trailer(&s)].concat();
        let n64 = n as u64;
        case(
            &mut out,
            format!("stored {n}: valid"),
            ms.clone(),
            n64,
            Want::Value(s.clone()),
        );
        case(
            &mut out,
            format!("stored {n}: declared one less"),
            ms.clone(),
            n64 - 1,
            Want::Bomb,
        );
        case(
            &mut out,
            format!("stored {n}: declared one more"),
            ms.clone(),
            n64 + 1,
            Want::Decode,
        );
        case(
            &mut out,
            format!("stored {n}: a second member of one byte"),
            [&ms[..], &deflate(b"x", 6).unwrap()].concat(),
            n64 + 1,
            Want::Decode,
        );
    }
    // Long optional header fields: the first step reads ~60 KB of header before any value.
    let v = text(2 * STEP, 4);
    let m = deflate(&v, 6).unwrap();
    let nv = v.len() as u64;
    let fx = with_field(&m, 4, 60_000);
    let fc = with_field(&m, 0x10, 60_000);
    for (name, f) in [("FEXTRA", &fx), ("FCOMMENT", &fc)] {
        let mut c = Vec::new();
        case(
            &mut c,
            format!("{name} 60000, 128 KiB: valid"),
            f.clone(),
            nv,
            Want::Value(v.clone()),
        );
        case(
            &mut c,
            format!("{name} 60000, 128 KiB: declared one less"),
            f.clone(),
            nv - 1,
            Want::Bomb,
        );
        case(
            &mut c,
            format!("{name} 60000, 128 KiB: declared one more"),
            f.clone(),
            nv + 1,
            Want::Decode,
        );
        case(
            &mut c,
            format!("{name} 60000, 128 KiB: declared 64 KiB"),
            f.clone(),
            STEP as u64,
            Want::Bomb,
        );
        let l = f.len();
        case(
            &mut c,
            format!("{name} 60000, 128 KiB: trailer cut"),
            f[..l - 8].to_vec(),
            nv,
            Want::Decode,
        );
        // A header field adds input, not value: the yields are not one per 64 KiB of value
        // here when zlib stops after the header.
        for x in &mut c {
            x.yields = None;
        }
        out.extend(c);
    }
    out
}

/// Steps `payload` with 64 KiB budgets as the inline path does: the verdict and the number of
/// steps that returned `Ok(false)`.
fn stepped(payload: &[u8], declared: u64) -> (Result<Vec<u8>, InflateError>, u32) {
    let mut inf = match ExactInflater::<Arc<[u8]>>::new(declared) {
        Ok(i) => i,
        Err(e) => return (Err(e), 0),
    };
    let mut unfinished = 0;
    loop {
        match inf.step(payload, STEP) {
            Ok(true) => return (Ok(inf.into_value().to_vec()), unfinished),
            Ok(false) => unfinished += 1,
            Err(e) => return (Err(e), unfinished),
        }
    }
}

#[test]
fn boundary_members_through_the_64k_stepped_inflater() {
    let mut wrong = Vec::new();
    for c in cases() {
        let one_shot = inflate_exact(&c.payload, c.declared);
        let (got, unfinished) = stepped(&c.payload, c.declared);
        if got != one_shot {
            wrong.push(format!(
                "{}: stepped {:?} != one shot {:?}",
                c.name,
                got.as_ref().map(Vec::len),
                one_shot.as_ref().map(Vec::len)
            ));
            continue;
        }
        let ok = match (&c.want, &got) {
            (Want::Value(v), Ok(g)) => g == v && c.yields.is_none_or(|y| y == unfinished),
            (Want::Bomb, Err(InflateError::Bomb { inflated })) => {
                (*inflated as u64) > c.declared
                    && (*inflated as u64) <= c.declared + INFLATE_CHUNK as u64
            }
            (Want::Decode, Err(InflateError::Invalid(_))) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{}: wanted {}, got {:?} after {unfinished} unfinished steps (expected {:?})",
                c.name,
                match &c.want {
                    Want::Value(v) => format!("{} bytes", v.len()),
                    w => format!("{w:?}"),
                },
                got.as_ref().map(Vec::len),
                c.yields
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

async fn through_a_live_cache(tag: &str) {
    let cache = open().await;
    let root = cache.root().to_owned();
    let mut wrong = Vec::new();
    let (mut bombs, mut decodes) = (0, 0);
    for (i, c) in cases().into_iter().enumerate() {
        let key = format!("{tag}:{i}");
        let file = resealed(&key, c.declared, &c.payload, now_ms());
        let path = v2_path(&root, key.as_bytes());
        plant(&path, &file);
        let inline = file.len() <= FILE_MAX && c.declared <= VALUE_MAX as u64;
        let before = cache.stats();
        let (got, yields) = get_counting_yields(&cache, &key).await;
        let after = cache.stats();
        let m = moved(&before, &after);
        let ok = match &c.want {
            Want::Value(v) => {
                let want = if inline { STEPPED_HIT } else { POOL_HIT };
                got.as_deref() == Some(&v[..])
                    && m == want
                    && file_is(&root, &key, &file)
                    && (!inline || c.yields.is_none_or(|y| y == yields))
            }
            Want::Bomb | Want::Decode => {
                let reason = if c.want == Want::Bomb {
                    bombs += 1;
                    "bomb"
                } else {
                    decodes += 1;
                    "decode"
                };
                got.is_none()
                    && m == CORRUPT_MISS
                    && reason_count(&after, reason) == reason_count(&before, reason) + 1
                    && !path.exists()
            }
        };
        if !ok {
            wrong.push(format!(
                "{} ({} bytes of file, inline {inline}): got {:?} after {yields} yields \
                 (expected {:?}), moved {m:?}, reasons {:?}, file there {}",
                c.name,
                file.len(),
                got.as_ref().map(|g| g.len()),
                c.yields,
                after.corrupted_by_reason,
                path.exists()
            ));
        }
        // Planted after the scan, never indexed: removed so that the index equals the disk.
        cache.remove(&key).await.unwrap();
        evict_hot(&cache).await;
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let s = cache.stats();
    assert_eq!(
        (
            reason_count(&s, "bomb"),
            reason_count(&s, "decode"),
            s.corrupted,
            s.quarantined_files,
            s.disk_errors
        ),
        (bombs, decodes, bombs + decodes, bombs + decodes, 0),
        "{:?}",
        s.corrupted_by_reason
    );
    cache.flush().await.unwrap();
    index_matches_disk(&cache, &root).unwrap();
}

#[test]
fn boundary_members_through_a_live_cache_multi_thread() {
    mt(2).block_on(through_a_live_cache("mt"));
}

#[test]
fn boundary_members_through_a_live_cache_current_thread() {
    ct().block_on(through_a_live_cache("ct"));
}

#[test]
fn boundary_members_through_a_live_cache_local_set() {
    let rt = ct();
    tokio::task::LocalSet::new().block_on(&rt, through_a_live_cache("local"));
}

/// Values whose every match reaches far back (noise of period `p` repeated: a match at
/// distance `p`, up to deflate's 32 KiB window), so that the matches that straddle each
/// 64 KiB step boundary copy from zlib's window (the output of a step is twice the window),
/// at levels 1, 6 and 9: stepping with 64 KiB budgets (and one byte less or more) gives
/// exactly the value, in exactly one step per 64 KiB, and so does a live cache.
#[test]
fn long_distance_matches_across_64k_steps() {
    let mut wrong = Vec::new();
    let mut values = Vec::new();
    for p in [32_768usize, 32_767, 32_000, 16_385, 4_096, 258, 3] {
        for len in [2 * STEP + 1, 5 * STEP - 1, VALUE_MAX] {
            let unit = noise(p, p as u64);
            let v: Vec<u8> = unit.iter().copied().cycle().take(len).collect();
            for level in [1u32, 6, 9] {
                let m = deflate(&v, level).unwrap();
                for budget in [STEP - 1, STEP, STEP + 1] {
                    let mut inf = ExactInflater::<Arc<[u8]>>::new(v.len() as u64).unwrap();
                    let mut unfinished = 0u32;
                    let got = loop {
                        match inf.step(&m, budget) {
                            Ok(true) => break Ok(inf.into_value()),
                            Ok(false) => unfinished += 1,
                            Err(e) => break Err(e),
                        }
                    };
                    let want_steps = len.div_ceil(budget) as u32 - 1;
                    match got {
                        Ok(g) if *g == *v && unfinished == want_steps => {}
                        other => wrong.push(format!(
                            "period {p}, {len} bytes, level {level}, budget {budget}: {:?} \
                             after {unfinished} unfinished steps (want {want_steps})",
                            other.map(|g| (g.len(), *g == *v))
                        )),
                    }
                }
                values.push((format!("far:{p}:{len}:{level}"), v.clone(), m));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Through a live cache, from the files the members make.
    ct().block_on(async {
        let cache = open().await;
        let root = cache.root().to_owned();
        for (key, v, m) in &values {
            let file = resealed(key, v.len() as u64, m, now_ms());
            let inline = file.len() <= FILE_MAX;
            plant(&v2_path(&root, key.as_bytes()), &file);
            let s0 = cache.stats();
            let (got, yields) = get_counting_yields(&cache, key).await;
            let mv = moved(&s0, &cache.stats());
            let want = if inline { STEPPED_HIT } else { POOL_HIT };
            if got.as_deref() != Some(&v[..])
                || mv != want
                || (inline && yields != yields_for(v.len()))
            {
                wrong.push(format!(
                    "{key} ({} bytes of file): {:?} after {yields} yields, moved {mv:?}",
                    file.len(),
                    got.map(|g| g.len())
                ));
            }
            cache.remove(key).await.unwrap();
            evict_hot(&cache).await;
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        let s = cache.stats();
        assert!(s.inline_reads > 0);
        assert_eq!((s.corrupted, s.disk_errors), (0, 0));
    });
}
