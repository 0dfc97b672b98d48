//! Mutable share headers (SDMF and MDMF, `allmydata/mutable/layout.py`) and
//! the checks Tahoe's servermap updater makes on them: the verification key
//! must hash to the cap's fingerprint (`ssk_pubkey_fingerprint_hash`), and
//! the version's signed prefix must carry a valid RSA-PSS signature
//! (SHA-256, MGF1-SHA-256, 32-byte salt: `allmydata/crypto/rsa.py`),
//! checked with [`steward_format::mutable::verify_signature`].
//!
//! SDMF (version byte 0), big-endian:
//!
//! ```text
//! 0   B    version        1  Q seqnum     9  32s root hash   41 16s IV
//! 57  B    k              58 B N          59 Q segsize       67 Q datalen
//! 75  L    signature      79 L share hash chain   83 L block hash tree
//! 87  L    share data     91 Q enc privkey        99 Q EOF
//! 107 verification key .. signature .. share hash chain ..
//! ```
//! signed prefix = bytes 0..75.
//!
//! MDMF (version byte 1):
//!
//! ```text
//! 0  B version  1 Q seqnum  9 32s root hash  41 B k  42 B N  43 Q segsize  51 Q datalen
//! 59 Q enc privkey  67 Q share hash chain  75 Q signature  83 Q verification key
//! 91 Q verification key end  99 Q share data  107 Q block hash tree  115 Q EOF
//! 123 enc privkey .. share hash chain .. signature .. verification key ..
//! ```
//! signed prefix = bytes 0..59.

use std::ops::Range;

/// Bytes of an SDMF header, offsets included.
pub const SDMF_HEADER_LEN: usize = 107;
/// Bytes of an MDMF header, offsets included.
pub const MDMF_HEADER_LEN: usize = 123;
const SDMF_PREFIX_LEN: usize = 75;
const MDMF_PREFIX_LEN: usize = 59;
/// Longest verification key or signature accepted (an RSA-2048 key is 294
/// bytes, its signature 256; Tahoe has never made keys above 4096 bits).
const MAX_FIELD: u64 = 16 * 1024;

/// How [`parse_header`]'s error for a layout version it does not know
/// starts (such a share is incompatible, not corrupt).
pub const UNKNOWN_VERSION: &str = "unknown mutable share version";

/// Tahoe's `MUTABLE_PUBKEY_TAG`.
pub const PUBKEY_FINGERPRINT_TAG: &[u8] = b"allmydata_mutable_pubkey_to_fingerprint_v1";

/// A version of a mutable file, as Tahoe's `verinfo` tuple identifies it:
/// two shares are of the same version exactly when all these fields are
/// equal. Ordered like Tahoe's tuples, so the greatest recoverable version
/// is Tahoe's "best" one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub seqnum: u64,
    pub root_hash: [u8; 32],
    /// The IV of SDMF shares; `None` for MDMF.
    pub salt: Option<[u8; 16]>,
    pub segsize: u64,
    pub datalen: u64,
    pub k: u8,
    pub n: u8,
    /// The signed prefix (what the signature covers).
    pub prefix: Vec<u8>,
    /// The offset table.
    pub offsets: Vec<u64>,
}

impl Version {
    /// Tahoe's `summarize_version`: `seq<N>-<first 4 base32 chars of the root hash>`.
    pub fn summary(&self) -> String {
        let rh = steward_cap::base32::encode(&self.root_hash);
        format!("seq{}-{}", self.seqnum, &rh[..4])
    }
}

/// What one share's header says.
#[derive(Clone, Debug)]
pub struct ShareHeader {
    pub version: Version,
    /// Where the verification key (DER SubjectPublicKeyInfo) lies.
    pub pubkey: Range<u64>,
    /// Where the signature lies.
    pub signature: Range<u64>,
}

impl ShareHeader {
    /// The byte range to read to get both the verification key and the
    /// signature.
    pub fn key_and_signature_span(&self) -> Range<u64> {
        self.pubkey.start.min(self.signature.start)..self.pubkey.end.max(self.signature.end)
    }
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn be32(b: &[u8], at: usize) -> u64 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64
}

fn field(start: u64, end: u64, what: &str) -> Result<Range<u64>, String> {
    if end < start || end - start > MAX_FIELD || end == start {
        return Err(format!("bad {what} offsets {start}..{end}"));
    }
    Ok(start..end)
}

/// Parse a mutable share's header from its first bytes (at least
/// [`MDMF_HEADER_LEN`], or [`SDMF_HEADER_LEN`] for SDMF).
pub fn parse_header(data: &[u8]) -> Result<ShareHeader, String> {
    let verno = *data.first().ok_or("empty share")?;
    let need = match verno {
        0 => SDMF_HEADER_LEN,
        1 => MDMF_HEADER_LEN,
        v => return Err(format!("{UNKNOWN_VERSION} {v}")),
    };
    if data.len() < need {
        return Err(format!(
            "share is {} bytes, shorter than its header ({need})",
            data.len()
        ));
    }
    let seqnum = be64(data, 1);
    let root_hash: [u8; 32] = data[9..41].try_into().expect("32 bytes");
    if verno == 0 {
        let salt: [u8; 16] = data[41..57].try_into().expect("16 bytes");
        let (k, n) = (data[57], data[58]);
        let (segsize, datalen) = (be64(data, 59), be64(data, 67));
        let offsets = vec![
            be32(data, 75),
            be32(data, 79),
            be32(data, 83),
            be32(data, 87),
            be64(data, 91),
            be64(data, 99),
        ];
        Ok(ShareHeader {
            pubkey: field(SDMF_HEADER_LEN as u64, offsets[0], "verification key")?,
            signature: field(offsets[0], offsets[1], "signature")?,
            version: Version {
                seqnum,
                root_hash,
                salt: Some(salt),
                segsize,
                datalen,
                k,
                n,
                prefix: data[..SDMF_PREFIX_LEN].to_vec(),
                offsets,
            },
        })
    } else {
        let (k, n) = (data[41], data[42]);
        let (segsize, datalen) = (be64(data, 43), be64(data, 51));
        let offsets: Vec<u64> = (0..8).map(|i| be64(data, 59 + 8 * i)).collect();
        // enc_privkey, share_hash_chain, signature, verification_key,
        // verification_key_end, share_data, block_hash_tree, EOF
        Ok(ShareHeader {
            signature: field(offsets[2], offsets[3], "signature")?,
            pubkey: field(offsets[3], offsets[4], "verification key")?,
            version: Version {
                seqnum,
                root_hash,
                salt: None,
                segsize,
                datalen,
                k,
                n,
                prefix: data[..MDMF_PREFIX_LEN].to_vec(),
                offsets,
            },
        })
    }
}

/// Whether `pubkey` (DER) is the key the cap's fingerprint names.
pub fn pubkey_matches_fingerprint(pubkey: &[u8], fingerprint: &[u8; 32]) -> bool {
    steward_cap::hash::tagged_hash(PUBKEY_FINGERPRINT_TAG, pubkey, 0) == fingerprint
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdmf_header(seq: u64) -> Vec<u8> {
        let mut h = vec![0u8];
        h.extend_from_slice(&seq.to_be_bytes());
        h.extend_from_slice(&[7u8; 32]);
        h.extend_from_slice(&[9u8; 16]);
        h.extend_from_slice(&[2, 5]);
        h.extend_from_slice(&1000u64.to_be_bytes());
        h.extend_from_slice(&999u64.to_be_bytes());
        for o in [400u32, 656, 700, 800] {
            h.extend_from_slice(&o.to_be_bytes());
        }
        h.extend_from_slice(&1200u64.to_be_bytes());
        h.extend_from_slice(&2400u64.to_be_bytes());
        h
    }

    #[test]
    fn parses_sdmf_headers() {
        let h = parse_header(&sdmf_header(3)).unwrap();
        assert_eq!(h.version.seqnum, 3);
        assert_eq!((h.version.k, h.version.n), (2, 5));
        assert_eq!(h.version.segsize, 1000);
        assert_eq!(h.version.datalen, 999);
        assert_eq!(h.pubkey, 107..400);
        assert_eq!(h.signature, 400..656);
        assert_eq!(h.key_and_signature_span(), 107..656);
        assert_eq!(h.version.prefix.len(), 75);
        assert_eq!(h.version.summary(), "seq3-a4dq");
        assert!(parse_header(&sdmf_header(3)[..100]).is_err());
        assert!(parse_header(&[7u8; 200]).is_err());
        let mut bad = sdmf_header(1);
        bad[75..79].copy_from_slice(&50u32.to_be_bytes());
        assert!(parse_header(&bad).is_err());
        assert!(parse_header(&sdmf_header(2)).unwrap().version < h.version);
        assert!(parse_header(&sdmf_header(4)).unwrap().version > h.version);
    }

    #[test]
    fn fingerprint_tag_matches_tahoe() {
        // ssk_pubkey_fingerprint_hash(b"abc") from tahoe-lafs 1.20.0.
        let fp: Vec<u8> = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"f85423aa028ac73c0e0433f9efae51ec15aee9138e8197802ce08f32f4777438"
                        [2 * i..2 * i + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        assert!(pubkey_matches_fingerprint(b"abc", &fp.try_into().unwrap()));
        assert!(!pubkey_matches_fingerprint(b"abd", &[0; 32]));
    }
}
