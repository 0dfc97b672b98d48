//! Command-line parsing (clap derive) and dispatch to the subcommands.

mod common;
mod demo;
mod manifest;

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
    /// Start a local grid, fill it with a sample tree, and run steward on it.
    Demo(demo::DemoArgs),
}

pub fn main() -> Exit {
    let cli = Cli::parse();
    common::init_logging();
    match cli.command {
        Command::Manifest(a) => common::run_async(manifest::run(a)),
        Command::Demo(a) => demo::run(a),
    }
}
