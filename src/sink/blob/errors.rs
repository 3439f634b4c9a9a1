//! Error handling of the Blob sink: secret redaction (every message leaving the sink passes
//! through [`redact`]) and the classification of Azure Storage failures into [`SinkError`]s.

use azure_core::error::ErrorKind;

use super::BlobAuth;
use crate::sink::SinkError;

/// Placeholder written where a secret was.
const REDACTED: &str = "<redacted>";

/// Removes secrets from free text: the query string of every URL (a SAS lives there), any
/// `sig=` value, `Bearer` tokens and JWT-shaped strings. Used on every message the sink returns.
pub fn redact(text: &str) -> String {
    let text = strip_url_queries(text);
    let text = mask_after(&text, "sig=", |c| c == '&' || is_delimiter(c));
    let text = mask_after(&text, "bearer ", is_delimiter);
    mask_jwts(&text)
}

/// [`redact`], then every literal form of the SAS of `auth` (raw, its signature raw and
/// percent-encoded): the last line of defence for one client's own secret.
pub fn scrub(text: &str, auth: &BlobAuth) -> String {
    let mut text = redact(text);
    if let BlobAuth::Sas(sas) = auth {
        let raw = sas.expose().trim_start_matches('?');
        let mut secrets = vec![raw.to_string()];
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            if key == "sig" && value.len() >= 8 {
                secrets.push(value.to_string());
                secrets.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
            }
        }
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// Characters that end a URL or a token in free text.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\''
                | '<'
                | '>'
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | ','
                | ';'
                | '`'
                | '|'
                | '\\'
        )
}

/// `scheme://host/path?query` → `scheme://host/path?<redacted>`, for every URL in `text`.
fn strip_url_queries(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while pos < text.len() {
        let next = ["https://", "http://"]
            .iter()
            .filter_map(|scheme| lower[pos..].find(scheme).map(|i| pos + i))
            .min();
        let Some(start) = next else {
            out.push_str(&text[pos..]);
            break;
        };
        let end = text[start..]
            .find(is_delimiter)
            .map_or(text.len(), |i| start + i);
        let url = &text[start..end];
        out.push_str(&text[pos..start]);
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..=q]);
                out.push_str(REDACTED);
            }
            None => out.push_str(url),
        }
        pos = end;
    }
    out
}

/// Replaces what follows each (ASCII case-insensitive) `marker` up to `stop` with the placeholder.
fn mask_after(text: &str, marker: &str, stop: fn(char) -> bool) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(marker) {
        let value_start = pos + i + marker.len();
        let value_end = text[value_start..]
            .find(stop)
            .map_or(text.len(), |j| value_start + j);
        out.push_str(&text[pos..value_start]);
        if value_end > value_start {
            out.push_str(REDACTED);
        }
        pos = value_end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Replaces `eyJ…` strings of base64url characters and dots (JWTs) with the placeholder.
fn mask_jwts(text: &str) -> String {
    let is_jwt_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=');
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(i) = text[pos..].find("eyJ") {
        let start = pos + i;
        let end = text[start..]
            .find(|c: char| !is_jwt_char(c))
            .map_or(text.len(), |j| start + j);
        out.push_str(&text[pos..start]);
        if text[start..end].contains('.') {
            out.push_str(REDACTED);
        } else {
            out.push_str(&text[start..end]);
        }
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// How a failed storage request should be reported, decided from its status, error code and
/// transport kind alone (pure, so it is unit-tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The identity or SAS may not do this.
    Denied,
    /// Network failure, timeout, throttling or 5xx, after the retry policy gave up.
    Unavailable,
    /// A token could not be obtained.
    Credential,
    /// Anything else (4xx the sink does not expect, malformed responses, ...).
    Other,
}

/// Storage error codes that mean "not allowed", whatever the status.
const DENIED_CODES: &[&str] = &[
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationProtocolMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "AuthorizationSourceIPMismatch",
    "InsufficientAccountPermissions",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
    "KeyBasedAuthenticationNotPermitted",
];

/// Classifies a failure: `status`/`code` for HTTP responses, `transport` for errors without one.
pub fn classify(status: Option<u16>, code: Option<&str>, kind: Option<&ErrorKind>) -> Class {
    if code.is_some_and(|c| DENIED_CODES.contains(&c)) {
        return Class::Denied;
    }
    match status {
        Some(401 | 403) => Class::Denied,
        Some(408 | 429) => Class::Unavailable,
        Some(s) if s >= 500 => Class::Unavailable,
        Some(_) => Class::Other,
        None => match kind {
            Some(ErrorKind::Io | ErrorKind::Connection) => Class::Unavailable,
            Some(ErrorKind::Credential) => Class::Credential,
            _ => Class::Other,
        },
    }
}

/// The HTTP status and storage error code of an SDK error, if it is an HTTP response.
pub fn status_and_code(err: &azure_core::Error) -> (Option<u16>, Option<String>) {
    match err.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => (Some(u16::from(*status)), error_code.clone()),
        _ => (None, None),
    }
}

/// Whether `err` is an HTTP response with this status and (if given) one of these error codes.
pub fn is_status(err: &azure_core::Error, status: u16, codes: &[&str]) -> bool {
    let (s, code) = status_and_code(err);
    s == Some(status) && (codes.is_empty() || code.as_deref().is_some_and(|c| codes.contains(&c)))
}

/// A one-line, redacted description of an SDK error: HTTP status, storage error code and the
/// service's message for responses; the error chain otherwise.
pub fn describe(err: &azure_core::Error) -> String {
    let text = match err.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let mut text = format!("HTTP {}", u16::from(*status));
            if let Some(code) = error_code {
                text.push_str(&format!(" {code}"));
            }
            let message = raw_response
                .as_ref()
                .and_then(|raw| xml_message(raw.body()))
                .unwrap_or_else(|| status.canonical_reason().to_string());
            text.push_str(&format!(": {message}"));
            text
        }
        _ => {
            let mut parts: Vec<String> = vec![err.to_string()];
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                let part = inner.to_string();
                if !parts.iter().any(|p| p.contains(&part)) {
                    parts.push(part);
                }
                source = inner.source();
            }
            parts.join(": ")
        }
    };
    redact(&text)
}

/// First line of the `<Message>` of a storage error body.
fn xml_message(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    let start = body.find("<Message>")? + "<Message>".len();
    let end = body[start..].find("</Message>")? + start;
    let message = body[start..end].lines().next()?.trim();
    (!message.is_empty()).then(|| message.to_string())
}

/// Builds the sink error for a failed operation on `what`. `denied_hint` says which role or SAS
/// permission is missing; `scrub` removes this sink's own secrets as a last line of defence.
pub fn to_sink_error(
    what: &str,
    err: &azure_core::Error,
    denied_hint: &str,
    scrub: impl Fn(String) -> String,
) -> SinkError {
    let (status, code) = status_and_code(err);
    let detail = scrub(describe(err));
    match classify(status, code.as_deref(), Some(err.kind())) {
        Class::Denied => SinkError::Denied {
            what: what.to_string(),
            hint: format!("{denied_hint} ({detail})"),
        },
        Class::Credential => SinkError::Denied {
            what: what.to_string(),
            hint: scrub(format!(
                "could not get a token for Azure Storage (https://storage.azure.com/.default): {detail}; \
                 check that the managed identity is enabled or the credential settings are right"
            )),
        },
        Class::Unavailable => SinkError::Unavailable {
            what: what.to_string(),
            detail,
        },
        Class::Other => SinkError::Other(format!("{what}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAS: &str =
        "sv=2021-08-06&ss=b&srt=sco&sp=rwdlacup&se=2030-01-01T00%3A00%3A00Z&sig=AbC%2Bdef%3D";

    #[test]
    fn url_queries_are_stripped() {
        let text = format!(
            "error sending request for url (https://acct.blob.core.windows.net/c/daily/x.csv?comp=block&{SAS}): connection refused"
        );
        let out = redact(&text);
        assert_eq!(
            out,
            "error sending request for url (https://acct.blob.core.windows.net/c/daily/x.csv?<redacted>): connection refused"
        );
    }

    #[test]
    fn several_urls_and_uppercase_schemes() {
        let out = redact("a HTTP://h/x?sig=1 b http://h/y c https://h/z?q=2");
        assert_eq!(
            out,
            "a HTTP://h/x?<redacted> b http://h/y c https://h/z?<redacted>"
        );
    }

    #[test]
    fn bare_sas_signature_is_masked() {
        let out = redact(&format!("the SAS {SAS} was rejected"));
        assert!(!out.contains("AbC"), "{out}");
        assert!(out.contains("sig=<redacted>"), "{out}");
        assert!(out.contains("sp=rwdlacup"), "{out}");
    }

    #[test]
    fn bearer_tokens_and_jwts_are_masked() {
        let jwt = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIn0.c2ln";
        let out = redact(&format!("header Authorization: Bearer {jwt}; raw {jwt}."));
        assert!(!out.contains("eyJhbGci"), "{out}");
        assert_eq!(
            out,
            "header Authorization: Bearer <redacted>; raw <redacted>"
        );
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        let text = "HTTP 404 BlobNotFound: The specified blob does not exist. eyJ alone";
        assert_eq!(redact(text), text);
    }

    #[test]
    fn non_ascii_text_survives() {
        let text = "Zürich — https://h/ü?sig=x ok";
        assert_eq!(redact(text), "Zürich — https://h/ü?<redacted> ok");
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(Some(403), Some("AuthorizationPermissionMismatch"), None),
            Class::Denied
        );
        assert_eq!(classify(Some(403), None, None), Class::Denied);
        assert_eq!(
            classify(Some(400), Some("AuthenticationFailed"), None),
            Class::Denied
        );
        assert_eq!(classify(Some(401), None, None), Class::Denied);
        assert_eq!(
            classify(Some(503), Some("ServerBusy"), None),
            Class::Unavailable
        );
        assert_eq!(classify(Some(500), None, None), Class::Unavailable);
        assert_eq!(classify(Some(429), None, None), Class::Unavailable);
        assert_eq!(classify(Some(408), None, None), Class::Unavailable);
        assert_eq!(
            classify(Some(404), Some("BlobNotFound"), None),
            Class::Other
        );
        assert_eq!(
            classify(Some(412), Some("ConditionNotMet"), None),
            Class::Other
        );
        assert_eq!(
            classify(None, None, Some(&ErrorKind::Io)),
            Class::Unavailable
        );
        assert_eq!(
            classify(None, None, Some(&ErrorKind::Connection)),
            Class::Unavailable
        );
        assert_eq!(
            classify(None, None, Some(&ErrorKind::Credential)),
            Class::Credential
        );
        assert_eq!(
            classify(None, None, Some(&ErrorKind::DataConversion)),
            Class::Other
        );
    }

    #[test]
    fn xml_message_takes_the_first_line() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.\nRequestId:1\nTime:2</Message></Error>";
        assert_eq!(
            xml_message(body).as_deref(),
            Some("This request is not authorized to perform this operation using this permission.")
        );
        assert_eq!(xml_message(b"not xml"), None);
    }

    #[test]
    fn transport_errors_become_unavailable_and_redacted() {
        let err = azure_core::Error::with_message(
            ErrorKind::Io,
            format!("error sending request for url (http://127.0.0.1:1/devstoreaccount1/c?{SAS})"),
        );
        let sink_err = to_sink_error("daily/2026-01-01.csv", &err, "hint", |s| s);
        let text = sink_err.to_string();
        assert!(matches!(sink_err, SinkError::Unavailable { .. }), "{text}");
        assert!(!text.contains("sig="), "{text}");
        assert!(!text.contains("AbC"), "{text}");
    }
}
