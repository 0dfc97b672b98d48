//! How a file is cut into segments and each segment into blocks, the same
//! for CHK and mutable files: every segment but the last holds
//! `segment_size` bytes (a multiple of `k`); the last holds the rest and is
//! padded with zeros to a multiple of `k`; each segment is split into `k`
//! equal blocks and erasure-coded into `n`, one block per share.

use crate::hashtree;
use crate::zfec::{Fec, FecError};

/// The segments and blocks of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segments {
    /// Shares needed.
    pub k: u16,
    /// Shares made.
    pub n: u16,
    /// Bytes of plaintext per segment.
    pub segment_size: u64,
    /// Segments (0 only for an empty mutable file).
    pub num_segments: u64,
    /// Bytes of every block but the last.
    pub block_size: u64,
    /// Bytes of the last block.
    pub tail_block_size: u64,
    /// Bytes of plaintext in the last segment.
    pub tail_data_size: u64,
}

impl Segments {
    /// Bytes of block `segnum`.
    pub fn block_len(&self, segnum: u64) -> u64 {
        if segnum + 1 == self.num_segments {
            self.tail_block_size
        } else {
            self.block_size
        }
    }

    /// Bytes of plaintext in segment `segnum`.
    pub fn segment_len(&self, segnum: u64) -> u64 {
        if segnum + 1 == self.num_segments {
            self.tail_data_size
        } else {
            self.segment_size
        }
    }

    /// Bytes of a stored tree with one leaf per segment (a block hash tree,
    /// a CHK crypttext hash tree); `None` if the segment count is absurd.
    pub fn tree_bytes(&self) -> Option<u64> {
        hashtree::tree_len(self.num_segments)?.checked_mul(hashtree::HASH_LEN as u64)
    }

    /// Decodes segment `segnum` from at least `k` of its blocks
    /// `(share number, block)` (MDMF: without salts), all already checked
    /// against their block hash trees: the segment's ciphertext, padding
    /// removed.
    pub fn decode_segment(
        &self,
        segnum: u64,
        blocks: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, FecError> {
        let fec = Fec::new(usize::from(self.k), usize::from(self.n))?;
        let mut out: Vec<u8> = fec.decode(blocks)?.concat();
        out.truncate(self.segment_len(segnum) as usize);
        Ok(out)
    }
}
