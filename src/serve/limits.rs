//! Size limits on what a client sends, so that no request can make the
//! service hold much memory for it.
//!
//! * The request target (path and query) is at most [`MAX_TARGET`] bytes
//!   (414 otherwise), and all header lines together at most
//!   [`MAX_HEADER_BYTES`] (431 otherwise). hyper refuses a request head
//!   past about 400 KiB before it gets here.
//! * A request to one of steward's own endpoints (the streams, metrics,
//!   health) may carry a body of at most [`MAX_BODY`] bytes, by its
//!   `Content-Length` (413 otherwise); they read no body. Requests passed
//!   to the gateway stream their bodies (uploads of any size) and are not
//!   limited here.
//!
//! Every refusal is a `text/plain` one-line reason.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest request target (path and query).
pub const MAX_TARGET: usize = 32 * 1024;
/// Most bytes of header lines (names, values, and 4 for `: ` and CRLF each).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest body of a request to a steward endpoint.
pub const MAX_BODY: u64 = 64 * 1024;

/// A one-line `text/plain` refusal, as steward's own endpoints answer.
pub fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    let mut text: String = reason.into();
    text.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain;charset=utf-8")],
        text,
    )
        .into_response()
}

/// Middleware: refuse an oversized request target or header section.
pub async fn check_head(req: Request, next: Next) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    if target > MAX_TARGET {
        return refuse(
            StatusCode::URI_TOO_LONG,
            format!(
                "steward serve: the request target is {target} bytes; the limit is {MAX_TARGET}"
            ),
        );
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "steward serve: the request headers are {headers} bytes; the limit is {MAX_HEADER_BYTES}"
            ),
        );
    }
    next.run(req).await
}

/// For a steward endpoint: the refusal of a declared body over
/// [`MAX_BODY`], if it is one.
pub fn body_refusal(req: &Request) -> Option<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
    match declared {
        Some(None) => Some(refuse(
            StatusCode::BAD_REQUEST,
            "steward serve: Content-Length is not a number",
        )),
        Some(Some(n)) if n > MAX_BODY => Some(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("steward serve: a body of {n} bytes; this endpoint takes at most {MAX_BODY} (it reads none)"),
        )),
        _ => None,
    }
}
