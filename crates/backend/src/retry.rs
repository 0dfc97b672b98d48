//! One request, as every client sends it: admitted by the scheduler,
//! retried with backoff when it fails transiently, its endpoint's health
//! updated, and logged when slow. The gateway client and the native client
//! both send every request through [`Stack::call`]; each supplies only the
//! attempt itself (build the HTTP request for the endpoint it is given,
//! send it, and classify the outcome as an [`Attempt`]).
//!
//! The layers, outermost first:
//!
//! 1. **retry** ([`RetryPolicy`]): a transient failure (no answer, a
//!    timeout, HTTP 502-504) is tried again, on another endpoint of the
//!    group if one is up, else after an exponential backoff with jitter;
//!    timeouts are retried fewer times than refusals, since an object that
//!    makes a server hang makes it hang again;
//! 2. **admission** ([`crate::sched`]): the tenant's fair share, the
//!    process budget and the endpoint's pace; the endpoint is chosen here;
//! 3. **health** ([`crate::endpoint`]): failures set an endpoint aside,
//!    answers bring it back;
//! 4. **slow-request warning**: a request still unanswered after
//!    [`RetryPolicy::slow_after`] is logged once, long before it times out.

use crate::endpoint::{Endpoint, Group};
use crate::pace::RequestKind;
use crate::sched::{Refused, Scheduler, Tenant};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often and how patiently to try a request again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first for a transient failure.
    pub retries: u32,
    /// Of those, how many may follow a timeout.
    pub timeout_retries: u32,
    /// First backoff; doubles with each attempt, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Log a request still unanswered after this long.
    pub slow_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 6,
            timeout_retries: 1,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            slow_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `n` (1-based), with up to 25% jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let d = self
            .backoff
            .saturating_mul(1 << (n.saturating_sub(1)).min(16))
            .min(self.max_backoff);
        d + d.mul_f64(rand::random::<f64>() * 0.25)
    }
}

/// How one attempt ended.
pub enum Attempt<T> {
    /// An answer (whatever it says): its latency counts, the endpoint is
    /// healthy.
    Answer(T),
    /// No usable answer, worth another try: `why` is one line without a
    /// cap; `timeout` if it ran out of time.
    Transient { why: String, timeout: bool },
    /// A failure no retry can mend and that says nothing of the
    /// endpoint's health or speed (for example a refused certificate).
    Final(T),
}

/// Why [`Stack::call`] gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Not sent: every endpoint of the group is set aside.
    Refused(Refused),
    /// Every attempt failed transiently; the last failure, and where.
    GaveUp {
        endpoint: String,
        why: String,
        timeout: bool,
        attempts: u32,
    },
}

/// The request path shared by every client (see the module doc).
#[derive(Clone)]
pub struct Stack {
    pub sched: Arc<Scheduler>,
    pub retry: RetryPolicy,
}

impl Stack {
    pub fn new(sched: Arc<Scheduler>, retry: RetryPolicy) -> Self {
        Stack { sched, retry }
    }

    /// Send one request of `tenant` to an endpoint of `group`: `attempt`
    /// is called with the endpoint chosen for each try. `what` names the
    /// object for the slow-request log (never a whole cap).
    pub async fn call<T, F, Fut>(
        &self,
        tenant: &Tenant,
        kind: RequestKind,
        group: &Group,
        what: &(dyn fmt::Display + Sync),
        mut attempt: F,
    ) -> Result<T, CallError>
    where
        F: FnMut(Arc<Endpoint>) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut tries = 0u32;
        let mut timeouts = 0u32;
        loop {
            let permit = self
                .sched
                .admit(tenant, kind, group)
                .await
                .map_err(CallError::Refused)?;
            let ep = permit.endpoint().clone();
            let outcome = warn_if_slow(self.retry.slow_after, &ep, what, attempt(ep.clone())).await;
            tracing::debug!(
                endpoint = %ep.name(),
                ?kind,
                ms = permit.elapsed().as_millis() as u64,
                limit = self.sched.limit(&ep),
                ok = matches!(outcome, Attempt::Answer(_)),
                "request answered"
            );
            match outcome {
                Attempt::Answer(v) => {
                    permit.done();
                    ep.mark_ok();
                    return Ok(v);
                }
                Attempt::Final(v) => return Ok(v),
                Attempt::Transient { why, timeout } => {
                    drop(permit);
                    ep.mark_failed(&why);
                    timeouts += u32::from(timeout);
                    if tries >= self.retry.retries
                        || (timeout && timeouts > self.retry.timeout_retries)
                    {
                        return Err(CallError::GaveUp {
                            endpoint: ep.name().to_string(),
                            why,
                            timeout,
                            attempts: tries + 1,
                        });
                    }
                    tries += 1;
                    tracing::debug!(endpoint = %ep.name(), attempt = tries, error = %why, "transient failure, retrying");
                    let now = Instant::now();
                    let elsewhere = group
                        .members()
                        .iter()
                        .any(|e| !Arc::ptr_eq(e, &ep) && e.set_aside_for(now).is_none());
                    if !elsewhere {
                        tokio::time::sleep(self.retry.delay(tries)).await;
                    }
                }
            }
        }
    }
}

/// Run `fut`, logging once if it is still running after `after`.
async fn warn_if_slow<F: Future>(
    after: Duration,
    ep: &Endpoint,
    what: &(dyn fmt::Display + Sync),
    fut: F,
) -> F::Output {
    tokio::pin!(fut);
    tokio::select! {
        biased;
        out = &mut fut => return out,
        _ = tokio::time::sleep(after) => {}
    }
    tracing::warn!(
        endpoint = %ep.name(),
        "still waiting after {}s for a request about {what}",
        after.as_secs()
    );
    fut.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{EndpointConfig, SetAside};
    use std::sync::atomic::{AtomicU32, Ordering};

    fn stack(retries: u32) -> (Stack, Group, Group) {
        let sched = Scheduler::new(16);
        let cfg = EndpointConfig {
            max_in_flight: 4,
            adaptive: false,
            start: 4,
            set_aside: SetAside::GATEWAY,
        };
        let a = sched.endpoint("a", "a", cfg);
        let b = sched.endpoint("b", "b", cfg);
        let one = sched.group(std::slice::from_ref(&a));
        let two = sched.group(&[a, b]);
        let policy = RetryPolicy {
            retries,
            backoff: Duration::from_millis(1),
            ..Default::default()
        };
        (Stack::new(sched, policy), one, two)
    }

    #[tokio::test]
    async fn transient_failures_are_retried_on_another_endpoint() {
        let (s, _, two) = stack(3);
        let tried = std::sync::Mutex::new(Vec::new());
        let out = s
            .call(&Tenant::default(), RequestKind::LIST, &two, &"x", |ep| {
                let first = tried.lock().unwrap().is_empty();
                tried.lock().unwrap().push(ep.key().to_string());
                async move {
                    if first {
                        Attempt::Transient {
                            why: "refused".into(),
                            timeout: false,
                        }
                    } else {
                        Attempt::Answer(7)
                    }
                }
            })
            .await;
        assert_eq!(out, Ok(7));
        let tried = tried.into_inner().unwrap();
        assert_eq!(tried.len(), 2);
        assert_ne!(tried[0], tried[1], "the retry went to the other gateway");
    }

    #[tokio::test]
    async fn timeouts_are_retried_less_than_refusals() {
        let (s, one, _) = stack(6);
        let n = AtomicU32::new(0);
        let out: Result<(), _> = s
            .call(&Tenant::default(), RequestKind::LIST, &one, &"x", |_| {
                n.fetch_add(1, Ordering::Relaxed);
                async {
                    Attempt::Transient {
                        why: "timed out".into(),
                        timeout: true,
                    }
                }
            })
            .await;
        assert!(matches!(out, Err(CallError::GaveUp { timeout: true, .. })));
        assert_eq!(n.load(Ordering::Relaxed), 2, "one retry after a timeout");
        let n = AtomicU32::new(0);
        let out: Result<(), _> = s
            .call(&Tenant::default(), RequestKind::LIST, &one, &"x", |_| {
                n.fetch_add(1, Ordering::Relaxed);
                async {
                    Attempt::Transient {
                        why: "refused".into(),
                        timeout: false,
                    }
                }
            })
            .await;
        assert!(matches!(out, Err(CallError::GaveUp { attempts: 7, .. })));
        assert_eq!(n.load(Ordering::Relaxed), 7);
    }
}
