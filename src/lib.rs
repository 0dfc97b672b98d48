//! steward: keeps Tahoe-LAFS grids healthy.
//!
//! The library holds all logic; the `steward` binary is a thin command line
//! over it. Data flows one way:
//!
//! ```text
//! root cap --[stage::traverse]--> manifest units --[stage::check]--> check units
//!          --[stage::repair]--> repair units --> report
//! ```
//!
//! * [`unit`]: the NDJSON unit format every stage reads and writes (Tahoe's
//!   `t=stream-manifest` / `t=stream-deep-check` format, plus typed errors).
//! * [`stats`]: Tahoe's deep-stats, computed as units are emitted.
//! * [`stage`]: the stages themselves, transport-agnostic.
//! * [`journal`]: the durable checkpoints that make every stage resumable.
//! * [`lock`]: the exclusive lock a run holds on its output files.
//! * [`output`]: private (0600) output files and stdout, and the rules
//!   (no devices, FIFOs or symlinks) every file steward writes follows.
//! * [`config`]: gateways, node directory, aliases and roots.
//! * [`progress`]: the terminal progress display.
//! * [`error`]: run-ending errors and exit codes.
//! * [`serve`]: `steward serve`, Tahoe's streaming operations over HTTP.
//!
//! Caps are parsed by the `steward-cap` crate and grid operations go through
//! the `Backend` trait of `steward-backend`, whose first implementation is
//! the gateway web-API client.

pub mod backends;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod input;
pub mod lock;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod serve;
pub mod stage;
pub mod stats;
pub mod store;
pub mod unit;

pub use error::{Error, ErrorKind, Exit, Result};
