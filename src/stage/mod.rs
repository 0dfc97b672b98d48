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
//! (input offset, output length) in a [`StageCheckpoint`].

pub mod check;
pub mod repair;
pub mod traverse;

use crate::error::{Error, Result};
use crate::input::{parse_line, LineSource};
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
}

enum Item {
    Units(Vec<Unit>, u64),
    Bad(BadLine, u64),
}

/// Run `op` over every input unit, `jobs` at a time, writing results in
/// input order. A run-ending error from `op` (an unreachable gateway) stops
/// the stage after checkpointing everything before it, as does `stop`.
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
    let mut done_pos = ckpt.as_ref().map(|c| c.state.input_offset).unwrap_or(0);
    let mut done_lines = ckpt.as_ref().map(|c| c.state.input_lines).unwrap_or(0);
    loop {
        // Keep the pipe full.
        while input_open && pending.len() < jobs.max(1) {
            match &mut input {
                StageInput::Lines(src) => {
                    let next = tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => None,
                        l = src.next_line() => Some(l?),
                    };
                    let Some(next) = next else {
                        break;
                    };
                    match next {
                        None => input_open = false,
                        Some(line) => {
                            let end = line.end;
                            match parse_line(&line) {
                                Ok(None) => pending.push_back(Box::pin(async move {
                                    Ok(Item::Units(vec![], end))
                                })),
                                Ok(Some(u)) => {
                                    let fut = op(u);
                                    pending.push_back(Box::pin(async move {
                                        Ok(Item::Units(fut.await?, end))
                                    }));
                                }
                                Err(message) => {
                                    let bad = BadLine {
                                        number: line.number,
                                        message,
                                    };
                                    pending.push_back(Box::pin(
                                        async move { Ok(Item::Bad(bad, end)) },
                                    ));
                                }
                            }
                        }
                    }
                }
                StageInput::Channel(rx) => {
                    let next = if pending.is_empty() {
                        tokio::select! {
                            biased;
                            _ = stop.wait_for(|s| *s) => break,
                            u = rx.recv() => u,
                        }
                    } else {
                        match rx.try_recv() {
                            Ok(u) => Some(u),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => None,
                        }
                    };
                    match next {
                        None => input_open = false,
                        Some(u) => {
                            let fut = op(u);
                            pending
                                .push_back(Box::pin(async move { Ok(Item::Units(fut.await?, 0)) }));
                        }
                    }
                }
            }
        }
        if *stop.borrow() {
            drop(pending);
            save(sink, &mut ckpt, &input, done_pos, done_lines, &tally, false).await?;
            return Err(Error::interrupted());
        }
        if pending.is_empty() {
            if input_open {
                // Channel input with nothing ready: wait for the next unit.
                if let StageInput::Channel(rx) = &mut input {
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => continue,
                        u = rx.recv() => match u {
                            None => input_open = false,
                            Some(u) => {
                                let fut = op(u);
                                pending.push_back(Box::pin(async move { Ok(Item::Units(fut.await?, 0)) }));
                            }
                        }
                    }
                    continue;
                }
            }
            break;
        }
        let item = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => continue,
            // Prefer pulling more input while results are not ready, so the
            // pipe stays full: FuturesOrdered only yields the head in order.
            r = pending.next() => r.expect("not empty"),
        };
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                drop(pending);
                save(sink, &mut ckpt, &input, done_pos, done_lines, &tally, false).await?;
                return Err(e);
            }
        };
        match item {
            Item::Units(units, end) => {
                for u in units {
                    observer.output(&u, &mut tally);
                    sink.emit(u).await?;
                }
                done_pos = end;
            }
            Item::Bad(bad, end) => {
                bad_lines += 1;
                *tally.entry("bad-lines".into()).or_default() = bad_lines;
                observer.bad_line(&bad);
                done_pos = end;
            }
        }
        done_lines += 1;
        if let Some(c) = &ckpt {
            if last_ckpt.elapsed() >= c.interval {
                save(sink, &mut ckpt, &input, done_pos, done_lines, &tally, false).await?;
                last_ckpt = Instant::now();
            }
        }
    }
    observer.input_done(done_lines);
    save(sink, &mut ckpt, &input, done_pos, done_lines, &tally, true).await?;
    Ok(StageSummary {
        tally,
        bad_lines,
        already_done: false,
    })
}

async fn save(
    sink: &mut dyn UnitSink,
    ckpt: &mut Option<Checkpointing>,
    input: &StageInput,
    pos: u64,
    lines: u64,
    tally: &BTreeMap<String, u64>,
    done: bool,
) -> Result<()> {
    let len = sink.sync().await?;
    if let Some(c) = ckpt {
        c.state.input_offset = pos;
        c.state.input_lines = lines;
        c.state.output_len = len;
        c.state.tally = tally.clone();
        c.state.done = done;
        if let StageInput::Lines(src) = input {
            let (hash, len) = src.prefix_hash(pos);
            c.state.input_prefix_hash = hash;
            c.state.input_prefix_len = len;
        }
        c.state.store(&c.path)?;
        if let Some(n) = &c.notify {
            let _ = n.send(crate::input::Committed { len, done });
        }
    }
    Ok(())
}

/// Add one to a tally counter.
pub fn bump(tally: &mut BTreeMap<String, u64>, key: &str) {
    *tally.entry(key.to_string()).or_default() += 1;
}
