//! `steward demo`: a local grid, a sample tree, and steward run on it.

use clap::Args;
use steward::Exit;

#[derive(Args, Debug)]
pub struct DemoArgs {}

pub fn run(_a: DemoArgs) -> Exit {
    eprintln!("steward demo: not written yet");
    Exit::Failed
}
