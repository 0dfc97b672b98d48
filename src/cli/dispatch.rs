//! `steward dispatch ACCOUNTS.toml --state DIR` and `steward dispatch
//! status --state DIR [--json]`.

use super::common::{stop_signal, window_arg, Patience};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use steward::dispatch::run::{
    open_state, open_state_read_only, rows_json, rows_table, DispatchOptions, View, REPORT_FILE,
};
use steward::dispatch::view::{LogView, TerminalView};
use steward::dispatch::{accounts, metrics};
use steward::error::{Error, Exit};
use steward::progress::Meter;
use steward::store::jobs::{JobStage, Jobs};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DispatchArgs {
    #[command(subcommand)]
    pub command: Option<DispatchCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum DispatchCommand {
    /// Print where every account stands (also while a dispatch runs).
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The dispatch's state directory.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The accounts file (see the README: [[account]] tables).
    #[arg(value_name = "ACCOUNTS.toml")]
    pub accounts: Option<PathBuf>,
    /// Where the accounts' outputs and the job table live (created 0700).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Requests in flight in all, over every account and gateway.
    #[arg(long, short = 'j', default_value_t = 64, value_parser = window_arg)]
    pub jobs: usize,
    /// Requests in flight to one gateway at most (default: --jobs), however
    /// many accounts use it.
    #[arg(long = "per-gateway", value_name = "M", value_parser = window_arg)]
    pub per_gateway: Option<usize>,
    /// Directories listed at once, per account.
    #[arg(long = "list-jobs", default_value_t = 8, value_parser = window_arg)]
    pub list_jobs: usize,
    /// Accounts worked on at once.
    #[arg(long = "accounts-at-once", default_value_t = 64, value_parser = window_arg)]
    pub accounts_at_once: usize,
    /// Do not run accounts completed less than SECS seconds ago (default:
    /// every account, every run).
    #[arg(long = "max-age", value_name = "SECS")]
    pub max_age: Option<u64>,
    /// Run these accounts whatever their age.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub rerun: Vec<String>,
    #[command(flatten)]
    pub patience: Patience,
    /// Keep exactly --per-gateway requests in flight per gateway.
    #[arg(long = "fixed-jobs")]
    pub fixed_jobs: bool,
    /// Serve Prometheus text metrics at http://ADDR/metrics while running
    /// (a port alone listens on loopback).
    #[arg(long = "metrics-listen", value_name = "ADDR", value_parser = metrics::listen_addr)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// No live lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub async fn run(a: DispatchArgs) -> Result<Exit, Error> {
    match a.command {
        Some(DispatchCommand::Status(s)) => status(s).await,
        None => dispatch(a.run).await,
    }
}

async fn status(s: StatusArgs) -> Result<Exit, Error> {
    // A dispatch creating the state right now: wait a moment for it.
    let mut tries = 0;
    let store = loop {
        match open_state_read_only(&s.state) {
            Err(e) if e.kind == steward::error::ErrorKind::Locked && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => break r?,
        }
    };
    let rows = store.jobs().await?;
    if s.json {
        println!("{}", rows_json(&rows));
    } else {
        print!("{}", rows_table(&rows));
    }
    Ok(Exit::Ok)
}

async fn dispatch(r: RunArgs) -> Result<Exit, Error> {
    let (Some(file), Some(state)) = (r.accounts.as_ref(), r.state.as_ref()) else {
        return Err(Error::config(
            "usage: steward dispatch ACCOUNTS.toml --state DIR (or: steward dispatch status --state DIR)",
        ));
    };
    // The file is refused whole before any work.
    let accounts = accounts::load(file)?;
    let store = open_state(state)?;
    let jobs: Arc<dyn Jobs> = store.clone();
    let _metrics = match r.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::io(format!("--metrics-listen {addr}"), e))?;
            let jobs = jobs.clone();
            Some(Abort(tokio::spawn(metrics::serve(listener, jobs))))
        }
        None => None,
    };
    let opts = DispatchOptions {
        state: state.clone(),
        jobs: r.jobs,
        per_gateway: r.per_gateway,
        list_jobs: r.list_jobs,
        accounts_at_once: r.accounts_at_once,
        timeout: Duration::from_secs(r.patience.timeout),
        long_timeout: Duration::from_secs(r.patience.long_timeout),
        retries: r.patience.retries,
        fixed: r.fixed_jobs,
        max_age: r.max_age.map(Duration::from_secs),
        rerun: r.rerun.clone(),
        lease: Duration::from_secs(60),
    };
    let terminal =
        Meter::wanted(r.quiet).then(|| Arc::new(TerminalView::new(accounts.len() as u64)));
    let view: Arc<dyn View> = match &terminal {
        Some(t) => t.clone(),
        None => Arc::new(LogView),
    };
    let sched = super::common::scheduler();
    let outcome =
        steward::dispatch::run::run(&accounts, jobs, opts, sched.clone(), view, stop_signal())
            .await;
    if let Some(t) = &terminal {
        t.finish();
    }
    super::common::report_outages(&sched);
    let outcome = outcome?;
    let report = rows_json(&outcome.rows);
    write_report(&state.join(REPORT_FILE), &report)?;
    print!("{}", rows_table(&outcome.rows));
    let (checked, reused) = outcome.checks;
    if reused > 0 {
        println!("{checked} checks sent, {reused} answered by another account's check of a shared object");
    }
    if outcome.interrupted {
        eprintln!(
            "steward: stopped: run the same command again to resume every account where it stopped"
        );
        return Ok(Exit::Interrupted);
    }
    let failed = outcome
        .rows
        .iter()
        .any(|r| r.progress.stage == JobStage::Failed);
    let findings = outcome.rows.iter().any(|r| {
        r.progress.stage == JobStage::Done
            && r.last_report
                .get("findings")
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
                > 0
    });
    Ok(if failed {
        Exit::Failed
    } else if findings {
        Exit::Findings
    } else {
        Exit::Ok
    })
}

/// Write the final report whole or not at all (a temporary file renamed
/// over it), 0600.
fn write_report(path: &std::path::Path, report: &serde_json::Value) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = steward::output::create_temporary(&tmp)
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    let text = serde_json::to_string_pretty(report).expect("serializable") + "\n";
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(())
}

/// A background task stopped when dropped.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}
