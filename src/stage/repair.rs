//! The repair stage: check units in, repair units out.
//!
//! [`Repairer::repair_unit`] decides from each unit's `check-results`
//! whether the object needs repair, and if so repairs it through the backend
//! with the weakest cap that allows it (the read cap of an immutable object,
//! the write cap of a mutable file or directory). The decision, and why, is
//! written into the unit's `repair` field:
//!
//! | `action` | meaning |
//! |---|---|
//! | `repaired` | sent to the gateway for repair; `check-and-repair-results` says how it went (`repair-attempted`, `repair-successful`) |
//! | `would-repair` | `--dry-run`: this object would have been repaired |
//! | `not-repairable` | unrecoverable (fewer than k good shares), the input holds no cap strong enough, or its caps are not caps (error `bad-cap`) |
//! | `skipped` | healthy enough by the thresholds (written only with `--all`); not checked (always written, and counted as a finding); or found already healthy when sent for repair (the gateway attempted nothing: an earlier run stopped before its checkpoint, or someone else, repaired it since the check) |
//!
//! A repair that Tahoe reports failed for no reason it gives (no corrupt
//! share left) is sent once more: when another repair of the same object
//! was in flight (a run stopped in the middle leaves its repair going on at
//! the gateway), the two take each other's places on the servers and one
//! reads as failed though the object ends healthy. The second answer is the
//! one written, and the reason says there were two.
//!
//! The decision reads the unit's parsed caps ([`super::check::unit_cap`]),
//! never which fields are empty: a unit whose caps are bad is reported as
//! such even if its check results say "healthy literal object".
//!
//! Thresholds: by default an object is repaired when its check says it is
//! not healthy. With `--repair-below K2`, only when it has fewer than K2 good
//! shares. Either way, an object whose happiness (distinct servers holding
//! distinct shares) is below the grid's target (`--happy`, default the node's
//! `shares.happy`) is repaired too: shares piled on too few servers are one
//! failure from loss. An unrecoverable object is reported and the run goes on
//! (Tahoe's own `deep-check --repair` stops at the first one).

use super::check::{bad_cap, unit_cap, UnitCap};
use crate::error::{Error, Result};
use crate::unit::{ObjectType, ObjectUnit, RepairAction, RepairNote, Unit, UnitError};
use std::sync::Arc;
use steward_backend::{Backend, CheckOptions, ErrorCode, Operation, RepairResults};
use steward_cap::{Authority, Cap};

/// When to repair.
#[derive(Clone, Debug, Default)]
pub struct RepairPolicy {
    /// Repair only objects with fewer good shares than this.
    pub repair_below: Option<u64>,
    /// Repair objects whose happiness is below this.
    pub happy: Option<u64>,
    /// Verify shares during the repair (also done for any object whose
    /// check found corrupt shares).
    pub verify: bool,
    /// Decide and report, but repair nothing.
    pub dry_run: bool,
    /// Write units for objects that need nothing too.
    pub all: bool,
}

impl RepairPolicy {
    /// What a checkpoint records of this policy: a resume under another
    /// policy is refused.
    pub fn checkpoint_key(&self) -> String {
        format!("{self:?}")
    }
}

/// What to do with one object, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Skip(String),
    Repair(String),
    NotRepairable(String),
    /// The unit's caps are not usable (a `bad-cap` error).
    BadCap(String),
}

/// Decide from a unit's check results.
pub fn decide(u: &ObjectUnit, policy: &RepairPolicy) -> Decision {
    if u.object_type == ObjectType::Unknown {
        return Decision::Skip("unknown object kind".into());
    }
    let literal = match unit_cap(u) {
        UnitCap::Bad(why) => return Decision::BadCap(why),
        UnitCap::Literal => true,
        UnitCap::Cap(c) => c.is_literal(),
    };
    let Some(cr) = &u.check_results else {
        return Decision::Skip(match &u.error {
            Some(e) => format!("not checked ({}): check it again", e.code),
            None => "no check results in the input".into(),
        });
    };
    if literal {
        return Decision::Skip("literal object: nothing to repair".into());
    }
    let r = cr.summary();
    let (healthy, recoverable) = (r.healthy, r.recoverable);
    let (good, needed, expected) = (r.good_shares, r.needed, r.expected);
    let happiness = r.happiness;
    if !recoverable {
        return Decision::NotRepairable(format!(
            "unrecoverable: {good} good shares, {needed} needed"
        ));
    }
    if let (Some(target), Some(h)) = (policy.happy, happiness) {
        if h < target {
            return Decision::Repair(format!(
                "happiness {h} is below the target {target}: shares on too few servers"
            ));
        }
    }
    match policy.repair_below {
        Some(k2) if good < k2 => Decision::Repair(format!("{good} good shares, fewer than {k2}")),
        Some(k2) => Decision::Skip(if healthy {
            "healthy".into()
        } else {
            format!("{good} of {expected} good shares, not fewer than {k2}")
        }),
        None if !healthy => {
            Decision::Repair(format!("not healthy: {good} of {expected} good shares"))
        }
        None => Decision::Skip("healthy".into()),
    }
}

/// The cap to repair with: the read cap of an immutable object, the write
/// cap of a mutable one.
pub fn repair_cap(u: &ObjectUnit) -> Option<Cap> {
    let UnitCap::Cap(best) = unit_cap(u) else {
        return None;
    };
    if best.is_mutable() {
        (best.authority() == Authority::Write).then_some(best)
    } else {
        best.weaken_to(Authority::Read)
            .filter(|c| c.authority() == Authority::Read)
    }
}

fn has_corrupt_shares(u: &ObjectUnit) -> bool {
    u.check_results
        .as_ref()
        .is_some_and(|c| c.summary().corrupt_shares > 0)
}

/// Repairs through a backend (the gateway: storage servers cannot repair).
#[derive(Clone)]
pub struct Repairer {
    pub backend: Arc<dyn Backend>,
    pub policy: RepairPolicy,
}

impl Repairer {
    /// This repairer as a stage operation for [`super::run_mapped`].
    pub fn into_op(self) -> Box<super::Op> {
        Box::new(move |u| {
            let r = self.clone();
            Box::pin(async move { r.repair_unit(u).await })
        })
    }

    /// Handle one unit: `Ok(vec![])` when nothing is to be written.
    pub async fn repair_unit(&self, unit: Unit) -> Result<Vec<Unit>> {
        let Unit::Object(mut u) = unit else {
            return Ok(vec![unit]);
        };
        let decision = decide(&u, &self.policy);
        let (action, reason) = match decision {
            Decision::Skip(reason) => {
                if !self.policy.all && u.check_results.is_some() {
                    return Ok(vec![]);
                }
                (RepairAction::Skipped, reason)
            }
            Decision::NotRepairable(reason) => (RepairAction::NotRepairable, reason),
            Decision::BadCap(why) => {
                let reason = format!("not repaired: {why}");
                u.error = Some(bad_cap(why));
                (RepairAction::NotRepairable, reason)
            }
            Decision::Repair(reason) => match repair_cap(&u) {
                None => (
                    RepairAction::NotRepairable,
                    format!(
                        "{reason}; but the input holds no cap strong enough to repair it (a mutable object needs its write cap: write the manifest with --caps write)"
                    ),
                ),
                Some(_) if self.policy.dry_run => (RepairAction::WouldRepair, reason),
                Some(_) if !self.backend.supports(Operation::Repair) => (
                    RepairAction::NotRepairable,
                    format!("{reason}; but {} cannot repair", self.backend.describe()),
                ),
                Some(cap) => {
                    let opts = CheckOptions {
                        verify: self.policy.verify || has_corrupt_shares(&u),
                        add_lease: false,
                    };
                    let mut result = self.backend.repair(&cap, opts).await;
                    let mut again = false;
                    if matches!(&result, Ok(v) if failed_for_no_known_reason(v)) {
                        // Another repair of this object may have been in
                        // flight (a run stopped mid-repair leaves its
                        // repair going on at the gateway) and taken the
                        // servers' places: Tahoe's answer then reads as a
                        // failure though the object ends healthy. Ask once
                        // more; the answer says how it is now.
                        if let Ok(v) = self.backend.repair(&cap, opts).await {
                            result = Ok(v);
                            again = true;
                        }
                    }
                    match result {
                        Ok(v) if already_healthy(&v) => {
                            u.check_and_repair_results = Some(v);
                            let why = if again {
                                "a first repair reported failure (another repair of it was in flight), and sent again it was healthy"
                            } else {
                                "the gateway found nothing to repair; an earlier run stopped before its checkpoint, or someone else, repaired it since"
                            };
                            u.repair = Some(RepairNote::new(
                                RepairAction::Skipped,
                                format!("already healthy when sent for repair ({reason} at the check): {why}"),
                            ));
                            return Ok(vec![Unit::Object(u)]);
                        }
                        Ok(v) => {
                            let corrupt_left = v.post.as_ref().map_or(0, |p| p.corrupt_shares);
                            u.check_and_repair_results = Some(v);
                            if again {
                                u.repair = Some(RepairNote::new(
                                    RepairAction::Repaired,
                                    format!("{reason}; repaired twice: the first reported failure (another repair of it in flight?)"),
                                ));
                                return Ok(vec![Unit::Object(u)]);
                            }
                            if corrupt_left > 0 {
                                let reason = format!(
                                    "{reason}; {corrupt_left} corrupt shares remain: Tahoe's repairer does not replace a share that a server already holds, even a corrupt one; delete it on that server (see list-corrupt-shares) and repair again"
                                );
                                u.repair = Some(RepairNote::new(RepairAction::Repaired, reason));
                                return Ok(vec![Unit::Object(u)]);
                            }
                        }
                        Err(e) if e.is_fatal() => return Err(Error::from(e)),
                        Err(e) => {
                            if e.code == ErrorCode::Unrecoverable {
                                u.error = Some(UnitError::from(&e));
                                u.repair = Some(RepairNote::new(RepairAction::NotRepairable, e.message));
                                return Ok(vec![Unit::Object(u)]);
                            }
                            u.error = Some(UnitError::from(&e));
                        }
                    }
                    (RepairAction::Repaired, reason)
                }
            },
        };
        u.repair = Some(RepairNote::new(action, reason));
        Ok(vec![Unit::Object(u)])
    }
}

/// Whether a repair was attempted and failed, with no corrupt share left
/// to explain it (Tahoe 1.20 cannot replace those, and says so again).
fn failed_for_no_known_reason(v: &RepairResults) -> bool {
    v.attempted && !v.successful && v.post.as_ref().map_or(0, |p| p.corrupt_shares) == 0
}

/// Whether a check-and-repair result says the object was healthy before
/// the repair, which was then not attempted.
fn already_healthy(v: &RepairResults) -> bool {
    !v.attempted && v.pre.as_ref().is_some_and(|p| p.healthy)
}

/// Whether the gateway attempted a repair (it does not when its own check
/// finds the object healthy).
pub fn repair_attempted(u: &ObjectUnit) -> bool {
    u.check_and_repair_results
        .as_ref()
        .is_some_and(|c| c.attempted)
}

/// Whether a repair unit says the repair worked.
pub fn repair_successful(u: &ObjectUnit) -> Option<bool> {
    u.check_and_repair_results.as_ref().map(|c| c.successful)
}

/// Health after repair, from the post-repair results (or the check results
/// when nothing was repaired).
pub fn post_repair_healthy(u: &ObjectUnit) -> bool {
    match &u.check_and_repair_results {
        Some(r) => r.healthy_after(),
        None => u
            .check_results
            .as_ref()
            .is_some_and(|c| c.summary().healthy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use steward_backend::CheckResults;

    fn chk() -> Cap {
        let key = steward_cap::base32::encode(&[3u8; 16]);
        let ueb = steward_cap::base32::encode(&[4u8; 32]);
        Cap::parse(&format!("URI:CHK:{key}:{ueb}:2:5:1000")).unwrap()
    }

    fn unit(results: Value) -> ObjectUnit {
        let cap = chk();
        let si = cap.storage_index().unwrap().to_string();
        ObjectUnit {
            object_type: ObjectType::File,
            path: vec![],
            cap: cap.expose().to_string(),
            verifycap: cap.to_verify_cap().unwrap().expose().to_string(),
            repaircap: String::new(),
            storage_index: si.clone(),
            error: None,
            check_results: Some(
                CheckResults::from_json(json!({"storage-index": si, "results": results})).unwrap(),
            ),
            check_and_repair_results: None,
            repair: None,
            literal: false,
            built_from: Default::default(),
        }
    }

    #[test]
    fn units_are_decided_from_their_parsed_caps() {
        let healthy_lit = json!({"healthy": true});
        let mut u = unit(healthy_lit.clone());
        u.storage_index.clear();
        u.verifycap.clear();
        u.check_results = Some(
            CheckResults::from_json(json!({"storage-index": "", "results": healthy_lit})).unwrap(),
        );
        for bad in ["not a cap", "URI:CHK:garbage", ""] {
            u.cap = bad.into();
            assert!(
                matches!(decide(&u, &RepairPolicy::default()), Decision::BadCap(_)),
                "{bad:?} is not taken for a literal object"
            );
        }
        u.cap = "URI:LIT:mfrgg".into();
        assert_eq!(
            decide(&u, &RepairPolicy::default()),
            Decision::Skip("literal object: nothing to repair".into())
        );
        u.cap.clear();
        u.literal = true;
        assert!(matches!(
            decide(&u, &RepairPolicy::default()),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn thresholds() {
        let p = RepairPolicy::default();
        let healthy = unit(
            json!({"healthy": true, "recoverable": true, "count-shares-good": 5, "count-shares-needed": 2, "count-shares-expected": 5, "count-happiness": 5}),
        );
        let missing = unit(
            json!({"healthy": false, "recoverable": true, "count-shares-good": 4, "count-shares-needed": 2, "count-shares-expected": 5, "count-happiness": 4}),
        );
        let lost = unit(
            json!({"healthy": false, "recoverable": false, "count-shares-good": 1, "count-shares-needed": 2, "count-shares-expected": 5, "count-happiness": 1}),
        );
        let piled = unit(
            json!({"healthy": true, "recoverable": true, "count-shares-good": 5, "count-shares-needed": 2, "count-shares-expected": 5, "count-happiness": 2}),
        );
        assert!(matches!(decide(&healthy, &p), Decision::Skip(_)));
        assert!(matches!(decide(&missing, &p), Decision::Repair(_)));
        assert!(matches!(decide(&lost, &p), Decision::NotRepairable(_)));
        let below3 = RepairPolicy {
            repair_below: Some(3),
            ..Default::default()
        };
        assert!(
            matches!(decide(&missing, &below3), Decision::Skip(_)),
            "4 good shares are not fewer than 3"
        );
        let below5 = RepairPolicy {
            repair_below: Some(5),
            ..Default::default()
        };
        assert!(matches!(decide(&missing, &below5), Decision::Repair(_)));
        assert!(matches!(decide(&piled, &p), Decision::Skip(_)));
        let happy3 = RepairPolicy {
            happy: Some(3),
            ..Default::default()
        };
        assert!(matches!(decide(&piled, &happy3), Decision::Repair(_)));
    }
}
