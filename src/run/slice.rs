//! Exporting one slice, in two halves that run at different times:
//!
//! * [`SliceReader::read`] reads it from Graph newest first, keeps what the filter matches and
//!   was not written before, encodes rows into blocks of at most [`BLOCK_TARGET`] and stages
//!   them as they fill. Several slices are read at once (see [`super::SLICES_IN_FLIGHT`]); staged
//!   blocks stay invisible until committed.
//! * [`commit`] runs in plan order, one slice at a time: the commit protocol of [`crate::state`]
//!   (record `pending`, commit, settle), so the exported interval only ever grows contiguously.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tracing::{debug, info, warn};

use super::cursor::{CursorError, Query, SliceCursor};
use super::dedup::SeenIds;
use super::{rfc3339, state_bytes, Deps, RunError, Slice, BLOCK_TARGET};
use crate::config::Settings;
use crate::csv::CsvEncoder;
use crate::graph::client::GraphError;
use crate::graph::query::Window;
use crate::graph::stream::{PageObserver, SignInStream};
use crate::sink::{daily_file, BlockId, Sink};
use crate::state::{Instant, Pending, RunSummary, State};
use crate::transform::filter::SignInFilter;

/// One slice read and staged, waiting for its turn to commit.
#[derive(Debug)]
pub(super) struct StagedSlice {
    pub slice: Slice,
    pub file: String,
    pub blocks: Vec<BlockId>,
    pub rows: u64,
    /// Ids of rows in the last `SIGNINS_OVERLAP` of the slice: the next run re-reads them.
    pub pending_ids: BTreeMap<String, Instant>,
    pub duplicates: u64,
    pub completeness_checks: u64,
}

/// How much of a slice its read has covered (0 to 1): when the deadline ends the run, it sizes
/// the slices of later runs.
#[derive(Debug, Default)]
pub(super) struct ReadProgress {
    share: AtomicU64,
    finished: AtomicBool,
}

impl ReadProgress {
    fn set(&self, share: f64) {
        self.share.store(share.to_bits(), Ordering::Relaxed);
    }

    pub fn share(&self) -> f64 {
        f64::from_bits(self.share.load(Ordering::Relaxed))
    }

    /// The read ended (staged, or failed): it no longer reads from Graph.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }
}

/// Marks a read finished however it ends, errors included.
struct Finishing<'p>(&'p ReadProgress);

impl Drop for Finishing<'_> {
    fn drop(&mut self) {
        self.0.finished.store(true, Ordering::Relaxed);
    }
}

/// What every slice read of one run shares.
pub(super) struct SliceReader<'r> {
    settings: &'r Settings,
    deps: &'r Deps,
    filter: &'r SignInFilter,
    /// The state as the run found it: the ids earlier runs wrote near the watermark. Slices of
    /// one run never share a row (they are disjoint), so commits during the run add nothing a
    /// later slice's read needs.
    written: &'r State,
    /// [`State::written_since`] of `written`, computed once.
    written_since: Option<OffsetDateTime>,
    run_id: &'r str,
    /// Sequence of the last staged block: block ids must not repeat within a file.
    last_block: AtomicU32,
    /// Width of Graph queries once slow pages narrowed them; kept for the rest of the run.
    query_width: Mutex<Option<Duration>>,
}

impl<'r> SliceReader<'r> {
    pub fn new(
        settings: &'r Settings,
        deps: &'r Deps,
        filter: &'r SignInFilter,
        written: &'r State,
        run_id: &'r str,
    ) -> SliceReader<'r> {
        SliceReader {
            settings,
            deps,
            filter,
            written,
            written_since: written.written_since(),
            run_id,
            last_block: AtomicU32::new(0),
            query_width: Mutex::new(None),
        }
    }

    fn next_block_id(&self) -> BlockId {
        BlockId::new(
            self.run_id,
            self.last_block.fetch_add(1, Ordering::Relaxed) + 1,
        )
    }

    /// Whether an earlier run wrote this row (only rows near the watermark can be remembered).
    pub fn was_written(&self, created: OffsetDateTime, id: &str) -> bool {
        self.written_since.is_some_and(|since| created >= since) && self.written.is_written(id)
    }

    fn width(&self) -> Option<Duration> {
        *self.query_width.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn narrow(&self, width: Duration) {
        let mut current = self.query_width.lock().unwrap_or_else(|p| p.into_inner());
        *current = Some(current.map_or(width, |w| w.min(width)));
    }

    /// All event types' sign-ins created in `query` (inclusive: the slice drops rows at its end,
    /// which belong to the next slice), newest first.
    pub fn open(&self, query: Query) -> SignInStream<'_> {
        let window = Window {
            start: query.start,
            end: query.end,
        };
        let pager = self.deps.graph.pager_for(
            window,
            &self.settings.graph.event_types,
            self.filter.server_clause(),
        );
        SignInStream::new(&self.deps.graph, pager)
    }

    /// Reads `slice` and stages its new rows; nothing is committed.
    pub async fn read(
        &self,
        slice: Slice,
        progress: &ReadProgress,
    ) -> Result<StagedSlice, RunError> {
        let _finishing = Finishing(progress);
        let settings = self.settings;
        let overlap = settings.overlap;
        let file = daily_file(slice.start.date());
        let sink = &self.deps.sink;
        let observer = self
            .deps
            .observer
            .as_deref()
            .map(|o| o as &dyn PageObserver);
        let mut encoder = CsvEncoder::new(&settings.columns, settings.csv_safe);
        // Which window to read next: the whole slice, then re-checks and narrower windows as
        // Graph's paging and speed require (see `cursor`).
        let mut cursor = SliceCursor::new(slice, self.width().unwrap_or(settings.slice));
        let mut stream = self.open(cursor.query());
        let mut seen = SeenIds::default();
        let mut staged = StagedSlice {
            slice,
            file: file.clone(),
            blocks: Vec::new(),
            rows: 0,
            pending_ids: BTreeMap::new(),
            duplicates: 0,
            completeness_checks: 0,
        };
        let mut buffer = Vec::with_capacity(BLOCK_TARGET + 64 * 1024);
        let incomplete = |e: CursorError| {
            RunError::Graph(format!(
                "{e} for {} to {}; nothing of this slice was committed, the next run reads it again",
                rfc3339(slice.start),
                rfc3339(slice.end)
            ))
        };
        loop {
            let signin = match stream.next(observer).await {
                Ok(Some(signin)) => signin,
                Ok(None) => {
                    let checks_before = cursor.rechecks();
                    let Some(query) = cursor.ended(stream.pages()).map_err(incomplete)? else {
                        break;
                    };
                    if cursor.rechecks() > checks_before {
                        staged.completeness_checks += 1;
                        debug!(file = %file, below = %rfc3339(query.end), "paging took several pages: checking the slice is complete");
                    }
                    stream = self.open(query);
                    continue;
                }
                Err(GraphError::Slow { page, last }) => {
                    let Some(query) = cursor.slow().map_err(incomplete)? else {
                        break;
                    };
                    self.narrow(cursor.width());
                    warn!(
                        file = %file,
                        page,
                        last = %last,
                        width_seconds = cursor.width().as_secs(),
                        "Graph is slow for this window; reading it in shorter windows"
                    );
                    stream = self.open(query);
                    continue;
                }
                Err(e) => return Err(RunError::Graph(e.to_string())),
            };
            cursor.saw(signin.created);
            progress.set(cursor.read_share(slice));
            // Half-open slices: the row at the end instant belongs to the next slice.
            if signin.created < slice.start
                || signin.created >= slice.end
                || !self.filter.matches(signin)
            {
                continue;
            }
            if self.was_written(signin.created, &signin.id)
                || !seen.take(&signin.id, signin.created)
            {
                staged.duplicates += 1;
                continue;
            }
            encoder.encode_signin(&settings.columns, signin, &mut buffer);
            staged.rows += 1;
            if signin.created >= slice.end - overlap {
                staged
                    .pending_ids
                    .insert(signin.id.clone(), Instant(signin.created));
            }
            if buffer.len() >= BLOCK_TARGET {
                let block = self.next_block_id();
                sink.stage(&file, &block, Bytes::from(std::mem::take(&mut buffer)))
                    .await?;
                staged.blocks.push(block);
                buffer.reserve(BLOCK_TARGET + 64 * 1024);
            }
        }
        if !buffer.is_empty() {
            let block = self.next_block_id();
            sink.stage(&file, &block, Bytes::from(buffer)).await?;
            staged.blocks.push(block);
        }
        progress.set(1.0);
        debug!(file = %file, blocks = staged.blocks.len(), "blocks staged");
        Ok(staged)
    }
}

/// The whole of `slice` as one query (the dry run reads slices without the cursor).
pub(super) fn query_of(slice: Slice) -> Query {
    Query {
        start: slice.start,
        end: slice.end,
    }
}

/// Commits a staged slice: record `pending`, put the blocks into the daily file, settle. Slices
/// commit one at a time, in plan order.
pub(super) async fn commit(
    sink: &dyn Sink,
    header: Bytes,
    overlap: Duration,
    state: &mut State,
    summary: &mut RunSummary,
    staged: StagedSlice,
) -> Result<(), RunError> {
    let StagedSlice {
        slice,
        file,
        blocks,
        rows,
        pending_ids,
        duplicates,
        completeness_checks,
    } = staged;
    summary.duplicates_skipped += duplicates;
    summary.completeness_checks += completeness_checks;
    if rows == 0 {
        state.extend(slice.start, slice.end, overlap);
        return Ok(());
    }
    // The phase events below are where crash tests stop the process (tests/blob_pipeline.rs).
    let ticket = sink.prepare(&file, header, &blocks).await?;
    state.pending = Some(Pending {
        ticket: ticket.clone(),
        start: slice.start,
        end: slice.end,
        ids: pending_ids,
        rows,
    });
    sink.write_state(state_bytes(state)?).await?;
    debug!(file = %file, "pending commit recorded");
    sink.ensure_locked().await?;
    sink.commit(&ticket).await?;
    debug!(file = %file, "commit landed");
    state.settle(true, overlap);
    sink.write_state(state_bytes(state)?).await?;
    summary.rows += rows;
    *summary.files.entry(file.clone()).or_default() += rows;
    info!(file = %file, rows, slice_start = %rfc3339(slice.start), slice_end = %rfc3339(slice.end), "slice committed");
    Ok(())
}
