//! What the measurements produce and the report is made of: groups of
//! interleaved runs ([`Group`], [`Entry`]), the polling API's memory
//! ([`PollingApi`]), profiles, and all of it together ([`Results`]).

use crate::machine;
use crate::measure::{self, Sample};
use crate::tree;
use std::time::Duration;

/// Which tool a measured command is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Tahoe,
    Steward,
}

/// Where a group of measurements ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Loopback,
    Slow {
        rtt_ms: u64,
    },
    Synthetic,
    /// The stock `tahoe` CLI against the gateway and through `steward
    /// serve` (loopback).
    Serve,
}

/// One command measured `runs` times within a group.
#[derive(Debug)]
pub struct Entry {
    pub label: String,
    pub tool: Tool,
    /// Gateways the tool was given.
    pub gateways: usize,
    pub samples: Vec<Sample>,
    pub error: Option<String>,
    /// Objects the tool itself reported (per run), when it says.
    pub seen: Vec<Option<u64>>,
    /// What a post-run check found (last run).
    pub note: Option<String>,
    /// Runs killed because steward stopped making progress.
    pub stalls: Vec<String>,
}

impl Entry {
    pub fn median(&self) -> Option<&Sample> {
        (!self.samples.is_empty()).then(|| measure::median_sample(&self.samples))
    }
    pub fn median_wall(&self) -> Option<f64> {
        (!self.samples.is_empty())
            .then(|| measure::median(&self.samples.iter().map(|s| s.wall).collect::<Vec<_>>()))
    }
}

/// Interleaved runs of several commands over the same objects.
#[derive(Debug)]
pub struct Group {
    pub section: Section,
    pub title: String,
    /// What was walked (part of the tree, synthetic size).
    pub scope: String,
    pub objects: u64,
    pub entries: Vec<Entry>,
}

impl Group {
    pub fn entry(&self, label: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.label == label)
    }
}

/// Memory that Tahoe's `start-deep-check` result table takes in a gateway.
#[derive(Debug, Default)]
pub struct PollingApi {
    pub warm_objects: u64,
    pub objects: u64,
    pub reported: u64,
    pub wall: f64,
    pub gateway_cpu: f64,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub rss_released_kb: u64,
    pub error: Option<String>,
}

/// Everything the report is made of.
#[derive(Debug, Default)]
pub struct Results {
    pub machine: machine::Machine,
    pub command: String,
    pub quick: bool,
    pub runs: usize,
    pub synthetic_runs: usize,
    /// The measurements (after building steward).
    pub elapsed: Duration,
    /// `cargo build --release -p steward` at the start.
    pub build_steward_secs: f64,
    /// Building the tree on the real grid (this run, or the run that built
    /// a reused tree).
    pub build_secs: f64,
    /// When the tree was reused from an earlier run: when that run built it.
    pub tree_reused_from: Option<String>,
    pub tree: Option<tree::Counts>,
    pub parts: Vec<(String, tree::Counts)>,
    pub groups: Vec<Group>,
    pub polling: Option<PollingApi>,
    pub native: Option<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
    pub slow_verified: Vec<String>,
    pub profile: Option<Profile>,
    pub instructions: Option<Instructions>,
    /// Many accounts: dispatch against deep-check per account.
    pub dispatch: Option<crate::dispatch::DispatchBench>,
    /// Several workers on one PostgreSQL: store overhead and workers.
    pub cluster: Option<crate::cluster::ClusterBench>,
}

/// A flat `perf` profile of one steward run.
#[derive(Debug, Default)]
pub struct Profile {
    pub what: String,
    /// (percent of samples, shared object)
    pub dso: Vec<(f64, String)>,
    /// (percent of samples, symbol)
    pub symbols: Vec<(f64, String)>,
    pub error: Option<String>,
}

/// steward's instructions per object on the synthetic gateway
/// ([`steward_bench::cost`]).
#[derive(Debug, Default)]
pub struct Instructions {
    /// Objects of the big tree and of the small one whose run is
    /// subtracted (the fixed cost of a run).
    pub objects: u64,
    pub base_objects: u64,
    pub rows: Vec<InstructionRow>,
    /// Why `perf stat -e instructions` counted nothing here, if it did not.
    pub perf_missing: Option<String>,
    pub error: Option<String>,
}

/// One command's instructions per object.
#[derive(Debug)]
pub struct InstructionRow {
    /// `steward manifest`, `steward deep-check`.
    pub label: String,
    /// Under callgrind.
    pub callgrind: steward_bench::cost::PerObject,
    /// By `perf stat -e instructions:u`, where the host counts them.
    pub perf: Option<f64>,
}
