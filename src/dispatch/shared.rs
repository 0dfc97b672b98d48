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
//! with its own request. Nothing outlives the process: a dispatch resumed
//! after a crash checks again what it had not yet written.
//!
//! Memory is bounded: the cache keeps the answers of the most recent checks
//! up to a budget in bytes ([`CACHE_BUDGET`], about 40,000 answers of a
//! gateway), forgetting the oldest first (never one still being checked).
//! Accounts run at once, so an object two of them share is usually asked
//! for by both within that window; one asked for again after its answer
//! was forgotten is checked again (a second request, never a wrong
//! answer). Without the bound the cache held every answer of the round: a
//! million-object account would have kept one to two GB.

use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
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

type Slot = Arc<OnceCell<(CheckResults, Arc<str>)>>;

/// How many bytes of answers the cache keeps at most (see the module doc).
pub const CACHE_BUDGET: usize = 64 << 20;

/// The results of one dispatch round's recent checks, by object (see the
/// module doc).
pub struct CheckCache {
    slots: Mutex<Slots>,
    budget: usize,
    checked: std::sync::atomic::AtomicU64,
    reused: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Slots {
    by_key: HashMap<Key, Slot>,
    /// Answered slots, oldest first, with the bytes each holds.
    answered: VecDeque<(Key, Slot, usize)>,
    bytes: usize,
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
        })
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
    /// oldest answers forgotten while the cache is over its budget.
    fn answered(&self, key: Key, slot: Slot, bytes: usize) {
        // The key and the slot's handle count too.
        let bytes = bytes + std::mem::size_of::<Key>() + 64;
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.answered.push_back((key, slot, bytes));
        s.bytes += bytes;
        while s.bytes > self.budget {
            let Some((old, old_slot, b)) = s.answered.pop_front() else {
                break;
            };
            s.bytes -= b;
            // Only if the key still names that slot (a forgotten key asked
            // for again has a new one).
            if s.by_key
                .get(&old)
                .is_some_and(|cur| Arc::ptr_eq(cur, &old_slot))
            {
                s.by_key.remove(&old);
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
        use std::sync::atomic::Ordering::Relaxed;
        (self.checked.load(Relaxed), self.reused.load(Relaxed))
    }
}

/// One account's checks, through the shared cache.
pub struct SharedChecks {
    inner: Arc<dyn Backend>,
    cache: Arc<CheckCache>,
    /// Names the grid (and lease secret): accounts with equal `grid`s share.
    grid: Arc<str>,
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
        let mut mine = false;
        let (results, by) = slot
            .get_or_try_init(|| async {
                mine = true;
                let r = self.inner.check(cap, opts).await?;
                self.cache
                    .checked
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, BackendError>((r, self.account.clone()))
            })
            .await?;
        if mine {
            self.cache
                .answered(key, slot.clone(), results.approx_bytes());
        }
        if mine || **by == *self.account {
            return Ok(results.clone());
        }
        self.cache
            .reused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
}
