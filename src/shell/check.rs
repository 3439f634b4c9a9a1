//! `check`: the settings, a Graph token, a one-row read of the sign-in log and a write probe of
//! the destination, each with a plain-words explanation when it fails.

use super::{load_settings, CommandError};
use crate::cli::CommonArgs;
use crate::credential::TokenProvider;
use crate::graph::client::GraphClient;

pub(super) async fn check(args: CommonArgs) -> Result<(), CommandError> {
    let settings = load_settings(&args, None)?;
    println!("Settings:");
    for (name, value) in settings.describe() {
        println!("  {name} = {value}");
    }
    let mut failures = 0;
    let mut step = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("[ ok ] {name}: {detail}"),
        Err(explanation) => {
            failures += 1;
            println!("[FAIL] {name}: {explanation}");
        }
    };

    let tokens = match TokenProvider::new(&settings.graph.auth) {
        Ok(tokens) => tokens,
        Err(e) => {
            step("credential", Err(e.to_string()));
            return Err(CommandError::Failed("check failed".into()));
        }
    };
    let token = tokens.token().await;
    step(
        "Graph token",
        token
            .as_ref()
            .map(|_| "acquired".to_string())
            .map_err(|e| e.to_string()),
    );
    if let Ok(token) = &token {
        if let Some(warning) = policy_columns_warning(&settings.columns, token.expose()) {
            println!("[warn] Conditional Access columns: {warning}");
        }
    }
    match GraphClient::new(&settings.graph, tokens.clone()) {
        Ok(graph) => step(
            "Graph sign-in logs",
            graph
                .probe()
                .await
                .map(|rows| format!("readable ({rows} row returned for $top=1)"))
                .map_err(|e| e.to_string()),
        ),
        Err(e) => step("Graph sign-in logs", Err(e.to_string())),
    }
    match crate::sink::open(&settings.destination, settings.preset, &tokens) {
        Ok(sink) => step(
            "destination",
            sink.probe()
                .await
                .map(|()| format!("{} is writable", sink.describe()))
                .map_err(|e| e.to_string()),
        ),
        Err(e) => step("destination", Err(e.to_string())),
    }
    if failures > 0 {
        return Err(CommandError::Failed(format!(
            "{failures} check(s) failed; see above"
        )));
    }
    Ok(())
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

/// The `roles` claim of a JWT access token, read without verifying it (only to explain what the
/// token grants; Graph does the verifying). `None` if the token is not a readable JWT.
fn token_roles(token: &str) -> Option<Vec<String>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
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
    }
}
