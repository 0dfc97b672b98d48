//! The directory format (`allmydata/dirnode.py`,
//! `docs/specifications/dirnodes.rst`): what the (decrypted) contents of a
//! directory's backing file hold.
//!
//! The contents are one netstring per child, sorted by name; each holds
//! four netstrings:
//!
//! 1. the name, UTF-8, NFC-normalized;
//! 2. the child's read cap (immutable directories store it without the
//!    `imm.` prefix), possibly padded with spaces;
//! 3. `rwcapdata`: in a mutable directory, a 16-byte salt, the child's write
//!    cap (or nothing) encrypted with AES-CTR under
//!    `mutable_rwcap_key_hash(salt, directory write key)`, and a 32-byte MAC
//!    that readers ignore; the salt is `mutable_rwcap_salt_hash(write cap)`.
//!    Empty in immutable directories and when the writer had no write key;
//! 4. the metadata, a JSON object.
//!
//! [`unpack`] reads contents exactly as Tahoe's `_unpack_contents` does at
//! the byte level: names normalized, trailing spaces stripped from caps,
//! empty caps as `None`, write caps only with the write key, the last of
//! two entries with one name kept. Turning the caps into nodes (unknown
//! caps, the children an immutable directory may not hold) is the caller's,
//! as Tahoe's `nodemaker.create_from_cap` is.

use crate::aes;
use crate::netstring::{split_netstrings, NetstringError};
use serde_json::{Map, Value};
use steward_cap::hash::{hmac, mutable_rwcap_key_hash, mutable_rwcap_salt_hash, netstring};
use unicode_normalization::UnicodeNormalization;

/// One child as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, NFC-normalized.
    pub name: String,
    /// The read cap (trailing spaces removed); `None` if empty. Secret.
    pub ro_uri: Option<Vec<u8>>,
    /// The write cap, decrypted (only when the directory's write key was
    /// given and the child has one). Secret.
    pub rw_uri: Option<Vec<u8>>,
    /// The metadata as stored (JSON text).
    pub metadata_json: Vec<u8>,
    /// The metadata, parsed (key order kept).
    pub metadata: Map<String, Value>,
}

impl std::fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let red = |c: &Option<Vec<u8>>| {
            c.as_ref()
                .map(|c| steward_cap::redact(&String::from_utf8_lossy(c)))
        };
        f.debug_struct("DirEntry")
            .field("name", &self.name)
            .field("ro_uri", &red(&self.ro_uri))
            .field("rw_uri", &red(&self.rw_uri))
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// Why directory contents cannot be read (Tahoe then fails the whole
/// listing too).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// The netstring framing is broken.
    #[error("directory entry {entry} is malformed: {source}")]
    Framing {
        /// 0-based entry number.
        entry: usize,
        /// The netstring problem.
        source: NetstringError,
    },
    /// A name that is not UTF-8.
    #[error("the name of directory entry {entry} is not UTF-8")]
    BadName {
        /// 0-based entry number.
        entry: usize,
    },
    /// Metadata that is not a JSON object.
    #[error("the metadata of directory entry {entry} is not a JSON object")]
    BadMetadata {
        /// 0-based entry number.
        entry: usize,
    },
    /// A write cap in an immutable directory.
    #[error("directory entry {entry} of an immutable directory carries a write cap")]
    WriteCapInImmutable {
        /// 0-based entry number.
        entry: usize,
    },
}

/// Bytes of a child write cap's salt.
const SALT_LEN: usize = 16;
/// Bytes of its MAC.
const MAC_LEN: usize = 32;

/// Encrypts a child's write cap for a mutable directory with write key
/// `writekey` (`dirnode._encrypt_rw_uri`): salt, ciphertext, MAC. The salt
/// derives from the cap, so the result is deterministic.
pub fn encrypt_rw_uri(writekey: &[u8; 16], rw_uri: &[u8]) -> Vec<u8> {
    let salt = mutable_rwcap_salt_hash(rw_uri);
    let key = mutable_rwcap_key_hash(&salt, writekey);
    let mut out = salt.to_vec();
    let mut crypttext = rw_uri.to_vec();
    aes::apply_keystream(&key, &aes::ZERO_IV, 0, &mut crypttext);
    out.extend_from_slice(&crypttext);
    out.extend_from_slice(&hmac(&key, &out));
    out
}

/// Decrypts `rwcapdata` (`DirectoryNode._decrypt_rwcapdata`). Like Tahoe's
/// slicing, data of 48 bytes or fewer holds no cap. The MAC is not checked
/// (Tahoe stopped checking it in 1.3.0).
pub fn decrypt_rw_uri(writekey: &[u8; 16], rwcapdata: &[u8]) -> Vec<u8> {
    if rwcapdata.len() <= SALT_LEN + MAC_LEN {
        return Vec::new();
    }
    let salt = &rwcapdata[..SALT_LEN];
    let mut plain = rwcapdata[SALT_LEN..rwcapdata.len() - MAC_LEN].to_vec();
    let key = mutable_rwcap_key_hash(salt, writekey);
    aes::apply_keystream(&key, &aes::ZERO_IV, 0, &mut plain);
    plain
}

fn strip_spaces(b: &[u8]) -> Option<Vec<u8>> {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    (end > 0).then(|| b[..end].to_vec())
}

/// Reads directory contents. `mutable`: whether the directory is mutable
/// (an immutable one may not carry write caps). `writekey`: the
/// directory's write key, to decrypt children's write caps.
pub fn unpack(
    data: &[u8],
    mutable: bool,
    writekey: Option<&[u8; 16]>,
) -> Result<Vec<DirEntry>, DirError> {
    let mut out: Vec<DirEntry> = Vec::new();
    let mut position = 0;
    let mut entry = 0;
    while position < data.len() {
        let framing = |source| DirError::Framing { entry, source };
        let (outer, next) = split_netstrings(data, 1, position).map_err(framing)?;
        position = next;
        // Bytes after the four fields are ignored, as Tahoe does.
        let (f, _) = split_netstrings(outer[0], 4, 0).map_err(framing)?;
        let (name, ro, rwcapdata, meta) = (f[0], f[1], f[2], f[3]);
        if !mutable && !rwcapdata.is_empty() {
            return Err(DirError::WriteCapInImmutable { entry });
        }
        let name: String = std::str::from_utf8(name)
            .map_err(|_| DirError::BadName { entry })?
            .nfc()
            .collect();
        let rw = match writekey {
            Some(k) => strip_spaces(&decrypt_rw_uri(k, rwcapdata)),
            None => None,
        };
        let metadata = match serde_json::from_slice::<Value>(meta) {
            Ok(Value::Object(m)) => m,
            _ => return Err(DirError::BadMetadata { entry }),
        };
        let e = DirEntry {
            name,
            ro_uri: strip_spaces(ro),
            rw_uri: rw,
            metadata_json: meta.to_vec(),
            metadata,
        };
        match out.iter_mut().find(|x| x.name == e.name) {
            Some(old) => *old = e,
            None => out.push(e),
        }
        entry += 1;
    }
    Ok(out)
}

/// One child to [`pack`].
#[derive(Clone, Debug)]
pub struct PackEntry<'a> {
    /// The name (normalized to NFC when packed).
    pub name: &'a str,
    /// The read cap as stored (immutable directories: without `imm.`).
    pub ro_uri: &'a [u8],
    /// The write cap, or empty.
    pub rw_uri: &'a [u8],
    /// The metadata JSON text.
    pub metadata_json: &'a [u8],
}

/// Writes directory contents as Tahoe's `pack_children` does (for tests and
/// tools): entries sorted by normalized name, write caps encrypted when
/// `writekey` is given, else an empty `rwcapdata`.
pub fn pack(entries: &[PackEntry], writekey: Option<&[u8; 16]>) -> Vec<u8> {
    let mut sorted: Vec<(String, &PackEntry)> = entries
        .iter()
        .map(|e| (e.name.nfc().collect(), e))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (name, e) in sorted {
        let rw = match writekey {
            Some(k) => netstring(&encrypt_rw_uri(k, e.rw_uri)),
            None => netstring(b""),
        };
        let mut inner = netstring(name.as_bytes());
        inner.extend(netstring(e.ro_uri));
        inner.extend(rw);
        inner.extend(netstring(e.metadata_json));
        out.extend(netstring(&inner));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rules() {
        let wk = [5u8; 16];
        let entries = [
            PackEntry {
                name: "b",
                ro_uri: b"URI:LIT:me  ",
                rw_uri: b"",
                metadata_json: b"{}",
            },
            PackEntry {
                name: "a",
                ro_uri: b"URI:DIR2-RO:x",
                rw_uri: b"URI:DIR2:y",
                metadata_json: br#"{"k": 1}"#,
            },
        ];
        let packed = pack(&entries, Some(&wk));
        let got = unpack(&packed, true, Some(&wk)).unwrap();
        assert_eq!(got[0].name, "a");
        assert_eq!(got[0].rw_uri.as_deref(), Some(&b"URI:DIR2:y"[..]));
        assert_eq!(got[1].ro_uri.as_deref(), Some(&b"URI:LIT:me"[..]));
        assert_eq!(got[1].rw_uri, None);
        let ro = unpack(&packed, true, None).unwrap();
        assert!(ro.iter().all(|e| e.rw_uri.is_none()));
        // write caps are not allowed in immutable directories
        assert!(matches!(
            unpack(&packed, false, None),
            Err(DirError::WriteCapInImmutable { entry: 0 })
        ));
        assert_eq!(unpack(b"", true, None).unwrap(), vec![]);
        // later duplicates win
        let mut dup = pack(&entries[..1], None);
        dup.extend(pack(
            &[PackEntry {
                name: "b",
                ro_uri: b"URI:LIT:mf",
                rw_uri: b"",
                metadata_json: b"{}",
            }],
            None,
        ));
        let got = unpack(&dup, true, None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ro_uri.as_deref(), Some(&b"URI:LIT:mf"[..]));
    }

    #[test]
    fn bad_contents() {
        let e = |name: &'static str, meta: &'static [u8]| {
            pack(
                &[PackEntry {
                    name,
                    ro_uri: b"",
                    rw_uri: b"",
                    metadata_json: meta,
                }],
                None,
            )
        };
        assert!(matches!(
            unpack(&e("x", b"[]"), true, None),
            Err(DirError::BadMetadata { .. })
        ));
        assert!(matches!(
            unpack(&e("x", b"{"), true, None),
            Err(DirError::BadMetadata { .. })
        ));
        let mut bad_name = e("x", b"{}");
        let at = bad_name.iter().position(|&c| c == b'x').unwrap();
        bad_name[at] = 0xff;
        assert!(matches!(
            unpack(&bad_name, true, None),
            Err(DirError::BadName { .. })
        ));
        let good = e("x", b"{}");
        assert!(matches!(
            unpack(&good[..good.len() - 1], true, None),
            Err(DirError::Framing { .. })
        ));
        assert_eq!(decrypt_rw_uri(&[0; 16], &[1; 48]), Vec::<u8>::new());
    }
}
