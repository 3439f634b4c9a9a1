//! The simulated tenant as an Entra diagnostic setting archives it to Azure Storage: each Graph
//! beta `signIn` record ([`crate::tenant::generate`]) as the JSON line Azure Monitor writes, and
//! the append blobs those lines land in, by the hour they were received — with the faults a
//! reader of such blobs must survive.
//!
//! The line follows Microsoft's sample of a sign-in in Azure Monitor (MicrosoftDocs/azure-docs
//! `articles/active-directory/reports-monitoring/reference-azure-monitor-sign-ins-log-schema.md`
//! at 012ad308577ca7a4bcf96132a0e71b2819fa4a98) and the common envelope (azure-monitor-docs
//! `articles/azure-monitor/platform/resource-logs-schema.md`): `time` (received), `resourceId`
//! `/tenants/<id>/providers/Microsoft.aadiam`, `operationName` `Sign-in activity`,
//! `operationVersion` `1.0`, `category`, `tenantId`, `resultType` (the error code as a string),
//! `resultSignature` `None`, `resultDescription`, `durationMs` `0`, `callerIpAddress`,
//! `correlationId`, `identity`, `Level` `4`, `location` (the country code) and `properties`, the
//! Graph record with the sample's differences: `createdDateTime` with 100-ns ticks and `+00:00`,
//! `userType` capitalised, no `signInEventTypes`, keys left out instead of `null`,
//! `conditionsSatisfied`/`conditionsNotSatisfied` as integers and whole coordinates as
//! integers, extra keys (`processingTimeInMilliseconds`, `authenticationProcessingDetails`, …).
//!
//! The blobs follow azure-monitor-docs `articles/azure-monitor/platform/resource-logs.md`
//! ("Azure Storage"): container `insights-logs-<category>`, one append blob per received hour
//! `tenantId=<id>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`, one JSON object per line; blobs grow
//! while their hour lasts and a little after, and delivery may repeat.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::tenant::TENANT_ID;

/// `(signInEventTypes value, diagnostic category, container)` of each event type (entra-docs
/// `concept-diagnostic-settings-logs-options.md`; containers: `resource-logs.md`).
pub const CATEGORIES: [(&str, &str, &str); 4] = [
    ("interactiveUser", "SignInLogs", "insights-logs-signinlogs"),
    (
        "nonInteractiveUser",
        "NonInteractiveUserSignInLogs",
        "insights-logs-noninteractiveusersigninlogs",
    ),
    (
        "servicePrincipal",
        "ServicePrincipalSignInLogs",
        "insights-logs-serviceprincipalsigninlogs",
    ),
    (
        "managedIdentity",
        "ManagedIdentitySignInLogs",
        "insights-logs-managedidentitysigninlogs",
    ),
];

/// The category and container of a Graph record (by its first `signInEventTypes` value).
pub fn category_of(record: &Value) -> Option<(&'static str, &'static str)> {
    let event_type = record["signInEventTypes"][0].as_str()?;
    CATEGORIES
        .iter()
        .find(|(t, _, _)| *t == event_type)
        .map(|(_, category, container)| (*category, *container))
}

/// The GUID bits of a record's id (0 for an id that is not a GUID): the fake's per-record
/// randomness, so the same record always gets the same ticks and delay.
fn id_bits(record: &Value) -> u128 {
    record["id"]
        .as_str()
        .and_then(|id| uuid::Uuid::try_parse(id).ok())
        .map_or(0, |id| id.as_u128())
}

/// When Azure Monitor received the sign-in: 20 s to 15 min after it happened (the export lags
/// the event by minutes; `time` and `createdDateTime` are never equal).
pub fn received_at(record: &Value) -> Option<OffsetDateTime> {
    let created = OffsetDateTime::parse(record["createdDateTime"].as_str()?, &Rfc3339).ok()?;
    let delay = 20 + ((id_bits(record) >> 64) % 880) as i64;
    Some(created + Duration::seconds(delay))
}

/// `2026-11-28T10:00:30.1234567` + `suffix`: 7 fractional digits, like the export's times.
fn ticks(t: OffsetDateTime, sub_second_ticks: u32, suffix: &str) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}{suffix}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        sub_second_ticks % 10_000_000
    )
}

/// `record` (a Graph beta `signIn`) as the line a diagnostic setting of `tenant_id` writes for
/// it, received at `received`. `None` for a record without an event type or a creation time.
pub fn to_line(record: &Value, tenant_id: &str, received: OffsetDateTime) -> Option<Value> {
    let (category, _) = category_of(record)?;
    let created = OffsetDateTime::parse(record["createdDateTime"].as_str()?, &Rfc3339).ok()?;
    let bits = id_bits(record);
    let mut properties = record.as_object()?.clone();
    properties.remove("signInEventTypes");
    // Graph reports whole seconds; the export has the event's 100-ns ticks within that second.
    properties.insert(
        "createdDateTime".into(),
        Value::String(ticks(created, (bits % 10_000_000) as u32, "+00:00")),
    );
    if let Some(Value::String(user_type)) = properties.get_mut("userType") {
        if let Some(first) = user_type.get(..1) {
            *user_type = format!("{}{}", first.to_ascii_uppercase(), &user_type[1..]);
        }
    }
    if let Some(Value::Array(policies)) = properties.get_mut("appliedConditionalAccessPolicies") {
        for policy in policies.iter_mut().filter_map(Value::as_object_mut) {
            policy.insert("conditionsSatisfied".into(), json!(0));
            policy.insert("conditionsNotSatisfied".into(), json!(0));
        }
    }
    properties.insert(
        "processingTimeInMilliseconds".into(),
        json!((bits >> 32) % 500),
    );
    properties.insert("tokenIssuerName".into(), json!(""));
    properties.insert(
        "authenticationProcessingDetails".into(),
        json!([{"key": "Legacy TLS (TLS 1.0, 1.1, 3DES)", "value": "False"}]),
    );
    properties.insert("networkLocationDetails".into(), json!([]));
    properties.insert("flaggedForReview".into(), json!(false));
    properties.insert("privateLinkDetails".into(), json!({}));
    let properties = export_values(Value::Object(properties));

    let status = &record["status"];
    let error_code = status["errorCode"].as_i64().unwrap_or(0);
    let mut line = Map::new();
    line.insert(
        "time".into(),
        json!(ticks(received, (bits >> 96) as u32, "Z")),
    );
    line.insert(
        "resourceId".into(),
        json!(format!("/tenants/{tenant_id}/providers/Microsoft.aadiam")),
    );
    line.insert("operationName".into(), json!("Sign-in activity"));
    line.insert("operationVersion".into(), json!("1.0"));
    line.insert("category".into(), json!(category));
    line.insert("tenantId".into(), json!(tenant_id));
    line.insert("resultType".into(), json!(error_code.to_string()));
    line.insert("resultSignature".into(), json!("None"));
    if error_code != 0 {
        line.insert("resultDescription".into(), status["failureReason"].clone());
    }
    line.insert("durationMs".into(), json!(0));
    line.insert("callerIpAddress".into(), record["ipAddress"].clone());
    line.insert("correlationId".into(), record["correlationId"].clone());
    let identity = match record["userDisplayName"].as_str() {
        Some(name) if !name.is_empty() => record["userDisplayName"].clone(),
        _ => record["servicePrincipalName"].clone(),
    };
    line.insert("identity".into(), identity);
    line.insert("Level".into(), json!(4));
    line.insert(
        "location".into(),
        record["location"]["countryOrRegion"].clone(),
    );
    line.insert("properties".into(), properties);
    Some(export_values(Value::Object(line)))
}

/// The export's spelling of values: object keys whose value is `null` left out, whole numbers
/// written without a fraction (`45`, not `45.0`), recursively.
fn export_values(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, export_values(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(export_values).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        other => other,
    }
}

/// `{"records": [...]}`: several lines as one Event Hubs message (resource-logs.md, "Event Hubs").
pub fn event_hubs_message(lines: Vec<Value>) -> Value {
    json!({ "records": lines })
}

/// Faults of the archive a reader must survive, each off by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveFaults {
    /// The last lines of each container's newest blob are appended only after the first read.
    pub appended_after_first_read: bool,
    /// The last two lines of an older hour's blob of the busiest container are appended after
    /// the first read, when a newer hour's blob exists (the previous hour still receiving).
    pub older_hour_grows: bool,
    /// One record is delivered twice: again in the next hour's blob (or its own).
    pub duplicate_delivery: bool,
    /// A record of the busiest container written before the first read, in the hour before its
    /// newest blob's (or, when that hour has no blob or no such line, in the newest blob), is
    /// delivered again after the first read at the end of the newest blob — the next hour's,
    /// as Azure Monitor files a repeat by the hour it receives it. A reader meets the repeat in
    /// a later run, so only what it kept of the earlier run can tell it.
    pub repeated_in_later_run: bool,
    /// The busiest container's newest blob ends, at the first read, in the first half of a
    /// line; the rest of it comes after.
    pub truncated_last_line: bool,
    /// A line that is not JSON sits in the middle of the busiest container's oldest blob.
    pub malformed_line: bool,
}

impl ArchiveFaults {
    /// Every fault at once.
    pub fn every() -> ArchiveFaults {
        ArchiveFaults {
            appended_after_first_read: true,
            older_hour_grows: true,
            duplicate_delivery: true,
            repeated_in_later_run: true,
            truncated_last_line: true,
            malformed_line: true,
        }
    }
}

/// When a write happens relative to the reader's first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Written before the first read.
    First,
    /// Appended after the first read.
    Later,
}

/// One Append Block (or the creation of the blob with it) of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub container: &'static str,
    pub blob: String,
    pub phase: Phase,
    pub bytes: Vec<u8>,
}

/// Where something is in the archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    pub container: &'static str,
    pub blob: String,
    pub offset: u64,
}

/// The archive of a tenant and what a correct reader must find in it.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    /// Every write, in order (blob by blob; within a blob, in offset order).
    pub appends: Vec<Append>,
    /// The malformed lines written.
    pub malformed: Vec<At>,
    /// Ids delivered twice within the first phase ([`ArchiveFaults::duplicate_delivery`]).
    pub duplicated: Vec<String>,
    /// Ids written in the first phase and delivered again in the later one
    /// ([`ArchiveFaults::repeated_in_later_run`]).
    pub repeated_later: Vec<String>,
    /// The line (as written) of every record, by id.
    pub lines: BTreeMap<String, Value>,
}

impl Archive {
    /// The writes of one phase.
    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &Append> {
        self.appends.iter().filter(move |a| a.phase == phase)
    }

    /// The blob name of the hour `received` falls in, for this tenant.
    pub fn blob_name(tenant_id: &str, received: OffsetDateTime) -> String {
        let t = received.to_offset(UtcOffset::UTC);
        format!(
            "tenantId={tenant_id}/y={:04}/m={:02}/d={:02}/h={:02}/m=00/PT1H.json",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        )
    }
}

/// `(container, blob name)`.
type BlobRef = (&'static str, String);

/// One line (or part of one) of a blob, and when it is written.
struct Written {
    phase: Phase,
    malformed: bool,
    bytes: Vec<u8>,
}

impl Written {
    fn first(bytes: Vec<u8>) -> Written {
        Written {
            phase: Phase::First,
            malformed: false,
            bytes,
        }
    }
}

/// A line that is not JSON (cut off inside a string).
const MALFORMED: &[u8] = b"{\"time\": \"2026-11-28T10:00:00Z\", \"category\": \"Sign\n";

/// The archive of `records` for `tenant_id`: each record's line in the blob of the hour it was
/// received ([`received_at`]), blobs in received order, with `faults`.
pub fn archive(records: &[Value], tenant_id: &str, faults: ArchiveFaults) -> Archive {
    let mut out = Archive::default();
    // (container, blob) → lines in received order.
    let mut blobs: BTreeMap<BlobRef, Vec<(OffsetDateTime, Vec<u8>)>> = BTreeMap::new();
    for record in records {
        let (Some((_, container)), Some(received)) = (category_of(record), received_at(record))
        else {
            continue;
        };
        let Some(line) = to_line(record, tenant_id, received) else {
            continue;
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        if let Some(id) = record["id"].as_str() {
            out.lines.insert(id.to_string(), line);
        }
        blobs
            .entry((container, Archive::blob_name(tenant_id, received)))
            .or_default()
            .push((received, bytes));
    }
    // A time each blob's events were received in: its hour.
    let received_in: BTreeMap<BlobRef, OffsetDateTime> = blobs
        .iter()
        .filter_map(|(key, lines)| Some((key.clone(), lines.first()?.0)))
        .collect();
    let mut blobs: BTreeMap<BlobRef, Vec<Written>> = blobs
        .into_iter()
        .map(|(key, mut lines)| {
            lines.sort_by_key(|(received, _)| *received);
            (
                key,
                lines.into_iter().map(|(_, b)| Written::first(b)).collect(),
            )
        })
        .collect();
    // The faults go to the busiest container, where every blob has several lines.
    let mut lines_by_container: BTreeMap<&'static str, usize> = BTreeMap::new();
    for ((container, _), lines) in &blobs {
        *lines_by_container.entry(container).or_default() += lines.len();
    }
    let busiest = lines_by_container
        .iter()
        .max_by_key(|(container, lines)| (**lines, std::cmp::Reverse(**container)))
        .map(|(container, _)| *container);
    let of_busiest: Vec<String> = blobs
        .keys()
        .filter(|(c, _)| Some(*c) == busiest)
        .map(|(_, name)| name.clone())
        .collect();

    if faults.duplicate_delivery {
        if let (Some(container), Some(name)) = (busiest, of_busiest.first()) {
            let key = (container, name.clone());
            if let Some(line) = blobs
                .get(&key)
                .and_then(|lines| lines.first())
                .map(|l| l.bytes.clone())
            {
                if let Ok(value) = serde_json::from_slice::<Value>(&line) {
                    if let Some(id) = value["properties"]["id"].as_str() {
                        out.duplicated.push(id.to_string());
                    }
                }
                let again = of_busiest.get(1).unwrap_or(name).clone();
                if let Some(lines) = blobs.get_mut(&(container, again)) {
                    lines.insert(lines.len() / 2, Written::first(line));
                }
            }
        }
    }
    if faults.malformed_line {
        if let (Some(container), Some(name)) = (busiest, of_busiest.first()) {
            if let Some(lines) = blobs.get_mut(&(container, name.clone())) {
                let malformed = Written {
                    malformed: true,
                    ..Written::first(MALFORMED.to_vec())
                };
                lines.insert(lines.len() / 2, malformed);
            }
        }
    }
    if faults.appended_after_first_read {
        let newest: Vec<BlobRef> = {
            let mut newest: BTreeMap<&'static str, String> = BTreeMap::new();
            for (container, name) in blobs.keys() {
                newest.insert(container, name.clone());
            }
            newest.into_iter().collect()
        };
        for key in newest {
            if let Some(lines) = blobs.get_mut(&key) {
                let from = lines.len() - lines.len() / 4;
                for line in &mut lines[from..] {
                    line.phase = Phase::Later;
                }
            }
        }
    }
    if faults.older_hour_grows && of_busiest.len() >= 2 {
        if let Some(container) = busiest {
            let older = of_busiest[of_busiest.len() - 2].clone();
            if let Some(lines) = blobs.get_mut(&(container, older)) {
                let from = lines.len().saturating_sub(2);
                for line in &mut lines[from..] {
                    line.phase = Phase::Later;
                }
            }
        }
    }
    if faults.repeated_in_later_run {
        if let (Some(container), Some(newest)) = (busiest, of_busiest.last()) {
            let newest = (container, newest.clone());
            // The previous hour's blob, if there is one, then the newest itself: a repeat is
            // filed by the hour it is received in, the same or the next one.
            let previous = received_in
                .get(&newest)
                .map(|t| {
                    (
                        container,
                        Archive::blob_name(tenant_id, *t - Duration::HOUR),
                    )
                })
                .filter(|key| blobs.contains_key(key));
            let original = previous.iter().chain([&newest]).find_map(|key| {
                let lines = blobs.get(key)?;
                // Whole lines of the first phase; the newest blob's last one may be cut.
                let whole = lines
                    .iter()
                    .filter(|l| l.phase == Phase::First && !l.malformed)
                    .count()
                    - usize::from(*key == newest);
                lines
                    .iter()
                    .filter(|l| l.phase == Phase::First && !l.malformed)
                    .take(whole)
                    .filter_map(|l| {
                        let value = serde_json::from_slice::<Value>(&l.bytes).ok()?;
                        let id = value["properties"]["id"].as_str()?.to_string();
                        Some((id, l.bytes.clone()))
                    })
                    .find(|(id, _)| !out.duplicated.contains(id))
            });
            if let (Some((id, line)), Some(lines)) = (original, blobs.get_mut(&newest)) {
                out.repeated_later.push(id);
                lines.push(Written {
                    phase: Phase::Later,
                    ..Written::first(line)
                });
            }
        }
    }
    if faults.truncated_last_line {
        if let (Some(container), Some(name)) = (busiest, of_busiest.last()) {
            if let Some(lines) = blobs.get_mut(&(container, name.clone())) {
                // The last line written at the first read is cut in two.
                if let Some(at) = lines.iter().rposition(|l| l.phase == Phase::First) {
                    let half = lines[at].bytes.len() / 2;
                    let tail = lines[at].bytes.split_off(half);
                    lines.insert(
                        at + 1,
                        Written {
                            phase: Phase::Later,
                            ..Written::first(tail)
                        },
                    );
                }
            }
        }
    }

    for ((container, name), lines) in blobs {
        let mut offset = 0u64;
        let mut pending: Option<Append> = None;
        for Written {
            phase,
            malformed,
            bytes,
        } in lines
        {
            if malformed {
                out.malformed.push(At {
                    container,
                    blob: name.clone(),
                    offset,
                });
            }
            offset += bytes.len() as u64;
            match &mut pending {
                Some(append) if append.phase == phase => append.bytes.extend_from_slice(&bytes),
                _ => {
                    out.appends.extend(pending.take());
                    pending = Some(Append {
                        container,
                        blob: name.clone(),
                        phase,
                        bytes,
                    });
                }
            }
        }
        out.appends.extend(pending);
    }
    out
}

/// The archive of the fake tenant itself ([`TENANT_ID`]).
pub fn tenant_archive(records: &[Value], faults: ArchiveFaults) -> Archive {
    archive(records, TENANT_ID, faults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::{generate, TenantSpec};
    use time::macros::datetime;

    fn records() -> Vec<Value> {
        generate(&TenantSpec {
            users: 12,
            days: 2,
            seed: 4,
            end: datetime!(2026-11-28 12:00 UTC),
        })
    }

    #[test]
    fn lines_follow_microsofts_sample() {
        let records = records();
        let record = records
            .iter()
            .find(|r| r["status"]["errorCode"] != 0 && r["userType"] == "member")
            .unwrap();
        let received = received_at(record).unwrap();
        let line = to_line(record, TENANT_ID, received).unwrap();
        assert_eq!(line["operationName"], "Sign-in activity");
        assert_eq!(
            line["resultType"],
            record["status"]["errorCode"].to_string()
        );
        assert_eq!(line["resultDescription"], record["status"]["failureReason"]);
        assert_eq!(line["Level"], 4);
        assert_eq!(line["location"], record["location"]["countryOrRegion"]);
        assert_eq!(
            line["resourceId"],
            format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam")
        );
        let props = &line["properties"];
        assert_eq!(props["userType"], "Member");
        assert!(props.get("signInEventTypes").is_none());
        let created = props["createdDateTime"].as_str().unwrap();
        assert!(
            created.ends_with("+00:00")
                && created.len() == "2026-11-28T10:00:30.1234567+00:00".len(),
            "{created}"
        );
        assert!(created.starts_with(&record["createdDateTime"].as_str().unwrap()[..19]));
        let time = line["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 28, "{time}");
        // No nulls anywhere; extra keys there.
        fn no_nulls(v: &Value) -> bool {
            match v {
                Value::Object(m) => m.values().all(|v| !v.is_null() && no_nulls(v)),
                Value::Array(a) => a.iter().all(no_nulls),
                _ => true,
            }
        }
        assert!(no_nulls(&line));
        assert!(props["processingTimeInMilliseconds"].is_u64());
        assert_eq!(
            props["status"].get("additionalDetails").is_some(),
            !record["status"]["additionalDetails"].is_null()
        );
        // Workloads have no user: the identity is the service principal.
        let workload = records
            .iter()
            .find(|r| r["signInEventTypes"][0] == "managedIdentity")
            .unwrap();
        let line = to_line(workload, TENANT_ID, received_at(workload).unwrap()).unwrap();
        assert_eq!(line["category"], "ManagedIdentitySignInLogs");
        assert_eq!(line["identity"], workload["servicePrincipalName"]);
        assert!(line["properties"].get("userType").is_none());
        assert_eq!(
            export_values(json!({"a": 45.0, "b": -0.5, "c": [null, 1.0]})),
            json!({"a": 45, "b": -0.5, "c": [null, 1]})
        );
    }

    #[test]
    fn the_archive_holds_every_record_once_by_received_hour() {
        let records = records();
        let archive = tenant_archive(&records, ArchiveFaults::default());
        assert!(archive.phase(Phase::Later).next().is_none());
        let mut ids = std::collections::BTreeSet::new();
        for append in &archive.appends {
            assert!(append.bytes.ends_with(b"\n"));
            for line in append
                .bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let line: Value = serde_json::from_slice(line).unwrap();
                let received =
                    OffsetDateTime::parse(line["time"].as_str().unwrap(), &Rfc3339).unwrap();
                assert_eq!(Archive::blob_name(TENANT_ID, received), append.blob);
                let (_, _, container) = CATEGORIES
                    .iter()
                    .find(|(_, c, _)| *c == line["category"])
                    .unwrap();
                assert_eq!(*container, append.container);
                assert!(ids.insert(line["properties"]["id"].as_str().unwrap().to_string()));
            }
        }
        assert_eq!(ids.len(), records.len());
        assert_eq!(archive.lines.len(), records.len());
    }

    #[test]
    fn faults_shape_the_archive() {
        // Busier than `records()`: every fault finds whole lines of the first phase to use.
        let records = generate(&TenantSpec {
            users: 30,
            days: 2,
            seed: 4,
            end: datetime!(2026-11-28 12:00 UTC),
        });
        let faults = ArchiveFaults::every();
        let archive = tenant_archive(&records, faults);
        assert_eq!(archive.duplicated.len(), 1);
        assert_eq!(archive.repeated_later.len(), 1);
        assert!(!archive.duplicated.contains(&archive.repeated_later[0]));
        assert_eq!(archive.malformed.len(), 1);
        // The busiest container grows in its newest blob and in an older one.
        let first = archive
            .phase(Phase::Later)
            .map(|a| a.container)
            .max_by_key(|c| archive.appends.iter().filter(|a| a.container == *c).count())
            .unwrap();
        let grown: std::collections::BTreeSet<&str> = archive
            .phase(Phase::Later)
            .filter(|a| a.container == first)
            .map(|a| a.blob.as_str())
            .collect();
        assert_eq!(grown.len(), 2, "{grown:?}");
        // The truncated line: the busiest container's newest blob ends mid-line at the first read.
        let newest = archive
            .appends
            .iter()
            .filter(|a| a.container == first)
            .map(|a| a.blob.clone())
            .max()
            .unwrap();
        let first_phase: Vec<u8> = archive
            .appends
            .iter()
            .filter(|a| a.blob == newest && a.container == first && a.phase == Phase::First)
            .flat_map(|a| a.bytes.clone())
            .collect();
        assert!(!first_phase.ends_with(b"\n"));
        // The later repeat: a line of the second-newest blob's first phase, again at the end of
        // the newest blob, after the first read.
        let repeated = serde_json::to_vec(&archive.lines[&archive.repeated_later[0]]).unwrap();
        let in_blob = |blob: &str, phase: Phase| {
            archive
                .appends
                .iter()
                .filter(|a| a.blob == blob && a.container == first && a.phase == phase)
                .any(|a| a.bytes.split(|&b| b == b'\n').any(|l| l == repeated))
        };
        let older = archive
            .appends
            .iter()
            .filter(|a| a.container == first && a.blob < newest)
            .map(|a| a.blob.clone())
            .max()
            .unwrap();
        assert!(in_blob(&older, Phase::First) && !in_blob(&older, Phase::Later));
        assert!(in_blob(&newest, Phase::Later) && !in_blob(&newest, Phase::First));
        let last = archive
            .appends
            .iter()
            .rfind(|a| a.blob == newest && a.container == first)
            .unwrap();
        assert!(last.bytes.ends_with(&[repeated.as_slice(), b"\n"].concat()));
        // Within a blob, the first phase comes before the later one.
        for pair in archive.appends.windows(2) {
            if pair[0].blob == pair[1].blob && pair[0].container == pair[1].container {
                assert!(pair[0].phase < pair[1].phase);
            }
        }
        // The same records as without faults, every line ending in a newline once written whole.
        let total: usize = archive.appends.iter().map(|a| a.bytes.len()).sum();
        let plain: usize = tenant_archive(&records, ArchiveFaults::default())
            .appends
            .iter()
            .map(|a| a.bytes.len())
            .sum();
        assert!(total > plain);
    }
}
