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

use serde::ser::{self, Serialize};

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
        value.serialize(ToJson)
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

/// Inserts a field, dropping `null`s (see the module docs).
fn put(fields: &mut BTreeMap<String, Json>, key: String, value: Json) {
    if value != Json::Null {
        fields.insert(key, value);
    }
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

impl ser::Error for CanonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CanonError(msg.to_string())
    }
}

/// The serializer: builds a [`Json`] tree.
struct ToJson;

macro_rules! integers {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Result<Json, CanonError> {
            Ok(Json::Number(v.to_string()))
        })*
    };
}

impl ser::Serializer for ToJson {
    type Ok = Json;
    type Error = CanonError;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Seq;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Map;

    integers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128);

    fn serialize_bool(self, v: bool) -> Result<Json, CanonError> {
        Ok(Json::Bool(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Json, CanonError> {
        // f32's own shortest form, so `0.2f32` is `0.2`, as a caller wrote it.
        float(f64::from(v), v.to_string())
    }
    fn serialize_f64(self, v: f64) -> Result<Json, CanonError> {
        float(v, v.to_string())
    }
    fn serialize_char(self, v: char) -> Result<Json, CanonError> {
        Ok(Json::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Json, CanonError> {
        Ok(Json::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Json, CanonError> {
        Ok(Json::Array(
            v.iter().map(|b| Json::Number(b.to_string())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Json, CanonError> {
        Ok(Json::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Json, CanonError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Json, CanonError> {
        Ok(Json::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Json, CanonError> {
        Ok(Json::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Json, CanonError> {
        Ok(Json::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Json, CanonError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Json, CanonError> {
        // The tag is kept even when the payload is null: `{"V":null}` is not `{}`.
        let mut fields = BTreeMap::new();
        fields.insert(variant.to_owned(), value.serialize(self)?);
        Ok(Json::Object(fields))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, CanonError> {
        Ok(Seq {
            variant: None,
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, CanonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq, CanonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq, CanonError> {
        Ok(Seq {
            variant: Some(variant),
            items: Vec::with_capacity(len),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map, CanonError> {
        Ok(Map::default())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Map, CanonError> {
        Ok(Map::default())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Map, CanonError> {
        Ok(Map {
            variant: Some(variant),
            ..Map::default()
        })
    }
}

/// Wraps `value` as `{variant: value}` when building an enum variant.
fn tagged(variant: Option<&'static str>, value: Json) -> Json {
    match variant {
        Some(v) => {
            let mut fields = BTreeMap::new();
            fields.insert(v.to_owned(), value);
            Json::Object(fields)
        }
        None => value,
    }
}

/// Arrays, tuples and tuple variants.
struct Seq {
    variant: Option<&'static str>,
    items: Vec<Json>,
}

impl Seq {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        self.items.push(value.serialize(ToJson)?);
        Ok(())
    }
    fn done(self) -> Json {
        tagged(self.variant, Json::Array(self.items))
    }
}

impl ser::SerializeSeq for Seq {
    type Ok = Json;
    type Error = CanonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, CanonError> {
        Ok(self.done())
    }
}

impl ser::SerializeTuple for Seq {
    type Ok = Json;
    type Error = CanonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, CanonError> {
        Ok(self.done())
    }
}

impl ser::SerializeTupleStruct for Seq {
    type Ok = Json;
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, CanonError> {
        Ok(self.done())
    }
}

impl ser::SerializeTupleVariant for Seq {
    type Ok = Json;
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        self.push(value)
    }
    fn end(self) -> Result<Json, CanonError> {
        Ok(self.done())
    }
}

/// Maps, structs and struct variants.
#[derive(Default)]
struct Map {
    variant: Option<&'static str>,
    fields: BTreeMap<String, Json>,
    /// Set by `serialize_key`, taken by `serialize_value`.
    next_key: Option<String>,
}

impl Map {
    fn done(self) -> Json {
        tagged(self.variant, Json::Object(self.fields))
    }
}

impl ser::SerializeMap for Map {
    type Ok = Json;
    type Error = CanonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonError> {
        self.next_key = Some(key.serialize(KeyText)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        let key = self
            .next_key
            .take()
            .ok_or_else(|| CanonError("a map value came without its key".into()))?;
        put(&mut self.fields, key, value.serialize(ToJson)?);
        Ok(())
    }
    fn end(self) -> Result<Json, CanonError> {
        Ok(self.done())
    }
}

impl ser::SerializeStruct for Map {
    type Ok = Json;
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonError> {
        put(&mut self.fields, key.to_owned(), value.serialize(ToJson)?);
        Ok(())
    }
    fn end(self) -> Result<Json, CanonError> {
        Ok(self.done())
    }
}

impl ser::SerializeStructVariant for Map {
    type Ok = Json;
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonError> {
        put(&mut self.fields, key.to_owned(), value.serialize(ToJson)?);
        Ok(())
    }
    fn end(self) -> Result<Json, CanonError> {
        Ok(self.done())
    }
}

/// Serializes a map key to its text: strings and chars as they are, integers and booleans in
/// decimal / `true`/`false` (as JSON writers commonly do), unit variants by name.
struct KeyText;

fn bad_key() -> CanonError {
    CanonError("a map key must be a string, an integer, a bool or a unit variant".into())
}

macro_rules! integer_keys {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Result<String, CanonError> {
            Ok(v.to_string())
        })*
    };
}

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = CanonError;
    type SerializeSeq = ser::Impossible<String, CanonError>;
    type SerializeTuple = ser::Impossible<String, CanonError>;
    type SerializeTupleStruct = ser::Impossible<String, CanonError>;
    type SerializeTupleVariant = ser::Impossible<String, CanonError>;
    type SerializeMap = ser::Impossible<String, CanonError>;
    type SerializeStruct = ser::Impossible<String, CanonError>;
    type SerializeStructVariant = ser::Impossible<String, CanonError>;

    integer_keys!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128, serialize_bool: bool, serialize_char: char);

    fn serialize_str(self, v: &str) -> Result<String, CanonError> {
        Ok(v.to_owned())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, CanonError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, CanonError> {
        value.serialize(self)
    }
    fn serialize_f32(self, _v: f32) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_none(self) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_unit(self) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, CanonError> {
        Err(bad_key())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, CanonError> {
        Err(bad_key())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, CanonError> {
        Err(bad_key())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonError> {
        Err(bad_key())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonError> {
        Err(bad_key())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, CanonError> {
        Err(bad_key())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, CanonError> {
        Err(bad_key())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, CanonError> {
        Err(bad_key())
    }
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
