//! The check stage: manifest units in, check units out.
//!
//! For each object unit, [`Checker::check_unit`] picks the weakest cap the
//! backend accepts (a read cap for a gateway, a verify cap for the storage
//! servers), runs the check (with `verify` and `add-lease` as asked) and
//! adds Tahoe's `check-results` object to the unit, or an `error` if the
//! check itself failed. LIT objects are healthy by definition and get
//! Tahoe's LIT results without a request; unknown objects and units whose
//! cap could not be parsed pass through unchanged. Stats units pass through.
//!
//! Only a gateway that cannot be reached at all stops the stage; every other
//! failure is written into that object's unit and the run goes on.

use super::{bump, Observer};
use crate::error::{Error, Result};
use crate::unit::{ObjectType, ObjectUnit, Unit, UnitError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use steward_backend::{Backend, BackendError, CheckOptions, ErrorCode, Operation};
use steward_cap::{Authority, Cap};

/// The check-results Tahoe gives a literal object.
pub fn lit_results() -> Value {
    json!({"storage-index": "", "results": {"healthy": true}})
}

/// The strongest cap a unit holds (its `cap`, `repaircap` or `verifycap`).
///
/// Parses no more than it must (this runs once per object): a write cap
/// ends the search, a repair cap equal to the cap is not parsed twice, and
/// the verify cap, the weakest there is, only when nothing else parses.
pub fn strongest_cap(u: &ObjectUnit) -> Option<Cap> {
    let parse = |s: &str| (!s.is_empty()).then(|| Cap::parse(s).ok()).flatten();
    let mut best = parse(&u.cap);
    if best.as_ref().map(Cap::authority) != Some(Authority::Write) && u.repaircap != u.cap {
        if let Some(r) = parse(&u.repaircap) {
            if best
                .as_ref()
                .map_or(true, |b| r.authority() > b.authority())
            {
                best = Some(r);
            }
        }
    }
    best.or_else(|| parse(&u.verifycap))
}

/// Runs checks through a backend, handing what it cannot do (verify, for
/// the native backend) to a second backend when one is configured.
#[derive(Clone)]
pub struct Checker {
    pub backend: Arc<dyn Backend>,
    pub fallback: Option<Arc<dyn Backend>>,
    pub opts: CheckOptions,
}

impl Checker {
    fn pick(&self) -> std::result::Result<&Arc<dyn Backend>, BackendError> {
        let needs: &[Operation] = match (self.opts.verify, self.opts.add_lease) {
            (true, true) => &[Operation::Verify, Operation::AddLease],
            (true, false) => &[Operation::Verify],
            (false, true) => &[Operation::Check, Operation::AddLease],
            (false, false) => &[Operation::Check],
        };
        if needs.iter().all(|op| self.backend.supports(*op)) {
            return Ok(&self.backend);
        }
        match &self.fallback {
            Some(f) if needs.iter().all(|op| f.supports(*op)) => Ok(f),
            _ => Err(BackendError::new(
                ErrorCode::NotSupported,
                format!(
                    "{} cannot {}; configure a gateway (--gateway) for it",
                    self.backend.describe(),
                    if self.opts.verify {
                        "verify shares"
                    } else {
                        "do this check"
                    }
                ),
            )),
        }
    }

    /// What a checkpoint records of these options: a resume with other
    /// options would mix results of different kinds in one output.
    pub fn checkpoint_key(&self) -> String {
        format!(
            "verify={},add-lease={}",
            self.opts.verify, self.opts.add_lease
        )
    }

    /// This checker as a stage operation for [`super::run_mapped`].
    pub fn into_op(self) -> Box<super::Op> {
        Box::new(move |u| {
            let c = self.clone();
            Box::pin(async move { Ok(vec![c.check_unit(u).await?]) })
        })
    }

    /// Check one unit. `Err` only when the run cannot go on.
    pub async fn check_unit(&self, unit: Unit) -> Result<Unit> {
        let Unit::Object(mut u) = unit else {
            return Ok(unit);
        };
        if u.object_type == ObjectType::Unknown {
            return Ok(Unit::Object(u));
        }
        let Some(cap) = strongest_cap(&u) else {
            if u.error.is_none() && u.storage_index.is_empty() && u.verifycap.is_empty() {
                // A literal object in a verify-cap manifest: its cap is its
                // data, so none was written; it has no shares to check.
                u.check_results = Some(lit_results());
                return Ok(Unit::Object(u));
            }
            if u.error.is_none() {
                u.error = Some(UnitError {
                    code: ErrorCode::BadCap.as_str().into(),
                    message: "the unit holds no usable cap".into(),
                });
            }
            return Ok(Unit::Object(u));
        };
        if cap.is_literal() {
            u.check_results = Some(lit_results());
            return Ok(Unit::Object(u));
        }
        let backend = match self.pick() {
            Ok(b) => b,
            Err(e) => {
                u.error = Some(UnitError::from(&e));
                return Ok(Unit::Object(u));
            }
        };
        let op = if self.opts.verify {
            Operation::Verify
        } else if self.opts.add_lease {
            Operation::AddLease
        } else {
            Operation::Check
        };
        let need = backend.authority_for(op);
        let Some(use_cap) = cap.weaken_to(need).filter(|c| c.authority() >= need) else {
            u.error = Some(UnitError {
                code: ErrorCode::InsufficientAuthority.as_str().into(),
                message: format!(
                    "this unit holds only a {} cap and {} needs a {} cap: write the manifest with --caps read, or check with --backend native",
                    authority_name(cap.authority()),
                    backend.describe(),
                    authority_name(need)
                ),
            });
            return Ok(Unit::Object(u));
        };
        match backend.check(&use_cap, self.opts).await {
            Ok(v) => {
                // A fresh result replaces an earlier error on this object
                // (for example a directory that could not be listed keeps its
                // listing error, which is about the traversal, not the check).
                u.check_results = Some(v.into_json());
            }
            Err(e) if e.is_fatal() => return Err(Error::from(e)),
            Err(e) => u.error = Some(UnitError::from(&e)),
        }
        Ok(Unit::Object(u))
    }
}

fn authority_name(a: Authority) -> &'static str {
    match a {
        Authority::Write => "write",
        Authority::Read => "read",
        Authority::Verify => "verify",
    }
}

/// The health of a checked unit, as the report counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Not healthy but recoverable.
    Unhealthy,
    Unrecoverable,
    /// The check failed (see the unit's error).
    Failed,
    /// Not checked (unknown object, no usable cap).
    Unchecked,
}

/// Read a unit's health from its check results.
pub fn health_of(results: Option<&Value>) -> Health {
    let Some(r) = results.and_then(|v| v.get("results")) else {
        return Health::Failed;
    };
    if r.get("healthy").and_then(Value::as_bool) == Some(true) {
        Health::Healthy
    } else if r.get("recoverable").and_then(Value::as_bool) == Some(false) {
        Health::Unrecoverable
    } else {
        Health::Unhealthy
    }
}

/// Health of a check unit.
pub fn unit_health(u: &ObjectUnit) -> Health {
    if u.object_type == ObjectType::Unknown {
        return Health::Unchecked;
    }
    if u.check_results.is_none() {
        return if u.error.is_some() {
            Health::Failed
        } else {
            Health::Unchecked
        };
    }
    health_of(u.check_results.as_ref())
}

/// Counts check units for the summary: `checked`, `healthy`, `unhealthy`,
/// `unrecoverable`, `failed`, `unchecked`.
pub fn tally_check(u: &Unit, tally: &mut BTreeMap<String, u64>) {
    let Unit::Object(o) = u else { return };
    if o.object_type != ObjectType::Unknown {
        bump(tally, "checked");
    }
    bump(
        tally,
        match unit_health(o) {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Unrecoverable => "unrecoverable",
            Health::Failed => "failed",
            Health::Unchecked => "unchecked",
        },
    );
}

/// A check-stage observer that counts and reports bad lines on stderr.
pub struct CheckObserver<F: FnMut(&Unit) + Send> {
    pub on_unit: F,
}

impl<F: FnMut(&Unit) + Send> Observer for CheckObserver<F> {
    fn output(&mut self, unit: &Unit, tally: &mut BTreeMap<String, u64>) {
        tally_check(unit, tally);
        (self.on_unit)(unit);
    }
    fn bad_line(&mut self, bad: &super::BadLine) {
        eprintln!(
            "steward: input line {}: {}; skipped",
            bad.number, bad.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_cap_prefers_write_then_read_then_verify() {
        let key = steward_cap::base32::encode(&[7u8; 16]);
        let fp = steward_cap::base32::encode(&[9u8; 32]);
        let write = Cap::parse(&format!("URI:SSK:{key}:{fp}")).unwrap();
        let read = write.weaken_to(Authority::Read).unwrap();
        let verify = write.weaken_to(Authority::Verify).unwrap();
        let unit = |c: &Cap, r: &Cap, v: &Cap| ObjectUnit {
            path: vec![],
            cap: c.expose().to_string(),
            object_type: ObjectType::File,
            verifycap: v.expose().to_string(),
            repaircap: r.expose().to_string(),
            storage_index: String::new(),
            error: None,
            check_results: None,
            check_and_repair_results: None,
            repair: None,
        };
        let pick = |u: &ObjectUnit| strongest_cap(u).map(|c| c.authority());
        assert_eq!(pick(&unit(&read, &write, &verify)), Some(Authority::Write));
        assert_eq!(pick(&unit(&write, &read, &verify)), Some(Authority::Write));
        assert_eq!(pick(&unit(&read, &read, &verify)), Some(Authority::Read));
        let mut only_verify = unit(&read, &read, &verify);
        only_verify.cap.clear();
        only_verify.repaircap.clear();
        assert_eq!(pick(&only_verify), Some(Authority::Verify));
        only_verify.cap = "URI:CHK:not-a-cap".into();
        assert_eq!(pick(&only_verify), Some(Authority::Verify));
        only_verify.verifycap.clear();
        assert_eq!(pick(&only_verify), None);
    }

    #[test]
    fn health_is_read_from_results() {
        assert_eq!(health_of(Some(&lit_results())), Health::Healthy);
        assert_eq!(
            health_of(Some(
                &json!({"results": {"healthy": false, "recoverable": true}})
            )),
            Health::Unhealthy
        );
        assert_eq!(
            health_of(Some(
                &json!({"results": {"healthy": false, "recoverable": false}})
            )),
            Health::Unrecoverable
        );
        assert_eq!(health_of(None), Health::Failed);
    }
}
