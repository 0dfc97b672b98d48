//! `GET /steward/v1/healthz`: whether the gateway answers.
//!
//! Asks the gateway for its welcome page as JSON (`GET /?t=json`, at most
//! [`PROBE_TIMEOUT`]) and answers 200 with
//! `{"status": "ok", "gateway": "reachable", "servers-connected": N,
//! "servers-known": M}`, or 503 with `{"status": "unavailable", "gateway":
//! "unreachable", "reason": "..."}` when the gateway cannot be reached or
//! answers something else.

use super::proxy::Upstream;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// How long the probe waits for the gateway.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn healthz(up: &Upstream) -> Response {
    let answer = up
        .client
        .get(up.url("/?t=json"))
        .timeout(PROBE_TIMEOUT)
        .send()
        .await;
    let unavailable = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "gateway": "unreachable", "reason": reason})),
        )
            .into_response()
    };
    let r = match answer {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_timeout() {
                "did not answer in time"
            } else {
                "could not be reached"
            };
            return unavailable(format!("the gateway {} {why}", up.describe()));
        }
    };
    if !r.status().is_success() {
        return unavailable(format!(
            "the gateway {} answered {}",
            up.describe(),
            r.status()
        ));
    }
    let welcome: Value = r.json().await.unwrap_or(Value::Null);
    let servers = welcome
        .get("servers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let connected = servers
        .iter()
        .filter(|s| {
            s.get("connection_status")
                .and_then(Value::as_str)
                .is_some_and(|c| c.starts_with("Connected") || c.starts_with("connected"))
        })
        .count();
    (
        StatusCode::OK,
        Json(json!({
            "status": "ok",
            "gateway": "reachable",
            "servers-connected": connected,
            "servers-known": servers.len(),
        })),
    )
        .into_response()
}
