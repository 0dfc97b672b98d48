//! Wiring stages to their inputs, outputs and state: what `steward
//! manifest`, `check`, `repair` and `deep-check` (and `dispatch`, `serve`)
//! do around a stage.
//!
//! * [`manifest`]: a traversal to a file (resumable, under the output's
//!   lock), to standard output, or to any [`UnitSink`] (a channel, an HTTP
//!   response).
//! * [`run_file_stage`]: a check or repair from a file or standard input
//!   to a file (resumable) or standard output.
//! * [`chain`]: a one-shot deep check, its stages joined by channels or by
//!   followed checkpointed files.
//! * [`resume`]: the one resume policy all of them share.

pub mod chain;
pub mod resume;

pub use chain::{
    deep_check, deep_check_files, DeepCheck, DeepCheckOutput, DeepCheckSummary, StageFiles,
};

use crate::engine::StageCtx;
use crate::error::{Error, Result};
use crate::input::{Committed, LineSource};
use crate::lock::RunLock;
use crate::output::Output;
use crate::stage::tally::Tally;
use crate::stage::traverse::{
    listing_cap, root_identity, Journal, Traversal, TraverseOptions, TraverseSummary,
};
use crate::stage::{run_mapped, Checkpointing, MappedOptions, Op, StageInput, StageSummary};
use crate::store::{DirTask, StageKey, StageName, StagePosition, Store, TraversalProgress};
use crate::unit::{Unit, UnitSink};
use resume::{Start, RUN};
use serde_json::json;
use std::path::Path;
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
pub enum ManifestDest<'a> {
    /// Standard output (not resumable).
    Stdout,
    /// Any sink (a channel to the next stage, an HTTP response); not
    /// resumable.
    Sink(&'a mut dyn UnitSink),
    /// A file, resumable through the journal beside it.
    File {
        path: &'a Path,
        /// Forget the journal and start over.
        restart: bool,
        /// Told the committed output length after each checkpoint.
        notify: Option<watch::Sender<Committed>>,
    },
}

/// Run a manifest of `root` to `dest`. A file is locked for the whole run.
pub async fn manifest(
    backend: Arc<dyn Backend>,
    root: &Cap,
    opts: TraverseOptions,
    dest: ManifestDest<'_>,
    ctx: &StageCtx,
) -> Result<TraverseSummary> {
    match dest {
        ManifestDest::Stdout => {
            let mut out = Output::stdout();
            let t = Traversal::new(backend, root, opts, None, None).await?;
            t.run(&mut out, ctx).await
        }
        ManifestDest::Sink(sink) => {
            let t = Traversal::new(backend, root, opts, None, None).await?;
            t.run(sink, ctx).await
        }
        ManifestDest::File {
            path,
            restart,
            notify,
        } => {
            let _lock = RunLock::acquire(path)?;
            if restart {
                resume::forget(path)?;
            }
            manifest_file(backend, root, opts, path, notify, ctx).await
        }
    }
}

/// A manifest to the file `path`, whose lock the caller holds.
pub(super) async fn manifest_file(
    backend: Arc<dyn Backend>,
    root: &Cap,
    opts: TraverseOptions,
    path: &Path,
    notify: Option<watch::Sender<Committed>>,
    ctx: &StageCtx,
) -> Result<TraverseSummary> {
    let store = resume::open_store(path, StageName::Traverse)?;
    let to = Resumable {
        store,
        run: RUN,
        target: &resume::FileTarget(path),
    };
    manifest_into(backend, root, opts, to, notify, ctx).await
}

/// Where a resumable stage keeps its state (`store`, under the run id
/// `run`) and writes its units (`target`).
pub struct Resumable<'a> {
    pub store: Arc<dyn Store>,
    pub run: &'a str,
    pub target: &'a dyn resume::Target,
}

/// A resumable manifest (see [`Resumable`]); the caller holds whatever
/// lock the target needs.
pub async fn manifest_into(
    backend: Arc<dyn Backend>,
    root: &Cap,
    opts: TraverseOptions,
    to: Resumable<'_>,
    notify: Option<watch::Sender<Committed>>,
    ctx: &StageCtx,
) -> Result<TraverseSummary> {
    let Resumable { store, run, target } = to;
    let identity = json!({
        "root": root_identity(root),
        "caps": authority_name(opts.caps),
    });
    let key = StageKey {
        run,
        stage: StageName::Traverse,
    };
    let journal = Journal {
        store: store.clone(),
        run: run.into(),
    };
    let started = resume::start::<TraversalProgress>(
        &*store,
        StageName::Traverse,
        run,
        target,
        "manifest",
        identity,
    )
    .await?;
    let (progress, mut out) = match started {
        Start::Complete(p) => {
            if let Some(n) = &notify {
                let _ = n.send(Committed {
                    len: p.output,
                    done: true,
                });
            }
            ctx.status.set_objects(p.stats.objects());
            ctx.status.finish();
            return Ok(TraverseSummary {
                stats: p.stats,
                unlisted: p.unlisted,
                bad_caps: p.bad_caps,
                already_done: true,
            });
        }
        Start::Resume(p, out) => (p, out),
        Start::Fresh => {
            let root_task = DirTask {
                id: 0,
                cap: listing_cap(root, opts.caps),
                path: vec![],
            };
            let p = TraversalProgress {
                next_id: 1,
                ..Default::default()
            };
            // The checkpoint first (it says the output is empty), then the
            // output.
            store
                .traversal_start(key, &root_task, root.storage_index().map(|s| s.0), &p)
                .await?;
            (p, target.open(None).await?)
        }
    };
    let t = Traversal::new(backend, root, opts, Some(journal), Some(progress))
        .await?
        .with_notify(notify);
    t.run(&mut *out, ctx).await
}

/// A sink that hands units to the next stage of the same process; its
/// position is the number of units sent.
pub struct ChannelSink {
    tx: mpsc::Sender<Unit>,
    sent: u64,
}

impl ChannelSink {
    pub fn new(tx: mpsc::Sender<Unit>) -> Self {
        ChannelSink { tx, sent: 0 }
    }
}

#[async_trait::async_trait]
impl UnitSink for ChannelSink {
    async fn emit(&mut self, unit: Unit) -> Result<()> {
        self.tx.send(unit).await.map_err(|_| {
            Error::new(
                crate::error::ErrorKind::Interrupted,
                "the next stage stopped",
            )
        })?;
        self.sent += 1;
        Ok(())
    }
    async fn sync(&mut self) -> Result<u64> {
        Ok(self.sent)
    }
}

/// Where a file stage reads and writes, and how it resumes.
pub struct FileStage<'a> {
    /// `Check` or `Repair`.
    pub stage: StageName,
    /// Options that change the output (and the backend); a resume with
    /// others is refused.
    pub options: String,
    /// Input file (`None` or `-`: standard input).
    pub input: Option<&'a Path>,
    /// Follow an input another stage of this process is writing.
    pub follow: Option<watch::Receiver<Committed>>,
    /// Output file (`None`: standard output, not resumable).
    pub output: Option<&'a Path>,
    pub restart: bool,
    pub mapped: MappedOptions,
    /// Told the output's committed position after each checkpoint.
    pub notify: Option<watch::Sender<Committed>>,
}

/// Run a check or repair stage from a file (or stdin) to a file (or
/// stdout), resuming from the checkpoint beside the output, under the
/// output's lock for the whole run.
pub async fn run_file_stage<T: Tally>(
    fs: FileStage<'_>,
    op: &Op,
    ctx: &StageCtx,
) -> Result<StageSummary<T>> {
    crate::input::refuse_directory(fs.input)?;
    let _lock = fs.output.map(RunLock::acquire).transpose()?;
    if let Some(out) = fs.output {
        refuse_input_as_output(fs.input, out)?;
        if fs.restart {
            resume::forget(out)?;
        }
    }
    run_file_stage_locked(fs, op, ctx).await
}

/// An output that is the input itself would be cut before it is read.
fn refuse_input_as_output(input: Option<&Path>, out_path: &Path) -> Result<()> {
    if let Some(input) = input.filter(|p| p.as_os_str() != "-") {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        if id(input).is_some() && id(input) == id(out_path) {
            return Err(Error::input(format!(
                "{} is both the input and the output: give another -o FILE",
                out_path.display()
            )));
        }
    }
    Ok(())
}

/// Where a mapped stage reads its units: opened at a byte offset (a
/// resume), reading everything before it (the checkpoint's input prefix
/// hash is of the first bytes).
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    async fn open_at(&self, offset: u64) -> Result<LineSource>;
}

/// A file stage's input: a file or standard input, maybe followed.
struct FileSource<'a> {
    input: Option<&'a Path>,
    follow: Option<watch::Receiver<Committed>>,
}

#[async_trait::async_trait]
impl Source for FileSource<'_> {
    async fn open_at(&self, offset: u64) -> Result<LineSource> {
        let mut src = match (&self.follow, self.input) {
            (Some(rx), Some(p)) => LineSource::follow(p, rx.clone()).await?,
            _ => LineSource::open(self.input).await?,
        };
        src.skip_to(offset).await?;
        Ok(src)
    }
}

/// [`run_file_stage`], with the output's lock held by the caller.
pub(super) async fn run_file_stage_locked<T: Tally>(
    fs: FileStage<'_>,
    op: &Op,
    ctx: &StageCtx,
) -> Result<StageSummary<T>> {
    let input = FileSource {
        input: fs.input,
        follow: fs.follow.clone(),
    };
    let Some(out_path) = fs.output else {
        let src = input.open_at(0).await?;
        let mut out = Output::stdout();
        return run_mapped(StageInput::Lines(src), fs.mapped, op, &mut out, None, ctx).await;
    };
    refuse_input_as_output(fs.input, out_path)?;
    let store = resume::open_store(out_path, fs.stage)?;
    let to = Resumable {
        store,
        run: RUN,
        target: &resume::FileTarget(out_path),
    };
    let stage = MappedStageIo {
        stage: fs.stage,
        options: fs.options,
        mapped: fs.mapped,
        notify: fs.notify,
    };
    mapped_into(stage, &input, to, op, ctx).await
}

/// What a resumable mapped stage is, beside where it reads and writes.
pub struct MappedStageIo {
    /// `Check` or `Repair`.
    pub stage: StageName,
    /// Options that change the output; a resume with others is refused.
    pub options: String,
    pub mapped: MappedOptions,
    /// Told the output's committed position after each checkpoint.
    pub notify: Option<watch::Sender<Committed>>,
}

/// A resumable check or repair from `input` (see [`Resumable`]).
pub async fn mapped_into<T: Tally>(
    stage: MappedStageIo,
    input: &dyn Source,
    to: Resumable<'_>,
    op: &Op,
    ctx: &StageCtx,
) -> Result<StageSummary<T>> {
    let Resumable { store, run, target } = to;
    let key = StageKey {
        run,
        stage: stage.stage,
    };
    let identity = json!({ "options": stage.options });
    let started = resume::start::<StagePosition>(
        &*store,
        stage.stage,
        run,
        target,
        stage.stage.as_str(),
        identity,
    )
    .await?;
    let (state, src, mut out) = match started {
        Start::Complete(c) => {
            // The input is still checked: a complete output of another
            // input is not this run's.
            let src = input.open_at(c.input_offset).await?;
            check_same_input(&src, &c, &*store)?;
            if let Some(n) = &stage.notify {
                let _ = n.send(Committed {
                    len: c.output,
                    done: true,
                });
            }
            ctx.status.finish();
            return Ok(StageSummary {
                tally: serde_json::from_value(c.tally).unwrap_or_default(),
                already_done: true,
                shape: c.shape,
            });
        }
        Start::Resume(c, out) => {
            let src = input.open_at(c.input_offset).await?;
            check_same_input(&src, &c, &*store)?;
            (c, src, out)
        }
        Start::Fresh => {
            let src = input.open_at(0).await?;
            let (input_prefix_hash, input_prefix_len) = src.prefix_hash(0);
            let state = StagePosition {
                input_prefix_hash,
                input_prefix_len,
                tally: serde_json::to_value(T::default()).expect("a tally serializes"),
                ..Default::default()
            };
            // The checkpoint first (nothing done, an empty output), then
            // the output: a run stopped at any moment after this resumes.
            store.set_position(key, &state).await?;
            let out = target.open(None).await?;
            (state, src, out)
        }
    };
    let ckpt = Checkpointing {
        store,
        run: run.into(),
        stage: stage.stage,
        state,
        notify: stage.notify,
    };
    run_mapped(
        StageInput::Lines(src),
        stage.mapped,
        op,
        &mut *out,
        Some(ckpt),
        ctx,
    )
    .await
}

/// Refuse a resume whose input is not the one the checkpoint was made from.
fn check_same_input(src: &LineSource, c: &StagePosition, store: &dyn Store) -> Result<()> {
    let (hash, _) = src.prefix_hash(c.input_offset);
    if hash != c.input_prefix_hash {
        return Err(Error::checkpoint(format!(
            "the input {} is not the one {} was made from (its first bytes differ): give the same input, or --restart",
            src.name(),
            store.describe()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The resume policy on an in-memory backend (the integration tests
    //! run it against a grid; this pins what a grid cannot easily give: a
    //! child whose cap does not parse).
    use super::*;
    use crate::engine::StageCtx;
    use std::time::Duration;
    use steward_backend::{
        BackendError, CheckOptions, CheckResults, Child, Listing, NodeType, Operation,
        RepairResults, Tenant,
    };

    fn dir_cap(n: u8) -> String {
        format!(
            "URI:DIR2:{}:{}",
            steward_cap::base32::encode(&[n; 16]),
            steward_cap::base32::encode(&[n; 32])
        )
    }

    /// A root with a child whose cap does not parse and a subdirectory
    /// that is slow to list.
    struct BadChild;

    #[async_trait::async_trait]
    impl Backend for BadChild {
        fn describe(&self) -> String {
            "bad child".into()
        }
        fn supports(&self, _op: Operation) -> bool {
            true
        }
        fn for_tenant(&self, _t: Tenant) -> Arc<dyn Backend> {
            unreachable!()
        }
        async fn list_directory(&self, dir: &Cap) -> std::result::Result<Listing, BackendError> {
            let root = Cap::parse(&dir_cap(1)).unwrap();
            if dir.storage_index() != root.storage_index() {
                tokio::time::sleep(Duration::from_millis(400)).await;
                return Ok(Listing::default());
            }
            let child = |name: &str, t, uri: String| Child {
                name: name.into(),
                node_type: t,
                rw_uri: None,
                ro_uri: Some(uri),
                verify_uri: None,
                size: None,
                format: None,
                mutable: None,
            };
            Ok(Listing {
                children: vec![
                    child("bad", NodeType::File, "URI:CHK:garbage".into()),
                    child("sub", NodeType::Directory, dir_cap(2)),
                ],
                size: None,
            })
        }
        async fn check(
            &self,
            _c: &Cap,
            _o: CheckOptions,
        ) -> std::result::Result<CheckResults, BackendError> {
            unreachable!()
        }
        async fn repair(
            &self,
            _c: &Cap,
            _o: CheckOptions,
        ) -> std::result::Result<RepairResults, BackendError> {
            unreachable!()
        }
    }

    /// Issue 9: the count of bad caps was not in the manifest's checkpoint,
    /// so `manifest`'s exit code went from 1 to 0 after an interrupt and a
    /// resume.
    #[tokio::test]
    async fn bad_caps_found_before_an_interrupt_still_count_after_the_resume() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.ndjson");
        let root = Cap::parse(&dir_cap(1)).unwrap();
        let opts = TraverseOptions {
            jobs: 1,
            commit_interval: Duration::ZERO,
            ..Default::default()
        };
        let run = |stop| {
            let (root, opts, out) = (root.clone(), opts.clone(), out.clone());
            async move {
                let ctx = StageCtx::standalone("traverse", stop);
                let dest = ManifestDest::File {
                    path: &out,
                    restart: false,
                    notify: None,
                };
                manifest(Arc::new(BadChild), &root, opts, dest, &ctx).await
            }
        };
        // Stopped while the subdirectory is being listed: the root's
        // listing, with its bad child, is committed.
        let (tx, stop) = watch::channel(false);
        let first = tokio::spawn(run(stop));
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(true).unwrap();
        let err = first.await.unwrap().expect_err("interrupted");
        assert_eq!(err.kind, crate::error::ErrorKind::Interrupted);
        let (_tx, stop) = watch::channel(false);
        let summary = run(stop).await.unwrap();
        assert_eq!(summary.bad_caps, 1, "the bad child found before the stop");
        assert_eq!(summary.stats.count_directories, 2);
    }
}
