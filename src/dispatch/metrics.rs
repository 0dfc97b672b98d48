//! `--metrics-listen ADDR`: Prometheus text metrics while a dispatch runs,
//! read from the job table at each scrape (`GET /metrics`).
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
//! | `errors_by_code` | the same by error code (label `code`), once the run ends |
//! | `reused_checks` | checks answered by another account's check of a shared object |
//! | `accounts` | accounts by stage (label `stage`) |

use crate::store::jobs::{JobRow, Jobs};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;

/// The metrics text of the table's rows.
pub fn render(rows: &[JobRow]) -> String {
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
    for r in rows {
        if let Some(codes) = r
            .last_report
            .get("errors_by_code")
            .and_then(|v| v.as_object())
        {
            for (code, n) in codes {
                by_code
                    .get_or_create(&vec![("account", r.name.clone()), ("code", code.clone())])
                    .set(n.as_i64().unwrap_or(0));
            }
        }
    }
    registry.register("errors_by_code", "Errors of the last run, by code", by_code);
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
pub async fn serve(listener: tokio::net::TcpListener, jobs: Arc<dyn Jobs>) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let jobs = jobs.clone();
            async move {
                match jobs.jobs().await {
                    Ok(rows) => (
                        axum::http::StatusCode::OK,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render(&rows),
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
