//! Typed tallies: what a stage counts of the units it writes, kept in its
//! checkpoint (so a resumed run's summary covers the whole input) and read
//! for the summary line and the exit code.

use super::check::{unit_health, Health};
use super::repair::{repair_attempted, repair_successful};
use crate::unit::{ObjectType, RepairAction, Unit};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a mapped stage counts.
pub trait Tally: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Count one unit written.
    fn count(&mut self, unit: &Unit);
    /// Count one input line skipped as bad.
    fn bad_line(&mut self);
    /// Input lines skipped as bad.
    fn bad_lines(&self) -> u64;
}

/// What `check` counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct CheckTally {
    /// Objects checked (not unknown).
    pub checked: u64,
    pub healthy: u64,
    /// Not healthy but recoverable.
    pub unhealthy: u64,
    pub unrecoverable: u64,
    /// The check failed, or the caps were bad.
    pub failed: u64,
    /// Unknown objects.
    pub unchecked: u64,
    pub bad_lines: u64,
    /// Directories that carry an error from before their check (their
    /// listing failed): the objects below them were never listed, so
    /// never checked, however healthy the directory itself is.
    pub unlisted: u64,
}

impl CheckTally {
    /// Objects that are a finding: not healthy, or not checked, or
    /// directories whose children were never listed.
    pub fn findings(&self) -> u64 {
        self.unhealthy + self.unrecoverable + self.failed + self.unlisted
    }
}

impl Tally for CheckTally {
    fn count(&mut self, unit: &Unit) {
        let Unit::Object(o) = unit else { return };
        if o.object_type != ObjectType::Unknown {
            self.checked += 1;
        }
        let health = unit_health(o);
        if o.object_type == ObjectType::Directory && o.error.is_some() && health != Health::Failed {
            self.unlisted += 1;
        }
        match health {
            Health::Healthy => self.healthy += 1,
            Health::Unhealthy => self.unhealthy += 1,
            Health::Unrecoverable => self.unrecoverable += 1,
            Health::Failed => self.failed += 1,
            Health::Unchecked => self.unchecked += 1,
        }
    }
    fn bad_line(&mut self) {
        self.bad_lines += 1;
    }
    fn bad_lines(&self) -> u64 {
        self.bad_lines
    }
}

/// What `repair` counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RepairTally {
    pub repair_attempted: u64,
    pub repair_successful: u64,
    pub repair_failed: u64,
    pub not_repairable: u64,
    pub would_repair: u64,
    pub skipped: u64,
    /// Skipped for want of check results: a finding.
    pub not_checked: u64,
    pub bad_lines: u64,
}

impl RepairTally {
    /// Objects that are a finding: still not healthy, or not looked at.
    pub fn findings(&self) -> u64 {
        self.repair_failed + self.not_repairable + self.would_repair + self.not_checked
    }
}

impl Tally for RepairTally {
    fn count(&mut self, unit: &Unit) {
        let Unit::Object(o) = unit else { return };
        let action = o
            .repair
            .as_ref()
            .map_or(RepairAction::Skipped, |r| r.action);
        if action == RepairAction::Skipped
            && o.check_results.is_none()
            && o.object_type != ObjectType::Unknown
        {
            self.not_checked += 1;
        }
        match action {
            // Not attempted, and not found healthy (that is `skipped`).
            RepairAction::Repaired if !repair_attempted(o) => self.repair_failed += 1,
            RepairAction::Repaired => {
                self.repair_attempted += 1;
                if repair_successful(o) == Some(true) {
                    self.repair_successful += 1;
                } else {
                    self.repair_failed += 1;
                }
            }
            RepairAction::NotRepairable => self.not_repairable += 1,
            RepairAction::WouldRepair => self.would_repair += 1,
            RepairAction::Skipped => self.skipped += 1,
        }
    }
    fn bad_line(&mut self) {
        self.bad_lines += 1;
    }
    fn bad_lines(&self) -> u64 {
        self.bad_lines
    }
}
