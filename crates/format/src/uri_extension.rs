//! The URI extension block (UEB) of CHK files
//! (`docs/specifications/URI-extension.rst`, `allmydata/uri.py`
//! `pack_extension`/`unpack_extension`).
//!
//! Every share of a CHK file ends with the same UEB, whose
//! [`steward_cap::hash::uri_extension_hash`] the cap carries, so once the
//! hash matches the block is trusted. It is a sequence of
//! `key:netstring(value)` entries in sorted key order; numbers are decimal
//! text, hashes raw bytes. Tahoe writes `codec_name` (`crs`),
//! `codec_params` and `tail_codec_params` (`segsize-k-n`),
//! `crypttext_hash`, `crypttext_root_hash`, `needed_shares`,
//! `num_segments`, `segment_size`, `share_root_hash`, `size`,
//! `total_shares`.

use crate::netstring::{parse_decimal, read_netstring};
use std::collections::BTreeMap;

/// The longest UEB a reader accepts: Tahoe treats a length of 2000 or more
/// as corruption (`RidiculouslyLargeURIExtensionBlock`); real ones are
/// about 420 bytes.
pub const MAX_LEN: u64 = 1999;

/// Why bytes are not a URI extension block (or not a consistent one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UebError {
    /// The `key:netstring` syntax is broken.
    #[error("malformed URI extension block at byte {at}")]
    Malformed {
        /// Offset of the bad entry.
        at: usize,
    },
    /// A required field is missing.
    #[error("URI extension block lacks {0}")]
    Missing(&'static str),
    /// A field has the wrong form (not a number, not 32 bytes, …).
    #[error("URI extension block field {field} is invalid: {detail}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A field disagrees with the cap or with the other fields.
    #[error("URI extension block is inconsistent: {0}")]
    Inconsistent(String),
}

/// A parsed URI extension block: its fields by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UriExtension {
    fields: BTreeMap<String, Vec<u8>>,
}

impl UriExtension {
    /// Parses a UEB (`unpack_extension`). A key given twice keeps its last
    /// value, as Tahoe's dict does.
    pub fn parse(data: &[u8]) -> Result<UriExtension, UebError> {
        let mut fields = BTreeMap::new();
        let mut pos = 0;
        while pos < data.len() {
            let at = pos;
            let colon = data[pos..]
                .iter()
                .position(|&b| b == b':')
                .ok_or(UebError::Malformed { at })?;
            let key = std::str::from_utf8(&data[pos..pos + colon])
                .map_err(|_| UebError::Malformed { at })?
                .to_string();
            let (value, next) =
                read_netstring(data, pos + colon + 1).map_err(|_| UebError::Malformed { at })?;
            fields.insert(key, value.to_vec());
            pos = next;
        }
        Ok(UriExtension { fields })
    }

    /// Builds a UEB from fields (for tests and tools; readers never write).
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, Vec<u8>)>) -> UriExtension {
        UriExtension {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// The bytes Tahoe's `pack_extension` writes for these fields.
    pub fn pack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.fields {
            out.extend_from_slice(k.as_bytes());
            out.push(b':');
            out.extend(steward_cap::hash::netstring(v));
        }
        out
    }

    /// A field's raw value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.fields.get(key).map(Vec::as_slice)
    }

    /// All fields.
    pub fn fields(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.fields
    }

    /// A numeric field (`size`, `segment_size`, `num_segments`,
    /// `needed_shares`, `total_shares`).
    pub fn number(&self, key: &'static str) -> Result<Option<u64>, UebError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_decimal(v).map(Some).ok_or(UebError::BadField {
                field: key,
                detail: "not a decimal number".into(),
            }),
        }
    }

    /// A 32-byte hash field.
    pub fn hash(&self, key: &'static str) -> Result<Option<[u8; 32]>, UebError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.try_into().map(Some).map_err(|_| UebError::BadField {
                field: key,
                detail: format!("{} bytes, not 32", v.len()),
            }),
        }
    }

    /// `codec_params` or `tail_codec_params`: `(segment size, k, n)`.
    pub fn codec_params(&self, key: &'static str) -> Result<Option<(u64, u64, u64)>, UebError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || UebError::BadField {
            field: key,
            detail: "not segsize-k-n".into(),
        };
        let parts: Vec<u64> = v
            .split(|&b| b == b'-')
            .map(parse_decimal)
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        match parts[..] {
            [a, b, c] => Ok(Some((a, b, c))),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_pack() {
        let data =
            b"codec_name:3:crs,size:4:1234,share_root_hash:32:01234567890123456789012345678901,";
        let u = UriExtension::parse(data).unwrap();
        assert_eq!(u.get("codec_name"), Some(&b"crs"[..]));
        assert_eq!(u.number("size").unwrap(), Some(1234));
        assert!(u.hash("share_root_hash").unwrap().is_some());
        assert!(u.hash("codec_name").is_err());
        // pack sorts the keys, as Tahoe does
        let again = UriExtension::parse(&u.pack()).unwrap();
        assert_eq!(again, u);
        assert!(u
            .pack()
            .starts_with(b"codec_name:3:crs,share_root_hash:32:"));
    }

    #[test]
    fn malformed() {
        for bad in [&b"size"[..], b"size:4:12,", b"size:x:1,", b"\xff:1:a,"] {
            assert!(UriExtension::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(UriExtension::parse(b"").unwrap(), UriExtension::default());
        let u = UriExtension::parse(b"codec_params:7:1-2-3-4,").unwrap();
        assert!(u.codec_params("codec_params").is_err());
        let u = UriExtension::parse(b"codec_params:7:131-3-9,").unwrap();
        assert_eq!(u.codec_params("codec_params").unwrap(), Some((131, 3, 9)));
    }
}
