//! The clients of one Blob sink: how it authenticates ([`BlobAuth`]), its tunables
//! ([`BlobSinkOptions`]), the validated container URL and base path, blob names and URLs, the
//! cached blob clients, the SAS (appended to request URLs, scrubbed from every error message),
//! and creating the container when it is missing.

use std::collections::HashMap;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RequestContent};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use bytes::Bytes;
use url::Url;

use crate::config::Secret;
use crate::sink::{SinkError, STATE_FILE};

use super::errors;
use super::http::{client_options, Counters};
use super::LatestCopy;

/// How the sink authenticates.
#[derive(Clone)]
pub enum BlobAuth {
    /// A SAS query string (without the leading `?`), appended to every request URL.
    Sas(Secret),
    /// An Entra ID credential; tokens are requested for `https://storage.azure.com/.default`.
    Token(Arc<dyn TokenCredential>),
}

impl std::fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobAuth::Sas(_) => f.write_str("Sas(***)"),
            BlobAuth::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// Tunables of the Blob sink; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct BlobSinkOptions {
    /// Lease duration of the single-writer lock, 15–60 s (Azure's limits). Default 60 s.
    pub lease_duration: Duration,
    /// How often the lease is renewed while held. Default 15 s.
    pub renew_every: Duration,
    /// Retries of the SDK policy for 408/429/500/502/503/504 and transport errors. Default 5.
    pub max_retries: u32,
    /// First retry delay, doubling up to `max_retry_delay`. Default 0.5 s.
    pub initial_retry_delay: Duration,
    /// Longest delay between retries. Default 10 s.
    pub max_retry_delay: Duration,
    /// Total time one request may spend retrying. Default 60 s.
    pub max_retry_elapsed: Duration,
    /// How `latest.csv` is assembled. Default [`LatestCopy::Auto`].
    pub latest_copy: LatestCopy,
}

impl Default for BlobSinkOptions {
    fn default() -> Self {
        BlobSinkOptions {
            lease_duration: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
            max_retries: 5,
            initial_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(10),
            max_retry_elapsed: Duration::from_secs(60),
            latest_copy: LatestCopy::Auto,
        }
    }
}

/// What every part of one [`BlobSink`](super::BlobSink) shares: the destination, the
/// credentials and the clients.
pub(super) struct Inner {
    /// Container URL without query string.
    pub(super) container_url: Url,
    /// Path under the container, without leading/trailing `/`; may be empty.
    pub(super) base: String,
    pub(super) auth: BlobAuth,
    pub(super) options: BlobSinkOptions,
    pub(super) client_options: ClientOptions,
    pub(super) container: BlobContainerClient,
    pub(super) blobs: Mutex<HashMap<String, Arc<BlobClient>>>,
    pub(super) counters: Arc<Counters>,
    /// The [`LatestCopy`] in effect (Auto switches to Download once on 501).
    pub(super) latest_mode: AtomicU8,
}

impl Inner {
    /// Validates the destination and the tunables and builds the container client (see
    /// [`BlobSink::with_options`](super::BlobSink::with_options)).
    pub(super) fn new(
        container_url: &Url,
        base: &str,
        auth: BlobAuth,
        options: BlobSinkOptions,
    ) -> Result<Inner, SinkError> {
        let mut container_url = container_url.clone();
        container_url.set_query(None);
        container_url.set_fragment(None);
        if !matches!(container_url.scheme(), "http" | "https") || container_url.host().is_none() {
            return Err(SinkError::Other(format!(
                "{container_url} is not an http(s) container URL"
            )));
        }
        let has_container = container_url
            .path_segments()
            .is_some_and(|mut s| s.any(|seg| !seg.is_empty()));
        if !has_container {
            return Err(SinkError::Other(format!(
                "{container_url} names no container: expected https://<account>.blob.core.windows.net/<container>"
            )));
        }
        if let Ok(mut segments) = container_url.path_segments_mut() {
            segments.pop_if_empty();
        }
        if matches!(auth, BlobAuth::Token(_)) && container_url.scheme() != "https" {
            return Err(SinkError::Other(format!(
                "{container_url}: token authentication needs https"
            )));
        }
        if let BlobAuth::Sas(sas) = &auth {
            if sas.expose().trim_start_matches('?').is_empty() {
                return Err(SinkError::Other(
                    "the SAS query string is empty".to_string(),
                ));
            }
        }
        let secs = options.lease_duration.as_secs();
        if !(15..=60).contains(&secs) || options.lease_duration.subsec_nanos() != 0 {
            return Err(SinkError::Other(format!(
                "lease duration must be 15 to 60 whole seconds, got {:?}",
                options.lease_duration
            )));
        }
        if options.renew_every.is_zero() || options.renew_every * 2 > options.lease_duration {
            return Err(SinkError::Other(format!(
                "lease renewal interval {:?} must be at most half the lease duration",
                options.renew_every
            )));
        }
        let base = base.trim_matches('/').to_string();

        let counters = Arc::new(Counters::default());
        let client_options = client_options(&options, &counters);
        let credential = match &auth {
            BlobAuth::Token(credential) => Some(credential.clone()),
            BlobAuth::Sas(_) => None,
        };
        let container = BlobContainerClient::new(
            with_sas(&container_url, &auth),
            credential,
            Some(BlobContainerClientOptions {
                client_options: client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| SinkError::Other(format!("{container_url}: {}", errors::describe(&e))))?;

        let latest_mode = AtomicU8::new(options.latest_copy as u8);
        Ok(Inner {
            container_url,
            base,
            auth,
            options,
            client_options,
            container,
            blobs: Mutex::new(HashMap::new()),
            counters,
            latest_mode,
        })
    }
}

/// A request body from bytes (the SDK's inherent `RequestContent::from` takes a `Vec`).
pub(super) fn content<T, F>(bytes: Bytes) -> RequestContent<T, F> {
    bytes.into()
}

/// `url` with the SAS as its query string (token auth: unchanged).
pub(super) fn with_sas(url: &Url, auth: &BlobAuth) -> Url {
    let mut url = url.clone();
    if let BlobAuth::Sas(sas) = auth {
        url.set_query(Some(sas.expose().trim_start_matches('?')));
    }
    url
}

impl Inner {
    /// Full blob name of `file` (relative to the base).
    pub(super) fn blob_name(&self, file: &str) -> String {
        if self.base.is_empty() {
            file.to_string()
        } else {
            format!("{}/{}", self.base, file)
        }
    }

    /// URL of `file` without any query string.
    pub(super) fn blob_url(&self, file: &str) -> Url {
        let mut url = self.container_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(self.blob_name(file).split('/'));
        }
        url
    }

    /// The (cached) client of `file`.
    pub(super) fn blob(&self, file: &str) -> Result<Arc<BlobClient>, SinkError> {
        if let Ok(cache) = self.blobs.lock() {
            if let Some(client) = cache.get(file) {
                return Ok(client.clone());
            }
        }
        let credential = match &self.auth {
            BlobAuth::Token(credential) => Some(credential.clone()),
            BlobAuth::Sas(_) => None,
        };
        let client = BlobClient::new(
            with_sas(&self.blob_url(file), &self.auth),
            credential,
            Some(BlobClientOptions {
                client_options: self.client_options.clone(),
                ..Default::default()
            }),
        )
        .map(Arc::new)
        .map_err(|e| SinkError::Other(format!("{file}: {}", self.scrub(errors::describe(&e)))))?;
        if let Ok(mut cache) = self.blobs.lock() {
            cache.insert(file.to_string(), client.clone());
        }
        Ok(client)
    }

    /// Removes this sink's SAS (raw and percent-encoded) from `text`, after [`errors::redact`].
    pub(super) fn scrub(&self, text: String) -> String {
        errors::scrub(&text, &self.auth)
    }

    pub(super) fn denied_hint(&self) -> &'static str {
        match self.auth {
            BlobAuth::Token(_) => {
                "grant the identity the \"Storage Blob Data Contributor\" role on the container \
                 (role assignments can take a few minutes to apply)"
            }
            BlobAuth::Sas(_) => {
                "the SAS must be valid (not expired, signature intact) and grant the permissions \
                 c,w,r,l,a,d on the container (an account SAS also needs ss=b and srt=sco)"
            }
        }
    }

    /// The sink error for a failed operation on `what`.
    pub(super) fn error(&self, what: &str, err: &azure_core::Error) -> SinkError {
        errors::to_sink_error(what, err, self.denied_hint(), |s| self.scrub(s))
    }

    pub(super) fn lock_lost(&self) -> SinkError {
        SinkError::LockLost {
            what: self.blob_name(STATE_FILE),
        }
    }

    pub(super) fn describe(&self) -> String {
        let auth = match self.auth {
            BlobAuth::Sas(_) => "SAS",
            BlobAuth::Token(_) => "Entra ID token",
        };
        let mut url = self.container_url.to_string();
        if !self.base.is_empty() {
            url.push('/');
            url.push_str(&self.base);
        }
        format!("Azure Blob Storage {url}/ ({auth})")
    }

    /// Creates the container; 409 (exists) is success.
    pub(super) async fn create_container(&self) -> Result<(), SinkError> {
        match self.container.create(None).await {
            Ok(_) => {
                tracing::info!(container = %self.container_url, "created the container");
                Ok(())
            }
            Err(e) if errors::is_status(&e, 409, &[]) => Ok(()),
            Err(e) => Err(match self.error("the container", &e) {
                SinkError::Denied { what, hint } => SinkError::Denied {
                    what: format!("{what} (it does not exist and could not be created)"),
                    hint,
                },
                other => other,
            }),
        }
    }

    /// Whether the error says the container does not exist.
    pub(super) fn container_missing(err: &azure_core::Error) -> bool {
        errors::is_status(err, 404, &["ContainerNotFound"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::blob::BlobSink;
    use crate::sink::Sink;

    fn sas_sink(url: &str, base: &str) -> BlobSink {
        BlobSink::new(
            &Url::parse(url).unwrap(),
            base,
            BlobAuth::Sas(Secret::new("sv=2021-08-06&sp=rl&sig=SECRETSECRETSECRET%3D")),
        )
        .unwrap()
    }

    #[test]
    fn blob_urls_keep_slashes_and_never_show_the_sas() {
        let sink = sas_sink(
            "http://127.0.0.1:10000/devstoreaccount1/c/?sv=x&sig=y",
            "/exports/eas/",
        );
        assert_eq!(sink.inner.base, "exports/eas");
        assert_eq!(
            sink.inner.blob_url("daily/2026-01-02.csv").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/c/exports/eas/daily/2026-01-02.csv"
        );
        let described = sink.describe();
        assert_eq!(
            described,
            "Azure Blob Storage http://127.0.0.1:10000/devstoreaccount1/c/exports/eas/ (SAS)"
        );
        let blob = sink.inner.blob("latest.csv").unwrap();
        assert!(blob.url().query().is_some_and(|q| q.contains("sig=")));
    }

    #[test]
    fn empty_base_puts_files_at_the_container_root() {
        let sink = sas_sink("https://acct.blob.core.windows.net/c", "");
        assert_eq!(sink.inner.blob_name("latest.csv"), "latest.csv");
        assert_eq!(
            sink.inner.blob_url("_state/state.json").as_str(),
            "https://acct.blob.core.windows.net/c/_state/state.json"
        );
    }

    #[test]
    fn scrub_removes_the_sas_in_any_encoding() {
        let sink = sas_sink("https://acct.blob.core.windows.net/c", "");
        let text = sink
            .inner
            .scrub("sig SECRETSECRETSECRET= and SECRETSECRETSECRET%3D".to_string());
        assert!(!text.contains("SECRETSECRET"), "{text}");
    }

    #[test]
    fn invalid_urls_and_options_are_refused() {
        let auth = || BlobAuth::Sas(Secret::new("sig=x"));
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(BlobSink::new(&url("https://acct.blob.core.windows.net/"), "", auth()).is_err());
        assert!(BlobSink::new(&url("ftp://acct/c"), "", auth()).is_err());
        assert!(BlobSink::new(&url("https://a/c"), "", BlobAuth::Sas(Secret::new(""))).is_err());
        let short = BlobSinkOptions {
            lease_duration: Duration::from_secs(10),
            ..Default::default()
        };
        assert!(BlobSink::with_options(&url("https://a/c"), "", auth(), short).is_err());
        let slow_renew = BlobSinkOptions {
            lease_duration: Duration::from_secs(20),
            renew_every: Duration::from_secs(15),
            ..Default::default()
        };
        assert!(BlobSink::with_options(&url("https://a/c"), "", auth(), slow_renew).is_err());
    }

    #[test]
    fn debug_never_shows_the_sas() {
        let auth = BlobAuth::Sas(Secret::new("sig=topsecret"));
        assert!(!format!("{auth:?}").contains("topsecret"));
    }
}
