//! The Azure Functions custom-handler wire format: what the host POSTs to `/<FunctionName>`
//! (the invocation envelope) and what it reads back (`Outputs`, `Logs`, `ReturnValue`).
//!
//! Checked against the host's source (`src/WebJobs.Script/Workers/Http/`):
//! * Requests: `{"Data":{<binding>:…},"Metadata":{…}}`, JSON; `Data.timer` is the serialized
//!   `TimerInfo`; `Data.req` is `{Url, Method, Query:{name:value}, Headers:{name:[values]},
//!   Params, Identities, Body?}` (`Body` only when the request had one).
//! * Replies: read only when the status is 2xx (`EnsureSuccessStatusCode`); otherwise the
//!   invocation fails and `Logs` are never read. Each `Logs` entry is logged as Information for the
//!   invocation.
//! * The `http` output binding is deserialized into `{StatusCode: string, Headers, Body: object}`:
//!   a JSON *object* body is re-serialized by the host (indented, date-like strings reformatted),
//!   while a *string* body is written to the caller as is (no base64 attempt for `http` outputs).
//!   So [`HttpOutput`] always carries the JSON text as a string.
//!
//! Everything here parses leniently: a malformed timer status must never fail an export.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Header carrying the host's invocation id.
pub const INVOCATION_ID_HEADER: &str = "X-Azure-Functions-InvocationId";

/// An envelope that is not a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the invocation body is not JSON: {0}")]
    NotJson(String),
    #[error("the invocation body is not a JSON object")]
    NotAnObject,
    #[error("the invocation has no `{0}` input in Data")]
    MissingInput(&'static str),
}

/// What the host sends for one invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationRequest {
    /// Trigger and input bindings, by binding name.
    pub data: Map<String, Value>,
    /// Binding data: `sys` (`MethodName`, `UtcNow`, `RandGuid`) and trigger metadata.
    pub metadata: Map<String, Value>,
}

impl InvocationRequest {
    /// Parses an envelope; a missing or `null` `Data`/`Metadata` counts as empty.
    pub fn parse(body: &[u8]) -> Result<InvocationRequest, ProtocolError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let Value::Object(mut envelope) = value else {
            return Err(ProtocolError::NotAnObject);
        };
        let mut take = |key: &str| match envelope.remove(key) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Ok(InvocationRequest {
            data: take("Data"),
            metadata: take("Metadata"),
        })
    }

    /// `Metadata.sys.MethodName`, if present.
    pub fn method_name(&self) -> Option<&str> {
        self.metadata
            .get("sys")
            .and_then(|sys| sys.get("MethodName"))
            .and_then(Value::as_str)
    }

    /// The input named `binding`, or the only input when there is exactly one.
    fn input(&self, binding: &str) -> Option<&Value> {
        self.data.get(binding).or_else(|| match self.data.len() {
            1 => self.data.values().next(),
            _ => None,
        })
    }
}

/// A date from the host's timer status, read leniently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTime {
    /// Not sent, or `null`.
    Absent,
    /// `DateTime.MinValue` (`0001-01-01T00:00:00`): the schedule monitor has no record yet.
    Never,
    At(OffsetDateTime),
    /// Sent but not understood; kept for the log line.
    Unparseable(String),
}

impl HostTime {
    fn from_value(value: Option<&Value>) -> HostTime {
        match value {
            None | Some(Value::Null) => HostTime::Absent,
            Some(Value::String(text)) => parse_host_time(text),
            Some(other) => HostTime::Unparseable(truncate(&other.to_string(), 64)),
        }
    }
}

impl std::fmt::Display for HostTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostTime::Absent => f.write_str("unknown"),
            HostTime::Never => f.write_str("never"),
            HostTime::At(at) => match at.format(&Rfc3339) {
                Ok(text) => f.write_str(&text),
                Err(_) => write!(f, "{at}"),
            },
            HostTime::Unparseable(text) => write!(f, "unparseable ({text:?})"),
        }
    }
}

/// Parses a .NET `DateTime` as Newtonsoft writes it: RFC 3339 with up to 7 fractional digits and
/// an offset (local time), or without an offset (`Unspecified`, read as UTC). Year 1 is "never".
pub fn parse_host_time(text: &str) -> HostTime {
    let text = text.trim();
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        let local = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        PrimitiveDateTime::parse(text, &local)
            .ok()
            .map(PrimitiveDateTime::assume_utc)
    });
    match parsed {
        Some(at) if at.year() <= 1 => HostTime::Never,
        Some(at) => HostTime::At(at),
        None => HostTime::Unparseable(truncate(text, 64)),
    }
}

/// The timer trigger's input (`Data.timer`), read leniently: nothing here can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerInfo {
    /// The host started this run late (missed schedule, e.g. after downtime).
    pub is_past_due: bool,
    /// `ScheduleStatus` was present (it is `null` when `useMonitor` is off).
    pub monitored: bool,
    pub last: HostTime,
    pub next: HostTime,
    pub last_updated: HostTime,
}

impl TimerInfo {
    /// Reads `Data.timer` (or the only input); anything missing or malformed becomes "unknown".
    pub fn from_request(request: &InvocationRequest) -> TimerInfo {
        let timer = request.input("timer");
        let field = |name: &str| timer.and_then(|t| t.get(name));
        let status = field("ScheduleStatus").filter(|s| s.is_object());
        let status_field = |name: &str| HostTime::from_value(status.and_then(|s| s.get(name)));
        TimerInfo {
            is_past_due: field("IsPastDue").and_then(Value::as_bool).unwrap_or(false),
            monitored: status.is_some(),
            last: status_field("Last"),
            next: status_field("Next"),
            last_updated: status_field("LastUpdated"),
        }
    }

    /// One log line describing the trigger.
    pub fn describe(&self) -> String {
        let mut line = String::from("timer fired");
        if self.is_past_due {
            line.push_str(" (past due: the schedule was missed, catching up)");
        }
        if self.monitored {
            line.push_str(&format!("; last run {}, next run {}", self.last, self.next));
        } else {
            line.push_str("; no schedule status (monitor off)");
        }
        line
    }
}

/// The HTTP trigger's input (`Data.req`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequestData {
    pub method: String,
    pub url: String,
    /// Query parameters; the host joins repeated values with `,`.
    pub query: BTreeMap<String, String>,
    /// Header names as sent (case preserved), each with its values.
    pub headers: BTreeMap<String, Vec<String>>,
    /// `None` when the request had no body.
    pub body: Option<String>,
}

impl HttpRequestData {
    /// Reads `Data.req` (or the only input). Fails only when there is no request at all.
    pub fn from_request(request: &InvocationRequest) -> Result<HttpRequestData, ProtocolError> {
        let Some(Value::Object(req)) = request.input("req") else {
            return Err(ProtocolError::MissingInput("req"));
        };
        let text = |key: &str| req.get(key).map(value_text).unwrap_or_default();
        let query = match req.get("Query") {
            Some(Value::Object(query)) => query
                .iter()
                .map(|(name, value)| (name.clone(), value_text(value)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let headers = match req.get("Headers") {
            Some(Value::Object(headers)) => headers
                .iter()
                .map(|(name, values)| {
                    let values = match values {
                        Value::Array(values) => values.iter().map(value_text).collect(),
                        other => vec![value_text(other)],
                    };
                    (name.clone(), values)
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let body = match req.get("Body") {
            None | Some(Value::Null) => None,
            Some(body) => Some(value_text(body)),
        };
        Ok(HttpRequestData {
            method: text("Method").to_ascii_uppercase(),
            url: text("Url"),
            query,
            headers,
            body,
        })
    }
}

/// A JSON value as text: strings without quotes, anything else as JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The reply to the host.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InvocationResponse {
    /// Output bindings by name (`res` for the HTTP trigger).
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Lines the host logs for this invocation (Application Insights traces).
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// The function's return value (the timer run's summary).
    #[serde(rename = "ReturnValue", skip_serializing_if = "Option::is_none")]
    pub return_value: Option<Value>,
}

impl InvocationResponse {
    pub fn with_logs(logs: Vec<String>) -> InvocationResponse {
        InvocationResponse {
            logs,
            ..InvocationResponse::default()
        }
    }

    /// A reply for the HTTP trigger: `res` set to `output`.
    pub fn http(output: HttpOutput, logs: Vec<String>) -> InvocationResponse {
        let mut outputs = Map::new();
        // HttpOutput serializes infallibly (strings and a number).
        outputs.insert(
            "res".to_string(),
            serde_json::to_value(output).unwrap_or(Value::Null),
        );
        InvocationResponse {
            outputs,
            logs,
            return_value: None,
        }
    }

    /// The JSON bytes sent to the host.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Maps, strings and JSON values only: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{\"Outputs\":{},\"Logs\":[]}".to_vec())
    }
}

/// The `http` output binding: what the caller of the HTTP trigger receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpOutput {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    pub headers: BTreeMap<String, String>,
    /// JSON text, sent as a string so the host passes it through byte for byte.
    pub body: String,
}

impl HttpOutput {
    /// A JSON response with `Content-Type: application/json`.
    pub fn json(status_code: u16, body: &impl Serialize) -> HttpOutput {
        let body = serde_json::to_string(body).unwrap_or_else(|_| {
            "{\"status\":\"failed\",\"error\":{\"message\":\"internal error\"}}".into()
        });
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_string(), "application/json".to_string());
        HttpOutput {
            status_code,
            headers,
            body,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> HttpOutput {
        self.headers.insert(name.to_string(), value.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn envelope(value: Value) -> InvocationRequest {
        InvocationRequest::parse(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn host_times_parse_leniently() {
        assert_eq!(
            parse_host_time("2026-11-28T16:30:00.0012345+01:00"),
            HostTime::At(datetime!(2026-11-28 16:30:00.0012345 +01:00))
        );
        assert_eq!(
            parse_host_time("2026-11-28T15:30:00Z"),
            HostTime::At(datetime!(2026-11-28 15:30:00 UTC))
        );
        assert_eq!(
            parse_host_time("2026-11-28T15:30:00.1234567"),
            HostTime::At(datetime!(2026-11-28 15:30:00.1234567 UTC))
        );
        assert_eq!(parse_host_time("0001-01-01T00:00:00"), HostTime::Never);
        assert_eq!(
            parse_host_time("0001-01-01T00:00:00+00:00"),
            HostTime::Never
        );
        assert_eq!(
            parse_host_time("yesterday"),
            HostTime::Unparseable("yesterday".into())
        );
        assert_eq!(parse_host_time(""), HostTime::Unparseable(String::new()));
    }

    #[test]
    fn timer_with_schedule_status() {
        let request = envelope(json!({
            "Data": {"timer": {
                "Schedule": {"AdjustForDST": true},
                "ScheduleStatus": {
                    "Last": "2026-11-28T16:00:00.0030589+00:00",
                    "Next": "2026-11-28T16:30:00+00:00",
                    "LastUpdated": "0001-01-01T00:00:00"
                },
                "IsPastDue": true
            }},
            "Metadata": {"sys": {"MethodName": "ExportSignIns", "UtcNow": "2026-11-28T16:30:00.01Z", "RandGuid": "x"}}
        }));
        let timer = TimerInfo::from_request(&request);
        assert!(timer.is_past_due);
        assert!(timer.monitored);
        assert_eq!(
            timer.last,
            HostTime::At(datetime!(2026-11-28 16:00:00.0030589 UTC))
        );
        assert_eq!(timer.last_updated, HostTime::Never);
        assert_eq!(request.method_name(), Some("ExportSignIns"));
        let line = timer.describe();
        assert!(line.contains("past due"), "{line}");
        assert!(
            line.contains("last run 2026-11-28T16:00:00.0030589Z"),
            "{line}"
        );
        assert!(line.contains("next run 2026-11-28T16:30:00Z"), "{line}");
    }

    #[test]
    fn timer_without_status_or_with_garbage_never_fails() {
        for data in [
            json!({"timer": {"Schedule": {}, "ScheduleStatus": null, "IsPastDue": false}}),
            json!({"timer": {"ScheduleStatus": {"Last": 12, "Next": "soon", "LastUpdated": null}}}),
            json!({"timer": "garbage"}),
            json!({}),
            json!(null),
        ] {
            let timer = TimerInfo::from_request(&envelope(json!({ "Data": data })));
            assert!(!timer.is_past_due);
            assert!(!timer.describe().is_empty());
        }
        let odd = TimerInfo::from_request(&envelope(
            json!({"Data": {"timer": {"ScheduleStatus": {"Last": 12, "Next": "soon"}}}}),
        ));
        assert_eq!(odd.last, HostTime::Unparseable("12".into()));
        assert_eq!(odd.next, HostTime::Unparseable("soon".into()));
        assert_eq!(odd.last_updated, HostTime::Absent);
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(
            InvocationRequest::parse(b"not json"),
            Err(ProtocolError::NotJson(_))
        ));
        assert!(matches!(
            InvocationRequest::parse(b"[1]"),
            Err(ProtocolError::NotAnObject)
        ));
        assert_eq!(
            InvocationRequest::parse(b"{}").unwrap(),
            InvocationRequest::default()
        );
    }

    #[test]
    fn http_request_with_and_without_body() {
        let request = envelope(json!({"Data": {"req": {
            "Url": "https://app.azurewebsites.net/api/refresh?since=x&code=k",
            "Method": "post",
            "Query": {"since": "x", "code": "k"},
            "Headers": {"Content-Type": ["application/json"], "X-Forwarded-For": ["1.2.3.4", "5.6.7.8"]},
            "Params": {},
            "Identities": [],
            "Body": "{\"a\":1}"
        }}}));
        let req = HttpRequestData::from_request(&request).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.query.get("since").map(String::as_str), Some("x"));
        assert_eq!(req.headers["X-Forwarded-For"], vec!["1.2.3.4", "5.6.7.8"]);
        assert_eq!(req.body.as_deref(), Some("{\"a\":1}"));

        let no_body =
            envelope(json!({"Data": {"req": {"Method": "GET", "Query": {}, "Headers": {}}}}));
        assert_eq!(HttpRequestData::from_request(&no_body).unwrap().body, None);
        assert!(matches!(
            HttpRequestData::from_request(&envelope(json!({"Data": {}}))),
            Err(ProtocolError::MissingInput("req"))
        ));
    }

    #[test]
    fn http_reply_carries_the_body_as_a_json_string() {
        let output = HttpOutput::json(
            409,
            &json!({"status": "already-running", "since": "2026-11-28T16:00:00Z"}),
        );
        let reply = InvocationResponse::http(output, vec!["busy".into()]);
        let bytes = reply.to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"Outputs":{"res":{"body":"{\"since\":\"2026-11-28T16:00:00Z\",\"status\":\"already-running\"}","headers":{"Content-Type":"application/json"},"statusCode":409}},"Logs":["busy"]}"#
        );
    }

    #[test]
    fn timer_reply_shape() {
        let reply = InvocationResponse {
            return_value: Some(json!({"rows": 3})),
            ..InvocationResponse::with_logs(vec!["done".into()])
        };
        assert_eq!(
            String::from_utf8(reply.to_bytes()).unwrap(),
            r#"{"Outputs":{},"Logs":["done"],"ReturnValue":{"rows":3}}"#
        );
    }
}
