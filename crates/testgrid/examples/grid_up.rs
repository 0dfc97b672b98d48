//! Starts a default grid, prints its gateway URL and start time, waits for Enter.
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let t = Instant::now();
    let grid = steward_testgrid::Grid::start(Default::default())?;
    println!(
        "grid up in {:.2?} at {} ({})",
        t.elapsed(),
        grid.gateway_url(),
        grid.base_dir().display()
    );
    if std::env::args().any(|a| a == "--wait") {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
    }
    let t = Instant::now();
    drop(grid);
    println!("stopped in {:.2?}", t.elapsed());
    Ok(())
}
