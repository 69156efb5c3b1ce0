//! The value codec: bincode 2 over serde, confined to this module so that a future codec
//! change touches one file.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;

/// bincode's standard configuration (varint lengths, little endian) with an allocation limit, so
/// that decoding bytes as the wrong type can never claim more memory than the limit.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ u32::MAX as usize }>()
}

/// Encodes a value to bytes.
pub(crate) fn encode<V: Serialize + ?Sized>(value: &V) -> Result<Vec<u8>, Error> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| Error::Encode(e.to_string()))
}

/// Decodes bytes as `V`; every byte must be consumed, so that a value of another type that
/// happens to share a prefix is rejected rather than silently truncated.
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, Error> {
    let type_name = std::any::type_name::<V>();
    match bincode::serde::decode_from_slice::<V, _>(bytes, config()) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(Error::Decode {
            type_name,
            detail: format!("{} trailing bytes after the value", bytes.len() - used),
        }),
        Err(e) => Err(Error::Decode {
            type_name,
            detail: e.to_string(),
        }),
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

    #[test]
    fn round_trip() {
        let a = Answer {
            text: "hello".into(),
            tokens: 7,
        };
        let bytes = encode(&a).unwrap();
        assert_eq!(decode::<Answer>(&bytes).unwrap(), a);
    }

    #[test]
    fn wrong_type_is_a_decode_error() {
        let bytes = encode(&"just a string").unwrap();
        let err = decode::<Answer>(&bytes).unwrap_err();
        assert!(matches!(err, Error::Decode { type_name, .. } if type_name.ends_with("Answer")));
        // A u8 decodes from the first byte of a longer value: trailing bytes must be rejected.
        let err = decode::<u8>(&encode(&(1u8, 2u8)).unwrap()).unwrap_err();
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // A Vec<u64> claiming u64::MAX/2 elements in 10 bytes must fail, not abort on allocation.
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(decode::<Vec<u64>>(&bytes).is_err());
    }
}
