//! One log line per request, and the response metrics.
//!
//! The line is written when the response is finished with (its body sent
//! to the end, or dropped because the client went away), at `info` level
//! under the target `steward::serve::request`, with these fields:
//! `method`, `path` (path and query with every cap redacted, see
//! [`super::redact`]), `endpoint`, `status`, `head_ms` (time to the
//! response head), `duration_ms` (to the end of the body), `bytes` (body
//! bytes sent), `complete` (false when the body was cut short) and
//! `client` (the peer address). With `--log-format json` each is a JSON
//! object on its own line.

use super::counting::Counting;
use super::metrics::Metrics;
use super::redact;
use super::router::endpoint;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub async fn log(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = redact::target(
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    let endpoint = endpoint(&req);
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let resp = next.run(req).await;
    let head = start.elapsed();
    let status = resp.status().as_u16();
    metrics.response(endpoint, status, head);
    let (parts, body) = resp.into_parts();
    let body = Counting::new(
        body,
        Box::new(move |bytes, complete| {
            tracing::info!(
                target: "steward::serve::request",
                method = %method,
                path = %path,
                endpoint,
                status,
                head_ms = head.as_millis() as u64,
                duration_ms = start.elapsed().as_millis() as u64,
                bytes,
                complete,
                client = %client,
                "request"
            );
        }),
    );
    Response::from_parts(parts, Body::new(body))
}
