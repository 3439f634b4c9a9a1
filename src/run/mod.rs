//! The run: Graph source → filter → flatten → CSV → sink, slice by slice, exactly once.
//!
//! | file | what it owns |
//! |---|---|
//! | `mod.rs` | the run's entry points, wiring ([`Deps`]), settling a previous run, the slice loop (reads in flight, commits in order), recording the summary |
//! | [`plan`] | which slices, in which order (pure, table-tested) |
//! | [`slice`] | exporting one slice: read, filter, encode, stage (several at once); the commit protocol (in plan order) |
//! | [`dedup`] | which rows a slice already took, in memory that follows the sign-in rate (pure) |
//! | [`cursor`] | which window of a slice to read next: re-checks, narrower windows (pure) |
//! | [`latest`] | rebuilding `latest.csv` |
//! | [`report`] | a run's outcome as a status, a log line and JSON, for every shell |
//! | [`window`] | parsing `since` / `until` for the CLI and the refresh trigger |

pub mod cursor;
pub mod dedup;
pub mod latest;
pub mod plan;
pub mod report;
pub mod slice;
pub mod window;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::credential::TokenProvider;
use crate::csv::CsvEncoder;
use crate::graph::client::GraphClient;
use crate::graph::stream::PageObserver;
use crate::sink::{daily_file, LockHolder, LockOutcome, Sink, SinkError};
use crate::state::{ExportQuery, Span, State};
use crate::transform::filter::SignInFilter;

pub use crate::state::RunSummary;
pub use plan::Slice;
pub use report::{Report, Trigger};
use slice::{ReadProgress, SliceReader, StagedSlice};
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
/// stays flat (one block is buffered per slice in flight).
pub const BLOCK_TARGET: usize = 4 * 1024 * 1024;

/// Slices read at once. Graph pages take seconds and follow each other within a query, so one
/// query alone cannot use the app's request budget (`SIGNINS_GRAPH_RATE` paces them all); three
/// keep it busy while a page is slow, at a fixed cost in memory (a page and a block each).
pub const SLICES_IN_FLIGHT: usize = 3;
/// Slices read at once while requests wait for `SIGNINS_GRAPH_RATE`. The window's slots open in
/// clusters, and a slot that opens while every read waits for an answer is used late, a delay
/// that carries into the next window: a fourth read is usually ready (0.94 of the throttle-limited
/// bound in the bench, against 0.87–0.90). When Graph answers faster than the rate allows, the
/// export is bound by CPU and a fourth read would only hold another page and block.
pub const SLICES_IN_FLIGHT_PACED: usize = SLICES_IN_FLIGHT + 1;
/// Slices read and staged that may wait for an earlier slice's commit: a read that finished
/// first frees its place for the next one (it holds only block ids and the ids near its end).
pub const SLICES_WAITING: usize = 3 * SLICES_IN_FLIGHT_PACED;

/// A slice whose read has started and which has not committed yet.
struct InFlight {
    slice: Slice,
    file: String,
    progress: Arc<ReadProgress>,
    started: std::time::Instant,
}

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
    /// The CSV header of every file (with BOM).
    header: bytes::Bytes,
    /// Names the run's staged blocks.
    run_id: String,
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
            header: CsvEncoder::new(&settings.columns, settings.csv_safe).header(),
            run_id: uuid::Uuid::new_v4().to_string(),
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

    /// Exports `plan`: up to [`SLICES_IN_FLIGHT`] slices are read at once
    /// ([`SLICES_IN_FLIGHT_PACED`] while requests wait for the rate), and each commits in
    /// plan order as soon as it and every slice before it are read. `Ok(false)` when the deadline
    /// stopped it early.
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
        let deadline_passed = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline_passed);
        let written = state.clone();
        let reader = SliceReader::new(
            self.settings,
            self.deps,
            &self.filter,
            &written,
            &self.run_id,
        );
        let sink = self.deps.sink.as_ref();
        let mut plan = plan.into_iter().peekable();
        let mut reads = FuturesOrdered::new();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        // Reads that finished while an earlier slice was committing, in plan order.
        let mut read: VecDeque<Result<StagedSlice, RunError>> = VecDeque::new();
        let mut longest_slice = Duration::ZERO;
        let mut stopped_starting = false;
        loop {
            if self.cancel.is_cancelled() {
                return Err(RunError::Cancelled);
            }
            // Start reads: a slice shares its daily file with no slice in flight (a commit
            // discards the file's uncommitted blocks it does not list), and is likely to finish
            // before the deadline.
            let reading_limit = if self.deps.graph.pacing() {
                SLICES_IN_FLIGHT_PACED
            } else {
                SLICES_IN_FLIGHT
            };
            while in_flight.iter().filter(|f| !f.progress.finished()).count() < reading_limit
                && in_flight.len() < SLICES_WAITING
                && !stopped_starting
            {
                let Some(next) = plan.peek().copied() else {
                    break;
                };
                let file = daily_file(next.start.date());
                if in_flight.iter().any(|f| f.file == file) {
                    break;
                }
                let now = std::time::Instant::now();
                if deadline.is_some_and(|d| now.checked_add(longest_slice).is_none_or(|t| t > d)) {
                    stopped_starting = true;
                    break;
                }
                plan.next();
                let progress = Arc::new(ReadProgress::default());
                let reading = Arc::clone(&progress);
                let reader = &reader;
                reads.push_back(async move { reader.read(next, &reading).await });
                in_flight.push_back(InFlight {
                    slice: next,
                    file,
                    progress,
                    started: now,
                });
            }
            let Some(oldest) = in_flight.front() else {
                return Ok(!stopped_starting);
            };
            // The oldest slice in flight is the next to commit.
            let staged = match read.pop_front() {
                Some(staged) => staged,
                None => tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Err(RunError::Cancelled),
                    _ = &mut deadline_passed => {
                        // The deadline is hard: dropping the reads ends their waits for pages,
                        // retry sleeps and pacing. Their staged blocks were never committed and
                        // stay invisible.
                        if self.summary.slices_done == 0 {
                            // A slice that had the whole budget and still did not fit would be
                            // planned again, whole, by every later run: shorten slices for the
                            // runs to come.
                            let length = Duration::try_from(oldest.slice.end - oldest.slice.start)
                                .unwrap_or_default();
                            let shorter = state.shorten_slices(length, oldest.progress.share());
                            warn!(
                                slice_seconds = shorter.as_secs(),
                                "a whole slice did not fit in the deadline; later runs use shorter slices"
                            );
                        }
                        return Ok(false);
                    }
                    staged = reads.next() => match staged {
                        Some(staged) => staged,
                        None => return Err(RunError::State("a slice in flight has no read".into())),
                    },
                },
            };
            let staged = staged?;
            // Commit, while the later slices' reads go on.
            {
                let commit = slice::commit(
                    sink,
                    self.header.clone(),
                    self.settings.overlap,
                    state,
                    &mut self.summary,
                    staged,
                );
                tokio::pin!(commit);
                loop {
                    tokio::select! {
                        biased;
                        committed = &mut commit => {
                            committed?;
                            break;
                        }
                        Some(later) = reads.next(), if !reads.is_empty() => read.push_back(later),
                    }
                }
            }
            if let Some(done) = in_flight.pop_front() {
                longest_slice = longest_slice.max(done.started.elapsed());
            }
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
        let written = state.unwrap_or_else(|| {
            State::new(self.settings.preset.as_str(), self.columns(), window_start)
        });
        let reader = SliceReader::new(
            self.settings,
            self.deps,
            &self.filter,
            &written,
            &self.run_id,
        );
        let observer = self
            .deps
            .observer
            .as_deref()
            .map(|o| o as &dyn PageObserver);
        for slice in plan {
            let mut stream = reader.open(slice::query_of(slice));
            let mut seen = dedup::SeenIds::default();
            while let Some(signin) = stream
                .next(observer)
                .await
                .map_err(|e| RunError::Graph(e.to_string()))?
            {
                if signin.created < slice.start
                    || signin.created >= slice.end
                    || !self.filter.matches(signin)
                {
                    continue;
                }
                if reader.was_written(signin.created, &signin.id)
                    || !seen.take(&signin.id, signin.created)
                {
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
