//! The dispatch job table: one row per account of `steward dispatch`, saying
//! where the account stands (stage, counts, timings, last error, last
//! completed run) and who works on it (a claim).
//!
//! The table is shared by every worker that dispatches the same accounts:
//! one process on one machine ([`SqliteStore`](super::sqlite::SqliteStore),
//! in the state directory's store file), or several machines on one
//! database (a PostgreSQL implementation passes the same
//! [conformance suite](super::jobs_conformance)). The interface is what a
//! mature job queue gives, and nothing more:
//!
//! * **rounds**: [`Jobs::start_round`] queues the accounts that are due
//!   (never run, last completed longer ago than `--max-age`, or named by
//!   `--rerun`), unless a round is still open (a dispatch was killed): then
//!   the open round goes on, and what it finished is not redone.
//! * **claims** ([`Claim`]): [`Jobs::claim_next`] hands a worker the most
//!   overdue queued account nobody holds (or whose holder's lease ran out),
//!   with a *fencing token* that grows with every claim of the account.
//!   The holder renews its lease ([`Jobs::renew`]) while it works and
//!   releases it ([`Jobs::release`]) when it stops.
//! * **fencing**: every write ([`Jobs::update`], [`Jobs::finish`],
//!   [`Jobs::renew`], [`Jobs::release`]) carries the claim, and is refused
//!   with [`ErrorKind::ClaimLost`](crate::error::ErrorKind::ClaimLost) once
//!   another worker claimed the account since: a worker that was paused
//!   past its lease cannot overwrite the one that took over.
//!
//! * **answers** ([`KeptAnswer`]): check answers of the open round that
//!   other accounts may reuse (see [`crate::dispatch::shared`]), by round
//!   and [`AnswerKey`]. Only the round's own are ever read; a new round
//!   forgets the earlier rounds' (in [`Jobs::start_round`], atomically).
//!   Not fenced: an answer is a fact about the grid in this round,
//!   whichever worker wrote it.
//!
//! The clock is the store's (the database server's for a shared store), so
//! workers on several machines agree on when a lease ran out.
//!
//! What each stage wrote (the units, the traversal's frontier, the stages'
//! positions) is not here: it lives where the stages keep it (a file with
//! its checkpoint beside it, for one machine). This table is what
//! `steward dispatch status` reads.

use crate::error::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where an account stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStage {
    /// Never queued (just added to the accounts file).
    #[default]
    Idle,
    /// Queued in the open round, not started.
    Queued,
    Manifest,
    Check,
    Repair,
    /// The last round ran it to its end.
    Done,
    /// The last round could not run it (see its last error).
    Failed,
}

impl JobStage {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStage::Idle => "idle",
            JobStage::Queued => "queued",
            JobStage::Manifest => "manifest",
            JobStage::Check => "check",
            JobStage::Repair => "repair",
            JobStage::Done => "done",
            JobStage::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobStage> {
        [
            JobStage::Idle,
            JobStage::Queued,
            JobStage::Manifest,
            JobStage::Check,
            JobStage::Repair,
            JobStage::Done,
            JobStage::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether the account still has work in the open round.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            JobStage::Queued | JobStage::Manifest | JobStage::Check | JobStage::Repair
        )
    }
}

/// The counts a status shows (the deep-check summary's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Objects found by the manifest.
    pub objects: u64,
    /// Objects checked (units written by the check stage).
    pub checked: u64,
    pub unhealthy: u64,
    pub repaired: u64,
    pub unrecoverable: u64,
    /// Objects whose check or repair failed, directories not listed, caps
    /// that do not parse.
    pub errors: u64,
    /// Checks whose result another account's check gave (shared objects).
    pub reused: u64,
}

/// What the claim holder records as it goes (all of it replaced by each
/// [`Jobs::update`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    pub stage: JobStage,
    /// Units done in the current stage.
    pub position: u64,
    pub counts: JobCounts,
    /// When this round's work on the account started (seconds since the
    /// epoch).
    pub started: Option<u64>,
    /// Seconds each finished stage took, by stage name.
    #[serde(default)]
    pub timings: BTreeMap<String, f64>,
    /// The last error (one line, no cap).
    pub last_error: Option<String>,
    /// Failed requests by error code, counted as they happen; at the end,
    /// the final report's (objects whose unit carries an error, by code).
    #[serde(default)]
    pub errors_by_code: BTreeMap<String, u64>,
}

/// How a round ended for an account.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Ran to its end; `report` is the account's final report.
    Done { report: Value },
    /// Could not run (a bad root, a gateway down); `error` says why.
    Failed { error: String },
}

/// Who holds an account, as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub worker: String,
    pub token: i64,
    /// When the lease runs out, milliseconds since the epoch (the store's
    /// clock).
    pub expires_ms: i64,
}

/// One account's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub name: String,
    pub weight: u32,
    /// The round the account was last queued in.
    pub round: u64,
    pub progress: JobProgress,
    /// The current claim, if any (it may have run out: see `expires_ms`).
    pub holder: Option<Holder>,
    /// When the account last completed (seconds since the epoch).
    pub last_completed: Option<u64>,
    /// The report of the last completed run (or `null`).
    pub last_report: Value,
    /// Last write, seconds since the epoch.
    pub updated: u64,
}

/// An account to keep in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSpec {
    pub name: String,
    pub weight: u32,
}

/// Which accounts a round covers.
#[derive(Clone, Debug, Default)]
pub struct RoundPolicy {
    /// The accounts of the accounts file (others in the table are left
    /// alone).
    pub accounts: Vec<String>,
    /// Accounts completed more recently than this are not due (`None`:
    /// every account is due each round).
    pub max_age: Option<Duration>,
    /// Accounts due whatever their age.
    pub rerun: Vec<String>,
}

impl RoundPolicy {
    /// What a round does with `rows` (the rows of the policy's accounts, in
    /// the accounts file's order), given the highest round number in the
    /// table and the time now (seconds): the round's number, whether an
    /// open round goes on, and the accounts it queues. Every
    /// implementation applies this plan atomically.
    pub fn plan(&self, rows: &[JobRow], current: u64, now: u64) -> Round {
        let open = rows.iter().any(|r| r.progress.stage.is_open());
        let due = |r: &JobRow| {
            self.rerun.contains(&r.name)
                || match (self.max_age, r.last_completed) {
                    (None, _) | (_, None) => true,
                    (Some(age), Some(t)) => now.saturating_sub(t) >= age.as_secs(),
                }
        };
        let queued = rows
            .iter()
            .filter(|r| {
                if open {
                    // The open round goes on: only accounts it never had,
                    // and those forced, join it.
                    !r.progress.stage.is_open()
                        && (self.rerun.contains(&r.name) || r.progress.stage == JobStage::Idle)
                } else {
                    due(r)
                }
            })
            .map(|r| r.name.clone())
            .collect();
        Round {
            number: current + u64::from(!open),
            resumed: open,
            queued,
        }
    }
}

/// What [`Jobs::start_round`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub number: u64,
    /// An open round (of a dispatch that stopped) goes on.
    pub resumed: bool,
    /// Accounts queued now (not those an open round had queued already).
    pub queued: Vec<String>,
}

/// What makes two checks the same check in a round (see
/// [`crate::dispatch::shared`]): the grid (a digest of the backend, its
/// endpoints and, for lease renewals, the lease secret), the object, and
/// the check's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    /// SHA-256 of the grid's description, first 16 bytes (the description
    /// may name a lease secret: never kept as it is).
    pub grid: [u8; 16],
    pub si: [u8; 16],
    /// Bit 0: verify; bit 1: add-lease.
    pub options: u8,
}

/// A check answer kept for the round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptAnswer {
    pub key: AnswerKey,
    /// The account whose check it is.
    pub account: String,
    /// The check results' JSON text, as the checking account got it.
    pub results: String,
}

/// A worker's hold on one account. Every write about the account carries
/// it; a write with a claim that was taken over is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub account: String,
    pub worker: String,
    /// The fencing token: strictly greater than every earlier claim's of
    /// this account.
    pub token: i64,
    pub expires_ms: i64,
    /// The row as it was when claimed (where to resume).
    pub row: JobRow,
}

/// The job table (see the module doc). Object-safe, like
/// [`Store`](super::Store).
#[async_trait]
pub trait Jobs: Send + Sync {
    /// How messages name the table (a file, a database).
    fn describe_jobs(&self) -> String;

    /// Add the accounts the table does not have (as [`JobStage::Idle`]) and
    /// update the others' weights. Rows of accounts not given are kept.
    async fn upsert_accounts(&self, accounts: &[AccountSpec]) -> Result<()>;

    /// Open a round, or join the open one (see the module doc), atomically:
    /// two workers starting at once open one round.
    async fn start_round(&self, policy: &RoundPolicy) -> Result<Round>;

    /// Claim the most overdue queued or unfinished account among
    /// `accounts` that nobody holds (or whose lease ran out) for `lease`.
    /// `None`: nothing left to claim.
    async fn claim_next(
        &self,
        accounts: &[String],
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Claim>>;

    /// Claim one account; `None` if another worker holds it and its lease
    /// has not run out.
    async fn claim(&self, account: &str, worker: &str, lease: Duration) -> Result<Option<Claim>>;

    /// Extend the claim's lease by `lease` from now. Refused (ClaimLost)
    /// if the account was claimed since.
    async fn renew(&self, claim: &mut Claim, lease: Duration) -> Result<()>;

    /// Give the account up (it stays where it stands, for anyone to
    /// claim). Refused (ClaimLost) if the account was claimed since.
    async fn release(&self, claim: &Claim) -> Result<()>;

    /// Record the account's progress. Refused (ClaimLost) if the account
    /// was claimed since.
    async fn update(&self, claim: &Claim, progress: &JobProgress) -> Result<()>;

    /// [`Jobs::renew`] and [`Jobs::update`] at once (one commit where the
    /// table can: a worker does both every few seconds per account).
    async fn renew_and_update(
        &self,
        claim: &mut Claim,
        lease: Duration,
        progress: &JobProgress,
    ) -> Result<()> {
        self.renew(claim, lease).await?;
        self.update(claim, progress).await
    }

    /// End the account's round with `outcome` (and `progress`, its last
    /// counts) and release the claim. Refused (ClaimLost) if the account
    /// was claimed since.
    async fn finish(&self, claim: &Claim, progress: &JobProgress, outcome: &Outcome) -> Result<()>;

    /// Every row, by name.
    async fn jobs(&self) -> Result<Vec<JobRow>>;

    /// Whether one process uses the table alone (SQLite, whose file lock
    /// it holds), so that a claim found in it is a killed process's.
    fn held_alone(&self) -> bool;

    /// Free every claim at once, returning how many there were. Only when
    /// [`Jobs::held_alone`]: any claim left is a killed process's, and
    /// waiting for its lease to run out would only delay the resume.
    /// Tokens still grow at the next claim, so fencing holds. A shared
    /// table refuses it (or is never asked).
    async fn break_claims(&self) -> Result<u64>;

    /// Keep `answers` for `round` (an answer already kept under the same
    /// key stays: both are the round's answer to the same check).
    async fn keep_answers(&self, round: u64, answers: &[KeptAnswer]) -> Result<()>;

    /// The answer kept for `key` in `round`, if any.
    async fn kept_answer(&self, round: u64, key: &AnswerKey) -> Result<Option<KeptAnswer>>;

    /// How many answers `round` keeps, and the bytes of their results.
    async fn kept_answers(&self, round: u64) -> Result<(u64, u64)>;
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The refusal of a write whose claim was taken over.
pub fn claim_lost(account: &str, token: i64) -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::ClaimLost,
        format!(
            "account {account}: the claim (token {token}) was taken over by another worker; this worker stops working on it"
        ),
    )
}
