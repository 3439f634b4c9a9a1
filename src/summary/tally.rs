//! A day's tally: per place and per device, the sign-ins, failures, users, first and newest
//! sign-in of a set of rows. Tallies merge — sums, unions, minimum and maximum, each associative
//! and commutative — so the tally of a daily file is the merge of the tallies of the rows each
//! commit added, in any order, and equals the tally of the whole file read again.

use std::cmp::Ordering;

use foldhash::{HashMap, HashSet};

use super::merge::{Entry, EntryKey, SpillRun};
use super::rows::{Row, RowLayout, RowReader};
use super::SummaryError;

/// Separates the parts of a key. The export replaces every line break in a cell with a space, so
/// no part contains one and a joined key splits back into exactly its parts.
pub(super) const KEY_SEPARATOR: char = '\n';

/// What one set of rows holds: per device and per place a [`Group`], and which users signed in
/// at each place. What does not fit [`HELD_BYTES`] is spilled to sorted runs on local disk
/// ([`merge`](super::merge)), so a day of any size is tallied in bounded memory.
#[derive(Debug, Default)]
pub struct DayTally {
    /// Rows tallied.
    pub rows: u64,
    /// Rows with a point on the map.
    pub located: u64,
    /// Device key → group. The key joins user, device id, then — only without a device id —
    /// device name, system and browser, then client app and app (by [`KEY_SEPARATOR`]).
    devices: HashMap<String, Group>,
    /// Place key (`latitude` and `longitude` as written, joined by [`KEY_SEPARATOR`]) → group.
    places: HashMap<String, Group>,
    /// Place key and a `userPrincipalName` at it (empty ones left out), joined.
    place_users: HashSet<String>,
    /// Estimated heap bytes of the three maps.
    held: usize,
    /// Entries spilled, each run sorted.
    runs: Vec<SpillRun>,
    /// Reused to build keys.
    key: String,
}

/// Estimated heap bytes a tally holds in its maps before it spills them to a sorted run.
pub const HELD_BYTES: usize = 1024 * 1024;
/// A map entry's bytes beyond its strings: its share of the hash table, the strings' headers.
const ENTRY_OVERHEAD: usize = 96;

/// The sign-ins of one device or place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub sign_ins: u64,
    pub failures: u64,
    pub first_seen: String,
    /// The newest sign-in. Devices: user name, device name, system, browser, location, IP
    /// address, compliant, managed, trust type. Places: `location`, city, state, country, user,
    /// client app, app.
    pub newest: Newest,
}

impl Group {
    fn of(created: &str, failure: u64, newest: &[&str]) -> Group {
        Group {
            sign_ins: 1,
            failures: failure,
            first_seen: created.to_string(),
            newest: Newest::of(created, newest),
        }
    }

    fn add(&mut self, created: &str, failure: u64, newest: &[&str]) {
        self.sign_ins += 1;
        self.failures += failure;
        keep_earliest(&mut self.first_seen, created);
        self.newest.offer(created, newest);
    }

    /// Merges `other` in: sums, the earliest first sign-in, the newest sign-in.
    pub fn absorb(&mut self, other: Group) {
        self.sign_ins += other.sign_ins;
        self.failures += other.failures;
        keep_earliest(&mut self.first_seen, &other.first_seen);
        self.newest.absorb(other.newest);
    }

    fn bytes(&self) -> usize {
        self.first_seen.len() + self.newest.0.len()
    }
}

/// A group's newest sign-in: its `createdDateTime` and values, joined by [`KEY_SEPARATOR`] in one
/// string (one allocation per group, not one per value: a new group is the tally's main cost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest(String);

impl Newest {
    /// A newest sign-in as [`Newest::text`] gave it.
    pub(super) fn from_text(text: String) -> Newest {
        Newest(text)
    }

    /// The instant and values joined by [`KEY_SEPARATOR`], as stored.
    pub(super) fn text(&self) -> &str {
        &self.0
    }

    fn of(created: &str, values: &[&str]) -> Newest {
        let mut text = String::with_capacity(
            created.len() + values.iter().map(|v| v.len() + 1).sum::<usize>(),
        );
        text.push_str(created);
        for value in values {
            text.push(KEY_SEPARATOR);
            text.push_str(value);
        }
        Newest(text)
    }

    pub fn created(&self) -> &str {
        self.0.split(KEY_SEPARATOR).next().unwrap_or("")
    }

    /// The first `N` values (`""` past the end), split once: for a row that shows them all.
    pub fn first_values<const N: usize>(&self) -> [&str; N] {
        let mut values = [""; N];
        for (slot, value) in values.iter_mut().zip(self.values().split(KEY_SEPARATOR)) {
            *slot = value;
        }
        values
    }

    /// Value `i` (`""` past the end; tests).
    #[cfg(test)]
    pub(crate) fn value(&self, i: usize) -> &str {
        self.0.split(KEY_SEPARATOR).nth(i + 1).unwrap_or("")
    }

    fn values(&self) -> &str {
        self.0
            .split_once(KEY_SEPARATOR)
            .map_or("", |(_, values)| values)
    }

    /// The order that decides which sign-in is the newest: the creation instant, then the values
    /// (a total order, so that merging in any order picks the same one).
    fn order(created: &str, values: &[&str], than: &Newest) -> Ordering {
        instant_order(created, than.created()).then_with(|| {
            // Same instant: rare, so the values are joined as `Newest` holds them.
            let mut joined = String::new();
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    joined.push(KEY_SEPARATOR);
                }
                joined.push_str(value);
            }
            joined.as_str().cmp(than.values())
        })
    }

    fn offer(&mut self, created: &str, values: &[&str]) {
        if Newest::order(created, values, self) == Ordering::Greater {
            // Rows come newest first, so this is rare; the allocation is reused.
            self.0.clear();
            self.0.push_str(created);
            for value in values {
                self.0.push(KEY_SEPARATOR);
                self.0.push_str(value);
            }
        }
    }

    pub(super) fn absorb(&mut self, other: Newest) {
        let order = instant_order(other.created(), self.created())
            .then_with(|| other.values().cmp(self.values()));
        if order == Ordering::Greater {
            *self = other;
        }
    }
}

/// Orders two `createdDateTime` cells by the instant they name (ISO 8601 UTC, `…:SS[.fffffff]Z`:
/// plain byte order would put `10:00:00.5Z` before `10:00:00Z`), then by their text.
pub(super) fn instant_order(a: &str, b: &str) -> Ordering {
    fn split(t: &str) -> (&str, &str) {
        match (t.get(..19), t.get(19..)) {
            (Some(seconds), Some(rest)) => {
                (seconds, rest.trim_start_matches('.').trim_end_matches('Z'))
            }
            _ => (t, ""),
        }
    }
    let ((a_seconds, a_fraction), (b_seconds, b_fraction)) = (split(a), split(b));
    a_seconds
        .cmp(b_seconds)
        .then_with(|| {
            // Fractions compare as digits padded with zeros: "5" = "50" > "05".
            fn padded(fraction: &str, width: usize) -> impl Iterator<Item = u8> + '_ {
                fraction.bytes().chain(std::iter::repeat(b'0')).take(width)
            }
            let width = a_fraction.len().max(b_fraction.len());
            padded(a_fraction, width).cmp(padded(b_fraction, width))
        })
        .then_with(|| a.cmp(b))
}

/// The earlier of two first-seen instants.
fn keep_earliest(first: &mut String, candidate: &str) {
    if instant_order(candidate, first) == Ordering::Less {
        first.clear();
        first.push_str(candidate);
    }
}

/// A sign-in failed: its `statusErrorCode` is there and not 0.
fn failed(status: &str) -> bool {
    !status.is_empty() && status != "0"
}

/// Whether `latitude`, `longitude` are a point on the map: numbers within ±90 / ±180, not
/// exactly 0 and 0 (the flattener's rule; files of older versions may hold 0,0).
pub(super) fn point(latitude: &str, longitude: &str) -> Option<(f64, f64)> {
    let latitude: f64 = latitude.trim().parse().ok()?;
    let longitude: f64 = longitude.trim().parse().ok()?;
    let known = latitude.is_finite()
        && longitude.is_finite()
        && (-90.0..=90.0).contains(&latitude)
        && (-180.0..=180.0).contains(&longitude)
        && (latitude, longitude) != (0.0, 0.0);
    known.then_some((latitude, longitude))
}

/// Joins key parts with [`KEY_SEPARATOR`] into `out` (cleared first).
fn join_key(parts: &[&str], out: &mut String) {
    out.clear();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEPARATOR);
        }
        out.push_str(part);
    }
}

impl DayTally {
    /// Adds the rows of `bytes` — whole rows of the export's CSV, no header — and returns how many
    /// (tests; a run tallies each row as it encodes it, [`DayTally::add`]).
    #[cfg(test)]
    pub(crate) fn add_rows(
        &mut self,
        layout: &RowLayout,
        bytes: &[u8],
        what: &str,
    ) -> Result<u64, SummaryError> {
        let mut file = FileTally::new(layout.clone(), what);
        file.tally = std::mem::take(self);
        let before = file.tally.rows;
        file.feed(bytes)?;
        *self = file.finish()?;
        Ok(self.rows - before)
    }

    /// Adds one row of the export's (its fields as written); spills when the maps outgrow
    /// [`HELD_BYTES`].
    pub fn add(&mut self, layout: &RowLayout, row: Row<'_>) -> Result<(), SummaryError> {
        let mut key = std::mem::take(&mut self.key);
        self.add_row(layout, row, &mut key);
        self.key = key;
        self.spill_if_full()
    }

    /// Merges `other` in; spills when the maps outgrow [`HELD_BYTES`].
    pub fn absorb(&mut self, mut other: DayTally) -> Result<(), SummaryError> {
        self.rows += other.rows;
        self.located += other.located;
        self.runs.append(&mut other.runs);
        SpillRun::compact(&mut self.runs)?;
        self.held += absorb_groups(&mut self.devices, other.devices);
        self.held += absorb_groups(&mut self.places, other.places);
        for pair in other.place_users {
            self.add_pair_key(pair);
        }
        self.spill_if_full()
    }

    /// Adds that `user` was seen in `group` (a place key; the summaries' rounding uses a cell).
    pub(super) fn add_pair(&mut self, group: &str, user: &str) {
        let mut key = String::with_capacity(group.len() + 1 + user.len());
        key.push_str(group);
        key.push(KEY_SEPARATOR);
        key.push_str(user);
        self.add_pair_key(key);
    }

    fn add_pair_key(&mut self, key: String) {
        let bytes = ENTRY_OVERHEAD + key.len();
        if self.place_users.insert(key) {
            self.held += bytes;
        }
    }

    /// Writes the maps to a sorted run when they hold more than [`HELD_BYTES`].
    pub(super) fn spill_if_full(&mut self) -> Result<(), SummaryError> {
        if self.held > HELD_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes what the maps hold to a sorted run on local disk and empties them.
    pub fn spill(&mut self) -> Result<(), SummaryError> {
        if self.devices.is_empty() && self.places.is_empty() && self.place_users.is_empty() {
            return Ok(());
        }
        // Hash maps while tallying (a row is a lookup, not a walk down a tree), sorted once here.
        let devices = sorted(std::mem::take(&mut self.devices))
            .map(|(key, group)| Entry::group(EntryKey::Device(key), group));
        let places = sorted(std::mem::take(&mut self.places))
            .map(|(key, group)| Entry::group(EntryKey::Place(key), group));
        let mut pairs: Vec<String> = std::mem::take(&mut self.place_users).into_iter().collect();
        pairs.sort_unstable();
        let pairs = pairs
            .into_iter()
            .map(|key| Entry::pair(EntryKey::PlaceUser(key)));
        self.held = 0;
        self.runs
            .push(SpillRun::write(devices.chain(places).chain(pairs))?);
        SpillRun::compact(&mut self.runs)
    }

    /// Every entry tallied, as sorted runs to merge ([`Merge`](super::Merge)).
    pub fn into_runs(mut self) -> Result<Vec<SpillRun>, SummaryError> {
        self.spill()?;
        Ok(self.runs)
    }

    fn add_row(&mut self, layout: &RowLayout, row: Row<'_>, key: &mut String) {
        let created = row.get(layout.created);
        let failure = u64::from(failed(row.field(layout.status)));
        let user = row.field(layout.user);
        let client_app = row.field(layout.client_app);
        let app = row.field(layout.app);
        let location = row.field(layout.location);
        self.rows += 1;

        let device_id = row.field(layout.device_id);
        let (name, os, browser) = (
            row.field(layout.device_name),
            row.field(layout.os),
            row.field(layout.browser),
        );
        let described = if device_id.is_empty() {
            [name, os, browser]
        } else {
            ["", "", ""]
        };
        join_key(
            &[
                user,
                device_id,
                described[0],
                described[1],
                described[2],
                client_app,
                app,
            ],
            key,
        );
        let newest = [
            row.field(layout.user_name),
            name,
            os,
            browser,
            location,
            row.field(layout.ip),
            row.field(layout.compliant),
            row.field(layout.managed),
            row.field(layout.trust),
        ];
        self.held += add_sign_in(&mut self.devices, key, created, failure, &newest);

        let (latitude, longitude) = (row.field(layout.latitude), row.field(layout.longitude));
        if point(latitude, longitude).is_none() {
            return;
        }
        self.located += 1;
        join_key(&[latitude, longitude], key);
        let newest = [
            location,
            row.field(layout.city),
            row.field(layout.state),
            row.field(layout.country),
            user,
            client_app,
            app,
        ];
        self.held += add_sign_in(&mut self.places, key, created, failure, &newest);
        if !user.is_empty() {
            key.push(KEY_SEPARATOR);
            key.push_str(user);
            if !self.place_users.contains(key.as_str()) {
                self.held += ENTRY_OVERHEAD + key.len();
                self.place_users.insert(key.clone());
            }
        }
    }
}

/// The groups of `groups` in key order.
fn sorted(groups: HashMap<String, Group>) -> impl Iterator<Item = (String, Group)> {
    let mut groups: Vec<(String, Group)> = groups.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    groups.into_iter()
}

/// Merges `other` into `groups`; returns the bytes the new groups hold.
fn absorb_groups(groups: &mut HashMap<String, Group>, other: HashMap<String, Group>) -> usize {
    let mut added = 0;
    for (key, group) in other {
        match groups.get_mut(&key) {
            Some(mine) => mine.absorb(group),
            None => {
                added += ENTRY_OVERHEAD + key.len() + group.bytes();
                groups.insert(key, group);
            }
        }
    }
    added
}

/// Adds a sign-in to the group of `key` in `groups`; returns the bytes a new group holds.
fn add_sign_in(
    groups: &mut HashMap<String, Group>,
    key: &str,
    created: &str,
    failure: u64,
    newest: &[&str],
) -> usize {
    match groups.get_mut(key) {
        Some(group) => {
            group.add(created, failure, newest);
            0
        }
        None => {
            let group = Group::of(created, failure, newest);
            let bytes = ENTRY_OVERHEAD + key.len() + group.bytes();
            groups.insert(key.to_string(), group);
            bytes
        }
    }
}

/// Tallies a file's rows chunk by chunk (a daily file read in ranges: memory stays flat).
pub struct FileTally {
    layout: RowLayout,
    reader: RowReader,
    tally: DayTally,
    key: String,
    what: String,
    problem: Option<(u64, String)>,
}

impl FileTally {
    /// `what` names the rows in errors (a file, a block).
    pub fn new(layout: RowLayout, what: &str) -> FileTally {
        FileTally {
            layout,
            reader: RowReader::default(),
            tally: DayTally::default(),
            key: String::new(),
            what: what.to_string(),
            problem: None,
        }
    }

    /// Tallies the rows `chunk` completes (no header: skip it before).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), SummaryError> {
        self.read(Some(chunk))?;
        self.tally.spill_if_full()
    }

    /// The tally of every row fed.
    pub fn finish(mut self) -> Result<DayTally, SummaryError> {
        self.read(None)?;
        Ok(self.tally)
    }

    /// Reads `chunk`, or (`None`) the last row if it lacks its line break.
    fn read(&mut self, chunk: Option<&[u8]>) -> Result<(), SummaryError> {
        let FileTally {
            layout,
            reader,
            tally,
            key,
            problem,
            ..
        } = self;
        let mut each = |row: Row<'_>| {
            if row.len() != layout.width {
                problem.get_or_insert((
                    tally.rows + 1,
                    format!("{} fields where the header has {}", row.len(), layout.width),
                ));
            } else if problem.is_none() {
                tally.add_row(layout, row, key);
            }
        };
        let read = match chunk {
            Some(chunk) => reader.feed(chunk, &mut each),
            None => reader.finish(&mut each),
        };
        self.check(read)
    }

    fn check(&mut self, read: Result<(), String>) -> Result<(), SummaryError> {
        let problem = match read {
            Err(problem) => Some((self.reader.rows(), problem)),
            Ok(()) => self.problem.take(),
        };
        match problem {
            None => Ok(()),
            Some((row, problem)) => Err(SummaryError::Malformed {
                what: self.what.clone(),
                row,
                problem,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [&str; 12] = [
        "createdDateTime",
        "userPrincipalName",
        "userDisplayName",
        "clientAppUsed",
        "appDisplayName",
        "statusErrorCode",
        "deviceId",
        "deviceOperatingSystem",
        "latitude",
        "longitude",
        "location",
        "ipAddress",
    ];

    fn layout() -> RowLayout {
        RowLayout::new(&COLUMNS).unwrap()
    }

    fn tally(text: &str) -> DayTally {
        let mut tally = DayTally::default();
        tally.add_rows(&layout(), text.as_bytes(), "test").unwrap();
        tally
    }

    const ROWS: &str = "\
2026-11-28T10:00:00Z,a@x,Ann,Exchange ActiveSync,Exchange,0,,iOS,47.6,-122.3,\"Redmond, WA, US\",10.0.0.1\r\n\
2026-11-28T09:00:00Z,a@x,Ann,Exchange ActiveSync,Exchange,50126,,iOS,47.6,-122.3,\"Redmond, WA, US\",10.0.0.2\r\n\
2026-11-28T11:00:00.5Z,b@x,Bob,Exchange ActiveSync,Exchange,0,dev-1,Android,47.6,-122.3,\"Redmond, WA, US\",10.0.0.3\r\n\
2026-11-28T11:00:00Z,b@x,Bob,Exchange ActiveSync,Exchange,0,dev-1,Android 14,0,0,,10.0.0.4\r\n\
2026-11-28T08:00:00Z,c@x,Cy,Browser,Office,0,,Windows,,,,10.0.0.5\r\n";

    use crate::summary::merge::entries_of;
    use crate::summary::{Entry, EntryKey};

    fn group<'a>(entries: &'a [Entry], key: &EntryKey) -> &'a Group {
        entries
            .iter()
            .find(|e| e.key == *key)
            .and_then(|e| e.group.as_ref())
            .unwrap_or_else(|| panic!("no {key:?}"))
    }

    #[tokio::test]
    async fn rows_count_per_place_and_device() {
        let t = tally(ROWS);
        assert_eq!((t.rows, t.located), (5, 3));
        let entries = entries_of(t).await;
        let place = group(&entries, &EntryKey::Place("47.6\n-122.3".into()));
        assert_eq!((place.sign_ins, place.failures), (3, 1));
        assert_eq!(place.first_seen, "2026-11-28T09:00:00Z");
        assert_eq!(place.newest.created(), "2026-11-28T11:00:00.5Z");
        assert_eq!(place.newest.value(4), "b@x");
        let kinds = |f: fn(&EntryKey) -> bool| entries.iter().filter(|e| f(&e.key)).count();
        assert_eq!(
            kinds(|k| matches!(k, EntryKey::Place(_))),
            1,
            "0,0 and empty coordinates are no place"
        );
        assert_eq!(
            kinds(|k| matches!(k, EntryKey::PlaceUser(_))),
            2,
            "two users at the place"
        );
        // Bob's registered device: one row despite two systems; Ann's unregistered phone by
        // its description.
        assert_eq!(kinds(|k| matches!(k, EntryKey::Device(_))), 3);
        let bob = group(
            &entries,
            &EntryKey::Device("b@x\ndev-1\n\n\n\nExchange ActiveSync\nExchange".into()),
        );
        assert_eq!(bob.sign_ins, 2);
        assert_eq!(bob.newest.value(2), "Android", "from the newest sign-in");
        let ann = group(
            &entries,
            &EntryKey::Device("a@x\n\n\niOS\n\nExchange ActiveSync\nExchange".into()),
        );
        assert_eq!((ann.sign_ins, ann.failures), (2, 1));
        assert_eq!(ann.newest.value(5), "10.0.0.1");
    }

    #[tokio::test]
    async fn tallies_merged_in_any_order_equal_the_tally_of_all_rows() {
        let all = entries_of(tally(ROWS)).await;
        let lines: Vec<&str> = ROWS.split_inclusive("\r\n").collect();
        for split in 0..=lines.len() {
            let part = |range: std::ops::Range<usize>| tally(&lines[range].concat());
            let mut ab = part(0..split);
            ab.absorb(part(split..lines.len())).unwrap();
            let mut ba = part(split..lines.len());
            ba.absorb(part(0..split)).unwrap();
            assert_eq!(entries_of(ab).await, all, "split {split}");
            assert_eq!(entries_of(ba).await, all, "split {split}");
        }
    }

    #[tokio::test]
    async fn a_tally_spilled_row_by_row_merges_back_to_the_same_entries() {
        let all = entries_of(tally(ROWS)).await;
        let mut spilled = DayTally::default();
        for line in ROWS.split_inclusive("\r\n") {
            spilled
                .add_rows(&layout(), line.as_bytes(), "test")
                .unwrap();
            spilled.spill().unwrap();
        }
        assert_eq!(spilled.runs.len(), 5, "a run per row");
        assert_eq!(spilled.held, 0);
        assert_eq!(entries_of(spilled).await, all);
    }

    #[test]
    fn a_tally_spills_once_it_holds_more_than_its_budget() {
        // Every row a new device, ~200 bytes held each: ~21,000 rows pass 4 MiB.
        let mut file = FileTally::new(layout(), "test");
        for chunk in 0..30 {
            let mut rows = String::new();
            for i in chunk * 1000..(chunk + 1) * 1000 {
                rows.push_str(&format!(
                    "2026-11-28T10:00:00Z,user{i}@contoso.com,User {i},Browser,Office,0,dev-{i},Windows,,,,10.0.0.1\r\n"
                ));
            }
            file.feed(rows.as_bytes()).unwrap();
            assert!(file.tally.held <= HELD_BYTES, "{}", file.tally.held);
        }
        let t = file.finish().unwrap();
        assert!(!t.runs.is_empty(), "spilled");
        assert_eq!(t.rows, 30_000);
    }

    #[test]
    fn instants_order_by_time_not_by_text() {
        use Ordering::*;
        assert_eq!(
            instant_order("2026-11-28T10:00:00.5Z", "2026-11-28T10:00:00Z"),
            Greater
        );
        assert_eq!(
            instant_order("2026-11-28T10:00:00.05Z", "2026-11-28T10:00:00.5Z"),
            Less
        );
        assert_eq!(
            instant_order("2026-11-28T10:00:01Z", "2026-11-28T10:00:00.9999999Z"),
            Greater
        );
        assert_eq!(
            instant_order("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z"),
            Equal
        );
        // The same instant written two ways still has one order.
        assert_ne!(
            instant_order("2026-11-28T10:00:00.0Z", "2026-11-28T10:00:00Z"),
            Equal
        );
    }

    #[test]
    fn a_row_of_other_columns_is_refused() {
        let mut t = DayTally::default();
        let error = t
            .add_rows(&layout(), b"2026-11-28T10:00:00Z,a@x\r\n", "daily/x.csv")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("daily/x.csv, row 1") && error.contains("2 fields"),
            "{error}"
        );
    }
}
