//! Verify (`check --verify`): every share of an object read from its server
//! and checked by [`steward_format::verify::ShareVerifier`], segment by
//! segment (memory bounded whatever the file size: [`crate::fetch`]), and
//! counted as Tahoe's verifiers count them.
//!
//! * **Immutable** (`immutable/checker.py`): every share every server lists
//!   is verified (URI extension block against the verify cap, share hash
//!   chain, block hash tree, crypttext hash tree, every block); only good
//!   shares enter the sharemap and the counts; corrupt ones are listed in
//!   `list-corrupt-shares` as `[server id, SI, share number]`. A share whose
//!   server stops answering mid-way is neither (Tahoe: `disconnect`), and
//!   an incompatible share (unknown layout version) is only left out.
//! * **Mutable** (`mutable/checker.py` with `Retrieve(verify=True)`): the
//!   servermap as for a check, then every share of the best recoverable
//!   version is verified (verification key, signature, share hash chain,
//!   block hash tree, every block and salt); a corrupt share leaves the
//!   servermap (so the counts drop, as Tahoe's `mark_bad_share` does) and
//!   is listed, and named in the summary (`Corrupt Shares: <server>-sh<N>`).
//!
//! Verifying needs no erasure decoding and no read key: a verify cap is
//! enough.
//!
//! Differences from Tahoe 1.20, on purpose:
//!
//! * Tahoe checks a mutable share's verification key only for the first
//!   share its servermap sees, and its signature only for the first share
//!   of each version; here every verified share's key and signature are
//!   checked, so a damaged key or signature in another share is listed as
//!   corrupt (Tahoe misses it). A share whose header, key or signature
//!   fails while the servermap is built is listed as corrupt too (Tahoe
//!   only leaves it out of its counts).
//! * With a write cap Tahoe's mutable verify also decrypts each share's
//!   encrypted private key and lists a share whose key does not match the
//!   write key; steward verifies with the verify cap and does not read the
//!   private key.
//! * Tahoe verifies one copy of each mutable share number (its `Retrieve`
//!   keeps one reader per number); every copy is verified here.
//! * A mutable share whose server stops answering during the verify is left
//!   out of the counts, not listed as corrupt as Tahoe lists it.

use crate::fetch::{ShareAt, VerifyCost};
use crate::results::{self, CorruptShare};
use crate::server::{Failure, ShareKind};
use crate::NativeBackend;
use futures::future::join_all;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use steward_backend::{BackendError, ErrorCode};
use steward_cap::{Cap, StorageIndex};
use steward_format::chk::ChkCap;
use steward_format::mutable::MutableCap;
use steward_format::verify::{ShareVerifier, Verdict, VerifyOptions};

/// The first read of a small immutable share: all of it, in one round trip.
const WHOLE_FIRST_READ: u64 = 64 << 10;
/// The first read of a large one: its header (and a little more).
const HEAD_FIRST_READ: u64 = 4 << 10;

fn bad_cap(cap: &Cap, e: impl std::fmt::Display) -> BackendError {
    BackendError::new(ErrorCode::BadCap, format!("{}: {e}", cap.redacted()))
}

/// What verifying one share came to.
enum Outcome {
    Good,
    Corrupt,
    /// Incompatible, or the server stopped answering: neither good nor
    /// corrupt.
    Neither,
}

impl NativeBackend {
    /// Verify one share, given its first bytes; log what was wrong.
    async fn verify_one(
        &self,
        at: ShareAt<'_>,
        first: crate::server::ShareBytes,
        make: impl FnOnce(u64) -> ShareVerifier,
    ) -> Result<Outcome, BackendError> {
        match self.run_verifier(at, first, make).await {
            Ok((verdict, cost)) => {
                self.count_verified(cost);
                Ok(match verdict {
                    Verdict::Good => Outcome::Good,
                    Verdict::Corrupt(c) => {
                        tracing::warn!("{} is corrupt: {c}", at.describe());
                        Outcome::Corrupt
                    }
                    Verdict::Incompatible(why) => {
                        tracing::warn!("{} is incompatible: {why}", at.describe());
                        Outcome::Neither
                    }
                })
            }
            Err(Failure::PinMismatch(m)) => Err(BackendError::new(ErrorCode::ServerError, m)),
            Err(f) => {
                tracing::debug!("{} not verified: {}", at.describe(), f.message());
                Ok(Outcome::Neither)
            }
        }
    }

    fn count_verified(&self, cost: VerifyCost) {
        self.set
            .stats
            .shares_verified
            .fetch_add(1, Ordering::Relaxed);
        self.set
            .stats
            .share_bytes_verified
            .fetch_add(cost.size, Ordering::Relaxed);
        self.set
            .stats
            .bytes_read_verifying
            .fetch_add(cost.bytes, Ordering::Relaxed);
    }

    /// Verify every share of an immutable object (CHK file or DIR2-CHK).
    pub(crate) async fn verify_immutable(
        &self,
        cap: &Cap,
        si: &StorageIndex,
        add_lease: bool,
    ) -> Result<Value, BackendError> {
        let chk = ChkCap::from_cap(cap).map_err(|e| bad_cap(cap, e))?;
        let answers = self.immutable_listings(si, add_lease).await?;
        let estimate = chk.size.div_ceil(u64::from(chk.k.max(1)));
        let first_len = if estimate + HEAD_FIRST_READ <= WHOLE_FIRST_READ {
            WHOLE_FIRST_READ
        } else {
            HEAD_FIRST_READ
        };
        let opts = VerifyOptions::default();
        let per_server = join_all(self.set.servers.iter().zip(&answers).map(|(s, a)| {
            let chk = &chk;
            async move {
                let Ok(shares) = &a.listing else {
                    return Ok(None);
                };
                let outcomes = join_all(shares.iter().map(|&shnum| async move {
                    let at = ShareAt {
                        server: s,
                        kind: ShareKind::Immutable,
                        si,
                        shnum,
                    };
                    let first = match self.read(at, 0..first_len).await {
                        Ok((b, _permit)) => b,
                        Err(Failure::PinMismatch(m)) => {
                            return Err(BackendError::new(ErrorCode::ServerError, m))
                        }
                        Err(_) => return Ok((shnum, Outcome::Neither)),
                    };
                    let o = self
                        .verify_one(at, first, |size| {
                            ShareVerifier::chk(chk, shnum as usize, size, opts)
                        })
                        .await?;
                    Ok((shnum, o))
                }))
                .await;
                outcomes
                    .into_iter()
                    .collect::<Result<Vec<_>, BackendError>>()
                    .map(Some)
            }
        }))
        .await;
        let si_text = si.to_string();
        let mut responding = Vec::new();
        let mut listings = Vec::new();
        let mut corrupt = Vec::new();
        for (s, outcomes) in self.set.servers.iter().zip(per_server) {
            let Some(outcomes) = outcomes? else { continue };
            responding.push(s.info.id.clone());
            let mut good = BTreeSet::new();
            for (shnum, o) in outcomes {
                match o {
                    Outcome::Good => {
                        good.insert(shnum);
                    }
                    Outcome::Corrupt => corrupt.push(CorruptShare {
                        server: s.info.id.clone(),
                        si: si_text.clone(),
                        shnum,
                    }),
                    Outcome::Neither => {}
                }
            }
            listings.push(results::Listing {
                server: s.info.id.clone(),
                shares: good,
            });
        }
        Ok(results::immutable(
            &si_text,
            chk.k,
            chk.n,
            &responding,
            &listings,
            &corrupt,
        ))
    }

    /// Verify every share of the best recoverable version of a mutable
    /// object (SDMF, MDMF, or a directory on one).
    pub(crate) async fn verify_mutable(
        &self,
        cap: &Cap,
        si: &StorageIndex,
        add_lease: bool,
    ) -> Result<Value, BackendError> {
        let m = MutableCap::from_cap(cap)
            .ok_or_else(|| bad_cap(cap, "not a mutable file or directory cap"))?;
        let map = self
            .servermap(
                si,
                &m.fingerprint,
                add_lease,
                crate::servermap::first_read_len(m.format),
            )
            .await?;
        let best = map.recoverable_versions().first().map(|v| (*v).clone());
        let mut corrupt = Vec::new();
        let mut dropped = BTreeSet::new();
        if let Some(best) = &best {
            let opts = VerifyOptions::default();
            let todo: Vec<(usize, usize)> = map
                .good
                .iter()
                .filter(|(_, _, v)| v == best)
                .map(|(s, i, _)| (*s, *i))
                .collect();
            let outcomes = join_all(todo.iter().map(|&(s, i)| {
                let (m, map) = (&m, &map);
                async move {
                    let r = map.share(s, i);
                    let at = ShareAt {
                        server: &self.set.servers[s],
                        kind: ShareKind::Mutable,
                        si,
                        shnum: r.shnum,
                    };
                    let shnum = r.shnum as usize;
                    let o = self
                        .verify_one(at, r.first.clone(), |size| {
                            ShareVerifier::mutable(m, shnum, size, opts)
                        })
                        .await?;
                    Ok::<_, BackendError>(((s, i), o))
                }
            }))
            .await;
            for o in outcomes {
                let ((s, i), o) = o?;
                match o {
                    Outcome::Good => {}
                    Outcome::Corrupt => {
                        corrupt.push(CorruptShare {
                            server: self.set.servers[s].info.id.clone(),
                            si: si.to_string(),
                            shnum: map.share(s, i).shnum,
                        });
                        dropped.insert((s, i));
                    }
                    Outcome::Neither => {
                        dropped.insert((s, i));
                    }
                }
            }
        }
        // Shares whose header, key or signature failed in the servermap.
        for &(s, i) in &map.rejected {
            corrupt.push(CorruptShare {
                server: self.set.servers[s].info.id.clone(),
                si: si.to_string(),
                shnum: map.share(s, i).shnum,
            });
        }
        corrupt.sort();
        let mut shares = map.shares(&self.set);
        let keep: Vec<bool> = map
            .good
            .iter()
            .map(|(s, i, _)| !dropped.contains(&(*s, *i)))
            .collect();
        let mut k = keep.iter();
        shares.retain(|_| *k.next().expect("one flag per share"));
        Ok(results::mutable(
            &si.to_string(),
            &map.responding,
            &shares,
            &corrupt,
        ))
    }
}
