//! The job table ([`Jobs`]) in PostgreSQL: the `steward.jobs` table that
//! every worker of a cluster shares.
//!
//! Claims are taken the way River, Oban and Graphile Worker take jobs: one
//! `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)`, so that
//! workers claiming at once never wait for each other nor take the same
//! account. Every lease is measured by the database's clock
//! (`clock_timestamp()`), so workers on machines whose clocks disagree
//! still agree on when a lease ran out. Every write about a claimed
//! account is one statement conditioned on the claim's fencing token
//! (`WHERE name = $1 AND token = $2`): it changes nothing and is refused
//! ([`ErrorKind::ClaimLost`](crate::error::ErrorKind::ClaimLost)) once
//! another worker took the account over. The stages' own writes (frontier,
//! positions, units) are fenced the same way through
//! [`PostgresStore::fenced`].

use super::jobs::{
    claim_lost, AccountSpec, AnswerKey, Claim, Holder, JobProgress, JobRow, JobStage, Jobs,
    KeptAnswer, Outcome, Round, RoundPolicy,
};
use super::postgres::{with_client, PostgresStore};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::Row;

/// The table (migration 2 of [`super::postgres::MIGRATIONS`]).
pub(super) const SCHEMA: &str = "CREATE TABLE steward.jobs (
    name TEXT PRIMARY KEY,
    weight INTEGER NOT NULL,
    round BIGINT NOT NULL DEFAULT 0,
    stage TEXT NOT NULL,
    token BIGINT NOT NULL DEFAULT 0,
    worker TEXT,
    expires_ms BIGINT,
    last_completed BIGINT,
    progress JSONB NOT NULL,
    report JSONB NOT NULL DEFAULT 'null',
    updated BIGINT NOT NULL
);
CREATE INDEX jobs_claimable ON steward.jobs (last_completed, name)
    WHERE stage IN ('queued', 'manifest', 'check', 'repair');";

/// The answers a round keeps (migration 5 of [`super::postgres::MIGRATIONS`]).
pub(super) const ANSWERS_SCHEMA: &str = "CREATE TABLE steward.answers (
    round BIGINT NOT NULL,
    grid BYTEA NOT NULL,
    si BYTEA NOT NULL,
    options SMALLINT NOT NULL,
    account TEXT NOT NULL,
    results TEXT NOT NULL,
    PRIMARY KEY (round, grid, si, options)
);";

/// The database's clock, in milliseconds and in seconds since the epoch.
const NOW_MS: &str = "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
const NOW_S: &str = "floor(extract(epoch FROM clock_timestamp()))::bigint";

const COLUMNS: &str =
    "name, weight, round, token, worker, expires_ms, last_completed, progress, report, updated";

fn bad(shown: &str, what: &str) -> Error {
    Error::checkpoint(format!(
        "the dispatch job table in database {shown} is damaged ({what}): fix or drop the row"
    ))
}

impl PostgresStore {
    fn to_row(&self, r: &Row) -> Result<JobRow> {
        let shown = &self.inner.shown;
        Ok(JobRow {
            name: r.get(0),
            weight: r.get::<_, i32>(1).max(1) as u32,
            round: r.get::<_, i64>(2).max(0) as u64,
            holder: r.get::<_, Option<String>>(4).map(|worker| Holder {
                worker,
                token: r.get(3),
                expires_ms: r.get::<_, Option<i64>>(5).unwrap_or(0),
            }),
            last_completed: r.get::<_, Option<i64>>(6).map(|t| t.max(0) as u64),
            progress: serde_json::from_value(r.get(7)).map_err(|_| bad(shown, "progress"))?,
            last_report: r.get(8),
            updated: r.get::<_, i64>(9).max(0) as u64,
        })
    }

    fn to_claim(&self, r: &Row) -> Result<Claim> {
        let row = self.to_row(r)?;
        let holder = row
            .holder
            .clone()
            .ok_or_else(|| bad(&self.inner.shown, "a claim without a holder"))?;
        Ok(Claim {
            account: row.name.clone(),
            worker: holder.worker,
            token: holder.token,
            expires_ms: holder.expires_ms,
            row,
        })
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4)
}

fn json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("serializable")
}

#[async_trait]
impl Jobs for PostgresStore {
    fn describe_jobs(&self) -> String {
        self.inner.shown.clone()
    }

    async fn upsert_accounts(&self, accounts: &[AccountSpec]) -> Result<()> {
        let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
        let weights: Vec<i32> = accounts
            .iter()
            .map(|a| i32::try_from(a.weight).unwrap_or(i32::MAX))
            .collect();
        let progress = json(&JobProgress::default());
        with_client!(self.inner, "adding accounts", |c| {
            c.execute(
                &format!(
                    "INSERT INTO steward.jobs (name, weight, stage, progress, updated)
                     SELECT n, w, 'idle', $3, {NOW_S} FROM unnest($1::text[], $2::int[]) AS a(n, w)
                     ON CONFLICT (name) DO UPDATE SET weight = excluded.weight"
                ),
                &[&names, &weights, &progress],
            )
            .await?;
            Ok(())
        })
    }

    async fn start_round(&self, policy: &RoundPolicy) -> Result<Round> {
        /// Serializes rounds: two workers starting at once open one.
        const ROUND_LOCK: i64 = 0x5374_6577_6172_6402;
        let queued_progress = json(&JobProgress {
            stage: JobStage::Queued,
            ..Default::default()
        });
        with_client!(self.inner, "starting a round", |c| {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ROUND_LOCK])
                .await?;
            let now: i64 = tx.query_one(&format!("SELECT {NOW_S}"), &[]).await?.get(0);
            let current: i64 = tx
                .query_one("SELECT COALESCE(MAX(round), 0) FROM steward.jobs", &[])
                .await?
                .get(0);
            let found = tx
                .query(
                    &format!("SELECT {COLUMNS} FROM steward.jobs WHERE name = ANY($1)"),
                    &[&policy.accounts],
                )
                .await?;
            let mut by_name = std::collections::HashMap::new();
            for r in &found {
                let row = self.to_row(r)?;
                by_name.insert(row.name.clone(), row);
            }
            // In the order of the accounts file.
            let rows: Vec<JobRow> = policy
                .accounts
                .iter()
                .filter_map(|n| by_name.remove(n))
                .collect();
            let round = policy.plan(&rows, current.max(0) as u64, now.max(0) as u64);
            for name in &round.queued {
                tx.execute(
                    "UPDATE steward.jobs SET stage = 'queued', round = $2, progress = $3, updated = $4
                     WHERE name = $1",
                    &[name, &(round.number as i64), &queued_progress, &now],
                )
                .await?;
            }
            // Answers are the open round's alone.
            tx.execute(
                "DELETE FROM steward.answers WHERE round < $1",
                &[&(round.number as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(round)
        })
    }

    async fn claim_next(
        &self,
        accounts: &[String],
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Claim>> {
        let lease = lease_ms(lease);
        let row = with_client!(self.inner, "claiming an account", |c| {
            Ok(c.query_opt(
                &format!(
                    "UPDATE steward.jobs j
                     SET token = j.token + 1, worker = $2, expires_ms = {NOW_MS} + $3, updated = {NOW_S}
                     FROM (
                         SELECT name FROM steward.jobs
                         WHERE name = ANY($1)
                           AND stage IN ('queued', 'manifest', 'check', 'repair')
                           AND (worker IS NULL OR expires_ms < {NOW_MS})
                         ORDER BY last_completed IS NOT NULL, last_completed, name COLLATE \"C\"
                         LIMIT 1
                         FOR UPDATE SKIP LOCKED
                     ) next
                     WHERE j.name = next.name
                     RETURNING {}",
                    COLUMNS
                        .split(", ")
                        .map(|c| format!("j.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&accounts, &worker, &lease],
            )
            .await?)
        })?;
        row.map(|r| self.to_claim(&r)).transpose()
    }

    async fn claim(&self, account: &str, worker: &str, lease: Duration) -> Result<Option<Claim>> {
        let lease = lease_ms(lease);
        let row = with_client!(self.inner, "claiming an account", |c| {
            Ok(c.query_opt(
                &format!(
                    "UPDATE steward.jobs
                     SET token = token + 1, worker = $2, expires_ms = {NOW_MS} + $3, updated = {NOW_S}
                     WHERE name = $1 AND (worker IS NULL OR expires_ms < {NOW_MS})
                     RETURNING {COLUMNS}"
                ),
                &[&account, &worker, &lease],
            )
            .await?)
        })?;
        row.map(|r| self.to_claim(&r)).transpose()
    }

    async fn renew(&self, claim: &mut Claim, lease: Duration) -> Result<()> {
        let lease = lease_ms(lease);
        let expires: Option<i64> = with_client!(self.inner, "renewing a claim", |c| {
            Ok(c.query_opt(
                &format!(
                    "UPDATE steward.jobs SET worker = $3, expires_ms = {NOW_MS} + $4
                     WHERE name = $1 AND token = $2 RETURNING expires_ms"
                ),
                &[&claim.account, &claim.token, &claim.worker, &lease],
            )
            .await?
            .map(|r| r.get(0)))
        })?;
        claim.expires_ms = expires.ok_or_else(|| claim_lost(&claim.account, claim.token))?;
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let n = with_client!(self.inner, "releasing a claim", |c| {
            Ok(c.execute(
                "UPDATE steward.jobs SET worker = NULL, expires_ms = NULL
                 WHERE name = $1 AND token = $2",
                &[&claim.account, &claim.token],
            )
            .await?)
        })?;
        fenced(n, claim)
    }

    async fn update(&self, claim: &Claim, progress: &JobProgress) -> Result<()> {
        let p = json(progress);
        let n = with_client!(self.inner, "recording progress", |c| {
            Ok(c.execute(
                &format!(
                    "UPDATE steward.jobs SET stage = $3, progress = $4, updated = {NOW_S}
                     WHERE name = $1 AND token = $2"
                ),
                &[&claim.account, &claim.token, &progress.stage.as_str(), &p],
            )
            .await?)
        })?;
        fenced(n, claim)
    }

    /// One statement, so one transaction: a worker does this every few
    /// seconds for each account it works on.
    async fn renew_and_update(
        &self,
        claim: &mut Claim,
        lease: Duration,
        progress: &JobProgress,
    ) -> Result<()> {
        let lease = lease_ms(lease);
        let p = json(progress);
        let expires: Option<i64> = with_client!(self.inner, "renewing a claim", |c| {
            Ok(c.query_opt(
                &format!(
                    "UPDATE steward.jobs SET worker = $3, expires_ms = {NOW_MS} + $4,
                       stage = $5, progress = $6, updated = {NOW_S}
                     WHERE name = $1 AND token = $2 RETURNING expires_ms"
                ),
                &[
                    &claim.account,
                    &claim.token,
                    &claim.worker,
                    &lease,
                    &progress.stage.as_str(),
                    &p,
                ],
            )
            .await?
            .map(|r| r.get(0)))
        })?;
        claim.expires_ms = expires.ok_or_else(|| claim_lost(&claim.account, claim.token))?;
        Ok(())
    }

    async fn finish(&self, claim: &Claim, progress: &JobProgress, outcome: &Outcome) -> Result<()> {
        let mut progress = progress.clone();
        let (report, completed) = match outcome {
            Outcome::Done { report } => {
                progress.stage = JobStage::Done;
                (Some(report.clone()), true)
            }
            Outcome::Failed { error } => {
                progress.stage = JobStage::Failed;
                progress.last_error = Some(error.clone());
                (None, false)
            }
        };
        let p = json(&progress);
        let n = with_client!(self.inner, "finishing an account", |c| {
            Ok(c.execute(
                &format!(
                    "UPDATE steward.jobs SET stage = $3, progress = $4,
                       report = COALESCE($5, report),
                       last_completed = CASE WHEN $6 THEN {NOW_S} ELSE last_completed END,
                       updated = {NOW_S}, worker = NULL, expires_ms = NULL
                     WHERE name = $1 AND token = $2"
                ),
                &[
                    &claim.account,
                    &claim.token,
                    &progress.stage.as_str(),
                    &p,
                    &report,
                    &completed,
                ],
            )
            .await?)
        })?;
        fenced(n, claim)
    }

    async fn jobs(&self) -> Result<Vec<JobRow>> {
        let rows = with_client!(self.inner, "reading the job table", |c| {
            Ok(c.query(
                &format!("SELECT {COLUMNS} FROM steward.jobs ORDER BY name COLLATE \"C\""),
                &[],
            )
            .await?)
        })?;
        rows.iter().map(|r| self.to_row(r)).collect()
    }

    /// Shared by every worker of a cluster.
    fn held_alone(&self) -> bool {
        false
    }

    /// Frees every claim. A shared table never needs it (a dead worker's
    /// lease runs out); it is here for an operator who knows every worker
    /// is stopped. Tokens still grow at the next claim, so fencing holds.
    async fn break_claims(&self) -> Result<u64> {
        with_client!(self.inner, "freeing every claim", |c| {
            Ok(c.execute(
                "UPDATE steward.jobs SET worker = NULL, expires_ms = NULL WHERE worker IS NOT NULL",
                &[],
            )
            .await?)
        })
    }

    async fn keep_answers(&self, round: u64, answers: &[KeptAnswer]) -> Result<()> {
        if answers.is_empty() {
            return Ok(());
        }
        let grids: Vec<&[u8]> = answers.iter().map(|a| &a.key.grid[..]).collect();
        let sis: Vec<&[u8]> = answers.iter().map(|a| &a.key.si[..]).collect();
        let options: Vec<i16> = answers.iter().map(|a| i16::from(a.key.options)).collect();
        let accounts: Vec<&str> = answers.iter().map(|a| a.account.as_str()).collect();
        let results: Vec<&str> = answers.iter().map(|a| a.results.as_str()).collect();
        let round = round as i64;
        with_client!(self.inner, "keeping check answers", |c| {
            c.execute(
                "INSERT INTO steward.answers (round, grid, si, options, account, results)
                 SELECT $1, g, s, o, a, r
                 FROM unnest($2::bytea[], $3::bytea[], $4::smallint[], $5::text[], $6::text[])
                   AS x(g, s, o, a, r)
                 ON CONFLICT DO NOTHING",
                &[&round, &grids, &sis, &options, &accounts, &results],
            )
            .await?;
            Ok(())
        })
    }

    async fn kept_answer(&self, round: u64, key: &AnswerKey) -> Result<Option<KeptAnswer>> {
        let round = round as i64;
        let options = i16::from(key.options);
        let row = with_client!(self.inner, "reading a kept check answer", |c| {
            Ok(c.query_opt(
                "SELECT account, results FROM steward.answers
                 WHERE round = $1 AND grid = $2 AND si = $3 AND options = $4",
                &[&round, &&key.grid[..], &&key.si[..], &options],
            )
            .await?)
        })?;
        Ok(row.map(|r| KeptAnswer {
            key: *key,
            account: r.get(0),
            results: r.get(1),
        }))
    }

    async fn kept_answers(&self, round: u64) -> Result<(u64, u64)> {
        let round = round as i64;
        let row = with_client!(self.inner, "counting kept check answers", |c| {
            Ok(c.query_one(
                "SELECT COUNT(*), COALESCE(SUM(octet_length(results)), 0)::bigint
                 FROM steward.answers WHERE round = $1",
                &[&round],
            )
            .await?)
        })?;
        Ok((
            row.get::<_, i64>(0).max(0) as u64,
            row.get::<_, i64>(1).max(0) as u64,
        ))
    }
}

/// A fenced single-statement write changed one row, or its claim was lost.
fn fenced(rows: u64, claim: &Claim) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(claim_lost(&claim.account, claim.token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::tests::fresh;

    #[tokio::test]
    async fn passes_the_job_table_conformance_suite() {
        let (url, _pg) = fresh().await;
        let store = PostgresStore::open(&url).await.unwrap();
        crate::store::jobs_conformance::suite(&store).await;
        drop(store);
        let store = PostgresStore::open(&url).await.unwrap();
        crate::store::jobs_conformance::after_reopen(&store).await;
    }

    /// Renewing a claim and recording progress together is one
    /// transaction, not two: counted in transaction ids, on a server of
    /// its own (they are the whole server's, and other tests write to the
    /// shared one meanwhile).
    #[tokio::test]
    async fn renew_and_update_is_one_transaction() {
        let pg = tokio::task::spawn_blocking(|| steward_testpg::TestPg::start().unwrap())
            .await
            .unwrap();
        let url = pg.fresh_database().unwrap();
        let store = PostgresStore::open(&url).await.unwrap();
        let spec = AccountSpec {
            name: "a".into(),
            weight: 1,
        };
        store.upsert_accounts(&[spec]).await.unwrap();
        store
            .start_round(&RoundPolicy {
                accounts: vec!["a".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let mut claim = store.claim("a", "w", lease).await.unwrap().unwrap();
        // Each call takes a transaction id of its own.
        let xid = || async {
            let id: Result<i64> = async {
                with_client!(store.inner, "test", |c| {
                    let row = c
                        .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
                        .await?;
                    Ok(row.get(0))
                })
            }
            .await;
            id.unwrap()
        };
        let progress = JobProgress {
            stage: JobStage::Check,
            position: 3,
            ..Default::default()
        };
        let before = xid().await;
        store
            .renew_and_update(&mut claim, lease, &progress)
            .await
            .unwrap();
        let after = xid().await;
        assert_eq!(after - before, 2, "one transaction between the two reads");
        assert_eq!(store.jobs().await.unwrap()[0].progress, progress);
    }

    /// Many workers claiming at once: each account goes to exactly one,
    /// and nobody waits for a lock (SKIP LOCKED).
    #[tokio::test]
    async fn concurrent_claims_take_each_account_once() {
        let (url, _pg) = fresh().await;
        let store = PostgresStore::open(&url).await.unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("acct{i:02}")).collect();
        let specs: Vec<AccountSpec> = names
            .iter()
            .map(|n| AccountSpec {
                name: n.clone(),
                weight: 1,
            })
            .collect();
        store.upsert_accounts(&specs).await.unwrap();
        store
            .start_round(&RoundPolicy {
                accounts: names.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut workers = Vec::new();
        for w in 0..4 {
            // A connection of its own per worker, as separate processes.
            let store = PostgresStore::open(&url).await.unwrap();
            let names = names.clone();
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let me = format!("w{w}");
                while let Some(c) = store
                    .claim_next(&names, &me, Duration::from_secs(60))
                    .await
                    .unwrap()
                {
                    got.push(c.account.clone());
                    store
                        .finish(
                            &c,
                            &JobProgress::default(),
                            &Outcome::Done {
                                report: Value::Null,
                            },
                        )
                        .await
                        .unwrap();
                }
                got
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort();
        assert_eq!(all, names, "every account claimed exactly once");
    }

    /// The stages' writes through a fenced view are refused once the claim
    /// was taken over; a write in flight is not lost or half-applied.
    #[tokio::test]
    async fn a_fenced_store_refuses_a_zombie_write() {
        use crate::store::{StageKey, StageName, StagePosition, Store};
        let (url, _pg) = fresh().await;
        let store = PostgresStore::open(&url).await.unwrap();
        let a = vec!["a".to_string()];
        store
            .upsert_accounts(&[AccountSpec {
                name: "a".into(),
                weight: 1,
            }])
            .await
            .unwrap();
        store
            .start_round(&RoundPolicy {
                accounts: a.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let first = store
            .claim_next(&a, "w1", Duration::from_millis(200))
            .await
            .unwrap()
            .unwrap();
        let zombie = store.fenced("a", first.token);
        let key = StageKey {
            run: "a",
            stage: StageName::Check,
        };
        let pos = |n| StagePosition {
            input_lines: n,
            ..Default::default()
        };
        zombie.set_position(key, &pos(5)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = store
            .claim("a", "w2", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("the lease ran out");
        let taker = store.fenced("a", second.token);
        taker.set_position(key, &pos(7)).await.unwrap();
        let e = zombie.set_position(key, &pos(6)).await.unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::ClaimLost, "{}", e.message);
        assert!(zombie
            .put_run(&crate::store::RunRecord::new("a", "x", Value::Null))
            .await
            .is_err());
        assert_eq!(store.position(key).await.unwrap().unwrap().input_lines, 7);
        assert!(store.run("a").await.unwrap().is_none());
    }
}
