//! Adaptive concurrency: how many requests to keep in flight at one server.
//!
//! Too few requests in flight and a distant grid is checked one round trip
//! at a time; too many and a gateway (one Python process) only queues them,
//! and on loopback gets slower as it juggles them (measured: a 421-object
//! deep check took 2.2 s with 8 checks in flight and 5.1 s with 32). The
//! right number depends on the network and the server, so [`Pace`] finds it
//! as TCP Vegas does for a congestion window: it keeps the lowest latency
//! seen for each kind of request as the "no queue" baseline, estimates how
//! many of the requests in flight are only queued,
//! `limit × (1 − baseline / latency)`, and raises the limit while fewer than
//! [`Pace::LOW`] are queued or latencies stay within [`Pace::TOLERANCE`] of
//! the baseline (quickly while almost none are queued), and lowers it when
//! more than [`Pace::HIGH`] are queued and latency is [`Pace::SLOW`] times
//! the baseline. (The tolerance matters on a far grid, where checks of
//! different objects take different numbers of round trips: the first
//! benchmark at 100 ms held the limit where the gateway was 23% busy.) On loopback it settles at a handful; at
//! 100 ms round trips, at the dozens that keep the gateway busy.
//!
//! Slow start (doubling once per round) ends when the round's *median*
//! latency shows a queue: a few slow requests (an object needing more round
//! trips, a Tahoe gateway opening a new connection to a storage server)
//! lift the mean without any queue, and at 100 ms ended slow start at 8 in
//! flight. (Which waiting request gets a place the pace allows, listings
//! first, is the scheduler's business: [`crate::sched`].)
//!
//! Latencies are compared with the baseline of their own kind
//! ([`RequestKind`]: a listing, a check of an immutable or of a mutable
//! object, a verify by file size, a repair) so that a mix of fast and slow
//! requests is not mistaken for queueing. Failed requests are not counted.

use std::collections::HashMap;
use std::time::Duration;
use steward_cap::Cap;

/// What a request does, closely enough that requests of one kind take
/// about as long as each other without a queue: each kind has its own
/// latency baseline. A mutable object's check needs more round trips than
/// an immutable one's, and a verify downloads the whole file, so those are
/// told apart by mutability and (for immutable files) by size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestKind(u16);

impl RequestKind {
    /// A directory listing.
    pub const LIST: RequestKind = RequestKind(0);

    /// A check of `cap` (`verify`: downloading every share).
    pub fn check(cap: &Cap, verify: bool) -> RequestKind {
        match (verify, cap.is_mutable()) {
            (false, false) => RequestKind(1),
            (false, true) => RequestKind(2),
            (true, true) => RequestKind(3),
            // Sizes by factors of 4: 1 KB, 4 KB, ... each their own kind.
            (true, false) => {
                let size = cap.size().unwrap_or(0).max(1);
                RequestKind(10 + (size.ilog2() / 2) as u16)
            }
        }
    }

    /// One kind of request a backend sends to a storage server (`n`: the
    /// backend's own numbering), for a [`Pace`] per server.
    pub const fn storage(n: u8) -> RequestKind {
        RequestKind(100 + n as u16)
    }

    /// A check-and-repair of `cap`.
    pub fn repair(cap: &Cap) -> RequestKind {
        RequestKind(if cap.is_mutable() { 5 } else { 4 })
    }
}

/// An adaptive limit on requests in flight at one endpoint (see the
/// module doc). Only the limit: admitting requests under it, and waking
/// those that wait, is the scheduler's business ([`crate::sched`]), which
/// holds one `Pace` per endpoint.
#[derive(Clone, Debug)]
pub struct Pace {
    limit: f64,
    /// Lowest latency seen per kind: the "no queue" baseline.
    base: HashMap<RequestKind, f64>,
    /// Samples since the baselines were last measured.
    base_samples: usize,
    /// While re-measuring the baselines: samples still to take, the limit
    /// to go back to, and the lowest latencies seen meanwhile.
    probe_left: usize,
    saved_limit: f64,
    probe_min: HashMap<RequestKind, f64>,
    /// Latency / baseline ratios since the last adjustment.
    ratios: Vec<f64>,
    /// Still doubling every round (until the first sign of a queue): then
    /// the limit is adjusted after every `limit` samples, so that it grows
    /// once per round trip, as TCP's slow start does.
    slow_start: bool,
    min: usize,
    max: usize,
    adaptive: bool,
}

impl Pace {
    /// Fewer queued requests than this: raise the limit.
    pub const LOW: f64 = 2.0;
    /// More queued requests than this: lower it (if latency is also above
    /// [`Pace::SLOW`] times its baseline).
    pub const HIGH: f64 = 4.0;
    /// Mean latency / baseline below which nothing is taken for a queue.
    pub const TOLERANCE: f64 = 1.2;
    /// Mean latency / baseline above which a queue is worth shrinking.
    pub const SLOW: f64 = 1.5;
    /// Samples after which the baselines are measured again (with one
    /// request in flight for a moment, as TCP BBR probes its round-trip
    /// time), so that they follow a network or server whose speed changes.
    const BASE_WINDOW: usize = 2000;
    /// Samples taken at the lowest limit to measure the baselines.
    const PROBE_SAMPLES: usize = 8;

    /// At most `max` requests in flight. Adaptive, it starts with one (to
    /// measure the baselines without a queue) and grows from there; with
    /// `adaptive` false the limit stays at `max`.
    pub fn new(max: usize, adaptive: bool) -> Pace {
        let max = max.max(1);
        Pace {
            limit: if adaptive { 1.0 } else { max as f64 },
            base: HashMap::new(),
            base_samples: 0,
            probe_left: 0,
            saved_limit: 1.0,
            probe_min: HashMap::new(),
            ratios: Vec::new(),
            slow_start: true,
            min: 1,
            max,
            adaptive,
        }
    }

    /// Starts adaptive growth at `start` requests in flight instead of one
    /// (at most the maximum). For servers where opening a connection costs
    /// round trips (a new TLS connection per extra request in flight):
    /// growing from one would open connections one doubling at a time. The
    /// baselines are still the lowest latencies seen, and are measured
    /// again at one request in flight every so often.
    pub fn starting_at(mut self, start: usize) -> Pace {
        if self.adaptive {
            self.limit = start.clamp(1, self.max) as f64;
            self.saved_limit = self.limit;
        }
        self
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// The most this pace may ever allow.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Requests that may be in flight now: the whole part of the limit,
    /// at least one.
    pub fn places(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// A request of `kind` was answered after `latency`: adjust the limit
    /// (failed requests are not recorded).
    pub fn record(&mut self, kind: RequestKind, latency: Duration) {
        if self.adaptive {
            self.sample(kind, latency.as_secs_f64().max(1e-6));
        }
    }

    fn sample(&mut self, kind: RequestKind, latency: f64) {
        let s = self;
        if s.probe_left > 0 {
            // Re-measuring: requests drain down to one in flight; the
            // lowest latencies seen are the new baselines.
            let m = s.probe_min.entry(kind).or_insert(latency);
            *m = m.min(latency);
            s.probe_left -= 1;
            if s.probe_left == 0 {
                let fresh = std::mem::take(&mut s.probe_min);
                s.base.extend(fresh);
                s.limit = s.saved_limit;
                s.ratios.clear();
            }
            return;
        }
        let base = {
            let b = s.base.entry(kind).or_insert(latency);
            *b = b.min(latency);
            *b
        };
        s.base_samples += 1;
        if s.base_samples >= Self::BASE_WINDOW {
            s.base_samples = 0;
            s.saved_limit = s.limit;
            s.probe_left = s.limit as usize + Self::PROBE_SAMPLES;
            s.probe_min.clear();
            s.limit = s.min as f64;
            return;
        }
        s.ratios.push(latency / base);
        let window = if s.slow_start {
            (s.limit as usize).max(1)
        } else {
            (s.limit as usize).max(8)
        };
        if s.ratios.len() < window {
            return;
        }
        let mean = s.ratios.iter().sum::<f64>() / s.ratios.len() as f64;
        // The typical request of the round: a few slow ones (an object
        // needing more round trips, a server opening a new connection)
        // lift the mean but not the median; a queue lifts both.
        s.ratios.sort_by(f64::total_cmp);
        let median = s.ratios[s.ratios.len() / 2];
        s.ratios.clear();
        let queued = s.limit * (1.0 - 1.0 / mean.max(1.0));
        if s.slow_start {
            // Grow fast, as TCP's slow start does, until the typical
            // request waits in a queue.
            if median < Self::TOLERANCE {
                s.limit *= 2.0;
            } else {
                s.slow_start = false;
            }
        } else if queued < 0.5 {
            s.limit *= 2.0;
        } else if mean < Self::TOLERANCE {
            // Latencies within the spread a far grid shows without any
            // queue (some checks take more round trips than others): keep
            // growing, in proportion.
            s.limit = (s.limit * 1.1).max(s.limit + 1.0);
        } else if queued < Self::LOW {
            s.limit += 1.0;
        } else if queued > Self::HIGH && mean > Self::SLOW {
            s.limit -= 1.0;
        }
        s.limit = s.limit.clamp(s.min as f64, s.max as f64);
        tracing::debug!(limit = s.limit, queued, "pace");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that serves one request at a time in `service` seconds,
    /// plus a fixed network delay: latency = delay + queue.
    fn simulate(pace: &mut Pace, delay: f64, service: f64, rounds: usize) -> usize {
        for _ in 0..rounds {
            let c = pace.limit().max(1) as f64;
            // Closed system: c requests in flight; the server is the
            // bottleneck once c * service > delay + service.
            let latency = (delay + service).max(c * service);
            pace.sample(RequestKind(1), latency);
        }
        pace.limit()
    }

    #[test]
    fn settles_low_on_a_busy_local_server_and_high_on_a_far_one() {
        let mut local = Pace::new(128, true);
        let l = simulate(&mut local, 0.001, 0.010, 5000);
        assert!((2..=7).contains(&l), "loopback, CPU-bound server: {l}");
        let mut far = Pace::new(128, true);
        let f = simulate(&mut far, 0.200, 0.010, 20000);
        assert!(
            (18..=34).contains(&f),
            "200 ms away, 10 ms per request: about 21 keep it busy (and up to 50% more only queue); got {f}"
        );
        let mut capped = Pace::new(12, true);
        assert_eq!(
            simulate(&mut capped, 0.200, 0.010, 20000),
            12,
            "never above the maximum"
        );
        let mut fixed = Pace::new(32, false);
        assert_eq!(
            simulate(&mut fixed, 0.001, 0.010, 1000),
            32,
            "not adaptive: the maximum"
        );
    }

    #[test]
    fn a_far_server_with_slow_outliers_is_still_ramped_up_fast() {
        // 100 ms away, one request in five takes two round trips more (a
        // new connection): the mean is 1.4 x the baseline with no queue at
        // all. Slow start must not end on that.
        let mut p = Pace::new(64, true);
        for n in 0..200 {
            let c = p.limit().max(1) as f64;
            let outlier = n % 5 == 4;
            let latency = 0.100 * if outlier { 3.0 } else { 1.0 } + c * 0.0005;
            p.sample(RequestKind(1), latency);
        }
        // 1 + 2 + 4 + 8 + 16 + 32 = 63 samples reach 64 in slow start; at
        // 64 the 0.5 ms per request in flight is a real queue (32 ms), so
        // it may give back a little after that.
        assert!(p.limit() >= 56, "{}", p.limit());
    }
}
