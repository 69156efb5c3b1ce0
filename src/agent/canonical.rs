//! Canonical JSON: the byte string a request key is hashed from.
//!
//! Why our own writer rather than `serde_json`: the key of a request must never change across
//! runs or versions of this crate (unless the key-schema version does), so every choice that
//! reaches the hashed bytes is written down here, in one place, and pinned by golden tests:
//!
//! - objects (structs and maps) have their keys sorted by their UTF-8 bytes (a `BTreeMap`),
//!   so field order in the caller's types or maps never matters;
//! - object fields whose value is `null` (a `None`, a unit) are dropped, so an absent optional
//!   parameter and an explicit `null` hash alike; `null` inside an array is kept (positions
//!   matter there);
//! - numbers are written in one fixed form: integers in decimal; floats with Rust's shortest
//!   round-trip formatting and no exponent (`1.0` is `1`, `-0.0` is `0`, `0.2f32` is `0.2`),
//!   so `temperature: 1` and `temperature: 1.0` are the same request; NaN and infinities are
//!   refused (they are not JSON);
//! - strings escape `"`, `\` and control characters (`\n`, `\r`, `\t`, `\b`, `\f`, else
//!   `\u00XX`); everything else, non-ASCII included, is written as raw UTF-8;
//! - bytes are an array of numbers; enums follow serde's externally tagged form (`"Unit"`,
//!   `{"Variant": value}`);
//! - output is compact: no whitespace at all.
//!
//! This is close to, but not, RFC 8785 (JCS sorts keys by UTF-16 code units and formats
//! numbers the ECMAScript way); what matters here is that it is fixed.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use super::value::{to_value_without_null_fields, Value};

/// A JSON value with sorted objects; numbers are kept in their canonical text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// Already in canonical form.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// Serializes any value into the canonical tree.
    pub(crate) fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Json, CanonError> {
        let tree = to_value_without_null_fields(value).map_err(|e| CanonError(e.to_string()))?;
        canonical(tree)
    }

    /// Writes compact canonical JSON.
    pub(crate) fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_str(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// The canonical text.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn float(v: f64, text: String) -> Result<Json, CanonError> {
    if !v.is_finite() {
        return Err(CanonError(format!("{v} is not a JSON number")));
    }
    // Display never uses an exponent and prints integral floats without a fraction; the only
    // fix-up needed is negative zero.
    Ok(Json::Number(if v == 0.0 { "0".to_owned() } else { text }))
}

/// Why a value has no canonical JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanonError(pub(crate) String);

impl fmt::Display for CanonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CanonError {}

/// The canonical tree of a [`Value`] built without its `null` fields: objects sorted (a key
/// given twice keeps its last value), numbers in their canonical text, NaN and infinities
/// refused.
fn canonical(v: Value) -> Result<Json, CanonError> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::U64(n) => Json::Number(n.to_string()),
        Value::I64(n) => Json::Number(n.to_string()),
        Value::U128(n) => Json::Number(n.to_string()),
        Value::I128(n) => Json::Number(n.to_string()),
        // f32's own shortest form, so `0.2f32` is `0.2`, as a caller wrote it.
        Value::F32(x) => float(f64::from(x), x.to_string())?,
        Value::F64(x) => float(x, x.to_string())?,
        Value::Str(s) => Json::String(s),
        Value::Arr(items) => {
            Json::Array(items.into_iter().map(canonical).collect::<Result<_, _>>()?)
        }
        Value::Obj(pairs) => Json::Object(
            pairs
                .into_iter()
                .map(|(k, v)| Ok((k, canonical(v)?)))
                .collect::<Result<_, CanonError>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn text<T: Serialize + ?Sized>(v: &T) -> String {
        Json::from_serialize(v).map(|j| j.to_text()).unwrap()
    }

    #[derive(serde::Serialize)]
    struct Zyx {
        z: u8,
        y: Option<&'static str>,
        x: Vec<Option<bool>>,
    }

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Tuple(u8, u8),
        Named { b: u8, a: u8 },
    }

    #[test]
    fn objects_are_sorted_and_nulls_dropped_outside_arrays() {
        let v = Zyx {
            z: 1,
            y: None,
            x: vec![Some(true), None],
        };
        assert_eq!(text(&v), r#"{"x":[true,null],"z":1}"#);
        let m: HashMap<&str, u32> = [("b", 2), ("a", 1), ("c", 3)].into_iter().collect();
        assert_eq!(text(&m), r#"{"a":1,"b":2,"c":3}"#);
    }

    #[test]
    fn numbers_have_one_form() {
        assert_eq!(text(&1.0f64), "1");
        assert_eq!(text(&-0.0f64), "0");
        assert_eq!(text(&0.2f32), "0.2");
        assert_eq!(text(&0.2f64), "0.2");
        assert_eq!(text(&1e21f64), "1000000000000000000000");
        assert_eq!(text(&1.5e-7f64), "0.00000015");
        assert_eq!(text(&u64::MAX), "18446744073709551615");
        assert_eq!(text(&-3i8), "-3");
        assert!(Json::from_serialize(&f64::NAN).is_err());
        assert!(Json::from_serialize(&f32::INFINITY).is_err());
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        assert_eq!(text("a\"b\\c\nd\te\u{1}é😀"), r#""a\"b\\c\nd\te\u0001é😀""#);
    }

    #[test]
    fn enums_are_externally_tagged() {
        assert_eq!(
            text(&[Shape::Unit, Shape::New(1), Shape::Tuple(1, 2)]),
            r#"["Unit",{"New":1},{"Tuple":[1,2]}]"#
        );
        assert_eq!(
            text(&Shape::Named { b: 2, a: 1 }),
            r#"{"Named":{"a":1,"b":2}}"#
        );
        assert_eq!(text(&Some(())), "null");
    }

    #[test]
    fn map_keys_must_be_scalars() {
        let m: BTreeMap<u32, &str> = [(10, "x"), (9, "y")].into_iter().collect();
        // Keys are text, so they sort as text: "10" before "9".
        assert_eq!(text(&m), r#"{"10":"x","9":"y"}"#);
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        assert!(Json::from_serialize(&bad).is_err());
    }
}
