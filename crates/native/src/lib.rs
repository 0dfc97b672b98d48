//! The native storage backend: checks and lease renewal straight against
//! Tahoe-LAFS storage servers, over their HTTPS storage protocol ("Great
//! Black Swamp", `docs/specifications/http-storage-node-protocol.rst`),
//! with no gateway and no Foolscap in between.
//!
//! # What this crate owns
//!
//! * **Server discovery** ([`discovery`]): the storage servers and their
//!   NURLs, read-only, from a node directory's
//!   `private/introducer_default_cache.yaml` ([`NativeBackend::from_node_dir`]),
//!   or from a servers file with one `[<server id>] <NURL>` per line
//!   ([`NativeBackend::from_servers_file`], for an auditor without a node
//!   directory). Servers are named as Tahoe names them in check results:
//!   the announcement's `key_s` (`v0-…`). A bare NURL cannot reveal that
//!   key, so such a server is named `spki-<SPKI hash>` unless its line gives
//!   the `v0-` id first.
//! * **Authenticated transport** ([`tls`], [`server`]): HTTPS to each server
//!   with its certificate pinned to the SPKI hash in its NURL (a mismatch is
//!   refused with an error naming the server, never trusted);
//!   `Authorization: Tahoe-LAFS <base64 swissnum>`, `Accept:
//!   application/cbor`, CBOR bodies; one keep-alive pool and a bounded number
//!   of requests in flight per server; retries with backoff for transient
//!   failures; a server that stops answering is counted as not responding
//!   (as Tahoe counts a disconnected server), and set aside for a while so
//!   that later checks do not wait for it, never failing the run.
//! * **Checks** ([`results`], [`mutable`]): for an immutable object (CHK,
//!   `DIR2-CHK`) the share listing of every server; for a mutable one (SDMF,
//!   MDMF, directories) the listing plus each share's header, whose version
//!   is accepted only once the verification key from a share hashes to the
//!   cap's fingerprint and the version's RSA-PSS signature checks out, as in
//!   Tahoe's servermap updater. The result is the same JSON object a
//!   gateway answers to `POST /uri/$CAP?t=check&output=JSON`, computed by
//!   Tahoe's own counting rules. A verify cap is enough.
//! * **Lease renewal** ([`lease`]): with [`CheckOptions::add_lease`],
//!   `PUT /storage/v1/lease/<SI>` on every server, with the secrets a Tahoe
//!   client derives from the account's `private/secret` and the server's
//!   tub id, so that the account's existing leases are renewed, not
//!   duplicated.
//!
//! Listing directories, verifying share contents and repairing are not
//! done here ([`Backend::supports`] says so): a stage hands those to a
//! gateway.
//!
//! # Design choices
//!
//! * **reqwest with a preconfigured rustls `ClientConfig`, one `Client` per
//!   server.** reqwest (hyper + hyper-util underneath) is already the
//!   workspace's HTTP client, so this adds no second HTTP stack; it brings
//!   keep-alive pooling, timeouts and body handling that would otherwise be
//!   rewritten over hyper-util by hand. A `Client` per server gives each
//!   server its own pool *and* its own certificate verifier, pinned to that
//!   server's hash, so no verifier ever has to map host names to pins (a
//!   name could be shared by two servers behind a proxy). The rustls crate
//!   is the one reqwest was built with (0.23, ring), as
//!   `use_preconfigured_tls` requires.
//! * **A custom `ServerCertVerifier` that never calls webpki on the
//!   certificate**: Tahoe's certificates are X.509 version 1, which webpki
//!   refuses. See [`tls`].
//! * **Concurrency**: every server is asked at once for each object; each
//!   server has its own adaptive limit on requests in flight over all
//!   objects being checked ([`steward_backend::pace::Pace`], the one the
//!   gateway client uses): on loopback the servers' CPU is the limit and a
//!   few in flight keep them busy, at 100 ms round trips it takes dozens;
//!   [`NativeOptions::per_server_in_flight`] is the most it may reach
//!   (exactly that with `adaptive: false`).
//! * **Cheap mutable checks**: one ranged read per share (the first 1,000
//!   bytes for SDMF, as Tahoe's check mode reads, 2,500 for MDMF, where the
//!   key and signature sit behind the encrypted private key) gives the
//!   header, and for the first share of each version the key and signature
//!   too; a signature is verified once per version, as Tahoe does.
//! * **Errors** are [`BackendError`]s. A server whose certificate does not
//!   match its NURL makes every check an error (`server-error`, naming the
//!   server and both hashes) rather than a quietly smaller
//!   `servers-responding`: an impersonated server is something to fix, not
//!   to count around. [`NativeBackend::probe`] finds it before any work. A
//!   lease renewal refused by a server that holds shares is a
//!   `server-error` for that object (Tahoe only logs it). `not-supported`
//!   is for what this backend does not do, and for add-lease without a
//!   lease secret ([`NativeBackend::require_add_lease`] says so up front).
//!
//! # Differences from a gateway's check
//!
//! * `servers-responding` lists only servers that answered; a gateway lists
//!   the servers it is connected to that answered. A server that is down is
//!   absent from both.
//! * When a mutable object has several unrecoverable versions and no
//!   recoverable one, Tahoe takes the share counts from an arbitrary one
//!   (`list(set)[0]`); this crate takes the newest.
//! * Ordering of `servers-responding` and of `sharemap` keys differs (Tahoe
//!   iterates Python sets and dicts); the contents are the same.
//! * With add-lease and only a servers file (no FURLs), leases are renewed
//!   after the listing, and only on servers that hold shares (the lease
//!   seed is learnt from the TLS handshake); with a node directory the
//!   renewal goes to every server alongside the queries, as Tahoe does.
//! * Of several NURLs announced by one server only the first is used
//!   (Tahoe races them all).

pub mod discovery;
pub mod lease;
pub mod mutable;
pub mod nurl;
pub mod results;
pub mod server;
pub mod tls;

use async_trait::async_trait;
use discovery::ServerInfo;
use futures::future::join_all;
use lease::LeaseSecrets;
use serde_json::Value;
use server::{Failure, Server, ShareKind};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use steward_backend::{Backend, BackendError, CheckOptions, ErrorCode, Listing, Operation};
use steward_cap::{Authority, Cap, Format, StorageIndex};

/// How to talk to the storage servers.
#[derive(Clone)]
pub struct NativeOptions {
    /// Requests in flight to one server at most, over all objects
    /// (default 64).
    pub per_server_in_flight: usize,
    /// Find the best number of requests in flight to each server below
    /// `per_server_in_flight` from the latencies seen (default), or keep
    /// exactly that many.
    pub adaptive: bool,
    /// Time allowed for one request, connection included (default 20 s).
    pub timeout: Duration,
    /// Attempts after the first for a transient failure (default 2).
    pub retries: u32,
    /// First retry delay; doubles with each attempt (default 100 ms).
    pub backoff: Duration,
    /// How long a server that stopped answering is skipped (counted as not
    /// responding without being asked) before it is tried again; doubles
    /// while it keeps failing, up to 2 minutes (default 5 s).
    pub set_aside: Duration,
    /// The account's lease secret (the node's `private/secret`, decoded
    /// from base32), needed for add-lease. [`NativeBackend::from_node_dir`]
    /// reads it from the node directory when this is `None`.
    pub lease_secret: Option<Vec<u8>>,
}

impl Default for NativeOptions {
    fn default() -> Self {
        NativeOptions {
            per_server_in_flight: 64,
            adaptive: true,
            timeout: Duration::from_secs(20),
            retries: 2,
            backoff: Duration::from_millis(100),
            set_aside: Duration::from_secs(5),
            lease_secret: None,
        }
    }
}

impl fmt::Debug for NativeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeOptions")
            .field("per_server_in_flight", &self.per_server_in_flight)
            .field("adaptive", &self.adaptive)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("set_aside", &self.set_aside)
            .field("lease_secret", &self.lease_secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The native backend. See the crate documentation.
pub struct NativeBackend {
    servers: Vec<Arc<Server>>,
    lease: Option<LeaseSecrets>,
    source: String,
    skipped: Vec<String>,
}

impl fmt::Debug for NativeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeBackend")
            .field("source", &self.source)
            .field("servers", &self.servers.len())
            .field("lease_secret", &self.lease.is_some())
            .finish()
    }
}

fn setup_error(msg: impl Into<String>) -> BackendError {
    BackendError::new(ErrorCode::ServerError, msg)
}

/// Bytes read from the start of each mutable share.
fn first_read_len(format: Format) -> u64 {
    match format {
        Format::Mdmf => 2500,
        _ => 1000,
    }
}

/// What one server said about one object.
struct Answer<T> {
    listing: Result<T, Failure>,
    /// `None` when no lease was asked for there.
    lease: Option<Result<bool, Failure>>,
}

/// A mutable share as read: its number, first bytes and parsed header.
struct ShareRead {
    shnum: u32,
    data: Vec<u8>,
    header: Result<mutable::ShareHeader, String>,
}

impl NativeBackend {
    /// A backend for these servers. `opts.lease_secret` is kept for
    /// add-lease; without it [`NativeBackend::require_add_lease`] and every
    /// add-lease check fail at once with a clear message.
    pub fn new(
        servers: Vec<ServerInfo>,
        opts: NativeOptions,
        source: impl Into<String>,
    ) -> Result<NativeBackend, BackendError> {
        let source = source.into();
        if servers.is_empty() {
            return Err(setup_error(format!(
                "no storage server with an HTTPS storage NURL found in {source}"
            )));
        }
        let mut built = Vec::with_capacity(servers.len());
        for s in servers {
            built.push(Arc::new(Server::new(s, &opts).map_err(setup_error)?));
        }
        Ok(NativeBackend {
            servers: built,
            lease: opts.lease_secret.as_deref().map(LeaseSecrets::new),
            source,
            skipped: Vec::new(),
        })
    }

    /// Servers from a Tahoe node directory's
    /// `private/introducer_default_cache.yaml` (read only). If
    /// `opts.lease_secret` is `None`, the node's `private/secret` is used
    /// for add-lease when the file exists.
    pub fn from_node_dir(
        path: &Path,
        mut opts: NativeOptions,
    ) -> Result<NativeBackend, BackendError> {
        let cache = path.join("private").join("introducer_default_cache.yaml");
        let text = std::fs::read_to_string(&cache).map_err(|e| {
            setup_error(format!(
                "cannot read {}: {e} (is {} a Tahoe client node directory that has connected to its introducer?)",
                cache.display(),
                path.display()
            ))
        })?;
        let found = discovery::parse_introducer_cache(&text)
            .map_err(|e| setup_error(format!("{}: {e}", cache.display())))?;
        for s in &found.skipped {
            tracing::warn!(
                "{}: storage server not usable natively: {s}",
                cache.display()
            );
        }
        if opts.lease_secret.is_none() {
            let secret = path.join("private").join("secret");
            if secret.exists() {
                opts.lease_secret = Some(discovery::read_lease_secret(path).map_err(setup_error)?);
            }
        }
        let mut b = NativeBackend::new(found.servers, opts, cache.display().to_string())?;
        b.skipped = found.skipped;
        Ok(b)
    }

    /// Servers from a servers file: one `[<server id>] <NURL>` per line,
    /// `#` comments (see [`ServerInfo::from_servers_line`]).
    pub fn from_servers_file(
        path: &Path,
        opts: NativeOptions,
    ) -> Result<NativeBackend, BackendError> {
        let servers = discovery::read_servers_file(path).map_err(setup_error)?;
        NativeBackend::new(servers, opts, path.display().to_string())
    }

    /// The servers this backend talks to.
    pub fn servers(&self) -> Vec<&ServerInfo> {
        self.servers.iter().map(|s| &s.info).collect()
    }

    /// Announced servers left out because they offer no usable NURL.
    pub fn skipped_servers(&self) -> &[String] {
        &self.skipped
    }

    /// Requests sent to each server so far, in [`NativeBackend::servers`] order.
    pub fn requests_sent(&self) -> Vec<u32> {
        self.servers.iter().map(|s| s.requests_sent()).collect()
    }

    /// TLS connections made to each server so far, in
    /// [`NativeBackend::servers`] order.
    pub fn connections_made(&self) -> Vec<u32> {
        self.servers.iter().map(|s| s.connections_made()).collect()
    }

    /// The most requests ever in flight at once to each server, in
    /// [`NativeBackend::servers`] order (never above
    /// [`NativeOptions::per_server_in_flight`]).
    pub fn peak_in_flight(&self) -> Vec<u32> {
        self.servers.iter().map(|s| s.peak_in_flight()).collect()
    }

    /// Whether add-lease is possible (a lease secret was given).
    pub fn can_add_lease(&self) -> bool {
        self.lease.is_some()
    }

    /// Fails, with a message saying what to do, unless add-lease is possible.
    /// Call it before starting an add-lease run.
    pub fn require_add_lease(&self) -> Result<(), BackendError> {
        if self.lease.is_some() {
            return Ok(());
        }
        Err(BackendError::new(
            ErrorCode::NotSupported,
            format!(
                "add-lease with the native backend needs the account's lease secret (the node directory's private/secret), and none was given for {}: without it, leases would be added under a stranger's secret instead of renewing the account's",
                self.source
            ),
        ))
    }

    /// Ask every server for its version: `(server id, outcome)` for each, so
    /// that a run can report unreachable servers, or refuse a server whose
    /// certificate does not match its NURL, before any work.
    pub async fn probe(&self) -> Vec<(String, Result<(), BackendError>)> {
        join_all(self.servers.iter().map(|s| async move {
            let r = s.probe().await.map_err(|f| setup_error(f.message()));
            (s.info.id.clone(), r)
        }))
        .await
    }

    /// Before a run: refuse it if any server's certificate does not match
    /// its NURL (never trust it, never quietly skip it), and return a
    /// warning for each server that does not answer (it will be counted as
    /// not responding, as Tahoe does).
    pub async fn preflight(&self) -> Result<Vec<String>, BackendError> {
        let outcomes = join_all(
            self.servers
                .iter()
                .map(|s| async move { (s.info.id.clone(), s.probe().await) }),
        )
        .await;
        let mut warnings = Vec::new();
        for (id, r) in outcomes {
            match r {
                Ok(()) => {}
                Err(Failure::PinMismatch(m)) => {
                    return Err(setup_error(format!(
                        "storage server {id} refused: {m}"
                    )))
                }
                Err(f) => warnings.push(format!(
                    "storage server {id} does not answer ({}); it will be counted as not responding",
                    f.message()
                )),
            }
        }
        if warnings.len() == self.servers.len() {
            return Err(setup_error(format!(
                "none of the {} storage servers of {} answers: is the grid up? {}",
                self.servers.len(),
                self.source,
                warnings.first().cloned().unwrap_or_default()
            )));
        }
        Ok(warnings)
    }

    async fn renew(&self, s: &Server, si: &StorageIndex) -> Result<bool, Failure> {
        let secrets = self.lease.as_ref().expect("checked before");
        let seed = s.lease_seed().ok_or_else(|| {
            Failure::BadAnswer(format!(
                "no lease seed known for storage server {} (no FURL, and no TLS handshake made yet)",
                s.info.describe()
            ))
        })?;
        let (renew, cancel) = secrets.for_bucket(si.as_bytes(), &seed);
        s.renew_lease(si, &renew, &cancel).await
    }

    /// Run `query` on one server, renewing the lease there too if asked:
    /// in parallel when the lease seed is known in advance (as Tahoe sends
    /// add-lease alongside its queries), else after a listing that found
    /// shares (the TLS handshake has then taught us the seed).
    async fn ask<T, F>(
        &self,
        s: &Server,
        si: &StorageIndex,
        add_lease: bool,
        has_shares: fn(&T) -> bool,
        query: F,
    ) -> Answer<T>
    where
        F: std::future::Future<Output = Result<T, Failure>>,
    {
        if add_lease && s.lease_seed().is_some() {
            let (listing, lease) = tokio::join!(query, self.renew(s, si));
            return Answer {
                listing,
                lease: Some(lease),
            };
        }
        let listing = query.await;
        let lease = match &listing {
            Ok(t) if add_lease && has_shares(t) => Some(self.renew(s, si).await),
            _ => None,
        };
        Answer { listing, lease }
    }

    /// Refused certificates and failed lease renewals make the check an
    /// error; servers that did not answer are merely not responding.
    fn judge<T>(
        &self,
        si: &StorageIndex,
        answers: &[Answer<T>],
        has_shares: fn(&T) -> bool,
    ) -> Result<(), BackendError> {
        let mut lease_failures = Vec::new();
        for (s, a) in self.servers.iter().zip(answers) {
            let lease_failure = a.lease.as_ref().and_then(|l| l.as_ref().err());
            for f in [a.listing.as_ref().err(), lease_failure]
                .into_iter()
                .flatten()
            {
                if let Failure::PinMismatch(m) = f {
                    return Err(BackendError::new(ErrorCode::ServerError, m.as_str()));
                }
            }
            match (&a.listing, &a.lease) {
                (Ok(t), Some(Err(f))) if has_shares(t) => {
                    lease_failures.push(f.message().to_string())
                }
                (Err(f), _) => {
                    tracing::debug!(si = %si, server = %s.info.describe(), "not responding: {}", f.message())
                }
                _ => {}
            }
        }
        if lease_failures.is_empty() {
            return Ok(());
        }
        Err(BackendError::new(
            ErrorCode::ServerError,
            format!(
                "lease renewal failed for SI {si} on {} server(s): {}",
                lease_failures.len(),
                lease_failures.join("; ")
            ),
        ))
    }

    async fn check_immutable(
        &self,
        si: &StorageIndex,
        k: u16,
        n: u16,
        add_lease: bool,
    ) -> Result<Value, BackendError> {
        fn nonempty(s: &BTreeSet<u32>) -> bool {
            !s.is_empty()
        }
        let answers: Vec<Answer<BTreeSet<u32>>> = join_all(self.servers.iter().map(|s| {
            self.ask(
                s,
                si,
                add_lease,
                nonempty,
                s.list_shares(ShareKind::Immutable, si),
            )
        }))
        .await;
        self.judge(si, &answers, nonempty)?;
        let mut responding = Vec::new();
        let mut listings = Vec::new();
        for (s, a) in self.servers.iter().zip(answers) {
            if let Ok(shares) = a.listing {
                responding.push(s.info.id.clone());
                listings.push(results::Listing {
                    server: s.info.id.clone(),
                    shares,
                });
            }
        }
        Ok(results::immutable(
            &si.to_string(),
            k,
            n,
            &responding,
            &listings,
        ))
    }

    /// One server's mutable shares: the listing, then the first bytes of
    /// every share. As in Tahoe's `slot_readv`, a failed read makes the whole
    /// server count as not responding.
    async fn read_mutable_server(
        s: &Server,
        si: &StorageIndex,
        read_len: u64,
    ) -> Result<Vec<ShareRead>, Failure> {
        let shares = s.list_shares(ShareKind::Mutable, si).await?;
        let reads = join_all(
            shares
                .iter()
                .map(|&sh| async move { (sh, s.read_mutable(si, sh, 0..read_len).await) }),
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

    async fn check_mutable(
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
        let answers: Vec<Answer<Vec<ShareRead>>> = join_all(self.servers.iter().map(|s| {
            self.ask(
                s,
                si,
                add_lease,
                nonempty,
                Self::read_mutable_server(s, si, read_len),
            )
        }))
        .await;
        self.judge(si, &answers, nonempty)?;

        let mut responding = Vec::new();
        // version -> candidate shares (server index, share)
        let mut by_version: BTreeMap<mutable::Version, Vec<(usize, &ShareRead)>> = BTreeMap::new();
        for (i, (s, a)) in self.servers.iter().zip(&answers).enumerate() {
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
                let server = &self.servers[i];
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
                        server: self.servers[i].info.id.clone(),
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
                .read_mutable(si, r.shnum, span.clone())
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

fn not_supported(what: &str) -> BackendError {
    BackendError::new(
        ErrorCode::NotSupported,
        format!("the native storage backend cannot {what}: use a gateway for it"),
    )
}

#[async_trait]
impl Backend for NativeBackend {
    fn describe(&self) -> String {
        format!(
            "native storage protocol, {} servers from {}",
            self.servers.len(),
            self.source
        )
    }

    fn supports(&self, op: Operation) -> bool {
        match op {
            Operation::Check => true,
            Operation::AddLease => self.lease.is_some(),
            Operation::List | Operation::Verify | Operation::Repair => false,
        }
    }

    fn check_authority(&self) -> Authority {
        Authority::Verify
    }

    async fn list_directory(&self, _dir: &Cap) -> Result<Listing, BackendError> {
        Err(not_supported(
            "list directories (that needs a read cap and a gateway)",
        ))
    }

    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<Value, BackendError> {
        if opts.verify {
            return Err(not_supported("verify share contents"));
        }
        if opts.add_lease {
            self.require_add_lease()?;
        }
        if cap.is_literal() {
            return Ok(results::literal());
        }
        let si = cap.storage_index().ok_or_else(|| {
            BackendError::new(
                ErrorCode::BadCap,
                format!("{} has no storage index", cap.redacted()),
            )
        })?;
        match cap.format() {
            Format::Chk => {
                let (k, n) = cap.encoding().ok_or_else(|| {
                    BackendError::new(
                        ErrorCode::BadCap,
                        format!("{} has no k and N", cap.redacted()),
                    )
                })?;
                self.check_immutable(&si, k, n, opts.add_lease).await
            }
            Format::Sdmf | Format::Mdmf => {
                let fp = cap.fingerprint().ok_or_else(|| {
                    BackendError::new(
                        ErrorCode::BadCap,
                        format!("{} has no key fingerprint", cap.redacted()),
                    )
                })?;
                self.check_mutable(&si, &fp, cap.format(), opts.add_lease)
                    .await
            }
            Format::Lit => Ok(results::literal()),
        }
    }

    async fn repair(&self, _cap: &Cap, _opts: CheckOptions) -> Result<Value, BackendError> {
        Err(not_supported("repair"))
    }
}
