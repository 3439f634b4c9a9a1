//! The diagnostic-settings source's part of the state (`archive` in `_state/state.json`): how far
//! each blob is read, the ids that recognise a repeated delivery, and the commit of several daily
//! files at once. Pure: the run (`run::archive`) does the I/O.
//!
//! A read batch can feed several daily files (rows go to the file of their `createdDateTime`, so
//! a late delivery lands in an older day), and each file is committed on its own (one Put Block
//! List each), so the pending record ([`ArchivePending`]) holds a ticket per file, the cursors
//! the batch leaves and the byte ranges it read. After a crash the next run fences every ticket
//! and [`ArchiveState::settle`]s:
//!
//! * every file landed: the cursors and ids apply, as after a normal commit;
//! * none landed: nothing changes, the ranges are read again;
//! * some landed: the cursors stay, and each range becomes a [`Replay`] naming the files that
//!   landed. Reading the range again gives the same rows (the bytes below a listed length never
//!   change: append blobs only grow), and a row whose file is named there is not written again.
//!   A replay is dropped once its blob's cursor has passed its end.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

use super::Instant;
use crate::diagnostic::cursor::forget_before;
use crate::diagnostic::{BlobCursor, Cursors};
use crate::sink::CommitTicket;

/// The ids of committed rows by the hour their blob was received in (see [`crate::diagnostic`],
/// "Repeated deliveries"): Azure Monitor writes a sign-in to the blob of the hour it receives
/// it, and a repeated delivery carries the same id into the same hour's blob or a neighbour's,
/// so a row whose id is in a bucket near its own blob's hour was written already. Each id is its
/// 128-bit [`id_key`](crate::diagnostic::cursor::id_key), big-endian, sorted within its hour:
/// 16 bytes an id in memory; in the state each hour is one base64 string, written and read
/// without a copy of the hour's ids (at 10M sign-ins a day an hour holds ~400,000).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdWindow {
    buckets: BTreeMap<OffsetDateTime, Vec<[u8; 16]>>,
}

impl IdWindow {
    /// The window of `ids` (key, received hour of its blob), any order, repeats allowed.
    pub fn of(ids: impl IntoIterator<Item = (u128, OffsetDateTime)>) -> IdWindow {
        let mut buckets: BTreeMap<OffsetDateTime, Vec<[u8; 16]>> = BTreeMap::new();
        for (key, hour) in ids {
            buckets.entry(hour).or_default().push(key.to_be_bytes());
        }
        for keys in buckets.values_mut() {
            keys.sort_unstable();
            keys.dedup();
        }
        IdWindow { buckets }
    }

    /// Whether the id `key` is in a bucket within `reach` of `hour` (either side).
    pub fn contains(&self, key: u128, hour: OffsetDateTime, reach: time::Duration) -> bool {
        let key = key.to_be_bytes();
        self.buckets
            .range(hour - reach..=hour + reach)
            .any(|(_, keys)| keys.binary_search(&key).is_ok())
    }

    /// Adds every id of `other`.
    pub fn merge(&mut self, other: IdWindow) {
        for (bucket, keys) in other.buckets {
            let mine = self.buckets.entry(bucket).or_default();
            mine.extend(keys);
            mine.sort_unstable();
            mine.dedup();
        }
    }

    /// Forgets the hours before `t`.
    pub fn forget_before(&mut self, t: OffsetDateTime) {
        self.buckets.retain(|hour, _| *hour >= t);
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.values().all(Vec::is_empty)
    }
}

impl Serialize for IdWindow {
    /// Each hour's ids as one base64 string, encoded straight into the output.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Base64<'k>(&'k [[u8; 16]]);
        impl Serialize for Base64<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&base64::display::Base64Display::new(
                    self.0.as_flattened(),
                    &base64::engine::general_purpose::STANDARD,
                ))
            }
        }
        let mut map = serializer.serialize_map(None)?;
        for (hour, keys) in self.buckets.iter().filter(|(_, keys)| !keys.is_empty()) {
            map.serialize_entry(&Instant(*hour), &Base64(keys))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for IdWindow {
    /// Each hour's string decoded as it is read (borrowed from the document when it can be).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::DeserializeSeed<'de> for Keys {
            type Value = Vec<[u8; 16]>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_str(self)
            }
        }
        impl serde::de::Visitor<'_> for Keys {
            type Value = Vec<[u8; 16]>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("base64 of 16-byte ids")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                // Decoded straight into the ids: an hour holds up to a few MB of them.
                let estimate = base64::decoded_len_estimate(text.len());
                let mut keys = vec![[0u8; 16]; estimate.div_ceil(16)];
                let written = base64::engine::general_purpose::STANDARD
                    .decode_slice(text, keys.as_flattened_mut())
                    .map_err(E::custom)?;
                if written % 16 != 0 {
                    return Err(E::custom(
                        "an id bucket is not a whole number of 16-byte ids",
                    ));
                }
                keys.truncate(written / 16);
                keys.sort_unstable();
                keys.dedup();
                Ok(keys)
            }
        }
        struct Hours;
        impl<'de> serde::de::Visitor<'de> for Hours {
            type Value = IdWindow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of hours to base64 ids")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<IdWindow, A::Error> {
                let mut buckets = BTreeMap::new();
                while let Some(hour) = map.next_key::<Instant>()? {
                    buckets.insert(hour.0, map.next_value_seed(Keys)?);
                }
                Ok(IdWindow { buckets })
            }
        }
        deserializer.deserialize_map(Hours)
    }
}

/// Bytes `[from, to)` of one blob (`<container>/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadRange {
    pub blob: String,
    pub from: u64,
    pub to: u64,
}

/// A range read by a commit of which only some files landed: its rows of those files are
/// written already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub blob: String,
    pub from: u64,
    pub to: u64,
    /// The daily files whose commit landed.
    pub written: BTreeSet<String>,
}

/// A prepared commit of one read batch: a ticket per daily file, and what the batch read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivePending {
    pub tickets: Vec<CommitTicket>,
    /// The cursors of the blobs the batch read, once it is committed.
    pub cursors: Cursors,
    /// What the batch read of each blob (for a replay, should only some tickets land).
    pub ranges: Vec<ReadRange>,
    /// The new ids the window keeps, by the hour of their blob.
    #[serde(default, skip_serializing_if = "IdWindow::is_empty")]
    pub ids: IdWindow,
    pub rows: u64,
    /// The newest `createdDateTime` among the batch's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<Instant>,
}

/// What the state records of the diagnostic-settings source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveState {
    /// Blobs of hours received before this are not read: they cannot hold a sign-in the export
    /// wants, or they were read completely and their cursors forgotten.
    #[serde(with = "time::serde::rfc3339")]
    pub read_from: OffsetDateTime,
    /// The source prefix read (`tenantId=<id>/`), once blobs were seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Per blob, `<container>/<name>`: the bytes consumed and what the blob looked like.
    #[serde(default)]
    pub cursors: Cursors,
    /// Ids of committed rows, by the hour of their blob, from the hours still near what is read.
    #[serde(default, skip_serializing_if = "IdWindow::is_empty")]
    pub ids: IdWindow,
    /// The newest `createdDateTime` committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<Instant>,
    /// A commit recorded but not yet known to be settled (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<ArchivePending>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replay: Vec<Replay>,
    /// Bytes of the archive per row exported, over what was committed: the estimate of what
    /// remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_row: Option<f64>,
}

impl ArchiveState {
    /// An archive export that reads blobs received from `read_from`'s hour on.
    pub fn new(read_from: OffsetDateTime) -> ArchiveState {
        ArchiveState {
            read_from,
            prefix: None,
            cursors: Cursors::new(),
            ids: IdWindow::default(),
            newest: None,
            pending: None,
            replay: Vec::new(),
            bytes_per_row: None,
        }
    }

    /// Whether the row at `offset` of `blob`, which goes to `file`, was written by a commit of
    /// which only some files landed.
    pub fn written_before(&self, blob: &str, offset: u64, file: &str) -> bool {
        self.replay
            .iter()
            .any(|r| r.blob == blob && (r.from..r.to).contains(&offset) && r.written.contains(file))
    }

    /// Whether `blob` has ranges to replay.
    pub fn replays(&self, blob: &str) -> bool {
        self.replay.iter().any(|r| r.blob == blob)
    }

    /// `blob` is read again from its start (written again under its name): what was recorded of
    /// it no longer applies.
    pub fn restart(&mut self, blob: &str) {
        self.cursors.remove(blob);
        self.replay.retain(|r| r.blob != blob);
    }

    /// Settles `pending` given which of its tickets landed (in order). Returns whether any did
    /// (`latest.csv` then needs a rebuild).
    pub fn settle(&mut self, pending: ArchivePending, landed: &[bool]) -> bool {
        let landed_files: BTreeSet<String> = pending
            .tickets
            .iter()
            .zip(landed)
            .filter(|(_, landed)| **landed)
            .map(|(ticket, _)| ticket.file.clone())
            .collect();
        if landed_files.len() == pending.tickets.len() {
            let any = !pending.tickets.is_empty();
            self.apply(pending, None);
            return any;
        }
        if landed_files.is_empty() {
            return false;
        }
        for range in pending.ranges {
            self.replay.push(Replay {
                blob: range.blob,
                from: range.from,
                to: range.to,
                written: landed_files.clone(),
            });
        }
        true
    }

    /// Applies a commit whose files all landed (or that had none): cursors, ids, the newest row;
    /// the window then forgets the hours before `keep_from`.
    pub fn apply(&mut self, pending: ArchivePending, keep_from: Option<OffsetDateTime>) {
        for (blob, cursor) in pending.cursors {
            self.cursors.insert(blob, cursor);
        }
        let cursors = &self.cursors;
        self.replay.retain(|r| {
            cursors
                .get(&r.blob)
                .is_none_or(|c: &BlobCursor| c.offset < r.to)
        });
        if let Some(newest) = pending.newest {
            self.newest = Some(self.newest.map_or(newest, |n| n.max(newest)));
        }
        self.ids.merge(pending.ids);
        if let Some(keep_from) = keep_from {
            self.ids.forget_before(keep_from);
        }
    }

    /// Records the bytes per row of a commit, weighted like the Graph path's rows per second.
    pub fn learn_bytes_per_row(&mut self, bytes: u64, rows: u64) {
        if rows == 0 || bytes == 0 {
            return;
        }
        let observed = bytes as f64 / rows as f64;
        self.bytes_per_row = Some(match self.bytes_per_row {
            Some(known) if known.is_finite() => known + (observed - known) * 0.25,
            _ => observed,
        });
    }

    /// Raises `read_from` to `to` (never lowers it) and forgets what lies below: cursors of
    /// blobs of older hours, their replays.
    pub fn move_start(&mut self, to: OffsetDateTime) {
        if to <= self.read_from {
            return;
        }
        self.read_from = to;
        forget_before(&mut self.cursors, to);
        let cursors = &self.cursors;
        self.replay.retain(|r| cursors.contains_key(&r.blob));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ticket(file: &str) -> CommitTicket {
        CommitTicket {
            file: file.into(),
            detail: serde_json::json!({"marker": file}),
        }
    }

    fn cursor(offset: u64) -> BlobCursor {
        BlobCursor {
            offset,
            length: offset + 10,
            etag: None,
            created: None,
        }
    }

    fn pending(files: &[&str]) -> ArchivePending {
        ArchivePending {
            tickets: files.iter().map(|f| ticket(f)).collect(),
            cursors: [
                ("c/a".to_string(), cursor(500)),
                ("c/b".to_string(), cursor(90)),
            ]
            .into_iter()
            .collect(),
            ranges: vec![
                ReadRange {
                    blob: "c/a".into(),
                    from: 100,
                    to: 500,
                },
                ReadRange {
                    blob: "c/b".into(),
                    from: 0,
                    to: 90,
                },
            ],
            ids: IdWindow::of([(7, datetime!(2026-11-30 09:00 UTC))]),
            rows: 12,
            newest: Some(Instant(datetime!(2026-11-30 09:59 UTC))),
        }
    }

    #[test]
    fn the_id_window_finds_ids_near_their_hour_and_forgets_old_hours() {
        let h9 = datetime!(2026-11-30 09:00 UTC);
        let h10 = datetime!(2026-11-30 10:00 UTC);
        let hour = time::Duration::HOUR;
        let mut window = IdWindow::of([(3, h9), (1, h9), (3, h9), (9, h10)]);
        assert_eq!(window.len(), 3);
        assert!(window.contains(1, h9, time::Duration::ZERO));
        assert!(window.contains(1, h10, hour), "the next hour's blob");
        assert!(
            window.contains(9, h9, hour),
            "the previous hour's blob, grown late"
        );
        assert!(!window.contains(1, h10 + hour, hour), "two hours apart");
        assert!(!window.contains(2, h9, hour));
        window.merge(IdWindow::of([(2, h9), (1, h9)]));
        assert_eq!(window.len(), 4);
        window.forget_before(h10);
        assert!(!window.contains(1, h10, hour));
        assert!(window.contains(9, h10, hour));
        // The state's form: one base64 string per hour, read back equal.
        let json = serde_json::to_value(&window).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"2026-11-30T10:00:00Z": "AAAAAAAAAAAAAAAAAAAACQ=="})
        );
        let back: IdWindow = serde_json::from_value(json).unwrap();
        assert_eq!(back, window);
        assert!(serde_json::from_value::<IdWindow>(
            serde_json::json!({"2026-11-30T10:00:00Z": "AAAA"})
        )
        .is_err());
    }

    #[test]
    fn a_commit_whose_files_all_landed_applies_its_cursors_and_ids() {
        let mut state = ArchiveState::new(datetime!(2026-11-30 00:00 UTC));
        state.replay.push(Replay {
            blob: "c/a".into(),
            from: 100,
            to: 400,
            written: ["daily/2026-11-29.csv".to_string()].into(),
        });
        assert!(state.settle(
            pending(&["daily/2026-11-29.csv", "daily/2026-11-30.csv"]),
            &[true, true],
        ));
        assert_eq!(state.cursors["c/a"].offset, 500);
        assert_eq!(state.cursors["c/b"].offset, 90);
        assert!(state.replay.is_empty(), "the cursor passed the replay");
        let h9 = datetime!(2026-11-30 09:00 UTC);
        assert!(state.ids.contains(7, h9, time::Duration::ZERO));
        assert_eq!(state.newest, Some(Instant(datetime!(2026-11-30 09:59 UTC))));
        // A settled commit (after a crash) keeps every id; a run's commit forgets old hours.
        let mut later = pending(&[]);
        let h12 = datetime!(2026-11-30 12:00 UTC);
        later.ids = IdWindow::of([(8, h12)]);
        later.newest = Some(Instant(h12));
        assert!(
            !state.settle(later.clone(), &[]),
            "no file, nothing to rebuild"
        );
        assert!(state.ids.contains(7, h9, time::Duration::ZERO));
        state.apply(later, Some(h12 - time::Duration::HOUR));
        assert!(!state.ids.contains(7, h9, time::Duration::ZERO));
        assert!(state.ids.contains(8, h12, time::Duration::ZERO));
    }

    #[test]
    fn a_commit_that_did_not_land_changes_nothing() {
        let mut state = ArchiveState::new(datetime!(2026-11-30 00:00 UTC));
        let before = state.clone();
        assert!(!state.settle(pending(&["daily/2026-11-30.csv"]), &[false]));
        assert_eq!(state, before);
    }

    #[test]
    fn a_commit_of_which_some_files_landed_is_replayed_without_them() {
        let mut state = ArchiveState::new(datetime!(2026-11-30 00:00 UTC));
        state.cursors.insert("c/a".into(), cursor(100));
        let files = ["daily/2026-11-29.csv", "daily/2026-11-30.csv"];
        assert!(state.settle(pending(&files), &[true, false]));
        assert_eq!(state.cursors["c/a"].offset, 100, "cursors stay");
        assert!(!state.cursors.contains_key("c/b"));
        assert!(state.ids.is_empty());
        assert!(state.written_before("c/a", 100, files[0]));
        assert!(state.written_before("c/a", 499, files[0]));
        assert!(
            !state.written_before("c/a", 500, files[0]),
            "past the range"
        );
        assert!(!state.written_before("c/a", 200, files[1]), "did not land");
        assert!(state.written_before("c/b", 0, files[0]));
        assert!(state.replays("c/b") && !state.replays("c/z"));
        // The replay's own commit lands: the cursors pass the ranges, the replays go.
        assert!(state.settle(pending(&[files[1]]), &[true]));
        assert!(state.replay.is_empty());
        // Written again under its name: nothing recorded of it applies.
        state.replay.push(Replay {
            blob: "c/a".into(),
            from: 0,
            to: 900,
            written: BTreeSet::new(),
        });
        state.restart("c/a");
        assert!(!state.cursors.contains_key("c/a") && state.replay.is_empty());
    }

    #[test]
    fn moving_the_start_forgets_older_cursors_only() {
        let mut state = ArchiveState::new(datetime!(2026-11-28 00:00 UTC));
        let blob = |day: &str| {
            format!("insights-logs-signinlogs/tenantId=t/y=2026/m=11/d={day}/h=05/m=00/PT1H.json")
        };
        for path in [blob("28"), blob("29")] {
            state.cursors.insert(path, cursor(1));
        }
        state.replay.push(Replay {
            blob: blob("28"),
            from: 0,
            to: 1,
            written: BTreeSet::new(),
        });
        state.move_start(datetime!(2026-11-29 00:00 UTC));
        assert_eq!(state.read_from, datetime!(2026-11-29 00:00 UTC));
        assert_eq!(state.cursors.keys().collect::<Vec<_>>(), vec![&blob("29")]);
        assert!(state.replay.is_empty());
        state.move_start(datetime!(2026-11-28 00:00 UTC));
        assert_eq!(
            state.read_from,
            datetime!(2026-11-29 00:00 UTC),
            "never lowered"
        );
    }

    #[test]
    fn bytes_per_row_follows_what_was_committed() {
        let mut state = ArchiveState::new(datetime!(2026-11-30 00:00 UTC));
        state.learn_bytes_per_row(0, 0);
        assert_eq!(state.bytes_per_row, None);
        state.learn_bytes_per_row(4000, 1);
        state.learn_bytes_per_row(2000, 1);
        assert_eq!(state.bytes_per_row, Some(3500.0));
    }
}
