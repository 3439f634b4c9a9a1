//! The custom handler's HTTP surface, as the Functions host calls it:
//!
//! | route | who calls it | reply |
//! |---|---|---|
//! | `GET /` | readiness probe (every 25 ms at start) and periodic health ping | `200 {"status":"ok"}`, instantly |
//! | `POST /ExportSignIns` | the timer trigger | `200` + summary, `500` on failure, `503` while shutting down |
//! | `POST /RefreshSignIns` | the HTTP trigger (`/api/refresh`) in envelope mode | always `200` to the host; the caller's status is in `Outputs.res` |
//!
//! The host reads a reply only when its status is 2xx, so the HTTP trigger's outcomes (400, 409,
//! 500, ...) travel inside `Outputs.res`; the timer uses the transport status, and its failures
//! are also written to stderr because the host drops `Logs` of a non-2xx reply.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::params::{parse_refresh_query, ParamError};
use super::protocol::{
    HttpOutput, HttpRequestData, InvocationRequest, InvocationResponse, TimerInfo,
    INVOCATION_ID_HEADER,
};
use super::runner::Runner;
use crate::config::{ConfigError, Settings};
use crate::run::report::{one_line, summary_line, Report, Trigger, Verdict};
use crate::run::{RunRequest, RunSummary};

/// Function names, as in `function/<Name>/function.json`.
pub const TIMER_FUNCTION: &str = "ExportSignIns";
pub const REFRESH_FUNCTION: &str = "RefreshSignIns";

/// Shared state of the handler: settings (or why they are invalid), the runner, and the
/// shutdown signal with the count of invocations still running.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Result<Settings, ConfigError>,
    runner: Arc<dyn Runner>,
    shutdown: CancellationToken,
    in_flight: watch::Sender<usize>,
    /// Names this process in lock holders: host instance and pid.
    instance: String,
}

impl AppState {
    /// `settings` may be invalid: the handler still serves, and answers every invocation with the
    /// configuration error (otherwise the host would restart it in a loop).
    pub fn new(settings: Result<Settings, ConfigError>, runner: Arc<dyn Runner>) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                settings,
                runner,
                shutdown: CancellationToken::new(),
                in_flight: watch::Sender::new(0),
                instance: instance_name(),
            }),
        }
    }

    /// Stops taking new work and cancels running exports (they stop at a safe point).
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Resolves once no invocation is running.
    pub async fn drained(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail here.
        let _ = rx.wait_for(|running| *running == 0).await;
    }

    /// Invocations running now.
    pub fn in_flight(&self) -> usize {
        *self.inner.in_flight.borrow()
    }

    fn enter(&self) -> InFlight {
        self.inner.in_flight.send_modify(|running| *running += 1);
        InFlight(self.inner.in_flight.clone())
    }

    fn holder(&self, trigger: &str, function: &str, invocation_id: &str) -> String {
        format!(
            "{trigger} {function} invocation {invocation_id} on {}",
            self.inner.instance
        )
    }
}

/// Counts one running invocation until dropped.
struct InFlight(watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .send_modify(|running| *running = running.saturating_sub(1));
    }
}

/// `<instance> pid <pid>`: the App Service instance id, else the host name.
fn instance_name() -> String {
    let host = ["WEBSITE_INSTANCE_ID", "HOSTNAME", "COMPUTERNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .chain(std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|value| value.trim().chars().take(80).collect::<String>())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{host} pid {}", std::process::id())
}

/// The router the host talks to.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(ready))
        .route(&format!("/{TIMER_FUNCTION}"), post(export_signins))
        .route(&format!("/{REFRESH_FUNCTION}"), post(refresh_signins))
        .fallback(unknown_route)
        .with_state(state)
}

fn reply(status: StatusCode, body: &InvocationResponse) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_bytes(),
    )
        .into_response()
}

async fn ready() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn unknown_route(uri: Uri) -> Response {
    let path: String = uri.path().chars().take(100).collect();
    reply(
        StatusCode::NOT_FOUND,
        &InvocationResponse::with_logs(vec![format!(
            "no function at {path}; this handler serves {TIMER_FUNCTION} and {REFRESH_FUNCTION}"
        )]),
    )
}

/// The host's invocation id, if it looks like one (it is echoed into logs and lock holders).
fn invocation_id(headers: &HeaderMap) -> String {
    headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .unwrap_or("unknown")
        .to_string()
}

fn to_json(summary: &RunSummary) -> Value {
    serde_json::to_value(summary).unwrap_or(Value::Null)
}

const SHUTTING_DOWN: &str =
    "the handler is shutting down (SIGTERM): not starting a new export; retry shortly";

// ---------------------------------------------------------------------------------------------
// Timer trigger

async fn export_signins(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = invocation_id(&headers);
    if state.is_shutting_down() {
        tracing::warn!(invocation_id = %id, "timer invocation refused: shutting down");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &InvocationResponse::with_logs(vec![SHUTTING_DOWN.to_string()]),
        );
    }
    let settings = match &state.inner.settings {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!(invocation_id = %id, "configuration error: {error}");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &InvocationResponse::with_logs(vec![format!(
                    "configuration error: {error}; fix the app setting and restart the app"
                )]),
            );
        }
    };
    let envelope = match InvocationRequest::parse(&body) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(invocation_id = %id, "malformed timer invocation: {}", one_line(&error));
            return reply(
                StatusCode::BAD_REQUEST,
                &InvocationResponse::with_logs(vec![format!(
                    "malformed invocation: {}",
                    one_line(&error)
                )]),
            );
        }
    };
    let timer = TimerInfo::from_request(&envelope);
    let mut logs = vec![timer.describe()];
    tracing::info!(invocation_id = %id, past_due = timer.is_past_due, "{}", logs[0]);

    let _running = state.enter();
    let request = RunRequest {
        deadline: Some(settings.run_deadline),
        holder: state.holder("timer", TIMER_FUNCTION, &id),
        ..RunRequest::default()
    };
    let started = std::time::Instant::now();
    let outcome = state
        .inner
        .runner
        .run(settings, request, state.inner.shutdown.child_token())
        .await;
    let report = Report::new(
        Trigger::Timer,
        &outcome,
        Some(settings.run_deadline),
        started.elapsed(),
    );
    report.log_event();
    logs.push(report.line.clone());
    // The timer reports through the transport status; the host reads the reply only if it is
    // 2xx, so a failure's line also goes to stderr (the log event above and this line).
    let status = match report.verdict {
        Verdict::Completed | Verdict::DeadlineReached | Verdict::Busy => StatusCode::OK,
        Verdict::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        // The timer asks for no window, so a refusal is a server-side problem too.
        Verdict::Refused | Verdict::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    };
    match report.verdict {
        Verdict::Refused | Verdict::Failed => {
            tracing::error!(invocation_id = %id, "{}", report.line)
        }
        Verdict::Cancelled => tracing::warn!(invocation_id = %id, "{}", report.line),
        _ => tracing::info!(invocation_id = %id, "{}", report.line),
    }
    let return_value = match report.verdict {
        Verdict::Completed | Verdict::DeadlineReached => report.summary.as_ref().map(to_json),
        Verdict::Busy => {
            let body = report.body();
            Some(json!({
                "outcome": Verdict::Busy.as_str(),
                "holder": body["holder"],
                "since": body["since"],
            }))
        }
        Verdict::Cancelled | Verdict::Refused | Verdict::Failed => None,
    };
    reply(
        status,
        &InvocationResponse {
            return_value,
            ..InvocationResponse::with_logs(logs)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP trigger (envelope mode)

/// The HTTP trigger's reply: the host always gets 200, the caller gets `output`.
fn http_reply(output: HttpOutput, logs: Vec<String>) -> Response {
    reply(StatusCode::OK, &InvocationResponse::http(output, logs))
}

fn error_output(status: u16, kind: &str, message: &str) -> HttpOutput {
    HttpOutput::json(
        status,
        &json!({"status": kind, "error": {"message": message}}),
    )
}

async fn refresh_signins(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = invocation_id(&headers);
    if state.is_shutting_down() {
        tracing::warn!(invocation_id = %id, "refresh refused: shutting down");
        return http_reply(
            error_output(503, "shutting-down", SHUTTING_DOWN).with_header("Retry-After", "30"),
            vec![SHUTTING_DOWN.to_string()],
        );
    }
    let request = match InvocationRequest::parse(&body)
        .and_then(|e| HttpRequestData::from_request(&e))
    {
        Ok(request) => request,
        Err(error) => {
            // Not an envelope the host would send: answer at the transport level.
            tracing::error!(invocation_id = %id, "malformed refresh invocation: {}", one_line(&error));
            return reply(
                StatusCode::BAD_REQUEST,
                &InvocationResponse::with_logs(vec![format!(
                    "malformed invocation: {}",
                    one_line(&error)
                )]),
            );
        }
    };
    let settings = match &state.inner.settings {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!(invocation_id = %id, "configuration error: {error}");
            let message =
                format!("configuration error: {error}; fix the app setting and restart the app");
            return http_reply(error_output(500, "misconfigured", &message), vec![message]);
        }
    };
    match request.method.as_str() {
        "POST" => refresh(&state, settings, &id, &request).await,
        "GET" => last_run(&state, settings, &id).await,
        _ => {
            let message = "use POST to run a refresh, GET to read the last run";
            http_reply(
                error_output(405, "method-not-allowed", message).with_header("Allow", "GET, POST"),
                vec![message.to_string()],
            )
        }
    }
}

/// `POST /api/refresh[?since=…&until=…]`.
async fn refresh(
    state: &AppState,
    settings: &Settings,
    id: &str,
    request: &HttpRequestData,
) -> Response {
    let window = match parse_refresh_query(&request.query, crate::run::Clock::from_env().now()) {
        Ok(window) => window,
        Err(ParamError { parameter, message }) => {
            let line = format!("refresh refused: parameter {parameter} {message}");
            tracing::info!(invocation_id = %id, "{line}");
            let body = json!({
                "status": "bad-request",
                "error": {"parameter": parameter, "message": message},
            });
            return http_reply(HttpOutput::json(400, &body), vec![line]);
        }
    };
    let mut logs = vec![format!(
        "refresh requested: since {}, until {}",
        window.since.map_or("the watermark".to_string(), |at| at
            .format(&Rfc3339)
            .unwrap_or_default()),
        window.until.map_or("now".to_string(), |at| at
            .format(&Rfc3339)
            .unwrap_or_default()),
    )];
    tracing::info!(invocation_id = %id, "{}", logs[0]);

    let _running = state.enter();
    let run = RunRequest {
        since: window.since,
        until: window.until,
        deadline: Some(settings.refresh_deadline),
        dry_run: false,
        holder: state.holder("refresh", REFRESH_FUNCTION, id),
    };
    let started = std::time::Instant::now();
    let outcome = state
        .inner
        .runner
        .run(settings, run, state.inner.shutdown.child_token())
        .await;
    let report = Report::new(
        Trigger::Refresh,
        &outcome,
        Some(settings.refresh_deadline),
        started.elapsed(),
    );
    report.log_event();
    logs.push(report.line.clone());
    match report.verdict {
        Verdict::Failed => tracing::error!(invocation_id = %id, "refresh {}", report.line),
        Verdict::Cancelled => tracing::warn!(invocation_id = %id, "{}", report.line),
        _ => tracing::info!(invocation_id = %id, status = report.http_status(), "{}", report.line),
    }
    let mut output = HttpOutput::json(report.http_status(), &report.body());
    if report.verdict == Verdict::Cancelled {
        output = output.with_header("Retry-After", "30");
    }
    http_reply(output, logs)
}

/// `GET /api/refresh`: the last run's summary from the state document.
async fn last_run(state: &AppState, settings: &Settings, id: &str) -> Response {
    match state.inner.runner.last_summary(settings).await {
        Ok(summary) => {
            let line = match &summary {
                Some(summary) => {
                    format!("last run: {} ({})", summary.outcome, summary_line(summary))
                }
                None => "no run recorded yet".to_string(),
            };
            http_reply(
                HttpOutput::json(200, &json!({"status": "ok", "lastRun": summary})),
                vec![line],
            )
        }
        Err(error) => {
            let message = format!("cannot read the last run: {}", one_line(&error));
            tracing::error!(invocation_id = %id, "{message}");
            http_reply(error_output(500, "failed", &message), vec![message])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::run::{GraphError, Outcome, RunError, RunOutcome, StateError};
    use crate::sink::LockHolder;
    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::Request;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tower::ServiceExt;

    /// A runner that returns a scripted outcome and records what it was asked.
    #[derive(Default)]
    struct Scripted {
        outcome: Mutex<Option<Result<RunOutcome, RunError>>>,
        requests: Mutex<Vec<RunRequest>>,
        last: Option<RunSummary>,
    }

    impl Scripted {
        fn returning(outcome: Result<RunOutcome, RunError>) -> Arc<Scripted> {
            Arc::new(Scripted {
                outcome: Mutex::new(Some(outcome)),
                ..Scripted::default()
            })
        }
    }

    #[async_trait]
    impl Runner for Scripted {
        async fn run(
            &self,
            _settings: &Settings,
            request: RunRequest,
            cancel: CancellationToken,
        ) -> Result<RunOutcome, RunError> {
            self.requests.lock().unwrap().push(request);
            if cancel.is_cancelled() {
                return Err(RunError::Cancelled);
            }
            self.outcome
                .lock()
                .unwrap()
                .take()
                .expect("one run per test")
        }

        async fn last_summary(&self, _settings: &Settings) -> Result<Option<RunSummary>, RunError> {
            Ok(self.last.clone())
        }
    }

    fn settings() -> Settings {
        Settings::load(&Overrides::default(), |_| None).unwrap()
    }

    fn summary(outcome: Outcome) -> RunSummary {
        RunSummary {
            outcome,
            rows: 42,
            files: BTreeMap::from([("2026/11/28/signins.csv".to_string(), 42)]),
            slices_done: 1,
            slices_total: 2,
            destination: "./out".into(),
            ..RunSummary::default()
        }
    }

    async fn call(state: AppState, path: &str, body: Value) -> (StatusCode, String, Value) {
        let response = app(state)
            .oneshot(
                Request::post(path)
                    .header("content-type", "application/json; charset=utf-8")
                    .header(INVOCATION_ID_HEADER, "3f1c-inv")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    fn timer_envelope() -> Value {
        json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
               "Metadata": {"sys": {"MethodName": "ExportSignIns", "UtcNow": "2026-11-28T16:00:00Z", "RandGuid": "g"}}})
    }

    fn refresh_envelope(method: &str, query: Value) -> Value {
        json!({"Data": {"req": {"Url": "https://app/api/refresh", "Method": method, "Query": query,
               "Headers": {"x-functions-key": ["secret-key"]}, "Params": {}, "Identities": []}},
               "Metadata": {}})
    }

    /// The caller's view of an HTTP-trigger reply: status, headers, and the body parsed from the
    /// JSON string the host passes through.
    fn caller_view(reply: &Value) -> (u64, Value, Value) {
        let res = &reply["Outputs"]["res"];
        let body = res["body"].as_str().expect("body is a JSON string");
        (
            res["statusCode"].as_u64().unwrap(),
            res["headers"].clone(),
            serde_json::from_str(body).unwrap(),
        )
    }

    #[tokio::test]
    async fn readiness_probe_answers() {
        let state = AppState::new(
            Err(ConfigError {
                setting: "SIGNINS_PRESET",
                message: "bad".into(),
            }),
            Scripted::returning(Err(RunError::Cancelled)),
        );
        let response = app(state)
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn timer_completed_returns_the_summary() {
        let runner = Scripted::returning(Ok(RunOutcome::Completed(summary(Outcome::Completed))));
        let state = AppState::new(Ok(settings()), runner.clone());
        let (status, content_type, reply) = call(state, "/ExportSignIns", timer_envelope()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(reply["Outputs"], json!({}));
        assert_eq!(reply["ReturnValue"]["rows"], 42);
        let logs = reply["Logs"].as_array().unwrap();
        assert!(
            logs[0].as_str().unwrap().contains("no schedule status"),
            "{logs:?}"
        );
        assert!(
            logs[1]
                .as_str()
                .unwrap()
                .starts_with("export completed: 42 new rows in 1 files"),
            "{logs:?}"
        );
        let requests = runner.requests.lock().unwrap();
        assert_eq!(requests[0].deadline, Some(settings().run_deadline));
        assert!(
            requests[0]
                .holder
                .starts_with("timer ExportSignIns invocation 3f1c-inv on "),
            "{}",
            requests[0].holder
        );
        assert!(requests[0].since.is_none() && !requests[0].dry_run);
    }

    #[tokio::test]
    async fn timer_busy_is_not_a_failure() {
        let holder = LockHolder {
            holder: "refresh RefreshSignIns invocation x on h pid 1".into(),
            since: Some(time::macros::datetime!(2026-11-28 16:00 UTC)),
        };
        let state = AppState::new(
            Ok(settings()),
            Scripted::returning(Ok(RunOutcome::Busy(holder))),
        );
        let (status, _, reply) = call(state, "/ExportSignIns", timer_envelope()).await;
        assert_eq!(status, StatusCode::OK);
        let line = reply["Logs"][1].as_str().unwrap();
        assert!(line.starts_with("already running (held by refresh RefreshSignIns invocation x on h pid 1 since 2026-11-28T16:00:00Z)"), "{line}");
        assert_eq!(reply["ReturnValue"]["outcome"], "already-running");
    }

    #[tokio::test]
    async fn timer_failure_is_a_500_with_logs() {
        let state = AppState::new(
            Ok(settings()),
            Scripted::returning(Err(RunError::Graph(GraphError::Transport(
                "Graph refused: 403 Forbidden".into(),
            )))),
        );
        let (status, content_type, reply) = call(state, "/ExportSignIns", timer_envelope()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "application/json");
        assert_eq!(
            reply["Logs"][1],
            "export failed: cannot reach Graph: Graph refused: 403 Forbidden"
        );
        assert!(reply.get("ReturnValue").is_none());
    }

    #[tokio::test]
    async fn invalid_settings_fail_every_invocation_with_the_setting_named() {
        let error = ConfigError {
            setting: "SIGNINS_LOOKBACK",
            message: "must be at most 30d".into(),
        };
        let state = AppState::new(Err(error), Scripted::returning(Err(RunError::Cancelled)));
        let (status, _, reply) = call(state.clone(), "/ExportSignIns", timer_envelope()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(reply["Logs"][0]
            .as_str()
            .unwrap()
            .contains("SIGNINS_LOOKBACK: must be at most 30d"));
        let (status, _, reply) = call(
            state,
            "/RefreshSignIns",
            refresh_envelope("POST", json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (code, _, body) = caller_view(&reply);
        assert_eq!(code, 500);
        assert_eq!(body["status"], "misconfigured");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SIGNINS_LOOKBACK"));
    }

    #[tokio::test]
    async fn refresh_outcomes_map_to_caller_statuses() {
        let holder = LockHolder {
            holder: "timer ExportSignIns invocation y on h pid 2".into(),
            since: None,
        };
        let cases: Vec<(Result<RunOutcome, RunError>, u64, &str)> = vec![
            (
                Ok(RunOutcome::Completed(summary(Outcome::Completed))),
                200,
                "completed",
            ),
            (
                Ok(RunOutcome::DeadlineReached(summary(
                    Outcome::DeadlineReached,
                ))),
                202,
                "deadline-reached",
            ),
            (Ok(RunOutcome::Busy(holder)), 409, "already-running"),
            (
                Err(RunError::State(StateError::Corrupt("etag mismatch".into()))),
                500,
                "failed",
            ),
            (Err(RunError::Cancelled), 503, "shutting-down"),
        ];
        for (outcome, expected, status_field) in cases {
            let runner = Scripted::returning(outcome);
            let state = AppState::new(Ok(settings()), runner.clone());
            let (status, content_type, reply) = call(
                state,
                "/RefreshSignIns",
                refresh_envelope("POST", json!({"code": "secret-key"})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "the host always gets 200");
            assert_eq!(content_type, "application/json");
            let (code, headers, body) = caller_view(&reply);
            assert_eq!(code, expected);
            assert_eq!(headers["Content-Type"], "application/json");
            assert_eq!(body["status"], status_field);
            assert!(!reply.to_string().contains("secret-key"), "{reply}");
            let request = &runner.requests.lock().unwrap()[0];
            assert_eq!(request.deadline, Some(settings().refresh_deadline));
            assert!(request
                .holder
                .starts_with("refresh RefreshSignIns invocation 3f1c-inv on "));
        }
    }

    #[tokio::test]
    async fn refresh_busy_names_the_holder() {
        let holder = LockHolder {
            holder: "timer ExportSignIns invocation y on h pid 2".into(),
            since: Some(time::macros::datetime!(2026-11-28 15:59:58 UTC)),
        };
        let state = AppState::new(
            Ok(settings()),
            Scripted::returning(Ok(RunOutcome::Busy(holder))),
        );
        let (_, _, reply) = call(
            state,
            "/RefreshSignIns",
            refresh_envelope("POST", json!({})),
        )
        .await;
        let (code, _, body) = caller_view(&reply);
        assert_eq!(code, 409);
        assert_eq!(
            body["holder"],
            "timer ExportSignIns invocation y on h pid 2"
        );
        assert_eq!(body["since"], "2026-11-28T15:59:58Z");
    }

    #[tokio::test]
    async fn refresh_bad_parameters_never_reach_the_pipeline() {
        let runner = Scripted::returning(Err(RunError::Cancelled));
        let state = AppState::new(Ok(settings()), runner.clone());
        let (_, _, reply) = call(
            state,
            "/RefreshSignIns",
            refresh_envelope(
                "POST",
                json!({"since": "last tuesday", "code": "secret-key"}),
            ),
        )
        .await;
        let (code, _, body) = caller_view(&reply);
        assert_eq!(code, 400);
        assert_eq!(body["status"], "bad-request");
        assert_eq!(body["error"]["parameter"], "since");
        assert!(runner.requests.lock().unwrap().is_empty());
        assert!(!reply.to_string().contains("secret-key"));
        assert!(!reply.to_string().contains("last tuesday"));
    }

    #[tokio::test]
    async fn refresh_get_returns_the_last_run_without_running() {
        let runner = Arc::new(Scripted {
            last: Some(summary(Outcome::Completed)),
            ..Scripted::default()
        });
        let state = AppState::new(Ok(settings()), runner.clone());
        let (_, _, reply) =
            call(state, "/RefreshSignIns", refresh_envelope("GET", json!({}))).await;
        let (code, _, body) = caller_view(&reply);
        assert_eq!(code, 200);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["lastRun"]["rows"], 42);
        assert!(runner.requests.lock().unwrap().is_empty());
        let empty = AppState::new(Ok(settings()), Arc::new(Scripted::default()));
        let (_, _, reply) =
            call(empty, "/RefreshSignIns", refresh_envelope("GET", json!({}))).await;
        assert_eq!(
            caller_view(&reply).2,
            json!({"status": "ok", "lastRun": null})
        );
    }

    #[tokio::test]
    async fn shutting_down_refuses_new_work() {
        let runner = Scripted::returning(Ok(RunOutcome::Completed(summary(Outcome::Completed))));
        let state = AppState::new(Ok(settings()), runner.clone());
        state.begin_shutdown();
        let (status, _, reply) = call(state.clone(), "/ExportSignIns", timer_envelope()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply["Logs"][0].as_str().unwrap().contains("shutting down"));
        let (_, _, reply) = call(
            state.clone(),
            "/RefreshSignIns",
            refresh_envelope("POST", json!({})),
        )
        .await;
        let (code, headers, body) = caller_view(&reply);
        assert_eq!(
            (code, body["status"].as_str()),
            (503, Some("shutting-down"))
        );
        assert_eq!(headers["Retry-After"], "30");
        assert!(runner.requests.lock().unwrap().is_empty());
        assert_eq!(state.in_flight(), 0);
    }

    #[tokio::test]
    async fn malformed_envelopes_and_unknown_routes() {
        let state = AppState::new(Ok(settings()), Arc::new(Scripted::default()));
        let response = app(state.clone())
            .oneshot(
                Request::post("/ExportSignIns")
                    .body(Body::from("{not json"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let (status, _, reply) = call(state.clone(), "/RefreshSignIns", json!({"Data": {}})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(reply["Logs"][0].as_str().unwrap().contains("req"));
        let (status, _, reply) = call(state, "/Nope", json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(reply["Logs"][0].as_str().unwrap().contains("/Nope"));
    }

    #[tokio::test]
    async fn multi_line_errors_become_one_line() {
        let error = RunError::Graph(GraphError::Transport(
            "Graph answered 500:\n  upstream\r\n  timeout".into(),
        ));
        let state = AppState::new(Ok(settings()), Scripted::returning(Err(error)));
        let (_, _, reply) = call(state, "/ExportSignIns", timer_envelope()).await;
        assert_eq!(
            reply["Logs"][1],
            "export failed: cannot reach Graph: Graph answered 500: | upstream | timeout"
        );
    }

    #[test]
    fn invocation_ids_are_sanitised() {
        let mut headers = HeaderMap::new();
        assert_eq!(invocation_id(&headers), "unknown");
        headers.insert(INVOCATION_ID_HEADER, "a1b2-c3".parse().unwrap());
        assert_eq!(invocation_id(&headers), "a1b2-c3");
        headers.insert(INVOCATION_ID_HEADER, "x\"; drop".parse().unwrap());
        assert_eq!(invocation_id(&headers), "unknown");
    }
}
