//! The two summary files from the report days' merged tally: places capped at a number of rows
//! by rounding coordinates, then both encoded with the daily files' CSV rules.
//!
//! **The cap.** When there are more places than the cap, coordinates are rounded to 4, 3, 2, 1
//! and 0 decimals, then to a grid of 2 degrees, and the first rounding that leaves at most the cap
//! of distinct points wins: the places that share a rounded point become one row. A 2-degree grid
//! has at most 91 × 181 = 16,471 points, so the 30,000 cap always fits (coarser grids follow for
//! smaller caps). A merged row adds up its places' `signIns` and `failures`, counts the distinct
//! users of them all, spans their first and last sign-in, and takes its `last…` values from the
//! newest sign-in among them; it sits at its busiest place (most sign-ins; then the newest) and
//! carries that place's coordinates and names, so a bubble never lands between two cities.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;

use super::merge::{Entry, EntryKey, Merge, SpillRun};
use super::rows::RowLayout;
use super::tally::{instant_order, point, DayTally, Group, KEY_SEPARATOR};
use super::{SummaryError, DEVICE_COLUMNS, LOCATION_COLUMNS};
use crate::csv::CsvEncoder;
use crate::transform::flatten::Cell;

/// How far coordinates were rounded to fit the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Every place is its own row.
    Exact,
    /// Coordinates rounded to this many decimals.
    Decimals(u8),
    /// Coordinates rounded to a grid of this many degrees.
    Degrees(u8),
}

impl std::fmt::Display for Rounding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rounding::Exact => f.write_str("exact"),
            Rounding::Decimals(d) => write!(f, "{d} decimals"),
            Rounding::Degrees(d) => write!(f, "a {d}-degree grid"),
        }
    }
}

/// The roundings tried in turn when the places exceed the cap.
const ROUNDINGS: [Rounding; 10] = [
    Rounding::Decimals(4),
    Rounding::Decimals(3),
    Rounding::Decimals(2),
    Rounding::Decimals(1),
    Rounding::Decimals(0),
    Rounding::Degrees(2),
    Rounding::Degrees(5),
    Rounding::Degrees(15),
    Rounding::Degrees(45),
    Rounding::Degrees(180),
];

impl Rounding {
    /// The grid cell of a point (`None`: not a point on the map, one cell of its own).
    fn cell(self, point: Option<(f64, f64)>) -> Option<(i64, i64)> {
        let (latitude, longitude) = point?;
        let round = |x: f64| -> i64 {
            let scaled = match self {
                Rounding::Exact => x,
                Rounding::Decimals(d) => x * 10f64.powi(i32::from(d)),
                Rounding::Degrees(d) => x / f64::from(d),
            };
            scaled.round() as i64
        };
        Some((round(latitude), round(longitude)))
    }
}

/// Where `devices.csv` goes, block by block (it can be larger than memory).
#[async_trait]
pub trait BlockOut: Send {
    async fn put(&mut self, block: Bytes) -> Result<(), SummaryError>;
}

/// Bytes of `devices.csv` handed to [`BlockOut`] at a time.
pub const DEVICE_BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// What was rendered: `locations.csv` whole (it has at most the cap of rows), and counts.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub locations: Bytes,
    pub location_rows: usize,
    pub device_rows: usize,
    /// Sign-ins in `devices.csv` (every row of the report days).
    pub sign_ins: u64,
    /// Sign-ins in `locations.csv` (the rows with a point).
    pub located: u64,
    pub rounding: Rounding,
}

/// One row of `locations.csv`: one place, or the places that share a rounded point.
struct PlaceRow {
    latitude: String,
    longitude: String,
    group: Group,
    users: u64,
    /// The place the row sits at and is named after (the busiest): its sign-ins, its newest
    /// sign-in and its `location`, city, state and country.
    at: Busiest,
}

struct Busiest {
    sign_ins: u64,
    newest: String,
    names: Vec<String>,
}

impl Busiest {
    fn of(place: &Group) -> Busiest {
        Busiest {
            sign_ins: place.sign_ins,
            newest: place.newest.created().to_string(),
            names: place
                .newest
                .first_values::<4>()
                .map(str::to_string)
                .to_vec(),
        }
    }

    /// Whether `place` is busier: more sign-ins, then a newer newest sign-in. Places come in
    /// key order, so a full tie keeps the first (the smallest coordinates).
    fn beaten_by(&self, place: &Group) -> bool {
        place
            .sign_ins
            .cmp(&self.sign_ins)
            .then_with(|| instant_order(place.newest.created(), &self.newest))
            == Ordering::Greater
    }
}

/// Renders both summaries from `merge` (the report days' tallies, merged): `devices.csv` goes
/// to `devices` block by block, in the order of its key (user, device, client); the places —
/// one group per point on the map, held in memory — are capped at `max_locations` rows, and a
/// merged row's users are counted through a tally of (cell, user) pairs, spilled like any
/// other. `layout` says which columns the rows had; `csv_safe` is the formula guard.
pub async fn render(
    merge: &mut Merge,
    layout: &RowLayout,
    csv_safe: bool,
    max_locations: usize,
    devices: &mut dyn BlockOut,
) -> Result<Rendered, SummaryError> {
    let mut encoder = CsvEncoder::with_header(&DEVICE_COLUMNS, csv_safe);
    let mut out = encoder.header().to_vec();
    let (mut sign_ins, mut device_rows) = (0, 0);
    let mut places: Vec<(String, Group)> = Vec::new();
    // Users per place (exact), or per cell (rounded).
    let mut place_users: Vec<u64> = Vec::new();
    // The (cell, user) pairs, when places are merged by rounding.
    let mut cells: Option<DayTally> = None;
    let mut rounding = None;
    while let Some(Entry { key, group }) = merge.next().await? {
        match (key, group) {
            (EntryKey::Device(key), Some(device)) => {
                sign_ins += device.sign_ins;
                device_rows += 1;
                device_row(&mut encoder, &key, &device, layout, &mut out);
                if out.len() >= DEVICE_BLOCK_BYTES {
                    devices.put(Bytes::from(std::mem::take(&mut out))).await?;
                }
            }
            (EntryKey::Place(key), Some(place)) => places.push((key, place)),
            (EntryKey::PlaceUser(pair), None) => {
                // Every place came before its users: the rounding can be chosen now.
                let rounding = *rounding.get_or_insert_with(|| {
                    let chosen = rounding_within(&places, max_locations);
                    match chosen {
                        Rounding::Exact => place_users = vec![0; places.len()],
                        _ => cells = Some(DayTally::default()),
                    }
                    chosen
                });
                let (place, user) = pair.rsplit_once(KEY_SEPARATOR).unwrap_or((&pair, ""));
                let Ok(i) = places.binary_search_by(|(key, _)| key.as_str().cmp(place)) else {
                    return Err(SummaryError::Run(format!(
                        "users at a place with no sign-in: {place:?}"
                    )));
                };
                match &mut cells {
                    None => place_users[i] += 1,
                    Some(pairs) => {
                        pairs.add_pair(&cell_key(rounding, &places[i].0), user);
                        pairs.spill_if_full()?;
                    }
                }
            }
            _ => {
                return Err(SummaryError::Run(
                    "an entry without the fields its kind has".into(),
                ))
            }
        }
    }
    if !out.is_empty() {
        devices.put(Bytes::from(out)).await?;
    }
    let rounding = rounding.unwrap_or_else(|| rounding_within(&places, max_locations));
    let users = match cells {
        Some(pairs) => Users::Cells(users_per_cell(pairs).await?),
        // No user at any place (no `userPrincipalName` column): nobody to count.
        None if rounding != Rounding::Exact => Users::Cells(HashMap::new()),
        None => Users::Places(place_users),
    };
    let located = places.iter().map(|(_, place)| place.sign_ins).sum();
    let rows = place_rows(places, &users, rounding);
    Ok(Rendered {
        location_rows: rows.len(),
        locations: locations_csv(&rows, layout, csv_safe),
        device_rows,
        sign_ins,
        located,
        rounding,
    })
}

/// Distinct users per place (exact rows) or per rounded cell.
enum Users {
    Places(Vec<u64>),
    Cells(HashMap<String, u64>),
}

/// Counts the (cell, user) pairs per cell: at most the cap of cells, any number of pairs.
async fn users_per_cell(pairs: DayTally) -> Result<HashMap<String, u64>, SummaryError> {
    let runs = pairs
        .into_runs()?
        .into_iter()
        .map(SpillRun::into_chunks)
        .collect::<Result<Vec<_>, _>>()?;
    let mut merge = Merge::new(runs).await?;
    let mut users: HashMap<String, u64> = HashMap::new();
    while let Some(entry) = merge.next().await? {
        if let EntryKey::PlaceUser(pair) = entry.key {
            let (cell, _) = pair.rsplit_once(KEY_SEPARATOR).unwrap_or((&pair, ""));
            match users.get_mut(cell) {
                Some(n) => *n += 1,
                None => {
                    users.insert(cell.to_string(), 1);
                }
            }
        }
    }
    Ok(users)
}

/// The key of the cell a place falls in at `rounding` (a place is always a point; anything else
/// is a cell of its own).
fn cell_key(rounding: Rounding, place: &str) -> String {
    let (latitude, longitude) = place.split_once(KEY_SEPARATOR).unwrap_or((place, ""));
    match rounding.cell(point(latitude, longitude)) {
        Some((latitude, longitude)) if rounding != Rounding::Exact => {
            format!("{latitude},{longitude}")
        }
        _ => place.to_string(),
    }
}

fn device_row(
    encoder: &mut CsvEncoder,
    key: &str,
    device: &Group,
    layout: &RowLayout,
    out: &mut Vec<u8>,
) {
    let mut parts = key.split(KEY_SEPARATOR);
    let mut part = || Cell::Text(parts.next().unwrap_or("").into());
    let (user, device_id, _, _, _, client_app, app) =
        (part(), part(), part(), part(), part(), part(), part());
    let newest: [&str; 9] = device.newest.first_values();
    let last = |i: usize| Cell::Text(newest[i].into());
    encoder.encode_row(
        &[
            user,
            last(0),
            device_id,
            last(1),
            last(2),
            last(3),
            client_app,
            app,
            count(Some(device.sign_ins)),
            count(layout.status.map(|_| device.failures)),
            Cell::Text(device.first_seen.as_str().into()),
            Cell::Text(device.newest.created().into()),
            last(4),
            last(5),
            last(6),
            last(7),
            last(8),
        ],
        out,
    );
}

fn locations_csv(rows: &[PlaceRow], layout: &RowLayout, csv_safe: bool) -> Bytes {
    let mut encoder = CsvEncoder::with_header(&LOCATION_COLUMNS, csv_safe);
    let mut out = encoder.header().to_vec();
    for place in rows {
        let names = &place.at.names;
        let newest = &place.group.newest;
        let name = |i: usize| text(names.get(i));
        let values: [&str; 7] = newest.first_values();
        let last = |i: usize| Cell::Text(values[i].into());
        encoder.encode_row(
            &[
                number_or_text(&place.latitude),
                number_or_text(&place.longitude),
                name(0),
                name(1),
                name(2),
                name(3),
                count(Some(place.group.sign_ins)),
                count(layout.user.map(|_| place.users)),
                count(layout.status.map(|_| place.group.failures)),
                Cell::Text(place.group.first_seen.as_str().into()),
                Cell::Text(newest.created().into()),
                last(4),
                last(5),
                last(6),
            ],
            &mut out,
        );
    }
    Bytes::from(out)
}

fn text(value: Option<&String>) -> Cell<'_> {
    Cell::Text(value.map_or("", String::as_str).into())
}

fn count(n: Option<u64>) -> Cell<'static> {
    n.map_or(Cell::Empty, |n| Cell::Number(n.to_string().into()))
}

/// A coordinate as the daily file held it: a number (never altered by the formula guard), or, if
/// the file was edited into something else, text (guarded like any text).
fn number_or_text(value: &str) -> Cell<'_> {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && value.parse::<f64>().is_ok();
    if plain {
        Cell::Number(value.into())
    } else {
        Cell::Text(value.into())
    }
}

/// The first rounding that leaves at most `max` rows of `places` (exact when they fit).
fn rounding_within(places: &[(String, Group)], max: usize) -> Rounding {
    if places.len() <= max {
        return Rounding::Exact;
    }
    let points: Vec<Option<(f64, f64)>> = places
        .iter()
        .map(|(key, _)| {
            let (latitude, longitude) = key.split_once(KEY_SEPARATOR).unwrap_or((key, ""));
            point(latitude, longitude)
        })
        .collect();
    ROUNDINGS
        .into_iter()
        .find(|r| {
            points
                .iter()
                .map(|p| r.cell(*p))
                .collect::<HashSet<_>>()
                .len()
                <= max
        })
        .unwrap_or(Rounding::Degrees(180))
}

/// The places as rows at `rounding`, busiest first.
fn place_rows(places: Vec<(String, Group)>, users: &Users, rounding: Rounding) -> Vec<PlaceRow> {
    let mut rows: Vec<PlaceRow> = Vec::new();
    let mut row_of_cell: HashMap<String, usize> = HashMap::new();
    for (i, (key, place)) in places.into_iter().enumerate() {
        let (latitude, longitude) = key.split_once(KEY_SEPARATOR).unwrap_or((&key, ""));
        let (latitude, longitude) = (latitude.to_string(), longitude.to_string());
        let cell = (rounding != Rounding::Exact).then(|| cell_key(rounding, &key));
        let place_users = match (users, &cell) {
            (Users::Places(counts), _) => counts.get(i).copied().unwrap_or(0),
            (Users::Cells(counts), Some(cell)) => counts.get(cell).copied().unwrap_or(0),
            (Users::Cells(_), None) => 0,
        };
        match cell.as_ref().and_then(|cell| row_of_cell.get(cell)) {
            Some(&i) => {
                let row = &mut rows[i];
                if row.at.beaten_by(&place) {
                    row.at = Busiest::of(&place);
                    row.latitude = latitude;
                    row.longitude = longitude;
                }
                row.group.absorb(place);
            }
            None => {
                if let Some(cell) = cell {
                    row_of_cell.insert(cell, rows.len());
                }
                rows.push(PlaceRow {
                    latitude,
                    longitude,
                    at: Busiest::of(&place),
                    users: place_users,
                    group: place,
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        b.group
            .sign_ins
            .cmp(&a.group.sign_ins)
            .then_with(|| a.latitude.cmp(&b.latitude))
            .then_with(|| a.longitude.cmp(&b.longitude))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::rows::collect;
    use crate::summary::{DEVICE_COLUMNS, LOCATION_COLUMNS, MAX_LOCATION_ROWS};

    const COLUMNS: [&str; 9] = [
        "createdDateTime",
        "userPrincipalName",
        "clientAppUsed",
        "statusErrorCode",
        "latitude",
        "longitude",
        "location",
        "locationCity",
        "deviceOperatingSystem",
    ];

    fn tally_of(columns: &[&str], rows: &str) -> (DayTally, RowLayout) {
        let layout = RowLayout::new(columns).unwrap();
        let mut tally = DayTally::default();
        tally.add_rows(&layout, rows.as_bytes(), "test").unwrap();
        (tally, layout)
    }

    /// `devices.csv` as [`render`] hands it out.
    #[derive(Default)]
    struct Collected {
        bytes: Vec<u8>,
        blocks: usize,
    }

    #[async_trait]
    impl BlockOut for Collected {
        async fn put(&mut self, block: Bytes) -> Result<(), SummaryError> {
            self.bytes.extend_from_slice(&block);
            self.blocks += 1;
            Ok(())
        }
    }

    /// Renders `tally`; returns the result and `devices.csv`.
    async fn rendered(
        tally: DayTally,
        layout: &RowLayout,
        max_locations: usize,
    ) -> (Rendered, Vec<u8>) {
        let mut merge = crate::summary::merge::merge_of(tally.into_runs().unwrap()).await;
        let mut devices = Collected::default();
        let rendered = render(&mut merge, layout, true, max_locations, &mut devices)
            .await
            .unwrap();
        (rendered, devices.bytes)
    }

    /// The rows of a rendered file (header checked, BOM stripped).
    fn rows_of(bytes: &[u8], header: &[&str]) -> Vec<Vec<String>> {
        let body = bytes.strip_prefix(crate::csv::BOM).expect("BOM");
        let mut rows = collect(body);
        assert_eq!(rows.remove(0), header);
        rows
    }

    #[tokio::test]
    async fn both_files_hold_the_groups_with_the_newest_values() {
        let (tally, layout) = tally_of(
            &COLUMNS,
            "2026-11-28T10:00:00Z,a@x,Exchange ActiveSync,0,47.6,-122.3,\"Redmond, US\",Redmond,iOS\r\n\
             2026-11-28T11:00:00Z,=b@x,Exchange ActiveSync,53003,47.6,-122.3,\"Redmond, US\",Redmond,iOS\r\n\
             2026-11-28T09:00:00Z,a@x,Exchange ActiveSync,0,0,0,,,iOS\r\n",
        );
        let (rendered, devices_csv) = rendered(tally, &layout, MAX_LOCATION_ROWS).await;
        assert_eq!((rendered.sign_ins, rendered.located), (3, 2));
        assert_eq!(
            rows_of(&rendered.locations, &LOCATION_COLUMNS),
            vec![vec![
                "47.6",
                "-122.3",
                "Redmond, US",
                "Redmond",
                "",
                "",
                "2",
                "2",
                "1",
                "2026-11-28T10:00:00Z",
                "2026-11-28T11:00:00Z",
                "'=b@x",
                "Exchange ActiveSync",
                "",
            ]],
            "no row at 0,0; coordinates are numbers, never guarded; text is"
        );
        let devices = rows_of(&devices_csv, &DEVICE_COLUMNS);
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0][0], "'=b@x", "in key order: user, device, client");
        assert_eq!(
            devices[1],
            vec![
                "a@x",
                "",
                "",
                "",
                "iOS",
                "",
                "Exchange ActiveSync",
                "",
                "2",
                "0",
                "2026-11-28T09:00:00Z",
                "2026-11-28T10:00:00Z",
                "Redmond, US",
                "",
                "",
                "",
                "",
            ]
        );
    }

    #[tokio::test]
    async fn columns_left_out_leave_their_cells_empty() {
        let (tally, layout) = tally_of(
            &["createdDateTime", "latitude", "longitude"],
            "2026-11-28T10:00:00Z,47.6,-122.3\r\n2026-11-28T10:00:01Z,47.6,-122.3\r\n",
        );
        let (rendered, devices_csv) = rendered(tally, &layout, MAX_LOCATION_ROWS).await;
        let places = rows_of(&rendered.locations, &LOCATION_COLUMNS);
        assert_eq!(
            &places[0][6..9],
            ["2", "", ""],
            "users and failures unknown"
        );
        let devices = rows_of(&devices_csv, &DEVICE_COLUMNS);
        assert_eq!(devices.len(), 1, "one device: every key part empty");
        assert_eq!(devices[0][8], "2");
    }

    #[tokio::test]
    async fn more_places_than_the_cap_merge_by_rounding_and_keep_every_sign_in() {
        // 40,000 points 0.003° × 0.0017° apart: distinct at 3 decimals, merged at 2.
        let mut text = String::new();
        for i in 0..200 {
            for j in 0..200 {
                let (latitude, longitude) =
                    (-33.0 + f64::from(i) * 0.003, 151.0 + f64::from(j) * 0.0017);
                text.push_str(&format!(
                    "2026-11-28T10:00:00Z,u{i}@x,Browser,0,{latitude:.4},{longitude:.4},Sydney,Sydney,\r\n"
                ));
            }
        }
        text.push_str("2026-11-28T10:00:00Z,z@x,Browser,0,0,0,,,\r\n2026-11-28T10:00:00Z,z@x,Browser,0,,,,,\r\n");
        let (tally, layout) = tally_of(&COLUMNS, &text);
        let points: HashSet<(String, String)> = text
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split(',').collect();
                point(cells[4], cells[5]).map(|_| (cells[4].to_string(), cells[5].to_string()))
            })
            .collect();
        assert_eq!(points.len(), 40_000);
        let (rendered, _) = rendered(tally, &layout, MAX_LOCATION_ROWS).await;
        assert_eq!(rendered.rounding, Rounding::Decimals(2));
        let rows = rows_of(&rendered.locations, &LOCATION_COLUMNS);
        assert!(
            rows.len() <= MAX_LOCATION_ROWS && rows.len() > 1000,
            "{}",
            rows.len()
        );
        let sum: u64 = rows.iter().map(|r| r[6].parse::<u64>().unwrap()).sum();
        assert_eq!(sum, 40_000, "every located sign-in is in a row");
        assert_eq!(rendered.located, 40_000);
        for row in &rows {
            assert!(
                points.contains(&(row[0].clone(), row[1].clone())),
                "a row sits at one of its places: {row:?}"
            );
            assert_ne!((row[0].as_str(), row[1].as_str()), ("0", "0"));
        }
        let users: u64 = rows.iter().map(|r| r[7].parse::<u64>().unwrap()).sum();
        assert!(users >= 200, "users are counted per merged row: {users}");
    }

    #[tokio::test]
    async fn a_merged_row_sits_at_its_busiest_place() {
        let (tally, layout) = tally_of(
            &COLUMNS,
            "2026-11-28T10:00:00Z,a@x,Browser,0,47.61,-122.31,Quiet,Quiet,\r\n\
             2026-11-28T12:00:00Z,b@x,Browser,0,47.64,-122.33,Busy,Busy,\r\n\
             2026-11-28T11:00:00Z,c@x,Browser,0,47.64,-122.33,Busy,Busy,\r\n\
             2026-11-28T10:00:00Z,d@x,Browser,0,10.0,10.0,Far,Far,\r\n",
        );
        let (rendered, _) = rendered(tally, &layout, 2).await;
        assert_eq!(rendered.rounding, Rounding::Decimals(1));
        let rows = rows_of(&rendered.locations, &LOCATION_COLUMNS);
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][..3], ["47.64", "-122.33", "Busy"]);
        assert_eq!(&rows[0][6..9], ["3", "3", "0"]);
        assert_eq!(
            rows[0][11], "b@x",
            "the newest sign-in of the merged places"
        );
    }

    #[tokio::test]
    async fn tallies_spilled_to_many_runs_render_the_same_files() {
        // Places merged by rounding too, so the (cell, user) pairs are counted through runs.
        let mut text = String::new();
        for i in 0..60 {
            let (latitude, longitude) = (47.0 + f64::from(i % 12) * 0.01, -122.0);
            text.push_str(&format!(
                "2026-11-28T{:02}:00:00Z,u{}@x,Browser,{},{latitude:.2},{longitude},C{i},C,iOS\r\n",
                i % 24,
                i % 7,
                i % 3,
            ));
        }
        let (whole, layout) = tally_of(&COLUMNS, &text);
        let mut spilled = DayTally::default();
        for line in text.split_inclusive("\r\n") {
            spilled.add_rows(&layout, line.as_bytes(), "test").unwrap();
            spilled.spill().unwrap();
        }
        let (a, a_devices) = rendered(whole, &layout, 5).await;
        let (b, b_devices) = rendered(spilled, &layout, 5).await;
        assert_eq!(a.rounding, Rounding::Decimals(1));
        assert_eq!(a.locations, b.locations);
        assert_eq!(a_devices, b_devices);
        let rows = rows_of(&b.locations, &LOCATION_COLUMNS);
        // 47.00–47.04 and 47.05–47.11 round to two cells; every user signed in at both.
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            &rows[0][6..9],
            ["35", "7", "25"],
            "sign-ins, users, failures"
        );
        assert_eq!(&rows[1][6..9], ["25", "7", "15"]);
    }

    #[tokio::test]
    async fn places_merge_by_rounding_without_a_user_column_too() {
        let columns = ["createdDateTime", "latitude", "longitude"];
        let mut text = String::new();
        for i in 0..12 {
            let latitude = 47.0 + f64::from(i) * 0.01;
            text.push_str(&format!("2026-11-28T10:00:00Z,{latitude:.2},-122\r\n"));
        }
        let (tally, layout) = tally_of(&columns, &text);
        let (rendered, _) = rendered(tally, &layout, 5).await;
        assert_eq!(rendered.rounding, Rounding::Decimals(1));
        let rows = rows_of(&rendered.locations, &LOCATION_COLUMNS);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0][7], "", "no user column, no users");
    }

    #[tokio::test]
    async fn small_caps_fall_through_to_coarser_grids() {
        // Points every 10° over the globe; a cap of 9 fits only the 180° grid (3 × 3 cells).
        let mut text = String::new();
        for lat in (-80..=80).step_by(10) {
            for lon in (-170..=170).step_by(10) {
                text.push_str(&format!(
                    "2026-11-28T10:00:00Z,a@x,Browser,0,{lat},{lon},,,\r\n"
                ));
            }
        }
        let (tally, layout) = tally_of(&COLUMNS, &text);
        let located = tally.located;
        let (rendered, _) = rendered(tally, &layout, 9).await;
        assert_eq!(rendered.rounding, Rounding::Degrees(180));
        assert!(rendered.location_rows <= 9, "{}", rendered.location_rows);
        let rows = rows_of(&rendered.locations, &LOCATION_COLUMNS);
        let sum: u64 = rows.iter().map(|r| r[6].parse::<u64>().unwrap()).sum();
        assert_eq!(sum, located);
    }
}
