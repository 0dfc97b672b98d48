//! The set of storage servers a native backend talks to: building it from
//! a node directory or a servers file, checking before a run that the
//! servers answer and are the pinned ones, and per-server statistics.

use crate::discovery::{self, ServerInfo};
use crate::lease::LeaseSecrets;
use crate::server::{Failure, Server};
use crate::{setup_error, NativeBackend, NativeOptions, ServerSet};
use futures::future::join_all;
use std::path::Path;
use std::sync::Arc;
use steward_backend::sched::{Scheduler, Tenant};
use steward_backend::{BackendError, ErrorCode};

impl NativeBackend {
    /// A backend for these servers. `opts.lease_secret` is kept for
    /// add-lease; without it [`NativeBackend::require_add_lease`] and every
    /// add-lease check fail at once with a clear message.
    pub fn new(
        servers: Vec<ServerInfo>,
        opts: NativeOptions,
        source: impl Into<String>,
        sched: &Arc<Scheduler>,
    ) -> Result<NativeBackend, BackendError> {
        Self::with_skipped(servers, Vec::new(), opts, source, sched)
    }

    fn with_skipped(
        servers: Vec<ServerInfo>,
        skipped: Vec<String>,
        opts: NativeOptions,
        source: impl Into<String>,
        sched: &Arc<Scheduler>,
    ) -> Result<NativeBackend, BackendError> {
        let source = source.into();
        if servers.is_empty() {
            return Err(setup_error(format!(
                "no storage server with an HTTPS storage NURL found in {source}"
            )));
        }
        let mut built = Vec::with_capacity(servers.len());
        for s in servers {
            built.push(Arc::new(Server::new(s, &opts, sched).map_err(setup_error)?));
        }
        Ok(NativeBackend {
            set: Arc::new(ServerSet {
                servers: built,
                lease: opts.lease_secret.as_deref().map(LeaseSecrets::new),
                source,
                skipped,
                budget: crate::fetch::ReadBudget::new(),
                stats: Default::default(),
                learnt: Default::default(),
            }),
            tenant: Tenant::default(),
        })
    }

    /// Servers from a Tahoe node directory's
    /// `private/introducer_default_cache.yaml` (read only). If
    /// `opts.lease_secret` is `None`, the node's `private/secret` is used
    /// for add-lease when the file exists.
    pub fn from_node_dir(
        path: &Path,
        mut opts: NativeOptions,
        sched: &Arc<Scheduler>,
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
        NativeBackend::with_skipped(
            found.servers,
            found.skipped,
            opts,
            cache.display().to_string(),
            sched,
        )
    }

    /// Servers from a servers file: one `[<server id>] <NURL>` per line,
    /// `#` comments (see [`ServerInfo::from_servers_line`]).
    pub fn from_servers_file(
        path: &Path,
        opts: NativeOptions,
        sched: &Arc<Scheduler>,
    ) -> Result<NativeBackend, BackendError> {
        let servers = discovery::read_servers_file(path).map_err(setup_error)?;
        NativeBackend::new(servers, opts, path.display().to_string(), sched)
    }

    /// The servers this backend talks to.
    pub fn servers(&self) -> Vec<&ServerInfo> {
        self.set.servers.iter().map(|s| &s.info).collect()
    }

    /// Announced servers left out because they offer no usable NURL.
    pub fn skipped_servers(&self) -> &[String] {
        &self.set.skipped
    }

    /// Requests sent to each server so far, in [`NativeBackend::servers`] order.
    pub fn requests_sent(&self) -> Vec<u32> {
        self.set.servers.iter().map(|s| s.requests_sent()).collect()
    }

    /// TLS connections made to each server so far, in
    /// [`NativeBackend::servers`] order.
    pub fn connections_made(&self) -> Vec<u32> {
        self.set
            .servers
            .iter()
            .map(|s| s.connections_made())
            .collect()
    }

    /// The most requests ever in flight at once to each server, in
    /// [`NativeBackend::servers`] order (never above
    /// [`NativeOptions::per_server_in_flight`]).
    pub fn peak_in_flight(&self) -> Vec<u32> {
        self.set
            .servers
            .iter()
            .map(|s| s.peak_in_flight())
            .collect()
    }

    /// Whether add-lease is possible (a lease secret was given).
    pub fn can_add_lease(&self) -> bool {
        self.set.lease.is_some()
    }

    /// Fails, with a message saying what to do, unless add-lease is possible.
    /// Call it before starting an add-lease run.
    pub fn require_add_lease(&self) -> Result<(), BackendError> {
        if self.set.lease.is_some() {
            return Ok(());
        }
        Err(BackendError::new(
            ErrorCode::NotSupported,
            format!(
                "add-lease with the native backend needs the account's lease secret (the node directory's private/secret), and none was given for {}: without it, leases would be added under a stranger's secret instead of renewing the account's",
                self.set.source
            ),
        ))
    }

    /// Ask every server for its version: `(server id, outcome)` for each, so
    /// that a run can report unreachable servers, or refuse a server whose
    /// certificate does not match its NURL, before any work.
    pub async fn probe(&self) -> Vec<(String, Result<(), BackendError>)> {
        join_all(self.set.servers.iter().map(|s| async move {
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
            self.set
                .servers
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
        if warnings.len() == self.set.servers.len() {
            return Err(setup_error(format!(
                "none of the {} storage servers of {} answers: is the grid up? {}",
                self.set.servers.len(),
                self.set.source,
                warnings.first().cloned().unwrap_or_default()
            )));
        }
        Ok(warnings)
    }
}
