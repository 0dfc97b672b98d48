//! A per-gateway cap across every worker of a cluster (`steward dispatch
//! --store postgres://... --cluster-per-gateway M`), kept in the shared
//! database.
//!
//! Each gateway has M *slots* (`steward.gateway_slots`), and a worker may
//! have as many requests in flight at a gateway as it holds slots: its
//! scheduler caps the endpoint there
//! ([`steward_backend::Scheduler::set_shared_cap`]). Slots are leased like
//! claims (by the database's clock, renewed several times a lease), so a
//! dead worker's slots come free after the lease. Every worker that uses a
//! gateway says so in `steward.gateway_workers`; each takes its fair share
//! of the M slots (M / N, the first M mod N workers by name one more) and
//! gives back what it holds above it, but never below the requests it has
//! in flight there, which finish first: since a slot is one row held by one
//! worker, the workers together never hold more than M.
//!
//! Why slots rather than an advisory lock per request: a request would then
//! cost two more round trips to the database and hold a session-level lock
//! on a connection for as long as it runs (a repair: minutes); slots cost
//! one transaction per gateway per refresh, whatever the request rate.
//!
//! A worker that cannot refresh its slots (the database is unreachable for
//! half a lease) stops sending to every gateway until it can again: its
//! slots may have gone to others. The cap is exact while workers renew; a
//! worker stalled past a whole lease (a paused VM) whose requests are still
//! in flight at the gateway can put the total over M by those requests
//! until they end.

use super::postgres::{with_client, PostgresStore};
use crate::error::Result;
use std::sync::Arc;
use std::time::Duration;
use steward_backend::Scheduler;
use tokio::sync::watch;

/// Migration 4 of [`super::postgres::MIGRATIONS`].
pub(super) const SCHEMA: &str = "CREATE TABLE steward.gateway_slots (
    gateway TEXT NOT NULL,
    slot INTEGER NOT NULL,
    worker TEXT,
    expires_ms BIGINT,
    PRIMARY KEY (gateway, slot)
);
CREATE TABLE steward.gateway_workers (
    gateway TEXT NOT NULL,
    worker TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (gateway, worker)
);";

const NOW_MS: &str = "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// This worker's part in a cluster-wide per-gateway cap.
pub struct ClusterCap {
    pub store: PostgresStore,
    pub worker: String,
    /// Requests in flight at one gateway, over every worker.
    pub cap: usize,
    pub lease: Duration,
}

impl ClusterCap {
    /// How often the slots are refreshed.
    fn interval(&self) -> Duration {
        (self.lease / 8).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// Keep this worker's share of every gateway's slots until `stop`, then
    /// give them back. Until a first refresh, new endpoints admit nothing.
    pub async fn run(self, sched: Arc<Scheduler>, mut stop: watch::Receiver<bool>) {
        sched.set_default_shared_cap(Some(0));
        for e in sched.endpoints() {
            sched.set_shared_cap(&e, Some(0));
        }
        loop {
            let refresh = tokio::time::timeout(self.lease / 2, self.refresh(&sched)).await;
            if !matches!(refresh, Ok(Ok(()))) {
                // Our slots may have gone to others: send nothing.
                for e in sched.endpoints() {
                    sched.set_shared_cap(&e, Some(0));
                }
                if let Ok(Err(e)) = refresh {
                    tracing::warn!("cluster cap: {}", e.message);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval()) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        let _ = self.give_back().await;
    }

    /// One refresh of every endpoint's share (see the module doc).
    pub async fn refresh(&self, sched: &Arc<Scheduler>) -> Result<()> {
        for e in sched.endpoints() {
            let held = self.share(e.name(), sched.in_flight_at(&e)).await?;
            sched.set_shared_cap(&e, Some(held));
        }
        Ok(())
    }

    /// Renew this worker's presence and slots at `gateway`, take or give
    /// back slots toward its fair share; returns how many it holds.
    async fn share(&self, gateway: &str, in_flight: usize) -> Result<usize> {
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4);
        let cap = i32::try_from(self.cap).unwrap_or(i32::MAX);
        let me = self.worker.as_str();
        with_client!(self.store.inner, "sharing a gateway's cap", |c| {
            let tx = c.transaction().await?;
            tx.execute(
                &format!(
                    "INSERT INTO steward.gateway_workers (gateway, worker, expires_ms)
                     VALUES ($1, $2, {NOW_MS} + $3)
                     ON CONFLICT (gateway, worker) DO UPDATE SET expires_ms = excluded.expires_ms"
                ),
                &[&gateway, &me, &lease],
            )
            .await?;
            let workers: Vec<String> = tx
                .query(
                    &format!(
                        "SELECT worker FROM steward.gateway_workers
                         WHERE gateway = $1 AND expires_ms > {NOW_MS} ORDER BY worker COLLATE \"C\""
                    ),
                    &[&gateway],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let n = workers.len().max(1);
            let rank = workers.iter().position(|w| w == me).unwrap_or(n - 1);
            let fair = self.cap / n + usize::from(rank < self.cap % n);
            tx.execute(
                "INSERT INTO steward.gateway_slots (gateway, slot)
                 SELECT $1, generate_series(0, $2 - 1) ON CONFLICT DO NOTHING",
                &[&gateway, &cap],
            )
            .await?;
            let held: Vec<i32> = tx
                .query(
                    &format!(
                        "SELECT slot FROM steward.gateway_slots
                         WHERE gateway = $1 AND worker = $2 AND slot < $3 AND expires_ms > {NOW_MS}
                         ORDER BY slot FOR UPDATE"
                    ),
                    &[&gateway, &me, &cap],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Above the fair share, give back, but never below what is in
            // flight (those requests finish first).
            let keep = held.len().min(fair.max(in_flight));
            let kept = &held[..keep];
            tx.execute(
                "UPDATE steward.gateway_slots SET worker = NULL, expires_ms = NULL
                 WHERE gateway = $1 AND worker = $2 AND NOT (slot = ANY($3))",
                &[&gateway, &me, &kept],
            )
            .await?;
            tx.execute(
                &format!(
                    "UPDATE steward.gateway_slots SET expires_ms = {NOW_MS} + $4
                     WHERE gateway = $1 AND worker = $2 AND slot = ANY($3)"
                ),
                &[&gateway, &me, &kept, &lease],
            )
            .await?;
            let mut holding = kept.len();
            if holding < fair {
                let want = (fair - holding) as i64;
                let taken = tx
                    .query(
                        &format!(
                            "UPDATE steward.gateway_slots s
                             SET worker = $2, expires_ms = {NOW_MS} + $4
                             FROM (
                                 SELECT slot FROM steward.gateway_slots
                                 WHERE gateway = $1 AND slot < $3
                                   AND (worker IS NULL OR expires_ms < {NOW_MS})
                                 ORDER BY slot LIMIT $5
                                 FOR UPDATE SKIP LOCKED
                             ) free
                             WHERE s.gateway = $1 AND s.slot = free.slot
                             RETURNING s.slot"
                        ),
                        &[&gateway, &me, &cap, &lease, &want],
                    )
                    .await?;
                holding += taken.len();
            }
            tx.commit().await?;
            Ok(holding)
        })
    }

    /// Free this worker's slots and presence (when it ends).
    pub async fn give_back(&self) -> Result<()> {
        let me = self.worker.as_str();
        with_client!(self.store.inner, "giving back gateway slots", |c| {
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE steward.gateway_slots SET worker = NULL, expires_ms = NULL WHERE worker = $1",
                &[&me],
            )
            .await?;
            tx.execute(
                "DELETE FROM steward.gateway_workers WHERE worker = $1",
                &[&me],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
