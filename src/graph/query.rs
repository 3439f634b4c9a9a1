//! The `/auditLogs/signIns` request URL: the `$filter` expression (time window, event type,
//! preset clause, `SIGNINS_FILTER`) and its encoding. Pure functions, unit-tested here.

use time::OffsetDateTime;
use url::Url;

use crate::config::{EventType, GraphVersion};

/// Graph's maximum page size for sign-ins.
pub const PAGE_SIZE: u32 = 1000;

/// A time window, inclusive at both ends (`ge` / `le`: Graph documents only `eq`, `ge` and `le`
/// for `createdDateTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// An instant as an unquoted OData `DateTimeOffset` literal in UTC: whole seconds when possible
/// (`2026-11-21T10:00:00Z`), otherwise with as many fractional digits as needed.
pub fn odata_instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        s.push('.');
        s.push_str(fraction.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The `$filter` of one query: the window, AND the preset's server clause, AND the extra raw
/// clause (each parenthesised), AND — unless the set is just `interactiveUser`, which Graph
/// returns when no event type is named — one `signInEventTypes/any(…)` clause naming every event
/// type of the set, so several types are one query and one pager (`beta` only; the configuration
/// enforces that; the combined form is what Graph accepts:
/// <https://github.com/microsoftgraph/msgraph-sdk-powershell/issues/956>).
pub fn filter(
    window: &Window,
    event_types: &[EventType],
    server_filter: Option<&str>,
    extra_filter: Option<&str>,
) -> String {
    let mut clauses = vec![
        format!("createdDateTime ge {}", odata_instant(window.start)),
        format!("createdDateTime le {}", odata_instant(window.end)),
    ];
    for clause in [server_filter, extra_filter].into_iter().flatten() {
        let clause = clause.trim();
        if !clause.is_empty() {
            clauses.push(format!("({clause})"));
        }
    }
    if let Some(clause) = event_types_clause(event_types) {
        clauses.push(clause);
    }
    clauses.join(" and ")
}

/// `signInEventTypes/any(t: t eq 'a' or t eq 'b')`, or `None` for no types or just
/// `interactiveUser` (Graph's default).
pub fn event_types_clause(event_types: &[EventType]) -> Option<String> {
    if event_types.is_empty() || event_types == [EventType::InteractiveUser] {
        return None;
    }
    let alternatives: Vec<String> = event_types
        .iter()
        .map(|t| format!("t eq '{}'", t.as_str()))
        .collect();
    Some(format!(
        "signInEventTypes/any(t: {})",
        alternatives.join(" or ")
    ))
}

/// Percent-encodes a query value: everything but unreserved characters and `: / ( ) ,` is
/// escaped, spaces as `%20` (never `+`, which OData would read as a literal plus).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'(' | b')' | b','
            );
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `{endpoint}/{version}/auditLogs/signIns?$top={top}&$filter={filter}`. The `$` of the system
/// query options is sent literally. Never `$select` or `$skip`: this API rejects both.
pub fn signins_url(
    endpoint: &Url,
    version: GraphVersion,
    top: u32,
    filter: &str,
) -> Result<Url, url::ParseError> {
    let base = endpoint.as_str().trim_end_matches('/');
    Url::parse(&format!(
        "{base}/{}/auditLogs/signIns?$top={top}&$filter={}",
        version.as_str(),
        encode_query_value(filter)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn week() -> Window {
        Window {
            start: datetime!(2026-11-21 10:00:00 UTC),
            end: datetime!(2026-11-28 10:00:00 UTC),
        }
    }

    #[test]
    fn instants_are_unquoted_utc_with_only_needed_digits() {
        assert_eq!(
            odata_instant(datetime!(2026-11-21 10:00:00 UTC)),
            "2026-11-21T10:00:00Z"
        );
        assert_eq!(
            odata_instant(datetime!(2026-11-21 11:00:00 +01:00)),
            "2026-11-21T10:00:00Z"
        );
        assert_eq!(
            odata_instant(datetime!(2026-11-21 10:00:00.5 UTC)),
            "2026-11-21T10:00:00.5Z"
        );
        assert_eq!(
            odata_instant(datetime!(2026-01-02 03:04:05.000123 UTC)),
            "2026-01-02T03:04:05.000123Z"
        );
    }

    #[test]
    fn window_only() {
        assert_eq!(
            filter(&week(), &[EventType::InteractiveUser], None, None),
            "createdDateTime ge 2026-11-21T10:00:00Z and createdDateTime le 2026-11-28T10:00:00Z"
        );
    }

    #[test]
    fn every_part_is_anded_in_order() {
        let f = filter(
            &week(),
            &[EventType::NonInteractiveUser],
            Some("clientAppUsed eq 'IMAP4' or clientAppUsed eq 'POP3'"),
            Some(" userPrincipalName eq 'a@b.c' "),
        );
        assert_eq!(
            f,
            "createdDateTime ge 2026-11-21T10:00:00Z and createdDateTime le 2026-11-28T10:00:00Z \
             and (clientAppUsed eq 'IMAP4' or clientAppUsed eq 'POP3') and (userPrincipalName eq 'a@b.c') \
             and signInEventTypes/any(t: t eq 'nonInteractiveUser')"
        );
        assert!(!f.contains(" gt ") && !f.contains(" lt "));
        let sp = filter(&week(), &[EventType::ServicePrincipal], Some("  "), None);
        assert!(
            sp.ends_with(
                "le 2026-11-28T10:00:00Z and signInEventTypes/any(t: t eq 'servicePrincipal')"
            ),
            "{sp}"
        );
    }

    #[test]
    fn several_event_types_are_one_clause() {
        let both = filter(
            &week(),
            &[EventType::InteractiveUser, EventType::NonInteractiveUser],
            Some("clientAppUsed eq 'Exchange ActiveSync'"),
            None,
        );
        assert!(
            both.ends_with(
                "and (clientAppUsed eq 'Exchange ActiveSync') \
                 and signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')"
            ),
            "{both}"
        );
        assert_eq!(event_types_clause(&[]), None);
        assert_eq!(event_types_clause(&[EventType::InteractiveUser]), None);
        assert_eq!(
            event_types_clause(&[EventType::ManagedIdentity, EventType::InteractiveUser])
                .as_deref(),
            Some("signInEventTypes/any(t: t eq 'managedIdentity' or t eq 'interactiveUser')")
        );
    }

    #[test]
    fn encoding_uses_percent_twenty_and_escapes_operators() {
        assert_eq!(encode_query_value("a eq 'b&c'"), "a%20eq%20%27b%26c%27");
        assert_eq!(encode_query_value("x+y=z#?%"), "x%2By%3Dz%23%3F%25");
        assert_eq!(
            encode_query_value("2026-11-21T10:00:00Z"),
            "2026-11-21T10:00:00Z"
        );
        assert_eq!(
            encode_query_value("signInEventTypes/any(t: t eq 'x')"),
            "signInEventTypes/any(t:%20t%20eq%20%27x%27)"
        );
        assert_eq!(encode_query_value("Zürich"), "Z%C3%BCrich");
    }

    #[test]
    fn url_shape() {
        let endpoint = Url::parse("https://graph.microsoft.com").unwrap();
        let f = filter(
            &week(),
            &[EventType::InteractiveUser],
            Some("clientAppUsed eq 'Exchange ActiveSync'"),
            None,
        );
        let url = signins_url(&endpoint, GraphVersion::V1, PAGE_SIZE, &f).unwrap();
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/auditLogs/signIns?$top=1000&$filter=createdDateTime%20ge%202026-11-21T10:00:00Z\
             %20and%20createdDateTime%20le%202026-11-28T10:00:00Z%20and%20(clientAppUsed%20eq%20%27Exchange%20ActiveSync%27)"
        );
        // What a server decodes is exactly the filter.
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("$top".to_string(), "1000".to_string()),
                ("$filter".to_string(), f)
            ]
        );
        assert!(!url.as_str().contains("$select") && !url.as_str().contains("$skip"));
        let local = Url::parse("http://127.0.0.1:4321/").unwrap();
        let url = signins_url(&local, GraphVersion::Beta, 1, "x").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:4321/beta/auditLogs/signIns?$top=1&$filter=x"
        );
    }
}
