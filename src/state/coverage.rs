//! What a destination holds, as a set of time intervals (pure, table-tested).
//!
//! A run commits the part of a slice it read, `[oldest complete instant, slice end)`, so what is
//! exported is no longer one contiguous interval: it is a set of disjoint half-open spans, kept
//! sorted and merged. The planner reads the *holes* between them; a commit inserts a span.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An interval of time `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
}

impl Span {
    pub fn new(from: OffsetDateTime, to: OffsetDateTime) -> Span {
        Span { from, to }
    }

    pub fn is_empty(&self) -> bool {
        self.from >= self.to
    }

    /// Length in seconds (0 for an empty span).
    pub fn seconds(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            (self.to - self.from).as_seconds_f64()
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::try_from(self.to - self.from).unwrap_or_default()
    }
}

/// A set of disjoint, non-adjacent, non-empty spans, oldest first. Stored as a list of spans;
/// a hand-edited list (unsorted, overlapping, empty spans) is normalised when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Span>", into = "Vec<Span>")]
pub struct Coverage {
    spans: Vec<Span>,
}

impl From<Vec<Span>> for Coverage {
    fn from(spans: Vec<Span>) -> Coverage {
        Coverage::of(spans)
    }
}

impl From<Coverage> for Vec<Span> {
    fn from(coverage: Coverage) -> Vec<Span> {
        coverage.spans
    }
}

impl Coverage {
    /// The set of `spans` (any order, overlapping or empty ones allowed).
    pub fn of(spans: impl IntoIterator<Item = Span>) -> Coverage {
        let mut coverage = Coverage::default();
        for span in spans {
            coverage.insert(span);
        }
        coverage
    }

    /// The spans, oldest first.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The start of the oldest span.
    pub fn start(&self) -> Option<OffsetDateTime> {
        self.spans.first().map(|s| s.from)
    }

    /// The end of the newest span.
    pub fn end(&self) -> Option<OffsetDateTime> {
        self.spans.last().map(|s| s.to)
    }

    /// Total seconds covered.
    pub fn seconds(&self) -> f64 {
        self.spans.iter().map(Span::seconds).sum()
    }

    /// Whether `at` lies in a span.
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        let i = self.spans.partition_point(|s| s.to <= at);
        self.spans.get(i).is_some_and(|s| s.from <= at)
    }

    /// Adds `span`, merging it with the spans it overlaps or touches.
    pub fn insert(&mut self, span: Span) {
        if span.is_empty() {
            return;
        }
        // Spans ending before `span` starts stay; spans starting after it ends stay.
        let first = self.spans.partition_point(|s| s.to < span.from);
        let last = self.spans.partition_point(|s| s.from <= span.to);
        let mut merged = span;
        if first < last {
            merged.from = merged.from.min(self.spans[first].from);
            merged.to = merged.to.max(self.spans[last - 1].to);
        }
        self.spans.splice(first..last, [merged]);
    }

    /// What of `within` no span covers, oldest first.
    pub fn holes(&self, within: Span) -> Vec<Span> {
        let mut holes = Vec::new();
        let mut cursor = within.from;
        for span in &self.spans {
            if span.to <= cursor {
                continue;
            }
            if span.from >= within.to {
                break;
            }
            if span.from > cursor {
                holes.push(Span::new(cursor, span.from));
            }
            cursor = cursor.max(span.to);
        }
        if cursor < within.to {
            holes.push(Span::new(cursor, within.to));
        }
        holes
    }

    /// Drops everything before `at` (what Graph no longer keeps cannot be read again).
    pub fn clip_below(&mut self, at: OffsetDateTime) {
        self.spans.retain(|s| s.to > at);
        if let Some(first) = self.spans.first_mut() {
            first.from = first.from.max(at);
        }
    }

    /// The spans of `self` that `before` did not have (what a run added), oldest first.
    pub fn added_since(&self, before: &Coverage) -> Vec<Span> {
        self.spans
            .iter()
            .flat_map(|span| before.holes(*span))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(hour: i64) -> OffsetDateTime {
        datetime!(2026-11-28 00:00 UTC) + time::Duration::hours(hour)
    }

    fn span(from: i64, to: i64) -> Span {
        Span::new(at(from), at(to))
    }

    #[test]
    fn insert_merges_overlapping_and_touching_spans() {
        // (spans inserted in order, expected set)
        let table: Vec<(Vec<Span>, Vec<Span>)> = vec![
            (vec![span(1, 2), span(3, 4)], vec![span(1, 2), span(3, 4)]),
            (vec![span(3, 4), span(1, 2)], vec![span(1, 2), span(3, 4)]),
            (vec![span(1, 2), span(2, 3)], vec![span(1, 3)]),
            (vec![span(1, 5), span(2, 3)], vec![span(1, 5)]),
            (
                vec![span(1, 2), span(3, 4), span(5, 6), span(2, 5)],
                vec![span(1, 6)],
            ),
            (
                vec![span(1, 2), span(5, 6), span(3, 4)],
                vec![span(1, 2), span(3, 4), span(5, 6)],
            ),
            (vec![span(1, 1), span(3, 2)], vec![]),
            (vec![span(4, 6), span(0, 5)], vec![span(0, 6)]),
        ];
        for (inserted, want) in table {
            assert_eq!(
                Coverage::of(inserted.clone()).spans(),
                want.as_slice(),
                "{inserted:?}"
            );
        }
    }

    #[test]
    fn holes_are_what_no_span_covers() {
        let set = Coverage::of([span(2, 4), span(6, 8)]);
        assert_eq!(
            set.holes(span(0, 10)),
            vec![span(0, 2), span(4, 6), span(8, 10)]
        );
        assert_eq!(set.holes(span(3, 7)), vec![span(4, 6)]);
        assert_eq!(set.holes(span(2, 4)), vec![]);
        assert_eq!(set.holes(span(5, 5)), vec![]);
        assert_eq!(Coverage::default().holes(span(1, 2)), vec![span(1, 2)]);
        assert!(set.contains(at(2)) && !set.contains(at(4)) && set.contains(at(7)));
    }

    #[test]
    fn clipping_and_what_a_run_added() {
        let mut set = Coverage::of([span(2, 4), span(6, 8)]);
        let before = set.clone();
        set.insert(span(3, 7));
        assert_eq!(set.added_since(&before), vec![span(4, 6)]);
        set.clip_below(at(5));
        assert_eq!(set.spans(), &[span(5, 8)]);
        set.clip_below(at(9));
        assert!(set.is_empty());
    }

    #[test]
    fn serialises_as_a_list_of_spans() {
        let set = Coverage::of([span(2, 4)]);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(
            json,
            r#"[{"from":"2026-11-28T02:00:00Z","to":"2026-11-28T04:00:00Z"}]"#
        );
        assert_eq!(serde_json::from_str::<Coverage>(&json).unwrap(), set);
        // A hand-edited list is normalised: sorted, merged, empty spans dropped.
        let edited = r#"[{"from":"2026-11-28T05:00:00Z","to":"2026-11-28T06:00:00Z"},
            {"from":"2026-11-28T03:00:00Z","to":"2026-11-28T03:00:00Z"},
            {"from":"2026-11-28T02:00:00Z","to":"2026-11-28T05:30:00Z"}]"#;
        let read: Coverage = serde_json::from_str(edited).unwrap();
        assert_eq!(read.spans(), &[span(2, 6)]);
    }
}
