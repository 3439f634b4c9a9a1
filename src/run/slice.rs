//! Exporting one slice: read it from Graph newest first, keep what the filter matches and was not
//! written before, encode rows into blocks of at most [`BLOCK_TARGET`] staged as they fill, then
//! the commit protocol of [`crate::state`]: record `pending`, commit, settle.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::cursor::{CursorError, SliceCursor};
use super::{rfc3339, state_bytes, Run, RunError, Slice, BLOCK_TARGET};
use crate::graph::client::GraphError;
use crate::graph::stream::PageObserver;
use crate::sink::daily_file;
use crate::state::{Instant, Pending, State};

impl Run<'_> {
    pub(super) async fn export_slice(
        &mut self,
        state: &mut State,
        slice: Slice,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), RunError> {
        let overlap = self.settings.overlap;
        let file = daily_file(slice.start.date());
        let sink = &self.deps.sink;
        // Which window to read next: the whole slice, then re-checks and narrower windows as
        // Graph's paging and speed require (see `cursor`).
        let mut cursor = SliceCursor::new(slice, self.query_width.unwrap_or(self.settings.slice));
        let mut stream = self.open_stream(cursor.query().start, cursor.query().end);
        let mut slice_ids: HashSet<String> = HashSet::new();
        let mut pending_ids = BTreeMap::new();
        let mut buffer = Vec::with_capacity(BLOCK_TARGET + 64 * 1024);
        let mut blocks = Vec::new();
        let mut rows = 0u64;
        // The deadline is hard: it also ends a wait for a slow page and the retry sleeps inside
        // the pager (dropping the read cancels them). The slice is then abandoned: its staged
        // blocks were never committed and stay invisible.
        let deadline_passed = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline_passed);
        let incomplete = |e: CursorError| {
            RunError::Graph(format!(
                "{e} for {} to {}; nothing of this slice was committed, the next run reads it again",
                rfc3339(slice.start),
                rfc3339(slice.end)
            ))
        };
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Err(RunError::Cancelled),
                _ = &mut deadline_passed => {
                    self.abandoned_read = Some(cursor.read_share(slice));
                    return Err(RunError::DeadlineReached);
                }
                next = stream.next(self.deps.observer.as_deref().map(|o| o as &dyn PageObserver)) => next,
            };
            let signin = match next {
                Ok(Some(signin)) => signin,
                Ok(None) => {
                    let checks_before = cursor.rechecks();
                    let Some(query) = cursor.ended(stream.pages()).map_err(incomplete)? else {
                        break;
                    };
                    if cursor.rechecks() > checks_before {
                        self.summary.completeness_checks += 1;
                        debug!(file = %file, below = %rfc3339(query.end), "paging took several pages: checking the slice is complete");
                    }
                    stream = self.open_stream(query.start, query.end);
                    continue;
                }
                Err(GraphError::Slow { page, last }) => {
                    let Some(query) = cursor.slow().map_err(incomplete)? else {
                        break;
                    };
                    self.query_width = Some(cursor.width());
                    warn!(
                        file = %file,
                        page,
                        last = %last,
                        width_seconds = cursor.width().as_secs(),
                        "Graph is slow for this window; reading it in shorter windows"
                    );
                    stream = self.open_stream(query.start, query.end);
                    continue;
                }
                Err(e) => return Err(RunError::Graph(e.to_string())),
            };
            cursor.saw(signin.created);
            // Half-open slices: the row at the end instant belongs to the next slice.
            if signin.created < slice.start
                || signin.created >= slice.end
                || !self.filter.matches(signin)
            {
                continue;
            }
            if state.is_written(&signin.id) || !slice_ids.insert(signin.id.clone()) {
                self.summary.duplicates_skipped += 1;
                continue;
            }
            self.encoder
                .encode_signin(&self.settings.columns, signin, &mut buffer);
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
        sink.write_state(state_bytes(state)?).await?;
        debug!(file = %file, "pending commit recorded");
        sink.ensure_locked().await?;
        sink.commit(&ticket).await?;
        debug!(file = %file, "commit landed");
        state.settle(true, overlap);
        sink.write_state(state_bytes(state)?).await?;
        self.summary.rows += rows;
        *self.summary.files.entry(file.clone()).or_default() += rows;
        info!(file = %file, rows, slice_start = %rfc3339(slice.start), slice_end = %rfc3339(slice.end), "slice committed");
        Ok(())
    }
}
