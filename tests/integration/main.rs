//! steward's integration tests, all in one binary, against a real local
//! Tahoe-LAFS grid (started once per test binary by `steward-testgrid`;
//! the first run also creates its virtualenv).
//!
//! Modules by topic: [`caps`] (local cap derivation against the gateway),
//! [`manifest`] (issue 2), [`check`] and [`repair`] and [`deep_check`]
//! (issue 3), [`faults`] (gateway down, 5xx, retries, several gateways) and
//! [`resume`] (kill -9 at a random moment, then a rerun), [`serve`]
//! (`steward serve` under the stock `tahoe` CLI), [`cluster`] (dispatch
//! workers sharing a PostgreSQL database that the test starts), [`engine`] (operations
//! sharing one scheduler) and [`instructions`] (issue 15: instructions per
//! object, no grid). Each test builds
//! its own tree with unique contents (Tahoe's convergent encryption would
//! otherwise share objects between tests) and damages only that.

mod common;
mod proxy;

mod caps;
mod check;
mod cluster;
mod deep_check;
mod dispatch;
mod engine;
mod faults;
mod hostile;
mod instructions;
mod manifest;
mod native;
mod repair;
mod resume;
mod serve;
mod serve_ops;
/// The bench's SYNTHETIC gateway (no Tahoe code), for tests of scale.
#[path = "../../crates/bench/src/synth.rs"]
#[allow(dead_code)]
mod synth;
