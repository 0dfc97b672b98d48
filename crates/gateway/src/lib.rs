//! The Tahoe-LAFS web API client: one or more gateway nodes of the same grid.
//!
//! Every request goes through the process's request stack
//! ([`steward_backend::retry::Stack`]): the scheduler admits it under the
//! tenant's fair share and the gateway's pace, and picks the least busy
//! gateway that is not set aside; a transient failure (connection refused
//! or reset, a timeout, HTTP 502, 503 or 504) sets that gateway aside and
//! the request is retried, on another gateway if one is up, else after an
//! exponential backoff. Other answers are final: a 410 means the object is
//! unrecoverable, 405 that the cap is too weak, any other 4xx or a 500 is
//! reported for that object and never retried.
//!
//! The calls used are those of `docs/frontends/webapi.rst`:
//! `GET /uri/$DIRCAP?t=json`, `POST /uri/$CAP?t=check&output=JSON` with
//! `verify`, `add-lease` and `repair`, and the NDJSON streams
//! `POST /uri/$DIRCAP?t=stream-manifest` and `?t=stream-deep-check`.
//!
//! Timeouts: listings and checks get [`GatewayOptions::timeout`] (default
//! 2 minutes, retried once); verifies and repairs, which download or
//! upload whole files, get [`GatewayOptions::long_timeout`] (default an
//! hour). Any request still unanswered after 30 s is logged as slow.
//! Gateway URLs may carry a password (`http://user:pass@host/`); messages
//! and logs show them without it.

mod listing;
mod transport;

use async_trait::async_trait;
pub use listing::parse_listing;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use steward_backend::endpoint::{redact_url, Endpoint, EndpointConfig, Group, SetAside};
pub use steward_backend::http::describe_reqwest;
use steward_backend::pace::RequestKind;
use steward_backend::retry::{CallError, RetryPolicy, Stack};
use steward_backend::sched::{Scheduler, Tenant};
use steward_backend::{
    Backend, BackendError, CheckOptions, CheckResults, ErrorCode, Listing, Operation, RepairResults,
};
use steward_cap::{redact_caps, Cap};
use transport::{Base, Transport};

/// How to reach the gateways and how patient to be with them.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Base URLs (`http://127.0.0.1:3456/`), all of the same grid.
    pub urls: Vec<String>,
    /// Time allowed for a listing or a check.
    pub timeout: Duration,
    /// Time allowed for a verify or a repair (they move whole files).
    pub long_timeout: Duration,
    /// Retries and backoff for transient failures.
    pub retry: RetryPolicy,
    /// Requests in flight to one gateway at most (its cap).
    pub max_in_flight: usize,
    /// Find the best number of requests in flight below `max_in_flight`
    /// (see [`steward_backend::pace`]); when false, always `max_in_flight`.
    pub adaptive: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            urls: vec![],
            timeout: Duration::from_secs(120),
            long_timeout: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            max_in_flight: 64,
            adaptive: true,
        }
    }
}

struct Inner {
    stack: Stack,
    group: Group,
    /// Each gateway's base, parsed once (see [`transport`]).
    bases: Vec<(Arc<Endpoint>, Base)>,
    transport: Transport,
    client: reqwest::Client,
    stream_client: reqwest::Client,
    opts: GatewayOptions,
}

/// A client for one or more gateways of one grid, its requests counted for
/// one tenant ([`Backend::for_tenant`] gives a handle for another). Cheap
/// to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
    tenant: Tenant,
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

impl Inner {
    /// The parsed base of one of this client's gateways.
    fn base(&self, ep: &Arc<Endpoint>) -> &Base {
        self.bases
            .iter()
            .find(|(e, _)| Arc::ptr_eq(e, ep))
            .map(|(_, b)| b)
            .expect("the stack chooses among this client's gateways")
    }
}

impl Gateway {
    /// A client for the given gateways, scheduled by `sched`. Fails only
    /// for unusable URLs.
    pub fn new(opts: GatewayOptions, sched: Arc<Scheduler>) -> Result<Self, BackendError> {
        if opts.urls.is_empty() {
            return Err(BackendError::new(
                ErrorCode::GatewayUnreachable,
                "no gateway given: pass --gateway URL, set STEWARD_GATEWAY, or point --node-directory at a Tahoe node",
            ));
        }
        let mut endpoints = Vec::new();
        let mut bases = Vec::new();
        for u in &opts.urls {
            let shown = redact_url(u);
            let parsed = reqwest::Url::parse(u).map_err(|e| {
                BackendError::new(
                    ErrorCode::GatewayUnreachable,
                    format!(
                        "gateway URL {shown:?} is not a URL ({e}): give it as http://HOST:PORT/"
                    ),
                )
            })?;
            if parsed.scheme() != "http" && parsed.scheme() != "https" {
                return Err(BackendError::new(
                    ErrorCode::GatewayUnreachable,
                    format!("gateway URL {shown:?} must start with http:// or https://"),
                ));
            }
            let mut base = parsed.to_string();
            if !base.ends_with('/') {
                base.push('/');
            }
            let parsed = reqwest::Url::parse(&base).expect("a URL with a slash added");
            let split = Base::new(&parsed, &base).map_err(|e| {
                BackendError::new(
                    ErrorCode::GatewayUnreachable,
                    format!(
                        "gateway URL {shown:?} cannot be used ({e}): give it as http://HOST:PORT/"
                    ),
                )
            })?;
            let config = EndpointConfig {
                max_in_flight: opts.max_in_flight.max(1),
                adaptive: opts.adaptive,
                start: 1,
                set_aside: SetAside::GATEWAY,
            };
            let ep = sched.endpoint(&base, &redact_url(&base), config);
            bases.push((ep.clone(), split));
            endpoints.push(ep);
        }
        let group = sched.group(&endpoints);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| BackendError::new(ErrorCode::BadResponse, e.to_string()))?;
        let stream_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| BackendError::new(ErrorCode::BadResponse, e.to_string()))?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                stack: Stack::new(sched, opts.retry),
                group,
                bases,
                transport: Transport::new(client.clone()),
                client,
                stream_client,
                opts,
            }),
            tenant: Tenant::default(),
        })
    }

    /// The same client, its requests counted for `tenant`.
    pub fn with_tenant(&self, tenant: Tenant) -> Gateway {
        Gateway {
            inner: self.inner.clone(),
            tenant,
        }
    }

    /// The scheduler this client's requests go through.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.inner.stack.sched
    }

    /// The gateways' base URLs, without passwords.
    pub fn urls(&self) -> Vec<String> {
        self.inner
            .group
            .members()
            .iter()
            .map(|e| e.name().to_string())
            .collect()
    }

    /// The current adaptive limit of requests in flight, per gateway.
    pub fn pace_limits(&self) -> Vec<usize> {
        let s = &self.inner.stack.sched;
        self.inner
            .group
            .members()
            .iter()
            .map(|e| s.limit(e))
            .collect()
    }

    /// Requests now in flight on each gateway (for status displays and tests).
    pub fn in_flight(&self) -> Vec<usize> {
        let s = &self.inner.stack.sched;
        self.inner
            .group
            .members()
            .iter()
            .map(|e| s.in_flight_at(e))
            .collect()
    }

    /// Check that at least one gateway answers, so that a run against a
    /// gateway that is down fails at once with a clear message instead of
    /// after minutes of retries.
    pub async fn probe(&self) -> Result<(), BackendError> {
        let mut last = None;
        let retry = self.inner.opts.retry;
        for ep in self.inner.group.members() {
            let url = format!("{}?t=json", ep.key());
            let shown = ep.name();
            // A gateway that is busy (502/503/504) is waited for; one that
            // refuses connections is reported at once.
            for attempt in 0..=retry.retries {
                match self
                    .inner
                    .client
                    .get(&url)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) if matches!(r.status().as_u16(), 502..=504) => {
                        last = Some(format!(
                            "gateway {shown} keeps answering HTTP {}: is the node overloaded or still starting?",
                            r.status().as_u16()
                        ));
                        tokio::time::sleep(retry.delay(attempt + 1)).await;
                    }
                    Ok(r) => {
                        last = Some(format!(
                            "gateway {shown} answered HTTP {} to its welcome page: is this a Tahoe-LAFS node's web port?",
                            r.status().as_u16()
                        ));
                        break;
                    }
                    Err(e) => {
                        last = Some(format!(
                            "gateway {shown} is not reachable ({}): start the Tahoe node, or pass --gateway with the right URL",
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

    /// Send one request through the stack; returns the status and body of
    /// the first final answer. `what` names the object (never a whole cap).
    async fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        kind: RequestKind,
        timeout: Duration,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<(u16, bytes::Bytes), BackendError> {
        let inner = &self.inner;
        let answer = inner
            .stack
            .call(&self.tenant, kind, &inner.group, what, |ep| {
                let method = method.clone();
                async move {
                    let base = inner.base(&ep);
                    inner
                        .transport
                        .send(base, method, path_and_query, timeout)
                        .await
                }
            })
            .await;
        answer.map_err(|e| call_error(e, timeout, what))
    }

    /// POST, and the body of a successful answer.
    async fn post(
        &self,
        path_and_query: &str,
        kind: RequestKind,
        timeout: Duration,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<bytes::Bytes, BackendError> {
        let (status, body) = self
            .request(reqwest::Method::POST, path_and_query, kind, timeout, what)
            .await?;
        success(status, &body, what)?;
        Ok(body)
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
        let ep = &self.inner.group.members()[0];
        let mut url = format!("{}uri/{}?t={t}", ep.key(), dir.expose());
        for (k, v) in flags {
            url.push_str(&format!("&{k}={v}"));
        }
        let what = describe_cap(dir);
        let resp = self
            .inner
            .stream_client
            .post(&url)
            .send()
            .await
            .map_err(|e| transport_error(&e, ep.name(), &what))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            return Err(status_error(status, &body, &what));
        }
        Ok(StreamReader {
            response: resp,
            buf: Vec::new(),
            done: false,
            read_timeout: self.inner.opts.long_timeout,
        })
    }
}

#[async_trait]
impl Backend for Gateway {
    fn describe(&self) -> String {
        format!("gateway {}", self.urls().join(", "))
    }

    fn supports(&self, _op: Operation) -> bool {
        true
    }

    fn kind(&self, _op: Operation) -> &'static str {
        "gateway"
    }

    fn for_tenant(&self, tenant: Tenant) -> Arc<dyn Backend> {
        Arc::new(self.with_tenant(tenant))
    }

    async fn list_directory(&self, dir: &Cap) -> Result<Listing, BackendError> {
        let what = What(dir);
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("uri/{}?t=json", dir.expose()),
                RequestKind::LIST,
                self.inner.opts.timeout,
                &what,
            )
            .await?;
        success(status, &body, &what)?;
        let listing = parse_listing(&body).map_err(|e| not_json(&what, &e))?;
        listing.ok_or_else(|| {
            BackendError::new(
                ErrorCode::BadResponse,
                format!("gateway's t=json for {what} is not a directory listing"),
            )
        })
    }

    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<CheckResults, BackendError> {
        let mut q = format!("uri/{}?t=check&output=JSON", cap.expose());
        if opts.verify {
            q.push_str("&verify=true");
        }
        if opts.add_lease {
            q.push_str("&add-lease=true");
        }
        let kind = RequestKind::check(cap, opts.verify);
        let timeout = if opts.verify {
            self.inner.opts.long_timeout
        } else {
            self.inner.opts.timeout
        };
        let what = What(cap);
        let body = self.post(&q, kind, timeout, &what).await?;
        // Kept as text: no JSON tree per object (see steward_backend::results).
        CheckResults::from_slice(&body).map_err(|e| bad_answer(&what, &e))
    }

    async fn repair(&self, cap: &Cap, opts: CheckOptions) -> Result<RepairResults, BackendError> {
        let mut q = format!("uri/{}?t=check&repair=true&output=JSON", cap.expose());
        if opts.verify {
            q.push_str("&verify=true");
        }
        if opts.add_lease {
            q.push_str("&add-lease=true");
        }
        let what = What(cap);
        let body = self
            .post(
                &q,
                RequestKind::repair(cap),
                self.inner.opts.long_timeout,
                &what,
            )
            .await?;
        let v = json_of(&body, &what)?;
        RepairResults::from_json(v).map_err(|e| bad_answer(&what, &e))
    }
}

fn bad_answer(what: &dyn fmt::Display, e: &str) -> BackendError {
    BackendError::new(
        ErrorCode::BadResponse,
        format!("gateway answer for {what} is not Tahoe's check results: {e}"),
    )
}

/// A request the stack gave up on, as an error for the object.
fn call_error(e: CallError, timeout: Duration, what: &dyn fmt::Display) -> BackendError {
    match e {
        CallError::GaveUp {
            endpoint,
            why,
            timeout: timed_out,
            attempts,
        } => {
            let code = if timed_out {
                ErrorCode::GatewayTimeout
            } else if why.starts_with("HTTP ") {
                ErrorCode::GatewayHttp5xx
            } else {
                ErrorCode::GatewayUnreachable
            };
            let why = if timed_out {
                format!("no answer within {}s", timeout.as_secs())
            } else {
                why
            };
            BackendError::new(
                code,
                format!("gateway {endpoint}: {why} (for {what}; {attempts} attempts)"),
            )
        }
        CallError::Refused(r) => BackendError::new(
            ErrorCode::GatewayUnreachable,
            format!("no gateway is answering ({r:?}) (for {what})"),
        ),
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

/// A final answer that is not a success, as an error for the object.
fn success(status: u16, body: &[u8], what: &dyn fmt::Display) -> Result<(), BackendError> {
    if !(200..300).contains(&status) {
        return Err(status_error(status, &String::from_utf8_lossy(body), what));
    }
    Ok(())
}

fn json_of(body: &[u8], what: &dyn fmt::Display) -> Result<Value, BackendError> {
    serde_json::from_slice(body).map_err(|e| not_json(what, &e))
}

fn not_json(what: &dyn fmt::Display, e: &serde_json::Error) -> BackendError {
    BackendError::new(
        ErrorCode::BadResponse,
        format!("gateway answer for {what} is not JSON ({e})"),
    )
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
        300..=399 => ErrorCode::BadResponse,
        410 => ErrorCode::Unrecoverable,
        405 => ErrorCode::InsufficientAuthority,
        400..=499 => ErrorCode::GatewayHttp4xx,
        _ => ErrorCode::GatewayHttp5xx,
    };
    let hint = match code {
        ErrorCode::Unrecoverable => "",
        ErrorCode::InsufficientAuthority => " (the gateway needs a read cap for this)",
        ErrorCode::BadResponse => {
            " (a redirect: Tahoe's web API answers without one, so steward follows none; give the gateway's own URL)"
        }
        _ => "",
    };
    BackendError::new(code, format!("HTTP {status} for {what}: {first}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_backend::NodeType;

    #[test]
    fn listing_parses_files_dirs_and_unknowns() {
        let v = (
            r#"["dirnode", {"rw_uri": "URI:DIR2:a:b", "ro_uri": "URI:DIR2-RO:c:b", "mutable": true,
              "children": {
                "f": ["filenode", {"ro_uri": "URI:CHK:x:y:2:5:100", "size": 100, "format": "CHK", "mutable": false, "metadata": {}}],
                "d": ["dirnode", {"rw_uri": "URI:DIR2:q:r", "ro_uri": "URI:DIR2-RO:s:r", "mutable": true, "metadata": {}}],
                "u": ["unknown", {"metadata": {}}]
              }}]"#
        ).as_bytes();
        let l = parse_listing(v).unwrap().unwrap();
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
        assert!(parse_listing(br#"["filenode", {}]"#).unwrap().is_none());
        assert!(parse_listing(br#"["dirnode", {"children": {"a": "#).is_err());
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
        let e = status_error(302, "", &"x");
        assert_eq!(e.code, ErrorCode::BadResponse);
        assert!(e.message.contains("redirect"), "{}", e.message);
        let e = status_error(500, "{\"error\": \"boom\"}", &"x");
        assert_eq!(e.code, ErrorCode::GatewayHttp5xx);
        assert!(e.message.contains("boom"));
    }

    #[test]
    fn bad_urls_are_refused_clearly() {
        let err = Gateway::new(
            GatewayOptions {
                urls: vec!["ftp://x".into()],
                ..Default::default()
            },
            Scheduler::new(8),
        )
        .err()
        .unwrap();
        assert!(err.message.contains("http://"));
        assert!(Gateway::new(GatewayOptions::default(), Scheduler::new(8)).is_err());
        let err = Gateway::new(
            GatewayOptions {
                urls: vec!["ftp://user:hunter2@x".into()],
                ..Default::default()
            },
            Scheduler::new(8),
        )
        .err()
        .unwrap();
        assert!(!err.message.contains("hunter2"), "{}", err.message);
    }
}
