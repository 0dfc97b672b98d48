//! The pipeline stages, in the order data flows through them:
//! [`traverse`] (root cap -> manifest units), [`check`] (manifest units ->
//! check units) and [`repair`] (check units -> repair units). Each stage is
//! transport-agnostic: it reads units from a [`LineSource`] (a file, stdin,
//! or a file another stage is still writing) or a channel, and hands its
//! output to a [`UnitSink`], so the file pipeline (`steward manifest`,
//! `check`, `repair`), the one-shot `steward deep-check` and a server drive
//! the same code.
//!
//! [`run_mapped`] is the engine of the check and repair stages: it maps each
//! input unit through an async operation with up to `jobs` operations in
//! flight, writes the results in input order (so progress is one number),
//! and at a bounded interval makes the output durable and then records
//! (input offset, output length) in a [`StageCheckpoint`]. It records one
//! on every way out but a failed write of the output itself (stop, the
//! end, a run-ending error from an operation or from the input), so that
//! what it wrote is always covered by a checkpoint; the first checkpoint
//! is written before the output is created ([`crate::pipeline`]). It also
//! records the [`InputShape`], so that an input cut short is reported, and
//! it closes the output of a plain cap list with a stats unit.

pub mod check;
pub mod repair;
pub mod traverse;

use crate::error::{Error, Result};
use crate::input::{parse_line, InputShape, LineSource, Seen};
use crate::journal::StageCheckpoint;
use crate::unit::{Unit, UnitSink};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Where a mapped stage gets its units.
pub enum StageInput {
    /// Lines of a file or stream, with positions (resumable).
    Lines(LineSource),
    /// Units from an earlier stage of the same process (not resumable).
    Channel(mpsc::Receiver<Unit>),
}

/// A problem with one input line, reported and skipped.
#[derive(Clone, Debug)]
pub struct BadLine {
    pub number: u64,
    pub message: String,
}

/// The checkpoint a mapped stage keeps, if it writes to a file.
pub struct Checkpointing {
    pub path: PathBuf,
    pub state: StageCheckpoint,
    pub interval: Duration,
    /// Told the output's committed length after each checkpoint, for a
    /// stage of the same process that follows this output.
    pub notify: Option<watch::Sender<crate::input::Committed>>,
}

/// Observes the stage: each output unit in order, and each bad line.
pub trait Observer: Send {
    fn output(&mut self, unit: &Unit, tally: &mut BTreeMap<String, u64>);
    fn bad_line(&mut self, bad: &BadLine);
    fn input_done(&mut self, _lines: u64) {}
}

pub type Op = dyn Fn(Unit) -> BoxFuture<'static, Result<Vec<Unit>>> + Send + Sync;

/// What a mapped stage did.
#[derive(Clone, Debug, Default)]
pub struct StageSummary {
    pub tally: BTreeMap<String, u64>,
    pub bad_lines: u64,
    pub already_done: bool,
    /// What the input held (empty for a channel input).
    pub shape: InputShape,
}

enum Item {
    /// The units an input line became, where the line ends, and what the
    /// line adds to the input's shape.
    Units(Vec<Unit>, u64, Option<Seen>),
    Bad(BadLine, u64),
}

/// A spawned task that is aborted when dropped: in-flight requests always
/// make progress (and give back their place at the gateway) even while the
/// stage is busy writing, and stop with the stage.
pub(crate) struct Owned<T>(tokio::task::JoinHandle<T>);

impl<T: Send + 'static> Owned<T> {
    pub(crate) fn spawn(fut: impl std::future::Future<Output = T> + Send + 'static) -> Self {
        Owned(tokio::spawn(fut))
    }
}

impl<T> std::future::Future for Owned<T> {
    type Output = Result<T>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| {
            r.map_err(|e| {
                Error::new(
                    crate::error::ErrorKind::Io,
                    format!("a worker task failed: {e}"),
                )
            })
        })
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next input of a stage, parsed.
enum Next {
    /// A unit, where its line ends, and whether it was a plain cap line.
    Unit(Unit, u64, bool),
    Blank(u64),
    Bad(BadLine, u64),
}

async fn next_input(input: &mut StageInput) -> Result<Option<Next>> {
    match input {
        StageInput::Lines(src) => Ok(src.next_line().await?.map(|line| {
            let end = line.end;
            match parse_line(&line) {
                Ok(None) => Next::Blank(end),
                Ok(Some(u)) => Next::Unit(u, end, !line.text.trim_start().starts_with('{')),
                Err(message) => Next::Bad(
                    BadLine {
                        number: line.number,
                        message,
                    },
                    end,
                ),
            }
        })),
        StageInput::Channel(rx) => Ok(rx.recv().await.map(|u| Next::Unit(u, 0, false))),
    }
}

/// Run `op` over every input unit, `jobs` at a time, writing results in
/// input order. A run-ending error from `op` (an unreachable gateway) or
/// from the input (a followed producer that stopped) stops the stage after
/// checkpointing everything before it, as does `stop`.
pub async fn run_mapped(
    mut input: StageInput,
    jobs: usize,
    op: &Op,
    sink: &mut dyn UnitSink,
    mut ckpt: Option<Checkpointing>,
    mut stop: watch::Receiver<bool>,
    observer: &mut dyn Observer,
) -> Result<StageSummary> {
    let mut tally = ckpt
        .as_ref()
        .map(|c| c.state.tally.clone())
        .unwrap_or_default();
    let mut bad_lines = tally.get("bad-lines").copied().unwrap_or(0);
    let mut pending: FuturesOrdered<BoxFuture<'static, Result<Item>>> = FuturesOrdered::new();
    let mut input_open = true;
    let mut last_ckpt = Instant::now();
    let mut done = ckpt
        .as_ref()
        .map(|c| Done {
            pos: c.state.input_offset,
            lines: c.state.input_lines,
            shape: c.state.shape.clone(),
        })
        .unwrap_or_default();
    loop {
        if !input_open && pending.is_empty() {
            break;
        }
        let room = input_open && pending.len() < jobs.max(1);
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                drop(pending);
                save(sink, &mut ckpt, &input, &done, &tally, false).await?;
                return Err(Error::interrupted());
            }
            // Results first, in input order, so output keeps flowing.
            Some(item) = pending.next(), if !pending.is_empty() => {
                let item = match item {
                    Ok(i) => i,
                    Err(e) => {
                        drop(pending);
                        return Err(save_after(e, sink, &mut ckpt, &input, &done, &tally).await);
                    }
                };
                match item {
                    Item::Units(units, end, seen) => {
                        for u in units {
                            observer.output(&u, &mut tally);
                            sink.emit(u).await?;
                        }
                        done.pos = end;
                        if let Some(seen) = seen {
                            done.shape.record(seen);
                        }
                    }
                    Item::Bad(bad, end) => {
                        bad_lines += 1;
                        *tally.entry("bad-lines".into()).or_default() = bad_lines;
                        observer.bad_line(&bad);
                        done.pos = end;
                    }
                }
                done.lines += 1;
                if let Some(c) = &ckpt {
                    if last_ckpt.elapsed() >= c.interval {
                        save(sink, &mut ckpt, &input, &done, &tally, false).await?;
                        last_ckpt = Instant::now();
                    }
                }
            }
            next = next_input(&mut input), if room => {
                let next = match next {
                    Ok(n) => n,
                    Err(e) => {
                        drop(pending);
                        return Err(save_after(e, sink, &mut ckpt, &input, &done, &tally).await);
                    }
                };
                match next {
                    None => input_open = false,
                    Some(Next::Unit(u, end, from_cap)) => {
                        let seen = matches!(input, StageInput::Lines(_))
                            .then(|| Seen::of(&u, from_cap));
                        let task = Owned::spawn(op(u));
                        pending.push_back(Box::pin(async move { Ok(Item::Units(task.await??, end, seen)) }));
                    }
                    Some(Next::Blank(end)) => {
                        pending.push_back(Box::pin(async move { Ok(Item::Units(vec![], end, None)) }))
                    }
                    Some(Next::Bad(bad, end)) => {
                        pending.push_back(Box::pin(async move { Ok(Item::Bad(bad, end)) }))
                    }
                }
            }
        }
    }
    observer.input_done(done.lines);
    // A plain cap list has no stats unit; its output gets one, so that the
    // next stage can tell it complete.
    if let Some(closing) = done.shape.closing_unit() {
        observer.output(&closing, &mut tally);
        sink.emit(closing).await?;
    }
    save(sink, &mut ckpt, &input, &done, &tally, true).await?;
    Ok(StageSummary {
        tally,
        bad_lines,
        already_done: false,
        shape: done.shape,
    })
}

/// How much of the input a stage has done (its output written), as a
/// checkpoint records it.
#[derive(Default)]
struct Done {
    /// Input bytes.
    pos: u64,
    /// Input lines.
    lines: u64,
    /// What those lines held.
    shape: InputShape,
}

/// Checkpoint what is done after the run-ending error `e`, and return `e`
/// (a failure to save is logged: `e` says why the run ended).
async fn save_after(
    e: Error,
    sink: &mut dyn UnitSink,
    ckpt: &mut Option<Checkpointing>,
    input: &StageInput,
    done: &Done,
    tally: &BTreeMap<String, u64>,
) -> Error {
    if let Err(s) = save(sink, ckpt, input, done, tally, false).await {
        tracing::warn!("could not checkpoint after the error: {s}");
    }
    e
}

async fn save(
    sink: &mut dyn UnitSink,
    ckpt: &mut Option<Checkpointing>,
    input: &StageInput,
    done: &Done,
    tally: &BTreeMap<String, u64>,
    finished: bool,
) -> Result<()> {
    let len = sink.sync().await?;
    if let Some(c) = ckpt {
        c.state.input_offset = done.pos;
        c.state.input_lines = done.lines;
        c.state.output_len = len;
        c.state.tally = tally.clone();
        c.state.shape = done.shape.clone();
        c.state.done = finished;
        if let StageInput::Lines(src) = input {
            let (hash, len) = src.prefix_hash(done.pos);
            c.state.input_prefix_hash = hash;
            c.state.input_prefix_len = len;
        }
        c.state.store(&c.path)?;
        if let Some(n) = &c.notify {
            let _ = n.send(crate::input::Committed {
                len,
                done: finished,
            });
        }
    }
    Ok(())
}

/// Add one to a tally counter.
pub fn bump(tally: &mut BTreeMap<String, u64>, key: &str) {
    *tally.entry(key.to_string()).or_default() += 1;
}
