//! What a dispatch shows as it goes: on a terminal, one live line per
//! active account (stage, objects, rate) above a total bar of the accounts
//! with an ETA; piped, plain log lines on standard error, one per stage
//! start and end and per error.

use super::run::View;
use crate::engine::{Notices, StatusReport};
use crate::store::jobs::JobStage;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Plain lines, for a log.
pub struct LogView;

impl Notices for LogView {
    fn notice(&self, message: &str) {
        eprintln!("{message}");
    }
}

fn stage_line(account: &str, stage: JobStage, detail: &str) -> String {
    let what = match stage {
        JobStage::Done => "done",
        JobStage::Failed => "failed",
        s => s.as_str(),
    };
    if detail.is_empty() {
        format!("steward: dispatch: {account}: {what}")
    } else {
        format!("steward: dispatch: {account}: {what}: {detail}")
    }
}

impl View for LogView {
    fn begin(&self, accounts: u64) {
        eprintln!("steward: dispatch: {accounts} accounts to run");
    }
    fn stage(&self, account: &str, stage: JobStage, detail: &str) {
        eprintln!("{}", stage_line(account, stage, detail));
    }
    fn track(&self, _active: Vec<(String, Vec<StatusReport>)>) {}
}

/// Live lines on a terminal.
pub struct TerminalView {
    multi: MultiProgress,
    total: ProgressBar,
    lines: Mutex<HashMap<String, ProgressBar>>,
}

impl TerminalView {
    /// `accounts`: how many the round may run (set by [`View::begin`]).
    pub fn new(accounts: u64) -> TerminalView {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
        let total = multi.add(ProgressBar::new(accounts.max(1)));
        total.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {wide_bar} {pos}/{len} accounts (ETA {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        total.enable_steady_tick(Duration::from_millis(200));
        TerminalView {
            multi,
            total,
            lines: Mutex::new(HashMap::new()),
        }
    }

    pub fn finish(&self) {
        for (_, l) in self.lines.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            l.finish_and_clear();
        }
        self.total.finish_and_clear();
    }
}

impl Notices for TerminalView {
    fn notice(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}

impl View for TerminalView {
    fn begin(&self, accounts: u64) {
        self.total.set_length(accounts.max(1));
    }
    fn stage(&self, account: &str, stage: JobStage, detail: &str) {
        if matches!(stage, JobStage::Done | JobStage::Failed) {
            self.total.inc(1);
            let _ = self.multi.println(stage_line(account, stage, detail));
        }
    }

    fn track(&self, active: Vec<(String, Vec<StatusReport>)>) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.retain(|name, bar| {
            let keep = active.iter().any(|(n, _)| n == name);
            if !keep {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            keep
        });
        let mut checked = 0;
        for (name, reports) in &active {
            let bar = lines.entry(name.clone()).or_insert_with(|| {
                let b = self
                    .multi
                    .insert_before(&self.total, ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("  {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b
            });
            let current = reports.iter().find(|r| !r.finished).or(reports.last());
            if let Some(r) = current {
                let found = reports.first().map_or(0, |t| t.objects);
                bar.set_message(format!(
                    "{name}: {} {} of {found} ({:.0}/s)",
                    match r.stage {
                        "traverse" => "manifest",
                        s => s,
                    },
                    r.objects,
                    r.rate
                ));
            }
            checked += reports
                .iter()
                .find(|r| r.stage == "check")
                .map_or(0, |r| r.objects);
            bar.tick();
        }
        self.total.set_message(format!(
            "{} active, {checked} objects checked in them",
            active.len()
        ));
    }
}
