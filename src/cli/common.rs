//! What every subcommand shares: grid options, the backend, signals, the
//! runtime, and turning errors into one-line messages and exit codes.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use steward::error::{Error, ErrorKind, Exit};
use steward::{config, output};
use steward_backend::retry::RetryPolicy;
use steward_backend::Scheduler;
use steward_cap::Authority;
use steward_gateway::{Gateway, GatewayOptions};
use tokio::sync::watch;

/// How to reach the grid.
#[derive(Args, Clone, Debug)]
pub struct GridArgs {
    /// Gateway web-API URL; repeat it or separate with commas to spread the
    /// load over several gateways of the same grid. Default: $STEWARD_GATEWAY,
    /// else node.url in the node directory.
    #[arg(long = "gateway", value_name = "URL")]
    pub gateway: Vec<String>,
    /// Tahoe node directory, for node.url and aliases.
    #[arg(long = "node-directory", short = 'd', value_name = "DIR")]
    pub node_directory: Option<PathBuf>,
    /// Seconds allowed for one request.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Retries of a request that failed transiently (connection refused or
    /// reset, 502/503/504, timeout), with exponential backoff.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,
    /// Keep exactly --jobs requests in flight per gateway (and, with
    /// --backend native, --per-server per storage server), instead of
    /// finding the best number below it (steward measures latencies and
    /// backs off when a server only queues requests).
    #[arg(long = "fixed-jobs")]
    pub fixed_jobs: bool,
}

/// The options `check` and `deep-check` share: what each check does, and
/// how the run starts and shows itself.
#[derive(Args, Clone, Debug)]
pub struct CheckRunArgs {
    /// Download and verify every share.
    #[arg(long)]
    pub verify: bool,
    /// Renew the lease on every share found.
    #[arg(long = "add-lease")]
    pub add_lease: bool,
    /// Forget any checkpoint and start over.
    #[arg(long)]
    pub restart: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl CheckRunArgs {
    pub fn check_options(&self) -> steward_backend::CheckOptions {
        steward_backend::CheckOptions {
            verify: self.verify,
            add_lease: self.add_lease,
        }
    }
}

/// Where listings, checks, verifies and lease renewals go.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendArg {
    /// The gateway's web API (needs read caps).
    Gateway,
    /// Straight to the storage servers over their HTTPS storage protocol,
    /// no gateway needed: directories are read and decrypted here (read
    /// caps), checks and verifies need only verify caps. Repair still
    /// goes to a gateway.
    Native,
}

/// Which backend lists and checks, and how to find the storage servers.
#[derive(Args, Clone, Debug)]
pub struct BackendArgs {
    /// List and check through the gateway, or natively with the storage
    /// servers (no gateway needed).
    #[arg(long, value_enum, default_value = "gateway")]
    pub backend: BackendArg,
    /// With --backend native: the storage servers, one NURL per line
    /// (optionally preceded by the server id `v0-...`), instead of the node
    /// directory's private/introducer_default_cache.yaml.
    #[arg(long, value_name = "FILE")]
    pub servers: Option<PathBuf>,
    /// With --backend native and --add-lease: the account's lease secret
    /// file (default: the node directory's private/secret).
    #[arg(long = "lease-secret", value_name = "FILE")]
    pub lease_secret: Option<PathBuf>,
    /// With --backend native: the most requests in flight to one storage
    /// server (steward finds the best number below it from the latencies
    /// it sees, unless --fixed-jobs).
    #[arg(long = "per-server", value_name = "N", default_value_t = 64)]
    pub per_server: usize,
}

impl BackendArgs {
    /// Whether the storage servers are asked directly.
    pub fn is_native(&self) -> bool {
        self.backend == BackendArg::Native
    }

    /// The native backend for these options, checked before any work:
    /// servers whose certificate does not match their NURL refuse the run,
    /// servers that do not answer are warned about. `add_lease`: refuse
    /// now if no lease secret is known.
    pub async fn native(
        &self,
        grid: &GridArgs,
        add_lease: bool,
    ) -> Result<Arc<steward_native::NativeBackend>, Error> {
        let mut nopts = steward_native::NativeOptions {
            per_server_in_flight: self.per_server.max(1),
            adaptive: !grid.fixed_jobs,
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
            nopts.lease_secret = Some(secret);
        }
        let native = match &self.servers {
            Some(f) => steward_native::NativeBackend::from_servers_file(f, nopts, &scheduler()),
            None => {
                steward_native::NativeBackend::from_node_dir(&grid.node_dir(), nopts, &scheduler())
            }
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
            eprintln!("steward: warning: {w}");
        }
        Ok(Arc::new(native))
    }

    /// The checker for these options: the native backend (which checks,
    /// verifies and renews leases itself; `gateway`, if given, is kept for
    /// what it cannot do) or the gateway. `gateway`: a client already made
    /// for this run, to share (one pace per gateway); else one is made when
    /// needed, for `jobs` in flight.
    pub async fn checker(
        &self,
        grid: &GridArgs,
        opts: steward_backend::CheckOptions,
        gateway: Option<Arc<Gateway>>,
        jobs: usize,
    ) -> Result<steward::stage::check::Checker, Error> {
        use steward_backend::Backend;
        match self.backend {
            BackendArg::Gateway => Ok(steward::stage::check::Checker {
                backend: match gateway {
                    Some(g) => g,
                    None => grid.gateway(jobs).await?,
                },
                fallback: None,
                opts,
            }),
            BackendArg::Native => Ok(steward::stage::check::Checker {
                backend: self.native(grid, opts.add_lease).await?,
                fallback: gateway.map(|g| g as Arc<dyn Backend>),
                opts,
            }),
        }
    }
}

/// The strongest cap written into units.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapsArg {
    Write,
    Read,
    Verify,
}

impl From<CapsArg> for Authority {
    fn from(c: CapsArg) -> Self {
        match c {
            CapsArg::Write => Authority::Write,
            CapsArg::Read => Authority::Read,
            CapsArg::Verify => Authority::Verify,
        }
    }
}

impl GridArgs {
    pub fn node_dir(&self) -> PathBuf {
        config::node_directory(self.node_directory.as_deref())
    }

    /// The gateway client, with at most `jobs` requests in flight per
    /// gateway, probed: a gateway that is down fails here, at once.
    pub async fn gateway(&self, jobs: usize) -> Result<Arc<Gateway>, Error> {
        let urls = config::gateway_urls(&self.gateway, &self.node_dir())?;
        let gw = Gateway::new(
            GatewayOptions {
                urls,
                timeout: Duration::from_secs(self.timeout.max(1)),
                retry: RetryPolicy {
                    retries: self.retries,
                    ..Default::default()
                },
                max_in_flight: jobs.max(1),
                adaptive: !self.fixed_jobs,
                ..Default::default()
            },
            scheduler(),
        )?;
        gw.probe().await?;
        Ok(Arc::new(gw))
    }
}

/// The process's request scheduler: every client of the grid shares it.
pub fn scheduler() -> Arc<Scheduler> {
    static SCHED: std::sync::OnceLock<Arc<Scheduler>> = std::sync::OnceLock::new();
    SCHED.get_or_init(|| Scheduler::new(4096)).clone()
}

/// Log to stderr, filtered by STEWARD_LOG (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A watch that turns true on Ctrl-C or SIGTERM.
pub fn stop_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// Run an async command and map its outcome.
///
/// On one thread (tokio's current-thread runtime): steward's work is
/// waiting for answers, and its CPU per object is a few tens of
/// microseconds, so one core serves tens of thousands of objects per
/// second, far more than any grid answers. Measured on the synthetic
/// gateway (10,000 objects, answers held 20 ms), the multi-threaded
/// runtime spent about 20% more CPU, mostly in the kernel waking worker
/// threads for each other. File I/O goes through tokio's blocking pool
/// where it may wait (`tokio::fs`).
pub fn run_async(fut: impl std::future::Future<Output = Result<Exit, Error>>) -> Exit {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(fut) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Print a run-ending error as one line and pick the exit code.
pub fn report(e: &Error) -> Exit {
    if output::is_broken_pipe(e) {
        return Exit::Ok;
    }
    let label = match e.kind {
        ErrorKind::Interrupted => "steward: stopped",
        _ => "steward: error",
    };
    eprintln!("{label}: {e}");
    e.exit()
}
