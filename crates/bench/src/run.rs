//! Running measured commands: a [`Job`] is one command (with what to do
//! before and after each run), [`run_group`] runs several jobs over the
//! same objects interleaved, `runs` times each, and collects a [`Group`].

use crate::measure::{self, Out, Procs, Sample};
use crate::results::{Entry, Group, Section, Tool};
use anyhow::Result;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What every measurement needs: the steward binary under test, where
/// logs go, runs per measurement, and the time limit of one run.
pub struct Ctx {
    pub steward: PathBuf,
    pub logs: PathBuf,
    pub runs: usize,
    pub timeout: Duration,
}

type CmdFn<'a> = Box<dyn Fn() -> Command + 'a>;
type PrepFn<'a> = Box<dyn Fn() -> Result<()> + 'a>;
type PostFn<'a> = Box<dyn Fn(&Sample) -> Result<String> + 'a>;

/// How a job's object count is read back.
#[derive(Clone, Copy)]
pub enum Seen {
    /// "N objects checked" on standard output.
    Checked,
    /// Lines on standard output (manifests).
    Lines,
}

pub struct Job<'a> {
    pub label: String,
    pub tool: Tool,
    pub gateways: usize,
    pub cmd: CmdFn<'a>,
    pub prep: Option<PrepFn<'a>>,
    pub post: Option<PostFn<'a>>,
    pub out: Out,
    pub seen: Seen,
}

impl<'a> Job<'a> {
    pub fn new(label: &str, tool: Tool, gateways: usize, cmd: impl Fn() -> Command + 'a) -> Self {
        Job {
            label: label.to_string(),
            tool,
            gateways,
            cmd: Box::new(cmd),
            prep: None,
            post: None,
            out: Out::Capture,
            seen: Seen::Checked,
        }
    }
    pub fn lines(mut self) -> Self {
        self.out = Out::CountLines;
        self.seen = Seen::Lines;
        self
    }
    pub fn prep(mut self, f: impl Fn() -> Result<()> + 'a) -> Self {
        self.prep = Some(Box::new(f));
        self
    }
    pub fn post(mut self, f: impl Fn(&Sample) -> Result<String> + 'a) -> Self {
        self.post = Some(Box::new(f));
        self
    }
}

/// A steward run that prints nothing for this long is stuck.
const STALL: Duration = Duration::from_secs(60);

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Runs `jobs` interleaved, `runs` times each.
#[allow(clippy::too_many_arguments)]
pub fn run_group(
    ctx: &Ctx,
    procs: &Procs,
    section: Section,
    title: &str,
    scope: &str,
    objects: u64,
    runs: usize,
    jobs: Vec<Job>,
) -> Group {
    let tag = match section {
        Section::Loopback => format!("loopback {title}"),
        Section::Slow { rtt_ms } => format!("RTT {rtt_ms} ms {title}"),
        Section::Synthetic => format!("synthetic {title}"),
        Section::Serve => format!("serve {title}"),
    };
    eprintln!("== {tag}: {objects} objects ({scope}), {runs} run(s) each ==");
    let mut entries: Vec<Entry> = jobs
        .iter()
        .map(|j| Entry {
            label: j.label.clone(),
            tool: j.tool,
            gateways: j.gateways,
            samples: Vec::new(),
            error: None,
            seen: Vec::new(),
            note: None,
            stalls: Vec::new(),
        })
        .collect();
    for r in 0..runs {
        for (job, e) in jobs.iter().zip(entries.iter_mut()) {
            // A steward run that stalls is killed and tried once more (the
            // stall is reported); any other failure ends this entry.
            for attempt in 0..2 {
                if e.error.is_some() {
                    break;
                }
                if let Some(p) = &job.prep {
                    if let Err(err) = p() {
                        eprintln!("  {}: preparing failed: {err:#}", job.label);
                        e.error = Some(format!("preparing: {err:#}"));
                        break;
                    }
                }
                let log = ctx.logs.join(format!(
                    "{}--{}--{r}{}.stderr",
                    slug(&tag),
                    slug(&job.label),
                    if attempt > 0 { "-retry" } else { "" }
                ));
                // steward prints as it goes (a line per 100 objects checked,
                // a unit per object listed): one that prints nothing for a
                // minute is stuck. Tahoe's CLI prints at the end only.
                let limits = measure::Limits {
                    timeout: match section {
                        Section::Synthetic => {
                            Duration::from_secs(120) + Duration::from_millis(objects / 2)
                        }
                        _ => ctx.timeout,
                    },
                    stall: (job.tool == Tool::Steward).then_some(STALL),
                };
                match measure::run(&mut (job.cmd)(), procs, &log, limits, &[1], job.out) {
                    Ok(s) => {
                        let seen = match job.seen {
                            Seen::Checked => measure::objects_checked(&s.stdout),
                            Seen::Lines => Some(s.stdout_lines),
                        };
                        if let Some(p) = &job.post {
                            match p(&s) {
                                Ok(n) => e.note = Some(n),
                                Err(err) => {
                                    e.note = Some(format!("post-run check failed: {err:#}"))
                                }
                            }
                        }
                        eprintln!(
                            "  run {}/{runs} {}: {:.2} s, {:.1} objects/s, client CPU {:.2} s, peak RSS {:.1} MB, gateways CPU {:.2} s, storage CPU {:.2} s{}{}{}",
                            r + 1,
                            job.label,
                            s.wall,
                            objects as f64 / s.wall,
                            s.cpu,
                            s.maxrss_kb as f64 / 1024.0,
                            s.gateways_cpu(),
                            s.storage_cpu(),
                            seen.map(|n| format!(", saw {n} objects")).unwrap_or_default(),
                            if s.status != 0 {
                                format!(", exit {}", s.status)
                            } else {
                                String::new()
                            },
                            e.note.as_ref().map(|n| format!(", {n}")).unwrap_or_default(),
                        );
                        e.seen.push(seen);
                        e.samples.push(s);
                        break;
                    }
                    Err(err) => {
                        let msg = format!("{err:#}");
                        eprintln!("  {} failed: {msg}", job.label);
                        if msg.contains("(stalled)") {
                            e.stalls
                                .push(format!("run {}: {}", r + 1, first_line(&msg)));
                            if attempt == 0 {
                                eprintln!("  trying that run once more");
                                continue;
                            }
                        }
                        e.error = Some(msg);
                    }
                }
            }
        }
    }
    Group {
        section,
        title: title.to_string(),
        scope: scope.to_string(),
        objects,
        entries,
    }
}

/// `steward ARGS` (the binary under test).
pub fn steward_cmd(ctx: &Ctx, args: &[&str]) -> Command {
    let mut c = Command::new(&ctx.steward);
    c.args(args);
    c
}
