//! A fault-injecting HTTP proxy in front of a real gateway: adds latency,
//! answers chosen requests with an error status, counts requests, and can
//! be switched off to play a gateway that went away. It runs on its own
//! runtime thread so that tests stay synchronous.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Faults {
    /// Milliseconds to wait before forwarding each request.
    pub delay_ms: AtomicU64,
    /// Status to answer instead of forwarding (0: none).
    pub fail_status: AtomicU16,
    /// How many more requests to fail (-1: all).
    pub fail_remaining: AtomicI64,
    /// Only fail requests whose path contains this.
    pub fail_match: Mutex<Option<String>>,
    /// Refuse everything (the listener stays, answers 502 like a dead upstream).
    pub down: AtomicBool,
    /// Requests seen.
    pub requests: AtomicU64,
    /// Requests being forwarded now, and the most there ever were at once.
    pub in_flight: AtomicI64,
    pub peak_in_flight: AtomicI64,
    /// The same for grid operations only (`/uri/...`: listings, checks,
    /// repairs; not a client's probe of the welcome page).
    pub uri_in_flight: AtomicI64,
    pub peak_uri_in_flight: AtomicI64,
    /// Every request's method, path and query, in arrival order.
    pub log: Mutex<Vec<String>>,
}

/// Counts a request in flight (in one counter and its peak) while it is
/// forwarded.
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicI64, peak: &AtomicI64) -> Self {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Proxy {
    pub url: String,
    pub faults: Arc<Faults>,
    _rt: tokio::runtime::Runtime,
}

struct Ctx {
    upstream: String,
    faults: Arc<Faults>,
    client: reqwest::Client,
}

async fn handle(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    let f = &ctx.faults;
    f.requests.fetch_add(1, Ordering::Relaxed);
    let _counted = InFlight::new(&f.in_flight, &f.peak_in_flight);
    let _grid_op = req
        .uri()
        .path()
        .starts_with("/uri")
        .then(|| InFlight::new(&f.uri_in_flight, &f.peak_uri_in_flight));
    let delay = f.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    f.log.lock().unwrap().push(format!("{} {pq}", req.method()));
    if f.down.load(Ordering::Relaxed) {
        return Response::builder()
            .status(502)
            .body(Body::from("proxy: upstream down"))
            .unwrap();
    }
    let status = f.fail_status.load(Ordering::Relaxed);
    if status != 0 {
        let matches = f
            .fail_match
            .lock()
            .unwrap()
            .as_ref()
            .map(|m| pq.contains(m.as_str()))
            .unwrap_or(true);
        if matches {
            let left = f.fail_remaining.load(Ordering::Relaxed);
            if left != 0 {
                if left > 0 {
                    f.fail_remaining.fetch_sub(1, Ordering::Relaxed);
                }
                return Response::builder()
                    .status(status)
                    .body(Body::from(format!("proxy: injected {status}")))
                    .unwrap();
            }
        }
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let url = format!("{}{}", ctx.upstream.trim_end_matches('/'), pq);
    match ctx.client.request(method, url).body(body).send().await {
        Ok(r) => {
            let st = r.status().as_u16();
            let bytes = r.bytes().await.unwrap_or_default();
            Response::builder()
                .status(st)
                .body(Body::from(bytes))
                .unwrap()
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Body::from(e.to_string()))
            .unwrap(),
    }
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let faults = Arc::new(Faults::default());
        let ctx = Arc::new(Ctx {
            upstream: upstream.to_string(),
            faults: faults.clone(),
            client: reqwest::Client::new(),
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(handle).with_state(ctx);
        rt.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Proxy {
            url: format!("http://127.0.0.1:{port}/"),
            faults,
            _rt: rt,
        }
    }

    pub fn requests(&self) -> u64 {
        self.faults.requests.load(Ordering::Relaxed)
    }

    /// Fail the next `n` requests (or all, -1) whose path contains `m` with `status`.
    pub fn fail(&self, status: u16, n: i64, m: Option<&str>) {
        *self.faults.fail_match.lock().unwrap() = m.map(str::to_string);
        self.faults.fail_remaining.store(n, Ordering::Relaxed);
        self.faults.fail_status.store(status, Ordering::Relaxed);
    }

    /// The most requests that were in flight through the proxy at once
    /// (since the last reset).
    pub fn peak_in_flight(&self) -> i64 {
        self.faults.peak_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_peak(&self) {
        self.faults.peak_in_flight.store(0, Ordering::SeqCst);
        self.faults.peak_uri_in_flight.store(0, Ordering::SeqCst);
    }

    /// The most grid operations (`/uri/...`) in flight at once since the
    /// last reset.
    pub fn peak_grid_ops(&self) -> i64 {
        self.faults.peak_uri_in_flight.load(Ordering::SeqCst)
    }

    /// Every request seen so far (`METHOD /path?query`).
    pub fn log(&self) -> Vec<String> {
        self.faults.log.lock().unwrap().clone()
    }

    pub fn delay(&self, ms: u64) {
        self.faults.delay_ms.store(ms, Ordering::Relaxed);
    }
}

/// A TCP relay that can cut every connection it carries, at any byte: a
/// network that drops a long stream. It counts the unit lines (`}\n`) it
/// passed towards the client.
pub struct Cutter {
    pub addr: String,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
    /// Unit lines passed to clients, over every connection.
    pub lines: Arc<AtomicU64>,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
}

impl Cutter {
    /// Relay `127.0.0.1:PORT` (a fresh port) to `target` (`host:port`).
    pub fn start(target: &str) -> Cutter {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Default::default();
        let lines = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (c, l, a, target) = (
            conns.clone(),
            lines.clone(),
            accepted.clone(),
            target.to_string(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut v = c.lock().unwrap();
                    v.push(client.try_clone().unwrap());
                    v.push(server.try_clone().unwrap());
                }
                let relay = |mut from: std::net::TcpStream,
                             mut to: std::net::TcpStream,
                             count: Option<Arc<AtomicU64>>| {
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 1024];
                        let mut last = 0u8;
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if let Some(c) = &count {
                                let mut prev = last;
                                for b in &buf[..n] {
                                    if *b == b'\n' && prev == b'}' {
                                        c.fetch_add(1, Ordering::SeqCst);
                                    }
                                    prev = *b;
                                }
                                last = prev;
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                };
                relay(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                relay(server, client, Some(l.clone()));
            }
        });
        Cutter {
            addr,
            conns,
            lines,
            accepted,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Cut every connection open now, in both directions.
    pub fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::SeqCst)
    }
}
