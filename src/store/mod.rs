//! The state store: everything a run needs to resume, behind one interface.
//!
//! A [`Store`] holds, keyed by run and stage ([`StageKey`]):
//!
//! * **runs** ([`RunRecord`]): what each run is (its identity: the root, the
//!   options that change its output; a resume with another identity is
//!   refused), its status, and free-form details its owner keeps (a
//!   dispatch account's counts and last error, a served operation's
//!   options);
//! * **the traversal's state**: the frontier of directories still to list
//!   ([`DirTask`]), the set of storage indexes already seen, and its
//!   [`TraversalProgress`] (deep-stats, counts, the output position);
//! * **a mapped stage's position** ([`StagePosition`]): how much of its
//!   input is done and the output position that corresponds to it.
//!
//! Output positions are opaque to the store and to the stage runner: a sink
//! ([`crate::unit::UnitSink`]) returns one when it has made its units
//! durable, and takes it back on resume (a file's length, a count of units
//! sent on a channel or an HTTP response).
//!
//! The job table of `steward dispatch` (accounts, claims with fencing
//! tokens) is the [`jobs::Jobs`] interface, implemented by the same stores.
//!
//! Every write is one atomic commit. A store is used by one process at a
//! time: [`sqlite::SqliteStore`] takes an exclusive lock on its file for as
//! long as it is open. Implementations: [`sqlite::SqliteStore`] and
//! [`postgres::PostgresStore`] (shared by several workers, which keep
//! apart by run and by claim); each must pass the conformance suite in
//! `conformance.rs`.

pub mod jobs;
mod jobs_postgres;
mod jobs_sqlite;
pub mod pg_gateways;
pub mod pg_units;
pub mod postgres;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod jobs_conformance;

use crate::error::Result;
use crate::stats::DeepStats;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_cap::Cap;

/// The stages a run is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageName {
    Traverse,
    Check,
    Repair,
}

impl StageName {
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Traverse => "traverse",
            StageName::Check => "check",
            StageName::Repair => "repair",
        }
    }
}

/// Which run's which stage a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StageKey<'a> {
    pub run: &'a str,
    pub stage: StageName,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    /// Stopped at a checkpoint (a signal, a cancel): resumable.
    Stopped,
    /// Ended by an error that stops the run (resumable once mended).
    Failed {
        message: String,
    },
    Done,
}

/// One run: what it is and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    /// What kind of run (`manifest`, `check`, `deep-check`, an account of
    /// a dispatch, an operation of a server).
    pub kind: String,
    /// What a resume must match.
    pub identity: Value,
    pub status: RunStatus,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
    /// Whatever the run's owner keeps beside it.
    #[serde(default)]
    pub detail: Value,
}

impl RunRecord {
    /// A new running record, created now.
    pub fn new(id: impl Into<String>, kind: impl Into<String>, identity: Value) -> RunRecord {
        let now = now_secs();
        RunRecord {
            id: id.into(),
            kind: kind.into(),
            identity,
            status: RunStatus::Running,
            created: now,
            updated: now,
            detail: Value::Null,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A directory still to list.
#[derive(Clone, Debug, PartialEq)]
pub struct DirTask {
    pub id: u64,
    pub cap: Cap,
    pub path: Vec<String>,
}

/// The traversal's counters a checkpoint restores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraversalProgress {
    /// The output position the committed state corresponds to (opaque).
    pub output: u64,
    pub stats: DeepStats,
    pub next_id: u64,
    /// Directories whose listing failed.
    pub unlisted: u64,
    /// Children whose cap could not be parsed.
    #[serde(default)]
    pub bad_caps: u64,
    pub done: bool,
}

/// Traversal changes since the last commit.
#[derive(Default, Debug, Clone)]
pub struct Batch {
    pub seen: Vec<[u8; 16]>,
    pub added: Vec<DirTask>,
    pub finished: Vec<u64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.added.is_empty() && self.finished.is_empty()
    }
}

/// How far a mapped stage (check, repair) is: its input is read in order
/// and its output follows the input's order, so one input position and
/// one output position say exactly what is done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StagePosition {
    /// Input bytes fully processed.
    pub input_offset: u64,
    /// Input lines fully processed.
    pub input_lines: u64,
    /// SHA-256 (base32) of the input's first bytes, as far as read, and how
    /// many bytes it covers: a resume with another input is refused.
    pub input_prefix_hash: String,
    pub input_prefix_len: u64,
    /// The output position that corresponds (opaque).
    pub output: u64,
    /// The stage's typed tallies, serialized.
    pub tally: Value,
    /// What the input held so far (to tell an input cut short).
    #[serde(default)]
    pub shape: crate::input::InputShape,
    /// Whether the input was consumed to its end.
    pub done: bool,
}

/// The state store interface (see the module doc).
#[async_trait]
pub trait Store: Send + Sync {
    /// How messages name this store (a file name, a database).
    fn describe(&self) -> String;

    /// A run's record, if the store has it.
    async fn run(&self, id: &str) -> Result<Option<RunRecord>>;
    /// Create or replace a run's record.
    async fn put_run(&self, run: &RunRecord) -> Result<()>;
    /// Forget a run and every stage's state of it.
    async fn delete_run(&self, id: &str) -> Result<()>;
    /// Every run, oldest first.
    async fn runs(&self) -> Result<Vec<RunRecord>>;

    /// Start a traversal: forget any state of this stage, record the root
    /// task, the root's storage index as seen, and `progress`.
    async fn traversal_start(
        &self,
        key: StageKey<'_>,
        root: &DirTask,
        root_si: Option<[u8; 16]>,
        progress: &TraversalProgress,
    ) -> Result<()>;
    /// The committed progress, if the traversal was started.
    async fn traversal_progress(&self, key: StageKey<'_>) -> Result<Option<TraversalProgress>>;
    /// Commit a batch with the progress it reaches, atomically.
    async fn traversal_commit(
        &self,
        key: StageKey<'_>,
        batch: &Batch,
        progress: &TraversalProgress,
    ) -> Result<()>;
    /// Up to `limit` pending directories with ids at most `max_id`, lowest
    /// first, taken from the highest ids (a depth-first walk pops the
    /// newest first).
    async fn frontier(&self, key: StageKey<'_>, max_id: u64, limit: usize) -> Result<Vec<DirTask>>;
    /// Every storage index seen.
    async fn seen(&self, key: StageKey<'_>, f: &mut (dyn FnMut([u8; 16]) + Send)) -> Result<()>;
    /// A finished traversal no longer needs its frontier and seen set:
    /// remove them, leaving no trace of the caps they held on disk (a
    /// least-authority manifest must not leave stronger caps behind).
    async fn traversal_finish(&self, key: StageKey<'_>) -> Result<()>;

    /// A mapped stage's committed position.
    async fn position(&self, key: StageKey<'_>) -> Result<Option<StagePosition>>;
    /// Commit a mapped stage's position.
    async fn set_position(&self, key: StageKey<'_>, pos: &StagePosition) -> Result<()>;
}
