//! One line of a diagnostic-settings blob → the sign-in record the Graph path uses (pure).
//!
//! Each line is one JSON object (azure-monitor-docs `articles/azure-monitor/platform/resource-logs.md`,
//! "Azure Storage"; an Event Hubs message wraps several in `{"records":[…]}`, "Event Hubs"): Azure
//! Monitor's envelope around the sign-in, which is in `properties`. The envelope's fields are the
//! common schema's (`resource-logs-schema.md`, "Top-level common schema"), filled for sign-ins as
//! Microsoft's sample shows (MicrosoftDocs/azure-docs
//! `articles/active-directory/reports-monitoring/reference-azure-monitor-sign-ins-log-schema.md`
//! at 012ad308577ca7a4bcf96132a0e71b2819fa4a98, "the sign-in sample" below): `time` is when the
//! event was *received*, `category` the log category, `resultType` the error code as a string,
//! `location` the sign-in's country code, `tenantId` the tenant.
//!
//! `properties` is Graph beta's `signIn`, same camelCase names and nesting (the sign-in sample),
//! so it is deserialized into the same borrowing [`SignInRecord`] as a Graph page, and
//! [`crate::transform`] and [`crate::csv`] treat both alike. Where the sample differs from what
//! Graph returns, the record is brought to Graph's form, so that one sign-in gives one CSV row
//! whichever source it came from:
//!
//! | the export | Graph | here |
//! |---|---|---|
//! | `createdDateTime` `2019-03-12T16:02:15.5522137+00:00` (the sign-in sample): an offset, 100 ns ticks | `2024-07-23T15:19:52Z`: UTC, whole seconds (entra-docs `docs/identity/monitoring-health/howto-read-log-schemas.md`, sign-in sample; the fake tenant follows it) | UTC, cut to the second: the same cell and the same day file |
//! | `userType` `Member` (the sign-in sample) | `member`, `guest` (Graph beta `signIn`; the `SigninLogs` table reference, azure-monitor-docs `articles/azure-monitor/reference/tables/aadnoninteractiveusersigninlogs.md`, lists `member, guest, unknownFutureValue`) | first letter lower-cased |
//! | no `signInEventTypes` (the sign-in sample; the tables' `SignInEventTypes` column uses another vocabulary: `interactive`, `refreshToken`, …) — the category says which sign-ins a container holds (entra-docs `concept-diagnostic-settings-logs-options.md`) | `["interactiveUser"]` etc. | set from `category`, whatever the line carries |
//! | keys left out (`status` without `additionalDetails` in the sign-in sample) | `null` | both are an empty cell (a missing property reads as null) |
//! | some numbers as integers: `conditionsSatisfied: 0`, `latitude: 45` (the sign-in sample) | strings, doubles | numbers print the same whatever their JSON type; numeric strings in number columns too ([`crate::transform::flatten`]) |
//! | extra keys (`processingTimeInMilliseconds`, `authenticationProcessingDetails`, `tokenIssuerName`, …) | — | skipped, as unknown Graph properties are |
//!
//! A line whose category is not the container's is refused ([`RecordError::WrongCategory`]):
//! the container decides which event types are read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::lines::Oversized;
use crate::graph::model::{EventType, Field, Nested, Props, SignInError, SignInRecord};

/// Azure Monitor's envelope around one sign-in: what the line says besides the sign-in itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<'a> {
    /// When Azure Monitor received the event (not when it happened: that is `createdDateTime`).
    pub time: Field<'a>,
    /// The event type of the record's category.
    pub event_type: EventType,
    pub operation_name: Field<'a>,
    /// The sign-in's error code as a string, `"0"` for success.
    pub result_type: Field<'a>,
    pub correlation_id: Field<'a>,
    /// The tenant the sign-in belongs to.
    pub tenant_id: Field<'a>,
    /// The sign-in's country or region code.
    pub location: Field<'a>,
}

/// One sign-in of a diagnostic-settings line, as the Graph path would have read it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticRecord<'a> {
    pub envelope: Envelope<'a>,
    pub signin: SignInRecord<'a>,
}

/// Why a line, or one record of an Event Hubs message, is not a usable sign-in.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no `category`")]
    NoCategory,
    #[error("category `{0}` is not a sign-in log category")]
    OtherCategory(String),
    #[error("a {found} record in the container of {expected} sign-ins")]
    WrongCategory { found: String, expected: String },
    #[error("no `properties` object")]
    NoProperties,
    #[error(transparent)]
    SignIn(#[from] SignInError),
}

/// A line, or one record of an Event Hubs message, that was not exported: counted, reported
/// with where it is (never its content, which may hold personal data), and skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Malformed {
    /// `<container>/<blob name>`.
    pub blob: String,
    /// Byte offset of the line in the blob.
    pub offset: u64,
    /// Which record of the line's `records`, for an Event Hubs message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<usize>,
    pub reason: String,
}

impl Malformed {
    /// The report of a line of `blob` at `offset` (record `record` of it) that failed with `error`.
    pub fn record(blob: &str, offset: u64, record: Option<usize>, error: &RecordError) -> Self {
        Malformed {
            blob: blob.to_string(),
            offset,
            record,
            reason: error.to_string(),
        }
    }

    /// The report of a line too long to hold.
    pub fn oversized(blob: &str, line: &Oversized, limit: usize) -> Self {
        Malformed {
            blob: blob.to_string(),
            offset: line.offset,
            record: None,
            reason: format!("a line of {} bytes, longer than {limit}", line.len),
        }
    }
}

/// A line as it arrives: an envelope with `properties`, or an Event Hubs message whose `records`
/// are such envelopes. Unknown keys are skipped.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEntry<'a> {
    #[serde(borrow)]
    time: Field<'a>,
    #[serde(borrow)]
    category: Field<'a>,
    #[serde(borrow, rename = "operationName")]
    operation_name: Field<'a>,
    #[serde(borrow, rename = "resultType")]
    result_type: Field<'a>,
    #[serde(borrow, rename = "correlationId")]
    correlation_id: Field<'a>,
    #[serde(borrow, rename = "tenantId")]
    tenant_id: Field<'a>,
    #[serde(borrow)]
    location: Field<'a>,
    #[serde(borrow)]
    properties: Nested<Props<'a>>,
    #[serde(borrow)]
    records: Option<Vec<Nested<RawEntry<'a>>>>,
}

/// The records of one line, in order: one, or each of an Event Hubs message's `records`.
pub struct LineRecords<'a> {
    container: EventType,
    message: bool,
    single: Option<RawEntry<'a>>,
    many: std::vec::IntoIter<Nested<RawEntry<'a>>>,
}

impl LineRecords<'_> {
    /// Whether the line is an Event Hubs message (`{"records":[…]}`): its records are then
    /// reported by their index.
    pub fn is_message(&self) -> bool {
        self.message
    }
}

impl<'a> Iterator for LineRecords<'a> {
    type Item = Result<DiagnosticRecord<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.single.take() {
            return Some(to_record(entry, self.container));
        }
        let entry = self.many.next()?;
        Some(match entry.0 {
            Some(entry) => to_record(entry, self.container),
            None => Err(RecordError::NotAnObject),
        })
    }
}

/// Parses one line of the container of `container`'s sign-ins (borrowing from `line`). A line
/// that is not a JSON object fails whole; each record of it can fail on its own.
pub fn parse_line(line: &[u8], container: EventType) -> Result<LineRecords<'_>, RecordError> {
    let entry: Nested<RawEntry<'_>> =
        serde_json::from_slice(line).map_err(|e| RecordError::NotJson(e.to_string()))?;
    let mut entry = entry.0.ok_or(RecordError::NotAnObject)?;
    Ok(match entry.records.take() {
        Some(records) => LineRecords {
            container,
            message: true,
            single: None,
            many: records.into_iter(),
        },
        None => LineRecords {
            container,
            message: false,
            single: Some(entry),
            many: Vec::new().into_iter(),
        },
    })
}

/// One envelope → the sign-in in Graph's form (see the module's table).
fn to_record(
    entry: RawEntry<'_>,
    container: EventType,
) -> Result<DiagnosticRecord<'_>, RecordError> {
    let category = entry.category.as_str().ok_or(RecordError::NoCategory)?;
    let event_type = EventType::from_diagnostic_category(category)
        .ok_or_else(|| RecordError::OtherCategory(category.to_string()))?;
    if event_type != container {
        return Err(RecordError::WrongCategory {
            found: event_type.diagnostic_category().to_string(),
            expected: container.as_str().to_string(),
        });
    }
    let mut props = entry.properties.0.ok_or(RecordError::NoProperties)?;
    props.created_date_time = graph_created(props.created_date_time);
    graph_user_type(&mut props.user_type);
    props.sign_in_event_types =
        Field::List(Box::new([Field::Str(Cow::Borrowed(event_type.as_str()))]));
    let signin = SignInRecord::from_props(props)?;
    Ok(DiagnosticRecord {
        envelope: Envelope {
            time: entry.time,
            event_type,
            operation_name: entry.operation_name,
            result_type: entry.result_type,
            correlation_id: entry.correlation_id,
            tenant_id: entry.tenant_id,
            location: entry.location,
        },
        signin,
    })
}

/// `createdDateTime` as Graph reports it: UTC, whole seconds. Anything unparsable is left as it
/// is, for [`SignInRecord::from_props`] to refuse.
fn graph_created(created: Field<'_>) -> Field<'_> {
    let graph = created
        .as_str()
        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
        .and_then(|t| t.to_offset(UtcOffset::UTC).replace_nanosecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok());
    match graph {
        Some(text) => Field::Str(Cow::Owned(text)),
        None => created,
    }
}

/// `Member` → `member`: Graph's camelCase enum spelling.
fn graph_user_type(user_type: &mut Field<'_>) {
    if let Field::Str(text) = user_type {
        if text.starts_with(|c: char| c.is_ascii_uppercase()) {
            let mut graph = text.to_string();
            graph[..1].make_ascii_lowercase();
            *text = Cow::Owned(graph);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Microsoft's sample line (the sign-in sample of the module docs), on one line, trimmed.
    const SAMPLE: &str = r#"{"time": "2019-03-12T16:02:15.5522137Z", "resourceId": "/tenants/<TENANT ID>/providers/Microsoft.aadiam", "operationName": "Sign-in activity", "operationVersion": "1.0", "category": "SignInLogs", "tenantId": "<TENANT ID>", "resultType": "50140", "resultSignature": "None", "resultDescription": "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in.", "durationMs": 0, "callerIpAddress": "<CALLER IP ADDRESS>", "correlationId": "a75a10bd-c126-486b-9742-c03110d36262", "identity": "Timothy Perkins", "Level": 4, "location": "US", "properties": {"id": "0231f922-93fa-4005-bb11-b344eca03c01", "createdDateTime": "2019-03-12T16:02:15.5522137+00:00", "userDisplayName": "Timothy Perkins", "status": {"errorCode": 50140, "failureReason": "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in."}, "location": {"city": "Bellevue", "state": "Washington", "countryOrRegion": "US", "geoCoordinates": {"latitude": 45, "longitude": 122}}, "appliedConditionalAccessPolicies": [{"id": "ae11ffaa-9879-44e0-972c-7538fd5c4d1a", "displayName": "HR app access policy", "enforcedGrantControls": ["Mfa"], "enforcedSessionControls": [], "result": "notApplied", "conditionsSatisfied": 0, "conditionsNotSatisfied": 0}], "processingTimeInMilliseconds": 238, "userType": "Member", "autonomousSystemNumber": 8000, "privateLinkDetails": {}}}"#;

    fn one(line: &str, container: EventType) -> Result<DiagnosticRecord<'_>, RecordError> {
        let mut records = parse_line(line.as_bytes(), container)?;
        let record = records.next().expect("one record");
        assert!(records.next().is_none());
        record
    }

    #[test]
    fn microsofts_sample_becomes_a_graph_record() {
        let record = one(SAMPLE, EventType::InteractiveUser).unwrap();
        let signin = &record.signin;
        assert_eq!(signin.id(), "0231f922-93fa-4005-bb11-b344eca03c01");
        assert_eq!(signin.created, datetime!(2019-03-12 16:02:15 UTC));
        assert_eq!(
            signin.props.created_date_time.as_str(),
            Some("2019-03-12T16:02:15Z")
        );
        assert_eq!(signin.props.user_type.as_str(), Some("member"));
        assert_eq!(
            signin.props.sign_in_event_types,
            Field::List(Box::new([Field::Str(Cow::Borrowed("interactiveUser"))]))
        );
        let status = signin.props.status.get().unwrap();
        assert_eq!(status.error_code, Field::UInt(50140));
        assert_eq!(status.additional_details, Field::Null);
        assert_eq!(signin.props.autonomous_system_number, Field::UInt(8000));
        assert_eq!(record.envelope.event_type, EventType::InteractiveUser);
        assert_eq!(record.envelope.result_type.as_str(), Some("50140"));
        assert_eq!(record.envelope.location.as_str(), Some("US"));
        assert_eq!(record.envelope.tenant_id.as_str(), Some("<TENANT ID>"));
        assert_eq!(
            record.envelope.time.as_str(),
            Some("2019-03-12T16:02:15.5522137Z")
        );
        // The text is borrowed from the line where it has no escapes.
        assert!(matches!(
            signin.props.user_display_name,
            Field::Str(Cow::Borrowed("Timothy Perkins"))
        ));
    }

    #[test]
    fn created_date_times_become_utc_whole_seconds() {
        let cases = [
            ("2022-01-24T05:10:11.429773+00:00", "2022-01-24T05:10:11Z"),
            ("2019-10-18T04:45:48.0729893-05:00", "2019-10-18T09:45:48Z"),
            ("2026-11-28T23:59:59.9999999+00:00", "2026-11-28T23:59:59Z"),
            ("2026-11-28T10:00:30Z", "2026-11-28T10:00:30Z"),
            ("2026-11-28T10:00:30.5Z", "2026-11-28T10:00:30Z"),
        ];
        for (export, graph) in cases {
            let line = format!(
                r#"{{"category":"SignInLogs","properties":{{"id":"a","createdDateTime":"{export}"}}}}"#
            );
            let record = one(&line, EventType::InteractiveUser).unwrap();
            assert_eq!(
                record.signin.props.created_date_time.as_str(),
                Some(graph),
                "{export}"
            );
        }
    }

    #[test]
    fn event_hubs_messages_give_each_record() {
        let line = r#"{"records":[
            {"category":"NonInteractiveUserSignInLogs","properties":{"id":"1","createdDateTime":"2026-11-28T10:00:00.1+00:00","userType":"Guest"}},
            "not an object",
            {"category":"NonInteractiveUserSignInLogs","properties":{"id":"2","createdDateTime":"2026-11-28T10:00:01+00:00"}}
        ]}"#;
        let records: Vec<_> = parse_line(line.as_bytes(), EventType::NonInteractiveUser)
            .unwrap()
            .collect();
        assert_eq!(records.len(), 3);
        let first = records[0].as_ref().unwrap();
        assert_eq!(first.signin.id(), "1");
        assert_eq!(first.signin.props.user_type.as_str(), Some("guest"));
        assert_eq!(records[1], Err(RecordError::NotAnObject));
        assert_eq!(records[2].as_ref().unwrap().signin.id(), "2");
        assert_eq!(
            parse_line(br#"{"records":[]}"#, EventType::NonInteractiveUser)
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn unusable_lines_and_records_say_why() {
        let container = EventType::ServicePrincipal;
        let sp = |props: &str| {
            format!(r#"{{"category":"ServicePrincipalSignInLogs","properties":{props}}}"#)
        };
        assert!(matches!(
            parse_line(b"{\"category\":", container),
            Err(RecordError::NotJson(_))
        ));
        assert!(matches!(
            parse_line(b"[1,2]", container),
            Err(RecordError::NotAnObject)
        ));
        assert!(matches!(
            parse_line(b"{\"records\":5}", container),
            Err(RecordError::NotJson(_))
        ));
        let cases: Vec<(String, RecordError)> = vec![
            (r#"{"properties":{}}"#.to_string(), RecordError::NoCategory),
            (
                r#"{"category":"AuditLogs","properties":{}}"#.to_string(),
                RecordError::OtherCategory("AuditLogs".into()),
            ),
            (
                r#"{"category":"SignInLogs","properties":{}}"#.to_string(),
                RecordError::WrongCategory {
                    found: "SignInLogs".into(),
                    expected: "servicePrincipal".into(),
                },
            ),
            (
                r#"{"category":"ServicePrincipalSignInLogs"}"#.to_string(),
                RecordError::NoProperties,
            ),
            (sp("[]"), RecordError::NoProperties),
            (
                sp(r#"{"createdDateTime":"2026-11-28T10:00:00Z"}"#),
                RecordError::SignIn(SignInError::MissingId),
            ),
            (
                sp(r#"{"id":"x","createdDateTime":"yesterday"}"#),
                RecordError::SignIn(SignInError::BadCreated { id: "x".into() }),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                one(&line, container).map(|r| r.signin.id().to_string()),
                Err(want),
                "{line}"
            );
        }
    }

    #[test]
    fn a_line_cannot_claim_event_types_its_container_does_not_hold() {
        let line = r#"{"category":"ManagedIdentitySignInLogs","properties":{"id":"m","createdDateTime":"2026-11-28T10:00:00+00:00","signInEventTypes":["interactiveUser"],"userType":null}}"#;
        let record = one(line, EventType::ManagedIdentity).unwrap();
        assert_eq!(
            record.signin.props.sign_in_event_types,
            Field::List(Box::new([Field::Str(Cow::Borrowed("managedIdentity"))]))
        );
        assert_eq!(record.signin.props.user_type, Field::Null);
    }
}
