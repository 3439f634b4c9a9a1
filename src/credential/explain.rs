//! Token failures turned into what the admin should change: AADSTS codes, HTTP statuses and
//! connection errors mapped to [`AuthError`]s, with the secret masked from every message.

use super::{secret_of, AuthError, AuthOptions};
use crate::config::AuthMode;

/// The error and its sources as one line, with `secret` masked and the length bounded.
pub(super) fn chain_text(error: &azure_core::Error, secret: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        let text = text
            .split(azure_troubleshooting_marker())
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    let mut text = parts.join(": ").replace(['\r', '\n'], " ");
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    if text.chars().count() > 600 {
        text = text.chars().take(600).collect::<String>() + "…";
    }
    text
}

pub(super) fn azure_troubleshooting_marker() -> &'static str {
    "To troubleshoot, visit"
}

/// The AADSTS codes in an error: from the response's `error_codes` and from the text.
pub(super) fn aadsts_codes(error: &azure_core::Error) -> Vec<String> {
    let mut codes = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(azure) = e.downcast_ref::<azure_core::Error>() {
            if let azure_core::error::ErrorKind::HttpResponse {
                error_code: Some(list),
                ..
            } = azure.kind()
            {
                codes.extend(
                    list.split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty()),
                );
            }
        }
        let text = e.to_string();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("AADSTS") {
            let digits: String = rest[at + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                codes.push(digits);
            }
            rest = &rest[at + 6..];
        }
        current = e.source();
    }
    codes.dedup();
    codes
}

/// Whether the error is "could not connect" rather than an answer.
pub(super) fn is_connection(error: &azure_core::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(azure) = e.downcast_ref::<azure_core::Error>() {
            if matches!(azure.kind(), azure_core::error::ErrorKind::Connection) {
                return true;
            }
        }
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        current = e.source();
    }
    false
}

pub(super) fn http_status(error: &azure_core::Error) -> Option<u16> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(azure) = e.downcast_ref::<azure_core::Error>() {
            if let azure_core::error::ErrorKind::HttpResponse { status, .. } = azure.kind() {
                return Some(u16::from(*status));
            }
        }
        current = e.source();
    }
    None
}

/// Maps a credential error to what the admin should change.
pub(super) fn explain(
    auth: &AuthMode,
    options: &AuthOptions,
    error: &azure_core::Error,
) -> AuthError {
    let detail = chain_text(error, secret_of(auth));
    let codes = aadsts_codes(error);
    let has = |code: &str| codes.iter().any(|c| c == code);
    let first_code = codes.first().map(|c| format!("AADSTS{c}"));
    match auth {
        AuthMode::ManagedIdentity { client_id } => {
            if is_connection(error) && http_status(error).is_none() {
                return AuthError::ManagedIdentityUnavailable {
                    reason: format!("the identity endpoint could not be reached ({detail})"),
                };
            }
            match (http_status(error), client_id) {
                (Some(400), Some(id)) => AuthError::ManagedIdentityRejected {
                    detail: format!(
                        "no user-assigned identity with client id '{id}' is attached to this app \
                         (AZURE_CLIENT_ID selects it; unset AZURE_CLIENT_ID to use the system-assigned identity)"
                    ),
                },
                (Some(400), None) => AuthError::ManagedIdentityRejected {
                    detail: "no system-assigned identity is enabled on this app (Identity blade → System assigned → On), \
                             or set AZURE_CLIENT_ID to a user-assigned identity's client id"
                        .to_string(),
                },
                _ => AuthError::ManagedIdentityRejected { detail },
            }
        }
        AuthMode::ClientSecret {
            tenant_id,
            client_id,
            ..
        }
        | AuthMode::Certificate {
            tenant_id,
            client_id,
            ..
        } => {
            if has("7000215") {
                return AuthError::InvalidSecret;
            }
            if has("7000222") {
                return AuthError::ExpiredSecret;
            }
            if has("90002") || has("900023") {
                let code = if has("90002") {
                    "AADSTS90002"
                } else {
                    "AADSTS900023"
                };
                return AuthError::UnknownTenant {
                    tenant: tenant_id.clone(),
                    code: code.to_string(),
                };
            }
            if has("700016") {
                return AuthError::UnknownApp {
                    tenant: tenant_id.clone(),
                    client_id: client_id.clone(),
                };
            }
            if let AuthMode::Certificate { path, .. } = auth {
                for code in ["700027", "700024", "700023", "50012"] {
                    if has(code) {
                        return AuthError::CertificateRejected {
                            path: path.clone(),
                            code: format!("AADSTS{code}"),
                        };
                    }
                }
            }
            if codes.is_empty() && is_connection(error) && http_status(error).is_none() {
                return AuthError::Unreachable {
                    authority: options
                        .authority()
                        .as_str()
                        .trim_end_matches('/')
                        .to_string(),
                    detail,
                };
            }
            AuthError::Rejected {
                code: first_code,
                detail,
            }
        }
    }
}
