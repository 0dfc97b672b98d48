//! Progress display: a live bar on a terminal, nothing when piped.
//!
//! A [`Meter`] draws on standard error with `indicatif` only when standard
//! error is a terminal, so piped runs stay quiet and machine-readable and
//! standard output carries nothing but units (or the report). It reads the
//! stages' [`StageStatus`]es a few times a second ([`Meter::track`]): with
//! a file input, a bar over its bytes (rate and ETA); for a walk, a bar of
//! the objects done over the objects found so far. It is also where a
//! stage's notices go ([`Notices`]): printed above the bar.

use crate::engine::{Notices, StageStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// A progress bar, hidden when not on a terminal.
#[derive(Clone)]
pub struct Meter {
    bar: ProgressBar,
}

/// Stops updating the meter when dropped.
pub struct Ticker(tokio::task::JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Meter {
    /// Whether progress should be drawn: standard error is a terminal.
    pub fn wanted(quiet: bool) -> bool {
        !quiet && std::io::stderr().is_terminal()
    }

    /// A meter, drawn only if `enabled`.
    pub fn new(enabled: bool) -> Meter {
        let bar = if enabled {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% (ETA {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Meter { bar }
    }

    /// Follow the stages' statuses (as `statuses` gives them, each time:
    /// an operation may add stages as it goes) until the [`Ticker`] is
    /// dropped.
    pub fn track(&self, statuses: impl Fn() -> Vec<Arc<StageStatus>> + Send + 'static) -> Ticker {
        let bar = self.bar.clone();
        Ticker(tokio::spawn(async move {
            if bar.is_hidden() {
                return;
            }
            loop {
                show(&bar, &statuses());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Whether nothing is drawn.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Print a line above the bar (or to stderr when hidden).
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl Notices for Meter {
    fn notice(&self, message: &str) {
        self.println(message);
    }
}

/// Draw the statuses: by the input's bytes when one stage reads a file of
/// known length; else the last stage's objects over the first's.
fn show(bar: &ProgressBar, statuses: &[Arc<StageStatus>]) {
    let reports: Vec<_> = statuses.iter().map(|s| s.report()).collect();
    let Some(last) = reports.last() else { return };
    if let Some(r) = reports.iter().find(|r| r.total.is_some()) {
        bar.set_length(r.total.unwrap_or(0));
        bar.set_position(r.position);
    } else {
        bar.set_length(reports[0].objects.max(last.objects).max(1));
        bar.set_position(last.objects);
    }
    let parts: Vec<String> = reports
        .iter()
        .map(|r| {
            let queued = if r.queued > 0 {
                format!(", {} queued", r.queued)
            } else {
                String::new()
            };
            format!("{} {} ({:.0}/s{queued})", r.stage, r.objects, r.rate)
        })
        .collect();
    bar.set_message(format!(
        "{}; {} requests in flight",
        parts.join(", "),
        last.in_flight
    ));
}
