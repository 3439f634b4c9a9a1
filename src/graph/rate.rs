//! Client-side pacing of Graph requests (pure, table-tested): at most `requests` in any `per`
//! (`SIGNINS_GRAPH_RATE`), shared by every pager of a run.
//!
//! Graph limits the identity and access reports, `/auditLogs/signIns` included, to 5 requests per
//! 10 seconds per app per tenant
//! (<https://learn.microsoft.com/graph/throttling-limits#identity-and-access-reports-service-limits>).
//! With several slices read at once, pacing keeps the run inside that budget instead of finding
//! its edge through 429s. The budget is shared with every other tool using the same app
//! registration, so a 429 still happens; then the whole client backs off as one: every request
//! waits for the `Retry-After`, and the rate drops by one request per window. Each
//! [`RECOVER_AFTER`] windows' worth of answers without a 429 raise it by one again, up to the
//! configured rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::GraphRate;

/// Sent this much later than the window strictly allows: the server counts arrivals, which
/// reach it with their own jitter.
pub const SAFETY: Duration = Duration::from_millis(100);
/// Windows' worth of successful answers after which a lowered rate rises by one.
pub const RECOVER_AFTER: u32 = 2;

/// The sliding window of recent requests, and what the throttle taught.
#[derive(Debug, Clone)]
pub struct RateWindow {
    configured: u32,
    per: Duration,
    /// Requests allowed per window now: `configured`, lowered by 429s.
    allowed: u32,
    /// When the most recent requests were sent, oldest first (at most `configured`).
    sent: VecDeque<Instant>,
    /// A 429's `Retry-After`: nothing is sent before this.
    paused_until: Option<Instant>,
    /// Successful answers since the rate was last lowered or raised.
    successes: u32,
    /// When a request last had to wait for a slot.
    last_wait: Option<Instant>,
}

impl RateWindow {
    pub fn new(rate: GraphRate) -> RateWindow {
        let configured = rate.requests.max(1);
        RateWindow {
            configured,
            per: rate.per,
            allowed: configured,
            sent: VecDeque::with_capacity(configured as usize),
            paused_until: None,
            successes: 0,
            last_wait: None,
        }
    }

    /// Requests allowed per window now.
    pub fn allowed(&self) -> u32 {
        self.allowed
    }

    /// Whether a request had to wait for a slot within the last window: the run is bound by
    /// the rate, not by Graph's answers.
    pub fn pacing(&self, now: Instant) -> bool {
        self.last_wait
            .is_some_and(|at| now.saturating_duration_since(at) < self.per)
    }

    /// Takes a slot for a request sent at `now`, or says when to ask again.
    pub fn try_send(&mut self, now: Instant) -> Result<(), Instant> {
        let slot = self.slot(now);
        if slot.is_err() {
            self.last_wait = Some(now);
        }
        slot
    }

    fn slot(&mut self, now: Instant) -> Result<(), Instant> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until);
            }
            self.paused_until = None;
        }
        while self
            .sent
            .front()
            .is_some_and(|sent| now.saturating_duration_since(*sent) >= self.per + SAFETY)
        {
            self.sent.pop_front();
        }
        let allowed = self.allowed as usize;
        // `allowed` never exceeds `configured`, so neither does the window's length.
        if self.sent.len() < allowed {
            self.sent.push_back(now);
            return Ok(());
        }
        // The window holds `allowed` or more requests: the next slot opens when the one that
        // makes it full leaves the window.
        let blocking = self.sent[self.sent.len() - allowed];
        Err(blocking + self.per + SAFETY)
    }

    /// Graph answered 429 at `now`: pause every request for `retry_after` (a whole window when
    /// the answer has none) and lower the rate.
    pub fn throttled(&mut self, now: Instant, retry_after: Option<Duration>) {
        let until = now + retry_after.unwrap_or(self.per);
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.allowed = self.allowed.saturating_sub(1).max(1);
        self.successes = 0;
    }

    /// Graph answered a request without throttling it.
    pub fn succeeded(&mut self) {
        if self.allowed == self.configured {
            return;
        }
        self.successes += 1;
        if self.successes >= RECOVER_AFTER * self.configured {
            self.allowed += 1;
            self.successes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER: Duration = Duration::from_secs(10);

    fn window(requests: u32) -> RateWindow {
        RateWindow::new(GraphRate { requests, per: PER })
    }

    fn secs(s: f64) -> Duration {
        // Whole milliseconds, so that sums of offsets compare exactly.
        Duration::from_millis((s * 1000.0).round() as u64)
    }

    #[test]
    fn admits_the_rate_then_waits_for_the_oldest_to_leave_the_window() {
        let t0 = Instant::now();
        let mut w = window(5);
        // (offset of the request, admitted, else when to retry, as an offset)
        let table: &[(f64, Result<(), f64>)] = &[
            (0.0, Ok(())),
            (0.5, Ok(())),
            (1.0, Ok(())),
            (1.5, Ok(())),
            (2.0, Ok(())),
            (2.5, Err(10.1)),
            (9.9, Err(10.1)),
            (10.0, Err(10.1)),
            (10.1, Ok(())),
            (10.2, Err(10.6)),
            (10.6, Ok(())),
            (10.7, Err(11.1)),
            (12.0, Ok(())),
        ];
        for (at, expected) in table {
            let got = w
                .try_send(t0 + secs(*at))
                .map_err(|until| (until - t0).as_secs_f64());
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(g), Err(e)) => assert!((g - e).abs() < 1e-6, "at {at}: {g} vs {e}"),
                (g, e) => panic!("at {at}: {g:?}, expected {e:?}"),
            }
        }
    }

    #[test]
    fn never_more_than_the_rate_in_any_window() {
        // Many callers asking as fast as they may: every window of `PER` holds at most 5 sends.
        let t0 = Instant::now();
        let mut w = window(5);
        let mut sends = Vec::new();
        let mut now = t0;
        while sends.len() < 40 {
            match w.try_send(now) {
                Ok(()) => sends.push(now),
                Err(until) => now = until,
            }
        }
        for (i, first) in sends.iter().enumerate() {
            let in_window = sends[i..].iter().filter(|s| **s - *first < PER).count();
            assert!(in_window <= 5, "{in_window} sends within 10 s of send {i}");
        }
        // …and the pacing costs only the safety margin per window.
        let span = (*sends.last().unwrap() - t0).as_secs_f64();
        assert!(span < 7.0 * (10.0 + SAFETY.as_secs_f64()) + 1e-6, "{span}");
    }

    #[test]
    fn a_429_pauses_everyone_and_lowers_the_rate_until_answers_succeed_again() {
        let t0 = Instant::now();
        let mut w = window(5);
        assert_eq!(w.try_send(t0), Ok(()));
        w.throttled(t0, Some(Duration::from_secs(3)));
        assert_eq!(w.allowed(), 4);
        assert_eq!(w.try_send(t0 + secs(1.0)), Err(t0 + secs(3.0)));
        assert_eq!(w.try_send(t0 + secs(3.0)), Ok(()));
        // A second 429 without Retry-After pauses a whole window.
        w.throttled(t0 + secs(4.0), None);
        assert_eq!(w.allowed(), 3);
        assert_eq!(w.try_send(t0 + secs(13.9)), Err(t0 + secs(14.0)));
        // Two windows' worth of good answers raise the rate by one.
        for _ in 0..(RECOVER_AFTER * 5 - 1) {
            w.succeeded();
        }
        assert_eq!(w.allowed(), 3);
        w.succeeded();
        assert_eq!(w.allowed(), 4);
        for _ in 0..(RECOVER_AFTER * 5) {
            w.succeeded();
        }
        assert_eq!(w.allowed(), 5);
        for _ in 0..100 {
            w.succeeded();
        }
        assert_eq!(w.allowed(), 5, "never above the configured rate");
    }

    #[test]
    fn pacing_means_a_request_waited_within_the_last_window() {
        let t0 = Instant::now();
        let mut w = window(2);
        assert!(!w.pacing(t0));
        assert_eq!(w.try_send(t0), Ok(()));
        assert_eq!(w.try_send(t0), Ok(()));
        assert!(!w.pacing(t0), "no request waited yet");
        assert!(w.try_send(t0 + secs(1.0)).is_err());
        assert!(w.pacing(t0 + secs(1.0)));
        assert!(w.pacing(t0 + secs(10.9)));
        assert!(!w.pacing(t0 + secs(11.0)), "a window without waiting");
    }

    #[test]
    fn a_lowered_rate_admits_fewer_per_window() {
        let t0 = Instant::now();
        let mut w = window(5);
        w.throttled(t0, Some(Duration::ZERO));
        w.throttled(t0, Some(Duration::ZERO));
        assert_eq!(w.allowed(), 3);
        for i in 0..3 {
            assert_eq!(w.try_send(t0 + secs(f64::from(i))), Ok(()));
        }
        assert_eq!(w.try_send(t0 + secs(3.0)), Err(t0 + secs(10.1)));
    }

    #[test]
    fn the_rate_never_drops_below_one() {
        let t0 = Instant::now();
        let mut w = window(2);
        for _ in 0..5 {
            w.throttled(t0, Some(Duration::ZERO));
        }
        assert_eq!(w.allowed(), 1);
        assert_eq!(w.try_send(t0), Ok(()));
        assert_eq!(w.try_send(t0), Err(t0 + PER + SAFETY));
    }
}
