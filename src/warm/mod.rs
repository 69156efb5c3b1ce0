//! The warm tier: gzip-compressed entry files on disk.
//!
//! - [`format`](mod@format): the entry file format (pure).
//! - [`layout`]: the path scheme (pure).
//! - `index`: the in-memory LRU index of entry files (pure).
//! - `quarantine`: moving corrupted files aside.
//! - `store`: the synchronous core over an [`Fs`](crate::fs::Fs); its rule for deleting
//!   what a read judged ([`take_if_unchanged`]) is public, for tools that sweep a live
//!   directory.

pub mod format;
pub(crate) mod index;
pub mod layout;
pub mod quarantine;
pub(crate) mod store;
#[cfg(test)]
mod store_tests;

pub use format::Corruption;
pub use store::{take_if_unchanged, Judged};
