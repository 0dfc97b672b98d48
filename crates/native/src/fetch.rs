//! Reading share contents: whole shares (a directory's, to decode it) and
//! shares walked through a sans-IO verifier ([`steward_format::verify`]),
//! over ranged `GET`s, within a process-wide budget of share bytes held.
//!
//! **Share sizes.** Tahoe's storage server answers a range with
//! `Content-Range: bytes a-b/*`, without the share's length, so the size
//! is learnt from a reply shorter than asked (the share ended there), or,
//! for a share longer than the first read, from its own layout: an
//! immutable share ends with its URI extension block (read at the offset
//! its header gives, where the reply falls short), a mutable one where
//! the last region of its offset table ends. Neither is trusted: a size
//! too large only makes a later read come back short, which the verifier
//! reports as a truncated share; nothing is ever allocated from a size
//! (buffers grow with the bytes that arrive, and each read asks for at
//! most [`READ_CHUNK`] or one block, whose size the cap or the signed
//! header fixes).
//!
//! **Memory.** Reads take their length from [`ReadBudget`] (a semaphore
//! of bytes, shared by every object being read or verified) before they
//! are sent and give it back once the bytes are consumed, so verifying
//! any number of large files at once holds at most the budget in share
//! data, whatever the files' sizes. A share being verified is read into
//! one buffer, handed back and forth between the verifier and the HTTP
//! body ([`ReadBudget::take_for`]): no copy, and no new allocation per
//! read, and a kept buffer counts against the budget whole or is freed.

use crate::server::{Failure, Server, ShareBytes, ShareKind};
use crate::NativeBackend;
use std::ops::Range;
use steward_cap::StorageIndex;
use steward_format::chk::ChkHeader;
use steward_format::mutable::MutableHeader;
use steward_format::uri_extension;
use steward_format::verify::{ShareVerifier, Step, Verdict};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The most bytes one read of a whole share asks for.
pub(crate) const READ_CHUNK: u64 = 1 << 20;
/// Share bytes held at once by the whole process, in reads in flight and
/// verifier buffers (each read holds its length until consumed).
pub(crate) const BUDGET_BYTES: u64 = 32 << 20;
/// Shares up to this size are read whole when verified.
const SMALL_SHARE: u64 = 64 << 10;
/// The budget's unit.
const BUDGET_UNIT: u64 = 1024;

/// The budget of share bytes in flight (see the module docs).
pub(crate) struct ReadBudget(Semaphore);

impl ReadBudget {
    pub(crate) fn new() -> ReadBudget {
        ReadBudget(Semaphore::new((BUDGET_BYTES / BUDGET_UNIT) as usize))
    }

    fn units(len: u64) -> u32 {
        // A read longer than the whole budget (one huge block) waits for
        // all of it.
        len.div_ceil(BUDGET_UNIT)
            .clamp(1, BUDGET_BYTES / BUDGET_UNIT) as u32
    }

    async fn take(&self, len: u64) -> SemaphorePermit<'_> {
        self.0
            .acquire_many(Self::units(len))
            .await
            .expect("never closed")
    }

    /// The budget for a read of `len` bytes into `buf`, and the buffer
    /// to read into, with room for `len`. A buffer whose capacity is
    /// kept is counted whole: when the budget cannot cover it at once,
    /// it is freed and a new one made once the read's own bytes are
    /// granted, so no buffer waits for the budget while holding memory
    /// the budget does not count.
    async fn take_for(&self, len: u64, mut buf: Vec<u8>) -> (Vec<u8>, SemaphorePermit<'_>) {
        buf.clear();
        let held = len.max(buf.capacity() as u64);
        let permit = match self.0.try_acquire_many(Self::units(held)) {
            Ok(p) => p,
            Err(_) => {
                buf = Vec::new();
                self.take(len).await
            }
        };
        // `len` is what this process asked for, never a size a server
        // stated, and the budget covers it.
        buf.reserve_exact(usize::try_from(len).unwrap_or(0));
        (buf, permit)
    }

    /// Bytes of the budget not taken (for tests).
    #[cfg(test)]
    fn free(&self) -> u64 {
        self.0.available_permits() as u64 * BUDGET_UNIT
    }
}

/// One share on one server.
#[derive(Clone, Copy)]
pub(crate) struct ShareAt<'a> {
    pub(crate) server: &'a Server,
    pub(crate) kind: ShareKind,
    pub(crate) si: &'a StorageIndex,
    pub(crate) shnum: u32,
}

impl ShareAt<'_> {
    pub(crate) fn describe(&self) -> String {
        format!(
            "share {} of SI {} on storage server {}",
            self.shnum,
            self.si,
            self.server.info.describe()
        )
    }
}

/// How far a share goes, from its first bytes `first` (read from 0, not
/// ended): for an immutable share the end of its URI extension block (one
/// more read, whose bytes are returned); for a mutable one the end of the
/// last region its offset table names. At least `first.len()`; `None`
/// when the layout cannot say (a damaged header: the verifier will tell).
async fn end_of_share(b: &NativeBackend, at: ShareAt<'_>, first: &[u8]) -> Result<u64, Failure> {
    let have = first.len() as u64;
    match at.kind {
        ShareKind::Immutable => {
            let Ok(h) = ChkHeader::parse(first) else {
                return Ok(have);
            };
            let start = h.uri_extension;
            let end = start
                .saturating_add(h.field_size())
                .saturating_add(uri_extension::MAX_LEN);
            let probe = b.read(at, start..end).await?;
            Ok(have.max(start.saturating_add(probe.0.data.len() as u64)))
        }
        ShareKind::Mutable => Ok(MutableHeader::parse(first)
            .map(|h| {
                let r = &h.regions;
                [
                    &r.verification_key,
                    &r.signature,
                    &r.share_hash_chain,
                    &r.block_hash_tree,
                    &r.share_data,
                    &r.enc_privkey,
                ]
                .iter()
                .map(|r| r.end)
                .max()
                .unwrap_or(0)
            })
            .unwrap_or(0)
            .max(have)),
    }
}

impl NativeBackend {
    /// `range` of a share, its length taken from the read budget until the
    /// returned permit is dropped.
    pub(crate) async fn read(
        &self,
        at: ShareAt<'_>,
        range: Range<u64>,
    ) -> Result<(ShareBytes, SemaphorePermit<'_>), Failure> {
        self.read_into(at, range, Vec::new()).await
    }

    /// [`NativeBackend::read`] into `buf`, whose capacity is kept if the
    /// budget covers it (see [`ReadBudget::take_for`]).
    pub(crate) async fn read_into(
        &self,
        at: ShareAt<'_>,
        range: Range<u64>,
        buf: Vec<u8>,
    ) -> Result<(ShareBytes, SemaphorePermit<'_>), Failure> {
        let (buf, permit) = self.set.budget.take_for(range.end - range.start, buf).await;
        let bytes = at
            .server
            .read_share_into(&self.tenant, at.kind, at.si, at.shnum, range, buf)
            .await?;
        Ok((bytes, permit))
    }

    /// A whole share, given its first bytes (read from 0): the rest is
    /// read in chunks up to where the share's layout says it ends, or where
    /// a reply falls short.
    pub(crate) async fn whole_share(
        &self,
        at: ShareAt<'_>,
        first: ShareBytes,
    ) -> Result<Vec<u8>, Failure> {
        if first.ended {
            return Ok(first.data);
        }
        let end = end_of_share(self, at, &first.data).await?;
        let mut data = first.data;
        while (data.len() as u64) < end {
            let start = data.len() as u64;
            let (more, _permit) = self.read(at, start..end.min(start + READ_CHUNK)).await?;
            data.extend_from_slice(&more.data);
            if more.ended {
                break;
            }
        }
        Ok(data)
    }

    /// Reads a share's first `len` bytes, then the rest: the whole share.
    pub(crate) async fn fetch_whole(&self, at: ShareAt<'_>, len: u64) -> Result<Vec<u8>, Failure> {
        let first = {
            let (first, _permit) = self.read(at, 0..len).await?;
            first
        };
        self.whole_share(at, first).await
    }

    /// Verifies one share with the verifier `make` builds for its size,
    /// starting from its first bytes `first` (read from 0). `Err` when the
    /// server stopped answering before a verdict (Tahoe then counts the
    /// share neither good nor corrupt).
    pub(crate) async fn run_verifier(
        &self,
        at: ShareAt<'_>,
        first: ShareBytes,
        make: impl FnOnce(u64) -> ShareVerifier,
    ) -> Result<(Verdict, VerifyCost), Failure> {
        let size = if first.ended {
            first.data.len() as u64
        } else {
            end_of_share(self, at, &first.data).await?
        };
        let mut cost = VerifyCost {
            size,
            bytes: first.data.len() as u64,
            reads: 1,
        };
        // A small share not read whole yet: the rest of it in one more
        // read, rather than one per part.
        let have = first.data.len() as u64;
        let first = if !first.ended && size <= SMALL_SHARE && have < size {
            let (rest, _permit) = self.read(at, have..size).await?;
            cost.bytes += rest.data.len() as u64;
            cost.reads += 1;
            let mut data = first.data;
            data.extend_from_slice(&rest.data);
            ShareBytes {
                ended: rest.ended,
                data,
            }
        } else {
            first
        };
        let mut v = make(size);
        v.supply_owned(0, first.data);
        // The permit of the bytes the verifier holds, until it has asked
        // for the next ones. Every read goes into the verifier's own
        // buffer, handed back and forth: one buffer per share, the size
        // of its largest read, rather than a new one per read and a copy.
        let mut held: Option<SemaphorePermit<'_>> = None;
        loop {
            match v.next_step() {
                Step::Done(verdict) => return Ok((verdict, cost)),
                Step::Read(r) => {
                    let buf = v.take_buffer();
                    drop(held.take());
                    let (bytes, permit) = self.read_into(at, r.clone(), buf).await?;
                    cost.bytes += bytes.data.len() as u64;
                    cost.reads += 1;
                    v.supply_owned(r.start, bytes.data);
                    held = Some(permit);
                }
            }
        }
    }
}

/// What verifying one share read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct VerifyCost {
    /// The share's size as learnt.
    pub(crate) size: u64,
    /// Bytes received.
    pub(crate) bytes: u64,
    /// Requests.
    pub(crate) reads: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the budget has left and whatever buffer comes back, the
    /// buffer handed out never holds more than its permit counts, and it
    /// has room for the read.
    #[tokio::test]
    async fn a_reused_buffer_is_counted_or_freed() {
        const MIB: u64 = 1 << 20;
        for others in [
            0,
            BUDGET_BYTES / 2,
            BUDGET_BYTES - 2 * MIB,
            BUDGET_BYTES - MIB,
        ] {
            for cap in [0, 4096, MIB / 2, MIB, 2 * MIB, 8 * MIB] {
                for len in [1000, MIB / 2, MIB] {
                    let budget = ReadBudget::new();
                    let _others = budget.take(others).await;
                    let before = budget.free();
                    let buf: Vec<u8> = Vec::with_capacity(cap as usize);
                    let (buf, permit) = budget.take_for(len, buf).await;
                    let counted = before - budget.free();
                    assert_eq!(counted, permit.num_permits() as u64 * BUDGET_UNIT);
                    assert!(
                        buf.capacity() as u64 <= counted,
                        "others {others}, cap {cap}, len {len}: {} bytes held, {counted} counted",
                        buf.capacity()
                    );
                    assert!(buf.capacity() as u64 >= len && buf.is_empty());
                    if cap + others <= BUDGET_BYTES && cap >= len {
                        assert_eq!(buf.capacity() as u64, cap, "kept when it fits");
                    }
                }
            }
        }
    }
}
