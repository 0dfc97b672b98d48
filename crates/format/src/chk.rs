//! CHK (immutable) shares: the layout (`allmydata/immutable/layout.py`), the
//! encoding parameters a verified URI extension block fixes
//! (`allmydata/immutable/checker.py`, `ValidatedExtendedURIProxy`), and
//! decoding and decrypting one segment.
//!
//! A share, as a storage server returns it (without the container header
//! that holds leases), big-endian:
//!
//! ```text
//! v1: 0x00 version (=1, 4 bytes)  0x04 block size  0x08 data size
//!     0x0c offsets, 4 bytes each: data (=0x24), plaintext hash tree (unused),
//!          crypttext hash tree, block hashes, share hashes, URI extension
//! v2: 0x00 version (=2, 4 bytes)  0x04 block size (8)  0x0c data size (8)
//!     0x14 the same six offsets, 8 bytes each; data at 0x44
//! then: blocks (one per segment), plaintext hash tree (zeros), crypttext
//!     hash tree, block hash tree (all nodes, 32 bytes each), share hash
//!     chain (2-byte index + 32-byte hash each, the share's own leaf
//!     included), URI extension length (4 or 8 bytes) and the UEB.
//! ```
//!
//! Readers ignore the block size and data size fields and the plaintext
//! hash tree (Tahoe has not used them since 1.3.0).

use crate::aes;
use crate::hashtree::Hash;
use crate::segments::Segments;
use crate::uri_extension::{UebError, UriExtension};
use steward_cap::{Cap, Format};

/// Header length of a v1 share.
pub const V1_HEADER_LEN: u64 = 0x24;
/// Header length of a v2 share.
pub const V2_HEADER_LEN: u64 = 0x44;

/// What a CHK cap (read or verify, file or directory) says about its file.
#[derive(Clone, PartialEq, Eq)]
pub struct ChkCap {
    /// The storage index.
    pub storage_index: [u8; 16],
    /// The hash of the URI extension block.
    pub ueb_hash: Hash,
    /// Shares needed.
    pub k: u16,
    /// Shares made.
    pub n: u16,
    /// File size in bytes.
    pub size: u64,
    /// The AES key (read caps only). Secret.
    pub key: Option<[u8; 16]>,
}

impl std::fmt::Debug for ChkCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChkCap")
            .field(
                "storage_index",
                &steward_cap::base32::encode(&self.storage_index),
            )
            .field("k", &self.k)
            .field("n", &self.n)
            .field("size", &self.size)
            .field("key", &self.key.map(|_| "…"))
            .finish()
    }
}

/// Why a cap cannot name a CHK file to read or verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChkCapError {
    /// Not a `CHK`/`DIR2-CHK` cap or their verifiers.
    #[error("{0} is not a CHK cap")]
    NotChk(String),
    /// Encoding parameters no CHK file can have.
    #[error("{cap} has impossible encoding {k}-of-{n} or size {size}")]
    Impossible {
        /// The redacted cap.
        cap: String,
        /// Shares needed.
        k: u16,
        /// Shares made.
        n: u16,
        /// File size.
        size: u64,
    },
}

impl ChkCap {
    /// The CHK fields of a `CHK`, `CHK-Verifier`, `DIR2-CHK` or
    /// `DIR2-CHK-Verifier` cap. Rejects `k = 0`, `k > n`, `n > 256` and
    /// size 0 (Tahoe stores files of up to 55 bytes as `LIT` caps).
    pub fn from_cap(cap: &Cap) -> Result<ChkCap, ChkCapError> {
        let inner = cap.filenode_cap();
        if inner.format() != Format::Chk {
            return Err(ChkCapError::NotChk(cap.redacted()));
        }
        let (k, n) = inner.encoding().expect("CHK caps carry k and N");
        let size = inner.size().expect("CHK caps carry a size");
        if k == 0 || k > n || n > 256 || size == 0 {
            return Err(ChkCapError::Impossible {
                cap: cap.redacted(),
                k,
                n,
                size,
            });
        }
        Ok(ChkCap {
            storage_index: inner.storage_index().expect("CHK caps have an SI").0,
            ueb_hash: inner
                .uri_extension_hash()
                .expect("CHK caps carry the UEB hash"),
            k,
            n,
            size,
            key: inner.encryption_key(),
        })
    }
}

/// A parsed share header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChkHeader {
    /// Layout version, 1 or 2.
    pub version: u32,
    /// The block size field (unused by readers).
    pub block_size: u64,
    /// The data size field (unused by readers).
    pub data_size: u64,
    /// Offset of the first block.
    pub data: u64,
    /// Offset of the unused plaintext hash tree.
    pub plaintext_hash_tree: u64,
    /// Offset of the crypttext hash tree.
    pub crypttext_hash_tree: u64,
    /// Offset of the block hash tree.
    pub block_hashes: u64,
    /// Offset of the share hash chain.
    pub share_hashes: u64,
    /// Offset of the URI extension length field.
    pub uri_extension: u64,
}

/// Why the start of a share is not a CHK header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChkHeaderError {
    /// Fewer bytes than the header.
    #[error("share is {have} bytes, shorter than its {need}-byte header")]
    TooShort {
        /// Bytes available.
        have: usize,
        /// Bytes the header needs.
        need: u64,
    },
    /// A version this reader does not know (Tahoe: `ShareVersionIncompatible`,
    /// reported as an incompatible share rather than a corrupt one).
    #[error("unknown immutable share version {0}")]
    UnknownVersion(u32),
}

fn be(data: &[u8], at: usize, width: usize) -> u64 {
    data[at..at + width]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | b as u64)
}

impl ChkHeader {
    /// Parses the header from the first bytes of a share (at least 4; 0x24
    /// for v1 and 0x44 for v2).
    pub fn parse(data: &[u8]) -> Result<ChkHeader, ChkHeaderError> {
        if data.len() < 4 {
            return Err(ChkHeaderError::TooShort {
                have: data.len(),
                need: 4,
            });
        }
        let version = be(data, 0, 4) as u32;
        let (width, need) = match version {
            1 => (4, V1_HEADER_LEN),
            2 => (8, V2_HEADER_LEN),
            v => return Err(ChkHeaderError::UnknownVersion(v)),
        };
        if (data.len() as u64) < need {
            return Err(ChkHeaderError::TooShort {
                have: data.len(),
                need,
            });
        }
        let f = |i: usize| be(data, 4 + i * width, width);
        Ok(ChkHeader {
            version,
            block_size: f(0),
            data_size: f(1),
            data: f(2),
            plaintext_hash_tree: f(3),
            crypttext_hash_tree: f(4),
            block_hashes: f(5),
            share_hashes: f(6),
            uri_extension: f(7),
        })
    }

    /// Bytes of the URI extension length field (4 for v1, 8 for v2).
    pub fn field_size(&self) -> u64 {
        if self.version == 1 {
            4
        } else {
            8
        }
    }

    /// Bytes of this header.
    pub fn len(&self) -> u64 {
        if self.version == 1 {
            V1_HEADER_LEN
        } else {
            V2_HEADER_LEN
        }
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The encoding of a CHK file, from its cap and verified URI extension
/// block: everything needed to find and check each block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChkParams {
    /// File size.
    pub size: u64,
    /// Segments and blocks.
    pub segments: Segments,
    /// Bytes of the last segment after zero padding to a multiple of `k`.
    pub tail_segment_size: u64,
    /// Bytes of block data per share (`ceil(size / k)`).
    pub share_data_size: u64,
    /// Root of the crypttext hash tree.
    pub crypttext_root_hash: Hash,
    /// Root of the share hash tree.
    pub share_root_hash: Hash,
    /// Hash of the whole ciphertext, if the UEB has it.
    pub crypttext_hash: Option<Hash>,
}

impl ChkParams {
    /// The parameters of a file from its cap and its URI extension block,
    /// which must already match the cap's UEB hash. Checks what Tahoe's
    /// verifier checks (optional fields must agree with the cap), and that
    /// the segment size is a non-zero multiple of `k`, as Tahoe's encoder
    /// guarantees.
    pub fn from_ueb(cap: &ChkCap, ueb: &UriExtension) -> Result<ChkParams, UebError> {
        let k = u64::from(cap.k);
        let n = u64::from(cap.n);
        let segment_size = ueb
            .number("segment_size")?
            .ok_or(UebError::Missing("segment_size"))?;
        let crypttext_root_hash = ueb
            .hash("crypttext_root_hash")?
            .ok_or(UebError::Missing("crypttext_root_hash"))?;
        let share_root_hash = ueb
            .hash("share_root_hash")?
            .ok_or(UebError::Missing("share_root_hash"))?;
        let crypttext_hash = ueb.hash("crypttext_hash")?;
        if segment_size == 0 || segment_size % k != 0 {
            return Err(UebError::Inconsistent(format!(
                "segment size {segment_size} is not a positive multiple of k={k}"
            )));
        }
        let num_segments = cap.size.div_ceil(segment_size);
        let mut tail_data_size = cap.size % segment_size;
        if tail_data_size == 0 {
            tail_data_size = segment_size;
        }
        let tail_segment_size = tail_data_size.div_ceil(k) * k;
        if let Some(name) = ueb.get("codec_name") {
            if name != b"crs" {
                return Err(UebError::Inconsistent(format!(
                    "unsupported erasure codec {}",
                    String::from_utf8_lossy(name)
                )));
            }
        }
        let expect = |what: &str, got: u64, want: u64| {
            if got == want {
                Ok(())
            } else {
                Err(UebError::Inconsistent(format!(
                    "{what} is {got}, expected {want}"
                )))
            }
        };
        if let Some((ss, nk, nn)) = ueb.codec_params("codec_params")? {
            expect("codec_params segment size", ss, segment_size)?;
            expect("codec_params k", nk, k)?;
            expect("codec_params N", nn, n)?;
        }
        if let Some((ss, nk, nn)) = ueb.codec_params("tail_codec_params")? {
            expect("tail_codec_params segment size", ss, tail_segment_size)?;
            expect("tail_codec_params k", nk, k)?;
            expect("tail_codec_params N", nn, n)?;
        }
        if let Some(v) = ueb.number("num_segments")? {
            expect("num_segments", v, num_segments)?;
        }
        if let Some(v) = ueb.number("size")? {
            expect("size", v, cap.size)?;
        }
        if let Some(v) = ueb.number("needed_shares")? {
            expect("needed_shares", v, k)?;
        }
        if let Some(v) = ueb.number("total_shares")? {
            expect("total_shares", v, n)?;
        }
        Ok(ChkParams {
            size: cap.size,
            segments: Segments {
                k: cap.k,
                n: cap.n,
                segment_size,
                num_segments,
                block_size: segment_size / k,
                tail_block_size: tail_segment_size / k,
                tail_data_size,
            },
            tail_segment_size,
            share_data_size: cap.size.div_ceil(k),
            crypttext_root_hash,
            share_root_hash,
            crypttext_hash,
        })
    }

    /// Decrypts segment `segnum` (its ciphertext from
    /// [`Segments::decode_segment`]) in place with the file's key.
    pub fn decrypt_segment(&self, key: &[u8; 16], segnum: u64, data: &mut [u8]) {
        aes::apply_keystream(
            key,
            &aes::ZERO_IV,
            segnum * self.segments.segment_size,
            data,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_versions() {
        let mut v1 = vec![0u8; 0x24];
        v1[3] = 1;
        v1[0x0c + 3] = 0x24;
        let h = ChkHeader::parse(&v1).unwrap();
        assert_eq!(
            (h.version, h.data, h.field_size(), h.len()),
            (1, 0x24, 4, 0x24)
        );
        assert_eq!(
            ChkHeader::parse(&v1[..0x23]),
            Err(ChkHeaderError::TooShort {
                have: 0x23,
                need: 0x24
            })
        );
        v1[3] = 2;
        assert!(matches!(
            ChkHeader::parse(&v1),
            Err(ChkHeaderError::TooShort { .. })
        ));
        v1[3] = 3;
        assert_eq!(
            ChkHeader::parse(&v1),
            Err(ChkHeaderError::UnknownVersion(3))
        );
        assert!(ChkHeader::parse(&[0, 0]).is_err());
    }
}
