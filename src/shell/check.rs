//! `check`: the settings, the source (a Graph token and a one-row read of the sign-in log, or the
//! diagnostic-settings export in Storage), and a write probe of the destination, each with a
//! plain-words explanation when it fails.

use std::collections::BTreeSet;

use super::{load_settings, CommandError};
use crate::cli::CommonArgs;
use crate::config::{DiagnosticStorage, EventType, Settings, Source};
use crate::credential::{token_claims, TokenProvider, STORAGE_SCOPE};
use crate::diagnostic::layout::prefix_tenant;
use crate::diagnostic::{parse_line, DiagnosticReader, ListedBlob, Listing, SourceError};
use crate::graph::client::GraphClient;

/// The check's lines on stdout, and how many failed.
#[derive(Default)]
struct Report {
    failures: usize,
}

impl Report {
    fn step(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => println!("[ ok ] {name}: {detail}"),
            Err(explanation) => {
                self.failures += 1;
                println!("[FAIL] {name}: {explanation}");
            }
        }
    }

    fn warn(&self, name: &str, text: &str) {
        println!("[warn] {name}: {text}");
    }
}

pub(super) async fn check(args: CommonArgs) -> Result<(), CommandError> {
    let settings = load_settings(&args, None)?;
    println!("Settings:");
    for (name, value) in settings.describe() {
        println!("  {name} = {value}");
    }
    let mut report = Report::default();

    let tokens = match TokenProvider::new(&settings.graph.auth) {
        Ok(tokens) => tokens,
        Err(e) => {
            report.step("credential", Err(e.to_string()));
            return Err(CommandError::Failed("check failed".into()));
        }
    };
    match &settings.source {
        Source::Graph => check_graph(&settings, &tokens, &mut report).await,
        Source::DiagnosticSettings(storage) => {
            check_diagnostic(&settings, storage, &tokens, &mut report).await
        }
    }
    match crate::sink::open(&settings.destination, settings.preset, &tokens) {
        Ok(sink) => report.step(
            "destination",
            sink.probe()
                .await
                .map(|()| format!("{} is writable", sink.describe()))
                .map_err(|e| e.to_string()),
        ),
        Err(e) => report.step("destination", Err(e.to_string())),
    }
    if report.failures > 0 {
        return Err(CommandError::Failed(format!(
            "{} check(s) failed; see above",
            report.failures
        )));
    }
    Ok(())
}

/// A Graph token, the Conditional Access columns' permission, one sign-in read.
async fn check_graph(settings: &Settings, tokens: &TokenProvider, report: &mut Report) {
    let token = tokens.token().await;
    report.step(
        "Graph token",
        token
            .as_ref()
            .map(|_| "acquired".to_string())
            .map_err(|e| e.to_string()),
    );
    if let Ok(token) = &token {
        if let Some(warning) = policy_columns_warning(&settings.columns, token.expose()) {
            report.warn("Conditional Access columns", &warning);
        }
    }
    match GraphClient::new(&settings.graph, tokens.clone()) {
        Ok(graph) => {
            let outcome = probe_query_forms(&graph, &settings.graph.event_types).await;
            report.step("Graph sign-in logs", outcome);
        }
        Err(e) => report.step("Graph sign-in logs", Err(e.to_string())),
    }
}

/// One sign-in with the run's query, saying which form of the event-type filter the tenant's
/// Graph accepts: every type in one `any(…)` clause, or — where Graph answers that with 400
/// "Invalid filter clause" — the documented one-type form, which runs then use per event type.
async fn probe_query_forms(
    graph: &GraphClient,
    event_types: &[EventType],
) -> Result<String, String> {
    let readable = |rows: usize| format!("readable ({rows} row returned for $top=1)");
    match graph.probe(event_types).await {
        Ok(rows) if event_types.len() > 1 => Ok(format!(
            "{}; the combined event-type filter is accepted: runs read every event type in one query",
            readable(rows)
        )),
        Ok(rows) => Ok(readable(rows)),
        Err(e) if event_types.len() > 1 && e.is_invalid_filter() => {
            match graph.probe(&event_types[..1]).await {
                Ok(rows) => Ok(format!(
                    "{}; Graph refused the combined event-type filter (400 Invalid filter clause): runs read one query per event type",
                    readable(rows)
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Bytes read from the end of a blob to find the tenant of its newest sign-in.
const TAIL_BYTES: u64 = 64 * 1024;

/// The diagnostic-settings export: the sign-in containers exist (a diagnostic setting writes
/// here), each chosen one is readable, and its sign-ins are of this app's tenant.
async fn check_diagnostic(
    settings: &Settings,
    storage: &DiagnosticStorage,
    tokens: &TokenProvider,
    report: &mut Report,
) {
    let reader = match DiagnosticReader::new(storage, tokens) {
        Ok(reader) => reader,
        Err(e) => return report.step("diagnostic-settings export", Err(e.to_string())),
    };
    let chosen = &settings.graph.event_types;
    let account = storage.account_url.as_str().trim_end_matches('/');
    // Listing containers needs a role or SAS on the account; one on a container cannot, and
    // then each container is tried on its own below.
    let mut missing: BTreeSet<EventType> = BTreeSet::new();
    match reader.sign_in_containers().await {
        Ok(found) => {
            missing.extend(chosen.iter().copied().filter(|t| !found.contains(t)));
            report.step(
                "diagnostic setting",
                containers_verdict(chosen, &found, account),
            );
        }
        Err(SourceError::Denied { .. }) if storage.container.is_some() => {}
        Err(e) => report.step("diagnostic setting", Err(e.to_string())),
    }
    let mut tenants = BTreeSet::new();
    for &event_type in chosen.iter().filter(|t| !missing.contains(t)) {
        let name = event_type.diagnostic_container();
        let blobs = match reader.list(event_type, &Listing::Container).await {
            Ok(blobs) => blobs,
            Err(e) => {
                report.step(name, Err(e.to_string()));
                continue;
            }
        };
        tenants.extend(
            blobs
                .iter()
                .filter_map(|b| b.hour.as_ref())
                .filter_map(|h| prefix_tenant(&h.prefix))
                .map(str::to_ascii_lowercase),
        );
        let Some(newest) = blobs.iter().max_by_key(|b| b.hour.as_ref().map(|h| h.hour)) else {
            report.step(name, Ok("exists; no sign-in archived yet".to_string()));
            continue;
        };
        match newest_tenant(&reader, newest).await {
            Ok(tenant) => {
                tenants.extend(tenant.map(|t| t.to_ascii_lowercase()));
                report.step(name, Ok(describe_blobs(&blobs, newest)));
            }
            Err(e) => report.step(name, Err(e.to_string())),
        }
    }
    let expected = match tokens.with_scope(STORAGE_SCOPE).tenant().await {
        Ok(tenant) => Some(tenant),
        Err(why) => {
            report.warn("tenant", &format!("this app's tenant is unknown ({why})"));
            None
        }
    };
    report.step("tenant", tenant_verdict(expected.as_deref(), &tenants));
}

/// "N hourly blobs, the newest for <hour> (<bytes> bytes)".
fn describe_blobs(blobs: &[ListedBlob], newest: &ListedBlob) -> String {
    let hour = newest
        .hour
        .as_ref()
        .and_then(|h| {
            h.hour
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    format!(
        "readable: {} hourly blob(s), the newest for {hour} ({} bytes)",
        blobs.len(),
        newest.length
    )
}

/// The tenant of the newest sign-in of `blob` (the last line of its last 64 KiB that parses).
async fn newest_tenant(
    reader: &DiagnosticReader,
    blob: &ListedBlob,
) -> Result<Option<String>, SourceError> {
    // The first bytes may be the end of a line: it does not parse and is passed over.
    let mut lines = reader.open(blob, blob.length.saturating_sub(TAIL_BYTES), blob.length)?;
    let mut tenant = None;
    while let Some(piece) = lines.next_piece().await? {
        for line in &piece.lines {
            let record = parse_line(line.bytes, blob.key.event_type)
                .ok()
                .and_then(|mut records| records.next())
                .and_then(Result::ok);
            if let Some(id) = record.as_ref().and_then(|r| r.envelope.tenant_id.as_str()) {
                tenant = Some(id.to_string());
            }
        }
    }
    Ok(tenant)
}

/// Whether the chosen categories' containers exist in the account.
fn containers_verdict(
    chosen: &[EventType],
    found: &[EventType],
    account: &str,
) -> Result<String, String> {
    let names = |types: &[EventType]| {
        types
            .iter()
            .map(|t| t.diagnostic_container())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if found.is_empty() {
        return Err(format!(
            "no insights-logs-* sign-in container in {account}: no diagnostic setting archives \
             sign-in logs to this storage account yet. Create one pointing at it (docs/deploy.md, \
             \"The diagnostic-settings source\"; it takes a Security Administrator or Global \
             Administrator); Azure Monitor creates each category's container with its first \
             sign-in, within minutes"
        ));
    }
    let missing: Vec<EventType> = chosen
        .iter()
        .copied()
        .filter(|t| !found.contains(t))
        .collect();
    if missing.is_empty() {
        return Ok(format!("{} exist", names(chosen)));
    }
    let categories: Vec<&str> = missing.iter().map(|t| t.diagnostic_category()).collect();
    Err(format!(
        "{} missing (present: {}): the diagnostic setting does not archive {} (add the \
         categories to the setting), or no such sign-in has happened since it was created; \
         SIGNINS_EVENT_TYPES reads {}",
        names(&missing),
        names(found),
        categories.join(", "),
        chosen
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(",")
    ))
}

/// Whether the archived sign-ins are of this app's tenant (`expected`, lower case).
fn tenant_verdict(expected: Option<&str>, seen: &BTreeSet<String>) -> Result<String, String> {
    let listed = seen.iter().cloned().collect::<Vec<_>>().join(", ");
    match expected {
        _ if seen.is_empty() => Ok("no archived sign-in to compare yet".to_string()),
        None => Ok(format!("the archived sign-ins are of tenant {listed}")),
        Some(expected) if seen.len() == 1 && seen.contains(expected) => Ok(format!(
            "the archived sign-ins are of this app's tenant {expected}"
        )),
        Some(expected) => Err(format!(
            "blobs of another tenant: the archive holds sign-ins of {listed}, this app's tenant \
             is {expected}. SIGNINS_DIAGNOSTIC_STORAGE points at (or shares) another tenant's \
             export: use the storage account this tenant's diagnostic setting writes to"
        )),
    }
}

/// Graph returns `appliedConditionalAccessPolicies` only to callers that may read Conditional
/// Access data (<https://learn.microsoft.com/graph/api/resources/appliedconditionalaccesspolicy>):
/// a warning when such a column is chosen and the token's `roles` grant neither
/// `Policy.Read.All` nor `Policy.Read.ConditionalAccess`. `None` when no such column is chosen
/// or the permission is there. A token whose claims cannot be read (not a JWT) gets the warning
/// too, worded as a possibility.
fn policy_columns_warning(
    columns: &crate::transform::flatten::Columns,
    token: &str,
) -> Option<String> {
    let chosen = columns.needing_policy_permission();
    if chosen.is_empty() {
        return None;
    }
    const GRANTING: [&str; 2] = ["Policy.Read.All", "Policy.Read.ConditionalAccess"];
    let roles = token_roles(token);
    if roles
        .as_ref()
        .is_some_and(|roles| roles.iter().any(|r| GRANTING.contains(&r.as_str())))
    {
        return None;
    }
    let why = if roles.is_some() {
        "the token's roles include neither Policy.Read.All nor Policy.Read.ConditionalAccess"
    } else {
        "the token's roles could not be read, so Policy.Read.All / Policy.Read.ConditionalAccess may be missing"
    };
    Some(format!(
        "{why}; Graph then omits the applied policies and {} will be empty. Grant the identity \
         Policy.Read.All (or Policy.Read.ConditionalAccess) with admin consent, or drop the column(s)",
        chosen.join(", ")
    ))
}

/// The `roles` claim of a JWT access token (see [`token_claims`]).
fn token_roles(token: &str) -> Option<Vec<String>> {
    let claims = token_claims(token)?;
    Some(match claims.get("roles") {
        Some(serde_json::Value::Array(roles)) => roles
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::flatten::Columns;
    use base64::Engine as _;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"RS256"}"#),
            enc(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn policy_columns_warn_without_a_policy_permission() {
        let ca = Columns::parse("id,conditionalAccessPoliciesApplied").unwrap();
        let plain = Columns::default_set();
        let without =
            jwt(serde_json::json!({"roles": ["AuditLog.Read.All", "Directory.Read.All"]}));
        let with_all = jwt(serde_json::json!({"roles": ["AuditLog.Read.All", "Policy.Read.All"]}));
        let with_ca = jwt(serde_json::json!({"roles": ["Policy.Read.ConditionalAccess"]}));

        let warning = policy_columns_warning(&ca, &without).unwrap();
        assert!(
            warning.contains("conditionalAccessPoliciesApplied"),
            "{warning}"
        );
        assert!(warning.contains("Policy.Read.All"), "{warning}");
        assert_eq!(policy_columns_warning(&ca, &with_all), None);
        assert_eq!(policy_columns_warning(&ca, &with_ca), None);
        assert_eq!(policy_columns_warning(&plain, &without), None);
        // Opaque tokens: warned, never a panic.
        assert!(policy_columns_warning(&ca, "opaque")
            .unwrap()
            .contains("could not be read"));
        assert!(policy_columns_warning(&ca, "a.%%%.c").is_some());
        assert_eq!(token_roles(&jwt(serde_json::json!({}))), Some(vec![]));
        assert_eq!(
            crate::credential::token_claim(&jwt(serde_json::json!({"tid": "T1"})), "tid")
                .as_deref(),
            Some("T1")
        );
        assert_eq!(crate::credential::token_claim("opaque", "tid"), None);
    }

    #[test]
    fn containers_verdict_says_what_is_missing_and_what_to_do() {
        use EventType::*;
        let account = "https://stdiag.blob.core.windows.net";
        let none = containers_verdict(&[InteractiveUser], &[], account).unwrap_err();
        assert!(none.contains("no diagnostic setting archives"), "{none}");
        assert!(none.contains("Security Administrator"), "{none}");
        let some = containers_verdict(
            &[InteractiveUser, NonInteractiveUser],
            &[InteractiveUser, ServicePrincipal],
            account,
        )
        .unwrap_err();
        assert!(
            some.starts_with("insights-logs-noninteractiveusersigninlogs missing")
                && some.contains("does not archive NonInteractiveUserSignInLogs"),
            "{some}"
        );
        let all = containers_verdict(
            &[InteractiveUser],
            &[InteractiveUser, ManagedIdentity],
            account,
        );
        assert_eq!(all, Ok("insights-logs-signinlogs exist".to_string()));
    }

    #[test]
    fn tenant_verdict_fails_on_blobs_of_another_tenant() {
        let seen = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(tenant_verdict(Some("a"), &seen(&[])).is_ok());
        assert!(tenant_verdict(None, &seen(&["a"]))
            .unwrap()
            .contains("tenant a"));
        assert!(tenant_verdict(Some("a"), &seen(&["a"])).is_ok());
        let other = tenant_verdict(Some("a"), &seen(&["a", "b"])).unwrap_err();
        assert!(
            other.starts_with("blobs of another tenant") && other.contains("a, b"),
            "{other}"
        );
        assert!(tenant_verdict(Some("a"), &seen(&["b"])).is_err());
    }
}
