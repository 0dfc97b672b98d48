//! Running a dispatch: every due account's deep check (manifest -> check
//! -> repair), all of them at once in one process, under one scheduler.
//!
//! Nothing here paces requests or keeps checkpoints of its own:
//!
//! * the process's [`Scheduler`] holds the one budget (`--jobs` requests in
//!   flight in all) and every gateway's cap (`--per-gateway`); each account
//!   is a [`Tenant`] of it with its `weight`, so shares of the grid's time
//!   are fair by weight and a small account finishes in a time that grows
//!   with its own size;
//! * each account is one [`deep_check`] whose stages write the standalone
//!   stages' files under `STATE/<account>/` (`manifest.ndjson`,
//!   `check.ndjson`, `repair.ndjson`, each resumable by its own checkpoint
//!   beside it);
//! * the job table ([`Jobs`]) says which accounts are due, who works on
//!   which (a claim, renewed while the account runs), and where each stands
//!   for `steward dispatch status`.
//!
//! On a shared PostgreSQL database (`--store`, [`DispatchOptions::database`])
//! several workers share the accounts: the stages keep their state and
//! units in the database instead of files (through a store fenced by the
//! account's claim, so a worker whose claim was taken over writes nothing),
//! a worker with room waits for accounts others hold, and
//! `--cluster-per-gateway` keeps each gateway's cap over all of them
//! ([`crate::store::pg_gateways`]).
//!
//! An account that cannot run (a root that does not parse, an unknown
//! alias, a gateway that does not answer) is recorded as failed with its
//! reason, and the others go on.

use super::accounts::{Account, BackendKind as AccountBackend};
use super::shared::{reused_from, CheckCache, SharedChecks};
use crate::backends::{BackendKind, GridConfig};
use crate::config;
use crate::engine::{Notices, Runner, StatusReport};
use crate::error::{Error, ErrorKind, Result};
use crate::input::{parse_line, LineSource};
use crate::pipeline::chain::{database_units, forget_database_runs};
use crate::pipeline::{deep_check, DeepCheck, DeepCheckOutput, StageFiles};
use crate::report::Report;
use crate::stage::check::Checker;
use crate::stage::repair::{RepairPolicy, Repairer};
use crate::stage::traverse::TraverseOptions;
use crate::stage::MappedOptions;
use crate::store::jobs::{
    AccountSpec, Claim, JobCounts, JobProgress, JobRow, JobStage, Jobs, Outcome, RoundPolicy,
};
use crate::store::pg_gateways::ClusterCap;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::{Format, SqliteStore};
use crate::store::StageName;
use crate::unit::Unit;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steward_backend::{Backend, CheckOptions, Scheduler, Tenant};
use steward_cap::Authority;
use tokio::sync::watch;

/// How often a worker renews its claim on an account and records the
/// account's progress (what `status` shows is at most this old), unless
/// the lease is short ([`keep_every`]).
const KEEP_EVERY: Duration = Duration::from_secs(5);

/// The renewal period for claims of `lease`: [`KEEP_EVERY`], but at least
/// three renewals per lease, so that a live worker's claim does not run
/// out between two of them (and a slow commit still leaves room).
fn keep_every(lease: Duration) -> Duration {
    KEEP_EVERY.min(lease / 3)
}

/// The state store's file in the state directory.
pub const STATE_FILE: &str = "state.sqlite";
/// The final report's file in the state directory.
pub const REPORT_FILE: &str = "report.json";

/// How a dispatch runs (the command line's options).
#[derive(Clone, Debug)]
pub struct DispatchOptions {
    pub state: PathBuf,
    /// Requests in flight in all (the scheduler's budget).
    pub jobs: usize,
    /// Requests in flight to one gateway at most (default: `jobs`).
    pub per_gateway: Option<usize>,
    /// Directories listed at once, per account.
    pub list_jobs: usize,
    /// Accounts worked on at once.
    pub accounts_at_once: usize,
    pub timeout: Duration,
    pub long_timeout: Duration,
    pub retries: u32,
    pub fixed: bool,
    pub max_age: Option<Duration>,
    pub rerun: Vec<String>,
    /// How long a claim holds without being renewed.
    pub lease: Duration,
    /// The units, stage states and job table are in this shared database
    /// (`--store postgres://...`), not under `state`: several workers may
    /// share the accounts.
    pub database: Option<PostgresStore>,
    /// Requests in flight at one gateway over every worker of the cluster
    /// (only with `database`).
    pub cluster_per_gateway: Option<usize>,
    /// Bytes of check answers kept in memory for other accounts to reuse
    /// (older ones go to the state store: [`super::shared`]).
    pub reuse_memory: usize,
    /// Failed requests by account and code, as they happen (for
    /// `--metrics-listen`).
    pub live: Arc<super::metrics::LiveErrors>,
}

/// The files of one account's stages.
pub fn account_files(state: &Path, account: &str) -> StageFiles {
    let dir = state.join(account);
    StageFiles {
        manifest: dir.join("manifest.ndjson"),
        check: dir.join("check.ndjson"),
        repair: dir.join("repair.ndjson"),
    }
}

/// Create a private directory (0700), refusing a symlink in its place.
fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => Err(Error::config(format!(
            "{} is not a directory (a symlink or a file is in the way): give another --state DIR",
            path.display()
        ))),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e)),
    }
}

/// Open the state directory's store for this dispatch, exclusively: a
/// second dispatch on the same directory is refused, naming the first.
pub fn open_state(state: &Path) -> Result<Arc<SqliteStore>> {
    private_dir(state)?;
    match SqliteStore::open(&state.join(STATE_FILE), Format::State) {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) if e.kind == ErrorKind::Locked => {
            let holder = e
                .message
                .split("(process ")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .map(|p| format!(" (process {p})"))
                .unwrap_or_default();
            Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "the state directory {} is in use by another steward dispatch{holder}: wait for it to end (`steward dispatch status --state {}` shows where it stands), or give another --state DIR",
                    state.display(),
                    state.display()
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Open the state directory's store to read it, without its lock (while a
/// dispatch may be running).
pub fn open_state_read_only(state: &Path) -> Result<SqliteStore> {
    let path = state.join(STATE_FILE);
    if !path.exists() {
        return Err(Error::config(format!(
            "{} holds no dispatch state ({} is missing): give the --state DIR of a dispatch",
            state.display(),
            STATE_FILE
        )));
    }
    SqliteStore::open_read_only(&path, Format::State)
}

/// What a dispatch shows a person as it goes.
pub trait View: Notices {
    /// The round has `accounts` accounts to run.
    fn begin(&self, accounts: u64);
    /// An account moved to `stage` (or started, or ended).
    fn stage(&self, account: &str, stage: JobStage, detail: &str);
    /// The live statuses of the accounts being worked on.
    fn track(&self, active: Vec<(String, Vec<StatusReport>)>);
}

/// One account's final report (the deep-check summary's counts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct AccountReport {
    pub objects: u64,
    pub healthy: u64,
    pub unhealthy: u64,
    pub unrecoverable: u64,
    pub repairs_attempted: u64,
    pub repairs_successful: u64,
    pub post_repair_unhealthy: u64,
    /// Objects whose check or repair failed (by code in `errors_by_code`),
    /// directories not listed, caps that do not parse.
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Checks whose result another account's check gave.
    pub reused: u64,
    /// Objects still not healthy at the end.
    pub findings: u64,
}

/// Everything a dispatch run shares.
struct Shared {
    jobs: Arc<dyn Jobs>,
    opts: DispatchOptions,
    sched: Arc<Scheduler>,
    cache: Arc<CheckCache>,
    view: Arc<dyn View>,
    stop: watch::Receiver<bool>,
    worker: String,
    /// The live statuses of the accounts being worked on.
    active: Mutex<HashMap<String, Arc<Runner>>>,
    /// Each set of gateways is probed once, however many accounts use it
    /// (probes do not go through the scheduler: a thousand accounts on one
    /// gateway must not probe it a thousand times at once).
    probes: Mutex<HashMap<Vec<String>, Probe>>,
}

type Probe = Arc<tokio::sync::OnceCell<std::result::Result<(), (ErrorKind, String)>>>;

/// Probe the gateways of `grid` once for the whole dispatch.
async fn probe_once(shared: &Shared, grid: &GridConfig) -> Result<()> {
    let Ok(mut urls) = config::gateway_urls(&grid.gateways, &grid.node_dir) else {
        // No gateway: `routes` says so, in its words.
        return Ok(());
    };
    urls.sort();
    let cell = shared
        .probes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(urls)
        .or_default()
        .clone();
    cell.get_or_init(|| async {
        let mut probing = grid.clone();
        probing.probe = true;
        probing
            .gateway(&shared.sched)
            .await
            .map(|_| ())
            .map_err(|e| (e.kind, e.message))
    })
    .await
    .clone()
    .map_err(|(kind, message)| Error::new(kind, message))
}

/// What the run did, for the exit code.
#[derive(Debug, Default)]
pub struct DispatchOutcome {
    pub interrupted: bool,
    /// Accounts of the file, with their rows after the run.
    pub rows: Vec<JobRow>,
    /// Checks sent to the grid, and answered from another account's.
    pub checks: (u64, u64),
}

/// This worker's name in the job table.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Run a dispatch of `accounts` on the job table `jobs` (held alone by this
/// process) with the scheduler `sched`.
pub async fn run(
    accounts: &[Account],
    jobs: Arc<dyn Jobs>,
    opts: DispatchOptions,
    sched: Arc<Scheduler>,
    view: Arc<dyn View>,
    stop: watch::Receiver<bool>,
) -> Result<DispatchOutcome> {
    sched.set_budget(opts.jobs);
    if jobs.held_alone() {
        // Claims left are a killed run's: no need to wait out their leases.
        jobs.break_claims().await?;
    }
    let specs: Vec<AccountSpec> = accounts
        .iter()
        .map(|a| AccountSpec {
            name: a.name.clone(),
            weight: a.weight,
        })
        .collect();
    jobs.upsert_accounts(&specs).await?;
    let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    for r in &opts.rerun {
        if !names.contains(r) {
            return Err(Error::config(format!(
                "--rerun {r}: no account of that name in the accounts file"
            )));
        }
    }
    let round = jobs
        .start_round(&RoundPolicy {
            accounts: names.clone(),
            max_age: opts.max_age,
            rerun: opts.rerun.clone(),
        })
        .await?;
    let open = jobs
        .jobs()
        .await?
        .iter()
        .filter(|r| names.contains(&r.name) && r.progress.stage.is_open())
        .count();
    view.begin(open as u64);
    if round.resumed {
        view.notice(&format!(
            "steward: dispatch: round {} goes on where it stopped",
            round.number
        ));
    }
    let shared = Arc::new(Shared {
        jobs: jobs.clone(),
        opts: opts.clone(),
        sched,
        cache: CheckCache::for_round(jobs.clone(), round.number, opts.reuse_memory).await?,
        view: view.clone(),
        stop: stop.clone(),
        worker: worker_name(),
        active: Mutex::new(HashMap::new()),
        probes: Mutex::new(HashMap::new()),
    });
    let by_name: HashMap<&str, &Account> = accounts.iter().map(|a| (a.name.as_str(), a)).collect();
    // A cap on each gateway across the cluster: this worker's share of its
    // slots, kept by a task of its own until the end.
    let (cap_stop, cap_stop_rx) = watch::channel(false);
    let cluster_cap = match (&opts.database, opts.cluster_per_gateway) {
        (Some(db), Some(cap)) => {
            // Nothing is sent before the first share is taken (set here, not
            // in the task, which may first run after requests went out).
            shared.sched.set_default_shared_cap(Some(0));
            let share = ClusterCap {
                store: db.clone(),
                worker: shared.worker.clone(),
                cap,
                lease: opts.lease,
            };
            Some(tokio::spawn(share.run(shared.sched.clone(), cap_stop_rx)))
        }
        _ => None,
    };
    let tracker = {
        let shared = shared.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                let active: Vec<(String, Vec<StatusReport>)> = {
                    let a = shared.active.lock().unwrap_or_else(|e| e.into_inner());
                    let mut v: Vec<_> = a.iter().map(|(n, r)| (n.clone(), r.reports())).collect();
                    v.sort_by(|x, y| x.0.cmp(&y.0));
                    v
                };
                shared.view.track(active);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }))
    };
    // The accounts' runs are futures of this task (the stages are not
    // `Send`, and one thread serves them all: see `run_async`).
    let mut set = futures::stream::FuturesUnordered::new();
    let mut interrupted = false;
    let mut fatal: Option<Error> = None;
    // On a shared database, other workers hold accounts too: while any of
    // the round's accounts is still open, a worker with room looks for one
    // to claim (a lease that ran out, an account released) every so often.
    let shared_table = opts.database.is_some();
    let poll = (opts.lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
    let mut stop_rx = stop.clone();
    loop {
        let stopping = *stop.borrow() || fatal.is_some();
        let room = |n: usize| n < opts.accounts_at_once.max(1);
        let mut others_open = false;
        while !stopping && room(set.len()) {
            let Some(claim) = jobs.claim_next(&names, &shared.worker, opts.lease).await? else {
                others_open = shared_table && round_open(&*jobs, &names).await?;
                break;
            };
            let account = (*by_name
                .get(claim.account.as_str())
                .expect("claims are of the file's accounts"))
            .clone();
            let shared = shared.clone();
            set.push(Box::pin(async move {
                run_account(&shared, claim, &account).await
            }));
        }
        let look_again = others_open && !stopping && room(set.len());
        if look_again && set.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop_rx.changed() => {}
            }
            continue;
        }
        let next = futures::StreamExt::next(&mut set);
        let done = if look_again {
            tokio::select! {
                d = next => d,
                _ = tokio::time::sleep(poll) => continue,
                _ = stop_rx.changed() => continue,
            }
        } else {
            next.await
        };
        let Some(done) = done else {
            break;
        };
        match done {
            Ok(AccountEnd::Finished) => {}
            Ok(AccountEnd::Interrupted) => interrupted = true,
            Err(e) => {
                // The table refused a write (a lost claim, a damaged store):
                // stop claiming, let the others reach their checkpoints.
                interrupted = true;
                fatal.get_or_insert(e);
            }
        }
    }
    drop(tracker);
    if let Some(task) = cluster_cap {
        let _ = cap_stop.send(true);
        let _ = task.await;
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    let interrupted = interrupted || *stop.borrow();
    if interrupted {
        // The round goes on later: what memory holds is kept for it.
        shared.cache.keep_all().await;
    }
    let rows = jobs
        .jobs()
        .await?
        .into_iter()
        .filter(|r| names.contains(&r.name))
        .collect();
    Ok(DispatchOutcome {
        interrupted,
        rows,
        checks: shared.cache.counts(),
    })
}

/// Whether any of `names` still has work in the open round (held by
/// another worker, or about to be released).
async fn round_open(jobs: &dyn Jobs, names: &[String]) -> Result<bool> {
    Ok(jobs
        .jobs()
        .await?
        .iter()
        .any(|r| names.contains(&r.name) && r.progress.stage.is_open()))
}

/// A background task, stopped when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum AccountEnd {
    /// Done or failed: recorded in the table.
    Finished,
    /// Stopped at a checkpoint; the claim released, the stage kept.
    Interrupted,
}

/// The backends and plan of one account, or why it cannot run.
async fn prepare(
    shared: &Shared,
    a: &Account,
    tenant: &Tenant,
) -> Result<(DeepCheck, steward_cap::Cap)> {
    let node_dir = config::node_directory(a.node_directory.as_deref());
    let spec = config::parse_root(&a.root, &node_dir)?;
    let o = &shared.opts;
    let mut grid = GridConfig::new(node_dir.clone());
    grid.gateways = a.gateway.clone();
    grid.timeout = o.timeout;
    grid.long_timeout = o.long_timeout;
    grid.retries = o.retries;
    grid.fixed = o.fixed;
    grid.per_gateway = o.per_gateway.unwrap_or(o.jobs).max(1);
    grid.backend = match a.backend {
        AccountBackend::Gateway => BackendKind::Gateway,
        AccountBackend::Native => BackendKind::Native,
    };
    grid.servers = a.servers.clone();
    grid.lease_secret = a.lease_secret.clone();
    let opts = CheckOptions {
        verify: a.verify,
        add_lease: a.add_lease,
    };
    let view = shared.view.clone();
    let name = a.name.clone();
    let warn = move |w: &str| view.notice(&format!("steward: dispatch: {name}: {w}"));
    grid.probe = false;
    probe_once(shared, &grid).await?;
    let routes = grid.routes(&shared.sched, opts, true, &warn).await?;
    let routes: Arc<dyn Backend> = Arc::new(routes);
    let routes: Arc<dyn Backend> = Arc::new(super::metrics::CountErrors {
        inner: routes.for_tenant(tenant.clone()),
        live: o.live.clone(),
        account: a.name.as_str().into(),
    });
    let root = config::resolve_root(&spec, routes.as_ref()).await?;
    // Two accounts share checks when they check the same grid the same
    // way: the same backend and endpoints, and (for lease renewals) the
    // same lease secret.
    let mut gateways = a.gateway.clone();
    gateways.sort();
    let grid_id = format!(
        "{:?}|{gateways:?}|{:?}|{:?}|{:?}",
        a.backend,
        (a.gateway.is_empty() || a.backend == AccountBackend::Native).then_some(&node_dir),
        a.servers,
        a.add_lease.then_some(&a.lease_secret)
    );
    let checks = Arc::new(SharedChecks::new(
        routes.clone(),
        shared.cache.clone(),
        &grid_id,
        &a.name,
    ));
    let plan = DeepCheck {
        lister: routes.clone(),
        traverse: TraverseOptions {
            jobs: o.list_jobs,
            caps: if a.repair {
                Authority::Write
            } else {
                Authority::Read
            },
            ..Default::default()
        },
        checker: Checker {
            backend: checks,
            opts,
        },
        mapped: MappedOptions::new(o.jobs.max(1)),
        repairer: a.repair.then(|| Repairer {
            backend: routes.clone(),
            policy: RepairPolicy {
                repair_below: a.repair_below,
                happy: a.happy.or_else(|| config::happy_from_node(&node_dir)),
                verify: a.verify,
                dry_run: false,
                all: true,
            },
        }),
    };
    Ok((plan, root))
}

/// Remove an account's stage files and their state (under their locks),
/// creating its directory if need be.
fn forget_files(dir: &Path, files: &StageFiles) -> Result<()> {
    private_dir(dir)?;
    let all = [&files.manifest, &files.check, &files.repair];
    let _locks = crate::lock::acquire_all(all.iter().map(|p| p.as_path()))?;
    for p in all {
        crate::pipeline::resume::forget(p)?;
    }
    Ok(())
}

/// Where an account stands, from its stages' statuses.
fn progress_of(reports: &[StatusReport], mut p: JobProgress) -> JobProgress {
    let by = |name: &str| reports.iter().find(|r| r.stage == name);
    let stage = reports
        .iter()
        .find(|r| !r.finished)
        .map(|r| match r.stage {
            "traverse" => JobStage::Manifest,
            "check" => JobStage::Check,
            _ => JobStage::Repair,
        })
        .unwrap_or(p.stage);
    if let Some(t) = by("traverse") {
        p.counts.objects = p.counts.objects.max(t.objects);
    }
    if let Some(c) = by("check") {
        p.counts.checked = p.counts.checked.max(c.objects);
    }
    p.position = match stage {
        JobStage::Manifest => p.counts.objects,
        JobStage::Check => p.counts.checked,
        JobStage::Repair => by("repair").map_or(0, |r| r.objects),
        _ => p.position,
    };
    for r in reports.iter().filter(|r| r.finished) {
        let name = match r.stage {
            "traverse" => "manifest",
            s => s,
        };
        p.timings.entry(name.to_string()).or_insert(r.elapsed_secs);
    }
    if let Some(e) = reports.iter().rev().find_map(|r| r.last_error.clone()) {
        p.last_error = Some(e);
    }
    p.stage = stage;
    p
}

/// Run one claimed account to its end (or to a stop). `Err` only when the
/// job table refuses a write.
async fn run_account(shared: &Arc<Shared>, claim: Claim, a: &Account) -> Result<AccountEnd> {
    // Queued: this round has not touched the account; anything under its
    // directory is an earlier round's, started over. Otherwise the round
    // resumes it where its stages' checkpoints say.
    let fresh = claim.row.progress.stage == JobStage::Queued;
    let mut progress = if fresh {
        JobProgress {
            stage: JobStage::Manifest,
            started: Some(crate::store::now_secs()),
            ..Default::default()
        }
    } else {
        claim.row.progress.clone()
    };
    progress.last_error = None;
    let live = &shared.opts.live;
    live.start(&a.name, progress.errors_by_code.clone());
    let end = run_claimed(shared, claim, a, progress).await;
    live.end(&a.name);
    end
}

/// `p` with the failed requests counted live so far.
fn with_live(live: &super::metrics::LiveErrors, account: &str, mut p: JobProgress) -> JobProgress {
    if let Some(codes) = live.of(account) {
        p.counts.errors = codes.values().sum();
        p.errors_by_code = codes;
    }
    p
}

/// [`run_account`], once its live counts are started.
async fn run_claimed(
    shared: &Arc<Shared>,
    claim: Claim,
    a: &Account,
    mut progress: JobProgress,
) -> Result<AccountEnd> {
    let jobs = &shared.jobs;
    let fresh = claim.row.progress.stage == JobStage::Queued;
    let files = account_files(&shared.opts.state, &a.name);
    // On a shared database every write about the account is fenced by
    // this claim.
    let database = shared
        .opts
        .database
        .as_ref()
        .map(|db| db.fenced(&a.name, claim.token));
    if fresh {
        // An earlier round's files (or rows) go before the account leaves
        // `queued`: once it has, they are this round's, and a restart after
        // a crash resumes them rather than taking the old ones as done.
        let forgotten = match &database {
            Some(store) => forget_database_runs(store, &a.name).await,
            None => forget_files(&shared.opts.state.join(&a.name), &files),
        };
        if let Err(e) = forgotten {
            let message = steward_cap::redact_caps(&e.message);
            jobs.finish(
                &claim,
                &progress,
                &Outcome::Failed {
                    error: message.clone(),
                },
            )
            .await?;
            shared.view.stage(&a.name, JobStage::Failed, &message);
            return Ok(AccountEnd::Finished);
        }
    }
    jobs.update(&claim, &progress).await?;
    shared.view.stage(
        &a.name,
        progress.stage,
        if fresh { "started" } else { "resumed" },
    );
    let tenant = Tenant::new(a.name.clone(), a.weight);
    let runner = Arc::new(Runner::new(
        Some(shared.stop.clone()),
        shared.view.clone() as Arc<dyn Notices>,
        Some((shared.sched.clone(), tenant.clone())),
    ));
    let result = async {
        // Renew the claim and record the progress while the account is
        // prepared (an alias resolved, a gateway asked) and its stages run.
        let claim = Mutex::new(claim.clone());
        let lost: Mutex<Option<Error>> = Mutex::new(None);
        let keeper = async {
            let mut last_stage = progress.stage;
            let mut p = progress.clone();
            loop {
                // Every few seconds, one commit per account: commits are
                // synchronous and fsynced, and every account's share one
                // thread.
                tokio::time::sleep(keep_every(shared.opts.lease)).await;
                p = with_live(
                    &shared.opts.live,
                    &a.name,
                    progress_of(&runner.reports(), p),
                );
                let mut c = claim.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let r = jobs.renew_and_update(&mut c, shared.opts.lease, &p).await;
                if let Err(e) = r {
                    *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    runner.cancel();
                    return;
                }
                *claim.lock().unwrap_or_else(|e| e.into_inner()) = c;
                if p.stage != last_stage {
                    shared.view.stage(&a.name, p.stage, "");
                    last_stage = p.stage;
                }
            }
        };
        let run = async {
            let (plan, root) = prepare(shared, a, &tenant).await?;
            shared
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(a.name.clone(), runner.clone());
            let output = match &database {
                Some(store) => DeepCheckOutput::Database {
                    store: store.clone(),
                    account: &a.name,
                },
                None => DeepCheckOutput::Named {
                    files: &files,
                    restart: false,
                },
            };
            deep_check(plan, &root, output, &runner).await
        };
        // The keeper ends only when the claim is lost, after cancelling the
        // run: the run still goes on to its checkpoints.
        tokio::pin!(run);
        let summary = tokio::select! {
            biased;
            r = &mut run => r,
            () = keeper => run.await,
        };
        if let Some(e) = lost.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let c = claim.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok((summary, c))
    }
    .await;
    shared
        .active
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&a.name);
    let (result, mut claim) = match result {
        Ok((r, c)) => (r, c),
        Err(e) if e.kind == ErrorKind::ClaimLost => return Err(e),
        Err(e) => (Err(e), claim),
    };
    progress = with_live(
        &shared.opts.live,
        &a.name,
        progress_of(&runner.reports(), progress),
    );
    match result {
        Ok(summary) => {
            let src = match &database {
                Some(store) => {
                    let stage = if a.repair {
                        StageName::Repair
                    } else {
                        StageName::Check
                    };
                    let table = database_units(store, &a.name, stage);
                    let (_done, committed) =
                        watch::channel(table.committed().await?.unwrap_or_default());
                    table.source(committed)
                }
                None => {
                    LineSource::open(Some(if a.repair {
                        &files.repair
                    } else {
                        &files.check
                    }))
                    .await?
                }
            };
            // The whole output is read again for the report: the claim is
            // kept meanwhile, or a short lease could lapse during a big
            // account's read and another worker take the account over.
            let read = report_of(src, a.repair);
            tokio::pin!(read);
            let mut report = loop {
                tokio::select! {
                    r = &mut read => break r?,
                    () = tokio::time::sleep(keep_every(shared.opts.lease)) => {
                        jobs.renew(&mut claim, shared.opts.lease).await?;
                    }
                }
            };
            report.errors += summary.traverse.unlisted + summary.traverse.bad_caps;
            report.findings += summary.traverse.unlisted + summary.traverse.bad_caps;
            progress.counts = JobCounts {
                objects: report.objects,
                checked: report.objects,
                unhealthy: report.unhealthy,
                repaired: report.repairs_successful,
                unrecoverable: report.unrecoverable,
                errors: report.errors,
                reused: report.reused,
            };
            progress.errors_by_code = report.errors_by_code.clone();
            progress.position = report.objects;
            let value = serde_json::to_value(&report).expect("serializable");
            jobs.finish(&claim, &progress, &Outcome::Done { report: value })
                .await?;
            shared.view.stage(
                &a.name,
                JobStage::Done,
                &format!(
                    "{} objects, {} unhealthy, {} repaired, {} unrecoverable, {} errors",
                    report.objects,
                    report.unhealthy,
                    report.repairs_successful,
                    report.unrecoverable,
                    report.errors
                ),
            );
            Ok(AccountEnd::Finished)
        }
        Err(e) if e.kind == ErrorKind::Interrupted => {
            progress.last_error = None;
            jobs.update(&claim, &progress).await?;
            jobs.release(&claim).await?;
            Ok(AccountEnd::Interrupted)
        }
        Err(e) => {
            let message = steward_cap::redact_caps(&e.message);
            jobs.finish(
                &claim,
                &progress,
                &Outcome::Failed {
                    error: message.clone(),
                },
            )
            .await?;
            shared.view.stage(&a.name, JobStage::Failed, &message);
            Ok(AccountEnd::Finished)
        }
    }
}

/// The report of an account's final units.
async fn report_of(mut src: LineSource, repair: bool) -> Result<AccountReport> {
    let mut rep = Report::new(repair, false);
    let mut out = AccountReport::default();
    while let Some(line) = src.next_line().await? {
        if let Ok(Some(u)) = parse_line(&line) {
            if let Unit::Object(o) = &u {
                if o.check_results.as_ref().and_then(reused_from).is_some() {
                    out.reused += 1;
                }
                if let Some(e) = &o.error {
                    out.errors += 1;
                    *out.errors_by_code.entry(e.code.clone()).or_default() += 1;
                }
            }
            rep.add(&u, &mut std::io::sink());
        }
    }
    out.objects = rep.objects;
    out.healthy = rep.healthy;
    out.unhealthy = rep.unhealthy;
    out.unrecoverable = rep.unrecoverable;
    out.repairs_attempted = rep.repairs_attempted;
    out.repairs_successful = rep.repairs_successful;
    out.post_repair_unhealthy = rep.post_unhealthy;
    out.findings = rep.still_unhealthy.len() as u64;
    Ok(out)
}

/// The JSON of the table's rows: what `status --json` prints and the final
/// report holds.
pub fn rows_json(rows: &[JobRow]) -> Value {
    let now = crate::store::now_secs();
    let mut total = AccountReport::default();
    let accounts: Vec<Value> = rows
        .iter()
        .map(|r| {
            if let Ok(rep) = serde_json::from_value::<AccountReport>(r.last_report.clone()) {
                if r.progress.stage == JobStage::Done {
                    add_report(&mut total, &rep);
                }
            }
            json!({
                "name": r.name,
                "weight": r.weight,
                "round": r.round,
                "stage": r.progress.stage.as_str(),
                "position": r.progress.position,
                "counts": r.progress.counts,
                "timings": r.progress.timings,
                "started": r.progress.started,
                "last_error": r.progress.last_error,
                "last_completed": r.last_completed,
                "age_secs": r.last_completed.map(|t| now.saturating_sub(t)),
                "worker": r.holder.as_ref().map(|h| h.worker.clone()),
                "report": r.last_report,
            })
        })
        .collect();
    json!({ "accounts": accounts, "total": total })
}

fn add_report(t: &mut AccountReport, r: &AccountReport) {
    t.objects += r.objects;
    t.healthy += r.healthy;
    t.unhealthy += r.unhealthy;
    t.unrecoverable += r.unrecoverable;
    t.repairs_attempted += r.repairs_attempted;
    t.repairs_successful += r.repairs_successful;
    t.post_repair_unhealthy += r.post_repair_unhealthy;
    t.errors += r.errors;
    for (k, v) in &r.errors_by_code {
        *t.errors_by_code.entry(k.clone()).or_default() += v;
    }
    t.reused += r.reused;
    t.findings += r.findings;
}

/// The table `status` prints (and the end of a dispatch).
pub fn rows_table(rows: &[JobRow]) -> String {
    let now = crate::store::now_secs();
    let mut out = format!(
        "{:<20} {:<9} {:>9} {:>9} {:>8} {:>13} {:>6}  {:<20} {}\n",
        "ACCOUNT",
        "STAGE",
        "OBJECTS",
        "UNHEALTHY",
        "REPAIRED",
        "UNRECOVERABLE",
        "ERRORS",
        "LAST COMPLETED",
        "AGE"
    );
    let mut totals = JobCounts::default();
    for r in rows {
        let c = &r.progress.counts;
        totals.objects += c.objects;
        totals.unhealthy += c.unhealthy;
        totals.repaired += c.repaired;
        totals.unrecoverable += c.unrecoverable;
        totals.errors += c.errors;
        out.push_str(&format!(
            "{:<20} {:<9} {:>9} {:>9} {:>8} {:>13} {:>6}  {:<20} {}\n",
            r.name,
            r.progress.stage.as_str(),
            c.objects,
            c.unhealthy,
            c.repaired,
            c.unrecoverable,
            c.errors,
            r.last_completed.map_or("never".into(), utc),
            r.last_completed
                .map_or("-".into(), |t| age(now.saturating_sub(t))),
        ));
        if let (JobStage::Failed, Some(e)) = (r.progress.stage, &r.progress.last_error) {
            out.push_str(&format!("  {}: {e}\n", r.name));
        }
    }
    out.push_str(&format!(
        "{:<20} {:<9} {:>9} {:>9} {:>8} {:>13} {:>6}\n",
        "TOTAL",
        "",
        totals.objects,
        totals.unhealthy,
        totals.repaired,
        totals.unrecoverable,
        totals.errors
    ));
    out
}

/// A time as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(t: u64) -> String {
    let days = (t / 86400) as i64;
    let s = t % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// A duration as `3d4h`, `5h12m`, `7m3s`, `12s`.
fn age(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{}h", s / 86400, (s / 3600) % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims are renewed well within their lease, however short (the
    /// shortest `--lease` is 2 s): a renewal every 5 s let a 3 s lease run
    /// out under a live worker.
    #[test]
    fn claims_are_renewed_three_times_per_lease_at_least() {
        for secs in [2, 3, 4, 5, 15, 60, 3600] {
            let lease = Duration::from_secs(secs);
            assert!(keep_every(lease) * 3 <= lease, "{secs} s");
            assert!(keep_every(lease) <= KEEP_EVERY);
            assert!(keep_every(lease) > Duration::ZERO);
        }
        assert_eq!(keep_every(Duration::from_secs(60)), KEEP_EVERY);
    }

    #[test]
    fn times_read_as_a_person_reads_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(age(59), "59s");
        assert_eq!(age(3661), "1h1m");
        assert_eq!(age(90_000), "1d1h");
    }
}
