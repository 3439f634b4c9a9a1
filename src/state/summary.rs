//! The summary of one run: what every shell reports, and `lastRun` in the state document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::coverage::Span;
use crate::diagnostic::Malformed;

/// How a run ended, as the summary and the state record it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything planned is exported.
    #[default]
    Completed,
    /// The deadline stopped the run; what it read is committed, the next run continues.
    DeadlineReached,
    /// The process was shutting down; committed slices stay.
    Cancelled,
    /// The run failed; nothing partial was committed.
    Failed,
    /// Read and counted, nothing written.
    DryRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::DeadlineReached => "deadline-reached",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry-run",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the export still has to read after a run: the holes between what is exported, from the
/// oldest instant the export wants up to the end of the run's window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remaining {
    /// Start of the oldest hole.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// End of the newest hole.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// How many holes.
    pub holes: u32,
    /// Seconds of sign-in time not read yet (the holes' total length).
    pub seconds: u64,
    /// Rows those holes probably hold: their length times the rows per second the export has
    /// committed so far (`None` before anything was committed). On the diagnostic-settings
    /// source: the bytes left times the bytes per row committed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
    /// Diagnostic-settings source only: bytes of the archive listed and not read yet (`from`
    /// and `to` then bound the hours their blobs were received in, `holes` counts the blobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Malformed lines a summary lists by blob and offset; the rest are counted.
pub const MALFORMED_LISTED: usize = 20;

/// What a run of the diagnostic-settings source read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSummary {
    /// Blobs read (in part or to their end).
    pub blobs: u32,
    /// Bytes of JSON Lines read and consumed.
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// Sign-ins of the export's query created before its start (`exportFrom`): not its rows.
    pub before_start: u64,
    /// Sign-ins created in time Graph exported before the source was switched: written then.
    pub exported_from_graph: u64,
    /// Rows of a commit of which only some files landed, not written again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replayed: u64,
    /// Lines (or records of an Event Hubs message) that are not usable sign-ins: skipped.
    pub malformed_lines: u64,
    /// The first [`MALFORMED_LISTED`] of them: blob, offset, reason (never the line itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub malformed: Vec<Malformed>,
    /// Blobs written again under a name already read: read again from their start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ArchiveSummary {
    /// Counts a malformed line, listing it while the list is short.
    pub fn malformed(&mut self, line: Malformed) {
        self.malformed_lines += 1;
        if self.malformed.len() < MALFORMED_LISTED {
            self.malformed.push(line);
        }
    }
}

/// The summary of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub outcome: Outcome,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished: Option<OffsetDateTime>,
    /// The span this run planned to read: its oldest slice's start to its newest slice's end.
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_end: Option<OffsetDateTime>,
    /// The end of the newest exported span after the run.
    #[serde(with = "time::serde::rfc3339::option")]
    pub watermark: Option<OffsetDateTime>,
    /// New rows committed.
    pub rows: u64,
    /// New rows per file.
    pub files: BTreeMap<String, u64>,
    /// Spans of time this run added to what is exported (a slice the deadline stopped adds the
    /// part it read), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub committed: Vec<Span>,
    /// What is still to read after this run; absent when the export is complete up to the
    /// run's window end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<Remaining>,
    /// Consecutive runs, this one included, that had something to read and committed nothing:
    /// 0 when this run made progress or had nothing left to do.
    #[serde(default)]
    pub stalled_runs: u32,
    pub slices_done: u32,
    pub slices_total: u32,
    /// Chains the slices were read as (adjacent slices read as one sequence of queries).
    #[serde(default)]
    pub chains: u32,
    pub pages: u64,
    /// Graph requests and retries.
    pub requests: u64,
    pub retries: u64,
    /// Storage requests (Blob Storage; 0 for a local folder).
    #[serde(default)]
    pub storage_requests: u64,
    /// Bytes of daily files copied into `latest.csv`.
    #[serde(default)]
    pub bytes_copied: u64,
    /// Sign-ins read from Graph but skipped as already exported (diagnostic-settings source:
    /// repeated deliveries of a sign-in).
    pub duplicates_skipped: u64,
    /// Sign-ins this run found it can no longer read (older than Graph's 30 days, after an
    /// outage or a back-fill that did not finish in time); also recorded in the state's `lost`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<Span>,
    /// Completeness re-checks sent (one per slice with rows; more when Graph ended paging early).
    #[serde(default)]
    pub completeness_checks: u64,
    pub destination: String,
    pub preset: String,
    /// Diagnostic-settings source only: what it read of the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSummary>,
    /// Set when `outcome` is "failed" or "cancelled".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
