//! `--json` output: the library's JSON value tree (`tiercache::value`), pretty-printed by its
//! `Display`. The CLI's own records are built as [`Json`] values directly, and the library's
//! structs (`Stats`, `VerifyReport`, `QuarantinedFile`) go through [`to_json`], so a field
//! added to `Stats` shows up in `--json` without touching the binary.

pub use tiercache::value::{to_value as to_json, Value as Json, ValueError as JsonError};
