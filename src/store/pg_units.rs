//! A stage's units in PostgreSQL (`steward.units`): what a dispatch on a
//! shared database writes instead of the stages' files, so that any worker
//! can resume any account and an operator can query every account's
//! results in SQL.
//!
//! Each unit is one row holding its NDJSON line exactly as the standalone
//! stage writes it to its file, and the line's byte offset in that file
//! (`pos`). Positions are therefore the file's: a stage's checkpoint
//! records the same output length, the next stage reads the same bytes
//! (its input prefix hash and offsets unchanged), a resume "cuts the file
//! back" by deleting the rows at or past the committed length, and
//! `steward dispatch export` writes the lines in order to get the file the
//! standalone stage writes, byte for byte.
//!
//! Every write goes through the (fenced) store: rows of a worker whose
//! claim was taken over are refused.

use super::postgres::{check_fence, with_client, PostgresStore};
use super::{StageKey, StageName, Store};
use crate::error::{Error, Result};
use crate::input::{Committed, LineSource};
use crate::pipeline::resume::Target;
use crate::unit::{Unit, UnitSink};
use async_trait::async_trait;
use tokio::sync::watch;

/// Migration 3 of [`super::postgres::MIGRATIONS`].
pub(super) const SCHEMA: &str = "CREATE TABLE steward.units (
    run TEXT NOT NULL,
    stage TEXT NOT NULL,
    pos BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (run, stage, pos)
);";

/// Rows sent in one insert at most (a sink flushes when it has that many).
const BATCH: usize = 2000;

/// The units of one stage of one run.
#[derive(Clone)]
pub struct UnitTable {
    pub store: PostgresStore,
    pub run: String,
    pub stage: StageName,
}

impl UnitTable {
    pub fn new(store: PostgresStore, run: &str, stage: StageName) -> UnitTable {
        UnitTable {
            store,
            run: run.to_string(),
            stage,
        }
    }

    fn key(&self) -> StageKey<'_> {
        StageKey {
            run: &self.run,
            stage: self.stage,
        }
    }

    /// The stage's committed output length, and whether it finished.
    pub async fn committed(&self) -> Result<Option<Committed>> {
        Ok(match self.stage {
            StageName::Traverse => {
                self.store
                    .traversal_progress(self.key())
                    .await?
                    .map(|p| Committed {
                        len: p.output,
                        done: p.done,
                    })
            }
            _ => self.store.position(self.key()).await?.map(|p| Committed {
                len: p.output,
                done: p.done,
            }),
        })
    }

    /// Delete the rows at or past `from` (fenced).
    async fn cut(&self, from: u64) -> Result<()> {
        let from = from as i64;
        with_client!(self.store.inner, "cutting units back", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &self.store.fence).await?;
            tx.execute(
                "DELETE FROM steward.units WHERE run = $1 AND stage = $2 AND pos >= $3",
                &[&self.run, &self.stage.as_str(), &from],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The length the rows below `at` cover without a gap (at most `at`).
    async fn covered(&self, at: u64) -> Result<u64> {
        let at = at as i64;
        let end: Option<i64> = with_client!(self.store.inner, "reading units", |c| {
            Ok(c.query_opt(
                "SELECT pos + octet_length(line) + 1 FROM steward.units
                 WHERE run = $1 AND stage = $2 AND pos < $3 ORDER BY pos DESC LIMIT 1",
                &[&self.run, &self.stage.as_str(), &at],
            )
            .await?
            .map(|r| r.get(0)))
        })?;
        Ok(end.unwrap_or(0).max(0) as u64)
    }

    /// The committed units as a line source (a stage's input), read as
    /// far as `committed` says.
    pub fn source(&self, committed: watch::Receiver<Committed>) -> LineSource {
        let state = (self.clone(), committed.clone(), 0u64);
        let chunks = futures::stream::unfold(state, |(t, mut rx, next)| async move {
            // Only what is committed (the reader asks only then; wait if
            // it ever asks early).
            let limit = loop {
                let len = rx.borrow_and_update().len;
                if len > next {
                    break len;
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            };
            let chunk = match t.fetch(next, limit).await {
                Ok(rows) if rows.first().is_some_and(|r| r.0 == next) => {
                    let mut buf = Vec::new();
                    let mut end = next;
                    for (pos, line) in rows {
                        if pos != end {
                            break;
                        }
                        buf.extend_from_slice(line.as_bytes());
                        buf.push(b'\n');
                        end += line.len() as u64 + 1;
                    }
                    return Some((Ok(bytes::Bytes::from(buf)), (t, rx, end)));
                }
                Ok(_) => t.short(limit),
                Err(e) => e,
            };
            Some((Err(std::io::Error::other(chunk.message)), (t, rx, u64::MAX)))
        });
        let reader = tokio_util::io::StreamReader::new(Box::pin(chunks));
        LineSource::from_reader(Box::new(reader), self.describe(), committed)
    }

    /// Hand the committed units' lines, in order, to `line`: the lines of
    /// the standalone stage's file. Returns the length and whether the
    /// stage had finished.
    pub async fn export(
        &self,
        line: &mut (dyn FnMut(&str) -> Result<()> + Send),
    ) -> Result<Committed> {
        let Some(c) = self.committed().await? else {
            return Err(Error::config(format!(
                "{}: no such stage in the database (was the account dispatched with this store?)",
                self.describe()
            )));
        };
        let mut next = 0u64;
        while next < c.len {
            let rows = self.fetch(next, c.len).await?;
            if rows.is_empty() {
                return Err(self.short(c.len));
            }
            for (pos, text) in rows {
                if pos != next {
                    return Err(self.short(c.len));
                }
                line(&text)?;
                next += text.len() as u64 + 1;
            }
        }
        Ok(c)
    }

    fn short(&self, len: u64) -> Error {
        Error::checkpoint(format!(
            "{} holds fewer units than its checkpoint says ({len} bytes): was the table changed underneath?",
            self.describe()
        ))
    }

    /// Up to [`BATCH`] rows from byte `from`, below `limit`, in order.
    async fn fetch(&self, from: u64, limit: u64) -> Result<Vec<(u64, String)>> {
        let (from, limit, n) = (from as i64, limit as i64, BATCH as i64);
        let rows = with_client!(self.store.inner, "reading units", |c| {
            Ok(c.query(
                "SELECT pos, line FROM steward.units
                 WHERE run = $1 AND stage = $2 AND pos >= $3 AND pos < $4
                 ORDER BY pos LIMIT $5",
                &[&self.run, &self.stage.as_str(), &from, &limit, &n],
            )
            .await?)
        })?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)))
            .collect())
    }
}

#[async_trait]
impl Target for UnitTable {
    fn describe(&self) -> String {
        format!(
            "the {} units of {} in database {}",
            self.stage.as_str(),
            self.run,
            self.store.describe()
        )
    }

    async fn open(&self, at: Option<u64>) -> Result<Box<dyn UnitSink>> {
        let len = match at {
            None => 0,
            Some(at) => {
                if self.covered(at).await? != at {
                    return Err(self.short(at));
                }
                at
            }
        };
        self.cut(len).await?;
        Ok(Box::new(TableSink {
            table: self.clone(),
            len,
            buf: Vec::new(),
        }))
    }

    async fn has_units(&self) -> Result<bool> {
        with_client!(self.store.inner, "reading units", |c| {
            Ok(c.query_one(
                "SELECT EXISTS (SELECT 1 FROM steward.units WHERE run = $1 AND stage = $2)",
                &[&self.run, &self.stage.as_str()],
            )
            .await?
            .get(0))
        })
    }
}

/// Writes a stage's units into its table; its position is the length the
/// stage's file would have.
struct TableSink {
    table: UnitTable,
    len: u64,
    /// Lines not sent yet, with their positions.
    buf: Vec<(i64, String)>,
}

impl TableSink {
    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let pos: Vec<i64> = self.buf.iter().map(|b| b.0).collect();
        let lines: Vec<&str> = self.buf.iter().map(|b| b.1.as_str()).collect();
        let t = &self.table;
        with_client!(t.store.inner, "writing units", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &t.store.fence).await?;
            // A retry after a commit whose answer was lost finds its rows.
            tx.execute(
                "INSERT INTO steward.units (run, stage, pos, line)
                 SELECT $1, $2, * FROM unnest($3::bigint[], $4::text[])
                 ON CONFLICT DO NOTHING",
                &[&t.run, &t.stage.as_str(), &pos, &lines],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })?;
        self.buf.clear();
        Ok(())
    }
}

#[async_trait]
impl UnitSink for TableSink {
    async fn emit(&mut self, unit: Unit) -> Result<()> {
        let line = unit.to_line();
        let n = line.len() as u64 + 1;
        self.buf.push((self.len as i64, line));
        self.len += n;
        if self.buf.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn sync(&mut self) -> Result<u64> {
        self.flush().await?;
        Ok(self.len)
    }
}
