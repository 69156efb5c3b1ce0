//! The warm tier: gzip-compressed entry files on disk.
//!
//! Public, documented and stable, for tools that read a cache directory:
//! - [`format`](mod@format): the entry file format (pure; byte for byte in FORMAT.md).
//! - [`layout`]: the path scheme (pure): where a key's entry lives under a root.
//! - [`walk`]: the one walk of a directory's entry files, with its rules for foreign files
//!   and unreadable directories.
//! - [`quarantine`]: listing and deleting the files moved aside as corrupted.
//! - [`migrate`]: moving a directory of the previous layout (`v1/ab/cd`) into `v2/ab`.
//!
//! Private to the crate:
//! - `index`: the in-memory LRU index of entry files (pure).
//! - `encoded`: one write's entry file, encoded once for the disk and the shared tier.
//! - `store`: the synchronous core over an [`Fs`](crate::fs::Fs), including its rule for
//!   deleting only the file a read judged (tools use [`walk::remove_if_unchanged`]).

#[cfg(test)]
#[path = "compact_r27_tests.rs"]
mod compact_r27_tests;
#[cfg(test)]
#[path = "compact_r28_tests.rs"]
mod compact_r28_tests;
#[cfg(test)]
mod encode_tests;
pub(crate) mod encoded;
pub mod format;
pub(crate) mod index;
#[cfg(test)]
mod index_tests;
pub mod layout;
pub mod migrate;
pub mod quarantine;
pub(crate) mod space;
pub(crate) mod store;
#[cfg(test)]
pub(crate) mod store_fixture;
#[cfg(test)]
mod store_tests;
pub(crate) mod take;
pub mod walk;

pub use format::Corruption;
