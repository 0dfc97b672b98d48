//! Command-line parsing (clap derive) and dispatch to the subcommands.

mod check;
mod common;
mod deep_check;
#[cfg(feature = "demo")]
mod demo;
mod dispatch;
mod manifest;
mod remote;
mod serve;

use clap::{Parser, Subcommand};
use steward::Exit;

/// Keeps Tahoe-LAFS grids healthy: streaming, parallel, resumable manifest,
/// check and repair.
#[derive(Parser)]
#[command(name = "steward", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every object reachable from a root, one JSON unit per object.
    Manifest(manifest::ManifestArgs),
    /// Check every object of a manifest or cap list; one unit per object.
    Check(check::CheckArgs),
    /// Repair what a check found unhealthy.
    Repair(check::RepairArgs),
    /// Manifest, check and (with --repair) repair in one streaming run.
    #[command(name = "deep-check")]
    DeepCheck(deep_check::DeepCheckArgs),
    /// Manifest, check and repair many accounts (ACCOUNTS.toml) under one
    /// request budget, resumable; `dispatch status` shows where they stand.
    Dispatch(dispatch::DispatchArgs),
    /// Start a local grid, fill it with a sample tree, and run steward on it.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Serve Tahoe's streaming manifest and deep-check over HTTP, run by
    /// steward, and pass every other request to the gateway.
    Serve(serve::ServeArgs),
}

/// `stdout_closed`: standard output was closed when the process started
/// (`>&-`; see `main.rs`).
impl Command {
    /// Whether the command writes its results (units or a report) to
    /// standard output.
    fn writes_stdout(&self) -> bool {
        match self {
            Command::Manifest(a) => a.output.is_none(),
            Command::Check(a) => a.output.is_none(),
            Command::Repair(a) => a.output.is_none(),
            // Without --raw the report goes to standard output, -o or not.
            Command::DeepCheck(a) => a.output.is_none() || !a.raw,
            _ => false,
        }
    }
}

pub fn main(stdout_closed: bool) -> Exit {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(a) => serve::init_logging(a.log_format),
        _ => common::init_logging(),
    }
    if stdout_closed && cli.command.writes_stdout() {
        // What would be written there would be dropped by the /dev/null the
        // runtime put in its place, and the run exit 0.
        return common::report(&steward::Error::input(
            "standard output is closed (>&-), so what this command writes there would be lost: give -o FILE, or >/dev/null to discard it",
        ));
    }
    match cli.command {
        Command::Manifest(a) => common::run_async(manifest::run(a)),
        Command::Check(a) => common::run_async(check::run_check(a)),
        Command::Repair(a) => common::run_async(check::run_repair(a)),
        Command::DeepCheck(a) => common::run_async(deep_check::run(a)),
        Command::Dispatch(a) => common::run_async(dispatch::run(a)),
        #[cfg(feature = "demo")]
        Command::Demo(a) => demo::run(a),
        Command::Serve(a) => common::run_async(serve::run(a)),
    }
}
