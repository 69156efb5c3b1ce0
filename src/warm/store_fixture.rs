//! Store-level test fixture shared by the test modules of the warm store (`compact_tests`,
//! `compact_r27_tests`, `compact_r28_tests`, `beside_r29_tests`): one configuration to vary
//! with struct update syntax, and opening a store on a directory.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;
use std::sync::Arc;

use crate::fs::Fs;
use crate::stats::Counters;
use crate::warm::format::Limits;
use crate::warm::quarantine::QuarantineLimits;
use crate::warm::store::{StoreConfig, WarmStore};

/// A store configuration for tests: keys up to 16 KiB, entries up to 16 MiB, level 3, a
/// 1 GiB budget, no free-space floor, written stored and compacted later (`compact_later`),
/// reads through `read_prefix`/`read_file` only, `sync` as given.
pub(crate) fn store_config(sync: bool) -> StoreConfig {
    StoreConfig {
        limits: Limits {
            max_key_bytes: 16 << 10,
            max_entry_bytes: 1 << 24,
        },
        compression_level: 3,
        sync,
        capacity_bytes: 1 << 30,
        min_free_bytes: Some(0),
        quarantine: QuarantineLimits {
            max_files: 100,
            max_bytes: 1 << 30,
        },
        page_cache_reads: false,
        space_wait: std::time::Duration::from_millis(10),
        compact_later: true,
    }
}

/// A store on `root` through `fs`, its directories prepared, and its counters.
pub(crate) fn open_store(fs: &dyn Fs, root: &Path, cfg: StoreConfig) -> (WarmStore, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let store = WarmStore::new(root, cfg, counters.clone());
    store.prepare_dirs(fs).unwrap();
    (store, counters)
}
