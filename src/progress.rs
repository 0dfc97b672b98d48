//! Progress display: a live line on a terminal, nothing when piped.
//!
//! Stages report counts to a [`Meter`]; it draws on standard error with
//! `indicatif` (rate and, when the total is known, ETA) only when standard
//! error is a terminal, so piped runs stay quiet and machine-readable and
//! standard output carries nothing but units.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A progress line or bar, hidden when not on a terminal.
#[derive(Clone)]
pub struct Meter {
    bar: ProgressBar,
}

impl Meter {
    /// Whether progress should be drawn: standard error is a terminal.
    pub fn wanted(quiet: bool) -> bool {
        !quiet && std::io::stderr().is_terminal()
    }

    /// A counter of unknown total (the traversal does not know the tree's size).
    pub fn counter(enabled: bool, template: &str) -> Meter {
        let bar = if enabled {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", s.per_sec());
                    },
                ),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Meter { bar }
    }

    /// A bar over a known total, with rate and ETA.
    pub fn bar(enabled: bool, total: Option<u64>, unit: &str) -> Meter {
        let m = Meter::counter(
            enabled,
            &format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{rate}}, ETA {{eta}}) {{msg}}"),
        );
        if let Some(t) = total {
            m.bar.set_length(t);
        }
        m
    }

    pub fn set_position(&self, n: u64) {
        self.bar.set_position(n);
    }
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }
    pub fn set_length(&self, n: u64) {
        self.bar.set_length(n);
    }
    pub fn set_message(&self, m: String) {
        self.bar.set_message(m);
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
