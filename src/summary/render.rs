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
use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;

use super::rows::RowLayout;
use super::tally::{instant_order, point, DayTally, PlaceTally, KEY_SEPARATOR};
use super::{DEVICE_COLUMNS, LOCATION_COLUMNS};
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

/// The two files, and what they hold.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub locations: Bytes,
    pub devices: Bytes,
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
    tally: PlaceTally,
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
    fn of(place: &PlaceTally) -> Busiest {
        Busiest {
            sign_ins: place.sign_ins,
            newest: place.newest.created().to_string(),
            names: (0..4).map(|i| place.newest.value(i).to_string()).collect(),
        }
    }

    /// Whether `place` is busier: more sign-ins, then a newer newest sign-in. Places come in
    /// key order, so a full tie keeps the first (the smallest coordinates).
    fn beaten_by(&self, place: &PlaceTally) -> bool {
        place
            .sign_ins
            .cmp(&self.sign_ins)
            .then_with(|| instant_order(place.newest.created(), &self.newest))
            == Ordering::Greater
    }
}

/// Encodes both summaries of `total` (the merged tally of the report days), the places capped at
/// `max_locations` rows. `layout` says which columns the rows had; `csv_safe` is the formula guard.
pub fn render(
    total: DayTally,
    layout: &RowLayout,
    csv_safe: bool,
    max_locations: usize,
) -> Rendered {
    let (sign_ins, located) = (total.rows, total.located);
    let (places, rounding) = places_within(total.places, max_locations);
    let location_rows = places.len();
    let mut encoder = CsvEncoder::with_header(&LOCATION_COLUMNS, csv_safe);
    let mut out = encoder.header().to_vec();
    for place in &places {
        let names = &place.at.names;
        let newest = &place.tally.newest;
        let name = |i: usize| text(names.get(i));
        let last = |i: usize| Cell::Text(newest.value(i).into());
        encoder.encode_row(
            &[
                number_or_text(&place.latitude),
                number_or_text(&place.longitude),
                name(0),
                name(1),
                name(2),
                name(3),
                count(Some(place.tally.sign_ins)),
                count(layout.user.map(|_| place.tally.users.len() as u64)),
                count(layout.status.map(|_| place.tally.failures)),
                Cell::Text(place.tally.first_seen.as_str().into()),
                Cell::Text(newest.created().into()),
                last(4),
                last(5),
                last(6),
            ],
            &mut out,
        );
    }
    let locations = Bytes::from(out);

    let mut devices: Vec<_> = total.devices.into_iter().collect();
    devices.sort_by(|(a_key, a), (b_key, b)| {
        instant_order(b.newest.created(), a.newest.created()).then_with(|| a_key.cmp(b_key))
    });
    let device_rows = devices.len();
    let mut encoder = CsvEncoder::with_header(&DEVICE_COLUMNS, csv_safe);
    let mut out = encoder.header().to_vec();
    for (key, device) in &devices {
        let parts: Vec<&str> = key.split(KEY_SEPARATOR).collect();
        let part = |i: usize| Cell::Text(parts.get(i).copied().unwrap_or("").into());
        let last = |i: usize| Cell::Text(device.newest.value(i).into());
        encoder.encode_row(
            &[
                part(0),
                last(0),
                part(1),
                last(1),
                last(2),
                last(3),
                part(5),
                part(6),
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
            &mut out,
        );
    }
    Rendered {
        locations,
        devices: Bytes::from(out),
        location_rows,
        device_rows,
        sign_ins,
        located,
        rounding,
    }
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

/// The places as at most `max` rows, busiest first, and the rounding that took.
fn places_within(places: BTreeMap<String, PlaceTally>, max: usize) -> (Vec<PlaceRow>, Rounding) {
    let split = |key: &str| {
        let (latitude, longitude) = key.split_once(KEY_SEPARATOR).unwrap_or((key, ""));
        (latitude.to_string(), longitude.to_string())
    };
    let mut rounding = Rounding::Exact;
    if places.len() > max {
        let points: Vec<Option<(f64, f64)>> = places
            .keys()
            .map(|key| {
                let (latitude, longitude) = split(key);
                point(&latitude, &longitude)
            })
            .collect();
        rounding = ROUNDINGS
            .into_iter()
            .find(|r| {
                points
                    .iter()
                    .map(|p| r.cell(*p))
                    .collect::<HashSet<_>>()
                    .len()
                    <= max
            })
            .unwrap_or(Rounding::Degrees(180));
    }
    let mut rows: Vec<PlaceRow> = Vec::new();
    let mut row_of_cell: BTreeMap<Option<(i64, i64)>, usize> = BTreeMap::new();
    for (key, place) in places {
        let (latitude, longitude) = split(&key);
        let cell = match rounding {
            Rounding::Exact => None,
            _ => rounding.cell(point(&latitude, &longitude)),
        };
        let existing = match rounding {
            Rounding::Exact => None,
            _ => row_of_cell.get(&cell).copied(),
        };
        match existing {
            Some(i) => {
                let row = &mut rows[i];
                if row.at.beaten_by(&place) {
                    row.at = Busiest::of(&place);
                    row.latitude = latitude;
                    row.longitude = longitude;
                }
                row.tally.absorb(place);
            }
            None => {
                row_of_cell.insert(cell, rows.len());
                rows.push(PlaceRow {
                    latitude,
                    longitude,
                    at: Busiest::of(&place),
                    tally: place,
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        b.tally
            .sign_ins
            .cmp(&a.tally.sign_ins)
            .then_with(|| a.latitude.cmp(&b.latitude))
            .then_with(|| a.longitude.cmp(&b.longitude))
    });
    (rows, rounding)
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

    /// The rows of a rendered file (header checked, BOM stripped).
    fn rows_of(bytes: &[u8], header: &[&str]) -> Vec<Vec<String>> {
        let body = bytes.strip_prefix(crate::csv::BOM).expect("BOM");
        let mut rows = collect(body);
        assert_eq!(rows.remove(0), header);
        rows
    }

    #[test]
    fn both_files_hold_the_groups_with_the_newest_values() {
        let (tally, layout) = tally_of(
            &COLUMNS,
            "2026-11-28T10:00:00Z,a@x,Exchange ActiveSync,0,47.6,-122.3,\"Redmond, US\",Redmond,iOS\r\n\
             2026-11-28T11:00:00Z,=b@x,Exchange ActiveSync,53003,47.6,-122.3,\"Redmond, US\",Redmond,iOS\r\n\
             2026-11-28T09:00:00Z,a@x,Exchange ActiveSync,0,0,0,,,iOS\r\n",
        );
        let rendered = render(tally, &layout, true, MAX_LOCATION_ROWS);
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
        let devices = rows_of(&rendered.devices, &DEVICE_COLUMNS);
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0][0], "'=b@x", "newest first");
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

    #[test]
    fn columns_left_out_leave_their_cells_empty() {
        let (tally, layout) = tally_of(
            &["createdDateTime", "latitude", "longitude"],
            "2026-11-28T10:00:00Z,47.6,-122.3\r\n2026-11-28T10:00:01Z,47.6,-122.3\r\n",
        );
        let rendered = render(tally, &layout, true, MAX_LOCATION_ROWS);
        let places = rows_of(&rendered.locations, &LOCATION_COLUMNS);
        assert_eq!(
            &places[0][6..9],
            ["2", "", ""],
            "users and failures unknown"
        );
        let devices = rows_of(&rendered.devices, &DEVICE_COLUMNS);
        assert_eq!(devices.len(), 1, "one device: every key part empty");
        assert_eq!(devices[0][8], "2");
    }

    #[test]
    fn more_places_than_the_cap_merge_by_rounding_and_keep_every_sign_in() {
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
        let points: HashSet<(String, String)> = tally
            .places
            .keys()
            .map(|k| {
                let (a, b) = k.split_once(KEY_SEPARATOR).unwrap();
                (a.to_string(), b.to_string())
            })
            .collect();
        assert_eq!(points.len(), 40_000);
        let rendered = render(tally, &layout, true, MAX_LOCATION_ROWS);
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

    #[test]
    fn a_merged_row_sits_at_its_busiest_place() {
        let (tally, layout) = tally_of(
            &COLUMNS,
            "2026-11-28T10:00:00Z,a@x,Browser,0,47.61,-122.31,Quiet,Quiet,\r\n\
             2026-11-28T12:00:00Z,b@x,Browser,0,47.64,-122.33,Busy,Busy,\r\n\
             2026-11-28T11:00:00Z,c@x,Browser,0,47.64,-122.33,Busy,Busy,\r\n\
             2026-11-28T10:00:00Z,d@x,Browser,0,10.0,10.0,Far,Far,\r\n",
        );
        let rendered = render(tally, &layout, true, 2);
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

    #[test]
    fn small_caps_fall_through_to_coarser_grids() {
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
        let rendered = render(tally, &layout, true, 9);
        assert_eq!(rendered.rounding, Rounding::Degrees(180));
        assert!(rendered.location_rows <= 9, "{}", rendered.location_rows);
        let rows = rows_of(&rendered.locations, &LOCATION_COLUMNS);
        let sum: u64 = rows.iter().map(|r| r[6].parse::<u64>().unwrap()).sum();
        assert_eq!(sum, located);
    }
}
