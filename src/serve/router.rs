//! Which handler answers a request, and the layers every request passes.
//!
//! ```text
//! request -> request_log -> limits -> access -> GET /steward/v1/metrics
//!                                              GET /steward/v1/healthz
//!                                              /steward/v1/operations[/ID[/units]] (api)
//!                                              /uri/...?t=stream-manifest|stream-deep-check
//!                                              anything else: the gateway (proxy)
//! ```
//!
//! The log layer is outermost so that refusals (bad token, oversized
//! headers) are logged and counted too.

use super::access::{self, Access};
use super::api;
use super::durable::Durable;
use super::metrics::Metrics;
use super::operation::Operations;
use super::proxy::{self, Upstream};
use super::tahoe_stream;
use super::{health, limits, request_log};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// What the handlers share.
pub struct App {
    pub ops: Operations,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    /// Operations that survive the connection (with `--state DIR`).
    pub durable: Option<Arc<Durable>>,
}

pub const METRICS_PATH: &str = "/steward/v1/metrics";
pub const HEALTHZ_PATH: &str = "/steward/v1/healthz";
pub const OPERATIONS_PATH: &str = "/steward/v1/operations";

/// The endpoint a request goes to, for metrics and logs.
pub fn endpoint(req: &Request) -> &'static str {
    let path = req.uri().path();
    if path == METRICS_PATH {
        return "metrics";
    }
    if path == HEALTHZ_PATH {
        return "healthz";
    }
    if let Some(rest) = path.strip_prefix(OPERATIONS_PATH) {
        if rest.is_empty() || rest.starts_with('/') {
            return if rest.ends_with("/units") {
                "operation-units"
            } else {
                "operations"
            };
        }
    }
    match tahoe_stream::wanted(req.method(), path, req.uri().query()) {
        Some(s) => s.endpoint(),
        None => "proxy",
    }
}

async fn metrics(State(app): State<Arc<App>>, req: Request) -> Response {
    if let Some(r) = limits::body_refusal(&req) {
        return r;
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(app): State<Arc<App>>, req: Request) -> Response {
    if let Some(r) = limits::body_refusal(&req) {
        return r;
    }
    health::healthz(&app.upstream).await
}

async fn fallback(State(app): State<Arc<App>>, req: Request) -> Response {
    match tahoe_stream::wanted(req.method(), req.uri().path(), req.uri().query()) {
        Some(which) => tahoe_stream::handle(&app.ops, &app.upstream, which, req).await,
        None => proxy::forward(&app.upstream, req).await,
    }
}

/// The whole service.
pub fn router(app: Arc<App>, access: Access) -> Router {
    let metrics = app.metrics.clone();
    Router::new()
        .route(METRICS_PATH, get(self::metrics))
        .route(HEALTHZ_PATH, get(healthz))
        .route(OPERATIONS_PATH, post(api::create).get(api::list))
        .route(
            "/steward/v1/operations/:id",
            get(api::status).delete(api::cancel),
        )
        .route("/steward/v1/operations/:id/units", get(api::units))
        .fallback(fallback)
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(access, access::check))
        .layer(axum::middleware::from_fn(limits::check_head))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            request_log::log,
        ))
}
