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
//!   and adjacently tagged enums, `serde_json::Value`, maps with string or integer keys,
//!   integers up to 64 bits.
//!   It tolerates schema evolution: a field added with `#[serde(default)]` reads old entries, an
//!   unknown field is ignored (unless `deny_unknown_fields`). It cannot carry a non-finite
//!   float (serde_json would write `null`, which could read back as `None`), a `Some` whose
//!   content is written as `null` (`Some(None)`, `Some(())`, `Some(Value::Null)`: read back as
//!   `None`), a 128-bit integer (serde's buffered enums cannot read it back, and an untagged
//!   one reads it as another variant), a map whose keys are not strings, integers or bools, or
//!   nesting deeper than [`MAX_JSON_DEPTH`]: `set`
//!   refuses those with [`Error::Encode`] instead of storing something that reads back wrong
//!   or never. Floats round-trip exactly (`float_roundtrip`).
//! - **bincode** is compact and fast for fixed-shape values (embedding vectors): no field
//!   names, no self-description. It cannot carry `serde_json::Value`, untagged or internally
//!   tagged enums or `skip_serializing_if` fields (the decoder cannot know what was skipped;
//!   such values are stored but every read is a decode miss), and it does not survive schema
//!   changes: old entries of a changed type are misses. Since bincode's bytes name nothing, a
//!   changed type could decode from them (`u32` → `i32`, two fields swapped, a variant
//!   inserted); so each bincode entry starts with the value's *shape* (see `shape_of`: names
//!   and primitive kinds, no data), and a value that decodes into another shape is a miss.
//!   That is why typed reads require `V: Serialize` as well as `Deserialize`.

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
        Codec::Bincode => {
            let shape = shape_of(value).map_err(|e| Error::Encode(e.to_string()))?;
            let mut out = shape.to_le_bytes().to_vec();
            bincode::serde::encode_into_std_write(value, &mut out, bincode_config())
                .map_err(|e| Error::Encode(e.to_string()))?;
            Ok(out)
        }
    }
}

/// Decodes bytes made with `encoding` as `V`. Every byte must be consumed, so that a value of
/// another type that happens to share a prefix is rejected rather than silently truncated.
/// `Err` carries the decoder's message: the caller treats it as a miss.
pub(crate) fn decode<V: Serialize + DeserializeOwned>(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<V, String> {
    match encoding {
        Encoding::Json | Encoding::Raw => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Encoding::Unrecorded => decode_bincode(bytes),
        Encoding::Bincode => {
            let Some((stored, rest)) = bytes.split_first_chunk::<8>() else {
                return Err("shorter than its shape fingerprint".into());
            };
            let value: V = decode_bincode(rest)?;
            // bincode carries no names and no types: the bytes of a changed type (a field
            // from u32 to i32, two fields swapped, a variant inserted) can decode. The shape of
            // what was decoded must be the shape that was stored.
            if shape_of(&value).map_err(|e| e.to_string())? != u64::from_le_bytes(*stored) {
                return Err(format!(
                    "decodes, but into a value of another shape than {} was stored as (its \
                     type changed)",
                    std::any::type_name::<V>()
                ));
            }
            Ok(value)
        }
    }
}

/// Checks that `bytes` (made from a `V` with `codec`) read back as the value they were made
/// from. `set` cannot check this (it takes any `Serialize`), but a loaded value is a `V` both
/// ways, and a value that would never read back, or read back as another value, must not be
/// cached: serde buffers untagged and internally tagged enums and `flatten`ed fields, and that
/// buffer has no 128-bit integers and keeps map keys as strings, so such a value can fail to
/// decode every time, or decode as another variant (`5u128` as `5.0f64`). For JSON the value
/// read back is encoded again and both texts must be the same JSON value; for bincode the
/// shape check of `decode` does the comparing.
pub(crate) fn check_reads_back<V: Serialize + DeserializeOwned>(
    codec: Codec,
    bytes: &[u8],
) -> Result<(), Error> {
    let refuse = |why: String| {
        Error::Encode(format!(
            "the value does not read back as {} as it was written: {why}",
            std::any::type_name::<V>()
        ))
    };
    let back: V = decode(codec.into(), bytes).map_err(refuse)?;
    if codec == Codec::Json {
        let again = serde_json::to_vec(&back).map_err(|e| refuse(e.to_string()))?;
        let (a, b) = (
            serde_json::from_slice::<serde_json::Value>(bytes),
            serde_json::from_slice::<serde_json::Value>(&again),
        );
        if !matches!((a, b), (Ok(a), Ok(b)) if a == b) {
            return Err(refuse("it reads back as another value".into()));
        }
    }
    Ok(())
}

fn decode_bincode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    let mut reader = StackGuardReader {
        rest: bytes,
        start: stack_position(),
    };
    match bincode::serde::decode_from_reader::<V, _, _>(&mut reader, bincode_config()) {
        Ok(value) if reader.rest.is_empty() => Ok(value),
        Ok(_) => Err(format!(
            "{} trailing bytes after the value",
            reader.rest.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Most stack a bincode decode may grow by: bincode has no nesting limit, and a recursive
/// type read from a planted (checksum-valid) file nested 200,000 deep would overflow the
/// thread's stack and abort the process. Tokio's worker threads have 2 MiB; a real value
/// needs a few KiB.
const MAX_DECODE_STACK: usize = 256 * 1024;

/// An address in the current stack frame.
#[inline(always)]
fn stack_position() -> usize {
    let here = 0u8;
    std::hint::black_box(&here) as *const u8 as usize
}

/// The bytes of a bincode value, refusing to be read once the decoder's recursion has grown
/// the stack by more than [`MAX_DECODE_STACK`]: every level of nesting reads at least one byte
/// (a variant index, a length, an option tag), so a decode that nests too deep is stopped
/// with an error (a miss) before it can overflow.
struct StackGuardReader<'a> {
    rest: &'a [u8],
    start: usize,
}

impl bincode::de::read::Reader for StackGuardReader<'_> {
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        if stack_position().abs_diff(self.start) > MAX_DECODE_STACK {
            return Err(bincode::error::DecodeError::Other(
                "the value nests too deeply to decode",
            ));
        }
        if bytes.len() > self.rest.len() {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.rest.len(),
            });
        }
        let (now, rest) = self.rest.split_at(bytes.len());
        bytes.copy_from_slice(now);
        self.rest = rest;
        Ok(())
    }
}

/// The *shape* of a value: what serde is told about it, without its data. Struct, variant and
/// field names (and variant indexes), in order, and the kind of every primitive (`u32` is not `i32`, `f32` is not
/// `u32`), whether an option is `Some`; not string contents nor numbers. Stored in front of a
/// bincode value and compared with the shape of what decodes from it: the same type gives the
/// same shape (the value is the same), a changed type a different one. Sequences and maps are
/// folded order-independently, so a `HashMap` or `HashSet` iterated in another order after
/// decoding has the same shape. A 64-bit FNV-style mix: not cryptographic, it guards against
/// accidents (a schema change), not against an adversary who can write the cache directory
/// (who is stopped by nothing here but the checksum's key binding).
pub(crate) fn shape_of<V: Serialize + ?Sized>(value: &V) -> Result<u64, CheckError> {
    let mut h = SHAPE_SEED;
    value.serialize(Shape(&mut h))?;
    Ok(h)
}

const SHAPE_SEED: u64 = 0xcbf2_9ce4_8422_2325;

fn mix(h: u64, x: u64) -> u64 {
    let h = (h ^ x).wrapping_mul(0x0000_0100_0000_01b3);
    h ^ (h >> 29)
}

fn mix_str(mut h: u64, s: &str) -> u64 {
    for chunk in s.as_bytes().chunks(8) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(b));
    }
    mix(h, s.len() as u64)
}

/// Tags of what serde is told, one per `Serializer` method.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Tag {
    Bool = 1,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    Str,
    Bytes,
    None,
    Some,
    Unit,
    UnitStruct,
    UnitVariant,
    NewtypeStruct,
    NewtypeVariant,
    Seq,
    Tuple,
    TupleStruct,
    TupleVariant,
    Map,
    Struct,
    StructVariant,
    SkippedField,
}

struct Shape<'a>(&'a mut u64);

impl<'a> Shape<'a> {
    fn tag(&mut self, tag: Tag) {
        *self.0 = mix(*self.0, tag as u64);
    }
    fn name(&mut self, name: &str) {
        *self.0 = mix_str(*self.0, name);
    }
    /// A variant by name *and* index: bincode stores the index, so a reordered enum decodes
    /// each element into another variant; with both in the shape, even a sequence (whose
    /// elements are folded without their order) of such variants is told apart.
    fn variant(&mut self, name: &str, index: u32, variant: &str) {
        *self.0 = mix(mix_str(mix_str(*self.0, name), variant), u64::from(index));
    }
    fn ordered(self, tag: Tag, names: &[&str]) -> ShapeCompound<'a> {
        let mut cur = mix(SHAPE_SEED, tag as u64);
        for n in names {
            cur = mix_str(cur, n);
        }
        ShapeCompound {
            out: self.0,
            cur,
            acc: 0,
            entry: SHAPE_SEED,
            unordered: false,
        }
    }
    fn unordered(self, tag: Tag) -> ShapeCompound<'a> {
        ShapeCompound {
            out: self.0,
            cur: mix(SHAPE_SEED, tag as u64),
            acc: 0,
            entry: SHAPE_SEED,
            unordered: true,
        }
    }
}

macro_rules! shape_primitive {
    ($($method:ident($ty:ty) => $tag:ident),* $(,)?) => {
        $(fn $method(mut self, _: $ty) -> Result<(), CheckError> {
            self.tag(Tag::$tag);
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for Shape<'a> {
    type Ok = ();
    type Error = CheckError;
    type SerializeSeq = ShapeCompound<'a>;
    type SerializeTuple = ShapeCompound<'a>;
    type SerializeTupleStruct = ShapeCompound<'a>;
    type SerializeTupleVariant = ShapeCompound<'a>;
    type SerializeMap = ShapeCompound<'a>;
    type SerializeStruct = ShapeCompound<'a>;
    type SerializeStructVariant = ShapeCompound<'a>;

    shape_primitive!(
        serialize_bool(bool) => Bool,
        serialize_i8(i8) => I8,
        serialize_i16(i16) => I16,
        serialize_i32(i32) => I32,
        serialize_i64(i64) => I64,
        serialize_i128(i128) => I128,
        serialize_u8(u8) => U8,
        serialize_u16(u16) => U16,
        serialize_u32(u32) => U32,
        serialize_u64(u64) => U64,
        serialize_u128(u128) => U128,
        serialize_f32(f32) => F32,
        serialize_f64(f64) => F64,
        serialize_char(char) => Char,
        serialize_str(&str) => Str,
        serialize_bytes(&[u8]) => Bytes,
    );

    fn serialize_none(mut self) -> Result<(), CheckError> {
        self.tag(Tag::None);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), CheckError> {
        self.tag(Tag::Some);
        value.serialize(self)
    }
    fn serialize_unit(mut self) -> Result<(), CheckError> {
        self.tag(Tag::Unit);
        Ok(())
    }
    fn serialize_unit_struct(mut self, name: &'static str) -> Result<(), CheckError> {
        self.tag(Tag::UnitStruct);
        self.name(name);
        Ok(())
    }
    fn serialize_unit_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), CheckError> {
        self.tag(Tag::UnitVariant);
        self.variant(name, index, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        self.tag(Tag::NewtypeStruct);
        self.name(name);
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        self.tag(Tag::NewtypeVariant);
        self.variant(name, index, variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<ShapeCompound<'a>, CheckError> {
        Ok(self.unordered(Tag::Seq))
    }
    fn serialize_tuple(self, _: usize) -> Result<ShapeCompound<'a>, CheckError> {
        Ok(self.ordered(Tag::Tuple, &[]))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<ShapeCompound<'a>, CheckError> {
        Ok(self.ordered(Tag::TupleStruct, &[name]))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<ShapeCompound<'a>, CheckError> {
        let mut c = self.ordered(Tag::TupleVariant, &[name, variant]);
        c.cur = mix(c.cur, u64::from(index));
        Ok(c)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<ShapeCompound<'a>, CheckError> {
        Ok(self.unordered(Tag::Map))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<ShapeCompound<'a>, CheckError> {
        Ok(self.ordered(Tag::Struct, &[name]))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<ShapeCompound<'a>, CheckError> {
        let mut c = self.ordered(Tag::StructVariant, &[name, variant]);
        c.cur = mix(c.cur, u64::from(index));
        Ok(c)
    }
}

/// A compound being shaped: ordered parts mix into `cur` one after the other; unordered ones
/// (sequence elements, map entries) are shaped each on its own (`entry`) and summed (`acc`).
struct ShapeCompound<'a> {
    out: &'a mut u64,
    cur: u64,
    acc: u64,
    entry: u64,
    unordered: bool,
}

impl ShapeCompound<'_> {
    fn part<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        if self.unordered {
            let mut e = SHAPE_SEED;
            value.serialize(Shape(&mut e))?;
            self.acc = self.acc.wrapping_add(e);
            Ok(())
        } else {
            value.serialize(Shape(&mut self.cur))
        }
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), CheckError> {
        self.cur = mix_str(self.cur, key);
        self.part(value)
    }
    fn finish(self) -> Result<(), CheckError> {
        *self.out = mix(mix(*self.out, self.cur), self.acc);
        Ok(())
    }
}

macro_rules! shape_compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for ShapeCompound<'_> {
            type Ok = ();
            type Error = CheckError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
                self.part(value)
            }
            fn end(self) -> Result<(), CheckError> {
                self.finish()
            }
        })*
    };
}

shape_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for ShapeCompound<'_> {
    type Ok = ();
    type Error = CheckError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CheckError> {
        self.entry = SHAPE_SEED;
        key.serialize(Shape(&mut self.entry))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(Shape(&mut self.entry))?;
        self.acc = self.acc.wrapping_add(self.entry);
        Ok(())
    }
    fn end(self) -> Result<(), CheckError> {
        self.finish()
    }
}

macro_rules! shape_struct {
    ($($trait:ident),*) => {
        $(impl ser::$trait for ShapeCompound<'_> {
            type Ok = ();
            type Error = CheckError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CheckError> {
                self.field(key, value)
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), CheckError> {
                self.cur = mix_str(mix(self.cur, Tag::SkippedField as u64), key);
                Ok(())
            }
            fn end(self) -> Result<(), CheckError> {
                self.finish()
            }
        })*
    };
}

shape_struct!(SerializeStruct, SerializeStructVariant);

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
pub(crate) struct CheckError(String);

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

    /// A 128-bit integer does not read back where serde buffers the value (untagged and
    /// internally tagged enums, `flatten`: the buffer has no 128-bit integers), and an untagged
    /// enum then reads it as another variant (`Exact(5u128)` as `Approx(5.0)`). The position
    /// is not visible from here, so every 128-bit integer is refused.
    fn wide_int(ty: &str) -> CheckError {
        CheckError(format!(
            "the value holds a {ty}, which does not read back from JSON everywhere (serde's \
             buffered enums have no 128-bit integers)"
        ))
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
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_i128(self, _: i128) -> Result<(), CheckError> {
        Err(JsonCheck::wide_int("i128"))
    }
    fn serialize_u128(self, _: u128) -> Result<(), CheckError> {
        Err(JsonCheck::wide_int("u128"))
    }
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

macro_rules! check_struct {
    ($($trait:ident),*) => {
        $(impl ser::$trait for JsonCheck {
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
        })*
    };
}

check_struct!(SerializeStruct, SerializeStructVariant);

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
        assert_eq!(bin[..8], shape_of(&answer()).unwrap().to_le_bytes());
        assert_eq!(bin[8..], [5, b'h', b'e', b'l', b'l', b'o', 7]);
        assert_eq!(decode::<Answer>(Encoding::Bincode, &bin).unwrap(), answer());
        assert_eq!(
            decode::<Answer>(Encoding::Unrecorded, &bin[8..]).unwrap(),
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
    fn bincode_entries_carry_the_shape_and_a_changed_type_is_refused() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct V1 {
            a: u32,
            b: u32,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Signed {
            a: i32,
            b: u32,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Swapped {
            b: u32,
            a: u32,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum E1 {
            A(u8),
            B(u8),
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum E2 {
            A(u8),
            New(u8),
            B(u8),
        }
        let bytes = encode(Codec::Bincode, &V1 { a: 7, b: 9 }).unwrap();
        assert_eq!(&bytes[8..], [7, 9], "the shape, then bincode");
        assert_eq!(
            decode::<V1>(Encoding::Bincode, &bytes),
            Ok(V1 { a: 7, b: 9 })
        );
        // Each of these decodes from the bincode bytes alone, into a wrong value.
        assert_eq!(
            decode_bincode::<Signed>(&bytes[8..]),
            Ok(Signed { a: -4, b: 9 })
        );
        assert!(decode::<Signed>(Encoding::Bincode, &bytes).is_err());
        assert_eq!(
            decode_bincode::<Swapped>(&bytes[8..]),
            Ok(Swapped { b: 7, a: 9 })
        );
        assert!(decode::<Swapped>(Encoding::Bincode, &bytes).is_err());
        let e = encode(Codec::Bincode, &E1::B(1)).unwrap();
        assert_eq!(decode_bincode::<E2>(&e[8..]), Ok(E2::New(1)));
        assert!(decode::<E2>(Encoding::Bincode, &e).is_err());
        assert_eq!(decode::<E1>(Encoding::Bincode, &e), Ok(E1::B(1)));
        // Variants reordered: a list of them would decode permuted.
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum R1 {
            User,
            Assistant,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum R2 {
            Assistant,
            User,
        }
        let roles = encode(Codec::Bincode, &vec![R1::User, R1::Assistant]).unwrap();
        assert_eq!(
            decode_bincode::<Vec<R2>>(&roles[8..]),
            Ok(vec![R2::Assistant, R2::User])
        );
        assert!(decode::<Vec<R2>>(Encoding::Bincode, &roles).is_err());
        // Hash maps and sets come back in another order: the same shape.
        let m: std::collections::HashMap<String, E1> = (0..50u8)
            .map(|i| {
                (
                    format!("k{i}"),
                    if i % 2 == 0 { E1::A(i) } else { E1::B(i) },
                )
            })
            .collect();
        let bytes = encode(Codec::Bincode, &m).unwrap();
        assert_eq!(
            decode::<std::collections::HashMap<String, E1>>(Encoding::Bincode, &bytes),
            Ok(m)
        );
        // Shorter than a shape: a miss, not a panic.
        assert!(decode::<u8>(Encoding::Bincode, &[1, 2, 3]).is_err());
    }

    #[test]
    fn a_value_that_reads_back_as_another_is_caught_before_it_is_cached() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        #[serde(untagged)]
        enum Num {
            Exact(u128),
            Approx(f64),
        }
        // (`encode` refuses the u128 itself; the check is the second guard.)
        let bytes = serde_json::to_vec(&Num::Exact(5)).unwrap();
        assert_eq!(decode::<Num>(Encoding::Json, &bytes), Ok(Num::Approx(5.0)));
        let err = check_reads_back::<Num>(Codec::Json, &bytes).unwrap_err();
        assert!(
            err.to_string().contains("reads back as another value"),
            "{err}"
        );
        // Integer map keys inside an internally tagged enum never decode.
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        #[serde(tag = "type")]
        enum Tagged {
            Scores {
                by_id: std::collections::BTreeMap<u32, String>,
            },
        }
        let t = Tagged::Scores {
            by_id: [(1, "a".to_string())].into(),
        };
        let bytes = encode(Codec::Json, &t).unwrap();
        assert!(check_reads_back::<Tagged>(Codec::Json, &bytes).is_err());
        // Plain values pass, hash maps in any order included.
        let m: std::collections::HashMap<String, u32> =
            (0..100).map(|i| (format!("k{i}"), i)).collect();
        for codec in [Codec::Json, Codec::Bincode] {
            let bytes = encode(codec, &m).unwrap();
            assert!(
                check_reads_back::<std::collections::HashMap<String, u32>>(codec, &bytes).is_ok()
            );
        }
    }

    #[test]
    fn a_bincode_value_nested_too_deep_is_refused_not_a_stack_overflow() {
        #[derive(serde::Serialize, serde::Deserialize, Debug)]
        enum Node {
            End,
            Next(Box<Node>),
        }
        // 1,000,000 levels: far past what any thread's stack holds when decoded recursively.
        let mut bytes = vec![1u8; 1_000_000];
        bytes.push(0);
        let err = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || decode_bincode::<Node>(&bytes).unwrap_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(err.contains("nests too deeply"), "{err}");
        // Ordinary nesting decodes.
        let mut n = Node::End;
        for _ in 0..100 {
            n = Node::Next(Box::new(n));
        }
        let bytes = encode(Codec::Bincode, &n).unwrap();
        assert!(decode::<Node>(Encoding::Bincode, &bytes).is_ok());
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
    fn json_refuses_128_bit_integers() {
        for err in [
            encode(Codec::Json, &5u128).unwrap_err(),
            encode(Codec::Json, &-1i128).unwrap_err(),
            encode(Codec::Json, &vec![Some(u128::MAX)]).unwrap_err(),
        ] {
            assert!(err.to_string().contains("128-bit"), "{err}");
        }
        assert!(encode(Codec::Json, &u64::MAX).is_ok());
        assert!(encode(Codec::Bincode, &u128::MAX).is_ok());
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
        let mut rng = crate::workload::Rng::new(7);
        let floats: Vec<f64> = (0..2000)
            .map(|_| {
                let x = rng.next_u64();
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
