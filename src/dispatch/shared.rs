//! Objects shared by several accounts are checked once per dispatch round.
//!
//! Every account's checks go through a [`SharedChecks`] backend, which
//! looks the object up in a [`CheckCache`] the whole dispatch shares, keyed
//! by what makes two checks the same check: the grid (the account's backend
//! and its gateways or storage servers), the storage index, the check's
//! options, and, for a lease renewal, the lease secret (a lease is renewed
//! for one secret; another account's renewal is not this one's). The first
//! account to ask checks; any other asking meanwhile waits for that answer
//! rather than sending its own (in-flight dedup), and any asking later gets
//! it at once.
//!
//! A reused result is the checking account's, marked: its check results
//! carry one more key, `"reused-from": "<account>"`, beside Tahoe's own
//! (`storage-index`, `summary`, `results`). Tahoe's consumers read the keys
//! they know and ignore the others, so the unit keeps its format; a person
//! or a script can tell a reused result, and which account's output has the
//! check itself.
//!
//! A check that failed is not kept: the next account to ask tries again
//! with its own request.
//!
//! # Memory, and the answers kept on disk
//!
//! Memory is bounded: the cache keeps the answers of the most recent checks
//! up to a budget in bytes ([`CACHE_BUDGET`], about 40,000 answers of a
//! gateway; `--reuse-memory`), forgetting the oldest first (never one
//! still being checked). An answer the cache forgets is not lost for the
//! round: it goes to the state store ([`Jobs::keep_answers`]), keyed by
//! the round, the grid (a digest: the grid's description may name a lease
//! secret), the storage index and the options, with the checking account
//! and the results' JSON text. An object asked for after its answer left
//! memory is looked up there (only once the round has kept any answer on
//! disk: a round that fits in memory never reads the store), so it is
//! checked once in the whole round, however long. Answers are written in
//! batches of [`SPILL_BATCH`] (one commit each) and stay readable from
//! memory until their commit is done; an answer that came back from disk
//! is not written again.
//!
//! Disk cost: one row per object whose answer left memory, about the
//! answer's JSON text plus 400 bytes of key, index and page slack
//! (measured: 10,000 answers of 1,000 bytes, kept in batches, grew a
//! state file by 14.2 MB, 1.42 KB per object); a round that fits in the
//! memory budget writes nothing. Kept as Tahoe's text, uncompressed: a
//! reused answer is written out as it came.
//! A new round forgets the earlier rounds' rows ([`Jobs::start_round`]).
//!
//! # Across a resume
//!
//! The kept answers belong to the round ([`crate::store::jobs::Round`]'s
//! number). A dispatch killed (kill -9) and started again goes on with the
//! same round: answers kept on disk before the kill are reused, marked
//! with the account that checked them, as they would have been without
//! the kill; answers still in memory or in an unwritten batch are lost
//! and those objects are checked again (a second request, never a wrong
//! answer). A dispatch stopped cleanly (a signal) writes every answer it
//! holds before it ends. A new round has a new number and checks
//! everything again.

use crate::store::jobs::{AnswerKey, Jobs, KeptAnswer};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use steward_backend::{
    Backend, BackendError, CheckOptions, CheckResults, Listing, Operation, RepairResults, Tenant,
};
use steward_cap::{Authority, Cap};
use tokio::sync::OnceCell;

/// The grid and the lease secret a check is made for, and the object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    grid: Arc<str>,
    si: [u8; 16],
    verify: bool,
    add_lease: bool,
}

/// The grid's digest as the store keeps it.
fn grid_digest(grid: &str) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(grid.as_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl Key {
    fn answer_key(&self, digest: [u8; 16]) -> AnswerKey {
        AnswerKey {
            grid: digest,
            si: self.si,
            options: u8::from(self.verify) | (u8::from(self.add_lease) << 1),
        }
    }
}

/// Answers kept in the state store, for one round.
struct Disk {
    jobs: Arc<dyn Jobs>,
    round: u64,
    /// Answers that left memory, not yet committed (readable meanwhile).
    pending: Mutex<HashMap<AnswerKey, KeptAnswer>>,
    /// Whether the round keeps any answer on disk (else no lookup).
    any: AtomicBool,
    flushing: tokio::sync::Mutex<()>,
}

/// Answers written to the store in one commit.
pub const SPILL_BATCH: usize = 256;

type Slot = Arc<OnceCell<(CheckResults, Arc<str>)>>;

/// How many bytes of answers the cache keeps at most (see the module doc).
pub const CACHE_BUDGET: usize = 64 << 20;

/// The results of one dispatch round's recent checks, by object (see the
/// module doc).
pub struct CheckCache {
    slots: Mutex<Slots>,
    budget: usize,
    checked: AtomicU64,
    reused: AtomicU64,
    disk: Option<Disk>,
}

#[derive(Default)]
struct Slots {
    by_key: HashMap<Key, Slot>,
    /// Answered slots, oldest first, with the bytes each holds, the grid's
    /// digest, and whether the answer is on disk already.
    answered: VecDeque<Answered>,
    bytes: usize,
}

struct Answered {
    key: Key,
    slot: Slot,
    bytes: usize,
    digest: [u8; 16],
    on_disk: bool,
}

impl CheckCache {
    pub fn new() -> Arc<CheckCache> {
        Self::with_budget(CACHE_BUDGET)
    }

    /// A cache that keeps at most about `budget` bytes of answers.
    pub fn with_budget(budget: usize) -> Arc<CheckCache> {
        Arc::new(CheckCache {
            slots: Mutex::default(),
            budget,
            checked: Default::default(),
            reused: Default::default(),
            disk: None,
        })
    }

    /// A cache of `round` that keeps about `budget` bytes of answers in
    /// memory and the answers it forgets in `jobs` (see the module doc).
    pub async fn for_round(
        jobs: Arc<dyn Jobs>,
        round: u64,
        budget: usize,
    ) -> crate::error::Result<Arc<CheckCache>> {
        let (kept, _) = jobs.kept_answers(round).await?;
        Ok(Arc::new(CheckCache {
            slots: Mutex::default(),
            budget,
            checked: Default::default(),
            reused: Default::default(),
            disk: Some(Disk {
                jobs,
                round,
                pending: Mutex::default(),
                any: AtomicBool::new(kept > 0),
                flushing: tokio::sync::Mutex::new(()),
            }),
        }))
    }

    /// The answer the round keeps on disk (or is about to) for `key`.
    async fn kept_answer(&self, key: &Key, digest: [u8; 16]) -> Option<(CheckResults, Arc<str>)> {
        let disk = self.disk.as_ref()?;
        let ak = key.answer_key(digest);
        let found = disk
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ak)
            .cloned();
        let found = match found {
            Some(f) => Some(f),
            None if disk.any.load(Relaxed) => {
                // A store that fails to answer costs a second check, never
                // a wrong answer.
                disk.jobs.kept_answer(disk.round, &ak).await.ok().flatten()
            }
            None => None,
        }?;
        let results = CheckResults::from_slice(found.results.as_bytes()).ok()?;
        Some((results, found.account.into()))
    }

    /// Write the answers that left memory, once a batch is full (or all of
    /// them, with `all`).
    async fn flush(&self, all: bool) {
        let Some(disk) = &self.disk else { return };
        let full = || {
            let n = disk.pending.lock().unwrap_or_else(|e| e.into_inner()).len();
            n >= SPILL_BATCH || (all && n > 0)
        };
        if !full() {
            return;
        }
        let Ok(_one) = disk.flushing.try_lock() else {
            // Another flush is writing; these go with the next.
            return;
        };
        while full() {
            let batch: Vec<KeptAnswer> = disk
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .take(SPILL_BATCH)
                .cloned()
                .collect();
            // Not written (the store refused): dropped all the same, so
            // that memory stays bounded; those objects may be checked again.
            let _ = disk.jobs.keep_answers(disk.round, &batch).await;
            disk.any.store(true, Relaxed);
            let mut p = disk.pending.lock().unwrap_or_else(|e| e.into_inner());
            for a in &batch {
                p.remove(&a.key);
            }
        }
    }

    /// Write every answer held, in memory too (a dispatch that stops before
    /// its round ends: the resumed round reuses them).
    pub async fn keep_all(&self) {
        let Some(disk) = &self.disk else { return };
        {
            let s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let mut p = disk.pending.lock().unwrap_or_else(|e| e.into_inner());
            for a in s.answered.iter().filter(|a| !a.on_disk) {
                if let Some(kept) = to_kept(a) {
                    p.insert(kept.key, kept);
                }
            }
        }
        self.flush(true).await;
    }

    fn slot(&self, key: Key) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .entry(key)
            .or_default()
            .clone()
    }

    /// `slot` of `key` was answered with results of `bytes`: kept, and the
    /// oldest answers forgotten while the cache is over its budget (and
    /// written to disk, unless they are there already).
    fn answered(&self, key: Key, slot: Slot, bytes: usize, digest: [u8; 16], on_disk: bool) {
        // The key and the slot's handle count too.
        let bytes = bytes + std::mem::size_of::<Answered>() + 64;
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.answered.push_back(Answered {
            key,
            slot,
            bytes,
            digest,
            on_disk,
        });
        s.bytes += bytes;
        let mut spilled = vec![];
        while s.bytes > self.budget {
            let Some(old) = s.answered.pop_front() else {
                break;
            };
            s.bytes -= old.bytes;
            // Only if the key still names that slot (a forgotten key asked
            // for again has a new one).
            if s.by_key
                .get(&old.key)
                .is_some_and(|cur| Arc::ptr_eq(cur, &old.slot))
            {
                s.by_key.remove(&old.key);
            }
            if !old.on_disk {
                spilled.extend(to_kept(&old));
            }
        }
        drop(s);
        if let (Some(disk), false) = (&self.disk, spilled.is_empty()) {
            let mut p = disk.pending.lock().unwrap_or_else(|e| e.into_inner());
            for a in spilled {
                p.insert(a.key, a);
            }
        }
    }

    /// Answers kept, and the bytes they hold.
    pub fn kept(&self) -> (usize, usize) {
        let s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        (s.answered.len(), s.bytes)
    }

    /// Checks sent to the grid, and checks answered from another account's.
    pub fn counts(&self) -> (u64, u64) {
        (self.checked.load(Relaxed), self.reused.load(Relaxed))
    }
}

/// What the store keeps of an answered slot.
fn to_kept(a: &Answered) -> Option<KeptAnswer> {
    let (results, by) = a.slot.get()?;
    Some(KeptAnswer {
        key: a.key.answer_key(a.digest),
        account: by.to_string(),
        results: results.text().into_owned(),
    })
}

/// One account's checks, through the shared cache.
pub struct SharedChecks {
    inner: Arc<dyn Backend>,
    cache: Arc<CheckCache>,
    /// Names the grid (and lease secret): accounts with equal `grid`s share.
    grid: Arc<str>,
    digest: [u8; 16],
    account: Arc<str>,
}

impl SharedChecks {
    /// `grid` must name everything that makes a check's answer differ: the
    /// backend kind and its endpoints, and the lease secret when leases
    /// are renewed.
    pub fn new(
        inner: Arc<dyn Backend>,
        cache: Arc<CheckCache>,
        grid: &str,
        account: &str,
    ) -> SharedChecks {
        SharedChecks {
            inner,
            cache,
            grid: grid.into(),
            digest: grid_digest(grid),
            account: account.into(),
        }
    }
}

/// The account whose check a unit's results are, if another's.
pub fn reused_from(results: &CheckResults) -> Option<&str> {
    results.json().get(REUSED).and_then(|v| v.as_str())
}

/// The key a reused result carries.
pub const REUSED: &str = "reused-from";

#[async_trait]
impl Backend for SharedChecks {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn kind(&self, op: Operation) -> &'static str {
        self.inner.kind(op)
    }
    fn supports(&self, op: Operation) -> bool {
        self.inner.supports(op)
    }
    fn authority_for(&self, op: Operation) -> Authority {
        self.inner.authority_for(op)
    }
    fn for_tenant(&self, tenant: Tenant) -> Arc<dyn Backend> {
        Arc::new(SharedChecks {
            inner: self.inner.for_tenant(tenant),
            cache: self.cache.clone(),
            grid: self.grid.clone(),
            digest: self.digest,
            account: self.account.clone(),
        })
    }
    async fn list_directory(&self, dir: &Cap) -> Result<Listing, BackendError> {
        self.inner.list_directory(dir).await
    }
    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<CheckResults, BackendError> {
        let Some(si) = cap.storage_index() else {
            return self.inner.check(cap, opts).await;
        };
        let key = Key {
            grid: self.grid.clone(),
            si: si.0,
            verify: opts.verify,
            add_lease: opts.add_lease,
        };
        let slot = self.cache.slot(key.clone());
        // Whether this asker answered the slot, and whether from disk.
        let mut init = None;
        let (results, by) = slot
            .get_or_try_init(|| async {
                if let Some(kept) = self.cache.kept_answer(&key, self.digest).await {
                    init = Some(true);
                    return Ok(kept);
                }
                let r = self.inner.check(cap, opts).await?;
                init = Some(false);
                self.cache.checked.fetch_add(1, Relaxed);
                Ok::<_, BackendError>((r, self.account.clone()))
            })
            .await?;
        if let Some(from_disk) = init {
            self.cache.answered(
                key,
                slot.clone(),
                results.approx_bytes(),
                self.digest,
                from_disk,
            );
            self.cache.flush(false).await;
        }
        if **by == *self.account {
            return Ok(results.clone());
        }
        self.cache.reused.fetch_add(1, Relaxed);
        // The tree is built in a copy: the cache keeps the text alone.
        let mut json = results.clone().into_json();
        if let Some(o) = json.as_object_mut() {
            o.insert(REUSED.into(), serde_json::Value::String(by.to_string()));
        }
        CheckResults::from_json(json)
            .map_err(|e| BackendError::new(steward_backend::ErrorCode::BadResponse, e.to_string()))
    }
    async fn repair(&self, cap: &Cap, opts: CheckOptions) -> Result<RepairResults, BackendError> {
        self.inner.repair(cap, opts).await
    }
}

#[cfg(test)]
mod tests {
    //! The cache's logic on an in-memory backend (the integration tests
    //! count the checks at a proxy in front of a real grid).
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting(AtomicU64);

    #[async_trait]
    impl Backend for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn supports(&self, _op: Operation) -> bool {
            true
        }
        fn for_tenant(&self, _t: Tenant) -> Arc<dyn Backend> {
            unreachable!()
        }
        async fn list_directory(&self, _d: &Cap) -> Result<Listing, BackendError> {
            unreachable!()
        }
        async fn check(&self, _c: &Cap, _o: CheckOptions) -> Result<CheckResults, BackendError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if n == 0 {
                // The first check fails: not kept, the next asker checks.
                return Err(BackendError::new(
                    steward_backend::ErrorCode::GatewayUnreachable,
                    "down",
                ));
            }
            Ok(CheckResults::from_json(serde_json::json!({
                "storage-index": "x", "summary": "Healthy",
                "results": {"healthy": true, "recoverable": true}
            }))
            .unwrap())
        }
        async fn repair(&self, _c: &Cap, _o: CheckOptions) -> Result<RepairResults, BackendError> {
            unreachable!()
        }
    }

    fn file(n: u8) -> Cap {
        Cap::parse(&format!(
            "URI:CHK:{}:{}:2:5:1000",
            steward_cap::base32::encode(&[n; 16]),
            steward_cap::base32::encode(&[n; 32])
        ))
        .unwrap()
    }

    /// The `i`th of many files.
    fn many(i: usize) -> Cap {
        let mut si = [0u8; 16];
        si[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Cap::parse(&format!(
            "URI:CHK:{}:{}:2:5:1000",
            steward_cap::base32::encode(&si),
            steward_cap::base32::encode(&[1; 32])
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn a_shared_object_is_checked_once_and_marked_where_reused() {
        let inner = Arc::new(Counting(AtomicU64::new(0)));
        let cache = CheckCache::new();
        let a = SharedChecks::new(inner.clone(), cache.clone(), "grid1", "alice");
        let b = SharedChecks::new(inner.clone(), cache.clone(), "grid1", "bob");
        let other_grid = SharedChecks::new(inner.clone(), cache.clone(), "grid2", "carol");
        let o = CheckOptions::default();
        // A failure is not kept.
        assert!(a.check(&file(1), o).await.is_err());
        // Two at once: one request.
        let f1 = file(1);
        let (ra, rb) = tokio::join!(a.check(&f1, o), b.check(&f1, o));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        let marks = [reused_from(&ra), reused_from(&rb)];
        assert!(
            marks == [None, Some("alice")] || marks == [Some("bob"), None],
            "exactly one is marked, with the checker's name: {marks:?}"
        );
        // Later, and the checker itself again: no request; the checker's
        // own result is not marked.
        let checker = if marks[0].is_none() { &a } else { &b };
        assert!(reused_from(&checker.check(&file(1), o).await.unwrap()).is_none());
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        // Another grid, or other options: checked again.
        other_grid.check(&file(1), o).await.unwrap();
        let lease = CheckOptions {
            add_lease: true,
            verify: false,
        };
        a.check(&file(1), lease).await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 4);
        assert_eq!(cache.counts(), (3, 1));
    }

    #[tokio::test]
    async fn the_cache_keeps_recent_answers_within_its_budget() {
        let inner = Arc::new(Counting(AtomicU64::new(0)));
        let o = CheckOptions::default();
        // Room for about three answers.
        let one = {
            let probe = CheckCache::new();
            let a = SharedChecks::new(inner.clone(), probe.clone(), "g", "alice");
            assert!(a.check(&file(200), o).await.is_err()); // the first fails
            a.check(&file(200), o).await.unwrap();
            probe.kept().1
        };
        let cache = CheckCache::with_budget(3 * one + one / 2);
        let a = SharedChecks::new(inner.clone(), cache.clone(), "g", "alice");
        let b = SharedChecks::new(inner.clone(), cache.clone(), "g", "bob");
        let asked = || inner.0.load(Ordering::SeqCst);
        let before = asked();
        for n in 1..=10 {
            a.check(&file(n), o).await.unwrap();
            let (count, bytes) = cache.kept();
            assert!(count <= 3 && bytes <= 3 * one + one / 2, "{count} {bytes}");
        }
        assert_eq!(asked() - before, 10);
        // The recent ones are reused; the oldest were forgotten and are
        // checked again.
        assert_eq!(
            reused_from(&b.check(&file(10), o).await.unwrap()),
            Some("alice")
        );
        assert_eq!(asked() - before, 10);
        assert!(reused_from(&b.check(&file(1), o).await.unwrap()).is_none());
        assert_eq!(asked() - before, 11);
        assert_eq!(cache.kept().0, 3);
    }

    /// An answer memory forgot is kept in the store for the round: the
    /// object is still checked once, by a new process of the same round
    /// too; a new round checks again.
    #[tokio::test]
    async fn answers_memory_forgets_are_kept_on_disk_for_the_round() {
        use crate::store::sqlite::{Format, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Jobs> =
            Arc::new(SqliteStore::open(&dir.path().join("state"), Format::State).unwrap());
        let inner = Arc::new(Counting(AtomicU64::new(1))); // no failure
        let asked = || inner.0.load(Ordering::SeqCst) - 1;
        let o = CheckOptions::default();
        // Room for no answer at all: each leaves memory at once.
        let cache = CheckCache::for_round(store.clone(), 1, 1).await.unwrap();
        let a = SharedChecks::new(inner.clone(), cache.clone(), "g", "alice");
        let b = SharedChecks::new(inner.clone(), cache.clone(), "g", "bob");
        let n = SPILL_BATCH + 10;
        for i in 0..n {
            a.check(&many(i), o).await.unwrap();
        }
        assert_eq!(asked(), n as u64);
        assert_eq!(cache.kept().0, 0, "nothing held in memory");
        // A batch went to disk, the rest is pending: both are reused.
        assert_eq!(store.kept_answers(1).await.unwrap().0, SPILL_BATCH as u64);
        for i in 0..n {
            let r = b.check(&many(i), o).await.unwrap();
            assert_eq!(reused_from(&r), Some("alice"), "{i}");
            // The checker's own answer comes back unmarked.
            assert!(reused_from(&a.check(&many(i), o).await.unwrap()).is_none());
        }
        assert_eq!(asked(), n as u64, "each checked once");
        // Other options: another check.
        let lease = CheckOptions {
            add_lease: true,
            verify: false,
        };
        b.check(&many(0), lease).await.unwrap();
        assert_eq!(asked(), n as u64 + 1);
        // A clean stop keeps what is pending; a new process in the same
        // round reuses it all.
        cache.keep_all().await;
        assert_eq!(store.kept_answers(1).await.unwrap().0, n as u64 + 1);
        let again = CheckCache::for_round(store.clone(), 1, CACHE_BUDGET)
            .await
            .unwrap();
        let c = SharedChecks::new(inner.clone(), again.clone(), "g", "carol");
        for i in 0..n {
            let r = c.check(&many(i), o).await.unwrap();
            assert_eq!(reused_from(&r), Some("alice"));
        }
        assert_eq!(asked(), n as u64 + 1);
        // Another grid, or another round: checked again.
        let other = SharedChecks::new(inner.clone(), again.clone(), "g2", "carol");
        other.check(&many(0), o).await.unwrap();
        assert_eq!(asked(), n as u64 + 2);
        let next = CheckCache::for_round(store.clone(), 2, 1).await.unwrap();
        let c2 = SharedChecks::new(inner.clone(), next, "g", "carol");
        assert!(reused_from(&c2.check(&many(0), o).await.unwrap()).is_none());
        assert_eq!(asked(), n as u64 + 3);
    }

    /// A failed check is never kept, on disk either.
    #[tokio::test]
    async fn a_failed_check_is_not_kept_on_disk() {
        use crate::store::sqlite::{Format, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Jobs> =
            Arc::new(SqliteStore::open(&dir.path().join("state"), Format::State).unwrap());
        let inner = Arc::new(Counting(AtomicU64::new(0))); // the first fails
        let cache = CheckCache::for_round(store.clone(), 1, 1).await.unwrap();
        let a = SharedChecks::new(inner.clone(), cache.clone(), "g", "alice");
        assert!(a.check(&file(1), CheckOptions::default()).await.is_err());
        cache.keep_all().await;
        assert_eq!(store.kept_answers(1).await.unwrap().0, 0);
    }
}
