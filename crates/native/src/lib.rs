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
//! * **Reads** (modules `fetch`, `listing`, `verify`): share contents over
//!   ranged `GET`s, within a process-wide budget of bytes held. Directory
//!   listings (`DIR2`, `DIR2-MDMF`, `DIR2-CHK`, `DIR2-LIT`) are read,
//!   verified, decoded and decrypted here ([`steward_format`] does the
//!   formats), with a read or write cap; `check --verify` reads every share
//!   of an object segment by segment and reports corrupt shares as
//!   Tahoe's verifiers do, with a verify cap.
//!
//! A deep check lists each directory, then checks it: the check takes the
//! results the listing computed from the same answers a moment before
//! (module `learnt`), rather than asking every server again.
//!
//! Repairing is not done here ([`Backend::supports`] says so): a stage
//! hands it to a gateway.
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
//! * **Hostile servers**: share bytes are never trusted: every share read
//!   is verified before use, a body is read no further than the range
//!   asked for, and no length read from a share sizes an allocation (see
//!   module `fetch`); a share that fails is reported corrupt, naming the
//!   server, and another one is read instead.
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

mod check;
pub mod discovery;
mod fetch;
mod learnt;
pub mod lease;
mod listing;
pub mod mutable;
pub mod nurl;
pub mod results;
pub mod server;
mod servermap;
mod servers;
pub mod tls;
mod verify;

use async_trait::async_trait;
use lease::LeaseSecrets;
use server::Server;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use steward_backend::sched::Tenant;
use steward_backend::{
    Backend, BackendError, CheckOptions, CheckResults, ErrorCode, Listing, Operation, RepairResults,
};
use steward_cap::{Authority, Cap, Format};

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

/// The native backend, its requests counted for one tenant. See the crate
/// documentation. Cheap to clone ([`Backend::for_tenant`]).
#[derive(Clone)]
pub struct NativeBackend {
    set: Arc<ServerSet>,
    tenant: Tenant,
}

/// The servers, and the account's lease secrets.
pub(crate) struct ServerSet {
    servers: Vec<Arc<Server>>,
    lease: Option<LeaseSecrets>,
    source: String,
    skipped: Vec<String>,
    /// Share bytes held at once by reads and verifies.
    budget: fetch::ReadBudget,
    stats: ReadStats,
    /// Check results of directories just listed ([`learnt`]).
    learnt: learnt::Learnt,
}

/// Counters of what verifies read.
#[derive(Default)]
pub(crate) struct ReadStats {
    shares_verified: AtomicU64,
    share_bytes_verified: AtomicU64,
    bytes_read_verifying: AtomicU64,
}

/// What verifies have read so far ([`NativeBackend::verify_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyStats {
    /// Shares verified to a verdict.
    pub shares: u64,
    /// Their sizes, summed.
    pub share_bytes: u64,
    /// Bytes received while verifying them.
    pub bytes_read: u64,
}

impl fmt::Debug for NativeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeBackend")
            .field("source", &self.set.source)
            .field("servers", &self.set.servers.len())
            .field("lease_secret", &self.set.lease.is_some())
            .finish()
    }
}

fn setup_error(msg: impl Into<String>) -> BackendError {
    BackendError::new(ErrorCode::ServerError, msg)
}

fn not_supported(what: &str) -> BackendError {
    BackendError::new(
        ErrorCode::NotSupported,
        format!("the native storage backend cannot {what}: use a gateway for it"),
    )
}

/// The target of the line that says, when the backend goes away, what its
/// verifies read (`info` level: `STEWARD_LOG=steward_native::reads=info`).
pub const READS_LOG_TARGET: &str = "steward_native::reads";

impl Drop for ServerSet {
    fn drop(&mut self) {
        let s = &self.stats;
        let shares = s.shares_verified.load(Ordering::Relaxed);
        if shares > 0 {
            tracing::info!(
                target: READS_LOG_TARGET,
                "verified {shares} shares of {} bytes in all, reading {} bytes",
                s.share_bytes_verified.load(Ordering::Relaxed),
                s.bytes_read_verifying.load(Ordering::Relaxed)
            );
        }
    }
}

impl NativeBackend {
    /// What verifies through this backend (any tenant) have read so far.
    pub fn verify_stats(&self) -> VerifyStats {
        let s = &self.set.stats;
        VerifyStats {
            shares: s.shares_verified.load(Ordering::Relaxed),
            share_bytes: s.share_bytes_verified.load(Ordering::Relaxed),
            bytes_read: s.bytes_read_verifying.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl Backend for NativeBackend {
    fn describe(&self) -> String {
        format!(
            "native storage protocol, {} servers from {}",
            self.set.servers.len(),
            self.set.source
        )
    }

    fn supports(&self, op: Operation) -> bool {
        match op {
            Operation::Check | Operation::List | Operation::Verify => true,
            Operation::AddLease => self.set.lease.is_some(),
            Operation::Repair => false,
        }
    }

    fn authority_for(&self, op: Operation) -> Authority {
        match op {
            Operation::List => Authority::Read,
            _ => Authority::Verify,
        }
    }

    fn kind(&self, _op: Operation) -> &'static str {
        "native"
    }

    fn for_tenant(&self, tenant: Tenant) -> Arc<dyn Backend> {
        Arc::new(NativeBackend {
            set: self.set.clone(),
            tenant,
        })
    }

    async fn list_directory(&self, dir: &Cap) -> Result<Listing, BackendError> {
        self.list(dir).await
    }

    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<CheckResults, BackendError> {
        if opts.add_lease {
            self.require_add_lease()?;
        }
        if cap.is_literal() {
            return Ok(CheckResults::literal());
        }
        let si = cap.storage_index().ok_or_else(|| {
            BackendError::new(
                ErrorCode::BadCap,
                format!("{} has no storage index", cap.redacted()),
            )
        })?;
        if !opts.verify && !opts.add_lease {
            if let Some(v) = self.set.learnt.take(&si) {
                return CheckResults::from_json(v)
                    .map_err(|e| BackendError::new(ErrorCode::ServerError, e));
            }
        }
        match cap.format() {
            Format::Chk => {
                let (k, n) = cap.encoding().ok_or_else(|| {
                    BackendError::new(
                        ErrorCode::BadCap,
                        format!("{} has no k and N", cap.redacted()),
                    )
                })?;
                if opts.verify {
                    self.verify_immutable(cap, &si, opts.add_lease).await
                } else {
                    self.check_immutable(&si, k, n, opts.add_lease).await
                }
            }
            Format::Sdmf | Format::Mdmf => {
                let fp = cap.fingerprint().ok_or_else(|| {
                    BackendError::new(
                        ErrorCode::BadCap,
                        format!("{} has no key fingerprint", cap.redacted()),
                    )
                })?;
                if opts.verify {
                    self.verify_mutable(cap, &si, opts.add_lease).await
                } else {
                    self.check_mutable(&si, &fp, cap.format(), opts.add_lease)
                        .await
                }
            }
            Format::Lit => return Ok(CheckResults::literal()),
        }
        .and_then(|v| {
            CheckResults::from_json(v).map_err(|e| BackendError::new(ErrorCode::ServerError, e))
        })
    }

    async fn repair(&self, _cap: &Cap, _opts: CheckOptions) -> Result<RepairResults, BackendError> {
        Err(not_supported("repair"))
    }
}
