//! The corruption, quarantine and hostile-directory suite (tests/corruption) again, on the
//! portable file system (`StdFs::portable()`): symlinks, FIFOs, planted directories and
//! corrupt files met by the implementation that macOS and the BSDs run. `selection` (shared
//! with tests/portable) selects it for the whole binary before any test runs and proves it
//! did. Every module of tests/corruption is included as it is.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking on the unexpected"
)]

#[path = "../corruption/collision.rs"]
mod collision;
#[path = "../corruption/corpus.rs"]
mod corpus;
#[path = "../corruption/fixtures.rs"]
mod fixtures;
#[path = "../corruption/fuzz.rs"]
mod fuzz;
#[path = "../corruption/hostile.rs"]
mod hostile;
#[path = "../corruption/limits.rs"]
mod limits;
#[path = "../portable/selection.rs"]
mod selection;
#[path = "../corruption/support.rs"]
mod support;
#[path = "../corruption/sweep.rs"]
mod sweep;
#[path = "../corruption/verify_scan.rs"]
mod verify_scan;
#[path = "../corruption/versions.rs"]
mod versions;
#[path = "../corruption/worked_example.rs"]
mod worked_example;
