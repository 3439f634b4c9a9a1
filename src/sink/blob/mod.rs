//! The Azure Blob Storage sink: daily files grown by staged blocks and one atomic Put Block List
//! per commit, the single-writer lock as a lease on the state blob, `latest.csv` assembled
//! server-side from the daily files.
//!
//! # Layout and operations
//!
//! Under `<container>/<base>/` (see [`crate::sink`]): `daily/YYYY-MM-DD.csv`, `latest.csv`,
//! `_state/state.json`. Every operation maps to Blob REST calls as follows:
//!
//! | sink method | Blob REST calls |
//! |---|---|
//! | `acquire` | Lease Blob (acquire, 15–60 s) on the state blob + Set Blob Metadata (holder, since); on first use Put Blob `{}` (and Create Container); when busy, Get Blob Properties |
//! | (background) | Lease Blob (renew) every `renew_every` (default 15 s) while held |
//! | `release` | Lease Blob (release) |
//! | `read_state` | Get Blob |
//! | `write_state` | Put Blob with the lease id (atomic replace; re-sends the holder metadata) |
//! | `stage` | Put Block |
//! | `prepare` | Get Block List (committed) → ETag; if the file is new, Put Block (header) |
//! | `commit` | Put Block List with `If-Match: <etag>` or `If-None-Match: *`; on 412 one Get Block List |
//! | `is_committed` | Get Block List (committed) |
//! | `list_daily` | List Blobs (one call per 5000 files) |
//! | `publish_latest` | Put Block (header) + per daily file: Get Blob Properties + Put Block From URL per 4000 MiB of rows; then Put Block List |
//! | `probe` | Put Blob + Get Blob + List Blobs + Delete Blob of `_state/probe-<uuid>` |
//!
//! **Cost of a run** that writes `s` slices of `b` blocks each and republishes `latest.csv` over
//! `d` days: `2` (lease + metadata) `+ 1` (read state) `+ s·(b + 1 + 1 + 2)` (stage, block list,
//! commit, two state writes) `+ 2 + 2d` (latest) `+ 1` (list) `+ 1` (release), plus one renewal
//! per 15 s. A typical 30-minute timer run (1 slice, 1 block, 30 days) is about 72 requests. The
//! daily files are never downloaded: `latest.csv` is copied server-side (Put Block From URL with
//! `x-ms-source-range` skipping each file's header), which moves no data through the function.
//! Put Block From URL copies at most 4000 MiB per call, so a larger daily file takes several
//! ranges; a blob holds at most 50 000 committed blocks (each commit adds its staged blocks, so a
//! daily file reaches that only after tens of thousands of commits).
//!
//! # Storage emulators
//!
//! Azurite does not implement Put Block From URL (with a SAS it answers 500 because its SAS
//! permission table lacks the operation; with a token 501 APINotImplemented). With
//! [`LatestCopy::Auto`] (the default) the sink recognises Azurite by its `Server` header (or any
//! service by a 501) and switches, once per sink and with a warning, to
//! [`LatestCopy::Download`]: each daily file's rows are downloaded in 4 MiB ranges (pinned to the
//! file's ETag) and staged as blocks, with the same atomic Put Block List at the end; that costs
//! `d·3` requests instead of `d·2` and moves the data through the function.
//! [`LatestCopy::ServerSide`] never falls back.
//!
//! # Secrets
//!
//! The SAS is only ever appended to request URLs (and to the source URL in `x-ms-copy-source`);
//! tokens only travel in `Authorization` and `x-ms-copy-source-authorization` headers (the SDK's
//! logging redacts `sig` and both headers). Every error message goes through
//! [`errors::redact`] plus a literal scrub of this sink's SAS, and [`BlobSink::describe`] never
//! shows a query string.

mod blocks;
pub mod errors;
mod latest;
mod lease;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    new_http_client, ClientOptions, Context, Etag, ExponentialRetryOptions, HttpClientOptions,
    Request, RequestContent, RetryOptions, Transport,
};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientSetMetadataOptions, BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockListHeaders, BlockListType,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use bytes::Bytes;
use futures::TryStreamExt as _;
use time::OffsetDateTime;
use url::Url;

use crate::config::Secret;
use crate::credential::STORAGE_SCOPE;
use crate::sink::{BlockId, CommitTicket, LockOutcome, Sink, SinkError, STATE_FILE};

use blocks::TicketDetail;
use lease::{HeldLease, LeaseHealth};

pub use latest::LatestCopy;

/// Content type of the CSV files.
const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";
/// What a state blob holds before the first run wrote a state (read back as "no state").
const EMPTY_STATE: &[u8] = b"{}";

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

/// Requests sent by a sink, for run summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Logical operations (one per SDK call).
    pub requests: u64,
    /// Extra attempts made by the retry policy.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    tries: AtomicU64,
}

/// Counts calls (per-call position) or attempts (per-try position) passing through the pipeline.
#[derive(Debug)]
struct CountPolicy {
    counters: Arc<Counters>,
    per_try: bool,
}

#[async_trait]
impl Policy for CountPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let counter = if self.per_try {
            &self.counters.tries
        } else {
            &self.counters.calls
        };
        counter.fetch_add(1, Ordering::Relaxed);
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// Writes the export to one container (and optional path prefix) of Azure Blob Storage.
///
/// Dropping the sink stops the lease renewals without releasing the lease: like a crashed
/// holder, its lease then expires after the lease duration.
pub struct BlobSink {
    inner: Arc<Inner>,
    lease: tokio::sync::Mutex<Option<HeldLease>>,
}

struct Inner {
    /// Container URL without query string.
    container_url: Url,
    /// Path under the container, without leading/trailing `/`; may be empty.
    base: String,
    auth: BlobAuth,
    options: BlobSinkOptions,
    client_options: ClientOptions,
    container: BlobContainerClient,
    blobs: Mutex<HashMap<String, Arc<BlobClient>>>,
    counters: Arc<Counters>,
    /// The [`LatestCopy`] in effect (Auto switches to Download once on 501).
    latest_mode: AtomicU8,
}

impl BlobSink {
    /// A sink writing under `container_url` (`https://account.blob.core.windows.net/container`, or
    /// Azurite's `http://127.0.0.1:PORT/devstoreaccount1/container`) at path `base` (`""` allowed).
    pub fn new(container_url: &Url, base: &str, auth: BlobAuth) -> Result<BlobSink, SinkError> {
        BlobSink::with_options(container_url, base, auth, BlobSinkOptions::default())
    }

    /// [`BlobSink::new`] with explicit tunables (tests use short leases and retries).
    pub fn with_options(
        container_url: &Url,
        base: &str,
        auth: BlobAuth,
        options: BlobSinkOptions,
    ) -> Result<BlobSink, SinkError> {
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
        Ok(BlobSink {
            inner: Arc::new(Inner {
                container_url,
                base,
                auth,
                options,
                client_options,
                container,
                blobs: Mutex::new(HashMap::new()),
                counters,
                latest_mode,
            }),
            lease: tokio::sync::Mutex::new(None),
        })
    }

    /// Requests sent so far by this sink (including the lease renewals).
    pub fn request_counts(&self) -> RequestCounts {
        let calls = self.inner.counters.calls.load(Ordering::Relaxed);
        let tries = self.inner.counters.tries.load(Ordering::Relaxed);
        RequestCounts {
            requests: calls,
            retries: tries.saturating_sub(calls),
        }
    }

    /// How `latest.csv` is currently assembled (Auto turns into Download after a 501).
    pub fn latest_copy(&self) -> LatestCopy {
        LatestCopy::from_u8(self.inner.latest_mode.load(Ordering::Relaxed))
    }

    /// The held lease's id and metadata, or LockLost.
    async fn held_lease(
        &self,
    ) -> Result<(String, HashMap<String, String>, Arc<LeaseHealth>), SinkError> {
        let guard = self.lease.lock().await;
        match guard.as_ref() {
            Some(held) if held.health.is_held() => Ok((
                held.lease_id.clone(),
                held.metadata.clone(),
                held.health.clone(),
            )),
            _ => Err(self.inner.lock_lost()),
        }
    }
}

/// Client options shared by every client of one sink: one HTTP transport, an explicit retry
/// policy, and the request counters.
fn client_options(options: &BlobSinkOptions, counters: &Arc<Counters>) -> ClientOptions {
    // Storage clients must see the bytes as stored (ranged downloads).
    let http = HttpClientOptions {
        automatic_decompression: false,
    };
    let to_time = |d: Duration| {
        azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX)
    };
    ClientOptions {
        per_call_policies: vec![Arc::new(CountPolicy {
            counters: counters.clone(),
            per_try: false,
        })],
        per_try_policies: vec![Arc::new(CountPolicy {
            counters: counters.clone(),
            per_try: true,
        })],
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: to_time(options.initial_retry_delay),
            max_retries: options.max_retries,
            max_total_elapsed: to_time(options.max_retry_elapsed),
            max_delay: to_time(options.max_retry_delay),
        }),
        transport: Some(Transport::new(new_http_client(Some(http)))),
        ..Default::default()
    }
}

/// A request body from bytes (the SDK's inherent `RequestContent::from` takes a `Vec`).
fn content<T, F>(bytes: Bytes) -> RequestContent<T, F> {
    bytes.into()
}

/// `url` with the SAS as its query string (token auth: unchanged).
fn with_sas(url: &Url, auth: &BlobAuth) -> Url {
    let mut url = url.clone();
    if let BlobAuth::Sas(sas) = auth {
        url.set_query(Some(sas.expose().trim_start_matches('?')));
    }
    url
}

impl Inner {
    /// Full blob name of `file` (relative to the base).
    fn blob_name(&self, file: &str) -> String {
        if self.base.is_empty() {
            file.to_string()
        } else {
            format!("{}/{}", self.base, file)
        }
    }

    /// URL of `file` without any query string.
    fn blob_url(&self, file: &str) -> Url {
        let mut url = self.container_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(self.blob_name(file).split('/'));
        }
        url
    }

    /// The (cached) client of `file`.
    fn blob(&self, file: &str) -> Result<Arc<BlobClient>, SinkError> {
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
    fn scrub(&self, text: String) -> String {
        let mut text = errors::redact(&text);
        if let BlobAuth::Sas(sas) = &self.auth {
            let raw = sas.expose().trim_start_matches('?');
            let mut secrets = vec![raw.to_string()];
            for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
                if key == "sig" && value.len() >= 8 {
                    secrets.push(value.to_string());
                    secrets.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
                }
            }
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }

    fn denied_hint(&self) -> &'static str {
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
    fn error(&self, what: &str, err: &azure_core::Error) -> SinkError {
        errors::to_sink_error(what, err, self.denied_hint(), |s| self.scrub(s))
    }

    fn lock_lost(&self) -> SinkError {
        SinkError::LockLost {
            what: self.blob_name(STATE_FILE),
        }
    }

    fn describe(&self) -> String {
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
    async fn create_container(&self) -> Result<(), SinkError> {
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
    fn container_missing(err: &azure_core::Error) -> bool {
        errors::is_status(err, 404, &["ContainerNotFound"])
    }

    /// Puts `{}` as the state blob unless it exists (creating the container if needed).
    async fn create_state_blob(&self) -> Result<(), SinkError> {
        let state = self.blob(STATE_FILE)?;
        for attempt in 0..2 {
            let options = BlobClientUploadOptions {
                if_none_match: Some(Etag::from("*")),
                blob_content_type: Some("application/json".to_string()),
                ..Default::default()
            };
            match state
                .upload(content(Bytes::from_static(EMPTY_STATE)), Some(options))
                .await
            {
                Ok(_) => return Ok(()),
                // Exists already (possibly leased by someone else).
                Err(e) if errors::is_status(&e, 409, &[]) || errors::is_status(&e, 412, &[]) => {
                    return Ok(())
                }
                Err(e) if attempt == 0 && Self::container_missing(&e) => {
                    self.create_container().await?;
                }
                Err(e) => return Err(self.error(STATE_FILE, &e)),
            }
        }
        Err(SinkError::Other(format!(
            "{}: the container disappeared while creating the state blob",
            self.blob_name(STATE_FILE)
        )))
    }

    /// The committed block ids and ETag of `file`, or `None` if it does not exist (or has no
    /// committed block).
    async fn committed_blocks(
        &self,
        file: &str,
    ) -> Result<Option<(Vec<BlockId>, String)>, SinkError> {
        let client = self.blob(file)?.block_blob_client();
        let response = match client.get_block_list(BlockListType::Committed, None).await {
            Ok(response) => response,
            Err(e) if errors::is_status(&e, 404, &[]) => return Ok(None),
            Err(e) => return Err(self.error(file, &e)),
        };
        let etag = response.etag().ok().flatten().map(String::from);
        let list = response.into_model().map_err(|e| {
            SinkError::Other(format!("{file}: {}", self.scrub(errors::describe(&e))))
        })?;
        let mut ids = Vec::new();
        for block in list.committed_blocks.unwrap_or_default() {
            let raw = block.name.unwrap_or_default();
            let id = blocks::block_id_from_raw(&raw).ok_or_else(|| {
                SinkError::Other(format!(
                    "{file} holds a block not written by signin-export; move it away or use a new destination prefix"
                ))
            })?;
            ids.push(parse_block_id(&id)?);
        }
        // A blob with only uncommitted blocks answers Get Block List too: it does not exist yet.
        if ids.is_empty() {
            return Ok(None);
        }
        let etag = etag
            .ok_or_else(|| SinkError::Other(format!("{file}: Get Block List returned no ETag")))?;
        Ok(Some((ids, etag)))
    }

    async fn download(&self, file: &str) -> Result<Option<Bytes>, SinkError> {
        let client = self.blob(file)?;
        let response = match client.download(None).await {
            Ok(response) => response,
            Err(e) if errors::is_status(&e, 404, &[]) => return Ok(None),
            Err(e) => return Err(self.error(file, &e)),
        };
        let body = response
            .body
            .collect()
            .await
            .map_err(|e| self.error(file, &e))?;
        Ok(Some(body))
    }
}

/// A [`BlockId`] from its 32-character text (ids only come from this crate's own blocks).
fn parse_block_id(text: &str) -> Result<BlockId, SinkError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| SinkError::Other(format!("invalid block id: {e}")))
}

fn ticket_detail(ticket: &CommitTicket) -> Result<TicketDetail, SinkError> {
    serde_json::from_value(ticket.detail.clone()).map_err(|e| {
        SinkError::Other(format!(
            "the commit ticket for {} was not made by the Blob sink: {e}",
            ticket.file
        ))
    })
}

#[async_trait]
impl Sink for BlobSink {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn acquire(&self, holder: &str) -> Result<LockOutcome, SinkError> {
        let inner = &self.inner;
        let mut guard = self.lease.lock().await;
        if let Some(held) = guard.as_mut() {
            if held.health.is_held() {
                return Ok(LockOutcome::Acquired);
            }
            held.stop().await;
            *guard = None;
        }
        let state = inner.blob(STATE_FILE)?;
        let duration = i32::try_from(inner.options.lease_duration.as_secs()).unwrap_or(60);
        let mut created = false;
        let (lease_id, sent_at) = loop {
            let proposed = uuid::Uuid::new_v4().to_string();
            let sent_at = Instant::now();
            let options = BlobClientAcquireLeaseOptions {
                proposed_lease_id: Some(proposed.clone()),
                ..Default::default()
            };
            match state.acquire_lease(duration, Some(options)).await {
                Ok(_) => break (proposed, sent_at),
                Err(e) if errors::is_status(&e, 409, &["LeaseAlreadyPresent"]) => {
                    let properties = state
                        .get_properties(None)
                        .await
                        .map_err(|e| inner.error(STATE_FILE, &e))?;
                    let metadata = properties.metadata().unwrap_or_default();
                    return Ok(LockOutcome::Busy(blocks::holder_from_metadata(&metadata)));
                }
                Err(e) if !created && errors::is_status(&e, 404, &[]) => {
                    inner.create_state_blob().await?;
                    created = true;
                }
                Err(e) => return Err(inner.error(STATE_FILE, &e)),
            }
        };
        let since = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let metadata = blocks::holder_metadata(holder, since);
        let options = BlobClientSetMetadataOptions {
            lease_id: Some(lease_id.clone()),
            ..Default::default()
        };
        if let Err(e) = state.set_metadata(&metadata, Some(options)).await {
            let _ = state.release_lease(lease_id, None).await;
            return Err(inner.error(STATE_FILE, &e));
        }
        let health = Arc::new(LeaseHealth::new(sent_at, inner.options.lease_duration));
        *guard = Some(HeldLease::start(
            state,
            lease_id,
            metadata,
            health,
            inner.options.renew_every,
        ));
        tracing::info!(state = %inner.blob_name(STATE_FILE), "took the single-writer lease");
        Ok(LockOutcome::Acquired)
    }

    async fn ensure_locked(&self) -> Result<(), SinkError> {
        self.held_lease().await.map(|_| ())
    }

    async fn release(&self) -> Result<(), SinkError> {
        let mut guard = self.lease.lock().await;
        let Some(mut held) = guard.take() else {
            return Ok(());
        };
        held.stop().await;
        let state = self.inner.blob(STATE_FILE)?;
        match state.release_lease(held.lease_id.clone(), None).await {
            Ok(_) => Ok(()),
            // Expired and taken by someone else, or already broken: not ours any more.
            Err(e) if errors::is_status(&e, 409, &[]) || errors::is_status(&e, 412, &[]) => {
                tracing::warn!(error = %self.inner.scrub(errors::describe(&e)), "the lease was already gone when releasing it");
                Ok(())
            }
            Err(e) => Err(self.inner.error(STATE_FILE, &e)),
        }
    }

    async fn read_state(&self) -> Result<Option<Bytes>, SinkError> {
        let Some(bytes) = self.inner.download(STATE_FILE).await? else {
            return Ok(None);
        };
        let trimmed = String::from_utf8_lossy(&bytes);
        let trimmed = trimmed.trim();
        if trimmed.is_empty() || trimmed == "{}" {
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    async fn write_state(&self, bytes: Bytes) -> Result<(), SinkError> {
        let (lease_id, metadata, health) = self.held_lease().await?;
        let state = self.inner.blob(STATE_FILE)?;
        let options = BlobClientUploadOptions {
            lease_id: Some(lease_id),
            metadata: Some(metadata),
            blob_content_type: Some("application/json".to_string()),
            ..Default::default()
        };
        match state.upload(content(bytes), Some(options)).await {
            Ok(_) => Ok(()),
            Err(e) if errors::is_status(&e, 412, &[]) || errors::is_status(&e, 409, &[]) => {
                health.lose();
                Err(self.inner.lock_lost())
            }
            Err(e) => Err(self.inner.error(STATE_FILE, &e)),
        }
    }

    async fn stage(&self, file: &str, block: &BlockId, data: Bytes) -> Result<(), SinkError> {
        let client = self.inner.blob(file)?.block_blob_client();
        let len = data.len() as u64;
        match client
            .stage_block(block.as_str().as_bytes(), len, content(data.clone()), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if Inner::container_missing(&e) => {
                self.inner.create_container().await?;
                client
                    .stage_block(block.as_str().as_bytes(), len, content(data), None)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.inner.error(file, &e))
            }
            Err(e) => Err(self.inner.error(file, &e)),
        }
    }

    async fn prepare(
        &self,
        file: &str,
        header: Bytes,
        blocks: &[BlockId],
    ) -> Result<CommitTicket, SinkError> {
        let existing = self.inner.committed_blocks(file).await?;
        if existing.is_none() {
            self.stage(file, &BlockId::header(), header).await?;
        }
        let detail = TicketDetail::new(
            existing
                .as_ref()
                .map(|(ids, etag)| (ids.as_slice(), etag.clone())),
            blocks,
        )
        .map_err(|e| SinkError::Other(format!("{}: {e}", self.inner.blob_name(file))))?;
        let detail = serde_json::to_value(&detail)
            .map_err(|e| SinkError::Other(format!("{file}: cannot encode the ticket: {e}")))?;
        Ok(CommitTicket {
            file: file.to_string(),
            detail,
        })
    }

    async fn commit(&self, ticket: &CommitTicket) -> Result<(), SinkError> {
        let detail = ticket_detail(ticket)?;
        let file = ticket.file.as_str();
        let client = self.inner.blob(file)?.block_blob_client();
        let mut options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(CSV_CONTENT_TYPE.to_string()),
            ..Default::default()
        };
        match &detail.etag {
            Some(etag) => options.if_match = Some(Etag::from(etag.as_str())),
            None => options.if_none_match = Some(Etag::from("*")),
        }
        let body = Bytes::from(blocks::block_list_xml(&detail.blocks));
        match client.commit_block_list(content(body), Some(options)).await {
            Ok(_) => Ok(()),
            // 412: the ETag changed; 409: the file appeared; 400 InvalidBlockList: our staged
            // blocks are gone (another writer's commit discarded them).
            Err(e)
                if errors::is_status(&e, 412, &[])
                    || errors::is_status(&e, 409, &[])
                    || errors::is_status(&e, 400, &["InvalidBlockList"]) =>
            {
                // A retried request whose first attempt succeeded also lands here.
                if let Some((committed, _)) = self.inner.committed_blocks(file).await? {
                    if committed.iter().collect::<Vec<_>>() == detail.ids() {
                        return Ok(());
                    }
                }
                Err(SinkError::Conflict {
                    what: self.inner.blob_name(file),
                })
            }
            Err(e) => Err(self.inner.error(file, &e)),
        }
    }

    async fn is_committed(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        let detail = ticket_detail(ticket)?;
        Ok(self
            .inner
            .committed_blocks(&ticket.file)
            .await?
            .is_some_and(|(ids, _)| ids.contains(&detail.marker)))
    }

    async fn list_daily(&self) -> Result<Vec<String>, SinkError> {
        let inner = &self.inner;
        let prefix = inner.blob_name("daily/");
        let base_prefix = inner.blob_name("");
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix),
            ..Default::default()
        };
        let mut pages = inner
            .container
            .list_blobs(Some(options))
            .map_err(|e| inner.error("daily/", &e))?
            .into_pages();
        let mut files = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if Inner::container_missing(&e) => break,
                Err(e) => return Err(inner.error("daily/", &e)),
            };
            let page = page.into_model().map_err(|e| inner.error("daily/", &e))?;
            for item in page.blob_items {
                let Some(name) = item.name else { continue };
                let relative = if base_prefix.is_empty() {
                    name.as_str()
                } else {
                    name.strip_prefix(base_prefix.as_str()).unwrap_or(&name)
                };
                let day = relative.strip_prefix("daily/").unwrap_or("");
                if !day.contains('/') && day.ends_with(".csv") {
                    files.push(relative.to_string());
                }
            }
        }
        files.sort();
        Ok(files)
    }

    async fn publish_latest(&self, header: Bytes, daily_files: &[String]) -> Result<(), SinkError> {
        latest::publish(self, header, daily_files).await
    }

    async fn read(&self, file: &str) -> Result<Option<Bytes>, SinkError> {
        self.inner.download(file).await
    }

    async fn probe(&self) -> Result<(), SinkError> {
        let inner = &self.inner;
        let name = format!("_state/probe-{}", uuid::Uuid::new_v4());
        let client = inner.blob(&name)?;
        let payload = Bytes::from_static(b"signin-export write probe");
        let upload = || async { client.upload(content(payload.clone()), None).await };
        match upload().await {
            Ok(_) => {}
            Err(e) if Inner::container_missing(&e) => {
                inner.create_container().await?;
                upload().await.map_err(|e| inner.error(&name, &e))?;
            }
            Err(e) => return Err(inner.error(&name, &e)),
        }
        let read_back = inner.download(&name).await;
        let listed = self.list_daily().await;
        let deleted = client
            .delete(None)
            .await
            .map_err(|e| inner.error(&name, &e));
        if inner.blobs.lock().map(|mut c| c.remove(&name)).is_err() {
            tracing::debug!("blob client cache poisoned");
        }
        match read_back? {
            Some(bytes) if bytes == payload => {}
            _ => {
                return Err(SinkError::Other(format!(
                    "{name}: the probe blob did not read back as written"
                )))
            }
        }
        listed?;
        deleted?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
