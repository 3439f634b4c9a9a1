//! Exporting one slice: read it from Graph newest first, keep what the filter matches and was not
//! written before, encode rows into blocks of at most [`BLOCK_TARGET`] staged as they fill, then
//! the commit protocol of [`crate::state`]: record `pending`, commit, settle.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use time::OffsetDateTime;
use tracing::{debug, info};

use super::{rfc3339, Run, RunError, Slice, BLOCK_TARGET};
use crate::graph::stream::PageObserver;
use crate::sink::daily_file;
use crate::state::{Instant, Pending, State};

/// Completeness re-checks per slice before the slice fails (each one found older rows).
const MAX_RECHECKS: u32 = 5;

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
        let mut stream = self.open_stream(slice.start, slice.end);
        // The oldest sign-in Graph returned for this slice, and how many completeness re-checks
        // were asked (see below).
        let mut oldest: Option<OffsetDateTime> = None;
        let mut rechecks = 0u32;
        let mut checked_below: Option<OffsetDateTime> = None;
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
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Err(RunError::Cancelled),
                _ = &mut deadline_passed => return Err(RunError::DeadlineReached),
                next = stream.next(self.deps.observer.as_deref().map(|o| o as &dyn PageObserver)) => next,
            };
            let Some(signin) = next.map_err(|e| RunError::Graph(e.to_string()))? else {
                // Graph has been seen to end paging early: a short page without
                // `@odata.nextLink` mid-window, a different total for the same closed window on
                // another run (public reports; see crates/fake-tenant `end_paging_early_next`).
                // Sign-ins come newest first, so what may be missing is older than the oldest row
                // read: ask for `[slice start, oldest]` once more. Nothing older in the answer =
                // complete (one extra request per slice with rows); else keep reading.
                let Some(at) = oldest.filter(|at| *at > slice.start) else {
                    break;
                };
                if checked_below == Some(at) {
                    break; // the re-check found nothing older: the slice is complete
                }
                if rechecks == MAX_RECHECKS {
                    return Err(RunError::Graph(format!(
                        "Graph's paging ended early {MAX_RECHECKS} times in a row for {} to {}; nothing of this slice was committed, the next run reads it again",
                        rfc3339(slice.start),
                        rfc3339(slice.end)
                    )));
                }
                rechecks += 1;
                self.summary.completeness_checks += 1;
                debug!(file = %file, recheck = rechecks, below = %rfc3339(at), "checking the slice is complete");
                stream = self.open_stream(slice.start, at);
                checked_below = Some(at);
                continue;
            };
            if signin.created >= slice.start && signin.created < slice.end {
                oldest = Some(oldest.map_or(signin.created, |o| o.min(signin.created)));
            }
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
}
