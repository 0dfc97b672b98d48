//! `--metrics-listen ADDR`: Prometheus text metrics while a dispatch runs,
//! read from the job table at each scrape (`GET /metrics`), and from this
//! process's [`LiveErrors`] for the accounts it works on (fresher than the
//! table, which a worker updates every few seconds).
//!
//! Written with `prometheus-client`, as `steward serve`'s metrics. Series,
//! all prefixed `steward_dispatch_`, each per account (label `account`) and
//! in total (the same name with `_all`, no label):
//!
//! | metric | meaning |
//! |---|---|
//! | `objects_found` | objects the manifest found |
//! | `objects_checked` | objects checked (units written by the check stage) |
//! | `unhealthy`, `repaired`, `unrecoverable` | the account's findings (known once its run ends) |
//! | `errors` | objects whose check or repair failed, directories not listed |
//! | `errors_by_code` | failed requests by error code (label `code`), as they happen; once the run ends, the final report's objects with an error by code |
//! | `reused_checks` | checks answered by another account's check of a shared object |
//! | `accounts` | accounts by stage (label `stage`) |

use crate::store::jobs::{JobRow, Jobs};
use async_trait::async_trait;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use steward_backend::{
    Backend, BackendError, CheckOptions, CheckResults, Listing, Operation, RepairResults, Tenant,
};
use steward_cap::{Authority, Cap};

type Labels = Vec<(&'static str, String)>;

/// Failed requests by account and error code, counted as they fail (by
/// [`CountErrors`]), for the accounts this process works on.
#[derive(Debug, Default)]
pub struct LiveErrors(Mutex<HashMap<String, BTreeMap<String, u64>>>);

impl LiveErrors {
    /// `account` starts (or resumes) with `base` counted already.
    pub fn start(&self, account: &str, base: BTreeMap<String, u64>) {
        self.lock().insert(account.to_string(), base);
    }

    /// One more failed request of `account`.
    pub fn add(&self, account: &str, code: &str) {
        *self
            .lock()
            .entry(account.to_string())
            .or_default()
            .entry(code.to_string())
            .or_default() += 1;
    }

    /// `account`'s counts, if this process counts them.
    pub fn of(&self, account: &str) -> Option<BTreeMap<String, u64>> {
        self.lock().get(account).cloned()
    }

    /// `account` ended here: the table has its figures.
    pub fn end(&self, account: &str) {
        self.lock().remove(account);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, u64>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One account's requests, each failure counted in [`LiveErrors`].
pub struct CountErrors {
    pub inner: Arc<dyn Backend>,
    pub live: Arc<LiveErrors>,
    pub account: Arc<str>,
}

impl CountErrors {
    fn counted<T>(&self, r: Result<T, BackendError>) -> Result<T, BackendError> {
        if let Err(e) = &r {
            self.live.add(&self.account, e.code.as_str());
        }
        r
    }
}

#[async_trait]
impl Backend for CountErrors {
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
        Arc::new(CountErrors {
            inner: self.inner.for_tenant(tenant),
            live: self.live.clone(),
            account: self.account.clone(),
        })
    }
    async fn list_directory(&self, dir: &Cap) -> Result<Listing, BackendError> {
        self.counted(self.inner.list_directory(dir).await)
    }
    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<CheckResults, BackendError> {
        self.counted(self.inner.check(cap, opts).await)
    }
    async fn repair(&self, cap: &Cap, opts: CheckOptions) -> Result<RepairResults, BackendError> {
        self.counted(self.inner.repair(cap, opts).await)
    }
}

/// The metrics text of the table's rows, with `live` counts where this
/// process has them.
pub fn render(rows: &[JobRow], live: &LiveErrors) -> String {
    let mut registry = Registry::with_prefix("steward_dispatch");
    let per_account =
        |registry: &mut Registry, name: &str, help: &str, f: &dyn Fn(&JobRow) -> u64| {
            let fam = Family::<Labels, Gauge>::default();
            let all = Gauge::<i64>::default();
            let mut sum = 0;
            for r in rows {
                let v = f(r);
                sum += v;
                fam.get_or_create(&vec![("account", r.name.clone())])
                    .set(v as i64);
            }
            all.set(sum as i64);
            registry.register(name, help, fam);
            registry.register(format!("{name}_all"), format!("{help}, all accounts"), all);
        };
    per_account(
        &mut registry,
        "objects_found",
        "Objects the manifest found",
        &|r| r.progress.counts.objects,
    );
    per_account(&mut registry, "objects_checked", "Objects checked", &|r| {
        r.progress.counts.checked
    });
    per_account(&mut registry, "unhealthy", "Unhealthy objects", &|r| {
        r.progress.counts.unhealthy
    });
    per_account(&mut registry, "repaired", "Objects repaired", &|r| {
        r.progress.counts.repaired
    });
    per_account(
        &mut registry,
        "unrecoverable",
        "Unrecoverable objects",
        &|r| r.progress.counts.unrecoverable,
    );
    per_account(
        &mut registry,
        "errors",
        "Objects whose check or repair failed, directories not listed",
        &|r| r.progress.counts.errors,
    );
    per_account(
        &mut registry,
        "reused_checks",
        "Checks answered by another account's check of a shared object",
        &|r| r.progress.counts.reused,
    );
    let by_code = Family::<Labels, Gauge>::default();
    let by_code_all = Family::<Labels, Gauge>::default();
    for r in rows {
        let codes = live
            .of(&r.name)
            .unwrap_or_else(|| r.progress.errors_by_code.clone());
        for (code, n) in codes {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            by_code
                .get_or_create(&vec![("account", r.name.clone()), ("code", code.clone())])
                .set(n);
            by_code_all.get_or_create(&vec![("code", code)]).inc_by(n);
        }
    }
    registry.register(
        "errors_by_code",
        "Failed requests by error code (at the end: objects with an error, by code)",
        by_code,
    );
    registry.register(
        "errors_by_code_all",
        "Failed requests by error code, all accounts",
        by_code_all,
    );
    let stages = Family::<Labels, Gauge>::default();
    for r in rows {
        stages
            .get_or_create(&vec![("stage", r.progress.stage.as_str().to_string())])
            .inc();
    }
    registry.register("accounts", "Accounts by stage", stages);
    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    out
}

/// Parse `--metrics-listen`: `HOST:PORT`, or a port alone (on loopback).
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not an address: give PORT (on loopback) or HOST:PORT"))
}

/// Serve the metrics of `jobs` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, jobs: Arc<dyn Jobs>, live: Arc<LiveErrors>) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let jobs = jobs.clone();
            let live = live.clone();
            async move {
                match jobs.jobs().await {
                    Ok(rows) => (
                        axum::http::StatusCode::OK,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render(&rows, &live),
                    ),
                    Err(e) => (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; charset=utf-8",
                        )],
                        e.message,
                    ),
                }
            }
        }),
    );
    let _ = axum::serve(listener, app).await;
}
