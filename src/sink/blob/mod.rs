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
mod client;
pub mod errors;
mod http;
mod latest;
mod lease;
mod lock;
mod state;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_storage_blob::models::{
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions, BlockListHeaders,
    BlockListType,
};
use bytes::Bytes;
use futures::TryStreamExt as _;
use url::Url;

use crate::sink::{BlockId, CommitTicket, LockOutcome, Sink, SinkError};

use blocks::TicketDetail;
use client::{content, Inner};
use lease::HeldLease;

pub use client::{BlobAuth, BlobSinkOptions};
pub use http::RequestCounts;
pub use latest::LatestCopy;

/// Content type of the CSV files.
const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// Writes the export to one container (and optional path prefix) of Azure Blob Storage.
///
/// Dropping the sink stops the lease renewals without releasing the lease: like a crashed
/// holder, its lease then expires after the lease duration.
pub struct BlobSink {
    inner: Arc<Inner>,
    lease: tokio::sync::Mutex<Option<HeldLease>>,
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
        Ok(BlobSink {
            inner: Arc::new(Inner::new(container_url, base, auth, options)?),
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
}

impl Inner {
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
        lock::acquire(self, holder).await
    }

    async fn ensure_locked(&self) -> Result<(), SinkError> {
        lock::ensure_locked(self).await
    }

    async fn release(&self) -> Result<(), SinkError> {
        lock::release(self).await
    }

    async fn read_state(&self) -> Result<Option<Bytes>, SinkError> {
        state::read_state(self).await
    }

    async fn write_state(&self, bytes: Bytes) -> Result<(), SinkError> {
        state::write_state(self, bytes).await
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
