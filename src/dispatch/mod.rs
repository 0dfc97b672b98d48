//! `steward dispatch`: the whole pipeline over many accounts, under one
//! request budget, resumable.
//!
//! * [`accounts`]: the accounts file (ACCOUNTS.toml), validated before any
//!   work.
//! * [`run`]: every due account's deep check at once, under one scheduler,
//!   its state in the job table ([`crate::store::jobs`]) and its units in
//!   the standalone stages' files under the state directory.
//! * [`shared`]: objects several accounts share, checked once per round.
//! * [`view`], [`metrics`]: live lines on a terminal or a log, Prometheus
//!   metrics.

pub mod accounts;
pub mod metrics;
pub mod run;
pub mod shared;
pub mod view;
