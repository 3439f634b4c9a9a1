//! Which sign-ins a slice has already taken, in memory that follows the sign-in rate, not the
//! slice's size (pure, table-tested).
//!
//! A slice is read newest first, so once a row created at `t` was read, everything newer than `t`
//! in the slice was read too (the premise [`super::cursor`] rests on). The same row comes back
//! only
//! * at the row where reading stands: the next window and a completeness re-check start at the
//!   oldest row read, inclusive; a page boundary may repeat it;
//! * from the query's first page, when Graph refused its own skiptoken and the pager restarted
//!   the query (`graph::client`).
//!
//! So ids are kept only while their `createdDateTime` is within [`HORIZON`] of the oldest row
//! taken — the margin absorbs rows slightly out of order — and a row newer than the ids that were
//! dropped is known to be a row read again.

use std::collections::hash_map::Entry;

use foldhash::HashMap;
use time::{Duration, OffsetDateTime};

use crate::graph::model::id_key;

/// How far above the oldest row taken ids are kept.
pub const HORIZON: Duration = Duration::minutes(10);
/// Ids held before the first pruning pass: small slices never prune.
const FIRST_PRUNE: usize = 4096;

/// The ids of one slice's rows taken so far.
#[derive(Debug, Default)]
pub struct SeenIds {
    /// [`id_key`]s: 16 bytes each, hashed without reading a string.
    ids: HashMap<u128, OffsetDateTime>,
    /// The oldest row taken.
    oldest: Option<OffsetDateTime>,
    /// Ids of rows created after this were dropped: every such row was taken already.
    dropped_above: Option<OffsetDateTime>,
    prune_at: usize,
}

impl SeenIds {
    /// Takes the row `id` created at `created`; `false` if it was taken before.
    pub fn take(&mut self, id: &str, created: OffsetDateTime) -> bool {
        if self.dropped_above.is_some_and(|above| created > above) {
            return false;
        }
        match self.ids.entry(id_key(id)) {
            Entry::Occupied(_) => return false,
            Entry::Vacant(slot) => slot.insert(created),
        };
        self.oldest = Some(self.oldest.map_or(created, |o| o.min(created)));
        if self.ids.len() >= self.prune_at.max(FIRST_PRUNE) {
            self.prune();
        }
        true
    }

    /// Ids held now (for tests and the memory bench).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Drops the ids of rows more than [`HORIZON`] above the oldest; runs when the map doubled
    /// since the last pass, so its cost per row is constant.
    fn prune(&mut self) {
        if let Some(oldest) = self.oldest {
            let keep_up_to = oldest + HORIZON;
            let before = self.ids.len();
            self.ids.retain(|_, created| *created <= keep_up_to);
            if self.ids.len() < before {
                self.dropped_above = Some(
                    self.dropped_above
                        .map_or(keep_up_to, |above| above.min(keep_up_to)),
                );
            }
        }
        self.prune_at = self.ids.len() * 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-30 00:00 UTC);

    fn id(n: usize) -> String {
        format!("00000000-0000-0000-0000-{n:012}")
    }

    #[test]
    fn a_row_read_again_at_the_boundary_is_refused() {
        let mut seen = SeenIds::default();
        assert!(seen.take(&id(1), T0 + Duration::minutes(5)));
        assert!(seen.take(&id(2), T0 + Duration::minutes(4)));
        // The next window starts at the oldest row, inclusive: it comes again.
        assert!(!seen.take(&id(2), T0 + Duration::minutes(4)));
        // Another row at the same instant is new.
        assert!(seen.take(&id(3), T0 + Duration::minutes(4)));
        assert!(seen.take(&id(4), T0));
    }

    #[test]
    fn memory_follows_the_rate_not_the_slice() {
        // Six hours at one sign-in per 100 ms, newest first: 216,000 rows.
        let mut seen = SeenIds::default();
        let rows = 216_000usize;
        let mut peak = 0;
        for n in 0..rows {
            let created = T0 + Duration::DAY - Duration::milliseconds(100 * n as i64);
            assert!(seen.take(&id(n), created));
            peak = peak.max(seen.len());
        }
        // Ten minutes hold 6,000 rows; between passes the map at most doubles.
        assert!(peak <= 2 * 6_001 + FIRST_PRUNE, "peak {peak}");
    }

    #[test]
    fn a_restarted_query_reads_nothing_twice() {
        let mut seen = SeenIds::default();
        let created = |n: usize| T0 + Duration::DAY - Duration::seconds(n as i64);
        for n in 0..20_000 {
            assert!(seen.take(&id(n), created(n)));
        }
        // The pager restarts the query from its first page: every row comes again, newest
        // first, up to where reading stood, then new rows follow.
        for n in 0..20_000 {
            assert!(!seen.take(&id(n), created(n)), "row {n} taken twice");
        }
        for n in 20_000..20_100 {
            assert!(seen.take(&id(n), created(n)));
        }
    }

    #[test]
    fn rows_slightly_out_of_order_are_still_recognised() {
        let mut seen = SeenIds::default();
        // Rows a few minutes out of order around a page boundary, with pruning in between.
        for n in 0..10_000 {
            let created = T0 + Duration::DAY - Duration::seconds(n as i64);
            assert!(seen.take(&id(n), created));
        }
        let late = T0 + Duration::DAY - Duration::seconds(9_999) + Duration::minutes(3);
        assert!(!seen.take(&id(9_999 - 180), late));
        assert!(
            seen.take(&id(50_000), late),
            "a new row three minutes above the oldest"
        );
    }
}
