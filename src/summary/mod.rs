//! The map-ready summaries written beside `latest.csv` (not the run's summary, which is
//! [`crate::state::summary`]): what a place and a device row are, their columns, and how they are
//! computed from the rows the export wrote.
//!
//! * `summary/locations.csv` — one row per place over the report days (`SIGNINS_REPORT_DAYS`),
//!   for the Azure Maps visual: a place is a point (`latitude`, `longitude` exactly as the daily
//!   files hold them); its `location`, city, state and country are those of its newest sign-in.
//!   Only sign-ins with a point on the map count: both coordinates numbers within ±90 / ±180 and
//!   not exactly 0 and 0 (the export writes such coordinates empty; files written by older
//!   versions may still hold 0,0). Never more than [`MAX_LOCATION_ROWS`] rows (see [`render`]).
//! * `summary/devices.csv` — one row per user and device and client: the key is
//!   `userPrincipalName`, `deviceId`, `clientAppUsed` and `appDisplayName`, and, when `deviceId` is
//!   empty (a device not registered in Entra: most phones that sync mail over Exchange ActiveSync),
//!   `deviceDisplayName`, `deviceOperatingSystem` and `deviceBrowser` too. With a `deviceId`, the
//!   name, system and browser are those of the newest sign-in.
//!
//! In both, `failures` counts the sign-ins whose `statusErrorCode` is not 0, `firstSeen` and
//! `lastSeen` are the oldest and newest `createdDateTime`, and every `last…` column (and the
//! descriptive columns taken "from the newest sign-in") holds the values of the group's newest
//! sign-in; sign-ins created at the same instant are ordered by those values, so the result does
//! not depend on the order rows are read in.
//!
//! The summaries are computed from the CSV rows the export wrote — the same bytes `latest.csv`
//! is made of — so they agree with it exactly: the sum of `signIns` of `devices.csv` is the rows
//! of the report days, that of `locations.csv` the rows with a point. Two steps:
//!
//! 1. a [`DayTally`] per daily file ([`tally`]): per place and per device the counts, first and
//!    newest sign-in, and which users signed in at each place. Tallies merge (sums, minimum and
//!    maximum, a user once), so a day's tally is its previous tally merged with the tally of the
//!    rows a commit adds, and the run keeps one per day instead of reading the daily files again
//!    ([`crate::run`]'s `summaries`). A tally is a sorted sequence of entries ([`merge`]): it
//!    holds ~1 MiB of them in memory and spills the rest to sorted runs on local disk, and tallies
//!    are merged as streams, so memory does not grow with the tenant's users and devices.
//! 2. [`render`]: the report days' tallies merged as one stream, `devices.csv` written block by
//!    block as it comes, the places (held in memory: one per point on the map) capped, both with
//!    the daily files' CSV rules (UTF-8 BOM, header, RFC 4180, formula guard, no line breaks).
//!
//! Columns the summaries read that `SIGNINS_COLUMNS` leaves out are empty in them (a device key
//! without `deviceId` is the name, system and browser; `users` is empty without
//! `userPrincipalName`, `failures` without `statusErrorCode`; `locations.csv` has no rows without
//! `latitude` and `longitude`). Without `createdDateTime` there is no first, last or newest: the
//! summaries are not written ([`RowLayout::new`] says so).

mod merge;
mod render;
mod rows;
mod tally;

pub use merge::{Chunks, Entry, EntryKey, Merge, SpillRun};
pub use render::{render, BlockOut, Rendered, Rounding};
pub use rows::{Row, RowLayout, RowReader};
pub use tally::{DayTally, FileTally, Group, HELD_BYTES};

/// Path of the places summary, relative to the sink's base.
pub const LOCATIONS_FILE: &str = "summary/locations.csv";
/// Path of the device inventory, relative to the sink's base.
pub const DEVICES_FILE: &str = "summary/devices.csv";

/// The header of `summary/locations.csv`, in order (the Power BI project binds to these).
pub const LOCATION_COLUMNS: [&str; 14] = [
    "latitude",
    "longitude",
    "location",
    "locationCity",
    "locationState",
    "locationCountryOrRegion",
    "signIns",
    "users",
    "failures",
    "firstSeen",
    "lastSeen",
    "lastUserPrincipalName",
    "lastClientAppUsed",
    "lastAppDisplayName",
];

/// The header of `summary/devices.csv`, in order (the Power BI project binds to these).
pub const DEVICE_COLUMNS: [&str; 17] = [
    "userPrincipalName",
    "userDisplayName",
    "deviceId",
    "deviceDisplayName",
    "deviceOperatingSystem",
    "deviceBrowser",
    "clientAppUsed",
    "appDisplayName",
    "signIns",
    "failures",
    "firstSeen",
    "lastSeen",
    "lastLocation",
    "lastIpAddress",
    "deviceIsCompliant",
    "deviceIsManaged",
    "deviceTrustType",
];

/// The most rows `summary/locations.csv` has: the Azure Maps visual shows at most 30,000 data
/// points (azure-maps docs, `power-bi-visual-get-started.md`) and samples beyond.
pub const MAX_LOCATION_ROWS: usize = 30_000;

/// Where a daily file's tally is kept, relative to the sink's base:
/// `daily/2026-11-28.csv` → `_state/tally/2026-11-28.bin` (a header line, then the tally's
/// entries in order, see [`merge`]).
pub fn tally_file(daily_file: &str) -> String {
    let day = daily_file
        .strip_prefix("daily/")
        .unwrap_or(daily_file)
        .trim_end_matches(".csv");
    format!("_state/tally/{day}.bin")
}

/// The export's rows cannot be summarised.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// `SIGNINS_COLUMNS` leaves out a column every summary needs.
    #[error("SIGNINS_COLUMNS leaves out {0}, which the summaries need (for firstSeen, lastSeen and the values of the newest sign-in); summary/locations.csv and summary/devices.csv are not written")]
    MissingColumn(&'static str),
    /// A tally could not be spilled to (or read back from) local disk.
    #[error("{0}; the summaries need room in the temporary folder for tallies that do not fit in memory")]
    Spill(String),
    /// A stored or spilled run of a tally is not what this build writes.
    #[error("{0}; a stored tally was edited or damaged: delete _state/tally/ and the next run tallies the daily files again")]
    Run(String),
    /// Where tallies and summaries are kept refused a read or write: the caller's own error,
    /// kept whole so the caller can tell it apart (this module knows no storage).
    #[error(transparent)]
    Storage(Box<dyn std::error::Error + Send + Sync>),
    /// A row that is not one of the export's own (a file edited by hand, or other columns).
    #[error(
        "{what}, row {row}: {problem}; the file was changed by hand or written with other columns"
    )]
    Malformed {
        what: String,
        row: u64,
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_tally_lives_under_the_state_folder() {
        assert_eq!(
            tally_file("daily/2026-11-28.csv"),
            "_state/tally/2026-11-28.bin"
        );
    }
}
