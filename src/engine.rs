//! The stage runner's side of every stage: how a stage is told to stop, how
//! it reports what it is doing, and how its notices reach a person.
//!
//! Every stage (traverse, check, repair) runs with a [`StageCtx`]:
//!
//! * **stop**: a watch that turns true on Ctrl-C, SIGTERM, a cancelled
//!   operation or a client that went away. Stages wait on it beside their
//!   work, drop what is in flight (aborting its requests) and commit a
//!   checkpoint: a stop takes effect within a second, and never leaves
//!   output that no checkpoint covers.
//! * **status** ([`StageStatus`]): objects done, input position and total
//!   (when known), the last error, and the requests the operation has in
//!   flight at the scheduler; [`StageStatus::report`] adds the rate and an
//!   ETA. A terminal progress bar, `steward dispatch status`, and `steward
//!   serve`'s operation status all read the same thing.
//! * **notices** ([`Notices`]): one-line messages for a person (a bad input
//!   line skipped, a server that stopped answering), printed above a
//!   progress bar, logged by a server.
//!
//! A [`Runner`] hands out the contexts of one operation's stages, sharing
//! one stop signal and one tenant of the scheduler, and reports all their
//! statuses at once.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steward_backend::{Scheduler, Tenant};
use tokio::sync::watch;

/// One-line messages for a person.
pub trait Notices: Send + Sync {
    fn notice(&self, message: &str);
}

/// Notices on standard error.
pub struct Stderr;

impl Notices for Stderr {
    fn notice(&self, message: &str) {
        eprintln!("{message}");
    }
}

/// What a running stage reports. Shared: the stage writes, anyone reads.
pub struct StageStatus {
    name: &'static str,
    started: Instant,
    objects: AtomicU64,
    position: AtomicU64,
    total: AtomicU64,
    queued: AtomicU64,
    finished: AtomicBool,
    last_error: Mutex<Option<String>>,
    sched: Option<(Arc<Scheduler>, Tenant)>,
}

/// A snapshot of a stage's status, with its rate and ETA.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    pub stage: &'static str,
    /// Objects done (units written).
    pub objects: u64,
    /// Input position and total (bytes of a file), when known.
    pub position: u64,
    pub total: Option<u64>,
    /// Work waiting (directories still to list), for a traversal.
    pub queued: u64,
    /// Objects per second since the stage started.
    pub rate: f64,
    /// Seconds left, when the total is known and something is done.
    pub eta_secs: Option<f64>,
    /// Requests the operation has in flight at the scheduler now.
    pub in_flight: usize,
    pub last_error: Option<String>,
    pub finished: bool,
    pub elapsed_secs: f64,
}

impl StageStatus {
    pub fn new(name: &'static str, sched: Option<(Arc<Scheduler>, Tenant)>) -> Arc<StageStatus> {
        Arc::new(StageStatus {
            name,
            started: Instant::now(),
            objects: AtomicU64::new(0),
            position: AtomicU64::new(0),
            total: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            last_error: Mutex::new(None),
            sched,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `n` more objects done.
    pub fn add_objects(&self, n: u64) {
        self.objects.fetch_add(n, Ordering::Relaxed);
    }

    /// Objects done before this run (a resume), counted once at the start.
    pub fn set_objects(&self, n: u64) {
        self.objects.store(n, Ordering::Relaxed);
    }

    pub fn objects(&self) -> u64 {
        self.objects.load(Ordering::Relaxed)
    }

    /// How far through its input the stage is, and how long the input is
    /// (0: unknown).
    pub fn set_position(&self, position: u64, total: u64) {
        self.position.store(position, Ordering::Relaxed);
        if total > 0 {
            self.total.store(total, Ordering::Relaxed);
        }
    }

    pub fn set_queued(&self, n: u64) {
        self.queued.store(n, Ordering::Relaxed);
    }

    /// Remember the last error met (one line, no cap).
    pub fn error(&self, message: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.to_string());
    }

    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    /// The status now, with rate and ETA.
    pub fn report(&self) -> StatusReport {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let objects = self.objects();
        let position = self.position.load(Ordering::Relaxed);
        let total = Some(self.total.load(Ordering::Relaxed)).filter(|t| *t > 0);
        // The ETA follows the input: bytes done per second.
        let eta_secs = total
            .filter(|_| position > 0)
            .map(|t| elapsed * (t.saturating_sub(position)) as f64 / position as f64);
        StatusReport {
            stage: self.name,
            objects,
            position,
            total,
            queued: self.queued.load(Ordering::Relaxed),
            rate: objects as f64 / elapsed,
            eta_secs,
            in_flight: self
                .sched
                .as_ref()
                .map_or(0, |(s, t)| s.tenant_in_flight(t)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            finished: self.finished.load(Ordering::Relaxed),
            elapsed_secs: elapsed,
        }
    }
}

/// What a stage gets from whoever runs it (see the module doc).
#[derive(Clone)]
pub struct StageCtx {
    pub stop: watch::Receiver<bool>,
    pub status: Arc<StageStatus>,
    pub notices: Arc<dyn Notices>,
}

impl StageCtx {
    /// A context for a stage run alone, stopped by `stop`, with notices on
    /// standard error.
    pub fn standalone(name: &'static str, stop: watch::Receiver<bool>) -> StageCtx {
        StageCtx {
            stop,
            status: StageStatus::new(name, None),
            notices: Arc::new(Stderr),
        }
    }

    /// Tell a person something (and remember it as the last error).
    pub fn notice(&self, message: &str) {
        self.status.error(message);
        self.notices.notice(message);
    }
}

/// The stages of one operation: one stop signal, one tenant, their
/// statuses together.
pub struct Runner {
    stop_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    notices: Arc<dyn Notices>,
    sched: Option<(Arc<Scheduler>, Tenant)>,
    stages: Mutex<Vec<Arc<StageStatus>>>,
}

impl Runner {
    /// A runner whose stages stop when `outer` turns true, or when
    /// [`Runner::cancel`] is called.
    pub fn new(
        outer: Option<watch::Receiver<bool>>,
        notices: Arc<dyn Notices>,
        sched: Option<(Arc<Scheduler>, Tenant)>,
    ) -> Runner {
        let (stop_tx, stop) = watch::channel(false);
        if let Some(mut outer) = outer {
            let tx = stop_tx.clone();
            tokio::spawn(async move {
                if outer.wait_for(|s| *s).await.is_ok() {
                    let _ = tx.send(true);
                }
            });
        }
        Runner {
            stop_tx,
            stop,
            notices,
            sched,
            stages: Mutex::new(Vec::new()),
        }
    }

    /// The context of a new stage of this operation.
    pub fn stage(&self, name: &'static str) -> StageCtx {
        let status = StageStatus::new(name, self.sched.clone());
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(status.clone());
        StageCtx {
            stop: self.stop.clone(),
            status,
            notices: self.notices.clone(),
        }
    }

    /// Stop every stage at its next checkpoint.
    pub fn cancel(&self) {
        let _ = self.stop_tx.send(true);
    }

    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// Every stage's status, in the order they were made.
    pub fn reports(&self) -> Vec<StatusReport> {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.report())
            .collect()
    }

    /// Every stage's status handle.
    pub fn statuses(&self) -> Vec<Arc<StageStatus>> {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How long to wait before a stop is late: stages promise to stop within
/// this (the remaining requests are aborted, a checkpoint committed).
pub const STOP_WITHIN: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_have_a_rate_and_an_eta_once_the_total_is_known() {
        let s = StageStatus::new("check", None);
        let r = s.report();
        assert_eq!(r.eta_secs, None);
        s.add_objects(10);
        s.set_position(250, 1000);
        std::thread::sleep(Duration::from_millis(20));
        let r = s.report();
        assert_eq!(r.objects, 10);
        assert_eq!(r.total, Some(1000));
        let eta = r.eta_secs.unwrap();
        // 250 of 1000 bytes in ~20 ms: about 60 ms left.
        assert!(eta > 0.0 && eta < 10.0, "{eta}");
        assert!(r.rate > 0.0);
        s.error("boom");
        assert_eq!(s.report().last_error.as_deref(), Some("boom"));
    }

    #[tokio::test]
    async fn a_runner_stops_all_its_stages() {
        let (tx, rx) = watch::channel(false);
        let r = Runner::new(Some(rx), Arc::new(Stderr), None);
        let a = r.stage("traverse");
        let mut b = r.stage("check");
        assert_eq!(r.reports().len(), 2);
        tx.send(true).unwrap();
        tokio::time::timeout(STOP_WITHIN, b.stop.wait_for(|s| *s))
            .await
            .unwrap()
            .unwrap();
        assert!(*a.stop.borrow());
    }
}
