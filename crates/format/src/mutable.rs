//! SDMF and MDMF (mutable) shares: the layouts (`allmydata/mutable/layout.py`,
//! `docs/specifications/mutable.rst`), the checks of a share's
//! verification key and signature, and decoding and decrypting a segment.
//!
//! SDMF (version byte 0), big-endian:
//!
//! ```text
//! 0   B  version   1  Q seqnum   9  32s root hash   41 16s IV (salt)
//! 57  B  k         58 B N        59 Q segsize       67 Q datalen
//! 75  L  signature 79 L share hash chain  83 L block hash tree
//! 87  L  share data  91 Q encrypted private key  99 Q EOF
//! 107 verification key | signature | share hash chain | block hash tree
//!     | share data (one block) | encrypted private key
//! ```
//! The signed prefix is bytes 0..75.
//!
//! MDMF (version byte 1):
//!
//! ```text
//! 0  B version  1 Q seqnum  9 32s root hash  41 B k  42 B N  43 Q segsize
//! 51 Q datalen  59 Q encrypted private key  67 Q share hash chain
//! 75 Q signature  83 Q verification key  91 Q verification key end
//! 99 Q share data  107 Q block hash tree  115 Q EOF
//! 123 encrypted private key | share hash chain | signature
//!     | verification key | share data (per segment: 16-byte salt + block)
//!     | block hash tree
//! ```
//! The signed prefix is bytes 0..59.
//!
//! The root hash is the root of the share hash tree, whose leaf `i` is the
//! root of share `i`'s block hash tree; the share hash chain holds the
//! siblings needed to check a share's leaf (not the leaf itself, unlike
//! CHK). A block hash tree leaf is `block_hash(block)` for SDMF and
//! `block_hash(salt + block)` for MDMF. The offsets are not signed: a reader
//! trusts the signed prefix only once the signature checks, and checks
//! everything the offsets point at by hash.

use crate::aes;
use crate::hashtree::Hash;
use crate::segments::Segments;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use std::ops::Range;
use steward_cap::{Cap, Format};

/// Bytes of an SDMF header, offsets included.
pub const SDMF_HEADER_LEN: u64 = 107;
/// Bytes of an MDMF header, offsets included.
pub const MDMF_HEADER_LEN: u64 = 123;
/// Bytes of the SDMF signed prefix.
pub const SDMF_SIGNED_PREFIX_LEN: usize = 75;
/// Bytes of the MDMF signed prefix.
pub const MDMF_SIGNED_PREFIX_LEN: usize = 59;
/// Bytes of a salt.
pub const SALT_LEN: u64 = 16;
/// The salt length of Tahoe's RSA-PSS signatures (`RSA_PSS_SALT_LENGTH`).
pub const PSS_SALT_LEN: usize = 32;

/// What a mutable cap (write, read or verify; file or directory) says.
#[derive(Clone, PartialEq, Eq)]
pub struct MutableCap {
    /// SDMF or MDMF.
    pub format: Format,
    /// The storage index.
    pub storage_index: [u8; 16],
    /// The fingerprint of the verification key.
    pub fingerprint: Hash,
    /// The read key (read and write caps). Secret.
    pub readkey: Option<[u8; 16]>,
    /// The write key (write caps). Secret.
    pub writekey: Option<[u8; 16]>,
}

impl std::fmt::Debug for MutableCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableCap")
            .field("format", &self.format)
            .field(
                "storage_index",
                &steward_cap::base32::encode(&self.storage_index),
            )
            .field("readkey", &self.readkey.map(|_| "…"))
            .field("writekey", &self.writekey.map(|_| "…"))
            .finish()
    }
}

impl MutableCap {
    /// The fields of an `SSK`, `MDMF` or `DIR2`/`DIR2-MDMF` cap of any
    /// authority; `None` for other caps.
    pub fn from_cap(cap: &Cap) -> Option<MutableCap> {
        let inner = cap.filenode_cap();
        let format = inner.format();
        if !matches!(format, Format::Sdmf | Format::Mdmf) {
            return None;
        }
        Some(MutableCap {
            format,
            storage_index: inner.storage_index()?.0,
            fingerprint: inner.fingerprint()?,
            readkey: inner.readkey(),
            writekey: inner.writekey(),
        })
    }
}

/// Where each part of a mutable share lies, as its offset table says. The
/// table is not signed: a range may end before it starts (Tahoe then reads
/// nothing there), and readers check what they use. Verifying never reads
/// the encrypted private key, so its offsets do not matter to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableRegions {
    /// The DER verification key.
    pub verification_key: Range<u64>,
    /// The RSA-PSS signature of the signed prefix.
    pub signature: Range<u64>,
    /// The share hash chain.
    pub share_hash_chain: Range<u64>,
    /// The block hash tree.
    pub block_hash_tree: Range<u64>,
    /// The blocks (MDMF: each preceded by its salt).
    pub share_data: Range<u64>,
    /// The private key, encrypted with the write key.
    pub enc_privkey: Range<u64>,
}

/// A parsed mutable share header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableHeader {
    /// [`Format::Sdmf`] (version byte 0) or [`Format::Mdmf`] (1).
    pub format: Format,
    /// The version's sequence number.
    pub seqnum: u64,
    /// The root of the share hash tree.
    pub root_hash: Hash,
    /// SDMF: the IV, which is the salt of its one segment. MDMF: `None`.
    pub iv: Option<[u8; 16]>,
    /// Shares needed.
    pub k: u8,
    /// Shares made.
    pub n: u8,
    /// Bytes per segment (SDMF: the padded file length).
    pub segment_size: u64,
    /// Bytes of plaintext.
    pub data_length: u64,
    /// The signed bytes (the start of the share).
    pub signed_prefix: Vec<u8>,
    /// The offset table.
    pub regions: MutableRegions,
}

/// Why the start of a share is not a mutable header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MutableHeaderError {
    /// Fewer bytes than the header.
    #[error("share is {have} bytes, shorter than its {need}-byte header")]
    TooShort {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: u64,
    },
    /// A version byte other than 0 or 1 (Tahoe: `UnknownVersionError`).
    #[error("unknown mutable share version {0}")]
    UnknownVersion(u8),
}

fn be(data: &[u8], at: usize, width: usize) -> u64 {
    data[at..at + width]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | b as u64)
}

impl MutableHeader {
    /// Bytes a header of this share's version takes, from its first byte.
    pub fn len_for_version(version: u8) -> Option<u64> {
        match version {
            0 => Some(SDMF_HEADER_LEN),
            1 => Some(MDMF_HEADER_LEN),
            _ => None,
        }
    }

    /// Parses a header from the first bytes of a share (107 for SDMF, 123
    /// for MDMF).
    pub fn parse(data: &[u8]) -> Result<MutableHeader, MutableHeaderError> {
        let version = *data
            .first()
            .ok_or(MutableHeaderError::TooShort { have: 0, need: 1 })?;
        let need =
            Self::len_for_version(version).ok_or(MutableHeaderError::UnknownVersion(version))?;
        if (data.len() as u64) < need {
            return Err(MutableHeaderError::TooShort {
                have: data.len(),
                need,
            });
        }
        let seqnum = be(data, 1, 8);
        let root_hash: Hash = data[9..41].try_into().expect("32 bytes");
        if version == 0 {
            let o = |i: usize| be(data, 75 + 4 * i, 4);
            let (sig, shc, bht, sd) = (o(0), o(1), o(2), o(3));
            let (ep, eof) = (be(data, 91, 8), be(data, 99, 8));
            Ok(MutableHeader {
                format: Format::Sdmf,
                seqnum,
                root_hash,
                iv: Some(data[41..57].try_into().expect("16 bytes")),
                k: data[57],
                n: data[58],
                segment_size: be(data, 59, 8),
                data_length: be(data, 67, 8),
                signed_prefix: data[..SDMF_SIGNED_PREFIX_LEN].to_vec(),
                regions: MutableRegions {
                    verification_key: SDMF_HEADER_LEN..sig,
                    signature: sig..shc,
                    share_hash_chain: shc..bht,
                    block_hash_tree: bht..sd,
                    share_data: sd..ep,
                    enc_privkey: ep..eof,
                },
            })
        } else {
            let o = |i: usize| be(data, 59 + 8 * i, 8);
            let (ep, shc, sig, vk, vk_end, sd, bht, eof) =
                (o(0), o(1), o(2), o(3), o(4), o(5), o(6), o(7));
            Ok(MutableHeader {
                format: Format::Mdmf,
                seqnum,
                root_hash,
                iv: None,
                k: data[41],
                n: data[42],
                segment_size: be(data, 43, 8),
                data_length: be(data, 51, 8),
                signed_prefix: data[..MDMF_SIGNED_PREFIX_LEN].to_vec(),
                regions: MutableRegions {
                    enc_privkey: ep..shc,
                    share_hash_chain: shc..sig,
                    signature: sig..vk,
                    verification_key: vk..vk_end,
                    share_data: sd..bht,
                    block_hash_tree: bht..eof,
                },
            })
        }
    }

    /// Tahoe's summary of a version: `seq<N>-<first 4 base32 chars of the
    /// root hash>`.
    pub fn summary(&self) -> String {
        let rh = steward_cap::base32::encode(&self.root_hash);
        format!("seq{}-{}", self.seqnum, &rh[..4])
    }

    /// The segment layout the signed fields describe, or why they describe
    /// none (a signed header can still be nonsense if its writer was).
    pub fn params(&self) -> Result<MutableParams, String> {
        let (k, n) = (u64::from(self.k), u64::from(self.n));
        if k == 0 || k > n {
            return Err(format!("impossible encoding {k}-of-{n}"));
        }
        let (segsize, datalen) = (self.segment_size, self.data_length);
        let num_segments = if segsize == 0 && datalen == 0 {
            0
        } else if segsize == 0 {
            return Err(format!("{datalen} bytes in segments of 0 bytes"));
        } else if self.format == Format::Sdmf {
            if datalen > segsize {
                return Err(format!(
                    "SDMF {datalen} bytes in one {segsize}-byte segment"
                ));
            }
            1
        } else {
            datalen.div_ceil(segsize)
        };
        if segsize % k != 0 {
            return Err(format!("segment size {segsize} is not a multiple of k={k}"));
        }
        let block_size = segsize / k;
        let tail = if datalen > 0 { datalen % segsize } else { 0 };
        let tail_block_size = if tail == 0 {
            block_size
        } else {
            tail.div_ceil(k)
        };
        let tail_data_size = if tail == 0 {
            segsize.min(datalen)
        } else {
            tail
        };
        Ok(MutableParams {
            format: self.format,
            data_length: datalen,
            segments: Segments {
                k: k as u16,
                n: n as u16,
                segment_size: segsize,
                num_segments,
                block_size,
                tail_block_size,
                tail_data_size,
            },
        })
    }
}

/// The segments of a mutable version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableParams {
    /// SDMF or MDMF.
    pub format: Format,
    /// Bytes of plaintext.
    pub data_length: u64,
    /// Segments and blocks.
    pub segments: Segments,
}

impl MutableParams {
    /// Where block `segnum` lies relative to the start of the share data,
    /// an MDMF salt included (Tahoe's `get_block_and_salt`).
    pub fn block_range(&self, segnum: u64) -> Option<Range<u64>> {
        let salt = if self.format == Format::Mdmf {
            SALT_LEN
        } else {
            0
        };
        let s = &self.segments;
        let start = segnum.checked_mul(s.block_size.checked_add(salt)?)?;
        let end = start.checked_add(s.block_len(segnum))?.checked_add(salt)?;
        Some(start..end)
    }
}

/// Decrypts a mutable segment in place: AES-CTR from 0 with the key
/// [`aes::mutable_data_key`] of the segment's salt (SDMF: the IV) and the
/// read key.
pub fn decrypt_segment(readkey: &[u8; 16], salt: &[u8; 16], data: &mut [u8]) {
    aes::apply_keystream(
        &aes::mutable_data_key(salt, readkey),
        &aes::ZERO_IV,
        0,
        data,
    );
}

/// Whether `pubkey` (DER) is the key a cap's fingerprint names.
pub fn pubkey_matches_fingerprint(pubkey: &[u8], fingerprint: &Hash) -> bool {
    &steward_cap::hash::ssk_pubkey_fingerprint_hash(pubkey) == fingerprint
}

/// Checks Tahoe's signature of a version's signed prefix: RSA-PSS with
/// SHA-256, MGF1-SHA-256 and a 32-byte salt (`allmydata/crypto/rsa.py`),
/// by the DER (SubjectPublicKeyInfo) key `pubkey`.
///
/// The key is parsed with the `rsa` crate and, for the 2048- to 8192-bit
/// keys Tahoe makes, checked with `ring` (Apache-2.0 AND ISC, already in
/// the build through rustls): about 45 µs against 700 µs with `rsa`, and a
/// directory read checks one signature per share. Other key sizes fall back
/// to `rsa`.
pub fn verify_signature(
    pubkey: &[u8],
    signature: &[u8],
    signed_prefix: &[u8],
) -> Result<(), String> {
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPublicKey::from_public_key_der(pubkey)
        .map_err(|e| format!("verification key is not an RSA public key: {e}"))?;
    let bad = || "signature does not match the signed header".to_string();
    if (2048..=8192).contains(&key.n().bits()) {
        let components = ring::signature::RsaPublicKeyComponents {
            n: key.n().to_bytes_be(),
            e: key.e().to_bytes_be(),
        };
        // ring's PSS uses a salt as long as the digest: Tahoe's 32 bytes.
        return components
            .verify(
                &ring::signature::RSA_PSS_2048_8192_SHA256,
                signed_prefix,
                signature,
            )
            .map_err(|_| bad());
    }
    let sig = rsa::pss::Signature::try_from(signature)
        .map_err(|e| format!("signature is malformed: {e}"))?;
    rsa::pss::VerifyingKey::<sha2::Sha256>::new_with_salt_len(key, PSS_SALT_LEN)
        .verify(signed_prefix, &sig)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors() {
        assert!(matches!(
            MutableHeader::parse(&[]),
            Err(MutableHeaderError::TooShort { .. })
        ));
        assert_eq!(
            MutableHeader::parse(&[2; 200]),
            Err(MutableHeaderError::UnknownVersion(2))
        );
        assert!(matches!(
            MutableHeader::parse(&[1; 100]),
            Err(MutableHeaderError::TooShort { need: 123, .. })
        ));
        // offsets that go backwards are kept as they are
        let mut h = vec![0u8; 123];
        h[0] = 1;
        h[59 + 7] = 200; // enc privkey at 200, share hash chain at 0
        let parsed = MutableHeader::parse(&h).unwrap();
        assert_eq!(
            (
                parsed.regions.enc_privkey.start,
                parsed.regions.enc_privkey.end
            ),
            (200, 0)
        );
        assert!(parsed.params().is_err()); // k = 0
    }
}
