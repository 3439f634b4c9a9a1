//! Tokens for Microsoft Graph (and, with another scope, Blob Storage): builds the `azure_identity`
//! credential for the configured [`AuthMode`] — managed identity, client secret, or a PEM
//! certificate signed into a client assertion here — and turns token failures into messages an
//! admin can act on. Neither the secret nor a token ever appears in an error, log or `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions};
use azure_identity::{
    ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};
use url::Url;

use crate::config::{AuthMode, Secret};

mod assertion;
mod explain;

pub use assertion::CertificateAssertion;
use explain::{chain_text, explain};

/// The scope of Microsoft Graph in the global cloud.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The scope of Azure Blob Storage (the sink's tokens).
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Entra ID in the global cloud.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Longest a token request may take, retries included, before it is reported as hanging.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);
/// The VM metadata endpoint that managed identity falls back to outside App Service.
const IMDS_ADDRESS: &str = "169.254.169.254:80";

/// Why no token could be had. Every message names what to change; none contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "AZURE_CLIENT_SECRET was rejected by Entra ID (AADSTS7000215: invalid client secret): use the \
         secret's Value (not its Secret ID) from the app registration's \"Certificates & secrets\" page, \
         or create a new secret"
    )]
    InvalidSecret,
    #[error(
        "AZURE_CLIENT_SECRET has expired (AADSTS7000222): create a new client secret on the app \
         registration and update the setting"
    )]
    ExpiredSecret,
    #[error(
        "AZURE_TENANT_ID '{tenant}' is not a known Entra ID tenant ({code}): use the \"Directory (tenant) \
         ID\" from the app registration's Overview page"
    )]
    UnknownTenant { tenant: String, code: String },
    #[error(
        "AZURE_CLIENT_ID '{client_id}' is not an application in tenant '{tenant}' (AADSTS700016): use the \
         \"Application (client) ID\" of the app registration, and check that it lives in AZURE_TENANT_ID \
         (multi-tenant apps need admin consent in that tenant)"
    )]
    UnknownApp { tenant: String, client_id: String },
    #[error(
        "Entra ID did not accept the certificate from {path} ({code}): upload its public part (the \
         CERTIFICATE block) under the app registration's \"Certificates & secrets\", and check the \
         machine's clock"
    )]
    CertificateRejected { path: PathBuf, code: String },
    #[error("AZURE_CLIENT_CERTIFICATE_PATH {path}: {reason}")]
    CertificateFile { path: PathBuf, reason: String },
    #[error(
        "managed identity is not available: {reason}. On Azure Functions / App Service enable the \
         identity (Identity blade); elsewhere set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
         AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH)"
    )]
    ManagedIdentityUnavailable { reason: String },
    #[error("the managed identity endpoint refused the token request: {detail}")]
    ManagedIdentityRejected { detail: String },
    #[error("the token endpoint {authority} could not be reached (network, proxy or AZURE_AUTHORITY_HOST?): {detail}")]
    Unreachable { authority: String, detail: String },
    #[error("Entra ID refused the token request{}: {detail}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Rejected {
        code: Option<String>,
        detail: String,
    },
    #[error("no token from {source_name} after {}s; is the endpoint reachable?", after.as_secs())]
    Timeout {
        source_name: &'static str,
        after: Duration,
    },
    #[error("cannot set up the {source_name} credential: {detail}")]
    Setup {
        source_name: &'static str,
        detail: String,
    },
}

/// Where tokens come from, besides the [`AuthMode`]: today only the authority host.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    /// Entra ID authority (`AZURE_AUTHORITY_HOST`); `None` = the global cloud.
    pub authority_host: Option<Url>,
}

impl AuthOptions {
    /// Reads `AZURE_AUTHORITY_HOST` (already validated by the configuration).
    pub fn from_env() -> AuthOptions {
        let authority_host = std::env::var("AZURE_AUTHORITY_HOST")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .and_then(|v| Url::parse(v.trim()).ok());
        AuthOptions { authority_host }
    }

    fn authority(&self) -> Url {
        match &self.authority_host {
            Some(url) => url.clone(),
            None => Url::parse(PUBLIC_AUTHORITY).unwrap_or_else(|_| unreachable!("constant URL")),
        }
    }
}

/// Hands out bearer tokens for one scope. Cheap to clone; clones share the credential (and its
/// token cache).
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<Inner>,
    scope: String,
}

struct Inner {
    source: Source,
    current: RwLock<Arc<dyn TokenCredential>>,
    /// Managed identity only: the endpoint was found reachable once (checked before the first token).
    endpoint_checked: AtomicBool,
}

enum Source {
    Built {
        auth: AuthMode,
        options: AuthOptions,
    },
    Fixed,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("source", &self.source_name())
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenProvider {
    /// Builds the credential for `auth`, with `AZURE_AUTHORITY_HOST` from the environment.
    pub fn new(auth: &AuthMode) -> Result<TokenProvider, AuthError> {
        TokenProvider::with_options(auth, AuthOptions::from_env())
    }

    /// Builds the credential for `auth` with explicit options (tests, national clouds).
    pub fn with_options(auth: &AuthMode, options: AuthOptions) -> Result<TokenProvider, AuthError> {
        let credential = build_credential(auth, &options)?;
        Ok(TokenProvider {
            inner: Arc::new(Inner {
                source: Source::Built {
                    auth: auth.clone(),
                    options,
                },
                current: RwLock::new(credential),
                endpoint_checked: AtomicBool::new(false),
            }),
            scope: GRAPH_SCOPE.to_string(),
        })
    }

    /// A provider that always returns `token` (the demo against the built-in fake).
    pub fn fixed(token: Secret) -> TokenProvider {
        let credential: Arc<dyn TokenCredential> = Arc::new(FixedCredential(token));
        TokenProvider {
            inner: Arc::new(Inner {
                source: Source::Fixed,
                current: RwLock::new(credential),
                endpoint_checked: AtomicBool::new(false),
            }),
            scope: GRAPH_SCOPE.to_string(),
        }
    }

    /// The same credential for another scope (e.g. [`STORAGE_SCOPE`]).
    pub fn with_scope(&self, scope: &str) -> TokenProvider {
        TokenProvider {
            inner: Arc::clone(&self.inner),
            scope: scope.to_string(),
        }
    }

    /// The scope tokens are requested for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The credential itself (for SDK clients such as the blob sink's).
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        match self.inner.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// A short name of where tokens come from: "client secret", "managed identity", ….
    pub fn source_name(&self) -> &'static str {
        match &self.inner.source {
            Source::Fixed => "fixed token",
            Source::Built { auth, .. } => mode_name(auth),
        }
    }

    /// The app's tenant when the settings name it (client secret, certificate), lower case;
    /// no request is sent.
    pub fn configured_tenant(&self) -> Option<String> {
        match &self.inner.source {
            Source::Built {
                auth:
                    AuthMode::ClientSecret { tenant_id, .. } | AuthMode::Certificate { tenant_id, .. },
                ..
            } => Some(tenant_id.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// The app's tenant, lower case: the one its registration names (client secret,
    /// certificate), or the `tid` of a token for this provider's scope (managed identity).
    pub async fn tenant(&self) -> Result<String, String> {
        if let Some(tenant) = self.configured_tenant() {
            return Ok(tenant);
        }
        let token = self
            .token()
            .await
            .map_err(|e| format!("no token to read it from: {e}"))?;
        token_claim(token.expose(), "tid")
            .map(|tid| tid.to_ascii_lowercase())
            .ok_or_else(|| "the token has no readable tid claim".to_string())
    }

    /// A bearer token for the scope (from the SDK's cache while it is fresh).
    pub async fn token(&self) -> Result<Secret, AuthError> {
        self.fetch(self.credential()).await
    }

    /// A new token, bypassing any cache (after Graph answered 401): the credential is rebuilt.
    pub async fn refresh(&self) -> Result<Secret, AuthError> {
        let Source::Built { auth, options } = &self.inner.source else {
            return self.token().await;
        };
        let fresh = build_credential(auth, options)?;
        match self.inner.current.write() {
            Ok(mut guard) => *guard = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        tracing::debug!(
            source = self.source_name(),
            "token credential rebuilt after 401"
        );
        self.fetch(fresh).await
    }

    async fn fetch(&self, credential: Arc<dyn TokenCredential>) -> Result<Secret, AuthError> {
        if let Source::Built {
            auth: AuthMode::ManagedIdentity { .. },
            ..
        } = &self.inner.source
        {
            if !self.inner.endpoint_checked.load(Ordering::Relaxed) {
                check_imds_reachable().await?;
                self.inner.endpoint_checked.store(true, Ordering::Relaxed);
            }
        }
        let scopes = [self.scope.as_str()];
        let request = credential.get_token(&scopes, None::<TokenRequestOptions<'_>>);
        match tokio::time::timeout(TOKEN_TIMEOUT, request).await {
            Err(_) => Err(AuthError::Timeout {
                source_name: self.source_name(),
                after: TOKEN_TIMEOUT,
            }),
            Ok(Err(error)) => Err(self.explain(&error)),
            Ok(Ok(token)) => Ok(Secret::new(token.token.secret())),
        }
    }

    fn explain(&self, error: &azure_core::Error) -> AuthError {
        match &self.inner.source {
            Source::Fixed => AuthError::Rejected {
                code: None,
                detail: chain_text(error, None),
            },
            Source::Built { auth, options } => explain(auth, options, error),
        }
    }
}

fn mode_name(auth: &AuthMode) -> &'static str {
    match auth {
        AuthMode::ManagedIdentity { .. } => "managed identity",
        AuthMode::ClientSecret { .. } => "client secret",
        AuthMode::Certificate { .. } => "certificate",
    }
}

/// Bounded retries inside the SDK pipeline: token requests are small and a dead endpoint should
/// be reported in seconds, not minutes.
fn client_options(options: &AuthOptions) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = options
        .authority()
        .as_str()
        .trim_end_matches('/')
        .to_string();
    ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(500),
            max_retries: 3,
            max_total_elapsed: azure_core::time::Duration::seconds(20),
            max_delay: azure_core::time::Duration::seconds(5),
        }),
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..ClientOptions::default()
    }
}

fn build_credential(
    auth: &AuthMode,
    options: &AuthOptions,
) -> Result<Arc<dyn TokenCredential>, AuthError> {
    let setup = |error: azure_core::Error| AuthError::Setup {
        source_name: mode_name(auth),
        detail: chain_text(&error, secret_of(auth)),
    };
    match auth {
        AuthMode::ManagedIdentity { client_id } => {
            let mut mi = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..ManagedIdentityCredentialOptions::default()
            };
            mi.client_options.retry = client_options(options).retry;
            let credential = ManagedIdentityCredential::new(Some(mi)).map_err(setup)?;
            Ok(credential)
        }
        AuthMode::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => {
            let credential = ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                azure_core::credentials::Secret::new(secret.expose().to_string()),
                Some(ClientSecretCredentialOptions {
                    client_options: client_options(options),
                }),
            )
            .map_err(setup)?;
            Ok(credential)
        }
        AuthMode::Certificate {
            tenant_id,
            client_id,
            path,
        } => {
            let audience = token_endpoint(options, tenant_id).ok_or_else(|| AuthError::Setup {
                source_name: "certificate",
                detail: format!("AZURE_TENANT_ID '{tenant_id}' cannot be part of a URL"),
            })?;
            let assertion = CertificateAssertion::load(path, client_id, audience.as_str())?;
            let credential = ClientAssertionCredential::new(
                tenant_id.clone(),
                client_id.clone(),
                assertion,
                Some(ClientAssertionCredentialOptions {
                    client_options: client_options(options),
                }),
            )
            .map_err(setup)?;
            Ok(credential)
        }
    }
}

/// `{authority}/{tenant}/oauth2/v2.0/token`: where tokens are requested, and the `aud` of a
/// client assertion.
pub fn token_endpoint(options: &AuthOptions, tenant_id: &str) -> Option<Url> {
    if tenant_id.is_empty()
        || !tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return None;
    }
    options
        .authority()
        .join(&format!("/{tenant_id}/oauth2/v2.0/token"))
        .ok()
}

fn secret_of(auth: &AuthMode) -> Option<&str> {
    match auth {
        AuthMode::ClientSecret { secret, .. } => Some(secret.expose()),
        _ => None,
    }
}

/// Outside App Service (`IDENTITY_ENDPOINT` unset) the SDK falls back to the VM metadata
/// endpoint and retries it for over a minute; on a laptop that endpoint does not exist. A quick
/// TCP connect tells the two apart.
async fn check_imds_reachable() -> Result<(), AuthError> {
    let app_service = std::env::var_os("IDENTITY_ENDPOINT").is_some_and(|v| !v.is_empty())
        || std::env::var_os("MSI_ENDPOINT").is_some_and(|v| !v.is_empty());
    if app_service {
        return Ok(());
    }
    let connect = tokio::net::TcpStream::connect(IMDS_ADDRESS);
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(AuthError::ManagedIdentityUnavailable {
            reason: "IDENTITY_ENDPOINT is not set (not running on Azure Functions / App Service) and the \
                     VM metadata endpoint 169.254.169.254 does not answer"
                .to_string(),
        }),
    }
}

/// A credential that always hands out the same token.
struct FixedCredential(Secret);

impl fmt::Debug for FixedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FixedCredential(***)")
    }
}

#[async_trait::async_trait]
impl TokenCredential for FixedCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let expires =
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(24);
        Ok(AccessToken::new(self.0.expose().to_string(), expires))
    }
}

/// The claims of a JWT access token, read without verifying it (only to explain what the token
/// grants and whose it is; the service does the verifying). `None` if it is not a readable JWT.
pub fn token_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// One string claim of a JWT access token (see [`token_claims`]).
pub fn token_claim(token: &str, name: &str) -> Option<String> {
    token_claims(token)?.get(name)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::error::ErrorKind;
    use azure_core::http::StatusCode;

    fn secret_mode() -> AuthMode {
        AuthMode::ClientSecret {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "app-1".into(),
            secret: Secret::new("hunter2-very-secret"),
        }
    }

    fn entra_error(code: &str, description: &str) -> azure_core::Error {
        let inner = azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::Unauthorized,
                error_code: Some(code.to_string()),
                raw_response: None,
            },
            description.to_string(),
        );
        azure_core::Error::with_error(
            ErrorKind::Credential,
            inner,
            format!("ClientSecretCredential authentication failed. {description}\nTo troubleshoot, visit https://aka.ms/x"),
        )
    }

    #[test]
    fn entra_codes_become_actionable_messages() {
        let options = AuthOptions::default();
        let auth = secret_mode();
        let cases: &[(&str, &str, &str)] = &[
            (
                "7000215",
                "AADSTS7000215: Invalid client secret provided.",
                "AADSTS7000215",
            ),
            (
                "7000222",
                "AADSTS7000222: The provided client secret keys are expired.",
                "expired",
            ),
            (
                "90002",
                "AADSTS90002: Tenant 'x' not found.",
                "contoso.onmicrosoft.com",
            ),
            (
                "700016",
                "AADSTS700016: Application with identifier 'app-1' was not found",
                "app-1",
            ),
        ];
        for (code, description, expected) in cases {
            let err = explain(&auth, &options, &entra_error(code, description));
            let text = err.to_string();
            assert!(text.contains(expected), "{code}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        // A code only in the text (no error_codes array) is still recognised.
        let err = explain(
            &auth,
            &options,
            &entra_error("", "AADSTS7000215: Invalid client secret provided."),
        );
        assert!(matches!(err, AuthError::InvalidSecret), "{err}");
    }

    #[test]
    fn unknown_codes_keep_entra_text_but_never_the_secret() {
        let err = explain(
            &secret_mode(),
            &AuthOptions::default(),
            &entra_error(
                "7000112",
                "AADSTS7000112: Application is disabled. echo hunter2-very-secret",
            ),
        );
        let text = err.to_string();
        assert!(text.contains("AADSTS7000112"), "{text}");
        assert!(text.contains("Application is disabled"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("To troubleshoot"), "{text}");
    }

    #[test]
    fn certificate_rejections_name_the_file() {
        let auth = AuthMode::Certificate {
            tenant_id: "t".into(),
            client_id: "c".into(),
            path: PathBuf::from("/etc/app/cert.pem"),
        };
        let err = explain(
            &auth,
            &AuthOptions::default(),
            &entra_error(
                "700027",
                "AADSTS700027: Client assertion contains an invalid signature.",
            ),
        );
        assert!(
            matches!(err, AuthError::CertificateRejected { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("/etc/app/cert.pem"));
    }

    #[test]
    fn managed_identity_errors() {
        let mi = AuthMode::ManagedIdentity {
            client_id: Some("uami-1".into()),
        };
        let bad_request = azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::BadRequest,
                error_code: None,
                raw_response: None,
            },
            "The requested identity has not been assigned to this resource",
        );
        let err = explain(&mi, &AuthOptions::default(), &bad_request);
        assert!(err.to_string().contains("uami-1"), "{err}");
        let refused = azure_core::Error::new(
            ErrorKind::Connection,
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        );
        let err = explain(&mi, &AuthOptions::default(), &refused);
        assert!(
            matches!(err, AuthError::ManagedIdentityUnavailable { .. }),
            "{err}"
        );
    }

    #[test]
    fn token_endpoint_uses_the_authority_host() {
        let options = AuthOptions {
            authority_host: Some(Url::parse("https://127.0.0.1:8443/").unwrap()),
        };
        assert_eq!(
            token_endpoint(&options, "tenant-1").unwrap().as_str(),
            "https://127.0.0.1:8443/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(
            token_endpoint(&AuthOptions::default(), "t")
                .unwrap()
                .as_str(),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
        assert!(token_endpoint(&options, "../evil").is_none());
    }

    #[tokio::test]
    async fn fixed_tokens_and_scopes() {
        let provider = TokenProvider::fixed(Secret::new("tok-123"));
        assert_eq!(provider.token().await.unwrap().expose(), "tok-123");
        assert_eq!(provider.refresh().await.unwrap().expose(), "tok-123");
        let storage = provider.with_scope(STORAGE_SCOPE);
        assert_eq!(storage.scope(), STORAGE_SCOPE);
        assert_eq!(provider.scope(), GRAPH_SCOPE);
        let shown = format!("{provider:?} {:?}", provider.credential());
        assert!(!shown.contains("tok-123"), "{shown}");
    }

    #[test]
    fn secret_provider_debug_hides_the_secret() {
        let provider = TokenProvider::with_options(&secret_mode(), AuthOptions::default()).unwrap();
        let shown = format!("{provider:?} {:?}", provider.credential());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(provider.source_name(), "client secret");
    }
}
