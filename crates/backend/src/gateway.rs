//! The Tahoe-LAFS web API client: one or more gateway nodes of the same grid.
//!
//! Every request goes to the least busy gateway that is not set aside. A
//! transient failure (connection refused or reset, a timeout, HTTP 502, 503 or
//! 504) sets that gateway aside for a while (doubling with each consecutive
//! failure, up to a minute) and the request is retried, on another gateway if
//! one is up, else after an exponential backoff. Other answers are final: a
//! 410 means the object is unrecoverable, 405 that the cap is too weak, any
//! other 4xx or a 500 is reported for that object and never retried.
//!
//! The calls used are those of `docs/frontends/webapi.rst`:
//! `GET /uri/$DIRCAP?t=json`, `POST /uri/$CAP?t=check&output=JSON` with
//! `verify`, `add-lease` and `repair`, and the NDJSON streams
//! `POST /uri/$DIRCAP?t=stream-manifest` and `?t=stream-deep-check`.

use crate::pace::{Pace, RequestKind};
use crate::{Backend, BackendError, CheckOptions, Child, ErrorCode, Listing, NodeType, Operation};
use async_trait::async_trait;
use serde_json::Value;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use steward_cap::Cap;

/// How to reach the gateways and how patient to be with them.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Base URLs (`http://127.0.0.1:3456/`), all of the same grid.
    pub urls: Vec<String>,
    /// Time allowed for one request (a verify or repair of a large file can
    /// take minutes).
    pub timeout: Duration,
    /// Attempts after the first for a transient failure.
    pub retries: u32,
    /// First backoff delay; it doubles with each attempt, up to 30 s.
    pub backoff: Duration,
    /// Requests in flight to one gateway at most.
    pub max_in_flight: usize,
    /// Find the best number of requests in flight below `max_in_flight`
    /// (see [`crate::pace`]); when false, always `max_in_flight`.
    pub adaptive: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            urls: vec![],
            timeout: Duration::from_secs(600),
            retries: 6,
            backoff: Duration::from_millis(500),
            max_in_flight: 64,
            adaptive: true,
        }
    }
}

struct Endpoint {
    base: String,
    pace: Pace,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    down_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn is_up(&self, now: Instant) -> bool {
        match *self.down_until.lock().unwrap() {
            Some(t) => t <= now,
            None => true,
        }
    }

    fn set_aside(&self) {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let secs = (1u64 << n.min(6)).min(60);
        *self.down_until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(secs));
    }

    fn mark_ok(&self) {
        if self.consecutive_failures.swap(0, Ordering::Relaxed) != 0 {
            *self.down_until.lock().unwrap() = None;
        }
    }
}

/// Decrements an endpoint's in-flight count when a request ends, however it ends.
struct InFlight<'a>(&'a Endpoint);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client for one or more gateways of one grid.
pub struct Gateway {
    endpoints: Vec<Endpoint>,
    client: reqwest::Client,
    stream_client: reqwest::Client,
    opts: GatewayOptions,
}

/// One line of a gateway's NDJSON stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// A JSON unit.
    Unit(Value),
    /// An `ERROR:` line: the gateway stopped the stream. The text is the first
    /// line, with caps redacted; the Python traceback that follows is dropped.
    Error(String),
}

/// Reads a gateway stream line by line; see [`Gateway::stream`].
pub struct StreamReader {
    response: reqwest::Response,
    buf: Vec<u8>,
    done: bool,
    read_timeout: Duration,
}

impl StreamReader {
    /// The next unit or error line, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Result<StreamItem, BackendError>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if let Some(rest) = line.strip_prefix("ERROR:") {
                    // Everything after is traceback: stop here.
                    self.done = true;
                    self.buf.clear();
                    return Some(Ok(StreamItem::Error(redact_caps(rest.trim()))));
                }
                return Some(match serde_json::from_str::<Value>(line) {
                    Ok(v) => Ok(StreamItem::Unit(v)),
                    Err(e) => Err(BackendError::new(
                        ErrorCode::BadResponse,
                        format!("gateway stream line is not JSON ({e})"),
                    )),
                });
            }
            if self.done {
                if self.buf.is_empty() {
                    return None;
                }
                let rest = std::mem::take(&mut self.buf);
                return Some(Err(BackendError::new(
                    ErrorCode::BadResponse,
                    format!(
                        "gateway stream ended in the middle of a line ({} bytes without newline)",
                        rest.len()
                    ),
                )));
            }
            match tokio::time::timeout(self.read_timeout, self.response.chunk()).await {
                Err(_) => {
                    self.done = true;
                    return Some(Err(BackendError::new(
                        ErrorCode::GatewayTimeout,
                        "gateway stream stalled",
                    )));
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Some(Err(BackendError::new(
                        ErrorCode::GatewayUnreachable,
                        format!("gateway stream broke: {}", describe_reqwest(&e)),
                    )));
                }
                Ok(Ok(None)) => self.done = true,
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
            }
        }
    }
}

impl Gateway {
    /// A client for the given gateways. Fails only for unusable URLs.
    pub fn new(opts: GatewayOptions) -> Result<Self, BackendError> {
        if opts.urls.is_empty() {
            return Err(BackendError::new(
                ErrorCode::GatewayUnreachable,
                "no gateway given: pass --gateway URL, set STEWARD_GATEWAY, or point --node-directory at a Tahoe node",
            ));
        }
        let mut endpoints = Vec::new();
        for u in &opts.urls {
            let parsed = reqwest::Url::parse(u).map_err(|e| {
                BackendError::new(
                    ErrorCode::GatewayUnreachable,
                    format!("gateway URL {u:?} is not a URL ({e}): give it as http://HOST:PORT/"),
                )
            })?;
            if parsed.scheme() != "http" && parsed.scheme() != "https" {
                return Err(BackendError::new(
                    ErrorCode::GatewayUnreachable,
                    format!("gateway URL {u:?} must start with http:// or https://"),
                ));
            }
            let mut base = parsed.to_string();
            if !base.ends_with('/') {
                base.push('/');
            }
            endpoints.push(Endpoint {
                base,
                pace: Pace::new(opts.max_in_flight, opts.adaptive),
                in_flight: AtomicUsize::new(0),
                consecutive_failures: AtomicU32::new(0),
                down_until: Mutex::new(None),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| BackendError::new(ErrorCode::BadResponse, e.to_string()))?;
        let stream_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| BackendError::new(ErrorCode::BadResponse, e.to_string()))?;
        Ok(Gateway {
            endpoints,
            client,
            stream_client,
            opts,
        })
    }

    /// The gateways' base URLs.
    pub fn urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.base.clone()).collect()
    }

    /// The current adaptive limit of requests in flight, per gateway.
    pub fn pace_limits(&self) -> Vec<usize> {
        self.endpoints.iter().map(|e| e.pace.limit()).collect()
    }

    /// Requests now in flight on each gateway (for status displays and tests).
    pub fn in_flight(&self) -> Vec<usize> {
        self.endpoints
            .iter()
            .map(|e| e.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    /// Check that at least one gateway answers, so that a run against a
    /// gateway that is down fails at once with a clear message instead of
    /// after minutes of retries.
    pub async fn probe(&self) -> Result<(), BackendError> {
        let mut last = None;
        for ep in &self.endpoints {
            let url = format!("{}?t=json", ep.base);
            // A gateway that is busy (502/503/504) is waited for; one that
            // refuses connections is reported at once.
            for attempt in 0..=self.opts.retries {
                match self
                    .client
                    .get(&url)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) if matches!(r.status().as_u16(), 502..=504) => {
                        last = Some(format!(
                            "gateway {} keeps answering HTTP {}: is the node overloaded or still starting?",
                            ep.base,
                            r.status().as_u16()
                        ));
                        let delay = self.opts.backoff.saturating_mul(1 << attempt.min(6));
                        tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
                    }
                    Ok(r) => {
                        last = Some(format!(
                            "gateway {} answered HTTP {} to its welcome page: is this a Tahoe-LAFS node's web port?",
                            ep.base,
                            r.status().as_u16()
                        ));
                        break;
                    }
                    Err(e) => {
                        last = Some(format!(
                            "gateway {} is not reachable ({}): start the Tahoe node, or pass --gateway with the right URL",
                            ep.base,
                            describe_reqwest(&e)
                        ));
                        break;
                    }
                }
            }
        }
        Err(BackendError::new(
            ErrorCode::GatewayUnreachable,
            last.unwrap_or_default(),
        ))
    }

    fn pick(&self) -> &Endpoint {
        let now = Instant::now();
        let up = self
            .endpoints
            .iter()
            .filter(|e| e.is_up(now))
            .min_by_key(|e| e.in_flight.load(Ordering::Relaxed));
        match up {
            Some(e) => e,
            // All set aside: the one that comes back first.
            None => self
                .endpoints
                .iter()
                .min_by_key(|e| e.down_until.lock().unwrap().unwrap_or(now))
                .expect("at least one endpoint"),
        }
    }

    fn any_up(&self) -> bool {
        let now = Instant::now();
        self.endpoints.iter().any(|e| e.is_up(now))
    }

    /// Send one request with retries; returns the status and body of the
    /// first final answer. `what` names the object (never a whole cap).
    async fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        kind: RequestKind,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<(u16, bytes::Bytes), BackendError> {
        let mut attempt = 0u32;
        loop {
            let ep = self.pick();
            ep.in_flight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(ep);
            let permit = ep.pace.acquire(kind).await;
            let url = format!("{}{}", ep.base, path_and_query);
            let result = self.client.request(method.clone(), &url).send().await;
            let outcome = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(body) => {
                            if matches!(status, 502..=504) {
                                Err(BackendError::new(
                                    ErrorCode::GatewayHttp5xx,
                                    format!(
                                        "gateway {} answered HTTP {status} for {what}",
                                        ep.base
                                    ),
                                ))
                            } else {
                                Ok((status, body))
                            }
                        }
                        Err(e) => Err(transport_error(&e, &ep.base, what)),
                    }
                }
                Err(e) => Err(transport_error(&e, &ep.base, what)),
            };
            drop(guard);
            tracing::debug!(
                gateway = %ep.base,
                ?kind,
                ms = permit.elapsed().as_millis() as u64,
                limit = ep.pace.limit(),
                ok = outcome.is_ok(),
                "request answered"
            );
            match outcome {
                Ok(answer) => {
                    permit.done();
                    ep.mark_ok();
                    return Ok(answer);
                }
                Err(err) => {
                    drop(permit);
                    ep.set_aside();
                    if attempt >= self.opts.retries {
                        return Err(err);
                    }
                    attempt += 1;
                    tracing::debug!(attempt, error = %err, "transient gateway failure, retrying");
                    if !self.any_up() || self.endpoints.len() == 1 {
                        let delay = self
                            .opts
                            .backoff
                            .saturating_mul(1 << (attempt - 1).min(6))
                            .min(Duration::from_secs(30));
                        let jitter = delay.mul_f64(rand::random::<f64>() * 0.25);
                        tokio::time::sleep(delay + jitter).await;
                    }
                }
            }
        }
    }

    async fn post_json(
        &self,
        path_and_query: &str,
        kind: RequestKind,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<Value, BackendError> {
        let (status, body) = self
            .request(reqwest::Method::POST, path_and_query, kind, what)
            .await?;
        parse_answer(status, &body, what)
    }

    /// Open one of the gateway's own NDJSON streams (`stream-manifest` or
    /// `stream-deep-check`) on a directory, with extra query flags such as
    /// `verify=true`. The request is not retried: a broken stream is
    /// reported, as Tahoe's traversal cannot be resumed.
    pub async fn stream(
        &self,
        dir: &Cap,
        t: &str,
        flags: &[(&str, &str)],
    ) -> Result<StreamReader, BackendError> {
        let ep = self.pick();
        let mut url = format!("{}uri/{}?t={t}", ep.base, dir.expose());
        for (k, v) in flags {
            url.push_str(&format!("&{k}={v}"));
        }
        let what = describe_cap(dir);
        let resp = self
            .stream_client
            .post(&url)
            .send()
            .await
            .map_err(|e| transport_error(&e, &ep.base, &what))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            return Err(status_error(status, &body, &what));
        }
        Ok(StreamReader {
            response: resp,
            buf: Vec::new(),
            done: false,
            read_timeout: self.opts.timeout,
        })
    }
}

#[async_trait]
impl Backend for Gateway {
    fn describe(&self) -> String {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.base.as_str()).collect();
        format!("gateway {}", urls.join(", "))
    }

    fn supports(&self, _op: Operation) -> bool {
        true
    }

    async fn list_directory(&self, dir: &Cap) -> Result<Listing, BackendError> {
        let what = What(dir);
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("uri/{}?t=json", dir.expose()),
                RequestKind::LIST,
                &what,
            )
            .await?;
        let v = parse_answer(status, &body, &what)?;
        parse_listing(&v).ok_or_else(|| {
            BackendError::new(
                ErrorCode::BadResponse,
                format!("gateway's t=json for {what} is not a directory listing"),
            )
        })
    }

    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<Value, BackendError> {
        let mut q = format!("uri/{}?t=check&output=JSON", cap.expose());
        if opts.verify {
            q.push_str("&verify=true");
        }
        if opts.add_lease {
            q.push_str("&add-lease=true");
        }
        let kind = RequestKind::check(cap, opts.verify);
        self.post_json(&q, kind, &What(cap)).await
    }

    async fn repair(&self, cap: &Cap, opts: CheckOptions) -> Result<Value, BackendError> {
        let mut q = format!("uri/{}?t=check&repair=true&output=JSON", cap.expose());
        if opts.verify {
            q.push_str("&verify=true");
        }
        if opts.add_lease {
            q.push_str("&add-lease=true");
        }
        self.post_json(&q, RequestKind::repair(cap), &What(cap))
            .await
    }
}

/// Names an object in a message, computed only when a message is written
/// (deriving a storage index costs a hash per request otherwise).
struct What<'a>(&'a Cap);

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe_cap(self.0))
    }
}

/// How messages name an object: by storage index, which grants nothing,
/// or (for literal caps, which have none) by a redacted prefix.
fn describe_cap(cap: &Cap) -> String {
    match cap.storage_index() {
        Some(si) => format!("SI {si}"),
        None => cap.redacted(),
    }
}

fn transport_error(e: &reqwest::Error, base: &str, what: &dyn fmt::Display) -> BackendError {
    let code = if e.is_timeout() {
        ErrorCode::GatewayTimeout
    } else {
        ErrorCode::GatewayUnreachable
    };
    BackendError::new(
        code,
        format!("gateway {base}: {} (for {what})", describe_reqwest(e)),
    )
}

/// A short, cap-free description of a transport error. reqwest's Display
/// of a connection error is a chain; this keeps its innermost cause, which
/// says what actually happened ("Connection refused"). Shared by every
/// HTTP backend.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut inner = None;
    while let Some(s) = src {
        inner = Some(s.to_string());
        src = s.source();
    }
    if let Some(i) = inner {
        msg.push_str(": ");
        msg.push_str(&i);
    }
    redact_caps(&msg)
}

/// Interpret a final gateway answer as JSON, mapping error statuses to codes.
fn parse_answer(status: u16, body: &[u8], what: &dyn fmt::Display) -> Result<Value, BackendError> {
    if !(200..300).contains(&status) {
        return Err(status_error(status, &String::from_utf8_lossy(body), what));
    }
    serde_json::from_slice(body).map_err(|e| {
        BackendError::new(
            ErrorCode::BadResponse,
            format!("gateway answer for {what} is not JSON ({e})"),
        )
    })
}

fn status_error(status: u16, body: &str, what: &dyn fmt::Display) -> BackendError {
    // Tahoe's error bodies are plain text or {"error": "..."}; keep the first line.
    let text = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    let first = redact_caps(
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or(""),
    );
    let code = match status {
        410 => ErrorCode::Unrecoverable,
        405 => ErrorCode::InsufficientAuthority,
        400..=499 => ErrorCode::GatewayHttp4xx,
        _ => ErrorCode::GatewayHttp5xx,
    };
    let hint = match code {
        ErrorCode::Unrecoverable => "",
        ErrorCode::InsufficientAuthority => " (the gateway needs a read cap for this)",
        _ => "",
    };
    BackendError::new(code, format!("HTTP {status} for {what}: {first}{hint}"))
}

/// Parse the gateway's `t=json` answer for a directory.
pub fn parse_listing(v: &Value) -> Option<Listing> {
    let arr = v.as_array()?;
    if arr.first()?.as_str()? != "dirnode" {
        return None;
    }
    let children = arr.get(1)?.get("children")?.as_object()?;
    let mut out = Vec::with_capacity(children.len());
    for (name, entry) in children {
        let node_type = match entry.get(0).and_then(Value::as_str) {
            Some("filenode") => NodeType::File,
            Some("dirnode") => NodeType::Directory,
            _ => NodeType::Unknown,
        };
        let d = entry.get(1);
        let s = |k: &str| {
            d.and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        out.push(Child {
            name: name.clone(),
            node_type,
            rw_uri: s("rw_uri"),
            ro_uri: s("ro_uri"),
            verify_uri: s("verify_uri"),
            size: d.and_then(|d| d.get("size")).and_then(Value::as_u64),
            format: s("format"),
            mutable: d.and_then(|d| d.get("mutable")).and_then(Value::as_bool),
        });
    }
    Some(Listing { children: out })
}

/// Replace anything in `text` that looks like a cap with its redacted form,
/// so that gateway error texts can be shown and logged safely.
pub fn redact_caps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("URI:") {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        out.push_str(&steward_cap::redact(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_parses_files_dirs_and_unknowns() {
        let v: Value = serde_json::from_str(
            r#"["dirnode", {"rw_uri": "URI:DIR2:a:b", "ro_uri": "URI:DIR2-RO:c:b", "mutable": true,
              "children": {
                "f": ["filenode", {"ro_uri": "URI:CHK:x:y:2:5:100", "size": 100, "format": "CHK", "mutable": false, "metadata": {}}],
                "d": ["dirnode", {"rw_uri": "URI:DIR2:q:r", "ro_uri": "URI:DIR2-RO:s:r", "mutable": true, "metadata": {}}],
                "u": ["unknown", {"metadata": {}}]
              }}]"#,
        )
        .unwrap();
        let l = parse_listing(&v).unwrap();
        assert_eq!(l.children.len(), 3);
        let f = l.children.iter().find(|c| c.name == "f").unwrap();
        assert_eq!(f.node_type, NodeType::File);
        assert_eq!(f.size, Some(100));
        assert_eq!(f.format.as_deref(), Some("CHK"));
        let d = l.children.iter().find(|c| c.name == "d").unwrap();
        assert_eq!(d.node_type, NodeType::Directory);
        assert_eq!(d.rw_uri.as_deref(), Some("URI:DIR2:q:r"));
        let u = l.children.iter().find(|c| c.name == "u").unwrap();
        assert_eq!(u.node_type, NodeType::Unknown);
        assert!(parse_listing(&serde_json::json!(["filenode", {}])).is_none());
    }

    #[test]
    fn status_errors_map_to_codes_and_hide_caps() {
        let e = status_error(
            410,
            "UnrecoverableFileError: the directory\nmore",
            &"SI abc",
        );
        assert_eq!(e.code, ErrorCode::Unrecoverable);
        assert!(!e.message.contains('\n'));
        let e = status_error(405, "", &"x");
        assert_eq!(e.code, ErrorCode::InsufficientAuthority);
        let e = status_error(
            404,
            "No such child: URI:CHK:abcdefghijklmnopqrstuvwxyz:abcdefghij:2:5:100",
            &"x",
        );
        assert_eq!(e.code, ErrorCode::GatewayHttp4xx);
        assert!(!e.message.contains("abcdefghijklmnop"), "{}", e.message);
        let e = status_error(500, "{\"error\": \"boom\"}", &"x");
        assert_eq!(e.code, ErrorCode::GatewayHttp5xx);
        assert!(e.message.contains("boom"));
    }

    #[test]
    fn bad_urls_are_refused_clearly() {
        let err = Gateway::new(GatewayOptions {
            urls: vec!["ftp://x".into()],
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(err.message.contains("http://"));
        assert!(Gateway::new(GatewayOptions::default()).is_err());
    }
}
