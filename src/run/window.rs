//! `since` / `until` as a caller gives them (CLI flags, the refresh trigger's query): one parser
//! and one set of checks for both shells.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::GRAPH_RETENTION;

/// A bad `since` / `until` (CLI flag or HTTP query parameter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct WindowError {
    /// `since` or `until`.
    pub parameter: &'static str,
    pub message: String,
}

/// An explicitly requested window; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedWindow {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// How far ahead of our clock a caller's timestamp may be (their clock may run fast); later
/// values are refused as "in the future", earlier ones are clamped to now.
pub const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// Parses and checks `since` / `until` (RFC 3339, any offset): not in the future (beyond
/// [`CLOCK_SKEW`]), within Graph's 30-day retention, `since` before `until`. The one check behind
/// the CLI flags and the refresh trigger's query. Messages never repeat the value.
pub fn parse_window(
    since: Option<&str>,
    until: Option<&str>,
    now: OffsetDateTime,
) -> Result<RequestedWindow, WindowError> {
    let window = RequestedWindow {
        since: since.map(|v| parse_instant("since", v, now)).transpose()?,
        until: until.map(|v| parse_instant("until", v, now)).transpose()?,
    };
    if let (Some(since), Some(until)) = (window.since, window.until) {
        if since >= until {
            return Err(WindowError {
                parameter: "since",
                message: "must be earlier than until".into(),
            });
        }
    }
    Ok(window)
}

fn parse_instant(
    parameter: &'static str,
    value: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, WindowError> {
    let refuse = |message: &str| WindowError {
        parameter,
        message: message.into(),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(refuse(
            "is empty; expected an RFC 3339 timestamp such as 2026-11-27T00:00:00Z",
        ));
    }
    let at = OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| refuse("is not an RFC 3339 timestamp; expected e.g. 2026-11-27T00:00:00Z"))?
        .to_offset(time::UtcOffset::UTC);
    if at > now + CLOCK_SKEW {
        return Err(refuse("is in the future"));
    }
    if at < now - GRAPH_RETENTION {
        return Err(refuse(
            "is older than 30 days: Graph keeps sign-in logs for 30 days only",
        ));
    }
    Ok(at.min(now))
}
