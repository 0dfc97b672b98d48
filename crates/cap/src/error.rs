//! Errors. Every variant names its input only through [`crate::redact`].

use crate::{base32, Authority, CapKind};

/// Why a string is not a usable Tahoe-LAFS cap, or why a cap cannot be
/// turned into the requested form.
///
/// `input` fields always hold the *redacted* input (see [`crate::redact`]),
/// never the full secret, so errors are safe to log and to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapError {
    /// The input was empty (or only whitespace).
    #[error("empty cap: expected a Tahoe-LAFS cap such as URI:DIR2:… or URI:CHK:…")]
    Empty,

    /// The input does not start with `URI:` (after an optional `ro.`/`imm.`).
    #[error(
        "not a Tahoe-LAFS cap: {input}: expected text starting with URI:CHK:, URI:LIT:, \
         URI:SSK:, URI:MDMF:, URI:DIR2:, URI:DIR2-RO:, URI:DIR2-CHK:, URI:DIR2-MDMF:, … \
         (optionally prefixed by ro. or imm.)"
    )]
    NotACap {
        /// Redacted input.
        input: String,
    },

    /// `URI:<kind>:` with a kind Tahoe-LAFS 1.20 does not know.
    #[error(
        "unknown cap kind URI:{kind}: in {input}: Tahoe-LAFS 1.20 knows CHK, CHK-Verifier, LIT, \
         SSK, SSK-RO, SSK-Verifier, MDMF, MDMF-RO, MDMF-Verifier and DIR2, DIR2-RO, \
         DIR2-Verifier, DIR2-CHK, DIR2-CHK-Verifier, DIR2-LIT, DIR2-MDMF, DIR2-MDMF-RO, \
         DIR2-MDMF-Verifier; check the cap was copied completely"
    )]
    UnknownKind {
        /// The kind as written, shortened if it does not look like a kind.
        kind: String,
        /// Redacted input.
        input: String,
    },

    /// Wrong number of `:`-separated fields, or otherwise mis-shaped.
    #[error("malformed URI:{kind}: cap {input}: {detail}; the cap is probably truncated or has extra text")]
    Malformed {
        /// Kind named by the prefix.
        kind: CapKind,
        /// Redacted input.
        input: String,
        /// What is wrong (never contains cap text).
        detail: String,
    },

    /// A key/hash field is not canonical Tahoe base32.
    #[error(
        "bad base32 in {field} field of URI:{kind}: cap {input}: {problem}; Tahoe caps use \
         lowercase a-z and 2-7 without padding, so check the cap was not re-cased or mangled"
    )]
    BadBase32 {
        /// Kind named by the prefix.
        kind: CapKind,
        /// Field name (`key`, `writekey`, `readkey`, `storage-index`,
        /// `fingerprint`, `UEB-hash`, `data`).
        field: &'static str,
        /// Redacted input.
        input: String,
        /// The base32 problem.
        problem: base32::DecodeError,
    },

    /// A key/hash field has the wrong length.
    #[error(
        "wrong key length in {field} field of URI:{kind}: cap {input}: {found} base32 characters, \
         expected {expected}; the cap is probably truncated or has extra characters"
    )]
    WrongLength {
        /// Kind named by the prefix.
        kind: CapKind,
        /// Field name.
        field: &'static str,
        /// Redacted input.
        input: String,
        /// Characters found.
        found: usize,
        /// Characters expected (26 for 16 bytes, 52 for 32 bytes).
        expected: usize,
    },

    /// A numeric field (`needed-shares`, `total-shares`, `size`) is not a
    /// decimal number or is out of range.
    #[error("bad number in {field} field of URI:{kind}: cap {input}: {detail}")]
    BadNumber {
        /// Kind named by the prefix.
        kind: CapKind,
        /// Field name.
        field: &'static str,
        /// Redacted input.
        input: String,
        /// What is wrong.
        detail: &'static str,
    },

    /// The `ro.`/`imm.` prefix forbids this kind (as in Tahoe's
    /// `uri.from_string`, which turns such caps into unknown caps).
    #[error(
        "URI:{kind}: cap {input} carries the {prefix} prefix but is {what}; \
         Tahoe treats this as an unknown cap. Remove the prefix only if you are sure \
         the cap was meant to have this authority"
    )]
    PrefixConstraint {
        /// Kind named by the prefix.
        kind: CapKind,
        /// `"ro."` or `"imm."`.
        prefix: &'static str,
        /// Redacted input.
        input: String,
        /// "a write cap" / "a cap to a mutable object".
        what: &'static str,
    },

    /// A weaker cap was asked for a stronger authority.
    #[error(
        "{input} is a {have} cap but {want} authority is needed; a cap cannot be strengthened, \
         supply the {want} cap instead"
    )]
    InsufficientAuthority {
        /// Redacted cap.
        input: String,
        /// The authority the cap has.
        have: Authority,
        /// The authority that was requested.
        want: Authority,
    },

    /// A literal cap was asked for a verify cap or storage index.
    #[error(
        "{input} is a literal cap: its data lives inside the cap, so it has no verify cap or \
         storage index and there is nothing on the grid to check"
    )]
    Literal {
        /// Redacted cap.
        input: String,
    },
}
