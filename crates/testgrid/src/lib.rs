//! A real, local Tahoe-LAFS 1.20.0 grid on loopback, for integration tests,
//! benchmarks and `steward demo`.
//!
//! This crate owns:
//!
//! * the Python virtualenv holding `tahoe-lafs==1.20.0` ([`venv`],
//!   [`tahoe_bin`]): found through `$STEWARD_TAHOE_VENV` or the cargo target
//!   directory, created with `python3 -m venv` + `pip install` when missing
//!   (needs PyPI once; safe against concurrent creators through a `flock`);
//! * bringing a grid up ([`Grid::start`]): one introducer, N storage nodes
//!   and G gateways (web-API nodes that store nothing), all on free
//!   `127.0.0.1` ports, created with `tahoe create-*` in parallel and waited
//!   for until every gateway sees every storage server connected;
//! * tearing it down: every process the harness starts dies with the
//!   [`Grid`] (on drop or [`Grid::stop`]) *and* with the process that
//!   started it, however that process ends (see "Cleanup" below);
//! * reopening a grid kept in a directory of the caller's ([`Grid::open`]),
//!   so a large tree is built once and reused by later runs (see
//!   "Reopening" below);
//! * small web-API helpers to build trees ([`Grid::mkdir`], [`Grid::upload`],
//!   [`Grid::link`], ...), and damage done on purpose by editing share files
//!   on disk ([`Grid::drop_shares`], [`Grid::make_unrecoverable`],
//!   [`Grid::corrupt_share`]) or stopping storage nodes.
//!
//! # Modules
//!
//! One concept each: `venv` (the virtualenv), `spawn` (the thread that
//! forks every child), `node` (one node's `tahoe run` process and what it
//! leaves in its directory), `ports` (free loopback ports), `cfg`
//! (`tahoe.cfg` and FURL parsing and editing), `shape` ([`GridConfig`],
//! [`GridShape`], [`OpenOptions`]), `start` ([`Grid::start`]), `open`
//! ([`Grid::open`]), `grid` (the running [`Grid`]: readiness, where things
//! are, stopping), `webapi` (web-API and CLI helpers) and `damage` (share
//! files and storage nodes damaged on purpose). The public API is
//! re-exported here; [`spawn`] is public too, for other test harnesses
//! (`steward-testpg`) whose children must die with the test process.
//!
//! # Cleanup
//!
//! Each `tahoe run NODEDIR` child is forked from one dedicated spawner thread
//! that never exits, in its own process group, with
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills it when the test
//! process dies, even by `kill -9` or when the `Grid` sits in a `static` and
//! is never dropped. As a second line, each child's stdin is a pipe whose
//! write end the `Grid` holds, and `tahoe run` (started *without*
//! `--allow-stdin-close`) exits when that pipe closes. Dropping the `Grid`
//! sends `SIGTERM` to each process group, then `SIGKILL` to laggards.
//! A fresh temporary base directory is deleted on drop; ones left behind by
//! dead processes (a `Grid` in a `static`, `kill -9`) are swept by the next
//! [`Grid::start`].
//!
//! # Reopening
//!
//! Given `base_dir: Some(dir)`, [`Grid::start`] keeps `dir` and, once every
//! node directory was created, records the grid's [`GridShape`] in
//! `dir/`[`GRID_FILE`] (`testgrid.json`: node counts, encoding, Tahoe
//! version). A later process can restart that grid with
//! [`Grid::open`]`(dir, `[`OpenOptions`]`)` — whether the previous run
//! stopped cleanly or was killed — and find the same node keys, shares,
//! ports, web-API URLs and introducer FURL. [`Grid::is_reusable`] is a
//! cheap check before trying, and [`Grid::recorded_shape`] /
//! [`GridShape::matches`] tell whether the kept grid has the wanted shape.
//!
//! `open` takes each node's ports from its `tahoe.cfg`, and fails, naming
//! the node and the port, if one is now held by another process (the
//! caller then deletes `dir` and builds again). It removes stale
//! `running.process` files: Tahoe 1.20's `tahoe run` deletes one whose pid
//! is dead, but refuses to start while that pid is *any* live process
//! (start time ignored, zombies included), and on a malformed one. It sets
//! each storage node's `tub.location` afresh (from
//! [`OpenOptions::storage_location_override`], e.g. new delaying proxies,
//! else direct) and drops the nodes' cached announcements, so no gateway
//! uses a stale location. The introducer keeps its FURL across restarts
//! (tub id from `private/node.pem`, swissnum from `private/introducer.furl`);
//! `open` still checks every node's `introducers.yaml` against the FURL it
//! actually serves and rewrites stale ones. A grid from `open` never
//! deletes its directory; dropping it stops its processes as usual.
//!
//! # Blocking
//!
//! Everything here is blocking (`std::process`, `reqwest::blocking`).
//! `reqwest::blocking` panics inside a tokio runtime, so async callers must
//! call [`Grid::start`] and the web-API helpers through
//! `tokio::task::spawn_blocking` (or from a plain thread). Dropping a `Grid`
//! is safe anywhere.

mod cfg;
mod damage;
mod grid;
mod node;
mod open;
mod ports;
mod shape;
pub mod spawn;
mod start;
mod venv;
mod webapi;

pub use damage::ShareFile;
pub use grid::Grid;
pub use ports::free_port;
pub use shape::{GridConfig, GridShape, OpenOptions, GRID_FILE};
pub use start::{START_ATTEMPTS, START_TIMEOUT};
pub use venv::{tahoe_bin, venv, venv_dir, TAHOE_REQUIREMENT};
pub use webapi::{percent_encode, unique_data};
