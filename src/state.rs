//! The state document (`_state/state.json`) and the exactly-once commit protocol built on it.
//!
//! What is exported is one contiguous interval of time, `[covered_from, watermark)`. A run reads
//! `[watermark − overlap, now)` slice by slice; each slice is half-open, lies inside one UTC day and
//! therefore changes exactly one daily file. Per slice:
//!
//! 1. stage the new rows' blocks (invisible to readers);
//! 2. `prepare` the commit and record it in the state as `pending`, with the ids that will still
//!    matter for dedup, and write the state;
//! 3. `commit` (one atomic Put Block List / rename);
//! 4. [`State::settle`] the pending commit (advance the watermark, remember the ids) and write the state.
//!
//! A crash before 2 leaves only invisible blocks; a crash between 2 and 4 is resolved by the next run,
//! which asks the sink whether the pending ticket is committed and settles it either way. Dedup only
//! needs the ids created inside the overlap before the watermark: anything older is never read again.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::sink::CommitTicket;

/// Layout version of the state document.
pub const STATE_VERSION: u32 = 1;

/// A UTC instant serialised as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Instant(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

/// The persisted state of one destination + preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub version: u32,
    pub preset: String,
    /// Columns of every file under this base; changing them needs a new destination prefix.
    pub columns: Vec<String>,
    /// Start of the exported interval.
    #[serde(with = "time::serde::rfc3339")]
    pub covered_from: OffsetDateTime,
    /// End (exclusive) of the exported interval.
    #[serde(with = "time::serde::rfc3339")]
    pub watermark: OffsetDateTime,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// Intervals whose sign-ins were never exported because Graph no longer had them when the
    /// export resumed (an outage longer than the retention). Never hidden: reported and kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<Span>,
    /// What this destination exports: the query besides the preset and columns. `None` in
    /// documents written before it was recorded; the next run records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<ExportQuery>,
    /// Slice length, in seconds, learnt from a slice that did not fit in a run's deadline;
    /// `None` = SIGNINS_SLICE. Persisted so that every later run makes progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_seconds: Option<u64>,
}

/// The part of the Graph query that decides which rows a destination holds, besides the preset
/// (part of the path) and the columns (checked on their own). A run whose query differs would
/// mix two selections in one set of files, so it is refused.
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
        out
    }
}

/// The shortest slice the deadline can teach: below this, Graph's per-request cost dominates.
pub const MIN_SLICE: Duration = Duration::from_secs(60);

/// An interval of time `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
}

/// The summary of one run: what every shell reports, and `last_run` in the state document.
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
    /// Graph requests and retries.
    pub requests: u64,
    pub retries: u64,
    /// Storage requests (Blob Storage; 0 for a local folder).
    #[serde(default)]
    pub storage_requests: u64,
    /// Bytes of daily files copied into `latest.csv`.
    #[serde(default)]
    pub bytes_copied: u64,
    /// Sign-ins read from Graph but skipped as already exported.
    pub duplicates_skipped: u64,
    /// Of the back-fill asked for (`since`), what is not exported yet: the next run with the
    /// same `since` continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_remaining: Option<Span>,
    /// Sign-ins this run found it can no longer read (older than Graph's 30 days, after an
    /// outage); also recorded in the state's `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<Span>,
    /// Completeness re-checks sent (one per slice with rows; more when Graph ended paging early).
    #[serde(default)]
    pub completeness_checks: u64,
    pub destination: String,
    pub preset: String,
    /// Set when `outcome` is "failed".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A prepared commit of one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub ticket: CommitTicket,
    /// The slice's bounds: `[start, end)`.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// New ids of the slice that fall inside the overlap before the slice's end.
    pub ids: BTreeMap<String, Instant>,
    pub rows: u64,
}

/// The state document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("_state/state.json is not valid ({0}); fix or delete it (deleting re-exports the lookback window into new files only if the daily files are removed too)")]
    Corrupt(String),
    #[error(
        "_state/state.json has layout version {0}; this build understands version {STATE_VERSION}"
    )]
    Version(u32),
    #[error("this destination was written with columns [{stored}]; SIGNINS_COLUMNS now gives [{wanted}]. Use a new destination prefix to change columns")]
    Columns { stored: String, wanted: String },
    #[error("this destination was exported with another query ({0}); its files would mix two selections of sign-ins. Put back the previous settings, or export into a new destination prefix (e.g. append /v2 to SIGNINS_DESTINATION)")]
    Query(String),
}

impl State {
    /// A fresh state whose exported interval is empty and starts at `start`.
    pub fn new(preset: &str, columns: Vec<String>, start: OffsetDateTime) -> State {
        State {
            version: STATE_VERSION,
            preset: preset.to_string(),
            columns,
            covered_from: start,
            watermark: start,
            recent_ids: BTreeMap::new(),
            pending: None,
            latest_files: None,
            latest_dirty: false,
            lost: Vec::new(),
            last_run: None,
            query: None,
            slice_seconds: None,
        }
    }

    /// The slice length learnt from deadlines, if any.
    pub fn slice_limit(&self) -> Option<Duration> {
        self.slice_seconds.map(Duration::from_secs)
    }

    /// A slice of `length` did not fit in a whole run's deadline, of which it read `read`
    /// (0 to 1, newest first): later runs use slices sized to what one run did read, with a
    /// margin (`read × 0.7`), or half when it read nearly nothing; never below [`MIN_SLICE`].
    /// Returns the new length.
    pub fn shorten_slices(&mut self, length: Duration, read: f64) -> Duration {
        let fraction = if read.is_finite() && read > 0.05 {
            (read * 0.7).min(0.5)
        } else {
            0.5
        };
        let shorter = length.mul_f64(fraction).max(MIN_SLICE);
        let shorter = self
            .slice_limit()
            .map_or(shorter, |limit| limit.min(shorter));
        self.slice_seconds = Some(shorter.as_secs());
        shorter
    }

    /// Slices finish well inside the deadline: double the learnt length, back to `configured`.
    pub fn lengthen_slices(&mut self, configured: Duration) {
        if let Some(limit) = self.slice_limit() {
            let longer = limit * 2;
            self.slice_seconds = (longer < configured).then_some(longer.as_secs());
        }
    }

    /// Parses the stored bytes; empty or `{}` (a freshly created lock blob) means "no state yet".
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
        if version != u64::from(STATE_VERSION) {
            return Err(StateError::Version(
                u32::try_from(version).unwrap_or(u32::MAX),
            ));
        }
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StateError::Corrupt(e.to_string()))
    }

    /// Pretty JSON: the document is meant to be read by people too. Never empty: a document
    /// that cannot be serialised is an error, not zero bytes written over the state.
    pub fn to_bytes(&self) -> Result<Bytes, StateError> {
        serde_json::to_vec_pretty(self)
            .map(Bytes::from)
            .map_err(|e| StateError::Corrupt(format!("cannot serialise the state: {e}")))
    }

    /// Refuses to mix column layouts in one destination.
    pub fn check_columns(&self, wanted: &[String]) -> Result<(), StateError> {
        if self.columns == wanted {
            return Ok(());
        }
        Err(StateError::Columns {
            stored: self.columns.join(","),
            wanted: wanted.join(","),
        })
    }

    /// Refuses a query other than the one this destination was exported with; records the query
    /// in a document written before queries were recorded.
    pub fn check_query(&mut self, wanted: &ExportQuery) -> Result<(), StateError> {
        match &self.query {
            None => {
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

    /// Whether the sign-in `id` has been written already (as far as dedup can still matter).
    pub fn is_written(&self, id: &str) -> bool {
        self.recent_ids.contains_key(id)
    }

    /// The oldest sign-in among the remembered ids: an older row cannot be one of them, so its
    /// lookup can be skipped.
    pub fn written_since(&self) -> Option<OffsetDateTime> {
        self.recent_ids.values().map(|created| created.0).min()
    }

    /// Settles the pending commit: if it was committed, the slice counts as exported.
    pub fn settle(&mut self, committed: bool, overlap: Duration) {
        if let Some(pending) = self.pending.take() {
            if committed {
                self.latest_dirty = true;
                self.recent_ids.extend(pending.ids);
                self.extend(pending.start, pending.end, overlap);
            }
        }
    }

    /// Records that `[start, end)` is exported (its rows, if any, are committed).
    pub fn extend(&mut self, start: OffsetDateTime, end: OffsetDateTime, overlap: Duration) {
        if end > self.watermark {
            self.watermark = end;
        }
        if start < self.covered_from {
            self.covered_from = start;
        }
        let horizon = self.watermark - overlap;
        self.recent_ids.retain(|_, created| created.0 >= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ticket() -> CommitTicket {
        CommitTicket {
            file: "daily/2026-11-28.csv".into(),
            detail: serde_json::json!({"marker": "m"}),
        }
    }

    fn pending(ids: &[(&str, OffsetDateTime)]) -> Pending {
        Pending {
            ticket: ticket(),
            start: datetime!(2026-11-28 10:00 UTC),
            end: datetime!(2026-11-28 12:00 UTC),
            ids: ids
                .iter()
                .map(|(id, t)| (id.to_string(), Instant(*t)))
                .collect(),
            rows: ids.len() as u64,
        }
    }

    #[test]
    fn empty_or_lock_placeholder_is_no_state() {
        assert_eq!(State::parse(b"").unwrap(), None);
        assert_eq!(State::parse(b" {} ").unwrap(), None);
    }

    #[test]
    fn round_trips_and_rejects_garbage_and_other_versions() {
        let mut state = State::new("all", vec!["id".into()], datetime!(2026-11-21 10:00 UTC));
        state.pending = Some(pending(&[("a", datetime!(2026-11-28 11:30 UTC))]));
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
    fn settling_a_committed_slice_advances_and_keeps_only_overlap_ids() {
        let mut state = State::new("all", vec![], datetime!(2026-11-28 10:00 UTC));
        state
            .recent_ids
            .insert("old".into(), Instant(datetime!(2026-11-28 09:59 UTC)));
        state.pending = Some(pending(&[("new", datetime!(2026-11-28 11:30 UTC))]));
        state.settle(true, Duration::from_secs(3600));
        assert_eq!(state.watermark, datetime!(2026-11-28 12:00 UTC));
        assert!(state.is_written("new"));
        assert!(
            !state.is_written("old"),
            "ids older than watermark - overlap are pruned"
        );
        assert!(state.pending.is_none());
    }

    #[test]
    fn settling_an_uncommitted_slice_changes_nothing_but_pending() {
        let mut state = State::new("all", vec![], datetime!(2026-11-28 10:00 UTC));
        state.pending = Some(pending(&[("new", datetime!(2026-11-28 11:30 UTC))]));
        state.settle(false, Duration::from_secs(3600));
        assert_eq!(state.watermark, datetime!(2026-11-28 10:00 UTC));
        assert!(!state.is_written("new"));
        assert!(state.pending.is_none());
    }

    #[test]
    fn extending_backwards_moves_covered_from_only() {
        let mut state = State::new("all", vec![], datetime!(2026-11-28 10:00 UTC));
        state.extend(
            datetime!(2026-11-27 10:00 UTC),
            datetime!(2026-11-28 10:00 UTC),
            Duration::ZERO,
        );
        assert_eq!(state.covered_from, datetime!(2026-11-27 10:00 UTC));
        assert_eq!(state.watermark, datetime!(2026-11-28 10:00 UTC));
    }

    #[test]
    fn slice_length_shrinks_to_what_a_run_read_and_grows_back() {
        let mut state = State::new("all", vec![], datetime!(2026-11-28 10:00 UTC));
        let hour = Duration::from_secs(3600);
        assert_eq!(
            state.shorten_slices(6 * hour, 0.0),
            3 * hour,
            "nothing read: half"
        );
        assert_eq!(
            state.shorten_slices(3 * hour, 0.2),
            Duration::from_secs(1512),
            "sized to what was read, with a margin"
        );
        assert_eq!(
            state.shorten_slices(6 * hour, 0.9),
            Duration::from_secs(1512),
            "never longer than learnt"
        );
        assert_eq!(
            state.shorten_slices(Duration::from_secs(70), 0.0),
            MIN_SLICE
        );
        state.slice_seconds = Some(3 * 3600);
        state.lengthen_slices(6 * hour);
        assert_eq!(state.slice_limit(), None, "back to the configured length");
        let parsed = State::parse(&state.to_bytes().unwrap()).unwrap().unwrap();
        assert_eq!(parsed, state);
    }

    fn query() -> ExportQuery {
        ExportQuery {
            graph_version: "beta".into(),
            event_types: vec!["interactiveUser".into(), "nonInteractiveUser".into()],
            client_apps: None,
            apps: None,
            filter: None,
        }
    }

    #[test]
    fn another_query_is_refused_naming_each_difference() {
        let mut state = State::new("all", vec![], datetime!(2026-11-28 10:00 UTC));
        state.check_query(&query()).unwrap();
        assert_eq!(
            state.query,
            Some(query()),
            "an older document adopts the query"
        );
        state.check_query(&query()).unwrap();
        let other = ExportQuery {
            graph_version: "v1.0".into(),
            filter: Some("userType eq 'member'".into()),
            ..query()
        };
        let text = state.check_query(&other).unwrap_err().to_string();
        assert!(
            text.contains("SIGNINS_GRAPH_VERSION was \"beta\", now \"v1.0\""),
            "{text}"
        );
        assert!(text.contains("SIGNINS_FILTER was None"), "{text}");
        assert!(!text.contains("SIGNINS_EVENT_TYPES"), "{text}");
        assert!(text.contains("new destination prefix"), "{text}");
    }

    #[test]
    fn column_changes_are_refused() {
        let state = State::new("all", vec!["id".into()], datetime!(2026-11-28 10:00 UTC));
        assert!(state.check_columns(&["id".into()]).is_ok());
        let err = state
            .check_columns(&["id".into(), "ipAddress".into()])
            .unwrap_err();
        assert!(err.to_string().contains("SIGNINS_COLUMNS"));
    }
}
