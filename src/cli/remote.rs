//! `steward manifest --server URL ...` and `steward deep-check --server URL
//! ...`: run the operation on a `steward serve` (its `POST
//! /steward/v1/operations`) and write its units, or the deep-check report,
//! here.
//!
//! * The units arrive from `GET .../units?from=N`. A connection that drops
//!   (or a serve that restarts) is retried with backoff (0.2 s doubling to
//!   10 s; given up after [`MAX_FAILURES`] attempts in a row that brought
//!   nothing), from the number of whole lines received: every unit is
//!   written once.
//! * With `-o FILE` (0600, locked for the run) the operation's id is kept
//!   beside it in `FILE.steward-server` with the request it was made for;
//!   running the same command again continues that operation from the
//!   file's length (a partial last line is cut), and a file that belongs to
//!   another request is refused. `--restart` starts a new operation.
//! * Interrupting the client leaves the operation running on the server.

use super::deep_check::report_of_file;
use crate::cli::common::stop_signal;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use steward::config;
use steward::error::{Error, ErrorKind, Exit};
use steward::lock::RunLock;
use steward::output::{open_private, stdout_error, Output};
use steward::report::Report;
use steward::serve::{access, redact};
use steward::unit::Unit;

/// Attempts in a row that bring no unit before the client gives up.
pub const MAX_FAILURES: u32 = 30;

/// How to reach a serve.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Run the operation on a `steward serve --state DIR` at URL (the grid
    /// options are then the server's) and write its units here; a dropped
    /// connection is resumed where it stopped.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// With --server: send `Authorization: Bearer` with this file's first
    /// line (the file must be mode 0600).
    #[arg(long = "token-file", value_name = "FILE", requires = "server")]
    pub token_file: Option<PathBuf>,
}

/// Where the units go.
pub enum Dest {
    /// Units to standard output.
    Stdout,
    /// Units to a file (resumable).
    File(PathBuf),
    /// The deep-check report to standard output.
    Report { repair: bool },
}

/// One remote operation to run.
pub struct Remote {
    pub server: ServerArgs,
    /// The root argument (a cap with /path, or an alias).
    pub root: String,
    pub node_dir: PathBuf,
    /// `manifest` or `deep-check`.
    pub kind: &'static str,
    pub options: Value,
    pub dest: Dest,
    pub restart: bool,
    /// With a file: no report (the units are the output).
    pub raw: bool,
}

/// Why one attempt ended.
enum Attempt {
    /// The stream ended cleanly.
    Ended,
    /// The connection failed (try again).
    Dropped(String),
}

/// An authority's name in requests.
pub fn caps_name(a: steward_cap::Authority) -> &'static str {
    match a {
        steward_cap::Authority::Write => "write",
        steward_cap::Authority::Read => "read",
        steward_cap::Authority::Verify => "verify",
    }
}

/// The sidecar that ties `-o FILE` to its operation.
fn sidecar(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".steward-server");
    PathBuf::from(s)
}

struct Client {
    http: reqwest::Client,
    base: String,
    /// The server, for messages (no password).
    shown: String,
}

impl Client {
    fn new(a: &ServerArgs) -> Result<Client, Error> {
        let url = a.server.clone().expect("--server given");
        let parsed = url::Url::parse(&url).map_err(|e| {
            Error::input(format!("--server {}: not a URL ({e})", redact::url(&url)))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::input(format!(
                "--server {}: give an http:// or https:// URL",
                redact::url(&url)
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(f) = &a.token_file {
            let token = access::read_token(f)?;
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::input("--token-file: the token is not a valid header value"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::io("an HTTP client", std::io::Error::other(e)))?;
        Ok(Client {
            http,
            base: format!("{}/steward/v1/operations", url.trim_end_matches('/')),
            shown: redact::url(&url),
        })
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Gateway,
            format!("steward serve at {} did not answer: {e}", self.shown),
        )
    }

    /// A refusal's one line.
    async fn refusal(&self, r: reqwest::Response) -> Error {
        let code = r.status();
        let text = r.text().await.unwrap_or_default();
        let line = text.lines().next().unwrap_or("").trim().to_string();
        let kind = if code.is_client_error() {
            ErrorKind::Input
        } else {
            ErrorKind::Gateway
        };
        Error::new(
            kind,
            format!("steward serve at {} answered {code}: {line}", self.shown),
        )
    }

    async fn create(&self, request: &Value) -> Result<String, Error> {
        let r = self
            .http
            .post(&self.base)
            .json(request)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !r.status().is_success() {
            return Err(self.refusal(r).await);
        }
        let v: Value = r.json().await.map_err(|e| self.unreachable(e))?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.unreachable("its answer has no operation id"))
    }

    /// The operation's status; `Ok(None)` when the server is unreachable
    /// for now.
    async fn status(&self, id: &str) -> Result<Option<Value>, Error> {
        let r = match self.http.get(format!("{}/{id}", self.base)).send().await {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        if r.status().is_server_error() {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(self.refusal(r).await);
        }
        Ok(r.json().await.ok())
    }

    /// Stream units from line `*received`, handing each whole line to
    /// `line` and counting it.
    async fn stream(
        &self,
        id: &str,
        received: &mut u64,
        line: &mut dyn FnMut(&str) -> Result<(), Error>,
    ) -> Result<Attempt, Error> {
        let url = format!("{}/{id}/units?from={received}", self.base);
        let mut r = match self.http.get(url).send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Dropped(e.to_string())),
        };
        if r.status().is_server_error() {
            return Ok(Attempt::Dropped(format!("it answered {}", r.status())));
        }
        if !r.status().is_success() {
            return Err(self.refusal(r).await);
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            match r.chunk().await {
                Ok(Some(bytes)) => {
                    buf.extend_from_slice(&bytes);
                    let mut start = 0;
                    while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
                        let text = String::from_utf8_lossy(&buf[start..start + i]);
                        line(&text)?;
                        *received += 1;
                        start += i + 1;
                    }
                    buf.drain(..start);
                }
                Ok(None) => {
                    return Ok(if buf.is_empty() {
                        Attempt::Ended
                    } else {
                        Attempt::Dropped("the stream ended inside a line".into())
                    })
                }
                Err(e) => return Ok(Attempt::Dropped(e.to_string())),
            }
        }
    }
}

/// Whole lines of `path`, cutting a partial last line; returns (bytes,
/// lines).
fn whole_lines(path: &Path) -> Result<(u64, u64), Error> {
    let data = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines = data[..end].iter().filter(|b| **b == b'\n').count() as u64;
    Ok((end as u64, lines))
}

/// The operation `-o FILE` belongs to, or a new one (see the module doc).
async fn attach(
    client: &Client,
    out: &Path,
    request: &Value,
    restart: bool,
) -> Result<(String, Output, u64), Error> {
    let side = sidecar(out);
    if restart {
        for p in [out, side.as_path()] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("removing {}", p.display()), e))
                }
                _ => {}
            }
        }
    }
    match std::fs::read(&side) {
        Ok(text) => {
            let saved: Value = serde_json::from_slice(&text).map_err(|_| {
                Error::checkpoint(format!(
                    "{} is not steward's: remove it, or use --restart",
                    side.display()
                ))
            })?;
            let id = saved["operation"].as_str().unwrap_or("").to_string();
            if saved["request"] != *request || id.is_empty() {
                let s = &saved["request"];
                return Err(Error::checkpoint(format!(
                    "{} belongs to another operation ({id}: {} of {} with {}): use the same root and options, another -o FILE, or --restart",
                    out.display(),
                    s["kind"].as_str().unwrap_or("?"),
                    steward_cap::redact(s["root"].as_str().unwrap_or("")),
                    s["options"]
                )));
            }
            let (len, lines) = if std::fs::symlink_metadata(out).is_ok() {
                whole_lines(out)?
            } else {
                (0, 0)
            };
            let output = Output::open_file(out, Some(len))?;
            if lines > 0 {
                eprintln!(
                    "steward: continuing operation {id} after the {lines} units in {}",
                    out.display()
                );
            }
            Ok((id, output, lines))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::metadata(out).map(|m| m.len() > 0).unwrap_or(false) {
                return Err(Error::checkpoint(format!(
                    "{} already exists and is not the output of a served operation: use --restart to overwrite it, or another -o FILE",
                    out.display()
                )));
            }
            let id = client.create(request).await?;
            let mut f = open_private(&side, true)
                .map_err(|e| Error::io(format!("cannot write {}", side.display()), e))?;
            let text = json!({ "server": client.shown, "operation": id, "request": request });
            writeln!(f, "{text}")
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::io(format!("writing {}", side.display()), e))?;
            Ok((id, Output::open_file(out, None)?, 0))
        }
        Err(e) => Err(Error::io(side.display(), e)),
    }
}

/// Run the operation (see the module doc).
pub async fn run(r: Remote) -> Result<Exit, Error> {
    let client = Client::new(&r.server)?;
    let spec = config::parse_root(&r.root, &r.node_dir)?;
    let mut root = spec.cap.expose().to_string();
    if !spec.path.is_empty() {
        root.push('/');
        root.push_str(&spec.path.join("/"));
    }
    let request = json!({ "root": root, "kind": r.kind, "options": r.options });
    let _lock = match &r.dest {
        Dest::File(p) => Some(RunLock::acquire(p)?),
        _ => None,
    };
    let (id, mut file, mut received) = match &r.dest {
        Dest::File(p) => {
            let (id, out, n) = attach(&client, p, &request, r.restart).await?;
            (id, Some(out), n)
        }
        _ => (client.create(&request).await?, None, 0),
    };
    let mut stdout = Output::stdout();
    let mut report = match r.dest {
        Dest::Report { repair } => Some(Report::new(repair, false)),
        _ => None,
    };
    let mut line = |l: &str| -> Result<(), Error> {
        if let Some(f) = file.as_mut() {
            return f.write_line(l);
        }
        if let Some(rep) = report.as_mut() {
            if let Ok(u) = Unit::parse(l) {
                let mut out = std::io::stdout();
                rep.add(&u, &mut out);
            }
            return Ok(());
        }
        stdout.write_line(l)
    };
    let mut stop = stop_signal();
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(200);
    let status = loop {
        let before = received;
        let attempt = tokio::select! {
            a = client.stream(&id, &mut received, &mut line) => a?,
            _ = stop.wait_for(|s| *s) => {
                return Err(Error::new(ErrorKind::Interrupted, format!(
                    "interrupted after {received} units; operation {id} goes on at {}{}",
                    client.shown,
                    match &r.dest { Dest::File(p) => format!(": run the same command to continue it in {}", p.display()), _ => String::new() }
                )));
            }
        };
        if received > before {
            failures = 0;
            backoff = Duration::from_millis(200);
        }
        if let Attempt::Ended = attempt {
            match client.status(&id).await? {
                Some(s) if s["state"] != "running" => break s,
                // Still running (the stream ended with the service's
                // shutdown): go on.
                _ => {}
            }
        } else if let Attempt::Dropped(why) = &attempt {
            tracing::info!(
                "units stream of {id} dropped after {received} units ({why}): reconnecting"
            );
        }
        failures += 1;
        if failures > MAX_FAILURES {
            return Err(client.unreachable(format!(
                "{MAX_FAILURES} attempts in a row brought nothing (after {received} units of operation {id})"
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    };
    if let Some(f) = file.as_mut() {
        f.sync()?;
    }
    stdout.flush()?;
    std::io::stdout().flush().map_err(stdout_error)?;
    match status["state"].as_str() {
        Some("completed") => {}
        Some("cancelled") => {
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!("operation {id} was cancelled on the server after {received} units"),
            ))
        }
        _ => {
            return Err(Error::new(
                ErrorKind::Gateway,
                format!(
                    "operation {id} failed on the server after {received} units: {}",
                    status["error"].as_str().unwrap_or("no reason given")
                ),
            ))
        }
    }
    let errors = status["counts"]["error"].as_u64().unwrap_or(0);
    if r.kind == "manifest" {
        eprintln!("manifest: {} units (operation {id})", received);
        return Ok(if errors > 0 { Exit::Findings } else { Exit::Ok });
    }
    let repair = r.options["repair"].as_bool().unwrap_or(false);
    let rep = match (&r.dest, report) {
        (Dest::File(p), _) => report_of_file(p, repair, r.raw).await?,
        (_, Some(rep)) => rep,
        (Dest::Stdout | Dest::Report { .. }, None) => {
            // --raw: the exit code from the server's counts.
            let bad: u64 = ["unhealthy", "unrecoverable", "failed", "unchecked"]
                .iter()
                .map(|k| status["counts"][*k].as_u64().unwrap_or(0))
                .sum();
            return Ok(if bad > 0 { Exit::Findings } else { Exit::Ok });
        }
    };
    if !r.raw {
        rep.finish(&mut std::io::stdout());
    }
    Ok(if rep.all_healthy() {
        Exit::Ok
    } else {
        Exit::Findings
    })
}
