//! Entry file format v1: encode and verify. Pure: bytes in, bytes out, no file system.
//!
//! The byte-for-byte description lives in FORMAT.md; this module is its implementation. The
//! reader distrusts every byte: it bounds every declared length before allocating, checks the
//! exact file length, verifies the blake3 checksum *before* inflating (so a damaged payload
//! never reaches the decompressor), compares the stored key with the requested one (so a file
//! planted at another key's path is never served), and inflates with a hard limit (so a
//! "gzip bomb" costs at most the limit plus one buffer).

use std::io::{self, Write};

use flate2::Compression;

pub use crate::codec::Encoding;

/// The first eight bytes of every entry file.
pub const MAGIC: [u8; 8] = *b"TIERCACH";
/// The format version this build writes (and the newest it reads). Version 2 records the
/// value's [`Encoding`] in the flags; version 1 files (no encoding recorded) are still read.
pub const VERSION: u16 = 2;
/// The oldest format version this build can read.
pub const MIN_VERSION: u16 = 1;
/// Size of the fixed header, checksum included.
pub const HEADER_LEN: usize = 88;
/// Offset of the checksum inside the header; the checksum covers `header[..CHECKSUM_OFFSET]`,
/// the key and the payload.
pub const CHECKSUM_OFFSET: usize = 56;
/// Flag bit 0: the payload is a gzip member (always set in v1).
pub const FLAG_GZIP: u16 = 1;
/// Flag bits 1 and 2 (version 2): the value's encoding. `0` raw, `1` JSON, `2` bincode; `3` is
/// reserved (corrupt: `flags`).
pub const FLAG_ENCODING_MASK: u16 = 0b110;
/// Flag bits a version-1 reader understands.
const KNOWN_FLAGS_V1: u16 = FLAG_GZIP;
/// Flag bits a version-2 reader understands.
const KNOWN_FLAGS_V2: u16 = FLAG_GZIP | FLAG_ENCODING_MASK;

/// The 8-byte shape fingerprint (little-endian) that starts the value of a bincode entry
/// (FORMAT.md, "Value and its encoding"), for tools that write entries themselves. `None` if
/// the value's `Serialize` fails.
pub fn bincode_shape<V: serde::Serialize + ?Sized>(value: &V) -> Option<u64> {
    crate::codec::shape_of(value).ok()
}

/// The flags of a version-2 entry holding a value of `encoding`.
pub fn flags_for(encoding: Encoding) -> u16 {
    let code = match encoding {
        // Unrecorded is what a version-1 file says; a version-2 writer records raw for it
        // (it never writes one: values reach the disk with the encoding they were set with).
        Encoding::Raw | Encoding::Unrecorded => 0,
        Encoding::Json => 1,
        Encoding::Bincode => 2,
    };
    FLAG_GZIP | (code << 1)
}

/// The encoding a header records, or `None` for the reserved code.
fn encoding_of(version: u16, flags: u16) -> Option<Encoding> {
    if version < 2 {
        return Some(Encoding::Unrecorded);
    }
    match (flags & FLAG_ENCODING_MASK) >> 1 {
        0 => Some(Encoding::Raw),
        1 => Some(Encoding::Json),
        2 => Some(Encoding::Bincode),
        _ => None,
    }
}
/// Output is produced in chunks of this size while inflating, so a bomb is stopped within one
/// chunk of the limit.
pub const INFLATE_CHUNK: usize = 16 * 1024;

/// Metadata stored with every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryMeta {
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Expiry time, unix ms; 0 means never.
    pub expires_ms: u64,
    /// Caller-supplied cost of producing the value (tokens, micro-dollars, ...); 0 if none.
    pub cost: u64,
    /// How the value's bytes were made (recorded in the flags, format version 2).
    pub encoding: Encoding,
}

impl EntryMeta {
    /// True when the entry has an expiry and `now_ms` is at or past it.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && now_ms >= self.expires_ms
    }
}

/// The parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u16,
    /// Flag bits.
    pub flags: u16,
    /// Length of the key that follows the header.
    pub key_len: u32,
    /// Times and cost.
    pub meta: EntryMeta,
    /// Length of the gzip payload after the key.
    pub payload_len: u64,
    /// Length of the value after inflating.
    pub uncompressed_len: u64,
    /// blake3 over header bytes `0..56`, key and payload.
    pub checksum: [u8; 32],
}

impl Header {
    /// Exact length of the whole file this header describes.
    pub fn file_len(&self) -> u64 {
        (HEADER_LEN as u64)
            .saturating_add(u64::from(self.key_len))
            .saturating_add(self.payload_len)
    }
}

/// Why a file is not a valid entry. Each reason has a stable name used in quarantine file
/// names, sidecars and `Stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    /// The checksum does not match the bytes.
    Checksum,
    /// The file does not start with the magic bytes.
    Magic,
    /// The format version is older than any this build reads.
    VersionTooOld,
    /// Flag bits this version does not define are set.
    Flags,
    /// The payload does not inflate to exactly the declared value.
    Decode,
    /// The stored key differs from the key whose path the file sits at.
    KeyMismatch,
    /// A declared length, or the file itself, is over the configured limits.
    Oversize,
    /// The file is shorter than its header says.
    Truncated,
    /// The file is longer than its header says.
    TrailingBytes,
    /// The payload inflates past the declared length (a decompression bomb).
    Bomb,
    /// A symlink, directory, FIFO, socket or device sits at an entry path.
    NotARegularFile,
}

impl Corruption {
    /// Every reason, in a fixed order.
    pub const ALL: [Corruption; 11] = [
        Corruption::Checksum,
        Corruption::Magic,
        Corruption::VersionTooOld,
        Corruption::Flags,
        Corruption::Decode,
        Corruption::KeyMismatch,
        Corruption::Oversize,
        Corruption::Truncated,
        Corruption::TrailingBytes,
        Corruption::Bomb,
        Corruption::NotARegularFile,
    ];

    /// The stable name: `checksum`, `magic`, `version-too-old`, `flags`, `decode`,
    /// `key-mismatch`, `oversize`, `truncated`, `trailing-bytes`, `bomb`, `not-a-regular-file`.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::Checksum => "checksum",
            Corruption::Magic => "magic",
            Corruption::VersionTooOld => "version-too-old",
            Corruption::Flags => "flags",
            Corruption::Decode => "decode",
            Corruption::KeyMismatch => "key-mismatch",
            Corruption::Oversize => "oversize",
            Corruption::Truncated => "truncated",
            Corruption::TrailingBytes => "trailing-bytes",
            Corruption::Bomb => "bomb",
            Corruption::NotARegularFile => "not-a-regular-file",
        }
    }

    /// Parses a stable name back.
    pub fn from_name(name: &str) -> Option<Corruption> {
        Corruption::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Position in [`Corruption::ALL`].
    pub fn index(self) -> usize {
        Corruption::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of a failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The file is corrupt (or hostile): quarantine it.
    Corrupt(Corruption, String),
    /// The file was written by a newer format version: a miss, and the file is left alone
    /// because a newer process may share the directory.
    NewerVersion(u16),
}

impl Invalid {
    fn corrupt(reason: Corruption, detail: impl Into<String>) -> Self {
        Invalid::Corrupt(reason, detail.into())
    }
}

/// Limits applied while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key accepted.
    pub max_key_bytes: usize,
    /// Longest value (uncompressed) accepted.
    pub max_entry_bytes: usize,
}

impl Default for Limits {
    /// The limits of a cache built with the default settings
    /// ([`DEFAULT_MAX_KEY_BYTES`](crate::defaults::DEFAULT_MAX_KEY_BYTES),
    /// [`DEFAULT_MAX_ENTRY_BYTES`](crate::defaults::DEFAULT_MAX_ENTRY_BYTES)).
    fn default() -> Limits {
        Limits {
            max_key_bytes: crate::defaults::DEFAULT_MAX_KEY_BYTES,
            max_entry_bytes: crate::defaults::DEFAULT_MAX_ENTRY_BYTES,
        }
    }
}

impl Limits {
    /// Longest gzip payload a valid value of `max_entry_bytes` can need: deflate's worst-case
    /// expansion on incompressible data (5 bytes per 16 KiB stored block) plus the gzip
    /// header and trailer, with room to spare.
    pub fn max_payload_bytes(&self) -> u64 {
        let n = self.max_entry_bytes as u64;
        n.saturating_add(n / 1024).saturating_add(1024)
    }

    /// Longest file a valid entry can be.
    pub fn max_file_bytes(&self) -> u64 {
        (HEADER_LEN as u64)
            .saturating_add(self.max_key_bytes as u64)
            .saturating_add(self.max_payload_bytes())
    }
}

/// A verified entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Times and cost.
    pub meta: EntryMeta,
    /// The value, inflated.
    pub value: Vec<u8>,
}

/// Builds a complete entry file: header, key, gzip payload.
pub fn encode(key: &[u8], value: &[u8], meta: EntryMeta, level: u32) -> io::Result<Vec<u8>> {
    if level == 0 && !value.is_empty() {
        // Laid out in the file's buffer directly: one copy of the value, not two.
        return Ok(assemble_with(
            key,
            value.len() as u64,
            stored_member_len(value.len()),
            meta,
            VERSION,
            flags_for(meta.encoding),
            |out| push_stored_member(out, value),
        ));
    }
    let payload = deflate(value, level)?;
    Ok(assemble(
        key,
        value.len() as u64,
        &payload,
        meta,
        VERSION,
        flags_for(meta.encoding),
    ))
}

/// The least a gzip member of stored (level 0) blocks adds to its data: a 10-byte header, one
/// 5-byte block header and the 8-byte trailer.
pub const GZIP_STORED_OVERHEAD: u64 = 10 + 5 + 8;

/// Compresses `value` as one gzip member (mtime 0, so output is deterministic). Level 0 is
/// [`stored_member`].
pub fn deflate(value: &[u8], level: u32) -> io::Result<Vec<u8>> {
    if level == 0 && !value.is_empty() {
        return Ok(stored_member(value));
    }
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(value.len() / 2 + 64),
        Compression::new(level.min(9)),
    );
    enc.write_all(value)?;
    enc.finish()
}

/// The longest stored deflate block.
const STORED_BLOCK_MAX: usize = 65_535;

/// `value` as one gzip member of stored deflate blocks (level 0), laid out directly: the
/// header flate2 writes for level 0 (`1f 8b 08 00`, mtime 0, XFL 4, OS 255), blocks of at
/// most 65,535 bytes (each a 5-byte header, then the bytes; the last marked final), then
/// CRC-32 and ISIZE. The same bytes as flate2's for values up to its 32 KiB buffer; for larger
/// ones fewer blocks (flate2 ends a block at each buffer flush). A copy and a CRC: about a
/// third of the time of `GzEncoder` at level 0 for 64 KiB (BENCHMARKS.md, "Session 19").
/// `value` must not be empty (flate2 writes an empty member differently).
fn stored_member(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_member_len(value.len()));
    push_stored_member(&mut out, value);
    out
}

/// The length of [`stored_member`]'s output for a value of `len` bytes.
fn stored_member_len(len: usize) -> usize {
    10 + len.div_ceil(STORED_BLOCK_MAX) * 5 + len + 8
}

/// Appends [`stored_member`]'s output for `value` to `out`.
fn push_stored_member(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff]);
    let mut chunks = value.chunks(STORED_BLOCK_MAX).peekable();
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        // A chunk is at most 65,535 bytes: the conversion never saturates.
        let n = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(value);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
}

/// Lays out header + key + payload and computes the checksum. Public to the crate so that
/// fixtures can build files with arbitrary versions and flags.
pub fn assemble(
    key: &[u8],
    uncompressed_len: u64,
    payload: &[u8],
    meta: EntryMeta,
    version: u16,
    flags: u16,
) -> Vec<u8> {
    assemble_with(
        key,
        uncompressed_len,
        payload.len(),
        meta,
        version,
        flags,
        |out| out.extend_from_slice(payload),
    )
}

/// [`assemble`] with the payload (`payload_len` bytes) appended by `push_payload` to the
/// file's buffer, after the key: the checksum is computed over it in place.
fn assemble_with(
    key: &[u8],
    uncompressed_len: u64,
    payload_len: usize,
    meta: EntryMeta,
    version: u16,
    flags: u16,
    push_payload: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + key.len() + payload_len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&meta.created_ms.to_le_bytes());
    out.extend_from_slice(&meta.expires_ms.to_le_bytes());
    out.extend_from_slice(&(payload_len as u64).to_le_bytes());
    out.extend_from_slice(&uncompressed_len.to_le_bytes());
    out.extend_from_slice(&meta.cost.to_le_bytes());
    debug_assert_eq!(out.len(), CHECKSUM_OFFSET);
    out.extend_from_slice(&[0; HEADER_LEN - CHECKSUM_OFFSET]);
    out.extend_from_slice(key);
    let payload_at = out.len();
    push_payload(&mut out);
    debug_assert_eq!(out.len() - payload_at, payload_len);
    let (head, rest) = out.split_at_mut(HEADER_LEN);
    let (key, payload) = rest.split_at(key.len());
    let sum = checksum(&head[..CHECKSUM_OFFSET], key, payload);
    head[CHECKSUM_OFFSET..].copy_from_slice(&sum);
    out
}

/// Recomputes the checksum of a file in place (for fixtures that alter a field on purpose and
/// want the file to stay checksum-valid). Does nothing if the file is shorter than a header.
pub fn reseal(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let key_len = le_u32(&file[12..16]) as usize;
    let key_end = HEADER_LEN.saturating_add(key_len).min(file.len());
    let sum = checksum(
        &file[..CHECKSUM_OFFSET],
        &file[HEADER_LEN..key_end],
        &file[key_end..],
    );
    file[CHECKSUM_OFFSET..HEADER_LEN].copy_from_slice(&sum);
}

fn checksum(header: &[u8], key: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(header);
    h.update(key);
    h.update(payload);
    *h.finalize().as_bytes()
}

fn le_u16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Parses and bounds the fixed header. `bytes` may be longer than the header.
pub fn parse_header(bytes: &[u8], limits: &Limits) -> Result<Header, Invalid> {
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            Invalid::corrupt(Corruption::Truncated, format!("{} bytes", bytes.len()))
        } else {
            Invalid::corrupt(Corruption::Magic, "bad magic")
        });
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(Invalid::corrupt(Corruption::Magic, "bad magic"));
    }
    if bytes.len() < HEADER_LEN {
        return Err(Invalid::corrupt(
            Corruption::Truncated,
            format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    let version = le_u16(&bytes[8..10]);
    if version > VERSION {
        return Err(Invalid::NewerVersion(version));
    }
    if version < MIN_VERSION {
        return Err(Invalid::corrupt(
            Corruption::VersionTooOld,
            format!("version {version}"),
        ));
    }
    let mut checksum = [0u8; 32];
    checksum.copy_from_slice(&bytes[CHECKSUM_OFFSET..HEADER_LEN]);
    let header = Header {
        version,
        flags: le_u16(&bytes[10..12]),
        key_len: le_u32(&bytes[12..16]),
        meta: EntryMeta {
            created_ms: le_u64(&bytes[16..24]),
            expires_ms: le_u64(&bytes[24..32]),
            cost: le_u64(&bytes[48..56]),
            // The reserved code is refused by `verify` (step 13); until then, raw.
            encoding: encoding_of(version, le_u16(&bytes[10..12])).unwrap_or(Encoding::Raw),
        },
        payload_len: le_u64(&bytes[32..40]),
        uncompressed_len: le_u64(&bytes[40..48]),
        checksum,
    };
    if header.key_len as usize > limits.max_key_bytes {
        return Err(Invalid::corrupt(
            Corruption::Oversize,
            format!(
                "key length {} over {}",
                header.key_len, limits.max_key_bytes
            ),
        ));
    }
    if header.uncompressed_len > limits.max_entry_bytes as u64 {
        return Err(Invalid::corrupt(
            Corruption::Oversize,
            format!(
                "value length {} over {}",
                header.uncompressed_len, limits.max_entry_bytes
            ),
        ));
    }
    if header.payload_len > limits.max_payload_bytes() {
        return Err(Invalid::corrupt(
            Corruption::Oversize,
            format!(
                "payload length {} over {}",
                header.payload_len,
                limits.max_payload_bytes()
            ),
        ));
    }
    Ok(header)
}

/// Verifies a whole entry file and inflates its value. `key` is the key whose path the file
/// was read from.
pub fn decode(file: &[u8], key: &[u8], limits: &Limits) -> Result<Decoded, Invalid> {
    let header = verify_keyed(file, key, limits)?;
    let key_end = HEADER_LEN + header.key_len as usize;
    let value = inflate_exact(&file[key_end..], header.uncompressed_len)
        .map_err(|e| inflate_invalid(&header, e))?;
    Ok(Decoded {
        meta: header.meta,
        value,
    })
}

/// [`verify`], then the stored key against `key`: everything [`decode`] checks before it
/// inflates.
fn verify_keyed(file: &[u8], key: &[u8], limits: &Limits) -> Result<Header, Invalid> {
    let header = verify(file, limits)?;
    let key_end = HEADER_LEN + header.key_len as usize;
    if &file[HEADER_LEN..key_end] != key {
        return Err(Invalid::corrupt(
            Corruption::KeyMismatch,
            "stored key differs from the requested key",
        ));
    }
    Ok(header)
}

/// What a failed inflate of a verified file is.
fn inflate_invalid(header: &Header, e: InflateError) -> Invalid {
    match e {
        InflateError::Bomb { inflated } => Invalid::corrupt(
            Corruption::Bomb,
            format!(
                "inflated past the declared {} bytes ({inflated} produced before stopping)",
                header.uncompressed_len
            ),
        ),
        InflateError::Invalid(msg) => Invalid::corrupt(Corruption::Decode, msg),
    }
}

/// [`decode`] in bounded steps: [`Inflating::start`] verifies the whole file and the key
/// exactly as `decode` does (the checksum before any inflating), then each
/// [`Inflating::step`] inflates at most a given number of bytes of the value
/// ([`ExactInflater`]), so that an async worker can yield between steps. Same checks, same
/// errors, same value.
#[derive(Debug)]
pub struct Inflating {
    file: Vec<u8>,
    header: Header,
    inflater: ExactInflater<std::sync::Arc<[u8]>>,
}

impl Inflating {
    /// Verifies `file` for `key`; gives the file back with the reason when it is not valid.
    pub fn start(
        file: Vec<u8>,
        key: &[u8],
        limits: &Limits,
    ) -> Result<Inflating, (Vec<u8>, Invalid)> {
        let header = match verify_keyed(&file, key, limits) {
            Ok(h) => h,
            Err(e) => return Err((file, e)),
        };
        match ExactInflater::new(header.uncompressed_len) {
            Ok(inflater) => Ok(Inflating {
                file,
                header,
                inflater,
            }),
            Err(e) => Err((file, inflate_invalid(&header, e))),
        }
    }

    /// The entry's times and cost (from the verified header).
    pub fn meta(&self) -> &EntryMeta {
        &self.header.meta
    }

    /// The entry file.
    pub fn file(&self) -> &[u8] {
        &self.file
    }

    /// Inflates at most `budget` more bytes of the value: `Ok(true)` once all of it is
    /// inflated and checked (see [`ExactInflater::step`]).
    pub fn step(&mut self, budget: usize) -> Result<bool, Invalid> {
        let key_end = HEADER_LEN + self.header.key_len as usize;
        self.inflater
            .step(&self.file[key_end..], budget)
            .map_err(|e| inflate_invalid(&self.header, e))
    }

    /// The entry file and the value, inflated straight into the `Arc` the cache hands out.
    /// The value is complete only once [`Inflating::step`] has returned `Ok(true)`.
    pub fn finish(self) -> (Vec<u8>, std::sync::Arc<[u8]>) {
        (self.file, self.inflater.into_value())
    }

    /// The entry file, given back.
    pub fn into_file(self) -> Vec<u8> {
        self.file
    }
}

/// Checks header, exact length, checksum and flags; returns the header. Does not look at the
/// key or inflate (used by `verify` scans, which have no key to compare with).
pub fn verify(file: &[u8], limits: &Limits) -> Result<Header, Invalid> {
    let header = parse_header(file, limits)?;
    let want = header.file_len();
    let have = file.len() as u64;
    if have < want {
        return Err(Invalid::corrupt(
            Corruption::Truncated,
            format!("{have} bytes, header declares {want}"),
        ));
    }
    if have > want {
        return Err(Invalid::corrupt(
            Corruption::TrailingBytes,
            format!("{have} bytes, header declares {want}"),
        ));
    }
    let key_end = HEADER_LEN + header.key_len as usize;
    let sum = checksum(
        &file[..CHECKSUM_OFFSET],
        &file[HEADER_LEN..key_end],
        &file[key_end..],
    );
    if sum != header.checksum {
        return Err(Invalid::corrupt(Corruption::Checksum, "checksum mismatch"));
    }
    let known = if header.version >= 2 {
        KNOWN_FLAGS_V2
    } else {
        KNOWN_FLAGS_V1
    };
    if header.flags & !known != 0
        || header.flags & FLAG_GZIP == 0
        || encoding_of(header.version, header.flags).is_none()
    {
        return Err(Invalid::corrupt(
            Corruption::Flags,
            format!("flags {:#06x}", header.flags),
        ));
    }
    Ok(header)
}

/// The stored key of a verified file.
pub fn stored_key<'a>(file: &'a [u8], header: &Header) -> &'a [u8] {
    &file[HEADER_LEN..HEADER_LEN + header.key_len as usize]
}

/// Why inflating failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// More than the limit came out; `inflated` is how much was produced before stopping.
    Bomb {
        /// Bytes produced before the inflater was stopped.
        inflated: usize,
    },
    /// The gzip stream is invalid, ends early, or is followed by stray bytes.
    Invalid(String),
}

/// Inflates one gzip member that must produce exactly `expected` bytes and consume all of
/// `payload`.
///
/// One call of the inflater writes straight into a buffer of exactly `expected` bytes (the
/// length the verified header declares), so nothing is copied and the output cannot grow: a
/// stream that has more to give once the buffer is full is a bomb, stopped after at most one
/// [`INFLATE_CHUNK`] more. The gzip header, the CRC-32 and the length in the trailer are checked
/// by the inflater itself (zlib's gzip mode), as `GzDecoder` did.
pub fn inflate_exact(payload: &[u8], expected: u64) -> Result<Vec<u8>, InflateError> {
    let mut inflater = ExactInflater::<Vec<u8>>::new(expected)?;
    // Even with no bound a step can stop short (zlib consumed input, e.g. a long gzip header
    // field, without output); each `Ok(false)` made progress, so this ends.
    while !inflater.step(payload, usize::MAX)? {}
    Ok(inflater.into_value())
}

/// [`inflate_exact`] in bounded steps: each [`ExactInflater::step`] writes at most `budget`
/// more bytes of the value, so a caller that must not hold its thread long (an async worker)
/// can yield between steps. The checks are [`inflate_exact`]'s, in the same order with the
/// same errors (it is this type, run in one step): the output buffer is exactly the declared
/// length, a stream with more to give once it is full is a bomb (stopped within one
/// [`INFLATE_CHUNK`] more), then the length and the trailing bytes are checked.
#[derive(Debug)]
pub struct ExactInflater<B: ValueBuf = Vec<u8>> {
    dec: flate2::Decompress,
    /// The value: exactly the declared length; `pos` bytes of it are written.
    out: B,
    pos: usize,
    /// Set once every check has passed.
    done: bool,
}

/// A buffer an [`ExactInflater`] writes the value into: `Vec<u8>`, or `Arc<[u8]>`, which the
/// cache hands out as is (no copy of the value after inflating).
pub trait ValueBuf: Sized {
    /// A zeroed buffer of `len` bytes.
    fn zeroed(len: usize) -> Self;
    /// The buffer, writable (`None` only for a shared `Arc`, which `zeroed` never makes).
    fn writable(&mut self) -> Option<&mut [u8]>;
}

impl ValueBuf for Vec<u8> {
    fn zeroed(len: usize) -> Self {
        vec![0; len]
    }
    fn writable(&mut self) -> Option<&mut [u8]> {
        Some(self)
    }
}

impl ValueBuf for std::sync::Arc<[u8]> {
    fn zeroed(len: usize) -> Self {
        // One allocation of exactly `len` bytes after the counts (a `TrustedLen` iterator).
        std::iter::repeat_n(0u8, len).collect()
    }
    fn writable(&mut self) -> Option<&mut [u8]> {
        std::sync::Arc::get_mut(self)
    }
}

impl<B: ValueBuf> ExactInflater<B> {
    /// An inflater for a gzip member that must produce exactly `expected` bytes.
    pub fn new(expected: u64) -> Result<ExactInflater<B>, InflateError> {
        let expected = usize::try_from(expected)
            .map_err(|_| InflateError::Invalid("declared length does not fit in memory".into()))?;
        Ok(ExactInflater {
            dec: flate2::Decompress::new_gzip(15),
            out: B::zeroed(expected),
            pos: 0,
            done: false,
        })
    }

    /// Inflates at most `budget` more bytes of the value out of `payload` (the whole member,
    /// the same slice at every step). `Ok(true)` once the whole member is inflated and every
    /// check has passed; `Ok(false)` when there is more to do (the step made progress: it
    /// consumed input or produced output). Until `Ok(true)` the value is incomplete.
    pub fn step(&mut self, payload: &[u8], budget: usize) -> Result<bool, InflateError> {
        use flate2::{FlushDecompress, Status};
        if self.done {
            return Ok(true);
        }
        let Some(out) = self.out.writable() else {
            return Err(InflateError::Invalid("the value buffer is shared".into()));
        };
        let expected = out.len();
        let invalid = |e: flate2::DecompressError| InflateError::Invalid(format!("gzip: {e}"));
        let mut status = Status::Ok;
        if self.pos < expected {
            let end = self.pos.saturating_add(budget.max(1)).min(expected);
            let (in_before, out_before) =
                (consumed(&self.dec, payload.len()), self.dec.total_out());
            status = self
                .dec
                .decompress(
                    &payload[in_before..],
                    &mut out[self.pos..end],
                    FlushDecompress::Finish,
                )
                .map_err(invalid)?;
            let produced = usize::try_from(self.dec.total_out() - out_before).unwrap_or(usize::MAX);
            self.pos = self.pos.saturating_add(produced).min(expected);
            let progress = produced > 0 || consumed(&self.dec, payload.len()) != in_before;
            if status != Status::StreamEnd && self.pos < expected && progress {
                return Ok(false);
            }
        }
        // The buffer is full, or zlib stopped short of the trailer: go on into a small
        // scratch buffer. Any output there is past the declared length.
        let mut scratch = Vec::new();
        while status != Status::StreamEnd {
            let before = consumed(&self.dec, payload.len());
            if scratch.capacity() == 0 {
                scratch.reserve_exact(INFLATE_CHUNK);
            }
            status = self
                .dec
                .decompress_vec(&payload[before..], &mut scratch, FlushDecompress::Finish)
                .map_err(invalid)?;
            if !scratch.is_empty() {
                return Err(InflateError::Bomb {
                    inflated: self.pos + scratch.len(),
                });
            }
            if status != Status::StreamEnd && consumed(&self.dec, payload.len()) == before {
                // No progress with all the input given: the stream ends early.
                return Err(InflateError::Invalid(if self.pos < expected {
                    format!("inflated to {} bytes, header declares {expected}", self.pos)
                } else {
                    "gzip: the stream ends before its trailer".to_owned()
                }));
            }
        }
        if self.pos != expected {
            return Err(InflateError::Invalid(format!(
                "inflated to {} bytes, header declares {expected}",
                self.pos
            )));
        }
        let rest = payload.len() - consumed(&self.dec, payload.len());
        if rest != 0 {
            return Err(InflateError::Invalid(format!(
                "{rest} bytes after the gzip stream"
            )));
        }
        self.done = true;
        Ok(true)
    }

    /// The value (complete once [`ExactInflater::step`] has returned `Ok(true)`).
    pub fn into_value(self) -> B {
        self.out
    }
}

/// Input bytes the inflater has consumed (never more than the `len` it was given).
fn consumed(dec: &flate2::Decompress, len: usize) -> usize {
    usize::try_from(dec.total_in()).map_or(len, |n| n.min(len))
}

/// Magic of the fence file.
pub const FENCE_MAGIC: [u8; 8] = *b"TCFENCE1";
/// Length of the fence file: magic, time, checksum.
pub const FENCE_LEN: usize = 24;

/// The fence file: [`FENCE_MAGIC`], the fence time (unix ms, u64 LE), and the first 8 bytes of
/// the blake3 hash of the preceding 16 bytes.
pub fn encode_fence(ms: u64) -> [u8; FENCE_LEN] {
    let mut out = [0u8; FENCE_LEN];
    out[..8].copy_from_slice(&FENCE_MAGIC);
    out[8..16].copy_from_slice(&ms.to_le_bytes());
    let sum = blake3::hash(&out[..16]);
    out[16..].copy_from_slice(&sum.as_bytes()[..8]);
    out
}

/// The fence time, if `bytes` is a valid fence file.
pub fn decode_fence(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; FENCE_LEN] = bytes.try_into().ok()?;
    if bytes[..8] != FENCE_MAGIC || blake3::hash(&bytes[..16]).as_bytes()[..8] != bytes[16..] {
        return None;
    }
    Some(le_u64(&bytes[8..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Level 0 laid out directly is a valid gzip member of the value (flate2's decoder checks
    /// CRC-32 and ISIZE), for one block, the block boundary and several blocks; and up to
    /// 4 KiB (what the disk stores) exactly the bytes flate2 writes.
    #[test]
    fn a_stored_member_is_valid_gzip_and_matches_flate2_where_it_stores() {
        use std::io::Read;
        for len in [1usize, 96, 3_895, 4_096, 40_000, 65_535, 65_536, 200_001] {
            let value: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let member = deflate(&value, 0).unwrap();
            let blocks = len.div_ceil(65_535);
            assert_eq!(member.len(), 10 + 5 * blocks + len + 8, "{len}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&member[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, value, "{len}");
            assert_eq!(inflate_exact(&member, len as u64).unwrap(), value, "{len}");
            if len <= 4_096 {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), Compression::new(0));
                enc.write_all(&value).unwrap();
                assert_eq!(member, enc.finish().unwrap(), "{len}");
            }
        }
        // Empty: flate2's member (a stored member has at least one block).
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), Compression::new(0));
        enc.write_all(b"").unwrap();
        assert_eq!(deflate(b"", 0).unwrap(), enc.finish().unwrap());
    }

    const LIMITS: Limits = Limits {
        max_key_bytes: 1024,
        max_entry_bytes: 1 << 20,
    };

    fn meta() -> EntryMeta {
        EntryMeta {
            created_ms: 1_700_000_000_000,
            expires_ms: 1_700_000_060_000,
            cost: 42,
            encoding: Encoding::Json,
        }
    }

    #[test]
    fn a_fence_round_trips_and_any_damage_is_refused() {
        let f = encode_fence(1_700_000_000_123);
        assert_eq!(decode_fence(&f), Some(1_700_000_000_123));
        for bit in 0..FENCE_LEN * 8 {
            let mut bad = f;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_fence(&bad), None, "bit {bit}");
        }
        assert_eq!(decode_fence(&f[..FENCE_LEN - 1]), None);
        assert_eq!(decode_fence(&[f.as_slice(), &[0]].concat()), None);
    }

    #[test]
    fn round_trip_and_layout() {
        let value = b"The quick brown fox jumps over the lazy dog. ".repeat(50);
        let file = encode(b"key-1", &value, meta(), 6).unwrap();
        assert_eq!(&file[..8], b"TIERCACH");
        assert_eq!(le_u16(&file[8..10]), 2);
        assert_eq!(le_u16(&file[10..12]), FLAG_GZIP | 0b010);
        assert_eq!(le_u32(&file[12..16]), 5);
        assert_eq!(le_u64(&file[40..48]), value.len() as u64);
        assert_eq!(&file[HEADER_LEN..HEADER_LEN + 5], b"key-1");
        assert_eq!(&file[HEADER_LEN + 5..HEADER_LEN + 7], &[0x1f, 0x8b]);
        let d = decode(&file, b"key-1", &LIMITS).unwrap();
        assert_eq!(d.value, value);
        assert_eq!(d.meta, meta());
        assert!(file.len() < value.len() / 4, "repetitive text compresses");
    }

    #[test]
    fn encoding_is_deterministic() {
        let a = encode(b"k", b"value", meta(), 3).unwrap();
        let b = encode(b"k", b"value", meta(), 3).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn key_mismatch_is_detected() {
        let file = encode(b"key-a", b"value a", meta(), 1).unwrap();
        let err = decode(&file, b"key-b", &LIMITS).unwrap_err();
        assert!(matches!(err, Invalid::Corrupt(Corruption::KeyMismatch, _)));
    }

    #[test]
    fn every_truncation_is_rejected_with_the_right_reason() {
        let file = encode(b"key", &[7u8; 3000], meta(), 1).unwrap();
        for len in 0..file.len() {
            let err = decode(&file[..len], b"key", &LIMITS).unwrap_err();
            let Invalid::Corrupt(reason, _) = err else {
                panic!("{len}: {err:?}");
            };
            assert_eq!(reason, Corruption::Truncated, "length {len}");
        }
        let mut long = file.clone();
        long.push(0);
        assert!(matches!(
            decode(&long, b"key", &LIMITS),
            Err(Invalid::Corrupt(Corruption::TrailingBytes, _))
        ));
    }

    #[test]
    fn versions() {
        let newer = assemble(b"k", 1, &deflate(b"v", 1).unwrap(), meta(), 3, FLAG_GZIP);
        assert_eq!(
            decode(&newer, b"k", &LIMITS).unwrap_err(),
            Invalid::NewerVersion(3)
        );
        // A version-1 file (written before encodings were recorded) is read, as unrecorded.
        let v1 = assemble(b"k", 1, &deflate(b"v", 1).unwrap(), meta(), 1, FLAG_GZIP);
        let d = decode(&v1, b"k", &LIMITS).unwrap();
        assert_eq!(d.value, b"v");
        assert_eq!(d.meta.encoding, Encoding::Unrecorded);
        let older = assemble(b"k", 1, &deflate(b"v", 1).unwrap(), meta(), 0, FLAG_GZIP);
        assert!(matches!(
            decode(&older, b"k", &LIMITS),
            Err(Invalid::Corrupt(Corruption::VersionTooOld, _))
        ));
    }

    #[test]
    fn encodings_are_recorded_in_the_flags() {
        for (encoding, flags) in [
            (Encoding::Raw, 0b001),
            (Encoding::Json, 0b011),
            (Encoding::Bincode, 0b101),
        ] {
            let m = EntryMeta { encoding, ..meta() };
            let file = encode(b"k", b"v", m, 1).unwrap();
            assert_eq!(le_u16(&file[10..12]), flags, "{encoding}");
            assert_eq!(decode(&file, b"k", &LIMITS).unwrap().meta, m);
        }
        // The reserved code 3, and encoding bits in a version-1 file, are corrupt.
        for (version, flags) in [(2, FLAG_GZIP | 0b110), (1, FLAG_GZIP | 0b010)] {
            let file = assemble(b"k", 1, &deflate(b"v", 1).unwrap(), meta(), version, flags);
            assert!(
                matches!(
                    decode(&file, b"k", &LIMITS),
                    Err(Invalid::Corrupt(Corruption::Flags, _))
                ),
                "version {version} flags {flags:#b}"
            );
        }
    }

    #[test]
    fn unknown_flags_are_rejected_even_with_a_valid_checksum() {
        let file = assemble(
            b"k",
            1,
            &deflate(b"v", 1).unwrap(),
            meta(),
            2,
            FLAG_GZIP | 8,
        );
        assert!(matches!(
            decode(&file, b"k", &LIMITS),
            Err(Invalid::Corrupt(Corruption::Flags, _))
        ));
    }

    #[test]
    fn declared_lengths_are_bounded_before_anything_else() {
        let mut file = encode(b"k", b"v", meta(), 1).unwrap();
        file[40..48].copy_from_slice(&(u64::MAX).to_le_bytes());
        reseal(&mut file);
        assert!(matches!(
            decode(&file, b"k", &LIMITS),
            Err(Invalid::Corrupt(Corruption::Oversize, _))
        ));
    }

    #[test]
    fn bomb_stops_within_one_chunk_of_the_limit() {
        let big = vec![0u8; 50 << 20];
        let payload = deflate(&big, 9).unwrap();
        assert!(payload.len() < 100 << 10, "{}", payload.len());
        let limit = 1u64 << 20;
        let err = inflate_exact(&payload, limit).unwrap_err();
        let InflateError::Bomb { inflated } = err else {
            panic!("{err:?}")
        };
        assert!(
            inflated as u64 <= limit + INFLATE_CHUNK as u64,
            "{inflated}"
        );
        assert!(inflated as u64 > limit);
        // Through the full decoder, with a declared length under the limit:
        let file = assemble(b"k", limit, &payload, meta(), 1, FLAG_GZIP);
        assert!(matches!(
            decode(&file, b"k", &LIMITS),
            Err(Invalid::Corrupt(Corruption::Bomb, _))
        ));
    }

    #[test]
    fn short_inflate_and_trailing_gzip_bytes_are_decode_errors() {
        let payload = deflate(b"hello", 1).unwrap();
        let file = assemble(b"k", 6, &payload, meta(), 1, FLAG_GZIP);
        assert!(matches!(
            decode(&file, b"k", &LIMITS),
            Err(Invalid::Corrupt(Corruption::Decode, _))
        ));
        let mut two = payload.clone();
        two.extend_from_slice(&payload);
        let file = assemble(b"k", 5, &two, meta(), 1, FLAG_GZIP);
        assert!(matches!(
            decode(&file, b"k", &LIMITS),
            Err(Invalid::Corrupt(Corruption::Decode, _))
        ));
    }

    /// The one-shot inflate at its edges: an empty value, a value that fills the exact buffer
    /// and has one byte more, a trailer cut short, a wrong length in the trailer.
    #[test]
    fn inflate_exact_edges() {
        assert_eq!(inflate_exact(&deflate(b"", 6).unwrap(), 0).unwrap(), b"");
        let v = b"twelve bytes";
        let payload = deflate(v, 6).unwrap();
        assert_eq!(inflate_exact(&payload, 12).unwrap(), v);
        // Declared one short: the buffer fills, the stream has one more byte.
        assert_eq!(
            inflate_exact(&payload, 11),
            Err(InflateError::Bomb { inflated: 12 })
        );
        assert_eq!(
            inflate_exact(&payload, 13),
            Err(InflateError::Invalid(
                "inflated to 12 bytes, header declares 13".into()
            ))
        );
        // Everything but the trailer's last byte; no trailer at all.
        for cut in [1, 8] {
            let short = &payload[..payload.len() - cut];
            assert_eq!(
                inflate_exact(short, 12),
                Err(InflateError::Invalid(
                    "gzip: the stream ends before its trailer".into()
                )),
                "cut {cut}"
            );
        }
        // The trailer's length (ISIZE) says 13.
        let mut lying = payload.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&13u32.to_le_bytes());
        assert!(matches!(
            inflate_exact(&lying, 12),
            Err(InflateError::Invalid(m)) if m.starts_with("gzip: ")
        ));
        // One stray byte after the member.
        let mut stray = payload.clone();
        stray.push(0);
        assert_eq!(
            inflate_exact(&stray, 12),
            Err(InflateError::Invalid(
                "1 bytes after the gzip stream".into()
            ))
        );
        // Not gzip at all.
        assert!(matches!(
            inflate_exact(b"not gzip at all", 12),
            Err(InflateError::Invalid(m)) if m.starts_with("gzip: ")
        ));
    }

    /// Stepping with any budget gives what one call gives: the value, or the same error
    /// (the budgets only split the main phase; the bomb, length and trailer checks run once).
    #[test]
    fn steps_of_any_budget_agree_with_one_shot() {
        let text = b"Stepped inflating must not change a verdict. ".repeat(900);
        let payload = deflate(&text, 6).unwrap();
        let n = text.len() as u64;
        let mut truncated = payload.clone();
        truncated.truncate(payload.len() / 2);
        let mut stray = payload.clone();
        stray.push(0);
        let mut lying = payload.clone();
        let l = lying.len();
        lying[l - 4..].copy_from_slice(&(n as u32 + 1).to_le_bytes());
        let cases: [(&[u8], u64); 7] = [
            (&payload, n),
            (&payload, n - 1),
            (&payload, n / 3),
            (&payload, n + 1),
            (&truncated, n),
            (&stray, n),
            (&lying, n),
        ];
        for (i, (payload, declared)) in cases.into_iter().enumerate() {
            let one_shot = inflate_exact(payload, declared);
            for budget in [1, 100, 4096, INFLATE_CHUNK, 40_000] {
                let mut inf = ExactInflater::<Arc<[u8]>>::new(declared).unwrap();
                let stepped = loop {
                    match inf.step(payload, budget) {
                        Ok(true) => break Ok(inf.into_value().to_vec()),
                        Ok(false) => {}
                        Err(e) => break Err(e),
                    }
                };
                assert_eq!(stepped, one_shot, "case {i}, budget {budget}");
            }
        }
        assert_eq!(inflate_exact(&payload, n).unwrap(), text);
    }

    #[test]
    fn reason_names_round_trip() {
        for c in Corruption::ALL {
            assert_eq!(Corruption::from_name(c.name()), Some(c));
            assert_eq!(Corruption::ALL[c.index()], c);
        }
    }
}
