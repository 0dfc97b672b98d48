//! Durable checkpoints, so that every stage resumes where it stopped.
//!
//! [`ManifestJournal`] is the traversal's checkpoint: an SQLite database
//! beside the output (`FILE.steward-ckpt`, mode 0600, since it holds the caps
//! of directories still to list). It holds
//!
//! * `frontier`: the directories discovered but not yet listed (id, the cap
//!   to list them with, their path);
//! * `seen`: the storage indexes already emitted or queued (16 bytes each);
//! * `meta`: the format version, which root and cap authority the run is for,
//!   the output length the checkpoint covers, the deep-stats so far, the next
//!   task id, and whether the run finished.
//!
//! A batch of finished listings is committed in one transaction *after* the
//! output has been fsynced up to the recorded length, so after a crash at any
//! moment the output is cut back to that length and the frontier reloaded:
//! a listing whose results were not committed is simply done again, and no
//! unit is lost or written twice. SQLite (through `rusqlite`, with the
//! library bundled) was chosen over a hand-rolled log because it gives
//! atomic multi-table commits and indexed, paged access to a frontier or a
//! seen-set far larger than memory.
//!
//! [`StageCheckpoint`] is the simpler checkpoint of the `check` and `repair`
//! stages, whose progress is one number: how many input lines are done.
//!
//! Both are created by the rules of [`crate::output`] (0600, never through
//! a symlink; SQLite is opened with `SQLITE_OPEN_NOFOLLOW`, and its own
//! side files `-wal`, `-shm`, `-journal` are refused if something other
//! than a private regular file is in their place).
//!
//! Least authority: the frontier of a `--caps verify` manifest holds the
//! *read* caps of directories still to list (a directory cannot be listed
//! with less), stronger than anything its output holds. SQLite runs with
//! `secure_delete` (deleted rows are overwritten with zeros, in the
//! database and its write-ahead log), and a finished run truncates its
//! write-ahead log, so a completed checkpoint holds no cap of the frontier
//! (a test greps its bytes). While a run is unfinished, its checkpoint
//! holds the caps of the directories it has still to list.

use crate::error::{Error, Result};
use crate::input::InputShape;
use crate::output::{check_target, create_temporary, open_private, sync_parent_dir};
use crate::stats::DeepStats;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use steward_cap::Cap;

/// Version of the journal schema; bumped when it changes meaning.
pub const JOURNAL_VERSION: u32 = 1;

/// A directory still to list.
#[derive(Clone, Debug)]
pub struct DirTask {
    pub id: u64,
    pub cap: Cap,
    pub path: Vec<String>,
}

/// What identifies a traversal run, so a checkpoint is not applied to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// Storage index (or, for a literal root, a hash) of the root.
    pub root: String,
    /// `write`, `read` or `verify`.
    pub caps: String,
}

/// The traversal state a checkpoint restores.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub output_len: u64,
    pub stats: DeepStats,
    pub next_id: u64,
    pub unlisted: u64,
    pub done: bool,
}

/// Changes since the last commit.
#[derive(Default, Debug)]
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

/// The checkpoint database of one manifest run.
pub struct ManifestJournal {
    conn: Connection,
    path: PathBuf,
}

/// `path` with `suffix` appended.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// SQLite's side files of a database.
const SQLITE_SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The checkpoint path beside an output file.
pub fn checkpoint_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".steward-ckpt");
    PathBuf::from(s)
}

/// Remove a checkpoint database and its SQLite side files.
pub fn remove_checkpoint(path: &Path) -> Result<()> {
    for suffix in std::iter::once("").chain(SQLITE_SIDE_FILES) {
        // remove_file removes a symlink itself, never its target.
        match std::fs::remove_file(with_suffix(path, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

impl ManifestJournal {
    /// Open (or create) the checkpoint database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        // Create it private before SQLite touches it, and check SQLite's
        // side files (SQLite itself opens them with O_NOFOLLOW, and gives
        // them the database's mode).
        open_private(path, false)
            .map_err(|e| Error::io(format!("checkpoint {}", path.display()), e))?;
        for suffix in SQLITE_SIDE_FILES {
            let side = with_suffix(path, suffix);
            check_target(&side)
                .map_err(|e| Error::io(format!("checkpoint {}", side.display()), e))?;
        }
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        conn.execute_batch(
            "PRAGMA secure_delete=ON;
             PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS seen (si BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS frontier (id INTEGER PRIMARY KEY, cap TEXT NOT NULL, path TEXT NOT NULL);",
        )?;
        Ok(ManifestJournal {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// The identity and progress recorded, if the database holds a run.
    pub fn load(&self) -> Result<Option<(RunIdentity, Progress)>> {
        let Some(version) = self.get("version")? else {
            return Ok(None);
        };
        if version != JOURNAL_VERSION.to_string() {
            return Err(Error::checkpoint(format!(
                "checkpoint {} has format version {version}, this steward writes {JOURNAL_VERSION}: run again with --restart",
                self.path.display()
            )));
        }
        let bad = |what: &str| {
            Error::checkpoint(format!(
                "checkpoint {} is damaged ({what}): run again with --restart",
                self.path.display()
            ))
        };
        let identity: RunIdentity =
            serde_json::from_str(&self.get("identity")?.ok_or_else(|| bad("identity"))?)
                .map_err(|_| bad("identity"))?;
        let progress: Progress =
            serde_json::from_str(&self.get("progress")?.ok_or_else(|| bad("progress"))?)
                .map_err(|_| bad("progress"))?;
        Ok(Some((identity, progress)))
    }

    /// Start a new run: forget everything and record its identity and root task.
    pub fn start(
        &mut self,
        identity: &RunIdentity,
        root: Option<&DirTask>,
        root_si: Option<[u8; 16]>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute_batch("DELETE FROM meta; DELETE FROM seen; DELETE FROM frontier;")?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('version', ?1), ('identity', ?2)",
            params![
                JOURNAL_VERSION.to_string(),
                serde_json::to_string(identity).unwrap()
            ],
        )?;
        let progress = Progress {
            next_id: 1,
            ..Default::default()
        };
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('progress', ?1)",
            [serde_json::to_string(&progress).unwrap()],
        )?;
        if let Some(t) = root {
            insert_task(&tx, t)?;
        }
        if let Some(si) = root_si {
            tx.execute("INSERT OR IGNORE INTO seen (si) VALUES (?1)", [&si[..]])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every storage index seen so far.
    pub fn for_each_seen(&self, mut f: impl FnMut([u8; 16])) -> Result<()> {
        let mut stmt = self.conn.prepare("SELECT si FROM seen")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let b: Vec<u8> = row.get(0)?;
            if let Ok(a) = <[u8; 16]>::try_from(b.as_slice()) {
                f(a);
            }
        }
        Ok(())
    }

    /// Up to `limit` pending directories with ids at most `max_id`, highest
    /// id first (the traversal is depth-first: the newest first).
    pub fn load_frontier(&self, max_id: u64, limit: usize) -> Result<Vec<DirTask>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, cap, path FROM frontier WHERE id <= ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![max_id as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, cap, path) = row?;
            let cap = Cap::parse(&cap)
                .map_err(|e| Error::checkpoint(format!("checkpoint frontier: {e}")))?;
            let path: Vec<String> = serde_json::from_str(&path).map_err(|_| {
                Error::checkpoint("checkpoint frontier: bad path; run again with --restart")
            })?;
            out.push(DirTask {
                id: id as u64,
                cap,
                path,
            });
        }
        // Return lowest first, so that pushing them on a stack keeps the
        // highest id on top.
        out.reverse();
        Ok(out)
    }

    /// Commit a batch together with the progress it reaches, in one transaction.
    pub fn commit(&mut self, batch: &Batch, progress: &Progress) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut ins_seen = tx.prepare_cached("INSERT OR IGNORE INTO seen (si) VALUES (?1)")?;
            for si in &batch.seen {
                ins_seen.execute([&si[..]])?;
            }
            for t in &batch.added {
                insert_task(&tx, t)?;
            }
            let mut del = tx.prepare_cached("DELETE FROM frontier WHERE id = ?1")?;
            for id in &batch.finished {
                del.execute([*id as i64])?;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'progress'",
                [serde_json::to_string(progress).unwrap()],
            )?;
        }
        tx.commit()?;
        if progress.done {
            self.scrub()?;
        }
        Ok(())
    }

    /// Leave nothing of the frontier on disk: copy the write-ahead log into
    /// the database (where `secure_delete` has zeroed deleted rows) and
    /// truncate it to nothing. Done when the run is complete.
    fn scrub(&self) -> Result<()> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(Error::checkpoint(format!(
                "checkpoint {}: SQLite could not fold its log into the database (is another process reading it?)",
                self.path.display()
            )));
        }
        Ok(())
    }
}

fn insert_task(tx: &rusqlite::Transaction<'_>, t: &DirTask) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO frontier (id, cap, path) VALUES (?1, ?2, ?3)")?
        .execute(params![
            t.id as i64,
            t.cap.expose(),
            serde_json::to_string(&t.path).unwrap()
        ])?;
    Ok(())
}

/// Version of the stage checkpoint format.
pub const STAGE_CHECKPOINT_VERSION: u32 = 1;

/// How much of the input is hashed to recognise it again.
pub const INPUT_PREFIX: usize = 64 * 1024;

/// The checkpoint of a `check` or `repair` run: a small JSON file beside the
/// output (`FILE.steward-ckpt`), replaced atomically (write a temporary file,
/// fsync, rename, fsync the directory) at a bounded interval, after the
/// output itself has been fsynced. Progress is positional: the input is read
/// in order and the output follows the input's order, so one input offset and
/// one output length say exactly what is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCheckpoint {
    pub version: u32,
    /// `check` or `repair`.
    pub stage: String,
    /// The options that change what the output holds (for example
    /// `verify,add-lease`): a resume with other options is refused.
    pub options: String,
    /// SHA-256 (base32) of the input's first [`INPUT_PREFIX`] bytes, or of
    /// all of it if shorter, as far as it had been read.
    pub input_prefix_hash: String,
    /// How many bytes of input the hash covers.
    pub input_prefix_len: u64,
    /// Input bytes fully processed.
    pub input_offset: u64,
    /// Input lines fully processed.
    pub input_lines: u64,
    /// Output bytes that correspond to them.
    pub output_len: u64,
    /// Per-stage counters (healthy, unhealthy, repaired, ...), for the summary.
    pub tally: std::collections::BTreeMap<String, u64>,
    /// Whether the input was consumed to its end.
    pub done: bool,
    /// What the input held so far, to tell a complete stream from one cut
    /// short (absent from checkpoints written before it existed).
    #[serde(default)]
    pub shape: InputShape,
}

impl StageCheckpoint {
    /// Read a checkpoint; `None` if there is none.
    pub fn load(path: &Path) -> Result<Option<StageCheckpoint>> {
        check_target(path).map_err(|e| Error::io(format!("checkpoint {}", path.display()), e))?;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("reading checkpoint {}", path.display()),
                    e,
                ))
            }
        };
        let c: StageCheckpoint = serde_json::from_str(&text).map_err(|_| {
            Error::checkpoint(format!(
                "checkpoint {} is not a steward stage checkpoint: run again with --restart",
                path.display()
            ))
        })?;
        if c.version != STAGE_CHECKPOINT_VERSION {
            return Err(Error::checkpoint(format!(
                "checkpoint {} has format version {}, this steward writes {STAGE_CHECKPOINT_VERSION}: run again with --restart",
                path.display(),
                c.version
            )));
        }
        Ok(Some(c))
    }

    /// Replace the checkpoint at `path` durably and atomically: a
    /// temporary file `path.tmp` created with `O_EXCL` (never through a
    /// symlink), written, fsynced and renamed over `path` (rename replaces
    /// a link itself, never its target), then the directory fsynced.
    pub fn store(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let tmp = with_suffix(path, ".tmp");
        let ctx = |e| Error::io(format!("writing checkpoint {}", path.display()), e);
        check_target(path).map_err(ctx)?;
        let mut f = create_temporary(&tmp)
            .map_err(|e| Error::io(format!("writing checkpoint {}", tmp.display()), e))?;
        f.write_all(serde_json::to_string(self).unwrap().as_bytes())
            .map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(ctx)?;
        sync_parent_dir(path).map_err(ctx)?;
        Ok(())
    }
}
