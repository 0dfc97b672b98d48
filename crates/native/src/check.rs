//! A check of one object: every server asked at once (with the lease
//! renewed alongside when asked), refused certificates and failed renewals
//! judged, and, for an immutable object, the share listings counted by
//! Tahoe's rules ([`crate::results`]). Mutable objects go through
//! [`crate::servermap`].

use crate::results;
use crate::server::{Failure, Server, ShareKind};
use crate::NativeBackend;
use futures::future::join_all;
use serde_json::Value;
use std::collections::BTreeSet;
use steward_backend::{BackendError, ErrorCode};
use steward_cap::StorageIndex;

/// What one server said about one object.
pub(crate) struct Answer<T> {
    pub(crate) listing: Result<T, Failure>,
    /// `None` when no lease was asked for there.
    pub(crate) lease: Option<Result<bool, Failure>>,
}

impl NativeBackend {
    pub(crate) async fn renew(&self, s: &Server, si: &StorageIndex) -> Result<bool, Failure> {
        let secrets = self.set.lease.as_ref().expect("checked before");
        let seed = s.lease_seed().ok_or_else(|| {
            Failure::BadAnswer(format!(
                "no lease seed known for storage server {} (no FURL, and no TLS handshake made yet)",
                s.info.describe()
            ))
        })?;
        let (renew, cancel) = secrets.for_bucket(si.as_bytes(), &seed);
        s.renew_lease(&self.tenant, si, &renew, &cancel).await
    }

    /// Run `query` on one server, renewing the lease there too if asked:
    /// in parallel when the lease seed is known in advance (as Tahoe sends
    /// add-lease alongside its queries), else after a listing that found
    /// shares (the TLS handshake has then taught us the seed).
    pub(crate) async fn ask<T, F>(
        &self,
        s: &Server,
        si: &StorageIndex,
        add_lease: bool,
        has_shares: fn(&T) -> bool,
        query: F,
    ) -> Answer<T>
    where
        F: std::future::Future<Output = Result<T, Failure>>,
    {
        if add_lease && s.lease_seed().is_some() {
            let (listing, lease) = tokio::join!(query, self.renew(s, si));
            return Answer {
                listing,
                lease: Some(lease),
            };
        }
        let listing = query.await;
        let lease = match &listing {
            Ok(t) if add_lease && has_shares(t) => Some(self.renew(s, si).await),
            _ => None,
        };
        Answer { listing, lease }
    }

    /// Refused certificates and failed lease renewals make the check an
    /// error; servers that did not answer are merely not responding.
    pub(crate) fn judge<T>(
        &self,
        si: &StorageIndex,
        answers: &[Answer<T>],
        has_shares: fn(&T) -> bool,
    ) -> Result<(), BackendError> {
        let mut lease_failures = Vec::new();
        for (s, a) in self.set.servers.iter().zip(answers) {
            let lease_failure = a.lease.as_ref().and_then(|l| l.as_ref().err());
            for f in [a.listing.as_ref().err(), lease_failure]
                .into_iter()
                .flatten()
            {
                if let Failure::PinMismatch(m) = f {
                    return Err(BackendError::new(ErrorCode::ServerError, m.as_str()));
                }
            }
            match (&a.listing, &a.lease) {
                (Ok(t), Some(Err(f))) if has_shares(t) => {
                    lease_failures.push(f.message().to_string())
                }
                (Err(f), _) => {
                    tracing::debug!(si = %si, server = %s.info.describe(), "not responding: {}", f.message())
                }
                _ => {}
            }
        }
        if lease_failures.is_empty() {
            return Ok(());
        }
        Err(BackendError::new(
            ErrorCode::ServerError,
            format!(
                "lease renewal failed for SI {si} on {} server(s): {}",
                lease_failures.len(),
                lease_failures.join("; ")
            ),
        ))
    }

    /// Every server's listing of an immutable object's shares (with the
    /// lease renewed alongside when asked), judged: one answer per server.
    pub(crate) async fn immutable_listings(
        &self,
        si: &StorageIndex,
        add_lease: bool,
    ) -> Result<Vec<Answer<BTreeSet<u32>>>, BackendError> {
        fn nonempty(s: &BTreeSet<u32>) -> bool {
            !s.is_empty()
        }
        let answers: Vec<Answer<BTreeSet<u32>>> = join_all(self.set.servers.iter().map(|s| {
            self.ask(
                s,
                si,
                add_lease,
                nonempty,
                s.list_shares(&self.tenant, ShareKind::Immutable, si),
            )
        }))
        .await;
        self.judge(si, &answers, nonempty)?;
        Ok(answers)
    }

    pub(crate) async fn check_immutable(
        &self,
        si: &StorageIndex,
        k: u16,
        n: u16,
        add_lease: bool,
    ) -> Result<Value, BackendError> {
        let answers = self.immutable_listings(si, add_lease).await?;
        let mut responding = Vec::new();
        let mut listings = Vec::new();
        for (s, a) in self.set.servers.iter().zip(answers) {
            if let Ok(shares) = a.listing {
                responding.push(s.info.id.clone());
                listings.push(results::Listing {
                    server: s.info.id.clone(),
                    shares,
                });
            }
        }
        Ok(results::immutable(
            &si.to_string(),
            k,
            n,
            &responding,
            &listings,
            &[],
        ))
    }
}
