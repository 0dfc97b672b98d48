//! Wiring stages to files and checkpoints: what `steward manifest -o FILE`
//! (and later `check`, `repair`, `deep-check`) does before and after the
//! stage runs: decide between a fresh run, a resume and a refusal, open the
//! output at the right length, and run the stage. A one-shot deep check
//! runs one chain of stages, joined either by channels or by followed files
//! ([`DeepCheckOutput`]).

use crate::error::{Error, Result};
use crate::input::{Committed, LineSource};
use crate::journal::{
    checkpoint_path, remove_checkpoint, ManifestJournal, Progress, RunIdentity, StageCheckpoint,
};
use crate::output::Output;
use crate::stage::traverse::{
    listing_cap, root_identity, Traversal, TraverseCounts, TraverseOptions, TraverseSummary,
};
use crate::stage::{run_mapped, Checkpointing, Observer, Op, StageInput, StageSummary};
use crate::unit::Unit;
use crate::unit::UnitSink;
use futures::future::OptionFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use steward_backend::Backend;
use steward_cap::{Authority, Cap};
use tokio::sync::{mpsc, watch};

fn authority_name(a: Authority) -> &'static str {
    match a {
        Authority::Write => "write",
        Authority::Read => "read",
        Authority::Verify => "verify",
    }
}

/// Where a manifest goes.
#[derive(Default)]
pub struct ManifestDest<'a> {
    /// The output file (resumable), or `None` for standard output.
    pub path: Option<&'a Path>,
    /// Forget the checkpoint and start over.
    pub restart: bool,
    /// Told the committed output length after each checkpoint.
    pub notify: Option<watch::Sender<Committed>>,
}

/// Run a manifest of `root`, writing units to `output` (a file, resumable
/// through its checkpoint) or to standard output.
pub async fn manifest(
    backend: Arc<dyn Backend>,
    root: &Cap,
    opts: TraverseOptions,
    dest: ManifestDest<'_>,
    stop: watch::Receiver<bool>,
    on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
) -> Result<TraverseSummary> {
    let ManifestDest {
        path: output,
        restart,
        notify,
    } = dest;
    let Some(path) = output else {
        let mut out = Output::stdout();
        let t = Traversal::new(backend, root, opts, None, None)?;
        return t.run(&mut out, stop, on_progress).await;
    };
    let identity = RunIdentity {
        root: root_identity(root),
        caps: authority_name(opts.caps).to_string(),
    };
    let ckpt = checkpoint_path(path);
    if restart {
        remove_checkpoint(&ckpt)?;
    }
    let had_checkpoint = ckpt.exists();
    let mut journal = ManifestJournal::open(&ckpt)?;
    let loaded = if had_checkpoint {
        journal.load()?
    } else {
        None
    };
    match loaded {
        Some((id, progress)) => {
            if id != identity {
                return Err(Error::checkpoint(format!(
                    "{} belongs to another run (root {}, --caps {}), not this one (root {}, --caps {}): use another -o FILE, or --restart to overwrite it",
                    ckpt.display(), id.root, id.caps, identity.root, identity.caps
                )));
            }
            if progress.done {
                // Nothing to do: the output is complete. Make sure it is
                // still whole before saying so.
                Output::open_file(path, Some(progress.output_len))?;
                if let Some(n) = &notify {
                    let _ = n.send(Committed {
                        len: progress.output_len,
                        done: true,
                    });
                }
                return Ok(TraverseSummary {
                    stats: progress.stats,
                    unlisted: progress.unlisted,
                    bad_caps: 0,
                    already_done: true,
                });
            }
            let mut out = Output::open_file(path, Some(progress.output_len))?;
            let t = Traversal::new(backend, root, opts, Some(journal), Some(progress))?
                .with_notify(notify);
            t.run(&mut out, stop, on_progress).await
        }
        None => {
            if !restart
                && path.exists()
                && std::fs::metadata(path)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
            {
                return Err(Error::checkpoint(format!(
                    "{} already exists and has no checkpoint beside it: use --restart to overwrite it, or another -o FILE",
                    path.display()
                )));
            }
            let mut out = Output::open_file(path, None)?;
            let root_task = crate::journal::DirTask {
                id: 0,
                cap: listing_cap(root, opts.caps),
                path: vec![],
            };
            journal.start(
                &identity,
                Some(&root_task),
                root.storage_index().map(|s| s.0),
            )?;
            let progress = Progress {
                next_id: 1,
                ..Default::default()
            };
            let t = Traversal::new(backend, root, opts, Some(journal), Some(progress))?
                .with_notify(notify);
            t.run(&mut out as &mut dyn UnitSink, stop, on_progress)
                .await
        }
    }
}

/// A sink that hands units to the next stage of the same process.
pub struct ChannelSink(pub mpsc::Sender<Unit>);

#[async_trait::async_trait]
impl UnitSink for ChannelSink {
    async fn emit(&mut self, unit: Unit) -> Result<()> {
        self.0.send(unit).await.map_err(|_| {
            Error::new(
                crate::error::ErrorKind::Interrupted,
                "the next stage stopped",
            )
        })
    }
    async fn sync(&mut self) -> Result<u64> {
        Ok(0)
    }
}

/// Where a file stage reads and writes, and how it resumes.
pub struct FileStage<'a> {
    /// `check` or `repair`.
    pub stage: &'static str,
    /// Options that change the output; a resume with others is refused.
    pub options: String,
    /// Input file (`None` or `-`: standard input).
    pub input: Option<&'a Path>,
    /// Follow an input another stage of this process is writing.
    pub follow: Option<watch::Receiver<Committed>>,
    /// Output file (`None`: standard output, not resumable).
    pub output: Option<&'a Path>,
    pub restart: bool,
    pub jobs: usize,
    /// Told the output's committed length after each checkpoint.
    pub notify: Option<watch::Sender<Committed>>,
}

/// Run a check or repair stage from a file (or stdin) to a file (or stdout),
/// resuming from the checkpoint beside the output.
pub async fn run_file_stage(
    fs: FileStage<'_>,
    op: &crate::stage::Op,
    stop: watch::Receiver<bool>,
    observer: &mut dyn Observer,
) -> Result<StageSummary> {
    let open_input = |offset: u64| {
        let follow = fs.follow.clone();
        let input = fs.input;
        async move {
            let mut src = match (follow, input) {
                (Some(rx), Some(p)) => LineSource::follow(p, rx).await?,
                _ => LineSource::open(input).await?,
            };
            src.skip_to(offset).await?;
            Ok::<_, Error>(src)
        }
    };
    let Some(out_path) = fs.output else {
        let src = open_input(0).await?;
        let mut out = Output::stdout();
        return run_mapped(
            StageInput::Lines(src),
            fs.jobs,
            op,
            &mut out,
            None,
            stop,
            observer,
        )
        .await;
    };
    let ckpt_path = checkpoint_path(out_path);
    if fs.restart {
        remove_checkpoint(&ckpt_path)?;
    }
    let (state, src, mut out) = match StageCheckpoint::load(&ckpt_path)? {
        Some(c) => {
            if c.stage != fs.stage || c.options != fs.options {
                return Err(Error::checkpoint(format!(
                    "{} is the checkpoint of a `{}` run with options [{}], not of this `{}` run with [{}]: use the same options, another -o FILE, or --restart",
                    ckpt_path.display(), c.stage, c.options, fs.stage, fs.options
                )));
            }
            let src = open_input(c.input_offset).await?;
            let (hash, _) = src.prefix_hash(c.input_offset);
            if hash != c.input_prefix_hash {
                return Err(Error::checkpoint(format!(
                    "the input {} is not the one {} was made from (its first bytes differ): give the same input, or --restart",
                    src.name(),
                    ckpt_path.display()
                )));
            }
            let out = Output::open_file(out_path, Some(c.output_len))?;
            if c.done {
                if let Some(n) = &fs.notify {
                    let _ = n.send(Committed {
                        len: c.output_len,
                        done: true,
                    });
                }
                return Ok(StageSummary {
                    bad_lines: c.tally.get("bad-lines").copied().unwrap_or(0),
                    tally: c.tally,
                    already_done: true,
                });
            }
            (c, src, out)
        }
        None => {
            if !fs.restart
                && std::fs::metadata(out_path)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
            {
                return Err(Error::checkpoint(format!(
                    "{} already exists and has no checkpoint beside it: use --restart to overwrite it, or another -o FILE",
                    out_path.display()
                )));
            }
            let src = open_input(0).await?;
            let out = Output::open_file(out_path, None)?;
            let state = StageCheckpoint {
                version: crate::journal::STAGE_CHECKPOINT_VERSION,
                stage: fs.stage.to_string(),
                options: fs.options.clone(),
                input_prefix_hash: String::new(),
                input_prefix_len: 0,
                input_offset: 0,
                input_lines: 0,
                output_len: 0,
                tally: Default::default(),
                done: false,
            };
            (state, src, out)
        }
    };
    let ckpt = Checkpointing {
        path: ckpt_path,
        state,
        interval: std::time::Duration::from_secs(1),
        notify: fs.notify,
    };
    run_mapped(
        StageInput::Lines(src),
        fs.jobs,
        op,
        &mut out,
        Some(ckpt),
        stop,
        observer,
    )
    .await
}

/// The files of a resumable one-shot deep check: the final units in `FILE`,
/// the manifest and (with repair) the check units beside it, each with its
/// own checkpoint.
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
    /// Lists directories (a gateway).
    pub lister: Arc<dyn Backend>,
    pub traverse: TraverseOptions,
    pub checker: crate::stage::check::Checker,
    pub check_jobs: usize,
    pub repairer: Option<crate::stage::repair::Repairer>,
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
    },
}

/// What a one-shot deep check did.
pub struct DeepCheckSummary {
    pub traverse: TraverseSummary,
    pub check: StageSummary,
    pub repair: Option<StageSummary>,
}

/// An observer that only counts, for a stage whose units a later stage reads.
pub struct Counting(pub fn(&Unit, &mut std::collections::BTreeMap<String, u64>));

impl Observer for Counting {
    fn output(&mut self, unit: &Unit, tally: &mut std::collections::BTreeMap<String, u64>) {
        (self.0)(unit, tally)
    }
    fn bad_line(&mut self, _bad: &crate::stage::BadLine) {}
}

/// Run traversal, check and (optionally) repair as concurrent stages of one
/// process, each handing its units to the next as `output` decides: through
/// bounded channels, or through checkpointed files.
pub async fn deep_check(
    plan: DeepCheck,
    root: &Cap,
    output: DeepCheckOutput<'_>,
    stop: watch::Receiver<bool>,
    observer: &mut dyn Observer,
    on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
) -> Result<DeepCheckSummary> {
    match output {
        DeepCheckOutput::Sink(sink) => {
            let transport = Channels { sink };
            run_chain(transport, plan, root, stop, observer, on_progress).await
        }
        DeepCheckOutput::File { path, restart } => {
            if restart {
                let (manifest_path, check_path) = deep_check_files(path);
                for p in [path, manifest_path.as_path(), check_path.as_path()] {
                    remove_checkpoint(&checkpoint_path(p))?;
                }
            }
            let transport = Files {
                output: path,
                restart,
            };
            run_chain(transport, plan, root, stop, observer, on_progress).await
        }
    }
}

/// The stages of a deep check: traverse -> check -> (repair) -> the final
/// units, joined by `transport`. The last stage reports its units to
/// `observer`; a check stage followed by repair only counts.
async fn run_chain<T: Transport>(
    transport: T,
    plan: DeepCheck,
    root: &Cap,
    stop: watch::Receiver<bool>,
    observer: &mut dyn Observer,
    on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
) -> Result<DeepCheckSummary> {
    use crate::stage::check::tally_check;
    let (manifest_out, manifest_in) = transport.link("manifest");
    let repair_link = plan.repairer.as_ref().map(|r| (r, transport.link("check")));
    let last = transport.end();
    let mut counting = Counting(tally_check);
    let (check_out, check_observer, repair) = match repair_link {
        None => (last, observer, None),
        Some((repairer, (check_out, repair_in))) => {
            let repair = MappedStage {
                name: "repair",
                options: repairer.policy.checkpoint_key(),
                op: repairer.clone().into_op(),
                jobs: plan.check_jobs,
                observer,
            };
            let repair = T::map(repair, repair_in, last, stop.clone());
            (check_out, &mut counting as &mut dyn Observer, Some(repair))
        }
    };
    let check = MappedStage {
        name: "check",
        options: plan.checker.checkpoint_key(),
        op: plan.checker.clone().into_op(),
        jobs: plan.check_jobs,
        observer: check_observer,
    };
    let traverse = T::traverse(&plan, root, manifest_out, stop.clone(), on_progress);
    let check = T::map(check, manifest_in, check_out, stop);
    let repair = async { OptionFuture::from(repair).await.transpose() };
    let (traverse, check, repair) = tokio::try_join!(traverse, check, repair)?;
    Ok(DeepCheckSummary {
        traverse,
        check,
        repair,
    })
}

/// A check or repair stage of a deep check.
struct MappedStage<'o> {
    /// `check` or `repair`, as a file's checkpoint records it.
    name: &'static str,
    /// The options a resume from a file must match.
    options: String,
    op: Box<Op>,
    jobs: usize,
    observer: &'o mut dyn Observer,
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
        stop: watch::Receiver<bool>,
        on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
    ) -> Result<TraverseSummary>;
    async fn map(
        stage: MappedStage<'_>,
        input: Self::Reader,
        out: Self::Writer,
        stop: watch::Receiver<bool>,
    ) -> Result<StageSummary>;
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
        (ChannelWriter::Next(ChannelSink(tx)), rx)
    }
    fn end(self) -> Self::Writer {
        ChannelWriter::Last(self.sink)
    }
    async fn traverse(
        plan: &DeepCheck,
        root: &Cap,
        mut out: Self::Writer,
        stop: watch::Receiver<bool>,
        on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
    ) -> Result<TraverseSummary> {
        let t = Traversal::new(plan.lister.clone(), root, plan.traverse.clone(), None, None)?;
        t.run(out.sink(), stop, on_progress).await
    }
    async fn map(
        stage: MappedStage<'_>,
        input: Self::Reader,
        mut out: Self::Writer,
        stop: watch::Receiver<bool>,
    ) -> Result<StageSummary> {
        run_mapped(
            StageInput::Channel(input),
            stage.jobs,
            &*stage.op,
            out.sink(),
            None,
            stop,
            stage.observer,
        )
        .await
    }
}

/// Checkpointed files, each followed by the next stage as it is committed;
/// the final units go to `output`, the others beside it.
struct Files<'a> {
    output: &'a Path,
    restart: bool,
}

/// A file a stage writes (and checkpoints), telling the stage that follows
/// it, if any, how much of it is committed.
struct FileWriter {
    path: PathBuf,
    restart: bool,
    notify: Option<watch::Sender<Committed>>,
}

/// A file an earlier stage is writing, read as it is committed.
struct FileReader {
    path: PathBuf,
    follow: watch::Receiver<Committed>,
}

impl Transport for Files<'_> {
    type Writer = FileWriter;
    type Reader = FileReader;

    fn link(&self, from: &str) -> (Self::Writer, Self::Reader) {
        let path = beside(self.output, from);
        let (tx, rx) = watch::channel(Committed::default());
        let writer = FileWriter {
            path: path.clone(),
            restart: self.restart,
            notify: Some(tx),
        };
        (writer, FileReader { path, follow: rx })
    }
    fn end(self) -> Self::Writer {
        FileWriter {
            path: self.output.to_path_buf(),
            restart: self.restart,
            notify: None,
        }
    }
    async fn traverse(
        plan: &DeepCheck,
        root: &Cap,
        out: Self::Writer,
        stop: watch::Receiver<bool>,
        on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
    ) -> Result<TraverseSummary> {
        let dest = ManifestDest {
            path: Some(&out.path),
            restart: out.restart,
            notify: out.notify,
        };
        manifest(
            plan.lister.clone(),
            root,
            plan.traverse.clone(),
            dest,
            stop,
            on_progress,
        )
        .await
    }
    async fn map(
        stage: MappedStage<'_>,
        input: Self::Reader,
        out: Self::Writer,
        stop: watch::Receiver<bool>,
    ) -> Result<StageSummary> {
        let fs = FileStage {
            stage: stage.name,
            options: stage.options,
            input: Some(&input.path),
            follow: Some(input.follow),
            output: Some(&out.path),
            restart: out.restart,
            jobs: stage.jobs,
            notify: out.notify,
        };
        run_file_stage(fs, &*stage.op, stop, stage.observer).await
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
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
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
        let backend = Arc::new(OneAtATime {
            permit: Semaphore::new(1),
            root: cap("dir", 999_999),
            files: 1500,
        });
        let root = Cap::parse(&backend.root).unwrap();
        let plan = DeepCheck {
            lister: backend.clone(),
            traverse: TraverseOptions {
                jobs: 8,
                ..Default::default()
            },
            checker: Checker {
                backend: backend.clone(),
                fallback: None,
                opts: CheckOptions::default(),
            },
            check_jobs: 16,
            repairer: None,
        };
        let (_tx, stop) = watch::channel(false);
        let mut sink = Collect(vec![]);
        let mut obs = Counting(crate::stage::check::tally_check);
        let output = DeepCheckOutput::Sink(&mut sink);
        let run = deep_check(plan, &root, output, stop, &mut obs, &|_| {});
        let summary = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .expect("the pipeline finished (no deadlock)")
            .unwrap();
        let objects = (SUBDIRS * 1500 + SUBDIRS + 1) as u64;
        assert_eq!(summary.check.tally.get("healthy"), Some(&objects));
        assert_eq!(
            sink.0.len() as u64,
            objects + 1,
            "every object once, and the stats"
        );
    }
}
