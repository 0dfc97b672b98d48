//! `steward demo`: a local grid, a sample tree with some damage, and
//! steward run on it, showing what a newcomer should see.
//!
//! The grid comes from `steward-testgrid` (a real Tahoe-LAFS 1.20.0 grid on
//! loopback; the first run creates its virtualenv). The steps run the
//! `steward` binary itself, so what is printed is exactly what the commands
//! print.

use clap::Args;
use std::path::Path;
use std::process::Command;
use steward::Exit;
use steward_testgrid::{Grid, GridConfig};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the grid running until Enter is pressed, to try commands on it.
    #[arg(long)]
    pub keep: bool,
}

fn tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

fn say(text: &str) {
    if tty() {
        println!("\n\x1b[1m== {text}\x1b[0m");
    } else {
        println!("\n== {text}");
    }
}

fn show(cmd: &str) {
    if tty() {
        println!("\x1b[2m$ {cmd}\x1b[0m");
    } else {
        println!("$ {cmd}");
    }
}

struct Sample {
    root: String,
    damaged: Vec<(String, String)>,
}

fn build(g: &Grid) -> anyhow::Result<Sample> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let up = |name: &str, size: usize, fmt: &str| {
        g.upload(
            format!("{name} {stamp} {}", "x".repeat(size)).as_bytes(),
            fmt,
        )
    };
    let report = up("report.pdf", 40_000, "CHK")?;
    let notes = up("notes.txt", 3_000, "CHK")?;
    let todo = up("todo", 10, "CHK")?; // small enough to be a LIT file
    let budget = up("budget.ods", 8_000, "SDMF")?;
    let journal = up("journal.md", 12_000, "MDMF")?;
    let photo1 = up("beach.jpg", 60_000, "CHK")?;
    let photo2 = up("sunset.jpg", 50_000, "CHK")?;
    let old = up("old-backup.tar", 30_000, "CHK")?;
    let photos =
        g.mkdir_with_children(serde_json::json!({"beach.jpg": photo1, "sunset.jpg": photo2}))?;
    let docs = g.mkdir_with_children(serde_json::json!({
        "report.pdf": report, "notes.txt": notes, "todo": todo, "budget.ods": budget, "journal.md": journal,
    }))?;
    let archive = g.mkdir_immutable(serde_json::json!({"old-backup.tar": old}))?;
    let root = g.mkdir_with_children(
        serde_json::json!({"docs": docs, "photos": photos, "archive": archive}),
    )?;
    g.link(&docs, "photos (shared)", &photos)?;
    g.link(&photos, "back to home", &root)?;
    g.add_alias("tahoe", &root)?;
    let si = |cap: &str| -> anyhow::Result<String> {
        Ok(steward_cap::Cap::parse(cap)?
            .storage_index()
            .ok_or_else(|| anyhow::anyhow!("no storage index"))?
            .to_string())
    };
    g.drop_shares(&si(&report)?, 2)?;
    g.drop_shares(&si(&budget)?, 2)?;
    g.drop_shares(&si(&photo2)?, 1)?;
    g.make_unrecoverable(&si(&old)?)?;
    Ok(Sample {
        root,
        damaged: vec![
            ("docs/report.pdf".into(), "2 of its 5 shares deleted".into()),
            (
                "docs/budget.ods".into(),
                "a mutable file, 2 of 5 shares deleted".into(),
            ),
            ("photos/sunset.jpg".into(), "1 of 5 shares deleted".into()),
            (
                "archive/old-backup.tar".into(),
                "only 1 share left, 2 needed: lost".into(),
            ),
        ],
    })
}

fn steward_cmd(node_dir: &Path, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("own path");
    let mut c = Command::new(exe);
    c.args(args).arg("-d").arg(node_dir);
    c
}

pub fn run(a: DemoArgs) -> Exit {
    match demo(a) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("steward demo: {e:#}");
            Exit::Failed
        }
    }
}

fn demo(a: DemoArgs) -> anyhow::Result<Exit> {
    say("Starting a local Tahoe-LAFS grid: an introducer, 5 storage servers, a gateway (2-of-5 encoding)");
    println!("(the first run installs tahoe-lafs 1.20.0 into a virtualenv under target/, which takes a minute)");
    let t = std::time::Instant::now();
    let grid = Grid::start(GridConfig::default())?;
    println!(
        "grid up in {:.1} s; gateway at {}",
        t.elapsed().as_secs_f64(),
        grid.gateway_url()
    );
    let node = grid.gateway_dir().to_path_buf();

    say("Uploading a sample tree (directories, a shared folder, a cycle, CHK, LIT, SDMF and MDMF files) and damaging it");
    let sample = build(&grid)?;
    for (path, what) in &sample.damaged {
        println!("  damaged {path}: {what}");
    }
    println!(
        "  the root is the gateway's `tahoe:` alias ({})",
        steward_cap::redact(&sample.root)
    );

    say("steward manifest: every object once, as Tahoe's stream-manifest units (first lines)");
    show("steward manifest tahoe: | head -3");
    let out = steward_cmd(&node, &["manifest", "-q", "tahoe:"]).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines().take(3) {
        println!("{}", truncate(line, 160));
    }
    eprint!("{}", String::from_utf8_lossy(&out.stderr));

    say("steward deep-check: what is unhealthy");
    show("steward deep-check tahoe:");
    steward_cmd(&node, &["deep-check", "tahoe:"]).status()?;

    say("steward deep-check --repair: repair what can be repaired, report what cannot, and go on");
    show("steward deep-check --repair tahoe:");
    steward_cmd(&node, &["deep-check", "--repair", "tahoe:"]).status()?;

    say("A fresh check afterwards: only the lost file is left");
    show("steward deep-check tahoe:");
    let st = steward_cmd(&node, &["deep-check", "tahoe:"]).status()?;
    println!(
        "(exit code {}: 0 all healthy, 1 unhealthy or lost objects remain, 2 the run failed, 3 incomplete)",
        st.code().unwrap_or(-1)
    );

    say("Tahoe's own tool, for comparison, on the same (repaired) tree");
    show("tahoe deep-check --repair tahoe:");
    let mut c = grid.tahoe();
    c.args(["deep-check", "--repair", "tahoe:"]);
    let o = c.output()?;
    print!("{}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    if let Some(first) = err.lines().next() {
        println!("{first}");
        println!("(Tahoe 1.20 stops the whole run at the first unrecoverable file)");
    }

    if a.keep {
        say("The grid keeps running; try for example:");
        println!(
            "  {} deep-check -d {} tahoe:",
            std::env::current_exe()?.display(),
            node.display()
        );
        println!("Press Enter to stop it.");
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
    }
    say("Stopping the grid");
    drop(grid);
    Ok(Exit::Ok)
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        format!("{}…", &s[..n])
    }
}
