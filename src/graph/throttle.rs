//! Retry decisions for Graph requests, as one pure function: which failures are retried, how long
//! to wait (`Retry-After`, else exponential backoff with full jitter), and when the run's retry
//! budget is spent.

use std::time::{Duration, SystemTime};

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// First backoff step (before jitter) when the server gives no `Retry-After`.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest backoff step (before jitter).
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Attempts per request, whatever the budget says (a guard against a server answering
/// `Retry-After: 0` forever).
pub const MAX_ATTEMPTS: u32 = 20;

/// Attempts after which `403 Authentication_RequestFromNonPremiumTenantOrB2CTenant` is believed:
/// Graph answers it intermittently on licensed tenants (its licence check;
/// microsoftgraph/microsoft-graph-docs#13632), so it is retried twice first.
pub const LICENCE_CHECK_ATTEMPTS: u32 = 3;

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with this HTTP status.
    Status(u16),
    /// `403 Authentication_RequestFromNonPremiumTenantOrB2CTenant`: no P1/P2 licence — or
    /// Graph's licence check failing for a moment on a licensed tenant.
    LicenceCheck,
    /// No usable answer: connection failure, reset, or the per-request timeout.
    Transport,
}

/// What to do about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then send the same request again.
    Retry(Duration),
    /// Retrying is allowed but would wait `wanted` while less than that is left of the budget
    /// (or the attempt limit is reached).
    BudgetExhausted { wanted: Duration },
    /// Not a transient failure: give up now.
    Fail,
}

/// Whether `failure` is transient: 429, 500, 502, 503, 504, transport errors/timeouts, and the
/// licence check (for its first [`LICENCE_CHECK_ATTEMPTS`]).
pub fn is_retryable(failure: Failure) -> bool {
    matches!(
        failure,
        Failure::Transport | Failure::LicenceCheck | Failure::Status(429 | 500 | 502 | 503 | 504)
    )
}

/// Decides what to do after `failure` on attempt number `attempt` (0 = the first try).
///
/// * `retry_after`: the response's `Retry-After` header, if any: delta-seconds or an HTTP-date
///   (compared with `now`). When valid, it is honoured exactly.
/// * otherwise: full-jitter exponential backoff, `jitter * min(cap, base * 2^attempt)`, where
///   `jitter` is a uniform random number in `[0, 1)` supplied by the caller (keeps this pure).
/// * `budget_left`: what remains of the run's total waiting budget; a wait that does not fit
///   ends the retries.
pub fn decide(
    failure: Failure,
    retry_after: Option<&str>,
    attempt: u32,
    budget_left: Duration,
    now: SystemTime,
    jitter: f64,
) -> Decision {
    if !is_retryable(failure)
        || (failure == Failure::LicenceCheck && attempt + 1 >= LICENCE_CHECK_ATTEMPTS)
    {
        return Decision::Fail;
    }
    let wait = retry_after
        .and_then(|value| parse_retry_after(value, now))
        .unwrap_or_else(|| backoff(attempt, jitter));
    if attempt + 1 >= MAX_ATTEMPTS || budget_left.is_zero() || wait > budget_left {
        return Decision::BudgetExhausted { wanted: wait };
    }
    Decision::Retry(wait)
}

/// Full-jitter exponential backoff for attempt `attempt` (0-based).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        1.0
    };
    ceiling.mul_f64(jitter)
}

const HTTP_DATE: &[FormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Parses `Retry-After`: whole seconds (`"120"`) or an IMF-fixdate HTTP-date
/// (`"Wed, 21 Oct 2026 07:28:00 GMT"`). A date in the past means "now" (zero). Anything else is
/// `None` (the caller falls back to backoff).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let date = PrimitiveDateTime::parse(value, HTTP_DATE)
        .ok()?
        .assume_utc();
    let now = OffsetDateTime::from(now);
    let ahead = date - now;
    Some(if ahead.is_positive() {
        Duration::try_from(ahead).unwrap_or_default()
    } else {
        Duration::ZERO
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        let t =
            OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
        SystemTime::from(t)
    }

    const NOW: &str = "2026-11-28T10:00:00Z";
    const PLENTY: Duration = Duration::from_secs(300);

    #[test]
    fn the_licence_check_is_retried_twice_then_believed() {
        let now = at(NOW);
        for attempt in 0..LICENCE_CHECK_ATTEMPTS - 1 {
            assert!(matches!(
                decide(Failure::LicenceCheck, None, attempt, PLENTY, now, 0.5),
                Decision::Retry(_)
            ));
        }
        assert_eq!(
            decide(
                Failure::LicenceCheck,
                None,
                LICENCE_CHECK_ATTEMPTS - 1,
                PLENTY,
                now,
                0.5
            ),
            Decision::Fail
        );
        assert_eq!(
            decide(Failure::Status(403), None, 0, PLENTY, now, 0.5),
            Decision::Fail,
            "any other 403 is final"
        );
    }

    #[test]
    fn retryable_statuses_are_exactly_throttling_and_server_errors() {
        for status in [429, 500, 502, 503, 504] {
            assert!(is_retryable(Failure::Status(status)), "{status}");
        }
        assert!(is_retryable(Failure::Transport));
        for status in [400, 401, 403, 404, 409, 501, 505] {
            assert!(!is_retryable(Failure::Status(status)), "{status}");
            assert_eq!(
                decide(Failure::Status(status), Some("1"), 0, PLENTY, at(NOW), 0.5),
                Decision::Fail
            );
        }
    }

    #[test]
    fn retry_after_seconds_is_honoured_exactly() {
        let d = decide(Failure::Status(429), Some("7"), 3, PLENTY, at(NOW), 0.0);
        assert_eq!(d, Decision::Retry(Duration::from_secs(7)));
        let d = decide(Failure::Status(503), Some(" 0 "), 0, PLENTY, at(NOW), 0.9);
        assert_eq!(d, Decision::Retry(Duration::ZERO));
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now() {
        let d = decide(
            Failure::Status(429),
            Some("Sat, 28 Nov 2026 10:00:42 GMT"),
            0,
            PLENTY,
            at(NOW),
            0.5,
        );
        assert_eq!(d, Decision::Retry(Duration::from_secs(42)));
        // A date already past: retry at once.
        let d = decide(
            Failure::Status(429),
            Some("Sat, 28 Nov 2026 09:00:00 GMT"),
            0,
            PLENTY,
            at(NOW),
            0.5,
        );
        assert_eq!(d, Decision::Retry(Duration::ZERO));
    }

    #[test]
    fn unparseable_retry_after_falls_back_to_backoff() {
        for header in ["soon", "-5", "1.5", "", "Sat, 28 Nov 2026 10:00:42 CET"] {
            let d = decide(Failure::Status(429), Some(header), 2, PLENTY, at(NOW), 0.5);
            assert_eq!(d, Decision::Retry(Duration::from_secs(2)), "{header:?}");
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap_with_full_jitter() {
        let ceilings: Vec<u64> = (0..9).map(|a| backoff(a, 1.0).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(40, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, 0.25), Duration::from_secs(2));
        // Garbage jitter never produces more than the ceiling.
        assert_eq!(backoff(1, f64::NAN), Duration::from_secs(2));
        assert_eq!(backoff(1, 7.0), Duration::from_secs(2));
    }

    #[test]
    fn transport_failures_back_off() {
        let d = decide(Failure::Transport, None, 1, PLENTY, at(NOW), 0.5);
        assert_eq!(d, Decision::Retry(Duration::from_secs(1)));
    }

    #[test]
    fn a_wait_longer_than_the_budget_ends_the_retries() {
        let d = decide(
            Failure::Status(429),
            Some("120"),
            0,
            Duration::from_secs(119),
            at(NOW),
            0.5,
        );
        assert_eq!(
            d,
            Decision::BudgetExhausted {
                wanted: Duration::from_secs(120)
            }
        );
        let d = decide(
            Failure::Status(429),
            Some("120"),
            0,
            Duration::from_secs(120),
            at(NOW),
            0.5,
        );
        assert_eq!(d, Decision::Retry(Duration::from_secs(120)));
        // An empty budget refuses even a zero wait.
        let d = decide(Failure::Status(503), None, 0, Duration::ZERO, at(NOW), 0.0);
        assert_eq!(
            d,
            Decision::BudgetExhausted {
                wanted: Duration::ZERO
            }
        );
    }

    #[test]
    fn attempts_are_capped_even_with_budget_left() {
        let d = decide(
            Failure::Status(429),
            Some("0"),
            MAX_ATTEMPTS - 1,
            PLENTY,
            at(NOW),
            0.0,
        );
        assert!(matches!(d, Decision::BudgetExhausted { .. }));
        let d = decide(
            Failure::Status(429),
            Some("0"),
            MAX_ATTEMPTS - 2,
            PLENTY,
            at(NOW),
            0.0,
        );
        assert_eq!(d, Decision::Retry(Duration::ZERO));
    }
}
