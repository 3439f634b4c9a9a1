//! The run: Graph source → filter → flatten → CSV → sink, slice by slice, exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::sink::{LockHolder, SinkError};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Start of the window; `None` = incremental from the stored watermark (or the lookback).
    pub since: Option<OffsetDateTime>,
    /// End of the window; `None` = now.
    pub until: Option<OffsetDateTime>,
    /// Stop starting new slices after this long; finished slices stay committed.
    pub deadline: Option<Duration>,
    /// Read and count, write nothing.
    pub dry_run: bool,
    /// Who is running, recorded as the lock holder: e.g. "timer ExportSignIns on host-1 (invocation …)".
    pub holder: String,
}

/// How a run ended, when it did not fail.
#[derive(Debug, Clone)]
pub enum RunOutcome {
    /// The whole window is exported.
    Completed(RunSummary),
    /// The deadline hit: finished slices are committed, the next run continues.
    DeadlineReached(RunSummary),
    /// Another writer holds the lock: nothing was done.
    Busy(LockHolder),
}

/// The summary of one run (also stored as `last_run` in the state document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// "completed", "deadline-reached", "failed", "dry-run".
    pub outcome: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_end: Option<OffsetDateTime>,
    /// The watermark after the run: everything before it (minus the overlap) is exported.
    #[serde(with = "time::serde::rfc3339::option")]
    pub watermark: Option<OffsetDateTime>,
    /// New rows written.
    pub rows: u64,
    /// New rows per file.
    pub files: BTreeMap<String, u64>,
    pub slices_done: u32,
    pub slices_total: u32,
    pub pages: u64,
    pub requests: u64,
    pub retries: u64,
    /// Sign-ins read from Graph but skipped as already exported.
    pub duplicates_skipped: u64,
    pub destination: String,
    pub preset: String,
    /// Set when `outcome` is "failed".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Graph(String),
    #[error("state document: {0}")]
    State(String),
    #[error("cancelled (shutting down); finished slices are committed")]
    Cancelled,
}

/// Runs one export. Cancelling `cancel` stops it at the next safe point and releases the lock.
pub async fn run(
    _settings: &Settings,
    _request: RunRequest,
    _cancel: CancellationToken,
) -> Result<RunOutcome, PipelineError> {
    Err(PipelineError::Graph("not implemented yet".into()))
}

/// The last run's summary from the state document; no Graph call.
pub async fn last_summary(_settings: &Settings) -> Result<Option<RunSummary>, PipelineError> {
    Ok(None)
}
