//! Operations that survive their connection, and the service itself:
//! `POST /steward/v1/operations` and what follows it (see [`super::api`]
//! for the HTTP side).
//!
//! * **One directory each.** An operation writes its units to
//!   `STATE/operations/ID/units.ndjson` (0600) through the same resumable
//!   stages as `steward manifest -o FILE` and `steward deep-check -o FILE`
//!   (their journals and checkpoints beside it), so a restarted service
//!   resumes it from its last checkpoint.
//! * **Recorded.** `STATE/state.sqlite` (the state store, locked by this
//!   process) holds a [`RunRecord`] per operation: its identity (the root
//!   cap, the kind and the options: the only place the root is kept whole),
//!   and its status. At start every record still `running` is resumed;
//!   finished ones are served until `--keep-finished` has passed, then
//!   removed with their files.
//! * **Exactly once.** Readers only ever see the *committed* part of the
//!   units file (what the stage's checkpoint covers, told by its notify
//!   watch): a crash cuts the file back to a checkpoint, never below what
//!   was committed, so a line once served is never taken back or changed,
//!   and `units?from=N` after a restart continues with line N.
//! * **Fair.** Each operation is its own [`Tenant`] of the process-wide
//!   scheduler (weight 1), so concurrent operations share the request
//!   budget.
//! * **Cancelling** (`DELETE`) stops the stages at their next checkpoint
//!   and records the operation as cancelled (it is not resumed). A service
//!   shutdown stops them too but leaves them `running` in the store: the
//!   next start resumes them.
//! * **Status**: the stages' own reports ([`Runner::reports`]: stage,
//!   objects, rate, ETA, in flight, last error), plus units committed and
//!   counts by result, read from the committed units by [`Index`] (which
//!   also feeds the metrics' objects by result, and lets `from=N` seek).

use super::metrics::{result_of, Metrics};
use super::operation::{CheckFlags, Kind, Spawner};
use crate::engine::{Notices, Runner, StatusReport};
use crate::error::{Error, ErrorKind, Result};
use crate::input::Committed;
use crate::pipeline::resume::{checkpoint_path, journal_path, RUN};
use crate::pipeline::{self, DeepCheck, DeepCheckOutput, ManifestDest};
use crate::stage::check::Checker;
use crate::stage::repair::{RepairPolicy, Repairer};
use crate::stage::traverse::TraverseOptions;
use crate::stage::MappedOptions;
use crate::store::sqlite::{Format, SqliteStore};
use crate::store::{now_secs, RunRecord, RunStatus, StageKey, StageName, Store};
use crate::unit::Unit;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steward_backend::{Backend, CheckOptions, Scheduler, Tenant};
use steward_cap::{Authority, Cap};
use tokio::sync::watch;

/// The run kind of a served operation in the state store.
pub const RECORD_KIND: &str = "serve-operation";

/// Units between two marks of the line index.
const STRIDE: u64 = 1024;

/// Bytes of units the index reads per hold of its lock.
const SCAN_STEP: u64 = 4 * 1024 * 1024;

/// What operations run with.
pub struct Grid {
    /// Lists, checks and repairs (the gateway client); each operation
    /// uses it as its own tenant.
    pub backend: Arc<dyn Backend>,
    pub sched: Arc<Scheduler>,
    pub list_jobs: usize,
    pub check_jobs: usize,
    /// With repair: also repair objects whose happiness is below this.
    pub happy: Option<u64>,
    pub metrics: Arc<Metrics>,
}

/// What a client asked for: the identity of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The root, resolved to a cap.
    pub root: Cap,
    pub kind: Kind,
    /// The strongest cap written into units.
    pub caps: Authority,
}

fn authority_name(a: Authority) -> &'static str {
    match a {
        Authority::Write => "write",
        Authority::Read => "read",
        Authority::Verify => "verify",
    }
}

pub fn parse_authority(s: &str) -> Option<Authority> {
    match s {
        "write" => Some(Authority::Write),
        "read" => Some(Authority::Read),
        "verify" => Some(Authority::Verify),
        _ => None,
    }
}

impl Request {
    /// The kind's name in requests and status.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Manifest => "manifest",
            Kind::DeepCheck(_) => "deep-check",
        }
    }

    /// The options, as requests and status give them.
    pub fn options(&self) -> Value {
        let mut o = json!({ "caps": authority_name(self.caps) });
        if let Kind::DeepCheck(f) = self.kind {
            o["verify"] = f.verify.into();
            o["add-lease"] = f.add_lease.into();
            o["repair"] = f.repair.into();
        }
        o
    }

    /// What the state store keeps (the root whole: the store is 0600 and
    /// the only place it is kept).
    fn identity(&self) -> Value {
        json!({
            "root": self.root.expose(),
            "kind": self.kind_name(),
            "options": self.options(),
        })
    }

    fn from_identity(v: &Value) -> std::result::Result<Request, String> {
        let root = v["root"]
            .as_str()
            .and_then(|r| Cap::parse(r).ok())
            .ok_or("its root is not a cap")?;
        let o = &v["options"];
        let flag = |k: &str| o[k].as_bool().unwrap_or(false);
        let kind = match v["kind"].as_str() {
            Some("manifest") => Kind::Manifest,
            Some("deep-check") => Kind::DeepCheck(CheckFlags {
                verify: flag("verify"),
                add_lease: flag("add-lease"),
                repair: flag("repair"),
            }),
            _ => return Err("its kind is unknown".into()),
        };
        let caps = o["caps"]
            .as_str()
            .and_then(parse_authority)
            .ok_or("its caps option is unknown")?;
        Ok(Request { root, kind, caps })
    }
}

/// Where an operation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Running in this process (or waiting to start).
    Running,
    Completed,
    /// Cancelled by `DELETE`.
    Cancelled,
    /// Ended by an error the run cannot go past (no gateway).
    Failed(String),
    /// Stopped by this service's shutdown: resumed by the next start.
    Interrupted,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Completed => "completed",
            Phase::Cancelled => "cancelled",
            Phase::Failed(_) => "failed",
            Phase::Interrupted => "interrupted",
        }
    }

    pub fn running(&self) -> bool {
        *self == Phase::Running
    }
}

/// What is known of the committed units: lines, where every
/// [`STRIDE`]-th starts, and counts by result.
#[derive(Default)]
pub struct Index {
    /// Bytes read (always at a line's end).
    scanned: u64,
    lines: u64,
    /// `marks[k]`: the byte offset of line `k * STRIDE`.
    marks: Vec<u64>,
    counts: BTreeMap<&'static str, u64>,
    /// Units past this byte were written by this process: they go into the
    /// metrics as they are read.
    metrics_from: u64,
}

/// One operation.
pub struct Op {
    pub id: String,
    pub request: Request,
    units: PathBuf,
    pub created: u64,
    committed: watch::Sender<Committed>,
    phase: watch::Sender<Phase>,
    /// Kept so that a stage's `send` on `committed` always lands (a watch
    /// with no receiver drops the value).
    _committed_rx: watch::Receiver<Committed>,
    finished_at: Mutex<Option<u64>>,
    /// Turned on by a cancel or the service's shutdown.
    stop: watch::Sender<bool>,
    cancelled: AtomicBool,
    runner: Mutex<Option<Arc<Runner>>>,
    index: Mutex<Index>,
}

/// The status of an operation, as `GET /steward/v1/operations/ID` gives it.
#[derive(Serialize)]
pub struct Status {
    pub id: String,
    pub kind: &'static str,
    /// The root, redacted.
    pub root: String,
    pub options: Value,
    pub state: &'static str,
    pub error: Option<String>,
    pub created: u64,
    pub finished: Option<u64>,
    /// Units committed (lines `0..units` can be read), and their bytes.
    pub units: u64,
    pub bytes: u64,
    /// Committed units by result (`listed`/`error` for a manifest; the
    /// check's health labels for a deep check).
    pub counts: BTreeMap<&'static str, u64>,
    /// The stages of the run in this process (objects, rate, ETA, in
    /// flight, last error).
    pub stages: Vec<StatusReport>,
}

impl Op {
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.committed.subscribe()
    }

    pub fn phases(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    pub fn units_path(&self) -> &Path {
        &self.units
    }

    /// Read the committed units the index has not seen yet (blocking
    /// file reads: call from a blocking thread), [`SCAN_STEP`] bytes per
    /// hold of the index's lock: a long first read (a restart with a large
    /// file) never holds a status request up for long.
    fn advance(&self, metrics: &Metrics) -> std::io::Result<()> {
        loop {
            let upto = self.committed.borrow().len;
            let mut idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
            let before = idx.scanned;
            if before >= upto {
                return Ok(());
            }
            self.scan(&mut idx, (before + SCAN_STEP).min(upto), metrics)?;
            if idx.scanned == before {
                // A line longer than a step.
                self.scan(&mut idx, upto, metrics)?;
                if idx.scanned == before {
                    return Ok(());
                }
            }
        }
    }

    /// Index the whole lines between `idx.scanned` and `upto`.
    fn scan(&self, idx: &mut Index, upto: u64, metrics: &Metrics) -> std::io::Result<()> {
        let manifest = self.request.kind == Kind::Manifest;
        let label = self.request.kind.label();
        let repair = matches!(self.request.kind, Kind::DeepCheck(f) if f.repair);
        let mut f = std::fs::File::open(&self.units)?;
        f.seek(SeekFrom::Start(idx.scanned))?;
        let mut r = std::io::BufReader::with_capacity(
            256 * 1024,
            std::io::Read::take(f, upto - idx.scanned),
        );
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                return Ok(());
            }
            let at = idx.scanned;
            if idx.lines.is_multiple_of(STRIDE) {
                idx.marks.push(at);
            }
            idx.lines += 1;
            idx.scanned += n as u64;
            if let Ok(u) = Unit::parse(String::from_utf8_lossy(&line).trim_end()) {
                if let Some(result) = result_of(manifest, &u) {
                    *idx.counts.entry(result).or_default() += 1;
                }
                if at >= idx.metrics_from {
                    metrics.count_object(label, &u, repair);
                }
            }
        }
    }

    /// Where to start reading for line `from`: a byte offset at a line's
    /// start, and how many lines to skip after it.
    pub fn seek(&self, from: u64) -> (u64, u64) {
        let idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if idx.marks.is_empty() {
            return (0, from);
        }
        let k = ((from / STRIDE) as usize).min(idx.marks.len() - 1);
        (idx.marks[k], from - k as u64 * STRIDE)
    }

    fn status(&self) -> Status {
        let phase = self.phase();
        let idx = self.index.lock().unwrap_or_else(|e| e.into_inner());
        Status {
            id: self.id.clone(),
            kind: self.request.kind_name(),
            root: self.request.root.redacted(),
            options: self.request.options(),
            state: phase.name(),
            error: match &phase {
                Phase::Failed(m) => Some(m.clone()),
                _ => None,
            },
            created: self.created,
            finished: *self.finished_at.lock().unwrap_or_else(|e| e.into_inner()),
            units: idx.lines,
            bytes: idx.scanned,
            counts: idx.counts.clone(),
            stages: self
                .runner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|r| r.reports())
                .unwrap_or_default(),
        }
    }
}

/// Notices of an operation go to the log, naming it.
struct Logged(String);

impl Notices for Logged {
    fn notice(&self, message: &str) {
        tracing::warn!(operation = %self.0, "{message}");
    }
}

/// Every operation of the service.
pub struct Durable {
    dir: PathBuf,
    store: Arc<SqliteStore>,
    ops: Mutex<HashMap<String, Arc<Op>>>,
    grid: Grid,
    keep: Duration,
    spawner: Spawner,
    shutdown: watch::Receiver<bool>,
}

/// Make `dir` (0700) unless it exists; refuse a symlink or a non-directory.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::config(format!(
            "{} is not a directory (a symlink is refused): give another --state DIR",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e)),
        Err(e) => Err(Error::io(dir.display(), e)),
    }
}

/// What the stage's own store says is committed of `units` (the process
/// must not be running the stage: its store is locked while it runs).
async fn stored_committed(units: &Path, kind: Kind) -> Result<Committed> {
    let (path, format, stage) = match kind {
        Kind::Manifest => (journal_path(units), Format::Journal, StageName::Traverse),
        Kind::DeepCheck(f) => (
            checkpoint_path(units),
            Format::Checkpoint,
            if f.repair {
                StageName::Repair
            } else {
                StageName::Check
            },
        ),
    };
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(Committed::default());
    }
    let store = SqliteStore::open(&path, format)?;
    let key = StageKey { run: RUN, stage };
    let saved = match kind {
        Kind::Manifest => store
            .traversal_progress(key)
            .await?
            .map(|p| (p.output, p.done)),
        Kind::DeepCheck(_) => store.position(key).await?.map(|p| (p.output, p.done)),
    };
    Ok(saved
        .map(|(len, done)| Committed { len, done })
        .unwrap_or_default())
}

/// A new operation id: 16 random hex digits (not a secret: it only names
/// the operation; the root cap is what gives access to the grid).
fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Whether `id` could be an operation id (so that it may be echoed).
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Durable {
    /// Open the state directory `dir` (made 0700 if missing; its store is
    /// locked for as long as the service runs), and resume every operation
    /// it holds that was still running.
    pub async fn open(
        dir: &Path,
        keep: Duration,
        grid: Grid,
        spawner: Spawner,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Durable>> {
        private_dir(dir)?;
        private_dir(&dir.join("operations"))?;
        let store = match SqliteStore::open(&dir.join("state.sqlite"), Format::State) {
            Err(e) if e.kind == ErrorKind::Locked => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "--state {} is in use by another steward serve: give each its own",
                        dir.display()
                    ),
                ))
            }
            r => Arc::new(r?),
        };
        let d = Arc::new(Durable {
            dir: dir.to_path_buf(),
            store,
            ops: Mutex::new(HashMap::new()),
            grid,
            keep,
            spawner,
            shutdown: shutdown.clone(),
        });
        for rec in d.store.runs().await? {
            if rec.kind != RECORD_KIND {
                continue;
            }
            d.load(rec).await?;
        }
        // The service's shutdown stops every operation (they stay
        // `running` in the store).
        let weak = Arc::downgrade(&d);
        let mut sd = shutdown;
        tokio::spawn(async move {
            if sd.wait_for(|s| *s).await.is_ok() {
                if let Some(d) = weak.upgrade() {
                    for op in d.list() {
                        op.stop.send_replace(true);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&d);
        let tick = (keep / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(d) = weak.upgrade() else { return };
                d.expire().await;
            }
        });
        Ok(d)
    }

    /// The gateway client (to resolve a root's path).
    pub fn backend(&self) -> &dyn Backend {
        &*self.grid.backend
    }

    fn op_dir(&self, id: &str) -> PathBuf {
        self.dir.join("operations").join(id)
    }

    fn new_op(&self, id: String, request: Request, created: u64, phase: Phase) -> Arc<Op> {
        let units = self.op_dir(&id).join("units.ndjson");
        let (committed, committed_rx) = watch::channel(Committed::default());
        Arc::new(Op {
            id,
            request,
            units,
            created,
            committed,
            _committed_rx: committed_rx,
            phase: watch::channel(phase).0,
            finished_at: Mutex::new(None),
            stop: watch::channel(false).0,
            cancelled: AtomicBool::new(false),
            runner: Mutex::new(None),
            index: Mutex::new(Index::default()),
        })
    }

    /// Take up a stored operation: resume it, or serve what it left.
    async fn load(self: &Arc<Self>, rec: RunRecord) -> Result<()> {
        let request = match Request::from_identity(&rec.identity) {
            Ok(r) => r,
            Err(why) => {
                tracing::warn!(operation = %rec.id, "the state store's record of this operation is unusable ({why}): removing it");
                self.remove(&rec.id).await;
                return Ok(());
            }
        };
        let phase = match &rec.status {
            RunStatus::Running => Phase::Running,
            RunStatus::Done => Phase::Completed,
            RunStatus::Stopped => Phase::Cancelled,
            RunStatus::Failed { message } => Phase::Failed(message.clone()),
        };
        let op = self.new_op(rec.id.clone(), request, rec.created, phase.clone());
        let committed = stored_committed(&op.units, op.request.kind).await?;
        op.committed.send_replace(committed);
        op.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .metrics_from = committed.len;
        if !phase.running() {
            *op.finished_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(rec.updated);
        }
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(op.id.clone(), op.clone());
        self.follow(op.clone());
        if phase.running() {
            tracing::info!(operation = %op.id, kind = op.request.kind_name(), root = %op.request.root.redacted(), "resuming");
            self.launch(op);
        }
        Ok(())
    }

    /// Start a new operation.
    pub async fn create(self: &Arc<Self>, request: Request) -> Result<Arc<Op>> {
        if *self.shutdown.borrow() {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "steward serve is shutting down",
            ));
        }
        let id = new_id();
        private_dir(&self.op_dir(&id))?;
        let rec = RunRecord::new(id.clone(), RECORD_KIND, request.identity());
        self.store.put_run(&rec).await?;
        let op = self.new_op(id, request, rec.created, Phase::Running);
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(op.id.clone(), op.clone());
        tracing::info!(operation = %op.id, kind = op.request.kind_name(), root = %op.request.root.redacted(), "started");
        self.follow(op.clone());
        self.launch(op.clone());
        Ok(op)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Op>> {
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Wait until no operation is running in this process (after the
    /// shutdown signal: each has reached its checkpoint).
    pub async fn settled(&self) {
        for op in self.list() {
            let mut p = op.phases();
            let _ = p.wait_for(|p| !p.running()).await;
        }
    }

    /// Every operation, oldest first.
    pub fn list(&self) -> Vec<Arc<Op>> {
        let mut v: Vec<_> = self
            .ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        v
    }

    /// The status of `op`, its units counted up to what is committed now.
    pub async fn status(self: &Arc<Self>, op: &Arc<Op>) -> Status {
        let (d, o) = (self.clone(), op.clone());
        let _ = tokio::task::spawn_blocking(move || o.advance(&d.grid.metrics)).await;
        op.status()
    }

    /// Cancel a running operation (true), or remove a finished one and its
    /// files at once (false).
    pub async fn cancel(self: &Arc<Self>, op: &Arc<Op>) -> bool {
        if op.phase().running() {
            op.cancelled.store(true, Ordering::SeqCst);
            op.stop.send_replace(true);
            tracing::info!(operation = %op.id, "cancelling");
            true
        } else {
            self.remove(&op.id).await;
            false
        }
    }

    /// Forget an operation and remove its files.
    async fn remove(&self, id: &str) {
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Err(e) = self.store.delete_run(id).await {
            tracing::warn!(operation = %id, "removing its record: {e}");
        }
        let dir = self.op_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(operation = %id, "removing {}: {e}", dir.display());
            }
        }
        tracing::info!(operation = %id, "removed");
    }

    /// Remove operations finished longer than `--keep-finished` ago.
    async fn expire(&self) {
        let now = now_secs();
        let keep = self.keep.as_secs_f64();
        let old: Vec<String> = self
            .list()
            .into_iter()
            .filter(|op| {
                let at = *op.finished_at.lock().unwrap_or_else(|e| e.into_inner());
                matches!(at, Some(t) if (now.saturating_sub(t)) as f64 >= keep)
            })
            .map(|op| op.id.clone())
            .collect();
        for id in old {
            self.remove(&id).await;
        }
    }

    /// Keep `op`'s index up with its committed units, so that status,
    /// seeks and metrics stay current.
    fn follow(self: &Arc<Self>, op: Arc<Op>) {
        let d = Arc::downgrade(self);
        let mut committed = op.committed();
        let mut phase = op.phases();
        tokio::spawn(async move {
            loop {
                committed.borrow_and_update();
                let ended = !phase.borrow_and_update().running();
                let Some(dur) = d.upgrade() else { return };
                let o = op.clone();
                let r = tokio::task::spawn_blocking(move || o.advance(&dur.grid.metrics)).await;
                if let Ok(Err(e)) = r {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(operation = %op.id, "reading its units: {e}");
                    }
                }
                if ended {
                    return;
                }
                tokio::select! {
                    r = committed.changed() => if r.is_err() { return },
                    r = phase.changed() => if r.is_err() { return },
                }
            }
        });
    }

    /// Run `op` on the operations thread, from its checkpoints.
    fn launch(self: &Arc<Self>, op: Arc<Op>) {
        let d = self.clone();
        let o = op.clone();
        let started = self.spawner.spawn(Box::new(move || {
            Box::pin(async move { d.execute(o).await })
        }));
        if !started {
            op.phase
                .send_replace(Phase::Failed("the operations thread has stopped".into()));
        }
    }

    /// The operation itself, then its record.
    async fn execute(self: Arc<Self>, op: Arc<Op>) {
        let label = op.request.kind.label();
        self.grid.metrics.operation_started(label);
        let result = self.run_stages(&op).await;
        let phase = match result {
            Ok(()) => Phase::Completed,
            Err(_) if op.cancelled.load(Ordering::SeqCst) => Phase::Cancelled,
            Err(_) if *self.shutdown.borrow() => Phase::Interrupted,
            Err(e) => Phase::Failed(e.message),
        };
        let outcome = match &phase {
            Phase::Completed => "completed",
            Phase::Cancelled => "cancelled",
            Phase::Interrupted => "shutdown",
            _ => "failed",
        };
        self.grid.metrics.operation_finished(label, outcome);
        let status = match &phase {
            Phase::Completed => Some(RunStatus::Done),
            Phase::Cancelled => Some(RunStatus::Stopped),
            Phase::Failed(m) => Some(RunStatus::Failed { message: m.clone() }),
            // Left `running`: the next start resumes it.
            Phase::Interrupted | Phase::Running => None,
        };
        if let Some(status) = status {
            match self.store.run(&op.id).await {
                Ok(Some(mut rec)) => {
                    rec.status = status;
                    rec.updated = now_secs();
                    if let Err(e) = self.store.put_run(&rec).await {
                        tracing::warn!(operation = %op.id, "recording its end: {e}");
                    }
                    *op.finished_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(rec.updated);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(operation = %op.id, "recording its end: {e}"),
            }
        }
        tracing::info!(operation = %op.id, outcome, "ended");
        op.phase.send_replace(phase);
    }

    async fn run_stages(&self, op: &Op) -> Result<()> {
        let tenant = Tenant::new(format!("operation {}", op.id), 1);
        let backend = self.grid.backend.for_tenant(tenant.clone());
        let runner = Arc::new(Runner::new(
            Some(op.stop.subscribe()),
            Arc::new(Logged(op.id.clone())),
            Some((self.grid.sched.clone(), tenant)),
        ));
        *op.runner.lock().unwrap_or_else(|e| e.into_inner()) = Some(runner.clone());
        let req = &op.request;
        let traverse = TraverseOptions {
            jobs: self.grid.list_jobs.max(1),
            caps: req.caps,
            ..Default::default()
        };
        let notify = Some(op.committed.clone());
        match req.kind {
            Kind::Manifest => {
                let ctx = runner.stage("traverse");
                let dest = ManifestDest::File {
                    path: &op.units,
                    restart: false,
                    notify,
                };
                pipeline::manifest(backend, &req.root, traverse, dest, &ctx)
                    .await
                    .map(|_| ())
            }
            Kind::DeepCheck(flags) => {
                let plan = DeepCheck {
                    lister: backend.clone(),
                    traverse,
                    checker: Checker {
                        backend: backend.clone(),
                        opts: CheckOptions {
                            verify: flags.verify,
                            add_lease: flags.add_lease,
                        },
                    },
                    mapped: MappedOptions::new(self.grid.check_jobs.max(1)),
                    repairer: flags.repair.then(|| Repairer {
                        backend: backend.clone(),
                        policy: RepairPolicy {
                            repair_below: None,
                            happy: self.grid.happy,
                            verify: flags.verify,
                            dry_run: false,
                            all: true,
                        },
                    }),
                };
                let output = DeepCheckOutput::File {
                    path: &op.units,
                    restart: false,
                    notify,
                };
                pipeline::deep_check(plan, &req.root, output, &runner)
                    .await
                    .map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::{object_unit, ObjectType};

    /// An operation over a units file of `n` manifest units (every 7th an
    /// unlisted directory) and the stats, all committed.
    fn op_over(dir: &Path, n: u64) -> (Op, Vec<String>) {
        let units = dir.join("units.ndjson");
        let mut lines = Vec::new();
        for i in 0..n {
            let cap = Cap::parse(&format!(
                "URI:LIT:{}",
                steward_cap::base32::encode(&i.to_be_bytes())
            ))
            .unwrap();
            let mut o = object_unit(
                ObjectType::File,
                vec![format!("f{i:06}"), "x".repeat(150)],
                &cap,
                Authority::Read,
            );
            if i % 7 == 0 {
                o.error = Some(crate::unit::UnitError {
                    code: "unrecoverable".into(),
                    message: "gone".into(),
                });
            }
            lines.push(Unit::Object(Box::new(o)).to_line());
        }
        lines.push(r#"{"type": "stats", "stats": {}}"#.to_string());
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&units, &text).unwrap();
        let (committed, committed_rx) = watch::channel(Committed {
            len: text.len() as u64,
            done: true,
        });
        let op = Op {
            id: "0".into(),
            request: Request {
                root: Cap::parse("URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba").unwrap(),
                kind: Kind::Manifest,
                caps: Authority::Read,
            },
            units,
            created: 0,
            committed,
            _committed_rx: committed_rx,
            phase: watch::channel(Phase::Completed).0,
            finished_at: Mutex::new(None),
            stop: watch::channel(false).0,
            cancelled: AtomicBool::new(false),
            runner: Mutex::new(None),
            index: Mutex::new(Index::default()),
        };
        (op, lines)
    }

    #[test]
    fn the_index_counts_committed_units_in_steps_and_seeks_to_any_line() {
        let dir = tempfile::tempdir().unwrap();
        // About 25,000 lines of ~220 bytes: more than one scan step.
        let n = 25_000;
        let (op, lines) = op_over(dir.path(), n);
        assert!(op.committed.borrow().len > SCAN_STEP, "more than one step");
        let metrics = Metrics::new();
        op.advance(&metrics).unwrap();
        let s = op.status();
        assert_eq!(s.units, n + 1);
        assert_eq!(s.bytes, op.committed.borrow().len);
        let errors = n.div_ceil(7);
        assert_eq!(s.counts.get("error"), Some(&errors));
        assert_eq!(s.counts.get("listed"), Some(&(n - errors)));
        assert!(metrics.render().contains(&format!(
            "steward_serve_objects_total{{kind=\"manifest\",result=\"error\"}} {errors}"
        )));
        // Every line found from its mark.
        let text = std::fs::read(op.units_path()).unwrap();
        for from in [0, 1, 1023, 1024, 1025, 20_000, n] {
            let (pos, skip) = op.seek(from);
            let rest = &text[pos as usize..];
            let line = rest.split(|b| *b == b'\n').nth(skip as usize).unwrap();
            assert_eq!(
                std::str::from_utf8(line).unwrap(),
                lines[from as usize],
                "line {from}"
            );
            assert!(skip < STRIDE);
        }
        // Nothing counted twice.
        op.advance(&metrics).unwrap();
        assert_eq!(op.status().units, n + 1);
    }
}
