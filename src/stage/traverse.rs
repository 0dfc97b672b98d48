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

use crate::engine::StageCtx;
use crate::error::{Error, Result};
use crate::input::Committed;
use crate::stats::{counted, Counted, DeepStats};
use crate::store::{Batch, DirTask, StageKey, StageName, Store, TraversalProgress};
use crate::unit::{object_unit, ObjectType, ObjectUnit, Unit, UnitError, UnitSink};
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

/// Where a traversal keeps its state between commits: a store, and the
/// key of this traversal in it.
pub struct Journal {
    pub store: Arc<dyn Store>,
    pub run: String,
}

impl Journal {
    fn key(&self) -> StageKey<'_> {
        StageKey {
            run: &self.run,
            stage: StageName::Traverse,
        }
    }
}

/// A traversal in progress.
pub struct Traversal {
    backend: Arc<dyn Backend>,
    opts: TraverseOptions,
    stack: Vec<DirTask>,
    /// Pending tasks with ids up to this are only in the journal.
    spilled_max: Option<u64>,
    /// Tasks taken off the stack whose end is not committed yet (being
    /// listed, or listed since the last commit): still in the journal's
    /// frontier, so a refill must not take them again.
    taken: HashSet<u64>,
    seen: HashSet<[u8; 16]>,
    progress: TraversalProgress,
    batch: Batch,
    journal: Option<Journal>,
    listed: u64,
    notify: Option<watch::Sender<Committed>>,
}

impl Traversal {
    /// Start or resume. With a journal holding an unfinished run (`resume`
    /// is its committed progress), the state is reloaded from it; otherwise
    /// the root is the first task.
    pub async fn new(
        backend: Arc<dyn Backend>,
        root: &Cap,
        opts: TraverseOptions,
        journal: Option<Journal>,
        resume: Option<TraversalProgress>,
    ) -> Result<Self> {
        let mut t = Traversal {
            backend,
            opts,
            stack: Vec::new(),
            spilled_max: None,
            taken: HashSet::new(),
            seen: HashSet::new(),
            progress: TraversalProgress {
                next_id: 1,
                ..Default::default()
            },
            batch: Batch::default(),
            journal,
            listed: 0,
            notify: None,
        };
        match (resume, &t.journal) {
            (Some(p), Some(j)) => {
                let mut seen = HashSet::new();
                j.store
                    .seen(j.key(), &mut |si| {
                        seen.insert(si);
                    })
                    .await?;
                t.seen = seen;
                t.progress = p;
                t.spilled_max = Some(u64::MAX >> 1);
                t.refill().await?;
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

    /// Reload pending directories left in the journal when the stack is
    /// empty, leaving out those taken and not yet committed as done.
    async fn refill(&mut self) -> Result<()> {
        let (Some(max), Some(j)) = (self.spilled_max, &self.journal) else {
            return Ok(());
        };
        let limit = (self.opts.max_stack / 2).max(1);
        let tasks = j.store.frontier(j.key(), max, limit).await?;
        self.spilled_max = if tasks.len() < limit {
            None
        } else {
            tasks.first().and_then(|t| t.id.checked_sub(1))
        };
        let taken = &self.taken;
        self.stack
            .extend(tasks.into_iter().filter(|t| !taken.contains(&t.id)));
        Ok(())
    }

    async fn next_task(&mut self) -> Result<Option<DirTask>> {
        while self.stack.is_empty() && self.spilled_max.is_some() {
            self.refill().await?;
        }
        let task = self.stack.pop();
        if let (Some(t), Some(_)) = (&task, &self.journal) {
            self.taken.insert(t.id);
        }
        Ok(task)
    }

    /// Run to the end, or until the context's stop turns true (then commit
    /// and return [`Error::interrupted`]). The context's status follows the
    /// walk (objects, directories still to list).
    pub async fn run(mut self, sink: &mut dyn UnitSink, ctx: &StageCtx) -> Result<TraverseSummary> {
        let mut stop = ctx.stop.clone();
        let mut in_flight = FuturesUnordered::new();
        let mut last_commit = Instant::now();
        let mut since_commit = 0usize;
        ctx.status.set_objects(self.progress.stats.objects());
        loop {
            while in_flight.len() < self.opts.jobs.max(1) {
                let Some(task) = self.next_task().await? else {
                    break;
                };
                let backend = self.backend.clone();
                // Spawned, so that a listing in flight completes (and gives
                // back its place at the gateway) even while this loop waits
                // for a full channel to the next stage: the next stage's
                // checks need those places.
                in_flight.push(super::Owned::spawn(async move {
                    let res = if !task.cap.is_directory() {
                        Ok(Listing::default())
                    } else if task.cap.authority() == Authority::Verify {
                        Err(verify_cap_cannot_list())
                    } else {
                        backend.list_directory(&task.cap).await
                    };
                    (task, res)
                }));
            }
            if in_flight.is_empty() {
                break;
            }
            let done = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                Some(done) = in_flight.next() => Some(done),
            };
            let Some(done) = done else {
                drop(in_flight);
                self.commit(sink).await?;
                return Err(Error::interrupted());
            };
            let (task, res) = done?;
            if let Err(e) = &res {
                if e.is_fatal() {
                    // Keep what is done; the directory stays in the frontier.
                    drop(in_flight);
                    self.commit(sink).await?;
                    return Err(Error::from(e.clone()));
                }
                ctx.status.error(&e.message);
            }
            self.finish_task(task, res, sink).await?;
            since_commit += 1;
            ctx.status.set_objects(self.progress.stats.objects());
            ctx.status.set_queued(self.stack.len() as u64);
            if since_commit >= 512 || last_commit.elapsed() >= self.opts.commit_interval {
                self.commit(sink).await?;
                since_commit = 0;
                last_commit = Instant::now();
            }
        }
        sink.emit(Unit::Stats(self.progress.stats.to_json(), None))
            .await?;
        self.progress.done = true;
        self.commit(sink).await?;
        if let Some(j) = &self.journal {
            // A finished walk needs no frontier: its caps leave the disk.
            j.store.traversal_finish(j.key()).await?;
        }
        ctx.status.finish();
        Ok(TraverseSummary {
            stats: self.progress.stats.clone(),
            unlisted: self.progress.unlisted,
            bad_caps: self.progress.bad_caps,
            already_done: false,
        })
    }

    async fn commit(&mut self, sink: &mut dyn UnitSink) -> Result<()> {
        let len = sink.sync().await?;
        if let Some(j) = &self.journal {
            self.progress.output = len;
            j.store
                .traversal_commit(j.key(), &self.batch, &self.progress)
                .await?;
            for id in &self.batch.finished {
                self.taken.remove(id);
            }
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
                literal: false,
                built_from: Default::default(),
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
                self.progress.bad_caps += 1;
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
                    literal: false,
                    built_from: Default::default(),
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

/// Why a directory named by its verify cap (a root given as one) is not
/// listed: a verify cap can check shares, not read what they hold.
pub fn verify_cap_cannot_list() -> BackendError {
    BackendError::new(
        ErrorCode::InsufficientAuthority,
        "a verify cap cannot list a directory (it can check shares, not read them): give the directory's read or write cap",
    )
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
        assert!(u.literal, "and the unit says it is a literal object");
        assert!(!object_unit(ObjectType::File, vec![], &lit, Authority::Read).literal);
    }

    /// A tree of directories only, `fanout` wide and `depth` deep, one of
    /// them slow to list, counting how often each directory is listed.
    struct SlowTree {
        fanout: u32,
        depth: u32,
        listed: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    }

    fn dir_cap(path: &str) -> String {
        let key = steward_cap::hash::tagged_hash(b"k", path.as_bytes(), 16);
        let fp = steward_cap::hash::tagged_hash(b"f", path.as_bytes(), 32);
        format!(
            "URI:DIR2:{}:{}",
            steward_cap::base32::encode(&key),
            steward_cap::base32::encode(&fp)
        )
    }

    #[async_trait::async_trait]
    impl Backend for SlowTree {
        fn describe(&self) -> String {
            "slow tree".into()
        }
        fn supports(&self, _op: steward_backend::Operation) -> bool {
            true
        }
        fn for_tenant(&self, _t: steward_backend::Tenant) -> Arc<dyn Backend> {
            unreachable!()
        }
        async fn list_directory(&self, dir: &Cap) -> std::result::Result<Listing, BackendError> {
            // Directories are named by their path; find it by cap.
            let mut paths = vec![String::new()];
            let mut i = 0;
            let path = loop {
                let p = paths[i].clone();
                if Cap::parse(&dir_cap(&p)).unwrap().storage_index() == dir.storage_index() {
                    break p;
                }
                if p.matches('/').count() < self.depth as usize {
                    for c in 0..self.fanout {
                        paths.push(format!("{p}/d{c}"));
                    }
                }
                i += 1;
            };
            *self.listed.lock().unwrap().entry(path.clone()).or_default() += 1;
            // One directory is slow: the rest of the walk goes on (and
            // the stack spills and is refilled) while it is in flight.
            let ms = if path == "/d0" { 1500 } else { 2 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let children = if path.matches('/').count() < self.depth as usize {
                (0..self.fanout)
                    .map(|c| Child {
                        name: format!("d{c}"),
                        node_type: NodeType::Directory,
                        rw_uri: Some(dir_cap(&format!("{path}/d{c}"))),
                        ro_uri: None,
                        verify_uri: None,
                        size: None,
                        format: None,
                        mutable: Some(true),
                    })
                    .collect()
            } else {
                vec![]
            };
            Ok(Listing {
                children,
                size: None,
            })
        }
        async fn check(
            &self,
            _c: &Cap,
            _o: steward_backend::CheckOptions,
        ) -> std::result::Result<steward_backend::CheckResults, BackendError> {
            unreachable!()
        }
        async fn repair(
            &self,
            _c: &Cap,
            _o: steward_backend::CheckOptions,
        ) -> std::result::Result<steward_backend::RepairResults, BackendError> {
            unreachable!()
        }
    }

    struct Count(u64);
    #[async_trait::async_trait]
    impl UnitSink for Count {
        async fn emit(&mut self, _u: Unit) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
        async fn sync(&mut self) -> Result<u64> {
            Ok(self.0)
        }
    }

    /// Issue 9: with a stack that spills to the journal, a directory being
    /// listed (or listed since the last commit) was reloaded from the
    /// journal and listed again, its unit and stats counted twice.
    #[tokio::test]
    async fn a_spilled_stack_never_lists_a_directory_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(
                &dir.path().join("j"),
                crate::store::sqlite::Format::Journal,
            )
            .unwrap(),
        );
        let tree = Arc::new(SlowTree {
            fanout: 3,
            depth: 4,
            listed: Default::default(),
        });
        let root = Cap::parse(&dir_cap("")).unwrap();
        let opts = TraverseOptions {
            jobs: 4,
            caps: Authority::Read,
            commit_interval: Duration::ZERO,
            max_stack: 2,
        };
        let key = StageKey {
            run: "main",
            stage: StageName::Traverse,
        };
        let root_task = DirTask {
            id: 0,
            cap: root.clone(),
            path: vec![],
        };
        let p = TraversalProgress {
            next_id: 1,
            ..Default::default()
        };
        store
            .traversal_start(key, &root_task, root.storage_index().map(|s| s.0), &p)
            .await
            .unwrap();
        let journal = Journal {
            store: store.clone(),
            run: "main".into(),
        };
        let t = Traversal::new(tree.clone(), &root, opts, Some(journal), Some(p))
            .await
            .unwrap();
        let (_tx, stop) = watch::channel(false);
        let ctx = StageCtx::standalone("traverse", stop);
        let mut sink = Count(0);
        let summary = t.run(&mut sink, &ctx).await.unwrap();
        let dirs: u64 = (0..=4).map(|d| 3u64.pow(d)).sum();
        let listed = tree.listed.lock().unwrap();
        let twice: Vec<_> = listed.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "listed more than once: {twice:?}");
        assert_eq!(listed.len() as u64, dirs);
        assert_eq!(summary.stats.count_directories, dirs);
        assert_eq!(sink.0, dirs + 1, "every directory once, and the stats");
    }
}
