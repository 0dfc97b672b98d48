//! The human report of a deep check: what `tahoe deep-check` prints.
//!
//! [`Report`] is fed the final units of a run in order and prints, like
//! Tahoe's CLI, `N objects checked..` every 100 objects (only when not
//! drawing a progress bar), the corrupt shares and repair outcomes as they
//! come, and at the end `done: N objects checked, H healthy, U unhealthy`;
//! with repair, the pre- and post-repair counts and the list of objects
//! still unhealthy. Objects that could not be checked or repaired are
//! listed with their error code, which Tahoe's own tool cannot do since it
//! stops at the first one.

use crate::stage::check::{unit_health, Health};
use crate::stage::repair::{post_repair_healthy, repair_attempted, repair_successful};
use crate::unit::{ObjectType, ObjectUnit, RepairAction, Unit};
use serde_json::Value;
use std::io::Write;

/// Totals and the list of problem objects.
#[derive(Default, Debug)]
pub struct Report {
    pub repair_mode: bool,
    pub objects: u64,
    pub healthy: u64,
    pub unhealthy: u64,
    pub unrecoverable: u64,
    pub failed: u64,
    pub repairs_attempted: u64,
    pub repairs_successful: u64,
    pub post_healthy: u64,
    pub post_unhealthy: u64,
    pub not_repairable: u64,
    /// Paths (and why) of objects still not healthy at the end.
    pub still_unhealthy: Vec<String>,
    /// Whether to print "N objects checked.." lines.
    pub progress_lines: bool,
    pub stats: Option<Value>,
}

fn path_text(o: &ObjectUnit) -> String {
    if o.path.is_empty() {
        "<root>".to_string()
    } else {
        o.path.join("/")
    }
}

impl Report {
    pub fn new(repair_mode: bool, progress_lines: bool) -> Self {
        Report {
            repair_mode,
            progress_lines,
            ..Default::default()
        }
    }

    /// Take one final unit; print what Tahoe prints for it to `out`.
    pub fn add(&mut self, unit: &Unit, out: &mut dyn Write) {
        let o = match unit {
            Unit::Stats(s, _) => {
                self.stats = Some(s.clone());
                return;
            }
            Unit::Object(o) => o,
        };
        if o.object_type == ObjectType::Unknown {
            return;
        }
        self.objects += 1;
        if self.progress_lines && self.objects.is_multiple_of(100) {
            let _ = writeln!(out, "{} objects checked..", self.objects);
        }
        let health = unit_health(o);
        match health {
            Health::Healthy => self.healthy += 1,
            Health::Unhealthy => self.unhealthy += 1,
            Health::Unrecoverable => {
                self.unhealthy += 1;
                self.unrecoverable += 1
            }
            Health::Failed | Health::Unchecked => self.failed += 1,
        }
        if let Some(list) = o
            .check_results
            .as_ref()
            // The tree is parsed only where the summary says there is
            // something to list (parsing it for every object doubled the
            // JSON cost of a deep check).
            .filter(|c| c.summary().corrupt_shares > 0)
            .and_then(|c| c.json().pointer("/results/list-corrupt-shares"))
            .and_then(Value::as_array)
        {
            for loc in list {
                if let Some([server, si, shnum]) = loc.as_array().map(|a| a.as_slice()) {
                    let _ = writeln!(
                        out,
                        " corrupt: server {} SI {} shnum {}",
                        server.as_str().unwrap_or("?"),
                        si.as_str().unwrap_or("?"),
                        shnum
                    );
                }
            }
        }
        let action = o.repair.as_ref().map(|r| r.action);
        if action == Some(RepairAction::Repaired) && repair_attempted(o) {
            self.repairs_attempted += 1;
            if repair_successful(o) == Some(true) {
                self.repairs_successful += 1;
                let _ = writeln!(out, " repair successful");
            } else {
                let _ = writeln!(out, " repair failed");
            }
        }
        if action == Some(RepairAction::NotRepairable) {
            self.not_repairable += 1;
        }
        let ok_now = if self.repair_mode {
            post_repair_healthy(o)
        } else {
            health == Health::Healthy
        };
        if self.repair_mode {
            if ok_now {
                self.post_healthy += 1;
            } else {
                self.post_unhealthy += 1;
            }
        }
        if !ok_now {
            let why = match (&o.error, health) {
                (Some(e), _) => e.code.clone(),
                (None, Health::Unrecoverable) => "unrecoverable".into(),
                (None, _) => o
                    .check_results
                    .as_ref()
                    .and_then(|c| c.json().get("summary"))
                    .and_then(Value::as_str)
                    .unwrap_or("not healthy")
                    .to_string(),
            };
            self.still_unhealthy
                .push(format!("{}: {}", path_text(o), why));
        }
    }

    /// The closing lines, as Tahoe prints them, then the list of objects
    /// that are still not healthy.
    pub fn finish(&self, out: &mut dyn Write) {
        if self.repair_mode {
            let _ = writeln!(out, "done: {} objects checked", self.objects);
            let _ = writeln!(
                out,
                " pre-repair: {} healthy, {} unhealthy",
                self.healthy,
                self.objects - self.healthy
            );
            let _ = writeln!(
                out,
                " {} repairs attempted, {} successful, {} failed",
                self.repairs_attempted,
                self.repairs_successful,
                self.repairs_attempted - self.repairs_successful
            );
            let _ = writeln!(
                out,
                " post-repair: {} healthy, {} unhealthy",
                self.post_healthy, self.post_unhealthy
            );
        } else {
            let _ = writeln!(
                out,
                "done: {} objects checked, {} healthy, {} unhealthy",
                self.objects,
                self.healthy,
                self.objects - self.healthy
            );
        }
        if !self.still_unhealthy.is_empty() {
            let _ = writeln!(
                out,
                "{} objects are not healthy{}:",
                self.still_unhealthy.len(),
                if self.repair_mode {
                    " after repair"
                } else {
                    ""
                }
            );
            for l in &self.still_unhealthy {
                let _ = writeln!(out, "  {l}");
            }
        }
    }

    /// Whether everything is healthy at the end.
    pub fn all_healthy(&self) -> bool {
        self.still_unhealthy.is_empty()
    }
}
