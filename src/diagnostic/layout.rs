//! Where a diagnostic setting puts sign-in logs (pure, table-tested): one container per category
//! ([`EventType::diagnostic_container`]), one append blob per hour in which events were
//! *received*, named `<prefix>y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json` (azure-monitor-docs
//! `articles/azure-monitor/platform/resource-logs.md`, "Azure Storage"). The prefix before `y=`
//! names the source (`resourceId=/SUBSCRIPTIONS/…/` for Azure resources; for the tenant-level
//! Entra setting it has been seen as `tenantId=<tenant id>/`): it is kept opaque, only compared.
//!
//! Events are received after they happen, so the sign-ins created in `[from, to)` are in the
//! blobs of the hours from `from`'s hour on, up to `to`'s hour plus however late deliveries come
//! ([`received_hours`]). Which blobs to list for such a range is [`plan_listing`].

use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset};

use crate::graph::model::EventType;

/// The part of every blob name after the hour.
const HOUR_SUFFIX: &str = "m=00/PT1H.json";

/// One hourly blob, parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobHour {
    /// Everything before `y=` (may be empty); names the source, e.g. `tenantId=<guid>/`.
    pub prefix: String,
    /// The hour the blob's events were received in (UTC, minutes and seconds zero).
    pub hour: OffsetDateTime,
}

impl BlobHour {
    /// Parses `…y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`; `None` for any other name (other
    /// blobs in the container are not sign-in logs and are left alone).
    pub fn parse(name: &str) -> Option<BlobHour> {
        let dated = name.strip_suffix(HOUR_SUFFIX)?;
        // `y=` starts the name or a path segment; the last one is the date (the prefix is
        // opaque and could contain `y=` itself).
        let at = dated.rfind("y=")?;
        if at > 0 && !dated[..at].ends_with('/') {
            return None;
        }
        let mut fields = dated[at..].strip_suffix('/')?.split('/');
        let mut next = |key: &str, digits: usize| -> Option<u32> {
            let value = fields.next()?.strip_prefix(key)?;
            (value.len() == digits && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse().ok())
                .flatten()
        };
        let year = next("y=", 4)?;
        let month = next("m=", 2)?;
        let day = next("d=", 2)?;
        let hour = next("h=", 2)?;
        if fields.next().is_some() {
            return None;
        }
        let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
        let date =
            Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
                .ok()?;
        let time = Time::from_hms(u8::try_from(hour).ok()?, 0, 0).ok()?;
        Some(BlobHour {
            prefix: dated[..at].to_string(),
            hour: date.with_time(time).assume_utc(),
        })
    }

    /// The blob name of `hour` (truncated to the hour) under `prefix`.
    pub fn name(prefix: &str, hour: OffsetDateTime) -> String {
        format!("{prefix}{}{HOUR_SUFFIX}", hour_path(hour_of(hour)))
    }
}

/// `y=YYYY/m=MM/d=DD/h=HH/` of a UTC hour.
fn hour_path(hour: OffsetDateTime) -> String {
    format!("{}h={:02}/", day_path(hour), hour.hour())
}

/// `y=YYYY/m=MM/d=DD/` of a UTC time.
fn day_path(t: OffsetDateTime) -> String {
    format!(
        "y={:04}/m={:02}/d={:02}/",
        t.year(),
        u8::from(t.month()),
        t.day()
    )
}

/// The start of the UTC hour `t` is in.
pub fn hour_of(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_time(Time::from_hms(t.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
}

/// The received hours whose blobs can hold sign-ins created in `[from, to)`: from `from`'s hour
/// to the hour of `to + lateness`, both included. `lateness` is how late after creation a
/// delivery may still come.
pub fn received_hours(
    from: OffsetDateTime,
    to: OffsetDateTime,
    lateness: Duration,
) -> (OffsetDateTime, OffsetDateTime) {
    (hour_of(from), hour_of(to + lateness).max(hour_of(from)))
}

/// How to list a category's container for a range of received hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// One listing of the whole container (prefixes unknown, or more requests than it saves).
    Container,
    /// One listing per blob-name prefix: each whole day or single hour of the range under each
    /// known source prefix.
    Prefixes(Vec<String>),
}

/// More prefix listings than this cost more than listing the whole container, which returns
/// 5000 blobs (208 days of one source) per request.
pub const MAX_PREFIX_LISTINGS: usize = 24;

/// How to list the blobs of the received hours `first..=last` (see [`received_hours`]) given
/// the source prefixes seen before: a day's prefix where the range covers the whole UTC day, the
/// hours' prefixes where it covers part of it. With no known prefix, or more than
/// [`MAX_PREFIX_LISTINGS`] listings, the whole container is listed (and the prefixes are learnt
/// from the names).
pub fn plan_listing(
    known_prefixes: &[String],
    first: OffsetDateTime,
    last: OffsetDateTime,
) -> Listing {
    let (first, last) = (hour_of(first), hour_of(last));
    if known_prefixes.is_empty() || last < first {
        return Listing::Container;
    }
    let mut paths = Vec::new();
    let mut day = first.date();
    while day <= last.date() {
        let day_start = day.with_time(Time::MIDNIGHT).assume_utc();
        let day_end = day_start + Duration::hours(23);
        if first <= day_start && day_end <= last {
            paths.push(day_path(day_start));
        } else {
            let mut hour = first.max(day_start);
            while hour <= last.min(day_end) {
                paths.push(hour_path(hour));
                hour += Duration::HOUR;
            }
        }
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
        if paths.len() * known_prefixes.len() > MAX_PREFIX_LISTINGS {
            return Listing::Container;
        }
    }
    let prefixes: Vec<String> = known_prefixes
        .iter()
        .flat_map(|prefix| paths.iter().map(move |path| format!("{prefix}{path}")))
        .collect();
    if prefixes.len() > MAX_PREFIX_LISTINGS {
        Listing::Container
    } else {
        Listing::Prefixes(prefixes)
    }
}

/// The tenant a source prefix names (`tenantId=<id>/`), if it has that form.
pub fn prefix_tenant(prefix: &str) -> Option<&str> {
    prefix
        .strip_prefix("tenantId=")?
        .strip_suffix('/')
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The containers of `event_types`, in order.
pub fn containers(event_types: &[EventType]) -> Vec<&'static str> {
    event_types
        .iter()
        .map(|t| t.diagnostic_container())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const TENANT: &str = "tenantId=8f2c1d4e-5a6b-4c7d-9e8f-0a1b2c3d4e5f/";

    #[test]
    fn blob_names_parse_and_print_back() {
        let name = format!("{TENANT}y=2026/m=11/d=28/h=09/m=00/PT1H.json");
        let parsed = BlobHour::parse(&name).unwrap();
        assert_eq!(parsed.prefix, TENANT);
        assert_eq!(parsed.hour, datetime!(2026-11-28 09:00 UTC));
        assert_eq!(
            BlobHour::name(TENANT, datetime!(2026-11-28 09:59:59.9 UTC)),
            name
        );
        assert_eq!(
            prefix_tenant(&parsed.prefix),
            Some("8f2c1d4e-5a6b-4c7d-9e8f-0a1b2c3d4e5f")
        );

        // The documented resource form, and no prefix at all.
        let resource = "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUP/TESTNSG/y=2016/m=08/d=22/h=18/m=00/PT1H.json";
        let parsed = BlobHour::parse(resource).unwrap();
        assert!(parsed.prefix.ends_with("/TESTNSG/"));
        assert_eq!(prefix_tenant(&parsed.prefix), None);
        assert_eq!(
            BlobHour::parse("y=2026/m=01/d=01/h=00/m=00/PT1H.json").map(|b| b.prefix),
            Some(String::new())
        );
    }

    #[test]
    fn other_names_are_not_hour_blobs() {
        for name in [
            "",
            "PT1H.json",
            "tenantId=x/y=2026/m=11/d=28/h=09/m=30/PT1H.json",
            "tenantId=x/y=2026/m=11/d=28/h=9/m=00/PT1H.json",
            "tenantId=x/y=2026/m=13/d=28/h=09/m=00/PT1H.json",
            "tenantId=x/y=2026/m=02/d=30/h=09/m=00/PT1H.json",
            "tenantId=x/y=2026/m=11/d=28/h=24/m=00/PT1H.json",
            "tenantId=x/y=2026/m=11/d=28/m=00/PT1H.json",
            "tenantId=x/y=2026/m=11/d=28/h=09/m=00/PT1H.json.tmp",
            "tenantId=xy=2026/m=11/d=28/h=09/m=00/PT1H.json",
            "tenantId=x/y=2026/m=11/d=28/h=09/x=1/m=00/PT1H.json",
            "tenantId=x/y=+026/m=11/d=28/h=09/m=00/PT1H.json",
        ] {
            assert_eq!(BlobHour::parse(name), None, "{name}");
        }
    }

    #[test]
    fn received_hours_start_at_the_first_creation_and_allow_for_lateness() {
        let (first, last) = received_hours(
            datetime!(2026-11-28 09:15 UTC),
            datetime!(2026-11-28 11:00 UTC),
            Duration::hours(2),
        );
        assert_eq!(first, datetime!(2026-11-28 09:00 UTC));
        assert_eq!(last, datetime!(2026-11-28 13:00 UTC));
        let (first, last) = received_hours(
            datetime!(2026-11-28 23:30 +02:00),
            datetime!(2026-11-28 23:40 +02:00),
            Duration::ZERO,
        );
        assert_eq!(
            (first, last),
            (
                datetime!(2026-11-28 21:00 UTC),
                datetime!(2026-11-28 21:00 UTC)
            )
        );
    }

    #[test]
    fn listings_use_day_prefixes_for_whole_days_and_hour_prefixes_otherwise() {
        let known = vec![TENANT.to_string()];
        let p = |path: &str| format!("{TENANT}{path}");
        let cases: &[(OffsetDateTime, OffsetDateTime, Listing)] = &[
            (
                datetime!(2026-11-28 09:00 UTC),
                datetime!(2026-11-28 10:30 UTC),
                Listing::Prefixes(vec![
                    p("y=2026/m=11/d=28/h=09/"),
                    p("y=2026/m=11/d=28/h=10/"),
                ]),
            ),
            // Across midnight: the tail of one day, a whole day, the head of the next.
            (
                datetime!(2026-11-27 23:00 UTC),
                datetime!(2026-11-29 01:00 UTC),
                Listing::Prefixes(vec![
                    p("y=2026/m=11/d=27/h=23/"),
                    p("y=2026/m=11/d=28/"),
                    p("y=2026/m=11/d=29/h=00/"),
                    p("y=2026/m=11/d=29/h=01/"),
                ]),
            ),
            // A week of whole days.
            (
                datetime!(2026-11-21 00:00 UTC),
                datetime!(2026-11-27 23:00 UTC),
                Listing::Prefixes(
                    (21..=27)
                        .map(|d| p(&format!("y=2026/m=11/d={d}/")))
                        .collect(),
                ),
            ),
            // Too many hour listings: the whole container is cheaper.
            (
                datetime!(2026-11-28 01:30 UTC),
                datetime!(2026-11-29 22:00 UTC),
                Listing::Container,
            ),
            // An empty range.
            (
                datetime!(2026-11-28 10:00 UTC),
                datetime!(2026-11-28 09:00 UTC),
                Listing::Container,
            ),
        ];
        for (first, last, want) in cases {
            assert_eq!(
                &plan_listing(&known, *first, *last),
                want,
                "{first}..={last}"
            );
        }
        // Nothing known yet: the whole container.
        assert_eq!(
            plan_listing(
                &[],
                datetime!(2026-11-28 09:00 UTC),
                datetime!(2026-11-28 09:00 UTC)
            ),
            Listing::Container
        );
        // Two sources: each gets the same paths.
        let two = vec![TENANT.to_string(), "tenantId=other/".to_string()];
        assert_eq!(
            plan_listing(
                &two,
                datetime!(2026-11-28 09:00 UTC),
                datetime!(2026-11-28 09:00 UTC)
            ),
            Listing::Prefixes(vec![
                p("y=2026/m=11/d=28/h=09/"),
                "tenantId=other/y=2026/m=11/d=28/h=09/".to_string()
            ])
        );
    }
}
