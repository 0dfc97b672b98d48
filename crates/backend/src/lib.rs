//! The grid operations every steward stage needs, behind one interface,
//! and the request path every client of the grid shares.
//!
//! A stage never talks HTTP itself: it holds an `Arc<dyn Backend>` and asks it
//! to list a directory, check an object (optionally verifying every share and
//! renewing its leases) or repair it. The implementations live in their own
//! crates: `steward-gateway` (Tahoe's web API on one or more gateways) and
//! `steward-native` (the storage servers' HTTPS protocol). [`route::Routes`]
//! combines them: each operation goes to the backend configured for it (for
//! example native checks with gateway listings).
//!
//! Both clients send every request through the same stack of layers, each
//! written once ([`retry::Stack::call`]):
//!
//! * [`retry`]: retries and backoff, slow-request warnings;
//! * [`sched`]: the process-wide scheduler: a budget of requests in flight,
//!   weighted fair shares between [`sched::Tenant`]s (operations,
//!   accounts, clients), and the endpoint chosen at admission;
//! * [`pace`]: one adaptive limit per endpoint;
//! * [`endpoint`]: endpoints named once per process, and setting aside
//!   those that stop answering (with a record of [`endpoint::Outage`]s).
//!
//! Results are typed once ([`results`]): the JSON Tahoe defines is kept,
//! unchanged, for the units, beside a [`results::CheckSummary`] that every
//! decision reads.
//!
//! Errors are [`BackendError`]s: a stable machine [`ErrorCode`], a one-line
//! message that never contains a whole cap, and whether the run can go on.

pub mod endpoint;
pub mod http;
pub mod lenient;
pub mod pace;
pub mod results;
pub mod retry;
pub mod route;
pub mod sched;

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use steward_cap::{Authority, Cap};

pub use results::{CheckResults, CheckSummary, RepairResults};
pub use sched::{Scheduler, Tenant};

/// What a check should do beyond counting shares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Download and verify every share (Tahoe's `verify=true`).
    pub verify: bool,
    /// Renew the lease on every share found (Tahoe's `add-lease=true`).
    pub add_lease: bool,
}

/// An operation a backend may or may not be able to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    List,
    Check,
    Verify,
    AddLease,
    Repair,
}

/// The kind of a directory entry, as the gateway's `t=json` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    File,
    Directory,
    Unknown,
}

/// One entry of a directory listing. Caps are kept as the gateway gave them;
/// the traversal parses them, so that a malformed child cap becomes a
/// `bad-cap` result for that child instead of failing the whole listing.
#[derive(Clone, Debug)]
pub struct Child {
    pub name: String,
    pub node_type: NodeType,
    pub rw_uri: Option<String>,
    pub ro_uri: Option<String>,
    pub verify_uri: Option<String>,
    /// Byte size for files (`size` in `t=json`); directories carry none.
    pub size: Option<u64>,
    /// `CHK`, `LIT`, `SDMF` or `MDMF` for files.
    pub format: Option<String>,
    pub mutable: Option<bool>,
}

/// A directory's children. It is processed and dropped by the traversal,
/// never kept.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub children: Vec<Child>,
    /// Bytes of the directory's serialized contents, when the backend
    /// read them (the native backend; a gateway's `t=json` does not say):
    /// Tahoe's deep-stats `size-directories` and `largest-directory`.
    pub size: Option<u64>,
}

/// Stable, documented machine codes for errors. They appear in the `error`
/// object of output units, so they never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not enough shares to read the object (HTTP 410 from a gateway).
    Unrecoverable,
    /// The gateway did not answer in time, after retries.
    GatewayTimeout,
    /// The gateway answered 5xx, after retries for 502/503/504.
    GatewayHttp5xx,
    /// The gateway refused the request (4xx other than 410).
    GatewayHttp4xx,
    /// No gateway could be reached (connection refused or reset), after retries.
    GatewayUnreachable,
    /// The gateway answered something that is not what the web API defines.
    BadResponse,
    /// A cap that cannot be parsed.
    BadCap,
    /// The cap given is too weak for the operation (for example a verify cap
    /// for a gateway check).
    InsufficientAuthority,
    /// This backend cannot perform the operation.
    NotSupported,
    /// A storage server could not be used (native backend).
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unrecoverable => "unrecoverable",
            ErrorCode::GatewayTimeout => "gateway-timeout",
            ErrorCode::GatewayHttp5xx => "gateway-http-5xx",
            ErrorCode::GatewayHttp4xx => "gateway-http-4xx",
            ErrorCode::GatewayUnreachable => "gateway-unreachable",
            ErrorCode::BadResponse => "bad-response",
            ErrorCode::BadCap => "bad-cap",
            ErrorCode::InsufficientAuthority => "insufficient-authority",
            ErrorCode::NotSupported => "not-supported",
            ErrorCode::ServerError => "server-error",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::Unrecoverable,
        ErrorCode::GatewayTimeout,
        ErrorCode::GatewayHttp5xx,
        ErrorCode::GatewayHttp4xx,
        ErrorCode::GatewayUnreachable,
        ErrorCode::BadResponse,
        ErrorCode::BadCap,
        ErrorCode::InsufficientAuthority,
        ErrorCode::NotSupported,
        ErrorCode::ServerError,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a backend operation. The message is one line and names the
/// object only by its storage index or a redacted cap.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct BackendError {
    pub code: ErrorCode,
    pub message: String,
}

impl BackendError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message: String = message.into();
        // Keep messages to one line: they end up inside NDJSON units and on a
        // terminal.
        let message = message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        BackendError { code, message }
    }

    /// Whether the whole run cannot go on (no gateway reachable), as opposed
    /// to a failure that concerns only one object.
    pub fn is_fatal(&self) -> bool {
        self.code == ErrorCode::GatewayUnreachable
    }
}

/// The grid operations the stages need.
///
/// Implementations are shared between many concurrent tasks, so every method
/// takes `&self`; their requests go through the process's
/// [`retry::Stack`], which paces, shares and retries them.
#[async_trait]
pub trait Backend: Send + Sync {
    /// A short human description for logs (`gateway http://127.0.0.1:3456/`).
    fn describe(&self) -> String;

    /// What kind of backend does `op` (`gateway`, `native`): a checkpoint
    /// records it, so that a resume never mixes results of two kinds.
    fn kind(&self, _op: Operation) -> &'static str {
        "backend"
    }

    /// Whether this backend can perform `op` at all.
    fn supports(&self, op: Operation) -> bool;

    /// The weakest cap this backend accepts for `op`: a gateway needs a
    /// read cap to check, the storage servers only a verify cap.
    fn authority_for(&self, _op: Operation) -> Authority {
        Authority::Read
    }

    /// This backend, with its requests counted for `tenant` by the
    /// scheduler (a cheap handle sharing everything else).
    fn for_tenant(&self, tenant: Tenant) -> Arc<dyn Backend>;

    /// List a directory's children.
    async fn list_directory(&self, dir: &Cap) -> Result<Listing, BackendError>;

    /// Check one object: Tahoe's check results (`storage-index`,
    /// `summary`, `results`), typed.
    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<CheckResults, BackendError>;

    /// Check and, if needed, repair one object: Tahoe's
    /// check-and-repair results (`repair-attempted`, `repair-successful`,
    /// `pre-repair-results`, `post-repair-results`), typed.
    async fn repair(&self, cap: &Cap, opts: CheckOptions) -> Result<RepairResults, BackendError>;

    /// Verify every share of one object (a check with `verify`).
    async fn verify(&self, cap: &Cap) -> Result<CheckResults, BackendError> {
        self.check(
            cap,
            CheckOptions {
                verify: true,
                add_lease: false,
            },
        )
        .await
    }

    /// Renew the leases on every share of one object (a check with `add_lease`).
    async fn add_lease(&self, cap: &Cap) -> Result<CheckResults, BackendError> {
        self.check(
            cap,
            CheckOptions {
                verify: false,
                add_lease: true,
            },
        )
        .await
    }
}
