//! The state document (`_state/state.json`) and the exactly-once commit protocol built on it.
//!
//! What is exported is a set of time spans ([`Coverage`]), each half-open, plus the oldest instant
//! the export wants (`exportFrom`): the holes between them are what later runs read, newest first.
//! A run reads slices that lie inside one UTC day and therefore change exactly one daily file;
//! a slice read completely adds `[start, end)`, a slice the deadline stopped adds the part it read,
//! `[oldest complete instant, end)` (see `run::slice`). Per commit:
//!
//! 1. stage the new rows' blocks (invisible to readers);
//! 2. `prepare` the commit and record it in the state as `pending`, with the span it covers and
//!    the ids that will still matter for dedup, and write the state;
//! 3. `commit` (one atomic Put Block List / rename);
//! 4. [`State::settle`] the pending commit (add the span, remember the ids, mark `latest.csv` and
//!    the summaries dirty) and write the state.
//!
//! A crash before 2 leaves only invisible blocks; a crash between 2 and 4 is resolved by the next
//! run, which asks the sink whether the pending ticket is committed and settles it either way.
//! Dedup only needs the ids created inside the overlap before the watermark (the newest span's
//! end): every run re-reads that overlap for sign-ins Graph publishes late, and nothing else is
//! ever read twice (holes are disjoint from what is covered).
//!
//! The diagnostic-settings source keeps its own part, `archive` ([`ArchiveState`]): per-blob
//! cursors, the ids of a repeated delivery, and a pending record of several files at once. On that
//! source `covered` stays what Graph exported before a switch (rows created inside it are not
//! written again) and `exportFrom` the export's start.

pub mod archive;
pub mod coverage;
pub mod summary;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::sink::CommitTicket;

pub use archive::{ArchivePending, ArchiveState, IdWindow, ReadRange, Replay};
pub use coverage::{Coverage, Span};
pub use summary::{ArchiveSummary, Outcome, Remaining, RunSummary};

/// Layout version of the state document. Version 1 (one contiguous interval, columns outside the
/// query, a learnt slice length) is migrated when read.
pub const STATE_VERSION: u32 = 2;
/// The version of a document with the diagnostic-settings source's part (`archive`): the same
/// layout plus that part, numbered apart so that a build from before it refuses the document
/// instead of writing it back without the archive's cursors.
pub const ARCHIVE_STATE_VERSION: u32 = 3;

/// A UTC instant serialised as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Instant(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

/// The persisted state of one destination + preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub version: u32,
    pub preset: String,
    /// What this destination exports besides the preset: the query and the columns. `None` only
    /// in documents written before it was recorded; the next run records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<ExportQuery>,
    /// The oldest instant the export wants: the first run's start, lowered by back-fills, raised
    /// to Graph's retention floor when what lies below can no longer be read.
    #[serde(with = "time::serde::rfc3339")]
    pub export_from: OffsetDateTime,
    /// What is exported: every sign-in created inside these spans is in the daily files, once.
    pub covered: Coverage,
    /// Ids already written whose sign-in is inside the overlap before the watermark → createdDateTime.
    pub recent_ids: BTreeMap<String, Instant>,
    /// A commit recorded but not yet known to be settled (see module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The daily files `latest.csv` was last built from, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_files: Option<Vec<String>>,
    /// A slice was committed after `latest.csv` was last built: the next run rebuilds it even if
    /// it finds no new rows (set with the commit, so a run that fails or stops before rebuilding
    /// never leaves the report stale for good).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub latest_dirty: bool,
    /// The daily files the summaries (`summary/*.csv`) were last built from, newest first; `None`
    /// until they are first built (so an export that predates them builds them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_files: Option<Vec<String>>,
    /// A slice was committed after the summaries were last built (set with the commit, like
    /// `latest_dirty`, and cleared only once both summary files are replaced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub summaries_dirty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// Spans whose sign-ins were never exported because Graph no longer had them when a run
    /// came to read them (an outage longer than the retention). Never hidden: reported and kept.
    #[serde(default, skip_serializing_if = "Coverage::is_empty")]
    pub lost: Coverage,
    /// Consecutive runs that had something to read and committed nothing (see [`State::record_run`]).
    #[serde(default)]
    pub stalled_runs: u32,
    /// Rows per second of sign-in time over what runs committed, for the estimate of what remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<f64>,
    /// Seconds the last rebuild of `latest.csv` and the summaries took: a run with a deadline
    /// stops reading early enough for it, so a run that is behind still refreshes what Power BI
    /// reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_seconds: Option<f64>,
    /// How the event types are asked for: in one query, or one query each where Graph refused
    /// the combined filter (remembered, so later runs do not ask again).
    #[serde(default, skip_serializing_if = "QueryForm::is_combined")]
    pub query_form: QueryForm,
    /// The diagnostic-settings source's part: set once a run read the archive, after which
    /// Graph runs are refused (see [`State::check_source`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveState>,
    /// Columns of a version-1 document that recorded no query: checked by the first
    /// [`State::check_export`], which then records the whole query. Never written.
    #[serde(skip)]
    unrecorded_columns: Option<Vec<String>>,
}

/// What decides which rows and columns a destination holds, besides the preset (part of the
/// path). A run whose query differs would mix two selections or two layouts in one set of files,
/// so it is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportQuery {
    /// SIGNINS_GRAPH_VERSION.
    pub graph_version: String,
    /// SIGNINS_EVENT_TYPES.
    pub event_types: Vec<String>,
    /// SIGNINS_CLIENT_APPS (`None` = the preset's).
    pub client_apps: Option<Vec<String>>,
    /// SIGNINS_APPS (`None` = the preset's).
    pub apps: Option<Vec<String>>,
    /// SIGNINS_FILTER.
    pub filter: Option<String>,
    /// SIGNINS_COLUMNS, resolved: every file's header.
    pub columns: Vec<String>,
}

impl ExportQuery {
    /// The settings (named as the admin sets them) whose values differ, with both values.
    fn differences(&self, wanted: &ExportQuery) -> Vec<String> {
        fn show<T: std::fmt::Debug>(value: &T) -> String {
            format!("{value:?}")
        }
        let mut out = Vec::new();
        let mut compare = |setting: &str, stored: String, now: String| {
            if stored != now {
                out.push(format!("{setting} was {stored}, now {now}"));
            }
        };
        compare(
            "SIGNINS_GRAPH_VERSION",
            show(&self.graph_version),
            show(&wanted.graph_version),
        );
        compare(
            "SIGNINS_EVENT_TYPES",
            show(&self.event_types),
            show(&wanted.event_types),
        );
        compare(
            "SIGNINS_CLIENT_APPS",
            show(&self.client_apps),
            show(&wanted.client_apps),
        );
        compare("SIGNINS_APPS", show(&self.apps), show(&wanted.apps));
        compare("SIGNINS_FILTER", show(&self.filter), show(&wanted.filter));
        compare(
            "SIGNINS_COLUMNS",
            format!("[{}]", self.columns.join(",")),
            format!("[{}]", wanted.columns.join(",")),
        );
        out
    }
}

/// How a run asks Graph for several event types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum QueryForm {
    /// `signInEventTypes/any(t: t eq 'a' or t eq 'b')`: one query, Graph merges the types.
    #[default]
    Combined,
    /// `signInEventTypes/any(t: t eq 'a')` per event type — the form Microsoft documents — merged
    /// newest first by the reader.
    PerEventType,
}

impl QueryForm {
    pub fn is_combined(&self) -> bool {
        *self == QueryForm::Combined
    }
}

/// A prepared commit of (part of) one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub ticket: CommitTicket,
    /// The span of time the commit exports.
    pub span: Span,
    /// New ids of the commit that fall inside the overlap before the slice's end.
    pub ids: BTreeMap<String, Instant>,
    pub rows: u64,
}

/// The state document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("_state/state.json is not valid ({0}); fix or delete it (deleting re-exports the lookback window into new files only if the daily files are removed too)")]
    Corrupt(String),
    #[error(
        "_state/state.json has layout version {0}; this build understands versions 1 to {ARCHIVE_STATE_VERSION}"
    )]
    Version(u32),
    #[error("this destination was exported with another query or other columns ({0}); its files would mix two selections of sign-ins or two column layouts. Put back the previous settings, or export into a new destination prefix (e.g. append /v2 to SIGNINS_DESTINATION)")]
    Query(String),
    #[error("this destination is exported from the diagnostic-settings archive (SIGNINS_SOURCE=diagnostic-settings), now SIGNINS_SOURCE=graph: the archive's cursors say nothing Graph's planner can use, so a Graph run would write its rows again. Put back SIGNINS_SOURCE=diagnostic-settings, or export from Graph into a new destination prefix (e.g. append /v2 to SIGNINS_DESTINATION)")]
    BackToGraph,
}

impl State {
    /// A fresh state that exports nothing yet and wants everything from `export_from` on.
    pub fn new(preset: &str, query: ExportQuery, export_from: OffsetDateTime) -> State {
        State {
            version: STATE_VERSION,
            preset: preset.to_string(),
            query: Some(query),
            export_from,
            covered: Coverage::default(),
            recent_ids: BTreeMap::new(),
            pending: None,
            latest_files: None,
            latest_dirty: false,
            summary_files: None,
            summaries_dirty: false,
            last_run: None,
            lost: Coverage::default(),
            stalled_runs: 0,
            rows_per_second: None,
            publish_seconds: None,
            query_form: QueryForm::Combined,
            archive: None,
            unrecorded_columns: None,
        }
    }

    /// The end of the newest exported span (`exportFrom` while nothing is exported): every run
    /// re-reads the overlap below it.
    pub fn watermark(&self) -> OffsetDateTime {
        self.covered.end().unwrap_or(self.export_from)
    }

    /// Parses the stored bytes; empty or `{}` (a freshly created lock blob) means "no state yet".
    /// A version-1 document is migrated.
    pub fn parse(bytes: &[u8]) -> Result<Option<State>, StateError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| StateError::Corrupt(e.to_string()))?
            .trim();
        if text.is_empty() || text == "{}" {
            return Ok(None);
        }
        let version = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| StateError::Corrupt(e.to_string()))?
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        match version {
            1 => serde_json::from_str::<v1::StateV1>(text)
                .map(|old| Some(old.migrate()))
                .map_err(|e| StateError::Corrupt(e.to_string())),
            v if v == u64::from(STATE_VERSION) || v == u64::from(ARCHIVE_STATE_VERSION) => {
                serde_json::from_str(text)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt(e.to_string()))
            }
            other => Err(StateError::Version(
                u32::try_from(other).unwrap_or(u32::MAX),
            )),
        }
    }

    /// Pretty JSON: the document is meant to be read by people too. Never empty: a document
    /// that cannot be serialised is an error, not zero bytes written over the state.
    pub fn to_bytes(&self) -> Result<Bytes, StateError> {
        // Sized up front: the archive's id window can make the document tens of MB, and a
        // buffer grown by doubling would hold up to twice that.
        let ids = self.archive.as_ref().map_or(0, |a| {
            a.ids.len() + a.pending.as_ref().map_or(0, |p| p.ids.len())
        });
        let cursors = self.archive.as_ref().map_or(0, |a| a.cursors.len());
        let mut out =
            Vec::with_capacity(8 * 1024 + ids * 22 + cursors * 320 + self.recent_ids.len() * 80);
        serde_json::to_writer_pretty(&mut out, self)
            .map(|()| Bytes::from(out))
            .map_err(|e| StateError::Corrupt(format!("cannot serialise the state: {e}")))
    }

    /// The one check of what a run exports against what this destination holds: the query and
    /// the columns. A document written before queries were recorded adopts `wanted` (if its
    /// columns match).
    pub fn check_export(&mut self, wanted: &ExportQuery) -> Result<(), StateError> {
        match &self.query {
            None => {
                if let Some(columns) = self.unrecorded_columns.take() {
                    if columns != wanted.columns {
                        let stored = ExportQuery {
                            columns,
                            ..wanted.clone()
                        };
                        return Err(StateError::Query(stored.differences(wanted).join("; ")));
                    }
                }
                self.query = Some(wanted.clone());
                Ok(())
            }
            Some(stored) => {
                let differences = stored.differences(wanted);
                if differences.is_empty() {
                    Ok(())
                } else {
                    Err(StateError::Query(differences.join("; ")))
                }
            }
        }
    }

    /// The one check of the source against what this destination holds: once a run read the
    /// diagnostic-settings archive, Graph runs are refused. (A Graph export can switch to the
    /// archive: the archive run continues from what Graph exported, see `run::archive`.)
    pub fn check_source(&self, archive: bool) -> Result<(), StateError> {
        if self.archive.is_some() && !archive {
            return Err(StateError::BackToGraph);
        }
        Ok(())
    }

    /// Starts the diagnostic-settings source's part (a new export, or a switch from Graph); the
    /// document is version [`ARCHIVE_STATE_VERSION`] from now on.
    pub fn adopt_archive(&mut self, archive: ArchiveState) {
        self.archive = Some(archive);
        self.version = ARCHIVE_STATE_VERSION;
    }

    /// Whether the sign-in `id` has been written already (as far as dedup can still matter).
    pub fn is_written(&self, id: &str) -> bool {
        self.recent_ids.contains_key(id)
    }

    /// The oldest sign-in among the remembered ids: an older row cannot be one of them, so its
    /// lookup can be skipped.
    pub fn written_since(&self) -> Option<OffsetDateTime> {
        self.recent_ids.values().map(|created| created.0).min()
    }

    /// Settles the pending commit: if it was committed, its span counts as exported.
    pub fn settle(&mut self, committed: bool, overlap: Duration) {
        if let Some(pending) = self.pending.take() {
            if committed {
                self.latest_dirty = true;
                self.summaries_dirty = true;
                self.recent_ids.extend(pending.ids);
                self.cover(pending.span, overlap);
            }
        }
    }

    /// Records that `span` is exported (its rows, if any, are committed), and forgets the ids
    /// that no later run can read again.
    pub fn cover(&mut self, span: Span, overlap: Duration) {
        self.covered.insert(span);
        self.export_from = self.export_from.min(span.from);
        let horizon = self.watermark() - overlap;
        self.recent_ids.retain(|_, created| created.0 >= horizon);
    }

    /// Adopts the export's start the planner decided (lowered by a back-fill, raised to Graph's
    /// retention floor) and records what below it can no longer be read as lost.
    pub fn adopt_start(&mut self, export_from: OffsetDateTime, lost: &[Span]) {
        for span in lost {
            self.lost.insert(*span);
        }
        self.export_from = export_from;
        self.covered.clip_below(export_from);
    }

    /// Records a run's progress: `added` seconds of sign-in time committed with `rows` rows,
    /// whether anything was left to read. Returns the consecutive runs without progress.
    pub fn record_run(&mut self, added_seconds: f64, rows: u64, had_work: bool) -> u32 {
        if added_seconds > 0.0 {
            // Rows per second of sign-in time, weighted by the time each run covered, so one
            // quiet hour does not erase what a busy day taught.
            let observed = rows as f64 / added_seconds;
            let weight = (added_seconds / 86_400.0).clamp(0.05, 1.0);
            self.rows_per_second = Some(match self.rows_per_second {
                Some(known) if known.is_finite() => known + (observed - known) * weight,
                _ => observed,
            });
        }
        self.record_progress(added_seconds > 0.0, had_work)
    }

    /// Counts a run that had something to read and made no progress; returns the consecutive
    /// runs without progress (the archive source's progress is bytes consumed, not time).
    pub fn record_progress(&mut self, progressed: bool, had_work: bool) -> u32 {
        self.stalled_runs = if progressed || !had_work {
            0
        } else {
            self.stalled_runs.saturating_add(1)
        };
        self.stalled_runs
    }
}

/// Version 1 of the document, read only to migrate it.
mod v1 {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use time::OffsetDateTime;

    use super::{Coverage, ExportQuery, Instant, Pending, RunSummary, Span, State, STATE_VERSION};
    use crate::sink::CommitTicket;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct StateV1 {
        preset: String,
        columns: Vec<String>,
        #[serde(with = "time::serde::rfc3339")]
        covered_from: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        watermark: OffsetDateTime,
        recent_ids: BTreeMap<String, Instant>,
        #[serde(default)]
        pending: Option<PendingV1>,
        #[serde(default)]
        latest_files: Option<Vec<String>>,
        #[serde(default)]
        latest_dirty: bool,
        #[serde(default)]
        last_run: Option<serde_json::Value>,
        #[serde(default)]
        lost: Vec<Span>,
        #[serde(default)]
        query: Option<QueryV1>,
        // `sliceSeconds` (a slice length learnt from deadlines) is dropped: runs now commit what
        // they read, so no slice length has to be learnt.
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PendingV1 {
        ticket: CommitTicket,
        #[serde(with = "time::serde::rfc3339")]
        start: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        end: OffsetDateTime,
        ids: BTreeMap<String, Instant>,
        rows: u64,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct QueryV1 {
        graph_version: String,
        event_types: Vec<String>,
        client_apps: Option<Vec<String>>,
        apps: Option<Vec<String>>,
        filter: Option<String>,
    }

    impl StateV1 {
        pub fn migrate(self) -> State {
            let query = self.query.map(|q| ExportQuery {
                graph_version: q.graph_version,
                event_types: q.event_types,
                client_apps: q.client_apps,
                apps: q.apps,
                filter: q.filter,
                columns: self.columns.clone(),
            });
            let unrecorded_columns = query.is_none().then_some(self.columns);
            State {
                version: STATE_VERSION,
                preset: self.preset,
                query,
                export_from: self.covered_from,
                covered: Coverage::of([Span::new(self.covered_from, self.watermark)]),
                recent_ids: self.recent_ids,
                pending: self.pending.map(|p| Pending {
                    ticket: p.ticket,
                    span: Span::new(p.start, p.end),
                    ids: p.ids,
                    rows: p.rows,
                }),
                latest_files: self.latest_files,
                latest_dirty: self.latest_dirty,
                summary_files: None,
                summaries_dirty: false,
                last_run: self.last_run.and_then(summary_v1),
                lost: Coverage::of(self.lost),
                stalled_runs: 0,
                rows_per_second: None,
                publish_seconds: None,
                query_form: super::QueryForm::Combined,
                archive: None,
                unrecorded_columns,
            }
        }
    }

    /// Version 1's summary had `lost` as one span; anything else unreadable is dropped (the
    /// summary is informational, the next run writes a new one).
    fn summary_v1(mut value: serde_json::Value) -> Option<RunSummary> {
        if let Some(lost) = value.get_mut("lost") {
            if lost.is_object() {
                *lost = serde_json::Value::Array(vec![lost.take()]);
            }
        }
        serde_json::from_value(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ticket() -> CommitTicket {
        CommitTicket {
            file: "daily/2026-11-28.csv".into(),
            detail: serde_json::json!({"marker": "m"}),
        }
    }

    fn query() -> ExportQuery {
        ExportQuery {
            graph_version: "beta".into(),
            event_types: vec!["interactiveUser".into(), "nonInteractiveUser".into()],
            client_apps: None,
            apps: None,
            filter: None,
            columns: vec!["id".into()],
        }
    }

    fn state(export_from: OffsetDateTime) -> State {
        State::new("all", query(), export_from)
    }

    fn pending(ids: &[(&str, OffsetDateTime)]) -> Pending {
        Pending {
            ticket: ticket(),
            span: Span::new(
                datetime!(2026-11-28 10:00 UTC),
                datetime!(2026-11-28 12:00 UTC),
            ),
            ids: ids
                .iter()
                .map(|(id, t)| (id.to_string(), Instant(*t)))
                .collect(),
            rows: ids.len() as u64,
        }
    }

    #[test]
    fn a_document_with_the_archives_part_is_version_3_and_reads_back() {
        let mut state = state(datetime!(2026-11-28 10:00 UTC));
        assert_eq!(state.version, STATE_VERSION);
        let mut archive = ArchiveState::new(datetime!(2026-11-28 10:00 UTC));
        archive.cursors.insert(
            "insights-logs-signinlogs/x".into(),
            crate::diagnostic::BlobCursor {
                offset: 10,
                length: 12,
                etag: None,
                created: None,
            },
        );
        // Enough ids that each hour's string is long, in three hours.
        archive.ids = IdWindow::of((0..30_000u128).map(|i| {
            let hour = datetime!(2026-11-28 10:00 UTC) + time::Duration::hours((i % 3) as i64);
            (
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                hour,
            )
        }));
        state.adopt_archive(archive);
        let bytes = state.to_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["version"], 3);
        assert_eq!(
            json["archive"]["cursors"]["insights-logs-signinlogs/x"]["offset"],
            10
        );
        assert_eq!(State::parse(&bytes).unwrap().unwrap(), state);
        assert!(state.check_source(true).is_ok());
        let text = state.check_source(false).unwrap_err().to_string();
        assert!(
            text.contains("SIGNINS_SOURCE=graph") && text.contains("new destination prefix"),
            "{text}"
        );
    }

    #[test]
    fn empty_or_lock_placeholder_is_no_state() {
        assert_eq!(State::parse(b"").unwrap(), None);
        assert_eq!(State::parse(b" {} ").unwrap(), None);
    }

    #[test]
    fn round_trips_and_rejects_garbage_and_other_versions() {
        let mut state = state(datetime!(2026-11-21 10:00 UTC));
        state.pending = Some(pending(&[("a", datetime!(2026-11-28 11:30 UTC))]));
        state.cover(
            Span::new(
                datetime!(2026-11-22 00:00 UTC),
                datetime!(2026-11-23 00:00 UTC),
            ),
            HOUR,
        );
        let parsed = State::parse(&state.to_bytes().unwrap()).unwrap().unwrap();
        assert_eq!(parsed, state);
        assert!(matches!(
            State::parse(b"{not json"),
            Err(StateError::Corrupt(_))
        ));
        assert!(matches!(
            State::parse(br#"{"version": 7}"#),
            Err(StateError::Version(7))
        ));
    }

    #[test]
    fn a_version_1_document_is_migrated() {
        let v1 = br#"{
          "version": 1, "preset": "all", "columns": ["id", "ipAddress"],
          "coveredFrom": "2026-11-21T10:00:00Z", "watermark": "2026-11-28T10:00:00Z",
          "recentIds": {"a": "2026-11-28T09:30:00Z"},
          "pending": {"ticket": {"file": "daily/2026-11-28.csv", "detail": {"marker": "m"}},
                      "start": "2026-11-28T10:00:00Z", "end": "2026-11-28T12:00:00Z",
                      "ids": {}, "rows": 3},
          "lost": [{"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"}],
          "lastRun": {"outcome": "deadline-reached", "started": null, "finished": null,
                      "windowStart": null, "windowEnd": null, "watermark": null, "rows": 5,
                      "files": {}, "slicesDone": 1, "slicesTotal": 2, "pages": 1, "requests": 1,
                      "retries": 0, "duplicatesSkipped": 0, "destination": "d", "preset": "all",
                      "lost": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"}},
          "query": {"graphVersion": "beta", "eventTypes": ["interactiveUser"], "clientApps": null,
                    "apps": null, "filter": null},
          "sliceSeconds": 0
        }"#;
        let state = State::parse(v1).unwrap().unwrap();
        assert_eq!(state.version, STATE_VERSION);
        assert_eq!(state.export_from, datetime!(2026-11-21 10:00 UTC));
        assert_eq!(
            state.covered.spans(),
            &[Span::new(
                datetime!(2026-11-21 10:00 UTC),
                datetime!(2026-11-28 10:00 UTC)
            )]
        );
        assert_eq!(state.watermark(), datetime!(2026-11-28 10:00 UTC));
        assert_eq!(
            state.query.as_ref().map(|q| q.columns.clone()),
            Some(vec!["id".to_string(), "ipAddress".to_string()]),
            "the columns moved into the query"
        );
        assert_eq!(
            state.pending.as_ref().map(|p| p.span.to),
            Some(datetime!(2026-11-28 12:00 UTC))
        );
        let last = state.last_run.as_ref().expect("the summary survives");
        assert_eq!(last.outcome, Outcome::DeadlineReached);
        assert_eq!(last.lost.len(), 1);
        assert!(state.is_written("a"));
        // Written back as version 2, and read again unchanged.
        let again = State::parse(&state.to_bytes().unwrap()).unwrap().unwrap();
        assert_eq!(again, state);
        assert!(!String::from_utf8_lossy(&state.to_bytes().unwrap()).contains("sliceSeconds"));
    }

    #[test]
    fn a_version_1_document_without_a_query_checks_its_columns_then_records_the_query() {
        let v1 = br#"{"version": 1, "preset": "all", "columns": ["id"],
          "coveredFrom": "2026-11-21T10:00:00Z", "watermark": "2026-11-28T10:00:00Z",
          "recentIds": {}}"#;
        let mut other = State::parse(v1).unwrap().unwrap();
        let wanted = ExportQuery {
            columns: vec!["id".into(), "ipAddress".into()],
            ..query()
        };
        let text = other.check_export(&wanted).unwrap_err().to_string();
        assert!(
            text.contains("SIGNINS_COLUMNS was [id], now [id,ipAddress]"),
            "{text}"
        );
        let mut same = State::parse(v1).unwrap().unwrap();
        same.check_export(&query()).unwrap();
        assert_eq!(same.query, Some(query()));
    }

    #[test]
    fn settling_a_committed_slice_covers_it_and_keeps_only_overlap_ids() {
        let mut state = state(datetime!(2026-11-28 10:00 UTC));
        state
            .recent_ids
            .insert("old".into(), Instant(datetime!(2026-11-28 09:59 UTC)));
        state.pending = Some(pending(&[("new", datetime!(2026-11-28 11:30 UTC))]));
        state.settle(true, HOUR);
        assert_eq!(state.watermark(), datetime!(2026-11-28 12:00 UTC));
        assert!(state.is_written("new"));
        assert!(
            !state.is_written("old"),
            "ids older than watermark - overlap are pruned"
        );
        assert!(state.pending.is_none());
        assert!(state.latest_dirty);
        assert!(state.summaries_dirty);
    }

    #[test]
    fn settling_an_uncommitted_slice_changes_nothing_but_pending() {
        let mut state = state(datetime!(2026-11-28 10:00 UTC));
        state.pending = Some(pending(&[("new", datetime!(2026-11-28 11:30 UTC))]));
        state.settle(false, HOUR);
        assert!(state.covered.is_empty());
        assert_eq!(state.watermark(), datetime!(2026-11-28 10:00 UTC));
        assert!(!state.is_written("new"));
        assert!(state.pending.is_none());
    }

    #[test]
    fn covering_below_export_from_lowers_it() {
        let mut state = state(datetime!(2026-11-28 10:00 UTC));
        state.cover(
            Span::new(
                datetime!(2026-11-27 10:00 UTC),
                datetime!(2026-11-28 10:00 UTC),
            ),
            Duration::ZERO,
        );
        assert_eq!(state.export_from, datetime!(2026-11-27 10:00 UTC));
        assert_eq!(state.watermark(), datetime!(2026-11-28 10:00 UTC));
    }

    #[test]
    fn adopting_a_later_start_records_what_is_lost_and_forgets_what_aged_out() {
        let mut state = state(datetime!(2026-10-01 00:00 UTC));
        state.cover(
            Span::new(
                datetime!(2026-10-05 00:00 UTC),
                datetime!(2026-11-20 00:00 UTC),
            ),
            HOUR,
        );
        let floor = datetime!(2026-10-31 00:00 UTC);
        let lost = Span::new(
            datetime!(2026-10-01 00:00 UTC),
            datetime!(2026-10-05 00:00 UTC),
        );
        state.adopt_start(floor, &[lost]);
        assert_eq!(state.export_from, floor);
        assert_eq!(state.lost.spans(), &[lost]);
        assert_eq!(
            state.covered.spans(),
            &[Span::new(floor, datetime!(2026-11-20 00:00 UTC))]
        );
    }

    #[test]
    fn runs_without_progress_are_counted_until_one_commits() {
        let mut state = state(datetime!(2026-11-28 10:00 UTC));
        assert_eq!(state.record_run(0.0, 0, true), 1);
        assert_eq!(state.record_run(0.0, 0, true), 2);
        assert_eq!(state.record_run(3600.0, 360, true), 0);
        assert_eq!(state.rows_per_second, Some(0.1));
        assert_eq!(state.record_run(0.0, 0, true), 1);
        assert_eq!(
            state.record_run(0.0, 0, false),
            0,
            "nothing to do is no stall"
        );
    }

    #[test]
    fn another_query_or_other_columns_are_refused_naming_each_difference() {
        let mut state = state(datetime!(2026-11-28 10:00 UTC));
        state.check_export(&query()).unwrap();
        let other = ExportQuery {
            graph_version: "v1.0".into(),
            filter: Some("userType eq 'member'".into()),
            columns: vec!["id".into(), "ipAddress".into()],
            ..query()
        };
        let text = state.check_export(&other).unwrap_err().to_string();
        assert!(
            text.contains("SIGNINS_GRAPH_VERSION was \"beta\", now \"v1.0\""),
            "{text}"
        );
        assert!(text.contains("SIGNINS_FILTER was None"), "{text}");
        assert!(
            text.contains("SIGNINS_COLUMNS was [id], now [id,ipAddress]"),
            "{text}"
        );
        assert!(!text.contains("SIGNINS_EVENT_TYPES"), "{text}");
        assert!(text.contains("new destination prefix"), "{text}");
    }
}
