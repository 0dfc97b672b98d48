//! One storage server: its pinned HTTPS client (one keep-alive pool) and
//! the storage protocol's calls. Pacing, retries and setting the server
//! aside when it stops answering are the shared request stack's
//! ([`steward_backend::retry::Stack`]); the server is one endpoint of the
//! process's scheduler, a group of its own.

use crate::discovery::ServerInfo;
use crate::tls::{client_config, PinState};
use crate::NativeOptions;
use data_encoding::BASE64;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, RANGE};
use reqwest::{Method, StatusCode};
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use steward_backend::endpoint::{Endpoint, EndpointConfig, Group, SetAside, WhenAllDown};
use steward_backend::pace::RequestKind;
use steward_backend::retry::{Attempt, CallError, RetryPolicy, Stack};
use steward_backend::sched::{Refused, Scheduler, Tenant};
use steward_cap::StorageIndex;

const CBOR: &str = "application/cbor";

/// Why a server gave no usable answer.
#[derive(Clone, Debug)]
pub enum Failure {
    /// It did not answer (refused, reset, timed out, 5xx after retries), or
    /// is set aside after such failures: Tahoe counts it as not responding.
    NotResponding(String),
    /// It answered something the protocol does not allow (for example a 4xx
    /// or a body that is not CBOR): also not responding, as in Tahoe, but
    /// worth a log line.
    BadAnswer(String),
    /// Its certificate does not match the SPKI hash pinned in its NURL. It
    /// is refused, never trusted.
    PinMismatch(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::NotResponding(m) | Failure::BadAnswer(m) | Failure::PinMismatch(m) => m,
        }
    }
}

/// Which kind of share a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareKind {
    Immutable,
    Mutable,
}

impl ShareKind {
    fn path(self) -> &'static str {
        match self {
            ShareKind::Immutable => "immutable",
            ShareKind::Mutable => "mutable",
        }
    }
}

/// A storage server and the means to talk to it.
pub struct Server {
    pub info: ServerInfo,
    client: reqwest::Client,
    auth: HeaderValue,
    pin: Arc<PinState>,
    endpoint: Arc<Endpoint>,
    group: Group,
    stack: Stack,
    timeout: Duration,
}

/// The kinds of request sent to a server, each with its own latency
/// baseline in the server's [`Pace`]; share reads by size
/// ([`read_kind`]).
const LIST_SHARES: RequestKind = RequestKind::storage(0);
const ADD_LEASE: RequestKind = RequestKind::storage(2);
const VERSION: RequestKind = RequestKind::storage(3);
/// Answers other than share data are small: a longer body is not believed.
const SMALL_BODY: usize = 64 << 10;

/// The kind of a read of `len` bytes: one per factor of 4 (a 1 KB header
/// read and a 1 MB block run take very different times without any
/// queue), `storage(16)` to `storage(47)`.
pub fn read_kind(len: u64) -> RequestKind {
    RequestKind::storage(16 + (len.max(1).ilog2() / 2) as u8)
}

/// A share read: the bytes, and whether the share ended before the end of
/// the range asked (the reply was shorter), which is how a client learns a
/// share's size over HTTP (Tahoe's server answers `Content-Range: bytes
/// a-b/*`, without the total).
#[derive(Clone, Debug, Default)]
pub struct ShareBytes {
    pub data: Vec<u8>,
    pub ended: bool,
}
/// Requests in flight to a server at first: each one needs its own HTTPS
/// connection, and at 100 ms round trips opening one costs about three,
/// so they are opened together rather than one doubling at a time.
const INITIAL_IN_FLIGHT: usize = 8;

impl Server {
    pub fn new(
        info: ServerInfo,
        opts: &NativeOptions,
        sched: &Arc<Scheduler>,
    ) -> Result<Server, String> {
        let pin = Arc::new(PinState::default());
        let tls = client_config(info.nurl.spki_hash, pin.clone());
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(2 * opts.per_server_in_flight.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build an HTTPS client for {}: {e}", info.describe()))?;
        let auth = HeaderValue::from_str(&format!(
            "Tahoe-LAFS {}",
            BASE64.encode(info.nurl.swissnum.as_bytes())
        ))
        .map_err(|_| format!("bad swissnum for {}", info.describe()))?;
        let config = EndpointConfig {
            max_in_flight: opts.per_server_in_flight.max(1),
            adaptive: opts.adaptive,
            start: INITIAL_IN_FLIGHT,
            // A server is set aside once a request has failed every
            // attempt; while it is, it counts as not responding (as Tahoe
            // counts a disconnected server) without being asked.
            set_aside: SetAside {
                after_failures: opts.retries + 1,
                base: opts.set_aside,
                max: Duration::from_secs(120),
                when_all_down: WhenAllDown::Fail,
            },
        };
        let base = info.nurl.base_url();
        let endpoint = sched.endpoint(&base, &info.describe(), config);
        let group = sched.group(std::slice::from_ref(&endpoint));
        let retry = RetryPolicy {
            retries: opts.retries,
            timeout_retries: opts.retries,
            backoff: opts.backoff,
            max_backoff: Duration::from_secs(10),
            slow_after: Duration::from_secs(30),
        };
        Ok(Server {
            info,
            client,
            auth,
            pin,
            endpoint,
            group,
            stack: Stack::new(sched.clone(), retry),
            timeout: opts.timeout,
        })
    }

    /// Tahoe's lease seed for this server: the tub id from its FURL, or the
    /// SHA-1 of the certificate it presented (the same value; see
    /// [`ServerInfo::lease_seed`]) once a handshake has been made.
    pub fn lease_seed(&self) -> Option<[u8; 20]> {
        self.info
            .lease_seed
            .or_else(|| self.pin.cert_sha1.get().copied())
    }

    /// TLS connections made so far.
    pub fn connections_made(&self) -> u32 {
        self.pin.handshakes.load(Ordering::Relaxed)
    }

    /// The most requests that were ever in flight to this server at once.
    pub fn peak_in_flight(&self) -> u32 {
        self.endpoint.peak_in_flight()
    }

    /// Requests sent so far (for tests and statistics).
    pub fn requests_sent(&self) -> u32 {
        self.endpoint.requests_sent() as u32
    }

    /// The scheduler's endpoint for this server.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    fn pin_failure(&self) -> Option<Failure> {
        let seen = self
            .pin
            .mismatch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(Failure::PinMismatch(format!(
            "storage server {} presented a certificate whose SPKI hash {seen} does not match the {} pinned in its NURL: refused (not the announced server, or its key changed)",
            self.info.describe(),
            self.info.nurl.spki_hash_text()
        )))
    }

    /// Send one request of `tenant` through the stack; the status and
    /// body of the first final answer.
    ///
    /// At most `limit` bytes of the body are read (the rest is not
    /// waited for): the flag says whether there was more, so that no
    /// server can make steward hold more than it asked for. The body goes
    /// into `buf` (emptied first) on the first attempt, so that a caller
    /// can read many times into one buffer.
    #[allow(clippy::too_many_arguments)]
    async fn request(
        &self,
        tenant: &Tenant,
        method: Method,
        kind: RequestKind,
        path: &str,
        extra: &[(&'static str, String)],
        limit: usize,
        buf: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>, bool), Failure> {
        let url = format!("{}{path}", self.endpoint.key());
        let buf = std::sync::Mutex::new(buf);
        let outcome = self
            .stack
            .call(tenant, kind, &self.group, &path, |_ep| {
                let mut req = self
                    .client
                    .request(method.clone(), &url)
                    .header(AUTHORIZATION, self.auth.clone())
                    .header(ACCEPT, CBOR);
                for (k, v) in extra {
                    req = req.header(*k, v.as_str());
                }
                let buf = std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()));
                async move {
                    let answer = match req.send().await {
                        Ok(resp) => {
                            let status = resp.status();
                            body_up_to(resp, limit, buf)
                                .await
                                .map(|(body, over)| (status, body, over))
                        }
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok((status, _, _)) if matches!(status.as_u16(), 502..=504) => {
                            Attempt::Transient {
                                why: format!("HTTP {}", status.as_u16()),
                                timeout: false,
                            }
                        }
                        Ok(a) => Attempt::Answer(Ok(a)),
                        Err(e) => match self.pin_failure() {
                            Some(pin) => {
                                tracing::error!("{}", pin.message());
                                Attempt::Final(Err(pin))
                            }
                            None => Attempt::Transient {
                                timeout: e.is_timeout(),
                                why: describe(&e, self.timeout),
                            },
                        },
                    }
                }
            })
            .await;
        match outcome {
            Ok(r) => r,
            Err(CallError::Refused(Refused::AllDown(left))) => {
                Err(Failure::NotResponding(format!(
                    "storage server {} is set aside for {left:.1?} after failing to answer",
                    self.info.describe()
                )))
            }
            Err(CallError::GaveUp { why, .. }) => Err(Failure::NotResponding(format!(
                "storage server {} did not answer {method} {path}: {why}",
                self.info.describe()
            ))),
        }
    }

    fn bad(&self, what: &str, detail: impl std::fmt::Display) -> Failure {
        Failure::BadAnswer(format!(
            "storage server {} answered {what} with {detail}",
            self.info.describe()
        ))
    }

    /// `GET /storage/v1/{immutable,mutable}/<SI>/shares`: the share numbers held.
    pub async fn list_shares(
        &self,
        tenant: &Tenant,
        kind: ShareKind,
        si: &StorageIndex,
    ) -> Result<BTreeSet<u32>, Failure> {
        let path = format!("/storage/v1/{}/{si}/shares", kind.path());
        let (status, body, over) = self
            .request(
                tenant,
                Method::GET,
                LIST_SHARES,
                &path,
                &[],
                SMALL_BODY,
                Vec::new(),
            )
            .await?;
        if over {
            return Err(self.bad("a share listing", "more than 64 KiB"));
        }
        if status != StatusCode::OK {
            return Err(self.bad("a share listing", format!("HTTP {}", status.as_u16())));
        }
        decode_share_set(&body).map_err(|e| self.bad("a share listing", e))
    }

    /// Read `range` of mutable share `shnum` (the answer is shorter at the
    /// end of the share).
    pub async fn read_mutable(
        &self,
        tenant: &Tenant,
        si: &StorageIndex,
        shnum: u32,
        range: Range<u64>,
    ) -> Result<Vec<u8>, Failure> {
        self.read_share(tenant, ShareKind::Mutable, si, shnum, range)
            .await
            .map(|r| r.data)
    }

    /// `GET /storage/v1/{immutable,mutable}/<SI>/<shnum>` with `Range:
    /// bytes=a-b`: `range` of the share, shorter where the share ends
    /// (immutable share data comes without the container header that holds
    /// leases). Never more than `range` asks: a server sending more is a
    /// bad answer.
    pub async fn read_share(
        &self,
        tenant: &Tenant,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: u32,
        range: Range<u64>,
    ) -> Result<ShareBytes, Failure> {
        self.read_share_into(tenant, kind, si, shnum, range, Vec::new())
            .await
    }

    /// [`Server::read_share`] into `buf` (emptied first; give it the
    /// capacity for the range to spare it from growing).
    pub async fn read_share_into(
        &self,
        tenant: &Tenant,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: u32,
        range: Range<u64>,
        mut buf: Vec<u8>,
    ) -> Result<ShareBytes, Failure> {
        if range.is_empty() {
            buf.clear();
            return Ok(ShareBytes {
                data: buf,
                ended: false,
            });
        }
        let len = range.end - range.start;
        let path = format!("/storage/v1/{}/{si}/{shnum}", kind.path());
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let what = || format!("a read of share {shnum} of {si}");
        // The body is read up to what was asked, never more.
        let limit = usize::try_from(len).unwrap_or(usize::MAX);
        let (status, body, over) = self
            .request(
                tenant,
                Method::GET,
                read_kind(len),
                &path,
                &[(RANGE.as_str(), header)],
                limit,
                buf,
            )
            .await?;
        match status.as_u16() {
            206 if over || body.len() as u64 > len => {
                Err(self.bad(&what(), format!("more than the {len} bytes asked for")))
            }
            206 => Ok(ShareBytes {
                ended: (body.len() as u64) < len,
                data: body,
            }),
            204 | 416 => Ok(ShareBytes {
                data: Vec::new(),
                ended: true,
            }),
            // A server that ignores Range sends the share from its start:
            // usable for a read from 0 (what is past the range is not
            // read), not otherwise (the protocol requires Range support).
            200 if range.start == 0 => Ok(ShareBytes {
                ended: !over && (body.len() as u64) < len,
                data: body,
            }),
            200 => Err(self.bad(&what(), "the whole share: it ignored the Range header")),
            s => Err(self.bad(&what(), format!("HTTP {s}"))),
        }
    }

    /// `PUT /storage/v1/lease/<SI>`: renew (or add) the lease with these
    /// secrets on every share of `si` this server holds. `Ok(false)` when
    /// it holds none (404).
    pub async fn renew_lease(
        &self,
        tenant: &Tenant,
        si: &StorageIndex,
        renew: &[u8],
        cancel: &[u8],
    ) -> Result<bool, Failure> {
        let path = format!("/storage/v1/lease/{si}");
        let headers = [
            (
                "X-Tahoe-Authorization",
                format!("lease-renew-secret {}", BASE64.encode(renew)),
            ),
            (
                "X-Tahoe-Authorization",
                format!("lease-cancel-secret {}", BASE64.encode(cancel)),
            ),
        ];
        let (status, _, _) = self
            .request(
                tenant,
                Method::PUT,
                ADD_LEASE,
                &path,
                &headers,
                SMALL_BODY,
                Vec::new(),
            )
            .await?;
        match status.as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            s => Err(self.bad("a lease renewal", format!("HTTP {s}"))),
        }
    }

    /// `GET /storage/v1/version`: whether the server answers (and is the
    /// pinned one).
    pub async fn probe(&self) -> Result<(), Failure> {
        let (status, _, _) = self
            .request(
                &Tenant::default(),
                Method::GET,
                VERSION,
                "/storage/v1/version",
                &[],
                SMALL_BODY,
                Vec::new(),
            )
            .await?;
        if status != StatusCode::OK {
            return Err(self.bad("its version request", format!("HTTP {}", status.as_u16())));
        }
        Ok(())
    }
}

/// At most `limit` bytes of a body, into `body` (emptied first), and
/// whether it had more. Grows with what arrives, never reserved from a
/// length the server states.
async fn body_up_to(
    mut resp: reqwest::Response,
    limit: usize,
    mut body: Vec<u8>,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    body.clear();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    let msg = steward_backend::http::describe_reqwest(e);
    if e.is_timeout() {
        format!("{msg} (after {timeout:?})")
    } else {
        msg
    }
}

/// Decode the CBOR set of share numbers (`#6.258([* uint])`; a plain array
/// is accepted too).
pub fn decode_share_set(body: &[u8]) -> Result<BTreeSet<u32>, String> {
    use ciborium::value::Value;
    let v: Value =
        ciborium::from_reader(body).map_err(|e| format!("a body that is not CBOR ({e})"))?;
    let arr = match v {
        Value::Tag(258, inner) => match *inner {
            Value::Array(a) => a,
            _ => return Err("a CBOR set that is not an array".into()),
        },
        Value::Array(a) => a,
        _ => return Err("CBOR that is not a set of share numbers".into()),
    };
    arr.into_iter()
        .map(|x| match x {
            Value::Integer(i) => u32::try_from(i128::from(i))
                .ok()
                .filter(|n| *n < 256)
                .ok_or_else(|| format!("a share number out of range ({})", i128::from(i))),
            _ => Err("a share number that is not an integer".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_is_read_no_further_than_asked() {
        // A server that sends more than a range asked for cannot make us
        // hold more than the range.
        let resp = |n: usize| reqwest::Response::from(http::Response::new(vec![7u8; n]));
        let (body, over) = body_up_to(resp(100), 40, Vec::new()).await.unwrap();
        assert_eq!((body.len(), over), (40, true));
        let (body, over) = body_up_to(resp(40), 40, vec![1; 7]).await.unwrap();
        assert_eq!((body.len(), over), (40, false));
        let (body, over) = body_up_to(resp(0), 40, Vec::new()).await.unwrap();
        assert_eq!((body.len(), over), (0, false));
    }

    #[test]
    fn reads_of_different_sizes_are_paced_apart() {
        assert_eq!(read_kind(1000), read_kind(1023));
        assert_ne!(read_kind(1000), read_kind(4096));
        assert_ne!(read_kind(64 << 10), read_kind(1 << 20));
        assert_eq!(read_kind(0), read_kind(1));
        let _ = read_kind(u64::MAX);
    }

    #[test]
    fn decodes_cbor_share_sets() {
        // Bytes answered by a tahoe-lafs 1.20.0 server: tag 258, [3].
        assert_eq!(
            decode_share_set(&[0xd9, 0x01, 0x02, 0x81, 0x03]).unwrap(),
            [3].into()
        );
        assert!(decode_share_set(&[0xd9, 0x01, 0x02, 0x80])
            .unwrap()
            .is_empty());
        assert_eq!(
            decode_share_set(&[0x82, 0x00, 0x01]).unwrap(),
            [0, 1].into()
        );
        assert!(decode_share_set(b"{}").is_err());
        assert!(decode_share_set(&[0x81, 0x19, 0x01, 0x00]).is_err()); // [256]
    }
}
