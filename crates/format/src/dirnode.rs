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
//! two entries with one name kept. [`child_caps`] then does what Tahoe's
//! node layer (`nodemaker.create_from_cap`, `UnknownNode`) does with each
//! entry: which children a listing shows, with which caps.

use crate::aes;
use crate::netstring::{split_netstrings, NetstringError};
use serde_json::{Map, Value};
use steward_cap::hash::{hmac, mutable_rwcap_key_hash, mutable_rwcap_salt_hash, netstring};
use steward_cap::{Authority, Cap};
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

/// A child as Tahoe's node layer shows it (the `rw_uri` and `ro_uri` of a
/// `t=json` listing).
#[derive(Clone, PartialEq, Eq)]
pub struct ChildCaps {
    /// The cap Tahoe understands (the write cap if there is one, else the
    /// read cap); `None` for an unknown node (a cap from a format Tahoe
    /// does not know, or none at all).
    pub cap: Option<Cap>,
    /// The write cap shown. Secret.
    pub rw_uri: Option<Vec<u8>>,
    /// The read cap shown (unknown caps with Tahoe's `ro.`/`imm.` prefix).
    /// Secret.
    pub ro_uri: Option<Vec<u8>>,
}

impl std::fmt::Debug for ChildCaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let red = |c: &Option<Vec<u8>>| {
            c.as_ref()
                .map(|c| steward_cap::redact(&String::from_utf8_lossy(c)))
        };
        f.debug_struct("ChildCaps")
            .field("cap", &self.cap)
            .field("rw_uri", &red(&self.rw_uri))
            .field("ro_uri", &red(&self.ro_uri))
            .finish()
    }
}

const RO_PREFIX: &[u8] = b"ro.";
const IMM_PREFIX: &[u8] = b"imm.";

/// What Tahoe's `uri.from_string(s, deep_immutable)` makes of a cap, as far
/// as the node layer cares.
enum Parsed {
    /// A cap it builds a node for.
    Known(Cap),
    /// A cap of a known kind that breaks a constraint or does not parse
    /// (Tahoe: an `UnknownURI` carrying an error).
    Error,
    /// Anything else (an `UnknownURI` without error), verify caps included:
    /// Tahoe's node maker makes unknown nodes of those too (for
    /// `CHK-Verifier` it makes a node its listing code then fails on).
    Unknown,
}

fn parse_child_cap(s: &[u8], deep_immutable: bool) -> Parsed {
    let (mut can_be_mutable, mut can_be_writeable) = (!deep_immutable, !deep_immutable);
    let s = if let Some(rest) = s.strip_prefix(IMM_PREFIX) {
        (can_be_mutable, can_be_writeable) = (false, false);
        rest
    } else if let Some(rest) = s.strip_prefix(RO_PREFIX) {
        can_be_writeable = false;
        rest
    } else {
        s
    };
    let kind = steward_cap::CapKind::ALL.into_iter().find(|k| {
        s.strip_prefix(b"URI:")
            .and_then(|r| r.strip_prefix(k.tag().as_bytes()))
            .is_some_and(|r| r.first() == Some(&b':'))
    });
    let Some(kind) = kind else {
        let test_only = (s.starts_with(b"x-tahoe-future-test-writeable:") && !can_be_writeable)
            || (s.starts_with(b"x-tahoe-future-test-mutable:") && !can_be_mutable);
        return if test_only {
            Parsed::Error
        } else {
            Parsed::Unknown
        };
    };
    let constrained = match kind.authority() {
        Authority::Write => !can_be_writeable,
        Authority::Read => kind.is_mutable() && !can_be_mutable,
        Authority::Verify => false,
    };
    // Tahoe matches caps with anchored regexes and no trimming.
    let parsed = std::str::from_utf8(s)
        .ok()
        .filter(|t| t.trim() == *t)
        .and_then(|t| Cap::parse(t).ok());
    match parsed {
        _ if constrained => Parsed::Error,
        None => Parsed::Error,
        Some(_) if kind.authority() == Authority::Verify => Parsed::Unknown,
        Some(cap) => Parsed::Known(cap),
    }
}

/// Tahoe's `UnknownNode(rw, ro, deep_immutable)`: the caps it shows, or
/// `None` when it records an error (and the child is dropped).
fn unknown_node(rw: Option<&[u8]>, ro: Option<&[u8]>, deep_immutable: bool) -> Option<ChildCaps> {
    let (mut rw, mut ro) = (rw.filter(|c| !c.is_empty()), ro.filter(|c| !c.is_empty()));
    if let Some(w) = rw {
        if deep_immutable && !(w.starts_with(IMM_PREFIX) && ro.is_none()) {
            return None;
        }
        match ro {
            None if w.starts_with(RO_PREFIX) || w.starts_with(IMM_PREFIX) => {
                ro = Some(w);
                rw = None;
            }
            None => return None,
            Some(r) if r.starts_with(IMM_PREFIX) => return None,
            Some(_) => {}
        }
    }
    if let Some(r) = ro {
        if let Parsed::Error = parse_child_cap(r, deep_immutable) {
            return None;
        }
    }
    let with_prefix = |r: &[u8], keep: &[&[u8]], prefix: &[u8]| -> Vec<u8> {
        if keep.iter().any(|p| r.starts_with(p)) {
            r.to_vec()
        } else {
            [prefix, r].concat()
        }
    };
    let (rw, ro) = if deep_immutable {
        let ro = ro.map(|r| match r.strip_prefix(RO_PREFIX) {
            Some(rest) => [IMM_PREFIX, rest].concat(),
            None => with_prefix(r, &[IMM_PREFIX], IMM_PREFIX),
        });
        (None, ro)
    } else {
        (
            rw.map(<[u8]>::to_vec),
            ro.map(|r| with_prefix(r, &[RO_PREFIX, IMM_PREFIX], RO_PREFIX)),
        )
    };
    Some(ChildCaps {
        cap: None,
        rw_uri: rw,
        ro_uri: ro,
    })
}

/// What Tahoe's node layer makes of a stored child of a directory
/// (`mutable`: whether the directory is): the caps its listing shows, or
/// `None` if Tahoe drops the child (a cap that breaks the directory's
/// constraints: a mutable child of an immutable directory, a malformed
/// cap, an unknown write cap without a read cap, …).
///
/// A known cap is taken from the write cap slot if it has one, else from
/// the read cap slot, whatever the other slot holds (so a write cap stored
/// as a read cap shows as a write cap even in a read-only directory, as in
/// Tahoe); its read cap is derived.
pub fn child_caps(entry: &DirEntry, mutable: bool) -> Option<ChildCaps> {
    let deep = !mutable;
    let (rw, ro) = (entry.rw_uri.as_deref(), entry.ro_uri.as_deref());
    let Some(big) = rw.or(ro) else {
        return Some(ChildCaps {
            cap: None,
            rw_uri: None,
            ro_uri: None,
        });
    };
    match parse_child_cap(big, deep) {
        // (A known cap in an immutable directory is never mutable: parsing
        // in that context rejects mutable read and write caps.)
        Parsed::Known(cap) => {
            let rw_uri =
                (cap.authority() == Authority::Write).then(|| cap.expose().as_bytes().to_vec());
            let ro_uri = cap.to_read_cap().map(|r| r.expose().as_bytes().to_vec());
            Some(ChildCaps {
                cap: Some(cap),
                rw_uri,
                ro_uri,
            })
        }
        Parsed::Error | Parsed::Unknown => unknown_node(rw, ro, deep),
    }
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
