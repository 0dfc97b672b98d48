//! The one resume policy of every stage that writes a file: before the
//! stage runs, decide between a fresh run, a resume, "already complete",
//! and a refusal, and open the output at the right position.
//!
//! * The output is locked first ([`RunLock`], by the caller), before
//!   anything is created or cut.
//! * Its state lives in a store beside it ([`SqliteStore`]): `FILE.steward-
//!   journal` for a traversal (its frontier and seen set), `FILE.steward-
//!   ckpt` for a check or repair (a position). The two are told apart by
//!   name and by the format recorded inside; an output that has the other
//!   kind's store beside it is refused, naming the command that made it.
//! * The store's run record holds the run's identity (the root and caps of
//!   a manifest; the options and backend of a check); a resume with another
//!   identity is refused, saying both.
//! * A fresh run records its first checkpoint (nothing done, an empty
//!   output) *before* it creates its output: an output never exists without
//!   a checkpoint that covers it. An output that exists with no store
//!   beside it is refused (it is someone's file), unless `--restart`.
//! * On resume, the output is cut back to the position the checkpoint
//!   recorded (anything past it is a batch that was not committed).

use crate::error::{Error, Result};
use crate::output::Output;
use crate::store::sqlite::{self, Format, SqliteStore};
use crate::store::{RunRecord, StageKey, StageName, StagePosition, Store, TraversalProgress};
use crate::unit::UnitSink;
use async_trait::async_trait;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The run id of the single run a store beside an output holds.
pub const RUN: &str = "main";

fn beside(output: &Path, suffix: &str) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A traversal's journal beside its output.
pub fn journal_path(output: &Path) -> PathBuf {
    beside(output, ".steward-journal")
}

/// A check's or repair's checkpoint beside its output.
pub fn checkpoint_path(output: &Path) -> PathBuf {
    beside(output, ".steward-ckpt")
}

/// The store file of a stage's output, by the stage's kind.
pub fn store_path(output: &Path, stage: StageName) -> PathBuf {
    match stage {
        StageName::Traverse => journal_path(output),
        StageName::Check | StageName::Repair => checkpoint_path(output),
    }
}

/// `--restart`: remove the output and its state, at once (not when the
/// stage gets to it: a run stopped in between would leave an old output
/// without a checkpoint). The caller holds the output's lock, which checked
/// it is a regular file (removing a symlink removes the link only).
pub fn forget(output: &Path) -> Result<()> {
    sqlite::remove(&journal_path(output))?;
    sqlite::remove(&checkpoint_path(output))?;
    match std::fs::remove_file(output) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", output.display()), e)),
    }
}

/// Open the store of `stage`'s output, refusing an output that another kind
/// of stage made.
pub fn open_store(output: &Path, stage: StageName) -> Result<Arc<SqliteStore>> {
    let (mine, theirs, format, who) = match stage {
        StageName::Traverse => (
            journal_path(output),
            checkpoint_path(output),
            Format::Journal,
            "`steward check` or `repair`",
        ),
        _ => (
            checkpoint_path(output),
            journal_path(output),
            Format::Checkpoint,
            "`steward manifest`",
        ),
    };
    if !mine.exists() && std::fs::symlink_metadata(&theirs).is_ok() {
        return Err(Error::checkpoint(format!(
            "{} is the output of {who} (its state is in {}): use the same command to resume it, or another -o FILE",
            output.display(),
            theirs.display()
        )));
    }
    Ok(Arc::new(SqliteStore::open(&mine, format)?))
}

/// What a stage's saved state must say for the resume policy.
#[async_trait]
pub trait Saved: Sized + Send {
    /// The committed state of the stage `key`, if any.
    async fn load(store: &dyn Store, key: StageKey<'_>) -> Result<Option<Self>>;
    /// The output position it covers.
    fn output(&self) -> u64;
    /// Whether the stage finished.
    fn done(&self) -> bool;
}

#[async_trait]
impl Saved for TraversalProgress {
    async fn load(store: &dyn Store, key: StageKey<'_>) -> Result<Option<Self>> {
        store.traversal_progress(key).await
    }
    fn output(&self) -> u64 {
        self.output
    }
    fn done(&self) -> bool {
        self.done
    }
}

#[async_trait]
impl Saved for StagePosition {
    async fn load(store: &dyn Store, key: StageKey<'_>) -> Result<Option<Self>> {
        store.position(key).await
    }
    fn output(&self) -> u64 {
        self.output
    }
    fn done(&self) -> bool {
        self.done
    }
}

/// Where a stage's units go, as the resume policy sees it: a file
/// ([`FileTarget`]), or a table of a shared database (a dispatch on
/// PostgreSQL).
#[async_trait]
pub trait Target: Send + Sync {
    /// How messages name it.
    fn describe(&self) -> String;
    /// Open it for writing: empty (`None`), or cut back to the committed
    /// position `at` (refused if it holds less than that).
    async fn open(&self, at: Option<u64>) -> Result<Box<dyn UnitSink>>;
    /// Whether it holds units already (a fresh run does not overwrite
    /// them).
    async fn has_units(&self) -> Result<bool>;
}

/// A stage's output file.
pub struct FileTarget<'a>(pub &'a Path);

#[async_trait]
impl Target for FileTarget<'_> {
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
    async fn open(&self, at: Option<u64>) -> Result<Box<dyn UnitSink>> {
        Ok(Box::new(Output::open_file(self.0, at)?))
    }
    async fn has_units(&self) -> Result<bool> {
        Ok(std::fs::metadata(self.0)
            .map(|m| m.len() > 0)
            .unwrap_or(false))
    }
}

/// How a stage starts.
pub enum Start<S> {
    /// Nothing done. The run record is written; the caller records the
    /// stage's first checkpoint, then opens the output.
    Fresh,
    /// Resume from this state; the output is open at its position.
    Resume(S, Box<dyn UnitSink>),
    /// Already finished (the output checked whole up to its position).
    Complete(S),
}

/// Decide how the stage `stage` of run `run`, writing to `target`, starts
/// (see the module doc). `kind` and `identity` describe the run; a stored
/// run with another identity is refused.
pub async fn start<S: Saved>(
    store: &dyn Store,
    stage: StageName,
    run: &str,
    target: &dyn Target,
    kind: &str,
    identity: Value,
) -> Result<Start<S>> {
    let key = StageKey { run, stage };
    let saved = match store.run(run).await? {
        Some(r) => {
            if r.identity != identity || r.kind != kind {
                return Err(Error::checkpoint(format!(
                    "{} belongs to another run ({} {}), not this one ({kind} {}): use the same options, another -o FILE, or --restart to overwrite it",
                    store.describe(),
                    r.kind,
                    r.identity,
                    identity
                )));
            }
            S::load(store, key).await?
        }
        None => None,
    };
    match saved {
        Some(s) if s.done() => {
            // Make sure the output is still whole before saying so.
            target.open(Some(s.output())).await?;
            Ok(Start::Complete(s))
        }
        Some(s) => {
            let out = target.open(Some(s.output())).await?;
            Ok(Start::Resume(s, out))
        }
        None => {
            if target.has_units().await? {
                return Err(Error::checkpoint(format!(
                    "{} already exists and has no checkpoint beside it: use --restart to overwrite it, or another -o FILE",
                    target.describe()
                )));
            }
            store.put_run(&RunRecord::new(run, kind, identity)).await?;
            Ok(Start::Fresh)
        }
    }
}
