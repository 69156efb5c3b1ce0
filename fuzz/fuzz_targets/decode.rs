//! Fuzzes the entry-file reader: arbitrary bytes through `format::decode` (with the key the
//! file claims and with a fixed one), `format::verify` and `inflate_exact`. The reader must
//! never panic, never allocate past its limits, and never accept a file whose checksum,
//! lengths or gzip stream are wrong.
//!
//! The first byte picks the limits (bit 0: small limits, where the bounds bite, or the
//! defaults) and whether to reseal the checksum first (bit 1); the rest is the file. Seed the
//! corpus with `../quarantine-fixtures/*.entry` (see README).

#![no_main]

use libfuzzer_sys::fuzz_target;
use answercache::warm::format::{self, Invalid, Limits, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Bit 0: small limits (where the bounds bite) or the cache defaults.
    let limits = if selector & 1 == 1 {
        Limits {
            max_key_bytes: 64,
            max_entry_bytes: 4096,
        }
    } else {
        Limits {
            max_key_bytes: 16 << 10,
            max_entry_bytes: 16 << 20,
        }
    };
    // Bit 1: recompute the checksum first, so that the input gets past it and reaches the
    // length checks, the flags and the gzip decoder (random bytes almost never match a
    // blake3 checksum by themselves).
    let mut file = rest.to_vec();
    if selector & 2 == 2 {
        format::reseal(&mut file);
    }
    let file = &file[..];
    let _ = format::parse_header(file, &limits);
    let _ = format::decode(file, b"fuzz", &limits);
    if let Ok(header) = format::verify(file, &limits) {
        // A verified file: decode with the key it stores; a success means the gzip stream
        // produced exactly the declared length.
        let key = format::stored_key(file, &header).to_vec();
        match format::decode(file, &key, &limits) {
            Ok(d) => assert_eq!(d.value.len() as u64, header.uncompressed_len),
            Err(Invalid::NewerVersion(_)) => unreachable!("verify accepted a newer version"),
            Err(Invalid::Corrupt(..)) => {}
        }
        let payload = &file[HEADER_LEN + header.key_len as usize..];
        if let Err(format::InflateError::Bomb { inflated }) =
            format::inflate_exact(payload, header.uncompressed_len)
        {
            assert!(inflated as u64 <= header.uncompressed_len + format::INFLATE_CHUNK as u64);
        }
    }
});
