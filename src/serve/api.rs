//! The HTTP side of operations that survive the connection
//! ([`super::durable`]):
//!
//! | request | answer |
//! |---|---|
//! | `POST /steward/v1/operations` with `{"root": "URI:DIR2:...[/path]", "kind": "manifest" \| "deep-check", "options": {"verify": b, "add-lease": b, "repair": b, "caps": "write" \| "read" \| "verify"}}` | 201, `Location`, the status |
//! | `GET /steward/v1/operations` | every operation's status |
//! | `GET /steward/v1/operations/ID` | its status ([`super::durable::Status`]) |
//! | `GET /steward/v1/operations/ID/units?from=N` | its units from line N (0-based), following the committed output until the operation ends |
//! | `DELETE /steward/v1/operations/ID` | cancels it (202, the status); a finished one is removed with its files (204) |
//!
//! `options` may be left out (deep-check options default to false; caps to
//! `read`, or `write` with `repair`); `verify`, `add-lease` and `repair` are
//! refused on a manifest. The root is a cap, optionally followed by a path
//! the gateway resolves (aliases are the client's to resolve). Every
//! refusal is one `text/plain` line: 400 for a malformed request (naming
//! the field, never echoing a cap), 404 for an unknown id, 413 for a body
//! over the limit, 503 when the service has no `--state DIR`.
//!
//! A units stream ends cleanly when the operation has ended and every
//! committed unit was sent; a connection that breaks before is resumed
//! with `from=` the number of whole lines received. Whether the operation
//! completed is its status's `state`.

use super::durable::{self, Durable, Op, Request as OpRequest};
use super::limits::{refuse, MAX_BODY};
use super::operation::{CheckFlags, Kind};
use super::router::App;
use crate::config;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use steward_cap::Authority;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response {
    let mut body = serde_json::to_string(v).expect("a status serializes");
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A refusal (boxed: a `Response` is large).
type Refusal = Box<Response>;

fn durable(app: &App) -> Result<&Arc<Durable>, Refusal> {
    app.durable.as_ref().ok_or_else(|| {
        Box::new(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "steward serve: operations need a state directory: start it with --state DIR",
        ))
    })
}

fn unknown(id: &str) -> Response {
    let what = if durable::plausible_id(id) {
        format!("operation {id}")
    } else {
        "that operation".into()
    };
    refuse(
        StatusCode::NOT_FOUND,
        format!(
            "steward serve: no {what} here (finished operations are removed after --keep-finished)"
        ),
    )
}

fn find(app: &App, id: &str) -> Result<(Arc<Durable>, Arc<Op>), Refusal> {
    let d = durable(app)?;
    let op = d.get(id).ok_or_else(|| Box::new(unknown(id)))?;
    Ok((d.clone(), op))
}

/// A name the client sent, quoted, if it is short and plainly a name (a
/// cap pasted as a key is never echoed).
fn shown(name: &str) -> String {
    if name.len() <= 24
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        format!("{name:?}")
    } else {
        "(not shown)".into()
    }
}

/// A request body's root, kind and options, or a one-line reason (which
/// never holds the root).
pub fn parse_request(body: &[u8]) -> Result<(String, Kind, Authority), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not JSON (line {}, column {}): send {{\"root\": \"URI:...\", \"kind\": \"manifest\" or \"deep-check\", \"options\": {{...}}}}",
            e.line(),
            e.column()
        )
    })?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "root" | "kind" | "options") {
            return Err(format!(
                "unknown field {}: the fields are root, kind and options",
                shown(k)
            ));
        }
    }
    let root = obj
        .get("root")
        .and_then(Value::as_str)
        .ok_or("\"root\" is missing or not a string: give a directory cap (URI:DIR2:...), optionally followed by /path")?;
    if !root.trim().starts_with("URI:") {
        return Err("\"root\" must be a cap (URI:...), optionally followed by /path (aliases are resolved by the client)".into());
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("\"kind\" is missing or not a string: give \"manifest\" or \"deep-check\"")?;
    let empty = serde_json::Map::new();
    let opts = match obj.get("options") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err("\"options\" must be an object".into()),
    };
    let mut flags = CheckFlags::default();
    let mut caps = None;
    for (k, v) in opts {
        match k.as_str() {
            "verify" | "add-lease" | "repair" => {
                let b = v
                    .as_bool()
                    .ok_or_else(|| format!("options.{k} must be true or false"))?;
                match k.as_str() {
                    "verify" => flags.verify = b,
                    "add-lease" => flags.add_lease = b,
                    _ => flags.repair = b,
                }
            }
            "caps" => {
                caps = Some(
                    v.as_str()
                        .and_then(durable::parse_authority)
                        .ok_or("options.caps must be \"write\", \"read\" or \"verify\"")?,
                )
            }
            other => {
                return Err(format!(
                    "unknown option {}: the options are verify, add-lease, repair and caps",
                    shown(other)
                ))
            }
        }
    }
    let kind = match kind {
        "manifest" => {
            if flags != CheckFlags::default() {
                return Err(
                    "verify, add-lease and repair are options of a deep-check, not of a manifest"
                        .into(),
                );
            }
            Kind::Manifest
        }
        "deep-check" => Kind::DeepCheck(flags),
        _ => return Err("\"kind\" must be \"manifest\" or \"deep-check\"".into()),
    };
    let caps = caps.unwrap_or(if flags.repair {
        Authority::Write
    } else {
        Authority::Read
    });
    Ok((root.trim().to_string(), kind, caps))
}

/// `POST /steward/v1/operations`.
pub async fn create(State(app): State<Arc<App>>, req: Request) -> Response {
    let d = match durable(&app) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY as usize).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("steward serve: an operation request is at most {MAX_BODY} bytes"),
            )
        }
    };
    let (root, kind, caps) = match parse_request(&body) {
        Ok(r) => r,
        Err(why) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("steward serve: bad operation request: {why}"),
            )
        }
    };
    let spec = match config::parse_root(&root, std::path::Path::new("/nonexistent")) {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("steward serve: bad operation request: {e}"),
            )
        }
    };
    if kind == Kind::Manifest && !spec.cap.is_directory() && spec.path.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "steward serve: bad operation request: a manifest needs a directory root",
        );
    }
    let root = match config::resolve_root(&spec, d.backend()).await {
        Ok(c) => c,
        Err(e) => {
            let status = if e.kind == crate::error::ErrorKind::Input {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::BAD_GATEWAY
            };
            return refuse(status, format!("steward serve: {e}"));
        }
    };
    let op = match d.create(OpRequest { root, kind, caps }).await {
        Ok(op) => op,
        Err(e) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("steward serve: cannot start the operation: {e}"),
            )
        }
    };
    let status = d.status(&op).await;
    let mut r = json_response(StatusCode::CREATED, &status);
    if let Ok(v) = format!("/steward/v1/operations/{}", op.id).parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `GET /steward/v1/operations`.
pub async fn list(State(app): State<Arc<App>>) -> Response {
    let d = match durable(&app) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    let mut all = Vec::new();
    for op in d.list() {
        all.push(d.status(&op).await);
    }
    json_response(StatusCode::OK, &all)
}

/// `GET /steward/v1/operations/ID`.
pub async fn status(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> Response {
    match find(&app, &id) {
        Ok((d, op)) => json_response(StatusCode::OK, &d.status(&op).await),
        Err(r) => *r,
    }
}

/// `DELETE /steward/v1/operations/ID`.
pub async fn cancel(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> Response {
    let (d, op) = match find(&app, &id) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if d.cancel(&op).await {
        json_response(StatusCode::ACCEPTED, &d.status(&op).await)
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// `from=N` of a units request.
fn from_arg(query: Option<&str>) -> Result<u64, String> {
    let mut from = 0;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "from" => {
                from = v.trim().parse::<u64>().map_err(|_| {
                    "from must be a line number (0 or more): the number of units already received"
                        .to_string()
                })?
            }
            _ => {
                return Err(format!(
                    "unknown argument {}: the only one is from=N",
                    shown(&k)
                ))
            }
        }
    }
    Ok(from)
}

/// Reads an operation's committed units, following them.
struct Reader {
    op: Arc<Op>,
    file: Option<tokio::fs::File>,
    pos: u64,
    skip: u64,
    committed: tokio::sync::watch::Receiver<crate::input::Committed>,
    phase: tokio::sync::watch::Receiver<durable::Phase>,
    buf: Vec<u8>,
}

/// Bytes sent at most per chunk.
const CHUNK: u64 = 64 * 1024;

impl Reader {
    /// The next chunk of whole lines, or `None` at the end.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            let len = self.committed.borrow_and_update().len;
            if self.pos < len {
                match self.read(len).await {
                    Ok(Some(b)) => return Some(Ok(b)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            if !self.phase.borrow_and_update().running() {
                // The last commit may have come just before the end.
                if self.pos < self.committed.borrow().len {
                    continue;
                }
                return None;
            }
            tokio::select! {
                r = self.committed.changed() => if r.is_err() { return None },
                r = self.phase.changed() => if r.is_err() { return None },
            }
        }
    }

    /// Read up to `len` (committed); `None` when all of it was skipped.
    async fn read(&mut self, len: u64) -> std::io::Result<Option<Bytes>> {
        if self.file.is_none() {
            let mut f = tokio::fs::File::open(self.op.units_path()).await?;
            f.seek(std::io::SeekFrom::Start(self.pos)).await?;
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("opened");
        let want = (len - self.pos).min(CHUNK) as usize;
        self.buf.resize(want, 0);
        let n = f.read(&mut self.buf[..want]).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the units file is shorter than its checkpoint",
            ));
        }
        self.pos += n as u64;
        let mut chunk = &self.buf[..n];
        while self.skip > 0 && !chunk.is_empty() {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    chunk = &chunk[i + 1..];
                    self.skip -= 1;
                }
                None => chunk = &[],
            }
        }
        Ok((!chunk.is_empty()).then(|| Bytes::copy_from_slice(chunk)))
    }
}

/// `GET /steward/v1/operations/ID/units?from=N`.
pub async fn units(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    req: Request,
) -> Response {
    let (d, op) = match find(&app, &id) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let from = match from_arg(req.uri().query()) {
        Ok(f) => f,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, format!("steward serve: {why}")),
    };
    let status = d.status(&op).await;
    if !op.phase().running() && from > status.units {
        return refuse(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!(
                "steward serve: from={from} is past the end: operation {} has {} units",
                op.id, status.units
            ),
        );
    }
    let (pos, skip) = op.seek(from);
    let reader = Reader {
        committed: op.committed(),
        phase: op.phases(),
        op,
        file: None,
        pos,
        skip,
        buf: Vec::new(),
    };
    let stream = futures::stream::unfold(reader, |mut r| async move {
        r.next().await.map(|item| (item, r))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str =
        "URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbba";

    #[test]
    fn operation_requests_are_read_strictly_and_refusals_never_echo_the_root() {
        let ok = |v: Value| parse_request(v.to_string().as_bytes()).unwrap();
        let (root, kind, caps) = ok(serde_json::json!({"root": ROOT, "kind": "manifest"}));
        assert_eq!(
            (root.as_str(), kind, caps),
            (ROOT, Kind::Manifest, Authority::Read)
        );
        let (_, kind, caps) = ok(
            serde_json::json!({"root": format!("{ROOT}/a/b"), "kind": "deep-check", "options": {"repair": true, "add-lease": true}}),
        );
        assert_eq!(
            kind,
            Kind::DeepCheck(CheckFlags {
                verify: false,
                add_lease: true,
                repair: true
            })
        );
        assert_eq!(caps, Authority::Write, "repair writes with write caps");
        let (_, _, caps) = ok(
            serde_json::json!({"root": ROOT, "kind": "manifest", "options": {"caps": "verify"}}),
        );
        assert_eq!(caps, Authority::Verify);
        for bad in [
            serde_json::json!({"root": ROOT, "kind": ROOT}),
            serde_json::json!({"root": ROOT, "kind": "manifest", "options": {"caps": ROOT}}),
            serde_json::json!({"root": ROOT, "kind": "manifest", ROOT: 1}),
            serde_json::json!({"root": ROOT, "kind": "deep-check", "options": {ROOT: true}}),
            serde_json::json!({"root": ROOT, "kind": "deep-check", "options": {"verify": ROOT}}),
            serde_json::json!({"root": 7, "kind": "manifest"}),
        ] {
            let why = parse_request(bad.to_string().as_bytes()).unwrap_err();
            assert!(
                !why.contains("aaaaaaaa") && !why.contains("bbbbbbbb"),
                "{why}"
            );
            assert_eq!(why.lines().count(), 1, "{why}");
        }
        let why = parse_request(format!("{{\"root\": \"{ROOT}\", oops").as_bytes()).unwrap_err();
        assert!(
            why.starts_with("the body is not JSON") && !why.contains("bbbbbbbbbbbb"),
            "{why}"
        );
    }

    #[test]
    fn from_is_a_line_number_and_nothing_else_is_taken() {
        assert_eq!(from_arg(None), Ok(0));
        assert_eq!(from_arg(Some("from=42")), Ok(42));
        assert!(from_arg(Some("from=-1")).is_err());
        assert!(from_arg(Some("offset=3")).unwrap_err().contains("from=N"));
    }
}
