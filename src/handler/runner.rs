//! The seam between the handler and the pipeline: the routes call a [`Runner`], production uses
//! [`PipelineRunner`] (the real `pipeline::run`), route tests substitute a double.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::pipeline::{self, PipelineError, RunOutcome, RunRequest, RunSummary};

/// Runs exports and reads the last summary.
#[async_trait]
pub trait Runner: Send + Sync {
    /// One export; cancelling `cancel` stops it at a safe point and releases the lock.
    async fn run(
        &self,
        settings: &Settings,
        request: RunRequest,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, PipelineError>;

    /// The last run's summary from the state document (no Graph call).
    async fn last_summary(&self, settings: &Settings) -> Result<Option<RunSummary>, PipelineError>;
}

/// The real pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineRunner;

#[async_trait]
impl Runner for PipelineRunner {
    async fn run(
        &self,
        settings: &Settings,
        request: RunRequest,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, PipelineError> {
        pipeline::run(settings, request, cancel).await
    }

    async fn last_summary(&self, settings: &Settings) -> Result<Option<RunSummary>, PipelineError> {
        pipeline::last_summary(settings).await
    }
}
