//! Endpoints: the servers requests go to (a gateway's web API, a storage
//! server), named once per process, and whether each one is answering.
//!
//! An [`Endpoint`] is registered with the process's scheduler under a key
//! (its URL): two clients of the same gateway get the same endpoint, and so
//! share its pace ([`crate::pace`]) and its health. A [`Group`] is the set of
//! endpoints a request may go to (any of a grid's gateways; exactly one
//! storage server); the scheduler picks one of them when the request is
//! admitted.
//!
//! Health is the set-aside layer: after [`SetAside::after_failures`]
//! consecutive transient failures an endpoint is set aside for a while
//! (doubling while it keeps failing, up to [`SetAside::max`]), and requests
//! go to the others of their group. When every endpoint of a group is set
//! aside, [`WhenAllDown`] says what to do: wait for the one that comes back
//! first (gateways: a run has nowhere else to go), or fail at once
//! (storage servers: Tahoe counts a server that does not answer as "not
//! responding", and the check goes on without it). The first failure of an
//! outage and the recovery are recorded as [`Outage`]s, so that a run can
//! say which server stopped answering and since when.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// When and for how long a failing endpoint is set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetAside {
    /// Consecutive transient failures before it is set aside.
    pub after_failures: u32,
    /// How long the first time; doubles while it keeps failing.
    pub base: Duration,
    /// The longest.
    pub max: Duration,
    pub when_all_down: WhenAllDown,
}

/// What a request does when every endpoint of its group is set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenAllDown {
    /// Go to the endpoint that comes back first, without waiting.
    UseSoonest,
    /// Fail at once, without a request.
    Fail,
}

impl SetAside {
    /// Gateways: set aside at the first failure (another gateway may
    /// take the request), from 2 s up to a minute.
    pub const GATEWAY: SetAside = SetAside {
        after_failures: 1,
        base: Duration::from_secs(2),
        max: Duration::from_secs(60),
        when_all_down: WhenAllDown::UseSoonest,
    };
}

/// How an endpoint is registered: its pace's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Requests in flight at this endpoint at most (the per-endpoint cap).
    pub max_in_flight: usize,
    /// Find the best number below the cap from latencies (see
    /// [`crate::pace`]), or always allow the cap.
    pub adaptive: bool,
    /// Adaptive growth starts here.
    pub start: usize,
    pub set_aside: SetAside,
}

/// A period when an endpoint did not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    /// The endpoint's name (a URL without password, or a server id).
    pub endpoint: String,
    /// The first failure of the outage.
    pub since: SystemTime,
    /// When it answered again, if it has.
    pub until: Option<SystemTime>,
    /// The failure that began it.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Health {
    consecutive_failures: u32,
    down_until: Option<Instant>,
    /// Set-asides in a row (the backoff exponent).
    strikes: u32,
    /// The outage in progress, if any (first failure).
    outage: Option<(SystemTime, String)>,
}

/// One server requests go to. Created through
/// [`crate::sched::Scheduler::endpoint`].
#[derive(Debug)]
pub struct Endpoint {
    /// Index in the scheduler's table.
    pub(crate) index: usize,
    key: String,
    name: String,
    pub(crate) config: EndpointConfig,
    health: Mutex<Health>,
    outages: Mutex<Vec<Outage>>,
    requests: AtomicU64,
    peak_in_flight: AtomicU32,
}

impl Endpoint {
    pub(crate) fn new(index: usize, key: String, name: String, config: EndpointConfig) -> Self {
        Endpoint {
            index,
            key,
            name,
            config,
            health: Mutex::new(Health::default()),
            outages: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            peak_in_flight: AtomicU32::new(0),
        }
    }

    /// What requests are sent to (a base URL; may hold a password).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A name for messages and logs: never holds a password or a cap.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests sent here so far.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The most requests ever in flight here at once.
    pub fn peak_in_flight(&self) -> u32 {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn count_request(&self, in_flight: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.peak_in_flight
            .fetch_max(in_flight as u32, Ordering::Relaxed);
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(remaining)` while set aside.
    pub fn set_aside_for(&self, now: Instant) -> Option<Duration> {
        self.health()
            .down_until
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    pub(crate) fn down_until(&self) -> Option<Instant> {
        self.health().down_until
    }

    /// An answer came back: the endpoint is healthy (ends an outage).
    pub fn mark_ok(&self) {
        let mut h = self.health();
        let was_set_aside = h.strikes > 0;
        h.consecutive_failures = 0;
        h.strikes = 0;
        h.down_until = None;
        let outage = h.outage.take();
        drop(h);
        // One failure that a retry got past is not an outage.
        if let (Some((since, reason)), true) = (outage, was_set_aside) {
            tracing::warn!(endpoint = %self.name, "answering again");
            self.outages_mut().push(Outage {
                endpoint: self.name.clone(),
                since,
                until: Some(SystemTime::now()),
                reason,
            });
        }
    }

    /// A transient failure (no answer, or 502-504); `why` is one line.
    /// Returns whether this failure set the endpoint aside.
    pub fn mark_failed(&self, why: &str) -> bool {
        let sa = self.config.set_aside;
        let mut h = self.health();
        let now = Instant::now();
        if h.outage.is_none() {
            h.outage = Some((SystemTime::now(), why.to_string()));
        }
        if h.down_until.is_some_and(|t| t > now) {
            return false; // already set aside by a concurrent request
        }
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        if h.consecutive_failures < sa.after_failures {
            return false;
        }
        h.consecutive_failures = 0;
        let factor = 1u32 << h.strikes.min(6);
        h.strikes = h.strikes.saturating_add(1);
        let d = sa.base.saturating_mul(factor).min(sa.max);
        h.down_until = Some(now + d);
        let first = h.strikes == 1;
        drop(h);
        if first {
            tracing::warn!(endpoint = %self.name, set_aside = ?d, reason = why, "not answering; set aside");
        } else {
            tracing::debug!(endpoint = %self.name, set_aside = ?d, "still not answering");
        }
        true
    }

    fn outages_mut(&self) -> std::sync::MutexGuard<'_, Vec<Outage>> {
        self.outages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Outages so far, the one in progress last (with `until: None`).
    pub fn outages(&self) -> Vec<Outage> {
        let mut v = self.outages_mut().clone();
        let h = self.health();
        if let (Some((since, reason)), true) = (&h.outage, h.strikes > 0) {
            v.push(Outage {
                endpoint: self.name.clone(),
                since: *since,
                until: None,
                reason: reason.clone(),
            });
        }
        v
    }
}

/// The endpoints a request may go to; the scheduler picks one when it
/// admits the request. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Group {
    pub(crate) id: usize,
    pub(crate) members: Arc<[Arc<Endpoint>]>,
}

impl Group {
    /// The endpoints of the group.
    pub fn members(&self) -> &[Arc<Endpoint>] {
        &self.members
    }
}

/// A URL as it may be shown: without a password (`http://user:***@host/`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!(
                "{}://{}{}{}",
                &url[..scheme_end],
                if user.is_empty() {
                    String::new()
                } else {
                    format!("{user}:***@")
                },
                if user.is_empty() { "***@" } else { "" },
                &rest[at + 1..]
            )
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("http://alice:s3cret@127.0.0.1:3456/"),
            "http://alice:***@127.0.0.1:3456/"
        );
        assert_eq!(
            redact_url("https://:tok@h/uri?x=a@b"),
            "https://***@h/uri?x=a@b"
        );
        assert_eq!(redact_url("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    fn ep(after: u32) -> Endpoint {
        Endpoint::new(
            0,
            "k".into(),
            "n".into(),
            EndpointConfig {
                max_in_flight: 1,
                adaptive: false,
                start: 1,
                set_aside: SetAside {
                    after_failures: after,
                    base: Duration::from_secs(5),
                    max: Duration::from_secs(60),
                    when_all_down: WhenAllDown::Fail,
                },
            },
        )
    }

    #[test]
    fn set_aside_after_enough_failures_and_outages_are_recorded() {
        let e = ep(3);
        assert!(!e.mark_failed("refused"));
        assert!(!e.mark_failed("refused"));
        assert!(e.outages().is_empty(), "failures a retry got past");
        assert!(e.mark_failed("refused"));
        assert!(e.set_aside_for(Instant::now()).is_some());
        let o = e.outages();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].until, None);
        assert_eq!(o[0].reason, "refused");
        e.mark_ok();
        assert!(e.set_aside_for(Instant::now()).is_none());
        let o = e.outages();
        assert_eq!(o.len(), 1);
        assert!(o[0].until.is_some());
    }
}
