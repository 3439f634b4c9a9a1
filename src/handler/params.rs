//! The refresh trigger's query parameters (`since`, `until`, and the host's `code`), validated
//! into a window or a [`ParamError`] naming the parameter.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::GRAPH_RETENTION;

/// How far ahead of our clock a caller's timestamp may be (their clock may run fast); later
/// values are refused as "in the future", earlier ones are clamped to now.
pub const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// The window a refresh asks for; `None` = the pipeline's default (watermark / now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshWindow {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// A refused parameter. `message` never repeats the parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct ParamError {
    pub parameter: String,
    pub message: String,
}

fn refuse(parameter: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        parameter: parameter.chars().take(64).collect(),
        message: message.into(),
    }
}

/// Validates the query at `now`. `code` (the function key, when the caller authenticates with
/// `?code=`) is accepted in any case and ignored; any other unknown name is refused.
pub fn parse_refresh_query(
    query: &BTreeMap<String, String>,
    now: OffsetDateTime,
) -> Result<RefreshWindow, ParamError> {
    let mut window = RefreshWindow::default();
    for (name, value) in query {
        match name.as_str() {
            "since" => window.since = Some(parse_instant("since", value, now)?),
            "until" => window.until = Some(parse_instant("until", value, now)?),
            _ if name.eq_ignore_ascii_case("code") => {}
            _ => {
                return Err(refuse(
                    name,
                    "unknown parameter; accepted: since, until (RFC 3339 timestamps)",
                ))
            }
        }
    }
    if let (Some(since), Some(until)) = (window.since, window.until) {
        if since >= until {
            return Err(refuse("since", "must be earlier than until"));
        }
    }
    Ok(window)
}

fn parse_instant(
    parameter: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, ParamError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(refuse(
            parameter,
            "is empty; expected an RFC 3339 timestamp such as 2026-11-27T00:00:00Z",
        ));
    }
    let at = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        refuse(
            parameter,
            "is not an RFC 3339 timestamp; expected e.g. 2026-11-27T00:00:00Z",
        )
    })?;
    if at > now + CLOCK_SKEW {
        return Err(refuse(parameter, "is in the future"));
    }
    if at < now - GRAPH_RETENTION {
        return Err(refuse(
            parameter,
            "is older than 30 days: Graph keeps sign-in logs for 30 days only",
        ));
    }
    Ok(at.min(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 16:00:00 UTC);

    fn parse(pairs: &[(&str, &str)]) -> Result<RefreshWindow, ParamError> {
        let query = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_refresh_query(&query, NOW)
    }

    #[test]
    fn accepts_a_window_and_the_function_key() {
        assert_eq!(parse(&[]), Ok(RefreshWindow::default()));
        let window = parse(&[
            ("since", "2026-11-27T00:00:00Z"),
            ("until", "2026-11-28T17:00:00+02:00"),
            ("code", "secret-function-key"),
            ("Code", "other"),
        ])
        .unwrap();
        assert_eq!(window.since, Some(datetime!(2026-11-27 00:00:00 UTC)));
        assert_eq!(window.until, Some(datetime!(2026-11-28 15:00:00 UTC)));
        // Within the clock-skew allowance: clamped to now.
        let window = parse(&[("until", "2026-11-28T16:01:00Z")]).unwrap();
        assert_eq!(window.until, Some(NOW));
    }

    #[test]
    fn refusals_name_the_parameter() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("since", "yesterday")], "since", "RFC 3339"),
            (&[("until", "")], "until", "empty"),
            (&[("since", "2026-11-28T17:00:00Z")], "since", "future"),
            (&[("until", "2027-01-01T00:00:00Z")], "until", "future"),
            (&[("since", "2026-10-01T00:00:00Z")], "since", "30 days"),
            (&[("until", "2026-10-01T00:00:00Z")], "until", "30 days"),
            (
                &[
                    ("since", "2026-11-28T10:00:00Z"),
                    ("until", "2026-11-28T10:00:00Z"),
                ],
                "since",
                "earlier than until",
            ),
            (
                &[
                    ("since", "2026-11-28T11:00:00Z"),
                    ("until", "2026-11-28T10:00:00Z"),
                ],
                "since",
                "earlier than until",
            ),
            (&[("lookback", "7d")], "lookback", "unknown parameter"),
            (
                &[("SINCE", "2026-11-28T10:00:00Z")],
                "SINCE",
                "unknown parameter",
            ),
        ];
        for (pairs, parameter, fragment) in cases {
            let err = parse(pairs).expect_err("must be refused");
            assert_eq!(err.parameter, *parameter, "{pairs:?}");
            assert!(err.message.contains(fragment), "{pairs:?}: {}", err.message);
        }
    }

    #[test]
    fn refusals_never_echo_values() {
        let err = parse(&[("since", "<script>secret</script>")]).unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
