//! The check stage: manifest units in, check units out.
//!
//! For each object unit, [`Checker::check_unit`] classifies the unit from
//! its *parsed* caps ([`unit_cap`]), never from which fields are empty,
//! picks the weakest cap the backend accepts (a read cap for a gateway, a
//! verify cap for the storage servers), runs the check (with `verify` and
//! `add-lease` as asked) and adds Tahoe's `check-results` object to the
//! unit, or an `error` if the check itself failed. LIT objects are healthy
//! by definition and get Tahoe's LIT results without a request (a LIT cap,
//! or the `literal` mark of a `--caps verify` manifest, which writes no LIT
//! cap); a unit whose caps are not caps, disagree with each other or with
//! its `storage-index`, or that holds none, gets a `bad-cap` error and no
//! results: it is never healthy. Unknown objects and stats units pass
//! through.
//!
//! Only a gateway that cannot be reached at all stops the stage; every other
//! failure is written into that object's unit and the run goes on.

use crate::error::{Error, Result};
use crate::unit::{ObjectType, ObjectUnit, Unit, UnitError};
use std::sync::Arc;
use steward_backend::{Backend, CheckOptions, CheckResults, ErrorCode, Operation};
use steward_cap::{Authority, Cap};

/// The check-results Tahoe gives a literal object.
pub fn lit_results() -> CheckResults {
    CheckResults::literal()
}

/// What a unit's caps say it is.
#[derive(Clone, Debug)]
pub enum UnitCap {
    /// Its strongest cap (of `cap`, `repaircap` and `verifycap`).
    Cap(Cap),
    /// A literal object of a `--caps verify` manifest: its cap is its data,
    /// so none was written, and the unit says so (`"literal": true`).
    Literal,
    /// No usable cap; why (never quoting the cap).
    Bad(String),
}

/// Classify a unit from its parsed caps. Every cap field that is not empty
/// must parse, all must name the same object, and so must `storage-index`
/// when present; a unit with no cap at all is bad unless it is marked
/// literal. Runs once per object: each distinct cap text is parsed once.
pub fn unit_cap(u: &ObjectUnit) -> UnitCap {
    // A unit built in this process from a parsed cap, unchanged since:
    // its fields were written from that cap, so they parse to it, agree
    // with each other and with the storage index.
    if let Some(best) = u.built_cap() {
        return classified(u, best.cloned());
    }
    let fields = [
        ("cap", &u.cap),
        ("repaircap", &u.repaircap),
        ("verifycap", &u.verifycap),
    ];
    let mut best: Option<Cap> = None;
    let mut si = None;
    for (i, (name, text)) in fields.iter().enumerate() {
        // A field equal to the one before it names the same cap (Tahoe's
        // repair cap is the cap of a mutable object, the verify cap of an
        // immutable file): parsed once.
        let same = match i {
            1 => u.repaircap == u.cap,
            2 => u.verifycap == u.repaircap || u.verifycap == u.cap,
            _ => false,
        };
        if text.is_empty() || same {
            continue;
        }
        let cap = match Cap::parse(text) {
            Ok(c) => c,
            Err(e) => return UnitCap::Bad(format!("its {name} is not a valid cap: {e}")),
        };
        let this_si = cap.storage_index();
        if best.is_some() && this_si != si {
            return UnitCap::Bad(format!("its {name} names another object than its cap"));
        }
        si = this_si;
        if best
            .as_ref()
            .is_none_or(|b| cap.authority() > b.authority())
        {
            best = Some(cap);
        }
    }
    if best.is_some() {
        let written = si.map(|s| s.to_string()).unwrap_or_default();
        if !u.storage_index.is_empty() && u.storage_index != written {
            return UnitCap::Bad("its storage-index is not the one of its cap".into());
        }
    }
    classified(u, best)
}

/// The classification of a unit whose caps agree with each other and with
/// its storage index, from its strongest cap.
fn classified(u: &ObjectUnit, best: Option<Cap>) -> UnitCap {
    let Some(best) = best else {
        return if u.literal && u.storage_index.is_empty() {
            UnitCap::Literal
        } else {
            UnitCap::Bad("the unit holds no cap".into())
        };
    };
    // Tahoe's parser takes any numbers, but no file is stored with k = 0
    // or k > N: counted against such a k, no shares at all look healthy.
    if let Some((k, n)) = best.encoding() {
        if k == 0 || k > n || n > 256 {
            return UnitCap::Bad(format!(
                "its cap asks for {k} of {n} shares, which no Tahoe file has (1 <= k <= N <= 256)"
            ));
        }
    }
    UnitCap::Cap(best)
}

/// Runs checks through a backend: usually a [`steward_backend::route::Routes`],
/// which sends each kind of check (plain, verify, add-lease) to the backend
/// configured for it.
#[derive(Clone)]
pub struct Checker {
    pub backend: Arc<dyn Backend>,
    pub opts: CheckOptions,
}

impl Checker {
    /// The operation a check with these options is.
    fn operation(&self) -> Operation {
        if self.opts.verify {
            Operation::Verify
        } else if self.opts.add_lease {
            Operation::AddLease
        } else {
            Operation::Check
        }
    }

    /// What a checkpoint records of these options: a resume with other
    /// options would mix results of different kinds in one output.
    /// It names the backend too: a resume with another backend would mix
    /// gateway and native results in one output.
    pub fn checkpoint_key(&self) -> String {
        format!(
            "verify={},add-lease={},backend={}",
            self.opts.verify,
            self.opts.add_lease,
            self.backend.kind(self.operation())
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
        let cap = match unit_cap(&u) {
            UnitCap::Cap(c) if !c.is_literal() => c,
            UnitCap::Cap(_) | UnitCap::Literal => {
                // No shares to check: healthy by definition, as Tahoe says.
                u.check_results = Some(lit_results());
                return Ok(Unit::Object(u));
            }
            UnitCap::Bad(why) => {
                u.check_results = None;
                // An earlier bad-cap error (the traversal's, naming the
                // listing's problem) is kept.
                if u.error.as_ref().map(|e| e.code.as_str()) != Some(ErrorCode::BadCap.as_str()) {
                    u.error = Some(bad_cap(why));
                }
                return Ok(Unit::Object(u));
            }
        };
        let backend = &self.backend;
        let need = backend.authority_for(self.operation());
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
                u.check_results = Some(v);
            }
            Err(e) if e.is_fatal() => return Err(Error::from(e)),
            Err(e) => u.error = Some(UnitError::from(&e)),
        }
        Ok(Unit::Object(u))
    }
}

/// The `bad-cap` error of a unit whose caps are not usable.
pub fn bad_cap(why: String) -> UnitError {
    UnitError {
        code: ErrorCode::BadCap.as_str().into(),
        message: format!("{why}: this object cannot be checked or repaired; write its unit again from a manifest"),
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
pub fn health_of(results: Option<&CheckResults>) -> Health {
    let Some(r) = results.map(CheckResults::summary) else {
        return Health::Failed;
    };
    if r.healthy {
        Health::Healthy
    } else if !r.recoverable {
        Health::Unrecoverable
    } else {
        Health::Unhealthy
    }
}

/// Health of a check unit. A unit whose caps are bad is never healthy,
/// whatever results it carries.
pub fn unit_health(u: &ObjectUnit) -> Health {
    if u.object_type == ObjectType::Unknown {
        return Health::Unchecked;
    }
    if u.error.as_ref().map(|e| e.code.as_str()) == Some(ErrorCode::BadCap.as_str()) {
        return Health::Failed;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(c: &str, r: &str, v: &str) -> ObjectUnit {
        ObjectUnit {
            path: vec![],
            cap: c.to_string(),
            object_type: ObjectType::File,
            verifycap: v.to_string(),
            repaircap: r.to_string(),
            storage_index: String::new(),
            error: None,
            check_results: None,
            check_and_repair_results: None,
            repair: None,
            literal: false,
            built_from: Default::default(),
        }
    }

    fn ssk(n: u8) -> Cap {
        let key = steward_cap::base32::encode(&[n; 16]);
        let fp = steward_cap::base32::encode(&[9u8; 32]);
        Cap::parse(&format!("URI:SSK:{key}:{fp}")).unwrap()
    }

    /// A unit built from a parsed cap is classified from that cap without
    /// parsing its fields again: the same answer as parsing them, for
    /// every kind of cap and every `--caps`; and once a cap field is
    /// changed, from the fields again.
    #[test]
    fn a_built_unit_is_classified_as_its_parsed_fields_are() {
        use crate::unit::{object_unit, ObjectType};
        let chk = format!("URI:CHK:{}:{}:3:10:1000", "a".repeat(26), "a".repeat(52));
        let dir = format!(
            "URI:DIR2:{}:{}",
            steward_cap::base32::encode(&[3u8; 16]),
            steward_cap::base32::encode(&[4u8; 32])
        );
        let caps = [
            ssk(7),
            ssk(7).weaken_to(Authority::Read).unwrap(),
            Cap::parse(&chk).unwrap(),
            Cap::parse(&dir).unwrap(),
            Cap::parse("URI:LIT:mfrgg").unwrap(),
            Cap::parse(&format!(
                "URI:CHK:{}:{}:0:10:1000",
                "a".repeat(26),
                "a".repeat(52)
            ))
            .unwrap(),
        ];
        let show = |c: UnitCap| match c {
            UnitCap::Cap(c) => format!("cap {}", c.expose()),
            UnitCap::Literal => "literal".into(),
            UnitCap::Bad(why) => format!("bad: {why}"),
        };
        for cap in &caps {
            for allowed in [Authority::Write, Authority::Read, Authority::Verify] {
                let built = object_unit(ObjectType::File, vec![], cap, allowed);
                assert!(built.built_cap().is_some(), "the unit keeps its parsed cap");
                let read_back: ObjectUnit =
                    serde_json::from_str(&serde_json::to_string(&built).unwrap()).unwrap();
                assert!(
                    read_back.built_cap().is_none(),
                    "a unit read from text has none"
                );
                assert_eq!(show(unit_cap(&built)), show(unit_cap(&read_back)));
            }
        }
        // A field changed after the unit was built: read from the fields.
        let mut changed = object_unit(ObjectType::File, vec![], &ssk(7), Authority::Write);
        changed.storage_index = ssk(8).storage_index().unwrap().to_string();
        assert!(changed.built_cap().is_none());
        assert!(matches!(unit_cap(&changed), UnitCap::Bad(_)));
        let mut moved = object_unit(ObjectType::File, vec![], &ssk(7), Authority::Write);
        moved.cap = String::new();
        assert!(moved.built_cap().is_none());
        assert!(matches!(unit_cap(&moved), UnitCap::Cap(c) if c.authority() == Authority::Write));
    }

    #[test]
    fn the_strongest_cap_wins_write_then_read_then_verify() {
        let write = ssk(7);
        let read = write.weaken_to(Authority::Read).unwrap();
        let verify = write.weaken_to(Authority::Verify).unwrap();
        let (w, r, v) = (write.expose(), read.expose(), verify.expose());
        let pick = |u: &ObjectUnit| match unit_cap(u) {
            UnitCap::Cap(c) => Some(c.authority()),
            _ => None,
        };
        assert_eq!(pick(&unit(r, w, v)), Some(Authority::Write));
        assert_eq!(pick(&unit(w, r, v)), Some(Authority::Write));
        assert_eq!(pick(&unit(r, r, v)), Some(Authority::Read));
        assert_eq!(pick(&unit("", "", v)), Some(Authority::Verify));
        let mut with_si = unit(r, "", v);
        with_si.storage_index = write.storage_index().unwrap().to_string();
        assert_eq!(pick(&with_si), Some(Authority::Read));
    }

    #[test]
    fn a_unit_is_classified_from_its_parsed_caps_never_from_empty_fields() {
        let write = ssk(7);
        let verify = write.weaken_to(Authority::Verify).unwrap();
        let other = ssk(8);
        let is_bad = |u: &ObjectUnit| matches!(unit_cap(u), UnitCap::Bad(_));
        // Not caps, even with a good verify cap beside them.
        assert!(is_bad(&unit("not a cap", "", "")));
        assert!(is_bad(&unit("URI:CHK:garbage", "", "")));
        // Encodings no file has (issue 10's re-run: k = 0 was checked
        // healthy on both backends, k > N on the native one).
        let chk =
            |k: u16, n: u16| format!("URI:CHK:{}:{}:{k}:{n}:1000", "a".repeat(26), "a".repeat(52));
        assert!(!is_bad(&unit(&chk(3, 10), "", "")));
        assert!(!is_bad(&unit(&chk(1, 1), "", "")));
        assert!(is_bad(&unit(&chk(0, 5), "", "")));
        assert!(is_bad(&unit(&chk(7, 5), "", "")));
        assert!(is_bad(&unit(&chk(3, 300), "", "")));
        assert!(is_bad(&unit("URI:CHK:not-a-cap", "", verify.expose())));
        // No cap at all: not a literal object, unless marked so.
        assert!(is_bad(&unit("", "", "")));
        let mut lit = unit("", "", "");
        lit.literal = true;
        assert!(matches!(unit_cap(&lit), UnitCap::Literal));
        lit.storage_index = "aaaa".into();
        assert!(is_bad(&lit), "a literal object has no storage index");
        // Caps of different objects, or another storage index.
        assert!(is_bad(&unit(
            write.expose(),
            "",
            other.weaken_to(Authority::Verify).unwrap().expose()
        )));
        let mut wrong_si = unit(write.expose(), "", "");
        wrong_si.storage_index = other.storage_index().unwrap().to_string();
        assert!(is_bad(&wrong_si));
        // A LIT cap is a cap.
        assert!(
            matches!(unit_cap(&unit("URI:LIT:mfrgg", "", "")), UnitCap::Cap(c) if c.is_literal())
        );
        // Messages never quote the cap.
        let secret = format!("{}x", write.expose());
        match unit_cap(&unit(&secret, "", "")) {
            UnitCap::Bad(m) => assert!(!m.contains(&write.expose()[10..]), "{m}"),
            _ => panic!(),
        }
    }

    #[test]
    fn health_is_read_from_results() {
        let r = |v| CheckResults::from_json(v).unwrap();
        assert_eq!(health_of(Some(&lit_results())), Health::Healthy);
        assert_eq!(
            health_of(Some(&r(
                serde_json::json!({"results": {"healthy": false, "recoverable": true}})
            ))),
            Health::Unhealthy
        );
        assert_eq!(
            health_of(Some(&r(
                serde_json::json!({"results": {"healthy": false, "recoverable": false}})
            ))),
            Health::Unrecoverable
        );
        assert_eq!(health_of(None), Health::Failed);
    }
}
