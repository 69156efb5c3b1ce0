//! A JSON-shaped value tree and a serde serializer into it, shared by the two places that turn
//! `Serialize` types into JSON: request keys (`agent::canonical` sorts the objects, drops
//! `null` fields and writes one canonical text to hash) and the CLI's `--json` output (keeps
//! field order and pretty-prints, through [`Value`]'s `Display`).
//!
//! The serializer follows serde_json's `to_value`: structs and maps become objects (in
//! serialization order), sequences and tuples arrays, unit variants strings, other variants
//! one-key objects `{"Variant": value}`, bytes arrays of numbers, `None` and units `null`. Map
//! keys must be strings, integers, bools or unit variants (written as text). Numbers keep
//! their type, so a counter stays an exact integer and an `f32` keeps its own shortest form.

use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

/// A JSON value. Objects keep insertion order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A 128-bit unsigned integer.
    U128(u128),
    /// A 128-bit signed integer.
    I128(i128),
    /// An `f32` (kept apart so that it prints in its own shortest form: `0.2`, not
    /// `0.20000000298023224`).
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Value>),
    /// An object, in insertion order.
    Obj(Vec<(String, Value)>),
}

impl Value {
    /// An object from key/value pairs.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Sets `key` in an object (replacing an existing value); does nothing on a non-object.
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Value::Obj(pairs) = self {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => pairs.push((key.to_owned(), value)),
            }
        }
    }
}

/// Converts any `Serialize` value into a [`Value`], `null` fields included.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ToValue {
        drop_null_fields: false,
    })
}

/// Like [`to_value`], but object fields (of structs, maps and struct variants) whose value is
/// `null` are left out; `null` stays in arrays and as a variant's payload (`{"V": null}`).
pub(crate) fn to_value_without_null_fields<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Value, ValueError> {
    value.serialize(ToValue {
        drop_null_fields: true,
    })
}

macro_rules! from_impls {
    ($($ty:ty => $variant:ident),*) => {
        $(impl From<$ty> for Value {
            fn from(v: $ty) -> Value {
                Value::$variant(v.into())
            }
        })*
    };
}

from_impls!(u64 => U64, bool => Bool, f64 => F64, &str => Str, String => Str, Vec<Value> => Arr);

impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::U64(n as u64)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl fmt::Display for Value {
    /// Pretty-printed JSON with two-space indentation, no trailing newline. Non-finite floats,
    /// which JSON cannot hold, print as `null`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_pretty(&mut out, self, 0);
        f.write_str(&out)
    }
}

fn write_pretty(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::U64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::I64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::U128(n) => {
            let _ = write!(out, "{n}");
        }
        Value::I128(n) => {
            let _ = write!(out, "{n}");
        }
        Value::F32(x) if x.is_finite() => {
            let _ = write!(out, "{x}");
        }
        Value::F64(x) if x.is_finite() => {
            let _ = write!(out, "{x}");
        }
        Value::F32(_) | Value::F64(_) => out.push_str("null"),
        Value::Str(s) => write_pretty_string(out, s),
        Value::Arr(items) if items.is_empty() => out.push_str("[]"),
        Value::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_pretty(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        Value::Obj(pairs) if pairs.is_empty() => out.push_str("{}"),
        Value::Obj(pairs) => {
            out.push('{');
            for (i, (k, item)) in pairs.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_pretty_string(out, k);
                out.push_str(": ");
                write_pretty(out, item, depth + 1);
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

fn write_pretty_string(out: &mut String, s: &str) {
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

/// Why a value has no JSON form (a map key that is not a string, an integer, a bool or a unit
/// variant, or an error from the type's own `Serialize`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

/// The serializer.
#[derive(Clone, Copy)]
struct ToValue {
    drop_null_fields: bool,
}

/// Wraps `value` as `{variant: value}` when building an enum variant (the payload is kept even
/// when it is `null`).
fn tagged(variant: Option<&'static str>, value: Value) -> Value {
    match variant {
        Some(v) => Value::object([(v, value)]),
        None => value,
    }
}

macro_rules! scalars {
    ($($method:ident: $ty:ty => $variant:ident),*) => {
        $(fn $method(self, v: $ty) -> Result<Value, ValueError> {
            Ok(Value::$variant(v.into()))
        })*
    };
}

impl ser::Serializer for ToValue {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Seq;
    type SerializeMap = Obj;
    type SerializeStruct = Obj;
    type SerializeStructVariant = Obj;

    scalars!(serialize_bool: bool => Bool, serialize_i8: i8 => I64, serialize_i16: i16 => I64,
        serialize_i32: i32 => I64, serialize_i64: i64 => I64, serialize_i128: i128 => I128,
        serialize_u8: u8 => U64, serialize_u16: u16 => U64, serialize_u32: u32 => U64,
        serialize_u64: u64 => U64, serialize_u128: u128 => U128, serialize_f32: f32 => F32,
        serialize_f64: f64 => F64, serialize_str: &str => Str);

    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Arr(
            v.iter().map(|&b| Value::U64(b.into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ValueError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(Value::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        Ok(tagged(Some(variant), value.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, ValueError> {
        Ok(Seq {
            ser: self,
            variant: None,
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq, ValueError> {
        Ok(Seq {
            ser: self,
            variant: Some(variant),
            items: Vec::with_capacity(len),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Obj, ValueError> {
        Ok(Obj {
            ser: self,
            variant: None,
            pairs: Vec::new(),
            next_key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Obj, ValueError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Obj, ValueError> {
        Ok(Obj {
            variant: Some(variant),
            ..self.serialize_map(None)?
        })
    }
}

/// Arrays, tuples and tuple variants.
struct Seq {
    ser: ToValue,
    variant: Option<&'static str>,
    items: Vec<Value>,
}

/// Objects: maps, structs and struct variants.
struct Obj {
    ser: ToValue,
    variant: Option<&'static str>,
    pairs: Vec<(String, Value)>,
    /// Set by `serialize_key`, taken by `serialize_value`.
    next_key: Option<String>,
}

impl Obj {
    fn field<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), ValueError> {
        let value = value.serialize(self.ser)?;
        if !(self.ser.drop_null_fields && value == Value::Null) {
            self.pairs.push((key, value));
        }
        Ok(())
    }
}

macro_rules! seq_impls {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for Seq {
            type Ok = Value;
            type Error = ValueError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
                self.items.push(value.serialize(self.ser)?);
                Ok(())
            }
            fn end(self) -> Result<Value, ValueError> {
                Ok(tagged(self.variant, Value::Arr(self.items)))
            }
        })*
    };
}

seq_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! struct_impls {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Obj {
            type Ok = Value;
            type Error = ValueError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), ValueError> {
                self.field(key.to_owned(), value)
            }
            fn end(self) -> Result<Value, ValueError> {
                Ok(tagged(self.variant, Value::Obj(self.pairs)))
            }
        })*
    };
}

struct_impls!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Obj {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        // JSON keys are text: strings (unit variants and chars included) as they are,
        // integers and bools written out.
        let key = match key.serialize(self.ser)? {
            Value::Str(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::U64(n) => n.to_string(),
            Value::I64(n) => n.to_string(),
            Value::U128(n) => n.to_string(),
            Value::I128(n) => n.to_string(),
            _ => {
                return Err(ValueError(
                    "a map key must be a string, an integer, a bool or a unit variant".into(),
                ))
            }
        };
        self.next_key = Some(key);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        let key = self
            .next_key
            .take()
            .ok_or_else(|| ValueError("a map value came without its key".into()))?;
        self.field(key, value)
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(tagged(self.variant, Value::Obj(self.pairs)))
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
        let v = to_value(&Sample {
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
    fn f32_keeps_its_shortest_form_and_128_bit_integers_are_numbers() {
        let v = to_value(&(0.2f32, u128::MAX, i128::MIN, f32::NAN)).unwrap();
        assert_eq!(
            v.to_string(),
            "[\n  0.2,\n  340282366920938463463374607431768211455,\n  -170141183460469231731687303715884105728,\n  null\n]"
        );
    }

    #[test]
    fn null_fields_can_be_left_out_but_not_a_variant_payload() {
        #[derive(serde::Serialize)]
        enum E {
            V(Option<u8>),
        }
        #[derive(serde::Serialize)]
        struct S {
            a: Option<u8>,
            e: E,
            list: Vec<Option<u8>>,
        }
        let s = S {
            a: None,
            e: E::V(None),
            list: vec![None],
        };
        let kept = to_value(&s).unwrap();
        let dropped = to_value_without_null_fields(&s).unwrap();
        assert_eq!(
            dropped,
            Value::object([
                ("e", Value::object([("V", Value::Null)])),
                ("list", Value::Arr(vec![Value::Null])),
            ])
        );
        let Value::Obj(pairs) = kept else {
            panic!("{kept:?}")
        };
        assert_eq!(pairs[0], ("a".to_owned(), Value::Null));
    }

    #[test]
    fn insert_replaces_or_appends() {
        let mut v = Value::object([("a", Value::from(1u64))]);
        v.insert("a", Value::from(2u64));
        v.insert("b", Value::Arr(Vec::new()));
        assert_eq!(v.to_string(), "{\n  \"a\": 2,\n  \"b\": []\n}");
    }
}
