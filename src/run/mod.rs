//! The run: Graph source → filter → flatten → CSV → sink, slice by slice, exactly once.
//!
//! | file | what it owns |
//! |---|---|
//! | `mod.rs` | the run's entry points, wiring ([`Deps`]), settling a previous run, the slice loop, recording the summary |
//! | [`plan`] | which slices, in which order (pure, table-tested) |
//! | [`slice`] | exporting one slice: read, filter, encode, stage, the commit protocol |
//! | [`cursor`] | which window of a slice to read next: re-checks, narrower windows (pure) |
//! | [`latest`] | rebuilding `latest.csv` |
//! | [`report`] | a run's outcome as a status, a log line and JSON, for every shell |
//! | [`window`] | parsing `since` / `until` for the CLI and the refresh trigger |

pub mod cursor;
pub mod latest;
pub mod plan;
pub mod report;
pub mod slice;
pub mod window;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::credential::TokenProvider;
use crate::csv::CsvEncoder;
use crate::graph::client::GraphClient;
use crate::graph::query::Window;
use crate::graph::stream::{PageObserver, SignInStream};
use crate::sink::{daily_file, BlockId, LockHolder, LockOutcome, Sink, SinkError};
use crate::state::{ExportQuery, Span, State};
use crate::transform::filter::SignInFilter;

pub use crate::state::RunSummary;
pub use plan::Slice;
pub use report::{Report, Trigger};
pub use window::{parse_window, RequestedWindow, WindowError};

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

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Graph(String),
    #[error("state document: {0}")]
    State(String),
    #[error("cancelled (shutting down); finished slices are committed")]
    Cancelled,
    /// The request or the settings cannot run against this destination as they are (e.g.
    /// `until` before a needed back-fill, another query than the destination's); nothing was read.
    #[error("{0}")]
    Refused(String),
    /// Internal signal: the deadline hit inside a slice (the run reports `DeadlineReached`).
    #[error("the run's deadline was reached")]
    DeadlineReached,
}

/// Target size of one staged block: big enough to keep requests few, small enough that memory
/// stays flat (one block is buffered at a time).
pub const BLOCK_TARGET: usize = 4 * 1024 * 1024;

/// Receives progress events (the CLI's progress bar); all methods default to no-ops.
pub trait Observer: PageObserver {
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
    pub fn from_settings(settings: &Settings) -> Result<Deps, RunError> {
        let tokens =
            TokenProvider::new(&settings.graph.auth).map_err(|e| RunError::Graph(e.to_string()))?;
        let sink = crate::sink::open(&settings.destination, settings.preset, &tokens)?;
        let graph = GraphClient::new(&settings.graph, tokens)
            .map_err(|e| RunError::Graph(e.to_string()))?;
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
) -> Result<RunOutcome, RunError> {
    let deps = Deps::from_settings(settings)?;
    run_with(settings, &deps, request, cancel).await
}

/// The last run's summary from the state document; no Graph call.
pub async fn last_summary(settings: &Settings) -> Result<Option<RunSummary>, RunError> {
    let tokens =
        TokenProvider::new(&settings.graph.auth).map_err(|e| RunError::Graph(e.to_string()))?;
    let sink = crate::sink::open(&settings.destination, settings.preset, &tokens)?;
    let state = match sink.read_state().await? {
        Some(bytes) => State::parse(&bytes).map_err(|e| RunError::State(e.to_string()))?,
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
) -> Result<RunOutcome, RunError> {
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
    /// Width of Graph queries once slow pages narrowed them; kept for the rest of the run.
    query_width: Option<Duration>,
    /// How much of a slice abandoned at the deadline was read (0 to 1): sizes later slices.
    abandoned_read: Option<f64>,
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
            query_width: None,
            abandoned_read: None,
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

    async fn load_state(&self) -> Result<Option<State>, RunError> {
        let Some(bytes) = self.deps.sink.read_state().await? else {
            return Ok(None);
        };
        let mut state = State::parse(&bytes).map_err(|e| RunError::State(e.to_string()))?;
        if let Some(state) = state.as_mut() {
            state
                .check_columns(&self.columns())
                .and_then(|()| state.check_query(&self.query()))
                .map_err(|e| RunError::Refused(e.to_string()))?;
        }
        Ok(state)
    }

    /// The query this run exports with, as recorded in the state.
    fn query(&self) -> ExportQuery {
        let graph = &self.settings.graph;
        ExportQuery {
            graph_version: graph.version.as_str().to_string(),
            event_types: graph
                .event_types
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            client_apps: self.settings.client_apps.clone(),
            apps: self.settings.apps.clone(),
            filter: graph.extra_filter.clone(),
        }
    }

    /// The pure planner, fed from the state, the request and the settings.
    fn plan(&self, state: Option<&State>, now: OffsetDateTime) -> Result<plan::Plan, RunError> {
        let covered = state.map(|state| plan::Covered {
            from: state.covered_from,
            watermark: state.watermark,
        });
        plan::plan(
            covered,
            &plan::PlanInput {
                now,
                since: self.request.since,
                until: self.request.until,
                lookback: self.settings.lookback,
                overlap: self.settings.overlap,
                settle: self.settings.settle,
                slice: state
                    .and_then(State::slice_limit)
                    .map_or(self.settings.slice, |limit| limit.min(self.settings.slice)),
            },
        )
        .map_err(|e| RunError::Refused(e.to_string()))
    }

    async fn export(&mut self) -> Result<bool, RunError> {
        let now = now_seconds();
        let mut state = self.load_state().await?;
        if let Some(state) = state.as_mut() {
            if let Some(pending) = state.pending.clone() {
                // Fenced: a commit of that run still in flight can no longer land after this one
                // re-exports the same rows.
                let committed = self.deps.sink.fence(&pending.ticket).await?;
                info!(file = %pending.ticket.file, committed, "settling the previous run's pending commit");
                state.settle(committed, self.settings.overlap);
                self.deps.sink.write_state(state_bytes(state)?).await?;
            }
        }
        let plan::Plan {
            slices: plan,
            window_start,
            window_end,
            lost,
            ..
        } = self.plan(state.as_ref(), now)?;
        let mut state = state.unwrap_or_else(|| {
            let mut state = State::new(self.settings.preset.as_str(), self.columns(), window_start);
            state.query = Some(self.query());
            state
        });
        if let Some((from, to)) = lost {
            let span = Span { from, to };
            warn!(
                from = %rfc3339(from),
                to = %rfc3339(to),
                "the last export ended longer ago than Graph keeps sign-ins (30 days): these can no longer be read and are recorded as lost in the state"
            );
            // A run that fails before moving the watermark finds the same loss again.
            match state.lost.last_mut() {
                Some(last) if last.from == from => last.to = to,
                _ => state.lost.push(span),
            }
            self.summary.lost = Some(span);
        }
        self.summary.window_start = Some(window_start);
        self.summary.window_end = Some(window_end);
        self.summary.slices_total = u32::try_from(plan.len()).unwrap_or(u32::MAX);
        // Every path below must leave the final state in `self.state`: `finish` records the run
        // in it, and a stale copy would move the watermark back.
        let result = match self.export_slices(&mut state, plan).await {
            Ok(completed) => self
                .publish_latest_by_deadline(&mut state)
                .await
                .map(|published| completed && published),
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
    ) -> Result<bool, RunError> {
        // No overflow whatever a library caller asks: an unrepresentable deadline is none.
        let deadline = self
            .request
            .deadline
            .and_then(|d| self.started.checked_add(d));
        let mut longest_slice = Duration::ZERO;
        for slice in plan {
            if self.cancel.is_cancelled() {
                return Err(RunError::Cancelled);
            }
            let slice_started = std::time::Instant::now();
            // Don't start a slice that is unlikely to finish before the deadline.
            if deadline.is_some_and(|d| {
                slice_started
                    .checked_add(longest_slice)
                    .is_none_or(|t| t > d)
            }) {
                return Ok(false);
            }
            match self.export_slice(state, slice, deadline).await {
                Ok(()) => {}
                Err(RunError::DeadlineReached) => {
                    // A slice that had the whole budget and still did not fit would be planned
                    // again, whole, by every later run: shorten slices for the runs to come.
                    if self.summary.slices_done == 0 {
                        let length =
                            Duration::try_from(slice.end - slice.start).unwrap_or_default();
                        let read = self.abandoned_read.take().unwrap_or(0.0);
                        let shorter = state.shorten_slices(length, read);
                        warn!(
                            slice_seconds = shorter.as_secs(),
                            "a whole slice did not fit in the deadline; later runs use shorter slices"
                        );
                    }
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            longest_slice = longest_slice.max(slice_started.elapsed());
            if let Some(budget) = self.request.deadline {
                // Slices that take a small part of the budget can grow back towards SIGNINS_SLICE.
                if longest_slice < budget / 4 {
                    state.lengthen_slices(self.settings.slice);
                }
            }
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

    fn next_block_id(&mut self) -> BlockId {
        self.next_block += 1;
        BlockId::new(&self.run_id, self.next_block)
    }

    /// All event types' sign-ins created in `[start, end]` (inclusive: the slice drops rows at
    /// its end, which belong to the next slice), newest first.
    fn open_stream(&self, start: OffsetDateTime, end: OffsetDateTime) -> SignInStream<'a> {
        let window = Window { start, end };
        let pager = self.deps.graph.pager_for(
            window,
            &self.settings.graph.event_types,
            self.filter.server_clause(),
        );
        SignInStream::new(&self.deps.graph, pager)
    }

    /// Records the run's summary in the state (best effort on failure) and turns the result into the outcome.
    async fn finish(&mut self, result: Result<bool, RunError>) -> Result<RunOutcome, RunError> {
        let stats = self.deps.graph.stats();
        self.summary.pages = stats.pages;
        self.summary.requests = stats.requests;
        self.summary.retries = stats.retries;
        let storage = self.deps.sink.counters();
        self.summary.storage_requests = storage.requests;
        self.summary.bytes_copied = storage.bytes_copied;
        self.summary.finished = Some(OffsetDateTime::now_utc());
        self.summary.outcome = match &result {
            Ok(true) => "completed".into(),
            Ok(false) => "deadline-reached".into(),
            Err(RunError::Cancelled) => "cancelled".into(),
            Err(_) => "failed".into(),
        };
        if let Err(e) = &result {
            self.summary.error = Some(e.to_string());
        }
        if let Some(state) = self.state.as_mut() {
            self.summary.watermark = Some(state.watermark);
            let floor = OffsetDateTime::now_utc() - crate::config::GRAPH_RETENTION;
            self.summary.backfill_remaining = self
                .request
                .since
                .map(|since| since.max(floor))
                .filter(|since| *since < state.covered_from)
                .map(|from| Span {
                    from,
                    to: state.covered_from,
                });
            state.last_run = Some(self.summary.clone());
            if let Err(e) = self.deps.sink.write_state(state_bytes(state)?).await {
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
    async fn dry_run(&mut self) -> Result<RunOutcome, RunError> {
        let state = self.load_state().await?;
        let plan::Plan {
            slices: plan,
            window_start,
            window_end,
            ..
        } = self.plan(state.as_ref(), now_seconds())?;
        self.summary.window_start = Some(window_start);
        self.summary.window_end = Some(window_end);
        self.summary.slices_total = u32::try_from(plan.len()).unwrap_or(u32::MAX);
        for slice in plan {
            let mut stream = self.open_stream(slice.start, slice.end);
            let mut seen = HashSet::new();
            while let Some(signin) = stream
                .next(
                    self.deps
                        .observer
                        .as_deref()
                        .map(|o| o as &dyn PageObserver),
                )
                .await
                .map_err(|e| RunError::Graph(e.to_string()))?
            {
                if signin.created < slice.start
                    || signin.created >= slice.end
                    || !self.filter.matches(signin)
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

/// The state document's bytes, or the run's error.
fn state_bytes(state: &State) -> Result<bytes::Bytes, RunError> {
    state.to_bytes().map_err(|e| RunError::State(e.to_string()))
}

/// RFC 3339 for log fields (the `Display` of `OffsetDateTime` is not).
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}
