//! The job table ([`Jobs`]) in a SQLite state store: a `jobs` table beside
//! the runs of the same file (one dispatch state directory). The file's
//! lock makes one process its only writer; claims and fencing tokens are
//! enforced all the same, so that the interface behaves as a shared
//! table's does.

use super::jobs::{
    claim_lost, now_ms, AccountSpec, AnswerKey, Claim, Holder, JobProgress, JobRow, JobStage, Jobs,
    KeptAnswer, Outcome, Round, RoundPolicy,
};
use super::now_secs;
use super::sqlite::SqliteStore;
use crate::error::{Error, Result};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::time::Duration;

/// The table, created with the store (`IF NOT EXISTS`: a state file of an
/// earlier steward of the same version gains it).
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    weight INTEGER NOT NULL,
    round INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL,
    token INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    expires INTEGER,
    last_completed INTEGER,
    progress TEXT NOT NULL,
    report TEXT NOT NULL DEFAULT 'null',
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    round INTEGER NOT NULL,
    grid BLOB NOT NULL,
    si BLOB NOT NULL,
    options INTEGER NOT NULL,
    account TEXT NOT NULL,
    results TEXT NOT NULL,
    PRIMARY KEY (round, grid, si, options)
)";

const COLUMNS: &str =
    "name, weight, round, token, worker, expires, last_completed, progress, report, updated";

fn bad(what: &str) -> Error {
    Error::checkpoint(format!(
        "the dispatch job table is damaged ({what}): move the state directory aside and start again"
    ))
}

fn row(r: &Row<'_>) -> rusqlite::Result<(JobRowRaw, String, String)> {
    Ok((
        JobRowRaw {
            name: r.get(0)?,
            weight: r.get(1)?,
            round: r.get(2)?,
            token: r.get(3)?,
            worker: r.get(4)?,
            expires: r.get(5)?,
            last_completed: r.get(6)?,
            updated: r.get(9)?,
        },
        r.get(7)?,
        r.get(8)?,
    ))
}

struct JobRowRaw {
    name: String,
    weight: i64,
    round: i64,
    token: i64,
    worker: Option<String>,
    expires: Option<i64>,
    last_completed: Option<i64>,
    updated: i64,
}

fn to_row((raw, progress, report): (JobRowRaw, String, String)) -> Result<JobRow> {
    Ok(JobRow {
        progress: serde_json::from_str(&progress).map_err(|_| bad("progress"))?,
        last_report: serde_json::from_str(&report).map_err(|_| bad("report"))?,
        holder: raw.worker.map(|worker| Holder {
            worker,
            token: raw.token,
            expires_ms: raw.expires.unwrap_or(0),
        }),
        name: raw.name,
        weight: raw.weight.max(1) as u32,
        round: raw.round.max(0) as u64,
        last_completed: raw.last_completed.map(|t| t.max(0) as u64),
        updated: raw.updated.max(0) as u64,
    })
}

fn get_row(c: &Connection, name: &str) -> Result<Option<JobRow>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM jobs WHERE name = ?1"),
        [name],
        row,
    )
    .optional()?
    .map(to_row)
    .transpose()
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Take `name` for `worker` if it is free (no holder, or a lease that ran
/// out), in the caller's transaction.
fn take(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    worker: &str,
    lease: Duration,
) -> Result<Option<Claim>> {
    let now = now_ms();
    let expires = now.saturating_add(lease_ms(lease));
    let n = tx.execute(
        "UPDATE jobs SET token = token + 1, worker = ?2, expires = ?3, updated = ?4
         WHERE name = ?1 AND (worker IS NULL OR expires < ?5)",
        params![name, worker, expires, now_secs() as i64, now],
    )?;
    if n == 0 {
        return Ok(None);
    }
    let row = get_row(tx, name)?.ok_or_else(|| bad("a claimed row vanished"))?;
    Ok(Some(Claim {
        account: name.to_string(),
        worker: worker.to_string(),
        token: row.holder.as_ref().map_or(0, |h| h.token),
        expires_ms: expires,
        row,
    }))
}

/// Refuse unless `claim` is still the account's latest.
fn fenced(tx: &Connection, claim: &Claim) -> Result<()> {
    let token: Option<i64> = tx
        .query_row(
            "SELECT token FROM jobs WHERE name = ?1",
            [&claim.account],
            |r| r.get(0),
        )
        .optional()?;
    if token != Some(claim.token) {
        return Err(claim_lost(&claim.account, claim.token));
    }
    Ok(())
}

#[async_trait]
impl Jobs for SqliteStore {
    fn describe_jobs(&self) -> String {
        super::Store::describe(self)
    }

    async fn upsert_accounts(&self, accounts: &[AccountSpec]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let progress = serde_json::to_string(&JobProgress::default()).expect("serializable");
        for a in accounts {
            tx.execute(
                "INSERT INTO jobs (name, weight, stage, progress, updated) VALUES (?1, ?2, 'idle', ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET weight = excluded.weight",
                params![a.name, a.weight, progress, now_secs() as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    async fn start_round(&self, policy: &RoundPolicy) -> Result<Round> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut rows = Vec::new();
        for name in &policy.accounts {
            if let Some(r) = get_row(&tx, name)? {
                rows.push(r);
            }
        }
        let current: i64 =
            tx.query_row("SELECT COALESCE(MAX(round), 0) FROM jobs", [], |r| r.get(0))?;
        let now = now_secs();
        let round = policy.plan(&rows, current.max(0) as u64, now);
        let progress = JobProgress {
            stage: JobStage::Queued,
            ..Default::default()
        };
        for name in &round.queued {
            tx.execute(
                "UPDATE jobs SET stage = 'queued', round = ?2, progress = ?3, updated = ?4 WHERE name = ?1",
                params![
                    name,
                    round.number as i64,
                    serde_json::to_string(&progress).expect("serializable"),
                    now as i64
                ],
            )?;
        }
        // Answers are the open round's alone.
        tx.execute(
            "DELETE FROM answers WHERE round < ?1",
            [round.number as i64],
        )?;
        tx.commit()?;
        Ok(round)
    }

    async fn claim_next(
        &self,
        accounts: &[String],
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Claim>> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Most overdue first: never completed, then the oldest completion.
        let candidates: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT name FROM jobs
                 WHERE stage IN ('queued', 'manifest', 'check', 'repair')
                   AND (worker IS NULL OR expires < ?1)
                 ORDER BY last_completed IS NOT NULL, last_completed, name",
            )?;
            let names = stmt.query_map([now_ms()], |r| r.get::<_, String>(0))?;
            names.collect::<rusqlite::Result<_>>()?
        };
        for name in candidates {
            if !accounts.contains(&name) {
                continue;
            }
            if let Some(claim) = take(&tx, &name, worker, lease)? {
                tx.commit()?;
                return Ok(Some(claim));
            }
        }
        Ok(None)
    }

    async fn claim(&self, account: &str, worker: &str, lease: Duration) -> Result<Option<Claim>> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let claim = take(&tx, account, worker, lease)?;
        tx.commit()?;
        Ok(claim)
    }

    async fn renew(&self, claim: &mut Claim, lease: Duration) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fenced(&tx, claim)?;
        let expires = now_ms().saturating_add(lease_ms(lease));
        tx.execute(
            "UPDATE jobs SET worker = ?2, expires = ?3 WHERE name = ?1",
            params![claim.account, claim.worker, expires],
        )?;
        tx.commit()?;
        claim.expires_ms = expires;
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fenced(&tx, claim)?;
        tx.execute(
            "UPDATE jobs SET worker = NULL, expires = NULL WHERE name = ?1",
            [&claim.account],
        )?;
        tx.commit()?;
        Ok(())
    }

    async fn update(&self, claim: &Claim, progress: &JobProgress) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fenced(&tx, claim)?;
        tx.execute(
            "UPDATE jobs SET stage = ?2, progress = ?3, updated = ?4 WHERE name = ?1",
            params![
                claim.account,
                progress.stage.as_str(),
                serde_json::to_string(progress).expect("serializable"),
                now_secs() as i64
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    async fn renew_and_update(
        &self,
        claim: &mut Claim,
        lease: Duration,
        progress: &JobProgress,
    ) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fenced(&tx, claim)?;
        let expires = now_ms().saturating_add(lease_ms(lease));
        tx.execute(
            "UPDATE jobs SET worker = ?2, expires = ?3, stage = ?4, progress = ?5, updated = ?6 WHERE name = ?1",
            params![
                claim.account,
                claim.worker,
                expires,
                progress.stage.as_str(),
                serde_json::to_string(progress).expect("serializable"),
                now_secs() as i64
            ],
        )?;
        tx.commit()?;
        claim.expires_ms = expires;
        Ok(())
    }

    async fn finish(&self, claim: &Claim, progress: &JobProgress, outcome: &Outcome) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fenced(&tx, claim)?;
        let mut progress = progress.clone();
        let now = now_secs() as i64;
        match outcome {
            Outcome::Done { report } => {
                progress.stage = JobStage::Done;
                tx.execute(
                    "UPDATE jobs SET stage = 'done', progress = ?2, report = ?3, last_completed = ?4,
                       updated = ?4, worker = NULL, expires = NULL WHERE name = ?1",
                    params![
                        claim.account,
                        serde_json::to_string(&progress).expect("serializable"),
                        serde_json::to_string(report).expect("serializable"),
                        now
                    ],
                )?;
            }
            Outcome::Failed { error } => {
                progress.stage = JobStage::Failed;
                progress.last_error = Some(error.clone());
                tx.execute(
                    "UPDATE jobs SET stage = 'failed', progress = ?2, updated = ?3,
                       worker = NULL, expires = NULL WHERE name = ?1",
                    params![
                        claim.account,
                        serde_json::to_string(&progress).expect("serializable"),
                        now
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<JobRow>> {
        let c = self.conn();
        let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM jobs ORDER BY name"))?;
        let rows = stmt.query_map([], row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(to_row(r?)?);
        }
        Ok(out)
    }

    fn held_alone(&self) -> bool {
        // A read-only opener does not hold the lock, but cannot write
        // either.
        true
    }

    async fn break_claims(&self) -> Result<u64> {
        let c = self.conn();
        let n = c.execute(
            "UPDATE jobs SET worker = NULL, expires = NULL WHERE worker IS NOT NULL",
            [],
        )?;
        Ok(n as u64)
    }

    async fn keep_answers(&self, round: u64, answers: &[KeptAnswer]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO answers (round, grid, si, options, account, results)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for a in answers {
                stmt.execute(params![
                    round as i64,
                    &a.key.grid[..],
                    &a.key.si[..],
                    a.key.options,
                    a.account,
                    a.results
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    async fn kept_answer(&self, round: u64, key: &AnswerKey) -> Result<Option<KeptAnswer>> {
        let c = self.conn();
        let mut stmt = c.prepare_cached(
            "SELECT account, results FROM answers
             WHERE round = ?1 AND grid = ?2 AND si = ?3 AND options = ?4",
        )?;
        Ok(stmt
            .query_row(
                params![round as i64, &key.grid[..], &key.si[..], key.options],
                |r| {
                    Ok(KeptAnswer {
                        key: *key,
                        account: r.get(0)?,
                        results: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    async fn kept_answers(&self, round: u64) -> Result<(u64, u64)> {
        let c = self.conn();
        let (n, bytes): (i64, i64) = c.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(results AS BLOB))), 0) FROM answers WHERE round = ?1",
            [round as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n.max(0) as u64, bytes.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::Format;

    #[tokio::test]
    async fn passes_the_job_table_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let store = SqliteStore::open(&path, Format::State).unwrap();
        crate::store::jobs_conformance::suite(&store).await;
        drop(store);
        let store = SqliteStore::open(&path, Format::State).unwrap();
        crate::store::jobs_conformance::after_reopen(&store).await;
        drop(store);
        // A reader that does not take the lock sees the same rows.
        let reader = SqliteStore::open_read_only(&path, Format::State).unwrap();
        crate::store::jobs_conformance::after_reopen(&reader).await;
    }
}
