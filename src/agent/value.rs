//! A JSON-shaped value tree and the serde serializer into it, for request-key
//! canonicalisation ([`super::canonical`] sorts the objects and writes the one canonical text
//! that is hashed).
//!
//! Why not `serde_json::to_value`: golden request keys depend on the exact text of every
//! number, and `serde_json` widens an `f32` to `f64` (`0.2f32` becomes `0.20000000298023224`),
//! while this tree keeps an `f32` apart so that it is written in its own shortest form (`0.2`).
//! Integers keep their type too (128-bit ones included), so they are written exactly.
//!
//! The serializer follows serde_json's `to_value` otherwise: structs and maps become objects
//! (in serialization order), sequences and tuples arrays, unit variants strings, other variants
//! one-key objects `{"Variant": value}`, bytes arrays of numbers, `None` and units `null`. Map
//! keys must be strings, integers, bools or unit variants (written as text). Object fields
//! (of structs, maps and struct variants) whose value is `null` are left out; `null` stays in
//! arrays and as a variant's payload (`{"V": null}`).

use std::fmt;

use serde::ser::{self, Serialize};

/// A JSON value. Objects keep serialization order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
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
    /// An `f32` (kept apart so that it is written in its own shortest form: `0.2`, not
    /// `0.20000000298023224`).
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Value>),
    /// An object, in serialization order (a key given twice appears twice).
    Obj(Vec<(String, Value)>),
}

/// Converts any `Serialize` value into a [`Value`], leaving out object fields whose value is
/// `null`.
pub(super) fn to_value_without_null_fields<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Value, ValueError> {
    value.serialize(ToValue)
}

/// Why a value has no JSON form (a map key that is not a string, an integer, a bool or a unit
/// variant, or an error from the type's own `Serialize`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ValueError(String);

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
struct ToValue;

/// Wraps `value` as `{variant: value}` when building an enum variant (the payload is kept even
/// when it is `null`).
fn tagged(variant: Option<&'static str>, value: Value) -> Value {
    match variant {
        Some(v) => Value::Obj(vec![(v.to_owned(), value)]),
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
            variant: Some(variant),
            items: Vec::with_capacity(len),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Obj, ValueError> {
        Ok(Obj {
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
    variant: Option<&'static str>,
    items: Vec<Value>,
}

/// Objects: maps, structs and struct variants.
struct Obj {
    variant: Option<&'static str>,
    pairs: Vec<(String, Value)>,
    /// Set by `serialize_key`, taken by `serialize_value`.
    next_key: Option<String>,
}

impl Obj {
    /// Adds a field, unless its value is `null`.
    fn field<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), ValueError> {
        let value = value.serialize(ToValue)?;
        if value != Value::Null {
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
                self.items.push(value.serialize(ToValue)?);
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
        let key = match key.serialize(ToValue)? {
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
        name: &'static str,
        none: Option<String>,
        kinds: Vec<Kind>,
        by_name: BTreeMap<String, u64>,
        bytes: serde_bytes_like::Bytes,
    }

    /// `serialize_bytes` without a dependency on `serde_bytes`.
    mod serde_bytes_like {
        pub struct Bytes(pub &'static [u8]);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Obj(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn serializes_like_serde_json_in_serialization_order() {
        let mut by_name = BTreeMap::new();
        by_name.insert("checksum".to_owned(), 2);
        let v = to_value_without_null_fields(&Sample {
            n: u64::MAX,
            neg: -3,
            ratio: 4.5,
            name: "a\"b\\c\n\u{1}",
            none: None,
            kinds: vec![Kind::UnitOne, Kind::Pair(1, 2)],
            by_name,
            bytes: serde_bytes_like::Bytes(b"\x00\xff"),
        })
        .unwrap();
        let want = obj(&[
            ("n", Value::U64(u64::MAX)),
            ("neg", Value::I64(-3)),
            ("ratio", Value::F64(4.5)),
            ("name", Value::Str("a\"b\\c\n\u{1}".to_owned())),
            (
                "kinds",
                Value::Arr(vec![
                    Value::Str("unit-one".to_owned()),
                    obj(&[("pair", Value::Arr(vec![Value::U64(1), Value::U64(2)]))]),
                ]),
            ),
            ("by_name", obj(&[("checksum", Value::U64(2))])),
            ("bytes", Value::Arr(vec![Value::U64(0), Value::U64(255)])),
        ]);
        assert_eq!(v, want);
    }

    #[test]
    fn f32_is_kept_apart_and_128_bit_integers_are_exact() {
        let v = to_value_without_null_fields(&(0.2f32, u128::MAX, i128::MIN, 0.2f64)).unwrap();
        assert_eq!(
            v,
            Value::Arr(vec![
                Value::F32(0.2),
                Value::U128(u128::MAX),
                Value::I128(i128::MIN),
                Value::F64(0.2),
            ])
        );
        let Value::Arr(items) = v else {
            panic!("{v:?}")
        };
        let Value::F32(x) = items[0] else {
            panic!("{:?}", items[0])
        };
        assert_eq!(x.to_string(), "0.2");
    }

    #[test]
    fn null_fields_are_left_out_but_not_a_variant_payload_nor_array_items() {
        #[derive(serde::Serialize)]
        enum E {
            V(Option<u8>),
        }
        #[derive(serde::Serialize)]
        struct S {
            a: Option<u8>,
            e: E,
            list: Vec<Option<u8>>,
            map: BTreeMap<&'static str, Option<u8>>,
        }
        let s = S {
            a: None,
            e: E::V(None),
            list: vec![None],
            map: [("gone", None), ("kept", Some(1))].into_iter().collect(),
        };
        assert_eq!(
            to_value_without_null_fields(&s).unwrap(),
            obj(&[
                ("e", obj(&[("V", Value::Null)])),
                ("list", Value::Arr(vec![Value::Null])),
                ("map", obj(&[("kept", Value::U64(1))])),
            ])
        );
    }

    #[test]
    fn map_keys_are_written_as_text_and_compound_keys_are_refused() {
        let m: BTreeMap<i32, bool> = [(-1, true), (7, false)].into_iter().collect();
        assert_eq!(
            to_value_without_null_fields(&m).unwrap(),
            obj(&[("-1", Value::Bool(true)), ("7", Value::Bool(false))])
        );
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        assert_eq!(
            to_value_without_null_fields(&bad).unwrap_err().to_string(),
            "a map key must be a string, an integer, a bool or a unit variant"
        );
    }
}
