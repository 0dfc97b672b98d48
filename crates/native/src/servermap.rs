//! Mutable objects: the servermap. Each server's shares of the object are
//! listed and their first bytes read; shares are grouped by version, and a
//! version is accepted only once a share's verification key hashes to the
//! cap's fingerprint and its RSA-PSS signature checks out, as in Tahoe's
//! servermap updater. The good shares of the accepted versions are counted
//! by Tahoe's rules ([`crate::results::mutable`]).

use crate::check::Answer;
use crate::server::{Failure, Server, ShareKind};
use crate::{mutable, results, NativeBackend};
use futures::future::join_all;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use steward_backend::{BackendError, Tenant};
use steward_cap::{Format, StorageIndex};

/// Bytes read from the start of each mutable share.
fn first_read_len(format: Format) -> u64 {
    match format {
        Format::Mdmf => 2500,
        _ => 1000,
    }
}

/// A mutable share as read: its number, first bytes and parsed header.
pub(crate) struct ShareRead {
    shnum: u32,
    data: Vec<u8>,
    header: Result<mutable::ShareHeader, String>,
}

impl NativeBackend {
    /// One server's mutable shares: the listing, then the first bytes of
    /// every share. As in Tahoe's `slot_readv`, a failed read makes the whole
    /// server count as not responding.
    async fn read_mutable_server(
        tenant: &Tenant,
        s: &Server,
        si: &StorageIndex,
        read_len: u64,
    ) -> Result<Vec<ShareRead>, Failure> {
        let shares = s.list_shares(tenant, ShareKind::Mutable, si).await?;
        let reads = join_all(
            shares
                .iter()
                .map(|&sh| async move { (sh, s.read_mutable(tenant, si, sh, 0..read_len).await) }),
        )
        .await;
        let mut out = Vec::with_capacity(reads.len());
        for (shnum, r) in reads {
            let data = r?;
            let header = mutable::parse_header(&data);
            out.push(ShareRead {
                shnum,
                data,
                header,
            });
        }
        Ok(out)
    }

    pub(crate) async fn check_mutable(
        &self,
        si: &StorageIndex,
        fingerprint: &[u8; 32],
        format: Format,
        add_lease: bool,
    ) -> Result<Value, BackendError> {
        #[allow(clippy::ptr_arg)] // must match Answer<Vec<ShareRead>>
        fn nonempty(s: &Vec<ShareRead>) -> bool {
            !s.is_empty()
        }
        let read_len = first_read_len(format);
        let answers: Vec<Answer<Vec<ShareRead>>> = join_all(self.set.servers.iter().map(|s| {
            self.ask(
                s,
                si,
                add_lease,
                nonempty,
                Self::read_mutable_server(&self.tenant, s, si, read_len),
            )
        }))
        .await;
        self.judge(si, &answers, nonempty)?;

        let mut responding = Vec::new();
        // version -> candidate shares (server index, share)
        let mut by_version: BTreeMap<mutable::Version, Vec<(usize, &ShareRead)>> = BTreeMap::new();
        for (i, (s, a)) in self.set.servers.iter().zip(&answers).enumerate() {
            let Ok(reads) = &a.listing else { continue };
            responding.push(s.info.id.clone());
            for r in reads {
                match &r.header {
                    Ok(h) => by_version
                        .entry(h.version.clone())
                        .or_default()
                        .push((i, r)),
                    Err(e) => tracing::warn!(
                        si = %si, server = %s.info.describe(), shnum = r.shnum,
                        "bad mutable share header: {e}"
                    ),
                }
            }
        }

        let mut pubkey: Option<rsa::RsaPublicKey> = None;
        let mut good = Vec::new();
        for (version, candidates) in by_version.iter().rev() {
            let mut bad: BTreeSet<(usize, u32)> = BTreeSet::new();
            let mut valid = false;
            for &(i, r) in candidates {
                let server = &self.set.servers[i];
                match self
                    .validate_version(server, si, r, fingerprint, &mut pubkey)
                    .await
                {
                    Ok(()) => {
                        valid = true;
                        break;
                    }
                    Err(why) => {
                        tracing::warn!(
                            si = %si, server = %server.info.describe(), shnum = r.shnum,
                            version = %version.summary(), "bad mutable share: {why}"
                        );
                        bad.insert((i, r.shnum));
                    }
                }
            }
            if !valid {
                continue;
            }
            for &(i, r) in candidates {
                if !bad.contains(&(i, r.shnum)) {
                    good.push(results::MutableShare {
                        server: self.set.servers[i].info.id.clone(),
                        shnum: r.shnum,
                        version: version.clone(),
                    });
                }
            }
        }
        Ok(results::mutable(&si.to_string(), &responding, &good))
    }

    /// Check one share's claim to its version: its verification key must
    /// match the fingerprint (until a key has been accepted) and its
    /// signature must verify over the version's signed prefix.
    async fn validate_version(
        &self,
        server: &Server,
        si: &StorageIndex,
        r: &ShareRead,
        fingerprint: &[u8; 32],
        pubkey: &mut Option<rsa::RsaPublicKey>,
    ) -> Result<(), String> {
        let h = r.header.as_ref().map_err(Clone::clone)?;
        let span = h.key_and_signature_span();
        let fetched;
        let (bytes, base): (&[u8], u64) = if (r.data.len() as u64) >= span.end {
            (&r.data, 0)
        } else {
            fetched = server
                .read_mutable(&self.tenant, si, r.shnum, span.clone())
                .await
                .map_err(|f| f.message().to_string())?;
            (&fetched, span.start)
        };
        let slice = |range: &std::ops::Range<u64>| -> Result<&[u8], String> {
            let (a, b) = ((range.start - base) as usize, (range.end - base) as usize);
            bytes
                .get(a..b)
                .ok_or_else(|| format!("share ends before byte {}", range.end))
        };
        if pubkey.is_none() {
            let key = slice(&h.pubkey)?;
            if !mutable::pubkey_matches_fingerprint(key, fingerprint) {
                return Err("verification key does not match the cap's fingerprint".into());
            }
            *pubkey = Some(mutable::parse_pubkey(key)?);
        }
        let sig = slice(&h.signature)?;
        if mutable::signature_is_valid(pubkey.as_ref().expect("set above"), sig, &h.version.prefix)
        {
            Ok(())
        } else {
            Err("signature is invalid".into())
        }
    }
}
