//! The PostgreSQL state store: the state of many runs in one database that
//! several `steward dispatch` workers, on several machines, share.
//!
//! The client is `tokio-postgres` (MIT or Apache-2.0): the asynchronous
//! half of rust-postgres, the long-maintained PostgreSQL driver of the Rust
//! ecosystem, on the tokio runtime steward already runs. It needs no C
//! library (libpq) and no ORM; SQL is written out here, where it can be
//! read. Connections are not encrypted (`NoTls`): use it on a trusted
//! network or through a tunnel.
//!
//! # Schema
//!
//! Everything lives in the PostgreSQL schema `steward` (so it can share a
//! database with other things), created and migrated by steward itself when
//! a store is opened: `steward.schema_version` holds the version, the
//! migrations of [`MIGRATIONS`] bring an older schema up to date in one
//! transaction under an advisory lock (two workers starting at once
//! migrate once), and a schema newer than this steward knows is refused
//! with one line saying to use the newer steward.
//!
//! # A lost connection
//!
//! Every operation is one transaction, and every write is idempotent (an
//! upsert, an insert of a key that may exist, a delete): when the
//! connection is lost, or the server is restarting or shutting down, the
//! store reconnects with exponential backoff (0.1 s doubling to 5 s) and
//! runs the whole transaction again, so a commit whose answer was lost is
//! harmless. The caller simply waits: the worker pauses, loses nothing, and
//! goes on when the database is back ([`Retry`] bounds the wait; by default
//! it is unbounded once connected). Opening the store does not wait: a
//! wrong URL or a database that is down at start fails at once.
//!
//! # Fencing
//!
//! [`PostgresStore::fenced`] gives a view of the store for one dispatch
//! account's claim: each of its writes first checks, in the same
//! transaction, that the account's fencing token is still the claim's
//! (`SELECT ... FOR SHARE`, so a takeover waits for a write in flight and
//! every write after the takeover sees the new token), and is refused with
//! [`ErrorKind::ClaimLost`] otherwise: a worker that was paused past its
//! lease writes nothing after another took the account over.
//!
//! # Caps at rest
//!
//! A finished traversal's frontier and seen set are deleted, but PostgreSQL
//! keeps deleted rows in its data files until they are vacuumed and the
//! space reused: unlike the SQLite store, the database does not guarantee
//! that a stronger cap leaves no trace on disk. It is a service with its
//! own access control; treat its files (and backups) as holding caps.

use super::{Batch, DirTask, RunRecord, StageKey, StagePosition, Store, TraversalProgress};
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_cap::Cap;
use tokio_postgres::{Client, Config, NoTls};

/// The migrations, in order: version `n` is reached by running every
/// script up to `n`. Never edit a released one: add the next.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        "CREATE TABLE steward.runs (
        id TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        kind TEXT NOT NULL,
        record JSONB NOT NULL
    );
    CREATE TABLE steward.state (
        run TEXT NOT NULL,
        stage TEXT NOT NULL,
        value JSONB NOT NULL,
        PRIMARY KEY (run, stage)
    );
    CREATE TABLE steward.seen (
        run TEXT NOT NULL,
        si BYTEA NOT NULL,
        PRIMARY KEY (run, si)
    );
    CREATE TABLE steward.frontier (
        run TEXT NOT NULL,
        id BIGINT NOT NULL,
        cap TEXT NOT NULL,
        path JSONB NOT NULL,
        PRIMARY KEY (run, id)
    );",
    ),
    // The dispatch job table (src/store/jobs_postgres.rs).
    (2, super::jobs_postgres::SCHEMA),
    // The stages' units (src/store/pg_units.rs).
    (3, super::pg_units::SCHEMA),
    // Gateway slots of a cluster-wide cap (src/store/pg_gateways.rs).
    (4, super::pg_gateways::SCHEMA),
    // Check answers a dispatch round keeps (src/store/jobs_postgres.rs).
    (5, super::jobs_postgres::ANSWERS_SCHEMA),
];

/// The schema version this steward writes (the last migration's).
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The key of the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x5374_6577_6172_6401; // "Steward\x01"

/// How long a worker waits for a lost database.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// First pause after a failure; doubles each time.
    pub first: Duration,
    /// Longest pause between two attempts.
    pub max_pause: Duration,
    /// Give up (fail the operation) after waiting this long in one outage;
    /// `None`: wait as long as it takes.
    pub give_up_after: Option<Duration>,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            first: Duration::from_millis(100),
            max_pause: Duration::from_secs(5),
            give_up_after: None,
        }
    }
}

/// A write refused because its claim was taken over, or any other answer
/// that is final; versus the database's own errors, some of which are
/// worth trying again.
pub(crate) enum Failed {
    Db(tokio_postgres::Error),
    Steward(Error),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Failed {
        Failed::Db(e)
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Failed {
        Failed::Steward(e)
    }
}

/// Whether `e` says the connection or the server went away (or is coming
/// back), or the transaction lost a race: running it again may succeed.
pub(crate) fn transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            // 08: connection exception; 57P01-03: admin/crash shutdown,
            // cannot connect now (starting up); 40001/40P01: serialization
            // failure, deadlock; 53300: too many connections.
            c.starts_with("08")
                || matches!(c, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300")
        }
        None => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
            while let Some(s) = src {
                if s.is::<std::io::Error>() {
                    return true;
                }
                src = s.source();
            }
            false
        }
    }
}

pub(crate) struct Inner {
    config: Config,
    /// How messages name the database (no password).
    pub(crate) shown: String,
    retry: Retry,
    /// Open connections not in use (see [`with_client`]).
    idle: std::sync::Mutex<Vec<Client>>,
}

/// The claim a fenced view writes under.
#[derive(Clone, Debug)]
pub(crate) struct Fence {
    pub account: String,
    pub token: i64,
}

/// A state store in a PostgreSQL database (see the module doc). Cheap to
/// clone; clones share one connection.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<Inner>,
    pub(crate) fence: Option<Fence>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.inner.shown)
            .field("fence", &self.fence)
            .finish()
    }
}

/// Runs `$body` (an async block's contents using `$c: &mut Client`) until
/// it succeeds or fails for good, reconnecting with backoff in between
/// (see the module doc). Evaluates to `Result<T>`.
///
/// Each run takes a connection of its own from the idle ones (or opens
/// one) and gives it back after: no lock is held across the operation, so
/// a future left suspended in the middle of one (a stage's input reader
/// that a `select!` stops polling for a while) blocks nobody else.
macro_rules! with_client {
    ($inner:expr, $what:expr, |$c:ident| $body:block) => {{
        let inner: &$crate::store::postgres::Inner = &$inner;
        let mut outage: Option<$crate::store::postgres::Outage> = None;
        loop {
            let mut client = match inner.idle_client() {
                Some(c) => c,
                None => match inner.connect().await {
                    Ok(c) => c,
                    Err(e) if $crate::store::postgres::transient(&e) => {
                        inner.pause(&mut outage, $what, &e).await?;
                        continue;
                    }
                    Err(e) => break Err(inner.error($what, &e)),
                },
            };
            let $c: &mut tokio_postgres::Client = &mut client;
            let r: std::result::Result<_, $crate::store::postgres::Failed> = async { $body }.await;
            match r {
                Ok(v) => {
                    inner.give_back(client);
                    if let Some(o) = outage {
                        o.over(inner);
                    }
                    break Ok(v);
                }
                Err($crate::store::postgres::Failed::Db(e))
                    if $crate::store::postgres::transient(&e) =>
                {
                    // A new connection for the next attempt (the old one
                    // may be dead, or half-way through a transaction).
                    drop(client);
                    inner.pause(&mut outage, $what, &e).await?;
                }
                Err($crate::store::postgres::Failed::Db(e)) => {
                    inner.give_back(client);
                    break Err(inner.error($what, &e));
                }
                Err($crate::store::postgres::Failed::Steward(e)) => {
                    inner.give_back(client);
                    break Err(e);
                }
            }
        }
    }};
}
pub(crate) use with_client;

/// One stretch of failures: when it began, the next pause.
pub(crate) struct Outage {
    since: Instant,
    pause: Duration,
}

impl Outage {
    pub(crate) fn over(self, inner: &Inner) {
        tracing::warn!(
            "database {} is back after {:.1} s",
            inner.shown,
            self.since.elapsed().as_secs_f64()
        );
    }
}

/// Idle connections kept open at most; more are closed when given back.
const IDLE: usize = 8;

impl Inner {
    /// An open idle connection, if there is one.
    pub(crate) fn idle_client(&self) -> Option<Client> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    /// A connection done with (its transaction committed or rolled back).
    pub(crate) fn give_back(&self, c: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE && !c.is_closed() {
            idle.push(c);
        }
    }

    pub(crate) async fn connect(&self) -> std::result::Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            // Ends when the connection does; the next operation notices.
            let _ = connection.await;
        });
        Ok(client)
    }

    pub(crate) fn error(&self, what: &str, e: &tokio_postgres::Error) -> Error {
        Error::checkpoint(format!("database {} ({what}): {}", self.shown, detail(e)))
    }

    /// Waits before the next attempt; fails once the outage lasted longer
    /// than the retry policy allows.
    pub(crate) async fn pause(
        &self,
        outage: &mut Option<Outage>,
        what: &str,
        e: &tokio_postgres::Error,
    ) -> Result<()> {
        let o = outage.get_or_insert_with(|| {
            tracing::warn!(
                "database {} unreachable ({what}: {}): pausing, retrying with backoff",
                self.shown,
                detail(e)
            );
            Outage {
                since: Instant::now(),
                pause: self.retry.first,
            }
        });
        if let Some(limit) = self.retry.give_up_after {
            if o.since.elapsed() >= limit {
                return Err(Error::checkpoint(format!(
                    "database {} unreachable for {} s ({what}): {}; run again once it is back",
                    self.shown,
                    limit.as_secs(),
                    detail(e)
                )));
            }
        }
        tokio::time::sleep(o.pause).await;
        o.pause = (o.pause * 2).min(self.retry.max_pause);
        Ok(())
    }
}

/// What went wrong, in one line: the server's own message, or the
/// client's with its causes (tokio-postgres shows only the kind, "error
/// connecting to server", and keeps "Connection refused" in its source).
pub(crate) fn detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text.replace('\n', " ")
}

/// How messages name a database: `postgres://USER@HOST:PORT/DB`, never its
/// password.
fn describe_config(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}{host}:{port}/{}",
        config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default(),
        config.get_dbname().unwrap_or("")
    )
}

/// Whether a `--store` argument names a PostgreSQL database.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST
    /// [:PORT]/DB`, or libpq's `key=value` form), creating or migrating
    /// steward's schema; waits for nothing (see the module doc).
    pub async fn open(url: &str) -> Result<PostgresStore> {
        Self::open_with(url, Retry::default()).await
    }

    pub async fn open_with(url: &str, retry: Retry) -> Result<PostgresStore> {
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Error::config(format!(
                "--store {}: not a PostgreSQL URL ({}): give postgres://USER@HOST:PORT/DATABASE",
                redact_store_url(url),
                detail(&e)
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("steward");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let shown = describe_config(&config);
        let inner = Inner {
            config,
            shown,
            retry,
            idle: std::sync::Mutex::new(Vec::new()),
        };
        let client = inner.connect().await.map_err(|e| {
            Error::config(format!(
                "--store {}: cannot connect ({}): check the URL, and that the server is up and lets this host in",
                inner.shown,
                detail(&e)
            ))
        })?;
        inner.give_back(client);
        let store = PostgresStore {
            inner: Arc::new(inner),
            fence: None,
        };
        store.migrate(MIGRATIONS).await?;
        Ok(store)
    }

    /// The schema version the database holds (0: none yet).
    pub async fn schema_version(&self) -> Result<u32> {
        with_client!(self.inner, "reading the schema version", |c| {
            let exists: bool = c
                .query_one(
                    "SELECT to_regclass('steward.schema_version') IS NOT NULL",
                    &[],
                )
                .await?
                .get(0);
            if !exists {
                return Ok(0);
            }
            let row = c
                .query_opt("SELECT version FROM steward.schema_version", &[])
                .await?;
            Ok(row.map_or(0, |r| r.get::<_, i32>(0).max(0) as u32))
        })
    }

    /// Brings the schema up to the last of `migrations` (all of
    /// [`MIGRATIONS`]; tests stop earlier to make an older schema).
    async fn migrate(&self, migrations: &[(u32, &str)]) -> Result<()> {
        let shown = self.inner.shown.clone();
        let newest = migrations.last().map_or(0, |m| m.0);
        with_client!(self.inner, "creating or migrating the schema", |c| {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE SCHEMA IF NOT EXISTS steward;
                 CREATE TABLE IF NOT EXISTS steward.schema_version (
                     only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
                     version INTEGER NOT NULL,
                     updated TIMESTAMPTZ NOT NULL DEFAULT now()
                 );",
            )
            .await?;
            let have = tx
                .query_opt("SELECT version FROM steward.schema_version", &[])
                .await?
                .map_or(0, |r| r.get::<_, i32>(0).max(0) as u32);
            if have > newest {
                return Err(Error::checkpoint(format!(
                    "database {shown} holds steward schema version {have}, newer than this steward's {newest}: use the newer steward that upgraded it"
                ))
                .into());
            }
            for (version, script) in migrations.iter().filter(|(v, _)| *v > have) {
                tx.batch_execute(script).await?;
                tx.execute(
                    "INSERT INTO steward.schema_version (only_row, version) VALUES (true, $1)
                     ON CONFLICT (only_row) DO UPDATE SET version = excluded.version, updated = now()",
                    &[&(*version as i32)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// A view of this store whose every write is refused unless
    /// `account`'s fencing token is still `token` (see the module doc).
    pub fn fenced(&self, account: &str, token: i64) -> PostgresStore {
        PostgresStore {
            inner: self.inner.clone(),
            fence: Some(Fence {
                account: account.to_string(),
                token,
            }),
        }
    }

    fn bad(&self, what: &str) -> Error {
        Error::checkpoint(format!(
            "database {} holds a damaged {what}: start the run again",
            self.inner.shown
        ))
    }
}

/// A `--store` argument as messages may show it, even one that does not
/// parse: without its password, neither the one after the user name nor a
/// `password=` parameter (libpq's URLs take both).
pub fn redact_store_url(url: &str) -> String {
    let shown = steward_backend::endpoint::redact_url(url);
    let Some((base, rest)) = shown.split_once('?') else {
        return shown;
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _))
                if percent_encoding::percent_decode_str(k)
                    .decode_utf8_lossy()
                    .eq_ignore_ascii_case("password") =>
            {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    let mut out = format!("{base}?{}", params.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// In a write transaction: refuse unless the fence (if any) still holds.
pub(crate) async fn check_fence(
    tx: &tokio_postgres::Transaction<'_>,
    fence: &Option<Fence>,
) -> std::result::Result<(), Failed> {
    let Some(f) = fence else { return Ok(()) };
    let token: Option<i64> = tx
        .query_opt(
            "SELECT token FROM steward.jobs WHERE name = $1 FOR SHARE",
            &[&f.account],
        )
        .await?
        .map(|r| r.get(0));
    if token != Some(f.token) {
        return Err(Failed::Steward(Error::new(
            ErrorKind::ClaimLost,
            format!(
                "account {}: the claim (token {}) was taken over by another worker; this worker stops working on it",
                f.account, f.token
            ),
        )));
    }
    Ok(())
}

async fn put_state(
    tx: &tokio_postgres::Transaction<'_>,
    key: StageKey<'_>,
    value: &impl serde::Serialize,
) -> std::result::Result<(), tokio_postgres::Error> {
    let v = serde_json::to_value(value).expect("serializable state");
    tx.execute(
        "INSERT INTO steward.state (run, stage, value) VALUES ($1, $2, $3)
         ON CONFLICT (run, stage) DO UPDATE SET value = excluded.value",
        &[&key.run, &key.stage.as_str(), &v],
    )
    .await?;
    Ok(())
}

async fn add_tasks(
    tx: &tokio_postgres::Transaction<'_>,
    run: &str,
    tasks: &[DirTask],
) -> std::result::Result<(), tokio_postgres::Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = tasks.iter().map(|t| t.id as i64).collect();
    let caps: Vec<&str> = tasks.iter().map(|t| t.cap.expose()).collect();
    let paths: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| serde_json::to_value(&t.path).expect("a list of strings"))
        .collect();
    tx.execute(
        "INSERT INTO steward.frontier (run, id, cap, path)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::jsonb[])
         ON CONFLICT (run, id) DO UPDATE SET cap = excluded.cap, path = excluded.path",
        &[&run, &ids, &caps, &paths],
    )
    .await?;
    Ok(())
}

async fn add_seen(
    tx: &tokio_postgres::Transaction<'_>,
    run: &str,
    seen: &[[u8; 16]],
) -> std::result::Result<(), tokio_postgres::Error> {
    if seen.is_empty() {
        return Ok(());
    }
    let sis: Vec<&[u8]> = seen.iter().map(|s| &s[..]).collect();
    tx.execute(
        "INSERT INTO steward.seen (run, si) SELECT $1, unnest($2::bytea[])
         ON CONFLICT DO NOTHING",
        &[&run, &sis],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.inner.shown.clone()
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let v: Option<serde_json::Value> = with_client!(self.inner, "reading a run", |c| {
            Ok(
                c.query_opt("SELECT record FROM steward.runs WHERE id = $1", &[&id])
                    .await?
                    .map(|r| r.get(0)),
            )
        })?;
        v.map(|v| serde_json::from_value(v).map_err(|_| self.bad("run record")))
            .transpose()
    }

    async fn put_run(&self, run: &RunRecord) -> Result<()> {
        let v = serde_json::to_value(run).expect("serializable run");
        with_client!(self.inner, "writing a run", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &self.fence).await?;
            tx.execute(
                "INSERT INTO steward.runs (id, kind, record) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, record = excluded.record",
                &[&run.id, &run.kind, &v],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn delete_run(&self, id: &str) -> Result<()> {
        with_client!(self.inner, "deleting a run", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &self.fence).await?;
            for table in [
                "runs WHERE id",
                "state WHERE run",
                "seen WHERE run",
                "frontier WHERE run",
                "units WHERE run",
            ] {
                tx.execute(&format!("DELETE FROM steward.{table} = $1"), &[&id])
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn runs(&self) -> Result<Vec<RunRecord>> {
        let rows = with_client!(self.inner, "reading the runs", |c| {
            Ok(c.query("SELECT record FROM steward.runs ORDER BY seq", &[])
                .await?)
        })?;
        rows.into_iter()
            .map(|r| {
                serde_json::from_value(r.get::<_, serde_json::Value>(0))
                    .map_err(|_| self.bad("run record"))
            })
            .collect()
    }

    async fn traversal_start(
        &self,
        key: StageKey<'_>,
        root: &DirTask,
        root_si: Option<[u8; 16]>,
        progress: &TraversalProgress,
    ) -> Result<()> {
        with_client!(self.inner, "starting a traversal", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &self.fence).await?;
            tx.execute("DELETE FROM steward.seen WHERE run = $1", &[&key.run])
                .await?;
            tx.execute("DELETE FROM steward.frontier WHERE run = $1", &[&key.run])
                .await?;
            add_tasks(&tx, key.run, std::slice::from_ref(root)).await?;
            add_seen(&tx, key.run, root_si.as_slice()).await?;
            put_state(&tx, key, progress).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn traversal_progress(&self, key: StageKey<'_>) -> Result<Option<TraversalProgress>> {
        self.get_state(key).await
    }

    async fn traversal_commit(
        &self,
        key: StageKey<'_>,
        batch: &Batch,
        progress: &TraversalProgress,
    ) -> Result<()> {
        let finished: Vec<i64> = batch.finished.iter().map(|&i| i as i64).collect();
        with_client!(self.inner, "committing a traversal step", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &self.fence).await?;
            add_seen(&tx, key.run, &batch.seen).await?;
            add_tasks(&tx, key.run, &batch.added).await?;
            if !finished.is_empty() {
                tx.execute(
                    "DELETE FROM steward.frontier WHERE run = $1 AND id = ANY($2)",
                    &[&key.run, &finished],
                )
                .await?;
            }
            put_state(&tx, key, progress).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn frontier(&self, key: StageKey<'_>, max_id: u64, limit: usize) -> Result<Vec<DirTask>> {
        let max = i64::try_from(max_id).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = with_client!(self.inner, "reading the frontier", |c| {
            Ok(c.query(
                "SELECT id, cap, path FROM steward.frontier WHERE run = $1 AND id <= $2
                 ORDER BY id DESC LIMIT $3",
                &[&key.run, &max, &limit],
            )
            .await?)
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.into_iter().rev() {
            let cap = Cap::parse(r.get::<_, &str>(1)).map_err(|_| self.bad("frontier cap"))?;
            let path: Vec<String> =
                serde_json::from_value(r.get(2)).map_err(|_| self.bad("frontier path"))?;
            out.push(DirTask {
                id: r.get::<_, i64>(0) as u64,
                cap,
                path,
            });
        }
        Ok(out)
    }

    async fn seen(&self, key: StageKey<'_>, f: &mut (dyn FnMut([u8; 16]) + Send)) -> Result<()> {
        use futures::TryStreamExt;
        // Streamed, not collected: a seen set may be far larger than
        // memory. A retry after a lost connection starts over, so the
        // caller may see an entry twice (it keeps a set).
        let bad = self.bad("seen entry");
        let mut bad_entry = false;
        with_client!(self.inner, "reading the seen set", |c| {
            let rows = c
                .query_raw(
                    "SELECT si FROM steward.seen WHERE run = $1",
                    [&key.run as &(dyn tokio_postgres::types::ToSql + Sync)],
                )
                .await?;
            futures::pin_mut!(rows);
            while let Some(r) = rows.try_next().await? {
                match <[u8; 16]>::try_from(r.get::<_, &[u8]>(0)) {
                    Ok(si) => f(si),
                    Err(_) => bad_entry = true,
                }
            }
            Ok(())
        })?;
        if bad_entry {
            return Err(bad);
        }
        Ok(())
    }

    async fn traversal_finish(&self, key: StageKey<'_>) -> Result<()> {
        with_client!(self.inner, "finishing a traversal", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &self.fence).await?;
            tx.execute("DELETE FROM steward.frontier WHERE run = $1", &[&key.run])
                .await?;
            tx.execute("DELETE FROM steward.seen WHERE run = $1", &[&key.run])
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn position(&self, key: StageKey<'_>) -> Result<Option<StagePosition>> {
        self.get_state(key).await
    }

    async fn set_position(&self, key: StageKey<'_>, pos: &StagePosition) -> Result<()> {
        with_client!(self.inner, "committing a stage position", |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, &self.fence).await?;
            put_state(&tx, key, pos).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

impl PostgresStore {
    async fn get_state<T: serde::de::DeserializeOwned>(
        &self,
        key: StageKey<'_>,
    ) -> Result<Option<T>> {
        let v: Option<serde_json::Value> =
            with_client!(self.inner, "reading a stage's state", |c| {
                Ok(c.query_opt(
                    "SELECT value FROM steward.state WHERE run = $1 AND stage = $2",
                    &[&key.run, &key.stage.as_str()],
                )
                .await?
                .map(|r| r.get(0)))
            })?;
        v.map(|v| serde_json::from_value(v).map_err(|_| self.bad(key.stage.as_str())))
            .transpose()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use steward_testpg::TestPg;

    /// A new empty database on the test process's shared server.
    pub(crate) async fn fresh() -> (String, &'static TestPg) {
        let pg = tokio::task::spawn_blocking(TestPg::shared).await.unwrap();
        let url = tokio::task::spawn_blocking(move || pg.fresh_database().unwrap())
            .await
            .unwrap();
        (url, pg)
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let (url, _pg) = fresh().await;
        let store = PostgresStore::open(&url).await.unwrap();
        crate::store::conformance::suite(&store).await;
        drop(store);
        // Durable: a new connection still sees what was committed.
        let store = PostgresStore::open(&url).await.unwrap();
        crate::store::conformance::after_reopen(&store).await;
    }

    #[test]
    fn store_urls_are_shown_without_passwords() {
        for (url, shown) in [
            ("postgres://u:s3cret@h:5/db", "postgres://u:***@h:5/db"),
            (
                "postgres://u@h/db?password=s3cret&sslmode=disable",
                "postgres://u:***@h/db?password=***&sslmode=disable",
            ),
            (
                "postgresql://h/db?application_name=x&pass%77ord=s3cret#f",
                "postgresql://h/db?application_name=x&pass%77ord=***#f",
            ),
            ("postgres://h/db", "postgres://h/db"),
        ] {
            assert_eq!(redact_store_url(url), shown);
        }
    }

    /// A URL that does not parse, and a server that does not answer: one
    /// line naming the URL without its password, the reason (the client
    /// error's cause, not only its kind) and what to check.
    #[tokio::test]
    async fn a_bad_or_unreachable_url_fails_in_one_line_without_its_password() {
        let e = PostgresStore::open("postgres://u:s3cret@h:notaport/db?password=s3cret")
            .await
            .expect_err("does not parse");
        assert!(e.message.starts_with("--store postgres://u:***@h:notaport/db?password=***: not a PostgreSQL URL (invalid connection string: "), "{}", e.message);
        let e = PostgresStore::open("postgres://u@h/db?bogus=1")
            .await
            .expect_err("does not parse");
        assert!(
            e.message.contains("unknown option `bogus`"),
            "{}",
            e.message
        );
        // A port nobody listens on (bound, then let go).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = PostgresStore::open(&format!("postgres://u:s3cret@127.0.0.1:{port}/db"))
            .await
            .expect_err("nothing listens");
        assert_eq!(
            e.message,
            format!("--store postgres://u@127.0.0.1:{port}/db: cannot connect (error connecting to server: Connection refused (os error 111)): check the URL, and that the server is up and lets this host in")
        );
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_with_one_line() {
        let (url, pg) = fresh().await;
        let store = PostgresStore::open(&url).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        let db = url.rsplit('/').next().unwrap().to_string();
        let newer = SCHEMA_VERSION + 1;
        tokio::task::spawn_blocking(move || {
            pg.psql(
                &db,
                &format!("UPDATE steward.schema_version SET version = {newer}"),
            )
            .unwrap()
        })
        .await
        .unwrap();
        let e = PostgresStore::open(&url).await.expect_err("refused");
        assert!(
            e.message.contains(&format!(
                "schema version {newer}, newer than this steward's {SCHEMA_VERSION}"
            )),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'));
    }

    #[tokio::test]
    async fn an_older_schema_is_migrated_keeping_its_data() {
        let (url, _pg) = fresh().await;
        let old = PostgresStore::open(&url).await.unwrap();
        // Made as if by a steward that knew only the first migration.
        let dropped: Result<()> = async {
            with_client!(old.inner, "test", |c| {
                c.batch_execute("DROP SCHEMA steward CASCADE").await?;
                Ok(())
            })
        }
        .await;
        dropped.unwrap();
        old.migrate(&MIGRATIONS[..1]).await.unwrap();
        assert_eq!(old.schema_version().await.unwrap(), 1);
        old.put_run(&RunRecord::new("kept", "x", serde_json::json!({"a": 1})))
            .await
            .unwrap();
        let new = PostgresStore::open(&url).await.unwrap();
        assert_eq!(new.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert!(new.run("kept").await.unwrap().is_some());
        use crate::store::jobs::Jobs;
        assert!(new.jobs().await.unwrap().is_empty(), "the job table exists");
    }

    #[tokio::test]
    async fn two_openers_of_an_empty_database_migrate_once() {
        let (url, pg) = fresh().await;
        // Two workers starting at once on an empty database.
        let (a, b) = tokio::join!(PostgresStore::open(&url), PostgresStore::open(&url));
        a.unwrap();
        b.unwrap();
        let db = url.rsplit('/').next().unwrap().to_string();
        let count = tokio::task::spawn_blocking(move || {
            pg.psql(
                &db,
                "SELECT count(*), max(version) FROM steward.schema_version",
            )
            .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(count.trim(), format!("1|{SCHEMA_VERSION}"));
    }

    #[tokio::test]
    async fn a_password_is_never_shown() {
        let (url, pg) = fresh().await;
        let with_password = url.replace("steward@", "steward:hunter2@");
        let store = PostgresStore::open(&with_password).await.unwrap();
        assert!(
            !store.describe().contains("hunter2"),
            "{}",
            store.describe()
        );
        let port = pg.port();
        let wrong = format!("postgres://steward:hunter2@127.0.0.1:{port}/no_such_db");
        let e = PostgresStore::open(&wrong).await.err().unwrap();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(e.message.contains("no_such_db"), "{}", e.message);
        let e = PostgresStore::open("postgres://u:hunter2@[bad")
            .await
            .err()
            .unwrap();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_restarted_server_costs_a_pause_not_an_error() {
        let pg =
            tokio::task::spawn_blocking(|| TestPg::start().unwrap_or_else(|e| panic!("{e:#}")))
                .await
                .unwrap();
        let pg = Arc::new(pg);
        let p2 = pg.clone();
        let url = tokio::task::spawn_blocking(move || p2.fresh_database().unwrap())
            .await
            .unwrap();
        let store = PostgresStore::open(&url).await.unwrap();
        store
            .put_run(&RunRecord::new("r", "x", serde_json::json!(1)))
            .await
            .unwrap();
        let p2 = pg.clone();
        tokio::task::spawn_blocking(move || p2.stop().unwrap())
            .await
            .unwrap();
        // Written while the server is down: waits, then lands.
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put_run(&RunRecord::new("during", "x", serde_json::json!(2)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!writer.is_finished(), "paused while the database is down");
        let p2 = pg.clone();
        tokio::task::spawn_blocking(move || p2.start_again().unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("resumed once the database is back")
            .unwrap()
            .unwrap();
        let ids: Vec<String> = store
            .runs()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["r", "during"]);
        // A bounded wait gives up with one line.
        let bounded = PostgresStore::open_with(
            &url,
            Retry {
                give_up_after: Some(Duration::from_millis(500)),
                ..Retry::default()
            },
        )
        .await
        .unwrap();
        let p2 = pg.clone();
        tokio::task::spawn_blocking(move || p2.stop().unwrap())
            .await
            .unwrap();
        let e = bounded.runs().await.expect_err("gave up");
        assert!(e.message.contains("unreachable"), "{}", e.message);
    }
}
