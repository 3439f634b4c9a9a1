//! Where the reading of one chain stands, and which window to ask Graph for next (pure,
//! table-tested).
//!
//! A chain is a range `[lo, hi)` of one or more adjacent slices, read newest first in one
//! sequence of queries (`run::slice`). Graph returns sign-ins newest first, so after any answer
//! everything newer than the oldest row read is known: the chain is read from `hi` down to a
//! *frontier*. A query normally covers the whole rest, `[floor, frontier]`, where `floor` is the
//! bottom of the chains below this one: a query that runs on past `lo` returns a row of the next
//! chain's range, which proves this range complete without a request of its own (the reader stops
//! there). Two behaviours of the real service move the frontier less:
//!
//! * **paging that ends early** (a short page without `@odata.nextLink` mid-paging, reported for
//!   this API): a query that followed `@odata.nextLink` moves the frontier only to the oldest row
//!   it returned, and the rest is asked again — a continuation that starts at the oldest row
//!   read, and costs one request when nothing was missing (for the chain at the bottom);
//! * **slow pages** (pages reported to take minutes on selective filters; Microsoft's remedy is a
//!   shorter time range): a query given up as slow moves the frontier to the oldest row read and
//!   halves the window width for the next queries (kept for the rest of the run).
//!
//! Windows are inclusive at both ends (Graph's `ge`/`le`): rows at a boundary come twice and the
//! reader deduplicates them by id.
//!
//! What is *complete* is what the deadline may commit: everything from the start of the last
//! query that ended normally (rows at that instant included) up to `hi`. Inside a query that has
//! not ended (or ended early and awaits its continuation), the reader knows more (everything
//! above its oldest row), which `run::slice` adds.

use std::time::Duration;

use time::OffsetDateTime;

use crate::state::Span;

/// The narrowest window a slow query is split down to.
pub const MIN_WIDTH: Duration = Duration::from_secs(60);
/// Re-checks in a row that each found older rows (paging ended early again and again).
pub const MAX_RECHECKS_IN_A_ROW: u32 = 5;

/// A window to query, `[start, end]` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// Why the chain cannot be read completely in this run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("Graph's paging ended early {MAX_RECHECKS_IN_A_ROW} times in a row")]
    EarlyEnds,
    #[error("Graph stayed too slow even for {} minute windows", MIN_WIDTH.as_secs() / 60)]
    TooSlow,
}

/// The reading of one chain.
#[derive(Debug, Clone)]
pub struct ChainCursor {
    /// The chain's own bottom: once everything at or above it is read, the chain is done.
    lo: OffsetDateTime,
    /// How far down queries may reach (the bottom of the chains below).
    floor: OffsetDateTime,
    width: Duration,
    query: Query,
    /// The oldest row the current query returned.
    oldest: Option<OffsetDateTime>,
    /// Every row at or above this instant (and below the chain's end) has been returned.
    complete_from: OffsetDateTime,
    rechecks: u64,
    rechecks_in_a_row: u32,
}

impl ChainCursor {
    /// Starts at the end of `range` with queries reaching down to `floor` (at most `range.from`)
    /// and at most `width` wide.
    pub fn new(range: Span, floor: OffsetDateTime, width: Duration) -> ChainCursor {
        let width = width.max(MIN_WIDTH);
        let floor = floor.min(range.from);
        ChainCursor {
            lo: range.from,
            floor,
            width,
            query: window_below(floor, range.to, width),
            oldest: None,
            complete_from: range.to,
            rechecks: 0,
            rechecks_in_a_row: 0,
        }
    }

    /// The window to read now.
    pub fn query(&self) -> Query {
        self.query
    }

    /// The width of the queries (narrowed by slow pages).
    pub fn width(&self) -> Duration {
        self.width
    }

    /// Every row at or above this instant has been returned: the chain's end until a query
    /// ends normally, at most its start once the chain is read.
    pub fn complete_from(&self) -> OffsetDateTime {
        self.complete_from
    }

    /// Completeness re-checks asked so far.
    pub fn rechecks(&self) -> u64 {
        self.rechecks
    }

    /// A row of the current query was read.
    pub fn saw(&mut self, created: OffsetDateTime) {
        if (self.query.start..=self.query.end).contains(&created) {
            self.oldest = Some(self.oldest.map_or(created, |o| o.min(created)));
        }
    }

    /// The current query ended after `pages` pages: the next query, or `None` when the chain is
    /// read completely.
    pub fn ended(&mut self, pages: u64) -> Result<Option<Query>, CursorError> {
        let Query { start, end } = self.query;
        let cut_short = self
            .oldest
            .filter(|oldest| pages > 1 && *oldest > start && *oldest < end);
        match cut_short {
            Some(oldest) => {
                if self.rechecks_in_a_row == MAX_RECHECKS_IN_A_ROW {
                    return Err(CursorError::EarlyEnds);
                }
                self.rechecks += 1;
                self.rechecks_in_a_row += 1;
                // Rows at `oldest` may go on: ask from there, even when it is `lo`.
                Ok(self.next_below(oldest, false))
            }
            None => {
                self.rechecks_in_a_row = 0;
                self.complete_from = self.complete_from.min(start);
                Ok(self.next_below(start, true))
            }
        }
    }

    /// The current query was given up as slow: halve the width and go on below what it read.
    pub fn slow(&mut self) -> Result<Option<Query>, CursorError> {
        let Query { start, end } = self.query;
        let span = Duration::try_from(end - start).unwrap_or_default();
        if span <= MIN_WIDTH {
            return Err(CursorError::TooSlow);
        }
        self.width = (span / 2).max(MIN_WIDTH);
        let frontier = self.oldest.unwrap_or(end);
        // A slow query with rows has read everything above its oldest row (rows at it may go
        // on).
        Ok(self.next_below(frontier, false))
    }

    /// The next window below `frontier`; `None` when everything from it up is read and it is
    /// at or below the chain's bottom (`complete`: rows at `frontier` are all read too).
    fn next_below(&mut self, frontier: OffsetDateTime, complete: bool) -> Option<Query> {
        self.oldest = None;
        let done = if complete {
            frontier <= self.lo
        } else {
            frontier < self.lo
        };
        if done {
            return None;
        }
        self.query = window_below(self.floor, frontier, self.width);
        Some(self.query)
    }
}

/// `[max(floor, end − width), end]`.
fn window_below(floor: OffsetDateTime, end: OffsetDateTime, width: Duration) -> Query {
    let start = end
        .checked_sub(time::Duration::try_from(width).unwrap_or(time::Duration::MAX))
        .map_or(floor, |s| s.max(floor));
    Query { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const HOUR: Duration = Duration::from_secs(3600);

    fn slice() -> Span {
        Span::new(
            datetime!(2026-11-30 00:00 UTC),
            datetime!(2026-11-30 06:00 UTC),
        )
    }

    /// A chain reading `slice()` alone: its queries reach no lower than its own bottom.
    fn cursor(width: Duration) -> ChainCursor {
        ChainCursor::new(slice(), slice().from, width)
    }

    fn q(start: OffsetDateTime, end: OffsetDateTime) -> Query {
        Query { start, end }
    }

    #[test]
    fn one_page_reads_the_slice_with_one_query() {
        let mut cursor = cursor(6 * HOUR);
        assert_eq!(cursor.query(), q(slice().from, slice().to));
        cursor.saw(datetime!(2026-11-30 05:00 UTC));
        cursor.saw(datetime!(2026-11-30 00:10 UTC));
        assert_eq!(
            cursor.complete_from(),
            slice().to,
            "nothing complete mid-query"
        );
        assert_eq!(cursor.ended(1), Ok(None));
        assert_eq!(cursor.rechecks(), 0);
        assert_eq!(cursor.complete_from(), slice().from);
    }

    #[test]
    fn several_pages_cost_one_recheck_below_the_oldest_row() {
        let mut cursor = cursor(6 * HOUR);
        cursor.saw(datetime!(2026-11-30 05:00 UTC));
        cursor.saw(datetime!(2026-11-30 02:00 UTC));
        let recheck = cursor.ended(3).unwrap().unwrap();
        assert_eq!(recheck, q(slice().from, datetime!(2026-11-30 02:00 UTC)));
        assert_eq!(
            cursor.complete_from(),
            slice().to,
            "a query that followed nextLinks is complete only once re-checked"
        );
        // The re-check answers in one page: complete.
        cursor.saw(datetime!(2026-11-30 02:00 UTC));
        assert_eq!(cursor.ended(1), Ok(None));
        assert_eq!(cursor.rechecks(), 1);
    }

    #[test]
    fn paging_that_ends_early_again_and_again_fails_the_slice() {
        let mut cursor = cursor(6 * HOUR);
        let mut oldest = datetime!(2026-11-30 05:00 UTC);
        for _ in 0..MAX_RECHECKS_IN_A_ROW {
            cursor.saw(oldest);
            assert!(cursor.ended(2).unwrap().is_some());
            oldest -= time::Duration::minutes(30);
        }
        cursor.saw(oldest);
        assert_eq!(cursor.ended(2), Err(CursorError::EarlyEnds));
    }

    #[test]
    fn slow_queries_halve_the_window_and_go_on_below_what_they_read() {
        let mut cursor = cursor(6 * HOUR);
        // Slow before any row: the same end, half the width.
        assert_eq!(
            cursor.slow(),
            Ok(Some(q(datetime!(2026-11-30 03:00 UTC), slice().to)))
        );
        // Rows down to 04:00, then slow again: below 04:00, 1.5 h wide.
        cursor.saw(datetime!(2026-11-30 04:00 UTC));
        assert_eq!(
            cursor.slow(),
            Ok(Some(q(
                datetime!(2026-11-30 02:30 UTC),
                datetime!(2026-11-30 04:00 UTC)
            )))
        );
        assert_eq!(cursor.width(), Duration::from_secs(5400));
        assert_eq!(
            cursor.complete_from(),
            slice().to,
            "slow queries complete nothing"
        );
        // That window reads in one page: the next one is just as wide, down to the start.
        assert_eq!(
            cursor.ended(1),
            Ok(Some(q(
                datetime!(2026-11-30 01:00 UTC),
                datetime!(2026-11-30 02:30 UTC)
            )))
        );
        assert_eq!(
            cursor.ended(1),
            Ok(Some(q(slice().from, datetime!(2026-11-30 01:00 UTC))))
        );
        assert_eq!(cursor.complete_from(), datetime!(2026-11-30 01:00 UTC));
        assert_eq!(cursor.ended(1), Ok(None));
    }

    #[test]
    fn a_chain_above_others_reads_on_into_them_and_is_done_at_its_bottom() {
        // The chain [03:00, 06:00) above a chain down to 00:00.
        let own = Span::new(datetime!(2026-11-30 03:00 UTC), slice().to);
        let mut cursor = ChainCursor::new(own, slice().from, 6 * HOUR);
        assert_eq!(
            cursor.query(),
            q(slice().from, slice().to),
            "queries reach the floor"
        );
        // Paging ended early at 04:00: the continuation starts there.
        cursor.saw(datetime!(2026-11-30 04:00 UTC));
        assert_eq!(
            cursor.ended(3),
            Ok(Some(q(slice().from, datetime!(2026-11-30 04:00 UTC))))
        );
        // Ended early again exactly at the chain's bottom: rows at 03:00 may go on.
        cursor.saw(datetime!(2026-11-30 03:00 UTC));
        assert_eq!(
            cursor.ended(2),
            Ok(Some(q(slice().from, datetime!(2026-11-30 03:00 UTC))))
        );
        // A query that ends normally at the floor completes the chain.
        assert_eq!(cursor.ended(1), Ok(None));
        assert_eq!(cursor.complete_from(), slice().from);
    }

    #[test]
    fn a_minute_wide_query_that_is_still_slow_fails() {
        let mut cursor = cursor(MIN_WIDTH);
        assert_eq!(cursor.slow(), Err(CursorError::TooSlow));
    }
}
