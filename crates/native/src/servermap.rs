//! Mutable objects: the servermap. Each server's shares of the object are
//! listed and their first bytes read; shares are grouped by version, and a
//! version is accepted only once a share's verification key hashes to the
//! cap's fingerprint and its RSA-PSS signature checks out, as in Tahoe's
//! servermap updater. The good shares of the accepted versions are counted
//! by Tahoe's rules ([`crate::results::mutable`]).

use crate::check::Answer;
use crate::server::{Failure, Server, ShareBytes, ShareKind};
use crate::{mutable, results, NativeBackend, ServerSet};
use futures::future::join_all;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use steward_backend::{BackendError, Tenant};
use steward_cap::{Format, StorageIndex};

/// Bytes read from the start of each mutable share.
pub(crate) fn first_read_len(format: Format) -> u64 {
    match format {
        Format::Mdmf => 2500,
        _ => 1000,
    }
}

/// A mutable share as read: its number, first bytes and parsed header.
pub(crate) struct ShareRead {
    pub(crate) shnum: u32,
    /// The first bytes, and whether the share ended within them.
    pub(crate) first: ShareBytes,
    pub(crate) header: Result<mutable::ShareHeader, String>,
}

/// What the servers hold of one mutable object, as Tahoe's servermap
/// updater sees it.
pub(crate) struct Servermap {
    /// Servers that answered, by id.
    pub(crate) responding: Vec<String>,
    /// Each server's shares as read (`None`: it did not answer).
    pub(crate) reads: Vec<Option<Vec<ShareRead>>>,
    /// The shares of accepted versions: (server index, index in its
    /// reads, version).
    pub(crate) good: Vec<(usize, usize, mutable::Version)>,
    /// Shares found bad on the way (a header that does not parse, a key
    /// or signature that fails): (server index, index in its reads). A
    /// verify lists them as corrupt; a share of a layout version this code
    /// does not know is not among them.
    pub(crate) rejected: Vec<(usize, usize)>,
}

impl Servermap {
    pub(crate) fn share(&self, server: usize, i: usize) -> &ShareRead {
        &self.reads[server].as_ref().expect("a server that answered")[i]
    }

    /// The good shares for Tahoe's counting.
    pub(crate) fn shares(&self, set: &ServerSet) -> Vec<results::MutableShare> {
        self.good
            .iter()
            .map(|(s, i, v)| results::MutableShare {
                server: set.servers[*s].info.id.clone(),
                shnum: self.share(*s, *i).shnum,
                version: v.clone(),
            })
            .collect()
    }

    /// Recoverable versions (at least k distinct good share numbers),
    /// newest (Tahoe's "best") first.
    pub(crate) fn recoverable_versions(&self) -> Vec<&mutable::Version> {
        let mut distinct: BTreeMap<&mutable::Version, BTreeSet<u32>> = BTreeMap::new();
        for (s, i, v) in &self.good {
            distinct
                .entry(v)
                .or_default()
                .insert(self.share(*s, *i).shnum);
        }
        distinct
            .into_iter()
            .rev()
            .filter(|(v, shnums)| shnums.len() >= usize::from(v.k))
            .map(|(v, _)| v)
            .collect()
    }
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
        let reads = join_all(shares.iter().map(|&sh| async move {
            (
                sh,
                s.read_share(tenant, ShareKind::Mutable, si, sh, 0..read_len)
                    .await,
            )
        }))
        .await;
        let mut out = Vec::with_capacity(reads.len());
        for (shnum, r) in reads {
            let first = r?;
            let header = mutable::parse_header(&first.data);
            out.push(ShareRead {
                shnum,
                first,
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
        let map = self
            .servermap(si, fingerprint, add_lease, first_read_len(format))
            .await?;
        Ok(results::mutable(
            &si.to_string(),
            &map.responding,
            &map.shares(&self.set),
            &[],
        ))
    }

    /// The servermap of a mutable object: every server's shares, the first
    /// `read_len` bytes of each, grouped by version; a version is accepted
    /// once one of its shares has a key matching the fingerprint and a
    /// valid signature (shares whose key or signature fail are left out).
    pub(crate) async fn servermap(
        &self,
        si: &StorageIndex,
        fingerprint: &[u8; 32],
        add_lease: bool,
        read_len: u64,
    ) -> Result<Servermap, BackendError> {
        #[allow(clippy::ptr_arg)] // must match Answer<Vec<ShareRead>>
        fn nonempty(s: &Vec<ShareRead>) -> bool {
            !s.is_empty()
        }
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
        let mut rejected = Vec::new();
        let reads: Vec<Option<Vec<ShareRead>>> =
            answers.into_iter().map(|a| a.listing.ok()).collect();
        // version -> candidate shares (server index, index in its reads)
        let mut by_version: BTreeMap<&mutable::Version, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, (s, r)) in self.set.servers.iter().zip(&reads).enumerate() {
            let Some(shares) = r else { continue };
            responding.push(s.info.id.clone());
            for (j, r) in shares.iter().enumerate() {
                match &r.header {
                    Ok(h) => by_version.entry(&h.version).or_default().push((i, j)),
                    Err(e) => {
                        tracing::warn!(
                            si = %si, server = %s.info.describe(), shnum = r.shnum,
                            "bad mutable share header: {e}"
                        );
                        if !e.starts_with(mutable::UNKNOWN_VERSION) {
                            rejected.push((i, j));
                        }
                    }
                }
            }
        }

        let mut pubkey: Option<Vec<u8>> = None;
        let mut good = Vec::new();
        for (version, candidates) in by_version.iter().rev() {
            let mut bad: BTreeSet<(usize, usize)> = BTreeSet::new();
            let mut valid = false;
            for &(i, j) in candidates {
                let server = &self.set.servers[i];
                let r = &reads[i].as_ref().expect("answered")[j];
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
                        bad.insert((i, j));
                        rejected.push((i, j));
                    }
                }
            }
            if !valid {
                continue;
            }
            for &(i, j) in candidates {
                if !bad.contains(&(i, j)) {
                    good.push((i, j, (*version).clone()));
                }
            }
        }
        drop(by_version);
        Ok(Servermap {
            responding,
            reads,
            good,
            rejected,
        })
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
        pubkey: &mut Option<Vec<u8>>,
    ) -> Result<(), String> {
        let h = r.header.as_ref().map_err(Clone::clone)?;
        let span = h.key_and_signature_span();
        let fetched;
        let (bytes, base): (&[u8], u64) = if (r.first.data.len() as u64) >= span.end {
            (&r.first.data, 0)
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
            *pubkey = Some(key.to_vec());
        }
        let sig = slice(&h.signature)?;
        steward_format::mutable::verify_signature(
            pubkey.as_ref().expect("set above"),
            sig,
            &h.version.prefix,
        )
    }
}
