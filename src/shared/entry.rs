//! The shared tier's key names and what a value on the server must be (SHARED_TIER.md
//! section 3). Pure: no I/O.
//!
//! An entry's value is the FORMAT.md entry file, byte for byte as the disk holds it (with a
//! MAC key: followed by a 32-byte keyed blake3 of those bytes). A value read back goes
//! through the disk's verification: its length is bounded before anything else (the read
//! itself fetched at most one byte past the bound), the MAC and then the checksum are checked
//! before inflating, inflating has a hard limit, and the stored key must be the requested
//! one. The key never appears in a server key name, only its hash: prompts stay out of
//! `MONITOR`, `SLOWLOG` and keyspace notifications.

use super::config::MAX_SHARED_MAX_ENTRY_BYTES;
use crate::warm::format::{self, Corruption, Decoded, Invalid, Limits};
use crate::warm::layout::{hex, KeyHash};

/// Length of the keyed MAC that follows an entry when a MAC key is set.
pub(crate) const MAC_LEN: usize = 32;

/// Keys of namespace records (`agent/generation.rs`, `RECORD_PREFIX`): never shared as
/// entries (their generations are shared as `{nsgen}` keys instead). Kept here, not imported,
/// so that this layer does not reach up into the agent features; a test there pins them
/// equal.
pub(crate) const RECORD_PREFIX: &[u8] = b"\0tiercache:nsgen:";

/// Whether `key` is shared at all.
pub(crate) fn shareable(key: &[u8]) -> bool {
    !key.starts_with(RECORD_PREFIX)
}

/// `<prefix>:v1:e:<64 hex>`.
pub(crate) fn entry_key(prefix: &str, hash: &KeyHash) -> String {
    format!("{prefix}:v1:e:{}", hex(hash))
}

/// `<prefix>:v1:{nsgen}:<name>`.
pub(crate) fn generation_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:v1:{{nsgen}}:{name}")
}

/// `<prefix>:v1:lease:<64 hex>`.
pub(crate) fn lease_key(prefix: &str, hash: &KeyHash) -> String {
    format!("{prefix}:v1:lease:{}", hex(hash))
}

/// A generation as the server holds it: 16 lower-case hex digits.
pub(crate) fn generation_text(g: u64) -> String {
    format!("{g:016x}")
}

/// A generation read from the server; `None` for anything but 16 hex digits of a nonzero
/// number.
pub(crate) fn parse_generation(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 16 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    u64::from_str_radix(text, 16).ok().filter(|&g| g != 0)
}

/// The keyed MAC of `file`.
fn mac(key: &[u8; 32], file: &[u8]) -> blake3::Hash {
    blake3::keyed_hash(key, file)
}

/// The value to store for an entry file: the file, and its MAC when a key is set.
pub(crate) fn seal(file: Vec<u8>, mac_key: Option<&[u8; 32]>) -> Vec<u8> {
    match mac_key {
        None => file,
        Some(k) => {
            let tag = mac(k, &file);
            let mut out = file;
            out.extend_from_slice(tag.as_bytes());
            out
        }
    }
}

/// The longest value a valid shared entry can be.
pub(crate) fn max_value_len(max_entry_bytes: usize, mac_key: Option<&[u8; 32]>) -> usize {
    max_entry_bytes.saturating_add(if mac_key.is_some() { MAC_LEN } else { 0 })
}

/// What a value read from the server is.
#[derive(Debug)]
pub(crate) enum Checked {
    /// A valid entry of the requested key.
    Entry(Decoded),
    /// Corrupt, foreign or forged: a miss, deleted on the server, counted by reason.
    Corrupt(Corruption),
    /// Possibly valid for its writer, but not readable here: written by a newer format
    /// version (a newer replica), or an entry longer than this replica's bound (written by a
    /// replica with a larger `max_entry_bytes`, as during a rolling change of the setting).
    /// A miss, left alone, not counted as corrupt.
    Newer,
}

/// Verifies `value` (read with a bound of `max_len`, see [`max_value_len`]) as the entry of
/// `key`.
pub(crate) fn check(
    value: &[u8],
    key: &[u8],
    max_len: usize,
    mac_key: Option<&[u8; 32]>,
    limits: &Limits,
) -> Checked {
    if value.len() > max_len {
        return over_bound(value, max_len, mac_key);
    }
    let file = match mac_key {
        None => value,
        Some(k) => {
            let Some(split) = value.len().checked_sub(MAC_LEN) else {
                return Checked::Corrupt(Corruption::Truncated);
            };
            let (file, tag) = value.split_at(split);
            // `blake3::Hash`'s equality is constant-time.
            if blake3::Hash::from_slice(tag).ok() != Some(mac(k, file)) {
                return Checked::Corrupt(Corruption::Checksum);
            }
            file
        }
    };
    match format::decode(file, key, limits) {
        Ok(d) => Checked::Entry(d),
        Err(Invalid::Corrupt(reason, _)) => Checked::Corrupt(reason),
        Err(Invalid::NewerVersion(_)) => Checked::Newer,
    }
}

/// A value longer than `max_len` (of which only the first `max_len + 1` bytes were read, so
/// it cannot be verified): [`Checked::Newer`] (left alone) when it begins with an entry
/// header (of this format version or a newer one) that declares it longer than `max_len` and
/// no longer than any replica shares, since a replica with a larger `max_entry_bytes` may
/// have written it validly (adversary11 R11). Otherwise corrupt, `Oversize` as before: not an
/// entry file, a header that declares a file within the bound (so the value has trailing
/// bytes), or a length no replica shares.
fn over_bound(value: &[u8], max_len: usize, mac_key: Option<&[u8; 32]>) -> Checked {
    // Only the header's own bounds here: a writer's limits may be larger than this reader's.
    let any = Limits {
        max_key_bytes: usize::MAX,
        max_entry_bytes: usize::MAX,
    };
    let header = match format::parse_header(value, &any) {
        Ok(h) => h,
        Err(Invalid::NewerVersion(_)) => return Checked::Newer,
        Err(Invalid::Corrupt(..)) => return Checked::Corrupt(Corruption::Oversize),
    };
    let mac = if mac_key.is_some() { MAC_LEN as u64 } else { 0 };
    let declared = header.file_len().saturating_add(mac);
    let most = max_value_len(MAX_SHARED_MAX_ENTRY_BYTES, mac_key) as u64;
    if declared <= max_len as u64 || declared > most {
        Checked::Corrupt(Corruption::Oversize)
    } else {
        Checked::Newer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoding;
    use crate::warm::format::{EntryMeta, HEADER_LEN};
    use crate::warm::layout::key_hash;

    fn limits() -> Limits {
        Limits {
            max_key_bytes: 1024,
            max_entry_bytes: 1 << 20,
        }
    }

    fn file(key: &[u8], value: &[u8]) -> Vec<u8> {
        let meta = EntryMeta {
            created_ms: 5,
            expires_ms: 0,
            cost: 7,
            encoding: Encoding::Raw,
        };
        format::encode(key, value, meta, 6).unwrap()
    }

    #[test]
    fn key_names() {
        let h = key_hash(b"k");
        assert_eq!(entry_key("p", &h), format!("p:v1:e:{}", hex(&h)));
        assert_eq!(lease_key("p", &h), format!("p:v1:lease:{}", hex(&h)));
        assert_eq!(generation_key("p", "support"), "p:v1:{nsgen}:support");
        assert_eq!(generation_text(0xab), "00000000000000ab");
        assert_eq!(parse_generation(b"00000000000000ab"), Some(0xab));
        for bad in [&b"0000000000000000"[..], b"ab", b"zz000000000000ab", b""] {
            assert_eq!(parse_generation(bad), None);
        }
        assert!(!shareable(b"\0tiercache:nsgen:x"));
        assert!(shareable(b"question"));
    }

    #[test]
    fn valid_entries_pass_and_hostile_ones_are_named() {
        let f = file(b"k", b"hello");
        let max = max_value_len(1 << 20, None);
        match check(&f, b"k", max, None, &limits()) {
            Checked::Entry(d) => assert_eq!((d.value.as_slice(), d.meta.cost), (&b"hello"[..], 7)),
            other => panic!("{other:?}"),
        }
        let reason = |v: &[u8], key: &[u8]| match check(v, key, max, None, &limits()) {
            Checked::Corrupt(r) => Some(r),
            _ => None,
        };
        assert_eq!(reason(&f, b"other"), Some(Corruption::KeyMismatch));
        assert_eq!(reason(&f[..f.len() - 1], b"k"), Some(Corruption::Truncated));
        assert_eq!(reason(b"garbage", b"k"), Some(Corruption::Magic));
        let mut flipped = f.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(reason(&flipped, b"k"), Some(Corruption::Checksum));
        // Over the bound: garbage, and an entry whose header declares a shorter file.
        let too_long = vec![0u8; max + 1];
        assert_eq!(reason(&too_long, b"k"), Some(Corruption::Oversize));
        let mut padded = f.clone();
        padded.resize(max + 1, 0xAB);
        assert_eq!(reason(&padded, b"k"), Some(Corruption::Oversize));
        assert!(f.len() > HEADER_LEN);
    }

    /// adversary11 R11: an entry longer than this reader's bound, which a replica with a
    /// larger `max_entry_bytes` wrote, is left alone (not corrupt); one whose header declares
    /// more than any replica shares is corrupt.
    #[test]
    fn an_entry_over_the_readers_bound_is_left_alone() {
        // Incompressible (xorshift): the entry file is over 4 KiB.
        let mut x = 11u64;
        let value: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let f = file(b"k", &value);
        for mac_key in [None, Some([3u8; 32])] {
            let sealed = seal(f.clone(), mac_key.as_ref());
            let max = max_value_len(1024, mac_key.as_ref());
            assert!(sealed.len() > max + 1);
            let read = &sealed[..max + 1];
            assert!(
                matches!(
                    check(read, b"k", max, mac_key.as_ref(), &limits()),
                    Checked::Newer
                ),
                "mac {mac_key:?}"
            );
        }
        let mut huge = f[..1025].to_vec();
        // payload_len (bytes 32..40): 1 GiB, more than any replica shares.
        huge[32..40].copy_from_slice(&(1u64 << 30).to_le_bytes());
        assert!(matches!(
            check(&huge, b"k", 1024, None, &limits()),
            Checked::Corrupt(Corruption::Oversize)
        ));
    }

    #[test]
    fn the_mac_refuses_a_forged_entry() {
        let key = [9u8; 32];
        let sealed = seal(file(b"k", b"v"), Some(&key));
        let max = max_value_len(1 << 20, Some(&key));
        assert!(matches!(
            check(&sealed, b"k", max, Some(&key), &limits()),
            Checked::Entry(_)
        ));
        // A valid entry without the MAC (planted by someone without the key).
        let plain = file(b"k", b"forged");
        assert!(matches!(
            check(&plain, b"k", max, Some(&key), &limits()),
            Checked::Corrupt(Corruption::Checksum)
        ));
        let other = seal(file(b"k", b"v"), Some(&[1u8; 32]));
        assert!(matches!(
            check(&other, b"k", max, Some(&key), &limits()),
            Checked::Corrupt(Corruption::Checksum)
        ));
        assert!(matches!(
            check(b"short", b"k", max, Some(&key), &limits()),
            Checked::Corrupt(Corruption::Truncated)
        ));
    }
}
