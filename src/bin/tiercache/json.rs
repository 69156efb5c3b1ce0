//! `--json` output: a small JSON value, a serde serializer into it, and a pretty printer.
//!
//! Why not serde_json: the library's reports (`Stats`, `VerifyReport`, `QuarantinedFile`) are
//! already `Serialize`, and turning them into JSON needs a few hundred lines, not a dependency
//! of the library crate. The CLI's own records are built as [`Json`] values directly, and the
//! library's structs go through [`to_json`], so a field added to `Stats` shows up in `--json`
//! without touching the binary.
//!
//! Numbers keep their type (u64, i64, f64): a counter prints as the exact integer. Non-finite
//! floats, which JSON cannot hold, print as `null`.

use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

/// A JSON value. Objects keep insertion order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, in insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// An object from key/value pairs.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Sets `key` in an object (replacing an existing value); does nothing on a non-object.
    pub fn insert(&mut self, key: &str, value: Json) {
        if let Json::Obj(pairs) = self {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => pairs.push((key.to_owned(), value)),
            }
        }
    }
}

impl From<u64> for Json {
    fn from(n: u64) -> Json {
        Json::U64(n)
    }
}

impl From<usize> for Json {
    fn from(n: usize) -> Json {
        Json::U64(n as u64)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

impl From<f64> for Json {
    fn from(x: f64) -> Json {
        Json::F64(x)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Json {
        v.map_or(Json::Null, Into::into)
    }
}

impl From<Vec<Json>> for Json {
    fn from(v: Vec<Json>) -> Json {
        Json::Arr(v)
    }
}

impl fmt::Display for Json {
    /// Pretty-printed with two-space indentation, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_value(&mut out, self, 0);
        f.write_str(&out)
    }
}

fn write_value(out: &mut String, v: &Json, depth: usize) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::U64(n) => {
            let _ = write!(out, "{n}");
        }
        Json::I64(n) => {
            let _ = write!(out, "{n}");
        }
        Json::F64(x) if x.is_finite() => {
            let _ = write!(out, "{x}");
        }
        Json::F64(_) => out.push_str("null"),
        Json::Str(s) => write_string(out, s),
        Json::Arr(items) if items.is_empty() => out.push_str("[]"),
        Json::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_value(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        Json::Obj(pairs) if pairs.is_empty() => out.push_str("{}"),
        Json::Obj(pairs) => {
            out.push('{');
            for (i, (k, item)) in pairs.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push('}');
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a value could not be turned into JSON (a map key that is not a string or a number, or
/// a 128-bit integer).
#[derive(Debug)]
pub struct JsonError(String);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write JSON: {}", self.0)
    }
}

impl std::error::Error for JsonError {}

impl ser::Error for JsonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        JsonError(msg.to_string())
    }
}

/// Converts any `Serialize` value (the library's `Stats`, `VerifyReport`, ...) to [`Json`].
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Json, JsonError> {
    value.serialize(ValueSerializer)
}

/// Serializes into a [`Json`] value, the way serde_json's `to_value` does: structs and maps
/// become objects, sequences and tuples arrays, unit variants strings, other variants
/// one-key objects.
struct ValueSerializer;

/// Collects the elements of a sequence, tuple or tuple variant.
struct SeqBuilder {
    variant: Option<&'static str>,
    items: Vec<Json>,
}

/// Collects the fields of a struct, map or struct variant.
struct ObjBuilder {
    variant: Option<&'static str>,
    pairs: Vec<(String, Json)>,
    next_key: Option<String>,
}

fn wrap(variant: Option<&'static str>, value: Json) -> Json {
    match variant {
        Some(v) => Json::object([(v, value)]),
        None => value,
    }
}

impl ser::Serializer for ValueSerializer {
    type Ok = Json;
    type Error = JsonError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = ObjBuilder;
    type SerializeStruct = ObjBuilder;
    type SerializeStructVariant = ObjBuilder;

    fn serialize_bool(self, v: bool) -> Result<Json, JsonError> {
        Ok(Json::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Json, JsonError> {
        Ok(Json::I64(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Json, JsonError> {
        Ok(Json::I64(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Json, JsonError> {
        Ok(Json::I64(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Json, JsonError> {
        Ok(Json::I64(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Json, JsonError> {
        Ok(Json::U64(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Json, JsonError> {
        Ok(Json::U64(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Json, JsonError> {
        Ok(Json::U64(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Json, JsonError> {
        Ok(Json::U64(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Json, JsonError> {
        Ok(Json::F64(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Json, JsonError> {
        Ok(Json::F64(v))
    }
    fn serialize_char(self, v: char) -> Result<Json, JsonError> {
        Ok(Json::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Json, JsonError> {
        Ok(Json::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Json, JsonError> {
        Ok(Json::Arr(v.iter().map(|&b| Json::U64(b.into())).collect()))
    }
    fn serialize_none(self) -> Result<Json, JsonError> {
        Ok(Json::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Json, JsonError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Json, JsonError> {
        Ok(Json::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Json, JsonError> {
        Ok(Json::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Json, JsonError> {
        Ok(Json::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Json, JsonError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Json, JsonError> {
        Ok(Json::object([(variant, value.serialize(self)?)]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, JsonError> {
        Ok(SeqBuilder {
            variant: None,
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, JsonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, JsonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, JsonError> {
        Ok(SeqBuilder {
            variant: Some(variant),
            items: Vec::with_capacity(len),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<ObjBuilder, JsonError> {
        Ok(ObjBuilder {
            variant: None,
            pairs: Vec::new(),
            next_key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<ObjBuilder, JsonError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<ObjBuilder, JsonError> {
        Ok(ObjBuilder {
            variant: Some(variant),
            pairs: Vec::new(),
            next_key: None,
        })
    }
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.items.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn done(self) -> Result<Json, JsonError> {
        Ok(wrap(self.variant, Json::Arr(self.items)))
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Json;
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, JsonError> {
        self.done()
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Json;
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, JsonError> {
        self.done()
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Json;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, JsonError> {
        self.done()
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Json;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, JsonError> {
        self.done()
    }
}

impl ObjBuilder {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), JsonError> {
        self.pairs
            .push((key.to_owned(), value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn done(self) -> Result<Json, JsonError> {
        Ok(wrap(self.variant, Json::Obj(self.pairs)))
    }
}

impl ser::SerializeMap for ObjBuilder {
    type Ok = Json;
    type Error = JsonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        // JSON keys are strings: accept strings, and numbers and booleans written as text.
        let key = match key.serialize(ValueSerializer)? {
            Json::Str(s) => s,
            Json::U64(n) => n.to_string(),
            Json::I64(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            other => return Err(JsonError(format!("map key {other:?} is not a string"))),
        };
        self.next_key = Some(key);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        let key = self
            .next_key
            .take()
            .ok_or_else(|| JsonError("map value without a key".into()))?;
        self.field(&key, value)
    }
    fn end(self) -> Result<Json, JsonError> {
        self.done()
    }
}

impl ser::SerializeStruct for ObjBuilder {
    type Ok = Json;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.field(key, value)
    }
    fn end(self) -> Result<Json, JsonError> {
        self.done()
    }
}

impl ser::SerializeStructVariant for ObjBuilder {
    type Ok = Json;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.field(key, value)
    }
    fn end(self) -> Result<Json, JsonError> {
        self.done()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(serde::Serialize)]
    #[serde(rename_all = "kebab-case")]
    enum Kind {
        UnitOne,
        Pair(u8, u8),
    }

    #[derive(serde::Serialize)]
    struct Sample {
        n: u64,
        neg: i32,
        ratio: f64,
        nan: f64,
        name: &'static str,
        none: Option<String>,
        kinds: Vec<Kind>,
        by_name: BTreeMap<String, u64>,
    }

    #[test]
    fn serializes_like_serde_json() {
        let mut by_name = BTreeMap::new();
        by_name.insert("checksum".to_owned(), 2);
        let v = to_json(&Sample {
            n: u64::MAX,
            neg: -3,
            ratio: 4.5,
            nan: f64::NAN,
            name: "a\"b\\c\n\u{1}",
            none: None,
            kinds: vec![Kind::UnitOne, Kind::Pair(1, 2)],
            by_name,
        })
        .unwrap();
        let want = r#"{
  "n": 18446744073709551615,
  "neg": -3,
  "ratio": 4.5,
  "nan": null,
  "name": "a\"b\\c\n\u0001",
  "none": null,
  "kinds": [
    "unit-one",
    {
      "pair": [
        1,
        2
      ]
    }
  ],
  "by_name": {
    "checksum": 2
  }
}"#;
        assert_eq!(v.to_string(), want);
    }

    #[test]
    fn insert_replaces_or_appends() {
        let mut v = Json::object([("a", Json::from(1u64))]);
        v.insert("a", Json::from(2u64));
        v.insert("b", Json::Arr(Vec::new()));
        assert_eq!(v.to_string(), "{\n  \"a\": 2,\n  \"b\": []\n}");
    }
}
