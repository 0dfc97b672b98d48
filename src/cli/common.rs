//! What every subcommand shares: grid options, the backend, signals, the
//! runtime, and turning errors into one-line messages and exit codes.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use steward::backends::{BackendKind, GridConfig};
use steward::config;
use steward::error::{Error, ErrorKind, Exit};
use steward_backend::Scheduler;
use steward_cap::Authority;
use steward_gateway::Gateway;
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
    #[command(flatten)]
    pub patience: Patience,
    /// Requests in flight to one gateway at most (default: --jobs);
    /// steward finds the best number below it unless --fixed-jobs.
    #[arg(long = "per-gateway", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub per_gateway: Option<u64>,
    /// Requests in flight in all, over every gateway and storage server.
    #[arg(long = "max-requests", value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: u64,
    /// Keep exactly --per-gateway requests in flight per gateway (and,
    /// with --backend native, --per-server per storage server), instead of
    /// finding the best number below it (steward measures latencies and
    /// backs off when a server only queues requests).
    #[arg(long = "fixed-jobs")]
    pub fixed_jobs: bool,
}

/// How long to wait for the grid, and how often to try again.
#[derive(Args, Clone, Debug)]
pub struct Patience {
    /// Seconds allowed for a listing or a check (a request still
    /// unanswered after 30 s is logged as slow). A request that timed out
    /// is tried once more.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Seconds allowed for a verify or a repair, which move whole files.
    #[arg(long = "long-timeout", value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub long_timeout: u64,
    /// Retries of a request that failed transiently (connection refused or
    /// reset, 502/503/504), with exponential backoff.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub retries: u32,
}

impl Patience {
    /// Set these on a grid configuration.
    pub fn apply(&self, c: &mut GridConfig) {
        c.timeout = Duration::from_secs(self.timeout);
        c.long_timeout = Duration::from_secs(self.long_timeout);
        c.retries = self.retries;
    }
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
    #[arg(long = "per-server", value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub per_server: u64,
}

/// A window of units worked on at once (at least 1).
pub fn window_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl GridArgs {
    pub fn node_dir(&self) -> PathBuf {
        config::node_directory(self.node_directory.as_deref())
    }

    /// The grid configuration of these options; `jobs` is the default
    /// per-gateway cap.
    pub fn config(&self, jobs: usize, backend: Option<&BackendArgs>) -> GridConfig {
        let mut c = GridConfig::new(self.node_dir());
        c.gateways = self.gateway.clone();
        self.patience.apply(&mut c);
        c.fixed = self.fixed_jobs;
        c.per_gateway = self.per_gateway.map_or(jobs, |n| n as usize).max(1);
        if let Some(b) = backend {
            c.backend = match b.backend {
                BackendArg::Gateway => BackendKind::Gateway,
                BackendArg::Native => BackendKind::Native,
            };
            c.servers = b.servers.clone();
            c.lease_secret = b.lease_secret.clone();
            c.per_server = b.per_server as usize;
        }
        c
    }

    /// The process's scheduler, with this run's budget.
    pub fn scheduler(&self) -> Arc<Scheduler> {
        let s = scheduler();
        s.set_budget(self.max_requests as usize);
        s
    }

    /// The gateway client, with at most `jobs` requests in flight per
    /// gateway (unless --per-gateway), probed: a gateway that is down fails
    /// here, at once.
    pub async fn gateway(&self, jobs: usize) -> Result<Arc<Gateway>, Error> {
        self.config(jobs, None).gateway(&self.scheduler()).await
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

/// The process's request scheduler: every client of the grid shares it.
pub fn scheduler() -> Arc<Scheduler> {
    static SCHED: std::sync::OnceLock<Arc<Scheduler>> = std::sync::OnceLock::new();
    SCHED.get_or_init(|| Scheduler::new(1024)).clone()
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

/// Print a run-ending error as one line and pick the exit code. A closed
/// standard output is no reason for an exit 0: the run did not reach its
/// end, so it cannot say everything is healthy.
pub fn report(e: &Error) -> Exit {
    let label = match e.kind {
        ErrorKind::Interrupted | ErrorKind::OutputClosed => "steward: stopped",
        _ => "steward: error",
    };
    eprintln!("{label}: {e}");
    e.exit()
}

/// Say once, above the progress bar, when an endpoint (a gateway, a
/// storage server) stops answering: its objects' shares count as missing
/// from then on, which an operator must tell from lost shares.
pub fn watch_outages(sched: &Arc<Scheduler>, meter: &steward::progress::Meter) -> Ticking {
    let (sched, meter) = (sched.clone(), meter.clone());
    Ticking(tokio::spawn(async move {
        let mut told = std::collections::HashSet::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for e in sched.endpoints() {
                for o in e.outages() {
                    if o.until.is_none() && told.insert((o.endpoint.clone(), o.since)) {
                        meter.println(&format!(
                            "steward: warning: {} stopped answering at {} ({}); until it answers, the shares it holds count as missing",
                            o.endpoint,
                            clock(o.since),
                            o.reason
                        ));
                    }
                }
            }
        }
    }))
}

/// At the end of a run: every outage it saw, so that the summary says
/// which results a stopped server made look worse.
pub fn report_outages(sched: &Arc<Scheduler>) {
    for e in sched.endpoints() {
        for o in e.outages() {
            eprintln!(
                "steward: {} did not answer from {} {} ({}): objects checked meanwhile may show its shares as missing; check them again",
                o.endpoint,
                clock(o.since),
                match o.until {
                    Some(t) => format!("to {}", clock(t)),
                    None => "to the end of the run".into(),
                },
                o.reason
            );
        }
    }
}

/// A time of day (UTC), for messages.
fn clock(t: std::time::SystemTime) -> String {
    let s = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02} UTC",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

/// A background task stopped when dropped.
pub struct Ticking(tokio::task::JoinHandle<()>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.abort();
    }
}
