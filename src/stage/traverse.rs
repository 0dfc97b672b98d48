//! The traversal stage: from a root cap to one manifest unit per object.
//!
//! [`Traversal`] lists directories through a [`Backend`] with up to `jobs`
//! listings in flight, depth-first (a LIFO stack of directories to list, so
//! memory grows with depth and width of the frontier, not with the tree), and
//! hands each unit to a [`UnitSink`] as soon as its parent's listing is in.
//!
//! * Each unique object is emitted once: storage indexes are kept in a
//!   compact set (16 bytes each); a file or directory linked twice, or a
//!   cycle, is skipped the second time. LIT files and unknown nodes have no
//!   storage index and are emitted each time they are linked, as Tahoe does.
//! * A directory's unit is written when its listing completes; if the
//!   listing fails (unrecoverable, gateway error) the unit carries an `error`
//!   and the traversal goes on. Only an unreachable gateway stops the run.
//! * Children are visited in name order, as Tahoe's `deep_traverse` does.
//! * With a [`ManifestJournal`], the frontier, the seen set, the stats and
//!   the output length are committed together at a bounded interval, after
//!   the sink has made its units durable; a run killed at any moment resumes
//!   with nothing lost or repeated. When the in-memory stack grows past a
//!   limit, its oldest (deepest-buried) entries are dropped from memory after
//!   a commit and reloaded from the journal when the stack runs dry.

use crate::error::{Error, Result};
use crate::input::Committed;
use crate::journal::{Batch, DirTask, ManifestJournal, Progress};
use crate::stats::{Counted, DeepStats};
use crate::unit::{ObjectType, ObjectUnit, Unit, UnitError, UnitSink};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_backend::{Backend, BackendError, Child, ErrorCode, Listing, NodeType};
use steward_cap::{Authority, Cap};
use tokio::sync::watch;

/// How to traverse.
#[derive(Clone, Debug)]
pub struct TraverseOptions {
    /// Directory listings in flight.
    pub jobs: usize,
    /// The strongest cap written into units.
    pub caps: Authority,
    /// Commit at least this often (with a journal).
    pub commit_interval: Duration,
    /// Directories kept in memory before older ones are left in the journal.
    pub max_stack: usize,
}

impl Default for TraverseOptions {
    fn default() -> Self {
        TraverseOptions {
            jobs: 16,
            caps: Authority::Read,
            commit_interval: Duration::from_secs(1),
            max_stack: 10_000,
        }
    }
}

/// What a finished traversal found.
#[derive(Clone, Debug, Default)]
pub struct TraverseSummary {
    pub stats: DeepStats,
    /// Directories whose listing failed (their units carry an error).
    pub unlisted: u64,
    /// Child entries whose cap could not be parsed.
    pub bad_caps: u64,
    /// Whether the journal said the run had already finished.
    pub already_done: bool,
}

/// Live counters for a progress display.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraverseCounts {
    pub objects: u64,
    pub directories_listed: u64,
    pub pending: u64,
}

/// Build the unit for one object, writing no cap stronger than `caps`.
pub fn object_unit(
    object_type: ObjectType,
    path: Vec<String>,
    cap: &Cap,
    caps: Authority,
) -> ObjectUnit {
    let written = cap.weaken_to(caps);
    // Tahoe's get_repair_cap(): the verify cap of an immutable file (its
    // repairer needs no more), the write cap of a mutable file or directory,
    // nothing for literal objects, immutable directories and read-only
    // mutable objects. A write cap is written only when allowed.
    let repaircap = if cap.is_literal() || (cap.is_directory() && !cap.is_mutable()) {
        None
    } else if cap.is_mutable() {
        (caps == Authority::Write && cap.authority() == Authority::Write).then(|| cap.clone())
    } else {
        cap.to_verify_cap()
    };
    ObjectUnit {
        object_type,
        path,
        cap: written.map(|c| c.expose().to_string()).unwrap_or_default(),
        verifycap: cap
            .to_verify_cap()
            .map(|c| c.expose().to_string())
            .unwrap_or_default(),
        repaircap: repaircap
            .map(|c| c.expose().to_string())
            .unwrap_or_default(),
        storage_index: cap
            .storage_index()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        error: None,
        check_results: None,
        check_and_repair_results: None,
        repair: None,
    }
}

/// How an object counts in the deep-stats.
pub fn counted(cap: &Cap, listed_size: Option<u64>) -> Counted {
    if cap.is_directory() {
        Counted::Directory
    } else if cap.is_mutable() {
        Counted::MutableFile
    } else if cap.is_literal() {
        Counted::LiteralFile(cap.size().or(listed_size).unwrap_or(0))
    } else {
        Counted::ImmutableFile(cap.size().or(listed_size).unwrap_or(0))
    }
}

/// An identity for the root that does not reveal it: its storage index, or
/// for a literal root a hash of the cap.
pub fn root_identity(cap: &Cap) -> String {
    match cap.storage_index() {
        Some(si) => si.to_string(),
        None => steward_cap::base32::encode(&steward_cap::hash::tagged_hash(
            b"steward-root",
            cap.expose().as_bytes(),
            16,
        )),
    }
}

/// A traversal in progress.
pub struct Traversal {
    backend: Arc<dyn Backend>,
    opts: TraverseOptions,
    stack: Vec<DirTask>,
    /// Pending tasks with ids up to this are only in the journal.
    spilled_max: Option<u64>,
    seen: HashSet<[u8; 16]>,
    progress: Progress,
    batch: Batch,
    journal: Option<ManifestJournal>,
    bad_caps: u64,
    listed: u64,
    notify: Option<watch::Sender<Committed>>,
}

impl Traversal {
    /// Start or resume. With a journal holding an unfinished run, the state
    /// is reloaded from it; otherwise the root is the first task.
    pub fn new(
        backend: Arc<dyn Backend>,
        root: &Cap,
        opts: TraverseOptions,
        journal: Option<ManifestJournal>,
        resume: Option<Progress>,
    ) -> Result<Self> {
        let mut t = Traversal {
            backend,
            opts,
            stack: Vec::new(),
            spilled_max: None,
            seen: HashSet::new(),
            progress: Progress {
                next_id: 1,
                ..Default::default()
            },
            batch: Batch::default(),
            journal,
            bad_caps: 0,
            listed: 0,
            notify: None,
        };
        match (resume, &t.journal) {
            (Some(p), Some(j)) => {
                let seen = &mut t.seen;
                j.for_each_seen(|si| {
                    seen.insert(si);
                })?;
                t.progress = p;
                t.spilled_max = Some(u64::MAX >> 1);
                t.refill()?;
            }
            _ => {
                if let Some(si) = root.storage_index() {
                    t.seen.insert(si.0);
                }
                t.stack.push(DirTask {
                    id: 0,
                    cap: listing_cap(root, t.opts.caps),
                    path: vec![],
                });
            }
        }
        Ok(t)
    }

    /// Tell `notify` the output length after each commit, so that a stage of
    /// the same process can follow the output file as it grows.
    pub fn with_notify(mut self, notify: Option<watch::Sender<Committed>>) -> Self {
        self.notify = notify;
        self
    }

    /// Counts for a progress display.
    pub fn counts(&self) -> TraverseCounts {
        TraverseCounts {
            objects: self.progress.stats.objects(),
            directories_listed: self.listed,
            pending: self.stack.len() as u64,
        }
    }

    /// Reload pending directories left in the journal when the stack is empty.
    fn refill(&mut self) -> Result<()> {
        let (Some(max), Some(j)) = (self.spilled_max, &self.journal) else {
            return Ok(());
        };
        let limit = (self.opts.max_stack / 2).max(1);
        let tasks = j.load_frontier(max, limit)?;
        self.spilled_max = if tasks.len() < limit {
            None
        } else {
            tasks.first().map(|t| t.id.saturating_sub(1))
        };
        self.stack.extend(tasks);
        Ok(())
    }

    fn next_task(&mut self) -> Result<Option<DirTask>> {
        if self.stack.is_empty() {
            self.refill()?;
        }
        Ok(self.stack.pop())
    }

    /// Run to the end, or until `stop` turns true (then commit and return
    /// [`Error::interrupted`]). `on_progress` is called after each listing.
    pub async fn run(
        mut self,
        sink: &mut dyn UnitSink,
        mut stop: watch::Receiver<bool>,
        on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
    ) -> Result<TraverseSummary> {
        // A root that is a file, not a directory: one unit and the stats.
        let mut in_flight = FuturesUnordered::new();
        let mut last_commit = Instant::now();
        let mut since_commit = 0usize;
        loop {
            while in_flight.len() < self.opts.jobs.max(1) {
                let Some(task) = self.next_task()? else { break };
                let backend = self.backend.clone();
                // Spawned, so that a listing in flight completes (and gives
                // back its place at the gateway) even while this loop waits
                // for a full channel to the next stage: the next stage's
                // checks need those places.
                in_flight.push(super::Owned::spawn(async move {
                    let res = if task.cap.is_directory() {
                        backend.list_directory(&task.cap).await
                    } else {
                        Ok(Listing::default())
                    };
                    (task, res)
                }));
            }
            if in_flight.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => {
                    drop(in_flight);
                    self.commit(sink).await?;
                    return Err(Error::interrupted());
                }
                Some(done) = in_flight.next() => {
                    let (task, res) = done?;
                    if let Err(e) = &res {
                        if e.is_fatal() {
                            // Keep what is done; the directory stays in the frontier.
                            drop(in_flight);
                            self.commit(sink).await?;
                            return Err(Error::from(e.clone()));
                        }
                    }
                    self.finish_task(task, res, sink).await?;
                    since_commit += 1;
                    on_progress(self.counts());
                }
            }
            if since_commit >= 512 || last_commit.elapsed() >= self.opts.commit_interval {
                self.commit(sink).await?;
                since_commit = 0;
                last_commit = Instant::now();
            }
        }
        sink.emit(Unit::Stats(self.progress.stats.to_json()))
            .await?;
        self.progress.done = true;
        self.commit(sink).await?;
        Ok(TraverseSummary {
            stats: self.progress.stats.clone(),
            unlisted: self.progress.unlisted,
            bad_caps: self.bad_caps,
            already_done: false,
        })
    }

    async fn commit(&mut self, sink: &mut dyn UnitSink) -> Result<()> {
        let len = sink.sync().await?;
        if let Some(j) = &mut self.journal {
            self.progress.output_len = len;
            j.commit(&self.batch, &self.progress)?;
            if let Some(n) = &self.notify {
                let _ = n.send(Committed {
                    len,
                    done: self.progress.done,
                });
            }
            // Spill the bottom of a stack grown too large: those tasks are
            // committed, so the journal can give them back later.
            if self.stack.len() > self.opts.max_stack {
                let keep_from = self.stack.len() - self.opts.max_stack / 2;
                let spilled_top = self.stack[keep_from - 1].id;
                self.stack.drain(..keep_from);
                self.spilled_max =
                    Some(self.spilled_max.map_or(spilled_top, |m| m.max(spilled_top)));
            }
        }
        self.batch = Batch::default();
        Ok(())
    }

    async fn finish_task(
        &mut self,
        task: DirTask,
        res: std::result::Result<Listing, BackendError>,
        sink: &mut dyn UnitSink,
    ) -> Result<()> {
        let caps = self.opts.caps;
        let object_type = if task.cap.is_directory() {
            ObjectType::Directory
        } else {
            ObjectType::File
        };
        let mut unit = object_unit(object_type, task.path.clone(), &task.cap, caps);
        self.progress.stats.add(counted(&task.cap, None));
        self.batch.finished.push(task.id);
        let listing = match res {
            Ok(l) => l,
            Err(e) => {
                self.progress.unlisted += 1;
                unit.error = Some(UnitError::from(&e));
                sink.emit(Unit::Object(Box::new(unit))).await?;
                return Ok(());
            }
        };
        sink.emit(Unit::Object(Box::new(unit))).await?;
        if !task.cap.is_directory() {
            return Ok(());
        }
        self.listed += 1;
        self.progress
            .stats
            .enter_directory(listing.children.len(), listing.size);
        let mut children = listing.children;
        children.sort_by(|a, b| a.name.cmp(&b.name));
        let mut subdirs = Vec::new();
        for child in children {
            let mut path = task.path.clone();
            path.push(child.name.clone());
            if let Some(dir) = self.visit_child(child, path, sink).await? {
                subdirs.push(dir);
            }
        }
        // Push the last name first, so the first name is listed first (as
        // Tahoe's depth-first walk does), and number them in push order so
        // that ids always grow towards the top of the stack (spilling relies
        // on it).
        for (cap, path) in subdirs.into_iter().rev() {
            let id = self.progress.next_id;
            self.progress.next_id += 1;
            let task = DirTask { id, cap, path };
            if self.journal.is_some() {
                self.batch.added.push(task.clone());
            }
            self.stack.push(task);
        }
        Ok(())
    }

    /// Emit a file child, or return a directory child to be queued.
    async fn visit_child(
        &mut self,
        child: Child,
        path: Vec<String>,
        sink: &mut dyn UnitSink,
    ) -> Result<Option<(Cap, Vec<String>)>> {
        let caps = self.opts.caps;
        if child.node_type == NodeType::Unknown {
            // A cap this Tahoe does not know: passed through as Tahoe does,
            // but only in its read-only form unless write caps are allowed.
            let cap = match caps {
                Authority::Write => child.rw_uri.or(child.ro_uri),
                Authority::Read => child.ro_uri,
                Authority::Verify => None,
            };
            self.progress.stats.add(Counted::Unknown);
            sink.emit(Unit::Object(Box::new(ObjectUnit {
                object_type: ObjectType::Unknown,
                path,
                cap: cap.unwrap_or_default(),
                verifycap: String::new(),
                repaircap: String::new(),
                storage_index: String::new(),
                error: None,
                check_results: None,
                check_and_repair_results: None,
                repair: None,
            })))
            .await?;
            return Ok(None);
        }
        let text = match caps {
            Authority::Write => child.rw_uri.as_deref().or(child.ro_uri.as_deref()),
            _ => child.ro_uri.as_deref().or(child.rw_uri.as_deref()),
        };
        let parsed = text.map(Cap::parse);
        let cap = match parsed {
            Some(Ok(c)) => c,
            other => {
                let message = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "the listing gives no cap for this child".to_string(),
                };
                self.bad_caps += 1;
                self.progress.stats.add(Counted::Unknown);
                sink.emit(Unit::Object(Box::new(ObjectUnit {
                    object_type: if child.node_type == NodeType::Directory {
                        ObjectType::Directory
                    } else {
                        ObjectType::File
                    },
                    path,
                    cap: String::new(),
                    verifycap: String::new(),
                    repaircap: String::new(),
                    storage_index: String::new(),
                    error: Some(UnitError {
                        code: ErrorCode::BadCap.as_str().to_string(),
                        message,
                    }),
                    check_results: None,
                    check_and_repair_results: None,
                    repair: None,
                })))
                .await?;
                return Ok(None);
            }
        };
        if let Some(si) = cap.storage_index() {
            if !self.seen.insert(si.0) {
                return Ok(None);
            }
            self.batch.seen.push(si.0);
        }
        if cap.is_directory() {
            return Ok(Some((listing_cap(&cap, caps), path)));
        }
        self.progress.stats.add(counted(&cap, child.size));
        let unit = object_unit(ObjectType::File, path, &cap, caps);
        sink.emit(Unit::Object(Box::new(unit))).await?;
        Ok(None)
    }
}

/// The cap to list a directory with: its write cap when write caps are to
/// be written (so children come with theirs), else its read cap.
pub fn listing_cap(cap: &Cap, caps: Authority) -> Cap {
    if caps == Authority::Write {
        cap.clone()
    } else {
        cap.to_read_cap().unwrap_or_else(|| cap.clone())
    }
}

/// Whether a backend error should be written into a unit rather than stop
/// the run.
pub fn is_finding(e: &BackendError) -> bool {
    !e.is_fatal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_carry_no_more_authority_than_asked() {
        // A DIR2 write cap from Tahoe's test vectors is not needed here: a
        // LIT cap has no weaker form and no storage index.
        let lit = Cap::parse("URI:LIT:mfrgg").unwrap();
        let u = object_unit(ObjectType::File, vec!["a".into()], &lit, Authority::Read);
        assert_eq!(u.cap, "URI:LIT:mfrgg");
        assert_eq!(u.verifycap, "");
        assert_eq!(u.repaircap, "");
        assert_eq!(u.storage_index, "");
        let u = object_unit(ObjectType::File, vec![], &lit, Authority::Verify);
        assert_eq!(
            u.cap, "",
            "a LIT cap is its data: not written in verify mode"
        );
    }
}
