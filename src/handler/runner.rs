//! The seam between the handler and the pipeline: the routes call a [`Runner`], production uses
//! [`ExportRunner`] (the real `run::run`), route tests substitute a double.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::run::{self, RunError, RunOutcome, RunRequest, RunSummary};

/// Runs exports and reads the last summary.
#[async_trait]
pub trait Runner: Send + Sync {
    /// One export; cancelling `cancel` stops it at a safe point and releases the lock.
    async fn run(
        &self,
        settings: &Settings,
        request: RunRequest,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, RunError>;

    /// The last run's summary from the state document (no Graph call).
    async fn last_summary(&self, settings: &Settings) -> Result<Option<RunSummary>, RunError>;
}

/// The real pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportRunner;

#[async_trait]
impl Runner for ExportRunner {
    async fn run(
        &self,
        settings: &Settings,
        request: RunRequest,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, RunError> {
        run::run(settings, request, cancel).await
    }

    async fn last_summary(&self, settings: &Settings) -> Result<Option<RunSummary>, RunError> {
        run::last_summary(settings).await
    }
}
