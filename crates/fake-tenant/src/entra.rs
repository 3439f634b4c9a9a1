//! The fake's identity side: the Entra ID v2 token endpoint (client secret and certificate
//! assertions, with real AADSTS errors), the App Service managed-identity endpoint (api-version
//! 2019-08-01) and the JWT-shaped access tokens both issue and Graph checks.
//!
//! Tokens carry `aud`, `iss` (`https://sts.windows.net/<tid>/`), `tid`, `oid`, `appid`, `iat`,
//! `nbf` and `exp` as numbers, which is what Azurite's `--oauth basic` mode checks; they are
//! HS256-signed with a key only this fake knows, so Graph rejects tokens it did not issue.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use sha1::Digest;
use time::OffsetDateTime;

use super::fake_graph::{FakeGraph, GRAPH_RESOURCE, STORAGE_RESOURCE};

/// Entra's tolerance for clock skew on client assertions.
const SKEW_SECS: i64 = 300;

/// A registered app's credential.
pub(crate) enum AppCredential {
    Secret(String),
    Certificate {
        sha1: Vec<u8>,
        sha256: Vec<u8>,
        key: DecodingKey,
    },
}

/// Why a certificate could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("not a PEM or DER certificate")]
    NotACertificate,
    #[error("the certificate's public key is not an RSA key usable for RS256")]
    NotRsa,
}

impl AppCredential {
    pub(crate) fn certificate(der_or_pem: &[u8]) -> Result<Self, CertificateError> {
        let der = match pem::parse_many(der_or_pem) {
            Ok(blocks) if !blocks.is_empty() => blocks
                .into_iter()
                .find(|b| b.tag() == "CERTIFICATE")
                .map(|b| b.into_contents())
                .ok_or(CertificateError::NotACertificate)?,
            _ => der_or_pem.to_vec(),
        };
        if der.first() != Some(&0x30) {
            return Err(CertificateError::NotACertificate);
        }
        let pem_text = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()));
        let key =
            DecodingKey::from_rsa_pem(pem_text.as_bytes()).map_err(|_| CertificateError::NotRsa)?;
        Ok(AppCredential::Certificate {
            sha1: sha1::Sha1::digest(&der).to_vec(),
            sha256: sha2::Sha256::digest(&der).to_vec(),
            key,
        })
    }
}

/// What the fake remembers about a token it issued.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub serial: u64,
}

/// The verdict on a bearer token presented to a resource.
pub(crate) enum TokenCheck {
    /// Accepted; the token's application permissions (`roles`).
    Valid { roles: Vec<String> },
    /// The message for Graph's `InvalidAuthenticationToken` error.
    Invalid(&'static str),
}

/// A stable GUID derived from `input` (object ids of apps and identities).
fn derived_guid(input: &str) -> String {
    let digest = sha2::Sha256::digest(input.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Issues an access token for `resource` to `client_id` (`oid` = `object_id`).
pub(crate) fn issue(
    fake: &FakeGraph,
    resource: &str,
    client_id: &str,
    object_id: &str,
    lifetime_secs: i64,
) -> String {
    let serial = fake
        .inner
        .faults
        .next_serial
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let uti = uuid::Uuid::new_v4().simple().to_string();
    let issued_at = now();
    let tid = &fake.inner.tenant_id;
    let mut roles = vec![
        "AuditLog.Read.All".to_owned(),
        "Directory.Read.All".to_owned(),
    ];
    roles.extend(fake.state().extra_roles.iter().cloned());
    let claims = json!({
        "aud": resource,
        "iss": format!("https://sts.windows.net/{tid}/"),
        // Entra backdates iat/nbf by five minutes to absorb clock skew.
        "iat": issued_at - SKEW_SECS,
        "nbf": issued_at - SKEW_SECS,
        "exp": issued_at + lifetime_secs,
        "aio": "fake",
        "app_displayname": "signin-export",
        "appid": client_id,
        "appidacr": "1",
        "idp": format!("https://sts.windows.net/{tid}/"),
        "idtyp": "app",
        "oid": object_id,
        "roles": roles,
        "sub": object_id,
        "tid": tid,
        "uti": uti,
        "ver": "1.0",
    });
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("fake-graph".into());
    // Encoding a JSON object with an HMAC key cannot fail.
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(&fake.inner.signing_key),
    )
    .unwrap_or_default();
    let mut state = fake.state();
    state.tokens.insert(uti, IssuedToken { serial });
    state.issued += 1;
    token
}

/// Checks an `Authorization: Bearer` header for `audience` the way Graph does.
pub(crate) fn check_bearer(fake: &FakeGraph, headers: &HeaderMap, audience: &str) -> TokenCheck {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return TokenCheck::Invalid("Access token is empty.");
    };
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return TokenCheck::Invalid("Access token is empty.");
    };
    if token.split('.').count() != 3 {
        return TokenCheck::Invalid("IDX14100: JWT is not well formed, there are no dots (.).");
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = match jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(&fake.inner.signing_key),
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(_) => return TokenCheck::Invalid("Access token validation failure."),
    };
    let serial = {
        let state = fake.state();
        match claims["uti"].as_str().and_then(|u| state.tokens.get(u)) {
            Some(t) => t.serial,
            None => return TokenCheck::Invalid("Access token validation failure."),
        }
    };
    let t = now();
    if claims["exp"].as_i64().is_none_or(|exp| exp <= t) {
        return TokenCheck::Invalid("Lifetime validation failed, the token is expired.");
    }
    if claims["nbf"].as_i64().is_none_or(|nbf| nbf > t + SKEW_SECS) {
        return TokenCheck::Invalid("Lifetime validation failed, the token is not yet valid.");
    }
    let aud = claims["aud"].as_str().unwrap_or_default();
    if aud.trim_end_matches('/') != audience {
        return TokenCheck::Invalid("Access token validation failure. Invalid audience.");
    }
    if serial
        < fake
            .inner
            .faults
            .revoked_below
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        return TokenCheck::Invalid(
            "Continuous access evaluation resulted in challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp",
        );
    }
    let roles = claims["roles"]
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    TokenCheck::Valid { roles }
}

/// Whether the fake issues tokens for `resource` (no trailing slash).
fn known_resource(fake: &FakeGraph, resource: &str) -> bool {
    resource == GRAPH_RESOURCE
        || resource == STORAGE_RESOURCE
        || fake.state().extra_resources.contains(resource)
}

/// An Entra ID OAuth error: `{"error","error_description","error_codes",...}`.
fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace_id = uuid::Uuid::new_v4();
    let correlation_id = uuid::Uuid::new_v4();
    let timestamp = OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        timestamp.year(),
        u8::from(timestamp.month()),
        timestamp.day(),
        timestamp.hour(),
        timestamp.minute(),
        timestamp.second()
    );
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id.to_string(),
        "correlation_id": correlation_id.to_string(),
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
}

/// `POST /{tenant}/oauth2/v2.0/token` with the client-credentials grant.
pub(crate) async fn token_handler(
    State(fake): State<FakeGraph>,
    Path(tenant): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(status) = fake.inner.faults.take_token_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return aad_error(
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        );
    }
    let tenant_key = tenant.to_lowercase();
    let Some(tenant_id) = fake.state().tenants.get(&tenant_key).cloned() else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
        );
    };
    let form_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_ok {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(grant_type) = param("grant_type") else {
        return missing_parameter("grant_type");
    };
    if grant_type != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(client_id) = param("client_id") else {
        return missing_parameter("client_id");
    };
    let Some(scope) = param("scope") else {
        return missing_parameter("scope");
    };
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let resource = match scopes.as_slice() {
        [one] => match one.strip_suffix("/.default") {
            Some(resource) => resource.trim_end_matches('/').to_owned(),
            None => return invalid_scope(scope),
        },
        _ => return invalid_scope(scope),
    };
    if !known_resource(&fake, &resource) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!("The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."),
        );
    }
    let object_id = {
        let state = fake.state();
        let Some(credential) = state.apps.get(&(tenant_key.clone(), client_id.to_owned())) else {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
            );
        };
        let secret = param("client_secret");
        let assertion_type = param("client_assertion_type");
        let assertion = param("client_assertion");
        match (secret, assertion) {
            (Some(secret), None) => match credential {
                AppCredential::Secret(expected) if expected == secret => {}
                _ => {
                    return aad_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        7000215,
                        &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
                    )
                }
            },
            (None, Some(assertion)) => {
                if assertion_type != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
                    return aad_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        50027,
                        "Invalid client_assertion_type: expected urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                    );
                }
                let origin = fake.origin(&headers, &uri);
                let audiences = [
                    format!("{origin}/{tenant}/oauth2/v2.0/token"),
                    format!("{origin}/{tenant}/oauth2/token"),
                    format!("{origin}/{tenant}/v2.0"),
                ];
                if let Err(AssertionRejected(code, description)) =
                    verify_assertion(credential, assertion, client_id, &audiences)
                {
                    return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", code, description);
                }
            }
            (Some(_), Some(_)) => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000218,
                    "Only one of 'client_assertion' or 'client_secret' may be sent.",
                )
            }
            (None, None) => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                )
            }
        }
        // The app's service principal id: stable per app and tenant.
        derived_guid(&format!("{tenant_id}/{client_id}"))
    };
    let token = issue(&fake, &resource, client_id, &object_id, 3599);
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }),
    )
}

/// Anything but POST on the token endpoint.
pub(crate) async fn token_wrong_method() -> Response {
    aad_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        900561,
        "The endpoint only accepts POST requests.",
    )
}

fn missing_parameter(name: &str) -> Response {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn invalid_scope(scope: &str) -> Response {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        1002012,
        &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
    )
}

/// Why a client assertion was refused: the AADSTS code and its description.
struct AssertionRejected(u32, &'static str);

fn assertion_error(code: u32, description: &'static str) -> AssertionRejected {
    AssertionRejected(code, description)
}

/// Checks a certificate client assertion: RS256 signature by the registered certificate's key,
/// matching `x5t` / `x5t#S256`, `iss` = `sub` = client id, `aud` = this token endpoint, and a
/// current `exp`/`nbf`.
fn verify_assertion(
    credential: &AppCredential,
    assertion: &str,
    client_id: &str,
    audiences: &[String],
) -> Result<(), AssertionRejected> {
    let AppCredential::Certificate { sha1, sha256, key } = credential else {
        return Err(assertion_error(
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found.] The application has no certificate credential.",
        ));
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return Err(assertion_error(50027, "JWT token is invalid or malformed."));
    };
    if header.alg != Algorithm::RS256 && header.alg != Algorithm::PS256 {
        return Err(assertion_error(
            5002738,
            "Invalid JWT token. 'RS256' or 'PS256' is required.",
        ));
    }
    let thumbprint_matches = |claimed: &Option<String>, expected: &[u8]| {
        claimed.as_deref().is_some_and(|t| {
            URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .ok()
                .as_deref()
                == Some(expected)
                || STANDARD.decode(t).ok().as_deref() == Some(expected)
        })
    };
    if header.x5t.is_none() && header.x5t_s256.is_none() {
        return Err(assertion_error(
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: 'none']",
        ));
    }
    if !(thumbprint_matches(&header.x5t, sha1) || thumbprint_matches(&header.x5t_s256, sha256)) {
        return Err(assertion_error(
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: does not match a registered certificate]",
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = match jsonwebtoken::decode::<Value>(assertion, key, &validation) {
        Ok(data) => data.claims,
        Err(_) => {
            return Err(assertion_error(
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value.]",
            ))
        }
    };
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err(assertion_error(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        ));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => audiences.contains(a),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(assertion_error(
            700212,
            "The client assertion's audience claim does not match the token endpoint of this tenant.",
        ));
    }
    let t = now();
    let exp_ok = claims["exp"]
        .as_i64()
        .is_some_and(|exp| exp + SKEW_SECS > t);
    let nbf_ok = claims["nbf"]
        .as_i64()
        .is_none_or(|nbf| nbf - SKEW_SECS <= t);
    if !exp_ok || !nbf_ok {
        return Err(assertion_error(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

/// App Service's managed-identity error body.
fn mi_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "statusCode": status.as_u16(),
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
        }),
    )
}

/// `GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…]` with `X-IDENTITY-HEADER`.
pub(crate) async fn managed_identity_handler(
    State(fake): State<FakeGraph>,
    request: Request,
) -> Response {
    let headers = request.headers();
    match headers.get("x-identity-header") {
        None => {
            return mi_error(
                StatusCode::BAD_REQUEST,
                "The request is missing the X-IDENTITY-HEADER header.",
            )
        }
        Some(v) if v.as_bytes() != fake.inner.mi_header.as_bytes() => {
            return mi_error(
                StatusCode::UNAUTHORIZED,
                "The X-IDENTITY-HEADER value is not valid.",
            )
        }
        Some(_) => {}
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match param("api-version").as_deref() {
        Some("2019-08-01") => {}
        Some(other) => {
            return mi_error(
                StatusCode::BAD_REQUEST,
                &format!("The api-version '{other}' is not supported. Use 2019-08-01."),
            )
        }
        None => {
            return mi_error(
                StatusCode::BAD_REQUEST,
                "The api-version parameter is required.",
            )
        }
    }
    let Some(resource) = param("resource").filter(|r| !r.is_empty()) else {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "The resource parameter is required.",
        );
    };
    if resource.ends_with("/.default") {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "The resource parameter is a resource URI, not a scope: remove '/.default'.",
        );
    }
    if let Some(status) = fake.inner.faults.take_token_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return mi_error(
            status,
            "The managed identity endpoint is temporarily unavailable.",
        );
    }
    let client_id = match param("client_id") {
        Some(id) => {
            if !fake.state().user_assigned.contains(&id) {
                return mi_error(
                    StatusCode::BAD_REQUEST,
                    "Unable to load the proper Managed Identity.",
                );
            }
            id
        }
        None => {
            if param("object_id").is_some()
                || param("principal_id").is_some()
                || param("mi_res_id").is_some()
            {
                return mi_error(
                    StatusCode::BAD_REQUEST,
                    "Unable to load the proper Managed Identity.",
                );
            }
            fake.inner.mi_client_id.clone()
        }
    };
    if !known_resource(&fake, resource.trim_end_matches('/')) {
        return mi_error(
            StatusCode::BAD_REQUEST,
            &format!("AADSTS500011: The resource principal named {resource} was not found in the tenant named {}.", fake.inner.tenant_id),
        );
    }
    let object_id = if client_id == fake.inner.mi_client_id {
        fake.inner.mi_principal_id.clone()
    } else {
        derived_guid(&client_id)
    };
    let token = issue(&fake, &resource, &client_id, &object_id, 3600);
    let expires_on = now() + 3600;
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }),
    )
}
