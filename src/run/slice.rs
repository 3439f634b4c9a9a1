//! Exporting one slice, in two halves that run at different times:
//!
//! * [`SliceReader::read`] reads it from Graph newest first, keeps what the filter matches and
//!   was not written before, encodes rows into blocks of at most [`BLOCK_TARGET`] and stages
//!   them as they fill. Several slices are read at once (see [`super::SLICES_IN_FLIGHT`]); staged
//!   blocks stay invisible until committed. When the run tells it to stop (its deadline) or Graph
//!   fails, the read ends with what it has: the part of the slice it read completely.
//! * [`commit`] runs one slice at a time: the commit protocol of [`crate::state`] (record
//!   `pending`, commit, settle), adding the span the read covered to what is exported.
//!
//! What a stopped read covers: Graph returns a window newest first, so once a row created at `t`
//! arrived, every row newer than `t` did too — but rows *at* `t` may continue on the next page.
//! A stopped read therefore commits `[the oldest instant above t that it read, slice end)` and
//! holds back the rows at `t` (the *tail*), which the next run reads with the rest of the hole.
//! Once a query has ended normally, everything down to its start is complete, tail included
//! ([`SliceCursor::complete_from`]). Nothing is lost at the boundary and nothing written twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cursor::{CursorError, Query, SliceCursor};
use super::dedup::SeenIds;
use super::{rfc3339, state_bytes, Deps, RunError, Slice, BLOCK_TARGET};
use crate::config::Settings;
use crate::csv::CsvEncoder;
use crate::graph::client::GraphError;
use crate::graph::query::Window;
use crate::graph::stream::{PageObserver, SignInStream};
use crate::sink::{daily_file, BlockId, Committed, Sink};
use crate::state::{Instant, Pending, RunSummary, Span, State};
use crate::summary::{DayTally, RowLayout};
use crate::transform::filter::SignInFilter;

/// What one read of a slice produced, waiting for its turn to commit.
#[derive(Debug)]
pub(super) struct StagedSlice {
    pub slice: Slice,
    pub file: String,
    /// The part of the slice read completely: `[from, slice end)`; the whole slice when the read
    /// was not stopped, empty when it read nothing.
    pub span: Span,
    pub blocks: Vec<BlockId>,
    pub rows: u64,
    /// Ids of rows in the last `SIGNINS_OVERLAP` of the slice: the next run re-reads them.
    pub pending_ids: BTreeMap<String, Instant>,
    pub duplicates: u64,
    pub completeness_checks: u64,
    /// Graph failed: what was read before is still committed, then the run fails with this.
    pub failure: Option<RunError>,
    /// What the summaries need of the staged rows (`None`: not tallied; see `summaries`).
    pub tally: Option<DayTally>,
    /// The daily file's versions before and after the commit, once committed.
    pub committed: Option<Committed>,
}

impl StagedSlice {
    /// The read covered its whole slice.
    pub fn complete(&self) -> bool {
        self.span == self.slice.span() && self.failure.is_none()
    }
}

/// Where a read stands among the rows it returned, for what a stop may commit.
#[derive(Debug, Default)]
struct ReadEdge {
    /// The oldest row returned inside the slice.
    oldest: Option<OffsetDateTime>,
    /// The oldest row returned that is newer than `oldest`: every row from it up is read.
    above: Option<OffsetDateTime>,
    /// Where the rows created at `oldest` (the tail) start in the block buffer, and how many.
    tail_start: usize,
    tail_rows: u64,
}

impl ReadEdge {
    /// A row created at `created` came back; `at` is the buffer's length before it is encoded.
    /// Whether the row belongs to the tail (rows at the oldest instant, held back by a stop).
    fn saw(&mut self, created: OffsetDateTime, at: usize) -> bool {
        match self.oldest {
            Some(oldest) if created > oldest => {
                self.above = Some(self.above.map_or(created, |a| a.min(created)));
                false
            }
            Some(oldest) if created == oldest => true,
            Some(oldest) => {
                self.above = Some(oldest);
                self.oldest = Some(created);
                self.tail_start = at;
                self.tail_rows = 0;
                true
            }
            None => {
                self.oldest = Some(created);
                self.tail_start = at;
                self.tail_rows = 0;
                true
            }
        }
    }

    /// Where the part read completely starts, and whether the tail must be held back, given the
    /// cursor's complete part.
    fn complete_from(&self, cursor_complete_from: OffsetDateTime) -> (OffsetDateTime, bool) {
        match self.oldest {
            Some(oldest) if cursor_complete_from > oldest => (
                self.above
                    .map_or(cursor_complete_from, |a| a.min(cursor_complete_from)),
                true,
            ),
            _ => (cursor_complete_from, false),
        }
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
    /// Count rows only: encode and stage nothing (`--dry-run`).
    dry_run: bool,
    /// Sequence of the last staged block: block ids must not repeat within a file.
    last_block: AtomicU32,
    /// Width of Graph queries once slow pages narrowed them; kept for the rest of the run.
    query_width: Mutex<Option<Duration>>,
    /// Where the summaries' columns are in the rows (`None`: no summaries).
    layout: Option<RowLayout>,
}

impl<'r> SliceReader<'r> {
    pub fn new(
        settings: &'r Settings,
        deps: &'r Deps,
        filter: &'r SignInFilter,
        written: &'r State,
        run_id: &'r str,
        dry_run: bool,
    ) -> SliceReader<'r> {
        SliceReader {
            settings,
            deps,
            filter,
            written,
            written_since: written.written_since(),
            run_id,
            dry_run,
            last_block: AtomicU32::new(0),
            query_width: Mutex::new(None),
            layout: RowLayout::new(&settings.columns.names()).ok(),
        }
    }

    fn next_block_id(&self) -> BlockId {
        BlockId::new(
            self.run_id,
            self.last_block.fetch_add(1, Ordering::Relaxed) + 1,
        )
    }

    /// Whether an earlier run wrote this row (only rows near the watermark can be remembered).
    fn was_written(&self, created: OffsetDateTime, id: &str) -> bool {
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
    fn open(&self, query: Query) -> SignInStream<'_> {
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

    /// Stages one block, tallied for the summaries; nothing in a dry run.
    async fn stage(&self, data: Vec<u8>, staged: &mut StagedSlice) -> Result<(), RunError> {
        if self.dry_run || data.is_empty() {
            return Ok(());
        }
        let block = self.next_block_id();
        let (data, file) = (Bytes::from(data), staged.file.clone());
        let staging = self.deps.sink.stage(&file, &block, data.clone());
        super::summaries::tally_while(self.layout.clone(), data, staged, staging).await?;
        staged.blocks.push(block);
        Ok(())
    }

    /// Reads `slice` and stages its new rows; nothing is committed. When `stop` is cancelled, or
    /// Graph fails, the read ends with the part it read completely (see the module docs).
    pub async fn read(
        &self,
        slice: Slice,
        stop: &CancellationToken,
    ) -> Result<StagedSlice, RunError> {
        let settings = self.settings;
        let overlap = settings.overlap;
        let file = daily_file(slice.start.date());
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
        let mut edge = ReadEdge::default();
        let mut staged = StagedSlice {
            slice,
            file: file.clone(),
            span: slice.span(),
            blocks: Vec::new(),
            rows: 0,
            pending_ids: BTreeMap::new(),
            duplicates: 0,
            completeness_checks: 0,
            failure: None,
            tally: self.layout.as_ref().map(|_| DayTally::default()),
            committed: None,
        };
        let mut buffer = Vec::with_capacity(if self.dry_run {
            0
        } else {
            BLOCK_TARGET + 64 * 1024
        });
        let incomplete = |e: CursorError| RunError::Incomplete {
            from: rfc3339(slice.start),
            to: rfc3339(slice.end),
            source: e,
        };
        let mut stopped = false;
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    stopped = true;
                    break;
                }
                next = stream.next(observer) => next,
            };
            let signin = match next {
                Ok(Some(signin)) => signin,
                Ok(None) => {
                    let checks_before = cursor.rechecks();
                    let query = match cursor.ended(stream.pages()) {
                        Ok(Some(query)) => query,
                        Ok(None) => break,
                        Err(e) => {
                            staged.failure = Some(incomplete(e));
                            break;
                        }
                    };
                    if cursor.rechecks() > checks_before {
                        staged.completeness_checks += 1;
                        debug!(file = %file, below = %rfc3339(query.end), "paging took several pages: checking the slice is complete");
                    }
                    stream = self.open(query);
                    continue;
                }
                Err(GraphError::Slow { page, last }) => {
                    let query = match cursor.slow() {
                        Ok(Some(query)) => query,
                        Ok(None) => break,
                        Err(e) => {
                            staged.failure = Some(incomplete(e));
                            break;
                        }
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
                Err(e) => {
                    staged.failure = Some(RunError::Graph(e));
                    break;
                }
            };
            cursor.saw(signin.created);
            // Half-open slices: the row at the end instant belongs to the next slice.
            if signin.created < slice.start || signin.created >= slice.end {
                continue;
            }
            let in_tail = edge.saw(signin.created, buffer.len());
            if !self.filter.matches(signin) {
                continue;
            }
            if self.was_written(signin.created, &signin.id)
                || !seen.take(&signin.id, signin.created)
            {
                staged.duplicates += 1;
                continue;
            }
            staged.rows += 1;
            if in_tail {
                edge.tail_rows += 1;
            }
            if signin.created >= slice.end - overlap {
                staged
                    .pending_ids
                    .insert(signin.id.clone(), Instant(signin.created));
            }
            if self.dry_run {
                continue;
            }
            if in_tail {
                encoder.encode_signin(&settings.columns, signin, &mut buffer);
            } else {
                // Newer than the tail (rows out of order): it goes before the tail, which a stop
                // may still drop.
                let mut row = Vec::new();
                encoder.encode_signin(&settings.columns, signin, &mut row);
                buffer.splice(edge.tail_start..edge.tail_start, row.iter().copied());
                edge.tail_start += row.len();
            }
            if buffer.len() >= BLOCK_TARGET && edge.tail_start > 0 {
                // Stage what lies above the tail; the tail stays until an older row arrives.
                let mut rest = Vec::with_capacity(BLOCK_TARGET + 64 * 1024);
                rest.extend_from_slice(&buffer[edge.tail_start..]);
                buffer.truncate(edge.tail_start);
                let full = std::mem::replace(&mut buffer, rest);
                edge.tail_start = 0;
                self.stage(full, &mut staged).await?;
            }
        }
        drop(stream);
        if stopped || staged.failure.is_some() {
            let (from, hold_back_tail) = edge.complete_from(cursor.complete_from());
            staged.span = Span::new(from.max(slice.start), slice.end);
            if hold_back_tail {
                buffer.truncate(edge.tail_start);
                staged.rows -= edge.tail_rows;
                if let Some(oldest) = edge.oldest {
                    staged.pending_ids.retain(|_, created| created.0 > oldest);
                }
            }
            debug!(
                file = %file,
                from = %rfc3339(staged.span.from),
                rows = staged.rows,
                "read stopped; keeping the part read completely"
            );
        }
        self.stage(buffer, &mut staged).await?;
        debug!(file = %file, blocks = staged.blocks.len(), "blocks staged");
        Ok(staged)
    }
}

/// Commits a staged slice: record `pending`, put the blocks into the daily file, settle.
/// Commits happen one at a time.
pub(super) async fn commit(
    sink: &dyn Sink,
    header: Bytes,
    overlap: Duration,
    state: &mut State,
    summary: &mut RunSummary,
    staged: &mut StagedSlice,
) -> Result<(), RunError> {
    let StagedSlice {
        slice,
        file,
        span,
        rows,
        duplicates,
        completeness_checks,
        ..
    } = staged;
    summary.duplicates_skipped += *duplicates;
    summary.completeness_checks += *completeness_checks;
    if *rows == 0 {
        // Nothing to write: the span is exported as it is (the next state write records it).
        state.cover(*span, overlap);
        return Ok(());
    }
    let blocks = std::mem::take(&mut staged.blocks);
    // The phase events below are where crash tests stop the process (tests/blob_pipeline.rs).
    let ticket = sink.prepare(file, header, &blocks).await?;
    state.pending = Some(Pending {
        ticket: ticket.clone(),
        span: *span,
        ids: std::mem::take(&mut staged.pending_ids),
        rows: *rows,
    });
    sink.write_state(state_bytes(state)?).await?;
    debug!(file = %file, "pending commit recorded");
    sink.ensure_locked().await?;
    staged.committed = Some(sink.commit(&ticket).await?);
    debug!(file = %file, "commit landed");
    state.settle(true, overlap);
    sink.write_state(state_bytes(state)?).await?;
    summary.rows += *rows;
    *summary.files.entry(file.clone()).or_default() += *rows;
    info!(
        file = %file,
        rows = *rows,
        from = %rfc3339(span.from),
        to = %rfc3339(span.to),
        complete = *span == slice.span(),
        "slice committed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(second: i64) -> OffsetDateTime {
        datetime!(2026-11-30 10:00 UTC) + time::Duration::seconds(second)
    }

    #[test]
    fn the_tail_is_the_rows_at_the_oldest_instant() {
        let mut edge = ReadEdge::default();
        // Rows newest first: 50, 50, 40, 40, 30 (buffer offsets grow by 10 a row).
        assert!(edge.saw(at(50), 0));
        assert!(edge.saw(at(50), 10));
        assert!(edge.saw(at(40), 20));
        assert_eq!((edge.tail_start, edge.above), (20, Some(at(50))));
        assert!(edge.saw(at(40), 30));
        assert!(edge.saw(at(30), 40));
        assert_eq!(
            (edge.oldest, edge.above, edge.tail_start),
            (Some(at(30)), Some(at(40)), 40)
        );
        // A boundary row read again (newer than the oldest) is not in the tail.
        assert!(!edge.saw(at(35), 50));
        assert_eq!(edge.above, Some(at(35)));
    }

    #[test]
    fn a_stop_commits_what_is_complete() {
        let end = at(100);
        let mut edge = ReadEdge::default();
        // Nothing read: nothing complete.
        assert_eq!(edge.complete_from(end), (end, false));
        edge.saw(at(50), 0);
        // Only rows at one instant, and no query ended: nothing is complete, the tail waits.
        assert_eq!(edge.complete_from(end), (end, true));
        edge.saw(at(40), 10);
        // Mid-query: everything above the oldest row read, the tail held back.
        assert_eq!(edge.complete_from(end), (at(50), true));
        // A query that ended at or below the oldest row: all of it, tail included.
        assert_eq!(edge.complete_from(at(40)), (at(40), false));
        assert_eq!(edge.complete_from(at(10)), (at(10), false));
    }
}
