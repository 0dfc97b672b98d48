//! Tahoe-LAFS capability strings: parsing, classification, local derivation
//! and redaction.
//!
//! This crate owns everything steward knows about caps *without talking to a
//! grid*: it parses every cap form Tahoe-LAFS 1.20 accepts
//! (`allmydata.uri.from_string`), classifies it, extracts the storage index
//! (SI) and derives the weaker forms (write → read → verify, and the SI) with
//! Tahoe's tagged SHA-256d hashes ([`hash`]). A plain list of caps can thus be
//! checked, audited and deduplicated offline.
//!
//! # Cap kinds
//!
//! | kind (`URI:…:`)      | [`CapKind`]        | authority | mutable object | directory | has SI |
//! |----------------------|--------------------|-----------|----------------|-----------|--------|
//! | `CHK`                | `Chk`              | Read      | no             | no        | yes    |
//! | `CHK-Verifier`       | `ChkVerifier`      | Verify    | no             | no        | yes    |
//! | `LIT`                | `Lit`              | Read      | no             | no        | no     |
//! | `SSK`                | `Ssk`              | Write     | yes (SDMF)     | no        | yes    |
//! | `SSK-RO`             | `SskRo`            | Read      | yes (SDMF)     | no        | yes    |
//! | `SSK-Verifier`       | `SskVerifier`      | Verify    | yes (SDMF)     | no        | yes    |
//! | `MDMF`               | `Mdmf`             | Write     | yes (MDMF)     | no        | yes    |
//! | `MDMF-RO`            | `MdmfRo`           | Read      | yes (MDMF)     | no        | yes    |
//! | `MDMF-Verifier`      | `MdmfVerifier`     | Verify    | yes (MDMF)     | no        | yes    |
//! | `DIR2`               | `Dir2`             | Write     | yes (SDMF)     | yes       | yes    |
//! | `DIR2-RO`            | `Dir2Ro`           | Read      | yes (SDMF)     | yes       | yes    |
//! | `DIR2-Verifier`      | `Dir2Verifier`     | Verify    | yes (SDMF)     | yes       | yes    |
//! | `DIR2-CHK`           | `Dir2Chk`          | Read      | no             | yes       | yes    |
//! | `DIR2-CHK-Verifier`  | `Dir2ChkVerifier`  | Verify    | no             | yes       | yes    |
//! | `DIR2-LIT`           | `Dir2Lit`          | Read      | no             | yes       | no     |
//! | `DIR2-MDMF`          | `Dir2Mdmf`         | Write     | yes (MDMF)     | yes       | yes    |
//! | `DIR2-MDMF-RO`       | `Dir2MdmfRo`       | Read      | yes (MDMF)     | yes       | yes    |
//! | `DIR2-MDMF-Verifier` | `Dir2MdmfVerifier` | Verify    | yes (MDMF)     | yes       | yes    |
//!
//! "Mutable object" describes the object the cap refers to
//! ([`Cap::is_mutable`]); note that Tahoe's own `IURI.is_mutable()` answers
//! `False` for the verify caps of mutable objects.
//!
//! A `DIR2*` cap has exactly the fields of the file cap it wraps
//! (`DIR2` ↔ `SSK`, `DIR2-CHK` ↔ `CHK`, `DIR2-LIT` ↔ `LIT`, `DIR2-MDMF` ↔
//! `MDMF`, and their `-RO`/`-Verifier` forms); [`Cap::filenode_cap`] unwraps it.
//!
//! # Derivation
//!
//! * CHK: SI = `tagged_hash("allmydata_immutable_key_to_storage_index_v1", key, 16)`.
//! * SDMF/MDMF: readkey = `tagged_hash("allmydata_mutable_writekey_to_readkey_v1", writekey, 16)`,
//!   SI = `tagged_hash("allmydata_mutable_readkey_to_storage_index_v1", readkey, 16)`.
//! * Verify caps carry the SI in place of the key; the fingerprint / UEB hash,
//!   share counts and size are copied.
//!
//! The SI is shown as 26 characters of Tahoe base32 ([`StorageIndex`]), as in
//! Tahoe's `storage-index` JSON fields and `tahoe debug dump-cap`.
//!
//! # Accepted input and canonical form
//!
//! [`Cap::parse`] trims surrounding whitespace and then accepts exactly what
//! Tahoe's `uri.from_string` turns into a known cap, including:
//!
//! * the `ro.` / `imm.` "alleged" prefixes (one of them, once). As in Tahoe,
//!   a write cap under `ro.` and a write cap or read cap to a mutable object
//!   under `imm.` are rejected; otherwise the prefix is dropped.
//! * MDMF forms (`MDMF`, `MDMF-RO`, `MDMF-Verifier` and the `DIR2-MDMF*`
//!   wrappers) followed by `:` and anything (old extension hints such as
//!   `:3:131073`), which Tahoe ignores.
//! * `CHK-Verifier` / `DIR2-CHK-Verifier` with trailing text after the size
//!   digits (Tahoe's regex is not anchored at the end), which is ignored.
//! * decimal numbers with leading zeros.
//!
//! The stored text ([`Cap::expose`]) is always Tahoe's canonical `to_string()`
//! form, so equal caps compare equal and hash equally whatever the spelling.
//! Base32 fields must be canonical (lowercase, exact length, zero padding
//! bits), as Tahoe's regexes require.
//!
//! # Redaction
//!
//! Caps are secrets. [`Cap`]'s `Debug` and `Display` print only
//! [`Cap::redacted`]: the `URI:KIND:` prefix, at most 4 characters of the
//! first field, `…`, and the public storage index, e.g.
//! `URI:DIR2-RO:r2sy…[si=ma6zqcta4clwzyubalsjarmwwy]`. Literal caps carry
//! file content, so they show no data characters, only the length:
//! `URI:LIT:…[11 bytes]`. The full text is only available via
//! [`Cap::expose`], to be used for writing units or talking to the gateway.
//!
//! [`redact`] does the same for arbitrary strings that may or may not be caps
//! (used for every [`CapError`]): a `URI:KIND:` prefix plus at most 4 more
//! characters (none for `LIT`/`DIR2-LIT`), or at most 12 characters of
//! anything else, followed by `…` when something was cut.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod base32;
mod error;
pub mod hash;

pub use error::CapError;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// How much a cap lets its holder do. Ordered `Verify < Read < Write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Authority {
    /// Check and repair shares; cannot read plaintext.
    Verify,
    /// Read the plaintext.
    Read,
    /// Modify a mutable object.
    Write,
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Authority::Verify => "verify",
            Authority::Read => "read",
            Authority::Write => "write",
        })
    }
}

/// The underlying file format of the object a cap refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Immutable, erasure-coded ("content hash key").
    Chk,
    /// Literal: the data is inside the cap.
    Lit,
    /// Small-distributed mutable file (`SSK`).
    Sdmf,
    /// Medium-distributed mutable file.
    Mdmf,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Chk => "CHK",
            Format::Lit => "LIT",
            Format::Sdmf => "SDMF",
            Format::Mdmf => "MDMF",
        })
    }
}

/// Every cap form Tahoe-LAFS 1.20 knows. `Display` gives the tag between
/// `URI:` and the next `:` (e.g. `DIR2-MDMF-RO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum CapKind {
    Chk,
    ChkVerifier,
    Lit,
    Ssk,
    SskRo,
    SskVerifier,
    Mdmf,
    MdmfRo,
    MdmfVerifier,
    Dir2,
    Dir2Ro,
    Dir2Verifier,
    Dir2Chk,
    Dir2ChkVerifier,
    Dir2Lit,
    Dir2Mdmf,
    Dir2MdmfRo,
    Dir2MdmfVerifier,
}

impl CapKind {
    /// All kinds, in declaration order.
    pub const ALL: [CapKind; 18] = [
        CapKind::Chk,
        CapKind::ChkVerifier,
        CapKind::Lit,
        CapKind::Ssk,
        CapKind::SskRo,
        CapKind::SskVerifier,
        CapKind::Mdmf,
        CapKind::MdmfRo,
        CapKind::MdmfVerifier,
        CapKind::Dir2,
        CapKind::Dir2Ro,
        CapKind::Dir2Verifier,
        CapKind::Dir2Chk,
        CapKind::Dir2ChkVerifier,
        CapKind::Dir2Lit,
        CapKind::Dir2Mdmf,
        CapKind::Dir2MdmfRo,
        CapKind::Dir2MdmfVerifier,
    ];

    /// The tag between `URI:` and the next `:`, e.g. `"SSK-RO"`.
    pub fn tag(self) -> &'static str {
        &self.prefix()[4..self.prefix().len() - 1]
    }

    /// The full prefix, e.g. `"URI:SSK-RO:"`.
    pub fn prefix(self) -> &'static str {
        use CapKind::*;
        match self {
            Chk => "URI:CHK:",
            ChkVerifier => "URI:CHK-Verifier:",
            Lit => "URI:LIT:",
            Ssk => "URI:SSK:",
            SskRo => "URI:SSK-RO:",
            SskVerifier => "URI:SSK-Verifier:",
            Mdmf => "URI:MDMF:",
            MdmfRo => "URI:MDMF-RO:",
            MdmfVerifier => "URI:MDMF-Verifier:",
            Dir2 => "URI:DIR2:",
            Dir2Ro => "URI:DIR2-RO:",
            Dir2Verifier => "URI:DIR2-Verifier:",
            Dir2Chk => "URI:DIR2-CHK:",
            Dir2ChkVerifier => "URI:DIR2-CHK-Verifier:",
            Dir2Lit => "URI:DIR2-LIT:",
            Dir2Mdmf => "URI:DIR2-MDMF:",
            Dir2MdmfRo => "URI:DIR2-MDMF-RO:",
            Dir2MdmfVerifier => "URI:DIR2-MDMF-Verifier:",
        }
    }

    /// Look a kind up by its tag (case-sensitive, as in Tahoe).
    pub fn from_tag(tag: &str) -> Option<CapKind> {
        CapKind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// The authority a cap of this kind grants.
    pub fn authority(self) -> Authority {
        use CapKind::*;
        match self {
            Ssk | Mdmf | Dir2 | Dir2Mdmf => Authority::Write,
            Chk | Lit | SskRo | MdmfRo | Dir2Ro | Dir2Chk | Dir2Lit | Dir2MdmfRo => Authority::Read,
            ChkVerifier | SskVerifier | MdmfVerifier | Dir2Verifier | Dir2ChkVerifier
            | Dir2MdmfVerifier => Authority::Verify,
        }
    }

    /// The format of the underlying file.
    pub fn format(self) -> Format {
        use CapKind::*;
        match self {
            Chk | ChkVerifier | Dir2Chk | Dir2ChkVerifier => Format::Chk,
            Lit | Dir2Lit => Format::Lit,
            Ssk | SskRo | SskVerifier | Dir2 | Dir2Ro | Dir2Verifier => Format::Sdmf,
            Mdmf | MdmfRo | MdmfVerifier | Dir2Mdmf | Dir2MdmfRo | Dir2MdmfVerifier => Format::Mdmf,
        }
    }

    /// `DIR2*` kinds.
    pub fn is_directory(self) -> bool {
        self.tag().starts_with("DIR2")
    }

    /// Whether the *object* is mutable (SDMF or MDMF), for every authority.
    pub fn is_mutable(self) -> bool {
        matches!(self.format(), Format::Sdmf | Format::Mdmf)
    }

    /// `LIT` and `DIR2-LIT`.
    pub fn is_literal(self) -> bool {
        self.format() == Format::Lit
    }

    /// Everything except the literal kinds has a storage index.
    pub fn has_storage_index(self) -> bool {
        !self.is_literal()
    }

    /// The file kind a directory kind wraps; file kinds map to themselves.
    pub fn filenode_kind(self) -> CapKind {
        use CapKind::*;
        match self {
            Dir2 => Ssk,
            Dir2Ro => SskRo,
            Dir2Verifier => SskVerifier,
            Dir2Chk => Chk,
            Dir2ChkVerifier => ChkVerifier,
            Dir2Lit => Lit,
            Dir2Mdmf => Mdmf,
            Dir2MdmfRo => MdmfRo,
            Dir2MdmfVerifier => MdmfVerifier,
            other => other,
        }
    }

    /// The kind of the same object at exactly authority `a`, if that form
    /// exists (immutable objects have no write form, literals no verify form).
    pub fn at_authority(self, a: Authority) -> Option<CapKind> {
        use CapKind::*;
        // [verify, read, write]
        let family: [Option<CapKind>; 3] = match self {
            Chk | ChkVerifier => [Some(ChkVerifier), Some(Chk), None],
            Lit => [None, Some(Lit), None],
            Ssk | SskRo | SskVerifier => [Some(SskVerifier), Some(SskRo), Some(Ssk)],
            Mdmf | MdmfRo | MdmfVerifier => [Some(MdmfVerifier), Some(MdmfRo), Some(Mdmf)],
            Dir2 | Dir2Ro | Dir2Verifier => [Some(Dir2Verifier), Some(Dir2Ro), Some(Dir2)],
            Dir2Chk | Dir2ChkVerifier => [Some(Dir2ChkVerifier), Some(Dir2Chk), None],
            Dir2Lit => [None, Some(Dir2Lit), None],
            Dir2Mdmf | Dir2MdmfRo | Dir2MdmfVerifier => {
                [Some(Dir2MdmfVerifier), Some(Dir2MdmfRo), Some(Dir2Mdmf)]
            }
        };
        family[a as usize]
    }
}

impl fmt::Display for CapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// A 16-byte storage index. `Display`/`FromStr` use Tahoe base32
/// (26 characters), like Tahoe's `si_b2a`. Storage indexes are not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageIndex(pub [u8; 16]);

impl StorageIndex {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageIndex({self})")
    }
}

/// Error parsing a [`StorageIndex`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageIndexError {
    /// Not canonical base32.
    #[error("bad storage index: {0}; expected 26 characters of lowercase base32 (a-z, 2-7)")]
    Base32(base32::DecodeError),
    /// Wrong number of characters.
    #[error("bad storage index: {0} characters, expected 26 characters of lowercase base32")]
    Length(usize),
}

impl FromStr for StorageIndex {
    type Err = StorageIndexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(position) = s.chars().position(|c| !base32::is_symbol(c)) {
            return Err(StorageIndexError::Base32(
                base32::DecodeError::InvalidChar { position },
            ));
        }
        if s.len() != 26 {
            return Err(StorageIndexError::Length(s.chars().count()));
        }
        let v = base32::decode(s).map_err(StorageIndexError::Base32)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(&v);
        Ok(StorageIndex(out))
    }
}

/// Parsed fields. Never `Debug`: it holds secrets.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Body {
    /// CHK / DIR2-CHK and their verifiers. `key` is `None` for verifiers.
    Chk {
        key: Option<[u8; 16]>,
        si: [u8; 16],
        ueb: [u8; 32],
        k: u16,
        n: u16,
        size: u64,
    },
    /// LIT / DIR2-LIT.
    Lit { data: Vec<u8> },
    /// SSK / MDMF / DIR2 / DIR2-MDMF and their RO/verifier forms.
    Mutable {
        writekey: Option<[u8; 16]>,
        readkey: Option<[u8; 16]>,
        si: [u8; 16],
        fp: [u8; 32],
    },
}

impl Body {
    /// Appends the canonical text after the `URI:KIND:` prefix, as Tahoe's
    /// `to_string()`, to `out`.
    fn render_into(&self, out: &mut String) {
        match self {
            Body::Chk {
                key,
                si,
                ueb,
                k,
                n,
                size,
            } => {
                base32::encode_append(key.as_ref().unwrap_or(si), out);
                out.push(':');
                base32::encode_append(ueb, out);
                for v in [u64::from(*k), u64::from(*n), *size] {
                    out.push(':');
                    push_decimal(out, v);
                }
            }
            Body::Lit { data } => base32::encode_append(data, out),
            Body::Mutable {
                writekey,
                readkey,
                si,
                fp,
            } => {
                base32::encode_append(writekey.as_ref().or(readkey.as_ref()).unwrap_or(si), out);
                out.push(':');
                base32::encode_append(fp, out);
            }
        }
    }

    /// The length of what [`Body::render_into`] appends, at most.
    fn rendered_len(&self) -> usize {
        match self {
            // key, UEB hash, three numbers of at most 20 digits, four ':'.
            Body::Chk { .. } => 26 + 52 + 3 * 20 + 4,
            Body::Lit { data } => base32::encoded_len(data.len()),
            Body::Mutable { .. } => 26 + 1 + 52,
        }
    }

    /// The same object's fields restricted to authority `a` (never stronger
    /// than what is present).
    fn restrict(&self, a: Authority) -> Body {
        match self {
            Body::Chk {
                key,
                si,
                ueb,
                k,
                n,
                size,
            } => Body::Chk {
                key: if a >= Authority::Read { *key } else { None },
                si: *si,
                ueb: *ueb,
                k: *k,
                n: *n,
                size: *size,
            },
            Body::Lit { data } => Body::Lit { data: data.clone() },
            Body::Mutable {
                writekey,
                readkey,
                si,
                fp,
            } => Body::Mutable {
                writekey: if a >= Authority::Write {
                    *writekey
                } else {
                    None
                },
                readkey: if a >= Authority::Read { *readkey } else { None },
                si: *si,
                fp: *fp,
            },
        }
    }
}

/// A parsed, validated Tahoe-LAFS cap.
///
/// Holds Tahoe's canonical string and the parsed fields. `Debug` and
/// `Display` show only [`Cap::redacted`]; use [`Cap::expose`] for the secret.
/// Equality, hashing and ordering follow the canonical string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cap {
    text: String,
    kind: CapKind,
    body: Body,
}

impl PartialOrd for Cap {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cap {
    fn cmp(&self, other: &Self) -> Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cap({})", self.redacted())
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for Cap {
    type Err = CapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cap::parse(s)
    }
}

/// Parsing context: the trimmed input (for redacted errors) and the kind.
struct Ctx<'a> {
    input: &'a str,
    kind: CapKind,
}

impl Ctx<'_> {
    fn red(&self) -> String {
        redact(self.input)
    }

    fn malformed(&self, detail: impl Into<String>) -> CapError {
        CapError::Malformed {
            kind: self.kind,
            input: self.red(),
            detail: detail.into(),
        }
    }

    fn bytes<const N: usize>(&self, field: &'static str, s: &str) -> Result<[u8; N], CapError> {
        let bad = |problem| CapError::BadBase32 {
            kind: self.kind,
            field,
            input: self.red(),
            problem,
        };
        if let Some(position) = s.chars().position(|c| !base32::is_symbol(c)) {
            return Err(bad(base32::DecodeError::InvalidChar { position }));
        }
        let expected = base32::encoded_len(N);
        if s.len() != expected {
            return Err(CapError::WrongLength {
                kind: self.kind,
                field,
                input: self.red(),
                found: s.len(),
                expected,
            });
        }
        base32::decode_checked(s).map_err(bad)
    }

    fn number<T: TryFrom<u64>>(&self, field: &'static str, s: &str) -> Result<T, CapError> {
        let bad = |detail| CapError::BadNumber {
            kind: self.kind,
            field,
            input: self.red(),
            detail,
        };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected a decimal number"));
        }
        let v: u64 = s.parse().map_err(|_| bad("number too large"))?;
        T::try_from(v).map_err(|_| bad("number too large"))
    }

    /// Parse the fields after the prefix, for this context's kind.
    fn body(&self, rest: &str) -> Result<Body, CapError> {
        use CapKind::*;
        let file_kind = self.kind.filenode_kind();
        match file_kind {
            Chk => {
                let f: Vec<&str> = rest.split(':').collect();
                if f.len() != 5 {
                    return Err(self.malformed(format!(
                        "expected 5 ':'-separated fields (key:UEB-hash:needed-shares:total-shares:size), found {}",
                        f.len()
                    )));
                }
                let key: [u8; 16] = self.bytes("key", f[0])?;
                Ok(Body::Chk {
                    key: Some(key),
                    si: hash::storage_index_hash(&key),
                    ueb: self.bytes("UEB-hash", f[1])?,
                    k: self.number("needed-shares", f[2])?,
                    n: self.number("total-shares", f[3])?,
                    size: self.number("size", f[4])?,
                })
            }
            ChkVerifier => {
                let f: Vec<&str> = rest.splitn(5, ':').collect();
                if f.len() != 5 {
                    return Err(self.malformed(format!(
                        "expected 5 ':'-separated fields (storage-index:UEB-hash:needed-shares:total-shares:size), found {}",
                        f.len()
                    )));
                }
                // Tahoe's CHK-Verifier regex is not anchored at the end:
                // the size is the leading digits, anything after is ignored.
                let digits = f[4].bytes().take_while(u8::is_ascii_digit).count();
                Ok(Body::Chk {
                    key: None,
                    si: self.bytes("storage-index", f[0])?,
                    ueb: self.bytes("UEB-hash", f[1])?,
                    k: self.number("needed-shares", f[2])?,
                    n: self.number("total-shares", f[3])?,
                    size: self.number("size", &f[4][..digits])?,
                })
            }
            Lit => {
                let data = base32::decode(rest).map_err(|problem| CapError::BadBase32 {
                    kind: self.kind,
                    field: "data",
                    input: self.red(),
                    problem,
                })?;
                Ok(Body::Lit { data })
            }
            Ssk | SskRo | SskVerifier | Mdmf | MdmfRo | MdmfVerifier => {
                let is_mdmf = file_kind.format() == Format::Mdmf;
                // SDMF: exactly key:fingerprint. MDMF: Tahoe's regex ends in
                // `(:|$)`, so anything after a third ':' is accepted and ignored.
                let f: Vec<&str> = if is_mdmf {
                    rest.splitn(3, ':').collect()
                } else {
                    rest.split(':').collect()
                };
                if f.len() < 2 || (!is_mdmf && f.len() != 2) {
                    return Err(self.malformed(format!(
                        "expected 2 ':'-separated fields (key:fingerprint), found {}",
                        f.len()
                    )));
                }
                let fp: [u8; 32] = self.bytes("fingerprint", f[1])?;
                let body = match file_kind.authority() {
                    Authority::Write => {
                        let wk: [u8; 16] = self.bytes("writekey", f[0])?;
                        let rk = hash::ssk_readkey_hash(&wk);
                        Body::Mutable {
                            writekey: Some(wk),
                            readkey: Some(rk),
                            si: hash::ssk_storage_index_hash(&rk),
                            fp,
                        }
                    }
                    Authority::Read => {
                        let rk: [u8; 16] = self.bytes("readkey", f[0])?;
                        Body::Mutable {
                            writekey: None,
                            readkey: Some(rk),
                            si: hash::ssk_storage_index_hash(&rk),
                            fp,
                        }
                    }
                    Authority::Verify => Body::Mutable {
                        writekey: None,
                        readkey: None,
                        si: self.bytes("storage-index", f[0])?,
                        fp,
                    },
                };
                Ok(body)
            }
            _ => unreachable!("filenode_kind returns file kinds only"),
        }
    }
}

/// Appends `v` in decimal.
fn push_decimal(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

/// Alleged-authority prefixes accepted by Tahoe's `uri.from_string`.
const RO_PREFIX: &str = "ro.";
const IMM_PREFIX: &str = "imm.";

impl Cap {
    /// Parse a cap string. Surrounding whitespace is trimmed; everything else
    /// follows Tahoe's `uri.from_string` (see the crate docs for the accepted
    /// variants and the `ro.`/`imm.` prefixes). The result is canonical.
    pub fn parse(s: &str) -> Result<Cap, CapError> {
        let input = s.trim();
        if input.is_empty() {
            return Err(CapError::Empty);
        }
        let (alleged, body) = if let Some(b) = input.strip_prefix(IMM_PREFIX) {
            (Some(IMM_PREFIX), b)
        } else if let Some(b) = input.strip_prefix(RO_PREFIX) {
            (Some(RO_PREFIX), b)
        } else {
            (None, input)
        };
        let Some(after) = body.strip_prefix("URI:") else {
            return Err(CapError::NotACap {
                input: redact(input),
            });
        };
        let (tag, rest) = match after.split_once(':') {
            Some((t, r)) => (t, Some(r)),
            None => (after, None),
        };
        if tag.is_empty() {
            return Err(CapError::NotACap {
                input: redact(input),
            });
        }
        let Some(kind) = CapKind::from_tag(tag) else {
            return Err(CapError::UnknownKind {
                kind: if looks_like_kind(tag) {
                    tag.to_string()
                } else {
                    keep_chars(tag, 4)
                },
                input: redact(input),
            });
        };
        let ctx = Ctx { input, kind };
        let Some(rest) = rest else {
            return Err(ctx.malformed(format!("nothing follows URI:{kind}")));
        };
        match alleged {
            Some(p @ RO_PREFIX) if kind.authority() == Authority::Write => {
                return Err(CapError::PrefixConstraint {
                    kind,
                    prefix: p,
                    input: ctx.red(),
                    what: "a write cap",
                })
            }
            Some(p @ IMM_PREFIX) if kind.is_mutable() && kind.authority() >= Authority::Read => {
                return Err(CapError::PrefixConstraint {
                    kind,
                    prefix: p,
                    input: ctx.red(),
                    what: "a read or write cap to a mutable object",
                })
            }
            _ => {}
        }
        let body = ctx.body(rest)?;
        Ok(Cap::from_body(kind, body))
    }

    fn from_body(kind: CapKind, body: Body) -> Cap {
        // One buffer of the right size, no formatting machinery: a cap is
        // rendered for every object of a run, and for each weaker form.
        let mut text = String::with_capacity(kind.prefix().len() + body.rendered_len());
        text.push_str(kind.prefix());
        body.render_into(&mut text);
        Cap { text, kind, body }
    }

    /// The cap's kind.
    pub fn kind(&self) -> CapKind {
        self.kind
    }

    /// The authority this cap grants. Literal and CHK caps are `Read`.
    pub fn authority(&self) -> Authority {
        self.kind.authority()
    }

    /// `DIR2*` caps (including directory verify caps).
    pub fn is_directory(&self) -> bool {
        self.kind.is_directory()
    }

    /// Whether the referenced object is mutable (SDMF/MDMF), whatever the
    /// cap's authority. Tahoe's `is_mutable()` differs for verify caps,
    /// for which it answers `False`.
    pub fn is_mutable(&self) -> bool {
        self.kind.is_mutable()
    }

    /// `LIT` and `DIR2-LIT`: the data is in the cap; nothing on the grid.
    pub fn is_literal(&self) -> bool {
        self.kind.is_literal()
    }

    /// The underlying file format.
    pub fn format(&self) -> Format {
        self.kind.format()
    }

    /// The storage index; `None` for literal caps.
    pub fn storage_index(&self) -> Option<StorageIndex> {
        match &self.body {
            Body::Chk { si, .. } | Body::Mutable { si, .. } => Some(StorageIndex(*si)),
            Body::Lit { .. } => None,
        }
    }

    /// The same object's cap at exactly authority `a`, if it exists and is
    /// not stronger than this cap.
    fn at(&self, a: Authority) -> Option<Cap> {
        if a > self.authority() {
            return None;
        }
        if a == self.authority() {
            return Some(self.clone());
        }
        let kind = self.kind.at_authority(a)?;
        Some(Cap::from_body(kind, self.body.restrict(a)))
    }

    /// The read cap: derived locally from a write cap, the cap itself for a
    /// read cap (including CHK and literal caps), `None` for a verify cap.
    pub fn to_read_cap(&self) -> Option<Cap> {
        self.at(Authority::Read)
    }

    /// The verify cap: derived locally, the cap itself for a verify cap,
    /// `None` for literal caps.
    pub fn to_verify_cap(&self) -> Option<Cap> {
        self.at(Authority::Verify)
    }

    /// The strongest form of this cap that is not stronger than `a`:
    /// `weaken_to(Write)` of a read cap is the read cap, `weaken_to(Read)` of
    /// a verify cap is the verify cap. `None` only when asking a literal cap
    /// for `Verify`.
    pub fn weaken_to(&self, a: Authority) -> Option<Cap> {
        self.at(a.min(self.authority()))
    }

    /// The form of this cap with exactly authority `a`, or an error saying
    /// why not (a weaker cap cannot be strengthened; literal caps have no
    /// verify form; immutable objects have no write form).
    pub fn require(&self, a: Authority) -> Result<Cap, CapError> {
        if self.is_literal() && a == Authority::Verify {
            return Err(CapError::Literal {
                input: self.redacted(),
            });
        }
        self.at(a).ok_or_else(|| CapError::InsufficientAuthority {
            input: self.redacted(),
            have: self.authority(),
            want: a,
        })
    }

    /// For `DIR2*` caps the wrapped file cap (`DIR2` → `SSK`, `DIR2-CHK` →
    /// `CHK`, …); file caps return themselves.
    pub fn filenode_cap(&self) -> Cap {
        Cap::from_body(self.kind.filenode_kind(), self.body.clone())
    }

    /// CHK forms: the size field. Literal forms: the data length.
    pub fn size(&self) -> Option<u64> {
        match &self.body {
            Body::Chk { size, .. } => Some(*size),
            Body::Lit { data } => Some(data.len() as u64),
            Body::Mutable { .. } => None,
        }
    }

    /// CHK forms: `(needed_shares, total_shares)` = (k, N).
    pub fn encoding(&self) -> Option<(u16, u16)> {
        match &self.body {
            Body::Chk { k, n, .. } => Some((*k, *n)),
            _ => None,
        }
    }

    /// CHK forms: the URI-extension-block hash.
    pub fn uri_extension_hash(&self) -> Option<[u8; 32]> {
        match &self.body {
            Body::Chk { ueb, .. } => Some(*ueb),
            _ => None,
        }
    }

    /// Mutable forms: the public-key fingerprint.
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        match &self.body {
            Body::Mutable { fp, .. } => Some(*fp),
            _ => None,
        }
    }

    /// CHK read caps (`CHK`, `DIR2-CHK`): the AES key of the file, from which
    /// the storage index derives. Secret; `None` for verify caps.
    pub fn encryption_key(&self) -> Option<[u8; 16]> {
        match &self.body {
            Body::Chk { key, .. } => *key,
            _ => None,
        }
    }

    /// Mutable write caps (`SSK`, `MDMF`, `DIR2`, `DIR2-MDMF`): the write
    /// key, which also encrypts directory children's write caps. Secret.
    pub fn writekey(&self) -> Option<[u8; 16]> {
        match &self.body {
            Body::Mutable { writekey, .. } => *writekey,
            _ => None,
        }
    }

    /// Mutable read and write caps: the read key, from which each segment's
    /// data key derives. Secret; `None` for verify caps.
    pub fn readkey(&self) -> Option<[u8; 16]> {
        match &self.body {
            Body::Mutable { readkey, .. } => *readkey,
            _ => None,
        }
    }

    /// Literal forms: the file (or serialized directory) content. Secret.
    pub fn literal_data(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Lit { data } => Some(data),
            _ => None,
        }
    }

    /// The full, canonical secret text. Only for writing units or sending to
    /// the gateway; never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// A log-safe form: `URI:KIND:` + at most 4 characters of the first field
    /// + `…[si=<storage index>]`, or `URI:LIT:…[<n> bytes]` for literals.
    pub fn redacted(&self) -> String {
        let prefix = self.kind.prefix();
        match &self.body {
            Body::Lit { data } => format!("{prefix}…[{} bytes]", data.len()),
            Body::Chk { si, .. } | Body::Mutable { si, .. } => {
                let first = &self.text[prefix.len()..prefix.len() + 4];
                format!("{prefix}{first}…[si={}]", StorageIndex(*si))
            }
        }
    }
}

/// Whether `tag` looks like a cap kind and so is safe to echo in full
/// (an uppercase-initial token of at most 24 of `[A-Za-z0-9_-]`; base32 keys
/// are lowercase, so a missing kind never exposes a key).
fn looks_like_kind(tag: &str) -> bool {
    tag.len() <= 24
        && tag.starts_with(|c: char| c.is_ascii_uppercase())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// At most `n` characters of `s`, control characters escaped, plus `…` if
/// anything was cut.
fn keep_chars(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).flat_map(char::escape_debug).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

/// Redact a string that may be a cap, for logs and error messages.
///
/// Keeps an optional `ro.`/`imm.` prefix, `URI:KIND:` and at most 4 more
/// characters (none for `LIT`/`DIR2-LIT`, whose data is file content), then
/// `…`. Anything that does not look like `URI:KIND:` keeps at most 12
/// characters (`URI:` + 4 when it starts with `URI:`). Surrounding whitespace
/// is trimmed and control characters are escaped.
pub fn redact(input: &str) -> String {
    let t = input.trim();
    let (alleged, body) = if let Some(b) = t.strip_prefix(IMM_PREFIX) {
        (IMM_PREFIX, b)
    } else if let Some(b) = t.strip_prefix(RO_PREFIX) {
        (RO_PREFIX, b)
    } else {
        ("", t)
    };
    if let Some(after) = body.strip_prefix("URI:") {
        if let Some((tag, rest)) = after.split_once(':') {
            if looks_like_kind(tag) {
                let keep = if tag == "LIT" || tag == "DIR2-LIT" {
                    0
                } else {
                    4
                };
                return format!("{alleged}URI:{tag}:{}", keep_chars(rest, keep));
            }
        }
        return format!("{alleged}URI:{}", keep_chars(after, 4));
    }
    keep_chars(t, 12)
}

/// Replace everything in `text` that looks like a cap, plain (`URI:...`) or
/// URL-escaped as in a request path (`URI%3A...`), with its redacted form,
/// so that a server's error text, a URL or a log line can be shown safely.
pub fn redact_caps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let plain = rest.find("URI:");
        let escaped = find_ascii_ci(rest, "URI%3A");
        let (pos, escaped) = match (plain, escaped) {
            (Some(p), Some(e)) if e < p => (e, true),
            (Some(p), _) => (p, false),
            (None, Some(e)) => (e, true),
            (None, None) => break,
        };
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '%')))
            .unwrap_or(tail.len());
        let cap = &tail[..end];
        if escaped {
            out.push_str(&redact(&cap.replace("%3A", ":").replace("%3a", ":")));
        } else {
            out.push_str(&redact(cap));
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..h.len().saturating_sub(n.len() - 1)).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests;
