//! `steward dispatch ACCOUNTS.toml --state DIR` and `steward dispatch
//! status --state DIR [--json]`; with `--store postgres://...` instead of
//! (or beside) `--state`, the job table, the stages' state and their units
//! live in a PostgreSQL database that several workers share, and `steward
//! dispatch export` writes an account's stage out as its NDJSON file.

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
use steward::pipeline::chain::database_units;
use steward::progress::Meter;
use steward::store::jobs::{JobStage, Jobs};
use steward::store::postgres::{is_postgres_url, redact_store_url, PostgresStore};
use steward::store::StageName;

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
    /// Write one account's stage, from a dispatch's database, as the NDJSON
    /// file the standalone stage writes (byte for byte).
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The dispatch's database (postgres://USER@HOST:PORT/DATABASE).
    #[arg(long, value_name = "URL")]
    pub store: String,
    #[arg(long, value_name = "NAME")]
    pub account: String,
    /// manifest, check or repair.
    #[arg(long, value_name = "STAGE", value_parser = ["manifest", "check", "repair"])]
    pub stage: String,
    /// The file to write (created 0600; never through a symlink).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The dispatch's state directory.
    #[arg(long, value_name = "DIR", required_unless_present = "store")]
    pub state: Option<PathBuf>,
    /// The dispatch's database (postgres://USER@HOST:PORT/DATABASE).
    #[arg(long, value_name = "URL", conflicts_with = "state")]
    pub store: Option<String>,
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
    /// Keep the job table, the stages' state and their units in this
    /// PostgreSQL database (postgres://USER[:PASSWORD]@HOST:PORT/DATABASE),
    /// shared by every worker that dispatches the same accounts. With
    /// --state too, the final report is also written there.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Seconds a worker's claim on an account lasts unless renewed (it is
    /// renewed every 5 s, or three times per lease when that is shorter):
    /// after a worker dies, another takes its accounts over this long
    /// after its last renewal.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..))]
    pub lease: u64,
    /// Requests in flight to one gateway at most over every worker sharing
    /// the --store database (each takes its share; --per-gateway still caps
    /// each worker).
    #[arg(long = "cluster-per-gateway", value_name = "M", value_parser = window_arg, requires = "store")]
    pub cluster_per_gateway: Option<usize>,
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
    /// Memory for check answers other accounts may reuse (shared
    /// objects), in bytes or with K, M or G (default 64M). Older answers
    /// go to the state store, so a shared object is still checked once
    /// per round; more memory means fewer of them written there.
    #[arg(long = "reuse-memory", value_name = "SIZE", default_value = "64M", value_parser = size_arg)]
    pub reuse_memory: usize,
    /// No live lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// A size: bytes, or a number with K, M or G (powers of 1024).
fn size_arg(s: &str) -> Result<usize, String> {
    let (n, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    n.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size: give bytes, or a number with K, M or G (64M)"))
}

pub async fn run(a: DispatchArgs) -> Result<Exit, Error> {
    match a.command {
        Some(DispatchCommand::Status(s)) => status(s).await,
        Some(DispatchCommand::Export(e)) => export(e).await,
        None => dispatch(a.run).await,
    }
}

/// A `--store` argument: a PostgreSQL URL, opened (schema created or
/// migrated).
async fn open_database(url: &str) -> Result<PostgresStore, Error> {
    if !is_postgres_url(url) {
        return Err(Error::config(format!(
            "--store {}: not a PostgreSQL URL: give postgres://USER@HOST:PORT/DATABASE (or use --state DIR for a single machine)",
            redact_store_url(url)
        )));
    }
    PostgresStore::open(url).await
}

async fn export(e: ExportArgs) -> Result<Exit, Error> {
    let store = open_database(&e.store).await?;
    let stage = match e.stage.as_str() {
        "manifest" => StageName::Traverse,
        "check" => StageName::Check,
        _ => StageName::Repair,
    };
    let table = database_units(&store, &e.account, stage);
    let _lock = steward::lock::RunLock::acquire(&e.output)?;
    let mut out = steward::output::Output::open_file(&e.output, None)?;
    let committed = table.export(&mut |line| out.write_line(line)).await?;
    out.sync()?;
    if !committed.done {
        eprintln!(
            "steward: dispatch export: the {} stage of {} has not finished: {} holds what it committed so far",
            e.stage,
            e.account,
            e.output.display()
        );
        return Ok(Exit::Incomplete);
    }
    Ok(Exit::Ok)
}

async fn status(s: StatusArgs) -> Result<Exit, Error> {
    let rows = match (&s.store, &s.state) {
        (Some(url), _) => open_database(url).await?.jobs().await?,
        (None, Some(state)) => {
            // A dispatch creating the state right now: wait a moment for it.
            let mut tries = 0;
            let store = loop {
                match open_state_read_only(state) {
                    Err(e) if e.kind == steward::error::ErrorKind::Locked && tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    r => break r?,
                }
            };
            store.jobs().await?
        }
        (None, None) => unreachable!("clap requires one"),
    };
    if s.json {
        println!("{}", rows_json(&rows));
    } else {
        print!("{}", rows_table(&rows));
    }
    Ok(Exit::Ok)
}

async fn dispatch(r: RunArgs) -> Result<Exit, Error> {
    let usage = "usage: steward dispatch ACCOUNTS.toml --state DIR | --store postgres://... (or: steward dispatch status --state DIR | --store URL)";
    let Some(file) = r.accounts.as_ref() else {
        return Err(Error::config(usage));
    };
    if r.state.is_none() && r.store.is_none() {
        return Err(Error::config(usage));
    }
    // The file is refused whole before any work.
    let accounts = accounts::load(file)?;
    let (jobs, database): (Arc<dyn Jobs>, _) = match (&r.store, &r.state) {
        (Some(url), _) => {
            let db = open_database(url).await?;
            (Arc::new(db.clone()), Some(db))
        }
        (None, Some(state)) => (open_state(state)?, None),
        (None, None) => unreachable!("checked above"),
    };
    if let (Some(_), Some(state)) = (&database, &r.state) {
        std::fs::create_dir_all(state)
            .map_err(|e| Error::io(format!("creating {}", state.display()), e))?;
    }
    let live = Arc::new(metrics::LiveErrors::default());
    let _metrics = match r.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::io(format!("--metrics-listen {addr}"), e))?;
            let jobs = jobs.clone();
            Some(Abort(tokio::spawn(metrics::serve(
                listener,
                jobs,
                live.clone(),
            ))))
        }
        None => None,
    };
    let opts = DispatchOptions {
        state: r.state.clone().unwrap_or_default(),
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
        lease: Duration::from_secs(r.lease),
        database,
        cluster_per_gateway: r.cluster_per_gateway,
        reuse_memory: r.reuse_memory,
        live,
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
    if let Some(state) = &r.state {
        write_report(&state.join(REPORT_FILE), &report)?;
    }
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
