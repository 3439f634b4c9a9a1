//! The run planner: which slices a run exports and in which order, given what the state says is
//! exported, the request and the clock. Pure (no I/O, no clock of its own), so every schedule of
//! runs can be table-tested.
//!
//! A slice is half-open, `[start, end)`, and never crosses a UTC midnight, so exporting it changes
//! exactly one daily file.

use std::time::Duration;

use time::OffsetDateTime;

use super::rfc3339;
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
    /// SIGNINS_SETTLE: nothing younger than `now − settle` is planned.
    pub settle: Duration,
}

/// A request the planner refuses, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "until ({until}) ends before what this destination has exported (from {covered_from}): a \
         back-fill always runs up to the exported interval so that it stays one contiguous \
         interval; leave until out, or set it at or after {covered_from}"
    )]
    UntilBeforeBackfill { until: String, covered_from: String },
}

/// The slices of one run, in export order, and the whole window they span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slices: Vec<Slice>,
    pub window_start: OffsetDateTime,
    pub window_end: OffsetDateTime,
    /// The back-fill this run plans, `[from, to)`, if any.
    pub backfill: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Sign-ins that can no longer be read, `[watermark, retention floor)`: the destination was
    /// last exported longer ago than Graph keeps sign-ins (an outage over 30 days).
    pub lost: Option<(OffsetDateTime, OffsetDateTime)>,
}

/// Plans a run. Forward from the watermark (oldest first, each slice raises the watermark), then
/// any back-fill below `covered.from` that `since` asks for (newest first, each slice lowers
/// `covered.from`, so an interrupted back-fill resumes where it stopped). Nothing older than
/// Graph's retention is planned.
///
/// The back-fill ends where the forward part starts when that is lower than `covered.from`
/// (a first run shorter than the overlap): the forward part re-reads `[watermark − overlap, …)`
/// and would otherwise read the same rows as the back-fill and write them twice.
pub fn plan(covered: Option<Covered>, input: &PlanInput) -> Result<Plan, PlanError> {
    let now = input.now;
    let floor = now - GRAPH_RETENTION;
    // Sign-ins are still updated for a while after Graph first publishes them (risk, MFA details,
    // Conditional Access): what is younger than the settle delay waits for a later run.
    let settled = now - input.settle;
    let end = input.until.unwrap_or(settled).min(settled);
    let lost = covered
        .filter(|covered| covered.watermark < floor)
        .map(|covered| (covered.watermark, floor));
    let (forward_start, backfill) = match covered {
        None => {
            let start = input.since.unwrap_or(now - input.lookback);
            (start.max(floor), None)
        }
        Some(covered) => {
            let forward_start = (covered.watermark - input.overlap).max(floor);
            let backfill_end = covered.from.min(forward_start);
            let backfill = input
                .since
                .map(|since| since.max(floor))
                .filter(|since| *since < backfill_end)
                .map(|since| (since, backfill_end));
            if let (Some((_, to)), Some(until)) = (backfill, input.until) {
                if until < to {
                    return Err(PlanError::UntilBeforeBackfill {
                        until: rfc3339(until),
                        covered_from: rfc3339(to),
                    });
                }
            }
            (forward_start, backfill)
        }
    };
    let mut planned = slices(forward_start, end, input.slice);
    let mut window_start = forward_start;
    if let Some((from, to)) = backfill {
        window_start = window_start.min(from);
        planned.extend(slices(from, to, input.slice).into_iter().rev());
    }
    Ok(Plan {
        slices: planned,
        window_start,
        window_end: end,
        backfill,
        lost,
    })
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
            settle: Duration::ZERO,
        }
    }

    /// Two slices of one plan never share an instant (each row is read by one slice only).
    fn assert_no_slice_read_twice(plan: &Plan, name: &str) {
        for (i, a) in plan.slices.iter().enumerate() {
            for b in &plan.slices[i + 1..] {
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "{name}: {a:?} and {b:?} overlap"
                );
            }
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
                // The measured bug: a first run shorter than the overlap, then a back-fill. The
                // forward part re-reads from watermark − overlap (09:00 < covered.from 09:50), so
                // the back-fill must stop at 09:00, not at covered.from.
                "back-fill after a first run shorter than the overlap",
                Some(Covered {
                    from: datetime!(2026-11-30 09:50 UTC),
                    watermark: datetime!(2026-11-30 10:00 UTC),
                }),
                Some(datetime!(2026-11-30 05:00 UTC)),
                None,
                vec![
                    (
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        datetime!(2026-11-30 05:00 UTC),
                        datetime!(2026-11-30 09:00 UTC),
                    ),
                ],
            ),
            (
                "back-fill with until at or after what is covered: forward part up to until",
                covered,
                Some(datetime!(2026-11-29 22:00 UTC)),
                Some(datetime!(2026-11-30 11:00 UTC)),
                vec![
                    (
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 11:00 UTC),
                    ),
                    (
                        datetime!(2026-11-29 22:00 UTC),
                        datetime!(2026-11-30 00:00 UTC),
                    ),
                ],
            ),
            (
                "since older than the retention: the back-fill starts at the retention floor",
                covered,
                Some(datetime!(2026-10-01 00:00 UTC)),
                None,
                {
                    let mut want = vec![(
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    )];
                    let mut back = slices(
                        datetime!(2026-10-31 12:00 UTC),
                        datetime!(2026-11-30 00:00 UTC),
                        6 * HOUR,
                    );
                    back.reverse();
                    want.extend(back.into_iter().map(|s| (s.start, s.end)));
                    want
                },
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
            // Every order of runs ends the same way: the table rows are each a state some order
            // of forward runs and back-fills reaches; what matters is that no plan reads an
            // instant twice and none goes below the retention.
            let got = plan(
                covered,
                &PlanInput {
                    since,
                    until,
                    ..input()
                },
            )
            .unwrap();
            assert_eq!(bounds(&got), want, "{name}");
            assert_no_slice_read_twice(&got, name);
        }
    }

    #[test]
    fn nothing_younger_than_the_settle_delay_is_planned() {
        let settle = |until| PlanInput {
            settle: 15 * time::Duration::MINUTE.unsigned_abs(),
            until,
            ..input()
        };
        let got = plan(None, &settle(None)).unwrap();
        assert_eq!(got.window_end, datetime!(2026-11-30 11:45 UTC));
        assert_eq!(
            got.slices.last().map(|s| s.end),
            Some(datetime!(2026-11-30 11:45 UTC))
        );
        // An explicit until is clamped too.
        let got = plan(None, &settle(Some(NOW))).unwrap();
        assert_eq!(got.window_end, datetime!(2026-11-30 11:45 UTC));
    }

    #[test]
    fn an_outage_longer_than_the_retention_reports_what_is_lost() {
        let covered = Some(Covered {
            from: datetime!(2026-10-01 00:00 UTC),
            watermark: datetime!(2026-10-20 00:00 UTC),
        });
        let got = plan(covered, &input()).unwrap();
        let floor = NOW - GRAPH_RETENTION;
        assert_eq!(got.lost, Some((datetime!(2026-10-20 00:00 UTC), floor)));
        assert_eq!(got.slices.first().map(|s| s.start), Some(floor));
        let recent = plan(
            Some(Covered {
                from: datetime!(2026-11-29 00:00 UTC),
                watermark: datetime!(2026-11-30 10:00 UTC),
            }),
            &input(),
        )
        .unwrap();
        assert_eq!(recent.lost, None);
    }

    #[test]
    fn until_before_a_needed_backfill_is_refused_with_the_remedy() {
        let covered = Some(Covered {
            from: datetime!(2026-11-30 00:00 UTC),
            watermark: datetime!(2026-11-30 10:00 UTC),
        });
        let err = plan(
            covered,
            &PlanInput {
                since: Some(datetime!(2026-11-29 00:00 UTC)),
                until: Some(datetime!(2026-11-29 12:00 UTC)),
                ..input()
            },
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("leave until out") && text.contains("2026-11-30T00:00:00Z"),
            "{text}"
        );
        // No back-fill needed: until only limits the forward part, even below the watermark.
        let forward_only = plan(
            covered,
            &PlanInput {
                since: None,
                until: Some(datetime!(2026-11-30 08:00 UTC)),
                ..input()
            },
        )
        .unwrap();
        assert!(forward_only.slices.is_empty());
    }

    /// Every schedule of forward runs and back-fills, simulated on the covered interval alone:
    /// each instant is planned by at most one slice over the whole schedule until it is covered.
    #[test]
    fn no_schedule_of_runs_reads_an_exported_instant_as_new() {
        let since_choices = [
            None,
            Some(datetime!(2026-11-29 00:00 UTC)),
            Some(datetime!(2026-11-30 09:55 UTC)),
            Some(datetime!(2026-11-28 06:30 UTC)),
        ];
        let minutes = |m: i64| time::Duration::minutes(m);
        for first in since_choices {
            for second in since_choices {
                for third in since_choices {
                    let mut covered: Option<Covered> = None;
                    let mut clock = datetime!(2026-11-30 10:00 UTC);
                    // Each instant's first export; a later slice may re-read it only inside the
                    // overlap below the watermark, where the stored ids deduplicate.
                    let mut exported: Vec<(OffsetDateTime, OffsetDateTime)> = Vec::new();
                    for since in [first, second, third] {
                        let got = plan(
                            covered,
                            &PlanInput {
                                now: clock,
                                since,
                                ..input()
                            },
                        )
                        .unwrap();
                        for slice in &got.slices {
                            // Ids are kept for [watermark − overlap, watermark) only.
                            let dedup_from = covered.map(|c| c.watermark - HOUR);
                            for (a, b) in &exported {
                                let overlap_start = slice.start.max(*a);
                                let overlap_end = slice.end.min(*b);
                                if overlap_start < overlap_end {
                                    assert!(
                                        dedup_from.is_some_and(|d| overlap_start >= d),
                                        "{first:?} {second:?} {third:?}: {slice:?} re-reads [{a}, {b}) outside the overlap"
                                    );
                                }
                            }
                            exported.push((slice.start, slice.end));
                            covered = Some(match covered {
                                None => Covered {
                                    from: slice.start,
                                    watermark: slice.end,
                                },
                                Some(c) => Covered {
                                    from: c.from.min(slice.start),
                                    watermark: c.watermark.max(slice.end),
                                },
                            });
                        }
                        clock += minutes(7);
                    }
                }
            }
        }
    }
}
