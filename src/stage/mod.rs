//! The pipeline stages, in the order data flows through them:
//! [`traverse`] (root cap -> manifest units), [`check`] (manifest units ->
//! check units) and [`repair`] (check units -> repair units). Each stage is
//! transport-agnostic: it reads units from a [`LineSource`] (a file, stdin,
//! or a file another stage is still writing) or a channel, and hands its
//! output to a [`UnitSink`], so the file pipeline (`steward manifest`,
//! `check`, `repair`), the one-shot `steward deep-check`, `dispatch` and
//! `serve` drive the same code, each stage with a [`StageCtx`] (stop
//! signal, status, notices: [`crate::engine`]).
//!
//! [`mapped::run_mapped`] is the engine of the check and repair stages; its
//! tallies are typed ([`tally`]).

pub mod check;
pub mod mapped;
pub mod repair;
pub mod tally;
pub mod traverse;

pub use mapped::{run_mapped, Checkpointing, MappedOptions, Op, StageInput, StageSummary};

use crate::error::{Error, Result};

/// A problem with one input line, reported and skipped.
#[derive(Clone, Debug)]
pub struct BadLine {
    pub number: u64,
    pub message: String,
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
