//! JSON in the CLI: stored values shown as JSON, and pieces shared by the `--json` documents.
//!
//! Every `--json` document is a `#[derive(Serialize)]` report struct written by serde_json
//! ([`super::output::print_json`]); the library's own reports (`Stats`, `VerifyReport`,
//! `QuarantinedFile`) are embedded as they serialize, so a field added to them shows up in
//! `--json` without touching the binary.
//!
//! A stored value that is JSON (encoding `json`, or raw bytes that parse as JSON) is shown as
//! the JSON text it is stored as: serde_json checks it ([`as_json`]) and embeds it verbatim in
//! `--json` documents (`RawValue`), so object members keep their stored order and numbers
//! their exact digits.

use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;

/// `bytes` as one JSON document, if serde_json reads them as one (UTF-8, whitespace around it
/// allowed).
pub fn as_json(bytes: &[u8]) -> Option<&RawValue> {
    serde_json::from_str(std::str::from_utf8(bytes).ok()?).ok()
}

/// Text pairs written as a JSON object in their own order (a sidecar's record).
pub struct Pairs<'a>(pub &'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A path that could not be listed, read or removed, and why.
#[derive(Debug, Clone, serde::Serialize)]
struct PathError<'a> {
    /// Path relative to the cache directory.
    path: &'a str,
    /// The error.
    error: &'a str,
}

/// Serializes `(path, error)` pairs as `[{"path": ..., "error": ...}]` (for
/// `#[serde(serialize_with)]`).
pub fn path_errors<S: Serializer>(errors: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(errors.iter().map(|(path, error)| PathError { path, error }))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_kept_as_stored_and_anything_else_is_not_json() {
        let text =
            r#" {"z": 1, "a": [2.5, -3, 340282366920938463463374607431768211455], "m": {}} "#;
        assert_eq!(
            as_json(text.as_bytes()).map(RawValue::get),
            Some(r#"{"z": 1, "a": [2.5, -3, 340282366920938463463374607431768211455], "m": {}}"#)
        );
        for not_json in [&b"Paris"[..], b"{\"a\":", b"\xff", b"1 2", b""] {
            assert!(as_json(not_json).is_none(), "{not_json:?}");
        }
        // Kept as text, never built into a tree: any depth is shown.
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(
            as_json(deep.as_bytes()).map(RawValue::get),
            Some(deep.as_str())
        );
    }
}
