//! Tahoe-LAFS base32 (`allmydata.util.base32`): RFC 3548 alphabet in
//! lowercase (`abcdefghijklmnopqrstuvwxyz234567`), no padding.
//!
//! Decoding is strict, like the regular expressions in Tahoe's `uri.py`:
//! only lowercase symbols, only lengths an encoder can produce
//! (`len % 8` in {0, 2, 4, 5, 7}), and the unused low bits of the last
//! symbol must be zero, so every byte string has exactly one encoding.

use data_encoding::{DecodeKind, Encoding, Specification};
use std::sync::OnceLock;

/// The Tahoe base32 alphabet.
pub const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz234567";

fn encoding() -> &'static Encoding {
    static ENC: OnceLock<Encoding> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str(ALPHABET);
        spec.check_trailing_bits = true;
        spec.encoding().expect("valid base32 specification")
    })
}

/// Whether `c` is a symbol of the alphabet (a range test: caps are parsed
/// for every object of a run, so no search of the alphabet per character).
pub fn is_symbol(c: char) -> bool {
    matches!(c, 'a'..='z' | '2'..='7')
}

/// Why a string is not canonical Tahoe base32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A character outside `a-z2-7` (uppercase and `=` padding included).
    #[error("character {position} is not in the base32 alphabet a-z, 2-7")]
    InvalidChar {
        /// 0-based character offset within the field.
        position: usize,
    },
    /// No byte string encodes to this many characters.
    #[error("{len} characters is not a possible base32 length")]
    InvalidLength {
        /// Length of the field in characters.
        len: usize,
    },
    /// The last character carries non-zero padding bits.
    #[error("the last character has non-zero padding bits (not canonical)")]
    NonCanonical,
}

/// Encode bytes as Tahoe base32 (`base32.b2a`).
pub fn encode(data: &[u8]) -> String {
    encoding().encode(data)
}

/// Append the encoding of `data` to `out` (no allocation of its own: a
/// cap's text is written into one buffer).
pub fn encode_append(data: &[u8], out: &mut String) {
    encoding().encode_append(data, out)
}

/// Decode exactly `N` bytes from a field already checked to hold only
/// symbols of the alphabet and `encoded_len(N)` of them, straight into an
/// array (no `Vec`): only the padding bits can still be wrong.
pub(crate) fn decode_checked<const N: usize>(s: &str) -> Result<[u8; N], DecodeError> {
    debug_assert_eq!(s.len(), encoded_len(N));
    let mut out = [0u8; N];
    encoding()
        .decode_mut(s.as_bytes(), &mut out)
        .map_err(|e| match e.error.kind {
            DecodeKind::Symbol => DecodeError::InvalidChar {
                position: e.error.position,
            },
            DecodeKind::Trailing => DecodeError::NonCanonical,
            DecodeKind::Length | DecodeKind::Padding => DecodeError::InvalidLength { len: s.len() },
        })?;
    Ok(out)
}

/// Number of characters [`encode`] produces for `n` bytes.
pub fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

/// Decode strict Tahoe base32 (`base32.a2b` after `could_be_base32_encoded`).
pub fn decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    // Check the symbol set ourselves so the error position is the
    // character offset and uppercase is rejected as Tahoe does.
    if let Some(position) = s.chars().position(|c| !is_symbol(c)) {
        return Err(DecodeError::InvalidChar { position });
    }
    encoding().decode(s.as_bytes()).map_err(|e| match e.kind {
        DecodeKind::Symbol => DecodeError::InvalidChar {
            position: e.position,
        },
        DecodeKind::Trailing => DecodeError::NonCanonical,
        DecodeKind::Length | DecodeKind::Padding => DecodeError::InvalidLength { len: s.len() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // (hex, base32) printed by tahoe-lafs 1.20.0 `base32.b2a`.
    const VECTORS: &[(&str, &str)] = &[
        ("", ""),
        ("fa", "7i"),
        ("fa01", "7iaq"),
        ("fa0108", "7iaqq"),
        ("fa01080f", "7iaqqdy"),
        ("fa01080f16", "7iaqqdyw"),
        ("fa01080f161d", "7iaqqdywdu"),
        ("fa01080f161d24", "7iaqqdywdusa"),
        ("fa01080f161d242b", "7iaqqdywduscw"),
        ("fa01080f161d242b32", "7iaqqdywduscwmq"),
        ("fa01080f161d242b3239", "7iaqqdywduscwmrz"),
        ("fa01080f161d242b323940", "7iaqqdywduscwmrzia"),
    ];

    #[test]
    fn roundtrip_matches_tahoe() {
        for (h, b) in VECTORS {
            let bytes = unhex(h);
            assert_eq!(encode(&bytes), *b, "encode {h}");
            assert_eq!(decode(b).unwrap(), bytes, "decode {b}");
            assert_eq!(encoded_len(bytes.len()), b.len());
        }
        assert_eq!(encoded_len(16), 26);
        assert_eq!(encoded_len(32), 52);
    }

    #[test]
    fn rejects_non_canonical() {
        assert_eq!(decode("7I"), Err(DecodeError::InvalidChar { position: 1 }));
        assert_eq!(
            decode("7i======"),
            Err(DecodeError::InvalidChar { position: 2 })
        );
        assert_eq!(decode("abc"), Err(DecodeError::InvalidLength { len: 3 }));
        assert_eq!(decode("a"), Err(DecodeError::InvalidLength { len: 1 }));
        // "7j": the last symbol's 2 unused bits are not zero
        assert_eq!(decode("7j"), Err(DecodeError::NonCanonical));
        assert_eq!(decode("é"), Err(DecodeError::InvalidChar { position: 0 }));
    }
}
