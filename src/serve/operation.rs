//! Running one streaming operation (a manifest or a deep check) for one
//! request, through the library's stages as they are today.
//!
//! This is the only part of `steward serve` that drives stages, behind a
//! narrow interface: [`Operations::start`] takes an [`OperationSpec`] and
//! gives a [`Running`] operation, from which the caller takes units one at
//! a time ([`Running::next`]) and finally an [`Outcome`]. Everything else
//! (HTTP, the unit lines, metrics of requests) only sees that. A later
//! engine (a shared request scheduler, a state store, a stage runner) can
//! replace the inside of this module without the rest changing.
//!
//! * **Back-pressure.** Units reach the caller through a bounded channel of
//!   [`CHANNEL_UNITS`]; the stages block when it is full, and their own
//!   channels between them are bounded too, so a slow reader slows the
//!   operation and memory stays flat.
//! * **Its own thread.** See [`Operations`].
//! * **Fair.** Each operation is a tenant of its own of the process-wide
//!   scheduler: concurrent operations share the request budget.
//! * **Cancellation.** Dropping the [`Running`] (the HTTP body was dropped
//!   because the client went away) turns the operation's stop signal on at
//!   once: in-flight requests are abandoned and the stages return. So does
//!   the service's shutdown signal.
//! * Manifest: the traversal stage ([`Traversal`]) writes into the channel
//!   (`pipeline::manifest` writes only to files or stdout). Deep check:
//!   [`pipeline::deep_check`] with a channel sink, and with repair the
//!   repair stage writes a unit for every object (policy `all`).

use super::metrics::Metrics;
use crate::engine::{Notices, Runner};
use crate::error::{Error, ErrorKind};
use crate::pipeline::{self, ChannelSink, DeepCheck, DeepCheckOutput, ManifestDest};
use crate::stage::check::Checker;
use crate::stage::repair::{RepairPolicy, Repairer};
use crate::stage::traverse::TraverseOptions;
use crate::stage::MappedOptions;
use crate::unit::{Unit, UnitSink};
use std::sync::Arc;
use steward_backend::{Backend, CheckOptions, Scheduler, Tenant};
use steward_cap::{Authority, Cap};
use tokio::sync::{mpsc, oneshot, watch};

/// Units held between an operation and its reader.
pub const CHANNEL_UNITS: usize = 64;

/// What a deep check does to each object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckFlags {
    pub verify: bool,
    pub add_lease: bool,
    pub repair: bool,
}

/// Which operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    DeepCheck(CheckFlags),
}

impl Kind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::DeepCheck(f) if f.repair => "deep-check-repair",
            Kind::DeepCheck(_) => "deep-check",
        }
    }
}

/// One operation to run.
#[derive(Clone, Debug)]
pub struct OperationSpec {
    pub kind: Kind,
    pub root: Cap,
    /// The strongest cap written into units (Tahoe writes the write cap of
    /// what it reached through a write cap).
    pub caps: Authority,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every reachable object has its unit, and the stats unit came last.
    Completed,
    /// The service is shutting down.
    ShuttingDown,
    /// The run could not go on (no gateway reachable): a one-line reason.
    Failed(String),
}

/// What operations run with: the grid, and how much of it one operation
/// may use.
pub struct Grid {
    /// Lists directories (a gateway).
    pub lister: Arc<dyn Backend>,
    /// Checks and repairs (a gateway).
    pub checker: Arc<dyn Backend>,
    pub list_jobs: usize,
    pub check_jobs: usize,
    /// With repair: also repair objects whose happiness is below this.
    pub happy: Option<u64>,
    pub metrics: Arc<Metrics>,
    /// The process-wide scheduler: each operation is a tenant of its own,
    /// so that concurrent operations share the request budget.
    pub sched: Arc<Scheduler>,
}

/// Starts operations. They run on a thread of their own (a current-thread
/// runtime with a `LocalSet`): the stages' futures are not `Send` (a
/// `watch::Ref` held across an await in the traversal's select, a
/// `&StageInput` across one in the mapped stage's checkpoint), so they
/// cannot be spawned on the server's runtime.
pub struct Operations {
    jobs: mpsc::UnboundedSender<Work>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

/// A future made on the operations thread (it need not be `Send`).
pub type LocalTask = Box<dyn FnOnce() -> futures::future::LocalBoxFuture<'static, ()> + Send>;

/// What the operations thread is handed.
enum Work {
    /// A Tahoe-style stream's operation.
    Stream(Job),
    /// Anything else to run there (a resumable operation).
    Task(LocalTask),
}

/// One operation handed to the operations thread.
struct Job {
    spec: OperationSpec,
    units: mpsc::Sender<Unit>,
    outcome: oneshot::Sender<Outcome>,
    cancelled: oneshot::Receiver<()>,
    shutdown: watch::Receiver<bool>,
}

/// An operation in progress. Dropping it cancels the operation.
pub struct Running {
    units: mpsc::Receiver<Unit>,
    outcome: Option<oneshot::Receiver<Outcome>>,
    _cancel: oneshot::Sender<()>,
}

/// The next thing a running operation gives.
#[derive(Debug)]
pub enum Event {
    Unit(Unit),
    End(Outcome),
}

impl Running {
    /// The next unit, or the end; `None` after the end.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(u) = self.units.recv().await {
            return Some(Event::Unit(u));
        }
        let rx = self.outcome.take()?;
        Some(Event::End(rx.await.unwrap_or_else(|_| {
            Outcome::Failed("the operation stopped without saying why".into())
        })))
    }

    /// A unit that is ready now, without waiting.
    pub fn ready(&mut self) -> Option<Unit> {
        self.units.try_recv().ok()
    }
}

/// Counts units into the metrics on their way out.
struct CountedSink {
    inner: ChannelSink,
    metrics: Arc<Metrics>,
    kind: &'static str,
    repair: bool,
}

#[async_trait::async_trait]
impl UnitSink for CountedSink {
    async fn emit(&mut self, unit: Unit) -> crate::Result<()> {
        self.metrics.count_object(self.kind, &unit, self.repair);
        self.inner.emit(unit).await
    }
    async fn sync(&mut self) -> crate::Result<u64> {
        self.inner.sync().await
    }
}

/// Notices of a served operation go to the log.
struct Logged;

impl Notices for Logged {
    fn notice(&self, message: &str) {
        tracing::warn!("{message}");
    }
}

impl Operations {
    /// Start the operations thread. `shutdown` turning true stops every
    /// running operation.
    pub fn new(grid: Grid, shutdown: watch::Receiver<bool>) -> Self {
        let metrics = grid.metrics.clone();
        let (jobs, mut queue) = mpsc::unbounded_channel::<Work>();
        std::thread::Builder::new()
            .name("steward-operations".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for operations");
                let local = tokio::task::LocalSet::new();
                let grid = Arc::new(grid);
                local.block_on(&rt, async move {
                    while let Some(work) = queue.recv().await {
                        match work {
                            Work::Stream(job) => {
                                tokio::task::spawn_local(grid.clone().run_job(job));
                            }
                            Work::Task(make) => {
                                tokio::task::spawn_local(make());
                            }
                        }
                    }
                });
            })
            .expect("starting the operations thread");
        Operations {
            jobs,
            shutdown,
            metrics,
        }
    }

    /// Start `spec` at once; its units come from the returned [`Running`].
    pub fn start(&self, spec: OperationSpec) -> Running {
        let (tx, units) = mpsc::channel(CHANNEL_UNITS);
        let (outcome_tx, outcome) = oneshot::channel();
        let (cancel, cancelled) = oneshot::channel::<()>();
        self.metrics.operation_started(spec.kind.label());
        let job = Job {
            spec,
            units: tx,
            outcome: outcome_tx,
            cancelled,
            shutdown: self.shutdown.clone(),
        };
        if let Err(mpsc::error::SendError(Work::Stream(job))) = self.jobs.send(Work::Stream(job)) {
            self.metrics
                .operation_finished(job.spec.kind.label(), "failed");
            let _ = job
                .outcome
                .send(Outcome::Failed("the operations thread has stopped".into()));
        }
        Running {
            units,
            outcome: Some(outcome),
            _cancel: cancel,
        }
    }
}

/// Runs tasks on the operations thread.
#[derive(Clone)]
pub struct Spawner(mpsc::UnboundedSender<Work>);

impl Spawner {
    /// Run `task` on the operations thread; false if that thread has
    /// stopped.
    pub fn spawn(&self, task: LocalTask) -> bool {
        self.0.send(Work::Task(task)).is_ok()
    }
}

impl Operations {
    /// A handle that runs other tasks on the operations thread.
    pub fn spawner(&self) -> Spawner {
        Spawner(self.jobs.clone())
    }
}

impl Grid {
    /// Run one job to its end, stopping it when its reader goes away or
    /// the service shuts down.
    async fn run_job(self: Arc<Self>, job: Job) {
        let Job {
            spec,
            units,
            outcome,
            cancelled,
            mut shutdown,
        } = job;
        let label = spec.kind.label();
        let (stop_tx, stop) = watch::channel(false);
        let stopping = shutdown.clone();
        let watcher = async move {
            tokio::select! {
                _ = cancelled => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
            let _ = stop_tx.send(true);
            std::future::pending::<()>().await
        };
        let result = tokio::select! {
            r = self.run(spec, units, stop) => r,
            _ = watcher => unreachable!("the watcher never ends"),
        };
        let (end, how) = match result {
            Ok(()) => (Outcome::Completed, "completed"),
            Err(_) if *stopping.borrow() => (Outcome::ShuttingDown, "shutdown"),
            // Stopped because the reader went away (the channel closed or
            // the stop signal): nobody is left to tell.
            Err(e) if e.kind == ErrorKind::Interrupted => (Outcome::Failed(e.message), "cancelled"),
            Err(e) => (Outcome::Failed(e.message), "failed"),
        };
        self.metrics.operation_finished(label, how);
        let _ = outcome.send(end);
    }

    /// The operation itself.
    async fn run(
        &self,
        spec: OperationSpec,
        tx: mpsc::Sender<Unit>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let traverse = TraverseOptions {
            jobs: self.list_jobs.max(1),
            caps: spec.caps,
            ..Default::default()
        };
        let tenant = Tenant::new(format!("stream {}", spec.kind.label()), 1);
        let lister = self.lister.for_tenant(tenant.clone());
        let checker = self.checker.for_tenant(tenant.clone());
        let metrics = self.metrics.clone();
        let runner = Runner::new(
            Some(stop),
            Arc::new(Logged),
            Some((self.sched.clone(), tenant)),
        );
        let mut sink = CountedSink {
            inner: ChannelSink::new(tx),
            metrics,
            kind: spec.kind.label(),
            repair: matches!(spec.kind, Kind::DeepCheck(f) if f.repair),
        };
        match spec.kind {
            Kind::Manifest => {
                let ctx = runner.stage("traverse");
                pipeline::manifest(
                    lister,
                    &spec.root,
                    traverse,
                    ManifestDest::Sink(&mut sink),
                    &ctx,
                )
                .await
                .map(|_| ())
            }
            Kind::DeepCheck(flags) => {
                let plan = DeepCheck {
                    lister,
                    traverse,
                    checker: Checker {
                        backend: checker.clone(),
                        opts: CheckOptions {
                            verify: flags.verify,
                            add_lease: flags.add_lease,
                        },
                    },
                    mapped: MappedOptions::new(self.check_jobs),
                    repairer: flags.repair.then(|| Repairer {
                        backend: checker.clone(),
                        policy: RepairPolicy {
                            repair_below: None,
                            happy: self.happy,
                            verify: flags.verify,
                            dry_run: false,
                            all: true,
                        },
                    }),
                };
                pipeline::deep_check(plan, &spec.root, DeepCheckOutput::Sink(&mut sink), &runner)
                    .await
                    .map(|_| ())
            }
        }
    }
}
