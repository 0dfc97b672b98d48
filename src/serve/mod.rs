//! `steward serve`: Tahoe's streaming deep operations over HTTP, run by
//! steward, in front of a gateway.
//!
//! A node directory whose `node.url` points at `steward serve` serves the
//! stock `tahoe` CLI for everything: `tahoe manifest` and `tahoe
//! deep-check` reach steward's own walk (parallel, and going on past
//! unrecoverable objects where Tahoe's stream stops), and every other
//! request (`ls`, `put`, `get`, `check`, `stats`...) is passed to the
//! gateway unchanged.
//!
//! Parts, one concept each:
//!
//! * [`router`]: which handler answers, and the layers every request
//!   passes;
//! * [`tahoe_stream`]: the `t=stream-manifest` / `t=stream-deep-check`
//!   endpoints (requests, errors before streaming, the response stream);
//! * [`lines`]: units shaped for the stock CLI, under its line limit;
//! * [`operation`]: running one operation through the stages (the narrow
//!   interface a later engine replaces);
//! * [`durable`] and [`api`]: operations that survive the connection and
//!   the service (`/steward/v1/operations`), kept under `--state DIR`;
//! * [`proxy`]: everything else, to the gateway, streamed both ways;
//! * [`access`]: where it may listen, and bearer tokens;
//! * [`limits`]: sizes of request heads and bodies;
//! * [`metrics`] and [`health`]: `GET /steward/v1/metrics` (Prometheus
//!   text) and `GET /steward/v1/healthz`;
//! * [`request_log`] and [`redact`]: one structured line per request, with
//!   no cap or URL password in it;
//! * [`counting`]: bodies that count their bytes.
//!
//! [`run`] serves until the shutdown signal: then it stops accepting
//! connections, tells running operations to stop (Tahoe-style streams end
//! with an `ERROR:` line; operations of `/steward/v1/operations` stop at a
//! checkpoint and stay `running` in the state store, for the next start to
//! resume), and returns once every connection is closed and every operation
//! has stopped, or [`Config::grace`] has passed.

pub mod access;
pub mod api;
pub mod counting;
pub mod durable;
pub mod health;
pub mod limits;
pub mod lines;
pub mod metrics;
pub mod operation;
pub mod proxy;
pub mod redact;
pub mod request_log;
pub mod router;
pub mod tahoe_stream;

use crate::error::{Error, Result};
use metrics::Metrics;
use operation::Operations;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use steward_backend::{Backend, Scheduler};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the service runs.
pub struct Config {
    /// The gateway every other request is passed to.
    pub gateway_url: String,
    /// Lists, checks and repairs (the gateway client, possibly over several
    /// gateways of the grid).
    pub backend: Arc<dyn Backend>,
    pub access: access::Access,
    /// Directory listings in flight per operation.
    pub list_jobs: usize,
    /// Checks (and repairs) in flight per operation.
    pub check_jobs: usize,
    /// With repair: also repair objects whose happiness is below this.
    pub happy: Option<u64>,
    /// How long to wait for connections to close after the shutdown signal.
    pub grace: Duration,
    /// The process-wide request scheduler (each operation is a tenant).
    pub sched: Arc<Scheduler>,
    /// Where operations that survive the connection are kept (none: the
    /// `/steward/v1/operations` endpoints answer 503).
    pub state: Option<PathBuf>,
    /// How long finished operations are kept.
    pub keep_finished: Duration,
    /// Called once everything is ready, just before serving (to say where
    /// it listens: a state directory that cannot be opened fails before).
    pub ready: Option<Box<dyn FnOnce() + Send>>,
}

/// Bind the listening socket (separately from [`run`], so that the caller
/// can say where it listens first).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))
}

/// Serve on `listener` until `shutdown` turns true, then shut down
/// gracefully (see the module doc).
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let strip_authorization = matches!(cfg.access, access::Access::Token(_));
    let upstream = proxy::Upstream::new(&cfg.gateway_url, strip_authorization, metrics.clone())?;
    let ops = Operations::new(
        operation::Grid {
            lister: cfg.backend.clone(),
            checker: cfg.backend.clone(),
            list_jobs: cfg.list_jobs,
            check_jobs: cfg.check_jobs,
            happy: cfg.happy,
            metrics: metrics.clone(),
            sched: cfg.sched.clone(),
        },
        shutdown.clone(),
    );
    let durable = match &cfg.state {
        Some(dir) => Some(
            durable::Durable::open(
                dir,
                cfg.keep_finished,
                durable::Grid {
                    backend: cfg.backend.clone(),
                    sched: cfg.sched.clone(),
                    list_jobs: cfg.list_jobs,
                    check_jobs: cfg.check_jobs,
                    happy: cfg.happy,
                    metrics: metrics.clone(),
                },
                ops.spawner(),
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let settling = durable.clone();
    if let Some(ready) = cfg.ready {
        ready();
    }
    let app = Arc::new(router::App {
        ops,
        upstream,
        metrics,
        durable,
    });
    let service =
        router::router(app, cfg.access).into_make_service_with_connect_info::<SocketAddr>();
    let mut stopping = shutdown.clone();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    let mut deadline = shutdown;
    let grace = cfg.grace;
    let served = tokio::select! {
        r = server => r.map_err(|e| Error::io("serving", e)),
        _ = async move {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("connections still open {} s after the shutdown signal: closing them", grace.as_secs());
            Ok(())
        }
    };
    // Operations that survive the connection stop at a checkpoint; the
    // next start resumes them.
    if let Some(d) = settling {
        if tokio::time::timeout(grace, d.settled()).await.is_err() {
            tracing::warn!(
                "operations still running {} s after the shutdown signal: they resume from their last checkpoint at the next start",
                grace.as_secs()
            );
        }
    }
    served
}
