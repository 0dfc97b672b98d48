//! The SQLite state store: one database file, for one output (`FILE.steward-
//! journal` beside a manifest, `FILE.steward-ckpt` beside a check) or for
//! many runs (a dispatch's state directory).
//!
//! SQLite (through `rusqlite`, the library bundled) gives atomic commits
//! over several tables and indexed, paged access to a frontier or a seen
//! set far larger than memory. The file says what it is: its `meta` table
//! holds the format name (`steward-journal`, `steward-checkpoint` or
//! `steward-state`) and version, so that a file of one kind opened as
//! another, or an older steward's file, is refused with a clear message.
//!
//! The file is created mode 0600 without following a symlink, refused if it
//! is not a regular file, and locked (`flock`, exclusive, not waiting) for
//! as long as the store is open: a second process opening it is refused at
//! once, naming the file and the process that holds it. Deleted pages are
//! zeroed (`secure_delete`) and a finished traversal's frontier and seen set
//! are removed and the file compacted, so that a least-authority manifest
//! leaves no stronger caps on disk.

use super::{Batch, DirTask, RunRecord, StageKey, StagePosition, Store, TraversalProgress};
use crate::error::{Error, Result};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use steward_cap::Cap;

/// What a store file is for; recorded in it, checked on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Beside a manifest or a deep-check's files: holds a traversal.
    Journal,
    /// Beside a check or repair output: one mapped stage's position.
    Checkpoint,
    /// The state of many runs (a dispatch or a server).
    State,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Journal => "steward-journal",
            Format::Checkpoint => "steward-checkpoint",
            Format::State => "steward-state",
        }
    }

    /// What a person would call a file of this format.
    fn describe(self) -> &'static str {
        match self {
            Format::Journal => "a traversal journal (of `steward manifest` or `deep-check`)",
            Format::Checkpoint => "a stage checkpoint (of `steward check` or `repair`)",
            Format::State => "a state database (of `steward dispatch` or `serve`)",
        }
    }
}

/// Version of the schema; bumped when it changes meaning.
pub const SCHEMA_VERSION: u32 = 2;

/// A state store in one SQLite file (see the module doc).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Holds the exclusive lock for as long as the store is open.
    _lock: std::fs::File,
}

impl SqliteStore {
    /// Open (or create) the store at `path`, which must be of `format`.
    pub fn open(path: &Path, format: Format) -> Result<SqliteStore> {
        let lock = lock_file(path)?;
        let conn = Connection::open_with_flags(
            sqlite_path(path)?,
            rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        conn.execute_batch(
            "PRAGMA secure_delete=ON;
             PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(|e| not_a_store(path, format, &e))?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            _lock: lock,
        };
        store.check_format(format)?;
        if format == Format::State {
            store.conn().execute_batch(super::jobs_sqlite::SCHEMA)?;
        }
        Ok(store)
    }

    /// Open an existing store to read it while another process may hold it
    /// (`steward dispatch status` during a dispatch): no lock, read-only;
    /// SQLite's write-ahead log lets it read the last commit while the
    /// holder writes. Nothing written through it is accepted.
    pub fn open_read_only(path: &Path, format: Format) -> Result<SqliteStore> {
        crate::output::check_target(path)
            .map_err(|e| Error::io(format!("state {}", path.display()), e))?;
        let lock = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("state {}", path.display()), e))?;
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            _lock: lock,
        };
        let format_name: Option<String> = {
            let c = store.conn();
            let has_meta: bool = c
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'meta')",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| not_a_store(path, format, &e))?;
            let format_row: Option<String> = if has_meta {
                c.query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| not_a_store(path, format, &e))?
            } else {
                None
            };
            if format_row.is_none() {
                // Being created by its first opener: nothing in it yet.
                return Err(Error::new(
                    crate::error::ErrorKind::Locked,
                    format!("{} is being created: try again in a moment", path.display()),
                ));
            }
            format_row
        };
        if format_name.as_deref() != Some(format.name()) {
            return Err(not_a_store(path, format, &rusqlite::Error::InvalidQuery));
        }
        Ok(store)
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_format(&self, format: Format) -> Result<()> {
        let c = self.conn();
        let get = |k: &str| -> Result<Option<String>> {
            Ok(
                c.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                    .optional()?,
            )
        };
        // Version 1 files (an earlier steward's manifest journal) had a
        // `version` key of "1" and no `format`.
        match (get("format")?, get("version")?) {
            (None, None) => {
                // One transaction: a reader (`dispatch status`) sees the
                // format only with every table.
                c.execute_batch(&format!(
                    "BEGIN IMMEDIATE;
                     INSERT INTO meta (key, value) VALUES ('format', '{}'), ('version', '{SCHEMA_VERSION}');
                     CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, record TEXT NOT NULL, seq INTEGER NOT NULL);
                     CREATE TABLE IF NOT EXISTS state (run TEXT NOT NULL, stage TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run, stage)) WITHOUT ROWID;
                     CREATE TABLE IF NOT EXISTS seen (run TEXT NOT NULL, si BLOB NOT NULL, PRIMARY KEY (run, si)) WITHOUT ROWID;
                     CREATE TABLE IF NOT EXISTS frontier (run TEXT NOT NULL, id INTEGER NOT NULL, cap TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (run, id)) WITHOUT ROWID;
                     {};
                     COMMIT;",
                    format.name(),
                    if format == Format::State { super::jobs_sqlite::SCHEMA } else { "SELECT 1" }
                ))?;
                Ok(())
            }
            (Some(f), Some(v)) if f == format.name() && v == SCHEMA_VERSION.to_string() => Ok(()),
            (Some(f), Some(v)) if f == format.name() => Err(Error::checkpoint(format!(
                "{} has format version {v}, this steward writes {SCHEMA_VERSION}: run again with --restart",
                self.path.display()
            ))),
            (Some(f), _) => {
                let what = [Format::Journal, Format::Checkpoint, Format::State]
                    .into_iter()
                    .find(|x| x.name() == f)
                    .map_or("a file of another kind", |x| x.describe());
                Err(Error::checkpoint(format!(
                    "{} is {what}, not {}: use the same command that made it, or another -o FILE",
                    self.path.display(),
                    format.describe()
                )))
            }
            (None, Some(v)) => Err(Error::checkpoint(format!(
                "{} is a checkpoint of an older steward (format {v}): run again with --restart",
                self.path.display()
            ))),
        }
    }

    fn bad(&self, what: &str) -> Error {
        Error::checkpoint(format!(
            "checkpoint {} is damaged ({what}): run again with --restart",
            self.path.display()
        ))
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, key: StageKey<'_>) -> Result<Option<T>> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM state WHERE run = ?1 AND stage = ?2",
                params![key.run, key.stage.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|_| self.bad(key.stage.as_str())))
            .transpose()
    }
}

/// The path SQLite is given for `path`: its directory resolved, its own
/// name kept. `SQLITE_OPEN_NOFOLLOW` refuses a symlink anywhere in the
/// path, not only the file's own name, so `-o /home/me/run.ndjson` with
/// `/home` a symlink failed with "unable to open database file". The file's
/// own name is still never a symlink ([`lock_file`] refused one already,
/// and SQLite checks it again).
fn sqlite_path(path: &Path) -> Result<PathBuf> {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) if !d.as_os_str().is_empty() => (d, n),
        (_, Some(n)) => (Path::new("."), n),
        _ => return Ok(path.to_path_buf()),
    };
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| Error::io(format!("checkpoint {}", path.display()), e))?;
    Ok(dir.join(name))
}

/// SQLite's side files of a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Remove a store file and its SQLite side files (a symlink in their place
/// is removed itself, never its target).
pub fn remove(path: &Path) -> Result<()> {
    for suffix in std::iter::once("").chain(SIDE_FILES) {
        match std::fs::remove_file(with_suffix(path, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Create or open `path` by the rules of [`crate::output`] (0600, never
/// through a symlink, a private regular file of this user), check SQLite's
/// side files the same way (SQLite opens them with `O_NOFOLLOW` and gives
/// them the database's mode), and lock it exclusively without waiting.
fn lock_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let f = crate::output::open_private(path, false)
        .map_err(|e| Error::io(format!("checkpoint {}", path.display()), e))?;
    for suffix in SIDE_FILES {
        let side = with_suffix(path, suffix);
        crate::output::check_target(&side)
            .map_err(|e| Error::io(format!("checkpoint {}", side.display()), e))?;
    }
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = f.metadata().ok().and_then(|m| lock_holder(&m));
        return Err(Error::new(
            crate::error::ErrorKind::Locked,
            format!(
                "{} is in use by another steward run{}: wait for it to finish, or use another -o FILE",
                path.display(),
                holder.map(|p| format!(" (process {p})")).unwrap_or_default()
            ),
        ));
    }
    Ok(f)
}

/// The process holding a `flock` on the file, from /proc/locks (Linux).
pub fn lock_holder(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let ino = meta.ino().to_string();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF"
        let dev_ino = f.get(5)?;
        (f.get(1) == Some(&"FLOCK") && dev_ino.rsplit(':').next() == Some(ino.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

fn not_a_store(path: &Path, format: Format, e: &rusqlite::Error) -> Error {
    Error::checkpoint(format!(
        "{} is not {} ({e}): is it another file? Use another -o FILE, or --restart",
        path.display(),
        format.describe()
    ))
}

fn put_state(
    tx: &rusqlite::Transaction<'_>,
    key: StageKey<'_>,
    value: &impl serde::Serialize,
) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO state (run, stage, value) VALUES (?1, ?2, ?3)")?
        .execute(params![
            key.run,
            key.stage.as_str(),
            serde_json::to_string(value).expect("serializable state")
        ])?;
    Ok(())
}

fn insert_task(tx: &rusqlite::Transaction<'_>, run: &str, t: &DirTask) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO frontier (run, id, cap, path) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        run,
        t.id as i64,
        t.cap.expose(),
        serde_json::to_string(&t.path).expect("a list of strings")
    ])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let text: Option<String> = self
            .conn()
            .query_row("SELECT record FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|_| self.bad("run record")))
            .transpose()
    }

    async fn put_run(&self, run: &RunRecord) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "INSERT INTO runs (id, record, seq) VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM runs))
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            params![run.id, serde_json::to_string(run).expect("serializable run")],
        )?;
        tx.commit()?;
        Ok(())
    }

    async fn delete_run(&self, id: &str) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for table in [
            "runs WHERE id",
            "state WHERE run",
            "seen WHERE run",
            "frontier WHERE run",
        ] {
            tx.execute(&format!("DELETE FROM {table} = ?1"), [id])?;
        }
        tx.commit()?;
        Ok(())
    }

    async fn runs(&self) -> Result<Vec<RunRecord>> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT record FROM runs ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(serde_json::from_str(&r?).map_err(|_| self.bad("run record"))?);
        }
        Ok(out)
    }

    async fn traversal_start(
        &self,
        key: StageKey<'_>,
        root: &DirTask,
        root_si: Option<[u8; 16]>,
        progress: &TraversalProgress,
    ) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute("DELETE FROM seen WHERE run = ?1", [key.run])?;
        tx.execute("DELETE FROM frontier WHERE run = ?1", [key.run])?;
        insert_task(&tx, key.run, root)?;
        if let Some(si) = root_si {
            tx.execute(
                "INSERT OR IGNORE INTO seen (run, si) VALUES (?1, ?2)",
                params![key.run, &si[..]],
            )?;
        }
        put_state(&tx, key, progress)?;
        tx.commit()?;
        Ok(())
    }

    async fn traversal_progress(&self, key: StageKey<'_>) -> Result<Option<TraversalProgress>> {
        self.get_state(key)
    }

    async fn traversal_commit(
        &self,
        key: StageKey<'_>,
        batch: &Batch,
        progress: &TraversalProgress,
    ) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut ins =
                tx.prepare_cached("INSERT OR IGNORE INTO seen (run, si) VALUES (?1, ?2)")?;
            for si in &batch.seen {
                ins.execute(params![key.run, &si[..]])?;
            }
            for t in &batch.added {
                insert_task(&tx, key.run, t)?;
            }
            let mut del = tx.prepare_cached("DELETE FROM frontier WHERE run = ?1 AND id = ?2")?;
            for id in &batch.finished {
                del.execute(params![key.run, *id as i64])?;
            }
        }
        put_state(&tx, key, progress)?;
        tx.commit()?;
        Ok(())
    }

    async fn frontier(&self, key: StageKey<'_>, max_id: u64, limit: usize) -> Result<Vec<DirTask>> {
        let c = self.conn();
        let mut stmt = c.prepare_cached(
            "SELECT id, cap, path FROM frontier WHERE run = ?1 AND id <= ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let max = i64::try_from(max_id).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![key.run, max, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, cap, path) = row?;
            let cap = Cap::parse(&cap).map_err(|_| self.bad("a frontier cap"))?;
            let path: Vec<String> =
                serde_json::from_str(&path).map_err(|_| self.bad("a frontier path"))?;
            out.push(DirTask {
                id: id as u64,
                cap,
                path,
            });
        }
        out.reverse();
        Ok(out)
    }

    async fn seen(&self, key: StageKey<'_>, f: &mut (dyn FnMut([u8; 16]) + Send)) -> Result<()> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT si FROM seen WHERE run = ?1")?;
        let mut rows = stmt.query([key.run])?;
        while let Some(row) = rows.next()? {
            let b: Vec<u8> = row.get(0)?;
            let si = <[u8; 16]>::try_from(b.as_slice()).map_err(|_| self.bad("a seen entry"))?;
            f(si);
        }
        Ok(())
    }

    async fn traversal_finish(&self, key: StageKey<'_>) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute("DELETE FROM frontier WHERE run = ?1", [key.run])?;
        tx.execute("DELETE FROM seen WHERE run = ?1", [key.run])?;
        tx.commit()?;
        // Deleted pages are zeroed (secure_delete) in the WAL; fold the WAL
        // into the database and truncate it, then compact, so no old page
        // holding a cap survives in either file.
        c.execute_batch(
            "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
        Ok(())
    }

    async fn position(&self, key: StageKey<'_>) -> Result<Option<StagePosition>> {
        self.get_state(key)
    }

    async fn set_position(&self, key: StageKey<'_>, pos: &StagePosition) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        put_state(&tx, key, pos)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let store = SqliteStore::open(&path, Format::State).unwrap();
        crate::store::conformance::suite(&store).await;
        drop(store);
        // Durable: a reopened store still has what was committed.
        let store = SqliteStore::open(&path, Format::State).unwrap();
        crate::store::conformance::after_reopen(&store).await;
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let first = SqliteStore::open(&path, Format::Journal).unwrap();
        let err = SqliteStore::open(&path, Format::Journal).err().unwrap();
        assert!(
            err.message.contains("in use by another steward run"),
            "{}",
            err.message
        );
        drop(first);
        SqliteStore::open(&path, Format::Journal).unwrap();
    }

    #[test]
    fn a_file_of_another_kind_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        drop(SqliteStore::open(&path, Format::Journal).unwrap());
        let err = SqliteStore::open(&path, Format::Checkpoint).err().unwrap();
        assert!(
            err.message.contains("is a traversal journal"),
            "{}",
            err.message
        );
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"{\"version\":1,\"stage\":\"check\"}").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SqliteStore::open(&junk, Format::Checkpoint).err().unwrap();
        assert!(
            err.message.contains("is not a stage checkpoint"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_finished_traversal_leaves_no_cap_on_disk() {
        use crate::store::{DirTask, StageName};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let store = SqliteStore::open(&path, Format::Journal).unwrap();
        let key = StageKey {
            run: "main",
            stage: StageName::Traverse,
        };
        let secret = steward_cap::base32::encode(&[0x5a; 16]);
        let cap = Cap::parse(&format!(
            "URI:DIR2-RO:{secret}:{}",
            steward_cap::base32::encode(&[7; 32])
        ))
        .unwrap();
        let t = |id| DirTask {
            id,
            cap: cap.clone(),
            path: vec![],
        };
        let p = TraversalProgress::default();
        store.traversal_start(key, &t(0), None, &p).await.unwrap();
        for i in 1..200 {
            let b = Batch {
                added: vec![t(i)],
                finished: vec![i - 1],
                ..Default::default()
            };
            store.traversal_commit(key, &b, &p).await.unwrap();
        }
        let on_disk = |name: &str| {
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                if let Ok(b) = std::fs::read(dir.path().join(format!("{name}{suffix}"))) {
                    all.extend(b);
                }
            }
            all.windows(secret.len()).any(|w| w == secret.as_bytes())
        };
        assert!(on_disk("j"), "the frontier holds the cap while running");
        store.traversal_finish(key).await.unwrap();
        assert!(!on_disk("j"), "no trace of the cap once finished");
    }
}
