//! The run: Graph source → filter → flatten → CSV → sink, slice by slice, exactly once.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::csv::CsvEncoder;
use crate::graph::auth::TokenProvider;
use crate::graph::client::{GraphClient, GraphError, GraphStats, SignInPager};
use crate::graph::model::SignIn;
use crate::graph::query::Window;
use crate::sink::{daily_file, BlockId, LockHolder, LockOutcome, Sink, SinkError};
use crate::state::{Instant, Pending, State};
use crate::transform::filter::SignInFilter;

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
    /// Internal signal: the deadline hit inside a slice (the run reports `DeadlineReached`).
    #[error("the run's deadline was reached")]
    DeadlineReached,
}

/// Target size of one staged block: big enough to keep requests few, small enough that memory
/// stays flat (one block is buffered at a time).
pub const BLOCK_TARGET: usize = 4 * 1024 * 1024;

/// Receives progress events (the CLI's progress bar); all methods default to no-ops.
pub trait Observer: Send + Sync {
    fn page(&self, _rows_in_page: usize, _stats: &GraphStats) {}
    fn slice_done(&self, _done: u32, _total: u32, _rows: u64) {}
}

/// The stages a run is wired from; tests and `demo` build their own.
pub struct Deps {
    pub graph: GraphClient,
    pub sink: Arc<dyn Sink>,
    pub observer: Option<Arc<dyn Observer>>,
}

impl Deps {
    /// Production wiring: credential from the settings, Graph client, sink for the destination.
    pub fn from_settings(settings: &Settings) -> Result<Deps, PipelineError> {
        let tokens = TokenProvider::new(&settings.graph.auth)
            .map_err(|e| PipelineError::Graph(e.to_string()))?;
        let sink = crate::sink::open(&settings.destination, settings.preset, &tokens)?;
        let graph = GraphClient::new(&settings.graph, tokens)
            .map_err(|e| PipelineError::Graph(e.to_string()))?;
        Ok(Deps {
            graph,
            sink,
            observer: None,
        })
    }
}

/// Runs one export with production wiring. Cancelling `cancel` stops it at the next safe point
/// and releases the lock.
pub async fn run(
    settings: &Settings,
    request: RunRequest,
    cancel: CancellationToken,
) -> Result<RunOutcome, PipelineError> {
    let deps = Deps::from_settings(settings)?;
    run_with(settings, &deps, request, cancel).await
}

/// The last run's summary from the state document; no Graph call.
pub async fn last_summary(settings: &Settings) -> Result<Option<RunSummary>, PipelineError> {
    let tokens = TokenProvider::new(&settings.graph.auth)
        .map_err(|e| PipelineError::Graph(e.to_string()))?;
    let sink = crate::sink::open(&settings.destination, settings.preset, &tokens)?;
    let state = match sink.read_state().await? {
        Some(bytes) => State::parse(&bytes).map_err(|e| PipelineError::State(e.to_string()))?,
        None => None,
    };
    Ok(state.and_then(|s| s.last_run))
}

/// Runs one export with the given stages.
pub async fn run_with(
    settings: &Settings,
    deps: &Deps,
    request: RunRequest,
    cancel: CancellationToken,
) -> Result<RunOutcome, PipelineError> {
    let mut run = Run::new(settings, deps, &request, cancel);
    if request.dry_run {
        return run.dry_run().await;
    }
    if let LockOutcome::Busy(holder) = deps.sink.acquire(&request.holder).await? {
        info!(holder = %holder.holder, "another export holds the lock; nothing to do");
        return Ok(RunOutcome::Busy(holder));
    }
    let result = run.export().await;
    let outcome = run.finish(result).await;
    if let Err(e) = deps.sink.release().await {
        warn!(error = %e, "could not release the lock; it expires on its own");
    }
    outcome
}

/// A window `[start, end)` inside one UTC day: one slice changes one daily file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// Cuts `[start, end)` at UTC midnights and every `length`, oldest first.
pub fn slices(start: OffsetDateTime, end: OffsetDateTime, length: Duration) -> Vec<Slice> {
    let mut out = Vec::new();
    let mut cursor = start;
    while cursor < end {
        let midnight = cursor.date().next_day().map(|d| d.midnight().assume_utc());
        let mut slice_end = cursor + length;
        if let Some(midnight) = midnight {
            slice_end = slice_end.min(midnight);
        }
        slice_end = slice_end.min(end);
        out.push(Slice {
            start: cursor,
            end: slice_end,
        });
        cursor = slice_end;
    }
    out
}

/// One run in progress.
struct Run<'a> {
    settings: &'a Settings,
    deps: &'a Deps,
    request: &'a RunRequest,
    cancel: CancellationToken,
    filter: SignInFilter,
    encoder: CsvEncoder,
    run_id: String,
    /// Sequence of the next staged block: unique across the run, since block ids must not repeat
    /// within a file and several slices may write the same file.
    next_block: u32,
    started: std::time::Instant,
    summary: RunSummary,
    state: Option<State>,
}

impl<'a> Run<'a> {
    fn new(
        settings: &'a Settings,
        deps: &'a Deps,
        request: &'a RunRequest,
        cancel: CancellationToken,
    ) -> Self {
        let summary = RunSummary {
            started: Some(OffsetDateTime::now_utc()),
            destination: deps.sink.describe(),
            preset: settings.preset.as_str().to_string(),
            ..RunSummary::default()
        };
        Run {
            settings,
            deps,
            request,
            cancel,
            filter: SignInFilter::new(
                settings.preset,
                settings.client_apps.clone(),
                settings.apps.clone(),
            ),
            encoder: CsvEncoder::new(&settings.columns, settings.csv_safe),
            run_id: uuid::Uuid::new_v4().to_string(),
            next_block: 0,
            started: std::time::Instant::now(),
            summary,
            state: None,
        }
    }

    fn columns(&self) -> Vec<String> {
        self.settings
            .columns
            .names()
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    async fn load_state(&self) -> Result<Option<State>, PipelineError> {
        let Some(bytes) = self.deps.sink.read_state().await? else {
            return Ok(None);
        };
        let state = State::parse(&bytes).map_err(|e| PipelineError::State(e.to_string()))?;
        if let Some(state) = &state {
            state
                .check_columns(&self.columns())
                .map_err(|e| PipelineError::State(e.to_string()))?;
        }
        Ok(state)
    }

    /// The slices to export, given the state (None = first run): forward from the watermark
    /// (oldest first, each raises the watermark), then any backfill below `covered_from` that
    /// `since` asks for (newest first, each lowers `covered_from`, so an interrupted backfill
    /// resumes where it stopped). Returns the slices and the whole window.
    fn plan(
        &self,
        state: Option<&State>,
        now: OffsetDateTime,
    ) -> (Vec<Slice>, OffsetDateTime, OffsetDateTime) {
        let floor = now - crate::config::GRAPH_RETENTION;
        let end = self.request.until.unwrap_or(now).min(now);
        let length = self.settings.slice;
        let mut plan = Vec::new();
        let (forward_start, backfill) = match state {
            None => {
                let start = self.request.since.unwrap_or(now - self.settings.lookback);
                (start.max(floor), None)
            }
            Some(state) => {
                let backfill = self
                    .request
                    .since
                    .filter(|since| *since < state.covered_from)
                    .map(|since| (since.max(floor), state.covered_from));
                (
                    (state.watermark - self.settings.overlap).max(floor),
                    backfill,
                )
            }
        };
        plan.extend(slices(forward_start, end, length));
        let mut window_start = forward_start;
        if let Some((from, to)) = backfill {
            window_start = window_start.min(from);
            plan.extend(slices(from, to, length).into_iter().rev());
        }
        (plan, window_start, end)
    }

    async fn export(&mut self) -> Result<bool, PipelineError> {
        let now = now_seconds();
        let mut state = self.load_state().await?;
        if let Some(state) = state.as_mut() {
            if let Some(pending) = state.pending.clone() {
                let committed = self.deps.sink.is_committed(&pending.ticket).await?;
                info!(file = %pending.ticket.file, committed, "settling the previous run's pending commit");
                state.settle(committed, self.settings.overlap);
                self.deps.sink.write_state(state.to_bytes()).await?;
            }
        }
        let (plan, window_start, window_end) = self.plan(state.as_ref(), now);
        let mut state = state.unwrap_or_else(|| {
            State::new(self.settings.preset.as_str(), self.columns(), window_start)
        });
        self.summary.window_start = Some(window_start);
        self.summary.window_end = Some(window_end);
        self.summary.slices_total = u32::try_from(plan.len()).unwrap_or(u32::MAX);
        // Every path below must leave the final state in `self.state`: `finish` records the run
        // in it, and a stale copy would move the watermark back.
        let result = match self.export_slices(&mut state, plan).await {
            Ok(completed) => self.publish_latest(&mut state).await.map(|()| completed),
            Err(e) => Err(e),
        };
        self.state = Some(state);
        result
    }

    /// Exports `plan` slice by slice; `Ok(false)` when the deadline stopped it early.
    async fn export_slices(
        &mut self,
        state: &mut State,
        plan: Vec<Slice>,
    ) -> Result<bool, PipelineError> {
        let deadline = self.request.deadline.map(|d| self.started + d);
        let mut longest_slice = Duration::ZERO;
        for slice in plan {
            if self.cancel.is_cancelled() {
                return Err(PipelineError::Cancelled);
            }
            let slice_started = std::time::Instant::now();
            // Don't start a slice that is unlikely to finish before the deadline.
            if deadline.is_some_and(|d| slice_started + longest_slice > d) {
                return Ok(false);
            }
            match self.export_slice(state, slice, deadline).await {
                Ok(()) => {}
                Err(PipelineError::DeadlineReached) => return Ok(false),
                Err(e) => return Err(e),
            }
            longest_slice = longest_slice.max(slice_started.elapsed());
            self.summary.slices_done += 1;
            if let Some(observer) = &self.deps.observer {
                observer.slice_done(
                    self.summary.slices_done,
                    self.summary.slices_total,
                    self.summary.rows,
                );
            }
        }
        Ok(true)
    }

    async fn export_slice(
        &mut self,
        state: &mut State,
        slice: Slice,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), PipelineError> {
        let overlap = self.settings.overlap;
        let file = daily_file(slice.start.date());
        let sink = &self.deps.sink;
        let mut stream = self.open_stream(slice);
        let mut slice_ids: HashSet<String> = HashSet::new();
        let mut pending_ids = BTreeMap::new();
        let mut buffer = Vec::with_capacity(BLOCK_TARGET + 64 * 1024);
        let mut blocks = Vec::new();
        let mut rows = 0u64;
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Err(PipelineError::Cancelled),
                next = stream.next(self.deps.observer.as_deref()) => next,
            };
            let Some(signin) = next.map_err(|e| PipelineError::Graph(e.to_string()))? else {
                break;
            };
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                // Abandon this slice: its staged blocks were never committed and stay invisible.
                return Err(PipelineError::DeadlineReached);
            }
            // Half-open slices: the row at the end instant belongs to the next slice.
            if signin.created < slice.start
                || signin.created >= slice.end
                || !self.filter.matches(&signin)
            {
                continue;
            }
            if state.is_written(&signin.id) || !slice_ids.insert(signin.id.clone()) {
                self.summary.duplicates_skipped += 1;
                continue;
            }
            self.encoder
                .encode_row(&self.settings.columns.row(&signin), &mut buffer);
            rows += 1;
            if signin.created >= slice.end - overlap {
                pending_ids.insert(signin.id.clone(), Instant(signin.created));
            }
            if buffer.len() >= BLOCK_TARGET {
                let block = self.next_block_id();
                sink.stage(&file, &block, Bytes::from(std::mem::take(&mut buffer)))
                    .await?;
                blocks.push(block);
                buffer.reserve(BLOCK_TARGET + 64 * 1024);
            }
        }
        if rows == 0 {
            state.extend(slice.start, slice.end, overlap);
            return Ok(());
        }
        if !buffer.is_empty() {
            let block = self.next_block_id();
            sink.stage(&file, &block, Bytes::from(buffer)).await?;
            blocks.push(block);
        }
        // The phase events below are where crash tests stop the process (tests/blob_pipeline.rs).
        debug!(file = %file, blocks = blocks.len(), "blocks staged");
        let ticket = sink.prepare(&file, self.encoder.header(), &blocks).await?;
        state.pending = Some(Pending {
            ticket: ticket.clone(),
            start: slice.start,
            end: slice.end,
            ids: pending_ids,
            rows,
        });
        sink.write_state(state.to_bytes()).await?;
        debug!(file = %file, "pending commit recorded");
        sink.ensure_locked().await?;
        sink.commit(&ticket).await?;
        debug!(file = %file, "commit landed");
        state.settle(true, overlap);
        sink.write_state(state.to_bytes()).await?;
        self.summary.rows += rows;
        *self.summary.files.entry(file.clone()).or_default() += rows;
        info!(file = %file, rows, slice_start = %rfc3339(slice.start), slice_end = %rfc3339(slice.end), "slice committed");
        Ok(())
    }

    fn next_block_id(&mut self) -> BlockId {
        self.next_block += 1;
        BlockId::new(&self.run_id, self.next_block)
    }

    fn open_stream(&self, slice: Slice) -> MergedSignIns<'a> {
        let window = Window {
            start: slice.start,
            end: slice.end,
        };
        // One query for every event type (`signInEventTypes/any(…)`); the merge below then
        // has a single stream.
        let pager = self.deps.graph.pager_for(
            window,
            &self.settings.graph.event_types,
            self.filter.server_clause(),
        );
        MergedSignIns::new(&self.deps.graph, vec![pager])
    }

    /// Rebuilds `latest.csv` when rows were added or its set of days changed.
    async fn publish_latest(&mut self, state: &mut State) -> Result<(), PipelineError> {
        let today = OffsetDateTime::now_utc().date();
        let first = today - time::Duration::days(i64::from(self.settings.report_days) - 1);
        let mut files: Vec<String> = self
            .deps
            .sink
            .list_daily()
            .await?
            .into_iter()
            .filter(|f| {
                f.as_str() >= daily_file(first).as_str() && f.as_str() <= daily_file(today).as_str()
            })
            .collect();
        files.sort_unstable_by(|a, b| b.cmp(a));
        if self.summary.rows == 0 && state.latest_files.as_ref() == Some(&files) {
            return Ok(());
        }
        self.deps
            .sink
            .publish_latest(self.encoder.header(), &files)
            .await?;
        info!(days = files.len(), "latest.csv replaced");
        state.latest_files = Some(files);
        Ok(())
    }

    /// Records the run's summary in the state (best effort on failure) and turns the result into the outcome.
    async fn finish(
        &mut self,
        result: Result<bool, PipelineError>,
    ) -> Result<RunOutcome, PipelineError> {
        let stats = self.deps.graph.stats();
        self.summary.pages = stats.pages;
        self.summary.requests = stats.requests;
        self.summary.retries = stats.retries;
        self.summary.finished = Some(OffsetDateTime::now_utc());
        self.summary.outcome = match &result {
            Ok(true) => "completed".into(),
            Ok(false) => "deadline-reached".into(),
            Err(PipelineError::Cancelled) => "cancelled".into(),
            Err(_) => "failed".into(),
        };
        if let Err(e) = &result {
            self.summary.error = Some(e.to_string());
        }
        if let Some(state) = self.state.as_mut() {
            self.summary.watermark = Some(state.watermark);
            state.last_run = Some(self.summary.clone());
            if let Err(e) = self.deps.sink.write_state(state.to_bytes()).await {
                if result.is_ok() {
                    return Err(e.into());
                }
                warn!(error = %e, "could not record the failed run in the state");
            }
        }
        match result {
            Ok(true) => Ok(RunOutcome::Completed(self.summary.clone())),
            Ok(false) => Ok(RunOutcome::DeadlineReached(self.summary.clone())),
            Err(e) => Err(e),
        }
    }

    /// Reads and filters like a real run, writes nothing.
    async fn dry_run(&mut self) -> Result<RunOutcome, PipelineError> {
        let state = self.load_state().await?;
        let (plan, window_start, window_end) = self.plan(state.as_ref(), now_seconds());
        self.summary.window_start = Some(window_start);
        self.summary.window_end = Some(window_end);
        self.summary.slices_total = u32::try_from(plan.len()).unwrap_or(u32::MAX);
        for slice in plan {
            let mut stream = self.open_stream(slice);
            let mut seen = HashSet::new();
            while let Some(signin) = stream
                .next(self.deps.observer.as_deref())
                .await
                .map_err(|e| PipelineError::Graph(e.to_string()))?
            {
                if signin.created < slice.start
                    || signin.created >= slice.end
                    || !self.filter.matches(&signin)
                {
                    continue;
                }
                let written = state.as_ref().is_some_and(|s| s.is_written(&signin.id));
                if written || !seen.insert(signin.id.clone()) {
                    self.summary.duplicates_skipped += 1;
                    continue;
                }
                self.summary.rows += 1;
                *self
                    .summary
                    .files
                    .entry(daily_file(slice.start.date()))
                    .or_default() += 1;
            }
            self.summary.slices_done += 1;
        }
        let stats = self.deps.graph.stats();
        self.summary.pages = stats.pages;
        self.summary.requests = stats.requests;
        self.summary.retries = stats.retries;
        self.summary.finished = Some(OffsetDateTime::now_utc());
        self.summary.outcome = "dry-run".into();
        Ok(RunOutcome::Completed(self.summary.clone()))
    }
}

/// RFC 3339 for log fields (the `Display` of `OffsetDateTime` is not).
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Several newest-first pagers (one per event type) merged into one newest-first stream, holding
/// at most one page per pager in memory.
struct MergedSignIns<'g> {
    graph: &'g GraphClient,
    streams: Vec<(SignInPager, VecDeque<SignIn>, bool)>,
}

impl<'g> MergedSignIns<'g> {
    fn new(graph: &'g GraphClient, pagers: Vec<SignInPager>) -> Self {
        MergedSignIns {
            graph,
            streams: pagers
                .into_iter()
                .map(|p| (p, VecDeque::new(), false))
                .collect(),
        }
    }

    async fn next(
        &mut self,
        observer: Option<&dyn Observer>,
    ) -> Result<Option<SignIn>, GraphError> {
        for (pager, buffer, done) in &mut self.streams {
            while buffer.is_empty() && !*done {
                match pager.next_page().await? {
                    Some(page) => {
                        if let Some(observer) = observer {
                            observer.page(page.len(), &self.graph.stats());
                        }
                        buffer.extend(page);
                    }
                    None => *done = true,
                }
            }
        }
        let newest = self
            .streams
            .iter()
            .enumerate()
            .filter_map(|(i, (_, buffer, _))| buffer.front().map(|s| (i, s.created)))
            .max_by_key(|(_, created)| *created)
            .map(|(i, _)| i);
        Ok(newest.and_then(|i| self.streams[i].1.pop_front()))
    }
}

/// A bad `since` / `until` (CLI flag or HTTP query parameter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct WindowError {
    /// `since` or `until`.
    pub parameter: &'static str,
    pub message: String,
}

/// An explicitly requested window; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedWindow {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// How far ahead of our clock a caller's timestamp may be (their clock may run fast); later
/// values are refused as "in the future", earlier ones are clamped to now.
pub const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// Parses and checks `since` / `until` (RFC 3339, any offset): not in the future (beyond
/// [`CLOCK_SKEW`]), within Graph's 30-day retention, `since` before `until`. The one check behind
/// the CLI flags and the refresh trigger's query. Messages never repeat the value.
pub fn parse_window(
    since: Option<&str>,
    until: Option<&str>,
    now: OffsetDateTime,
) -> Result<RequestedWindow, WindowError> {
    let window = RequestedWindow {
        since: since.map(|v| parse_instant("since", v, now)).transpose()?,
        until: until.map(|v| parse_instant("until", v, now)).transpose()?,
    };
    if let (Some(since), Some(until)) = (window.since, window.until) {
        if since >= until {
            return Err(WindowError {
                parameter: "since",
                message: "must be earlier than until".into(),
            });
        }
    }
    Ok(window)
}

fn parse_instant(
    parameter: &'static str,
    value: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, WindowError> {
    let refuse = |message: &str| WindowError {
        parameter,
        message: message.into(),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(refuse(
            "is empty; expected an RFC 3339 timestamp such as 2026-11-27T00:00:00Z",
        ));
    }
    let at = OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| refuse("is not an RFC 3339 timestamp; expected e.g. 2026-11-27T00:00:00Z"))?
        .to_offset(time::UtcOffset::UTC);
    if at > now + CLOCK_SKEW {
        return Err(refuse("is in the future"));
    }
    if at < now - crate::config::GRAPH_RETENTION {
        return Err(refuse(
            "is older than 30 days: Graph keeps sign-in logs for 30 days only",
        ));
    }
    Ok(at.min(now))
}
