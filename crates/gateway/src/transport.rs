//! How the gateway client sends one listing or check request: straight
//! through hyper's pooled HTTP/1 client, with each gateway's base (scheme,
//! host and port, path prefix, and the `Authorization` header for a URL
//! password) worked out once, when the client is made.
//!
//! Why not reqwest, as everywhere else: every object of a check costs one
//! request, and reqwest parses each request's URL three times with the
//! `url` crate (the `String` given, again in its redirect layer, and once
//! more when the answer comes back), about 28,000 instructions a request
//! under callgrind, more than steward's own work on the object; with its
//! redirect and retry layers and header copies about 35,000 in all. Here a
//! request costs one `http::Uri` assembled from parts that are already
//! parsed. Tahoe's web API answers these requests without redirects, so
//! none are followed: a 3xx answer is reported for the object
//! ([`crate::status_error`]), never retried.
//!
//! `https://` gateways still go through reqwest (its TLS set-up), as do
//! the rare requests of a run (the welcome-page probe, the gateway's own
//! NDJSON streams).

use crate::describe_reqwest;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::time::Duration;
use steward_backend::http::scrub;
use steward_backend::retry::Attempt;

/// Connections kept open per gateway (as many as requests in flight).
const IDLE_PER_HOST: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// reqwest's default, kept: an idle connection older than this is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One gateway's base URL, parsed once.
pub(crate) struct Base {
    scheme: Scheme,
    authority: Authority,
    /// The URL's path, ending in `/` (`/` for most gateways).
    path: String,
    /// `Basic` credentials from the URL's user and password, if any.
    auth: Option<HeaderValue>,
    /// `https://`: sent through reqwest.
    tls: bool,
    /// The whole base URL, for reqwest (may hold a password).
    url: String,
}

impl Base {
    /// `url` is a base URL that `url::Url` parsed, ending in `/`.
    pub(crate) fn new(url: &reqwest::Url, base: &str) -> Result<Base, String> {
        let tls = url.scheme() == "https";
        let host = url.host_str().ok_or("it names no host")?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let authority = Authority::try_from(authority).map_err(|e| e.to_string())?;
        let path = url.path().to_string();
        PathAndQuery::try_from(path.as_str()).map_err(|e| e.to_string())?;
        let auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or(""))
            );
            let mut v = HeaderValue::try_from(format!(
                "Basic {}",
                data_encoding::BASE64.encode(pair.as_bytes())
            ))
            .map_err(|e| e.to_string())?;
            v.set_sensitive(true);
            Some(v)
        };
        Ok(Base {
            scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
            authority,
            path,
            auth,
            tls,
            url: base.to_string(),
        })
    }

    /// The request URI for `path_and_query` (relative to the base).
    fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        let pq = if self.path == "/" {
            let mut s = String::with_capacity(1 + path_and_query.len());
            s.push('/');
            s.push_str(path_and_query);
            s
        } else {
            format!("{}{path_and_query}", self.path)
        };
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::from_maybe_shared(Bytes::from(pq))?)
            .build()
    }
}

/// The clients requests go through.
pub(crate) struct Transport {
    plain: Client<HttpConnector, Empty<Bytes>>,
    tls: reqwest::Client,
}

impl Transport {
    /// `tls` is the reqwest client for `https://` gateways.
    pub(crate) fn new(tls: reqwest::Client) -> Transport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let plain = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Transport { plain, tls }
    }

    /// One attempt of a request, classified: 502-504, no answer and a
    /// timeout are transient, any other answer final.
    pub(crate) async fn send(
        &self,
        base: &Base,
        method: http::Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Attempt<(u16, Bytes)> {
        let answer = if base.tls {
            let req = self
                .tls
                .request(method, format!("{}{path_and_query}", base.url))
                .timeout(timeout);
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    resp.bytes()
                        .await
                        .map(|body| (status, body))
                        .map_err(|e| (e.is_timeout(), describe_reqwest(&e)))
                }
                Err(e) => Err((e.is_timeout(), describe_reqwest(&e))),
            }
        } else {
            let uri = match base.uri(path_and_query) {
                Ok(uri) => uri,
                // The base was checked when the client was made and caps
                // are canonical: not reached, but never retried.
                Err(e) => {
                    return Attempt::Final((
                        400,
                        Bytes::from(format!("steward could not form the request's URI: {e}")),
                    ))
                }
            };
            let mut req = http::Request::new(Empty::new());
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            if let Some(a) = &base.auth {
                req.headers_mut().insert(AUTHORIZATION, a.clone());
            }
            let exchange = async {
                let resp = self.plain.request(req).await.map_err(|e| {
                    let connect = e.is_connect();
                    describe(&e, connect)
                })?;
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| describe(&e, false))?;
                Ok::<_, String>((status, body.to_bytes()))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Err(_) => Err((true, "timed out".to_string())),
                Ok(r) => r.map_err(|why| (false, why)),
            }
        };
        match answer {
            Ok((status, _)) if matches!(status, 502..=504) => Attempt::Transient {
                why: format!("HTTP {status}"),
                timeout: false,
            },
            Ok(answer) => Attempt::Answer(answer),
            Err((timeout, why)) => Attempt::Transient { why, timeout },
        }
    }
}

/// A short, cap-free description of a transport error, as
/// [`describe_reqwest`] gives for reqwest's: what failed, then its
/// innermost cause ("Connection refused").
fn describe(e: &(dyn StdError + 'static), connect: bool) -> String {
    let mut msg = if connect {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut inner = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        inner = s.to_string();
        src = s.source();
    }
    msg.push_str(": ");
    msg.push_str(&inner);
    scrub(&msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Base {
        Base::new(&reqwest::Url::parse(url).unwrap(), url).unwrap()
    }

    #[test]
    fn bases_are_split_once_and_passwords_become_a_header() {
        let b = base("http://127.0.0.1:3456/");
        assert_eq!(
            b.uri("uri/URI:CHK:a:b:2:5:9?t=check&output=JSON")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:3456/uri/URI:CHK:a:b:2:5:9?t=check&output=JSON"
        );
        assert!(b.auth.is_none() && !b.tls);
        let b = base("http://alice:s%3Acret@gw.example/tahoe/");
        assert_eq!(
            b.uri("uri/x?t=json").unwrap().to_string(),
            "http://gw.example/tahoe/uri/x?t=json"
        );
        // base64("alice:s:cret")
        assert_eq!(b.auth.unwrap(), "Basic YWxpY2U6czpjcmV0");
        assert!(base("https://gw.example/").tls);
    }
}
