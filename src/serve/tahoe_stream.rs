//! Tahoe's streaming operations, `t=stream-manifest` and
//! `t=stream-deep-check`, as Tahoe-LAFS's web API specifies them
//! (`docs/frontends/webapi.rst`), run by steward.
//!
//! # Requests
//!
//! * `POST /uri/$DIRCAP[/PATH]?t=stream-manifest` (GET too: it changes
//!   nothing);
//! * `POST /uri/$CAP[/PATH]?t=stream-deep-check[&verify=true][&add-lease=true][&repair=true]`
//!   (on a file too, where Tahoe answers 400: one unit and the stats).
//!
//! `$CAP` comes URL-escaped as the stock CLI sends it (`URI%3ADIR2%3A...`)
//! or not. Arguments are read as Tahoe reads them: the first `t`, spaces
//! around it ignored; booleans `true`/`t`/`1`/`on` and `false`/`f`/`0`/`off`
//! in any case, anything else a 400 `invalid boolean argument: b'...'`.
//! Arguments in a form body are not read (the stock CLI sends none); such a
//! request goes to the gateway like any other.
//!
//! # Before streaming
//!
//! A `PATH` is resolved by the gateway itself (`GET /uri/$CAP/PATH?t=uri`),
//! so its errors are Tahoe's own, passed back unchanged: 404 `No such
//! child`, 410 for an unrecoverable directory on the way, 400 for an empty
//! path component. (Tahoe's POST would create missing directories on the
//! way, a side effect of its path handling; steward never does.) Its own
//! refusals are `text/plain` one-liners: 400 for a cap that does not parse,
//! a verify cap (which cannot be listed), `t=stream-manifest` on a file
//! (`POST to file: bad t=stream-manifest`, Tahoe's words), or a bad
//! argument.
//!
//! # The stream
//!
//! 200 with Tahoe's headers (no declared type, so `text/html`;
//! `X-Frame-Options: DENY`; `Referrer-Policy: no-referrer`), then one line
//! per unique object as the walk produces it and the stats unit last,
//! shaped and kept under the line limit by [`super::lines`]. Unlike Tahoe,
//! an unrecoverable directory or file is a unit (with its error), not the
//! end of the stream. If the run itself cannot go on (no gateway) or the
//! service shuts down, the last line is `ERROR: ...`, which the stock CLI
//! prints to stderr before exiting 1, as after Tahoe's own errors.

use super::limits::{body_refusal, refuse};
use super::lines::Shaper;
use super::operation::{CheckFlags, Event, Kind, OperationSpec, Operations, Outcome, Running};
use super::proxy::Upstream;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use percent_encoding::percent_decode_str;
use steward_cap::{Authority, Cap};

/// Which stream a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Manifest,
    DeepCheck,
}

impl Stream {
    /// The endpoint name in metrics and logs.
    pub fn endpoint(self) -> &'static str {
        match self {
            Stream::Manifest => "stream-manifest",
            Stream::DeepCheck => "stream-deep-check",
        }
    }
}

/// Query arguments, decoded, in order.
fn args(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of argument `name`, as Tahoe's `get_arg`.
fn arg<'a>(args: &'a [(String, String)], name: &str) -> Option<&'a str> {
    args.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether this request is one of the streams steward runs itself.
pub fn wanted(method: &Method, path: &str, query: Option<&str>) -> Option<Stream> {
    let rest = path.strip_prefix("/uri/")?;
    if rest.is_empty() || rest.starts_with('/') {
        return None;
    }
    let a = args(query);
    match (arg(&a, "t").map(str::trim), method) {
        (Some("stream-manifest"), &Method::POST | &Method::GET) => Some(Stream::Manifest),
        (Some("stream-deep-check"), &Method::POST) => Some(Stream::DeepCheck),
        _ => None,
    }
}

/// Tahoe's `boolean_of_arg`.
fn boolean(args: &[(String, String)], name: &str) -> Result<bool, String> {
    let Some(v) = arg(args, name) else {
        return Ok(false);
    };
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "on" => Ok(true),
        "false" | "f" | "0" | "off" => Ok(false),
        _ => Err(format!(
            "invalid boolean argument: {}",
            python_bytes_repr(v)
        )),
    }
}

/// How Python prints a bytes value (`b'maybe'`), as in Tahoe's message.
fn python_bytes_repr(v: &str) -> String {
    let mut out = String::from("b'");
    for b in v.bytes() {
        match b {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

/// Tahoe's headers on every answer of its web server.
fn tahoe_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

fn bad_request(reason: impl Into<String>) -> Response {
    let mut r = refuse(StatusCode::BAD_REQUEST, reason);
    tahoe_headers(&mut r);
    r
}

/// The cap a request names: its first path segment, and (through the
/// gateway) the path after it.
async fn resolve(up: &Upstream, path: &str, query_t: &str) -> Result<Cap, Response> {
    let rest = &path["/uri/".len()..];
    let (cap_seg, sub) = match rest.split_once('/') {
        Some((c, s)) => (c, s),
        None => (rest, ""),
    };
    let cap_text = percent_decode_str(cap_seg).decode_utf8().map_err(|_| {
        bad_request("steward serve: the cap in the path is not UTF-8 once unescaped")
    })?;
    let cap = Cap::parse(&cap_text).map_err(|e| {
        bad_request(format!(
            "steward serve: {} is not a cap steward can walk: {e}",
            steward_cap::redact(&cap_text)
        ))
    })?;
    if sub.is_empty() {
        return Ok(cap);
    }
    // The gateway follows the path: its errors are Tahoe's own.
    let url = up.url(&format!("/uri/{cap_seg}/{sub}?t=uri"));
    let answer = up
        .client
        .get(url)
        .header(header::ACCEPT, "text/plain, application/octet-stream")
        .send()
        .await
        .map_err(|_| {
            refuse(
                StatusCode::BAD_GATEWAY,
                format!(
                    "steward serve: the gateway {} could not be reached",
                    up.describe()
                ),
            )
        })?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = answer.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        if let Some(ct) = content_type {
            r.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        tahoe_headers(&mut r);
        return Err(r);
    }
    let text = String::from_utf8_lossy(&body);
    Cap::parse(text.trim()).map_err(|e| {
        bad_request(format!(
            "steward serve: the object at that path is not one steward can walk ({e}); t={query_t}"
        ))
    })
}

/// Answer a stream request: refuse it, or start the operation and stream
/// its units.
pub async fn handle(ops: &Operations, up: &Upstream, which: Stream, req: Request) -> Response {
    if let Some(r) = body_refusal(&req) {
        return r;
    }
    let a = args(req.uri().query());
    let flags = match which {
        Stream::Manifest => None,
        Stream::DeepCheck => {
            let parsed = (|| {
                Ok::<_, String>(CheckFlags {
                    verify: boolean(&a, "verify")?,
                    repair: boolean(&a, "repair")?,
                    add_lease: boolean(&a, "add-lease")?,
                })
            })();
            match parsed {
                Ok(f) => Some(f),
                Err(reason) => return bad_request(reason),
            }
        }
    };
    let t = which.endpoint();
    let root = match resolve(up, req.uri().path(), t).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if which == Stream::Manifest && !root.is_directory() {
        return bad_request(format!("POST to file: bad t={t}"));
    }
    if root.authority() == Authority::Verify && root.is_directory() {
        return bad_request(
            "steward serve: a directory's verify cap cannot be listed; give its read or write cap",
        );
    }
    let (kind, shaper) = match flags {
        None => (Kind::Manifest, Shaper::Manifest),
        Some(f) if f.repair => (Kind::DeepCheck(f), Shaper::DeepCheckAndRepair),
        Some(f) => (Kind::DeepCheck(f), Shaper::DeepCheck),
    };
    let running = ops.start(OperationSpec {
        kind,
        caps: root.authority(),
        root,
    });
    let mut resp = Response::new(Body::from_stream(lines(running, shaper)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    tahoe_headers(&mut resp);
    resp
}

/// Bytes written at most in one chunk, gathering units that are ready.
const CHUNK: usize = 32 * 1024;

/// The response body: units as lines, gathered into chunks while more are
/// ready, then an `ERROR:` line if the run did not complete. Dropping it
/// (the client went away) drops the [`Running`], which cancels the run.
fn lines(
    running: Running,
    shaper: Shaper,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(Some(running), move |state| async move {
        let mut running = state?;
        let mut buf = String::new();
        let ended = match running.next().await {
            None => return None,
            Some(Event::Unit(u)) => {
                buf.push_str(&shaper.line(u));
                buf.push('\n');
                while buf.len() < CHUNK {
                    match running.ready() {
                        Some(u) => {
                            buf.push_str(&shaper.line(u));
                            buf.push('\n');
                        }
                        None => break,
                    }
                }
                false
            }
            Some(Event::End(outcome)) => {
                match outcome {
                    Outcome::Completed => return None,
                    Outcome::ShuttingDown => buf.push_str(
                        "ERROR: steward serve is shutting down; run the command again when it is back\n",
                    ),
                    Outcome::Failed(why) => {
                        buf.push_str("ERROR: ");
                        buf.push_str(&why.replace(['\n', '\r'], " "));
                        buf.push('\n');
                    }
                }
                true
            }
        };
        Some((Ok(Bytes::from(buf)), (!ended).then_some(running)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_recognised_as_tahoe_reads_them() {
        let p = "/uri/URI%3ADIR2%3Aaa%3Abb";
        assert_eq!(
            wanted(&Method::POST, p, Some("t=stream-manifest")),
            Some(Stream::Manifest)
        );
        assert_eq!(
            wanted(&Method::GET, p, Some("t=stream-manifest")),
            Some(Stream::Manifest)
        );
        assert_eq!(
            wanted(
                &Method::POST,
                &format!("{p}/sub"),
                Some("t=%20stream-deep-check%20&verify=true")
            ),
            Some(Stream::DeepCheck)
        );
        // GET would change things (leases, repairs): the gateway answers it.
        assert_eq!(wanted(&Method::GET, p, Some("t=stream-deep-check")), None);
        // The first t counts, as in Tahoe.
        assert_eq!(
            wanted(&Method::POST, p, Some("t=json&t=stream-manifest")),
            None
        );
        assert_eq!(
            wanted(&Method::POST, "/uri", Some("t=stream-manifest")),
            None
        );
        assert_eq!(
            wanted(&Method::POST, "/uri/", Some("t=stream-manifest")),
            None
        );
        assert_eq!(wanted(&Method::POST, p, Some("t=check")), None);
        assert_eq!(wanted(&Method::POST, p, None), None);
    }

    #[test]
    fn booleans_are_tahoes() {
        let a = args(Some("verify=On&repair=0&add-lease=maybe&x=%FF"));
        assert_eq!(boolean(&a, "verify"), Ok(true));
        assert_eq!(boolean(&a, "repair"), Ok(false));
        assert_eq!(boolean(&a, "missing"), Ok(false));
        assert_eq!(
            boolean(&a, "add-lease"),
            Err("invalid boolean argument: b'maybe'".to_string())
        );
        let a = args(Some("verify"));
        assert_eq!(
            boolean(&a, "verify"),
            Err("invalid boolean argument: b''".to_string())
        );
    }
}
