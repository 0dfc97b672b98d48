//! A one-shot deep check: traverse -> check -> (repair) as concurrent
//! stages of one operation, joined either by bounded channels (one run, not
//! resumable) or by checkpointed files each followed by the next stage as it
//! is committed (the whole run resumes after a crash). The two differ only
//! in their [`Transport`]; the chain is written once.
//!
//! The stages share one [`Runner`]: a stop (a signal, a cancel) reaches all
//! of them, a stage that fails stops the others, and every stage runs to its
//! own checkpoint before the run ends.

use super::{
    manifest_file, manifest_into, mapped_into, resume, run_file_stage_locked, ChannelSink,
    FileStage, MappedStageIo, Resumable, Source,
};
use crate::engine::{Runner, StageCtx};
use crate::error::{Error, Result};
use crate::input::Committed;
use crate::input::LineSource;
use crate::lock::acquire_all;
use crate::stage::check::Checker;
use crate::stage::repair::Repairer;
use crate::stage::tally::{CheckTally, RepairTally, Tally};
use crate::stage::traverse::{Traversal, TraverseOptions, TraverseSummary};
use crate::stage::{run_mapped, MappedOptions, Op, StageInput, StageSummary};
use crate::store::pg_units::UnitTable;
use crate::store::StageName;
use crate::store::Store;
use crate::unit::{Unit, UnitSink};
use futures::future::OptionFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use steward_backend::Backend;
use steward_cap::Cap;
use tokio::sync::{mpsc, watch};

/// The files of a resumable one-shot deep check: the final units in `FILE`,
/// the manifest and (with repair) the check units beside it, each with its
/// own state.
pub fn deep_check_files(output: &Path) -> (PathBuf, PathBuf) {
    (beside(output, "manifest"), beside(output, "check"))
}

/// `FILE.stage`: where a resumable deep check keeps the units of `stage`.
fn beside(output: &Path, stage: &str) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".");
    s.push(stage);
    PathBuf::from(s)
}

/// What a one-shot deep check runs.
pub struct DeepCheck {
    /// Lists directories.
    pub lister: Arc<dyn Backend>,
    pub traverse: TraverseOptions,
    pub checker: Checker,
    /// The check and repair stages' windows.
    pub mapped: MappedOptions,
    pub repairer: Option<Repairer>,
}

/// Where the final units of a one-shot deep check go, which decides how its
/// stages are joined.
pub enum DeepCheckOutput<'a> {
    /// To `sink`, with the stages joined by bounded channels: one run, not
    /// resumable.
    Sink(&'a mut dyn UnitSink),
    /// To the file `path` (mode 0600), with each stage writing its own
    /// checkpointed file ([`deep_check_files`]) and the next following it as
    /// it is committed, so the whole run resumes after a crash. The caller
    /// reads the final units from `path`.
    File {
        path: &'a Path,
        /// Forget every checkpoint of the run and start over.
        restart: bool,
        /// Told the final output's committed length after each checkpoint
        /// (a server streams only what a crash cannot take back).
        notify: Option<watch::Sender<Committed>>,
    },
    /// Like `File`, with each stage's file named (a dispatch account's
    /// `manifest.ndjson`, `check.ndjson`, `repair.ndjson`): the final units
    /// are the repair's with a repairer, else the check's.
    Named {
        files: &'a StageFiles,
        restart: bool,
    },
    /// Each stage's units in the unit table of a shared PostgreSQL
    /// database, its state in the same database, under the runs
    /// [`database_run`]`(account, stage)`; every write through `store`
    /// (fenced by the caller's claim). The final units are the repair's
    /// with a repairer, else the check's.
    /// A run resumes what the database holds; [`forget_database_runs`]
    /// starts over.
    Database {
        store: crate::store::postgres::PostgresStore,
        account: &'a str,
    },
}

/// Forget every stage's state and units of `account` in a dispatch's
/// database (through `store`, fenced by the caller's claim).
pub async fn forget_database_runs(
    store: &crate::store::postgres::PostgresStore,
    account: &str,
) -> Result<()> {
    for stage in [StageName::Traverse, StageName::Check, StageName::Repair] {
        store.delete_run(&database_run(account, stage)).await?;
    }
    Ok(())
}

/// The run id under which a dispatch on a database keeps `account`'s
/// `stage` (its state and its units).
pub fn database_run(account: &str, stage: StageName) -> String {
    let name = match stage {
        StageName::Traverse => "manifest",
        s => s.as_str(),
    };
    format!("{account}/{name}")
}

/// The unit table of `account`'s `stage` in a dispatch's database.
pub fn database_units(
    store: &crate::store::postgres::PostgresStore,
    account: &str,
    stage: StageName,
) -> UnitTable {
    UnitTable::new(store.clone(), &database_run(account, stage), stage)
}

/// The files of a resumable deep check whose stages' files are named.
#[derive(Clone, Debug)]
pub struct StageFiles {
    pub manifest: PathBuf,
    pub check: PathBuf,
    pub repair: PathBuf,
}

/// What a one-shot deep check did.
pub struct DeepCheckSummary {
    pub traverse: TraverseSummary,
    pub check: StageSummary<CheckTally>,
    pub repair: Option<StageSummary<RepairTally>>,
}

/// Run traversal, check and (optionally) repair as concurrent stages of
/// `runner`'s operation, each handing its units to the next as `output`
/// decides.
pub async fn deep_check(
    plan: DeepCheck,
    root: &Cap,
    output: DeepCheckOutput<'_>,
    runner: &Runner,
) -> Result<DeepCheckSummary> {
    match output {
        DeepCheckOutput::Sink(sink) => {
            let transport = Channels { sink };
            run_chain(transport, plan, root, runner).await
        }
        DeepCheckOutput::File {
            path,
            restart,
            notify,
        } => {
            let (manifest, check) = deep_check_files(path);
            let transport = Files {
                manifest,
                check,
                last: path.to_path_buf(),
                notify,
            };
            run_files(transport, plan, root, restart, runner).await
        }
        DeepCheckOutput::Named { files, restart } => {
            let transport = Files {
                manifest: files.manifest.clone(),
                check: files.check.clone(),
                last: if plan.repairer.is_some() {
                    files.repair.clone()
                } else {
                    files.check.clone()
                },
                notify: None,
            };
            run_files(transport, plan, root, restart, runner).await
        }
        DeepCheckOutput::Database { store, account } => {
            let stages = [StageName::Traverse, StageName::Check, StageName::Repair];
            let [manifest, check, repair] = stages.map(|s| database_units(&store, account, s));
            let last = if plan.repairer.is_some() {
                repair
            } else {
                check.clone()
            };
            let transport = Tables {
                manifest,
                check,
                last,
            };
            run_chain(transport, plan, root, runner).await
        }
    }
}

/// The chain joined by files: every file of the run is locked before any
/// is touched, and stays locked until the whole chain has ended.
async fn run_files(
    transport: Files,
    plan: DeepCheck,
    root: &Cap,
    restart: bool,
    runner: &Runner,
) -> Result<DeepCheckSummary> {
    let mut files = vec![transport.last.as_path(), transport.manifest.as_path()];
    if plan.repairer.is_some() {
        files.push(transport.check.as_path());
    }
    let _locks = acquire_all(files.iter().copied())?;
    if restart {
        for p in &files {
            resume::forget(p)?;
        }
    }
    run_chain(transport, plan, root, runner).await
}

/// The stages of a deep check: traverse -> check -> (repair) -> the final
/// units, joined by `transport`.
async fn run_chain<T: Transport>(
    transport: T,
    plan: DeepCheck,
    root: &Cap,
    runner: &Runner,
) -> Result<DeepCheckSummary> {
    fn halting<R>(runner: &Runner, r: Result<R>) -> Result<R> {
        // A failed stage stops the others (each then reaches its own
        // checkpoint), and the run ends with the failure.
        if r.is_err() {
            runner.cancel();
        }
        r
    }
    let traverse_ctx = runner.stage("traverse");
    let check_ctx = runner.stage("check");
    let repair_ctx = plan.repairer.as_ref().map(|_| runner.stage("repair"));
    let (manifest_out, manifest_in) = transport.link("manifest");
    let repair_link = plan.repairer.as_ref().map(|r| (r, transport.link("check")));
    let last = transport.end();
    let (check_out, repair) = match repair_link {
        None => (last, None),
        Some((repairer, (check_out, repair_in))) => {
            let repair = MappedStage {
                name: StageName::Repair,
                options: repairer.policy.checkpoint_key(),
                op: repairer.clone().into_op(),
                mapped: plan.mapped,
                ctx: repair_ctx.expect("made with the repairer"),
            };
            let repair = T::map::<RepairTally>(repair, repair_in, last);
            (check_out, Some(repair))
        }
    };
    let check = MappedStage {
        name: StageName::Check,
        options: plan.checker.checkpoint_key(),
        op: plan.checker.clone().into_op(),
        mapped: plan.mapped,
        ctx: check_ctx,
    };
    let traverse = async {
        let r = T::traverse(&plan, root, manifest_out, &traverse_ctx).await;
        halting(runner, r)
    };
    let check = async {
        halting(
            runner,
            T::map::<CheckTally>(check, manifest_in, check_out).await,
        )
    };
    let repair = async { halting(runner, OptionFuture::from(repair).await.transpose()) };
    // Every stage runs to its own end, even after another failed (which
    // stops them): a stage dropped in the middle would skip its last
    // checkpoint.
    let (traverse, check, repair) = tokio::join!(traverse, check, repair);
    let first_error = |errors: Vec<Error>| {
        // The reason a stage ended rather than "the stage before stopped".
        let mut errors = errors.into_iter();
        let first = errors.next()?;
        Some(if first.kind == crate::error::ErrorKind::Interrupted {
            errors
                .find(|e| e.kind != crate::error::ErrorKind::Interrupted)
                .unwrap_or(first)
        } else {
            first
        })
    };
    match (traverse, check, repair) {
        (Ok(traverse), Ok(check), Ok(repair)) => Ok(DeepCheckSummary {
            traverse,
            check,
            repair,
        }),
        (t, c, r) => {
            let errors = [t.err(), c.err(), r.err()].into_iter().flatten().collect();
            Err(first_error(errors).expect("one stage failed"))
        }
    }
}

/// A check or repair stage of a deep check.
struct MappedStage {
    name: StageName,
    /// The options a resume from a file must match.
    options: String,
    op: Box<Op>,
    mapped: MappedOptions,
    ctx: StageCtx,
}

/// How stage N's units reach stage N+1 of a deep check: the only thing in
/// which the one-shot and the resumable run differ.
trait Transport {
    /// Where a stage writes: a link to the next stage, or the final units.
    type Writer;
    /// Where a stage reads: a link from the stage before.
    type Reader;
    /// A link from stage `from` (`manifest` or `check`) to the next.
    fn link(&self, from: &str) -> (Self::Writer, Self::Reader);
    /// Where the last stage writes.
    fn end(self) -> Self::Writer;
    async fn traverse(
        plan: &DeepCheck,
        root: &Cap,
        out: Self::Writer,
        ctx: &StageCtx,
    ) -> Result<TraverseSummary>;
    async fn map<T: Tally>(
        stage: MappedStage,
        input: Self::Reader,
        out: Self::Writer,
    ) -> Result<StageSummary<T>>;
}

/// Bounded channels in memory; the final units go to `sink`.
struct Channels<'s> {
    sink: &'s mut dyn UnitSink,
}

/// The writing end of a channel (closed when the stage that owns it ends),
/// or the final sink.
enum ChannelWriter<'s> {
    Next(ChannelSink),
    Last(&'s mut dyn UnitSink),
}

impl ChannelWriter<'_> {
    fn sink(&mut self) -> &mut dyn UnitSink {
        match self {
            ChannelWriter::Next(chan) => chan,
            ChannelWriter::Last(sink) => &mut **sink,
        }
    }
}

impl<'s> Transport for Channels<'s> {
    type Writer = ChannelWriter<'s>;
    type Reader = mpsc::Receiver<Unit>;

    fn link(&self, _from: &str) -> (Self::Writer, Self::Reader) {
        let (tx, rx) = mpsc::channel::<Unit>(1024);
        (ChannelWriter::Next(ChannelSink::new(tx)), rx)
    }
    fn end(self) -> Self::Writer {
        ChannelWriter::Last(self.sink)
    }
    async fn traverse(
        plan: &DeepCheck,
        root: &Cap,
        mut out: Self::Writer,
        ctx: &StageCtx,
    ) -> Result<TraverseSummary> {
        let t =
            Traversal::new(plan.lister.clone(), root, plan.traverse.clone(), None, None).await?;
        t.run(out.sink(), ctx).await
    }
    async fn map<T: Tally>(
        stage: MappedStage,
        input: Self::Reader,
        mut out: Self::Writer,
    ) -> Result<StageSummary<T>> {
        run_mapped(
            StageInput::Channel(input),
            stage.mapped,
            &*stage.op,
            out.sink(),
            None,
            &stage.ctx,
        )
        .await
    }
}

/// Checkpointed files, each followed by the next stage as it is committed;
/// the final units go to `last` (whose committed length `notify`, if
/// any, is told after each checkpoint: a server streams only what a crash
/// cannot take back).
struct Files {
    manifest: PathBuf,
    check: PathBuf,
    last: PathBuf,
    notify: Option<watch::Sender<Committed>>,
}

/// A file a stage writes (and checkpoints), telling the stage that follows
/// it, if any, how much of it is committed.
struct FileWriter {
    path: PathBuf,
    notify: Option<watch::Sender<Committed>>,
}

/// A file an earlier stage is writing, read as it is committed.
struct FileReader {
    path: PathBuf,
    follow: watch::Receiver<Committed>,
}

impl Transport for Files {
    type Writer = FileWriter;
    type Reader = FileReader;

    fn link(&self, from: &str) -> (Self::Writer, Self::Reader) {
        let path = match from {
            "manifest" => self.manifest.clone(),
            _ => self.check.clone(),
        };
        let (tx, rx) = watch::channel(Committed::default());
        let writer = FileWriter {
            path: path.clone(),
            notify: Some(tx),
        };
        (writer, FileReader { path, follow: rx })
    }
    fn end(self) -> Self::Writer {
        FileWriter {
            path: self.last,
            notify: self.notify,
        }
    }
    async fn traverse(
        plan: &DeepCheck,
        root: &Cap,
        out: Self::Writer,
        ctx: &StageCtx,
    ) -> Result<TraverseSummary> {
        manifest_file(
            plan.lister.clone(),
            root,
            plan.traverse.clone(),
            &out.path,
            out.notify,
            ctx,
        )
        .await
    }
    async fn map<T: Tally>(
        stage: MappedStage,
        input: Self::Reader,
        out: Self::Writer,
    ) -> Result<StageSummary<T>> {
        let fs = FileStage {
            stage: stage.name,
            options: stage.options,
            input: Some(&input.path),
            follow: Some(input.follow),
            output: Some(&out.path),
            restart: false,
            mapped: stage.mapped,
            notify: out.notify,
        };
        run_file_stage_locked(fs, &*stage.op, &stage.ctx).await
    }
}

/// Unit tables of a database, each followed by the next stage as it is
/// committed; the final units go to `last`.
struct Tables {
    manifest: UnitTable,
    check: UnitTable,
    last: UnitTable,
}

/// A table a stage writes, telling the stage that follows it, if any, how
/// much of it is committed.
struct TableWriter {
    table: UnitTable,
    notify: Option<watch::Sender<Committed>>,
}

/// A table an earlier stage is writing, read as it is committed.
struct TableReader {
    table: UnitTable,
    follow: watch::Receiver<Committed>,
}

#[async_trait::async_trait]
impl Source for TableReader {
    async fn open_at(&self, offset: u64) -> Result<LineSource> {
        let mut follow = self.follow.clone();
        // The stage before records its first checkpoint before its first
        // unit: wait for it.
        if follow.wait_for(|c| c.len > 0 || c.done).await.is_err() {
            return Err(Error::new(
                crate::error::ErrorKind::Interrupted,
                format!(
                    "the stage writing {} stopped",
                    resume::Target::describe(&self.table)
                ),
            ));
        }
        let mut src = self.table.source(follow);
        src.skip_to(offset).await?;
        Ok(src)
    }
}

impl Transport for Tables {
    type Writer = TableWriter;
    type Reader = TableReader;

    fn link(&self, from: &str) -> (Self::Writer, Self::Reader) {
        let table = match from {
            "manifest" => self.manifest.clone(),
            _ => self.check.clone(),
        };
        let (tx, rx) = watch::channel(Committed::default());
        let writer = TableWriter {
            table: table.clone(),
            notify: Some(tx),
        };
        (writer, TableReader { table, follow: rx })
    }
    fn end(self) -> Self::Writer {
        TableWriter {
            table: self.last,
            notify: None,
        }
    }
    async fn traverse(
        plan: &DeepCheck,
        root: &Cap,
        out: Self::Writer,
        ctx: &StageCtx,
    ) -> Result<TraverseSummary> {
        let store: Arc<dyn Store> = Arc::new(out.table.store.clone());
        let to = Resumable {
            store,
            run: &out.table.run,
            target: &out.table,
        };
        manifest_into(
            plan.lister.clone(),
            root,
            plan.traverse.clone(),
            to,
            out.notify,
            ctx,
        )
        .await
    }
    async fn map<T: Tally>(
        stage: MappedStage,
        input: Self::Reader,
        out: Self::Writer,
    ) -> Result<StageSummary<T>> {
        let store: Arc<dyn Store> = Arc::new(out.table.store.clone());
        let to = Resumable {
            store,
            run: &out.table.run,
            target: &out.table,
        };
        let io = MappedStageIo {
            stage: stage.name,
            options: stage.options,
            mapped: stage.mapped,
            notify: out.notify,
        };
        mapped_into(io, &input, to, &*stage.op, &stage.ctx).await
    }
}

#[cfg(test)]
mod tests {
    //! Stage logic on an in-memory backend (never proof that anything works
    //! against a grid: the integration tests are; this one pins a deadlock).
    use super::*;
    use crate::stage::check::Checker;
    use steward_backend::{BackendError, CheckOptions, Child, Listing, NodeType, Operation};
    use tokio::sync::Semaphore;

    fn cap(kind: &str, n: u32) -> String {
        let key = steward_cap::hash::tagged_hash(b"test-key", &n.to_be_bytes(), 16);
        let h = steward_cap::hash::tagged_hash(b"test-hash", &n.to_be_bytes(), 32);
        let (k, h) = (
            steward_cap::base32::encode(&key),
            steward_cap::base32::encode(&h),
        );
        match kind {
            "dir" => format!("URI:DIR2:{k}:{h}"),
            _ => format!("URI:CHK:{k}:{h}:2:5:1000"),
        }
    }

    const SUBDIRS: u32 = 8;

    /// A root with 8 wide subdirectories, behind one "gateway" that serves
    /// a single request at a time, like a gateway whose pace has dropped to
    /// one.
    struct OneAtATime {
        permit: Semaphore,
        root: String,
        files: u32,
        /// How long a listing takes.
        list_ms: u64,
        /// Listings answered.
        listed: std::sync::atomic::AtomicU64,
        /// Checks fail as if the gateway were gone.
        checks_fail: bool,
    }

    impl OneAtATime {
        fn new(files: u32) -> Self {
            OneAtATime {
                permit: Semaphore::new(1),
                root: cap("dir", 999_999),
                files,
                list_ms: 1,
                listed: Default::default(),
                checks_fail: false,
            }
        }
    }

    #[async_trait::async_trait]
    impl Backend for OneAtATime {
        fn describe(&self) -> String {
            "one-at-a-time".into()
        }
        fn supports(&self, _op: Operation) -> bool {
            true
        }
        async fn list_directory(&self, dir: &Cap) -> std::result::Result<Listing, BackendError> {
            let _p = self.permit.acquire().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(self.list_ms)).await;
            self.listed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let root_si = Cap::parse(&self.root).unwrap().storage_index();
            if dir.storage_index() == root_si {
                let children = (0..SUBDIRS)
                    .map(|d| Child {
                        name: format!("sub{d}"),
                        node_type: NodeType::Directory,
                        rw_uri: Some(cap("dir", 1_000_000 + d)),
                        ro_uri: None,
                        verify_uri: None,
                        size: None,
                        format: None,
                        mutable: Some(true),
                    })
                    .collect();
                return Ok(Listing {
                    children,
                    size: None,
                });
            }
            let d = (0..SUBDIRS)
                .find(|d| {
                    Cap::parse(&cap("dir", 1_000_000 + d))
                        .unwrap()
                        .storage_index()
                        == dir.storage_index()
                })
                .expect("a known directory");
            let children = (0..self.files)
                .map(|i| Child {
                    name: format!("f{i:05}"),
                    node_type: NodeType::File,
                    rw_uri: None,
                    ro_uri: Some(cap("file", d * 100_000 + i)),
                    verify_uri: None,
                    size: Some(1000),
                    format: Some("CHK".into()),
                    mutable: Some(false),
                })
                .collect();
            Ok(Listing {
                children,
                size: None,
            })
        }
        fn for_tenant(&self, _t: steward_backend::Tenant) -> Arc<dyn Backend> {
            unreachable!()
        }
        async fn check(
            &self,
            _cap: &Cap,
            _o: CheckOptions,
        ) -> std::result::Result<steward_backend::CheckResults, BackendError> {
            let _p = self.permit.acquire().await.unwrap();
            if self.checks_fail {
                return Err(BackendError::new(
                    steward_backend::ErrorCode::GatewayUnreachable,
                    "gone",
                ));
            }
            Ok(steward_backend::CheckResults::from_json(
                serde_json::json!({"storage-index": "x", "summary": "Healthy", "results": {"healthy": true, "recoverable": true}}),
            ).unwrap())
        }
        async fn repair(
            &self,
            _cap: &Cap,
            _o: CheckOptions,
        ) -> std::result::Result<steward_backend::RepairResults, BackendError> {
            unreachable!()
        }
    }

    struct Collect(Vec<Unit>);
    #[async_trait::async_trait]
    impl UnitSink for Collect {
        async fn emit(&mut self, unit: Unit) -> Result<()> {
            self.0.push(unit);
            Ok(())
        }
        async fn sync(&mut self) -> Result<u64> {
            Ok(0)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stages_sharing_one_gateway_place_do_not_deadlock() {
        // More children per directory than the channel between the stages
        // holds, so the traversal blocks on the channel while other listings
        // are in flight (holding the one place, if nothing polls them).
        let backend = Arc::new(OneAtATime::new(1500));
        let root = Cap::parse(&backend.root).unwrap();
        let plan = DeepCheck {
            lister: backend.clone(),
            traverse: TraverseOptions {
                jobs: 8,
                ..Default::default()
            },
            checker: Checker {
                backend: backend.clone(),
                opts: CheckOptions::default(),
            },
            mapped: MappedOptions::new(16),
            repairer: None,
        };
        let (_tx, stop) = watch::channel(false);
        let mut sink = Collect(vec![]);
        let runner = Runner::new(Some(stop), Arc::new(crate::engine::Stderr), None);
        let output = DeepCheckOutput::Sink(&mut sink);
        let run = deep_check(plan, &root, output, &runner);
        let summary = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .expect("the pipeline finished (no deadlock)")
            .unwrap();
        let objects = (SUBDIRS * 1500 + SUBDIRS + 1) as u64;
        assert_eq!(summary.check.tally.healthy, objects);
        assert_eq!(
            sink.0.len() as u64,
            objects + 1,
            "every object once, and the stats"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_stage_stops_the_others_which_checkpoint() {
        // Files joined by checkpoints: no back-pressure stops the walk when
        // the check stage fails; the failure must.
        let backend = Arc::new(OneAtATime {
            list_ms: 200,
            checks_fail: true,
            ..OneAtATime::new(3)
        });
        let root = Cap::parse(&backend.root).unwrap();
        let plan = DeepCheck {
            lister: backend.clone(),
            traverse: TraverseOptions {
                jobs: 1,
                commit_interval: std::time::Duration::from_millis(50),
                ..Default::default()
            },
            checker: Checker {
                backend: backend.clone(),
                opts: CheckOptions::default(),
            },
            mapped: MappedOptions::new(1),
            repairer: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dc.ndjson");
        let (_tx, stop) = watch::channel(false);
        let runner = Runner::new(Some(stop), Arc::new(crate::engine::Stderr), None);
        let output = DeepCheckOutput::File {
            path: &out,
            restart: false,
            notify: None,
        };
        let err = deep_check(plan, &root, output, &runner)
            .await
            .err()
            .expect("the check stage failed");
        assert_eq!(err.kind, crate::error::ErrorKind::Gateway, "{err}");
        let listed = backend.listed.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            listed < u64::from(SUBDIRS),
            "the walk stopped: {listed} listed"
        );
        let (manifest, _) = deep_check_files(&out);
        assert!(
            resume::journal_path(&manifest).exists(),
            "the manifest has its journal"
        );
        assert!(
            resume::checkpoint_path(&out).exists(),
            "the check has its checkpoint"
        );
    }
}
