//! The Azure Storage side of the diagnostic-settings source: lists a category's hourly blobs and
//! reads one blob's lines from a byte offset in bounded pieces (ranged Get Blob), never a whole
//! blob in memory. Authentication, retries, request counting and error redaction are the Blob
//! sink's ([`crate::sink::blob`]): the same token (Storage scope) or a SAS.
//!
//! | method | Blob REST calls |
//! |---|---|
//! | [`DiagnosticReader::list`] | List Blobs (one per 5000 blobs, per listed prefix) |
//! | [`DiagnosticReader::sign_in_containers`] | List Containers (prefix `insights-logs-`) |
//! | [`BlobLines::next_piece`] | Get Blob with a `Range` of at most [`ReaderOptions::piece_bytes`] |

use std::num::NonZero;
use std::sync::Arc;

use azure_core::http::ClientOptions;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobContainerClientListBlobsOptions,
    BlobServiceClientListContainersOptions, HttpRange,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
    BlobServiceClient, BlobServiceClientOptions,
};
use futures::TryStreamExt as _;
use time::OffsetDateTime;
use url::Url;

use super::cursor::{BlobKey, ListedBlob};
use super::layout::{BlobHour, Listing};
use super::lines::{Line, LineBuffer, Oversized};
use crate::config::DiagnosticStorage;
use crate::credential::{TokenProvider, STORAGE_SCOPE};
use crate::graph::model::EventType;
use crate::sink::blob::errors::{self, Class};
use crate::sink::blob::http::{client_options, Counters};
use crate::sink::blob::{BlobAuth, BlobSinkOptions, RequestCounts};

/// Tunables of the reader; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Largest range one Get Blob reads (and what the reader holds of a blob, with one line).
    pub piece_bytes: usize,
    /// Longest line kept; a longer one is skipped and reported ([`Oversized`]).
    pub max_line_bytes: usize,
    /// Retries of failed requests (the Blob sink's policy and defaults).
    pub retry: BlobSinkOptions,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            piece_bytes: 4 * 1024 * 1024,
            max_line_bytes: 1024 * 1024,
            retry: BlobSinkOptions::default(),
        }
    }
}

/// Why the source could not be read. Messages name the fix and never contain a SAS or a token.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The category's container does not exist: no diagnostic setting archives it here (yet).
    #[error(
        "{container} does not exist in {account}: no diagnostic setting archives {category} \
         sign-ins to this storage account yet (Azure Monitor creates the container with the \
         first sign-in of the category); create the setting (docs/deploy.md), or correct \
         SIGNINS_DIAGNOSTIC_STORAGE or SIGNINS_EVENT_TYPES"
    )]
    NoContainer {
        account: String,
        container: &'static str,
        category: &'static str,
    },
    /// The identity or SAS may not read; `hint` says what to grant.
    #[error("access to {what} denied: {hint}")]
    Denied { what: String, hint: String },
    /// Network failure, timeout, throttling or 5xx after the retries.
    #[error("{what} is unavailable: {detail}")]
    Unavailable { what: String, detail: String },
    /// The blob is not the one that was listed (deleted and written again meanwhile).
    #[error("{what} changed while it was read ({detail}); the next run reads it again")]
    Changed { what: String, detail: String },
    /// Anything else, with what failed.
    #[error("{what}: {detail}")]
    Other { what: String, detail: String },
}

/// Reads one storage account's sign-in containers.
pub struct DiagnosticReader {
    /// `https://<account>.blob.core.windows.net` (or an emulator's `http://host:port/<account>`).
    account_url: Url,
    auth: BlobAuth,
    options: ReaderOptions,
    client_options: ClientOptions,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for DiagnosticReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl DiagnosticReader {
    /// The reader of `SIGNINS_DIAGNOSTIC_STORAGE`: its SAS, or `tokens` with the Storage scope.
    pub fn new(
        storage: &DiagnosticStorage,
        tokens: &TokenProvider,
    ) -> Result<DiagnosticReader, SourceError> {
        DiagnosticReader::for_storage(storage, tokens, ReaderOptions::default())
    }

    /// [`DiagnosticReader::new`] with explicit tunables.
    pub fn for_storage(
        storage: &DiagnosticStorage,
        tokens: &TokenProvider,
        options: ReaderOptions,
    ) -> Result<DiagnosticReader, SourceError> {
        let auth = match &storage.sas {
            Some(sas) => BlobAuth::Sas(sas.clone()),
            None => BlobAuth::Token(tokens.with_scope(STORAGE_SCOPE).credential()),
        };
        DiagnosticReader::with_options(&storage.account_url, auth, options)
    }

    /// Its tunables.
    pub fn options(&self) -> &ReaderOptions {
        &self.options
    }

    /// A reader of the account at `account_url` with explicit tunables (tests use small pieces).
    pub fn with_options(
        account_url: &Url,
        auth: BlobAuth,
        options: ReaderOptions,
    ) -> Result<DiagnosticReader, SourceError> {
        let mut account_url = account_url.clone();
        account_url.set_query(None);
        account_url.set_fragment(None);
        let other = |detail: &str| SourceError::Other {
            what: account_url.to_string(),
            detail: detail.to_string(),
        };
        if !matches!(account_url.scheme(), "http" | "https") || account_url.host().is_none() {
            return Err(other("not an http(s) storage account URL"));
        }
        if matches!(auth, BlobAuth::Token(_)) && account_url.scheme() != "https" {
            return Err(other("token authentication needs https"));
        }
        if options.piece_bytes == 0 || options.max_line_bytes == 0 {
            return Err(other("the piece and line sizes must be more than 0 bytes"));
        }
        let counters = Arc::new(Counters::default());
        let client_options = client_options(&options.retry, &counters);
        Ok(DiagnosticReader {
            account_url,
            auth,
            options,
            client_options,
            counters,
        })
    }

    /// The account and how the reader authenticates; never a secret.
    pub fn describe(&self) -> String {
        let auth = match self.auth {
            BlobAuth::Sas(_) => "SAS",
            BlobAuth::Token(_) => "Entra ID token",
        };
        format!(
            "diagnostic-settings export in {} ({auth})",
            self.account_url.as_str().trim_end_matches('/')
        )
    }

    /// Requests sent so far by this reader.
    pub fn request_counts(&self) -> RequestCounts {
        self.counters.snapshot()
    }

    /// URL of the container of `event_type`'s sign-ins (no query string).
    pub fn container_url(&self, event_type: EventType) -> Url {
        let mut url = self.account_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(event_type.diagnostic_container());
        }
        url
    }

    /// The hourly blobs of `event_type`'s container that `listing` covers (other blob names are
    /// not sign-in logs and are left out), in name order.
    pub async fn list(
        &self,
        event_type: EventType,
        listing: &Listing,
    ) -> Result<Vec<ListedBlob>, SourceError> {
        let container = self.container(event_type)?;
        let prefixes: Vec<Option<String>> = match listing {
            Listing::Container => vec![None],
            Listing::Prefixes(prefixes) => prefixes.iter().cloned().map(Some).collect(),
        };
        let what = event_type.diagnostic_container();
        let mut blobs = Vec::new();
        for prefix in prefixes {
            let options = BlobContainerClientListBlobsOptions {
                prefix,
                ..Default::default()
            };
            let mut pages = container
                .list_blobs(Some(options))
                .map_err(|e| self.error(what, &e))?
                .into_pages();
            loop {
                let page = match pages.try_next().await {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(e) if errors::is_status(&e, 404, &["ContainerNotFound"]) => {
                        return Err(self.no_container(event_type))
                    }
                    Err(e) => return Err(self.error(what, &e)),
                };
                let page = page.into_model().map_err(|e| self.error(what, &e))?;
                for item in page.blob_items {
                    let Some(name) = item.name else { continue };
                    let Some(hour) = BlobHour::parse(&name) else {
                        continue;
                    };
                    let properties = item.properties.unwrap_or_default();
                    blobs.push(ListedBlob {
                        key: BlobKey { event_type, name },
                        hour: Some(hour),
                        length: properties.content_length.unwrap_or(0),
                        etag: properties.etag.map(|etag| etag.to_string()),
                        created: properties.creation_time,
                        last_modified: properties.last_modified,
                    });
                }
            }
        }
        blobs.sort_by(|a, b| a.key.cmp(&b.key));
        blobs.dedup_by(|a, b| a.key == b.key);
        Ok(blobs)
    }

    /// The sign-in categories whose containers exist in the account (List Containers: needs a
    /// role or SAS on the account, not only on one container).
    pub async fn sign_in_containers(&self) -> Result<Vec<EventType>, SourceError> {
        let service = BlobServiceClient::new(
            with_sas(&self.account_url, &self.auth),
            self.credential(),
            Some(BlobServiceClientOptions {
                client_options: self.client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| self.error("the storage account", &e))?;
        let options = BlobServiceClientListContainersOptions {
            prefix: Some("insights-logs-".to_string()),
            ..Default::default()
        };
        let mut pages = service
            .list_containers(Some(options))
            .map_err(|e| self.error("the storage account", &e))?
            .into_pages();
        let mut found = Vec::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| self.error("the storage account", &e))?
        {
            let page = page
                .into_model()
                .map_err(|e| self.error("the storage account", &e))?;
            found.extend(
                page.container_items
                    .into_iter()
                    .filter_map(|item| item.name)
                    .filter_map(|name| EventType::from_diagnostic_container(&name)),
            );
        }
        found.sort();
        Ok(found)
    }

    /// The lines of `blob` in `[from, to)`, read piece by piece. `from` is where a line starts
    /// (0, or a consumed offset) — otherwise the first "line" is the end of one, which the
    /// caller passes over; `to` is normally the length listed.
    pub fn open(&self, blob: &ListedBlob, from: u64, to: u64) -> Result<BlobLines, SourceError> {
        let path = blob.key.path();
        let mut url = self.container_url(blob.key.event_type);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(blob.key.name.split('/'));
        }
        let client = BlobClient::new(
            with_sas(&url, &self.auth),
            self.credential(),
            Some(BlobClientOptions {
                client_options: self.client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| self.error(&path, &e))?;
        Ok(BlobLines {
            client,
            path,
            created: blob.created,
            to,
            piece_bytes: self.options.piece_bytes,
            buffer: LineBuffer::new(from, self.options.max_line_bytes),
            auth: self.auth.clone(),
        })
    }

    fn credential(&self) -> Option<Arc<dyn azure_core::credentials::TokenCredential>> {
        match &self.auth {
            BlobAuth::Token(credential) => Some(credential.clone()),
            BlobAuth::Sas(_) => None,
        }
    }

    fn container(&self, event_type: EventType) -> Result<BlobContainerClient, SourceError> {
        BlobContainerClient::new(
            with_sas(&self.container_url(event_type), &self.auth),
            self.credential(),
            Some(BlobContainerClientOptions {
                client_options: self.client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| self.error(event_type.diagnostic_container(), &e))
    }

    fn no_container(&self, event_type: EventType) -> SourceError {
        SourceError::NoContainer {
            account: self.account_url.as_str().trim_end_matches('/').to_string(),
            container: event_type.diagnostic_container(),
            category: event_type.diagnostic_category(),
        }
    }

    fn error(&self, what: &str, err: &azure_core::Error) -> SourceError {
        to_source_error(what, err, &self.auth)
    }
}

/// The source error for a failed request about `what`.
fn to_source_error(what: &str, err: &azure_core::Error, auth: &BlobAuth) -> SourceError {
    let (status, code) = errors::status_and_code(err);
    let detail = errors::scrub(&errors::describe(err), auth);
    let what = what.to_string();
    match errors::classify(status, code.as_deref(), Some(err.kind())) {
        Class::Denied => SourceError::Denied {
            what,
            hint: format!("{} ({detail})", denied_hint(auth)),
        },
        Class::Credential => SourceError::Denied {
            what,
            hint: format!(
                "could not get a token for Azure Storage ({STORAGE_SCOPE}): {detail}; check that \
                 the managed identity is enabled or the credential settings are right"
            ),
        },
        Class::Unavailable => SourceError::Unavailable { what, detail },
        Class::Other => SourceError::Other { what, detail },
    }
}

/// What to grant when the storage account refuses to be read.
fn denied_hint(auth: &BlobAuth) -> &'static str {
    match auth {
        BlobAuth::Token(_) => {
            "grant the identity \"Storage Blob Data Reader\" on the storage account the diagnostic \
             setting writes to (on the account, not one container: Azure Monitor creates the \
             containers); role assignments can take a few minutes to apply"
        }
        BlobAuth::Sas(_) => {
            "the SAS must be valid (not expired, signature intact) and grant r and l (read, list) \
             on the sign-in containers (an account SAS also needs ss=b and srt=sco)"
        }
    }
}

/// `url` with the SAS as its query string (token auth: unchanged).
fn with_sas(url: &Url, auth: &BlobAuth) -> Url {
    let mut url = url.clone();
    if let BlobAuth::Sas(sas) = auth {
        url.set_query(Some(sas.expose().trim_start_matches('?')));
    }
    url
}

/// One blob's lines in `[from, to)`, read in pieces of at most
/// [`ReaderOptions::piece_bytes`]; memory holds one piece and one incomplete line.
pub struct BlobLines {
    client: BlobClient,
    /// `<container>/<name>`, for errors and reports.
    path: String,
    /// The creation time listed: a read that sees another one fails ([`SourceError::Changed`]).
    created: Option<OffsetDateTime>,
    to: u64,
    piece_bytes: usize,
    buffer: LineBuffer,
    auth: BlobAuth,
}

/// The complete lines of one piece of a blob.
#[derive(Debug)]
pub struct Piece<'a> {
    pub lines: Vec<Line<'a>>,
    /// Lines too long to hold, skipped.
    pub oversized: Vec<Oversized>,
    /// The blob offset after the last complete line so far: the cursor once this piece's rows
    /// are committed.
    pub consumed: u64,
}

impl BlobLines {
    /// `<container>/<name>` of the blob.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The offset after the last complete line read so far.
    pub fn consumed(&self) -> u64 {
        self.buffer.consumed()
    }

    /// Reads the next piece; `None` once `[from, to)` is read. A line not complete at `to` is
    /// left for a later read.
    pub async fn next_piece(&mut self) -> Result<Option<Piece<'_>>, SourceError> {
        let at = self.buffer.next_offset();
        if at >= self.to {
            return Ok(None);
        }
        let n = usize::try_from(self.to - at)
            .unwrap_or(usize::MAX)
            .min(self.piece_bytes);
        let options = BlobClientDownloadOptions {
            range: Some(HttpRange::new(at, n as u64)),
            parallel: Some(NonZero::<usize>::MIN),
            partition_size: NonZero::new(n),
            ..Default::default()
        };
        let space = self.buffer.spare(n);
        let read = match self.client.download_into(space, Some(options)).await {
            Ok(read) => read,
            Err(e) => {
                self.buffer.filled(0);
                return Err(match errors::status_and_code(&e) {
                    (Some(404), _) | (Some(416), _) => SourceError::Changed {
                        what: self.path.clone(),
                        detail: errors::scrub(&errors::describe(&e), &self.auth),
                    },
                    _ => to_source_error(&self.path, &e, &self.auth),
                });
            }
        };
        if let (Some(listed), Some(now)) = (self.created, read.properties.created_on) {
            if listed != now {
                self.buffer.filled(0);
                return Err(SourceError::Changed {
                    what: self.path.clone(),
                    detail: format!("created {now}, listed as created {listed}"),
                });
            }
        }
        if read.len != n {
            self.buffer.filled(0);
            return Err(SourceError::Changed {
                what: self.path.clone(),
                detail: format!("{} bytes at offset {at} where {n} were listed", read.len),
            });
        }
        self.buffer.filled(n);
        let consumed = self.buffer.consumed();
        let (lines, oversized) = self.buffer.lines();
        Ok(Some(Piece {
            lines,
            oversized,
            consumed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn sas() -> BlobAuth {
        BlobAuth::Sas(Secret::new("sv=2021-08-06&sp=rl&sig=SECRETSECRETSECRET%3D"))
    }

    #[test]
    fn urls_name_the_container_and_never_show_the_sas() {
        let reader = DiagnosticReader::with_options(
            &Url::parse("http://127.0.0.1:10000/devstoreaccount1?sv=x&sig=y").unwrap(),
            sas(),
            ReaderOptions::default(),
        )
        .unwrap();
        assert_eq!(
            reader.container_url(EventType::InteractiveUser).as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/insights-logs-signinlogs"
        );
        assert_eq!(
            reader.describe(),
            "diagnostic-settings export in http://127.0.0.1:10000/devstoreaccount1 (SAS)"
        );
        assert!(!format!("{reader:?}").contains("SECRET"));
        let reader = DiagnosticReader::with_options(
            &Url::parse("https://stdiag.blob.core.windows.net/").unwrap(),
            sas(),
            ReaderOptions::default(),
        )
        .unwrap();
        assert_eq!(
            reader.container_url(EventType::ManagedIdentity).as_str(),
            "https://stdiag.blob.core.windows.net/insights-logs-managedidentitysigninlogs"
        );
    }

    #[test]
    fn invalid_readers_are_refused() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(
            DiagnosticReader::with_options(&url("ftp://a/b"), sas(), ReaderOptions::default())
                .is_err()
        );
        let tiny = ReaderOptions {
            piece_bytes: 0,
            ..Default::default()
        };
        assert!(DiagnosticReader::with_options(&url("https://a"), sas(), tiny).is_err());
    }

    #[test]
    fn failures_are_classified_with_the_fix_and_without_the_sas() {
        use azure_core::error::ErrorKind;
        let io = azure_core::Error::with_message(
            ErrorKind::Io,
            "error sending request for url (https://a/c?sv=1&sig=SECRETSECRETSECRET%3D)",
        );
        let err = to_source_error("insights-logs-signinlogs", &io, &sas());
        assert!(matches!(err, SourceError::Unavailable { .. }), "{err}");
        assert!(!err.to_string().contains("SECRETSECRET"), "{err}");
        let credential = azure_core::Error::with_message(ErrorKind::Credential, "no identity");
        let err = to_source_error("x", &credential, &BlobAuth::Sas(Secret::new("sig=a")));
        assert!(err.to_string().contains("could not get a token"), "{err}");
        assert!(denied_hint(&sas()).contains("r and l"));
        // A 403 to a managed identity (no data role: Storage's AuthorizationPermissionMismatch)
        // names the role to grant, and not the SAS's fix.
        let forbidden = azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: azure_core::http::StatusCode::Forbidden,
                error_code: Some("AuthorizationPermissionMismatch".into()),
                raw_response: None,
            },
            "This request is not authorized to perform this operation using this permission.",
        );
        let token =
            BlobAuth::Token(crate::credential::TokenProvider::fixed(Secret::new("t")).credential());
        let err = to_source_error("insights-logs-signinlogs", &forbidden, &token);
        assert!(matches!(err, SourceError::Denied { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("\"Storage Blob Data Reader\""), "{text}");
        assert!(
            text.contains("insights-logs-signinlogs") && !text.contains("r and l"),
            "{text}"
        );
    }
}
