//! Which blob ranges an archive run reads and in which order, where reading starts after a switch
//! from Graph, and what is left when a run stops (pure, table-tested).

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::diagnostic::cursor::RestartReason;
use crate::diagnostic::layout::hour_of;
use crate::diagnostic::{plan_read, BlobHour, BlobKey, ListedBlob, ReadPlan};
use crate::state::{ArchiveState, Coverage, Remaining, Span};

/// How long after its hour a blob may still grow. Azure Monitor appends to the current hour's
/// blob and, at the start of the next hour, to the previous one (azure-monitor-docs
/// `resource-logs.md`); two days leaves a wide margin. Cursors of older blobs are forgotten
/// and those blobs are not listed as work again.
pub const HORIZON: time::Duration = time::Duration::hours(48);

/// How many hours apart a repeated delivery is looked for: Azure Monitor writes a sign-in to the
/// blob of the hour it receives it, and at the start of an hour still to the previous hour's
/// (`resource-logs.md`), so a repeat lands in the same hour's blob or a neighbour's; a wider
/// `SIGNINS_OVERLAP` widens the reach (and the ids kept: 16 bytes each).
pub fn id_reach(overlap: std::time::Duration) -> time::Duration {
    let overlap = time::Duration::seconds(i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX / 2));
    overlap.max(time::Duration::HOUR)
}

/// The hour from which the id window is kept after a commit: `reach` before the hour reading
/// stands at — the newest blob hour read, or an older one still to read (a repeat of the rows
/// read now can still come in it).
pub fn keep_ids_from(
    newest_read: Option<OffsetDateTime>,
    oldest_left: Option<OffsetDateTime>,
    reach: time::Duration,
) -> Option<OffsetDateTime> {
    let anchor = match (newest_read, oldest_left) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(anchor - reach)
}

/// Bytes `[from, to)` of one blob to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub blob: ListedBlob,
    /// A line start: 0 or a consumed offset.
    pub from: u64,
    /// The length listed.
    pub to: u64,
}

impl Job {
    /// `<container>/<name>`.
    pub fn path(&self) -> String {
        self.blob.key.path()
    }

    /// The hour the blob's events were received in.
    pub fn hour(&self) -> OffsetDateTime {
        self.blob
            .hour
            .as_ref()
            .map_or(OffsetDateTime::UNIX_EPOCH, |h| h.hour)
    }
}

/// What a run reads: the jobs, oldest received hour first, and the blobs read again from their
/// start because they were written again under a name already read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub jobs: Vec<Job>,
    pub restarts: Vec<(String, RestartReason)>,
}

/// The reads of `listed` (this export's blobs of hours from `archive.read_from` on) given the
/// cursors: what grew since its cursor, new blobs whole, blobs written again from 0. Oldest
/// received hour first, so a run that stops leaves the newest hours, and repeated deliveries
/// meet the ids of what was read just before them.
pub fn plan(archive: &ArchiveState, listed: &[ListedBlob]) -> Plan {
    let mut plan = Plan::default();
    for blob in listed {
        let path = blob.key.path();
        match plan_read(archive.cursors.get(&path), blob) {
            ReadPlan::UpToDate => {}
            ReadPlan::Read { from, to } => plan.jobs.push(Job {
                blob: blob.clone(),
                from,
                to,
            }),
            ReadPlan::Restart { to, why } => {
                plan.restarts.push((path, why));
                plan.jobs.push(Job {
                    blob: blob.clone(),
                    from: 0,
                    to,
                });
            }
        }
    }
    plan.jobs
        .sort_by(|a, b| (a.hour(), &a.blob.key).cmp(&(b.hour(), &b.blob.key)));
    plan
}

/// The blobs of `listed` this export reads: under `prefix`, received from `read_from`'s hour on.
pub fn ours(listed: Vec<ListedBlob>, prefix: &str, read_from: OffsetDateTime) -> Vec<ListedBlob> {
    listed
        .into_iter()
        .filter(|blob| {
            blob.hour
                .as_ref()
                .is_some_and(|h| h.prefix == prefix && h.hour >= hour_of(read_from))
        })
        .collect()
}

/// Forgets the cursors of blobs that are gone from a container listed whole (the lifecycle rule
/// deleted them): `containers` were listed, `listed` is what they hold.
pub fn forget_deleted(archive: &mut ArchiveState, containers: &[&str], listed: &[ListedBlob]) {
    let present: BTreeSet<String> = listed.iter().map(|b| b.key.path()).collect();
    archive.cursors.retain(|path, _| {
        let container = path.split('/').next().unwrap_or_default();
        !containers.contains(&container) || present.contains(path)
    });
    let cursors = &archive.cursors;
    archive
        .replay
        .retain(|r| cursors.contains_key(&r.blob) || present.contains(&r.blob));
}

/// Where the archive is read from when an export switches from Graph: the hour of the first
/// instant from `export_from` on that Graph did not export. Every sign-in it still wants was
/// created at or after that instant, so it was received in that hour or later; older blobs hold
/// only sign-ins Graph exported (skipped by their creation time if read).
pub fn handover_start(
    export_from: OffsetDateTime,
    covered: &Coverage,
    now: OffsetDateTime,
) -> OffsetDateTime {
    let end = covered.end().unwrap_or(now).max(now).max(export_from) + time::Duration::SECOND;
    let first_missing = covered
        .holes(Span::new(export_from, end))
        .first()
        .map_or(end, |hole| hole.from);
    hour_of(first_missing)
}

/// Where the next runs read from: blobs older than [`HORIZON`] no longer grow, unless this run
/// left part of them unread.
pub fn next_start(now: OffsetDateTime, left: &[Job]) -> OffsetDateTime {
    left.iter()
        .map(Job::hour)
        .fold(hour_of(now - HORIZON), OffsetDateTime::min)
}

/// What remains after a run that left `left` unread (`None`: nothing), with the rows it probably
/// holds at `bytes_per_row`.
pub fn remaining(left: &[Job], bytes_per_row: Option<f64>) -> Option<Remaining> {
    let first = left.iter().map(Job::hour).min()?;
    let last = left.iter().map(Job::hour).max()?;
    let hours: BTreeSet<OffsetDateTime> = left.iter().map(Job::hour).collect();
    let bytes: u64 = left.iter().map(|job| job.to.saturating_sub(job.from)).sum();
    Some(Remaining {
        from: first,
        to: last + time::Duration::HOUR,
        holes: u32::try_from(left.len()).unwrap_or(u32::MAX),
        seconds: hours.len() as u64 * 3600,
        estimated_rows: bytes_per_row
            .filter(|b| b.is_finite() && *b > 0.0)
            .map(|b| (bytes as f64 / b).round() as u64),
        bytes: Some(bytes),
    })
}

/// The hour of a cursor's blob, from its key.
pub fn cursor_hour(path: &str) -> Option<OffsetDateTime> {
    BlobKey::from_path(path)
        .and_then(|key| BlobHour::parse(&key.name))
        .map(|blob| blob.hour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::BlobCursor;
    use crate::graph::model::EventType;
    use time::macros::datetime;

    const PREFIX: &str = "tenantId=t/";

    fn blob(event_type: EventType, hour: OffsetDateTime, length: u64) -> ListedBlob {
        let name = BlobHour::name(PREFIX, hour);
        ListedBlob {
            key: BlobKey {
                event_type,
                name: name.clone(),
            },
            hour: BlobHour::parse(&name),
            length,
            etag: None,
            created: Some(hour),
            last_modified: None,
        }
    }

    #[test]
    fn reads_what_grew_oldest_hour_first() {
        let h9 = datetime!(2026-11-30 09:00 UTC);
        let h10 = datetime!(2026-11-30 10:00 UTC);
        let listed = vec![
            blob(EventType::NonInteractiveUser, h10, 300),
            blob(EventType::InteractiveUser, h10, 100),
            blob(EventType::NonInteractiveUser, h9, 900),
            blob(EventType::InteractiveUser, h9, 50),
        ];
        let mut archive = ArchiveState::new(h9);
        let cursor = |offset, created| BlobCursor {
            offset,
            length: offset,
            etag: None,
            created: Some(created),
        };
        archive
            .cursors
            .insert(listed[2].key.path(), cursor(700, h9));
        archive.cursors.insert(listed[3].key.path(), cursor(50, h9));
        // Written again: another creation time.
        archive.cursors.insert(
            listed[1].key.path(),
            cursor(80, datetime!(2026-11-29 10:00 UTC)),
        );
        let plan = plan(&archive, &listed);
        let got: Vec<(OffsetDateTime, EventType, u64, u64)> = plan
            .jobs
            .iter()
            .map(|j| (j.hour(), j.blob.key.event_type, j.from, j.to))
            .collect();
        assert_eq!(
            got,
            vec![
                (h9, EventType::NonInteractiveUser, 700, 900),
                (h10, EventType::InteractiveUser, 0, 100),
                (h10, EventType::NonInteractiveUser, 0, 300),
            ]
        );
        assert_eq!(
            plan.restarts,
            vec![(listed[1].key.path(), RestartReason::Recreated)]
        );
    }

    #[test]
    fn only_this_exports_prefix_and_hours_are_read() {
        let h9 = datetime!(2026-11-30 09:00 UTC);
        let mut other = blob(EventType::InteractiveUser, h9, 10);
        let name = BlobHour::name("tenantId=other/", h9);
        other.hour = BlobHour::parse(&name);
        other.key.name = name;
        let listed = vec![
            blob(EventType::InteractiveUser, h9 - time::Duration::HOUR, 10),
            blob(EventType::InteractiveUser, h9, 10),
            other,
        ];
        let kept = ours(listed, PREFIX, h9 + time::Duration::minutes(30));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].hour.as_ref().unwrap().hour, h9);
    }

    #[test]
    fn deleted_blobs_lose_their_cursors_in_listed_containers_only() {
        let h9 = datetime!(2026-11-30 09:00 UTC);
        let kept = blob(EventType::InteractiveUser, h9, 10);
        let gone = blob(EventType::InteractiveUser, h9 - time::Duration::HOUR, 10);
        let elsewhere = blob(EventType::ManagedIdentity, h9, 10);
        let mut archive = ArchiveState::new(h9);
        for b in [&kept, &gone, &elsewhere] {
            archive.cursors.insert(
                b.key.path(),
                BlobCursor {
                    offset: 1,
                    length: 1,
                    etag: None,
                    created: None,
                },
            );
        }
        forget_deleted(
            &mut archive,
            &[EventType::InteractiveUser.diagnostic_container()],
            std::slice::from_ref(&kept),
        );
        let paths: BTreeSet<&String> = archive.cursors.keys().collect();
        assert_eq!(
            paths,
            BTreeSet::from([&kept.key.path(), &elsewhere.key.path()])
        );
    }

    #[test]
    fn a_switch_from_graph_reads_from_the_hour_of_the_first_instant_graph_left() {
        let now = datetime!(2026-11-30 10:17 UTC);
        let from = datetime!(2026-11-23 10:17 UTC);
        let cases: &[(&[(OffsetDateTime, OffsetDateTime)], OffsetDateTime)] = &[
            // Exported without a hole up to the watermark.
            (
                &[(from, datetime!(2026-11-30 10:02 UTC))],
                datetime!(2026-11-30 10:00 UTC),
            ),
            // A hole a deadline left.
            (
                &[
                    (from, datetime!(2026-11-25 03:40 UTC)),
                    (
                        datetime!(2026-11-26 00:00 UTC),
                        datetime!(2026-11-30 10:02 UTC),
                    ),
                ],
                datetime!(2026-11-25 03:00 UTC),
            ),
            // Nothing exported yet.
            (&[], datetime!(2026-11-23 10:00 UTC)),
        ];
        for (spans, want) in cases {
            let covered = Coverage::of(spans.iter().map(|(a, b)| Span::new(*a, *b)));
            assert_eq!(handover_start(from, &covered, now), *want, "{spans:?}");
        }
    }

    #[test]
    fn what_is_left_bounds_the_hours_and_estimates_rows() {
        let h9 = datetime!(2026-11-30 09:00 UTC);
        let now = datetime!(2026-11-30 10:17 UTC);
        assert_eq!(remaining(&[], Some(1.0)), None);
        assert_eq!(next_start(now, &[]), datetime!(2026-11-28 10:00 UTC));
        let left = vec![
            Job {
                blob: blob(EventType::InteractiveUser, h9, 1000),
                from: 400,
                to: 1000,
            },
            Job {
                blob: blob(EventType::NonInteractiveUser, h9, 1000),
                from: 0,
                to: 1000,
            },
            Job {
                blob: blob(EventType::InteractiveUser, h9 + time::Duration::HOUR, 400),
                from: 0,
                to: 400,
            },
        ];
        let r = remaining(&left, Some(100.0)).unwrap();
        assert_eq!((r.from, r.to), (h9, h9 + time::Duration::hours(2)));
        assert_eq!((r.holes, r.seconds, r.bytes), (3, 7200, Some(2000)));
        assert_eq!(r.estimated_rows, Some(20));
        assert_eq!(remaining(&left, None).unwrap().estimated_rows, None);
        // An old hour left unread holds the start back.
        let mut old = left[0].clone();
        old.blob = blob(
            EventType::InteractiveUser,
            datetime!(2026-11-25 09:00 UTC),
            1000,
        );
        assert_eq!(next_start(now, &[old]), datetime!(2026-11-25 09:00 UTC));
        assert_eq!(
            cursor_hour(&left[2].path()),
            Some(h9 + time::Duration::HOUR)
        );
    }

    #[test]
    fn ids_are_kept_from_the_hour_reading_stands_at() {
        let hour = time::Duration::HOUR;
        assert_eq!(id_reach(std::time::Duration::from_secs(900)), hour);
        assert_eq!(id_reach(std::time::Duration::from_secs(7200)), 2 * hour);
        let h9 = datetime!(2026-11-30 09:00 UTC);
        let h12 = datetime!(2026-11-30 12:00 UTC);
        assert_eq!(keep_ids_from(None, None, hour), None);
        assert_eq!(keep_ids_from(Some(h12), None, hour), Some(h12 - hour));
        // An older hour still to read holds the window back.
        assert_eq!(keep_ids_from(Some(h12), Some(h9), hour), Some(h9 - hour));
        assert_eq!(keep_ids_from(None, Some(h9), hour), Some(h9 - hour));
    }
}
