//! One presenter for a run's outcome, shared by every shell: the timer and refresh routes and the
//! CLI all turn a run's result into a [`Report`] and read from it the status (HTTP or exit code),
//! the line for people, the JSON and the one structured event per run that alerts key on.
//!
//! The structured event is one console line, `SIGNIN_EXPORT_RUN {json}`, with `trigger`,
//! `outcome`, `rows`, `windowStart`, `windowEnd`, `watermark`, `stalledRuns` (consecutive runs
//! that had something to read and committed nothing; 0 when this one made progress),
//! `remaining` (what is still to read: `from`, `to`, `estimatedRows`; null when caught up),
//! `durationMs` and (failed runs only) `error`. The Azure Monitor alerts in `infra/` and the
//! run-history query in `docs/deploy.md` parse exactly this shape.

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{RunError, RunOutcome};
use crate::config::format_duration;
use crate::sink::LockHolder;
use crate::state::RunSummary;

/// The token that starts the per-run structured event.
pub const RUN_EVENT: &str = "SIGNIN_EXPORT_RUN";

/// Who started the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Timer,
    Refresh,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Timer => "timer",
            Trigger::Refresh => "refresh",
            Trigger::Cli => "cli",
        }
    }
}

/// How the run ended, in the words every shell uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Completed,
    DeadlineReached,
    Busy,
    Cancelled,
    /// The request cannot run as asked: the caller must change it.
    Refused,
    Failed,
}

impl Verdict {
    /// The `status` / `outcome` word of the JSON replies and of the run event.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Completed => "completed",
            Verdict::DeadlineReached => "deadline-reached",
            Verdict::Busy => "already-running",
            Verdict::Cancelled => "shutting-down",
            Verdict::Refused => "bad-request",
            Verdict::Failed => "failed",
        }
    }

    fn event_word(self) -> &'static str {
        match self {
            Verdict::Busy => "busy",
            Verdict::Cancelled => "cancelled",
            Verdict::Refused => "refused",
            other => other.as_str(),
        }
    }
}

/// A run's outcome, presented.
#[derive(Debug, Clone)]
pub struct Report {
    pub trigger: Trigger,
    pub verdict: Verdict,
    /// One line for people: logs, the invocation's `Logs`, the CLI's stderr.
    pub line: String,
    /// What the caller is told besides the line (deadline and cancel explanations, the error).
    pub message: Option<String>,
    pub summary: Option<RunSummary>,
    pub holder: Option<LockHolder>,
    pub elapsed: Duration,
}

impl Report {
    /// `deadline` is the run's deadline, named in the deadline-reached message.
    pub fn new(
        trigger: Trigger,
        outcome: &Result<RunOutcome, RunError>,
        deadline: Option<Duration>,
        elapsed: Duration,
    ) -> Report {
        let base = Report {
            trigger,
            verdict: Verdict::Failed,
            line: String::new(),
            message: None,
            summary: None,
            holder: None,
            elapsed,
        };
        match outcome {
            Ok(RunOutcome::Completed(summary)) => {
                let what = match trigger {
                    Trigger::Refresh => "refresh",
                    Trigger::Timer | Trigger::Cli => "export",
                };
                Report {
                    verdict: Verdict::Completed,
                    line: format!("{what} completed: {}", summary_line(summary)),
                    summary: Some(summary.clone()),
                    ..base
                }
            }
            Ok(RunOutcome::DeadlineReached(summary)) => {
                let message = format!(
                    "the run's deadline ({}) was reached: what it read is committed; the next timer run or refresh continues",
                    deadline.map_or_else(|| "none".to_string(), format_duration)
                );
                Report {
                    verdict: Verdict::DeadlineReached,
                    line: format!("{message}; {}", summary_line(summary)),
                    message: Some(message),
                    summary: Some(summary.clone()),
                    ..base
                }
            }
            Ok(RunOutcome::Busy(holder)) => {
                let line = busy_line(holder);
                Report {
                    verdict: Verdict::Busy,
                    message: Some(line.clone()),
                    line,
                    holder: Some(holder.clone()),
                    ..base
                }
            }
            Err(RunError::Cancelled) => {
                let what = match trigger {
                    Trigger::Refresh => "refresh",
                    Trigger::Timer | Trigger::Cli => "export",
                };
                let message = format!("{what} stopped: {}; retry shortly", RunError::Cancelled);
                Report {
                    verdict: Verdict::Cancelled,
                    line: message.clone(),
                    message: Some(message),
                    ..base
                }
            }
            Err(error @ (RunError::Refused(_) | RunError::Unsupported(_))) => {
                let message = format!("export refused: {}", one_line(error));
                Report {
                    verdict: Verdict::Refused,
                    line: message.clone(),
                    message: Some(message),
                    ..base
                }
            }
            Err(error) => {
                let message = format!("export failed: {}", one_line(error));
                Report {
                    verdict: Verdict::Failed,
                    line: message.clone(),
                    message: Some(message),
                    ..base
                }
            }
        }
    }

    /// The status an HTTP caller gets: 200 done, 202 partly done (the next run continues), 409
    /// another run holds the lock, 503 shutting down (retry), 500 failed.
    pub fn http_status(&self) -> u16 {
        match self.verdict {
            Verdict::Completed => 200,
            Verdict::DeadlineReached => 202,
            Verdict::Busy => 409,
            Verdict::Cancelled => 503,
            Verdict::Refused => 400,
            Verdict::Failed => 500,
        }
    }

    /// The CLI's exit code: 0 when the export made its progress, 2 when the request must change,
    /// 1 when it did not run or failed.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Completed | Verdict::DeadlineReached => 0,
            Verdict::Refused => 2,
            Verdict::Busy | Verdict::Cancelled | Verdict::Failed => 1,
        }
    }

    /// The JSON body of an HTTP reply: `status`, and the summary, message, holder or error.
    pub fn body(&self) -> Value {
        let status = self.verdict.as_str();
        match self.verdict {
            Verdict::Completed => json!({"status": status, "summary": self.summary}),
            Verdict::DeadlineReached => {
                json!({"status": status, "message": self.message, "summary": self.summary})
            }
            Verdict::Busy => json!({
                "status": status,
                "message": self.message,
                "holder": self.holder.as_ref().map(|h| h.holder.clone()),
                "since": self.holder.as_ref().and_then(|h| h.since).and_then(|at| at.format(&Rfc3339).ok()),
            }),
            Verdict::Cancelled | Verdict::Refused | Verdict::Failed => {
                json!({"status": status, "error": {"message": self.message}})
            }
        }
    }

    /// The one structured event per run: `SIGNIN_EXPORT_RUN {json}` on one line.
    pub fn event(&self) -> String {
        let summary = self.summary.as_ref();
        let at = |t: Option<OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
        let mut event = json!({
            "trigger": self.trigger.as_str(),
            "outcome": self.verdict.event_word(),
            "rows": summary.map_or(0, |s| s.rows),
            "windowStart": at(summary.and_then(|s| s.window_start)),
            "windowEnd": at(summary.and_then(|s| s.window_end)),
            "watermark": at(summary.and_then(|s| s.watermark)),
            "stalledRuns": summary.map_or(0, |s| s.stalled_runs),
            "remaining": summary.and_then(|s| s.remaining).map(|r| json!({
                "from": at(Some(r.from)),
                "to": at(Some(r.to)),
                "estimatedRows": r.estimated_rows,
            })),
            "durationMs": u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        if self.verdict == Verdict::Failed {
            event["error"] = json!(self.message);
        }
        format!("{RUN_EVENT} {event}")
    }

    /// Writes the run event to the log at the verdict's level (failures to stderr in `serve`).
    pub fn log_event(&self) {
        let event = self.event();
        match self.verdict {
            Verdict::Failed => tracing::error!("{event}"),
            Verdict::Cancelled => tracing::warn!("{event}"),
            _ => tracing::info!("{event}"),
        }
    }
}

fn rfc3339(at: Option<OffsetDateTime>) -> String {
    at.map_or_else(|| "an unknown time".to_string(), super::rfc3339)
}

/// "already running (held by … since …); nothing to do".
pub fn busy_line(holder: &LockHolder) -> String {
    format!(
        "already running (held by {} since {}); nothing to do",
        holder.holder,
        rfc3339(holder.since)
    )
}

/// One line summing up a run.
pub fn summary_line(summary: &RunSummary) -> String {
    let mut line = format!(
        "{} new rows in {} files; window {} to {}; watermark {}; slices {}/{}; {} pages, {} requests, {} retries, {} duplicates skipped; destination {}",
        summary.rows,
        summary.files.len(),
        rfc3339(summary.window_start),
        rfc3339(summary.window_end),
        rfc3339(summary.watermark),
        summary.slices_done,
        summary.slices_total,
        summary.pages,
        summary.requests,
        summary.retries,
        summary.duplicates_skipped,
        summary.destination,
    );
    if let Some(remaining) = &summary.remaining {
        line.push_str(&format!(
            "; still to read: {} from {} to {}",
            remaining.estimated_rows.map_or_else(
                || "sign-ins".to_string(),
                |rows| format!("about {rows} sign-ins")
            ),
            rfc3339(Some(remaining.from)),
            rfc3339(Some(remaining.to)),
        ));
    }
    if summary.stalled_runs > 0 {
        line.push_str(&format!(
            "; no progress for {} runs in a row",
            summary.stalled_runs
        ));
    }
    line
}

/// `text` on one line: the host logs each console line as its own entry.
pub fn one_line(text: impl std::fmt::Display) -> String {
    text.to_string()
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::GraphError;

    fn summary() -> RunSummary {
        RunSummary {
            outcome: crate::state::Outcome::Completed,
            rows: 42,
            window_start: Some(time::macros::datetime!(2026-11-30 10:00 UTC)),
            window_end: Some(time::macros::datetime!(2026-11-30 11:00 UTC)),
            watermark: Some(time::macros::datetime!(2026-11-30 11:00 UTC)),
            ..RunSummary::default()
        }
    }

    #[test]
    fn every_outcome_has_one_status_code_and_event_word() {
        let holder = LockHolder {
            holder: "timer on h".into(),
            since: None,
        };
        // outcome, HTTP status, exit code, JSON status word, event outcome word
        type Row = (
            Result<RunOutcome, RunError>,
            u16,
            u8,
            &'static str,
            &'static str,
        );
        let table: Vec<Row> = vec![
            (
                Ok(RunOutcome::Completed(summary())),
                200,
                0,
                "completed",
                "completed",
            ),
            (
                Ok(RunOutcome::DeadlineReached(summary())),
                202,
                0,
                "deadline-reached",
                "deadline-reached",
            ),
            (
                Ok(RunOutcome::Busy(holder)),
                409,
                1,
                "already-running",
                "busy",
            ),
            (
                Err(RunError::Cancelled),
                503,
                1,
                "shutting-down",
                "cancelled",
            ),
            (
                Err(RunError::Graph(GraphError::Transport("boom\nagain".into()))),
                500,
                1,
                "failed",
                "failed",
            ),
        ];
        for (outcome, status, exit, word, event) in table {
            let report = Report::new(
                Trigger::Timer,
                &outcome,
                Some(Duration::from_secs(60)),
                Duration::from_millis(1500),
            );
            assert_eq!(report.http_status(), status, "{word}");
            assert_eq!(report.exit_code(), exit, "{word}");
            assert_eq!(report.body()["status"], word);
            let line = report.event();
            let json: Value =
                serde_json::from_str(line.strip_prefix("SIGNIN_EXPORT_RUN ").unwrap()).unwrap();
            assert_eq!(json["outcome"], event);
            assert_eq!(json["trigger"], "timer");
            assert_eq!(json["durationMs"], 1500);
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn the_event_carries_the_window_and_the_error() {
        let done = Report::new(
            Trigger::Refresh,
            &Ok(RunOutcome::Completed(summary())),
            None,
            Duration::ZERO,
        );
        let json: Value =
            serde_json::from_str(done.event().strip_prefix("SIGNIN_EXPORT_RUN ").unwrap()).unwrap();
        assert_eq!(json["rows"], 42);
        assert_eq!(json["windowStart"], "2026-11-30T10:00:00Z");
        assert_eq!(json["watermark"], "2026-11-30T11:00:00Z");
        assert!(json.get("error").is_none());
        assert!(done.line.starts_with("refresh completed: 42 new rows"));
        let failed = Report::new(
            Trigger::Cli,
            &Err(RunError::Graph(GraphError::Transport(
                "Graph refused: 403".into(),
            ))),
            None,
            Duration::ZERO,
        );
        let json: Value =
            serde_json::from_str(failed.event().strip_prefix("SIGNIN_EXPORT_RUN ").unwrap())
                .unwrap();
        assert_eq!(
            json["error"],
            "export failed: cannot reach Graph: Graph refused: 403"
        );
        assert_eq!(json["rows"], 0);
    }
}
