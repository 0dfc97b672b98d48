//! Passing every other request to the gateway, unchanged, streamed both
//! ways.
//!
//! The method, the path and query (as the client wrote them: caps stay
//! escaped as they came) and the headers go to the gateway; its status,
//! headers and body come back. Bodies are streamed, never held whole, so
//! `tahoe put` and `tahoe get` of files of any size pass through in
//! constant memory, with their `Content-Length` kept. Redirects (Tahoe
//! answers some uploads with one) are passed back, not followed.
//!
//! Removed on the way, as a proxy must (RFC 9110, 7.6.1): the hop-by-hop
//! headers (`Connection` and those it names, `Keep-Alive`, `TE`,
//! `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`) and `Host`; and,
//! when the service checks bearer tokens, the client's `Authorization`
//! (the token is for steward, not for the gateway).
//!
//! A gateway that does not answer gives 502 with a one-line reason.

use super::counting::Counting;
use super::limits::refuse;
use super::metrics::Metrics;
use super::redact;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;

/// The gateway requests go to.
#[derive(Clone)]
pub struct Upstream {
    /// Base URL without its trailing slash.
    base: String,
    pub client: reqwest::Client,
    /// Drop the client's `Authorization` (it carries steward's token).
    strip_authorization: bool,
    metrics: Arc<Metrics>,
}

impl Upstream {
    pub fn new(
        base: &str,
        strip_authorization: bool,
        metrics: Arc<Metrics>,
    ) -> crate::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::Error::config(format!("cannot make an HTTP client: {e}")))?;
        Ok(Upstream {
            base: base.trim_end_matches('/').to_string(),
            client,
            strip_authorization,
            metrics,
        })
    }

    /// `path_and_query` (starting with `/`) at the gateway.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// The gateway's URL for messages (no password).
    pub fn describe(&self) -> String {
        redact::url(&self.base)
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The headers to pass on: all but hop-by-hop ones (and `extra`).
fn end_to_end(headers: &HeaderMap, extra: &[HeaderName]) -> HeaderMap {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name)
            || named_by_connection.iter().any(|n| n == name)
            || extra.contains(k)
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

/// Forward `req` to the gateway and stream its answer back.
pub async fn forward(up: &Upstream, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut drop_also = vec![header::HOST];
    if up.strip_authorization {
        drop_also.push(header::AUTHORIZATION);
    }
    // A request without a body goes without one (a streamed empty body
    // would be sent chunked, which a GET should not be).
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let headers = end_to_end(&parts.headers, &drop_also);
    let mut request = up
        .client
        .request(parts.method.clone(), up.url(pq))
        .headers(headers);
    if has_body {
        let metrics = up.metrics.clone();
        let upload = Counting::new(body, Box::new(move |n, _| metrics.proxied("to-gateway", n)));
        request = request.body(reqwest::Body::wrap_stream(
            Body::new(upload).into_data_stream(),
        ));
    }
    let sent = request.send().await;
    let answer = match sent {
        Ok(r) => r,
        Err(e) => {
            // reqwest's message names the URL: say it without caps.
            let why = if e.is_connect() {
                "could not be reached"
            } else if e.is_timeout() {
                "did not answer in time"
            } else {
                "failed"
            };
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("steward serve: the gateway {} {why}", up.describe()),
            );
        }
    };
    let status = answer.status();
    let headers = end_to_end(answer.headers(), &[]);
    let metrics = up.metrics.clone();
    let download = Counting::new(
        reqwest::Body::from(answer),
        Box::new(move |n, _| metrics.proxied("from-gateway", n)),
    );
    let mut resp = Response::new(Body::new(download));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("52428800"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        let out = end_to_end(&h, &[header::AUTHORIZATION]);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["content-length", "accept"]);
    }
}
