//! The core suite (tests/core) again, on the portable file system (`StdFs::portable()`), and
//! the unit tests of that file system. CI runs only `cargo test`, and on Linux the cache runs
//! on the Linux implementation by default: this target is where the implementation that
//! macOS and the BSDs run is exercised end to end. `selection` selects it for the whole
//! binary before any test runs and proves it did; the corruption and hostile-directory suite
//! runs on it in `tests/portable_corruption`.
//!
//! Every module of tests/core is included as it is, except `inline_reads` (the Linux page-
//! cache reads, which the portable implementation never makes: `selection` checks that).
//! `fs`: the portable file system call by call, next to the platform's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test must fail loudly on any unexpected error"
)]

#[path = "../core/bounds.rs"]
mod bounds;
mod fs;
#[path = "../core/hostile.rs"]
mod hostile;
#[path = "../core/layout.rs"]
mod layout;
#[path = "../core/model.rs"]
mod model;
#[path = "../core/persistence.rs"]
mod persistence;
#[path = "../core/promises.rs"]
mod promises;
#[path = "../core/roundtrip.rs"]
mod roundtrip;
mod selection;
#[path = "../core/settings.rs"]
mod settings;
#[path = "../core/support.rs"]
mod support;
#[path = "../core/ttl.rs"]
mod ttl;
