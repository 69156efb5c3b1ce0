//! Value codecs: how a typed value becomes the bytes of an entry, and back.
//!
//! Each entry records how its bytes were made ([`Encoding`], stored in the entry file's flags,
//! see FORMAT.md, and kept with the entry in memory), so a reader always decodes with the
//! codec the writer used, whatever the cache's current setting:
//!
//! | encoding | made by | a typed `get::<V>` decodes it with |
//! |---|---|---|
//! | [`Encoding::Json`] | `set` with [`Codec::Json`] (the default) | serde_json |
//! | [`Encoding::Bincode`] | `set` with [`Codec::Bincode`] | bincode 2, standard config |
//! | [`Encoding::Raw`] | `set_bytes`, a bytes loader | serde_json (raw entries are taken as JSON text, the form providers answer in) |
//! | [`Encoding::Unrecorded`] | format-1 files of earlier versions | bincode 2 (the only typed codec then) |
//!
//! A stored value that does not decode as the requested type is a *miss* (the caller's type
//! changed, or another type shares the key), never an error and never a value built from the
//! wrong bytes: the decoders consume every byte and check every type.
//!
//! What each codec carries:
//! - **JSON** (serde_json) round-trips everything serde's data model does in JSON: structs
//!   with `skip_serializing_if` and `#[serde(default)]`, `#[serde(untagged)]`, internally
//!   and adjacently tagged enums, `serde_json::Value`, maps with string or integer keys, `u128`.
//!   It tolerates schema evolution: a field added with `#[serde(default)]` reads old entries, an
//!   unknown field is ignored (unless `deny_unknown_fields`). It cannot carry a non-finite
//!   float (serde_json would write `null`, which could read back as `None`), a `Some` whose
//!   content is written as `null` (`Some(None)`, `Some(())`, `Some(Value::Null)`: read back as
//!   `None`), a map whose keys are not strings, integers or bools, or nesting deeper than
//!   [`MAX_JSON_DEPTH`]: `set`
//!   refuses those with [`Error::Encode`] instead of storing something that reads back wrong
//!   or never. Floats round-trip exactly (`float_roundtrip`).
//! - **bincode** is compact and fast for fixed-shape values (embedding vectors): no field
//!   names, no self-description. It cannot carry `serde_json::Value`, untagged or internally
//!   tagged enums or `skip_serializing_if` fields (the decoder cannot know what was skipped),
//!   and it does not survive schema changes: an added field makes old entries misses, and a
//!   field whose type changed to one of the same width can decode (e.g. `u32` → `i32`). Use
//!   it only for shapes that do not change, or change the key when they do.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::ser::{self, Serialize};

use crate::error::Error;

/// The codec `set` uses for typed values (chosen with
/// [`Builder::codec`](crate::Builder::codec)). Entries record the codec they were written
/// with, so changing it never makes existing entries unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// Self-describing JSON via serde_json: round-trips every serde type, tolerates added
    /// `#[serde(default)]` fields. The default.
    #[default]
    Json,
    /// bincode 2: compact, for fixed-shape values such as embedding vectors.
    Bincode,
}

/// How the bytes of a stored entry were made. Recorded in every entry (see FORMAT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Encoding {
    /// The caller's bytes (`set_bytes`, a bytes loader): no codec.
    #[default]
    Raw,
    /// A typed value encoded as JSON.
    Json,
    /// A typed value encoded with bincode 2 (standard configuration).
    Bincode,
    /// An entry of format version 1 (written before encodings were recorded): typed values
    /// were bincode, `set_bytes` values raw.
    Unrecorded,
}

impl Encoding {
    /// The stable name: `raw`, `json`, `bincode`, `unrecorded`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Json => "json",
            Encoding::Bincode => "bincode",
            Encoding::Unrecorded => "unrecorded",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Codec> for Encoding {
    fn from(codec: Codec) -> Encoding {
        match codec {
            Codec::Json => Encoding::Json,
            Codec::Bincode => Encoding::Bincode,
        }
    }
}

/// Deepest nesting of arrays and objects the JSON codec stores: serde_json's reader refuses
/// deeper input (its recursion limit, which keeps a hostile file from overflowing the stack),
/// so a deeper value could be stored but never read back. `set` refuses it instead.
pub const MAX_JSON_DEPTH: usize = 120;

/// bincode's standard configuration (varint lengths, little endian) with an allocation limit, so
/// that decoding bytes as the wrong type can never claim more memory than the limit.
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ u32::MAX as usize }>()
}

/// Encodes a value with `codec`.
pub(crate) fn encode<V: Serialize + ?Sized>(codec: Codec, value: &V) -> Result<Vec<u8>, Error> {
    match codec {
        Codec::Json => {
            value
                .serialize(JsonCheck {
                    depth: 0,
                    in_some: false,
                })
                .map_err(|e| {
                    Error::Encode(format!(
                        "{e} (the JSON codec cannot carry it; the bincode codec can)"
                    ))
                })?;
            serde_json::to_vec(value).map_err(|e| Error::Encode(e.to_string()))
        }
        Codec::Bincode => bincode::serde::encode_to_vec(value, bincode_config())
            .map_err(|e| Error::Encode(e.to_string())),
    }
}

/// Decodes bytes made with `encoding` as `V`. Every byte must be consumed, so that a value of
/// another type that happens to share a prefix is rejected rather than silently truncated.
/// `Err` carries the decoder's message: the caller treats it as a miss.
pub(crate) fn decode<V: DeserializeOwned>(encoding: Encoding, bytes: &[u8]) -> Result<V, String> {
    match encoding {
        Encoding::Json | Encoding::Raw => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Encoding::Bincode | Encoding::Unrecorded => {
            match bincode::serde::decode_from_slice::<V, _>(bytes, bincode_config()) {
                Ok((value, used)) if used == bytes.len() => Ok(value),
                Ok((_, used)) => Err(format!(
                    "{} trailing bytes after the value",
                    bytes.len() - used
                )),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// A serializer that produces nothing and fails on what serde_json would write wrongly or
/// could not read back: non-finite floats (written as `null`), a `Some` whose content is
/// written as `null` (read back as `None`), nesting deeper than [`MAX_JSON_DEPTH`]. Map keys need no check here: serde_json itself refuses keys it cannot
/// write as strings.
#[derive(Clone, Copy)]
struct JsonCheck {
    depth: usize,
    /// The value is the content of a `Some`: serde_json writes `Some(x)` as `x`, so a content
    /// written as `null` (`None`, `()`, `Value::Null`) would read back as `None`.
    in_some: bool,
}

#[derive(Debug)]
struct CheckError(String);

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckError {}

impl ser::Error for CheckError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CheckError(msg.to_string())
    }
}

impl JsonCheck {
    fn nest(self) -> Result<JsonCheck, CheckError> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(CheckError(format!(
                "the value nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        Ok(JsonCheck {
            depth: self.depth + 1,
            in_some: false,
        })
    }

    /// `null` is written for this value: refused inside a `Some`.
    fn null(self) -> Result<(), CheckError> {
        if self.in_some {
            Err(CheckError(
                "the value holds a Some whose content is written as null (None, (), \
                 Value::Null), which would read back as None"
                    .into(),
            ))
        } else {
            Ok(())
        }
    }

    fn float(x: f64) -> Result<(), CheckError> {
        if x.is_finite() {
            Ok(())
        } else {
            Err(CheckError(format!(
                "the value holds the float {x}, which JSON has no form for"
            )))
        }
    }
}

macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), CheckError> { Ok(()) })*
    };
}

impl ser::Serializer for JsonCheck {
    type Ok = ();
    type Error = CheckError;
    type SerializeSeq = JsonCheck;
    type SerializeTuple = JsonCheck;
    type SerializeTupleStruct = JsonCheck;
    type SerializeTupleVariant = JsonCheck;
    type SerializeMap = JsonCheck;
    type SerializeStruct = JsonCheck;
    type SerializeStructVariant = JsonCheck;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_f32(self, v: f32) -> Result<(), CheckError> {
        JsonCheck::float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CheckError> {
        JsonCheck::float(v)
    }
    fn serialize_none(self) -> Result<(), CheckError> {
        self.null()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CheckError> {
        value.serialize(JsonCheck {
            in_some: true,
            ..self
        })
    }
    fn serialize_unit(self) -> Result<(), CheckError> {
        self.null()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CheckError> {
        self.null()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(self.nest()?)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<JsonCheck, CheckError> {
        self.nest()
    }
    fn serialize_tuple(self, _: usize) -> Result<JsonCheck, CheckError> {
        self.nest()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<JsonCheck, CheckError> {
        self.nest()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<JsonCheck, CheckError> {
        self.nest()?.nest()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<JsonCheck, CheckError> {
        self.nest()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<JsonCheck, CheckError> {
        self.nest()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<JsonCheck, CheckError> {
        self.nest()?.nest()
    }
}

macro_rules! compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for JsonCheck {
            type Ok = ();
            type Error = CheckError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
                value.serialize(*self)
            }
            fn end(self) -> Result<(), CheckError> {
                Ok(())
            }
        })*
    };
}

compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for JsonCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CheckError> {
        // A float key is written as text by serde_json; a non-finite one it refuses itself.
        key.serialize(*self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeStruct for JsonCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for JsonCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Answer {
        text: String,
        tokens: u32,
    }

    fn answer() -> Answer {
        Answer {
            text: "hello".into(),
            tokens: 7,
        }
    }

    #[test]
    fn round_trip_with_each_codec() {
        let json = encode(Codec::Json, &answer()).unwrap();
        assert_eq!(json, br#"{"text":"hello","tokens":7}"#);
        assert_eq!(decode::<Answer>(Encoding::Json, &json).unwrap(), answer());
        let bin = encode(Codec::Bincode, &answer()).unwrap();
        assert_eq!(bin, [5, b'h', b'e', b'l', b'l', b'o', 7]);
        assert_eq!(decode::<Answer>(Encoding::Bincode, &bin).unwrap(), answer());
        assert_eq!(
            decode::<Answer>(Encoding::Unrecorded, &bin).unwrap(),
            answer()
        );
        assert_eq!(decode::<Answer>(Encoding::Raw, &json).unwrap(), answer());
    }

    #[test]
    fn wrong_type_is_a_decode_failure() {
        let bytes = encode(Codec::Bincode, &"just a string").unwrap();
        assert!(decode::<Answer>(Encoding::Bincode, &bytes).is_err());
        // A u8 decodes from the first byte of a longer value: trailing bytes must be rejected.
        let err = decode::<u8>(
            Encoding::Bincode,
            &encode(Codec::Bincode, &(1u8, 2u8)).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err, "1 trailing bytes after the value");
        let json = encode(Codec::Json, &"just a string").unwrap();
        assert!(decode::<Answer>(Encoding::Json, &json).is_err());
        // JSON bytes are not bincode and the other way round.
        assert!(
            decode::<Answer>(Encoding::Json, &encode(Codec::Bincode, &answer()).unwrap()).is_err()
        );
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // A Vec<u64> claiming u64::MAX/2 elements in 10 bytes must fail, not abort on allocation.
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(decode::<Vec<u64>>(Encoding::Bincode, &bytes).is_err());
    }

    #[test]
    fn json_refuses_non_finite_floats_instead_of_writing_null() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = encode(Codec::Json, &Some(x)).unwrap_err();
            assert!(
                matches!(&err, Error::Encode(m) if m.contains("JSON has no form")),
                "{err}"
            );
            assert!(encode(Codec::Bincode, &Some(x)).is_ok());
        }
        let err = encode(Codec::Json, &vec![0.5f32, f32::NAN]).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
    }

    #[test]
    fn json_refuses_a_some_it_would_write_as_null() {
        for err in [
            encode(Codec::Json, &Some(None::<u8>)).unwrap_err(),
            encode(Codec::Json, &Some(())).unwrap_err(),
            encode(Codec::Json, &Some(serde_json::Value::Null)).unwrap_err(),
            encode(Codec::Json, &vec![Some(Some(None::<u8>))]).unwrap_err(),
        ] {
            assert!(err.to_string().contains("read back as None"), "{err}");
        }
        // What reads back as written is accepted.
        for ok in [
            encode(Codec::Json, &None::<Option<u8>>).unwrap(),
            encode(Codec::Json, &Some(Some(3u8))).unwrap(),
            encode(Codec::Json, &Some(vec![None::<u8>])).unwrap(),
            encode(Codec::Json, &Some(serde_json::json!({"a": null}))).unwrap(),
            encode(Codec::Json, &serde_json::Value::Null).unwrap(),
        ] {
            assert!(!ok.is_empty());
        }
        assert_eq!(
            decode::<Option<Vec<Option<u8>>>>(
                Encoding::Json,
                &encode(Codec::Json, &Some(vec![None::<u8>])).unwrap()
            ),
            Ok(Some(vec![None]))
        );
    }

    #[test]
    fn json_refuses_what_it_could_not_read_back() {
        let mut deep = serde_json::Value::Null;
        for _ in 0..MAX_JSON_DEPTH {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let bytes = encode(Codec::Json, &deep).unwrap();
        assert_eq!(
            decode::<serde_json::Value>(Encoding::Json, &bytes).unwrap(),
            deep
        );
        let deeper = serde_json::Value::Array(vec![deep]);
        let err = encode(Codec::Json, &deeper).unwrap_err();
        assert!(err.to_string().contains("deeper than 120"), "{err}");
        // Struct keys: serde_json refuses them itself.
        let mut m = std::collections::BTreeMap::new();
        m.insert((1, 2), "x");
        assert!(matches!(encode(Codec::Json, &m), Err(Error::Encode(_))));
    }

    #[test]
    fn json_floats_round_trip_exactly() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let floats: Vec<f64> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let f = f64::from_bits(x);
                if f.is_finite() {
                    f
                } else {
                    1.0 / (x as f64)
                }
            })
            .collect();
        let bytes = encode(Codec::Json, &floats).unwrap();
        let back: Vec<f64> = decode(Encoding::Json, &bytes).unwrap();
        assert_eq!(
            back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            floats.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
    }
}
