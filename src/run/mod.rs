//! The run: source → filter → flatten → CSV → sink, exactly once. Graph is read slice by slice;
//! the diagnostic-settings archive blob by blob ([`archive`]).
//!
//! | file | what it owns |
//! |---|---|
//! | `mod.rs` | the run's entry points, wiring ([`Deps`]), settling a previous run, the slice loop (reads in flight, commits as they finish, the deadline), recording the summary |
//! | [`archive`] | the diagnostic-settings source: which blobs to read, reading them in batches across blobs, routing rows to daily files, the commit of several files, what remains |
//! | [`plan`] | which slices, in which order (pure, table-tested and simulated) |
//! | [`slice`] | exporting one slice: read, filter, encode, stage (several at once), keep what a stopped read covered; the commit protocol |
//! | [`dedup`] | which rows a slice already took, in memory that follows the sign-in rate (pure) |
//! | [`cursor`] | which window of a slice to read next: re-checks, narrower windows (pure) |
//! | [`latest`] | rebuilding `latest.csv`, then the summaries over the same days |
//! | `summaries` | keeping the map-ready summaries: a tally per daily file, updated from the rows each commit adds |
//! | [`report`] | a run's outcome as a status, a log line and JSON, for every shell |
//! | [`window`] | parsing `since` / `until` for the CLI and the refresh trigger |

pub mod archive;
pub mod cursor;
pub mod dedup;
pub mod latest;
pub mod plan;
pub mod report;
pub mod slice;
mod summaries;
pub mod window;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::credential::TokenProvider;
use crate::csv::CsvEncoder;
use crate::graph::client::GraphClient;
use crate::graph::model::EventType;
use crate::sink::{daily_file, LockHolder, LockOutcome, Sink, SinkError};
use crate::state::{Coverage, ExportQuery, QueryForm, Remaining, State};
use crate::transform::filter::SignInFilter;

// The types of the run's API (its errors wrap them), for the shells.
pub use crate::graph::client::GraphError;
pub use crate::state::{Outcome, RunSummary, StateError};
pub use plan::{Slice, SliceKind};
pub use report::{Report, Trigger};
use slice::{SliceReader, StagedSlice};
pub use window::{parse_window, RequestedWindow, WindowError};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Start of the window; `None` = incremental from the stored watermark (or the lookback).
    pub since: Option<OffsetDateTime>,
    /// End of the window; `None` = now.
    pub until: Option<OffsetDateTime>,
    /// Stop reading after this long (less the time the commits need); what was read is committed.
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
    /// The deadline hit: what was read is committed, the next run continues.
    DeadlineReached(RunSummary),
    /// Another writer holds the lock: nothing was done.
    Busy(LockHolder),
}

/// Why a run failed. What it read before the failure is committed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// Graph's answers for a window could not be completed (paging that keeps ending early,
    /// pages too slow even for minute-wide windows).
    #[error("{source} for {from} to {to}; what was read completely is committed, the next run reads the rest")]
    Incomplete {
        from: String,
        to: String,
        #[source]
        source: cursor::CursorError,
    },
    #[error("state document: {0}")]
    State(#[from] StateError),
    /// The summaries cannot be built: a daily file that is not the export's own CSV, a damaged
    /// tally, no room to spill one.
    #[error(transparent)]
    Summary(crate::summary::SummaryError),
    /// The diagnostic-settings archive could not be read; what was read before is committed.
    #[error("{0}; what was read completely is committed, the next run reads the rest")]
    Source(#[source] crate::diagnostic::SourceError),
    #[error("cancelled (shutting down); committed slices stay")]
    Cancelled,
    /// The request or the settings cannot run against this destination as they are (another
    /// query or other columns than the destination's); nothing was read.
    #[error(transparent)]
    Refused(StateError),
    /// The request asks for something the source cannot do (a window end or a back-fill on the
    /// diagnostic-settings source); nothing was read.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl From<crate::summary::SummaryError> for RunError {
    /// A storage error the summaries passed through is the sink's: it stays one (a lost lock
    /// must read as a lost lock).
    fn from(e: crate::summary::SummaryError) -> RunError {
        match e {
            crate::summary::SummaryError::Storage(inner) => match inner.downcast::<SinkError>() {
                Ok(sink) => RunError::Sink(*sink),
                Err(other) => RunError::Summary(crate::summary::SummaryError::Storage(other)),
            },
            e => RunError::Summary(e),
        }
    }
}

/// Target size of one staged block: big enough to keep requests few, small enough that memory
/// stays flat (one block is buffered per slice in flight).
pub const BLOCK_TARGET: usize = 4 * 1024 * 1024;

/// Chains read at once. Each waits for its own pages, so one alone cannot use Graph's request
/// budget (`SIGNINS_GRAPH_RATE` paces them all), and the budget's slots free up in clusters: a
/// slot that frees while every chain waits for an answer is used late. Paced at 5 requests / 10 s
/// with pages of 2–3 s, 2 chains reach 0.90 of the time the rows' full pages need at best, 3
/// reach 0.93 and 4 reach 0.95 (BENCHMARKS.md), for one more request than 2: a chain costs
/// only the page where it reads into the next one. Each holds a block in memory, and a page
/// while it has one of the [`PAGE_SLOTS_PER_FORM`] page slots.
pub const MAX_CHAINS_IN_FLIGHT: usize = 4;

/// Chains holding a page in memory at once, per query form (see [`crate::graph::slots`]). A
/// chain holds its page for the milliseconds it reads and uses it, and none while Graph answers
/// (seconds): two slots keep every chain reading at Graph's pace, and two cores busy where
/// Graph is fast, with half the pages in memory. A chain reading one query per event type holds
/// a page of each under its one slot, so that fallback gets a slot per chain: none waits.
pub const PAGE_SLOTS_PER_FORM: usize = 2;

/// Storage round trips a stopped run needs after it stops reading: per slice in flight the last
/// block, prepare, the pending record, the lock check, the commit and the settled state.
const ROUND_TRIPS_PER_COMMIT: u32 = 6;
/// Round trips of `latest.csv` and the summaries besides two per report day (a copy, a tally):
/// the listing, the commit, the two summary files, a tally written per day changed (at most one
/// per read in flight) and the run's summary: a run that is behind still refreshes what Power BI
/// reads.
const ROUND_TRIPS_AFTER_COMMITS: u32 = 5 + MAX_CHAINS_IN_FLIGHT as u32;

/// What time it is for the planner: the system clock, or a fixed instant (tests, reproducible
/// back-fills of a known window).
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(OffsetDateTime),
}

impl Clock {
    /// The clock of a production run: the system's. Debug builds — the binary the end-to-end
    /// tests start — take a fixed instant from `SIGNINS_TEST_CLOCK` (RFC 3339), so those tests
    /// run at pinned instants (around a UTC midnight in CI); release builds never read it.
    pub fn from_env() -> Clock {
        #[cfg(debug_assertions)]
        if let Some(at) = std::env::var("SIGNINS_TEST_CLOCK")
            .ok()
            .and_then(|text| OffsetDateTime::parse(text.trim(), &Rfc3339).ok())
        {
            return Clock::Fixed(at);
        }
        Clock::System
    }

    /// Now, in whole seconds (Graph's `$filter` bounds are whole seconds).
    pub fn now(self) -> OffsetDateTime {
        let now = match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Fixed(at) => at,
        };
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// Receives progress events (the CLI's progress bar); all methods default to no-ops.
pub trait Observer: crate::graph::stream::PageObserver {
    fn slice_done(&self, _done: u32, _total: u32, _rows: u64) {}
    /// A piece of `bytes` of a diagnostic-settings blob was read and its rows routed.
    fn archive_piece(&self, _bytes: usize) {}
}

/// The stages a run is wired from; tests and `demo` build their own.
pub struct Deps {
    pub graph: GraphClient,
    pub sink: Arc<dyn Sink>,
    pub observer: Option<Arc<dyn Observer>>,
    pub clock: Clock,
    /// The diagnostic-settings archive, with `SIGNINS_SOURCE=diagnostic-settings`.
    pub archive: Option<archive::ArchiveSource>,
}

impl Deps {
    /// Production wiring: credential from the settings, Graph client, sink for the destination.
    pub fn from_settings(settings: &Settings) -> Result<Deps, RunError> {
        let tokens = TokenProvider::new(&settings.graph.auth).map_err(GraphError::from)?;
        let sink = crate::sink::open(&settings.destination, settings.preset, &tokens)?;
        let archive = match &settings.source {
            crate::config::Source::Graph => None,
            crate::config::Source::DiagnosticSettings(storage) => {
                Some(archive::ArchiveSource::new(storage, &tokens)?)
            }
        };
        let graph = GraphClient::new(&settings.graph, tokens)?;
        Ok(Deps {
            graph,
            sink,
            observer: None,
            clock: Clock::from_env(),
            archive,
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
    let tokens = TokenProvider::new(&settings.graph.auth).map_err(GraphError::from)?;
    let sink = crate::sink::open(&settings.destination, settings.preset, &tokens)?;
    let state = match sink.read_state().await? {
        Some(bytes) => State::parse(&bytes)?,
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
        let result = run.export().await;
        return run.outcome(result);
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
    /// The slowest storage round trip seen before reading: sizes the time kept for commits.
    storage_latency: Duration,
    summary: RunSummary,
    /// What the state held when the run planned, and whether it planned anything to export.
    covered_before: Coverage,
    had_work: bool,
    state: Option<State>,
    /// What this run's commits added to each daily file, for the summaries.
    committed_rows: summaries::CommittedRows,
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
            storage_latency: Duration::ZERO,
            summary,
            covered_before: Coverage::default(),
            had_work: false,
            state: None,
            committed_rows: summaries::CommittedRows::default(),
        }
    }

    /// What this run exports, as recorded in the state: the query and the columns.
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
            columns: self
                .settings
                .columns
                .names()
                .iter()
                .map(|c| c.to_string())
                .collect(),
        }
    }

    async fn load_state(&mut self) -> Result<Option<State>, RunError> {
        let asked = std::time::Instant::now();
        let bytes = self.deps.sink.read_state().await?;
        self.storage_latency = self.storage_latency.max(asked.elapsed());
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let mut state = State::parse(&bytes)?;
        if let Some(state) = state.as_mut() {
            state
                .check_source(self.archive_mode())
                .map_err(RunError::Refused)?;
            state
                .check_export(&self.query())
                .map_err(RunError::Refused)?;
        }
        Ok(state)
    }

    /// Whether this run reads the diagnostic-settings archive.
    fn archive_mode(&self) -> bool {
        matches!(
            self.settings.source,
            crate::config::Source::DiagnosticSettings(_)
        )
    }

    /// Settles a commit a previous run recorded and did not settle (crashed, or failed before
    /// settling): the Graph path's single ticket here, the archive's tickets in [`archive`].
    async fn settle_previous(&self, state: &mut State) -> Result<(), RunError> {
        if self.request.dry_run {
            return Ok(());
        }
        if let Some(pending) = state.pending.clone() {
            // Fenced: a commit of that run still in flight can no longer land after this one
            // re-exports the same rows.
            let committed = self.deps.sink.fence(&pending.ticket).await?;
            info!(file = %pending.ticket.file, committed, "settling the previous run's pending commit");
            state.settle(committed, self.settings.overlap);
            self.deps.sink.write_state(state_bytes(state)?).await?;
        }
        Ok(())
    }

    /// The pure planner, fed from the state, the request and the settings.
    fn plan(&self, state: Option<&State>, now: OffsetDateTime) -> plan::Plan {
        plan::plan(
            state.map(|state| plan::Exported {
                export_from: state.export_from,
                covered: &state.covered,
            }),
            &plan::PlanInput {
                now,
                since: self.request.since,
                until: self.request.until,
                lookback: self.settings.lookback,
                overlap: self.settings.overlap,
                settle: self.settings.settle,
                slice: self.settings.slice,
            },
        )
    }

    /// `Ok(true)` when everything planned was exported, `Ok(false)` when the deadline stopped it.
    async fn export(&mut self) -> Result<bool, RunError> {
        if self.archive_mode() {
            return self.export_archive().await;
        }
        let now = self.deps.clock.now();
        let mut state = self.load_state().await?;
        if let Some(state) = state.as_mut() {
            self.settle_previous(state).await?;
        }
        let plan = self.plan(state.as_ref(), now);
        let mut state = state.unwrap_or_else(|| {
            State::new(
                self.settings.preset.as_str(),
                self.query(),
                plan.export_from,
            )
        });
        if !plan.lost.is_empty() {
            for span in &plan.lost {
                warn!(
                    from = %rfc3339(span.from),
                    to = %rfc3339(span.to),
                    "these sign-ins are older than Graph keeps them (30 days) and were never exported: recorded as lost in the state"
                );
            }
            self.summary.lost = plan.lost.clone();
        }
        state.adopt_start(plan.export_from, &plan.lost);
        self.covered_before = state.covered.clone();
        self.had_work = plan.slices.iter().any(|s| s.kind != SliceKind::Reread);
        self.summary.window_start = Some(plan.window_start);
        self.summary.window_end = Some(plan.window_end);
        self.summary.slices_total = u32::try_from(plan.slices.len()).unwrap_or(u32::MAX);
        // Every path below must leave the final state in `self.state`: `finish` records the run
        // in it, and a stale copy would undo its commits.
        let mut read = self.export_slices(&mut state, &plan.slices).await;
        if let Err(RunError::Graph(e)) = &read {
            if e.is_invalid_filter()
                && state.query_form.is_combined()
                && self.settings.graph.event_types.len() > 1
            {
                // Microsoft documents only one-type lambdas on signInEventTypes; this tenant's
                // Graph refuses the combined one. Nothing was read: read again, one query per
                // event type, and remember it (the first commit writes the state).
                warn!(error = %e, "Graph refused the combined event-type filter; reading one query per event type from now on");
                state.query_form = QueryForm::PerEventType;
                let replan = self.plan(Some(&state), now);
                read = self.export_slices(&mut state, &replan.slices).await;
                if matches!(&read, Err(RunError::Graph(e)) if e.is_invalid_filter()) {
                    // Refused either way: the filter itself is wrong, not its form.
                    state.query_form = QueryForm::Combined;
                }
            }
        }
        let result = match read {
            Ok(completed) if !self.request.dry_run => self
                .publish_latest_by_deadline(&mut state)
                .await
                .map(|published| completed && published),
            other => other,
        };
        self.summary.remaining = remaining(&plan, &state);
        self.state = Some(state);
        result
    }

    /// When reading stops: the deadline less the time the commits of the reads in flight and
    /// `latest.csv` and the summaries need (storage round trips at the slowest latency seen, or
    /// what the last rebuild took if longer), never more than a quarter of the deadline, so that
    /// a run whose deadline allows one page keeps it.
    fn stop_reading_at(&self, state: &State) -> Option<std::time::Instant> {
        let deadline = self.request.deadline?;
        let round_trips = ROUND_TRIPS_PER_COMMIT
            * u32::try_from(MAX_CHAINS_IN_FLIGHT).unwrap_or(u32::MAX)
            + 2 * self.settings.report_days
            + ROUND_TRIPS_AFTER_COMMITS;
        let publish = state
            .publish_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(Duration::ZERO, |s| Duration::from_secs_f64(s.min(86_400.0)));
        let commits = self.storage_latency * ROUND_TRIPS_PER_COMMIT * 4;
        let reserve = (self.storage_latency * round_trips)
            .max(commits + publish)
            .saturating_add(Duration::from_millis(100))
            .min(deadline / 4);
        self.started.checked_add(deadline.saturating_sub(reserve))
    }

    /// Exports `plan`: its slices are read as [`plan::Chain`]s, up to [`MAX_CHAINS_IN_FLIGHT`] at
    /// once, in plan order. Each slice commits as soon as its chain has read past it, one commit
    /// at a time, while the reads go on. Two reads may hold the same daily file (the run's new
    /// time and its re-read of the overlap, both today): the later one stages nothing in that file
    /// until the earlier read has ended, since a commit discards the file's uncommitted blocks it
    /// does not list; until then its blocks wait in memory, up to a bound (see
    /// [`slice::HELD_BYTES`]). At the deadline every read stops and commits what it read.
    /// `Ok(false)` when the deadline stopped it early.
    async fn export_slices(&mut self, state: &mut State, plan: &[Slice]) -> Result<bool, RunError> {
        let in_flight = MAX_CHAINS_IN_FLIGHT;
        let retention = self.deps.clock.now() - crate::config::GRAPH_RETENTION;
        let chains = plan::chains(plan, in_flight, retention, state.rows_per_second);
        self.summary.chains = u32::try_from(chains.len()).unwrap_or(u32::MAX);
        // A busy run's slices may have been cut into pieces: those are what `slicesDone` counts.
        let pieces: usize = chains.iter().map(|c| c.slices.len()).sum();
        self.summary.slices_total = u32::try_from(pieces).unwrap_or(u32::MAX);
        let stop_at = self.stop_reading_at(state);
        let stop_reading = async {
            match stop_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop_reading);
        let stop = CancellationToken::new();
        let written = state.clone();
        let reader = SliceReader::new(
            self.settings,
            self.deps,
            &self.filter,
            query_forms(self.settings, state.query_form),
            &written,
            &self.run_id,
            self.request.dry_run,
        );
        let (read_tx, mut read_rx) = tokio::sync::mpsc::unbounded_channel::<StagedSlice>();
        let mut waiting: VecDeque<plan::Chain> = chains.into();
        // The read that took each daily file last, and the gates to open when a read ends.
        let mut last_holder: BTreeMap<String, usize> = BTreeMap::new();
        let mut on_end: BTreeMap<usize, Vec<oneshot::Sender<()>>> = BTreeMap::new();
        let mut reads_started = 0;
        let mut reads = FuturesUnordered::new();
        // Reads that ended while a commit was under way.
        let mut ended: VecDeque<(usize, BTreeSet<String>, Result<bool, RunError>)> =
            VecDeque::new();
        let mut stopped = false;
        let mut everything_read = true;
        let mut failure = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(RunError::Cancelled);
            }
            while let Some((id, files, result)) = ended.pop_front() {
                for gate in on_end.remove(&id).unwrap_or_default() {
                    let _ = gate.send(());
                }
                for file in &files {
                    if last_holder.get(file) == Some(&id) {
                        last_holder.remove(file);
                    }
                }
                everything_read &= result?;
            }
            while !stopped && reads.len() < in_flight {
                let Some(chain) = waiting.pop_front() else {
                    break;
                };
                let id = reads_started;
                reads_started += 1;
                let files = chain_files(&chain);
                let mut gates = BTreeMap::new();
                for file in &files {
                    if let Some(holder) = last_holder.insert(file.clone(), id) {
                        let (open, gate) = oneshot::channel();
                        on_end.entry(holder).or_default().push(open);
                        gates.insert(file.clone(), gate);
                    }
                }
                let (reader, stop, read_tx) = (&reader, &stop, read_tx.clone());
                reads.push(async move {
                    let read = reader.read(&chain, gates, stop, &read_tx).await;
                    (id, files, read)
                });
            }
            let staged = match read_rx.try_recv() {
                Ok(staged) => staged,
                Err(_) if reads.is_empty() => break,
                Err(_) => tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Err(RunError::Cancelled),
                    _ = &mut stop_reading, if !stopped => {
                        info!("deadline: reads stop and commit what they read");
                        stopped = true;
                        stop.cancel();
                        continue;
                    }
                    Some(staged) = read_rx.recv() => staged,
                    Some(read) = reads.next() => {
                        ended.push_back(read);
                        continue;
                    }
                },
            };
            let mut staged = staged;
            if let Some(error) = staged.failure.take() {
                // Graph failed a read: the others stop too, everything read is committed,
                // then the run reports the failure.
                warn!(file = %staged.file, error = %error, "a read failed; committing what every read has");
                failure.get_or_insert(error);
                stopped = true;
                stop.cancel();
            }
            {
                // Commit, while the reads go on.
                let committing = commit_read(
                    self.deps.sink.as_ref(),
                    self.header.clone(),
                    self.settings.overlap,
                    self.request.dry_run,
                    state,
                    &mut self.summary,
                    &mut staged,
                );
                tokio::pin!(committing);
                loop {
                    tokio::select! {
                        biased;
                        committed = &mut committing => {
                            committed?;
                            break;
                        }
                        _ = &mut stop_reading, if !stopped => {
                            stopped = true;
                            stop.cancel();
                        }
                        Some(read) = reads.next(), if !reads.is_empty() => ended.push_back(read),
                    }
                }
            }
            self.committed_rows.record(&mut staged);
            if let Some(landed) = staged.landed.take() {
                // The chain may stage the next slice of this file now.
                let _ = landed.send(());
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
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(!stopped && everything_read && waiting.is_empty())
    }

    /// Records the run's summary in the state (best effort on failure) and turns the result into the outcome.
    async fn finish(&mut self, result: Result<bool, RunError>) -> Result<RunOutcome, RunError> {
        self.record(&result);
        if let Some(state) = self.state.as_mut() {
            state.last_run = Some(self.summary.clone());
            let written = match state_bytes(state) {
                Ok(bytes) => self
                    .deps
                    .sink
                    .write_state(bytes)
                    .await
                    .map_err(RunError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                if result.is_ok() {
                    return Err(e);
                }
                warn!(error = %e, "could not record the failed run in the state");
            }
        }
        self.outcome(result)
    }

    /// Fills the summary from the run's counters, the state and the result.
    fn record(&mut self, result: &Result<bool, RunError>) {
        let stats = self.deps.graph.stats();
        self.summary.pages = stats.pages;
        self.summary.requests = stats.requests;
        self.summary.retries = stats.retries;
        let storage = self.deps.sink.counters();
        self.summary.storage_requests = storage.requests
            + self
                .deps
                .archive
                .as_ref()
                .map_or(0, |archive| archive.reader.request_counts().requests);
        self.summary.bytes_copied = storage.bytes_copied;
        self.summary.finished = Some(OffsetDateTime::now_utc());
        self.summary.outcome = match result {
            _ if self.request.dry_run && result.is_ok() => Outcome::DryRun,
            Ok(true) => Outcome::Completed,
            Ok(false) => Outcome::DeadlineReached,
            Err(RunError::Cancelled) => Outcome::Cancelled,
            Err(_) => Outcome::Failed,
        };
        if let Err(e) = result {
            self.summary.error = Some(e.to_string());
        }
        if self.archive_mode() {
            self.record_archive(result.is_ok());
        } else if let Some(state) = self.state.as_mut() {
            self.summary.watermark = Some(state.watermark());
            self.summary.committed = state.covered.added_since(&self.covered_before);
            let added: f64 = self.summary.committed.iter().map(|s| s.seconds()).sum();
            if !self.request.dry_run {
                self.summary.stalled_runs =
                    state.record_run(added, self.summary.rows, self.had_work);
            }
            if let (Some(remaining), Some(rate)) =
                (self.summary.remaining.as_mut(), state.rows_per_second)
            {
                remaining.estimated_rows = Some((remaining.seconds as f64 * rate).round() as u64);
            }
        }
    }

    fn outcome(&mut self, result: Result<bool, RunError>) -> Result<RunOutcome, RunError> {
        if self.request.dry_run {
            self.record(&result);
        }
        match result {
            Ok(true) => Ok(RunOutcome::Completed(self.summary.clone())),
            Ok(false) => Ok(RunOutcome::DeadlineReached(self.summary.clone())),
            Err(e) => Err(e),
        }
    }
}

/// Commits one read; a dry run only counts it.
async fn commit_read(
    sink: &dyn Sink,
    header: bytes::Bytes,
    overlap: Duration,
    dry_run: bool,
    state: &mut State,
    summary: &mut RunSummary,
    staged: &mut StagedSlice,
) -> Result<(), RunError> {
    if !dry_run {
        return slice::commit(sink, header, overlap, state, summary, staged).await;
    }
    summary.rows += staged.rows;
    summary.duplicates_skipped += staged.duplicates;
    summary.completeness_checks += staged.completeness_checks;
    if staged.rows > 0 {
        *summary.files.entry(staged.file.clone()).or_default() += staged.rows;
    }
    state.cover(staged.span, overlap);
    Ok(())
}

/// The daily files a chain writes, each once.
fn chain_files(chain: &plan::Chain) -> BTreeSet<String> {
    chain
        .slices
        .iter()
        .map(|s| daily_file(s.start.date()))
        .collect()
}

/// The queries that read every event type: one for all of them, or one each where the tenant's
/// Graph refused the combined filter.
fn query_forms(settings: &Settings, form: QueryForm) -> Vec<Vec<EventType>> {
    let types = &settings.graph.event_types;
    match form {
        QueryForm::Combined => vec![types.clone()],
        QueryForm::PerEventType => types.iter().map(|t| vec![*t]).collect(),
    }
}

/// What the export still wants after the run, up to the window's end (`None`: nothing).
fn remaining(plan: &plan::Plan, state: &State) -> Option<Remaining> {
    let holes = plan.remaining(&state.covered);
    let (first, last) = (holes.first()?, holes.last()?);
    Some(Remaining {
        from: first.from,
        to: last.to,
        holes: u32::try_from(holes.len()).unwrap_or(u32::MAX),
        seconds: holes.iter().map(|h| h.duration().as_secs()).sum(),
        estimated_rows: None,
        bytes: None,
    })
}

/// The state document's bytes, or the run's error.
fn state_bytes(state: &State) -> Result<bytes::Bytes, RunError> {
    Ok(state.to_bytes()?)
}

/// RFC 3339 for log fields (the `Display` of `OffsetDateTime` is not).
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
