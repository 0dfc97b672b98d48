//! Directory listings read straight from the storage servers: the shares
//! fetched with range requests, verified, decoded, decrypted and parsed by
//! [`steward_format::directory`].
//!
//! * `DIR2` and `DIR2-MDMF`: the servermap (as for a check, with a first
//!   read large enough for a small directory's whole share); then, from
//!   the newest recoverable version down, `k` shares of the version are
//!   read whole and verified (key, signature, hash trees, blocks), a
//!   corrupt one replaced by another; the version is decoded from them.
//! * `DIR2-CHK`: every server's share listing; `k` shares read whole and
//!   verified against the cap's URI extension hash, a corrupt one replaced
//!   by another share.
//! * `DIR2-LIT`: the contents are in the cap; nothing is asked.
//!
//! A corrupt share does not stop the listing while `k` good shares remain;
//! it is logged as a warning naming the server, the storage index, the
//! share number and the part that failed (a `check --verify` of the
//! directory lists it as Tahoe does). Fewer than `k` good shares make the
//! listing `unrecoverable`, as the gateway answers.
//!
//! With a write cap the children's write caps are decrypted too (Tahoe's
//! `--caps write`); with a read cap only read caps are shown, as the
//! gateway shows them. The listing carries the directory's byte size (the
//! length of its serialized contents) for the deep-stats.

use crate::fetch::ShareAt;
use crate::server::{Failure, ShareKind};
use crate::servermap::Servermap;
use crate::{results, NativeBackend};
use futures::future::join_all;
use std::collections::BTreeMap;
use steward_backend::{BackendError, Child, ErrorCode, Listing, NodeType};
use steward_cap::{Authority, Cap, Format, StorageIndex};
use steward_format::chk::ChkCap;
use steward_format::directory::{read_directory, Directory, DirectoryError};
use steward_format::mutable::MutableCap;
use steward_format::read::ReadError;
use steward_format::verify::{verify_chk_share, verify_mutable_share, Verdict};

/// The first read of each mutable share of a directory: a directory of a
/// few dozen entries fits whole (a share of a 10-entry directory is about
/// 4 KB), so the servermap's reads bring everything.
const MUTABLE_FIRST_READ: u64 = 16 << 10;
/// The first read of each immutable share of a directory.
const CHK_FIRST_READ: u64 = 64 << 10;

fn unrecoverable(what: &str, si: &StorageIndex, detail: impl std::fmt::Display) -> BackendError {
    BackendError::new(
        ErrorCode::Unrecoverable,
        format!("{what} SI {si} cannot be read: {detail}"),
    )
}

fn lossy(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A child as a gateway's `t=json` shows it.
fn child(name: &str, caps: steward_format::dirnode::ChildCaps) -> Child {
    let cap = caps.cap;
    let node_type = match &cap {
        None => NodeType::Unknown,
        Some(c) if c.is_directory() => NodeType::Directory,
        Some(_) => NodeType::File,
    };
    let file = cap.as_ref().filter(|c| !c.is_directory());
    Child {
        name: name.to_string(),
        node_type,
        rw_uri: caps.rw_uri.map(lossy),
        ro_uri: caps.ro_uri.map(lossy),
        verify_uri: cap
            .as_ref()
            .and_then(Cap::to_verify_cap)
            .map(|v| v.expose().to_string()),
        size: file.and_then(Cap::size),
        // Tahoe names a literal file's format CHK too.
        format: file.map(|c| {
            match c.format() {
                Format::Chk | Format::Lit => "CHK",
                Format::Sdmf => "SDMF",
                Format::Mdmf => "MDMF",
            }
            .to_string()
        }),
        mutable: cap.as_ref().map(Cap::is_mutable),
    }
}

/// The listing of a directory as read.
pub(crate) fn to_listing(d: &Directory) -> Listing {
    Listing {
        children: d.children().map(|(e, caps)| child(&e.name, caps)).collect(),
        size: Some(d.size),
    }
}

fn read_error(dir: &Cap, si: &StorageIndex, e: DirectoryError) -> BackendError {
    match e {
        DirectoryError::Read(ReadError::Cap(m)) => {
            BackendError::new(ErrorCode::InsufficientAuthority, m)
        }
        DirectoryError::Read(e) => unrecoverable("directory", si, e),
        DirectoryError::NotADirectoryCap(m) => BackendError::new(
            ErrorCode::BadCap,
            format!("{m} is not a directory read or write cap"),
        ),
        DirectoryError::Contents(e) => BackendError::new(
            ErrorCode::ServerError,
            format!(
                "directory {} (SI {si}) decodes to malformed contents: {e}",
                dir.redacted()
            ),
        ),
    }
}

/// A share that may be read: where, and its first bytes if already read.
struct Candidate {
    server: usize,
    shnum: u32,
    first: Option<crate::server::ShareBytes>,
}

impl NativeBackend {
    /// List a directory (see the module docs).
    pub(crate) async fn list(&self, dir: &Cap) -> Result<Listing, BackendError> {
        if !dir.is_directory() {
            return Err(BackendError::new(
                ErrorCode::BadCap,
                format!("{} is not a directory", dir.redacted()),
            ));
        }
        if dir.authority() == Authority::Verify {
            return Err(BackendError::new(
                ErrorCode::InsufficientAuthority,
                format!(
                    "{} is a verify cap: listing a directory needs its read or write cap",
                    dir.redacted()
                ),
            ));
        }
        let Some(si) = dir.storage_index() else {
            // DIR2-LIT: the contents are the cap.
            let d = read_directory(dir, &[], None)
                .map_err(|e| read_error(dir, &StorageIndex([0; 16]), e))?;
            return Ok(to_listing(&d));
        };
        let d = match dir.format() {
            Format::Chk => self.read_chk_directory(dir, &si).await?,
            _ => self.read_mutable_directory(dir, &si).await?,
        };
        Ok(to_listing(&d))
    }

    /// Reads candidates whole and verifies them until `k` distinct share
    /// numbers are good: the good shares `(shnum, bytes)`, and how many
    /// failed. `verify` says whether a whole share is good.
    async fn gather(
        &self,
        si: &StorageIndex,
        kind: ShareKind,
        k: usize,
        first_len: u64,
        mut candidates: Vec<Candidate>,
        verify: &(dyn Fn(usize, &[u8]) -> Verdict + Sync),
    ) -> Result<(Vec<(usize, Vec<u8>)>, usize), BackendError> {
        let mut good: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut failed = 0;
        // Lower share numbers first (primary shares decode fastest), one
        // copy of each number per round.
        candidates.sort_by_key(|c| c.shnum);
        candidates.reverse();
        while good.len() < k && !candidates.is_empty() {
            let mut round = Vec::new();
            let mut rest = Vec::new();
            while let Some(c) = candidates.pop() {
                let taken = good.iter().any(|g| g.0 == c.shnum as usize)
                    || round.iter().any(|r: &Candidate| r.shnum == c.shnum);
                if taken || round.len() + good.len() >= k {
                    rest.push(c);
                } else {
                    round.push(c);
                }
            }
            rest.reverse();
            candidates = rest;
            if round.is_empty() {
                break;
            }
            let fetched = join_all(round.into_iter().map(|c| async move {
                let at = ShareAt {
                    server: &self.set.servers[c.server],
                    kind,
                    si,
                    shnum: c.shnum,
                };
                let bytes = match c.first {
                    Some(first) => self.whole_share(at, first).await,
                    None => self.fetch_whole(at, first_len).await,
                };
                (at, bytes)
            }))
            .await;
            for (at, bytes) in fetched {
                let shnum = at.shnum as usize;
                match bytes {
                    Ok(bytes) => match verify(shnum, &bytes) {
                        Verdict::Good => good.push((shnum, bytes)),
                        bad => {
                            failed += 1;
                            let why = match bad {
                                Verdict::Corrupt(c) => format!("corrupt ({c})"),
                                Verdict::Incompatible(w) => format!("incompatible ({w})"),
                                Verdict::Good => unreachable!(),
                            };
                            tracing::warn!(
                                "directory {}: {why}; listed from other shares",
                                at.describe()
                            );
                            // Drop the other copies of a number only once
                            // one of them is good.
                        }
                    },
                    Err(Failure::PinMismatch(m)) => {
                        return Err(BackendError::new(ErrorCode::ServerError, m))
                    }
                    Err(f) => {
                        failed += 1;
                        tracing::debug!("{} not read: {}", at.describe(), f.message());
                    }
                }
            }
        }
        Ok((good, failed))
    }

    async fn read_chk_directory(
        &self,
        dir: &Cap,
        si: &StorageIndex,
    ) -> Result<Directory, BackendError> {
        let chk = ChkCap::from_cap(dir).map_err(|e| {
            BackendError::new(ErrorCode::BadCap, format!("{}: {e}", dir.redacted()))
        })?;
        let listings = join_all(
            self.set
                .servers
                .iter()
                .map(|s| s.list_shares(&self.tenant, ShareKind::Immutable, si)),
        )
        .await;
        let mut candidates = Vec::new();
        let mut holders: BTreeMap<u32, usize> = BTreeMap::new();
        let mut responding = Vec::new();
        let mut held = Vec::new();
        for (i, l) in listings.into_iter().enumerate() {
            match l {
                Ok(shares) => {
                    let id = self.set.servers[i].info.id.clone();
                    responding.push(id.clone());
                    held.push(results::Listing {
                        server: id,
                        shares: shares.clone(),
                    });
                    for shnum in shares {
                        *holders.entry(shnum).or_default() += 1;
                        candidates.push(Candidate {
                            server: i,
                            shnum,
                            first: None,
                        });
                    }
                }
                Err(Failure::PinMismatch(m)) => {
                    return Err(BackendError::new(ErrorCode::ServerError, m))
                }
                Err(_) => {}
            }
        }
        // What a check of this directory would find: kept for it.
        self.set.learnt.put(
            si,
            results::immutable(&si.to_string(), chk.k, chk.n, &responding, &held, &[]),
        );
        let k = usize::from(chk.k);
        if holders.len() < k {
            return Err(unrecoverable(
                "directory",
                si,
                format!("{} of the {k} shares needed were found", holders.len()),
            ));
        }
        let verify = |shnum: usize, bytes: &[u8]| verify_chk_share(&chk, shnum, bytes).0;
        let (good, failed) = self
            .gather(
                si,
                ShareKind::Immutable,
                k,
                CHK_FIRST_READ,
                candidates,
                &verify,
            )
            .await?;
        self.decode_directory(dir, si, good, failed, None)
    }

    async fn read_mutable_directory(
        &self,
        dir: &Cap,
        si: &StorageIndex,
    ) -> Result<Directory, BackendError> {
        let m = MutableCap::from_cap(dir).ok_or_else(|| {
            BackendError::new(
                ErrorCode::BadCap,
                format!("{} is not a mutable directory cap", dir.redacted()),
            )
        })?;
        let map: Servermap = self
            .servermap(si, &m.fingerprint, false, MUTABLE_FIRST_READ)
            .await?;
        // What a check of this directory would find: kept for it.
        self.set.learnt.put(
            si,
            results::mutable(
                &si.to_string(),
                &map.responding,
                &map.shares(&self.set),
                &[],
            ),
        );
        let versions = map.recoverable_versions();
        if versions.is_empty() {
            let found: std::collections::BTreeSet<u32> = map
                .good
                .iter()
                .map(|(s, i, _)| map.share(*s, *i).shnum)
                .collect();
            return Err(unrecoverable(
                "directory",
                si,
                format!(
                    "no version has enough shares ({} good shares found on {} responding servers)",
                    found.len(),
                    map.responding.len()
                ),
            ));
        }
        let verify = |shnum: usize, bytes: &[u8]| verify_mutable_share(&m, shnum, bytes).0;
        let mut last_error = None;
        for v in versions {
            let candidates: Vec<Candidate> = map
                .good
                .iter()
                .filter(|(_, _, gv)| gv == v)
                .map(|(s, i, _)| {
                    let r = map.share(*s, *i);
                    Candidate {
                        server: *s,
                        shnum: r.shnum,
                        first: Some(r.first.clone()),
                    }
                })
                .collect();
            let k = usize::from(v.k);
            let (good, failed) = self
                .gather(
                    si,
                    ShareKind::Mutable,
                    k,
                    MUTABLE_FIRST_READ,
                    candidates,
                    &verify,
                )
                .await?;
            match self.decode_directory(dir, si, good, failed, Some((v.seqnum, v.root_hash))) {
                Ok(d) => return Ok(d),
                Err(e) if e.code == ErrorCode::Unrecoverable => {
                    tracing::warn!(
                        "directory SI {si}: version {} is not readable ({}); trying an older one",
                        v.summary(),
                        e.message
                    );
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one version was tried"))
    }

    fn decode_directory(
        &self,
        dir: &Cap,
        si: &StorageIndex,
        good: Vec<(usize, Vec<u8>)>,
        failed: usize,
        want: Option<(u64, [u8; 32])>,
    ) -> Result<Directory, BackendError> {
        let shares: Vec<(usize, &[u8])> = good.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        read_directory(dir, &shares, want).map_err(|e| match e {
            DirectoryError::Read(ReadError::NotEnoughShares { good, needed, .. }) => unrecoverable(
                "directory",
                si,
                format!(
                    "{good} good shares of the {needed} needed ({failed} corrupt or unreadable)"
                ),
            ),
            e => read_error(dir, si, e),
        })
    }
}
