//! The warm tier's in-memory index (crate-private), reachable by its memory test
//! (`tests/index_memory`) and its bench (`benches/index.rs`): not part of the cache API.

use crate::warm::index::{self, IndexEntry};
use crate::warm::layout::KeyHash;

/// The warm index of one cache (entry hashes in least-recently-used order, with each file's
/// length and expiry), driven directly.
#[derive(Debug, Default)]
pub struct WarmIndexProbe(index::WarmIndex);

impl WarmIndexProbe {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an entry as most recently used (written or read), as a write does: `len` file
    /// bytes, expiring at `expires_ms` (unix ms, 0 = never), with a tag taken from `hash`.
    pub fn put(&mut self, hash: KeyHash, len: u64, expires_ms: u64) {
        let mut file = [0u8; crate::warm::format::HEADER_LEN];
        let at = crate::warm::format::CHECKSUM_OFFSET;
        file[at..at + 8].copy_from_slice(&hash[8..16]);
        self.0.put(
            hash,
            IndexEntry {
                len,
                expires_ms,
                tag: index::file_tag(&file),
            },
        );
    }

    /// Merges entries found by a startup scan (`(hash, len, mtime)`), as least recently used.
    pub fn merge_scanned(&mut self, found: Vec<(KeyHash, u64, u64)>) {
        self.0.merge_scanned(found);
    }

    /// Forgets an entry; whether it was known.
    pub fn remove(&mut self, hash: &KeyHash) -> bool {
        self.0.remove(hash).is_some()
    }

    /// Takes the least recently used entry out of the index.
    pub fn pop_victim(&mut self) -> Option<KeyHash> {
        self.0.pop_victim(&[0; 32]).map(|(h, _)| h)
    }

    /// Whether the index holds `hash`.
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.0.contains(hash)
    }

    /// Entries known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no entry is known.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Total file bytes known.
    pub fn bytes(&self) -> u64 {
        self.0.bytes()
    }
}
