//! One write's entry file, encoded once for every tier that stores it.
//!
//! A `set` on a replica with a shared tier is written twice: to the disk (the writer) and to
//! the server (the shared drain). Both store the same bytes, the entry file of FORMAT.md
//! (SHARED_TIER.md section 3: "encode once, no second compression"). Whichever consumer runs
//! first compresses the value and leaves the file here; the other reuses it. A shared hit
//! promoted into the warm tier leaves the file it read, so the disk writes those bytes without
//! compressing the value again.
//!
//! Only values the disk compresses share a cell (`WarmStore::encodes_at_level`): one whose
//! stored file fits one allocation unit (at most 4 KiB) is stored uncompressed on disk, where
//! compressing saves no space, while the server, which holds bytes and not blocks, gets it
//! compressed at the configured level. Storing is no compression, so such a value is still
//! compressed once.
//!
//! A file is reused only for the exact metadata it was encoded with: the disk writer may raise
//! an entry's creation time past a `clear` (`Freshness::write_floor`), and that file must not
//! stand for the value's original metadata, nor the other way round.

use std::io;
use std::sync::{Arc, OnceLock};

use super::format::EntryMeta;

/// The entry file of one write, once a consumer has encoded it (see the module docs).
#[derive(Default)]
pub(crate) struct EncodedEntry {
    /// `None`: the first consumer could not encode it.
    file: OnceLock<Option<(EntryMeta, Arc<[u8]>)>>,
}

impl std::fmt::Debug for EncodedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.file.get().map(|f| f.as_ref().map(|(_, b)| b.len()));
        f.debug_struct("EncodedEntry")
            .field("bytes", &bytes)
            .finish()
    }
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl EncodedEntry {
    /// A cell no consumer has filled yet.
    pub(crate) fn new() -> Arc<EncodedEntry> {
        Arc::new(EncodedEntry::default())
    }

    /// A cell holding `file`, an entry file already encoded for `meta` (a shared hit's bytes,
    /// verified).
    pub(crate) fn with_file(meta: EntryMeta, file: Arc<[u8]>) -> Arc<EncodedEntry> {
        let cell = EncodedEntry::default();
        let _ = cell.file.set(Some((meta, file)));
        Arc::new(cell)
    }

    /// The entry file for `meta`: the one in the cell when it was encoded for exactly `meta`,
    /// else `encode`'s. The first consumer encodes and fills the cell; one arriving while it
    /// does waits for it (at most one compression of a value that the waiter would otherwise
    /// have made itself) rather than compress the value a second time.
    pub(crate) fn file_for(
        &self,
        meta: EntryMeta,
        encode: impl Fn() -> io::Result<Vec<u8>>,
    ) -> io::Result<Arc<[u8]>> {
        let mut failed = None;
        let filled = self.file.get_or_init(|| match encode() {
            Ok(file) => Some((meta, file.into())),
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        match filled {
            Some((m, file)) if *m == meta => Ok(file.clone()),
            // Encoded for other metadata, or the other consumer failed: its own.
            _ => encode().map(Arc::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoding;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn meta(created_ms: u64) -> EntryMeta {
        EntryMeta {
            created_ms,
            expires_ms: 0,
            cost: 7,
            encoding: Encoding::Raw,
        }
    }

    #[test]
    fn the_first_consumer_encodes_and_the_second_reuses_its_file() {
        let cell = EncodedEntry::new();
        let calls = AtomicU32::new(0);
        let encode = |v: &'static [u8]| {
            let calls = &calls;
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(v.to_vec())
            }
        };
        let first = cell.file_for(meta(5), encode(b"first")).unwrap();
        let second = cell.file_for(meta(5), encode(b"second")).unwrap();
        assert_eq!((&first[..], &second[..]), (&b"first"[..], &b"first"[..]));
        assert!(Arc::ptr_eq(&first, &second), "the same bytes, not a copy");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_file_is_reused_only_for_the_metadata_it_was_encoded_with() {
        let cell = EncodedEntry::with_file(meta(5), Arc::from(&b"read"[..]));
        // The disk writer raised the creation time past a clear: not the same entry.
        let raised = cell.file_for(meta(6), || Ok(b"raised".to_vec())).unwrap();
        assert_eq!(&raised[..], b"raised");
        let same = cell.file_for(meta(5), || Ok(b"again".to_vec())).unwrap();
        assert_eq!(&same[..], b"read");
    }

    #[test]
    fn a_consumer_that_cannot_encode_leaves_the_other_to_encode_its_own() {
        let cell = EncodedEntry::new();
        let err = cell
            .file_for(meta(5), || Err(io::Error::other("too large")))
            .unwrap_err();
        assert_eq!(err.to_string(), "too large");
        let other = cell.file_for(meta(5), || Ok(b"own".to_vec())).unwrap();
        assert_eq!(&other[..], b"own");
    }

    #[test]
    fn racing_consumers_compress_once() {
        let cell = EncodedEntry::new();
        let calls = AtomicU32::new(0);
        let files: Vec<Arc<[u8]>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        cell.file_for(meta(5), || {
                            calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            Ok(b"file".to_vec())
                        })
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(files.iter().all(|f| Arc::ptr_eq(f, &files[0])));
    }
}
