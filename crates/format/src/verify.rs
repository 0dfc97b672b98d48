//! Verifying one share, sans I/O: a verifier says which bytes of the share
//! it needs next, is given them, and ends with a [`Verdict`] naming the part
//! that failed. The caller does the reading (HTTP range requests to a
//! storage server, a file, a test vector) and may read more than asked; the
//! verifier never does I/O itself.
//!
//! ```text
//! let mut v = ShareVerifier::chk(&cap, shnum, share_size, VerifyOptions::default());
//! // optional: v.supply(0, &first_bytes) with what an earlier read gave
//! let verdict = loop {
//!     match v.next_step() {
//!         Step::Read(range) => { let bytes = read(range.clone())?; v.supply(range.start, &bytes); }
//!         Step::Done(verdict) => break verdict,
//!     }
//! };
//! ```
//!
//! **What is checked**, in Tahoe's order, so that a share is corrupt here
//! exactly when Tahoe's verifier finds it corrupt, with the part named:
//!
//! * CHK (`immutable/checker.py`): the URI extension block against the
//!   cap's hash (and its fields against the cap); the share hash chain
//!   against the UEB's share root (the chain includes the share's own
//!   leaf); the whole block hash tree's consistency and its root against
//!   that leaf; the crypttext hash tree against the UEB's root; every block
//!   against its leaf. The header's size fields and the plaintext hash tree
//!   are not used, as in Tahoe. Comparing the block hash tree's root with
//!   the share hash chain is one check Tahoe's verifier skips (it only finds
//!   such damage through the blocks); it can only fail when the stored tree
//!   was rewritten consistently.
//! * SDMF/MDMF (`mutable/servermap.py`, `mutable/retrieve.py`): the
//!   verification key against the cap's fingerprint; the signature of the
//!   signed header; the block hash tree's consistency; its root, as this
//!   share's leaf, through the share hash chain to the signed root hash;
//!   every block (MDMF: salt and block) against its leaf. When the block
//!   hash tree is a single node (one segment) a failure there is blamed on
//!   the tree if block 0 itself reaches the root and on the chain otherwise.
//!   The encrypted private key is not checked (a verify cap cannot).
//!   Tahoe 1.20's servermap checks the key only of the first share it
//!   sees and the signature only of the first share of each version (its
//!   `verinfo`, offsets included), so it misses a damaged key or signature
//!   in the other shares; here every share's are checked. A damaged offset
//!   table makes Tahoe see another, unrecoverable version; here the share is
//!   corrupt in the part the offsets misplace ([`MutableHeader::regions`]
//!   gives the offsets, to group shares as Tahoe does).
//!
//! **Hostile servers.** Offsets and lengths read from a share are checked
//! against the share's real size (an input) before anything is read or
//! allocated, and against the sizes the cap and the checked header fix, so
//! no share can make a verifier ask for or hold more than the share's size;
//! hash trees whose size the cap fixes must have exactly that size. A reply
//! shorter than asked is reported as a truncated share. Nothing panics on
//! any input: every problem is a [`Verdict`].
//!
//! **Memory.** Besides what the caller supplies (at most
//! [`VerifyOptions::max_read`] bytes per request, or what the caller chose
//! to prefetch), a verifier holds the share's hash trees, 32 bytes per
//! segment and per share, never the file's data.

use crate::chk::{ChkCap, ChkHeader, ChkHeaderError, ChkParams};
use crate::hashtree::{self, Hash, IncompleteHashTree, HASH_LEN};
use crate::mutable::{self, MutableCap, MutableHeader, MutableHeaderError, MutableParams};
use crate::uri_extension::{self, UriExtension};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use steward_cap::hash::block_hash;

/// What a verifier wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read these bytes of the share (never past its size) and
    /// [`supply`](ShareVerifier::supply) them.
    Read(Range<u64>),
    /// Finished.
    Done(Verdict),
}

/// The outcome for one share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every part checked.
    Good,
    /// A part failed (Tahoe lists the share in `list-corrupt-shares`).
    Corrupt(Corruption),
    /// A share layout version this code does not know (Tahoe lists the
    /// share in `list-incompatible-shares`, not as corrupt).
    Incompatible(String),
}

impl Verdict {
    /// Whether the share passed.
    pub fn is_good(&self) -> bool {
        matches!(self, Verdict::Good)
    }
}

/// Which part of a share failed, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The part.
    pub part: SharePart,
    /// What was wrong, for a report (never contains share data or keys).
    pub detail: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.part, self.detail)
    }
}

/// The parts of a share a verifier tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SharePart {
    /// The version and offset table (or the share is too short for one).
    Header,
    /// CHK: the URI extension block (or its length field).
    UriExtension,
    /// The share hash chain.
    ShareHashChain,
    /// The block hash tree.
    BlockHashTree,
    /// CHK: the crypttext hash tree.
    CrypttextHashTree,
    /// A block (MDMF: with its salt).
    BlockData {
        /// The segment number.
        segment: u64,
    },
    /// Mutable: the verification key.
    VerificationKey,
    /// Mutable: the signature of the signed header.
    Signature,
}

impl fmt::Display for SharePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharePart::Header => f.write_str("header"),
            SharePart::UriExtension => f.write_str("URI extension block"),
            SharePart::ShareHashChain => f.write_str("share hash chain"),
            SharePart::BlockHashTree => f.write_str("block hash tree"),
            SharePart::CrypttextHashTree => f.write_str("crypttext hash tree"),
            SharePart::BlockData { segment } => write!(f, "block data of segment {segment}"),
            SharePart::VerificationKey => f.write_str("verification key"),
            SharePart::Signature => f.write_str("signature"),
        }
    }
}

/// How a verifier batches its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The most bytes one [`Step::Read`] asks for when it can choose (runs
    /// of blocks, hash regions read together); a single part larger than
    /// this (one block) is still asked for whole.
    pub max_read: u64,
    /// Shares up to this size are asked for whole in the first read, so a
    /// small share (a directory, a small file) takes one round trip.
    pub whole_share_up_to: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_read: 1 << 20,
            whole_share_up_to: 64 << 10,
        }
    }
}

/// The first read of a mutable share when it is not read whole: enough for
/// the header, keys, signature and (SDMF) hashes of a share with an
/// RSA-2048 key.
const MUTABLE_HEAD_READ: u64 = 4096;
/// The longest verification key or signature accepted (RSA-2048 keys are
/// 294 bytes and signatures 256; Tahoe has never made keys above 4096
/// bits).
const MAX_KEY_FIELD: u64 = 16 << 10;

/// The bytes supplied last, and which request they answer.
#[derive(Debug)]
struct Buffer {
    size: u64,
    opts: VerifyOptions,
    start: u64,
    data: Vec<u8>,
    requested: Option<Range<u64>>,
    answered: bool,
    bytes_requested: u64,
    reads: u64,
}

/// What a state needs: bytes read as `read` (a superset of what it
/// needs), and the part they belong to, to blame if the reply falls short.
struct Need {
    read: Range<u64>,
    part: SharePart,
}

enum Progress {
    Need(Need),
    Done(Verdict),
}

fn corrupt(part: SharePart, detail: impl Into<String>) -> Progress {
    Progress::Done(Verdict::Corrupt(Corruption {
        part,
        detail: detail.into(),
    }))
}

impl Buffer {
    fn new(size: u64, opts: VerifyOptions) -> Buffer {
        Buffer {
            size,
            opts,
            start: 0,
            data: Vec::new(),
            requested: None,
            answered: false,
            bytes_requested: 0,
            reads: 0,
        }
    }

    fn get(&self, r: &Range<u64>) -> Option<&[u8]> {
        if r.start == r.end {
            return Some(&[]);
        }
        let end = self.start + self.data.len() as u64;
        if r.start >= self.start && r.end <= end && r.start <= r.end {
            Some(&self.data[(r.start - self.start) as usize..(r.end - self.start) as usize])
        } else {
            None
        }
    }

    fn supply(&mut self, offset: u64, data: &[u8]) {
        let room = self.size.saturating_sub(offset);
        let keep = (data.len() as u64).min(room) as usize;
        let mut owned = std::mem::take(&mut self.data);
        owned.clear();
        owned.extend_from_slice(&data[..keep]);
        self.supply_owned(offset, owned);
    }

    fn supply_owned(&mut self, offset: u64, mut data: Vec<u8>) {
        // Keep only what lies inside the share: a server that sends more
        // than the share's size cannot make us hold more.
        let room = self.size.saturating_sub(offset);
        data.truncate((data.len() as u64).min(room) as usize);
        self.start = offset;
        self.data = data;
        self.answered = self.requested.is_some();
    }

    /// Turns a state's need into the next step: the bytes are missing, so
    /// read them, unless they were just asked for and the reply fell short.
    fn step_for(&mut self, n: Need) -> Result<Step, Verdict> {
        if self.answered && self.requested.as_ref() == Some(&n.read) {
            let got = self.start + self.data.len() as u64;
            return Err(Verdict::Corrupt(Corruption {
                part: n.part,
                detail: format!(
                    "the server returned bytes {}..{} of the {}-byte share where {}..{} was asked: the share is truncated",
                    self.start, got.max(self.start), self.size, n.read.start, n.read.end
                ),
            }));
        }
        self.requested = Some(n.read.clone());
        self.answered = false;
        self.bytes_requested += n.read.end - n.read.start;
        self.reads += 1;
        Ok(Step::Read(n.read))
    }

    /// `need`, read whole; or with `span` if that covers it and is not too
    /// long.
    fn need(&self, need: Range<u64>, span: Option<Range<u64>>, part: SharePart) -> Need {
        let read = match span {
            Some(s)
                if s.start <= need.start
                    && s.end >= need.end
                    && s.end <= self.size
                    && s.end - s.start <= self.opts.max_read =>
            {
                s
            }
            _ => need.clone(),
        };
        Need { read, part }
    }

    /// Checks that `r` is a sane range inside the share.
    fn inside(&self, r: &Range<u64>) -> bool {
        r.start <= r.end && r.end <= self.size
    }
}

/// Checks a whole stored tree (all its nodes) for consistency, with a
/// known root if given; returns its leaves.
fn check_stored_tree(
    data: &[u8],
    num_leaves: u64,
    root: Option<Hash>,
) -> Result<Vec<Hash>, String> {
    let nodes = hashtree::split_hashes(data).ok_or("not a whole number of hashes")?;
    let len = hashtree::tree_len(num_leaves).ok_or("too many segments")?;
    if nodes.len() as u64 != len {
        return Err(format!("{} hashes where the tree has {len}", nodes.len()));
    }
    hashtree::check_complete(&nodes, root.as_ref()).map_err(|e| e.to_string())?;
    let first = nodes.len() / 2;
    Ok(nodes[first..first + num_leaves as usize].to_vec())
}

/// Checks the place of a share hash chain: inside the share, whole 34-byte
/// entries, no more entries than a tree over `n` shares has nodes.
fn check_chain_region(buf: &Buffer, r: &Range<u64>, n: u64) -> Result<(), Progress> {
    let part = SharePart::ShareHashChain;
    if !buf.inside(r) {
        return Err(corrupt(
            part,
            format!(
                "its offsets {}..{} lie outside the {}-byte share",
                r.start, r.end, buf.size
            ),
        ));
    }
    let entry = 2 + HASH_LEN as u64;
    let len = r.end - r.start;
    let max_entries = hashtree::tree_len(n).unwrap_or(u64::MAX);
    if !len.is_multiple_of(entry) || len / entry > max_entries {
        return Err(corrupt(
            part,
            format!("it is {len} bytes, not a plausible number of 34-byte entries"),
        ));
    }
    Ok(())
}

/// Checks that a stored hash tree lies inside the share with exactly the
/// size its segment count fixes.
fn check_tree_region(
    buf: &Buffer,
    r: &Range<u64>,
    expected: Option<u64>,
    part: SharePart,
) -> Result<(), Progress> {
    match expected {
        Some(b) if buf.inside(r) && r.end - r.start == b => Ok(()),
        _ => Err(corrupt(
            part,
            format!(
                "it occupies {}..{} of the {}-byte share where {} bytes are expected",
                r.start,
                r.end,
                buf.size,
                expected.map_or("too many".to_string(), |b| b.to_string())
            ),
        )),
    }
}

/// Checks blocks `*next..count` (where block `s` lies at `range_of(s)`)
/// against `leaves` as far as the buffer holds them. `Ok(())` when all are
/// checked; else what to read next (a run of blocks up to `max_read`) or
/// the verdict. `pending` decides a single-node block tree's blame at
/// block 0 (mutable shares).
fn check_blocks(
    buf: &Buffer,
    next: &mut u64,
    count: u64,
    range_of: impl Fn(u64) -> Option<Range<u64>>,
    leaves: &[Hash],
    pending: Option<&dyn Fn(Hash) -> Progress>,
) -> Result<(), Progress> {
    while *next < count {
        let part = SharePart::BlockData { segment: *next };
        let Some(r) = range_of(*next) else {
            return Err(corrupt(part, "its offset overflows"));
        };
        if r.end > buf.size {
            return Err(corrupt(
                part,
                format!(
                    "it lies at {}..{}, past the end of the {}-byte share",
                    r.start, r.end, buf.size
                ),
            ));
        }
        let Some(bytes) = buf.get(&r) else {
            let mut end = r.end;
            for s in *next + 1..count {
                match range_of(s) {
                    Some(x) if x.end <= buf.size && x.end - r.start <= buf.opts.max_read => {
                        end = x.end
                    }
                    _ => break,
                }
            }
            return Err(Progress::Need(buf.need(
                r.clone(),
                Some(r.start..end),
                part,
            )));
        };
        // MDMF ranges start with the salt: the leaf is the hash of salt and
        // block together.
        let leaf = block_hash(bytes);
        if let Some(decide) = pending {
            return Err(decide(leaf));
        }
        if leaf != leaves[*next as usize] {
            return Err(corrupt(part, "its hash is not the block hash tree's leaf"));
        }
        *next += 1;
    }
    Ok(())
}

/// Gets the bytes `r` from the buffer, or says to read them (with `span` if
/// that is a sensible superset).
fn want<'b>(
    buf: &'b Buffer,
    r: &Range<u64>,
    span: Option<Range<u64>>,
    part: SharePart,
) -> Result<&'b [u8], Progress> {
    buf.get(r)
        .ok_or_else(|| Progress::Need(buf.need(r.clone(), span, part)))
}

/// Verifies one share (see the module docs): a CHK share with
/// [`ShareVerifier::chk`], an SDMF or MDMF one with
/// [`ShareVerifier::mutable`].
pub struct ShareVerifier {
    buf: Buffer,
    machine: Machine,
    done: Option<Verdict>,
}

enum Machine {
    Chk(Box<ChkMachine>),
    Mutable(Box<MutableMachine>),
}

impl ShareVerifier {
    /// A verifier for share `shnum`, `share_size` bytes long (as the server
    /// reports it, e.g. in a `Content-Range` header), of the CHK file `cap`
    /// names.
    pub fn chk(cap: &ChkCap, shnum: usize, share_size: u64, opts: VerifyOptions) -> ShareVerifier {
        ShareVerifier {
            buf: Buffer::new(share_size, opts),
            machine: Machine::Chk(Box::new(ChkMachine {
                cap: cap.clone(),
                shnum,
                stage: ChkStage::Header,
                header: None,
                params: None,
                share_leaf: [0; 32],
                ueb: 0..0,
                ueb_span: 0..0,
                leaves: Vec::new(),
                next: 0,
            })),
            done: None,
        }
    }

    /// A verifier for share `shnum`, `share_size` bytes long, of the SDMF or
    /// MDMF file `cap` names (any authority).
    pub fn mutable(
        cap: &MutableCap,
        shnum: usize,
        share_size: u64,
        opts: VerifyOptions,
    ) -> ShareVerifier {
        ShareVerifier {
            buf: Buffer::new(share_size, opts),
            machine: Machine::Mutable(Box::new(MutableMachine {
                cap: cap.clone(),
                shnum,
                stage: MutStage::Header,
                header: None,
                params: None,
                key: Vec::new(),
                chain: BTreeMap::new(),
                leaves: Vec::new(),
                pending: false,
                next: 0,
            })),
            done: None,
        }
    }

    /// Gives the verifier bytes of the share starting at `offset`: the reply
    /// to the last [`Step::Read`] (a reply that does not cover the range
    /// asked means the share is truncated), or, before the first step, any
    /// prefix the caller already read. Only the latest bytes are kept.
    pub fn supply(&mut self, offset: u64, data: &[u8]) {
        self.buf.supply(offset, data);
    }

    /// As [`ShareVerifier::supply`], taking the bytes without copying them:
    /// with [`ShareVerifier::take_buffer`], one buffer serves every read of
    /// a share, however large the share.
    pub fn supply_owned(&mut self, offset: u64, data: Vec<u8>) {
        self.buf.supply_owned(offset, data);
    }

    /// The buffer holding the bytes supplied last, emptied (its capacity
    /// kept): for the caller to read the next [`Step::Read`] into and give
    /// back with [`ShareVerifier::supply_owned`]. Call it after
    /// [`ShareVerifier::next_step`] (the bytes are not needed any more
    /// once it has asked for the next ones).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.buf.data);
        data.clear();
        data
    }

    /// The next step: bytes to read, or the verdict.
    pub fn next_step(&mut self) -> Step {
        loop {
            if let Some(v) = &self.done {
                return Step::Done(v.clone());
            }
            let progress = match &mut self.machine {
                Machine::Chk(m) => m.advance(&self.buf).err(),
                Machine::Mutable(m) => m.advance(&self.buf).err(),
            };
            match progress {
                None => continue,
                Some(Progress::Done(v)) => self.done = Some(v),
                Some(Progress::Need(n)) => match self.buf.step_for(n) {
                    Ok(step) => return step,
                    Err(v) => self.done = Some(v),
                },
            }
        }
    }

    /// Bytes asked for so far.
    pub fn bytes_requested(&self) -> u64 {
        self.buf.bytes_requested
    }

    /// Reads asked for so far.
    pub fn reads(&self) -> u64 {
        self.buf.reads
    }

    /// CHK: the share's header, once read.
    pub fn chk_header(&self) -> Option<&ChkHeader> {
        match &self.machine {
            Machine::Chk(m) => m.header.as_ref(),
            Machine::Mutable(_) => None,
        }
    }

    /// CHK: the file's parameters, once the URI extension block checked.
    pub fn chk_params(&self) -> Option<&ChkParams> {
        match &self.machine {
            Machine::Chk(m) => m.params.as_ref(),
            Machine::Mutable(_) => None,
        }
    }

    /// Mutable: the share's header once parsed, which says the version
    /// (seqnum, root hash) it holds. Trust it only once the signature has
    /// checked (a verdict other than a corrupt header, key or signature).
    pub fn mutable_header(&self) -> Option<&MutableHeader> {
        match &self.machine {
            Machine::Mutable(m) => m.header.as_ref(),
            Machine::Chk(_) => None,
        }
    }
}

// ------------------------------------------------------------------ CHK

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChkStage {
    Header,
    UebLength,
    UebBody,
    ShareHashes,
    BlockHashes,
    CrypttextHashes,
    Blocks,
}

struct ChkMachine {
    cap: ChkCap,
    shnum: usize,
    stage: ChkStage,
    header: Option<ChkHeader>,
    params: Option<ChkParams>,
    /// This share's leaf in the share hash tree, once the chain checked.
    share_leaf: Hash,
    /// Where the UEB lies, and the read that brings it (and the hashes).
    ueb: Range<u64>,
    ueb_span: Range<u64>,
    /// The block hash tree's leaves, once checked.
    leaves: Vec<Hash>,
    /// The next block to check.
    next: u64,
}

impl ChkMachine {
    /// Runs the current stage: `Ok` if it moved on, else what it needs or
    /// the verdict.
    fn advance(&mut self, buf: &Buffer) -> Result<(), Progress> {
        let size = buf.size;
        match self.stage {
            ChkStage::Header => {
                if size < 4 {
                    return Err(corrupt(
                        SharePart::Header,
                        format!("share is only {size} bytes"),
                    ));
                }
                let need = 0..size.min(crate::chk::V2_HEADER_LEN);
                let span = (size <= buf.opts.whole_share_up_to).then_some(0..size);
                match ChkHeader::parse(want(buf, &need, span, SharePart::Header)?) {
                    Ok(h) => self.header = Some(h),
                    Err(ChkHeaderError::UnknownVersion(v)) => {
                        return Err(Progress::Done(Verdict::Incompatible(format!(
                            "unknown immutable share version {v}"
                        ))))
                    }
                    Err(e) => return Err(corrupt(SharePart::Header, e.to_string())),
                }
                self.stage = ChkStage::UebLength;
            }
            ChkStage::UebLength => {
                let h = self.header.as_ref().expect("header read");
                let part = SharePart::UriExtension;
                let Some(len_end) = h
                    .uri_extension
                    .checked_add(h.field_size())
                    .filter(|&e| e <= size)
                else {
                    return Err(corrupt(
                        part,
                        format!(
                            "its length field at {} lies past the end of the {size}-byte share",
                            h.uri_extension
                        ),
                    ));
                };
                let most = size.min(len_end + uri_extension::MAX_LEN);
                // One read for the UEB and, when small, all the hash trees.
                self.ueb_span = if h.crypttext_hash_tree <= h.uri_extension
                    && most - h.crypttext_hash_tree <= buf.opts.max_read
                {
                    h.crypttext_hash_tree..most
                } else {
                    h.uri_extension..most
                };
                let len_bytes = want(
                    buf,
                    &(h.uri_extension..len_end),
                    Some(self.ueb_span.clone()),
                    part,
                )?;
                let len = len_bytes.iter().fold(0u64, |a, &b| (a << 8) | b as u64);
                if len > uri_extension::MAX_LEN {
                    return Err(corrupt(
                        part,
                        format!(
                            "its length field says {len} bytes (at most {} are plausible)",
                            uri_extension::MAX_LEN
                        ),
                    ));
                }
                if len_end + len > size {
                    return Err(corrupt(
                        part,
                        format!("its {len} bytes run past the end of the {size}-byte share"),
                    ));
                }
                self.ueb = len_end..len_end + len;
                self.stage = ChkStage::UebBody;
            }
            ChkStage::UebBody => {
                let part = SharePart::UriExtension;
                let ueb = want(buf, &self.ueb, Some(self.ueb_span.clone()), part)?;
                if steward_cap::hash::uri_extension_hash(ueb) != self.cap.ueb_hash {
                    return Err(corrupt(
                        part,
                        "its hash does not match the cap's URI extension hash",
                    ));
                }
                let params = UriExtension::parse(ueb)
                    .and_then(|u| ChkParams::from_ueb(&self.cap, &u))
                    .map_err(|e| {
                        corrupt(part, format!("it matches the cap but is unusable: {e}"))
                    })?;
                self.params = Some(params);
                self.stage = ChkStage::ShareHashes;
            }
            ChkStage::ShareHashes => {
                let part = SharePart::ShareHashChain;
                let (h, p) = (
                    self.header.as_ref().expect("header"),
                    self.params.as_ref().expect("params"),
                );
                let r = h.share_hashes..h.uri_extension;
                check_chain_region(buf, &r, u64::from(p.segments.n))?;
                let span = (h.crypttext_hash_tree <= h.block_hashes
                    && h.block_hashes <= h.share_hashes)
                    .then_some(h.crypttext_hash_tree..h.uri_extension);
                let chain = hashtree::parse_share_hash_chain(want(buf, &r, span, part)?)
                    .expect("length checked");
                if self.shnum >= usize::from(p.segments.n) {
                    return Err(corrupt(
                        part,
                        format!(
                            "share number {} is not below N={}",
                            self.shnum, p.segments.n
                        ),
                    ));
                }
                let mut tree =
                    IncompleteHashTree::new(usize::from(p.segments.n)).expect("N <= 256");
                tree.set_hashes(&BTreeMap::from([(0, p.share_root_hash)]), &BTreeMap::new())
                    .expect("the root of an empty tree");
                tree.set_hashes(&chain, &BTreeMap::new()).map_err(|e| {
                    corrupt(part, format!("it does not lead to the share root: {e}"))
                })?;
                self.share_leaf = *tree
                    .leaf(self.shnum)
                    .ok_or_else(|| corrupt(part, "it lacks this share's own hash"))?;
                self.stage = ChkStage::BlockHashes;
            }
            ChkStage::BlockHashes => {
                let part = SharePart::BlockHashTree;
                let (h, p) = (
                    self.header.as_ref().expect("header"),
                    self.params.as_ref().expect("params"),
                );
                let r = h.block_hashes..h.share_hashes;
                check_tree_region(buf, &r, p.segments.tree_bytes(), part)?;
                let bytes = want(buf, &r, None, part)?;
                let leaves =
                    check_stored_tree(bytes, p.segments.num_segments, Some(self.share_leaf))
                        .map_err(|e| {
                            corrupt(
                                part,
                                format!(
                                    "it is inconsistent or its root is not this share's hash: {e}"
                                ),
                            )
                        })?;
                self.leaves = leaves;
                self.stage = ChkStage::CrypttextHashes;
            }
            ChkStage::CrypttextHashes => {
                let part = SharePart::CrypttextHashTree;
                let (h, p) = (
                    self.header.as_ref().expect("header"),
                    self.params.as_ref().expect("params"),
                );
                let r = h.crypttext_hash_tree..h.block_hashes;
                check_tree_region(buf, &r, p.segments.tree_bytes(), part)?;
                let bytes = want(buf, &r, None, part)?;
                check_stored_tree(bytes, p.segments.num_segments, Some(p.crypttext_root_hash))
                    .map_err(|e| {
                        corrupt(
                            part,
                            format!("it does not match the URI extension block's root: {e}"),
                        )
                    })?;
                self.stage = ChkStage::Blocks;
            }
            ChkStage::Blocks => {
                let (h, p) = (
                    self.header.as_ref().expect("header"),
                    self.params.as_ref().expect("params"),
                );
                let range_of = |seg: u64| {
                    let start = seg
                        .checked_mul(p.segments.block_size)?
                        .checked_add(h.data)?;
                    Some(start..start.checked_add(p.segments.block_len(seg))?)
                };
                check_blocks(
                    buf,
                    &mut self.next,
                    p.segments.num_segments,
                    range_of,
                    &self.leaves,
                    None,
                )?;
                return Err(Progress::Done(Verdict::Good));
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ mutable

#[derive(Clone, Copy, PartialEq, Eq)]
enum MutStage {
    Header,
    Key,
    Signature,
    Chain,
    BlockTree,
    Blocks,
}

struct MutableMachine {
    cap: MutableCap,
    shnum: usize,
    stage: MutStage,
    header: Option<MutableHeader>,
    params: Option<MutableParams>,
    /// The verification key, once it matched the fingerprint.
    key: Vec<u8>,
    chain: BTreeMap<usize, Hash>,
    leaves: Vec<Hash>,
    /// A single-node block tree whose root failed the chain: blame is
    /// decided at block 0.
    pending: bool,
    next: u64,
}

impl MutableMachine {
    fn chain_reaches_root(&self, leaf: Hash) -> Result<(), String> {
        let h = self.header.as_ref().expect("header");
        let mut tree = IncompleteHashTree::new(usize::from(h.n)).ok_or("bad N")?;
        tree.set_hashes(&BTreeMap::from([(0, h.root_hash)]), &BTreeMap::new())
            .map_err(|e| e.to_string())?;
        tree.set_hashes(&self.chain, &BTreeMap::from([(self.shnum, leaf)]))
            .map_err(|e| e.to_string())
    }

    fn chain_failure(e: String) -> Progress {
        corrupt(
            SharePart::ShareHashChain,
            format!("it does not lead to the signed root hash: {e}"),
        )
    }

    /// Runs the current stage: `Ok` if it moved on, else what it needs or
    /// the verdict.
    fn advance(&mut self, buf: &Buffer) -> Result<(), Progress> {
        let size = buf.size;
        match self.stage {
            MutStage::Header => {
                if size == 0 {
                    return Err(corrupt(SharePart::Header, "share is empty"));
                }
                let head = 0..size.min(mutable::MDMF_HEADER_LEN);
                let span = if size <= buf.opts.whole_share_up_to {
                    0..size
                } else {
                    0..size.min(MUTABLE_HEAD_READ)
                };
                match MutableHeader::parse(want(buf, &head, Some(span), SharePart::Header)?) {
                    Ok(h) => self.header = Some(h),
                    Err(MutableHeaderError::UnknownVersion(v)) => {
                        return Err(Progress::Done(Verdict::Incompatible(format!(
                            "unknown mutable share version {v}"
                        ))))
                    }
                    Err(e) => return Err(corrupt(SharePart::Header, e.to_string())),
                }
                self.stage = MutStage::Key;
            }
            MutStage::Key => {
                let h = self.header.as_ref().expect("header");
                let (vk, sig) = (&h.regions.verification_key, &h.regions.signature);
                for (r, part) in [
                    (vk, SharePart::VerificationKey),
                    (sig, SharePart::Signature),
                ] {
                    if !buf.inside(r) || r.end - r.start > MAX_KEY_FIELD {
                        return Err(corrupt(
                            part,
                            format!(
                                "its offsets {}..{} are implausible for a {size}-byte share",
                                r.start, r.end
                            ),
                        ));
                    }
                }
                let span = vk.start.min(sig.start)..vk.end.max(sig.end);
                let key = want(buf, vk, Some(span), SharePart::VerificationKey)?;
                if !mutable::pubkey_matches_fingerprint(key, &self.cap.fingerprint) {
                    return Err(corrupt(
                        SharePart::VerificationKey,
                        "it does not hash to the cap's fingerprint",
                    ));
                }
                self.key = key.to_vec();
                self.stage = MutStage::Signature;
            }
            MutStage::Signature => {
                let h = self.header.as_ref().expect("header");
                let signature = want(buf, &h.regions.signature, None, SharePart::Signature)?;
                mutable::verify_signature(&self.key, signature, &h.signed_prefix)
                    .map_err(|e| corrupt(SharePart::Signature, e))?;
                let params = h.params().map_err(|e| {
                    corrupt(
                        SharePart::Header,
                        format!("the signed header is unusable: {e}"),
                    )
                })?;
                self.params = Some(params);
                self.stage = MutStage::Chain;
            }
            MutStage::Chain => {
                let h = self.header.as_ref().expect("header");
                let r = &h.regions.share_hash_chain;
                check_chain_region(buf, r, u64::from(h.n))?;
                let bht = &h.regions.block_hash_tree;
                let span =
                    (r.start <= bht.start && bht.start <= bht.end).then_some(r.start..bht.end);
                let bytes = want(buf, r, span, SharePart::ShareHashChain)?;
                self.chain = hashtree::parse_share_hash_chain(bytes).expect("length checked");
                self.stage = MutStage::BlockTree;
            }
            MutStage::BlockTree => {
                let part = SharePart::BlockHashTree;
                let (h, p) = (
                    self.header.as_ref().expect("header"),
                    self.params.as_ref().expect("params"),
                );
                let r = &h.regions.block_hash_tree;
                check_tree_region(buf, r, p.segments.tree_bytes(), part)?;
                let bytes = want(buf, r, None, part)?;
                let leaves = check_stored_tree(bytes, p.segments.num_segments, None)
                    .map_err(|e| corrupt(part, format!("it is inconsistent: {e}")))?;
                let root: Hash = bytes[..HASH_LEN].try_into().expect("a tree has a root");
                let single_node = bytes.len() == HASH_LEN;
                let num_segments = p.segments.num_segments;
                if usize::from(h.n) <= self.shnum {
                    return Err(corrupt(
                        SharePart::ShareHashChain,
                        format!("share number {} is not below N={}", self.shnum, h.n),
                    ));
                }
                self.leaves = leaves;
                match self.chain_reaches_root(root) {
                    Ok(()) => {}
                    Err(e) if !single_node => return Err(Self::chain_failure(e)),
                    // An empty file's tree is padding leaf 0: known.
                    Err(_) if num_segments == 0 && root != hashtree::empty_leaf_hash(0) => {
                        return Err(corrupt(
                            part,
                            "the empty file's tree is not the padding leaf",
                        ))
                    }
                    Err(e) if num_segments == 0 => return Err(Self::chain_failure(e)),
                    Err(_) => self.pending = true,
                }
                self.stage = MutStage::Blocks;
            }
            MutStage::Blocks => {
                let (h, p) = (
                    self.header.as_ref().expect("header"),
                    self.params.as_ref().expect("params"),
                );
                let base = h.regions.share_data.start;
                let range_of = |seg: u64| {
                    let r = p.block_range(seg)?;
                    Some(base.checked_add(r.start)?..base.checked_add(r.end)?)
                };
                let decide = |leaf: Hash| match self.chain_reaches_root(leaf) {
                    Ok(()) => corrupt(
                        SharePart::BlockHashTree,
                        "its root is not the hash of the share's only block",
                    ),
                    Err(e) => Self::chain_failure(e),
                };
                let pending: Option<&dyn Fn(Hash) -> Progress> =
                    if self.pending { Some(&decide) } else { None };
                let mut next = self.next;
                let result = check_blocks(
                    buf,
                    &mut next,
                    p.segments.num_segments,
                    range_of,
                    &self.leaves,
                    pending,
                );
                self.next = next;
                result?;
                return Err(Progress::Done(Verdict::Good));
            }
        }
        Ok(())
    }
}

/// Runs a verifier over a whole share held in memory.
fn run_in_memory(mut v: ShareVerifier, share: &[u8]) -> (Verdict, ShareVerifier) {
    v.supply(0, share);
    let verdict = loop {
        match v.next_step() {
            Step::Read(r) => v.supply(r.start, &share[r.start as usize..r.end as usize]),
            Step::Done(verdict) => break verdict,
        }
    };
    (verdict, v)
}

/// Verifies a whole CHK share held in memory: the verdict, and (when they
/// were reached) the file's parameters and the share's header.
pub fn verify_chk_share(
    cap: &ChkCap,
    shnum: usize,
    share: &[u8],
) -> (Verdict, Option<ChkParams>, Option<ChkHeader>) {
    let v = ShareVerifier::chk(cap, shnum, share.len() as u64, VerifyOptions::default());
    let (verdict, v) = run_in_memory(v, share);
    (verdict, v.chk_params().cloned(), v.chk_header().cloned())
}

/// Verifies a whole SDMF or MDMF share held in memory: the verdict, and
/// the share's header when it parsed.
pub fn verify_mutable_share(
    cap: &MutableCap,
    shnum: usize,
    share: &[u8],
) -> (Verdict, Option<MutableHeader>) {
    let v = ShareVerifier::mutable(cap, shnum, share.len() as u64, VerifyOptions::default());
    let (verdict, v) = run_in_memory(v, share);
    (verdict, v.mutable_header().cloned())
}
