//! From a grid's configuration to the backends of a run: which gateways,
//! which storage servers, how patient to be, and which backend does which
//! operation ([`steward_backend::route::Routes`]).
//!
//! The command line, `steward dispatch` (one configuration per account)
//! and `steward serve` all build their backends here. Every client made
//! here is registered with the process's one scheduler, so two runs on the
//! same gateway share its pace.
//!
//! Defaults an operator can expect: a listing or a check gets 2 minutes
//! (`--timeout`), a verify or repair an hour (`--long-timeout`: they move
//! whole files); a request still unanswered after 30 s is logged as slow;
//! a request that failed to connect or got 502-504 is retried up to 6
//! times with backoff, one that timed out once (an object that makes a
//! gateway hang makes it hang again). Before a run a gateway is probed,
//! so a gateway that is down fails the run at once.

use crate::config;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use steward_backend::retry::RetryPolicy;
use steward_backend::route::Routes;
use steward_backend::{Backend, CheckOptions, Scheduler};
use steward_gateway::{Gateway, GatewayOptions};

/// Which backend checks and renews leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The gateway's web API (needs read caps).
    Gateway,
    /// The storage servers' HTTPS protocol (a verify cap is enough).
    Native,
}

/// How to reach a grid.
#[derive(Clone, Debug)]
pub struct GridConfig {
    /// Gateway URLs given (`--gateway`); else `$STEWARD_GATEWAY` or the
    /// node directory's node.url.
    pub gateways: Vec<String>,
    pub node_dir: PathBuf,
    /// Time allowed for a listing or a check.
    pub timeout: Duration,
    /// Time allowed for a verify or a repair.
    pub long_timeout: Duration,
    /// Retries of a transient failure.
    pub retries: u32,
    /// Keep the caps below instead of finding the best number of requests
    /// in flight below them.
    pub fixed: bool,
    /// Requests in flight to one gateway at most.
    pub per_gateway: usize,
    pub backend: BackendKind,
    /// With the native backend: a servers file instead of the node
    /// directory's introducer cache.
    pub servers: Option<PathBuf>,
    /// With the native backend and add-lease: the lease secret file.
    pub lease_secret: Option<PathBuf>,
    /// Requests in flight to one storage server at most.
    pub per_server: usize,
    /// Probe a gateway before its first use (a gateway that is down fails
    /// at once). A caller that probes each gateway once itself (dispatch,
    /// for many accounts on one gateway) turns it off.
    pub probe: bool,
}

impl GridConfig {
    /// Defaults for the node directory `node_dir`.
    pub fn new(node_dir: PathBuf) -> GridConfig {
        GridConfig {
            gateways: vec![],
            node_dir,
            timeout: Duration::from_secs(120),
            long_timeout: Duration::from_secs(3600),
            retries: 6,
            fixed: false,
            per_gateway: 64,
            backend: BackendKind::Gateway,
            servers: None,
            lease_secret: None,
            per_server: 64,
            probe: true,
        }
    }

    /// Whether a gateway is configured at all.
    pub fn has_gateway(&self) -> bool {
        config::gateway_urls(&self.gateways, &self.node_dir).is_ok()
    }

    /// The gateway client, probed: a gateway that is down fails here, at
    /// once.
    pub async fn gateway(&self, sched: &Arc<Scheduler>) -> Result<Arc<Gateway>> {
        let urls = config::gateway_urls(&self.gateways, &self.node_dir)?;
        let gw = Gateway::new(
            GatewayOptions {
                urls,
                timeout: self.timeout,
                long_timeout: self.long_timeout,
                retry: RetryPolicy {
                    retries: self.retries,
                    ..Default::default()
                },
                max_in_flight: self.per_gateway.max(1),
                adaptive: !self.fixed,
            },
            sched.clone(),
        )?;
        if self.probe {
            gw.probe().await?;
        }
        Ok(Arc::new(gw))
    }

    /// The native backend, checked before any work: a server whose
    /// certificate does not match its NURL refuses the run; one that does
    /// not answer is a warning, given to `warn`.
    pub async fn native(
        &self,
        sched: &Arc<Scheduler>,
        add_lease: bool,
        warn: &dyn Fn(&str),
    ) -> Result<steward_native::NativeBackend> {
        let mut opts = steward_native::NativeOptions {
            per_server_in_flight: self.per_server.max(1),
            adaptive: !self.fixed,
            ..Default::default()
        };
        if let Some(f) = &self.lease_secret {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::io(format!("lease secret {}", f.display()), e))?;
            let secret = steward_cap::base32::decode(text.trim()).map_err(|_| {
                Error::config(format!(
                    "{} is not a Tahoe lease secret (base32 text)",
                    f.display()
                ))
            })?;
            opts.lease_secret = Some(secret);
        }
        let native = match &self.servers {
            Some(f) => steward_native::NativeBackend::from_servers_file(f, opts, sched),
            None => steward_native::NativeBackend::from_node_dir(&self.node_dir, opts, sched),
        }
        .map_err(|e| Error::config(e.message))?;
        if add_lease {
            native
                .require_add_lease()
                .map_err(|e| Error::config(e.message))?;
        }
        for w in native
            .preflight()
            .await
            .map_err(|e| Error::config(e.message))?
        {
            warn(&format!("steward: warning: {w}"));
        }
        Ok(native)
    }

    /// The backends of a run that checks with `opts`: with the gateway
    /// backend, the gateway does everything; with the native backend, the
    /// storage servers do what they can (checks, lease renewals) and a
    /// gateway, if one is configured, the rest (listings, verifies,
    /// repairs). `need_gateway`: the run cannot go without one (it lists
    /// directories or repairs), so a missing or unreachable gateway fails
    /// it here.
    pub async fn routes(
        &self,
        sched: &Arc<Scheduler>,
        opts: CheckOptions,
        need_gateway: bool,
        warn: &dyn Fn(&str),
    ) -> Result<Routes> {
        match self.backend {
            BackendKind::Gateway => {
                let gw: Arc<dyn Backend> = self.gateway(sched).await?;
                Ok(Routes::single(gw))
            }
            BackendKind::Native => {
                let native: Arc<dyn Backend> =
                    Arc::new(self.native(sched, opts.add_lease, warn).await?);
                let gateway: Option<Arc<dyn Backend>> = if need_gateway || self.has_gateway() {
                    match self.gateway(sched).await {
                        Ok(g) => Some(g),
                        Err(e) if need_gateway => return Err(e),
                        Err(_) => None,
                    }
                } else {
                    None
                };
                let mut prefer = vec![native];
                prefer.extend(gateway);
                let routes = Routes::first_capable(&prefer);
                Ok(routes)
            }
        }
    }
}
