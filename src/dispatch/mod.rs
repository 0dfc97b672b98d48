//! `steward dispatch`: the whole pipeline over many accounts, under one
//! request budget, resumable.
//!
//! * [`accounts`]: the accounts file (ACCOUNTS.toml), validated before any
//!   work.

pub mod accounts;
