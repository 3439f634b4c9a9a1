//! The summaries' oracle: `summary/locations.csv` and `summary/devices.csv` recomputed from
//! `latest.csv` with a standard CSV reader and plain code (nothing of `signin_export::summary`
//! but its header constants), and compared row by row.

use std::collections::{BTreeMap, BTreeSet};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use signin_export::summary::{DEVICE_COLUMNS, LOCATION_COLUMNS};

use super::app::read_csv;

type Row = BTreeMap<String, String>;

/// What one group of `latest.csv` rows adds up to.
#[derive(Debug, Default)]
struct Group {
    sign_ins: u64,
    failures: u64,
    users: BTreeSet<String>,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
}

impl Group {
    fn add(&mut self, row: &Row) {
        self.sign_ins += 1;
        if row
            .get("statusErrorCode")
            .is_some_and(|c| !c.is_empty() && c != "0")
        {
            self.failures += 1;
        }
        if let Some(user) = row.get("userPrincipalName").filter(|u| !u.is_empty()) {
            self.users.insert(user.clone());
        }
        let at = instant(&row["createdDateTime"]);
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }
}

fn instant(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A point on the map, as the export decides it.
fn located(row: &Row) -> Option<(String, String)> {
    let (latitude, longitude) = (row.get("latitude")?, row.get("longitude")?);
    let (lat, lon): (f64, f64) = (latitude.parse().ok()?, longitude.parse().ok()?);
    ((lat, lon) != (0.0, 0.0)).then(|| (latitude.clone(), longitude.clone()))
}

fn device_key(row: &Row) -> Vec<String> {
    let get = |c: &str| row.get(c).cloned().unwrap_or_default();
    let id = get("deviceId");
    let described = if id.is_empty() {
        [
            get("deviceDisplayName"),
            get("deviceOperatingSystem"),
            get("deviceBrowser"),
        ]
    } else {
        Default::default()
    };
    let mut key = vec![get("userPrincipalName"), id];
    key.extend(described);
    key.extend([get("clientAppUsed"), get("appDisplayName")]);
    key
}

/// Asserts both summaries are exactly what `latest.csv` adds up to: every place and device row,
/// with its counts and first and last sign-in; the sums of `signIns` equal the rows of
/// `latest.csv` (with a point, for the places); no row at 0,0. Returns (places, devices).
pub fn assert_summaries_match(latest: &[u8], locations: &[u8], devices: &[u8]) -> (usize, usize) {
    let latest = read_csv(latest);
    let locations = read_csv(locations);
    let devices_rows = read_csv(devices);
    // The header, in order (read_csv keys rows by it; check the file's first line too).
    let mut places: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut owners: BTreeMap<Vec<String>, Group> = BTreeMap::new();
    for row in &latest {
        owners.entry(device_key(row)).or_default().add(row);
        if let Some(point) = located(row) {
            places.entry(point).or_default().add(row);
        }
    }
    let with_point: u64 = places.values().map(|g| g.sign_ins).sum();
    let sum = |rows: &[Row]| -> u64 {
        rows.iter()
            .map(|r| r["signIns"].parse::<u64>().expect("signIns"))
            .sum()
    };
    assert_eq!(
        sum(&locations),
        with_point,
        "locations.csv counts every row with a point"
    );
    assert_eq!(
        sum(&devices_rows),
        latest.len() as u64,
        "devices.csv counts every row"
    );
    assert!(
        locations.len() <= signin_export::summary::MAX_LOCATION_ROWS,
        "{}",
        locations.len()
    );
    for row in &locations {
        assert!(
            !(row["latitude"].parse::<f64>() == Ok(0.0)
                && row["longitude"].parse::<f64>() == Ok(0.0)),
            "a place at 0,0: {row:?}"
        );
    }
    let check = |what: &str, row: &Row, group: &Group, has_users: bool| {
        assert_eq!(row["signIns"], group.sign_ins.to_string(), "{what} {row:?}");
        assert_eq!(
            row["failures"],
            group.failures.to_string(),
            "{what} {row:?}"
        );
        if has_users {
            assert_eq!(
                row["users"],
                group.users.len().to_string(),
                "{what} {row:?}"
            );
        }
        assert_eq!(
            Some(instant(&row["firstSeen"])),
            group.first,
            "{what} {row:?}"
        );
        assert_eq!(
            Some(instant(&row["lastSeen"])),
            group.last,
            "{what} {row:?}"
        );
    };
    assert_eq!(locations.len(), places.len(), "one row per place");
    for row in &locations {
        let key = (row["latitude"].clone(), row["longitude"].clone());
        let group = places
            .get(&key)
            .unwrap_or_else(|| panic!("no such place: {row:?}"));
        check("place", row, group, true);
    }
    assert_eq!(
        devices_rows.len(),
        owners.len(),
        "one row per user, device and client"
    );
    for row in &devices_rows {
        let group = owners
            .get(&device_key(row))
            .unwrap_or_else(|| panic!("no such device: {row:?}"));
        check("device", row, group, false);
    }
    (locations.len(), devices_rows.len())
}

/// The header line of a summary, as the constants say.
pub fn assert_headers(locations: &[u8], devices: &[u8]) {
    let first_line = |bytes: &[u8]| {
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
        text.split("\r\n").next().unwrap_or_default().to_string()
    };
    assert_eq!(
        first_line(locations),
        format!("\u{feff}{}", LOCATION_COLUMNS.join(","))
    );
    assert_eq!(
        first_line(devices),
        format!("\u{feff}{}", DEVICE_COLUMNS.join(","))
    );
}
