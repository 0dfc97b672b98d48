//! Reading a whole small object from shares held in memory: verify each
//! share, decode every segment from `k` good ones, check the ciphertext
//! (CHK: against the crypttext hash tree), decrypt. This is how directories
//! are read; large files would go segment by segment with the same pieces
//! ([`crate::segments::Segments::decode_segment`],
//! [`crate::chk::ChkParams::decrypt_segment`],
//! [`crate::mutable::decrypt_segment`]).
//!
//! Shares that fail verification are skipped and reported with the part
//! that failed, so the caller can fetch others; the object is read as long
//! as `k` good shares remain, as Tahoe does.

use crate::chk::{ChkCap, ChkHeader, ChkParams};
use crate::hashtree::{self, Hash};
use crate::mutable::{self, MutableCap, MutableHeader, MutableParams};
use crate::verify::{verify_chk_share, verify_mutable_share, Verdict};
use std::collections::BTreeMap;
use steward_cap::hash::{crypttext_segment_hash, TaggedHasher, CIPHERTEXT_TAG};
use steward_cap::Format;

/// Why an object could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Fewer than `k` shares passed verification.
    #[error("only {good} good shares of the {needed} needed ({bad} corrupt or incompatible)")]
    NotEnoughShares {
        /// Good shares found.
        good: usize,
        /// Shares needed.
        needed: usize,
        /// Shares that failed.
        bad: usize,
    },
    /// The cap cannot read (a verify cap, or the wrong kind of cap).
    #[error("{0}")]
    Cap(String),
    /// Good shares that decode to something the file's hashes reject: the
    /// uploader mixed shares of different files.
    #[error("the decoded data does not match the file's hashes: {0}")]
    Inconsistent(String),
}

/// A decoded and decrypted object, and the shares that were not used
/// because they failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retrieved {
    /// The plaintext. Secret.
    pub plaintext: Vec<u8>,
    /// Share numbers decoded from.
    pub used: Vec<usize>,
    /// Shares that failed verification, with why.
    pub rejected: Vec<(usize, Verdict)>,
    /// For mutable objects, the version read.
    pub version: Option<MutableHeader>,
}

fn bad_verdict(v: &Verdict) -> Option<Verdict> {
    (!v.is_good()).then(|| v.clone())
}

/// Reads a CHK file (or `DIR2-CHK` directory) from its read cap and whole
/// shares `(share number, bytes)`.
pub fn read_chk(cap: &ChkCap, shares: &[(usize, &[u8])]) -> Result<Retrieved, ReadError> {
    let key = cap
        .key
        .ok_or_else(|| ReadError::Cap("a verify cap cannot decrypt the file".into()))?;
    let k = usize::from(cap.k);
    let mut good: Vec<(usize, &[u8], ChkHeader)> = Vec::new();
    let mut rejected = Vec::new();
    let mut params: Option<ChkParams> = None;
    for &(shnum, data) in shares {
        if good.len() == k {
            break;
        }
        if good.iter().any(|g| g.0 == shnum) {
            continue;
        }
        let (verdict, p, h) = verify_chk_share(cap, shnum, data);
        if let Some(v) = bad_verdict(&verdict) {
            rejected.push((shnum, v));
            continue;
        }
        params = p;
        good.push((shnum, data, h.expect("a good share has a header")));
    }
    if good.len() < k {
        return Err(ReadError::NotEnoughShares {
            good: good.len(),
            needed: k,
            bad: rejected.len(),
        });
    }
    let p = params.expect("a good share has parameters");
    // The crypttext hash tree of a good share checked against the UEB root.
    let h0 = &good[0].2;
    let ct = &good[0].1[h0.crypttext_hash_tree as usize..h0.block_hashes as usize];
    let ct_nodes = hashtree::split_hashes(ct).expect("verified tree");
    let ct_leaves = &ct_nodes[ct_nodes.len() / 2..];
    let mut plaintext = Vec::with_capacity(p.size as usize);
    let mut whole = TaggedHasher::new(CIPHERTEXT_TAG);
    for seg in 0..p.segments.num_segments {
        let blocks: Vec<(usize, &[u8])> = good
            .iter()
            .map(|(shnum, data, h)| {
                let start = (h.data + seg * p.segments.block_size) as usize;
                (
                    *shnum,
                    &data[start..start + p.segments.block_len(seg) as usize],
                )
            })
            .collect();
        let mut segment = p
            .segments
            .decode_segment(seg, &blocks)
            .map_err(|e| ReadError::Inconsistent(e.to_string()))?;
        // The uploader hashed each segment's ciphertext without padding.
        if crypttext_segment_hash(&segment) != ct_leaves[seg as usize] {
            return Err(ReadError::Inconsistent(format!(
                "segment {seg} does not match the crypttext hash tree"
            )));
        }
        whole.update(&segment);
        p.decrypt_segment(&key, seg, &mut segment);
        plaintext.extend_from_slice(&segment);
    }
    if let Some(h) = p.crypttext_hash {
        if whole.finalize() != h {
            return Err(ReadError::Inconsistent(
                "the ciphertext does not match crypttext_hash".into(),
            ));
        }
    }
    Ok(Retrieved {
        plaintext,
        used: good.iter().map(|g| g.0).collect(),
        rejected,
        version: None,
    })
}

/// A mutable version: (seqnum, root hash, the whole signed prefix).
type VersionKey = (u64, Hash, Vec<u8>);

/// The identity of a mutable version, ordered like Tahoe's `verinfo`
/// tuples: a higher sequence number wins, then the greater root hash; the
/// signed prefix (IV, k, N, sizes) keeps apart versions a writer signed
/// with the same two.
fn version_key(h: &MutableHeader) -> VersionKey {
    (h.seqnum, h.root_hash, h.signed_prefix.clone())
}

/// Reads a mutable file (or directory) from a read or write cap and whole
/// shares `(share number, bytes)`. Shares may hold different versions: the
/// newest version with `k` good shares is read (Tahoe's "best recoverable
/// version"), or exactly `want` = (seqnum, root hash) when given.
///
/// Shares are grouped by the version their header claims and verified
/// only until `k` of the chosen version pass (each verification checks an
/// RSA signature), so shares of versions not read are neither verified nor
/// reported.
pub fn read_mutable(
    cap: &MutableCap,
    shares: &[(usize, &[u8])],
    want: Option<(u64, Hash)>,
) -> Result<Retrieved, ReadError> {
    let readkey = cap
        .readkey
        .ok_or_else(|| ReadError::Cap("a verify cap cannot decrypt the file".into()))?;
    let mut claimed: BTreeMap<VersionKey, Vec<(usize, &[u8])>> = BTreeMap::new();
    let mut rejected = Vec::new();
    for &(shnum, data) in shares {
        match MutableHeader::parse(data) {
            Ok(h) => claimed
                .entry(version_key(&h))
                .or_default()
                .push((shnum, data)),
            // The verifier names what is wrong with it.
            Err(_) => rejected.push((shnum, verify_mutable_share(cap, shnum, data).0)),
        }
    }
    let order: Vec<&VersionKey> = claimed
        .keys()
        .rev()
        .filter(|k| want.is_none_or(|w| (k.0, k.1) == w))
        .collect();
    let mut best_good = 0;
    let mut needed = 1;
    let mut chosen: Option<Vec<(usize, &[u8], MutableHeader)>> = None;
    for key in order {
        let mut good: Vec<(usize, &[u8], MutableHeader)> = Vec::new();
        for &(shnum, data) in &claimed[key] {
            if good.iter().any(|g| g.0 == shnum) {
                continue;
            }
            let (verdict, h) = verify_mutable_share(cap, shnum, data);
            if let Some(v) = bad_verdict(&verdict) {
                rejected.push((shnum, v));
                continue;
            }
            let h = h.expect("a good share has a header");
            let k = usize::from(h.k);
            good.push((shnum, data, h));
            if good.len() == k {
                break;
            }
        }
        match good.first() {
            Some(g) if good.len() == usize::from(g.2.k) => {
                chosen = Some(good);
                break;
            }
            Some(g) if good.len() > best_good => {
                best_good = good.len();
                needed = usize::from(g.2.k);
            }
            _ => {}
        }
    }
    let Some(list) = chosen else {
        return Err(ReadError::NotEnoughShares {
            good: best_good,
            needed,
            bad: rejected.len(),
        });
    };
    let header = list[0].2.clone();
    let p: MutableParams = header.params().map_err(ReadError::Inconsistent)?;
    let good = &list[..];
    let mut plaintext = Vec::with_capacity(p.data_length as usize);
    for seg in 0..p.segments.num_segments {
        let mut salt = header.iv.unwrap_or_default();
        let mut blocks: Vec<(usize, &[u8])> = Vec::new();
        for (i, (shnum, data, h)) in good.iter().enumerate() {
            let r = p.block_range(seg).expect("verified layout");
            let bytes = &data[(h.regions.share_data.start + r.start) as usize
                ..(h.regions.share_data.start + r.end) as usize];
            let block = if p.format == Format::Mdmf {
                if i == 0 {
                    salt.copy_from_slice(&bytes[..mutable::SALT_LEN as usize]);
                }
                &bytes[mutable::SALT_LEN as usize..]
            } else {
                bytes
            };
            blocks.push((*shnum, block));
        }
        let mut segment = p
            .segments
            .decode_segment(seg, &blocks)
            .map_err(|e| ReadError::Inconsistent(e.to_string()))?;
        mutable::decrypt_segment(&readkey, &salt, &mut segment);
        plaintext.extend_from_slice(&segment);
    }
    Ok(Retrieved {
        plaintext,
        used: good.iter().map(|g| g.0).collect(),
        rejected,
        version: Some(header),
    })
}
