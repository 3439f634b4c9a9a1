//! The run planner: which slices a run exports and in which order, given what the state says is
//! exported, the request and the clock. Pure (no I/O, no clock of its own), so every schedule of
//! runs can be table-tested.
//!
//! A slice is half-open, `[start, end)`, and never crosses a UTC midnight, so exporting it changes
//! exactly one daily file.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::GRAPH_RETENTION;

/// A window `[start, end)` inside one UTC day: one slice changes one daily file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// What the destination already holds: the exported interval `[from, watermark)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    pub from: OffsetDateTime,
    pub watermark: OffsetDateTime,
}

/// Everything the planner looks at besides the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInput {
    /// The run's clock, whole seconds.
    pub now: OffsetDateTime,
    /// `--since` / `?since=`: the first run's start, or a back-fill below what is covered.
    pub since: Option<OffsetDateTime>,
    /// `--until` / `?until=`: the end of the window (default now).
    pub until: Option<OffsetDateTime>,
    /// SIGNINS_LOOKBACK: the first run's window when `since` is not given.
    pub lookback: Duration,
    /// SIGNINS_OVERLAP: how much before the watermark is re-read for late sign-ins.
    pub overlap: Duration,
    /// SIGNINS_SLICE: the longest slice.
    pub slice: Duration,
}

/// The slices of one run, in export order, and the whole window they span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slices: Vec<Slice>,
    pub window_start: OffsetDateTime,
    pub window_end: OffsetDateTime,
}

/// Plans a run. Forward from the watermark (oldest first, each slice raises the watermark), then
/// any back-fill below `covered.from` that `since` asks for (newest first, each slice lowers
/// `covered.from`, so an interrupted back-fill resumes where it stopped). Nothing older than
/// Graph's retention is planned.
pub fn plan(covered: Option<Covered>, input: &PlanInput) -> Plan {
    let now = input.now;
    let floor = now - GRAPH_RETENTION;
    let end = input.until.unwrap_or(now).min(now);
    let (forward_start, backfill) = match covered {
        None => {
            let start = input.since.unwrap_or(now - input.lookback);
            (start.max(floor), None)
        }
        Some(covered) => {
            let backfill = input
                .since
                .filter(|since| *since < covered.from)
                .map(|since| (since.max(floor), covered.from));
            ((covered.watermark - input.overlap).max(floor), backfill)
        }
    };
    let mut planned = slices(forward_start, end, input.slice);
    let mut window_start = forward_start;
    if let Some((from, to)) = backfill {
        window_start = window_start.min(from);
        planned.extend(slices(from, to, input.slice).into_iter().rev());
    }
    Plan {
        slices: planned,
        window_start,
        window_end: end,
    }
}

/// Cuts `[start, end)` at UTC midnights and every `length`, oldest first.
pub fn slices(start: OffsetDateTime, end: OffsetDateTime, length: Duration) -> Vec<Slice> {
    let mut out = Vec::new();
    let mut cursor = start;
    while cursor < end {
        let midnight = cursor.date().next_day().map(|d| d.midnight().assume_utc());
        let mut slice_end = cursor + length;
        if let Some(midnight) = midnight {
            slice_end = slice_end.min(midnight);
        }
        slice_end = slice_end.min(end);
        out.push(Slice {
            start: cursor,
            end: slice_end,
        });
        cursor = slice_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const HOUR: Duration = Duration::from_secs(3600);
    const NOW: OffsetDateTime = datetime!(2026-11-30 12:00 UTC);

    fn input() -> PlanInput {
        PlanInput {
            now: NOW,
            since: None,
            until: None,
            lookback: 24 * HOUR,
            overlap: HOUR,
            slice: 6 * HOUR,
        }
    }

    fn bounds(plan: &Plan) -> Vec<(OffsetDateTime, OffsetDateTime)> {
        plan.slices.iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn slices_never_cross_midnight_and_cover_the_window_exactly() {
        let cut = slices(
            datetime!(2026-11-28 20:00 UTC),
            datetime!(2026-11-29 09:00 UTC),
            6 * HOUR,
        );
        assert_eq!(
            cut.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
            vec![
                (
                    datetime!(2026-11-28 20:00 UTC),
                    datetime!(2026-11-29 00:00 UTC)
                ),
                (
                    datetime!(2026-11-29 00:00 UTC),
                    datetime!(2026-11-29 06:00 UTC)
                ),
                (
                    datetime!(2026-11-29 06:00 UTC),
                    datetime!(2026-11-29 09:00 UTC)
                ),
            ]
        );
        assert!(slices(NOW, NOW, HOUR).is_empty());
    }

    /// Each row: covered interval (None = first run), since, until → slices (start, end) in order.
    #[test]
    fn plans_by_table() {
        type Row = (
            &'static str,
            Option<Covered>,
            Option<OffsetDateTime>,
            Option<OffsetDateTime>,
            Vec<(OffsetDateTime, OffsetDateTime)>,
        );
        let covered = Some(Covered {
            from: datetime!(2026-11-30 00:00 UTC),
            watermark: datetime!(2026-11-30 10:00 UTC),
        });
        let table: Vec<Row> = vec![
            (
                "first run: the lookback, oldest first",
                None,
                None,
                None,
                vec![
                    (
                        datetime!(2026-11-29 12:00 UTC),
                        datetime!(2026-11-29 18:00 UTC),
                    ),
                    (
                        datetime!(2026-11-29 18:00 UTC),
                        datetime!(2026-11-30 00:00 UTC),
                    ),
                    (
                        datetime!(2026-11-30 00:00 UTC),
                        datetime!(2026-11-30 06:00 UTC),
                    ),
                    (
                        datetime!(2026-11-30 06:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                ],
            ),
            (
                "first run with since and until",
                None,
                Some(datetime!(2026-11-30 01:00 UTC)),
                Some(datetime!(2026-11-30 03:00 UTC)),
                vec![(
                    datetime!(2026-11-30 01:00 UTC),
                    datetime!(2026-11-30 03:00 UTC),
                )],
            ),
            (
                "incremental: re-read the overlap up to now",
                covered,
                None,
                None,
                vec![(
                    datetime!(2026-11-30 09:00 UTC),
                    datetime!(2026-11-30 12:00 UTC),
                )],
            ),
            (
                "since inside what is covered: no back-fill",
                covered,
                Some(datetime!(2026-11-30 02:00 UTC)),
                None,
                vec![(
                    datetime!(2026-11-30 09:00 UTC),
                    datetime!(2026-11-30 12:00 UTC),
                )],
            ),
            (
                "back-fill below covered.from, newest first, after the forward part",
                covered,
                Some(datetime!(2026-11-29 20:00 UTC)),
                None,
                vec![
                    (
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        datetime!(2026-11-29 20:00 UTC),
                        datetime!(2026-11-30 00:00 UTC),
                    ),
                ],
            ),
            (
                "nothing older than the retention",
                None,
                Some(datetime!(2026-10-01 00:00 UTC)),
                Some(datetime!(2026-10-31 13:00 UTC)),
                vec![(
                    datetime!(2026-10-31 12:00 UTC),
                    datetime!(2026-10-31 13:00 UTC),
                )],
            ),
        ];
        for (name, covered, since, until, want) in table {
            let got = plan(
                covered,
                &PlanInput {
                    since,
                    until,
                    ..input()
                },
            );
            assert_eq!(bounds(&got), want, "{name}");
        }
    }
}
