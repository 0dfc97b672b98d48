//! The engine of the check and repair stages: map every input unit through
//! an async operation, many at once, and write the results in input order.
//!
//! * **Look-ahead window** ([`MappedOptions::window`]): how many units the
//!   stage works on at once. Whether their requests are in flight is the
//!   scheduler's decision ([`steward_backend::sched`]), under the process's
//!   budget, the tenant's fair share and each endpoint's pace.
//! * **Reorder window** ([`MappedOptions::reorder`]): results are written in
//!   input order (so progress is one number: an input position), so a unit
//!   done early waits for those before it. Up to `reorder` units may be
//!   started or finished but not yet written: a slow unit at the head (a
//!   verify of a large file) does not stall the others, which go on being
//!   started and finished behind it. When the reorder window is full, the
//!   stage starts nothing new until the head is written; its checkpoint, a
//!   position, cannot move past the head either (after a crash, the units
//!   behind it are done again).
//! * **Checkpoints**: at a bounded interval, and on every way out but a
//!   failed write of the output itself (the end, a stop, a run-ending error
//!   from an operation or the input), the output is made durable and then
//!   the store records (input position, output position, typed tally,
//!   [`InputShape`]) under the stage's key: what was written is always
//!   covered by a checkpoint.
//! * **Input shape**: what the input held, so that an input cut short (units
//!   without the stats unit that ends a manifest, or with one that counts
//!   other objects) is reported; the output of a plain cap list gets a
//!   closing stats unit. An output that holds fewer objects than the input
//!   (a repair that writes only what it acted on) gets its stats unit
//!   marked as a subset ([`InputShape::mark_subset`]), so that a reader can
//!   still tell it whole.

use super::tally::Tally;
use super::{BadLine, Owned};
use crate::engine::StageCtx;
use crate::error::{Error, Result};
use crate::input::{parse_line, Committed, InputShape, LineSource, Seen};
use crate::store::{StageKey, StageName, StagePosition, Store};
use crate::unit::{Unit, UnitSink};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Where a mapped stage gets its units.
pub enum StageInput {
    /// Lines of a file or stream, with positions (resumable).
    Lines(LineSource),
    /// Units from an earlier stage of the same process (not resumable).
    Channel(mpsc::Receiver<Unit>),
}

/// The operation applied to each unit; `Err` only when the run cannot go
/// on (no gateway reachable).
pub type Op = dyn Fn(Unit) -> BoxFuture<'static, Result<Vec<Unit>>> + Send + Sync;

/// How a mapped stage runs.
#[derive(Clone, Copy, Debug)]
pub struct MappedOptions {
    /// Units worked on at once (at least 1).
    pub window: usize,
    /// Units started or finished but not yet written, at most (at least
    /// `window`).
    pub reorder: usize,
    /// Commit a checkpoint at least this often.
    pub commit_interval: Duration,
}

impl MappedOptions {
    /// `window` units at once, and a reorder window 16 times as large
    /// (at least 1,024 units).
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        MappedOptions {
            window,
            reorder: (window * 16).max(1024),
            commit_interval: Duration::from_secs(1),
        }
    }
}

/// The checkpoint a mapped stage keeps, if its output is resumable.
pub struct Checkpointing {
    pub store: Arc<dyn Store>,
    pub run: String,
    pub stage: StageName,
    /// Where the stage stands (what the store had, on a resume).
    pub state: StagePosition,
    /// Told the output's committed position after each checkpoint, for a
    /// stage of the same process that follows this output.
    pub notify: Option<watch::Sender<Committed>>,
}

/// What a mapped stage did.
#[derive(Clone, Debug, Default)]
pub struct StageSummary<T> {
    pub tally: T,
    /// The store said the stage had already finished: nothing was done.
    pub already_done: bool,
    /// What the input held (empty for a channel input).
    pub shape: InputShape,
}

enum SlotState {
    Running,
    Done(Result<Vec<Unit>>),
    Bad(BadLine),
}

/// One input line, in input order, until it is written.
struct Slot {
    /// Input position just after the line.
    end: u64,
    seen: Option<Seen>,
    state: SlotState,
}

/// How much of the input is done (its output written), as a checkpoint
/// records it.
struct Done<T> {
    pos: u64,
    lines: u64,
    shape: InputShape,
    tally: T,
}

/// Run `op` over every input unit (see the module doc).
pub async fn run_mapped<T: Tally>(
    mut input: StageInput,
    opts: MappedOptions,
    op: &Op,
    sink: &mut dyn UnitSink,
    mut ckpt: Option<Checkpointing>,
    ctx: &StageCtx,
) -> Result<StageSummary<T>> {
    let mut stop = ctx.stop.clone();
    let window = opts.window.max(1);
    let reorder = opts.reorder.max(window);
    let mut done: Done<T> = match &ckpt {
        Some(c) => Done {
            pos: c.state.input_offset,
            lines: c.state.input_lines,
            shape: c.state.shape.clone(),
            tally: serde_json::from_value(c.state.tally.clone()).unwrap_or_default(),
        },
        None => Done {
            pos: 0,
            lines: 0,
            shape: InputShape::default(),
            tally: T::default(),
        },
    };
    let total = match &input {
        StageInput::Lines(src) => src.size().unwrap_or(0),
        StageInput::Channel(_) => 0,
    };
    ctx.status.set_position(done.pos, total);
    let mut slots: VecDeque<Slot> = VecDeque::new();
    // Index (in input order) of slots[0].
    let mut base: u64 = 0;
    let mut running: FuturesUnordered<BoxFuture<'static, (u64, Result<Vec<Unit>>)>> =
        FuturesUnordered::new();
    let mut input_open = true;
    let mut last_ckpt = Instant::now();
    loop {
        // Write what is finished at the head, in input order.
        while slots
            .front()
            .is_some_and(|s| !matches!(s.state, SlotState::Running))
        {
            let slot = slots.pop_front().expect("checked");
            base += 1;
            match slot.state {
                SlotState::Running => unreachable!(),
                SlotState::Done(Err(e)) => {
                    drop(running);
                    return Err(save_after(e, sink, &mut ckpt, &input, &done).await);
                }
                SlotState::Done(Ok(units)) => {
                    for mut u in units {
                        if let Some(Seen::Stats(read)) = slot.seen {
                            done.shape.mark_subset(read, &mut u);
                        }
                        done.shape.wrote(&u);
                        done.tally.count(&u);
                        if matches!(u, Unit::Object(_)) {
                            ctx.status.add_objects(1);
                        }
                        sink.emit(u).await?;
                    }
                    if let Some(seen) = slot.seen {
                        done.shape.record(seen);
                    }
                }
                SlotState::Bad(bad) => {
                    done.tally.bad_line();
                    ctx.notice(&format!(
                        "steward: input line {}: {}; skipped",
                        bad.number, bad.message
                    ));
                }
            }
            done.pos = slot.end;
            done.lines += 1;
            ctx.status.set_position(done.pos, total);
        }
        if ckpt.is_some() && last_ckpt.elapsed() >= opts.commit_interval {
            save(sink, &mut ckpt, &input, &done, false).await?;
            last_ckpt = Instant::now();
        }
        if !input_open && slots.is_empty() {
            break;
        }
        let room = input_open && running.len() < window && slots.len() < reorder;
        let stopped = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => true,
            Some((index, result)) = running.next(), if !running.is_empty() => {
                if let Some(slot) = slots.get_mut((index - base) as usize) {
                    slot.state = SlotState::Done(result);
                }
                false
            }
            next = next_input(&mut input), if room => {
                match next {
                    Err(e) => {
                        drop(running);
                        return Err(save_after(e, sink, &mut ckpt, &input, &done).await);
                    }
                    Ok(None) => input_open = false,
                    Ok(Some(Next::Unit(u, end, from_cap))) => {
                        let seen = matches!(input, StageInput::Lines(_))
                            .then(|| Seen::of(&u, from_cap));
                        let index = base + slots.len() as u64;
                        slots.push_back(Slot { end, seen, state: SlotState::Running });
                        let task = Owned::spawn(op(u));
                        running.push(Box::pin(async move {
                            (index, task.await.and_then(|r| r))
                        }));
                    }
                    Ok(Some(Next::Blank(end))) => slots.push_back(Slot {
                        end,
                        seen: None,
                        state: SlotState::Done(Ok(vec![])),
                    }),
                    Ok(Some(Next::Bad(bad, end))) => slots.push_back(Slot {
                        end,
                        seen: None,
                        state: SlotState::Bad(bad),
                    }),
                }
                false
            }
        };
        if stopped {
            drop(running);
            save(sink, &mut ckpt, &input, &done, false).await?;
            return Err(Error::interrupted());
        }
    }
    // A plain cap list has no stats unit; its output gets one, so that the
    // next stage can tell it complete.
    if let Some((mut closing, count)) = done.shape.closing_unit() {
        done.shape.mark_subset(count, &mut closing);
        done.shape.wrote(&closing);
        done.tally.count(&closing);
        sink.emit(closing).await?;
    }
    save(sink, &mut ckpt, &input, &done, true).await?;
    ctx.status.finish();
    Ok(StageSummary {
        tally: done.tally,
        already_done: false,
        shape: done.shape,
    })
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

/// Checkpoint what is done after the run-ending error `e`, and return `e`
/// (a failure to save is logged: `e` says why the run ended).
async fn save_after<T: Tally>(
    e: Error,
    sink: &mut dyn UnitSink,
    ckpt: &mut Option<Checkpointing>,
    input: &StageInput,
    done: &Done<T>,
) -> Error {
    if let Err(s) = save(sink, ckpt, input, done, false).await {
        tracing::warn!("could not checkpoint after the error: {s}");
    }
    e
}

async fn save<T: Tally>(
    sink: &mut dyn UnitSink,
    ckpt: &mut Option<Checkpointing>,
    input: &StageInput,
    done: &Done<T>,
    finished: bool,
) -> Result<()> {
    // Computed before any await: the input is not held across one.
    let prefix = match input {
        StageInput::Lines(src) => Some(src.prefix_hash(done.pos)),
        StageInput::Channel(_) => None,
    };
    let output = sink.sync().await?;
    let Some(c) = ckpt else {
        return Ok(());
    };
    c.state.input_offset = done.pos;
    c.state.input_lines = done.lines;
    c.state.output = output;
    c.state.tally = serde_json::to_value(&done.tally).expect("a tally serializes");
    c.state.shape = done.shape.clone();
    c.state.done = finished;
    if let Some((hash, len)) = prefix {
        c.state.input_prefix_hash = hash;
        c.state.input_prefix_len = len;
    }
    let key = StageKey {
        run: &c.run,
        stage: c.stage,
    };
    c.store.set_position(key, &c.state).await?;
    if let Some(n) = &c.notify {
        let _ = n.send(Committed {
            len: output,
            done: finished,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The reorder window on an in-memory operation (the order and the
    //! positions are what is tested; the integration tests run real
    //! checks).
    use super::*;
    use crate::stage::tally::CheckTally;
    use std::sync::Mutex;

    struct Collect(Arc<Mutex<Vec<String>>>);

    #[async_trait::async_trait]
    impl UnitSink for Collect {
        async fn emit(&mut self, unit: Unit) -> Result<()> {
            if let Unit::Object(o) = unit {
                self.0.lock().unwrap().push(o.path.join("/"));
            }
            Ok(())
        }
        async fn sync(&mut self) -> Result<u64> {
            Ok(self.0.lock().unwrap().len() as u64)
        }
    }

    fn unit(n: usize) -> Unit {
        Unit::parse(&format!(
            r#"{{"type": "file", "path": ["{n}"], "cap": "URI:LIT:mfrgg"}}"#
        ))
        .unwrap()
    }

    /// Unit 0 takes 300 ms; the others 1 ms. With a window of 4 and a
    /// reorder window of 64, the 50 others are all done while unit 0 is
    /// still running, and everything is written in input order.
    #[tokio::test]
    async fn a_slow_head_does_not_stall_the_units_behind_it() {
        let (tx, rx) = mpsc::channel(100);
        for n in 0..51 {
            tx.send(unit(n)).await.unwrap();
        }
        drop(tx);
        let finished = Arc::new(Mutex::new(Vec::new()));
        let f2 = finished.clone();
        let op: Box<Op> = Box::new(move |u| {
            let f = f2.clone();
            Box::pin(async move {
                let Unit::Object(o) = &u else { unreachable!() };
                let n: usize = o.path[0].parse().unwrap();
                let ms = if n == 0 { 300 } else { 1 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                f.lock().unwrap().push(n);
                Ok(vec![u])
            })
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut sink = Collect(out.clone());
        let (_stop_tx, stop) = watch::channel(false);
        let ctx = StageCtx::standalone("check", stop);
        let opts = MappedOptions {
            window: 4,
            reorder: 64,
            commit_interval: Duration::from_secs(1),
        };
        let started = Instant::now();
        let s: StageSummary<CheckTally> =
            run_mapped(StageInput::Channel(rx), opts, &*op, &mut sink, None, &ctx)
                .await
                .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "the others ran beside the slow one: {:?}",
            started.elapsed()
        );
        let finished = finished.lock().unwrap();
        assert_eq!(*finished.last().unwrap(), 0, "the head finished last");
        let want: Vec<String> = (0..51).map(|n| n.to_string()).collect();
        assert_eq!(*out.lock().unwrap(), want, "written in input order");
        assert_eq!(s.tally.checked, 51);
        assert_eq!(ctx.status.objects(), 51);
    }

    /// With a reorder window of 8, a slow head holds the stage to 8 units
    /// ahead of it, and no more.
    #[tokio::test]
    async fn the_reorder_window_bounds_what_waits_behind_the_head() {
        let (tx, rx) = mpsc::channel(100);
        for n in 0..40 {
            tx.send(unit(n)).await.unwrap();
        }
        drop(tx);
        let started = Arc::new(Mutex::new(Vec::new()));
        let s2 = started.clone();
        let op: Box<Op> = Box::new(move |u| {
            let s = s2.clone();
            Box::pin(async move {
                let Unit::Object(o) = &u else { unreachable!() };
                let n: usize = o.path[0].parse().unwrap();
                s.lock().unwrap().push(n);
                let ms = if n == 0 { 200 } else { 1 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(vec![u])
            })
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut sink = Collect(out.clone());
        let (_stop_tx, stop) = watch::channel(false);
        let ctx = StageCtx::standalone("check", stop);
        let opts = MappedOptions {
            window: 4,
            reorder: 8,
            commit_interval: Duration::from_secs(1),
        };
        let run =
            run_mapped::<CheckTally>(StageInput::Channel(rx), opts, &*op, &mut sink, None, &ctx);
        tokio::pin!(run);
        // While the head runs, at most 8 units have been started.
        let early = tokio::time::timeout(Duration::from_millis(100), &mut run).await;
        assert!(early.is_err(), "still waiting for the head");
        assert_eq!(started.lock().unwrap().len(), 8);
        run.await.unwrap();
        assert_eq!(out.lock().unwrap().len(), 40);
    }

    /// A stop reaches a stage whose operations take long within a second:
    /// what is in flight is dropped, and it returns `Interrupted`.
    #[tokio::test]
    async fn a_stop_is_obeyed_within_a_second() {
        let (tx, rx) = mpsc::channel(100);
        for n in 0..20 {
            tx.send(unit(n)).await.unwrap();
        }
        let op: Box<Op> = Box::new(|u| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(vec![u])
            })
        });
        let mut sink = Collect(Arc::new(Mutex::new(Vec::new())));
        let (stop_tx, stop) = watch::channel(false);
        let ctx = StageCtx::standalone("check", stop);
        let run = run_mapped::<CheckTally>(
            StageInput::Channel(rx),
            MappedOptions::new(8),
            &*op,
            &mut sink,
            None,
            &ctx,
        );
        tokio::pin!(run);
        assert!(tokio::time::timeout(Duration::from_millis(100), &mut run)
            .await
            .is_err());
        stop_tx.send(true).unwrap();
        let stopped_at = Instant::now();
        let r = tokio::time::timeout(crate::engine::STOP_WITHIN, run)
            .await
            .expect("stopped within a second");
        assert_eq!(r.err().unwrap().kind, crate::error::ErrorKind::Interrupted);
        assert!(stopped_at.elapsed() < crate::engine::STOP_WITHIN);
        drop(tx);
    }
}
