//! Reading a chain of slices and committing each slice, in two halves that run at different
//! times:
//!
//! * [`SliceReader::read`] reads a [`Chain`] — adjacent slices, one daily file each — newest
//!   first as one sequence of queries ([`ChainCursor`]), keeps what the filter matches and was
//!   not written before, routes rows to their slice, encodes them into blocks of at most
//!   [`BLOCK_TARGET`] and stages them as they fill. Once a row of an older slice arrives, the
//!   slice above is complete and is handed to the committer while the chain reads on. Several
//!   chains are read at once (see [`super::chains_in_flight`]); staged blocks stay invisible
//!   until committed. When the run tells it to stop (its deadline) or Graph fails, the read ends
//!   with what it has: the part of its current slice it read completely.
//! * [`commit`] runs one slice at a time: the commit protocol of [`crate::state`] (record
//!   `pending`, commit, settle), adding the span the read covered to what is exported.
//!
//! What a stopped read covers: Graph returns a window newest first, so once a row created at `t`
//! arrived, every row newer than `t` did too — but rows *at* `t` may continue on the next page.
//! A stopped read therefore commits `[the oldest instant above t that it read, slice end)` and
//! holds back the rows at `t` (the *tail*), which the next run reads with the rest of the hole.
//! Once a query has ended normally, everything down to its start is complete, tail included
//! ([`ChainCursor::complete_from`]). Nothing is lost at the boundary and nothing written twice.
//!
//! Usually one query reads every event type (`signInEventTypes/any(t: t eq … or t eq …)`). A
//! tenant whose Graph refuses that form is read with one query per event type, merged newest
//! first: a row is taken only when it is the newest of every query's next row, so everything
//! above it has been read from all of them, and all of the above holds for the merged sequence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cursor::{ChainCursor, Query};
use super::dedup::SeenIds;
use super::plan::Chain;
use super::{rfc3339, state_bytes, Deps, RunError, Slice, BLOCK_TARGET, PAGE_SLOTS_PER_FORM};
use crate::config::Settings;
use crate::csv::{CsvEncoder, RowCells};
use crate::graph::client::GraphError;
use crate::graph::model::{EventType, SignInRecord};
use crate::graph::query::Window;
use crate::graph::slots::{PageClaim, PageSlots};
use crate::graph::stream::{PageObserver, SignInStream};
use crate::sink::{daily_file, BlockId, Committed, Sink};
use crate::state::{Instant, Pending, RunSummary, Span, State};
use crate::summary::{DayTally, Row, RowLayout};
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
    /// Told once the slice is committed: the next slice of the same daily file in the chain
    /// stages nothing before (a commit discards the file's uncommitted blocks it does not list).
    pub landed: Option<oneshot::Sender<()>>,
    /// What the summaries need of the staged rows (`None`: not tallied; see `summaries`).
    pub tally: Option<DayTally>,
    /// The daily file's versions before and after the commit, once committed.
    pub committed: Option<Committed>,
}

/// Where a read stands among the rows of one slice, for what a stop may commit.
#[derive(Debug, Default)]
struct ReadEdge {
    /// The oldest row returned inside the slice.
    oldest: Option<OffsetDateTime>,
    /// The oldest row returned that is newer than `oldest`: every row from it up is read.
    above: Option<OffsetDateTime>,
    /// Where the rows created at `oldest` (the tail) start in the block buffer, and how many.
    tail_start: usize,
    tail_rows: u64,
    /// How many times a new tail began (an older row came).
    moves: u64,
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
                self.new_tail(created, at);
                true
            }
            None => {
                self.new_tail(created, at);
                true
            }
        }
    }

    fn new_tail(&mut self, created: OffsetDateTime, at: usize) {
        self.oldest = Some(created);
        self.tail_start = at;
        self.tail_rows = 0;
        self.moves += 1;
    }

    /// Where the part read completely starts, and whether the tail must be held back, given the
    /// queries' complete part.
    fn complete_from(&self, queries_complete_from: OffsetDateTime) -> (OffsetDateTime, bool) {
        match self.oldest {
            Some(oldest) if queries_complete_from > oldest => (
                self.above
                    .map_or(queries_complete_from, |a| a.min(queries_complete_from)),
                true,
            ),
            _ => (queries_complete_from, false),
        }
    }
}

/// Bytes of full blocks a slice keeps in memory while it may not stage them yet (the slice
/// above in its daily file, or another read holding the file, may still commit); past this the
/// read waits too.
pub const HELD_BYTES: usize = 4 * BLOCK_TARGET;

/// A block buffer's room: [`BLOCK_TARGET`], and the row that crosses it.
const BLOCK_CAPACITY: usize = BLOCK_TARGET + 64 * 1024;

/// One slice being filled by a chain's read.
struct SliceOutput {
    staged: StagedSlice,
    edge: ReadEdge,
    buffer: Vec<u8>,
    /// Before staging, wait for this: the commit of the slice above in the same daily file, or
    /// the end of another read that holds the file.
    after: Option<oneshot::Receiver<()>>,
    /// Full blocks not staged yet because `after` has not come, oldest first.
    held: Vec<Vec<u8>>,
    /// The cells of the tail's rows, for the tally.
    tail: TailCells,
    /// The cells of a row taken above the tail, for the tally.
    cells: RowCells,
    /// The chain's claim on a page slot, given up while `after` is awaited.
    claim: Arc<PageClaim>,
}

/// The cells of the tail's rows (see [`ReadEdge`]), tallied once the tail moves on: a stop that
/// holds the tail back must not have tallied it. The tally so counts exactly the rows committed,
/// from the cells the encoder wrote, without reading the CSV back.
#[derive(Debug, Default)]
struct TailCells {
    /// [`ReadEdge::moves`] of the tail these rows belong to.
    moves: u64,
    rows: Vec<RowCells>,
    len: usize,
}

impl TailCells {
    /// Room for one more row's cells (allocations are reused).
    fn slot(&mut self) -> &mut RowCells {
        if self.len == self.rows.len() {
            self.rows.push(RowCells::default());
        }
        self.len += 1;
        &mut self.rows[self.len - 1]
    }

    fn tally_into(&mut self, staged: &mut StagedSlice, layout: &RowLayout) {
        for cells in &self.rows[..self.len] {
            tally(staged, layout, cells);
        }
        self.len = 0;
    }
}

/// Adds a row to the slice's tally. A tally that cannot spill leaves the slice untallied: its
/// day's tally is then recomputed from the daily file.
fn tally(staged: &mut StagedSlice, layout: &RowLayout, cells: &RowCells) {
    let Some(tally) = staged.tally.as_mut() else {
        return;
    };
    if let Err(error) = tally.add(layout, Row::new(cells.text(), cells.ends())) {
        warn!(%error, "rows not tallied for the summaries; the daily file is read instead");
        staged.tally = None;
    }
}

impl SliceOutput {
    /// `buffer`: empty; with room for a block, or none yet (a dry run, or the slice below,
    /// whose buffer [`SliceReader::move_on`] gives later).
    fn new(slice: Slice, buffer: Vec<u8>, tallied: bool, claim: Arc<PageClaim>) -> SliceOutput {
        SliceOutput {
            staged: StagedSlice {
                slice,
                file: daily_file(slice.start.date()),
                span: slice.span(),
                blocks: Vec::new(),
                rows: 0,
                pending_ids: BTreeMap::new(),
                duplicates: 0,
                completeness_checks: 0,
                failure: None,
                landed: None,
                tally: tallied.then(DayTally::default),
                committed: None,
            },
            edge: ReadEdge::default(),
            buffer,
            after: None,
            held: Vec::new(),
            tail: TailCells::default(),
            cells: RowCells::default(),
            claim,
        }
    }

    /// Tallies the tail's rows once a new tail began: they are above it now, kept by any stop.
    fn settle_tail(&mut self, layout: Option<&RowLayout>) {
        if self.tail.moves != self.edge.moves {
            if let Some(layout) = layout {
                self.tail.tally_into(&mut self.staged, layout);
            }
            self.tail.moves = self.edge.moves;
        }
    }

    /// The output of `next`, the slice below this one in the chain. Its buffer is given once
    /// this one has staged its last block (see [`SliceReader::move_on`]).
    fn below(&mut self, next: Slice) -> SliceOutput {
        let tallied = self.staged.tally.is_some();
        let mut output = SliceOutput::new(next, Vec::new(), tallied, self.claim.clone());
        if output.staged.file == self.staged.file {
            let (landed, after) = oneshot::channel();
            self.staged.landed = Some(landed);
            output.after = Some(after);
        }
        output
    }

    /// Waits until the slice above in the same file is committed (once). The chain holds no
    /// page slot meanwhile: what it waits for (another read's end) may need one.
    async fn wait_for_the_slice_above(&mut self) {
        if let Some(after) = self.after.take() {
            self.claim.pause();
            // A closed channel: the slice above was not committed (the run is failing), so
            // it discards nothing.
            let _ = after.await;
            self.claim.resume().await;
        }
    }

    /// The first slice of a daily file another read holds waits for that read's end.
    fn gate(&mut self, gates: &mut BTreeMap<String, oneshot::Receiver<()>>) {
        if self.after.is_none() {
            self.after = gates.remove(&self.staged.file);
        }
    }

    /// Whether held blocks should be staged now: the slice may stage, or it holds as much as
    /// it may ([`HELD_BYTES`]) and waits.
    fn should_stage(&mut self) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let held: usize = self.held.iter().map(Vec::len).sum();
        held >= HELD_BYTES || self.may_stage()
    }

    /// Whether the slice may stage now, without waiting.
    fn may_stage(&mut self) -> bool {
        let Some(after) = self.after.as_mut() else {
            return true;
        };
        match after.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => false,
            // Came, or closed (see above).
            _ => {
                self.after = None;
                true
            }
        }
    }
}

/// One query form's reading of a chain: the event types it asks for, its cursor and its
/// current stream.
struct QueryReading<'r> {
    event_types: Vec<EventType>,
    cursor: ChainCursor,
    stream: SignInStream<'r>,
    /// Nothing more of the chain's range comes from this query form.
    done: bool,
    /// The chain's claim on a page slot, which every form's pages are held under.
    claim: Arc<PageClaim>,
}

/// Why a chain's read ended early.
enum Interrupted {
    /// The run's deadline (or another read's failure) told it to stop.
    Stopped,
    /// Graph failed this read.
    Failed(RunError),
}

/// What every read of one run shares.
pub(super) struct SliceReader<'r> {
    settings: &'r Settings,
    deps: &'r Deps,
    filter: &'r SignInFilter,
    /// The query forms: every event type in one query, or one query per event type.
    forms: Vec<Vec<EventType>>,
    /// The state as the run found it: the ids earlier runs wrote near the watermark. Slices of
    /// one run never share a row (they are disjoint), so commits during the run add nothing a
    /// later read needs.
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
    /// The page slots the chains share: [`PAGE_SLOTS_PER_FORM`] per query form.
    slots: PageSlots,
}

impl<'r> SliceReader<'r> {
    pub fn new(
        settings: &'r Settings,
        deps: &'r Deps,
        filter: &'r SignInFilter,
        forms: Vec<Vec<EventType>>,
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
            slots: PageSlots::new(PAGE_SLOTS_PER_FORM * forms.len()),
            forms,
        }
    }

    /// An empty buffer for a block; none in a dry run, which encodes nothing.
    fn block_buffer(&self) -> Vec<u8> {
        if self.dry_run {
            Vec::new()
        } else {
            Vec::with_capacity(BLOCK_CAPACITY)
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

    fn observer(&self) -> Option<&dyn PageObserver> {
        self.deps
            .observer
            .as_deref()
            .map(|o| o as &dyn PageObserver)
    }

    /// The sign-ins of `event_types` created in `query` (inclusive: a slice drops rows at its
    /// end, which belong to the slice above), newest first.
    fn open(
        &self,
        query: Query,
        event_types: &[EventType],
        claim: &Arc<PageClaim>,
    ) -> SignInStream<'r> {
        let window = Window {
            start: query.start,
            end: query.end,
        };
        let deps: &'r Deps = self.deps;
        let pager = deps
            .graph
            .pager_for(window, event_types, self.filter.server_clause())
            .claimed_by(claim.clone());
        SignInStream::new(&deps.graph, pager)
    }

    /// Stages one block, tallied for the summaries; nothing in a dry run.
    async fn stage(&self, data: Vec<u8>, staged: &mut StagedSlice) -> Result<(), RunError> {
        if self.dry_run || data.is_empty() {
            return Ok(());
        }
        let block = self.next_block_id();
        self.deps
            .sink
            .stage(&staged.file, &block, Bytes::from(data))
            .await?;
        staged.blocks.push(block);
        Ok(())
    }

    /// The next row of `reading` that belongs to the chain (whose bottom is `lo`), handling the
    /// ends of queries (continuations, narrower windows); `None` when the query form has no more.
    async fn head(
        &self,
        reading: &mut QueryReading<'r>,
        lo: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, RunError> {
        loop {
            if reading.done {
                return Ok(None);
            }
            let before = reading.cursor.query();
            let next = match reading.stream.peek(self.observer()).await {
                Ok(Some(row)) if row.created < lo => {
                    // A row of the chains below: everything of this chain's range is read.
                    reading.done = true;
                    continue;
                }
                Ok(Some(row)) => return Ok(Some(row.created)),
                Ok(None) => {
                    let next = reading.cursor.ended(reading.stream.pages());
                    if let Ok(Some(query)) = &next {
                        debug!(below = %rfc3339(query.end), "the query ended: reading on below its oldest row");
                    }
                    next
                }
                Err(GraphError::Slow { page, last }) => {
                    let next = reading.cursor.slow();
                    if next.is_ok() {
                        self.narrow(reading.cursor.width());
                        warn!(
                            page,
                            last = %last,
                            width_seconds = reading.cursor.width().as_secs(),
                            "Graph is slow for this window; reading it in shorter windows"
                        );
                    }
                    next
                }
                Err(e) => return Err(RunError::Graph(e)),
            };
            match next {
                Ok(Some(query)) => {
                    reading.stream = self.open(query, &reading.event_types, &reading.claim)
                }
                Ok(None) => reading.done = true,
                Err(source) => {
                    return Err(RunError::Incomplete {
                        from: rfc3339(before.start),
                        to: rfc3339(before.end),
                        source,
                    })
                }
            }
        }
    }

    /// The next row of the chain, newest first over every query form: the index of the form
    /// that has it, or `None` when the chain is read.
    async fn next_row(
        &self,
        readings: &mut [QueryReading<'r>],
        lo: OffsetDateTime,
    ) -> Result<Option<usize>, RunError> {
        let mut newest: Option<(usize, OffsetDateTime)> = None;
        for (i, reading) in readings.iter_mut().enumerate() {
            if let Some(created) = self.head(reading, lo).await? {
                if newest.is_none_or(|(_, n)| created > n) {
                    newest = Some((i, created));
                }
            }
        }
        Ok(newest.map(|(i, _)| i))
    }

    /// Reads `chain` and stages its new rows, sending each slice to `done` once it is read
    /// (completely, or — when `stop` is cancelled or Graph fails — the part read completely).
    /// Nothing is committed here. `Ok(true)` when the whole chain was read. `gates`: per daily
    /// file another read holds, when that read has ended; the chain stages nothing in the file
    /// before.
    pub async fn read(
        &self,
        chain: &Chain,
        mut gates: BTreeMap<String, oneshot::Receiver<()>>,
        stop: &CancellationToken,
        done: &UnboundedSender<StagedSlice>,
    ) -> Result<bool, RunError> {
        let settings = self.settings;
        let range = chain.range();
        // One query for the whole chain, unless slow pages narrowed the windows.
        let width = self
            .width()
            .unwrap_or_else(|| Duration::try_from(range.to - chain.floor).unwrap_or_default());
        let claim = self.slots.claim();
        let mut readings: Vec<QueryReading<'r>> = self
            .forms
            .iter()
            .map(|types| {
                let cursor = ChainCursor::new(range, chain.floor, width);
                QueryReading {
                    stream: self.open(cursor.query(), types, &claim),
                    event_types: types.clone(),
                    cursor,
                    done: false,
                    claim: claim.clone(),
                }
            })
            .collect();
        let mut encoder = CsvEncoder::new(&settings.columns, settings.csv_safe);
        let mut seen = SeenIds::default();
        let mut slices = chain.slices.iter().copied();
        let Some(first) = slices.next() else {
            return Ok(true);
        };
        let mut output = SliceOutput::new(first, self.block_buffer(), self.layout.is_some(), claim);
        output.gate(&mut gates);
        let interrupted = loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => break Some(Interrupted::Stopped),
                next = self.next_row(&mut readings, range.from) => next,
            };
            let form = match next {
                Ok(Some(form)) => form,
                Ok(None) => break None,
                Err(e) => break Some(Interrupted::Failed(e)),
            };
            let reading = &mut readings[form];
            let Some(signin) = reading.stream.current() else {
                continue;
            };
            reading.cursor.saw(signin.created);
            // Rows arrive newest first: one older than the slice means the slice is read.
            while signin.created < output.staged.slice.start {
                let Some(older) = slices.next() else {
                    break;
                };
                self.move_on(&mut output, older, &mut gates, done).await?;
            }
            self.take(signin, &mut output, &mut seen, &mut encoder);
            let reading = &mut readings[form];
            reading.stream.advance();
            if reading.stream.page_used_up() && output.should_stage() {
                // Between pages: the page goes back first, so the chain uploads holding no
                // page (and, reading one query, no page slot).
                reading.stream.give_back_page();
                self.stage_held(&mut output).await?;
            }
        };
        let checks: u64 = readings.iter().map(|r| r.cursor.rechecks()).sum();
        output.staged.completeness_checks += checks;
        // How far queries that ended normally completed the chain: what every form completed.
        let queries_complete_from = readings
            .iter()
            .map(|r| {
                if r.done {
                    range.from
                } else {
                    r.cursor.complete_from()
                }
            })
            .max()
            .unwrap_or(range.to);
        drop(readings);
        match interrupted {
            None => {
                // Older slices the chain has no rows for are read too.
                for older in slices {
                    self.move_on(&mut output, older, &mut gates, done).await?;
                }
                self.finish_last(output, None, done).await?;
                Ok(true)
            }
            Some(why) => {
                let failure = match why {
                    Interrupted::Stopped => None,
                    Interrupted::Failed(e) => Some(e),
                };
                self.finish_last(output, Some((queries_complete_from, failure)), done)
                    .await?;
                Ok(false)
            }
        }
    }

    /// Moves `output` on to `older`, the chain's next slice, and hands the slice read over. The
    /// new slice's buffer is taken after the slice read staged its last block, so a chain
    /// holds one block buffer, not two, as it crosses a day.
    async fn move_on(
        &self,
        output: &mut SliceOutput,
        older: Slice,
        gates: &mut BTreeMap<String, oneshot::Receiver<()>>,
        done: &UnboundedSender<StagedSlice>,
    ) -> Result<(), RunError> {
        let mut below = output.below(older);
        below.gate(gates);
        let read = std::mem::replace(output, below);
        self.finish(read, None, done).await?;
        output.buffer = self.block_buffer();
        Ok(())
    }

    /// Filters, deduplicates and encodes one row into its slice; a full block is held for
    /// [`Self::stage_held`], which the read calls once the page is used up.
    fn take(
        &self,
        signin: &SignInRecord<'_>,
        output: &mut SliceOutput,
        seen: &mut SeenIds,
        encoder: &mut CsvEncoder,
    ) {
        let settings = self.settings;
        let slice = output.staged.slice;
        // Half-open slices: the row at the end instant belongs to the slice above.
        if signin.created >= slice.end {
            return;
        }
        let in_tail = output.edge.saw(signin.created, output.buffer.len());
        output.settle_tail(self.layout.as_ref());
        if !self.filter.matches(signin) {
            return;
        }
        if self.was_written(signin.created, signin.id()) || !seen.take(signin.id(), signin.created)
        {
            output.staged.duplicates += 1;
            return;
        }
        output.staged.rows += 1;
        if in_tail {
            output.edge.tail_rows += 1;
        }
        if signin.created >= slice.end - settings.overlap {
            output
                .staged
                .pending_ids
                .insert(signin.id().to_string(), Instant(signin.created));
        }
        if self.dry_run {
            return;
        }
        let layout = self
            .layout
            .as_ref()
            .filter(|_| output.staged.tally.is_some());
        if in_tail {
            let cells = layout.map(|_| output.tail.slot());
            encoder.encode_signin_with_cells(&settings.columns, signin, &mut output.buffer, cells);
        } else {
            // Newer than the tail (rows out of order): it goes before the tail, which a stop
            // may still drop.
            let mut row = Vec::new();
            let cells = layout.map(|_| &mut output.cells);
            encoder.encode_signin_with_cells(&settings.columns, signin, &mut row, cells);
            if let Some(layout) = layout {
                tally(&mut output.staged, layout, &output.cells);
            }
            let at = output.edge.tail_start;
            output.buffer.splice(at..at, row.iter().copied());
            output.edge.tail_start += row.len();
        }
        if output.buffer.len() >= BLOCK_TARGET && output.edge.tail_start > 0 {
            // Hold what lies above the tail for staging; the tail stays until an older row
            // arrives. The next buffer holds at most the rest of the page until the block is
            // staged and freed.
            let tail = output.buffer.split_off(output.edge.tail_start);
            output.edge.tail_start = 0;
            output.held.push(std::mem::take(&mut output.buffer));
            output.buffer = self.block_buffer();
            output.buffer.extend_from_slice(&tail);
        }
    }

    /// Waits until the slice may stage, then stages the blocks it held, in order.
    async fn stage_held(&self, output: &mut SliceOutput) -> Result<(), RunError> {
        output.wait_for_the_slice_above().await;
        for block in std::mem::take(&mut output.held) {
            self.stage(block, &mut output.staged).await?;
        }
        Ok(())
    }

    /// [`Self::finish`] for a chain's last slice, waiting until it is committed: a read ends
    /// once its daily files are free for other reads (a commit discards a file's uncommitted
    /// blocks it does not list). Slices commit in the order they are handed over, so the
    /// chain's earlier slices are committed too.
    async fn finish_last(
        &self,
        mut output: SliceOutput,
        stopped: Option<(OffsetDateTime, Option<RunError>)>,
        done: &UnboundedSender<StagedSlice>,
    ) -> Result<(), RunError> {
        let (landed, committed) = oneshot::channel();
        output.staged.landed = Some(landed);
        self.finish(output, stopped, done).await?;
        // A closed channel: the run is ending without committing it; nothing waits on it.
        let _ = committed.await;
        Ok(())
    }

    /// Stages the rest of a slice and hands it over. `stopped`: the read stopped inside it, with
    /// how far the queries had completed it and why (a failure, or none for the deadline); the
    /// slice then keeps the part read completely.
    async fn finish(
        &self,
        mut output: SliceOutput,
        stopped: Option<(OffsetDateTime, Option<RunError>)>,
        done: &UnboundedSender<StagedSlice>,
    ) -> Result<(), RunError> {
        let slice = output.staged.slice;
        let layout = self.layout.as_ref();
        output.settle_tail(layout);
        if let Some((queries_complete_from, failure)) = stopped {
            let (from, hold_back_tail) = output.edge.complete_from(queries_complete_from);
            output.staged.span = Span::new(from.clamp(slice.start, slice.end), slice.end);
            output.staged.failure = failure;
            if hold_back_tail {
                output.buffer.truncate(output.edge.tail_start);
                output.tail.len = 0;
                output.staged.rows -= output.edge.tail_rows;
                if let Some(oldest) = output.edge.oldest {
                    output
                        .staged
                        .pending_ids
                        .retain(|_, created| created.0 > oldest);
                }
            }
            debug!(
                file = %output.staged.file,
                from = %rfc3339(output.staged.span.from),
                rows = output.staged.rows,
                "read stopped; keeping the part read completely"
            );
        }
        if let Some(layout) = layout {
            output.tail.tally_into(&mut output.staged, layout);
        }
        let last = std::mem::take(&mut output.buffer);
        output.held.push(last);
        self.stage_held(&mut output).await?;
        let staged = output.staged;
        debug!(file = %staged.file, blocks = staged.blocks.len(), "blocks staged");
        // The committer outlives every read; a closed channel only means the run is ending.
        let _ = done.send(staged);
        Ok(())
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
