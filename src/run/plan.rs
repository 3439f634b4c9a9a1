//! The run planner: which slices a run reads and in which order, given what the state says is
//! exported, the request and the clock. Pure (no I/O, no clock of its own), so every schedule of
//! runs can be table-tested and simulated.
//!
//! A slice is half-open, `[start, end)`, and never crosses a UTC midnight, so exporting it changes
//! exactly one daily file. A run reads, in this order:
//!
//! 1. **new**: what is younger than the watermark (the end of the newest exported span), newest
//!    first;
//! 2. **holes**: what the export wants (from `exportFrom`) and does not hold yet, newest first —
//!    the rest of slices earlier runs' deadlines stopped, and back-fills;
//! 3. **re-reads**: the exported part of the overlap below the watermark, for sign-ins Graph
//!    publishes late (the ids already written there are in the state, so only late ones are new).
//!
//! Reads commit what they read when the deadline stops them, so every run that reads a page of
//! new or missing sign-ins keeps it; re-reads come last because they only find late sign-ins and
//! would otherwise hold up the holes of their own day (a day's slices share one file and are read
//! one after the other). No instant is read by two slices of a run, and new slices and holes never
//! re-read what is exported.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::GRAPH_RETENTION;
use crate::state::{Coverage, Span};

/// The shortest slice: a guard against a zero length cutting a window forever.
pub const MIN_SLICE: Duration = Duration::from_secs(60);

/// Why a slice is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceKind {
    /// Younger than the watermark: never read before.
    New,
    /// Below the watermark and not exported: never read completely before.
    Hole,
    /// Exported, inside the overlap: read again for late sign-ins only.
    Reread,
}

/// A window `[start, end)` inside one UTC day: one slice changes one daily file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub kind: SliceKind,
}

impl Slice {
    pub fn span(&self) -> Span {
        Span::new(self.start, self.end)
    }
}

/// Adjacent slices read as one sequence of queries, newest first (`run::slice`): each slice is one
/// day's file and commits on its own as the reading moves past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Newest first, each starting where the next ends.
    pub slices: Vec<Slice>,
    /// How far down the chain's queries may reach: a day below the bottom of the chains below it
    /// in the same run of adjacent slices. A query that runs on past the chain's own bottom
    /// returns a row of the next chain's range (or of the time below the run), which proves
    /// this chain complete without a request of its own.
    pub floor: OffsetDateTime,
}

impl Chain {
    /// `[oldest slice's start, newest slice's end)`.
    pub fn range(&self) -> Span {
        match (self.slices.last(), self.slices.first()) {
            (Some(last), Some(first)) => Span::new(last.start, first.end),
            _ => Span::new(self.floor, self.floor),
        }
    }
}

/// Sign-ins that justify a chain of its own inside a day: a chain costs about one request that is
/// not a full page, so a run of slices is cut into more chains than it has days only where each
/// would still read about ten full pages.
pub const ROWS_PER_CHAIN: f64 = 10_000.0;

/// Groups a plan's slices into chains: maximal runs of slices adjacent in time and alike (new time
/// and holes together, re-reads apart), each cut into at most `per_run` chains of about the same
/// length, newest first. Few chains keep requests few (each costs about one page that is not
/// full); several keep Graph busy while a page is slow. Chains meet at midnights, unless the
/// run's sign-ins — `rows_per_second` of sign-in time, as the state measured it — justify more
/// chains than the run has days ([`ROWS_PER_CHAIN`]): then its slices are cut into that many
/// pieces first, and chains in one daily file take turns staging (`run::slice`). No query reaches
/// below `lowest` (Graph's retention).
pub fn chains(
    slices: &[Slice],
    per_run: usize,
    lowest: OffsetDateTime,
    rows_per_second: Option<f64>,
) -> Vec<Chain> {
    let mut runs: Vec<Vec<Slice>> = Vec::new();
    for slice in slices {
        let unread = |s: &Slice| s.kind != SliceKind::Reread;
        match runs.last_mut() {
            Some(run)
                if run.last().is_some_and(|last| {
                    last.start == slice.end && unread(last) == unread(slice)
                }) =>
            {
                run.push(*slice)
            }
            _ => runs.push(vec![*slice]),
        }
    }
    let mut out = Vec::new();
    for run in runs {
        let Some(bottom) = run.last().map(|s| s.start) else {
            continue;
        };
        let floor = (bottom - REACH_BELOW).max(lowest).min(bottom);
        let total: f64 = run.iter().map(|s| s.span().seconds()).sum();
        let justified = rows_per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .map_or(0, |r| (r * total / ROWS_PER_CHAIN) as usize)
            .min(per_run);
        let within_days = justified > run.len();
        let run = if within_days {
            pieces(&run, total / justified as f64)
        } else {
            run
        };
        let parts = if within_days { justified } else { per_run }.clamp(1, run.len());
        let target = total / parts as f64;
        let mut chain: Vec<Slice> = Vec::new();
        let mut length = 0.0;
        let mut left = parts;
        for (i, slice) in run.iter().enumerate() {
            let seconds = slice.span().seconds();
            // Close the chain before this slice when adding it would overshoot the chain's
            // share by more than stopping short does, or when every chain to come needs one of
            // the slices left.
            let slices_left = run.len() - i;
            let overshoot = length + seconds - target > target - length;
            // Chains meet at midnights unless the run was cut for more (a chain in a file another
            // read holds keeps its blocks until that read has ended).
            let boundary = within_days
                || chain
                    .last()
                    .is_some_and(|above: &Slice| above.start.date() != slice.start.date());
            if boundary && left > 1 && (overshoot || slices_left < left) {
                out.push(Chain {
                    slices: std::mem::take(&mut chain),
                    floor,
                });
                length = 0.0;
                left -= 1;
            }
            chain.push(*slice);
            length += seconds;
        }
        if !chain.is_empty() {
            out.push(Chain {
                slices: chain,
                floor,
            });
        }
    }
    out
}

/// `run`'s slices cut into pieces of about `length` seconds, newest first, each on whole seconds
/// and none shorter than [`MIN_SLICE`].
fn pieces(run: &[Slice], length: f64) -> Vec<Slice> {
    let mut out = Vec::new();
    for slice in run {
        let whole = (slice.end - slice.start).whole_seconds();
        let most = (whole / MIN_SLICE.as_secs() as i64).max(1);
        let n = ((whole as f64 / length).round() as i64).clamp(1, most);
        let at = |i: i64| slice.end - time::Duration::seconds(whole * i / n);
        for i in 0..n {
            out.push(Slice {
                start: if i + 1 == n { slice.start } else { at(i + 1) },
                end: at(i),
                kind: slice.kind,
            });
        }
    }
    out
}

/// How far below a run of slices its chains' queries reach, so that the bottom chain too ends on
/// a row below it (proof that it read everything) rather than on a continuation query.
pub const REACH_BELOW: time::Duration = time::Duration::DAY;

/// What the destination holds, as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Exported<'a> {
    /// The oldest instant the export wants.
    pub export_from: OffsetDateTime,
    pub covered: &'a Coverage,
}

/// Everything the planner looks at besides the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInput {
    /// The run's clock, whole seconds.
    pub now: OffsetDateTime,
    /// `--since` / `?since=`: the first run's start, or a back-fill below what the export wants.
    pub since: Option<OffsetDateTime>,
    /// `--until` / `?until=`: nothing at or after it is read (default now).
    pub until: Option<OffsetDateTime>,
    /// SIGNINS_LOOKBACK: the first run's window when `since` is not given.
    pub lookback: Duration,
    /// SIGNINS_OVERLAP: how much below the watermark is re-read for late sign-ins.
    pub overlap: Duration,
    /// SIGNINS_SLICE: the longest slice.
    pub slice: Duration,
    /// SIGNINS_SETTLE: nothing younger than `now − settle` is planned.
    pub settle: Duration,
}

/// The slices of one run, in read order, and what the export wants after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slices: Vec<Slice>,
    /// The oldest slice's start (the window's end when nothing is planned).
    pub window_start: OffsetDateTime,
    /// Nothing at or after this is read: `until`, and never younger than the settle delay.
    pub window_end: OffsetDateTime,
    /// The export's oldest wanted instant after this run: lowered by `since`, never below
    /// Graph's retention floor.
    pub export_from: OffsetDateTime,
    /// Holes below the retention floor: Graph no longer has their sign-ins (an outage longer
    /// than the retention, or a back-fill that did not finish in time).
    pub lost: Vec<Span>,
}

impl Plan {
    /// What the export still wants after `covered`, holes oldest first: everything from
    /// `export_from` up to the window's end (or what is exported, when `until` ends below it).
    pub fn remaining(&self, covered: &Coverage) -> Vec<Span> {
        let end = covered
            .end()
            .map_or(self.window_end, |end| end.max(self.window_end));
        covered.holes(Span::new(self.export_from, end))
    }
}

/// Plans a run (see the module docs for the order).
pub fn plan(exported: Option<Exported<'_>>, input: &PlanInput) -> Plan {
    let now = input.now;
    let floor = now - GRAPH_RETENTION;
    // Sign-ins are still updated for a while after Graph first publishes them (risk, MFA details,
    // Conditional Access): what is younger than the settle delay waits for a later run.
    let settled = now - input.settle;
    let end = input.until.unwrap_or(settled).min(settled);
    let length = input.slice.max(MIN_SLICE);
    let empty = Coverage::default();
    let (wanted_from, covered) = match exported {
        None => (input.since.unwrap_or(now - input.lookback), &empty),
        Some(exported) => (
            input.since.map_or(exported.export_from, |since| {
                since.min(exported.export_from)
            }),
            exported.covered,
        ),
    };
    // What the export wanted before this run and can no longer read. A `since` older than the
    // retention is only clamped: those sign-ins were never the export's to lose.
    let lost = match exported {
        Some(exported) if exported.export_from < floor => {
            covered.holes(Span::new(exported.export_from, floor))
        }
        _ => Vec::new(),
    };
    let export_from = wanted_from.max(floor);
    let watermark = covered.end().filter(|w| *w > export_from);

    let mut slices = Vec::new();
    let mut newest_first = |window: Span, kind: SliceKind| {
        let window = Span::new(window.from.max(export_from), window.to.min(end));
        slices.extend(cut(window, length).into_iter().rev().map(|s| Slice {
            start: s.from,
            end: s.to,
            kind,
        }));
    };
    match watermark {
        None => newest_first(Span::new(export_from, end), SliceKind::New),
        Some(watermark) => {
            newest_first(Span::new(watermark, end), SliceKind::New);
            for hole in covered
                .holes(Span::new(export_from, watermark))
                .iter()
                .rev()
            {
                newest_first(*hole, SliceKind::Hole);
            }
            let overlap = Span::new(watermark - input.overlap, watermark);
            for exported in covered.spans().iter().rev() {
                let reread = Span::new(exported.from.max(overlap.from), exported.to);
                if !reread.is_empty() {
                    newest_first(reread, SliceKind::Reread);
                }
            }
        }
    }
    Plan {
        window_start: slices
            .iter()
            .map(|s| s.start)
            .min()
            .unwrap_or(end.max(export_from)),
        window_end: end,
        slices,
        export_from,
        lost,
    }
}

/// Cuts `window` at UTC midnights and every `length`, oldest first.
pub fn cut(window: Span, length: Duration) -> Vec<Span> {
    let length = length.max(MIN_SLICE);
    let mut out = Vec::new();
    let mut cursor = window.from;
    while cursor < window.to {
        let midnight = cursor.date().next_day().map(|d| d.midnight().assume_utc());
        let mut slice_end = cursor + length;
        if let Some(midnight) = midnight {
            slice_end = slice_end.min(midnight);
        }
        slice_end = slice_end.min(window.to);
        out.push(Span::new(cursor, slice_end));
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

    fn span(from: OffsetDateTime, to: OffsetDateTime) -> Span {
        Span::new(from, to)
    }

    type Row = (
        &'static str,
        Option<(OffsetDateTime, Vec<Span>)>,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
        Vec<(SliceKind, OffsetDateTime, OffsetDateTime)>,
    );

    /// Each row: exported (exportFrom, covered spans; None = first run), since, until → slices
    /// (kind, start, end) in read order.
    #[test]
    fn plans_by_table() {
        use SliceKind::{Hole, New, Reread};
        let day = Some((
            datetime!(2026-11-30 00:00 UTC),
            vec![span(
                datetime!(2026-11-30 00:00 UTC),
                datetime!(2026-11-30 10:00 UTC),
            )],
        ));
        let table: Vec<Row> = vec![
            (
                "first run: the lookback, newest first",
                None,
                None,
                None,
                vec![
                    (
                        New,
                        datetime!(2026-11-30 06:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        New,
                        datetime!(2026-11-30 00:00 UTC),
                        datetime!(2026-11-30 06:00 UTC),
                    ),
                    (
                        New,
                        datetime!(2026-11-29 18:00 UTC),
                        datetime!(2026-11-30 00:00 UTC),
                    ),
                    (
                        New,
                        datetime!(2026-11-29 12:00 UTC),
                        datetime!(2026-11-29 18:00 UTC),
                    ),
                ],
            ),
            (
                "first run with since and until",
                None,
                Some(datetime!(2026-11-30 01:00 UTC)),
                Some(datetime!(2026-11-30 03:00 UTC)),
                vec![(
                    New,
                    datetime!(2026-11-30 01:00 UTC),
                    datetime!(2026-11-30 03:00 UTC),
                )],
            ),
            (
                "incremental: what is new, then the overlap again",
                day.clone(),
                None,
                None,
                vec![
                    (
                        New,
                        datetime!(2026-11-30 10:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        Reread,
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 10:00 UTC),
                    ),
                ],
            ),
            (
                "since inside what is exported: no back-fill",
                day.clone(),
                Some(datetime!(2026-11-30 02:00 UTC)),
                None,
                vec![
                    (
                        New,
                        datetime!(2026-11-30 10:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        Reread,
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 10:00 UTC),
                    ),
                ],
            ),
            (
                "back-fill below exportFrom: a hole, before the re-read",
                day.clone(),
                Some(datetime!(2026-11-29 20:00 UTC)),
                None,
                vec![
                    (
                        New,
                        datetime!(2026-11-30 10:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-29 20:00 UTC),
                        datetime!(2026-11-30 00:00 UTC),
                    ),
                    (
                        Reread,
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 10:00 UTC),
                    ),
                ],
            ),
            (
                "what a deadline left: the holes, newest first, each read newest first",
                Some((
                    datetime!(2026-11-29 00:00 UTC),
                    vec![
                        span(
                            datetime!(2026-11-29 21:13 UTC),
                            datetime!(2026-11-30 00:00 UTC),
                        ),
                        span(
                            datetime!(2026-11-30 07:30 UTC),
                            datetime!(2026-11-30 10:00 UTC),
                        ),
                    ],
                )),
                None,
                None,
                vec![
                    (
                        New,
                        datetime!(2026-11-30 10:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-30 06:00 UTC),
                        datetime!(2026-11-30 07:30 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-30 00:00 UTC),
                        datetime!(2026-11-30 06:00 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-29 18:00 UTC),
                        datetime!(2026-11-29 21:13 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-29 12:00 UTC),
                        datetime!(2026-11-29 18:00 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-29 06:00 UTC),
                        datetime!(2026-11-29 12:00 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-29 00:00 UTC),
                        datetime!(2026-11-29 06:00 UTC),
                    ),
                    (
                        Reread,
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 10:00 UTC),
                    ),
                ],
            ),
            (
                "a hole inside the overlap is a hole; only what is exported is re-read",
                Some((
                    datetime!(2026-11-30 00:00 UTC),
                    vec![
                        span(
                            datetime!(2026-11-30 00:00 UTC),
                            datetime!(2026-11-30 09:30 UTC),
                        ),
                        span(
                            datetime!(2026-11-30 09:45 UTC),
                            datetime!(2026-11-30 10:00 UTC),
                        ),
                    ],
                )),
                None,
                None,
                vec![
                    (
                        New,
                        datetime!(2026-11-30 10:00 UTC),
                        datetime!(2026-11-30 12:00 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-30 09:30 UTC),
                        datetime!(2026-11-30 09:45 UTC),
                    ),
                    (
                        Reread,
                        datetime!(2026-11-30 09:45 UTC),
                        datetime!(2026-11-30 10:00 UTC),
                    ),
                    (
                        Reread,
                        datetime!(2026-11-30 09:00 UTC),
                        datetime!(2026-11-30 09:30 UTC),
                    ),
                ],
            ),
            (
                "a back-fill with until below what is exported: the hole above stays for later runs",
                day.clone(),
                Some(datetime!(2026-11-29 00:00 UTC)),
                Some(datetime!(2026-11-29 12:00 UTC)),
                vec![
                    (
                        Hole,
                        datetime!(2026-11-29 06:00 UTC),
                        datetime!(2026-11-29 12:00 UTC),
                    ),
                    (
                        Hole,
                        datetime!(2026-11-29 00:00 UTC),
                        datetime!(2026-11-29 06:00 UTC),
                    ),
                ],
            ),
            (
                "nothing older than the retention",
                None,
                Some(datetime!(2026-10-01 00:00 UTC)),
                Some(datetime!(2026-10-31 13:00 UTC)),
                vec![(
                    New,
                    datetime!(2026-10-31 12:00 UTC),
                    datetime!(2026-10-31 13:00 UTC),
                )],
            ),
        ];
        for (name, exported, since, until, want) in table {
            let covered = exported
                .as_ref()
                .map(|(_, spans)| Coverage::of(spans.clone()));
            let got = plan(
                exported
                    .as_ref()
                    .zip(covered.as_ref())
                    .map(|((from, _), covered)| Exported {
                        export_from: *from,
                        covered,
                    }),
                &PlanInput {
                    since,
                    until,
                    ..input()
                },
            );
            let slices: Vec<_> = got
                .slices
                .iter()
                .map(|s| (s.kind, s.start, s.end))
                .collect();
            assert_eq!(slices, want, "{name}");
            assert_no_instant_read_twice(&got, covered.as_ref(), name);
        }
    }

    /// No two slices of a plan share an instant, and only re-reads read what is exported.
    fn assert_no_instant_read_twice(plan: &Plan, covered: Option<&Coverage>, name: &str) {
        for (i, a) in plan.slices.iter().enumerate() {
            for b in &plan.slices[i + 1..] {
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "{name}: {a:?} and {b:?} overlap"
                );
            }
            if let Some(covered) = covered {
                let unexported = covered.holes(a.span());
                let whole = unexported == vec![a.span()];
                match a.kind {
                    SliceKind::Reread => assert!(unexported.is_empty(), "{name}: {a:?}"),
                    SliceKind::New | SliceKind::Hole => assert!(whole, "{name}: {a:?}"),
                }
            }
        }
    }

    #[test]
    fn adjacent_slices_make_chains_of_about_equal_length() {
        use SliceKind::{Hole, New, Reread};
        let at = |day: u8, hour: u8| {
            datetime!(2026-11-26 00:00 UTC)
                + time::Duration::days(i64::from(day))
                + time::Duration::hours(i64::from(hour))
        };
        let slice = |kind, from: OffsetDateTime, to: OffsetDateTime| Slice {
            start: from,
            end: to,
            kind,
        };
        // Four days of new time (newest first), a hole further down, a re-read.
        let plan = vec![
            slice(New, at(4, 0), at(4, 10)),
            slice(New, at(3, 0), at(4, 0)),
            slice(New, at(2, 0), at(3, 0)),
            slice(New, at(1, 12), at(2, 0)),
            slice(Hole, at(0, 2), at(0, 5)),
            slice(Reread, at(4, 9), at(4, 10)),
        ];
        let got = chains(&plan, 2, at(0, 0), None);
        let shape: Vec<(usize, Span, OffsetDateTime)> = got
            .iter()
            .map(|c| (c.slices.len(), c.range(), c.floor))
            .collect();
        assert_eq!(
            shape,
            vec![
                // 70 hours of new time in two chains that both reach a day below its bottom;
                // no query reaches below the lowest instant allowed.
                (2, span(at(3, 0), at(4, 10)), at(0, 12)),
                (2, span(at(1, 12), at(3, 0)), at(0, 12)),
                (1, span(at(0, 2), at(0, 5)), at(0, 0)),
                (1, span(at(4, 9), at(4, 10)), at(3, 9)),
            ]
        );
        // Every slice is in exactly one chain, in plan order.
        let flat: Vec<Slice> = got.iter().flat_map(|c| c.slices.clone()).collect();
        assert_eq!(flat, plan);
        // One chain per run of adjacent slices when asked for one; never more chains than slices.
        assert_eq!(chains(&plan, 1, at(0, 0), None).len(), 3);
        assert_eq!(chains(&plan[..1], 4, at(0, 0), None).len(), 1);
        assert_eq!(chains(&plan[..4], 9, at(0, 0), None).len(), 4);
        // Slices of one day stay in one chain: a daily file is written by one chain.
        let day = vec![
            slice(New, at(4, 6), at(4, 10)),
            slice(New, at(4, 0), at(4, 6)),
            slice(New, at(3, 18), at(4, 0)),
        ];
        let got = chains(&day, 3, at(0, 0), None);
        assert_eq!(
            got.iter().map(|c| c.slices.len()).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }

    #[test]
    fn a_busy_run_is_cut_within_its_day_into_the_chains_its_sign_ins_justify() {
        let new = |from: OffsetDateTime, to: OffsetDateTime| Slice {
            start: from,
            end: to,
            kind: SliceKind::New,
        };
        let (from, to) = (
            datetime!(2026-11-28 10:00 UTC),
            datetime!(2026-11-28 12:00 UTC),
        );
        let plan = vec![new(from, to)];
        let lowest = datetime!(2026-11-01 00:00 UTC);
        let chains_for = |rows_in_run: f64| chains(&plan, 4, lowest, Some(rows_in_run / 7200.0));
        // Unknown or quiet: one chain, as many as the run has days.
        assert_eq!(chains(&plan, 4, lowest, None).len(), 1);
        assert_eq!(chains_for(19_000.0).len(), 1);
        // 25,000 sign-ins justify two chains, 45,000 four (at most `per_run`).
        for (rows, expected) in [(25_000.0, 2), (45_000.0, 4), (900_000.0, 4)] {
            let got = chains_for(rows);
            assert_eq!(got.len(), expected, "{rows}");
            // Newest first, adjacent, of equal length, exactly the run, one floor for all.
            let flat: Vec<Slice> = got.iter().flat_map(|c| c.slices.clone()).collect();
            assert_eq!(flat.first().map(|s| s.end), Some(to));
            assert_eq!(flat.last().map(|s| s.start), Some(from));
            assert!(flat.windows(2).all(|w| w[0].start == w[1].end), "{flat:?}");
            let length = (to - from) / expected as u32;
            assert!(got.iter().all(|c| c.range().to - c.range().from == length));
            assert!(got.iter().all(|c| c.floor == from - REACH_BELOW));
        }
        // Never pieces shorter than MIN_SLICE: a three-minute run stays within three chains.
        let short = vec![new(from, from + time::Duration::minutes(3))];
        assert_eq!(chains(&short, 4, lowest, Some(1e6)).len(), 3);
    }

    #[test]
    fn cuts_never_cross_midnight_and_cover_the_window_exactly() {
        let cut = cut(
            span(
                datetime!(2026-11-28 20:00 UTC),
                datetime!(2026-11-29 09:00 UTC),
            ),
            6 * HOUR,
        );
        assert_eq!(
            cut,
            vec![
                span(
                    datetime!(2026-11-28 20:00 UTC),
                    datetime!(2026-11-29 00:00 UTC)
                ),
                span(
                    datetime!(2026-11-29 00:00 UTC),
                    datetime!(2026-11-29 06:00 UTC)
                ),
                span(
                    datetime!(2026-11-29 06:00 UTC),
                    datetime!(2026-11-29 09:00 UTC)
                ),
            ]
        );
        assert!(super::cut(span(NOW, NOW), HOUR).is_empty());
        // A zero length (a hand-edited or corrupt setting) cannot make the cut loop.
        assert_eq!(
            super::cut(span(NOW, NOW + time::Duration::minutes(3)), Duration::ZERO).len(),
            3
        );
    }

    #[test]
    fn nothing_younger_than_the_settle_delay_is_planned() {
        let settle = |until| PlanInput {
            settle: 15 * time::Duration::MINUTE.unsigned_abs(),
            until,
            ..input()
        };
        let got = plan(None, &settle(None));
        assert_eq!(got.window_end, datetime!(2026-11-30 11:45 UTC));
        assert_eq!(
            got.slices.first().map(|s| s.end),
            Some(datetime!(2026-11-30 11:45 UTC))
        );
        // An explicit until is clamped too.
        let got = plan(None, &settle(Some(NOW)));
        assert_eq!(got.window_end, datetime!(2026-11-30 11:45 UTC));
    }

    #[test]
    fn an_outage_longer_than_the_retention_reports_what_is_lost() {
        let covered = Coverage::of([span(
            datetime!(2026-10-01 00:00 UTC),
            datetime!(2026-10-20 00:00 UTC),
        )]);
        let exported = Exported {
            export_from: datetime!(2026-10-01 00:00 UTC),
            covered: &covered,
        };
        let got = plan(Some(exported), &input());
        let floor = NOW - GRAPH_RETENTION;
        assert_eq!(got.lost, vec![span(datetime!(2026-10-20 00:00 UTC), floor)]);
        assert_eq!(got.export_from, floor);
        assert_eq!(got.slices.last().map(|s| s.start), Some(floor));
        assert!(got.slices.iter().all(|s| s.kind == SliceKind::New));
        // A since older than the retention is clamped, not lost.
        let recent = Coverage::of([span(
            datetime!(2026-11-29 00:00 UTC),
            datetime!(2026-11-30 10:00 UTC),
        )]);
        let got = plan(
            Some(Exported {
                export_from: datetime!(2026-11-29 00:00 UTC),
                covered: &recent,
            }),
            &PlanInput {
                since: Some(datetime!(2026-09-01 00:00 UTC)),
                ..input()
            },
        );
        assert_eq!(got.lost, vec![]);
        assert_eq!(got.export_from, floor);
    }
}

/// The planner over many runs, against a model of Graph: randomized tenants, page latencies,
/// deadlines, lookbacks and starting states. Each run reads its plan with a few chains paced at
/// Graph's 5 requests per 10 s, stops at its deadline, and commits what each slice read (what
/// `run::slice` does); the model checks that no run reads an exported instant as new, that every
/// run that reads a page of missing sign-ins keeps it, and that repeated runs export exactly the
/// whole window within a stated bound.
#[cfg(test)]
mod convergence {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use time::macros::datetime;

    const PAGE: f64 = 1000.0;
    const CHAINS: usize = 4;
    /// Graph's rate: requests per window (`SIGNINS_GRAPH_RATE` default).
    const RATE: (usize, f64) = (5, 10.0);
    /// Time a run keeps for its commits (`run::commit_reserve` is measured; the model fixes it).
    const COMMIT: f64 = 1.0;

    #[derive(Debug, Clone, Copy)]
    struct Case {
        rows_per_day: f64,
        latency: f64,
        deadline: f64,
        lookback_days: i64,
        now: OffsetDateTime,
        /// A state from earlier runs: its watermark (on or off midnight) and whether a back-fill
        /// below what it holds is pending.
        earlier: Option<(OffsetDateTime, bool)>,
    }

    fn case(rng: &mut StdRng) -> Case {
        let rows_per_day = match rng.gen_range(0..4) {
            0 => 0.0,
            1 => rng.gen_range(1.0..2_000.0),
            2 => rng.gen_range(2_000.0..100_000.0),
            _ => rng.gen_range(100_000.0..1_000_000.0),
        };
        let latency = if rng.gen_bool(0.1) {
            0.0
        } else {
            rng.gen_range(0.0..30.0)
        };
        // At least two page latencies plus a commit.
        let shortest = (2.0 * latency + COMMIT + 0.5).max(5.0);
        let deadline = if rng.gen_bool(0.5) {
            rng.gen_range(shortest..shortest + 60.0).min(1500.0)
        } else {
            rng.gen_range(shortest..1500.0)
        };
        let minute = rng.gen_range(0..24 * 60);
        let now = datetime!(2026-11-28 00:00 UTC) + time::Duration::minutes(minute);
        let earlier = rng.gen_bool(0.5).then(|| {
            let watermark = if rng.gen_bool(0.5) {
                now.date().midnight().assume_utc()
            } else {
                now - time::Duration::minutes(rng.gen_range(1..600))
            };
            (watermark, rng.gen_bool(0.5))
        });
        Case {
            rows_per_day,
            latency,
            deadline,
            lookback_days: rng.gen_range(1..=30),
            now,
            earlier,
        }
    }

    /// One chain reading one slice: newest first, down to `frontier`.
    struct Reading {
        slice: Slice,
        frontier: OffsetDateTime,
        /// Pages of the current query so far (a query of several pages is followed by a
        /// completeness re-check).
        pages: u32,
        rechecking: bool,
        next_at: f64,
    }

    /// Graph's sliding request window.
    struct Pacer(Vec<f64>);

    impl Pacer {
        /// When a request ready at `t` can be sent.
        fn send(&mut self, t: f64) -> f64 {
            self.0.retain(|s| *s > t - RATE.1);
            let at = if self.0.len() < RATE.0 {
                t
            } else {
                self.0[self.0.len() - RATE.0] + RATE.1
            };
            self.0.push(at);
            at
        }
    }

    struct RunResult {
        plan: Plan,
        committed: Vec<Span>,
        /// Pages of new or hole slices read.
        pages_of_missing: u32,
        requests: u32,
    }

    /// One run against the model: returns what it committed.
    fn run_once(
        case: &Case,
        export_from: Option<OffsetDateTime>,
        covered: &Coverage,
        now: OffsetDateTime,
    ) -> RunResult {
        let input = PlanInput {
            now,
            since: None,
            until: None,
            lookback: Duration::from_secs(86_400 * case.lookback_days as u64),
            overlap: Duration::from_secs(3600),
            slice: Duration::from_secs(86_400),
            settle: Duration::ZERO,
        };
        let plan = plan(
            export_from.map(|export_from| Exported {
                export_from,
                covered,
            }),
            &input,
        );
        let density = case.rows_per_day / 86_400.0;
        let stop = case.deadline - COMMIT;
        let mut pacer = Pacer(Vec::new());
        let mut next = 0;
        let mut started = vec![false; plan.slices.len()];
        let mut chains: Vec<Reading> = Vec::new();
        let mut committed = Vec::new();
        let mut pages_of_missing = 0;
        let mut requests = 0;
        let mut clock = 0.0_f64;
        loop {
            // Start slices on free chains: the first not started whose day no chain reads.
            while chains.len() < CHAINS {
                let Some(i) = (next..plan.slices.len()).find(|i| {
                    !started[*i]
                        && !chains
                            .iter()
                            .any(|c| c.slice.start.date() == plan.slices[*i].start.date())
                }) else {
                    break;
                };
                started[i] = true;
                while next < started.len() && started[next] {
                    next += 1;
                }
                let slice = plan.slices[i];
                requests += 1;
                chains.push(Reading {
                    slice,
                    frontier: slice.end,
                    pages: 0,
                    rechecking: false,
                    next_at: pacer.send(clock) + case.latency,
                });
            }
            let Some(c) =
                (0..chains.len()).min_by(|a, b| chains[*a].next_at.total_cmp(&chains[*b].next_at))
            else {
                break;
            };
            if chains[c].next_at > stop {
                break;
            }
            clock = chains[c].next_at;
            let chain = &mut chains[c];
            let left = density * (chain.frontier - chain.slice.start).as_seconds_f64();
            let done = if chain.rechecking {
                true
            } else {
                chain.pages += 1;
                if chain.slice.kind != SliceKind::Reread {
                    pages_of_missing += 1;
                }
                if left <= PAGE {
                    chain.frontier = chain.slice.start;
                    if chain.pages > 1 {
                        chain.rechecking = true;
                        false
                    } else {
                        true
                    }
                } else {
                    let seconds = PAGE / density;
                    chain.frontier -= time::Duration::seconds_f64(seconds);
                    false
                }
            };
            if done {
                committed.push(chain.slice);
                chains.swap_remove(c);
            } else {
                requests += 1;
                chains[c].next_at = pacer.send(clock) + case.latency;
            }
        }
        // The deadline: each slice in flight commits what it read; the rows at the oldest
        // timestamp read wait for the next run (one second in the model).
        let mut spans: Vec<Span> = committed.iter().map(Slice::span).collect();
        for chain in &chains {
            let from = if chain.rechecking {
                chain.frontier + time::Duration::SECOND
            } else if chain.frontier < chain.slice.end {
                (chain.frontier + time::Duration::SECOND).min(chain.slice.end)
            } else {
                chain.slice.end
            };
            spans.push(Span::new(from, chain.slice.end));
        }
        let committed = spans
            .into_iter()
            .zip(
                committed
                    .iter()
                    .map(|s| s.kind)
                    .chain(chains.iter().map(|c| c.slice.kind)),
            )
            .filter(|(span, kind)| *kind != SliceKind::Reread && !span.is_empty())
            .map(|(span, _)| span)
            .collect();
        RunResult {
            plan,
            committed,
            pages_of_missing,
            requests,
        }
    }

    #[test]
    fn repeated_runs_export_exactly_the_window_on_every_tenant_and_deadline() {
        let mut rng = StdRng::seed_from_u64(16);
        let mut worst_ratio = 0.0_f64;
        for number in 0..300 {
            let case = case(&mut rng);
            let mut covered = Coverage::default();
            let mut export_from = None;
            if let Some((watermark, backfill)) = case.earlier {
                let from = watermark - time::Duration::hours(6);
                covered.insert(Span::new(from, watermark));
                export_from = Some(if backfill {
                    from - time::Duration::days(2)
                } else {
                    from
                });
            }
            // The clock stands still between runs: the window to export is fixed, and repeated
            // runs must export all of it.
            let now = case.now;
            let mut runs = 0_u32;
            let mut needed_requests = 0.0;
            let mut first_plan_end = None;
            loop {
                runs += 1;
                let before = covered.clone();
                let result = run_once(&case, export_from, &covered, now);
                let plan = &result.plan;
                if first_plan_end.is_none() {
                    first_plan_end = Some(plan.window_end);
                    // Requests one complete read needs: a page per 1000 rows (one for an empty
                    // slice), plus a re-check after several pages.
                    for slice in &plan.slices {
                        let rows = case.rows_per_day / 86_400.0 * slice.span().seconds();
                        let pages = (rows / PAGE).ceil().max(1.0);
                        needed_requests += pages + if pages > 1.0 { 1.0 } else { 0.0 };
                    }
                }
                for slice in &plan.slices {
                    let exported_part = before.holes(slice.span()) != vec![slice.span()];
                    assert!(
                        slice.kind == SliceKind::Reread || !exported_part,
                        "case {number} {case:?}: run {runs} reads exported time as new: {slice:?}"
                    );
                }
                let missing = plan.remaining(&before);
                if missing.is_empty() {
                    break;
                }
                for span in &result.committed {
                    covered.insert(*span);
                }
                export_from = Some(
                    plan.export_from
                        .min(covered.start().unwrap_or(plan.export_from)),
                );
                if result.pages_of_missing > 0 {
                    assert!(
                        covered.seconds() > before.seconds(),
                        "case {number} {case:?}: run {runs} read {} pages of missing sign-ins and kept none",
                        result.pages_of_missing
                    );
                }
                // One chain makes at least this many requests in a run.
                let per_run = if case.latency > 0.0 {
                    ((case.deadline - COMMIT) / case.latency).floor().max(1.0)
                } else {
                    f64::INFINITY
                };
                let paced =
                    ((case.deadline - COMMIT) / RATE.1).floor() * RATE.0 as f64 + RATE.0 as f64;
                let per_run = per_run.min(paced).max(1.0);
                let bound = 2.0 * (needed_requests / per_run).ceil() + 3.0;
                assert!(
                    f64::from(runs) <= bound,
                    "case {number} {case:?}: {runs} runs and still missing {missing:?} (bound {bound}, requests needed {needed_requests}, {} this run)",
                    result.requests
                );
                worst_ratio = worst_ratio.max(f64::from(runs) / bound);
            }
            // Exactly the window: everything from exportFrom to the window's end, nothing missing.
            let end = first_plan_end.unwrap_or(now);
            let wanted_from = export_from.unwrap_or(end);
            assert_eq!(
                covered.holes(Span::new(wanted_from, end)),
                vec![],
                "case {number} {case:?}"
            );
        }
        eprintln!("convergence: worst runs / bound {worst_ratio:.2}");
    }
}
