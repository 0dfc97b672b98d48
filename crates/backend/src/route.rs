//! Routing: which backend performs which operation.
//!
//! [`Routes`] is itself a [`Backend`]: each call goes to the backend
//! configured for its operation (list, check, verify, add-lease, repair), or
//! fails with `not-supported` and a message saying what to configure. This
//! is how a run checks natively against the storage servers while a
//! gateway lists directories and repairs, without the stages knowing.

use crate::{
    Backend, BackendError, CheckOptions, CheckResults, ErrorCode, Listing, Operation,
    RepairResults, Tenant,
};
use async_trait::async_trait;
use std::sync::Arc;
use steward_cap::{Authority, Cap};

/// The backend of each operation; `None` where nothing can do it.
#[derive(Clone)]
pub struct Routes {
    pub list: Option<Arc<dyn Backend>>,
    pub check: Arc<dyn Backend>,
    pub verify: Option<Arc<dyn Backend>>,
    pub add_lease: Option<Arc<dyn Backend>>,
    pub repair: Option<Arc<dyn Backend>>,
}

impl Routes {
    /// Everything to one backend (what it cannot do fails as it says).
    pub fn single(b: Arc<dyn Backend>) -> Routes {
        Routes {
            list: Some(b.clone()),
            check: b.clone(),
            verify: Some(b.clone()),
            add_lease: Some(b.clone()),
            repair: Some(b),
        }
    }

    /// Each operation to the first backend of `prefer` that supports it.
    pub fn first_capable(prefer: &[Arc<dyn Backend>]) -> Routes {
        let pick = |op: Operation| prefer.iter().find(|b| b.supports(op)).cloned();
        Routes {
            list: pick(Operation::List),
            check: pick(Operation::Check).unwrap_or_else(|| prefer[0].clone()),
            verify: pick(Operation::Verify),
            add_lease: pick(Operation::AddLease),
            repair: pick(Operation::Repair),
        }
    }

    fn route(&self, op: Operation) -> Option<&Arc<dyn Backend>> {
        match op {
            Operation::List => self.list.as_ref(),
            Operation::Check => Some(&self.check),
            Operation::Verify => self.verify.as_ref(),
            Operation::AddLease => self.add_lease.as_ref(),
            Operation::Repair => self.repair.as_ref(),
        }
    }

    /// The operation a check with `opts` is (verify and add-lease are done
    /// by one backend in one request, as Tahoe does).
    fn check_op(opts: CheckOptions) -> Operation {
        if opts.verify {
            Operation::Verify
        } else if opts.add_lease {
            Operation::AddLease
        } else {
            Operation::Check
        }
    }

    fn backend_for(
        &self,
        op: Operation,
        also: Option<Operation>,
    ) -> Result<&Arc<dyn Backend>, BackendError> {
        let b = self.route(op).filter(|b| b.supports(op));
        match (b, also) {
            (Some(b), Some(a)) if !b.supports(a) => Err(unsupported(op, Some(a))),
            (Some(b), _) => Ok(b),
            (None, _) => Err(unsupported(op, also)),
        }
    }

    /// The backend a check with `opts` goes to.
    pub fn checker(&self, opts: CheckOptions) -> Result<&Arc<dyn Backend>, BackendError> {
        let op = Self::check_op(opts);
        let also = (opts.verify && opts.add_lease).then_some(Operation::AddLease);
        self.backend_for(op, also)
    }
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::List => "list directories",
        Operation::Check => "check",
        Operation::Verify => "verify shares",
        Operation::AddLease => "renew leases",
        Operation::Repair => "repair",
    }
}

fn unsupported(op: Operation, also: Option<Operation>) -> BackendError {
    let what = match also {
        Some(a) => format!("{} and {} in one check", op_name(op), op_name(a)),
        None => op_name(op).to_string(),
    };
    BackendError::new(
        ErrorCode::NotSupported,
        format!("no configured backend can {what}: configure a gateway (--gateway) for it"),
    )
}

#[async_trait]
impl Backend for Routes {
    fn describe(&self) -> String {
        let list = self.list.as_ref().map(|b| b.describe());
        let check = self.check.describe();
        match list {
            Some(l) if l != check => format!("{check} (listings: {l})"),
            _ => check,
        }
    }

    fn supports(&self, op: Operation) -> bool {
        self.route(op).is_some_and(|b| b.supports(op))
    }

    fn kind(&self, op: Operation) -> &'static str {
        self.route(op).map_or("none", |b| b.kind(op))
    }

    fn authority_for(&self, op: Operation) -> Authority {
        self.route(op)
            .map_or(Authority::Read, |b| b.authority_for(op))
    }

    fn for_tenant(&self, tenant: Tenant) -> Arc<dyn Backend> {
        let tag = |b: &Arc<dyn Backend>| b.for_tenant(tenant.clone());
        Arc::new(Routes {
            list: self.list.as_ref().map(tag),
            check: tag(&self.check),
            verify: self.verify.as_ref().map(tag),
            add_lease: self.add_lease.as_ref().map(tag),
            repair: self.repair.as_ref().map(tag),
        })
    }

    async fn list_directory(&self, dir: &Cap) -> Result<Listing, BackendError> {
        self.backend_for(Operation::List, None)?
            .list_directory(dir)
            .await
    }

    async fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<CheckResults, BackendError> {
        self.checker(opts)?.check(cap, opts).await
    }

    async fn repair(&self, cap: &Cap, opts: CheckOptions) -> Result<RepairResults, BackendError> {
        self.backend_for(Operation::Repair, None)?
            .repair(cap, opts)
            .await
    }
}
