//! The refresh trigger's query parameters (`since`, `until`, and the host's `code`), validated
//! into a window or a [`ParamError`] naming the parameter. The time checks themselves are
//! [`run::parse_window`], shared with the CLI.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::run::{self, RequestedWindow};

/// A refused parameter. `message` never repeats the parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct ParamError {
    pub parameter: String,
    pub message: String,
}

/// Validates the query at `now`. `code` (the function key, when the caller authenticates with
/// `?code=`) is accepted in any case and ignored; any other unknown name is refused.
pub fn parse_refresh_query(
    query: &BTreeMap<String, String>,
    now: OffsetDateTime,
) -> Result<RequestedWindow, ParamError> {
    let (mut since, mut until) = (None, None);
    for (name, value) in query {
        match name.as_str() {
            "since" => since = Some(value.as_str()),
            "until" => until = Some(value.as_str()),
            _ if name.eq_ignore_ascii_case("code") => {}
            _ => {
                return Err(ParamError {
                    // Bounded: the name comes from the caller.
                    parameter: name.chars().take(64).collect(),
                    message: "unknown parameter; accepted: since, until (RFC 3339 timestamps)"
                        .into(),
                });
            }
        }
    }
    run::parse_window(since, until, now).map_err(|e| ParamError {
        parameter: e.parameter.to_string(),
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 16:00:00 UTC);

    fn parse(pairs: &[(&str, &str)]) -> Result<RequestedWindow, ParamError> {
        let query = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_refresh_query(&query, NOW)
    }

    #[test]
    fn accepts_a_window_and_the_function_key() {
        assert_eq!(parse(&[]), Ok(RequestedWindow::default()));
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
